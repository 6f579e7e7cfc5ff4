"""Label maps: predicted AudioSet classes translated into the labels of a reference.

A label map (YAML, or one shipped in ``earmark/data/labelmaps/``) lists, for each reference label,
the AudioSet class names (or MIDs) that count as that label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from earmark.evaluation.references import EventLike, RefEvent, file_key

__all__ = ["drop_labels", "load_label_map", "map_predictions", "validate_label_map"]


def map_predictions(
    predicted: Iterable[EventLike],
    label_map: Mapping[str, Sequence[str]],
    merge_gap: float = 0.0,
) -> list[RefEvent]:
    """Translate predicted AudioSet events into reference-label events.

    Args:
        predicted: predicted events (``earmark.events.Event`` or anything with ``file, label,
            onset, offset``; an ``mid`` attribute, when present, may be used in the map instead of
            the display name).
        label_map: reference label -> AudioSet class names (or MIDs) that count as that label.
            A prediction whose class is listed under several reference labels yields one event
            for each; predictions of unlisted classes are dropped.
        merge_gap: predictions of the same reference label in the same file are merged into their
            union when they overlap or are at most this many seconds apart, so that two AudioSet
            synonyms firing together (e.g. Dog and Bark) become one event, not one match and one
            insertion.

    Returns:
        Reference-label events sorted by file, label and onset.
    """
    targets: dict[str, list[str]] = defaultdict(list)
    for ref_label, names in label_map.items():
        if isinstance(names, str):
            raise TypeError(f"label_map[{ref_label!r}] must be a list of class names, not a str")
        for name in names:
            if ref_label not in targets[name]:
                targets[name].append(ref_label)

    spans: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for event in predicted:
        labels = targets.get(event.label, [])
        mid = getattr(event, "mid", None)
        if mid is not None:
            labels = labels + [x for x in targets.get(mid, []) if x not in labels]
        for ref_label in labels:
            spans[(str(event.file), ref_label)].append((float(event.onset), float(event.offset)))

    out: list[RefEvent] = []
    for (file, ref_label), intervals in sorted(spans.items()):
        intervals.sort()
        start, stop = intervals[0]
        for onset, offset in intervals[1:]:
            if onset <= stop + merge_gap:
                stop = max(stop, offset)
            else:
                out.append(RefEvent(file, start, stop, ref_label))
                start, stop = onset, offset
        out.append(RefEvent(file, start, stop, ref_label))
    return out


def drop_labels(events: Iterable[Any], labels_by_file: Mapping[str, Iterable[str]]) -> list[Any]:
    """The events whose label is not excluded for their file.

    Use it on both the reference and the predictions when a recording makes some classes
    unscorable (e.g. a soundscape whose background is itself a street with people talking cannot
    score ``human_voice``). Keys of ``labels_by_file`` are matched by stem, like the metrics.
    """
    excluded = {file_key(f): set(labels) for f, labels in labels_by_file.items()}
    return [e for e in events if e.label not in excluded.get(file_key(e.file), ())]


def load_label_map(source: str | Path) -> dict[str, list[str]]:
    """Load a label map (reference label -> AudioSet class names) from YAML.

    Args:
        source: a path to a YAML file, or the name of a map shipped with earmark
            (``earmark/data/labelmaps/<name>.yaml``, e.g. ``"esc10"``).
    """
    import yaml

    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("earmark").joinpath("data", "labelmaps", f"{source}.yaml")
        if not resource.is_file():
            raise FileNotFoundError(f"no label map file or built-in label map named {source!r}")
        text = resource.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"label map {source}: expected a mapping of label -> list of classes")
    label_map: dict[str, list[str]] = {}
    for label, names in data.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"label map {source}: {label!r} must map to a list of class names")
        label_map[str(label)] = list(names)
    return label_map


def validate_label_map(label_map: Mapping[str, Sequence[str]], class_names: Iterable[str]) -> None:
    """Raise ``ValueError`` listing every name in ``label_map`` that is not in ``class_names``."""
    known = set(class_names)
    unknown = sorted(
        {(lbl, n) for lbl, names in label_map.items() for n in names if n not in known}
    )
    if unknown:
        listed = ", ".join(f"{lbl}: {n!r}" for lbl, n in unknown)
        raise ValueError(f"label map names not among the model's classes: {listed}")
