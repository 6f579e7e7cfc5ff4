"""One event under review and its statuses (shared by the store and the exports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

POSITIVE = ("accepted", "corrected", "added")
"""Statuses whose event is a positive example; ``rejected`` ones are hard negatives."""


@dataclass
class Item:
    """The current state of one event under review."""

    id: str
    file: str
    label: str
    onset: float
    offset: float
    status: str = "pending"
    """``pending``, ``accepted``, ``rejected``, ``corrected`` (relabelled or moved) or
    ``added`` (labelled in free mode)."""
    version: int = 0
    """Decisions applied to this event so far."""
    user: str | None = None
    time: str | None = None
    original: dict[str, Any] | None = None
    """The detection as found (``label``, ``onset``, ``offset``); ``None`` for added events."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """JSON form for the page and ``state.json``."""
        return asdict(self)
