"""Event- and segment-based metrics on hand-computed cases, readers, and the label map."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from earmark.evaluation import (
    RefEvent,
    drop_labels,
    event_based_metrics,
    file_key,
    load_label_map,
    load_reference,
    map_predictions,
    segment_based_metrics,
    validate_label_map,
)

R = RefEvent


def _overall(ref, pred, **kw):
    return event_based_metrics(ref, pred, **kw)["overall"]


# ---------------------------------------------------------------------------------------------
# Event-based


def test_perfect_match_and_reference_against_itself():
    ref = [
        R("a.wav", 0.5, 2.0, "dog"),
        R("a.wav", 1.0, 3.5, "rain"),
        R("a.wav", 4.0, 4.3, "dog"),
        R("b.wav", 0.0, 10.0, "rain"),
    ]
    ev = event_based_metrics(ref, list(ref))
    assert ev["overall"]["f1"] == 1.0
    assert ev["overall"]["error_rate"] == 0.0
    assert (ev["overall"]["Ntp"], ev["overall"]["Nfp"], ev["overall"]["Nfn"]) == (4, 0, 0)
    assert ev["macro"]["f1"] == 1.0
    assert ev["class_wise"]["dog"]["Ntp"] == 2
    seg = segment_based_metrics(ref, list(ref))
    assert seg["overall"]["f1"] == 1.0 and seg["overall"]["error_rate"] == 0.0


def test_onset_outside_collar_is_no_match():
    ref = [R("a", 1.0, 3.0, "dog")]
    off = _overall(ref, [R("a", 1.25, 3.0, "dog")], t_collar=0.2)
    assert off["Ntp"] == 0 and off["f1"] == 0.0
    # no match: one deletion and one insertion, ER = 2
    assert (off["D"], off["I"], off["S"]) == (1, 1, 0)
    assert off["error_rate"] == pytest.approx(2.0)
    inside = _overall(ref, [R("a", 1.15, 3.0, "dog")], t_collar=0.2)
    assert inside["Ntp"] == 1
    # onset not evaluated: only the offset counts
    assert _overall(ref, [R("a", 2.0, 3.0, "dog")], evaluate_onset=False)["Ntp"] == 1


def test_offset_collar_uses_percentage_of_long_events():
    long_ref = [R("a", 0.0, 10.0, "rain")]  # offset tolerance max(0.2, 0.2 * 10) = 2.0 s
    assert _overall(long_ref, [R("a", 0.1, 11.9, "rain")])["Ntp"] == 1
    assert _overall(long_ref, [R("a", 0.1, 8.1, "rain")])["Ntp"] == 1
    assert _overall(long_ref, [R("a", 0.1, 12.1, "rain")])["Ntp"] == 0
    short_ref = [R("a", 0.0, 0.5, "dog")]  # tolerance max(0.2, 0.1) = 0.2 s
    assert _overall(short_ref, [R("a", 0.0, 0.65, "dog")])["Ntp"] == 1
    assert _overall(short_ref, [R("a", 0.0, 0.75, "dog")])["Ntp"] == 0
    # offset not evaluated
    assert _overall(short_ref, [R("a", 0.0, 3.0, "dog")], evaluate_offset=False)["Ntp"] == 1


def test_one_to_one_matching_where_greedy_fails():
    # ref1 is matched by both predictions, ref2 only by p1. A greedy pass over the references
    # that gives ref1 the first prediction it matches (p1) leaves ref2 unmatched: Ntp = 1.
    ref = [R("a", 0.0, 1.0, "dog"), R("a", 0.3, 1.3, "dog")]
    p1 = R("a", 0.15, 1.15, "dog")  # matches ref1 and ref2
    p2 = R("a", 0.0, 1.0, "dog")  # matches ref1 only (onset 0.3 away from ref2)
    ov = _overall(ref, [p1, p2])
    assert ov["Ntp"] == 2 and ov["f1"] == 1.0 and ov["error_rate"] == 0.0
    # and one prediction can never match two references
    ov = _overall(ref, [p1])
    assert (ov["Ntp"], ov["Nfn"], ov["Nfp"]) == (1, 1, 0)
    assert ov["precision"] == 1.0 and ov["recall"] == 0.5


def test_substitution_insertion_deletion_counts():
    ref = [
        R("a", 1.0, 2.0, "dog"),  # predicted as cat at the right time: substitution
        R("a", 5.0, 6.0, "dog"),  # missed: deletion
        R("a", 8.0, 9.0, "rain"),  # found
    ]
    pred = [
        R("a", 1.05, 2.0, "cat"),
        R("a", 8.1, 9.1, "rain"),
        R("a", 12.0, 13.0, "rain"),  # insertion
    ]
    ev = event_based_metrics(ref, pred)
    ov = ev["overall"]
    assert (ov["Nref"], ov["Nsys"], ov["Ntp"], ov["S"], ov["D"], ov["I"]) == (3, 3, 1, 1, 1, 1)
    assert ov["error_rate"] == pytest.approx(1.0)
    assert ov["substitution_rate"] == pytest.approx(1 / 3)
    assert ov["precision"] == pytest.approx(1 / 3) and ov["recall"] == pytest.approx(1 / 3)
    assert (ov["Nfp"], ov["Nfn"]) == (2, 2)
    cw = ev["class_wise"]
    # class-wise ER has no substitutions: dog has 2 deletions over 2 references
    assert cw["dog"]["error_rate"] == pytest.approx(1.0)
    assert (cw["dog"]["Nref"], cw["dog"]["Ntp"], cw["dog"]["Nfn"]) == (2, 0, 2)
    assert cw["dog"]["f1"] == 0.0  # references but no (correct) prediction: 0, not NaN
    assert cw["rain"]["f1"] == pytest.approx(2 / 3)
    assert cw["rain"]["error_rate"] == pytest.approx(1.0)  # one insertion over one reference
    # cat has no reference: recall, F1, ER undefined, left out of the macro averages
    assert math.isnan(cw["cat"]["recall"]) and math.isnan(cw["cat"]["f1"])
    assert cw["cat"]["precision"] == 0.0 and cw["cat"]["Nfp"] == 1
    assert ev["macro"]["f1"] == pytest.approx((0.0 + 2 / 3) / 2)
    # with an explicit class list, other labels are ignored
    only = event_based_metrics(ref, pred, labels=["dog", "rain"])
    assert set(only["class_wise"]) == {"dog", "rain"}
    assert only["overall"]["Nsys"] == 2 and only["overall"]["S"] == 0


def test_files_are_matched_separately_and_by_stem():
    ref = [R("audio/x.wav", 1.0, 2.0, "dog"), R("y.wav", 1.0, 2.0, "dog")]
    pred = [R("/tmp/out/x.flac", 1.0, 2.0, "dog"), R("z.wav", 1.0, 2.0, "dog")]
    ov = _overall(ref, pred)
    assert (ov["Ntp"], ov["Nfn"], ov["Nfp"]) == (1, 1, 1)
    assert file_key("C:\\data\\x.wav") == "x" == file_key("x")
    # dots inside a name are part of it: only an audio ending is removed
    assert file_key("rec.part1") == "rec.part1" == file_key("/data/rec.part1.WAV")
    assert file_key("rec.part1.flac") != file_key("rec")


def test_no_predictions_or_no_reference():
    ref = [R("a", 0, 1, "dog")]
    ov = _overall(ref, [])
    assert ov["f1"] == 0.0 and ov["recall"] == 0.0 and math.isnan(ov["precision"])
    assert ov["error_rate"] == 1.0
    ov = _overall([], [R("a", 0, 1, "dog")])
    assert math.isnan(ov["f1"]) and ov["precision"] == 0.0 and ov["Nfp"] == 1


def test_invalid_arguments():
    with pytest.raises(ValueError):
        event_based_metrics([], [], evaluate_onset=False, evaluate_offset=False)
    with pytest.raises(ValueError):
        R("a", 2.0, 1.0, "dog")


# ---------------------------------------------------------------------------------------------
# Segment-based


def test_segment_based_by_hand():
    # 1 s segments, file length 3.4 s -> 4 segments.
    #   ref:  dog 0.5-2.5 -> segs 0,1,2     cat 1.2-1.8 -> seg 1
    #   pred: dog 0.0-1.5 -> segs 0,1       cat 2.2-3.0 -> seg 2     bird 3.2-3.4 -> seg 3
    # seg0: ref{dog} sys{dog}       tp1            S0 D0 I0
    # seg1: ref{dog,cat} sys{dog}   tp1            S0 D1 I0
    # seg2: ref{dog} sys{cat}       tp0            S1 D0 I0
    # seg3: ref{} sys{bird}         tp0            S0 D0 I1
    ref = [R("f", 0.5, 2.5, "dog"), R("f", 1.2, 1.8, "cat")]
    pred = [R("f", 0.0, 1.5, "dog"), R("f", 2.2, 3.0, "cat"), R("f", 3.2, 3.4, "bird")]
    res = segment_based_metrics(ref, pred, segment_length=1.0)
    ov = res["overall"]
    assert (ov["Nref"], ov["Nsys"], ov["Ntp"]) == (4, 4, 2)
    assert (ov["S"], ov["D"], ov["I"]) == (1, 1, 1)
    assert ov["error_rate"] == pytest.approx(0.75)
    assert ov["precision"] == ov["recall"] == ov["f1"] == pytest.approx(0.5)
    assert (ov["Nfp"], ov["Nfn"], ov["Ntn"]) == (2, 2, 6)  # 4 segments x 3 classes = 12
    assert ov["accuracy"] == pytest.approx(8 / 12)
    cw = res["class_wise"]
    assert (cw["dog"]["Nref"], cw["dog"]["Nsys"], cw["dog"]["Ntp"]) == (3, 2, 2)
    assert cw["dog"]["f1"] == pytest.approx(0.8)
    assert cw["dog"]["error_rate"] == pytest.approx(1 / 3)
    assert cw["cat"]["f1"] == 0.0 and cw["cat"]["error_rate"] == pytest.approx(2.0)
    assert math.isnan(cw["bird"]["f1"])
    assert res["macro"]["f1"] == pytest.approx(0.4)
    assert res["macro"]["error_rate"] == pytest.approx((1 / 3 + 2.0) / 2)
    # a longer evaluated duration only adds true negatives
    longer = segment_based_metrics(ref, pred, segment_length=1.0, durations={"f.wav": 5.0})
    assert longer["overall"]["Ntn"] == 9 and longer["overall"]["f1"] == pytest.approx(0.5)
    # a shorter one cuts events
    cut = segment_based_metrics(ref, pred, segment_length=1.0, durations={"f": 2.0})
    assert (cut["overall"]["Nref"], cut["overall"]["Nsys"]) == (3, 2)


def test_segment_boundaries_are_exact():
    # an event ending exactly on a boundary does not spill into the next segment
    ref = [R("f", 0.0, 3.0, "dog")]
    pred = [R("f", 0.1 + 0.2, 0.1 * 30, "dog")]  # 0.30000000000000004 .. 3.0000000000000004
    res = segment_based_metrics(ref, pred, durations={"f": 4.0})
    assert res["overall"]["Nsys"] == 3 and res["overall"]["f1"] == 1.0


# ---------------------------------------------------------------------------------------------
# Readers


def test_load_reference_scaper_txt(shared_dir: Path):
    path = shared_dir / "audio/scaper/tests/data/regression/soundscape_20200501_22050.txt"
    events = load_reference(path)
    assert [e.label for e in events] == ["siren", "car_horn", "human_voice"]
    assert events[0] == R("soundscape_20200501_22050", 2.0, 7.0, "siren")
    assert events[1].offset == pytest.approx(5.68750566893424)
    assert {e.file for e in events} == {"soundscape_20200501_22050"}
    assert load_reference(path, file="x.wav")[0].file == "x.wav"


def test_load_reference_dcase_tsv(tmp_path: Path):
    path = tmp_path / "ref.tsv"
    path.write_text(
        "filename\tonset\toffset\tevent_label\n"
        "a.wav\t0.5\t1.25\tdog\n"
        "a.wav\t2\t4.5\tAlarm bell ringing\n"
        "empty.wav\t\t\t\n"
        "b.wav\t0.000\t10.000\train\n"
    )
    events = load_reference(path)
    assert events == [
        R("a.wav", 0.5, 1.25, "dog"),
        R("a.wav", 2.0, 4.5, "Alarm bell ringing"),
        R("b.wav", 0.0, 10.0, "rain"),
    ]
    # the same without header, and with only a file name on the empty row
    path.write_text("a.wav\t0.5\t1.25\tdog\nempty.wav\nb.wav\t0\t10\train\n")
    assert [e.file for e in load_reference(path)] == ["a.wav", "b.wav"]


def test_load_reference_csv_and_audacity(tmp_path: Path):
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "start", "end", "file"])
        writer.writerow(["Chicken, rooster", "1.5", "2.5", "farm.wav"])
        writer.writerow(["dog", "3", "4", "farm.wav"])
    assert load_reference(path) == [
        R("farm.wav", 1.5, 2.5, "Chicken, rooster"),
        R("farm.wav", 3.0, 4.0, "dog"),
    ]
    audacity = tmp_path / "take 1.txt"
    audacity.write_text(
        "1.250000\t2.500000\tcar horn\n\\\t100.0\t2000.0\n3.000000\t3.000000\tclick\n"
    )
    assert load_reference(audacity) == [
        R("take 1", 1.25, 2.5, "car horn"),
        R("take 1", 3.0, 3.0, "click"),
    ]
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("0.5 1.5 baby cry\n")
    assert load_reference(spaced) == [R("spaced", 0.5, 1.5, "baby cry")]


# ---------------------------------------------------------------------------------------------
# Mapping predictions


@dataclass(frozen=True)
class _Pred:  # the fields of earmark.events.Event that matter here
    file: str
    label: str
    mid: str
    onset: float
    offset: float
    peak: float = 0.9
    mean: float = 0.5


def test_map_predictions_merges_synonyms():
    label_map = {"dog": ["Dog", "Bark"], "pet": ["Dog"], "voice": ["/m/09x0r"]}
    preds = [
        _Pred("a.wav", "Dog", "/m/0bt9lr", 1.0, 2.0),
        _Pred("a.wav", "Bark", "/m/05tny_", 1.5, 2.5),  # overlaps Dog: merged
        _Pred("a.wav", "Bark", "/m/05tny_", 4.0, 4.5),
        _Pred("b.wav", "Bark", "/m/05tny_", 1.0, 1.2),  # other file: kept apart
        _Pred("a.wav", "Speech", "/m/09x0r", 0.0, 0.5),  # mapped by MID
        _Pred("a.wav", "Music", "/m/04rlf", 0.0, 9.0),  # unmapped: dropped
    ]
    mapped = map_predictions(preds, label_map)
    assert mapped == [
        R("a.wav", 1.0, 2.5, "dog"),
        R("a.wav", 4.0, 4.5, "dog"),
        R("a.wav", 1.0, 2.0, "pet"),
        R("a.wav", 0.0, 0.5, "voice"),
        R("b.wav", 1.0, 1.2, "dog"),
    ]
    # merged synonyms give one match, not a match plus an insertion
    ref = [R("a.wav", 1.0, 2.5, "dog"), R("a.wav", 4.0, 4.5, "dog")]
    ov = _overall(ref, [e for e in mapped if e.file == "a.wav"], labels=["dog"])
    assert (ov["Ntp"], ov["Nfp"]) == (2, 0)
    # gap merging
    assert len(map_predictions(preds[:3], {"dog": ["Dog", "Bark"]}, merge_gap=1.5)) == 1


def test_drop_labels():
    events = [
        R("x/a.wav", 0, 1, "human_voice"),
        R("a.wav", 0, 1, "dog"),
        R("b", 0, 1, "human_voice"),
    ]
    kept = drop_labels(events, {"a.wav": ["human_voice"]})
    assert kept == events[1:]


def test_esc10_label_map_names_exist(shared_dir: Path):
    label_map = load_label_map("esc10")
    expected = {
        "dog", "rain", "sea_waves", "crying_baby", "clock_tick", "sneezing", "helicopter",
        "chainsaw", "rooster", "crackling_fire", "car_horn", "human_voice", "siren",
    }  # fmt: skip
    assert set(label_map) == expected
    with open(shared_dir / "models" / "class_labels_indices.csv", newline="") as handle:
        names = [row["display_name"] for row in csv.DictReader(handle)]
    validate_label_map(label_map, names)
    all_names = [n for v in label_map.values() for n in v]
    assert len(all_names) == len(set(all_names)), "an AudioSet class is listed under two labels"
    assert "Honk" not in label_map["car_horn"]  # the goose
    with pytest.raises(ValueError, match="Doge"):
        validate_label_map({"dog": ["Doge"]}, names)


# ---------------------------------------------------------------------------------------------
# Cross-check against sed_eval itself, when it happens to be installed (it is not a dependency).


def _random_case(seed: int) -> tuple[list[RefEvent], list[RefEvent]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    ref, pred = [], []
    for f in ("a.wav", "b.wav", "c.wav"):
        for label in ("dog", "rain", "siren"):
            t = 0.0
            for _ in range(4):
                t += float(rng.uniform(0.5, 3.0))
                length = float(rng.uniform(0.3, 4.0))
                ref.append(R(f, round(t, 3), round(t + length, 3), label))
                if rng.random() < 0.8:  # detected, with jitter of either sign
                    on = t + float(rng.normal(0, 0.15))
                    off = t + length + float(rng.normal(0, 0.3))
                    pred.append(R(f, round(max(on, 0.0), 3), round(max(off, on + 0.05), 3), label))
                t += length
            pred.append(R(f, round(t + 1.0, 3), round(t + 2.0, 3), label))  # an insertion
    return ref, pred


def test_agrees_with_sed_eval():
    sed_eval = pytest.importorskip("sed_eval")
    dcase_util = pytest.importorskip("dcase_util")

    def container(events):
        return dcase_util.containers.MetaDataContainer(
            [
                {"filename": e.file, "event_label": e.label, "onset": e.onset, "offset": e.offset}
                for e in events
            ]
        )

    labels = ["dog", "rain", "siren"]
    for seed in range(5):
        ref, pred = _random_case(seed)
        sed_ev = sed_eval.sound_event.EventBasedMetrics(
            event_label_list=labels, t_collar=0.2, percentage_of_length=0.2
        )
        sed_seg = sed_eval.sound_event.SegmentBasedMetrics(
            event_label_list=labels, time_resolution=1.0
        )
        for f in ("a.wav", "b.wav", "c.wav"):
            r = container([e for e in ref if e.file == f])
            p = container([e for e in pred if e.file == f])
            sed_ev.evaluate(r, p)
            sed_seg.evaluate(r, p)
        ours_ev = event_based_metrics(ref, pred, labels=labels)
        ours_seg = segment_based_metrics(ref, pred, labels=labels)
        theirs_ev = sed_ev.results()
        theirs_seg = sed_seg.results()
        for ours, theirs in ((ours_ev, theirs_ev), (ours_seg, theirs_seg)):
            assert ours["overall"]["f1"] == pytest.approx(
                theirs["overall"]["f_measure"]["f_measure"]
            )
            for label in labels:
                assert ours["class_wise"][label]["f1"] == pytest.approx(
                    theirs["class_wise"][label]["f_measure"]["f_measure"]
                )
                assert ours["class_wise"][label]["error_rate"] == pytest.approx(
                    theirs["class_wise"][label]["error_rate"]["error_rate"]
                )
        assert ours_seg["overall"]["error_rate"] == pytest.approx(
            theirs_seg["overall"]["error_rate"]["error_rate"]
        )
        # sed_eval counts substitutions greedily, we with a maximum matching: never fewer, so
        # our error rate is never higher (and equal unless the greedy pass was unlucky)
        assert (
            ours_ev["overall"]["error_rate"]
            <= theirs_ev["overall"]["error_rate"]["error_rate"] + 1e-9
        )
