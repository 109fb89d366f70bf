"""int16 twins: scoring "this node's activations in int16" without re-calibrating.

The original toolchain's remedy for a sensitive node is int16 (the original article: set its
activations to int16, or run it on the CPU; ``hmct``'s ``sensitivity_analysis(qtype="int16")``).
An int16 calibration node keeps the 8-bit node's range with 256 times finer steps: the threshold
``T = scale * 127`` becomes ``scale16 = T / 32767`` (reference §9.5), and an asymmetric range
``[lo, hi]`` is spread over the 65,536 levels of int16 (uint16 for a uint8 node). A scale that is
a power of two (AMD Quark's XINT8 and other NPU formats, which shift instead of multiplying) stays
one: ``scale / 256`` with the zero point times 256, the same range to within one 8-bit step.

:func:`int16_twins` adds, right after each named 8-bit activation calibration node, a *twin*
calibration node with those parameters, switched off in the file. A configuration then chooses
per tensor: the 8-bit node on (int8), the twin on and the 8-bit node off (int16: the twin rounds
the float value, or the Relu a deleted one restores), or both off (float). Every analysis runs on
the twin model unchanged, exactly: the twins are ordinary calibration nodes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import OptionError
from ..formats.params import thresholds_of
from ..model import CalibratedModel
from ..quantizer import QTYPE_RANGES, Quantizer

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["TWIN_SUFFIX", "int16_context", "int16_params", "int16_twins"]

#: a twin's name: its 8-bit calibration node's name and this
TWIN_SUFFIX = "@int16"

_WIDER = {"int8": "int16", "uint8": "uint16"}
_NUMPY_TYPE = {"int16": np.int16, "uint16": np.uint16}


def int16_params(q: Quantizer) -> tuple[str, np.ndarray, np.ndarray]:
    """(qtype, scale, zero point) of the 16-bit node with ``q``'s range, per channel where ``q`` is
    (the arrays shaped as its own)."""
    qtype = _WIDER[q.qtype]
    s = np.asarray(q.scale, np.float64)
    zp = np.broadcast_to(np.asarray(q.zero_point, np.int64), s.shape)
    qmin, qmax = QTYPE_RANGES[q.qtype]
    qmin16, qmax16 = QTYPE_RANGES[qtype]
    symmetric = (zp == 0) & (qmin < 0)  # the threshold T = scale * qmax stays
    lo = s * (qmin - zp)
    spread = ((s * (qmax - zp) - lo) / (qmax16 - qmin16)).astype(np.float32).astype(np.float64)
    scale = np.where(symmetric, s * qmax / qmax16, spread)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.where(symmetric, 0, np.clip(np.round(qmin16 - lo / spread), qmin16, qmax16))
    pow2 = (s > 0) & (np.frexp(s)[0] == 0.5)  # a power of two (NPU formats: shifts, not multiplies) stays one
    return qtype, np.where(pow2, s / 256, scale).astype(np.float32), np.where(pow2, zp * 256, zero).astype(np.int64)


def _scale_type(q: Quantizer) -> np.dtype:
    """The type of ``q``'s scale in the file: a float16 model's twin must quantize float16 too."""
    name = q.nodes[0].input[1] if q.nodes and len(q.nodes[0].input) > 1 else None
    proto = next((t for t in q.initializers if t.name == name), None)
    return np.dtype(np.float32) if proto is None else helper.tensor_dtype_to_np_dtype(proto.data_type)


def _check(model: CalibratedModel, names: Collection[str]) -> list[Quantizer]:
    qmap = model.quantizer_map
    chosen = [qmap[n] for n in names]
    for q in chosen:
        why = ("a weight calibration node (int16 is for activations; weights stay 8-bit)" if q.kind == "weight" else
               f"{q.qtype}, not int8 or uint8" if q.qtype not in _WIDER else
               "inside an If/Loop/Scan body" if q.scope is not None else "")
        if why:
            raise OptionError(f"calibration node {q.name!r} is {why}; int16 applies to 8-bit activation "
                              "calibration nodes: leave its node out, or keep it in float instead")
    return chosen


def int16_twins(model: CalibratedModel, names: Collection[str]) -> tuple[CalibratedModel, dict[str, str]]:
    """``model`` with an int16 twin after each activation calibration node in ``names`` (switched
    off), and the map from each of those nodes to its twin's name."""
    chosen = _check(model, names)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    domain = "" if opset >= 21 else "com.microsoft"  # 16-bit QuantizeLinear: opset 21, else ONNX Runtime's own
    placeholders = {n.name: i for i, n in enumerate(proto.graph.node)}
    twins: dict[str, Quantizer] = {}
    renamed: dict[str, Quantizer] = {}
    inserts: list[tuple[int, onnx.NodeProto]] = []
    for q in chosen:
        twin_name, narrow = q.name + TWIN_SUFFIX, q.output + "::8bit"
        qtype, scale, zero = int16_params(q)
        scale_init = numpy_helper.from_array(scale.astype(_scale_type(q)), f"{twin_name}::scale")
        zero_init = numpy_helper.from_array(zero.astype(_NUMPY_TYPE[qtype]), f"{twin_name}::zero_point")
        ops = (helper.make_node("QuantizeLinear", [narrow, scale_init.name, zero_init.name], [f"{twin_name}::q"],
                                name=twin_name, domain=domain),
               helper.make_node("DequantizeLinear", [f"{twin_name}::q", scale_init.name, zero_init.name], [q.output],
                                name=f"{twin_name}::dq", domain=domain))
        for op in ops if q.axis is not None else ():
            op.attribute.append(helper.make_attribute("axis", q.axis))
        twins[q.name] = Quantizer(twin_name, "activation", narrow, q.output, qtype, q.axis, scale, zero,
                                  thresholds_of(qtype, scale, zero, q.axis), enabled=False, nodes=ops,
                                  initializers=(scale_init, zero_init))
        renamed[q.name] = replace(q, output=narrow, nodes=tuple(_writing(n, q.output, narrow) for n in q.nodes),
                                  off_node=_writing(q.off_node, q.output, narrow) if q.off_node is not None else None)
        i = placeholders[q.name]
        proto.graph.node[i].output[0] = narrow
        inserts.append((i + 1, twins[q.name].placeholder()))
    for i, node in sorted(inserts, key=lambda x: -x[0]):
        proto.graph.node.insert(i, node)
    quantizers = []
    for q in model.quantizers:
        quantizers.append(renamed.get(q.name, q))
        if q.name in twins:
            quantizers.append(twins[q.name])
    return replace(model, proto=proto, quantizers=tuple(quantizers)), {q: t.name for q, t in twins.items()}


def _writing(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    """A copy of ``node`` that writes ``new`` where it wrote ``old``."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.output[:] = [new if o == old else o for o in copy.output]
    return copy


def int16_context(ctx: Context, names: Collection[str]) -> tuple[Context, dict[str, str]]:
    """A context over :func:`int16_twins` of ``ctx``'s model, with the same data and runtime."""
    from ..context import Context
    from ..engine.engine import Engine

    model, twins = int16_twins(ctx.model, names)
    shapes = {name: tuple(arr.shape) for name, arr in ctx.data[0].items()}
    twin_ctx = Context(model, ctx.data, Engine(model, providers=ctx.engine.providers, threads=ctx.engine.threads,
                                               shapes=shapes), cache=False)
    twin_ctx.batch_size = ctx.batch_size
    return twin_ctx, twins
