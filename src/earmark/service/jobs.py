"""The job-processing function every worker runs (Celery workers and the embedded worker).

A job is processed file by file with :func:`earmark.pipeline.process_file`; each file's result
is recorded in one transaction that replaces whatever an earlier attempt wrote for that file
(events are keyed by ``(file, seq)``), so a job that is retried after a worker died completes
once, with no result lost or duplicated. Files already finished by an earlier attempt are not
processed again.

Only one worker at a time works on a job: it *claims* the job by writing its name and a lease
expiry into the job row with a conditional UPDATE, and renews the lease as it makes progress.
Another delivery of the same job (Redis redelivers unacknowledged messages after the visibility
timeout) finds the lease held and backs off, or finds the job finished and returns.

Importing this module does not import torch; :func:`process_job` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update

from earmark.service.db import Database
from earmark.service.models import Counter, EventRow, Job, JobFile, utcnow
from earmark.service.settings import Settings
from earmark.service.storage import Storage

log = logging.getLogger(__name__)

#: Buckets of the per-file processing-time histogram (seconds).
PROCESSING_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: Seconds between progress writes (and lease renewals) while a file is scored.
HEARTBEAT_SECONDS = 1.0
FINAL_FILE_STATES = ("done", "partial", "failed")
#: Deliveries of one job before it is failed for good (a file that kills its worker every time).
MAX_ATTEMPTS = 4


class JobCancelled(Exception):
    """The job was deleted, or another worker took it over, while this worker processed it."""


@dataclass
class Outcome:
    """What :func:`process_job` did: ``status`` is ``done``, ``failed``, ``finished`` (already
    complete), ``gone`` (deleted), ``busy`` (claimed by a live worker; retry in
    ``retry_in`` seconds) or ``cancelled``."""

    status: str
    retry_in: float = 0.0
    detail: str = ""


def worker_name() -> str:
    """``host:pid:thread`` of the calling worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


# ---------------------------------------------------------------------------- model cache
_TAGGERS: dict[tuple[str, int | None], Any] = {}
_TAGGER_LOCK = threading.Lock()


def get_tagger(model: str, threads: int | None = None) -> Any:
    """The model, loaded once per worker process and kept."""
    from earmark.pipeline import default_threads
    from earmark.tagger import load_model

    key = (model, threads)
    with _TAGGER_LOCK:
        if key not in _TAGGERS:
            _TAGGERS[key] = load_model(model, threads=threads or default_threads(1))
        return _TAGGERS[key]


# ---------------------------------------------------------------------------- claiming
def claim(db: Database, job_id: str, me: str, lease_seconds: float) -> Outcome | None:
    """Take the job for this worker; ``None`` on success, else why not."""
    now = utcnow()
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state.in_(("queued", "running")),
                or_(Job.lease_until.is_(None), Job.lease_until < now, Job.worker == me),
            )
            .values(
                state="running",
                worker=me,
                lease_until=now + dt.timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if cast("CursorResult[Any]", result).rowcount == 1:
            job = session.get(Job, job_id)
            if job is not None and job.started_at is None:
                job.started_at = now
            return None
        job = session.get(Job, job_id)
        if job is None:
            return Outcome("gone", detail="the job was deleted")
        if job.state in ("done", "failed"):
            return Outcome("finished", detail=f"the job is already {job.state}")
        lease = _aware(job.lease_until) if job.lease_until else now
        wait = max((lease - now).total_seconds(), 1.0)
        return Outcome("busy", retry_in=wait, detail=f"claimed by {job.worker}")


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _renew(db: Database, job_id: str, me: str, lease_seconds: float, **file_values: Any) -> None:
    """Extend the lease; raise :class:`JobCancelled` if the job is gone or no longer ours."""
    now = utcnow()
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == me, Job.state == "running")
            .values(lease_until=now + dt.timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        if cast("CursorResult[Any]", result).rowcount != 1:
            raise JobCancelled(job_id)
        if file_values:
            file_id = file_values.pop("file_id")
            session.execute(
                update(JobFile)
                .where(JobFile.id == file_id)
                .values(**file_values)
                .execution_options(synchronize_session=False)
            )


# ---------------------------------------------------------------------------- creating
def create_job_record(
    db: Database,
    storage: Storage,
    key_id: int | None,
    items: list[tuple[str, Path, Any]],
    options: dict,
    sync: bool = False,
) -> Job:
    """Store checked uploads ``(name, temp path, CheckedAudio)`` as a new queued job.

    The temp files are moved into the job's audio folder; on any error nothing is left.
    """
    job_id = uuid.uuid4().hex
    try:
        with db.session() as session:
            job = Job(
                id=job_id,
                key_id=key_id,
                state="queued",
                options=options,
                attempts=0,
                audio_seconds=0.0,
                model=options.get("model"),
                sync=sync,
            )
            session.add(job)
            for index, (name, tmp, checked) in enumerate(items):
                stored = f"{index:03d}.{checked.format}"
                size = Path(tmp).stat().st_size
                storage.adopt(job_id, stored, Path(tmp))
                job.audio_seconds += checked.duration or 0.0
                session.add(
                    JobFile(
                        job_id=job_id,
                        index=index,
                        name=name,
                        stored=stored,
                        format=checked.format,
                        size=size,
                        duration=checked.duration,
                        state="queued",
                        seconds_done=0.0,
                        warnings=[],
                        n_events=0,
                        audio_info=checked.info,
                    )
                )
    except BaseException:
        storage.delete_job(job_id)
        for _, tmp, _ in items:
            Path(tmp).unlink(missing_ok=True)
        raise
    return job


def delete_job_record(db: Database, storage: Storage, job_id: str) -> None:
    """Remove a job: its rows (events, files, job) and its files. A worker on it stops."""
    with db.session() as session:
        session.execute(delete(EventRow).where(EventRow.job_id == job_id))
        session.execute(delete(JobFile).where(JobFile.job_id == job_id))
        session.execute(delete(Job).where(Job.id == job_id))
    storage.delete_job(job_id)


def report_available() -> bool:
    """Whether this installation has the HTML report module (``earmark.report``)."""
    import importlib.util

    return importlib.util.find_spec("earmark.report") is not None


# ---------------------------------------------------------------------------- processing
def process_job(
    db: Database,
    storage: Storage,
    settings: Settings,
    job_id: str,
    me: str | None = None,
) -> Outcome:
    """Process every unfinished file of a job and finish it. Safe to call again at any point."""
    me = me or worker_name()
    refused = claim(db, job_id, me, settings.lease_seconds)
    if refused is not None:
        log.info("job %s not processed: %s", job_id, refused.detail)
        return refused
    try:
        return _process_claimed(db, storage, settings, job_id, me)
    except JobCancelled:
        log.info("job %s cancelled or taken over while processing", job_id)
        with db.session() as session:
            gone = session.get(Job, job_id) is None
        if gone:
            storage.delete_job(job_id)
        return Outcome("cancelled")


def _process_claimed(
    db: Database, storage: Storage, settings: Settings, job_id: str, me: str
) -> Outcome:
    from earmark.config import ConfigError, build_options, normalise
    from earmark.inputs import Input, output_stems
    from earmark.pipeline import check_options, process_file

    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobCancelled(job_id)
        raw_options = dict(job.options or {})
        files = [
            (f.id, f.index, f.name, f.stored, f.duration)
            for f in job.files
            if f.state not in FINAL_FILE_STATES
        ]
    try:
        if raw_options.get("classes"):  # a model name: resolved in this worker's own folder
            raw_options["classes"] = str(settings.custom_model(str(raw_options["classes"])))
        options = build_options(normalise(raw_options, "job options"), "job options")
        options.jobs = 1
        tagger = get_tagger(options.model, settings.worker_threads)
        check_options(tagger, options)
    except (ConfigError, ValueError, KeyError) as exc:
        return _finish(db, storage, job_id, me, error=f"invalid options: {exc}")
    except (OSError, RuntimeError) as exc:  # the model cannot be loaded here: say so, end the job
        return _finish(db, storage, job_id, me, error=f"cannot load the model: {exc}")

    from earmark.audio import AudioError

    audio_dir = storage.audio_dir(job_id)
    out = storage.results_dir(job_id)
    deadline = time.monotonic() + settings.task_time_limit
    for file_id, _index, name, stored, _duration in files:
        path = storage.audio_path(job_id, stored)
        _renew(db, job_id, me, settings.lease_seconds, file_id=file_id, state="running")
        last = [time.monotonic()]

        def progress(
            seconds: float, file_id: int = file_id, last: list = last, path: Path = path
        ) -> None:
            # limits hold on the decoded audio, whatever the container's header declared
            if seconds > settings.max_audio_seconds:
                raise AudioError(
                    str(path),
                    f"decodes to more than the limit of {settings.max_audio_seconds:g} s"
                    " (EARMARK_MAX_AUDIO_SECONDS); stopped there",
                )
            now = time.monotonic()
            if settings.task_time_limit and now > deadline:
                raise AudioError(
                    str(path),
                    f"the job ran past its time limit of {settings.task_time_limit} s"
                    " (EARMARK_TASK_TIME_LIMIT); stopped",
                )
            if now - last[0] >= HEARTBEAT_SECONDS:
                last[0] = now
                lease = settings.lease_seconds
                _renew(db, job_id, me, lease, file_id=file_id, seconds_done=seconds)

        stem = output_stems(out, [Input(path, audio_dir)])[0]
        result = process_file(tagger, path, stem, options, progress, name=name)
        _record_file(db, job_id, me, file_id, name, str(path), result)
    return _finish(db, storage, job_id, me, tagger=tagger, options=options)


def _record_file(
    db: Database, job_id: str, me: str, file_id: int, name: str, stored_path: str, result: Any
) -> None:
    """Write one file's result, replacing any earlier attempt's (one transaction)."""
    with db.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.worker != me or job.state != "running":
            raise JobCancelled(job_id)
        row = session.get(JobFile, file_id)
        if row is None:
            raise JobCancelled(job_id)
        first_time = row.state not in FINAL_FILE_STATES
        session.execute(delete(EventRow).where(EventRow.file_id == file_id))
        session.add_all(
            EventRow(
                job_id=job_id,
                file_id=file_id,
                seq=seq,
                label=e.label,
                mid=e.mid,
                onset=float(e.onset),
                offset=float(e.offset),
                peak=_finite(e.peak),
                mean=_finite(e.mean),
                alternatives=[[a, m, _finite(p)] for a, m, p in e.alternatives] or None,
            )
            for seq, e in enumerate(result.events)
        )
        row.state = {"ok": "done"}.get(result.status, result.status)
        row.n_events = len(result.events)
        row.duration = result.duration or row.duration
        row.seconds_done = result.duration
        row.error = _public(result.error, stored_path, name)
        row.warnings = [_public(w, stored_path, name) for w in result.warnings]
        row.processing_seconds = round(result.seconds, 3)
        if result.info:
            row.audio_info = result.info
        job.lease_until = utcnow() + dt.timedelta(seconds=60)
        if first_time:
            _count(session, "files_processed_total", 1)
            _count(session, "audio_seconds_processed_total", result.duration)
            _count(session, f"files_{row.state}_total", 1)
            _count(session, "processing_seconds_sum", result.seconds)
            _count(session, "processing_seconds_count", 1)
            for bound in PROCESSING_BUCKETS:
                if result.seconds <= bound:
                    _count(session, f"processing_seconds_bucket:{bound:g}", 1)


def _public(text: str | None, stored_path: str, name: str) -> str | None:
    """A message for the client: the storage path replaced by the name the client sent."""
    return text.replace(stored_path, name) if text else text


def _finite(value: float) -> float | None:
    return float(value) if value == value and abs(value) != float("inf") else None


def _count(session: Any, name: str, amount: float) -> None:
    """Add to a counter (an upsert: safe when workers on several machines add at once)."""
    insert: Callable[..., Any]  # the two dialects' insert() differ only in their return type
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(Counter).values(name=name, value=float(amount))
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Counter.name], set_={"value": Counter.value + float(amount)}
        )
    )


def _finish(
    db: Database,
    storage: Storage,
    job_id: str,
    me: str,
    error: str | None = None,
    tagger: Any = None,
    options: Any = None,
) -> Outcome:
    """Write the job-level outputs (events of all files, manifest) and mark the job final."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.worker != me:
            raise JobCancelled(job_id)
        rows = list(job.files)
        failed = [f for f in rows if f.state == "failed"]
        if error is None and tagger is not None:
            events = job_events(session, job_id)
            try:
                _write_run_outputs(storage, job, rows, events, tagger, options)
            except OSError as exc:  # a full disk: the job ends, with the cause, not retried
                error = f"the results could not be written: {exc.strerror or exc}"
            if error is None and rows and len(failed) == len(rows):
                error = f"every file failed ({len(rows)}); first: {failed[0].error}"
            elif error is None and failed:
                job.error = f"{len(failed)} of {len(rows)} files failed"
        job.state = "failed" if error else "done"
        if error:
            job.error = error
        job.finished_at = utcnow()
        job.lease_until = None
        _count(session, f"jobs_{job.state}_total", 1)
        return Outcome(job.state, detail=job.error or "")


def job_events(session: Any, job_id: str) -> list[Any]:
    """Every event of a job as :class:`earmark.events.Event`, file names as uploaded."""
    from earmark.events import Event

    files = session.execute(
        select(JobFile.id, JobFile.name, JobFile.index).where(JobFile.job_id == job_id)
    ).all()
    names = {row[0]: row[1] for row in files}
    index = {row[0]: row[2] for row in files}
    rows = session.scalars(select(EventRow).where(EventRow.job_id == job_id)).all()
    rows = sorted(rows, key=lambda r: (index[r.file_id], r.seq))
    nan = float("nan")
    return [
        Event(
            file=names[r.file_id],
            label=r.label,
            mid=r.mid,
            onset=r.onset,
            offset=r.offset,
            peak=nan if r.peak is None else r.peak,
            mean=nan if r.mean is None else r.mean,
            alternatives=tuple(
                (str(a), str(m), nan if p is None else float(p)) for a, m, p in r.alternatives or ()
            ),
        )
        for r in rows
    ]


def _write_run_outputs(
    storage: Storage, job: Job, rows: list[JobFile], events: list[Any], tagger: Any, options: Any
) -> None:
    """The results folder in the layout of ``earmark detect -o`` (events, config, manifest)."""
    from earmark.batch import build_manifest, write_config
    from earmark.outputs import write_events_csv, write_events_json, write_events_tsv, write_json
    from earmark.pipeline import FileResult

    out = storage.results_dir(job.id)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": tagger.spec.name, "files": len(rows), "job": job.id}
    write_events_csv(out / "events.csv", events)
    write_events_json(out / "events.json", events, meta=meta)
    write_events_tsv(out / "events.tsv", events, full_names=True)
    write_config(out / "config.yaml", options)
    by_file: dict[str, list[Any]] = {}
    for event in events:
        by_file.setdefault(event.file, []).append(event)
    results = [
        FileResult(
            path=f.name,
            status={"done": "ok"}.get(f.state, f.state),
            events=by_file.get(f.name, []),
            duration=f.duration or 0.0,
            error=f.error,
            warnings=list(f.warnings or []),
            info={**(f.audio_info or {}), "stored": f.stored},
            seconds=f.processing_seconds or 0.0,
            outputs=_file_outputs(out, f.stored),
        )
        for f in rows
    ]
    started = _aware(job.started_at or job.created_at or utcnow())
    seconds = (utcnow() - started).total_seconds()
    manifest = build_manifest(tagger, options, results, started, seconds, None)
    manifest["job"] = {"id": job.id, "attempts": job.attempts}
    write_json(out / "manifest.json", manifest)


def attempts(db: Database, job_id: str) -> int:
    """How many times workers have started this job."""
    with db.session() as session:
        job = session.get(Job, job_id)
        return job.attempts if job is not None else 0


def give_up(db: Database, job_id: str, reason: str) -> None:
    """Fail a job for good (too many attempts, time limit): its unfinished files too."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.state in ("done", "failed"):
            return
        for row in job.files:
            if row.state not in FINAL_FILE_STATES:
                row.state, row.error = "failed", f"{row.name}: {reason}"
        job.state, job.error = "failed", reason
        job.finished_at = utcnow()
        job.lease_until = None
        _count(session, "jobs_failed_total", 1)


def _file_outputs(out: Path, stored: str) -> dict[str, str]:
    """The per-file outputs written for one stored file, by kind (``scores``, ``json`` ...)."""
    found: dict[str, str] = {}
    for path in sorted((out / "files").glob(f"{stored}.*")):
        kind = path.name[len(stored) + 1 :].split(".")[-2 if path.suffix == ".npz" else -1]
        if path.name.endswith(".audacity.txt"):
            kind = "audacity"
        elif path.name.endswith(".events.csv") or path.name.endswith(".events.tsv"):
            kind = path.suffix[1:]
        found[kind] = str(path)
    return found


def render_report(storage: Storage, job_id: str) -> Path:
    """Write (once) and return the job's HTML report, made by :mod:`earmark.report` from
    the results folder. The report needs no model (and no torch), so the API can render it
    on first request; the file is kept on the shared storage for every later request."""
    from earmark.report import write_report

    out = storage.results_dir(job_id)
    html = out / "report.html"
    if not html.is_file():
        with _REPORT_LOCK:
            if not html.is_file():
                write_report(out, audio_dir=storage.audio_dir(job_id), label=f"job {job_id}")
    return html


_REPORT_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- embedded worker
def next_job(db: Database) -> str | None:
    """The oldest job waiting for a worker (queued, or running with an expired lease)."""
    now = utcnow()
    with db.session() as session:
        return session.scalar(
            select(Job.id)
            .where(
                or_(
                    Job.state == "queued",
                    (Job.state == "running") & (Job.lease_until < now),
                )
            )
            .order_by(Job.sync.desc(), Job.created_at)
            .limit(1)
        )


def poll_loop(
    db: Database,
    storage: Storage,
    settings: Settings,
    stop: Callable[[], bool],
    interval: float = 0.5,
) -> None:
    """Embedded mode: take jobs from the database until ``stop()`` (no broker needed)."""
    me = worker_name()
    while not stop():
        try:
            job_id = next_job(db)
        except Exception:  # database briefly unavailable: try again
            log.exception("embedded worker: cannot read the job table")
            time.sleep(interval * 4)
            continue
        if job_id is None:
            time.sleep(interval)
            continue
        try:
            if attempts(db, job_id) >= MAX_ATTEMPTS:
                give_up(db, job_id, f"gave up after {MAX_ATTEMPTS} attempts")
                continue
            outcome = process_job(db, storage, settings, job_id, me)
        except Exception:  # retried once the lease expires, up to MAX_ATTEMPTS
            log.exception("embedded worker: job %s failed unexpectedly", job_id)
            time.sleep(interval)
            continue
        if outcome.status == "busy":
            time.sleep(interval)
