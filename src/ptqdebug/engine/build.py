"""Runnable ONNX models for a part of the graph under a configuration.

Each calibration node placeholder of the float graph becomes, depending on the configuration:

* ``off``: nothing: the placeholder ``Identity`` is removed and its readers read the float tensor
  (sessions run without graph optimizations, so ONNX Runtime would copy the tensor at every run),
  unless the placeholder's output is an output of the model being built;
* ``on``: the calibration node's own operators (e.g. its QuantizeLinear → DequantizeLinear);
* ``switchable`` activation: its operators and ``Where(switch, fake_quantized, float)``, with
  ``switch`` a boolean model input, so one session serves every on/off choice;
* ``switchable`` weight: the weight becomes a model input, fed either the float weight or its
  fake-quantized value (computed once by the node's own operators), so no per-run work is spent
  on weights. Calibration nodes that cannot be switched off (``exact=False``) are always on.

A weight calibration node's ``corrections`` (a corrected bias) follow it: on, their values replace
the float graph's; switchable, they are model inputs too, fed the float or the corrected value.

The same function builds the brute-force models of the tests (whole graph, fixed configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import onnx
from onnx import helper

from ..bodies import bodies_of
from ..graph import node_inputs
from ..model import CalibratedModel
from ..quantizer import Quantizer

__all__ = ["SHARED_LOCATION", "Built", "build_model", "standalone_model", "switch_name"]

#: ``location`` of the external-data stub that stands for a weight the session is given from memory
#: (``SessionOptions.add_external_initializers``): the bytes are never copied into the model
SHARED_LOCATION = "ptqdebug::shared"


def switch_name(quantizer: str) -> str:
    return f"ptqdebug::switch::{quantizer}"


@dataclass(frozen=True)
class Built:
    model: onnx.ModelProto
    switches: Mapping[str, str]  # quantizer → boolean input name
    weights: Mapping[str, str]  # quantizer → weight input name (its output tensor)
    corrections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # quantizer → its fed corrections


def _holds_quantizers(node: onnx.NodeProto, qmap: Mapping[str, object]) -> bool:
    """Whether a body of ``node`` (at any depth) holds a calibration node placeholder."""
    return any(n.name in qmap or _holds_quantizers(n, qmap) for _, g in bodies_of(node) for n in g.node)


def _with_bodies(node: onnx.NodeProto, rewrite: Callable[[Sequence[onnx.NodeProto]], list[onnx.NodeProto]]) -> onnx.NodeProto:
    """A copy of a control-flow node whose bodies' nodes went through ``rewrite``."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for _, body in bodies_of(copy):
        nodes = rewrite(list(body.node))
        del body.node[:]
        body.node.extend(nodes)
    return copy


def build_model(
    cm: CalibratedModel,
    *,
    on: Collection[str] = (),
    switchable: Collection[str] = (),
    nodes: Sequence[onnx.NodeProto] | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    input_types: Mapping[str, onnx.TypeProto] | None = None,
    shared: Callable[[onnx.TensorProto], bool] | None = None,
) -> Built:
    """A model over ``nodes`` (default: the whole graph) with the given calibration nodes on.

    ``inputs`` default to the model inputs, ``outputs`` to the model outputs. ``input_types``
    gives the type of every input that is not a model input. Initializers for which ``shared``
    is true become external-data stubs (location :data:`SHARED_LOCATION`, no bytes), for the
    caller to give the session from memory.
    """
    qmap = cm.quantizer_map
    graph = cm.proto.graph
    nodes = list(graph.node) if nodes is None else list(nodes)
    inputs = [i.name for i in cm.inputs] if inputs is None else list(inputs)
    outputs = list(cm.outputs) if outputs is None else list(outputs)
    on = set(on) | {q.name for q in cm.quantizers if not q.exact}
    switchable = set(switchable) - on

    extra_inits: dict[str, onnx.TensorProto] = {}
    switches: dict[str, str] = {}
    weights: dict[str, str] = {}
    corrections: dict[str, tuple[str, ...]] = {}
    domains: set[str] = set()

    def emit(node: onnx.NodeProto, out: list[onnx.NodeProto]) -> None:
        """Append what ``node`` becomes under the configuration."""
        q = qmap.get(node.name)
        if q is None or node.output[:1] != [q.output]:  # (a body may reuse a main-graph node name)
            out.append(_with_bodies(node, rewrite) if _holds_quantizers(node, qmap) else node)
            return
        if q.name in on:
            out.extend(q.nodes)
            extra_inits.update((t.name, t) for t in (*q.initializers, *q.corrections))
            domains.update(n.domain for n in q.nodes)
        elif q.name in switchable and q.kind == "weight":
            weights[q.name] = q.output  # a model input, read from the enclosing graph inside a body
            if q.corrections:
                corrections[q.name] = tuple(t.name for t in q.corrections)
        elif q.name in switchable:
            fq = f"{q.output}::fake_quantized"
            for n in q.nodes:
                copy = onnx.NodeProto()
                copy.CopyFrom(n)
                for i, o in enumerate(copy.output):
                    if o == q.output:
                        copy.output[i] = fq
                out.append(copy)
            extra_inits.update((t.name, t) for t in q.initializers)
            domains.update(n.domain for n in q.nodes)
            sw = switch_name(q.name)
            switches[q.name] = sw
            off_value = q.input
            if q.off_node is not None:  # the deleted Relu/Clip this node stands for when off
                off = onnx.NodeProto()
                off.CopyFrom(node)
                off.name = f"{q.name}::off"
                off_value = off.output[0] = f"{q.output}::off"
                out.append(off)
            out.append(helper.make_node("Where", [sw, fq, off_value], [q.output], name=f"{q.name}::switch"))
        else:
            out.append(node)

    def rewrite(body_nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
        out: list[onnx.NodeProto] = []
        for node in body_nodes:
            emit(node, out)
        return out

    new_nodes = rewrite(nodes)

    reads: set[str] = set()
    for node in new_nodes:
        reads.update(node_inputs(node))
    fed = {name for names in corrections.values() for name in names}
    inits = [t for t in graph.initializer if t.name in reads and t.name not in extra_inits and t.name not in fed]
    inits += [t for name, t in extra_inits.items() if name in reads]
    if shared is not None:
        inits = [_stub(t) if shared(t) else t for t in inits]

    types = dict(input_types or {})
    for vi in graph.input:
        types.setdefault(vi.name, vi.type)
    def typed(constant: str) -> onnx.TypeProto:
        proto = next(t for t in graph.initializer if t.name == constant)
        return helper.make_tensor_type_proto(proto.data_type, list(proto.dims))

    for q, name in weights.items():
        types[name] = typed(qmap[q].input)
    for name in fed:
        types[name] = typed(name)
    graph_inputs = []
    for name in [*inputs, *weights.values(), *sorted(fed)]:
        vi = onnx.ValueInfoProto()
        vi.name = name
        vi.type.CopyFrom(types[name])
        graph_inputs.append(vi)
    graph_inputs += [helper.make_tensor_value_info(sw, onnx.TensorProto.BOOL, []) for sw in switches.values()]
    declared = {o.name: o for o in graph.output}
    graph_outputs = []
    for name in outputs:
        if name in declared:
            graph_outputs.append(declared[name])
        else:
            vi = onnx.ValueInfoProto()
            vi.name = name
            graph_outputs.append(vi)

    g = helper.make_graph(new_nodes, graph.name or "ptqdebug", graph_inputs, graph_outputs, inits)  # (copies the nodes)
    _drop_off_placeholders(g, qmap, set(outputs))
    model = helper.make_model(g, opset_imports=list(cm.proto.opset_import))
    model.ir_version = cm.proto.ir_version
    if "com.microsoft" in domains and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return Built(model, switches, weights, corrections)


def standalone_model(cm: CalibratedModel, on: Collection[str]) -> onnx.ModelProto:
    """The whole calibrated model with only ``on`` calibration nodes on, as a model file of its
    own: what the engine scores for that configuration, with the placeholders of the calibration
    nodes that are off removed (their readers read the float tensor; a placeholder that is a
    restored Relu/Clip stays)."""
    return build_model(cm, on=on).model


def _drop_off_placeholders(graph: onnx.GraphProto, qmap: Mapping[str, Quantizer], keep: Collection[str]) -> None:
    """Remove the placeholders (``Identity``) of the main graph's calibration nodes that are off,
    their readers reading the float tensor instead; a placeholder whose output is in ``keep`` (an
    output of the model) stays, as does one that is a restored Relu/Clip."""
    drop = {n.name: n.input[0] for n in graph.node
            if n.op_type == "Identity" and n.name in qmap and n.output[0] == qmap[n.name].output and n.output[0] not in keep}
    rename = {qmap[name].output: source for name, source in drop.items()}
    for out, source in rename.items():  # calibration nodes in a row: read the first float tensor
        while source in rename:
            source = rename[source]
        rename[out] = source
    kept = [n for n in graph.node if n.name not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    _rename_reads(graph, rename)


def _rename_reads(graph: onnx.GraphProto, rename: Mapping[str, str]) -> None:
    """Point every read of a renamed tensor, in ``graph`` and its bodies (which read outer values
    by name), at its new name."""
    for n in graph.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        for _, body in bodies_of(n):
            _rename_reads(body, rename)


def _stub(t: onnx.TensorProto) -> onnx.TensorProto:
    """``t``'s name, type and shape, its data "external" at :data:`SHARED_LOCATION`."""
    stub = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims, data_location=onnx.TensorProto.EXTERNAL)
    stub.external_data.add(key="location", value=SHARED_LOCATION)
    return stub
