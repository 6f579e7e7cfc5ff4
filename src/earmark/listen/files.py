"""Sinks that write lines: JSON lines on a stream (stdout) and rotating CSV, JSON-lines or DCASE
TSV files in a folder."""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from earmark.listen.delivery import Counters, event_json, safe_file_part
from earmark.listen.live_events import LiveEvent

try:  # POSIX: a writer locks the file it writes, so that a second process never touches it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "tsv")
"""File formats of :class:`RotatingFileSink`."""
EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "tsv": ".tsv"}
PART_SUFFIX = ".part"
"""Suffix of a file still being written; it is removed (renamed) on rotation and on close."""
CSV_COLUMNS = (
    "id",
    "source",
    "label",
    "mid",
    "kind",
    "stream_onset",
    "stream_offset",
    "duration",
    "onset_utc",
    "offset_utc",
    "peak",
    "mean",
    "clip",
)
TSV_COLUMNS = ("filename", "onset", "offset", "event_label")
"""DCASE's strong-label columns: here the source as ``filename`` and stream times in seconds."""
BACKLOG_LIMIT = 10_000
"""Lines kept in memory while writing fails (disk full, closed pipe); past it they are dropped."""


class LineBacklog:
    """Lines that could not be written yet, retried before the next one (bounded by
    :data:`BACKLOG_LIMIT`; a line past the bound is dropped, counted and logged as an error)."""

    def __init__(self, name: str, counters: Counters, limit: int = BACKLOG_LIMIT) -> None:
        self.name = name
        self.counters = counters
        self.limit = limit
        self.lines: deque[tuple[str, LiveEvent]] = deque()

    def push(self, key: str, event: LiveEvent) -> None:
        """Keep ``event`` (to be written under ``key``) for a later try."""
        if len(self.lines) >= self.limit:
            self.counters.add("dropped")
            log.error(
                "%s: %d events wait for a write that keeps failing; dropping %s %s (%s)",
                self.name,
                len(self.lines),
                event.kind,
                event.label,
                event.id,
            )
            return
        self.lines.append((key, event))
        self.counters.set("pending", len(self.lines))

    def retry(self, write: Callable[[str, LiveEvent], None]) -> bool:
        """Write the kept lines in order with ``write``; False (and kept) at the first failure."""
        while self.lines:
            key, event = self.lines[0]
            try:
                write(key, event)
            except OSError as error:
                self.counters.add("failed_attempts")
                log.warning("%s: writing failed again (%s); %d kept", self.name, error, len(self))
                return False
            self.lines.popleft()
            self.counters.add("delivered")
            self.counters.set("pending", len(self.lines))
        return True

    def __len__(self) -> int:
        return len(self.lines)


class StreamSink:
    """JSON lines on a text stream (stdout by default): one event per line, flushed at once."""

    def __init__(
        self, stream: TextIO | None = None, kinds: frozenset[str] = frozenset({"started", "ended"})
    ) -> None:
        self.stream = stream
        self.kinds = kinds
        self.name = "jsonl:-"
        self.counters = Counters()
        self.backlog = LineBacklog(self.name, self.counters)

    def _write(self, _key: str, event: LiveEvent) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(event_json(event) + "\n")
        stream.flush()

    def emit(self, event: LiveEvent) -> None:
        """Write ``event`` as one JSON line and flush."""
        if event.kind not in self.kinds:
            return
        self.backlog.push("", event)
        self.backlog.retry(self._write)

    def close(self, timeout: float = 10.0) -> None:
        """Write what a failing stream left behind (the stream itself stays open)."""
        if not self.backlog.retry(self._write):
            log.error("%s: %d events could not be written", self.name, len(self.backlog))

    def stats(self) -> dict[str, object]:
        """Counters: delivered, failed_attempts, pending, dropped."""
        return self.counters.snapshot()


@dataclass
class OpenFile:
    """The file a source is writing now."""

    part: Path
    final: Path
    handle: TextIO
    day: str
    size: int
    rows: int


class RotatingFileSink:
    """Events in files of a folder, one series of files per source.

    A file is named ``<source>_<YYYY-MM-DD>_<NNN>.<ext>`` (UTC day the file was started, a
    sequence number for rotation by size and restarts) and carries ``.part`` while written:
    a name without ``.part`` is complete. CSV and TSV files start with a header. Each line is
    flushed; the file is fsynced and renamed on rotation and on close. ``.part`` files left by a
    crash are completed (a torn last line cut) and renamed when the sink starts.
    """

    def __init__(
        self,
        folder: Path,
        fmt: str = "csv",
        *,
        daily: bool = True,
        max_bytes: int | None = None,
        kinds: frozenset[str] = frozenset({"ended"}),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"file format {fmt!r} is not one of {', '.join(FORMATS)}")
        if fmt == "tsv" and "started" in kinds:
            raise ValueError("the DCASE TSV format holds ended events only (events=ended)")
        self.folder = Path(folder)
        self.fmt = fmt
        self.daily = daily
        self.max_bytes = max_bytes
        self.kinds = kinds
        self.clock = clock
        self.name = f"file:{self.folder}?format={fmt}"
        self.counters = Counters("files_completed")
        self.backlog = LineBacklog(self.name, self.counters)
        self.open_files: dict[str, OpenFile] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover_parts()

    # -- public -------------------------------------------------------------------------------

    def emit(self, event: LiveEvent) -> None:
        """Append ``event`` to its source's file (rotating first when due)."""
        if event.kind not in self.kinds:
            return
        self.backlog.push(event.source, event)
        self.backlog.retry(self._write)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is left, fsync and complete every open file."""
        if not self.backlog.retry(self._write):
            log.error("%s: %d events could not be written", self.name, len(self.backlog))
        for source in list(self.open_files):
            self._finish(source)

    def stats(self) -> dict[str, object]:
        """Counters: delivered, failed_attempts, pending, dropped, files_completed."""
        return self.counters.snapshot()

    # -- writing ------------------------------------------------------------------------------

    def _line(self, event: LiveEvent) -> str:
        if self.fmt == "jsonl":
            return event_json(event) + "\n"
        buffer = io.StringIO()
        if self.fmt == "csv":
            data = event.to_dict()
            row = ["" if data[c] is None else data[c] for c in CSV_COLUMNS]
            csv.writer(buffer, lineterminator="\n").writerow(row)
        else:
            offset = event.stream_offset if event.stream_offset is not None else event.stream_onset
            fields = [event.source, f"{event.stream_onset:.3f}", f"{offset:.3f}", event.label]
            buffer.write("\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields))
            buffer.write("\n")
        return buffer.getvalue()

    def _header(self) -> str:
        if self.fmt == "csv":
            return ",".join(CSV_COLUMNS) + "\n"
        if self.fmt == "tsv":
            return "\t".join(TSV_COLUMNS) + "\n"
        return ""

    def _write(self, source: str, event: LiveEvent) -> None:
        line = self._line(event)
        data = line.encode("utf-8")
        day = datetime.fromtimestamp(self.clock(), tz=timezone.utc).strftime("%Y-%m-%d")
        current = self.open_files.get(source)
        if (
            current is not None
            and current.rows
            and (
                (self.daily and current.day != day)
                or (self.max_bytes is not None and current.size + len(data) > self.max_bytes)
            )
        ):
            self._finish(source)
            current = None
        if current is None:
            current = self._open(source, day)
        current.handle.write(line)
        current.handle.flush()
        current.size += len(data)
        current.rows += 1

    def _open(self, source: str, day: str) -> OpenFile:
        stem = f"{safe_file_part(source)}_{day}_"
        ext = EXTENSIONS[self.fmt]
        taken = {p.name.removesuffix(PART_SUFFIX) for p in self.folder.glob(f"{stem}*")}
        number = 1
        while f"{stem}{number:03d}{ext}" in taken:
            number += 1
        final = self.folder / f"{stem}{number:03d}{ext}"
        part = final.with_name(final.name + PART_SUFFIX)
        handle = open(part, "x", encoding="utf-8", newline="")  # noqa: SIM115 - kept open
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = self._header()
        handle.write(header)
        handle.flush()
        opened = OpenFile(part, final, handle, day, len(header.encode("utf-8")), 0)
        self.open_files[source] = opened
        return opened

    def _finish(self, source: str) -> None:
        current = self.open_files.pop(source)
        try:
            current.handle.flush()
            os.fsync(current.handle.fileno())
        finally:
            current.handle.close()
        os.replace(current.part, current.final)
        self.counters.add("files_completed")

    def _recover_parts(self) -> None:
        """Complete the ``.part`` files that no running writer holds (left by a crash)."""
        for part in sorted(self.folder.glob(f"*{PART_SUFFIX}")):
            with open(part, "rb+") as handle:
                if fcntl is not None:
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # another process writes it now
                data = handle.read()
                if data and not data.endswith(b"\n"):
                    handle.truncate(data.rfind(b"\n") + 1)  # a line torn by the crash
                os.fsync(handle.fileno())
                final = part.with_name(part.name.removesuffix(PART_SUFFIX))
                if not final.exists():
                    os.replace(part, final)
                    log.info("%s: completed %s left by an earlier run", self.name, final.name)
