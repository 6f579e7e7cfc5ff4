"""Clip and framewise embeddings from the pretrained backbone, cached by file content.

The **clip embedding** of a recording is the backbone's pooled feature before the AudioSet
classifier: the output of the last convolution averaged over frequency and time (384 values for
mn04_as), computed exactly as the official clip-level model does (global squeeze-excitation).
The **framewise embeddings** are the same feature every 0.32 s, computed the way ``earmark
detect`` computes its framewise scores (local squeeze-excitation over 4.8 s, features pooled
over 1.6 s around each frame): a head trained on clip embeddings is applied to them to detect
custom classes in long recordings.

Embeddings are cached under ``$EARMARK_CACHE_DIR/embeddings`` (default
``~/.cache/earmark/embeddings``), one small ``.npz`` per (backbone, file content, variant), keyed
by the sha256 of the file's bytes: renaming or moving files keeps the cache, editing a file
invalidates it, and re-running ``earmark embed`` or ``earmark train`` on the same data does no
network computation at all.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np

from earmark import assets
from earmark.audio import SAMPLE_RATE, AudioError
from earmark.audio import load as load_audio
from earmark.constants import FRAME_HOP
from earmark.outputs import atomic_path

EMBEDDING_VERSION = 1
"""Bumped whenever the computation changes: old cache entries are then ignored."""
MIN_SECONDS = 1.0
"""Shorter clips are repeated to this length before embedding (the network needs context)."""
CACHE_ENV = "EARMARK_EMBEDDING_CACHE"
"""Overrides the cache folder; ``off`` disables the cache."""

ProgressCallback = Callable[[int, int, int], None]
"""Called with (files done, files in total, of which found in the cache)."""
Transform = Callable[[np.ndarray], np.ndarray]


class EmbeddingError(ValueError):
    """An embeddings file or request that cannot be used; the message names the cause."""


@dataclass
class Backbone:
    """A network and front end that produce embeddings, with an identity for the cache."""

    net: object
    """An :class:`earmark.model.MobileNet` in eval mode."""
    front_end: object
    """An :class:`earmark.features.LogMel`."""
    key: str
    """Identifies the weights (e.g. the checkpoint's sha256): part of every cache key."""
    name: str = ""

    @classmethod
    def from_tagger(cls, tagger: object) -> Backbone:
        """The backbone of a loaded :class:`earmark.tagger.Tagger`."""
        return cls(
            net=tagger.net,  # type: ignore[attr-defined]
            front_end=tagger.front_end,  # type: ignore[attr-defined]
            key=tagger.checkpoint_sha256,  # type: ignore[attr-defined]
            name=tagger.spec.name,  # type: ignore[attr-defined]
        )

    @property
    def dim(self) -> int:
        """Size of one embedding."""
        return int(self.net.embedding_dim)  # type: ignore[attr-defined]

    def clip_embedding(self, audio: np.ndarray) -> np.ndarray:
        """The clip embedding of a 32 kHz mono signal (official clip-level computation)."""
        import torch

        audio = pad_to_min_length(audio)
        with torch.inference_mode():
            mel = cast("Callable[..., Any]", self.front_end)(
                torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
            )
            fmap = self.net.feature_map(mel)  # type: ignore[attr-defined]
            return fmap.mean(dim=(2, 3))[0].numpy().astype(np.float32)

    def frame_embeddings(self, audio: np.ndarray) -> np.ndarray:
        """Framewise embeddings ``(frames, dim)``, one per 0.32 s, as ``detect`` computes them."""
        from earmark.scoring import FrameScorer, ScoringOptions

        scorer = FrameScorer(self.net, self.front_end, ScoringOptions(embeddings=True))  # type: ignore[arg-type]
        result = scorer.score(pad_to_min_length(audio))
        assert result.embeddings is not None
        return np.asarray(result.embeddings, dtype=np.float32)


def pad_to_min_length(audio: np.ndarray) -> np.ndarray:
    n = int(MIN_SECONDS * SAMPLE_RATE)
    if len(audio) == 0:
        raise AudioError("<array>", "no audio samples")
    if len(audio) >= n:
        return audio
    return np.resize(audio, n)  # repeats the clip


def cache_root() -> Path | None:
    """The embedding cache folder, or ``None`` when disabled (``EARMARK_EMBEDDING_CACHE=off``)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return None if override.strip().lower() in ("off", "0", "no", "false") else Path(override)
    return assets.cache_dir().parent / "embeddings"


class EmbeddingCache:
    """One ``.npz`` per (backbone, file sha256, variant) under a root folder."""

    def __init__(self, root: Path | None, backbone_key: str) -> None:
        self.root = root
        self.prefix = hashlib.sha256(f"v{EMBEDDING_VERSION}:{backbone_key}".encode()).hexdigest()[
            :16
        ]
        self.hits = 0
        self.misses = 0

    def _path(self, sha: str, variant: str) -> Path | None:
        if self.root is None:
            return None
        name = sha if not variant else f"{sha}-{hashlib.sha1(variant.encode()).hexdigest()[:12]}"
        return self.root / self.prefix / sha[:2] / f"{name}.npz"

    def get(self, sha: str, variant: str, framewise: bool) -> dict[str, np.ndarray] | None:
        """The cached arrays (``clip`` and, if asked, ``frames``), or ``None``."""
        path = self._path(sha, variant)
        if path is None or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                entry = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):  # a damaged entry is recomputed
            self.misses += 1
            return None
        if framewise and "frames" not in entry:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, sha: str, variant: str, entry: dict[str, np.ndarray]) -> None:
        """Store arrays atomically (a failure to write the cache is not an error)."""
        path = self._path(sha, variant)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temp, open(temp, "wb") as handle:
                np.savez(handle, **cast("dict[str, Any]", entry))
        except OSError:
            pass


@dataclass
class EmbeddingSet:
    """Embeddings of a set of files with their labels and folds."""

    embeddings: np.ndarray
    """``(n, dim)`` float32 clip embeddings."""
    files: list[str]
    labels: list[str]
    folds: np.ndarray
    """``(n,)`` int, ``-1`` where a clip has no fold."""
    frames: list[np.ndarray] | None = None
    """Framewise embeddings per file, ``(frames_i, dim)`` each, when computed."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(file, reason)`` of files that could not be embedded."""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def save(self, path: str | Path) -> Path:
        """Write as ``.npz`` or ``.parquet`` (by suffix), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            arrays: dict[str, np.ndarray] = {
                "embeddings": self.embeddings.astype(np.float32),
                "files": np.array(self.files, dtype=str),
                "labels": np.array(self.labels, dtype=str),
                "folds": self.folds.astype(np.int64),
                "meta": np.array(json.dumps(self.meta)),
            }
            if self.frames is not None:
                lengths = np.array([len(f) for f in self.frames], dtype=np.int64)
                arrays["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)])
                arrays["frame_embeddings"] = (
                    np.concatenate(self.frames).astype(np.float32)
                    if self.frames
                    else np.zeros((0, self.embeddings.shape[1]), np.float32)
                )
            with atomic_path(path) as temp, open(temp, "wb") as handle:
                np.savez_compressed(handle, **cast("dict[str, Any]", arrays))
        elif suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise EmbeddingError(
                    f"{path}: writing parquet needs pyarrow (pip install 'earmark[custom]'), "
                    "or use a .npz output"
                ) from None
            columns = {
                "file": pa.array(self.files, pa.string()),
                "label": pa.array(self.labels, pa.string()),
                "fold": pa.array([int(f) if f >= 0 else None for f in self.folds], pa.int64()),
                "embedding": pa.array(
                    list(self.embeddings.astype(np.float32)), pa.list_(pa.float32())
                ),
            }
            if self.frames is not None:
                columns["frame_embeddings"] = pa.array(
                    [f.astype(np.float32).tolist() for f in self.frames],
                    pa.list_(pa.list_(pa.float32())),
                )
            table = pa.table(columns).replace_schema_metadata({"earmark": json.dumps(self.meta)})
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            with atomic_path(path) as temp:
                temp.write_bytes(buffer.getvalue())
        else:
            raise EmbeddingError(f"{path}: output must end in .npz or .parquet")
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingSet:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise EmbeddingError(f"{path}: no such embeddings file")
        try:
            if path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(path)
                data = table.to_pydict()
                meta_raw = (table.schema.metadata or {}).get(b"earmark", b"{}")
                frames = None
                if "frame_embeddings" in data:
                    frames = [np.asarray(f, np.float32) for f in data["frame_embeddings"]]
                return cls(
                    embeddings=np.asarray(data["embedding"], dtype=np.float32),
                    files=list(data["file"]),
                    labels=list(data["label"]),
                    folds=np.array([-1 if f is None else f for f in data["fold"]], np.int64),
                    frames=frames,
                    meta=json.loads(meta_raw),
                )
            with np.load(path, allow_pickle=False) as npz:
                frames = None
                if "frame_offsets" in npz.files:
                    offsets, flat = npz["frame_offsets"], npz["frame_embeddings"]
                    frames = [flat[a:b] for a, b in itertools.pairwise(offsets)]
                return cls(
                    embeddings=npz["embeddings"].astype(np.float32),
                    files=[str(f) for f in npz["files"]],
                    labels=[str(x) for x in npz["labels"]],
                    folds=npz["folds"].astype(np.int64),
                    frames=frames,
                    meta=json.loads(str(npz["meta"])),
                )
        except (KeyError, ValueError, OSError) as exc:
            raise EmbeddingError(f"{path}: not an earmark embeddings file ({exc})") from None


def embed_files(
    paths: Sequence[str | Path],
    backbone: Backbone,
    framewise: bool = False,
    cache: EmbeddingCache | bool | None = True,
    transform: Transform | None = None,
    variant: str = "",
    progress: ProgressCallback | None = None,
) -> tuple[list[np.ndarray | None], list[np.ndarray | None], list[str | None]]:
    """Embed files; returns per file ``(clip embedding, frame embeddings, error)``.

    A file that cannot be decoded gets ``None`` embeddings and its error text (naming the file);
    the others are still embedded. ``transform`` (e.g. an augmentation) is applied to the
    decoded 32 kHz signal first; ``variant`` names it in the cache key and must change whenever
    the transform does.
    """
    if cache is True:
        cache = EmbeddingCache(cache_root(), backbone.key)
    elif cache is False:
        cache = None
    clips: list[np.ndarray | None] = []
    frames: list[np.ndarray | None] = []
    errors: list[str | None] = []
    hits = 0
    for i, path in enumerate(paths):
        path = Path(path)
        try:
            sha = assets.sha256_file(path)
        except OSError as exc:
            clips.append(None)
            frames.append(None)
            errors.append(f"{path}: cannot read ({exc.strerror or exc})")
            if progress:
                progress(i + 1, len(paths), hits)
            continue
        entry = cache.get(sha, variant, framewise) if cache else None
        if entry is not None:
            hits += 1
        else:
            try:
                audio = load_audio(path, SAMPLE_RATE)
                if len(audio) == 0:
                    raise AudioError(str(path), "no audio samples")
                if transform is not None:
                    audio = transform(audio)
                entry = {"clip": backbone.clip_embedding(audio)}
                if framewise:
                    entry["frames"] = backbone.frame_embeddings(audio)
                if not np.isfinite(entry["clip"]).all():
                    raise AudioError(str(path), "the network produced non-finite values")
            except AudioError as exc:
                text = str(exc)
                clips.append(None)
                frames.append(None)
                errors.append(text if str(path) in text else f"{path}: {text}")
                if progress:
                    progress(i + 1, len(paths), hits)
                continue
            if cache:
                cache.put(sha, variant, entry)
        clips.append(entry["clip"].astype(np.float32))
        frames.append(entry["frames"].astype(np.float32) if framewise else None)
        errors.append(None)
        if progress:
            progress(i + 1, len(paths), hits)
    return clips, frames, errors


def embed_dataset(
    dataset: object,
    backbone: Backbone,
    framewise: bool = False,
    cache: EmbeddingCache | bool | None = True,
    progress: ProgressCallback | None = None,
) -> EmbeddingSet:
    """Clip (and optionally framewise) embeddings of every clip of a :class:`Dataset`."""
    from earmark.custom.datasets import Dataset

    assert isinstance(dataset, Dataset)
    started = time.perf_counter()
    paths = [c.path for c in dataset.clips]
    clips, frames, errors = embed_files(paths, backbone, framewise, cache, progress=progress)
    keep = [i for i, e in enumerate(errors) if e is None]
    failed = [(str(paths[i]), errors[i] or "") for i in range(len(paths)) if errors[i]]
    dim = backbone.dim
    matrix = (
        np.stack([cast(np.ndarray, clips[i]) for i in keep])
        if keep
        else np.zeros((0, dim), dtype=np.float32)
    )
    return EmbeddingSet(
        embeddings=matrix,  # type: ignore[arg-type]
        files=[str(paths[i]) for i in keep],
        labels=[dataset.clips[i].label for i in keep],
        folds=np.array(
            [-1 if dataset.clips[i].fold is None else dataset.clips[i].fold for i in keep],
            dtype=np.int64,
        ),
        frames=[frames[i] for i in keep] if framewise else None,  # type: ignore[misc]
        failed=failed,
        meta={
            "backbone": backbone.name,
            "backbone_key": backbone.key,
            "dim": dim,
            "embedding": "mean over frequency and time of the last conv (clip level)",
            "framewise": framewise,
            "frame_hop": FRAME_HOP if framewise else None,
            "version": EMBEDDING_VERSION,
            "dataset": str(dataset.source),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


class ProgressPrinter:
    """Prints ``files done / total, cached, rate, ETA`` lines to stderr every few seconds.

    One printer may follow several passes (``done`` starting again, or another ``total``). The
    ETA comes from the files embedded since a pass's first report, not from files read from the
    cache nor the time before it; until one second and one file have passed it says
    ``estimating``."""

    def __init__(
        self, what: str = "embedded", interval: float = 5.0, stream: TextIO | None = None
    ) -> None:
        import sys

        self.what = what
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.last = 0.0
        self.first: tuple[float, int] | None = None
        self.previous = (0, 0)

    def __call__(self, done: int, total: int, cached: int) -> None:
        now = time.perf_counter()
        if self.first is not None and (total != self.previous[0] or done < self.previous[1]):
            self.first = None  # a new pass began
        self.previous = (total, done)
        if self.first is None:  # rates are measured from here: model loading is not in them
            self.first = (now, done - cached)
            self.started = self.last = now
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        t0, worked0 = self.first
        worked = done - cached - worked0  # files embedded (not read from the cache) since then
        if done >= total:
            eta_text = "done"
        elif worked >= 1 and now - t0 >= 1.0:
            eta_text = f"{(total - done) * (now - t0) / worked:.0f} s"
        else:
            eta_text = "estimating"
        self.stream.write(
            f"{self.what} {done}/{total} files ({cached} from cache) | "
            f"{rate:.1f} files/s | ETA {eta_text}\n"
        )
        self.stream.flush()
