"""Where live audio comes from: input devices, network streams and files, decoded by FFmpeg.

A source is written as ``[NAME=]WHAT``:

* ``rtsp://``, ``rtsps://``, ``http://``, ``https://``, ``udp://``, ``srt://``, ``rtmp://``,
  ``tcp://`` URLs: a network stream (an IP camera, an Icecast/HLS stream, ...);
* ``alsa:DEVICE``, ``pulse:DEVICE``, ``avfoundation:DEVICE``, ``dshow:DEVICE``: an input
  device through FFmpeg's device demuxers (e.g. ``alsa:default``, ``pulse:default``,
  ``avfoundation::0`` on macOS, ``dshow:audio=Microphone`` on Windows);
* ``follow:PATH``: a file that another program is still writing (read as it grows);
* any other text: a file read once to its end (as fast as it decodes, or at its own pace with
  ``realtime``), which is how tests and benchmarks replay recordings.

``NAME`` (letters, digits, ``._-``) names the source in events, topics and metrics; by default
the source itself, with any password in its URL removed.
:func:`open_audio` decodes a source to 32 kHz mono float32 chunks; a source that cannot be
opened or stops delivering raises :class:`SourceError` (the listener reconnects).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np
import soxr

from earmark.audio import RESAMPLE_QUALITY, frame_to_mono
from earmark.constants import SAMPLE_RATE

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "srt", "rtmp", "rtmps", "tcp")
DEVICE_FORMATS = ("alsa", "pulse", "avfoundation", "dshow", "oss", "jack")
OPEN_TIMEOUT = 10.0
"""Seconds to wait for a source to open."""
READ_TIMEOUT = 5.0
"""Seconds without data after which a network source counts as dropped."""
CHUNK_SECONDS = 0.1
"""Audio handed on at a time."""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SourceError(Exception):
    """A source could not be opened, or stopped delivering audio (``str`` says why)."""


@dataclass(frozen=True)
class Source:
    """A parsed source: what FFmpeg opens, how, and the name events carry."""

    name: str
    url: str
    kind: str
    """``network``, ``device``, ``follow`` or ``file``."""
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def endless(self) -> bool:
        """Whether the source has no end (a file read once has)."""
        return self.kind != "file"


def redact(url: str) -> str:
    """``url`` without the password of its user info (``rtsp://user:pw@cam`` ->
    ``rtsp://user@cam``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def parse_source(text: str) -> Source:
    """A :class:`Source` from its command-line form (see the module docstring).

    Raises ``ValueError`` naming the text and what is wrong with it.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty source")
    name = None
    head, sep, rest = text.partition("=")
    if sep and NAME_PATTERN.match(head) and rest:
        name, text = head, rest
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if "://" in text and scheme in NETWORK_SCHEMES:
        options = {"rw_timeout": str(int(READ_TIMEOUT * 1e6))}
        if scheme in ("rtsp", "rtsps"):
            options = {"rtsp_transport": "tcp", "timeout": str(int(READ_TIMEOUT * 1e6))}
        elif scheme == "udp":
            options = {"timeout": str(int(READ_TIMEOUT * 1e6)), "overrun_nonfatal": "1"}
        return Source(name or redact(text), text, "network", None, options)
    if "://" in text:
        raise ValueError(
            f"{text!r}: unsupported stream scheme {scheme!r} (use one of "
            f"{', '.join(NETWORK_SCHEMES)})"
        )
    if scheme in DEVICE_FORMATS:
        device = text.split(":", 1)[1]
        if not device:
            raise ValueError(f"{text!r}: name the device after '{scheme}:' (e.g. {scheme}:default)")
        return Source(name or text, device, "device", scheme)
    if scheme == "follow":
        path = text.split(":", 1)[1]
        if not path:
            raise ValueError(f"{text!r}: name the file after 'follow:'")
        return Source(name or path, f"file:{path}", "follow", None, {"follow": "1"})
    return Source(name or text, text, "file")


def open_audio(source: Source, realtime: bool = False) -> Iterator[np.ndarray]:
    """32 kHz mono float32 chunks of ``source`` as FFmpeg decodes them (PyAV).

    A change of sample rate or channel layout mid-stream is followed (the resampler restarts).
    ``realtime`` paces a file at its own speed. Ends when a file ends; raises
    :class:`SourceError` when the source cannot be opened or fails while reading (a network
    source ending counts as failing: streams do not end).
    """
    try:
        container = av.open(
            source.url,
            format=source.format,
            options=source.options,
            timeout=(OPEN_TIMEOUT, READ_TIMEOUT),
        )
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SourceError(f"cannot open: {_reason(exc)}") from None
    try:
        if not container.streams.audio:
            raise SourceError("no audio stream")
        stream = container.streams.audio[0]
        yield from _decode(container, stream, realtime)
        if source.endless:
            raise SourceError("the stream ended")
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"read failed: {_reason(exc)}") from None
    finally:
        container.close()


def _decode(container: av.container.InputContainer, stream: av.AudioStream, realtime: bool):  # type: ignore[no-untyped-def]
    resampler: soxr.ResampleStream | None = None
    rate: int | None = None
    pending: list[np.ndarray] = []
    held = 0
    chunk = round(CHUNK_SECONDS * SAMPLE_RATE)
    started, produced = time.monotonic(), 0
    for packet in container.demux(stream):
        for frame in packet.decode():
            mono = frame_to_mono(frame)
            if frame.sample_rate != rate:
                if resampler is not None:  # flush the old rate's tail
                    pending.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
                rate = frame.sample_rate
                resampler = None
                if rate != SAMPLE_RATE:
                    resampler = soxr.ResampleStream(
                        rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
                    )
            out = resampler.resample_chunk(mono) if resampler is not None else mono
            if not np.isfinite(out).all():  # a broken packet must not poison the scores
                out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
            pending.append(out)
            held += len(out)
            while held >= chunk:
                joined = np.concatenate(pending)
                piece, rest = joined[:chunk], joined[chunk:]
                pending, held = [rest], len(rest)
                produced += len(piece)
                if realtime:
                    ahead = produced / SAMPLE_RATE - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                yield piece
    if resampler is not None:
        pending.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    if held or pending:
        rest = np.concatenate(pending)
        if len(rest):
            yield rest


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("\n", " ")[:300]
