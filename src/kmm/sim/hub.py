"""WebSocket subscriptions and fan-out of engine events (kalshi-api.md section 3).

Each connection owns its subscriptions (sid counter per connection, starting at 1). Book, trade and
lifecycle messages carry a per-subscription ``seq`` that starts at 1 with the first message (the snapshot)
and is shared by all markets of the sid; ``fill``, ``user_order``, ``market_position`` and ``ticker`` carry none.
Frames are queued per connection and written by one writer task per connection, so the engine never waits
on a socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from kmm.sim.engine import Account, Engine, Market
from kmm.sim.wire import fmt_count, fmt_money, fmt_price, rfc3339

log = logging.getLogger(__name__)

SEQ_CHANNELS = frozenset({"orderbook_delta", "trade", "market_lifecycle_v2", "order_group_updates"})
PRIVATE_CHANNELS = frozenset({"orderbook_delta", "fill", "user_orders", "market_positions", "order_group_updates"})
CHANNELS = frozenset({"orderbook_delta", "ticker", "trade", "fill", "user_orders", "market_positions",
                      "market_lifecycle_v2", "order_group_updates"})

# WebSocket error codes 1-28 (kalshi-api.md 3.3, Aug 2026 docs), the simulator's own copy of the table.
# [U] CL Sep 10 (title only) retires 6, 16 and 17; the simulator still sends 16 for an unknown market.
# [U] The page says only "19-22 shard params (shard_factor <= 100)"; which of the four means what is the
# simulator's guess, written once here and used by server._check_shard_params.
WS_ERRORS: dict[int, str] = {
    1: "Unable to process message", 2: "Params required", 3: "Channels required",
    4: "Subscription IDs required", 5: "Unknown command", 6: "Already subscribed",
    7: "Unknown subscription ID", 8: "Unknown channel name", 9: "Authentication required",
    10: "Channel error", 11: "Invalid parameter", 12: "Exactly one subscription ID is required",
    13: "Unsupported action", 14: "Market Ticker required", 15: "Action required", 16: "Market not found",
    17: "Internal error", 18: "Command timeout", 19: "shard_factor must be > 0",
    20: "shard_factor is required with shard_key", 21: "shard_key must be within 0..shard_factor-1",
    22: "shard_factor must be <= 100", 23: "Match IDs required", 24: "Index IDs required",
    25: "Subscription buffer overflow", 26: "Per-subscription market limit exceeded",
    27: "Too many requests", 28: "Underlying tickers required",
}
MAX_PENDING = 200_000  # frames queued to one connection before it is cut off (error 25)


class Sub:
    __slots__ = ("sid", "channel", "conn", "tickers", "seq", "skip")

    def __init__(self, sid: int, channel: str, conn: Conn, tickers: set[str] | None) -> None:
        self.sid = sid
        self.channel = channel
        self.conn = conn
        self.tickers = tickers  # None: every market
        self.seq = 0
        self.skip = 0

    def next_seq(self) -> int:
        self.seq += 1 + self.skip
        self.skip = 0
        return self.seq


class Conn:
    __slots__ = ("ws", "account", "subs", "next_sid", "pending", "wake", "closed", "last_pong", "sent",
                 "cmd_window", "cmd_count")

    def __init__(self, ws: Any, account: Account | None) -> None:
        self.ws = ws
        self.account = account
        self.subs: dict[int, Sub] = {}
        self.next_sid = 1
        self.pending: list[str] = []
        self.wake = asyncio.Event()
        self.closed = False
        self.last_pong = time.monotonic()
        self.sent = 0
        self.cmd_window = 0.0  # start of the current one-second command window (monotonic s)
        self.cmd_count = 0

    def push(self, frame: str) -> None:
        self.pending.append(frame)
        if not self.wake.is_set():
            self.wake.set()


class Hub:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conns: set[Conn] = set()
        self.book_subs: dict[str, list[Sub]] = {}
        self.chan_subs: dict[str, list[Sub]] = {c: [] for c in CHANNELS if c != "orderbook_delta"}
        self.stall_until = 0.0
        self.duplicate_fills = 0
        self.stats = {"messages_out": 0, "book_messages_out": 0}

    # -- subscription bookkeeping ----------------------------------------------------------------
    def add_sub(self, conn: Conn, channel: str, tickers: set[str] | None) -> Sub:
        sub = Sub(conn.next_sid, channel, conn, tickers)
        conn.next_sid += 1
        conn.subs[sub.sid] = sub
        if channel == "orderbook_delta":
            for t in tickers or ():
                self.book_subs.setdefault(t, []).append(sub)
        else:
            self.chan_subs[channel].append(sub)
        if channel == "user_orders" and conn.account is not None:
            conn.account.order_watchers += 1
        return sub

    def remove_sub(self, sub: Sub) -> None:
        if sub.conn.subs.pop(sub.sid, None) is None:
            return
        if sub.channel == "user_orders" and sub.conn.account is not None:
            sub.conn.account.order_watchers -= 1
        if sub.channel == "orderbook_delta":
            for t in sub.tickers or ():
                lst = self.book_subs.get(t)
                if lst and sub in lst:
                    lst.remove(sub)
        else:
            lst = self.chan_subs[sub.channel]
            if sub in lst:
                lst.remove(sub)

    def add_markets(self, sub: Sub, tickers: list[str]) -> list[str]:
        new = [t for t in tickers if sub.tickers is None or t not in sub.tickers]
        if sub.tickers is None:
            return []
        for t in new:
            sub.tickers.add(t)
            if sub.channel == "orderbook_delta":
                self.book_subs.setdefault(t, []).append(sub)
        return new

    def delete_markets(self, sub: Sub, tickers: list[str]) -> None:
        if sub.tickers is None:
            return
        for t in tickers:
            if t in sub.tickers:
                sub.tickers.discard(t)
                if sub.channel == "orderbook_delta":
                    lst = self.book_subs.get(t)
                    if lst and sub in lst:
                        lst.remove(sub)

    def drop_conn(self, conn: Conn) -> None:
        for sub in list(conn.subs.values()):
            self.remove_sub(sub)
        conn.closed = True
        conn.wake.set()
        self.conns.discard(conn)

    # -- frames ----------------------------------------------------------------------------------
    def snapshot(self, sub: Sub, m: Market) -> None:
        yes, no = m.book_levels()
        msg: dict[str, Any] = {"market_ticker": m.ticker, "market_id": m.id}
        if yes:
            msg["yes_dollars_fp"] = [[fmt_price(p), fmt_count(s)] for p, s in yes]
        if no:
            msg["no_dollars_fp"] = [[fmt_price(p), fmt_count(s)] for p, s in no]
        self._send(sub, "orderbook_snapshot", msg, seq=True)

    def ticker_msg(self, m: Market) -> dict[str, Any]:
        bb, ba = m.best_bid(), m.best_ask()
        now = self.engine.wall_ms()
        return {"market_ticker": m.ticker, "market_id": m.id, "price_dollars": fmt_price(m.last_price),
                "yes_bid_dollars": fmt_price(bb), "yes_ask_dollars": fmt_price(ba) if ba else "1.0000",
                "yes_bid_size_fp": fmt_count(m.sizes[0].get(bb, 0)),
                "yes_ask_size_fp": fmt_count(m.sizes[1].get(ba, 0)),
                "last_trade_size_fp": fmt_count(m.last_size),
                "volume_fp": fmt_count(m.volume), "open_interest_fp": fmt_count(m.open_interest),
                "dollar_volume": m.dollar_volume // 10000, "dollar_open_interest": m.open_interest // 100,
                "ts": now // 1000, "ts_ms": now, "time": rfc3339(now)}

    def _send(self, sub: Sub, typ: str, msg: Any, seq: bool = False) -> None:
        if seq:
            frame = orjson.dumps({"type": typ, "sid": sub.sid, "seq": sub.next_seq(), "msg": msg})
        else:
            frame = orjson.dumps({"type": typ, "sid": sub.sid, "msg": msg})
        self._push(sub.conn, frame.decode())

    def _push(self, conn: Conn, frame: str) -> None:
        if conn.closed:
            return
        conn.push(frame)
        self.stats["messages_out"] += 1
        if len(conn.pending) > MAX_PENDING:
            log.warning("ws connection fell %d frames behind; cutting it off (error 25)", len(conn.pending))
            conn.pending.clear()
            conn.pending.append(orjson.dumps({"type": "error", "msg": {
                "code": 25, "msg": WS_ERRORS[25]}}).decode())
            for sub in list(conn.subs.values()):
                self.remove_sub(sub)

    def reply(self, conn: Conn, obj: dict[str, Any]) -> None:
        self._push(conn, orjson.dumps(obj).decode())

    # -- fan-out ---------------------------------------------------------------------------------
    def dispatch(self, events: list[tuple[Any, ...]]) -> None:
        """Turn engine events into frames for every interested subscription."""
        if not events or not self.conns:
            return
        tick: dict[str, Market] = {}
        ts_ms = self.engine.wall_ms()
        book_subs = self.book_subs
        ev: tuple[Any, ...]
        for ev in events:
            kind = ev[0]
            if kind == "d":
                _, m, side, px, delta, owner, coid, subacct = ev
                subs = book_subs.get(m.ticker)
                if not subs:
                    continue
                inner = (f'{{"market_ticker":"{m.ticker}","market_id":"{m.id}","price_dollars":"{fmt_price(px)}",'
                         f'"delta_fp":"{fmt_count(delta)}","side":"{side}","ts_ms":{ts_ms}')
                mine = None
                for sub in subs:
                    if owner is not None and sub.conn.account is owner:
                        if mine is None:
                            mine = (inner + ',"client_order_id":' + orjson.dumps(coid).decode()
                                    + f',"subaccount":{subacct}}}')
                        body = mine
                    else:
                        body = inner + "}"
                    self._push(sub.conn, f'{{"type":"orderbook_delta","sid":{sub.sid},"seq":{sub.next_seq()},'
                                         f'"msg":{body}}}')
                    self.stats["book_messages_out"] += 1
            elif kind == "k":
                tick[ev[1].ticker] = ev[1]
            elif kind == "t":
                m, trade = ev[1], ev[2]
                for sub in self.chan_subs["trade"]:
                    if sub.tickers is None or m.ticker in sub.tickers:
                        self._send(sub, "trade", trade, seq=True)
            elif kind == "f":
                acct, fill = ev[1], ev[2]
                times = 1
                if self.duplicate_fills:
                    self.duplicate_fills -= 1
                    times = 2
                for sub in self.chan_subs["fill"]:
                    if sub.conn.account is acct and (sub.tickers is None or fill["market_ticker"] in sub.tickers):
                        for _ in range(times):
                            self._send(sub, "fill", fill)
            elif kind == "o":
                acct, order = ev[1], ev[2]
                for sub in self.chan_subs["user_orders"]:
                    if sub.conn.account is acct and (sub.tickers is None or order["ticker"] in sub.tickers):
                        self._send(sub, "user_order", order)
            elif kind == "p":
                acct, m = ev[1], ev[2]
                pos: dict[str, Any] | None = None
                for sub in self.chan_subs["market_positions"]:
                    if sub.conn.account is acct and (sub.tickers is None or m.ticker in sub.tickers):
                        if pos is None:
                            assert acct is not None
                            pos = self.engine.position_wire(acct, m)
                        self._send(sub, "market_position", pos)
            elif kind == "g":
                acct, msg = ev[1], ev[2]
                for sub in self.chan_subs["order_group_updates"]:
                    if sub.conn.account is acct:
                        self._send(sub, "order_group_updates", msg, seq=True)
            elif kind == "l":
                m, life = ev[1], ev[2]
                typ = "market_lifecycle_v2"
                if "_type" in life:  # event_lifecycle rides the same channel
                    typ = life["_type"]
                    life = {k: v for k, v in life.items() if k != "_type"}
                for sub in self.chan_subs["market_lifecycle_v2"]:
                    if sub.tickers is None or m.ticker in sub.tickers:
                        self._send(sub, typ, life, seq=True)
        if tick and self.chan_subs["ticker"]:
            for t, m in tick.items():
                msg = None
                for sub in self.chan_subs["ticker"]:
                    if sub.tickers is None or t in sub.tickers:
                        if msg is None:
                            msg = self.ticker_msg(m)
                        self._send(sub, "ticker", msg)

    # -- faults ----------------------------------------------------------------------------------
    def skip_seq(self, n: int) -> None:
        for conn in self.conns:
            for sub in conn.subs.values():
                if sub.channel in SEQ_CHANNELS:
                    sub.skip += n


def money_str(m: int) -> str:
    return fmt_money(m)
