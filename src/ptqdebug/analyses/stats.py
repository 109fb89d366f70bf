"""Calibration node statistics: thresholds, scales, per-channel max and smallest non-zero value (reference §7.2).

Weights: the float weight per channel along its quantization axis (a per-channel node's: 0 for a
Conv, 1 or -1 for a MatMul), else along axis 0, as the original. Activations: the node's input in
the float model, over every selected sample, per channel along its quantization axis, else axis 1
(accumulated sample by sample, so memory does not grow with the sample count). Values are
absolute: ``max_vals[c] = max |x|``, ``min_nz_vals[c] = min |x| over x != 0`` (0 if the channel is
all zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .candidates import flat_names

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context
    from ..quantizer import Quantizer

__all__ = ["CalibrationNodeStats", "calibration_node_stats"]


@dataclass(frozen=True)
class CalibrationNodeStats:
    name: str
    tensor_type: str  # "weight" or "feature", as the original names them
    granularity: str
    qtype: str
    thresholds: tuple[float, ...]
    scales: tuple[float, ...]
    max_vals: tuple[float, ...]
    min_nz_vals: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"Tensor_type": self.tensor_type, "Granularity": self.granularity, "Qtype": self.qtype,
                "Thresholds": list(self.thresholds), "Scales": list(self.scales),
                "Max_vals": list(self.max_vals), "Min_nz_vals": list(self.min_nz_vals)}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> CalibrationNodeStats:
        return cls(name, d["Tensor_type"], d["Granularity"], d.get("Qtype", ""), tuple(d["Thresholds"]),
                   tuple(d["Scales"]), tuple(d["Max_vals"]), tuple(d["Min_nz_vals"]))


def _per_channel(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel along ``axis``: the largest ``|x|`` and the smallest non-zero one (inf: none)."""
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1) if -x.ndim <= axis < x.ndim else x.reshape(1, -1)
    a = np.abs(rows.astype(np.float64))
    mx = a.max(axis=1) if a.shape[1] else np.zeros(a.shape[0])
    nz = np.where(a > 0, a, np.inf).min(axis=1) if a.shape[1] else np.full(a.shape[0], np.inf)
    return mx, nz


def _axis(q: Quantizer, default: int) -> int:
    """The axis ``q`` quantizes per channel along, else ``default``."""
    return q.channel_axis if q.channel_axis is not None else default


def calibration_node_stats(ctx: Context, nodes_list: object = None, data_num: int | None = None) -> list[CalibrationNodeStats]:
    model = ctx.model
    names = [q.name for q in model.quantizers] if nodes_list is None else list(
        dict.fromkeys(q for n in flat_names(nodes_list, "nodes_list") for q in model.expand(n, "nodes_list")))
    qmap = model.quantizer_map
    acts = [qmap[n] for n in names if qmap[n].kind == "activation" and model.data_visible(n)]
    acc: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    if acts:
        keys = list(dict.fromkeys((q.input, _axis(q, 1)) for q in acts))
        tensors = tuple(dict.fromkeys(t for t, _ in keys))
        for s in range(len(ctx.samples(data_num))):
            ref = ctx.reference(s, tensors)
            for t, axis in keys:
                mx, nz = _per_channel(np.asarray(ref[t]), axis)
                if (t, axis) in acc:
                    mx, nz = np.maximum(acc[t, axis][0], mx), np.minimum(acc[t, axis][1], nz)
                acc[t, axis] = (mx, nz)
    out = []
    for n in names:
        q = qmap[n]
        if q.kind == "weight":
            mx, nz = _per_channel(ctx.engine.weight_values(n)[0], _axis(q, 0))
        elif model.data_visible(n):
            mx, nz = acc[q.input, _axis(q, 1)]
        else:  # inside a body: its data cannot be fetched (ptqdebug.bodies), so no data statistics
            mx, nz = np.zeros(0), np.zeros(0)
        nz = np.where(np.isinf(nz), 0.0, nz)
        out.append(CalibrationNodeStats(
            name=n, tensor_type="weight" if q.kind == "weight" else "feature", granularity=q.granularity,
            qtype=q.qtype, thresholds=tuple(float(t) for t in q.thresholds),
            scales=tuple(float(s) for s in q.channel_scales),
            max_vals=tuple(float(v) for v in mx), min_nz_vals=tuple(float(v) for v in nz),
        ))
    return out
