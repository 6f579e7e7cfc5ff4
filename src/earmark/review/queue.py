"""The order of the review queue: the decisions that would teach the model most come first.

Three signs that a detection is worth a look, summed into one priority
(:func:`priorities`):

* **uncertainty**: its peak score is close to its class's threshold, measured in log-odds
  (``exp(-|logit(peak) - logit(threshold)|)``: 1 at the threshold, 0.37 one log-odd away);
* **disagreement**: the AudioSet model and the custom classes disagree on it (a custom event
  no AudioSet event overlaps, or the reverse, when the run has both kinds), or another label
  scored almost as high for the same sound (its alternatives);
* **rarity**: its class has few reviewed examples yet (``1 / (1 + reviewed)``), so that every
  class gets examples early.

:func:`random_order` is the baseline the benchmark compares with (``benchmarks/
active_learning.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from earmark.review.run import Detection

WEIGHTS = {"uncertainty": 1.0, "disagreement": 0.5, "rarity": 0.5}
"""How much each sign counts in the priority."""
CLOSE_ALTERNATIVE = 0.8
"""An alternative label scoring at least this share of the event's peak is a disagreement."""


@dataclass(frozen=True)
class Priority:
    """Why a detection is where it is in the queue."""

    id: str
    priority: float
    uncertainty: float
    disagreement: float
    rarity: float

    def as_dict(self) -> dict[str, float | str]:
        """JSON form for the page."""
        return {
            "id": self.id,
            "priority": round(self.priority, 4),
            "uncertainty": round(self.uncertainty, 4),
            "disagreement": round(self.disagreement, 4),
            "rarity": round(self.rarity, 4),
        }


def logit(p: float) -> float:
    """Log-odds of a probability (clipped away from 0 and 1)."""
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def uncertainty(peak: float, threshold: float) -> float:
    """1 at the threshold, falling with the log-odds distance from it."""
    return math.exp(-abs(logit(peak) - logit(threshold)))


def disagreements(detections: Sequence[Detection]) -> dict[str, float]:
    """Per detection id: 1 when the AudioSet and custom detections of the run disagree on it
    (see the module docstring), 0.5 when only a close alternative label disagrees, else 0."""
    by_file: dict[str, list[Detection]] = {}
    for d in detections:
        by_file.setdefault(d.file, []).append(d)
    out = {}
    for found in by_file.values():
        both = any(d.custom for d in found) and any(not d.custom for d in found)
        for d in found:
            score = 0.0
            if any(peak >= CLOSE_ALTERNATIVE * d.peak for _, peak in d.alternatives):
                score = 0.5
            if both and not any(
                o.custom != d.custom and o.onset < d.offset and o.offset > d.onset for o in found
            ):
                score = 1.0
            out[d.id] = score
    return out


def priorities(
    detections: Sequence[Detection],
    reviewed_per_class: Mapping[str, int],
    disagreement: Mapping[str, float] | None = None,
) -> list[Priority]:
    """The detections' priorities, highest first (ties: file, then time).

    ``disagreement`` overrides :func:`disagreements` (e.g. a benchmark's own comparison with
    the AudioSet model).
    """
    found = disagreements(detections) if disagreement is None else disagreement
    rows = []
    for d in detections:
        u = uncertainty(d.peak, d.threshold)
        g = float(found.get(d.id, 0.0))
        r = 1.0 / (1.0 + reviewed_per_class.get(d.label, 0))
        total = WEIGHTS["uncertainty"] * u + WEIGHTS["disagreement"] * g + WEIGHTS["rarity"] * r
        rows.append((Priority(d.id, total, u, g, r), d))
    rows.sort(key=lambda pair: (-pair[0].priority, pair[1].file, pair[1].onset))
    return [p for p, _ in rows]


def random_order(detections: Sequence[Detection], seed: int) -> list[str]:
    """The detections' ids in a seeded random order (the baseline)."""
    order = np.random.default_rng(seed).permutation(len(detections))
    return [detections[int(i)].id for i in order]
