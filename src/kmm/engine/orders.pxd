# Typed declarations read only when the build compiles orders.py (kmm._pure): the class as an extension type,
# its attributes as C fields, its hot methods callable from C. Every attribute set on an instance is here.
cdef class OrderManager:
    cdef public object clock, unknown_order_policy, stats, watchers
    cdef public object _session, _coid_prefix, _counter
    cdef public object _by_coid, _by_oid, _live, _live_by_ticker, _seen_trades, _orphans, _unbooked, _unsure
    cpdef object _touch(self, object ticker)
    cpdef object create(self, object ticker, object side, object price, object count, object client_order_id=*)
    cpdef object new_client_order_id(self)
    cpdef object record_create(self, object ticker, object side, object price, object count, object client_order_id)
    cpdef object _register(self, object ticker, object side, object price, object count, object coid)
    cpdef object _add_live(self, object o)
    cpdef object _drop_live(self, object o)
    cpdef object _move(self, object o, object new, object cause)
    cpdef object _link(self, object o, object order_id)
    cpdef object _find(self, object order_id, object client_order_id)
    cpdef object _apply_counts(self, object o, object fill_e, object remaining_e)
    cpdef object _working_state(self, object o)
    cpdef object _settle(self, object o, object cause)
    cpdef object on_ack(self, object ack)
    cpdef object _request(self, object order_id, object new)
    cpdef object request_cancel(self, object order_id)
    cpdef object request_amend(self, object order_id, object price, object remaining)
    cpdef object request_decrease(self, object order_id, object reduce_to)
    cpdef object _restore(self, object o, object cause)
    cpdef object on_amend_ack(self, object ack)
    cpdef object on_user_order(self, object uo)
    cpdef object on_fill(self, object fill)
    cpdef object _book_fill(self, object o, object fill)
    cpdef object get(self, object client_order_id)
    cpdef object by_order_id(self, object order_id)
    cpdef object _clear_unsure(self, object o)
    cpdef object open_count(self, object ticker=*)
    cpdef object open_qty(self, object ticker, object side)
