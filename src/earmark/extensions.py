"""Classes beside the model's own, added by a wing: the core asks for them through the
``earmark.classes`` entry point and never imports the wing that provides them.

earmark's custom classes (``detect --classes MODEL_DIR``, :mod:`earmark.custom.provider`)
register themselves in ``pyproject.toml``::

    [project.entry-points."earmark.classes"]
    custom = "earmark.custom.provider:PROVIDER"
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from earmark.labels import Label

ENTRY_POINT_GROUP = "earmark.classes"
"""Entry-point group of class providers."""

__all__ = ["ENTRY_POINT_GROUP", "ClassProvider", "class_provider"]


class ClassProvider(Protocol):
    """What the detection path needs from a provider of extra classes (``options.classes``)."""

    def check(self, tagger: Any, options: Any) -> tuple[list[Label], Any]:
        """Before any file: check ``options.classes``; the run's labels and post-processing."""
        ...

    def apply(
        self, tagger: Any, scores: Any, options: Any, path: str | Path | None
    ) -> tuple[Any, list[Label]]:
        """One file's framewise scores with the extra classes' columns, and their labels."""
        ...

    def selection(self, options: Any, labels: list[Label]) -> Any:
        """The post-processing options for those scores."""
        ...

    def describe(self, tagger: Any, options: Any) -> dict:
        """What the run detected, for its manifest and report."""
        ...


@cache
def class_provider(name: str = "custom") -> ClassProvider:
    """The class provider registered under ``name``; :class:`ValueError` when none is."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise ValueError(
            f"no provider of extra classes named {name!r} is installed (entry point group "
            f"{ENTRY_POINT_GROUP!r}); reinstall earmark (pip install -e .)"
        )
    return next(iter(found)).load()
