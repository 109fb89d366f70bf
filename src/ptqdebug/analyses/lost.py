"""Output channels a calibration node rounds away entirely, which the output's score can hide.

ONNX Runtime's quantizer puts a calibration node on a model output too, with one scale for the
whole tensor. Where an output packs values of different sizes together — a YOLOv8 detector's
``output0`` holds box coordinates up to ~300 and 80 class scores below 1 — the scale fits the
largest, and every value of the small channels rounds to the zero point: on nudenet's YOLOv8 the
calibrated model detected nothing, while the output's cosine similarity read 0.9997 (the boxes
dominate it) and no node-level score fell below the pick threshold.

:func:`lost_channels` finds such channels exactly (ONNX ``QuantizeLinear``: round half to even,
saturate) on the float values the calibration node receives: channels along axis 1 whose every
value dequantizes to 0 although some float value is not 0. It looks only at outputs with at least
:data:`MIN_VALUES_PER_CHANNEL` values per channel (``[N, C, ...]``), where a channel is a map of
values rather than a single logit, which rounding to zero is no sign of trouble for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..quantizer import QTYPE_RANGES

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["MIN_VALUES_PER_CHANNEL", "LostChannels", "lost_channels"]

#: values per channel (per sample) an output needs for its channels to count as maps
MIN_VALUES_PER_CHANNEL = 16


@dataclass(frozen=True)
class LostChannels:
    """``lost`` of the ``channels`` channels (axis 1) of model output ``tensor`` that calibration
    node ``quantizer`` (of quantization step ``step``) turns entirely to 0 on one sample; their
    float values reach ``largest`` in magnitude."""

    quantizer: str
    tensor: str
    lost: int
    channels: int
    largest: float
    step: float


def lost_channels(ctx: Context, sample: int = 0) -> tuple[LostChannels, ...]:
    """The output calibration nodes (no node reads them) of ``ctx``'s model that round whole
    channels of their output to 0 on ``sample``, but not every channel (that, the score shows)."""
    model = ctx.model
    found = []
    for name in model.unowned_quantizers:
        q = model.quantizer_map[name]
        if q.qtype not in QTYPE_RANGES or q.scale.size != 1:
            continue  # per-tensor integer scales only: one step for every channel
        values = ctx.reference(sample, [q.input])[q.input]
        if values.ndim < 3 or values.size < MIN_VALUES_PER_CHANNEL * values.shape[1]:
            continue
        rows = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1).astype(np.float64)
        step, zero = float(q.scale.reshape(-1)[0]), float(np.asarray(q.zero_point).reshape(-1)[0])
        low, high = QTYPE_RANGES[q.qtype]
        levels = np.clip(np.rint(rows / step) + zero, low, high)  # np.rint rounds half to even, as ONNX does
        gone = np.all(levels == zero, axis=1) & np.any(rows != 0, axis=1)
        if gone.any() and not gone.all():
            found.append(LostChannels(name, q.output, int(gone.sum()), int(rows.shape[0]),
                                      float(np.abs(rows[gone]).max()), step))
    return tuple(found)
