"""Opening an inference backend by name in the vision worker process.

The worker asks for a backend by the detector section's ``backend:`` ("onnxruntime"; "rknn" and
"openvino" are reserved) and the registry's table says which driver loads it, so gateway code never
imports an inference library itself.
"""

from __future__ import annotations

from pathlib import Path

from gateway.contracts import Backend
from gateway.registry import inference_backend, inference_backends


class BackendError(RuntimeError):
    """No such backend, or the backend could not load the model."""


def open_backend(name: str, model_path: Path, threads: int, graph_optimization: str) -> Backend:
    load = inference_backend(name)
    if load is None:
        raise BackendError(f"unknown inference backend {name!r}; available: {inference_backends()}")
    try:
        return load(model_path, threads=threads, graph_optimization=graph_optimization)
    except ImportError as e:
        raise BackendError(f"backend {name!r} is not installed ({e}); install fieldgate[vision]") from e
    except Exception as e:
        raise BackendError(str(e)) from e
