"""PSDS1 and PSDS2 (polyphonic sound detection score) from framewise scores, computed
threshold-independently over every distinct score value.

PSDS definitions used here (our own implementation of the published ones). For a class ``c`` and
a decision threshold ``t``, the detections are the maximal runs of frames whose score is ``>= t``
(within one file). With intersections summed over reference events:

* a detection passes the detection tolerance criterion (DTC) when its intersection with reference
  events of ``c`` is at least ``dtc`` times its length; otherwise it is a false positive;
* a reference event of ``c`` is a true positive when its intersection with the detections that
  pass the DTC is at least ``gtc`` times its length (ground truth intersection criterion);
* a false positive is a cross-trigger on class ``c'`` when its intersection with reference events
  of ``c'`` is at least ``cttc`` times its length.

``TPR = TP / Nref``; ``FPR = FP / total audio duration`` (per hour);
``eFPR = FPR + alpha_ct * mean over c' != c of CT(c') / duration of c' events`` (per hour). Each
class's ROC keeps, for every eFPR, the best TPR reachable at that eFPR or less; the PSD-ROC is
``mean_c TPR_c(e) - alpha_st * std_c TPR_c(e)`` (clipped at 0) and PSDS is its area for
``e`` in ``[0, max_efpr]`` divided by ``max_efpr``. PSDS is computed over the classes that have
at least one reference event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earmark.evaluation.metrics import (
    RefEvent,
    file_key,
)

__all__ = ["PSDS1", "PSDS2", "FileScores", "PsdsParams", "psds"]

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class PsdsParams:
    """Parameters of one PSDS scenario (DCASE 2021+ naming)."""

    dtc: float
    gtc: float
    cttc: float | None = None
    alpha_ct: float = 0.0
    alpha_st: float = 1.0
    max_efpr: float = 100.0


PSDS1 = PsdsParams(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0)
PSDS2 = PsdsParams(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0)


@dataclass
class FileScores:
    """Framewise scores of one file in the reference vocabulary.

    ``scores[i, k]`` is the score of class ``classes[k]`` in ``[i * hop, (i + 1) * hop)``; the
    last frame ends at ``duration`` when that is shorter.
    """

    scores: np.ndarray
    hop: float
    classes: list[str]
    duration: float

    def edges(self) -> np.ndarray:
        """Frame boundaries in seconds, ``len(scores) + 1`` values."""
        n = len(self.scores)
        edges = np.arange(n + 1, dtype=np.float64) * self.hop
        if n and (n - 1) * self.hop < self.duration < edges[-1]:
            edges[-1] = self.duration
        return edges


# --------------------------------------------------------------------------------------------
# PSDS


def _coverage(edges: np.ndarray, events: Sequence[RefEvent]) -> np.ndarray:
    """Seconds of each frame covered by ``events`` (overlaps counted once per event)."""
    cov = np.zeros(len(edges) - 1)
    for e in events:
        cov += np.clip(np.minimum(edges[1:], e.offset) - np.maximum(edges[:-1], e.onset), 0, None)
    return cov


def _runs(mask: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and stop (exclusive) frame indices of the runs of True in ``mask``.

    ``breaks[i]`` True means frame ``i`` starts a new file: runs never cross it.
    """
    m = mask.astype(np.int8)
    prev = np.concatenate(([0], m[:-1]))
    prev[breaks] = 0
    nxt = np.concatenate((m[1:], [0]))
    nxt[np.concatenate((breaks[1:], [True]))] = 0
    starts = np.flatnonzero((m == 1) & (prev == 0))
    stops = np.flatnonzero((m == 1) & (nxt == 0)) + 1
    return starts, stops


def _class_roc(
    k: int,
    scores: np.ndarray,
    lengths: np.ndarray,
    breaks: np.ndarray,
    cov: np.ndarray,
    ref_cov: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_ref: int,
    ref_seconds: np.ndarray,
    total_seconds: float,
    params: PsdsParams,
) -> tuple[np.ndarray, np.ndarray]:
    """TPR and eFPR (per hour) of class ``k`` at every distinct threshold, plus "nothing"."""
    cum_len = np.concatenate(([0.0], np.cumsum(lengths)))
    cum_cov = np.concatenate(([0.0], np.cumsum(cov[:, k])))
    gt_index, gt_frame, gt_weight = ref_cov  # sparse (event, frame, seconds covered)
    gt_len = np.bincount(gt_index, weights=gt_weight, minlength=n_ref)
    others = [j for j in range(cov.shape[1]) if j != k]
    cum_other = {j: np.concatenate(([0.0], np.cumsum(cov[:, j]))) for j in others}
    use_ct = params.alpha_ct > 0 and params.cttc is not None and others
    column = scores[:, k]
    thresholds = np.unique(column)[::-1]
    tpr = [0.0]
    efpr = [0.0]
    for t in thresholds:
        starts, stops = _runs(column >= t, breaks)
        det_len = cum_len[stops] - cum_len[starts]
        inter = cum_cov[stops] - cum_cov[starts]
        ok = inter >= params.dtc * det_len - 1e-9
        n_fp = int((~ok).sum())
        if n_ref:
            good = np.zeros(len(lengths) + 1)
            np.add.at(good, starts[ok], 1.0)
            np.add.at(good, stops[ok], -1.0)
            passing = np.cumsum(good)[:-1] > 0.5
            hit = np.bincount(gt_index, weights=gt_weight * passing[gt_frame], minlength=n_ref)
            n_tp = int(((hit >= params.gtc * gt_len - 1e-9) & (gt_len > 0)).sum())
        else:
            n_tp = 0
        fpr = n_fp / total_seconds * SECONDS_PER_HOUR
        if use_ct:
            fs, fe, fl = starts[~ok], stops[~ok], det_len[~ok]
            rates = []
            for j in others:
                ct = int(((cum_other[j][fe] - cum_other[j][fs]) >= params.cttc * fl - 1e-9).sum())
                rates.append(ct / max(ref_seconds[j], 1e-12) * SECONDS_PER_HOUR)
            fpr += params.alpha_ct * float(np.mean(rates))
        tpr.append(n_tp / max(n_ref, 1))
        efpr.append(fpr)
    return np.array(tpr), np.array(efpr)


def _monotone(tpr: np.ndarray, efpr: np.ndarray, max_efpr: float) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct eFPR <= max_efpr, the best TPR reachable at that eFPR or lower."""
    order = np.lexsort((tpr, efpr))
    tpr, efpr = np.maximum.accumulate(tpr[order]), efpr[order]
    x, idx = np.unique(efpr[::-1], return_index=True)
    y = tpr[::-1][idx]
    keep = x <= max_efpr
    return y[keep], x[keep]


def psds(
    reference: Sequence[RefEvent],
    scores: Mapping[str, FileScores],
    params: PsdsParams = PSDS1,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Polyphonic sound detection score from framewise scores (see the module docstring).

    Args:
        reference: reference events; files are matched to ``scores`` by :func:`file_key`.
        scores: per file key, the framewise scores in the reference vocabulary (all files must
            list the same classes in the same order). Their durations make the total duration.
        params: the scenario (:data:`PSDS1`, :data:`PSDS2` or custom).
        classes: the classes to score (default: the score classes that occur in the reference).

    Returns:
        ``{"psds": float, "roc": {"efpr": [...], "tpr": [...]}, "class_roc": {c: {...}},
        "params": {...}, "classes": [...]}``. ``psds`` is NaN when no class has references.
    """
    files = [scores[k] for k in sorted(scores)]
    if not files:
        raise ValueError("no scores to evaluate")
    all_classes = files[0].classes
    if any(f.classes != all_classes for f in files):
        raise ValueError("every file's scores must list the same classes")
    refs = [e for e in reference if file_key(e.file) in scores and e.label in all_classes]
    present = {e.label for e in refs}
    wanted = [c for c in (classes or all_classes) if c in present]
    result: dict[str, Any] = {"params": asdict(params), "classes": wanted}
    if not wanted:
        return {**result, "psds": math.nan, "roc": {"efpr": [], "tpr": []}, "class_roc": {}}

    edges = [f.edges() for f in files]
    lengths = np.concatenate([np.diff(e) for e in edges])
    matrix = np.concatenate([f.scores for f in files]).astype(np.float64)
    offsets = np.cumsum([0] + [len(f.scores) for f in files])[:-1]
    breaks = np.zeros(len(lengths), dtype=bool)
    breaks[offsets.clip(max=len(lengths) - 1)] = True
    total_seconds = float(sum(f.duration for f in files))
    by_file: dict[str, list[RefEvent]] = {}
    for e in refs:
        by_file.setdefault(file_key(e.file), []).append(e)
    keys = sorted(scores)
    cov = np.stack(
        [
            np.concatenate(
                [
                    _coverage(ed, [e for e in by_file.get(key, []) if e.label == c])
                    for key, ed in zip(keys, edges, strict=True)
                ]
            )
            for c in all_classes
        ],
        axis=1,
    )
    ref_seconds = np.array(
        [sum(e.offset - e.onset for e in refs if e.label == c) for c in all_classes]
    )

    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in wanted:
        k = all_classes.index(c)
        index: list[np.ndarray]
        index, frame, weight = [], [], []
        for key, ed, first in zip(keys, edges, offsets, strict=True):
            for e in by_file.get(key, []):
                if e.label == c:
                    covered = _coverage(ed, [e])
                    nz = np.flatnonzero(covered)
                    index.append(np.full(len(nz), len(index)))
                    frame.append(nz + first)
                    weight.append(covered[nz])
        sparse = (
            np.concatenate(index or [np.zeros(0)]).astype(np.int64),
            np.concatenate(frame or [np.zeros(0)]).astype(np.int64),
            np.concatenate(weight or [np.zeros(0)]),
        )
        tpr, efpr = _class_roc(
            k, matrix, lengths, breaks, cov, sparse, len(index), ref_seconds, total_seconds, params
        )
        curves[c] = _monotone(tpr, efpr, params.max_efpr)

    grid = np.unique(np.concatenate([x for _, x in curves.values()]))
    stacked = []
    for y, x in curves.values():
        pos = np.searchsorted(x, grid, side="right") - 1  # "previous" interpolation
        stacked.append(np.where(pos >= 0, y[pos.clip(min=0)], 0.0))
    tprs = np.array(stacked)
    roc = np.maximum(tprs.mean(0) - params.alpha_st * tprs.std(0), 0.0)
    x = np.append(grid, params.max_efpr)
    y = np.append(roc, roc[-1])
    area = float(np.sum(y[:-1] * np.diff(x)))
    return {
        **result,
        "psds": area / params.max_efpr,
        "roc": {"efpr": x.tolist(), "tpr": y.tolist()},
        "class_roc": {
            c: {"efpr": x_.tolist(), "tpr": y_.tolist()} for c, (y_, x_) in curves.items()
        },
    }
