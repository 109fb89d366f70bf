"""Calibrated models in: one internal picture whatever the format.

:func:`load_model` reads a standard QDQ model or an ``HzCalibration`` model and returns a
:class:`CalibratedModel`: the float graph in topological order, in which every calibration node is a
named placeholder (an ``Identity`` node named after it), the list of :class:`Quantizer` records,
and the maps between ordinary nodes and calibration nodes (reference §2.2).

Names reported to the user are the model's own node names. Nodes without a name get
``<op_type>_<index in the file>`` (with ``_1``, ``_2``... appended if that is taken), which is
stable for a given file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError, OptionError, UnknownNodeError, UnsupportedOpError
from .formats import Found
from .formats.horizon import find_horizon
from .formats.floatref import FloatModel
from .formats.qdq import find_qdq
from .graph import GraphIndex, node_inputs, topological_order
from .quantizer import Quantizer

__all__ = ["CalibratedModel", "ModelSource", "TensorSpec", "load_model", "read_onnx"]

ModelSource = "str | os.PathLike[str] | onnx.ModelProto | CalibratedModel"

#: Ops the pass-through rule looks through when it searches a node's calibration nodes
#: (reference §2.2: the hmct list, plus Identity, Flatten, Squeeze and Unsqueeze, which move data
#: like Reshape does).
PASS_THROUGH_OPS = frozenset(
    {"MaxPool", "GlobalMaxPool", "Relu", "Reshape", "Transpose", "ReduceMax", "Split", "Slice",
     "Gather", "ScatterND", "Clip", "Identity", "Flatten", "Squeeze", "Unsqueeze"}
)

#: Operator domains plain ONNX Runtime runs.
_RUNNABLE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


@dataclass(frozen=True)
class TensorSpec:
    """A model input: name, numpy dtype and shape (ints for fixed dims, str/None for free ones)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.dtype.name}{dims}"


@dataclass(frozen=True, eq=False)
class CalibratedModel:
    """A calibrated model as ptqdebug sees it.

    Attributes:
        proto: the float graph, topologically sorted, each calibration node an ``Identity``
            placeholder named after it. Running it as is gives the float model.
        quantizers: every calibration node, in topological order.
        inputs: the model inputs that take data.
        outputs: the model output tensor names.
        node_outputs: every ordinary node (not a calibration node) → its output tensors, in
            topological order.
        node_quantizers: ordinary node → its calibration nodes, found through pass-through ops
            (reference §2.2), in input order.
        quantizer_nodes: calibration node → the ordinary nodes that find it that way.
        quantizer_consumers: calibration node → the ordinary nodes that read its output directly.
        source_format: ``"qdq"``, ``"horizon"`` or ``"qdq+horizon"``.
        path: the file it was read from, if any.
        notes: things the user should know about how the model was read (one line each).
    """

    proto: onnx.ModelProto = field(repr=False)
    quantizers: tuple[Quantizer, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    node_outputs: Mapping[str, tuple[str, ...]] = field(repr=False)
    node_quantizers: Mapping[str, tuple[str, ...]] = field(repr=False)
    quantizer_nodes: Mapping[str, tuple[str, ...]] = field(repr=False)
    quantizer_consumers: Mapping[str, tuple[str, ...]] = field(repr=False)
    node_types: Mapping[str, str] = field(repr=False)
    source_format: str = "qdq"
    path: str | None = None
    notes: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[object, tuple[dict[str, object]]]:
        """Picklable (read-only mapping views are not), for worker processes."""
        from dataclasses import fields

        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return (_rebuild, ({k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in state.items()},))

    # -- lookups ---------------------------------------------------------------------------
    @property
    def quantizer_map(self) -> Mapping[str, Quantizer]:
        return MappingProxyType({q.name: q for q in self.quantizers})

    def quantizer(self, name: str) -> Quantizer:
        for q in self.quantizers:
            if q.name == name:
                return q
        raise UnknownNodeError([name], "calibration node", [q.name for q in self.quantizers])

    @property
    def weight_quantizers(self) -> tuple[Quantizer, ...]:
        return tuple(q for q in self.quantizers if q.kind == "weight")

    @property
    def activation_quantizers(self) -> tuple[Quantizer, ...]:
        return tuple(q for q in self.quantizers if q.kind == "activation")

    @property
    def calibrated_configuration(self) -> frozenset[str]:
        """The calibration nodes switched on in the file (normally all of them)."""
        return frozenset(q.name for q in self.quantizers if q.enabled)

    @property
    def fixed_quantizers(self) -> frozenset[str]:
        """Calibration nodes that cannot be switched off exactly and therefore always stay on."""
        return frozenset(q.name for q in self.quantizers if not q.exact)

    @property
    def sensitivity_nodes(self) -> tuple[str, ...]:
        """Ordinary nodes with at least one calibration node (``node_type="node"`` candidates)."""
        return tuple(n for n in self.node_outputs if self.node_quantizers.get(n))

    def is_node(self, name: str) -> bool:
        return name in self.node_outputs or name in self.quantizer_map

    def all_names(self) -> list[str]:
        return [*self.node_outputs, *(q.name for q in self.quantizers)]

    def expand(self, names: str | Iterable[str], what: str = "node") -> tuple[str, ...]:
        """The calibration nodes behind names (reference ``get_calibration_by_node``).

        An ordinary node stands for the calibration nodes on its inputs; a calibration node for
        itself. Unknown names, and ordinary nodes without calibration nodes, are errors.
        """
        if isinstance(names, str):
            names = [names]
        names = list(names)
        unknown = [n for n in names if not self.is_node(n)]
        if unknown:
            raise UnknownNodeError(unknown, what, self.all_names())
        out: dict[str, None] = {}
        qmap = self.quantizer_map
        for n in names:
            if n in qmap:
                out[n] = None
                continue
            found = self.node_quantizers.get(n, ())
            if not found:
                raise OptionError(
                    f"{what} {n!r} ({self.node_types[n]}) has no calibration node on its inputs; "
                    "expected a calibration node or an ordinary node that reads one"
                )
            out.update(dict.fromkeys(found))
        return tuple(out)

    def tensors_of(self, name: str) -> tuple[str, ...]:
        """The tensors a name stands for when used as a compare point (``output_node``)."""
        if name in self.node_outputs:
            return self.node_outputs[name]
        if name in self.quantizer_map:
            return (self.quantizer_map[name].output,)
        raise UnknownNodeError([name], "output_node", self.all_names())


def _rebuild(state: dict[str, object]) -> CalibratedModel:
    return CalibratedModel(**{k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in state.items()})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
def read_onnx(source: str | os.PathLike[str] | onnx.ModelProto, what: str = "model") -> onnx.ModelProto:
    """Read an ONNX model file (with its external data), or copy a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return proto
    if not isinstance(source, (str, os.PathLike)):
        raise OptionError(
            f"{what}: got a {type(source).__name__}; expected a path to an .onnx file or an onnx.ModelProto"
        )
    path = Path(source)
    if not path.exists():
        raise ModelError(f"{what} file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"{what} {str(path)!r} is a folder; expected an .onnx file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ModelError(f"{what} file {str(path)!r} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if not head:
        raise ModelError(f"{what} file {str(path)!r} is empty (0 bytes); expected an .onnx model file (was the export interrupted?)")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, external data errors, permissions
        if _looks_like_text(head):
            raise ModelError(f"{what} file {str(path)!r} holds text, not a binary ONNX model; expected an .onnx file "
                             "(an ONNX text model can be converted with onnx.parser.parse_model and onnx.save)") from None
        missing = _missing_external_data(path)
        if missing:
            raise ModelError(
                f"{what} file {str(path)!r} keeps its weights in external data file {missing!r}, which is not there; "
                "expected the .onnx file and its data file(s) in the same folder, as onnx.save wrote them"
            ) from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"{what} file {str(path)!r} could not be read as ONNX ({reason}); expected a valid .onnx model file "
            "(a truncated or corrupted file: export or copy it again)"
        ) from None


def _missing_external_data(path: Path) -> str | None:
    """The first external data file the model names that does not exist next to it."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not even the graph parses: the caller reports that
        return None
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    yield from tensors(g)

    for tensor in tensors(proto.graph):
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            if not (path.parent / location).is_file():
                return location
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _default_opset(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give unnamed nodes stable names; refuse duplicate names."""
    seen: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        if node.name:
            if node.name in seen:
                raise ModelError(
                    f"two nodes are named {node.name!r} (nodes #{seen[node.name]} and #{i}); ptqdebug reports "
                    "nodes by name, so names must be unique: rename one of them"
                )
            seen[node.name] = i
    for i, node in enumerate(graph.node):
        if not node.name:
            base = f"{node.op_type}_{i}"
            name, k = base, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            node.name = name
            seen[name] = i


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn ``Constant`` nodes holding a tensor or numbers into initializers."""
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            value = None
            if attr.name == "value":
                value = numpy_helper.to_array(attr.t)
            elif attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                dtype = np.float32 if "float" in attr.name else np.int64
                value = np.asarray(helper.get_attribute_value(attr), dtype=dtype)
            if value is not None:
                graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _sort_nodes(graph: onnx.GraphProto, what: str) -> None:
    """Put the top-level nodes in a topological order (some exporters write them out of order),
    or say which node reads a tensor nothing provides, or where the cycle is."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    try:
        order = topological_order(list(graph.node), available)
    except ValueError as exc:
        raise ModelError(f"{what} is not a valid graph: {exc}; expected an acyclic ONNX graph in which every input "
                         "of a node is a graph input, an initializer or another node's output (re-export the model)") from None
    if order != sorted(order):
        nodes = [graph.node[i] for i in order]
        copies = [onnx.NodeProto() for _ in nodes]
        for c, n in zip(copies, nodes):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def _bad_text(graph: onnx.GraphProto) -> str | None:
    """The first name in ``graph`` (and its subgraphs) that is not valid UTF-8: protobuf hands such
    a string field over as ``bytes``, which nothing downstream expects."""
    for vi in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        if not isinstance(vi.name, str):
            return repr(vi.name)
    for node in graph.node:
        for text in (node.name, node.op_type, node.domain, *node.input, *node.output):
            if not isinstance(text, str):
                return repr(text)
        for attr in node.attribute:
            if not isinstance(attr.name, str):
                return repr(attr.name)
            for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                bad = _bad_text(g)
                if bad:
                    return bad
    return None


def _check(proto: onnx.ModelProto, what: str) -> None:
    if not proto.HasField("graph"):
        raise ModelError(f"{what} has no graph (is it an ONNX model at all?); expected an .onnx model file")
    bad = _bad_text(proto.graph) or next((repr(o.domain) for o in proto.opset_import if not isinstance(o.domain, str)), None)
    if bad:
        raise ModelError(f"{what} holds a name that is not valid UTF-8 ({bad[:60]}), so the file is corrupted; "
                         "expected an .onnx file as the exporter wrote it (export it again)")
    _sort_nodes(proto.graph, what)
    produced = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    produced |= {t.name for t in proto.graph.initializer}
    ghosts = [o.name for o in proto.graph.output if o.name not in produced]
    if ghosts:
        raise ModelError(f"{what} lists graph output {ghosts[0]!r}, which no node produces; expected every graph output "
                         "to be a node's output (re-export the model or remove that output)")
    if proto.ByteSize() < 2**31 - 1:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{what} is not a valid ONNX model ({first}); expected a model that passes onnx.checker") from None
        except UnicodeDecodeError:
            raise ModelError(f"{what} holds a name or op type that is not valid UTF-8, so the file is corrupted; "
                             "expected an .onnx file as the exporter wrote it (export it again)") from None


#: Operators whose presence inside a control-flow subgraph makes it a calibration node there.
_CALIBRATION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "HzCalibration"})


def _subgraph_calibration(graph: onnx.GraphProto, owner: str | None = None) -> tuple[str, str, str] | None:
    """The first calibration node inside an ``If``/``Loop``/``Scan`` body: (its op, its name, the
    control-flow node holding it)."""
    for node in graph.node:
        if owner is not None and node.op_type in _CALIBRATION_OPS:
            return node.op_type, node.name or node.output[0], owner
        for attr in node.attribute:
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                found = _subgraph_calibration(g, owner if owner is not None else f"{node.op_type} node {node.name!r}")
                if found:
                    return found
    return None


def _input_specs(graph: onnx.GraphProto, initializers: set[str]) -> tuple[TensorSpec, ...]:
    specs = []
    for vi in graph.input:
        if vi.name in initializers:
            continue
        t = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else np.dtype(np.float32)
        shape = None
        if t.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
            )
        specs.append(TensorSpec(vi.name, dtype, shape))
    return tuple(specs)


def _unsupported_ops(graph: onnx.GraphProto, acc: dict[str, str]) -> None:
    for node in graph.node:
        if node.domain not in _RUNNABLE_DOMAINS:
            acc.setdefault(f"{node.domain}::{node.op_type}", node.name)
        for attr in node.attribute:
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                _unsupported_ops(g, acc)


def load_model(
    model_or_file: str | os.PathLike[str] | onnx.ModelProto | CalibratedModel,
    float_model: str | os.PathLike[str] | onnx.ModelProto | None = None,
) -> CalibratedModel:
    """Read a calibrated model (QDQ or ``HzCalibration``) into a :class:`CalibratedModel`.

    Args:
        model_or_file: a path, an ``onnx.ModelProto``, or an already loaded model (returned as is).
        float_model: the float model the calibrated one was made from. Needed only for QDQ models
            that store weights as integers (ONNX Runtime's default): it gives their true float
            values, so weight calibration nodes can be switched off exactly, and float biases.

    Raises:
        ModelError: unreadable or invalid model, no calibration nodes.
        UnsupportedOpError: custom operators plain ONNX Runtime cannot run.
    """
    if isinstance(model_or_file, CalibratedModel):
        return model_or_file
    if model_or_file is None:
        raise OptionError("no calibrated model given; expected a path to calibrated_model.onnx")
    path = None if isinstance(model_or_file, onnx.ModelProto) else str(model_or_file)
    proto = read_onnx(model_or_file, "calibrated model")
    what = "calibrated model" if path is None else f"calibrated model {path!r}"
    if proto.HasField("graph") and _bad_text(proto.graph) is None:
        _name_nodes(proto.graph)  # named in file order, before any reordering
    _check(proto, what)
    graph = proto.graph
    inside = _subgraph_calibration(graph)
    if inside is not None:
        op, name, owner = inside
        raise ModelError(
            f"{what} has a calibration node inside a control-flow subgraph ({op} {name!r} in the body of {owner}); "
            "ptqdebug cannot switch calibration nodes inside If/Loop/Scan bodies yet: expected calibration nodes "
            "in the main graph (quantize the model with the control flow unrolled, or exclude that subgraph from quantization)"
        )
    _constants_to_initializers(graph)
    opset = _default_opset(proto)

    reference = None
    if float_model is not None:
        reference = FloatModel(read_onnx(float_model, "float model"))

    index = GraphIndex(graph)
    found = find_horizon(index, opset) + find_qdq(index, reference)
    other_hz = sorted({n.op_type for n in graph.node if n.domain == "horizon" and n.op_type not in ("HzCalibration", "HzFilter")})
    if other_hz:
        raise UnsupportedOpError(
            f"the model contains horizon operators {', '.join(other_hz)} that have no public definition; "
            "export the calibrated model with only HzCalibration nodes, or run the float graph through ptqdebug calibrate"
        )
    return _assemble(proto, index, found, opset, path, float_model is not None)


def _assemble(
    proto: onnx.ModelProto, index: GraphIndex, found: Sequence[Found], opset: int, path: str | None, has_float: bool
) -> CalibratedModel:
    graph = proto.graph
    replaced: dict[str, Found] = {}
    for item in found:
        for node in item.nodes:
            replaced[node.name] = item
    quantizers = [f.quantizer for f in found if f.quantizer is not None]
    if not quantizers:
        raise ModelError(
            "the model has no calibration nodes (no QuantizeLinear/DequantizeLinear pairs, no HzCalibration "
            "nodes); expected a calibrated model: run `ptqdebug calibrate FLOAT_MODEL DATA -o OUT` to make one"
        )

    # New node list: each group of replaced nodes becomes one placeholder at its first node's place.
    new_nodes: list[onnx.NodeProto] = []
    emitted: set[int] = set()
    for node in graph.node:
        item = replaced.get(node.name)
        if item is None:
            new_nodes.append(node)
            continue
        if id(item) in emitted:
            continue
        emitted.add(id(item))
        q = item.quantizer
        if q is not None:
            new_nodes.append(q.placeholder())
        for src, alias in item.aliases:
            new_nodes.append(helper.make_node("Identity", [src], [alias], name=f"{node.name}/{alias}"))

    inits = {t.name: t for t in graph.initializer}
    for item in found:
        for t in item.initializers:
            inits[t.name] = t
        if item.quantizer is not None:
            inits.update((t.name, t) for t in item.quantizer.off_initializers)
    available = set(inits) | {i.name for i in graph.input}
    try:
        order = topological_order(new_nodes, available)
    except ValueError as exc:
        raise ModelError(f"{exc}; expected a valid acyclic ONNX graph") from None
    pinned = {o.name for o in graph.output}
    pinned = {n.name for n in new_nodes if pinned.intersection(n.output)}
    ordered = _place_constants_late([new_nodes[i] for i in order], set(inits), pinned)

    used: set[str] = set()
    for node in ordered:
        used.update(node_inputs(node))
    used.update(o.name for o in graph.output)
    canon = onnx.ModelProto()
    canon.CopyFrom(proto)
    del canon.graph.node[:]
    canon.graph.node.extend(ordered)
    del canon.graph.initializer[:]
    canon.graph.initializer.extend(t for name, t in inits.items() if name in used)
    del canon.graph.value_info[:]

    unsupported: dict[str, str] = {}
    _unsupported_ops(canon.graph, unsupported)
    if unsupported:
        ops = ", ".join(f"{k} (node {v!r})" for k, v in list(unsupported.items())[:5])
        raise UnsupportedOpError(
            f"the model contains custom operators plain ONNX Runtime cannot run: {ops}; "
            "expected standard ONNX operators (and HzCalibration/QDQ calibration nodes)"
        )

    qorder = {node.name: i for i, node in enumerate(ordered)}
    quantizers.sort(key=lambda q: qorder[q.name])
    formats = sorted({"horizon" if q.source_op == "HzCalibration" else "qdq" for q in quantizers})
    notes = []
    inexact = [q.name for q in quantizers if not q.exact]
    if inexact:
        notes.append(
            f"{len(inexact)} weight calibration nodes store their weights as integers and no float model was "
            "given: they cannot be switched off exactly and stay on in every configuration (pass "
            "float_model= / --float-model FLOAT.onnx to analyse them)"
        )
    restored = [q.name for q in quantizers if q.off_node is not None]
    if restored:
        how = "from the float model" if has_float else "inferred: their range starts at 0 right after an op that can be negative; pass --float-model to confirm"
        notes.append(
            f"{len(restored)} activation calibration nodes replace a Relu/Clip that the quantizer deleted "
            f"(ONNX Runtime's default); switched off they apply it again, so all-off is the float model ({how})"
        )
    maps = _node_maps(ordered, {q.name for q in quantizers}, index)
    return CalibratedModel(
        proto=canon,
        quantizers=tuple(quantizers),
        inputs=_input_specs(canon.graph, set(inits)),
        outputs=tuple(o.name for o in canon.graph.output),
        source_format="+".join(formats),
        path=path,
        notes=tuple(notes),
        **maps,
    )


def _place_constants_late(nodes: list[onnx.NodeProto], initializers: set[str], pinned: set[str]) -> list[onnx.NodeProto]:
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


def _node_maps(nodes: list[onnx.NodeProto], qnames: set[str], index: GraphIndex) -> dict[str, Mapping[str, tuple[str, ...]]]:
    producer = {o: n for n in nodes for o in n.output if o}

    def search(p: onnx.NodeProto) -> str | None:
        """Reference §2.2: a skippable producer's first calibration predecessor, else recurse once."""
        names = node_inputs(p)[:1] if p.op_type == "ScatterND" else node_inputs(p)
        preds = [producer[t] for t in names if t in producer]
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
        if node.name in qnames:
            continue
        node_outputs[node.name] = tuple(o for o in node.output if o)
        node_types[node.name] = node.op_type
        found: dict[str, None] = {}
        for t in node_inputs(node):
            p = producer.get(t)
            if p is None:
                continue
            if p.name in qnames:
                found[p.name] = None
                q_consumers[p.name].append(node.name)
            elif p.op_type in PASS_THROUGH_OPS:
                hit = search(p)
                if hit is not None:
                    found[hit] = None
        node_q[node.name] = tuple(found)
        for q in found:
            q_nodes[q].append(node.name)
    for q in qnames:
        node_types[q] = "calibration"
    freeze = lambda d: MappingProxyType({k: tuple(v) for k, v in d.items()})  # noqa: E731
    return {
        "node_outputs": MappingProxyType(node_outputs),
        "node_quantizers": MappingProxyType(node_q),
        "quantizer_nodes": freeze(q_nodes),
        "quantizer_consumers": freeze(q_consumers),
        "node_types": MappingProxyType(node_types),
    }
