"""The report as Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports happen in the functions: `earmark --help` stays fast
    pass
from earmark.report.content import (
    Report,
    alternatives_text,
    dataset_rows,
    explanations,
    format_value,
    methodology,
    timestamp,
    where_text,
)


# ---------------------------------------------------------------------------- Markdown
def render_markdown(report: Report) -> str:
    """The report as Markdown (same content as the HTML, without pictures)."""
    m = report.manifest
    totals = m.get("totals", {})
    out = [
        "# earmark analysis report",
        "",
        f"Run folder `{report.name}` · {totals.get('files', len(report.files))} file(s), "
        f"{totals.get('ok', 0)} ok, {totals.get('partial', 0)} partial, "
        f"{totals.get('failed', 0)} failed · "
        f"{timestamp(totals.get('audio_seconds', 0))} of audio · "
        f"{len(report.events)} events · {len(report.anomalies)} anomalies",
        "",
        "## Method",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v.replace('|', '/')} |" for k, v in methodology(report)]
    out += [
        "",
        "## Data",
        "",
        "| file | status | duration | rate | ch | format | LUFS | peak dBFS | noise floor dBFS "
        "| SNR dB | events |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pre_rows = []
    for r in dataset_rows(report):
        out.append(
            f"| {r['file']} | {r['status']} | {timestamp(r['duration'])} | "
            f"{r['sample_rate'] or '–'} | "
            f"{r['channels'] or '–'} | {r['format']} | {format_value(r['lufs'])} | "
            f"{format_value(r['peak'])} | "
            f"{format_value(r['noise_floor'])} | {format_value(r['snr'])} | {r['events']} |"
        )
        if r["after_lufs"] is not None or r["after_noise"] is not None:
            pre_rows.append(r)
    total = sum(f.duration for f in report.files)
    out += ["", f"Total duration {timestamp(total)}."]
    if pre_rows:
        out += [
            "",
            "Levels before → after preprocessing:",
            "",
            "| file | LUFS | noise floor | SNR |",
            "|---|---|---|---|",
        ]
        for r in pre_rows:
            out.append(
                f"| {r['file']} | {format_value(r['lufs'])} → {format_value(r['after_lufs'])} | "
                f"{format_value(r['noise_floor'])} → {format_value(r['after_noise'])} | "
                f"{format_value(r['snr'])} → {format_value(r['after_snr'])} |"
            )
    out += ["", "## Events over the run", "", "| class | events | total time |", "|---|---|---|"]
    out += [f"| {k} | {n} | {timestamp(t)} |" for k, n, t in report.class_totals()]
    co = report.cooccurrence()
    if co:
        out += [
            "",
            "Classes that co-occur (seconds of overlap):",
            "",
            "| class | class | overlap |",
            "|---|---|---|",
        ]
        out += [f"| {a} | {b} | {t:.1f} s |" for a, b, t in co]
    out += ["", "## Anomalies and difficulties", ""]
    if not report.anomalies:
        out.append("None found.")
    for a in report.anomalies:
        out += [f"- **{a.title}** ({a.severity}) in `{a.file}`, {where_text(a)}: {a.detail}."]
    if report.anomalies:
        out += ["", "Why these make recognition harder:", ""]
        out += [f"- **{title}**: {why}" for title, why in explanations(report).values()]
    out += ["", "## Events per file"]
    for f in report.files:
        out += ["", f"### {f.path}", ""]
        if f.status == "failed":
            out.append(f"**Failed:** {f.entry.get('error')}")
            continue
        if not f.events:
            out.append("No events.")
            continue
        out += [
            "| label | start | end | duration | peak | mean | also heard as |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {e.label} | {timestamp(e.onset)} | {timestamp(e.offset)} | {e.duration:.3f} | "
            f"{e.peak:.3f} | {e.mean:.3f} | {alternatives_text(e)} |"
            for e in f.events
        ]
    return "\n".join(out) + "\n"
