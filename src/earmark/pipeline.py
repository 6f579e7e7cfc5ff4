"""Detection from one recording to written results: audio -> scores -> events -> outputs.

:func:`process_file` detects in one file and writes its outputs, never raising for a bad file;
:mod:`earmark.batch` runs it over many files. The one-call Python API (``detect``,
``frame_scores``) is :mod:`earmark.python_api`; both names are importable from here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from earmark import assets
from earmark.audio import SAMPLE_RATE, AudioError, AudioReader
from earmark.boundaries import BandEnvelope, RefineOptions, refine_events
from earmark.events import Event, PostprocessOptions, scores_to_events
from earmark.extensions import class_provider
from earmark.inputs import name_bytes, printable
from earmark.outputs import (
    EVENT_FORMATS,
    EVENT_SUFFIXES,
    SCORES_SUFFIX,
    write_events,
    write_scores,
)
from earmark.preprocess import FileAnalysis, PreprocessOptions
from earmark.scoring import FrameScores, ScoringOptions
from earmark.signal_stats import SIGNAL_SUFFIX
from earmark.tagger import Tagger

CHUNK_SECONDS = 10.0
"""Decoded audio per chunk: memory does not grow with file length."""
PREFETCH_CHUNKS = 2
"""Decoded chunks kept ready ahead of the network (each CHUNK_SECONDS long)."""
DURATION_TOLERANCE_SECONDS = 2.0
"""A header's duration may differ this much (or 10 %) from the decoded one without a warning."""


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
    path_bytes: str | None = None
    """The file name's bytes (hex) when it is not UTF-8; ``path`` then shows them as ``\\xNN``."""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``decode``, ``envelope``, ``front_end``, ``network`` (the first two
    overlap the last two), ``scoring`` (their wall-clock time), ``custom_classes``,
    ``events``, ``refine``, ``join`` and ``outputs`` (:func:`score_file`)."""

    def to_dict(self) -> dict:
        """Manifest entry (without the events themselves)."""
        return {
            "path": self.path,
            **({"path_bytes": self.path_bytes} if self.path_bytes else {}),
            "status": self.status,
            "duration": round(self.duration, 3),
            "n_events": len(self.events),
            "error": self.error,
            "warnings": self.warnings,
            "audio": self.info,
            "processing_seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stages.items()},
            "outputs": self.outputs,
        }

    @classmethod
    def from_dict(cls, entry: dict, events: list[Event]) -> FileResult:
        """A result back from its manifest entry and its events (``--resume``)."""
        return cls(
            path=entry["path"],
            status=entry["status"],
            events=events,
            duration=float(entry.get("duration", 0.0)),
            error=entry.get("error"),
            warnings=list(entry.get("warnings", [])),
            info=dict(entry.get("audio", {})),
            seconds=float(entry.get("processing_seconds", 0.0)),
            outputs=dict(entry.get("outputs", {})),
            path_bytes=entry.get("path_bytes"),
            stages=dict(entry.get("stage_seconds", {})),
        )


# ---------------------------------------------------------------------------- one recording
def score_file(
    tagger: Tagger,
    path: str | Path,
    scoring: ScoringOptions | None = None,
    progress: Callable[[float], None] | None = None,
    envelope: BandEnvelope | None = None,
    transform: Callable[[Iterable[np.ndarray]], Iterable[np.ndarray]] | None = None,
    timings: dict[str, float] | None = None,
    opened: Callable[[AudioReader], None] | None = None,
) -> tuple[FrameScores, AudioReader]:
    """Framewise scores of one file, decoded and scored chunk by chunk.

    With ``envelope``, the band envelope used for boundary refinement is computed on the way
    (in the decoding thread, overlapping with the network). ``transform`` (e.g.
    :meth:`earmark.preprocess.FileAnalysis.wrap`) turns the decoded chunks into what the model
    sees, also in the decoding thread. ``timings`` receives the seconds of each stage:
    ``decode`` (decoding and resampling, with ``transform``), ``envelope``, ``front_end`` and
    ``network`` (the first two in the decoding thread, overlapping with the last two) and
    ``scoring`` (the wall-clock time of the whole). ``opened`` is called with the reader as
    soon as the file is open (before anything is decoded): what it says of the file is known
    even if decoding fails later, without opening the file twice.
    """
    started = time.perf_counter()
    produced: dict[str, float] = {}
    with single_threaded_blas(), AudioReader(path, SAMPLE_RATE, CHUNK_SECONDS) as reader:
        if opened is not None:
            opened(reader)
        decoded: Iterable[np.ndarray] = reader if transform is None else transform(reader)
        chunks = decoded if envelope is None else envelope.tap(decoded)
        scorer = tagger.scorer(scoring)
        scores = scorer.score(
            prefetched(chunks, timing=produced), progress, expected_seconds=reader.info.duration
        )
    if timings is not None:
        spent_on_envelope = envelope.seconds if envelope is not None else 0.0
        timings["decode"] = produced.get("seconds", 0.0) - spent_on_envelope
        timings["envelope"] = spent_on_envelope
        timings.update(scorer.timings)
        timings["scoring"] = time.perf_counter() - started
    if scores.n_frames == 0:
        raise AudioError(str(path), "no audio samples to analyse")
    return scores, reader


_BLAS: ThreadpoolController | None = None


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """numpy's and scipy's BLAS (OpenBLAS) limited to one thread for a while.

    Their only matrix products here are small (band envelope, boundaries), and an OpenBLAS
    pool left at one thread per core spins on both cores between them, against the network
    and the decoder: on 2 cores a 60-minute MP3 took 11.6 s instead of 7.3 s
    (``benchmarks/stages.py``). The controller is built once: it inspects the loaded libraries.
    """
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def prefetched(
    chunks: Iterable[np.ndarray],
    depth: int = PREFETCH_CHUNKS,
    timing: dict[str, float] | None = None,
) -> Iterator[np.ndarray]:
    """Iterate ``chunks`` produced by a background thread, ``depth`` chunks ahead.

    Decoding (FFmpeg and soxr release the GIL) then overlaps with the network instead of
    alternating with it. An exception raised while decoding is re-raised here, in order.
    ``timing["seconds"]`` receives the time the thread spent producing the chunks.
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
        spent = 0.0
        try:
            iterator = iter(chunks)
            while True:
                started = time.perf_counter()
                chunk = next(iterator, None)
                spent += time.perf_counter() - started
                if timing is not None:
                    timing["seconds"] = spent
                if chunk is None:
                    break
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


def one_event_per_sound(
    tagger: Tagger, events: list[Event], options: PostprocessOptions
) -> list[Event]:
    """``events`` with related classes of one sound joined (``options.join_related``)."""
    if not options.join_related or len(events) < 2:
        return events
    from earmark.sounds import join_related

    return join_related(events, tagger.ontology)


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
def process_file(
    tagger: Tagger,
    path: Path,
    stem: Path | None,
    options: DetectOptions,
    progress: Callable[[float], None] | None = None,
    name: str | None = None,
) -> FileResult:
    """Detect events in one file and write its outputs; never raises for a bad file.

    ``name`` is how results (events, scores, messages) name the file instead of its path (the
    service: the client's name, never a storage path). A file that fails (decoding, or writing
    any of its outputs) has no events in its result and no outputs at ``stem``: what an
    earlier run or this one left there is removed.
    """
    started = time.perf_counter()
    shown = name if name is not None else printable(path)
    result = FileResult(path=shown, status="failed", path_bytes=name_bytes(path))
    try:

        def describe(reader: AudioReader) -> None:
            info = reader.info
            result.info = {
                "container": info.container,
                "codec": info.codec,
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "declared_duration": info.duration,
                "sample_format": info.sample_format,
                **file_identity(path),
            }

        envelope = BandEnvelope() if options.boundaries.refine else None
        # levels for the report, and optional preprocessing (earmark.preprocess)
        measured = options.signal_stats or options.preprocess.active
        analysis = FileAnalysis(options.preprocess, lambda: AudioReader(path, SAMPLE_RATE))
        scoring = options.scoring
        if options.classes:  # custom classes are scored from the framewise embeddings
            scoring = dataclasses.replace(scoring, embeddings=True, features=True)
        transform = analysis.wrap if measured else None
        stages = result.stages
        scores, reader = score_file(
            tagger, path, scoring, progress, envelope, transform, stages, describe
        )
        if measured:
            result.info.update(analysis.manifest_entry())
        result.warnings = [_describe_error(path, w, shown) for w in reader.warnings]
        result.duration = scores.duration
        mismatch = duration_mismatch(reader.info.duration, scores.duration)
        labels, post = tagger.labels, options.postprocess
        clock = _StageClock(stages)
        if options.classes:  # extra classes, from the wing that provides them
            provider = class_provider()
            scores, labels = provider.apply(tagger, scores, options, path)
            post = provider.selection(options, labels)
            clock.lap("custom_classes")
        result.events = events_from_scores(tagger, scores, post, file=shown, labels=labels)
        clock.lap("events")
        if envelope is not None:
            with single_threaded_blas():
                result.events = refine_events(
                    result.events, envelope, options.boundaries, scores.duration
                )
            clock.lap("refine")
        result.events = one_event_per_sound(tagger, result.events, post)
        clock.lap("join")
        if stem is not None:
            result.outputs = _write_file_outputs(
                stem, result, scores, labels, options, analysis if measured else None
            )
            clock.lap("outputs")
        result.status = "partial" if result.warnings else "ok"
        if mismatch:  # the whole file was analysed: worth a word, not a failure
            result.warnings.append(_describe_error(path, mismatch, shown))
    except (AudioError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        result.status, result.events, result.outputs = "failed", [], {}
        result.error = _describe_error(path, exc, shown)
        if stem is not None:
            remove_outputs(stem)
    result.seconds = time.perf_counter() - started
    return result


class _StageClock:
    """Writes the seconds since the previous lap into ``stages[name]``."""

    def __init__(self, stages: dict[str, float]) -> None:
        self.stages, self.last = stages, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = now - self.last
        self.last = now


def _write_file_outputs(
    stem: Path,
    result: FileResult,
    scores: FrameScores,
    labels: Sequence,
    options: DetectOptions,
    analysis: FileAnalysis | None,
) -> dict[str, str]:
    """Write one file's events, scores and levels next to ``stem``; their paths by kind."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {"file": result.path}
    written = write_events(stem.parent, stem.name, result.events, options.formats, meta=meta)
    outputs = {k: str(v) for k, v in written.items()}
    if options.save_scores:
        scores_path = stem.parent / f"{stem.name}{SCORES_SUFFIX}"
        write_scores(
            scores_path,
            scores.scores,
            scores.hop,
            labels,
            meta={**meta, "duration": scores.duration, **scores.meta},
        )
        outputs["scores"] = str(scores_path)
    if analysis is not None:  # levels for the report
        result.info["signal_file"] = str(analysis.write(stem))
    return outputs


def remove_outputs(stem: Path) -> None:
    """Remove every output earmark writes for one file at ``stem`` (those that exist)."""
    for suffix in (*EVENT_SUFFIXES.values(), SCORES_SUFFIX, SIGNAL_SUFFIX):
        with contextlib.suppress(OSError):
            (stem.parent / f"{stem.name}{suffix}").unlink()


def file_identity(path: Path) -> dict:
    """Size and modification time of a file: ``--resume`` reuses results only if both match."""
    st = os.stat(path)
    return {"file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns}


def duration_mismatch(declared: float | None, decoded: float) -> str | None:
    """A warning when a container's header declares a duration far from what it decodes to."""
    if not declared or declared <= 0:
        return None
    if abs(decoded - declared) <= max(DURATION_TOLERANCE_SECONDS, 0.1 * max(declared, decoded)):
        return None
    return (
        f"the header declares {declared:.1f} s but the file decodes to {decoded:.1f} s of audio;"
        " all of it was analysed"
    )


def _describe_error(path: Path, exc: BaseException | str, shown: str) -> str:
    """An error or warning message that names the file as ``shown`` (not by its path)."""
    text = printable(str(exc) or type(exc).__name__).replace(printable(path), shown)
    return text if shown in text else f"{shown}: {text}"


def check_options(tagger: Tagger, options: DetectOptions) -> None:
    """Raise ``ValueError`` for options this model cannot satisfy (e.g. an unknown class name).

    Run once before any file is decoded, so that a typo in ``labels``, ``exclude``,
    ``thresholds`` or ``group_by`` is a usage error, not a failure of every file.
    """
    labels, post = tagger.labels, options.postprocess
    if options.classes:  # the model folder, its backbone and the custom class names
        labels, post = class_provider().check(tagger, options)
    n = len(labels)
    empty = FrameScores(np.zeros((0, n), dtype=np.float32), options.scoring.frame_hop, 0.0)
    events_from_scores(tagger, empty, post, labels=labels)


def default_threads(jobs: int = 1) -> int:
    """Torch threads per job when not set: the cores a job gets, less one for decoding.

    Decoding runs in its own thread beside the network (:func:`prefetched`); measured on 2
    cores, 1 torch thread + the decoding thread is 1.6x faster than 2 torch threads.
    """
    return max(1, (os.cpu_count() or 1) // max(jobs, 1) - 1)


def __getattr__(name: str) -> Any:
    # detect and frame_scores moved to earmark.python_api, which imports this module: loaded
    # on first use only, like the names of the package (earmark/__init__.py)
    if name in ("detect", "frame_scores"):
        return getattr(import_module("earmark.python_api"), name)
    raise AttributeError(f"module 'earmark.pipeline' has no attribute {name!r}")
