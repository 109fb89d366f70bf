"""The report's graph map: the ordinary nodes' own graph (the float model's), a layered layout
whose edges all point down, and boxes coloured by the node sweep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx

import ptqdebug as dbg
from ptqdebug.report.graphmap import MAX_NODES, graph_map, layout
from tests.support.builders import image_samples, quantize_qdq, resnet18


def _float_edges(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """Brute force: producer → consumer between the float model's nodes, by tensor name."""
    producer = {o: n.name for n in model.graph.node for o in n.output}
    return {(producer[t], n.name) for n in model.graph.node for t in n.input if t in producer}


def test_node_edges_are_the_float_models_graph(tmp_path: Path) -> None:
    """Calibration nodes looked through: the QDQ model's ordinary-node edges are exactly the
    float model's (a ResNet: residual adds, branches), plus one edge to the output's own
    calibration node from the node it quantizes."""
    float_model = resnet18(seed=0, size=32, width=8)
    onnx.save(float_model, tmp_path / "float.onnx")
    quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", image_samples(2, 32, seed=1), per_channel=True,
                 keep_activations=True)
    model = dbg.load_model(tmp_path / "qdq.onnx")
    edges = set(model.node_edges())
    unowned = set(model.unowned_quantizers)
    assert unowned  # the premise: ONNX Runtime quantized the output too
    ours = {n.name for n in float_model.graph.node}  # (not the int32 biases' DequantizeLinear nodes ORT adds)
    assert {e for e in edges if e[1] not in unowned and e[0] in ours} == _float_edges(float_model)
    producer = {o: n.name for n in float_model.graph.node for o in n.output}
    assert {e for e in edges if e[1] in unowned} == {(producer[model.quantizer_map[q].output], q) for q in unowned}  # (the float name)
    order = {n: i for i, n in enumerate([*model.node_outputs, *unowned])}
    assert all(order[a] < order[b] for a, b in edges)


def test_layout_points_every_edge_down_and_keeps_chains_straight() -> None:
    rng = np.random.default_rng(0)
    n = 60
    edges = sorted({(int(a), int(b)) for a, b in rng.integers(0, n, (150, 2)) if a < b})
    where = layout(n, edges)
    assert all(where[a][0] < where[b][0] for a, b in edges)
    spots = [(layer, slot) for layer, slot in where]
    assert len(set(spots)) == n  # no two boxes on one spot
    for j in range(n):  # a node's layer is its longest path from a node without inputs
        preds, succs = [a for a, b in edges if b == j], [b for a, b in edges if a == j]
        if preds:
            assert where[j][0] == 1 + max(where[a][0] for a in preds)
        else:  # which sits just above its nearest reader
            assert where[j][0] == (min(where[b][0] for b in succs) - 1 if succs else 0)
    chain = layout(5, [(0, 1), (1, 2), (2, 3), (3, 4)])
    assert chain == [(k, 0.0) for k in range(5)]
    branch = layout(4, [(0, 1), (0, 2), (1, 3), (2, 3)])  # a diamond: the two middle nodes side by side
    assert branch[1][0] == branch[2][0] == 1 and branch[1][1] != branch[2][1] and branch[3][1] == branch[0][1]


def _sweep(scores: dict[str, float], metric: str = "cosine-similarity") -> dict[str, object]:
    ranked = sorted(scores, key=scores.get)  # type: ignore[arg-type]
    return {"metrics": [metric], "entries": [{"name": n, "scores": {metric: scores[n]}} for n in ranked]}


def test_boxes_are_coloured_by_loss_and_names_are_escaped() -> None:
    graph = {"nodes": [["<img src=x onerror=alert(1)>", "Conv", True], ["b", "Relu", True], ["k", "Constant", False],
                       ["c", "Gemm", True], ["d", "Add", False], ["e", "Mul", True]],
             "edges": [[0, 1], [1, 3], [2, 3], [0, 4], [3, 4], [4, 5]]}
    html = graph_map(graph, _sweep({"<img src=x onerror=alert(1)>": 0.9, "b": 0.99999, "c": 0.999}), keep=["c"])
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    boxes = re.findall(r'<g class="(gnode[^"]*)"><title>([^<]*)</title><rect [^>]*style="fill:(#[0-9a-f]{6})"', html)
    assert len(boxes) == 5  # the Constant is not drawn
    by_name = {title.split(" (")[0]: (cls, fill) for cls, title, fill in boxes}
    assert by_name["&lt;img src=x onerror=alert(1)&gt;"][1] == "#991b1b"  # the largest loss: darkest
    assert by_name["b"][1] == "#fef9c3"  # the smallest: lightest
    assert by_name["c"][0] == "gnode kept" and by_name["d"] == ("gnode none", "#ffffff")  # recommended; no calibration node
    assert by_name["e"] == ("gnode", "#ffffff") and "e (Mul): not in the node sweep" in html  # (interested_nodes)
    assert html.count("<path ") == 5  # the edge from the Constant is gone with it
    assert "log scale from 1e-05 (light) to 0.1 (dark)" in html
    # the ranked nodes furthest right in their layer are named beside their box, escaped
    assert re.findall(r'class="gname">([^<]*)</text>', html) == ["&lt;img src=x onerror=alert(1)&gt;", "b", "c"]


def test_a_metric_without_a_known_best_is_shaded_by_rank_and_big_graphs_are_not_drawn() -> None:
    graph = {"nodes": [["a", "Conv"], ["b", "Relu"], ["c", "Gemm"]], "edges": [[0, 1], [1, 2]]}
    sweep = {"metrics": ["my_metric.py:task_loss"], "entries": [{"name": n, "scores": {"my_metric.py:task_loss": v}}
                                                              for n, v in (("b", 3.0), ("c", 2.0), ("a", 1.0))]}
    html = graph_map(graph, sweep)  # its direction unknown here: the sweep's order (most sensitive first) rules
    fills = dict(re.findall(r"<title>(\w) [^<]*</title><rect [^>]*style=\"fill:(#[0-9a-f]{6})\"", html))
    assert fills["b"] == "#991b1b" and fills["a"] == "#fef9c3"
    assert "rank: the most sensitive darkest" in html
    big = {"nodes": [[f"n{i}", "Relu"] for i in range(MAX_NODES + 1)], "edges": []}
    assert f"The graph has {MAX_NODES + 1} nodes" in graph_map(big, _sweep({"n0": 0.5}))
    assert graph_map({"nodes": []}, _sweep({})) == ""


def test_runall_draws_the_map_from_results_json(tmp_path: Path) -> None:
    from ptqdebug.calibration import calibrate
    from tests.calibration.models import make_samples, tiny_cnn

    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    cal = calibrate(tmp_path / "float.onnx", make_samples(4), tmp_path / "cal", method="max")
    run = dbg.runall(cal.model_path, cal.data_dir, tmp_path / "d", node_type="node", data_num=None, pick_threshold=0.99999)
    assert run.verdict.keep_float  # the premise: something is recommended, and outlined
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    model = dbg.load_model(cal.model_path)
    names = [n for n, _, _ in results["graph"]["nodes"]]
    assert [q for n, _, q in results["graph"]["nodes"]] == [bool(model.node_quantizers.get(n)) for n in model.node_outputs] + [
        True] * len(model.unowned_quantizers)
    assert names == [*model.node_outputs, *model.unowned_quantizers]
    assert {(names[a], names[b]) for a, b in results["graph"]["edges"]} == set(model.node_edges())
    page = (tmp_path / "d" / "index.html").read_text()
    section = page[page.index('<section class="card" id="graph">'):]
    section = section[:section.index("</section>")]
    drawn = [n for n, op, _ in results["graph"]["nodes"] if op != "Constant"]
    assert section.count('<g class="gnode') == len(drawn)
    swept = run.sensitivities["node"]
    assert section.count('class="rank">#') == min(10, len(swept.entries))
    worst = swept.entries[0].name
    assert re.search(rf"<title>{re.escape(worst)} \([^)]*\): cosine-similarity [^<]*, #1 of", section)
    assert section.count('<g class="gnode kept') == len(run.verdict.keep_float) > 0
    assert 0 < section.count('class="gname"') <= 10
    assert '<a href="#graph">Graph</a>' in page


def test_long_names_keep_their_end() -> None:
    """A path's end names the node (a middle cut dropped the layer number: ``layer…tion/MatMul_1``)."""
    from ptqdebug.report.graphmap import _short

    name = "/backbone/encoder/layer.6/attention/attention/MatMul_1_extra_long_suffix"
    assert _short(name) == "…" + name[-47:] and "layer.6" not in _short(name, 30) and _short("short") == "short"


def _reshaping_model() -> onnx.ModelProto:
    """A transformer's pattern: a MatMul whose output is reshaped to a shape computed from its own
    ``Shape`` (Shape → Gather → Unsqueeze → Concat), then a MatMul by a twice transposed weight; and
    the Shape of a NonZero, which follows the values."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w2")
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "axes"),
              numpy_helper.from_array(np.array([-1, 4, 2], np.int64), "rest")]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["y"], name="mm1"),
        helper.make_node("Shape", ["y"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["b", "axes"], ["b1"], name="unsq"),
        helper.make_node("Concat", ["b1", "rest"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["y", "target"], ["r"], name="reshape"),
        helper.make_node("Softmax", ["r"], ["p"], name="softmax", axis=-1),
        helper.make_node("Reshape", ["p", "s"], ["p2"], name="back"),
        helper.make_node("Transpose", ["w2"], ["w2t"], name="wt", perm=[1, 0]),
        helper.make_node("Transpose", ["w2t"], ["w2tt"], name="wtt", perm=[1, 0]),
        helper.make_node("MatMul", ["p2", "w2tt"], ["out"], name="mm2"),
        # a shape that follows values: how many positives (not fixed, though it is a Shape)
        helper.make_node("Relu", ["y"], ["pos"], name="relu"),
        helper.make_node("NonZero", ["pos"], ["nz"], name="nonzero"),
        helper.make_node("Shape", ["nz"], ["nzs"], name="count_shape"),
        helper.make_node("Cast", ["nzs"], ["count"], name="count", to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3, 6]),
                               helper.make_tensor_value_info("count", TensorProto.FLOAT, [2])], [w1, w2, *consts])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fixed_nodes_are_those_no_input_value_and_no_calibration_node_changes(tmp_path: Path) -> None:
    """Brute force: run the float and the fully calibrated model on two different inputs and
    compare every ordinary node's outputs; the fixed nodes' are the same in all four runs, every
    other node's differ somewhere."""
    import onnxruntime as ort

    from ptqdebug.calibration import calibrate

    onnx.save(_reshaping_model(), tmp_path / "float.onnx")
    rng = np.random.default_rng(1)
    samples = [{"x": rng.standard_normal((3, 8)).astype(np.float32)} for _ in range(3)]
    cal = calibrate(tmp_path / "float.onnx", samples, tmp_path / "cal", method="max", optimize=False)
    model = dbg.load_model(cal.model_path)
    assert model.quantizer_map  # the premise: Transpose's weight goes through calibration nodes
    ordinary = [n for n in model.node_outputs if model.node_types[n] != "Constant"]

    def run(path: Path, feed: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Every ordinary node's outputs, by node name (tensor names differ between the files)."""
        m = onnx.load(path)
        outs = {n.name: list(n.output) for n in m.graph.node if n.name in ordinary}
        m.graph.output.extend(onnx.ValueInfoProto(name=t) for ts in outs.values() for t in ts
                              if t not in {o.name for o in m.graph.output})
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        return {n: [values[t] for t in ts] for n, ts in outs.items()}

    runs = [run(p, s) for p in (tmp_path / "float.onnx", cal.model_path) for s in samples[:2]]
    same = {n for n in ordinary if all(np.array_equal(a, b) for r in runs for a, b in zip(r[n], runs[0][n]))}
    # the shape chain, and the weight's transposes (ONNX Runtime quantized the weight after them)
    assert model.fixed_nodes() == same == {"shape", "gather", "unsq", "concat", "wt", "wtt"}


def test_fixed_nodes_are_not_drawn_unless_scored() -> None:
    graph = {"nodes": [["mm", "MatMul", True], ["shape", "Shape", False], ["gather", "Gather", False], ["r", "Reshape", False],
                       ["g2", "Gather", True]],
             "edges": [[0, 1], [1, 2], [0, 3], [2, 3], [1, 4]], "fixed": [1, 2, 4]}
    html = graph_map(graph, _sweep({"mm": 0.99, "g2": 0.999}))
    drawn = re.findall(r"<title>(\w+) \(", html)
    assert drawn == ["mm", "r", "g2"]  # a fixed node named in the sweep (interested_nodes) stays
    assert "not drawn: 2 nodes that compute only from shapes and constants" in html
    assert html.count("<path ") == 1  # mm → r; the edges of the hidden nodes go with them
    assert "not drawn" not in graph_map({k: v for k, v in graph.items() if k != "fixed"}, _sweep({"mm": 0.99}))


def test_a_node_holding_calibration_nodes_in_a_body_is_not_fixed() -> None:
    """An If whose condition comes from a Shape (fixed) but whose branch quantizes a weight: its
    output changes with that calibration node."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    s, z = nh.from_array(np.array(0.1, np.float32), "s"), nh.from_array(np.array(0, np.int8), "z")
    body = h.make_graph([h.make_node("QuantizeLinear", ["w", "ws", "z"], ["qw"], name="qw_q"),
                         h.make_node("DequantizeLinear", ["qw", "ws", "z"], ["dw"], name="qw_dq"),
                         h.make_node("Identity", ["dw"], ["t_out"], name="t_id")], "then",
                        [], [h.make_tensor_value_info("t_out", T.FLOAT, [2])],
                        [nh.from_array(np.array([0.123, -0.456], np.float32), "w"), nh.from_array(np.array(0.01, np.float32), "ws")])
    other = h.make_graph([h.make_node("Constant", [], ["e_out"], name="e_c", value=nh.from_array(np.zeros(2, np.float32)))],
                         "else", [], [h.make_tensor_value_info("e_out", T.FLOAT, [2])])
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["qx"], name="q"),
             h.make_node("DequantizeLinear", ["qx", "s", "z"], ["d"], name="dq"),
             h.make_node("Shape", ["d"], ["sh"], name="shape"),
             h.make_node("ReduceSum", ["sh"], ["n"], name="sum", keepdims=0),
             h.make_node("Greater", ["n", "zero"], ["c"], name="gt"),
             h.make_node("If", ["c"], ["bias"], name="if", then_branch=body, else_branch=other),
             h.make_node("Add", ["d", "bias"], ["y"], name="add")]
    g = h.make_graph(nodes, "a", [h.make_tensor_value_info("x", T.FLOAT, [1, 2])], [h.make_tensor_value_info("y", T.FLOAT, [1, 2])],
                     [s, z, nh.from_array(np.array(0, np.int64), "zero")])
    model = dbg.load_model(h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8))
    assert model.node_quantizers["if"] == ("qw_q",)  # the premise
    assert model.fixed_nodes() == {"shape", "sum", "gt"}
