"""Wire <-> integer conversions for the simulator, written independently of the client's parser.

Units (design section 2): price 1e-4 $ in YES terms, size 1e-2 contracts, money 1e-4 $.
Every parse raises :class:`WireError` with the field name, so the REST layer can answer a 400 that says
what was wrong and where.
"""

from __future__ import annotations

import time


class WireError(ValueError):
    """A request field could not be parsed: ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_DIGITS = frozenset("0123456789")


def _parse_fixed(value: object, field: str, max_dp: int) -> int:
    """A non-negative decimal string (or int) with at most ``max_dp`` decimals, scaled by 10**max_dp."""
    if isinstance(value, bool):
        raise WireError(field, f"expected a decimal string, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise WireError(field, f"{value} is negative")
        return value * 10 ** max_dp
    if not isinstance(value, str):
        raise WireError(field, f"expected a decimal string like \"1.00\", got {type(value).__name__}")
    s = value.strip()
    if not s:
        raise WireError(field, "empty string")
    whole, dot, frac = s.partition(".")
    if not whole and not frac:
        raise WireError(field, f"{value!r} is not a number")
    if (whole and not set(whole) <= _DIGITS) or (frac and not set(frac) <= _DIGITS) or (dot and not frac):
        raise WireError(field, f"{value!r} is not a plain non-negative decimal")
    if len(frac) > max_dp:
        raise WireError(field, f"{value!r} has more than {max_dp} decimal places")
    return int(whole or "0") * 10 ** max_dp + int((frac + "0" * max_dp)[:max_dp] or "0")


def parse_price(value: object, field: str = "price") -> int:
    """A YES price string ("0.5600", at most 4 dp) in 1e-4 $; must be strictly between 0 and 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise WireError(field, f"expected a dollar string like \"0.5600\", got the integer {value}")
    p = _parse_fixed(value, field, 4)
    if p <= 0 or p >= 10000:
        raise WireError(field, f"{value!r} is outside (0, 1)")
    return p


def parse_count(value: object, field: str = "count") -> int:
    """A contract count ("10.00", 0-2 dp; an int is accepted as whole contracts) in 1e-2 contracts."""
    return _parse_fixed(value, field, 2)


def parse_money(value: object, field: str) -> int:
    return _parse_fixed(value, field, 4)


def fmt_price(p: int) -> str:
    """1e-4 $ -> "0.4275"."""
    return f"{p // 10000}.{p % 10000:04d}"


def fmt_money(m: int) -> str:
    """1e-4 $ (signed) -> "-12.3400"."""
    sign = "-" if m < 0 else ""
    m = -m if m < 0 else m
    return f"{sign}{m // 10000}.{m % 10000:04d}"


def fmt_count(c: int) -> str:
    """1e-2 contracts (signed) -> "10.00" / "-3.50"."""
    sign = "-" if c < 0 else ""
    c = -c if c < 0 else c
    return f"{sign}{c // 100}.{c % 100:02d}"


def fmt_signed_count(c: int) -> str:
    return fmt_count(c)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rfc3339(ts_ms: int) -> str:
    t = time.gmtime(ts_ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ts_ms % 1000:03d}Z"


# Price grids (kalshi-api.md 2.2), in 1e-4 $: (start, end, step) inclusive ranges.
GRIDS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "linear_cent": ((100, 9900, 100),),
    "deci_cent": ((10, 9990, 10),),
    # [U] boundaries: 0.001 steps below 0.10 and above 0.90, 0.01 between (0.10 and 0.90 themselves are on both).
    "tapered_deci_cent": ((10, 1000, 10), (1000, 9000, 100), (9000, 9990, 10)),
}


def price_ranges(structure: str) -> list[dict[str, str]]:
    """The market's ``price_ranges`` as Kalshi lists them: [{start, end, step}] in dollar strings."""
    return [{"start": fmt_price(a), "end": fmt_price(b), "step": fmt_price(s)} for a, b, s in GRIDS[structure]]


def on_grid(structure: str, p: int) -> bool:
    for a, b, s in GRIDS[structure]:
        if a <= p <= b and (p - a) % s == 0:
            return True
    return False


def grid_prices(structure: str) -> list[int]:
    """Every valid price of the grid, ascending."""
    out: set[int] = set()
    for a, b, s in GRIDS[structure]:
        out.update(range(a, b + 1, s))
    return sorted(out)
