"""The quote path's body made as text (kalshi/rest.py ``place_quote_now``: compiled, or kept JSON strings
and one encode for a value that needs JSON escapes) is byte for byte what orjson makes of the request
dict on the full path, for any ticker, client order id and group id, ASCII or not, with quotes,
backslashes and control characters, and any shard."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kalshi.test_quote_now import offline, quote_request, sign_ahead  # noqa: F401 - the fixture



@settings(max_examples=300, deadline=None)
@given(ticker=st.one_of(st.sampled_from(["KXT-0", 'K"X\\T', "KX\u00e9", "KX\x01"]), st.text(min_size=1, max_size=12)),
       side=st.sampled_from(["bid", "ask"]), price=st.integers(1, 9999), count=st.integers(1, 10**7),
       coid=st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.text(min_size=1, max_size=40)),
       group=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["g-1", 'g"\\', "\u00e9\u4e2d"])),
       shard=st.one_of(st.none(), st.integers(-2, 10**6)))
def test_the_quote_body_is_the_full_paths_bytes_for_any_text(offline, ticker, side, price, count, coid, group,  # noqa: F811
                                                              shard):
    rest, sent = offline
    if shard is None:
        rest.shards.pop(ticker, None)
    else:
        rest.shards[ticker] = shard
    del sent[:]
    try:
        full = rest.create_order_now(quote_request(ticker, side, price, count, coid, group), lambda *a: None,
                                     lambda c: None)
    except (ValueError, TypeError):
        full = None         # the full path refuses the value (e.g. a lone surrogate): nothing to compare
    if full is None:
        return
    assert full == 1
    sign_ahead(rest)
    assert rest.place_quote_now(ticker, side, price, count, coid, group, lambda *a: None, None,
                                lambda c: None) == 1
    assert len(sent) == 2 and sent[0][0] == sent[1][0]
