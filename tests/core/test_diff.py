import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core import diff as d
from tests.reference import diff as ref

EMPTY: tuple[()] = ()  # the interpreter's shared empty tuple (a name, so `is` compares no literal)

SEC = 1_000_000_000


@st.composite
def cases(draw):
    price_tol = draw(st.sampled_from([0, 10, 100, 300]))
    size_tol = draw(st.sampled_from([0, 50, 200]))
    max_age_ns = draw(st.sampled_from([None, SEC, 5 * SEC]))
    bid_px = draw(st.integers(1, 9000))
    ask_px = draw(st.integers(bid_px + 1, 9999))
    bid_size = draw(st.sampled_from([0, 100, 500, 1000]))
    ask_size = draw(st.sampled_from([0, 100, 500, 1000]))
    live = []
    for i in range(draw(st.integers(0, 5))):
        side = draw(st.integers(0, 1))
        base_px = (bid_px, ask_px)[side]
        base_size = (bid_size, ask_size)[side] or 500
        price = min(9999, max(1, base_px + draw(st.sampled_from([0, 0, -10, 10, -100, 100, -250, 400, -5000]))))
        if draw(st.integers(0, 5)) == 0:
            price = (ask_px, bid_px)[side]  # at the other side's target: crossing and ordering rules
        rem = max(0, base_size + draw(st.sampled_from([0, 0, -50, 50, -200, 300, -base_size])))
        age = draw(st.sampled_from([0, SEC // 2, 2 * SEC, 10 * SEC]))
        live.append((f"o{i}", side, price, rem, age))
    return (price_tol, size_tol, max_age_ns), ((bid_px, bid_size), (ask_px, ask_size)), live


def run(cfg, targets, live):
    (bp, bs), (ap, as_) = targets
    return [a.astuple() for a in d.Differ(*cfg).diff(bp, bs, ap, as_, live)]


@given(cases())
def test_diff_equals_reference_on_random_inputs(case):
    cfg, targets, live = case
    assert run(cfg, targets, live) == ref.diff(targets, live, *cfg)


@given(cases())
def test_diff_applied_actions_leave_one_order_per_quoted_side_at_target_or_within_tolerance(case):
    (price_tol, size_tol, max_age_ns), targets, live = case
    actions = run((price_tol, size_tol, max_age_ns), targets, live)
    book = ref.apply(live, actions)
    by_id = {o[0]: o for o in live}
    touched = {a[2] for a in actions if a[2] is not None}
    other = [targets[s][0] if targets[s][1] > 0 else 0 for s in (1, 0)]
    for side in (0, 1):
        tp, ts = targets[side]
        rest = {k: v for k, v in book.items() if v[0] == side}
        if ts == 0:
            assert not rest
            continue
        assert len(rest) == 1
        (oid, (_, price, rem)), = rest.items()
        assert rem <= ts  # never more than the target rests: limits hold
        if (price, rem) != (tp, ts):
            # Only hysteresis may leave an order off target, and then within tolerance.
            assert abs(price - tp) <= price_tol and oid in by_id
            if oid not in touched:
                assert ts - size_tol <= rem and by_id[oid][4] < (max_age_ns or ref.NO_AGE_LIMIT)
            if other[side]:
                assert price < other[side] if side == 0 else price > other[side]
    sides = {v[0]: v[1] for v in book.values()}
    if 0 in sides and 1 in sides:
        assert sides[0] < sides[1]


@given(cases())
def test_diff_uses_the_fewest_actions(case):
    cfg, targets, live = case
    actions = run(cfg, targets, live)
    needed = 0
    for side in (0, 1):
        tp, ts = targets[side]
        mine = [o for o in live if o[1] == side and o[3] > 0]
        if ts == 0:
            needed += len(mine)
        elif not mine:
            needed += 1
        else:
            # At most one order can survive; it needs no action only if hysteresis accepts it.
            ok = any(ref.category(o, tp, ts, targets[1 - side][0] if targets[1 - side][1] else 0, side,
                                  cfg[0], cfg[1], cfg[2] or ref.NO_AGE_LIMIT) == ref.KEEP for o in mine)
            needed += len(mine) - 1 + (0 if ok else 1)
    assert len(actions) == needed


@given(cases())
def test_diff_returns_shared_empty_tuple_when_live_equals_targets(case):
    cfg, targets, _ = case
    live = [(f"x{s}", s, targets[s][0], targets[s][1], 10 * SEC) for s in (0, 1) if targets[s][1] > 0]
    (bp, bs), (ap, as_) = targets
    assert d.Differ(*cfg).diff(bp, bs, ap, as_, live) is EMPTY


def test_diff_leaves_order_within_tolerance_until_it_is_too_old():
    differ = d.Differ(price_tol=100, size_tol=200, max_age_ns=SEC)
    young = [("a", 0, 4800, 900, SEC // 2)]
    assert differ.diff(4900, 1000, 0, 0, young) == ()
    old = [("a", 0, 4800, 900, SEC)]
    assert [a.astuple() for a in differ.diff(4900, 1000, 0, 0, old)] == [(d.AMEND, d.BID, "a", 4900, 1000)]


def test_diff_decreases_rather_than_amends_when_only_size_shrinks():
    differ = d.Differ(price_tol=0, size_tol=0, max_age_ns=SEC)
    live = [("a", 1, 5200, 1000, 100 * SEC)]  # old, but the price is exact: keep priority
    assert [a.astuple() for a in differ.diff(0, 0, 5200, 600, live)] == [(d.DECREASE, d.ASK, "a", 5200, 600)]


def test_diff_amends_when_size_must_grow_beyond_tolerance_or_price_moves():
    differ = d.Differ(price_tol=0, size_tol=100)
    assert differ.diff(4800, 1000, 0, 0, [("a", 0, 4800, 950, 0)]) == ()
    grow = differ.diff(4800, 1000, 0, 0, [("a", 0, 4800, 800, 0)])
    assert [a.astuple() for a in grow] == [(d.AMEND, d.BID, "a", 4800, 1000)]
    move = differ.diff(4700, 1000, 0, 0, [("a", 0, 4800, 1000, 0)])
    assert [a.astuple() for a in move] == [(d.AMEND, d.BID, "a", 4700, 1000)]


def test_diff_keeps_best_matching_duplicate_and_cancels_the_rest():
    differ = d.Differ(price_tol=50)
    live = [("far", 0, 4500, 1000, 0), ("near", 0, 4790, 1000, 0), ("exact", 0, 4800, 1000, 0),
            ("ask", 1, 5200, 500, 0)]
    got = [a.astuple() for a in differ.diff(4800, 1000, 0, 0, live)]
    assert got == [(d.CANCEL, d.BID, "far", 4500, 0), (d.CANCEL, d.BID, "near", 4790, 0),
                   (d.CANCEL, d.ASK, "ask", 5200, 0)]


def test_diff_places_missing_sides_and_ignores_filled_orders():
    differ = d.Differ()
    got = differ.diff(4800, 1000, 5200, 700, [("done", 0, 4800, 0, 0)])
    assert [a.astuple() for a in got] == [(d.PLACE, d.BID, None, 4800, 1000), (d.PLACE, d.ASK, None, 5200, 700)]


def test_diff_moves_ask_first_when_the_new_bid_reaches_the_live_ask():
    differ = d.Differ()
    live = [("b", 0, 4800, 1000, 0), ("a", 1, 5000, 1000, 0)]
    got = [a.astuple() for a in differ.diff(5000, 1000, 5200, 1000, live)]
    assert got == [(d.AMEND, d.ASK, "a", 5200, 1000), (d.AMEND, d.BID, "b", 5000, 1000)]
    down = [a.astuple() for a in differ.diff(4600, 1000, 4800, 1000, live)]
    assert down == [(d.AMEND, d.BID, "b", 4600, 1000), (d.AMEND, d.ASK, "a", 4800, 1000)]


def test_diff_hysteresis_never_keeps_an_order_at_the_other_sides_target():
    differ = d.Differ(price_tol=200)
    live = [("b", 0, 5000, 1000, 0)]  # within 200 of the bid target, but at the new ask target
    got = [a.astuple() for a in differ.diff(4900, 1000, 5000, 1000, live)]
    assert got == [(d.AMEND, d.BID, "b", 4900, 1000), (d.PLACE, d.ASK, None, 5000, 1000)]


def test_diff_moves_both_kept_orders_when_they_would_lock():
    differ = d.Differ(price_tol=100)
    live = [("b", 0, 5010, 1000, 0), ("a", 1, 4990, 1000, 0)]  # a stale crossed view
    got = [a.astuple() for a in differ.diff(4950, 1000, 5050, 1000, live)]
    assert got == [(d.AMEND, d.BID, "b", 4950, 1000), (d.AMEND, d.ASK, "a", 5050, 1000)]


def test_diff_accepts_lists_and_reuses_buffers_beyond_initial_capacity():
    differ = d.Differ()
    live = [[f"o{i}", i % 2, 4000 + i, 100, 0] for i in range(40)]
    got = differ.diff(0, 0, 0, 0, live)
    assert len(got) == 40 and all(a.kind == d.CANCEL for a in got)
    assert differ.diff(0, 0, 0, 0, []) == ()


@pytest.mark.parametrize("args,match", [
    ((4800, -1, 5200, 100, []), "sizes"), ((0, 100, 5200, 100, []), "bid price"),
    ((4800, 100, 10000, 100, []), "ask price"), ((5200, 100, 5200, 100, []), "below"),
    ((4800, 100, 5200, 100, [("a", 2, 4800, 100, 0)]), "side"),
    ((4800, 100, 5200, 100, [("a", 0, 0, 100, 0)]), "price"),
    ((4800, 100, 5200, 100, [("a", 0, 4800, -1, 0)]), "remaining"),
    ((4800, 100, 5200, 100, [("a", 0, 4800)]), "order_id, side"),
])
def test_diff_rejects_bad_targets_and_live_orders_naming_them(args, match):
    with pytest.raises(ValueError, match=match):
        d.Differ().diff(*args)


def test_differ_rejects_bad_tolerances_and_action_has_value_semantics():
    with pytest.raises(ValueError, match="price_tol"):
        d.Differ(price_tol=-1)
    with pytest.raises(ValueError, match="max_age_ns"):
        d.Differ(max_age_ns=0)
    a = d.Action(d.PLACE, d.BID, None, 4800, 100)
    assert a == d.Action(0, 0, None, 4800, 100) and hash(a) == hash(d.Action(0, 0, None, 4800, 100))
    assert "place" in repr(a) and d.KIND_NAMES[d.CANCEL] == "cancel" and d.SIDE_NAMES[d.ASK] == "ask"
