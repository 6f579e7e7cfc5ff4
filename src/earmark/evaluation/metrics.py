"""Sound event detection metrics: event-based and segment-based, as defined by DCASE / sed_eval.

This is our own implementation of the definitions documented by sed_eval (Mesaros, Heittola and
Virtanen, "Metrics for polyphonic sound event detection", Applied Sciences 6(6):162, 2016):

Event-based (:func:`event_based_metrics`)
    Within one file, a predicted event is *correct* for a reference event with the same label when
    ``|onset_pred - onset_ref| <= t_collar`` and ``|offset_pred - offset_ref| <=
    max(t_collar, percentage_of_length * (offset_ref - onset_ref))``.
    Each reference event is matched to at most one prediction and vice versa; the pairing is a
    maximum bipartite matching (not greedy), so the count of correct events does not depend on the
    order of the lists. Counts are summed over files (micro average).

    Overall error rate, as in sed_eval: after the correct matches are taken out, an unmatched
    reference and an unmatched prediction that satisfy the same time conditions but carry different
    labels form a *substitution*; leftovers are deletions (reference) and insertions (prediction)::

        ER = (S + D + I) / Nref,   D = Nref - Ntp - S,   I = Nsys - Ntp - S

    Class-wise error rate has no substitutions: ``ER_c = (Nfn_c + Nfp_c) / Nref_c``.

Segment-based (:func:`segment_based_metrics`)
    Time is cut into segments of ``segment_length`` seconds; a class is active in a segment when an
    event of that class overlaps it (an event covers segments ``floor(onset / L)`` to
    ``ceil(offset / L) - 1``). Per segment, with ``Nref``/``Nsys`` the numbers of active reference /
    predicted classes and ``Ntp`` those active in both::

        S = min(Nref, Nsys) - Ntp,   D = max(0, Nref - Nsys),   I = max(0, Nsys - Nref)

    and ``ER = sum(S + D + I) / sum(Nref)``. Precision/recall/F1 use the per-class, per-segment
    true/false positives summed over segments and files.

Deliberate differences from sed_eval's defaults (documented, all only on degenerate cases):

* F1 of a class that has references but no predictions is 0 (sed_eval reports NaN unless
  ``empty_system_output_handling='zero_score'``), so a class the system never outputs lowers the
  macro average instead of silently dropping out of it.
* Metrics that divide by ``Nref`` are NaN when ``Nref == 0`` (sed_eval divides by machine epsilon);
  such classes are left out of macro averages, which are NaN-ignoring means over classes, as in
  sed_eval. Their false positives still count in the overall (micro) metrics.
* Substitutions are counted with a maximum matching among the leftovers (sed_eval counts them
  greedily in list order), which can only give a count equal to or higher than sed_eval's.

Files are matched between reference and predictions by their *stem* (name without folder and
extension), because several reference formats carry no folder (DCASE TSV) or no file at all (scaper
``.txt``, Audacity labels, where the stem of the label file is used).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, Protocol

import numpy as np

__all__ = [
    "EventLike",
    "RefEvent",
    "drop_labels",
    "event_based_metrics",
    "file_key",
    "load_jams",
    "load_label_map",
    "load_reference",
    "map_predictions",
    "segment_based_metrics",
    "validate_label_map",
]

# Tolerance used when turning times into segment indices, so that 3.0000000000000004 s does not
# spill into the next segment and 2.9999999999999996 s does not fall short of it.
_TIME_EPS = 1e-9


@dataclass(frozen=True)
class RefEvent:
    """One labelled event: a sound of class ``label`` in ``file`` from ``onset`` to ``offset``.

    Times are in seconds from the start of the recording.
    """

    file: str
    onset: float
    offset: float
    label: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.onset) and math.isfinite(self.offset)):
            raise ValueError(f"event times must be finite, got {self.onset}..{self.offset}")
        if self.offset < self.onset:
            raise ValueError(
                f"event offset {self.offset} is before its onset {self.onset} ({self.label!r})"
            )


class EventLike(Protocol):
    """Anything with a file, a label and onset/offset times (e.g. ``earmark.events.Event``)."""

    file: str
    label: str
    onset: float
    offset: float


def file_key(file: str | PurePath) -> str:
    """The key used to pair reference and predicted events of the same recording: the file name
    without its audio extension (``rec.part1.wav`` and ``rec.part1`` are one recording; only an
    audio file ending such as ``.wav`` is removed, so dots inside names are kept).

    Both ``/` and ``\\`` separators are understood, so Windows paths in a reference file work too.
    """
    from earmark.inputs import AUDIO_EXTENSIONS

    name = PureWindowsPath(str(file)).name  # splits on both separators
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and f".{suffix.lower()}" in AUDIO_EXTENSIONS else name


# --------------------------------------------------------------------------------------------
# Small numeric helpers


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def _f1(ntp: float, nref: float, nsys: float) -> float:
    """F1 = 2 Ntp / (Nref + Nsys); NaN when there is no reference (recall undefined)."""
    if nref <= 0:
        return float("nan")
    return 2.0 * ntp / (nref + nsys)


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else float("nan")


def _by_file(events: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        grouped[file_key(event.file)].append(event)
    return grouped


def _class_list(
    reference: Sequence[Any], predicted: Sequence[Any], labels: Sequence[str] | None
) -> list[str]:
    if labels is not None:
        return list(dict.fromkeys(labels))
    return sorted({e.label for e in reference} | {e.label for e in predicted})


# --------------------------------------------------------------------------------------------
# Event-based metrics


def _time_hits(
    ref: Sequence[Any],
    pred: Sequence[Any],
    t_collar: float,
    percentage_of_length: float,
    evaluate_onset: bool,
    evaluate_offset: bool,
) -> np.ndarray:
    """Boolean matrix (n_ref, n_pred): the time conditions hold for the pair (labels ignored)."""
    hits = np.ones((len(ref), len(pred)), dtype=bool)
    if not ref or not pred:
        return hits
    r_on = np.array([e.onset for e in ref], dtype=float)[:, None]
    r_off = np.array([e.offset for e in ref], dtype=float)[:, None]
    p_on = np.array([e.onset for e in pred], dtype=float)[None, :]
    p_off = np.array([e.offset for e in pred], dtype=float)[None, :]
    if evaluate_onset:
        hits &= np.abs(r_on - p_on) <= t_collar + _TIME_EPS
    if evaluate_offset:
        tolerance = np.maximum(t_collar, percentage_of_length * (r_off - r_on))
        hits &= np.abs(r_off - p_off) <= tolerance + _TIME_EPS
    return hits


def _match_file(
    ref: Sequence[Any], pred: Sequence[Any], time_hits: np.ndarray
) -> tuple[list[tuple[int, int]], int]:
    """Correct pairs (maximum matching) and the number of substitutions, for one file.

    One assignment problem does both: a correct pair (same label, times within collar) weighs more
    than all possible substitutions together, a substitution (times within collar, other label)
    weighs 1. The optimum therefore has the maximum number of correct pairs and, among those, the
    maximum number of substitutions.
    """
    if not ref or not pred:
        return [], 0
    same_label = np.array([[r.label == p.label for p in pred] for r in ref], dtype=bool)
    big = float(min(len(ref), len(pred)) + 1)
    weight = np.where(time_hits & same_label, big, np.where(time_hits, 1.0, 0.0))
    from scipy.optimize import linear_sum_assignment  # slow to import; only when matching

    rows, cols = linear_sum_assignment(weight, maximize=True)
    correct: list[tuple[int, int]] = []
    substitutions = 0
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if weight[i, j] == big:
            correct.append((i, j))
        elif weight[i, j] == 1.0:
            substitutions += 1
    return correct, substitutions


def _max_matching(hits: np.ndarray) -> int:
    if hits.size == 0:
        return 0
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(hits.astype(float), maximize=True)
    return int(hits[rows, cols].sum())


def event_based_metrics(
    reference: Sequence[RefEvent],
    predicted: Sequence[RefEvent],
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Event-based precision, recall, F1 and error rate (DCASE / sed_eval definition).

    Args:
        reference: ground-truth events of all files.
        predicted: system events of all files (labels in the reference vocabulary, see
            :func:`map_predictions`). Predictions for files absent from the reference count as
            insertions.
        t_collar: onset (and minimum offset) tolerance in seconds.
        percentage_of_length: the offset tolerance is ``max(t_collar, this * reference length)``.
        evaluate_onset: require the onset condition.
        evaluate_offset: require the offset condition.
        labels: the class list. Default: every label in the reference or the predictions. When
            given, events with other labels are ignored entirely.

    Returns:
        ``{"overall": {...}, "class_wise": {label: {...}}, "macro": {...}, "params": {...}}``.
        ``overall`` has ``precision, recall, f1, error_rate, substitution_rate, deletion_rate,
        insertion_rate`` and the counts ``Nref, Nsys, Ntp, Nfp (= Nsys - Ntp), Nfn (= Nref - Ntp),
        S, D, I``. Each class has ``precision, recall, f1, error_rate, deletion_rate,
        insertion_rate, Nref, Nsys, Ntp, Nfp, Nfn``. ``macro`` is the NaN-ignoring mean over
        classes of ``precision, recall, f1, error_rate, deletion_rate, insertion_rate``.
    """
    if not evaluate_onset and not evaluate_offset:
        raise ValueError("at least one of evaluate_onset and evaluate_offset must be True")
    if t_collar < 0 or percentage_of_length < 0:
        raise ValueError("t_collar and percentage_of_length must be >= 0")
    classes = _class_list(reference, predicted, labels)
    wanted = set(classes)
    reference = [e for e in reference if e.label in wanted]
    predicted = [e for e in predicted if e.label in wanted]
    ref_by_file, pred_by_file = _by_file(reference), _by_file(predicted)

    n_tp = n_subs = 0
    per_class = {c: {"Nref": 0, "Nsys": 0, "Ntp": 0} for c in classes}
    for key in sorted(set(ref_by_file) | set(pred_by_file)):
        ref, pred = ref_by_file.get(key, []), pred_by_file.get(key, [])
        hits = _time_hits(
            ref, pred, t_collar, percentage_of_length, evaluate_onset, evaluate_offset
        )
        correct, subs = _match_file(ref, pred, hits)
        n_tp += len(correct)
        n_subs += subs
        for cls in {e.label for e in ref} | {e.label for e in pred}:
            r_idx = [i for i, e in enumerate(ref) if e.label == cls]
            p_idx = [j for j, e in enumerate(pred) if e.label == cls]
            counts = per_class[cls]
            counts["Nref"] += len(r_idx)
            counts["Nsys"] += len(p_idx)
            counts["Ntp"] += _max_matching(hits[np.ix_(r_idx, p_idx)])

    n_ref, n_sys = len(reference), len(predicted)
    n_del = n_ref - n_tp - n_subs
    n_ins = n_sys - n_tp - n_subs
    overall = {
        "precision": _ratio(n_tp, n_sys),
        "recall": _ratio(n_tp, n_ref),
        "f1": _f1(n_tp, n_ref, n_sys),
        "error_rate": _ratio(n_subs + n_del + n_ins, n_ref),
        "substitution_rate": _ratio(n_subs, n_ref),
        "deletion_rate": _ratio(n_del, n_ref),
        "insertion_rate": _ratio(n_ins, n_ref),
        "Nref": n_ref,
        "Nsys": n_sys,
        "Ntp": n_tp,
        "Nfp": n_sys - n_tp,
        "Nfn": n_ref - n_tp,
        "S": n_subs,
        "D": n_del,
        "I": n_ins,
    }
    class_wise = {c: _class_scores(**per_class[c]) for c in classes}
    return {
        "overall": overall,
        "class_wise": class_wise,
        "macro": _macro(class_wise),
        "params": {
            "t_collar": t_collar,
            "percentage_of_length": percentage_of_length,
            "evaluate_onset": evaluate_onset,
            "evaluate_offset": evaluate_offset,
            "n_files": len(set(ref_by_file) | set(pred_by_file)),
        },
    }


def _class_scores(Nref: int, Nsys: int, Ntp: int, **extra: int) -> dict[str, Any]:
    nfp, nfn = Nsys - Ntp, Nref - Ntp
    return {
        "precision": _ratio(Ntp, Nsys),
        "recall": _ratio(Ntp, Nref),
        "f1": _f1(Ntp, Nref, Nsys),
        "error_rate": _ratio(nfn + nfp, Nref),
        "deletion_rate": _ratio(nfn, Nref),
        "insertion_rate": _ratio(nfp, Nref),
        "Nref": Nref,
        "Nsys": Nsys,
        "Ntp": Ntp,
        "Nfp": nfp,
        "Nfn": nfn,
        **extra,
    }


_MACRO_KEYS = ("precision", "recall", "f1", "error_rate", "deletion_rate", "insertion_rate")


def _macro(class_wise: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    return {k: _nanmean(scores[k] for scores in class_wise.values()) for k in _MACRO_KEYS}


# --------------------------------------------------------------------------------------------
# Segment-based metrics


def _n_segments(seconds: float, segment_length: float) -> int:
    return max(0, math.ceil(seconds / segment_length - _TIME_EPS))


def _roll(
    events: Sequence[Any], classes: Mapping[str, int], n_segments: int, segment_length: float
) -> np.ndarray:
    roll = np.zeros((n_segments, len(classes)), dtype=bool)
    for e in events:
        start = max(0, math.floor(e.onset / segment_length + _TIME_EPS))
        stop = min(n_segments, math.ceil(e.offset / segment_length - _TIME_EPS))
        if stop > start:
            roll[start:stop, classes[e.label]] = True
    return roll


def segment_based_metrics(
    reference: Sequence[RefEvent],
    predicted: Sequence[RefEvent],
    segment_length: float = 1.0,
    durations: Mapping[str, float] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Segment-based precision, recall, F1 and error rate (DCASE / sed_eval definition).

    Args:
        reference: ground-truth events of all files.
        predicted: system events of all files.
        segment_length: segment length in seconds.
        durations: length in seconds of each file (keys are matched by stem, see
            :func:`file_key`). A file's evaluated length is its duration when given (events past it
            are cut), otherwise the latest offset in its reference or predictions. Files listed here
            without any event still count (true negatives only).
        labels: the class list; default every label in the reference or predictions. When given,
            events with other labels are ignored.

    Returns:
        ``{"overall": {...}, "class_wise": {label: {...}}, "macro": {...}, "params": {...}}``;
        ``overall`` has ``precision, recall, f1, error_rate, substitution_rate, deletion_rate,
        insertion_rate, accuracy`` and the counts ``Nref, Nsys, Ntp, Nfp, Nfn, Ntn, S, D, I``
        (numbers of class-segments); classes have ``precision, recall, f1, error_rate,
        deletion_rate, insertion_rate`` and ``Nref, Nsys, Ntp, Nfp, Nfn, Ntn``.
    """
    if segment_length <= 0:
        raise ValueError("segment_length must be > 0")
    classes = _class_list(reference, predicted, labels)
    index = {c: i for i, c in enumerate(classes)}
    reference = [e for e in reference if e.label in index]
    predicted = [e for e in predicted if e.label in index]
    ref_by_file, pred_by_file = _by_file(reference), _by_file(predicted)
    lengths = {file_key(k): float(v) for k, v in (durations or {}).items()}

    totals = dict.fromkeys(("Nref", "Nsys", "Ntp", "Nfp", "Nfn", "Ntn", "S", "D", "I"), 0)
    cls_counts = np.zeros((len(classes), 4), dtype=np.int64)  # Nref Nsys Ntp Ntn
    evaluated_seconds = 0.0
    files = sorted(set(ref_by_file) | set(pred_by_file) | set(lengths))
    for key in files:
        ref, pred = ref_by_file.get(key, []), pred_by_file.get(key, [])
        if key in lengths:
            seconds = lengths[key]
        else:
            seconds = max([e.offset for e in ref] + [e.offset for e in pred] + [0.0])
        evaluated_seconds += seconds
        n_seg = _n_segments(seconds, segment_length)
        r = _roll(ref, index, n_seg, segment_length)
        s = _roll(pred, index, n_seg, segment_length)
        tp, fp, fn, tn = r & s, s & ~r, r & ~s, ~r & ~s
        n_ref_seg, n_sys_seg, n_tp_seg = r.sum(1), s.sum(1), tp.sum(1)
        totals["Nref"] += int(n_ref_seg.sum())
        totals["Nsys"] += int(n_sys_seg.sum())
        totals["Ntp"] += int(n_tp_seg.sum())
        totals["Nfp"] += int(fp.sum())
        totals["Nfn"] += int(fn.sum())
        totals["Ntn"] += int(tn.sum())
        totals["S"] += int((np.minimum(n_ref_seg, n_sys_seg) - n_tp_seg).sum())
        totals["D"] += int(np.maximum(0, n_ref_seg - n_sys_seg).sum())
        totals["I"] += int(np.maximum(0, n_sys_seg - n_ref_seg).sum())
        cls_counts += np.stack([r.sum(0), s.sum(0), tp.sum(0), tn.sum(0)], axis=1)

    n_ref, n_sys, n_tp = totals["Nref"], totals["Nsys"], totals["Ntp"]
    n_all = totals["Ntp"] + totals["Nfp"] + totals["Nfn"] + totals["Ntn"]
    overall = {
        "precision": _ratio(n_tp, n_sys),
        "recall": _ratio(n_tp, n_ref),
        "f1": _f1(n_tp, n_ref, n_sys),
        "error_rate": _ratio(totals["S"] + totals["D"] + totals["I"], n_ref),
        "substitution_rate": _ratio(totals["S"], n_ref),
        "deletion_rate": _ratio(totals["D"], n_ref),
        "insertion_rate": _ratio(totals["I"], n_ref),
        "accuracy": _ratio(totals["Ntp"] + totals["Ntn"], n_all),
        **totals,
    }
    # Within a class, Nfp = Nsys - Ntp and Nfn = Nref - Ntp segment by segment, so the counts
    # below are all the class-wise scores need.
    class_wise = {
        c: _class_scores(Nref=nref, Nsys=nsys, Ntp=ntp, Ntn=ntn)
        for c, (nref, nsys, ntp, ntn) in zip(classes, cls_counts.tolist(), strict=True)
    }
    return {
        "overall": overall,
        "class_wise": class_wise,
        "macro": _macro(class_wise),
        "params": {
            "segment_length": segment_length,
            "n_files": len(files),
            "evaluated_seconds": evaluated_seconds,
        },
    }


# --------------------------------------------------------------------------------------------
# Reading reference annotations

_ONSET_NAMES = ("onset", "event_onset", "start", "start_time", "begin", "t_start", "onset_s")
_OFFSET_NAMES = ("offset", "event_offset", "end", "end_time", "stop", "t_end", "offset_s")
_LABEL_NAMES = ("event_label", "label", "class", "event", "class_label", "event_class")
_FILE_NAMES = ("filename", "file", "audio_filename", "audio_file", "path", "file_name")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _split_rows(text: str, suffix: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    # Audacity writes spectral selections as extra lines starting with a backslash.
    lines = [ln for ln in lines if not ln.lstrip().startswith("\\")]
    if not lines:
        return []
    sample = "\n".join(lines[:20])
    if "\t" in sample:
        return [[f.strip() for f in ln.split("\t")] for ln in lines]
    head = lines[:20]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    if suffix == ".csv" or all(ln.count(delimiter) >= 2 for ln in head):
        return [
            [f.strip() for f in row]
            for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
        ]
    # Whitespace separated: onset offset label-with-spaces, or filename onset offset label.
    rows = []
    for ln in lines:
        parts = ln.split()
        k = next(
            (i for i in range(len(parts) - 1) if _is_number(parts[i]) and _is_number(parts[i + 1])),
            None,
        )
        if k is None:
            rows.append(parts)
        else:
            rows.append([*parts[: k + 2], " ".join(parts[k + 2 :])])
    return rows


def _find_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def load_reference(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Read a strongly labelled annotation file.

    Understood formats (tab, comma, semicolon or whitespace separated, header optional):

    * DCASE TSV: ``filename onset offset event_label`` (rows with a filename only, i.e. files
      without events, are skipped); also the older ``filename scene onset offset label``.
    * scaper ``.txt`` and Audacity labels: ``onset offset label``; the file is the stem of the
      annotation file (or ``file`` when given). Audacity's spectral-selection lines (``\\ f0 f1``)
      are ignored.
    * CSV/TSV with a header naming the columns (``onset``/``start``, ``offset``/``end``,
      ``label``/``event_label``/``class`` and optionally ``filename``/``file``).
    * JAMS (``.jams``), see :func:`load_jams`.

    Args:
        path: the annotation file.
        file: file name to use for events whose row has no file column (default: the stem of
            ``path``).

    Returns:
        The events in file order.
    """
    path = Path(path)
    default_file = file if file is not None else path.stem
    if path.suffix.lower() == ".jams":
        return load_jams(path, file=file)
    rows = _split_rows(path.read_text(encoding="utf-8-sig"), path.suffix.lower())
    if not rows:
        return []
    header = rows[0]
    onset_col = _find_column(header, _ONSET_NAMES)
    offset_col = _find_column(header, _OFFSET_NAMES)
    events: list[RefEvent] = []
    if onset_col is not None and offset_col is not None:
        label_col = _find_column(header, _LABEL_NAMES)
        file_col = _find_column(header, _FILE_NAMES)
        if label_col is None:
            raise ValueError(f"{path}: header {header} has no label column")
        for n, row in enumerate(rows[1:], start=2):
            if max(onset_col, offset_col, label_col) >= len(row) or not row[onset_col]:
                continue  # a file without events
            events.append(
                _make_event(
                    path,
                    n,
                    row[file_col] if file_col is not None and file_col < len(row) else default_file,
                    row[onset_col],
                    row[offset_col],
                    row[label_col],
                )
            )
        return events
    for n, row in enumerate(rows, start=1):
        k = next(
            (i for i in range(len(row) - 1) if _is_number(row[i]) and _is_number(row[i + 1])),
            None,
        )
        if k is None:
            if n == 1 or len(row) <= 1 or not any(row[1:]):
                continue  # header of unknown column names, or a file without events
            raise ValueError(f"{path}:{n}: cannot find onset and offset in {row}")
        label = " ".join(f for f in row[k + 2 :] if f)
        event_file = row[0] if k >= 1 else default_file
        events.append(_make_event(path, n, event_file, row[k], row[k + 1], label))
    return events


_JAMS_NAMESPACES = ("scaper", "tag_open")


def load_jams(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Read the events of a JAMS annotation file (e.g. one written by scaper).

    Every annotation whose ``namespace`` is ``scaper`` or ``tag_open`` is read; each item of its
    ``data`` list (``time``, ``duration``, ``value``) is one event. The label is ``value`` itself,
    or ``value["label"]`` when ``value`` is a mapping (scaper also stores background items, with
    ``value["role"] == "background"``: they are skipped).

    Args:
        path: the ``.jams`` file.
        file: file name of the events (default: the stem of ``path``).

    Returns:
        The events sorted by onset.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JAMS (JSON) file ({exc})") from None
    default_file = file if file is not None else path.stem
    annotations = data.get("annotations", []) if isinstance(data, dict) else []
    events: list[RefEvent] = []
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or annotation.get("namespace") not in _JAMS_NAMESPACES:
            continue
        for j, item in enumerate(annotation.get("data") or []):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: annotation {i}, item {j} is not an object")
            value = item.get("value")
            if isinstance(value, dict):
                if value.get("role") == "background":
                    continue
                value = value.get("label")
            if value is None or str(value).strip() == "":
                continue
            try:
                onset = float(item["time"])
                offset = onset + float(item["duration"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"{path}: annotation {i}, item {j} needs numeric time and duration"
                ) from None
            events.append(RefEvent(default_file, onset, offset, str(value).strip()))
    events.sort(key=lambda e: (e.onset, e.offset, e.label))
    return events


def _make_event(path: Path, line: int, file: str, onset: str, offset: str, label: str) -> RefEvent:
    try:
        return RefEvent(file=file, onset=float(onset), offset=float(offset), label=label.strip())
    except ValueError as error:
        raise ValueError(f"{path}:{line}: {error}") from None


# --------------------------------------------------------------------------------------------
# From AudioSet predictions to reference labels


def map_predictions(
    predicted: Iterable[EventLike],
    label_map: Mapping[str, Sequence[str]],
    merge_gap: float = 0.0,
) -> list[RefEvent]:
    """Translate predicted AudioSet events into reference-label events.

    Args:
        predicted: predicted events (``earmark.events.Event`` or anything with ``file, label,
            onset, offset``; an ``mid`` attribute, when present, may be used in the map instead of
            the display name).
        label_map: reference label -> AudioSet class names (or MIDs) that count as that label.
            A prediction whose class is listed under several reference labels yields one event
            for each; predictions of unlisted classes are dropped.
        merge_gap: predictions of the same reference label in the same file are merged into their
            union when they overlap or are at most this many seconds apart, so that two AudioSet
            synonyms firing together (e.g. Dog and Bark) become one event, not one match and one
            insertion.

    Returns:
        Reference-label events sorted by file, label and onset.
    """
    targets: dict[str, list[str]] = defaultdict(list)
    for ref_label, names in label_map.items():
        if isinstance(names, str):
            raise TypeError(f"label_map[{ref_label!r}] must be a list of class names, not a str")
        for name in names:
            if ref_label not in targets[name]:
                targets[name].append(ref_label)

    spans: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for event in predicted:
        labels = targets.get(event.label, [])
        mid = getattr(event, "mid", None)
        if mid is not None:
            labels = labels + [x for x in targets.get(mid, []) if x not in labels]
        for ref_label in labels:
            spans[(str(event.file), ref_label)].append((float(event.onset), float(event.offset)))

    out: list[RefEvent] = []
    for (file, ref_label), intervals in sorted(spans.items()):
        intervals.sort()
        start, stop = intervals[0]
        for onset, offset in intervals[1:]:
            if onset <= stop + merge_gap:
                stop = max(stop, offset)
            else:
                out.append(RefEvent(file, start, stop, ref_label))
                start, stop = onset, offset
        out.append(RefEvent(file, start, stop, ref_label))
    return out


def drop_labels(events: Iterable[Any], labels_by_file: Mapping[str, Iterable[str]]) -> list[Any]:
    """The events whose label is not excluded for their file.

    Use it on both the reference and the predictions when a recording makes some classes
    unscorable (e.g. a soundscape whose background is itself a street with people talking cannot
    score ``human_voice``). Keys of ``labels_by_file`` are matched by stem, like the metrics.
    """
    excluded = {file_key(f): set(labels) for f, labels in labels_by_file.items()}
    return [e for e in events if e.label not in excluded.get(file_key(e.file), ())]


def load_label_map(source: str | Path) -> dict[str, list[str]]:
    """Load a label map (reference label -> AudioSet class names) from YAML.

    Args:
        source: a path to a YAML file, or the name of a map shipped with earmark
            (``earmark/data/labelmaps/<name>.yaml``, e.g. ``"esc10"``).
    """
    import yaml

    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("earmark").joinpath("data", "labelmaps", f"{source}.yaml")
        if not resource.is_file():
            raise FileNotFoundError(f"no label map file or built-in label map named {source!r}")
        text = resource.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"label map {source}: expected a mapping of label -> list of classes")
    label_map: dict[str, list[str]] = {}
    for label, names in data.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"label map {source}: {label!r} must map to a list of class names")
        label_map[str(label)] = list(names)
    return label_map


def validate_label_map(label_map: Mapping[str, Sequence[str]], class_names: Iterable[str]) -> None:
    """Raise ``ValueError`` listing every name in ``label_map`` that is not in ``class_names``."""
    known = set(class_names)
    unknown = sorted(
        {(lbl, n) for lbl, names in label_map.items() for n in names if n not in known}
    )
    if unknown:
        listed = ", ".join(f"{lbl}: {n!r}" for lbl, n in unknown)
        raise ValueError(f"label map names not among the model's classes: {listed}")
