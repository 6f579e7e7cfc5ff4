"""The ``embed``, ``train``, ``classify`` and ``map`` sub-commands: their options and handlers.

:func:`add_parser` registers them on the main parser of :mod:`earmark.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earmark.constants import DEFAULT_MODEL
from earmark.custom.classify import classify
from earmark.custom.model import CustomModelError, load_custom_classes


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
            reviews=tuple(args.from_reviews or ()),
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
        "--from-reviews",
        action="append",
        metavar="RUN_DIR",
        help="run folders reviewed with 'earmark review': learn from the stretches of audio "
        "reviewed there (accepted and corrected events as positives, rejected detections as "
        "negatives); repeatable",
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
