"""The mixing series of ``earmark repeats``' benchmark: the theme shares the air (issue 15).

A theme 0-12 dB over a different, undimmed ambient bed in every episode, dialogue over part of
it, one episode played 4.3 % faster (a PAL transfer), one without intro, short outro stings and
recurring few-second snippets (a repeated line, an alarm, a siren) that are no intro or outro;
see ``benchmarks/repeats_mixing.py`` for what is measured on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earmark.evaluation.series import (
    BUILD_RATE,
    Sources,
    fade,
    pieces,
    rms,
    stretch,
    write_audio,
)
from earmark.waveform import resample

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
    shortened: bool = False  # (read by the benchmark's scoring)


def snippet_audio(src: Sources) -> dict[str, np.ndarray]:
    """The recurring snippets: a 3 s repeated line, a 4 s alarm and a 6 s siren sting."""
    audio = src.music.parent.parent
    line = src.get(audio / "speech" / "asterisk" / LINE)[: int(3.0 * BUILD_RATE)]
    alarm = src.get(audio / "backgrounds" / "sounds" / "alarm.mp3")[: int(4.0 * BUILD_RATE)]
    siren = src.get(audio / "backgrounds" / "sounds" / "urban" / "ambulance-siren.mp3")
    siren = siren[int(8.0 * BUILD_RATE) : int(14.0 * BUILD_RATE)]
    return {"line": fade(line.copy()), "alarm": fade(alarm.copy()), "siren": fade(siren.copy())}


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


def bed_audio(src: Sources, spec: MixSpec) -> np.ndarray:
    """The episode's own ambient recording, looped (with short fades) to the episode length."""
    x = src.get(src.background_files[0].parent.parent / spec.bed)
    if spec.bed_speed != 1.0:
        x = stretch(x, spec.bed_speed)
    n = int(spec.duration * BUILD_RATE)
    reps = [fade(x.copy(), 0.3)] * (n // x.size + 1)
    return np.concatenate(reps)[:n] / rms(x) * 0.03


def render_mix(spec: MixSpec, src: Sources, seed: int) -> np.ndarray:
    """The audio of one episode at BUILD_RATE, before the speed change."""
    rng = np.random.default_rng(seed)
    n = int(spec.duration * BUILD_RATE)
    bed = bed_audio(src, spec)
    speech = pieces(src, src.speech_files, spec.duration, rng, (0.8, 2.5))[:n] * 0.06
    gaps = rng.uniform(size=speech.size // BUILD_RATE + 1) < 0.3
    speech *= np.repeat(~gaps, BUILD_RATE)[: speech.size]
    x = bed + speech
    bed_rms = rms(bed)
    level = spec.snr_db if spec.snr_db is not None else 6.0
    if spec.intro_start is not None and spec.intro_end is not None:
        a = int(spec.intro_start * BUILD_RATE)
        track = src.get(src.music / THEME[0])
        theme = track[int(THEME[1] * BUILD_RATE) : int((THEME[1] + THEME[2]) * BUILD_RATE)]
        theme = fade(theme.copy()) / rms(theme) * bed_rms * 10 ** (level / 20)
        b = a + theme.size
        x[a:b] = bed[a:b] + theme  # the bed goes on; no dialogue under the theme but ...
        if spec.speech_over:
            # ... in half the episodes dialogue runs over 6 s of it, at the theme's level
            where = {"start": 0.0, "middle": 7.0, "end": THEME[2] - 6.0}[spec.speech_over]
            at = a + int(where * BUILD_RATE)
            words = pieces(src, src.speech_files, 6.0, rng, (0.8, 2.5))
            x[at : at + words.size] += words / rms(words) * rms(theme)
    a = int(spec.outro_start * BUILD_RATE)
    track = src.get(src.music / OUTRO[0])
    outro = track[int(OUTRO[1] * BUILD_RATE) : int((OUTRO[1] + OUTRO[2]) * BUILD_RATE)]
    outro = fade(outro.copy()) / rms(outro) * bed_rms * 10 ** (level / 20)
    x[a : a + outro.size] = bed[a : a + outro.size] + outro
    clips = snippet_audio(src)
    for name, start, _ in spec.snippets:
        clip = clips[name]
        a = int(start * BUILD_RATE)
        x[a : a + clip.size] += clip / rms(clip) * bed_rms * 10 ** (6 / 20)
    return x.astype(np.float32)


def build_mixing_series(
    out_dir: Path, shared: Path, n_per_level: int = 4, seed: int = 15, **plan: Any
) -> list:
    """Build (or reuse, when the plan is unchanged) the series (``plan``: see
    :func:`mixing_specs`); times in the plan are those of the written files (the PAL episode's
    divided by its speed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = mixing_specs(n_per_level, seed, **plan)
    text = json.dumps([asdict(s) for s in specs], sort_keys=True)
    plan_file = out_dir / "plan.json"
    paths = [out_dir / f"{s.name}.{s.fmt}" for s in specs]
    written = [as_written(s) for s in specs]
    if plan_file.exists() and plan_file.read_text() == text and all(p.exists() for p in paths):
        return list(zip(paths, written, strict=True))
    src = Sources(shared)
    for i, (path, spec) in enumerate(zip(paths, specs, strict=True)):
        x = render_mix(spec, src, seed * 1000 + i)
        if spec.speed != 1.0:
            x = resample(x, round(BUILD_RATE * spec.speed), BUILD_RATE)
        write_audio(path, x, spec.sample_rate, spec.fmt)
    plan_file.write_text(text)
    return list(zip(paths, written, strict=True))


def as_written(spec: MixSpec) -> MixSpec:
    """The plan's times in the written file (divided by the episode's speed)."""
    r = spec.speed

    def t(v: float | None) -> float | None:
        return None if v is None else round(v / r, 3)

    out = MixSpec(**asdict(spec))
    out.duration = round(spec.duration / r, 3)
    out.intro_start, out.intro_end = t(spec.intro_start), t(spec.intro_end)
    out.outro_start, out.outro_end = spec.outro_start / r, spec.outro_end / r
    out.snippets = [(s, a / r, b / r) for s, a, b in spec.snippets]
    return out
