"""Book freshness: one state per market, the single owner that the maker, the pipeline and the gate read.

A book is *fresh* only on evidence from book data for that market (a snapshot or a delta the router
applied). WebSocket pings, command answers and other channels never count: a connection that pings
while its book data has stopped is a frozen book, not a quiet one.

States per market:

- ``waiting``: no snapshot yet (start, after a disconnect or a gap);
- ``fresh``: book data within ``stale_after_s``;
- ``checking``: silent for ``stale_after_s``; a snapshot was asked for (quotes stay: a quiet book in
  sequence has missed nothing). Book data for the market answers it;
- ``stale``: a gap, a disconnect, or a snapshot request unanswered for ``answer_s``: quotes are pulled.

An unanswered request escalates: pull after ``answer_s`` (level 1), then resubscribe the book channel
(level 2) and reconnect (level 3), each another ``max(answer_s, step_s)`` later (a resubscribe or a
reconnect needs time to be answered). :mod:`kmm.engine.recovery` acts on the steps; this module only keeps
the state and the clock arithmetic (no I/O), so it is tested with a manual clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmm.engine.clock import NS_PER_S, Clock

WAITING, FRESH, CHECKING, STALE = "waiting", "fresh", "checking", "stale"
PULL, RESUBSCRIBE, RECONNECT = 1, 2, 3
STEP_NAMES = {PULL: "pull", RESUBSCRIBE: "resubscribe", RECONNECT: "reconnect"}


@dataclass(slots=True)
class MarketFreshness:
    state: str = WAITING
    last_data_ns: int = 0          # monotonic ns of the last book data for this market
    asked_ns: int = 0              # a snapshot was asked for at this time (0: none open)
    level: int = 0                 # escalation steps taken for the open request
    reason: str = "no snapshot yet"


class Freshness:
    """The freshness of every market's book. ``fresh(ticker)`` is what quoting may rely on."""

    def __init__(self, clock: Clock, *, stale_after_s: float = 5.0, answer_s: float = 1.5,
                 step_s: float = 2.0) -> None:
        self.clock = clock
        self.stale_after_ns = int(stale_after_s * NS_PER_S)
        self.answer_ns = int(answer_s * NS_PER_S)
        self.step_ns = max(self.answer_ns, int(step_s * NS_PER_S))
        self.markets: dict[str, MarketFreshness] = {}
        self.epoch = 0          # bumped on every change of a market's state (the engine caches ALLOWs)

    def add(self, ticker: str) -> None:
        self.markets.setdefault(ticker, MarketFreshness())

    def get(self, ticker: str) -> MarketFreshness | None:
        return self.markets.get(ticker)

    # ---- evidence
    def on_data(self, ticker: str, now_ns: int) -> None:
        """Book data for ``ticker`` was applied. Hot path: two stores."""
        m = self.markets.get(ticker)
        if m is not None:
            m.last_data_ns = now_ns
            if m.state == CHECKING:
                m.state, m.asked_ns, m.level = FRESH, 0, 0
                self.epoch += 1

    def on_ready(self, ticker: str) -> None:
        """A snapshot was applied: the book is in sequence again."""
        m = self.markets.get(ticker)
        if m is not None:
            m.state, m.asked_ns, m.level, m.reason = FRESH, 0, 0, ""
            self.epoch += 1
            m.last_data_ns = self.clock.monotonic_ns()

    def on_stale(self, ticker: str, reason: str) -> None:
        m = self.markets.get(ticker)
        if m is not None:
            m.state, m.reason = STALE, reason
            self.epoch += 1
            if not m.asked_ns:
                m.asked_ns = self.clock.monotonic_ns()
                m.level = max(m.level, PULL)

    def on_disconnected(self) -> None:
        for m in self.markets.values():
            m.state, m.asked_ns, m.level, m.reason = WAITING, 0, 0, "disconnected"
        self.epoch += 1

    # ---- what quoting reads
    def fresh(self, ticker: str, now_ns: int | None = None) -> bool:
        m = self.markets.get(ticker)
        if m is None or m.state in (WAITING, STALE):
            return False
        now = self.clock.monotonic_ns() if now_ns is None else now_ns
        if m.state == CHECKING:
            return now - m.asked_ns <= self.answer_ns
        return True

    def why_not(self, ticker: str) -> str:
        m = self.markets.get(ticker)
        if m is None:
            return "unknown market"
        if m.state == CHECKING:
            return "snapshot request unanswered"
        return m.reason or m.state

    # ---- the timer's questions (no I/O here)
    def silent(self, now_ns: int) -> list[str]:
        """Fresh markets with no book data for ``stale_after_s``: ask for a snapshot now."""
        out = []
        for t, m in self.markets.items():
            if m.state == FRESH and now_ns - m.last_data_ns > self.stale_after_ns:
                m.state, m.asked_ns, m.level = CHECKING, now_ns, 0
                self.epoch += 1
                out.append(t)
        return out

    def escalations(self, now_ns: int) -> list[tuple[str, int]]:
        """(ticker, step) for every open snapshot request unanswered for another ``answer_s``."""
        out = []
        for t, m in self.markets.items():
            if m.state not in (CHECKING, STALE) or not m.asked_ns:
                continue
            due = m.asked_ns + self.answer_ns + self.step_ns * m.level
            if now_ns >= due and m.level < RECONNECT:
                m.level += 1
                if m.level >= PULL:
                    m.state = STALE
                    self.epoch += 1
                    m.reason = f"snapshot request unanswered for {(now_ns - m.asked_ns) / NS_PER_S:.1f} s"
                out.append((t, m.level))
        return out
