"""What every sink shares: the :class:`Sink` protocol, its counters and safe names for files and
MQTT topics."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Protocol, runtime_checkable

from earmark.listen.live_events import KINDS, LiveEvent

STAT_KEYS = ("delivered", "failed_attempts", "pending", "dropped")
"""Counters every sink reports in :meth:`Sink.stats` (more may follow them)."""
EVENT_KINDS = {"all": frozenset(KINDS), "ended": frozenset({"ended"})}
"""Values of a spec's ``events`` option: which kinds of :class:`LiveEvent` a sink passes on."""
SAFE_NAME_MAX = 80
"""Longest file-name part made from a source name (a hash keeps longer ones apart)."""
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_SLUG_CHARS = re.compile(r"[^a-z0-9_-]+")


@runtime_checkable
class Sink(Protocol):
    """Where live events go.

    ``emit`` returns quickly (no network round trip on the audio path) and never raises for a
    delivery failure: failures are counted and retried. ``close`` flushes what it can within
    ``timeout`` seconds. ``stats`` gives the counters of :data:`STAT_KEYS`: ``dropped`` stays 0
    unless a documented bound is exceeded, and each drop is logged as an error.
    """

    name: str

    def emit(self, event: LiveEvent) -> None:
        """Send ``event`` on (or queue it); never blocks for long, never raises for delivery."""

    def close(self, timeout: float = 10.0) -> None:
        """Deliver or persist what is pending, waiting at most ``timeout`` seconds."""

    def stats(self) -> dict[str, object]:
        """Counters for health checks and Prometheus (at least :data:`STAT_KEYS`)."""


class Counters:
    """Thread-safe counters of a sink (``delivered``, ``failed_attempts``, ``pending``,
    ``dropped`` and any extra ones)."""

    def __init__(self, *extra: str) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys((*STAT_KEYS, *extra), 0)

    def add(self, key: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``key``."""
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def set(self, key: str, value: int) -> None:
        """Set counter ``key`` (for gauges such as ``pending``)."""
        with self._lock:
            self._values[key] = value

    def get(self, key: str) -> int:
        """The value of counter ``key``."""
        with self._lock:
            return self._values.get(key, 0)

    def snapshot(self) -> dict[str, object]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._values)


def event_json(event: LiveEvent) -> str:
    """``event.to_dict()`` as one line of compact JSON (no newline)."""
    return json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))


def event_kinds(spec: str, value: str) -> frozenset[str]:
    """The kinds named by an ``events=`` option (``all`` or ``ended``) of ``spec``."""
    try:
        return EVENT_KINDS[value]
    except KeyError:
        raise ValueError(
            f"sink {spec!r}: events={value!r} is not one of {', '.join(EVENT_KINDS)}"
        ) from None


def short_hash(text: str) -> str:
    """Six hex digits of SHA-1 of ``text``: keeps names apart that sanitising made equal."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def safe_file_part(name: str) -> str:
    """``name`` as a portable file-name part: ASCII letters, digits, ``.``, ``_``, ``-``.

    A name that had to be changed (or shortened) gets a short hash of the original, so that
    ``cam/1`` and ``cam:1`` never share a file; a name that was already safe is kept as is.
    """
    cleaned = _UNSAFE_FILE_CHARS.sub("_", name).strip("._-")
    if cleaned == name and 0 < len(name) <= SAFE_NAME_MAX:
        return name
    cleaned = cleaned[: SAFE_NAME_MAX - 7].rstrip("._-") or "source"
    return f"{cleaned}-{short_hash(name)}"


def topic_slug(name: str) -> str:
    """``name`` as one MQTT topic level in the home-automation style: lower case, ``a-z``,
    digits, ``_`` and ``-`` only (so never ``+``, ``#`` or ``/``); ``Dog barking, bark`` gives
    ``dog_barking_bark``. An empty result becomes ``unnamed``."""
    slug = _UNSAFE_SLUG_CHARS.sub("_", name.lower()).strip("_")
    return slug or "unnamed"
