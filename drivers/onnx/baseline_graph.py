"""The heuristic baseline fire/smoke "detector", written directly as an ONNX graph.

It is not a learned model. Per pixel it scores flame colour (bright, red >= green > blue, with
enough green that a red object is not fire) and smoke colour (unsaturated mid-grey). Over sliding
windows at four scales it pools those masks and regresses one box per window from the first and
second moments of the mask (centre = mean position, size = sqrt(12 x variance), exact for a
uniformly filled box). Score = fill density of that box x a saturating pixel-count term x a small size bonus,
so a window that holds the whole flame outscores its fragments. Output: YOLOv8 layout [1, 6, N] with
classes (fire, smoke). Single-frame colour cues fire on lamps, glare and grey sky; the temporal
confirmation stage (flicker, growth, persistence) is what makes the alarm trustworthy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_SIZE = 320
WINDOWS = ((32, 16), (64, 32), (128, 64), (256, 64))  # (window, stride) in input pixels
CLASSES = ("fire", "smoke")
OPSET = 17
IR_VERSION = 8
MIN_PIXELS = 12.0  # count term: 1 - exp(-count / MIN_PIXELS)
BONUS_PIXELS = 400.0


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: float | np.ndarray, hint: str = "c") -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def step(self, x: str, threshold: float, gain: float) -> str:
        """Soft step: clip(gain * (x - threshold), 0, 1)."""
        shifted = self.op("Sub", [x, self.const(threshold)], "sub")
        scaled = self.op("Mul", [shifted, self.const(gain)], "mul")
        return self.op("Clip", [scaled, self.const(0.0), self.const(1.0)], "step")


def _masks(g: _Graph) -> tuple[str, str]:
    split = g.name("split")
    r, gr, b = f"{split}_r", f"{split}_g", f"{split}_b"
    g.nodes.append(helper.make_node("Split", ["images"], [r, gr, b], axis=1))

    def mul(a: str, c: str) -> str:  # soft AND of two [0, 1] masks
        return g.op("Mul", [a, c], "and")

    def sub(a: str, c: str) -> str:
        return g.op("Sub", [a, c], "diff")

    fire = mul(
        mul(g.step(r, 0.60, 10.0), g.step(sub(gr, b), 0.08, 10.0)),
        mul(g.step(sub(r, gr), -0.02, 20.0),
            g.step(sub(gr, g.op("Mul", [r, g.const(0.3)], "r03")), 0.0, 10.0)),
    )
    hi = g.op("Max", [r, gr, b], "max")
    lo = g.op("Min", [r, gr, b], "min")
    sat = sub(hi, lo)
    smoke = mul(
        g.step(g.op("Neg", [sat], "neg"), -0.10, 15.0),
        mul(g.step(hi, 0.35, 10.0), g.step(g.op("Neg", [hi], "neg"), -0.85, 10.0)),
    )
    return fire, smoke


def _boxes_for(g: _Graph, mask: str, class_index: int, size: int) -> list[str]:
    """One [1, 6, n] block per window scale for one class mask."""
    xs = (np.arange(size, dtype=np.float32) + 0.5).reshape(1, 1, 1, size)
    ys = xs.reshape(1, 1, size, 1)
    x_c, y_c = g.const(xs, "xcoord"), g.const(ys, "ycoord")
    mx = g.op("Mul", [mask, x_c], "mx")
    my = g.op("Mul", [mask, y_c], "my")
    stack = g.op("Concat", [mask, mx, my, g.op("Mul", [mx, x_c], "mxx"), g.op("Mul", [my, y_c], "myy")],
                 "moments", axis=1)
    eps = g.const(1e-6)
    blocks = []
    for window, stride in WINDOWS:
        pooled = g.op("AveragePool", [stack], "pool", kernel_shape=[window, window], strides=[stride, stride])
        parts = [g.name("m") for _ in range(5)]
        g.nodes.append(helper.make_node("Split", [pooled], parts, axis=1))
        s0, sx, sy, sxx, syy = parts
        denom = g.op("Add", [s0, eps], "den")
        cx = g.op("Div", [sx, denom], "cx")
        cy = g.op("Div", [sy, denom], "cy")

        def extent(second: str, mean: str, window: int = window, denom: str = denom) -> str:
            var = g.op("Sub", [g.op("Div", [second, denom], "e2"), g.op("Mul", [mean, mean], "sq")], "var")
            var = g.op("Clip", [var, g.const(0.0), g.const(float(window * window))], "varc")
            side = g.op("Sqrt", [g.op("Mul", [var, g.const(12.0)], "v12")], "side")
            return g.op("Clip", [side, g.const(2.0), g.const(float(window))], "sidec")

        w, h = extent(sxx, cx), extent(syy, cy)
        count = g.op("Mul", [s0, g.const(float(window * window))], "count")
        density = g.op("Div", [count, g.op("Add", [g.op("Mul", [w, h], "area"), eps], "areae")], "dens")
        density = g.op("Clip", [density, g.const(0.0), g.const(1.0)], "densc")
        saturating = g.op("Sub", [g.const(1.0), g.op("Exp", [g.op("Mul", [count, g.const(-1 / MIN_PIXELS)],
                                                                      "negc")], "exp")], "sat")
        # Size bonus (0.85 -> 1.0): among equally dense boxes the one holding more of the blob wins NMS.
        bonus = g.op("Sub", [g.const(1.0), g.op("Exp", [g.op("Mul", [count, g.const(-1 / BONUS_PIXELS)],
                                                            "negb")], "expb")], "big")
        bonus = g.op("Add", [g.op("Mul", [bonus, g.const(0.15)], "b15"), g.const(0.85)], "bonus")
        score = g.op("Mul", [g.op("Mul", [density, saturating], "ds"), bonus], "score")
        zero = g.op("Mul", [score, g.const(0.0)], "zero")
        rows = [cx, cy, w, h, score if class_index == 0 else zero, score if class_index == 1 else zero]
        cat = g.op("Concat", rows, "rows", axis=1)  # [1, 6, gh, gw]
        blocks.append(g.op("Reshape", [cat, _shape(g)], "flat"))
    return blocks


def _shape(g: _Graph) -> str:
    n = g.name("shape")
    g.inits.append(numpy_helper.from_array(np.asarray([1, 6, -1], np.int64), n))
    return n


def build_baseline_model(size: int = INPUT_SIZE) -> onnx.ModelProto:
    g = _Graph()
    fire, smoke = _masks(g)
    blocks = _boxes_for(g, fire, 0, size) + _boxes_for(g, smoke, 1, size)
    g.nodes.append(helper.make_node("Concat", blocks, ["output0"], axis=2))
    n = sum(2 * ((size - w) // s + 1) ** 2 for w, s in WINDOWS)
    graph = helper.make_graph(
        g.nodes, "fieldgate_baseline_fire_smoke",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + len(CLASSES), n])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fieldgate-build-baseline", producer_version="1")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"names": str(dict(enumerate(CLASSES))),
                                   "description": "heuristic colour baseline, not a trained detector"})
    onnx.checker.check_model(model, full_check=True)
    return model


def baseline_model_bytes(size: int = INPUT_SIZE) -> bytes:
    """Deterministic serialisation: the same onnx release always yields the same bytes."""
    return bytes(build_baseline_model(size).SerializeToString(deterministic=True))
