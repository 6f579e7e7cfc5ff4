"""The report as one self-contained HTML page: pictures embedded as base64 PNG, styles and
scripts inline, nothing fetched."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports happen in the functions: `earmark --help` stays fast
    pass
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


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


SEVERITY_COLOUR = {"error": "#D55E00", "warning": "#E69F00", "info": "#56B4E9"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}">{thead}<tbody>{body}</tbody></table>'


class _Raw(str):
    """HTML that is already escaped."""


def _figure(
    f: FileReport,
    title: str,
    alt: str,
    threshold: float | None,
    regions: list[tuple[float, float, str]],
    span: tuple[float, float] | None = None,
) -> str:
    """One file's spectrogram/events/scores picture (or a page of it) as an HTML block."""
    from earmark.report import plots

    sig = f.signal
    mel = sig.mel_db if sig is not None else None
    mel_hop = sig.mel_hop if sig is not None else 0.032
    level = (sig.block_rms_db, sig.block_seconds, sig.noise_floor_dbfs) if sig is not None else None
    png = plots.file_figure(
        title, f.duration, mel, mel_hop, f.events, f.scores, f.hop, f.names, threshold,
        span=span, regions=regions, level=level,
    )  # fmt: skip
    return f"<div class='fig'>{_img(png, alt)}</div>"


def render_html(report: Report, pictures: bool = True) -> str:
    """The report as one self-contained HTML page."""
    from earmark.report import plots

    m = report.manifest
    totals = m.get("totals", {})
    threshold = (m.get("options", {}).get("postprocess") or {}).get("threshold")
    custom = m.get("custom_classes")
    if custom and not custom.get("audioset"):  # one line only if every class shares it
        values = set((custom.get("thresholds") or {}).values())
        threshold = values.pop() if len(values) == 1 else None
    esc = html.escape
    parts = [
        "<h1>earmark analysis report</h1>"
        f"<p class='lead'>Run folder <code>{esc(report.name)}</code> · "
        f"{totals.get('files', len(report.files))} file(s): {totals.get('ok', 0)} ok, "
        f"{totals.get('partial', 0)} partial, {totals.get('failed', 0)} failed · "
        f"{timestamp(totals.get('audio_seconds', 0))} of audio · {len(report.events)} events · "
        f"{len(report.anomalies)} anomalies</p>",
        "<nav><a href='#method'>Method</a> <a href='#data'>Data</a> <a href='#events'>Events</a> "
        "<a href='#anomalies'>Anomalies</a> <a href='#files'>Files</a></nav>",
        "<h2 id='method'>Method</h2>",
        _table(["", ""], [(k, v) for k, v in methodology(report)], "kv"),
        "<h2 id='data'>Data</h2>",
    ]
    rows = dataset_rows(report)
    parts.append(
        _table(
            [
                "file",
                "status",
                "duration",
                "sample rate",
                "channels",
                "format",
                "loudness (LUFS)",
                "peak (dBFS)",
                "noise floor (dBFS)",
                "SNR (dB)",
                "events",
            ],
            [
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
            "sortable",
        )
    )
    parts.append(
        f"<p>Total duration {timestamp(sum(f.duration for f in report.files))}. Levels are of "
        "the mono downmix the model hears: loudness per ITU-R BS.1770, noise floor = 10th "
        "percentile of 100 ms "
        "levels, SNR = 95th percentile minus noise floor.</p>"
    )
    pre = [r for r in rows if r["after_lufs"] is not None or r["after_noise"] is not None]
    if pre:
        parts.append("<h3>Before and after preprocessing</h3>")
        parts.append(
            _table(
                [
                    "file",
                    "LUFS before",
                    "LUFS after",
                    "noise floor before",
                    "after",
                    "SNR before",
                    "after",
                ],
                [
                    (
                        r["file"],
                        format_value(r["lufs"]),
                        format_value(r["after_lufs"]),
                        format_value(r["noise_floor"]),
                        format_value(r["after_noise"]),
                        format_value(r["snr"]),
                        format_value(r["after_snr"]),
                    )
                    for r in pre
                ],
            )
        )
    parts.append("<h2 id='events'>Events over the run</h2>")
    parts.append(
        _table(
            ["class", "events", "total time", "seconds"],
            [(k, n, timestamp(t), f"{t:.1f}") for k, n, t in report.class_totals()],
            "sortable",
        )
    )
    co = report.cooccurrence()
    if co:
        parts.append("<h3>Classes that co-occur</h3>")
        parts.append(
            _table(
                ["class", "class", "overlap (s)"],
                [(a, b, f"{t:.1f}") for a, b, t in co],
                "sortable",
            )
        )
    parts.append("<h2 id='anomalies'>Anomalies and difficulties</h2>")
    if report.anomalies:
        parts.append(
            _table(
                ["severity", "file", "what", "where", "measured"],
                [
                    (
                        _Raw(
                            f"<span class='sev' style='background:"
                            f"{SEVERITY_COLOUR[a.severity]}'>{a.severity}</span>"
                        ),
                        a.file,
                        _Raw(f"<a href='#why-{esc(a.kind)}'>{esc(a.title)}</a>"),
                        where_text(a),
                        a.detail,
                    )
                    for a in report.anomalies
                ],
                "sortable anomalies",
            )
        )
        parts.append("<h3>Why these make recognition harder</h3><dl class='why'>")
        for kind, (title, why) in explanations(report).items():
            parts.append(f"<dt id='why-{esc(kind)}'>{esc(title)}</dt><dd>{esc(why)}</dd>")
        parts.append("</dl>")
    else:
        parts.append("<p>None found.</p>")
    parts.append("<h2 id='files'>Files</h2>")
    timeline_data = []
    for i, f in enumerate(report.files):
        parts.append(
            f"<section class='file' id='file-{i}'><h3>{esc(f.path)} "
            f"<small>{esc(f.status)}</small></h3>"
        )
        if f.status == "failed":
            parts.append(
                f"<p class='error'><b>Failed:</b> {esc(f.entry.get('error') or '')}</p></section>"
            )
            continue
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
            parts.append(
                f"<div class='timeline' id='timeline-{i}' data-duration='{f.duration}'></div>"
            )
        else:
            regions = [
                (s, e, SEVERITY_COLOUR[a.severity]) for a in f.anomalies for s, e in a.regions
            ]
            long_file = f.duration > plots.LONG_FILE_SECONDS
            name = Path(f.path).name
            parts.append(
                _figure(
                    f,
                    name + (" — overview" if long_file else ""),
                    f"spectrogram, events and scores of {f.path}",
                    threshold,
                    regions,
                )
            )
            if long_file:
                spans, left_out = plots.pages(f.duration, f.events)
                parts.append(
                    "<details><summary>Zoomed pages "
                    f"({len(spans)} of 60 s"
                    + (f", the busiest; {left_out} quieter minutes not drawn" if left_out else "")
                    + ")"
                    "</summary>"
                )
                for a, b in spans:
                    title = f"{name} {timestamp(a)}–{timestamp(b)}"
                    alt = f"{f.path} from {a:.0f} s"
                    parts.append(_figure(f, title, alt, threshold, regions, (a, b)))
                parts.append("</details>")
        if f.events:
            parts.append(
                "<input class='filter' placeholder='filter events (label)…' "
                "aria-label='filter events'>"
            )
            parts.append(
                _table(
                    ["label", "start", "end", "duration (s)", "peak", "mean", "also heard as"],
                    [
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
                    ],
                    "sortable events",
                )
            )
        else:
            parts.append("<p>No events.</p>")
        parts.append("</section>")
    from earmark.outputs import json_for_script

    data = json_for_script(timeline_data)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>earmark report — {esc(report.name)}</title>"
        f"<style>{_asset('report.css')}</style></head>"
        f"<body><main>{''.join(parts)}</main>"
        f"<script id='timeline-data' type='application/json'>{data}</script>"
        f"<script>{_asset('report.js')}</script></body></html>"
    )
