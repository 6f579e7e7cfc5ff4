"""Strongly labelled recordings for training: every accepted format, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from earmark.custom.strong_labels import (
    StrongLabelError,
    check_recordings,
    find_labelled_recordings,
    read_label_file,
)

CLASSES = ["Dog bark", "Rooster"]


@pytest.fixture()
def recording(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A real 5 s recording copied into an empty folder."""
    src = fixtures_dir / "esc10_dog_1-100032-A.ogg"
    dst = tmp_path / "rec" / "street take 1.ogg"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    return dst


RAVEN = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
    "Annotation\n"
    "1\tWaveform 1\t1\t0.50\t1.25\t0\t0\tDog bark\n"
    "1\tSpectrogram 1\t1\t0.50\t1.25\t200\t4000\tDog bark\n"
    "2\tSpectrogram 1\t1\t2.000\t3.5\t300\t5000\trooster\n"
)


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".txt", "0.5\t1.25\tDog bark\n\\\t200\t4000\n2.0\t3.5\trooster\n"),  # Audacity
        (".tsv", "onset\toffset\tevent_label\n0.5\t1.25\tDog bark\n2.0\t3.5\trooster\n"),
        (".selections.txt", RAVEN),
        (".Table.1.selections.txt", RAVEN),
    ],
)
def test_label_file_beside_audio(recording: Path, suffix: str, text: str) -> None:
    (recording.parent / f"{recording.stem}{suffix}").write_text(text)
    [found] = find_labelled_recordings(recording.parent)
    assert found.audio == recording
    assert [(e.onset, e.offset, e.label) for e in found.events] == [
        (0.5, 1.25, "Dog bark"),
        (2.0, 3.5, "rooster"),
    ]
    check_recordings([found], CLASSES, {recording: 5.0})  # case-insensitive class names


def test_dcase_tsv_with_file_column(recording: Path) -> None:
    labels = recording.parent / "labels.tsv"
    labels.write_text(
        f"filename\tonset\toffset\tevent_label\n{recording.name}\t0.1\t0.9\tRooster\n"
        f"{recording.name}\t1.0\t2.0\tDog bark\n"
    )
    [found] = find_labelled_recordings(labels)
    assert found.audio == recording and len(found.events) == 2


def test_raven_table_read_directly(tmp_path: Path) -> None:
    path = tmp_path / "x.selections.txt"
    path.write_text(RAVEN)
    events = read_label_file(path)
    assert len(events) == 2  # the Waveform and Spectrogram rows of selection 1 are one event


def test_missing_audio_is_named(tmp_path: Path) -> None:
    labels = tmp_path / "labels.tsv"
    labels.write_text("filename\tonset\toffset\tevent_label\nnot-here.wav\t0.1\t0.9\tRooster\n")
    with pytest.raises(StrongLabelError, match=r"not-here\.wav.*not found"):
        find_labelled_recordings(labels)


def test_offset_before_onset_names_file_and_line(recording: Path) -> None:
    (recording.parent / f"{recording.stem}.txt").write_text(
        "0.5\t1.0\tRooster\n3.0\t2.0\tRooster\n"
    )
    with pytest.raises(StrongLabelError, match=r"street take 1\.txt:2.*before its onset"):
        find_labelled_recordings(recording.parent)


def test_unknown_class_and_times_past_the_end(recording: Path) -> None:
    (recording.parent / f"{recording.stem}.txt").write_text(
        "0.5\t1.0\tRoosters\n4.0\t9.0\tDog bark\n"
    )
    [found] = find_labelled_recordings(recording.parent)
    with pytest.raises(StrongLabelError) as info:
        check_recordings([found], CLASSES, {recording: 5.0})
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "'Roosters'" in message and "unknown class" in message and "'Rooster'?" in message
    assert "past the end of street take 1.ogg (5.000 s)" in message


def test_folder_without_label_files(recording: Path) -> None:
    with pytest.raises(StrongLabelError, match="no audio file with a label file beside it"):
        find_labelled_recordings(recording.parent)


def test_raven_without_label_column(tmp_path: Path) -> None:
    path = tmp_path / "x.selections.txt"
    path.write_text("Selection\tView\tBegin Time (s)\tEnd Time (s)\n1\tWaveform 1\t0.5\t1\n")
    with pytest.raises(StrongLabelError, match="without a label column"):
        read_label_file(path)
