"""Helpers shared by the benchmark scripts: paths, long test recordings, JSON results."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from earmark.audio import load
from earmark.outputs import atomic_path, write_json

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
SHARED = Path(os.environ.get("EARMARK_SHARED", BENCH_DIR.parent.parent / "shared")).resolve()


def source_recordings() -> list[Path]:
    """Real recordings (ambient, music, speech, sound events) used to build long inputs."""
    audio = SHARED / "audio"
    files = sorted((audio / "backgrounds" / "sounds").rglob("*.mp3"))
    files += sorted((audio / "music").rglob("*.wav"))
    files += sorted((audio / "speech").rglob("*.wav"))[:40]
    files += sorted((audio / "esc10").rglob("*.ogg"))[::8]
    if not files:
        raise SystemExit(f"no recordings under {audio}: set EARMARK_SHARED")
    return files


def recording_stream(seconds: float, sample_rate: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Real recordings in a seeded random order, cut and concatenated to ``seconds``."""
    rng = np.random.default_rng(seed)
    files = source_recordings()
    cache: dict[Path, np.ndarray] = {}
    remaining = int(seconds * sample_rate)
    while remaining > 0:
        path = files[int(rng.integers(len(files)))]
        if path not in cache:
            cache[path] = load(path, sample_rate)
        clip = cache[path]
        take = min(remaining, len(clip), int(rng.uniform(5, 90) * sample_rate))
        start = int(rng.integers(0, max(len(clip) - take, 0) + 1))
        gain = 10 ** (rng.uniform(-12, 0) / 20)
        yield (clip[start : start + take] * gain).astype(np.float32)
        remaining -= take


def long_recording(seconds: float, fmt: str = "mp3", seed: int = 0) -> Path:
    """A long real-audio file (44.1 kHz stereo MP3 at 128 kbps, or FLAC), built once and cached."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"long_{int(seconds)}s_seed{seed}.{fmt}"
    if path.exists():
        return path
    sample_rate = 44100
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format=fmt)
        codec = "libmp3lame" if fmt == "mp3" else "flac"
        stream = container.add_stream(codec, rate=sample_rate, layout="stereo")
        if fmt == "mp3":
            stream.bit_rate = 128_000
        pts = 0
        for piece in recording_stream(seconds, sample_rate, seed):
            for i in range(0, len(piece), sample_rate):
                mono = piece[i : i + sample_rate]
                stereo = np.stack([mono, mono * 0.8]).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
                frame.sample_rate = sample_rate
                frame.pts = pts
                pts += stereo.shape[1]
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        container.close()
    return path


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def save_result(name: str, result: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    write_json(path, {"machine": machine(), **result})
    return path


def peak_rss_of(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``command`` in a fresh Python process; return (peak RSS in MB, wall seconds)."""
    probe = (
        "import resource, runpy, sys, time; t=time.perf_counter(); sys.argv=sys.argv[1:];"
        "code=0\n"
        "try:\n runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n code=e.code or 0\n"
        "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " time.perf_counter()-t, code, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB"):
            _, kb, seconds, _code = line.split()
            return int(kb) / 1024, float(seconds)
    raise RuntimeError(f"benchmark command failed: {proc.stderr[-2000:]}")
