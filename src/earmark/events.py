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
from dataclasses import dataclass, field

import numpy as np

from .labels import (
    Label,
    Ontology,
    UnknownLabelError,
    group_plan,
    max_rows,
    parse_level,
    resolve_label_set,
    suggest_names,
)

__all__ = [
    "DEFAULT_MEDIAN_FILTER",
    "DEFAULT_MERGE_GAP",
    "DEFAULT_THRESHOLD",
    "OFF_RATIO",
    "Event",
    "PostprocessOptions",
    "median_kernel_frames",
    "scores_to_events",
]

log = logging.getLogger(__name__)

# Defaults chosen on the dev split of the soundscape benchmark (benchmarks/sed: real
# ESC-10, scaper and siren events over real ambient recordings, mn04_as with local scoring and
# boundaries refined by earmark.boundaries, then with level 0.7 and 0.2 s of outward offset
# search, before those two were tuned again); reported on the test split in the README. On dev,
# thresholds 0.1 / 0.15 / 0.2 give event F1 (1 s collar) 0.344 / 0.320 / 0.308, segment F1
# 0.474 / 0.479 / 0.453 and event F1 (0.2 s collar) 0.104 / 0.114 / 0.120 (micro; macro ranks
# alike). 0.15 is best or within 0.01 of the best on all but the 1 s collar, where 0.1 leads but
# gives 37 % more events over all 527 classes (false alarms of classes the benchmark cannot
# score). Median filter and merge gap helped at every threshold; a minimum duration never did.

#: Default "on" threshold on a class score (sigmoid output in [0, 1]).
DEFAULT_THRESHOLD = 0.15

#: Default off threshold as a fraction of the on threshold (hysteresis): an event lasts while
#: its score stays at or above half the on threshold (best of 0.5, 0.75 and 1.0 on dev).
OFF_RATIO = 0.5

#: Default median filter length in seconds (3 frames of 0.32 s).
DEFAULT_MEDIAN_FILTER = 0.96

#: Default gap in seconds across which events of one class are merged (2 frames).
DEFAULT_MERGE_GAP = 0.64

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


@dataclass
class PostprocessOptions:
    """Knobs of :func:`scores_to_events`. Call :meth:`validate` to check them.

    * ``threshold``: on threshold for every class (default :data:`DEFAULT_THRESHOLD`).
    * ``thresholds``: per-class on thresholds, keyed by class name (case-insensitive) or
      mid; with ``group_by`` the keys refer to the groups. An override applies to that
      exact class only, not to classes below it.
    * ``off_threshold``: hysteresis off threshold for every class; ``None`` means
      ``OFF_RATIO`` times each class's on threshold. Must not exceed any on threshold.
    * ``median_filter``: seconds; kernel of :func:`median_kernel_frames` frames.
    * ``median_filters``: per-class median filters in seconds, keyed as ``thresholds``.
    * ``min_duration``: seconds; shorter events (after merging) are dropped.
    * ``min_durations``: per-class minimum durations in seconds, keyed as ``thresholds``.
    * ``merge_gap``: seconds; same-class events separated by at most this gap are merged.
    * ``labels`` / ``exclude``: only / never these classes (names or mids; with an
      ontology, the classes below them too).
    * ``group_by``: ``None``, ``"parent"``, ``"top"`` or a depth ``"0"``, ``"1"``, ...
      (see :func:`earmark.labels.group_scores`; needs an ontology).
    * ``join_related``: after the boundaries are set, overlapping events of related classes
      (ancestor, descendant or sibling in the ontology) become one event per sound, named by
      the most specific confident class, the others kept as its ``alternatives``
      (:func:`earmark.sounds.join_related`); ``False`` reports every class.
    """

    threshold: float = DEFAULT_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    off_threshold: float | None = None
    median_filter: float = DEFAULT_MEDIAN_FILTER
    median_filters: dict[str, float] = field(default_factory=dict)
    min_duration: float = 0.0
    min_durations: dict[str, float] = field(default_factory=dict)
    merge_gap: float = DEFAULT_MERGE_GAP
    labels: list[str] | None = None
    exclude: list[str] | None = None
    group_by: str | None = None
    join_related: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.labels, str):
            self.labels = [self.labels]
        if isinstance(self.exclude, str):
            self.exclude = [self.exclude]
        if self.thresholds is None:
            self.thresholds = {}
        if self.median_filters is None:
            self.median_filters = {}
        if self.min_durations is None:
            self.min_durations = {}

    def off_for(self, on: float) -> float:
        """The off threshold that goes with the on threshold ``on``."""
        return self.off_threshold if self.off_threshold is not None else on * OFF_RATIO

    def validate(self) -> None:
        """Raise :class:`ValueError` with a clear message for any out-of-range value."""

        def check_threshold(value: object, what: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"{what} must be a number, got {value!r}")
            value = float(value)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{what} must be in (0, 1], got {value}")
            return value

        ons = {"threshold": check_threshold(self.threshold, "threshold")}
        if not isinstance(self.thresholds, dict):
            raise ValueError("thresholds must be a dict of class name or mid -> threshold")
        for key, value in self.thresholds.items():
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"thresholds: keys must be class names or mids, got {key!r}")
            ons[f"thresholds[{key!r}]"] = check_threshold(value, f"thresholds[{key!r}]")
        if self.off_threshold is not None:
            off = check_threshold(self.off_threshold, "off_threshold")
            for what, on in ons.items():
                if off > on:
                    raise ValueError(
                        f"off_threshold {off} is above the on threshold {what} = {on}: "
                        "the off threshold must not exceed the on threshold"
                    )
        seconds = [(n, getattr(self, n)) for n in ("median_filter", "min_duration", "merge_gap")]
        for name in ("median_filters", "min_durations"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict of class name or mid -> seconds")
            seconds += [(f"{name}[{k!r}]", v) for k, v in getattr(self, name).items()]
        for name, value in seconds:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
        for name in ("labels", "exclude"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise ValueError(f"{name} must be a list of class names or mids, got {value!r}")
        if self.group_by is not None:
            parse_level(self.group_by)
        if not isinstance(self.join_related, bool):
            raise ValueError(f"join_related must be true or false, got {self.join_related!r}")


def effective_thresholds(
    options: PostprocessOptions, labels: Sequence[Label], ontology: Ontology | None = None
) -> dict[str, float]:
    """The on threshold each class gets (name -> value): ``options.threshold`` with the
    per-class ``thresholds`` applied. Unknown keys raise :class:`UnknownLabelError`."""
    on = _threshold_map(options, labels, labels, ontology)
    return {lab.name: float(v) for lab, v in zip(labels, on, strict=True)}


def median_kernel_frames(seconds: float, hop: float) -> int:
    """Median filter length in frames: the odd number nearest to ``seconds / hop``.

    A tie (an even ratio such as 2.0) goes to the larger odd number. 1 means no filter.
    """
    if seconds <= 0:
        return 1
    ratio = seconds / hop + _EPS
    return 2 * math.floor(ratio / 2) + 1


# -- helpers ---------------------------------------------------------------------------


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


def _threshold_map(
    options: PostprocessOptions,
    out_labels: Sequence[Label],
    all_labels: Sequence[Label],
    ontology: Ontology | None,
) -> np.ndarray:
    """On threshold per output label; unknown override keys raise ValueError."""
    return _per_class(
        options.thresholds, options.threshold, "thresholds", out_labels, all_labels, ontology
    )


def _per_class(
    overrides: dict[str, float],
    default: float,
    what: str,
    out_labels: Sequence[Label],
    all_labels: Sequence[Label],
    ontology: Ontology | None,
) -> np.ndarray:
    """``default`` per output label, with ``overrides`` (class name or mid -> value) applied;
    a key naming no known class raises :class:`UnknownLabelError`."""
    values = np.full(len(out_labels), float(default), dtype=np.float64)
    if not overrides:
        return values
    pos: dict[str, int] = {}
    i: int | None
    for i, lab in enumerate(out_labels):
        pos.setdefault(lab.mid, i)
        pos.setdefault(lab.name.lower(), i)
    known = {lab.mid for lab in all_labels} | {lab.name.lower() for lab in all_labels}
    for key, value in overrides.items():
        k = key.strip()
        i = pos.get(k, pos.get(k.lower()))
        if i is not None:
            values[i] = float(value)
        elif (
            k not in known
            and k.lower() not in known
            and (ontology is None or ontology.find(k) is None)
        ):
            candidates = [lab.name for lab in all_labels] + [lab.name for lab in out_labels]
            raise UnknownLabelError(
                f"{what}: unknown class {key!r}." + suggest_names(k, candidates)
            )
    return values


def _select(
    labels: Sequence[Label], options: PostprocessOptions, ontology: Ontology | None
) -> list[int]:
    if options.labels is not None:
        chosen = set(resolve_label_set(labels, options.labels, ontology))
    else:
        chosen = set(range(len(labels)))
    if options.exclude:
        chosen -= set(resolve_label_set(labels, options.exclude, ontology))
    return sorted(chosen)


# -- main entry point ------------------------------------------------------------------


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
    selected = _select(labels, options, ontology)
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
    on64 = _threshold_map(options, out_labels, labels, ontology)
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
    medians = _per_class(
        options.median_filters,
        options.median_filter,
        "median_filters",
        out_labels,
        labels,
        ontology,
    )
    kernels = np.array([median_kernel_frames(v, hop) for v in medians[cand]], dtype=np.intp)
    min_dur = _per_class(
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
