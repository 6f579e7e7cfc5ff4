"""From framewise class scores to sound events (onset, offset, label, confidence).

Frame convention: ``scores`` is ``(frames, classes)`` with values in [0, 1]; frame ``i``
covers audio time ``[i * hop, (i + 1) * hop)`` seconds from the start of the file.

Post-processing, in this order (see :class:`PostprocessOptions`):

1. select classes (``labels`` / ``exclude``, with ontology descendants) and optionally roll
   them up along the ontology (``group_by``);
2. median filter each class's scores over time (``median_filter`` seconds; the ends of the
   file are mirrored, as ``scipy.ndimage.median_filter(mode="mirror")``, so a 1-frame
   spike in the first or last frame is removed like any other);
3. hysteresis thresholding: an event starts where the filtered score reaches the on
   threshold and lasts while it stays at or above the off threshold (so a run of frames
   at or above "off" becomes an event if it contains at least one frame at or above "on");
4. merge events of the same class separated by a gap of at most ``merge_gap`` seconds;
5. drop events shorter than ``min_duration`` seconds.

Activity (steps 3-5) is decided on the *filtered* scores; the confidences reported with an
event (``peak`` = max, ``mean`` = mean over the event's frames) are computed from the
*raw* scores (after grouping), so they are what the model said, not a smoothed value.
Events of different classes may overlap; all are reported, sorted by (onset, label).
(``earmark detect`` then joins the related classes of one sound, after boundary refinement:
:mod:`earmark.sounds`, ``join_related``.)

Everything is vectorised over frames and classes; Python only loops over the final events
to build :class:`Event` objects. The median filter is never computed on the scores
themselves: only whether the filtered score reaches a threshold matters, and for an odd
kernel that is a moving majority vote over the thresholded scores (exactly equal, much
faster than a float median). Classes whose raw maximum never reaches their on
threshold are skipped up front (a median filter cannot raise a maximum).
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .labels import Label, Ontology, group_plan, max_rows
from .postprocessing import (
    DEFAULT_MEDIAN_FILTER,
    DEFAULT_MERGE_GAP,
    DEFAULT_THRESHOLD,
    OFF_RATIO,
    PostprocessOptions,
    class_values,
    effective_thresholds,
    median_kernel_frames,
    on_thresholds,
    select_classes,
)

__all__ = [
    "DEFAULT_MEDIAN_FILTER",
    "DEFAULT_MERGE_GAP",
    "DEFAULT_THRESHOLD",
    "OFF_RATIO",
    "Event",
    "PostprocessOptions",
    "effective_thresholds",
    "median_kernel_frames",
    "scores_to_events",
]

log = logging.getLogger(__name__)

_EPS = 1e-9  # tolerance when converting seconds to whole frames

#: Outputs post-processed together: bounds the memory of the masks on long files
#: (64 rows x 34 000 frames of 3 h = 9 MB of float32 scores).
ROW_BLOCK = 64


@dataclass(frozen=True)
class Event:
    """One detected sound event. Times in seconds from the start of ``file``.

    ``peak`` and ``mean`` are the max and mean raw score of the class over the event's
    frames. ``alternatives`` are the other classes found for the same sound, as ``(label,
    mid, peak)``, best first (see :mod:`earmark.sounds`).
    """

    file: str
    label: str
    mid: str
    onset: float
    offset: float
    peak: float
    mean: float
    alternatives: tuple[tuple[str, str, float], ...] = ()

    @property
    def duration(self) -> float:
        """``offset - onset`` in seconds."""
        return self.offset - self.onset

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict: times rounded to ms, confidences to 4 decimals.

        Keys are ``file, label, mid, onset, offset, duration, peak, mean, alternatives``
        (a list of ``{label, mid, peak}``); ``duration`` is the difference of the rounded times.
        """
        onset, offset = round(self.onset, 3), round(self.offset, 3)
        return {
            "file": self.file,
            "label": self.label,
            "mid": self.mid,
            "onset": onset,
            "offset": offset,
            "duration": round(offset - onset, 3),
            "peak": _round_or_none(self.peak, 4),
            "mean": _round_or_none(self.mean, 4),
            "alternatives": [
                {"label": label, "mid": mid, "peak": _round_or_none(peak, 4)}
                for label, mid, peak in self.alternatives
            ],
        }


def _round_or_none(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _class_major(scores: np.ndarray, columns: np.ndarray, block: int = 1024) -> np.ndarray:
    """``scores[:, columns].T`` as a C-contiguous float32 array, gathered block-wise.

    Gathering columns of a (frames, classes) matrix is memory-latency bound; working on
    blocks of frames that fit in cache is about twice as fast as a plain fancy index.
    """
    frames = scores.shape[0]
    out = np.empty((len(columns), frames), dtype=np.float32)
    for i in range(0, frames, block):
        out[:, i : i + block] = np.take(scores[i : i + block], columns, axis=1).T
    return out


def _majority(mask: np.ndarray, kernel: int, out: np.ndarray | None = None) -> np.ndarray:
    """Moving majority vote of odd length ``kernel`` along axis 1.

    The ends are mirrored without repeating the edge frame (numpy ``"reflect"`` padding,
    scipy ``"mirror"`` mode), so a spike in the first or last frame is removed like any
    other spike.
    """
    half = kernel // 2
    frames = mask.shape[1]
    padded = np.pad(mask.view(np.uint8), ((0, 0), (half, half)), mode="reflect")
    if kernel <= 15:  # sum of shifted copies: a few byte-wise adds for short kernels
        counts = padded[:, :frames].copy()
        for j in range(1, kernel):
            counts += padded[:, j : j + frames]
    else:  # running sum: cost independent of the kernel length
        cumsum = np.zeros((mask.shape[0], frames + 2 * half + 1), dtype=np.int32)
        np.cumsum(padded, axis=1, out=cumsum[:, 1:])
        counts = cumsum[:, kernel:] - cumsum[:, :-kernel]
    return np.greater(counts, half, out=out)


def _segment_reduce(
    ufunc: np.ufunc,
    flat: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    dtype: type | None = None,
) -> np.ndarray:
    """``ufunc`` over ``flat[starts[k]:ends[k]]`` for sorted, disjoint, non-empty segments.

    ``dtype`` is the accumulator type (e.g. float64 sums of float32 scores without a float64
    copy of the whole array).
    """
    if len(starts) == 0:
        return np.zeros(0, dtype=flat.dtype)
    idx = np.empty(2 * len(starts), dtype=np.intp)
    idx[0::2] = starts
    idx[1::2] = ends
    if idx[-1] >= len(flat):  # the last segment runs to the end of the array
        idx = idx[:-1]
    return ufunc.reduceat(flat, idx, dtype=dtype)[0::2]


def _segment_stats(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean of ``flat`` over sorted, disjoint, non-empty segments (float64)."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total * 4 < len(flat):
        # Sparse events: gather just their frames, then reduce the compact array.
        offsets = np.cumsum(lengths) - lengths
        index = np.repeat(starts - offsets, lengths) + np.arange(total)
        values = flat[index].astype(np.float64)
        peak = np.maximum.reduceat(values, offsets)
        sums = np.add.reduceat(values, offsets)
    else:
        peak = _segment_reduce(np.maximum, flat, starts, ends).astype(np.float64)
        sums = _segment_reduce(np.add, flat, starts, ends, dtype=np.float64)
    return peak, sums / lengths


def _detect_rows(
    scores: np.ndarray,
    members: list[np.ndarray],
    cand: np.ndarray,
    on: np.ndarray,
    off: np.ndarray,
    options: PostprocessOptions,
    hop: float,
    duration: float | None,
    kernel: int,
    min_dur: np.ndarray,
) -> tuple[np.ndarray, ...] | None:
    """Steps 2-5 and confidences for the outputs ``cand`` (thresholds ``on``/``off`` and
    minimum durations ``min_dur`` indexed by output; one median ``kernel`` in frames for all):
    ``(row, start, end, onset, offset, peak, mean)`` with ``row`` indexing ``cand``, or
    ``None`` when nothing fires."""
    frames = scores.shape[0]
    needed = np.unique(np.concatenate([members[g] for g in cand]))
    source = _class_major(scores, needed)  # (len(needed), frames) float32
    if options.group_by is None:
        raw = source  # `needed` is already the sorted candidate columns
    else:
        raw = np.empty((len(cand), frames), dtype=np.float32)
        max_rows(source, [np.searchsorted(needed, members[g]) for g in cand], raw)
        del source
    on_c, off_c = on[cand], off[cand]

    # 2.-3. median filter and hysteresis, on boolean masks. For an odd kernel k the
    # filtered score is >= t exactly when at least k // 2 + 1 of the k window values are
    # >= t, so thresholding the median filter output (scipy.ndimage.median_filter, mode
    # "mirror") equals a majority vote over the thresholded raw scores: a moving sum.
    n_rows = len(cand)
    padded = np.zeros((n_rows, frames + 2), dtype=bool)  # off mask, False at both ends
    on_mask = raw >= on_c[:, None]
    if kernel > 1:
        _majority(raw >= off_c[:, None], kernel, out=padded[:, 1:-1])
        on_mask = _majority(on_mask, kernel)
    else:
        np.greater_equal(raw, off_c[:, None], out=padded[:, 1:-1])

    # Runs of frames >= off (padding keeps runs inside their row) that contain a frame
    # >= on.
    flat = padded.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # rising, falling, rising, ...
    width = frames + 2
    row = edges[0::2] // width
    start = edges[0::2] % width - 1
    end = edges[1::2] % width - 1  # exclusive
    del padded, flat, edges
    keep = _segment_reduce(np.logical_or, on_mask.ravel(), row * frames + start, row * frames + end)
    del on_mask
    row, start, end = row[keep], start[keep], end[keep]

    # 4. merge same-class events separated by at most merge_gap seconds.
    if options.merge_gap > 0 and len(row) > 1:
        max_gap = math.floor(options.merge_gap / hop + _EPS)
        new = np.ones(len(row), dtype=bool)
        new[1:] = (row[1:] != row[:-1]) | (start[1:] - end[:-1] > max_gap)
        first = np.flatnonzero(new)
        last = np.append(first[1:] - 1, len(row) - 1)
        row, start, end = row[first], start[first], end[last]

    # 5. times, clipping to the file duration, minimum duration.
    onset = start * hop
    offset = end * hop
    if duration is not None:
        offset = np.minimum(offset, duration)
        inside = onset < duration
        row, start, end, onset, offset = (a[inside] for a in (row, start, end, onset, offset))
    shortest = min_dur[cand][row]
    if shortest.size and shortest.max() > 0:
        long_enough = offset - onset >= shortest - _EPS
        row, start, end, onset, offset = (a[long_enough] for a in (row, start, end, onset, offset))
    if len(row) == 0:
        return None

    # Confidences from the raw scores.
    peak, mean = _segment_stats(raw.ravel(), row * frames + start, row * frames + end)

    return row, start, end, onset, offset, peak, mean


def scores_to_events(
    scores: np.ndarray,
    hop: float,
    labels: Sequence[Label],
    options: PostprocessOptions | None = None,
    file: str = "",
    duration: float | None = None,
    ontology: Ontology | None = None,
) -> list[Event]:
    """Turn a ``(frames, classes)`` score matrix into a list of :class:`Event`.

    ``labels[j]`` names column ``j``; ``hop`` is the frame hop in seconds; ``file`` is
    copied into every event. When ``duration`` (seconds) is given, offsets are clipped to
    it and events starting at or after it are dropped; the clipped duration is the one
    compared with ``min_duration``. ``ontology`` is needed for ``group_by`` and lets
    ``labels`` / ``exclude`` select whole categories.

    Returns events sorted by (onset, label). See the module docstring for the order of
    operations. Raises :class:`ValueError` for invalid options, shapes or NaN scores.
    """
    options = options if options is not None else PostprocessOptions()
    options.validate()
    if not (isinstance(hop, (int, float, np.number)) and math.isfinite(hop) and hop > 0):
        raise ValueError(f"hop must be a positive number of seconds, got {hop!r}")
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must have shape (frames, {len(labels)}), got {scores.shape}")
    if options.group_by is not None and ontology is None:
        raise ValueError("group_by needs an ontology")
    hop = float(hop)

    # 1. classes: selection, then grouping. members[g] = columns of `scores` for output g.
    selected = select_classes(labels, options, ontology)
    if not selected and labels:
        log.warning("the label selection (labels/exclude) leaves no class: no events")
    if options.group_by is not None:
        assert ontology is not None
        sub = [labels[i] for i in selected]
        plan, out_labels = group_plan(sub, ontology, options.group_by)
        cols = np.asarray(selected, dtype=np.intp)
        members = [cols[m] for m in plan]
    else:
        out_labels = [labels[i] for i in selected]
        members = [np.array([i], dtype=np.intp) for i in selected]
    on64 = on_thresholds(options, out_labels, labels, ontology)
    # Compare in float32, the precision the scores are processed in.
    on = on64.astype(np.float32)
    off = np.array([options.off_for(v) for v in on64], dtype=np.float32)
    frames = scores.shape[0]
    if frames == 0 or not out_labels:
        return []

    # Skip outputs that can never fire: max over frames of every member below "on".
    colmax = scores.max(axis=0).astype(np.float32)
    if np.isnan(colmax).any():  # max propagates NaN: this check is free
        bad = labels[int(np.flatnonzero(np.isnan(colmax))[0])].name
        raise ValueError(f"scores contain NaN (first in class {bad!r})")
    outmax = np.array([colmax[m].max() for m in members], dtype=np.float32)
    cand = np.flatnonzero(outmax >= on)
    if len(cand) == 0:
        return []
    n_rows = len(cand)
    medians = class_values(
        options.median_filters,
        options.median_filter,
        "median_filters",
        out_labels,
        labels,
        ontology,
    )
    kernels = np.array([median_kernel_frames(v, hop) for v in medians[cand]], dtype=np.intp)
    min_dur = class_values(
        options.min_durations, options.min_duration, "min_durations", out_labels, labels, ontology
    )
    # Outputs sharing a median kernel are processed together, ROW_BLOCK at a time: memory
    # stays bounded on long files. Rows come back as positions in `cand`.
    found = []
    for kernel in np.unique(kernels):
        positions = np.flatnonzero(kernels == kernel)
        for i in range(0, len(positions), ROW_BLOCK):
            chunk = positions[i : i + ROW_BLOCK]
            part = _detect_rows(
                scores, members, cand[chunk], on, off, options, hop, duration, int(kernel), min_dur
            )
            if part is not None:
                found.append((chunk[part[0]], *part[1:]))
    if not found:
        return []
    row, start, _, onset, offset, peak, mean = (np.concatenate(x) for x in zip(*found, strict=True))

    # Sort by (onset, label name, mid) and build the events.
    names = [out_labels[g].name for g in cand]
    mids = [out_labels[g].mid for g in cand]
    name_rank = np.empty(n_rows, dtype=np.intp)
    name_rank[sorted(range(n_rows), key=lambda r: (names[r], mids[r]))] = np.arange(n_rows)
    order = np.lexsort((name_rank[row], start))
    columns = (
        row[order].tolist(),
        onset[order].tolist(),
        offset[order].tolist(),
        peak[order].tolist(),
        mean[order].tolist(),
    )
    # Millions of new objects would trigger the cyclic garbage collector over and over;
    # events hold no reference cycles, so pause it while building them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return [
            Event(file, names[r], mids[r], a, b, p, m)
            for r, a, b, p, m in zip(*columns, strict=True)
        ]
    finally:
        if gc_was_enabled:
            gc.enable()
