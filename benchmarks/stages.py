"""Where the time of ``earmark detect`` goes: stage by stage, end to end, and on many short files.

Three measurements, each written under ``--label`` (e.g. ``before`` / ``after``) in
``results/stages.json`` so that two versions of the code sit side by side (run the "before"
with ``PYTHONPATH=<old checkout>/src``: the script only uses names both versions have):

* **stages**, on the 60-minute MP3 (44.1 kHz stereo, 128 kbps, real recordings), each stage
  alone and in order, one thread: decode (FFmpeg + soxr to 32 kHz mono), band envelope, front
  end, network (front end and network together when the code does not time them apart),
  events, boundary refinement, one event per sound, outputs (events in every format and the
  compressed scores); seconds and x real time each;
* **end to end**: ``earmark detect FILE -o DIR --quiet`` with the defaults (2 cores: decoding
  beside a 1-thread network) in a fresh process on the 60-minute and the 3-hour MP3: wall
  time from the command's start (imports included) and the file's own processing time from
  the manifest (decode to written events), x real time, peak RSS; and in the same run the
  official EfficientAT computation (10 s windows every 1 s, batch 1, 2 threads) on the
  60-minute file, for the ratio;
* **BLAS threads**: the 60-minute file in process with numpy's BLAS left at its own thread
  count, then limited to one while scoring (what ``detect`` does);
* **short files**: a folder of ``--clips`` 10 s WAV clips (44.1 kHz stereo, cut from the same
  kind of recordings) through one ``earmark detect`` with the defaults: files per second and x
  real time with and without start-up (start-up: a one-clip run's wall time less its file's
  processing time).

    python -m benchmarks.stages [--label after] [--minutes 60] [--long-minutes 180]
        [--clips 1000] [--skip-official] [--skip-long] [--skip-clips] [--skip-stages]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from benchmarks.common import DATA_DIR, RESULTS_DIR, long_recording, recording_stream, save_result
from earmark.outputs import atomic_path

CLIP_SECONDS = 10.0


def _x(audio_seconds: float, seconds: float) -> float:
    return round(audio_seconds / max(seconds, 1e-9), 1)


def stage_table(path: Path) -> dict:
    """Every stage of one file alone, in order, on one thread."""
    import torch

    from earmark.audio import SAMPLE_RATE, AudioReader
    from earmark.boundaries import BandEnvelope, RefineOptions, refine_events
    from earmark.events import PostprocessOptions
    from earmark.outputs import write_events, write_scores
    from earmark.pipeline import CHUNK_SECONDS, events_from_scores, one_event_per_sound
    from earmark.tagger import load_model

    torch.set_num_threads(1)
    tagger = load_model(threads=1)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    with AudioReader(path, SAMPLE_RATE, CHUNK_SECONDS) as reader:
        chunks = list(reader)
    seconds["decode"] = time.perf_counter() - started
    audio_seconds = sum(len(c) for c in chunks) / SAMPLE_RATE

    started = time.perf_counter()
    envelope = BandEnvelope()
    for chunk in chunks:
        envelope.update(chunk)
    envelope.finish()
    seconds["envelope"] = time.perf_counter() - started

    scorer = tagger.scorer()
    started = time.perf_counter()
    scores = scorer.score(iter(chunks), expected_seconds=audio_seconds)
    total = time.perf_counter() - started
    timings = getattr(scorer, "timings", None)  # older versions do not time them apart
    if timings:
        seconds["front_end"], seconds["network"] = timings["front_end"], timings["network"]
    else:
        seconds["front_end+network"] = total
    del chunks

    post = PostprocessOptions()
    started = time.perf_counter()
    events = events_from_scores(tagger, scores, post, file=str(path))
    seconds["events"] = time.perf_counter() - started
    started = time.perf_counter()
    events = refine_events(events, envelope, RefineOptions(), scores.duration)
    seconds["refine"] = time.perf_counter() - started
    started = time.perf_counter()
    events = one_event_per_sound(tagger, events, post)
    seconds["join"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_events(tmp, "x", events, ("csv", "json", "tsv", "audacity"), meta={"file": "x"})
        write_scores(Path(tmp) / "x.scores.npz", scores.scores, scores.hop, tagger.labels)
        seconds["outputs"] = time.perf_counter() - started
    return {
        "audio_seconds": round(audio_seconds, 2),
        "events": len(events),
        "stages": {
            k: {"seconds": round(v, 3), "x_realtime": _x(audio_seconds, v)}
            for k, v in seconds.items()
        },
        "sum_seconds": round(sum(seconds.values()), 3),
    }


PEAK_PROBE = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    " for line in open('/proc/self/status'):\n"
    "  if line.startswith('VmHWM:'): print('PEAK_RSS_KB', line.split()[1], file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['earmark', *sys.argv[1:]]\n"
    "runpy.run_module('earmark', run_name='__main__', alter_sys=True)\n"
)
"""Runs the CLI and prints its peak RSS at exit: VmHWM, the high-water mark of the process's
own memory (``getrusage`` would include the memory of this benchmark, which it was forked from)."""


def blas_effect(path: Path) -> dict | None:
    """The file's processing time in process, with numpy's BLAS left at its own thread count
    and limited to one while scoring (what ``detect`` does): the cost of idle BLAS threads
    spinning beside the network and the decoder. ``None`` for code without the limit."""
    import contextlib

    import torch

    from earmark import pipeline
    from earmark.tagger import load_model

    if not hasattr(pipeline, "single_threaded_blas"):
        return None
    torch.set_num_threads(1)
    tagger = load_model(threads=1)
    tagger.scorer()  # the back end's runner is built once, outside the timings
    limited = pipeline.single_threaded_blas
    out = {}
    try:
        for name, limit in (("blas_threads_left", contextlib.nullcontext), ("one", limited)):
            pipeline.single_threaded_blas = limit
            started = time.perf_counter()
            result = pipeline.process_file(tagger, path, None, pipeline.DetectOptions())
            out[name] = {
                "seconds": round(time.perf_counter() - started, 2),
                "stage_seconds": {k: round(v, 2) for k, v in result.stages.items()},
            }
    finally:
        pipeline.single_threaded_blas = limited
    return out


def run_cli(inputs: list[Path], out: Path) -> dict:
    """``earmark detect`` in a fresh process: wall time, peak RSS and what the manifest says."""
    command = [sys.executable, "-c", PEAK_PROBE, "detect", *map(str, inputs), "-o", str(out)]
    started = time.perf_counter()
    proc = subprocess.run([*command, "--quiet"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"earmark detect failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peaks = [int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("PEAK_RSS_KB")]
    files = json.loads((out / "manifest.json").read_text())["files"]
    audio = sum(f["duration"] for f in files)
    processing = sum(f["processing_seconds"] for f in files)
    return {
        "files": len(files),
        "failed": sum(f["status"] == "failed" for f in files),
        "audio_seconds": round(audio, 2),
        "wall_seconds": round(wall, 2),
        "x_realtime": _x(audio, wall),
        "processing_seconds": round(processing, 2),
        "x_realtime_processing": _x(audio, processing),
        "peak_rss_mb": round(peaks[-1] / 1024, 1) if peaks else None,
        "stage_seconds": files[0].get("stage_seconds") if len(files) == 1 else None,
    }


def official(path: Path) -> dict:
    """The official 10 s / 1 s windowed computation, 2 threads, decode to events."""
    import torch

    from benchmarks.speed import run_official
    from earmark.audio import load
    from earmark.events import PostprocessOptions
    from earmark.tagger import load_model

    torch.set_num_threads(2)
    tagger = load_model(threads=2)
    seconds, n_events = run_official(tagger, str(path), PostprocessOptions())
    duration = len(load(path)) / 32000
    return {"seconds": round(seconds, 2), "x_realtime": _x(duration, seconds), "events": n_events}


def short_clips(n: int, seed: int = 1) -> Path:
    """``n`` 10 s WAV clips (44.1 kHz stereo, 16 bit) of real recordings, built once."""
    folder = DATA_DIR / f"clips_{n}x{int(CLIP_SECONDS)}s_seed{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rate = 44100
    stream = recording_stream(n * CLIP_SECONDS, rate, seed)
    pending = np.zeros(0, dtype=np.float32)
    size = int(CLIP_SECONDS * rate)
    for i in range(n):
        while len(pending) < size:
            pending = np.concatenate([pending, next(stream)])
        mono, pending = pending[:size], pending[size:]
        pcm = (np.clip(np.stack([mono, 0.8 * mono]), -1, 1) * 32767).astype(np.int16)
        with atomic_path(folder / f"clip_{i:04d}.wav") as tmp:
            container = av.open(str(tmp), mode="w", format="wav")
            out = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
            # packed s16: one plane, channels interleaved
            frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = rate
            for packet in out.encode(frame):
                container.mux(packet)
            for packet in out.encode(None):
                container.mux(packet)
            container.close()
    done.touch()
    return folder


def clips_run(n: int, tmp: Path) -> dict:
    folder = short_clips(n)
    one = run_cli([sorted(folder.glob("*.wav"))[0]], tmp / "one")
    startup = one["wall_seconds"] - one["processing_seconds"]
    run = run_cli([folder], tmp / "all")
    excluded = run["wall_seconds"] - startup
    return {
        **run,
        "startup_seconds": round(startup, 2),
        "files_per_second": round(run["files"] / run["wall_seconds"], 1),
        "files_per_second_without_startup": round(run["files"] / excluded, 1),
        "x_realtime_without_startup": _x(run["audio_seconds"], excluded),
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="key of this run in the results")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--long-minutes", type=float, default=180.0)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--skip-clips", action="store_true")
    parser.add_argument("--skip-stages", action="store_true")
    args = parser.parse_args()

    import earmark

    path = long_recording(args.minutes * 60, "mp3")
    row: dict = {
        "code": str(Path(earmark.__file__).resolve().parent),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        row["end_to_end"] = {f"{args.minutes:g} min": run_cli([path], tmp / "long")}
        print("end to end", row["end_to_end"], flush=True)
        if not args.skip_official:
            row["official_10s_1s"] = official(path)
            ours = row["end_to_end"][f"{args.minutes:g} min"]
            row["ratio_to_official"] = {
                "wall": round(row["official_10s_1s"]["seconds"] / ours["wall_seconds"], 2),
                "processing": round(
                    row["official_10s_1s"]["seconds"] / ours["processing_seconds"], 2
                ),
            }
            print("official", row["official_10s_1s"], row["ratio_to_official"], flush=True)
        if not args.skip_stages:
            row["stages"] = stage_table(path)
            print("stages", row["stages"], flush=True)
            row["blas_threads"] = blas_effect(path)
            print("BLAS threads", row["blas_threads"], flush=True)
        if not args.skip_long:
            long_path = long_recording(args.long_minutes * 60, "mp3")
            row["end_to_end"][f"{args.long_minutes:g} min"] = run_cli([long_path], tmp / "3h")
            print("end to end", row["end_to_end"], flush=True)
        if not args.skip_clips:
            row["short_clips"] = clips_run(args.clips, tmp)
            print("short clips", row["short_clips"], flush=True)
    row["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    previous = RESULTS_DIR / "stages.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("machine", None)
    # a partial run (--skip-...) updates only what it measured
    merged = dict(results.get(args.label, {}))
    for key, value in row.items():
        before = merged.get(key)
        both = isinstance(value, dict) and isinstance(before, dict)
        merged[key] = {**before, **value} if both else value
    results[args.label] = merged
    save_result("stages", results)
    return results


if __name__ == "__main__":
    main()
