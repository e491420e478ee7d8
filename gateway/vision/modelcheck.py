"""Start-time checks: does the manifest describe the model file it names?

The output tensor's shape, the model's own class names (Ultralytics writes them into the ONNX
metadata) and its input size are known before the first frame, so a manifest that disagrees with
them is refused here, with one line that says what disagrees, instead of running blind:

* the output shape must fit the manifest's ``layout`` and class count (``auto`` must resolve);
* the manifest's class list must equal the model's ``names`` in index order. A different order
  is refused (``[fire, smoke]`` on a model trained as ``{0: smoke, 1: fire}`` would report every
  flame as smoke) unless the manifest says ``classes_by: name``: then each manifest entry is
  matched to the model's index by name (case-insensitive) and its role travels with it;
* the input size must match the model's fixed input (or its ``imgsz`` metadata when dynamic);
* the metadata ``task`` must be a detector's (or a classifier's for ``layout: classifier``);
* settings that cannot apply are warned about: ``nms_iou`` on a model with NMS in the graph
  (``e2e``) or on a classifier.

``check_model`` needs only the backend's description of the model (``input_hw``,
``output_shapes``, ``metadata``), so it runs wherever a backend is open: in the detector worker
before the first frame, and in ``fieldgate model check``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.vision.decode import Layout, LayoutError, detect_layout
from gateway.vision.manifest import ClassSpec, LoadedManifest, Manifest, ManifestError, classes_from_metadata

DETECTOR_TASKS = frozenset({"detect"})


class ModelCheckError(ManifestError):
    """The manifest and the model disagree; the message is one line saying how."""


class ModelFacts(Protocol):
    """What an open backend knows about its model (a subset of gateway.vision.backend.Backend)."""

    input_hw: tuple[int, int] | None
    output_shapes: list[list[Any]]
    metadata: dict[str, str]


@dataclass(slots=True)
class CheckResult:
    classes: list[ClassSpec]  # in the model's index order
    layout: Layout | None  # None: the output shape is dynamic, decided on the first frame
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def apply(self, loaded: LoadedManifest) -> LoadedManifest:
        """The manifest as checked: classes in the model's index order, the layout resolved."""
        update: dict[str, Any] = {"classes": self.classes}
        if self.layout is not None:
            update["layout"] = self.layout
        return LoadedManifest(loaded.manifest.model_copy(update=update), loaded.path, loaded.model_path)


def check_model(loaded: LoadedManifest, facts: ModelFacts) -> CheckResult:
    """Check ``loaded`` against the open model ``facts``; ModelCheckError (one line) on the first disagreement."""
    m, where = loaded.manifest, f"model manifest {loaded.path}"
    meta = facts.metadata
    warnings: list[str] = []
    notes: list[str] = []
    from_model = _model_classes(meta, where)
    classes = _resolve_classes(m, from_model, where, notes)
    if from_model is None and m.classes is not None:
        warnings.append("the model has no 'names' metadata: the class order in the manifest cannot be checked")
    _check_input(m, facts.input_hw, meta.get("imgsz"), where, warnings)
    if len(facts.output_shapes) > 1:
        notes.append(f"the model has {len(facts.output_shapes)} outputs; only the first is read")
    shape = facts.output_shapes[0] if facts.output_shapes else None
    if shape is None:
        raise ModelCheckError(f"{where}: the model {loaded.model_path.name} has no outputs")
    layout = _check_layout(m.layout, shape, len(classes), where)
    _check_task(m, meta.get("task"), where)
    effective = layout if layout is not None else (None if m.layout == "auto" else m.layout)
    if effective in ("e2e", "classifier") and "nms_iou" in m.model_fields_set:
        why = "the model suppresses overlaps inside its graph (end-to-end export); its own IoU was fixed at " \
            "export" if effective == "e2e" else "a classifier has no boxes to suppress"
        warnings.append(f"nms_iou {m.nms_iou} cannot apply: {why}")
    return CheckResult(classes, effective, warnings, notes)


def _model_classes(meta: dict[str, str], where: str) -> list[ClassSpec] | None:
    """The model's classes from its 'names' metadata (roles guessed from the names), None without."""
    if "names" not in meta:
        return None
    try:
        return classes_from_metadata(meta)
    except ManifestError as e:
        raise ModelCheckError(f"{where}: {e}") from e


def _key(name: str) -> str:
    return name.strip().casefold()


def _resolve_classes(
    m: Manifest, from_model: list[ClassSpec] | None, where: str, notes: list[str]
) -> list[ClassSpec]:
    if m.classes is None:
        if from_model is None:
            raise ModelCheckError(f"{where} lists no classes and the model metadata has no 'names' entry")
        notes.append("classes from the model's names, roles guessed: "
                     + ", ".join(f"{i} {c.name} ({c.role})" for i, c in enumerate(from_model)))
        return from_model
    listed = [c.name for c in m.classes]
    if from_model is None:
        if m.classes_by == "name":
            raise ModelCheckError(f"{where} says classes_by: name but the model has no 'names' metadata to match")
        return list(m.classes)
    model_names = [c.name for c in from_model]
    if [_key(n) for n in listed] == [_key(n) for n in model_names]:
        return list(m.classes)
    if sorted(_key(n) for n in listed) != sorted(_key(n) for n in model_names):
        raise ModelCheckError(
            f"{where} lists classes {listed} but the model's names are {model_names} (index order); "
            "the manifest must name exactly the model's classes")
    if m.classes_by != "name":
        raise ModelCheckError(
            f"{where} lists classes {listed} but the model's names are {model_names} (index order): every "
            "class would be reported as another; list them in the model's order, or set 'classes_by: name'")
    by_key = {_key(c.name): c for c in m.classes}
    mapped = [ClassSpec(name=n, role=by_key[_key(n)].role) for n in model_names]
    notes.append("classes mapped by name to the model's index order: "
                 + ", ".join(f"{i} {c.name} ({c.role})" for i, c in enumerate(mapped)))
    return mapped


def _check_task(m: Manifest, task: str | None, where: str) -> None:
    if task is None:
        return
    wanted = "classify" if m.layout == "classifier" else None
    if wanted is not None and task != wanted:
        raise ModelCheckError(f"{where} says layout: classifier but the model's task is {task!r}")
    if wanted is None and task == "classify" and m.layout != "auto":
        raise ModelCheckError(f"{where} says layout: {m.layout} but the model is a classifier (task 'classify')")
    if wanted is None and task not in DETECTOR_TASKS | {"classify"}:
        raise ModelCheckError(f"{where}: the model's task is {task!r}; only detectors ('detect') and "
                              "classifiers are supported")


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)  # literals only, never code
    except (ValueError, SyntaxError):
        return None


def _check_input(m: Manifest, input_hw: tuple[int, int] | None, imgsz: str | None, where: str,
                 warnings: list[str]) -> None:
    want = (m.input.height, m.input.width)
    if input_hw is not None:
        if input_hw != want:
            raise ModelCheckError(f"{where} says input {want[1]}x{want[0]} but the model takes "
                                  f"{input_hw[1]}x{input_hw[0]}")
        return
    size = _literal(imgsz)
    if isinstance(size, int):
        size = [size, size]
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        if tuple(size) != want:
            warnings.append(f"the model's input is dynamic and it was exported at {size[1]}x{size[0]} (imgsz); "
                            f"the manifest feeds {want[1]}x{want[0]}")
    else:
        warnings.append(f"the model's input size is dynamic; frames are letterboxed to {want[1]}x{want[0]}")


_SHAPES: dict[str, str] = {
    "yolov5": "[1, N, 5+nc]", "yolov8": "[1, 4+nc, N]", "e2e": "[1, K, 6]", "classifier": "[1, nc]",
}


def _check_layout(layout: Layout | str, shape: list[Any], nc: int, where: str) -> Layout | None:
    """The layout the model's first output has, or None when its shape is dynamic and layout is auto."""
    static = all(isinstance(d, int) for d in shape)
    if layout == "auto":
        if not static:
            return None
        try:
            return detect_layout(tuple(shape), nc)
        except LayoutError as e:
            raise ModelCheckError(f"{where}: {e}") from e
    reason = _misfit(layout, shape, nc)
    if reason is None:
        return layout  # type: ignore[return-value]  # not "auto": one of the four layouts
    hint = ""
    if static:
        try:
            hint = f"; it looks like {detect_layout(tuple(shape), nc)}"
        except LayoutError:
            hint = ""
    raise ModelCheckError(
        f"{where} says layout: {layout} with {nc} classes, expecting {_SHAPES[layout]} = {reason}, but the "
        f"model's output is {shape}{hint}")


def _misfit(layout: str, shape: list[Any], nc: int) -> str | None:
    """Why ``shape`` cannot be ``layout`` for ``nc`` classes (a dynamic dimension fits anything)."""

    def fixed(i: int, want: int) -> bool:
        return not isinstance(shape[i], int) or shape[i] == want

    if layout == "classifier":
        return None if len(shape) == 2 and fixed(0, 1) and fixed(1, nc) else f"[1, {nc}]"
    if len(shape) != 3 or not fixed(0, 1):
        return {"yolov5": f"[1, N, {5 + nc}]", "yolov8": f"[1, {4 + nc}, N]", "e2e": "[1, K, 6]"}[layout]
    if layout == "yolov5":
        return None if fixed(2, 5 + nc) else f"[1, N, {5 + nc}]"
    if layout == "yolov8":
        # A [1, K, 6] NMS export of a two-class model has 6 rows too: N anchors outnumber the rows.
        many = not isinstance(shape[2], int) or not isinstance(shape[1], int) or shape[2] > shape[1]
        return None if fixed(1, 4 + nc) and many else f"[1, {4 + nc}, N] with N > {4 + nc}"
    many = not isinstance(shape[1], int) or not isinstance(shape[2], int) or shape[1] > shape[2]
    return None if fixed(2, 6) and many else "[1, K, 6]"


def open_checked(
    manifest: Any, backend_name: str = "onnxruntime", threads: int = 1, graph_optimization: str = "all"
) -> tuple[LoadedManifest, Any, CheckResult]:
    """Load the manifest, open its model on ``backend_name`` and check them against each other.

    Returns the manifest as checked (``CheckResult.apply``), the open backend and the result; raises
    ManifestError (ModelCheckError for a disagreement) or BackendError. The one way in for the worker,
    ``fieldgate model check`` and ``fieldgate model eval``, so all three refuse the same manifests."""
    from gateway.vision.backend import open_backend
    from gateway.vision.manifest import load_manifest

    loaded = load_manifest(manifest)
    backend = open_backend(backend_name, loaded.model_path, threads, graph_optimization)
    result = check_model(loaded, backend)
    return result.apply(loaded), backend, result
