"""Calibration nodes, in one shape whatever format the model came in.

A :class:`Quantizer` is one fake-quantization point of a calibrated model: a QuantizeLinear →
DequantizeLinear pair, a lone DequantizeLinear on a weight stored as integers, or a ``HzCalibration``
node of the original toolchain. It reads one float tensor (``input``) and writes the tensor its
consumers read (``output``). Switched off it is the identity; switched on it runs ``nodes`` — the
model's own ONNX operators for it, so that what ptqdebug computes is exactly what the calibrated
model computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

__all__ = ["QTYPE_RANGES", "Quantizer", "QuantizerKind", "channel_axis_of", "per_channel"]

QuantizerKind = Literal["weight", "activation"]

#: (qmin, qmax) of every integer type a calibration node may quantize to.
QTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
}


def per_channel(values: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Per-block parameters reduced to one per channel along ``channel_axis`` (the largest of
    each channel's blocks); other parameters flattened. A large language model has tens of
    millions of blocks: thresholds and statistics per block would not fit in a report."""
    v = np.asarray(values)
    if channel_axis is None or v.ndim < 2:
        return v.reshape(-1)
    return np.moveaxis(v, channel_axis, 0).reshape(v.shape[channel_axis], -1).max(axis=1)


def channel_axis_of(axis: int | None, block_size: int | None) -> int | None:
    """See :attr:`Quantizer.channel_axis`."""
    if block_size:
        return 1 if axis == 0 else 0
    return axis


@dataclass(frozen=True, eq=False)
class Quantizer:
    """One calibration node.

    Attributes:
        name: the name users know it by: the ``HzCalibration`` node's name, the QuantizeLinear
            node's name of a Q→DQ pair, or the DequantizeLinear node's name of a lone weight DQ.
        kind: ``"weight"`` when it quantizes a constant, ``"activation"`` otherwise.
        input: the float tensor it quantizes.
        output: the tensor its consumers read.
        qtype: ``int8``, ``uint8``, ``int16``, ``uint16``, ``int4``, ``uint4``, ``float16``,
            ``bfloat16`` or ``float32``.
        axis: the channel axis of per-channel parameters, the blocked axis of per-block ones,
            ``None`` when per-tensor.
        scale: the quantization step, one per channel (shape ``(C,)``), a scalar, or one per block
            (per-block: the input's shape with ``axis`` divided into blocks of ``block_size``).
        zero_point: the integer zero point, same shape as ``scale`` (zeros when symmetric).
        thresholds: the clipping thresholds as the original toolchain reports them: one per
            channel (or block) when symmetric (``scale * qmax``), ``[min, max]`` of the range
            otherwise.
        enabled: whether the calibrated model fake-quantizes here (``switch="ON"``).
        exact: ``False`` when the float value of a weight is unknown (weights stored as integers
            and no float model given): such a node cannot be switched off and stays on.
        nodes: the ONNX nodes that fake-quantize ``input`` into ``output`` when switched on.
        initializers: the constants those nodes read (scales, zero points, stored weights).
        source_op: ``QuantizeLinear``, ``DequantizeLinear``, ``HzCalibration`` or ``Cast`` (a round trip
            float32 → bfloat16/float16/float8 → float32).
        off_node: what the node computes when switched off, if not the identity: the ``Relu``
            (or ``Clip``) that ONNX Runtime's quantizer deleted because the calibration node's
            range already clamps there (its inputs start with ``input``, it writes ``output``).
        off_initializers: constants ``off_node`` reads (a Clip's bounds).
        scope: for a calibration node inside an ``If``/``Loop``/``Scan`` body, the main-graph node
            holding that body (see :mod:`ptqdebug.bodies`); ``None`` in the main graph.
        block_size: the block length of blocked quantization (ONNX opset 21 ``block_size``: the
            int4 weight-only quantization of large language models, one scale per ``block_size``
            consecutive values along ``axis``); ``None`` otherwise.
        corrections: float constants the quantizer changed together with this weight, with the
            values it gave them: a bias correction (NNCF's default) shifts the bias of the layer
            whose weight it quantized. The float graph holds the float model's values, so that
            off is the float model; on, the node uses these.
    """

    name: str
    kind: QuantizerKind
    input: str
    output: str
    qtype: str
    axis: int | None
    scale: np.ndarray
    zero_point: np.ndarray
    thresholds: tuple[float, ...]
    enabled: bool = True
    exact: bool = True
    nodes: tuple[onnx.NodeProto, ...] = field(default=(), repr=False)
    initializers: tuple[onnx.TensorProto, ...] = field(default=(), repr=False)
    source_op: str = "QuantizeLinear"
    off_node: onnx.NodeProto | None = field(default=None, repr=False)
    off_initializers: tuple[onnx.TensorProto, ...] = field(default=(), repr=False)
    scope: str | None = None
    block_size: int | None = None
    corrections: tuple[onnx.TensorProto, ...] = field(default=(), repr=False)

    def placeholder(self) -> onnx.NodeProto:
        """The node standing for this calibration node in the float graph (switched off)."""
        node = onnx.NodeProto()
        if self.off_node is not None:
            node.CopyFrom(self.off_node)
        else:
            node.op_type = "Identity"
            node.input.append(self.input)
            node.output.append(self.output)
        node.name = self.name
        return node

    @property
    def bits(self) -> int:
        """The bit width of the quantized type (8 for int8/uint8 and float8e4m3fn, 16 for int16/float16, ...)."""
        width = re.search(r"\d+", self.qtype)  # the first number: float8e4m3fn is 8 bits, not 843
        return int(width.group()) if width else 16

    @property
    def is_integer(self) -> bool:
        return self.qtype in QTYPE_RANGES

    @property
    def granularity(self) -> str:
        if self.block_size:
            return "per-block"
        return "per-channel" if self.axis is not None and self.scale.size > 1 else "per-tensor"

    @property
    def channel_axis(self) -> int | None:
        """The axis of channels, e.g. for box plots: the per-channel axis; for a per-block weight
        the axis of output channels, which its blocks do not cut (a MatMul weight ``[K, N]``
        blocked along K has its channels on axis 1, a Conv weight blocked along its inputs on
        axis 0); ``None`` when per-tensor."""
        return channel_axis_of(self.axis, self.block_size)

    @property
    def channel_scales(self) -> np.ndarray:
        """The scales, one per channel (a per-block quantizer's largest per channel), flat."""
        return per_channel(self.scale, self.channel_axis if self.block_size else None)

    @property
    def threshold(self) -> float | None:
        """The largest threshold, as the original tool's tables show it (None where the type has none)."""
        return max(abs(t) for t in self.thresholds) if self.thresholds else None
