"""Recurring segments across files (TV intros, end credits, recaps, jingles): the ``repeats``
wing. It uses the core (decoding, outputs) and nothing uses it but the command line.

* :mod:`.fingerprint`: landmark hashes and sub-fingerprints of a file;
* :mod:`.matching`: candidate pairs from inverted indexes, pair matches, the API;
* :mod:`.align`: aligned bit error curves, matched stretches and their edges;
* :mod:`.clusters`: clusters of occurrences, their boundaries, kinds;
* :mod:`.speed`: the second pass (segments in files lacking them, at other speeds);
* :mod:`.results`: what is found (occurrences, segments, the run's result);
* :mod:`.outputs`: tables, chapter files, edit decision lists, events;
* :mod:`.cli`: ``earmark repeats``.
"""

from earmark.repeats.cli import add_parser
from earmark.repeats.matching import default_jobs, find_repeats, find_repeats_in_fingerprints
from earmark.repeats.outputs import write_repeats
from earmark.repeats.results import (
    KINDS,
    FileStatus,
    Occurrence,
    PairMatch,
    RepeatOptions,
    RepeatsResult,
    Segment,
)

__all__ = [
    "KINDS",
    "FileStatus",
    "Occurrence",
    "PairMatch",
    "RepeatOptions",
    "RepeatsResult",
    "Segment",
    "add_parser",
    "default_jobs",
    "find_repeats",
    "find_repeats_in_fingerprints",
    "write_repeats",
]
