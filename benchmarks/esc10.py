"""ESC-10 custom classes: 5-fold figures of the frozen-embedding head beside the hand-made baseline.

Runs ``earmark.custom.training.train`` on ESC-10's official folds (``esc10_meta.csv``) with default
options (logistic regression and MLP heads chosen by inner validation, hand-made-feature MLP
baseline) into a temporary model folder, and writes ``benchmarks/results/esc10.json``: mean and
per-fold accuracy and macro-F1 of both, the heads chosen, and the time of every stage on this
CPU. Embedding times are measured with an empty cache (a fresh cache folder per run).

    python -m benchmarks.esc10               # frozen head and baseline (~2 min)
    python -m benchmarks.esc10 --finetune    # also fine-tunes the whole backbone per fold

With ``--finetune`` the result goes to ``benchmarks/results/esc10_finetune.json`` and adds the
per-fold accuracy of the fine-tuned backbone beside the frozen head's, and its time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, SHARED
from earmark.outputs import write_json


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune", action="store_true", help="also fine-tune the backbone")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    load_start = round(os.getloadavg()[0], 2)  # other jobs on the machine slow every stage
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EARMARK_EMBEDDING_CACHE"] = str(Path(tmp) / "cache")
        import torch

        from earmark.custom.datasets import load_dataset
        from earmark.custom.training import TrainConfig, format_report, train
        from earmark.tagger import load_model

        meta = SHARED / "audio" / "esc10" / "esc10_meta.csv"
        if not meta.is_file():
            raise SystemExit(f"{meta} not found: set EARMARK_SHARED")
        tagger = load_model(threads=args.threads)
        dataset = load_dataset(meta)
        started = time.perf_counter()
        result = train(
            dataset,
            Path(tmp) / "model",
            tagger,
            TrainConfig(seed=0, finetune=args.finetune),
            log=print,
        )
        wall = time.perf_counter() - started
        print(format_report(result.metrics))
    m = result.metrics
    head, base = m["head"], m["baseline"]
    summary = {
        "dataset": "ESC-10 (400 clips, 10 classes, official folds 1-5)",
        "backbone": result.config["backbone"]["model"],
        "head": {
            "final_kind": head["kind"],
            "mean_accuracy": head["mean_accuracy"],
            "mean_macro_f1": head["mean_macro_f1"],
            "std_accuracy": head["std_accuracy"],
            "per_fold": [
                {k: s[k] for k in ("split", "chosen", "accuracy", "macro_f1")}
                for s in head["splits"]
            ],
        },
        "baseline_handcrafted_mlp": {
            "mean_accuracy": base["mean_accuracy"],
            "mean_macro_f1": base["mean_macro_f1"],
            "std_accuracy": base["std_accuracy"],
            "per_fold": [
                {k: s[k] for k in ("split", "accuracy", "macro_f1")} for s in base["splits"]
            ],
        },
        "finetuned": None
        if m["finetuned"] is None
        else {
            k: m["finetuned"][k]
            for k in ("layers", "epochs", "mean_accuracy", "std_accuracy", "mean_macro_f1")
        }
        | {
            "kept": m["finetuned"]["kept"],
            "per_fold": m["finetuned"]["splits"],
            "seconds": m["finetuned"]["seconds"],
            "config": {k: v for k, v in result.config["train"].items() if k.startswith("finetune")},
        },
        "timing_seconds": {**m["timing_seconds"], "wall": round(wall, 1)},
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "cpu_count": os.cpu_count(),
    }
    write_json(RESULTS_DIR / ("esc10_finetune.json" if args.finetune else "esc10.json"), summary)
    return summary


if __name__ == "__main__":
    main()
