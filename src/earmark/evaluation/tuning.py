"""``earmark tune``: choose post-processing parameters on annotated development recordings.

Given framewise scores (as saved by ``earmark detect``) and reference annotations, :func:`tune`
picks per-class on-thresholds and the global median filter length and minimum duration that
maximise an F1 score, by coordinate ascent: the global parameters first (each over its grid,
the others fixed), then each reference label's threshold with the others fixed, ``passes``
times. The threshold of a reference label applies to every AudioSet class mapped to it.

Only the mapped AudioSet classes can change the metric, so the scores are cut down to those
columns once. Events of different classes never interact in :func:`earmark.events.scores_to_events`,
and the micro-averaged F1 is a function of per-label counts (``Ntp``, ``Nsys``, ``Nref``), so
the counts of every (label, threshold) pair are computed once per setting of the global
parameters and coordinate ascent over thresholds is done on those tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from earmark.events import PostprocessOptions, scores_to_events
from earmark.labels import Label
from earmark.outputs import SCORES_SUFFIX, atomic_write_text, read_scores, write_json

if TYPE_CHECKING:
    from earmark.evaluation import RefEvent

__all__ = [
    "DEFAULT_MEDIAN_FILTERS",
    "DEFAULT_MIN_DURATIONS",
    "DEFAULT_THRESHOLDS",
    "METRICS",
    "ScoredFile",
    "TuningResult",
    "add_parser",
    "evaluate",
    "load_scores_folder",
    "tune",
]

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
DEFAULT_MEDIAN_FILTERS = (0.0, 0.64, 1.6, 2.24)  # 1, 3, 5, 7 frames of 0.32 s
DEFAULT_MIN_DURATIONS = (0.0, 0.32, 0.64, 0.96, 1.28)
METRICS = ("event", "event1s", "segment")


@dataclass(frozen=True)
class ScoredFile:
    """Framewise scores of one recording: ``scores`` is ``(frames, classes)``."""

    scores: np.ndarray
    hop: float
    duration: float | None = None


@dataclass
class TuningResult:
    """Parameters chosen by :func:`tune` and the metrics before and after."""

    metric: str
    threshold: float
    """Global on-threshold, kept for classes not in the label map."""
    thresholds: dict[str, float]
    """Per AudioSet class name: the tuned on-threshold (of the label it is mapped to)."""
    label_thresholds: dict[str, float]
    """Per reference label: the tuned on-threshold."""
    median_filter: float
    min_duration: float
    merge_gap: float
    before: dict[str, float]
    """``event``, ``event1s`` and ``segment`` F1 with the starting options."""
    after: dict[str, float]
    """The same with the tuned options."""
    n_files: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def options(self, base: PostprocessOptions | None = None) -> PostprocessOptions:
        """The tuned :class:`PostprocessOptions` (other fields from ``base``)."""
        return dataclasses.replace(
            base or PostprocessOptions(),
            threshold=self.threshold,
            thresholds=dict(self.thresholds),
            median_filter=self.median_filter,
            min_duration=self.min_duration,
            merge_gap=self.merge_gap,
        )

    def config(self) -> dict[str, Any]:
        """The nested config that ``earmark detect --config`` accepts."""
        return {
            "postprocess": {
                "threshold": self.threshold,
                "thresholds": dict(self.thresholds),
                "median_filter": self.median_filter,
                "min_duration": self.min_duration,
                "merge_gap": self.merge_gap,
            }
        }

    def report(self) -> dict[str, Any]:
        """Everything as plain JSON types."""
        return {
            "metric": self.metric,
            "n_files": self.n_files,
            "before": self.before,
            "after": self.after,
            "label_thresholds": self.label_thresholds,
            **self.config(),
            "history": self.history,
        }


def _evaluation() -> ModuleType:
    """``earmark.evaluation``, imported on first use (it pulls in scipy.optimize, slow to load
    for ``earmark --help``)."""
    from earmark import evaluation

    return evaluation


def _as_scored(value: Any) -> ScoredFile:
    if isinstance(value, ScoredFile):
        return value
    if hasattr(value, "scores") and hasattr(value, "hop"):
        return ScoredFile(value.scores, float(value.hop), getattr(value, "duration", None))
    scores, hop, *rest = value
    return ScoredFile(scores, float(hop), float(rest[0]) if rest and rest[0] is not None else None)


def _metric_counts(
    metric: str,
    refs: list[RefEvent],
    pred: list[RefEvent],
    labels: list[str],
    durations: Mapping[str, float],
) -> dict[str, tuple[int, int, int]]:
    """``{label: (Ntp, Nsys, Nref)}`` of the chosen metric."""
    ev = _evaluation()
    if metric == "event":
        result = ev.event_based_metrics(refs, pred, labels=labels)
    elif metric == "event1s":
        result = ev.event_based_metrics(
            refs, pred, t_collar=1.0, percentage_of_length=0.5, labels=labels
        )
    elif metric == "segment":
        result = ev.segment_based_metrics(refs, pred, durations=durations, labels=labels)
    else:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return {
        c: (int(v["Ntp"]), int(v["Nsys"]), int(v["Nref"])) for c, v in result["class_wise"].items()
    }


def _f1(counts: Iterable[tuple[int, int, int]]) -> float:
    tp = nsys = nref = 0
    for a, b, c in counts:
        tp, nsys, nref = tp + a, nsys + b, nref + c
    return 2.0 * tp / (nsys + nref) if nsys + nref > 0 else 0.0


class _Problem:
    """Scores restricted to the mapped classes, references by file key, and event counting."""

    def __init__(
        self,
        scores_by_file: Mapping[str, Any],
        references: Sequence[RefEvent],
        label_map: Mapping[str, Sequence[str]],
        labels: Sequence[Label],
        ignored: Mapping[str, Iterable[str]] | None,
    ) -> None:
        ev = _evaluation()
        owner: dict[str, str] = {}
        for ref_label, names in label_map.items():
            for name in names:
                if name in owner and owner[name] != ref_label:
                    raise ValueError(
                        f"class {name!r} is mapped to both {owner[name]!r} and {ref_label!r}: "
                        "per-class thresholds need each class under one label"
                    )
                owner[name] = ref_label
        by_name = {lab.name: lab for lab in labels}
        by_mid = {lab.mid: lab for lab in labels}
        columns: dict[int, str] = {}  # score column -> reference label
        for name, ref_label in owner.items():
            lab = by_name.get(name) or by_mid.get(name)
            if lab is not None:
                columns[lab.index] = ref_label
        if not columns:
            raise ValueError("no class of the label map is among the score columns")
        self.cols = sorted(columns)
        self.col_labels = [Label(i, labels[c].mid, labels[c].name) for i, c in enumerate(self.cols)]
        self.col_owner = [columns[c] for c in self.cols]
        self.label_map = {k: list(v) for k, v in label_map.items()}
        self.files = {ev.file_key(f): _as_scored(v) for f, v in scores_by_file.items()}
        if not self.files:
            raise ValueError("no scored files")
        self.sub = {k: np.ascontiguousarray(v.scores[:, self.cols]) for k, v in self.files.items()}
        self.durations = {
            k: (v.duration if v.duration is not None else v.scores.shape[0] * v.hop)
            for k, v in self.files.items()
        }
        self.ignored = {ev.file_key(k): list(v) for k, v in (ignored or {}).items()}
        refs = [e for e in references if ev.file_key(e.file) in self.files]
        refs = [dataclasses.replace(e, file=ev.file_key(e.file)) for e in refs]
        self.refs = ev.drop_labels(refs, self.ignored) if self.ignored else refs
        self.eval_labels = sorted(set(label_map) | {e.label for e in self.refs})
        self.tunable = sorted({self.col_owner[i] for i in range(len(self.cols))})

    def predictions(self, options: PostprocessOptions) -> list[RefEvent]:
        ev = _evaluation()
        events = []
        for key, scored in self.files.items():
            events += scores_to_events(
                self.sub[key],
                scored.hop,
                self.col_labels,
                options,
                file=key,
                duration=self.durations[key],
            )
        mapped = ev.map_predictions(events, self.label_map)
        return ev.drop_labels(mapped, self.ignored) if self.ignored else mapped

    def counts(self, metric: str, options: PostprocessOptions) -> dict[str, tuple[int, int, int]]:
        return _metric_counts(
            metric, self.refs, self.predictions(options), self.eval_labels, self.durations
        )

    def all_metrics(self, options: PostprocessOptions) -> dict[str, float]:
        pred = self.predictions(options)
        out = {}
        for metric in METRICS:
            counts = _metric_counts(metric, self.refs, pred, self.eval_labels, self.durations)
            out[metric] = round(_f1(counts.values()), 4)
        return out


def evaluate(
    scores_by_file: Mapping[str, Any],
    references: Sequence[RefEvent],
    label_map: Mapping[str, Sequence[str]],
    labels: Sequence[Label],
    options: PostprocessOptions,
    ignored: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, float]:
    """Micro F1 (``event``, ``event1s``, ``segment``) of ``options`` on scored files.

    Only the classes of ``label_map`` are post-processed; ``thresholds`` in ``options`` must
    therefore name mapped classes (others are ignored).
    """
    problem = _Problem(scores_by_file, references, label_map, labels, ignored)
    names = {lab.name.lower() for lab in problem.col_labels} | {
        lab.mid for lab in problem.col_labels
    }
    kept = {k: v for k, v in options.thresholds.items() if k.strip().lower() in names or k in names}
    return problem.all_metrics(dataclasses.replace(options, thresholds=kept))


def tune(
    scores_by_file: Mapping[str, Any],
    references: Sequence[RefEvent],
    label_map: Mapping[str, Sequence[str]],
    labels: Sequence[Label],
    metric: str = "event",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    median_filters: Sequence[float] = DEFAULT_MEDIAN_FILTERS,
    min_durations: Sequence[float] = DEFAULT_MIN_DURATIONS,
    passes: int = 2,
    base: PostprocessOptions | None = None,
    ignored: Mapping[str, Iterable[str]] | None = None,
    smooth: bool = True,
) -> TuningResult:
    """Per-label thresholds, median filter and minimum duration maximising micro F1.

    Args:
        scores_by_file: file (any path or name; matched to the references by stem) ->
            framewise scores: a :class:`ScoredFile`, an ``earmark.scoring.FrameScores`` or a
            tuple ``(scores, hop[, duration])``.
        references: reference events (``earmark.evaluation.load_reference``). Events of files
            without scores are left out.
        label_map: reference label -> AudioSet class names (or mids); each class under at most
            one label.
        labels: the classes of the score columns (``labels[j]`` names column ``j``).
        metric: ``event`` (0.2 s collar), ``event1s`` (1 s collar, 50 % of length) or
            ``segment`` (1 s segments).
        thresholds, median_filters, min_durations: the grids searched.
        passes: rounds of coordinate ascent.
        base: starting options (default :class:`PostprocessOptions`); ``merge_gap``, the
            global ``threshold`` and ``off_threshold`` are kept from it, and the starting
            per-label threshold is its ``threshold``.
        ignored: file -> reference labels not scored in that file (both sides are dropped).
        smooth: choose each label's threshold by the F1 averaged over it and its neighbours in
            the grid, which prefers broad optima to lucky spikes (less fitting to noise on a
            small development set); a change is kept only when that average improves and
            the F1 itself does not drop, so the F1 on the tuning set never decreases.

    Returns:
        A :class:`TuningResult`; ``before`` are the metrics of ``base``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    for name, grid in (
        ("thresholds", thresholds),
        ("median_filters", median_filters),
        ("min_durations", min_durations),
    ):
        if not len(grid):
            raise ValueError(f"{name}: empty grid")
    if any(not 0.0 < t <= 1.0 for t in thresholds):
        raise ValueError("thresholds must be in (0, 1]")
    base = base or PostprocessOptions()
    base = dataclasses.replace(base, thresholds={}, labels=None, exclude=None, group_by=None)
    problem = _Problem(scores_by_file, references, label_map, labels, ignored)
    grid = sorted({float(t) for t in thresholds})
    if problem.tunable and base.off_threshold is not None:
        grid = [t for t in grid if t >= base.off_threshold] or [max(grid)]

    # tables[(median, min_dur)][threshold] = {label: (Ntp, Nsys, Nref)}
    tables: dict[tuple[float, float], dict[float, dict[str, tuple[int, int, int]]]] = {}

    def table(median: float, min_dur: float) -> dict[float, dict[str, tuple[int, int, int]]]:
        key = (median, min_dur)
        if key not in tables:
            opts = dataclasses.replace(base, median_filter=median, min_duration=min_dur)
            tables[key] = {
                t: problem.counts(metric, dataclasses.replace(opts, threshold=t)) for t in grid
            }
        return tables[key]

    def score(median: float, min_dur: float, chosen: Mapping[str, float]) -> float:
        tab = table(median, min_dur)
        counts = []
        for label in problem.eval_labels:
            t = chosen.get(label)
            if t is None:  # not tunable: no mapped class in the scores, nothing predicted
                t = grid[0]
            counts.append(tab[t].get(label, (0, 0, 0)))
        return _f1(counts)

    start = min(grid, key=lambda t: abs(t - base.threshold))
    chosen = dict.fromkeys(problem.tunable, start)
    median, min_dur = float(base.median_filter), float(base.min_duration)
    best = score(median, min_dur, chosen)
    history: list[dict[str, Any]] = [{"step": "start", "f1": round(best, 4)}]
    value: float | list[float]
    for n_pass in range(passes):
        improved = False
        for value in median_filters:
            f1 = score(float(value), min_dur, chosen)
            if f1 > best + 1e-12:
                best, median, improved = f1, float(value), True
        for value in min_durations:
            f1 = score(median, float(value), chosen)
            if f1 > best + 1e-12:
                best, min_dur, improved = f1, float(value), True
        history.append(
            {
                "step": f"pass {n_pass + 1} global",
                "median_filter": median,
                "min_duration": min_dur,
                "f1": round(best, 4),
            }
        )
        for label in problem.tunable:
            raw = [score(median, min_dur, {**chosen, label: t}) for t in grid]
            if smooth:  # the mean over each grid point and its neighbours: prefer plateaus
                value = [float(np.mean(raw[max(0, i - 1) : i + 2])) for i in range(len(raw))]
            else:
                value = raw
            current = grid.index(chosen[label])
            pick = max(range(len(grid)), key=lambda i: (value[i], i == current))
            if value[pick] > value[current] + 1e-12 and raw[pick] >= best - 1e-12:
                best, chosen, improved = raw[pick], {**chosen, label: grid[pick]}, True
        history.append({"step": f"pass {n_pass + 1} thresholds", "f1": round(best, 4)})
        if not improved:
            break

    class_thresholds = {
        problem.col_labels[i].name: chosen[problem.col_owner[i]] for i in range(len(problem.cols))
    }
    result = TuningResult(
        metric=metric,
        threshold=float(base.threshold),
        thresholds=class_thresholds,
        label_thresholds=dict(sorted(chosen.items())),
        median_filter=median,
        min_duration=min_dur,
        merge_gap=float(base.merge_gap),
        before=problem.all_metrics(base),
        after={},
        n_files=len(problem.files),
        history=history,
    )
    result.after = problem.all_metrics(result.options(base))
    return result


# ---------------------------------------------------------------------------- files
def load_scores_folder(path: str | Path) -> tuple[dict[str, ScoredFile], list[Label]]:
    """Every ``*.scores.npz`` under ``path`` (an ``earmark detect`` output folder), by file key.

    Raises:
        ValueError: no scores files, two files with the same stem, or different class lists.
    """
    ev = _evaluation()
    path = Path(path)
    if not path.exists():
        raise ValueError(f"predictions folder not found: {path}")
    paths = [path] if path.is_file() else sorted(path.rglob(f"*{SCORES_SUFFIX}"))
    if not paths:
        raise ValueError(f"no *{SCORES_SUFFIX} files under {path} (run earmark detect -o there)")
    out: dict[str, ScoredFile] = {}
    labels: list[Label] | None = None
    for p in paths:
        scores, hop, labs, meta = read_scores(p)
        if labels is None:
            labels = labs
        elif [lab.name for lab in labs] != [lab.name for lab in labels]:
            raise ValueError(f"{p}: its classes differ from those of the other scores files")
        name = p.name[: -len(SCORES_SUFFIX)] if p.name.endswith(SCORES_SUFFIX) else p.name
        key = ev.file_key(meta.get("file") or name)
        if key in out:
            raise ValueError(f"two scores files for the recording {key!r} (under {path})")
        duration = meta.get("duration")
        out[key] = ScoredFile(scores, hop, float(duration) if duration is not None else None)
    assert labels is not None
    return out, labels


_REF_SUFFIXES = (".tsv", ".txt", ".csv")


def load_references(path: str | Path) -> tuple[list[RefEvent], set[str]]:
    """Reference events of an annotation file or folder, and the file keys they annotate.

    In a folder, every ``.tsv``/``.txt``/``.csv`` file (recursively) is read; the stem of each
    annotation file counts as annotated even when it lists no event.
    """
    ev = _evaluation()
    path = Path(path)
    if path.is_file():
        events = ev.load_reference(path)
        return events, {ev.file_key(e.file) for e in events}
    if not path.is_dir():
        raise ValueError(f"reference annotations not found: {path}")
    events, keys = [], set()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix.lower() in _REF_SUFFIXES:
            found = ev.load_reference(p)
            events += found
            keys |= {ev.file_key(e.file) for e in found}
            if not any(ev.file_key(e.file) != p.stem for e in found):
                keys.add(p.stem)
    if not keys:
        raise ValueError(f"no annotation files (.tsv, .txt, .csv) under {path}")
    return events, keys


def _grid(text: str | None, default: Sequence[float], name: str) -> tuple[float, ...]:
    if text is None:
        return tuple(default)
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--{name}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name}: empty")
    return values


def cmd_tune(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark tune``: write a tuned config and a report; exit 2 on unusable inputs."""
    try:
        scored, labels = load_scores_folder(args.predictions)
        references, annotated = load_references(args.reference)
        label_map = _evaluation().load_label_map(args.label_map)
        missing = sorted(set(scored) - annotated)
        for key in missing:
            print(f"earmark: no reference annotation for {key}: left out", file=sys.stderr)
        scored = {k: v for k, v in scored.items() if k in annotated}
        if not scored:
            raise ValueError("no scored file has a reference annotation (files match by stem)")
        result = tune(
            scored,
            references,
            label_map,
            labels,
            metric=args.metric,
            thresholds=_grid(args.thresholds, DEFAULT_THRESHOLDS, "thresholds"),
            median_filters=_grid(args.median_filters, DEFAULT_MEDIAN_FILTERS, "median-filters"),
            min_durations=_grid(args.min_durations, DEFAULT_MIN_DURATIONS, "min-durations"),
            passes=args.passes,
        )
    except (OSError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# earmark tune: {args.metric} F1 on {result.n_files} file(s) "
        f"{result.before[args.metric]:.4f} -> {result.after[args.metric]:.4f}\n"
        f"# use: earmark detect --config {out.name} ...\n"
    )
    import yaml

    atomic_write_text(out, header + yaml.safe_dump(result.config(), sort_keys=False))
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    report = {
        "predictions": str(args.predictions),
        "reference": str(args.reference),
        "label_map": str(args.label_map),
        "config": str(out),
        "files_without_reference": missing,
        **result.report(),
    }
    write_json(report_path, report)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        for name in METRICS:
            mark = " (tuned)" if name == args.metric else ""
            print(f"{name:>8} F1: {result.before[name]:.4f} -> {result.after[name]:.4f}{mark}")
        print(f"config: {out}\nreport: {report_path}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``earmark tune`` on the sub-command parsers of the main parser."""
    p = subparsers.add_parser(
        "tune",
        help="tune thresholds and filters on annotated recordings",
        description="Choose per-class thresholds, the median filter and the minimum duration "
        "that maximise F1 on annotated development recordings, from the framewise scores of "
        "an 'earmark detect' run. Writes a config for 'earmark detect --config' and a report.",
    )
    p.add_argument("predictions", help="output folder of 'earmark detect' (with scores)")
    p.add_argument("reference", help="reference annotations: a file or a folder")
    p.add_argument(
        "--label-map", default="esc10", help="built-in map name or YAML file (default esc10)"
    )
    p.add_argument("--metric", choices=METRICS, default="event", help="F1 to maximise")
    p.add_argument("-o", "--output", default="tuned.yaml", help="config to write")
    p.add_argument("--report", help="JSON report (default: the config path with .json)")
    p.add_argument("--thresholds", help="threshold grid, comma-separated")
    p.add_argument("--median-filters", help="median filter grid (seconds), comma-separated")
    p.add_argument("--min-durations", help="minimum duration grid (seconds), comma-separated")
    p.add_argument("--passes", type=int, default=2, help="coordinate ascent rounds (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_tune)
    return p
