"""The training loop shared by the clip head and the frame head: epochs, early stopping.

Both heads are small networks fitted with mini-batches of shuffled examples and binary cross
entropy; both stop when the validation loss has not improved for ``patience`` epochs and keep
the weights of the best epoch. Everything is seeded by the caller's generator, so a run
repeats bit for bit on the same machine and thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a head is trained, not when earmark starts
    import torch

MIN_IMPROVEMENT = 1e-5
"""A validation loss must drop by more than this to count as better."""


@dataclass
class EpochRun:
    """How a training run went: the best epoch (or the last one without validation)."""

    epochs: int
    val_loss: float | None = None
    val_extra: dict = field(default_factory=dict)
    curve: list[tuple[float, float | None]] = field(default_factory=list)
    """``(train loss, validation loss)`` per epoch."""


def run_epochs(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    max_epochs: int,
    patience: int,
    validate: Callable[[], tuple[float, dict]] | None = None,
    writer: object | None = None,
    prefix: str = "",
) -> EpochRun:
    """Train ``model`` on ``(x, y)`` with BCE-with-logits for up to ``max_epochs`` epochs.

    ``validate`` returns the validation loss and other figures to log (e.g. accuracy); with
    it, training stops after ``patience`` epochs without improvement and the model is left with
    its best epoch's weights. Curves go to ``writer`` (TensorBoard) as ``{prefix}loss/...``.
    """
    import torch

    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_loss, best_epoch, best_extra, best_state = math.inf, 0, {}, None
    since_best = 0
    curve: list[tuple[float, float | None]] = []
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        train_loss = total / len(x)
        if writer is not None:
            writer.add_scalar(f"{prefix}loss/train", train_loss, epoch)  # type: ignore[attr-defined]
        if validate is None:
            curve.append((train_loss, None))
            continue
        model.eval()
        with torch.no_grad():
            val_loss, extra = validate()
        curve.append((train_loss, val_loss))
        if writer is not None:
            writer.add_scalar(f"{prefix}loss/validation", val_loss, epoch)  # type: ignore[attr-defined]
            for name, value in extra.items():
                writer.add_scalar(f"{prefix}{name}/validation", value, epoch)  # type: ignore[attr-defined]
        if val_loss < best_loss - MIN_IMPROVEMENT:
            best_loss, best_epoch, best_extra = val_loss, epoch, extra
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    model.eval()
    if best_state is not None:
        model.load_state_dict(best_state)
        return EpochRun(best_epoch, best_loss, best_extra, curve)
    return EpochRun(max_epochs, None, {}, curve)


SHAPE_KEYS = ("kind", "dim", "n_classes", "hidden", "dropout")
"""What a head saves about its shape beside its weights, and what it is rebuilt from."""


def head_shape(head: object) -> dict:
    """The shape of a head (``kind``, ``dim``, ``n_classes``, ``hidden``, ``dropout``)."""
    return {key: getattr(head, key) for key in SHAPE_KEYS}


def load_head(
    path: str | Path, build: Callable[..., torch.nn.Module]
) -> tuple[torch.nn.Module, dict]:
    """A head saved with its shape (``torch.save`` of the shape, ``state_dict`` and extras),
    rebuilt by ``build(kind, dim, n_classes, hidden, dropout)``, in eval mode; and everything
    else that was saved with it."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    head = build(
        state["kind"],
        int(state["dim"]),
        int(state["n_classes"]),
        int(state["hidden"]),
        float(state["dropout"]),
    )
    head.load_state_dict(state["state_dict"])
    head.eval()
    return head, {k: v for k, v in state.items() if k != "state_dict"}


def tensorboard_writer(root: str | Path | None, name: str):  # type: ignore[no-untyped-def]
    """A TensorBoard writer for ``root/name`` (``None`` without a root)."""
    if root is None:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(Path(root) / name), flush_secs=5)
