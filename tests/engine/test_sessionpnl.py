"""Session vs lifetime P&L: a reused account starts the session at exactly 0, carried positions are
re-based at their first mark, and session net P&L = change in cash + change in marked value."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.engine.portfolio import Portfolio
from kmm.engine.sessionpnl import PnlFigures, SessionPnl
from kmm.kalshi.types import Fill, MarketPosition

A, B = "KXSP-A", "KXSP-B"
_tid = itertools.count()


def fill(ticker: str, side: str, price: int, count: int, fee: int = 0) -> Fill:
    return Fill(f"t{next(_tid)}", f"o{next(_tid)}", None, ticker, side, price, count, fee, False, None, 0)


def both(pf: Portfolio, sp: SessionPnl, f: Fill) -> None:
    assert pf.apply_fill(f)
    assert sp.on_fill(f)


def mark(pf: Portfolio, sp: SessionPnl, ticker: str, bid: int | None, ask: int | None) -> None:
    pf.set_mark(ticker, bid, ask)
    sp.on_mark(ticker, bid, ask)


def reused_account() -> Portfolio:
    pf = Portfolio()
    # 14 YES A bought at 0.40 in an earlier session, $3.00 realized and $0.50 fees then
    pf.load_position(MarketPosition(A, 1400, 5_6000, 3_0000, 5000))
    pf.set_cash(500_0000)
    return pf


def test_a_reused_account_starts_the_session_at_zero_with_no_fills():
    pf = reused_account()
    sp = SessionPnl(pf)
    mark(pf, sp, A, 4100, 4300)
    assert pf.unrealized_pnl() == 1400                       # lifetime: 14 x (0.41 - 0.40)
    s = sp.session()
    assert (s.realized, s.unrealized, s.fees, s.net) == (0, 0, 0, 0)
    lt = sp.lifetime_figures()
    assert (lt.realized, lt.unrealized, lt.fees) == (3_0000, 1400, 5000)
    assert s.label() == ("session P&L net $0.0000 (realized $0.0000 gross of fees, unrealized $0.0000, "
                         "fees $0.0000)")
    assert lt.label().startswith("lifetime P&L net $2.6400")


def test_trading_a_carried_position_realizes_against_its_session_start_mark():
    pf = reused_account()
    sp = SessionPnl(pf)
    mark(pf, sp, A, 4100, 4300)
    both(pf, sp, fill(A, "ask", 4500, 400))                  # sell 4 at 0.45
    assert sp.session().realized == 4 * 400                  # vs 0.41 at the start, not 0.40 long ago
    assert pf.realized_pnl() == 3_0000 + 4 * 500
    mark(pf, sp, A, 4400, 4600)
    s = sp.session()
    assert s.unrealized == 10 * 300 and s.net == 1600 + 3000
    # cross-check: cash +1.80, marked value 4.40 now vs 5.74 at the start
    assert sp.cash_change() == 1_8000
    assert s.net == sp.cash_change() + (10 * 4400 - 14 * 4100)


def test_new_markets_fees_and_settlement_are_the_sessions():
    pf = reused_account()
    sp = SessionPnl(pf)
    mark(pf, sp, A, 4100, 4300)
    both(pf, sp, fill(B, "bid", 3000, 500, fee=368))
    s = sp.session_for(B)
    assert (s.realized, s.fees) == (0, 368)
    pf.settle(B, "yes")
    sp.settle(B, "yes")
    assert sp.session_for(B).realized == 5 * 7000
    assert sp.session().net == 3_5000 - 368
    # cash paid the fee rounded up to the cent; the P&L counts the exact fee
    assert sp.session().net == sp.cash_change() + (pf.fees_charged() - pf.fees_paid())


def test_a_fill_before_any_mark_rebases_the_carried_position_at_its_cost():
    pf = reused_account()
    sp = SessionPnl(pf)
    both(pf, sp, fill(A, "ask", 4500, 1400))
    assert sp.session().realized == pf.realized_pnl() - 3_0000 == 14 * 500


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A, B]), st.sampled_from(["bid", "ask"]),
                          st.integers(1, 99).map(lambda c: c * 100), st.integers(1, 9).map(lambda n: n * 100),
                          st.integers(1, 98).map(lambda c: c * 100)), max_size=12),
       st.integers(-20, 20).map(lambda n: n * 100))
def test_session_net_is_cash_change_plus_marked_value_change(seq, carried):
    pf = Portfolio()
    if carried:      # carried in at $0.50 a contract (either side), with lifetime realized and fees
        pf.load_position(MarketPosition(A, carried, abs(carried) * 50, 7_0000, 3000))
    pf.set_cash(1_000_0000)
    sp = SessionPnl(pf)
    marks: dict[str, tuple[int, int]] = {}
    for t, side, price, count, bid in seq:
        both(pf, sp, fill(t, side, price, count, fee=count // 10))   # a fill comes before each mark
        mark(pf, sp, t, bid, bid + 100)
        marks[t] = (bid, bid + 100)
    value_now = 0
    for t, (bid, ask) in marks.items():      # marked value, the way the portfolio marks positions
        q = pf.position(t)
        value_now += q * bid // 100 if q > 0 else -q * (10_000 - ask) // 100
    # a carried position first met by a fill is re-based at its cost; one never met stays out of both
    value_start = abs(carried) * 50 if A in marks else 0
    fee_rounding = pf.fees_charged() - pf.fees_paid()
    # realized and unrealized are each rounded to 1e-4 $ (average-cost releases leave sub-1e-4 parts)
    assert abs(sp.session().net - (sp.cash_change() + fee_rounding + value_now - value_start)) <= 1


def test_label_writes_money_sign_first_like_every_other_figure():
    assert PnlFigures("lifetime", -18_260, -15_000, 326).label() == (
        "lifetime P&L net -$3.3586 (realized -$1.8260 gross of fees, unrealized -$1.5000, fees $0.0326)")
