"""What a new model changes on a reviewed run: its events against the run's, and against the
reviewer's decisions, before the user adopts it (``earmark review RUN_DIR --compare``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earmark.review.items import POSITIVE, Item
from earmark.review.run import Detection, Run, RunError, load_run

MIN_OVERLAP = 0.3
"""Share of the shorter event two events must overlap to count as the same sound."""


def _overlap(a: Detection | Item, b: Detection | Item) -> float:
    inter = min(a.offset, b.offset) - max(a.onset, b.onset)
    shorter = min(a.offset - a.onset, b.offset - b.onset)
    return inter / shorter if shorter > 0 and inter > 0 else 0.0


def _match(event: Detection | Item, others: Sequence[Detection]) -> Detection | None:
    best = max(
        (o for o in others if o.file == event.file), key=lambda o: _overlap(event, o), default=None
    )
    return best if best is not None and _overlap(event, best) >= MIN_OVERLAP else None


def _row(d: Detection | Item, label: str | None = None) -> dict[str, Any]:
    row = {"file": d.file, "label": d.label, "onset": d.onset, "offset": d.offset}
    return row if label is None else {**row, "new_label": label}


def compare_runs(old: Run, new: Run, items: Sequence[Item] = ()) -> dict[str, Any]:
    """New, removed and relabelled events of ``new`` against ``old``, and how ``new`` agrees
    with the reviewed ``items`` (positives found again, rejected detections gone)."""
    new_left = list(new.detections)
    unmatched, removed, relabelled, unchanged = [], [], [], 0
    for d in old.detections:  # first the same sound with the same label
        m = _match(d, [n for n in new_left if n.label == d.label])
        if m is None:
            unmatched.append(d)
        else:
            new_left.remove(m)
            unchanged += 1
    for d in unmatched:  # then the same sound under another label
        m = _match(d, new_left)
        if m is None:
            removed.append(_row(d))
        else:
            new_left.remove(m)
            relabelled.append(_row(d, m.label))
    positives = [i for i in items if i.status in POSITIVE]
    rejected = [i for i in items if i.status == "rejected"]
    found = sum(
        1
        for i in positives
        if any(_overlap(i, d) > 0 and d.label == i.label for d in new.detections)
    )
    still = sum(
        1
        for i in rejected
        if any(_overlap(i, d) > 0 and d.label == i.label for d in new.detections)
    )
    advice = (
        f"The new model finds {found} of the {len(positives)} reviewed positive events and still "
        f"reports {still} of the {len(rejected)} rejected detections; "
        f"{len(new_left)} new, {len(removed)} removed, {len(relabelled)} relabelled events."
    )
    return {
        "old_run": str(old.root),
        "new_run": str(new.root),
        "new": [_row(d) for d in new_left],
        "removed": removed,
        "relabelled": relabelled,
        "unchanged": unchanged,
        "reviewed_positives_found": [found, len(positives)],
        "rejected_still_reported": [still, len(rejected)],
        "advice": advice,
    }


def redetect(run: Run, model_dir: Path, quiet: bool = True) -> Run:
    """Detect the run's files again with the run's options and the custom classes of
    ``model_dir``, into ``RUN_DIR/reviews/compare-<model>``; that run.

    Raises:
        RunError: the detection failed (its exit code; the messages went to stderr).
    """
    import subprocess
    import sys

    out = run.reviews / f"compare-{model_dir.name}"
    argv = ["detect", *run.files, "-o", str(out), "--overwrite", "--classes", str(model_dir)]
    if (run.root / "config.yaml").is_file():
        argv[1:1] = ["--config", str(run.root / "config.yaml")]
    if quiet:
        argv.append("-q")
    code = subprocess.run([sys.executable, "-m", "earmark", *argv], check=False).returncode
    if code != 0 and not (out / "events.json").is_file():
        raise RunError(f"re-detection with {model_dir} failed (exit code {code})")
    return load_run(out)
