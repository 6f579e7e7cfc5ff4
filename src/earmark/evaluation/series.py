"""TV-series-like episodes built from real recordings, to measure ``earmark repeats``.

Each episode is dialogue (real speech prompts) over real ambient recordings, cut into short
re-timed pieces so that no two episodes share more than a few seconds by chance, with the same
music excerpt as its intro and another as its end credits; the variations (cold opens, gains,
sample rates, formats, speech over the theme, a shortened intro, an episode without one, a
recap) and the ground truth come from a seeded plan. ``benchmarks/repeats.py`` and the tests
build their series with :func:`build_series`; :mod:`.series_mixing` builds the harder one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from earmark.audio import load
from earmark.outputs import atomic_path
from earmark.waveform import resample

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
    """Real recordings under ``shared`` (the folder holding ``audio/``) loaded once at
    :data:`BUILD_RATE`."""

    def __init__(self, shared: Path) -> None:
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
        return fade(x[int(31.0 * BUILD_RATE) : int(63.0 * BUILD_RATE)].copy())  # 32 s theme

    def outro(self) -> np.ndarray:
        x = self.get(self.music / OUTRO_TRACK)
        return fade(x[int(5.0 * BUILD_RATE) : int(27.0 * BUILD_RATE)].copy())  # 22 s credits


def fade(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    """``x`` faded in and out over ``seconds`` (in place; returned)."""
    n = min(int(seconds * BUILD_RATE), x.size // 2)
    ramp = np.linspace(0, 1, n, dtype=np.float32)
    x[:n] *= ramp
    x[x.size - n :] *= ramp[::-1]
    return x


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (never 0)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch moves too): decorrelates re-used material."""
    return resample(x, round(BUILD_RATE * factor), BUILD_RATE)


def pieces(
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
        piece = stretch(x[start : start + raw], factor)
        take = min(n - pos, want, piece.size)
        seg = fade(piece[:take].copy(), 0.02)
        out[pos : pos + take] += seg / rms(seg)
        pos += take
    return out


def _body(src: Sources, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech over a two-layer background bed, all cut into short re-timed pieces."""
    bed = pieces(src, src.background_files, seconds, rng, (2.0, 4.0)) * 0.02
    bed += pieces(src, src.background_files, seconds, rng, (2.0, 4.0)) * 0.01
    speech = pieces(src, src.speech_files, seconds, rng, (0.8, 2.5)) * 0.1
    gaps = rng.uniform(size=speech.size // BUILD_RATE + 1) < 0.25  # pauses in the dialogue
    speech *= np.repeat(~gaps, BUILD_RATE)[: speech.size]
    return bed + speech


def _speech_burst(src: Sources, seconds: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(0, np.float32)
    while out.size < seconds * BUILD_RATE:
        clip = src.get(src.speech_files[int(rng.integers(len(src.speech_files)))])
        clip = stretch(clip, float(rng.uniform(0.85, 1.15)))
        out = np.concatenate([out, clip / rms(clip) * 0.1, np.zeros(800, np.float32)])
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
    specs: list[EpisodeSpec] = []
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
        x[: clip.size] = fade(clip.copy())
    music_level = 0.08 * 10 ** (rng.uniform(-4, 4) / 20)
    if spec.intro_start is not None and spec.intro_end is not None:
        a, b = int(spec.intro_start * BUILD_RATE), int(spec.intro_end * BUILD_RATE)
        theme = src.intro()
        theme = fade(theme[: b - a].copy())
        b = a + theme.size
        x[a:b] = x[a:b] * 0.05 + theme / rms(theme) * music_level
        if spec.speech_over:
            burst = _speech_burst(src, 4.0, rng) * 1.2
            at = a if spec.speech_over == "intro_start" else b - burst.size
            x[at : at + burst.size] += burst
        # the body must not start with speech that continues the burst: nothing to do
    if spec.outro_start is not None and spec.outro_end is not None:
        a, b = int(spec.outro_start * BUILD_RATE), int(spec.outro_end * BUILD_RATE)
        theme = src.outro()[: b - a]
        b = a + theme.size
        x[a:b] = x[a:b] * 0.05 + theme / rms(theme) * music_level
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
        stream = cast(Any, container.add_stream(codec, rate=sample_rate, layout="mono"))
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
    shared: Path,
    seed: int = 0,
    body_seconds: tuple[float, float] = (240, 420),
    recap_at: int | None = None,
) -> list[tuple[Path, EpisodeSpec]]:
    """Build (or reuse, when the plan is unchanged) a series of ``n`` episodes in ``out_dir``
    from the recordings under ``shared``."""
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
    src = Sources(shared)
    previous = None
    for i, (path, spec) in enumerate(zip(paths, specs, strict=False)):
        x = render_episode(spec, src, seed * 1000 + i, previous)
        write_audio(path, x, spec.sample_rate, spec.fmt)
        previous = x / 10 ** (spec.gain_db / 20)
    plan_file.write_text(plan)
    return list(zip(paths, specs, strict=False))
