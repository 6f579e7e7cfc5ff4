"""``earmark repeats``: the command line of the recurring-segments wing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from earmark.repeats.matching import find_repeats
from earmark.repeats.outputs import write_repeats
from earmark.repeats.results import FileStatus, RepeatOptions, RepeatsResult

__all__ = ["add_parser", "cmd_repeats", "file_line", "summary_text"]


def cmd_repeats(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark repeats``: recurring segments across files, written to the output folder."""
    from earmark.inputs import collect_inputs, printable

    entries = collect_inputs(args.inputs)
    unreadable = [f"{printable(e.path)}: {e.problem}" for e in entries if e.problem]
    for reason in unreadable:
        print(f"earmark: FAILED: {reason}", file=sys.stderr)
    files = [str(e.path) for e in entries if e.problem is None]
    if len(files) < 2:
        print("earmark: repeats needs at least two files (episodes)", file=sys.stderr)
        return 2
    opts = RepeatOptions(
        min_duration=args.min_duration,
        theme_min_duration=args.theme_min_duration,
        window=args.window,
        find_speed=not args.no_speed,
    )
    started = time.perf_counter()

    def show(name: str, done: int, total: int, seconds: float) -> None:
        elapsed = time.perf_counter() - started
        sum_audio[0] += seconds
        rate = sum_audio[0] / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (total - done)
        print(
            f"[{done}/{total} files] {sum_audio[0] / 60:.1f} min of audio | "
            f"{rate:.0f}x real time | ETA {eta:.0f} s | {name}",
            file=sys.stderr,
        )

    sum_audio = [0.0]
    result = find_repeats(files, opts, None if args.quiet else show, jobs=args.jobs)
    written = write_repeats(result, args.output)
    failed = [f for f in result.files if f.status == "failed"]
    if args.json:
        json.dump(
            {
                "out_dir": str(args.output),
                "outputs": {k: str(v) for k, v in written.items()},
                **result.to_dict(),
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    elif not args.quiet:
        print(summary_text(result))
        t = result.timings
        print(
            f"\n{len(result.files)} files, {t['audio_seconds'] / 60:.1f} min of audio in "
            f"{t['total_seconds']:.1f} s ({t['realtime_factor']:.0f}x real time); "
            f"results in {args.output}"
        )
    for f in failed:
        print(f"earmark: FAILED: {f.error}", file=sys.stderr)
    return 1 if failed or unreadable else 0


def file_line(result: RepeatsResult, f: FileStatus) -> str:
    """One file's line of the console summary: its segments, what it lacks, its speed."""
    if f.status == "failed":
        return f"{f.file}: FAILED ({f.error})"
    parts = [
        f"{o.kind} {o.start:.2f}-{o.end:.2f} ({o.confidence:.2f})"
        for o in result.occurrences(f.file)
    ]
    for kind, confidence in result.not_found(f.file):
        parts.append(
            f"no {kind} found"
            + ("" if confidence is None else f" (best candidate confidence {confidence:.2f})")
        )
    if f.speed is not None and abs(f.speed - 1.0) > 0.002:
        parts.append(f"speed x{f.speed:.3f} of the series ({(f.speed - 1) * 100:+.1f} %)")
    return f"{f.file}: " + "; ".join(parts)


def summary_text(result: RepeatsResult) -> str:
    """The console summary: the series (how many files share each segment), then per file."""
    n = len(result.files)
    lines = []
    for s in result.segments:
        line = f"segment {s.id} ({s.kind}): {len(s.files)} of {n} files"
        line += f", median {s.median_duration:.1f} s"
        if s.missing:
            line += f"; not found in {len(s.missing)}"
        lines.append(line)
    for kind in ("intro", "outro"):
        if result.segment(kind) is None:
            lines.append(f"no {kind} found in the series")
    lines += [file_line(result, f) for f in result.files]
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``earmark repeats`` on the sub-command parsers of the main parser."""
    p = subparsers.add_parser(
        "repeats",
        help="find segments that recur across files (TV intros, credits, recaps)",
        description="Find the audio segments that recur across the given files (episodes of "
        "a series): intro, outro/credits, recaps and other repeated material, with start, "
        "end, confidence and the files sharing each, per file. Writes CSV/JSON, events, "
        "FFmetadata chapters and EDLs to the output folder.",
    )
    p.add_argument("inputs", nargs="+", help="audio/video files, folders (recursive) or globs")
    p.add_argument("-o", "--output", default="earmark-repeats", help="output folder")
    p.add_argument(
        "--min-duration", type=float, default=5.0, help="shortest segment reported, s (5)"
    )
    p.add_argument(
        "--theme-min-duration",
        type=float,
        default=7.0,
        help="shortest intro/outro/recap, s; shorter recurring snippets are 'other' (7)",
    )
    p.add_argument(
        "--window",
        type=_positive_int,
        default=12,
        help="compare each file with this many files before and after it in the input "
        "order (12); give the episodes in series order",
    )
    p.add_argument(
        "--no-speed",
        action="store_true",
        help="do not look for the intro/outro at other speeds (+-5 %%) in files lacking them",
    )
    p.add_argument("-j", "--jobs", type=int, help="files fingerprinted in parallel")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_repeats)
    return p
