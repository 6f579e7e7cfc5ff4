"""How a live source is listened to: :class:`LiveOptions` (torch-free, for the command line)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from earmark.constants import LIVE_BLOCK_FRAMES, LIVE_LOOKAHEAD_FRAMES
from earmark.listen.tracker import MAX_WINDOW_SECONDS


@dataclass
class LiveOptions:
    """How a live source is listened to (``earmark listen`` options), beside ``detect``'s.

    * ``block_frames``: frames scored at a time (0.32 s each): how often scores arrive.
    * ``lookahead_frames``: context computed after each block. Scores of a whole-file pass
      need 24 (7.7 s); fewer make events come sooner and their scores differ more from
      ``detect``'s (``benchmarks/listen.py`` measures both).
    * ``level_gate_db``: events whose loudest 0.32 s frame is quieter than this (dBFS) are
      dropped, like a volume gate; ``None``: no gate.
    * ``started``: also emit a notice when an event begins.
    * ``max_event``: seconds; a longer event is ended there (and goes on as a new one).
    """

    block_frames: int = LIVE_BLOCK_FRAMES
    lookahead_frames: int = LIVE_LOOKAHEAD_FRAMES
    level_gate_db: float | None = None
    started: bool = False
    max_event: float = MAX_WINDOW_SECONDS

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if not 1 <= self.block_frames <= 96:
            raise ValueError(f"block_frames must be 1-96, not {self.block_frames}")
        if not 0 <= self.lookahead_frames <= 48:
            raise ValueError(f"lookahead_frames must be 0-48, not {self.lookahead_frames}")
        gate = self.level_gate_db
        if gate is not None and not (math.isfinite(gate) and -120.0 <= gate <= 0.0):
            raise ValueError(f"level gate must be -120..0 dBFS, not {gate}")
        if not self.max_event >= 10.0:
            raise ValueError(f"max_event must be at least 10 s, not {self.max_event}")
