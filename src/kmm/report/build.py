"""``build_report``: read run directories, compute the figures, draw the charts, write the files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from kmm.report import html as H
from kmm.report.charts import comparison_equity, run_charts
from kmm.report.data import ReportError, load_run
from kmm.report.figures import compute

__all__ = ["FORMATS", "build_report", "default_out", "report_command_for"]

FORMATS = ("html", "png")


def default_out(dirs: Sequence[Path]) -> Path:
    """One directory: the report goes into it. Several: ``./kmm-report``."""
    return Path(dirs[0]) if len(dirs) == 1 else Path("kmm-report")


def _labels(dirs: Sequence[Path]) -> list[str]:
    names = [Path(d).resolve().name or str(d) for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{i + 1}-{n}" for i, n in enumerate(names)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def build_report(dirs: Sequence[str | Path], out: str | Path | None = None,
                 formats: Sequence[str] = FORMATS) -> dict[str, list[Path]]:
    """Write ``report.html`` and/or ``charts/<run>/*.png`` into ``out``; return what was written by format."""
    if not dirs:
        raise ReportError("kmm report needs at least one output directory")
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportError(f"--format {','.join(formats)}: choose among {', '.join(FORMATS)}")
    paths = [Path(d) for d in dirs]
    outdir = Path(out) if out is not None else default_out(paths)
    items = []
    for p, label in zip(paths, _labels(paths)):
        run = load_run(p, label)
        figs = compute(run)
        items.append((run, figs, run_charts(run, figs)))
    written: dict[str, list[Path]] = {"html": [], "png": []}
    outdir.mkdir(parents=True, exist_ok=True)
    compare = comparison_equity([(r, f) for r, f, _ in items]) if len(items) > 1 else None
    if "png" in formats:
        for run, _, charts in items:
            sub = outdir / "charts" / (_safe(run.label) if len(items) > 1 else "")
            sub.mkdir(parents=True, exist_ok=True)
            for c in charts:
                if c.png is not None:
                    (sub / f"{c.name}.png").write_bytes(c.png)
                    written["png"].append(sub / f"{c.name}.png")
        if compare is not None and compare.png is not None:
            (outdir / "charts" / "compare_equity.png").write_bytes(compare.png)
            written["png"].append(outdir / "charts" / "compare_equity.png")
    if "html" in formats:
        body = []
        if len(items) > 1:
            body.append(H.comparison_section([(r, f) for r, f, _ in items], compare))
        body.extend(H.run_section(r, f, c) for r, f, c in items)
        title = ("kmm report: " + items[0][0].label) if len(items) == 1 else \
            "kmm report: " + " vs ".join(r.label for r, _, _ in items)
        path = outdir / "report.html"
        path.write_text(H.page(title, "\n".join(body)), encoding="utf-8")
        written["html"].append(path)
    return written


def report_command_for(out_dir: str | Path) -> str:
    """The command that builds the report of a run directory (printed at the end of ``kmm run``)."""
    import shlex
    return f"kmm report {shlex.quote(str(out_dir))}"
