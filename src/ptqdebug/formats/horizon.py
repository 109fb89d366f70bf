"""The original toolchain's calibrated models: ``HzCalibration`` nodes (domain ``horizon``).

Each node is rewritten into standard ONNX operators on load, so the model runs on plain ONNX
Runtime with no vendor library (reference §1):

* integer ``qtype`` (int8/int16/uint8/uint16): QuantizeLinear → DequantizeLinear with
  ``scale = threshold / qmax`` per channel along ``axis`` (symmetric), or
  ``scale = (max - min) / (qmax - qmin)`` and ``zero_point = qmax - round(max / scale)`` when
  asymmetric; ``constant == 2`` makes ``scales`` authoritative; "shift" rounds scales to powers
  of two;
* ``float16`` / ``bfloat16``: a round trip through the narrow type; ``float32``: identity;
* ``switch="OFF"``: the node is present but off in the calibrated configuration.

Rounding: QuantizeLinear rounds half to even. The vendor kernel's tie rule is not public
(reference §1.3 and §13); ties need ``x / scale`` to be exactly ``k + 0.5``, which real data
practically never hits.

``HzFilter`` nodes pass their inputs through (the original compares at their inputs, §2.5).
Any other ``horizon`` operator has no public definition and is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError, UnsupportedOpError
from ..graph import GraphIndex
from ..quantizer import QTYPE_RANGES, Quantizer, QuantizerKind
from . import Found
from .params import ONNX_QTYPES, thresholds_of

__all__ = ["find_horizon"]

_FLOAT_CASTS = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8", "replace") for v in value]
        out[a.name] = value
    return out


def _strings_attr(node: onnx.NodeProto, a: dict[str, object], key: str) -> list[str]:
    """A string or list-of-strings attribute as a list (absent: empty)."""
    value = a.get(key, [])
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ModelError(f"HzCalibration node {node.name!r} has {key}={value!r}; expected a list of strings such as ['weight']")


def _int_attr(node: onnx.NodeProto, a: dict[str, object], key: str, default: int) -> int:
    value = a.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ModelError(f"HzCalibration node {node.name!r} has {key}={value!r}; expected a whole number")
    return int(value)


def _floats_attr(node: onnx.NodeProto, a: dict[str, object], key: str) -> np.ndarray:
    value = a.get(key, [])
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        raise ModelError(f"HzCalibration node {node.name!r} has {key}={value!r}; expected a list of numbers")
    return np.asarray(values, dtype=np.float32)


def find_horizon(index: GraphIndex, opset: int) -> list[Found]:
    """Every ``HzCalibration`` node rewritten, and every ``HzFilter`` replaced by pass-throughs."""
    found: list[Found] = []
    for node in index.nodes:
        if node.op_type == "HzCalibration":
            found.append(Found(nodes=(node,), quantizer=_calibration(index, node, opset)))
        elif node.op_type == "HzFilter":
            pairs = tuple(zip(node.input, node.output))
            found.append(Found(nodes=(node,), quantizer=None, aliases=pairs))
    return found


def _calibration(index: GraphIndex, node: onnx.NodeProto, opset: int) -> Quantizer:
    a = _attrs(node)
    name = node.name
    src, out = node.input[0], node.output[0]
    info = _strings_attr(node, a, "info_strings")
    kind: QuantizerKind
    if "weight" in info:
        kind = "weight"
    elif "feature" in info:
        kind = "activation"
    else:
        kind = "weight" if src in index.initializers else "activation"
    qtype = str(a["qtype"]) if "qtype" in a else (f"int{a['bits']}" if "bits" in a else "int8")
    enabled = str(a.get("switch", "ON")).upper() != "OFF"

    if qtype == "float32" or qtype in _FLOAT_CASTS:
        nodes: tuple[onnx.NodeProto, ...]
        if qtype == "float32":
            nodes = (helper.make_node("Identity", [src], [out], name=f"{name}/Identity"),)
        else:
            mid = f"{name}/{qtype}"
            nodes = (
                helper.make_node("Cast", [src], [mid], name=f"{name}/Cast", to=_FLOAT_CASTS[qtype]),
                helper.make_node("Cast", [mid], [out], name=f"{name}/CastBack", to=onnx.TensorProto.FLOAT),
            )
        empty = np.zeros(0, np.float32)  # no scale: each value rounded at its own exponent
        return Quantizer(name, kind, src, out, qtype, None, empty, empty.astype(np.int64), (), enabled,
                         nodes=nodes, source_op="HzCalibration")
    if qtype not in QTYPE_RANGES or qtype not in ONNX_QTYPES:
        raise UnsupportedOpError(
            f"HzCalibration node {name!r} has qtype {qtype!r}; ptqdebug runs int8, uint8, int16, "
            "uint16, float16, bfloat16 and float32 calibration nodes"
        )
    qmin, qmax = QTYPE_RANGES[qtype]
    thresholds = _floats_attr(node, a, "thresholds")
    scales_attr = _floats_attr(node, a, "scales")
    constant = _int_attr(node, a, "constant", 0)
    zp_attr = a.get("zero_point")
    authoritative = constant == 2 and scales_attr.size > 0
    asymmetric = "asymq" in info or zp_attr is not None or qmin == 0
    if not authoritative and thresholds.size == 0:
        raise ModelError(
            f"HzCalibration node {name!r} has no 'thresholds' (and no authoritative 'scales' with "
            "constant=2); expected a finished calibrated model"
        )
    shown: tuple[float, ...]
    if asymmetric:
        if authoritative:
            scale = scales_attr
        elif thresholds.size in (1, 2):
            fmax = float(thresholds.max())
            fmin = float(thresholds.min()) if thresholds.size == 2 else (0.0 if qmin == 0 else -fmax)
            scale = np.asarray([(fmax - fmin) / (qmax - qmin)], dtype=np.float32)
        else:
            raise UnsupportedOpError(
                f"HzCalibration node {name!r} is asymmetric with {thresholds.size} thresholds; "
                "ptqdebug supports per-tensor asymmetric nodes ([min, max])"
            )
        if zp_attr is not None:
            zp_values = zp_attr if isinstance(zp_attr, list) else [zp_attr]
            if len(zp_values) != scale.size or not all(isinstance(v, (int, np.integer)) for v in zp_values):
                raise ModelError(f"HzCalibration node {name!r} has zero_point={zp_attr!r}; expected one whole number "
                                 f"per scale ({scale.size})")
            zero_point = np.asarray(zp_values, dtype=np.int64).reshape(scale.shape)
        else:
            zero_point = np.clip(qmax - np.round(float(thresholds.max()) / scale.astype(np.float64)), qmin, qmax)
        zero_point = np.asarray(zero_point, dtype=np.int64).reshape(scale.shape)
        shown = thresholds_of(qtype, scale, zero_point)
    else:
        scale = scales_attr if authoritative else (thresholds / np.float32(qmax)).astype(np.float32)
        if "shift" in info:
            scale = np.exp2(-np.round(-np.log2(scale.astype(np.float64)))).astype(np.float32)
        zero_point = np.zeros(scale.shape, dtype=np.int64)
        shown = tuple(float(np.float32(t)) for t in (scale.astype(np.float64) * qmax if authoritative else thresholds))
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise ModelError(
            f"HzCalibration node {name!r} has thresholds {thresholds.tolist()[:4]} that give a "
            "non-positive or non-finite scale; expected positive finite thresholds"
        )

    axis: int | None = None
    if scale.size > 1:
        axis = _int_attr(node, a, "axis", 0 if kind == "weight" else 1)
        if kind == "weight" and src in index.initializers:
            dims = list(index.initializers[src].dims)
            if not -len(dims) <= axis < len(dims) or dims[axis] != scale.size:
                raise UnsupportedOpError(
                    f"HzCalibration node {name!r} has {scale.size} scales but its weight has shape "
                    f"{dims} along axis {axis}; grouped ConvTranspose weights are not supported"
                )
    else:
        scale = scale.reshape(())
        zero_point = zero_point.reshape(())
    return _integer_quantizer(name, kind, src, out, qtype, axis, scale, zero_point.astype(np.int64), shown, enabled, opset)


def _integer_quantizer(
    name: str, kind: QuantizerKind, src: str, out: str, qtype: str, axis: int | None,
    scale: np.ndarray, zero_point: np.ndarray, thresholds: tuple[float, ...], enabled: bool, opset: int,
) -> Quantizer:
    np_type = onnx.helper.tensor_dtype_to_np_dtype(ONNX_QTYPES[qtype])
    scale_init = numpy_helper.from_array(scale.astype(np.float32), f"{name}/scale")
    zp_init = numpy_helper.from_array(zero_point.astype(np_type), f"{name}/zero_point")
    sixteen = qtype.endswith("16")
    standard = opset >= 21 or (opset >= 13 and not sixteen) or (opset >= 10 and axis is None and not sixteen)
    domain = "" if standard else "com.microsoft"
    kw: dict[str, Any] = {"axis": axis} if axis is not None else {}
    mid = f"{name}/quantized"
    nodes = (
        helper.make_node("QuantizeLinear", [src, scale_init.name, zp_init.name], [mid],
                         name=f"{name}/QuantizeLinear", domain=domain, **kw),
        helper.make_node("DequantizeLinear", [mid, scale_init.name, zp_init.name], [out],
                         name=f"{name}/DequantizeLinear", domain=domain, **kw),
    )
    return Quantizer(name, kind, src, out, qtype, axis, scale, zero_point, thresholds, enabled,
                     nodes=nodes, initializers=(scale_init, zp_init), source_op="HzCalibration")
