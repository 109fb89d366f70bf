"""The ONNX file, read and made regular before anything keys on it.

:func:`read_onnx` reads a file (with its external data) or copies a ``ModelProto`` and says clearly
what is wrong with a file that cannot be read. The ``regularize`` helpers then give unnamed nodes
stable names (``<op_type>_<index in the file>``, with ``_1``, ``_2``... appended if taken), refuse
duplicate and invalid names, turn ``Constant`` nodes into initializers, sort nodes stored out of
order, and run ``onnx.checker``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError, OptionError
from .graph import topological_order

__all__ = [
    "RUNNABLE_DOMAINS", "bad_text", "check_model", "constants_to_initializers", "default_opset", "initializers_not_inputs",
    "name_nodes",
    "read_onnx", "skeleton", "sort_nodes", "unsupported_ops",
]

#: Operator domains plain ONNX Runtime runs.
RUNNABLE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


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
    if not path.is_file():  # a pipe can be read once (and a FIFO's open waits for a writer)
        raise ModelError(f"{what} {str(path)!r} is not a regular file (a pipe or a device); expected an .onnx file on "
                         "disk: save the model to a file first")
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
        if looks_like_text(head):
            raise ModelError(f"{what} file {str(path)!r} holds text, not a binary ONNX model; expected an .onnx file "
                             "(an ONNX text model can be converted with onnx.parser.parse_model and onnx.save)") from None
        missing = missing_external_data(path)
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


def missing_external_data(path: Path) -> str | None:
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


def looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def default_opset(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def name_nodes(graph: onnx.GraphProto) -> list[str]:
    """Give unnamed nodes stable names (``<op_type>_<index>``), and return them; refuse duplicate names."""
    seen: dict[str, int] = {}
    given: list[str] = []
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
            given.append(name)
    return given


def constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn ``Constant`` nodes holding a tensor or numbers into initializers (not graph outputs)."""
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.output[0] not in outputs:
            attr = node.attribute[0]
            if attr.name == "value":
                t = onnx.TensorProto()
                t.CopyFrom(attr.t)
                t.name = node.output[0]
                graph.initializer.append(t)
                continue
            if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                dtype = np.float32 if "float" in attr.name else np.int64
                value = np.asarray(helper.get_attribute_value(attr), dtype=dtype)
                graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def initializers_not_inputs(proto: onnx.ModelProto) -> None:
    """Take initializers out of the graph inputs and raise IR 3 to 4. Until IR 4 every
    initializer had to be listed as a graph input (onnx's older test models are like that);
    listed, they look like inputs the model takes data for to tools that merge or add
    initializers (ONNX Runtime's ``quant_pre_process`` merges duplicates and leaves the inputs
    listed; ``quantize_static`` adds initializers that are not inputs, which IR 3 forbids)."""
    if proto.ir_version >= 4:
        return
    inits = {t.name for t in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    proto.ir_version = max(4, helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True))


def sort_nodes(graph: onnx.GraphProto, what: str) -> None:
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


def bad_text(graph: onnx.GraphProto) -> str | None:
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
                bad = bad_text(g)
                if bad:
                    return bad
    return None


def check_model(proto: onnx.ModelProto, what: str) -> None:
    if not proto.HasField("graph"):
        raise ModelError(f"{what} has no graph (is it an ONNX model at all?); expected an .onnx model file")
    bad = bad_text(proto.graph) or next((repr(o.domain) for o in proto.opset_import if not isinstance(o.domain, str)), None)
    if bad:
        raise ModelError(f"{what} holds a name that is not valid UTF-8 ({bad[:60]}), so the file is corrupted; "
                         "expected an .onnx file as the exporter wrote it (export it again)")
    sort_nodes(proto.graph, what)
    produced = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    produced |= {t.name for t in proto.graph.initializer}
    ghosts = [o.name for o in proto.graph.output if o.name not in produced]
    if ghosts:
        raise ModelError(f"{what} lists graph output {ghosts[0]!r}, which no node produces; expected every graph output "
                         "to be a node's output (re-export the model or remove that output)")
    try:  # on the weightless skeleton: checking a copy of every weight would double the memory
        onnx.checker.check_model(skeleton(proto))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{what} is not a valid ONNX model ({first}); expected a model that passes onnx.checker") from None
    except UnicodeDecodeError:
        raise ModelError(f"{what} holds a name or op type that is not valid UTF-8, so the file is corrupted; "
                         "expected an .onnx file as the exporter wrote it (export it again)") from None


def skeleton(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]] | None = None,
             graph: onnx.GraphProto | None = None) -> onnx.ModelProto:
    """The model without its weights, for checks and shape inference: large initializers become
    typed inputs (their values are not needed, only their shapes), so neither copies nor holds the
    weights. With ``shapes``, the model inputs get those concrete dims; with ``graph``, that graph
    of the model (e.g. a body) stands in for the main one."""
    source = proto.graph if graph is None else graph
    model = onnx.ModelProto()
    model.ir_version = proto.ir_version
    model.opset_import.extend(proto.opset_import)
    model.functions.extend(proto.functions)
    g = model.graph
    g.name = source.name
    g.node.extend(source.node)
    g.output.extend(source.output)
    for vi in source.input:
        new = g.input.add()
        new.CopyFrom(vi)
        if shapes and vi.name in shapes and vi.type.HasField("tensor_type"):
            dims = new.type.tensor_type.shape
            del dims.dim[:]
            for d in shapes[vi.name]:
                dims.dim.add().dim_value = int(d)
    declared = {vi.name for vi in source.input}
    for t in source.initializer:
        if t.name in declared:
            continue
        if int(np.prod(t.dims, dtype=np.int64)) <= 64:  # small constants: shapes, axes, scales
            g.initializer.append(t)
        else:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return model


def unsupported_ops(graph: onnx.GraphProto, acc: dict[str, str]) -> None:
    for node in graph.node:
        if node.domain not in RUNNABLE_DOMAINS:
            acc.setdefault(f"{node.domain}::{node.op_type}", node.name)
        for attr in node.attribute:
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                unsupported_ops(g, acc)
