"""Detection from recordings to written results: audio -> scores -> events -> outputs.

:func:`detect` is the one-call Python API. :func:`run` processes many files into an output folder
with a run manifest, isolating failures per file, and is what ``earmark detect`` calls.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from earmark import assets
from earmark.audio import SAMPLE_RATE, AudioError, AudioReader, prepare_waveform, probe
from earmark.boundaries import BandEnvelope, RefineOptions, refine_events
from earmark.events import Event, PostprocessOptions, scores_to_events
from earmark.outputs import (
    EVENT_FORMATS,
    write_events,
    write_events_csv,
    write_events_json,
    write_events_tsv,
    write_json,
    write_scores,
)
from earmark.preprocess import FileAnalysis, PreprocessOptions
from earmark.scoring import FrameScores, ScoringOptions
from earmark.tagger import Tagger, load_model

AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".m4a",
        ".aac",
        ".mp4",
        ".m4v",
        ".mkv",
        ".webm",
        ".mov",
        ".aif",
        ".aiff",
        ".wma",
        ".caf",
        ".amr",
        ".3gp",
    ]
)
"""File endings picked up when a folder is given."""
CHUNK_SECONDS = 10.0
"""Decoded audio per chunk: memory does not grow with file length."""
PREFETCH_CHUNKS = 2
"""Decoded chunks kept ready ahead of the network (each CHUNK_SECONDS long)."""
FILES_DIR = "files"
"""Per-file results go to ``OUT/files/<path relative to its input root>.<kind>``."""


@dataclass
class DetectOptions:
    """Every option of a detection run (also the keys of a config file)."""

    model: str = assets.DEFAULT_MODEL
    checkpoint: str | None = None
    scoring: ScoringOptions = field(default_factory=lambda: ScoringOptions(dtype="float16"))
    postprocess: PostprocessOptions = field(default_factory=PostprocessOptions)
    boundaries: RefineOptions = field(default_factory=RefineOptions)
    signal_stats: bool = False
    """Measure levels and a spectrogram of each file for the report while decoding (``--report``
    sets it; it costs about a third of the decoding thread, and ``earmark report`` measures the
    files of a run made without it)."""
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    formats: tuple[str, ...] = EVENT_FORMATS
    save_scores: bool = True
    jobs: int = 1
    threads: int | None = None
    classes: str | None = None
    """A MODEL_DIR written by ``earmark train``: its custom classes are detected too."""
    audioset: bool | None = None
    """With ``classes``, also report AudioSet classes (default: only those ``labels`` selects)."""
    calibrated_thresholds: bool = True
    """With ``classes``, the custom classes use the thresholds calibrated when they were trained
    (instead of ``postprocess.threshold``); per-class ``thresholds`` still override them."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        self.scoring.validate()
        self.postprocess.validate()
        self.boundaries.validate()
        self.preprocess.validate()
        unknown = set(self.formats) - set(EVENT_FORMATS)
        if unknown:
            raise ValueError(f"unknown output format(s) {sorted(unknown)}; use {EVENT_FORMATS}")
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")

    def to_dict(self) -> dict:
        """Plain nested dict (the config-file form)."""
        data = dataclasses.asdict(self)
        data["formats"] = list(self.formats)
        return data


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    status: str  # "ok", "partial" (decoded with warnings) or "failed"
    events: list[Event] = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Manifest entry (without the events themselves)."""
        return {
            "path": self.path,
            "status": self.status,
            "duration": round(self.duration, 3),
            "n_events": len(self.events),
            "error": self.error,
            "warnings": self.warnings,
            "audio": self.info,
            "processing_seconds": round(self.seconds, 3),
            "outputs": self.outputs,
        }


# ---------------------------------------------------------------------------- one recording
def score_file(
    tagger: Tagger,
    path: str | Path,
    scoring: ScoringOptions | None = None,
    progress: Callable[[float], None] | None = None,
    envelope: BandEnvelope | None = None,
    transform: Callable[[Iterable[np.ndarray]], Iterable[np.ndarray]] | None = None,
) -> tuple[FrameScores, AudioReader]:
    """Framewise scores of one file, decoded and scored chunk by chunk.

    With ``envelope``, the band envelope used for boundary refinement is computed on the way
    (in the decoding thread, overlapping with the network). ``transform`` (e.g.
    :meth:`earmark.preprocess.FileAnalysis.wrap`) turns the decoded chunks into what the model
    sees, also in the decoding thread.
    """
    with AudioReader(path, SAMPLE_RATE, CHUNK_SECONDS) as reader:
        decoded: Iterable[np.ndarray] = reader if transform is None else transform(reader)
        chunks = decoded if envelope is None else envelope.tap(decoded)
        scores = tagger.scorer(scoring).score(
            prefetched(chunks), progress, expected_seconds=reader.info.duration
        )
    if scores.n_frames == 0:
        raise AudioError(str(path), "no audio samples to analyse")
    return scores, reader


def prefetched(chunks: Iterable[np.ndarray], depth: int = PREFETCH_CHUNKS) -> Iterator[np.ndarray]:
    """Iterate ``chunks`` produced by a background thread, ``depth`` chunks ahead.

    Decoding (FFmpeg and soxr release the GIL) then overlaps with the network instead of
    alternating with it. An exception raised while decoding is re-raised here, in order.
    """
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
            put((None, None))
        except BaseException as exc:  # handed to the consumer
            put((None, exc))

    worker = threading.Thread(target=produce, name="earmark-decode", daemon=True)
    worker.start()
    try:
        while True:
            chunk, error = box.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()
        worker.join()


def events_from_scores(
    tagger: Tagger,
    scores: FrameScores,
    options: PostprocessOptions,
    file: str = "",
    labels: Sequence | None = None,
) -> list[Event]:
    """Post-process framewise scores into events with this model's labels (or ``labels``,
    the columns of ``scores`` when custom classes were added)."""
    needs_ontology = bool(options.group_by or options.labels or options.exclude)
    return scores_to_events(
        scores.scores,
        scores.hop,
        tagger.labels if labels is None else labels,
        options,
        file=file,
        duration=scores.duration,
        ontology=tagger.ontology if needs_ontology else None,
    )


def detect(
    source: str | Path | np.ndarray,
    sample_rate: int | None = None,
    model: Tagger | str | None = None,
    **options: object,
) -> list[Event]:
    """Detect sound events in a recording (a path, or an array with its ``sample_rate``).

    Keyword options are those of :class:`~earmark.events.PostprocessOptions` (``threshold``,
    ``thresholds``, ``off_threshold``, ``median_filter``, ``min_duration``, ``merge_gap``,
    ``labels``, ``exclude``, ``group_by``), of :class:`~earmark.scoring.ScoringOptions`
    (``method``, ``se_context``, ``pool``, ``window``, ``hop``, ...) and of
    :class:`~earmark.boundaries.RefineOptions` (``refine=False`` keeps score-based boundaries,
    ``level``, ``search_before``, ...).
    """
    tagger = model if isinstance(model, Tagger) else load_model(model or assets.DEFAULT_MODEL)
    refine_keys = {f.name for f in dataclasses.fields(RefineOptions)}
    boundaries = RefineOptions(**{k: options.pop(k) for k in list(options) if k in refine_keys})
    boundaries.validate()
    scoring, post = split_options(options)
    envelope = BandEnvelope() if boundaries.refine else None
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("give sample_rate with an array source")
        audio = prepare_waveform(source, sample_rate)
        scores = tagger.frame_scores(audio, scoring)
        if envelope is not None:
            envelope.update(audio)
            envelope.finish()
        name = "<array>"
    else:
        scores, _ = score_file(tagger, source, scoring, envelope=envelope)
        name = str(source)
    events = events_from_scores(tagger, scores, post, file=name)
    if envelope is not None:
        events = refine_events(events, envelope, boundaries, scores.duration)
    return events


def frame_scores(
    source: str | Path | np.ndarray,
    sample_rate: int | None = None,
    model: Tagger | str | None = None,
    **options: object,
) -> FrameScores:
    """Framewise class probabilities of a recording, with their time axis (``.times``, ``.hop``).

    Keyword options are those of :class:`~earmark.scoring.ScoringOptions`.
    """
    tagger = model if isinstance(model, Tagger) else load_model(model or assets.DEFAULT_MODEL)
    scoring, _ = split_options(options)
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("give sample_rate with an array source")
        return tagger.frame_scores(prepare_waveform(source, sample_rate), scoring)
    return score_file(tagger, source, scoring)[0]


def split_options(options: dict) -> tuple[ScoringOptions, PostprocessOptions]:
    """Sort flat keyword options into scoring and post-processing options."""
    scoring_keys = {f.name for f in dataclasses.fields(ScoringOptions)}
    post_keys = {f.name for f in dataclasses.fields(PostprocessOptions)}
    unknown = set(options) - scoring_keys - post_keys
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    scoring = ScoringOptions(**{k: v for k, v in options.items() if k in scoring_keys})
    post = PostprocessOptions(**{k: v for k, v in options.items() if k in post_keys})
    scoring.validate()
    post.validate()
    return scoring, post


# ---------------------------------------------------------------------------- many files
def collect_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursive) and globs into ``(file, root)`` pairs, in stable order.

    ``root`` is the folder the output path is made relative to. A path that matches nothing is
    returned as is so that it is reported as a failed file, not silently dropped.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            found += [(p, path) for p in files]
        elif path.exists():
            found.append((path, path.parent))
        elif any(ch in str(item) for ch in "*?["):
            anchor = Path(str(item).split("*")[0].split("?")[0].split("[")[0] or ".")
            root = anchor if anchor.is_dir() else anchor.parent
            matches = sorted(p for p in Path().glob(str(item)) if p.is_file())
            if not matches and path.is_absolute():
                matches = sorted(p for p in Path("/").glob(str(item)[1:]) if p.is_file())
            found += [(p, root) for p in matches]
        else:
            found.append((path, path.parent))
    unique: dict[Path, tuple[Path, Path]] = {}
    for file, root in found:
        unique.setdefault(file.resolve(), (file, root))
    return list(unique.values())


def output_stem(out_dir: Path, file: Path, root: Path) -> Path:
    """Where one file's results go: ``OUT/files/<relative path with its extension>``."""
    try:
        relative = file.resolve().relative_to(root.resolve())
    except ValueError:
        relative = Path(file.name)
    return out_dir / FILES_DIR / relative


def process_file(
    tagger: Tagger,
    path: Path,
    stem: Path | None,
    options: DetectOptions,
    progress: Callable[[float], None] | None = None,
) -> FileResult:
    """Detect events in one file and write its outputs; never raises for a bad file."""
    started = time.perf_counter()
    result = FileResult(path=str(path), status="failed")
    try:
        info = probe(path)
        result.info = {
            "container": info.container,
            "codec": info.codec,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "declared_duration": info.duration,
            "sample_format": info.sample_format,
        }
        envelope = BandEnvelope() if options.boundaries.refine else None
        # levels for the report, and optional preprocessing (earmark.preprocess)
        measured = options.signal_stats or options.preprocess.active
        analysis = FileAnalysis(options.preprocess, lambda: AudioReader(path, SAMPLE_RATE))
        scoring = options.scoring
        if options.classes:  # custom classes are scored from the framewise embeddings
            scoring = dataclasses.replace(scoring, embeddings=True, features=True)
        transform = analysis.wrap if measured else None
        scores, reader = score_file(tagger, path, scoring, progress, envelope, transform)
        if measured:
            result.info.update(analysis.manifest_entry())
        result.warnings = [_describe_error(path, w) for w in reader.warnings]
        result.duration = scores.duration
        labels, post = tagger.labels, options.postprocess
        if options.classes:
            from earmark.custom_classes import apply_custom_classes, custom_selection

            scores, labels = apply_custom_classes(tagger, scores, options, path)
            post = custom_selection(options, labels)
        result.events = events_from_scores(tagger, scores, post, file=str(path), labels=labels)
        if envelope is not None:
            result.events = refine_events(
                result.events, envelope, options.boundaries, scores.duration
            )
        if stem is not None:
            stem.parent.mkdir(parents=True, exist_ok=True)
            written = write_events(
                stem.parent, stem.name, result.events, options.formats, meta={"file": str(path)}
            )
            result.outputs = {k: str(v) for k, v in written.items()}
            if options.save_scores:
                scores_path = stem.parent / f"{stem.name}.scores.npz"
                write_scores(
                    scores_path,
                    scores.scores,
                    scores.hop,
                    labels,
                    meta={"file": str(path), "duration": scores.duration, **scores.meta},
                )
                result.outputs["scores"] = str(scores_path)
            if measured:  # levels for the report
                result.info["signal_file"] = str(analysis.write(stem))
        result.status = "partial" if result.warnings else "ok"
    except (AudioError, OSError, ValueError, RuntimeError) as exc:
        result.error = _describe_error(path, exc)
    result.seconds = time.perf_counter() - started
    return result


def _describe_error(path: Path, exc: BaseException | str) -> str:
    """An error or warning message that names the file."""
    text = str(exc) or type(exc).__name__
    return text if str(path) in text else f"{path}: {text}"


def check_options(tagger: Tagger, options: DetectOptions) -> None:
    """Raise ``ValueError`` for options this model cannot satisfy (e.g. an unknown class name).

    Run once before any file is decoded, so that a typo in ``labels``, ``exclude``,
    ``thresholds`` or ``group_by`` is a usage error, not a failure of every file.
    """
    labels, post = tagger.labels, options.postprocess
    if options.classes:  # the model folder, its backbone and the custom class names
        from earmark.custom_classes import check_custom_options

        labels, post = check_custom_options(tagger, options)
    n = len(labels)
    empty = FrameScores(np.zeros((0, n), dtype=np.float32), options.scoring.frame_hop, 0.0)
    events_from_scores(tagger, empty, post, labels=labels)


def default_threads(jobs: int = 1) -> int:
    """Torch threads per job when not set: the cores a job gets, less one for decoding.

    Decoding runs in its own thread beside the network (:func:`prefetched`); measured on 2
    cores, 1 torch thread + the decoding thread is 1.6x faster than 2 torch threads.
    """
    return max(1, (os.cpu_count() or 1) // max(jobs, 1) - 1)


# worker-process state for --jobs > 1
_WORKER: dict[str, object] = {}


def _worker_init(model: str, checkpoint: str | None, threads: int) -> None:
    _WORKER["tagger"] = load_model(model, checkpoint=checkpoint, threads=threads)


def _worker_run(path: str, stem: str | None, options: DetectOptions) -> FileResult:
    tagger = _WORKER["tagger"]
    assert isinstance(tagger, Tagger)
    return process_file(tagger, Path(path), Path(stem) if stem else None, options)


@dataclass
class RunSummary:
    """The outcome of :func:`run`."""

    out_dir: Path
    results: list[FileResult]
    seconds: float
    manifest: dict

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


def run(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: DetectOptions | None = None,
    progress: Progress | None = None,
    tagger: Tagger | None = None,
    argv: Sequence[str] | None = None,
) -> RunSummary:
    """Detect events in every input file and write per-file and run-level outputs.

    Writes ``OUT/files/...`` (events in each format, compressed framewise scores),
    ``OUT/events.{csv,json,tsv}`` for the whole run, ``OUT/config.yaml`` (the effective options,
    usable with ``--config``) and ``OUT/manifest.json`` (model, checkpoint sha256, every option,
    package versions, per-file status). Every file is written atomically.

    A bad file never raises (it is reported in its result); invalid options, including class
    names unknown to the model, raise ``ValueError`` before anything is written.
    """
    options = options or DetectOptions()
    options.validate()
    progress = progress or Progress()
    started_at = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    files = collect_inputs(inputs)
    jobs = min(options.jobs, max(len(files), 1))
    threads = options.threads or default_threads(jobs)
    # model and options before any output: a missing model or a bad class name writes nothing
    if tagger is None:
        tagger = load_model(options.model, checkpoint=options.checkpoint, threads=threads)
    elif options.threads:
        torch.set_num_threads(options.threads)
    check_options(tagger, options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress.start(len(files), _estimate_seconds(files))

    results: list[FileResult] = []
    if jobs == 1:
        for file, root in files:
            progress.file_started(str(file))
            result = process_file(
                tagger,
                file,
                output_stem(out, file, root),
                options,
                lambda s, f=str(file): progress.advance(f, s),
            )
            results.append(result)
            progress.file_done(result)
    else:
        order = {str(f): i for i, (f, _) in enumerate(files)}
        with ProcessPoolExecutor(
            jobs,
            initializer=_worker_init,
            initargs=(options.model, options.checkpoint, threads),
        ) as pool:
            futures = [
                pool.submit(_worker_run, str(f), str(output_stem(out, f, r)), options)
                for f, r in files
            ]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                progress.file_done(result)
        results.sort(key=lambda r: order[r.path])

    all_events = [e for r in results for e in r.events]
    meta = {"model": tagger.spec.name, "files": len(results)}
    write_events_csv(out / "events.csv", all_events)
    write_events_json(out / "events.json", all_events, meta=meta)
    write_events_tsv(out / "events.tsv", all_events)
    write_config(out / "config.yaml", options)
    manifest = build_manifest(tagger, options, results, started_at, time.perf_counter() - t0, argv)
    write_json(out / "manifest.json", manifest)
    summary = RunSummary(out, results, time.perf_counter() - t0, manifest)
    progress.finish(summary)
    return summary


def _estimate_seconds(files: Iterable[tuple[Path, Path]]) -> float | None:
    total = 0.0
    for file, _ in files:
        try:
            duration = probe(file).duration
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
    for name in ("earmark", "torch", "numpy", "scipy", "av", "soxr"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _custom_classes_entry(tagger: Tagger, options: DetectOptions) -> dict | None:
    if not options.classes:
        return None
    from earmark.custom_classes import describe_custom_run

    return describe_custom_run(tagger, options)


def build_manifest(
    tagger: Tagger,
    options: DetectOptions,
    results: Sequence[FileResult],
    started_at: _dt.datetime,
    seconds: float,
    argv: Sequence[str] | None,
) -> dict:
    """Everything needed to understand and repeat a run."""
    audio_seconds = sum(r.duration for r in results)
    return {
        "earmark_version": package_versions()["earmark"],
        "created": started_at.isoformat(timespec="seconds"),
        "command": list(argv) if argv is not None else None,
        "reproduce": "earmark detect --config config.yaml "
        + " ".join(r.path for r in results)
        + " -o <out>",
        "model": tagger.describe(),
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
