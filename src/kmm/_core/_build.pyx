"""Which build of the compiled core this is: ``"release"`` or ``"debug"`` (KMM_DEBUG=1)."""

cdef extern from *:
    """
    #ifdef KMM_DEBUG_BUILD
    #define KMM_BUILD_KIND "debug"
    #else
    #define KMM_BUILD_KIND "release"
    #endif
    """
    const char* KMM_BUILD_KIND

import cython

BUILD = KMM_BUILD_KIND.decode("ascii")
COMPILED = cython.compiled
