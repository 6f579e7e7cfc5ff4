"""The ONNX Runtime back end computes what PyTorch computes; its exported graph is cached safely."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from earmark import backends
from earmark.audio import load
from earmark.scoring import ScoringOptions
from earmark.tagger import Tagger, load_model


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> Tagger:
    torch.set_num_threads(1)
    return load_model("mn04_as")


@pytest.fixture(scope="module")
def street(shared_dir: Path) -> np.ndarray:
    """80 s of a real busy street, then 20 s of a real office."""
    sounds = shared_dir / "audio" / "backgrounds" / "sounds"
    return np.concatenate(
        [
            load(sounds / "urban" / "busy-street.mp3")[: 80 * 32000],
            load(sounds / "places" / "office.mp3")[: 20 * 32000],
        ]
    )


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EARMARK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.mark.parametrize("seconds", [100.0, 3.0, 0.2])
def test_onnxruntime_scores_equal_torch(tagger: Tagger, street: np.ndarray, seconds: float) -> None:
    """Several blocks, one block shorter than the SE gates' context, and a single frame."""
    audio = street[: round(seconds * 32000)]
    opts = {"features": True, "embeddings": True}
    ref = tagger.scorer(ScoringOptions(backend="torch", **opts)).score(audio)
    got = tagger.scorer(ScoringOptions(backend="onnxruntime", **opts)).score(audio)
    assert got.scores.shape == ref.scores.shape and got.duration == ref.duration
    assert np.abs(got.scores - ref.scores).max() < 2e-5
    assert np.abs(got.embeddings - ref.embeddings).max() < 1e-4
    assert np.abs(got.features - ref.features).max() < 1e-4
    # ... and the same for other SE and pooling windows (a graph of their own)
    other = ScoringOptions(backend="onnxruntime", se_context=7, pool=3)
    ref = tagger.scorer(ScoringOptions(backend="torch", se_context=7, pool=3)).score(audio)
    assert np.abs(tagger.scorer(other).score(audio).scores - ref.scores).max() < 2e-5


def test_exported_graph_is_cached_and_verified(tagger: Tagger, cache: Path) -> None:
    net, sha = tagger.net, tagger.checkpoint_sha256
    first = backends.cached_onnx(net, sha, 15, 5)
    files = sorted(cache.glob("*.onnx"))
    assert len(files) == 1 and files[0].read_bytes() == first
    stamp = files[0].with_name(files[0].name + ".sha256")
    assert stamp.read_text().strip() == hashlib.sha256(first).hexdigest()
    assert backends.cached_onnx(net, sha, 15, 5) == first  # read back
    # a damaged copy is not used: the graph is exported again and the copy repaired
    files[0].write_bytes(first[:1000])
    assert backends.cached_onnx(net, sha, 15, 5) == first
    assert files[0].read_bytes() == first
    # another context is another graph
    backends.cached_onnx(net, sha, 7, 5)
    assert len(list(cache.glob("*.onnx"))) == 2


def test_unwritable_cache_still_scores(tagger: Tagger, tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("EARMARK_CACHE_DIR", str(blocked))
    runner, name = backends.block_runner(tagger.net, tagger.checkpoint_sha256, 15, 5, "auto")
    assert name == "onnxruntime"
    out = runner(torch.zeros(1, 1, 128, 320), True)
    assert out.logits.shape == (1, 10, 527) and out.features.shape[2] == 10


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends.resolve_backend("auto") == "onnxruntime"
    assert backends.resolve_backend("torch") == "torch"
    with pytest.raises(ValueError, match="unknown back end 'tensorrt'"):
        backends.resolve_backend("tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        ScoringOptions(backend="tensorrt").validate()
    monkeypatch.setattr(backends, "onnx_available", lambda: False)
    assert backends.resolve_backend("auto") == "torch"
    with pytest.raises(ValueError, match="pip install onnxruntime onnx"):
        backends.resolve_backend("onnxruntime")
