"""The frame-level head: backbone frames (and AudioSet evidence) -> one sigmoid per custom class.

Input per 0.32 s frame: the backbone's unpooled framewise features (the last convolution
averaged over frequency, :attr:`earmark.scoring.FrameScores.features`) and, optionally, the
AudioSet model's own frame scores as logits (evidence that a sound is clearly something else:
a siren is not a baby). The head standardises them, projects to ``hidden`` units and adds
temporal context:

``linear``  a per-frame MLP, no context (the clip head's design applied to frames);
``conv``    two residual 1-D convolutions over time (kernel 5, dilations 1 and 2: about
            4 s of context), the default;
``gru``     a bidirectional GRU over the frames.

It is trained with binary cross entropy on soft frame targets (the share of each frame an
event covers, :func:`earmark.custom.mixtures.frame_targets`); frames of background or of other
sounds have all-zero targets. Training is seeded, single-threaded and early-stopped on
validation recordings, so the same data and seed give the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from earmark.custom.fitting import head_shape, load_head, run_epochs

HEAD_KINDS = ("conv", "gru", "linear")
KERNEL = 5
LOGIT_CLIP = 12.0
"""AudioSet scores enter as logits clipped to +-12."""


def head_input(features: np.ndarray, audioset: np.ndarray | None) -> np.ndarray:
    """The head's input rows: features, then AudioSet scores as clipped logits when given."""
    x = np.asarray(features, dtype=np.float32)
    if audioset is None:
        return x
    p = np.clip(np.asarray(audioset, dtype=np.float32), 1e-6, 1.0 - 1e-6)
    logits = np.clip(np.log(p) - np.log1p(-p), -LOGIT_CLIP, LOGIT_CLIP)
    return np.concatenate([x, logits.astype(np.float32)], axis=1)


class FrameHead(nn.Module):
    """Framewise logits ``(B, T, classes)`` from input rows ``(B, T, dim)``."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self, kind: str, dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.3
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown frame head {kind!r}; use one of {HEAD_KINDS}")
        self.kind, self.dim, self.n_classes = kind, dim, n_classes
        self.hidden, self.dropout = hidden, dropout
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.project = nn.Sequential(
            nn.Dropout(dropout / 2), nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)
        )
        if kind == "conv":
            self.context = nn.ModuleList(
                nn.Conv1d(hidden, hidden, KERNEL, padding=(KERNEL // 2) * d, dilation=d)
                for d in (1, 2)
            )
        elif kind == "gru":
            self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every frame."""
        h = self.project((x - self.mean) / self.scale)
        if self.kind == "conv":
            c = h.transpose(1, 2)
            for conv in self.context:
                c = c + self.drop(torch.relu(conv(c)))
            h = c.transpose(1, 2)
        elif self.kind == "gru":
            h = h + self.drop(self.gru(h)[0])
        return self.out(h)

    def describe(self) -> dict:
        """Shape of the head (saved with its weights)."""
        return head_shape(self)

    @torch.no_grad()
    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Sigmoid outputs ``(T, classes)`` for the input rows ``(T, dim)`` of one recording."""
        self.eval()
        if len(rows) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))[None]
        return torch.sigmoid(self(x))[0].numpy()


class HeadEnsemble:
    """Frame heads of one shape whose logits are averaged: the final head and the heads of the
    cross-validation splits. Averaging logits (not probabilities) keeps the scale that the
    thresholds were chosen on where the members agree, and evens out what one seed or one
    split of the clips learnt by heart."""

    def __init__(self, heads: Sequence[FrameHead]) -> None:
        if not heads:
            raise ValueError("an ensemble needs at least one head")
        self.heads = list(heads)
        first = self.heads[0]
        self.kind, self.dim, self.n_classes = first.kind, first.dim, first.n_classes

    def describe(self) -> dict:
        """Shape of the members (saved with their weights)."""
        return self.heads[0].describe()

    @torch.no_grad()
    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Sigmoid of the members' mean logits ``(T, classes)`` for one recording's rows."""
        if len(rows) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))[None]
        logits = torch.zeros(len(rows), self.n_classes)
        for head in self.heads:
            head.eval()
            logits += head(x)[0]
        return torch.sigmoid(logits / len(self.heads)).numpy()


def apply_gates(probs: np.ndarray, audioset: np.ndarray, gates: dict[int, tuple]) -> np.ndarray:
    """Silence a class's frames where the AudioSet model gives none of its supporting classes
    at least the floor probability: ``gates`` maps a column of ``probs`` to ``(AudioSet
    columns, floor)`` (:func:`earmark.custom.detector.choose_gates`). Returns a new array."""
    out = np.array(probs, dtype=np.float32, copy=True)
    for k, (columns, floor) in gates.items():
        support = np.asarray(audioset, dtype=np.float32)[:, list(columns)].max(axis=1)
        out[support < floor, k] = 0.0
    return out


@dataclass(frozen=True)
class FitOptions:
    """Optimisation settings of :func:`fit_frame_head`. The head learns the few clips of each
    class by heart within a few epochs, so it is kept small and strongly regularised (chosen on
    the dev soundscapes of ``benchmarks/custom_sed.py``, docs/custom-classes.md)."""

    hidden: int = 64
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 5e-2
    batch_size: int = 32
    max_epochs: int = 60
    patience: int = 8


@dataclass
class FrameFit:
    """A fitted frame head and how its training went."""

    head: FrameHead
    epochs: int
    val_loss: float | None
    seconds: float
    curve: list[tuple[float, float | None]]
    """``(train loss, validation loss)`` per epoch."""


def windows(x: np.ndarray, y: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut one recording's rows and targets into windows of ``length`` frames (the last one
    padded by repeating the final frame, whose targets it repeats too)."""
    n = len(x)
    if n == 0:
        return np.zeros((0, length, x.shape[1]), np.float32), np.zeros(
            (0, length, y.shape[1]), np.float32
        )
    starts = list(range(0, max(n - length, 0) + 1, length))
    if starts[-1] + length < n:
        starts.append(n - length)
    xs, ys = [], []
    for s in starts:
        xw, yw = x[s : s + length], y[s : s + length]
        if len(xw) < length:
            pad = length - len(xw)
            xw = np.concatenate([xw, np.repeat(xw[-1:], pad, axis=0)])
            yw = np.concatenate([yw, np.repeat(yw[-1:], pad, axis=0)])
        xs.append(xw)
        ys.append(yw)
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def fit_frame_head(
    kind: str,
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    options: FitOptions,
    seed: int,
    length: int,
    val: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    epochs: int | None = None,
    writer: object | None = None,
) -> FrameFit:
    """Fit a :class:`FrameHead` on ``(rows, targets)`` recordings cut into ``length``-frame
    windows. With ``val``, stops when the validation loss has not improved for
    ``options.patience`` epochs and keeps the best epoch; else runs ``epochs`` epochs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is as fast and exactly repeatable
    try:
        return _fit(kind, train, options, seed, length, val, epochs, writer)
    finally:
        torch.set_num_threads(threads)


def _stack(
    recs: Sequence[tuple[np.ndarray, np.ndarray]], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [windows(x, y, length) for x, y in recs]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


def _fit(
    kind: str,
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    options: FitOptions,
    seed: int,
    length: int,
    val: Sequence[tuple[np.ndarray, np.ndarray]],
    epochs: int | None,
    writer: object | None,
) -> FrameFit:
    started = time.perf_counter()
    torch.manual_seed(seed)
    xt, yt = _stack(train, length)
    n_classes = yt.shape[2]
    head = FrameHead(kind, xt.shape[2], n_classes, options.hidden, options.dropout)
    flat = xt.reshape(-1, xt.shape[2])
    head.mean.copy_(flat.mean(dim=0))
    head.scale.copy_(flat.std(dim=0) + 1e-4)
    has_val = len(val) > 0
    if has_val:
        xv, yv = _stack(val, length)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss()
    run = run_epochs(
        head,
        xt,
        yt,
        optimiser,
        options.batch_size,
        torch.Generator().manual_seed(seed),
        epochs or options.max_epochs,
        options.patience,
        (lambda: (float(loss_fn(head(xv), yv)), {})) if has_val else None,
        writer,
        prefix="frame_",
    )
    return FrameFit(head, run.epochs, run.val_loss, time.perf_counter() - started, run.curve)


def save_frame_head(path, head: FrameHead | HeadEnsemble, extra: dict) -> None:  # type: ignore[no-untyped-def]
    """Save weights, shape and ``extra`` (input description) atomically. An ensemble saves its
    first member as the head and the others' weights under ``members``."""
    from earmark.outputs import atomic_path

    heads = head.heads if isinstance(head, HeadEnsemble) else [head]
    state = {**heads[0].describe(), **extra, "state_dict": heads[0].state_dict()}
    if len(heads) > 1:
        state["members"] = [h.state_dict() for h in heads[1:]]
    with atomic_path(path) as temp:
        torch.save(state, temp)


def load_frame_head(path) -> tuple[FrameHead | HeadEnsemble, dict]:  # type: ignore[no-untyped-def]
    """A saved head (an ensemble when it was saved with ``members``) and the rest of what was
    saved with it (``audioset_input`` ...)."""
    head, extra = load_head(path, FrameHead)
    members = extra.pop("members", None)
    if not members:
        return head, extra  # type: ignore[return-value]
    heads = [head]
    for weights in members:
        other = FrameHead(head.kind, head.dim, head.n_classes, head.hidden, head.dropout)  # type: ignore[arg-type]
        other.load_state_dict(weights)
        other.eval()
        heads.append(other)
    return HeadEnsemble(heads), extra  # type: ignore[arg-type]
