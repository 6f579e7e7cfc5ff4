"""End-to-end speed (decode to events) on a long MP3, against the official EfficientAT approach.

earmark: ``detect``'s own path (chunked decode + soxr HQ, local scoring, post-processing).
Official approach, as the EfficientAT inference code does it: the whole file decoded, then 10 s
windows every 1 s, front end and network per window (batch 1), probabilities per window.
Both run in the same process on the same file with the same thread count.

Usage: ``python benchmarks/speed.py [--minutes 60] [--threads 2]`` -> results/speed.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import long_recording, save_result
from earmark.audio import SAMPLE_RATE, load
from earmark.events import PostprocessOptions, scores_to_events
from earmark.pipeline import events_from_scores, score_file
from earmark.scoring import ScoringOptions
from earmark.tagger import Tagger, load_model

OFFICIAL_WINDOW = 10.0
OFFICIAL_HOP = 1.0


def official_window_scores(tagger: Tagger, audio: np.ndarray) -> np.ndarray:
    """Per-window probabilities: 10 s windows, 1 s hop, front end per window, batch 1."""
    win, hop = int(OFFICIAL_WINDOW * SAMPLE_RATE), int(OFFICIAL_HOP * SAMPLE_RATE)
    starts = range(0, max(len(audio) - win, 0) + 1, hop)
    out = []
    with torch.inference_mode():
        for start in starts:
            mel = tagger.front_end(torch.from_numpy(audio[start : start + win])[None])
            logits, _ = tagger.net(mel)
            out.append(torch.sigmoid(logits[0]).numpy())
    return np.stack(out)


def run_official(tagger: Tagger, path: str, post: PostprocessOptions) -> tuple[float, int]:
    """Seconds for decode + official windows + events; number of events."""
    t0 = time.perf_counter()
    audio = load(path)
    probs = official_window_scores(tagger, audio)
    # window i covers [i, i + 10) s; its score is assigned to the 1 s step at its centre
    pad = int(OFFICIAL_WINDOW / OFFICIAL_HOP / 2)
    framewise = np.concatenate([np.repeat(probs[:1], pad, 0), probs])
    events = scores_to_events(framewise, OFFICIAL_HOP, tagger.labels, post, file=path)
    return time.perf_counter() - t0, len(events)


def run_earmark(
    tagger: Tagger, path: str, post: PostprocessOptions, scoring: ScoringOptions
) -> tuple[float, int]:
    """Seconds for earmark's decode -> scores -> events; number of events."""
    t0 = time.perf_counter()
    scores, _ = score_file(tagger, path, scoring)
    events = events_from_scores(tagger, scores, post, file=path)
    return time.perf_counter() - t0, len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-official", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    path = str(long_recording(args.minutes * 60, "mp3"))
    tagger = load_model()
    post = PostprocessOptions()
    duration = len(load(path)) / SAMPLE_RATE
    result: dict = {"input": path, "audio_seconds": round(duration, 2), "threads": args.threads}

    # earmark decodes in a thread of its own beside the network: with a budget of N threads,
    # the network gets N - 1 (pipeline.default_threads); the official approach gets all N.
    runs = (
        ("earmark_local", ScoringOptions(), max(args.threads - 1, 1)),
        ("earmark_local_all_threads_to_torch", ScoringOptions(), args.threads),
        (
            "earmark_window_2s",
            ScoringOptions(method="window", window=2.0),
            max(args.threads - 1, 1),
        ),
    )
    for name, scoring, torch_threads in runs:
        torch.set_num_threads(torch_threads)
        seconds, n_events = run_earmark(tagger, path, post, scoring)
        result[name] = {
            "seconds": round(seconds, 2),
            "x_realtime": round(duration / seconds, 1),
            "events": n_events,
            "torch_threads": torch_threads,
        }
        print(name, result[name], flush=True)
    torch.set_num_threads(args.threads)
    if not args.skip_official:
        seconds, n_events = run_official(tagger, path, post)
        result["official_10s_1s"] = {
            "seconds": round(seconds, 2),
            "x_realtime": round(duration / seconds, 1),
            "events": n_events,
        }
        print("official", result["official_10s_1s"], flush=True)
        result["speedup_vs_official"] = round(
            result["official_10s_1s"]["seconds"] / result["earmark_local"]["seconds"], 2
        )
    print(save_result("speed", result))


if __name__ == "__main__":
    main()
