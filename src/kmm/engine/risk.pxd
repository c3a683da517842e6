# Typed declarations read only when the build compiles risk.py (kmm._pure): the class as an extension type,
# its attributes as C fields, its hot methods callable from C. Every attribute set on an instance is here.
cdef class RiskGate:
    cdef public object backoff, freshness, limits, clock, positions, orders, markets
    cdef public object epoch, _exchange_paused, _kill_state, kill_reason, tripped_at_ns
    cdef public object last_pnl, pnl_baseline, denials
    cpdef object is_quotable(self, object ticker)
    cpdef object update_pnl(self)
    cpdef object _kill_gate(self)
    cpdef object _market_gate(self, object ticker)
    cpdef object _backoff_gate(self)
    cpdef object _fat_finger(self, object ticker, object side, object price, object count)
    cpdef object reduce_only_reason(self, object ticker, object q=*)
    cpdef object _reduce_only(self, object ticker, object q)
    cpdef object _position_gate(self, object ticker, object side, object count, object replacing)
    cpdef object _order_gates(self, object ticker, object side, object price, object count)
    cpdef object check_place(self, object ticker, object side, object price, object count)
    cpdef object _order_ok(self, object ticker, object side, object price, object count)
    cpdef object place_allowed(self, object ticker, object side, object price, object count, object q=*, object why=*)
    cpdef object amend_allowed(self, object ticker, object side, object price, object remaining, object old_remaining)
    cpdef object amend_size(self, object ticker, object side, object price, object size, object old_remaining, object old_price)
    cpdef object check_amend(self, object ticker, object side, object price, object remaining, object old_remaining)
