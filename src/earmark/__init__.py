"""earmark: find sound events in long, real recordings.

The data path, one module each::

    audio (decode, resample)  ->  features (log-mel)  ->  model (EfficientAT MobileNetV3)
      ->  scoring (framewise scores of long audio)  ->  events (post-processing)  ->  outputs

Quick start::

    import earmark
    model = earmark.load_model("mn04_as")
    events = earmark.detect("recording.mp3", model=model, threshold=0.3)
    scores = earmark.frame_scores("recording.mp3", model=model)   # (frames, 527) + time axis

Names are imported lazily so that ``import earmark`` stays cheap (torch loads on first use).
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("earmark")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "load_model": "earmark.tagger",
    "Tagger": "earmark.tagger",
    "detect": "earmark.python_api",
    "frame_scores": "earmark.python_api",
    "run": "earmark.batch",
    "DetectOptions": "earmark.pipeline",
    "Event": "earmark.events",
    "PostprocessOptions": "earmark.events",
    "FrameScores": "earmark.scoring",
    "ScoringOptions": "earmark.scoring",
    "AudioError": "earmark.audio",
    "AssetNotFoundError": "earmark.assets",
}
__all__ = [
    "AssetNotFoundError",
    "AudioError",
    "DetectOptions",
    "Event",
    "FrameScores",
    "PostprocessOptions",
    "ScoringOptions",
    "Tagger",
    "__version__",
    "detect",
    "frame_scores",
    "load_model",
    "run",
]

if TYPE_CHECKING:  # pragma: no cover
    from earmark.assets import AssetNotFoundError
    from earmark.audio import AudioError
    from earmark.batch import run
    from earmark.events import Event, PostprocessOptions
    from earmark.pipeline import DetectOptions
    from earmark.python_api import detect, frame_scores
    from earmark.scoring import FrameScores, ScoringOptions
    from earmark.tagger import Tagger, load_model


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'earmark' has no attribute {name!r}")
