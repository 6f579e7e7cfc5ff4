"""Does preprocessing help detection on noisy soundscapes? ``python -m benchmarks.preprocessing``

Soundscapes are mixed from real recordings with
:func:`earmark.evaluation.soundscape.make_soundscape`
(ESC-10, scaper and siren foregrounds of the SED benchmark's ``test`` split, at 0-10 dB SNR)
over rain, traffic and cafe backgrounds, in two conditions: ``noisy`` (background -35..-25 dBFS
RMS of the mix) and ``noisy-quiet`` (the same kind of mix scaled to -48..-42 dBFS RMS: a
quiet recording). Each preprocessing variant runs the whole ``earmark detect`` pipeline
(:func:`earmark.pipeline.run`) with default post-processing; events are mapped to the reference
labels with the ``esc10`` label map and scored with the SED benchmark's metrics (event F1 with
1 s collar, segment F1 1 s), ignoring classes a background itself contains.

Writes ``benchmarks/results/preprocessing.json``; soundscapes are cached in
``benchmarks/data/preprocessing/``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.common import DATA_DIR, SHARED, save_result
from benchmarks.sed.run import evaluate
from benchmarks.sed.soundscapes import (
    BACKGROUND_CONFLICTS,
    BACKGROUNDS,
    DEFAULT_OUT,
    build_set,
    foregrounds,
    ignored_by_file,
    load_index,
)
from earmark.audio import probe
from earmark.batch import run
from earmark.evaluation import load_label_map, load_reference
from earmark.evaluation.soundscape import make_soundscape, rms_db, write_soundscape
from earmark.pipeline import DetectOptions
from earmark.preprocess import PreprocessOptions
from earmark.tagger import load_model

SET_DIR = DATA_DIR / "preprocessing"
BACKGROUND_NAMES = ("heavy-rain", "light-rain", "rain-on-window", "traffic", "busy-street", "cafe")
CONDITIONS = {"noisy": None, "noisy-quiet": (-48.0, -42.0)}
VARIANTS = {
    "none": PreprocessOptions(),
    "spectral-gate": PreprocessOptions(denoise="spectral-gate"),
    "wiener": PreprocessOptions(denoise="wiener"),
    "normalize -23": PreprocessOptions(normalize=-23.0),
    "highpass 100": PreprocessOptions(highpass=100.0),
    "spectral-gate + normalize": PreprocessOptions(denoise="spectral-gate", normalize=-23.0),
    "wiener + normalize": PreprocessOptions(denoise="wiener", normalize=-23.0),
}
SEED = 7


def build(per_background: int) -> tuple[list[Path], dict[str, list[str]]]:
    """Mix (or reuse) the soundscapes; returns their paths and the labels ignored per file."""
    clips = foregrounds(SHARED, "test")
    paths: list[Path] = []
    ignored: dict[str, list[str]] = {}
    for c_no, (condition, mix_dbfs) in enumerate(CONDITIONS.items()):
        for b_no, name in enumerate(BACKGROUND_NAMES):
            banned = set(BACKGROUND_CONFLICTS.get(name, ()))
            usable = [c for c in clips if c.label not in banned]
            for i in range(per_background):
                path = SET_DIR / condition / f"{condition}_{name}_{i:02d}.wav"
                paths.append(path)
                if banned:
                    ignored[path.name] = sorted(banned)
                if path.exists() and path.with_suffix(".tsv").exists():
                    continue
                rng = np.random.default_rng([SEED, c_no, b_no, i])
                background_db = rng.uniform(-35.0, -25.0)
                audio, events = make_soundscape(
                    SHARED / BACKGROUNDS[name], usable, 30.0, (3, 6), (0.0, 10.0), rng
                )
                # the mix at a level drawn for the condition
                audio = audio * 10 ** ((background_db - rms_db(audio)) / 20)
                if mix_dbfs is not None:
                    audio = audio * 10 ** ((rng.uniform(*mix_dbfs) - rms_db(audio)) / 20)
                peak = float(np.abs(audio).max())
                if peak > 0.99:
                    audio = audio * (0.99 / peak)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_soundscape(path, audio, events, 32000)
    return paths, ignored


def sed_set() -> tuple[list[Path], dict[str, list[str]]]:
    """The ``test`` half of the SED benchmark's soundscapes (clean, noisy, household-low)."""
    if not (DEFAULT_OUT / "index.json").exists():
        build_set(SHARED, DEFAULT_OUT, log=print)
    index = load_index(DEFAULT_OUT)
    entries = [e for e in index["soundscapes"] if e["split"] == "test"]
    return [DEFAULT_OUT / e["file"] for e in entries], ignored_by_file(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-background", type=int, default=3)
    parser.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument(
        "--set",
        choices=("noisy", "sed"),
        default="noisy",
        help="noisy: this script's rain/traffic/cafe mixes; sed: the SED benchmark's test half",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.set == "sed":
        paths, ignored = sed_set()
    else:
        paths, ignored = build(args.per_background)
    conditions = sorted({p.parent.name for p in paths})
    label_map = load_label_map("esc10")
    tagger = load_model()
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    result: dict = {
        "n_soundscapes": len(paths),
        "seconds_of_audio": round(sum(probe(p).duration or 0.0 for p in paths), 1),
        "set": args.set,
        "conditions": conditions,
        "variants": {},
    }
    for variant in names:
        pre = VARIANTS[variant]
        out = SET_DIR / f"runs-{args.set}" / variant.replace(" ", "_").replace("+", "and")
        started = time.perf_counter()
        summary = run(paths, out, DetectOptions(preprocess=pre), tagger=tagger)
        seconds = time.perf_counter() - started
        by_condition = {}
        for condition in conditions:
            files = {str(p) for p in paths if p.parent.name == condition}
            pred = [e for e in summary.events if e.file in files]
            refs = [
                ev for p in paths if str(p) in files for ev in load_reference(p.with_suffix(".tsv"))
            ]
            by_condition[condition] = evaluate(pred, refs, ignored, label_map)
        refs_all = [ev for p in paths for ev in load_reference(p.with_suffix(".tsv"))]
        overall = evaluate(summary.events, refs_all, ignored, label_map)
        result["variants"][variant] = {
            "options": asdict(pre),
            "overall": overall,
            "by_condition": by_condition,
            "realtime_factor": round(result["seconds_of_audio"] / seconds, 1),
        }
        print(variant, overall, {k: v["segment_f1"] for k, v in by_condition.items()}, flush=True)
    best = max(result["variants"], key=lambda v: result["variants"][v]["overall"]["event_f1_1s"])
    result["best_by_event_f1_1s"] = best
    result["seconds"] = round(time.perf_counter() - t0, 1)
    name = "preprocessing" if args.set == "noisy" else "preprocessing_sed"
    print("written", save_result(name, result))


if __name__ == "__main__":
    main()
