"""Which files a run reads, why an input is left out, and where each file's outputs go.

Every input the user names ends up in the run, either as a file to decode or as an
:class:`Input` with a ``problem`` (a broken or looping symbolic link, a FIFO, a folder that
cannot be read, a path that does not exist), so that nothing is skipped without a word.

File names are kept as the file system gives them. Where text is needed (events, manifests,
logs) :func:`printable` writes bytes that are not UTF-8 as ``\\xNN`` escapes, and
:func:`name_bytes` keeps the original bytes (hex) for the manifest, so any name the file
system allows can be processed and traced back. Output names are made unique per run and
short enough for the file system (:func:`output_stems`).
"""

from __future__ import annotations

import errno
import glob as _glob
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
FILES_DIR = "files"
"""Per-file results go to ``OUT/files/<path relative to its input root>.<kind>``."""
NAME_MAX = 255
"""Longest file name (bytes) that common file systems accept."""
SUFFIX_RESERVE = 40
"""Bytes kept free in an output name for what earmark adds (``.events.json``, temp marks)."""


@dataclass(frozen=True)
class Input:
    """One input of a run: a file to decode, or one that cannot be (``problem`` says why)."""

    path: Path
    root: Path
    """The folder the file's output path is made relative to."""
    problem: str | None = None


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` as text any writer accepts: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def name_bytes(path: str | os.PathLike[str]) -> str | None:
    """The path's bytes as hex when its name is not valid UTF-8 (else ``None``)."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex()
    return None


def _stat_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "no such file or folder"
    return exc.strerror or type(exc).__name__


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _walk(folder: Path, root: Path, seen: set[tuple[int, int]], out: list[Input]) -> None:
    """Audio files under ``folder`` (following links to folders once), problems included."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        out.append(Input(folder, root, f"cannot read folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        path = Path(entry.path)
        audio_name = path.suffix.lower() in AUDIO_EXTENSIONS
        try:
            info = os.stat(path)
        except OSError as exc:  # only links can fail here: their target is missing or loops
            if entry.is_symlink():
                what = "broken symbolic link" if exc.errno == errno.ENOENT else _stat_problem(exc)
                out.append(Input(path, root, what))
            elif audio_name:
                out.append(Input(path, root, _stat_problem(exc)))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key not in seen:  # a link back to a folder already searched adds nothing
                seen.add(key)
                _walk(path, root, seen, out)
        elif audio_name:
            if stat.S_ISREG(info.st_mode):
                out.append(Input(path, root))
            else:
                out.append(Input(path, root, f"not a regular file ({_kind(info.st_mode)})"))


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Input]:
    """Expand files, folders (recursive, following links) and globs into :class:`Input`\\ s.

    The order is stable (arguments in order, folders sorted by name). A file reached twice is
    kept once. An input that cannot be decoded for a reason known up front (missing, broken or
    looping link, FIFO, unreadable folder) is returned with its ``problem`` set.
    """
    found: list[Input] = []
    for item in inputs:
        path = Path(item).expanduser()
        try:
            info = os.stat(path)
        except OSError as exc:
            text = os.fspath(item)
            if exc.errno == errno.ENOENT and any(ch in text for ch in "*?["):
                found += _glob_inputs(text)
            else:
                found.append(Input(path, path.parent, _stat_problem(exc)))
            continue
        if stat.S_ISDIR(info.st_mode):
            _walk(path, path, {(info.st_dev, info.st_ino)}, found)
        elif stat.S_ISREG(info.st_mode):
            found.append(Input(path, path.parent))
        else:
            problem = f"not a regular file ({_kind(info.st_mode)}); earmark detect reads files"
            found.append(Input(path, path.parent, problem))
    unique: dict[str, Input] = {}
    for entry in found:
        try:
            key = os.fspath(entry.path.resolve(strict=entry.problem is None))
        except (OSError, RuntimeError):
            key = os.path.abspath(entry.path)
        unique.setdefault(key, entry)
    return list(unique.values())


def _glob_inputs(pattern: str) -> list[Input]:
    anchor = Path(pattern.split("*")[0].split("?")[0].split("[")[0] or ".")
    root = anchor if anchor.is_dir() else anchor.parent
    matches = sorted(Path(p) for p in _glob.glob(os.path.expanduser(pattern), recursive=True))
    out: list[Input] = []
    for path in matches:
        try:
            info = os.stat(path)
        except OSError as exc:
            out.append(Input(path, root, _stat_problem(exc)))
            continue
        if stat.S_ISREG(info.st_mode):
            out.append(Input(path, root))
        elif not stat.S_ISDIR(info.st_mode):
            out.append(Input(path, root, f"not a regular file ({_kind(info.st_mode)})"))
    if not matches:
        out.append(Input(Path(pattern), root, "no file matches this pattern"))
    return out


def _fit_name(name: str) -> str:
    """``name`` shortened (with a hash of the whole) so that a suffix still fits NAME_MAX."""
    raw = name.encode("utf-8", "surrogateescape")
    room = NAME_MAX - SUFFIX_RESERVE
    if len(raw) <= room:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:10]
    cut = raw[: room - len(digest) - 1].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def _relative(entry: Input) -> Path:
    try:
        return Path(os.path.abspath(entry.path)).relative_to(os.path.abspath(entry.root))
    except ValueError:
        return Path(entry.path.name)


def output_stems(out_dir: Path, entries: Sequence[Input]) -> list[Path]:
    """Where each input's outputs go: ``OUT/files/<relative path>``, one distinct stem each.

    Names that are not UTF-8 are escaped (:func:`printable`), over-long names are shortened
    with a hash, and inputs that would share a stem (``a/x.ogg`` and ``b/x.ogg`` given as two
    arguments) keep as much of their folders as tells them apart, then a ``~N`` mark.
    """
    relatives = [_relative(e) for e in entries]
    counts: dict[str, list[int]] = {}
    for i, rel in enumerate(relatives):
        counts.setdefault(printable(rel).casefold(), []).append(i)
    for group in counts.values():
        if len(group) < 2:
            continue
        paths = [os.path.abspath(entries[i].path) for i in group]
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
        for i, p in zip(group, paths, strict=True):
            relatives[i] = Path(os.path.relpath(p, common))
    stems: list[Path] = []
    taken: set[str] = set()
    for rel in relatives:
        parts = [_fit_name(printable(part)) for part in rel.parts if part not in ("", ".", "..")]
        stem = Path(*parts) if parts else Path("input")
        key, n = str(stem).casefold(), 1
        while key in taken:
            n += 1
            stem = stem.with_name(_fit_name(f"{parts[-1] if parts else 'input'}~{n}"))
            key = str(stem).casefold()
        taken.add(key)
        stems.append(out_dir / FILES_DIR / stem)
    return stems
