"""ONNX Runtime inference backend (the vision worker opens it by name through gateway/registry.py).

``load_backend`` is the factory the registry names; onnxruntime loads only in the worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.contracts import Backend


def load_backend(model_path: Path, *, threads: int, graph_optimization: str) -> Backend:
    from drivers.onnx.backend import OnnxBackend

    return OnnxBackend(model_path, threads=threads, graph_optimization=graph_optimization)
