"""Cutting the float graph into segments, so a configuration re-runs only what it changes.

Enabling a calibration node changes only what lies downstream of it. The engine therefore cuts the
topologically ordered graph into consecutive segments, caches the float values that cross each cut
(once per sample), and runs a configuration from the segment of its first enabled calibration
node onwards. A candidate costs the downstream part of the graph plus, on average, half a segment.

Cuts go where little data crosses them (few, small tensors), spaced so each segment holds about
the same compute. Compute and sizes come from ONNX shape inference at the first sample's shapes;
where it cannot tell, every node counts the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from ..graph import node_inputs
from ..model import CalibratedModel
from ..onnxfile import skeleton

__all__ = ["Plan", "Segment", "make_plan"]


@dataclass(frozen=True)
class Segment:
    """Nodes ``[start, stop)`` of the topological order.

    ``inputs`` are the runtime tensors it reads from outside (model inputs or earlier segments);
    ``outputs`` the tensors it produces that later segments read or that are model outputs.
    """

    index: int
    start: int
    stop: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    quantizers: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    segments: tuple[Segment, ...]
    producer_segment: Mapping[str, int]  # tensor → segment producing it (absent: model input or constant)
    quantizer_segment: Mapping[str, int]

    def first_segment(self, quantizers: Sequence[str]) -> int:
        """The earliest segment holding one of ``quantizers`` (len(segments) if none)."""
        return min((self.quantizer_segment[q] for q in quantizers), default=len(self.segments))


def _costs(model: CalibratedModel, shapes: Mapping[str, Sequence[int]] | None) -> tuple[list[float], dict[str, float]]:
    """Per-node compute estimate and per-tensor byte size (NaN where unknown)."""
    nodes = list(model.proto.graph.node)
    sizes: dict[str, float] = {}
    if shapes is not None:
        sizes = _infer_sizes(model.proto, shapes)
    inits = {t.name: t for t in model.proto.graph.initializer}
    costs = []
    for node in nodes:
        out = sizes.get(node.output[0], math.nan) if node.output else math.nan
        factor = 1.0
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = inits.get(node.input[1])
            if w is not None and len(w.dims) > 1:
                factor = float(np.prod(w.dims[1:]))
            else:
                factor = 9.0 * 16
        elif node.op_type in ("MatMul", "Gemm") and node.input:
            k = sizes.get(f"{node.input[0]}::last", math.nan)
            factor = k if math.isfinite(k) else 64.0
        costs.append(out * factor / 4.0)  # sizes are bytes; 4 bytes per element
    known = [c for c in costs if math.isfinite(c)]
    fill = float(np.median(known)) if known else 1.0
    return [c if math.isfinite(c) else fill for c in costs], sizes


def infer(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto | None:
    """ONNX shape inference on the skeleton; None where it fails (callers fall back)."""
    try:
        return onnx.shape_inference.infer_shapes(skeleton(proto, shapes), data_prop=True)
    except Exception:  # shape inference is best effort
        return None


def _infer_sizes(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> dict[str, float]:
    inferred = infer(proto, shapes)
    if inferred is None:
        return {}
    sizes: dict[str, float] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        t = vi.type.tensor_type
        if not t.HasField("shape") or not t.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if any(d < 0 for d in dims):
            continue
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        sizes[vi.name] = float(np.prod(dims, dtype=np.float64)) * itemsize
        if dims:
            sizes[f"{vi.name}::last"] = float(dims[-1])
    return sizes


def default_segment_count(model: CalibratedModel) -> int:
    """About one segment per six nodes, at most 64: measured on ResNet-18 and ViT-S, finer cuts
    cost more in per-run overhead than they save in recomputation."""
    n = len(model.proto.graph.node)
    return max(1, min(64, round(n / 6)))


#: element types ONNX Runtime cannot hand to numpy: no cut may leave such a tensor between segments
UNFETCHABLE = frozenset({onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ,
                         onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ, onnx.TensorProto.UINT4,
                         onnx.TensorProto.INT4, *([onnx.TensorProto.FLOAT4E2M1] if hasattr(onnx.TensorProto, "FLOAT4E2M1") else [])})


def make_plan(model: CalibratedModel, segments: int | None = None, shapes: Mapping[str, Sequence[int]] | None = None,
              types: Mapping[str, onnx.TypeProto] | None = None) -> Plan:
    """Cut the model's topological order into about ``segments`` parts; ``types`` (by tensor name,
    from ONNX type inference) keep the cuts off tensors of :data:`UNFETCHABLE` types (a bfloat16
    value the graph computes with)."""
    nodes = list(model.proto.graph.node)
    n = len(nodes)
    k = default_segment_count(model) if segments is None else max(1, min(segments, n))
    costs, sizes = _costs(model, shapes)
    pos_of = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node_inputs(node):
            if name in pos_of:
                last_use[name] = i
    # crossing[c] = bytes of tensors produced before c and read at or after c
    known = [v for key, v in sizes.items() if not key.endswith("::last")]
    fill = float(np.median(known)) if known else 1.0
    diff = np.zeros(n + 2)
    for t, p in pos_of.items():
        if t in last_use and last_use[t] > p:
            b = sizes.get(t, fill)
            diff[p + 1] += b
            diff[last_use[t] + 1] -= b
    crossing = np.cumsum(diff)[: n + 1]
    cum = np.concatenate([[0.0], np.cumsum(costs)])
    total = cum[-1] if cum[-1] > 0 else 1.0
    joined = _joined(model, nodes)
    for t, p in pos_of.items():  # a value numpy cannot hold stays inside its segment
        if types and t in types and types[t].tensor_type.elem_type in UNFETCHABLE and last_use.get(t, p) > p:
            joined.update(range(p + 1, last_use[t] + 1))
    cuts = [0]
    for i in range(1, k):
        lo, hi = total * (i - 0.5) / k, total * (i + 0.5) / k
        window = [c for c in range(cuts[-1] + 1, n) if lo <= cum[c] <= hi and c not in joined]
        if not window:
            continue
        target = total * i / k
        best = min(window, key=lambda c: (crossing[c], abs(cum[c] - target)))
        cuts.append(best)
    cuts.append(n)
    return _segments(model, nodes, cuts, pos_of, last_use)


def _joined(model: CalibratedModel, nodes: list[onnx.NodeProto]) -> set[int]:
    """Positions no cut may fall at: between a weight calibration node with corrections (a
    corrected bias) and the last node reading them, so that the segment switching the weight
    feeds its bias too."""
    owner = {t.name: q.name for q in model.quantizers for t in q.corrections}
    if not owner:
        return set()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        first.setdefault(node.name, i)
        for name in node.input:
            if name in owner:
                last[owner[name]] = i
    joined: set[int] = set()
    for q, end in last.items():
        if q in first:
            joined.update(range(first[q] + 1, end + 1))
    return joined


def _segments(model: CalibratedModel, nodes: list[onnx.NodeProto], cuts: list[int],
              pos_of: dict[str, int], last_use: dict[str, int]) -> Plan:
    qnames = {q.name for q in model.quantizers}
    held = model.held_quantizers  # calibration nodes inside bodies belong to their holder's segment
    graph_outputs = set(model.outputs)
    seg_of_pos = np.zeros(len(nodes), dtype=np.int64)
    for s, (a, b) in enumerate(zip(cuts, cuts[1:])):
        seg_of_pos[a:b] = s
    producer_segment = {t: int(seg_of_pos[p]) for t, p in pos_of.items()}
    runtime_inputs = {i.name for i in model.inputs}
    segments = []
    for s, (a, b) in enumerate(zip(cuts, cuts[1:])):
        reads: dict[str, None] = {}
        for node in nodes[a:b]:
            for name in node_inputs(node):
                if (name in pos_of and pos_of[name] < a) or name in runtime_inputs:
                    reads[name] = None
        outs = [
            out for node in nodes[a:b] for out in node.output
            if out and (last_use.get(out, -1) >= b or out in graph_outputs)
        ]
        segments.append(Segment(
            index=s, start=a, stop=b, inputs=tuple(reads), outputs=tuple(outs),
            quantizers=tuple(q for node in nodes[a:b]
                             for q in ((node.name,) if node.name in qnames else held.get(node.name, ()))),
        ))
    quantizer_segment = {q: seg.index for seg in segments for q in seg.quantizers}
    return Plan(tuple(segments), producer_segment, quantizer_segment)
