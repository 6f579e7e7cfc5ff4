# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Clip and framewise embeddings: the backbone's pooled feature, cached by file content."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from custom_fixtures import (  # noqa: F401
    embedding_cache,
    esc10,
    esc10_dir,
    esc10_embeddings,
    tagger,
)

from earmark.audio import load
from earmark.custom.embeddings import (
    Backbone,
    EmbeddingCache,
    EmbeddingSet,
    cache_root,
    embed_files,
)
from earmark.scoring import ScoringOptions


def test_esc10_embeddings_are_cached_by_content(esc10, esc10_embeddings, tagger) -> None:
    assert esc10_embeddings.embeddings.shape == (400, tagger.net.embedding_dim)
    assert np.isfinite(esc10_embeddings.embeddings).all()
    assert not esc10_embeddings.failed
    assert set(esc10_embeddings.folds.tolist()) == {1, 2, 3, 4, 5}
    # every file is now in the cache: a second pass computes nothing and gives the same values
    cache = EmbeddingCache(cache_root(), tagger.checkpoint_sha256)
    paths = [c.path for c in esc10.clips[:40]]
    again, _, errors = embed_files(paths, Backbone.from_tagger(tagger), cache=cache)
    assert cache.hits == 40 and cache.misses == 0 and not any(errors)
    np.testing.assert_array_equal(np.stack(again), esc10_embeddings.embeddings[:40])


def test_clip_embedding_is_the_official_pooled_feature(esc10, tagger) -> None:
    audio = load(esc10.clips[0].path)
    _, official = tagger.clip_scores(audio)
    ours = Backbone.from_tagger(tagger).clip_embedding(audio)
    np.testing.assert_allclose(ours, official, atol=1e-5)


def test_frame_embeddings_are_what_detection_scores(esc10, tagger) -> None:
    audio = load(esc10.clips[5].path)
    frames = Backbone.from_tagger(tagger).frame_embeddings(audio)
    assert frames.shape == (16, tagger.net.embedding_dim)  # 5 s at 0.32 s
    scores = tagger.frame_scores(audio, ScoringOptions())
    # the AudioSet head applied to the embeddings reproduces detect's framewise scores
    import torch

    with torch.no_grad():
        logits = tagger.net.classifier[2:](torch.from_numpy(frames))
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), scores.scores, atol=1e-5)


def test_bad_file_is_reported_and_the_others_embedded(tmp_path: Path, esc10, tagger) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio at all")
    good = tmp_path / "good.ogg"
    shutil.copy(esc10.clips[0].path, good)
    clips, _, errors = embed_files([good, bad], Backbone.from_tagger(tagger), cache=False)
    assert clips[0] is not None and errors[0] is None
    assert clips[1] is None and "broken.wav" in errors[1]
    # editing a file changes its hash: the cache does not serve the old embedding
    cache = EmbeddingCache(tmp_path / "cache", tagger.checkpoint_sha256)
    first, _, _ = embed_files([good], Backbone.from_tagger(tagger), cache=cache)
    shutil.copy(esc10.clips[100].path, good)
    second, _, _ = embed_files([good], Backbone.from_tagger(tagger), cache=cache)
    assert cache.hits == 0 and cache.misses == 2
    assert not np.allclose(first[0], second[0])


def test_embed_cli_writes_npz_and_parquet(tmp_path: Path, esc10_dir: Path) -> None:
    rows = ["filename,label,fold"]
    for i, folder in enumerate(sorted(p for p in esc10_dir.iterdir() if p.is_dir())[:2]):
        for f in sorted(folder.glob("*.ogg"))[:3]:
            rows.append(f"{f},{folder.name},{i + 1}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    for out in ("emb.npz", "emb.parquet"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "earmark.cli",
                "embed",
                str(tmp_path / "list.csv"),
                "-o",
                str(tmp_path / out),
                "--framewise",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        loaded = EmbeddingSet.load(tmp_path / out)
        assert loaded.embeddings.shape[0] == 6 and len(loaded.frames) == 6
        assert loaded.frames[0].shape[1] == loaded.embeddings.shape[1]
        assert loaded.labels[0].endswith("Dog bark") and list(loaded.folds) == [1] * 3 + [2] * 3


def test_map_png_and_self_contained_html(tmp_path: Path, esc10_embeddings) -> None:
    import json
    import re

    from earmark.custom.maps import make_map

    esc10_embeddings.save(tmp_path / "emb.npz")
    written = make_map(tmp_path / "emb.npz", tmp_path / "maps", method="tsne")
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "map.csv",
        "map.html",
        "map.png",
    ]
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = written["html"].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    data = json.loads(re.search(r'<script id="data"[^>]*>(.*?)</script>', page, re.S)[1])
    assert len(data["points"]) == 400 and len(data["colours"]) == 10
    point = data["points"][0]
    assert (written["html"].parent / point["audio"]).resolve() == Path(point["file"]).resolve()
    assert "mousemove" in page and "player.play" in page
    # clips of a class lie close together: nearest neighbour on the map shares the label
    xy = np.array([[p["x"], p["y"]] for p in data["points"]])
    labels = [p["label"] for p in data["points"]]
    dist = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(len(xy)) * 1e12
    agree = np.mean([labels[i] == labels[j] for i, j in enumerate(dist.argmin(1))])
    assert agree > 0.9


def test_progress_eta_counts_from_the_first_file_and_each_pass(monkeypatch) -> None:
    """The first ETA does not include model loading, cached files do not make it optimistic,
    and a second pass (augmented copies) starts its own estimate."""
    import io

    from earmark.custom import embeddings

    clock = iter([0.0, 30.0, 30.2, 32.0, 40.0, 100.0, 100.5, 103.0])
    monkeypatch.setattr(embeddings.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    printer = embeddings.ProgressPrinter(interval=0.0, stream=out)  # t=0: made, model loads
    printer(0, 10, 0)  # t=30: first report
    printer(1, 10, 0)  # t=30.2: too soon for a rate
    printer(3, 10, 1)  # t=32: 2 files embedded (1 cached) in 2 s -> 7 left, 7 s
    printer(10, 10, 1)  # t=40
    printer(0, 4, 0)  # t=100: second pass
    printer(1, 4, 0)  # t=100.5
    printer(2, 4, 0)  # t=103: 2 files in 3 s -> 2 left, 3 s
    lines = out.getvalue().splitlines()
    assert [line.split("ETA ")[1] for line in lines] == [
        "estimating", "estimating", "7 s", "done", "estimating", "estimating", "3 s"
    ]  # fmt: skip
