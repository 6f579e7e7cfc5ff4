"""Strongly labelled training mixtures: the user's clips over the user's backgrounds, seeded.

A clip classifier learns what a sound is; a detector must also learn where it is, under other
sounds. This module turns isolated, weakly labelled clips into recordings with exact onsets and
offsets, the way the published few-shot SED systems build their training sets:

* every mixture is a stretch of one background recording with 0-``max_events`` clips added at
  random times (overlaps allowed, same-class events apart), each at an SNR drawn from
  ``snr_db`` (measured over the clip's active frames, :mod:`earmark.evaluation.soundscape`),
  then the whole mixture at a random gain;
* the target of a clip is its active part (first to last frame within 40 dB of its loudest),
  as the soundscape builder labels it;
* clips of *other* sounds (the user's ``--others``) are added the same way as distractors with
  no target, and some mixtures hold background only: both teach the detector to stay quiet.

Folds stay clip-disjoint: every mixture draws its clips from one *group* (the clips one
cross-validation split holds out), and its background from that group's share of the
backgrounds (whole recordings when there are at least as many recordings as groups, otherwise
one contiguous part of every recording). So the mixtures of a held-out group share no clip and
no background audio with the mixtures a split trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earmark.audio import SAMPLE_RATE
from earmark.evaluation.soundscape import ForegroundClip, make_soundscape

MIXTURE_SECONDS = 20.0
"""Length of one training mixture (62 frames of 0.32 s: room for several events and context)."""
DEFAULT_MIXTURES = 480
"""Mixtures built for a training run (all groups together)."""
DEFAULT_SNR_DB = (-5.0, 20.0)
DEFAULT_EVENTS = (0, 5)
"""Inclusive range of the number of events (target and distractor) per mixture."""
DEFAULT_GAIN_DB = (-24.0, 0.0)
"""Random gain of the whole mixture: levels vary as much as recordings do."""
OTHER_LABEL = "\x00other"
"""Label of distractor clips inside the builder; never a target, never written out."""
MIN_GAP = 0.3
"""Seconds between two events of the same class (so each target is a distinct sound)."""


@dataclass(frozen=True)
class MixtureConfig:
    """How many mixtures, how long, how loud and how busy (``earmark train`` options)."""

    n_mixtures: int = DEFAULT_MIXTURES
    seconds: float = MIXTURE_SECONDS
    snr_db: tuple[float, float] = DEFAULT_SNR_DB
    events: tuple[int, int] = DEFAULT_EVENTS
    gain_db: tuple[float, float] = DEFAULT_GAIN_DB
    background_split: str = "time"
    """How the groups' backgrounds are kept apart: ``time`` (disjoint parts of every
    recording: every split sees every kind of background) or ``recordings``."""
    speeds: tuple[float, ...] = ()
    """Extra copies of every target clip played this much faster or slower (pitch and length
    change together, e.g. ``(0.9, 1.1)``), drawn as often as the clip itself."""
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.n_mixtures < 10:
            raise ValueError(f"at least 10 training mixtures are needed, not {self.n_mixtures}")
        if not 5.0 <= self.seconds <= 120.0:
            raise ValueError(f"mixture length must be 5-120 s, not {self.seconds}")
        lo, hi = self.snr_db
        if not -30.0 <= lo <= hi <= 60.0:
            raise ValueError(f"SNR range must be low:high within -30..60 dB, not {lo}:{hi}")
        if any(not 0.5 <= v <= 2.0 for v in self.speeds):
            raise ValueError(f"clip speeds must be within 0.5..2.0, not {list(self.speeds)}")
        if not 0 <= self.events[0] <= self.events[1] <= 20 or self.events[1] < 1:
            raise ValueError(f"events per mixture must be low:high within 0..20, not {self.events}")


@dataclass
class LabelledEvent:
    """One target event of a training recording (seconds)."""

    onset: float
    offset: float
    label: str


@dataclass
class TrainingRecording:
    """A strongly labelled recording for the frame-level head: a mixture or a user's recording."""

    name: str
    group: int
    """The cross-validation group (split) whose held-out clips it holds."""
    audio: np.ndarray
    """32 kHz mono float32 (dropped once the features are computed)."""
    events: list[LabelledEvent]
    background: str = ""
    kind: str = "mixture"
    """``mixture`` (built here) or ``labelled`` (a user's strongly labelled recording)."""
    meta: dict = field(default_factory=dict)


def group_backgrounds(
    backgrounds: Sequence[tuple[str, np.ndarray]], n_groups: int, split: str = "time"
) -> tuple[list[list[tuple[str, np.ndarray]]], str]:
    """The background audio each group may use, and how they were kept apart.

    ``split="recordings"`` (with at least ``n_groups`` recordings) gives every group whole
    recordings of its own (round robin in the given order); ``"time"`` cuts every recording
    into ``n_groups`` contiguous parts and gives group ``g`` part ``g`` of each.
    """
    if not backgrounds:
        raise ValueError("no background audio to mix the clips over")
    if split not in ("time", "recordings"):
        raise ValueError(f"background split must be 'time' or 'recordings', not {split!r}")
    if split == "recordings" and len(backgrounds) >= n_groups:
        shares: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(n_groups)]
        for i, item in enumerate(backgrounds):
            shares[i % n_groups].append(item)
        return shares, "recordings"
    shares = [[] for _ in range(n_groups)]
    for name, audio in backgrounds:
        bounds = np.linspace(0, len(audio), n_groups + 1).astype(int)
        for g in range(n_groups):
            shares[g].append((f"{name}[part {g + 1}/{n_groups}]", audio[bounds[g] : bounds[g + 1]]))
    return shares, "time parts"


def build_mixtures(
    clips: Sequence[tuple[Path, str, int]],
    backgrounds: Sequence[tuple[str, np.ndarray]],
    n_groups: int,
    config: MixtureConfig,
    others: Sequence[Path] = (),
    clip_audio: dict[Path, np.ndarray] | None = None,
) -> tuple[list[TrainingRecording], dict]:
    """Seeded training mixtures, ``config.n_mixtures`` split evenly over the groups.

    Args:
        clips: ``(path, label, group)`` of every target clip.
        backgrounds: ``(name, 32 kHz audio)`` of every background recording.
        n_groups: number of cross-validation groups.
        config: see :class:`MixtureConfig`.
        others: recordings of other sounds, added as distractors (assigned to groups round
            robin when there are enough of them, else shared by all groups).
        clip_audio: decoded clips by path (filled as clips are decoded).

    Returns:
        The mixtures, and a description for ``metrics.json`` (how groups were kept apart).
        The result depends only on the inputs and ``config.seed``.
    """
    config.validate()
    shares, bg_split = group_backgrounds(backgrounds, n_groups, config.background_split)
    other_shares: list[list[Path]] = [[] for _ in range(n_groups)]
    others = list(others)
    others_split = "none"
    if others:
        if len(others) >= n_groups:
            for i, path in enumerate(others):
                other_shares[i % n_groups].append(path)
            others_split = "recordings"
        else:
            other_shares = [list(others) for _ in range(n_groups)]
            others_split = "shared by all groups"
    cache = {} if clip_audio is None else clip_audio
    out: list[TrainingRecording] = []
    per_group = [
        config.n_mixtures // n_groups + (g < config.n_mixtures % n_groups) for g in range(n_groups)
    ]
    for g in range(n_groups):
        fg = [ForegroundClip(Path(p), label) for p, label, grp in clips if grp == g]
        if not fg:
            raise ValueError(f"cross-validation group {g + 1} holds no clip")
        fg += [_at_speed(c, v, cache) for c in fg for v in config.speeds]
        distractors = [ForegroundClip(Path(p), OTHER_LABEL) for p in other_shares[g]]
        for k in range(per_group[g]):
            rng = np.random.default_rng([config.seed, g, k])
            bg_name, bg = shares[g][int(rng.integers(len(shares[g])))]
            # the builder draws a label uniformly, then a clip: with distractors, about one
            # event in (classes + 1) is another sound
            pool = fg + distractors
            audio, events = make_soundscape(
                bg,
                pool,
                config.seconds,
                config.events,
                config.snr_db,
                rng,
                SAMPLE_RATE,
                allow_overlap=True,
                min_gap=MIN_GAP,
                clip_audio=cache,
            )
            gain = 10.0 ** (rng.uniform(*config.gain_db) / 20.0)
            audio = (audio * gain).astype(np.float32)
            targets = [
                LabelledEvent(e.onset, e.offset, e.label) for e in events if e.label != OTHER_LABEL
            ]
            out.append(
                TrainingRecording(
                    name=f"mix-g{g + 1}-{k:04d}",
                    group=g,
                    audio=audio,
                    events=targets,
                    background=bg_name,
                    meta={
                        "distractors": sum(e.label == OTHER_LABEL for e in events),
                        "sources": [e.source for e in events],
                    },
                )
            )
    description = {
        "mixtures": len(out),
        "seconds_each": config.seconds,
        "snr_db": list(config.snr_db),
        "events_per_mixture": list(config.events),
        "gain_db": list(config.gain_db),
        "clip_speeds": list(config.speeds),
        "backgrounds_kept_apart_by": bg_split,
        "others_kept_apart_by": others_split,
        "target_events": sum(len(m.events) for m in out),
        "distractor_events": sum(m.meta["distractors"] for m in out),
        "seed": config.seed,
    }
    return out, description


def _at_speed(clip: ForegroundClip, speed: float, cache: dict[Path, np.ndarray]) -> ForegroundClip:
    """The clip played ``speed`` times faster (resampled), kept in ``cache`` under a name of
    its own so the soundscape builder draws it like any clip."""
    import soxr

    from earmark.audio import load

    key = Path(f"{clip.path}@speed{speed:g}")
    if key not in cache:
        if clip.path not in cache:
            cache[clip.path] = np.asarray(load(clip.path, SAMPLE_RATE), dtype=np.float64)
        rate = round(SAMPLE_RATE / speed)
        cache[key] = soxr.resample(cache[clip.path], SAMPLE_RATE, rate).astype(np.float64)
    return ForegroundClip(key, clip.label)


def frame_targets(
    events: Sequence[LabelledEvent], n_frames: int, hop: float, classes: Sequence[str]
) -> np.ndarray:
    """``(n_frames, classes)`` targets: the share of each frame ``[i*hop, (i+1)*hop)`` that an
    event of the class covers (overlapping events of one class count once)."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((n_frames, len(classes)), dtype=np.float32)
    starts = np.arange(n_frames) * hop
    for ev in events:
        c = index[ev.label]
        cover = np.clip(np.minimum(starts + hop, ev.offset) - np.maximum(starts, ev.onset), 0, hop)
        out[:, c] = np.maximum(out[:, c], cover / hop)
    return out
