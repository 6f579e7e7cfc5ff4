"""A real run folder of ``earmark detect`` for the review tests: detected once per session,
copied fresh for every test (``review_run``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

RECORDINGS = ("scaper_soundscape_20200501_22050.wav", "esc10_dog_1-100032-A.ogg")


@pytest.fixture(scope="session")
def detected_run(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path, model_dir: Path):
    """``earmark detect`` on a real 10 s soundscape and an ESC-10 dog clip."""
    from earmark.cli import main

    out = tmp_path_factory.mktemp("review") / "run"
    code = main(["detect", *(str(fixtures_dir / r) for r in RECORDINGS), "-o", str(out), "-q"])
    assert code == 0
    return out


@pytest.fixture
def review_run(detected_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the detected run (no reviews yet)."""
    return Path(shutil.copytree(detected_run, tmp_path / "run"))
