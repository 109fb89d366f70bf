"""Numbers shared by the formats: thresholds from scales, dtype names, ONNX dtype codes."""

from __future__ import annotations

import numpy as np
import onnx

from ..quantizer import QTYPE_RANGES, per_channel

__all__ = ["ONNX_QTYPES", "dequantize", "qtype_of_onnx", "thresholds_of"]

ONNX_QTYPES: dict[str, int] = {
    "int4": onnx.TensorProto.INT4,
    "uint4": onnx.TensorProto.UINT4,
    "int8": onnx.TensorProto.INT8,
    "uint8": onnx.TensorProto.UINT8,
    "int16": onnx.TensorProto.INT16,
    "uint16": onnx.TensorProto.UINT16,
}
_BY_CODE = {code: name for name, code in ONNX_QTYPES.items()}
#: the largest finite value of each float8 type
FLOAT8_MAX = {"float8e4m3fn": 448.0, "float8e4m3fnuz": 240.0, "float8e5m2": 57344.0, "float8e5m2fnuz": 57344.0}

_FLOAT8: dict[int, str] = {
    onnx.TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    onnx.TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    onnx.TensorProto.FLOAT8E5M2: "float8e5m2",
    onnx.TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
}


def qtype_of_onnx(code: int) -> str:
    """The qtype name of an ONNX element type code (``TensorProto.INT8`` → ``"int8"``)."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code in _FLOAT8:
        return _FLOAT8[code]
    return onnx.helper.tensor_dtype_to_np_dtype(code).name


def thresholds_of(qtype: str, scale: np.ndarray, zero_point: np.ndarray, channel_axis: int | None = None) -> tuple[float, ...]:
    """Clipping thresholds as the original toolchain states them.

    Symmetric (zero point 0 on a signed type): one threshold ``scale * qmax`` per channel (per
    block: the channel's largest, along ``channel_axis``). Otherwise the float range
    ``[scale * (qmin - zp), scale * (qmax - zp)]``, of the widest channel. Float8: ``scale`` times
    the type's largest finite value (448 for float8e4m3fn), per channel.
    """
    if qtype in FLOAT8_MAX:  # (zero point 0): the largest finite float8 value, scaled
        s = per_channel(np.asarray(scale, dtype=np.float64), channel_axis) if np.ndim(scale) > 1 else np.asarray(scale, np.float64)
        return tuple(float(np.float32(v)) for v in s.reshape(-1) * FLOAT8_MAX[qtype])
    if qtype not in QTYPE_RANGES:
        return ()
    qmin, qmax = QTYPE_RANGES[qtype]
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    z = np.broadcast_to(np.asarray(zero_point, dtype=np.float64).reshape(-1), s.shape)
    if qmin < 0 and not np.any(z) and np.ndim(scale) > 1:
        s = per_channel(np.asarray(scale, dtype=np.float64), channel_axis)
    with np.errstate(over="ignore"):  # a range beyond float32's (a fill value's scale): ±inf, as it is
        if qmin < 0 and not np.any(z):
            return tuple(float(np.float32(v)) for v in s * qmax)
        lo = s * (qmin - z)
        hi = s * (qmax - z)
        return (float(np.float32(lo.min())), float(np.float32(hi.max())))


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int | None,
               block_size: int | None = None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32, broadcasting per-channel parameters along ``axis``
    (per-block ones: each repeated over its ``block_size`` values along ``axis``)."""
    s = np.asarray(scale, dtype=np.float32)
    z = np.asarray(zero_point)
    if block_size and axis is not None:
        n = q.shape[axis]
        s = np.repeat(s, block_size, axis=axis).take(range(n), axis=axis)
        z = np.repeat(z, block_size, axis=axis).take(range(n), axis=axis)
    elif axis is not None and s.ndim == 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        s = s.reshape(shape)
        z = z.reshape(shape)
    return ((q.astype(np.int64) - z.astype(np.int64)).astype(np.float32) * s).astype(np.float32)
