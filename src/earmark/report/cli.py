"""Writing the report (``report.html`` and ``report.md``, atomically) and ``earmark report``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports happen in the functions: `earmark --help` stays fast
    pass
from earmark.report.content import REPORT_HTML, REPORT_MD, Report, build_report
from earmark.report.html import render_html
from earmark.report.markdown import render_markdown


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    pictures: bool = True,
    report: Report | None = None,
    audio_dir: str | Path | None = None,
    label: str = "",
) -> tuple[Path, Path]:
    """Build (unless given) and write ``report.html`` and ``report.md`` (default: in the run);
    ``audio_dir`` and ``label`` as for :func:`build_report`."""
    from earmark.outputs import atomic_write_text

    report = report if report is not None else build_report(run_dir, audio_dir, label)
    target = Path(out) if out is not None else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    html_path, md_path = target / REPORT_HTML, target / REPORT_MD
    atomic_write_text(html_path, render_html(report, pictures=pictures))
    atomic_write_text(md_path, render_markdown(report))
    return html_path, md_path


# ---------------------------------------------------------------------------- CLI
def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark report RUN_DIR``: write report.html and report.md."""
    try:
        report = build_report(args.run_dir)
        html_path, md_path = write_report(
            args.run_dir, args.output, pictures=not args.no_pictures, report=report
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(
            {
                "html": str(html_path),
                "markdown": str(md_path),
                "anomalies": [a.to_dict() for a in report.anomalies],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    elif not args.quiet:
        print(f"{html_path}\n{md_path}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``earmark report``."""
    p = subparsers.add_parser(
        "report",
        help="write the analysis report (HTML + Markdown) of a detect run",
        description="Build a self-contained HTML report and a Markdown report from a folder "
        "written by 'earmark detect': method, data and levels, events, pictures, anomalies.",
    )
    p.add_argument("run_dir", help="output folder of 'earmark detect'")
    p.add_argument(
        "-o", "--output", help="folder for report.html/report.md (default: the run folder)"
    )
    p.add_argument(
        "--no-pictures", action="store_true", help="skip the spectrogram figures (faster)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.add_argument("--json", action="store_true", help="print paths and anomalies as JSON")
    p.set_defaults(func=cmd_report)
    return p
