"""Retraining from the review page: the user's ``earmark train`` command, run in the
background with ``--from-reviews RUN_DIR``, then the run detected again with the new model and
compared with it (``earmark review RUN_DIR --train "train clips.csv -o models/v2 ..."``)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from earmark.review.compare import compare_runs, redetect
from earmark.review.run import Run, RunError
from earmark.review.store import ReviewError, ReviewStore

LOG_TAIL = 20
"""Lines of the training's output the page shows."""


def train_command(text: str) -> tuple[list[str], Path]:
    """The arguments of an ``earmark train`` command line and the model folder it writes.

    Raises:
        ReviewError: not a ``train`` command, or one without ``-o``/``--output``.
    """
    args = shlex.split(text)
    if args and Path(args[0]).name == "earmark":
        args = args[1:]
    if not args or args[0] != "train":
        raise ReviewError(f"--train must be an 'earmark train ...' command, not {text!r}")
    for flag in ("-o", "--output"):
        if flag in args[:-1]:
            return args, Path(args[args.index(flag) + 1]).expanduser()
    found = [a.split("=", 1)[1] for a in args if a.startswith("--output=")]
    if not found:
        raise ReviewError(f"--train needs the model folder it writes (-o MODEL_DIR): {text!r}")
    return args, Path(found[0]).expanduser()


class Retrainer:
    """One background retraining at a time; :meth:`status` says where it is."""

    def __init__(self, store: ReviewStore, command: str) -> None:
        self.store = store
        self.args, self.model = train_command(command)
        self.log = store.folder / "retrain.log"
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"state": "idle", "model": str(self.model)}

    def status(self) -> dict[str, Any]:
        """``state`` (idle, training, detecting, done, failed), the model folder, the last
        lines of the training's output, the error or the comparison."""
        with self._lock:
            status = dict(self._status)
        if self.log.exists():
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
            status["log"] = lines[-LOG_TAIL:]
        return status

    def start(self) -> dict[str, Any]:
        """Start retraining (and then the comparison) in a thread.

        Raises:
            ReviewError: it is already running, or nothing was reviewed yet.
        """
        with self._lock:
            if self._status["state"] in ("training", "detecting"):
                raise ReviewError("a retraining is already running")
            if not self.store.reviewed():
                raise ReviewError("review some detections first: there is nothing to learn yet")
            self._status = {"state": "training", "model": str(self.model)}
        threading.Thread(target=self._work, daemon=True).start()
        return self.status()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._status.update(changes)

    def _work(self) -> None:
        run: Run = self.store.run
        command = [*self.args, "--from-reviews", str(run.root), "--overwrite"]
        try:
            with open(self.log, "w", encoding="utf-8") as out:
                code = subprocess.run(
                    [sys.executable, "-m", "earmark", *command],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
            if code != 0:
                tail = self.log.read_text(encoding="utf-8", errors="replace").strip()
                last = tail.splitlines()[-1] if tail else f"exit code {code}"
                self._set(state="failed", error=f"earmark train failed: {last}")
                return
            self._set(state="detecting")
            comparison = compare_runs(run, redetect(run, self.model), self.store.reviewed())
            self._set(state="done", compare=comparison)
        except (OSError, RunError) as exc:
            self._set(state="failed", error=str(exc))
