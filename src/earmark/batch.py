"""Many recordings into one output folder: per-file isolation, resume, the run's manifest.

:func:`run` is what ``earmark detect`` calls. Its guarantees:

* every input is accounted for: processed, or failed with its reason (missing, broken link,
  FIFO, unreadable folder, decoding error, outputs that could not be written);
* a failed file has no events in the run's totals and no outputs in ``OUT/files`` (what an
  earlier run left for it is removed);
* every file is written atomically (temporary name, then rename); the manifest says
  ``"complete": false`` while the run goes on and ``true`` once everything is written;
* an output folder that holds an earlier run is refused unless ``existing`` says
  ``"overwrite"`` (its outputs are removed first) or ``"resume"`` (files finished with the same
  options are kept, the others processed);
* a worker process that dies (``jobs > 1``) costs only the file it was working on.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from earmark.audio import SAMPLE_RATE, AudioError, probe
from earmark.events import Event
from earmark.inputs import FILES_DIR, Input, collect_inputs, name_bytes, output_stems, printable
from earmark.outputs import (
    read_events,
    write_events_csv,
    write_events_json,
    write_events_tsv,
    write_json,
)
from earmark.pipeline import (
    DetectOptions,
    FileResult,
    check_options,
    default_threads,
    file_identity,
    process_file,
)
from earmark.tagger import Tagger, load_model

RUN_FILES = ("events.csv", "events.json", "events.tsv", "config.yaml", "manifest.json")
"""Run-level outputs, written after every file is done (the manifest last)."""
PARTIAL_MANIFEST_SECONDS = 5.0
"""While a run goes on, its manifest (``complete: false``) is rewritten at most this often."""
EXISTING = ("refuse", "overwrite", "resume")
"""What :func:`run` may do with an output folder that holds an earlier run."""
OPTIONS_FREE_TO_CHANGE = ("jobs", "threads")
"""Options that do not change results: ``resume`` accepts a run made with other values."""


class OutputFolderError(ValueError):
    """The output folder cannot be used (not a folder, not writable, holds another run)."""


class NoInputError(ValueError):
    """Not one input can be analysed (each is missing, unreadable, or holds no audio file)."""


@dataclass
class RunSummary:
    """The outcome of :func:`run`."""

    out_dir: Path
    results: list[FileResult]
    seconds: float
    manifest: dict
    resumed: int = 0
    """Files whose results were kept from the earlier run (``existing="resume"``)."""
    output_error: str | None = None
    """Why the run-level outputs could not be written (the per-file outputs are kept)."""

    @property
    def failed(self) -> list[FileResult]:
        """Files that failed or were only partly decoded."""
        return [r for r in self.results if r.status != "ok"]

    @property
    def events(self) -> list[Event]:
        """All events of the run."""
        return [e for r in self.results for e in r.events]

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio analysed."""
        return sum(r.duration for r in self.results)

    def counts_by_label(self) -> dict[str, tuple[int, float]]:
        """Per label: number of events and their total duration in seconds, most frequent first."""
        counts: dict[str, list[float]] = {}
        for event in self.events:
            entry = counts.setdefault(event.label, [0, 0.0])
            entry[0] += 1
            entry[1] += event.offset - event.onset
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return {label: (int(n), total) for label, (n, total) in ordered}


class Progress:
    """Receives progress of a run; the CLI renders it. All methods are optional no-ops."""

    def start(self, n_files: int, total_seconds: float | None) -> None:
        """The run starts with this many files and (estimated) seconds of audio."""

    def file_started(self, path: str) -> None:
        """One file started."""

    def advance(self, path: str, seconds_done_in_file: float) -> None:
        """Seconds of audio of the current file scored so far."""

    def file_done(self, result: FileResult) -> None:
        """One file finished (any status)."""

    def finish(self, summary: RunSummary) -> None:
        """The run is over."""


# ---------------------------------------------------------------------------- the output folder
def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def read_manifest(out: Path) -> dict | None:
    """The manifest of the run in ``out`` (``None`` if there is none or it is unreadable)."""
    try:
        data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare_output(out: Path, options: DetectOptions, existing: str) -> dict[str, dict]:
    """Make ``out`` ready for a run; the earlier run's reusable file entries by path (resume).

    Raises :class:`OutputFolderError` naming the folder and the cause.
    """
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, got {existing!r}")
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"output folder {printable(out)} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".earmark-write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        message = f"cannot write to output folder {printable(out)}: {cause}"
        raise OutputFolderError(message) from None
    earlier = read_manifest(out)
    leftovers = earlier is not None or (out / FILES_DIR).exists()
    if not leftovers:
        return {}
    if existing == "refuse":
        when = f" made {earlier.get('created')}" if earlier else ""
        raise OutputFolderError(
            f"output folder {printable(out)} holds an earlier run{when}: pass --overwrite to"
            " replace it, --resume to finish it, or choose another folder"
        )
    if existing == "overwrite":
        _remove_run(out, earlier)
        return {}
    if earlier is None:
        raise OutputFolderError(
            f"output folder {printable(out)} has results but no manifest.json to resume from:"
            " pass --overwrite to replace them"
        )
    changed = _changed_options(earlier.get("options") or {}, options.to_dict())
    if changed:
        raise OutputFolderError(
            f"cannot resume the run in {printable(out)}: it was made with other options"
            f" ({', '.join(changed)}); pass --overwrite to start again"
        )
    return {
        entry["path"]: entry
        for entry in earlier.get("files", [])
        if isinstance(entry, dict) and entry.get("status") in ("ok", "partial")
    }


def _changed_options(before: dict, now: dict, prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(before) | set(now)):
        if not prefix and key in OPTIONS_FREE_TO_CHANGE:
            continue
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_options(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def _remove_run(out: Path, earlier: dict | None) -> None:
    """Remove what an earlier run wrote in ``out`` (only paths inside ``out``)."""
    for entry in (earlier or {}).get("files", []):
        for path in (entry.get("outputs") or {}).values():
            target = Path(path)
            if _inside(target, out):
                with contextlib.suppress(OSError):
                    target.unlink()
    files = out / FILES_DIR
    if files.is_dir():  # whatever else an interrupted run left there
        for folder, _dirs, names in os.walk(files, topdown=False):
            for name in names:
                with contextlib.suppress(OSError):
                    (Path(folder) / name).unlink()
            with contextlib.suppress(OSError):
                Path(folder).rmdir()
    for name in (*RUN_FILES, "report.html", "report.md"):
        with contextlib.suppress(OSError):
            (out / name).unlink()


def _reuse(entry: dict | None, path: Path) -> FileResult | None:
    """The earlier result of ``path`` if its outputs are all there and the file is unchanged."""
    if entry is None:
        return None
    outputs = entry.get("outputs") or {}
    audio = entry.get("audio") or {}
    try:
        identity = file_identity(path)
    except OSError:
        return None
    if any(audio.get(k) != v for k, v in identity.items()):
        return None
    if not outputs or not all(Path(p).is_file() for p in outputs.values()):
        return None
    source = next((outputs[k] for k in ("json", "csv", "tsv") if k in outputs), None)
    if source is None:
        return None
    try:
        events = read_events(source)
    except (OSError, ValueError):
        return None
    return FileResult.from_dict(entry, events)


# ---------------------------------------------------------------------------- worker processes
_WORKER: dict[str, object] = {}


def _worker_init(model: str, checkpoint: str | None, threads: int) -> None:
    _WORKER["tagger"] = load_model(model, checkpoint=checkpoint, threads=threads)


def _worker_run(path: bytes, stem: str | None, options: DetectOptions) -> FileResult:
    """One file in a worker process (``path`` as bytes: any name survives pickling)."""
    tagger = _WORKER["tagger"]
    assert isinstance(tagger, Tagger)
    return process_file(tagger, Path(os.fsdecode(path)), Path(stem) if stem else None, options)


def _died(entry: Input) -> FileResult:
    name = printable(entry.path)
    return FileResult(
        path=name,
        status="failed",
        error=f"{name}: the worker process died while analysing it (killed, or out of memory)",
        path_bytes=name_bytes(entry.path),
    )


def _in_processes(
    todo: list[tuple[int, Input, Path]],
    options: DetectOptions,
    jobs: int,
    threads: int,
    done: Callable[[int, FileResult], None],
) -> None:
    """Process ``todo`` in ``jobs`` worker processes; ``done(i, result)`` for each file.

    When a worker dies, the files in flight are retried one at a time in a fresh worker, so
    that only the file that kills its worker fails.
    """
    init = (options.model, options.checkpoint, threads)
    pending = todo
    result: FileResult | Future[FileResult]
    with ProcessPoolExecutor(jobs, initializer=_worker_init, initargs=init) as pool:
        futures = {
            pool.submit(_worker_run, os.fsencode(e.path), str(stem), options): (i, e, stem)
            for i, e, stem in pending
        }
        pending = []
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                pending.append(futures[future])
                continue
            done(futures[future][0], result)
    for i, entry, stem in sorted(pending, key=lambda item: item[0]):
        with ProcessPoolExecutor(1, initializer=_worker_init, initargs=init) as pool:
            try:
                result = pool.submit(_worker_run, os.fsencode(entry.path), str(stem), options)
                done(i, result.result())
            except BrokenProcessPool:
                done(i, _died(entry))


# ---------------------------------------------------------------------------- the run
def run(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: DetectOptions | None = None,
    progress: Progress | None = None,
    tagger: Tagger | None = None,
    argv: Sequence[str] | None = None,
    existing: str = "refuse",
) -> RunSummary:
    """Detect events in every input file and write per-file and run-level outputs.

    Writes ``OUT/files/...`` (events in each format, compressed framewise scores),
    ``OUT/events.{csv,json,tsv}`` for the whole run, ``OUT/config.yaml`` (the effective options,
    usable with ``--config``) and ``OUT/manifest.json`` (model, checkpoint sha256, every option,
    package versions, per-file status). ``existing`` says what to do when ``OUT`` holds an
    earlier run (see :data:`EXISTING`).

    A bad file never raises (it is reported in its result); invalid options, including class
    names unknown to the model, raise ``ValueError`` before anything is written, as do an
    unusable output folder (:class:`OutputFolderError`) and inputs of which not one can be read
    (:class:`NoInputError`).
    """
    import torch

    options = options or DetectOptions()
    options.validate()
    progress = progress or Progress()
    started_at = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    entries = collect_inputs(inputs)
    readable = [e for e in entries if e.problem is None]
    if not readable:  # a usage error: nothing is created
        reasons = [f"{printable(e.path)}: {e.problem}" for e in entries]
        named = ", ".join(printable(i) for i in inputs) or "(none)"
        raise NoInputError(
            "nothing to analyse: " + ("; ".join(reasons) or f"no audio files in {named}")
        )
    jobs = min(options.jobs, max(len(readable), 1))
    threads = options.threads or default_threads(jobs)
    # model and options before any output: a missing model or a bad class name writes nothing
    if tagger is None:
        tagger = load_model(options.model, checkpoint=options.checkpoint, threads=threads)
    elif options.threads:
        torch.set_num_threads(options.threads)
    check_options(tagger, options)
    out = Path(out_dir)
    earlier = prepare_output(out, options, existing)
    stems = output_stems(out, entries)
    progress.start(len(entries), _estimate_seconds(readable))

    results: dict[int, FileResult] = {}
    last_write = [0.0]

    def done(i: int, result: FileResult) -> None:
        results[i] = result
        progress.file_done(result)
        now = time.perf_counter()
        if now - last_write[0] >= PARTIAL_MANIFEST_SECONDS:
            last_write[0] = now
            ordered = [results[k] for k in sorted(results)]
            record.write(ordered, now - t0, False)

    record = _Record(out, tagger, options, started_at, argv)
    record.write([], 0.0, False)
    todo: list[tuple[int, Input, Path]] = []
    resumed = 0
    for i, (entry, stem) in enumerate(zip(entries, stems, strict=True)):
        if entry.problem is not None:
            name = printable(entry.path)
            failed = FileResult(name, "failed", error=f"{name}: {entry.problem}")
            failed.path_bytes = name_bytes(entry.path)
            done(i, failed)
            continue
        kept = _reuse(earlier.get(printable(entry.path)), entry.path)
        if kept is not None:
            resumed += 1
            done(i, kept)
        else:
            todo.append((i, entry, stem))
    if jobs == 1 or len(todo) < 2:
        for i, entry, stem in todo:
            name = printable(entry.path)
            progress.file_started(name)
            advance = lambda s, f=name: progress.advance(f, s)  # noqa: E731
            done(i, process_file(tagger, entry.path, stem, options, advance))
    else:
        _in_processes(todo, options, jobs, threads, done)

    ordered = [results[k] for k in sorted(results)]
    seconds = time.perf_counter() - t0
    summary = RunSummary(out, ordered, seconds, {}, resumed=resumed)
    try:
        all_events = [e for r in ordered for e in r.events]
        meta = {"model": tagger.spec.name, "files": len(ordered)}
        write_events_csv(out / "events.csv", all_events)
        write_events_json(out / "events.json", all_events, meta=meta)
        write_events_tsv(out / "events.tsv", all_events, full_names=True)
        write_config(out / "config.yaml", options)
        summary.manifest = record.write(ordered, seconds, True)
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        where = printable(exc.filename) if exc.filename else printable(out)
        summary.output_error = (
            f"could not write the run's outputs ({where}: {cause}); the per-file outputs"
            f" under {printable(out / FILES_DIR)} are kept: free space, then run again with"
            " --resume to finish the run"
        )
        summary.manifest = record.salvage(ordered, seconds, summary.output_error)
    progress.finish(summary)
    return summary


@dataclass
class _Record:
    """The run's manifest in ``out``: rewritten while the run goes on, completed or salvaged."""

    out: Path
    tagger: Tagger
    options: DetectOptions
    started_at: _dt.datetime
    argv: Sequence[str] | None

    def write(self, results: Sequence[FileResult], seconds: float, complete: bool) -> dict:
        """Write the manifest (an incomplete one silently skips a write that fails)."""
        manifest = build_manifest(
            self.tagger,
            self.options,
            results,
            self.started_at,
            seconds,
            self.argv,
            complete,
            self.out,
        )
        try:
            write_json(self.out / "manifest.json", manifest)
        except OSError:
            if complete:
                raise
        return manifest

    def salvage(self, results: Sequence[FileResult], seconds: float, error: str) -> dict:
        """After the run-level files could not be written (a full disk): remove the ones that
        were (they can be rebuilt and would disagree with the manifest), then record every
        file's outcome in an incomplete manifest, so that ``--resume`` can finish the run."""
        for name in RUN_FILES[:-1]:
            with contextlib.suppress(OSError):
                (self.out / name).unlink()
        manifest = build_manifest(
            self.tagger, self.options, results, self.started_at, seconds, self.argv, False, self.out
        )
        manifest["error"] = error
        with contextlib.suppress(OSError):
            write_json(self.out / "manifest.json", manifest)
        return manifest


def _estimate_seconds(files: Iterable[Input]) -> float | None:
    total = 0.0
    for entry in files:
        try:
            duration = probe(entry.path, quick=True).duration
        except AudioError:
            continue
        total += duration or 0.0
    return total or None


def write_config(path: Path, options: DetectOptions) -> None:
    """Write the effective options as YAML, loadable with ``earmark detect --config``."""
    import yaml

    from earmark.outputs import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(options.to_dict(), sort_keys=False))


def package_versions() -> dict[str, str]:
    """Versions of earmark and the libraries that shape its results."""
    versions = {"python": platform.python_version()}
    for name in ("earmark", "torch", "onnxruntime", "numpy", "scipy", "av", "soxr"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _custom_classes_entry(tagger: Tagger, options: DetectOptions) -> dict | None:
    if not options.classes:
        return None
    from earmark.extensions import class_provider

    return class_provider().describe(tagger, options)


def build_manifest(
    tagger: Tagger,
    options: DetectOptions,
    results: Sequence[FileResult],
    started_at: _dt.datetime,
    seconds: float,
    argv: Sequence[str] | None,
    complete: bool = True,
    out: Path | None = None,
) -> dict:
    """Everything needed to understand and repeat a run (``complete`` is false while it runs).

    ``reproduce`` is a command that repeats the run from any folder: with ``out`` (the CLI),
    absolute paths of the inputs and of ``out/config.yaml``; without (the service), the files'
    names and ``config.yaml`` as the results give them."""
    audio_seconds = sum(r.duration for r in results)
    if out is not None:
        reproduce = shlex.join(
            ["earmark", "detect", "--config", printable(Path(out).resolve() / "config.yaml")]
            + [printable(os.path.abspath(r.path)) for r in results]
            + ["-o", "<new-out>"]
        )
    else:
        reproduce = shlex.join(
            ["earmark", "detect", "--config", "config.yaml"]
            + [printable(r.path) for r in results]
            + ["-o", "<new-out>"]
        )
    return {
        "earmark_version": package_versions()["earmark"],
        "created": started_at.isoformat(timespec="seconds"),
        "complete": complete,
        "command": [printable(a) for a in argv] if argv is not None else None,
        "reproduce": reproduce,
        "model": {**tagger.describe(), "backend": tagger.backend(options.scoring)},
        "options": options.to_dict(),
        "custom_classes": _custom_classes_entry(tagger, options),
        "frame_hop_seconds": options.scoring.frame_hop,
        "sample_rate": SAMPLE_RATE,
        "versions": package_versions(),
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "executable": sys.executable,
        },
        "totals": {
            "files": len(results),
            "ok": sum(r.status == "ok" for r in results),
            "partial": sum(r.status == "partial" for r in results),
            "failed": sum(r.status == "failed" for r in results),
            "audio_seconds": round(audio_seconds, 3),
            "events": sum(len(r.events) for r in results),
            "processing_seconds": round(seconds, 3),
            "realtime_factor": round(audio_seconds / seconds, 1) if seconds > 0 else None,
        },
        "files": [r.to_dict() for r in results],
    }


__all__ = [
    "EXISTING",
    "NoInputError",
    "OutputFolderError",
    "Progress",
    "RunSummary",
    "build_manifest",
    "package_versions",
    "prepare_output",
    "read_manifest",
    "run",
    "write_config",
]
