"""Small ONNX graphs built with onnx.helper, for tests and benchmarks.

* ``constant_output_model``: ignores its image and returns a fixed tensor, so a decoder can be
  checked against known boxes through a real onnxruntime session.
* ``yolov8n_sized_model``: random-weight convolutions with roughly YOLOv8n's compute and its
  [1, 4+nc, N] output, for honest benchmark figures without redistributing any weights. Its
  metadata carries what an Ultralytics export writes (``names``, ``task``, ``imgsz``, ``stride``),
  so start-time checks meet a model that describes itself the way a real one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by onnxruntime >= 1.14


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str] | None = None) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fieldgate",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    for k, v in (metadata or {}).items():
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, k: v})
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def constant_output_model(
    path: Path, output: npt.NDArray[np.float32], input_hw: tuple[int, int] = (64, 64),
    metadata: dict[str, str] | None = None,
) -> Path:
    """out = constant + 0 * mean(image): the image is consumed (so it is a real input) but has no effect."""
    h, w = input_hw
    const = numpy_helper.from_array(np.asarray(output, np.float32), "const")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["const", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "constant_output",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[const, numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    return _save(graph, path, metadata)


def ultralytics_metadata(names: Sequence[str], size: int) -> dict[str, str]:
    """The metadata keys an Ultralytics ONNX export writes that the start-time checks read."""
    return {"names": str(dict(enumerate(names))), "task": "detect", "imgsz": str([size, size]), "stride": "32",
            "batch": "1", "description": "random-weight stand-in (fieldgate tests), not a trained model"}


def yolov8n_sized_model(
    path: Path, size: int = 320, num_classes: int = 80, seed: int = 0, names: Sequence[str] | None = None
) -> Path:
    """A conv stack with about YOLOv8n's FLOPs per pixel and a [1, 4+nc, N] output over strides 8/16/32.

    ``names`` (index order) sets the class count and the metadata names; default ``class0..``."""
    if names is not None:
        num_classes = len(names)
    names = list(names) if names is not None else [f"class{i}" for i in range(num_classes)]
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(
        x: str, cin: int, cout: int, k: int, stride: int, name: str, act: bool = True, bias: float = 0.0
    ) -> str:
        wname, bname = f"{name}_w", f"{name}_b"
        scale = np.sqrt(2.0 / (cin * k * k))
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * scale).astype(
            np.float32), wname))
        inits.append(numpy_helper.from_array(np.full(cout, bias, np.float32), bname))
        nodes.append(helper.make_node("Conv", [x, wname, bname], [f"{name}_c"], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        if not act:
            return f"{name}_c"
        nodes.append(helper.make_node("Sigmoid", [f"{name}_c"], [f"{name}_s"]))
        nodes.append(helper.make_node("Mul", [f"{name}_c", f"{name}_s"], [name]))  # SiLU, as YOLOv8
        return name

    x = conv("images", 3, 16, 3, 2, "stem")
    x = conv(x, 16, 32, 3, 2, "d1")
    x = conv(x, 32, 32, 3, 1, "c1")
    x = conv(x, 32, 64, 3, 2, "d2")
    p3 = conv(conv(x, 64, 64, 3, 1, "c2a"), 64, 64, 3, 1, "c2b")
    x = conv(p3, 64, 128, 3, 2, "d3")
    p4 = conv(conv(x, 128, 128, 3, 1, "c3a"), 128, 128, 3, 1, "c3b")
    x = conv(p4, 128, 256, 3, 2, "d4")
    p5 = conv(conv(x, 256, 256, 3, 1, "c4a"), 256, 256, 3, 1, "c4b")
    heads = []
    for i, (p, c) in enumerate(((p3, 64), (p4, 128), (p5, 256))):
        h = conv(conv(p, c, 64, 3, 1, f"h{i}a"), 64, 64, 3, 1, f"h{i}b")
        # Strongly negative bias: like a trained model, almost no anchor clears the threshold.
        o = conv(h, 64, 4 + num_classes, 1, 1, f"h{i}o", act=False, bias=-8.0)
        shape_name = f"h{i}_shape"
        inits.append(numpy_helper.from_array(np.asarray([1, 4 + num_classes, -1], np.int64), shape_name))
        nodes.append(helper.make_node("Reshape", [o, shape_name], [f"h{i}_flat"]))
        heads.append(f"h{i}_flat")
    nodes.append(helper.make_node("Concat", heads, ["cat"], axis=2))
    nodes.append(helper.make_node("Sigmoid", ["cat"], ["output0"]))
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    graph = helper.make_graph(
        nodes, "yolov8n_sized",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + num_classes, n])],
        initializer=inits,
    )
    return _save(graph, path, ultralytics_metadata(names, size))
