"""Training custom classes: a head on frozen backbone embeddings, cross-validated.

``earmark train DATA -o MODEL_DIR`` does, in order:

1. reads the dataset (:mod:`earmark.datasets`) and prints its summary;
2. computes clip embeddings (:mod:`earmark.embeddings`, cached by file content), plus, with
   ``--augment N``, embeddings of ``N`` augmented copies of every clip (noise, gain, time
   shift, mixing with background recordings), and with ``--negatives``, embeddings of segments
   of the background recordings as examples of *none of the classes*;
3. cross-validates over the dataset's folds (or stratified k-fold): in every outer split, each
   candidate head (logistic regression, a one-hidden-layer MLP) is fitted on the training part
   minus an inner validation part, with early stopping on it; the candidate with the best
   validation accuracy is refitted on the whole training part and scored on the held-out fold.
   Augmented copies follow their source clip, so a held-out clip is never seen in any form;
4. the same cross-validation with hand-made features (:mod:`earmark.handcrafted`) and an MLP:
   the classic baseline reported beside the head;
5. with ``--finetune``, cross-validates fine-tuning of the whole backbone with the head on the
   same splits (:mod:`earmark.finetuning`) and keeps it if it does at least as well;
6. fits the head chosen most often on all the data and saves MODEL_DIR: ``head.pt``,
   ``labels.json``, ``metrics.json``, ``config.json`` (the exact configuration, dataset
   summary, backbone and its sha256, versions), ``confusion.{png,csv}`` (and the baseline's),
   ``predictions.csv`` (out-of-fold predictions), ``thresholds.json`` (per-class detection
   thresholds calibrated on out-of-fold clips, :mod:`earmark.calibration`) and
   ``tensorboard/`` (loss and accuracy curves of every fit). MODEL_DIR is built under a
   temporary name and renamed when complete.

Heads output one sigmoid per class (one-vs-rest logistic outputs trained with binary cross
entropy): a clip is classified by the largest output, and in long recordings each class is
detected where its output is high, so frames where none of the classes sound can score low
on all of them (which a softmax cannot express). Everything is seeded: the same data, options
and seed give the same head, bit for bit, on the same machine and thread count.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from earmark.audio import SAMPLE_RATE
from earmark.custom.fitting import head_shape, run_epochs
from earmark.datasets import Dataset
from earmark.embeddings import Backbone, EmbeddingSet, embed_dataset, embed_files

HEAD_KINDS = ("logreg", "mlp")
MODEL_FORMAT = 1
"""Version of the MODEL_DIR layout."""
Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """Every option of a training run (saved in ``config.json``)."""

    seed: int = 0
    heads: tuple[str, ...] = HEAD_KINDS
    hidden: int = 128
    dropout: float = 0.3
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 20
    k_folds: int = 5
    """Stratified folds when the dataset has none (or ``use_folds`` is off)."""
    use_folds: bool = True
    augment: int | None = None
    """Augmented copies of every training clip; ``None``: 2 when there are backgrounds (the
    clips mixed over them at 0-20 dB, so that ``classify`` holds up on noisy clips), else 0."""
    augment_kinds: tuple[str, ...] = ("noise", "gain", "shift", "background")
    backgrounds: str | None = None
    """Folder of background recordings (for ``background`` augmentation and ``negatives``)."""
    negatives: bool = False
    """Add background segments as examples of none of the classes (better for detection)."""
    negative_seconds: float = 5.0
    baseline: bool = True
    finetune: bool = False
    """Also fine-tune the backbone with the head (:mod:`earmark.finetuning`)."""
    finetune_epochs: int = 5
    finetune_lr: float = 3e-5
    """Backbone learning rate (AdamW, cosine decay)."""
    finetune_head_lr: float = 1e-3
    finetune_batch: int = 16
    finetune_mixup: float = 0.3
    """Mixup of clip pairs in fine-tuning batches, ``Beta(a, a)`` weights (0: off)."""
    finetune_layers: int = 0
    """Top layers of the backbone that fine-tuning trains (of 17); 0: the whole backbone."""
    frame_head: str = "conv"
    """Frame-level detector head trained on mixtures (:mod:`earmark.custom`): ``conv``,
    ``gru``, ``linear``, or ``none`` (detect with the clip head, as before)."""
    frame_audioset: bool = True
    """Give the frame head the AudioSet scores as evidence beside the backbone features."""
    choose_filters: bool = False
    """Choose each class's median filter and minimum duration on held-out mixtures too (see
    :attr:`earmark.custom.detector.DetectorConfig.choose_filters`)."""
    mixtures: int = 480
    mixture_seconds: float = 20.0
    mixture_snr: tuple[float, float] = (-5.0, 20.0)
    mixture_events: tuple[int, int] = (0, 5)
    background_split: str = "time"
    others: str | None = None
    """Folder of recordings of other sounds: distractors in the mixtures (none of the classes)."""
    labelled: tuple[str, ...] = ()
    """Strongly labelled recordings: folders or label files (:mod:`earmark.custom.strong_labels`).
    """
    finetune_keep: str = "if-better"
    """Keep the fine-tuned backbone ``"if-better"`` (cross-validated accuracy at least the
    frozen head's) or ``"always"`` (e.g. when the recordings to detect in differ from the
    clips more than the folds do)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        unknown = set(self.heads) - set(HEAD_KINDS)
        if not self.heads or unknown:
            raise ValueError(f"heads must be among {HEAD_KINDS}, got {list(self.heads)}")
        bad_aug = set(self.augment_kinds) - {"noise", "gain", "shift", "background"}
        if bad_aug:
            raise ValueError(f"unknown augmentation(s) {sorted(bad_aug)}")
        if self.k_folds < 2:
            raise ValueError("k_folds must be at least 2")
        if self.frame_head not in ("conv", "gru", "linear", "none"):
            raise ValueError(
                f"frame head must be conv, gru, linear or none, not {self.frame_head!r}"
            )
        if (self.augment or 0) < 0 or self.max_epochs < 1 or self.hidden < 1:
            raise ValueError("augment >= 0, max_epochs >= 1 and hidden >= 1 are required")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        needs_bg = self.negatives or (self.augment and "background" in self.augment_kinds)
        if needs_bg and self.backgrounds is None and self.negatives:
            raise ValueError("negatives need a folder of background recordings (--backgrounds)")
        if self.finetune_epochs < 1:
            raise ValueError("finetune_epochs must be at least 1")
        if not 0 <= self.finetune_layers <= 17:
            raise ValueError("finetune_layers must be between 0 (all) and 17")
        if self.finetune_keep not in ("if-better", "always"):
            raise ValueError(
                f"finetune_keep must be if-better or always, got {self.finetune_keep!r}"
            )
        if self.finetune_batch < 1 or self.finetune_lr <= 0 or self.finetune_head_lr <= 0:
            raise ValueError("finetune_batch >= 1 and positive fine-tuning learning rates needed")


# ---------------------------------------------------------------------------- heads
def _torch():
    import torch

    return torch


def make_head(kind: str, dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.3):
    """A head: standardisation (buffers), then ``Linear`` (logreg) or ``Linear-ReLU-Dropout-
    Linear`` (mlp), producing one logit per class."""
    torch = _torch()
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


def _targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
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
    torch = _torch()
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
    torch = _torch()
    started = time.perf_counter()
    torch.manual_seed(seed)
    head = make_head(kind, x.shape[1], n_classes, config.hidden, config.dropout)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    head.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    head.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(_targets(y, n_classes))
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
        yv = torch.from_numpy(_targets(y_val, n_classes))
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
    torch = _torch()
    with torch.no_grad():
        logits = head(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))  # type: ignore[operator]
        return torch.sigmoid(logits).numpy()


# ---------------------------------------------------------------------------- metrics
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


# ---------------------------------------------------------------------------- splits
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


def detector_config(config: TrainConfig) -> object:
    """The frame-level detector's options (:class:`earmark.custom.detector.DetectorConfig`)."""
    from earmark.custom.detector import DetectorConfig
    from earmark.custom.mixtures import MixtureConfig

    return DetectorConfig(
        head=config.frame_head,
        audioset_input=config.frame_audioset,
        choose_filters=config.choose_filters,
        mixtures=MixtureConfig(
            n_mixtures=config.mixtures,
            seconds=config.mixture_seconds,
            snr_db=(float(config.mixture_snr[0]), float(config.mixture_snr[1])),
            events=(int(config.mixture_events[0]), int(config.mixture_events[1])),
            background_split=config.background_split,
            seed=config.seed,
        ),
    )


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
@dataclass
class TrainingData:
    """Embeddings of the clips, their augmented copies and negative examples."""

    x: np.ndarray
    y: np.ndarray
    """Class index per clip."""
    folds: np.ndarray
    files: list[str]
    classes: list[str]
    aug_x: np.ndarray | None = None
    aug_source: np.ndarray | None = None
    """Index of the clip each augmented row was made from."""
    neg_x: np.ndarray | None = None
    frames: list[np.ndarray] | None = None
    """Framewise embeddings of every clip (for threshold calibration)."""
    failed: list[tuple[str, str]] = field(default_factory=list)

    def training_rows(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and labels to fit on for these clips: the clips, their augmented copies
        and all negatives."""
        xs, ys = [self.x[clips]], [self.y[clips]]
        if self.aug_x is not None and self.aug_source is not None:
            mask = np.isin(self.aug_source, clips)
            xs.append(self.aug_x[mask])
            ys.append(self.y[self.aug_source[mask]])
        if self.neg_x is not None and len(self.neg_x):
            xs.append(self.neg_x)
            ys.append(np.full(len(self.neg_x), -1, dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)


def background_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted."""
    from earmark.inputs import AUDIO_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"background folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"background folder {folder} holds no audio files")
    return files


class Augmenter:
    """Random, seeded signal transforms: white noise, gain, circular time shift, background mix.

    Each call with a given ``(copy, clip)`` draws from its own generator, so an augmented copy
    is the same whatever else is augmented (and can be cached).
    """

    def __init__(self, kinds: Sequence[str], seed: int, backgrounds: Sequence[np.ndarray] = ()):
        self.kinds = tuple(kinds)
        self.seed = seed
        self.backgrounds = list(backgrounds)

    def variant(self, copy: int) -> str:
        """Cache key of copy number ``copy``."""
        return f"aug1:{','.join(self.kinds)}:{self.seed}:{copy}:{len(self.backgrounds)}"

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An augmented copy of a 32 kHz signal."""
        x = audio.astype(np.float64)
        level = math.sqrt(float(np.mean(x * x))) or 1e-4
        if "shift" in self.kinds:
            x = np.roll(x, int(rng.integers(-len(x) // 2, len(x) // 2 + 1)))
        if "background" in self.kinds and self.backgrounds:
            bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            start = int(rng.integers(0, max(1, len(bg) - len(x))))
            seg = np.resize(bg[start : start + len(x)], len(x)).astype(np.float64)
            bg_level = math.sqrt(float(np.mean(seg * seg))) or 1e-4
            snr = rng.uniform(0.0, 20.0)
            x = x + seg * (level / bg_level) * 10 ** (-snr / 20)
        if "noise" in self.kinds:
            snr = rng.uniform(10.0, 40.0)
            x = x + rng.standard_normal(len(x)) * level * 10 ** (-snr / 20)
        if "gain" in self.kinds:
            x = x * 10 ** (rng.uniform(-12.0, 6.0) / 20)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 1.0:
            x /= peak
        return x.astype(np.float32)


def _load_backgrounds(files: Sequence[Path]) -> list[np.ndarray]:
    from earmark.audio import AudioError
    from earmark.audio import load as load_audio

    out = []
    for path in files:
        try:
            audio = load_audio(path, SAMPLE_RATE)
        except AudioError:
            continue
        if len(audio) and float(np.max(np.abs(audio))) > 0:
            out.append(audio)
    return out


def negative_embeddings(
    backbone: Backbone, backgrounds: Sequence[np.ndarray], seconds: float, cache_tag: str
) -> np.ndarray:
    """Clip embeddings of consecutive ``seconds``-long segments of background recordings."""
    from earmark.embeddings import EmbeddingCache, cache_root

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
    # to mix the clips over (see earmark.calibration)
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
        backgrounds = _load_backgrounds(background_files(config.backgrounds))
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
                transform=lambda a, rngs=rngs: augmenter(a, next(rngs)),
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
def _writer(root: Path | None, name: str):
    if root is None:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(root / name), flush_secs=5)


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
        writer = _writer(tensorboard, f"{tag}/{kind}-select")
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
    kind, chosen = max(candidates, key=lambda kr: (kr[1].val_accuracy, -kr[1].val_loss))
    x_train, y_train = data.training_rows(train)
    writer = _writer(tensorboard, f"{tag}/{kind}-refit")
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


# ---------------------------------------------------------------------------- saving
def _predictions_csv(data: TrainingData, cv: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "fold", "split", "predicted", "probability", "correct"])
    for i, file in enumerate(data.files):
        pred = int(cv["predictions"][i])
        writer.writerow(
            [
                file,
                data.classes[data.y[i]],
                int(data.folds[i]) if data.folds[i] >= 0 else "",
                cv["split_of"][i],
                data.classes[pred],
                f"{cv['probabilities'][i, pred]:.4f}",
                int(pred == data.y[i]),
            ]
        )
    return buffer.getvalue()


def _public(cv: dict) -> dict:
    private = ("predictions", "probabilities", "split_of", "heads")
    return {k: v for k, v in cv.items() if k not in private}


def calibration_audio(
    audios: Sequence[np.ndarray], config: TrainConfig
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The clips mixed over ``config.backgrounds`` and segments of those, to calibrate the
    detection thresholds on (:mod:`earmark.calibration`); ``None`` without backgrounds."""
    from earmark.calibration import background_segments, mixtures

    if not config.backgrounds:
        return None
    backgrounds = _load_backgrounds(background_files(config.backgrounds))
    if not backgrounds:
        return None
    return mixtures(audios, backgrounds, config.seed), background_segments(backgrounds)


def frozen_calibration_scores(
    data: TrainingData, cv: dict, backbone: Backbone, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Out-of-fold detection scores of the frozen heads for threshold calibration: each clip
    (mixed over a background when there are backgrounds) under the head of the split that held
    it out, and background segments under every split's head. Returns ``(scores, labels,
    mixed)``."""
    from earmark.audio import load as load_audio
    from earmark.calibration import detection_rows
    from earmark.embeddings import _min_length

    audio = None
    if config.backgrounds:
        clips = [_min_length(load_audio(f, SAMPLE_RATE)) for f in data.files]
        audio = calibration_audio(clips, config)
    if audio is None:
        if data.frames is None:
            data.frames = [
                backbone.frame_embeddings(load_audio(f, SAMPLE_RATE)) for f in data.files
            ]
        clip_frames, segment_frames = data.frames, []
    else:
        clip_frames = [backbone.frame_embeddings(a) for a in audio[0]]
        segment_frames = [backbone.frame_embeddings(a) for a in audio[1]]
    rows, labels = [], []
    for test, head in cv["heads"]:
        rows.append(detection_rows(head, [clip_frames[i] for i in test]))
        labels.append(data.y[test])
        if segment_frames:
            rows.append(detection_rows(head, segment_frames))
            labels.append(np.full(len(segment_frames), -1, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(labels), audio is not None


def save_head(path: Path, head: object) -> None:
    """Save a head's weights and shape to ``path`` (``torch.save``; loads with weights_only)."""
    torch = _torch()
    from earmark.outputs import atomic_path

    with atomic_path(path) as temp:
        torch.save(
            {"format": MODEL_FORMAT, **head.describe(), "state_dict": head.state_dict()},  # type: ignore[attr-defined]
            temp,
        )


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_dir: Path
    metrics: dict
    config: dict


def train(
    dataset: Dataset,
    out_dir: str | Path,
    tagger: object,
    config: TrainConfig | None = None,
    log: Log | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    overwrite: bool = False,
    argv: Sequence[str] | None = None,
) -> TrainResult:
    """Cross-validate, fit and save a custom-class head (see the module docstring)."""
    import dataclasses

    from earmark.batch import package_versions
    from earmark.outputs import atomic_write_text, write_json

    config = config or TrainConfig()
    config.validate()
    if config.augment is None:  # mixing augmentation by default when there are backgrounds
        config = dataclasses.replace(config, augment=2 if config.backgrounds else 0)
    say = log or (lambda _m: None)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "labels.json").is_file():
            raise ValueError(f"{out}: exists and is not an earmark model folder; not overwritten")
        if not overwrite:
            raise ValueError(f"{out}: a model is already there (use --overwrite to replace it)")
    started = time.perf_counter()
    if config.labelled:  # bad label files are reported before hours of work, not after
        from earmark.custom.strong_labels import load_labelled

        load_labelled(config.labelled, dataset.classes)
    backbone = Backbone.from_tagger(tagger)
    data = assemble(dataset, backbone, config, say, progress)
    embed_seconds = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{int(time.time() * 1000)}"
    work.mkdir()
    try:
        tb = work / "tensorboard"
        say(f"cross-validation of {', '.join(config.heads)} heads on {len(data.x)} clips")
        t0 = time.perf_counter()
        cv = cross_validate(data, config, config.heads, tb, say, tag="head")
        cv_splits = outer_splits(data.y, data.folds, config)
        head_cv_seconds = time.perf_counter() - t0
        kind, epochs = choose_final(cv["choices"])
        t0 = time.perf_counter()
        x_all, y_all = data.training_rows(np.arange(len(data.y)))
        writer = _writer(tb, f"head/final/{kind}")
        final = fit_head(
            kind, x_all, y_all, len(data.classes), config, config.seed, epochs=epochs, writer=writer
        )
        if writer is not None:
            writer.close()
        final_seconds = time.perf_counter() - t0
        save_head(work / "head.pt", final.head)
        baseline = None
        baseline_seconds = None
        if config.baseline:
            say("baseline: hand-made features (MFCC, chroma, spectral, ZCR, RMS) + MLP")
            t0 = time.perf_counter()
            from earmark.handcrafted import HandcraftedBackbone

            hand = TrainingData(
                x=np.zeros((0, 0)),
                y=data.y,
                folds=data.folds,
                files=data.files,
                classes=data.classes,
            )
            vecs, _, errors = embed_files(data.files, HandcraftedBackbone(), progress=progress)  # type: ignore[arg-type]
            bad = [data.files[i] for i, e in enumerate(errors) if e]
            if bad:
                raise ValueError(f"hand-made features failed on {bad[:3]}")
            hand.x = np.stack(vecs)  # type: ignore[arg-type]
            baseline = cross_validate(hand, config, ("mlp",), tb, say, tag="baseline")
            baseline_seconds = time.perf_counter() - t0
            atomic_write_text(
                work / "baseline_confusion.csv",
                confusion_csv(baseline["pooled"]["confusion"], data.classes),
            )
            plot_confusion(
                work / "baseline_confusion.png",
                baseline["pooled"]["confusion"],
                data.classes,
                f"baseline (hand-made features + MLP): accuracy {baseline['mean_accuracy']:.3f}",
            )
        finetuned = None
        if config.finetune:
            from earmark.finetuning import finetune_and_save

            layers = f"top {config.finetune_layers} layers" if config.finetune_layers else "all"
            say(f"fine-tuning the backbone ({layers}, {config.finetune_epochs} epochs per split)")
            finetuned = finetune_and_save(data, tagger, config, cv, final.head, work, say)
        from earmark.calibration import calibrate_thresholds, thresholds_of

        t0 = time.perf_counter()
        detection = None
        if config.frame_head != "none" and (config.backgrounds or config.labelled):
            from earmark.custom.detector import train_frame_detector

            groups = detection_groups(data, cv_splits, config)
            clips = [
                (f, data.classes[y], int(g))
                for f, y, g in zip(data.files, data.y, groups, strict=True)
            ]
            detection = train_frame_detector(
                clips,
                int(groups.max()) + 1,
                data.classes,
                tagger,
                detector_config(config),
                work,
                background_files(config.backgrounds) if config.backgrounds else [],
                background_files(config.others) if config.others else [],
                config.labelled,
                say,
                progress,
            )
            calibration = detection["calibration"]
            if finetuned:
                finetuned.pop("calibration_scores", None)
        else:
            say("calibrating the detection thresholds on out-of-fold clips")
            scored = finetuned.pop("calibration_scores") if finetuned else None
            if not (finetuned and finetuned["kept"]):
                scored = frozen_calibration_scores(data, cv, backbone, config)
            calibration = calibrate_thresholds(scored[0], scored[1], data.classes, mixed=scored[2])
        write_json(work / "thresholds.json", calibration)
        calibration_seconds = time.perf_counter() - t0
        atomic_write_text(
            work / "confusion.csv", confusion_csv(cv["pooled"]["confusion"], data.classes)
        )
        plot_confusion(
            work / "confusion.png",
            cv["pooled"]["confusion"],
            data.classes,
            f"{kind} head on {backbone.name} embeddings: accuracy {cv['mean_accuracy']:.3f}",
        )
        atomic_write_text(work / "predictions.csv", _predictions_csv(data, cv))
        write_json(
            work / "labels.json",
            {"classes": data.classes, "index": {c: i for i, c in enumerate(data.classes)}},
        )
        total = time.perf_counter() - started
        metrics = {
            "head": {"kind": kind, "epochs": epochs, **_public(cv)},
            "baseline": None
            if baseline is None
            else {"kind": "mlp on hand-made features", **_public(baseline)},
            "finetuned": finetuned,
            "detection": None if detection is None else detection["metrics"],
            "thresholds": calibration["classes"],
            "thresholds_on_mixtures": calibration["mixed"],
            "detect_thresholds": thresholds_of(calibration, data.classes),
            "n_clips": len(data.y),
            "n_augmented": 0 if data.aug_x is None else len(data.aug_x),
            "n_negatives": 0 if data.neg_x is None else len(data.neg_x),
            "skipped": [{"file": f, "error": e} for f, e in data.failed],
            "timing_seconds": {
                "embeddings": round(embed_seconds, 3),
                "head_cross_validation": round(head_cv_seconds, 3),
                "final_fit": round(final_seconds, 3),
                "baseline": None if baseline_seconds is None else round(baseline_seconds, 3),
                "threshold_calibration" if detection is None else "frame_detector": round(
                    calibration_seconds, 3
                ),
                "total": round(total, 3),
            },
        }
        write_json(work / "metrics.json", metrics)
        tagger_info = tagger.describe()  # type: ignore[attr-defined]
        config_doc = {
            "format": MODEL_FORMAT,
            "kind": "earmark custom classes",
            "train": asdict(config),
            "head": final.head.describe(),  # type: ignore[attr-defined]
            "backbone": {
                "model": tagger_info["name"],
                "checkpoint_sha256": tagger_info["checkpoint_sha256"],
                "embedding": "clip: mean over frequency and time of the last conv; "
                "detection: the same feature framewise (local scoring)",
                "dim": backbone.dim,
                "finetuned": bool(finetuned and finetuned["kept"]),
            },
            "classes": data.classes,
            "dataset": dataset.summary(),
            "command": list(argv) if argv is not None else None,
            "versions": package_versions(),
        }
        write_json(work / "config.json", config_doc)
        # the folder appears complete or not at all
        if out.exists():
            old = out.parent / f".{out.name}.old-{int(time.time() * 1000)}"
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return TrainResult(out, metrics, config_doc)


def format_report(metrics: dict) -> str:
    """A short text report of the cross-validated figures."""
    head = metrics["head"]
    lines = [
        f"head: {head['kind']} ({head['epochs']} epochs)",
        f"  {'split':<8} {'accuracy':>8} {'macro-F1':>8}  chosen",
    ]
    for s in head["splits"]:
        lines.append(
            f"  {s['split']:<8} {s['accuracy']:>8.3f} {s['macro_f1']:>8.3f}  {s['chosen']}"
        )
    lines.append(
        f"  {'mean':<8} {head['mean_accuracy']:>8.3f} {head['mean_macro_f1']:>8.3f}"
        f"  (std {head['std_accuracy']:.3f} / {head['std_macro_f1']:.3f})"
    )
    base = metrics.get("baseline")
    if base:
        lines.append(
            f"baseline (hand-made features + MLP): accuracy {base['mean_accuracy']:.3f}, "
            f"macro-F1 {base['mean_macro_f1']:.3f}"
        )
    ft = metrics.get("finetuned")
    if ft:
        layers = "whole backbone" if ft.get("whole_backbone") else f"top {ft.get('layers')} layers"
        lines.append(
            f"fine-tuned ({layers}, {ft['epochs']} epochs): accuracy {ft['mean_accuracy']:.3f}, "
            f"macro-F1 {ft['mean_macro_f1']:.3f}, {ft['seconds']:.0f} s; "
            + ("kept" if ft["kept"] else "not kept (the frozen head did better)")
        )
    per_class = head["pooled"]["per_class"]
    thresholds = metrics.get("detect_thresholds") or {}
    width = max(len(c) for c in per_class)
    lines.append(f"  {'class':<{width}} {'precision':>9} {'recall':>6} {'F1':>5}  detect threshold")
    for name, m in per_class.items():
        t = thresholds.get(name)
        lines.append(
            f"  {name:<{width}} {m['precision']:>9.3f} {m['recall']:>6.3f} {m['f1']:>5.3f}"
            + ("" if t is None else f"  {t:.2f}")
        )
    if thresholds:
        lines.append(
            "  detect thresholds: "
            + (
                "calibrated on out-of-fold clips mixed over the backgrounds"
                if metrics.get("thresholds_on_mixtures")
                else "0.5 (calibration needs --backgrounds to mix the clips over)"
            )
        )
    lines += format_detection(metrics.get("detection"))
    t = metrics["timing_seconds"]
    lines.append(
        f"time: {t['total']:.1f} s (embeddings {t['embeddings']:.1f} s, head CV "
        f"{t['head_cross_validation']:.1f} s, final fit {t['final_fit']:.1f} s"
        + (f", baseline {t['baseline']:.1f} s" if t.get("baseline") is not None else "")
        + ")"
    )
    return "\n".join(lines)


def format_detection(detection: dict | None) -> list[str]:
    """Lines of the expected detection quality (frame-level head, held-out mixtures)."""
    if not detection:
        return []
    cv = detection["cross_validation"]
    width = max([len(c) for c in cv["per_class"]] + [7])
    lines = [
        f"detection in long recordings ({detection['head']} frame head, "
        f"{detection['training_data']['mixtures']} mixtures, "
        f"{detection['training_data']['labelled_recordings']} labelled recordings); "
        "expected quality on held-out mixtures:",
        f"  {'class':<{width}} {'event F1':>8} {'segment F1':>10} {'threshold':>9}",
    ]
    for name, m in cv["per_class"].items():
        lines.append(
            f"  {name:<{width}} {m['event_f1']:>8.3f} {m['segment_f1']:>10.3f}"
            f" {detection['thresholds'][name]:>9.2f}"
        )
    lines.append(
        f"  {'overall':<{width}} {cv['event_f1']:>8.3f} {cv['segment_f1']:>10.3f}"
        f"  PSDS1 {cv['psds1']:.3f}  (event F1: 0.2 s onset collar, offsets max(0.2 s, 20 %))"
    )
    lines += [f"  warning: {w}" for w in detection.get("warnings", [])]
    return lines
