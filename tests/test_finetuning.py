# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Fine-tuning the backbone: every layer learns, BatchNorm statistics stay, seeded runs repeat,
and ``earmark train --finetune`` saves a backbone that ``classify`` and ``detect`` then use."""

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

from earmark.audio import SAMPLE_RATE
from earmark.audio import load as load_audio
from earmark.custom.clip_head import make_head
from earmark.custom.finetuning import N_BACKBONE_LAYERS, finetune, length_batches, unfused_backbone
from earmark.custom.training import TrainConfig, train

CLASSES = ("Dog bark", "Rooster", "Rain")


def _clips(esc10, folds: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    chosen = [c for c in esc10.clips if c.label in CLASSES and c.fold in folds]
    audios = [load_audio(c.path, SAMPLE_RATE) for c in chosen]
    return audios, np.array([CLASSES.index(c.label) for c in chosen])


def _layer_changed(before: torch.nn.Module, after: torch.nn.Module) -> list[bool]:
    return [
        any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
        for a, b in zip(before.features, after.features, strict=True)
    ]


def _buffers_equal(before: torch.nn.Module, after: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before.buffers(), after.buffers(), strict=True))


def test_whole_backbone_learns_and_seeded_runs_repeat(esc10, tagger) -> None:
    audios, labels = _clips(esc10, (1,))
    config = TrainConfig(finetune_epochs=1, finetune_batch=8, finetune_lr=1e-4)
    pretrained = unfused_backbone(tagger)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the same starting head
        head = make_head("logreg", pretrained.embedding_dim, len(CLASSES))
        tuned = finetune(audios, labels, head, tagger, config, seed=7)
        runs.append((tuned.net, tuned.head))
    (net, head), (net2, head2) = runs
    assert all(_layer_changed(pretrained, net)), "every backbone layer is trained"
    assert len(net.features) == N_BACKBONE_LAYERS
    assert _buffers_equal(pretrained, net), "BatchNorm statistics stay pretrained"
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters(), strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(head.parameters(), head2.parameters(), strict=True)
    )
    assert not any(p.requires_grad for p in net.parameters())


def test_top_layers_only(esc10, tagger) -> None:
    audios, labels = _clips(esc10, (1,))
    config = TrainConfig(finetune_epochs=1, finetune_batch=8, finetune_layers=2, finetune_mixup=0)
    pretrained = unfused_backbone(tagger)
    head = make_head("mlp", pretrained.embedding_dim, len(CLASSES))
    net = finetune(audios, labels, head, tagger, config, seed=0).net
    assert _layer_changed(pretrained, net) == [False] * 15 + [True, True]


def test_early_stopping_keeps_the_best_validation_epoch(esc10, tagger) -> None:
    from earmark.custom.clip_head import class_targets as _targets
    from earmark.custom.finetuning import _logits

    audios, labels = _clips(esc10, (1,))
    val_audios, val_labels = _clips(esc10, (2,))
    config = TrainConfig(finetune_epochs=3, finetune_batch=8, finetune_lr=3e-3)  # overshoots
    torch.manual_seed(0)
    head = make_head("logreg", unfused_backbone(tagger).embedding_dim, len(CLASSES))
    tuned = finetune(
        audios, labels, head, tagger, config, seed=0, validation=(val_audios, val_labels)
    )
    assert 1 <= tuned.epoch <= 3 and tuned.val_loss is not None
    logits = _logits(tuned.net, tuned.head, tagger.front_end, val_audios)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.from_numpy(_targets(val_labels, len(CLASSES)))
    )
    assert float(loss) == pytest.approx(tuned.val_loss, rel=1e-5)  # the kept epoch's weights


def test_length_batches_group_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = [5, 100, 6, 101, 7, 102, 8, 103]
    batches = length_batches(lengths, 4, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [
        [5, 6, 7, 8],
        [100, 101, 102, 103],
    ]


def test_train_finetune_saves_a_backbone_used_by_classify(tmp_path: Path, esc10, tagger) -> None:
    from earmark.custom.classify import classify
    from earmark.custom.model import load_custom_classes
    from earmark.custom.provider import detect_custom

    keep = [i for i, c in enumerate(esc10.clips) if c.label in CLASSES and c.fold in (1, 2, 3)]
    config = TrainConfig(
        seed=1,
        heads=("logreg",),
        baseline=False,
        finetune=True,
        finetune_epochs=2,
        finetune_keep="always",  # 24 clips per split: whether it beats the frozen head is luck
    )
    result = train(esc10.subset(keep), tmp_path / "model", tagger, config)
    ft = result.metrics["finetuned"]
    assert ft["whole_backbone"] and ft["layers"] == N_BACKBONE_LAYERS
    assert [s["split"] for s in ft["splits"]] == ["fold1", "fold2", "fold3"]
    assert all(1 <= s["epoch"] <= 2 for s in ft["splits"]) and 1 <= ft["final_epochs"] <= 2
    assert ft["mean_accuracy"] >= 0.9 and ft["seconds"] > 0
    assert ft["kept"] and ft["keep"] == "always"
    model_dir = result.model_dir
    assert (model_dir / "backbone.pt").is_file()
    assert json.loads((model_dir / "config.json").read_text())["backbone"]["finetuned"] is True
    assert list((model_dir / "tensorboard" / "finetune").rglob("events.out.tfevents.*"))
    custom = load_custom_classes(model_dir)
    assert custom.backbone_state == model_dir / "backbone.pt"
    saved = torch.load(model_dir / "backbone.pt", weights_only=True)["state_dict"]
    original = unfused_backbone(tagger).state_dict()
    assert any(
        not torch.equal(saved[k], original[k]) for k in original if k.startswith("features.0.")
    )
    fold4 = [c for c in esc10.clips if c.label in CLASSES and c.fold == 4]
    results = classify([c.path for c in fold4], model_dir, tagger)
    accuracy = np.mean([r.label == c.label for r, c in zip(results, fold4, strict=True)])
    assert accuracy >= 0.9, f"fine-tuned model on fold 4: accuracy {accuracy:.3f}"
    rooster = next(c for c in fold4 if c.label == "Rooster")
    events = detect_custom(rooster.path, model_dir, tagger, threshold=0.5)
    best = max(events, key=lambda e: e.mean)
    assert best.label == "Rooster" and best.offset - best.onset > 4.0, events
    assert all(e.peak < best.peak or e.mean < 0.5 for e in events if e is not best), events


def test_finetune_options_are_checked() -> None:
    with pytest.raises(ValueError, match="finetune_layers"):
        TrainConfig(finetune_layers=18).validate()
    with pytest.raises(ValueError, match="finetune_keep"):
        TrainConfig(finetune_keep="sometimes").validate()
    with pytest.raises(ValueError, match="learning rates"):
        TrainConfig(finetune_lr=0).validate()


def test_cli_rejects_bad_finetune_options(tmp_path: Path, esc10_dir: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "earmark.cli", "train", str(esc10_dir / "esc10_meta.csv"),
         "-o", str(tmp_path / "m"), "--finetune", "--finetune-layers", "18"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "finetune_layers" in done.stderr, done.stderr
    assert not (tmp_path / "m").exists()
