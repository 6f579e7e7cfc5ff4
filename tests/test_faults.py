"""``earmark detect`` under faults: odd names, duplicates, stale folders, links, FIFOs, full disks.

Every case runs the real command on real recordings and checks that nothing is lost (every good
file's results are written), nothing is wrong (a failed file has no events and no outputs) and
no traceback reaches the user.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from earmark.cli import main
from earmark.inputs import NAME_MAX

DOG = "esc10_dog_1-100032-A.ogg"
ROOSTER = "esc10_rooster_1-26806-A.ogg"
SPEECH = "pyannote_sample.wav"


def detect(capsys: pytest.CaptureFixture, *args: str | os.PathLike) -> tuple[int, str]:
    """Run ``earmark detect`` in this process; its exit code and stderr (no traceback allowed)."""
    code = main(["detect", "--quiet", *[os.fsdecode(a) for a in args]])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def files_by_path(out: Path) -> dict[str, dict]:
    return {f["path"]: f for f in manifest(out)["files"]}


@pytest.fixture()
def good(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A folder with two good recordings."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(fixtures_dir / DOG, folder / "dog.ogg")
    shutil.copy(fixtures_dir / ROOSTER, folder / "rooster.ogg")
    return folder


# ---------------------------------------------------------------------------- names
def test_non_utf8_name_among_good_files(
    tmp_path: Path, good: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = os.fsencode(good) + b"/bad_\xff\xfe_name.ogg"
    shutil.copy(fixtures_dir / DOG, os.fsdecode(raw))
    out = tmp_path / "out"
    code, err = detect(capsys, good, "-o", out)
    assert code == 0, err
    for name in ("events.csv", "events.json", "events.tsv", "config.yaml", "manifest.json"):
        assert (out / name).is_file(), name
    entries = files_by_path(out)
    bad = next(f for p, f in entries.items() if "bad_" in p)
    assert "\\xff\\xfe" in bad["path"] and bad["status"] == "ok"
    assert bytes.fromhex(bad["path_bytes"]) == raw  # the original bytes, losslessly
    assert Path(bad["outputs"]["csv"]).is_file()
    assert bad["n_events"] > 0
    csv_text = (out / "events.csv").read_text(encoding="utf-8")
    assert "bad_\\xff\\xfe_name.ogg" in csv_text


def test_longest_names_are_processed(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["a" * (NAME_MAX - 4) + ".ogg", "é" * 120 + "b" * 11 + ".ogg"]  # 255 bytes each
    for name in names:
        assert len(name.encode()) == NAME_MAX
        shutil.copy(fixtures_dir / DOG, folder / name)
    out = tmp_path / "out"
    code, err = detect(capsys, folder, "-o", out)
    assert code == 0, err
    entries = manifest(out)["files"]
    assert [f["status"] for f in entries] == ["ok", "ok"]
    written = [Path(p) for f in entries for p in f["outputs"].values()]
    assert len(set(written)) == len(written) == 2 * 5
    assert all(p.is_file() and len(p.name.encode()) <= NAME_MAX for p in written)


def test_same_base_name_in_two_folders(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    for sub, clip in (("a", DOG), ("b", ROOSTER)):
        (tmp_path / sub).mkdir()
        shutil.copy(fixtures_dir / clip, tmp_path / sub / "x.ogg")
    out = tmp_path / "out"
    code, err = detect(capsys, tmp_path / "a" / "x.ogg", tmp_path / "b" / "x.ogg", "-o", out)
    assert code == 0, err
    entries = manifest(out)["files"]
    csvs = [Path(f["outputs"]["json"]) for f in entries]
    assert csvs[0] != csvs[1] and all(p.is_file() for p in csvs)
    labels = []
    for f, path in zip(entries, csvs, strict=True):
        data = json.loads(path.read_text())
        assert data["meta"]["file"] == f["path"]
        assert {e["file"] for e in data["events"]} == {f["path"]}
        labels.append({e["label"] for e in data["events"]})
    assert {"Dog", "Bark"} & labels[0] and not {"Dog", "Bark"} & labels[1]
    # the run's tables name the files alike, and keep the two apart
    tsv = [line.split("\t")[0] for line in (out / "events.tsv").read_text().splitlines()[1:]]
    with open(out / "events.csv", newline="") as fh:
        in_csv = [row["file"] for row in csv.DictReader(fh)]
    assert tsv == in_csv and set(tsv) == {f["path"] for f in entries}


# ---------------------------------------------------------------------------- failures
def test_failed_file_keeps_no_events_and_no_outputs(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture
) -> None:
    """A file whose outputs cannot be written fails whole: no events counted, nothing left."""
    from earmark.batch import run
    from earmark.pipeline import DetectOptions

    out = tmp_path / "out"
    blocker = out / "files" / "dog.ogg.events.json"
    blocker.mkdir(parents=True)  # the JSON output cannot replace a folder
    earlier = {"options": DetectOptions().to_dict(), "files": []}  # a run that did nothing
    (out / "manifest.json").write_text(json.dumps(earlier))
    summary = run([good], out, DetectOptions(), existing="resume")
    by_name = {Path(r.path).name: r for r in summary.results}
    dog, rooster = by_name["dog.ogg"], by_name["rooster.ogg"]
    assert dog.status == "failed" and "events.json" in dog.error
    assert dog.events == [] and dog.outputs == {}
    assert not (out / "files" / "dog.ogg.events.csv").exists()  # written before the failure
    assert rooster.status == "ok" and rooster.events
    run_events = json.loads((out / "events.json").read_text())["events"]
    assert {e["file"] for e in run_events} == {rooster.path}
    assert manifest(out)["totals"]["events"] == len(rooster.events)


def test_rerun_into_a_used_folder(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert detect(capsys, good, "-o", out)[0] == 0
    first = (out / "events.csv").read_text()
    code, err = detect(capsys, good, "-o", out)
    assert code == 2 and "holds an earlier run" in err and "--overwrite" in err
    assert (out / "events.csv").read_text() == first  # refused: nothing touched

    # the dog file is now corrupt: --overwrite leaves no stale outputs for it
    (good / "dog.ogg").write_bytes(b"OggS" + os.urandom(2000))
    code, err = detect(capsys, good, "-o", out, "--overwrite")
    assert code == 1 and "dog.ogg" in err
    assert not list((out / "files").glob("dog.ogg.*"))
    entries = {Path(p).name: f for p, f in files_by_path(out).items()}
    assert entries["dog.ogg"]["status"] == "failed" and entries["dog.ogg"]["outputs"] == {}
    assert entries["rooster.ogg"]["status"] == "ok"


def test_resume_keeps_finished_files(
    tmp_path: Path, good: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert detect(capsys, good, "-o", out)[0] == 0
    complete = (out / "events.csv").read_text()
    # an interrupted run: the manifest says incomplete, one file's outputs are missing
    data = manifest(out)
    data["complete"] = False
    (out / "manifest.json").write_text(json.dumps(data))
    for path in (out / "files").glob("rooster.ogg.*"):
        path.unlink()
    shutil.copy(fixtures_dir / SPEECH, good / "speech.wav")  # and a new file
    code = main(["detect", str(good), "-o", str(out), "--resume", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["resumed"] == 1  # the dog file; rooster and speech were processed
    assert manifest(out)["complete"] is True
    lines = (out / "events.csv").read_text().splitlines()
    assert set(complete.splitlines()) <= set(lines)
    assert any("speech.wav" in line for line in lines)
    # other options: resuming would mix results, so it is refused
    code, err = detect(capsys, good, "-o", out, "--resume", "--threshold", "0.3")
    assert code == 2 and "threshold" in err


# ---------------------------------------------------------------------------- inputs
def test_links_fifos_and_missing_inputs_are_named(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture
) -> None:
    (good / "dangling.ogg").symlink_to(tmp_path / "gone.ogg")
    (good / "loop.ogg").symlink_to(good / "loop.ogg")
    (good / "subloop").symlink_to(good)  # a link back up: searched once, no error
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    arg_loop = tmp_path / "argloop.wav"
    arg_loop.symlink_to(arg_loop)
    out = tmp_path / "out"
    result: dict = {}

    def target() -> None:
        result["value"] = detect(capsys, good, fifo, arg_loop, tmp_path / "nope.ogg", "-o", out)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(120)
    if thread.is_alive():  # unblock the FIFO so that the test ends, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("a FIFO given as input hangs earmark detect")
    code, err = result["value"]
    assert code == 1
    reasons = {Path(p).name: f["error"] for p, f in files_by_path(out).items() if f["error"]}
    assert "broken symbolic link" in reasons["dangling.ogg"]
    assert "symbolic link loop" in reasons["loop.ogg"]
    assert "symbolic link loop" in reasons["argloop.wav"]
    assert "FIFO" in reasons["pipe.wav"]
    assert "no such file" in reasons["nope.ogg"]
    for name in reasons:
        assert name in err
    statuses = {Path(p).name: f["status"] for p, f in files_by_path(out).items()}
    assert statuses["dog.ogg"] == statuses["rooster.ogg"] == "ok"
    assert len(statuses) == 7  # the linked folder adds no duplicates


def test_unreadable_folder_is_named(tmp_path: Path, good: Path, fixtures_dir: Path) -> None:
    """Run as an unprivileged user (root reads any folder), in a child process."""
    locked = good / "locked"
    locked.mkdir()
    shutil.copy(fixtures_dir / DOG, locked / "hidden.ogg")
    locked.chmod(0)
    out = tmp_path / "out"
    tmp_path.chmod(0o777)
    for p in (good, tmp_path.parent, tmp_path.parent.parent):
        p.chmod(p.stat().st_mode | 0o755)
    command = [sys.executable, "-m", "earmark.cli", "detect", str(good), "-o", str(out), "-q"]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "locked" in proc.stderr and "Permission denied" in proc.stderr
    statuses = {Path(p).name: f["status"] for p, f in files_by_path(out).items()}
    assert statuses == {"dog.ogg": "ok", "rooster.ogg": "ok", "locked": "failed"}


def test_header_that_lies_about_duration(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    x, sr = sf.read(fixtures_dir / SPEECH, dtype="int16")
    path = tmp_path / "liar.flac"
    sf.write(path, x, sr, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    info = 8  # STREAMINFO after "fLaC" and its block header; total samples: 36 bits at +13.5
    packed = int.from_bytes(data[info + 10 : info + 18], "big")
    packed = (packed & ~((1 << 36) - 1)) | sr  # claim one second
    data[info + 10 : info + 18] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    code = main(["detect", str(path), "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    entry = manifest(out)["files"][0]
    assert entry["duration"] > 25
    assert any("declares 1.0 s" in w and "30.0 s" in w for w in entry["warnings"])
    assert "WARNING" in text and "declares 1.0 s" in text


# ---------------------------------------------------------------------------- output folders
def test_unusable_output_folders(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, err = detect(capsys, good, "-o", a_file)
    assert code == 2 and "exists and is not a folder" in err and str(a_file) in err
    code, err = detect(capsys, good, "-o", a_file / "sub")
    assert code == 2 and "Not a directory" in err


@contextlib.contextmanager
def mounted(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (tests of full and read-only disks need root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_read_only_output_folder(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture) -> None:
    with mounted(tmp_path / "ro", "ro,size=1m") as ro:
        code, err = detect(capsys, good, "-o", ro / "out")
        assert code == 2 and "cannot write to output folder" in err
        assert "Read-only file system" in err


def test_full_disk_keeps_what_fits(
    tmp_path: Path, good: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    for i in range(4):
        shutil.copy(fixtures_dir / SPEECH, good / f"speech{i}.wav")
    with mounted(tmp_path / "small", "size=192k") as small:
        out = small / "out"
        code, err = detect(capsys, good, "-o", out)
        assert code == 1
        assert "No space left on device" in err
        written = {p.name for p in (out / "files").iterdir()}
        # every file either has all its outputs or none
        stems = {n.split(".")[0] for n in written if not n.startswith(".")}
        for stem in stems:
            kinds = {n[len(stem) :] for n in written if n.split(".")[0] == stem}
            assert len(kinds) == 5, (stem, kinds)
        assert not [n for n in written if n.endswith(".tmp")]  # nothing half-written
        # every file's outcome is recorded; if the run-level files did not fit either, the
        # run is marked incomplete (for --resume) and none of them is left
        data = manifest(out)
        assert len(data["files"]) == 6
        assert data["complete"] or ("error" in data and not (out / "events.csv").exists())
        for entry in data["files"]:
            if entry["status"] == "failed":
                assert "No space left on device" in entry["error"] and not entry["outputs"]
            else:
                assert all(Path(p).is_file() for p in entry["outputs"].values())


def test_killed_worker_costs_only_its_file(
    tmp_path: Path, good: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    import multiprocessing

    import numpy as np

    x, sr = sf.read(fixtures_dir / SPEECH, dtype="int16")
    long = np.tile(x, 20)  # 10 minutes: a few seconds of work each
    for i in range(4):
        sf.write(good / f"speech{i}.wav", long, sr, subtype="PCM_16")
    out = tmp_path / "out"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            children = multiprocessing.active_children()
            started = (out / "files").is_dir() and any((out / "files").iterdir())
            if len(children) >= 2 and started:  # the workers are busy with files
                with contextlib.suppress(ProcessLookupError):
                    os.kill(children[0].pid or 0, signal.SIGKILL)
                    killed.append(children[0].pid or 0)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code, err = detect(capsys, good, "-o", out, "--jobs", "2")
    thread.join()
    assert killed
    entries = manifest(out)["files"]
    assert len(entries) == 6 and manifest(out)["complete"] is True
    failed = [f for f in entries if f["status"] == "failed"]
    assert not failed  # the files in flight were retried in a fresh worker
    assert code == 0, err
    for f in entries:
        assert all(Path(p).is_file() for p in f["outputs"].values())


def test_missing_extra_is_named_not_a_traceback(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"  # as if the service extra were absent
        "from earmark.cli import main; sys.exit(main(['serve', '--port', '1']))"
    )
    env = {**os.environ, "EARMARK_STORAGE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "pip install 'earmark[service]'" in proc.stderr and "uvicorn" in proc.stderr


def test_nothing_to_analyse_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, err = detect(capsys, tmp_path / "nosuchdir", "-o", out)
    assert code == 2 and "nothing to analyse" in err and "nosuchdir" in err
    assert not out.exists()  # nothing created
    (tmp_path / "empty").mkdir()
    code, err = detect(capsys, tmp_path / "empty", "-o", out)
    assert code == 2 and "no audio files" in err and not out.exists()
