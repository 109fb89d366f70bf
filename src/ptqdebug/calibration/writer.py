"""The float model made ready for calibration, and the QDQ model written from computed ranges.

Preparation (:func:`prepare_model`), in a temporary working folder:

1. ``Constant`` nodes become initializers (so weights held in them get weight calibration nodes);
2. every node gets a name, deterministically: an unnamed node is ``<op_type>_<index>`` (the rule
   :func:`ptqdebug.load_model` uses), a repeated name gets ``_1``, ``_2``... appended;
3. the opset is raised where ONNX Runtime's QDQ output would otherwise be invalid: to 13 for
   per-channel weights (``DequantizeLinear`` has no ``axis`` before 13, and ORT writes a model that
   does not load), to 21 for int16 (16-bit ``QuantizeLinear``), with ``onnx.version_converter``;
4. ORT's ``quant_pre_process`` (shape inference and the basic graph optimizations: constant
   folding, BatchNorm folded into Conv, ...) unless ``optimize=False``; nodes it creates are named
   by the same rule. It runs with the working folder as current directory, where it leaves its
   temporary files.

Writing (:func:`write_qdq`): ``onnxruntime.quantization.quantize_static`` in QDQ format inserts
the Q/DQ pairs, with the activation scale and zero point of every tensor forced through
``TensorQuantOverrides`` and ORT's own calibrator fed a single sample (its ranges are all
overridden, so its memory stays at one sample). The options that make every calibration node
exactly switchable: weights stay float initializers behind Q→DQ pairs (``AddQDQPairToWeight``),
biases stay float (``QuantizeBias=False``), no Relu/Clip is deleted
(``QDQKeepRemovableActivations``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..engine.build import standalone_model
from ..errors import ModelError, OptionError
from ..formats.params import qtype_of_onnx
from ..model import TensorSpec, input_specs, load_model
from ..onnxfile import constants_to_initializers, default_opset, initializers_not_inputs, read_onnx

__all__ = ["ActivationQuantizer", "PreparedModel", "prepare_model", "read_activation_quantizers", "stats_model", "write_qdq"]

logger = logging.getLogger("ptqdebug.calibration")

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


@dataclass(frozen=True)
class PreparedModel:
    """The float model calibration works on (see module doc).

    Attributes:
        path: the prepared model file in the working folder.
        proto: the same model, with shape information.
        inputs: the model inputs that take data.
        outputs: the model output names.
        tensors: the activation tensors ONNX Runtime may quantize (what calibration measures), in
            graph order: float inputs and outputs of the operators it quantizes.
        relu_inputs: tensor read only by a Relu/Clip → that node's output (ORT gives such a tensor
            the range of the activation after it, and so does ptqdebug).
        node_inputs: node name → its inputs among ``tensors`` (what int16 node names stand for).
        opset: the default-domain opset after preparation.
    """

    path: Path
    proto: onnx.ModelProto
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    tensors: tuple[str, ...]
    relu_inputs: Mapping[str, str]
    node_inputs: Mapping[str, tuple[str, ...]]
    opset: int


@dataclass(frozen=True)
class ActivationQuantizer:
    """An activation Q→DQ pair as written: its name, the tensor it quantizes and its parameters."""

    name: str
    tensor: str
    qtype: str
    scale: float
    zero_point: int


@contextlib.contextmanager
def quiet_ort(workdir: Path) -> Iterator[None]:
    """Run ORT's quantization tools in ``workdir``, without their log lines on the user's stderr.

    ORT logs through the root logger (``logging.warning``), which also installs a stderr handler
    on first use; a temporary handler and level on the root logger prevent both.
    """
    import onnxruntime as ort

    root = logging.getLogger()
    level, handler = root.level, logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(logging.CRITICAL + 1)
    ort.set_default_logger_severity(3)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        ort.set_default_logger_severity(2)
        root.setLevel(level)
        root.removeHandler(handler)


def name_nodes(graph: onnx.GraphProto) -> int:
    """Name unnamed nodes ``<op_type>_<index>`` and make names unique; return how many changed.

    The same rule as :func:`ptqdebug.load_model` for unnamed nodes; a repeated name keeps its first
    node and gets ``_1``, ``_2``... on the later ones.
    """
    taken = {n.name for n in graph.node if n.name}
    seen: set[str] = set()
    changed = 0
    for i, node in enumerate(graph.node):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        base = node.name or f"{node.op_type}_{i}"
        cand, k = base, 0
        while cand in seen or cand in taken:
            k += 1
            cand = f"{base}_{k}"
        node.name = cand
        seen.add(cand)
        changed += 1
    return changed


def _convert(proto: onnx.ModelProto, target: int, why: str) -> onnx.ModelProto:
    logger.info("converting the model from opset %d to %d (%s)", default_opset(proto), target, why)
    try:
        converted = onnx.version_converter.convert_version(proto, target)
        # (the converter keeps the IR version, which an older model's may be too low for the new opset)
        converted.ir_version = max(converted.ir_version, onnx.helper.find_min_ir_version_for(list(converted.opset_import), ignore_unknown=True))
        return converted
    except Exception as exc:  # the converter raises RuntimeError/ValueError/ConvertError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"the float model (opset {default_opset(proto)}) could not be converted to opset {target}, needed for {why} "
            f"({first}); convert it yourself (onnx.version_converter) or re-export it with opset >= {target}"
        ) from None


def _has_sympy() -> bool:
    import importlib.util

    return importlib.util.find_spec("sympy") is not None


def _pre_process(src: Path, dst: Path) -> bool:
    """ORT's ``quant_pre_process``; symbolic shape inference only when sympy is there."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = [dict(skip_symbolic_shape=False)] if _has_sympy() else []
    for kwargs in [*attempts, dict(skip_symbolic_shape=True)]:
        try:
            quant_pre_process(str(src), str(dst), **kwargs)
            return True
        except Exception as exc:  # symbolic shape inference fails on some exporters' models
            logger.info("quant_pre_process(%s) failed: %s", kwargs, exc)
    return False


def prepare_model(float_model: str | os.PathLike[str] | onnx.ModelProto, workdir: Path, *, per_channel: bool,
                  int16: bool, optimize: bool = True) -> PreparedModel:
    """Prepare ``float_model`` in ``workdir`` (see module doc)."""
    proto = read_onnx(float_model, "float model")
    graph = proto.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node) or any(n.domain == "horizon" for n in graph.node):
        raise ModelError("the model already has calibration nodes (QuantizeLinear/DequantizeLinear or HzCalibration); expected the float model")
    constants_to_initializers(graph)
    initializers_not_inputs(proto)
    renamed = name_nodes(graph)
    if renamed:
        logger.info("named %d unnamed or repeated nodes", renamed)
    opset = default_opset(proto)
    target = max(opset, 11, 13 if per_channel else 0, 21 if int16 else 0)
    if target != opset:
        why = "int16 QuantizeLinear" if int16 and target == 21 else ("per-channel weights" if per_channel and target >= 13 else "quantization")
        proto = _convert(proto, target, why)
    if proto.ByteSize() > 2**31 - 2**26:
        raise ModelError("the float model is larger than 2 GB; ptqdebug calibrate does not handle external-data models yet")

    src, dst = workdir / "float_model.onnx", workdir / "prepared_model.onnx"
    onnx.save(proto, str(src))
    done = False
    if optimize:
        with quiet_ort(workdir):
            done = _pre_process(src, dst)
        if not done:
            logger.warning("ONNX Runtime's quant_pre_process failed on this model; calibrating the model as it is")
    if done:
        proto = onnx.load(str(dst))
        name_nodes(proto.graph)
    else:
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception as exc:
            logger.info("shape inference failed: %s", exc)
    from onnxruntime.quantization.quant_utils import add_pre_process_metadata

    add_pre_process_metadata(proto)
    onnx.save(proto, str(dst))
    return _describe(dst, proto)


def _op_types() -> set[str] | None:
    try:
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    except ImportError:  # pragma: no cover - every supported ORT has them
        return None
    return set(QDQRegistry) | set(QLinearOpsRegistry)


def _describe(path: Path, proto: onnx.ModelProto) -> PreparedModel:
    graph = proto.graph
    inits = {t.name for t in graph.initializer}
    infos = {vi.name: vi for vi in graph.value_info}
    infos.update({vi.name: vi for vi in graph.output})
    infos.update({vi.name: vi for vi in graph.input})
    ops = _op_types()
    tensors: dict[str, None] = {}
    node_in: dict[str, tuple[str, ...]] = {}

    def calibrated(t: str) -> bool:
        vi = infos.get(t)
        return bool(t) and t not in inits and vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in _FLOAT_TYPES

    for node in graph.node:
        if ops is None or node.op_type in ops:
            for t in [*node.input, *node.output]:
                if calibrated(t):
                    tensors[t] = None
    for node in graph.node:
        node_in[node.name] = tuple(t for t in node.input if t in tensors)
    readers: dict[str, int] = {}
    for node in graph.node:
        for t in set(node.input):
            readers[t] = readers.get(t, 0) + 1
    outputs = {o.name for o in graph.output}
    relu = {
        node.input[0]: node.output[0]
        for node in graph.node
        if node.op_type in ("Relu", "Clip") and node.input and node.input[0] in tensors and node.output[0] in tensors
        and readers.get(node.input[0]) == 1 and node.input[0] not in outputs
    }
    return PreparedModel(
        path=path, proto=proto, inputs=input_specs(graph, inits), outputs=tuple(o.name for o in graph.output),
        tensors=tuple(tensors), relu_inputs=relu, node_inputs=node_in, opset=default_opset(proto),
    )


def stats_model(prepared: PreparedModel) -> onnx.ModelProto:
    """The prepared model with every calibrated tensor as an extra output (for streaming stats)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(prepared.proto)
    graph = proto.graph
    have = {o.name for o in graph.output}
    infos = {vi.name: vi for vi in [*graph.value_info, *graph.input]}
    for t in prepared.tensors:
        if t not in have:
            graph.output.append(infos[t])
    return proto


def write_qdq(prepared: PreparedModel, out_path: Path, params: Mapping[str, tuple[str, float, int]],
              first_sample: Mapping[str, np.ndarray], *, per_channel: bool, symmetric: bool,
              float_nodes: Sequence[str] = (), float_tensors: Collection[str] = ()) -> onnx.ModelProto:
    """Write the QDQ model with activation ``params`` (tensor → (qtype, scale, zero point)), with
    the calibration nodes of ``float_nodes``, and every one that quantizes a tensor of
    ``float_tensors``, switched off as ptqdebug switches them (so the model is
    the configuration partial quantization scored: :func:`ptqdebug.engine.build.standalone_model`).
    ONNX Runtime's own ``nodes_to_exclude`` differs: it keeps an input pair that a quantized
    producer's output carries, and drops the node's output pair instead."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    infos = {vi.name: vi for vi in [*prepared.proto.graph.value_info, *prepared.proto.graph.input, *prepared.proto.graph.output]}
    overrides: dict[str, list[dict[str, object]]] = {}
    for t, (qtype, scale, zero) in params.items():
        half = infos[t].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 if t in infos else False
        overrides[t] = [{
            "quant_type": QuantType.QInt16 if qtype == "int16" else QuantType.QInt8,
            "scale": np.array(scale, dtype=np.float16 if half else np.float32),
            "zero_point": np.array(zero, dtype=np.int16 if qtype == "int16" else np.int8),
        }]

    class _One(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([dict(first_sample)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    tmp = prepared.path.parent / "qdq_model.onnx"
    try:
        with quiet_ort(prepared.path.parent):
            quantize_static(
                str(prepared.path), str(tmp), _One(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={
                    "AddQDQPairToWeight": True, "QDQKeepRemovableActivations": True, "QuantizeBias": False,
                    "ActivationSymmetric": symmetric, "WeightSymmetric": True,
                    "QDQDisableWeightAdjustForInt32Bias": True, "TensorQuantOverrides": overrides,
                },
            )
    except Exception as exc:  # ORT's quantizer rejects some graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime's quantizer failed on this model ({type(exc).__name__}: {first}); try optimize=False (--no-optimize) or report the model") from None
    proto = onnx.load(str(tmp))
    name_nodes(proto.graph)
    if float_nodes or float_tensors:
        model = load_model(proto)
        missing = [n for n in float_nodes if not model.is_node(n)]
        if missing:  # a <tensor>_QuantizeLinear name whose tensor ONNX Runtime's quantizer left float
            raise OptionError(f"float_nodes: {missing[0]!r} is not a calibration node of the written model (ONNX Runtime's "
                              "quantizer left its tensor in float); expected a node name, or a calibration node "
                              "`ptqdebug info` lists for the calibrated model")
        off = set(model.expand(float_nodes, "float node")) if float_nodes else set()
        off |= {q.name for q in model.quantizers if q.input in float_tensors}
        proto = standalone_model(model, model.calibrated_configuration - off)
    onnx.save(proto, str(out_path))
    return proto


def read_activation_quantizers(proto: onnx.ModelProto, tensors: Sequence[str]) -> list[ActivationQuantizer]:
    """The activation Q→DQ pairs of a written model, with the tensor each one quantizes."""
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    known = set(tensors)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    out = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        tensor = node.input[0]
        if tensor not in known:
            dqs = [d for d in consumers.get(node.output[0], []) if d.op_type == "DequantizeLinear"]
            tensor = next((d.output[0] for d in dqs if d.output[0] in known), tensor)
        scale = float(numpy_helper.to_array(inits[node.input[1]]).reshape(-1)[0])
        zp_proto = inits.get(node.input[2]) if len(node.input) > 2 else None
        zero = int(numpy_helper.to_array(zp_proto).reshape(-1)[0]) if zp_proto is not None else 0
        qtype = qtype_of_onnx(zp_proto.data_type) if zp_proto is not None else "uint8"
        out.append(ActivationQuantizer(node.name, tensor, qtype, scale, zero))
    return out
