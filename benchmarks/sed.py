"""Detection quality on strongly labelled soundscapes: earmark vs the naive and official methods.

The soundscapes (``benchmarks/soundscapes.py``: real ESC-10 / scaper / siren events mixed over
real ambient recordings at known times, three conditions, ``dev`` and ``test`` splits with
disjoint clips) are scored once per scoring method; post-processing parameters are then chosen
on ``dev`` and every method is reported on ``test``:

* ``naive``: the original request's method: top-1 class per 0.96 s window, 0.48 s hop, above a
  threshold (consecutive windows of the same class joined);
* ``official``: clip-level scores of 10 s windows every 1 s (the EfficientAT inference recipe),
  then earmark's post-processing;
* ``earmark``: local scoring (0.32 s frames) and post-processing, with the defaults;
* ``earmark_tuned``: the same with parameters tuned on ``dev`` (how ``earmark tune`` will work).

Metrics: event-based F1 (onset collar 0.2 s, offset collar max(0.2 s, 20 %)), the same with a
1 s collar, and segment-based F1 (1 s), micro over all classes, after mapping AudioSet classes to
the reference labels with ``earmark/data/labelmaps/esc10.yaml``.

Usage: ``python -m benchmarks.sed [--grid]`` -> results/sed.json
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DATA_DIR, SHARED, save_result
from benchmarks.soundscapes import DEFAULT_OUT, build_set, ignored_by_file, load_index
from earmark.audio import load
from earmark.evaluation import (
    RefEvent,
    drop_labels,
    event_based_metrics,
    load_label_map,
    load_reference,
    map_predictions,
    segment_based_metrics,
)
from earmark.events import Event, PostprocessOptions, scores_to_events
from earmark.labels import Label
from earmark.scoring import ScoringOptions
from earmark.tagger import Tagger, load_model

METHODS = {
    "local": ScoringOptions(),
    "window2s": ScoringOptions(method="window", window=2.0, hop=0.32),
    "official": ScoringOptions(method="window", window=10.0, hop=1.0),
    "naive": ScoringOptions(method="window", window=0.96, hop=0.48),
}
GRID = {
    "threshold": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    "off_ratio": (0.5, 0.75, 1.0),
    "median_filter": (0.0, 0.96),
    "min_duration": (0.0, 0.64),
    "merge_gap": (0.0, 0.64, 1.28),
}
NAIVE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def score_all(tagger: Tagger, index: dict, root: Path) -> dict[str, dict[str, tuple]]:
    """``{method: {file: (scores, hop, duration)}}``, cached under benchmarks/data/scores."""
    cache = DATA_DIR / "scores"
    out: dict[str, dict[str, tuple]] = {m: {} for m in METHODS}
    for method, opts in METHODS.items():
        for entry in index["soundscapes"]:
            file = entry["file"]
            tag = hashlib.sha256(json.dumps(opts.to_dict(), sort_keys=True).encode()).hexdigest()
            path = cache / f"{method}-{tag[:10]}" / (file.replace("/", "__") + ".npz")
            if path.exists():
                with np.load(path) as data:
                    out[method][file] = (
                        data["scores"],
                        float(data["hop"]),
                        float(data["duration"]),
                    )
                continue
            audio = load(root / file)
            result = tagger.frame_scores(audio, opts)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                path, scores=result.scores, hop=result.hop, duration=result.duration
            )
            out[method][file] = (result.scores, result.hop, result.duration)
    return out


def mapped_columns(
    tagger: Tagger, label_map: dict[str, list[str]]
) -> tuple[list[int], list[Label]]:
    """Columns of the AudioSet classes the label map uses (others cannot score)."""
    names = {name for values in label_map.values() for name in values}
    cols = [label.index for label in tagger.labels if label.name in names]
    return cols, [Label(i, tagger.labels[c].mid, tagger.labels[c].name) for i, c in enumerate(cols)]


def naive_events(
    scores: np.ndarray, hop: float, labels: list[Label], file: str, thr: float, window: float = 0.96
) -> list[Event]:
    """Top-1 class per window above ``thr``; consecutive windows of one class joined."""
    top = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), top]
    active = np.where(best >= thr, top, -1)
    events: list[Event] = []
    start = 0
    for i in range(1, len(active) + 1):
        if i == len(active) or active[i] != active[start]:
            if active[start] >= 0:
                seg = best[start:i]
                lab = labels[int(active[start])]
                events.append(
                    Event(
                        file,
                        lab.name,
                        lab.mid,
                        start * hop,
                        (i - 1) * hop + window,
                        float(seg.max()),
                        float(seg.mean()),
                    )
                )
            start = i
    return events


def evaluate(pred: list[Event], refs: list[RefEvent], ignored: dict, label_map: dict) -> dict:
    """Event-based (0.2 s and 1 s collars) and segment-based (1 s) micro F1."""
    mapped = drop_labels(map_predictions(pred, label_map), ignored)
    refs = drop_labels(refs, ignored)
    strict = event_based_metrics(refs, mapped)["overall"]
    loose = event_based_metrics(refs, mapped, t_collar=1.0, percentage_of_length=0.5)["overall"]
    segment = segment_based_metrics(refs, mapped)["overall"]
    return {
        "event_f1": round(strict["f1"], 4),
        "event_precision": round(strict["precision"], 4),
        "event_recall": round(strict["recall"], 4),
        "event_f1_1s": round(loose["f1"], 4),
        "segment_f1": round(segment["f1"], 4),
        "segment_error_rate": round(segment["error_rate"], 4),
    }


def run_post(
    scored: dict, files: list[str], cols: list[int], labels: list[Label], opts: PostprocessOptions
) -> list[Event]:
    events: list[Event] = []
    for file in files:
        scores, hop, duration = scored[file]
        events += scores_to_events(scores[:, cols], hop, labels, opts, file=file, duration=duration)
    return events


def options_from(params: dict) -> PostprocessOptions:
    return PostprocessOptions(
        threshold=params["threshold"],
        off_threshold=params["threshold"] * params["off_ratio"],
        median_filter=params["median_filter"],
        min_duration=params["min_duration"],
        merge_gap=params["merge_gap"],
    )


def tune(
    scored: dict,
    files: list[str],
    refs: list[RefEvent],
    ignored: dict,
    label_map: dict,
    cols: list[int],
    labels: list[Label],
    metric: str = "event_f1",
) -> tuple[dict, float]:
    """Grid search of post-processing parameters maximising ``metric`` on ``files``."""
    best, best_value = {}, -1.0
    keys = list(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        result = evaluate(
            run_post(scored, files, cols, labels, options_from(params)), refs, ignored, label_map
        )
        if result[metric] > best_value:
            best, best_value = params, result[metric]
    return best, best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", default="event_f1_1s", help="what tuning maximises")
    args = parser.parse_args()
    t0 = time.perf_counter()
    root = Path(DEFAULT_OUT)
    if not (root / "index.json").exists():
        build_set(SHARED, root)
    index = load_index(root)
    tagger = load_model()
    label_map = load_label_map("esc10")
    cols, labels = mapped_columns(tagger, label_map)
    ignored = ignored_by_file(index)
    scored = score_all(tagger, index, root)
    split_files = {
        s: [e["file"] for e in index["soundscapes"] if e["split"] == s] for s in ("dev", "test")
    }
    refs = {
        s: [ev for f in files for ev in load_reference(root / Path(f).with_suffix(".tsv"))]
        for s, files in split_files.items()
    }
    # reference files are keyed by stem in the metrics; predictions use the relative path
    result: dict = {"n_soundscapes": {s: len(f) for s, f in split_files.items()}}

    defaults = PostprocessOptions()
    result["defaults"] = {
        "threshold": defaults.threshold,
        "off_threshold": defaults.off_threshold,
        "median_filter": defaults.median_filter,
        "min_duration": defaults.min_duration,
        "merge_gap": defaults.merge_gap,
    }
    tuned = {}
    for method in ("local", "window2s", "official"):
        params, dev_value = tune(
            scored[method],
            split_files["dev"],
            refs["dev"],
            ignored,
            label_map,
            cols,
            labels,
            args.metric,
        )
        tuned[method] = params
        test = evaluate(
            run_post(scored[method], split_files["test"], cols, labels, options_from(params)),
            refs["test"],
            ignored,
            label_map,
        )
        default_test = evaluate(
            run_post(scored[method], split_files["test"], cols, labels, defaults),
            refs["test"],
            ignored,
            label_map,
        )
        result[method] = {
            "tuned_on_dev": params,
            "dev_" + args.metric: round(dev_value, 4),
            "test_tuned": test,
            "test_defaults": default_test,
        }
        print(method, result[method], flush=True)

    best_thr, best_val = None, -1.0
    for thr in NAIVE_THRESHOLDS:
        ev = [
            e
            for f in split_files["dev"]
            for e in naive_events(
                scored["naive"][f][0][:, cols], scored["naive"][f][1], labels, f, thr
            )
        ]
        value = evaluate(ev, refs["dev"], ignored, label_map)[args.metric]
        if value > best_val:
            best_thr, best_val = thr, value
    ev = [
        e
        for f in split_files["test"]
        for e in naive_events(
            scored["naive"][f][0][:, cols], scored["naive"][f][1], labels, f, best_thr
        )
    ]
    result["naive"] = {
        "threshold_tuned_on_dev": best_thr,
        "test": evaluate(ev, refs["test"], ignored, label_map),
    }
    print("naive", result["naive"], flush=True)

    # per condition, on test, for the main methods
    per_condition = {}
    for cond in sorted({e["condition"] for e in index["soundscapes"]}):
        files = [
            e["file"]
            for e in index["soundscapes"]
            if e["split"] == "test" and e["condition"] == cond
        ]
        crefs = [ev for f in files for ev in load_reference(root / Path(f).with_suffix(".tsv"))]
        row = {}
        for method in ("local", "official"):
            row[method] = evaluate(
                run_post(scored[method], files, cols, labels, options_from(tuned[method])),
                crefs,
                ignored,
                label_map,
            )
        row["naive"] = evaluate(
            [
                e
                for f in files
                for e in naive_events(
                    scored["naive"][f][0][:, cols], scored["naive"][f][1], labels, f, best_thr
                )
            ],
            crefs,
            ignored,
            label_map,
        )
        per_condition[cond] = row
    result["test_by_condition"] = per_condition
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(save_result("sed", result))


if __name__ == "__main__":
    main()
