"""The registry of model assets: what each file is, where it officially comes from, its sha256.

Sources of the registry facts (file names, URLs, widths, mAP, parameter counts):

* checkpoint file names and the release URL: ``pretrained_models`` in ``models/mn/model.py`` of
  https://github.com/fschmid56/EfficientAT (release ``v0.0.1``);
* width multipliers: the model naming convention ``mn<width*10>_as`` and ``NAME_TO_WIDTH`` in
  ``helpers/utils.py`` of the same repository;
* mAP: the model table in the repository's ``README.md`` (mn04 … mn40_as_ext); for mn01_as and
  mn02_as, which the README table does not list, the mAP encoded in the official file name;
* parameter counts: the same README table (published in millions, to 3-4 significant digits);
  mn04_as is counted exactly from the official checkpoint (983 599, consistent with "0.983 M").
  no count is published for mn01_as and mn02_as: theirs are counted from the architecture
  (``earmark.model.MobileNet(width)``), which reproduces every published count;
* sha256 and sizes of ``mn04_as_mAP_432.pt``, ``class_labels_indices.csv`` and ``ontology.json``:
  the project's shared asset table (measured on the official files). No sha256 has been published
  for the other checkpoints, so they are not pinned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from earmark import constants

__all__ = [
    "ALLOW_UNPINNED_ENV",
    "ASSETS",
    "CACHE_DIR_ENV",
    "DEFAULT_MODEL",
    "MODELS",
    "MODEL_DIR_ENV",
    "OFFLINE_ENV",
    "Asset",
    "AssetIntegrityError",
    "AssetNotFoundError",
    "ModelSpec",
    "UnpinnedAssetError",
    "all_assets",
    "get_asset",
    "needed_files",
    "spec_from_filename",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

MODEL_DIR_ENV = "EARMARK_MODEL_DIR"
"""Folder holding model files provided by the user (searched before the cache)."""
CACHE_DIR_ENV = "EARMARK_CACHE_DIR"
"""Root of earmark's cache; model files live in its ``models`` sub-folder."""
ALLOW_UNPINNED_ENV = "EARMARK_ALLOW_UNPINNED"
"""Set to ``1`` to allow downloading assets that have no pinned sha256."""
OFFLINE_ENV = "EARMARK_OFFLINE"
"""Set to ``1`` to forbid any download (same as ``download=False``)."""

KINDS = ("checkpoint", "labels", "ontology")

EFFICIENTAT_RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
LABELS_URL = (
    "https://raw.githubusercontent.com/fschmid56/EfficientAT/main/metadata/class_labels_indices.csv"
)
ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"

DEFAULT_MODEL = constants.DEFAULT_MODEL
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Checkpoints whose architecture and front end are those of the plain ``mnXX_as`` models:
# e.g. mn10_as_mAP_471.pt, mn40_as_ext_mAP_487.pt, mn40_as_mAP_483(2).pt. Variants with another
# hop size, mel count or head (``_hop_``, ``_mels_``, ``_fc``) are deliberately not matched.
_CHECKPOINT_NAME_RE = re.compile(
    r"^(?P<base>mn(?P<width>\d{2})_as)(?P<variant>_ext|_no_im_pre)?"
    r"_mAP_(?P<map>\d{3})(?:\(\d+\))?\.pt$"
)


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """A file earmark needs, where to get it and how to check it.

    ``sha256`` is the pinned lower-case hex digest, or ``None`` when no trustworthy value is known
    ("not pinned"). ``size`` is the expected size in bytes when known.
    """

    filename: str
    url: str
    sha256: str | None
    kind: str
    size: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Asset kind must be one of {KINDS}, got {self.kind!r}")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"Asset filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None and not _SHA256_RE.match(self.sha256):
            raise ValueError(f"sha256 of {self.filename} must be 64 lower-case hex digits")

    @property
    def pinned(self) -> bool:
        """Whether the asset has a known sha256."""
        return self.sha256 is not None


@dataclass(frozen=True)
class ModelSpec:
    """One pretrained model: its architecture parameters and its checkpoint asset."""

    name: str
    family: str
    width: float
    checkpoint: Asset
    published_map: float
    params: int | None
    n_classes: int = 527
    description: str = ""


class AssetNotFoundError(FileNotFoundError):
    """An asset is not available locally and could not (or may not) be downloaded.

    The message names the file, its official URL and ``EARMARK_MODEL_DIR`` and says how to fix
    the problem. The command-line interface maps this error to exit code 2.
    """

    def __init__(
        self,
        message: str,
        *,
        asset_filename: str | None = None,
        url: str | None = None,
        searched: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.asset_filename = asset_filename
        self.url = url
        self.searched = searched


class UnpinnedAssetError(AssetNotFoundError):
    """A download was refused because the asset has no pinned sha256."""


class AssetIntegrityError(ValueError):
    """A file does not have the pinned sha256."""

    def __init__(self, path: Path | str, expected: str, actual: str, hint: str = "") -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        message = (
            f"sha256 mismatch for {self.path.name} ({self.path}): expected {expected}, "
            f"got {actual}. The file is corrupt, truncated or a different version."
        )
        if hint:
            message = f"{message} {hint}"
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _checkpoint(filename: str, sha256: str | None = None, size: int | None = None) -> Asset:
    return Asset(
        filename=filename,
        url=EFFICIENTAT_RELEASE_URL + filename,
        sha256=sha256,
        kind="checkpoint",
        size=size,
        description="EfficientAT MobileNetV3 checkpoint trained on AudioSet (MIT licence)",
    )


def _mn(
    name: str,
    width: float,
    filename: str,
    published_map: float,
    params: int | None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    note: str = "",
) -> ModelSpec:
    description = f"EfficientAT MobileNetV3, width {width:g}, AudioSet mAP {published_map:.3f}"
    if note:
        description = f"{description}, {note}"
    return ModelSpec(
        name=name,
        family="efficientat-mn",
        width=width,
        checkpoint=_checkpoint(filename, sha256, size),
        published_map=published_map,
        params=params,
        description=description,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _mn("mn01_as", 0.1, "mn01_as_mAP_298.pt", 0.298, 123_783),
        _mn("mn02_as", 0.2, "mn02_as_mAP_378.pt", 0.378, 324_695),
        _mn(
            "mn04_as",
            0.4,
            "mn04_as_mAP_432.pt",
            0.432,
            983_599,
            sha256="899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c",
            size=4_066_513,
        ),
        _mn("mn05_as", 0.5, "mn05_as_mAP_443.pt", 0.443, 1_430_000),
        _mn("mn10_as", 1.0, "mn10_as_mAP_471.pt", 0.471, 4_880_000),
        _mn("mn20_as", 2.0, "mn20_as_mAP_478.pt", 0.478, 17_910_000),
        _mn("mn30_as", 3.0, "mn30_as_mAP_482.pt", 0.482, 39_090_000),
        _mn("mn40_as", 4.0, "mn40_as_mAP_484.pt", 0.484, 68_430_000),
        _mn(
            "mn40_as_ext",
            4.0,
            "mn40_as_ext_mAP_487.pt",
            0.487,
            68_430_000,
            note="extended training (300 epochs)",
        ),
    )
}
"""Pretrained EfficientAT MobileNet models trained on AudioSet, keyed by official name."""

ASSETS: dict[str, Asset] = {
    "labels": Asset(
        filename="class_labels_indices.csv",
        url=LABELS_URL,
        sha256="cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429",
        kind="labels",
        size=14_675,
        description="the 527 AudioSet classes in model output order (CC BY-SA 4.0)",
    ),
    "ontology": Asset(
        filename="ontology.json",
        url=ONTOLOGY_URL,
        sha256="9c685f4403eecc3ca9be37fd7285cf212feaaea6ff7229d3e7ca89e0d1f2d15d",
        kind="ontology",
        size=342_780,
        description="AudioSet ontology: class hierarchy and descriptions (CC BY-SA 4.0)",
    ),
}
"""Non-checkpoint assets, keyed by role."""


def get_asset(name: str) -> Asset:
    """Look an asset up by model name, role (``labels``, ``ontology``) or file name."""
    if name in MODELS:
        return MODELS[name].checkpoint
    if name in ASSETS:
        return ASSETS[name]
    for asset in all_assets():
        if asset.filename == name:
            return asset
    known = ", ".join([*MODELS, *ASSETS])
    raise KeyError(f"Unknown asset {name!r}; known: {known}")


def all_assets() -> list[Asset]:
    """Every registered file: the checkpoints of :data:`MODELS`, then :data:`ASSETS`."""
    return [spec.checkpoint for spec in MODELS.values()] + list(ASSETS.values())


def needed_files(asset: Asset | None = None) -> list[Asset]:
    """The files a first run needs (the default model, the labels, the ontology used by
    ``--group-by``), with ``asset`` first when it is another one."""
    files = [MODELS[DEFAULT_MODEL].checkpoint, ASSETS["labels"], ASSETS["ontology"]]
    if asset is not None and asset not in files:
        files.insert(0, asset)
    return files


def spec_from_filename(filename: str) -> ModelSpec:
    """Infer a :class:`ModelSpec` from an EfficientAT checkpoint file name.

    A registered file name gives the registered spec. Otherwise names of the form
    ``mnXX_as[_ext|_no_im_pre]_mAP_NNN[(k)].pt`` (same architecture and front end as the
    registered models, e.g. the alternative runs ``mn40_as_mAP_483.pt``) give a spec with width
    ``XX/10`` and an unpinned checkpoint. Anything else raises ``ValueError``.
    """
    name = Path(filename).name
    for spec in MODELS.values():
        if spec.checkpoint.filename == name:
            return spec
    match = _CHECKPOINT_NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"Cannot tell which model {name!r} is: expected a registered model name "
            f"({', '.join(MODELS)}) or an EfficientAT AudioSet checkpoint named like "
            f"'mn10_as_mAP_471.pt'. Variants with another hop size, mel count or head "
            f"(_hop_, _mels_, _fc) are not supported."
        )
    width_code = int(match["width"])
    if width_code == 0:
        raise ValueError(f"Invalid width in checkpoint name {name!r}")
    variant = match["variant"] or ""
    registered = MODELS.get(match["base"] + variant) or MODELS.get(match["base"])
    width = width_code / 10
    params = registered.params if registered is not None and registered.width == width else None
    checkpoint = Asset(
        filename=name,
        url=EFFICIENTAT_RELEASE_URL + name,
        sha256=None,
        kind="checkpoint",
        description="checkpoint identified by its file name only (not pinned, not verified)",
    )
    return ModelSpec(
        name=match["base"] + variant,
        family="efficientat-mn",
        width=width,
        checkpoint=checkpoint,
        published_map=int(match["map"]) / 1000,
        params=params,
        description=f"EfficientAT MobileNetV3, width {width:g}, from file name {name}",
    )


def _check_registry() -> None:
    names = [a.filename for a in all_assets()]
    if len(set(names)) != len(names):  # pragma: no cover - guards edits of the tables above
        raise RuntimeError("duplicate file names in the asset registry")
    if DEFAULT_MODEL not in MODELS:  # pragma: no cover
        raise RuntimeError("DEFAULT_MODEL is not registered")


_check_registry()
