"""The README's set-up: which torch build ``make install`` asks pip for, and what ``make test``
installs first. Dry runs of the real Makefile; the pip rule it relies on is checked with pip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_dry_run(tmp_path: Path, *args: str, gpu: bool) -> str:
    """``make -n ARGS`` with an ``nvidia-smi`` on PATH that answers as a machine with or
    without an NVIDIA GPU would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nexit {0 if gpu else 9}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("TORCH_BUILD", None)
    env.pop("TORCH_INDEX", None)
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), f"VENV={venv}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def torch_line(plan: str) -> str:
    (line,) = [x for x in plan.splitlines() if "pip install" in x and "torch==" in x]
    return line


def test_no_gpu_takes_the_cpu_build(tmp_path: Path) -> None:
    plan = make_dry_run(tmp_path, "install", gpu=False)
    assert f"--extra-index-url {CPU_INDEX}" in torch_line(plan)
    assert "cpu build (about 200 MB" in plan
    assert "torch-build" in plan  # the build that was installed is printed


def test_gpu_takes_the_default_build_and_either_can_be_chosen(tmp_path: Path) -> None:
    gpu = make_dry_run(tmp_path, "install", gpu=True)
    assert CPU_INDEX not in torch_line(gpu)
    assert "cuda build (several GB; TORCH_BUILD=cpu" in gpu
    forced = make_dry_run(tmp_path, "install", "TORCH_BUILD=cpu", gpu=True)
    assert CPU_INDEX in torch_line(forced)
    forced = make_dry_run(tmp_path, "install", "TORCH_BUILD=cuda", gpu=False)
    assert CPU_INDEX not in torch_line(forced)


def test_make_test_installs_the_servers_the_tests_use(tmp_path: Path) -> None:
    assert "tools/system-deps.sh" in make_dry_run(tmp_path, "test", gpu=False)
    assert "system-deps" not in make_dry_run(tmp_path, "test", "SYSTEM_DEPS=no", gpu=False)


def _wheel(folder: Path, version: str) -> None:
    """A minimal wheel of a package ``earmarkprobe`` at ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"earmarkprobe-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: earmarkprobe\nVersion: {version}\n"
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(folder / f"earmarkprobe-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}/METADATA", metadata)
        z.writestr(f"{dist}/WHEEL", wheel)
        z.writestr(f"{dist}/RECORD", "")


def test_pip_prefers_the_cpu_build_when_both_indexes_offer_the_version(tmp_path: Path) -> None:
    """What ``--extra-index-url`` relies on: given ``torch==2.13.0`` from PyPI (a CUDA build on
    Linux) and ``2.13.0+cpu`` from the CPU index, pip takes ``+cpu``."""
    _wheel(tmp_path / "pypi", "2.13.0")
    _wheel(tmp_path / "cpu", "2.13.0+cpu")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--dry-run",
         "--ignore-installed", "--quiet", "--report", str(report),
         "--find-links", str(tmp_path / "pypi"), "--find-links", str(tmp_path / "cpu"),
         "earmarkprobe==2.13.0"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    (chosen,) = json.loads(report.read_text())["install"]
    assert chosen["metadata"]["version"] == "2.13.0+cpu"
