"""What a custom-class training run works on: its options, the embedded clips, and the
background recordings the clips are mixed over (augmentation)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earmark.audio import SAMPLE_RATE

HEAD_KINDS = ("logreg", "mlp")
"""Clip heads ``earmark train`` can fit."""
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
    """Also fine-tune the backbone with the head (:mod:`earmark.custom.finetuning`)."""
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
    mixture_speeds: tuple[float, ...] = ()
    """Extra copies of every clip in the mixtures, played this much faster or slower."""
    background_split: str = "time"
    others: str | None = None
    """Folder of recordings of other sounds: distractors in the mixtures (none of the classes)."""
    labelled: tuple[str, ...] = ()
    """Strongly labelled recordings: folders or label files (:mod:`earmark.custom.strong_labels`).
    """
    reviews: tuple[str, ...] = ()
    """Run folders reviewed with ``earmark review``: their reviewed stretches of audio
    (:func:`earmark.custom.strong_labels.load_reviewed`)."""
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


def load_backgrounds(files: Sequence[Path]) -> list[np.ndarray]:
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


def parse_speeds(text: str | None) -> tuple[float, ...]:
    """``train --speeds 0.9,1.1`` -> ``(0.9, 1.1)``; empty -> ``()``."""
    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--speeds must be numbers separated by commas, not {text!r}") from None
