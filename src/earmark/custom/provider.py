"""Custom classes in the detection path: the provider the core calls, and :func:`detect_custom`.

:meth:`CustomClasses.frame_probabilities` applies the head to the *framewise* embeddings that
``earmark detect`` computes anyway (the same feature, every 0.32 s, pooled over 1.6 s), so
``earmark detect --classes MODEL_DIR`` detects the custom classes with the same framewise
scoring and the same event post-processing (thresholds, hysteresis, median filter, gap
merging, boundary refinement) as AudioSet classes, alone or beside them, in one pass. The core
reaches this module only through the ``earmark.classes`` entry point (:data:`PROVIDER`,
:mod:`earmark.extensions`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from earmark.constants import DEFAULT_MODEL
from earmark.custom.model import CUSTOM_MID_PREFIX, CustomModelError, cached_custom_classes
from earmark.labels import Label


def includes_audioset(options: Any) -> bool:
    """Whether a run with custom classes also reports AudioSet classes: when asked
    (``audioset``), or when AudioSet classes are selected with ``--labels``."""
    if getattr(options, "audioset", None) is not None:
        return bool(options.audioset)
    return not getattr(options, "classes", None) or bool(options.postprocess.labels)


def combined_labels(tagger: Any, options: Any) -> list[Label]:
    """The columns of the score matrix of a run with ``options.classes``."""
    custom = cached_custom_classes(options.classes)
    if includes_audioset(options):
        names = [lab.name for lab in tagger.labels]
        return list(tagger.labels) + custom.labels(names, start=len(tagger.labels))
    return custom.labels()


def custom_selection(options: Any, labels: Sequence[Label]) -> Any:
    """Post-processing options for combined scores.

    * The custom classes get their calibrated thresholds (``thresholds.json``) unless
      ``options.calibrated_thresholds`` is off (``--threshold`` turns it off); per-class
      thresholds given by the user still win.
    * A ``--labels`` selection of AudioSet classes keeps every custom class too.
    """
    post = options.postprocess
    if getattr(options, "calibrated_thresholds", True):
        custom = cached_custom_classes(options.classes)
        calibrated = {
            f"{CUSTOM_MID_PREFIX}{name}": value for name, value in custom.thresholds.items()
        }
        if calibrated:  # later keys win: the user's own per-class thresholds come last
            post = dataclasses.replace(post, thresholds={**calibrated, **post.thresholds})
        medians = {f"{CUSTOM_MID_PREFIX}{n}": v for n, v in custom.median_filters.items()}
        shortest = {f"{CUSTOM_MID_PREFIX}{n}": v for n, v in custom.min_durations.items()}
        post = dataclasses.replace(
            post,
            median_filters={**medians, **post.median_filters},
            min_durations={**shortest, **post.min_durations},
        )
    if post.labels is None:
        return post
    custom_names = [lab.name for lab in labels if lab.mid.startswith(CUSTOM_MID_PREFIX)]
    return dataclasses.replace(post, labels=[*post.labels, *custom_names])


def check_custom_options(tagger: Any, options: Any) -> tuple[list[Label], Any]:
    """Load and check ``options.classes`` before any file is decoded: the folder, its
    backbone against ``tagger``; returns the run's labels and post-processing options."""
    custom = cached_custom_classes(options.classes)
    if custom.backbone_state is None:
        custom.check_backbone(tagger)
    labels = combined_labels(tagger, options)
    return labels, custom_selection(options, labels)


def describe_custom_run(tagger: Any, options: Any) -> dict:
    """What a run with ``options.classes`` detected and at which thresholds (for the manifest
    and the report): model folder, classes, fine-tuned or not, whether AudioSet classes were
    reported too, the threshold of every custom class and where it came from."""
    from earmark.events import effective_thresholds

    custom = cached_custom_classes(options.classes)
    labels, post = check_custom_options(tagger, options)
    mine = [lab for lab in labels if lab.mid.startswith(CUSTOM_MID_PREFIX)]
    on = effective_thresholds(post, mine)
    calibration = custom.path / "thresholds.json"
    if not getattr(options, "calibrated_thresholds", True):
        source = "one threshold for all classes (--threshold)"
    elif custom.frame_head is not None:
        source = "calibrated per class for event F1 on held-out training mixtures (frame head)"
    elif calibration.is_file() and json.loads(calibration.read_text(encoding="utf-8")).get("mixed"):
        source = "calibrated per class on out-of-fold clips mixed over backgrounds"
    else:
        source = "0.5 for every class (no calibration on mixtures in the model folder)"
    if options.postprocess.thresholds:
        source += "; per-class overrides given"
    return {
        "model_dir": str(custom.path),
        "classes": list(custom.classes),
        "finetuned_backbone": custom.backbone_state is not None,
        "detector": "frame-level head" if custom.frame_head is not None else "clip head",
        "audioset": includes_audioset(options),
        "thresholds": {lab.name: on[lab.name] for lab in mine},
        "threshold_source": source,
        "cross_validated_accuracy": ((custom.metrics or {}).get("head") or {}).get("mean_accuracy"),
    }


def apply_custom_classes(
    tagger: Any, scores: Any, options: Any, path: str | Path | None = None
) -> tuple[Any, list[Label]]:
    """Scores and labels of a detection run with custom classes (``options.classes``).

    ``scores`` must carry framewise embeddings (``ScoringOptions.embeddings``). With a
    fine-tuned backbone, the file at ``path`` is scored again with it. Returns the new
    :class:`FrameScores` (AudioSet columns first when included, then the custom classes) and
    their labels.
    """
    from earmark.scoring import FrameScores

    custom = cached_custom_classes(options.classes)
    if custom.frame_head is not None:  # frame-level detector on the pretrained backbone's frames
        custom.check_backbone(tagger)
        if scores.features is None:
            raise CustomModelError("custom classes need framewise features from the scorer")
        from earmark.custom.frame_head import apply_gates, head_input

        rows = head_input(scores.features, scores.scores if custom.frame_audioset else None)
        probs = apply_gates(custom.frame_head.probabilities(rows), scores.scores, custom.gates)
    elif custom.backbone_state is None:
        custom.check_backbone(tagger)
        embeddings = scores.embeddings
        if embeddings is None:
            raise CustomModelError("custom classes need framewise embeddings from the scorer")
    else:
        if path is None:
            raise CustomModelError(f"{custom.path}: a fine-tuned backbone needs the file path")
        from earmark.audio import SAMPLE_RATE, AudioReader
        from earmark.scoring import FrameScorer

        backbone = custom.backbone(tagger)
        scoring = dataclasses.replace(options.scoring, embeddings=True)
        scorer = FrameScorer(backbone.net, backbone.front_end, scoring)
        with AudioReader(path, SAMPLE_RATE, 10.0) as reader:  # streamed: long files are fine
            second = scorer.score(reader, expected_seconds=reader.info.duration)
        embeddings = _fit_rows(cast(np.ndarray, second.embeddings), scores.n_frames)
    if custom.frame_head is None:
        probs = custom.frame_probabilities(embeddings)
    labels = combined_labels(tagger, options)
    if includes_audioset(options):
        matrix = np.concatenate([scores.scores, probs.astype(scores.scores.dtype)], axis=1)
    else:
        matrix = probs.astype(scores.scores.dtype)
    meta = {**scores.meta, "custom_classes": str(custom.path)}
    return FrameScores(matrix, scores.hop, scores.duration, None, meta), labels


def _fit_rows(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    pad = np.repeat(x[-1:], n - len(x), axis=0) if len(x) else np.zeros((n, x.shape[1]))
    return np.concatenate([x, pad])


def detect_custom(
    source: str | Path,
    model_dir: str | Path,
    tagger: Any = None,
    audioset: bool = False,
    refine: bool = True,
    **post: Any,
) -> list[Any]:
    """Python API: events of the custom classes (and optionally AudioSet's) in a recording.

    ``post`` holds :class:`~earmark.events.PostprocessOptions` keywords (``threshold``...).
    The custom classes use their calibrated thresholds unless ``threshold`` is given. Event
    boundaries are refined on the signal as ``earmark detect`` does, unless ``refine=False``.
    """
    from earmark.boundaries import BandEnvelope, refine_events
    from earmark.events import PostprocessOptions, scores_to_events
    from earmark.pipeline import DetectOptions, score_file
    from earmark.tagger import load_model

    custom = cached_custom_classes(model_dir)
    tagger = tagger or load_model(custom.model_name or DEFAULT_MODEL)
    options = DetectOptions(
        postprocess=PostprocessOptions(**post),
        classes=str(model_dir),
        audioset=audioset,
        calibrated_thresholds="threshold" not in post,
    )
    scoring = dataclasses.replace(options.scoring, embeddings=True, features=True)
    envelope = BandEnvelope() if refine else None
    scores, _ = score_file(tagger, source, scoring, envelope=envelope)
    scores, labels = apply_custom_classes(tagger, scores, options, source)
    events = scores_to_events(
        scores.scores,
        scores.hop,
        labels,
        custom_selection(options, labels),
        file=str(source),
        duration=scores.duration,
        ontology=tagger.ontology if post.get("labels") else None,
    )
    if envelope is not None:
        events = refine_events(events, envelope, None, scores.duration)
    return events


class CustomClassProvider:
    """The custom classes of ``earmark train`` as a provider of extra classes for the
    detection path (:class:`earmark.extensions.ClassProvider`, entry point ``custom``)."""

    def check(self, tagger: Any, options: Any) -> tuple[list[Label], Any]:
        """:func:`check_custom_options`."""
        return check_custom_options(tagger, options)

    def apply(
        self, tagger: Any, scores: Any, options: Any, path: str | Path | None
    ) -> tuple[Any, list[Label]]:
        """:func:`apply_custom_classes`."""
        return apply_custom_classes(tagger, scores, options, path)

    def selection(self, options: Any, labels: list[Label]) -> Any:
        """:func:`custom_selection`."""
        return custom_selection(options, labels)

    def describe(self, tagger: Any, options: Any) -> dict:
        """:func:`describe_custom_run`."""
        return describe_custom_run(tagger, options)


PROVIDER = CustomClassProvider()
"""Registered as the ``custom`` entry point of ``earmark.classes`` (pyproject.toml)."""
