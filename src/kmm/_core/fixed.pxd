# Fixed-point wire strings <-> kmm integers, without Python objects on the inner path.
from libc.stdint cimport int64_t

# Parse an ASCII decimal ("0.4275", "-5.00", "10", "1.") with at most `scale` fractional digits into
# value * 10**scale. An optional leading '-' or '+' is accepted only when `signed` is true.
# Returns 0 on success, -1 on malformed input (empty, stray characters, too many digits or
# decimals, or a value of 1e18 units or more); *out is untouched on failure.
cdef int parse_fixed(const char* s, Py_ssize_t n, int scale, bint signed, int64_t* out) noexcept nogil

# Write value / 10**scale with exactly `scale` decimals into buf (at least 24 bytes); returns the length.
cdef Py_ssize_t format_fixed(int64_t value, int scale, char* buf) noexcept nogil
