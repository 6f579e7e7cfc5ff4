"""Detection thresholds of custom classes, calibrated on out-of-fold clips.

A custom head's sigmoid outputs have no natural cut that suits every class: a class with few,
varied examples scores lower than a distinctive one. ``earmark train`` therefore picks an on
threshold per class from the cross-validation it already runs, so that ``earmark detect
--classes MODEL_DIR`` works without ``--threshold``:

1. every clip is scored framewise (0.32 s frames, exactly as ``detect`` scores a recording) by
   the head of the split where the clip was held out. With background recordings
   (``--backgrounds``), each clip is first mixed over a random part of one of them at 0-20 dB
   SNR, and 5 s background segments are scored too, as examples of none of the classes: the
   conditions of a long recording, where clean clips would score higher than the events will;
2. its **detection score** for a class is the highest threshold at which ``detect`` would
   report that class in the clip: with the majority-vote median filter of
   :data:`~earmark.events.DEFAULT_MEDIAN_FILTER`, a frame is on when most frames of its window
   are above the threshold, so this is the maximum over frames of the median-filtered scores;
3. per class, the clips of the class are positives and the clips of the other classes
   negatives; the event F1 of "detected in the clip" is computed on a grid of thresholds and
   the threshold is the middle of the range that reaches the best F1 (the largest margin on
   both sides), kept within :data:`THRESHOLD_LIMITS`.

Without backgrounds the clean clips are all there is, and their scores overstate how high an
event in a noisy recording scores; the thresholds are still saved and reported, but ``detect``
uses them only when they were calibrated on mixtures (``"mixed": true``) and otherwise keeps
:data:`UNCALIBRATED_THRESHOLD`, the natural cut of the heads' sigmoid outputs.

The thresholds go to ``thresholds.json`` in MODEL_DIR with the F1, precision and recall they
reach; ``--class-threshold`` overrides one, ``--threshold`` replaces them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from earmark.constants import FRAME_HOP
from earmark.events import DEFAULT_MEDIAN_FILTER, median_kernel_frames

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
"""Thresholds tried."""
THRESHOLD_LIMITS = (0.1, 0.9)
"""No calibrated threshold goes outside this range."""
CALIBRATION_FORMAT = 1
UNCALIBRATED_THRESHOLD = 0.5
"""Threshold of custom classes without a calibration on mixtures."""
SEGMENT_SECONDS = 5.0
MAX_SEGMENTS = 60
"""Background segments scored as negatives, at most (evenly spread over the recordings)."""


def mixtures(
    audios: Sequence[np.ndarray], backgrounds: Sequence[np.ndarray], seed: int
) -> list[np.ndarray]:
    """Every clip mixed over a random part of a random background (0-20 dB SNR, the
    ``background`` augmentation), seeded per clip."""
    from earmark.custom.data import Augmenter

    mixer = Augmenter(("background",), seed, backgrounds)
    return [mixer(a, np.random.default_rng([seed, 77, i])) for i, a in enumerate(audios)]


def background_segments(
    backgrounds: Sequence[np.ndarray],
    seconds: float = SEGMENT_SECONDS,
    limit: int = MAX_SEGMENTS,
    sample_rate: int = 32000,
) -> list[np.ndarray]:
    """Consecutive ``seconds`` segments of the backgrounds, at most ``limit``, evenly spread."""
    n = int(seconds * sample_rate)
    segments = [b[s : s + n] for b in backgrounds for s in range(0, len(b) - n + 1, n)]
    if len(segments) > limit:
        pick = np.linspace(0, len(segments) - 1, limit).round().astype(int)
        segments = [segments[i] for i in pick]
    return segments


def detection_rows(head: object, frames: Iterable[np.ndarray]) -> np.ndarray:
    """:func:`detection_scores` of ``head`` on each framewise-embedding matrix."""
    from earmark.custom.clip_head import predict_proba

    return np.stack([detection_scores(predict_proba(head, f)) for f in frames])


def detection_scores(
    frame_probs: np.ndarray, hop: float = FRAME_HOP, median_filter: float = DEFAULT_MEDIAN_FILTER
) -> np.ndarray:
    """Per class, the highest on threshold at which ``detect`` finds the class in a clip.

    ``frame_probs`` is ``(frames, classes)``. The maximum over frames of the scores median-
    filtered over ``median_filter`` seconds (mirrored ends, like the detector's majority vote).
    """
    probs = np.asarray(frame_probs, dtype=np.float64)
    kernel = median_kernel_frames(median_filter, hop)
    if kernel <= 1 or len(probs) < 2:
        return probs.max(axis=0)
    half = kernel // 2
    padded = np.pad(probs, ((half, half), (0, 0)), mode="reflect" if len(probs) > half else "edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=0)
    return np.median(windows, axis=-1).max(axis=0)


def _f1(pos: np.ndarray, neg: np.ndarray, threshold: float) -> tuple[float, float, float]:
    tp = float(np.sum(pos >= threshold))
    fp = float(np.sum(neg >= threshold))
    fn = float(len(pos) - tp)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / len(pos) if len(pos) else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return f1, precision, recall


def calibrate_thresholds(
    scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], mixed: bool = False
) -> dict:
    """Per-class thresholds from out-of-fold detection scores ``(clips, classes)``.

    ``labels`` holds the class index of each clip (``-1``: none of the classes, a negative
    for every class); ``mixed`` records whether the clips were mixed over backgrounds.
    Returns ``{"format", "method", "mixed", "classes": {name: {threshold, f1, precision,
    recall, best_range, positives, negatives}}}``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    out: dict[str, dict] = {}
    for c, name in enumerate(classes):
        pos, neg = scores[labels == c, c], scores[labels != c, c]
        f1s = np.array([_f1(pos, neg, t)[0] for t in GRID])
        best = float(f1s.max())
        near = GRID[f1s >= best - 1e-9]
        # the longest run of grid points reaching the best F1, and its middle
        runs = np.split(near, np.flatnonzero(np.diff(near) > 0.011) + 1)
        run = max(runs, key=len)
        threshold = float(np.clip(np.round((run[0] + run[-1]) / 2, 2), *THRESHOLD_LIMITS))
        f1, precision, recall = _f1(pos, neg, threshold)
        out[name] = {
            "threshold": threshold,
            "f1": round(f1, 4),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "best_range": [float(run[0]), float(run[-1])],
            "positives": len(pos),
            "negatives": len(neg),
        }
    return {
        "format": CALIBRATION_FORMAT,
        "method": "out-of-fold clips, max of median-filtered framewise scores, middle of the "
        "best-F1 threshold range",
        "mixed": bool(mixed),
        "median_filter": DEFAULT_MEDIAN_FILTER,
        "classes": out,
    }


def filters_of(
    calibration: dict | None, classes: Sequence[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """``({class: median filter}, {class: minimum duration})`` chosen on mixtures for the
    classes that have them (older models: none, ``detect``'s defaults apply)."""
    if not calibration or not calibration.get("mixed"):
        return {}, {}
    entries = calibration.get("classes", {})
    medians = {
        c: float(entries[c]["median_filter"])
        for c in classes
        if "median_filter" in entries.get(c, {})
    }
    shortest = {
        c: float(entries[c]["min_duration"])
        for c in classes
        if "min_duration" in entries.get(c, {})
    }
    return medians, shortest


def thresholds_of(calibration: dict | None, classes: Sequence[str]) -> dict[str, float]:
    """``{class name: threshold}`` that ``detect`` uses: the calibrated ones when calibrated on
    mixtures, else :data:`UNCALIBRATED_THRESHOLD` for every class."""
    if not calibration or not calibration.get("mixed"):
        return dict.fromkeys(classes, UNCALIBRATED_THRESHOLD)
    found = {name: float(c["threshold"]) for name, c in calibration["classes"].items()}
    return {name: found.get(name, UNCALIBRATED_THRESHOLD) for name in classes}


def calibration_audio(
    audios: Sequence[np.ndarray], config: Any
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The clips mixed over ``config.backgrounds`` and segments of those, to calibrate the
    detection thresholds on (:mod:`earmark.custom.calibration`); ``None`` without backgrounds."""
    from earmark.custom.data import background_files, load_backgrounds

    if not config.backgrounds:
        return None
    backgrounds = load_backgrounds(background_files(config.backgrounds))
    if not backgrounds:
        return None
    return mixtures(audios, backgrounds, config.seed), background_segments(backgrounds)
