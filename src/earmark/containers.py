"""Opening audio and video files with FFmpeg: what a file is, its audio stream, its declared length.

:func:`probe` describes a file without decoding it (:class:`AudioInfo`); :func:`open_container`
opens it for :class:`earmark.audio.AudioReader`. Files that are missing, empty, text, corrupt or
without an audio stream raise :class:`AudioError` naming the file and the cause.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import cast

import av
import av.error


class AudioError(Exception):
    """A file or array cannot be used as audio.

    Attributes:
        path: the file (or the name given for an array) that failed.
        reason: what is wrong, in words; ``str(error)`` is ``f"{path}: {reason}"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """What the container declares about the audio stream that will be decoded.

    Attributes:
        path: the file.
        container: FFmpeg demuxer name (``"wav"``, ``"ogg"``, ``"mp3"``,
            ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``...).
        codec: FFmpeg decoder name (``"pcm_s16le"``, ``"vorbis"``, ``"aac"``, ``"mp3float"``...).
        sample_rate: native sample rate (Hz).
        channels: number of channels.
        duration: duration declared by the container in seconds, ``None`` if unknown. For WAV
            this is what the header declares, even when the file holds less data.
        sample_format: FFmpeg sample format the decoder produces (``"s16"``, ``"fltp"``...).
        bit_rate: bits per second, ``None`` if unknown.
    """

    path: str
    container: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None
    sample_format: str
    bit_rate: int | None


# --------------------------------------------------------------------------------------------
# Opening files
# --------------------------------------------------------------------------------------------


def _looks_like_text(head: bytes) -> bool:
    """True if the first bytes of a file look like text rather than binary data."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the end of the sample.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return printable >= 0.95 * len(text)


def _check_file(path: str) -> bytes:
    """Check that ``path`` is a readable, non-empty regular file; return its first bytes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except PermissionError:
        raise AudioError(path, "permission denied (cannot access the file)") from None
    except OSError as exc:
        raise AudioError(path, f"cannot access the file: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    if st.st_size == 0 and os.path.isfile(path):
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except PermissionError:
        raise AudioError(path, "permission denied (cannot read the file)") from None
    except OSError as exc:
        raise AudioError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if not head:
        raise AudioError(path, "empty file (0 bytes)")
    return head


def _open_error_reason(exc: BaseException, head: bytes) -> str:
    """Explain why FFmpeg could not open a file."""
    if isinstance(exc, PermissionError):
        return "permission denied (cannot read the file)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an audio file"
    if isinstance(exc, av.error.EOFError):
        return "truncated or corrupt: the file ends before the headers of its streams could be read"
    detail = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, av.error.InvalidDataError):
        if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
            return (
                "truncated or corrupt WAV file: no readable audio data after the header "
                f"(FFmpeg: {detail})"
            )
        if head[4:8] == b"ftyp":
            return (
                "truncated or corrupt MP4/MOV/M4A file: its index cannot be read "
                f"(FFmpeg: {detail})"
            )
        if _looks_like_text(head):
            return f"not an audio file: it contains text (FFmpeg: {detail})"
        return (
            "not an audio file: format not recognised, or the file is corrupt or truncated "
            f"(FFmpeg: {detail})"
        )
    return f"cannot open the file: {detail}"


QUICK_PROBE_BYTES = 64 * 1024
"""What FFmpeg may read to identify a file before decoding. Its default (5 MB) made opening
most of the time a short file takes (docs/speed.md)."""
HEADER_FORMATS = frozenset(
    ["wav", "w64", "aiff", "caf", "flac", "ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"]
)
"""Containers whose header declares every stream: a quick probe of them is complete. Others
(MPEG-TS, MPEG-PS, AVI, FLV, ...) may announce an audio stream late and get FFmpeg's full probe."""


def open_container(
    path: str, probesize: int | None = None
) -> tuple[av.container.InputContainer, av.AudioStream]:
    """Open ``path`` with FFmpeg and pick its audio stream; raise AudioError on failure."""
    head = _check_file(path)
    # The "file:" prefix stops FFmpeg from reading names such as "a:b.wav" as a protocol.
    url = "file:" + os.path.abspath(path)
    options = {"probesize": str(probesize or QUICK_PROBE_BYTES)}
    try:
        container = av.open(url, mode="r", metadata_errors="replace", options=options)
        if probesize is None and not quick_probe_complete(container):
            container.close()
            container = av.open(url, mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise AudioError(path, _open_error_reason(exc, head)) from None
    try:
        # best("audio") only ever returns an audio stream (or None)
        stream = cast("av.AudioStream | None", container.streams.best("audio"))
        if stream is None and container.streams.audio:
            stream = container.streams.audio[0]
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            what = (
                f"the file has only {' and '.join(kinds)} streams"
                if kinds
                else "the file has no streams at all (corrupt or truncated?)"
            )
            raise AudioError(path, f"no audio stream: {what}")
        if not stream.codec_context.sample_rate or stream.codec_context.sample_rate <= 0:
            raise AudioError(path, "the audio stream has no valid sample rate")
    except BaseException:
        container.close()
        raise
    return container, stream


def quick_probe_complete(container: av.container.InputContainer) -> bool:
    """Whether a container opened with a quick probe is fully described: a header format with
    an audio stream whose sample rate and channels are known."""
    if container.format.name not in HEADER_FORMATS:
        return False
    audio = container.streams.audio
    return bool(audio) and all(
        (s.codec_context.sample_rate or 0) > 0 and (s.codec_context.channels or 0) > 0
        for s in audio
    )


def _riff_wav_frames(path: str) -> int | None:
    """Number of sample frames a RIFF/RIFX/RF64 WAV header declares, or None if unknown."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(12)
            if len(header) < 12 or header[8:12] != b"WAVE":
                return None
            kind = header[:4]
            if kind not in (b"RIFF", b"RIFX", b"RF64"):
                return None
            endian = ">" if kind == b"RIFX" else "<"
            block_align = None
            ds64_data_size = None
            for _ in range(1000):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid = chunk[:4]
                (size,) = struct.unpack(endian + "I", chunk[4:])
                if cid == b"fmt ":
                    body = fh.read(min(size, 16))
                    if len(body) < 14:
                        return None
                    (block_align,) = struct.unpack(endian + "H", body[12:14])
                    fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)
                elif cid == b"ds64":
                    body = fh.read(min(size, 24))
                    if len(body) >= 16:
                        (ds64_data_size,) = struct.unpack("<Q", body[8:16])
                    fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)
                elif cid == b"data":
                    if kind == b"RF64" and size == 0xFFFFFFFF and ds64_data_size is not None:
                        size = ds64_data_size
                    if not block_align or size == 0xFFFFFFFF:
                        return None
                    if size == 0 and fh.read(1):
                        return None  # size left at 0 by a live writer, yet data follows
                    return size // block_align
                else:
                    fh.seek(size + (size & 1), os.SEEK_CUR)
    except (OSError, struct.error):
        return None
    return None


def ogg_end_problem(path: str) -> str | None:
    """Describe how an Ogg file ends abnormally (cut inside a page, or no end-of-stream page)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            tail_start = max(0, size - 70000)  # an Ogg page is at most 65 307 bytes
            fh.seek(tail_start)
            tail = fh.read()
    except OSError:
        return None
    # Walk back over the capture patterns found in the tail until a well-formed page header.
    idx = len(tail)
    while True:
        idx = tail.rfind(b"OggS", 0, idx)
        if idx < 0:
            return None
        if idx + 27 <= len(tail) and tail[idx + 4] == 0:
            break
    pages_eos = False
    last_complete = True
    pos = idx
    n_segments = tail[pos + 26]
    if pos + 27 + n_segments > len(tail):
        last_complete = False
    else:
        body = sum(tail[pos + 27 : pos + 27 + n_segments])
        if pos + 27 + n_segments + body > len(tail):
            last_complete = False
    if not last_complete:
        return "the Ogg stream is cut in the middle of a page"
    # Any page in the tail flagged end-of-stream (bit 2 of the header type) counts.
    search = 0
    while True:
        search = tail.find(b"OggS", search)
        if search < 0 or search + 6 > len(tail):
            break
        if tail[search + 4] == 0 and tail[search + 5] & 0x04:
            pages_eos = True
            break
        search += 4
    if not pages_eos:
        return "the Ogg stream ends without its end-of-stream page"
    return None


def _declared_duration(
    path: str, container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if container.format.name == "wav":
        frames = _riff_wav_frames(path)
        if frames is not None:
            return frames / stream.codec_context.sample_rate
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def describe_stream(
    path: str, container: av.container.InputContainer, stream: av.AudioStream
) -> AudioInfo:
    cc = stream.codec_context
    bit_rate = stream.bit_rate or cc.bit_rate or container.bit_rate or None
    fmt = cc.format
    return AudioInfo(
        path=path,
        container=container.format.name,
        codec=cc.name,
        sample_rate=int(cc.sample_rate),
        channels=int(cc.channels),
        duration=_declared_duration(path, container, stream),
        sample_format=fmt.name if fmt is not None else "unknown",
        bit_rate=int(bit_rate) if bit_rate else None,
    )


def probe(path: str | os.PathLike[str], quick: bool = False) -> AudioInfo:
    """Describe the audio stream of a file without decoding it.

    ``quick`` lets FFmpeg read only the first :data:`QUICK_PROBE_BYTES` of any file: enough
    for an estimate (a run's ETA). Otherwise that is done only for :data:`HEADER_FORMATS`.

    Raises:
        AudioError: the file is missing, unreadable, not audio, or has no audio stream.
    """
    spath = os.fspath(path)
    container, stream = open_container(spath, QUICK_PROBE_BYTES if quick else None)
    try:
        return describe_stream(spath, container, stream)
    finally:
        container.close()
