"""The view: pure rendering, checked at the sizes a terminal has."""

from kmm.engine.view import MarketRow, Snapshot, ladder_rows, render_console_text, render_line, render_table, usd


def _row(t="KXA-1", **kw):
    r = MarketRow(t, 4100, 4300, 4150, 4250, 500, 500, -300, 1_200, -400, 3, max_position=10_000)
    r.bids = [(4100, 1200), (4000, 800), (3900, 500), (3800, 100), (3700, 100), (3600, 100)]
    r.asks = [(4300, 900), (4400, 700), (4500, 300), (4600, 100), (4700, 100), (4800, 100)]
    r.mine_bids, r.mine_asks = {4150: 500}, {4250: 500}
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _snap(n=1, **kw):
    s = Snapshot(elapsed_s=12.4, venue="sim (in-process)", cash=10_000_000, fees=3_500, fills=3,
                 orders_sent=17, write_pressure=0.25, latency_p50_us=41.0, latency_p99_us=180.0,
                 markets=[_row(f"KXSIM{i}-26-A") for i in range(n)], mode="live", pid=4242,
                 out="/tmp/kmm-out/20261127-140000", duration_s=30.0, max_loss=500_000, max_total_position=100_000,
                 max_open_orders=100, open_orders=[("KXA-1", "bid", 4150, 500), ("KXA-1", "ask", 4250, 500)],
                 recent_fills=["14:00:01 KXA-1 bid 5 @ 41.5c"], warnings=["14:00:02 W book stale"],
                 log_lines=[f"14:00:0{i} line {i}" for i in range(9)])
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_console_fits_80x24_and_keeps_pid_venue_out_time_left_and_keys():
    text = render_console_text(_snap(3), 80, 24)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24 and max(len(x) for x in lines) <= 80, text
    head = lines[0]
    assert "pid 4242" in head and "sim (in-process)" in head and "00:17 left" in head and "kill switch armed" in head
    assert "out /tmp/kmm-out/20261127-140000" in lines[1]
    assert lines[-1].startswith("k kill switch  r resume  q stop")
    assert "P&L $0.24 net" in lines[2] and "room: $50.00 to max loss, 991 contracts, 98 orders" in lines[2]
    assert lines[3].startswith("fills 3  open 2  sent 17  write bucket 25%  latency p50 41 us p99 180 us")


def test_console_marks_our_orders_on_the_ladder_and_shows_headroom():
    text = render_console_text(_snap(1), 80, 24)
    assert "*5   42.5a" in text and "*5   41.5b" in text     # our ask and bid, between the book levels
    assert "43.0a" in text and "41.0b" in text
    row = next(x for x in text.splitlines() if x.startswith("KXSIM0-26-A "))
    assert "5@41.5" in row and "5@42.5" in row and " -3 " in row and " 97 " in row   # room to max_position


def test_console_uses_a_bigger_terminal_for_deeper_ladders_and_more_log():
    small = render_console_text(_snap(3), 80, 24)
    big = render_console_text(_snap(3), 140, 50)
    assert "38.0b" not in small and "38.0b" in big
    assert "line 8" in big and "recent fills" in big and "book stale" in big
    assert len(big.rstrip("\n").split("\n")) <= 50


def test_console_shows_a_tripped_kill_switch_and_stopping():
    text = render_console_text(_snap(1, kill_state="tripped", stopping=True), 80, 24)
    assert "kill switch tripped" in text and "stopping" in text


def test_ladder_shows_our_order_even_away_from_the_book():
    r = _row(my_bid=3000, mine_bids={3000: 200}, mine_asks={4300: 100})
    rows = ladder_rows(r, 2)
    assert rows == [("", "44.0a", "7"), ("*1", "43.0a", "9"), ("", "41.0b", "12"), ("*2", "30.0b", "")]


def test_render_table_fits_80_columns_and_counts_sent_not_open():
    text = render_table(_snap(2))
    assert max(len(x) for x in text.splitlines()) <= 80
    assert "sent=17" in text and "orders=" not in text
    assert "KXSIM0-26-A" in text and " 41.0 " in text and " 42.5" in text and "-$0.04" not in text


def test_render_line_is_a_single_line_with_every_market_and_the_total():
    line = render_line(_snap(1))
    assert "\n" not in line and "KXSIM0-26-A 41.5/42.5" in line and "pnl=$0.08" in line
    assert "sent=17" in line and "p99=180 us" in line


def test_money_is_sign_first_everywhere():
    assert usd(-1826) == "-$0.18" and usd(-1826, 4) == "-$0.1826" and usd(12_345_678) == "$1,234.57"
