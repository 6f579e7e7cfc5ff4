"""Inference back ends of the network's framewise pass: PyTorch, or ONNX Runtime on the same graph.

The local scoring method (:mod:`earmark.scoring`) runs one computation per block of log-mel
frames: the feature map, the framewise head (features averaged over frequency and ``pool``
frames) and the features averaged over frequency only. Two back ends run it:

``torch``        the loaded :class:`~earmark.model.MobileNet` itself (eager PyTorch);
``onnxruntime``  that same network exported to ONNX (time axis dynamic) and run by ONNX Runtime:
                 1.6-1.8x faster on this CPU, probabilities within 4e-6 of ``torch``
                 (``benchmarks/backends.py``; the stored float16 scores step by 2.4e-4);
``auto``         ``onnxruntime`` when the ``onnxruntime`` and ``onnx`` packages import, else
                 ``torch`` (the default).

The export depends on the checkpoint, the SE context and the pooling window; it takes about a
second, so it is kept in the user cache (``<cache>/onnx``, with the sha256 of its bytes beside
it) and reused by later runs. A cache that cannot be written only costs that second per run.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from earmark.constants import BACKENDS
from earmark.model import MobileNet

DEFAULT_BACKEND = "auto"
ONNX_OPSET = 17

logger = logging.getLogger(__name__)


class BlockOutputs(NamedTuple):
    """One block's framewise outputs."""

    logits: torch.Tensor
    """``(1, frames, classes)``."""
    embeddings: torch.Tensor
    """``(1, frames, channels)``: features averaged over frequency and the pooling window."""
    features: torch.Tensor | None
    """``(1, channels, frames)``: features averaged over frequency only (when asked for)."""


BlockRunner = Callable[[torch.Tensor, bool], BlockOutputs]
"""``runner(mel (1, 1, 128, T), with_features) -> BlockOutputs``."""


def torch_runner(net: MobileNet, pool: int) -> BlockRunner:
    """The block computation in eager PyTorch (the network's SE context must be set)."""

    def run(mel: torch.Tensor, with_features: bool) -> BlockOutputs:
        fmap = net.feature_map(mel)
        logits, emb = net.frame_logits(fmap, pool)
        return BlockOutputs(logits, emb, fmap.mean(dim=2) if with_features else None)

    return run


class _BlockGraph(nn.Module):
    """What the ONNX graph computes: ``mel -> (logits, embeddings, features)``."""

    def __init__(self, net: MobileNet, pool: int) -> None:
        super().__init__()
        self.net, self.pool = net, pool

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap = self.net.feature_map(mel)
        logits, emb = self.net.frame_logits(fmap, self.pool)
        return logits, emb, fmap.mean(dim=2)


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's package import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``torch`` or ``onnxruntime`` for a requested back end (``auto`` chooses)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown back end {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if onnx_available() else "torch"
    if backend == "onnxruntime" and not onnx_available():
        raise ValueError(
            "the onnxruntime back end needs the onnxruntime and onnx packages: "
            "pip install onnxruntime onnx (or use --backend torch)"
        )
    return backend


def export_onnx(net: MobileNet, se_context: int, pool: int) -> bytes:
    """The block graph of ``net`` as ONNX bytes (time axis dynamic)."""
    before = net.se_context
    net.set_se_context(se_context)
    try:
        graph = _BlockGraph(net, pool).eval()
        example = torch.zeros(1, 1, 128, 32 * 144)
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on the SE gates' shape test
            torch.onnx.export(
                graph,
                (example,),
                # torch annotates f as a path only; the TorchScript exporter (dynamo=False)
                # also writes to file-like objects
                buffer,  # type: ignore[arg-type]
                input_names=["mel"],
                output_names=["logits", "embeddings", "features"],
                dynamic_axes={
                    "mel": {3: "time"},
                    "logits": {1: "frames"},
                    "embeddings": {1: "frames"},
                    "features": {2: "frames"},
                },
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    finally:
        net.set_se_context(before)
    return buffer.getvalue()


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: beside the model cache (:func:`earmark.assets.cache_dir`)."""
    from earmark.assets import cache_dir

    return cache_dir().parent / "onnx"


def cached_onnx(net: MobileNet, checkpoint_sha256: str, se_context: int, pool: int) -> bytes:
    """The exported graph, from the cache when a verified copy is there, else exported (and
    cached when the cache can be written)."""
    key = f"{checkpoint_sha256[:16]}-se{se_context}-pool{pool}-torch{torch.__version__}"
    key = key.replace("+", "_")
    path = onnx_cache_dir() / f"{key}-opset{ONNX_OPSET}.onnx"
    stamp = path.with_name(path.name + ".sha256")
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == stamp.read_text().strip():
            return data
    except OSError:
        pass
    data = export_onnx(net, se_context, pool)
    try:
        from earmark.outputs import atomic_write_bytes, atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        atomic_write_text(stamp, hashlib.sha256(data).hexdigest() + "\n")
    except OSError as exc:
        logger.info("could not cache the ONNX graph in %s: %s", path.parent, exc)
    return data


def onnxruntime_runner(graph: bytes, threads: int | None = None) -> BlockRunner:
    """The block computation in ONNX Runtime (``threads``: intra-op threads, default torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle threads must not spin against the decoding thread (see pipeline.single_threaded_blas)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def run(mel: torch.Tensor, with_features: bool) -> BlockOutputs:
        logits, emb, feats = session.run(None, {"mel": np.ascontiguousarray(mel.numpy())})
        return BlockOutputs(
            torch.from_numpy(logits),
            torch.from_numpy(emb),
            torch.from_numpy(feats) if with_features else None,
        )

    return run


def block_runner(
    net: MobileNet, checkpoint_sha256: str, se_context: int, pool: int, backend: str
) -> tuple[BlockRunner, str]:
    """The runner of a back end and the back end's resolved name."""
    name = resolve_backend(backend)
    if name == "torch":
        return torch_runner(net, pool), name
    return onnxruntime_runner(cached_onnx(net, checkpoint_sha256, se_context, pool)), name
