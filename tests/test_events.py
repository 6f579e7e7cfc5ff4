"""Framewise scores to events: every post-processing knob on hand-built score matrices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from earmark.events import (
    DEFAULT_THRESHOLD,
    OFF_RATIO,
    Event,
    PostprocessOptions,
    median_kernel_frames,
    scores_to_events,
)
from earmark.labels import Label, Ontology, load_labels

HOP = 0.25  # exact in binary: times below compare exactly
ABC = [Label(0, "/m/a", "Alpha"), Label(1, "/m/b", "Bravo"), Label(2, "/m/c", "Charlie")]


@pytest.fixture(scope="module")
def labels(model_dir: Path) -> list[Label]:
    return load_labels(model_dir / "class_labels_indices.csv")


@pytest.fixture(scope="module")
def ontology(model_dir: Path) -> Ontology:
    return Ontology.from_json(model_dir / "ontology.json")


def raw_options(**options) -> PostprocessOptions:
    """Options without the default smoothing, so that each test isolates the knob it sets."""
    return PostprocessOptions(**{"median_filter": 0.0, "merge_gap": 0.0, **options})


def matrix(*columns: list[float]) -> np.ndarray:
    """A (frames, classes) float32 matrix from per-class columns (padded with zeros)."""
    frames = max(len(c) for c in columns)
    out = np.zeros((frames, len(columns)), dtype=np.float32)
    for j, col in enumerate(columns):
        out[: len(col), j] = col
    return out


def spans(events: list[Event]) -> list[tuple[str, float, float]]:
    return [(e.label, e.onset, e.offset) for e in events]


def run(columns, **options) -> list[Event]:
    scores = matrix(*columns)
    return scores_to_events(scores, HOP, ABC[: scores.shape[1]], raw_options(**options))


def real_scores(labels: list[Label], frames: int, **values: list[float]) -> np.ndarray:
    """(frames, 527) zeros with the named classes set (underscores for spaces)."""
    scores = np.zeros((frames, len(labels)), dtype=np.float32)
    by_name = {lab.name: lab.index for lab in labels}
    for name, col in values.items():
        scores[: len(col), by_name[name.replace("_", " ")]] = col
    return scores


# -- basics -----------------------------------------------------------------------------


def test_defaults():
    assert DEFAULT_THRESHOLD == 0.15
    assert OFF_RATIO == 0.5
    options = PostprocessOptions()
    assert options.threshold == DEFAULT_THRESHOLD
    assert options.off_for(0.5) == pytest.approx(0.25)
    assert options.median_filter == 0.96 and options.merge_gap == 0.64
    assert options.min_duration == 0.0


def test_single_event_times_and_confidences():
    events = scores_to_events(
        matrix([0, 0, 0.5, 0.6, 0.4, 0, 0]), HOP, ABC[:1], raw_options(), file="rec.wav"
    )
    assert len(events) == 1
    ev = events[0]
    assert (ev.file, ev.label, ev.mid) == ("rec.wav", "Alpha", "/m/a")
    assert (ev.onset, ev.offset) == (0.5, 1.25)
    assert ev.duration == 0.75
    assert ev.peak == pytest.approx(0.6, abs=1e-7)
    assert ev.mean == pytest.approx(0.5, abs=1e-7)
    assert ev.to_dict() == {
        "file": "rec.wav",
        "label": "Alpha",
        "mid": "/m/a",
        "onset": 0.5,
        "offset": 1.25,
        "duration": 0.75,
        "peak": 0.6,
        "mean": 0.5,
        "alternatives": [],
    }


def test_to_dict_rounds():
    ev = Event("f", "L", "/m/x", 0.32 * 3, 0.32 * 7, 0.123456, 2 / 3)
    d = ev.to_dict()
    assert (d["onset"], d["offset"], d["duration"]) == (0.96, 2.24, 1.28)
    assert (d["peak"], d["mean"]) == (0.1235, 0.6667)


def test_threshold_is_inclusive_and_exact_in_float32():
    # 0.7 is not exact in float32: a score stored as float32(0.7) still reaches 0.7
    events = run([[0, 0.7, 0.69, 0]], threshold=0.7, off_threshold=0.7)
    assert spans(events) == [("Alpha", 0.25, 0.5)]
    assert run([[0.29, 0.29]], threshold=0.3) == []


def test_threshold_value_changes_result():
    col = [0, 0.35, 0.35, 0, 0.55, 0]
    assert spans(run([col])) == [("Alpha", 0.25, 0.75), ("Alpha", 1.0, 1.25)]
    assert spans(run([col], threshold=0.5)) == [("Alpha", 1.0, 1.25)]


def test_per_class_threshold_by_name_and_mid():
    cols = ([0, 0.4, 0], [0, 0.4, 0], [0, 0.4, 0])
    assert [e.label for e in run(cols)] == ["Alpha", "Bravo", "Charlie"]
    events = run(cols, thresholds={"bravo": 0.5, "/m/c": 0.45})
    assert [e.label for e in events] == ["Alpha"]
    events = run(cols, threshold=0.9, thresholds={"ALPHA": 0.35})
    assert [e.label for e in events] == ["Alpha"]


def test_unknown_threshold_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown class 'Alhpa'\. Did you mean: 'Alpha'"):
        run([[0.5]], thresholds={"Alhpa": 0.5})


# -- hysteresis -------------------------------------------------------------------------


def test_hysteresis_keeps_event_through_dip():
    col = [0, 0.5, 0.3, 0.5, 0]
    # the dip (0.3) is below "on" (0.4) but above "off" (0.2): one event
    assert spans(run([col], threshold=0.4, off_threshold=0.2)) == [("Alpha", 0.25, 1.0)]
    # without hysteresis the dip splits it
    assert spans(run([col], threshold=0.4, off_threshold=0.4)) == [
        ("Alpha", 0.25, 0.5),
        ("Alpha", 0.75, 1.0),
    ]


def test_hysteresis_extends_event_on_both_sides():
    col = [0.1, 0.25, 0.5, 0.25, 0.1]
    assert spans(run([col], threshold=0.4, off_threshold=0.2)) == [("Alpha", 0.25, 1.0)]


def test_hysteresis_needs_an_on_frame():
    assert run([[0, 0.35, 0.39, 0.35, 0]], threshold=0.4, off_threshold=0.2) == []


def test_default_off_threshold_uses_off_ratio():
    on = 0.5
    above, below = on * OFF_RATIO + 0.01, on * OFF_RATIO - 0.01
    assert spans(run([[0, 0.6, above, 0.6, 0]], threshold=on)) == [("Alpha", 0.25, 1.0)]
    assert len(run([[0, 0.6, below, 0.6, 0]], threshold=on)) == 2
    # per-class on thresholds get their own off threshold
    events = run([[0, 0.6, 0.25, 0.6]], threshold=0.9, thresholds={"Alpha": 0.4})
    assert spans(events) == [("Alpha", 0.25, 1.0)]  # off = 0.4 * OFF_RATIO = 0.2


def test_off_above_on_is_an_error():
    with pytest.raises(ValueError, match=r"off_threshold 0\.5 is above the on threshold"):
        raw_options(threshold=0.4, off_threshold=0.5).validate()
    with pytest.raises(ValueError, match=r"thresholds\['Dog'\] = 0.2"):
        raw_options(threshold=0.3, off_threshold=0.25, thresholds={"Dog": 0.2}).validate()
    with pytest.raises(ValueError, match="off_threshold"):
        run([[0.5]], threshold=0.4, off_threshold=0.5)


# -- median filter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "hop", "frames"),
    [(0.0, 0.32, 1), (0.3, 0.32, 1), (0.5, 0.32, 1), (0.64, 0.32, 3), (1.0, 0.32, 3),
     (1.25, 0.32, 3), (1.28, 0.32, 5), (0.8, 0.16, 5), (0.75, 0.25, 3), (1.0, 0.25, 5)],
)  # fmt: skip
def test_median_kernel_frames(seconds, hop, frames):
    assert median_kernel_frames(seconds, hop) == frames


def test_median_filter_removes_spike():
    col = [0, 0, 0, 0.9, 0, 0, 0]
    assert len(run([col])) == 1
    assert run([col], median_filter=3 * HOP) == []


def test_median_filter_fills_hole():
    col = [0, 0, 0.9, 0.9, 0.9, 0, 0.9, 0.9, 0.9, 0, 0]
    assert len(run([col])) == 2
    events = run([col], median_filter=3 * HOP)
    assert spans(events) == [("Alpha", 0.5, 2.25)]
    # confidences come from the raw scores, hole included
    assert events[0].peak == pytest.approx(0.9, abs=1e-7)
    assert events[0].mean == pytest.approx(0.9 * 6 / 7, abs=1e-6)


def test_median_filter_mirrors_the_ends():
    # a spike or a hole in the first or last frame is treated like any other
    assert run([[0.9, 0, 0, 0, 0]], median_filter=3 * HOP) == []
    assert run([[0, 0, 0, 0, 0.9]], median_filter=3 * HOP) == []
    assert spans(run([[0.9, 0.9, 0, 0, 0]], median_filter=3 * HOP)) == [("Alpha", 0.0, 0.5)]
    # (mirrored, a 1-frame hole before a sound at the very start is filled too)
    assert spans(run([[0, 0.9, 0.9, 0.9]], median_filter=3 * HOP)) == [("Alpha", 0.0, 1.0)]
    assert spans(run([[0.9]], median_filter=3 * HOP)) == [("Alpha", 0.0, 0.25)]


# -- merging and minimum duration -------------------------------------------------------


def test_merge_gap():
    col = [0.9, 0.9, 0, 0.9, 0, 0, 0.9]
    assert len(run([col])) == 3
    # the gaps are 1 frame (0.25 s) then 2 frames (0.5 s)
    assert spans(run([col], merge_gap=0.25)) == [("Alpha", 0.0, 1.0), ("Alpha", 1.5, 1.75)]
    assert spans(run([col], merge_gap=0.2)) == spans(run([col]))
    assert spans(run([col], merge_gap=0.5)) == [("Alpha", 0.0, 1.75)]
    merged = run([col], merge_gap=0.5)[0]
    assert merged.mean == pytest.approx(0.9 * 4 / 7, abs=1e-6)  # gap frames count


def test_merge_gap_only_within_a_class():
    events = run([[0.9, 0, 0, 0], [0, 0, 0.9, 0]], merge_gap=1.0)
    assert spans(events) == [("Alpha", 0.0, 0.25), ("Bravo", 0.5, 0.75)]


def test_min_duration():
    col = [0.9, 0, 0.9, 0.9, 0, 0.9, 0.9, 0.9]
    assert len(run([col])) == 3
    assert spans(run([col], min_duration=0.5)) == [("Alpha", 0.5, 1.0), ("Alpha", 1.25, 2.0)]
    assert spans(run([col], min_duration=0.51)) == [("Alpha", 1.25, 2.0)]


def test_min_duration_applies_after_merging():
    col = [0.9, 0, 0.9]
    assert run([col], min_duration=0.75) == []
    assert spans(run([col], min_duration=0.75, merge_gap=0.25)) == [("Alpha", 0.0, 0.75)]


# -- several classes, sorting, duration -------------------------------------------------


def test_overlapping_classes_all_reported_sorted():
    cols = ([0, 0, 0.9, 0.9, 0.9], [0, 0.9, 0.9, 0, 0], [0, 0, 0.9, 0, 0])
    assert spans(run(cols)) == [
        ("Bravo", 0.25, 0.75),
        ("Alpha", 0.5, 1.25),
        ("Charlie", 0.5, 0.75),
    ]


def test_offset_clipped_to_duration():
    scores = matrix([0, 0, 0, 0.9, 0.9], [0, 0, 0, 0, 0.9])
    # the last frame covers [1.0, 1.25) but the file ends at 1.1
    events = scores_to_events(scores, HOP, ABC[:2], raw_options(), duration=1.1)
    assert spans(events) == [("Alpha", 0.75, 1.1), ("Bravo", 1.0, 1.1)]
    events = scores_to_events(scores, HOP, ABC[:2], raw_options())
    assert spans(events) == [("Alpha", 0.75, 1.25), ("Bravo", 1.0, 1.25)]


def test_duration_drops_events_after_the_end_and_clips_before_min_duration():
    scores = matrix([0, 0, 0, 0.9, 0.9])
    assert scores_to_events(scores, HOP, ABC[:1], raw_options(), duration=0.75) == []
    options = raw_options(min_duration=0.4)
    assert scores_to_events(scores, HOP, ABC[:1], options, duration=1.1) == []
    assert len(scores_to_events(scores, HOP, ABC[:1], options, duration=1.2)) == 1


def test_hop_032_times():
    scores = np.zeros((10, 1), dtype=np.float32)
    scores[3:6, 0] = 0.8
    [ev] = scores_to_events(scores, 0.32, ABC[:1], raw_options(), duration=3.0)
    assert ev.onset == pytest.approx(0.96)
    assert ev.offset == pytest.approx(1.92)
    assert ev.to_dict()["duration"] == 0.96


def test_empty_and_all_zero_scores():
    assert scores_to_events(np.zeros((0, 3), dtype=np.float32), HOP, ABC) == []
    assert scores_to_events(np.zeros((1000, 3), dtype=np.float32), HOP, ABC) == []
    assert scores_to_events(np.zeros((10, 0), dtype=np.float32), HOP, []) == []


def test_float64_input_and_event_reaching_the_end():
    scores = np.array([[0.0], [0.5], [0.5]], dtype=np.float64)
    assert spans(scores_to_events(scores, HOP, ABC[:1], raw_options())) == [("Alpha", 0.25, 0.75)]


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        scores_to_events(np.zeros((5, 2)), HOP, ABC)
    with pytest.raises(ValueError, match="hop"):
        scores_to_events(np.zeros((5, 3)), 0.0, ABC)
    with pytest.raises(ValueError, match="duration"):
        scores_to_events(np.zeros((5, 3)), HOP, ABC, duration=-1.0)
    nan = np.zeros((5, 3))
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*'Bravo'"):
        scores_to_events(nan, HOP, ABC, raw_options())
    with pytest.raises(ValueError, match="group_by needs an ontology"):
        scores_to_events(np.zeros((5, 3)), HOP, ABC, raw_options(group_by="top"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"thresholds": {"Dog": 2.0}}, r"thresholds\['Dog'\] must be in"),
        ({"off_threshold": 0.0}, "off_threshold must be in"),
        ({"median_filter": -1.0}, "median_filter must be a finite number"),
        ({"min_duration": math.nan}, "min_duration must be a finite number"),
        ({"merge_gap": math.inf}, "merge_gap must be a finite number"),
        ({"labels": [""]}, "labels must be a list"),
        ({"exclude": [3]}, "exclude must be a list"),
        ({"group_by": "grandparent"}, "invalid group level"),
    ],
)
def test_validate(options, message):
    with pytest.raises(ValueError, match=message):
        raw_options(**options).validate()


def test_validate_accepts_good_values():
    raw_options(
        threshold=1.0,
        thresholds={"Dog": 0.5},
        off_threshold=0.5,
        median_filter=1.0,
        labels="Dog",
        group_by="2",
    ).validate()
    assert raw_options(labels="Dog").labels == ["Dog"]


# -- label selection and grouping with the real ontology --------------------------------


def test_labels_with_descendants(labels, ontology):
    scores = real_scores(labels, 3, Dog=[0.9], Bark=[0, 0.9], Speech=[0, 0, 0.9])
    options = raw_options(labels=["Animal"])
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert spans(events) == [("Dog", 0.0, 0.25), ("Bark", 0.25, 0.5)]
    # without the ontology "Dog" is just Dog
    events = scores_to_events(scores, HOP, labels, raw_options(labels=["Dog"]))
    assert spans(events) == [("Dog", 0.0, 0.25)]


def test_exclude_with_descendants(labels, ontology):
    scores = real_scores(labels, 3, Dog=[0.9], Bark=[0, 0.9], Speech=[0, 0, 0.9])
    options = raw_options(exclude=["dog"])
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert spans(events) == [("Speech", 0.5, 0.75)]
    events = scores_to_events(scores, HOP, labels, options)  # no ontology: Bark stays
    assert spans(events) == [("Bark", 0.25, 0.5), ("Speech", 0.5, 0.75)]
    options = raw_options(labels=["Animal"], exclude=["Bark"])
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert spans(events) == [("Dog", 0.0, 0.25)]


def test_unknown_label_selection(labels, ontology):
    with pytest.raises(ValueError, match="Did you mean: 'Animal'"):
        scores_to_events(
            np.zeros((2, 527)), HOP, labels, raw_options(labels=["Animl"]), ontology=ontology
        )


def test_group_by_parent_dog(labels, ontology):
    scores = real_scores(labels, 4, Dog=[0.9, 0.9], Cat=[0, 0, 0.6])
    options = raw_options(group_by="parent")
    events = scores_to_events(scores, HOP, labels, options, file="a.wav", ontology=ontology)
    # "Dog" group = Dog and its children; "Domestic animals, pets" = Dog, Cat and itself
    assert spans(events) == [
        ("Dog", 0.0, 0.5),
        ("Domestic animals, pets", 0.0, 0.75),
        ("Cat", 0.5, 0.75),
    ]
    pets = events[1]
    assert pets.mid == "/m/068hy"
    assert pets.peak == pytest.approx(0.9, abs=1e-7)
    assert pets.mean == pytest.approx(0.8, abs=1e-6)


def test_group_by_depth_1_car_is_vehicle(labels, ontology):
    scores = real_scores(labels, 3, Car=[0, 0.8, 0.8])
    options = raw_options(group_by="1")
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert [(e.label, e.mid, e.onset, e.offset) for e in events] == [
        ("Vehicle", "/m/07yv9", 0.25, 0.75)
    ]


def test_group_by_top_speech_is_human_sounds(labels, ontology):
    scores = real_scores(labels, 3, Speech=[0.7, 0.7], Hiss=[0, 0, 0.5])
    options = raw_options(group_by="top")
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert spans(events) == [
        ("Human sounds", 0.0, 0.5),
        ("Animal", 0.5, 0.75),
        ("Natural sounds", 0.5, 0.75),
        ("Source-ambiguous sounds", 0.5, 0.75),
    ]


def test_group_thresholds_refer_to_groups(labels, ontology):
    scores = real_scores(labels, 2, Speech=[0.5, 0.5])
    options = raw_options(group_by="top", thresholds={"Human sounds": 0.6})
    assert scores_to_events(scores, HOP, labels, options, ontology=ontology) == []
    # a key for a class that exists but is grouped away is accepted and ignored
    options = raw_options(group_by="top", thresholds={"Speech": 0.9})
    assert len(scores_to_events(scores, HOP, labels, options, ontology=ontology)) == 1


def test_group_after_selection(labels, ontology):
    scores = real_scores(labels, 2, Dog=[0.9], Cat=[0, 0.9])
    options = raw_options(group_by="parent", labels=["Domestic animals, pets"], exclude=["Cat"])
    events = scores_to_events(scores, HOP, labels, options, ontology=ontology)
    assert spans(events) == [("Dog", 0.0, 0.25), ("Domestic animals, pets", 0.0, 0.25)]


# -- equivalence with a plain loop implementation ---------------------------------------


def reference_events(scores, hop, names, on, off, kernel, merge_frames, min_seconds):
    """Straightforward per-class loops, scipy's float median filter."""
    out = []
    for c, name in enumerate(names):
        raw = scores[:, c]
        filt = ndimage.median_filter(raw, size=kernel, mode="mirror") if kernel > 1 else raw
        runs, t = [], 0
        while t < len(filt):
            if filt[t] >= np.float32(off):
                a = t
                while t < len(filt) and filt[t] >= np.float32(off):
                    t += 1
                if (filt[a:t] >= np.float32(on)).any():
                    runs.append([a, t])
            else:
                t += 1
        merged = []
        for a, b in runs:
            if merged and a - merged[-1][1] <= merge_frames:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            if (b - a) * hop >= min_seconds - 1e-9:
                seg = raw[a:b].astype(np.float64)
                out.append((a * hop, name, b * hop, float(seg.max()), float(seg.mean())))
    return sorted(out)


@pytest.mark.parametrize(
    ("median", "merge", "min_dur"),
    [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.6, 0.64, 0.96), (6.0, 0.32, 0.0), (0.0, 1.0, 0.64)],
)
def test_matches_reference_implementation(median, merge, min_dur):
    rng = np.random.default_rng(7)
    frames, classes, hop = 3000, 12, 0.32
    noise = rng.standard_normal((frames, classes))
    smooth = ndimage.uniform_filter1d(noise, 5, axis=0) * 2.0
    scores = (1 / (1 + np.exp(-(3 * smooth - 1.5)))).astype(np.float32)
    labels = [Label(i, f"/m/x{i}", f"class {i:02d}") for i in range(classes)]
    options = raw_options(
        threshold=0.4,
        thresholds={"class 03": 0.7},
        median_filter=median,
        merge_gap=merge,
        min_duration=min_dur,
    )
    events = scores_to_events(scores, hop, labels, options)
    on = [0.7 if i == 3 else 0.4 for i in range(classes)]
    kernel = median_kernel_frames(median, hop)
    expected = []
    for i in range(classes):
        expected += reference_events(
            scores[:, i : i + 1],
            hop,
            [labels[i].name],
            on[i],
            on[i] * OFF_RATIO,
            kernel,
            math.floor(merge / hop + 1e-9),
            min_dur,
        )
    expected.sort()
    assert len(events) > 50
    assert [(e.onset, e.label, e.offset) for e in events] == [e[:3] for e in expected]
    np.testing.assert_allclose([e.peak for e in events], [e[3] for e in expected], atol=1e-7)
    np.testing.assert_allclose([e.mean for e in events], [e[4] for e in expected], atol=1e-6)


def test_long_kernel_matches_scipy_median():
    # kernels above 15 frames take the running-sum path
    rng = np.random.default_rng(11)
    scores = rng.random((2000, 3)).astype(np.float32)
    options = raw_options(threshold=0.5, off_threshold=0.5, median_filter=17 * HOP)
    events = scores_to_events(scores, HOP, ABC, options)
    expected = []
    for i in range(3):
        expected += reference_events(scores[:, i : i + 1], HOP, [ABC[i].name], 0.5, 0.5, 17, 0, 0)
    assert [(e.onset, e.label, e.offset) for e in events] == [e[:3] for e in sorted(expected)]
    assert len(events) > 5


# -- per-class median filters and minimum durations --------------------------------------
def test_per_class_median_filter_and_min_duration() -> None:
    """Alpha and Bravo have the same one-frame spike and a three-frame event; a per-class
    median filter removes Bravo's spike only, a per-class minimum duration drops Alpha's
    spike only; a key naming no class is an error."""
    column = [0, 0, 0.9, 0, 0, 0.9, 0.9, 0.9, 0, 0]
    both = run([column, column])
    assert spans(both) == [
        ("Alpha", 2 * HOP, 3 * HOP), ("Bravo", 2 * HOP, 3 * HOP),
        ("Alpha", 5 * HOP, 8 * HOP), ("Bravo", 5 * HOP, 8 * HOP),
    ]  # fmt: skip
    filtered = run([column, column], median_filters={"Bravo": 0.96})
    assert spans(filtered) == [
        ("Alpha", 2 * HOP, 3 * HOP),
        ("Alpha", 5 * HOP, 8 * HOP),
        ("Bravo", 5 * HOP, 8 * HOP),
    ]
    assert spans(run([column, column], median_filters={"/m/b": 0.96})) == spans(filtered)
    longer = run([column, column], min_durations={"alpha": 2 * HOP})
    assert spans(longer) == [
        ("Bravo", 2 * HOP, 3 * HOP),
        ("Alpha", 5 * HOP, 8 * HOP),
        ("Bravo", 5 * HOP, 8 * HOP),
    ]
    with pytest.raises(ValueError, match="median_filters: unknown class 'Zulu'"):
        run([column], median_filters={"Zulu": 0.96})
    with pytest.raises(ValueError, match=r"min_durations\['Alpha'\]"):
        run([column], min_durations={"Alpha": -1.0})
