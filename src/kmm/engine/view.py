"""What the operator sees while kmm runs: the full-screen console, or plain status lines for logs.

Rendering is pure (a snapshot in, a rich renderable or text out), so it is tested without a terminal;
:mod:`kmm.cli.console` builds the snapshot from the engine, draws it on the alternate screen and reads
the keys. Prices are shown in cents, sizes in contracts, money in dollars (``-$0.18``; the run summary
uses four decimals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class MarketRow:
    ticker: str
    best_bid: int | None = None      # 1e-4 $
    best_ask: int | None = None
    my_bid: int | None = None
    my_ask: int | None = None
    my_bid_size: int = 0             # 1e-2 contracts
    my_ask_size: int = 0
    position: int = 0                # 1e-2 contracts, signed
    realized: int = 0                # 1e-4 $
    unrealized: int = 0
    fills: int = 0
    state: str = "quoting"           # quoting | stale | paused | reduce-only | killed | closed
    incentive: str = ""              # "" (no program) | "LIP ok 12%" | "LIP no: bid outside target" ...
    bids: list[tuple[int, int]] = field(default_factory=list)    # book levels, best first (price, size)
    asks: list[tuple[int, int]] = field(default_factory=list)
    mine_bids: dict[int, int] = field(default_factory=dict)      # price -> our resting bid size there
    mine_asks: dict[int, int] = field(default_factory=dict)
    max_position: int = 0            # 1e-2 contracts; 0: unknown


@dataclass(slots=True)
class EventView:
    """One event at a glance (the per-event roll-up): money 1e-4 $, sizes 1e-2 contracts."""

    event: str
    mutually_exclusive: bool
    markets: int                     # markets of the event kmm knows
    quoted: int                      # ... of them quoted this session
    positions: int                   # sum of |position| over its markets
    inventory: int                   # event inventory E (YES-equivalent, signed): the exposure
    worst_now: int                   # worst outcome P&L of the positions (<= 0 is a loss)
    worst_resting: int               # ... with every resting order that hurts there filling
    max_event_loss: int
    max_event_exposure: int
    pnl: int                         # this session's net P&L over its markets
    status: str                      # ok | reduce_only | over_limit | kill
    incentive: str = ""              # e.g. "2/5 qualify" when programs apply to its markets

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class Snapshot:
    elapsed_s: float
    venue: str
    markets: list[MarketRow] = field(default_factory=list)
    cash: int = 0                    # 1e-4 $
    fees: int = 0
    fills: int = 0
    orders_sent: int = 0
    write_pressure: float = 0.0      # 0..1 of the write bucket in use
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    note: str = ""
    # the console's extras (defaults keep the plain line working from the engine's snapshot alone)
    mode: str = "live"
    pid: int = 0
    out: str = ""
    duration_s: float | None = None  # None: runs until stopped
    kill_state: str = "armed"
    open_orders: list[tuple[str, str, int, int]] = field(default_factory=list)  # ticker, side, price, size
    recent_fills: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    max_loss: int = 0                # 1e-4 $; 0: unknown
    max_total_position: int = 0      # 1e-2 contracts
    max_open_orders: int = 0
    stopping: bool = False
    events: list[EventView] = field(default_factory=list)   # the per-event roll-up, worst first
    incentives: str = ""             # programs: e.g. "LIP 2 markets, 1 qualifies"


def _c(px: int | None) -> str:
    return "  -  " if px is None else f"{px / 100:5.1f}"


def _n(qty: int) -> str:
    return f"{qty / 100:g}"


def usd(m: int, dp: int = 2) -> str:
    """Money in dollars, sign first: ``-$0.18`` (``dp=4``: ``-$0.1826``)."""
    return f"{'-' if m < 0 else ''}${abs(m) / 10000:,.{dp}f}"


_usd = usd


def _lat(us: float | None) -> str:
    return "-" if us is None else f"{us:.0f} us"


def _clock(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def time_left(s: Snapshot) -> str:
    if s.stopping:
        return "stopping"
    if not s.duration_s:
        return "until stopped"
    return f"{_clock(s.duration_s - s.elapsed_s)} left"


def net_pnl(s: Snapshot) -> int:
    """Session P&L, net of fees (the rows' realized is already net of their fees)."""
    return sum(m.realized + m.unrealized for m in s.markets)


#: more markets than this and the views show the ones that need a look, plus the per-event roll-up
MANY_MARKETS = 20


def notable(markets: list[MarketRow], n: int) -> list[MarketRow]:
    """Up to ``n`` markets that need a look, first: not quoting normally, then the largest positions,
    then the worst P&L. The others are in the per-event roll-up."""
    def rank(m: MarketRow) -> tuple[int, int, int]:
        return (0 if m.state != "quoting" else 1, -abs(m.position), m.realized + m.unrealized)
    return sorted(markets, key=rank)[:n]


def event_line(ev: EventView) -> str:
    """One event in a few words: ``KXSIMWIN-26 me 3/3 pos 12 E +12 worst -$3.40 (-$4.10 resting) of $25.00
    P&L -$0.12 ok``."""
    me = "me" if ev.mutually_exclusive else "ind"
    return (f"{ev.event} {me} {ev.quoted}/{ev.markets} pos {_n(ev.positions)} E {ev.inventory / 100:+g} "
            f"worst {usd(ev.worst_now)} ({usd(ev.worst_resting)} resting) of {usd(ev.max_event_loss)} "
            f"P&L {usd(ev.pnl)} {ev.status}" + (f" {ev.incentive}" if ev.incentive else ""))


def events_brief(s: Snapshot, n: int = 3) -> str:
    """The roll-up in one phrase for the status line: how many events, how many not ok, the worst."""
    if not s.events:
        return ""
    bad = [e for e in s.events if e.status != "ok"]
    worst = min(s.events, key=lambda e: e.worst_resting)
    out = f"events={len(s.events)}"
    if bad:
        out += " not-ok=" + ",".join(f"{e.event}:{e.status}" for e in bad[:n]) + ("..." if len(bad) > n else "")
    return out + f" worst={worst.event} {usd(worst.worst_now)}/{usd(worst.worst_resting)} resting"


def render_table(s: Snapshot) -> str:
    """A plain text table within 80 columns (for a redraw without the console)."""
    lines = [f"kmm {s.venue} t={s.elapsed_s:,.0f}s fills={s.fills} sent={s.orders_sent} "
             f"write-bucket={s.write_pressure:4.0%} p50={_lat(s.latency_p50_us)} p99={_lat(s.latency_p99_us)}"[:80],
             f"{'market':<16} {'bid':>5} {'ask':>5} {'mybid':>5} {'myask':>5} {'pos':>6} {'P&L':>9} "
             f"{'fills':>5} state"]
    many = len(s.markets) > MANY_MARKETS
    for m in (notable(s.markets, MANY_MARKETS // 2) if many else s.markets):
        lines.append(f"{m.ticker[:16]:<16} {_c(m.best_bid)} {_c(m.best_ask)} {_c(m.my_bid)} {_c(m.my_ask)} "
                     f"{_n(m.position):>6} {usd(m.realized + m.unrealized):>9} {m.fills:>5} {m.state}"[:80])
    progs = [m for m in s.markets if m.incentive]
    for m in progs[:5]:
        lines.append(f"LIP {m.ticker}: {m.incentive}"[:80])
    if len(progs) > 5:
        lines.append(f"LIP ... {len(progs) - 5} more markets with a program")
    if many:
        lines.append(f"... {len(s.markets) - MANY_MARKETS // 2} more markets: see the events below"[:80])
    if s.events:
        lines.append(f"events ({len(s.events)}, worst first; worst case now / with resting, limit):"[:80])
        for ev in s.events[:10]:
            lines.append(event_line(ev)[:80])
    lines.append(f"session P&L net {usd(net_pnl(s))} (fees {usd(s.fees)}) cash {usd(s.cash)}"
                 + (f" | {s.incentives}" if s.incentives else "") + (f" | {s.note}" if s.note else ""))
    return "\n".join(lines)


def render_line(s: Snapshot) -> str:
    """One log line: the plain mode for non-interactive use."""
    parts = [f"t={s.elapsed_s:.0f}s fills={s.fills} sent={s.orders_sent} "
             f"pressure={s.write_pressure:.0%} p50={_lat(s.latency_p50_us)} p99={_lat(s.latency_p99_us)} "
             f"session_pnl={usd(net_pnl(s))}"]
    many = len(s.markets) > MANY_MARKETS
    for m in (notable(s.markets, 5) if many else s.markets):
        parts.append(f"{m.ticker} {_c(m.my_bid).strip()}/{_c(m.my_ask).strip()} pos={_n(m.position)} "
                     f"pnl={usd(m.realized + m.unrealized)} {m.state}" + (f" {m.incentive}" if m.incentive else ""))
    if many:
        quoting = sum(1 for m in s.markets if m.state == "quoting")
        parts.append(f"+{len(s.markets) - 5} markets ({quoting}/{len(s.markets)} quoting)")
    if s.events:
        parts.append(events_brief(s))
    if s.incentives:
        parts.append(s.incentives)
    if s.note:
        parts.append(s.note)
    return " | ".join(parts)


CLEAR = "\x1b[H\x1b[2J"


# ------------------------------------------------------------------------------------------ console
def _pick(book: dict[int, int], mine: dict[int, int], depth: int, best_first: list[int]) -> list[int]:
    """Up to ``depth`` prices nearest the inside, always including ours (dropping far book levels)."""
    keep = list(best_first[:depth])
    for px in mine:
        if px not in keep:
            keep.append(px)
    while len(keep) > max(depth, len(mine)):
        far = [p for p in keep if p not in mine]
        keep.remove(far[-1] if far else keep[-1])
    return keep


def ladder_rows(m: MarketRow, depth: int) -> list[tuple[str, str, str]]:
    """The market's small ladder, asks above bids, best in the middle: (our size, price, book size).
    Our orders are marked with ``*`` and their size, also where they are away from the shown book."""
    asks, bids = dict(m.asks), dict(m.bids)
    ask_px = sorted(_pick(asks, m.mine_asks, depth, sorted(asks)))
    bid_px = sorted(_pick(bids, m.mine_bids, depth, sorted(bids, reverse=True)), reverse=True)
    rows = []
    for px, mine, book, tag in ([(p, m.mine_asks.get(p), asks.get(p, 0), "a") for p in reversed(ask_px)]
                                + [(p, m.mine_bids.get(p), bids.get(p, 0), "b") for p in bid_px]):
        rows.append((f"*{_n(mine)}" if mine else "", f"{px / 100:.1f}{tag}", _n(book) if book else ""))
    return rows


def render_console(s: Snapshot, width: int = 80, height: int = 24) -> Any:
    """The full-screen console as a rich renderable sized for ``width`` x ``height`` (>= 80x24):
    header, markets with headroom, ladders, then fills / open orders / warnings / log in what is left."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    kill = s.kill_state
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("kmm ", style="bold")
    head.append(f"{s.mode} ", style="bold green" if s.mode == "live" else "bold yellow")
    head.append(f"{s.venue}  pid {s.pid}  t {_clock(s.elapsed_s)}  {time_left(s)}  ")
    head.append(f"kill switch {kill}", style="bold white on red" if kill != "armed" else "green")
    out = Text(f"out {s.out}", no_wrap=True, overflow="ellipsis", style="dim")
    pnl = net_pnl(s)
    n_open = len(s.open_orders)
    room: list[str] = []
    if s.max_loss:
        room.append(f"{usd(s.max_loss + min(0, pnl))} to max loss")
    if s.max_total_position:
        room.append(f"{_n(s.max_total_position - sum(abs(m.position) for m in s.markets))} contracts")
    if s.max_open_orders:
        room.append(f"{s.max_open_orders - n_open} orders")
    tot = Text(f"session P&L {usd(pnl)} net  " + ("room: " + ", ".join(room) if room else ""),
               no_wrap=True, overflow="ellipsis", style="bold red" if pnl < 0 else "bold")
    flow = Text(f"fills {s.fills}  open {n_open}  sent {s.orders_sent}  write bucket {s.write_pressure:.0%}  "
                f"latency p50 {_lat(s.latency_p50_us)} p99 {_lat(s.latency_p99_us)}  fees {usd(s.fees)}"
                + (f"  {s.incentives}" if s.incentives else "")
                + (f"  {s.note}" if s.note and not s.note.startswith("kill switch") else ""),
                no_wrap=True, overflow="ellipsis")
    keys = Text("k kill switch  r resume  q stop  | kmm status/kill-switch/resume/stop, or signals",
                no_wrap=True, overflow="ellipsis", style="reverse")

    many = len(s.markets) > MANY_MARKETS
    room_rows = max(3, (height - 12) // 2)
    shown = notable(s.markets, room_rows) if many else s.markets
    any_prog = any(m.incentive for m in s.markets)
    mt = Table(box=None, pad_edge=False, padding=(0, 1), expand=False, show_edge=False)
    for name, just in (("market", "left"), ("bid", "right"), ("ask", "right"), ("our bid", "right"),
                       ("our ask", "right"), ("pos", "right"), ("room", "right"), ("P&L", "right"),
                       ("state", "left")) + ((("LIP", "left"),) if any_prog else ()):
        mt.add_column(name, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for m in shown:
        mroom = _n(m.max_position - abs(m.position)) if m.max_position else "-"
        ours_b = "-" if m.my_bid is None else f"{_n(m.my_bid_size)}@{m.my_bid / 100:.1f}"
        ours_a = "-" if m.my_ask is None else f"{_n(m.my_ask_size)}@{m.my_ask / 100:.1f}"
        mpnl = m.realized + m.unrealized
        cells: list[Any] = [m.ticker[:14], _c(m.best_bid).strip(), _c(m.best_ask).strip(), ours_b, ours_a,
                            _n(m.position), mroom, Text(usd(mpnl), style="red" if mpnl < 0 else ""), m.state[:11]]
        if any_prog:
            cells.append(Text(m.incentive[:8] or "-", style="green" if m.incentive.startswith("ok") else ""))
        mt.add_row(*cells)
    extra: list[Any] = []
    if many:
        extra.append(Text(f"... {len(s.markets) - len(shown)} more markets ("
                          f"{sum(1 for m in s.markets if m.state == 'quoting')}/{len(s.markets)} quoting); "
                          "per event below", no_wrap=True, overflow="ellipsis", style="dim"))
    if s.events:
        et = Table(box=None, pad_edge=False, padding=(0, 1), expand=False, show_edge=False)
        for name, just in (("event", "left"), ("mkts", "right"), ("pos", "right"), ("E", "right"),
                           ("worst", "right"), ("w/ resting", "right"), ("limit", "right"), ("P&L", "right"),
                           ("status", "left")):
            et.add_column(name, justify=just, no_wrap=True)  # type: ignore[arg-type]
        for ev in s.events[:room_rows if many else 5]:
            et.add_row(ev.event[:16], f"{ev.quoted}/{ev.markets}", _n(ev.positions), f"{ev.inventory / 100:+g}",
                       Text(usd(ev.worst_now), style="red" if ev.worst_now < 0 else ""), usd(ev.worst_resting),
                       usd(ev.max_event_loss), usd(ev.pnl),
                       Text(ev.status[:11], style="" if ev.status == "ok" else "bold red"))
        extra.append(et)
    ladder_markets = shown[:3] if many else s.markets

    fixed = 4 + 1 + (len(shown) + 1) + 1 + (1 if many else 0) + \
        ((min(len(s.events), room_rows if many else 5) + 1) if s.events else 0)
    spare = max(4, height - fixed)
    depth = max(1, min(8, (spare - 6) // 4))       # ladder rows: 2*depth + title
    ladders = Table.grid(padding=(0, 2))
    per_row = max(1, min(len(ladder_markets), width // 26))
    ladder_h = 0
    cells = []
    for m in ladder_markets:
        t = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1), title_justify="left")
        t.title = m.ticker[:24]
        t.add_column(justify="right", style="bold cyan", width=6)
        t.add_column(justify="right", width=6)
        t.add_column(justify="right", width=7)
        rows = ladder_rows(m, depth)
        for mine, px, size in rows:
            t.add_row(mine, Text(px, style="red" if px.endswith("a") else "green"), size)
        cells.append(t)
        ladder_h = max(ladder_h, len(rows) + 1)
    for i in range(0, len(cells), per_row):
        ladders.add_row(*cells[i:i + per_row])
    ladder_lines = ladder_h * ((len(cells) + per_row - 1) // per_row)

    rest = max(0, height - fixed - ladder_lines - 1)
    lists = Table.grid(padding=(0, 2), expand=True)
    lists.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    lists.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    n = max(1, rest - 1)
    opens = [f"{t[:14]} {side} {_n(q)}@{px / 100:.1f}" for t, side, px, q in s.open_orders]
    left = Text("recent fills\n", style="bold")
    left.append("\n".join(s.recent_fills[-(n // 2 or 1):] or ["-"]))
    left.append("\nopen orders\n", style="bold")
    left.append("\n".join(opens[: max(1, n - n // 2 - 1)] or ["-"]))
    right = Text("warnings\n", style="bold")
    right.append("\n".join(s.warnings[-(n // 3 or 1):] or ["-"]), style="yellow")
    right.append("\nlog\n", style="bold")
    right.append("\n".join(s.log_lines[-max(1, n - (n // 3 or 1) - 1):] or ["-"]))
    lists.add_row(left, right)
    parts: list[Any] = [head, out, tot, flow, mt, *extra, Text(""), ladders]
    if rest >= 3:
        parts.append(lists)
    parts.append(keys)
    return Group(*parts)


def render_console_text(s: Snapshot, width: int = 80, height: int = 24) -> str:
    """The console as plain text (what a terminal of that size shows), for tests and ``kmm status``."""
    import io

    from rich.console import Console
    con = Console(width=width, height=height, record=True, color_system=None, force_terminal=False,
                  file=io.StringIO())
    con.print(render_console(s, width, height), crop=True)
    return con.export_text()

