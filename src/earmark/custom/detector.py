"""Training the frame-level detector of custom classes: features, cross-validation, thresholds.

:func:`train_detector` is the detection half of ``earmark train`` (the clip head is
:mod:`earmark.custom.training`'s):

1. the training recordings (:mod:`.mixtures`, and the user's strongly labelled recordings) are
   scored once by the backbone, as ``earmark detect`` scores a file: unpooled framewise
   features, AudioSet frame scores and the band envelope that boundary refinement reads
   (features cached by audio content);
2. cross-validation over the groups: the split that holds group ``s`` out trains a
   :class:`~.frame_head.FrameHead` on the other groups but one, early-stopped on that one
   (the inner validation group), chooses every class's threshold on the inner validation group
   (event F1, :mod:`.postprocess`), and is scored on group ``s``: event F1, segment F1 and
   PSDS1 per class, with the same post-processing and boundary refinement as ``detect``. These
   are the expected figures written to ``metrics.json``;
3. the final head is fitted on every group for the median number of epochs; each class's
   threshold is the one that maximises event F1 on the out-of-fold predictions of all groups,
   and its AudioSet evidence gate is chosen on them too (:func:`.postprocess.choose_gates`).
   Stretches of reviewed runs (``--from-reviews``) are trained on but left out of these
   choices: the review queue picked them for being hard to decide, so they are no fair sample
   of the audio to set a threshold on.

A threshold at the edge of the grid is reported as a warning: the best value may lie beyond it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earmark.boundaries import BandEnvelope
from earmark.constants import FRAME_HOP
from earmark.custom.fitting import tensorboard_writer
from earmark.custom.frame_head import (
    HEAD_KINDS,
    FitOptions,
    FrameHead,
    HeadEnsemble,
    fit_frame_head,
    head_input,
)
from earmark.custom.mixtures import MixtureConfig, TrainingRecording, frame_targets
from earmark.custom.postprocess import (
    EVENT_COLLAR,
    OFFSET_SHARE,
    THRESHOLD_GRID,
    choose_filters,
    choose_gates,
    choose_thresholds,
    quality,
)
from earmark.evaluation import RefEvent
from earmark.events import PostprocessOptions

Log = Callable[[str], None]


@dataclass(frozen=True)
class DetectorConfig:
    """Options of the frame-level detector (saved in ``config.json``)."""

    head: str = "conv"
    audioset_input: bool = True
    """Feed the AudioSet frame scores to the head beside the backbone features."""
    audioset_gates: bool = True
    """Silence a class where the AudioSet model supports it less than it ever did in training,
    for the classes where that costs no event F1 on held-out mixtures (:func:`choose_gates`)."""
    ensemble: bool = True
    """Average the final head with the heads of the cross-validation splits (their logits)."""
    choose_filters: bool = False
    """Also choose each class's median filter and minimum duration on held-out mixtures
    (:func:`choose_filters`). Off by default: on the dev soundscapes of
    ``benchmarks/custom_sed.py`` it left event F1 unchanged (0.262 against 0.266) and cost
    segment F1 (0.644 against 0.695); the mixtures' best filters do not carry over."""
    fit: FitOptions = field(default_factory=FitOptions)
    mixtures: MixtureConfig = field(default_factory=MixtureConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.head not in HEAD_KINDS:
            raise ValueError(f"frame head must be one of {HEAD_KINDS}, not {self.head!r}")
        self.mixtures.validate()


@dataclass
class FrameData:
    """One training recording as the head sees it."""

    name: str
    group: int
    kind: str
    features: np.ndarray
    audioset: np.ndarray
    targets: np.ndarray
    envelope: np.ndarray
    duration: float
    events: list[RefEvent]

    def rows(self, audioset_input: bool) -> np.ndarray:
        """Input rows of the head."""
        return head_input(self.features, self.audioset if audioset_input else None)


def score_recordings(
    recordings: Sequence[TrainingRecording],
    tagger: object,
    classes: Sequence[str],
    progress: Callable[[int, int, int], None] | None = None,
) -> list[FrameData]:
    """Backbone features, AudioSet scores, targets and band envelope of every recording
    (the audio is released as it goes). Features are cached by audio content."""
    from earmark.custom.embeddings import EmbeddingCache, cache_root
    from earmark.scoring import ScoringOptions

    cache = EmbeddingCache(cache_root(), tagger.checkpoint_sha256)  # type: ignore[attr-defined]
    scorer = tagger.scorer(ScoringOptions(features=True))  # type: ignore[attr-defined]
    out = []
    for i, rec in enumerate(recordings):
        audio = np.ascontiguousarray(rec.audio, dtype=np.float32)
        sha = hashlib.sha256(audio.tobytes()).hexdigest()
        entry = cache.get(sha, "frames1:features+audioset", False)
        if entry is None:
            scored = scorer.score(audio)
            entry = {
                "features": scored.features.astype(np.float32),
                "audioset": scored.scores.astype(np.float32),
            }
            cache.put(sha, "frames1:features+audioset", entry)
        hop = FRAME_HOP
        n = len(entry["features"])
        duration = len(audio) / 32000
        out.append(
            FrameData(
                name=rec.name,
                group=rec.group,
                kind=rec.kind,
                features=entry["features"],
                audioset=entry["audioset"],
                targets=frame_targets(rec.events, n, hop, classes),
                envelope=BandEnvelope.of(audio).db,
                duration=duration,
                events=[RefEvent(rec.name, e.onset, e.offset, e.label) for e in rec.events],
            )
        )
        rec.audio = np.zeros(0, dtype=np.float32)
        if progress is not None:
            progress(i + 1, len(recordings), cache.hits)
    return out


# ---------------------------------------------------------------------------- training
@dataclass
class DetectorResult:
    """The trained frame head, its thresholds and what cross-validation measured."""

    head: FrameHead | HeadEnsemble
    thresholds: dict[str, float]
    metrics: dict
    warnings: list[str]
    gates: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    """Per class: AudioSet columns whose scores support it, and the floor under which its
    frames are silenced (:func:`choose_gates`)."""
    median_filters: dict[str, float] = field(default_factory=dict)
    min_durations: dict[str, float] = field(default_factory=dict)
    """Per class post-processing chosen on held-out mixtures (:func:`choose_filters`)."""


def train_detector(
    data: Sequence[FrameData],
    classes: Sequence[str],
    config: DetectorConfig,
    seed: int = 0,
    log: Log | None = None,
    tensorboard: str | Path | None = None,
) -> DetectorResult:
    """Cross-validate, choose thresholds and fit the final frame head (module docstring)."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    groups = sorted({d.group for d in data})
    if len(groups) < 3:
        raise ValueError("the frame head needs at least 3 cross-validation groups")
    length = max(1, round(config.mixtures.seconds / FRAME_HOP))
    by_group = {g: [d for d in data if d.group == g] for g in groups}

    def pairs(items: Sequence[FrameData]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(d.rows(config.audioset_input), d.targets) for d in items]

    def fair(items: Sequence[FrameData]) -> list[FrameData]:
        """What thresholds, gates and filters are chosen on: not the reviewed stretches
        (picked by the review queue for being hard to decide, no fair sample of the audio)."""
        return [d for d in items if d.kind != "reviewed"] or list(items)

    oof_probs: dict[str, np.ndarray] = {}
    oof_thresholds: dict[str, dict[str, float]] = {}
    splits, epochs, members = [], [], []
    g: int | dict[str, Any]
    for s, g in enumerate(groups):
        inner = groups[(s + 1) % len(groups)]
        train = [d for d in data if d.group not in (g, inner)]
        writer = tensorboard_writer(tensorboard, f"frame/split{s + 1}")
        fit = fit_frame_head(
            config.head,
            pairs(train),
            config.fit,
            seed + s,
            length,
            pairs(by_group[inner]),
            writer=writer,
        )
        if writer is not None:
            writer.close()
        epochs.append(fit.epochs)
        members.append(fit.head)
        calib = fair(by_group[inner])
        val_probs = [fit.head.probabilities(d.rows(config.audioset_input)) for d in calib]
        chosen, _, _ = choose_thresholds(val_probs, calib, classes)
        held = by_group[g]
        for d in held:
            oof_probs[d.name] = fit.head.probabilities(d.rows(config.audioset_input))
            oof_thresholds[d.name] = chosen
        q = quality([oof_probs[d.name] for d in held], held, classes, [chosen] * len(held))
        splits.append({"held_out_group": g + 1, "epochs": fit.epochs, **_summary(q)})
        say(
            f"  frame head, group {g + 1} held out: {fit.epochs} epochs -> event F1 "
            f"{q['event_f1']:.3f}, segment F1 {q['segment_f1']:.3f}, PSDS1 {q['psds1']:.3f}"
        )
    ordered = list(data)
    cv = quality(
        [oof_probs[d.name] for d in ordered],
        ordered,
        classes,
        [oof_thresholds[d.name] for d in ordered],
    )
    calib = fair(ordered)
    thresholds, best_f1, warnings = choose_thresholds(
        [oof_probs[d.name] for d in calib], calib, classes
    )
    gates: dict[str, tuple[list[int], float]] = {}
    gate_report: dict[str, dict] = {}
    if config.audioset_gates:
        gates, gate_report = choose_gates(
            [oof_probs[d.name] for d in calib], calib, classes, thresholds
        )
        for c, g in gate_report.items():
            say(f"  AudioSet evidence for {c!r}: {g['decision']}")
    medians: dict[str, float] = {}
    shortest: dict[str, float] = {}
    filter_report: dict[str, dict[str, float]] = {}
    if config.choose_filters:
        from earmark.custom.frame_head import apply_gates

        by_column = {list(classes).index(c): g for c, g in gates.items()}
        gated = [apply_gates(oof_probs[d.name], d.audioset, by_column) for d in calib]
        medians, shortest, filter_report = choose_filters(gated, calib, classes, thresholds)
    for c, f in filter_report.items():
        if (f["median_filter"], f["min_duration"]) != (
            PostprocessOptions().median_filter,
            PostprocessOptions().min_duration,
        ):
            say(
                f"  {c!r}: median filter {f['median_filter']:g} s, minimum duration "
                f"{f['min_duration']:g} s (event F1 {f['event_f1_with_defaults']:.3f} -> "
                f"{f['event_f1']:.3f} on held-out mixtures)"
            )
    for w in warnings:
        say(f"warning: {w}")
    final_epochs = max(1, int(np.median(epochs)))
    writer = tensorboard_writer(tensorboard, "frame/final")
    final = fit_frame_head(
        config.head, pairs(ordered), config.fit, seed, length, epochs=final_epochs, writer=writer
    )
    if writer is not None:
        writer.close()
    _summarise(tensorboard, cv, thresholds)
    metrics = {
        "head": config.head,
        "audioset_input": config.audioset_input,
        "input_dim": final.head.dim,
        "epochs": final_epochs,
        "cross_validation": cv,
        "splits": splits,
        "thresholds": thresholds,
        "threshold_event_f1_out_of_fold": {c: round(v, 4) for c, v in best_f1.items()},
        "threshold_rule": f"per class, best event F1 (onset collar {EVENT_COLLAR} s, offset "
        f"max({EVENT_COLLAR} s, {int(OFFSET_SHARE * 100)} %)) on out-of-fold mixtures, grid "
        f"{THRESHOLD_GRID[0]}-{THRESHOLD_GRID[-1]}",
        "warnings": warnings,
        "audioset_gates": gate_report,
        "filters": filter_report,
        "filter_rule": "with --choose-filters: per class, the median filter and minimum duration "
        "with the best event F1 on out-of-fold mixtures at the chosen thresholds among those "
        "costing at most 0.01 segment F1; detect's defaults unless another pair gains 0.01",
        "recordings": len(ordered),
        "frames": int(sum(len(d.features) for d in ordered)),
        "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 3),
    }
    head = HeadEnsemble([final.head, *members]) if config.ensemble else final.head
    return DetectorResult(head, thresholds, metrics, warnings, gates, medians, shortest)


def _summarise(tensorboard: str | Path | None, cv: dict, thresholds: dict[str, float]) -> None:
    """The expected quality as a TensorBoard text table and scalars (``frame/summary``)."""
    writer = tensorboard_writer(tensorboard, "frame/summary")
    if writer is None:
        return
    rows = ["| class | event F1 | segment F1 | threshold |", "|---|---|---|---|"]
    for name, m in cv["per_class"].items():
        rows.append(f"| {name} | {m['event_f1']} | {m['segment_f1']} | {thresholds[name]} |")
        writer.add_scalar(f"event_f1/{name}", m["event_f1"], 0)
    rows.append(f"| overall | {cv['event_f1']} | {cv['segment_f1']} | PSDS1 {cv['psds1']} |")
    writer.add_text("expected quality on held-out mixtures", "\n".join(rows), 0)
    for key in ("event_f1", "segment_f1", "psds1"):
        writer.add_scalar(f"overall/{key}", cv[key], 0)
    writer.close()


def _summary(q: dict) -> dict:
    return {k: q[k] for k in ("event_f1", "segment_f1", "psds1", "references", "detections")}


# ---------------------------------------------------------------------------- earmark train
def training_recordings(
    clips: Sequence[tuple[str, str, int]],
    n_groups: int,
    classes: Sequence[str],
    config: DetectorConfig,
    backgrounds: Sequence[Path] = (),
    others: Sequence[Path] = (),
    labelled: Sequence[str | Path] = (),
    log: Log | None = None,
    reviews: Sequence[str | Path] = (),
) -> tuple[list[TrainingRecording], dict]:
    """Every recording the frame head learns from: mixtures of ``clips`` (``(path, label,
    group)``) over ``backgrounds`` with ``others`` as distractors, and the user's labelled
    recordings (assigned to groups in turn), checked against ``classes``."""
    from earmark.audio import AudioError
    from earmark.audio import load as load_audio
    from earmark.custom.mixtures import LabelledEvent, build_mixtures
    from earmark.custom.strong_labels import canonical_label, load_labelled, load_reviewed

    say = log or (lambda _m: None)
    bg_audio = []
    for path in backgrounds:
        try:
            audio = load_audio(path, 32000)
        except AudioError as exc:
            say(f"skipped background {path}: {exc}")
            continue
        if len(audio) >= 32000 and float(np.max(np.abs(audio))) > 0:
            bg_audio.append((Path(path).name, audio))
        else:
            say(f"skipped background {path}: shorter than 1 s or silent")
    recordings: list[TrainingRecording] = []
    description: dict = {"mixtures": 0, "labelled_recordings": 0}
    if bg_audio:
        recordings, description = build_mixtures(
            [(Path(p), label, g) for p, label, g in clips],
            bg_audio,
            n_groups,
            config.mixtures,
            others,
        )
        description["labelled_recordings"] = 0
    found = [
        (rec, audio, "labelled")
        for rec, audio in (load_labelled(labelled, classes) if labelled else [])
    ]
    if reviews:
        found += [(rec, audio, "reviewed") for rec, audio in load_reviewed(reviews, classes)[0]]
    if found:
        for i, (rec, audio, kind) in enumerate(found):
            duration = len(audio) / 32000
            recordings.append(
                TrainingRecording(
                    name=f"{kind}-{i:04d}-{rec.audio.stem}",
                    group=i % n_groups,
                    audio=audio,
                    events=[
                        LabelledEvent(
                            e.onset, min(e.offset, duration), canonical_label(e.label, classes)
                        )
                        for e in rec.events
                    ],
                    background=str(rec.audio),
                    kind=kind,
                )
            )
        description["labelled_recordings"] = len(found)
        description["labelled_events"] = sum(len(r.events) for r, _, _ in found)
        description["reviewed_stretches"] = sum(1 for *_, kind in found if kind == "reviewed")
    if not recordings:
        raise ValueError(
            "the frame-level detector needs --backgrounds, --labelled or --from-reviews recordings"
        )
    return recordings, description


def train_frame_detector(
    clips: Sequence[tuple[str, str, int]],
    n_groups: int,
    classes: Sequence[str],
    tagger: object,
    config: DetectorConfig,
    work: Path,
    backgrounds: Sequence[Path] = (),
    others: Sequence[Path] = (),
    labelled: Sequence[str | Path] = (),
    log: Log | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    reviews: Sequence[str | Path] = (),
) -> dict:
    """The detection half of ``earmark train``: build and score the training recordings,
    cross-validate and fit the frame head, save ``frame_head.pt`` and return the metrics and
    the calibration that goes to ``thresholds.json``."""
    from earmark.custom.frame_head import save_frame_head

    config.validate()
    say = log or (lambda _m: None)
    started = time.perf_counter()
    recordings, description = training_recordings(
        clips, n_groups, classes, config, backgrounds, others, labelled, say, reviews
    )
    say(
        f"frame-level detector: {description['mixtures']} mixtures of {config.mixtures.seconds:g} s"
        f" and {description['labelled_recordings']} labelled recording(s) over {n_groups} groups"
    )
    built = time.perf_counter() - started
    data = score_recordings(recordings, tagger, classes, progress)  # progress: recordings
    scored = time.perf_counter() - started - built
    result = train_detector(data, classes, config, config.mixtures.seed, say, work / "tensorboard")
    save_frame_head(
        work / "frame_head.pt",
        result.head,
        {
            "audioset_input": config.audioset_input,
            "hop": FRAME_HOP,
            "classes": list(classes),
            "gate_columns": [list(result.gates.get(c, ([], 0.0))[0]) for c in classes],
            "gate_floors": [float(result.gates.get(c, ([], 0.0))[1]) for c in classes],
        },
    )
    metrics = {
        **result.metrics,
        "training_data": description,
        "timing_seconds": {
            "mixtures": round(built, 3),
            "features": round(scored, 3),
            "head": result.metrics["seconds"],
            "total": round(time.perf_counter() - started, 3),
        },
    }
    calibration = {
        "format": 1,
        "method": metrics["threshold_rule"] + " (frame-level head)",
        "mixed": True,
        "median_filter": PostprocessOptions().median_filter,
        "classes": {
            name: {
                "threshold": t,
                "event_f1": metrics["threshold_event_f1_out_of_fold"][name],
                # only when chosen (train --choose-filters): else detect's own apply
                **(
                    {
                        "median_filter": result.median_filters[name],
                        "min_duration": result.min_durations[name],
                    }
                    if name in result.median_filters
                    else {}
                ),
            }
            for name, t in result.thresholds.items()
        },
        "warnings": result.warnings,
    }
    return {"metrics": metrics, "calibration": calibration}
