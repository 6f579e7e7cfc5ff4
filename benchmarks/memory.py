"""Peak resident memory of ``earmark detect`` on a 10-minute and a 3-hour recording.

Each input runs in a fresh process (``ru_maxrss``), through the real CLI with default options
and outputs written. Memory must stay flat: the 3-hour run may not need more than the 10-minute
one (plus the framewise scores it keeps: 527 floats per 0.32 s).

Usage: ``python benchmarks/memory.py [--threads 2]`` -> results/memory.json
"""

from __future__ import annotations

import argparse
import tempfile

from benchmarks.common import long_recording, peak_rss_of, save_result

INPUTS = (("10min", 600.0), ("3h", 3 * 3600.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: earmark's own)"
    )
    args = parser.parse_args()
    result: dict = {"threads": args.threads, "runs": {}}
    for name, seconds in INPUTS:
        path = long_recording(seconds, "mp3")
        with tempfile.TemporaryDirectory() as out:
            threads = ["--threads", str(args.threads)] if args.threads else []
            rss_mb, wall = peak_rss_of(
                ["earmark.cli", "detect", str(path), "-o", out, "--quiet", *threads]
            )
        result["runs"][name] = {
            "input": str(path),
            "audio_seconds": seconds,
            "peak_rss_mb": round(rss_mb, 1),
            "wall_seconds": round(wall, 1),
            "x_realtime": round(seconds / wall, 1),
        }
        print(name, result["runs"][name], flush=True)
    runs = result["runs"]
    result["growth_mb_10min_to_3h"] = round(
        runs["3h"]["peak_rss_mb"] - runs["10min"]["peak_rss_mb"], 1
    )
    print(save_result("memory", result))


if __name__ == "__main__":
    main()
