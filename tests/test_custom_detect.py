# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Custom classes in use: classify clips, and detect them in a soundscape with timestamps."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from custom_fixtures import (  # noqa: F401
    embedding_cache,
    esc10,
    esc10_dir,
    tagger,
)

from earmark.custom.model import load_custom_classes
from earmark.custom.training import TrainConfig, train
from earmark.evaluation import RefEvent, event_based_metrics
from earmark.evaluation.soundscape import ForegroundClip, make_soundscape, write_soundscape

MIX_BACKGROUND = Path("audio/backgrounds/sounds/places/cafe.mp3")


@pytest.fixture(scope="module")
def folds_1_4_model(tmp_path_factory, esc10, tagger, shared_dir: Path) -> Path:
    """A head trained on ESC-10 folds 1-4, with negatives from backgrounds other than the
    one the test soundscape is mixed over."""
    root = tmp_path_factory.mktemp("custom")
    negatives = root / "negatives"
    negatives.mkdir()
    for name in (
        "nature/wind.mp3",
        "rain/light-rain.mp3",
        "urban/traffic.mp3",
        "things/keyboard.mp3",
        "things/washing-machine.mp3",
    ):
        src = shared_dir / "audio" / "backgrounds" / "sounds" / name
        (negatives / src.name).symlink_to(src)
    subset = esc10.subset([i for i, c in enumerate(esc10.clips) if c.fold != 5])
    # the clip-head detector (the frame-level one is tested in test_custom_frames.py)
    config = TrainConfig(
        baseline=False, negatives=True, backgrounds=str(negatives), frame_head="none", augment=0
    )
    return train(subset, root / "model", tagger, config).model_dir


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "earmark.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_detect_classes_in_a_fold5_soundscape(
    tmp_path: Path, folds_1_4_model: Path, esc10, shared_dir: Path
) -> None:
    fold5 = [ForegroundClip(c.path, c.label) for c in esc10.clips if c.fold == 5]
    audio, refs = make_soundscape(
        shared_dir / MIX_BACKGROUND,
        fold5,
        45.0,
        (6, 6),
        (6.0, 15.0),
        np.random.default_rng(11),
        allow_overlap=False,
        min_gap=1.5,
    )
    write_soundscape(tmp_path / "mix.wav", audio, refs, 32000)
    ref = [RefEvent("mix", e.onset, e.offset, e.label) for e in refs]
    thresholds = json.loads((folds_1_4_model / "thresholds.json").read_text())["classes"]
    assert set(thresholds) == set(load_custom_classes(folds_1_4_model).classes)
    # no --threshold: every custom class uses the threshold calibrated when it was trained;
    # then one threshold for all (0.5, the natural cut of sigmoid outputs) for comparison
    for extra in ((), ("--threshold", "0.5")):
        out = tmp_path / f"out{len(extra)}"
        done = _run(
            "detect", str(tmp_path / "mix.wav"), "-o", str(out), "--classes",
            str(folds_1_4_model), "-q", *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with open(out / "events.csv", newline="") as handle:
            found = list(csv.DictReader(handle))
        assert found and all(row["mid"].startswith("custom:") for row in found)
        sys_ = [RefEvent("mix", float(r["onset"]), float(r["offset"]), r["label"]) for r in found]
        metrics = event_based_metrics(ref, sys_, t_collar=0.5, evaluate_offset=False)
        hits = metrics["overall"].get("Ntp")
        recall = metrics["overall"]["recall"]
        precision = metrics["overall"]["precision"]
        what = f"{extra or 'calibrated thresholds'} {thresholds}"
        assert recall >= 0.8, f"{what}: onsets within 0.5 s for {recall:.0%} ({hits}/{len(ref)})"
        assert precision >= 0.6, f"{what}: precision {precision:.2f} of {len(sys_)} detections"
        run = json.loads((out / "manifest.json").read_text())["custom_classes"]
        assert run["classes"] == sorted(thresholds) and not run["audioset"]
        if extra:
            assert (
                set(run["thresholds"].values()) == {0.5}
                and "--threshold" in run["threshold_source"]
            )
        else:
            assert run["thresholds"] == {k: v["threshold"] for k, v in thresholds.items()}
            assert run["threshold_source"].startswith("calibrated per class")
    # the report's method section says which classes and thresholds were used
    done = _run("report", str(tmp_path / "out0"), "-q")
    assert done.returncode == 0, done.stderr
    method = (tmp_path / "out0" / "report.md").read_text()
    assert f"10 custom classes from {folds_1_4_model}" in method
    assert "AudioSet classes" not in method.split("labels:")[1].split(";")[0]
    assert "custom-class thresholds: calibrated per class" in method


def test_custom_and_audioset_classes_together(
    tmp_path: Path, folds_1_4_model: Path, esc10, tagger
) -> None:
    from earmark.custom.provider import combined_labels
    from earmark.pipeline import DetectOptions

    options = DetectOptions(classes=str(folds_1_4_model), audioset=True)
    labels = combined_labels(tagger, options)
    assert len(labels) == 527 + 10
    names = [lab.name for lab in labels[527:]]
    assert "Rain (custom)" in names and "Dog bark" in names  # AudioSet has its own "Rain"
    clip = next(c for c in esc10.clips if c.fold == 5 and c.label == "Rooster")
    done = _run(
        "detect",
        str(clip.path),
        "-o",
        str(tmp_path / "out"),
        "--classes",
        str(folds_1_4_model),
        "--labels",
        "Speech;Animal",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "out" / "events.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r["label"] == "Rooster" and r["mid"] == "custom:Rooster" for r in rows)
    assert any(not r["mid"].startswith("custom:") for r in rows)  # AudioSet's animal classes


def test_classify_cli_and_errors(tmp_path: Path, folds_1_4_model: Path, esc10) -> None:
    clips = [c for c in esc10.clips if c.fold == 5][::8]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    done = _run(
        "classify",
        str(folds_1_4_model),
        *(str(c.path) for c in clips),
        str(bad),
        "--json",
        "-o",
        str(tmp_path / "new" / "folder" / "p.csv"),  # folders that do not exist yet
    )
    assert done.returncode == 1  # one file failed, the others were classified
    assert "Traceback" not in done.stderr
    results = json.loads(done.stdout)
    correct = sum(r["label"] == c.label for r, c in zip(results, clips, strict=False))
    assert correct >= len(clips) - 1, [r["label"] for r in results]  # ~97 % on fold 5
    assert results[-1]["label"] is None and "bad.wav" in results[-1]["error"]
    written = (tmp_path / "new" / "folder" / "p.csv").read_text()
    assert len(written.splitlines()) == len(clips) + 2
    assert _run("classify", str(tmp_path / "nothing"), str(clips[0].path)).returncode == 2
    shutil.copytree(folds_1_4_model, tmp_path / "broken")
    (tmp_path / "broken" / "head.pt").unlink()
    done = _run(
        "detect",
        str(clips[0].path),
        "-o",
        str(tmp_path / "o"),
        "--classes",
        str(tmp_path / "broken"),
    )
    assert done.returncode == 2 and "missing head.pt" in done.stderr
    assert load_custom_classes(folds_1_4_model).classes == sorted({c.label for c in esc10.clips})


def test_calibrated_thresholds_are_the_default(folds_1_4_model: Path, tagger) -> None:
    from earmark.cli import build_parser
    from earmark.cli_options import detect_overrides
    from earmark.config import load_options
    from earmark.custom.provider import check_custom_options
    from earmark.events import scores_to_events

    calibration = json.loads((folds_1_4_model / "thresholds.json").read_text())
    assert calibration["mixed"], "trained with --backgrounds: calibrated on mixtures"
    custom = load_custom_classes(folds_1_4_model)
    assert custom.thresholds == {k: v["threshold"] for k, v in calibration["classes"].items()}
    names = custom.classes
    # constant scores just above (even columns) or below (odd) each calibrated threshold
    values = [custom.thresholds[n] + (0.005 if i % 2 == 0 else -0.005) for i, n in enumerate(names)]
    scores = np.tile(np.array(values, dtype=np.float32), (20, 1))

    def firing(*extra: str) -> set[str]:
        argv = ["detect", "x.wav", "-o", "out", "--classes", str(folds_1_4_model), *extra]
        options = load_options(None, detect_overrides(build_parser().parse_args(argv)))
        labels, post = check_custom_options(tagger, options)
        return {e.label for e in scores_to_events(scores, 0.32, labels, post)}

    assert firing() == set(names[0::2])
    # a per-class override wins over the calibrated value of that class only
    assert firing("--class-threshold", f"{names[1]}=0.01") == set(names[0::2]) | {names[1]}
    # one threshold for all replaces the calibration
    assert firing("--threshold", "0.5") == {
        n for n, v in zip(names, values, strict=True) if v >= 0.5
    }
