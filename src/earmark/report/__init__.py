"""The analysis report of a detection run (method, data, events, pictures, anomalies): the
``report`` wing. It reads a run folder and never the other way round.

* :mod:`.content`: the run read back (:func:`build_report`) and what the report says;
* :mod:`.anomalies`: the problems found in each file, located and explained;
* :mod:`.plots`: spectrogram, event lanes, score curves and level on one time axis;
* :mod:`.markdown`, :mod:`.html`: the two renderings;
* :mod:`.cli`: :func:`write_report` and ``earmark report``.
"""

from earmark.report.cli import add_parser, cmd_report, write_report
from earmark.report.content import (
    REPORT_HTML,
    REPORT_MD,
    FileReport,
    Report,
    build_report,
    dataset_rows,
    methodology,
    timestamp,
)
from earmark.report.html import render_html, script_hashes
from earmark.report.markdown import render_markdown

__all__ = [
    "REPORT_HTML",
    "REPORT_MD",
    "FileReport",
    "Report",
    "add_parser",
    "build_report",
    "cmd_report",
    "dataset_rows",
    "methodology",
    "render_html",
    "render_markdown",
    "script_hashes",
    "timestamp",
    "write_report",
]
