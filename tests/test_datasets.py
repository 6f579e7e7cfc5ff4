# ruff: noqa: F811  (pytest fixtures imported from custom_fixtures)
"""Reading labelled datasets: ESC-10's meta CSV, folders per class, ESC-50 layout, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from custom_fixtures import esc10, esc10_dir  # noqa: F401

from earmark.custom.datasets import DatasetError, load_dataset


def test_esc10_meta_csv_gives_400_clips_in_5_balanced_folds(esc10) -> None:
    assert len(esc10.clips) == 400
    assert len(esc10.classes) == 10
    assert esc10.folds == [1, 2, 3, 4, 5]
    summary = esc10.summary()
    assert all(n == 40 for n in summary["classes"].values())
    assert all(n == 8 for fold in summary["per_fold"].values() for n in fold.values())
    assert esc10.columns == {"file": "path", "label": "esc10_class", "fold": "fold"}
    assert all(c.path.is_file() for c in esc10.clips)
    text = esc10.format_summary()
    assert "400 clips, 10 classes, folds 1, 2, 3, 4, 5" in text and "Dog bark" in text


def _copy_clips(source: Path, dest: Path, per_class: int = 3) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir())[:3]:
        label = folder.name.split(" - ")[1]
        (dest / label).mkdir(parents=True)
        for src in sorted(folder.glob("*.ogg"))[:per_class]:
            shutil.copy(src, dest / label / src.name)
            found.setdefault(label, []).append(dest / label / src.name)
    return found


def test_folder_per_class(tmp_path: Path, esc10_dir: Path) -> None:
    found = _copy_clips(esc10_dir, tmp_path / "data")
    (tmp_path / "data" / "stray.ogg").write_bytes(next(iter(found.values()))[0].read_bytes())
    dataset = load_dataset(tmp_path / "data")
    assert dataset.layout == "folders"
    assert dataset.classes == sorted(found)
    assert dataset.counts() == {k: 3 for k in found}
    assert not dataset.has_folds
    assert dataset.ignored == ["stray.ogg"]


def test_esc50_layout_with_meta_and_audio_folders(tmp_path: Path, esc10_dir: Path) -> None:
    found = _copy_clips(esc10_dir, tmp_path / "src")
    (tmp_path / "esc" / "audio").mkdir(parents=True)
    (tmp_path / "esc" / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for target, (label, paths) in enumerate(sorted(found.items())):
        for i, path in enumerate(paths):
            shutil.copy(path, tmp_path / "esc" / "audio" / path.name)
            rows.append(f"{path.name},{i + 1},{target},{label.lower()},True,1,A")
    (tmp_path / "esc" / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    dataset = load_dataset(tmp_path / "esc")
    assert dataset.layout == "esc50"
    assert len(dataset.clips) == 9 and dataset.folds == [1, 2, 3]
    assert dataset.columns == {"file": "filename", "label": "category", "fold": "fold"}
    assert "target" in dataset.ignored


def test_csv_errors_name_the_file_and_the_cause(tmp_path: Path, esc10_dir: Path) -> None:
    found = _copy_clips(esc10_dir, tmp_path / "data")
    lines = [f"{p.relative_to(tmp_path)},{label}" for label, ps in found.items() for p in ps]
    csv = tmp_path / "list.csv"

    csv.write_text("filename,label\n" + "\n".join([*lines, "data/nothing.wav,Dog bark"]) + "\n")
    with pytest.raises(DatasetError, match=r"1 missing file.*line 11: data/nothing\.wav"):
        load_dataset(csv)

    csv.write_text("name,what\n" + "\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"unknown columns \['name', 'what'\]"):
        load_dataset(csv)

    csv.write_text("filename,label,fold\n" + "\n".join(f"{ln},x" for ln in lines) + "\n")
    with pytest.raises(DatasetError, match="fold 'x' is not an integer"):
        load_dataset(csv)

    one = [*lines[:3], lines[3]]  # 3 of the first class, 1 of the second
    csv.write_text("filename,label\n" + "\n".join(one) + "\n")
    with pytest.raises(DatasetError, match="fewer than 2 examples"):
        load_dataset(csv)
    assert len(load_dataset(csv, min_per_class=1).clips) == 4

    with pytest.raises(DatasetError, match="no such folder or CSV"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no audio found in class subfolders"):
        (tmp_path / "empty").mkdir()
        load_dataset(tmp_path / "empty")
