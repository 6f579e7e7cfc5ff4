"""Post-processing chosen for events: per-class thresholds, median filters and minimum
durations, AudioSet evidence gates, quality.

Everything here scores a frame head's outputs on strongly labelled training recordings exactly
as ``earmark detect`` would turn them into events (median filter, hysteresis, gap merging,
boundary refinement on the band envelope), against their reference events. A recording is any
object with ``name``, ``duration``, ``events`` (:class:`~earmark.evaluation.RefEvent`),
``envelope`` (band levels), ``audioset`` (AudioSet frame scores) and ``targets`` (frame
targets), such as :class:`earmark.custom.detector.FrameData`.

Event F1 uses DCASE collars: onsets within 0.2 s, offsets within max(0.2 s, 20 % of the
event's length).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from earmark.boundaries import BandEnvelope, RefineOptions, join_overlaps, refine_events
from earmark.constants import FRAME_HOP
from earmark.evaluation import RefEvent, event_based_metrics, segment_based_metrics
from earmark.events import PostprocessOptions, scores_to_events
from earmark.labels import Label

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.1, 0.951, 0.05))
"""Detection thresholds tried per class."""
EVENT_COLLAR = 0.2
"""Onset collar (and smallest offset collar) of the event F1 thresholds are chosen for."""
OFFSET_SHARE = 0.2
SEGMENT_SECONDS = 1.0


def custom_labels(classes: Sequence[str]) -> list[Label]:
    """Labels of the custom classes as ``detect --classes`` names them."""
    return [Label(index=i, mid=f"custom:{c}", name=c) for i, c in enumerate(classes)]


def detect_events(
    probs: np.ndarray,
    data: Any,
    labels: Sequence[Label],
    thresholds: dict[str, float] | float,
    refine: bool = True,
    memo: dict | None = None,
    filters: tuple[dict[str, float], dict[str, float]] | None = None,
    hop: float = FRAME_HOP,
) -> list[RefEvent]:
    """Events of one recording from the head's frame scores (one row every ``hop`` seconds),
    post-processed as ``detect`` does (median filter, hysteresis, gap merging, boundary
    refinement); ``filters`` are per-class ``(median filters, minimum durations)`` in seconds
    (default: ``detect``'s).

    ``memo`` (a dict kept across calls) remembers each event's refined boundaries: a threshold
    search meets the same score-based events many times, and refinement is the costly step.
    """
    medians, shortest = filters or ({}, {})
    extra: dict[str, Any] = {
        "median_filters": {f"custom:{c}": v for c, v in medians.items()},
        "min_durations": {f"custom:{c}": v for c, v in shortest.items()},
    }
    if isinstance(thresholds, dict):
        post = PostprocessOptions(
            thresholds={f"custom:{c}": t for c, t in thresholds.items()}, **extra
        )
    else:
        post = PostprocessOptions(threshold=float(thresholds), **extra)
    events = scores_to_events(probs, hop, labels, post, file=data.name, duration=data.duration)
    if refine and events:
        envelope = BandEnvelope.from_levels(data.envelope)
        if memo is None:
            events = refine_events(events, envelope, RefineOptions(), data.duration)
        else:
            refined = []
            for e in events:
                key = (data.name, e.label, e.onset, e.offset)
                if key not in memo:
                    memo[key] = refine_events([e], envelope, RefineOptions(), data.duration)[0]
                refined.append(dataclasses.replace(memo[key], peak=e.peak, mean=e.mean))
            events = join_overlaps(refined)
    return [RefEvent(data.name, e.onset, e.offset, e.label) for e in events]


def event_f1_by_class(
    reference: Sequence[RefEvent], found: Sequence[RefEvent], classes: Sequence[str]
) -> dict[str, float]:
    """Event F1 (DCASE collars) of every class."""
    m = event_based_metrics(reference, found, EVENT_COLLAR, OFFSET_SHARE, labels=list(classes))
    return {c: float(m["class_wise"][c]["f1"]) for c in classes}


def choose_thresholds(
    probs: Sequence[np.ndarray],
    data: Sequence[Any],
    classes: Sequence[str],
    hop: float = FRAME_HOP,
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Per class, the grid threshold with the best event F1 on these recordings. The grid is
    searched coarse to fine: every other value, then the two neighbours of each class's best
    (ties: the middle of the best ones). Returns ``(thresholds, best F1, warnings)``."""
    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    grid = np.array(THRESHOLD_GRID)
    table = np.full((len(grid), len(classes)), np.nan)
    memo: dict = {}

    def run(per_class: dict[str, float]) -> dict[str, float]:
        found = [
            e
            for p, d in zip(probs, data, strict=True)
            for e in detect_events(p, d, labels, per_class, memo=memo, hop=hop)
        ]
        f1 = event_f1_by_class(reference, found, classes)
        return {c: 0.0 if np.isnan(f1[c]) else f1[c] for c in classes}

    for k in range(0, len(grid), 2):
        f1 = run(dict.fromkeys(classes, float(grid[k])))
        table[k] = [f1[c] for c in classes]
    for step in (-1, 1):
        wanted: dict[str, int] = {}
        for j, c in enumerate(classes):
            k = int(np.nanargmax(table[:, j])) + step
            if 0 <= k < len(grid) and np.isnan(table[k, j]):
                wanted[c] = k
        if wanted:
            best_k = {c: int(np.nanargmax(table[:, j])) for j, c in enumerate(classes)}
            f1 = run({c: float(grid[wanted.get(c, best_k[c])]) for c in classes})
            for c, k in wanted.items():
                table[k, classes.index(c)] = f1[c]
    chosen, best, warnings = {}, {}, []
    for j, c in enumerate(classes):
        column = np.nan_to_num(table[:, j], nan=-1.0)
        top = np.flatnonzero(column >= column.max() - 1e-9)
        k = int(top[len(top) // 2])
        chosen[c], best[c] = float(grid[k]), float(column[k])
        if k in (0, len(grid) - 1) and column.max() > 0:
            warnings.append(
                f"class {c!r}: the best detection threshold is at the edge of the grid "
                f"({grid[k]:g}); the best value may lie beyond it"
            )
    return chosen, best, warnings


MEDIAN_GRID = (0.0, 0.96, 1.6, 2.24)
"""Median filters tried per class, seconds (1, 3, 5 and 7 frames of 0.32 s)."""
MIN_DURATION_GRID = (0.0, 0.32, 0.64, 1.0)
"""Minimum event durations tried per class, seconds."""
FILTER_MIN_GAIN = 0.01
"""Event F1 a class's filters must gain over ``detect``'s defaults to replace them."""
FILTER_SEGMENT_TOLERANCE = 0.01
"""Segment F1 (1 s) a class's filters may cost against ``detect``'s defaults."""


def choose_filters(
    probs: Sequence[np.ndarray],
    data: Sequence[Any],
    classes: Sequence[str],
    thresholds: dict[str, float],
) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
    """Per class, the median filter and minimum duration (of :data:`MEDIAN_GRID` x
    :data:`MIN_DURATION_GRID`) with the best event F1 on these recordings at ``thresholds``,
    among the pairs that cost at most :data:`FILTER_SEGMENT_TOLERANCE` segment F1 (1 s);
    ``detect``'s defaults are kept unless another pair gains :data:`FILTER_MIN_GAIN` event F1.
    Returns ``(median filters, minimum durations, report)``, the report giving each class's
    F1 with the defaults and with its choice."""
    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    memo: dict = {}
    default = (PostprocessOptions().median_filter, PostprocessOptions().min_duration)
    durations = {d.name: d.duration for d in data}
    table: dict[tuple[float, float], dict[str, float]] = {}
    segment: dict[tuple[float, float], dict[str, float]] = {}
    for pair in {default, *((m, d) for m in MEDIAN_GRID for d in MIN_DURATION_GRID)}:
        filters = (dict.fromkeys(classes, pair[0]), dict.fromkeys(classes, pair[1]))
        found = [
            e
            for p, d in zip(probs, data, strict=True)
            for e in detect_events(p, d, labels, thresholds, memo=memo, filters=filters)
        ]
        f1 = event_f1_by_class(reference, found, classes)
        table[pair] = {c: 0.0 if np.isnan(f1[c]) else f1[c] for c in classes}
        seg = segment_based_metrics(
            reference, found, SEGMENT_SECONDS, durations=durations, labels=list(classes)
        )["class_wise"]
        segment[pair] = {c: float(np.nan_to_num(seg[c]["f1"])) for c in classes}
    medians, shortest, report = {}, {}, {}
    for c in classes:
        floor = segment[default][c] - FILTER_SEGMENT_TOLERANCE
        allowed = [pair for pair in sorted(table) if segment[pair][c] >= floor]
        best = max(allowed, key=lambda pair: table[pair][c])
        if table[best][c] < table[default][c] + FILTER_MIN_GAIN:
            best = default
        medians[c], shortest[c] = best
        report[c] = {
            "median_filter": best[0],
            "min_duration": best[1],
            "event_f1": round(table[best][c], 4),
            "event_f1_with_defaults": round(table[default][c], 4),
            "segment_f1": round(segment[best][c], 4),
            "segment_f1_with_defaults": round(segment[default][c], 4),
        }
    return medians, shortest, report


GATE_CANDIDATES = 8
"""AudioSet classes considered as a custom class's support."""
GATE_SUPPORT = 3
"""Of which the best-separating ones form the support."""
GATE_QUANTILES = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Floors tried: these percentiles of the support over the class's target frames."""
GATE_TOLERANCE = 0.01
"""Event F1 a gate may cost on held-out mixtures."""


def choose_gates(
    probs: Sequence[np.ndarray],
    data: Sequence[Any],
    classes: Sequence[str],
    thresholds: dict[str, float],
) -> tuple[dict[str, tuple[list[int], float]], dict[str, dict]]:
    """AudioSet evidence gates, chosen on out-of-fold predictions.

    A sound the user never trained on (music, a siren, waves) can look like one of their
    classes to the head, but the AudioSet model usually knows it for what it is. For every
    class, the AudioSet classes that separate its target frames from all other frames best
    (largest mean difference of scores) are its *support*; a frame is kept only where the
    support's maximum reaches a floor. The floor is the highest of a few low percentiles of
    the support over the class's own target frames that costs at most
    :data:`GATE_TOLERANCE` event F1 on the held-out mixtures; a class whose sound AudioSet
    does not know (no floor passes) gets no gate.
    """
    from earmark.custom.frame_head import apply_gates

    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    audioset = np.concatenate([d.audioset for d in data])
    targets = np.concatenate([d.targets for d in data])

    def f1_with(gates: dict[int, tuple]) -> dict[str, float]:
        found = [
            e
            for p, d in zip(probs, data, strict=True)
            for e in detect_events(apply_gates(p, d.audioset, gates), d, labels, thresholds)
        ]
        return event_f1_by_class(reference, found, classes)

    base = f1_with({})
    candidates: dict[int, list[tuple[list[int], float]]] = {}
    for k in range(len(classes)):
        pos, neg = targets[:, k] >= 0.9, targets[:, k] == 0
        if pos.sum() < 10 or neg.sum() < 10:
            continue
        gap = audioset[pos].mean(axis=0) - audioset[neg].mean(axis=0)
        top: np.ndarray | list[int] = np.argsort(-gap)[:GATE_CANDIDATES]
        top = [int(j) for j in top if gap[j] > 0.02][:GATE_SUPPORT]
        if not top:
            continue
        support = audioset[pos][:, top].max(axis=1)
        floors = sorted({float(np.percentile(support, q)) for q in GATE_QUANTILES}, reverse=True)
        candidates[k] = [(top, f) for f in floors if f > 1e-4]
    chosen: dict[int, tuple[list[int], float]] = {}
    report: dict[str, dict] = {}
    depth = max((len(v) for v in candidates.values()), default=0)
    pending = {k: list(v) for k, v in candidates.items()}
    for _ in range(depth):  # all classes at once, highest floor first
        trial = {k: v[0] for k, v in pending.items() if v}
        if not trial:
            break
        f1 = f1_with(trial)
        for k, gate in trial.items():
            c = classes[k]
            if f1[c] >= base[c] - GATE_TOLERANCE or np.isnan(base[c]):
                chosen[k] = gate
                report[c] = {
                    "audioset_columns": gate[0],
                    "floor": round(gate[1], 5),
                    "event_f1": round(f1[c], 4),
                    "event_f1_without": round(base[c], 4),
                }
                pending[k] = []
            else:
                pending[k] = pending[k][1:]
    for c in classes:
        if c in report:
            report[c]["decision"] = (
                f"gated (AudioSet classes {report[c]['audioset_columns']} below "
                f"{report[c]['floor']:.4f} silence it)"
            )
        else:
            report[c] = {"decision": "not gated (AudioSet does not support it reliably)"}
    return {classes[k]: g for k, g in chosen.items()}, report


def quality(
    probs: Sequence[np.ndarray],
    data: Sequence[Any],
    classes: Sequence[str],
    thresholds: Sequence[dict[str, float]],
    hop: float = FRAME_HOP,
) -> dict:
    """Event F1 (0.2 s collars), segment F1 (1 s) and PSDS1 of detections on ``data``, each
    recording post-processed with its own thresholds; per class and overall. ``probs`` have
    one row every ``hop`` seconds."""
    from earmark.evaluation.psds import PSDS1, FileScores, psds

    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    found = [
        e
        for p, d, t in zip(probs, data, thresholds, strict=True)
        for e in detect_events(p, d, labels, t, hop=hop)
    ]
    ev = event_based_metrics(reference, found, EVENT_COLLAR, OFFSET_SHARE, labels=list(classes))
    seg = segment_based_metrics(
        reference,
        found,
        SEGMENT_SECONDS,
        durations={d.name: d.duration for d in data},
        labels=list(classes),
    )
    present = [c for c in classes if any(e.label == c for e in reference)]
    psds1 = float("nan")
    if present:
        scores = {
            d.name: FileScores(p.astype(np.float64), hop, list(classes), d.duration)
            for p, d in zip(probs, data, strict=True)
        }
        psds1 = float(psds(reference, scores, PSDS1, classes=present)["psds"])
    per_class = {
        c: {
            "event_f1": _r(ev["class_wise"][c]["f1"]),
            "segment_f1": _r(seg["class_wise"][c]["f1"]),
            "references": int(ev["class_wise"][c].get("Nref", 0)),
            "detections": int(ev["class_wise"][c].get("Nsys", 0)),
        }
        for c in classes
    }
    return {
        "event_f1": _r(ev["overall"]["f1"]),
        "event_f1_macro": _r(np.nanmean([per_class[c]["event_f1"] for c in classes])),
        "event_precision": _r(ev["overall"]["precision"]),
        "event_recall": _r(ev["overall"]["recall"]),
        "segment_f1": _r(seg["overall"]["f1"]),
        "psds1": _r(psds1),
        "references": len(reference),
        "detections": len(found),
        "per_class": per_class,
    }


def _r(value: float | np.floating) -> float:
    value = float(value)
    return round(value, 4) if np.isfinite(value) else float("nan")
