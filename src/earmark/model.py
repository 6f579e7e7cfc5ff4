"""The EfficientAT MobileNetV3 family (mn01 ... mn40), written from the measured facts in the notes.

The network is MobileNetV3-Large with channel counts scaled by a width multiplier and rounded by
:func:`make_divisible`, squeeze-excitation with a *sigmoid* gate, BatchNorm eps 1e-3, and a
two-layer MLP head (``Linear -> Hardswish -> Dropout -> Linear``) producing 527 AudioSet logits.
State-dict keys match the official checkpoints, so they load strictly.

Two things are added for sound event detection on long recordings:

* ``se_context``: the squeeze-excitation gates of the official model average over the *whole*
  input, so one pass over a long file mixes context from everywhere. With ``se_context=n`` every
  gate averages over a centred window of ``n`` output frames of 0.32 s instead (counted at the
  final time resolution and scaled to each layer's own resolution), which makes each output frame
  depend on bounded local context only. ``None`` keeps the official global gate.
* :meth:`MobileNet.frame_logits`: the head applied per 0.32 s frame to features averaged over a
  centred window, which is how the clip-level head (trained on time-averaged features) stays
  calibrated when used framewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 527
BN_EPS = 1e-3
TIME_STRIDE = 32
"""Downsampling in time from log-mel frames (10 ms) to output frames (0.32 s)."""

# MobileNetV3-Large settings at width 1.0:
# (kernel, expanded, out, squeeze-excitation, activation, stride)
BASE_BLOCKS: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
)
BASE_STEM = 16
BASE_HEAD_HIDDEN = 1280
LAST_CONV_FACTOR = 6
HEAD_DROPOUT = 0.2


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never going below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


class ConvBNAct(nn.Sequential):
    """Bias-free conv, BatchNorm (eps 1e-3), optional activation (keys ``0`` conv, ``1`` bn)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS),
        ]
        if activation is not None:
            layers.append(_activation(activation))
        super().__init__(*layers)


class _SqueezeExcitationFC(nn.Module):
    """The two linear layers of a gate (checkpoint keys ``fc1`` / ``fc2``)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)


class SqueezeExcitation(nn.Module):
    """Channel gate: mean over frequency and time -> Linear -> ReLU -> Linear -> sigmoid -> scale.

    ``context`` (set by :meth:`MobileNet.set_se_context`) is the width in time steps *of this
    layer* of a centred moving mean that replaces the global time mean; ``None`` is global.
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        # the official checkpoints nest the gate as ``conc_se_layers.0``
        self.conc_se_layers = nn.ModuleList([_SqueezeExcitationFC(channels, squeeze)])
        self.context: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc = cast(_SqueezeExcitationFC, self.conc_se_layers[0])
        if self.context is None or self.context >= x.shape[-1] * 2:
            pooled = x.mean(dim=(2, 3))
            gate = torch.sigmoid(fc.fc2(F.relu(fc.fc1(pooled))))
            return x * gate[:, :, None, None]
        pooled = moving_mean(x.mean(dim=2), self.context)  # (B, C, T)
        hidden = F.relu(torch.einsum("bct,sc->bst", pooled, fc.fc1.weight) + fc.fc1.bias[:, None])
        gate = torch.sigmoid(
            torch.einsum("bst,cs->bct", hidden, fc.fc2.weight) + fc.fc2.bias[:, None]
        )
        return x * gate[:, :, None, :]


def moving_mean(x: torch.Tensor, width: int) -> torch.Tensor:
    """Centred moving mean along the last axis of ``(B, C, T)``; edges average what exists."""
    if width <= 1:
        return x
    width = width if width % 2 == 1 else width + 1
    return F.avg_pool1d(x, width, stride=1, padding=width // 2, count_include_pad=False)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k, stride) -> [squeeze-excitation] -> project (1x1)."""

    def __init__(
        self,
        c_in: int,
        kernel: int,
        expanded: int,
        c_out: int,
        use_se: bool,
        activation: str,
        stride: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(ConvBNAct(c_in, expanded, 1, activation=activation))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, expanded, activation))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, c_out, 1))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


@dataclass(frozen=True)
class Architecture:
    """Channel plan of one width of the family."""

    width: float
    stem: int
    blocks: tuple[tuple[int, int, int, int, bool, str, int], ...]
    last_conv: int
    head_hidden: int

    @classmethod
    def for_width(cls, width: float) -> Architecture:
        """The MobileNetV3-Large plan scaled by ``width`` (0.1 ... 4.0)."""
        stem = make_divisible(BASE_STEM * width)
        blocks = []
        c_in = stem
        for kernel, expanded, out, use_se, act, stride in BASE_BLOCKS:
            c_exp, c_out = make_divisible(expanded * width), make_divisible(out * width)
            blocks.append((c_in, kernel, c_exp, c_out, use_se, act, stride))
            c_in = c_out
        return cls(
            width=width,
            stem=stem,
            blocks=tuple(blocks),
            last_conv=LAST_CONV_FACTOR * c_in,
            head_hidden=make_divisible(BASE_HEAD_HIDDEN * width),
        )


class MobileNet(nn.Module):
    """EfficientAT MobileNetV3 audio tagger: log-mel ``(B, 1, 128, T)`` -> 527 logits."""

    def __init__(self, width: float = 0.4, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        arch = Architecture.for_width(width)
        self.architecture = arch
        layers: list[nn.Module] = [ConvBNAct(1, arch.stem, 3, 2, activation="hardswish")]
        layers += [InvertedResidual(*spec) for spec in arch.blocks]
        layers.append(ConvBNAct(arch.blocks[-1][3], arch.last_conv, 1, activation="hardswish"))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(arch.last_conv, arch.head_hidden),
            nn.Hardswish(inplace=True),
            nn.Dropout(HEAD_DROPOUT),
            nn.Linear(arch.head_hidden, n_classes),
        )
        self.se_context: int | None = None

    @property
    def embedding_dim(self) -> int:
        """Size of the clip embedding (pooled output of the last conv)."""
        return self.architecture.last_conv

    def set_se_context(self, frames: int | None) -> None:
        """Make every squeeze-excitation gate average over ``frames`` output frames (or globally).

        The window is converted to each layer's own time resolution, so every gate sees the same
        span of audio (``frames * 0.32`` s).
        """
        self.se_context = frames
        stride = 2  # after the stem
        for layer in self.features:
            if isinstance(layer, InvertedResidual):
                stride *= layer.stride
                for sub in layer.block:
                    if isinstance(sub, SqueezeExcitation):
                        sub.context = None if frames is None else frames * TIME_STRIDE // stride

    def feature_map(self, mel: torch.Tensor) -> torch.Tensor:
        """Output of the last conv: ``(B, C, 4, ceil(T / 32))``."""
        return self.features(mel)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip-level ``(logits, embedding)`` for a batch of log-mel inputs."""
        fmap = self.features(mel)
        embedding = fmap.mean(dim=(2, 3))
        return self.classifier[2:](embedding), embedding

    def frame_logits(
        self, fmap: torch.Tensor, pool_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame ``(logits (B, T, 527), embeddings (B, T, C))`` from a feature map.

        Features are averaged over frequency and a centred window of ``pool_frames`` frames
        before the head.
        """
        pooled = moving_mean(fmap.mean(dim=2), pool_frames).transpose(1, 2)
        return self.classifier[2:](pooled), pooled


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it, in place.

    For inference only: each conv gets ``w * g / sqrt(v + eps)`` and a bias
    ``b - m * g / sqrt(v + eps)``, and the BatchNorm becomes an identity. Outputs are unchanged
    up to float rounding (about 1e-6), one intermediate tensor per layer is never allocated, and
    the network runs faster. The fused model no longer loads official checkpoints.
    """
    for module in model.modules():
        if isinstance(module, ConvBNAct) and isinstance(module[1], nn.BatchNorm2d):
            conv, bn = cast(nn.Conv2d, module[0]), cast(nn.BatchNorm2d, module[1])
            # ConvBNAct's BatchNorm tracks running statistics
            assert bn.running_var is not None and bn.running_mean is not None
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                cast("tuple[int, int]", conv.kernel_size),
                cast("tuple[int, int]", conv.stride),
                cast("str | tuple[int, int]", conv.padding),
                groups=conv.groups,
                bias=True,
            )
            assert fused.bias is not None  # built with bias=True
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            module[0] = fused
            module[1] = nn.Identity()
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


def build_model(width: float, state_dict: dict[str, torch.Tensor] | None = None) -> MobileNet:
    """A model of the given width in eval mode, with ``state_dict`` loaded strictly if given."""
    model = MobileNet(width)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def infer_width(state_dict: dict[str, torch.Tensor], widths: Sequence[float]) -> float:
    """The width among ``widths`` whose architecture matches the checkpoint's tensor shapes."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for width in widths:
        expected = {k: tuple(v.shape) for k, v in MobileNet(width).state_dict().items()}
        if expected == shapes:
            return width
    raise ValueError("checkpoint does not match any known EfficientAT MobileNet width")
