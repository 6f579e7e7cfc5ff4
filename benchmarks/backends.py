"""Inference back ends for the same network on this CPU: speed and what they change in the scores.

The work measured is what ``detect`` runs per block of the local method: the feature map and
the framewise head (``MobileNet.feature_map`` + ``frame_logits``, SE gates over 15 frames,
head pooling over 5) on log-mel blocks of 144 output frames (96 kept + 2 x 24 margins) of real
audio (the first ``--minutes`` of the 60-minute benchmark MP3). Back ends:

* ``eager``: PyTorch as ``detect`` runs it (BatchNorm folded), 1 thread;
* ``eager-channels-last``: the same in channels-last memory format;
* ``eager-2-threads``: the same with 2 torch threads (``detect`` gives the network 1 and the
  decoder the other core);
* ``torch-compile``: ``torch.compile`` (inductor; needs a C++ compiler; its compile time is
  reported);
* ``torchscript-frozen``: ``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference``;
* ``onnxruntime``: ONNX Runtime (``onnxruntime`` package), FP32, all graph optimisations,
  1 intra-op thread (and ``onnxruntime-2-threads``);
* ``onnxruntime-int8-dynamic``: weights quantised to INT8, activations at run time;
* ``onnxruntime-int8-static``: QDQ INT8, activations calibrated on blocks of *other* audio
  (the 3-minute stretch after the measured one).

Reported per back end: seconds per block, x real time of the network alone, and the change in
the framewise probabilities against ``eager`` (max and mean absolute difference over all 527
classes and frames, and the share of frames whose top class changes). Writes
``results/backends.json``.

    python -m benchmarks.backends [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.common import long_recording, save_result
from earmark.audio import load
from earmark.constants import FRAME_HOP
from earmark.scoring import DEFAULT_BLOCK_FRAMES, DEFAULT_MARGIN_FRAMES, DEFAULT_POOL
from earmark.tagger import load_model

FRAMES = DEFAULT_BLOCK_FRAMES + 2 * DEFAULT_MARGIN_FRAMES
MEL_FRAMES = FRAMES * 32
SE_CONTEXT = 15


class Block(nn.Module):
    """Feature map and framewise head of one block: ``mel -> (logits, features)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.feature_map(mel)
        logits, _ = self.net.frame_logits(fmap, DEFAULT_POOL)
        return logits, fmap.mean(dim=2)


def mel_blocks(tagger, audio: np.ndarray) -> list[torch.Tensor]:
    """Log-mel blocks of ``MEL_FRAMES`` frames, one every 96 output frames."""
    with torch.inference_mode():
        mel = tagger.front_end(torch.from_numpy(audio)[None])
    step = DEFAULT_BLOCK_FRAMES * 32
    return [
        mel[..., s : s + MEL_FRAMES].contiguous()
        for s in range(0, mel.shape[-1] - MEL_FRAMES + 1, step)
    ]


def timed(run, blocks: list[torch.Tensor]) -> tuple[float, np.ndarray]:
    """Seconds per block (after one warm-up block) and the probabilities of every block."""
    run(blocks[0])
    out = []
    started = time.perf_counter()
    for mel in blocks:
        out.append(run(mel))
    per_block = (time.perf_counter() - started) / len(blocks)
    return per_block, 1.0 / (1.0 + np.exp(-np.concatenate(out)))


def onnx_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda mel: session.run(None, {name: mel.numpy()})[0][0]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tagger = load_model(threads=1)
    net = tagger.net.eval()
    net.set_se_context(SE_CONTEXT)
    module = Block(net).eval()
    audio = load(long_recording(3600, "mp3"))
    n = int(args.minutes * 60 * 32000)
    blocks = mel_blocks(tagger, audio[:n])
    calibration = mel_blocks(tagger, audio[n : n + 3 * 60 * 32000])[:8]
    seconds_per_block = DEFAULT_BLOCK_FRAMES * FRAME_HOP
    result: dict = {
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "blocks": len(blocks),
        "block_input": list(blocks[0].shape),
        "torch": torch.__version__,
        "threads": 1,
        "backends": {},
    }

    def eager(mel: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(mel)[0][0].numpy()

    runs = {"eager": eager}
    cl = Block(net).eval().to(memory_format=torch.channels_last)

    def channels_last(mel: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return cl(mel.to(memory_format=torch.channels_last))[0][0].numpy()

    runs["eager-channels-last"] = channels_last
    with torch.inference_mode():
        traced = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.trace(module, blocks[0]))
        )
    runs["torchscript-frozen"] = lambda mel: traced(mel)[0][0].numpy()

    def two_threads(run):
        def wrapped(mel: torch.Tensor) -> np.ndarray:
            torch.set_num_threads(2)
            try:
                return run(mel)
            finally:
                torch.set_num_threads(1)

        return wrapped

    runs["eager-2-threads"] = two_threads(eager)
    try:
        started = time.perf_counter()
        compiled = torch.compile(module, dynamic=False)
        with torch.inference_mode():
            compiled(blocks[0])
        result["torch_compile_seconds"] = round(time.perf_counter() - started, 1)

        def compiled_run(mel: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return compiled(mel)[0][0].numpy()

        runs["torch-compile"] = compiled_run
    except Exception as exc:  # no compiler, or inductor unsupported here
        result["torch_compile"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            import onnxruntime as ort
            from onnxruntime.quantization import (
                CalibrationDataReader,
                QuantFormat,
                QuantType,
                quantize_dynamic,
                quantize_static,
            )
            from onnxruntime.quantization.shape_inference import quant_pre_process

            fp32 = tmp / "block.onnx"
            torch.onnx.export(
                module, (blocks[0],), str(fp32), input_names=["mel"], dynamo=False, opset_version=17
            )
            result["onnxruntime"] = ort.__version__
            runs["onnxruntime"] = onnx_session(fp32)
            runs["onnxruntime-2-threads"] = onnx_session(fp32, threads=2)
            prepared = tmp / "block-prep.onnx"
            quant_pre_process(str(fp32), str(prepared))
            dynamic = tmp / "block-int8-dynamic.onnx"
            quantize_dynamic(str(prepared), str(dynamic), weight_type=QuantType.QInt8)
            runs["onnxruntime-int8-dynamic"] = onnx_session(dynamic)

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.items = iter(calibration)

                def get_next(self) -> dict | None:
                    mel = next(self.items, None)
                    return None if mel is None else {"mel": mel.numpy()}

            static = tmp / "block-int8-static.onnx"
            quantize_static(
                str(prepared),
                str(static),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            runs["onnxruntime-int8-static"] = onnx_session(static)
        except ImportError as exc:
            result["onnxruntime"] = f"not installed ({exc}); pip install onnxruntime onnx"

        reference = None
        for name, run in runs.items():
            per_block, probs = timed(run, blocks)
            if reference is None:
                reference = probs
            diff = np.abs(probs - reference)
            top_changed = np.mean(probs.argmax(-1) != reference.argmax(-1))
            result["backends"][name] = {
                "seconds_per_block": round(per_block, 4),
                "x_realtime_network": round(seconds_per_block / per_block, 1),
                "speedup_vs_eager": None,
                "max_abs_diff": float(f"{diff.max():.3g}"),
                "mean_abs_diff": float(f"{diff.mean():.3g}"),
                "top_class_changed": round(float(top_changed), 4),
            }
            print(name, result["backends"][name], flush=True)
    base = result["backends"]["eager"]["seconds_per_block"]
    for row in result["backends"].values():
        row["speedup_vs_eager"] = round(base / row["seconds_per_block"], 2)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    save_result("backends", result)
    return result


if __name__ == "__main__":
    main()
