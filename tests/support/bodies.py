"""Float models with control flow (If, Loop, Scan), and a QDQ pass that reaches into their bodies.

ONNX Runtime's ``quantize_static`` leaves bodies alone, so :func:`add_qdq` plays the quantizer: a
QuantizeLinear → DequantizeLinear pair on both inputs of every Conv/MatMul/Gemm, in the main graph
and in every body, with its scale and zero point stored in the graph where the pair sits. Weight
scales come from the weights (per-tensor int8, symmetric); activation scales are fixed guesses
(uint8 with a zero point): any scale makes a valid calibrated model, which is all the brute-force
comparisons need.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["add_qdq", "if_model", "loop_model", "scan_model"]

OPSET = 17


def _init(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    return model


def if_model(seed: int = 0) -> onnx.ModelProto:
    """x [N,3,8,8] → Conv (main) → If(mean > 0): then Conv(w_then, a body constant) + Relu,
    else Conv(w_else, a main-graph constant read from the body) → Conv (main) → y."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])
    then_g = helper.make_graph(
        [helper.make_node("Conv", ["h", "w_then"], ["t1"], name="then_conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["t1"], ["t2"], name="then_relu"),
         helper.make_node("Identity", ["t2"], ["b_then"], name="then_out")],
        "then", [], [helper.make_tensor_value_info("b_then", TensorProto.FLOAT, None)], [_init(rng, "w_then", 6, 6, 3, 3)])
    else_g = helper.make_graph(
        [helper.make_node("Conv", ["h", "w_else"], ["b_else"], name="else_conv", pads=[1, 1, 1, 1])],
        "else", [], [helper.make_tensor_value_info("b_else", TensorProto.FLOAT, None)], [])
    nodes = [
        helper.make_node("Conv", ["x", "w_in"], ["h0"], name="conv_in", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h0"], ["h"], name="relu_in"),
        helper.make_node("ReduceMean", ["x"], ["m"], name="mean", keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["cond"], name="positive"),
        helper.make_node("If", ["cond"], ["branch"], name="if_sign", then_branch=then_g, else_branch=else_g),
        helper.make_node("Conv", ["branch", "w_out"], ["y"], name="conv_out", pads=[1, 1, 1, 1]),
    ]
    inits = [_init(rng, "w_in", 6, 3, 3, 3), _init(rng, "w_else", 6, 6, 3, 3), _init(rng, "w_out", 4, 6, 3, 3),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    return _model(nodes, [x], [y], inits)


def loop_model(seed: int = 0, steps: int = 3) -> onnx.ModelProto:
    """x [1,8] → Loop (``steps`` times): s ← tanh(MatMul(s, w_loop)) + x, w_loop a body constant;
    also a scan output of every step → MatMul (main) on the final state → y [1,4], and the
    stacked steps as a second output."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    body = helper.make_graph(
        [helper.make_node("MatMul", ["s_in", "w_loop"], ["mm"], name="loop_matmul"),
         helper.make_node("Tanh", ["mm"], ["th"], name="loop_tanh"),
         helper.make_node("Add", ["th", "x"], ["s_out"], name="loop_add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
         helper.make_node("Identity", ["s_out"], ["step"], name="loop_step")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("step", TensorProto.FLOAT, [1, 8])],
        [_init(rng, "w_loop", 8, 8, scale=0.5)])
    nodes = [
        helper.make_node("Loop", ["trips", "", "x"], ["s_final", "steps"], name="loop", body=body),
        helper.make_node("MatMul", ["s_final", "w_head"], ["y"], name="head"),
    ]
    inits = [numpy_helper.from_array(np.array(steps, np.int64), "trips"), _init(rng, "w_head", 8, 4)]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("steps", TensorProto.FLOAT, [steps, 1, 8])]
    return _model(nodes, [x], outs, inits)


def scan_model(seed: int = 0) -> onnx.ModelProto:
    """x [5,6] (a sequence of 5 steps) → Scan: h ← Relu(MatMul(x_t, w_x) + MatMul(h, w_h)) → y = last h."""
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "w_x"], ["a"], name="scan_in"),
         helper.make_node("MatMul", ["h_in", "w_h"], ["r"], name="scan_rec"),
         helper.make_node("Add", ["a", "r"], ["z"], name="scan_add"),
         helper.make_node("Relu", ["z"], ["h_out"], name="scan_relu"),
         helper.make_node("Identity", ["h_out"], ["h_t"], name="scan_step")],
        "body",
        [helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("h_t", TensorProto.FLOAT, [1, 4])],
        [_init(rng, "w_x", 6, 4, scale=0.5), _init(rng, "w_h", 4, 4, scale=0.5)])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 6])
    nodes = [helper.make_node("Scan", ["h0", "x"], ["y", "hs"], name="scan", body=body, num_scan_inputs=1)]
    inits = [numpy_helper.from_array(np.zeros((1, 4), np.float32), "h0")]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("hs", TensorProto.FLOAT, [5, 1, 4])]
    return _model(nodes, [x], outs, inits)


_QUANTIZED = ("Conv", "MatMul", "Gemm")


def add_qdq(model: onnx.ModelProto, activation_scale: float = 0.02, symmetric: bool = False) -> onnx.ModelProto:
    """A copy of ``model`` with a Q→DQ pair on inputs 0 and 1 of every Conv/MatMul/Gemm, at every
    depth (``symmetric``: int8 activations with zero point 0, as HzCalibration models have)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts: dict[str, np.ndarray] = {}
    _qdq_graph(out.graph, consts, activation_scale, symmetric)
    return out


def _qdq_graph(g: onnx.GraphProto, outer: dict[str, np.ndarray], activation_scale: float, symmetric: bool) -> None:
    consts = {**outer, **{t.name: numpy_helper.to_array(t) for t in g.initializer}}
    for node in g.node:  # exporters also write weights as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                _qdq_graph(sub, consts, activation_scale, symmetric)
        if node.op_type in _QUANTIZED:
            for slot in (0, 1):
                src = node.input[slot]
                base = f"{node.name}_in{slot}"
                if src in consts:  # a weight: symmetric int8 per tensor
                    scale = max(float(np.abs(consts[src]).max()), 1e-6) / 127.0
                    zp = numpy_helper.from_array(np.array(0, np.int8), f"{base}_zp")
                else:  # an activation: uint8 around zero, or int8
                    scale = activation_scale
                    zp = numpy_helper.from_array(np.array(0, np.int8) if symmetric else np.array(128, np.uint8), f"{base}_zp")
                g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"), zp])
                nodes.append(helper.make_node("QuantizeLinear", [src, f"{base}_scale", zp.name], [f"{base}_q"],
                                              name=f"{base}_QuantizeLinear"))
                nodes.append(helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", zp.name], [f"{base}_dq"],
                                              name=f"{base}_DequantizeLinear"))
                node.input[slot] = f"{base}_dq"
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
