"""Build the soundscape benchmark set into ``benchmarks/data/soundscapes``, reproducibly.

Usage::

    python -m benchmarks.sed.soundscapes          # build (or keep) benchmarks/data/soundscapes
    python -m benchmarks.sed.soundscapes --check  # and print level checks per condition
    python -m benchmarks.sed.soundscapes --force --seed 7 --per-condition 4 --out /tmp/ss

What the set is and how it is built: :mod:`earmark.evaluation.soundscape_set` (its names are
importable from here too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earmark.evaluation.soundscape_set import (
    BACKGROUND_CONFLICTS,
    BACKGROUNDS,
    CONDITIONS,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    SPLITS,
    Condition,
    build_set,
    check_set,
    foregrounds,
    ignored_by_file,
    load_index,
    reference_events,
)

__all__ = [
    "BACKGROUNDS",
    "BACKGROUND_CONFLICTS",
    "CONDITIONS",
    "DEFAULT_OUT",
    "GENERATOR_VERSION",
    "SPLITS",
    "Condition",
    "build_set",
    "built_index",
    "check_set",
    "foregrounds",
    "ignored_by_file",
    "load_index",
    "main",
    "reference_events",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "data" / "soundscapes"


def built_index(out_dir: str | Path = DEFAULT_OUT) -> dict[str, Any]:
    """The index of the set in ``out_dir``, built from the shared data first if missing."""
    if not (Path(out_dir) / "index.json").exists():
        from benchmarks.common import SHARED

        build_set(SHARED, out_dir, log=print)
    return load_index(out_dir)


def _shared_default() -> Path:
    return Path(os.environ.get("EARMARK_SHARED", REPO_ROOT.parent / "shared"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=_shared_default(), help="shared data dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--per-condition", type=int, default=8, help="soundscapes per condition")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--check", action="store_true", help="print level checks afterwards")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.shared.is_dir():
        print(f"shared data folder not found: {args.shared} (set EARMARK_SHARED)", file=sys.stderr)
        return 2
    build_set(
        args.shared,
        args.out,
        seed=args.seed,
        per_condition=args.per_condition,
        force=args.force,
        log=None if args.quiet else print,
    )
    if args.check:
        for name, row in check_set(args.out).items():
            print(name, json.dumps({k: round(v, 2) for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
