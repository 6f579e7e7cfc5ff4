"""``earmark listen``: latency, agreement with ``detect``, capacity and memory over a long stream.

Four measurements, written to ``benchmarks/results/listen.json``:

* ``lookahead``: the test soundscapes of the SED benchmark (real ESC-10 and scaper sounds over
  real backgrounds), each pushed through :class:`earmark.listen.detector.LiveDetector` in
  0.1 s chunks with look-aheads from 0.32 s to 7.68 s. Per look-ahead: how many of
  ``detect``'s events the live events reproduce (same class, onset and offset within 0.5 s)
  and how many live events ``detect`` has, and the *stream* latency of every event (audio
  heard when it was emitted minus its offset: what the algorithm waits for, without compute
  or transport);
* ``realtime``: FFmpeg serves a soundscape at real-time pace over HTTP (FLAC in Ogg); the
  listener (in this process) emits its events; wall-clock latency from each event's offset
  (its audio's arrival) to its emission, p50 and p95, at the default look-ahead and exact;
* ``capacity``: N sources at once, each a soundscape replayed at real-time pace, for
  ``--capacity-seconds``; a source keeps up when its lag (processing behind arrival) stays
  under 1 s; the largest N where all keep up;
* ``memory``: one source fed ``--hours`` hours of real recordings as fast as it goes (a long
  stream in minutes), resident memory sampled every simulated hour.

    python -m benchmarks.listen [--only lookahead|realtime|capacity|memory] [--hours 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, machine, recording_stream, save_result
from benchmarks.sed.soundscapes import DEFAULT_OUT, built_index

LOOKAHEADS = (1, 3, 6, 12, 24)
CHUNK = 3200  # 0.1 s


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _test_files() -> list[Path]:
    index = built_index()
    return [DEFAULT_OUT / e["file"] for e in index["soundscapes"] if e["split"] == "test"]


def _same(a, b) -> bool:
    return a.label == b.label and abs(a.onset - b.onset) <= 0.5 and abs(a.offset - b.offset) <= 0.5


def lookahead_table(tagger) -> dict:
    """Agreement with detect and stream latency per look-ahead (see the module docstring)."""
    from earmark.audio import load
    from earmark.listen.detector import LiveDetector
    from earmark.listen.options import LiveOptions
    from earmark.pipeline import DetectOptions, process_file

    files = _test_files()
    audio = {f: load(f) for f in files}
    expected = {f: process_file(tagger, f, None, DetectOptions()).events for f in files}
    rows = {}
    for frames in LOOKAHEADS:
        latencies, matched_d, matched_l, n_live = [], 0, 0, 0
        started = time.perf_counter()
        for f in files:
            x = audio[f]
            live = LiveDetector(tagger, DetectOptions(), LiveOptions(lookahead_frames=frames))
            events = []
            for i in range(0, len(x), CHUNK):
                for t in live.push(x[i : i + CHUNK]).ended:
                    events.append(t.event)
                    latencies.append(live.seconds - t.event.offset)
            events += [t.event for t in live.finish().ended]  # at the end: no latency to count
            n_live += len(events)
            matched_d += sum(any(_same(e, g) for g in events) for e in expected[f])
            matched_l += sum(any(_same(g, e) for e in expected[f]) for g in events)
        n_detect = sum(len(v) for v in expected.values())
        lat = np.array(latencies)
        rows[f"{frames * 0.32:.2f}"] = {
            "lookahead_frames": frames,
            "detect_events": n_detect,
            "live_events": n_live,
            "detect_events_reproduced": round(matched_d / max(n_detect, 1), 4),
            "live_events_in_detect": round(matched_l / max(n_live, 1), 4),
            "stream_latency_p50_s": round(float(np.percentile(lat, 50)), 3),
            "stream_latency_p95_s": round(float(np.percentile(lat, 95)), 3),
            "x_realtime_1_thread": round(
                sum(len(a) for a in audio.values()) / 32000 / (time.perf_counter() - started), 1
            ),
        }
        print("lookahead", rows[f"{frames * 0.32:.2f}"])
    return {"files": len(files), "seconds": round(sum(len(a) for a in audio.values()) / 32000, 1),
            "rows": rows}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collect:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def _loop_file(files: list[Path], seconds: float, out: Path) -> Path:
    """The soundscapes one after another, ``seconds`` long, as a WAV file."""
    import soundfile as sf

    from earmark.audio import load

    parts, total = [], 0
    while total < seconds * 32000:
        for f in files:
            x = load(f)
            parts.append(x)
            total += len(x)
    sf.write(out, np.concatenate(parts)[: int(seconds * 32000)], 32000, subtype="FLOAT")
    return out


def realtime_latency(tagger, seconds: float, work: Path) -> dict:
    """Wall-clock latency of a stream FFmpeg serves at real-time pace."""
    from earmark.listen.listener import Listener
    from earmark.listen.options import LiveOptions
    from earmark.listen.sources import parse_source
    from earmark.pipeline import DetectOptions
    from earmark.scoring import DEFAULT_MARGIN_FRAMES

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is needed (tools/system-deps.sh installs it)")
    scene = _loop_file(_test_files()[:12], seconds, work / "stream.wav")
    out = {}
    settings = (("fastest", 1), ("default", LiveOptions().lookahead_frames),
                ("exact", DEFAULT_MARGIN_FRAMES))  # fmt: skip
    for name, frames in settings:
        port = _free_port()
        server = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(scene), "-c:a", "flac",
             "-f", "ogg", "-listen", "1", f"http://127.0.0.1:{port}/live.ogg"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        sink = _Collect()
        source = parse_source(f"cam=http://127.0.0.1:{port}/live.ogg")
        listener = Listener(
            tagger, [source], DetectOptions(), LiveOptions(lookahead_frames=frames), sink
        )
        listener.start()
        server.wait(seconds + 60)
        time.sleep(2)
        listener.stop()
        listener.wait(30)
        status = listener.status["cam"]
        lat = np.array(status.latencies)
        out[name] = {
            "lookahead_s": round(frames * 0.32, 2),
            "events": len(sink.events),
            "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
            "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
            "latency_max_s": round(float(lat.max()), 3),
            "lag_at_end_s": round(status.lag_seconds, 3),
        }
        print("realtime", name, out[name])
    return {"stream_seconds": seconds, **out}


def capacity(tagger, seconds: float, work: Path, counts: tuple[int, ...]) -> dict:
    """How many real-time sources one machine keeps up with (lag under 1 s)."""
    from earmark.listen.listener import Listener
    from earmark.listen.options import LiveOptions
    from earmark.listen.sources import parse_source
    from earmark.pipeline import DetectOptions

    files = _test_files()
    scenes = [
        _loop_file(files[k:] + files[:k], seconds, work / f"cap{k}.wav") for k in range(max(counts))
    ]
    rows, best = {}, 0
    for n in counts:
        sources = [parse_source(f"s{k}={scenes[k]}") for k in range(n)]
        listener = Listener(
            tagger, sources, DetectOptions(), LiveOptions(), _Collect(), realtime=True
        )
        lags: list[float] = []
        listener.start()
        end = time.monotonic() + seconds + 30
        while not listener.wait(2.0) and time.monotonic() < end:
            lags.append(max(s.lag_seconds for s in listener.status.values()))
        listener.stop()
        listener.wait(30)
        heard = min(s.audio_seconds for s in listener.status.values())
        keeps_up = bool(lags) and max(lags[len(lags) // 2 :]) < 1.0 and heard >= seconds - 1
        rows[str(n)] = {"max_lag_s": round(max(lags) if lags else float("nan"), 3),
                        "lag_last_half_s": round(max(lags[len(lags) // 2 :], default=0.0), 3),
                        "keeps_up": keeps_up, "load_average": os.getloadavg()[0]}  # fmt: skip
        print("capacity", n, rows[str(n)])
        if not keeps_up:
            break
        best = n
    return {"seconds_per_trial": seconds, "rows": rows, "most_sources_kept_up": best}


def memory(tagger, hours: float, block_frames: int, checkpoint=None) -> dict:
    """Resident memory while one source hears ``hours`` of real recordings, fed at full speed
    (in blocks of ``block_frames``: what a block costs does not change what is kept, and larger
    blocks make a day of audio take minutes)."""
    from earmark.listen.detector import LiveDetector
    from earmark.listen.options import LiveOptions
    from earmark.pipeline import DetectOptions

    live = LiveDetector(tagger, DetectOptions(), LiveOptions(block_frames=block_frames))
    samples = []
    started = time.perf_counter()
    events = 0
    hour = 3600 * 32000
    next_mark, fed = hour, 0
    pieces = list(recording_stream(3600.0, 32000, seed=3))  # one real hour, looped
    while fed < hours * hour:
        for piece in pieces:
            for i in range(0, len(piece), 32000):
                chunk = piece[i : i + 32000]
                events += len(live.push(chunk).ended)
                fed += len(chunk)
                if fed >= next_mark:
                    samples.append(
                        {"hours": round(fed / hour, 2), "rss_mb": round(_rss_mb(), 1),
                         "window_frames": live.tracker.window_frames, "events": events}
                    )  # fmt: skip
                    print("memory", samples[-1])
                    if checkpoint is not None:  # a run cut short still leaves its figures
                        checkpoint({"hours": hours, "block_frames": block_frames,
                                    "complete": False, "samples": samples})  # fmt: skip
                    next_mark += hour
            if fed >= hours * hour:
                break
    events += len(live.finish().ended)
    seconds = time.perf_counter() - started
    return {"hours": hours, "block_frames": block_frames, "complete": True,
            "x_realtime": round(fed / 32000 / seconds, 1), "events": events,
            "samples": samples}  # fmt: skip


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lookahead", "realtime", "capacity", "memory"))
    parser.add_argument("--hours", type=float, default=24.0, help="memory: stream length")
    parser.add_argument("--block", type=int, default=16, help="memory: frames per block")
    parser.add_argument("--stream-seconds", type=float, default=180.0, help="realtime: length")
    parser.add_argument("--capacity-seconds", type=float, default=60.0)
    parser.add_argument("--counts", default="1,2,4,8,12,16,24,32")
    args = parser.parse_args()
    import tempfile

    from earmark.tagger import load_model

    path = RESULTS_DIR / "listen.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    tagger = load_model()
    parts = [args.only] if args.only else ["lookahead", "realtime", "capacity", "memory"]
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            load = [round(v, 2) for v in os.getloadavg()]
            if part == "lookahead":
                value = lookahead_table(load_model(threads=1))
            elif part == "realtime":
                value = realtime_latency(tagger, args.stream_seconds, Path(tmp))
            elif part == "capacity":
                counts = tuple(int(c) for c in args.counts.split(","))
                value = capacity(tagger, args.capacity_seconds, Path(tmp), counts)
            else:

                def checkpoint(partial: dict, load: list = load) -> None:
                    results["memory"] = {**partial, "load_average_at_start": load}
                    save_result("listen", results)

                value = memory(tagger, args.hours, args.block, checkpoint)
            results[part] = {**value, "load_average_at_start": load}
            save_result("listen", results)
    return results


if __name__ == "__main__":
    main()
