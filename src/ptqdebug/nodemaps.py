"""The maps between ordinary nodes and calibration nodes (reference §2.2), and node placement.

A node's calibration nodes are the ones on its inputs, found through pass-through ops: look at
each input's producer; a calibration node is the answer; a pass-through op is searched in turn
(its first calibration predecessor, else its first pass-through predecessor); anything else ends
the search. ``PASS_THROUGH_OPS`` is the hmct list plus Identity, Flatten, Squeeze and Unsqueeze,
which move data like Reshape does.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypedDict

import onnx

from .graph import node_inputs

__all__ = ["PASS_THROUGH_OPS", "node_maps", "place_constants_late"]

PASS_THROUGH_OPS = frozenset(
    {"MaxPool", "GlobalMaxPool", "Relu", "Reshape", "Transpose", "ReduceMax", "Split", "Slice",
     "Gather", "ScatterND", "Clip", "Identity", "Flatten", "Squeeze", "Unsqueeze"}
)


class NodeMaps(TypedDict):
    """What :func:`node_maps` returns: the map fields of :class:`~ptqdebug.model.CalibratedModel`."""

    node_outputs: Mapping[str, tuple[str, ...]]
    node_quantizers: Mapping[str, tuple[str, ...]]
    quantizer_nodes: Mapping[str, tuple[str, ...]]
    quantizer_consumers: Mapping[str, tuple[str, ...]]
    node_types: Mapping[str, str]


def place_constants_late(nodes: list[onnx.NodeProto], initializers: set[str], pinned: set[str]) -> list[onnx.NodeProto]:
    """Move nodes that read only constants (weight placeholders, bias DequantizeLinear, shape
    constants) right before their first reader, so that positions follow the data flow and no
    constant needlessly crosses a segment cut."""
    const_out: set[str] = set()
    movable: set[str] = set()
    for node in nodes:
        if node.name not in pinned and all(n in initializers or n in const_out for n in node_inputs(node)):
            movable.add(node.name)
            const_out.update(o for o in node.output if o)
    out: list[onnx.NodeProto] = []
    placed: set[str] = set()
    producer = {o: n for n in nodes for o in n.output if o}

    def place(node: onnx.NodeProto) -> None:
        for name in node_inputs(node):
            p = producer.get(name)
            if p is not None and p.name in movable and p.name not in placed:
                placed.add(p.name)
                place(p)
        out.append(node)

    for node in nodes:
        if node.name not in movable:
            place(node)
    out.extend(n for n in nodes if n.name in movable and n.name not in placed)
    return out


def node_maps(nodes: list[onnx.NodeProto], qnames: set[str],
              scoped: Mapping[str, str] | None = None, copies: frozenset[str] = frozenset()) -> NodeMaps:
    """The maps of :class:`~ptqdebug.model.CalibratedModel` over the main graph's ``nodes``.

    ``qnames`` are the main graph's calibration nodes; ``scoped`` maps each calibration node
    inside a control-flow body to the main-graph node holding it, which counts it among its own
    (after those on its inputs); ``copies`` are Identity nodes that repeat a calibration node's
    output (its other DequantizeLinear nodes): no ordinary nodes, their readers read the
    calibration node."""
    producer = {o: n for n in nodes for o in n.output if o}

    def source(t: str) -> onnx.NodeProto | None:
        p = producer.get(t)
        while p is not None and p.name in copies:
            p = producer.get(p.input[0])
        return p

    held: dict[str, list[str]] = {}
    for q, holder in (scoped or {}).items():
        held.setdefault(holder, []).append(q)

    def search(p: onnx.NodeProto) -> str | None:
        """Reference §2.2: a skippable producer's first calibration predecessor, else recurse once."""
        names = node_inputs(p)[:1] if p.op_type == "ScatterND" else node_inputs(p)
        preds = [pred for t in names if (pred := source(t)) is not None]
        for pred in preds:
            if pred.name in qnames:
                return pred.name
        for pred in preds:
            if pred.op_type in PASS_THROUGH_OPS and pred.name not in qnames:
                return search(pred)
        return None

    node_outputs: dict[str, tuple[str, ...]] = {}
    node_types: dict[str, str] = {}
    node_q: dict[str, tuple[str, ...]] = {}
    q_nodes: dict[str, list[str]] = {q: [] for q in qnames}
    q_consumers: dict[str, list[str]] = {q: [] for q in qnames}
    for node in nodes:
        if node.name in qnames or node.name in copies:
            continue
        node_outputs[node.name] = tuple(o for o in node.output if o)
        node_types[node.name] = node.op_type
        found: dict[str, None] = {}
        for t in node_inputs(node):
            p = source(t)
            if p is None:
                continue
            if p.name in qnames:
                found[p.name] = None
                q_consumers[p.name].append(node.name)
            elif p.op_type in PASS_THROUGH_OPS:
                hit = search(p)
                if hit is not None:
                    found[hit] = None
        found.update(dict.fromkeys(held.get(node.name, ())))
        node_q[node.name] = tuple(found)
        for q in found:
            q_nodes.setdefault(q, []).append(node.name)
    for q in [*qnames, *(scoped or {})]:
        node_types[q] = "calibration"
        q_consumers.setdefault(q, [])
    freeze = lambda d: MappingProxyType({k: tuple(v) for k, v in d.items()})  # noqa: E731
    return {
        "node_outputs": MappingProxyType(node_outputs),
        "node_quantizers": MappingProxyType(node_q),
        "quantizer_nodes": freeze(q_nodes),
        "quantizer_consumers": freeze(q_consumers),
        "node_types": MappingProxyType(node_types),
    }
