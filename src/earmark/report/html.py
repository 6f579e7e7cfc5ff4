"""The report as one self-contained HTML page: pictures embedded as base64 PNG, styles and
scripts inline, nothing fetched. The page is the Jinja2 template ``data/report/report.html.j2``;
this module gathers what it shows."""

from __future__ import annotations

import base64
import html
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earmark.report.content import (
    FileReport,
    Report,
    alternatives_text,
    dataset_rows,
    explanations,
    format_value,
    methodology,
    timestamp,
    where_text,
)

if TYPE_CHECKING:  # jinja2 loads when a report is rendered: `earmark --help` stays fast
    import jinja2

TEMPLATE = "report.html.j2"
"""The page's template, in ``earmark/data/report`` beside its CSS and script."""


# ---------------------------------------------------------------------------- HTML
def script_hashes() -> list[str]:
    """CSP sources (``'sha256-...'``) of the scripts a report runs, for servers that send it."""
    import base64
    import hashlib

    digest = hashlib.sha256(_asset("report.js").encode("utf-8")).digest()
    return [f"'sha256-{base64.b64encode(digest).decode('ascii')}'"]


def _asset(name: str) -> str:
    from importlib import resources

    return resources.files("earmark").joinpath("data", "report", name).read_text(encoding="utf-8")


SEVERITY_COLOUR = {"error": "#D55E00", "warning": "#E69F00", "info": "#56B4E9"}


def _escape(value: Any) -> Any:
    """What the template prints for ``{{ value }}``: markup as it is, anything else escaped
    like :func:`html.escape` (quotes included), as the page always was."""
    from markupsafe import Markup

    return value if hasattr(value, "__html__") else Markup(html.escape(str(value)))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report's templates (autoescaping, built once)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("earmark", "data/report"),
        autoescape=True,
        finalize=_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _figure(
    f: FileReport,
    title: str,
    alt: str,
    threshold: float | None,
    regions: list[tuple[float, float, str]],
    span: tuple[float, float] | None = None,
) -> dict[str, str]:
    """One file's spectrogram/events/scores picture (or a page of it): its PNG (base64) and
    its text alternative."""
    from earmark.report import plots

    sig = f.signal
    mel = sig.mel_db if sig is not None else None
    mel_hop = sig.mel_hop if sig is not None else 0.032
    level = (sig.block_rms_db, sig.block_seconds, sig.noise_floor_dbfs) if sig is not None else None
    png = plots.file_figure(
        title, f.duration, mel, mel_hop, f.events, f.scores, f.hop, f.names, threshold,
        span=span, regions=regions, level=level,
    )  # fmt: skip
    return {"png": base64.b64encode(png).decode("ascii"), "alt": alt}


def _file_context(
    i: int, f: FileReport, pictures: bool, threshold: float | None, timeline_data: list
) -> dict[str, Any]:
    """What the page shows of one file (its timeline's data goes to ``timeline_data``)."""
    from earmark.report import plots

    shown: dict[str, Any] = {"index": i, "path": f.path, "status": f.status}
    if f.status == "failed":
        return {**shown, "failed": True, "error": f.entry.get("error") or ""}
    shown.update(failed=False, timeline=not pictures, duration=f.duration, long_file=False)
    if not pictures:  # with pictures, the figure's event lanes are the timeline
        lanes = plots.lane_labels(f.events, limit=40)
        timeline_data.append(
            {
                "id": f"timeline-{i}",
                "duration": f.duration,
                "lanes": lanes,
                "colours": plots.colour_of(lanes),
                "events": [
                    [e.label, round(e.onset, 3), round(e.offset, 3), round(e.peak, 3)]
                    for e in f.events
                ],
            }
        )
    else:
        regions = [(s, e, SEVERITY_COLOUR[a.severity]) for a in f.anomalies for s, e in a.regions]
        long_file = f.duration > plots.LONG_FILE_SECONDS
        name = Path(f.path).name
        shown["overview"] = _figure(
            f,
            name + (" — overview" if long_file else ""),
            f"spectrogram, events and scores of {f.path}",
            threshold,
            regions,
        )
        if long_file:
            spans, left_out = plots.pages(f.duration, f.events)
            shown.update(long_file=True, left_out=left_out)
            shown["pages"] = [
                _figure(
                    f,
                    f"{name} {timestamp(a)}–{timestamp(b)}",
                    f"{f.path} from {a:.0f} s",
                    threshold,
                    regions,
                    (a, b),
                )
                for a, b in spans
            ]
    shown["event_rows"] = [
        (
            e.label,
            timestamp(e.onset),
            timestamp(e.offset),
            f"{e.duration:.3f}",
            f"{e.peak:.3f}",
            f"{e.mean:.3f}",
            alternatives_text(e),
        )
        for e in f.events
    ]
    return shown


def render_html(report: Report, pictures: bool = True) -> str:
    """The report as one self-contained HTML page."""
    from markupsafe import Markup

    from earmark.outputs import json_for_script

    m = report.manifest
    totals = m.get("totals", {})
    threshold = (m.get("options", {}).get("postprocess") or {}).get("threshold")
    custom = m.get("custom_classes")
    if custom and not custom.get("audioset"):  # one line only if every class shares it
        values = set((custom.get("thresholds") or {}).values())
        threshold = values.pop() if len(values) == 1 else None
    rows = dataset_rows(report)
    timeline_data: list = []
    files = [
        _file_context(i, f, pictures, threshold, timeline_data) for i, f in enumerate(report.files)
    ]
    badge = "<span class='sev' style='background:{}'>{}</span>"
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            name=report.name,
            css=Markup(_asset("report.css")),
            js=Markup(_asset("report.js")),
            totals={
                "files": totals.get("files", len(report.files)),
                "ok": totals.get("ok", 0),
                "partial": totals.get("partial", 0),
                "failed": totals.get("failed", 0),
                "audio": timestamp(totals.get("audio_seconds", 0)),
                "events": len(report.events),
                "anomalies": len(report.anomalies),
            },
            methodology=methodology(report),
            data_rows=[
                (
                    r["file"],
                    r["status"],
                    timestamp(r["duration"]),
                    r["sample_rate"] or "–",
                    r["channels"] or "–",
                    r["format"],
                    format_value(r["lufs"]),
                    format_value(r["peak"]),
                    format_value(r["noise_floor"]),
                    format_value(r["snr"]),
                    r["events"],
                )
                for r in rows
            ],
            total_duration=timestamp(sum(f.duration for f in report.files)),
            preprocessing_rows=[
                (
                    r["file"],
                    format_value(r["lufs"]),
                    format_value(r["after_lufs"]),
                    format_value(r["noise_floor"]),
                    format_value(r["after_noise"]),
                    format_value(r["snr"]),
                    format_value(r["after_snr"]),
                )
                for r in rows
                if r["after_lufs"] is not None or r["after_noise"] is not None
            ],
            class_rows=[(k, n, timestamp(t), f"{t:.1f}") for k, n, t in report.class_totals()],
            cooccurrence_rows=[(a, b, f"{t:.1f}") for a, b, t in report.cooccurrence()],
            anomaly_rows=[
                (
                    Markup(badge.format(SEVERITY_COLOUR[a.severity], a.severity)),
                    a.file,
                    Markup(f"<a href='#why-{html.escape(a.kind)}'>{html.escape(a.title)}</a>"),
                    where_text(a),
                    a.detail,
                )
                for a in report.anomalies
            ],
            explanations=[
                (kind, title, why) for kind, (title, why) in explanations(report).items()
            ],
            files=files,
            timeline_data=Markup(json_for_script(timeline_data)),
        )
    )
