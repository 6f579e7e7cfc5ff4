"""Tests of ``earmark evaluate``: PSDS on hand-made cases, JAMS reading, the whole command."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from earmark.evaluation import (
    RefEvent,
    event_based_metrics,
    load_reference,
    segment_based_metrics,
)
from earmark.evaluation.psds import PSDS1, PSDS2, FileScores, PsdsParams, psds
from earmark.evaluation.runs import evaluate, expand_label_map, render_html
from earmark.labels import Label
from earmark.outputs import write_events_csv, write_scores

REPO = Path(__file__).resolve().parents[1]
SOUNDSCAPES = REPO / "benchmarks" / "data" / "soundscapes" / "test" / "clean"


def _hand_case() -> tuple[list[RefEvent], dict[str, FileScores]]:
    """One 360 s file, 36 s frames, classes a and b (values derived in test_psds_by_hand)."""
    a = [0.0, 0.0, 0.9, 0.8, 0.6, 0.0, 0.0, 0.7, 0.0, 0.0]
    b = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]
    scores = np.array([a, b]).T
    ref = [RefEvent("x.wav", 72.0, 180.0, "a"), RefEvent("x.wav", 216.0, 252.0, "b")]
    return ref, {"x": FileScores(scores, 36.0, ["a", "b"], 360.0)}


def test_psds_by_hand() -> None:
    # One false positive in 360 s is 10 per hour.
    # Class a (reference 72-180 s), DTC = GTC = 0.7:
    #   t = 0.9: detection 72-108 s, covers 1/3 of the reference: TPR 0, no FP -> (0, 0)
    #   t = 0.8: 72-144 s covers 2/3 < 0.7: still (0, 0)
    #   t = 0.7: plus 252-288 s, outside the reference: one FP -> (0, 10)
    #   t = 0.6: 72-180 s is a true positive, one FP -> (1, 10)
    #   t = 0:   the whole file, 30 % inside the reference: one FP -> (0, 10)
    # Class b (reference 216-252 s): t = 0.5 -> (1, 0); t = 0 -> (0, 10).
    # PSD-ROC (alpha_st = 1): e in [0, 10): mean(0, 1) - std(0, 1) = 0; e >= 10: 1.
    # PSDS1 = 1 * (100 - 10) / 100 = 0.9.
    ref, scores = _hand_case()
    res = psds(ref, scores, PSDS1)
    assert res["psds"] == pytest.approx(0.9)
    assert res["class_roc"]["a"] == {"efpr": [0.0, 10.0], "tpr": [0.0, 1.0]}
    assert res["class_roc"]["b"] == {"efpr": [0.0, 10.0], "tpr": [1.0, 1.0]}
    # DTC = GTC = 0.1: a is found at t = 0.9 with no FP -> both classes TPR 1 at e = 0.
    # b's whole-file detection (t = 0) overlaps a's reference 30 % -> a cross-trigger, but at a
    # TPR of 0 that never improves the curve. PSDS2 = 1.
    assert psds(ref, scores, PSDS2)["psds"] == pytest.approx(1.0)
    # without the stability penalty, e in [0, 10) has mean TPR 0.5: 0.5 * 0.1 + 0.9 = 0.95
    no_st = PsdsParams(dtc=0.7, gtc=0.7, alpha_st=0.0)
    assert psds(ref, scores, no_st)["psds"] == pytest.approx(0.95)


def test_psds_perfect_scores_is_one() -> None:
    hop = 0.25
    ref = [
        RefEvent("f1.wav", 1.0, 3.0, "dog"),
        RefEvent("f1.wav", 2.0, 2.5, "siren"),
        RefEvent("f2.wav", 4.0, 6.0, "siren"),
    ]
    scores = {}
    for key in ("f1", "f2"):
        m = np.zeros((40, 2))
        for e in ref:
            if e.file.startswith(key + "."):
                m[int(e.onset / hop) : int(e.offset / hop), ["dog", "siren"].index(e.label)] = 1
        scores[key] = FileScores(m, hop, ["dog", "siren"], 10.0)
    assert psds(ref, scores, PSDS1)["psds"] == pytest.approx(1.0)
    assert psds(ref, scores, PSDS2)["psds"] == pytest.approx(1.0)


def _random_case(seed: int) -> tuple[list[RefEvent], dict[str, FileScores]]:
    rng = np.random.default_rng(seed)
    classes, hop, n = ["a", "b", "c"], 0.5, 40
    ref: list[RefEvent] = []
    scores = {}
    for f in range(3):
        name = f"f{f}.wav"
        m = rng.random((n, 3)) * 0.4
        for _ in range(4):
            c = int(rng.integers(3))
            on = float(rng.integers(0, n - 6)) * hop + float(rng.choice([0.0, 0.1, 0.25]))
            off = min(on + float(rng.integers(2, 8)) * hop, n * hop)
            if any(e.label == classes[c] and e.file == name and e.onset <= off for e in ref):
                continue  # no overlapping events of one class (sed_scores_eval refuses them)
            ref.append(RefEvent(name, on, off, classes[c]))
            m[int(on / hop) : int(np.ceil(off / hop)), c] += rng.random() * 0.6
            m[int(on / hop) : int(np.ceil(off / hop)), (c + 1) % 3] += 0.3 * rng.random()
        scores[f"f{f}"] = FileScores(np.round(m, 3), hop, classes, n * hop)
    return ref, scores


def test_psds_matches_sed_scores_eval() -> None:
    """Cross-check of our PSDS against sed_scores_eval (a test dependency)."""
    import sed_scores_eval as sse
    from sed_scores_eval.base_modules import statistics
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    original = statistics.onset_offset_curves
    # pandas >= 3 hands out read-only arrays, which its Cython code refuses: pass copies
    statistics.onset_offset_curves = lambda *a, **k: original(
        *[np.array(x) if isinstance(x, np.ndarray) else x for x in a], **k
    )
    try:
        for seed in range(6):
            ref, scores = _random_case(seed)
            if len({e.label for e in ref}) < 3:
                continue
            frames = {
                k: create_score_dataframe(v.scores, np.arange(41) * 0.5, v.classes)
                for k, v in scores.items()
            }
            gt = {
                k: [(e.onset, e.offset, e.label) for e in ref if e.file == k + ".wav"]
                for k in scores
            }
            durations = {k: v.duration for k, v in scores.items()}
            for p in (PSDS1, PSDS2):
                theirs = sse.intersection_based.psds(
                    frames,
                    gt,
                    durations,
                    dtc_threshold=p.dtc,
                    gtc_threshold=p.gtc,
                    cttc_threshold=p.cttc,
                    alpha_ct=p.alpha_ct,
                    alpha_st=p.alpha_st,
                    max_efpr=p.max_efpr,
                )[0]
                assert psds(ref, scores, p)["psds"] == pytest.approx(float(theirs), abs=1e-9)
    finally:
        statistics.onset_offset_curves = original


def test_event_metrics_match_sed_eval() -> None:
    """Cross-check of event_based_metrics against sed_eval (a test dependency)."""
    import sed_eval

    ref = [
        RefEvent("f.wav", 1.0, 3.0, "dog"),
        RefEvent("f.wav", 5.0, 6.0, "dog"),
        RefEvent("f.wav", 8.0, 12.0, "siren"),
    ]
    pred = [
        RefEvent("f.wav", 1.1, 3.3, "dog"),  # correct (offset within max(0.2, 0.4))
        RefEvent("f.wav", 5.5, 6.0, "dog"),  # onset off by 0.5: wrong
        RefEvent("f.wav", 8.1, 11.5, "siren"),  # correct: offset collar 0.8 s
        RefEvent("f.wav", 14.0, 15.0, "siren"),  # insertion
    ]
    ours = event_based_metrics(ref, pred)
    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=["dog", "siren"], t_collar=0.2, percentage_of_length=0.2
    )

    def rows(events: list[RefEvent]) -> list[dict]:
        return [
            {
                "file": e.file,
                "event_onset": e.onset,
                "event_offset": e.offset,
                "event_label": e.label,
            }
            for e in events
        ]

    metric.evaluate(reference_event_list=rows(ref), estimated_event_list=rows(pred))
    theirs = metric.results()
    assert ours["overall"]["f1"] == pytest.approx(theirs["overall"]["f_measure"]["f_measure"])
    assert ours["overall"]["error_rate"] == pytest.approx(
        theirs["overall"]["error_rate"]["error_rate"]
    )


def test_segment_metrics_match_sed_eval() -> None:
    """Segment-based F1 and error rate against sed_eval on a case with partial overlaps."""
    import dcase_util
    import sed_eval

    ref = [
        RefEvent("f.wav", 0.5, 3.2, "dog"),
        RefEvent("f.wav", 2.0, 4.0, "siren"),
        RefEvent("f.wav", 7.3, 9.9, "dog"),
    ]
    pred = [
        RefEvent("f.wav", 0.9, 2.1, "dog"),
        RefEvent("f.wav", 3.5, 6.2, "siren"),
        RefEvent("f.wav", 7.0, 8.0, "siren"),  # a substitution for the dog in 7-8
    ]
    ours = segment_based_metrics(ref, pred, segment_length=1.0, durations={"f.wav": 10.0})

    def listing(events: list[RefEvent]) -> dcase_util.containers.MetaDataContainer:
        return dcase_util.containers.MetaDataContainer(
            [
                {"filename": e.file, "onset": e.onset, "offset": e.offset, "event_label": e.label}
                for e in events
            ]
        )

    metric = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=["dog", "siren"], time_resolution=1.0
    )
    metric.evaluate(reference_event_list=listing(ref), estimated_event_list=listing(pred))
    theirs = metric.results()
    assert ours["overall"]["f1"] == pytest.approx(theirs["overall"]["f_measure"]["f_measure"])
    assert ours["overall"]["error_rate"] == pytest.approx(
        theirs["overall"]["error_rate"]["error_rate"]
    )
    for label in ("dog", "siren"):
        assert ours["class_wise"][label]["f1"] == pytest.approx(
            theirs["class_wise"][label]["f_measure"]["f_measure"]
        )


def test_event_metrics_by_hand() -> None:
    # the same case: 2 correct of 3 references and 4 predictions -> F1 = 4 / 7;
    # the late dog is a substitution-free deletion + insertion pair: S 0, D 1, I 2 -> ER 1
    ref = [
        RefEvent("f.wav", 1.0, 3.0, "dog"),
        RefEvent("f.wav", 5.0, 6.0, "dog"),
        RefEvent("f.wav", 8.0, 12.0, "siren"),
    ]
    pred = [
        RefEvent("f.wav", 1.1, 3.3, "dog"),
        RefEvent("f.wav", 5.5, 6.0, "dog"),
        RefEvent("f.wav", 8.1, 11.5, "siren"),
        RefEvent("f.wav", 14.0, 15.0, "siren"),
    ]
    res = event_based_metrics(ref, pred)
    assert res["overall"]["f1"] == pytest.approx(4 / 7)
    assert (res["overall"]["S"], res["overall"]["D"], res["overall"]["I"]) == (0, 1, 2)
    assert res["overall"]["error_rate"] == pytest.approx(1.0)


def test_load_jams(tmp_path: Path) -> None:
    doc = {
        "annotations": [
            {
                "namespace": "scaper",
                "data": [
                    {
                        "time": 0.0,
                        "duration": 10.0,
                        "value": {"label": "cafe", "role": "background"},
                    },
                    {"time": 1.5, "duration": 2.0, "value": {"label": "dog", "role": "foreground"}},
                ],
            },
            {"namespace": "tag_open", "data": [{"time": 4, "duration": 1, "value": "siren"}]},
            {"namespace": "beat", "data": [{"time": 1, "duration": 0, "value": 1}]},
        ]
    }
    path = tmp_path / "scape.jams"
    path.write_text(json.dumps(doc))
    events = load_reference(path)
    assert events == [RefEvent("scape", 1.5, 3.5, "dog"), RefEvent("scape", 4.0, 5.0, "siren")]


def _fake_run(out: Path, ref: list[RefEvent], hop: float = 0.25, duration: float = 10.0) -> None:
    """An earmark output folder whose events and scores are exactly the reference."""
    from earmark.events import Event

    labels = [Label(0, "/m/dog", "Dog"), Label(1, "/m/siren", "Siren"), Label(2, "/m/x", "Other")]
    events = [
        Event(e.file, e.label.capitalize(), f"/m/{e.label}", e.onset, e.offset, 1.0, 1.0)
        for e in ref
    ]
    (out / "files").mkdir(parents=True, exist_ok=True)
    write_events_csv(out / "events.csv", events)
    for name in sorted({e.file for e in ref}):
        m = np.zeros((int(duration / hop), 3), dtype=np.float32)
        for e in ref:
            if e.file == name:
                col = 0 if e.label == "dog" else 1
                m[round(e.onset / hop) : round(e.offset / hop), col] = 1.0
        write_scores(
            out / "files" / f"{name}.scores.npz",
            m,
            hop,
            labels,
            meta={"file": f"/data/{name}", "duration": duration},
        )


def test_reference_against_itself(tmp_path: Path) -> None:
    ref = [
        RefEvent("a.wav", 1.0, 3.0, "dog"),
        RefEvent("a.wav", 2.0, 2.5, "siren"),
        RefEvent("b.wav", 4.0, 6.0, "siren"),
    ]
    refdir = tmp_path / "ref"
    refdir.mkdir()
    for name in ("a", "b"):
        rows = [f"{e.onset}\t{e.offset}\t{e.label}" for e in ref if e.file == f"{name}.wav"]
        (refdir / f"{name}.txt").write_text("\n".join(rows) + "\n")
    _fake_run(tmp_path / "out", ref)
    ev = evaluate(tmp_path / "out", refdir)  # no label map: names compared case-insensitively
    assert ev.classes == ["dog", "siren"]
    assert ev.event["overall"]["f1"] == 1.0
    assert ev.segment["overall"]["f1"] == 1.0
    assert ev.psds["psds1"]["psds"] == pytest.approx(1.0)
    assert ev.psds["psds2"]["psds"] == pytest.approx(1.0)
    # the same through a label map (names or mids)
    ev = evaluate(
        tmp_path / "out",
        refdir,
        label_map={"dog": ["Dog"], "siren": ["/m/siren"]},
        descendants=False,
    )
    assert ev.event["overall"]["f1"] == 1.0
    assert ev.psds["psds1"]["psds"] == pytest.approx(1.0)
    page = render_html(ev)
    assert (
        "<svg" in page
        and 'id="per-class"' in page
        and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    )
    assert json.loads(json.dumps(ev.to_dict(), allow_nan=False))["psds"]["psds1"]["psds"] == 1.0


def test_expand_label_map_descendants() -> None:
    from earmark.labels import Ontology

    onto = Ontology(
        {"/m/a": "Animal", "/m/d": "Dog", "/m/b": "Bark"}, {"/m/a": ["/m/d"], "/m/d": ["/m/b"]}
    )
    assert expand_label_map({"dog": ["Dog"]}, onto) == {"dog": ["Dog", "Bark"]}
    assert expand_label_map({"x": ["Animal", "Nope"]}, onto) == {
        "x": ["Animal", "Nope", "Dog", "Bark"]
    }


@pytest.mark.slow
def test_detect_then_evaluate(tmp_path: Path, shared_dir: Path, model_dir: Path) -> None:
    from earmark.cli import main

    src = SOUNDSCAPES
    names = ["test_clean_00", "test_clean_01"]
    if not all((src / f"{n}.wav").exists() for n in names):
        from earmark.evaluation.soundscape_set import build_set

        build_set(shared_dir, tmp_path / "built", per_condition=1)
        wavs = sorted((tmp_path / "built").rglob("*.wav"))[:2]
        names, src = [w.stem for w in wavs], None
    audio, refdir = tmp_path / "audio", tmp_path / "ref"
    audio.mkdir()
    refdir.mkdir()
    for n in names:
        wav = src / f"{n}.wav" if src else next((tmp_path / "built").rglob(f"{n}.wav"))
        (audio / wav.name).symlink_to(wav)
        shutil.copy(wav.with_suffix(".tsv"), refdir / f"{n}.tsv")
    out, report = tmp_path / "out", tmp_path / "eval"
    assert main(["detect", str(audio), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    code = main(["evaluate", str(out), str(refdir), "--label-map", "esc10", "-o", str(report)])
    assert code == 0
    metrics = json.loads((report / "metrics.json").read_text())
    f1 = metrics["event"]["overall"]["f1"]
    assert 0.0 <= f1 <= 1.0
    assert set(metrics["psds"]) == {"psds1", "psds2"}
    assert all(0.0 <= v["psds"] <= 1.0 for v in metrics["psds"].values())
    page = (report / "evaluation.html").read_text()
    assert 'id="per-class"' in page and "<svg" in page
    assert not math.isnan(metrics["segment"]["overall"]["f1"])

    # the page as a browser shows it: tables and PSD-ROC curves render, offline
    from chromium import dump_dom, screenshot

    dom = dump_dom(report / "evaluation.html")
    assert dom.count("<tr") > 3
    assert "<polyline" in dom or "<path" in dom
    assert "http://" not in dom.replace('xmlns="http://www.w3.org/2000/svg"', "")
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    png = screenshot(report / "evaluation.html", artifacts / "evaluation.png", 1200, 1400)
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one
