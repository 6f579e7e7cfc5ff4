"""Active learning: does reviewing detections in the queue's order teach earmark more than
reviewing the same number chosen at random?

The user's six classes and their training clips are those of ``benchmarks/custom_sed.py``
(ESC-10 folds 1-3 over the training backgrounds, the same "other sounds"), with a smaller
training budget (fewer mixtures) so that one round trains in about a minute. Then:

* **pool** (what the user reviews): :data:`POOL_SCAPES` soundscapes of 30 s from the fold-4
  clips over the dev backgrounds (cafe, heavy rain, river), written to WAV files;
* **test** (held out, never reviewed): :data:`TEST_SCAPES` soundscapes built as ``custom_sed``'s
  test split (fold-5 clips over five other backgrounds; its 24 are the first of them).

Round 0 is the model trained on the clips alone. In every round the current model detects in
the pool; :data:`PER_ROUND` detections not reviewed before are chosen, by the review queue's
order (:func:`earmark.review.queue.priorities`, with the AudioSet model's ``esc10`` mapping as
the other opinion) or at random, and an oracle reviews them from the ground truth through the
review store, as a user would on the page: a detection overlapping a true event of its class is
accepted (its bounds dragged onto the true ones), one overlapping another class's event is
relabelled (and moved), any other is rejected; true events heard in the second of context
around it are labelled too (free mode). The model is then trained again with ``--from-reviews``
on every round's reviewed run, and scored on the test soundscapes: event F1 (onset collar
0.2 s, offset collar max(0.2 s, 20 %)) after rounds 0-5. Retraining moves event F1 by a few
points on its own, so everything is repeated with several training seeds (each with its own
round 0, the queue and a random order), and the curves are compared seed by seed and on
average. Writes ``benchmarks/results/active_learning.json``.

    python -m benchmarks.active_learning [--rounds 5] [--per-round 20] [--train-seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED, save_result
from benchmarks.custom_sed import (
    CLASSES,
    DEV_BACKGROUNDS,
    OTHERS,
    TEST_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    detect_audioset_mapping,
    music_and_speech,
    score_all,
    soundscapes,
)

POOL_SCAPES = 45
TEST_SCAPES = 48
PER_ROUND = 20
MIXTURES = 120
"""Training mixtures per round (``earmark train``'s default is 480)."""


def detect(tagger, model_dir, item):
    """Events (with their peaks) of one scored recording, and the thresholds they met."""
    from earmark.boundaries import RefineOptions, refine_events
    from earmark.custom.provider import apply_custom_classes, custom_selection
    from earmark.events import effective_thresholds, scores_to_events
    from earmark.pipeline import DetectOptions

    options = DetectOptions(classes=str(model_dir))
    scores, labels = apply_custom_classes(tagger, item.scores, options, None)
    post = custom_selection(options, labels)
    events = scores_to_events(
        scores.scores, scores.hop, labels, post, file=item.name, duration=item.duration
    )
    return refine_events(events, item.envelope, RefineOptions(), item.duration), (
        effective_thresholds(post, labels)
    )


def oracle(store, item, truth, context=1.0) -> None:
    """Review one detection from the ground truth (see the module docstring)."""
    from earmark.review.items import POSITIVE

    refs = [r for r in truth[item.file] if r.onset < item.offset and r.offset > item.onset]

    def overlap(r):
        return min(r.offset, item.offset) - max(r.onset, item.onset)

    same = [r for r in refs if r.label == item.label]
    chosen = max(same or refs, key=overlap) if refs else None
    if chosen is None:
        store.decide({"op": "reject", "id": item.id, "base": item.version}, "oracle")
    else:
        if chosen.label != item.label:
            store.decide({"op": "relabel", "id": item.id, "label": chosen.label}, "oracle")
        if abs(chosen.onset - item.onset) > 0.05 or abs(chosen.offset - item.offset) > 0.05:
            store.decide(
                {"op": "bounds", "id": item.id, "onset": chosen.onset, "offset": chosen.offset},
                "oracle",
            )
        store.decide({"op": "accept", "id": item.id}, "oracle")
    start, end = item.onset - context, item.offset + context
    positives = [i for i in store.items.values() if i.status in POSITIVE and i.file == item.file]
    for r in truth[item.file]:
        if r is chosen or not (r.onset < end and r.offset > start) or covered(r, positives):
            continue
        entry = {"op": "add", "file": item.file, "onset": r.onset, "offset": r.offset}
        store.decide({**entry, "label": r.label}, "oracle")


def covered(d, reviewed) -> bool:
    """Whether an earlier round reviewed this stretch for this class already."""
    return any(
        r.file == d.file and r.label == d.label and r.onset < d.offset and r.offset > d.onset
        for r in reviewed
    )


def evaluate(tagger, model_dir, test_items, test_refs) -> dict:
    from earmark.evaluation import RefEvent, event_based_metrics

    found = [
        RefEvent(i.name, e.onset, e.offset, e.label)
        for i in test_items
        for e in detect(tagger, model_dir, i)[0]
    ]
    ev = event_based_metrics(test_refs, found, 0.2, 0.2, labels=list(CLASSES))
    calibration = json.loads((Path(model_dir) / "thresholds.json").read_text())
    return {
        "thresholds": {c: v["threshold"] for c, v in calibration["classes"].items()},
        "event_f1": round(ev["overall"]["f1"], 4),
        "event_f1_macro": round(ev["macro"]["f1"], 4),
        "precision": round(ev["overall"]["precision"], 4),
        "recall": round(ev["overall"]["recall"], 4),
        "detections": len(found),
    }


def run_strategy(name, seed, ctx, rounds, per_round, round0) -> dict:
    """Rounds 1..``rounds`` of one strategy (``queue`` or ``random``) from the round-0 model,
    trained with the training seed ``seed``."""
    from earmark.review.queue import priorities, random_order
    from earmark.review.run import Detection, Run, detection_id
    from earmark.review.store import ReviewStore

    model, history, runs, reviewed = round0["model"], [round0["test"]], [], []
    counts: dict[str, int] = {}
    decisions = {"accepted": 0, "corrected": 0, "rejected": 0, "added": 0}
    for k in range(1, rounds + 1):
        started = time.perf_counter()
        detections, disagreement = [], {}
        for item in ctx["pool_items"]:
            events, thresholds = detect(ctx["tagger"], model, item)
            for e in events:
                path = str(ctx["pool_files"][item.name])
                d = Detection(
                    detection_id(path, e.label, e.onset, e.offset), path, e.label, e.onset,
                    e.offset, float(e.peak), float(thresholds.get(e.label, 0.5)), True,
                )  # fmt: skip
                if covered(d, reviewed):
                    continue
                detections.append(d)
                disagreement[d.id] = 0.0 if covered(d, ctx["audioset"][item.name]) else 1.0
        root = ctx["tmp"] / f"{name}-{seed}-round{k}"
        root.mkdir()
        durations = {str(p): 30.0 for p in ctx["pool_files"].values()}
        run = Run(root, detections, sorted(durations), list(CLASSES), durations)
        store = ReviewStore(run)
        if name == "queue":
            order = [p.id for p in priorities(detections, counts, disagreement)]
        else:
            order = random_order(detections, (seed + 1) * 1000 + k)
        for ident in order[:per_round]:
            oracle(store, store.items[ident], ctx["truth"])
        for item in store.reviewed():
            counts[item.label] = counts.get(item.label, 0) + 1
            decisions[item.status] = decisions.get(item.status, 0) + 1
            reviewed.append(item)
        if store.reviewed():  # a round with nothing left to review adds no run
            runs.append(str(root))
        model = ctx["train"](f"{name}-{seed}-round{k}", tuple(runs), seed)
        history.append(evaluate(ctx["tagger"], model, ctx["test_items"], ctx["test_refs"]))
        history[-1]["candidates"] = len(detections)
        print(name, seed, k, history[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    return {"rounds": history, "decisions": decisions, "reviewed_per_class": counts}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=PER_ROUND)
    parser.add_argument("--train-seeds", type=int, default=2)
    args = parser.parse_args()
    from earmark.custom.datasets import load_dataset
    from earmark.custom.training import TrainConfig, train
    from earmark.evaluation import RefEvent
    from earmark.evaluation.soundscape import write_soundscape
    from earmark.tagger import load_model

    load = os.getloadavg()
    started = time.perf_counter()
    esc = load_dataset(SHARED / "audio" / "esc10" / "esc10_meta.csv")
    esc_clips = [(c.path, c.label, c.fold) for c in esc.clips]
    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    tagger = load_model(threads=2)
    results: dict = {"load_average_at_start": [round(v, 2) for v in load]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["EARMARK_EMBEDDING_CACHE"] = str(tmp / "cache")
        for folder, share in (("bg", TRAIN_BACKGROUNDS), ("others", ())):
            (tmp / folder).mkdir()
            for b in share:
                (tmp / folder / Path(b).name).symlink_to(sounds / b)
        for p, label, fold in esc_clips:
            if label in OTHERS and fold <= 3:
                (tmp / "others" / Path(p).name).symlink_to(p)
        for p in [q for part in music_and_speech("train") for q in part]:
            (tmp / "others" / p.name).symlink_to(p)
        subset = esc.subset(
            [i for i, c in enumerate(esc.clips) if c.label in CLASSES and c.fold <= 3]
        )
        train_seconds: list[float] = []

        def train_round(name: str, reviews: tuple[str, ...], seed: int) -> Path:
            t0 = time.perf_counter()
            config = TrainConfig(
                baseline=False, negatives=True, backgrounds=str(tmp / "bg"),
                others=str(tmp / "others"), mixtures=MIXTURES, reviews=reviews, seed=seed,
            )  # fmt: skip
            train(subset, tmp / "models" / name, tagger, config)
            train_seconds.append(time.perf_counter() - t0)
            return tmp / "models" / name

        pool_clips = [(p, label) for p, label, f in esc_clips if label in CLASSES and f == 4]
        pool = soundscapes(pool_clips, DEV_BACKGROUNDS, POOL_SCAPES, 14)
        (tmp / "pool").mkdir()
        pool_files = {}
        for name, audio, _ in pool:
            pool_files[name] = tmp / "pool" / f"pool-{name}.wav"
            write_soundscape(pool_files[name], audio, [], 32000)
        truth = {
            str(pool_files[name]): [RefEvent(str(pool_files[name]), e.onset, e.offset, e.label)
                                    for e in evs]
            for name, _, evs in pool
        }  # fmt: skip
        test_clips = [(p, label) for p, label, f in esc_clips if label in CLASSES and f == 5]
        test = soundscapes(test_clips, TEST_BACKGROUNDS, TEST_SCAPES, 5)
        test_refs = [RefEvent(n, e.onset, e.offset, e.label) for n, _, evs in test for e in evs]
        pool_items = score_all(tagger, [(n, a) for n, a, _ in pool])
        test_items = score_all(tagger, [(n, a) for n, a, _ in test])
        audioset = {
            i.name: [
                RefEvent(str(pool_files[i.name]), e.onset, e.offset, e.label)
                for e in detect_audioset_mapping(tagger, i)[0]
            ]
            for i in pool_items
        }
        ctx = {
            "tagger": tagger, "tmp": tmp, "pool_items": pool_items, "pool_files": pool_files,
            "truth": truth, "audioset": audioset, "test_items": test_items,
            "test_refs": test_refs, "train": train_round,
        }  # fmt: skip
        strategies = {}
        for seed in range(args.train_seeds):
            model0 = train_round(f"round0-{seed}", (), seed)
            round0 = {"model": model0, "test": evaluate(tagger, model0, test_items, test_refs)}
            print("round 0, training seed", seed, round0["test"], flush=True)
            for name in ("queue", "random"):
                strategies[f"{name} (training seed {seed})"] = run_strategy(
                    name, seed, ctx, args.rounds, args.per_round, round0
                )
        results["strategies"] = strategies
        curves = {name: [r["event_f1"] for r in s["rounds"]] for name, s in strategies.items()}
        for name in ("queue", "random"):
            mine = [v for k, v in curves.items() if k.startswith(name)]
            columns = zip(*mine, strict=True)
            curves[f"{name} (mean)"] = [round(float(np.mean(c)), 4) for c in columns]
        results["event_f1_by_round"] = curves
        pairs = zip(curves["queue (mean)"], curves["random (mean)"], strict=True)
        results["queue_minus_random_by_round"] = [round(q - r, 4) for q, r in pairs]
        results["mean_event_f1_rounds_1_to_last"] = {
            name: round(float(np.mean(c[1:])), 4) for name, c in curves.items()
        }
        results["pool_reference_events"] = sum(len(v) for v in truth.values())
        results["test_reference_events"] = len(test_refs)
        results["training_seconds_median"] = round(float(np.median(train_seconds)), 1)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["setup"] = {
        "classes": CLASSES,
        "train": f"ESC-10 folds 1-3 of the six classes over {', '.join(TRAIN_BACKGROUNDS)}; "
        f"{MIXTURES} mixtures of 20 s; others as in custom_sed",
        "pool": f"{POOL_SCAPES} x 30 s, fold-4 clips over {', '.join(DEV_BACKGROUNDS)}",
        "test": f"{TEST_SCAPES} x 30 s, fold-5 clips over {', '.join(TEST_BACKGROUNDS)}",
        "budget": f"{args.per_round} detections per round, {args.rounds} rounds, "
        f"{args.train_seeds} training seeds",
        "thresholds": "chosen on the training mixtures only (reviewed stretches are trained on "
        "but left out of threshold, gate and filter choices)",
        "metric": "event F1, onset collar 0.2 s, offset collar max(0.2 s, 20 %), micro",
    }
    print(results["event_f1_by_round"])
    save_result("active_learning", results)
    return results


if __name__ == "__main__":
    main()
