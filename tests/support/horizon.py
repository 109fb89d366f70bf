"""HzCalibration models made from symmetric QDQ twins, for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def hz_twin(qdq: onnx.ModelProto, *, authoritative_scales: bool = False, legacy_bits: bool = False,
            off: set[str] = frozenset()) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Replace each symmetric Q→DQ pair by an ``HzCalibration`` node; returns the model and the
    map QuantizeLinear name → HzCalibration name (``<input>_HzCalibration``, as the toolchain names them)."""
    names: dict[str, str] = {}
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    _twin_graph(model.graph, {}, names, authoritative_scales, legacy_bits, off)
    model.opset_import.append(helper.make_opsetid("horizon", 1))
    return model, names


def _twin_graph(g: onnx.GraphProto, outer: dict[str, np.ndarray], names: dict[str, str], authoritative_scales: bool,
                legacy_bits: bool, off: set[str]) -> None:
    """Rewrite the pairs of ``g`` and, in turn, of every body inside it."""
    inits = {**outer, **{t.name: numpy_helper.to_array(t) for t in g.initializer}}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    new_nodes = []
    dq_done: set[str] = set()
    for n in g.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                _twin_graph(sub, inits, names, authoritative_scales, legacy_bits, off)
        if n.op_type == "DequantizeLinear" and n.name in dq_done:
            continue
        if n.op_type != "QuantizeLinear":
            new_nodes.append(n)
            continue
        (dq,) = consumers[n.output[0]]
        dq_done.add(dq.name)
        scale = inits[n.input[1]].astype(np.float32).reshape(-1)
        zp = inits[n.input[2]]
        assert not np.any(zp), "hz_twin needs symmetric calibration nodes"
        qtype = {np.dtype(np.int8): "int8", np.dtype(np.int16): "int16"}[zp.dtype]
        qmax = 127 if qtype == "int8" else 32767
        name = f"{n.input[0]}_HzCalibration"
        names[n.name] = name
        attrs: dict[str, object] = {"thresholds": (scale * np.float32(qmax)).astype(np.float32).tolist(),
                                    "switch": "OFF" if n.name in off else "ON", "constant": 1}
        if legacy_bits:
            attrs["bits"] = 8 if qtype == "int8" else 16
        else:
            attrs["qtype"] = qtype
        if authoritative_scales:
            attrs["scales"] = scale.tolist()
            attrs["constant"] = 2
        if scale.size > 1:
            attrs["axis"] = next((a.i for a in n.attribute if a.name == "axis"), 1)
        new_nodes.append(helper.make_node("HzCalibration", [n.input[0]], [dq.output[0]], name=name, domain="horizon", **attrs))
    del g.node[:]
    g.node.extend(new_nodes)
