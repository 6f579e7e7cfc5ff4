"""What a detection run's report says: the run read back (:class:`Report`), its method, data
and events, with the anomalies found in every file.

:func:`build_report` reads a run folder written by ``earmark detect`` (``manifest.json``,
``events.json``, per-file ``*.scores.npz`` and ``*.signal.npz``); everything in the report
comes from the run's own files, so it always says what was actually done."""

from __future__ import annotations

import contextlib
import json
import math
import shlex
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earmark.constants import FRAME_HOP

if TYPE_CHECKING:  # heavy imports happen in the functions: `earmark --help` stays fast
    import numpy as np

    from earmark.events import Event
    from earmark.report.anomalies import Anomaly
    from earmark.signal_stats import SignalStats

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def timestamp(seconds: float) -> str:
    """``h:mm:ss.mmm``."""
    ms = round(max(seconds, 0.0) * 1000)
    return f"{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def format_value(value: Any, unit: str = "", digits: int = 1) -> str:
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
        pairs: Counter[tuple[str, ...]] = Counter()
        for f in self.files:
            evs = sorted(f.events, key=lambda e: e.onset)
            for a, b in combinations(evs, 2):
                if a.label == b.label:
                    continue
                overlap = min(a.offset, b.offset) - max(a.onset, b.onset)
                if overlap > 0:
                    # typeshed's Counter allows only int counts; these are seconds
                    pairs[tuple(sorted((a.label, b.label)))] += overlap  # type: ignore[assignment]
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
    from earmark.outputs import read_events, read_scores
    from earmark.report.anomalies import detect_anomalies
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
    formats: Counter[str] = Counter()
    rates: Counter[str] = Counter()
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


def alternatives_text(event: Event) -> str:
    """The other classes found for an event's sound, with their peaks."""
    return ", ".join(f"{label} {peak:.2f}" for label, _mid, peak in event.alternatives)


def explanations(report: Report) -> dict[str, tuple[str, str]]:
    """Each kind of anomaly found, once: its title and why it makes recognition harder."""
    return {a.kind: (a.title, a.why) for a in report.anomalies}


def where_text(a: Anomaly, limit: int = 6) -> str:
    if not a.regions:
        return "whole file"
    shown = ", ".join(f"{timestamp(s)}–{timestamp(e)}" for s, e in a.regions[:limit])
    more = len(a.regions) - limit
    return shown + (f" and {more} more" if more > 0 else "")
