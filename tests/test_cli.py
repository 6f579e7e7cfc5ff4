"""The ``earmark`` command line: in-process through ``earmark.cli.main``, and once for real."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from earmark.assets import needed_files
from earmark.cli import EXIT_FILES_FAILED, EXIT_OK, EXIT_USAGE, main
from earmark.tagger import Tagger, load_model

DOG = "esc10_dog_1-100032-A.ogg"
SPEECH_BELL = "panns_R9_ZSCveAHg_7s.wav"
STEREO_WAV = "fmt_stereo_16bit.wav"
ROBIN = "librosa_robin.ogg"
CHECKPOINT = "mn04_as_mAP_432.pt"
CHECKPOINT_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/" + CHECKPOINT


@pytest.fixture(scope="module", autouse=True)
def one_thread(model_dir: Path) -> Iterator[None]:
    """Every in-process run scores with one torch thread (fast on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> Tagger:
    return load_model()


def _events(out: Path) -> list[dict]:
    with open(out / "events.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _good_and_corrupt(folder: Path, fixtures_dir: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "dog.ogg"
    shutil.copy(fixtures_dir / DOG, good)
    bad = folder / "corrupt.wav"  # binary junk with an audio name
    bad.write_bytes(bytes((i * 37 + 11) % 256 for i in range(4096)))
    return good, bad


# ---------------------------------------------------------------------------- detect, exit codes
def test_detect_one_corrupt_file_exit_1(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    good, bad = _good_and_corrupt(tmp_path / "in", fixtures_dir)
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "in"), "-o", str(out)]) == EXIT_FILES_FAILED
    captured = capsys.readouterr()
    assert str(bad) in captured.err and "FAILED" in captured.err
    assert str(good) not in captured.err.replace(str(bad), "")  # only the bad file is blamed
    assert "2 file(s): 1 ok, 0 partial, 1 failed" in captured.out
    # the good file's results are written all the same
    stem = out / "files" / "dog.ogg"
    for suffix in (".events.csv", ".events.json", ".events.tsv", ".audacity.txt", ".scores.npz"):
        assert Path(f"{stem}{suffix}").is_file(), suffix
    rows = _events(out)
    assert rows and {r["file"] for r in rows} == {str(good)}
    assert {"Dog", "Bark"} & {r["label"] for r in rows}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["path"]: f["status"] for f in manifest["files"]} == {
        str(bad): "failed",
        str(good): "ok",
    }


def test_detect_good_files_json(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    inputs = [str(fixtures_dir / DOG), str(fixtures_dir / SPEECH_BELL)]
    out = tmp_path / "out"
    assert main(["detect", *inputs, "-o", str(out), "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    totals = report["totals"]
    assert totals["files"] == 2 and totals["ok"] == 2 and totals["failed"] == 0
    assert totals["audio_seconds"] == pytest.approx(12.0, abs=0.01)
    rows = _events(out)
    assert totals["events"] == len(rows) > 0
    assert sum(v["events"] for v in report["events_by_label"].values()) == len(rows)
    assert "Speech" in report["events_by_label"]
    assert [f["status"] for f in report["files"]] == ["ok", "ok"]
    assert report["out_dir"] == str(out)
    # progress goes to stderr, never into the JSON on stdout
    assert "earmark: 2 file(s)" in captured.err


def test_quiet_prints_only_errors(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    out = tmp_path / "ok"
    assert main(["detect", str(fixtures_dir / ROBIN), "-o", str(out), "-q"]) == EXIT_OK
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert _events(out)

    good, bad = _good_and_corrupt(tmp_path / "in", fixtures_dir)
    code = main(["detect", str(good), str(bad), "-o", str(tmp_path / "bad"), "--quiet"])
    assert code == EXIT_FILES_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert str(bad) in line and "FAILED" in line


# ---------------------------------------------------------------------------- config files
def _config_rows(out: Path) -> dict:
    return yaml.safe_load((out / "config.yaml").read_text())


def test_config_files_set_options(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    inputs = [str(fixtures_dir / DOG), str(fixtures_dir / SPEECH_BELL)]
    high = tmp_path / "high.yaml"
    high.write_text("threshold: 0.9\nmin-duration: 0.5\nformats: [csv, json]\n")
    low = tmp_path / "low.toml"
    low.write_text('formats = ["csv", "tsv"]\n\n[postprocess]\nthreshold = 0.1\nmerge_gap = 0.64\n')

    assert main(["detect", *inputs, "-o", str(tmp_path / "high"), "-c", str(high), "-q"]) == 0
    assert main(["detect", *inputs, "-o", str(tmp_path / "low"), "--config", str(low), "-q"]) == 0
    capsys.readouterr()

    high_cfg, low_cfg = _config_rows(tmp_path / "high"), _config_rows(tmp_path / "low")
    assert high_cfg["postprocess"]["threshold"] == 0.9
    assert high_cfg["postprocess"]["min_duration"] == 0.5
    assert high_cfg["formats"] == ["csv", "json"]
    assert low_cfg["postprocess"]["threshold"] == 0.1
    assert low_cfg["postprocess"]["merge_gap"] == 0.64
    assert low_cfg["formats"] == ["csv", "tsv"]
    assert high_cfg["scoring"] == low_cfg["scoring"]  # untouched options keep their defaults

    high_rows, low_rows = _events(tmp_path / "high"), _events(tmp_path / "low")
    assert len(high_rows) < len(low_rows)
    assert all(float(r["peak"]) >= 0.9 for r in high_rows)
    assert all(float(r["duration"]) >= 0.5 for r in high_rows)
    # per-file formats follow the config
    files = tmp_path / "high" / "files"
    assert (files / f"{DOG}.events.json").is_file()
    assert not (files / f"{DOG}.events.tsv").exists()
    assert (tmp_path / "low" / "files" / f"{DOG}.events.tsv").is_file()


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("typo.yaml", "threshold: 0.5\nmin_durration: 1\n", "min_durration"),
        ("typo.toml", "[postprocess]\ntresholds = {}\n", "postprocess.tresholds"),
    ],
)
def test_config_unknown_key_exit_2(
    tmp_path: Path, fixtures_dir: Path, capsys, name: str, text: str, key: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    out = tmp_path / "out"
    code = main(["detect", str(fixtures_dir / DOG), "-o", str(out), "-c", str(config)])
    assert code == EXIT_USAGE
    captured = capsys.readouterr()
    assert f"unknown option '{key}'" in captured.err and str(config) in captured.err
    assert not out.exists()


def test_written_config_reproduces_the_run(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    inputs = [str(fixtures_dir / SPEECH_BELL), str(fixtures_dir / ROBIN)]
    first = tmp_path / "first"
    args = ["--threshold", "0.2", "--median-filter", "0.96", "--exclude", "Silence", "-q"]
    assert main(["detect", *inputs, "-o", str(first), *args]) == EXIT_OK
    config = first / "config.yaml"
    assert _config_rows(first)["postprocess"]["exclude"] == ["Silence"]
    second = tmp_path / "second"
    assert main(["detect", *inputs, "-o", str(second), "-c", str(config), "-q"]) == EXIT_OK
    capsys.readouterr()
    assert (first / "events.csv").read_bytes() == (second / "events.csv").read_bytes()
    assert len(_events(first)) > 0
    assert (first / "config.yaml").read_bytes() == (second / "config.yaml").read_bytes()


# ---------------------------------------------------------------------------- class selection
def test_labels_only_yields_descendants(
    tmp_path: Path, fixtures_dir: Path, tagger: Tagger, capsys
) -> None:
    out = tmp_path / "out"
    inputs = [str(fixtures_dir / DOG), str(fixtures_dir / SPEECH_BELL)]
    assert main(["detect", *inputs, "-o", str(out), "--labels", "Dog", "-q"]) == EXIT_OK
    capsys.readouterr()
    onto = tagger.ontology
    dog = onto.mid("Dog")
    allowed = {onto.name(m) for m in onto.descendants(dog)} | {"Dog"}
    labels = {r["label"] for r in _events(out)}
    assert labels and labels <= allowed
    assert "Bark" in labels


def test_group_by_top_yields_top_level_categories(
    tmp_path: Path, fixtures_dir: Path, tagger: Tagger, capsys
) -> None:
    out = tmp_path / "out"
    inputs = [str(fixtures_dir / DOG), str(fixtures_dir / SPEECH_BELL)]
    assert main(["detect", *inputs, "-o", str(out), "--group-by", "top", "-q"]) == EXIT_OK
    capsys.readouterr()
    top = {tagger.ontology.name(m) for m in tagger.ontology.top_level()}
    labels = {r["label"] for r in _events(out)}
    assert labels and labels <= top
    assert {"Animal", "Human sounds"} <= labels


def test_unknown_class_is_a_usage_error(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["detect", str(fixtures_dir / DOG), "-o", str(out), "--labels", "Dgo"]) == 2
    captured = capsys.readouterr()
    assert "unknown class 'Dgo'" in captured.err and "Dog" in captured.err
    assert not out.exists()


# ---------------------------------------------------------------------------- models and assets
def test_models_lists_where_each_model_is(
    model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("EARMARK_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["models"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line.startswith("mn")}
    assert f"env: {model_dir / CHECKPOINT}" in rows["mn04_as"]
    assert "*" in rows["mn04_as"].split("env:")[0]  # the default
    others = [name for name in rows if name != "mn04_as"]
    assert len(others) >= 5
    assert all(rows[name].rstrip().endswith("missing") for name in others)

    assert main(["models", "--json"]) == EXIT_OK
    models = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert models.keys() == rows.keys()
    assert models["mn04_as"]["where"].startswith("env")
    assert models["mn04_as"]["default"] is True
    assert all(models[name]["where"] == "missing" for name in others)


def test_missing_model_offline_exit_2(
    tmp_path: Path, fixtures_dir: Path, monkeypatch, capsys
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("EARMARK_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EARMARK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    out = tmp_path / "out"
    assert main(["detect", str(fixtures_dir / DOG), "-o", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert CHECKPOINT in err and CHECKPOINT_URL in err and "EARMARK_MODEL_DIR" in err
    assert not out.exists()  # nothing is written when the model is missing


# ---------------------------------------------------------------------------- parallel jobs
def test_jobs_2_gives_the_same_events(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    inputs = [str(fixtures_dir / n) for n in (DOG, STEREO_WAV, ROBIN)]
    assert main(["detect", *inputs, "-o", str(tmp_path / "j1"), "-j", "1", "-q"]) == EXIT_OK
    assert main(["detect", *inputs, "-o", str(tmp_path / "j2"), "-j", "2", "-q"]) == EXIT_OK
    capsys.readouterr()
    one = (tmp_path / "j1" / "events.csv").read_text()
    two = (tmp_path / "j2" / "events.csv").read_text()
    assert one == two
    assert {r["file"] for r in _events(tmp_path / "j1")} == set(inputs)
    manifest = json.loads((tmp_path / "j2" / "manifest.json").read_text())
    assert manifest["options"]["jobs"] == 2
    assert [f["path"] for f in manifest["files"]] == inputs


# ---------------------------------------------------------------------------- the real command
def test_console_script_exit_code(tmp_path: Path, fixtures_dir: Path, model_dir: Path) -> None:
    script = Path(sys.executable).with_name("earmark")
    if not script.exists():
        script = shutil.which("earmark")  # type: ignore[assignment]
    assert script, "the earmark console script is not installed"
    good, bad = _good_and_corrupt(tmp_path / "in", fixtures_dir)
    out = tmp_path / "out"
    env = {**os.environ, "EARMARK_MODEL_DIR": str(model_dir)}
    done = subprocess.run(
        [str(script), "detect", str(tmp_path / "in"), "-o", str(out), "--threads", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_FILES_FAILED, done.stderr
    assert str(bad) in done.stderr
    assert "1 ok, 0 partial, 1 failed" in done.stdout
    assert (out / "files" / f"{good.name}.events.csv").is_file()


def test_models_fetch_verifies_present_files_and_reports_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["models", "fetch"]) == EXIT_OK  # model dir has the default model and labels
    out = capsys.readouterr().out
    assert "mn04_as_mAP_432.pt\tenv\t" in out and "class_labels_indices.csv" in out
    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    assert main(["models", "fetch", "mn10_as", "--dir", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "mn10_as_mAP_471.pt" in err and "EARMARK_OFFLINE" in err and "https://" in err
    assert main(["models", "fetch", "no-such-model"]) == EXIT_USAGE
    assert "Unknown asset 'no-such-model'" in capsys.readouterr().err


def test_missing_model_files_listed_all_at_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fixtures_dir: Path,
) -> None:
    """Offline with no model files: one error names every file a run needs, each with its URL
    and sha256, and the one command that fetches them (not one missing file per attempt)."""
    monkeypatch.setenv("EARMARK_MODEL_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("EARMARK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    clip = fixtures_dir / "esc10_dog_1-100032-A.ogg"
    code = main(["detect", str(clip), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    for asset in needed_files():
        assert asset.filename in err and asset.url in err and asset.sha256 in err
    assert "earmark models fetch --dir DIR" in err and "EARMARK_MODEL_DIR=DIR" in err
    assert "Traceback" not in err and len(err.splitlines()) <= 8  # short and structured


def test_version_and_every_event_default_in_help(capsys) -> None:
    from importlib import metadata

    from earmark.events import DEFAULT_MEDIAN_FILTER, DEFAULT_MERGE_GAP, DEFAULT_THRESHOLD

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"earmark {metadata.version('earmark')}"
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for value in (DEFAULT_THRESHOLD, DEFAULT_MEDIAN_FILTER, DEFAULT_MERGE_GAP):
        assert f"(default {value})" in text
