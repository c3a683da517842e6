"""The root of kmm's exception hierarchy, and the compiled core's own error.

Pure Python, importing nothing: ``kmm._core`` imports nothing from the rest of kmm, yet its
:class:`BookError` must be a :class:`KmmError` like every error kmm raises. So the root is defined
here, below the core, and :mod:`kmm.errors` (where everything else imports it from) re-exports it:
``kmm.errors.KmmError is kmm._core.errors.KmmError``. Add no other class here; the rest of the
hierarchy lives in :mod:`kmm.errors`.
"""

from __future__ import annotations


class KmmError(Exception):
    """Base of every error kmm raises on purpose. Import it from :mod:`kmm.errors`."""


class BookError(KmmError, ValueError):
    """Book input was refused: unknown side, price off the grid or outside (0, 1), unparseable
    string, size out of range, or a delta that would make a level negative ("desync")."""
