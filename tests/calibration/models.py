"""Small float models, samples and a float-run oracle for the calibration tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn(seed: int = 0, opset: int = 17, named: bool = True, batch: object = "N") -> onnx.ModelProto:
    """x[N,3,8,8] → Conv(4) → Relu → Conv(2, 1x1) → y; weights and biases off any grid."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (4,)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (2,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1" if named else "", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1" if named else ""),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2" if named else ""),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2, 8, 8])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 8
    onnx.checker.check_model(model)
    return model


def make_samples(n: int = 6, seed: int = 1, shape: tuple[int, ...] = (1, 3, 8, 8)) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_t(4, shape) * 0.7).astype(np.float32)} for _ in range(n)]


def float_tensors(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """The named tensors of the float model over all samples, concatenated flat (an oracle)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [sess.run(names, f) for f in feeds]
    return {name: np.concatenate([r[i].reshape(-1) for r in runs]) for i, name in enumerate(names)}


def two_input_bn(seed: int = 0) -> onnx.ModelProto:
    """a, b [N,3,6,6] → Add → Conv(4) → BatchNormalization → Relu → y (two inputs, a foldable BN)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "w": rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32), "beta": rng.normal(0, 0.1, 4).astype(np.float32),
        "mean": rng.normal(0, 0.1, 4).astype(np.float32), "var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Conv", ["s", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 6, 6]) for n in ("a", "b")]
    graph = helper.make_graph(nodes, "two", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def scalar_input(seed: int = 0) -> onnx.ModelProto:
    """x [N,8] float and a scalar rate r (int64[], like silero-vad's ``sr``) → x·r/1000 → MatMul → Relu → y."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["r"], ["rf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Div", ["rf", "k"], ["rk"], name="div"),
        helper.make_node("Mul", ["x", "rk"], ["xs"], name="mul"),
        helper.make_node("MatMul", ["xs", "w"], ["m"], name="matmul"),
        helper.make_node("Relu", ["m"], ["y"], name="relu"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
              helper.make_tensor_value_info("r", TensorProto.INT64, [])]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 4)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(1000.0, np.float32), "k")]
    graph = helper.make_graph(nodes, "scalar", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def masked_attention(seed: int = 0) -> onnx.ModelProto:
    """A text model's attention with the Hugging Face mask: ``(1 - mask) * float32.min`` added to
    the scores (x[1,8,16] float, mask[1,8] int64 → y[1,8,4])."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (16, 16)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.5, (16, 4)).astype(np.float32), "wo"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "big"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["q"], name="proj"),
             helper.make_node("Transpose", ["x"], ["xt"], name="xt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "xt"], ["scores"], name="scores"),
             helper.make_node("Cast", ["mask"], ["maskf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Sub", ["one", "maskf"], ["inv"], name="sub"),
             helper.make_node("Mul", ["inv", "big"], ["ext"], name="ext"),
             helper.make_node("Unsqueeze", ["ext", "axis1"], ["ext3"], name="unsq"),
             helper.make_node("Add", ["scores", "ext3"], ["masked"], name="add"),
             helper.make_node("Softmax", ["masked"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "x"], ["ctx"], name="mix"),
             helper.make_node("MatMul", ["ctx", "wo"], ["y"], name="out")]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16]),
                                                   helper.make_tensor_value_info("mask", TensorProto.INT64, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def masked_samples(n: int = 3, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mask = np.ones((1, 8), np.int64)
        mask[0, 5 + i % 3:] = 0  # padding at the end
        out.append({"x": rng.normal(size=(1, 8, 16)).astype(np.float32), "mask": mask})
    return out
