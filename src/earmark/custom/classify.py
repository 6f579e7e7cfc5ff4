"""Class probabilities of whole clips with a trained MODEL_DIR: :func:`classify`.

``earmark classify`` and the Python API use it; a clip is embedded with the model's backbone
and scored by its clip head (and, when the model has one, its frame head).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from earmark.constants import DEFAULT_MODEL
from earmark.custom.model import CustomClasses, load_custom_classes


@dataclass
class ClipResult:
    """Class probabilities of one clip."""

    file: str
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most probable class."""
        if not self.probabilities:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {
            "file": self.file,
            "label": self.label,
            "probability": None if self.label is None else self.probabilities[self.label],
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "error": self.error,
        }


def classify(
    files: Sequence[str | Path],
    model: CustomClasses | str | Path,
    tagger: Any = None,
    progress: Any = None,
) -> list[ClipResult]:
    """Class probabilities (independent sigmoid outputs) of every file, in order.

    With a frame-level head (a model trained with backgrounds), a clip's probability is the
    mean of the clip head's and of the frame head's highest frame score: the frame head was
    trained on clips mixed over backgrounds, which keeps noisy clips classified (measured in
    ``benchmarks/custom_sed.py``). A file that cannot be decoded gets ``error`` set and no
    probabilities; the others are still classified.
    """
    from earmark.custom.embeddings import embed_files
    from earmark.tagger import load_model

    custom = model if isinstance(model, CustomClasses) else load_custom_classes(model)
    tagger = tagger or load_model(custom.model_name or DEFAULT_MODEL)
    backbone = custom.backbone(tagger)
    clips, _, errors = cast(Any, embed_files(files, backbone, progress=progress))
    ok = [i for i, c in enumerate(clips) if c is not None]
    probs = custom.probabilities(np.stack([clips[i] for i in ok])) if ok else np.zeros((0, 0))
    if custom.frame_head is not None and ok:  # trained on noisy mixtures: robust to noise
        probs = (probs + _frame_clip_probabilities(custom, tagger, [files[i] for i in ok])) / 2
    results = [ClipResult(str(f), error=e) for f, e in zip(files, errors, strict=True)]
    for row, i in enumerate(ok):
        results[i].probabilities = {
            c: float(p) for c, p in zip(custom.classes, probs[row], strict=True)
        }
    return results


def _frame_clip_probabilities(custom: CustomClasses, tagger: Any, files: Sequence) -> np.ndarray:
    """Clip probabilities from the frame head: each class's highest frame score."""
    from earmark.audio import SAMPLE_RATE
    from earmark.audio import load as load_audio
    from earmark.custom.frame_head import apply_gates, head_input
    from earmark.scoring import ScoringOptions

    scorer = tagger.scorer(ScoringOptions(features=True))
    rows = []
    for file in files:
        audio = load_audio(file, SAMPLE_RATE)
        if len(audio) < SAMPLE_RATE:  # as the clip embedding: short clips are repeated
            audio = np.resize(audio, SAMPLE_RATE)
        scores = scorer.score(audio)
        x = head_input(scores.features, scores.scores if custom.frame_audioset else None)
        frames = apply_gates(custom.frame_head.probabilities(x), scores.scores, custom.gates)
        rows.append(frames.max(axis=0))
    return np.stack(rows)
