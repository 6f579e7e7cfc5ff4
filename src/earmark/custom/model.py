"""A trained custom-class model folder (``earmark train``'s MODEL_DIR), loaded and checked.

A MODEL_DIR holds a head (``head.pt``) that maps the backbone's clip embedding to one sigmoid
output per custom class, its class list (``labels.json``) and the exact backbone it was trained
on (``config.json``: model name and checkpoint sha256); optionally a fine-tuned backbone
(``backbone.pt``), a frame-level head (``frame_head.pt``) and calibrated thresholds
(``thresholds.json``). :func:`load_custom_classes` reads it into :class:`CustomClasses`, whose
:meth:`~CustomClasses.probabilities` and :meth:`~CustomClasses.frame_probabilities` score clip
and framewise embeddings. :mod:`earmark.custom.provider` uses it at detection time and
:mod:`earmark.custom.classify` for whole clips.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from earmark.labels import Label

CUSTOM_MID_PREFIX = "custom:"
"""Custom classes get ``mid = custom:<name>`` in events and score files."""


class CustomModelError(ValueError):
    """A MODEL_DIR that cannot be used; the message names the folder and the cause."""


@dataclass
class CustomClasses:
    """A trained custom-class head, ready to score embeddings."""

    path: Path
    classes: list[str]
    head: Any
    config: dict
    metrics: dict | None = None
    backbone_state: Path | None = None
    """A fine-tuned backbone (``backbone.pt``), or ``None`` for the pretrained one."""
    frame_head: Any = None
    """The frame-level detector head (``frame_head.pt``, :mod:`earmark.custom.frame_head`),
    or ``None`` for a model trained without mixtures (detection then uses the clip head)."""
    frame_audioset: bool = False
    """Whether the frame head reads the AudioSet scores beside the backbone features."""
    gates: dict[int, tuple] = field(default_factory=dict)
    """AudioSet evidence gates of the frame head: class column -> (AudioSet columns, floor)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Detection threshold per class: calibrated on mixtures (``thresholds.json``) or
    :data:`earmark.custom.calibration.UNCALIBRATED_THRESHOLD`."""
    median_filters: dict[str, float] = field(default_factory=dict)
    min_durations: dict[str, float] = field(default_factory=dict)
    """Per class median filter and minimum duration chosen on mixtures (``thresholds.json``)."""
    _backbone: Any = field(default=None, repr=False)

    @property
    def model_name(self) -> str:
        """Name of the pretrained model the head was trained on."""
        return str(self.config.get("backbone", {}).get("model", ""))

    @property
    def checkpoint_sha256(self) -> str:
        """sha256 of the pretrained checkpoint the head was trained on."""
        return str(self.config.get("backbone", {}).get("checkpoint_sha256", ""))

    def labels(self, taken: Sequence[str] = (), start: int = 0) -> list[Label]:
        """The classes as :class:`Label` (mid ``custom:<name>``), numbered from ``start``.

        A name that is also in ``taken`` (e.g. an AudioSet class called "Rain") gets the suffix
        `` (custom)``, so that events, thresholds and label selections stay unambiguous.
        """
        lowered = {t.lower() for t in taken}
        out = []
        for i, name in enumerate(self.classes):
            shown = f"{name} (custom)" if name.lower() in lowered else name
            out.append(Label(index=start + i, mid=f"{CUSTOM_MID_PREFIX}{name}", name=shown))
        return out

    def check_backbone(self, tagger: Any) -> None:
        """Raise :class:`CustomModelError` if ``tagger`` is not the backbone of the head."""
        if self.checkpoint_sha256 and tagger.checkpoint_sha256 != self.checkpoint_sha256:
            raise CustomModelError(
                f"{self.path}: the head was trained on {self.model_name} "
                f"(checkpoint sha256 {self.checkpoint_sha256[:12]}...), but the loaded model is "
                f"{tagger.spec.name} ({tagger.checkpoint_sha256[:12]}...); "
                f"use --model {self.model_name}"
            )

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Sigmoid outputs ``(n, classes)`` of the head for ``(n, dim)`` embeddings."""
        from earmark.custom.clip_head import predict_proba

        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.head.dim:
            raise CustomModelError(
                f"{self.path}: the head expects {self.head.dim}-value embeddings, got {x.shape}"
            )
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return predict_proba(self.head, x).astype(np.float32)

    def frame_probabilities(self, frame_embeddings: np.ndarray) -> np.ndarray:
        """Framewise class scores ``(frames, classes)`` from framewise embeddings."""
        return self.probabilities(frame_embeddings)

    def backbone(self, tagger: Any) -> Any:
        """The :class:`earmark.custom.embeddings.Backbone` to embed with: the fine-tuned one
        when the folder has it, else the tagger's (after checking it is the right one)."""
        from earmark.custom.embeddings import Backbone

        if self.backbone_state is None:
            self.check_backbone(tagger)
            return Backbone.from_tagger(tagger)
        if self._backbone is None:
            self._backbone = load_finetuned_backbone(self.backbone_state, tagger)
        return self._backbone


def load_finetuned_backbone(path: Path, tagger: Any) -> Any:
    """A :class:`Backbone` with the fine-tuned weights saved in ``path`` (BatchNorm fused)."""
    import torch

    from earmark.assets import sha256_file
    from earmark.custom.embeddings import Backbone
    from earmark.model import build_model, fuse_batchnorm

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = build_model(float(state["width"]), state["state_dict"])
    fuse_batchnorm(net)
    return Backbone(net, tagger.front_end, key=sha256_file(path), name=f"{path.parent.name}")


def load_custom_classes(model_dir: str | Path) -> CustomClasses:
    """Load a MODEL_DIR written by ``earmark train``.

    Raises:
        CustomModelError: the folder is missing, incomplete or not an earmark model.
    """
    from earmark.custom.clip_head import make_head
    from earmark.custom.fitting import load_head

    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise CustomModelError(f"{path}: no such model folder (train one with 'earmark train')")
    missing = [n for n in ("head.pt", "labels.json", "config.json") if not (path / n).is_file()]
    if missing:
        raise CustomModelError(
            f"{path}: not an earmark custom-class model (missing {', '.join(missing)})"
        )
    try:
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        classes = [str(c) for c in labels["classes"]]
        head, _ = load_head(path / "head.pt", make_head)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CustomModelError(f"{path}: damaged model folder ({exc})") from None
    if len(classes) != head.n_classes:
        raise CustomModelError(
            f"{path}: labels.json lists {len(classes)} classes, the head has {head.n_classes}"
        )
    metrics = None
    if (path / "metrics.json").is_file():
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    from earmark.custom.calibration import filters_of, thresholds_of

    calibration = None
    if (path / "thresholds.json").is_file():
        try:
            calibration = json.loads((path / "thresholds.json").read_text(encoding="utf-8"))
            unknown = set(calibration["classes"]) - set(classes)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CustomModelError(f"{path}: damaged thresholds.json ({exc})") from None
        if unknown:
            raise CustomModelError(f"{path}: thresholds.json names unknown classes {unknown}")
    thresholds = thresholds_of(calibration, classes)
    median_filters, min_durations = filters_of(calibration, classes)
    backbone_state = path / "backbone.pt"
    frame_head, frame_audioset, gates = None, False, {}
    if (path / "frame_head.pt").is_file():
        from earmark.custom.frame_head import load_frame_head

        try:
            frame_head, extra = load_frame_head(path / "frame_head.pt")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CustomModelError(f"{path}: damaged frame_head.pt ({exc})") from None
        frame_audioset = bool(extra.get("audioset_input"))
        gates = {
            k: (list(cols), float(floor))
            for k, (cols, floor) in enumerate(
                zip(extra.get("gate_columns", []), extra.get("gate_floors", []), strict=True)
            )
            if cols
        }
        if frame_head.n_classes != len(classes):
            raise CustomModelError(
                f"{path}: frame_head.pt has {frame_head.n_classes} outputs, "
                f"labels.json {len(classes)} classes"
            )
    return CustomClasses(
        frame_head=frame_head,
        frame_audioset=frame_audioset,
        gates=gates,
        path=path,
        classes=classes,
        head=head,
        config=config,
        metrics=metrics,
        backbone_state=backbone_state if backbone_state.is_file() else None,
        thresholds=thresholds,
        median_filters=median_filters,
        min_durations=min_durations,
    )


@lru_cache(maxsize=8)
def _cached(model_dir: str, mtime_ns: int) -> CustomClasses:
    return load_custom_classes(model_dir)


def cached_custom_classes(model_dir: str | Path) -> CustomClasses:
    """:func:`load_custom_classes`, loaded once per process (and again if the head changes)."""
    path = Path(model_dir).expanduser().resolve()
    head = path / "head.pt"
    mtime = head.stat().st_mtime_ns if head.is_file() else 0
    return _cached(str(path), mtime)
