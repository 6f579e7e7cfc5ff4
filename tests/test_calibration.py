"""Threshold calibration of custom classes: detection scores agree with the event extractor,
and thresholds sit in the middle of the best-F1 range."""

from __future__ import annotations

import numpy as np
import pytest

from earmark.custom.calibration import (
    THRESHOLD_LIMITS,
    UNCALIBRATED_THRESHOLD,
    background_segments,
    calibrate_thresholds,
    detection_scores,
    thresholds_of,
)
from earmark.events import PostprocessOptions, scores_to_events
from earmark.labels import Label

LABELS = [Label(index=i, mid=f"custom:c{i}", name=f"c{i}") for i in range(3)]


@pytest.mark.parametrize("seed", range(20))
def test_detection_score_is_the_highest_threshold_that_detects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(2, 40))
    scores = (rng.random((frames, 3)) ** rng.uniform(0.3, 3.0)).astype(np.float32)
    best = detection_scores(scores, hop=0.32)
    for c, value in enumerate(best):
        below = PostprocessOptions(threshold=max(float(value) - 1e-4, 1e-4))
        above = PostprocessOptions(threshold=min(float(value) + 1e-4, 1.0))
        found_below = {e.label for e in scores_to_events(scores, 0.32, LABELS, below)}
        found_above = {e.label for e in scores_to_events(scores, 0.32, LABELS, above)}
        assert f"c{c}" in found_below, (c, value)
        if value + 1e-4 <= 1.0:
            assert f"c{c}" not in found_above, (c, value)


def test_threshold_in_the_middle_of_the_best_f1_range() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [-1] * 10)
    scores = np.zeros((30, 2))
    scores[:10, 0] = np.linspace(0.7, 0.9, 10)  # class 0: positives 0.7-0.9
    scores[10:, 0] = np.linspace(0.1, 0.3, 20)  # negatives up to 0.3: any cut in (0.3, 0.7]
    scores[10:20, 1] = np.linspace(0.4, 0.95, 10)  # class 1 overlaps its negatives
    scores[np.r_[0:10, 20:30], 1] = np.linspace(0.05, 0.6, 20)
    result = calibrate_thresholds(scores, labels, ["a", "b"], mixed=True)
    a, b = result["classes"]["a"], result["classes"]["b"]
    assert a["best_range"] == [0.31, 0.7] and a["threshold"] == pytest.approx(0.5, abs=0.011)
    assert a["f1"] == 1.0 and a["positives"] == 10 and a["negatives"] == 20
    assert b["f1"] < 1.0 and THRESHOLD_LIMITS[0] <= b["threshold"] <= THRESHOLD_LIMITS[1]
    # the chosen threshold reaches the best F1 of the grid
    grid = np.arange(0.05, 0.951, 0.01)
    pos, neg = scores[labels == 1, 1], scores[labels != 1, 1]
    f1s = [2 * (pos >= t).sum() / ((pos >= t).sum() + (neg >= t).sum() + len(pos)) for t in grid]
    assert b["f1"] == pytest.approx(max(f1s), abs=1e-4)
    assert thresholds_of(result, ["a", "b"]) == {"a": a["threshold"], "b": b["threshold"]}


def test_clean_clip_calibration_is_not_used_for_detection() -> None:
    scores = np.array([[0.9], [0.1]])
    clean = calibrate_thresholds(scores, np.array([0, -1]), ["a"], mixed=False)
    assert thresholds_of(clean, ["a"]) == {"a": UNCALIBRATED_THRESHOLD}
    assert thresholds_of(None, ["a", "b"]) == {"a": 0.5, "b": 0.5}


def test_background_segments_are_spread_and_bounded() -> None:
    backgrounds = [np.arange(32000 * 61, dtype=np.float32), np.zeros(32000 * 3, np.float32)]
    segments = background_segments(backgrounds, seconds=5.0, limit=4)
    assert len(segments) == 4 and all(len(s) == 160000 for s in segments)
    starts = [int(s[0]) for s in segments]
    assert starts[0] == 0 and starts[-1] == 11 * 160000  # first and last of 12 segments
