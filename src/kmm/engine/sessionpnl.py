"""This session's P&L, apart from the account's lifetime figures.

A reused account starts with positions whose cost, realized P&L and fees are the account's history.
:class:`kmm.engine.portfolio.Portfolio` keeps those lifetime figures (they must agree with the exchange);
every P&L kmm *shows* as the run's result is this session's, from :class:`SessionPnl`:

* each position carried in is re-based at its first mark of the session (the same conservative mark
  the portfolio uses: the best YES bid for a long, the best YES ask for a NO), as if bought there, so
  the session starts at exactly 0 and a carried position only moves the session P&L when its price
  moves or it is traded. Without a mark before its first fill, a carried position is re-based at its
  cost (the portfolio's average price);
* the session's fills are booked on that basis by a second :class:`Portfolio` (same netting, cost and
  fee rules), so session realized P&L, unrealized P&L and fees follow the same definitions:
  ``net = realized + unrealized - fees``, realized gross of fees.

Cross-check kept (tested): session net P&L = change in cash + change in the marked value of positions,
both since the session start, plus the fee rounding (cash pays fees rounded up to the cent with a
carry; the P&L counts the exact fee).
"""

from __future__ import annotations

from dataclasses import dataclass

from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill, MarketPosition

ONE_DOLLAR = 10_000


@dataclass(slots=True, frozen=True)
class PnlFigures:
    """P&L in 1e-4 $, labelled by ``scope`` (``"session"`` or ``"lifetime"``)."""

    scope: str
    realized: int          # gross of fees
    unrealized: int
    fees: int

    @property
    def net(self) -> int:
        return self.realized + self.unrealized - self.fees

    def label(self) -> str:
        """A short line for the status line and the view, e.g. ``session P&L net -$0.1826 (realized
        $0.0000 gross of fees, unrealized -$0.1500, fees $0.0326)``: money sign first, as everywhere."""
        def d(x: int) -> str:
            return f"{'-' if x < 0 else ''}${abs(x) / ONE_DOLLAR:,.4f}"
        return (f"{self.scope} P&L net {d(self.net)} (realized {d(self.realized)} gross of fees, "
                f"unrealized {d(self.unrealized)}, fees {d(self.fees)})")


class SessionPnl:
    """The session's P&L beside the lifetime portfolio. Create it after loading the account's
    positions into ``lifetime``; then feed it every fill and mark that ``lifetime`` gets."""

    def __init__(self, lifetime: Portfolio) -> None:
        self.lifetime = lifetime
        self.book = Portfolio(cash=0, mark=lifetime.mark, cash_rounding=lifetime.cash_rounding)
        self.start_cash = lifetime.cash
        self.start_positions: dict[str, int] = lifetime.positions()
        self._pending: dict[str, int] = dict(self.start_positions)   # carried, not yet re-based
        self._start_avg = {t: lifetime.average_price(t) for t in self.start_positions}

    def _rebase(self, ticker: str, yes_price: int) -> None:
        q = self._pending.pop(ticker, 0)
        if not q:
            return
        per = yes_price if q > 0 else ONE_DOLLAR - yes_price
        self.book.load_position(MarketPosition(ticker, q, abs(q) * per // 100, 0, 0))

    def on_mark(self, ticker: str, bid: int | None, ask: int | None) -> None:
        """The best YES bid and ask of ``ticker`` (1e-4 $, None: empty side), as given to the portfolio."""
        if ticker in self._pending:
            q = self._pending[ticker]
            px = bid if q > 0 else ask
            if px is None:
                px = ask if q > 0 else bid
            if px is not None:
                self._rebase(ticker, px)
        self.book.set_mark(ticker, bid, ask)

    def on_fill(self, fill: Fill) -> bool:
        """Book one of our fills (deduplicated by ``trade_id``)."""
        if fill.ticker in self._pending:
            avg = self._start_avg.get(fill.ticker)
            self._rebase(fill.ticker, avg if avg is not None else fill.price)
        return self.book.apply_fill(fill)

    def settle(self, ticker: str, result: str | int) -> int:
        """Settle ``ticker`` in the session book (call beside ``lifetime.settle``)."""
        if ticker in self._pending:
            avg = self._start_avg.get(ticker)
            if avg is not None:
                self._rebase(ticker, avg)
        return self.book.settle(ticker, result)

    def session(self) -> PnlFigures:
        b = self.book
        return PnlFigures("session", b.realized_pnl(), b.unrealized_pnl(), b.fees_paid())

    def session_for(self, ticker: str) -> PnlFigures:
        b = self.book
        return PnlFigures("session", b.realized_pnl(ticker), b.unrealized_pnl(ticker), b.fees_paid(ticker))

    def lifetime_figures(self) -> PnlFigures:
        lt = self.lifetime
        return PnlFigures("lifetime", lt.realized_pnl(), lt.unrealized_pnl(), lt.fees_paid())

    def cash_change(self) -> int:
        """Cash now minus cash at the session start, 1e-4 $."""
        return self.lifetime.cash - self.start_cash
