"""The analysis report of a detection run: method, data, events, pictures, anomalies.

:func:`build_report` reads a run folder written by ``earmark detect`` (``manifest.json``,
``events.json``, per-file ``*.scores.npz`` and ``*.signal.npz``) and returns a :class:`Report`;
:func:`write_report` renders it as one self-contained HTML file (pictures embedded as base64 PNG,
styles and scripts inline, nothing fetched) and as Markdown, both atomically. Everything in the
report comes from the run's own files, so it always says what was actually done.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import math
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earmark.constants import FRAME_HOP

if TYPE_CHECKING:  # heavy imports happen in the functions: `earmark --help` stays fast
    import numpy as np

    from earmark.anomalies import Anomaly
    from earmark.events import Event
    from earmark.signal_stats import SignalStats

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def timestamp(seconds: float) -> str:
    """``h:mm:ss.mmm``."""
    ms = round(max(seconds, 0.0) * 1000)
    return f"{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}{unit}"


@dataclass
class FileReport:
    """One input file of the run."""

    path: str
    entry: dict
    events: list[Event]
    signal: SignalStats | None = None
    scores: np.ndarray | None = None
    hop: float = FRAME_HOP
    names: list[str] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ok, partial or failed."""
        return self.entry.get("status", "ok")

    @property
    def duration(self) -> float:
        """Seconds analysed."""
        return float(self.entry.get("duration") or 0.0)


@dataclass
class Report:
    """Everything the report shows, built from a run folder."""

    run_dir: Path
    manifest: dict
    files: list[FileReport]
    label: str = ""
    """How the report names the run (default: the run folder's path)."""

    @property
    def name(self) -> str:
        """The run's name in the report: its label, else the run folder."""
        return self.label or str(self.run_dir)

    @property
    def events(self) -> list[Event]:
        """All events of the run."""
        return [e for f in self.files for e in f.events]

    def class_totals(self) -> list[tuple[str, int, float]]:
        """Per class: events and total seconds, most time first."""
        totals: dict[str, list[float]] = {}
        for e in self.events:
            row = totals.setdefault(e.label, [0, 0.0])
            row[0] += 1
            row[1] += e.duration
        return sorted(((k, int(n), t) for k, (n, t) in totals.items()), key=lambda r: (-r[2], r[0]))

    def cooccurrence(self, top: int = 15) -> list[tuple[str, str, float]]:
        """Pairs of classes whose events overlap in time, with the seconds of overlap."""
        pairs: Counter = Counter()
        for f in self.files:
            evs = sorted(f.events, key=lambda e: e.onset)
            for a, b in combinations(evs, 2):
                if a.label == b.label:
                    continue
                overlap = min(a.offset, b.offset) - max(a.onset, b.onset)
                if overlap > 0:
                    pairs[tuple(sorted((a.label, b.label)))] += overlap
        return [(a, b, t) for (a, b), t in pairs.most_common(top)]

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly of every file."""
        return [a for f in self.files for a in f.anomalies]


def _locate(run_dir: Path, recorded: str | None) -> Path | None:
    """A per-file output: as recorded, or under this run folder if the folder was moved."""
    if not recorded:
        return None
    path = Path(recorded)
    if path.exists():
        return path
    parts = path.parts
    if "files" in parts:
        moved = run_dir.joinpath(*parts[len(parts) - parts[::-1].index("files") - 1 :])
        if moved.exists():
            return moved
    return None


def _recording(entry: dict, audio_dir: str | Path | None) -> str | None:
    """Where a file's recording is: its path, or its stored name under ``audio_dir``."""
    if audio_dir is None:
        return entry["path"]
    stored = (entry.get("audio") or {}).get("stored")
    return str(Path(audio_dir) / Path(stored).name) if stored else None


def _measure_now(path: str, scores_path: Path | None) -> SignalStats | None:
    """Levels of a file from a run made without ``--report``: decoded again and measured,
    saved next to its scores (``<stem>.signal.npz``) so the next report reads them. ``None``
    when the recording is no longer there or cannot be decoded."""
    from earmark.audio import SAMPLE_RATE, AudioError, AudioReader
    from earmark.signal_stats import SIGNAL_SUFFIX, LevelMeter, write_signal

    try:
        with AudioReader(path, SAMPLE_RATE) as reader:
            stats = LevelMeter().finish_stream(reader)
    except (AudioError, OSError):
        return None
    if scores_path is not None and scores_path.name.endswith(".scores.npz"):
        stem = scores_path.name[: -len(".scores.npz")]
        with contextlib.suppress(OSError):  # a read-only run folder: the report is still built
            write_signal(scores_path.with_name(stem + SIGNAL_SUFFIX), stats)
    return stats


def _labels_text(post: dict, custom: dict | None) -> str:
    """The classes a run reported, for the method section."""
    audioset = "; ".join(post.get("labels") or []) or "all 527 AudioSet classes"
    if not custom:
        return audioset
    trained = (
        f"{len(custom['classes'])} custom classes from {custom['model_dir']} "
        f"({', '.join(custom['classes'])}"
        + ("; fine-tuned backbone" if custom.get("finetuned_backbone") else "")
        + (
            f"; cross-validated accuracy {custom['cross_validated_accuracy']:.3f}"
            if custom.get("cross_validated_accuracy") is not None
            else ""
        )
        + ")"
    )
    return f"{trained}, with {audioset}" if custom.get("audioset") else trained


def build_report(
    run_dir: str | Path, audio_dir: str | Path | None = None, label: str = ""
) -> Report:
    """Read a run folder and run every anomaly detector.

    Levels missing from the run are measured on the recordings: at their manifest paths, or,
    with ``audio_dir`` (the service), only at ``audio_dir/<stored name>``: a name a client
    chose is then never opened as a path. ``label`` names the run in the report instead of
    the folder's path (the service: no storage path in what clients see).

    Raises ``FileNotFoundError`` when there is no manifest, ``ValueError`` for unreadable files.
    """
    from earmark.anomalies import detect_anomalies
    from earmark.outputs import read_events, read_scores
    from earmark.signal_stats import read_signal

    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no manifest.json (not an earmark detect output folder)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from None
    all_events = read_events(run_dir / "events.json") if (run_dir / "events.json").exists() else []
    by_file: dict[str, list[Event]] = {}
    for e in all_events:
        by_file.setdefault(e.file, []).append(e)
    threshold = manifest.get("options", {}).get("postprocess", {}).get("threshold")
    files = []
    for entry in manifest.get("files", []):
        path = entry["path"]
        fr = FileReport(
            path, entry, sorted(by_file.get(path, []), key=lambda e: (e.onset, e.label))
        )
        outputs = entry.get("outputs") or {}
        audio = entry.get("audio") or {}
        signal_path = _locate(run_dir, outputs.get("signal") or audio.get("signal_file"))
        if signal_path is not None:
            fr.signal = read_signal(signal_path)
        elif entry.get("status") in ("ok", "partial"):
            source = _recording(entry, audio_dir)
            if source is not None:
                fr.signal = _measure_now(source, _locate(run_dir, outputs.get("scores")))
        scores_path = _locate(run_dir, outputs.get("scores"))
        if scores_path is not None:
            scores, hop, labels, _ = read_scores(scores_path)
            fr.scores, fr.hop, fr.names = scores, hop, [lab.name for lab in labels]
        fr.anomalies = detect_anomalies(
            path, entry, fr.signal, fr.events, fr.scores, fr.hop, fr.names
        )
        files.append(fr)
    report = Report(run_dir, manifest, files, label)
    report.manifest.setdefault("options", {}).setdefault("postprocess", {}).setdefault(
        "threshold", threshold
    )
    return report


# ---------------------------------------------------------------------------- content
def methodology(report: Report) -> list[tuple[str, str]]:
    """(topic, text) rows describing how the run was made."""
    m = report.manifest
    model = m.get("model", {})
    opts = m.get("options", {})
    scoring = opts.get("scoring", {})
    post = opts.get("postprocess", {})
    bounds = opts.get("boundaries", {})
    pre = opts.get("preprocess", {}) or {}
    formats = Counter()
    rates = Counter()
    for f in report.files:
        audio = f.entry.get("audio") or {}
        if audio.get("codec"):
            formats[f"{audio.get('container')}/{audio.get('codec')}"] += 1
        if audio.get("sample_rate"):
            rates[f"{audio['sample_rate']} Hz"] += 1
    hop = m.get("frame_hop_seconds", scoring.get("hop"))
    if scoring.get("method") == "window":
        scoring_text = (
            f"window scoring: the model's clip-level output on a {scoring.get('window')} s window "
            f"centred on each frame, every {hop} s"
        )
    else:
        scoring_text = (
            f"local scoring: squeeze-excitation gates averaged over {scoring.get('se_context')} "
            f"frames ({scoring.get('se_context', 0) * (hop or 0):.2f} s), head over "
            f"{scoring.get('pool')} frames ({scoring.get('pool', 0) * (hop or 0):.2f} s), one "
            f"score vector every {hop} s; network run in blocks of {scoring.get('block_frames')} "
            f"frames with {scoring.get('margin_frames')} frames of context"
        )
    thresholds = post.get("thresholds") or {}
    custom = m.get("custom_classes")
    post_text = (
        f"median filter {post.get('median_filter')} s per class; hysteresis on threshold "
        + (
            "per custom class (below)"
            if custom and not custom.get("audioset")
            else f"{post.get('threshold')}"
        )
        + (f" ({len(thresholds)} per-class overrides)" if thresholds else "")
        + f", off threshold {post.get('off_threshold') or 'on x 0.5'}; gaps up to "
        f"{post.get('merge_gap')} s merged; "
        + (
            f"events shorter than {post.get('min_duration')} s dropped; "
            if post.get("min_duration")
            else "no minimum duration; "
        )
        + f"labels: {_labels_text(post, m.get('custom_classes'))}"
        + (f", excluding {'; '.join(post['exclude'])}" if post.get("exclude") else "")
        + f"; grouping: {post.get('group_by') or 'none'}"
    )
    if custom:
        post_text += (
            "; custom-class thresholds: "
            + custom.get("threshold_source", "")
            + " ("
            + (", ".join(f"{k} {v:g}" for k, v in (custom.get("thresholds") or {}).items()))
            + ")"
        )
    if bounds:
        post_text += (
            "; boundaries refined on the signal (band energy, 10 ms)"
            if bounds.get("refine")
            else "; score-based boundaries"
        )
    pre_steps = []
    if pre.get("highpass"):
        pre_steps.append(f"high-pass {pre['highpass']} Hz")
    if pre.get("denoise") and pre["denoise"] != "none":
        pre_steps.append(f"{pre['denoise']} denoising")
    if pre.get("normalize") is not None:
        pre_steps.append(f"loudness normalised to {pre['normalize']} LUFS")
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    command = m.get("command")
    rows = [
        (
            "Inputs",
            f"{len(report.files)} file(s); formats: "
            + (", ".join(f"{k} ({n})" for k, n in formats.items()) or "–")
            + "; sample rates: "
            + (", ".join(f"{k} ({n})" for k, n in rates.items()) or "–"),
        ),
        (
            "Decoding",
            f"FFmpeg (PyAV), downmixed to mono, resampled to {m.get('sample_rate', 32000)} Hz "
            "with soxr (HQ), streamed in 10 s chunks",
        ),
        ("Preprocessing", ", ".join(pre_steps) or "none"),
        (
            "Model",
            f"{model.get('name')} ({model.get('family')}, width {model.get('width')}, "
            f"{(model.get('params') or 0) / 1e6:.2f} M parameters), AudioSet mAP "
            f"{model.get('published_map')} (published), {model.get('n_classes')} classes",
        ),
        (
            "Checkpoint",
            f"sha256 {model.get('checkpoint_sha256')}; source {model.get('checkpoint_url')} "
            f"(found via {model.get('checkpoint_source')})",
        ),
        ("Front end", "log-mel: 128 bands 0-15 kHz, 25 ms windows every 10 ms"),
        ("Framewise scores", scoring_text),
        ("Post-processing", post_text),
        ("Library versions", versions),
        (
            "Run",
            f"{m.get('created')}; {m.get('totals', {}).get('processing_seconds')} s, "
            f"{m.get('totals', {}).get('realtime_factor')}x real time on "
            f"{(m.get('platform') or {}).get('cpu_count')} CPU(s)",
        ),
        ("Command", shlex.join(command) if command else "–"),
        (
            "Reproduce",
            (m.get("reproduce") or "–").replace("<out>", "<new-out>")
            + (" (config.yaml and the files from this job's results)" if report.label else ""),
        ),
    ]
    return rows


def dataset_rows(report: Report) -> list[dict]:
    """One row per file: duration, format, levels (as detection measured them, else as the
    report measured them on the recording)."""
    rows = []
    for f in report.files:
        audio = f.entry.get("audio") or {}
        sig = audio.get("signal") or (f.signal.summary() if f.signal is not None else {})
        after = (audio.get("preprocess") or {}).get("signal_after") or {}
        rows.append(
            {
                "file": f.path,
                "status": f.status,
                "duration": f.duration,
                "sample_rate": audio.get("sample_rate"),
                "channels": audio.get("channels"),
                "format": f"{audio.get('container', '?')}/{audio.get('codec', '?')}",
                "lufs": sig.get("loudness_lufs"),
                "peak": sig.get("peak_dbfs"),
                "noise_floor": sig.get("noise_floor_dbfs"),
                "snr": sig.get("snr_db"),
                "after_lufs": after.get("loudness_lufs"),
                "after_noise": after.get("noise_floor_dbfs"),
                "after_snr": after.get("snr_db"),
                "events": len(f.events),
                "error": f.entry.get("error"),
            }
        )
    return rows


def _alternatives_text(event: Event) -> str:
    """The other classes found for an event's sound, with their peaks."""
    return ", ".join(f"{label} {peak:.2f}" for label, _mid, peak in event.alternatives)


def _explanations(report: Report) -> dict[str, tuple[str, str]]:
    """Each kind of anomaly found, once: its title and why it makes recognition harder."""
    return {a.kind: (a.title, a.why) for a in report.anomalies}


def _where(a: Anomaly, limit: int = 6) -> str:
    if not a.regions:
        return "whole file"
    shown = ", ".join(f"{timestamp(s)}–{timestamp(e)}" for s, e in a.regions[:limit])
    more = len(a.regions) - limit
    return shown + (f" and {more} more" if more > 0 else "")


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
            f"{r['channels'] or '–'} | {r['format']} | {_fmt(r['lufs'])} | {_fmt(r['peak'])} | "
            f"{_fmt(r['noise_floor'])} | {_fmt(r['snr'])} | {r['events']} |"
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
                f"| {r['file']} | {_fmt(r['lufs'])} → {_fmt(r['after_lufs'])} | "
                f"{_fmt(r['noise_floor'])} → {_fmt(r['after_noise'])} | "
                f"{_fmt(r['snr'])} → {_fmt(r['after_snr'])} |"
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
        out += [f"- **{a.title}** ({a.severity}) in `{a.file}`, {_where(a)}: {a.detail}."]
    if report.anomalies:
        out += ["", "Why these make recognition harder:", ""]
        out += [f"- **{title}**: {why}" for title, why in _explanations(report).values()]
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
            f"{e.peak:.3f} | {e.mean:.3f} | {_alternatives_text(e)} |"
            for e in f.events
        ]
    return "\n".join(out) + "\n"


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
    from earmark import report_plots as plots

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
    from earmark import report_plots as plots

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
                    _fmt(r["lufs"]),
                    _fmt(r["peak"]),
                    _fmt(r["noise_floor"]),
                    _fmt(r["snr"]),
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
                        _fmt(r["lufs"]),
                        _fmt(r["after_lufs"]),
                        _fmt(r["noise_floor"]),
                        _fmt(r["after_noise"]),
                        _fmt(r["snr"]),
                        _fmt(r["after_snr"]),
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
                        _where(a),
                        a.detail,
                    )
                    for a in report.anomalies
                ],
                "sortable anomalies",
            )
        )
        parts.append("<h3>Why these make recognition harder</h3><dl class='why'>")
        for kind, (title, why) in _explanations(report).items():
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
                            _alternatives_text(e),
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
