"""Kalshi WebSocket client on picows: signed handshake, subscriptions, books, user messages, reconnects.

Every received frame goes to the compiled ``BookRouter`` (which applies orderbook snapshots and deltas
straight from the bytes and checks per-sid seq), and only when the router says NOT_BOOK is it decoded
with orjson and dispatched to the typed callbacks; after its callbacks (and the decision and requests
they made) it goes to the raw-capture hook (``FeedHandler.on_raw_frame``), in arrival order with its
receive stamp. A handler that quotes on compiled pipelines supplies a compiled entry
(``FeedHandler.frame_entry``, :class:`kmm._core.entry.FrameEntry`) that takes every complete text
frame instead of :meth:`KalshiWs.handle_frame`: it feeds the router and decides a delta in C, and hands
every other frame to the same Python path (:meth:`KalshiWs._after_feed`). Nothing on this path raises
into the loop: malformed or unknown frames are logged (truncated) and counted.

What happens on each failure (design section 6):
- seq gap: the router marks every book of that sid stale; ``on_book_stale`` fires at once and the
  client asks for fresh snapshots (``update_subscription get_snapshot``). If they do not arrive within
  ``resync_timeout_s``, the orderbook channel is resubscribed. ``on_book_ready`` fires on the snapshot.
- nothing received (pings included) for ``ws_dead_after_s``: the connection is treated as dead.
- disconnect: every book goes stale (``on_book_stale``), ``on_disconnected`` fires, and the client
  reconnects with exponential backoff and jitter, re-signs, resubscribes and resnapshots; then
  ``on_connected`` fires so the engine can backfill fills and reconcile.
- duplicate ``fill`` frames (same trade_id) are dropped here (a bounded window of recent trade_ids) and
  counted in ``stats.duplicate_fills``; the engine should still dedupe its REST backfill by trade_id.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from picows import WSError, WSHandshakeError, WSListener, WSMsgType, ws_connect

from kmm import protocol
from kmm.errors import AuthError, KmmError
from kmm.kalshi import decode as wire
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.signing import Signer
from kmm.kalshi.types import Fill, Lifecycle, MarketPosition, OrderGroupUpdate, Ticker, Trade, UserOrder

_CompiledListener: Any = None
try:     # the compiled listener is built against picows' declarations: a different picows cannot load it
    from kmm._core.listener import FeedListener
    _CompiledListener, _NO_COMPILED_LISTENER = FeedListener, ""
except (ImportError, ValueError) as _exc:   # pragma: no cover - only with a picows kmm was not built with
    _NO_COMPILED_LISTENER = str(_exc)

log = logging.getLogger("kmm.kalshi.ws")

# BookRouter.feed statuses (kmm._core.wire module constants; same values).
NOT_BOOK, SNAPSHOT, DELTA, GAP, STALE_SKIPPED, UNKNOWN_MARKET, MALFORMED = range(7)

BOOK_CHANNEL = "orderbook_delta"
MARKET_CHANNELS = ("orderbook_delta", "ticker", "trade")  # subscribed per market
USER_CHANNELS = ("fill", "user_orders", "market_positions")  # whole account, no market filter
ORDER_GROUP_CHANNEL = "order_group_updates"
# Channels subscribed in a command of their own, and dropped (with a warning) when the server does not
# know them (error 8): a server without order-group updates must not keep the connection from coming up.
OPTIONAL_CHANNELS = (ORDER_GROUP_CHANNEL,)
DEFAULT_CHANNELS = MARKET_CHANNELS + USER_CHANNELS + (ORDER_GROUP_CHANNEL,)
LIFECYCLE_CHANNEL = "market_lifecycle_v2"
# Frame types that are known and carry nothing the connector acts on
IGNORED_TYPES = frozenset({"event_lifecycle", "event_fee_update", "multivariate_market_lifecycle"})

_TRUNC = 200


def _trunc(data: bytes) -> str:
    return repr(data[:_TRUNC]) + ("…" if len(data) > _TRUNC else "")


class WsError(KmmError):
    """An error frame from the exchange's WebSocket (kalshi-api.md section 3.3)."""

    def __init__(self, code: int, message: str, *, cmd_id: int | None = None, sid: int | None = None) -> None:
        self.code = code
        self.message = message
        self.cmd_id = cmd_id
        self.sid = sid
        known = protocol.WS_ERRORS.get(code, "unknown code")
        super().__init__(f"websocket error {code} ({known}): {message} [cmd id {cmd_id}, sid {sid}]")


class FeedHandler:
    """Callbacks the engine overrides. All run synchronously on the event loop, in frame order; keep
    them short (schedule tasks for anything slow). ``recv_ns`` is the frame's monotonic receive time."""

    def on_connected(self) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...
    def on_book(self, ticker: str, recv_ns: int) -> None: ...          # a snapshot or delta was applied
    def on_book_stale(self, ticker: str, reason: str) -> None: ...     # stop quoting off this book
    def on_book_ready(self, ticker: str) -> None: ...                  # fresh snapshot applied
    def on_fill(self, fill: Fill) -> None: ...
    def on_user_order(self, order: UserOrder) -> None: ...
    def on_market_position(self, position: MarketPosition) -> None: ...
    def on_trade(self, trade: Trade) -> None: ...
    def on_ticker(self, ticker: Ticker) -> None: ...
    def on_lifecycle(self, event: Lifecycle) -> None: ...             # after any regrid it caused
    def on_order_group(self, update: OrderGroupUpdate) -> None: ...
    def on_error(self, error: Exception) -> None: ...
    def on_raw_frame(self, recv_ns: int, data: bytes) -> None: ...     # raw capture; only called if overridden

    def frame_entry(self, ws: KalshiWs) -> Any:
        """A compiled entry that takes every complete text frame instead of :meth:`KalshiWs.handle_frame`
        (``entry.feed(data, recv_ns)``; :class:`kmm._core.entry.FrameEntry`), or None (the default):
        asked when the handler is bound, after ``ws``'s router and raw hook are set."""
        return None


@dataclass(slots=True)
class WsStats:
    frames: int = 0
    book_frames: int = 0
    malformed: int = 0
    unknown_type: int = 0
    unknown_market: int = 0
    gaps: int = 0
    resync_requests: int = 0
    resubscribes: int = 0
    connects: int = 0
    disconnects: int = 0
    dead_detected: int = 0
    pings: int = 0
    duplicate_fills: int = 0
    error_frames: int = 0
    callback_errors: int = 0
    last_recv_ns: int = 0
    regrids: int = 0
    order_group_gaps: int = 0
    internal_errors: int = 0        # a bug caught by handle_frame's last guard (never expected)
    bad_by_type: dict[str, int] = field(default_factory=dict)   # malformed messages per frame type


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [base/2, base], base = min(max_s, min_s * 2**attempt)."""
    base = min(max_s, min_s * (2.0 ** min(attempt, 30)))
    return base * (0.5 + 0.5 * rng.random())


def _default_router() -> Any:
    from kmm._core.wire import BookRouter  # compiled; imported lazily so tests can inject a stand-in
    return BookRouter()


def _default_book_factory(price_ranges: Any) -> Any:
    from kmm._core.book import OrderBook
    return OrderBook(price_ranges)


STABLE_AFTER_NS = 10_000_000_000   # a connection up this long resets the reconnect backoff


class KalshiWs:
    """One authenticated WebSocket carrying books, public market data and our user channels."""

    def __init__(self, config: ConnectorConfig, handler: FeedHandler | None = None, *,
                 signer: Signer | None = None, router: Any = None,
                 book_factory: Callable[[Any], Any] | None = None,
                 channels: Iterable[str] = DEFAULT_CHANNELS, lifecycle: bool = False,
                 rng: random.Random | None = None, clock_ns: Callable[[], int] = time.monotonic_ns,
                 resync_timeout_s: float = 5.0, fill_dedupe_window: int = 65536,
                 connect: Callable[..., Any] | None = None, auto_regrid: bool = True) -> None:
        if not config.ws_url:
            raise KmmError("ConnectorConfig.ws_url is empty; point it at a Kalshi-compatible server")
        config.require_prod_opt_in()
        self.config = config
        self.handler = handler or FeedHandler()
        self.signer = signer if signer is not None else (
            Signer.from_config(config) if config.has_credentials else None)
        self.router = router if router is not None else _default_router()
        self._book_factory = book_factory or _default_book_factory
        chans = tuple(channels)
        self.market_channels = tuple(c for c in chans if c in MARKET_CHANNELS)
        self.account_channels = tuple(c for c in chans if c not in MARKET_CHANNELS) + (
            (LIFECYCLE_CHANNEL,) if lifecycle and LIFECYCLE_CHANNEL not in chans else ())
        self.unsupported_channels: set[str] = set()   # optional channels the server refused (error 8)
        self.auto_regrid = auto_regrid
        self._group_seq: dict[int, int] = {}
        self._rng = rng or random.Random()
        self._clock = clock_ns
        self.resync_timeout_ns = int(resync_timeout_s * 1e9)
        self._connect = connect
        self.stats = WsStats()
        # desired state
        self._markets: dict[str, Any] = {}
        self._books: dict[str, Any] = {}
        # per-connection state
        self._transport: Any = None
        self._next_id = 1
        self._pending: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        self._sid_channel: dict[int, str] = {}
        self._channel_sid: dict[str, int] = {}
        self._channel_markets: dict[str, set[str]] = {}
        self._ready: set[str] = set()
        self._resync_deadline: dict[int, int] = {}
        self._fragments: list[bytes] | None = None
        self._seen_fills: OrderedDict[str, None] = OrderedDict()
        self._fill_window = fill_dedupe_window
        # lifecycle
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing = False
        self._connected_evt: asyncio.Event | None = None
        self._attempt = 0
        self._up_since = 0              # monotonic ns when every subscription was acknowledged
        self._announced_conn = -1
        self._close_reason = ""
        self.last_disconnect_reason = ""
        self._bind_handler()
        self._dispatch: dict[str, Callable[[dict[str, Any], dict[str, Any], int], None]] = {
            "fill": self._on_fill_msg,
            "user_order": self._on_user_order_msg,
            "market_position": self._on_position_msg,
            "trade": self._on_trade_msg,
            "ticker": self._on_ticker_msg,
            "market_lifecycle_v2": self._on_lifecycle_msg,
            "order_group_updates": self._on_order_group_msg,
            "subscribed": self._on_subscribed,
            "ok": self._on_ok,
            "unsubscribed": self._on_unsubscribed,
            "error": self._on_error_frame,
        }

    def _bind_handler(self) -> None:
        self._raw = self._raw_hook()
        self._on_book = self.handler.on_book
        make = getattr(self.handler, "frame_entry", None)
        self.entry = make(self) if make is not None else None
        # every complete text frame goes here, with whether it ended its socket read: the handler's
        # compiled entry, or the Python path
        self._feed: Callable[[bytes, int, bool], int] = (self.entry.feed if self.entry is not None
                                                         else self.handle_frame)

    _said_no_listener = False

    def _listener_factory(self) -> Callable[[], Any]:
        """The picows listener of a new connection: the compiled one (``kmm._core.listener``) unless
        ``compiled_listener`` is off or it cannot be loaded (said once in the log), else the Python one;
        both do the same (tests/kalshi/test_ws_frames.py)."""
        if self.config.compiled_listener:
            if _CompiledListener is not None:
                return lambda: _CompiledListener(self)
            if not self._said_no_listener:
                self._said_no_listener = True
                log.warning("the compiled WebSocket listener cannot be loaded (%s): using the Python one; "
                            "reinstall kmm with the picows version it pins", _NO_COMPILED_LISTENER)
        return lambda: _Listener(self)

    def _raw_hook(self) -> Callable[[int, bytes], None] | None:
        if type(self.handler).on_raw_frame is FeedHandler.on_raw_frame:
            return None
        return self.handler.on_raw_frame

    def set_handler(self, handler: FeedHandler) -> None:
        self.handler = handler
        self._bind_handler()

    # -- public API ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def markets(self) -> list[str]:
        return list(self._markets)

    def book(self, ticker: str) -> Any:
        """The book for ``ticker`` (the object passed to ``router.add``; KeyError if not followed)."""
        return self._books[ticker]

    def is_ready(self, ticker: str) -> bool:
        return ticker in self._ready

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; returns once the first connection is up (the client keeps reconnecting)."""
        if self._task is not None:
            return
        self._closing = False
        self._connected_evt = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="kmm-kalshi-ws")
        try:
            await asyncio.wait_for(self._connected_evt.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise KmmError(f"no WebSocket connection to {self.config.ws_url} within {timeout_s} s "
                           f"(last error: {self.last_disconnect_reason or 'none'})") from None

    async def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.disconnect()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # closing anyway; keep the cause visible instead of dropping it
                log.debug("websocket task ended with an error while closing", exc_info=True)
            self._task = None
        self._stop_watchdog()

    async def __aenter__(self) -> KalshiWs:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def add_markets(self, markets: Mapping[str, Any] | Iterable[str]) -> None:
        """Follow more markets: ``{ticker: Market | price_ranges}``, or bare tickers (default grid:
        $0.01 steps, wrong for deci-cent markets). Price ranges may be a ``Market``, its int ranges,
        the wire's ``[{start, end, step}]`` or a ``price_level_structure`` name."""
        items = markets.items() if isinstance(markets, Mapping) else ((t, None) for t in markets)
        added = []
        for ticker, ranges in items:
            if ticker in self._markets:
                continue
            ranges = wire.price_ranges_for_book(ranges)
            self._markets[ticker] = ranges
            book = self._book_factory(ranges)
            self._books[ticker] = book
            self.router.add(ticker, book)
            added.append(ticker)
        if added and self._transport is not None:
            self._sync_market_channels()

    def remove_markets(self, tickers: Iterable[str]) -> None:
        """Stop following markets: unsubscribed from their channels and dropped from the router."""
        removed = [t for t in tickers if self._markets.pop(t, None) is not None or t in self._books]
        for t in removed:
            if t in self._ready:
                self._ready.discard(t)
                self._call(self.handler.on_book_stale, t, "removed")
            self._books.pop(t, None)
            try:
                self.router.remove(t)
            except KeyError:
                pass
        if removed and self._transport is not None:
            self._sync_market_channels()

    def regrid(self, ticker: str, price_ranges: Any) -> None:
        """Move a followed market to a new price grid (lifecycle ``price_level_structure_updated``):
        the book is emptied in place on the new grid, marked stale (``on_book_stale`` fires, so quotes
        come down) and a fresh snapshot is requested; ``on_book_ready`` fires when it lands.
        ``price_ranges``: the Lifecycle's int ranges, wire dicts, a ``Grid`` or a structure name.
        Raises KeyError for a market not followed and ValueError for bad ranges (nothing changed)."""
        if ticker not in self._markets:
            raise KeyError(f"market {ticker!r} is not followed; add_markets() it first")
        ranges = wire.price_ranges_for_book(price_ranges)
        self.router.regrid(ticker, ranges)
        self._markets[ticker] = ranges
        self.stats.regrids += 1
        self.request_snapshot([ticker], reason="price grid changed")

    def request_snapshot(self, tickers: Iterable[str], reason: str = "requested", *, mark_stale: bool = True) -> None:
        """Ask the exchange for fresh snapshots; the books are marked stale first unless ``mark_stale``
        is false (a quiet check of a book that is still in sequence)."""
        by_sid: dict[int, list[str]] = {}
        for t in tickers:
            if mark_stale:
                self._mark_stale(t, reason)
            sid = self._channel_sid.get(BOOK_CHANNEL)
            if sid is not None:
                by_sid.setdefault(sid, []).append(t)
        for sid, ts in by_sid.items():
            self._send_get_snapshot(sid, ts)

    # -- connection loop -----------------------------------------------------------------------
    def _ws_path(self) -> str:
        return urlsplit(self.config.ws_url).path or protocol.WS_PATH

    async def _run(self) -> None:
        connect = self._connect or ws_connect
        tls: dict[str, Any] = {}
        if urlsplit(self.config.ws_url).scheme == "wss":  # verified; ca_file or the system trust store
            tls["ssl_context"] = self.config.ssl_context()
            # bound the TLS handshake too (picows' handshake timeout starts after it; asyncio's default is 60 s)
            tls["ssl_handshake_timeout"] = self.config.connect_timeout_s
        while not self._closing:
            reason = ""
            try:
                headers = self.signer.ws_headers(self._ws_path()) if self.signer is not None else {}
                transport, _ = await connect(
                    self._listener_factory(), self.config.ws_url, extra_headers=headers,
                    enable_auto_pong=False, websocket_handshake_timeout=self.config.ws_handshake_timeout_s,
                    max_frame_size=64 * 1024 * 1024, **tls)
            except WSHandshakeError as exc:
                status = getattr(getattr(exc, "response", None), "status", None)
                if status in (401, 403):
                    err: Exception = AuthError(f"WebSocket handshake to {self.config.ws_url} refused (HTTP "
                                               f"{int(status)}); check the api key id, key file and clock")
                else:
                    err = KmmError(f"WebSocket handshake to {self.config.ws_url} failed: {exc}")
                reason = str(err)
                self._call(self.handler.on_error, err)
            except ssl.SSLCertVerificationError as exc:
                tls_err = KmmError(f"WebSocket to {self.config.ws_url}: certificate verify failed: "
                                   f"{exc.verify_message}; the server's TLS certificate is not trusted: set "
                                   "kalshi.ca_file to the PEM bundle of the CA that signed it, or fix the "
                                   "system's trust store")
                reason = str(tls_err)
                self._call(self.handler.on_error, tls_err)
            except (OSError, asyncio.TimeoutError, WSError) as exc:
                reason = f"connect failed: {type(exc).__name__}: {exc}"
            else:
                self._on_open(transport)
                try:
                    await transport.wait_disconnected()
                finally:
                    reason = self._on_closed()
            if self._closing:
                break
            self.last_disconnect_reason = reason
            if self._up_since and self._clock() - self._up_since >= STABLE_AFTER_NS:
                self._attempt = 0          # it had been up long enough: start the backoff over
            self._up_since = 0
            delay = backoff_delay(self._attempt, self.config.reconnect_min_s, self.config.reconnect_max_s,
                                  self._rng)
            self._attempt += 1
            log.warning("websocket down (%s); reconnecting in %.2f s (attempt %d)", reason, delay, self._attempt)
            await asyncio.sleep(delay)

    def _on_open(self, transport: Any) -> None:
        self._transport = transport
        self.stats.connects += 1
        self._next_id = 1
        self._pending.clear()
        self._sid_channel.clear()
        self._channel_sid.clear()
        self._channel_markets.clear()
        self._resync_deadline.clear()
        self._fragments = None
        self.stats.last_recv_ns = self._clock()
        self._close_reason = ""
        # Fresh subscriptions: new sids, new seq bases, a snapshot per market. The server numbers sids
        # per connection, so the router must forget the old ones.
        self.router.reset()
        plain = tuple(c for c in self.account_channels if c not in OPTIONAL_CHANNELS)
        if plain:
            self._send_cmd("subscribe", {"channels": list(plain)}, plain, ())
        for ch in self.account_channels:
            if ch in OPTIONAL_CHANNELS and ch not in self.unsupported_channels:
                self._send_cmd("subscribe", {"channels": [ch]}, (ch,), ())
        self._group_seq.clear()
        self._sync_market_channels()
        self._maybe_all_subscribed()  # nothing to subscribe to: up at once
        self._start_watchdog()
        log.info("websocket connected to %s; %d markets", self.config.ws_url, len(self._markets))

    def _on_closed(self) -> str:
        reason = self._close_reason or "closed by peer"
        self._transport = None
        self._stop_watchdog()
        self.stats.disconnects += 1
        self.router.mark_all_stale()
        for t in list(self._ready):
            self._call(self.handler.on_book_stale, t, "disconnected")
        self._ready.clear()
        self._call(self.handler.on_disconnected, reason)
        return reason

    def _on_all_subscribed(self) -> None:
        """Everything we asked for is acknowledged: the connection counts as up (the reconnect backoff
        is reset only once it has stayed up a while, so a server that accepts and drops at once does
        not get a reconnect storm)."""
        self._up_since = self._clock()
        if self._connected_evt is not None:
            self._connected_evt.set()
        self._call(self.handler.on_connected)

    # -- watchdog --------------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        self._stop_watchdog()
        period = max(0.05, self.config.ws_dead_after_s / 4)
        self._watchdog = asyncio.get_running_loop().call_later(period, self._check_alive)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check_alive(self) -> None:
        self._watchdog = None
        if self._transport is None:
            return
        now = self._clock()
        idle_ns = now - self.stats.last_recv_ns
        if idle_ns > self.config.ws_dead_after_s * 1e9:
            self.stats.dead_detected += 1
            self._close_reason = f"dead: nothing received for {idle_ns / 1e9:.1f} s"
            log.warning("websocket %s; dropping the connection", self._close_reason)
            self._transport.disconnect(graceful=False)
            return
        for sid, deadline in list(self._resync_deadline.items()):
            if now > deadline:
                log.warning("snapshots for sid %d did not arrive in time; resubscribing %s", sid, BOOK_CHANNEL)
                del self._resync_deadline[sid]
                self._resubscribe(BOOK_CHANNEL)
        self._start_watchdog()

    # -- commands --------------------------------------------------------------------------------
    def _send_cmd(self, cmd: str, params: dict[str, Any], channels: tuple[str, ...],
                  tickers: tuple[str, ...]) -> int | None:
        if self._transport is None:
            return None
        cmd_id = self._next_id
        self._next_id += 1
        self._pending[cmd_id] = (cmd, channels, tickers)
        self._transport.send(WSMsgType.TEXT, orjson.dumps({"id": cmd_id, "cmd": cmd, "params": params}))
        return cmd_id

    def _sync_market_channels(self) -> None:
        """Bring each market channel's server-side market set to the desired set."""
        want = set(self._markets)
        for ch in self.market_channels:
            sid = self._channel_sid.get(ch)
            have = self._channel_markets.get(ch)
            if sid is None:
                if have is None and want:  # not subscribed and no subscribe in flight
                    tickers = tuple(sorted(want))
                    self._channel_markets[ch] = set(tickers)
                    self._send_cmd("subscribe", {"channels": [ch], "market_tickers": list(tickers)}, (ch,), tickers)
                continue
            assert have is not None
            add = sorted(want - have)
            drop = sorted(have - want)
            if add:
                have.update(add)
                self._send_cmd("update_subscription", {"sids": [sid], "action": "add_markets",
                                                       "market_tickers": add}, (ch,), tuple(add))
            if drop:
                have.difference_update(drop)
                self._send_cmd("update_subscription", {"sids": [sid], "action": "delete_markets",
                                                       "market_tickers": drop}, (ch,), tuple(drop))

    def _send_get_snapshot(self, sid: int, tickers: list[str]) -> None:
        self.stats.resync_requests += 1
        self._resync_deadline[sid] = self._clock() + self.resync_timeout_ns
        self._send_cmd("update_subscription", {"sids": [sid], "action": "get_snapshot",
                                               "market_tickers": sorted(tickers)}, (BOOK_CHANNEL,), tuple(tickers))

    def _resubscribe(self, channel: str) -> None:
        self.stats.resubscribes += 1
        sid = self._channel_sid.pop(channel, None)
        if sid is not None:
            self._sid_channel.pop(sid, None)
            self._resync_deadline.pop(sid, None)
            self._send_cmd("unsubscribe", {"sids": [sid]}, (channel,), ())
            if channel == BOOK_CHANNEL:
                self.router.forget_sid(sid)
        self._channel_markets.pop(channel, None)
        if channel == BOOK_CHANNEL:
            for t in list(self._markets):
                self._mark_stale(t, "resubscribing")
        if channel in self.market_channels:
            self._sync_market_channels()
        else:
            self._send_cmd("subscribe", {"channels": [channel]}, (channel,), ())

    # -- frames ----------------------------------------------------------------------------------
    def handle_frame(self, data: bytes, recv_ns: int, last: bool = True) -> int:
        """Process one complete text frame. Returns the router status. ``last`` (the last frame of its
        socket read) is not used here: the Python path decides every frame as it comes; a compiled
        entry takes it (:meth:`kmm._core.entry.FrameEntry.feed`). Never raises: a frame kmm cannot
        read is logged with its type and a truncated copy, counted (``stats.malformed``,
        ``stats.bad_by_type``) and skipped; callbacks that raise are logged and counted
        (``stats.callback_errors``); anything else is a kmm bug, caught here as the last guard
        (``stats.internal_errors``) so that the feed survives it."""
        stats = self.stats
        stats.frames += 1
        stats.last_recv_ns = recv_ns
        try:
            status: int = self.router.feed(data, recv_ns)
        except Exception as exc:  # the router should not raise; never let it kill the feed
            return self._after_feed(data, recv_ns, -1, exc)
        return self._after_feed(data, recv_ns, status)

    def _after_feed(self, data: bytes, recv_ns: int, status: int, exc: Exception | None = None) -> int:
        """A frame after the router (``status``; -1: the router raised ``exc``): :meth:`handle_frame`'s
        second half, and where a compiled entry (:meth:`FeedHandler.frame_entry`) that counted the frame
        and fed the router itself hands over every frame it does not decide itself (a delta is counted
        and given to ``on_book``). The raw capture after the frame's callbacks, off the path to its
        decision: frames are still captured one by one in arrival order, each with its receive stamp.
        Never raises."""
        stats = self.stats
        try:
            if status < 0:
                stats.malformed += 1
                log.warning("book router raised %s on frame %s", exc, _trunc(data))
                return MALFORMED
            if status == DELTA:
                stats.book_frames += 1
                try:
                    self._on_book(self.router.last_ticker, recv_ns)
                except Exception:
                    stats.callback_errors += 1
                    log.exception("on_book raised")
            else:
                self._not_delta(data, recv_ns, status)
            return status
        except Exception:
            stats.internal_errors += 1
            log.exception("internal error on frame %s (skipped; please report)", _trunc(data))
            return MALFORMED
        finally:
            if self._raw is not None:
                try:
                    self._raw(recv_ns, data)
                except Exception:
                    stats.callback_errors += 1
                    log.exception("on_raw_frame failed")

    def _other_frame(self, transport: Any, frame: Any, recv_ns: int, last: bool) -> None:
        """Every frame a listener does not feed (both listeners, Python and compiled, send them here,
        with the read's receive stamp): a fragment of a text frame (reassembled, then fed), a ping
        (answered), a pong, a close. A read that ends on such a frame has its pending decisions made."""
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
            self._fragments = [frame.get_payload_as_bytes()]         # the first of several (not fin)
        elif mt is WSMsgType.CONTINUATION:
            if self._fragments is None:
                self.stats.malformed += 1
            else:
                self._fragments.append(frame.get_payload_as_bytes())
                if frame.fin:
                    data = b"".join(self._fragments)
                    self._fragments = None
                    self._feed(data, recv_ns, last)
                    return
        elif mt is WSMsgType.PING:
            self.stats.pings += 1
            self.stats.last_recv_ns = recv_ns
            transport.send_pong(frame.get_payload_as_bytes())
        elif mt is WSMsgType.PONG:
            self.stats.last_recv_ns = recv_ns
        elif mt is WSMsgType.CLOSE:
            self._close_reason = f"closed by server ({frame.get_close_code()})"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        if last:
            entry = self.entry
            if entry is not None and entry.open:
                entry.end_read()       # the read ended on a frame that was not fed

    def _not_delta(self, data: bytes, recv_ns: int, status: int) -> None:
        """A frame the router did not apply as a delta (its ``status``): dispatch, ready, gap, resync."""
        stats = self.stats
        router = self.router
        if status == NOT_BOOK:
            self._dispatch_json(data, recv_ns)
        elif status == SNAPSHOT:
            stats.book_frames += 1
            ticker = router.last_ticker
            sid = router.last_sid
            if sid in self._resync_deadline and not any(
                    router.is_stale(t) for t in self._markets if router.sid_of(t) == sid):
                del self._resync_deadline[sid]  # every book of the sid is fresh again
            if ticker not in self._ready and ticker in self._markets:
                self._ready.add(ticker)
                self._call(self.handler.on_book_ready, ticker)
            self._call(self.handler.on_book, ticker, recv_ns)
        elif status == GAP:
            stats.gaps += 1
            self._on_gap(router.last_sid)
        elif status == STALE_SKIPPED:
            self._resync_if_ready(router.last_ticker, "delta for a stale book")
        elif status == UNKNOWN_MARKET:
            stats.unknown_market += 1
            log.debug("book frame for a market not followed: %s", _trunc(data))
        else:
            self._count_bad("orderbook", str(getattr(router, "last_error", "")), data)
            self._resync_if_ready(router.last_ticker, "book desync")

    def _count_bad(self, typ: str, why: str, data: bytes) -> None:
        """Count a malformed message and log it (every one of the first 100, then every 1000th)."""
        stats = self.stats
        stats.malformed += 1
        stats.bad_by_type[typ] = stats.bad_by_type.get(typ, 0) + 1
        if stats.malformed <= 100 or stats.malformed % 1000 == 0:
            log.warning("bad %s message skipped (%s; %d malformed so far): %s", typ, why, stats.malformed,
                        _trunc(data))

    def _resync_if_ready(self, ticker: str | None, reason: str) -> None:
        """The router stopped applying a book we announced as ready: say so and ask for a snapshot."""
        if ticker is None or ticker not in self._ready or not self.router.is_stale(ticker):
            return
        self._mark_stale(ticker, reason)
        sid = self._channel_sid.get(BOOK_CHANNEL)
        if sid is not None and self._transport is not None:
            self._send_get_snapshot(sid, [ticker])

    def _on_gap(self, sid: int) -> None:
        tickers = [t for t in self._markets if self.router.sid_of(t) == sid]
        for t in tickers:
            self._mark_stale(t, f"seq gap on sid {sid}")
        log.warning("seq gap on sid %d: %d books stale, requesting snapshots", sid, len(tickers))
        if tickers and self._transport is not None:
            self._send_get_snapshot(sid, tickers)

    def _mark_stale(self, ticker: str, reason: str) -> None:
        self.router.mark_stale(ticker)
        if ticker in self._ready:
            self._ready.discard(ticker)
            self._call(self.handler.on_book_stale, ticker, reason)

    def _dispatch_json(self, data: bytes, recv_ns: int) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._count_bad("?", f"not JSON: {exc}", data)
            return
        if not isinstance(obj, dict):
            self._count_bad("?", "not a JSON object", data)
            return
        typ = obj.get("type")
        if not isinstance(typ, str):
            self._count_bad("?", f"field type: {typ!r:.40} is not a string", data)
            return
        fn = self._dispatch.get(typ)
        if fn is None:
            if typ not in IGNORED_TYPES:
                self.stats.unknown_type += 1
                log.info("unknown frame type %r: %s", typ[:40], _trunc(data))
            return
        msg = obj.get("msg")
        if msg is None:
            msg = {}
        try:
            fn(obj, msg, recv_ns)
        except wire.WireError as exc:
            self._unreadable(typ, exc, data)

    def _unreadable(self, typ: str, exc: Exception, data: bytes) -> None:
        """A message of type ``typ`` that could not be read: counted and logged; for our own state
        (fill, user_order, market_position) the engine is told, and reads it over REST."""
        self._count_bad(typ, str(exc), data)
        if typ in ("fill", "user_order", "market_position"):
            self._call(self.handler.on_error, wire.WireError(f"unreadable {typ} message: {exc}"))

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("callback %s raised", getattr(fn, "__name__", fn))

    # user and public messages
    def _on_fill_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        fill = wire.decode_fill(msg, recv_ns)
        seen = self._seen_fills
        if fill.trade_id in seen:
            self.stats.duplicate_fills += 1
            log.info("duplicate fill %s dropped", fill.trade_id)
            return
        seen[fill.trade_id] = None
        if len(seen) > self._fill_window:
            seen.popitem(last=False)
        self._call(self.handler.on_fill, fill)

    def _on_user_order_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        self._call(self.handler.on_user_order, wire.decode_user_order(msg, recv_ns))

    _loop: asyncio.AbstractEventLoop | None = None     # the loop start() ran on

    def _on_position_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        """``market_position``: a check of the portfolio against the exchange's count, which nothing
        decides on, so it is decoded and handed over after the socket read it came in (``call_soon``,
        in arrival order): the decisions of that read (the fill just before it asks for one) do not
        wait for it. A message that cannot be read is counted and reported as before."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon(self._position_after_read, obj, msg, recv_ns)
        else:
            self._call(self.handler.on_market_position, wire.decode_market_position(msg, recv_ns))

    def _position_after_read(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        try:
            pos = wire.decode_market_position(msg, recv_ns)
        except wire.WireError as exc:
            self._unreadable("market_position", exc, orjson.dumps(obj))
            return
        self._call(self.handler.on_market_position, pos)

    def _on_trade_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        self._call(self.handler.on_trade, wire.decode_trade(msg, recv_ns))

    def _on_ticker_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        self._call(self.handler.on_ticker, wire.decode_ticker(msg, recv_ns))

    def _on_lifecycle_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        event = wire.decode_lifecycle(msg, recv_ns)
        if (event.event_type == "price_level_structure_updated" and self.auto_regrid
                and event.ticker in self._markets and event.price_ranges):
            self.regrid(event.ticker, event.price_ranges)
            log.warning("%s moved to price grid %s %s: book emptied, waiting for a fresh snapshot",
                        event.ticker, event.price_level_structure, event.price_ranges)
        self._call(self.handler.on_lifecycle, event)

    def _on_order_group_msg(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        update = wire.decode_order_group_update(obj, msg, recv_ns)
        last = self._group_seq.get(update.sid)
        if last is not None and update.seq and update.seq != last + 1:
            self.stats.order_group_gaps += 1
            log.warning("order_group_updates seq %d after %d on sid %d: an update was missed; read the groups "
                        "over REST", update.seq, last, update.sid)
            self._call(self.handler.on_error, wire.WireError(
                f"order_group_updates seq gap on sid {update.sid} ({last} -> {update.seq})"))
        if update.seq:
            self._group_seq[update.sid] = update.seq
        self._call(self.handler.on_order_group, update)

    # command responses
    def _on_subscribed(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        if not isinstance(msg, dict):
            raise wire.WireError("subscribed frame: msg is not an object")
        channel = msg.get("channel")
        sid = msg.get("sid")
        if not isinstance(channel, str) or not isinstance(sid, int) or isinstance(sid, bool):
            raise wire.WireError("subscribed frame without channel/sid")
        self._sid_channel[sid] = channel
        self._channel_sid[channel] = sid
        if channel in self.market_channels:
            self._channel_markets.setdefault(channel, set())
            self._sync_market_channels()  # markets added while the subscribe was in flight
        cmd_id = _cmd_id(obj)
        pending = self._pending.get(cmd_id) if cmd_id is not None else None
        if pending is not None:
            # one "subscribed" per channel: the command is done when every channel has a sid
            if all(c in self._channel_sid for c in pending[1]):
                self._pending.pop(cmd_id, None)  # type: ignore[arg-type]
        self._maybe_all_subscribed()

    def _maybe_all_subscribed(self) -> None:
        want = set(self.account_channels) - self.unsupported_channels
        if self._markets:
            want.update(self.market_channels)
        if want <= set(self._channel_sid) and self._announced_conn != self.stats.connects:
            self._announced_conn = self.stats.connects
            self._on_all_subscribed()

    def _on_ok(self, obj: dict[str, Any], msg: Any, recv_ns: int) -> None:
        self._pending.pop(_cmd_id(obj), None)  # type: ignore[arg-type]
        self._note_seq(obj)

    def _on_unsubscribed(self, obj: dict[str, Any], msg: Any, recv_ns: int) -> None:
        self._pending.pop(_cmd_id(obj), None)  # type: ignore[arg-type]
        self._note_seq(obj)

    def _note_seq(self, obj: dict[str, Any]) -> None:
        """Command answers may carry the subscription's seq (kalshi-api.md 3.3 [U] whether they consume
        a number): let the router move past it so the next delta is not taken for a gap."""
        sid, seq = obj.get("sid"), obj.get("seq")
        if (type(sid) is int and type(seq) is int and 0 < sid < 2**63 and 0 <= seq < 2**63
                and self._sid_channel.get(sid) == BOOK_CHANNEL):
            self.router.note_seq(sid, seq)

    def _on_error_frame(self, obj: dict[str, Any], msg: dict[str, Any], recv_ns: int) -> None:
        self.stats.error_frames += 1
        raw_code = msg.get("code", 0) if isinstance(msg, dict) else 0
        code = raw_code if type(raw_code) is int else 0
        text = msg.get("msg", "") if isinstance(msg, dict) else msg
        text = text if isinstance(text, str) else repr(text)[:120]
        cmd_id = _cmd_id(obj)
        raw_sid = obj.get("sid")
        if raw_sid is None and isinstance(msg, dict):
            raw_sid = msg.get("sid")      # [U] CL Sep 10: sid on subscription errors
        sid = raw_sid if type(raw_sid) is int else None
        pending = self._pending.pop(cmd_id, None) if cmd_id is not None else None
        err = WsError(code, text[:500], cmd_id=cmd_id, sid=sid)
        if (code == 8 and pending is not None and pending[0] == "subscribe"
                and all(ch in OPTIONAL_CHANNELS for ch in pending[1])):
            # an optional channel this server does not offer: expected, not an error for the engine
            self.unsupported_channels.update(pending[1])
            log.warning("the server does not offer %s; continuing without it", ", ".join(pending[1]))
            self._maybe_all_subscribed()
            return
        log.warning("%s (command %s)", err, pending[0] if pending else "?")
        self._call(self.handler.on_error, err)
        if code in protocol.WS_ERRORS_NEED_RESUBSCRIBE:
            channel = self._sid_channel.get(sid) if sid is not None else None
            channels = [channel] if channel else list(pending[1]) if pending else list(self._channel_sid)
            for ch in channels:
                self._resubscribe(ch)
            if any(ch in self.account_channels for ch in channels):
                # fills or order updates may have been lost while that channel was down: tell the
                # engine as for a reconnect (on_disconnected now, on_connected once resubscribed), so it
                # cancels, backfills over REST and reconciles
                self._announced_conn = -1
                self._call(self.handler.on_disconnected, f"user channel error {code}: resubscribing")
                self.request_snapshot(list(self._ready), reason=f"user channel error {code}")
        elif pending is not None and pending[0] == "subscribe" and code != 6:
            for ch in pending[1]:  # the subscribe failed: let the next sync try again
                if ch not in self._channel_sid:
                    self._channel_markets.pop(ch, None)


def _cmd_id(obj: Mapping[str, Any]) -> int | None:
    """A frame's command id when it is one we could have sent (an int), else None."""
    v = obj.get("id")
    return v if type(v) is int else None


class _Listener(WSListener):
    """picows listener: stamps frames, answers pings, reassembles fragments, hands text to the client.

    The receive stamp is the read's, not the frame's turn: picows hands the frames of one socket read
    to ``on_ws_frame`` one after the other (``frame.last_in_buffer`` is set on the last of them), so a
    frame that came in the same read as earlier ones is stamped with the first one's time, and the time
    spent on those earlier frames counts in its latency. Each text frame goes to ``client._feed`` with
    that flag (``last``): a compiled entry that coalesces decides the markets the read changed once it
    has the last one; a read that ends on a frame it is not fed (a ping, a fragment) is ended with
    ``entry.end_read()``, and so is one left open (its last frame never came) when the next begins."""

    def __init__(self, client: KalshiWs) -> None:
        super().__init__()
        self.client = client
        self._read_ns = 0          # receive stamp of the read whose frames are being handed over
        self._read_open = False    # the last frame handed over was not the last of its read

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        client = self.client
        last = frame.last_in_buffer
        if self._read_open:
            recv_ns = self._read_ns
        else:
            recv_ns = self._read_ns = client._clock()
            entry = client.entry
            if entry is not None and entry.open:
                entry.end_read()       # the former read's last frame never came: decide what it left
        self._read_open = not last
        mt = frame.msg_type
        if (mt is WSMsgType.TEXT or mt is WSMsgType.BINARY) and frame.fin:
            client._feed(frame.get_payload_as_bytes(), recv_ns, last)
            return
        client._other_frame(transport, frame, recv_ns, last)
