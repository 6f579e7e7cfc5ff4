"""Class labels of the model and the AudioSet ontology.

The model predicts one score per AudioSet class; :func:`load_labels` reads the class list
(``class_labels_indices.csv``: ``index,mid,display_name`` in model output order).
:class:`Ontology` reads ``ontology.json``, the AudioSet class hierarchy, which lets a user
select a whole category ("Animal" selects every class below it, see
:func:`resolve_label_set`) and roll framewise scores up to coarser categories
(:func:`group_scores`).

The ontology is a directed acyclic graph, not a tree: a few classes have several parents
("Growling" is below "Dog", "Cat", ...). Everything here treats all parents as equal.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = [
    "GROUP_LEVELS",
    "Label",
    "Ontology",
    "UnknownLabelError",
    "group_plan",
    "group_scores",
    "load_labels",
    "resolve_label_set",
]

#: Named levels accepted by :func:`group_scores` besides a depth ("0", "1", ...).
GROUP_LEVELS = ("parent", "top")


class UnknownLabelError(KeyError, ValueError):
    """A class name or mid that is not known; the message lists close matches.

    It is both a :class:`KeyError` (for :class:`Ontology` lookups) and a
    :class:`ValueError` (for user label selections).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Label:
    """One model output class: its column ``index``, AudioSet ``mid`` and display ``name``."""

    index: int
    mid: str
    name: str


def suggest_names(word: str, candidates: Iterable[str], n: int = 5) -> str:
    """A ' Did you mean: ...?' suffix with close matches (case-insensitive), or ''."""
    by_lower: dict[str, str] = {}
    for cand in candidates:
        by_lower.setdefault(cand.lower(), cand)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean: " + ", ".join(repr(by_lower[c]) for c in close) + "?"


def load_labels(path: str | PathLike[str]) -> list[Label]:
    """Read the model's class list from a CSV file with columns ``index,mid,display_name``.

    Rows must be in model output order (``index`` 0, 1, 2, ...), mids unique.
    Raises :class:`FileNotFoundError` if the file is missing and :class:`ValueError`
    (naming the file and line) if it is malformed.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            required = {"index", "mid", "display_name"}
            if reader.fieldnames is None or not required <= set(reader.fieldnames):
                raise ValueError(
                    f"{path}: not a class label file: expected a header with columns "
                    f"index,mid,display_name, got {reader.fieldnames}"
                )
            labels: list[Label] = []
            seen: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                raw_index, mid, name = row["index"], row["mid"], row["display_name"]
                if raw_index is None or mid is None or name is None:
                    raise ValueError(f"{path}, line {line}: missing columns")
                try:
                    index = int(raw_index)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {line}: index {raw_index!r} is not an integer"
                    ) from None
                if index != len(labels):
                    raise ValueError(
                        f"{path}, line {line}: index {index} out of order (expected {len(labels)})"
                    )
                mid, name = mid.strip(), name.strip()
                if not mid or not name:
                    raise ValueError(f"{path}, line {line}: empty mid or display_name")
                if mid in seen:
                    raise ValueError(f"{path}, line {line}: mid {mid} repeats index {seen[mid]}")
                seen[mid] = index
                labels.append(Label(index=index, mid=mid, name=name))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    if not labels:
        raise ValueError(f"{path}: no class labels in file")
    return labels


class Ontology:
    """The AudioSet ontology: names, parents, children, ancestors, depth of every node.

    Nodes are identified by their mid (``/m/0bt9lr`` for "Dog"). Name lookups are
    case-insensitive. Unknown names or mids raise :class:`UnknownLabelError` (a
    :class:`KeyError`) with suggestions.
    """

    def __init__(
        self,
        names: dict[str, str],
        children: dict[str, Sequence[str]],
        restrictions: dict[str, Sequence[str]] | None = None,
    ) -> None:
        """Build from ``names`` (mid -> name, in a stable order) and ``children`` (mid -> mids)."""
        self._names: dict[str, str] = dict(names)
        self._order = {mid: i for i, mid in enumerate(self._names)}
        self._by_name: dict[str, str] = {}
        for mid, name in self._names.items():
            self._by_name.setdefault(name.lower(), mid)
        self._children: dict[str, tuple[str, ...]] = {}
        parents: dict[str, list[str]] = {mid: [] for mid in self._names}
        for mid in self._names:
            kids: list[str] = []
            for child in children.get(mid, ()):
                if child not in self._names:
                    raise ValueError(f"ontology node {mid} lists unknown child {child}")
                if child not in kids and child != mid:
                    kids.append(child)
                    parents[child].append(mid)
            self._children[mid] = tuple(kids)
        self._parents = {mid: tuple(ps) for mid, ps in parents.items()}
        self._restrictions = {mid: tuple((restrictions or {}).get(mid, ())) for mid in self._names}
        self._top = [mid for mid in self._names if not self._parents[mid]]
        # Minimum depth over all paths from a top-level node: breadth-first search.
        self._depth: dict[str, int] = {mid: 0 for mid in self._top}
        queue = deque(self._top)
        while queue:
            mid = queue.popleft()
            for child in self._children[mid]:
                if child not in self._depth:
                    self._depth[child] = self._depth[mid] + 1
                    queue.append(child)
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}

    @classmethod
    def from_json(cls, path: str | PathLike[str]) -> Ontology:
        """Read ``ontology.json`` (a list of nodes with ``id``, ``name``, ``child_ids``).

        Raises :class:`ValueError` naming the file if it is not a valid ontology.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON file ({exc})") from None
        if not isinstance(data, list) or not data:
            raise ValueError(f"{path}: expected a non-empty JSON list of ontology nodes")
        names: dict[str, str] = {}
        children: dict[str, Sequence[str]] = {}
        restrictions: dict[str, Sequence[str]] = {}
        for i, node in enumerate(data):
            if not isinstance(node, dict) or not isinstance(node.get("id"), str):
                raise ValueError(f"{path}: node {i} has no string 'id'")
            mid = node["id"]
            name = node.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{path}: node {mid} has no 'name'")
            kids = node.get("child_ids", [])
            if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
                raise ValueError(f"{path}: node {mid}: 'child_ids' must be a list of strings")
            if mid in names:
                raise ValueError(f"{path}: node {mid} appears twice")
            names[mid] = name
            children[mid] = kids
            restrictions[mid] = [str(r) for r in node.get("restrictions", []) or []]
        try:
            return cls(names, children, restrictions)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # -- lookups -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, mid: object) -> bool:
        return mid in self._names

    def __iter__(self):
        return iter(self._names)

    def _check(self, mid: str) -> str:
        if mid not in self._names:
            raise UnknownLabelError(
                f"unknown ontology mid {mid!r}." + suggest_names(mid, self._names)
            )
        return mid

    def name(self, mid: str) -> str:
        """Display name of the node ``mid``."""
        return self._names[self._check(mid)]

    def mid(self, name: str) -> str:
        """Mid of the node called ``name`` (case-insensitive, surrounding spaces ignored)."""
        try:
            return self._by_name[name.strip().lower()]
        except KeyError:
            raise UnknownLabelError(
                f"unknown ontology class name {name!r}." + suggest_names(name, self._names.values())
            ) from None

    def find(self, name_or_mid: str) -> str | None:
        """Mid for a mid or a (case-insensitive) name, or ``None`` if neither is known."""
        key = name_or_mid.strip()
        if key in self._names:
            return key
        return self._by_name.get(key.lower())

    def restrictions(self, mid: str) -> tuple[str, ...]:
        """The node's restrictions, e.g. ``("abstract",)`` or ``("blacklist",)``."""
        return self._restrictions[self._check(mid)]

    def order(self, mid: str) -> int:
        """Position of the node in the ontology file (a stable, hierarchical sort key)."""
        return self._order[self._check(mid)]

    # -- structure -----------------------------------------------------------------------

    def parents(self, mid: str) -> list[str]:
        """Immediate parents of ``mid`` (empty for a top-level node)."""
        return list(self._parents[self._check(mid)])

    def children(self, mid: str) -> list[str]:
        """Immediate children of ``mid``."""
        return list(self._children[self._check(mid)])

    def ancestors(self, mid: str) -> set[str]:
        """All nodes above ``mid`` along every path (``mid`` itself excluded)."""
        return set(self._closure(mid, self._parents, self._ancestors))

    def descendants(self, mid: str) -> set[str]:
        """All nodes below ``mid`` (``mid`` itself excluded)."""
        return set(self._closure(mid, self._children, self._descendants))

    def _closure(
        self,
        mid: str,
        edges: dict[str, tuple[str, ...]],
        cache: dict[str, frozenset[str]],
    ) -> frozenset[str]:
        self._check(mid)
        if mid not in cache:
            seen: set[str] = set()
            stack = list(edges[mid])
            while stack:
                node = stack.pop()
                if node not in seen:
                    seen.add(node)
                    stack.extend(edges[node])
            seen.discard(mid)
            cache[mid] = frozenset(seen)
        return cache[mid]

    def top_level(self) -> list[str]:
        """Nodes that are nobody's child, in file order (the 7 AudioSet root categories)."""
        return list(self._top)

    def depth(self, mid: str) -> int:
        """0 for a top-level node, else 1 + the smallest depth of its parents."""
        return self._depth.get(self._check(mid), 0)


# -- label selection -------------------------------------------------------------------


def resolve_label_set(
    labels: Sequence[Label],
    names_or_mids: Iterable[str],
    ontology: Ontology | None = None,
    include_descendants: bool = True,
) -> list[int]:
    """Positions in ``labels`` selected by a user's list of class names or mids.

    Each entry is a mid or a display name (case-insensitive). With an ``ontology`` and
    ``include_descendants``, an entry also selects every class below it, so "Animal"
    selects "Dog", "Bark", ... An ontology category that is not itself a model class
    (e.g. "Human sounds") selects only its descendants.

    Returns sorted, unique positions into ``labels`` (equal to ``Label.index`` for the
    model's full class list). Raises :class:`ValueError` (an :class:`UnknownLabelError`)
    listing close matches for an unknown entry, and :class:`ValueError` for an entry
    that selects no class of ``labels``.
    """
    if isinstance(names_or_mids, str):
        names_or_mids = [names_or_mids]
    by_mid = {lab.mid: pos for pos, lab in enumerate(labels)}
    by_name: dict[str, int] = {}
    pos: int | None
    for pos, lab in enumerate(labels):
        by_name.setdefault(lab.name.lower(), pos)
    selected: set[int] = set()
    for entry in names_or_mids:
        key = str(entry).strip()
        pos = by_mid.get(key, by_name.get(key.lower()))
        mid = labels[pos].mid if pos is not None else None
        if mid is None and ontology is not None:
            mid = ontology.find(key)
        if pos is None and mid is None:
            candidates = [lab.name for lab in labels]
            if ontology is not None:
                candidates += [ontology.name(m) for m in ontology]
            raise UnknownLabelError(f"unknown class {entry!r}." + suggest_names(key, candidates))
        found: set[int] = set()
        if pos is not None:
            found.add(pos)
        if ontology is not None and include_descendants and mid in ontology:
            assert mid is not None  # the ontology's mids are strings
            found.update(by_mid[m] for m in ontology.descendants(mid) if m in by_mid)
        if not found:
            raise ValueError(
                f"{entry!r} selects no model class"
                + ("" if include_descendants else " (it is an ontology category only)")
            )
        selected |= found
    return sorted(selected)


# -- roll-up along the ontology --------------------------------------------------------


def parse_level(level: str | int) -> str | int:
    if isinstance(level, bool):
        raise ValueError(f"invalid group level {level!r}")
    if isinstance(level, int):
        depth = level
    else:
        text = str(level).strip().lower()
        if text in GROUP_LEVELS:
            return text
        try:
            depth = int(text)
        except ValueError:
            raise ValueError(
                f"invalid group level {level!r}: use 'parent', 'top' or a depth 0, 1, 2, ..."
            ) from None
    if depth < 0:
        raise ValueError(f"invalid group level {level!r}: depth must be >= 0")
    return depth


def group_plan(
    labels: Sequence[Label], ontology: Ontology, level: str | int
) -> tuple[list[np.ndarray], list[Label]]:
    """Which columns of a score matrix make up each group of :func:`group_scores`.

    Returns ``(members, groups)``: ``members[g]`` is a sorted int array of positions in
    ``labels`` whose max is group ``g``'s score and ``groups[g]`` its :class:`Label`
    (``index`` = ``g``). Groups are ordered as in the ontology file; a class whose mid is
    not in the ontology is its own group, after those.
    """
    parsed = parse_level(level)
    pos_of = {lab.mid: pos for pos, lab in enumerate(labels)}
    members: dict[str, set[int]] = {}
    names: dict[str, str] = {}
    for pos, lab in enumerate(labels):
        mid = lab.mid
        if mid not in ontology:
            targets = [mid]
            names.setdefault(mid, lab.name)
        elif parsed == "parent":
            targets = ontology.parents(mid) or [mid]
        else:
            depth = 0 if parsed == "top" else int(parsed)
            if ontology.depth(mid) <= depth:
                targets = [mid]
            else:
                targets = [a for a in ontology.ancestors(mid) if ontology.depth(a) == depth]
        for target in targets:
            members.setdefault(target, set()).add(pos)
    # A group that is itself a model class also takes its own score.
    for target, group in members.items():
        if target in pos_of:
            group.add(pos_of[target])

    def sort_key(mid: str) -> tuple[int, int]:
        if mid in ontology:
            return (0, ontology.order(mid))
        return (1, pos_of[mid])

    order = sorted(members, key=sort_key)
    groups = [
        Label(index=g, mid=mid, name=ontology.name(mid) if mid in ontology else names[mid])
        for g, mid in enumerate(order)
    ]
    return [np.array(sorted(members[mid]), dtype=np.intp) for mid in order], groups


def group_scores(
    scores: np.ndarray, labels: Sequence[Label], ontology: Ontology, level: str | int
) -> tuple[np.ndarray, list[Label]]:
    """Roll framewise scores up the ontology.

    ``scores`` is ``(frames, classes)`` with column ``j`` belonging to ``labels[j]``.
    ``level`` is

    * ``"parent"``: each class goes to each of its immediate parents (a top-level class
      stays itself), e.g. "Dog" -> "Domestic animals, pets";
    * ``"top"``: its top-level category ("Animal", "Music", "Human sounds", ...);
    * a depth ``"0"``, ``"1"``, ...: its ancestor(s) at that depth, or the class itself if
      it is not deeper than that (``"0"`` is the same as ``"top"``), e.g. "Car" -> "Vehicle"
      at depth 1.

    A class with several parents contributes to each of their groups. A group's score per
    frame is the max over its member classes, including the group's own class when the
    group is one of ``labels``. Returns ``(grouped, groups)`` with ``grouped`` of shape
    ``(frames, len(groups))`` in the dtype of ``scores`` and ``groups[g].index == g``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must have shape (frames, {len(labels)}), got {scores.shape}")
    members, groups = group_plan(labels, ontology, level)
    out = np.empty((scores.shape[0], len(groups)), dtype=scores.dtype)
    # Work on blocks of frames transposed to (classes, frames): each group is then a max
    # over a few contiguous rows, which is far faster than gathering columns.
    block = 4096
    for i in range(0, scores.shape[0], block):
        chunk = np.ascontiguousarray(scores[i : i + block].T)
        grouped = np.empty((len(groups), chunk.shape[1]), dtype=scores.dtype)
        max_rows(chunk, members, grouped)
        out[i : i + block] = grouped.T
    return out, groups


def max_rows(source: np.ndarray, rows: Sequence[np.ndarray], out: np.ndarray) -> None:
    """``out[k] = source[rows[k]].max(axis=0)`` for every k, without temporaries."""
    for k, group in enumerate(rows):
        np.copyto(out[k], source[group[0]])
        for r in group[1:]:
            np.maximum(out[k], source[r], out=out[k])
