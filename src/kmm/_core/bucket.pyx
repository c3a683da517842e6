"""The rate limiter's token bucket (kmm.kalshi.limiter), compiled: the order path asks it at every
request written at once (``try_acquire``), every decision reads its level (``pressure``), and a replay
polls it a couple of thousand times. The same float steps as the plain-Python bucket kept in
tests/reference/bucket.py (tests/kalshi/test_limiter_bucket.py drives both with the same operations)."""

cdef double _NS = 1_000_000_000.0


cdef class TokenBucket:
    """Continuous-refill bucket. Tokens are floats; times are monotonic ns."""

    cdef public double rate
    cdef public double capacity
    cdef public double tokens
    cdef public long long _last_ns

    def __init__(self, rate, capacity, long long now_ns):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"token bucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self._last_ns = now_ns

    cdef inline void _refill(self, long long now_ns):
        cdef long long dt = now_ns - self._last_ns
        cdef double t
        if dt > 0:
            t = self.tokens + <double>dt * self.rate / _NS
            self.tokens = t if t < self.capacity else self.capacity     # min(capacity, t)
            self._last_ns = now_ns

    cdef object _wait(self, double cost, double floor):
        cdef double short = cost + floor - self.tokens
        cdef double x
        if short <= 0:
            return 0
        if cost + floor > self.capacity:  # could never be satisfied: let it through at a full bucket
            short = self.capacity - self.tokens
            if short <= 0:
                return 0
        x = short * _NS / self.rate
        if x < 9.0e18:
            return max(1, <long long>x + 1)
        return max(1, int(x) + 1)

    def refill(self, long long now_ns):
        self._refill(now_ns)

    def wait_ns(self, double cost, double floor=0.0):
        """ns until ``cost`` tokens are available above ``floor`` (0 = now). Call after refill."""
        return self._wait(cost, floor)

    def set_rate(self, rate, capacity, long long now_ns):
        self._refill(now_ns)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = self.capacity if self.capacity < self.tokens else self.tokens

    cpdef object take(self, long long now_ns, double cost, double floor):
        """``refill(now_ns)``, then take ``cost`` tokens if they are there above ``floor`` (returns 0),
        else ns to wait (``wait_ns``), nothing taken."""
        self._refill(now_ns)
        if cost + floor - self.tokens <= 0:
            self.tokens -= cost
            return 0
        w = self._wait(cost, floor)
        if w == 0:
            self.tokens -= cost
        return w

    cpdef double level(self, long long now_ns):
        """``refill(now_ns)``, then the fraction in use: 1 - tokens / capacity."""
        self._refill(now_ns)
        return 1.0 - self.tokens / self.capacity
