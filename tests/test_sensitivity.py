"""get_sensitivity_of_nodes agrees with a brute-force sweep (one model and session per candidate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.metrics import METRICS
from ptqdebug.model import load_model
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, oracle_from_file, oracle_from_model


@pytest.mark.parametrize("node_type", ["node", "weight", "activation"])
@pytest.mark.parametrize("name", ["pc_int8_pairs_keep", "pt_uint8_pairs_keep"])
def test_matches_brute_force_on_edited_file(cnn_dir: Path, samples, name: str, node_type: str) -> None:
    path = cnn_dir / f"{name}.onnx"
    metrics = ["cosine-similarity", "mse", "sqnr"]
    got = dbg.get_sensitivity_of_nodes(path, metrics, cnn_dir / "calibration_data", node_type=node_type, data_num=3)
    cm = load_model(path)
    cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
    run = lambda qs, s: oracle_from_file(path, qs, s)  # noqa: E731
    for metric in metrics:
        m = METRICS[metric]
        want = brute_force_sensitivity(run, cands, samples[:3], list(cm.outputs), lambda a, b: _metric(m, a, b))
        for n, v in want.items():
            assert got[n][metric] == pytest.approx(v, rel=1e-5, abs=1e-6), (n, metric)
        if metric == metrics[0]:
            assert_same_ranking([(n, got[n][metric]) for n in got], want, m.higher_is_better)


def test_node_sweeps_score_the_output_calibration_node_alone(cnn_dir: Path) -> None:
    """ONNX Runtime quantizes the model output too; no node reads that calibration node, so no
    node's candidate would ever switch it on. It is a candidate of its own (its brute-force score
    is checked with the others above)."""
    cm = load_model(cnn_dir / "pc_int8_pairs_keep.onnx")
    assert cm.unowned_quantizers == ("logits_QuantizeLinear",)
    assert not any("logits_QuantizeLinear" in qs for qs in cm.node_quantizers.values())
    cands = candidates_for(cm, "node")
    assert cands[-1].name == "logits_QuantizeLinear" and cands[-1].quantizers == ("logits_QuantizeLinear",)
    assert len(cands) == len(cm.sensitivity_nodes) + 1
    assert "logits_QuantizeLinear" in candidates_for(cm, "activation")[-1].name  # the same configuration


def _metric(m, a, b):
    from ptqdebug.metrics import compare

    return compare([m], a, b)[0]


@pytest.mark.parametrize("name", ["pc_int8_pairs", "pc_int8_stored", "pc_int16_keep_sym"])
def test_matches_brute_force_model(cnn_dir: Path, samples, name: str) -> None:
    float_model = cnn_dir / "float.onnx" if "stored" in name else None
    cm = load_model(cnn_dir / f"{name}.onnx", float_model=float_model)
    got = dbg.get_sensitivity_of_nodes(cm, "cosine-similarity", cnn_dir / "calibration_data", node_type="node", data_num=2)
    cands = {c.name: c.quantizers for c in candidates_for(cm, "node")}
    run = lambda qs, s: oracle_from_model(cm, qs, s)  # noqa: E731
    want = brute_force_sensitivity(run, cands, samples[:2], list(cm.outputs), lambda a, b: _metric(METRICS["cosine-similarity"], a, b))
    for n in want:
        assert abs(got[n]["cosine-similarity"] - want[n]) < 1e-6
    assert_same_ranking([(n, v["cosine-similarity"]) for n, v in got.items()], want, True)


def test_returns_ranked_mapping_worst_first(cnn_dir: Path) -> None:
    got = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", ["mse", "cosine-similarity"],
                                      cnn_dir / "calibration_data", node_type="activation")
    mse = [v["mse"] for v in got.values()]
    assert mse == sorted(mse, reverse=True)
    assert all(set(v) == {"mse", "cosine-similarity"} for v in got.values())


def test_interested_nodes_and_groups(cnn_dir: Path) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    cm = load_model(path)
    a, b, c = cm.sensitivity_nodes[:3]
    got = dbg.get_sensitivity_of_nodes(path, calibrated_data=cnn_dir / "calibration_data",
                                      interested_nodes=[[a, b], [c]])
    assert set(got) == {f"{a}+{b}", c}
    single = dbg.get_sensitivity_of_nodes(path, calibrated_data=cnn_dir / "calibration_data", interested_nodes=a)
    assert list(single) == [a]
    assert dbg.get_sensitivity_of_nodes(path, calibrated_data=cnn_dir / "calibration_data", interested_nodes=[]) == {}


def test_output_node_compares_there(cnn_dir: Path, samples) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    cm = load_model(path)
    node = cm.sensitivity_nodes[2]
    got = dbg.get_sensitivity_of_nodes(path, "mse", cnn_dir / "calibration_data", output_node=node, node_type="activation")
    tensors = list(cm.node_outputs[node])
    cands = {c.name: c.quantizers for c in candidates_for(cm, "activation")}
    run = lambda qs, s: oracle_from_file(path, qs, s, outputs=tensors)  # noqa: E731
    want = brute_force_sensitivity(run, cands, samples[:1], tensors, lambda a, b: _metric(METRICS["mse"], a, b))
    for n in want:
        assert got[n]["mse"] == pytest.approx(want[n], rel=1e-5, abs=1e-9)
    # calibration nodes downstream of the compared node cannot change it
    downstream = [q.name for q in cm.quantizers[-2:] if q.kind == "activation"]
    assert all(got[q]["mse"] == 0.0 for q in downstream)


def test_save_dir_writes_log_and_json(cnn_dir: Path, tmp_path: Path) -> None:
    got = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", ["cosine-similarity", "sqnr"],
                                      cnn_dir / "calibration_data", node_type="weight", save_dir=tmp_path / "out")
    log = (tmp_path / "out" / "sensitivity_of_weight.log").read_text()
    lines = log.splitlines()
    assert lines[0].strip("=") == "weight" and lines[1].split() == ["Node", "cosine-similarity", "sqnr"]
    assert [line.split()[0] for line in lines[3:]] == list(got)
    data = json.loads((tmp_path / "out" / "sensitivity_of_weight.json").read_text())
    assert list(data) == list(got)
    for k, v in got.items():
        assert data[k]["cosine-similarity"] == pytest.approx(v["cosine-similarity"])


def _inf_model(tmp_path: Path) -> Path:
    """x → Q/DQ → Sub(0.3) → Reciprocal: quantizing x to 0.3 divides by zero; y → Q/DQ is benign."""
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[1,4] x, float[1,4] y) => (float[1,4] out) <float scale = {0.1}, int8 zp = {0}, float c = {0.3},
                                                            float s2 = {0.01}> {
        xq = QuantizeLinear <axis = 1> (x, scale, zp)
        xd = DequantizeLinear (xq, scale, zp)
        d = Sub(xd, c)
        r = Reciprocal(d)
        yq = QuantizeLinear (y, s2, zp)
        yd = DequantizeLinear (yq, s2, zp)
        out = Add(r, yd)
    }
    """
    model = onnx.parser.parse_model(text)
    for i, n in enumerate(model.graph.node):
        n.name = f"{n.op_type}_{i}"
    path = tmp_path / "inf.onnx"
    onnx.save(model, path)
    return path


def test_nonfinite_candidate_ranks_first_and_is_flagged(tmp_path: Path) -> None:
    path = _inf_model(tmp_path)
    data = {"x": np.array([[0.26, 1.0, 2.0, 3.0]], np.float32), "y": np.array([[0.123, 0.456, 0.789, 1.01]], np.float32)}
    got = dbg.get_sensitivity_of_nodes(path, ["cosine-similarity", "mse"], [data], node_type="activation")
    first, second = list(got)
    assert first == "QuantizeLinear_0" and math.isnan(got[first]["cosine-similarity"])
    assert second == "QuantizeLinear_4" and got[second]["mse"] > 0
    ctx = dbg.open_context(path, [data])
    result = dbg.sensitivity_of_nodes(ctx, node_type="activation")
    assert result.entries[0].nonfinite and not result.entries[1].nonfinite
    out = tmp_path / "out"
    dbg.get_sensitivity_of_nodes(path, "cosine-similarity", [data], node_type="activation", save_dir=out)
    assert json.loads((out / "sensitivity_of_activation.json").read_text())["QuantizeLinear_0"]["cosine-similarity"] == "nan"


def test_result_round_trips(cnn_dir: Path) -> None:
    ctx = dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data")
    result = dbg.sensitivity_of_nodes(ctx, metrics=["cosine-similarity", "sqnr"], node_type="activation")
    again = type(result).from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.as_mapping() == result.as_mapping()
    assert again.entries == result.entries


def test_verbose_logs_the_table(cnn_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="ptqdebug"):
        dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", calibrated_data=cnn_dir / "calibration_data",
                                     node_type="activation", verbose=True)
    text = caplog.text
    assert "node sensitivity" in text and "threshold" in text and "bit" in text


def test_batched_samples_equal_one_by_one(cnn_dir: Path) -> None:
    """Samples sent through the engine as one batch (the GPU default) score as one by one."""
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    one = dbg.open_context(model, data, cache=False)
    one.batch_size = 1  # the CPU default (on a GPU provider the default is 8)
    batched = dbg.open_context(model, data, cache=False)
    batched.batch_size = 4
    assert batched.sample_groups(6) == [[0, 1, 2, 3], [4, 5]] and one.sample_groups(6) == [[i] for i in range(6)]
    a = dbg.sensitivity_of_nodes(one, node_type="node", data_num=6, metrics=["cosine-similarity", "mse"]).as_mapping()
    b = dbg.sensitivity_of_nodes(batched, node_type="node", data_num=6, metrics=["cosine-similarity", "mse"]).as_mapping()
    assert list(a) == list(b)
    for k in a:
        assert b[k]["cosine-similarity"] == pytest.approx(a[k]["cosine-similarity"], abs=1e-7)
        assert b[k]["mse"] == pytest.approx(a[k]["mse"], rel=1e-4, abs=1e-9)


def test_models_with_a_fixed_batch_are_not_batched(tmp_path: Path) -> None:
    path = _inf_model(tmp_path)  # inputs declared [1, 4]
    data = [{"x": np.full((1, 4), v, np.float32), "y": np.full((1, 4), v, np.float32)} for v in (0.5, 1.5, 2.5)]
    ctx = dbg.open_context(path, data, cache=False)
    ctx.batch_size = 8
    assert ctx.sample_groups(None) == [[0], [1], [2]]


def test_tae_is_the_activations_read_by_conv_matmul_gemm(cnn_dir: Path) -> None:
    """The original's undocumented node_type="tae" (reference §2.1): the activation sweep's
    candidates whose readers include a Conv, MatMul, Gemm or ConvTranspose, with the same scores."""
    path, data = cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data"
    graph = onnx.load(str(path)).graph
    tae = dbg.get_sensitivity_of_nodes(path, "cosine-similarity", data, node_type="tae", data_num=2)
    act = dbg.get_sensitivity_of_nodes(path, "cosine-similarity", data, node_type="activation", data_num=2)
    # from the file itself: the Q→DQ pairs on activations whose DequantizeLinear output a Conv/MatMul/Gemm reads
    inits = {t.name for t in graph.initializer}
    dq_of = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    readers = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n.op_type)
    want = {q.name for q in graph.node if q.op_type == "QuantizeLinear" and q.input[0] not in inits
            and any(op in ("Conv", "MatMul", "Gemm", "ConvTranspose") for op in readers.get(dq_of.get(q.output[0], ""), []))}
    assert set(tae) == want and 0 < len(want) < len(act)
    assert all(tae[n] == act[n] for n in tae)
    with pytest.raises(dbg.OptionError, match="node_type"):
        dbg.runall(path, data, cnn_dir / "never", node_type="tae")  # runall takes the documented types only (§6.2)


def test_configurations_with_the_same_calibration_nodes_run_once(cnn_dir: Path) -> None:
    """A node sweep's candidates can switch on the same calibration nodes (a Shape and another
    reader of one tensor: 125 of ViT-S's 665): one run, the same values, bit for bit."""
    from ptqdebug.analyses.sensitivity import configuration_values

    cos = METRICS["cosine-similarity"]
    model = load_model(cnn_dir / "pc_int8_pairs_keep.onnx")
    a, b = (frozenset([q.name]) for q in model.activation_quantizers[:2])
    kw = dict(metrics=[cos], compare_at=model.outputs, data_num=2)
    once = dbg.open_context(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data", cache=False)
    before = once.engine.runs
    alone = configuration_values(once, [a, b], **kw)
    runs = once.engine.runs - before
    twice = dbg.open_context(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data", cache=False)
    before = twice.engine.runs
    got = configuration_values(twice, [a, b, set(a), b], **kw)
    assert twice.engine.runs - before == runs
    np.testing.assert_array_equal(got, np.concatenate([alone, alone]))


def test_shape_nodes_are_no_node_candidates(tmp_path: Path) -> None:
    """Quantizing a Shape's input cannot change its output: its score was that of the tensor's
    other readers (the calibration node is shared), and on ViT-S the verdict recommended keeping
    a Shape in float. The reader that uses the values stays a candidate."""
    from onnx import TensorProto, helper, numpy_helper
    from ptqdebug.analyses.candidates import candidates_for

    f = lambda a, n: numpy_helper.from_array(np.asarray(a), n)  # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="x_DequantizeLinear"),
             helper.make_node("Shape", ["xd"], ["shape"], name="shape"),
             helper.make_node("Reshape", ["xd", "shape"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                          [f(np.float32(0.05), "s"), f(np.int8(0), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    model = load_model(m)
    assert set(model.node_quantizers.get("shape", ())) == {"x_QuantizeLinear"}  # the premise: it finds the pair
    names = [c.name for c in candidates_for(model, "node")]
    assert "shape" not in names and "reshape" in names
    result = dbg.get_sensitivity_of_nodes(m, calibrated_data=[{"x": np.ones((2, 4), np.float32)}], interested_nodes=["shape"])
    assert list(result) == ["shape"]  # still yours to name
