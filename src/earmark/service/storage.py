"""Audio and result files of jobs, under one storage directory (a volume in deployment).

Layout (no client-supplied name is ever part of a path)::

    STORAGE/jobs/<job id>/audio/<index>.<format>        uploaded audio, as sent
    STORAGE/jobs/<job id>/results/...                    the run folder: events.{csv,json,tsv},
                                                         files/<index>.<format>.*, manifest.json
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
HEARTBEAT_SECONDS = 2.0
"""The embedded worker touches its heartbeat file this often."""
HEARTBEAT_STALE_SECONDS = 15.0
"""Readiness fails when the embedded worker's heartbeat is older than this."""
STALE_UPLOAD_SECONDS = 3600.0
"""A spooled upload untouched this long was abandoned (an API process died while receiving)."""


class Storage:
    """Paths and file operations of the storage directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        """``STORAGE/jobs/<job id>``; the id must be a job id, never anything path-like."""
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / "jobs" / job_id

    def audio_dir(self, job_id: str) -> Path:
        """Where a job's uploads are kept."""
        return self.job_dir(job_id) / "audio"

    def results_dir(self, job_id: str) -> Path:
        """The job's run folder (same layout as ``earmark detect -o``)."""
        return self.job_dir(job_id) / "results"

    def upload_tmp_dir(self) -> Path:
        """Where uploads are spooled while they are received and checked."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def audio_path(self, job_id: str, stored: str) -> Path:
        """The stored audio file of a job (``stored`` is a name this service generated)."""
        if "/" in stored or "\\" in stored or stored.startswith("."):
            raise ValueError(f"not a stored file name: {stored!r}")
        return self.audio_dir(job_id) / stored

    def adopt(self, job_id: str, stored: str, temp: Path) -> Path:
        """Move a checked upload into the job's audio folder (atomic rename)."""
        target = self.audio_path(job_id, stored)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        return target

    def delete_job(self, job_id: str) -> None:
        """Remove every file of a job."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def sweep_uploads(self, older_than: float = STALE_UPLOAD_SECONDS) -> int:
        """Remove spooled uploads abandoned for ``older_than`` seconds; how many were removed."""
        folder = self.root / "tmp"
        if not folder.is_dir():
            return 0
        limit, removed = time.time() - older_than, 0
        for path in folder.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError:  # another process took it meanwhile
                continue
        return removed

    def free_mb(self) -> float:
        """Free space of the storage's file system, in MB."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free / (1024 * 1024)

    def beat(self) -> None:
        """The embedded worker is alive (touch its heartbeat file)."""
        path = self.root / "embedded-worker.alive"
        path.touch()
        os.utime(path)

    def heartbeat_age(self) -> float | None:
        """Seconds since the embedded worker's last heartbeat (``None``: never seen)."""
        try:
            return max(0.0, time.time() - (self.root / "embedded-worker.alive").stat().st_mtime)
        except OSError:
            return None

    def ensure(self) -> None:
        """Create the storage directory and check it is writable."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
