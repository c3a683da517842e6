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
# The largest whole part a decimal field may carry (digits). Kalshi's fields are 64-bit fixed point; a
# longer number is refused as malformed before any arithmetic sees it.
MAX_WHOLE_DIGITS = 12
MAX_COUNT = 10**9 * 100  # 1e-2 contracts: one billion contracts, far above any real order


def _parse_fixed(value: object, field: str, max_dp: int) -> int:
    """A non-negative decimal string (or int) with at most ``max_dp`` decimals, scaled by 10**max_dp."""
    if isinstance(value, bool):
        raise WireError(field, f"expected a decimal string, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise WireError(field, f"{value} is negative")
        if value >= 10 ** MAX_WHOLE_DIGITS:
            raise WireError(field, f"{value} is out of range")
        return value * 10 ** max_dp
    if not isinstance(value, str):
        raise WireError(field, f"expected a decimal string like \"1.00\", got {type(value).__name__}")
    s = value
    if not s:
        raise WireError(field, "empty string")
    if s != s.strip():
        raise WireError(field, f"{value!r} has surrounding whitespace")
    whole, dot, frac = s.partition(".")
    if not whole and not frac:
        raise WireError(field, f"{value!r} is not a number")
    if (whole and not set(whole) <= _DIGITS) or (frac and not set(frac) <= _DIGITS) or (dot and not frac):
        raise WireError(field, f"{value!r} is not a plain non-negative decimal")
    if len(frac) > max_dp:
        raise WireError(field, f"{value[:24]!r} has more than {max_dp} decimal places")
    if len(whole.lstrip("0")) > MAX_WHOLE_DIGITS:
        raise WireError(field, f"{value[:24]!r}... is out of range")
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
    c = _parse_fixed(value, field, 2)
    if c > MAX_COUNT:
        raise WireError(field, f"{str(value)[:24]!r} is above the largest count {MAX_COUNT // 100}")
    return c


def parse_int_param(value: str, field: str, lo: int | None = None, hi: int | None = None) -> int:
    """A query-string integer (optional leading minus, at most 19 digits), within [lo, hi] when given."""
    digits = value[1:] if value.startswith("-") else value
    if not digits or not set(digits) <= _DIGITS or len(digits) > 19:
        raise WireError(field, f"{value[:24]!r} is not an integer")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise WireError(field, f"{v} is outside {lo}..{hi}")
    return v


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


# Price grids (kalshi-api.md 2.2, the twelve-structure table), in 1e-4 $: (start, end, step) bands, written
# the way Kalshi lists ``price_ranges`` (from $0.0000 to $1.0000). A price is valid when it lies strictly
# inside (0, 1), inside a band, and on that band's step counted from the band's start. Names are labels only:
# everything below reads the bands. Edge bands are $0.00-0.10 and $0.90-1.00 unless the table says otherwise.
_EDGE, _CENTRE_LO, _CENTRE_HI = 1000, 1000, 9000


def _edge_centre(edge: int, centre: int) -> tuple[tuple[int, int, int], ...]:
    if edge == centre:
        return ((0, 10000, edge),)
    return ((0, _CENTRE_LO, edge), (_CENTRE_LO, _CENTRE_HI, centre), (_CENTRE_HI, 10000, edge))


GRIDS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "linear_cent": ((0, 10000, 100),),
    "deci_cent": ((0, 10000, 10),),
    "tapered_deci_cent": _edge_centre(10, 100),
    "center_whole_edge_half_cent": _edge_centre(50, 100),
    "center_whole_edge_quint_cent": _edge_centre(20, 100),
    "center_half_edge_half_cent": _edge_centre(50, 50),
    "center_half_edge_quint_cent": _edge_centre(20, 50),
    "center_half_edge_deci_cent": _edge_centre(10, 50),
    "center_quint_edge_quint_cent": _edge_centre(20, 20),
    "center_quint_edge_deci_cent": _edge_centre(10, 20),
    "center_centi_edge_centi_cent": _edge_centre(1, 1),
    # $0.0001 below $0.01 and above $0.99, $0.001 between (kalshi-api.md 2.2)
    "center_deci_edge_centi_cent": ((0, 100, 1), (100, 9900, 10), (9900, 10000, 1)),
}
STRUCTURES: tuple[str, ...] = tuple(GRIDS)


def price_ranges(structure: str) -> list[dict[str, str]]:
    """The market's ``price_ranges`` as Kalshi lists them: [{start, end, step}] in dollar strings."""
    return ranges_wire(GRIDS[structure])


def ranges_wire(bands: tuple[tuple[int, int, int], ...]) -> list[dict[str, str]]:
    return [{"start": fmt_price(a), "end": fmt_price(b), "step": fmt_price(s)} for a, b, s in bands]


def on_grid(structure: str, p: int) -> bool:
    return on_bands(GRIDS[structure], p)


def on_bands(bands: tuple[tuple[int, int, int], ...], p: int) -> bool:
    if not 0 < p < 10000:
        return False
    for a, b, s in bands:
        if a <= p <= b and (p - a) % s == 0:
            return True
    return False


def grid_prices(structure: str) -> list[int]:
    """Every valid price of the grid, ascending."""
    out: set[int] = set()
    for a, b, s in GRIDS[structure]:
        out.update(range(a, b + 1, s))
    out.discard(0)
    out.discard(10000)
    return sorted(out)
