"""The reviewer's decisions on a run, kept beside it: an append-only journal and its state.

``RUN_DIR/reviews/journal.jsonl`` holds one JSON object per decision, appended and flushed to
disk (fsync) before the decision is acknowledged, under an exclusive file lock, so a reload or
a crash loses nothing and two pages (or two servers) on one run append in turn. The current
state (``state.json``) and the exports (:mod:`.exports`) are rebuilt from the journal and
written atomically (temporary file, then rename) after every decision: they can always be
thrown away and rebuilt.

Decisions (``op``): ``accept``, ``reject``, ``relabel`` (``label``), ``bounds`` (``onset``,
``offset``), ``add`` (a new event in free mode: ``file``, ``onset``, ``offset``, ``label``) and
``reset`` (back to unreviewed). Each names the ``version`` of the event its author saw; when
somebody else changed the event since, the later decision wins and the answer carries a
warning saying whose change it replaced (last writer wins, never a silent loss: both stay in the
journal).

A line of the journal that is not valid JSON (a disk error, a hand edit) is reported with the
file and line number; the other lines still count and the bad line stays in the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from earmark.outputs import atomic_write_text
from earmark.review.exports import write_exports
from earmark.review.items import Item
from earmark.review.run import Run

OPS = ("accept", "reject", "relabel", "bounds", "add", "reset")


class ReviewError(ValueError):
    """A decision that cannot be applied, or a review journal that cannot be read."""


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ReviewStore:
    """Decisions on the detections of one run (see the module docstring)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.folder = run.reviews
        self.journal = self.folder / "journal.jsonl"
        self.items: dict[str, Item] = {}
        self.warnings: list[str] = []
        """Problems met reading the journal (bad lines, events no longer in the run)."""
        self.orphans: set[str] = set()
        """Reviewed events that are no longer detections of the run (it was detected again);
        their decisions still count, on the event as it was."""
        self._offset = 0
        self._line = 0
        self._lock = threading.Lock()
        for d in run.detections:
            self.items[d.id] = Item(
                d.id,
                d.file,
                d.label,
                d.onset,
                d.offset,
                original={"label": d.label, "onset": d.onset, "offset": d.offset},
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._catch_up()
        if self.orphans:
            self.warnings.append(
                f"{len(self.orphans)} reviewed event(s) are no longer detections of "
                f"{run.root} (it was detected again); their decisions are kept, on the events "
                "as they were"
            )

    # ------------------------------------------------------------------ reading
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's lock and an exclusive lock on the journal (other processes)."""
        with self._lock:
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _catch_up(self) -> None:
        """Apply the journal lines written since the last read (by anyone)."""
        if not self.journal.exists():
            return
        with open(self.journal, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        for raw in data[:end].splitlines():
            self._line += 1
            where = f"{self.journal}:{self._line}"
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
                if not isinstance(entry, dict) or entry.get("op") not in OPS:
                    raise ValueError(f"not a decision: {raw[:80]!r}")
            except (ValueError, UnicodeDecodeError) as exc:
                self.warnings.append(
                    f"{where}: unreadable line ignored ({exc}); it stays in the file, "
                    "the other decisions are kept"
                )
                continue
            try:
                self._apply(entry)
            except ReviewError as exc:
                self.warnings.append(f"{where}: {exc}")
        self._offset += end

    # ------------------------------------------------------------------ applying
    def _apply(self, entry: dict[str, Any]) -> str | None:
        """Apply one decision to the state; the warning of a conflict, if any."""
        op, ident = entry["op"], str(entry.get("id", ""))
        if op == "add":
            item = Item(
                ident,
                str(entry["file"]),
                str(entry["label"]),
                float(entry["onset"]),
                float(entry["offset"]),
            )
            self.items[ident] = item
        elif ident not in self.items:
            seen = entry.get("event")
            if not isinstance(seen, dict):
                raise ReviewError(f"decision on {ident!r}, which is not an event of this run")
            try:  # the run was detected again: the decision stands on the event it was about
                self.items[ident] = Item(
                    ident, str(seen["file"]), str(seen["label"]), float(seen["onset"]),
                    float(seen["offset"]), original=dict(seen),
                )  # fmt: skip
            except (KeyError, TypeError, ValueError):
                raise ReviewError(f"decision on {ident!r}: unreadable event") from None
            self.orphans.add(ident)
        item = self.items[ident]
        warning = None
        base = entry.get("base")
        if base is not None and op != "add" and int(base) != item.version:
            warning = (
                f"{item.label} at {item.onset:.2f} s in {Path(item.file).name} was changed by "
                f"{item.user or 'someone'} at {item.time} (version {item.version}) after you "
                f"loaded it (version {base}); your change replaced theirs"
            )
        if op == "accept":
            item.status = "corrected" if item.status == "corrected" else "accepted"
        elif op == "reject":
            item.status = "rejected"
        elif op == "relabel":
            item.label = str(entry["label"])
            item.status = "corrected" if item.original else "added"
        elif op == "bounds":
            item.onset, item.offset = float(entry["onset"]), float(entry["offset"])
            item.status = "corrected" if item.original else "added"
        elif op == "reset" and item.original:
            item.label = item.original["label"]
            item.onset, item.offset = item.original["onset"], item.original["offset"]
            item.status = "pending"
        elif op == "reset":
            item.status = "rejected"  # an added event taken back: no longer a positive
        if op != "add":
            item.version += 1
        else:
            item.status, item.version = "added", 1
        item.user, item.time = entry.get("user"), entry.get("time")
        item.history.append({k: entry[k] for k in ("op", "user", "time") if k in entry})
        return warning

    def _check(self, entry: dict[str, Any]) -> None:
        """Raise :class:`ReviewError` for a decision that makes no sense (before it is kept)."""
        op = entry.get("op")
        if op not in OPS:
            raise ReviewError(f"unknown decision {op!r} (one of {', '.join(OPS)})")
        if op == "add" and str(entry.get("file")) not in self.run.files:
            raise ReviewError(f"{entry.get('file')!r} is not a file of the run {self.run.root}")
        if op != "add" and str(entry.get("id")) not in self.items:
            raise ReviewError(f"{entry.get('id')!r} is not an event of the run {self.run.root}")
        if op in ("relabel", "add"):
            label = str(entry.get("label") or "").strip()
            if not label or any(c in label for c in "\t\n\r"):
                raise ReviewError("a label must be non-empty text without tabs or line breaks")
            entry["label"] = label
        if op in ("bounds", "add"):
            try:
                onset, offset = float(entry["onset"]), float(entry["offset"])
            except (KeyError, TypeError, ValueError):
                raise ReviewError("onset and offset must be numbers (seconds)") from None
            file = entry.get("file") or self.items[str(entry.get("id"))].file
            duration = self.run.durations.get(str(file))
            if not (0.0 <= onset < offset) or (duration is not None and onset >= duration):
                raise ReviewError(f"bad bounds {onset:.3f}-{offset:.3f} s")
            if duration is not None:
                offset = min(offset, duration)
            entry["onset"], entry["offset"] = round(onset, 3), round(offset, 3)

    def decide(self, entry: dict[str, Any], user: str = "local") -> tuple[Item, str | None]:
        """Check, journal (fsync) and apply one decision; the event's new state and the
        warning of a conflict (another writer changed it since ``entry["base"]``).

        Raises:
            ReviewError: a decision that cannot be applied; nothing is written.
        """
        entry = dict(entry)
        if entry.get("op") == "add" and not entry.get("id"):
            entry["id"] = "u" + secrets.token_hex(6)
        entry["user"], entry["time"] = user, now()
        with self._locked():
            self._catch_up()  # another process may have written since
            self._check(entry)
            target = self.items.get(str(entry.get("id")))
            if entry["op"] != "add" and target is not None and target.original:
                # what the decision is about, should the run be detected again
                entry["event"] = {"file": target.file, **target.original}
            line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
            if self.journal.exists() and not self._ends_with_newline():
                with open(self.journal, "ab") as fh:  # a torn last line: never glue onto it
                    fh.write(b"\n")
                self._catch_up()  # reports the torn line as unreadable, keeps it
            with open(self.journal, "ab") as fh:
                fh.write(line.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
                self._offset = fh.tell()
            self._line += 1
            warning = self._apply(entry)
            self.save()
        return self.items[str(entry["id"])], warning

    def _ends_with_newline(self) -> bool:
        with open(self.journal, "rb") as fh:
            if fh.seek(0, os.SEEK_END) == 0:
                return True
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def refresh(self) -> None:
        """Read the decisions other processes appended since (e.g. a second server)."""
        with self._locked():
            self._catch_up()

    # ------------------------------------------------------------------ outputs
    def save(self) -> None:
        """Write ``state.json`` and the exports (atomically; both are rebuilt from the
        journal)."""
        state = {
            "run": str(self.run.root),
            "updated": now(),
            "counts": self.counts(),
            "items": [i.public() for i in self.items.values()],
        }
        atomic_write_text(self.folder / "state.json", json.dumps(state, indent=1) + "\n")
        write_exports(self.folder, list(self.items.values()), self.run.durations)

    def reviewed(self) -> list[Item]:
        """The events with a decision (every status but ``pending``)."""
        return [i for i in self.items.values() if i.status != "pending"]

    def counts(self) -> dict[str, Any]:
        """Progress and, per class, how many events are in each status."""
        per_class: dict[str, dict[str, int]] = {}
        for item in self.items.values():
            row = per_class.setdefault(item.label, {})
            row[item.status] = row.get(item.status, 0) + 1
        done = sum(1 for i in self.items.values() if i.status != "pending")
        return {"reviewed": done, "total": len(self.items), "per_class": per_class}

    def reviewed_per_class(self) -> dict[str, int]:
        """Reviewed events per class (the class as it stands after the review)."""
        out: dict[str, int] = {}
        for item in self.reviewed():
            out[item.label] = out.get(item.label, 0) + 1
        return out
