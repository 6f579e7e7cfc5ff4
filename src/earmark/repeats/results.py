"""What ``earmark repeats`` finds: its options, pair matches, occurrences, recurring segments
and the run's result (see :mod:`earmark.repeats.matching` for how)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "KINDS",
    "FileStatus",
    "Occurrence",
    "PairMatch",
    "RepeatOptions",
    "RepeatsResult",
    "Segment",
]

KINDS = ("intro", "outro", "recap", "other")
"""Kinds of recurring segment, by where they sit in the episodes."""


@dataclass
class RepeatOptions:
    """Parameters of :func:`find_repeats` (defaults chosen on the benchmark, see docs).

    Attributes:
        min_duration: shortest recurring segment reported (seconds).
        min_votes: landmark hashes that must agree on one offset for a pair to be examined.
        max_partners: a stretch of a file already matched with this many other files is not
            matched again (keeps long series linear; the strongest candidates come first).
        window: each file is compared with the files at most this many places before and
            after it in the input order (episodes in series order): the cost grows linearly
            with the series. Segments found in some files are then looked for in all the others
            (:mod:`earmark.repeats.speed`), so an intro is found everywhere; a recap of an
            episode more than ``window`` episodes back is not.
        top_offsets: at most this many candidate offsets per pair of files.
        core_ber: a 1 s stretch with a mean BER below this is certainly the same audio.
        edge_ber: frames with a BER below this extend a segment at its edges (CUSUM level).
        max_ber: a match whose core has a higher mean BER is rejected.
        max_gap: gaps in the matched core up to this long are bridged (seconds).
        intro_region: an intro starts within this share of the episode...
        intro_max_start: ... or within this many seconds from the start.
        outro_region: an outro ends in the last share of the episode ...
        outro_max_tail: ... or within this many seconds of the end.
        theme_min_duration: an intro, outro or recap lasts at least this long (seconds);
            shorter recurring snippets (a repeated line, a sound effect) are ``other``.
        find_speed: look for the intro/outro in the files lacking them at speeds within
            +-5 % (:mod:`earmark.repeats.speed`).
    """

    min_duration: float = 5.0
    min_votes: int = 12
    max_partners: int = 8
    window: int = 12
    top_offsets: int = 16
    core_ber: float = 0.42
    edge_ber: float = 0.46
    max_ber: float = 0.42
    max_gap: float = 3.0
    intro_region: float = 0.35
    intro_max_start: float = 600.0
    outro_region: float = 0.25
    outro_max_tail: float = 300.0
    theme_min_duration: float = 7.0
    find_speed: bool = True


@dataclass
class PairMatch:
    """The same audio in two files: ``[a_start, a_end)`` in A equals ``[b_start, b_end)`` in B."""

    file_a: int
    file_b: int
    a_start: float
    a_end: float
    b_start: float
    b_end: float
    ber: float
    votes: int
    offset: int = 0  # frames: frame in B = frame in A + offset

    @property
    def duration(self) -> float:
        """Length of the match in seconds (in A)."""
        return self.a_end - self.a_start


@dataclass
class Occurrence:
    """One recurring segment in one file.

    Attributes:
        file: the file.
        segment: id of the recurring segment (cluster) it belongs to.
        kind: ``intro``, ``outro``, ``recap`` or ``other``.
        start, end: seconds from the start of the file.
        confidence: 0..1; how similar the audio is to its partners (BER) times how many
            files share it (one partner 0.5, two 0.75, four 0.94).
        ber: best (lowest) mean bit error rate against a partner (0 same, 0.5 unrelated).
        shared_with: the other files that contain this segment.
        start_spread, end_spread: interquartile range of the start and end estimated against
            each partner (seconds); large values mean an uncertain boundary.
        speed: how much faster this file plays the segment than the series (1.043: a PAL
            transfer of a 24 fps film; found by :mod:`earmark.repeats.speed`).
    """

    file: str
    segment: int
    kind: str
    start: float
    end: float
    confidence: float
    ber: float
    shared_with: list[str]
    start_spread: float = 0.0
    end_spread: float = 0.0
    speed: float = 1.0

    @property
    def duration(self) -> float:
        """``end - start`` in seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict, times rounded to ms."""
        return {
            "file": self.file,
            "segment": self.segment,
            "kind": self.kind,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration": round(self.end - self.start, 3),
            "confidence": round(self.confidence, 4),
            "ber": round(self.ber, 4),
            "start_spread": round(self.start_spread, 3),
            "end_spread": round(self.end_spread, 3),
            "speed": round(self.speed, 4),
            "shared_with": list(self.shared_with),
        }


@dataclass
class Segment:
    """A recurring segment (cluster): its kind, occurrences and the files that lack it.

    ``candidates``: for each file lacking an intro/outro, the confidence of the best candidate
    that was rejected (0..1, same scale as :attr:`Occurrence.confidence`).
    """

    id: int
    kind: str
    occurrences: list[Occurrence]
    missing: list[str]
    candidates: dict[str, float] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Files that contain the segment, in input order of their first occurrence."""
        return list(dict.fromkeys(o.file for o in self.occurrences))

    @property
    def median_duration(self) -> float:
        """Median length of the occurrences (seconds)."""
        return float(np.median([o.duration for o in self.occurrences]))

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        return {
            "id": self.id,
            "kind": self.kind,
            "files": len(self.files),
            "median_duration": round(self.median_duration, 3),
            "occurrences": [o.to_dict() for o in self.occurrences],
            "missing": list(self.missing),
            "best_candidates": {f: round(c, 4) for f, c in self.candidates.items()},
        }


@dataclass
class FileStatus:
    """One input file: decoded or not, and how long."""

    file: str
    status: str  # ok, partial, failed
    duration: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    speed: float | None = None  # relative to the series, when a segment was found in it

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        return {
            "file": self.file,
            "status": self.status,
            "duration": round(self.duration, 3),
            "speed": None if self.speed is None else round(self.speed, 4),
            "error": self.error,
            "warnings": list(self.warnings),
            "processing_seconds": round(self.seconds, 3),
        }


@dataclass
class RepeatsResult:
    """The outcome of :func:`find_repeats`."""

    files: list[FileStatus]
    segments: list[Segment]
    matches: list[PairMatch]
    timings: dict[str, float]
    options: RepeatOptions

    def occurrences(self, file: str | None = None) -> list[Occurrence]:
        """All occurrences (of one file), by file order then start time."""
        order = {f.file: i for i, f in enumerate(self.files)}
        occ = [o for s in self.segments for o in s.occurrences if file is None or o.file == file]
        return sorted(occ, key=lambda o: (order.get(o.file, 0), o.start))

    def segment(self, kind: str) -> Segment | None:
        """The (first) recurring segment of this kind, if any."""
        return next((s for s in self.segments if s.kind == kind), None)

    def not_found(self, file: str) -> list[tuple[str, float | None]]:
        """``(kind, best candidate confidence)`` of the intro/outro this file lacks; confidence
        None when the series has no such segment at all."""
        out: list[tuple[str, float | None]] = []
        for kind in ("intro", "outro"):
            s = self.segment(kind)
            if s is None:
                out.append((kind, None))
            elif file in s.missing:
                out.append((kind, s.candidates.get(file, 0.0)))
        return out

    def summary(self) -> dict[str, object]:
        """The series at a glance: per segment how many files share it; files lacking the
        intro/outro; files at another speed."""
        ok = [f for f in self.files if f.status != "failed"]
        lacking = {f.file: [k for k, _ in self.not_found(f.file)] for f in ok}
        return {
            "files": len(self.files),
            "decoded": len(ok),
            "segments": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "files": len(s.files),
                    "median_duration": round(s.median_duration, 3),
                    "missing": len(s.missing),
                }
                for s in self.segments
            ],
            "no_intro": [f for f, kinds in lacking.items() if "intro" in kinds],
            "no_outro": [f for f, kinds in lacking.items() if "outro" in kinds],
            "other_speed": {
                f.file: round(f.speed, 4)
                for f in ok
                if f.speed is not None and abs(f.speed - 1.0) > 0.002
            },
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict of the whole run."""
        per_file = []
        for f in self.files:
            occ = self.occurrences(f.file)
            absent = [
                {"segment": s.id, "kind": s.kind} for s in self.segments if f.file in s.missing
            ]
            not_found = [
                {"kind": k, "best_candidate_confidence": None if c is None else round(c, 4)}
                for k, c in (self.not_found(f.file) if f.status != "failed" else [])
            ]
            per_file.append(
                {
                    **f.to_dict(),
                    "segments": [o.to_dict() for o in occ],
                    "absent": absent,
                    "not_found": not_found,
                }
            )
        return {
            "summary": self.summary(),
            "files": per_file,
            "segments": [s.to_dict() for s in self.segments],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "options": self.options.__dict__,
        }
