"""A run folder of ``earmark detect`` as the review page sees it: detections with stable ids,
the threshold each was found at, and where the audio is."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CUSTOM_MID_PREFIX = "custom:"
"""Mid of the custom classes (``earmark.custom.model``), repeated so this module stays light."""
DEFAULT_THRESHOLD = 0.15


class RunError(ValueError):
    """A run folder that cannot be reviewed; the message names the file and the cause."""


@dataclass(frozen=True)
class Detection:
    """One event of the run, as detected."""

    id: str
    file: str
    label: str
    onset: float
    offset: float
    peak: float
    threshold: float
    custom: bool
    alternatives: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the page."""
        return {
            "id": self.id,
            "file": self.file,
            "label": self.label,
            "onset": self.onset,
            "offset": self.offset,
            "peak": self.peak,
            "threshold": self.threshold,
            "custom": self.custom,
            "alternatives": [list(a) for a in self.alternatives],
        }


@dataclass
class Run:
    """The detections of a run folder and its audio files."""

    root: Path
    detections: list[Detection]
    files: list[str]
    classes: list[str] = field(default_factory=list)
    """Every class name the run knows (its detections' and the custom model's)."""
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds per file, from the run's ``manifest.json`` (when it has one)."""

    def by_id(self) -> dict[str, Detection]:
        """Detections by id."""
        return {d.id: d for d in self.detections}

    @property
    def reviews(self) -> Path:
        """The folder holding the reviews of this run."""
        return self.root / "reviews"


def detection_id(file: str, label: str, onset: float, offset: float) -> str:
    """A stable id: the same event of the same run always gets the same one."""
    key = f"{file}\t{label}\t{onset:.3f}\t{offset:.3f}"
    return "d" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _thresholds(root: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    """Default threshold, per-class AudioSet thresholds and custom-class thresholds."""
    config_path = root / "config.yaml"
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RunError(f"{config_path}: unreadable ({exc})") from None
    post = config.get("postprocess") or {}
    default = float(post.get("threshold") or DEFAULT_THRESHOLD)
    per_class = {str(k): float(v) for k, v in (post.get("thresholds") or {}).items()}
    custom: dict[str, float] = {}
    model_dir = config.get("classes")
    if model_dir and (Path(model_dir) / "thresholds.json").is_file():
        try:
            data = json.loads((Path(model_dir) / "thresholds.json").read_text(encoding="utf-8"))
            custom = {str(k): float(v["threshold"]) for k, v in (data.get("classes") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            custom = {}
    return default, per_class, custom


def load_run(root: str | Path) -> Run:
    """Read the run folder ``root`` (``events.json`` of ``earmark detect``).

    Raises:
        RunError: no such folder, no ``events.json`` or an unreadable one.
    """
    root = Path(root).expanduser().resolve()
    path = root / "events.json"
    if not root.is_dir():
        raise RunError(f"{root}: no such run folder")
    if not path.is_file():
        raise RunError(f"{root}: not a run folder of 'earmark detect' (no events.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["events"] if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise TypeError("events is not a list")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: unreadable events ({exc})") from None
    default, per_class, custom = _thresholds(root)
    return run_from_rows(root, rows, _durations(root), default, per_class, custom, str(path))


def run_from_rows(
    root: Path,
    rows: list[Any],
    durations: dict[str, float],
    default: float = DEFAULT_THRESHOLD,
    per_class: dict[str, float] | None = None,
    custom: dict[str, float] | None = None,
    where: str = "events",
) -> Run:
    """A run from event rows as ``events.json`` holds them (``earmark.events.Event.to_dict``),
    e.g. a service job's; its reviews go to ``root/reviews``.

    Raises:
        RunError: a malformed row (``where`` names its source).
    """
    per_class, custom = per_class or {}, custom or {}
    detections: list[Detection] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=1):
        try:
            file, label = str(row["file"]), str(row["label"])
            onset, offset = float(row["onset"]), float(row["offset"])
            peak = float(row.get("peak") or 0.0)
            mid = str(row.get("mid") or "")
            alternatives = tuple(
                (str(a["label"]), float(a.get("peak") or 0.0))
                for a in row.get("alternatives") or ()
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunError(f"{where}: event {n} is malformed ({exc})") from None
        if not (math.isfinite(onset) and math.isfinite(offset)):
            raise RunError(f"{where}: event {n} has no finite onset/offset")
        if not math.isfinite(peak):
            peak = 0.0
        is_custom = mid.startswith(CUSTOM_MID_PREFIX)
        name = mid[len(CUSTOM_MID_PREFIX) :] if is_custom else label
        threshold = (custom.get(name) if is_custom else None) or per_class.get(label) or default
        ident = detection_id(file, label, onset, offset)
        while ident in seen:
            ident += "x"
        seen.add(ident)
        detections.append(
            Detection(ident, file, label, onset, offset, peak, threshold, is_custom, alternatives)
        )
    files = sorted({d.file for d in detections} | set(durations))
    classes = sorted({d.label for d in detections} | set(custom))
    return Run(root, detections, files, classes, durations)


def _durations(root: Path) -> dict[str, float]:
    """Seconds per processed file of the run (``manifest.json``; empty when unreadable)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        return {
            str(f["path"]): float(f["duration"])
            for f in manifest.get("files") or ()
            if f.get("status") == "ok" and f.get("duration") is not None
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
