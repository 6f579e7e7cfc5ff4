"""Training the frame-level detector of custom classes: features, cross-validation, thresholds.

:func:`train_detector` is the detection half of ``earmark train`` (the clip head is
:mod:`earmark.training`'s):

1. the training recordings (:mod:`.mixtures`, and the user's strongly labelled recordings) are
   scored once by the backbone, as ``earmark detect`` scores a file: unpooled framewise
   features, AudioSet frame scores and the band envelope that boundary refinement reads
   (features cached by audio content);
2. cross-validation over the groups: the split that holds group ``s`` out trains a
   :class:`~.frame_head.FrameHead` on the other groups but one, early-stopped on that one
   (the inner validation group), chooses every class's threshold on the inner validation group
   (event F1, below), and is scored on group ``s``: event F1, segment F1 and PSDS1 per class,
   with the same post-processing and boundary refinement as ``detect``. These are the expected
   figures written to ``metrics.json``;
3. the final head is fitted on every group for the median number of epochs, and each class's
   threshold is the one that maximises event F1 on the out-of-fold predictions of all groups.

Event F1 uses DCASE collars: onsets within 0.2 s, offsets within max(0.2 s, 20 % of the
event's length). A threshold at the edge of the grid is reported as a warning: the best
value may lie beyond it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from earmark.boundaries import BandEnvelope, RefineOptions, join_overlaps, refine_events
from earmark.custom.frame_head import (
    HEAD_KINDS,
    FitOptions,
    FrameHead,
    fit_frame_head,
    head_input,
)
from earmark.custom.mixtures import MixtureConfig, TrainingRecording, frame_targets
from earmark.evaluation import RefEvent, event_based_metrics, segment_based_metrics
from earmark.events import PostprocessOptions, scores_to_events
from earmark.labels import Label

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.1, 0.951, 0.05))
"""Detection thresholds tried per class."""
EVENT_COLLAR = 0.2
"""Onset collar (and smallest offset collar) of the event F1 thresholds are chosen for."""
OFFSET_SHARE = 0.2
SEGMENT_SECONDS = 1.0
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


def custom_labels(classes: Sequence[str]) -> list[Label]:
    """Labels of the custom classes as ``detect --classes`` names them."""
    return [Label(index=i, mid=f"custom:{c}", name=c) for i, c in enumerate(classes)]


def score_recordings(
    recordings: Sequence[TrainingRecording],
    tagger: object,
    classes: Sequence[str],
    progress: Callable[[int, int, int], None] | None = None,
) -> list[FrameData]:
    """Backbone features, AudioSet scores, targets and band envelope of every recording
    (the audio is released as it goes). Features are cached by audio content."""
    from earmark.embeddings import EmbeddingCache, cache_root
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
        hop = 0.32
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


# ---------------------------------------------------------------------------- events and scores
def detect_events(
    probs: np.ndarray,
    data: FrameData,
    labels: Sequence[Label],
    thresholds: dict[str, float] | float,
    refine: bool = True,
    memo: dict | None = None,
) -> list[RefEvent]:
    """Events of one recording from the head's frame scores, post-processed as ``detect``
    does (default median filter, hysteresis, gap merging, boundary refinement).

    ``memo`` (a dict kept across calls) remembers each event's refined boundaries: a threshold
    search meets the same score-based events many times, and refinement is the costly step.
    """
    if isinstance(thresholds, dict):
        post = PostprocessOptions(thresholds={f"custom:{c}": t for c, t in thresholds.items()})
    else:
        post = PostprocessOptions(threshold=float(thresholds))
    events = scores_to_events(probs, 0.32, labels, post, file=data.name, duration=data.duration)
    if refine and events:
        envelope = BandEnvelope.from_levels(data.envelope)
        if memo is None:
            events = refine_events(events, envelope, RefineOptions(), data.duration)
        else:
            refined = []
            for e in events:
                key = (data.name, e.label, e.onset, e.offset)
                if key not in memo:
                    memo[key] = refine_events([e], envelope, RefineOptions(), data.duration)[0]
                refined.append(dataclasses.replace(memo[key], peak=e.peak, mean=e.mean))
            events = join_overlaps(refined)
    return [RefEvent(data.name, e.onset, e.offset, e.label) for e in events]


def event_f1_by_class(
    reference: Sequence[RefEvent], found: Sequence[RefEvent], classes: Sequence[str]
) -> dict[str, float]:
    """Event F1 (DCASE collars) of every class."""
    m = event_based_metrics(reference, found, EVENT_COLLAR, OFFSET_SHARE, labels=list(classes))
    return {c: float(m["class_wise"][c]["f1"]) for c in classes}


def choose_thresholds(
    probs: Sequence[np.ndarray], data: Sequence[FrameData], classes: Sequence[str]
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Per class, the grid threshold with the best event F1 on these recordings. The grid is
    searched coarse to fine: every other value, then the two neighbours of each class's best
    (ties: the middle of the best ones). Returns ``(thresholds, best F1, warnings)``."""
    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    grid = np.array(THRESHOLD_GRID)
    table = np.full((len(grid), len(classes)), np.nan)
    memo: dict = {}

    def run(per_class: dict[str, float]) -> dict[str, float]:
        found = [
            e
            for p, d in zip(probs, data, strict=True)
            for e in detect_events(p, d, labels, per_class, memo=memo)
        ]
        f1 = event_f1_by_class(reference, found, classes)
        return {c: 0.0 if np.isnan(f1[c]) else f1[c] for c in classes}

    for k in range(0, len(grid), 2):
        f1 = run(dict.fromkeys(classes, float(grid[k])))
        table[k] = [f1[c] for c in classes]
    for step in (-1, 1):
        wanted: dict[str, int] = {}
        for j, c in enumerate(classes):
            k = int(np.nanargmax(table[:, j])) + step
            if 0 <= k < len(grid) and np.isnan(table[k, j]):
                wanted[c] = k
        if wanted:
            best_k = {c: int(np.nanargmax(table[:, j])) for j, c in enumerate(classes)}
            f1 = run({c: float(grid[wanted.get(c, best_k[c])]) for c in classes})
            for c, k in wanted.items():
                table[k, classes.index(c)] = f1[c]
    chosen, best, warnings = {}, {}, []
    for j, c in enumerate(classes):
        column = np.nan_to_num(table[:, j], nan=-1.0)
        top = np.flatnonzero(column >= column.max() - 1e-9)
        k = int(top[len(top) // 2])
        chosen[c], best[c] = float(grid[k]), float(column[k])
        if k in (0, len(grid) - 1) and column.max() > 0:
            warnings.append(
                f"class {c!r}: the best detection threshold is at the edge of the grid "
                f"({grid[k]:g}); the best value may lie beyond it"
            )
    return chosen, best, warnings


GATE_CANDIDATES = 8
"""AudioSet classes considered as a custom class's support."""
GATE_SUPPORT = 3
"""Of which the best-separating ones form the support."""
GATE_QUANTILES = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Floors tried: these percentiles of the support over the class's target frames."""
GATE_TOLERANCE = 0.01
"""Event F1 a gate may cost on held-out mixtures."""


def choose_gates(
    probs: Sequence[np.ndarray],
    data: Sequence[FrameData],
    classes: Sequence[str],
    thresholds: dict[str, float],
) -> tuple[dict[str, tuple[list[int], float]], dict[str, dict]]:
    """AudioSet evidence gates, chosen on out-of-fold predictions.

    A sound the user never trained on (music, a siren, waves) can look like one of their
    classes to the head, but the AudioSet model usually knows it for what it is. For every
    class, the AudioSet classes that separate its target frames from all other frames best
    (largest mean difference of scores) are its *support*; a frame is kept only where the
    support's maximum reaches a floor. The floor is the highest of a few low percentiles of
    the support over the class's own target frames that costs at most
    :data:`GATE_TOLERANCE` event F1 on the held-out mixtures; a class whose sound AudioSet
    does not know (no floor passes) gets no gate.
    """
    from earmark.custom.frame_head import apply_gates

    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    audioset = np.concatenate([d.audioset for d in data])
    targets = np.concatenate([d.targets for d in data])

    def f1_with(gates: dict[int, tuple]) -> dict[str, float]:
        found = [
            e
            for p, d in zip(probs, data, strict=True)
            for e in detect_events(apply_gates(p, d.audioset, gates), d, labels, thresholds)
        ]
        return event_f1_by_class(reference, found, classes)

    base = f1_with({})
    candidates: dict[int, list[tuple[list[int], float]]] = {}
    for k in range(len(classes)):
        pos, neg = targets[:, k] >= 0.9, targets[:, k] == 0
        if pos.sum() < 10 or neg.sum() < 10:
            continue
        gap = audioset[pos].mean(axis=0) - audioset[neg].mean(axis=0)
        top = np.argsort(-gap)[:GATE_CANDIDATES]
        top = [int(j) for j in top if gap[j] > 0.02][:GATE_SUPPORT]
        if not top:
            continue
        support = audioset[pos][:, top].max(axis=1)
        floors = sorted({float(np.percentile(support, q)) for q in GATE_QUANTILES}, reverse=True)
        candidates[k] = [(top, f) for f in floors if f > 1e-4]
    chosen: dict[int, tuple[list[int], float]] = {}
    report: dict[str, dict] = {}
    depth = max((len(v) for v in candidates.values()), default=0)
    pending = {k: list(v) for k, v in candidates.items()}
    for _ in range(depth):  # all classes at once, highest floor first
        trial = {k: v[0] for k, v in pending.items() if v}
        if not trial:
            break
        f1 = f1_with(trial)
        for k, gate in trial.items():
            c = classes[k]
            if f1[c] >= base[c] - GATE_TOLERANCE or np.isnan(base[c]):
                chosen[k] = gate
                report[c] = {
                    "audioset_columns": gate[0],
                    "floor": round(gate[1], 5),
                    "event_f1": round(f1[c], 4),
                    "event_f1_without": round(base[c], 4),
                }
                pending[k] = []
            else:
                pending[k] = pending[k][1:]
    for c in classes:
        if c in report:
            report[c]["decision"] = (
                f"gated (AudioSet classes {report[c]['audioset_columns']} below "
                f"{report[c]['floor']:.4f} silence it)"
            )
        else:
            report[c] = {"decision": "not gated (AudioSet does not support it reliably)"}
    return {classes[k]: g for k, g in chosen.items()}, report


def quality(
    probs: Sequence[np.ndarray],
    data: Sequence[FrameData],
    classes: Sequence[str],
    thresholds: Sequence[dict[str, float]],
) -> dict:
    """Event F1 (0.2 s collars), segment F1 (1 s) and PSDS1 of detections on ``data``, each
    recording post-processed with its own thresholds; per class and overall."""
    from earmark.evaluate import PSDS1, FileScores, psds

    labels = custom_labels(classes)
    reference = [e for d in data for e in d.events]
    found = [
        e
        for p, d, t in zip(probs, data, thresholds, strict=True)
        for e in detect_events(p, d, labels, t)
    ]
    ev = event_based_metrics(reference, found, EVENT_COLLAR, OFFSET_SHARE, labels=list(classes))
    seg = segment_based_metrics(
        reference,
        found,
        SEGMENT_SECONDS,
        durations={d.name: d.duration for d in data},
        labels=list(classes),
    )
    present = [c for c in classes if any(e.label == c for e in reference)]
    psds1 = float("nan")
    if present:
        scores = {
            d.name: FileScores(p.astype(np.float64), 0.32, list(classes), d.duration)
            for p, d in zip(probs, data, strict=True)
        }
        psds1 = float(psds(reference, scores, PSDS1, classes=present)["psds"])
    per_class = {
        c: {
            "event_f1": _r(ev["class_wise"][c]["f1"]),
            "segment_f1": _r(seg["class_wise"][c]["f1"]),
            "references": int(ev["class_wise"][c].get("Nref", 0)),
            "detections": int(ev["class_wise"][c].get("Nsys", 0)),
        }
        for c in classes
    }
    return {
        "event_f1": _r(ev["overall"]["f1"]),
        "event_f1_macro": _r(np.nanmean([per_class[c]["event_f1"] for c in classes])),
        "event_precision": _r(ev["overall"]["precision"]),
        "event_recall": _r(ev["overall"]["recall"]),
        "segment_f1": _r(seg["overall"]["f1"]),
        "psds1": _r(psds1),
        "references": len(reference),
        "detections": len(found),
        "per_class": per_class,
    }


def _r(value: float) -> float:
    value = float(value)
    return round(value, 4) if np.isfinite(value) else float("nan")


# ---------------------------------------------------------------------------- training
@dataclass
class DetectorResult:
    """The trained frame head, its thresholds and what cross-validation measured."""

    head: FrameHead
    thresholds: dict[str, float]
    metrics: dict
    warnings: list[str]
    gates: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    """Per class: AudioSet columns whose scores support it, and the floor under which its
    frames are silenced (:func:`choose_gates`)."""


def train_detector(
    data: Sequence[FrameData],
    classes: Sequence[str],
    config: DetectorConfig,
    seed: int = 0,
    log: Log | None = None,
    tensorboard: object | None = None,
) -> DetectorResult:
    """Cross-validate, choose thresholds and fit the final frame head (module docstring)."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    groups = sorted({d.group for d in data})
    if len(groups) < 3:
        raise ValueError("the frame head needs at least 3 cross-validation groups")
    length = max(1, round(config.mixtures.seconds / 0.32))
    by_group = {g: [d for d in data if d.group == g] for g in groups}

    def pairs(items: Sequence[FrameData]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(d.rows(config.audioset_input), d.targets) for d in items]

    oof_probs: dict[str, np.ndarray] = {}
    oof_thresholds: dict[str, dict[str, float]] = {}
    splits, epochs = [], []
    for s, g in enumerate(groups):
        inner = groups[(s + 1) % len(groups)]
        train = [d for d in data if d.group not in (g, inner)]
        writer = _writer(tensorboard, f"frame/split{s + 1}")
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
        val_probs = [fit.head.probabilities(d.rows(config.audioset_input)) for d in by_group[inner]]
        chosen, _, _ = choose_thresholds(val_probs, by_group[inner], classes)
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
    thresholds, best_f1, warnings = choose_thresholds(
        [oof_probs[d.name] for d in ordered], ordered, classes
    )
    gates, gate_report = {}, {}
    if config.audioset_gates:
        gates, gate_report = choose_gates(
            [oof_probs[d.name] for d in ordered], ordered, classes, thresholds
        )
        for c, g in gate_report.items():
            say(f"  AudioSet evidence for {c!r}: {g['decision']}")
    for w in warnings:
        say(f"warning: {w}")
    final_epochs = max(1, int(np.median(epochs)))
    writer = _writer(tensorboard, "frame/final")
    final = fit_frame_head(
        config.head, pairs(ordered), config.fit, seed, length, epochs=final_epochs, writer=writer
    )
    if writer is not None:
        writer.close()
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
        "recordings": len(ordered),
        "frames": int(sum(len(d.features) for d in ordered)),
        "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return DetectorResult(final.head, thresholds, metrics, warnings, gates)


def _summary(q: dict) -> dict:
    return {k: q[k] for k in ("event_f1", "segment_f1", "psds1", "references", "detections")}


def _writer(root: object | None, name: str):  # type: ignore[no-untyped-def]
    if root is None:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(root) + "/" + name, flush_secs=5)


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
) -> tuple[list[TrainingRecording], dict]:
    """Every recording the frame head learns from: mixtures of ``clips`` (``(path, label,
    group)``) over ``backgrounds`` with ``others`` as distractors, and the user's labelled
    recordings (assigned to groups in turn), checked against ``classes``."""
    from earmark.audio import AudioError
    from earmark.audio import load as load_audio
    from earmark.custom.mixtures import LabelledEvent, build_mixtures
    from earmark.custom.strong_labels import canonical_label, load_labelled

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
    found = load_labelled(labelled, classes) if labelled else []
    if found:
        for i, (rec, audio) in enumerate(found):
            duration = len(audio) / 32000
            recordings.append(
                TrainingRecording(
                    name=f"labelled-{i:04d}-{rec.audio.stem}",
                    group=i % n_groups,
                    audio=audio,
                    events=[
                        LabelledEvent(
                            e.onset, min(e.offset, duration), canonical_label(e.label, classes)
                        )
                        for e in rec.events
                    ],
                    background=str(rec.audio),
                    kind="labelled",
                )
            )
        description["labelled_recordings"] = len(found)
        description["labelled_events"] = sum(len(r.events) for r, _ in found)
    if not recordings:
        raise ValueError("the frame-level detector needs --backgrounds or --labelled recordings")
    return recordings, description


def train_frame_detector(
    clips: Sequence[tuple[str, str, int]],
    n_groups: int,
    classes: Sequence[str],
    tagger: object,
    train_config: object,
    work: Path,
    log: Log | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict:
    """The detection half of ``earmark train``: build and score the training recordings,
    cross-validate and fit the frame head, save ``frame_head.pt`` and return the metrics and
    the calibration that goes to ``thresholds.json``."""
    from earmark.custom.frame_head import save_frame_head
    from earmark.training import background_files

    c = train_config
    config = DetectorConfig(
        head=c.frame_head,  # type: ignore[attr-defined]
        audioset_input=c.frame_audioset,  # type: ignore[attr-defined]
        mixtures=MixtureConfig(
            n_mixtures=c.mixtures,  # type: ignore[attr-defined]
            seconds=c.mixture_seconds,  # type: ignore[attr-defined]
            snr_db=tuple(c.mixture_snr),  # type: ignore[attr-defined]
            events=tuple(c.mixture_events),  # type: ignore[attr-defined]
            background_split=c.background_split,  # type: ignore[attr-defined]
            seed=c.seed,  # type: ignore[attr-defined]
        ),
    )
    config.validate()
    say = log or (lambda _m: None)
    started = time.perf_counter()
    backgrounds = background_files(c.backgrounds) if c.backgrounds else []  # type: ignore[attr-defined]
    others = background_files(c.others) if c.others else []  # type: ignore[attr-defined]
    recordings, description = training_recordings(
        clips,
        n_groups,
        classes,
        config,
        backgrounds,
        others,
        c.labelled,
        say,  # type: ignore[attr-defined]
    )
    say(
        f"frame-level detector: {description['mixtures']} mixtures of {config.mixtures.seconds:g} s"
        f" and {description['labelled_recordings']} labelled recording(s) over {n_groups} groups"
    )
    built = time.perf_counter() - started
    data = score_recordings(recordings, tagger, classes, progress)  # progress: recordings
    scored = time.perf_counter() - started - built
    result = train_detector(data, classes, config, c.seed, say, work / "tensorboard")  # type: ignore[attr-defined]
    save_frame_head(
        work / "frame_head.pt",
        result.head,
        {
            "audioset_input": config.audioset_input,
            "hop": 0.32,
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
            name: {"threshold": t, "event_f1": metrics["threshold_event_f1_out_of_fold"][name]}
            for name, t in result.thresholds.items()
        },
        "warnings": result.warnings,
    }
    return {"metrics": metrics, "calibration": calibration}
