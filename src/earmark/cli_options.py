"""The command-line options ``detect`` and ``listen`` share, and the config-file keys they set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from earmark.events import DEFAULT_MEDIAN_FILTER, DEFAULT_MERGE_GAP, DEFAULT_THRESHOLD, OFF_RATIO


def _class_thresholds(items: Sequence[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    result: dict[str, float] = {}
    for item in items:
        label, sep, value = item.rpartition("=")
        if not sep or not label:
            raise ValueError(f"--class-threshold expects LABEL=VALUE, got {item!r}")
        result[label.strip()] = float(value)
    return result


def _split_list(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in value.split(";") if v.strip()]
    return out


_NO_OPTIONS: dict[str, Any] = dict.fromkeys(
    (
        "audioset",
        "backend",
        "checkpoint",
        "class_threshold",
        "classes",
        "denoise",
        "every_class",
        "exclude",
        "formats",
        "group_by",
        "highpass",
        "hop",
        "jobs",
        "labels",
        "median_filter",
        "merge_gap",
        "min_duration",
        "model",
        "no_refine",
        "no_scores",
        "normalize",
        "off_threshold",
        "pool",
        "scoring",
        "se_context",
        "threads",
        "threshold",
        "window",
        "report",
    ),
    None,
)
"""Every option :func:`detect_overrides` reads, as not given."""


def add_event_options(grp: Any) -> None:
    """The post-processing and class options ``detect`` and ``listen`` share (an argparse
    parser or argument group)."""
    grp.add_argument(
        "--threshold",
        type=float,
        help=f"on-threshold for every class (default {DEFAULT_THRESHOLD})",
    )
    grp.add_argument(
        "--class-threshold",
        action="append",
        metavar="LABEL=VALUE",
        help="per-class on-threshold (repeatable), by class name or mid",
    )
    grp.add_argument(
        "--off-threshold",
        type=float,
        help=f"hysteresis off-threshold (default {OFF_RATIO} x the on-threshold)",
    )
    grp.add_argument(
        "--median-filter",
        type=float,
        help=f"median filter length, seconds (default {DEFAULT_MEDIAN_FILTER})",
    )
    grp.add_argument("--min-duration", type=float, help="drop shorter events, seconds (default 0)")
    grp.add_argument(
        "--merge-gap",
        type=float,
        help=f"merge same-class gaps up to, seconds (default {DEFAULT_MERGE_GAP})",
    )
    grp.add_argument(
        "--labels", action="append", help="only these classes (';'-separated, descendants too)"
    )
    grp.add_argument("--exclude", action="append", help="never these classes (';'-separated)")
    grp.add_argument("--group-by", help="roll classes up the ontology: parent, top, or a depth")
    grp.add_argument(
        "--every-class",
        action="store_true",
        help="report every class that fires (default: one event per sound, related classes "
        "such as Siren / Emergency vehicle / Police car joined, the others as alternatives)",
    )
    grp.add_argument(
        "--classes",
        metavar="MODEL_DIR",
        help="detect the custom classes of a model from 'earmark train' (alone, or with "
        "--audioset / the AudioSet classes picked by --labels)",
    )
    grp.add_argument(
        "--audioset", action="store_true", help="with --classes: report AudioSet classes too"
    )
    grp.add_argument(
        "--no-refine",
        action="store_true",
        help="keep score-based boundaries (default: snap onsets/offsets to the signal)",
    )


def detect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (``None`` left out), keyed as in a config file;
    options a command does not have count as not given."""
    args = argparse.Namespace(**{**_NO_OPTIONS, **vars(args)})
    flat = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "threshold": args.threshold,
        "thresholds": _class_thresholds(args.class_threshold),
        "off_threshold": args.off_threshold,
        "median_filter": args.median_filter,
        "min_duration": args.min_duration,
        "merge_gap": args.merge_gap,
        "labels": _split_list(args.labels),
        "exclude": _split_list(args.exclude),
        "group_by": args.group_by,
        "join_related": False if args.every_class else None,
        "method": args.scoring,
        "window": args.window,
        "hop": args.hop,
        "se_context": args.se_context,
        "pool": args.pool,
        "backend": args.backend,
        "refine": False if args.no_refine else None,
        "signal_stats": True if getattr(args, "report", False) else None,
        "denoise": args.denoise,
        "normalize": args.normalize,
        "highpass": args.highpass,
        "formats": args.formats.split(",") if args.formats else None,
        "save_scores": False if args.no_scores else None,
        "jobs": args.jobs,
        "threads": args.threads,
        "classes": args.classes,
        "audioset": True if args.audioset else None,
        # an explicit --threshold applies to every class, custom ones included
        "calibrated_thresholds": False if args.threshold is not None else None,
    }
    return {k: v for k, v in flat.items() if v is not None}
