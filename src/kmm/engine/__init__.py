"""The live loop and the parts it calls: order manager, portfolio, risk gate, clock (design section 4).

Everything here except the live loop itself is pure: no I/O, time injected through a
:class:`kmm.engine.clock.Clock`.
"""
