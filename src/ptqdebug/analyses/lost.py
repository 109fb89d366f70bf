"""Output channels a calibration node rounds away entirely, which the output's score can hide.

ONNX Runtime's quantizer puts a calibration node on a model output too, with one scale for the
whole tensor. Where an output packs values of different sizes together — a YOLOv8 detector's
``output0`` holds box coordinates up to ~300 and 80 class scores below 1 — the scale fits the
largest, and every value of the small channels rounds to the zero point: on nudenet's YOLOv8 the
calibrated model detected nothing, while the output's cosine similarity read 0.9997 (the boxes
dominate it) and no node-level score fell below the pick threshold.

:func:`lost_channels` finds such channels exactly (ONNX ``QuantizeLinear``: round half to even,
saturate) on the float values the calibration node receives: channels whose every value
dequantizes to 0 although some float value is not 0. It looks only at outputs of three dimensions
or more, along axes whose channels hold at least :data:`MIN_VALUES_PER_CHANNEL` values (a map,
not a single logit, which rounding to zero is no sign of trouble for), and not at probabilities
(a Softmax's output: a class near 0 there is absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..quantizer import QTYPE_RANGES

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["MIN_VALUES_PER_CHANNEL", "NORMALIZED", "LostChannels", "lost_channels"]

#: values per channel (per sample) an output needs for its channels to count as maps
MIN_VALUES_PER_CHANNEL = 16


#: outputs of these operators are probabilities over axis 1: a class near 0 is absent, not lost
NORMALIZED = frozenset({"Softmax", "LogSoftmax"})


@dataclass(frozen=True)
class LostChannels:
    """``lost`` of the ``channels`` channels (along ``axis``) of model output ``tensor`` that
    calibration node ``quantizer`` (of quantization step ``step``) turns entirely to 0 on one
    sample; their float values reach ``largest`` in magnitude."""

    quantizer: str
    tensor: str
    axis: int
    lost: int
    channels: int
    largest: float
    step: float

    def describe(self) -> str:
        """What was found, as the verdict and ``calibrate`` say it."""
        return (f"{self.quantizer} rounds {self.lost} of the {self.channels} channels of output {self.tensor} (axis "
                f"{self.axis}) entirely to 0 on the first sample (values up to {self.largest:.3g}; its step is "
                f"{self.step:.3g})")


def lost_channels(ctx: Context, sample: int = 0) -> tuple[LostChannels, ...]:
    """The output calibration nodes (no node reads them) of ``ctx``'s model that round whole
    channels of their output to 0 on ``sample``, but not every channel (that, the score shows).

    A channel is a slice along a non-batch axis holding at least :data:`MIN_VALUES_PER_CHANNEL`
    values (``[N, C, anchors]`` and channels-last ``[N, anchors, C]`` alike); of the axes that
    lose channels, the one losing the most is reported."""
    model = ctx.model
    producers = {o: n.op_type for n in model.proto.graph.node for o in n.output}
    found = []
    for name in model.unowned_quantizers:
        q = model.quantizer_map[name]
        if q.qtype not in QTYPE_RANGES or q.scale.size != 1 or producers.get(q.input) in NORMALIZED:
            continue  # per-tensor integer scales only: one step for every channel
        values = ctx.reference(sample, [q.input])[q.input].astype(np.float64)
        if values.ndim < 3:
            continue
        step, zero = float(q.scale.reshape(-1)[0]), float(np.asarray(q.zero_point).reshape(-1)[0])
        low, high = QTYPE_RANGES[q.qtype]
        levels = np.clip(np.rint(values / step) + zero, low, high)  # np.rint rounds half to even, as ONNX does
        best = None
        for axis in range(1, values.ndim):
            if values.size < MIN_VALUES_PER_CHANNEL * values.shape[axis]:
                continue
            rest = tuple(a for a in range(values.ndim) if a != axis)
            gone = np.all(levels == zero, axis=rest) & np.any(values != 0, axis=rest)
            if gone.any() and not gone.all() and (best is None or gone.sum() > best.lost):
                largest = float(np.abs(np.compress(gone, values, axis=axis)).max())
                best = LostChannels(name, q.output, axis, int(gone.sum()), int(gone.size), largest, step)
        if best is not None:
            found.append(best)
    return tuple(found)
