"""Calibration nodes inside control-flow bodies (``If``, ``Loop``, ``Scan``).

Exporters put whole networks inside a body: silero-vad runs its 8 kHz or 16 kHz network in the
two branches of an ``If``; recurrent cells become ``Loop`` or ``Scan`` bodies. A calibration node
there is read, switched and analysed like any other:

* in the body it becomes a placeholder, exactly as in the main graph;
* the constants it owns (its weight, scales, zero points) move to the main graph under names of
  its own (``<calibration node>::<name>``), so the engine finds one flat set of weights, and a
  body reads them from the enclosing graph (ONNX lets a body read any outer value);
* its *scope* is the main-graph node that holds the body (at any depth): segments, orderings and
  the node ↔ calibration maps place it there, so "quantize node ``If_0``" means every calibration
  node of its branches.

ONNX Runtime returns only the main graph's values, so the *input data* of an activation
calibration node inside a body cannot be fetched: its distribution and data statistics are not
available (analyses say so in one line); its switch, sensitivity and error curves work as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import onnx

from .errors import ModelError
from .formats import Found
from .graph import GraphIndex, node_inputs
from .onnxfile import constants_to_initializers

__all__ = ["BodyQuantizers", "Finder", "alias_node_name", "bodies_of", "lift_body_calibration", "replace_found"]

#: a format reader: GraphIndex → Found items (formats.qdq.find_qdq, formats.horizon.find_horizon)
Finder = Callable[[GraphIndex], list[Found]]


def bodies_of(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """The subgraphs a node holds, with their attribute names (``then_branch``, ``body``, ...)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", g


def replace_found(nodes: Sequence[onnx.NodeProto], found: Sequence[Found]) -> list[onnx.NodeProto]:
    """``nodes`` with each group of found nodes swapped for its placeholder (at the place of the
    group's first node) and the Identity nodes of its aliases."""
    replaced = {id(node): item for item in found for node in item.nodes}
    out: list[onnx.NodeProto] = []
    emitted: set[int] = set()
    for node in nodes:
        item = replaced.get(id(node))
        if item is None:
            out.append(node)
            continue
        if id(item) in emitted:
            continue
        emitted.add(id(item))
        if item.quantizer is not None:
            out.append(item.quantizer.placeholder())
        for src, alias in item.aliases:
            out.append(onnx.helper.make_node("Identity", [src], [alias], name=alias_node_name(item, alias)))
    return out


def alias_node_name(item: Found, alias: str) -> str:
    """The name of the Identity node that computes ``alias``, one of ``item``'s aliases."""
    return f"{item.nodes[0].name}/{alias}"


@dataclass(frozen=True)
class BodyQuantizers:
    """What :func:`lift_body_calibration` took out of the bodies."""

    found: tuple[Found, ...]  # quantizers carry their scope; initializers go to the main graph
    initializers: tuple[onnx.TensorProto, ...]  # constants moved to the main graph


def lift_body_calibration(graph: onnx.GraphProto, finders: Sequence[Finder], taken: set[str]) -> BodyQuantizers:
    """Find the calibration nodes in every body of ``graph`` (in place: each becomes a
    placeholder there) and move the constants they own to the main graph.

    ``taken`` holds the names in use (node names and tensor names); the quantizers' names are
    added to it, and a calibration node whose name is already taken (sibling branches written by
    one exporter often repeat names) is renamed ``<holder>.<attribute>/<name>``.
    """
    outer = {t.name: t for t in graph.initializer}
    found: list[Found] = []
    moved: list[onnx.TensorProto] = []
    for node in graph.node:
        for attr, body in bodies_of(node):
            _lift(body, node.name, f"{node.name}.{attr}", outer, finders, taken, found, moved)
    return BodyQuantizers(tuple(found), tuple(moved))


def _lift(body: onnx.GraphProto, scope: str, path: str, outer: Mapping[str, onnx.TensorProto],
          finders: Sequence[Finder], taken: set[str], found: list[Found], moved: list[onnx.TensorProto]) -> None:
    constants_to_initializers(body)
    for i, node in enumerate(body.node):  # unnamed body nodes: named after where they sit
        if not node.name:
            node.name = f"{path}/{node.op_type}_{i}"
    index = GraphIndex(body)
    own = dict(index.initializers)
    index.initializers = {**outer, **own}  # what the body can read: its constants shadow outer ones
    items = [item for finder in finders for item in finder(index)]
    lifted = [_own_names(item, scope, path, taken, index.initializers) for item in items]
    for item in lifted:
        moved.extend(item.initializers)
        if item.quantizer is not None:
            found.append(item)
    nodes = replace_found(index.nodes, lifted)
    del body.node[:]
    body.node.extend(nodes)
    visible = {**outer, **own}
    for node in body.node:
        for attr, inner in bodies_of(node):
            _lift(inner, scope, f"{node.name}.{attr}", visible, finders, taken, found, moved)
    reads = {name for node in body.node for name in node_inputs(node)}
    keep = [t for t in body.initializer if t.name in reads]
    del body.initializer[:]
    body.initializer.extend(keep)


def _own_names(item: Found, scope: str, path: str, taken: set[str], constants: Mapping[str, onnx.TensorProto]) -> Found:
    """``item`` with a model-unique name, its scope, and its constants renamed to its own."""
    q = item.quantizer
    if q is None:
        return item
    name = q.name if q.name not in taken else f"{path}/{q.name}"
    if name in taken:
        raise ModelError(
            f"two calibration nodes inside the body {path} are named {q.name!r}; ptqdebug reports nodes by "
            "name, so names must be unique: rename one of them"
        )
    taken.add(name)
    rename = {t.name: f"{name}::{t.name}" for t in q.initializers}
    # e.g. the float value of a weight stored as integers; a bias correction inside a body is left
    # as the quantizer wrote it (its bias stays a constant of the body)
    corrected = {t.name for t in q.corrections}
    made = {t.name: t for t in item.initializers if t.name not in corrected}
    weight = constants.get(q.input, made.get(q.input)) if q.kind == "weight" else None
    if weight is not None:
        rename[q.input] = f"{name}::{q.input}"

    def renamed(t: onnx.TensorProto) -> onnx.TensorProto:
        new = onnx.TensorProto()
        new.CopyFrom(t)
        new.name = rename.get(t.name, t.name)
        return new

    def relinked(n: onnx.NodeProto) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.CopyFrom(n)
        for i, x in enumerate(new.input):
            new.input[i] = rename.get(x, x)
        return new

    lifted = replace(q, name=name, scope=scope, input=rename.get(q.input, q.input),
                     nodes=tuple(relinked(n) for n in q.nodes), initializers=tuple(renamed(t) for t in q.initializers),
                     off_node=relinked(q.off_node) if q.off_node is not None else None, corrections=())
    # the weight (what the placeholder reads) moves to the main graph; the quantizer's own
    # constants travel with it and are added wherever it is switched on
    main = tuple(renamed(t) for t in made.values() if t.name != q.input)
    if weight is not None:
        main += (renamed(weight),)
    return Found(nodes=item.nodes, quantizer=lifted, initializers=main, aliases=item.aliases)
