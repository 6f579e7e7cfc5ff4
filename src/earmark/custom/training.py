"""Training custom classes: a head on frozen backbone embeddings, cross-validated.

``earmark train DATA -o MODEL_DIR`` does, in order:

1. reads the dataset (:mod:`earmark.custom.datasets`) and prints its summary;
2. computes clip embeddings (:mod:`earmark.custom.embeddings`, cached by file content),
   plus, with ``--augment N``, embeddings of ``N`` augmented copies of every clip (noise, gain, time
   shift, mixing with background recordings), and with ``--negatives``, embeddings of segments
   of the background recordings as examples of *none of the classes*;
3. cross-validates over the dataset's folds (or stratified k-fold): in every outer split, each
   candidate head (logistic regression, a one-hidden-layer MLP) is fitted on the training part
   minus an inner validation part, with early stopping on it; the candidate with the best
   validation accuracy is refitted on the whole training part and scored on the held-out fold.
   Augmented copies follow their source clip, so a held-out clip is never seen in any form;
4. the same cross-validation with hand-made features (:mod:`earmark.custom.handcrafted`) and
   an MLP: the classic baseline reported beside the head;
5. with ``--finetune``, cross-validates fine-tuning of the whole backbone with the head on the
   same splits (:mod:`earmark.custom.finetuning`) and keeps it if it does at least as well;
6. fits the head chosen most often on all the data and saves MODEL_DIR: ``head.pt``,
   ``labels.json``, ``metrics.json``, ``config.json`` (the exact configuration, dataset
   summary, backbone and its sha256, versions), ``confusion.{png,csv}`` (and the baseline's),
   ``predictions.csv`` (out-of-fold predictions), ``thresholds.json`` (per-class detection
   thresholds calibrated on out-of-fold clips, :mod:`earmark.custom.calibration`) and
   ``tensorboard/`` (loss and accuracy curves of every fit). MODEL_DIR is built under a
   temporary name and renamed when complete.

Steps 2 to 4 are :mod:`earmark.custom.crossval`'s; this module runs them and saves the folder.

Heads output one sigmoid per class (one-vs-rest logistic outputs trained with binary cross
entropy): a clip is classified by the largest output, and in long recordings each class is
detected where its output is high, so frames where none of the classes sound can score low
on all of them (which a softmax cannot express). Everything is seeded: the same data, options
and seed give the same head, bit for bit, on the same machine and thread count.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from earmark.audio import SAMPLE_RATE
from earmark.custom.calibration import calibration_audio
from earmark.custom.clip_head import (
    MODEL_FORMAT,
    confusion_csv,
    fit_head,
    outer_splits,
    plot_confusion,
    save_head,
)
from earmark.custom.crossval import assemble, choose_final, cross_validate, detection_groups
from earmark.custom.data import Log, TrainConfig, TrainingData, background_files
from earmark.custom.datasets import Dataset
from earmark.custom.embeddings import Backbone, embed_files
from earmark.custom.fitting import tensorboard_writer

if TYPE_CHECKING:
    from earmark.custom.detector import DetectorConfig


def detector_config(config: TrainConfig) -> DetectorConfig:
    """The frame-level detector's options (:class:`earmark.custom.detector.DetectorConfig`)."""
    from earmark.custom.detector import DetectorConfig
    from earmark.custom.mixtures import MixtureConfig

    return DetectorConfig(
        head=config.frame_head,
        audioset_input=config.frame_audioset,
        choose_filters=config.choose_filters,
        mixtures=MixtureConfig(
            n_mixtures=config.mixtures,
            seconds=config.mixture_seconds,
            snr_db=(float(config.mixture_snr[0]), float(config.mixture_snr[1])),
            events=(int(config.mixture_events[0]), int(config.mixture_events[1])),
            speeds=tuple(float(v) for v in config.mixture_speeds),
            background_split=config.background_split,
            seed=config.seed,
        ),
    )


# ---------------------------------------------------------------------------- saving
def _predictions_csv(data: TrainingData, cv: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "fold", "split", "predicted", "probability", "correct"])
    for i, file in enumerate(data.files):
        pred = int(cv["predictions"][i])
        writer.writerow(
            [
                file,
                data.classes[data.y[i]],
                int(data.folds[i]) if data.folds[i] >= 0 else "",
                cv["split_of"][i],
                data.classes[pred],
                f"{cv['probabilities'][i, pred]:.4f}",
                int(pred == data.y[i]),
            ]
        )
    return buffer.getvalue()


def _public(cv: dict) -> dict:
    private = ("predictions", "probabilities", "split_of", "heads")
    return {k: v for k, v in cv.items() if k not in private}


def frozen_calibration_scores(
    data: TrainingData, cv: dict, backbone: Backbone, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Out-of-fold detection scores of the frozen heads for threshold calibration: each clip
    (mixed over a background when there are backgrounds) under the head of the split that held
    it out, and background segments under every split's head. Returns ``(scores, labels,
    mixed)``."""
    from earmark.audio import load as load_audio
    from earmark.custom.calibration import detection_rows
    from earmark.custom.embeddings import pad_to_min_length

    audio = None
    if config.backgrounds:
        clips = [pad_to_min_length(load_audio(f, SAMPLE_RATE)) for f in data.files]
        audio = calibration_audio(clips, config)
    if audio is None:
        if data.frames is None:
            data.frames = [
                backbone.frame_embeddings(load_audio(f, SAMPLE_RATE)) for f in data.files
            ]
        clip_frames, segment_frames = data.frames, []
    else:
        clip_frames = [backbone.frame_embeddings(a) for a in audio[0]]
        segment_frames = [backbone.frame_embeddings(a) for a in audio[1]]
    rows, labels = [], []
    for test, head in cv["heads"]:
        rows.append(detection_rows(head, [clip_frames[i] for i in test]))
        labels.append(data.y[test])
        if segment_frames:
            rows.append(detection_rows(head, segment_frames))
            labels.append(np.full(len(segment_frames), -1, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(labels), audio is not None


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_dir: Path
    metrics: dict
    config: dict


def train(
    dataset: Dataset,
    out_dir: str | Path,
    tagger: object,
    config: TrainConfig | None = None,
    log: Log | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    overwrite: bool = False,
    argv: Sequence[str] | None = None,
) -> TrainResult:
    """Cross-validate, fit and save a custom-class head (see the module docstring)."""
    import dataclasses

    from earmark.batch import package_versions
    from earmark.outputs import atomic_write_text, write_json

    config = config or TrainConfig()
    config.validate()
    if config.augment is None:  # mixing augmentation by default when there are backgrounds
        config = dataclasses.replace(config, augment=2 if config.backgrounds else 0)
    say = log or (lambda _m: None)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "labels.json").is_file():
            raise ValueError(f"{out}: exists and is not an earmark model folder; not overwritten")
        if not overwrite:
            raise ValueError(f"{out}: a model is already there (use --overwrite to replace it)")
    started = time.perf_counter()
    if config.labelled:  # bad label files are reported before hours of work, not after
        from earmark.custom.strong_labels import load_labelled

        load_labelled(config.labelled, dataset.classes)
    if config.reviews:
        from earmark.custom.strong_labels import load_reviewed

        for note in load_reviewed(config.reviews, dataset.classes)[1]:
            say(note)
    backbone = Backbone.from_tagger(tagger)
    data = assemble(dataset, backbone, config, say, progress)
    embed_seconds = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{int(time.time() * 1000)}"
    work.mkdir()
    try:
        tb = work / "tensorboard"
        say(f"cross-validation of {', '.join(config.heads)} heads on {len(data.x)} clips")
        t0 = time.perf_counter()
        cv = cross_validate(data, config, config.heads, tb, say, tag="head")
        cv_splits = outer_splits(data.y, data.folds, config)
        head_cv_seconds = time.perf_counter() - t0
        kind, epochs = choose_final(cv["choices"])
        t0 = time.perf_counter()
        x_all, y_all = data.training_rows(np.arange(len(data.y)))
        writer = tensorboard_writer(tb, f"head/final/{kind}")
        final = fit_head(
            kind, x_all, y_all, len(data.classes), config, config.seed, epochs=epochs, writer=writer
        )
        if writer is not None:
            writer.close()
        final_seconds = time.perf_counter() - t0
        save_head(work / "head.pt", final.head)
        baseline = None
        baseline_seconds = None
        if config.baseline:
            say("baseline: hand-made features (MFCC, chroma, spectral, ZCR, RMS) + MLP")
            t0 = time.perf_counter()
            from earmark.custom.handcrafted import HandcraftedBackbone

            hand = TrainingData(
                x=np.zeros((0, 0)),
                y=data.y,
                folds=data.folds,
                files=data.files,
                classes=data.classes,
            )
            vecs, _, errors = embed_files(data.files, HandcraftedBackbone(), progress=progress)  # type: ignore[arg-type]
            bad = [data.files[i] for i, e in enumerate(errors) if e]
            if bad:
                raise ValueError(f"hand-made features failed on {bad[:3]}")
            hand.x = np.stack(vecs)  # type: ignore[arg-type]
            baseline = cross_validate(hand, config, ("mlp",), tb, say, tag="baseline")
            baseline_seconds = time.perf_counter() - t0
            atomic_write_text(
                work / "baseline_confusion.csv",
                confusion_csv(baseline["pooled"]["confusion"], data.classes),
            )
            plot_confusion(
                work / "baseline_confusion.png",
                baseline["pooled"]["confusion"],
                data.classes,
                f"baseline (hand-made features + MLP): accuracy {baseline['mean_accuracy']:.3f}",
            )
        finetuned = None
        if config.finetune:
            from earmark.custom.finetuning import finetune_and_save

            layers = f"top {config.finetune_layers} layers" if config.finetune_layers else "all"
            say(f"fine-tuning the backbone ({layers}, {config.finetune_epochs} epochs per split)")
            finetuned = finetune_and_save(data, tagger, config, cv, final.head, work, say)
        from earmark.custom.calibration import calibrate_thresholds, thresholds_of

        t0 = time.perf_counter()
        detection = None
        if config.frame_head != "none" and (
            config.backgrounds or config.labelled or config.reviews
        ):
            from earmark.custom.detector import train_frame_detector

            groups = detection_groups(data, cv_splits, config)
            clips = [
                (f, data.classes[y], int(g))
                for f, y, g in zip(data.files, data.y, groups, strict=True)
            ]
            detection = train_frame_detector(
                clips,
                int(groups.max()) + 1,
                data.classes,
                tagger,
                detector_config(config),
                work,
                background_files(config.backgrounds) if config.backgrounds else [],
                background_files(config.others) if config.others else [],
                config.labelled,
                say,
                progress,
                reviews=config.reviews,
            )
            calibration = detection["calibration"]
            if finetuned:
                finetuned.pop("calibration_scores", None)
        else:
            say("calibrating the detection thresholds on out-of-fold clips")
            scored: Any = finetuned.pop("calibration_scores") if finetuned else None
            if not (finetuned and finetuned["kept"]):
                scored = frozen_calibration_scores(data, cv, backbone, config)
            calibration = calibrate_thresholds(scored[0], scored[1], data.classes, mixed=scored[2])
        write_json(work / "thresholds.json", calibration)
        calibration_seconds = time.perf_counter() - t0
        atomic_write_text(
            work / "confusion.csv", confusion_csv(cv["pooled"]["confusion"], data.classes)
        )
        plot_confusion(
            work / "confusion.png",
            cv["pooled"]["confusion"],
            data.classes,
            f"{kind} head on {backbone.name} embeddings: accuracy {cv['mean_accuracy']:.3f}",
        )
        atomic_write_text(work / "predictions.csv", _predictions_csv(data, cv))
        write_json(
            work / "labels.json",
            {"classes": data.classes, "index": {c: i for i, c in enumerate(data.classes)}},
        )
        total = time.perf_counter() - started
        metrics = {
            "head": {"kind": kind, "epochs": epochs, **_public(cv)},
            "baseline": None
            if baseline is None
            else {"kind": "mlp on hand-made features", **_public(baseline)},
            "finetuned": finetuned,
            "detection": None if detection is None else detection["metrics"],
            "thresholds": calibration["classes"],
            "thresholds_on_mixtures": calibration["mixed"],
            "detect_thresholds": thresholds_of(calibration, data.classes),
            "n_clips": len(data.y),
            "n_augmented": 0 if data.aug_x is None else len(data.aug_x),
            "n_negatives": 0 if data.neg_x is None else len(data.neg_x),
            "skipped": [{"file": f, "error": e} for f, e in data.failed],
            "timing_seconds": {
                "embeddings": round(embed_seconds, 3),
                "head_cross_validation": round(head_cv_seconds, 3),
                "final_fit": round(final_seconds, 3),
                "baseline": None if baseline_seconds is None else round(baseline_seconds, 3),
                "threshold_calibration" if detection is None else "frame_detector": round(
                    calibration_seconds, 3
                ),
                "total": round(total, 3),
            },
        }
        write_json(work / "metrics.json", metrics)
        tagger_info = tagger.describe()  # type: ignore[attr-defined]
        config_doc = {
            "format": MODEL_FORMAT,
            "kind": "earmark custom classes",
            "train": asdict(config),
            "head": final.head.describe(),  # type: ignore[attr-defined]
            "backbone": {
                "model": tagger_info["name"],
                "checkpoint_sha256": tagger_info["checkpoint_sha256"],
                "embedding": "clip: mean over frequency and time of the last conv; "
                "detection: the same feature framewise (local scoring)",
                "dim": backbone.dim,
                "finetuned": bool(finetuned and finetuned["kept"]),
            },
            "classes": data.classes,
            "dataset": dataset.summary(),
            "command": list(argv) if argv is not None else None,
            "versions": package_versions(),
        }
        write_json(work / "config.json", config_doc)
        # the folder appears complete or not at all
        if out.exists():
            old = out.parent / f".{out.name}.old-{int(time.time() * 1000)}"
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return TrainResult(out, metrics, config_doc)


def format_report(metrics: dict) -> str:
    """A short text report of the cross-validated figures."""
    head = metrics["head"]
    lines = [
        f"head: {head['kind']} ({head['epochs']} epochs)",
        f"  {'split':<8} {'accuracy':>8} {'macro-F1':>8}  chosen",
    ]
    for s in head["splits"]:
        lines.append(
            f"  {s['split']:<8} {s['accuracy']:>8.3f} {s['macro_f1']:>8.3f}  {s['chosen']}"
        )
    lines.append(
        f"  {'mean':<8} {head['mean_accuracy']:>8.3f} {head['mean_macro_f1']:>8.3f}"
        f"  (std {head['std_accuracy']:.3f} / {head['std_macro_f1']:.3f})"
    )
    base = metrics.get("baseline")
    if base:
        lines.append(
            f"baseline (hand-made features + MLP): accuracy {base['mean_accuracy']:.3f}, "
            f"macro-F1 {base['mean_macro_f1']:.3f}"
        )
    ft = metrics.get("finetuned")
    if ft:
        layers = "whole backbone" if ft.get("whole_backbone") else f"top {ft.get('layers')} layers"
        lines.append(
            f"fine-tuned ({layers}, {ft['epochs']} epochs): accuracy {ft['mean_accuracy']:.3f}, "
            f"macro-F1 {ft['mean_macro_f1']:.3f}, {ft['seconds']:.0f} s; "
            + ("kept" if ft["kept"] else "not kept (the frozen head did better)")
        )
    per_class = head["pooled"]["per_class"]
    thresholds = metrics.get("detect_thresholds") or {}
    width = max(len(c) for c in per_class)
    lines.append(f"  {'class':<{width}} {'precision':>9} {'recall':>6} {'F1':>5}  detect threshold")
    for name, m in per_class.items():
        t = thresholds.get(name)
        lines.append(
            f"  {name:<{width}} {m['precision']:>9.3f} {m['recall']:>6.3f} {m['f1']:>5.3f}"
            + ("" if t is None else f"  {t:.2f}")
        )
    if thresholds:
        lines.append(
            "  detect thresholds: "
            + (
                "calibrated on out-of-fold clips mixed over the backgrounds"
                if metrics.get("thresholds_on_mixtures")
                else "0.5 (calibration needs --backgrounds to mix the clips over)"
            )
        )
    lines += format_detection(metrics.get("detection"))
    t = metrics["timing_seconds"]
    lines.append(
        f"time: {t['total']:.1f} s (embeddings {t['embeddings']:.1f} s, head CV "
        f"{t['head_cross_validation']:.1f} s, final fit {t['final_fit']:.1f} s"
        + (f", baseline {t['baseline']:.1f} s" if t.get("baseline") is not None else "")
        + ")"
    )
    return "\n".join(lines)


def format_detection(detection: dict | None) -> list[str]:
    """Lines of the expected detection quality (frame-level head, held-out mixtures)."""
    if not detection:
        return []
    cv = detection["cross_validation"]
    width = max([len(c) for c in cv["per_class"]] + [7])
    lines = [
        f"detection in long recordings ({detection['head']} frame head, "
        f"{detection['training_data']['mixtures']} mixtures, "
        f"{detection['training_data']['labelled_recordings']} labelled recordings); "
        "expected quality on held-out mixtures:",
        f"  {'class':<{width}} {'event F1':>8} {'segment F1':>10} {'threshold':>9}",
    ]
    for name, m in cv["per_class"].items():
        lines.append(
            f"  {name:<{width}} {m['event_f1']:>8.3f} {m['segment_f1']:>10.3f}"
            f" {detection['thresholds'][name]:>9.2f}"
        )
    lines.append(
        f"  {'overall':<{width}} {cv['event_f1']:>8.3f} {cv['segment_f1']:>10.3f}"
        f"  PSDS1 {cv['psds1']:.3f}  (event F1: 0.2 s onset collar, offsets max(0.2 s, 20 %))"
    )
    lines += [f"  warning: {w}" for w in detection.get("warnings", [])]
    return lines
