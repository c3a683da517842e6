"""Plain-Python reference for kmm._core.diff, written from the rules in docs/core-quote.md."""

from __future__ import annotations

PLACE, AMEND, DECREASE, CANCEL = 0, 1, 2, 3
BID, ASK = 0, 1
KEEP, SHRINK, MOVE = 0, 1, 2  # categories of a live order against its target

NO_AGE_LIMIT = 2 ** 63 - 1


def category(order, target_px, target_size, other_px, side, price_tol, size_tol, max_age_ns):
    _, _, p, rem, age = order
    if p == target_px and rem == target_size:
        return KEEP
    if other_px == 0:
        clear_of_other = True
    elif side == BID:
        clear_of_other = p < other_px
    else:
        clear_of_other = p > other_px
    near = abs(p - target_px) <= price_tol and age < max_age_ns and clear_of_other
    if near and target_size - size_tol <= rem <= target_size:
        return KEEP
    if (near or p == target_px) and rem > target_size:
        return SHRINK
    return MOVE


def diff(targets, live, price_tol=0, size_tol=0, max_age_ns=None):
    """targets: ((bid_px, bid_size), (ask_px, ask_size)); size 0 = no quote. Returns a list of
    (kind, side, order_id, price, size) tuples."""
    max_age = NO_AGE_LIMIT if max_age_ns is None else max_age_ns
    tp = [targets[s][0] if targets[s][1] > 0 else 0 for s in (BID, ASK)]
    ts = [targets[s][1] for s in (BID, ASK)]
    keep = [None, None]
    cat = [MOVE, MOVE]
    for s in (BID, ASK):
        if ts[s] <= 0:
            continue
        ranked = []
        for i, o in enumerate(live):
            if o[1] != s or o[3] <= 0:
                continue
            c = category(o, tp[s], ts[s], tp[1 - s], s, price_tol, size_tol, max_age)
            ranked.append((c, abs(o[2] - tp[s]), abs(o[3] - ts[s]), i))
        if ranked:
            c, _, _, i = min(ranked)
            keep[s], cat[s] = i, c
    if (keep[BID] is not None and keep[ASK] is not None and cat[BID] != MOVE and cat[ASK] != MOVE
            and live[keep[BID]][2] >= live[keep[ASK]][2]):
        cat = [MOVE, MOVE]

    actions = []
    for i, o in enumerate(live):
        if o[3] > 0 and i not in keep:
            actions.append((CANCEL, o[1], o[0], o[2], 0))
    order = [BID, ASK]
    if (keep[BID] is not None and keep[ASK] is not None and cat[BID] == MOVE
            and tp[BID] >= live[keep[ASK]][2]):
        order = [ASK, BID]
    for s in order:
        if keep[s] is not None and cat[s] == SHRINK:
            o = live[keep[s]]
            actions.append((DECREASE, s, o[0], o[2], ts[s]))
    for s in order:
        if keep[s] is not None and cat[s] == MOVE:
            actions.append((AMEND, s, live[keep[s]][0], tp[s], ts[s]))
    for s in (BID, ASK):
        if ts[s] > 0 and keep[s] is None:
            actions.append((PLACE, s, None, tp[s], ts[s]))
    return actions


def apply(live, actions):
    """The live orders after the actions succeed: {order_id or ('new', side): (side, price, remaining)}."""
    book = {o[0]: (o[1], o[2], o[3]) for o in live if o[3] > 0}
    for kind, side, oid, price, size in actions:
        if kind == CANCEL:
            del book[oid]
        elif kind == DECREASE:
            s, p, rem = book[oid]
            assert size < rem
            book[oid] = (s, p, size)
        elif kind == AMEND:
            book[oid] = (side, price, size)
        else:
            book[("new", side)] = (side, price, size)
    return book
