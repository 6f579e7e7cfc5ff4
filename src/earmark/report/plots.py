"""Pictures of the report: spectrogram, event timeline and score curves on one time axis.

matplotlib with the Agg backend, returned as PNG bytes. Colours are the Okabe-Ito palette
(distinguishable with the common colour-vision deficiencies); confidence is drawn as opacity.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from earmark.events import Event

OKABE_ITO = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
    "#F0E442",  # yellow last: weakest contrast on white
)
MAX_LANES = 10
TOP_CURVES = 5
PAGE_SECONDS = 60.0
LONG_FILE_SECONDS = 120.0
MAX_PAGES = 8


def lane_labels(events: Sequence[Event], limit: int = MAX_LANES) -> list[str]:
    """Labels to draw, by total event time (longest first), at most ``limit``."""
    total: dict[str, float] = {}
    for e in events:
        total[e.label] = total.get(e.label, 0.0) + e.duration
    return [k for k, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


def colour_of(labels: Sequence[str]) -> dict[str, str]:
    """One Okabe-Ito colour per label (cycled)."""
    return {label: OKABE_ITO[i % len(OKABE_ITO)] for i, label in enumerate(labels)}


def pages(duration: float, events: Sequence[Event]) -> tuple[list[tuple[float, float]], int]:
    """Zoom pages of a long file: the :data:`MAX_PAGES` busiest minutes, and how many were cut."""
    n = int(np.ceil(duration / PAGE_SECONDS))
    spans = [(i * PAGE_SECONDS, min((i + 1) * PAGE_SECONDS, duration)) for i in range(n)]
    if n <= MAX_PAGES:
        return spans, 0
    busy = [sum(1 for e in events if e.onset < b and e.offset > a) for a, b in spans]
    chosen = sorted(np.argsort(busy, kind="stable")[::-1][:MAX_PAGES])
    return [spans[i] for i in chosen], n - MAX_PAGES


def file_figure(
    title: str,
    duration: float,
    mel_db: np.ndarray | None,
    mel_hop: float,
    events: Sequence[Event],
    scores: np.ndarray | None,
    hop: float,
    names: Sequence[str],
    threshold: float | None,
    span: tuple[float, float] | None = None,
    regions: Sequence[tuple[float, float, str]] = (),
    level: tuple[np.ndarray, float, float] | None = None,
) -> bytes:
    """Spectrogram, event lanes, top score curves and, with ``level`` (``(block RMS in dBFS,
    block seconds, noise floor dBFS)``), the level over time of one file (or of ``span`` of
    it), as PNG: one time axis for all panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, t1 = span if span is not None else (0.0, max(duration, 1e-3))
    lanes = lane_labels([e for e in events if e.offset > t0 and e.onset < t1]) or lane_labels(
        events
    )
    colours = colour_of(lanes)
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11})
    heights = [3.0, max(1.2, 0.32 * len(lanes) + 0.5), 2.2]
    with_level = level is not None and level[0].size > 0
    if with_level:
        heights.append(1.8)
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(13, sum(heights) + 0.9),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    ax_spec, ax_lane, ax_curve = axes[:3]
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")

    # spectrogram
    if mel_db is not None and mel_db.size:
        a, b = int(t0 / mel_hop), max(int(np.ceil(t1 / mel_hop)), int(t0 / mel_hop) + 1)
        part = mel_db[a:b].astype(np.float32).T
        vmax = float(np.percentile(mel_db, 99.5)) if mel_db.size else 0.0
        ax_spec.imshow(
            part,
            origin="lower",
            aspect="auto",
            extent=(a * mel_hop, a * mel_hop + part.shape[1] * mel_hop, 0, part.shape[0]),
            cmap="magma",
            vmin=vmax - 80,
            vmax=vmax,
            interpolation="nearest",
        )
        ticks = [0, 16, 32, 48, 63]
        from earmark.signal_stats import mel_band_edges

        centres = mel_band_edges()
        ax_spec.set_yticks(ticks, [f"{centres[i] / 1000:.1f}" for i in ticks])
        ax_spec.set_ylabel("frequency (kHz)")
    else:
        ax_spec.text(
            0.5, 0.5, "no spectrogram in this run", ha="center", transform=ax_spec.transAxes
        )
    for start, end, colour in regions:
        if end > t0 and start < t1:
            ax_spec.axvspan(start, end, ymin=0.96, ymax=1.0, color=colour, lw=0)
    title = "log-mel spectrogram (64 bands)"
    if any(end > t0 and start < t1 for start, end, _ in regions):
        title += "; marks along the top: anomaly regions (see the table)"
    ax_spec.set_title(title, loc="left")

    # event lanes
    for row, label in enumerate(lanes):
        for e in events:
            if e.label == label and e.offset > t0 and e.onset < t1:
                alpha = float(np.clip(e.peak, 0.15, 1.0))
                ax_lane.broken_barh(
                    [(e.onset, e.duration)],
                    (row - 0.4, 0.8),
                    facecolors=colours[label],
                    alpha=alpha,
                )
    ax_lane.set_yticks(range(len(lanes)), lanes)
    ax_lane.set_ylim(len(lanes) - 0.5, -0.5)
    ax_lane.set_title("events (opacity = peak confidence)", loc="left")
    ax_lane.grid(axis="x", alpha=0.3)
    if not lanes:
        ax_lane.text(0.5, 0.5, "no events", ha="center", va="center", transform=ax_lane.transAxes)

    # score curves
    if scores is not None and scores.size and len(names) == scores.shape[1]:
        a, b = int(t0 / hop), max(int(np.ceil(t1 / hop)), int(t0 / hop) + 1)
        part = scores[a:b]
        # the classes drawn as lanes first (most event time), then the highest-scoring others
        index = {name: i for i, name in enumerate(names)}
        top = [index[label] for label in lanes if label in index][:TOP_CURVES]
        for idx in np.argsort(part.max(axis=0))[::-1]:
            if len(top) >= TOP_CURVES:
                break
            if idx not in top:
                top.append(int(idx))
        times = (np.arange(a, a + part.shape[0]) + 0.5) * hop
        styles = ("-", "--", "-.", ":", (0, (5, 1)))
        spare = [c for c in OKABE_ITO if c not in colours.values()] or list(OKABE_ITO)
        for k, idx in enumerate(top):
            colour = colours.get(names[idx]) or spare[k % len(spare)]
            ax_curve.plot(
                times, part[:, idx], color=colour, lw=1.6, ls=styles[k % 5], label=names[idx]
            )
        if threshold is not None:
            ax_curve.axhline(
                threshold, color="#777777", lw=1, ls=":", label=f"threshold {threshold:g}"
            )
        ax_curve.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False)
    ax_curve.set_ylim(0, 1)
    ax_curve.set_ylabel("score")
    ax_curve.set_title(f"framewise scores, top {TOP_CURVES} classes", loc="left")
    ax_curve.grid(alpha=0.3)
    if with_level:
        assert level is not None
        _level_panel(axes[3], *level, t0, t1)
    _time_axis(axes[-1], t0, t1)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def _time_axis(ax: Any, t0: float, t1: float) -> None:
    """Limits, round-number ticks (at most ~12) and labels in s or h:mm:ss."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    span = max(t1 - t0, 1e-3)
    step = next((s for s in TICK_STEPS if span / s <= 12), TICK_STEPS[-1])
    ax.set_xlim(t0, t1)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    if t1 >= 120:

        def clock(value: float, _pos: int) -> str:
            v = round(value)
            return (
                f"{v // 3600}:{v // 60 % 60:02d}:{v % 60:02d}"
                if t1 >= 3600
                else f"{v // 60}:{v % 60:02d}"
            )

        ax.xaxis.set_major_formatter(FuncFormatter(clock))
        ax.set_xlabel("time (h:mm:ss)" if t1 >= 3600 else "time (m:ss)")
    else:
        ax.set_xlabel("time (s)")


def _level_panel(
    ax: Any,
    block_rms_db: np.ndarray,
    block_seconds: float,
    noise_floor: float,
    t0: float,
    t1: float,
) -> None:
    """Short-term level between ``t0`` and ``t1`` with the estimated noise floor."""
    a = max(int(t0 / block_seconds), 0)
    b = min(int(np.ceil(t1 / block_seconds)) + 1, block_rms_db.size)
    part = block_rms_db[a:b]
    times = (np.arange(a, a + part.size) + 0.5) * block_seconds
    ax.plot(times, part, color=OKABE_ITO[3], lw=1, label="level (100 ms RMS)")
    if np.isfinite(noise_floor):
        ax.axhline(noise_floor, color=OKABE_ITO[4], ls="--", lw=1.2, label="noise floor")
    finite = part[np.isfinite(part)]
    ax.set_ylim(max(float(finite.min()) - 5, -120) if finite.size else -120, 0)
    ax.set_ylabel("dBFS")
    title = "level over time"
    if np.isfinite(noise_floor):
        title += f"; noise floor {noise_floor:.1f} dBFS"
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False)
    ax.grid(alpha=0.3)
