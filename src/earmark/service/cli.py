"""``earmark serve``, ``earmark worker``, ``earmark db`` and ``earmark keys``; and
``earmark detect --queue`` (a batch sent to the service's workers).

Registered from :mod:`earmark.cli` with :func:`add_parser`; nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _settings() -> Any:
    from earmark.service.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _database(settings: Any) -> Any:
    from earmark.service.db import Database

    return Database(settings.database_url)


# ---------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace, argv: Any = None) -> int:
    """API (and, in embedded mode, a local worker process)."""
    import uvicorn

    from earmark.service.api import create_app
    from earmark.service.security import create_key
    from earmark.service.storage import Storage

    settings = _settings()
    if settings.auth == "none" and args.host not in LOOPBACK:
        print(
            f"earmark: EARMARK_AUTH=none is only allowed on loopback, not on {args.host}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    Storage(settings.storage_dir).ensure()
    db = _database(settings)
    if settings.auto_migrate:
        db.upgrade()
    if settings.auth == "keys" and settings.embedded and not settings.bootstrap_keys:
        from sqlalchemy import func, select

        from earmark.service.models import ApiKey

        with db.session() as session:
            active = session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
            )
            if not active:
                _, secret = create_key(session, "local", admin=True)
                print(
                    f"earmark: created an admin API key for this machine (shown once): {secret}\n"
                    "         paste it into the web page, or set EARMARK_AUTH=none on loopback",
                    file=sys.stderr,
                )
    db.dispose()
    supervisor = None
    if settings.embedded and not args.no_worker:
        supervisor = EmbeddedWorker()
        supervisor.start()
    mode = "embedded (local worker, database queue)" if settings.embedded else "queue"
    print(
        f"earmark: serving on http://{args.host}:{args.port}/ ({mode}; storage "
        f"{settings.storage_dir})",
        file=sys.stderr,
    )
    try:
        if args.workers > 1:  # several API processes (each reads the same environment)
            uvicorn.run(
                "earmark.service.api:create_app",
                factory=True,
                workers=args.workers,
                host=args.host,
                port=args.port,
                log_level=settings.log_level,
                proxy_headers=True,
                timeout_graceful_shutdown=10,
            )
        else:
            uvicorn.run(
                create_app(settings),
                host=args.host,
                port=args.port,
                log_level=settings.log_level,
                proxy_headers=True,
                timeout_graceful_shutdown=10,
            )
    finally:
        if supervisor is not None:
            supervisor.stop()
    return EXIT_OK


class EmbeddedWorker:
    """The local worker process of ``earmark serve``, restarted (with backoff) when it dies.

    Jobs it held come back to the next worker when their lease expires; readiness follows the
    worker's heartbeat file, so ``/readyz`` fails while no worker runs.
    """

    def __init__(self) -> None:
        import threading

        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.restarts = 0
        self.thread = threading.Thread(target=self._watch, name="earmark-supervisor", daemon=True)

    def _spawn(self) -> subprocess.Popen:
        code = "from earmark.cli import main; raise SystemExit(main())"
        return subprocess.Popen([sys.executable, "-c", code, "worker", "--embedded"])

    def start(self) -> None:
        """Start the worker and its watch."""
        self.child = self._spawn()
        self.thread.start()

    def _watch(self) -> None:
        backoff = 1.0
        while not self.stopping.wait(0.5):
            assert self.child is not None
            code = self.child.poll()
            if code is None:
                backoff = max(1.0, backoff * 0.9)
                continue
            self.restarts += 1
            print(
                f"earmark: the embedded worker exited (code {code}); restarting it in"
                f" {backoff:.0f} s (restart {self.restarts})",
                file=sys.stderr,
            )
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            self.child = self._spawn()

    def stop(self) -> None:
        """Stop watching, then the worker (terminate, then kill after 20 s)."""
        self.stopping.set()
        self.thread.join(timeout=5)
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.child.kill()


# ---------------------------------------------------------------------------- worker
def cmd_worker(args: argparse.Namespace, argv: Any = None) -> int:
    """A Celery worker (or, with --embedded, a database-polling worker)."""
    settings = _settings()
    if args.check:
        from earmark.service.worker import check

        problems = check(settings)
        for problem in problems:
            print(f"earmark: {problem}", file=sys.stderr)
        if not problems:
            print("earmark worker: broker, database and model OK")
        return EXIT_FAILED if problems else EXIT_OK
    if args.embedded:
        from earmark.service import jobs
        from earmark.service.storage import Storage

        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        parent = os.getppid()  # started by 'earmark serve': stop when it is gone

        def stop() -> bool:
            return bool(stopping) or os.getppid() != parent

        import threading

        from earmark.service.storage import HEARTBEAT_SECONDS

        storage = Storage(settings.storage_dir)

        def heartbeat() -> None:  # readiness of 'earmark serve' follows this file
            while not stop():
                with contextlib.suppress(OSError):  # a full disk: readiness will say so
                    storage.beat()
                time.sleep(HEARTBEAT_SECONDS)

        threading.Thread(target=heartbeat, name="earmark-heartbeat", daemon=True).start()
        db = _database(settings)
        jobs.poll_loop(db, storage, settings, stop)
        return EXIT_OK
    if not settings.broker_url:
        print(
            "earmark: EARMARK_BROKER_URL is not set (e.g. redis://localhost:6379/0); "
            "'earmark serve' runs its own worker without a broker",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from earmark.service.settings import QUEUE_NAME
    from earmark.service.worker import celery_app

    celery_app.worker_main(
        [
            "worker",
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--queues",
            QUEUE_NAME,
            "--loglevel",
            settings.log_level.upper(),
            "--hostname",
            args.name or f"earmark-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- db, keys
def cmd_db(args: argparse.Namespace, argv: Any = None) -> int:
    """``earmark db upgrade|current``."""
    from earmark.service.db import current_revision

    settings = _settings()
    db = _database(settings)
    if args.db_command == "upgrade":
        db.upgrade()
    revision = current_revision(settings.database_url, db.engine)
    print(f"database {db.engine.url.render_as_string(hide_password=True)} at revision {revision}")
    db.dispose()
    return EXIT_OK


def cmd_keys(args: argparse.Namespace, argv: Any = None) -> int:
    """``earmark keys create|list|revoke``."""
    from sqlalchemy import select

    from earmark.service.models import ApiKey
    from earmark.service.security import create_key, revoke_key

    settings = _settings()
    db = _database(settings)
    if settings.auto_migrate:
        db.upgrade()
    with db.session() as session:
        if args.keys_command == "create":
            try:
                key, secret = create_key(session, args.name, admin=args.admin)
            except ValueError as exc:
                print(f"earmark: {exc}", file=sys.stderr)
                return EXIT_USAGE
            if args.json:
                print(json.dumps({"id": key.id, "name": key.name, "key": secret}))
            else:
                print(f"created key {key.id} ({key.name}{', admin' if key.admin else ''}):")
                print(secret)
                print("store it now: only its hash is kept", file=sys.stderr)
        elif args.keys_command == "list":
            rows = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "id": k.id,
                                "name": k.name,
                                "prefix": k.prefix,
                                "admin": k.admin,
                                "revoked": k.revoked_at is not None,
                            }
                            for k in rows
                        ]
                    )
                )
            else:
                print(f"{'id':>4}  {'name':<20} {'prefix':<10} admin  state")
                for k in rows:
                    state = "revoked" if k.revoked_at else "active"
                    print(f"{k.id:>4}  {k.name:<20} {k.prefix:<10} {k.admin!s:<5}  {state}")
        else:
            try:
                key = revoke_key(session, args.id)
            except KeyError as exc:
                print(f"earmark: {exc.args[0]}", file=sys.stderr)
                return EXIT_USAGE
            print(f"revoked key {key.id} ({key.name})")
    db.dispose()
    return EXIT_OK


# ---------------------------------------------------------------------------- detect --queue
def detect_via_queue(
    broker_url: str, inputs: list[str], out_dir: str, options: Any, quiet: bool, as_json: bool
) -> int:
    """Send files to the service's workers as one job, follow it, copy its results to
    ``out_dir`` (same layout as a local run). Needs the workers' database and storage
    (``EARMARK_DATABASE_URL``, ``EARMARK_STORAGE_DIR``)."""
    import dataclasses

    from earmark.inputs import collect_inputs, printable
    from earmark.service import jobs
    from earmark.service.security import UploadError, check_audio
    from earmark.service.settings import QUEUE_NAME
    from earmark.service.storage import Storage
    from earmark.service.worker import TASK_NAME, make_celery

    settings = dataclasses.replace(_settings(), broker_url=broker_url)
    db = _database(settings)
    if settings.auto_migrate:
        db.upgrade()
    storage = Storage(settings.storage_dir)
    storage.ensure()
    items, rejected = [], []
    for entry in collect_inputs(inputs):
        path = entry.path
        if entry.problem:
            rejected.append(f"{printable(path)}: {entry.problem}")
            continue
        try:
            checked = check_audio(path, str(path), settings.max_audio_seconds)
        except (UploadError, OSError) as exc:
            rejected.append(str(exc))
            continue
        fd, tmp = tempfile.mkstemp(dir=storage.upload_tmp_dir(), suffix=".upload")
        os.close(fd)
        shutil.copyfile(path, tmp)
        items.append((str(path), Path(tmp), checked))
    for reason in rejected:
        print(f"earmark: FAILED: {reason}", file=sys.stderr)
    if not items:
        print("earmark: no audio files to send", file=sys.stderr)
        return EXIT_FAILED
    job = jobs.create_job_record(db, storage, None, items, _flat_options(options))
    make_celery(settings).send_task(TASK_NAME, args=[job.id], queue=QUEUE_NAME)
    if not quiet:
        print(f"earmark: job {job.id}: {len(items)} file(s) sent to {broker_url}", file=sys.stderr)
    status = _follow(db, job.id, quiet)
    results = storage.results_dir(job.id)
    out = Path(out_dir)
    if results.is_dir():
        shutil.copytree(results, out, dirs_exist_ok=True)
    summary = {"job": job.id, "state": status["state"], "out_dir": str(out), **status}
    if as_json:
        print(json.dumps(summary, indent=2))
    elif not quiet:
        print(f"job {job.id}: {status['state']}, {status['events']} events, results in {out}")
    for problem in status["problems"]:
        print(f"earmark: FAILED: {problem}", file=sys.stderr)
    failed = status["state"] != "done" or status["problems"] or rejected
    return EXIT_FAILED if failed else EXIT_OK


def _flat_options(options: Any) -> dict:
    """The job options of a :class:`DetectOptions`: its config-file form without what only
    makes sense on this machine (parallelism, a local checkpoint path)."""
    data = options.to_dict()
    for local in ("jobs", "threads", "checkpoint"):
        data.pop(local, None)
    return data


def _follow(db: Any, job_id: str, quiet: bool) -> dict:
    from earmark.service.models import Job

    last = ""
    while True:
        with db.session() as session:
            job = session.get(Job, job_id)
            files = list(job.files)
            done = sum(f.seconds_done for f in files)
            total = sum(f.duration or 0 for f in files)
            state = job.state
            line = f"[{sum(f.state in jobs_final() for f in files)}/{len(files)} files] "
            line += f"{done:.0f} of {total:.0f} s of audio, {state}"
            if state in ("done", "failed"):
                return {
                    "state": state,
                    "events": sum(f.n_events for f in files),
                    "problems": [f.error for f in files if f.error]
                    + ([job.error] if state == "failed" and job.error else []),
                }
        if not quiet and line != last:
            print(line, file=sys.stderr)
            last = line
        time.sleep(1.0)


def jobs_final() -> tuple[str, ...]:
    """File states that mean finished."""
    from earmark.service.jobs import FINAL_FILE_STATES

    return FINAL_FILE_STATES


# ---------------------------------------------------------------------------- parser
def add_parser(sub: Any) -> None:
    """Register ``serve``, ``worker``, ``db`` and ``keys`` on the ``earmark`` command."""
    serve = sub.add_parser(
        "serve",
        help="run the web API and page (with a local worker unless EARMARK_BROKER_URL is set)",
        description="Serve the REST API (/docs), the web page (/) and metrics. Without "
        "EARMARK_BROKER_URL this is embedded mode: SQLite in EARMARK_STORAGE_DIR and a local "
        "worker process, nothing else to install.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--no-worker", action="store_true", help="API only, no local worker")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes (default 1; jobs need workers)"
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="run a worker that processes queued jobs (Celery, EARMARK_BROKER_URL)",
        description="Start a Celery worker on the EARMARK_BROKER_URL queue: each process loads "
        "the model once and processes one job at a time. Start more workers to scale.",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes")
    worker.add_argument("--name", help="Celery node name (default earmark-<pid>@<host>)")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if broker, database and model are reachable"
    )
    worker.add_argument(
        "--embedded", action="store_true", help="no broker: take jobs from the database"
    )
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="service database: migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to the latest (Alembic)")
    db_sub.add_parser("current", help="show the database's migration revision")
    db.set_defaults(func=cmd_db)

    keys = sub.add_parser("keys", help="service API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once, stored hashed)")
    create.add_argument("name", help="who the key is for")
    create.add_argument("--admin", action="store_true", help="may read every key's jobs")
    create.add_argument("--json", action="store_true", help="print id, name and key as JSON")
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int, help="key id (see 'keys list')")
    keys.set_defaults(func=cmd_keys)
