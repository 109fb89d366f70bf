"""Float8 QDQ (ONNX opset 19 ``float8e4m3fn``, ``float8e5m2``): what ModelOpt and Quark write for
FP8 deployment. The calibration nodes are read with their type and width, and the sweeps equal a
brute force that edits the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.analyses.sensitivity import node_sensitivity
from ptqdebug.cli import main
from ptqdebug.context import open_context
from ptqdebug.metrics import METRICS, compare
from tests.support.oracle import brute_force_sensitivity, oracle_from_file

K, N = 48, 12
FP8_MAX = {T.FLOAT8E4M3FN: 448.0, T.FLOAT8E5M2: 57344.0}


def _qdq(name: str, src: str, out: str, **attrs: int) -> list[onnx.NodeProto]:
    return [h.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=name, **attrs),
            h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [out], name=f"{name}_dq", **attrs)]


def fp8_model(folder: Path, act_type: int, weight_type: int) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """``x → Q/DQ (act_type, per tensor) → MatMul(W: Q/DQ weight_type per channel) → Relu → Q/DQ → MatMul(V: Q/DQ) → y``."""
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((K, N)) * 0.3).astype(np.float32)
    v = (rng.standard_normal((N, 4)) * 0.5).astype(np.float32)
    nodes = [*_qdq("x_q", "x", "x_dq"), *_qdq("w_q", "w", "w_dq", axis=1), h.make_node("MatMul", ["x_dq", "w_dq"], ["mm1_out"], name="mm1"),
             h.make_node("Relu", ["mm1_out"], ["relu_out"], name="relu"), *_qdq("r_q", "relu_out", "r_dq"),
             *_qdq("v_q", "v", "v_dq"), h.make_node("MatMul", ["r_dq", "v_dq"], ["y"], name="mm2")]
    inits = [nh.from_array(w, "w"), nh.from_array(v, "v"),
             nh.from_array(np.array(3.0 / FP8_MAX[act_type], np.float32), "x_q_s"), h.make_tensor("x_q_z", act_type, [], [0]),
             nh.from_array((np.abs(w).max(0) / FP8_MAX[weight_type]).astype(np.float32), "w_q_s"),
             h.make_tensor("w_q_z", weight_type, [N], [0] * N),
             nh.from_array(np.array(4.0 / FP8_MAX[act_type], np.float32), "r_q_s"), h.make_tensor("r_q_z", act_type, [], [0]),
             nh.from_array(np.array(np.abs(v).max() / FP8_MAX[weight_type], np.float32), "v_q_s"), h.make_tensor("v_q_z", weight_type, [], [0])]
    graph = h.make_graph(nodes, "fp8", [h.make_tensor_value_info("x", T.FLOAT, [1, K])], [h.make_tensor_value_info("y", T.FLOAT, [1, 4])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 19)], ir_version=9)  # float8 needs IR 9; newer onnx writes newer IRs than ONNX Runtime reads
    onnx.checker.check_model(model)
    path = folder / "fp8.onnx"
    onnx.save(model, str(path))
    samples = [{"x": rng.standard_normal((1, K)).astype(np.float32)} for _ in range(3)]
    (folder / "data" / "x").mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        np.save(folder / "data" / "x" / f"{i}.npy", s["x"])
    return path, samples


@pytest.mark.parametrize(("act_type", "weight_type"), [(T.FLOAT8E4M3FN, T.FLOAT8E4M3FN), (T.FLOAT8E5M2, T.FLOAT8E4M3FN)])
def test_float8_sweeps_match_brute_force(tmp_path: Path, act_type: int, weight_type: int) -> None:
    path, samples = fp8_model(tmp_path, act_type, weight_type)
    ctx = open_context(path, tmp_path / "data")
    qmap = ctx.model.quantizer_map
    names = {T.FLOAT8E4M3FN: "float8e4m3fn", T.FLOAT8E5M2: "float8e5m2"}
    assert (qmap["x_q"].qtype, qmap["w_q"].qtype, qmap["w_q"].granularity) == (names[act_type], names[weight_type], "per-channel")
    assert all(q.bits == 8 for q in ctx.model.quantizers)
    cos = METRICS["cosine-similarity"]
    for node_type in ("weight", "activation", "node"):
        cands = candidates_for(ctx.model, node_type)
        got = node_sensitivity(ctx, cands, node_type=node_type, data_num=3).as_mapping()
        # (the oracle runs without graph optimizations: ONNX Runtime's extended ones would delete the Relu before r_q)
        want = brute_force_sensitivity(lambda qs, s: oracle_from_file(path, qs, s), {c.name: c.quantizers for c in cands},
                                       samples, ["y"], lambda a, b: compare([cos], a, b)[0])
        for name, value in want.items():
            assert got[name]["cosine-similarity"] == pytest.approx(value, abs=1e-6), (node_type, name)
        assert min(want.values()) < 1.0 - 1e-7  # 8-bit floats lose something


def test_runall_on_a_float8_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = fp8_model(tmp_path, T.FLOAT8E4M3FN, T.FLOAT8E4M3FN)
    out = tmp_path / "debug_result"
    assert main(["runall", str(path), str(tmp_path / "data"), "-s", str(out), "--no-cache"]) == 0
    results = json.loads((out / "results.json").read_text())
    acts = {e["name"]: e for e in results["sensitivity"]["activation"]["entries"]}
    assert set(acts) == {"x_q", "r_q"}
    assert {e["bits"] for e in acts.values()} == {8}  # not 843, the digits of float8e4m3fn
    # ONNX Runtime would delete the Relu before r_q's float8 quantizer: the user is told
    assert any("remove the Relu before 1 activation calibration node (r_q) that keeps negative values" in n for n in results["model"]["notes"])
    # int16 cannot describe float8 calibration nodes: runall says so and goes on
    assert any(n.startswith("int16 scores skipped: calibration node 'r_q' is float8e4m3fn") for n in results["model"]["notes"])
    assert results["partial_quantization_int16"] is None
    # the nodes the verdict recommends get their local error, as a separate call computes it, in the report too
    import ptqdebug as dbg

    recommended = [r["node"] for r in results["verdict"]["recommendations"]]
    assert recommended
    local = {e["node"]: e["scores"]["cosine-similarity"] for e in results["local_error"]["entries"]}
    want = dbg.local_errors(path, tmp_path / "data", nodes=recommended).as_mapping()
    assert set(local) == set(recommended) and local == {n: v["cosine-similarity"] for n, v in want.items()}
    assert "its own score" in (out / "index.html").read_text()
    capsys.readouterr()


@pytest.mark.parametrize(("zero_point", "noted"), [(0, True), (-8, False)])
def test_int4_after_relu_is_noted_where_onnxruntime_would_delete_the_relu(tmp_path: Path, zero_point: int, noted: bool) -> None:
    """ONNX Runtime deletes a Relu before an int4 QuantizeLinear whatever the zero point; with -8
    (the minimum) the quantizer clamps at 0 anyway, with 0 it keeps negative values."""
    from ptqdebug.model import load_model

    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), *_qdq("r_q", "r", "y")]
    inits = [nh.from_array(np.array(0.05, np.float32), "r_q_s"), h.make_tensor("r_q_z", T.INT4, [], [zero_point])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [4])], [h.make_tensor_value_info("y", T.FLOAT, [4])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 21)], ir_version=10), str(path))
    notes = load_model(path).notes
    assert any("(r_q) that keeps negative values" in n for n in notes) == noted
