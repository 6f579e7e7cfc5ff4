"""Pin the Python packages of the container images (deploy/docker/requirements-*.txt).

    python deploy/docker/lock_requirements.py             # resolve, rewrite both files
    python deploy/docker/lock_requirements.py --keep-pins # the same, keeping the pins
    python deploy/docker/lock_requirements.py --check     # verify against pyproject

The API image gets earmark's core dependencies without torch plus the ``service`` extra; the worker
image gets the same plus the ``listen`` extra (``earmark listen`` runs from the worker image: the
MQTT sink) and what torch needs (torch itself is installed apart, from the CPU wheel index or local
wheels, see Dockerfile.worker). Resolution uses ``pip install --dry-run --report`` for CPython 3.11
on manylinux x86-64 (Debian bookworm's Python), binary wheels only. ``--keep-pins`` passes the
files' current pins to pip as constraints, so that only what is new gets resolved (pins that
conflict with pyproject.toml make pip fail: lock without it then).

``--check`` needs no network: every requirement of pyproject.toml (core minus torch, plus the
``service`` extra, plus the ``listen`` extra for the worker) must be pinned with ``==`` to a
version the specifier allows, both files must record the inputs pyproject.toml now gives, and
nothing in the API file may be torch. test-deploy.sh runs it in its lint step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
API_FILE = HERE / "requirements-api.txt"
WORKER_FILE = HERE / "requirements-worker.txt"
TORCH_VERSION = "2.13.0"
TARGET_PYTHON = "3.11.2"  # Debian bookworm's python3, what the images run
# What the service needs per the service contract, used until pyproject.toml has a `service` extra.
CONTRACT_SERVICE = [
    "fastapi",
    "uvicorn",
    "celery[redis]",
    "redis",
    "sqlalchemy",
    "alembic",
    "psycopg[binary]",
    "python-multipart",
    "prometheus-client",
]
HEADER = """\
# Pinned by deploy/docker/lock_requirements.py ({what}); do not edit by hand.
# CPython 3.11.2 (Debian bookworm), manylinux x86-64, binary wheels only.
# inputs: {inputs}
"""


def project_requirements() -> tuple[list[str], list[str], bool]:
    """Core dependencies without torch, the service extra, and whether pyproject has that extra."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [r for r in meta["dependencies"] if canonicalize_name(Requirement(r).name) != "torch"]
    extra = meta.get("optional-dependencies", {}).get("service")
    return core, list(extra) if extra else list(CONTRACT_SERVICE), extra is not None


def worker_extras() -> list[str]:
    """What the worker image adds to the API's requirements: the ``listen`` extra (MQTT sink)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(meta.get("optional-dependencies", {}).get("listen", []))


def worker_requirements(core: list[str], service: list[str]) -> list[str]:
    """The worker's inputs: the API's, the ``listen`` extra and torch."""
    return [*core, *service, *worker_extras(), f"torch=={TORCH_VERSION}"]


def target_python() -> list[str]:
    """The pip to resolve with: environment markers (python_full_version < "3.11.3" ...) are
    evaluated with the running interpreter, so it must be the images' CPython 3.11.2, i.e. Debian
    bookworm's /usr/bin/python3 (or $LOCK_PYTHON)."""
    exe = os.environ.get("LOCK_PYTHON", "/usr/bin/python3")
    try:
        version = subprocess.run(
            [exe, "-c", "import platform, pip; print(platform.python_version())"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        version = ""
    if version != TARGET_PYTHON:
        raise SystemExit(
            f"{exe} is Python {version or '(missing, or without pip)'}, not {TARGET_PYTHON}: "
            "set LOCK_PYTHON to a CPython 3.11.2 with pip (Debian bookworm's python3 + python3-pip)"
        )
    # Debian marks its Python externally managed; nothing is installed here (--dry-run).
    return [exe, "-m", "pip", "install", "--break-system-packages"]


def resolve(requirements: list[str], keep: dict[str, str] | None = None) -> dict[str, str]:
    """name -> version of everything pip would install for ``requirements`` (nothing installed);
    ``keep``: pins passed as constraints (kept unless a requirement conflicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        constraints: list[str] = []
        if keep:
            path = Path(tmp) / "constraints.txt"
            path.write_text("".join(f"{name}=={version}\n" for name, version in keep.items()))
            constraints = ["--constraint", str(path)]
        cmd = [
            *target_python(),
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--only-binary=:all:",
            f"--python-version={TARGET_PYTHON}",
            "--implementation=cp",
            "--platform=manylinux_2_28_x86_64",
            "--platform=manylinux2014_x86_64",
            "--platform=manylinux_2_17_x86_64",
            "--target",
            str(Path(tmp) / "target"),
            "--report",
            str(report),
            *constraints,
            *requirements,
        ]
        # this machine's pip settings (constraints, extra indexes) are not the images'
        env = {**os.environ, "PIP_CONSTRAINT": "", "PIP_CONFIG_FILE": os.devnull}
        subprocess.run(cmd, check=True, env=env)
        data = json.loads(report.read_text())
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in data["install"]
    }


def inputs_line(requirements: list[str]) -> str:
    """The resolved requirements as one line (a changed line means: lock again)."""
    return "; ".join(sorted(str(Requirement(r)) for r in requirements))


def recorded_inputs(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("# inputs: "):
            return line[len("# inputs: ") :]
    return None


def write(path: Path, pins: dict[str, str], what: str, requirements: list[str]) -> None:
    lines = [HEADER.format(what=what, inputs=inputs_line(requirements))]
    lines += [f"{name}=={version}\n" for name, version in sorted(pins.items())]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    print(f"{path.relative_to(ROOT)}: {len(pins)} packages")


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{path}: {line!r} is not pinned with ==")
        pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def check() -> int:
    core, service, has_extra = project_requirements()
    problems = []
    if not has_extra:
        print("note: pyproject.toml has no `service` extra yet; checked the contract's list")
    worker_reqs = worker_requirements(core, service)
    for path, reqs in ((API_FILE, core + service), (WORKER_FILE, worker_reqs)):
        if recorded_inputs(path) != inputs_line(reqs):
            problems.append(
                f"{path.name} was locked from other requirements than pyproject.toml now "
                "lists: run python deploy/docker/lock_requirements.py --keep-pins"
            )
    for path, reqs in ((API_FILE, core + service), (WORKER_FILE, worker_reqs[:-1])):
        pins = read_pins(path)
        for spec in reqs:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
                continue
            name = canonicalize_name(req.name)
            if name not in pins:
                problems.append(f"{path.name}: {req.name} is not pinned")
            elif req.specifier and not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{path.name}: {name}=={pins[name]} does not satisfy {spec}")
    if "torch" in read_pins(API_FILE):
        problems.append("requirements-api.txt contains torch")
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print("requirements-api.txt and requirements-worker.txt satisfy pyproject.toml")
    return 1 if problems else 0


def lock(keep_pins: bool = False) -> int:
    core, service, _ = project_requirements()
    api = resolve(core + service, read_pins(API_FILE) if keep_pins else None)
    if "torch" in api:
        raise SystemExit("something in the service extra pulls torch into the API image")
    write(API_FILE, api, "API image: earmark core without torch + [service]", core + service)
    worker_reqs = worker_requirements(core, service)
    worker = resolve(worker_reqs, read_pins(WORKER_FILE) if keep_pins else None)
    worker.pop("torch", None)
    what = "worker: as the API + [listen] + torch's dependencies, torch apart"
    write(WORKER_FILE, worker, what, worker_reqs)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify instead of rewriting")
    parser.add_argument(
        "--keep-pins",
        action="store_true",
        help="keep the files' current pins (constraints), resolve only what is new",
    )
    args = parser.parse_args()
    return check() if args.check else lock(args.keep_pins)


if __name__ == "__main__":
    sys.exit(main())
