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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.repeats import (
    BUILD_RATE,
    Sources,
    _cpu_seconds,
    _fade,
    _pieces,
    _rms,
    _stretch,
    chromaprint_intros,
    write_audio,
)
from earmark.audio import resample

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data" / "repeats_mixing"

THEME = ("macroform-cold_day.wav", 31.0, 20.0)  # track, start, seconds
OUTRO = ("manolo_camp-morning_coffee.wav", 5.0, 8.0)
LINE = "cannot-complete-as-dialed.wav"  # the repeated line (first 3 s)
BEDS = [
    "places/cafe.mp3",
    "nature/river.mp3",
    "rain/light-rain.mp3",
    "places/office.mp3",
    "urban/busy-street.mp3",
    "places/subway-station.mp3",
    "nature/waves.mp3",
    "nature/wind.mp3",
    "urban/traffic.mp3",
    "animals/crows.mp3",
    "rain/rain-on-window.mp3",
    "rain/heavy-rain.mp3",
    "things/washing-machine.mp3",
]
PAL = 1.043
LEVELS = (12.0, 6.0, 3.0, 0.0)


@dataclass
class MixSpec:
    """One episode of the mixing series and its ground truth (seconds in the written file)."""

    name: str
    duration: float
    bed: str
    bed_speed: float
    snr_db: float | None  # theme over bed; None: no intro
    intro_start: float | None
    intro_end: float | None
    outro_start: float
    outro_end: float
    speech_over: str  # "", "start", "middle", "end"
    speed: float  # 1.0, or PAL: the whole episode played this much faster
    sample_rate: int
    fmt: str
    snippets: list[tuple[str, float, float]] = field(default_factory=list)
    shortened: bool = False  # (read by benchmarks.repeats._score)


def _snippet_audio(src: Sources) -> dict[str, np.ndarray]:
    audio = src.music.parent.parent
    line = src.get(audio / "speech" / "asterisk" / LINE)[: int(3.0 * BUILD_RATE)]
    alarm = src.get(audio / "backgrounds" / "sounds" / "alarm.mp3")[: int(4.0 * BUILD_RATE)]
    siren = src.get(audio / "backgrounds" / "sounds" / "urban" / "ambulance-siren.mp3")
    siren = siren[int(8.0 * BUILD_RATE) : int(14.0 * BUILD_RATE)]
    return {"line": _fade(line.copy()), "alarm": _fade(alarm.copy()), "siren": _fade(siren.copy())}


def mixing_specs(
    n_per_level: int = 4,
    seed: int = 15,
    levels: tuple[float, ...] = LEVELS,
    pal_at: int = 5,
    body_seconds: tuple[float, float] = (100, 160),
) -> list[MixSpec]:
    """The plan: ``n_per_level`` intro episodes per theme level (dB over the bed), then one
    without intro; episode ``pal_at`` (0-based) is played 4.3 % faster."""
    rng = np.random.default_rng(seed)
    n = n_per_level * len(levels) + 1
    rates = [44100, 48000, 22050, 32000, 16000]
    fmts = ["mp3", "m4a", "flac", "wav", "mp3", "m4a"]
    overs = ["", "start", "middle", "end"]
    snippet_len = {"line": 3.0, "alarm": 4.0, "siren": 6.0}
    specs = []
    for i in range(n):
        has_intro = i < n - 1
        level = levels[i % len(levels)] if has_intro else None
        cold = 0.0 if i % 3 == 0 else float(rng.uniform(15, 60))
        body = float(rng.uniform(*body_seconds))
        intro_len = THEME[2] if has_intro else 0.0
        outro_start = cold + intro_len + body
        duration = outro_start + OUTRO[2] + float(rng.uniform(0.5, 3))
        speed = PAL if i == pal_at else 1.0
        snippets = []
        for k, name in enumerate(("line", "alarm", "siren")):
            if not has_intro:  # all three in the first minute of the episode without intro
                at = 5.0 + 16.0 * k
                snippets.append((name, at, at + snippet_len[name]))
                continue
            if (i + k) % 3 == 2:
                continue
            # early (before the intro, or in the first minute) or late (before the outro)
            if (i + k) % 2 == 0 and cold > snippet_len[name] + 4:
                at = float(rng.uniform(1.0, cold - snippet_len[name] - 2))
            else:
                at = outro_start - snippet_len[name] - float(rng.uniform(5, 30))
            snippets.append((name, at, at + snippet_len[name]))
        # snippets must not overlap each other
        snippets.sort(key=lambda s: s[1])
        kept: list[tuple[str, float, float]] = []
        for s in snippets:
            if not kept or s[1] > kept[-1][2] + 1.0:
                kept.append(s)
        specs.append(
            MixSpec(
                name=f"M01E{i + 1:02d}",
                duration=round(duration, 3),
                bed=BEDS[i % len(BEDS)],
                bed_speed=1.0 if i < len(BEDS) else 1.25,
                snr_db=level,
                intro_start=round(cold, 3) if has_intro else None,
                intro_end=round(cold + intro_len, 3) if has_intro else None,
                outro_start=round(outro_start, 3),
                outro_end=round(outro_start + OUTRO[2], 3),
                speech_over=overs[(i // len(levels) + i) % 4] if has_intro else "",
                speed=speed,
                sample_rate=rates[i % len(rates)],
                fmt=fmts[i % len(fmts)],
                snippets=[(s, round(a, 3), round(b, 3)) for s, a, b in kept],
            )
        )
    return specs


def _bed(src: Sources, spec: MixSpec) -> np.ndarray:
    """The episode's own ambient recording, looped (with short fades) to the episode length."""
    x = src.get(src.background_files[0].parent.parent / spec.bed)
    if spec.bed_speed != 1.0:
        x = _stretch(x, spec.bed_speed)
    n = int(spec.duration * BUILD_RATE)
    reps = [_fade(x.copy(), 0.3)] * (n // x.size + 1)
    return np.concatenate(reps)[:n] / _rms(x) * 0.03


def render_mix(spec: MixSpec, src: Sources, seed: int) -> np.ndarray:
    """The audio of one episode at BUILD_RATE, before the speed change."""
    rng = np.random.default_rng(seed)
    n = int(spec.duration * BUILD_RATE)
    bed = _bed(src, spec)
    speech = _pieces(src, src.speech_files, spec.duration, rng, (0.8, 2.5))[:n] * 0.06
    gaps = rng.uniform(size=speech.size // BUILD_RATE + 1) < 0.3
    speech *= np.repeat(~gaps, BUILD_RATE)[: speech.size]
    x = bed + speech
    bed_rms = _rms(bed)
    level = spec.snr_db if spec.snr_db is not None else 6.0
    if spec.intro_start is not None and spec.intro_end is not None:
        a = int(spec.intro_start * BUILD_RATE)
        track = src.get(src.music / THEME[0])
        theme = track[int(THEME[1] * BUILD_RATE) : int((THEME[1] + THEME[2]) * BUILD_RATE)]
        theme = _fade(theme.copy()) / _rms(theme) * bed_rms * 10 ** (level / 20)
        b = a + theme.size
        x[a:b] = bed[a:b] + theme  # the bed goes on; no dialogue under the theme but ...
        if spec.speech_over:
            # ... in half the episodes dialogue runs over 6 s of it, at the theme's level
            where = {"start": 0.0, "middle": 7.0, "end": THEME[2] - 6.0}[spec.speech_over]
            at = a + int(where * BUILD_RATE)
            words = _pieces(src, src.speech_files, 6.0, rng, (0.8, 2.5))
            x[at : at + words.size] += words / _rms(words) * _rms(theme)
    a = int(spec.outro_start * BUILD_RATE)
    track = src.get(src.music / OUTRO[0])
    outro = track[int(OUTRO[1] * BUILD_RATE) : int((OUTRO[1] + OUTRO[2]) * BUILD_RATE)]
    outro = _fade(outro.copy()) / _rms(outro) * bed_rms * 10 ** (level / 20)
    x[a : a + outro.size] = bed[a : a + outro.size] + outro
    clips = _snippet_audio(src)
    for name, start, _ in spec.snippets:
        clip = clips[name]
        a = int(start * BUILD_RATE)
        x[a : a + clip.size] += clip / _rms(clip) * bed_rms * 10 ** (6 / 20)
    return x.astype(np.float32)


def build_mixing_series(out_dir: Path, n_per_level: int = 4, seed: int = 15, **plan: Any) -> list:
    """Build (or reuse, when the plan is unchanged) the series (``plan``: see
    :func:`mixing_specs`); times in the plan are those of the written files (the PAL episode's
    divided by its speed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = mixing_specs(n_per_level, seed, **plan)
    plan = json.dumps([asdict(s) for s in specs], sort_keys=True)
    plan_file = out_dir / "plan.json"
    paths = [out_dir / f"{s.name}.{s.fmt}" for s in specs]
    written = [_as_written(s) for s in specs]
    if plan_file.exists() and plan_file.read_text() == plan and all(p.exists() for p in paths):
        return list(zip(paths, written, strict=True))
    src = Sources()
    for i, (path, spec) in enumerate(zip(paths, specs, strict=True)):
        x = render_mix(spec, src, seed * 1000 + i)
        if spec.speed != 1.0:
            x = resample(x, round(BUILD_RATE * spec.speed), BUILD_RATE)
        write_audio(path, x, spec.sample_rate, spec.fmt)
    plan_file.write_text(plan)
    return list(zip(paths, written, strict=True))


def _as_written(spec: MixSpec) -> MixSpec:
    r = spec.speed

    def t(v: float | None) -> float | None:
        return None if v is None else round(v / r, 3)

    out = MixSpec(**asdict(spec))
    out.duration = round(spec.duration / r, 3)
    out.intro_start, out.intro_end = t(spec.intro_start), t(spec.intro_end)
    out.outro_start, out.outro_end = spec.outro_start / r, spec.outro_end / r
    out.snippets = [(s, a / r, b / r) for s, a, b in spec.snippets]
    return out


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
    series = build_mixing_series(DATA_DIR.with_name(DATA_DIR.name + suffix), seed=args.seed)
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
