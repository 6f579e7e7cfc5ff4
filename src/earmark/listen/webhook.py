"""The HTTP webhook sink: events POSTed in order by a background thread, spooled on disk first so
that a crash or a long outage loses none, with retries, backoff and a dead-letter file."""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from earmark.listen.delivery import Counters, safe_file_part, short_hash
from earmark.listen.live_events import LiveEvent

try:  # POSIX: one sink at a time on a spool file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TIMEOUT = 10.0
"""Seconds to wait for the receiver's answer to one POST."""
BACKOFF_START = 0.5
"""Seconds before the first retry; doubled after each failure (with jitter)."""
BACKOFF_MAX = 60.0
"""The longest wait in seconds between two tries of our own backoff."""
RETRY_AFTER_MAX = 600.0
"""The longest wait in seconds that a receiver's ``Retry-After`` may ask for."""
SPOOL_MAX_BYTES = 64 * 1024 * 1024
"""Size of the spool file beyond which new events are dropped (each drop logged as an error)."""
RETRIED_STATUS = frozenset({408, 429})
"""4xx statuses that are tried again; other 4xx (and 3xx) are permanent: dead-lettered."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class Spool:
    """A durable queue in one JSON-lines file: ``{"put": key, "event": {...}}`` is appended
    (and fsynced) before delivery is tried, ``{"done": key}`` after it ended; the file is
    rewritten with the pending entries only when it grows past twice their size and emptied
    when nothing is pending. Reopening the file replays the entries not marked done (a torn
    last line of a crash is ignored)."""

    def __init__(self, path: Path, max_bytes: int = SPOOL_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a+b")  # noqa: SIM115 - kept open with its lock
        if fcntl is not None:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.handle.close()
                raise RuntimeError(f"spool {path} is in use by another earmark process") from None
        self.entries: dict[str, tuple[dict[str, Any], int]] = {}
        self.order: deque[str] = deque()
        self.live_bytes = 0
        self.replayed = self._load()
        self.size = path.stat().st_size

    def _load(self) -> int:
        self.handle.seek(0)
        for raw in self.handle.read().split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # an empty line, or the line a crash cut short
            if "put" in record and record["put"] not in self.entries:
                self.entries[record["put"]] = (record["event"], len(raw) + 1)
                self.order.append(record["put"])
                self.live_bytes += len(raw) + 1
            elif "done" in record and record["done"] in self.entries:
                self.live_bytes -= self.entries.pop(record["done"])[1]
        self.order = deque(k for k in self.order if k in self.entries)
        return len(self.order)

    @staticmethod
    def _line(record: dict[str, Any]) -> bytes:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def _append(self, data: bytes) -> None:
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.size += len(data)

    def put(self, key: str, event: dict[str, Any]) -> bool:
        """Append ``event`` under ``key``; False when the spool is full (nothing written)."""
        if key in self.entries:
            return True  # the same event again: it is pending already
        data = self._line({"put": key, "event": event})
        if self.live_bytes + len(data) > self.max_bytes:
            return False
        if self.size + len(data) > self.max_bytes:
            self.compact()
        self._append(data)
        self.entries[key] = (event, len(data))
        self.order.append(key)
        self.live_bytes += len(data)
        return True

    def first(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest pending entry, or None."""
        if not self.order:
            return None
        key = self.order[0]
        return key, self.entries[key][0]

    def done(self, key: str) -> None:
        """Mark ``key`` delivered (or dead-lettered): it will not be replayed."""
        if key not in self.entries:
            return
        self.live_bytes -= self.entries.pop(key)[1]
        if self.order[0] == key:
            self.order.popleft()
        else:
            self.order.remove(key)
        if not self.order:
            self.handle.truncate(0)
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.size = self.live_bytes = 0
        else:
            self._append(self._line({"done": key}))
            if self.size > 2 * self.live_bytes + 65536:
                self.compact()

    def compact(self) -> None:
        """Rewrite the file with the pending entries only (in place, then fsynced)."""
        data = b"".join(self._line({"put": k, "event": self.entries[k][0]}) for k in self.order)
        self.handle.seek(0)
        self.handle.truncate(0)
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.size = self.live_bytes = len(data)

    def __len__(self) -> int:
        return len(self.order)

    def close(self) -> None:
        """Release the file (and its lock)."""
        self.handle.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook's POST is never turned into a GET elsewhere: a redirect is an answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink:
    """POSTs each event's JSON to ``url`` from a background thread, in order.

    Headers: ``Content-Type: application/json``, ``Idempotency-Key: <event id>:<kind>`` (the
    started notice and the ended event of one event are two deliveries), ``X-Earmark-Event-Id``,
    ``User-Agent: earmark/<version>``, ``Authorization: Bearer <token>`` when given, and any
    ``headers``. Connection errors, timeouts, 5xx, 408 and 429 are retried with exponential
    backoff and jitter up to ``backoff_max`` (a ``Retry-After`` is honoured up to
    ``retry_after_max``);
    other 4xx and 3xx are permanent: logged and appended to the dead-letter file. Every event is
    spooled to ``state_dir`` before delivery; a new sink on the same URL and state folder
    replays what an earlier run left.
    """

    def __init__(
        self,
        url: str,
        state_dir: Path,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        kinds: frozenset[str] = frozenset({"started", "ended"}),
        timeout: float = TIMEOUT,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        retry_after_max: float = RETRY_AFTER_MAX,
        spool_max_bytes: int = SPOOL_MAX_BYTES,
    ) -> None:
        from earmark import __version__

        self.url = url
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        self.name = f"webhook:{parts.scheme}://{host}{parts.path}"  # no user, password, query
        self.kinds = kinds
        self.timeout = timeout
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": f"earmark/{__version__}",
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        }
        base = f"webhook-{safe_file_part(url.split('://', 1)[-1])[:40]}-{short_hash(url)}"
        self.state_dir = Path(state_dir)
        self.spool_path = self.state_dir / f"{base}.spool.jsonl"
        self.dead_letter_path = self.state_dir / f"{base}.dead.jsonl"
        self.counters = Counters("dead_lettered", "replayed")
        self.spool = Spool(self.spool_path, spool_max_bytes)
        self.counters.set("replayed", self.spool.replayed)
        self.counters.set("pending", len(self.spool))
        if self.spool.replayed:
            log.warning("%s: replaying %d events spooled earlier", self.name, self.spool.replayed)
        self.opener = urllib.request.build_opener(_NoRedirect)
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.stopping = False
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="earmark-webhook", daemon=True)
        self.thread.start()

    # -- public -------------------------------------------------------------------------------

    def emit(self, event: LiveEvent) -> None:
        """Spool ``event`` (fsynced) and wake the delivery thread; never waits for the network."""
        if event.kind not in self.kinds:
            return
        with self.lock:
            if self.closed:
                log.error("%s: event emitted after close, not delivered: %s", self.name, event.id)
                self.counters.add("dropped")
                return
            try:
                stored = self.spool.put(f"{event.id}:{event.kind}", event.to_dict())
            except OSError as error:
                stored = False
                log.error("%s: cannot write the spool %s: %s", self.name, self.spool_path, error)
            if not stored:
                self.counters.add("dropped")
                log.error(
                    "%s: spool %s is full (%d bytes pending, limit %d): dropped %s %s %s",
                    self.name,
                    self.spool_path,
                    self.spool.live_bytes,
                    self.spool.max_bytes,
                    event.kind,
                    event.label,
                    event.id,
                )
                return
            self.counters.set("pending", len(self.spool))
            self.wake.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is pending for at most ``timeout`` seconds; what is left stays spooled
        for the next start."""
        with self.lock:
            if self.closed:
                return
            self.stopping = True
            self.wake.notify()
        self.thread.join(timeout)
        with self.lock:
            self.closed = True
            self.wake.notify()
            left = len(self.spool)
        self.thread.join(max(1.0, self.timeout))
        with self.lock:
            if left:
                log.warning(
                    "%s: %d events not delivered yet, kept in %s for the next start",
                    self.name,
                    left,
                    self.spool_path,
                )
            if self.spool.order:
                self.spool.compact()
            self.spool.close()

    def stats(self) -> dict[str, object]:
        """Counters: delivered, failed_attempts, pending, dropped, dead_lettered, replayed."""
        return self.counters.snapshot()

    # -- delivery -----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self.lock:
                while not self.closed and not (self.stopping and not self.spool.order):
                    if self.spool.order:
                        break
                    self.wake.wait()
                if self.closed or not self.spool.order:
                    return
                entry = self.spool.first()
            assert entry is not None
            key, event = entry
            outcome, wait = self._post(key, event)
            with self.lock:
                if self.spool.handle.closed:
                    return  # close gave up waiting for this try: the spool keeps the event
                if outcome in ("delivered", "rejected"):
                    failures = 0
                    self.spool.done(key)
                    self.counters.set("pending", len(self.spool))
                    self.counters.add("delivered" if outcome == "delivered" else "dead_lettered")
                    continue
                self.counters.add("failed_attempts")
                failures += 1
                delay = min(self.backoff_max, self.backoff_start * 2 ** (failures - 1))
                delay = random.uniform(delay / 2, delay)  # jitter: receivers are not hit at once
                if wait is not None:  # the receiver's Retry-After, within a bound
                    delay = max(delay, min(wait, self.retry_after_max))
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "%s: try %d for %s failed (%s); next in %.1f s, %d pending",
                        self.name,
                        failures,
                        key,
                        outcome,
                        delay,
                        len(self.spool),
                    )
                self.wake.wait_for(lambda: self.closed, timeout=delay)

    def _post(self, key: str, event: dict[str, Any]) -> tuple[str, float | None]:
        """One try: ``("delivered"|"rejected", None)`` or a failure reason and the wait asked."""
        body = json.dumps(event, ensure_ascii=False).encode("utf-8")
        headers = {**self.headers, "Idempotency-Key": key, "X-Earmark-Event-Id": event["id"]}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                response.read()
            return "delivered", None
        except urllib.error.HTTPError as error:
            status = error.code
            retry_after = retry_after_seconds(error.headers.get("Retry-After"))
            detail = error.read(500).decode("utf-8", "replace")
            error.close()
            if status >= 500 or status in RETRIED_STATUS:
                return f"HTTP {status}", retry_after
            self._dead_letter(key, event, status, detail)
            return "rejected", None
        except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets
            reason = getattr(error, "reason", error)
            return f"{type(error).__name__}: {reason}", None

    def _dead_letter(self, key: str, event: dict[str, Any], status: int, detail: str) -> None:
        log.error(
            "%s: the receiver refused %s with HTTP %d (%s); kept in %s",
            self.name,
            key,
            status,
            detail.strip()[:200],
            self.dead_letter_path,
        )
        record = {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": status,
            "response": detail,
            "idempotency_key": key,
            "event": event,
        }
        try:
            with open(self.dead_letter_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            log.error("%s: cannot write %s: %s", self.name, self.dead_letter_path, error)
