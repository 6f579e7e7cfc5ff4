"""Shared test fixtures: where the real audio and model assets live.

Tests find the shared data through ``EARMARK_SHARED`` (default ``../shared`` next to the
repository). When it is missing they skip with a clear message, except under ``CI=true``,
where a missing data folder is a failure: CI must never go green by skipping everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing

REPO_ROOT = Path(__file__).resolve().parents[1]

SLOW_MODULES = {
    "test_custom_detect.py",
    "test_custom_frames.py",
    "test_finetuning.py",
    "test_training.py",
    "test_faults.py",
    "test_review_cli.py",
    "test_review_page.py",
    "test_repeats.py",
    "test_repeats_mixing.py",
    "test_listen.py",
    "test_listen_sinks.py",
}
"""Modules whose tests train models, build series or drive live streams and sinks; with every
test of ``tests/service/`` (real Redis, PostgreSQL, Chromium) they are marked ``slow``, so
``make test-fast`` (``-m "not slow"``) leaves them out. ``make test`` and CI run them all."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_MODULES` and of ``tests/service/`` as ``slow``."""
    for item in items:
        path = Path(str(item.fspath))
        if path.name in SLOW_MODULES or path.parent.name == "service":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests never write into the user's cache (e.g. the ONNX graph of :mod:`earmark.backends`):
    ``EARMARK_CACHE_DIR`` points to a folder of the test session, for the CLI runs too."""
    folder = tmp_path_factory.mktemp("earmark-cache")
    before = os.environ.get("EARMARK_CACHE_DIR")
    os.environ["EARMARK_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("EARMARK_CACHE_DIR", None)
    else:
        os.environ["EARMARK_CACHE_DIR"] = before


def _shared_dir() -> Path:
    return Path(os.environ.get("EARMARK_SHARED", REPO_ROOT.parent / "shared")).resolve()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        missing(f"{what} not found at {path} (set EARMARK_SHARED to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (real recordings, model weights, golden outputs)."""
    return _require(_shared_dir(), "shared data folder")


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    """Small real audio files for unit tests."""
    return _require(shared_dir / "audio" / "fixtures", "audio fixtures")


@pytest.fixture(scope="session")
def model_dir(shared_dir: Path) -> Path:
    """Folder with the real model checkpoint and label files; also exported as EARMARK_MODEL_DIR."""
    path = Path(os.environ.get("EARMARK_MODEL_DIR", shared_dir / "models")).resolve()
    _require(path / "mn04_as_mAP_432.pt", "mn04_as checkpoint")
    os.environ["EARMARK_MODEL_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    """Outputs of the official EfficientAT code on real audio."""
    return _require(shared_dir / "golden" / "efficientat-mn04", "EfficientAT golden outputs")
