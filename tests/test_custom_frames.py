# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Custom classes in long recordings: training mixtures, the frame-level head, detection."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from custom_fixtures import (  # noqa: F401
    embedding_cache,
    esc10,
    esc10_dir,
    tagger,
)

from earmark.audio import load
from earmark.custom.detector import DetectorConfig, score_recordings, train_detector
from earmark.custom.frame_head import (
    FitOptions,
    FrameHead,
    HeadEnsemble,
    load_frame_head,
    save_frame_head,
)
from earmark.custom.mixtures import (
    LabelledEvent,
    MixtureConfig,
    build_mixtures,
    frame_targets,
    group_backgrounds,
)
from earmark.evaluation import RefEvent, event_based_metrics
from earmark.evaluation.soundscape import ForegroundClip, make_soundscape, write_soundscape

CLASSES = ["Chainsaw", "Dog bark", "Rooster"]
SOUNDS = Path("audio/backgrounds/sounds")
TRAIN_BACKGROUNDS = ("nature/wind.mp3", "urban/traffic.mp3", "things/keyboard.mp3")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "earmark.cli", *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def clips(esc10) -> list[tuple[Path, str, int]]:
    """Folds 1-4 of three ESC-10 classes, grouped by fold."""
    return [(c.path, c.label, c.fold - 1) for c in esc10.clips if c.label in CLASSES and c.fold < 5]


@pytest.fixture(scope="module")
def backgrounds(shared_dir: Path) -> list[tuple[str, np.ndarray]]:
    return [(b, load(shared_dir / SOUNDS / b, 32000)) for b in TRAIN_BACKGROUNDS]


def test_frame_targets_cover_frames_by_share() -> None:
    t = frame_targets([LabelledEvent(0.5, 1.0, "b")], 5, 0.32, ["a", "b"])
    assert t[:, 0].sum() == 0
    np.testing.assert_allclose(t[:, 1], [0, 0.14 / 0.32, 1, 0.04 / 0.32, 0], atol=1e-6)


def test_background_groups_share_no_audio(backgrounds) -> None:
    shares, how = group_backgrounds(backgrounds, 4, "time")
    assert how == "time parts" and all(len(s) == 3 for s in shares)
    lengths = [sum(len(a) for _, a in s) for s in shares]
    assert abs(sum(lengths) - sum(len(a) for _, a in backgrounds)) == 0
    shares, how = group_backgrounds(backgrounds, 3, "recordings")
    assert how == "recordings" and [len(s) for s in shares] == [1, 1, 1]


def test_mixtures_are_seeded_and_clip_disjoint(clips, backgrounds) -> None:
    config = MixtureConfig(n_mixtures=24, seconds=10.0, seed=3)
    one, info = build_mixtures(clips, backgrounds, 4, config)
    two, _ = build_mixtures(clips, backgrounds, 4, config)
    assert len(one) == 24 and info["target_events"] > 24
    group_of = {str(p): g for p, _, g in clips}
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)
        assert [(e.onset, e.offset, e.label) for e in a.events] == [
            (e.onset, e.offset, e.label) for e in b.events
        ]
        assert {group_of[s] for s in a.meta["sources"]} <= {a.group}  # clips of its group only
        assert np.isfinite(a.audio).all() and np.abs(a.audio).max() <= 1.0
        for e in a.events:
            assert 0 <= e.onset < e.offset <= 10.0 and e.label in CLASSES
    other = build_mixtures(clips, backgrounds, 4, MixtureConfig(n_mixtures=24, seconds=10.0))[0]
    assert not np.array_equal(other[0].audio, one[0].audio)
    snr_lo = MixtureConfig().snr_db[0]
    assert snr_lo <= -5.0  # the defaults reach at least -5 dB


def test_mixtures_with_clips_at_other_speeds(clips, backgrounds) -> None:
    config = MixtureConfig(n_mixtures=40, seconds=10.0, seed=4, speeds=(0.8, 1.25))
    cache: dict = {}
    mixes, info = build_mixtures(clips, backgrounds, 4, config, clip_audio=cache)
    assert info["clip_speeds"] == [0.8, 1.25]
    sources = [s for m in mixes for s in m.meta["sources"]]
    assert any("@speed0.8" in s for s in sources) and any("@speed1.25" in s for s in sources)
    group_of = {str(p): g for p, _, g in clips}
    for m in mixes:  # a copy at another speed stays in its clip's group
        assert {group_of[s.split("@speed")[0]] for s in m.meta["sources"]} <= {m.group}
    path = Path(clips[0][0])
    for speed in (0.8, 1.25):
        copy = cache[Path(f"{path}@speed{speed:g}")]
        assert abs(len(copy) - len(cache[path]) / speed) <= 2
    with pytest.raises(ValueError, match="clip speeds"):
        MixtureConfig(speeds=(3.0,)).validate()


def test_seeded_frame_head_repeats_exactly(clips, backgrounds, tagger, tmp_path: Path) -> None:
    config = DetectorConfig(
        mixtures=MixtureConfig(n_mixtures=32, seconds=10.0),
        fit=FitOptions(max_epochs=3, patience=2),
    )
    recs, _ = build_mixtures(clips, backgrounds, 4, config.mixtures)
    data = score_recordings(recs, tagger, CLASSES)
    assert data[0].features.shape[1] == tagger.net.embedding_dim
    assert data[0].audioset.shape == (len(data[0].features), 527)
    first = train_detector(data, CLASSES, config, seed=1)
    second = train_detector(data, CLASSES, config, seed=1)
    assert isinstance(first.head, HeadEnsemble) and len(first.head.heads) == 1 + 4  # final + splits
    for mine, theirs in zip(first.head.heads, second.head.heads, strict=True):
        for key, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), key
    assert first.thresholds == second.thresholds
    cv = first.metrics["cross_validation"]
    assert set(cv["per_class"]) == set(CLASSES) and 0 <= cv["event_f1"] <= 1
    assert len(first.metrics["splits"]) == 4
    # the ensemble is saved and loaded whole: same probabilities, not the first member's alone
    rows = data[0].rows(True)
    save_frame_head(tmp_path / "frame_head.pt", first.head, {"audioset_input": True})
    loaded, extra = load_frame_head(tmp_path / "frame_head.pt")
    assert extra["audioset_input"] is True and "members" not in extra
    assert np.array_equal(loaded.probabilities(rows), first.head.probabilities(rows))
    alone = first.head.heads[0].probabilities(rows)
    assert not np.allclose(alone, first.head.probabilities(rows))
    single = train_detector(data, CLASSES, dataclasses.replace(config, ensemble=False), seed=1)
    assert isinstance(single.head, FrameHead)


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory, clips, shared_dir: Path, esc10) -> Path:
    """A model trained with the CLI: folds 1-4 clips over three backgrounds, plus one
    strongly labelled recording (a soundscape with its DCASE TSV beside it); per-class median
    filters and minimum durations chosen too (``--choose-filters``)."""
    root = tmp_path_factory.mktemp("frames")
    with open(root / "clips.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label", "fold"])
        for path, label, group in clips:
            writer.writerow([path, label, group + 1])
    (root / "bg").mkdir()
    for b in TRAIN_BACKGROUNDS:
        (root / "bg" / Path(b).name).symlink_to(shared_dir / SOUNDS / b)
    (root / "labelled").mkdir()
    fold4 = [ForegroundClip(p, label) for p, label, g in clips if g == 3]
    audio, events = make_soundscape(
        shared_dir / SOUNDS / "rain/light-rain.mp3", fold4, 30.0, (4, 4), (5.0, 15.0),
        np.random.default_rng(2), allow_overlap=False,
    )  # fmt: skip
    write_soundscape(root / "labelled" / "take.wav", audio, events, 32000)
    done = _run(
        "train", str(root / "clips.csv"), "-o", str(root / "model"), "--backgrounds",
        str(root / "bg"), "--labelled", str(root / "labelled"), "--negatives", "--no-baseline",
        "--mixtures", "120", "--mixture-seconds", "12", "--json", "--threads", "2",
        "--choose-filters",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["detection_cross_validation"]["event_f1"] > 0
    return root / "model"


def test_trained_frame_model_files(frame_model: Path) -> None:
    metrics = json.loads((frame_model / "metrics.json").read_text())
    det = metrics["detection"]
    assert det["training_data"]["labelled_recordings"] == 1
    assert det["training_data"]["mixtures"] == 120
    assert set(det["thresholds"]) == set(CLASSES)
    for name in CLASSES:
        row = det["cross_validation"]["per_class"][name]
        assert {"event_f1", "segment_f1"} <= set(row)
    assert (frame_model / "frame_head.pt").is_file()
    calibration = json.loads((frame_model / "thresholds.json").read_text())
    assert calibration["mixed"] and "frame-level head" in calibration["method"]
    assert metrics["n_augmented"] == 2 * metrics["n_clips"]  # mixing augmentation by default
    # per class median filter and minimum duration, chosen on held-out mixtures and used
    from earmark.custom.model import load_custom_classes
    from earmark.custom.postprocess import FILTER_MIN_GAIN, MEDIAN_GRID, MIN_DURATION_GRID
    from earmark.custom.provider import custom_selection
    from earmark.pipeline import DetectOptions

    for name in CLASSES:
        chosen = det["filters"][name]
        entry = calibration["classes"][name]
        assert (entry["median_filter"], entry["min_duration"]) == (
            chosen["median_filter"],
            chosen["min_duration"],
        )
        assert chosen["median_filter"] in (*MEDIAN_GRID, 0.96)
        assert chosen["min_duration"] in MIN_DURATION_GRID
        changed = (chosen["median_filter"], chosen["min_duration"]) != (0.96, 0.0)
        gain = chosen["event_f1"] - chosen["event_f1_with_defaults"]
        assert gain >= FILTER_MIN_GAIN - 1e-9 if changed else gain == 0
    custom = load_custom_classes(frame_model)
    post = custom_selection(DetectOptions(classes=str(frame_model)), custom.labels())
    assert post.median_filters == {
        f"custom:{c}": det["filters"][c]["median_filter"] for c in CLASSES
    }
    assert post.min_durations == {f"custom:{c}": det["filters"][c]["min_duration"] for c in CLASSES}


def held_out_mixture(esc10, shared_dir: Path, path: Path) -> tuple[np.ndarray, list]:
    """40 s of a real cafe with five fold-5 clips of the classes (8-15 dB), written to ``path``;
    the audio and its reference events."""
    fold5 = [
        ForegroundClip(c.path, c.label) for c in esc10.clips if c.fold == 5 and c.label in CLASSES
    ]
    audio, refs = make_soundscape(
        shared_dir / SOUNDS / "places/cafe.mp3", fold5, 40.0, (5, 5), (8.0, 15.0),
        np.random.default_rng(21), allow_overlap=False, min_gap=1.5,
    )  # fmt: skip
    write_soundscape(path, audio, [], 32000)
    return audio, refs


def test_detect_finds_classes_in_held_out_mixture(
    tmp_path: Path, frame_model: Path, esc10, shared_dir: Path
) -> None:
    _, refs = held_out_mixture(esc10, shared_dir, tmp_path / "mix.wav")
    done = _run("detect", str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "--classes",
                str(frame_model), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "out" / "events.csv", newline="") as handle:
        found = [RefEvent("mix", float(r["onset"]), float(r["offset"]), r["label"])
                 for r in csv.DictReader(handle)]  # fmt: skip
    ref = [RefEvent("mix", e.onset, e.offset, e.label) for e in refs]
    m = event_based_metrics(ref, found, t_collar=0.5, evaluate_offset=False)["overall"]
    what = f"found {found}, reference {ref}"
    assert m["recall"] >= 0.8, f"onsets within 0.5 s: {m['Ntp']}/{len(ref)}; {what}"
    assert m["precision"] >= 0.5, f"{len(found)} detections for {len(ref)} events: {what}"
    run = json.loads((tmp_path / "out" / "manifest.json").read_text())["custom_classes"]
    assert run["detector"] == "frame-level head"
    assert "event F1" in run["threshold_source"]


def test_train_rejects_bad_label_files(
    tmp_path: Path, frame_model: Path, fixtures_dir: Path
) -> None:
    clips_csv = frame_model.parent / "clips.csv"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.ogg").symlink_to(fixtures_dir / "esc10_dog_1-100032-A.ogg")
    (bad / "a.txt").write_text("0.5\t1.0\tCat\n4.0\t7.5\tDog bark\n")
    done = _run("train", str(clips_csv), "-o", str(tmp_path / "m"), "--labelled", str(bad),
                "--no-baseline", "--frame-head", "conv", "-q")  # fmt: skip
    assert done.returncode == 2
    assert "a.txt" in done.stderr and "'Cat'" in done.stderr and "past the end" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists()


def test_service_jobs_use_the_frame_head(tmp_path: Path, frame_model: Path, esc10) -> None:
    from fastapi.testclient import TestClient

    from earmark.service.api import create_app
    from earmark.service.db import Database
    from earmark.service.jobs import process_job
    from earmark.service.settings import Settings
    from earmark.service.storage import Storage

    key = "unit-secret-0123456789abcdef0123"
    settings = Settings.from_env(
        {
            "EARMARK_STORAGE_DIR": str(tmp_path / "store"),
            "EARMARK_BOOTSTRAP_KEYS": f"unit:{key}",
            "EARMARK_CLASSES_DIR": str(frame_model.parent),
        }
    )
    clip = next(c for c in esc10.clips if c.fold == 5 and c.label == "Rooster")
    auth = {"X-API-Key": key}
    with TestClient(create_app(settings)) as http:
        listed = http.get("/v1/classes", headers=auth).json()
        assert [m["name"] for m in listed] == ["model"]
        assert listed[0]["detector"] == "frame-level head" and listed[0]["classes"] == CLASSES
        files = {"files": (clip.path.name, clip.path.read_bytes())}
        for bad in ("nothere", "../model"):
            refused = http.post("/v1/jobs", headers=auth, files=files, data={"classes": bad})
            assert refused.status_code == 422, refused.text
        made = http.post("/v1/jobs", headers=auth, files=files, data={"classes": "model"})
        assert made.status_code == 201, made.text
        job = made.json()["id"]
        outcome = process_job(Database(settings.database_url), Storage(settings.storage_dir),
                              settings, job)  # fmt: skip
        assert outcome.status == "done", outcome
        events = http.get(f"/v1/jobs/{job}/events", headers=auth).json()["events"]
        assert events and {e["label"] for e in events} <= set(CLASSES)
        assert any(e["label"] == "Rooster" for e in events)


def test_frame_head_beside_audioset_classes(frame_model: Path, esc10, tagger) -> None:
    from earmark.custom.provider import detect_custom

    clip = next(c for c in esc10.clips if c.fold == 5 and c.label == "Chainsaw")
    events = detect_custom(clip.path, frame_model, tagger, audioset=True)
    mids = {e.mid for e in events}
    assert "custom:Chainsaw" in mids, events
    assert any(not m.startswith("custom:") for m in mids), events  # AudioSet classes too


def test_listen_hears_custom_classes_as_detect_does(
    tmp_path: Path, frame_model: Path, esc10, shared_dir: Path, tagger
) -> None:
    """``earmark listen --classes --exact`` on a stream gives ``detect --classes``'s events: the
    frame head runs on a window of recent frames, delayed by its temporal context."""
    from earmark.listen.detector import LiveDetector
    from earmark.listen.options import LiveOptions
    from earmark.pipeline import DetectOptions, process_file
    from earmark.scoring import DEFAULT_MARGIN_FRAMES

    audio, _ = held_out_mixture(esc10, shared_dir, tmp_path / "mix.wav")
    options = DetectOptions(classes=str(frame_model))
    expected = process_file(tagger, tmp_path / "mix.wav", None, options).events
    live = LiveDetector(tagger, options, LiveOptions(lookahead_frames=DEFAULT_MARGIN_FRAMES))
    found = []
    for i in range(0, len(audio), 3200):
        found += [t.event for t in live.push(audio[i : i + 3200]).ended]
    found += [t.event for t in live.finish().ended]

    def near(a, b) -> bool:
        return (
            a.label == b.label and abs(a.onset - b.onset) <= 0.5 and abs(a.offset - b.offset) <= 0.5
        )

    assert len(expected) >= 3 and {e.label for e in expected} <= set(CLASSES)
    assert all(any(near(e, f) for f in found) for e in expected), (expected, found)
    assert all(any(near(f, e) for e in expected) for f in found), (expected, found)
