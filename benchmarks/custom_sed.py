"""Custom classes found in long noisy recordings: frame-level detector against the clip head.

Six ESC-10 classes are the user's classes (Dog bark, Baby cry, Person sneeze, Rooster, Chainsaw,
Helicopter). Everything is split three ways, by clip *and* by background recording:

* **train**: folds 1-3 (144 clips), seven background recordings (wind, light rain, traffic,
  keyboard, washing machine, subway station, crows); the user's "other sounds" (``--others``)
  are fold 1-3 clips of two other ESC-10 classes (Rain, Fire crackling), two music tracks and
  half of the speech prompts;
* **dev**: 16 soundscapes of 30 s from fold-4 clips over three other backgrounds (cafe, heavy
  rain, river): design choices (head kind, AudioSet evidence) are made here;
* **test**: 24 soundscapes of 30 s from fold-5 clips over five other backgrounds (office, busy
  street, rain on window, clock, waves); 3-6 events each at -5 to 15 dB SNR, overlaps allowed.

Systems, each run through the same detection path (``detect --classes``: scoring,
post-processing, boundary refinement) on the same soundscapes:

* ``audioset-mapping``: the AudioSet model with no training, its classes mapped onto the six
  (``esc10`` label map, a class's score is the maximum of its AudioSet classes), threshold 0.15;
* ``clip-head``: the design before this change (``train --negatives --backgrounds
  --frame-head none``: clip head on pooled embeddings, thresholds calibrated on clips);
* ``frame-head``: ``train --negatives --backgrounds --others`` with the defaults (frame-level
  head on mixtures, event-F1 thresholds), and variants of it on dev.

Reported: event F1 (onset collar 0.2 s, offset collar max(0.2 s, 20 %)), segment F1 (1 s),
PSDS1, false events per hour on recordings holding none of the six classes (the test
backgrounds in full, an alarm, an ambulance siren, the three other music tracks, the other
half of the speech prompts, and soundscapes of the four other ESC-10 classes' fold-5 clips),
clip accuracy (``classify``) on fold-5 clips clean and mixed over test backgrounds at 0-10 dB,
and the training time. Writes ``benchmarks/results/custom_sed.json``.

    python -m benchmarks.custom_sed [--variants] [--only default|choose-filters|speeds|filed]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import custom_thresholds
from benchmarks.common import SHARED, save_result

CLASSES = ("Dog bark", "Baby cry", "Person sneeze", "Rooster", "Chainsaw", "Helicopter")
OTHERS = ("Rain", "Fire crackling")
UNSEEN_OTHERS = ("Sea waves", "Clock tick", "Rain", "Fire crackling")
AUDIOSET_MAP = {
    "Dog bark": "dog",
    "Baby cry": "crying_baby",
    "Person sneeze": "sneezing",
    "Rooster": "rooster",
    "Chainsaw": "chainsaw",
    "Helicopter": "helicopter",
}
TRAIN_BACKGROUNDS = (
    *custom_thresholds.TRAIN_BACKGROUNDS,
    "places/subway-station.mp3",
    "animals/crows.mp3",
)
DEV_BACKGROUNDS = ("places/cafe.mp3", "rain/heavy-rain.mp3", "nature/river.mp3")
TEST_BACKGROUNDS = (
    "places/office.mp3",
    "urban/busy-street.mp3",
    "rain/rain-on-window.mp3",
    "things/clock.mp3",
    "nature/waves.mp3",
)
OPEN_SET_EXTRA = ("alarm.mp3", "urban/ambulance-siren.mp3")
SOUNDSCAPE_SECONDS = 30.0
TRAIN_MUSIC = 2
"""Music tracks among the user's other sounds (the rest are open-set test recordings)."""


def soundscapes(clips, backgrounds, n, seed, snr=(-5.0, 15.0), events=(3, 6)):
    """``n`` seeded soundscapes: ``(name, audio, events)``."""
    from earmark.audio import load
    from earmark.evaluation.soundscape import ForegroundClip, make_soundscape

    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    bgs = [load(sounds / b, 32000) for b in backgrounds]
    fg = [ForegroundClip(Path(p), label) for p, label in clips]
    cache: dict = {}
    out = []
    for k in range(n):
        audio, evs = make_soundscape(
            bgs[k % len(bgs)],
            fg,
            SOUNDSCAPE_SECONDS,
            events,
            snr,
            np.random.default_rng([seed, k]),
            allow_overlap=True,
            min_gap=0.5,
            clip_audio=cache,
        )
        out.append((f"{seed}-{k:03d}", audio, evs))
    return out


def music_and_speech(part: str) -> tuple[list[Path], list[Path]]:
    """The music tracks and speech prompts of the ``train`` part (the user's other sounds) or
    of the ``test`` part (open-set recordings): never the same files."""
    music = sorted((SHARED / "audio" / "music").rglob("*.wav"))
    speech = sorted((SHARED / "audio" / "speech").rglob("*.wav"))
    if part == "train":
        return music[:TRAIN_MUSIC], speech[::2]
    return music[TRAIN_MUSIC:], speech[1::2]


def open_set_recordings(esc_clips):
    """Recordings holding none of the six classes: ``(name, audio)``."""
    from earmark.audio import load

    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    recs = [(b, load(sounds / b, 32000)) for b in TEST_BACKGROUNDS + OPEN_SET_EXTRA]
    music, speech = music_and_speech("test")
    recs += [(p.name, load(p, 32000)) for p in music]
    recs.append(("speech prompts", np.concatenate([load(p, 32000) for p in speech])))
    other = [(p, label) for p, label, fold in esc_clips if label in UNSEEN_OTHERS and fold == 5]
    for name, audio, _ in soundscapes(other, TEST_BACKGROUNDS, 8, 77):
        recs.append((f"other ESC-10 sounds {name}", audio))
    return recs


@dataclasses.dataclass
class Scored:
    name: str
    duration: float
    scores: object  # FrameScores with embeddings and features
    envelope: object


def score_all(tagger, recordings):
    from earmark.boundaries import BandEnvelope
    from earmark.scoring import ScoringOptions

    scorer = tagger.scorer(ScoringOptions(embeddings=True, features=True))
    out = []
    for name, audio in recordings:
        out.append(Scored(name, len(audio) / 32000, scorer.score(audio), BandEnvelope.of(audio)))
    return out


def detect_custom_scored(tagger, model_dir, item):
    """Events of one scored recording through detect's own functions (process_file's path)."""
    from earmark.boundaries import RefineOptions, refine_events
    from earmark.custom.provider import apply_custom_classes, custom_selection
    from earmark.evaluation import RefEvent
    from earmark.events import scores_to_events
    from earmark.pipeline import DetectOptions

    options = DetectOptions(classes=str(model_dir))
    scores, labels = apply_custom_classes(tagger, item.scores, options, None)
    post = custom_selection(options, labels)
    events = scores_to_events(
        scores.scores, scores.hop, labels, post, file=item.name, duration=item.duration
    )
    events = refine_events(events, item.envelope, RefineOptions(), item.duration)
    names = [lab.name for lab in labels]
    matrix = scores.scores[:, [names.index(c) for c in CLASSES]]  # columns in CLASSES order
    return [RefEvent(item.name, e.onset, e.offset, e.label) for e in events], matrix


def detect_audioset_mapping(tagger, item):
    from earmark.boundaries import RefineOptions, refine_events
    from earmark.evaluation import RefEvent, load_label_map
    from earmark.events import PostprocessOptions, scores_to_events
    from earmark.labels import Label

    label_map = load_label_map("esc10")
    names = [lab.name for lab in tagger.labels]
    columns = [[names.index(a) for a in label_map[AUDIOSET_MAP[c]]] for c in CLASSES]
    matrix = np.stack([item.scores.scores[:, cols].max(axis=1) for cols in columns], axis=1)
    labels = [Label(i, f"custom:{c}", c) for i, c in enumerate(CLASSES)]
    events = scores_to_events(
        matrix.astype(np.float32),
        item.scores.hop,
        labels,
        PostprocessOptions(),
        file=item.name,
        duration=item.duration,
    )
    events = refine_events(events, item.envelope, RefineOptions(), item.duration)
    return [RefEvent(item.name, e.onset, e.offset, e.label) for e in events], matrix


def evaluate(found, matrices, items, references):
    from earmark.evaluation import event_based_metrics, segment_based_metrics
    from earmark.evaluation.psds import PSDS1, FileScores, psds

    ev = event_based_metrics(references, found, 0.2, 0.2, labels=list(CLASSES))
    seg = segment_based_metrics(
        references, found, 1.0, durations={i.name: i.duration for i in items}, labels=list(CLASSES)
    )
    scores = {
        i.name: FileScores(m.astype(np.float64), 0.32, list(CLASSES), i.duration)
        for i, m in zip(items, matrices, strict=True)
    }
    return {
        "event_f1": round(ev["overall"]["f1"], 4),
        "event_precision": round(ev["overall"]["precision"], 4),
        "event_recall": round(ev["overall"]["recall"], 4),
        "event_f1_macro": round(ev["macro"]["f1"], 4),
        "segment_f1": round(seg["overall"]["f1"], 4),
        "psds1": round(float(psds(references, scores, PSDS1)["psds"]), 4),
        "detections": len(found),
        "references": len(references),
        "per_class_event_f1": {c: round(ev["class_wise"][c]["f1"], 4) for c in CLASSES},
        **overlap_diagnostics(found, references),
    }


def overlap_diagnostics(found, references) -> dict:
    """What the collars hide: per class, the reference events that some detection of their
    class overlaps at all, and how far those detections' onsets are from the event's."""
    hits: dict[str, list[int]] = {c: [0, 0] for c in CLASSES}
    errors = []
    for r in references:
        near = [
            f.onset - r.onset
            for f in found
            if f.file == r.file and f.label == r.label and f.onset < r.offset and f.offset > r.onset
        ]
        hits[r.label][1] += 1
        if near:
            hits[r.label][0] += 1
            errors.append(min(near, key=abs))
    errors = np.abs(np.array(errors))
    return {
        "overlapped_by_class": {c: f"{a}/{b}" for c, (a, b) in hits.items()},
        "overlapped": len(errors),
        "onset_error_median_s": round(float(np.median(errors)), 3) if len(errors) else None,
        "onset_error_over_0_2_s": round(float(np.mean(errors > 0.2)), 3) if len(errors) else None,
    }


def run_system(detect, items, references):
    found, matrices = [], []
    for item in items:
        events, matrix = detect(item)
        found += events
        matrices.append(matrix)
    return evaluate(found, matrices, items, references)


def false_per_hour(detect, items):
    n = sum(len(detect(item)[0]) for item in items)
    hours = sum(i.duration for i in items) / 3600
    return {"events": n, "hours": round(hours, 3), "per_hour": round(n / hours, 1)}


def clip_accuracy(model_dir, tagger, clips, work: Path, seed=5, trials=3):
    """Accuracy of ``classify`` on clips, clean and mixed over test backgrounds at 0-10 dB
    (``trials`` mixtures of every clip, each over a random background stretch at a random SNR:
    one mixture per clip of 48 moves the figure by 2 points per clip)."""
    from earmark.audio import load
    from earmark.custom.classify import classify
    from earmark.custom.model import load_custom_classes
    from earmark.evaluation.soundscape import write_soundscape

    custom = load_custom_classes(model_dir)
    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    bgs = [load(sounds / b, 32000) for b in TEST_BACKGROUNDS]
    rng = np.random.default_rng(seed)
    noisy = []
    work.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate([path for _ in range(trials) for path, _label in clips]):
        x = load(path, 32000)
        bg = bgs[int(rng.integers(len(bgs)))]
        start = int(rng.integers(0, len(bg) - len(x)))
        seg = bg[start : start + len(x)]
        level = np.sqrt(np.mean(x**2)) / max(np.sqrt(np.mean(seg**2)), 1e-6)
        mixed = x + seg * level * 10 ** (-rng.uniform(0, 10) / 20)
        mixed = mixed / max(1.0, float(np.abs(mixed).max()))
        write_soundscape(work / f"noisy{k:03d}.wav", mixed.astype(np.float32), [], 32000)
        noisy.append(work / f"noisy{k:03d}.wav")
    truth = [label for _, label in clips]

    def accuracy(files, labels):
        results = classify(files, custom, tagger)
        return round(
            float(np.mean([r.label == t for r, t in zip(results, labels, strict=True)])), 4
        )

    return {
        "clean": accuracy([p for p, _ in clips], truth),
        "noisy_0_10dB": accuracy(noisy, truth * trials),
        "noisy_mixtures": len(noisy),
    }


def train_model(subset, out, tagger, **options):
    from earmark.custom.training import TrainConfig, train

    config = TrainConfig(baseline=False, **options)
    started = time.perf_counter()
    result = train(subset, out, tagger, config, log=print)
    return result, time.perf_counter() - started


def _clips_and_training(esc_clips, tagger, clip, frame, clip_seconds, frame_seconds, tmp) -> dict:
    """Clip accuracy (clean and noisy fold-5 clips) of both models, and their training times."""
    fold5 = [(p, label) for p, label, f in esc_clips if label in CLASSES and f == 5]
    return {
        "clip_accuracy_fold5": {
            "clip-head (before, no mixing augmentation)": clip_accuracy(
                clip.model_dir, tagger, fold5, tmp / "noisy-clip"
            ),
            "new default (mixing augmentation, clip and frame heads)": clip_accuracy(
                frame.model_dir, tagger, fold5, tmp / "noisy-frame"
            ),
        },
        "training_seconds": {
            "frame-head (new default, cold cache)": round(frame_seconds, 1),
            "clip-head (before)": round(clip_seconds, 1),
            "breakdown_new": frame.metrics["timing_seconds"],
            "detector_breakdown": frame.metrics["detection"]["timing_seconds"],
        },
    }


def evaluation_audio(esc_clips) -> tuple[dict, list]:
    """The dev and test soundscapes ``(name, audio)`` with their reference events, and the
    open-set recordings."""
    from earmark.evaluation import RefEvent

    sets = {}
    for split, fold, bgs, n, seed in (
        ("dev", 4, DEV_BACKGROUNDS, 16, 4),
        ("test", 5, TEST_BACKGROUNDS, 24, 5),
    ):
        clips = [(p, label) for p, label, f in esc_clips if label in CLASSES and f == fold]
        scapes = soundscapes(clips, bgs, n, seed)
        refs = [RefEvent(name, e.onset, e.offset, e.label) for name, _, evs in scapes for e in evs]
        sets[split] = ([(name, audio) for name, audio, _ in scapes], refs)
    return sets, open_set_recordings(esc_clips)


def _evaluation_sets(tagger, esc_clips) -> tuple[dict, list]:
    """The scored dev and test soundscapes with their reference events, and the open set."""
    sets, open_set = evaluation_audio(esc_clips)
    scored = {split: (score_all(tagger, recs), refs) for split, (recs, refs) in sets.items()}
    return scored, score_all(tagger, open_set)


def _filed_design_row(esc_clips, backgrounds: Path, tmp: Path, results: dict) -> None:
    """``--only filed``: the design of :data:`benchmarks.filed_design.FILED_COMMIT`, trained
    and run through its own CLI on the same clips, backgrounds and recordings."""
    from benchmarks import filed_design
    from earmark.evaluation import RefEvent

    src = filed_design.checkout(filed_design.FILED_COMMIT, tmp / "filed")
    clips = [(p, label, f) for p, label, f in esc_clips if label in CLASSES and f <= 3]
    csv_path = filed_design.write_training_csv(clips, tmp / "filed-train.csv")
    cache = tmp / "filed-cache"  # cold, like the other rows
    seconds = filed_design.train(src, csv_path, backgrounds, tmp / "filed-model", cache)
    sets, open_set = evaluation_audio(esc_clips)
    found: dict = {}
    for part, recordings in [*((s, recs) for s, (recs, _) in sets.items()), ("open", open_set)]:
        found.update(
            filed_design.detect(
                src, tmp / "filed-model", recordings, tmp / f"filed-{part}", cache, CLASSES
            )
        )

    def items(recordings):
        return [Scored(name, len(audio) / 32000, None, None) for name, audio in recordings]

    def detect(item):
        events, matrix = found[item.name]
        return [RefEvent(item.name, on, off, label) for on, off, label in events], matrix

    scored = ({s: (items(recs), refs) for s, (recs, refs) in sets.items()}, items(open_set))
    system = f"design when the issue was filed ({filed_design.FILED_COMMIT}, its own CLI)"
    _run_systems({system: detect}, scored, results)
    results["training_seconds"][system] = round(seconds, 1)


def _run_systems(systems: dict, scored: tuple[dict, list], results: dict) -> None:
    """Every system on dev, test and the open set, into ``results["systems"]``."""
    sets, open_set = scored
    for system, detect in systems.items():
        row = {}
        for split, (items, refs) in sets.items():
            row[split] = run_system(detect, items, refs)
        row["false_events_open_set"] = false_per_hour(detect, open_set)
        results.setdefault("systems", {})[system] = row
        print(
            system,
            {
                k: (v.get("event_f1"), v.get("segment_f1"))
                for k, v in row.items()
                if isinstance(v, dict) and "event_f1" in v
            },
            row["false_events_open_set"],
        )


def _update_clip_accuracy(esc_clips, tagger, clip, frame, clip_seconds, frame_seconds, tmp, load):
    """``--clips-only``: clip accuracy and training time re-measured, merged into the results."""
    import json

    from benchmarks.common import RESULTS_DIR

    path = RESULTS_DIR / "custom_sed.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.pop("machine", None)
    results.update(
        _clips_and_training(esc_clips, tagger, clip, frame, clip_seconds, frame_seconds, tmp)
    )
    results["clip_accuracy_and_training_remeasured"] = {
        "load_average_at_start": [round(v, 2) for v in load],
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(results["clip_accuracy_fold5"], results["training_seconds"])
    save_result("custom_sed", results)
    return results


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", action="store_true", help="also compare head designs on dev")
    parser.add_argument(
        "--clips-only",
        action="store_true",
        help="train both models, measure only clip accuracy (clean and noisy) and training time, "
        "and update those entries of the existing results",
    )
    parser.add_argument(
        "--only",
        choices=("default", "choose-filters", "speeds", "filed"),
        help="train only this frame-head model (the default, with --choose-filters, or with "
        "--speeds 0.9,1.1; or 'filed': the design when the issue was filed, from its own code) "
        "and "
        "replace or add its row in the existing results (the other rows come from the same, "
        "deterministic, code)",
    )
    args = parser.parse_args()
    from earmark.custom.datasets import load_dataset
    from earmark.tagger import load_model

    load = os.getloadavg()
    esc = load_dataset(SHARED / "audio" / "esc10" / "esc10_meta.csv")
    esc_clips = [(c.path, c.label, c.fold) for c in esc.clips]
    sounds = SHARED / "audio" / "backgrounds" / "sounds"
    tagger = load_model(threads=2)
    results: dict = {"load_average_at_start": [round(v, 2) for v in load]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["EARMARK_EMBEDDING_CACHE"] = str(tmp / "cache")  # cold: training time is real
        for name, share in (("bg", TRAIN_BACKGROUNDS), ("others", ())):
            (tmp / name).mkdir()
            for b in share:
                (tmp / name / Path(b).name).symlink_to(sounds / b)
        for p, label, fold in esc_clips:
            if label in OTHERS and fold <= 3:
                (tmp / "others" / Path(p).name).symlink_to(p)
        for p in [q for part in music_and_speech("train") for q in part]:
            (tmp / "others" / p.name).symlink_to(p)
        keep = [i for i, c in enumerate(esc.clips) if c.label in CLASSES and c.fold <= 3]
        subset = esc.subset(keep)
        print(f"training on {len(keep)} clips")
        common = {"negatives": True, "backgrounds": str(tmp / "bg")}
        if args.only:
            import json

            from benchmarks.common import RESULTS_DIR

            previous = RESULTS_DIR / "custom_sed.json"
            results = json.loads(previous.read_text()) if previous.exists() else {}
            results.pop("machine", None)
            if args.only == "filed":
                _filed_design_row(esc_clips, tmp / "bg", tmp, results)
                results.setdefault("rows_remeasured", {})["filed"] = {
                    "load_average_at_start": [round(v, 2) for v in load],
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                }
                save_result("custom_sed", results)
                return results
            filters = args.only == "choose-filters"
            speeds = (0.9, 1.1) if args.only == "speeds" else ()
            chosen = train_model(
                subset, tmp / args.only, tagger, others=str(tmp / "others"),
                choose_filters=filters, mixture_speeds=speeds, **common,
            )[0]  # fmt: skip
            system = {
                "default": "frame-head (new default)",
                "choose-filters": "frame-head --choose-filters",
                "speeds": "frame-head --speeds 0.9,1.1",
            }[args.only]
            systems = {system: lambda item: detect_custom_scored(tagger, chosen.model_dir, item)}
            _run_systems(systems, _evaluation_sets(tagger, esc_clips), results)
            if filters:
                results["filters_chosen"] = chosen.metrics["detection"]["filters"]
            results.setdefault("rows_remeasured", {})[system] = {
                "load_average_at_start": [round(v, 2) for v in load],
                "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            }
            save_result("custom_sed", results)
            return results
        frame, frame_seconds = train_model(
            subset, tmp / "frame", tagger, others=str(tmp / "others"), **common
        )
        clip, clip_seconds = train_model(
            subset, tmp / "clip", tagger, frame_head="none", augment=0, **common
        )
        if args.clips_only:
            return _update_clip_accuracy(
                esc_clips, tagger, clip, frame, clip_seconds, frame_seconds, tmp, load
            )
        variants = {}
        if args.variants:
            for kind, evidence in (("gru", True), ("linear", True), ("conv", False)):
                name = f"{kind}{'' if evidence else '-no-audioset'}"
                variants[name] = train_model(
                    subset,
                    tmp / name,
                    tagger,
                    others=str(tmp / "others"),
                    frame_head=kind,
                    frame_audioset=evidence,
                    **common,
                )[0].model_dir
        systems = {
            "audioset-mapping": lambda item: detect_audioset_mapping(tagger, item),
            "clip-head (before)": lambda item: detect_custom_scored(tagger, clip.model_dir, item),
            "frame-head (new default)": lambda item: detect_custom_scored(
                tagger, frame.model_dir, item
            ),
        }
        for name, model_dir in variants.items():
            systems[f"frame-head {name}"] = lambda item, d=model_dir: detect_custom_scored(
                tagger, d, item
            )
        _run_systems(systems, _evaluation_sets(tagger, esc_clips), results)
        results.update(
            _clips_and_training(esc_clips, tagger, clip, frame, clip_seconds, frame_seconds, tmp)
        )
        results["cross_validated_expectation"] = frame.metrics["detection"]["cross_validation"]
        results["thresholds"] = frame.metrics["detection"]["thresholds"]
        results["warnings"] = frame.metrics["detection"]["warnings"]
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["setup"] = {
        "classes": CLASSES,
        "train": "ESC-10 folds 1-3 of the six classes; backgrounds "
        + ", ".join(TRAIN_BACKGROUNDS)
        + "; others: folds 1-3 of "
        + ", ".join(OTHERS),
        "dev": "16 x 30 s, fold-4 clips over " + ", ".join(DEV_BACKGROUNDS),
        "test": "24 x 30 s, fold-5 clips over "
        + ", ".join(TEST_BACKGROUNDS)
        + "; 3-6 events each, -5..15 dB SNR, overlaps allowed",
        "open_set": "test backgrounds in full, alarm, ambulance siren, the other music tracks, the "
        "other speech prompts, 8 x 30 s of fold-5 "
        + ", ".join(UNSEEN_OTHERS)
        + " over test backgrounds",
        "metrics": "event F1: onset collar 0.2 s, offset collar max(0.2 s, 20 %); segment F1: 1 s;"
        " PSDS1 on frame scores; all with detect's post-processing and boundary refinement",
    }
    save_result("custom_sed", results)
    return results


if __name__ == "__main__":
    main()
