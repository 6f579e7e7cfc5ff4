"""The custom-class design as it was when the frame-level work began, run from its own code.

``benchmarks.custom_sed`` compares the new detector with the clip head *of today's code*
(``--frame-head none``), which has gained from the same work (mixing augmentation, gates,
refinement of custom events through one detection path). The issue that asked for the frame
level measured the design as it stood: ``earmark train CLIPS --negatives --backgrounds BG``
then ``earmark detect --classes MODEL`` on the soundscapes. This module does exactly that
with the code of commit :data:`FILED_COMMIT` (the last commit before the frame-level
detector), extracted with ``git archive`` and run as a subprocess through its own CLI, on the
same training clips, backgrounds and evaluation recordings as the other rows; only the
scoring of its outputs (events and saved framewise scores) is today's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FILED_COMMIT = "4e66714"
"""``report figures: ...``: the last commit before ``custom classes: frame-level detector``."""
REPO = Path(__file__).resolve().parents[1]
RUN_CLI = "import sys; from earmark.cli import main; sys.exit(main())"


def checkout(commit: str, dest: Path) -> Path:
    """The ``src`` folder of ``commit``, extracted under ``dest``; returns its path."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_cli(src: Path, args: Sequence[str], cache: Path) -> str:
    """``earmark ARGS`` of the old code (its own package first on the path); stdout."""
    env = {**os.environ, "PYTHONPATH": str(src), "EARMARK_EMBEDDING_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"earmark {args[0]} of {FILED_COMMIT} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def write_training_csv(clips: Sequence[tuple[Path, str, int]], path: Path) -> Path:
    """The training clips as the CSV list the old ``train`` reads (file, label, fold)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label", "fold"])
        for clip, label, fold in clips:
            writer.writerow([str(Path(clip).resolve()), label, fold])
    return path


def train(src: Path, clips_csv: Path, backgrounds: Path, out: Path, cache: Path) -> float:
    """``earmark train --negatives --backgrounds`` as the issue's user ran it; seconds."""
    started = time.perf_counter()
    run_cli(
        src,
        ["train", str(clips_csv), "-o", str(out), "--negatives", "--backgrounds",
         str(backgrounds), "--no-baseline", "--overwrite", "-q"],
        cache,
    )  # fmt: skip
    return time.perf_counter() - started


def detect(src: Path, model: Path, recordings, work: Path, cache: Path, classes: Sequence[str]):
    """``earmark detect --classes MODEL`` of the old code on ``(name, audio)`` recordings.

    Returns ``{name: (events, matrix)}``: the events as ``(onset, offset, label)`` and the
    saved framewise scores of ``classes`` (columns in that order).
    """
    import soundfile as sf

    inputs = work / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    names = {}
    for k, (name, audio) in enumerate(recordings):
        path = inputs / f"{k:03d}.wav"
        sf.write(path, np.asarray(audio, dtype=np.float32), 32000, subtype="FLOAT")
        names[path.stem] = name
    out = work / "out"
    run_cli(
        src,
        ["detect", str(inputs), "--classes", str(model), "-o", str(out), "--formats", "json",
         "-q", "--threads", "2"],
        cache,
    )  # fmt: skip
    found = {}
    for stem, name in names.items():
        base = out / "files" / f"{stem}.wav"  # the old layout: OUT/files/<name>.<suffix>
        events = json.loads(Path(f"{base}.events.json").read_text())["events"]
        with np.load(f"{base}.scores.npz") as npz:
            labels = [str(n).removeprefix("custom:") for n in npz["names"]]
            matrix = npz["scores"].astype(np.float32)[:, [labels.index(c) for c in classes]]
        found[name] = ([(e["onset"], e["offset"], e["label"]) for e in events], matrix)
    return found
