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
import json
import math
import os
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from earmark.audio import load, resample
from earmark.outputs import atomic_path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data" / "repeats"
SHARED = Path(os.environ.get("EARMARK_SHARED", BENCH_DIR.parent.parent / "shared")).resolve()
BUILD_RATE = 16000

INTRO_TRACK = "macroform-cold_day.wav"
OUTRO_TRACK = "manolo_camp-morning_coffee.wav"
BACKGROUNDS = [
    "places/cafe.mp3",
    "places/office.mp3",
    "places/subway-station.mp3",
    "urban/busy-street.mp3",
    "urban/traffic.mp3",
    "rain/light-rain.mp3",
    "nature/river.mp3",
    "nature/waves.mp3",
    "nature/wind.mp3",
    "animals/crows.mp3",
    "things/washing-machine.mp3",
]


@dataclass
class EpisodeSpec:
    """How one episode is built, and its ground truth (seconds; None where absent)."""

    name: str
    duration: float
    intro_start: float | None
    intro_end: float | None
    outro_start: float | None
    outro_end: float | None
    sample_rate: int
    fmt: str  # wav, flac, mp3, m4a
    gain_db: float
    speech_over: str  # "", "intro_start", "intro_end"
    shortened: bool
    recap_end: float | None = None  # a recap from 0:00 to here ...
    recap_from: float | None = None  # ... repeating the previous episode from this time


class Sources:
    """Real recordings loaded once at BUILD_RATE."""

    def __init__(self, shared: Path = SHARED) -> None:
        audio = shared / "audio"
        self.music = audio / "music" / "moh"
        self.speech_files = sorted((audio / "speech" / "asterisk").glob("*.wav"))
        self.background_files = [audio / "backgrounds" / "sounds" / b for b in BACKGROUNDS]
        missing = [p for p in [self.music, *self.background_files] if not p.exists()]
        if missing or not self.speech_files:
            raise FileNotFoundError(f"shared audio missing under {audio}: {missing[:3]}")
        self._cache: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load(path, BUILD_RATE)
        return self._cache[path]

    def intro(self) -> np.ndarray:
        x = self.get(self.music / INTRO_TRACK)
        return _fade(x[int(31.0 * BUILD_RATE) : int(63.0 * BUILD_RATE)].copy())  # 32 s theme

    def outro(self) -> np.ndarray:
        x = self.get(self.music / OUTRO_TRACK)
        return _fade(x[int(5.0 * BUILD_RATE) : int(27.0 * BUILD_RATE)].copy())  # 22 s credits


def _fade(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    n = min(int(seconds * BUILD_RATE), x.size // 2)
    ramp = np.linspace(0, 1, n, dtype=np.float32)
    x[:n] *= ramp
    x[x.size - n :] *= ramp[::-1]
    return x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch moves too): decorrelates re-used material."""
    return resample(x, round(BUILD_RATE * factor), BUILD_RATE)


def _pieces(
    src: Sources, files: list[Path], seconds: float, rng: np.random.Generator, span: tuple
) -> np.ndarray:
    """Short random pieces of random recordings, each played at its own random speed.

    Real dialogue and ambience never repeat across episodes; the shared recordings here do, so
    they are cut into pieces shorter than any segment worth reporting and re-timed: whatever
    two episodes happen to share is a few seconds at most, at different speeds.
    """
    n = int(seconds * BUILD_RATE)
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        x = src.get(files[int(rng.integers(len(files)))])
        factor = float(rng.uniform(0.75, 1.3))
        want = int(rng.uniform(*span) * BUILD_RATE)
        raw = min(x.size, int(want * factor) + 64)
        start = int(rng.integers(0, x.size - raw + 1))
        piece = _stretch(x[start : start + raw], factor)
        take = min(n - pos, want, piece.size)
        seg = _fade(piece[:take].copy(), 0.02)
        out[pos : pos + take] += seg / _rms(seg)
        pos += take
    return out


def _body(src: Sources, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech over a two-layer background bed, all cut into short re-timed pieces."""
    bed = _pieces(src, src.background_files, seconds, rng, (2.0, 4.0)) * 0.02
    bed += _pieces(src, src.background_files, seconds, rng, (2.0, 4.0)) * 0.01
    speech = _pieces(src, src.speech_files, seconds, rng, (0.8, 2.5)) * 0.1
    gaps = rng.uniform(size=speech.size // BUILD_RATE + 1) < 0.25  # pauses in the dialogue
    speech *= np.repeat(~gaps, BUILD_RATE)[: speech.size]
    return bed + speech


def _speech_burst(src: Sources, seconds: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(0, np.float32)
    while out.size < seconds * BUILD_RATE:
        clip = src.get(src.speech_files[int(rng.integers(len(src.speech_files)))])
        clip = _stretch(clip, float(rng.uniform(0.85, 1.15)))
        out = np.concatenate([out, clip / _rms(clip) * 0.1, np.zeros(800, np.float32)])
    return out[: int(seconds * BUILD_RATE)]


def episode_specs(
    n: int,
    seed: int = 0,
    body_seconds: tuple[float, float] = (240, 420),
    recap_at: int | None = None,
) -> list[EpisodeSpec]:
    """The plan of a series of ``n`` episodes with every variation present at least once.

    ``recap_at``: the episode (0-based) that opens with a 12 s recap of the one before (by
    default the 7th in series of 8-20 episodes)."""
    rng = np.random.default_rng(seed)
    rates = [44100, 48000, 22050, 32000, 16000]
    fmts = ["mp3", "m4a", "flac", "wav", "mp3", "m4a"]
    specs = []
    intro_len, outro_len = 32.0, 22.0
    for i in range(n):
        body = float(rng.uniform(*body_seconds))
        cold = 0.0 if i % 4 == 0 else float(rng.uniform(15, 120))
        recap = i == recap_at if recap_at is not None else (8 <= n <= 20 and i == 6)
        if recap:
            cold = max(cold, 30.0)
        has_intro = not (i == 3 or (n > 20 and i % 17 == 9))
        shortened = i == min(5, n - 1) or (n > 20 and i % 13 == 6)
        speech_over = {1: "intro_start", 2: "intro_end", 7: "intro_start", 10: "intro_end"}.get(
            i % 12, ""
        )
        if not has_intro:
            speech_over, shortened = "", False
        length = intro_len * (0.55 if shortened else 1.0) if has_intro else 0.0
        intro_start = cold if has_intro else None
        intro_end = cold + length if has_intro else None
        outro_start = cold + length + body
        tail = float(rng.uniform(0, 4))
        specs.append(
            EpisodeSpec(
                name=f"S01E{i + 1:02d}",
                duration=round(outro_start + outro_len + tail, 3),
                intro_start=intro_start,
                intro_end=round(intro_end, 3) if intro_end is not None else None,
                outro_start=round(outro_start, 3),
                outro_end=round(outro_start + outro_len, 3),
                sample_rate=rates[i % len(rates)],
                fmt=fmts[i % len(fmts)],
                gain_db=float(rng.uniform(-12, 0)),
                speech_over=speech_over,
                shortened=shortened,
                recap_end=12.0 if recap else None,
                recap_from=round(specs[-1].duration * 0.5, 3) if recap else None,
            )
        )
    return specs


def render_episode(
    spec: EpisodeSpec, src: Sources, seed: int, previous: np.ndarray | None = None
) -> np.ndarray:
    """The audio of one episode at BUILD_RATE (``previous``: the episode before, for recaps)."""
    rng = np.random.default_rng(seed)
    n = int(spec.duration * BUILD_RATE)
    x = _body(src, spec.duration, rng)[:n]
    if spec.recap_end is not None and spec.recap_from is not None and previous is not None:
        a = int(spec.recap_from * BUILD_RATE)
        clip = previous[a : a + int(spec.recap_end * BUILD_RATE)]
        x[: clip.size] = _fade(clip.copy())
    music_level = 0.08 * 10 ** (rng.uniform(-4, 4) / 20)
    if spec.intro_start is not None and spec.intro_end is not None:
        a, b = int(spec.intro_start * BUILD_RATE), int(spec.intro_end * BUILD_RATE)
        theme = src.intro()
        theme = _fade(theme[: b - a].copy())
        b = a + theme.size
        x[a:b] = x[a:b] * 0.05 + theme / _rms(theme) * music_level
        if spec.speech_over:
            burst = _speech_burst(src, 4.0, rng) * 1.2
            at = a if spec.speech_over == "intro_start" else b - burst.size
            x[at : at + burst.size] += burst
        # the body must not start with speech that continues the burst: nothing to do
    if spec.outro_start is not None and spec.outro_end is not None:
        a, b = int(spec.outro_start * BUILD_RATE), int(spec.outro_end * BUILD_RATE)
        theme = src.outro()[: b - a]
        b = a + theme.size
        x[a:b] = x[a:b] * 0.05 + theme / _rms(theme) * music_level
        x[b:] *= 0.05  # after the credits: near silence
    return (x * 10 ** (spec.gain_db / 20)).astype(np.float32)


def write_audio(path: Path, x: np.ndarray, sample_rate: int, fmt: str) -> None:
    """Write mono audio with PyAV's bundled encoders (lossy formats at 64 kbps), atomically."""
    y = resample(x, BUILD_RATE, sample_rate) if sample_rate != BUILD_RATE else x
    y = np.clip(y, -1, 1).astype(np.float32)
    codec = {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame", "m4a": "aac"}[fmt]
    container_fmt = {"wav": "wav", "flac": "flac", "mp3": "mp3", "m4a": "ipod"}[fmt]
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format=container_fmt)
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        if fmt in ("mp3", "m4a"):
            stream.bit_rate = 64_000
        sample_fmt = stream.codec_context.format.name
        step = 1152 if fmt == "mp3" else 1024
        pts = 0
        for i in range(0, y.size, step * 16):
            piece = y[i : i + step * 16][None, :]
            if sample_fmt.startswith("s16"):
                data = (piece * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
            else:
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pts
            pts += piece.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        container.close()


def build_series(
    out_dir: Path,
    n: int,
    seed: int = 0,
    body_seconds: tuple[float, float] = (240, 420),
    recap_at: int | None = None,
) -> list[tuple[Path, EpisodeSpec]]:
    """Build (or reuse, when the plan is unchanged) a series of ``n`` episodes in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = episode_specs(n, seed, body_seconds, recap_at)
    rows = [
        {k: v for k, v in asdict(s).items() if v is not None or k[:5] != "recap"} for s in specs
    ]
    plan = json.dumps(rows, sort_keys=True)
    plan_file = out_dir / "plan.json"
    paths = [out_dir / f"{s.name}.{s.fmt}" for s in specs]
    if plan_file.exists() and plan_file.read_text() == plan and all(p.exists() for p in paths):
        return list(zip(paths, specs, strict=False))
    src = Sources()
    previous = None
    for i, (path, spec) in enumerate(zip(paths, specs, strict=False)):
        x = render_episode(spec, src, seed * 1000 + i, previous)
        write_audio(path, x, spec.sample_rate, spec.fmt)
        previous = x / 10 ** (spec.gain_db / 20)
    plan_file.write_text(plan)
    return list(zip(paths, specs, strict=False))


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
