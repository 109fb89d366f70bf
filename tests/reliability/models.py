"""Models and data folders for the reliability tests: good ones, and every kind of broken one.

Each broken model or data folder is made from a good one by one small change, so that a test
failure points at exactly one problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support.builders import image_samples, quantize_qdq, small_cnn

#: A QDQ model written by hand in ONNX text: an activation and a weight calibration node feeding
#: a Conv, a second activation calibration node after it (weights off the int8 grid).
QDQ_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,4,4] x) => (float[1,2,4,4] out)
<float s = {0.05}, int8 z = {0}, float sw = {0.0113}, float[2,2,1,1] w = {0.3137, -0.2071, 0.1234, 0.7071}> {
    qx = QuantizeLinear (x, s, z)
    dx = DequantizeLinear (qx, s, z)
    qw = QuantizeLinear (w, sw, z)
    dw = DequantizeLinear (qw, sw, z)
    c0 = Conv (dx, dw)
    q1 = QuantizeLinear (c0, s, z)
    d1 = DequantizeLinear (q1, s, z)
    r = Relu (d1)
    out = Add (r, dx)
}
"""


def qdq_text_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(QDQ_TEXT)
    names = {"QuantizeLinear": "Q", "DequantizeLinear": "DQ", "Conv": "Conv", "Relu": "Relu", "Add": "Add"}
    for i, node in enumerate(model.graph.node):
        node.name = f"{names[node.op_type]}_{i}"
    onnx.checker.check_model(model)
    return model


def text_samples(n: int = 3, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, 2, 4, 4)).astype(np.float32)} for _ in range(n)]


def write_folder(root: Path, samples: Sequence[Mapping[str, np.ndarray]]) -> Path:
    """The original layout: ``root/<input>/<i>.npy``."""
    for i, sample in enumerate(samples):
        for name, value in sample.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            np.save(root / name / f"{i}.npy", value)
    return root


def two_input_float(seed: int = 0) -> onnx.ModelProto:
    """Inputs ``a`` and ``b`` (N×3×8×8) → Add → Conv_0 → Relu → Conv_1 → output."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    w1 = rng.normal(0, 0.3, (4, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="Add_0"),
        helper.make_node("Conv", ["s", "w0"], ["c0"], name="Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="Relu_0"),
        helper.make_node("Conv", ["r0", "w1"], ["y"], name="Conv_1"),
    ]
    graph = helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 8, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def two_input_samples(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for k in ("a", "b")} for _ in range(n)]


def cnn_qdq(folder: Path, size: int = 16, samples: int = 4, seed: int = 1) -> tuple[Path, Path]:
    """A QDQ small CNN (ONNX Runtime's quantizer) and its calibration_data folder."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(small_cnn(seed=seed, size=size, channels=(4, 8)), folder / "float.onnx")
    data = image_samples(samples, size, seed=seed + 2)
    quantize_qdq(folder / "float.onnx", folder / "model.onnx", data[:2])
    return folder / "model.onnx", write_folder(folder / "calibration_data", data)


def tree_digest(*paths: Path) -> str:
    """SHA-256 over every file (path and bytes) under ``paths``: proves inputs are not modified."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
