"""Scale of ``earmark repeats``: series of long episodes (default 200 x 45 min) in one run.

Episodes are synthesised at the fingerprint rate (8 kHz): a procedural body (an ambient bed of
noise with a random spectrum and level, dialogue-like voiced syllables at random gliding
pitches through random formants, in phrases with pauses) so that no two episodes share body
audio (pieces of the few shared recordings, even re-timed, coincide between episodes a number
of times that grows with the square of the series), the real 32 s theme from the shared music
at 6 dB over the body after a cold open of 0-5 min (absent from every 17th episode) and a real
22 s outro before a short tail. Every episode is fingerprinted in a worker process
straight from the samples (:func:`earmark.repeats.fingerprint.fingerprint_waveform`: no file is
written or decoded; decoding speed is measured by ``benchmarks/repeats.py``), then all of them
are matched in this process with :func:`earmark.repeats.find_repeats_in_fingerprints`.

Reports per size: synthesis + fingerprint wall time, matching wall time, peak memory (RSS) of
the matching process and of the workers, fingerprint memory, episodes per minute, intros
found. Sizes run in increasing order and each size is a fresh process, so the peaks do not mix.

    python -m benchmarks.repeats_scale                      # 25, 50, 100, 200 episodes
    python -m benchmarks.repeats_scale --sizes 25 50 --minutes 45

Results: ``benchmarks/results/repeats_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SR = 8000
THEME = ("macroform-cold_day.wav", 31.0, 32.0)
OUTRO = ("manolo_camp-morning_coffee.wav", 5.0, 22.0)


def _sources() -> tuple[np.ndarray, np.ndarray]:
    from benchmarks.common import SHARED
    from earmark.audio import load

    music = SHARED / "audio" / "music" / "moh"
    if not music.exists():
        raise SystemExit(f"shared audio missing under {music}: set EARMARK_SHARED")
    theme = load(music / THEME[0], SR)[int(THEME[1] * SR) : int((THEME[1] + THEME[2]) * SR)]
    outro = load(music / OUTRO[0], SR)[int(OUTRO[1] * SR) : int((OUTRO[1] + OUTRO[2]) * SR)]
    return theme, outro


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _shaped_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """An ambient bed: noise with a random smooth spectrum and slowly changing level."""
    block = 1 << 16
    freqs = np.fft.rfftfreq(block, 1 / SR)
    knots = np.geomspace(50, SR / 2, 8)
    gain = 10 ** (np.interp(np.log(freqs + 1), np.log(knots), rng.uniform(-20, 0, 8)) / 20)
    out = np.empty(n, np.float32)
    for i in range(0, n, block):
        w = np.fft.irfft(np.fft.rfft(rng.standard_normal(block)) * gain, block)
        out[i : i + block] = w[: min(block, n - i)]
    knots_t = np.arange(0, n + 5 * SR, 5 * SR)
    level = np.interp(np.arange(n), knots_t, rng.uniform(0.5, 1.5, knots_t.size))
    return out * level.astype(np.float32)


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Dialogue-like sound: voiced syllables (a sawtooth at a random, gliding pitch through
    random formant resonances) in phrases with pauses. Random parameters, so that no two
    episodes share a stretch of body audio (re-used recordings would, quadratically often)."""
    from scipy import signal

    n_syl = n // int(0.12 * SR) + 2
    lengths = rng.integers(int(0.08 * SR), int(0.35 * SR), n_syl)
    edges = np.r_[0, np.cumsum(lengths)]
    f0_start = rng.uniform(90, 260, n_syl)
    f0_end = f0_start * rng.uniform(0.8, 1.25, n_syl)
    pos = np.arange(n)
    syl = np.minimum(np.searchsorted(edges, pos, side="right") - 1, n_syl - 1)
    frac = (pos - edges[syl]) / lengths[syl]
    f0 = f0_start[syl] + (f0_end[syl] - f0_start[syl]) * frac
    saw = (2.0 * (np.cumsum(f0 / SR) % 1.0) - 1.0).astype(np.float32)
    voiced = rng.uniform(size=n_syl) < 0.7
    phrase = np.repeat(rng.uniform(size=n // SR + 1) < 0.75, SR)[:n]
    env = (voiced[syl] & phrase) * np.sin(np.pi * frac) ** 0.5
    x = saw * env.astype(np.float32)
    y = np.zeros(n, np.float32)
    for f in (rng.uniform(300, 900), rng.uniform(900, 2200), rng.uniform(2200, 3400)):
        b, a = signal.iirpeak(f, 6.0, SR)
        y += signal.lfilter(b, a, x).astype(np.float32)
    return y


def episode(i: int, minutes: float, seed: int, src: tuple) -> tuple[np.ndarray, dict]:
    """One synthetic episode and its plan."""
    theme, outro = src
    rng = np.random.default_rng(seed * 100_000 + i)
    n = int(minutes * 60 * SR)
    x = np.empty(n, np.float32)
    chunk = 1 << 19  # ~65 s at a time: memory stays small whatever the episode length
    for c in range(0, n, chunk):
        m = min(chunk, n - c)
        bed, talk = _shaped_noise(m, rng), _babble(m, rng)
        x[c : c + m] = bed / _rms(bed) * 0.02 + talk / _rms(talk) * 0.04
    plan: dict = {"episode": i, "intro": None}
    level = _rms(x) * 10 ** (6 / 20)  # the theme 6 dB over the rest
    if i % 17 != 9:
        at = int(float(rng.uniform(0, 300)) * SR) if i % 4 else 0
        x[at : at + theme.size] += theme / _rms(theme) * level
        plan["intro"] = [at / SR, (at + theme.size) / SR]
    end = n - int(float(rng.uniform(2, 20)) * SR)
    x[end - outro.size : end] += outro / _rms(outro) * level
    plan["outro"] = [(end - outro.size) / SR, end / SR]
    return x, plan


def _fingerprint_job(args: tuple) -> tuple:
    i, minutes, seed = args
    from earmark.repeats.fingerprint import fingerprint_waveform

    global _SRC
    if _SRC is None:
        _SRC = _sources()
    x, plan = episode(i, minutes, seed, _SRC)
    fp = fingerprint_waveform(x, f"E{i:03d}")
    return fp, plan


_SRC = None


def run_size(n: int, minutes: float, jobs: int, seed: int) -> dict:
    """Synthesise, fingerprint and match ``n`` episodes (in this process); measurements."""
    from concurrent.futures import ProcessPoolExecutor

    from earmark.repeats import RepeatOptions, find_repeats_in_fingerprints

    t0 = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        results = list(pool.map(_fingerprint_job, [(i, minutes, seed) for i in range(n)]))
    fps = [r[0] for r in results]
    plans = [r[1] for r in results]
    del results
    t1 = time.perf_counter()
    fp_bytes = sum(
        a.nbytes
        for fp in fps
        for a in (fp.bits, fp.loudness, fp.hashes, fp.hash_frames, fp.peak_frames, fp.peak_bins)
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    segments, matches = find_repeats_in_fingerprints(fps, RepeatOptions())
    t2 = time.perf_counter()
    intro = next((s for s in segments if s.kind == "intro"), None)
    found = {o.file: (o.start, o.end) for o in intro.occurrences} if intro else {}
    hits, errors, false = 0, [], 0
    for fp, plan in zip(fps, plans, strict=True):
        got = found.get(fp.path)
        if plan["intro"] is None:
            false += got is not None
        elif got is not None and min(got[1], plan["intro"][1]) > max(got[0], plan["intro"][0]):
            hits += 1
            errors += [abs(got[0] - plan["intro"][0]), abs(got[1] - plan["intro"][1])]
    with_intro = sum(p["intro"] is not None for p in plans)
    return {
        "episodes": n,
        "minutes_per_episode": minutes,
        "audio_hours": n * minutes / 60,
        "fingerprint_wall_seconds": t1 - t0,
        "match_wall_seconds": t2 - t1,
        "total_wall_seconds": t2 - t0,
        "episodes_per_minute_total": n / ((t2 - t0) / 60),
        "episodes_per_minute_matching": n / ((t2 - t1) / 60),
        "fingerprint_megabytes": fp_bytes / 2**20,
        "peak_rss_mb_matching_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb_before_matching": rss_before,
        "peak_rss_mb_largest_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "jobs": jobs,
        "pair_matches": len(matches),
        "segments": [(s.kind, len(s.files)) for s in segments],
        "intros_found": f"{hits}/{with_intro}",
        "false_intros": false,
        "intro_mae": float(np.mean(errors)) if errors else None,
        "load_average_at_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    """Run each size in a fresh process; merge the results into the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one size
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_size(args.one, args.minutes, args.jobs, args.seed)))
        return
    from benchmarks.common import RESULTS_DIR, save_result

    path = RESULTS_DIR / "repeats_scale.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    runs = {r["key"]: r for r in old.get("runs", [])}
    for n in args.sizes:
        load = os.getloadavg()
        cmd = [sys.executable, "-m", "benchmarks.repeats_scale", "--one", str(n)]
        cmd += ["--minutes", str(args.minutes), "--jobs", str(args.jobs), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"size {n} failed")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["load_average_at_start"] = load
        r["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        r["key"] = f"{n}x{args.minutes:g}min"
        runs[r["key"]] = r
        print(
            f"{n} x {args.minutes:g} min: fingerprint {r['fingerprint_wall_seconds']:.0f} s, "
            f"match {r['match_wall_seconds']:.1f} s, {r['episodes_per_minute_total']:.1f} "
            f"episodes/min, peak RSS {r['peak_rss_mb_matching_process']:.0f} MB "
            f"(workers {r['peak_rss_mb_largest_worker']:.0f} MB), intros {r['intros_found']}, "
            f"false {r['false_intros']}, MAE {r['intro_mae']}, load {load[0]:.1f}"
        )
        ordered = sorted(runs.values(), key=lambda r: (r["minutes_per_episode"], r["episodes"]))
        save_result("repeats_scale", {"runs": ordered, "note": __doc__.split("\n\n")[1]})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
