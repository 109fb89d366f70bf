"""int16 instead of float for the sensitive nodes (``sensitivity_analysis(qtype="int16")``, the
original toolchain's remedy): the engine's int16 twins against a brute force that rewrites those
QuantizeLinear/DequantizeLinear pairs of the file to 16 bits (opset 21) and runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T

import ptqdebug as dbg
from ptqdebug.analyses.int16 import int16_params
from ptqdebug.analyses.partial import PartialQuantizationResult, partial_quantization
from ptqdebug.cli import main
from ptqdebug.context import open_context
from ptqdebug.metrics import METRICS, compare
from tests.support.horizon import hz_twin
from tests.support.oracle import oracle_from_file
from tests.test_float8 import fp8_model


def _int16_file(path: Path, names: set[str]) -> bytes:
    """The file with the pairs of ``names`` in 16 bits, same range (the brute force)."""
    qmap = dbg.load_model(path).quantizer_map
    model = onnx.version_converter.convert_version(onnx.load(path), 21)
    readers = {n.input[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for n in [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.name in names]:
        qtype, scale, zero = int16_params(qmap[n.name])
        model.graph.initializer.extend([
            onnx.numpy_helper.from_array(scale.astype(np.float32), f"{n.name}_s16"),
            onnx.numpy_helper.from_array(zero.astype(np.int16 if qtype == "int16" else np.uint16), f"{n.name}_z16")])
        n.input[1:3] = readers[n.output[0]].input[1:3] = [f"{n.name}_s16", f"{n.name}_z16"]
    del model.graph.value_info[:]  # the 8-bit types of the rewritten pairs
    return model.SerializeToString()


@pytest.mark.parametrize("name", ["pc_int8_pairs_keep", "pt_uint8_pairs_keep", "pc_int8_pairs"])
def test_int16_partial_quantization_matches_brute_force(cnn_dir: Path, samples: list, name: str) -> None:
    path = cnn_dir / f"{name}.onnx"
    ctx = open_context(path, cnn_dir / "calibration_data")
    nodes = list(ctx.model.sensitivity_nodes[:4])
    got = partial_quantization(ctx, nodes, data_num=2, qtype="int16")
    as_float = partial_quantization(ctx, nodes, data_num=2)
    assert got.qtype == "int16" and (got.baseline, got.single) == (as_float.baseline, as_float.single)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    float_model = ort.InferenceSession(str(cnn_dir / "float.onnx"), providers=["CPUExecutionProvider"])
    cos = METRICS["cosine-similarity"]
    acts = {q.name for q in ctx.model.activation_quantizers}
    wider: set[str] = set()
    for k, node in enumerate(nodes):
        wider |= set(ctx.model.expand(node)) & acts  # their weights stay 8-bit
        brute = ort.InferenceSession(_int16_file(path, wider), so, providers=["CPUExecutionProvider"])
        want = np.mean([compare([cos], float_model.run(["logits"], s)[0], brute.run(["logits"], s)[0])[0] for s in samples[:2]])
        assert got.partial[k] == pytest.approx(want, abs=1e-6), node
    assert max(got.partial) > got.baseline  # int16 recovers some of the loss here (not always more with more nodes)
    assert PartialQuantizationResult.from_dict(json.loads(json.dumps(got.to_dict()))) == got


def test_horizon_models_get_int16_like_their_qdq_twin(cnn_dir: Path) -> None:
    """A HzCalibration node's int16 is its threshold over 32767 (reference §9.5), as for the QDQ twin."""
    qdq = cnn_dir / "pc_int8_keep_sym.onnx"
    hz, _ = hz_twin(onnx.load(qdq))
    nodes = list(dbg.load_model(qdq).sensitivity_nodes[:3])
    data = cnn_dir / "calibration_data"
    want = partial_quantization(open_context(qdq, data), nodes, data_num=2, qtype="int16")
    got = partial_quantization(open_context(hz, data), nodes, data_num=2, qtype="int16")
    np.testing.assert_allclose(got.partial, want.partial, atol=1e-6)


def test_calibration_nodes_int16_cannot_describe_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = fp8_model(tmp_path, T.FLOAT8E4M3FN, T.FLOAT8E4M3FN)
    with pytest.raises(dbg.OptionError, match="calibration node 'r_q' is float8e4m3fn, not int8 or uint8"):
        dbg.sensitivity_analysis(path, tmp_path / "data", sensitive_nodes=["mm2"], save_dir=tmp_path / "out", qtype="int16")
    with pytest.raises(dbg.OptionError, match="qtype 'int4' is not supported; expected one of float32, int16"):
        dbg.sensitivity_analysis(path, tmp_path / "data", sensitive_nodes=["mm2"], save_dir=tmp_path / "out", qtype="int4")
    assert main(["sensitivity-analysis", str(path), str(tmp_path / "data"), "-sn", "[mm2]", "-sd", str(tmp_path / "o"),
                 "--qtype", "int16"]) == 2
    err = capsys.readouterr().err
    assert "is float8e4m3fn, not int8 or uint8" in err and "Traceback" not in err


def test_cli_int16(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Add_0's inputs in int16 recover some of the loss here (most single nodes' do not: the next
    8-bit calibration node puts their values back on its grid)."""
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    assert main(["sensitivity-analysis", str(path), str(cnn_dir / "calibration_data"), "-sn", "[Add_0]",
                 "-sd", str(tmp_path), "-qt", "int16"]) == 0
    out = capsys.readouterr().out
    assert "partial quantization (partial: nodes 1..k in int16)" in out
    saved = PartialQuantizationResult.from_dict(json.loads((tmp_path / "partial_quantization.json").read_text()))
    assert saved.qtype == "int16" and saved.nodes == ("Add_0",) and saved.best_prefix() == ("Add_0",)
    assert f"ptqdebug export {path} -o partial_int16.onnx --int16-nodes '[Add_0]'" in out


def test_export_writes_the_int16_configuration(cnn_dir: Path, samples: list, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    model = dbg.load_model(path)
    nodes = list(model.sensitivity_nodes[:3])
    wider = set(model.expand(nodes)) & {q.name for q in model.activation_quantizers}
    done = dbg.export_model(path, tmp_path / "int16.onnx", int16_nodes=nodes)
    assert set(done.int16) == wider and done.switched_off == ()
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    exported = ort.InferenceSession(str(done.path), so, providers=["CPUExecutionProvider"])
    brute = ort.InferenceSession(_int16_file(path, wider), so, providers=["CPUExecutionProvider"])
    for s in samples[:2]:
        np.testing.assert_allclose(exported.run(["logits"], s)[0], brute.run(["logits"], s)[0], rtol=1e-6, atol=1e-6)
    assert main(["export", str(path), "-o", str(tmp_path / "both.onnx"), "--float-nodes", f"[{nodes[0]}]",
                 "--int16-nodes", f"[{nodes[1]},{nodes[2]}]"]) == 0
    out = capsys.readouterr().out
    assert "calibration nodes off: " in out or "calibration node off: " in out
    assert " in int16: " in out
    with pytest.raises(dbg.OptionError, match=f"'{nodes[0]}' is in both float_nodes and int16_nodes"):
        dbg.export_model(path, tmp_path / "x.onnx", [nodes[0]], int16_nodes=nodes)
    weight = model.weight_quantizers[0].name
    with pytest.raises(dbg.OptionError, match=f"names the weight calibration node '{weight}'; int16 is for activations"):
        dbg.export_model(path, tmp_path / "x.onnx", int16_nodes=[weight])
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(dbg.OptionError, match=f"'{weight}' is a weight calibration node; int16 is for activations"):
        dbg.sensitivity_analysis(path, cnn_dir / "calibration_data", sensitive_nodes=[weight], qtype="int16",
                                 save_dir=tmp_path / "sa")
