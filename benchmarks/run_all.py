"""Run every benchmark of the detection engine; each writes JSON under benchmarks/results/.

Usage: ``python -m benchmarks.run_all [--quick]`` (``make bench``). ``--quick`` skips the
3-hour memory run and shortens the speed input to 10 minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = [
        ["benchmarks.sed.soundscapes"],
        ["benchmarks.sed"],
        ["benchmarks.sounds"],
        ["benchmarks.repeats", *(["--quick"] if args.quick else [])],
        ["benchmarks.scoring_design"],
        ["benchmarks.speed", "--minutes", "10" if args.quick else "60"],
    ]
    if not args.quick:
        steps.append(["benchmarks.memory"])
    for step in steps:
        print("==>", " ".join(step), flush=True)
        code = subprocess.call([sys.executable, "-m", *step])
        if code != 0:
            print(f"benchmark {step[0]} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
