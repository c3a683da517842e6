"""The replay cache's own-traffic kinds (kmm.research.replaycache, FORMAT 4): a recorded run's own book
delta decoded once (``OWN``) is exactly what the driver's ``_slow_delta`` reads of the frame, or stays
``OTHER`` for the driver to report; a frame marked ``IGNORE`` is one the router answers ``NOT_BOOK``
for and the driver's ``_json`` reads nothing from. Generated frames: every field order, odd values
and types, missing fields, numbers past int64, frames that are not JSON."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.wire import NOT_BOOK, BookRouter
from kmm.research import replaycache
from kmm.research.backtest import Backtest, _fast_trade
from tests.research.helpers import LINEAR, T

ODD = st.one_of(st.none(), st.integers(-3, 3), st.just(2**63), st.just(-(2**63) - 1), st.text(max_size=4),
                st.lists(st.integers(), max_size=2))


class _Driver:
    """What ``Backtest._slow_delta`` and ``Backtest._json`` read of the driver: any other attribute
    read is recorded (``_json`` must read none for a frame the cache ignores)."""

    def __init__(self) -> None:
        self.pipes = {T: None}
        self.malformed = 0
        self.got: list[tuple] = []
        self.read: list[str] = []

    def _recorded_delta(self, *args) -> None:
        self.got.append(args)

    def __getattr__(self, name: str):
        self.read.append(name)
        raise AttributeError(name)


@st.composite
def own_frames(draw) -> bytes:
    msg = {"market_ticker": draw(st.one_of(st.just(T), st.just("OTHER-1"), ODD)),
           "price_dollars": draw(st.one_of(st.sampled_from(["0.4000", "0.40", "0.0050", "1.2000", "x"]), ODD)),
           "delta_fp": draw(st.one_of(st.sampled_from(["3.00", "-2.50", "0.01", "1e3"]), ODD)),
           "side": draw(st.one_of(st.sampled_from(["yes", "no"]), ODD)),
           "client_order_id": "rec-1", "ts_ms": 1_795_000_000_000}
    for k in draw(st.lists(st.sampled_from(list(msg)), max_size=2, unique=True)):
        if k != "client_order_id":
            del msg[k]
    obj = {"type": "orderbook_delta", "msg": msg}
    for k in ("sid", "seq"):
        if draw(st.booleans()):
            obj[k] = draw(st.one_of(st.integers(0, 40), ODD))
    keys = draw(st.permutations(list(obj)))
    obj = {k: obj[k] for k in keys}
    if draw(st.booleans()):
        return json.dumps(obj).encode()
    return json.dumps(obj, separators=(",", ":")).encode()      # the compact form (past int64 too)


@settings(max_examples=400, deadline=None)
@given(own_frames())
def test_an_own_delta_decoded_once_is_what_the_driver_reads_of_the_frame(frame):
    kind, x = replaycache.classify(frame, _fast_trade)
    _KINDS.append(("own", kind))
    drv = _Driver()
    try:
        Backtest._slow_delta(drv, frame, 7, own=True)  # type: ignore[arg-type]
        raised = False
    except (TypeError, ValueError, OverflowError):
        raised = True
    if kind == replaycache.OWN:
        assert x == replaycache.own_delta(frame) and not raised and drv.malformed == 0
        if x[0] in drv.pipes:
            assert drv.got == [(*x, 7, True)]
        else:
            assert drv.got == []            # an unknown market: neither path does anything
        assert replaycache.keeps_frame(kind)    # a book-only replay feeds it to the router
    else:
        # stays on the general path: the driver finds it unreadable, or what it read is off the usual form
        assert kind == replaycache.OTHER and x is None
        assert raised or drv.malformed == 1 or drv.got == [] or \
            any(type(v) is not int or not -(2**63) <= v < 2**63 for v in drv.got[0][1:6])


_KINDS: list[tuple[str, int]] = []


def test_the_usual_own_delta_is_decoded():
    frame = orjson.dumps({"type": "orderbook_delta", "sid": 3, "seq": 9, "msg": {
        "market_ticker": T, "price_dollars": "0.4100", "delta_fp": "-2.00", "side": "no", "client_order_id": "c"}})
    assert replaycache.classify(frame, _fast_trade) == (replaycache.OWN, (T, 1, 4100, -200, 3, 9))


@st.composite
def other_frames(draw) -> bytes:
    typ = draw(st.one_of(st.sampled_from(["market_position", "ok", "error", "subscribed", "trade",
                                          "market_lifecycle_v2", "kmm_gap", "orderbook_delta",
                                          "orderbook_snapshot", "order_group_updates", "unsubscribed"]), ODD))
    msg = draw(st.one_of(st.fixed_dictionaries({"market_ticker": st.just(T), "channel": st.sampled_from(
        ["orderbook_delta", "trade"]), "event_type": st.sampled_from(["settled", "activated"]),
        "position_fp": st.just("-3.00")}), ODD))
    obj = {"type": typ, "sid": draw(st.integers(1, 5)), "msg": msg}
    if draw(st.booleans()):
        obj["seq"] = draw(st.integers(1, 9))
    if draw(st.booleans()):
        del obj["type"]
    raw = json.dumps({k: obj[k] for k in draw(st.permutations(list(obj)))}, separators=(",", ":")).encode()
    cut = draw(st.one_of(st.none(), st.integers(1, len(raw) - 1)))
    return raw if cut is None else raw[:cut]      # some not JSON at all


@settings(max_examples=400, deadline=None)
@given(other_frames())
def test_a_frame_the_cache_ignores_is_not_book_to_the_router_and_read_by_nothing(frame):
    kind, _ = replaycache.classify(frame, _fast_trade)
    _KINDS.append(("other", kind))
    if kind != replaycache.IGNORE:
        return
    assert not replaycache.keeps_frame(kind)
    # a router with the market, its snapshot and a sequence: the same answer as the cache's scratch one
    r = BookRouter()
    book = OrderBook(Grid(LINEAR))
    r.add(T, book)
    r.feed(orjson.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {
        "market_ticker": T, "yes_dollars_fp": [["0.4000", "10.00"]], "no_dollars_fp": [["0.5000", "10.00"]]}}), 1)
    levels = book.levels()
    assert r.feed(frame, 2) == NOT_BOOK and book.levels() == levels and not r.is_stale(T)
    bare = _Bare()
    Backtest._json(bare, frame, 2)  # type: ignore[arg-type]
    assert bare.read == []


class _Bare:
    """A driver with nothing: every attribute ``_json`` reads is recorded."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __getattr__(self, name: str):
        self.read.append(name)
        raise AttributeError(name)


def test_the_recorded_runs_positions_are_ignored_and_what_the_driver_acts_on_is_not():
    pos = orjson.dumps({"type": "market_position", "sid": 3, "msg": {"market_ticker": T, "position_fp": "-3.00"}})
    assert replaycache.classify(pos, _fast_trade) == (replaycache.IGNORE, None)
    for obj in ({"type": "market_lifecycle_v2", "sid": 3, "msg": {"market_ticker": T, "event_type": "settled"}},
                {"type": "kmm_gap", "msg": {"reason": "connection lost"}},
                {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}},
                {"sid": 2, "type": "trade", "msg": {"market_ticker": T}}):
        assert replaycache.classify(orjson.dumps(obj), _fast_trade)[0] != replaycache.IGNORE
    assert replaycache.classify(b'{"type":"market_position", not json', _fast_trade)[0] != replaycache.IGNORE
    fill = orjson.dumps({"type": "fill", "sid": 5, "msg": {"trade_id": "t1", "client_order_id": "x"}})
    assert replaycache.classify(fill, _fast_trade) == (replaycache.REPORT, None)
    assert replaycache.keeps_frame(replaycache.REPORT)     # a fitting pass reads the fill's trade_id


def test_the_generated_frames_meet_every_branch():
    """Some generated own deltas decode and some stay on the general path; some other frames are
    ignored and some are not."""
    if not _KINDS:          # run alone: generate them here
        test_an_own_delta_decoded_once_is_what_the_driver_reads_of_the_frame()
        test_a_frame_the_cache_ignores_is_not_book_to_the_router_and_read_by_nothing()
    seen = set(_KINDS)
    assert {("own", replaycache.OWN), ("own", replaycache.OTHER)} <= seen
    assert ("other", replaycache.IGNORE) in seen and any(g == "other" and k != replaycache.IGNORE for g, k in seen)
