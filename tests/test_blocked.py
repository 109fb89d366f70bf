"""Blocked quantization (ONNX opset 21 ``block_size``): the int4 weight-only quantization that
ModelOpt, Quark and ONNX Runtime write for large language models, one scale per block of values.

The model, written by hand: ``x → Q/DQ int8 → MatMul(W1) → Relu → Q/DQ int8 → MatMul(W2) → y``,
with W1 ``[64, 32]`` fake-quantized by a blocked int4 Q→DQ pair (blocks of 16 along axis 0) and
W2 ``[32, 8]`` stored as blocked int8 under a lone DequantizeLinear (blocks of 8 along axis 0), or,
in the pairs-only variant, by a blocked int8 Q→DQ pair; the float model is the same graph
without them.
"""

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
from ptqdebug.cli import main
from ptqdebug.context import open_context
from ptqdebug.metrics import METRICS, compare
from ptqdebug.model import load_model
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, oracle_from_file, oracle_from_model

K, H, N = 64, 32, 8
B1, B2 = 16, 8


def _weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return (rng.standard_normal((K, H)) * 0.2).astype(np.float32), (rng.standard_normal((H, N)) * 0.3).astype(np.float32)


def _block_scale(w: np.ndarray, block: int, qmax: int) -> np.ndarray:
    return (np.abs(w.reshape(w.shape[0] // block, block, -1)).max(axis=1) / qmax).astype(np.float32)


def _qdq(name: str, src: str, scale: str, zp: str, out: str, **attrs: int) -> list[onnx.NodeProto]:
    return [h.make_node("QuantizeLinear", [src, scale, zp], [f"{name}_q"], name=name, **attrs),
            h.make_node("DequantizeLinear", [f"{name}_q", scale, zp], [out], name=f"{name}_dq", **attrs)]


def _write(path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> Path:
    graph = h.make_graph(nodes, "blocked", [h.make_tensor_value_info("x", T.FLOAT, [1, K])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, N])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)], ir_version=10)  # int4 needs IR 10; newer onnx writes newer IRs than ONNX Runtime reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def blocked_models(folder: Path, w2_stored: bool = True) -> tuple[Path, Path, list[dict[str, np.ndarray]]]:
    """(calibrated model, float model, samples)."""
    w1, w2 = _weights()
    s1, s2 = _block_scale(w1, B1, 7), _block_scale(w2, B2, 127)
    scalars = [nh.from_array(np.array(0.03, np.float32), "xs"), nh.from_array(np.array(0, np.int8), "xz"),
               nh.from_array(np.array(0.02, np.float32), "hs"), nh.from_array(np.array(0, np.int8), "hz")]
    nodes = [*_qdq("x_q", "x", "xs", "xz", "x_dq"), *_qdq("w1_q", "w1", "w1s", "w1z", "w1_dq", axis=0, block_size=B1),
             h.make_node("MatMul", ["x_dq", "w1_dq"], ["mm1_out"], name="mm1"),
             h.make_node("Relu", ["mm1_out"], ["relu_out"], name="relu"),
             *_qdq("h_q", "relu_out", "hs", "hz", "h_dq")]
    inits = [*scalars, nh.from_array(w1, "w1"), nh.from_array(s1, "w1s"),
             h.make_tensor("w1z", T.INT4, list(s1.shape), [0] * s1.size), nh.from_array(s2, "w2s"),
             nh.from_array(np.zeros(s2.shape, np.int8), "w2z")]
    if w2_stored:
        stored = np.clip(np.round(w2 / np.repeat(s2, B2, axis=0)), -128, 127).astype(np.int8)
        nodes.append(h.make_node("DequantizeLinear", ["w2_int8", "w2s", "w2z"], ["w2_dq"], name="w2_dq", axis=0, block_size=B2))
        inits.append(nh.from_array(stored, "w2_int8"))
    else:
        nodes += _qdq("w2_q", "w2", "w2s", "w2z", "w2_dq", axis=0, block_size=B2)
        inits.append(nh.from_array(w2, "w2"))
    nodes.append(h.make_node("MatMul", ["h_dq", "w2_dq"], ["y"], name="mm2"))
    calibrated = _write(folder / "blocked.onnx", nodes, inits)
    plain = [h.make_node("MatMul", ["x", "w1"], ["mm1_out"], name="mm1"), h.make_node("Relu", ["mm1_out"], ["relu_out"], name="relu"),
             h.make_node("MatMul", ["relu_out", "w2"], ["y"], name="mm2")]
    float_model = _write(folder / "float.onnx", plain, [nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    rng = np.random.default_rng(3)
    samples = [{"x": rng.standard_normal((1, K)).astype(np.float32)} for _ in range(3)]
    for i, s in enumerate(samples):
        (folder / "data" / "x").mkdir(parents=True, exist_ok=True)
        np.save(folder / "data" / "x" / f"{i}.npy", s["x"])
    return calibrated, float_model, samples


def test_blocked_parameters_are_read(tmp_path: Path) -> None:
    calibrated, float_model, _ = blocked_models(tmp_path)
    m = load_model(calibrated, float_model)
    w1, w2 = m.quantizer_map["w1_q"], m.quantizer_map["w2_dq"]
    assert (w1.qtype, w1.granularity, w1.block_size, w1.axis, w1.channel_axis, w1.scale.shape) == ("int4", "per-block", B1, 0, 1, (K // B1, H))
    # thresholds and scales per output channel (the largest of its blocks), not per block: an LLM has millions
    assert w1.thresholds == tuple(float(np.float32(v)) for v in w1.scale.astype(np.float64).max(axis=0) * 7) and w1.bits == 4
    np.testing.assert_array_equal(w1.channel_scales, w1.scale.max(axis=0))
    assert (w2.qtype, w2.granularity, w2.block_size, w2.exact, w2.source_op) == ("int8", "per-block", B2, True, "DequantizeLinear")
    assert m.quantizer_map["x_q"].granularity == "per-tensor" and m.quantizer_map["x_q"].block_size is None
    assert not load_model(calibrated).quantizer_map["w2_dq"].exact  # integers, no float model: stays on


def test_blocked_weight_values_are_the_blocks_dequantized(tmp_path: Path) -> None:
    calibrated, float_model, _ = blocked_models(tmp_path)
    ctx = open_context(calibrated, tmp_path / "data", float_model=float_model)
    w1, w2 = _weights()
    stored = nh.to_array(onnx.load(str(calibrated)).graph.initializer[-1])
    s2 = ctx.model.quantizer_map["w2_dq"].scale
    f, q = ctx.engine.weight_values("w2_dq")
    np.testing.assert_array_equal(f, w2)
    np.testing.assert_array_equal(q, stored.astype(np.float32) * np.repeat(s2, B2, axis=0))
    f, q = ctx.engine.weight_values("w1_q")
    s1 = np.repeat(ctx.model.quantizer_map["w1_q"].scale, B1, axis=0)
    np.testing.assert_array_equal(f, w1)
    np.testing.assert_allclose(q, np.clip(np.round(w1 / s1), -8, 7) * s1, rtol=0, atol=1e-7)
    assert len(np.unique(np.round(q / s1))) <= 16  # 4 bits


@pytest.mark.parametrize("node_type", ["weight", "activation", "node"])
def test_blocked_sweeps_match_brute_force(tmp_path: Path, node_type: str) -> None:
    calibrated, _, samples = blocked_models(tmp_path, w2_stored=False)
    ctx = open_context(calibrated, tmp_path / "data")
    from ptqdebug.analyses.sensitivity import node_sensitivity

    cands = candidates_for(ctx.model, node_type)
    got = node_sensitivity(ctx, cands, node_type=node_type, data_num=3).as_mapping()
    cos = METRICS["cosine-similarity"]
    want = brute_force_sensitivity(lambda qs, s: oracle_from_file(calibrated, qs, s), {c.name: c.quantizers for c in cands},
                                   samples, ["y"], lambda a, b: compare([cos], a, b)[0])
    for name, value in want.items():
        assert got[name]["cosine-similarity"] == pytest.approx(value, abs=1e-6), name
    assert_same_ranking([(n, v["cosine-similarity"]) for n, v in got.items()], want, higher_is_better=True)
    if node_type == "weight":
        assert set(want) == {"w1_q", "w2_q"} and min(want.values()) < 0.9999  # 4 bits lose something


def test_integer_blocked_weights_match_the_whole_model_built_per_configuration(tmp_path: Path) -> None:
    calibrated, float_model, samples = blocked_models(tmp_path)
    ctx = open_context(calibrated, tmp_path / "data", float_model=float_model)
    ref = ctx.reference(0, ["y"])
    for enabled in ((), ("w2_dq",), ("w1_q", "w2_dq"), tuple(ctx.model.calibrated_configuration)):
        got = ctx.engine.run(ref, enabled, ["y"])["y"]
        np.testing.assert_allclose(got, oracle_from_model(ctx.model, enabled, samples[0])["y"], rtol=1e-6, atol=1e-6)


def test_runall_on_a_blocked_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calibrated, float_model, _ = blocked_models(tmp_path)
    out = tmp_path / "debug_result"
    assert main(["runall", str(calibrated), str(tmp_path / "data"), "-s", str(out), "--float-model", str(float_model),
                 "--no-cache"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {e["name"] for e in results["sensitivity"]["weight"]["entries"]} == {"w1_q", "w2_dq"}
    boxes = {b["name"]: b for b in results["channelwise"]}
    assert boxes["w1_q"]["axis"] == 1 and boxes["w1_q"]["channels"] == H  # output channels, not blocks
    assert main(["get-calibration-nodes-stat-info", str(calibrated), str(tmp_path / "data"), "-s", str(out)]) == 0
    stats = json.loads((out / "cali_nodes_stat_info.json").read_text())
    assert stats["w1_q"]["Granularity"] == "per-block" and len(stats["w1_q"]["Scales"]) == len(stats["w1_q"]["Thresholds"]) == H
    capsys.readouterr()


def test_blocked_parameters_of_the_wrong_shape_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calibrated, _, _ = blocked_models(tmp_path)
    model = onnx.load(str(calibrated))
    for t in model.graph.initializer:
        if t.name == "w1s":
            t.CopyFrom(nh.from_array(np.ones((K // B1 + 1, H), np.float32), "w1s"))
        if t.name == "w1z":
            t.CopyFrom(h.make_tensor("w1z", T.INT4, [K // B1 + 1, H], [0] * ((K // B1 + 1) * H)))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    assert main(["info", str(calibrated)]) == 0
    assert "w1_q  int4 per-block of 16 -> mm1" in capsys.readouterr().out
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "block_size 16" in err and f"[{K // B1 + 1}, {H}]" in err and f"[{K}, {H}]" in err


def _weight_only_quantizer() -> tuple[type, type]:
    """ONNX Runtime's weight-only quantizer: ``matmul_nbits_quantizer`` since 1.22,
    ``matmul_4bits_quantizer`` (``MatMul4BitsQuantizer``) before."""
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ModuleNotFoundError:  # onnxruntime < 1.22
        from onnxruntime.quantization.matmul_4bits_quantizer import DefaultWeightOnlyQuantConfig
        from onnxruntime.quantization.matmul_4bits_quantizer import MatMul4BitsQuantizer as MatMulNBitsQuantizer
    return DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer


def test_onnxruntime_int4_weight_only_qdq_with_its_float_model(tmp_path: Path) -> None:
    """ONNX Runtime's weight-only quantizer in QDQ format (what it writes for LLMs): int4 blocks in
    lone DequantizeLinear nodes, weights and readers renamed (``<w>_DQ_Q4``, ``<node>_matmul_Q4``);
    the float model gives the float weights back, and the weight sweep equals a brute force."""
    pytest.importorskip("onnx_ir")  # what the quantizer needs (the test extra installs it)
    from onnxruntime.quantization import QuantFormat
    DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = _weight_only_quantizer()

    w1, w2 = _weights()
    nodes = [h.make_node("MatMul", ["x", "w1"], ["mm1_out"], name="mm1"), h.make_node("Relu", ["mm1_out"], ["relu_out"], name="relu"),
             h.make_node("MatMul", ["relu_out", "w2"], ["y"], name="mm2")]
    float_model = _write(tmp_path / "float.onnx", nodes, [nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    quantizer = MatMulNBitsQuantizer(onnx.load(str(float_model)), algo_config=DefaultWeightOnlyQuantConfig(
        block_size=16, is_symmetric=True, quant_format=QuantFormat.QDQ))
    quantizer.process()
    calibrated = tmp_path / "int4.onnx"
    quantizer.model.save_model_to_file(str(calibrated), use_external_data_format=False)
    rng = np.random.default_rng(5)
    samples = [{"x": rng.standard_normal((1, K)).astype(np.float32)} for _ in range(2)]
    for i, s in enumerate(samples):
        (tmp_path / "data" / "x").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "data" / "x" / f"{i}.npy", s["x"])

    ctx = open_context(calibrated, tmp_path / "data", float_model=float_model)
    weights = ctx.model.weight_quantizers
    assert len(weights) == 2 and all(q.exact and q.qtype == "int4" and q.block_size == 16 for q in weights)
    by_shape = {ctx.engine.weight_values(q.name)[0].shape: ctx.engine.weight_values(q.name)[0] for q in weights}
    np.testing.assert_array_equal(by_shape[w1.shape], w1)
    np.testing.assert_array_equal(by_shape[w2.shape], w2)
    from ptqdebug.analyses.sensitivity import node_sensitivity

    cands = candidates_for(ctx.model, "weight")
    got = node_sensitivity(ctx, cands, node_type="weight", data_num=2).as_mapping()
    cos = METRICS["cosine-similarity"]
    want = brute_force_sensitivity(lambda qs, s: oracle_from_model(ctx.model, qs, s), {c.name: c.quantizers for c in cands},
                                   samples, ["y"], lambda a, b: compare([cos], a, b)[0])
    for name, value in want.items():
        assert got[name]["cosine-similarity"] == pytest.approx(value, abs=1e-6), name
    assert min(want.values()) < 0.99999  # 4-bit weights lose something
    assert not open_context(calibrated, tmp_path / "data").model.weight_quantizers[0].exact  # without it: stays on


def test_onnxruntime_int4_weight_only_in_operator_form_is_named(tmp_path: Path) -> None:
    """The quantizer's default QOperator format packs the weights into MatMulNBits nodes: nothing
    to switch off, said in one line that names the node and the QDQ format to ask for; the same
    model in QDQ form names renamed nodes the float model lacks."""
    pytest.importorskip("onnx_ir")
    from onnxruntime.quantization import QuantFormat
    DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = _weight_only_quantizer()

    from ptqdebug.errors import ModelError

    w1, w2 = _weights()
    nodes = [h.make_node("MatMul", ["x", "w1"], ["mm1_out"], name="mm1"), h.make_node("Relu", ["mm1_out"], ["relu_out"], name="relu"),
             h.make_node("MatMul", ["relu_out", "w2"], ["y"], name="mm2")]
    float_model = _write(tmp_path / "float.onnx", nodes, [nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):
        quantizer = MatMulNBitsQuantizer(onnx.load(str(float_model)), algo_config=DefaultWeightOnlyQuantConfig(
            block_size=16, is_symmetric=True, quant_format=fmt))
        quantizer.process()
        quantizer.model.save_model_to_file(str(tmp_path / f"{fmt.name}.onnx"), use_external_data_format=False)
    with pytest.raises(ModelError, match=r"quantized weight-only in operator form \(MatMulNBits node '[^']+'\).*"
                                         r"quant_format=QuantFormat.QDQ"):
        load_model(tmp_path / "QOperator.onnx")
    qdq = load_model(tmp_path / "QDQ.onnx", float_model)
    assert qdq.not_in_float == {"mm1_matmul_Q4", "mm2_matmul_Q4"} and "relu" in qdq.node_outputs
