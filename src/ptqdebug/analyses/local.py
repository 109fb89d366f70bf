"""Local error: what a node's own calibration nodes do to its output, without propagation.

Sensitivity (:mod:`ptqdebug.analyses.sensitivity`) measures one node's quantization at the model
outputs: its error *and* what the rest of the network makes of it. Local error measures the same
quantization at the node's own outputs: only that node's calibration nodes on, everything
upstream float (what PyTorch's Numeric Suite calls error without propagation, ONNX Runtime's
``qdq_loss_debug`` ``qdq_err``). Side by side they tell a lossy node (poor local score) from a node
whose small error the network amplifies (good local score, poor sensitivity).

Each node costs a run of the graph segment producing its outputs (from the float reference), not
of the graph after it; a segment's nodes share one session. Scores are averaged over the node's
float outputs and over samples, like sensitivity's over compared tensors and samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import compare, get_metrics, per_tensor_only
from .candidates import candidates_for
from .sensitivity import Progress, decode_float, encode_float

if TYPE_CHECKING:
    from ..context import Context
    from ..model import CalibratedModel

__all__ = ["LocalError", "LocalErrorResult", "local_errors", "local_units"]


def local_units(model: CalibratedModel) -> dict[str, tuple[str, ...]]:
    """What has a local error: the node-level sweep's candidates (ordinary nodes, and calibration
    nodes no node reads), each with its calibration nodes."""
    return {c.name: c.quantizers for c in candidates_for(model, "node")}


@dataclass(frozen=True)
class LocalError:
    """One ordinary node (or calibration node no node reads): ``scores[metric]`` at its outputs
    with ``quantizers`` (its own calibration nodes) on and everything upstream float."""

    node: str
    quantizers: tuple[str, ...]
    outputs: tuple[str, ...]
    scores: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "quantizers": list(self.quantizers), "outputs": list(self.outputs),
                "scores": {k: encode_float(v) for k, v in self.scores.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalError:
        return cls(d["node"], tuple(d["quantizers"]), tuple(d["outputs"]),
                   MappingProxyType({k: decode_float(v) for k, v in d["scores"].items()}))


@dataclass(frozen=True)
class LocalErrorResult:
    """Local errors of ordinary nodes (and calibration nodes no node reads), in the order asked."""

    metrics: tuple[str, ...]
    samples: int
    entries: tuple[LocalError, ...]

    def as_mapping(self) -> dict[str, dict[str, float]]:
        """``{node: {metric: value}}``."""
        return {e.node: dict(e.scores) for e in self.entries}

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "samples": self.samples, "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalErrorResult:
        return cls(tuple(d["metrics"]), int(d["samples"]), tuple(LocalError.from_dict(e) for e in d["entries"]))


def local_errors(ctx: Context, nodes: Sequence[str] | None = None, metrics: Sequence[str] = ("cosine-similarity",),
                 data_num: int | None = 1, progress: Progress | None = None) -> LocalErrorResult:
    """Local error of each of ``nodes`` (default: every :func:`local_units` one).

    A node none of whose outputs is floating point (shapes, indices) has no entry.
    """
    model, engine = ctx.model, ctx.engine
    chosen = get_metrics(list(metrics))
    per_tensor_only(chosen, "local errors")
    units = local_units(model)
    names = list(units if nodes is None else nodes)
    outputs = {n: tuple(t for t in model.tensors_of(n) if t in engine.plan.producer_segment) for n in names}
    by_segment: dict[int, list[str]] = {}
    for n in names:
        if outputs[n]:
            by_segment.setdefault(engine.plan.producer_segment[outputs[n][0]], []).append(n)
    samples = len(ctx.samples(data_num))
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    done, total = 0, samples * sum(map(len, by_segment.values()))
    for s in range(samples):
        ref = ctx.reference(s, ())
        for seg in sorted(by_segment):
            group = by_segment[seg]
            tensors = sorted({t for n in group for t in outputs[n] if engine.plan.producer_segment[t] == seg})
            floats = engine.local(ref, (), tensors)
            for n in group:
                actual = engine.local(ref, units[n], tensors)
                for t in outputs[n]:
                    if t not in floats or floats[t].dtype.kind != "f":
                        continue
                    vals = np.asarray(compare(chosen, floats[t], actual[t], s), dtype=np.float64)
                    sums[n] = sums.get(n, 0.0) + vals
                    counts[n] = counts.get(n, 0) + 1
                done += 1
                if progress is not None:
                    progress(done, total)
    entries = tuple(LocalError(n, units[n], outputs[n],
                               MappingProxyType({m.name: float(v) for m, v in zip(chosen, sums[n] / counts[n])}))
                    for n in names if n in sums)
    return LocalErrorResult(tuple(m.name for m in chosen), samples, entries)
