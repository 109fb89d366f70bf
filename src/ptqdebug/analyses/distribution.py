"""What the data looks like: float vs quantized values of chosen nodes (reference §5).

:func:`distributions` (``plot_distribution``):

* activation calibration node: its input tensor in the fully calibrated model (upstream
  quantization included), with the range the node represents (an asymmetric node's ``[min,
  max]``, a symmetric one's ``±threshold``; per channel, the widest and the narrowest channel's);
* weight calibration node: the float weight and the fake-quantized weight, computed by the node's
  own operators exactly as the engine uses them (not the original's buggy rounding, §5.3);
* ordinary node: each output in the float model, in the calibrated model, and their difference.

:func:`channel_boxes` (``get_channelwise_data_distribution``): per-channel box statistics of a
calibration node's input (for an ordinary node: of each of its input calibration nodes), computed
once so that the figure does not need the raw data.

Every sample-dependent value comes from the first calibration sample. Unknown names are an error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError, UnknownNodeError
from ..formats.params import FLOAT8_MAX
from ..metrics import METRICS, compare
from ..quantizer import QTYPE_RANGES, Quantizer
from .candidates import flat_names

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context
    from ..model import CalibratedModel

__all__ = ["ChannelBoxes", "Distribution", "activation_axis", "channel_boxes", "distributions"]

_COS = METRICS["cosine-similarity"]


@dataclass(frozen=True, eq=False)
class Distribution:
    """Values of one tensor. ``values`` keys: ``input`` (activation), ``float`` and ``quantized``
    (weight), ``float``, ``quantized`` and ``error`` (ordinary node output ``tensor``).

    ``threshold`` is the largest threshold, as the original's tables show it; ``clip`` the range an
    activation calibration node represents, ``[scale·(qmin − zp), scale·(qmax − zp)]`` (per channel:
    the lowest low and the highest high), and ``narrowest`` that of its narrowest channel (None
    when per-tensor, or where every channel has the same range)."""

    name: str
    kind: str
    tensor: str
    values: Mapping[str, np.ndarray] = field(repr=False)
    abs_max: float
    threshold: float | None = None
    cosine: float | None = None
    clip: tuple[float, float] | None = None
    narrowest: tuple[float, float] | None = None

    def summary(self) -> dict[str, Any]:
        """Numbers for reports: min, max, mean, std of each series (in float64: float32 sums of a
        mask's -3.4e38 overflow)."""
        stats = {k: {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean(dtype=np.float64)),
                     "std": float(v.std(dtype=np.float64)), "size": int(v.size)} for k, v in self.values.items() if v.size}
        return {"name": self.name, "kind": self.kind, "tensor": self.tensor, "abs_max": self.abs_max,
                "threshold": self.threshold, "clip": self.clip, "narrowest": self.narrowest, "cosine": self.cosine,
                "series": stats}


def clip_ranges(q: Quantizer) -> np.ndarray | None:
    """The float range each channel (or block) of ``q`` represents, shape ``(N, 2)``: integer types
    ``[scale·(qmin − zp), scale·(qmax − zp)]``, float8 ``±scale·largest``; None for the wider
    float types (bfloat16, float16), which clip nothing in practice."""
    s = np.asarray(q.scale, np.float64).reshape(-1)
    if q.is_integer:
        qmin, qmax = QTYPE_RANGES[q.qtype]
        z = np.broadcast_to(np.asarray(q.zero_point, np.float64).reshape(-1), s.shape)
        return np.stack([s * (qmin - z), s * (qmax - z)], axis=1)
    if q.qtype in FLOAT8_MAX:
        return np.stack([-s, s], axis=1) * FLOAT8_MAX[q.qtype]
    return None


def _clip(q: Quantizer) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """``clip`` and ``narrowest`` of :class:`Distribution` for ``q``."""
    ranges = clip_ranges(q)
    if ranges is None or not ranges.size:
        return None, None
    widest = (float(np.float32(ranges[:, 0].min())), float(np.float32(ranges[:, 1].max())))
    i = int(np.argmin(ranges[:, 1] - ranges[:, 0]))
    narrow = (float(np.float32(ranges[i, 0])), float(np.float32(ranges[i, 1])))
    return widest, narrow if narrow != widest else None


def _abs_max(x: np.ndarray) -> float:
    return float(max(np.max(x), -np.min(x))) if x.size else 0.0


#: ``tensors -> (float values, calibrated values)`` of the first sample, shared by the steps of one
#: run that ask for the same tensors (``runall``'s distributions and box plots of the same nodes)
ValuesMemo = dict[tuple[str, ...], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


def _calibrated_values(ctx: Context, tensors: Sequence[str],
                       memo: ValuesMemo | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    key = tuple(tensors)
    if memo is not None and key in memo:
        return memo[key]  # the same runs on the same engine: the same values
    ref = ctx.reference(0, key)
    actual = ctx.engine.run(ref, ctx.model.calibrated_configuration, key)
    out = {t: ref[t] for t in tensors}, actual
    if memo is not None:
        memo[key] = out
    return out


def distributions(ctx: Context, nodes_list: object, memo: ValuesMemo | None = None) -> list[Distribution]:
    model = ctx.model
    names = flat_names(nodes_list, "nodes_list")
    unknown = [n for n in names if not model.is_node(n)]
    if unknown:
        raise UnknownNodeError(unknown, "nodes_list", model.all_names())
    qmap = model.quantizer_map
    for n in names:
        if n in qmap:
            model.check_data_visible(n, "nodes_list entry")
    tensors = [qmap[n].input if n in qmap else t for n in names for t in ((qmap[n].input,) if n in qmap else model.node_outputs[n])]
    tensors = [t for n, t in zip(names, tensors) if not (n in qmap and qmap[n].kind == "weight")]
    ref, actual = _calibrated_values(ctx, list(dict.fromkeys(tensors)), memo) if tensors else ({}, {})
    out: list[Distribution] = []
    for n in names:
        q = qmap.get(n)
        if q is not None and q.kind == "activation":
            x = actual[q.input].astype(np.float32).ravel()
            clip, narrowest = _clip(q)
            out.append(Distribution(n, "activation", q.input, {"input": x}, _abs_max(x), threshold=q.threshold,
                                    clip=clip, narrowest=narrowest))
        elif q is not None:
            w, wq = ctx.engine.weight_values(n)
            w, wq = w.astype(np.float32).ravel(), wq.astype(np.float32).ravel()
            out.append(Distribution(n, "weight", q.input, {"float": w, "quantized": wq}, _abs_max(w),
                                    cosine=compare([_COS], w, wq)[0]))
        else:
            for t in model.node_outputs[n]:
                f = np.asarray(ref[t]).astype(np.float32).ravel()
                a = np.asarray(actual[t]).astype(np.float32).ravel()
                out.append(Distribution(n, "node", t, {"float": f, "quantized": a, "error": f - a}, _abs_max(f),
                                        cosine=compare([_COS], f, a)[0]))
    return out


@dataclass(frozen=True, eq=False)
class ChannelBoxes:
    """Box-plot statistics per channel of ``tensor`` along ``axis`` (1.5 IQR whiskers), over the
    finite values: ``nonfinite`` counts those left out (a channel of none has NaN statistics)."""

    name: str
    kind: str
    tensor: str
    axis: int
    q1: np.ndarray
    median: np.ndarray
    q3: np.ndarray
    mean: np.ndarray
    whislo: np.ndarray
    whishi: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    fliers: tuple[np.ndarray, ...] = field(repr=False)
    nonfinite: int = 0

    @property
    def channels(self) -> int:
        return int(self.median.size)

    def summary(self) -> dict[str, Any]:
        """Name, size and range facts; the widest channel range over the median one is None where
        every channel holds a single value (one sample of a pooled output: no range to compare)."""
        spread = self.maximum - self.minimum
        ratio = float(spread.max() / max(np.median(spread), 1e-12)) if spread.max() > 0 else None
        return {"name": self.name, "kind": self.kind, "tensor": self.tensor, "axis": self.axis, "channels": self.channels,
                "max_abs": float(max(np.abs(self.minimum).max(), np.abs(self.maximum).max())),
                "range_ratio_max_to_median": ratio}


def _per_row(reduce: Any, rows: np.ndarray, mask: np.ndarray, neutral: float) -> np.ndarray:
    """``reduce`` (np.min / np.max) of each row's values where ``mask``, in one pass over the
    array; NaN for a row with nothing selected (no finite value)."""
    out = reduce(np.where(mask, rows, neutral), axis=1)
    out[~mask.any(axis=1)] = np.nan
    return out


def _boxes(name: str, kind: str, tensor: str, data: np.ndarray, axis: int, max_fliers: int = 50) -> ChannelBoxes:
    if data.ndim == 0:
        data = data.reshape(1)
    if not -data.ndim <= axis < data.ndim:
        raise OptionError(f"axis {axis} is out of range for {name!r}, whose data has shape {list(data.shape)}; expected -{data.ndim}..{data.ndim - 1}")
    axis %= data.ndim
    rows: np.ndarray = np.moveaxis(data.astype(np.float64), axis, 0).reshape(data.shape[axis], -1)
    finite = np.isfinite(rows)
    nonfinite = int(rows.size - np.count_nonzero(finite))
    if nonfinite:  # (an attention mask's -inf, a NaN the quantization made): statistics of the rest
        rows = np.where(finite, rows, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a channel of no finite value: NaN
            q1, med, q3 = np.nanpercentile(rows, [25, 50, 75], axis=1)
            mean, low, high = np.nanmean(rows, axis=1), np.nanmin(rows, axis=1), np.nanmax(rows, axis=1)
    else:
        q1, med, q3 = np.percentile(rows, [25, 50, 75], axis=1)
        mean, low, high = rows.mean(axis=1), rows.min(axis=1), rows.max(axis=1)
    iqr = q3 - q1
    lo_lim, hi_lim = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    whislo = _per_row(np.min, rows, rows >= lo_lim[:, None], np.inf)
    whishi = _per_row(np.max, rows, rows <= hi_lim[:, None], -np.inf)
    outside = (rows < whislo[:, None]) | (rows > whishi[:, None])
    fliers = []
    for f in np.split(rows[outside], np.cumsum(np.count_nonzero(outside, axis=1))[:-1]):  # each row's, in order
        if f.size > max_fliers:  # keep the extremes: they are what the eye looks for
            f = np.sort(f)
            f = np.concatenate([f[: max_fliers // 2], f[-max_fliers // 2:]])
        fliers.append(f)
    return ChannelBoxes(name, kind, tensor, axis, q1, med, q3, mean, whislo, whishi, low, high, tuple(fliers), nonfinite)


def channel_boxes(ctx: Context, nodes_list: object, axis: int | None = None, memo: ValuesMemo | None = None) -> list[ChannelBoxes]:
    """Per-channel statistics (reference §5.4); ordinary nodes stand for their input calibration nodes.
    ``memo``: values already fetched by :func:`distributions` of the same run."""
    model = ctx.model
    names = flat_names(nodes_list, "nodes_list")
    for n in names:
        if n in model.quantizer_map:
            model.check_data_visible(n, "nodes_list entry")
    # an ordinary node stands for the calibration nodes whose data can be shown (see ptqdebug.bodies)
    quantizers = list(dict.fromkeys(q for n in names for q in model.expand(n, "nodes_list") if model.data_visible(q)))
    qmap = model.quantizer_map
    acts = [qmap[q].input for q in quantizers if qmap[q].kind == "activation"]
    _, actual = _calibrated_values(ctx, list(dict.fromkeys(acts)), memo) if acts else ({}, {})
    jobs = []
    for name in quantizers:
        q = qmap[name]
        if q.kind == "weight":
            data = ctx.engine.weight_values(name)[0]
            ax = axis if axis is not None else (q.channel_axis if q.channel_axis is not None else 0)
        else:
            data = np.asarray(actual[q.input])
            ax = axis if axis is not None else activation_axis(model, name, data.ndim)
        jobs.append((name, q.kind, q.input, data, ax))
    return _all_boxes(jobs)


#: Readers that take their input's features on its last axis (a transformer's [N, tokens, hidden])
LAST_AXIS_READERS = frozenset({"MatMul", "Gemm"})


def activation_axis(model: CalibratedModel, quantizer: str, ndim: int) -> int:
    """The default channel axis of an activation calibration node's data: 1 (NCHW, as the
    original), but the last axis where a MatMul or Gemm reads it and none of its readers is a
    convolution: a transformer's [N, tokens, hidden] tensor has its channels (where its outlier
    features live) last, and axis 1 would be the tokens, padding included."""
    if ndim <= 1:
        return 0
    readers = {model.node_types.get(n) for n in model.quantizer_consumers.get(quantizer, ())}
    if readers & LAST_AXIS_READERS and not readers & {"Conv", "ConvTranspose"}:
        return ndim - 1
    return 1


#: float64 bytes of channel data whose statistics are computed at once (see :func:`_all_boxes`)
BOX_BYTES = 256 * 2**20


def _all_boxes(jobs: Sequence[tuple[str, str, str, np.ndarray, int]]) -> list[ChannelBoxes]:
    """:func:`_boxes` of every job, in order. Several are computed at once on threads (numpy's
    partitioning and comparisons release the GIL: the five largest weights of a ResNet-18-sized
    model take 0.13 s instead of 0.21 s on 2 cores, and runall's box step on 16 cores 0.14 s
    instead of 0.41 s), a group at a time whose float64 copies fit :data:`BOX_BYTES`, so memory
    stays bounded on large weights."""
    groups: list[list[int]] = []
    held = 0
    for i, job in enumerate(jobs):
        size = 8 * job[3].size
        if not groups or held + size > BOX_BYTES:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += size
    threads = min(max(map(len, groups), default=1), os.cpu_count() or 1)
    if threads <= 1:
        return [_boxes(*job) for job in jobs]
    with ThreadPoolExecutor(threads) as pool:
        return [box for group in groups for box in pool.map(lambda i: _boxes(*jobs[i]), group)]
