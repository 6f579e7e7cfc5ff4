"""How framewise scores are computed from long audio: the measurements behind the defaults.

For each candidate (local squeeze-excitation context and head pooling, or clip windows centred on
each frame), three things are measured:

* frame accuracy on the golden ``concat4`` (speech | music | typing | metro, 10 s each): share of
  0.32 s frames whose top class is the part's clip-level top class, and the share of frames where
  a class outside the part's clip-level top 10 has p > 0.5 ("spurious");
* detection quality on the ``dev`` soundscapes (``benchmarks/sed``): event-based F1 with the
  1 s collar and segment-based F1, at one fixed post-processing (threshold 0.2, off 0.1);
* speed: seconds of audio per second of compute, scoring 10 minutes of real audio (2 threads).

Usage: ``python -m benchmarks.scoring_design`` -> results/scoring_design.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED, recording_stream, save_result
from benchmarks.sed.run import evaluate, mapped_columns, run_post
from benchmarks.sed.soundscapes import DEFAULT_OUT, ignored_by_file, load_index
from earmark.audio import load
from earmark.evaluation import load_label_map, load_reference
from earmark.events import PostprocessOptions
from earmark.scoring import ScoringOptions
from earmark.tagger import Tagger, load_model

CANDIDATES = {
    "local se3 pool3": ScoringOptions(se_context=3, pool=3),
    "local se5 pool5": ScoringOptions(se_context=5, pool=5),
    "local se7 pool7": ScoringOptions(se_context=7, pool=7),
    "local se9 pool9": ScoringOptions(se_context=9, pool=9),
    "local se15 pool3": ScoringOptions(se_context=15, pool=3),
    "local se15 pool5": ScoringOptions(se_context=15, pool=5),
    "local se15 pool7": ScoringOptions(se_context=15, pool=7),
    "local se31 pool5": ScoringOptions(se_context=31, pool=5),
    "local se31 pool7": ScoringOptions(se_context=31, pool=7),
    "window 2 s": ScoringOptions(method="window", window=2.0),
    "official 10 s / 1 s": ScoringOptions(method="window", window=10.0, hop=1.0),
}
CONCAT_PARTS = ("speech", "music", "typing", "metro_station-paris__kaiser_best")
POST = PostprocessOptions(threshold=0.2, off_threshold=0.1)


def concat4_accuracy(tagger: Tagger, opts: ScoringOptions) -> dict:
    golden = SHARED / "golden" / "efficientat-mn04"
    wave = np.load(golden / "concat4.npz")["waveform"]
    tops = []
    for part in CONCAT_PARTS:
        with np.load(golden / f"{part}.npz") as data:
            tops.append(list(data["top10_idx"]))
    result = tagger.frame_scores(wave, opts)
    part = np.minimum((result.times + result.hop / 2) // 10, 3).astype(int)
    correct, spurious = [], []
    for i, frame in enumerate(result.scores):
        top10 = tops[part[i]]
        correct.append(int(np.argmax(frame)) == top10[0])
        others = np.delete(frame, top10)
        spurious.append(bool((others > 0.5).any()))
    return {
        "accuracy": round(float(np.mean(correct)), 3),
        "spurious": round(float(np.mean(spurious)), 3),
    }


def speed(tagger: Tagger, opts: ScoringOptions, audio: np.ndarray) -> float:
    t0 = time.perf_counter()
    tagger.frame_scores(audio, opts)
    return round(len(audio) / 32000 / (time.perf_counter() - t0), 1)


def main() -> None:
    torch.set_num_threads(2)
    tagger = load_model()
    root = Path(DEFAULT_OUT)
    index = load_index(root)
    label_map = load_label_map("esc10")
    cols, labels = mapped_columns(tagger, label_map)
    ignored = ignored_by_file(index)
    files = [e["file"] for e in index["soundscapes"] if e["split"] == "dev"]
    refs = [ev for f in files for ev in load_reference(root / Path(f).with_suffix(".tsv"))]
    audio = {f: load(root / f) for f in files}
    ten_minutes = np.concatenate(list(recording_stream(600, 32000, seed=3)))
    rows = {}
    for name, opts in CANDIDATES.items():
        scored = {}
        for f in files:
            r = tagger.frame_scores(audio[f], opts)
            scored[f] = (r.scores, r.hop, r.duration)
        quality = evaluate(run_post(scored, files, cols, labels, POST), refs, ignored, label_map)
        rows[name] = {
            "options": opts.to_dict(),
            **concat4_accuracy(tagger, opts),
            "dev_event_f1_1s": quality["event_f1_1s"],
            "dev_event_f1": quality["event_f1"],
            "dev_segment_f1": quality["segment_f1"],
            "x_realtime_scoring": speed(tagger, opts, ten_minutes),
        }
        print(name, rows[name], flush=True)
    print(save_result("scoring_design", {"post_processing": POST.__dict__, "candidates": rows}))


if __name__ == "__main__":
    main()
