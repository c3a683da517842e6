"""``kmm report`` (a tearsheet for any output directory) and ``kmm sweep`` (parameter research on Ray).

See ``docs/report.md``. The report reads only the records a run wrote; ``kmm sweep`` needs the
``research`` extra (``pip install 'kmm[research]'``) and imports Ray only when it runs.
"""

import os

from kmm.report.build import build_report, report_command_for
from kmm.report.data import ReportError, RunData, load_run

__all__ = ["ReportError", "RunData", "build_report", "load_run", "report_command_for", "write_run_report"]


def write_run_report(out_dir: str | os.PathLike[str], build: bool = True) -> str:
    """The hook for the end of ``kmm run``: the line to print, after building the report of ``out_dir``
    when ``build`` (``kmm run --report``); without it the line is the command that builds it.

    A failure to draw the report never changes the run's outcome: the line says what went wrong and
    the command to retry.
    """
    from pathlib import Path
    cmd = report_command_for(Path(out_dir))
    if not build:
        return f"kmm run: to draw this run's tearsheet, run: {cmd}"
    try:
        written = build_report([Path(out_dir)])
    except Exception as exc:  # noqa: BLE001 - the run already finished; the report is a courtesy
        return f"kmm run: the report could not be written ({exc}); retry with: {cmd}"
    return f"kmm run: report written to {written['html'][0]}"
