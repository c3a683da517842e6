"""One market's order book in integer units (design sections 2, 3 and 5).

Kalshi's book holds bids only: YES bids and NO bids, each priced in its own terms. kmm keeps both as
size arrays over the market's grid and derives asks by reciprocity: a NO bid at p is a YES ask at
10000 - p. Prices are 1e-4 $, sizes 1e-2 contracts.

Public entries validate their input once and raise :class:`BookError` naming the side, the price
and the value; inner steps trust their input. A delta that would make a level negative means a
message was missed (a desync): it is refused and the book is left as it was.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int16_t, int64_t, uint64_t
from libc.string cimport memset

from kmm._core._types cimport px_t, qty_t
from kmm._core.fixed cimport parse_fixed
from kmm._core.grid cimport Grid


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int kmm_hibit64(unsigned long long x) {
        unsigned long i; _BitScanReverse64(&i, x); return (int)i;
    }
    #else
    static inline int kmm_hibit64(unsigned long long x) { return 63 - __builtin_clzll(x); }
    #endif
    """
    int kmm_hibit64(unsigned long long x) noexcept nogil  # index of the highest set bit, x != 0


class BookError(ValueError):
    """Book input was refused: unknown side, price off the grid or outside (0, 1), unparseable
    string, size out of range, or a delta that would make a level negative ("desync").

    Defined here because ``kmm._core`` imports nothing from the rest of kmm; the shell may
    re-export it next to ``kmm.errors``."""


SIDE_NAMES = ("yes", "no")
_STATUS_TEXT = {
    BOOK_BAD_SIDE: "unknown side",
    BOOK_OFF_GRID: "price off the market's grid or outside (0, 1)",
    BOOK_DESYNC: "desync",
    BOOK_BAD_SIZE: "size out of range",
    BOOK_DUPLICATE: "duplicate price level",
}


cdef inline int _book_side(object side) except -1:
    if side == "yes":
        return SIDE_YES
    if side == "no":
        return SIDE_NO
    raise BookError(f"unknown side {side!r}: expected 'yes' or 'no'")


cdef inline int _taker_side(object side) except -1:
    """The book side a taker consumes: a buyer lifts YES asks (NO bids), a seller hits YES bids."""
    if side == "buy":
        return SIDE_NO
    if side == "sell":
        return SIDE_YES
    raise BookError(f"unknown taker side {side!r}: expected 'buy' or 'sell'")


cdef int64_t _parse_text(object text, int scale, bint signed, object side, object price,
                         str what) except? -1:
    cdef const char* s
    cdef Py_ssize_t n
    cdef int64_t v
    if isinstance(text, str):
        s = PyUnicode_AsUTF8AndSize(text, &n)
    elif isinstance(text, bytes):
        s = PyBytes_AS_STRING(text)
        n = PyBytes_GET_SIZE(text)
    else:
        raise BookError(f"{side} level at price {price!r}: {what} {text!r} is not a string "
                        "(the wire sends fixed-point strings)")
    if parse_fixed(s, n, scale, signed, &v) != 0:
        raise BookError(f"{side} level at price {price!r}: {what} {text!r} is not a decimal with at "
                        f"most {scale} decimals")
    return v


cdef str _level_error(int status, object side, object price, object value, qty_t have):
    if status == BOOK_DESYNC:
        return (f"{side} level at price {price!r}: delta {value!r} would make size {have} negative "
                "(desync: a message was missed; the book is unchanged, resnapshot it)")
    if status == BOOK_OFF_GRID:
        return (f"{side} level at price {price!r} (value {value!r}): price is off the market's grid "
                "or outside (0, 1)")
    if status == BOOK_BAD_SIZE:
        return (f"{side} level at price {price!r}: size/delta {value!r} is out of range "
                f"(negative snapshot size, or |size| above {QTY_MAX})")
    if status == BOOK_DUPLICATE:
        return f"{side} level at price {price!r} (value {value!r}) appears twice in the snapshot"
    return f"unknown side {side!r} (price {price!r}, value {value!r}): expected 'yes' or 'no'"


@cython.final
cdef class OrderBook:
    """One market's book: YES and NO bids over the market's grid, asks implied (YES ask =
    10000 - best NO bid). ``OrderBook(price_ranges=None)`` takes the market's ``price_ranges``, a
    ``price_level_structure`` name, or None for ``linear_cent``."""

    def __cinit__(self, price_ranges=None):
        self._q = NULL
        self._bits = NULL
        self._slot = NULL
        self._slot_no = NULL
        self._sq = NULL
        self._sbits = NULL
        self._top[0] = -1
        self._top[1] = -1
        self.version = 0
        self._alloc(price_ranges if isinstance(price_ranges, Grid) else Grid(price_ranges))

    cdef int _alloc(self, Grid grid) except -1:
        # (Re)build every array for ``grid``; the book is empty afterwards.
        cdef qty_t* q
        cdef uint64_t* bits
        cdef int16_t* slot
        cdef int16_t* slot_no
        cdef Py_ssize_t n = grid.n_slots
        cdef Py_ssize_t nw = (n + 63) // 64
        cdef px_t p
        q = <qty_t*>PyMem_Malloc(2 * n * sizeof(qty_t))
        bits = <uint64_t*>PyMem_Malloc(2 * nw * sizeof(uint64_t))
        slot = <int16_t*>PyMem_Malloc(10001 * sizeof(int16_t))
        slot_no = <int16_t*>PyMem_Malloc(10001 * sizeof(int16_t))
        if q == NULL or bits == NULL or slot == NULL or slot_no == NULL:
            PyMem_Free(q)
            PyMem_Free(bits)
            PyMem_Free(slot)
            PyMem_Free(slot_no)
            raise MemoryError()
        memset(q, 0, 2 * n * sizeof(qty_t))
        memset(bits, 0, 2 * nw * sizeof(uint64_t))
        for p in range(10001):
            slot[p] = <int16_t>(p // grid.step_min) if grid.valid(p) else -1
            # a NO bid at p is a YES ask at 1 - p: valid when 1 - p is on the grid (the same set on
            # every Kalshi structure, which are symmetric; not on arbitrary ranges)
            slot_no[p] = <int16_t>(p // grid.step_min) if grid.valid(10000 - p) else -1
        PyMem_Free(self._q)
        PyMem_Free(self._bits)
        PyMem_Free(self._slot)
        PyMem_Free(self._slot_no)
        PyMem_Free(self._sq)
        PyMem_Free(self._sbits)
        self._sq = NULL
        self._sbits = NULL
        self._q = q
        self._bits = bits
        self._slot = slot
        self._slot_no = slot_no
        self.grid = grid
        self._step = grid.step_min
        self._n = n
        self._nw = nw
        self._top[0] = -1
        self._top[1] = -1
        return 0

    def regrid(self, price_ranges):
        """Move the book to a new grid (a ``Grid``, ``price_ranges`` or a structure name), in place:
        the book is emptied (``version`` + 1) and must be refilled from a fresh snapshot. Objects that
        hold this book keep holding it. On a bad grid nothing changes (ValueError)."""
        cdef Grid grid = price_ranges if isinstance(price_ranges, Grid) else Grid(price_ranges)
        self._alloc(grid)
        self.version += 1

    def __dealloc__(self):
        PyMem_Free(self._q)
        PyMem_Free(self._bits)
        PyMem_Free(self._slot)
        PyMem_Free(self._slot_no)
        PyMem_Free(self._sq)
        PyMem_Free(self._sbits)

    # ---- compiled steps (book.pxd) -------------------------------------------------------------

    cdef Py_ssize_t _scan_down(self, int side, Py_ssize_t slot) noexcept nogil:
        cdef uint64_t* bits = self._bits + side * self._nw
        cdef Py_ssize_t w
        cdef uint64_t word
        if slot < 0:
            return -1
        w = slot >> 6
        # keep bits 0..slot%64 of the word (2 << 63 wraps to 0, so 63 keeps them all)
        word = bits[w] & ((<uint64_t>2 << (slot & 63)) - 1)
        while True:
            if word:
                return (w << 6) + kmm_hibit64(word)
            if w == 0:
                return -1
            w -= 1
            word = bits[w]

    cdef int _try_level(self, int side, px_t price, qty_t delta) noexcept nogil:
        cdef Py_ssize_t slot
        cdef qty_t* q
        cdef qty_t old, new
        if side != SIDE_YES and side != SIDE_NO:
            return BOOK_BAD_SIDE
        if price <= 0 or price >= 10000:
            return BOOK_OFF_GRID
        slot = self._slot[price] if side == SIDE_YES else self._slot_no[price]
        if slot < 0:
            return BOOK_OFF_GRID
        if delta > QTY_MAX or delta < -QTY_MAX:
            return BOOK_BAD_SIZE
        q = self._q + side * self._n
        old = q[slot]
        new = old + delta
        if new < 0:
            return BOOK_DESYNC
        if new > QTY_MAX:
            return BOOK_BAD_SIZE
        q[slot] = new
        if new == 0:
            if old != 0:
                self._bits[side * self._nw + (slot >> 6)] &= ~(<uint64_t>1 << (slot & 63))
                if slot == self._top[side]:
                    self._top[side] = self._scan_down(side, slot - 1)
        elif old == 0:
            self._bits[side * self._nw + (slot >> 6)] |= (<uint64_t>1 << (slot & 63))
            if slot > self._top[side]:
                self._top[side] = slot
        self.version += 1
        return BOOK_OK

    cdef int _apply_level(self, int side, px_t price, qty_t delta) except -1:
        cdef int status = self._try_level(side, price, delta)
        cdef qty_t have = 0
        if status != BOOK_OK:
            if status == BOOK_DESYNC:
                have = self._q[side * self._n + (self._slot if side == SIDE_YES else self._slot_no)[price]] + delta
            raise BookError(_level_error(status, SIDE_NAMES[side] if 0 <= side <= 1 else side,
                                         price, delta, have))
        return 0

    cdef int _stage_begin(self) except -1:
        if self._sq == NULL:
            self._sq = <qty_t*>PyMem_Malloc(2 * self._n * sizeof(qty_t))
            self._sbits = <uint64_t*>PyMem_Malloc(2 * self._nw * sizeof(uint64_t))
            if self._sq == NULL or self._sbits == NULL:
                raise MemoryError()
        memset(self._sq, 0, 2 * self._n * sizeof(qty_t))
        memset(self._sbits, 0, 2 * self._nw * sizeof(uint64_t))
        return 0

    cdef int _stage_level(self, int side, px_t price, qty_t size) noexcept nogil:
        cdef Py_ssize_t slot
        if side != SIDE_YES and side != SIDE_NO:
            return BOOK_BAD_SIDE
        if price <= 0 or price >= 10000:
            return BOOK_OFF_GRID
        slot = self._slot[price] if side == SIDE_YES else self._slot_no[price]
        if slot < 0:
            return BOOK_OFF_GRID
        if size < 0 or size > QTY_MAX:
            return BOOK_BAD_SIZE
        if size == 0:
            return BOOK_OK
        if self._sq[side * self._n + slot] != 0:
            return BOOK_DUPLICATE
        self._sq[side * self._n + slot] = size
        self._sbits[side * self._nw + (slot >> 6)] |= (<uint64_t>1 << (slot & 63))
        return BOOK_OK

    cdef void _stage_commit(self) noexcept nogil:
        cdef qty_t* q = self._q
        cdef uint64_t* b = self._bits
        self._q = self._sq
        self._bits = self._sbits
        self._sq = q
        self._sbits = b
        self._top[0] = self._scan_down(0, self._n - 1)
        self._top[1] = self._scan_down(1, self._n - 1)
        self.version += 1

    cdef Py_ssize_t _top_levels(self, int side, Py_ssize_t n, px_t* px, qty_t* sz) noexcept nogil:
        cdef Py_ssize_t k = 0
        cdef Py_ssize_t slot = self._top[side]
        cdef qty_t* q = self._q + side * self._n
        while k < n and slot >= 0:
            px[k] = slot * self._step
            sz[k] = q[slot]
            k += 1
            slot = self._scan_down(side, slot - 1)
        return k

    # ---- updates -------------------------------------------------------------------------------

    def apply_snapshot(self, yes, no):
        """Replace the whole book with a snapshot: ``yes``/``no`` are lists of ``[price, size]``
        string pairs as in the WebSocket ``yes_dollars_fp``/``no_dollars_fp`` (or REST
        ``orderbook_fp.yes_dollars``/``no_dollars``); None or [] for an empty side. Levels of size 0
        are ignored. Every level is checked before anything changes: on BookError the book is as it
        was."""
        cdef int side, status
        cdef int64_t price, size
        self._stage_begin()
        for side, levels in ((SIDE_YES, yes), (SIDE_NO, no)):
            if levels is None:
                continue
            if not isinstance(levels, (list, tuple)):
                raise BookError(f"{SIDE_NAMES[side]} snapshot side {levels!r} is not a list of "
                                "[price, size] pairs")
            for level in levels:
                if not isinstance(level, (list, tuple)) or len(level) != 2:
                    raise BookError(f"{SIDE_NAMES[side]} snapshot level {level!r} is not a "
                                    "[price, size] pair")
                price = _parse_text(level[0], 4, False, SIDE_NAMES[side], level[0], "price")
                size = _parse_text(level[1], 2, False, SIDE_NAMES[side], level[0], "size")
                status = self._stage_level(side, price, size)
                if status != BOOK_OK:
                    raise BookError(_level_error(status, SIDE_NAMES[side], level[0], level[1], 0))
        self._stage_commit()

    def apply_delta(self, side, price, delta):
        """Apply one wire delta: ``side`` "yes"/"no", ``price`` the ``price_dollars`` string (in that
        side's terms), ``delta`` the signed ``delta_fp`` string. A level reaching 0 is dropped."""
        cdef int s = _book_side(side)
        cdef int64_t p = _parse_text(price, 4, False, side, price, "price")
        cdef int64_t d = _parse_text(delta, 2, True, side, price, "delta")
        cdef int status = self._try_level(s, p, d)
        if status != BOOK_OK:
            raise BookError(_level_error(status, side, price, delta,
                                         self._q[s * self._n + (self._slot if s == SIDE_YES else self._slot_no)[p]] + d
                                         if status == BOOK_DESYNC else 0))

    def apply_level_delta(self, int side, px_t price, qty_t delta):
        """Apply one delta in integer units: ``side`` 0 = yes, 1 = no; ``price`` 1e-4 $ in that
        side's terms; ``delta`` signed 1e-2 contracts."""
        self._apply_level(side, price, delta)

    def apply_deltas(self, const int64_t[::1] sides not None, const int64_t[::1] prices not None,
                     const int64_t[::1] deltas not None):
        """Apply a batch of integer deltas (the fast path): three equal-length int64 buffers
        (numpy int64 arrays, ``array('q')``, memoryviews): side 0 = yes / 1 = no, price in 1e-4 $
        (that side's terms), delta in signed 1e-2 contracts. Returns the number applied.

        All or nothing: when delta #i is bad (unknown side, off-grid price, out-of-range size, or a
        desync), deltas 0..i-1 are undone in reverse order, the book (and ``version``) is exactly as
        before the call, and BookError names the index, side, price and delta."""
        cdef Py_ssize_t n = sides.shape[0]
        cdef Py_ssize_t i, j
        cdef int status = BOOK_OK
        cdef uint64_t version0 = self.version
        if prices.shape[0] != n or deltas.shape[0] != n:
            raise BookError(f"apply_deltas: sides, prices and deltas have lengths {n}, "
                            f"{prices.shape[0]}, {deltas.shape[0]}; they must be equal")
        with nogil:
            for i in range(n):
                status = self._try_level(<int>sides[i] if 0 <= sides[i] <= 1 else -1,
                                         prices[i], deltas[i])
                if status != BOOK_OK:
                    break
            if status != BOOK_OK:
                j = i
                while j > 0:  # undo: every earlier delta applied, so its inverse applies too
                    j -= 1
                    self._try_level(<int>sides[j], prices[j], -deltas[j])
                self.version = version0
        if status != BOOK_OK:
            side = SIDE_NAMES[sides[i]] if 0 <= sides[i] <= 1 else sides[i]
            have = 0
            if status == BOOK_DESYNC:
                have = self._q[sides[i] * self._n
                               + (self._slot if sides[i] == SIDE_YES else self._slot_no)[prices[i]]] + deltas[i]
            raise BookError(f"apply_deltas: delta #{i} refused, batch rolled back (0 applied): "
                            + _level_error(status, side, prices[i], deltas[i], have))
        return n

    def clear(self):
        """Empty both sides."""
        memset(self._q, 0, 2 * self._n * sizeof(qty_t))
        memset(self._bits, 0, 2 * self._nw * sizeof(uint64_t))
        self._top[0] = -1
        self._top[1] = -1
        self.version += 1

    # ---- top of book ---------------------------------------------------------------------------

    def best_bid(self):
        """Best YES bid (1e-4 $), or None when there are no YES bids."""
        return None if self._top[SIDE_YES] < 0 else self._top[SIDE_YES] * self._step

    def best_ask(self):
        """Best YES ask = 10000 - best NO bid (1e-4 $), or None when there are no NO bids."""
        return None if self._top[SIDE_NO] < 0 else 10000 - self._top[SIDE_NO] * self._step

    def best_bid_size(self):
        """Size at the best YES bid (1e-2 contracts); 0 when empty."""
        return self._best_sz(SIDE_YES)

    def best_ask_size(self):
        """Size at the best YES ask, i.e. at the best NO bid (1e-2 contracts); 0 when empty."""
        return self._best_sz(SIDE_NO)

    def best_no_bid(self):
        """Best NO bid in NO terms (1e-4 $), or None."""
        return None if self._top[SIDE_NO] < 0 else self._top[SIDE_NO] * self._step

    def spread(self):
        """best_ask - best_bid (1e-4 $; <= 0 when crossed or locked), or None if a side is empty."""
        if self._top[0] < 0 or self._top[1] < 0:
            return None
        return 10000 - self._top[1] * self._step - self._top[0] * self._step

    def mid(self):
        """(best_bid + best_ask) / 2 as a float (1e-4 $), or None if a side is empty."""
        if self._top[0] < 0 or self._top[1] < 0:
            return None
        return (self._top[0] * self._step + 10000 - self._top[1] * self._step) / 2.0

    def microprice(self):
        """Size-weighted mid (bid * ask_size + ask * bid_size) / (bid_size + ask_size), float in
        1e-4 $, or None if a side is empty."""
        if self._top[0] < 0 or self._top[1] < 0:
            return None
        cdef px_t bid = self._top[0] * self._step
        cdef px_t ask = 10000 - self._top[1] * self._step
        cdef qty_t bsz = self._q[self._top[0]]
        cdef qty_t asz = self._q[self._n + self._top[1]]
        return <double>(bid * asz + ask * bsz) / <double>(bsz + asz)

    def is_crossed(self):
        """True when best_bid >= best_ask (crossed or locked); can happen transiently."""
        if self._top[0] < 0 or self._top[1] < 0:
            return False
        return self._top[0] * self._step + self._top[1] * self._step >= 10000

    def is_empty(self):
        """True when both sides are empty."""
        return self._top[0] < 0 and self._top[1] < 0

    # ---- levels and depth ----------------------------------------------------------------------

    cdef list _levels(self, int side, object n, bint as_ask):
        cdef Py_ssize_t limit, slot, k = 0
        cdef qty_t* q = self._q + side * self._n
        cdef list out = []
        if n is None:
            limit = self._n
        else:
            limit = n
            if limit < 0:
                raise BookError(f"level count {n!r} must be >= 0 (or None for all)")
        slot = self._top[side]
        while k < limit and slot >= 0:
            out.append((10000 - slot * self._step if as_ask else slot * self._step, q[slot]))
            k += 1
            slot = self._scan_down(side, slot - 1)
        return out

    def bids(self, n=None):
        """The best ``n`` YES bids (all when None) as (price, size), best (highest) first."""
        return self._levels(SIDE_YES, n, False)

    def asks(self, n=None):
        """The best ``n`` YES asks implied by NO bids as (10000 - no_price, size), best (lowest)
        first."""
        return self._levels(SIDE_NO, n, True)

    def no_bids(self, n=None):
        """The best ``n`` NO bids in NO terms as (price, size), best (highest) first."""
        return self._levels(SIDE_NO, n, False)

    def levels(self):
        """The whole book as the wire shows it: (yes_levels, no_levels), each a list of
        (price, size) in that side's own terms, ascending (best bid last)."""
        cdef list yes = self._levels(SIDE_YES, None, False)
        cdef list no = self._levels(SIDE_NO, None, False)
        yes.reverse()
        no.reverse()
        return yes, no

    def size_at(self, side, price):
        """Resting size (1e-2 contracts) at ``price`` (1e-4 $, in the side's own terms) on ``side``
        "yes"/"no"; 0 for an empty level or a price off the grid."""
        cdef int s = _book_side(side)
        cdef px_t p = price
        cdef int16_t* table = self._slot if s == SIDE_YES else self._slot_no
        if p <= 0 or p >= 10000 or table[p] < 0:
            return 0
        return self._q[s * self._n + table[p]]

    def depth_within(self, side, px_t limit_price):
        """Size (1e-2 contracts) a taker can trade now without passing ``limit_price`` (YES terms,
        1e-4 $): ``side`` "buy" sums YES asks <= limit, "sell" sums YES bids >= limit."""
        cdef int s = _taker_side(side)
        cdef Py_ssize_t slot = self._top[s]
        cdef qty_t* q = self._q + s * self._n
        cdef qty_t total = 0
        cdef px_t px
        while slot >= 0:
            px = 10000 - slot * self._step if s == SIDE_NO else slot * self._step
            if (s == SIDE_NO and px > limit_price) or (s == SIDE_YES and px < limit_price):
                break
            total += q[slot]
            slot = self._scan_down(s, slot - 1)
        return total

    def levels_within(self, side, px_t limit_price):
        """The levels a taker would trade through up to ``limit_price`` (YES terms): "buy" -> YES
        asks <= limit, "sell" -> YES bids >= limit; (price, size), best first."""
        cdef int s = _taker_side(side)
        cdef Py_ssize_t slot = self._top[s]
        cdef qty_t* q = self._q + s * self._n
        cdef list out = []
        cdef px_t px
        while slot >= 0:
            px = 10000 - slot * self._step if s == SIDE_NO else slot * self._step
            if (s == SIDE_NO and px > limit_price) or (s == SIDE_YES and px < limit_price):
                break
            out.append((px, q[slot]))
            slot = self._scan_down(s, slot - 1)
        return out

    def cum_depth(self, side, Py_ssize_t n):
        """Cumulative size over the first ``n`` levels a taker meets ("buy": asks, "sell": bids):
        ``[s1, s1 + s2, ...]``, shorter when the side has fewer levels."""
        cdef int s = _taker_side(side)
        cdef Py_ssize_t slot = self._top[s], k = 0
        cdef qty_t* q = self._q + s * self._n
        cdef qty_t total = 0
        cdef list out = []
        if n < 0:
            raise BookError(f"level count {n} must be >= 0")
        while k < n and slot >= 0:
            total += q[slot]
            out.append(total)
            k += 1
            slot = self._scan_down(s, slot - 1)
        return out

    cdef object _sweep(self, int s, qty_t size, bint want_vwap):
        cdef Py_ssize_t slot = self._top[s]
        cdef qty_t* q = self._q + s * self._n
        cdef qty_t left = size, take
        cdef int64_t cost = 0
        cdef px_t px = 0
        if size <= 0 or size > QTY_MAX:
            raise BookError(f"size {size} must be in 1..{QTY_MAX} (1e-2 contracts)")
        while left > 0 and slot >= 0:
            px = 10000 - slot * self._step if s == SIDE_NO else slot * self._step
            take = q[slot] if q[slot] < left else left
            cost += px * take
            left -= take
            slot = self._scan_down(s, slot - 1)
        if left > 0:
            return None
        return <double>cost / <double>size if want_vwap else px

    def buy_vwap(self, qty_t size):
        """Average YES price (float, 1e-4 $) paid to buy ``size`` (1e-2 contracts) now by lifting
        asks, or None when the asks hold less than ``size``."""
        return self._sweep(SIDE_NO, size, True)

    def sell_vwap(self, qty_t size):
        """Average YES price (float, 1e-4 $) received selling ``size`` now into the bids, or None
        when the bids hold less than ``size``."""
        return self._sweep(SIDE_YES, size, True)

    def sweep_price(self, side, qty_t size):
        """The worst price (YES terms, 1e-4 $) a taker reaches filling ``size`` now ("buy": the
        highest ask touched, "sell": the lowest bid), i.e. the limit price that fills it; None when
        too thin."""
        return self._sweep(_taker_side(side), size, False)

    def __repr__(self):
        return (f"OrderBook(bid={self.best_bid()}x{self.best_bid_size()}, "
                f"ask={self.best_ask()}x{self.best_ask_size()}, version={self.version})")
