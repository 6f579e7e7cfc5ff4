"""One loaded model ready to score audio: network, front end, class labels and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from earmark import assets
from earmark.backends import block_runner, resolve_backend
from earmark.features import LogMel
from earmark.labels import Label, Ontology, load_labels
from earmark.model import MobileNet, build_model, count_parameters, fuse_batchnorm
from earmark.scoring import FrameScorer, FrameScores, ProgressCallback, ScoringOptions


@dataclass
class Tagger:
    """A pretrained audio tagger and everything needed to explain its output."""

    spec: assets.ModelSpec
    checkpoint: assets.ResolvedAsset
    net: MobileNet
    front_end: LogMel
    labels: list[Label]
    labels_file: assets.ResolvedAsset
    ontology_path: Path | None = None
    extra: dict = field(default_factory=dict)
    _runners: dict = field(default_factory=dict, repr=False)
    """Block runners by (back end, SE context, pool, threads) (:mod:`earmark.backends`)."""

    @cached_property
    def ontology(self) -> Ontology:
        """The AudioSet ontology (resolved on first use)."""
        path = self.ontology_path or assets.resolve(assets.get_asset("ontology")).path
        return Ontology.from_json(path)

    @cached_property
    def checkpoint_sha256(self) -> str:
        """sha256 of the checkpoint file actually loaded."""
        return assets.sha256_file(self.checkpoint.path)

    def scorer(self, options: ScoringOptions | None = None) -> FrameScorer:
        """A framewise scorer using this model (and the back end the options ask for)."""
        options = options or ScoringOptions()
        options.validate()
        if options.method != "local":  # the window method runs the clip-level network
            return FrameScorer(self.net, self.front_end, options)
        key = (options.backend, options.se_context, options.pool, torch.get_num_threads())
        if key not in self._runners:
            self._runners[key] = block_runner(
                self.net, self.checkpoint_sha256, options.se_context, options.pool, options.backend
            )
        runner, _name = self._runners[key]
        return FrameScorer(self.net, self.front_end, options, runner)

    def backend(self, options: ScoringOptions | None = None) -> str:
        """The back end that runs the network for these options (``auto`` resolved)."""
        options = options or ScoringOptions()
        return "torch" if options.method != "local" else resolve_backend(options.backend)

    def frame_scores(
        self,
        audio: np.ndarray,
        options: ScoringOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> FrameScores:
        """Framewise probabilities ``(frames, 527)`` of a 32 kHz mono float32 signal."""
        return self.scorer(options).score(audio, progress)

    @torch.inference_mode()
    def clip_scores(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Official clip-level ``(probabilities (527,), embedding)`` of a whole 32 kHz clip."""
        mel = self.front_end(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        logits, embedding = self.net(mel)
        return torch.sigmoid(logits[0]).numpy(), embedding[0].numpy()

    def describe(self) -> dict:
        """Provenance for manifests and reports."""
        return {
            "name": self.spec.name,
            "family": self.spec.family,
            "width": self.spec.width,
            "published_map": self.spec.published_map,
            "params": self.extra.get("params"),
            "checkpoint": str(self.checkpoint.path),
            "checkpoint_source": self.checkpoint.source,
            "checkpoint_url": self.checkpoint.asset.url,
            "checkpoint_sha256": self.checkpoint_sha256,
            "labels_file": str(self.labels_file.path),
            "n_classes": len(self.labels),
        }


def load_model(
    name: str = assets.DEFAULT_MODEL,
    checkpoint: str | Path | None = None,
    labels: str | Path | None = None,
    threads: int | None = None,
    download: bool = True,
) -> Tagger:
    """Load a pretrained EfficientAT model by registry name, or from an explicit checkpoint path.

    Assets are resolved from the explicit path, then ``$EARMARK_MODEL_DIR``, then the user
    cache, then downloaded with sha256 verification (see :mod:`earmark.assets`).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if checkpoint is not None:
        spec, resolved = assets.resolve_model(str(checkpoint), download=False)
    else:
        spec, resolved = assets.resolve_model(name, download=download)
    state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{resolved.path}: not a state_dict checkpoint")
    state = state.get("state_dict", state)  # plain state_dict, or a training checkpoint
    net = build_model(spec.width, state)
    n_params = count_parameters(net)
    fuse_batchnorm(net)
    labels_asset = assets.resolve(assets.get_asset("labels"), path=labels, download=download)
    label_list = load_labels(labels_asset.path)
    if len(label_list) != net.classifier[-1].out_features:
        raise ValueError(
            f"{labels_asset.path}: {len(label_list)} labels, but the model has "
            f"{net.classifier[-1].out_features} outputs"
        )
    ontology = assets.locate(assets.get_asset("ontology"))
    return Tagger(
        spec=spec,
        checkpoint=resolved,
        net=net,
        front_end=LogMel().eval(),
        labels=label_list,
        labels_file=labels_asset,
        ontology_path=ontology.path if ontology else None,
        extra={"params": n_params},
    )
