"""Benchmark of ``earmark repeats`` under real mixing (issue 15): the theme shares the air.

A series of 17 episodes built from real recordings in ``../shared/audio``:

* every episode has its own continuous ambient bed (cafe, river, rain, street, ...; episodes
  that re-use a recording play it at a different speed, so no bed is shared), **not ducked**
  under the theme, and dialogue (real speech prompts cut into re-timed pieces) over it;
* the intro is the same 20 s music excerpt at 0, 3, 6 or 12 dB over the bed (RMS over the
  theme; 4 episodes per level), at 0:00 or after a cold open; in 8 of them dialogue runs over
  6 s of it (start, middle or end) at the level of the theme;
* one episode is a PAL transfer: the whole episode played 4.3 % faster (pitch up);
* one episode has no intro (negative);
* every episode ends with a short 8 s outro sting at its episode's level over the bed;
* recurring snippets that are not intros or outros: a 3 s repeated line, a 4 s alarm and a
  6 s siren sting, each placed in 5-7 episodes (some in the first minute, some in the last);
* formats WAV/FLAC/MP3/AAC (lossy ones at 64 kbps), 16-48 kHz.

Scores, for earmark and for the Chromaprint baseline (intro-skipper matching, see
``benchmarks/repeats.py``) on the same files: intros found (overall and per level), start/end
MAE, outros found, false segments (an intro/outro occurrence that is not the file's intro/
outro, or any reported occurrence that overlaps no planted shared audio), snippets labelled
intro/outro, segments with more than one kind, the speed ratio reported for the PAL episode.

    python -m benchmarks.repeats_mixing                  # results under the label "earmark"
    python -m benchmarks.repeats_mixing --label before   # e.g. the method before issue 15

Results: ``benchmarks/results/repeats_mixing.json`` (entries of other labels are kept, each
with its git commit and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.repeats import SHARED, _cpu_seconds, chromaprint_intros
from earmark.evaluation.series_mixing import PAL, build_mixing_series

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data" / "repeats_mixing"


# ----------------------------------------------------------------------------- scoring
def _overlaps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and min(a[1], b[1]) > max(a[0], b[0])


def score(
    series: list,
    intros: dict[str, tuple[float, float] | None],
    outros: dict[str, tuple[float, float] | None],
    others: dict[str, list[tuple[str, float, float]]] | None = None,
) -> dict:
    """Intros/outros found, MAE, false segments (see the module docstring)."""
    per_level: dict[str, list[int]] = {}
    start_err, end_err, o_start, o_end = [], [], [], []
    false, snippet_as_theme, hits, with_intro, outro_hits = 0, 0, 0, 0, 0
    rows = []
    for path, spec in series:
        key = str(path)
        truth = (spec.intro_start, spec.intro_end) if spec.intro_start is not None else None
        got = intros.get(key)
        snips = [(a, b) for _, a, b in spec.snippets]
        if truth is None:
            false += got is not None
        else:
            with_intro += 1
            ok = _overlaps(got, truth)
            hits += ok
            per_level.setdefault(f"{spec.snr_db:g} dB", [0, 0])
            per_level[f"{spec.snr_db:g} dB"][0] += ok
            per_level[f"{spec.snr_db:g} dB"][1] += 1
            if ok and got is not None:
                start_err.append(abs(got[0] - truth[0]))
                end_err.append(abs(got[1] - truth[1]))
            elif got is not None:
                false += 1
        if got is not None and any(_overlaps(got, s) for s in snips) and not _overlaps(got, truth):
            snippet_as_theme += 1
        o_truth = (spec.outro_start, spec.outro_end)
        o_got = outros.get(key)
        if _overlaps(o_got, o_truth) and o_got is not None:
            outro_hits += 1
            o_start.append(abs(o_got[0] - o_truth[0]))
            o_end.append(abs(o_got[1] - o_truth[1]))
        elif o_got is not None:
            false += 1
            snippet_as_theme += any(_overlaps(o_got, s) for s in snips)
        planted = [s for s in (truth, o_truth, *snips) if s is not None]
        stray = [
            o for o in (others or {}).get(key, []) if not any(_overlaps(o[1:], p) for p in planted)
        ]
        false += len(stray)
        rows.append(
            {
                "episode": spec.name,
                "snr_db": spec.snr_db,
                "speech_over": spec.speech_over,
                "speed": spec.speed,
                "truth": list(truth) if truth else None,
                "found": [round(v, 3) for v in got] if got else None,
                "outro_truth": [round(v, 3) for v in o_truth],
                "outro_found": [round(v, 3) for v in o_got] if o_got else None,
                "stray": stray,
            }
        )
    at3 = [v for k, v in per_level.items() if float(k.split()[0]) >= 3]
    return {
        "episodes": len(series),
        "episodes_with_intro": with_intro,
        "intros_found": hits,
        "intros_found_per_level": {k: f"{v[0]}/{v[1]}" for k, v in per_level.items()},
        "intro_rate_3db_and_above": sum(v[0] for v in at3) / max(sum(v[1] for v in at3), 1),
        "mae_start": float(np.mean(start_err)) if start_err else None,
        "mae_end": float(np.mean(end_err)) if end_err else None,
        "max_error": float(max(start_err + end_err)) if start_err else None,
        "outros_found": outro_hits,
        "outro_mae_start": float(np.mean(o_start)) if o_start else None,
        "outro_mae_end": float(np.mean(o_end)) if o_end else None,
        "false_segments": false,
        "snippets_labelled_intro_or_outro": snippet_as_theme,
        "per_episode": rows,
    }


def run_earmark_mixing(series: list, jobs: int = 2) -> dict:
    """earmark on the series, scored."""
    from earmark.repeats import find_repeats

    t = time.perf_counter()
    cpu = _cpu_seconds()
    result = find_repeats([p for p, _ in series], jobs=jobs)
    wall = time.perf_counter() - t
    cpu = _cpu_seconds() - cpu
    intros: dict[str, tuple[float, float] | None] = {}
    outros: dict[str, tuple[float, float] | None] = {}
    others: dict[str, list[tuple[str, float, float]]] = {}
    for path, _ in series:
        occ = result.occurrences(str(path))
        i = next((o for o in occ if o.kind == "intro"), None)
        o = next((o for o in occ if o.kind == "outro"), None)
        intros[str(path)] = (i.start, i.end) if i else None
        outros[str(path)] = (o.start, o.end) if o else None
        others[str(path)] = [
            (x.kind, round(x.start, 3), round(x.end, 3)) for x in occ if x not in (i, o)
        ]
    out = score(series, intros, outros, others)
    mixed = [s.id for s in result.segments if len({o.kind for o in s.occurrences}) > 1]
    speeds = {}
    for f in result.files:
        speed = getattr(f, "speed", None)
        if speed is not None:
            speeds[Path(f.file).name] = round(float(speed), 4)
    pal = next((p.name for p, s in series if s.speed != 1.0), None)
    out.update(
        {
            "segments": [
                {"id": s.id, "kind": s.kind, "files": len(s.files), "median": s.median_duration}
                for s in result.segments
            ],
            "segments_with_mixed_kinds": len(mixed),
            "speed_reported": speeds,
            "pal_episode_speed": {"episode": pal, "truth": PAL, "reported": speeds.get(pal or "")},
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "audio_seconds": sum(s.duration for _, s in series),
            "timings": result.timings,
        }
    )
    return out


def run_chromaprint_mixing(series: list, jobs: int = 2) -> dict:
    """The Chromaprint baseline (intro-skipper matching and window) on the same files."""
    found, timing = chromaprint_intros(series, "default", jobs)
    out = score(series, found, {})
    out.update(timing)
    return out


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"


def _line(name: str, r: dict) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (
        f"{name:<28} intros {r['intros_found']}/{r['episodes_with_intro']} "
        f"{r['intros_found_per_level']}  >=3 dB {r['intro_rate_3db_and_above']:.0%}  "
        f"MAE {f(r['mae_start'])}/{f(r['mae_end'])} s  outros {r['outros_found']}  "
        f"false {r['false_segments']}"
    )


def main(argv: list[str] | None = None) -> None:
    """Build the series, run earmark (and Chromaprint), merge into the results JSON."""
    from benchmarks.common import RESULTS_DIR, save_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="earmark", help="name of earmark's entry")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-chromaprint", action="store_true")
    parser.add_argument(
        "--seed",
        type=int,
        default=15,
        help="another seed builds another series (other "
        "cold opens, bodies, snippet places); its entries are suffixed with _seed<n>",
    )
    args = parser.parse_args(argv)
    suffix = "" if args.seed == 15 else f"_seed{args.seed}"
    t = time.perf_counter()
    series = build_mixing_series(DATA_DIR.with_name(DATA_DIR.name + suffix), SHARED, seed=args.seed)
    print(f"{len(series)} episodes built/reused in {time.perf_counter() - t:.0f} s")
    path = RESULTS_DIR / "repeats_mixing.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    methods = old.get("methods", {})
    plans = old.get("plans", {})
    entry = run_earmark_mixing(series, args.jobs)
    entry.update({"git_commit": _git_commit(), "load_average_at_start": os.getloadavg()})
    methods[args.label + suffix] = entry
    if not args.no_chromaprint and shutil.which("fpcalc"):
        cp = run_chromaprint_mixing(series, args.jobs)
        cp["load_average_at_start"] = os.getloadavg()
        methods["chromaprint_intro_skipper" + suffix] = cp
    for name, r in methods.items():
        print(_line(name, r))
    print(f"speed reported: {entry['pal_episode_speed']}")
    plans[f"seed{args.seed}"] = [asdict(s) for _, s in series]
    results = {
        "series": "17 episodes: theme 0/3/6/12 dB over a different real bed each, dialogue over "
        "6 s of it in 8, one PAL (+4.3 %), one without intro, 8 s outros, 3-6 s snippets; "
        "entries without suffix: seed 15",
        "plans": plans,
        "methods": methods,
    }
    print(f"results: {save_result('repeats_mixing', results)}")


if __name__ == "__main__":
    main()
