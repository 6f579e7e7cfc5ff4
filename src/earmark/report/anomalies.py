"""Anomalies and difficulties of a run, detected automatically, each located and explained.

Every detector looks at one file's measured signal (:class:`earmark.signal_stats.SignalStats`),
its manifest entry, its framewise scores and its events, and returns :class:`Anomaly` records
saying *what* (with the measured figure), *where* (time ranges, or the whole file) and *why it
makes recognition harder*. Thresholds are module constants so that the report can state them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from earmark.constants import FRAME_HOP
from earmark.events import Event
from earmark.signal_stats import BLOCK_SECONDS, SignalStats

CLIPPED_FRACTION = 1e-3
"""Share of samples piled up at the clip level above which a file counts as clipped."""
LOW_LOUDNESS_LUFS = -45.0
DC_OFFSET = 0.01
"""Mean sample value (1 % of full scale, -40 dBFS) above which DC offset is reported."""
SILENCE_SECONDS = 1.0
"""Runs of digital silence at least this long are reported."""
BANDWIDTH_HZ = 8000.0
CUTOFF_DROP_DB = 20.0
MIN_NATIVE_RATE = 16000
LOW_SNR_DB = 10.0
NOISE_FLOOR_DBFS = -45.0
NOISE_FLATNESS = 0.25
OVERLAP_LABELS = 5
UNKNOWN_RISE_DB = 10.0
UNKNOWN_MAX_SCORE = 0.15
COMPETE_LOW, COMPETE_HIGH = 0.1, 0.35
COMPETE_RATIO = 0.8
MIN_REGION_SECONDS = 2.0
BACKGROUND_SHARE = 0.6
BACKGROUND_MIN_FILE = 20.0
IGNORED_FOR_UNKNOWN = frozenset({"Silence"})


@dataclass
class Anomaly:
    """One problem found in one file."""

    kind: str
    title: str
    severity: str  # "error", "warning" or "info"
    file: str
    detail: str
    why: str
    regions: list[tuple[float, float]] = field(default_factory=list)  # empty: whole file

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "title": self.title,
            "severity": self.severity,
            "file": self.file,
            "detail": self.detail,
            "why": self.why,
            "regions": [[round(a, 2), round(b, 2)] for a, b in self.regions],
        }


def runs(
    mask: np.ndarray, step: float, min_seconds: float = 0.0, gap: float = 0.0
) -> list[tuple[float, float]]:
    """Time ranges where ``mask`` (one value per ``step`` seconds) is true.

    Ranges closer than ``gap`` seconds are merged; shorter than ``min_seconds`` are dropped.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    pairs = zip(edges[::2], edges[1::2], strict=True)
    spans = [(float(a * step), float(b * step)) for a, b in pairs]
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(a, b) for a, b in merged if b - a >= min_seconds - 1e-9]


def _seconds(regions: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in regions)


# ---------------------------------------------------------------------------- signal detectors
def clipping(file: str, s: SignalStats) -> list[Anomaly]:
    """Many samples piled up at one level near the file's maximum."""
    if s.clipped_fraction < CLIPPED_FRACTION:
        return []
    regions = runs(s.block_clipped, BLOCK_SECONDS, gap=0.5)
    return [
        Anomaly(
            "clipping",
            "Clipping",
            "warning",
            file,
            f"{100 * s.clipped_fraction:.2f} % of samples sit at the clip level "
            f"({20 * np.log10(max(s.clip_level, 1e-9)):.1f} dBFS), in {len(regions)} place(s), "
            f"{_seconds(regions):.1f} s in all",
            "Clipping flattens waveform peaks and spreads harmonics over the whole spectrum: "
            "loud events look broadband and distorted, so classes are confused (speech as "
            "shouting, music as noise) and confidence drops.",
            regions,
        )
    ]


def low_level(file: str, s: SignalStats) -> list[Anomaly]:
    """Integrated loudness far below usual recordings."""
    if s.loudness_lufs >= LOW_LOUDNESS_LUFS or s.silence_seconds >= 0.95 * s.duration:
        return []
    level = (
        "below the gate (near silence)"
        if not np.isfinite(s.loudness_lufs)
        else f"{s.loudness_lufs:.1f} LUFS"
    )
    return [
        Anomaly(
            "low_level",
            "Very low level",
            "warning",
            file,
            f"integrated loudness {level}, peak {s.peak_dbfs:.1f} dBFS "
            f"(typical recordings: -30 to -14 LUFS)",
            "The model works on absolute log-mel levels learnt from AudioSet clips around "
            "-20 to -30 LUFS; at very low levels, quiet events fall to the bottom of its range "
            "and are missed. Normalising loudness (--normalize) restores the level.",
        )
    ]


def dc_offset(file: str, s: SignalStats) -> list[Anomaly]:
    """A constant offset of the waveform."""
    per_second = np.convolve(s.block_dc, np.ones(10) / 10, mode="same")  # loud bass averages out
    regions = runs(np.abs(per_second) >= DC_OFFSET, BLOCK_SECONDS, min_seconds=2.0, gap=0.5)
    if abs(s.dc_offset) < DC_OFFSET and not regions:
        return []
    return [
        Anomaly(
            "dc_offset",
            "DC offset",
            "warning",
            file,
            f"mean sample value {s.dc_offset:+.4f} "
            f"({20 * np.log10(max(abs(s.dc_offset), 1e-9)):.1f} dBFS)",
            "A DC offset betrays a faulty recording chain and wastes headroom (the waveform "
            "clips earlier on one side); steps in the offset make clicks that look like "
            "impulsive events. The model's pre-emphasis removes most of a constant offset.",
            regions if len(regions) > 0 and _seconds(regions) < 0.95 * s.duration else [],
        )
    ]


def silence(file: str, s: SignalStats) -> list[Anomaly]:
    """Long runs of digital silence (samples below one 16-bit step)."""
    regions = runs(s.silent_blocks, BLOCK_SECONDS, min_seconds=SILENCE_SECONDS)
    if not regions:
        return []
    return [
        Anomaly(
            "digital_silence",
            "Long digital silence",
            "info" if _seconds(regions) < 0.2 * s.duration else "warning",
            file,
            f"{len(regions)} stretch(es) of digital silence, {_seconds(regions):.1f} s in all",
            "Digital silence is not a recording of a quiet room: it means dropped audio, a "
            "muted input or an edit. Nothing can be detected there, and events cut by it get "
            "truncated boundaries.",
            regions,
        )
    ]


def band_limited(file: str, s: SignalStats, native_rate: int | None) -> list[Anomaly]:
    """Low sample rate, or a steep cut-off well below the model's 15 kHz."""
    low_rate = native_rate is not None and native_rate < MIN_NATIVE_RATE
    cut = s.bandwidth_hz < BANDWIDTH_HZ and s.cutoff_drop_db >= CUTOFF_DROP_DB
    if not (low_rate or cut):
        return []
    why_rate = f"recorded at {native_rate} Hz, " if low_rate else ""
    return [
        Anomaly(
            "band_limited",
            "Band-limited audio",
            "warning",
            file,
            f"{why_rate}no content above {s.bandwidth_hz / 1000:.1f} kHz "
            f"(spectrum falls {s.cutoff_drop_db:.0f} dB at the edge)",
            "The model sees 0-15 kHz; sounds whose cues lie higher (sibilants, birds, glass, "
            "alarms, cymbals) lose them, and telephone-band audio sounds unlike the training "
            "data, so scores drop for many classes.",
        )
    ]


def noise(file: str, s: SignalStats) -> list[Anomaly]:
    """Low SNR, or a high broadband noise floor."""
    found = []
    if s.snr_db < LOW_SNR_DB and s.silence_seconds < 0.5 * s.duration:
        found.append(
            Anomaly(
                "low_snr",
                "Low SNR",
                "warning",
                file,
                f"active level {s.active_level_dbfs:.1f} dBFS over a noise floor of "
                f"{s.noise_floor_dbfs:.1f} dBFS: SNR {s.snr_db:.1f} dB",
                "Events barely rise above the background, so their onsets and offsets blur "
                "and weak events are missed; the background itself tends to be reported as "
                "an event over long stretches.",
            )
        )
    if s.noise_floor_dbfs > NOISE_FLOOR_DBFS and s.noise_flatness >= NOISE_FLATNESS:
        found.append(
            Anomaly(
                "broadband_noise",
                "Heavy broadband noise",
                "warning",
                file,
                f"noise floor {s.noise_floor_dbfs:.1f} dBFS, spectrally flat "
                f"(flatness {s.noise_flatness:.2f})",
                "Broadband noise (rain, wind, traffic rumble, hiss) masks every band at once; "
                "the model may label the noise itself (Rain, Wind, White noise) and give lower "
                "scores to the events on top of it.",
            )
        )
    return found


# ---------------------------------------------------------------------------- score detectors
def overlaps(file: str, events: Sequence[Event], duration: float) -> list[Anomaly]:
    """Stretches where many classes are active at once."""
    if not events or duration <= 0:
        return []
    step = 0.1
    n = int(np.ceil(duration / step)) + 1
    count = np.zeros(n, dtype=np.int32)
    for e in events:
        count[int(e.onset / step) : max(int(e.offset / step), int(e.onset / step) + 1)] += 1
    regions = runs(count >= OVERLAP_LABELS, step, min_seconds=1.0, gap=0.5)
    if not regions:
        return []
    return [
        Anomaly(
            "overlapping_events",
            "Many overlapping events",
            "info",
            file,
            f"{OVERLAP_LABELS} or more classes active at once for {_seconds(regions):.1f} s "
            f"(at most {int(count.max())})",
            "Where many sounds overlap, each masks the others; boundaries are less precise and "
            "AudioSet's hierarchy reports a sound under several related names (e.g. Vehicle, "
            "Car, Engine) at the same time.",
            regions,
        )
    ]


def competing(file: str, scores: np.ndarray, hop: float, names: Sequence[str]) -> list[Anomaly]:
    """Low-confidence stretches where several classes score almost equally."""
    if scores.size == 0:
        return []
    top2 = np.sort(scores, axis=1)[:, -3:]
    best = top2[:, -1]
    mask = (best >= COMPETE_LOW) & (best < COMPETE_HIGH) & (top2[:, -3] >= COMPETE_RATIO * best)
    regions = runs(mask, hop, min_seconds=MIN_REGION_SECONDS, gap=hop)
    if not regions:
        return []
    start, end = int(regions[0][0] / hop), int(regions[0][1] / hop)
    mean = scores[start:end].mean(axis=0)
    rivals = ", ".join(names[i] for i in np.argsort(mean)[::-1][:3])
    return [
        Anomaly(
            "competing_classes",
            "Low-confidence regions where classes compete",
            "info",
            file,
            f"{_seconds(regions):.1f} s in {len(regions)} region(s) where the best class "
            f"scores {COMPETE_LOW}-{COMPETE_HIGH} and two others score nearly as high "
            f"(first region: {rivals})",
            "The model hears something but cannot decide what: events there may be missing, "
            "split between classes, or labelled with a near-synonym.",
            regions,
        )
    ]


def unknown(
    file: str, s: SignalStats, scores: np.ndarray, hop: float, names: Sequence[str]
) -> list[Anomaly]:
    """Loud stretches no class explains: energy far above the noise floor, no confident score."""
    if scores.size == 0 or s.mel_db.size == 0:
        return []
    # how far the loudest 10 % of bands stand above their own noise floor: a sound in a few
    # bands counts even when a loud low-frequency background dominates the broadband level
    above = s.mel_db.astype(np.float32) - s.noise_spectrum_db[None, :]
    rise = np.percentile(above, 90, axis=1)
    per = max(1, round(hop / s.mel_hop))
    n = min(scores.shape[0], rise.size // per)
    if n == 0:
        return []
    frame_rise = rise[: n * per].reshape(n, per).mean(axis=1)
    keep = [i for i, name in enumerate(names) if name not in IGNORED_FOR_UNKNOWN]
    best = scores[:n, keep].max(axis=1)
    mask = (frame_rise >= UNKNOWN_RISE_DB) & (best < UNKNOWN_MAX_SCORE)
    regions = runs(mask, hop, min_seconds=1.0, gap=hop)
    if not regions:
        return []
    return [
        Anomaly(
            "unknown_sound",
            "Unknown sound (loud, no confident class)",
            "warning",
            file,
            f"{_seconds(regions):.1f} s in {len(regions)} region(s) where a tenth of the "
            f"frequency bands stand {UNKNOWN_RISE_DB:.0f} dB or more above their noise floor "
            f"and no class scores {UNKNOWN_MAX_SCORE} or more",
            "Something loud is there that the model does not recognise: a sound outside the "
            f"{len(names)} classes scored, a distorted one, or one unlike its training data. "
            "Listen to these regions; a custom class may be needed.",
            regions,
        )
    ]


def background(file: str, events: Sequence[Event], duration: float) -> list[Anomaly]:
    """Classes present through most of a file (a TV, traffic, rain)."""
    if duration < BACKGROUND_MIN_FILE:
        return []
    covered: dict[str, float] = {}
    for e in events:
        covered[e.label] = covered.get(e.label, 0.0) + e.duration
    found = [
        (label, t / duration) for label, t in covered.items() if t / duration >= BACKGROUND_SHARE
    ]
    if not found:
        return []
    found.sort(key=lambda kv: -kv[1])
    text = ", ".join(f"{label} ({100 * share:.0f} %)" for label, share in found)
    return [
        Anomaly(
            "background",
            "Sound present through most of the file",
            "info",
            file,
            f"active for most of the file: {text}",
            "A continuous background (a TV, traffic, rain, an engine) masks shorter events and "
            "is itself reported as one long event; consider --exclude for it, or judge the "
            "other events against it.",
        )
    ]


def failed(file: str, status: str, error: str | None, warnings: Sequence[str]) -> list[Anomaly]:
    """Files that could not be decoded, or only partly."""
    if status == "failed":
        return [
            Anomaly(
                "decode_failed",
                "File failed",
                "error",
                file,
                error or "failed",
                "Nothing in this file was analysed; its events are missing from the run.",
            )
        ]
    if status == "partial":
        return [
            Anomaly(
                "decode_partial",
                "Partly decoded",
                "warning",
                file,
                "; ".join(warnings[:5]),
                "Audio lost to decode errors is replaced by silence: events there are missing "
                "and events cut by a gap have wrong boundaries.",
            )
        ]
    return []


def detect_anomalies(
    file: str,
    entry: dict,
    signal: SignalStats | None,
    events: Sequence[Event],
    scores: np.ndarray | None = None,
    hop: float = FRAME_HOP,
    names: Sequence[str] = (),
) -> list[Anomaly]:
    """Every detector over one file of a run (``entry`` is its manifest record)."""
    found = failed(file, entry.get("status", "ok"), entry.get("error"), entry.get("warnings", []))
    if entry.get("status") == "failed":
        return found
    duration = float(entry.get("duration") or 0.0)
    if signal is not None:
        native = (entry.get("audio") or {}).get("sample_rate")
        found += clipping(file, signal)
        found += low_level(file, signal)
        found += dc_offset(file, signal)
        found += silence(file, signal)
        found += band_limited(file, signal, native)
        found += noise(file, signal)
    found += overlaps(file, events, duration)
    if scores is not None and len(names) == scores.shape[1]:
        found += competing(file, scores, hop, names)
        if signal is not None:
            found += unknown(file, signal, scores, hop, names)
    found += background(file, events, duration)
    return found
