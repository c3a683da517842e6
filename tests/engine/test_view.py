from kmm.engine.view import MarketRow, Snapshot, render_line, render_table


def _snap():
    return Snapshot(elapsed_s=12.4, venue="sim (in-process)", cash=10_000_000, fees=3_500, fills=3,
                    orders_sent=17, write_pressure=0.25, latency_p50_us=41.0, latency_p99_us=180.0,
                    markets=[MarketRow("KXA-1", 4100, 4300, 4150, 4250, 500, 500, -300, 1_200, -400, 3)])


def test_render_table_shows_quotes_in_cents_sizes_in_contracts_and_pnl_in_dollars():
    text = render_table(_snap())
    assert "KXA-1" in text and " 41.0 " in text and " 42.5" in text
    assert "-3" in text  # position in contracts
    assert "$0.12" in text and "-$0.04" in text  # realized and unrealized
    assert "write-bucket= 25%" in text and "p50=41us" in text


def test_render_line_is_a_single_line_with_every_market():
    line = render_line(_snap())
    assert "\n" not in line and "KXA-1 41.5/42.5" in line and "pnl=$0.08" in line
