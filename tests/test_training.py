# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Training heads on frozen embeddings: fold-5 accuracy, saved model folder, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from custom_fixtures import (  # noqa: F401
    embedding_cache,
    esc10,
    esc10_dir,
    esc10_embeddings,
    tagger,
)

from earmark.custom.clip_head import predict_proba
from earmark.custom.crossval import fit_split
from earmark.custom.embeddings import Backbone
from earmark.custom.training import TrainConfig, TrainingData, train


def _data(emb) -> TrainingData:
    classes = sorted(set(emb.labels))
    y = np.array([classes.index(label) for label in emb.labels])
    return TrainingData(emb.embeddings, y, emb.folds, emb.files, classes)


def test_trained_on_folds_1_to_4_classifies_fold_5(esc10_embeddings) -> None:
    data = _data(esc10_embeddings)
    train_idx = np.flatnonzero(data.folds != 5)
    test_idx = np.flatnonzero(data.folds == 5)
    kind, chosen, candidates, final = fit_split(
        data, train_idx, TrainConfig(), ("logreg", "mlp"), 0
    )
    assert {k for k, _ in candidates} == {"logreg", "mlp"}
    assert chosen.val_accuracy == max(r.val_accuracy for _, r in candidates)
    predicted = predict_proba(final.head, data.x[test_idx]).argmax(axis=1)
    accuracy = float(np.mean(predicted == data.y[test_idx]))
    assert accuracy > 0.9, f"fold-5 accuracy {accuracy:.3f} with a {kind} head"


def _state(path: Path) -> dict:
    return torch.load(path / "head.pt", weights_only=True)["state_dict"]


def test_train_writes_a_complete_deterministic_model(tmp_path: Path, esc10, tagger) -> None:
    keep = [
        i
        for i, c in enumerate(esc10.clips)
        if c.label in ("Dog bark", "Rooster", "Rain") and c.fold in (1, 2, 3)
    ]
    subset = esc10.subset(keep)
    config = TrainConfig(seed=3)
    first = train(subset, tmp_path / "a", tagger, config)
    second = train(subset, tmp_path / "b", tagger, TrainConfig(seed=3, baseline=False))
    for name in (
        "head.pt",
        "labels.json",
        "metrics.json",
        "config.json",
        "confusion.png",
        "confusion.csv",
        "baseline_confusion.csv",
        "predictions.csv",
    ):
        assert (first.model_dir / name).is_file(), name
    assert list((first.model_dir / "tensorboard").rglob("events.out.tfevents.*"))
    a, b = _state(first.model_dir), _state(second.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.metrics["head"]["mean_accuracy"] == second.metrics["head"]["mean_accuracy"]
    metrics = json.loads((first.model_dir / "metrics.json").read_text())
    assert [s["split"] for s in metrics["head"]["splits"]] == ["fold1", "fold2", "fold3"]
    assert metrics["head"]["mean_accuracy"] >= 0.9
    assert 0.0 < metrics["baseline"]["mean_accuracy"] <= 1.0
    config_doc = json.loads((first.model_dir / "config.json").read_text())
    assert config_doc["train"]["seed"] == 3
    assert config_doc["backbone"]["checkpoint_sha256"] == tagger.checkpoint_sha256
    assert config_doc["classes"] == ["Dog bark", "Rain", "Rooster"]
    lines = (first.model_dir / "confusion.csv").read_text().splitlines()
    assert len(lines) == 4 and sum(int(v) for ln in lines[1:] for v in ln.split(",")[1:]) == 72
    with pytest.raises(ValueError, match="--overwrite"):
        train(subset, tmp_path / "a", tagger, config)
    assert not list(tmp_path.glob(".a.partial-*"))


def test_augmented_copies_and_negatives(tmp_path: Path, esc10, tagger, shared_dir: Path) -> None:
    from earmark.custom.crossval import assemble

    keep = [i for i, c in enumerate(esc10.clips) if c.label in ("Dog bark", "Rain") and c.fold <= 2]
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    (backgrounds / "wind.mp3").symlink_to(
        shared_dir / "audio" / "backgrounds" / "sounds" / "nature" / "wind.mp3"
    )
    config = TrainConfig(augment=1, backgrounds=str(backgrounds), negatives=True)
    data = assemble(esc10.subset(keep), Backbone.from_tagger(tagger), config)
    assert data.aug_x is not None and len(data.aug_x) == len(data.x) == 32
    assert not np.allclose(data.aug_x, data.x)  # the copies differ from the clips
    assert data.neg_x is not None and len(data.neg_x) >= 1
    rows_x, rows_y = data.training_rows(np.arange(16))
    assert len(rows_x) == 16 + 16 + len(data.neg_x) and (rows_y == -1).sum() == len(data.neg_x)
