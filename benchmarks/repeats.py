"""Benchmark of ``earmark repeats``: TV-series-like episodes built from real recordings.

Each episode is speech (real prompts) over real background recordings, with a music excerpt
as the intro and another one as the outro (end credits). Variations, as listed in issue 8:
intro at 0:00 or after a cold open of varying length, per-episode gain, sample rates from
16 to 48 kHz, WAV/FLAC/MP3/AAC (lossy ones at 64 kbps), speech over the start or the end of
the intro music, a shortened intro, an episode without an intro. Background recordings and
speech are re-used between episodes, so each episode's bed is time-stretched by its own
random factor: the only audio shared between episodes is then the intro and the outro, as in
a real series (re-used material otherwise counts as a false segment, which it would be).

Reports, for earmark and for a Chromaprint baseline matched the way Jellyfin's intro-skipper
matches (``fpcalc -raw``; inverted index of points, shifts from exact matches +-2, XOR with at
most 6 differing bits, runs with gaps of at most 3.5 s, at least 15 s, longest run, start
within 5 s snapped to 0, first 25 % / at most 10 min of each episode, pairwise in order): intro
detection rate, false intros, MAE of start and end, speed in times real time per episode.

    python -m benchmarks.repeats            # 12-episode series + 50-episode scaling run
    python -m benchmarks.repeats --quick    # the 12-episode series only

Results: ``benchmarks/results/repeats.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from earmark.evaluation.series import EpisodeSpec
from earmark.evaluation.series import build_series as build_series_from

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data" / "repeats"
SHARED = Path(os.environ.get("EARMARK_SHARED", BENCH_DIR.parent.parent / "shared")).resolve()


def build_series(
    out_dir: Path,
    n: int,
    seed: int = 0,
    body_seconds: tuple[float, float] = (240, 420),
    recap_at: int | None = None,
) -> list[tuple[Path, EpisodeSpec]]:
    """:func:`earmark.evaluation.series.build_series` from the shared recordings."""
    return build_series_from(out_dir, n, SHARED, seed, body_seconds, recap_at)


# ----------------------------------------------------------------------------- evaluation
def _score(found: dict[str, tuple[float, float] | None], series: list) -> dict:
    """Detection rate, false intros, MAE of start and end against the plan."""
    hits, misses, false, start_err, end_err = 0, 0, 0, [], []
    per_episode = []
    for path, spec in series:
        got = found.get(str(path))
        if spec.intro_start is None:
            false += got is not None
            per_episode.append({"episode": spec.name, "truth": None, "found": got})
            continue
        truth = (spec.intro_start, spec.intro_end)
        overlaps = got is not None and min(got[1], truth[1]) > max(got[0], truth[0])
        if overlaps:
            hits += 1
            start_err.append(abs(got[0] - truth[0]))
            end_err.append(abs(got[1] - truth[1]))
        else:
            misses += 1
            false += got is not None
        per_episode.append(
            {
                "episode": spec.name,
                "truth": [round(truth[0], 3), round(truth[1], 3)],
                "found": [round(got[0], 3), round(got[1], 3)] if got else None,
                "variation": spec.speech_over or ("shortened" if spec.shortened else ""),
                "fmt": spec.fmt,
                "sample_rate": spec.sample_rate,
            }
        )
    with_intro = hits + misses
    return {
        "episodes": len(series),
        "episodes_with_intro": with_intro,
        "detection_rate": hits / with_intro if with_intro else None,
        "false_intros": false,
        "mae_start": float(np.mean(start_err)) if start_err else None,
        "mae_end": float(np.mean(end_err)) if end_err else None,
        "max_error": float(max(start_err + end_err)) if start_err else None,
        "per_episode": per_episode,
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_earmark(series: list, jobs: int = 2) -> dict:
    from earmark.repeats import find_repeats

    t = time.perf_counter()
    cpu = _cpu_seconds()
    result = find_repeats([p for p, _ in series], jobs=jobs)
    wall = time.perf_counter() - t
    cpu = _cpu_seconds() - cpu
    found: dict[str, tuple[float, float] | None] = {}
    outro_err = []
    for path, spec in series:
        occ = result.occurrences(str(path))
        intro = next((o for o in occ if o.kind == "intro"), None)
        found[str(path)] = (intro.start, intro.end) if intro else None
        outro = next((o for o in occ if o.kind == "outro"), None)
        if outro and spec.outro_start is not None:
            outro_err += [abs(outro.start - spec.outro_start), abs(outro.end - spec.outro_end)]
    recaps = []
    for path, spec in series:
        if spec.recap_end is not None:
            occ = [o for o in result.occurrences(str(path)) if o.kind == "recap"]
            got = next((o for o in occ if o.start < spec.recap_end and o.end > 0), None)
            recaps.append(
                {
                    "episode": spec.name,
                    "truth": [0.0, spec.recap_end],
                    "found": [round(got.start, 3), round(got.end, 3)] if got else None,
                }
            )
    audio = sum(s.duration for _, s in series)
    score = _score(found, series)
    score.update(
        {
            "recaps": recaps,
            "other_segments": sum(1 for s in result.segments if s.kind == "other"),
            "segments": [
                {"id": s.id, "kind": s.kind, "files": len(s.files), "median": s.median_duration}
                for s in result.segments
            ],
            "outros_found": sum(1 for o in result.occurrences() if o.kind == "outro"),
            "outro_mae": float(np.mean(outro_err)) if outro_err else None,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "audio_seconds": audio,
            "x_real_time": audio / wall,
            "x_real_time_2_free_cores": audio / (cpu / 2),
            "timings": result.timings,
            "jobs": jobs,
        }
    )
    return score


# Chromaprint baseline, matched the way intro-skipper (Jellyfin) matches.
CP_POINT = 4096 / 11025 / 3  # seconds per Chromaprint point
CP_MAX_BITS = 6
CP_INDEX_SHIFT = 2
CP_MAX_SKIP = 3.5
CP_MIN_INTRO = 15.0
CP_MAX_INTRO = 120.0


def _fpcalc(path: Path, seconds: float) -> np.ndarray:
    out = subprocess.run(
        ["fpcalc", "-raw", "-length", str(math.ceil(seconds)), str(path)],
        capture_output=True,
        text=True,
        check=False,  # fpcalc exits 3 ("End of file") when -length exceeds the file
    )
    for line in out.stdout.splitlines():
        if line.startswith("FINGERPRINT="):
            return np.array([int(v) for v in line[12:].split(",") if v], dtype=np.uint32)
    raise RuntimeError(f"fpcalc failed on {path}: {out.stderr.strip()}")


def _longest_run(lhs: np.ndarray, rhs: np.ndarray, shift: int) -> tuple[int, int] | None:
    left = -shift if shift < 0 else 0
    right = shift if shift > 0 else 0
    n = min(lhs.size, rhs.size) - abs(shift)
    if n <= 0:
        return None
    similar = np.bitwise_count(lhs[left : left + n] ^ rhs[right : right + n]) <= CP_MAX_BITS
    pos = np.flatnonzero(similar) + left
    if pos.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(pos) * CP_POINT > CP_MAX_SKIP)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, pos.size - 1]
    lengths = pos[ends] - pos[starts]
    k = int(np.argmax(lengths))  # the earliest of the longest
    if lengths[k] * CP_POINT < CP_MIN_INTRO:
        return None
    return int(pos[starts[k]]), int(pos[ends[k]])


def _compare(lhs: np.ndarray, rhs: np.ndarray) -> tuple[tuple, tuple] | None:
    """Shared region of two episodes: shifts from exact (+-2) point matches of the last
    occurrence of each point, longest run over all shifts, starts within 5 s snapped to 0."""
    last_l = {int(v): i for i, v in enumerate(lhs.tolist())}
    last_r = {int(v): i for i, v in enumerate(rhs.tolist())}
    shifts = set()
    for point, i in last_l.items():
        for d in range(-CP_INDEX_SHIFT, CP_INDEX_SHIFT + 1):
            j = last_r.get((point + d) & 0xFFFFFFFF)
            if j is not None:
                shifts.add(j - i)
    best = None
    for shift in shifts:
        run = _longest_run(lhs, rhs, shift)
        if run and (best is None or run[1] - run[0] > best[0][1] - best[0][0]):
            best = (run, shift)
    if best is None:
        return None
    (a, b), shift = best
    la = [a * CP_POINT, b * CP_POINT]
    ra = [(a + shift) * CP_POINT, (b + shift) * CP_POINT]
    for r in (la, ra):
        if r[0] <= 5:
            r[0] = 0.0
    return tuple(la), tuple(ra)


def chromaprint_intros(
    series: list, window: str = "default", jobs: int = 2
) -> tuple[dict[str, tuple[float, float] | None], dict]:
    """Intros found by the baseline per file, and its timings. ``window``: "default" = first
    25 % of each episode, at most 10 min (intro-skipper's defaults); "whole" = the whole
    episode."""
    from concurrent.futures import ThreadPoolExecutor

    t = time.perf_counter()
    cpu = _cpu_seconds()

    def length(spec: EpisodeSpec) -> float:
        return min(0.25 * spec.duration, 600.0) if window == "default" else spec.duration + 1

    with ThreadPoolExecutor(jobs) as pool:
        prints = list(pool.map(lambda ps: _fpcalc(ps[0], length(ps[1])), series))
    t_fp = time.perf_counter() - t
    intros: dict[int, tuple[float, float]] = {}
    n = len(series)
    for i in range(n):  # each episode against the next ones until one valid match
        for j in range(i + 1, n):
            got = _compare(prints[i], prints[j])
            if got is None or got[1][1] - got[1][0] > CP_MAX_INTRO:
                continue
            for k, r in ((i, got[0]), (j, got[1])):
                if k not in intros or r[1] - r[0] > intros[k][1] - intros[k][0]:
                    intros[k] = r
            break
    wall = time.perf_counter() - t
    cpu = _cpu_seconds() - cpu
    found = {str(p): intros.get(k) for k, (p, _) in enumerate(series)}
    audio = sum(s.duration for _, s in series)
    timing = {
        "window": window,
        "wall_seconds": wall,
        "fingerprint_seconds": t_fp,
        "cpu_seconds": cpu,
        "audio_seconds": audio,
        "x_real_time": audio / wall,
        "x_real_time_2_free_cores": audio / (cpu / 2),
    }
    return found, timing


def run_chromaprint(series: list, window: str = "default", jobs: int = 2) -> dict:
    """The baseline's intros scored (see :func:`chromaprint_intros` for ``window``)."""
    found, timing = chromaprint_intros(series, window, jobs)
    score = _score(found, series)
    score.update(timing)
    return score


def _summary(name: str, r: dict) -> str:
    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    return (
        f"{name:<34} found {f(r['detection_rate'], '{:.0%}')} "
        f"false {r['false_intros']}  MAE start {f(r['mae_start'])} s end {f(r['mae_end'])} s"
        f"  {r['x_real_time']:.0f}x real time ({r['x_real_time_2_free_cores']:.0f}x by CPU time)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12-episode series only")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results: dict = {
        "method": "see docs/repeats.md",
        "load_average_at_start": load,
        "note": "x_real_time is wall clock on a machine shared with other jobs; "
        "x_real_time_2_free_cores = audio seconds / (CPU seconds / 2), what 2 idle cores give",
        "series": {},
    }
    runs = [("series12", 12, 1, (240, 420))]
    if not args.quick:
        runs.append(("series50", 50, 2, (150, 300)))
    for name, n, seed, body in runs:
        t = time.perf_counter()
        series = build_series(DATA_DIR / name, n, seed, body)
        print(f"{name}: {n} episodes built/reused in {time.perf_counter() - t:.0f} s")
        entry = {"earmark": run_earmark(series, args.jobs)}
        if shutil.which("fpcalc"):
            entry["chromaprint_intro_skipper"] = run_chromaprint(series, "default", args.jobs)
            entry["chromaprint_whole_file"] = run_chromaprint(series, "whole", args.jobs)
        else:
            entry["chromaprint_intro_skipper"] = "fpcalc not found (apt libchromaprint-tools)"
        results["series"][name] = entry
        for method, r in entry.items():
            if isinstance(r, dict):
                print("  " + _summary(method, r))
        er = entry["earmark"]
        print(
            f"  earmark outros {er['outros_found']}/{n}, outro MAE {er['outro_mae']:.2f} s, "
            f"other segments {er['other_segments']}"
        )
    from benchmarks.common import save_result

    print(f"results: {save_result('repeats', results)}")


if __name__ == "__main__":
    main()
