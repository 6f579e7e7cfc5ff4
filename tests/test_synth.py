"""``earmark synth``: soundscapes from real recordings, with TSV, JAMS and index that agree."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from earmark.audio import load
from earmark.cli import EXIT_OK, EXIT_USAGE, main
from earmark.evaluation import load_reference
from earmark.evaluation.synth import SynthError, load_foregrounds, parse_range

SR = 32000
LABELS = {"dog": "001 - Dog bark", "rooster": "009 - Rooster", "crying_baby": "004 - Baby cry"}


@pytest.fixture(scope="module")
def esc10(shared_dir: Path) -> Path:
    path = shared_dir / "audio" / "esc10"
    if not path.is_dir():
        pytest.skip(f"ESC-10 not found at {path}")
    return path


@pytest.fixture(scope="module")
def backgrounds(shared_dir: Path) -> Path:
    return shared_dir / "audio" / "backgrounds" / "sounds" / "places"


@pytest.fixture(scope="module")
def fg_folder(tmp_path_factory: pytest.TempPathFactory, esc10: Path) -> Path:
    """A labelled folder: two ESC-10 clips per label, as symlinks."""
    root = tmp_path_factory.mktemp("fg")
    for label, folder in LABELS.items():
        (root / label).mkdir()
        for clip in sorted((esc10 / folder).glob("*.ogg"))[:2]:
            (root / label / clip.name).symlink_to(clip)
    return root


def _synth(fg: Path, bg: Path, out: Path, *extra: str) -> int:
    args = ["synth", "--foreground", str(fg), "--background", str(bg), "-o", str(out), "-q"]
    return main([*args, "--duration", "10", "--events", "2:3", *extra])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, fg_folder: Path, backgrounds: Path) -> Path:
    out = tmp_path_factory.mktemp("synth") / "out"
    assert _synth(fg_folder, backgrounds, out, "--n", "2", "--snr", "20:25", "--seed", "3") == 0
    return out


def test_files_and_annotations_agree(made: Path) -> None:
    index = json.loads((made / "index.json").read_text())
    assert index["seed"] == 3 and index["parameters"]["snr_db"] == [20.0, 25.0]
    assert [e["file"] for e in index["soundscapes"]] == ["soundscape_000.wav", "soundscape_001.wav"]
    assert not list(made.glob(".*.tmp"))
    for entry in index["soundscapes"]:
        wav = made / entry["file"]
        audio = load(wav)
        assert audio.size == 10 * SR
        tsv = load_reference(wav.with_suffix(".tsv"))
        jams = json.loads(wav.with_suffix(".jams").read_text())
        assert jams["file_metadata"]["duration"] == 10.0 and jams["sandbox"] == {}
        (ann,) = jams["annotations"]
        assert ann["namespace"] == "scaper"
        assert 2 <= len(tsv) <= 3
        assert len(tsv) == len(ann["data"]) == len(entry["events"])
        for ref, obs, ev in zip(tsv, ann["data"], entry["events"], strict=True):
            assert ref.file == wav.name
            assert ref.label == obs["value"]["label"] == ev["label"]
            assert ref.label in LABELS
            assert obs["time"] == pytest.approx(ref.onset, abs=1e-3)
            assert obs["time"] + obs["duration"] == pytest.approx(ref.offset, abs=1e-3)
            assert ev["onset"] == pytest.approx(ref.onset, abs=1e-3)
            assert 20.0 <= ev["snr_db"] <= 25.0
            assert obs["value"]["snr"] == pytest.approx(ev["snr_db"], abs=1e-3)
            assert obs["confidence"] == 1.0


def test_labels_are_where_the_energy_is(made: Path) -> None:
    for wav in sorted(made.glob("*.wav")):
        audio = load(wav).astype(np.float64)
        inside = np.zeros(audio.size, dtype=bool)
        for ref in load_reference(wav.with_suffix(".tsv")):
            inside[round(ref.onset * SR) : round(ref.offset * SR)] = True
        assert inside.any() and not inside.all()
        rms_in = np.sqrt(np.mean(audio[inside] ** 2))
        rms_out = np.sqrt(np.mean(audio[~inside] ** 2))
        assert rms_in > 2.0 * rms_out  # events at 20-25 dB SNR over the background


def test_deterministic_for_a_seed(tmp_path: Path, fg_folder: Path, backgrounds: Path) -> None:
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert _synth(fg_folder, backgrounds, tmp_path / name, "--n", "1", "--seed", seed) == 0
        runs[name] = (
            (tmp_path / name / "soundscape_000.wav").read_bytes(),
            (tmp_path / name / "soundscape_000.tsv").read_text(),
        )
    assert runs["a"] == runs["b"]
    assert runs["a"][0] != runs["c"][0]


def test_csv_foregrounds_no_overlap(
    tmp_path: Path, esc10: Path, backgrounds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = ["filename,label"]
    for label, folder in LABELS.items():
        for clip in sorted((esc10 / folder).glob("*.ogg"))[2:4]:
            rows.append(f"{os.path.relpath(clip, lists)},{label}")
    (lists / "fg.csv").write_text("\n".join(rows) + "\n")
    clips = load_foregrounds(lists / "fg.csv")
    assert sorted({c.label for c in clips}) == sorted(LABELS) and len(clips) == 6
    out = tmp_path / "out"
    assert _synth(lists / "fg.csv", backgrounds, out, "--n", "1", "--no-overlap") == EXIT_OK
    events = load_reference(out / "soundscape_000.tsv")
    assert events
    for a, b in itertools.pairwise(events):
        assert b.onset >= a.offset


def test_errors(tmp_path: Path, fg_folder: Path, backgrounds: Path, capsys) -> None:
    def err(fg: Path, bg: Path, *extra: str) -> str:
        assert _synth(fg, bg, tmp_path / "out", *extra) == EXIT_USAGE
        return capsys.readouterr().err

    assert "foreground folder or CSV not found" in err(tmp_path / "nope", backgrounds)
    assert "background folder not found" in err(fg_folder, tmp_path / "nope")
    assert "upper bound" in err(fg_folder, backgrounds, "--events", "8:3")
    assert "--snr" in err(fg_folder, backgrounds, "--snr", "loud")
    empty_bg = tmp_path / "empty_bg"
    empty_bg.mkdir()
    assert "has no readable audio" in err(fg_folder, empty_bg)
    bad = tmp_path / "fg_bad"
    bad.mkdir()
    (bad / "dog").mkdir()
    (bad / "dog" / "x.ogg").symlink_to(next((fg_folder / "dog").iterdir()))
    (bad / "owl").mkdir()
    (bad / "owl" / "hoot.wav").write_bytes(b"not audio at all")
    message = err(bad, backgrounds)
    assert "label 'owl' has no readable audio" in message
    assert not (tmp_path / "out" / "index.json").exists()
    with pytest.raises(SynthError):
        parse_range("1:2:3", int)
    assert parse_range("4", int) == (4, 4)
