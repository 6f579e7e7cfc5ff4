"""``earmark evaluate PRED REF``: the command line of the evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earmark.evaluation.label_maps import load_label_map
from earmark.evaluation.runs import evaluate, print_table, render_html

__all__ = ["add_parser", "cmd_evaluate"]


# --------------------------------------------------------------------------------------------
# Command line


def cmd_evaluate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark evaluate``: metrics of an output folder against reference annotations."""
    from earmark.outputs import atomic_write_text

    try:
        label_map = load_label_map(args.label_map) if args.label_map else None
        ev = evaluate(
            args.pred,
            args.ref,
            label_map=label_map,
            descendants=args.descendants,
            with_psds=not args.no_psds,
        )
    except (OSError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(ev.to_dict(), indent=2) + "\n"
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", text)
        atomic_write_text(out / "evaluation.html", render_html(ev))
    if args.json:
        atomic_write_text(args.json, text)
    if not args.quiet:
        print_table(ev, sys.stdout)
        if args.output:
            print(f"\nresults in {args.output}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` sub-command on an ``argparse`` sub-parsers object."""
    ev = subparsers.add_parser(
        "evaluate",
        help="score an output folder against reference annotations",
        description="Event-based and segment-based F1 / error rates and PSDS1/PSDS2 of an "
        "'earmark detect' output folder against reference annotations (DCASE TSV, Audacity "
        "labels, CSV, scaper .txt, JAMS), matched by file stem.",
    )
    ev.add_argument("pred", help="output folder of 'earmark detect'")
    ev.add_argument("ref", help="reference annotation file or folder")
    ev.add_argument(
        "--label-map",
        help="YAML/JSON file (reference label -> AudioSet class names) or a built-in map "
        "(esc10); default: compare labels by name",
    )
    ev.add_argument(
        "--descendants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count ontology descendants of mapped classes too (default on)",
    )
    ev.add_argument("--no-psds", action="store_true", help="skip PSDS (faster)")
    ev.add_argument("-o", "--output", help="folder for metrics.json and evaluation.html")
    ev.add_argument("--json", help="write the metrics as JSON to this file")
    ev.add_argument("-q", "--quiet", action="store_true", help="no table on stdout")
    ev.set_defaults(func=cmd_evaluate)
    return ev
