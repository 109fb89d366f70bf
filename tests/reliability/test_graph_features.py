"""Graph features exporters produce, each on a generated model quantized by ONNX Runtime (or written
by hand where its quantizer cannot make it): integer and bool tensors, multi-output nodes, opsets
11 → newest, int16, dynamic shapes, batches, external data, unnamed and oddly named nodes, node
order, and calibration nodes inside control flow (a clear error, for now).

Where a run succeeds, its numbers are checked against the brute force (one model and session per
candidate, ``tests/support/oracle.py``), not only for the absence of a crash.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.context import open_context
from ptqdebug.errors import ModelError
from ptqdebug.metrics import METRICS, compare
from tests.reliability.models import cnn_qdq, qdq_text_model, text_samples, write_folder
from tests.support.builders import image_samples, quantize_qdq, small_cnn
from tests.support.oracle import oracle_from_model

RNG = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(0, 0.3, shape).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: dict[str, np.ndarray], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _quantized(tmp_path: Path, model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], **kw: object) -> tuple[Path, Path]:
    onnx.save(model, tmp_path / "float.onnx")
    quantize_qdq(tmp_path / "float.onnx", tmp_path / "model.onnx", samples, **kw)  # type: ignore[arg-type]
    return tmp_path / "model.onnx", write_folder(tmp_path / "calibration_data", samples)


def assert_matches_oracle(model: object, data: object, node_type: str = "activation",
                          metric: str = "cosine-similarity", data_num: int | None = None) -> dict[str, dict[str, float]]:
    """ptqdebug's sweep equals the brute force: a model and a session per candidate, mean over
    samples, then over outputs (the original's aggregation), but the integer ones (an output Shape,
    a TopK's indices), whose per-tensor score is 1 whatever quantization does."""
    got = dbg.get_sensitivity_of_nodes(model, metric, data, node_type=node_type, data_num=data_num, cache=False)
    cm = dbg.load_model(model)
    samples = list(dbg.load_data(data, cm.inputs))[: data_num or None]
    m = METRICS[metric]
    cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
    assert set(got) == set(cands) and cands
    floats = [oracle_from_model(cm, (), s) for s in samples]
    for name, qs in cands.items():
        runs = [oracle_from_model(cm, qs, s) for s in samples]
        outputs = [o for o in cm.outputs if floats[0][o].dtype.kind == "f"] or list(cm.outputs)
        want = float(np.mean([np.mean([compare([m], f[o], r[o])[0] for f, r in zip(floats, runs)]) for o in outputs]))
        value = got[name][metric]
        assert (math.isnan(want) and math.isnan(value)) or abs(want - value) <= 1e-6 * max(1.0, abs(want)), (name, want, value)
    return got


# -- integer and bool tensors -----------------------------------------------------------------------
def test_integer_shape_subgraph_and_bool_mask(tmp_path: Path) -> None:
    """Shape → Gather → Concat → Reshape (int64 tensors) and Greater → Where / Cast (a bool mask)
    between calibration nodes: sweeps, curves and distributions have defined values."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0, name="gather"),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"], name="unsqueeze"),
        helper.make_node("Concat", ["bu", "minus1"], ["newshape"], axis=0, name="concat"),
        helper.make_node("Greater", ["c", "zero"], ["mask"], name="greater"),
        helper.make_node("Where", ["mask", "c", "zero"], ["relu"], name="where"),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Add", ["relu", "maskf"], ["m"], name="add"),
        helper.make_node("Conv", ["m", "w2"], ["c2"], name="conv2"),
        helper.make_node("Reshape", ["c2", "newshape"], ["y"], name="reshape"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512]),
                    helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 8, 8, 8])],
                   {"w": _w(8, 4, 3, 3), "w2": _w(8, 8, 1, 1), "i0": np.array(0, np.int64), "ax0": np.array([0], np.int64),
                    "minus1": np.array([-1], np.int64), "zero": np.array(0.0, np.float32)})
    samples = [{"x": RNG.normal(size=(1, 4, 8, 8)).astype(np.float32)} for _ in range(3)]
    path, data = _quantized(tmp_path, model, samples)
    cm = dbg.load_model(path)
    assert {"shape", "gather", "greater", "where"} <= set(cm.node_outputs)
    for kind in ("activation", "node"):
        for metric in ("cosine-similarity", "mse"):
            assert_matches_oracle(str(path), str(data), kind, metric)
    run = dbg.runall(str(path), str(data), tmp_path / "out", data_num=None, node_type=["node", "activation"],
                     dis_nodes_list=["shape", "greater", "where"], cache=False)
    (acc,) = run.accumulate
    by_tensor = dict(zip(acc.tensors, acc.curves[0].values))
    assert "s" not in by_tensor and by_tensor  # the integer shape is 1 whatever is quantized: not drawn
    assert all(math.isfinite(v) for v in by_tensor.values())
    kinds = {d.tensor: d for d in run.distributions}
    assert kinds["mask"].values["float"].dtype == np.float32 and kinds["s"].values["float"].tolist() == [1, 8, 8, 8]


# -- multi-output nodes ----------------------------------------------------------------------------
def test_split_and_topk_with_calibration_nodes_downstream(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Split", ["c", "split"], ["s0", "s1"], axis=1, name="split"),
        helper.make_node("Conv", ["s0", "wa"], ["a"], name="conv_a"),
        helper.make_node("Conv", ["s1", "wb"], ["b"], name="conv_b"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
        helper.make_node("Reshape", ["y", "flat"], ["yf"], name="flatten"),
        helper.make_node("TopK", ["yf", "k"], ["vals", "idx"], axis=1, name="topk"),
        helper.make_node("Gather", ["yf", "idx"], ["picked"], axis=1, name="gather_top"),
        helper.make_node("Mul", ["picked", "vals"], ["out"], name="mul"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
                    helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 5]),
                    helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 5])],
                   {"w": _w(8, 4, 3, 3), "wa": _w(4, 4, 1, 1), "wb": _w(4, 4, 1, 1), "split": np.array([4, 4], np.int64),
                    "flat": np.array([1, -1], np.int64), "k": np.array([5], np.int64)})
    samples = [{"x": RNG.normal(size=(1, 4, 8, 8)).astype(np.float32)} for _ in range(3)]
    path, data = _quantized(tmp_path, model, samples)
    cm = dbg.load_model(path)
    assert len(cm.node_outputs["split"]) == 2 and len(cm.node_outputs["topk"]) == 2
    assert cm.node_quantizers["conv_a"] and cm.node_quantizers["conv_b"]  # calibration nodes after each Split output
    for kind in ("activation", "weight", "node"):
        assert_matches_oracle(str(path), str(data), kind)
    got = dbg.get_sensitivity_of_nodes(str(path), "mse", str(data), output_node="split", node_type="activation", cache=False)
    assert all(math.isfinite(v["mse"]) for v in got.values())
    (acc,) = dbg.plot_acc_error(str(data), str(path), quantize_node=["conv_a", "conv_b"], save_dir=tmp_path / "acc")
    assert {"s0", "s1", "idx"} <= set(acc.tensors) and all(math.isfinite(v) for c in acc.curves for v in c.values)


# -- opsets and int16 -----------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [11, 13, 17, 21])
def test_opsets(opset: int, tmp_path: Path) -> None:
    samples = image_samples(2, 16, seed=opset)
    path, data = _quantized(tmp_path, small_cnn(seed=3, size=16, channels=(4, 8), opset=opset), samples,
                            per_channel=opset >= 13, keep_activations=True)
    assert dbg.load_model(path).quantizers
    assert_matches_oracle(str(path), str(data), "activation")
    assert_matches_oracle(str(path), str(data), "weight")


def test_int16_qdq_at_opset_21(tmp_path: Path) -> None:
    samples = image_samples(2, 16, seed=5)
    path, data = _quantized(tmp_path, small_cnn(seed=3, size=16, channels=(4, 8), opset=21), samples,
                            activation_type="int16", weight_type="int16", keep_activations=True, symmetric_activations=True)
    cm = dbg.load_model(path)
    assert {q.qtype for q in cm.quantizers} == {"int16"}
    assert_matches_oracle(str(path), str(data), "activation")


def test_newest_opset_runs_or_says_why(tmp_path: Path) -> None:
    """The newest opset the installed onnx knows (often newer than ONNX Runtime's): a result, or one
    clear line naming the operator ONNX Runtime lacks."""
    text = qdq_text_model()
    text.opset_import[0].version = onnx.defs.onnx_opset_version()
    text.ir_version = onnx.IR_VERSION
    onnx.save(text, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", text_samples(2))
    try:
        assert_matches_oracle(str(tmp_path / "m.onnx"), str(data))
    except ModelError as exc:
        assert "ONNX Runtime cannot run the model" in str(exc) and "\n" not in str(exc)


# -- shapes ------------------------------------------------------------------------------------------
def test_dynamic_height_width_with_samples_of_different_sizes(tmp_path: Path) -> None:
    """Symbolic H/W and a data folder mixing 16×16 and 24×24 samples: samples of the same size share
    a batched run, the others run apart, and the numbers equal one-by-one runs."""
    model = small_cnn(seed=2, size=16, channels=(4, 8))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    samples = image_samples(2, 16, seed=1) + image_samples(3, 24, seed=2) + image_samples(1, 16, seed=3)
    path, data = _quantized(tmp_path, model, samples[:2])
    write_folder(data, samples)
    assert dbg.load_model(path).inputs[0].shape == ("N", 3, "H", "W")
    batched_ctx = open_context(str(path), str(data), cache=False)
    batched_ctx.batch_size = 8  # the default on GPUs; on CPU samples run one by one
    assert batched_ctx.sample_groups(None) == [[0, 1], [2, 3, 4], [5]]
    batched = dbg.get_sensitivity_of_nodes(batched_ctx, node_type="node", data_num=None)
    ctx = open_context(str(path), str(data), cache=False)
    ctx.batch_size = 1
    single = dbg.get_sensitivity_of_nodes(ctx, node_type="node", data_num=None)
    assert batched.keys() == single.keys()
    for name in batched:
        assert batched[name]["cosine-similarity"] == pytest.approx(single[name]["cosine-similarity"], abs=1e-6)
    assert_matches_oracle(str(path), str(data), "activation")


def test_a_sample_size_the_model_cannot_take_is_a_data_error(tmp_path: Path) -> None:
    """Free H/W in the input, but a Reshape that needs 8×8: the 12×12 sample is named, with ONNX
    Runtime's reason, as a DataError — no traceback, no half-finished sweep."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "m"], ["y"], name="matmul")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "H", "W"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                   {"w": _w(4, 4, 3, 3), "shape": np.array([1, 256], np.int64), "m": _w(256, 10)})
    small = [{"x": RNG.normal(size=(1, 4, 8, 8)).astype(np.float32)} for _ in range(2)]
    path, data = _quantized(tmp_path, model, small)
    np.save(data / "x" / "2.npy", RNG.normal(size=(1, 4, 12, 12)).astype(np.float32))
    assert_matches_oracle(str(path), str(data), "activation", data_num=2)
    with pytest.raises(dbg.DataError, match=r"cannot run the float model on sample 2 of .*\(x \[1, 4, 12, 12\]\), although "
                                            r"earlier samples ran: .*Reshape"):
        dbg.get_sensitivity_of_nodes(str(path), calibrated_data=str(data), data_num=None, cache=False)


def test_batch_larger_than_one_in_each_sample(tmp_path: Path) -> None:
    samples = [{"input": np.concatenate([s["input"] for s in image_samples(3, 16, seed=i)])} for i in range(3)]
    path, data = _quantized(tmp_path, small_cnn(seed=4, size=16, channels=(4, 8)), samples)
    assert np.load(data / "input" / "0.npy").shape == (3, 3, 16, 16)
    assert_matches_oracle(str(path), str(data), "node")
    stats = dbg.get_calibration_nodes_stat_info(str(path), str(data), save_dir=tmp_path / "stats")
    assert all(all(math.isfinite(v) for v in s["Max_vals"]) for s in stats.values())


def test_big_endian_npy_files(tmp_path: Path) -> None:
    model_path, data = cnn_qdq(tmp_path / "m", samples=2)
    for f in (data / "input").glob("*.npy"):
        np.save(f, np.load(f).astype(">f4"))
    assert np.load(data / "input" / "0.npy").dtype.byteorder == ">"
    assert_matches_oracle(str(model_path), str(data), "activation")


# -- files and names ------------------------------------------------------------------------------
def test_model_saved_with_external_data(tmp_path: Path) -> None:
    path, data = cnn_qdq(tmp_path / "m")
    proto = onnx.load(path)
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save(proto, ext / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.weights", size_threshold=0)
    assert not any(t.raw_data for t in onnx.load(ext / "model.onnx", load_external_data=False).graph.initializer if t.dims)
    inline = dbg.get_sensitivity_of_nodes(str(path), calibrated_data=str(data), node_type="weight", data_num=None, cache=False)
    external = assert_matches_oracle(str(ext / "model.onnx"), str(data), "weight")
    assert json.dumps(inline) == json.dumps(external)


def test_nodes_without_names(tmp_path: Path) -> None:
    model = qdq_text_model()
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", text_samples(2))
    got = assert_matches_oracle(str(tmp_path / "m.onnx"), str(data), "node")
    assert list(dbg.load_model(tmp_path / "m.onnx").node_outputs) == ["Conv_4", "Relu_7", "Add_8"]
    assert set(got) == {"Conv_4", "Relu_7", "Add_8"}


def test_nodes_out_of_order_are_sorted(tmp_path: Path) -> None:
    """Some exporters write nodes out of topological order; onnx.checker refuses that, ptqdebug sorts
    them (names keep their file positions)."""
    model = qdq_text_model()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    onnx.save(model, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", text_samples(2))
    assert_matches_oracle(str(tmp_path / "m.onnx"), str(data), "node")


@pytest.mark.parametrize("holder", ["Loop", "If"])
def test_calibration_nodes_inside_bodies_are_switched(tmp_path: Path, holder: str) -> None:
    """A body's pair reading the main graph's scale and zero point, its output a body output (the
    fuller cases, with brute-force checks, are in tests/test_bodies.py)."""
    body = {
        "Loop": """out = Loop (trip, c, c0) <body = b (int64 i, bool cond, float[1,2,4,4] v) => (bool cond_out, float[1,2,4,4] v_out) {
            cond_out = Identity (cond)
            q1 = QuantizeLinear (v, s, z)
            v_out = DequantizeLinear (q1, s, z)
        }>""",
        "If": """out = If (c) <then_branch = t () => (float[1,2,4,4] y) {
            q1 = QuantizeLinear (c0, s, z)
            y = DequantizeLinear (q1, s, z)
        }, else_branch = e () => (float[1,2,4,4] y2) { y2 = Relu (c0) }>""",
    }[holder]
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,4,4] x, bool c) => (float[1,2,4,4] out)
    <float s = {0.05}, int8 z = {0}, float[2,2,1,1] w = {0.31, -0.27, 0.13, 0.71}, int64 trip = {2}> {
        qx = QuantizeLinear (x, s, z)
        dx = DequantizeLinear (qx, s, z)
        c0 = Conv (dx, w)
        BODY
    }""".replace("BODY", body))
    onnx.save(model, tmp_path / "m.onnx")
    cm = dbg.load_model(tmp_path / "m.onnx")
    outer, q1 = cm.quantizers  # unnamed nodes are named after their op and place
    attr = "body" if holder == "Loop" else "then_branch"
    assert q1.name == f"{holder}_3.{attr}/QuantizeLinear_{1 if holder == 'Loop' else 0}"
    assert q1.scope == f"{holder}_3" and q1.kind == "activation" and outer.scope is None
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 2, 4, 4)).astype(np.float32), "c": np.array(True)} for _ in range(2)]
    got = dbg.get_sensitivity_of_nodes(cm, "mse", samples, node_type="activation", data_num=2, cache=False)
    for name in (outer.name, q1.name):  # the file's nodes have no names: the oracle builds from the model
        want = np.mean([np.mean((oracle_from_model(cm, [name], s)["out"] - oracle_from_model(cm, [], s)["out"]) ** 2)
                        for s in samples])
        assert got[name]["mse"] == pytest.approx(want, rel=1e-5, abs=1e-12)
    assert got[q1.name]["mse"] > 0


def test_control_flow_without_calibration_nodes_inside_runs(tmp_path: Path) -> None:
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,4,4] x, bool c) => (float[1,2,4,4] out)
    <float s = {0.05}, int8 z = {0}, float[2,2,1,1] w = {0.31, -0.27, 0.13, 0.71}> {
        qx = QuantizeLinear (x, s, z)
        dx = DequantizeLinear (qx, s, z)
        c0 = Conv (dx, w)
        out = If (c) <then_branch = t () => (float[1,2,4,4] y) { y = Sigmoid (c0) },
                      else_branch = e () => (float[1,2,4,4] y2) { y2 = Relu (c0) }>
    }""")
    sample = {"x": RNG.normal(size=(1, 2, 4, 4)).astype(np.float32), "c": np.array(True)}
    got = assert_matches_oracle(model, [sample, {**sample, "c": np.array(False)}])
    assert set(got) == {"QuantizeLinear_0"}
