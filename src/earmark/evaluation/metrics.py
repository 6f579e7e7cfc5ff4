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

Files are matched between reference and predictions by their *stem*
(:func:`earmark.evaluation.references.file_key`). Reading reference annotations is
:mod:`earmark.evaluation.references`, translating AudioSet predictions into reference labels
:mod:`earmark.evaluation.label_maps`; their names are importable from here too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from earmark.evaluation.label_maps import (
    drop_labels,
    load_label_map,
    map_predictions,
    validate_label_map,
)
from earmark.evaluation.references import (
    EventLike,
    RefEvent,
    file_key,
    load_jams,
    load_reference,
)

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
