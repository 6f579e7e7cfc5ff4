"""Fine-tuning the whole backbone together with a custom-class head (``earmark train --finetune``).

The recipe is *linear probe, then fine-tune* (LP-FT): the head starts from the one fitted on
frozen embeddings in the same split, so the first gradient steps do not wreck the pretrained
features with a random head's errors; then every layer of the backbone and the head are trained
jointly with AdamW and a cosine learning-rate decay.

What makes this feasible on a CPU for small datasets (ESC-10: 400 clips of 5 s):

* clips are batched (``finetune_batch``, 16): batches are formed from clips of similar length
  and every clip of a batch is randomly cropped to the shortest one (at most
  :data:`FINETUNE_CROP_SECONDS`), which is also a time-shift augmentation;
* BatchNorm layers keep their pretrained statistics (eval mode): batches of 16 are too small to
  estimate them, and the saved network can then be folded for inference like the pretrained one;
* ``--augment N`` augments on the fly: each clip is augmented with probability
  ``N / (N + 1)`` at every epoch (the same proportion as the N copies of the frozen head);
* ``finetune_layers`` can restrict training to the top layers (the others run under
  ``no_grad``), for larger datasets or slower machines.

Cross-validation uses the same splits as the frozen head. In each, the head and backbone are
fine-tuned on the training part minus an inner validation part (one training fold, as for the
frozen heads), and the epoch with the lowest validation loss is kept (early stopping). The
final fine-tuning on all clips runs for the median of those epochs. The fine-tuned backbone is
kept only when its mean accuracy matches or beats the frozen head's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from earmark.audio import SAMPLE_RATE
from earmark.custom.calibration import calibration_audio
from earmark.custom.clip_head import (
    MODEL_FORMAT,
    class_targets,
    classification_metrics,
    fit_head,
    inner_split,
    outer_splits,
    predict_proba,
    save_head,
    torch_module,
)
from earmark.custom.data import (
    Augmenter,
    Log,
    TrainConfig,
    TrainingData,
    background_files,
    load_backgrounds,
)
from earmark.custom.fitting import tensorboard_writer

if TYPE_CHECKING:
    import torch

FINETUNE_CROP_SECONDS = 10.0
"""Longer clips are randomly cropped to this length at every fine-tuning step."""
N_BACKBONE_LAYERS = 17
"""Layers of ``MobileNet.features``: stem, 15 inverted residual blocks, last conv."""


def unfused_backbone(tagger: object):
    """A trainable copy of the tagger's network (BatchNorm not folded), from its checkpoint."""
    torch = torch_module()
    from earmark.model import build_model

    state = torch.load(tagger.checkpoint.path, map_location="cpu", weights_only=True)  # type: ignore[attr-defined]
    state = state.get("state_dict", state)
    return build_model(tagger.spec.width, state)  # type: ignore[attr-defined]


def length_batches(
    lengths: Sequence[int], batch: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index batches of clips of similar length, in random order.

    Clips are shuffled, stably sorted by length and cut into batches of ``batch``; the batches
    are then shuffled, so equal-length datasets get fully random batches.
    """
    order = rng.permutation(len(lengths))
    order = order[np.argsort(np.asarray(lengths)[order], kind="stable")]
    chunks = [order[i : i + batch] for i in range(0, len(order), batch)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def _crop(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, len(audio) - n + 1))
    return audio[start : start + n]


def mixup(x: np.ndarray, y: object, alpha: float, rng: np.random.Generator) -> tuple:
    """Mix every clip of a batch with another one of it, weights ``lambda ~ Beta(alpha, alpha)``
    (per clip, the larger one on the clip's own side), and their targets alike."""
    torch = torch_module()
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)
    other = rng.permutation(len(x))
    mixed = lam[:, None] * x + (1.0 - lam[:, None]) * x[other]
    weight = torch.from_numpy(lam)[:, None]
    return mixed.astype(np.float32), weight * y + (1.0 - weight) * y[torch.from_numpy(other)]  # type: ignore[index,operator]


@dataclass
class Finetuned:
    """A fine-tuned network and head, and the epoch whose weights they hold."""

    net: torch.nn.Module
    head: object
    epoch: int
    val_loss: float | None = None


def _logits(net: object, head: object, front_end: Callable[..., Any], audios: Sequence[np.ndarray]):
    """Head logits ``(clips, classes)`` of whole clips (eval mode, no gradients)."""
    torch = torch_module()
    with torch.no_grad():
        return head(torch.from_numpy(_embed(net, front_end, audios)))  # type: ignore[operator]


def _embed(net: object, front_end: Callable[..., Any], audios: Sequence[np.ndarray]) -> np.ndarray:
    """Clip embeddings of whole clips with a (fine-tuned, unfused) network, in eval mode."""
    torch = torch_module()
    rows = []
    with torch.no_grad():
        for audio in audios:
            x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)[None])
            rows.append(net.feature_map(front_end(x)).mean(dim=(2, 3))[0].numpy())  # type: ignore[attr-defined]
    return np.stack(rows)


def finetune(
    audios: Sequence[np.ndarray],
    labels: np.ndarray,
    head: object,
    tagger: object,
    config: TrainConfig,
    seed: int,
    negatives: Sequence[np.ndarray] = (),
    augmenter: Augmenter | None = None,
    writer: object | None = None,
    log: Log | None = None,
    held_out: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    validation: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    epochs: int | None = None,
) -> Finetuned:
    """Fine-tune the backbone (all layers, or the top ``config.finetune_layers``) and ``head``.

    ``head`` is trained in place; it should come fitted on frozen embeddings (LP-FT).
    ``negatives`` are clips of none of the classes. The backbone learns at
    ``config.finetune_lr`` and the head at ``config.finetune_head_lr``, both decayed to zero
    along a cosine over ``epochs`` (default ``config.finetune_epochs``) epochs.

    With ``validation`` (clips, labels), the weights of the epoch with the lowest validation
    loss are kept (early stopping, as for the frozen heads). With ``held_out`` (clips, labels),
    its accuracy after every epoch goes to the log and ``writer``: a curve to look at, never
    used to choose anything. Returns the network and head in eval mode, and the epoch kept.
    """
    torch = torch_module()
    say = log or (lambda _m: None)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = unfused_backbone(tagger)
    net.eval()  # BatchNorm keeps its pretrained statistics; gradients flow all the same
    front_end = tagger.front_end  # type: ignore[attr-defined]
    frozen = N_BACKBONE_LAYERS - config.finetune_layers if config.finetune_layers else 0
    lower, upper = net.features[:frozen], net.features[frozen:]
    for param in net.parameters():
        param.requires_grad_(False)
    for param in upper.parameters():
        param.requires_grad_(True)
    items = list(audios) + list(negatives)
    n_out = head.n_classes  # type: ignore[attr-defined]
    targets = torch.from_numpy(
        class_targets(np.concatenate([labels, np.full(len(negatives), -1, np.int64)]), n_out)
    )
    lengths = [len(a) for a in items]
    crop_max = int(FINETUNE_CROP_SECONDS * SAMPLE_RATE)
    augment = cast(int, config.augment)  # set whenever there is an augmenter
    p_augment = augment / (augment + 1) if augmenter is not None else 0.0
    optimiser = torch.optim.AdamW(
        [
            {"params": list(upper.parameters()), "lr": config.finetune_lr},
            {"params": list(head.parameters()), "lr": config.finetune_head_lr},  # type: ignore[attr-defined]
        ],
        weight_decay=config.weight_decay,
    )
    n_epochs = epochs or config.finetune_epochs
    steps = n_epochs * math.ceil(len(items) / config.finetune_batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    step = 0
    first_epoch = time.perf_counter()
    best: tuple[float, int, dict | None] = (math.inf, n_epochs, None)
    for epoch in range(1, n_epochs + 1):
        started = time.perf_counter()
        head.train()  # type: ignore[attr-defined]
        total, seen = 0.0, 0
        for batch in length_batches(lengths, config.finetune_batch, rng):
            n = min(crop_max, min(lengths[i] for i in batch))
            clips = []
            for i in batch.tolist():
                clip = _crop(items[i], n, rng)
                if p_augment and rng.random() < p_augment:
                    clip = augmenter(clip, rng)  # type: ignore[misc]
                clips.append(clip)
            x = np.stack(clips).astype(np.float32, copy=False)
            y = targets[batch]
            if config.finetune_mixup > 0 and len(batch) > 1:
                x, y = mixup(x, y, config.finetune_mixup, rng)
            with torch.no_grad():
                hidden = lower(front_end(torch.from_numpy(x)))
            embedding = upper(hidden).mean(dim=(2, 3))
            loss = loss_fn(head(embedding), y)  # type: ignore[operator]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            total += loss.item() * len(batch)
            seen += len(batch)
            if writer is not None:
                writer.add_scalar("lr/backbone", schedule.get_last_lr()[0], step)  # type: ignore[attr-defined]
        head.eval()  # type: ignore[attr-defined]
        message = f"    fine-tuning epoch {epoch}/{n_epochs}: loss {total / seen:.4f}"
        if writer is not None:
            writer.add_scalar("loss/train", total / seen, epoch)  # type: ignore[attr-defined]
        if validation is not None and len(validation[1]):
            logits = _logits(net, head, front_end, validation[0])
            val_loss = float(loss_fn(logits, torch.from_numpy(class_targets(validation[1], n_out))))
            val_acc = float(np.mean(logits.argmax(dim=1).numpy() == validation[1]))
            message += f", validation loss {val_loss:.4f} accuracy {val_acc:.3f}"
            if writer is not None:
                writer.add_scalar("loss/validation", val_loss, epoch)  # type: ignore[attr-defined]
                writer.add_scalar("accuracy/validation", val_acc, epoch)  # type: ignore[attr-defined]
            if val_loss < best[0] - 1e-5:
                state = {
                    "net": {k: v.clone() for k, v in net.state_dict().items()},
                    "head": {k: v.clone() for k, v in head.state_dict().items()},  # type: ignore[attr-defined]
                }
                best = (val_loss, epoch, state)
        if held_out is not None and len(held_out[1]):
            predicted = predict_proba(head, _embed(net, front_end, held_out[0])).argmax(axis=1)
            accuracy = float(np.mean(predicted == held_out[1]))
            message += f", held-out accuracy {accuracy:.3f}"
            if writer is not None:
                writer.add_scalar("accuracy/held_out", accuracy, epoch)  # type: ignore[attr-defined]
        now = time.perf_counter()
        eta = (now - first_epoch) / epoch * (n_epochs - epoch)
        say(
            f"{message} ({now - started:.1f} s, {len(items) / (now - started):.1f} clips/s"
            + (f", ETA {eta:.0f} s)" if epoch < n_epochs else ")")
        )
    for param in net.parameters():
        param.requires_grad_(False)
    if best[2] is not None:
        net.load_state_dict(best[2]["net"])
        head.load_state_dict(best[2]["head"])  # type: ignore[attr-defined]
        return Finetuned(net, head, best[1], best[0])
    return Finetuned(net, head, n_epochs)


def finetune_and_save(
    data: TrainingData,
    tagger: object,
    config: TrainConfig,
    frozen_cv: dict,
    final_head: object,
    work: Path,
    log: Log | None = None,
) -> dict:
    """Cross-validate fine-tuning on the splits of ``frozen_cv`` (each split starting from the
    head the frozen cross-validation chose and fitted there), then, if it does at least as well
    as the frozen head, fine-tune ``final_head`` and the backbone on all clips and save
    ``backbone.pt`` and ``head.pt`` in ``work``.

    Returns the fine-tuning metrics (``kept``: whether the fine-tuned model was saved) and
    ``calibration_scores``, the out-of-fold scores, labels and whether they were mixed over
    backgrounds, that :mod:`earmark.custom.calibration` needs.
    """
    torch = torch_module()
    from earmark.audio import load as load_audio
    from earmark.custom.calibration import detection_rows
    from earmark.custom.embeddings import Backbone, pad_to_min_length
    from earmark.outputs import atomic_path

    say = log or (lambda _m: None)
    started = time.perf_counter()
    audios = [pad_to_min_length(load_audio(f, SAMPLE_RATE)) for f in data.files]
    backgrounds: list[np.ndarray] = []
    if config.backgrounds:
        backgrounds = load_backgrounds(background_files(config.backgrounds))
    negatives: list[np.ndarray] = []
    if config.negatives:
        n = int(config.negative_seconds * SAMPLE_RATE)
        negatives = [b[s : s + n] for b in backgrounds for s in range(0, max(len(b) - n, 0) + 1, n)]
    augmenter = None
    if config.augment:
        kinds = [k for k in config.augment_kinds if k != "background" or backgrounds]
        augmenter = Augmenter(kinds, config.seed, backgrounds)
    n_classes = len(data.classes)
    predictions = np.full(len(data.y), -1, dtype=np.int64)
    calibration = calibration_audio(audios, config)
    mixed, segments = calibration if calibration is not None else (audios, [])
    rows, row_labels = [], []
    best_epochs: list[int] = []
    per_split = []
    splits = outer_splits(data.y, data.folds, config)
    for s, (name, train, test) in enumerate(splits):
        choice = frozen_cv["splits"][s]
        # fit on the training part minus an inner validation part, which picks the epoch
        fit_idx, val_idx = inner_split(train, data.y, data.folds, config.seed + s, config.use_folds)
        say(
            f"  fine-tuning {name} ({len(fit_idx)} clips, {len(val_idx)} for validation; "
            f"from its {choice['chosen']} head)"
        )
        x_fit, y_fit = data.training_rows(fit_idx)
        probe = fit_head(
            choice["chosen"],
            x_fit,
            y_fit,
            n_classes,
            config,
            1000 * (config.seed + s),
            epochs=max(int(choice["epochs"]), 1),
        ).head
        t0 = time.perf_counter()
        writer = tensorboard_writer(work / "tensorboard", f"finetune/{name}")
        tuned = finetune(
            [audios[i] for i in fit_idx],
            data.y[fit_idx],
            probe,
            tagger,
            config,
            config.seed + s,
            negatives,
            augmenter,
            writer,
            say,
            held_out=([audios[i] for i in test], data.y[test]),
            validation=([audios[i] for i in val_idx], data.y[val_idx]),
        )
        if writer is not None:
            writer.close()
        net, head = tuned.net, tuned.head
        best_epochs.append(tuned.epoch)
        seconds = time.perf_counter() - t0
        emb = _embed(net, tagger.front_end, [audios[i] for i in test])  # type: ignore[attr-defined]
        predictions[test] = predict_proba(head, emb).argmax(axis=1)
        framewise = Backbone(net, tagger.front_end, key="")  # type: ignore[attr-defined]
        rows.append(detection_rows(head, (framewise.frame_embeddings(mixed[i]) for i in test)))
        row_labels.append(data.y[test])
        if segments:
            rows.append(detection_rows(head, (framewise.frame_embeddings(a) for a in segments)))
            row_labels.append(np.full(len(segments), -1, dtype=np.int64))
        m = classification_metrics(data.y[test], predictions[test], data.classes)
        per_split.append(
            {
                "split": name,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "frozen_accuracy": choice["accuracy"],
                "epoch": tuned.epoch,
                "seconds": round(seconds, 3),
            }
        )
        say(
            f"  fine-tuned {name}: accuracy {m['accuracy']:.3f} (frozen {choice['accuracy']:.3f}),"
            f" macro-F1 {m['macro_f1']:.3f}, epoch {tuned.epoch} kept, {seconds:.0f} s"
        )
    mean_acc = float(np.mean([p["accuracy"] for p in per_split]))
    mean_f1 = float(np.mean([p["macro_f1"] for p in per_split]))
    kept = config.finetune_keep == "always" or mean_acc >= frozen_cv["mean_accuracy"]
    final_epochs = max(1, int(np.median(best_epochs)))
    result = {
        "layers": config.finetune_layers or N_BACKBONE_LAYERS,
        "whole_backbone": config.finetune_layers in (0, N_BACKBONE_LAYERS),
        "epochs": config.finetune_epochs,
        "final_epochs": final_epochs,
        "splits": per_split,
        "mean_accuracy": mean_acc,
        "std_accuracy": float(np.std([p["accuracy"] for p in per_split])),
        "mean_macro_f1": mean_f1,
        "pooled": classification_metrics(data.y, predictions, data.classes),
        "kept": kept,
        "keep": config.finetune_keep,
        "calibration_scores": (
            np.concatenate(rows),
            np.concatenate(row_labels),
            calibration is not None,
        ),
    }
    if kept:
        say(
            f"fine-tuning on all clips for {final_epochs} epochs (the median epoch kept in the "
            + (
                "splits; kept as asked)"
                if mean_acc < frozen_cv["mean_accuracy"]
                else "splits; it matched or beat the frozen head)"
            )
        )
        writer = tensorboard_writer(work / "tensorboard", "finetune/final")
        final = finetune(
            audios,
            data.y,
            final_head,
            tagger,
            config,
            config.seed,
            negatives,
            augmenter,
            writer,
            say,
            epochs=final_epochs,
        )
        if writer is not None:
            writer.close()
        net, head = final.net, final.head
        with atomic_path(work / "backbone.pt") as temp:
            torch.save(
                {
                    "format": MODEL_FORMAT,
                    "width": float(tagger.spec.width),  # type: ignore[attr-defined]
                    "state_dict": net.state_dict(),
                },
                temp,
            )
        save_head(work / "head.pt", head)
    else:
        say("the fine-tuned backbone did worse than the frozen one: keeping the frozen head")
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result
