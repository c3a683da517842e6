# A market's price grid (design section 3): which YES prices are valid, at what step.
cimport cython
from kmm._core._types cimport px_t

@cython.final
cdef class Grid:
    cdef readonly px_t step_min     # slot unit, 1e-4 $: gcd of every step, start and $1 (the finest
                                    # step, except where steps interleave: $0.001 for $0.002 + $0.005)
    cdef readonly Py_ssize_t n_slots  # 10000 // step_min + 1 slots, slot i is price i * step_min
    cdef readonly px_t min_price    # lowest valid price > 0, 1e-4 $
    cdef readonly px_t max_price    # highest valid price < 10000, 1e-4 $
    cdef readonly tuple ranges      # ((start, end, step), ...) in 1e-4 $
    cdef char* _valid               # _valid[slot] = 1 when slot's price is a valid order price
    cdef px_t* _down                # _down[slot] = highest valid price <= slot's price, or -1
    cdef px_t* _up                  # _up[slot] = lowest valid price >= slot's price, or -1

    # True when price is on the grid and strictly inside (0, 10000).
    cdef inline bint valid(self, px_t price) noexcept nogil:
        return (0 < price < 10000 and price % self.step_min == 0
                and self._valid[price // self.step_min] != 0)

    # Highest valid price <= price (-1 if none). Any int64 price is accepted.
    cdef px_t floor_px(self, px_t price) noexcept nogil
    # Lowest valid price >= price (-1 if none).
    cdef px_t ceil_px(self, px_t price) noexcept nogil
