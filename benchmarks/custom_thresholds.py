"""Detection thresholds of custom classes: calibrated per class against one threshold for all.

Trains a head on ESC-10 folds 1-4 with ``--negatives`` and five background recordings (wind,
light rain, traffic, keyboard, washing machine), which also calibrates its per-class thresholds
on out-of-fold clips mixed over them (:mod:`earmark.custom.calibration`). Then mixes 12 one-minute
soundscapes of fold-5 clips (6-8 events, 0-15 dB SNR, no overlap) over six *other* background
recordings and scores them once; events are extracted with

* the AudioSet default threshold (0.15), which a custom head would get without calibration,
* 0.5 for every class (the natural cut of sigmoid outputs; earmark's fallback),
* 0.3 and 0.7 for every class,
* the calibrated per-class thresholds (earmark's default for custom classes),

and scored with event-based precision, recall and F1 (onsets within 0.5 s, offsets not
evaluated; score-based boundaries). Writes ``benchmarks/results/custom_thresholds.json``.

    python -m benchmarks.custom_thresholds
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, SHARED
from earmark.outputs import write_json

TRAIN_BACKGROUNDS = (
    "nature/wind.mp3",
    "rain/light-rain.mp3",
    "urban/traffic.mp3",
    "things/keyboard.mp3",
    "things/washing-machine.mp3",
)
TEST_BACKGROUNDS = (
    "places/cafe.mp3",
    "places/office.mp3",
    "urban/busy-street.mp3",
    "places/subway-station.mp3",
    "nature/river.mp3",
    "things/clock.mp3",
)
N_SOUNDSCAPES = 12
GLOBAL_THRESHOLDS = (0.15, 0.3, 0.5, 0.7)


def main() -> dict:
    """Run the benchmark and write its JSON."""
    from earmark.custom.datasets import load_dataset
    from earmark.custom.model import load_custom_classes
    from earmark.custom.training import TrainConfig, train
    from earmark.evaluation import RefEvent, event_based_metrics
    from earmark.evaluation.soundscape import ForegroundClip, make_soundscape
    from earmark.events import PostprocessOptions, scores_to_events
    from earmark.scoring import FrameScorer, ScoringOptions
    from earmark.tagger import load_model

    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EARMARK_EMBEDDING_CACHE", str(Path(tmp) / "cache"))
        negatives = Path(tmp) / "negatives"
        negatives.mkdir()
        for name in TRAIN_BACKGROUNDS:
            (negatives / Path(name).name).symlink_to(sounds / name)
        tagger = load_model(threads=2)
        esc10 = load_dataset(SHARED / "audio" / "esc10" / "esc10_meta.csv")
        subset = esc10.subset([i for i, c in enumerate(esc10.clips) if c.fold != 5])
        config = TrainConfig(
            baseline=False, negatives=True, backgrounds=str(negatives), frame_head="none", augment=0
        )
        model_dir = train(subset, Path(tmp) / "model", tagger, config, log=print).model_dir
        custom = load_custom_classes(model_dir)
        calibration = custom.thresholds
        fold5 = [ForegroundClip(c.path, c.label) for c in esc10.clips if c.fold == 5]
        backbone = custom.backbone(tagger)
        scorer = FrameScorer(backbone.net, backbone.front_end, ScoringOptions(embeddings=True))
        labels = custom.labels()
        rules: dict[str, dict[str, float]] = {
            f"{t:g} for every class": dict.fromkeys(custom.classes, t) for t in GLOBAL_THRESHOLDS
        }
        rules["calibrated per class (default)"] = calibration
        references: list[RefEvent] = []
        detected: dict[str, list[RefEvent]] = {rule: [] for rule in rules}
        for k in range(N_SOUNDSCAPES):
            background = sounds / TEST_BACKGROUNDS[k % len(TEST_BACKGROUNDS)]
            audio, refs = make_soundscape(
                background,
                fold5,
                60.0,
                (6, 8),
                (0.0, 15.0),
                np.random.default_rng(100 + k),
                allow_overlap=False,
                min_gap=1.5,
            )
            name = f"mix{k}"
            references += [RefEvent(name, e.onset, e.offset, e.label) for e in refs]
            scored = scorer.score(audio)
            probs = custom.frame_probabilities(scored.embeddings)
            for rule, thresholds in rules.items():
                post = PostprocessOptions(
                    thresholds={f"custom:{c}": t for c, t in thresholds.items()}
                )
                events = scores_to_events(probs, scored.hop, labels, post, duration=60.0)
                detected[rule] += [RefEvent(name, e.onset, e.offset, e.label) for e in events]
    results = {}
    for rule, found in detected.items():
        m = event_based_metrics(references, found, t_collar=0.5, evaluate_offset=False)
        overall = m["overall"]
        results[rule] = {
            "detections": len(found),
            "precision": round(overall["precision"], 4),
            "recall": round(overall["recall"], 4),
            "f1": round(overall["f1"], 4),
        }
        print(f"{rule:<32} {results[rule]}")
    summary = {
        "setup": {
            "train": "ESC-10 folds 1-4, negatives and calibration mixtures from "
            + ", ".join(TRAIN_BACKGROUNDS),
            "test": f"{N_SOUNDSCAPES} soundscapes of 60 s, fold-5 clips, 0-15 dB SNR, over "
            + ", ".join(TEST_BACKGROUNDS),
            "events": len(references),
            "metric": "event-based, onset collar 0.5 s, offsets not evaluated, score-based "
            "boundaries (no refinement)",
        },
        "calibrated_thresholds": calibration,
        "results": results,
    }
    write_json(RESULTS_DIR / "custom_thresholds.json", summary)
    return summary


if __name__ == "__main__":
    main()
