"""HzCalibration models run on plain ONNX Runtime and agree with their QDQ twins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import ptqdebug as dbg
from ptqdebug.engine.engine import Engine
from ptqdebug.errors import ModelError, UnsupportedOpError
from tests.support.horizon import hz_twin
from tests.support.oracle import cosine


def _twin(cnn_dir: Path, tmp_path: Path, **kw) -> tuple[Path, dict[str, str]]:
    model, names = hz_twin(onnx.load(cnn_dir / "pc_int8_keep_sym.onnx"), **kw)
    path = tmp_path / "hz.onnx"
    onnx.save(model, path)
    return path, names


@pytest.mark.parametrize("authoritative", [False, True])
def test_hz_model_equals_its_qdq_twin(cnn_dir: Path, samples, tmp_path: Path, authoritative: bool) -> None:
    path, names = _twin(cnn_dir, tmp_path, authoritative_scales=authoritative)
    hz = dbg.load_model(path)
    qdq = dbg.load_model(cnn_dir / "pc_int8_keep_sym.onnx")
    assert hz.source_format == "horizon"
    assert [q.name for q in hz.quantizers] == [names[q.name] for q in qdq.quantizers]
    assert [q.kind for q in hz.quantizers] == [q.kind for q in qdq.quantizers]
    e_hz, e_qdq = Engine(hz), Engine(qdq)
    for sample in samples[:2]:
        r_hz, r_qdq = e_hz.reference(sample, ["logits"]), e_qdq.reference(sample, ["logits"])
        np.testing.assert_array_equal(r_hz["logits"], r_qdq["logits"])
        for q in [*qdq.quantizers, None]:
            config_q = {q.name} if q else qdq.calibrated_configuration
            config_h = {names[n] for n in config_q}
            a, b = e_hz.run(r_hz, config_h)["logits"], e_qdq.run(r_qdq, config_q)["logits"]
            if authoritative:  # the same scales: the same numbers
                np.testing.assert_array_equal(a, b)
            else:  # scales recomputed as threshold / 127 in float32: equal up to a rounding flip
                assert cosine(a, b) > 1 - 1e-6


def test_hz_sensitivity_matches_qdq_twin(cnn_dir: Path, tmp_path: Path) -> None:
    path, names = _twin(cnn_dir, tmp_path, authoritative_scales=True)
    data = cnn_dir / "calibration_data"
    hz = dbg.get_sensitivity_of_nodes(path, ["cosine-similarity", "mse"], data, node_type="activation", data_num=2)
    qdq = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_keep_sym.onnx", ["cosine-similarity", "mse"], data,
                                       node_type="activation", data_num=2)
    assert list(hz) == [names[n] for n in qdq]
    for n, v in qdq.items():
        assert hz[names[n]] == pytest.approx(v, rel=1e-12)


def test_switch_off_and_legacy_bits(cnn_dir: Path, tmp_path: Path) -> None:
    qdq = dbg.load_model(cnn_dir / "pc_int8_keep_sym.onnx")
    off_q = qdq.activation_quantizers[1].name
    path, names = _twin(cnn_dir, tmp_path, legacy_bits=True, off={off_q})
    hz = dbg.load_model(path)
    assert names[off_q] not in hz.calibrated_configuration
    assert len(hz.calibrated_configuration) == len(hz.quantizers) - 1
    assert all(q.qtype == "int8" and q.bits == 8 for q in hz.quantizers)


def _single_node_model(tmp_path: Path, **attrs) -> Path:
    node = helper.make_node("HzCalibration", ["x"], ["xq"], name="x_HzCalibration", domain="horizon", **attrs)
    relu = helper.make_node("Relu", ["xq"], ["y"], name="Relu_0")
    graph = helper.make_graph([node, relu], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("horizon", 1)])
    model.ir_version = 9  # what every onnxruntime this suite meets can load
    path = tmp_path / "one.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("attrs,expected", [
    # symmetric int8 per-tensor: scale = T / 127, clip to [-128, 127]
    (dict(thresholds=[1.27], qtype="int8"), lambda x: np.clip(np.round(x / 0.01), -128, 127) * np.float32(0.01)),
    # per-channel along axis 1
    (dict(thresholds=[1.27, 2.54], qtype="int8", axis=1),
     lambda x: np.clip(np.round(x / np.array([0.01, 0.02], np.float32)[None, :, None]), -128, 127)
     * np.array([0.01, 0.02], np.float32)[None, :, None]),
    # int16
    (dict(thresholds=[3.2767], bits=16), lambda x: np.clip(np.round(x / np.float32(1e-4)), -32768, 32767) * np.float32(1e-4)),
    # asymmetric uint8 [0, 2.55]: scale 0.01, zero point 0
    (dict(thresholds=[0.0, 2.55], qtype="uint8"), lambda x: np.clip(np.round(x / np.float32(0.01)), 0, 255) * np.float32(0.01)),
    # float16 round trip
    (dict(thresholds=[1.0], qtype="float16"), lambda x: x.astype(np.float16).astype(np.float32)),
])
def test_hz_forward_semantics(tmp_path: Path, attrs, expected) -> None:
    path = _single_node_model(tmp_path, **attrs)
    cm = dbg.load_model(path)
    x = (np.linspace(-3.1, 3.3, 6, dtype=np.float32) + np.float32(0.0037)).reshape(1, 2, 3)
    engine = Engine(cm)
    ref = engine.reference({"x": x}, ["xq"])
    got = engine.run(ref, {"x_HzCalibration"}, ["xq"])["xq"]
    np.testing.assert_allclose(got, expected(x).astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ref["xq"], x)


def test_unknown_horizon_op_is_named(tmp_path: Path) -> None:
    path = _single_node_model(tmp_path, thresholds=[1.0])
    model = onnx.load(path)
    model.graph.node.append(helper.make_node("HzPreprocess", ["y"], ["z"], name="pre", domain="horizon"))
    model.graph.output[0].name = "z"
    onnx.save(model, path)
    with pytest.raises(UnsupportedOpError, match="HzPreprocess"):
        dbg.load_model(path)


def test_other_custom_op_is_named(tmp_path: Path) -> None:
    path = _single_node_model(tmp_path, thresholds=[1.0])
    model = onnx.load(path)
    model.graph.node.append(helper.make_node("FancyOp", ["y"], ["z"], name="fancy", domain="com.vendor"))
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))
    model.graph.output[0].name = "z"
    onnx.save(model, path)
    with pytest.raises(UnsupportedOpError, match="com.vendor::FancyOp"):
        dbg.load_model(path)


def test_missing_thresholds_is_a_model_error(tmp_path: Path) -> None:
    path = _single_node_model(tmp_path, qtype="int8")
    with pytest.raises(ModelError, match="no 'thresholds'"):
        dbg.load_model(path)


def test_info_strings_as_one_string_or_a_bad_type(tmp_path: Path) -> None:
    """``info_strings`` written as one string still says what the node quantizes; a number is a
    one-line model error, not a TypeError."""
    path = _single_node_model(tmp_path, thresholds=[1.0], info_strings="weight")
    assert [q.kind for q in dbg.load_model(path).quantizers] == ["weight"]  # x is not an initializer: only the string says so
    path = _single_node_model(tmp_path, thresholds=[1.0], info_strings=3)
    with pytest.raises(ModelError, match="info_strings=3; expected a list of strings"):
        dbg.load_model(path)
