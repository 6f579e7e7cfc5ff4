"""Torch-free constants of the detection path: sample rate, frame hop, default model, back ends.

Every module that needs one of these imports it from here (the API image, which has no torch,
too); :mod:`earmark.scoring` checks that the network's own frame hop equals :data:`FRAME_HOP`.
"""

from __future__ import annotations

SAMPLE_RATE = 32000
"""Sample rate of every waveform handed to the model (Hz)."""
FRAME_HOP = 0.32
"""Seconds between the network's output frames: framewise scores, features and embeddings."""
DEFAULT_MODEL = "mn04_as"
"""The model ``detect`` uses unless told otherwise."""
BACKENDS = ("auto", "torch", "onnxruntime")
"""Who may run the network (:mod:`earmark.backends`); ``auto`` is the default."""
LIVE_BLOCK_FRAMES = 2
"""Output frames per block when scoring a live stream (0.64 s): how often scores come."""
LIVE_LOOKAHEAD_FRAMES = 12
"""Context computed after each block of a live stream (3.84 s): latency against exactness. On
the SED benchmark's test soundscapes, live events then reproduce 96 % of ``detect``'s (0.96 s:
64 %; 7.68 s, the margin: 99 %), ``benchmarks/listen.py``."""
