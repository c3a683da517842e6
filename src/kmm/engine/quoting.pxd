# Typed declarations read only when the build compiles quoting.py (kmm._pure): the class as an extension type,
# its attributes as C fields, its hot methods callable from C. Every attribute set on an instance is here.
cdef class QuotePlanner:
    cdef public object gate, om, pf, event_risk, last_denial, last_denial_detail
    cpdef object reducing_size(self, object ticker, object side, object size)
    cpdef object place(self, object ticker, object a)
    cpdef object place_checked(self, object ticker, object a)
    cpdef object other(self, object ticker, object a)
    cpdef object _amend_decision(self, object ticker, object side, object price, object size, object live)
