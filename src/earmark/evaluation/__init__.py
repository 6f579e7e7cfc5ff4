"""Measuring detection quality: the ``evaluation`` wing.

* :mod:`.metrics`: event- and segment-based metrics (DCASE / sed_eval definitions);
* :mod:`.references`: reference annotations (DCASE TSV, Audacity, Raven, JAMS, CSV);
* :mod:`.label_maps`: AudioSet predictions translated into reference labels;
* :mod:`.psds`: PSDS1 and PSDS2 from framewise scores;
* :mod:`.runs` and :mod:`.cli`: ``earmark evaluate``, an output folder against references;
* :mod:`.tuning`: ``earmark tune``, post-processing chosen on annotated recordings;
* :mod:`.soundscape` and :mod:`.synth`: strongly labelled soundscapes mixed from real
  recordings (``earmark synth``), to measure on.
* :mod:`.soundscape_set`: the benchmark set of such soundscapes from the shared data (built by
  the tests and ``benchmarks/sed``).

The names of those three are importable from here (and from :mod:`.metrics`); they load on
first use, so that the command line starts fast (the metrics pull in scipy).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "EventLike",
    "RefEvent",
    "drop_labels",
    "event_based_metrics",
    "file_key",
    "load_jams",
    "load_label_map",
    "load_reference",
    "map_predictions",
    "segment_based_metrics",
    "validate_label_map",
]

if TYPE_CHECKING:  # pragma: no cover
    from earmark.evaluation.metrics import (
        EventLike,
        RefEvent,
        drop_labels,
        event_based_metrics,
        file_key,
        load_jams,
        load_label_map,
        load_reference,
        map_predictions,
        segment_based_metrics,
        validate_label_map,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("earmark.evaluation.metrics"), name)
    raise AttributeError(f"module 'earmark.evaluation' has no attribute {name!r}")
