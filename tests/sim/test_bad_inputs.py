"""Every bad request gets a 4xx and Kalshi's error body, never a 500 (issue 9's list of attacks)."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from yarl import URL

from kmm.sim import SimExchange
from tests.sim.client import SimClient
from tests.sim.conftest import LIN


def _order(**over):
    body = {"ticker": LIN, "client_order_id": f"bad-{time.time_ns()}", "side": "bid", "price": "0.4000",
            "count": "1.00", "time_in_force": "good_till_canceled", "self_trade_prevention_type": "taker_at_cross"}
    body.update(over)
    return body


@pytest.mark.parametrize("over,code", [
    ({"count": 2**63}, "invalid_count"),
    ({"count": "9223372036854775808"}, "invalid_count"),
    ({"count": "9223372036854775808.00"}, "invalid_count"),
    ({"client_order_id": "x" * 1_000_000}, "invalid_parameters"),
    ({"client_order_id": "line\nbreak"}, "invalid_parameters"),
    ({"client_order_id": "nul\x00byte"}, "invalid_parameters"),
    ({"client_order_id": "tab\tchar"}, "invalid_parameters"),
    ({"client_order_id": "x" * 65}, "invalid_parameters"),
    ({"count": " 1.00 "}, "invalid_count"),
    ({"count": "1.00 "}, "invalid_count"),
    ({"price": " 0.4000"}, "invalid_price"),
    ({"subaccount": -1}, "invalid_parameters"),
    ({"subaccount": True}, "invalid_parameters"),
    ({"subaccount": "1"}, "invalid_parameters"),
    ({"subaccount": 10**6}, "invalid_parameters"),
    ({"type": "market"}, "invalid_parameters"),
    ({"yes_price": 40}, "invalid_parameters"),
    ({"exchange_index": True}, "invalid_parameters"),
    ({"exchange_index": "0"}, "invalid_parameters"),
    ({"exchange_index": -2}, "invalid_parameters"),
    ({"exchange_index": 99}, "invalid_parameters"),
    ({"expiration_time": 1.5}, "invalid_parameters"),
    ({"count": "-1.00"}, "invalid_count"),
    ({"count": "1e3"}, "invalid_count"),
    ({"count": "١٠"}, "invalid_count"),  # Arabic-Indic digits
])
async def test_a_bad_order_body_answers_400_with_kalshis_error_body(sim: SimExchange, alice: SimClient, over, code):
    st, body = await alice.req("POST", "/portfolio/events/orders", _order(**over))
    assert st == 400, body
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}
    assert sim.orders(alice.key_id) == []


@pytest.mark.parametrize("path,params", [
    ("/portfolio/orders", {"min_ts": "9" * 5000}),
    ("/portfolio/orders", {"max_ts": "-" + "1" * 30}),
    ("/portfolio/fills", {"min_ts": "1" * 5000}),
    ("/markets/trades", {"min_ts": "7" * 5000}),
    ("/portfolio/orders", {"limit": "1" * 5000}),
    ("/portfolio/orders", {"limit": "0"}),
    ("/portfolio/orders", {"cursor": "9" * 5000}),
    ("/portfolio/orders", {"subaccount": "-1"}),
    ("/portfolio/orders", {"exchange_index": "x"}),
    ("/portfolio/balance", {"exchange_index": "1" * 40}),
    ("/markets", {"limit": "1" * 5000}),
    ("/events", {"limit": "201"}),
    ("/markets/orderbooks", {"tickers": ",".join(f"T{i}" for i in range(101))}),
])
async def test_a_bad_query_parameter_answers_400_not_500(sim: SimExchange, alice: SimClient, path, params):
    st, body = await alice.get(path, params=params)
    assert st == 400, body
    assert body["error"]["code"] == "invalid_parameters"


async def test_cancel_all_with_a_bad_subaccount_is_refused_and_cancels_nothing(sim: SimExchange, alice: SimClient):
    await alice.place(LIN, "bid", "0.3000", "1.00")
    for bad in ("-1", "true", "1" * 5000):
        st, body = await alice.req("DELETE", "/portfolio/events/orders", params={"subaccount": bad})
        assert st == 400 and body["error"]["code"] == "invalid_parameters"
    assert len(sim.orders(alice.key_id, status="resting")) == 1


@pytest.mark.parametrize("path,body", [
    ("/portfolio/order_groups/create", {"contracts_limit": 5, "type": "x"}),
    ("/portfolio/order_groups/create", {"contracts_limit": 5, "subaccount": False}),
    ("/portfolio/intra_exchange_instance_transfer", {"source": "event_contract", "destination": "event_contract",
                                                     "amount": "100", "source_exchange_shard": 0,
                                                     "destination_exchange_shard": 1}),
    ("/portfolio/intra_exchange_instance_transfer", {"source": "event_contract", "destination": "event_contract",
                                                     "amount": 100, "source_exchange_shard": 0,
                                                     "destination_exchange_shard": 9}),
])
async def test_bad_bodies_on_other_writes_answer_400(sim: SimExchange, alice: SimClient, path, body):
    st, resp = await alice.req("POST", path, body)
    assert st == 400 and resp["error"]["code"] == "invalid_parameters"


async def test_bad_bodies_on_amend_decrease_and_batch_cancel_answer_400(sim: SimExchange, alice: SimClient):
    _, o = await alice.place(LIN, "bid", "0.3000", "2.00")
    oid = o["order_id"]
    st, b = await alice.req("POST", f"/portfolio/events/orders/{oid}/amend",
                            {"ticker": LIN, "side": "bid", "price": "0.3000", "count": "2.00", "type": "market"})
    assert st == 400 and b["error"]["code"] == "invalid_parameters"
    st, b = await alice.req("POST", f"/portfolio/events/orders/{oid}/decrease", {"reduce_by": " 1.00"})
    assert st == 400 and b["error"]["code"] == "invalid_count"
    st, b = await alice.req("POST", f"/portfolio/events/orders/{oid}/decrease", {"reduce_by": 2**63})
    assert st == 400 and b["error"]["code"] == "invalid_count"
    st, b = await alice.req("DELETE", "/portfolio/events/orders/batched",
                            {"orders": [{"order_id": oid, "subaccount": True}, "junk"]})
    assert st == 200 and [x["error"]["code"] for x in b["orders"]] == ["invalid_parameters"] * 2
    assert [x["reduced_by"] for x in b["orders"]] == ["0.00", "0.00"]
    assert sim.orders(alice.key_id, status="resting")[0]["remaining"] == 200


async def test_malformed_json_and_non_object_bodies_answer_400(sim: SimExchange, alice: SimClient):
    assert alice.session is not None
    path = alice.prefix + "/portfolio/events/orders"
    for raw in (b"{", b"[1,2]", b"\xff\xfe", b'{"count": NaN}'):
        hdrs = alice.headers("POST", path)
        hdrs["Content-Type"] = "application/json"
        async with alice.session.post(alice.rest_url + "/portfolio/events/orders", data=raw, headers=hdrs) as r:
            body = orjson.loads(await r.read())
            assert r.status == 400 and body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("field,code", [("count", "invalid_count"), ("expiration_time", "invalid_parameters"),
                                        ("subaccount", "invalid_parameters")])
async def test_integers_beyond_64_bits_answer_400(sim: SimExchange, alice: SimClient, field, code):
    assert alice.session is not None
    path = alice.prefix + "/portfolio/events/orders"
    body = _order()
    body.pop(field, None)
    raw = orjson.dumps(body)[:-1] + f', "{field}": 1{"0" * 40}}}'.encode()  # the client library cannot encode it
    hdrs = alice.headers("POST", path)
    hdrs["Content-Type"] = "application/json"
    async with alice.session.post(alice.rest_url + "/portfolio/events/orders", data=raw, headers=hdrs) as r:
        got = orjson.loads(await r.read())
        assert r.status == 400 and got["error"]["code"] == code
    assert sim.orders(alice.key_id) == []


def _sign(c: SimClient, method: str, path: str) -> dict[str, str]:
    ts = str(int(time.time() * 1000))
    sig = c.key.sign((ts + method + path).encode(),  # type: ignore[union-attr]
                     padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    return {"KALSHI-ACCESS-KEY": c.key_id or "", "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode()}


async def test_a_percent_encoded_path_verifies_against_the_path_as_sent(sim: SimExchange, alice: SimClient):
    assert alice.session is not None
    _, o = await alice.place(LIN, "bid", "0.3000", "1.00")
    oid = o["order_id"]
    raw_path = f"{alice.prefix}/portfolio/orders/{oid.replace('-', '%2D')}"
    url = URL(alice.rest_url.rsplit(alice.prefix, 1)[0] + raw_path, encoded=True)
    async with alice.session.get(url, headers=_sign(alice, "GET", raw_path)) as r:
        body = orjson.loads(await r.read())
        assert r.status == 200 and body["order"]["order_id"] == oid
    # signing the decoded path instead of the one sent is a bad signature
    decoded = f"{alice.prefix}/portfolio/orders/{oid}"
    async with alice.session.get(url, headers=_sign(alice, "GET", decoded)) as r:
        body = orjson.loads(await r.read())
        assert r.status == 401 and body["error"]["code"] == "invalid_signature"


async def test_a_five_thousand_digit_timestamp_header_is_a_401(sim: SimExchange, alice: SimClient):
    assert alice.session is not None
    hdrs = alice.headers("GET", alice.prefix + "/portfolio/balance")
    hdrs["KALSHI-ACCESS-TIMESTAMP"] = "1" * 5000
    async with alice.session.get(alice.rest_url + "/portfolio/balance", headers=hdrs) as r:
        body = orjson.loads(await r.read())
        assert r.status == 401 and body["error"]["code"] == "timestamp_out_of_window"


NASTY = [None, True, False, 0, -1, 1, 2**63 - 1, -(2**63), 1.5, float("inf"), "", " ", "0", "-0", "1e3", "0x10",
         "1.00", " 1.00 ", "0.4000", "99999999999999999999", "\x00", "\n", "é", "x" * 5000, [], [1], {}, {"a": 1},
         "bid", "ask", "good_till_canceled", "maker", LIN, "KXNOPE"]


async def test_random_field_mutations_never_answer_a_5xx(sim: SimExchange, alice: SimClient):
    import random
    rng = random.Random(9)
    fields = ["ticker", "client_order_id", "side", "price", "count", "time_in_force", "self_trade_prevention_type",
              "expiration_time", "post_only", "reduce_only", "cancel_order_on_pause", "subaccount", "order_group_id",
              "exchange_index", "count_fp"]
    statuses = set()
    for _ in range(300):
        body = _order()
        for f in rng.sample(fields, rng.randint(1, 3)):
            v = rng.choice(NASTY)
            if isinstance(v, float) and v == float("inf"):
                body.pop(f, None)
            else:
                body[f] = v
        st, resp = await alice.req("POST", "/portfolio/events/orders", body)
        statuses.add(st)
        assert st < 500, (body, resp)
        if st >= 400:
            assert set(resp["error"]) == {"code", "message", "details"}
    assert statuses & {400, 404}  # the mutations did reach the checks
