"""The inference backend interface, and loading a backend by name without importing it here.

The worker process asks for a backend by name ("onnxruntime"; "rknn" and "openvino" are reserved)
and this module imports the driver that implements it, so gateway code never imports an
inference library itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gateway.contracts import Backend

BACKENDS: dict[str, str] = {
    "onnxruntime": "drivers.onnx.backend:OnnxBackend",
    # Reserved: an RKNN (Rockchip NPU) or OpenVINO backend is a module exposing the same members.
}


class BackendError(RuntimeError):
    """No such backend, or the backend could not load the model."""


def open_backend(name: str, model_path: Path, threads: int, graph_optimization: str) -> Backend:
    target = BACKENDS.get(name)
    if target is None:
        raise BackendError(f"unknown inference backend {name!r}; available: {sorted(BACKENDS)}")
    module_name, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as e:
        raise BackendError(f"backend {name!r} is not installed ({e}); install fieldgate[vision]") from e
    try:
        backend: Backend = cls(model_path, threads=threads, graph_optimization=graph_optimization)
    except Exception as e:
        raise BackendError(str(e)) from e
    return backend
