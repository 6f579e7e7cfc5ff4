"""A finer hop for the frame-level detector: 0.16 s frames from two interleaved passes.

Issue 18 asks whether a hop finer than the backbone's 0.32 s helps the frame-level detector.
The network's time stride is fixed (32 mel frames), so 0.16 s frames come from scoring every
recording twice, as it is and 0.16 s later (the first 5120 samples dropped), and interleaving
the two passes' rows: row ``2i`` is the first pass's frame ``i`` (``[0.32 i, 0.32 i + 0.32)``),
row ``2i + 1`` the second pass's (0.16 s later). Detection would cost two backbone passes.

Same data and protocol as ``benchmarks/frame_finetune.py`` (``train``'s 480 default mixtures
of the six ``custom_sed`` classes, five groups): for each of three validation groups, the
default conv head (frozen backbone, AudioSet evidence, no ensemble) is trained on the other
four groups at each hop, early-stopped and given per-class thresholds (event F1) on the
validation group, then scored on the dev and test soundscapes of ``custom_sed`` with the
same post-processing and boundary refinement (median filter and merge gap in seconds, so the
same at both hops; the head's temporal context in frames, so half as long in seconds at
0.16 s). Writes ``benchmarks/results/frame_hop.json``.

    python -m benchmarks.frame_hop
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import custom_sed
from benchmarks.common import save_result
from benchmarks.frame_finetune import training_mixtures

HOPS = (0.32, 0.16)
SHIFT = 5120
"""Samples (0.16 s at 32 kHz) the second pass starts later."""
VALIDATION_GROUPS = (3, 1, 0)


def interleaved(scorer, audio: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{hop: (features, AudioSet scores)}`` of one recording at 0.32 s and at 0.16 s."""
    first = scorer.score(audio)
    second = scorer.score(audio[SHIFT:])
    n = first.n_frames + min(second.n_frames, first.n_frames)
    rows = {}
    for name in ("features", "scores"):
        a, b = getattr(first, name), getattr(second, name)
        both = np.zeros((n, a.shape[1]), np.float32)
        both[0::2] = a
        both[1::2] = b[: len(both[1::2])]
        rows[name] = (a.astype(np.float32), both)
    return {
        0.32: (rows["features"][0], rows["scores"][0]),
        0.16: (rows["features"][1], rows["scores"][1]),
    }


def main() -> dict:
    from earmark.boundaries import BandEnvelope
    from earmark.custom.detector import FrameData
    from earmark.custom.frame_head import fit_frame_head
    from earmark.custom.mixtures import frame_targets
    from earmark.custom.postprocess import choose_thresholds, quality
    from earmark.evaluation import RefEvent
    from earmark.scoring import ScoringOptions
    from earmark.tagger import load_model

    load = os.getloadavg()
    started = time.perf_counter()
    classes = list(custom_sed.CLASSES)
    esc_clips, recordings, config = training_mixtures(classes)
    scorer = load_model(threads=2).scorer(ScoringOptions(features=True))

    def items(name, audio, events, group, kind) -> dict[float, FrameData]:
        envelope = BandEnvelope.of(audio).db
        out = {}
        for hop, (features, scores) in interleaved(scorer, audio).items():
            targets = frame_targets(events, len(features), hop, classes) if kind == "mix" else None
            out[hop] = FrameData(
                name, group, kind, features, scores,
                targets if targets is not None else np.zeros((len(features), len(classes))),
                envelope, len(audio) / 32000,
                [RefEvent(name, e.onset, e.offset, e.label) for e in events],
            )  # fmt: skip
        return out

    data: dict[float, list[FrameData]] = {hop: [] for hop in HOPS}
    for rec in recordings:
        for hop, item in items(rec.name, rec.audio, rec.events, rec.group, "mix").items():
            data[hop].append(item)
    sets, _ = custom_sed.evaluation_audio(esc_clips)
    evaluation: dict[str, dict[float, list[FrameData]]] = {}
    for split, (recs, refs) in sets.items():
        evaluation[split] = {hop: [] for hop in HOPS}
        for name, audio in recs:
            events = [e for e in refs if e.file == name]
            for hop, item in items(name, audio, events, -1, split).items():
                evaluation[split][hop].append(item)
    prepared = time.perf_counter() - started
    rows: dict = {}
    for hop in HOPS:
        runs = []
        for group in VALIDATION_GROUPS:
            train = [d for d in data[hop] if d.group != group]
            val = [d for d in data[hop] if d.group == group]
            fit = fit_frame_head(
                "conv",
                [(d.rows(True), d.targets) for d in train],
                config.fit,
                0,
                max(1, round(config.mixtures.seconds / hop)),
                [(d.rows(True), d.targets) for d in val],
            )
            probs = [fit.head.probabilities(d.rows(True)) for d in val]
            chosen, _, _ = choose_thresholds(probs, val, classes, hop=hop)
            run: dict = {"validation_group": group + 1, "epochs": fit.epochs}
            for split, by_hop in evaluation.items():
                test = by_hop[hop]
                q = quality(
                    [fit.head.probabilities(d.rows(True)) for d in test],
                    test,
                    classes,
                    [chosen] * len(test),
                    hop=hop,
                )
                run[split] = {k: q[k] for k in ("event_f1", "segment_f1", "psds1", "detections")}
            runs.append(run)
            print(f"hop {hop}, validation group {group + 1}: {run}")
        rows[f"{hop:g}"] = {
            "runs": runs,
            "mean": {
                split: {
                    k: round(float(np.mean([r[split][k] for r in runs])), 4)
                    for k in ("event_f1", "segment_f1", "psds1")
                }
                for split in evaluation
            },
        }
    results = {
        "load_average_at_start": [round(v, 2) for v in load],
        "setup": {
            "training": f"{len(recordings)} mixtures of {config.mixtures.seconds:g} s "
            "(train's defaults), five groups; one head per validation group",
            "dev": "16 x 30 s soundscapes (benchmarks/custom_sed.py)",
            "test": "24 x 30 s soundscapes (benchmarks/custom_sed.py)",
            "seconds_preparing": round(prepared, 1),
        },
        "rows": rows,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    save_result("frame_hop", results)
    return results


if __name__ == "__main__":
    main()
