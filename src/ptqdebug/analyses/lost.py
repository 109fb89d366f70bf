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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..quantizer import QTYPE_RANGES

if TYPE_CHECKING:
    import onnx

    from ..context import Context
    from ..engine.engine import Reference
    from ..model import CalibratedModel

__all__ = ["MIN_VALUES_PER_CHANNEL", "PROBABILITIES", "ChannelScan", "LostChannels", "lost_channels"]

#: values per channel (per sample) an output needs for its channels to count as maps
MIN_VALUES_PER_CHANNEL = 16


#: outputs of these operators are probabilities: a class (or a map's pixel) near 0 is absent, not lost
PROBABILITIES = frozenset({"Softmax", "LogSoftmax", "Sigmoid", "HardSigmoid"})
#: operators that move values without changing them (the engine's placeholders are Identity nodes)
_LAYOUT_ONLY = frozenset({"Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"})


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


class ChannelScan:
    """Lost channels accumulated over samples: give each sample's float run (fetching at least
    :attr:`fetch`) to :meth:`add`, then ask :meth:`found`. ``calibrate`` feeds it from the runs
    that score the model, :func:`lost_channels` from runs of its own.

    A channel is a slice along a non-batch axis holding at least :data:`MIN_VALUES_PER_CHANNEL`
    values in each sample (``[N, C, anchors]`` and channels-last ``[N, anchors, C]`` alike; an axis
    whose length varies between the samples is not one). It is lost where no sample keeps a level
    of it and some sample has a float value in it that is not 0."""

    def __init__(self, model: CalibratedModel) -> None:
        self.model = model
        producers = {o: n for n in model.proto.graph.node for o in n.output}
        self.checked = [q for q in (model.quantizer_map[name] for name in model.unowned_quantizers)
                        if q.qtype in QTYPE_RANGES and q.scale.size == 1  # one step for every channel
                        and _source_op(q.input, producers) not in PROBABILITIES]
        #: the tensors a sample's float run must hold
        self.fetch = tuple(dict.fromkeys(q.input for q in self.checked))
        self.samples = 0
        # per (quantizer, axis): channels that kept no level, channels with a float value that is
        # not 0, the largest |value| per channel; None where the axis holds no channels
        self._seen: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def add(self, ref: Reference | Mapping[str, np.ndarray]) -> None:
        """One sample's float values (a float run holding :attr:`fetch`)."""
        first, self.samples = self.samples == 0, self.samples + 1
        for q in self.checked:
            values = np.asarray(ref[q.input], np.float64)
            step, zero = float(q.scale.reshape(-1)[0]), float(np.asarray(q.zero_point).reshape(-1)[0])
            low, high = QTYPE_RANGES[q.qtype]
            levels = np.clip(np.rint(values / step) + zero, low, high)  # np.rint rounds half to even, as ONNX does
            axes = range(1, values.ndim) if values.ndim >= 3 else range(0)
            for key in [k for k in self._seen if k[0] == q.name and k[1] not in axes]:
                self._seen[key] = None  # (the rank changed between samples)
            for axis in axes:
                key, rest = (q.name, axis), tuple(a for a in range(values.ndim) if a != axis)
                was = self._seen.get(key)
                if values.size < MIN_VALUES_PER_CHANNEL * values.shape[axis] or (not first and was is None):
                    self._seen[key] = None
                    continue
                now = (np.all(levels == zero, axis=rest), np.any(values != 0, axis=rest), np.abs(values).max(axis=rest))
                if was is None:
                    self._seen[key] = now
                elif was[0].shape != now[0].shape:
                    self._seen[key] = None
                else:
                    self._seen[key] = (was[0] & now[0], was[1] | now[1], np.maximum(was[2], now[2]))

    def found(self) -> tuple[LostChannels, ...]:
        """The output calibration nodes that round whole channels to 0 on every sample added, but
        not every channel (that, the score shows); per node, the axis losing the most."""
        best: dict[str, LostChannels] = {}
        for (name, axis), acc in self._seen.items():
            if acc is None:
                continue
            gone = acc[0] & acc[1]
            if gone.any() and not gone.all() and (name not in best or gone.sum() > best[name].lost):
                q = self.model.quantizer_map[name]
                best[name] = LostChannels(name, q.output, axis, int(gone.sum()), int(gone.size), float(acc[2][gone].max()),
                                          float(q.scale.reshape(-1)[0]), self.samples)
        return tuple(best.values())


def _source_op(tensor: str, producers: Mapping[str, onnx.NodeProto]) -> str | None:
    """The operator that computes ``tensor``'s values, looking through operators that only move
    them (a Sigmoid's probabilities reshaped or transposed are probabilities still)."""
    node = producers.get(tensor)
    while node is not None and node.op_type in _LAYOUT_ONLY and node.input:
        node = producers.get(node.input[0])
    return None if node is None else node.op_type


def lost_channels(ctx: Context, samples: int | Sequence[int] = (0,)) -> tuple[LostChannels, ...]:
    """The output calibration nodes (no node reads them) of ``ctx``'s model that round whole
    channels of their output to 0 on every one of ``samples`` (see :class:`ChannelScan`)."""
    scan = ChannelScan(ctx.model)
    for i in ((samples,) if isinstance(samples, int) else samples) if scan.fetch else ():
        scan.add(ctx.reference(i, scan.fetch))
    return scan.found()
