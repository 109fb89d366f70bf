"""Brute force: one freshly built model and session per configuration, like the original tool.

Two oracles:

* :func:`oracle_from_file` edits the calibrated ONNX file itself: every QuantizeLinear →
  DequantizeLinear pair that is not enabled is cut out (its readers read the float tensor). It
  shares no code with ptqdebug's loader or engine, so agreement proves both. It is valid for
  models whose switched-off calibration nodes are the identity (no deleted Relu).
* :func:`oracle_from_model` builds the whole graph with a fixed configuration from the loaded
  model (``build_model``), one session per configuration: it checks the engine's segments,
  switches and caches against the plain semantics.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ptqdebug.engine.build import build_model
from ptqdebug.model import CalibratedModel


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A session that runs every node as its own kernel, as the engine's sessions do (graph
    optimizations off: no fusion into integer kernels, no Relu deleted before a float8
    QuantizeLinear, no float rewrites that round differently)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(model.SerializeToString(), so, providers=oracle_providers())


def oracle_providers() -> list:
    """The CPU, or CUDA where ``$PTQDEBUG_PROVIDERS`` names it (the suite run on a GPU): the oracle
    then runs where the engine runs, with float numerics (no TF32) and shape-picked convolutions."""
    if "cuda" not in os.environ.get("PTQDEBUG_PROVIDERS", "").lower():
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]


def oracle_from_file(path: Path, enabled: Collection[str], sample: Mapping[str, np.ndarray],
                     outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    g = model.graph
    rename: dict[str, str] = {}
    _cut_pairs(g, enabled, rename)
    for graph in _graphs(g):  # readers may sit in any body (bodies read outer values by name)
        for n in graph.node:
            for i, name in enumerate(n.input):
                if name in rename:
                    n.input[i] = rename[name]
    if outputs:
        del g.output[:]
        for name in outputs:
            vi = onnx.ValueInfoProto()
            vi.name = name
            g.output.append(vi)
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(sample))))


def _graphs(g: onnx.GraphProto):
    yield g
    for n in g.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _graphs(sub)


def _cut_pairs(g: onnx.GraphProto, enabled: Collection[str], rename: dict[str, str]) -> None:
    """Cut every QuantizeLinear → DequantizeLinear pair of ``g`` and its bodies not in ``enabled``."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    remove: set[int] = set()
    for q in g.node:
        if q.op_type != "QuantizeLinear" or q.name in enabled:
            continue
        dqs = consumers.get(q.output[0], [])
        assert dqs and all(d.op_type == "DequantizeLinear" for d in dqs)
        remove.add(id(q))
        for d in dqs:
            remove.add(id(d))
            rename[d.output[0]] = q.input[0]
    keep = [n for n in g.node if id(n) not in remove]
    for out in g.output:  # an output read through a removed DQ: copy the float tensor
        if out.name in rename:
            keep.append(onnx.helper.make_node("Identity", [rename[out.name]], [out.name]))
    del g.node[:]
    g.node.extend(keep)
    for n in g.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                _cut_pairs(sub, enabled, rename)


def oracle_from_model(cm: CalibratedModel, enabled: Collection[str], sample: Mapping[str, np.ndarray],
                      outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    built = build_model(cm, on=enabled, outputs=outputs)
    sess = _session(built.model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(sample))))


def brute_force_sensitivity(run, candidates: Mapping[str, Collection[str]], samples: list[Mapping[str, np.ndarray]],
                            outputs: list[str], metric) -> dict[str, float]:
    """The original's scoring: per sample and output the metric, mean over samples then outputs."""
    float_runs = [run((), s) for s in samples]
    scores = {}
    for name, qs in candidates.items():
        per_output = []
        for o in outputs:
            vals = [metric(fr[o], run(qs, s)[o]) for fr, s in zip(float_runs, samples)]
            per_output.append(float(np.mean(vals)))
        scores[name] = float(np.mean(per_output))
    return scores


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (max(np.linalg.norm(a), 1e-8) * max(np.linalg.norm(b), 1e-8)))


def assert_same_ranking(got: list[tuple[str, float]], expected: Mapping[str, float], higher_is_better: bool,
                        tol: float = 1e-6) -> None:
    """Ranks agree, except that entries closer than ``tol`` may swap."""
    assert [n for n, _ in got] and {n for n, _ in got} == set(expected)
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(expected, key=lambda n: sign * expected[n])
    for (name, _), want in zip(got, order):
        if name != want:
            assert abs(expected[name] - expected[want]) <= tol, (name, want, expected[name], expected[want])


def representable_range(qdq: Path, quantize_node: str) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the lowest and highest value the calibration node ``quantize_node`` of file
    ``qdq`` can output: its own QuantizeLinear → DequantizeLinear (parameters as stored, channels
    on axis 1 of a [2, C] input) run on -1e30 and +1e30."""
    model = onnx.load(str(qdq))
    q = next(n for n in model.graph.node if n.name == quantize_node)
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
    inits = {t.name: t for t in model.graph.initializer}
    channels = onnx.numpy_helper.to_array(inits[q.input[1]]).size
    nodes = []
    for node, inputs, out in ((q, ["x", *q.input[1:]], "q"), (dq, ["q", *dq.input[1:]], "y")):
        copy = onnx.helper.make_node(node.op_type, inputs, [out], domain=node.domain)
        copy.attribute.extend(a for a in node.attribute if a.name != "axis")
        copy.attribute.append(onnx.helper.make_attribute("axis", 1))
        nodes.append(copy)
    graph = onnx.helper.make_graph(nodes, "range", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, channels])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, channels])],
                                   [inits[n] for n in {*q.input[1:], *dq.input[1:]} if n])
    m = onnx.helper.make_model(graph, opset_imports=model.opset_import)
    m.ir_version = model.ir_version
    ends = np.repeat(np.array([[-1e30], [1e30]], np.float32), channels, axis=1)
    out = _session(m).run(["y"], {"x": ends})[0].astype(np.float64)
    return out[0], out[1]
