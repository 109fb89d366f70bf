"""What quantizers other than ONNX Runtime's write, as found in real AMD Quark, NNCF and ModelOpt
output, rebuilt here on a small CNN:

* a graph that is no longer the float model once every calibration node is off (Quark's XINT8
  replaces each Sigmoid by a HardSigmoid; NNCF's bias correction rewrites float constants): the
  float gap, against a brute force with the float model;
* weights rescaled channel by channel (a folded BatchNorm, SmoothQuant) and corrected biases: the
  float model lacks them, which is no reason to refuse it;
* int16 for power-of-two scales (Quark's XINT8), per-channel activations (NNCF) and float16
  models (ModelOpt's default), against a brute force;
* vendor operators and Cast pairs, named in one line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.accumulate import configurations_for
from ptqdebug.analyses.deployment import DeploymentCheck
from ptqdebug.analyses.floatgap import FloatGap, float_gap
from ptqdebug.analyses.int16 import int16_params
from ptqdebug.analyses.partial import partial_quantization, unnamed_reason
from ptqdebug.analyses.verdict import Verdict, verdict
from ptqdebug.cli import main
from ptqdebug.errors import UnsupportedOpError
from ptqdebug.metrics import METRICS, compare
from ptqdebug.model import CalibratedModel
from ptqdebug.quantizer import Quantizer
from tests.support.builders import quantize_qdq
from tests.support.oracle import oracle_from_file, representable_range

COS = METRICS["cosine-similarity"]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return compare([COS], a, b)[0]


@pytest.fixture(scope="module")
def rewritten(cnn_dir: Path, samples: list, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(calibrated, float): the calibrated model is made from the float CNN with its first Relu
    replaced by a LeakyRelu (an operator the quantizer changed), and the float model given has one
    convolution weight a fifth of a step away from the one calibrated (a constant changed)."""
    d = tmp_path_factory.mktemp("rewritten")
    model = onnx.load(cnn_dir / "float.onnx")
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "LeakyRelu"
    relu.attribute.append(helper.make_attribute("alpha", 0.2))
    onnx.save(model, d / "changed.onnx")
    quantize_qdq(d / "changed.onnx", d / "calibrated.onnx", samples[:4], keep_activations=True)
    original = onnx.load(cnn_dir / "float.onnx")
    w = next(t for t in original.graph.initializer if t.name == "conv0.weight")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + np.float32(1e-3), w.name))
    onnx.save(original, d / "float.onnx")
    return d / "calibrated.onnx", d / "float.onnx"


def test_float_gap_matches_brute_force(rewritten: tuple[Path, Path], cnn_dir: Path, samples: list) -> None:
    calibrated, float_path = rewritten
    data = cnn_dir / "calibration_data"
    ctx = dbg.open_context(calibrated, data, float_model=float_path, cache=False)
    gap = float_gap(ctx, data_num=3)
    assert gap is not None
    plain = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    everything = [q.name for q in dbg.load_model(calibrated).quantizers]
    graph, on = [], []
    for s in samples[:3]:
        want = plain.run(["logits"], s)[0]
        graph.append(_cos(want, oracle_from_file(calibrated, [], s, ["logits"])["logits"]))
        on.append(_cos(want, oracle_from_file(calibrated, everything, s, ["logits"])["logits"]))
    assert gap.graph == pytest.approx(np.mean(graph), abs=1e-6) and gap.calibrated == pytest.approx(np.mean(on), abs=1e-6)
    assert gap.samples == 3 and gap.graph < 1 - 1e-4 and gap.matters
    assert dict(gap.changed_ops) == {"LeakyRelu": (0, 1), "Relu": (3, 2)} and gap.changed_constants == 1
    assert FloatGap.from_dict(gap.to_dict()) == gap
    # the verdict and the deployment check say it, and keep it in their results
    judged = verdict(ctx, None, 3)
    assert f"Careful: with every calibration node off, this model is not the float model {float_path}: it scores " \
           f"{gap.graph:.6f} against it (operators changed: LeakyRelu 0 → 1, Relu 3 → 2; 1 float constant changed" in judged.summary
    assert Verdict.from_dict(judged.to_dict()).float_gap == gap
    check = dbg.check_deployment(ctx, data, data_num=3)
    assert check.float_gap == gap and '"float" here is this model with every calibration node off' in check.summary()
    assert DeploymentCheck.from_dict(check.to_dict()).to_dict() == check.to_dict()


def test_no_float_gap_where_the_graph_is_the_float_model(cnn_dir: Path) -> None:
    """ONNX Runtime's quantizer leaves the graph as it was (the Relus it deleted are restored):
    no warning; without a float model there is nothing to compare."""
    data = cnn_dir / "calibration_data"
    ctx = dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", data, float_model=cnn_dir / "float.onnx", cache=False)
    gap = float_gap(ctx, data_num=2)
    assert gap is not None and not gap.matters and gap.graph > 1 - 1e-6 and not gap.changed_ops
    assert "this model is not the float model" not in verdict(ctx, None, 2).summary
    assert float_gap(dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", data, cache=False)) is None


def test_the_cli_check_deployment_names_the_gap(rewritten: tuple[Path, Path], cnn_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    calibrated, float_path = rewritten
    assert main(["check-deployment", str(calibrated), str(cnn_dir / "calibration_data"), "--float-model", str(float_path)]) == 0
    assert "Careful: with every calibration node off, this model is not the float model" in capsys.readouterr().out


def _with_weights(cnn_dir: Path, tmp_path: Path, change: dict[str, object]) -> Path:
    model = onnx.load(cnn_dir / "float.onnx")
    for t in model.graph.initializer:
        if t.name in change:
            t.CopyFrom(numpy_helper.from_array(change[t.name](numpy_helper.to_array(t)).astype(np.float32), t.name))  # type: ignore[operator]
    onnx.save(model, tmp_path / "float_changed.onnx")
    return tmp_path / "float_changed.onnx"


def test_weights_rescaled_by_channel_stay_quantized_instead_of_refusing_the_float_model(cnn_dir: Path, tmp_path: Path) -> None:
    """A float model whose convolution weights the quantizer rescaled output channel by output
    channel (a BatchNorm folded into them): those weights are missing from it, so they stay on,
    and the note says why; the other weights are switched off as usual."""
    factors = np.linspace(0.5, 2.0, 8, dtype=np.float32).reshape(8, 1, 1, 1)
    float_path = _with_weights(cnn_dir, tmp_path, {"conv0.weight": lambda w: w * factors})
    model = dbg.load_model(cnn_dir / "pc_int8_stored.onnx", float_model=float_path)
    weights = [q for q in model.weight_quantizers if q.kind == "weight"]
    fixed = [q.name for q in weights if not q.exact]
    assert len(fixed) == 1 and "conv0" in fixed[0] and len(weights) > 1
    note = next(n for n in model.notes if n.startswith("weights stored as integers"))
    assert note.startswith("weights stored as integers: 1 weight calibration node")
    assert note.endswith(f"as {model.fixed_reason}; the float model matched {len(weights) - 1} of {len(weights)}")
    assert "folded a BatchNorm into them, or rescaled their channels as SmoothQuant does" in model.fixed_reason
    assert "the float model lacks them" in model.fixed_reason


def test_a_corrected_bias_is_left_as_it_is(cnn_dir: Path, tmp_path: Path) -> None:
    """NNCF's bias correction changes biases and keeps the weights: an int32 bias far from the
    float model's is not a reason to refuse it; that bias stays as stored (an ordinary node)."""
    float_path = _with_weights(cnn_dir, tmp_path, {"conv0.bias": lambda b: b + 0.1})
    model = dbg.load_model(cnn_dir / "pc_int8_stored.onnx", float_model=float_path)
    biases = [q.name for q in model.weight_quantizers if "bias" in q.name]
    assert biases and not any("conv0" in b for b in biases)
    assert all(q.exact for q in model.weight_quantizers)


def _activation(model: CalibratedModel) -> Quantizer:
    return next(q for q in model.activation_quantizers if q.qtype == "int8")


def test_int16_keeps_power_of_two_scales(cnn_dir: Path) -> None:
    """Quark's XINT8 scales are powers of two (NPUs shift instead of multiplying): int16 keeps one,
    256 times finer, with the zero point 256 times larger (the same range)."""
    q = _activation(dbg.load_model(cnn_dir / "pc_int8_pairs_keep.onnx"))
    qtype, scale, zero = int16_params(replace(q, scale=np.array(2.0 ** -5, np.float32), zero_point=np.array(3, np.int8)))
    assert qtype == "int16" and float(scale) == 2.0 ** -13 and int(zero) == 768
    qtype, scale, zero = int16_params(replace(q, qtype="uint8", scale=np.array(2.0 ** 2, np.float32), zero_point=np.array(128, np.uint8)))
    assert qtype == "uint16" and float(scale) == 2.0 ** -6 and int(zero) == 32768
    _, scale, zero = int16_params(replace(q, scale=np.array(0.1, np.float32), zero_point=np.array(0, np.int8)))
    assert float(scale) == pytest.approx(0.1 * 127 / 32767, rel=1e-6) and int(zero) == 0  # otherwise the threshold stays


def _per_channel_activation(cnn_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """pc_int8_pairs_keep with its first 8-channel activation pair made per channel (axis 1), as
    NNCF writes for depthwise convolutions' inputs."""
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    name = next(q.name for q in dbg.load_model(path).activation_quantizers if q.input == "MaxPool_0_out")
    model = onnx.load(path)
    inits = {t.name: t for t in model.graph.initializer}
    qnode = next(n for n in model.graph.node if n.name == name)
    scale = float(numpy_helper.to_array(inits[qnode.input[1]]))
    per_channel = numpy_helper.from_array((scale * np.linspace(0.6, 1.4, 8)).astype(np.float32), name + "_pc_scale")
    zeros = numpy_helper.from_array(np.arange(-4, 4, dtype=np.int8), name + "_pc_zero")
    model.graph.initializer.extend([per_channel, zeros])
    for n in model.graph.node:
        if n is qnode or (n.op_type == "DequantizeLinear" and n.input[0] == qnode.output[0]):
            n.input[1:3] = [per_channel.name, zeros.name]
            n.attribute.append(helper.make_attribute("axis", 1))
    onnx.save(model, tmp_path / "per_channel.onnx")
    return tmp_path / "per_channel.onnx", name


def test_the_histogram_of_a_per_channel_activation_marks_its_widest_and_narrowest_range(cnn_dir: Path, tmp_path: Path) -> None:
    from ptqdebug.analyses.distribution import distributions
    from ptqdebug.plots.distribution import distribution_figure

    path, name = _per_channel_activation(cnn_dir, tmp_path)
    (d,) = distributions(dbg.open_context(path, cnn_dir / "calibration_data", cache=False), [name])
    low, high = representable_range(path, name)
    narrow = int(np.argmin(high - low))
    assert d.clip == (low.min(), high.max()) and d.narrowest == (low[narrow], high[narrow])
    fig = distribution_figure(d)
    lines = [a for a in fig.axes[0].get_lines() if a.get_gid() == "threshold"]
    assert d.values["input"].min() >= 0  # (after a Relu: the low ends are not drawn)
    assert sorted((ln.get_linestyle(), ln.get_xdata()[0]) for ln in lines) == [("--", d.clip[1]), (":", d.narrowest[1])]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"range [{d.clip[0]:.6g}, {d.clip[1]:.6g}]" in labels
    assert f"narrowest channel's range [{d.narrowest[0]:.6g}, {d.narrowest[1]:.6g}]" in labels


def test_int16_of_a_per_channel_activation_matches_brute_force(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    from tests.test_int16 import _int16_file

    path, name = _per_channel_activation(cnn_dir, tmp_path)
    ctx = dbg.open_context(path, cnn_dir / "calibration_data", cache=False)
    q = ctx.model.quantizer_map[name]
    assert q.axis == 1 and np.asarray(q.scale).shape == (8,)
    node = next(n for n in ctx.model.sensitivity_nodes if name in ctx.model.expand(n))
    got = partial_quantization(ctx, [node], data_num=2, qtype="int16")
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    brute = ort.InferenceSession(_int16_file(path, set(ctx.model.expand(node)) & {a.name for a in ctx.model.activation_quantizers}),
                                 so, providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(cnn_dir / "float.onnx"), providers=["CPUExecutionProvider"])
    want = np.mean([_cos(plain.run(["logits"], s)[0], brute.run(["logits"], s)[0]) for s in samples[:2]])
    assert got.partial[0] == pytest.approx(want, abs=1e-6)
    out = tmp_path / "exported.onnx"
    dbg.export_model(path, out, int16_nodes=[node])
    exported = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    assert np.mean([_cos(plain.run(["logits"], s)[0], exported.run(["logits"], s)[0]) for s in samples[:2]]) == \
        pytest.approx(want, abs=1e-6)


def _float16_model(path: Path) -> None:
    """ModelOpt's default output in miniature: float32 input cast to float16, QDQ pairs with
    float16 scales on the activation and the weights of a Conv, a Relu, cast back to float32."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float16)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float16(0.02), "xs"),
             numpy_helper.from_array(np.int8(0), "xz"),
             numpy_helper.from_array((np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float16), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz")]
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=T.FLOAT16, name="cast_in"),
             helper.make_node("QuantizeLinear", ["x16", "xs", "xz"], ["xq"], name="x_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_DequantizeLinear"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="w_QuantizeLinear", axis=0),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="w_DequantizeLinear", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["y"], to=T.FLOAT, name="cast_out")]
    graph = helper.make_graph(nodes, "fp16", [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, path)


def test_int16_of_a_float16_model_quantizes_float16(tmp_path: Path) -> None:
    """A float16 model's int16 twin gets a float16 scale (a float32 one made ONNX Runtime refuse
    the model), and the exported model loads and computes what partial quantization scored."""
    path = tmp_path / "fp16.onnx"
    _float16_model(path)
    samples = [{"x": np.random.default_rng(i).uniform(-2, 2, (1, 3, 8, 8)).astype(np.float32)} for i in range(2)]
    ctx = dbg.open_context(path, samples, cache=False)
    assert any(n.startswith("the model computes in float16") for n in ctx.model.notes)
    got = partial_quantization(ctx, ["conv"], data_num=2, qtype="int16")
    out = tmp_path / "exported.onnx"
    done = dbg.export_model(path, out, int16_nodes=["conv"])
    assert done.int16 == ("x_QuantizeLinear",)
    exported = onnx.load(out)
    types = {t.name: t.data_type for t in exported.graph.initializer}
    wide = [n for n in exported.graph.node if n.op_type == "QuantizeLinear" and types.get(n.input[2]) == T.INT16]
    assert len(wide) == 1 and types[wide[0].input[1]] == T.FLOAT16
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    want = np.mean([_cos(oracle_from_file(path, [], s, ["y"])["y"], session.run(["y"], s)[0]) for s in samples])
    assert got.partial[0] == pytest.approx(want, abs=1e-4)  # float16 rounds where the engine's segments part


def test_vendor_operators_are_named_and_cast_pairs_read(tmp_path: Path) -> None:
    """Quark's BF16 and BFP configurations quantize with its own operators: no calibration node
    ptqdebug reads, and the error says which it found instead of "no calibration nodes". Its
    standard export of BF16 is Cast pairs, which are calibration nodes (tests/test_cast_pairs.py)."""
    def model(nodes: list[onnx.NodeProto], domains: tuple[str, ...] = ()) -> Path:
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", T.FLOAT, [1, 4])],
                                  [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.float32(0), "z")])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)])
        m.ir_version = 9
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.onnx"
        onnx.save(m, path)
        return path

    quark = model([helper.make_node("ExtendedQuantizeLinear", ["x", "s", "z"], ["q"], name="x_QuantizeLinear", domain="com.amd.quark"),
                   helper.make_node("ExtendedDequantizeLinear", ["q", "s", "z"], ["y"], name="x_DequantizeLinear", domain="com.amd.quark")],
                  ("com.amd.quark",))
    with pytest.raises(UnsupportedOpError, match=r"^the model quantizes with custom operators plain ONNX Runtime cannot run: "
                                                 r"com.amd.quark::ExtendedQuantizeLinear \(node 'x_QuantizeLinear'\)") as refused:
        dbg.load_model(quark)
    assert "BF16QDQToCast option writes Cast round trips, which ptqdebug reads" in str(refused.value)
    casts = model([helper.make_node("Cast", ["x"], ["h"], to=T.BFLOAT16, name="c1"),
                   helper.make_node("Cast", ["h"], ["y"], to=T.FLOAT, name="c2")])
    read = dbg.load_model(casts)
    assert [(q.name, q.kind, q.qtype) for q in read.quantizers] == [("c1", "activation", "bfloat16")]
    assert read.source_format == "cast"
    assert main(["info", str(quark)]) == 2


def test_unnamed_nodes_are_all_named() -> None:
    """Every unnamed node among the recommended ones is named (at most three, then a count)."""
    assert unnamed_reason(["a", "Mul_1", "Mul_2"], {"Mul_1", "Mul_2"}) == (
        "Mul_1, Mul_2 are unnamed in the file, names ptqdebug gave them: calibrating the float model again cannot take them")
    assert unnamed_reason(list("abcde"), set("abcde")).startswith("a, b, c and 2 more are unnamed")
    assert unnamed_reason(["a", "mk"], (), {"mk"}) == (
        "mk is no node of the float model (the quantizer renamed or added it): calibrating the float model again cannot take it")
    assert unnamed_reason(["a"], {"b"}, {"c"}) is None


def test_sensitivity_analysis_takes_s_for_its_folder(cnn_dir: Path, tmp_path: Path) -> None:
    """``-s`` is the output folder in the other commands; here it was refused as ambiguous."""
    path, out = cnn_dir / "pc_int8_pairs.onnx", tmp_path / "sa"
    assert main(["sensitivity-analysis", str(path), str(cnn_dir / "calibration_data"), "-s", str(out), "-sn", "[Conv_1]"]) == 0
    assert (out / "partial_quantization.png").is_file()


def test_weights_stored_as_integers_are_not_offered_as_switched_off(cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the float model, integer weights stay on: the cumulative curve of "only weights"
    says it measures none, and no recommendation lists them among what keeping it in float
    switches off (this CNN's loss counts as negligible: every loss counts here)."""
    monkeypatch.setattr("ptqdebug.analyses.verdict.NEGLIGIBLE_LOSS", 0.0)
    ctx = dbg.open_context(cnn_dir / "pc_int8_stored.onnx", cnn_dir / "calibration_data", cache=False)
    (_, configs), = configurations_for(ctx, ["weight", "activation"])
    assert [c.label for c in configs][2] == "only_weight_calibrated (weights as stored: not measured)"
    nodes = list(ctx.model.sensitivity_nodes[:3])
    judged = verdict(ctx, partial_quantization(ctx, nodes, pick_threshold=1.0), 1)
    assert judged.recommendations and all(not set(r.calibration_nodes) & ctx.model.fixed_quantizers
                                          for r in judged.recommendations)
    assert any(r.calibration_nodes for r in judged.recommendations)


def test_stats_of_a_matmul_weight_follow_its_channel_axis(tmp_path: Path) -> None:
    """NNCF quantizes a MatMul weight [in, out] per output channel, axis -1: its per-channel
    statistics are per column, as its scales are (they were per row, along axis 0)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (4, 3)).astype(np.float32)
    ws = (np.abs(w).max(0) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"), numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
             numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.int8(0), "xz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="xq"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="xdq"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="wq", axis=-1),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq", axis=-1),
             helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", T.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "mm.onnx")
    x = rng.normal(0, 1, (2, 4)).astype(np.float32)
    stats = dbg.get_calibration_nodes_stat_info(tmp_path / "mm.onnx", [{"x": x}], save_dir=tmp_path / "s")
    assert stats["wq"]["Max_vals"] == pytest.approx(list(np.abs(w).max(axis=0))) and len(stats["wq"]["Scales"]) == 3
    assert stats["xq"]["Max_vals"] == pytest.approx(list(np.abs(x).max(axis=0)))  # the activation: along axis 1, as before


def test_a_cumulative_curve_ends_at_the_output_after_a_float_tail(tmp_path: Path) -> None:
    """NNCF leaves the nodes after the last calibration node in float (MatMul → Add → Softmax):
    the curve goes on to the model's output, so its last point is the calibrated model's score;
    a Shape of a quantized tensor (1 whatever is quantized) is not drawn."""
    from ptqdebug.analyses.accumulate import accumulate_error
    from ptqdebug.analyses.sensitivity import score_configurations

    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (4, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array((np.abs(w).max(0) / 127).astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(5, np.int8), "wz"), numpy_helper.from_array(np.float32(0.05), "xs"),
             numpy_helper.from_array(np.int8(0), "xz"), numpy_helper.from_array(rng.normal(0, 1, 5).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="xq"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="xdq"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="wq", axis=1),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq", axis=1),
             helper.make_node("Shape", ["xd"], ["shape"], name="shape"),
             helper.make_node("MatMul", ["xd", "wd"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["a"], name="add"),
             helper.make_node("Softmax", ["a"], ["y"], name="softmax")]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", T.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 5]),
                               helper.make_tensor_value_info("shape", T.INT64, [2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "tail.onnx")
    ctx = dbg.open_context(tmp_path / "tail.onnx", [{"x": rng.normal(0, 1, (2, 4)).astype(np.float32)}], cache=False)
    (prefix, configs), = configurations_for(ctx, ["weight", "activation"])
    result = accumulate_error(ctx, configs, prefix=prefix)
    assert result.tensors == ("m", "y") and result.nodes == ("mm", "softmax")
    scores, _ = score_configurations(ctx, [c.enabled for c in configs], metrics=[COS], compare_at=["y"], data_num=1)
    assert [c.values[-1] for c in result.curves] == pytest.approx(list(scores[:, 0]), abs=1e-12)
    assert result.curves[0].values[-1] < 1 - 1e-6


def test_float8_calibration_nodes_have_thresholds(tmp_path: Path) -> None:
    """ModelOpt's fp8: a float8 calibration node clips at its scale times the type's largest finite
    value (448 for float8e4m3fn, 57344 for float8e5m2), per channel; the statistics and the
    histograms' threshold line had none."""
    import ml_dtypes

    from tests.test_float8 import fp8_model

    path, samples = fp8_model(tmp_path, T.FLOAT8E4M3FN, T.FLOAT8E5M2)
    model = dbg.load_model(path)
    for q in model.quantizers:
        top = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn if q.qtype == "float8e4m3fn" else ml_dtypes.float8_e5m2).max)
        assert q.thresholds == pytest.approx(tuple(np.asarray(q.scale, np.float64).reshape(-1) * top), rel=1e-6), q.name
    stats = dbg.get_calibration_nodes_stat_info(path, samples, save_dir=tmp_path / "s")
    assert all(row["Thresholds"] for row in stats.values())
