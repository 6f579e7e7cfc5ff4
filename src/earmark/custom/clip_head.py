"""The clip head of custom classes: a small classifier on clip embeddings (logistic
regression or a one-hidden-layer MLP, one sigmoid per class), its fitting, splits, metrics
and saving."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earmark.custom.data import HEAD_KINDS, TrainConfig
from earmark.custom.fitting import head_shape, run_epochs

MODEL_FORMAT = 1
"""Version of the MODEL_DIR layout."""


def torch_module():
    import torch

    return torch


def make_head(kind: str, dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.3):
    """A head: standardisation (buffers), then ``Linear`` (logreg) or ``Linear-ReLU-Dropout-
    Linear`` (mlp), producing one logit per class."""
    torch = torch_module()
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind, self.dim, self.n_classes = kind, dim, n_classes
            self.hidden, self.dropout = hidden, dropout
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("scale", torch.ones(dim))
            if kind == "logreg":
                self.net = nn.Sequential(nn.Linear(dim, n_classes))
            elif kind == "mlp":
                self.net = nn.Sequential(
                    nn.Linear(dim, hidden),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                    nn.Linear(hidden, n_classes),
                )
            else:
                raise ValueError(f"unknown head kind {kind!r}; use one of {HEAD_KINDS}")

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.net((x - self.mean) / self.scale)

        def describe(self) -> dict:
            return head_shape(self)

    return Head()


def class_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows; label ``-1`` (none of the classes) gives an all-zero row."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    pos = labels >= 0
    out[np.flatnonzero(pos), labels[pos]] = 1.0
    return out


@dataclass
class FitResult:
    """A fitted head and how its training went."""

    head: object
    epochs: int
    val_accuracy: float | None = None
    val_loss: float | None = None
    seconds: float = 0.0


def fit_head(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    seed: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    epochs: int | None = None,
    writer: object | None = None,
) -> FitResult:
    """Fit one head on embeddings ``x`` with integer labels ``y`` (``-1``: none).

    With validation data, training stops when the validation loss has not improved for
    ``config.patience`` epochs and the best epoch's weights are kept; otherwise it runs
    ``epochs`` (default ``config.max_epochs``) epochs. Curves go to ``writer`` (TensorBoard).
    """
    torch = torch_module()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster and exactly repeatable
    try:
        return _fit_head(kind, x, y, n_classes, config, seed, x_val, y_val, epochs, writer)
    finally:
        torch.set_num_threads(threads)


def _fit_head(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    seed: int,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    epochs: int | None,
    writer: object | None,
) -> FitResult:
    torch = torch_module()
    started = time.perf_counter()
    torch.manual_seed(seed)
    head = make_head(kind, x.shape[1], n_classes, config.hidden, config.dropout)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    head.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    head.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(class_targets(y, n_classes))
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        assert x_val is not None and y_val is not None
        xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
        yv = torch.from_numpy(class_targets(y_val, n_classes))
        yv_int = torch.from_numpy(np.asarray(y_val))
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def validate() -> tuple[float, dict]:
        logits = head(xv)
        labelled = yv_int >= 0
        accuracy = float((logits.argmax(1)[labelled] == yv_int[labelled]).float().mean())
        return float(loss_fn(logits, yv)), {"accuracy": accuracy}

    run = run_epochs(
        head,
        xt,
        yt,
        optimiser,
        config.batch_size,
        torch.Generator().manual_seed(seed),
        epochs or config.max_epochs,
        config.patience,
        validate if has_val else None,
        writer,
    )
    seconds = time.perf_counter() - started
    if run.val_loss is not None:
        return FitResult(head, run.epochs, run.val_extra["accuracy"], run.val_loss, seconds)
    return FitResult(head, run.epochs, seconds=seconds)


def predict_proba(head: object, x: np.ndarray) -> np.ndarray:
    """Per-class sigmoid outputs ``(n, classes)`` of a head."""
    torch = torch_module()
    with torch.no_grad():
        logits = head(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))  # type: ignore[operator]
        return torch.sigmoid(logits).numpy()


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "n": len(y_true),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def confusion_csv(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The confusion matrix as CSV: rows are true classes, columns predicted classes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion, strict=True):
        writer.writerow([name, *row])
    return buffer.getvalue()


def plot_confusion(
    path: Path, confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str
) -> None:
    """Save the confusion matrix as a PNG (counts in the cells, colour by row share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from earmark.outputs import atomic_path

    matrix = np.asarray(confusion, dtype=float)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(matrix[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def outer_splits(
    labels: np.ndarray, folds: np.ndarray, config: TrainConfig
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, train indices, test indices)`` for every outer split."""
    if config.use_folds and len(folds) and (folds >= 0).all() and len(set(folds.tolist())) >= 2:
        return [
            (f"fold{f}", np.flatnonzero(folds != f), np.flatnonzero(folds == f))
            for f in sorted(set(folds.tolist()))
        ]
    from sklearn.model_selection import StratifiedKFold

    smallest = min(Counter(labels.tolist()).values())
    k = min(config.k_folds, smallest)
    if k < 2:
        raise ValueError("every class needs at least 2 examples for cross-validation")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    return [
        (f"split{i + 1}", train, test)
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels))
    ]


def inner_split(
    train: np.ndarray, labels: np.ndarray, folds: np.ndarray, seed: int, use_folds: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (fit, validation): one whole fold if there are folds,
    else a stratified fifth."""
    train_folds = sorted(set(folds[train].tolist()))
    if use_folds and len(train_folds) >= 2 and (folds[train] >= 0).all():
        val_fold = train_folds[seed % len(train_folds)]
        return train[folds[train] != val_fold], train[folds[train] == val_fold]
    from sklearn.model_selection import StratifiedKFold

    sub = labels[train]
    k = min(5, min(Counter(sub.tolist()).values()))
    if k < 2:  # too few examples to hold any out: validate on the training data itself
        return train, train
    fit_idx, val_idx = next(
        StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(sub)), sub)
    )
    return train[fit_idx], train[val_idx]


def save_head(path: Path, head: object) -> None:
    """Save a head's weights and shape to ``path`` (``torch.save``; loads with weights_only)."""
    torch = torch_module()
    from earmark.outputs import atomic_path

    with atomic_path(path) as temp:
        torch.save(
            {"format": MODEL_FORMAT, **head.describe(), "state_dict": head.state_dict()},  # type: ignore[attr-defined]
            temp,
        )
