"""A bias correction goes with its weight's calibration node (NNCF's default, found on nudenet's YOLOv8n:
43 of 63 Conv biases changed).

The quantizer shifts a layer's float bias to make up for the mean error its quantized weight adds.
Given the float model, ptqdebug puts the float bias in the float graph and hands the corrected one
to the weight's calibration node: switched off, the layer is the float model's; switched on, it is
the calibrated model's. Checked against a brute force that edits the calibrated file itself (cut the
Q→DQ pairs that are off, and give the layers of the weights that are off their float bias).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.floatgap import float_gap
from ptqdebug.engine.build import standalone_model
from ptqdebug.engine.engine import Engine
from ptqdebug.model import CalibratedModel
from tests.support.builders import quantize_qdq
from tests.support.oracle import cosine, oracle_from_file

#: bias → added to it by the "quantizer" (conv1.bias stays as it was)
SHIFTS = {"conv0.bias": 0.05, "conv2.bias": -0.08, "fc.bias": 0.1}


def _shifted(path: Path, shifts: dict[str, float]) -> None:
    """Shift biases of a calibrated file in place, as a bias correction does."""
    model = onnx.load(path)
    rng = np.random.default_rng(7)
    for t in model.graph.initializer:
        if t.name in shifts:
            value = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((value + shifts[t.name] * rng.standard_normal(value.shape)).astype(np.float32), t.name))
    onnx.save(model, path)


@pytest.fixture(scope="module", params=["pairs", "stored"])
def corrected(request: pytest.FixtureRequest, cnn_dir: Path, samples: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN quantized with float biases (weights as Q→DQ pairs, or stored as int8), then three
    of its four biases shifted."""
    path = tmp_path_factory.mktemp("corrected") / "calibrated.onnx"
    quantize_qdq(cnn_dir / "float.onnx", path, samples[:4], quantize_bias=False, weight_pairs=request.param == "pairs",
                 keep_activations=True)  # (no Relu deleted: the file oracle cuts pairs only)
    _shifted(path, SHIFTS)
    return path


def _weight_of(model: CalibratedModel, bias: str) -> str:
    reader = next(n for n in model.proto.graph.node if bias in n.input)
    return next(q.name for q in model.weight_quantizers if q.output == reader.input[1])


def _with_float_biases(path: Path, float_path: Path, biases: list[str], out: Path) -> Path:
    """The calibrated file with the float model's value in ``biases``."""
    floats = {t.name: t for t in onnx.load(float_path).graph.initializer}
    model = onnx.load(path)
    for t in model.graph.initializer:
        if t.name in biases:
            t.CopyFrom(floats[t.name])
    onnx.save(model, out)
    return out


def test_the_corrected_biases_go_with_their_weights(corrected: Path, cnn_dir: Path) -> None:
    model = dbg.load_model(corrected, float_model=cnn_dir / "float.onnx")
    with_corrections = {q.name: [t.name for t in q.corrections] for q in model.quantizers if q.corrections}
    assert with_corrections == {_weight_of(model, b): [b] for b in SHIFTS}
    floats = {t.name: numpy_helper.to_array(t) for t in onnx.load(cnn_dir / "float.onnx").graph.initializer}
    graph = {t.name: numpy_helper.to_array(t) for t in model.proto.graph.initializer}
    assert all(np.array_equal(graph[b], floats[b]) for b in [*SHIFTS, "conv1.bias"])  # the float graph is the float model's
    assert any(n.startswith("the quantizer corrected the bias beside 3 weight calibration nodes") for n in model.notes)
    # without the float model nothing is known: the biases stay as the file has them
    plain = dbg.load_model(corrected)
    assert not any(q.corrections for q in plain.quantizers) and not any("corrected the bias" in n for n in plain.notes)


def test_runs_match_the_file_with_float_biases_where_the_weights_are_off(corrected: Path, cnn_dir: Path, samples: list,
                                                                         tmp_path: Path) -> None:
    if "QuantizeLinear" not in {n.op_type for n in onnx.load(corrected).graph.node if "weight" in n.input[0]}:
        pytest.skip("the file oracle cuts Q→DQ pairs: weights stored as integers stay on in it")
    float_path = cnn_dir / "float.onnx"
    model = dbg.load_model(corrected, float_model=float_path)
    weights = {b: _weight_of(model, b) for b in SHIFTS}
    names = [q.name for q in model.quantizers]
    configurations = [[], names, *[[w] for w in weights.values()], [names[0], weights["conv2.bias"]],
                      [q for q in names if q != weights["fc.bias"]]]
    for segments in (None, len(model.proto.graph.node)):  # default cuts, and a cut wherever one is allowed
        engine = Engine(model, segments=segments)
        for sample in samples[:2]:
            ref = engine.reference(sample, ["logits"])
            for on in configurations:
                off_biases = [b for b, w in weights.items() if w not in on]
                edited = _with_float_biases(corrected, float_path, off_biases, tmp_path / "edited.onnx")
                want = oracle_from_file(edited, on, sample, ["logits"])["logits"]
                np.testing.assert_allclose(engine.run(ref, on, ["logits"])["logits"], want, rtol=0, atol=1e-6)
    # all off is the float model itself
    plain = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    engine = Engine(model)
    for sample in samples[:2]:
        np.testing.assert_allclose(engine.reference(sample, ["logits"]).values["logits"], plain.run(["logits"], sample)[0],
                                   rtol=0, atol=1e-5)


def test_the_weight_sweep_scores_each_weight_with_its_bias(corrected: Path, cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    float_path = cnn_dir / "float.onnx"
    model = dbg.load_model(corrected, float_model=float_path)
    if any(q.source_op != "QuantizeLinear" for q in model.weight_quantizers):
        pytest.skip("the file oracle cuts Q→DQ pairs: weights stored as integers stay on in it")
    got = dbg.get_sensitivity_of_nodes(corrected, calibrated_data=samples[:2], node_type="weight", data_num=2,
                                      float_model=float_path, cache=False)
    weights = {q.name: q for q in model.weight_quantizers}
    bias_of = {_weight_of(model, b): b for b in SHIFTS}
    plain = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    assert set(got) == set(weights)
    for name, row in got.items():
        others = [b for b in SHIFTS if b != bias_of.get(name)]
        edited = _with_float_biases(corrected, float_path, others, tmp_path / "edited.onnx")
        want = np.mean([cosine(plain.run(["logits"], s)[0], oracle_from_file(edited, [name], s, ["logits"])["logits"])
                        for s in samples[:2]])
        assert row["cosine-similarity"] == pytest.approx(want, abs=1e-6)


def test_export_and_the_float_gap(corrected: Path, cnn_dir: Path) -> None:
    float_path = cnn_dir / "float.onnx"
    model = dbg.load_model(corrected, float_model=float_path)
    w0 = _weight_of(model, "conv0.bias")
    every = model.calibrated_configuration
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(corrected).graph.initializer}
    floats = {t.name: numpy_helper.to_array(t) for t in onnx.load(float_path).graph.initializer}
    exported = {t.name: numpy_helper.to_array(t) for t in standalone_model(model, every - {w0}).graph.initializer}
    assert np.array_equal(exported["conv0.bias"], floats["conv0.bias"])  # its weight off: the float bias
    assert np.array_equal(exported["conv2.bias"], stored["conv2.bias"])  # on: the corrected one
    # every node on is the calibrated file again; every node off the float model: no gap to report
    ctx = dbg.open_context(corrected, cnn_dir / "calibration_data", float_model=float_path, cache=False)
    gap = float_gap(ctx, data_num=2)
    assert gap is not None and gap.changed_constants == 0 and gap.graph > 1 - 1e-9 and not gap.matters
    plain = dbg.open_context(corrected, cnn_dir / "calibration_data", cache=False)
    assert plain.model_digest != ctx.model_digest


def _mlp(path: Path, calibrated: Path, shift: float) -> None:
    """x → MatMul → Add(bias) → Relu → MatMul → Add(bias), as float, and with Q→DQ pairs on the
    input and both weights and the first bias shifted (NNCF's layout: the bias in the Add after
    the MatMul)."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.standard_normal((16, 32)).astype(np.float32) / 4, rng.standard_normal(32).astype(np.float32) / 10
    w2, b2 = rng.standard_normal((32, 10)).astype(np.float32) / 6, rng.standard_normal(10).astype(np.float32) / 10

    def graph(quantized: bool) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1 + np.float32(shift) * quantized, "b1"),
                 numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")]
        nodes, x, ws = [], "x", ["w1", "w2"]
        if quantized:
            for t, scale in (("x", 4.0 / 127), ("w1", float(np.abs(w1).max()) / 127), ("w2", float(np.abs(w2).max()) / 127)):
                inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{t}.s"), numpy_helper.from_array(np.array(0, np.int8), f"{t}.z")]
                nodes += [helper.make_node("QuantizeLinear", [t, f"{t}.s", f"{t}.z"], [f"{t}.q"], name=f"{t}_Q"),
                          helper.make_node("DequantizeLinear", [f"{t}.q", f"{t}.s", f"{t}.z"], [f"{t}.dq"], name=f"{t}_DQ")]
            x, ws = "x.dq", ["w1.dq", "w2.dq"]
        nodes += [helper.make_node("MatMul", [x, ws[0]], ["m1"], name="MatMul_0"), helper.make_node("Add", ["m1", "b1"], ["a1"], name="Add_0"),
                  helper.make_node("Relu", ["a1"], ["r1"], name="Relu_0"), helper.make_node("MatMul", ["r1", ws[1]], ["m2"], name="MatMul_1"),
                  helper.make_node("Add", ["b2", "m2"], ["y"], name="Add_1")]
        g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", T.FLOAT, ["N", 10])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    onnx.save(graph(False), path)
    onnx.save(graph(True), calibrated)


def test_a_bias_in_the_add_after_a_matmul(tmp_path: Path) -> None:
    float_path, calibrated = tmp_path / "float.onnx", tmp_path / "calibrated.onnx"
    _mlp(float_path, calibrated, shift=0.3)
    model = dbg.load_model(calibrated, float_model=float_path)
    assert {q.name: [t.name for t in q.corrections] for q in model.quantizers if q.corrections} == {"w1_Q": ["b1"]}
    sample = {"x": np.random.default_rng(5).standard_normal((2, 16)).astype(np.float32)}
    names = [q.name for q in model.quantizers]
    for segments in (None, len(model.proto.graph.node)):
        engine = Engine(model, segments=segments)
        ref = engine.reference(sample, ["y"])
        for k in range(len(names) + 1):
            for on in itertools.combinations(names, k):
                edited = calibrated if "w1_Q" in on else _with_float_biases(calibrated, float_path, ["b1"], tmp_path / "e.onnx")
                want = oracle_from_file(edited, on, sample, ["y"])["y"]
                np.testing.assert_allclose(engine.run(ref, on, ["y"])["y"], want, rtol=0, atol=1e-6)


def test_a_weight_rescaled_with_its_bias_keeps_both(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    """Cross-layer equalization (or a BatchNorm folded) rescales a layer's weight and bias channel by
    channel: the float model lacks both, and swapping in its bias beside the rescaled weight would
    make a layer neither model has. Such a bias is no correction."""
    calibrated = quantize_qdq(cnn_dir / "float.onnx", tmp_path / "calibrated.onnx", samples[:4], quantize_bias=False,
                              keep_activations=True)
    factors = np.linspace(0.5, 2.0, 8, dtype=np.float32)
    model = onnx.load(cnn_dir / "float.onnx")
    for t in model.graph.initializer:
        if t.name in ("conv0.weight", "conv0.bias"):
            value = numpy_helper.to_array(t)
            scaled = value / factors.reshape(-1, *[1] * (value.ndim - 1))
            t.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), t.name))
    onnx.save(model, tmp_path / "equalized_float.onnx")
    loaded = dbg.load_model(calibrated, float_model=tmp_path / "equalized_float.onnx")
    assert not any(q.corrections for q in loaded.quantizers)
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(calibrated).graph.initializer}
    graph = {t.name: numpy_helper.to_array(t) for t in loaded.proto.graph.initializer}
    assert np.array_equal(graph["conv0.bias"], stored["conv0.bias"])
