"""What ``earmark listen`` emits: one :class:`LiveEvent` per detected event (or its start)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

EVENT_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4a57-9b1e-6b1f6f0e2a11")
"""Namespace of the events' stable ids (uuid5 of source, label and stream onset)."""

KINDS = ("started", "ended")


def utc_iso(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class LiveEvent:
    """One event heard on a live source.

    ``kind`` is ``"ended"`` for a finished event (all fields set) or ``"started"`` for the
    optional notice sent when an event begins (``stream_offset``, ``offset_utc``, ``mean`` are
    ``None`` then). Stream times are seconds of audio since the source was first opened, gaps
    (reconnections) included; wall-clock times are UTC. ``id`` is the same for the started
    notice and the ended event of one event, and for a re-sent event: sinks use it to
    de-duplicate.
    """

    source: str
    label: str
    mid: str
    kind: str
    stream_onset: float
    stream_offset: float | None
    onset_utc: str
    offset_utc: str | None
    peak: float
    mean: float | None
    clip: str | None = None
    """Path of the audio clip saved with pre/post roll (``--save-clips``), if any."""
    key_onset: float | None = None
    """Stream time of the frame the event's scores first fired in: unlike ``stream_onset``
    (refined on the signal when the event ends) it is the same in the started notice and the
    ended event, and so is their ``id``."""

    @property
    def id(self) -> str:
        """Stable id of the event: uuid5 of source, class and onset (ms; ``key_onset`` when
        set)."""
        onset = self.stream_onset if self.key_onset is None else self.key_onset
        key = f"{self.source}\n{self.mid}\n{round(onset * 1000)}"
        return str(uuid.uuid5(EVENT_NAMESPACE, key))

    @property
    def duration(self) -> float | None:
        """Seconds from onset to offset (``None`` for a started notice)."""
        if self.stream_offset is None:
            return None
        return round(self.stream_offset - self.stream_onset, 3)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict: every field, plus ``id`` and ``duration``; times rounded to ms,
        scores to 4 decimals."""
        data = asdict(self)
        data["stream_onset"] = round(self.stream_onset, 3)
        if self.stream_offset is not None:
            data["stream_offset"] = round(self.stream_offset, 3)
        data["peak"] = round(self.peak, 4)
        if self.mean is not None:
            data["mean"] = round(self.mean, 4)
        data.pop("key_onset")
        return {"id": self.id, **data, "duration": self.duration}
