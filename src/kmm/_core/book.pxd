# One market's order book over its price grid (design sections 3 and 5).
#
# Storage: per side (0 = YES bids, 1 = NO bids) one array of sizes over the grid's finest step
# (slot i holds price i * step, in that side's own terms) plus a bitmap of non-empty slots, so the
# next best level after the best one vanishes is found a 64-slot word at a time. Asks are implied:
# YES ask = 10000 - best NO bid.
cimport cython
from libc.stdint cimport int16_t, uint64_t
from kmm._core._types cimport px_t, qty_t
from kmm._core.grid cimport Grid

cdef enum:
    SIDE_YES = 0
    SIDE_NO = 1

# Status codes of the non-raising book steps (_try_level, _stage_level).
cdef enum BookStatus:
    BOOK_OK = 0
    BOOK_BAD_SIDE = 1      # side is not 0 (yes) or 1 (no)
    BOOK_OFF_GRID = 2      # price outside (0, 10000) or not a valid price of the market
    BOOK_DESYNC = 3        # the delta would make the level negative (a message was missed)
    BOOK_BAD_SIZE = 4      # size/delta out of range (|x| > QTY_MAX, or negative snapshot size)
    BOOK_DUPLICATE = 5     # a snapshot names the same (side, price) twice

cdef extern from *:
    """
    #define KMM_QTY_MAX ((int64_t)100000000000000LL)
    """
    # Largest size or |delta| a level takes: 1e14 size units (1e12 contracts), so price * size
    # and every depth sum stay inside int64.
    const qty_t QTY_MAX "KMM_QTY_MAX"


@cython.final
cdef class OrderBook:
    cdef readonly Grid grid
    cdef readonly uint64_t version   # +1 per applied delta, per snapshot, per clear
    cdef px_t _step                  # grid.step_min, 1e-4 $
    cdef Py_ssize_t _n               # slots per side (grid.n_slots)
    cdef Py_ssize_t _nw              # 64-bit bitmap words per side
    cdef qty_t* _q                   # sizes, 1e-2 contracts: _q[side * _n + slot]
    cdef uint64_t* _bits             # non-empty slots: _bits[side * _nw + slot // 64]
    cdef int16_t* _slot              # _slot[price] = slot of a valid YES price, -1 otherwise (10001 entries)
    cdef int16_t* _slot_no           # the same for a NO price p: valid when 10000 - p is on the grid
    cdef Py_ssize_t _top[2]          # best (highest) non-empty slot per side, -1 when the side is empty
    cdef qty_t* _sq                  # snapshot staging sizes (allocated on first snapshot)
    cdef uint64_t* _sbits            # snapshot staging bitmap

    # (Re)allocate every array for grid; the book is empty afterwards (regrid and __cinit__).
    cdef int _alloc(self, Grid grid) except -1

    # Apply one signed delta (1e-2 contracts) at (side, price in that side's terms, 1e-4 $).
    # Returns a BookStatus; on anything but BOOK_OK the book is unchanged.
    cdef int _try_level(self, int side, px_t price, qty_t delta) noexcept nogil
    # The same, raising BookError (naming side, price and delta) on failure.
    cdef int _apply_level(self, int side, px_t price, qty_t delta) except -1

    # Snapshot in three steps, so a bad level leaves the live book untouched:
    # _stage_begin() empties the staging arrays; _stage_level() adds one level (size 0 is ignored);
    # _stage_commit() swaps staging and live arrays and recomputes the best levels.
    cdef int _stage_begin(self) except -1
    cdef int _stage_level(self, int side, px_t price, qty_t size) noexcept nogil
    cdef void _stage_commit(self) noexcept nogil

    # Highest non-empty slot <= slot on side, or -1.
    cdef Py_ssize_t _scan_down(self, int side, Py_ssize_t slot) noexcept nogil
    # The first up-to-n levels of a side, best first, in that side's own terms; returns how many.
    cdef Py_ssize_t _top_levels(self, int side, Py_ssize_t n, px_t* px, qty_t* sz) noexcept nogil

    # Python-facing helpers: the first n levels of a side as (price, size) tuples (asks in YES
    # terms when as_ask), and a taker sweep of `size` returning the VWAP (float) or worst price.
    cdef list _levels(self, int side, object n, bint as_ask)
    cdef object _sweep(self, int s, qty_t size, bint want_vwap)

    # Best bid price of a side in its own terms (1e-4 $), -1 when empty.
    cdef inline px_t _best_px(self, int side) noexcept nogil:
        return -1 if self._top[side] < 0 else self._top[side] * self._step

    # Size at the best bid of a side (1e-2 contracts), 0 when empty.
    cdef inline qty_t _best_sz(self, int side) noexcept nogil:
        return 0 if self._top[side] < 0 else self._q[side * self._n + self._top[side]]
