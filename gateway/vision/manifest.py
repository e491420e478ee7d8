"""Model manifest: the YAML file beside each model that says what the model is and how to read it.

An operator who drops in a trained model writes one of these. Loading refuses a model whose bytes do
not match the recorded sha256, so a truncated copy or a swapped file never runs silently.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError, model_validator

from gateway.config.yamlmarks import ConfigSyntaxError, load_marked
from gateway.shared import StrictModel
from gateway.vision.decode import Layout

Role = Literal["fire", "smoke", "ignore"]
# How a frame is resized into the model input; the backend maps each name to its own filter.
Interpolation = Literal["linear", "area", "nearest", "cubic"]


class ManifestError(ValueError):
    """The manifest or the model it names cannot be used; the message says why and where."""


class ClassSpec(StrictModel):
    name: str = Field(min_length=1)
    role: Role


class InputSpec(StrictModel):
    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)
    # Defaults are what Ultralytics' own predictor feeds an exported model (LetterBox: cv2.INTER_LINEAR,
    # RGB): thresholds tuned in the trainer's tools then hold here. Set them if your exporter differs.
    color: Literal["rgb", "bgr"] = Field(default="rgb", description="channel order the model was trained on")
    resize: Interpolation = Field(
        default="linear", description="resize filter the training/prediction pipeline used (linear = bilinear)"
    )
    scale: float = Field(default=1 / 255.0, gt=0, description="pixel value multiplier (1/255 -> 0..1)")
    pad_value: int = Field(default=114, ge=0, le=255, description="letterbox border grey level")


class RoleThresholds(StrictModel):
    fire: float = Field(default=0.35, gt=0, le=1)
    smoke: float = Field(default=0.35, gt=0, le=1)


class Manifest(StrictModel):
    file: str = Field(min_length=1, description="model file, relative to the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    layout: Layout | Literal["auto"] = "auto"
    input: InputSpec
    classes: list[ClassSpec] | None = Field(
        default=None, description="class index order; omitted -> read 'names' from the model metadata"
    )
    classes_by: Literal["index", "name"] = Field(
        default="index",
        description="index: 'classes' is the model's index order and must equal its 'names' metadata; "
        "name: each entry is matched to the model's index by name (gateway/vision/modelcheck.py)",
    )
    thresholds: RoleThresholds = Field(default_factory=RoleThresholds)
    nms_iou: float = Field(default=0.45, gt=0, le=1)
    max_detections: int = Field(default=100, ge=1, le=1000)
    licence: str = Field(min_length=1)
    provenance: str = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _unique_classes(self) -> Manifest:
        if self.classes is not None:
            names = [c.name for c in self.classes]
            if len(set(names)) != len(names):
                raise ValueError("class names must be unique")
            if not any(c.role != "ignore" for c in self.classes):
                raise ValueError("no class has role fire or smoke: the model would never raise anything")
        return self


class LoadedManifest:
    """A manifest whose model file exists and matches its hash."""

    def __init__(self, manifest: Manifest, path: Path, model_path: Path) -> None:
        self.manifest = manifest
        self.path = path
        self.model_path = model_path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: Path | str) -> LoadedManifest:
    """Parse and validate ``path``, then check the model file's sha256. Raises ManifestError."""
    path = Path(path)
    try:
        raw = load_marked(path).data  # the config's bounded loader: a manifest is input from outside too
    except ConfigSyntaxError as e:
        raise ManifestError(f"model manifest {e}") from e
    if not isinstance(raw, dict):
        raise ManifestError(f"model manifest {path} must be a mapping, got {type(raw).__name__}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise ManifestError(f"model manifest {path} is invalid:\n" + "\n".join(lines)) from e
    model_path = (path.parent / manifest.file).resolve()
    if not model_path.is_file():
        raise ManifestError(
            f"model manifest {path} names {manifest.file}, which does not exist ({model_path})"
        )
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise ManifestError(
            f"model {model_path} does not match its manifest {path}: sha256 is {actual}, "
            f"manifest says {manifest.sha256}. Refusing to run a model that is not the one described; "
            "re-copy the file or update the manifest after checking where the model came from."
        )
    return LoadedManifest(manifest, path, model_path)


def _role_of(name: str) -> Role:
    low = name.lower()
    if "smoke" in low:
        return "smoke"
    if "fire" in low or "flame" in low:
        return "fire"
    return "ignore"


def classes_from_metadata(metadata: dict[str, str]) -> list[ClassSpec]:
    """Class list from a model's metadata ``names`` (Ultralytics writes "{0: 'fire', 1: 'smoke'}")."""
    text = metadata.get("names")
    if text is None:
        raise ManifestError("the manifest lists no classes and the model metadata has no 'names' entry")
    try:
        names = ast.literal_eval(text)  # literal_eval evaluates literals only, never code
    except (ValueError, SyntaxError) as e:
        raise ManifestError(f"model metadata 'names' is not a literal dict or list: {text[:80]!r}") from e
    if isinstance(names, dict):
        try:
            ordered = [str(names[i]) for i in range(len(names))]
        except KeyError as e:
            raise ManifestError(f"model metadata 'names' keys are not 0..{len(names) - 1}") from e
    elif isinstance(names, list):
        ordered = [str(n) for n in names]
    else:
        raise ManifestError("model metadata 'names' is neither a dict nor a list")
    return [ClassSpec(name=n, role=_role_of(n)) for n in ordered]


def class_thresholds(classes: list[ClassSpec], th: RoleThresholds) -> npt.NDArray[np.float32]:
    """Per-class confidence thresholds; 'ignore' classes still decode (they can win the argmax)
    at the lower role threshold, and are dropped afterwards."""
    floor = min(th.fire, th.smoke)
    return np.asarray(
        [th.fire if c.role == "fire" else th.smoke if c.role == "smoke" else floor for c in classes],
        np.float32,
    )
