"""Writers: atomic files, every event format round trip, score matrices."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from earmark.events import Event
from earmark.labels import Label, load_labels
from earmark.outputs import (
    EVENT_COLUMNS,
    EVENT_FORMATS,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    read_events,
    read_scores,
    write_audacity_labels,
    write_events,
    write_events_csv,
    write_events_json,
    write_events_tsv,
    write_json,
    write_scores,
)

EVENTS = [
    Event("/data/rec one.wav", "Speech", "/m/09x0r", 0.0, 1.28, 0.91234567, 0.70001),
    Event(
        "/data/rec one.wav",
        "Domestic animals, pets",
        "/m/068hy",
        0.96,
        2.24,
        0.5,
        0.45678,
        (("Dog", "/m/0bt9lr", 0.44444), ("Animal; (x)", "/m/0jbk", 0.3)),
    ),
    Event("/data/rec one.wav", 'Say "hi", café', "/m/x", 3.2, 3.3333333, 1.0, 0.3),
]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def rounded(event: Event) -> Event:
    return Event(
        event.file,
        event.label,
        event.mid,
        round(event.onset, 3),
        round(event.offset, 3),
        round(event.peak, 4),
        round(event.mean, 4),
        tuple((label, mid, round(peak, 4)) for label, mid, peak in event.alternatives),
    )


# -- atomic files -----------------------------------------------------------------------


def test_atomic_path_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path
        assert temp != target
        assert temp.exists()  # created empty, ready to write
        assert not target.exists()
        temp.write_text("hello", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "hello"
    assert listing(tmp_path) == ["out.txt"]


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old content", encoding="utf-8")
    with (
        pytest.raises(RuntimeError, match="boom"),
        atomic_path(target) as temp,
        open(temp, "w", encoding="utf-8") as fh,
    ):
        fh.write("half of the new")
        fh.flush()
        raise RuntimeError("boom")
    assert target.read_text(encoding="utf-8") == "old content"
    assert listing(tmp_path) == ["out.txt"]


def test_atomic_path_failure_without_old_file(tmp_path):
    target = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temp:
        temp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_atomic_write_text_and_bytes_replace(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "première\n")
    assert target.read_bytes() == "première\n".encode()
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert listing(tmp_path) == ["f.txt"]


def test_atomic_file_gets_normal_permissions(tmp_path):
    target = tmp_path / "perm.txt"
    atomic_write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_writer_error_leaves_old_file(tmp_path):
    target = tmp_path / "data.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(target, {"a": object()})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1}

    def events():
        yield EVENTS[0]
        raise OSError("disk on fire")

    csv_path = tmp_path / "x.events.csv"
    write_events_csv(csv_path, EVENTS[:1])
    before = csv_path.read_bytes()
    with pytest.raises(OSError, match="disk on fire"):
        write_events_csv(csv_path, events())
    assert csv_path.read_bytes() == before
    assert listing(tmp_path) == ["data.json", "x.events.csv"]


# -- JSON -------------------------------------------------------------------------------


def test_write_json_numpy_and_formatting(tmp_path):
    target = tmp_path / "meta.json"
    write_json(
        target,
        {
            "n": np.int64(3),
            "x": np.float32(0.5),
            "arr": np.arange(3, dtype=np.int16),
            "path": Path("/a/b"),
            "nan": math.nan,
            "inf": np.float64("inf"),
            "tuple": (1, "é"),
            "flag": np.bool_(True),
        },
    )
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == {
        "n": 3,
        "x": 0.5,
        "arr": [0, 1, 2],
        "path": "/a/b",
        "nan": None,
        "inf": None,
        "tuple": [1, "é"],
        "flag": True,
    }
    assert text.startswith('{\n  "n": 3,\n')
    assert "é" in text  # not escaped
    assert text.endswith("}\n")


# -- event formats ----------------------------------------------------------------------


def test_csv_round_trip(tmp_path):
    path = tmp_path / "a.events.csv"
    write_events_csv(path, EVENTS)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(EVENT_COLUMNS)
    assert lines[1] == "/data/rec one.wav,Speech,/m/09x0r,0.000,1.280,1.280,0.9123,0.7000,"
    assert lines[2] == (
        '/data/rec one.wav,"Domestic animals, pets",/m/068hy,0.960,2.240,1.280,0.5000,0.4568,'
        "Dog (/m/0bt9lr) 0.4444; Animal; (x) (/m/0jbk) 0.3000"
    )
    assert read_events(path) == [rounded(e) for e in EVENTS]


def test_json_round_trip(tmp_path):
    path = tmp_path / "a.events.json"
    write_events_json(path, EVENTS, meta={"model": "mn04_as", "hop": np.float32(0.32)})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"meta", "events"}
    assert data["meta"] == {"model": "mn04_as", "hop": pytest.approx(0.32)}
    assert data["events"][2] == {
        "file": "/data/rec one.wav",
        "label": 'Say "hi", café',
        "mid": "/m/x",
        "onset": 3.2,
        "offset": 3.333,
        "duration": 0.133,
        "peak": 1.0,
        "mean": 0.3,
        "alternatives": [],
    }
    assert data["events"][1]["alternatives"] == [
        {"label": "Dog", "mid": "/m/0bt9lr", "peak": 0.4444},
        {"label": "Animal; (x)", "mid": "/m/0jbk", "peak": 0.3},
    ]
    assert read_events(path) == [rounded(e) for e in EVENTS]


def test_tsv_dcase_format_and_round_trip(tmp_path):
    path = tmp_path / "a.events.tsv"
    write_events_tsv(path, EVENTS)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert lines[1] == "rec one.wav\t0.000\t1.280\tSpeech"
    assert lines[3] == 'rec one.wav\t3.200\t3.333\tSay "hi", café'
    assert text.endswith("\n")
    back = read_events(path)
    assert [(e.file, e.label, e.onset, e.offset) for e in back] == [
        ("rec one.wav", e.label, round(e.onset, 3), round(e.offset, 3)) for e in EVENTS
    ]
    assert all(e.mid == "" and math.isnan(e.peak) and math.isnan(e.mean) for e in back)


def test_tsv_rejects_tabs_in_labels(tmp_path):
    bad = [Event("f.wav", "a\tb", "/m/x", 0.0, 1.0, 1.0, 1.0)]
    with pytest.raises(ValueError, match="tab or newline"):
        write_events_tsv(tmp_path / "x.tsv", bad)
    assert listing(tmp_path) == []


def test_audacity_labels(tmp_path):
    path = tmp_path / "a.audacity.txt"
    write_audacity_labels(path, EVENTS)
    assert path.read_text(encoding="utf-8") == (
        "0.000000\t1.280000\tSpeech\n"
        "0.960000\t2.240000\tDomestic animals, pets\n"
        '3.200000\t3.333333\tSay "hi", café\n'
    )
    back = read_events(path)
    assert [(e.label, e.onset, e.offset) for e in back] == [
        (e.label, round(e.onset, 6), round(e.offset, 6)) for e in EVENTS
    ]


def test_empty_event_lists(tmp_path):
    written = write_events(tmp_path, "empty", [])
    assert written["csv"].read_text(encoding="utf-8") == ",".join(EVENT_COLUMNS) + "\n"
    assert written["tsv"].read_text(encoding="utf-8") == "filename\tonset\toffset\tevent_label\n"
    assert written["audacity"].read_text(encoding="utf-8") == ""
    for path in written.values():
        assert read_events(path) == []


def test_write_events_naming_scheme(tmp_path):
    out = tmp_path / "new" / "dir"
    written = write_events(out, "rec one", EVENTS, meta={"file": "rec one.wav"})
    assert tuple(written) == EVENT_FORMATS
    assert {k: p.name for k, p in written.items()} == {
        "csv": "rec one.events.csv",
        "json": "rec one.events.json",
        "tsv": "rec one.events.tsv",
        "audacity": "rec one.audacity.txt",
    }
    assert listing(out) == sorted(p.name for p in written.values())
    assert json.loads(written["json"].read_text(encoding="utf-8"))["meta"] == {
        "file": "rec one.wav"
    }
    only = write_events(out, "b", EVENTS, formats=["tsv"])
    assert list(only) == ["tsv"]
    with pytest.raises(ValueError, match="unknown event format"):
        write_events(out, "c", EVENTS, formats=["xml"])


def test_read_events_errors(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("file\tonset\n", encoding="utf-8")
    with pytest.raises(ValueError, match="DCASE header"):
        read_events(bad)
    bad = tmp_path / "x.csv"
    bad.write_text("file,label\nf,L\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        read_events(bad)
    bad = tmp_path / "x.events.xml"
    bad.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown event file type"):
        read_events(bad)
    bad = tmp_path / "y.csv"
    bad.write_text(",".join(EVENT_COLUMNS) + "\nf,L,/m/x,soon,1,1,1,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'soon' is not a number"):
        read_events(bad)


# -- scores -----------------------------------------------------------------------------


def test_scores_round_trip(tmp_path, model_dir):
    labels = load_labels(model_dir / "class_labels_indices.csv")
    rng = np.random.default_rng(0)
    scores = rng.random((500, 527), dtype=np.float32)
    scores[0, :3] = [0.0, 1.0, 0.5]
    path = tmp_path / "rec.scores.npz"
    meta = {"file": "rec.wav", "duration": np.float64(160.0), "model": "mn04_as"}
    write_scores(path, scores, 0.32, labels, meta=meta)
    assert listing(tmp_path) == ["rec.scores.npz"]
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "hop.npy",
            "meta.npy",
            "mids.npy",
            "names.npy",
            "scores.npy",
        ]
        assert archive.getinfo("scores.npy").compress_type == zipfile.ZIP_DEFLATED
    back, hop, back_labels, back_meta = read_scores(path)
    assert back.dtype == np.float32
    assert back.shape == (500, 527)
    assert hop == 0.32
    assert back_labels == labels
    assert back_meta == {"file": "rec.wav", "duration": 160.0, "model": "mn04_as"}
    error = np.abs(back - scores).max()
    assert 0 < error <= 2.0**-12
    assert back[0, :3].tolist() == [0.0, 1.0, 0.5]


def test_scores_keep_the_exact_file_name(tmp_path):
    labels = [Label(0, "/m/a", "A")]
    write_scores(tmp_path / "noext", np.zeros((2, 1)), 1.0, labels)
    assert listing(tmp_path) == ["noext"]
    assert read_scores(tmp_path / "noext")[3] == {}


def test_scores_errors(tmp_path):
    labels = [Label(0, "/m/a", "A")]
    with pytest.raises(ValueError, match="shape"):
        write_scores(tmp_path / "s.npz", np.zeros((2, 2)), 1.0, labels)
    with pytest.raises(ValueError, match="float16 range"):
        write_scores(tmp_path / "s.npz", np.full((2, 1), 1e6), 1.0, labels)
    with pytest.raises(ValueError, match="hop"):
        write_scores(tmp_path / "s.npz", np.zeros((2, 1)), 0.0, labels)
    assert listing(tmp_path) == []
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        read_scores(tmp_path / "junk.npz")
