"""Long audio -> framewise class scores, with bounded local context and chunked memory.

The official EfficientAT model is a clip tagger: its squeeze-excitation gates and its head average
over the whole input, so one pass over a long file mixes context from everywhere, and the head
applied per frame is badly calibrated. Two scoring methods turn it into a frame tagger:

``local`` (default)
    One pass over the file in blocks. Every squeeze-excitation gate averages over a centred
    window of ``se_context`` output frames instead of the whole input, and the head sees the
    features averaged over ``pool`` frames around each frame. Each output frame then depends
    only on a few seconds around it, and the network runs once per sample: the cost of a
    single pass. Blocks overlap by ``margin`` frames so that results do not depend on where
    block boundaries fall.
``window``
    The official clip-level computation on a window of ``window`` seconds centred on each frame
    (shifted to stay inside the file), every ``hop`` seconds. Exact clip-level semantics, at the
    cost of running the network ``window / hop`` times per sample.

Both produce :class:`FrameScores`: frame ``i`` covers ``[i * hop, (i + 1) * hop)`` seconds.
See ``benchmarks/scoring_design.py`` for the measurements behind the defaults.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np
import torch

from earmark.backends import BACKENDS, DEFAULT_BACKEND, BlockRunner, torch_runner
from earmark.constants import FRAME_HOP, LIVE_BLOCK_FRAMES, LIVE_LOOKAHEAD_FRAMES
from earmark.features import HOP_LENGTH, N_FFT, SAMPLE_RATE, LogMel, logmel_segment
from earmark.model import TIME_STRIDE, MobileNet

if TIME_STRIDE * HOP_LENGTH / SAMPLE_RATE != FRAME_HOP:  # the network's own frame hop
    raise ImportError("earmark.constants.FRAME_HOP does not match the network's frame hop")

DEFAULT_METHOD = "local"
DEFAULT_SE_CONTEXT = 15
"""Squeeze-excitation window in output frames (15 x 0.32 s = 4.8 s)."""
DEFAULT_POOL = 5
"""Head pooling window in output frames (1.6 s)."""
DEFAULT_BLOCK_FRAMES = 96
"""Output frames per block of the local method (30.72 s): bounds memory on long files."""
DEFAULT_MARGIN_FRAMES = 24
"""Context frames computed on each side of a block and discarded (7.68 s). With the default
windows, scores then differ from a single pass over the whole file by at most 2e-4 (1.4e-5 with
32 frames, 6e-3 with 16). Scoring 10 min, 1 thread: 96/24 peaks at 482 MB and runs as fast as
192/32 (567 MB), which computes fewer margins but handles larger tensors."""
MEL_PIECE = 1024
"""Log-mel frames computed per STFT call (10.24 s): the STFT's buffers stay small."""
DEFAULT_WINDOW = 2.0
DEFAULT_WINDOW_BATCH = 32


@dataclass
class ScoringOptions:
    """How framewise scores are computed from a long recording."""

    method: str = DEFAULT_METHOD
    se_context: int = DEFAULT_SE_CONTEXT
    pool: int = DEFAULT_POOL
    block_frames: int = DEFAULT_BLOCK_FRAMES
    margin_frames: int = DEFAULT_MARGIN_FRAMES
    window: float = DEFAULT_WINDOW
    hop: float = FRAME_HOP
    batch_size: int = DEFAULT_WINDOW_BATCH
    embeddings: bool = False
    """Also keep the framewise embeddings the head sees (averaged over ``pool`` frames)."""
    features: bool = False
    """Also keep the unpooled framewise features (last conv averaged over frequency only,
    one per frame): what a custom frame-level head (:mod:`earmark.custom`) reads."""
    dtype: str = "float32"
    """Type of the kept scores: ``float16`` halves their memory on long files (2.4e-4 steps)."""
    backend: str = DEFAULT_BACKEND
    """Who runs the network for the local method: ``torch``, ``onnxruntime`` (same graph, 1.6x
    faster here, probabilities within 4e-6) or ``auto`` (:mod:`earmark.backends`)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent settings."""
        if self.method not in ("local", "window"):
            raise ValueError(f"scoring method must be 'local' or 'window', not {self.method!r}")
        if self.se_context < 1 or self.pool < 1:
            raise ValueError("se_context and pool must be at least 1 frame")
        if self.block_frames < 8 or self.margin_frames < 0:
            raise ValueError("block_frames must be >= 8 and margin_frames >= 0")
        if self.window < 0.32:
            raise ValueError("window must be at least 0.32 s")
        if self.hop < 0.01 or abs(self.hop * 100 - round(self.hop * 100)) > 1e-6:
            raise ValueError("hop must be a positive multiple of 0.01 s")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', not {self.dtype!r}")

    @property
    def frame_hop(self) -> float:
        """Seconds per output frame for this method."""
        return FRAME_HOP if self.method == "local" else self.hop

    def to_dict(self) -> dict:
        """Plain dict for manifests."""
        return asdict(self)


@dataclass
class FrameScores:
    """Framewise class probabilities of one recording.

    ``scores[i, c]`` is the probability of class ``c`` in ``[i * hop, (i + 1) * hop)`` seconds.
    """

    scores: np.ndarray
    hop: float
    duration: float
    embeddings: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    features: np.ndarray | None = None
    """Unpooled framewise features ``(frames, dim)`` (``ScoringOptions.features``)."""

    @property
    def times(self) -> np.ndarray:
        """Start time of every frame, seconds."""
        return np.arange(self.scores.shape[0]) * self.hop

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.scores.shape[0])


ProgressCallback = Callable[[float], None]
"""Called with seconds of audio scored so far."""


def _out_len(n_mel: int) -> int:
    """Output frames of the network for ``n_mel`` log-mel frames (five stride-2 convolutions)."""
    for _ in range(5):
        n_mel = (n_mel + 1) // 2
    return n_mel


class _SampleBuffer:
    """Holds a sliding piece of a long signal with its absolute offset."""

    def __init__(self) -> None:
        self.data = torch.zeros(0)
        self.offset = 0
        self.total = 0
        self.finished = False

    def push(self, chunk: np.ndarray) -> None:
        self.data = torch.cat([self.data, torch.from_numpy(np.ascontiguousarray(chunk))])
        self.total += len(chunk)

    def drop_before(self, sample: int) -> None:
        cut = sample - self.offset
        if cut > 0:
            self.data = self.data[cut:]
            self.offset = sample


class FrameScorer:
    """Computes :class:`FrameScores` with a loaded network and front end."""

    def __init__(
        self,
        net: MobileNet,
        front_end: LogMel,
        options: ScoringOptions | None = None,
        runner: BlockRunner | None = None,
    ) -> None:
        self.net = net
        self.front_end = front_end
        self.options = options or ScoringOptions()
        self.options.validate()
        self.runner = runner or torch_runner(net, self.options.pool)
        """Runs the network on a block of the local method (:mod:`earmark.backends`)."""
        self.timings: dict[str, float] = {"front_end": 0.0, "network": 0.0}
        """Seconds spent in the front end and the network by the last :meth:`score` call."""
        self._mel_kept: tuple[int, torch.Tensor | None] = (0, None)
        """The last block's log-mel frames and the index of the first (:meth:`_logmel`)."""

    # ------------------------------------------------------------------ public API
    def score(
        self,
        chunks: Iterable[np.ndarray] | np.ndarray,
        progress: ProgressCallback | None = None,
        expected_seconds: float | None = None,
    ) -> FrameScores:
        """Score a 32 kHz mono float32 signal given whole or as an iterable of chunks.

        ``expected_seconds`` (e.g. the duration a container declares) lets the local method
        allocate the score matrix once instead of concatenating blocks at the end.
        """
        if isinstance(chunks, np.ndarray):
            expected_seconds = len(chunks) / SAMPLE_RATE
            chunks = [chunks]
        opts = self.options
        self.timings = {"front_end": 0.0, "network": 0.0}
        self.net.set_se_context(opts.se_context if opts.method == "local" else None)
        try:
            with torch.inference_mode():
                if opts.method == "local":
                    scores, emb, feats, n = self._score_local(chunks, progress, expected_seconds)
                else:
                    scores, emb, n = self._score_windows(chunks, progress)
                    feats = emb if opts.features else None
                    emb = emb if opts.embeddings else None
        finally:
            self.net.set_se_context(None)
        return FrameScores(
            scores=scores,
            hop=opts.frame_hop,
            duration=n / SAMPLE_RATE,
            embeddings=emb,
            meta={"scoring": opts.to_dict()},
            features=feats,
        )

    # ------------------------------------------------------------------ local method
    def _score_local(
        self,
        chunks: Iterable[np.ndarray],
        progress: ProgressCallback | None,
        expected_seconds: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]:
        opts = self.options
        buf = _SampleBuffer()
        self._mel_kept = (0, None)
        capacity = math.ceil((expected_seconds or 0.0) / FRAME_HOP) + 2
        out_scores = _Rows(
            cast(torch.nn.Linear, self.net.classifier[-1]).out_features, opts.dtype, capacity
        )
        out_emb = _Rows(self.net.embedding_dim, "float32", capacity if opts.embeddings else 0)
        out_feat = _Rows(self.net.embedding_dim, "float32", capacity if opts.features else 0)
        next_frame = 0
        iterator = iter(chunks)
        while True:
            chunk = next(iterator, None)
            if chunk is None:
                buf.finished = True
            else:
                buf.push(chunk)
            while True:
                block = self._next_local_block(buf, next_frame)
                if block is None:
                    break
                scores, emb, feats = block
                out_scores.append(scores)
                if emb is not None:
                    out_emb.append(emb)
                if feats is not None:
                    out_feat.append(feats)
                next_frame += len(scores)
                if progress is not None:
                    progress(min(next_frame * FRAME_HOP, buf.total / SAMPLE_RATE))
            if buf.finished:
                break
        embeddings = out_emb.result() if opts.embeddings else None
        features = out_feat.result() if opts.features else None
        return out_scores.result(), embeddings, features, buf.total

    def _next_local_block(
        self,
        buf: _SampleBuffer,
        j0: int,
        block_frames: int | None = None,
        lookahead_frames: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        """Frames ``j0 ..`` of the next block once enough samples are buffered, else ``None``.

        ``block_frames`` and ``lookahead_frames`` (the context computed after the block) default
        to the options' block and margin; the context before the block is always the margin.
        """
        opts = self.options
        if buf.total < 2:
            return None
        if buf.finished:
            n_mel_total = 1 + (buf.total - 1) // HOP_LENGTH
            n_out_total = _out_len(n_mel_total)
            if j0 >= n_out_total:
                return None
        j1 = j0 + (block_frames or opts.block_frames)
        ahead = opts.margin_frames if lookahead_frames is None else lookahead_frames
        ext_end_mel = TIME_STRIDE * (j1 + ahead)
        needed = (ext_end_mel - 1) * HOP_LENGTH + N_FFT // 2 + 1
        if not buf.finished and buf.total < needed:
            return None
        ext_start = max(j0 - opts.margin_frames, 0)
        mel_start = TIME_STRIDE * ext_start
        if buf.finished:
            ext_end_mel = min(ext_end_mel, n_mel_total)
            j1 = min(j1, n_out_total)
        started = time.perf_counter()
        mel = self._logmel(buf, mel_start, ext_end_mel)
        computed = time.perf_counter()
        logits, emb, fmap_mean = self.runner(mel, opts.features)
        keep = slice(j0 - ext_start, j1 - ext_start)
        scores = torch.sigmoid(logits[0, keep]).numpy()
        self.timings["front_end"] += computed - started
        self.timings["network"] += time.perf_counter() - computed
        # samples needed by the next block start here
        next_mel = TIME_STRIDE * max(j1 - opts.margin_frames, 0)
        buf.drop_before(max(next_mel * HOP_LENGTH - N_FFT // 2 - 1, 0))
        feats = fmap_mean[0, :, keep].T.numpy() if fmap_mean is not None else None
        return scores, emb[0, keep].numpy() if opts.embeddings else None, feats

    def _logmel(self, buf: _SampleBuffer, start: int, stop: int) -> torch.Tensor:
        """Log-mel frames ``start .. stop`` computed in pieces (bounds the STFT's memory).

        Blocks overlap by their margins: the frames the previous call computed are reused, so
        every frame is computed once (each is exact, as a whole-file pass computes it).
        """
        pieces = []
        first = start
        kept_start, kept = self._mel_kept
        if kept is not None and kept_start <= start < kept_start + kept.shape[-1]:
            pieces.append(kept[..., start - kept_start : stop - kept_start])
            first = kept_start + kept.shape[-1]
        pieces += [
            logmel_segment(self.front_end, buf.data, f, min(MEL_PIECE, stop - f), buf.offset)
            for f in range(first, stop, MEL_PIECE)
        ]
        mel = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        self._mel_kept = (start, mel)
        return mel

    def stream(
        self, block_frames: int = LIVE_BLOCK_FRAMES, lookahead_frames: int = LIVE_LOOKAHEAD_FRAMES
    ) -> StreamScorer:
        """A push-based scorer for an endless stream (local method only): see
        :class:`StreamScorer`."""
        return StreamScorer(self, block_frames, lookahead_frames)

    # ------------------------------------------------------------------ window method
    def _score_windows(
        self, chunks: Iterable[np.ndarray], progress: ProgressCallback | None
    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """Clip-level scores of windows centred on each frame; needs the whole log-mel.

        The log-mel is computed block by block (exactly as a whole-file pass would), so memory
        is that of the log-mel (51 KB per second), not of the waveform.
        """
        opts = self.options
        started = time.perf_counter()
        buf = _SampleBuffer()
        mels: list[torch.Tensor] = []
        done_mel = 0
        block_mel = TIME_STRIDE * opts.block_frames
        for chunk in chunks:
            buf.push(chunk)
            while buf.total >= (done_mel + block_mel) * HOP_LENGTH + N_FFT // 2 + 1:
                mels.append(
                    logmel_segment(self.front_end, buf.data, done_mel, block_mel, buf.offset)
                )
                done_mel += block_mel
                buf.drop_before(max(done_mel * HOP_LENGTH - N_FFT // 2 - 1, 0))
        if buf.total < 2:
            return _stack([], self.net), None, buf.total
        n_mel_total = 1 + (buf.total - 1) // HOP_LENGTH
        if n_mel_total > done_mel:
            mels.append(
                logmel_segment(
                    self.front_end, buf.data, done_mel, n_mel_total - done_mel, buf.offset
                )
            )
        mel = torch.cat(mels, dim=-1)
        computed = time.perf_counter()
        self.timings["front_end"] = computed - started  # with the decoding it waited for
        hop_mel = round(opts.hop * 100)
        width = min(round(opts.window * 100), n_mel_total)
        n_frames = max(1, math.ceil(n_mel_total / hop_mel))
        centres = (np.arange(n_frames) * hop_mel + hop_mel / 2).round().astype(int)
        starts = np.clip(centres - width // 2, 0, n_mel_total - width)
        scores, embs = [], []
        for b in range(0, n_frames, opts.batch_size):
            batch = torch.stack(
                [mel[0, :, :, s : s + width] for s in starts[b : b + opts.batch_size]]
            )
            logits, emb = self.net(batch)
            scores.append(torch.sigmoid(logits).numpy().astype(opts.dtype, copy=False))
            if opts.embeddings or opts.features:
                embs.append(emb.numpy())
            if progress is not None:
                progress(min((b + len(batch)) * opts.hop, buf.total / SAMPLE_RATE))
        self.timings["network"] = time.perf_counter() - computed
        return np.concatenate(scores), (np.concatenate(embs) if embs else None), buf.total


@dataclass
class ScoreBlock:
    """Frames ``start .. start + len(scores)`` of a stream, as :class:`StreamScorer` gives them."""

    start: int
    scores: np.ndarray
    embeddings: np.ndarray | None = None
    features: np.ndarray | None = None


class StreamScorer:
    """Local scoring of an endless stream: push samples as they arrive, get frames back.

    Each block of ``block_frames`` frames is computed once the stream holds
    ``lookahead_frames`` frames after it (the options' margin before it), so a frame's scores
    come at most ``(block_frames + lookahead_frames) * 0.32`` s after its audio. With the
    look-ahead equal to the margin, every frame has the margin of context on both sides, like
    the frames of :meth:`FrameScorer.score`'s blocks (scores within a few thousandths of them);
    with a shorter one, the last frames of each block see less context after them (as the end
    of a file does) and scores differ more (``benchmarks/listen.py`` measures the effect on
    events). Memory is bounded: samples are dropped once no block needs them.
    """

    def __init__(self, scorer: FrameScorer, block_frames: int, lookahead_frames: int) -> None:
        if scorer.options.method != "local":
            raise ValueError("streaming needs the local scoring method")
        if block_frames < 1 or lookahead_frames < 0:
            raise ValueError("block_frames must be >= 1 and lookahead_frames >= 0")
        self.scorer = scorer
        self.block_frames, self.lookahead_frames = block_frames, lookahead_frames
        self._buf = _SampleBuffer()
        self._next = 0
        scorer._mel_kept = (0, None)

    @property
    def samples_seen(self) -> int:
        """Samples pushed so far."""
        return self._buf.total

    def push(self, chunk: np.ndarray) -> ScoreBlock | None:
        """Add 32 kHz mono float32 samples; the frames now complete, or ``None``."""
        if len(chunk):
            self._buf.push(np.asarray(chunk, dtype=np.float32))
        return self._drain()

    def finish(self) -> ScoreBlock | None:
        """The stream ended: score what is left, as the end of a file."""
        self._buf.finished = True
        return self._drain()

    def _drain(self) -> ScoreBlock | None:
        scorer, start = self.scorer, self._next
        parts: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        scorer.net.set_se_context(scorer.options.se_context)
        try:
            with torch.inference_mode():
                while True:
                    block = scorer._next_local_block(
                        self._buf, self._next, self.block_frames, self.lookahead_frames
                    )
                    if block is None:
                        break
                    parts.append(block)
                    self._next += len(block[0])
        finally:
            scorer.net.set_se_context(None)
        if not parts:
            return None
        emb = [p[1] for p in parts if p[1] is not None]
        feats = [p[2] for p in parts if p[2] is not None]
        return ScoreBlock(
            start,
            np.concatenate([p[0] for p in parts]),
            np.concatenate(emb) if emb else None,
            np.concatenate(feats) if feats else None,
        )


def _stack(parts: list[np.ndarray], net: MobileNet) -> np.ndarray:
    if not parts:
        n_classes = cast(torch.nn.Linear, net.classifier[-1]).out_features
        return np.zeros((0, n_classes), dtype=np.float32)
    return np.concatenate(parts)


class _Rows:
    """A growing ``(rows, columns)`` array filled block by block, allocated once when the
    final size is known in advance (a concatenation at the end would need twice the memory)."""

    def __init__(self, columns: int, dtype: str, capacity: int) -> None:
        self.data = np.empty((max(capacity, 0), columns), dtype=dtype)
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.data):  # the estimate was short: grow by a quarter at least
            grown = np.empty(
                (max(need, len(self.data) * 5 // 4 + 64), self.data.shape[1]), dtype=self.data.dtype
            )
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : need] = rows
        self.n = need

    def result(self) -> np.ndarray:
        """The rows filled so far: a view, or a copy when most of the buffer went unused."""
        filled = self.data[: self.n]
        return filled.copy() if self.n < len(self.data) // 2 else filled
