"""Cross-validation of the clip heads: the training data embedded, nested fits over splits.

:func:`assemble` embeds a dataset (with its augmented copies and background negatives) into
:class:`~earmark.custom.data.TrainingData`; :func:`cross_validate` chooses a head kind on
inner validation data in every outer split and scores it on the held-out one; and
:func:`choose_final` picks the kind fitted on all the data. :mod:`earmark.custom.training`
runs them (steps 2 to 4 of ``earmark train``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from earmark.audio import SAMPLE_RATE
from earmark.custom.clip_head import (
    FitResult,
    classification_metrics,
    fit_head,
    inner_split,
    outer_splits,
    predict_proba,
)
from earmark.custom.data import (
    Augmenter,
    Log,
    TrainConfig,
    TrainingData,
    background_files,
    load_backgrounds,
)
from earmark.custom.datasets import Dataset
from earmark.custom.embeddings import Backbone, EmbeddingSet, Transform, embed_dataset, embed_files
from earmark.custom.fitting import tensorboard_writer


def detection_groups(
    data: TrainingData, splits: Sequence[tuple[str, np.ndarray, np.ndarray]], config: TrainConfig
) -> np.ndarray:
    """Cross-validation group of every clip for the frame-level detector: the held-out part of
    each outer split when there are at least 4 splits, else a stratified 5-way split (the
    detector trains on all groups but the held-out one and its validation one)."""
    groups = np.zeros(len(data.y), dtype=np.int64)
    if len(splits) >= 4:
        for s, (_name, _train, test) in enumerate(splits):
            groups[test] = s
        return groups
    from sklearn.model_selection import StratifiedKFold

    k = min(5, min(Counter(data.y.tolist()).values()))
    if k < 3:
        raise ValueError("detection training needs at least 3 clips of every class")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    for s, (_train, test) in enumerate(splitter.split(np.zeros(len(data.y)), data.y)):
        groups[test] = s
    return groups


# ---------------------------------------------------------------------------- data assembly


def negative_embeddings(
    backbone: Backbone, backgrounds: Sequence[np.ndarray], seconds: float, cache_tag: str
) -> np.ndarray:
    """Clip embeddings of consecutive ``seconds``-long segments of background recordings."""
    from earmark.custom.embeddings import EmbeddingCache, cache_root

    cache = EmbeddingCache(cache_root(), backbone.key)
    n = int(seconds * SAMPLE_RATE)
    rows = []
    for k, audio in enumerate(backgrounds):
        import hashlib

        sha = hashlib.sha256(audio.tobytes()).hexdigest()
        for start in range(0, max(len(audio) - n, 0) + 1, n):
            variant = f"neg1:{start}:{n}"
            entry = cache.get(sha, variant, False)
            if entry is None:
                entry = {"clip": backbone.clip_embedding(audio[start : start + n])}
                cache.put(sha, variant, entry)
            rows.append(entry["clip"])
        del k
    dim = backbone.dim
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)


def assemble(
    dataset: Dataset,
    backbone: Backbone,
    config: TrainConfig,
    log: Log | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> TrainingData:
    """Embed the dataset (and its augmentations and negatives) into :class:`TrainingData`."""
    say = log or (lambda _m: None)
    # framewise embeddings calibrate the detection thresholds when there are no backgrounds
    # to mix the clips over (see earmark.custom.calibration)
    framewise = not config.backgrounds
    emb: EmbeddingSet = embed_dataset(dataset, backbone, framewise=framewise, progress=progress)
    for file, error in emb.failed:
        say(f"skipped {file}: {error}")
    classes = dataset.classes
    index = {c: i for i, c in enumerate(classes)}
    data = TrainingData(
        x=emb.embeddings,
        y=np.array([index[label] for label in emb.labels], dtype=np.int64),
        folds=emb.folds,
        files=emb.files,
        classes=classes,
        frames=emb.frames,
        failed=emb.failed,
    )
    missing = [c for c in classes if c not in set(emb.labels)]
    if missing:
        raise ValueError(f"no readable clip left for class(es) {missing}")
    backgrounds: list[np.ndarray] = []
    if config.backgrounds and (config.negatives or "background" in config.augment_kinds):
        backgrounds = load_backgrounds(background_files(config.backgrounds))
    if config.augment:
        kinds = [k for k in config.augment_kinds if k != "background" or backgrounds]
        augmenter = Augmenter(kinds, config.seed, backgrounds)
        rows, sources = [], []
        for copy in range(config.augment):
            say(f"augmented copy {copy + 1}/{config.augment} ({', '.join(kinds)})")
            paths = data.files
            # one generator per (copy, clip), drawn inside the transform in file order
            rngs = iter([np.random.default_rng([config.seed, copy, i]) for i in range(len(paths))])
            clips, _, errors = embed_files(
                paths,
                backbone,
                transform=cast(Transform, lambda a, rngs=rngs: augmenter(a, next(rngs))),
                variant=augmenter.variant(copy),
                progress=progress,
            )
            del errors
            for i, vec in enumerate(clips):
                if vec is not None:
                    rows.append(vec)
                    sources.append(i)
        data.aug_x = np.stack(rows) if rows else None
        data.aug_source = np.array(sources, dtype=np.int64) if rows else None
    if config.negatives:
        data.neg_x = negative_embeddings(backbone, backgrounds, config.negative_seconds, "")
        say(f"{len(data.neg_x)} negative examples from {len(backgrounds)} background recording(s)")
    return data


# ---------------------------------------------------------------------------- cross-validation


def fit_split(
    data: TrainingData,
    train: np.ndarray,
    config: TrainConfig,
    kinds: Sequence[str],
    seed: int,
    tensorboard: Path | None = None,
    tag: str = "head",
) -> tuple[str, FitResult, list[tuple[str, FitResult]], FitResult]:
    """Choose a head kind on inner validation data of the clips ``train``, then refit it on
    all of them for the chosen number of epochs.

    Returns ``(kind, chosen validation fit, every candidate's fit, final fit)``.
    """
    n_classes = len(data.classes)
    fit_idx, val_idx = inner_split(train, data.y, data.folds, seed, config.use_folds)
    x_fit, y_fit = data.training_rows(fit_idx)
    candidates = []
    for kind in kinds:
        writer = tensorboard_writer(tensorboard, f"{tag}/{kind}-select")
        result = fit_head(
            kind,
            x_fit,
            y_fit,
            n_classes,
            config,
            1000 * seed,
            data.x[val_idx],
            data.y[val_idx],
            writer=writer,
        )
        if writer is not None:
            writer.close()
        candidates.append((kind, result))
    kind, chosen = max(
        candidates, key=lambda kr: (kr[1].val_accuracy, -cast(float, kr[1].val_loss))
    )
    x_train, y_train = data.training_rows(train)
    writer = tensorboard_writer(tensorboard, f"{tag}/{kind}-refit")
    final = fit_head(
        kind,
        x_train,
        y_train,
        n_classes,
        config,
        1000 * seed,
        epochs=max(chosen.epochs, 1),
        writer=writer,
    )
    if writer is not None:
        writer.close()
    return kind, chosen, candidates, final


def cross_validate(
    data: TrainingData,
    config: TrainConfig,
    kinds: Sequence[str],
    tensorboard: Path | None = None,
    log: Log | None = None,
    tag: str = "head",
) -> dict:
    """Nested cross-validation of the head kinds: per-split choice on inner validation data,
    scored on the held-out split. Returns metrics, the choices and out-of-fold predictions."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    n_classes = len(data.classes)
    splits = outer_splits(data.y, data.folds, config)
    predictions = np.full(len(data.y), -1, dtype=np.int64)
    probabilities = np.zeros((len(data.y), n_classes), dtype=np.float32)
    split_of = [""] * len(data.y)
    heads = []
    per_split = []
    choices: list[dict] = []
    for s, (name, train, test) in enumerate(splits):
        kind, chosen, candidates, final = fit_split(
            data, train, config, kinds, config.seed + s, tensorboard, f"{tag}/{name}"
        )
        proba = predict_proba(final.head, data.x[test])
        predictions[test] = proba.argmax(axis=1)
        probabilities[test] = proba
        heads.append((test, final.head))
        for i in test:
            split_of[i] = name
        metrics = classification_metrics(data.y[test], predictions[test], data.classes)
        metrics.pop("confusion")
        per_split.append(
            {
                "split": name,
                "n_train": len(train),
                "n_test": len(test),
                "chosen": kind,
                "epochs": chosen.epochs,
                "validation": {
                    k: {"accuracy": r.val_accuracy, "loss": r.val_loss, "epochs": r.epochs}
                    for k, r in candidates
                },
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "per_class": metrics["per_class"],
            }
        )
        choices.append({"kind": kind, "epochs": chosen.epochs, "val_accuracy": chosen.val_accuracy})
        say(
            f"  {tag} {name}: {kind} (val acc {chosen.val_accuracy:.3f}, {chosen.epochs} epochs)"
            f" -> accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
        )
    overall = classification_metrics(data.y, predictions, data.classes)
    accs = [p["accuracy"] for p in per_split]
    f1s = [p["macro_f1"] for p in per_split]
    return {
        "splits": per_split,
        "mean_accuracy": float(np.mean(accs)),
        "std_accuracy": float(np.std(accs)),
        "mean_macro_f1": float(np.mean(f1s)),
        "std_macro_f1": float(np.std(f1s)),
        "pooled": overall,
        "choices": choices,
        "predictions": predictions,
        "probabilities": probabilities,
        "split_of": split_of,
        "heads": heads,
        "seconds": round(time.perf_counter() - started, 3),
    }


def choose_final(choices: Sequence[dict]) -> tuple[str, int]:
    """The head kind chosen most often over the splits (ties: higher mean validation
    accuracy) and the median of its early-stopping epochs."""
    by_kind: dict[str, list[dict]] = {}
    for choice in choices:
        by_kind.setdefault(choice["kind"], []).append(choice)
    kind = max(
        by_kind,
        key=lambda k: (
            len(by_kind[k]),
            float(np.mean([c["val_accuracy"] or 0 for c in by_kind[k]])),
        ),
    )
    epochs = int(np.median([c["epochs"] for c in by_kind[kind]]))
    return kind, max(epochs, 1)
