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
(a Softmax's or a Sigmoid's output: a class or a pixel near 0 there is absent; a text detector's
Sigmoid map has blank columns at its edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..quantizer import QTYPE_RANGES

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["MIN_VALUES_PER_CHANNEL", "PROBABILITIES", "LostChannels", "lost_channels"]

#: values per channel (per sample) an output needs for its channels to count as maps
MIN_VALUES_PER_CHANNEL = 16


#: outputs of these operators are probabilities: a class (or a map's pixel) near 0 is absent, not lost
PROBABILITIES = frozenset({"Softmax", "LogSoftmax", "Sigmoid", "HardSigmoid"})


@dataclass(frozen=True)
class LostChannels:
    """``lost`` of the ``channels`` channels (along ``axis``) of model output ``tensor`` that
    calibration node ``quantizer`` (of quantization step ``step``) turns entirely to 0 on every
    one of ``samples`` samples; their float values reach ``largest`` in magnitude."""

    quantizer: str
    tensor: str
    axis: int
    lost: int
    channels: int
    largest: float
    step: float
    samples: int = 1

    def describe(self) -> str:
        """What was found, as the verdict and ``calibrate`` say it."""
        on = "the sample" if self.samples == 1 else f"all {self.samples} samples"
        return (f"{self.quantizer} rounds {self.lost} of the {self.channels} channels of output {self.tensor} (axis "
                f"{self.axis}) entirely to 0 on {on} (values up to {self.largest:.3g}; its step is {self.step:.3g})")


def lost_channels(ctx: Context, samples: Sequence[int] = (0,)) -> tuple[LostChannels, ...]:
    """The output calibration nodes (no node reads them) of ``ctx``'s model that round whole
    channels of their output to 0 on every one of ``samples``, but not every channel (that, the
    score shows). A channel counts as lost where no sample keeps a level of it and some sample
    has a float value in it that is not 0.

    A channel is a slice along a non-batch axis holding at least :data:`MIN_VALUES_PER_CHANNEL`
    values in each sample (``[N, C, anchors]`` and channels-last ``[N, anchors, C]`` alike; an
    axis whose length varies between the samples is not one); of the axes that lose channels,
    the one losing the most is reported."""
    model = ctx.model
    producers = {o: n.op_type for n in model.proto.graph.node for o in n.output}
    checked = [model.quantizer_map[name] for name in model.unowned_quantizers]
    checked = [q for q in checked  # per-tensor integer scales only: one step for every channel
               if q.qtype in QTYPE_RANGES and q.scale.size == 1 and producers.get(q.input) not in PROBABILITIES]
    fetch = list(dict.fromkeys(q.input for q in checked))
    # per (quantizer, axis), over the samples so far: channels that kept no level, channels with a
    # float value that is not 0, the largest |value| per channel; None where the axis holds no channels
    seen: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
    for i in samples if checked else ():
        ref = ctx.reference(i, fetch)
        for q in checked:
            values = ref[q.input].astype(np.float64)
            step, zero = float(q.scale.reshape(-1)[0]), float(np.asarray(q.zero_point).reshape(-1)[0])
            low, high = QTYPE_RANGES[q.qtype]
            levels = np.clip(np.rint(values / step) + zero, low, high)  # np.rint rounds half to even, as ONNX does
            for axis in range(1, values.ndim if values.ndim >= 3 else 0):
                key, rest = (q.name, axis), tuple(a for a in range(values.ndim) if a != axis)
                if values.size < MIN_VALUES_PER_CHANNEL * values.shape[axis]:
                    seen[key] = None
                    continue
                now = (np.all(levels == zero, axis=rest), np.any(values != 0, axis=rest), np.abs(values).max(axis=rest))
                if key not in seen:
                    seen[key] = now
                elif (was := seen[key]) is not None:
                    same = was[0].shape == now[0].shape
                    seen[key] = (was[0] & now[0], was[1] | now[1], np.maximum(was[2], now[2])) if same else None
    found: dict[str, LostChannels] = {}
    for (name, axis), acc in seen.items():
        if acc is None:
            continue
        gone = acc[0] & acc[1]
        best = found.get(name)
        if gone.any() and not gone.all() and (best is None or gone.sum() > best.lost):
            q = model.quantizer_map[name]
            found[name] = LostChannels(name, q.output, axis, int(gone.sum()), int(gone.size), float(acc[2][gone].max()),
                                       float(q.scale.reshape(-1)[0]), len(samples))
    return tuple(found.values())
