"""The chart of ``kmm execute compare``: no bar for a value that does not exist, error bars within what
the measure can take, the legend outside the panels."""

from __future__ import annotations

from kmm.execution.compare import PANELS, chart_bars, write_chart


def _summary():
    # "capped" never filled in the thin book: no time to fill; "walker" filled fully with a wide spread
    return {
        ("thin", "capped"): {"fill rate %": (0.0, 0.0), "slip arr c": None, "slip lim c": None, "fees $": (0.0, 0.0),
                             "1st fill s": None, "full fill s": None, "API calls": (2.0, 0.0)},
        ("thin", "walker"): {"fill rate %": (96.0, 7.0), "slip arr c": (1.5, 2.0), "slip lim c": (-3.0, 1.0),
                             "fees $": (0.2, 0.3), "1st fill s": (0.5, 0.2), "full fill s": (2.0, 5.0),
                             "API calls": (4.0, 6.0)},
        ("thick", "capped"): {"fill rate %": (100.0, 0.0), "slip arr c": (0.0, 0.0), "slip lim c": (-4.0, 0.0),
                              "fees $": (0.1, 0.0), "1st fill s": (0.1, 0.0), "full fill s": (0.1, 0.0),
                              "API calls": (1.0, 0.0)},
        ("thick", "walker"): {"fill rate %": (100.0, 0.0), "slip arr c": (0.0, 0.0), "slip lim c": (-4.0, 0.0),
                              "fees $": (0.1, 0.0), "1st fill s": (0.1, 0.0), "full fill s": (0.1, 0.0),
                              "API calls": (1.0, 0.0)},
    }


def test_an_unfilled_algorithm_gets_no_time_to_fill_bar():
    scenarios, algos, bars = chart_bars(_summary())
    assert algos == ["capped", "walker"] and scenarios == ["thick", "thin"]
    thin = bars["full fill s"]["thin"]
    assert thin[0] is None                          # capped: never filled -> nothing drawn, not a 0 bar
    assert thin[1] is not None and thin[1].height == 2.0
    assert bars["slip arr c"]["thin"][0] is None


def test_error_bars_stay_within_0_100_percent_and_0_seconds():
    _, _, bars = chart_bars(_summary())
    walker_fill = bars["fill rate %"]["thin"][1]
    assert walker_fill.height + walker_fill.err_high == 100.0 and walker_fill.err_low == 7.0
    walker_time = bars["full fill s"]["thin"][1]
    assert walker_time.height - walker_time.err_low == 0.0 and walker_time.err_high == 5.0
    fees = bars["fees $"]["thin"][1]
    assert fees.height - fees.err_low >= 0.0
    slip = bars["slip arr c"]["thin"][1]               # slippage may be negative: the bar is not cut
    assert slip.err_low == slip.err_high == 2.0
    for col, (_, _, (lo, hi)) in PANELS.items():
        for per in bars[col].values():
            for b in per:
                if b is not None:
                    assert lo is None or b.height - b.err_low >= lo - 1e-9
                    assert hi is None or b.height + b.err_high <= hi + 1e-9


def test_the_legend_does_not_cover_any_bar(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    captured = {}
    real_close = plt.close

    def keep(fig=None):
        captured["fig"] = fig
    monkeypatch.setattr(plt, "close", keep)
    png = write_chart(_summary(), tmp_path / "c.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    fig = captured["fig"]
    try:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        assert not any(ax.get_legend() for ax in fig.axes)    # no legend inside a panel
        (legend,) = fig.legends
        lb = legend.get_window_extent(r)
        for ax in fig.axes:
            assert not lb.overlaps(ax.get_window_extent(r))
        titles = [ax.get_title() for ax in fig.axes]
        assert "Time to fill the whole order" in titles and all(ax.get_ylabel() for ax in fig.axes)
    finally:
        real_close(fig)
