"""Using trained custom classes: clip classification and detection in long recordings.

A MODEL_DIR written by ``earmark train`` holds a head (``head.pt``) that maps the backbone's
clip embedding to one sigmoid output per custom class, its class list (``labels.json``) and the
exact backbone it was trained on (``config.json``: model name and checkpoint sha256).

* :func:`classify` gives the class probabilities of whole clips (``earmark classify``).
* :meth:`CustomClasses.frame_probabilities` applies the head to the *framewise* embeddings that
  ``earmark detect`` computes anyway (the same feature, every 0.32 s, pooled over 1.6 s), so
  ``earmark detect --classes MODEL_DIR`` detects the custom classes with the same framewise
  scoring and the same event post-processing (thresholds, hysteresis, median filter, gap
  merging, boundary refinement) as AudioSet classes, alone or beside them, in one pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np

from earmark.constants import DEFAULT_MODEL
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


# ---------------------------------------------------------------------------- detection
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


# ---------------------------------------------------------------------------- classification
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


# ---------------------------------------------------------------------------- command line
def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file-column", help="CSV column holding file names (default: guessed)")
    p.add_argument("--label-column", help="CSV column holding labels (default: guessed)")
    p.add_argument("--fold-column", help="CSV column holding folds (default: 'fold')")
    p.add_argument(
        "--min-per-class", type=int, default=2, help="fewest clips a class may have (default 2)"
    )


def _load_dataset(args: argparse.Namespace) -> Any:
    from earmark.custom.datasets import load_dataset

    return load_dataset(
        args.data, args.min_per_class, args.file_column, args.label_column, args.fold_column
    )


def _say(args: argparse.Namespace):
    if args.quiet or getattr(args, "json", False):
        return lambda _m: None
    return lambda message: print(message, file=sys.stderr, flush=True)


def cmd_embed(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark embed``: clip (and framewise) embeddings of a dataset to npz or parquet."""
    from earmark.custom.datasets import DatasetError
    from earmark.custom.embeddings import Backbone, EmbeddingError, ProgressPrinter, embed_dataset
    from earmark.tagger import load_model

    say = _say(args)
    try:
        dataset = _load_dataset(args)
        say(dataset.format_summary())
        if Path(args.output).suffix.lower() not in (".npz", ".parquet"):
            raise EmbeddingError(f"{args.output}: output must end in .npz or .parquet")
        tagger = load_model(args.model, threads=args.threads)
        progress = None if args.quiet or args.json else ProgressPrinter()
        result = embed_dataset(
            dataset,
            Backbone.from_tagger(tagger),
            framewise=args.framewise,
            cache=not args.no_cache,
            progress=progress,
        )
        result.meta["dataset_summary"] = dataset.summary()
        result.save(args.output)
    except (DatasetError, EmbeddingError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    for _file, error in result.failed:
        print(f"earmark: FAILED: {error}", file=sys.stderr)
    summary = {
        "output": str(args.output),
        "clips": len(result),
        "dim": int(result.embeddings.shape[1]),
        "failed": [{"file": f, "error": e} for f, e in result.failed],
        "seconds": result.meta["seconds"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(
            f"{len(result)} clip embeddings ({summary['dim']} values"
            + (", framewise too" if args.framewise else "")
            + f") -> {args.output} in {summary['seconds']:.1f} s"
        )
    return 1 if result.failed else 0


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark train``: cross-validated custom-class head saved to MODEL_DIR."""
    from earmark.custom.data import parse_speeds
    from earmark.custom.datasets import DatasetError
    from earmark.custom.embeddings import ProgressPrinter
    from earmark.custom.training import TrainConfig, format_report, train
    from earmark.tagger import load_model

    say = _say(args)
    try:
        config = TrainConfig(
            seed=args.seed,
            heads=tuple(h.strip() for h in args.heads.split(",") if h.strip()),
            hidden=args.hidden,
            max_epochs=args.max_epochs,
            k_folds=args.k_folds,
            use_folds=not args.ignore_folds,
            augment=args.augment,
            augment_kinds=tuple(k.strip() for k in args.augment_kinds.split(",") if k.strip()),
            backgrounds=args.backgrounds,
            negatives=args.negatives,
            baseline=not args.no_baseline,
            finetune=args.finetune,
            finetune_epochs=args.finetune_epochs,
            finetune_lr=args.finetune_lr,
            finetune_layers=args.finetune_layers,
            finetune_keep=args.finetune_keep,
            frame_head=args.frame_head,
            frame_audioset=not args.no_audioset_evidence,
            choose_filters=args.choose_filters,
            mixtures=args.mixtures,
            mixture_seconds=args.mixture_seconds,
            mixture_snr=_range(args.snr, float, "--snr"),
            mixture_events=_range(args.events, int, "--events"),
            mixture_speeds=parse_speeds(args.speeds),
            background_split=args.background_split,
            others=args.others,
            labelled=tuple(args.labelled or ()),
        )
        config.validate()
        dataset = _load_dataset(args)
        say(dataset.format_summary())
        tagger = load_model(args.model, threads=args.threads)
        progress = None if args.quiet or args.json else ProgressPrinter()
        result = train(
            dataset,
            args.output,
            tagger,
            config,
            log=say,
            progress=progress,
            overwrite=args.overwrite,
            argv=["earmark", *argv],
        )
    except (DatasetError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    if args.json:
        head = result.metrics["head"]
        detection = result.metrics.get("detection") or {}
        base = result.metrics.get("baseline") or {}
        print(
            json.dumps(
                {
                    "model_dir": str(result.model_dir),
                    "head": head["kind"],
                    "mean_accuracy": head["mean_accuracy"],
                    "mean_macro_f1": head["mean_macro_f1"],
                    "baseline_mean_accuracy": base.get("mean_accuracy"),
                    "baseline_mean_macro_f1": base.get("mean_macro_f1"),
                    "finetuned_kept": bool((result.metrics.get("finetuned") or {}).get("kept")),
                    "detect_thresholds": result.metrics["detect_thresholds"],
                    "detection_cross_validation": detection.get("cross_validation"),
                    "timing_seconds": result.metrics["timing_seconds"],
                    "skipped": result.metrics["skipped"],
                },
                indent=2,
            )
        )
    elif not args.quiet:
        print(format_report(result.metrics))
        print(f"model saved to {result.model_dir}")
    return 1 if result.metrics["skipped"] else 0


def _range(text: str, kind: type, option: str) -> tuple:
    """``"low:high"`` (or one value) as a pair of ``kind``; ``ValueError`` names the option."""
    try:
        parts = [kind(p) for p in str(text).split(":")]
    except ValueError:
        raise ValueError(f"{option}: expected LOW:HIGH, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"{option}: expected LOW:HIGH with LOW <= HIGH, got {text!r}")
    return tuple(parts)


def cmd_classify(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark classify``: class probabilities of every clip."""
    from earmark.custom.embeddings import ProgressPrinter
    from earmark.inputs import collect_inputs, printable
    from earmark.outputs import atomic_write_text
    from earmark.tagger import load_model

    try:
        custom = load_custom_classes(args.model_dir)
        tagger = load_model(custom.model_name or DEFAULT_MODEL, threads=args.threads)
        entries = collect_inputs(args.files)
        unreadable = [f"{printable(e.path)}: {e.problem}" for e in entries if e.problem]
        files = [e.path for e in entries if e.problem is None]
        if not files:
            raise CustomModelError("; ".join(unreadable) or "no input files found")
        progress = None if args.quiet or args.json else ProgressPrinter("classified")
        results = classify(files, custom, tagger, progress)
    except (CustomModelError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    if args.output:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "label", "probability", *custom.classes, "error"])
        for r in results:
            writer.writerow(
                [r.file, r.label or "", f"{r.probabilities[r.label]:.4f}" if r.label else ""]
                + [f"{r.probabilities[c]:.4f}" if r.probabilities else "" for c in custom.classes]
                + [r.error or ""]
            )
        try:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.output, buffer.getvalue())
        except OSError as exc:
            print(f"earmark: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif not args.quiet:
        for r in results:
            if r.error:
                print(f"{r.file}\tFAILED: {r.error}")
                continue
            top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[: args.top]
            print(f"{r.file}\t" + "\t".join(f"{c} {p:.3f}" for c, p in top))
    for r in results:
        if r.error and (args.quiet or args.json):
            print(f"earmark: FAILED: {r.error}", file=sys.stderr)
    for reason in unreadable:
        print(f"earmark: FAILED: {reason}", file=sys.stderr)
    return 1 if unreadable or any(r.error for r in results) else 0


def cmd_map(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark map``: 2-D map of embeddings as PNG and interactive HTML."""
    from earmark.custom.datasets import DatasetError
    from earmark.custom.embeddings import EmbeddingError
    from earmark.custom.maps import make_map

    say = _say(args)
    try:
        written = make_map(
            args.data,
            args.output,
            method=args.method,
            seed=args.seed,
            model=args.model,
            embed_audio=args.embed_audio,
            log=say,
            dataset_args=args,
        )
    except (DatasetError, EmbeddingError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
    elif not args.quiet:
        for kind, path in written.items():
            print(f"{kind}: {path}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``embed``, ``train``, ``classify`` and ``map`` on the main parser."""
    from earmark import assets

    emb = subparsers.add_parser(
        "embed",
        help="clip (and framewise) embeddings of a labelled dataset",
        description="Compute backbone embeddings of every clip of a dataset (a folder per "
        "class, a CSV filename,label[,fold], or ESC-50's meta/esc50.csv), cached by file "
        "content so re-runs are instant. Output: .npz or .parquet with file, label, fold.",
    )
    emb.add_argument("data", help="dataset folder or CSV")
    emb.add_argument("-o", "--output", required=True, help="output .npz or .parquet")
    emb.add_argument("--framewise", action="store_true", help="also framewise (0.32 s) ones")
    emb.add_argument("--model", default=assets.DEFAULT_MODEL, help="backbone model")
    emb.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    emb.add_argument("--threads", type=int, help="torch threads")
    emb.add_argument("-q", "--quiet", action="store_true", help="no progress")
    emb.add_argument("--json", action="store_true", help="machine-readable summary")
    _dataset_args(emb)
    emb.set_defaults(func=cmd_embed)

    tr = subparsers.add_parser(
        "train",
        help="train custom classes on labelled clips (cross-validated)",
        description="Train a head (logistic regression or MLP, chosen by validation) on "
        "frozen backbone embeddings of a labelled dataset; cross-validate over its folds (or "
        "stratified k-fold) beside a hand-made-feature baseline; optionally fine-tune the "
        "whole backbone (--finetune); calibrate a detection threshold per class on out-of-fold "
        "clips (mixed over --backgrounds); save head, label map, metrics, thresholds, confusion "
        "matrices, TensorBoard curves and the configuration to MODEL_DIR.",
    )
    from earmark.custom.training import TrainConfig

    defaults = TrainConfig()
    tr.add_argument("data", help="dataset folder or CSV")
    tr.add_argument("-o", "--output", required=True, help="MODEL_DIR to create")
    tr.add_argument("--model", default=assets.DEFAULT_MODEL, help="backbone model")
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--heads", default="logreg,mlp", help="candidate heads (default logreg,mlp)")
    tr.add_argument("--hidden", type=int, default=128, help="MLP hidden units (default 128)")
    tr.add_argument("--max-epochs", type=int, default=200, help="epoch limit (default 200)")
    tr.add_argument("--k-folds", type=int, default=5, help="folds when the data has none")
    tr.add_argument("--ignore-folds", action="store_true", help="stratified k-fold anyway")
    tr.add_argument(
        "--augment",
        type=int,
        default=None,
        help="augmented copies per clip (default: 2 with --backgrounds, mixed over them; else 0)",
    )
    tr.add_argument(
        "--augment-kinds",
        default="noise,gain,shift,background",
        help="comma-separated: noise,gain,shift,background",
    )
    tr.add_argument("--backgrounds", help="folder of background recordings (mixing, negatives)")
    tr.add_argument(
        "--negatives",
        action="store_true",
        help="train on background segments as 'none of the classes' (better for detect)",
    )
    tr.add_argument("--no-baseline", action="store_true", help="skip the hand-made baseline")
    det = tr.add_argument_group(
        "detection in long recordings",
        "With --backgrounds (or --labelled), train also builds seeded mixtures of the clips over "
        "the backgrounds with exact onsets/offsets, trains a frame-level head on them, chooses "
        "each class's detection threshold for event F1 on held-out mixtures and reports the "
        "expected event F1, segment F1 and PSDS1; 'detect --classes' then uses that head.",
    )
    det.add_argument(
        "--frame-head",
        choices=("conv", "gru", "linear", "none"),
        default=defaults.frame_head,
        help=f"frame-level head (default {defaults.frame_head}; none: detect with the clip head)",
    )
    det.add_argument(
        "--mixtures",
        type=int,
        default=defaults.mixtures,
        help=f"training mixtures (default {defaults.mixtures})",
    )
    det.add_argument(
        "--mixture-seconds",
        type=float,
        default=defaults.mixture_seconds,
        help=f"length of a mixture (default {defaults.mixture_seconds:g} s)",
    )
    det.add_argument(
        "--snr",
        default=":".join(f"{v:g}" for v in defaults.mixture_snr),
        help="SNR range of the events, dB, written --snr=LOW:HIGH (default %(default)s)",
    )
    det.add_argument(
        "--events",
        default=":".join(str(v) for v in defaults.mixture_events),
        help="events per mixture, LOW:HIGH; overlaps allowed (default %(default)s)",
    )
    det.add_argument(
        "--speeds",
        default=",".join(f"{v:g}" for v in defaults.mixture_speeds),
        help="extra copies of every clip in the mixtures played this much faster or slower, "
        "e.g. 0.9,1.1 (pitch and length change together; default: none)",
    )
    det.add_argument(
        "--others",
        help="folder of recordings of other sounds, mixed in as distractors (none of the classes)",
    )
    det.add_argument(
        "--labelled",
        action="append",
        metavar="PATH",
        help="strongly labelled recordings: a folder of audio with label files beside them "
        "(Audacity .txt, .tsv/.csv, Raven .selections.txt, .jams) or a DCASE TSV; repeatable",
    )
    det.add_argument(
        "--background-split",
        choices=("time", "recordings"),
        default=defaults.background_split,
        help="keep cross-validation backgrounds apart by time parts of every recording "
        "(default) or by whole recordings",
    )
    det.add_argument(
        "--no-audioset-evidence",
        action="store_true",
        help="do not give the frame head the AudioSet scores",
    )
    det.add_argument(
        "--choose-filters",
        action="store_true",
        help="also choose each class's median filter and minimum duration on held-out mixtures "
        "(off by default: measured, it did not help on held-out soundscapes)",
    )
    tr.add_argument(
        "--finetune",
        action="store_true",
        help="also fine-tune the whole backbone with the head (CPU: minutes for 400 clips)",
    )
    from earmark.custom.training import TrainConfig

    ft_defaults = TrainConfig()
    tr.add_argument(
        "--finetune-epochs",
        type=int,
        default=ft_defaults.finetune_epochs,
        help=f"fine-tuning epochs (default {ft_defaults.finetune_epochs})",
    )
    tr.add_argument(
        "--finetune-lr",
        type=float,
        default=ft_defaults.finetune_lr,
        help=f"backbone learning rate (default {ft_defaults.finetune_lr:g})",
    )
    tr.add_argument(
        "--finetune-layers",
        type=int,
        default=0,
        help="train only the top N of the 17 backbone layers (default 0: all of them)",
    )
    tr.add_argument(
        "--finetune-keep",
        choices=("if-better", "always"),
        default="if-better",
        help="keep the fine-tuned backbone only if it cross-validates at least as well as the "
        "frozen head (default), or always",
    )
    tr.add_argument("--overwrite", action="store_true", help="replace an existing MODEL_DIR")
    tr.add_argument("--threads", type=int, help="torch threads")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress or report")
    tr.add_argument("--json", action="store_true", help="machine-readable summary")
    _dataset_args(tr)
    tr.set_defaults(func=cmd_train)

    cl = subparsers.add_parser(
        "classify",
        help="class probabilities of clips with a trained MODEL_DIR",
        description="Class probabilities (one sigmoid per custom class) of every clip.",
    )
    cl.add_argument("model_dir", help="folder written by 'earmark train'")
    cl.add_argument("files", nargs="+", help="audio files, folders (recursive) or globs")
    cl.add_argument("-o", "--output", help="write a CSV of all probabilities")
    cl.add_argument("--top", type=int, default=3, help="classes shown per clip (default 3)")
    cl.add_argument("--threads", type=int, help="torch threads")
    cl.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    cl.add_argument("--json", action="store_true", help="print results as JSON")
    cl.set_defaults(func=cmd_classify)

    mp = subparsers.add_parser(
        "map",
        help="2-D map of embeddings (PNG and interactive HTML)",
        description="Project clip embeddings to 2-D (UMAP, or t-SNE without umap-learn), "
        "coloured by label: a PNG and a self-contained HTML page where hovering a point shows "
        "its file and clicking plays it.",
    )
    mp.add_argument("data", help="dataset folder or CSV, or an embeddings .npz/.parquet")
    mp.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder (gets map.png, map.html, map.csv; a name ending in .png names them)",
    )
    mp.add_argument("--method", choices=("auto", "umap", "tsne"), default="auto")
    mp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mp.add_argument("--model", default=assets.DEFAULT_MODEL, help="backbone model")
    mp.add_argument(
        "--embed-audio",
        action="store_true",
        help="put the audio inside the HTML (portable; larger file)",
    )
    mp.add_argument("-q", "--quiet", action="store_true", help="no progress")
    mp.add_argument("--json", action="store_true", help="print written files as JSON")
    _dataset_args(mp)
    mp.set_defaults(func=cmd_map)


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
