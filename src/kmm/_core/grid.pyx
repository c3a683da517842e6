"""A market's price grid, from its ``price_ranges`` (design section 3, kalshi-api.md section 2.2).

A price is valid when it is a point ``start + k * step`` of some range and strictly between $0 and $1.
The ranges are the truth; the ``price_level_structure`` name is a label (new names keep coming), so
``Grid`` never branches on it. Steps run from $0.01 down to $0.0001, where the grid has 10,001 slots.
Snapping is O(1) through tables over the finest step.

Tick-denominated settings (a spread of N ticks, a tolerance of N ticks) mean different money on
different grids. ``ticks_px(n, price)`` turns them into price units once, walking n valid prices from
``price`` (so a tick is the step of the band the price sits in), with a floor in money
(``min_px``) so that a $0.0001 grid does not turn "1 tick" into a hundredth of a cent.
"""

cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Free

from kmm._core._types cimport px_t
from kmm._core.fixed cimport parse_fixed
from libc.stdint cimport int64_t

from cpython.unicode cimport PyUnicode_AsUTF8AndSize

# The twelve structures of kalshi-api.md section 2.2 (Aug 2026). A market's ``price_ranges`` always
# win: these tables only serve ``Grid(name)`` (tests, the sim's defaults, a market whose ranges are
# missing). Edge bands are $0.00-0.10 and $0.90-1.00 unless a structure says otherwise.
LINEAR_CENT = (("0.0000", "1.0000", "0.0100"),)
DECI_CENT = (("0.0000", "1.0000", "0.0010"),)
TAPERED_DECI_CENT = (("0.0000", "0.1000", "0.0010"), ("0.1000", "0.9000", "0.0100"),
                     ("0.9000", "1.0000", "0.0010"))


TICK_FLOOR = 10   # 1e-4 $: the least money one tick of a setting stands for ($0.001)


def _edged(edge, centre, lo="0.1000", hi="0.9000"):
    return (("0.0000", lo, edge), (lo, hi, centre), (hi, "1.0000", edge))


STRUCTURES = {
    "linear_cent": LINEAR_CENT,
    "deci_cent": DECI_CENT,
    "tapered_deci_cent": TAPERED_DECI_CENT,
    "center_whole_edge_half_cent": _edged("0.0050", "0.0100"),
    "center_whole_edge_quint_cent": _edged("0.0020", "0.0100"),
    "center_half_edge_half_cent": (("0.0000", "1.0000", "0.0050"),),
    "center_half_edge_quint_cent": _edged("0.0020", "0.0050"),
    "center_half_edge_deci_cent": _edged("0.0010", "0.0050"),
    "center_quint_edge_quint_cent": (("0.0000", "1.0000", "0.0020"),),
    "center_quint_edge_deci_cent": _edged("0.0010", "0.0020"),
    "center_centi_edge_centi_cent": (("0.0000", "1.0000", "0.0001"),),
    # $0.0001 below $0.01 and above $0.99, $0.001 between (every combo market since Aug 27)
    "center_deci_edge_centi_cent": _edged("0.0001", "0.0010", "0.0100", "0.9900"),
}


cdef px_t _dollars(object text, str where) except -1:
    cdef const char* s
    cdef Py_ssize_t n
    cdef int64_t v
    if not isinstance(text, str):
        raise ValueError(f"price_ranges: {where} {text!r} must be a dollar string such as '0.0100'")
    s = PyUnicode_AsUTF8AndSize(text, &n)
    if parse_fixed(s, n, 4, False, &v) != 0 or v > 10000:
        raise ValueError(f"price_ranges: {where} {text!r} is not a dollar amount in 0..1 with <= 4 decimals")
    return v


cdef px_t _gcd(px_t a, px_t b) noexcept:
    while b:
        a, b = b, a % b
    return a


def _normalize(price_ranges):
    if price_ranges is None:
        price_ranges = LINEAR_CENT
    elif isinstance(price_ranges, str):
        if price_ranges not in STRUCTURES:
            raise ValueError(f"unknown price_level_structure {price_ranges!r}; "
                             f"expected one of {', '.join(STRUCTURES)}")
        price_ranges = STRUCTURES[price_ranges]
    out = []
    for i, r in enumerate(price_ranges):
        if isinstance(r, dict):
            try:
                r = (r["start"], r["end"], r["step"])
            except KeyError as exc:
                raise ValueError(f"price_ranges[{i}] lacks {exc.args[0]!r}; each range needs "
                                 "start, end and step") from None
        if len(r) != 3:
            raise ValueError(f"price_ranges[{i}] = {r!r} is not (start, end, step)")
        start = _dollars(r[0], f"[{i}].start")
        end = _dollars(r[1], f"[{i}].end")
        step = _dollars(r[2], f"[{i}].step")
        if step <= 0 or end <= start or (end - start) % step != 0:
            raise ValueError(f"price_ranges[{i}] = {tuple(r)!r}: step must be > 0 and divide end - start")
        out.append((start, end, step))
    if not out:
        raise ValueError("price_ranges is empty; give at least one (start, end, step)")
    return tuple(out)


@cython.final
cdef class Grid:
    """Valid prices of one market. ``Grid(price_ranges=None)`` takes a market's ``price_ranges``
    (list of ``{"start","end","step"}`` dicts or ``(start, end, step)`` dollar-string tuples), a
    ``price_level_structure`` name, or None for ``linear_cent``."""

    def __cinit__(self, price_ranges=None):
        self._valid = NULL
        self._down = NULL
        self._up = NULL
        cdef tuple ranges = _normalize(price_ranges)
        cdef px_t step_min = 10000, start, end, step, p, last
        cdef Py_ssize_t i
        # the slot unit: the largest amount dividing every step, every start and $1, so every valid
        # price is a slot (the finest step on most grids; $0.001 on center_half_edge_quint_cent,
        # whose $0.002 and $0.005 steps interleave)
        for start, end, step in ranges:
            step_min = _gcd(_gcd(step_min, step), start)
        self.step_min = step_min
        self.ranges = ranges
        self.n_slots = 10000 // step_min + 1
        self._valid = <char*>PyMem_Malloc(self.n_slots * sizeof(char))
        self._down = <px_t*>PyMem_Malloc(self.n_slots * sizeof(px_t))
        self._up = <px_t*>PyMem_Malloc(self.n_slots * sizeof(px_t))
        if self._valid == NULL or self._down == NULL or self._up == NULL:
            raise MemoryError()
        for i in range(self.n_slots):
            self._valid[i] = 0
        for start, end, step in ranges:
            p = start
            while p <= end:
                if 0 < p < 10000:
                    self._valid[p // step_min] = 1
                p += step
        last = -1
        for i in range(self.n_slots):
            if self._valid[i]:
                last = i * step_min
            self._down[i] = last
        last = -1
        for i in range(self.n_slots - 1, -1, -1):
            if self._valid[i]:
                last = i * step_min
            self._up[i] = last
        self.min_price = self._up[0]
        self.max_price = self._down[self.n_slots - 1]
        if self.min_price < 0:
            raise ValueError("price_ranges hold no price strictly between $0 and $1")

    def __dealloc__(self):
        PyMem_Free(self._valid)
        PyMem_Free(self._down)
        PyMem_Free(self._up)

    cdef px_t floor_px(self, px_t price) noexcept nogil:
        if price < 0:
            return -1
        if price >= 10000:
            return self.max_price
        return self._down[price // self.step_min]

    cdef px_t ceil_px(self, px_t price) noexcept nogil:
        if price <= 0:
            return self.min_price
        if price > 10000:
            return -1
        return self._up[(price + self.step_min - 1) // self.step_min]

    def is_valid(self, px_t price):
        """True when ``price`` (1e-4 $) is a valid order price of this market."""
        return self.valid(price)

    def snap_down(self, px_t price):
        """Highest valid price <= ``price``, or None (a bid is rounded down)."""
        cdef px_t p = self.floor_px(price)
        return None if p < 0 else p

    def snap_up(self, px_t price):
        """Lowest valid price >= ``price``, or None (an ask is rounded up)."""
        cdef px_t p = self.ceil_px(price)
        return None if p < 0 else p

    def tick_up(self, px_t price):
        """The next valid price strictly above ``price``, or None."""
        cdef px_t p = self.ceil_px(price + 1)
        return None if p < 0 else p

    def tick_down(self, px_t price):
        """The next valid price strictly below ``price``, or None."""
        cdef px_t p = self.floor_px(price - 1)
        return None if p < 0 else p

    def tick_size(self, px_t price):
        """The gap from the valid price at or below ``price`` to the next valid price above it
        (below it, at the top of the grid), in 1e-4 $."""
        cdef px_t lo = self.floor_px(price)
        if lo < 0:
            lo = self.min_price
        cdef px_t hi = self.ceil_px(lo + 1)
        if hi >= 0:
            return hi - lo
        return lo - self.floor_px(lo - 1)

    def ticks_px(self, int n, px_t price=5000, px_t min_px=0):
        """The money of ``n`` ticks at ``price``, in 1e-4 $: the distance from the valid price at or
        below ``price`` to the n-th valid price above it (below it when the grid ends first), and at
        least ``min_px``. ``n = 0`` gives ``min_px``. Use it to turn tick-based settings into price
        units once per market (and again on a grid change)."""
        cdef px_t lo, p, q
        cdef int done
        if n < 0:
            raise ValueError(f"ticks_px: n = {n} must be >= 0")
        if n == 0:
            return max(min_px, 0)
        lo = self.floor_px(price)
        if lo < 0:
            lo = self.min_price
        p = lo
        done = 0
        while done < n:
            q = self.ceil_px(p + 1)
            if q < 0:
                break
            p = q
            done += 1
        if done == n:
            return max(p - lo, min_px)
        # the grid ends above: measure downwards instead
        p = lo
        done = 0
        while done < n:
            q = self.floor_px(p - 1)
            if q < 0:
                break
            p = q
            done += 1
        return max(lo - p, min_px)

    def tick_money(self, int n, px_t price=5000):
        """What ``n`` ticks of a tick-denominated setting (``min_spread_ticks``,
        ``price_tolerance_ticks``, ``reprice_min_ticks``) mean in money at ``price``, 1e-4 $: n steps of
        the band holding ``price``, and never less than n * TICK_FLOOR ($0.001 per tick). So a tick is
        $0.01 on a cent grid and $0.001 on deci-cent and centi-cent grids alike, instead of a $0.0001
        step that no fee or queue would notice. Turn settings into price units with it once per market
        (and again after a grid change)."""
        if n < 0:
            raise ValueError(f"tick_money: n = {n} must be >= 0")
        return self.ticks_px(n, price, n * TICK_FLOOR)

    def steps(self):
        """The distinct steps of the grid's ranges, ascending, in 1e-4 $."""
        return sorted({r[2] for r in self.ranges})

    def prices(self):
        """Every valid price, ascending."""
        return [i * self.step_min for i in range(self.n_slots) if self._valid[i]]

    def __repr__(self):
        return f"Grid(step_min={self.step_min}, ranges={self.ranges!r})"
