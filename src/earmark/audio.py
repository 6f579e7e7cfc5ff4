"""Audio input: decode any common audio or video file to float32 mono at 32 kHz.

Decoding uses PyAV (the FFmpeg libraries bundled with it, no system ffmpeg needed).
Rate conversion always uses soxr with quality ``"HQ"``, never FFmpeg's resampler, so that the
waveform matches what ``soxr.resample(x, sr, 32000, quality="HQ")`` gives for the decoded signal
(the reference outputs the detector must reproduce were made that way).

Long files are decoded in chunks: :class:`AudioReader` yields fixed-size chunks and keeps only
about one chunk in memory, whatever the length of the file. The streamed resampler output is
identical to the one-shot resampling of the whole signal.

Scaling and downmix follow libsndfile/soundfile (:mod:`earmark.waveform`, which also holds
:func:`resample` and :func:`prepare_waveform`; they are importable from here too).

Problems are reported as :class:`AudioError` (nothing usable) or as human-readable entries in
:attr:`AudioReader.warnings` (something was wrong but audio could still be decoded, e.g. a
truncated file or a corrupt packet in the middle; lost stretches are filled with silence so that
the timing of what follows stays right).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import TracebackType

import av
import av.error
import numpy as np
import soxr

from earmark.constants import SAMPLE_RATE
from earmark.containers import (
    AudioError,
    AudioInfo,
    describe_stream,
    ogg_end_problem,
    open_container,
    probe,
)
from earmark.waveform import (
    RESAMPLE_QUALITY,
    frame_to_mono,
    nonfinite_reason,
    prepare_waveform,
    resample,
)

__all__ = [
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "AudioError",
    "AudioInfo",
    "AudioReader",
    "frame_to_mono",
    "load",
    "prepare_waveform",
    "probe",
    "resample",
]


DEFAULT_CHUNK_SECONDS = 30.0
"""Default length of the chunks yielded by :class:`AudioReader` (seconds)."""

TRUNCATION_TOLERANCE_SECONDS = 0.1
"""Decoded audio may fall short of the declared duration by this much (plus one codec frame)
before the file is reported as truncated."""

GAP_FILL_SECONDS = 0.02
"""A forward jump of the timestamps at least this long (and at least 3/4 of the longest codec
frame) is treated as lost data and filled with silence."""

MAX_LISTED_DECODE_ERRORS = 5
"""Decode errors listed one by one in the warnings; further ones are only counted."""

_MAX_CONSECUTIVE_READ_ERRORS = 8
_FEED_SECONDS = 1.0  # native-rate audio gathered before each call to the resampler
_LOAD_CHUNK_SECONDS = 60.0


logger = logging.getLogger(__name__)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.2f} s"


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


class AudioReader:
    """Decode a file chunk by chunk to float32 mono at ``sample_rate``.

    Use as a context manager and iterate once::

        with AudioReader("recording.mp3") as reader:
            for chunk in reader:
                ...
            if reader.warnings:
                ...

    Every chunk has ``round(chunk_seconds * sample_rate)`` samples except the last (shorter).
    The concatenated chunks equal ``resample(x, native_rate, sample_rate)`` of the whole decoded
    signal ``x``; the total length is ``n_native * sample_rate / native_rate`` rounded (halves
    up), with no leading delay. Memory use does not grow with the length of the file.

    Opening the reader raises :class:`AudioError` for files that cannot be used at all
    (missing, directory, empty, unreadable, not audio, no audio stream). Iterating raises it for
    audio without any decodable sample and for non-finite samples; problems that still leave
    audio (truncation, corrupt packets, gaps) are listed in :attr:`warnings`.

    Attributes:
        path: the file.
        info: what the container declares (see :class:`AudioInfo`).
        sample_rate: output sample rate.
        chunk_samples: samples per chunk.
        warnings: decode problems met while iterating, human readable.
        samples_read: output samples yielded so far.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int = SAMPLE_RATE,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if not np.isfinite(chunk_seconds) or chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds!r}")
        self.path = os.fspath(path)
        self.sample_rate = int(sample_rate)
        self.chunk_samples = max(1, round(chunk_seconds * self.sample_rate))
        self.warnings: list[str] = []
        self.samples_read = 0
        self._container: av.container.InputContainer | None = None
        self._container, self._stream = open_container(self.path)
        try:
            self.info = describe_stream(self.path, self._container, self._stream)
        except BaseException:
            self.close()
            raise
        self._started = False
        # Decoding state: samples decoded at the current native rate (including silence filled
        # into gaps), that rate, and the seconds decoded before the last change of rate.
        self._native_samples = 0
        self._rate = self.info.sample_rate
        self._seconds_before_rate = 0.0
        self._decode_errors = 0
        self._error_runs = 0
        self._gaps = 0
        self._errors_mid_stream = False  # decode errors followed by decodable audio
        self._max_frame = 0

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file. Safe to call more than once."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def __repr__(self) -> str:
        return (
            f"AudioReader({self.path!r}, sample_rate={self.sample_rate}, "
            f"chunk_samples={self.chunk_samples}, samples_read={self.samples_read})"
        )

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._started:
            raise RuntimeError("an AudioReader can only be iterated once; open a new one")
        if self._container is None:
            raise ValueError("the AudioReader is closed")
        self._started = True
        return self._chunks()

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("%s: %s", self.path, message)

    def _packets(self) -> Iterator[av.Packet[av.AudioStream]]:
        """Demuxed packets of the audio stream; read errors are recorded and skipped."""
        container, stream = self._container, self._stream
        assert container is not None
        demux = container.demux(stream)
        consecutive = 0
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                consecutive += 1
                position = _format_seconds(self._elapsed_seconds())
                if consecutive > _MAX_CONSECUTIVE_READ_ERRORS:
                    self._warn(f"read error at {position}: {_error_text(exc)}; stopped reading")
                    return
                if consecutive == 1:
                    self._warn(f"read error at {position}: {_error_text(exc)}; skipping")
                demux = container.demux(stream)
                continue
            consecutive = 0
            yield packet

    def _frames(self) -> Iterator[tuple[av.AudioFrame, float | None]]:
        """Decoded frames of the audio stream.

        Packets that fail to decode are skipped and reported (one warning per run of
        consecutive failures). The frame after such a run comes with an estimate of the samples
        the failed packets held (from their size and the bytes per sample seen so far, 0.0 when
        unknown); other frames come with None.
        """
        ok_bytes = 0  # size of the packets decoded so far...
        ok_samples = 0  # ...and the samples they gave
        run = 0  # consecutive packets that failed to decode
        run_bytes = 0
        run_error = ""

        def report_run() -> float:
            if self._error_runs < MAX_LISTED_DECODE_ERRORS:
                position = _format_seconds(self._elapsed_seconds())
                what = "1 packet" if run == 1 else f"{run} packets"
                self._warn(f"decode error at {position}: {what} skipped ({run_error})")
            self._error_runs += 1
            return run_bytes * ok_samples / ok_bytes if ok_bytes else 0.0

        for packet in self._packets():
            try:
                frames = packet.decode()
            except av.error.EOFError:
                frames = []
            except (av.error.FFmpegError, OSError) as exc:
                self._decode_errors += 1
                run += 1
                run_bytes += packet.size
                if run == 1:
                    run_error = _error_text(exc)
                continue
            if frames and packet.size:
                ok_bytes += packet.size
                ok_samples += sum(frame.samples for frame in frames)
            for frame in frames:
                lost = None
                if run:
                    lost = report_run()
                    run, run_bytes = 0, 0
                    self._errors_mid_stream = True
                yield frame, lost
        # The demuxer normally ends with an empty packet that flushes the decoder; make sure.
        try:
            frames = self._stream.codec_context.decode(None)
        except (av.error.FFmpegError, OSError):
            frames = []
        for frame in frames:
            lost = None
            if run:
                lost = report_run()
                run, run_bytes = 0, 0
            yield frame, lost
        if run:
            report_run()

    def _native_blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        """Mono float32 blocks at the native rate, about _FEED_SECONDS long, with their rate.

        Lost or undecodable stretches are filled with silence so that everything after them
        keeps its time: forward jumps of the timestamps of at least GAP_FILL_SECONDS and
        three quarters of a codec frame (smaller ones occur in valid Vorbis streams), any
        forward jump right after a decode error, or, when the timestamps do not show it (MP3
        and other streams whose timestamps the demuxer counts itself), the estimated content
        of packets that failed to decode.
        """
        origin: int | None = None  # pts of the frame that started at sample origin_samples
        origin_samples = 0
        # Timestamps -> samples: samples = pts * tb_num * rate / tb_den (read once: building
        # frame.time_base costs more than everything else done per frame).
        tb_num = tb_den = 0
        rate = self._rate
        pending: list[np.ndarray] = []
        pending_len = 0
        feed = max(1024, round(_FEED_SECONDS * rate))

        for frame, lost in self._frames():
            if frame.samples == 0:
                continue
            if frame.sample_rate != rate:
                if pending:
                    yield np.concatenate(pending), rate
                    pending, pending_len = [], 0
                self._warn(
                    f"sample rate changes from {rate} Hz to {frame.sample_rate} Hz at "
                    f"{_format_seconds(self._elapsed_seconds())}"
                )
                self._seconds_before_rate += self._native_samples / rate
                self._native_samples = 0
                rate = self._rate = frame.sample_rate
                feed = max(1024, round(_FEED_SECONDS * rate))
                origin = None
                tb_den = 0
                lost = None
            pts = frame.pts
            if pts is not None and not tb_den:
                time_base = frame.time_base
                if time_base is not None and time_base > 0:
                    tb_num, tb_den = time_base.numerator, time_base.denominator
            has_pts = pts is not None and tb_den > 0
            drift = 0
            if has_pts and origin is not None:
                assert pts is not None  # implied by has_pts
                # round half up, in integers
                scaled = 2 * (pts - origin) * tb_num * rate
                expected = origin_samples + (scaled + tb_den) // (2 * tb_den)
                drift = expected - self._native_samples
            threshold = max(round(GAP_FILL_SECONDS * rate), (3 * self._max_frame) // 4)
            fill = 0
            estimated = False
            if lost is not None:
                fill = max(drift, 0)
                if lost > fill + 2 * self._max_frame:
                    fill, estimated = round(lost), True
            elif drift >= threshold:
                fill = drift
            if fill:
                self._gaps += 1
                how = "estimated from the size of the corrupt data, " if estimated else ""
                self._warn(
                    f"gap at {_format_seconds(self._elapsed_seconds())}: "
                    f"{fill / rate:.3f} s of audio missing (lost or corrupt data; "
                    f"{how}filled with silence)"
                )
                pending.append(np.zeros(fill, dtype=np.float32))
                pending_len += fill
                self._native_samples += fill
            if has_pts and (origin is None or estimated or drift < -threshold):
                # Start (or restart, after a jump back or an estimated gap) the pts clock.
                origin, origin_samples = pts, self._native_samples
            mono = frame_to_mono(frame)
            self._max_frame = max(self._max_frame, mono.size)
            pending.append(mono)
            pending_len += mono.size
            self._native_samples += mono.size
            if pending_len >= feed:
                yield (pending[0] if len(pending) == 1 else np.concatenate(pending)), rate
                pending, pending_len = [], 0
        if pending:
            yield (pending[0] if len(pending) == 1 else np.concatenate(pending)), rate

    def _elapsed_seconds(self) -> float:
        return self._seconds_before_rate + self._native_samples / self._rate

    def _check_complete(self) -> None:
        """After decoding: record a warning if the file holds less than it declares."""
        decoded = self._elapsed_seconds()
        declared = self.info.duration if self._seconds_before_rate == 0 else None
        if self._error_runs > MAX_LISTED_DECODE_ERRORS:
            self._warn(
                f"{self._decode_errors} packets in {self._error_runs} places could not be "
                f"decoded and were skipped (only the first {MAX_LISTED_DECODE_ERRORS} are listed)"
            )
        if declared is not None:
            tolerance = TRUNCATION_TOLERANCE_SECONDS + self._max_frame / self._rate
            if decoded < declared - tolerance:
                if self._gaps or self._errors_mid_stream:
                    self._warn(
                        f"shorter than declared: decoded {decoded:.2f} s of {declared:.2f} s "
                        "declared (audio lost to the errors above, or the file is truncated)"
                    )
                else:
                    self._warn(f"truncated: decoded {decoded:.2f} s of {declared:.2f} s declared")
                return
        if self.info.container == "ogg":
            problem = ogg_end_problem(self.path)
            if problem is not None:
                self._warn(f"truncated: {problem} (decoded {decoded:.2f} s)")

    def _chunks(self) -> Iterator[np.ndarray]:
        out_rate = self.sample_rate
        chunk = self.chunk_samples
        out: list[np.ndarray] = []
        out_len = 0
        resampler: soxr.ResampleStream | None = None
        resampler_rate: int | None = None
        total_native = 0
        bad_count = 0
        first_bad: float | None = None
        try:
            for block, rate in self._native_blocks():
                block_start = self._elapsed_seconds() - block.size / rate
                total_native += block.size
                finite = np.isfinite(block)
                if not finite.all():
                    if first_bad is None:
                        first_bad = block_start + int(np.argmin(finite)) / rate
                    bad_count += int(block.size - np.count_nonzero(finite))
                if bad_count:
                    continue  # keep counting, stop producing output
                if rate != resampler_rate:
                    if resampler is not None:
                        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                        out.append(tail)
                        out_len += tail.size
                    resampler_rate = rate
                    resampler = (
                        soxr.ResampleStream(
                            rate, out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
                        )
                        if rate != out_rate
                        else None
                    )
                y = resampler.resample_chunk(block) if resampler is not None else block
                if y.size:
                    out.append(y)
                    out_len += y.size
                while out_len >= chunk:
                    joined = out[0] if len(out) == 1 else np.concatenate(out)
                    piece, rest = joined[:chunk], joined[chunk:].copy()
                    out, out_len = ([rest] if rest.size else []), rest.size
                    self.samples_read += piece.size
                    yield piece
            if bad_count:
                raise AudioError(
                    self.path, nonfinite_reason(bad_count, total_native, first_bad or 0.0)
                )
            self._check_complete()
            if total_native == 0:
                if self.warnings:
                    reason = "no audio could be decoded: " + "; ".join(self.warnings[:3])
                else:
                    reason = "zero-length audio: the file has a valid header but no samples"
                raise AudioError(self.path, reason)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                out.append(tail)
                out_len += tail.size
            if out_len:
                joined = out[0] if len(out) == 1 else np.concatenate(out)
                out = []
                for start in range(0, joined.size, chunk):
                    piece = joined[start : start + chunk]
                    self.samples_read += piece.size
                    yield piece
        finally:
            self.close()


def _error_text(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None)
    return str(text) if text else (str(exc) or type(exc).__name__)


# --------------------------------------------------------------------------------------------
# Convenience functions
# --------------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a whole file to float32 mono at ``sample_rate``.

    Problems that still leave audio (truncation, corrupt packets) are logged as warnings on the
    ``earmark.audio`` logger; use :class:`AudioReader` to get them as a list.

    Raises:
        AudioError: the file cannot be used (see :class:`AudioReader`), including a truncated
            file of which nothing at all could be decoded.
    """
    with AudioReader(path, sample_rate=sample_rate, chunk_seconds=_LOAD_CHUNK_SECONDS) as reader:
        chunks = list(reader)
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks)


def _load_native(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 mono at its native rate (used by tests and tools)."""
    with AudioReader(path, chunk_seconds=_LOAD_CHUNK_SECONDS) as reader:
        blocks = []
        for block, rate in reader._native_blocks():
            if rate != reader.info.sample_rate:
                raise ValueError(f"{reader.path}: the sample rate changes inside the file")
            blocks.append(block)
        rate = reader.info.sample_rate
    if not blocks:
        raise AudioError(os.fspath(path), "zero-length audio: no samples could be decoded")
    return np.concatenate(blocks), rate
