"""A small read-only index over an ONNX graph: producers, consumers, order and names.

ptqdebug does its graph surgery on plain ``onnx.ModelProto`` objects; this module answers the
questions the surgery keeps asking (who produces this tensor, who reads it, in what order do the
nodes run) without mutating anything. Nodes that hold subgraphs (``If``, ``Loop``, ``Scan``) read
outer-scope tensors implicitly; :func:`node_inputs` counts those reads as inputs, so the order and
the consumer lists are right for control flow too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

import onnx

__all__ = ["GraphIndex", "node_inputs", "subgraph_outer_reads", "topological_order"]


def subgraph_outer_reads(graph: onnx.GraphProto) -> list[str]:
    """Tensors a subgraph reads from its enclosing scopes, in first-use order."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    defined |= {o for n in graph.node for o in n.output}
    reads: dict[str, None] = {}
    for node in graph.node:
        for name in node_inputs(node):
            if name and name not in defined:
                reads[name] = None
    for out in graph.output:
        if out.name not in defined:
            reads[out.name] = None
    return list(reads)


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """The tensors a node reads: its explicit inputs, then what its subgraphs read from outside."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            names.extend(n for n in subgraph_outer_reads(g) if n not in names)
    return names


def topological_order(
    nodes: Sequence[onnx.NodeProto], available: Iterable[str]
) -> list[int]:
    """Indices of ``nodes`` in a topological order, keeping the stored order where it is valid.

    Raises ``ValueError`` naming a node when the graph has a cycle or reads a tensor that nothing
    produces.
    """
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer[out] = i
    known = set(available)
    waiting: list[int] = [0] * len(nodes)
    dependents: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for name in node_inputs(node):
            if name in producer:
                waiting[i] += 1
                dependents[producer[name]].append(i)
            elif name not in known:
                raise ValueError(
                    f"node {node.name!r} reads tensor {name!r}, which no node, input or initializer provides"
                )
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = next(nodes[i].name for i, w in enumerate(waiting) if w > 0)
        raise ValueError(f"the graph has a cycle through node {stuck!r}")
    return order


class GraphIndex:
    """Producers and consumers of the tensors of one (top-level) graph, nodes in stored order."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.initializers: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.inputs: list[str] = [i.name for i in graph.input if i.name not in self.initializers]
        self.outputs: list[str] = [o.name for o in graph.output]
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for name in node_inputs(node):
                self.consumers.setdefault(name, []).append(node)
