"""Standard ONNX QDQ models: QuantizeLinear → DequantizeLinear pairs, and weights stored as integers.

What ONNX Runtime's ``quantize_static`` (and Quark, NNCF, ModelOpt) write:

* a Q→DQ pair on an activation or on a float weight initializer (``AddQDQPairToWeight``): one
  calibration node, named after its QuantizeLinear node;
* a lone DQ on an integer weight initializer (the default): one weight calibration node, named
  after the DequantizeLinear node; its float value comes from the float model when one is given,
  otherwise it cannot be switched off exactly (``exact=False``);
* a lone DQ on an int32 initializer: a quantized bias. With the float model, a weight calibration
  node like the others (switched off, the float bias: all-off is then the float model, and what
  the bias's rounding costs is measured — on int4 weights it can cost as much as a weight). Without
  it, an ordinary node that stays on in every configuration, the float reference included (the
  model's notes say so where the weights need the float model too; with Q→DQ pairs on the weights,
  as ``ptqdebug calibrate`` writes them, the int8 bias's rounding is far below the weights').

Deleted activations. ``quantize_static`` deletes a Relu (or Clip) whose effect the next
QuantizeLinear already has (a range starting at 0 clamps negatives), unless asked to keep it
(``QDQKeepRemovableActivations``). Switching that calibration node off would then drop the Relu
and the "float" model would not be the float model. So such a calibration node, switched off,
computes the deleted Relu/Clip: taken from the float model when one is given (the tensor name is
kept by the quantizer), else inferred when the range starts exactly at 0 right after an operator
that can produce negative values.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError
from ..graph import GraphIndex
from ..quantizer import QTYPE_RANGES, Quantizer, QuantizerKind, channel_axis_of
from . import Found
from .floatref import FloatModel
from .params import dequantize, qtype_of_onnx, thresholds_of

__all__ = ["find_qdq", "relu_wrongly_fused"]

_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")


def _is(node: onnx.NodeProto, op: str) -> bool:
    return node.op_type == op and node.domain in _QDQ_DOMAINS


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


class _Params(NamedTuple):
    scale: np.ndarray
    zero_point: np.ndarray
    qtype: str
    axis: int | None
    block_size: int | None
    protos: list[onnx.TensorProto]


def _params(index: GraphIndex, node: onnx.NodeProto) -> _Params:
    """Scale, zero point, qtype, axis, block size and the constants of a Q or DQ node."""
    names = list(node.input[1:3])
    for name in names:
        if name and name not in index.initializers:
            raise ModelError(
                f"{node.op_type} node {node.name!r} reads its scale or zero point {name!r} from a "
                "runtime tensor; expected constant quantization parameters (a calibrated model)"
            )
    protos = [index.initializers[n] for n in names if n]
    scale = numpy_helper.to_array(protos[0]).astype(np.float32)
    if len(protos) > 1:
        zp_proto = protos[1]
        zero_point = numpy_helper.to_array(zp_proto)
        qtype = qtype_of_onnx(zp_proto.data_type)
    else:
        code = _attr(node, "output_dtype", 0) or onnx.TensorProto.UINT8
        if node.op_type == "DequantizeLinear":
            code = index.initializers[node.input[0]].data_type if node.input[0] in index.initializers else code
        qtype = qtype_of_onnx(code)
        zero_point = np.zeros(scale.shape, dtype=np.int64)
    zero_point = np.asarray(zero_point)
    block_size = _attr(node, "block_size", 0) or None
    if block_size:
        return _Params(scale, zero_point, qtype, _block_axis(index, node, scale, zero_point, block_size), block_size, protos)
    if scale.size == 0 or scale.ndim > 1 or zero_point.size != scale.size:
        raise ModelError(
            f"{node.op_type} node {node.name!r} has a scale of shape {list(scale.shape)} and a zero point of shape "
            f"{list(zero_point.shape)}; expected one value (per tensor) or one per channel in both (a 1-D scale and zero point "
            "of the same length), or a block_size attribute (blocked quantization)"
        )
    axis: int | None = None
    if scale.ndim == 1 and scale.size > 1:
        axis = _attr(node, "axis", 1)
    return _Params(scale.reshape(-1) if scale.ndim else scale, zero_point.reshape(scale.shape), qtype, axis, None, protos)


def _block_axis(index: GraphIndex, node: onnx.NodeProto, scale: np.ndarray, zero_point: np.ndarray, block_size: int) -> int:
    """The blocked axis of a Q or DQ node with ``block_size``, its parameters checked against the
    quantized tensor's shape where that is known (a weight)."""
    shape = list(index.initializers[node.input[0]].dims) if node.input[0] in index.initializers else None
    rank = len(shape) if shape is not None else scale.ndim
    axis = _attr(node, "axis", 1)
    problem = ""
    if scale.ndim != rank or not -rank <= axis < rank:
        problem = f"a scale of rank {scale.ndim} and axis {axis} for a tensor of rank {rank}"
    elif zero_point.size > 1 and zero_point.shape != scale.shape:
        problem = f"a scale of shape {list(scale.shape)} and a zero point of shape {list(zero_point.shape)}"
    elif shape is not None:
        axis %= rank
        want = [-(-d // block_size) if i == axis else d for i, d in enumerate(shape)]
        if list(scale.shape) != want:
            problem = f"a scale of shape {list(scale.shape)} for a tensor of shape {shape}"
    if problem:
        raise ModelError(
            f"{node.op_type} node {node.name!r} (block_size {block_size}) has {problem}; expected one scale (and zero "
            f"point) per block of {block_size} values along the axis and one per value along the other axes, as ONNX "
            "opset 21 defines blocked quantization"
        )
    return axis % rank


#: Operators of a dynamically quantized model (``quantize_dynamic``): activations quantized at run
#: time from each tensor's own range, with no calibration to analyse.
_DYNAMIC = frozenset({"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
                      "MatMulIntegerToFloat", "DynamicQuantizeLSTM"})


def _check_same_dequantization(q: onnx.NodeProto, dqs: list[onnx.NodeProto], params: list[_Params]) -> None:
    """Several DequantizeLinear nodes of one QuantizeLinear must dequantize alike: ptqdebug reads
    them as one calibration node, the first one's, and the others as copies of its output."""
    def key(p: _Params) -> tuple[object, ...]:  # (a scale of shape [] and one of [1] are the same)
        return (p.axis if p.scale.size > 1 else None, p.block_size, p.protos[0].data_type, p.scale.reshape(-1).tobytes(),
                np.asarray(p.zero_point, np.int64).reshape(-1).tobytes())

    first = key(params[0])
    for dq, p in zip(dqs[1:], params[1:]):
        if key(p) != first:
            raise ModelError(
                f"QuantizeLinear node {q.name!r} is read by DequantizeLinear nodes {dqs[0].name!r} and {dq.name!r} with "
                "different scales, zero points, axes or output types: ptqdebug reads one QuantizeLinear and its DequantizeLinear nodes as "
                "one calibration node; expected the same parameters on every DequantizeLinear of one QuantizeLinear (a "
                "change of precision is a QuantizeLinear → DequantizeLinear → QuantizeLinear → DequantizeLinear chain)"
            )


def find_qdq(index: GraphIndex, float_model: FloatModel | None) -> list[Found]:
    """Every QDQ calibration node of the graph."""
    dynamic = sorted({n.op_type for n in index.nodes if n.op_type in _DYNAMIC})
    if dynamic:
        raise ModelError(
            f"the model is dynamically quantized ({', '.join(dynamic)}): its activations are quantized at run time from "
            "each tensor's own range, with no calibration nodes to analyse; expected a statically calibrated (QDQ) "
            "model: run `ptqdebug calibrate FLOAT_MODEL DATA -o OUT` (or onnxruntime's quantize_static) on the float model"
        )
    found: list[Found] = []
    paired: set[str] = set()
    weights = matched = 0  # weights, and those the float model holds (where one is given)
    for q in index.nodes:
        if not _is(q, "QuantizeLinear"):
            continue
        out = q.output[0]
        readers = index.consumers.get(out, [])
        bad = [n for n in readers if not _is(n, "DequantizeLinear")]
        if bad or not readers or out in index.outputs:
            what = f"{bad[0].op_type} node {bad[0].name!r}" if bad else "a graph output"
            raise ModelError(
                f"QuantizeLinear node {q.name!r} feeds {what}, not a DequantizeLinear: ptqdebug reads "
                "fake-quantized (QDQ) models; quantize with quant_format=QuantFormat.QDQ "
                "(or give the original toolchain's calibrated model)"
            )
        dqs = readers
        paired.update(n.name for n in dqs)
        params = _params(index, q)
        dq_params = [_params(index, d) for d in dqs]
        _check_same_dequantization(q, dqs, dq_params)
        dq_protos = [p for d in dq_params for p in d.protos]
        src = q.input[0]
        kind: QuantizerKind = "weight" if src in index.initializers else "activation"
        quantizer = Quantizer(
            name=q.name,
            kind=kind,
            input=src,
            output=dqs[0].output[0],
            qtype=params.qtype,
            axis=params.axis,
            scale=params.scale,
            zero_point=params.zero_point,
            thresholds=thresholds_of(params.qtype, params.scale, params.zero_point, channel_axis_of(params.axis, params.block_size)),
            nodes=(q, dqs[0]),
            initializers=tuple({p.name: p for p in params.protos + dq_protos}.values()),
            source_op="QuantizeLinear",
            block_size=params.block_size,
        )
        restored: tuple[onnx.TensorProto, ...] = ()
        if kind == "activation":
            quantizer = _with_deleted_activation(index, quantizer, float_model)
        elif float_model is not None:
            weights += 1
            weight = numpy_helper.to_array(index.initializers[src])
            found_float = _float_weight(index, dqs[0], float_model, src, weight.shape)
            if found_float is not None and (params.qtype not in QTYPE_RANGES or _check_float_weight(
                    dqs[0].name, src, *found_float, weight, _step(weight.shape, params.scale, params.axis, params.block_size))):
                matched += 1
                if len(dqs) == 1:  # (a weight the quantizer rescaled, bias and all, keeps both as they are)
                    quantizer, restored = _with_bias_correction(index, quantizer, float_model)
        aliases = tuple((quantizer.output, d.output[0]) for d in dqs[1:])
        found.append(Found(nodes=(q, *dqs), quantizer=quantizer, initializers=restored, aliases=aliases))

    for dq in index.nodes:
        if not _is(dq, "DequantizeLinear") or dq.name in paired:
            continue
        stored = dq.input[0]
        if stored not in index.initializers:
            continue  # dequantizes a runtime integer tensor: an ordinary node
        item = _lone_dq(index, dq, float_model)
        if item is not None:
            found.append(item)
            if float_model is not None and item.quantizer is not None and index.initializers[stored].data_type != onnx.TensorProto.INT32:
                weights += 1
                matched += item.quantizer.exact
    if weights and not matched:
        raise ModelError(
            f"the float model holds none of this model's {weights} weights (looked up through the nodes reading them and "
            "their names); expected the float model this model was calibrated from (--float-model; where it went "
            "through ONNX Runtime's quant_pre_process, the preprocessed model)"
        )
    return found


def _lone_dq(index: GraphIndex, dq: onnx.NodeProto, float_model: FloatModel | None) -> Found | None:
    stored_proto = index.initializers[dq.input[0]]
    bias = stored_proto.data_type == onnx.TensorProto.INT32
    if bias and float_model is None:
        return None  # a quantized bias with no float value to switch to: an ordinary node
    scale, zero_point, qtype, axis, block_size, protos = _params(index, dq)
    stored = numpy_helper.to_array(stored_proto)
    found = _float_weight(index, dq, float_model, dq.input[0], stored.shape) if float_model is not None else None
    float_name, float_value = found if found is not None else ("", None)
    if bias and float_value is None:
        return None
    if axis is not None and not block_size and (not -stored.ndim <= axis < stored.ndim or stored.shape[axis] != scale.size):
        raise ModelError(
            f"DequantizeLinear node {dq.name!r} has {scale.size} per-channel scales on axis {axis}, but its weight "
            f"{dq.input[0]!r} has shape {list(stored.shape)}; expected one scale per channel along that axis"
        )
    if float_value is not None and (qtype in QTYPE_RANGES or bias):  # (float8 steps grow with the value)
        try:
            same = _check_float_weight(dq.name, dq.input[0], float_name, float_value,
                                       dequantize(stored, scale, zero_point, axis, block_size),
                                       _step(stored.shape, scale, axis, block_size))
        except ModelError:
            if not bias:
                raise
            same = False  # a bias the quantizer corrected (bias correction); the weights tell a foreign model
        if not same:  # the quantizer changed it: the float model lacks the value stored
            if bias:
                return None
            float_value = None
    exact = float_value is not None
    if float_value is None:
        float_value = dequantize(stored, scale, zero_point, axis, block_size)
    float_name = f"{dq.input[0]}/float"
    float_init = numpy_helper.from_array(float_value.astype(np.float32), float_name)
    quantizer = Quantizer(
        name=dq.name,
        kind="weight",
        input=float_name,
        output=dq.output[0],
        qtype=qtype,
        axis=axis,
        scale=scale,
        zero_point=zero_point,
        thresholds=thresholds_of(qtype, scale, zero_point, channel_axis_of(axis, block_size)),
        exact=exact,
        nodes=(dq,),
        initializers=(stored_proto, *protos),
        source_op="DequantizeLinear",
        block_size=block_size,
    )
    restored: tuple[onnx.TensorProto, ...] = ()
    if not bias:
        quantizer, restored = _with_bias_correction(index, quantizer, float_model)
    return Found(nodes=(dq,), quantizer=quantizer, initializers=(float_init, *restored))


#: A float model's weight further than this many quantization steps (median over its values) from
#: what the calibrated model stores is another model's: rounding puts a weight within half a step,
#: a clipped outlier further, but not the typical value.
FOREIGN_WEIGHT_STEPS = 4.0


def _float_weight(index: GraphIndex, dq: onnx.NodeProto, float_model: FloatModel, stored: str,
                  shape: tuple[int, ...]) -> tuple[str, np.ndarray] | None:
    """The float model's name and value of the weight ``dq`` dequantizes (stored as ``stored``),
    found through a node reading it, else by name; None where none has the weight's shape."""
    readers = index.consumers.get(dq.output[0], [])
    for consumer, slot in [(n.name, list(n.input).index(dq.output[0])) for n in readers] or [("", -1)]:
        found = float_model.weight(consumer, slot, stored)
        if found is not None:
            return found if found[1].shape == shape else None  # else a name matched by chance
    return None


def _step(shape: tuple[int, ...], scale: np.ndarray, axis: int | None, block_size: int | None) -> np.ndarray:
    """The quantization step at every value of a weight of ``shape``."""
    return np.abs(dequantize(np.ones(shape, np.int64), scale, np.zeros(scale.shape, np.int64), axis, block_size))


def _check_float_weight(dq: str, stored: str, float_name: str, float_value: np.ndarray, calibrated: np.ndarray,
                        step: np.ndarray) -> bool:
    """Whether the float model's weight is the one calibration node ``dq`` quantized: the
    ``calibrated`` model's value (stored as ``stored``) typically within a few steps of it. False
    where the quantizer rescaled it channel by channel (a folded BatchNorm, SmoothQuant): the float
    model lacks that weight. Anything else is another model's weight, refused in one line."""
    def typical(value: np.ndarray) -> float:
        diff = np.abs(value - calibrated.astype(np.float64))
        steps = np.where(step > 0, diff / np.where(step > 0, step, 1.0), np.where(diff == 0, 0.0, np.inf))
        return float(np.median(steps)) if steps.size else 0.0

    value = float_value.astype(np.float64)
    away = typical(value)
    if away <= FOREIGN_WEIGHT_STEPS:
        return True
    if any(typical(value * factor) <= FOREIGN_WEIGHT_STEPS for factor in _channel_factors(value, calibrated)):
        return False
    raise ModelError(
        f"the float model's weight {float_name!r} is typically {away:.3g} quantization steps away from what the "
        f"calibrated model stores as {stored!r} (DequantizeLinear {dq!r}); expected the float model this "
        "model was calibrated from (--float-model; where it went through ONNX Runtime's quant_pre_process, which "
        "folds BatchNorm into the weights, the preprocessed model)"
    )


def _channel_factors(value: np.ndarray, calibrated: np.ndarray) -> list[np.ndarray]:
    """Per axis, the factor per slice that best scales ``value`` onto ``calibrated`` (least squares),
    shaped to broadcast: a quantizer that rescales channels (BatchNorm folded into a Conv's output
    channels, SmoothQuant's input channels of a MatMul) makes one of them fit."""
    target = calibrated.astype(np.float64)
    factors = []
    for axis in range(value.ndim):
        if value.size < 4 * value.shape[axis]:  # a factor per few values fits anything
            continue
        others = tuple(a for a in range(value.ndim) if a != axis)
        norm = np.sum(value * value, axis=others, keepdims=True)
        factors.append(np.sum(value * target, axis=others, keepdims=True) / np.where(norm > 0, norm, 1.0))
    return factors


#: Operators that add their float bias (input 2) to what their weight (input 1) computes.
_BIASED = frozenset({"Conv", "ConvTranspose", "Gemm"})


def _with_bias_correction(index: GraphIndex, q: Quantizer,
                          float_model: FloatModel | None) -> tuple[Quantizer, tuple[onnx.TensorProto, ...]]:
    """``q`` with the bias its quantizer corrected, and that bias's float value for the float graph.

    A bias correction (NNCF's default) shifts the float bias of a layer whose weight it quantized,
    to make up for the mean error the quantization adds. Part of quantizing that weight, it goes
    with the weight's calibration node: where the float model holds another value for the bias
    read beside the weight (a Conv's, ConvTranspose's or Gemm's input 2, or the Add after a
    MatMul), the float graph gets the float model's value and the calibrated one becomes the
    node's :attr:`~ptqdebug.quantizer.Quantizer.corrections`. All-off is then the float model.
    """
    from dataclasses import replace

    readers = index.consumers.get(q.output, [])
    if float_model is None or not q.exact or len(readers) != 1 or list(readers[0].input).count(q.output) != 1:
        return q, ()
    layer = readers[0]
    if layer.op_type in _BIASED and list(layer.input).index(q.output) == 1 and len(layer.input) > 2:
        holder, slot = layer, 2
    elif layer.op_type == "MatMul" and list(layer.input).index(q.output) == 1:
        adds = index.consumers.get(layer.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add" or list(adds[0].input).count(layer.output[0]) != 1:
            return q, ()
        holder = adds[0]
        slot = 1 - list(holder.input).index(layer.output[0])
    else:
        return q, ()
    name = holder.input[slot]
    stored = index.initializers.get(name)
    if stored is None or stored.data_type != onnx.TensorProto.FLOAT or len(index.consumers.get(name, [])) != 1:
        return q, ()
    found = float_model.weight(holder.name, slot, name)
    value = numpy_helper.to_array(stored)
    if found is None or found[1].shape != value.shape or found[1].dtype != value.dtype or np.array_equal(found[1], value):
        return q, ()
    corrected = onnx.TensorProto()
    corrected.CopyFrom(stored)  # (the file's own proto leaves the graph)
    return replace(q, corrections=(corrected,)), (numpy_helper.from_array(found[1], name),)


#: Operators whose output is non-negative, or has the sign of its input: a calibration range
#: starting at 0 after them is no sign of a deleted Relu.
_SIGN_KEEPING = frozenset({
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "Softmax", "Abs", "Exp", "Sqrt", "Softplus",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten",
    "Transpose", "Squeeze", "Unsqueeze", "Resize", "Upsample", "Concat", "Slice", "Split",
    "Gather", "Identity", "ReduceMax", "ReduceMean", "Pad", "DepthToSpace", "SpaceToDepth",
    "QuantizeLinear", "DequantizeLinear",
})


def _with_deleted_activation(index: GraphIndex, q: Quantizer, float_model: FloatModel | None) -> Quantizer:
    """``q`` with the Relu/Clip the quantizer deleted before it as its switched-off form."""
    from dataclasses import replace

    producer = index.producer.get(q.input)
    if producer is None or producer.op_type in ("Relu", "Clip"):
        return q
    if float_model is not None:
        original = float_model.producer(q.input)
        if original is None or original.op_type not in ("Relu", "Clip"):
            return q
        before = float_model.producer(original.input[0])  # what the Relu read now writes its output (deleted)
        if before is None or before.op_type != producer.op_type:
            return q  # the quantizer replaced the Relu by another operator: the float gap's business
        inits = []
        node = onnx.helper.make_node(original.op_type, [q.input], [q.output], name=q.name)
        node.attribute.extend(original.attribute)
        for slot, name in enumerate(original.input[1:3], start=1):
            value = float_model.constant(name) if name else None
            if value is None:
                node.input.append("")
                continue
            const = numpy_helper.from_array(value, f"{q.name}::clip_{'min' if slot == 1 else 'max'}")
            inits.append(const)
            node.input.append(const.name)
        while node.input and node.input[-1] == "":
            node.input.pop()
        return replace(q, off_node=node, off_initializers=tuple(inits))
    if not q.is_integer or producer.op_type in _SIGN_KEEPING or producer.domain not in ("", "ai.onnx"):
        return q
    readers = index.consumers.get(q.output, [])
    if readers and all(r.op_type in ("Relu", "Clip") for r in readers):
        return q  # the Relu is still there (QDQKeepRemovableActivations): nothing was deleted
    lo = q.thresholds[0] if len(q.thresholds) == 2 else None
    if lo != 0.0:
        return q
    return replace(q, off_node=onnx.helper.make_node("Relu", [q.input], [q.output], name=q.name))


def relu_wrongly_fused(nodes: list[onnx.NodeProto], quantizers: list[Quantizer]) -> list[str]:
    """Activation calibration nodes that alone read a Relu's output and do not clamp at 0: float8,
    or int4/uint4 with a zero point above the type's minimum.

    ONNX Runtime's extended optimizations fuse a Relu into the QuantizeLinear after it, that is
    delete it. That is right where the quantizer clamps at 0 anyway (int8 with zero point -128,
    uint8 with 0, which ONNX Runtime checks) and wrong elsewhere: it checks int8, uint8, int16 and
    uint16 only, so for float8 and int4 it deletes the Relu whatever the zero point (measured on
    1.32), and ONNX Runtime then computes something else than the model means.
    """
    producer = {o: n for n in nodes for o in n.output}
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1

    def keeps_negatives(q: Quantizer) -> bool:
        if q.qtype.startswith("float8"):
            return True
        if q.qtype in ("int4", "uint4"):
            return bool(np.any(np.asarray(q.zero_point) > QTYPE_RANGES[q.qtype][0]))
        return False

    return [q.name for q in quantizers if q.kind == "activation" and keeps_negatives(q)
            and getattr(producer.get(q.input), "op_type", "") == "Relu" and readers.get(q.input) == 1]
