"""ONNX Runtime backend: one session, configured for a small ARM box, plus the resize the worker uses.

It satisfies gateway.vision.backend.Backend structurally (drivers never import the gateway's
vision package). An RKNN or OpenVINO backend would be a sibling module with the same four members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

GRAPH_OPT = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded or has an input the pipeline cannot feed."""


def session_options(threads: int, graph_optimization: str) -> ort.SessionOptions:
    if graph_optimization not in GRAPH_OPT:
        raise ModelLoadError(
            f"graph_optimization must be one of {sorted(GRAPH_OPT)}, not {graph_optimization!r}"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    # One frame at a time: parallelism inside ops only; a second pool would just contend for the cores.
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = GRAPH_OPT[graph_optimization]
    so.log_severity_level = 3  # warnings would flood the journal on every start
    return so


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 2, graph_optimization: str = "all") -> None:
        path = Path(model_path)
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options(threads, graph_optimization),
                providers=["CPUExecutionProvider"],
            )
        except ModelLoadError:
            raise
        except Exception as e:  # onnxruntime raises several private exception types for bad files
            raise ModelLoadError(f"ONNX Runtime cannot load model {path}: {e}") from e
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"model {path} has {len(inputs)} inputs; expected one image input")
        inp = inputs[0]
        if inp.type != "tensor(float)":
            raise ModelLoadError(f"model {path} input {inp.name!r} is {inp.type}; expected tensor(float)")
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelLoadError(f"model {path} input shape {shape} is not [1, 3, H, W]")
        self._input_name: str = inp.name
        h, w = shape[2], shape[3]
        self.input_hw: tuple[int, int] | None = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.output_shapes: list[list[Any]] = [list(o.shape) for o in self._session.get_outputs()]
        meta = self._session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)

    def run(self, blob: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        outputs = self._session.run(None, {self._input_name: blob})
        return [np.asarray(o) for o in outputs]

    @staticmethod
    def resize(
        image: npt.NDArray[np.uint8], width: int, height: int, interpolation: str = "linear"
    ) -> npt.NDArray[np.uint8]:
        """Resize with the filter the model was trained with (manifest input.resize; Ultralytics: linear)."""
        try:
            flag = INTERPOLATION[interpolation]
        except KeyError:
            raise ValueError(f"unknown interpolation {interpolation!r}; one of {sorted(INTERPOLATION)}") from None
        return np.asarray(cv2.resize(image, (width, height), interpolation=flag), np.uint8)

    @staticmethod
    def split(image: npt.NDArray[np.uint8], planes: list[npt.NDArray[np.uint8]]) -> None:
        """De-interleave HxWxC into the C given HxW planes (about 6x faster than numpy's strided copy)."""
        got = cv2.split(image, planes)
        for dst, src in zip(planes, got, strict=True):
            if src is not dst:  # OpenCV reallocated instead of writing in place (shape/type mismatch)
                dst[...] = src
