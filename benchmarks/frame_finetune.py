"""Fine-tuning the backbone's top layers on the mixtures, against the frozen backbone.

Issue 18 asks whether fine-tuning on the training mixtures gives the frame-level detector
better frame features than the frozen backbone. This measures it on the splits of
``benchmarks/custom_sed.py`` (six ESC-10 classes; training clips of folds 1-3 mixed over the
training backgrounds exactly as ``earmark train --backgrounds --others`` mixes them; dev and test
soundscapes of fold-4 / fold-5 clips over other backgrounds):

* the training mixtures' clips fall into ``train``'s five cross-validation groups; group 4 is
  the validation part (early stopping, per-class thresholds: event F1 on its mixtures), the
  other four are trained on;
* ``frozen``: the default conv frame head over the frozen backbone's features and the AudioSet
  evidence (one head, no ensemble, no gates: the same for every row);
* ``tail=K``: linear probe, then fine-tune: the frozen row's head and the backbone's layers
  from ``features[K]`` on (16: the last 1x1 convolution; 15: the last inverted-residual block
  too; 13: the last three blocks) are trained together on the training mixtures (AdamW, the
  backbone at a tenth of the head's learning rate, BatchNorm folded, batches of 8 mixtures);
  the layers below are run once per recording. Figures after 2, 4 and 8 epochs, and at the
  epoch the validation loss chooses (the rule a product would use; epoch 0 is the frozen row).

Every row's frame probabilities go through the same post-processing, boundary refinement and
metrics as ``train``'s cross-validation (event F1 with 0.2 s collars, segment F1 over 1 s,
PSDS1). Writes ``benchmarks/results/frame_finetune.json``.

    python -m benchmarks.frame_finetune [--epochs 8] [--tails 16,15,13]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import custom_sed
from benchmarks.common import SHARED, save_result

VALIDATION_GROUP = 3
GROUPS = 5
CHECKPOINTS = (2, 4, 8)
BATCH = 8
HEAD_LR = 3e-4
TAIL_LR = 1e-4


def split_groups(labels: list[str], classes: list[str], seed: int = 0) -> np.ndarray:
    """The five stratified cross-validation groups ``train`` gives these clips."""
    from sklearn.model_selection import StratifiedKFold

    y = np.array([classes.index(label) for label in labels])
    groups = np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=GROUPS, shuffle=True, random_state=seed)
    for g, (_train, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        groups[held] = g
    return groups


def training_mixtures(classes: list[str]) -> tuple[list, list, object]:
    """``(ESC-10 clips, training mixtures, detector config)``: the training clips of
    ``custom_sed`` in ``train``'s five groups, mixed over its training backgrounds with its
    other sounds, as ``earmark train --backgrounds --others`` mixes them by default."""
    from earmark.custom.datasets import load_dataset
    from earmark.custom.detector import DetectorConfig, training_recordings

    esc = load_dataset(SHARED / "audio" / "esc10" / "esc10_meta.csv")
    esc_clips = [(c.path, c.label, c.fold) for c in esc.clips]
    clips = [(str(p), label) for p, label, fold in esc_clips if label in classes and fold <= 3]
    groups = split_groups([label for _, label in clips], classes)
    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    others = [Path(p) for p, label, fold in esc_clips if label in custom_sed.OTHERS and fold <= 3]
    music, speech = custom_sed.music_and_speech("train")
    config = DetectorConfig()
    recordings, _ = training_recordings(
        [(p, label, int(g)) for (p, label), g in zip(clips, groups, strict=True)],
        GROUPS,
        classes,
        config,
        [sounds / b for b in custom_sed.TRAIN_BACKGROUNDS],
        [*others, *music, *speech],
    )
    return esc_clips, recordings, config


def finetune_tail(middle, top, head, inputs, train, val, measure, epochs, weight_decay) -> dict:
    """LP-FT of the layers ``top`` (``middle``, between the cached inputs and ``top``, stays
    frozen) with a copy of the frozen row's ``head``; figures at the checkpoints and at the
    epoch of the lowest validation loss."""
    import torch

    torch.manual_seed(0)
    top, head = copy.deepcopy(top), copy.deepcopy(head)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def logits(d) -> tuple[torch.Tensor, int]:
        with torch.no_grad():
            x = middle(inputs[d.name]) if len(middle) else inputs[d.name]
        feats = top(x).mean(dim=2)[0].T
        evidence = torch.from_numpy(d.rows(True)[:, feats.shape[1] :])
        n = min(len(feats), len(evidence))
        return head(torch.cat([feats[:n], evidence[:n]], dim=1)[None])[0], n

    def probabilities(d) -> np.ndarray:
        top.eval()
        head.eval()
        with torch.no_grad():
            out, n = logits(d)
        p = torch.sigmoid(out).numpy()
        return np.concatenate([p, np.repeat(p[-1:], len(d.features) - n, 0)])

    def val_loss() -> float:
        top.eval()
        head.eval()
        with torch.no_grad():
            losses = []
            for d in val:
                out, n = logits(d)
                losses.append(float(loss_fn(out, torch.from_numpy(d.targets[:n]))))
        return float(np.mean(losses))

    optimiser = torch.optim.AdamW(
        [{"params": top.parameters(), "lr": TAIL_LR}, {"params": head.parameters()}],
        lr=HEAD_LR,
        weight_decay=weight_decay,
    )
    rng = np.random.default_rng(0)
    curve: list[tuple[float | None, float]] = [(None, round(val_loss(), 5))]
    best = (curve[0][1], 0, copy.deepcopy(top.state_dict()), copy.deepcopy(head.state_dict()))
    result: dict = {"epochs": {}}
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        top.train()
        head.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), BATCH):
            optimiser.zero_grad()
            batch = [train[k] for k in order[i : i + BATCH]]
            total = torch.zeros(())
            for d in batch:
                out, n = logits(d)
                total = total + loss_fn(out, torch.from_numpy(d.targets[:n]))
            loss = total / len(batch)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        curve.append((round(float(np.mean(losses)), 5), round(val_loss(), 5)))
        if curve[-1][1] < best[0]:
            best = (
                curve[-1][1],
                epoch,
                copy.deepcopy(top.state_dict()),
                copy.deepcopy(head.state_dict()),
            )
        if epoch in CHECKPOINTS:
            result["epochs"][epoch] = measure(probabilities)
            dev = result["epochs"][epoch]["dev"]
            print(
                f"  epoch {epoch}: dev event F1 {dev['event_f1']}, segment F1 {dev['segment_f1']}"
            )
    result["seconds_per_epoch"] = round((time.perf_counter() - started) / epochs, 1)
    result["loss_curve"] = curve
    result["chosen_by_validation_loss"] = best[1]
    if best[1] and best[1] not in result["epochs"]:
        top.load_state_dict(best[2])
        head.load_state_dict(best[3])
        result["epochs"][best[1]] = measure(probabilities)
    return result


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--tails", default="16,15,13")
    args = parser.parse_args()

    import torch

    from earmark.boundaries import BandEnvelope
    from earmark.custom.detector import FrameData, score_recordings
    from earmark.custom.frame_head import fit_frame_head
    from earmark.custom.postprocess import choose_thresholds, quality
    from earmark.scoring import DEFAULT_SE_CONTEXT, ScoringOptions
    from earmark.tagger import load_model

    load = os.getloadavg()
    started = time.perf_counter()
    classes = list(custom_sed.CLASSES)
    esc_clips, recordings, config = training_mixtures(classes)
    tagger = load_model(threads=2)
    net = copy.deepcopy(tagger.net)
    net.set_se_context(DEFAULT_SE_CONTEXT)

    def below(audio: np.ndarray, tail: int) -> torch.Tensor:
        with torch.no_grad():
            x = tagger.front_end(torch.from_numpy(np.ascontiguousarray(audio, np.float32)))
            for layer in net.features[:tail]:
                x = layer(x)
        return x

    tails = [int(t) for t in args.tails.split(",")]
    lowest = min(tails)
    inputs = {r.name: below(r.audio, lowest) for r in recordings}
    data = score_recordings(recordings, tagger, classes)
    sets, _ = custom_sed.evaluation_audio(esc_clips)
    scorer = tagger.scorer(ScoringOptions(features=True))
    evaluation: dict[str, list[FrameData]] = {}
    for split, (recs, refs) in sets.items():
        evaluation[split] = []
        for name, audio in recs:
            scored = scorer.score(audio)
            evaluation[split].append(
                FrameData(
                    name, -1, split, scored.features.astype(np.float32),
                    scored.scores.astype(np.float32),
                    np.zeros((scored.n_frames, len(classes)), np.float32),
                    BandEnvelope.of(audio).db, len(audio) / 32000,
                    [e for e in refs if e.file == name],
                )
            )  # fmt: skip
            inputs[name] = below(audio, lowest)
    prepared = time.perf_counter() - started
    train = [d for d in data if d.group != VALIDATION_GROUP]
    val = [d for d in data if d.group == VALIDATION_GROUP]
    length = max(1, round(config.mixtures.seconds / 0.32))

    def measure(probabilities) -> dict:
        chosen, _, warnings = choose_thresholds([probabilities(d) for d in val], val, classes)
        row: dict = {"thresholds": chosen, "warnings": warnings}
        for split, items in evaluation.items():
            q = quality([probabilities(d) for d in items], items, classes, [chosen] * len(items))
            row[split] = {
                k: q[k] for k in ("event_f1", "segment_f1", "psds1", "detections", "references")
            }
            row[split]["per_class"] = q["per_class"]
        return row

    t0 = time.perf_counter()
    frozen = fit_frame_head(
        "conv",
        [(d.rows(True), d.targets) for d in train],
        config.fit,
        0,
        length,
        [(d.rows(True), d.targets) for d in val],
    )
    rows: dict = {"frozen": {"epochs": frozen.epochs, "seconds": round(time.perf_counter() - t0)}}
    rows["frozen"].update(measure(lambda d: frozen.head.probabilities(d.rows(True))))
    print("frozen", rows["frozen"]["dev"]["event_f1"], rows["frozen"]["dev"]["segment_f1"])
    for tail in tails:
        rows[f"tail={tail}"] = finetune_tail(
            net.features[lowest:tail], net.features[tail:], frozen.head, inputs, train, val,
            measure, args.epochs, config.fit.weight_decay,
        )  # fmt: skip
        print(f"tail {tail}: chosen epoch {rows[f'tail={tail}']['chosen_by_validation_loss']}")
    results = {
        "load_average_at_start": [round(v, 2) for v in load],
        "setup": {
            "training": f"{len(data)} mixtures of {config.mixtures.seconds:g} s (train's "
            f"defaults), groups {GROUPS}, validation group {VALIDATION_GROUP + 1}",
            "dev": "16 x 30 s soundscapes (benchmarks/custom_sed.py)",
            "test": "24 x 30 s soundscapes (benchmarks/custom_sed.py)",
            "optimiser": f"AdamW, head lr {HEAD_LR}, backbone lr {TAIL_LR}, weight decay "
            f"{config.fit.weight_decay}, batches of {BATCH} mixtures",
            "seconds_preparing": round(prepared, 1),
        },
        "rows": rows,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    save_result("frame_finetune", results)
    return results


if __name__ == "__main__":
    main()
