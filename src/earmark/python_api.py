"""The one-call Python API: :func:`detect` and :func:`frame_scores`, every knob a typed keyword.

Both take a recording (a path, or an array with its ``sample_rate``) and a model (a loaded
:class:`~earmark.tagger.Tagger`, a registered model name, or ``None`` for the default model).
Every other option is keyword-only, named and typed here; its default is the one of the option
classes the command line uses (:class:`~earmark.scoring.ScoringOptions`,
:class:`~earmark.postprocessing.PostprocessOptions`, :class:`~earmark.boundaries.RefineOptions`),
so ``earmark.detect(path)`` finds what ``earmark detect path`` finds. A misspelt option is a
``TypeError`` naming it; a value out of range a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from earmark import assets
from earmark.audio import prepare_waveform
from earmark.boundaries import BandEnvelope, RefineOptions, refine_events
from earmark.constants import FRAME_HOP
from earmark.events import Event
from earmark.pipeline import events_from_scores, one_event_per_sound, score_file
from earmark.postprocessing import (
    DEFAULT_MEDIAN_FILTER,
    DEFAULT_MERGE_GAP,
    DEFAULT_THRESHOLD,
    PostprocessOptions,
)
from earmark.scoring import (
    DEFAULT_BLOCK_FRAMES,
    DEFAULT_MARGIN_FRAMES,
    DEFAULT_POOL,
    DEFAULT_SE_CONTEXT,
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_BATCH,
    FrameScores,
    ScoringOptions,
)
from earmark.tagger import Tagger, load_model

__all__ = ["detect", "frame_scores"]

Source = str | Path | np.ndarray
"""A recording: a path to any audio or video file, or samples (then give ``sample_rate``)."""
ModelArg = Tagger | str | None
"""A loaded model, a registered model name (``"mn04_as"``) or ``None`` for the default one."""

_Options = TypeVar("_Options", ScoringOptions, PostprocessOptions, RefineOptions)


def _build(cls: type[_Options], values: Mapping[str, object]) -> _Options:
    """An option object from the keyword values that are its fields (checked by ``validate``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    chosen: dict[str, Any] = {k: v for k, v in values.items() if k in names}
    return cls(**chosen)


def _tagger(model: ModelArg) -> Tagger:
    return model if isinstance(model, Tagger) else load_model(model or assets.DEFAULT_MODEL)


def detect(
    source: Source,
    sample_rate: int | None = None,
    model: ModelArg = None,
    *,
    # post-processing (PostprocessOptions)
    threshold: float = DEFAULT_THRESHOLD,
    thresholds: Mapping[str, float] | None = None,
    off_threshold: float | None = None,
    median_filter: float = DEFAULT_MEDIAN_FILTER,
    median_filters: Mapping[str, float] | None = None,
    min_duration: float = 0.0,
    min_durations: Mapping[str, float] | None = None,
    merge_gap: float = DEFAULT_MERGE_GAP,
    labels: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    group_by: str | None = None,
    join_related: bool = True,
    # scoring (ScoringOptions)
    method: Literal["local", "window"] = "local",
    se_context: int = DEFAULT_SE_CONTEXT,
    pool: int = DEFAULT_POOL,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    margin_frames: int = DEFAULT_MARGIN_FRAMES,
    window: float = DEFAULT_WINDOW,
    hop: float = FRAME_HOP,
    batch_size: int = DEFAULT_WINDOW_BATCH,
    dtype: Literal["float32", "float16"] = "float32",
    backend: Literal["auto", "torch", "onnxruntime"] = "auto",
    embeddings: bool = False,
    features: bool = False,
    # boundaries (RefineOptions)
    refine: bool = True,
    context: float = 3.0,
    background_percentile: float = 20.0,
    band_db: float = 1.0,
    min_bands: int = 3,
    level: float = 0.5,
    min_rise_db: float = 3.0,
    search_before: float = 0.3,
    search_after: float = 0.0,
    search_inside: float = 1.0,
    smoothing: float = 0.05,
) -> list[Event]:
    """Detect sound events in a recording: what occurs, when it starts and ends, how sure.

    Args:
        source: a path to an audio or video file, or samples (1-D, or 2-D with a channel axis;
            integers are scaled like soundfile does).
        sample_rate: the rate of ``source`` when it is an array (required then).
        model: a loaded model (:func:`earmark.load_model`), a model name, or ``None``: the
            default model, loaded on each call (load it once for many calls).

    Post-processing (:class:`~earmark.postprocessing.PostprocessOptions`):

        threshold: on threshold of every class, in (0, 1].
        thresholds: per-class on thresholds, by class name (any case) or mid.
        off_threshold: hysteresis off threshold; ``None``: half of each on threshold.
        median_filter: seconds of median filter on each class's scores.
        median_filters: per-class median filters in seconds, keyed like ``thresholds``.
        min_duration: seconds; shorter events are dropped.
        min_durations: per-class minimum durations in seconds, keyed like ``thresholds``.
        merge_gap: seconds; events of one class at most this far apart become one.
        labels: only these classes (names or mids; with the ontology, the classes below too).
        exclude: never these classes (as ``labels``).
        group_by: roll classes up the ontology: ``"parent"``, ``"top"`` or a depth ``"0"``...
        join_related: one event per sound: overlapping events of related classes are joined
            under the most specific confident one (the others are its ``alternatives``).

    Scoring (:class:`~earmark.scoring.ScoringOptions`):

        method: ``"local"`` (one pass with a bounded context) or ``"window"`` (the clip model
            on a window around each frame).
        se_context: squeeze-excitation window of ``local``, in frames of 0.32 s.
        pool: head pooling window of ``local``, in frames.
        block_frames: frames per block of ``local`` (bounds memory).
        margin_frames: context frames computed on each side of a block and discarded.
        window: window length of ``window``, in seconds.
        hop: frame hop of ``window``, in seconds (a multiple of 0.01).
        batch_size: windows per batch of ``window``.
        dtype: type of the kept scores, ``"float32"`` or ``"float16"``.
        backend: who runs the network: ``"auto"``, ``"torch"`` or ``"onnxruntime"``.
        embeddings: deprecated, ignored (events do not use embeddings; see
            :func:`frame_scores`).
        features: deprecated, ignored (as ``embeddings``).

    Boundaries (:class:`~earmark.boundaries.RefineOptions`):

        refine: snap onsets and offsets to the signal (``False`` keeps the score-based ones).
        context: seconds on each side of an event used to estimate its background.
        background_percentile: per-band percentile of that context taken as background.
        band_db: dB above background for a band to belong to the event.
        min_bands: bands needed to refine at all.
        level: fraction of the event's level (in dB above background) where a boundary is.
        min_rise_db: events rising less than this above background are left as they are.
        search_before: seconds an onset may move earlier.
        search_after: seconds an offset may move later.
        search_inside: seconds either may move into the event.
        smoothing: seconds of moving average on the activity curve.

    Returns:
        The events, sorted by onset.

    Raises:
        TypeError: an unknown keyword (a misspelt option).
        ValueError: an option out of range, or an array without ``sample_rate``.
        earmark.AudioError: the file cannot be decoded.
    """
    knobs = {k: v for k, v in locals().items() if k not in ("source", "sample_rate", "model")}
    for name in ("embeddings", "features"):
        if knobs.pop(name):
            warnings.warn(
                f"detect({name}=True) is deprecated and ignored: events do not use them; "
                f"use earmark.frame_scores({name}=True)",
                DeprecationWarning,
                stacklevel=2,
            )
    boundaries = _build(RefineOptions, knobs)
    boundaries.validate()
    scoring = _build(ScoringOptions, knobs)
    scoring.validate()
    post = _build(PostprocessOptions, knobs)
    post.validate()
    tagger = _tagger(model)
    envelope = BandEnvelope() if boundaries.refine else None
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("give sample_rate with an array source")
        audio = prepare_waveform(source, sample_rate)
        scores = tagger.frame_scores(audio, scoring)
        if envelope is not None:
            envelope.update(audio)
            envelope.finish()
        name = "<array>"
    else:
        scores, _ = score_file(tagger, source, scoring, envelope=envelope)
        name = str(source)
    events = events_from_scores(tagger, scores, post, file=name)
    if envelope is not None:
        events = refine_events(events, envelope, boundaries, scores.duration)
    return one_event_per_sound(tagger, events, post)


_POSTPROCESS_FIELDS = frozenset(f.name for f in dataclasses.fields(PostprocessOptions))


def frame_scores(
    source: Source,
    sample_rate: int | None = None,
    model: ModelArg = None,
    *,
    method: Literal["local", "window"] = "local",
    se_context: int = DEFAULT_SE_CONTEXT,
    pool: int = DEFAULT_POOL,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    margin_frames: int = DEFAULT_MARGIN_FRAMES,
    window: float = DEFAULT_WINDOW,
    hop: float = FRAME_HOP,
    batch_size: int = DEFAULT_WINDOW_BATCH,
    dtype: Literal["float32", "float16"] = "float32",
    backend: Literal["auto", "torch", "onnxruntime"] = "auto",
    embeddings: bool = False,
    features: bool = False,
    **ignored: object,
) -> FrameScores:
    """Framewise class probabilities of a recording, with their time axis (``.times``, ``.hop``).

    Args:
        source, sample_rate, model: as :func:`detect`.
        method, se_context, pool, block_frames, margin_frames, window, hop, batch_size, dtype,
            backend: how the scores are computed, as :func:`detect`.
        embeddings: also keep the framewise embeddings the head sees (``.embeddings``).
        features: also keep the unpooled framewise features (what a custom frame head reads).
        ignored: post-processing options of :func:`detect` (``threshold``...): accepted and
            ignored, as before, with a ``DeprecationWarning``. Any other keyword is a
            ``TypeError``.

    Returns:
        :class:`~earmark.scoring.FrameScores`: ``.scores`` is ``(frames, classes)``.
    """
    unknown = sorted(set(ignored) - _POSTPROCESS_FIELDS)
    if unknown:
        raise TypeError(
            f"frame_scores() got an unexpected keyword argument {unknown[0]!r} "
            f"(unknown option(s): {', '.join(unknown)})"
        )
    if ignored:
        warnings.warn(
            f"frame_scores() ignores post-processing options ({', '.join(sorted(ignored))}); "
            "passing them is deprecated",
            DeprecationWarning,
            stacklevel=2,
        )
    scoring = ScoringOptions(
        method=method,
        se_context=se_context,
        pool=pool,
        block_frames=block_frames,
        margin_frames=margin_frames,
        window=window,
        hop=hop,
        batch_size=batch_size,
        embeddings=embeddings,
        features=features,
        dtype=dtype,
        backend=backend,
    )
    scoring.validate()
    tagger = _tagger(model)
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("give sample_rate with an array source")
        return tagger.frame_scores(prepare_waveform(source, sample_rate), scoring)
    return score_file(tagger, source, scoring)[0]
