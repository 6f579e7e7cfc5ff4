"""Session fixtures for the custom-class tests: ESC-10, the backbone, embeddings computed once.

Embeddings go to a per-session cache folder (``EARMARK_EMBEDDING_CACHE``): the first module that
asks computes them, the others read them back from the content-hash cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from earmark.custom.datasets import Dataset, load_dataset
from earmark.custom.embeddings import CACHE_ENV, Backbone, EmbeddingSet, embed_dataset


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty embedding cache for this test session."""
    path = tmp_path_factory.getbasetemp() / "embedding-cache"
    os.environ[CACHE_ENV] = str(path)
    return path


@pytest.fixture(scope="session")
def esc10_dir(shared_dir: Path) -> Path:
    """ESC-10 with its official folds."""
    path = shared_dir / "audio" / "esc10"
    if not (path / "esc10_meta.csv").is_file():
        pytest.fail(f"ESC-10 not found at {path}")
    return path


@pytest.fixture(scope="session")
def esc10(esc10_dir: Path) -> Dataset:
    """The ESC-10 dataset read from its meta CSV."""
    return load_dataset(esc10_dir / "esc10_meta.csv")


@pytest.fixture(scope="session")
def tagger(model_dir: Path, embedding_cache: Path):
    """The default pretrained model, one torch thread."""
    from earmark.tagger import load_model

    return load_model(threads=1)


@pytest.fixture(scope="session")
def esc10_embeddings(esc10: Dataset, tagger, embedding_cache: Path) -> EmbeddingSet:
    """Clip embeddings of all 400 ESC-10 clips (computed once per session)."""
    return embed_dataset(esc10, Backbone.from_tagger(tagger))
