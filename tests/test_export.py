"""``export_model`` / ``ptqdebug export``: a configuration ptqdebug scored, written as a model file,
against the brute force (the original file with those QDQ pairs cut) and the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ptqdebug as dbg
from ptqdebug.cli import main
from tests.support.horizon import hz_twin
from tests.support.oracle import oracle_from_file


def _run(path: Path, sample: dict[str, np.ndarray]) -> np.ndarray:
    """The model as ONNX defines it (QDQ fusion off), as ptqdebug scores it."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(["logits"], sample)[0]


def test_exported_configuration_is_the_file_with_those_pairs_cut(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    model = dbg.load_model(path)
    nodes = model.sensitivity_nodes[:3]
    done = dbg.export_model(path, tmp_path / "partial.onnx", nodes)
    off = model.expand(nodes)
    assert done.path == tmp_path / "partial.onnx" and set(done.switched_off) == set(off)
    assert done.switched_off == tuple(q.name for q in model.quantizers if q.name in off)  # graph order
    saved = onnx.load(done.path)
    onnx.checker.check_model(saved)
    assert {q.name for q in dbg.load_model(saved).quantizers} == {q.name for q in model.quantizers} - set(off)
    assert {e.key: e.value for e in saved.metadata_props}["ptqdebug_calibration_nodes_off"] == ",".join(done.switched_off)
    enabled = [q.name for q in model.quantizers if q.name not in off]
    for s in samples[:3]:
        np.testing.assert_allclose(_run(done.path, s), oracle_from_file(path, enabled, s, ["logits"])["logits"], rtol=1e-5, atol=1e-5)


def test_switched_off_pairs_bring_back_the_relus_the_quantizer_deleted(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    """ONNX Runtime's quantizer deleted Relus before clamping pairs here; switched off, they come back:
    with every calibration node off the model has the float model's Relus and computes what the
    engine computes for that configuration (the float model but for the int32 biases, which
    ptqdebug leaves alone)."""
    path = cnn_dir / "pc_int8_pairs.onnx"
    model = dbg.load_model(path)
    assert any(q.off_node is not None for q in model.quantizers)  # the premise
    relus = sum(n.op_type == "Relu" for n in onnx.load(cnn_dir / "float.onnx").graph.node)
    assert sum(n.op_type == "Relu" for n in onnx.load(path).graph.node) < relus
    done = dbg.export_model(path, tmp_path / "float.onnx", [q.name for q in model.quantizers])
    saved = onnx.load(done.path).graph.node
    assert sum(n.op_type == "Relu" for n in saved) == relus and not any(n.op_type == "QuantizeLinear" for n in saved)
    ctx = dbg.open_context(path, samples[:2])
    for i, s in enumerate(samples[:2]):
        want = ctx.engine.run(ctx.reference(i, ["logits"]), ())["logits"]
        np.testing.assert_allclose(_run(done.path, s), want, rtol=1e-5, atol=1e-5)


def test_integer_weights_need_the_float_model(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    path = cnn_dir / "pc_int8_stored.onnx"
    weight = dbg.load_model(path).weight_quantizers[0].name
    with pytest.raises(dbg.OptionError, match=f"calibration node '{weight}' stores its weight as integers"):
        dbg.export_model(path, tmp_path / "w.onnx", weight)
    done = dbg.export_model(path, tmp_path / "w.onnx", weight, float_model=cnn_dir / "float.onnx")
    assert done.switched_off == (weight,)
    ctx = dbg.open_context(path, samples[:1], float_model=cnn_dir / "float.onnx")
    want = ctx.engine.run(ctx.reference(0, ["logits"]), ctx.model.calibrated_configuration - {weight})["logits"]
    np.testing.assert_allclose(_run(done.path, samples[0]), want, rtol=1e-5, atol=1e-5)


def test_cli_export_and_its_errors(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    node = dbg.load_model(path).sensitivity_nodes[0]
    before = path.read_bytes()
    assert main(["export", str(path), "-o", str(tmp_path / "out" / "p.onnx"), "-f", f"[{node}]"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'out' / 'p.onnx'} (")
    for argv, message in (
        (["export", str(path), "-o", str(tmp_path / "p.onnx"), "-f", "[nope]"], "float_nodes: 'nope' is not in the model"),
        (["export", str(path), "-o", str(tmp_path / "p.txt"), "-f", node], "does not end in .onnx"),
        (["export", str(path), "-o", str(path), "-f", node], "is the calibrated model itself; expected a new file"),
        (["export", str(path), "-o", str(tmp_path / "same.onnx")], "nothing to change: float_nodes and int16_nodes are both empty"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert path.read_bytes() == before  # the input is untouched
    two = dbg.load_model(path).sensitivity_nodes[:2]
    assert main(["export", str(path), "-o", str(tmp_path / "two.onnx"), "-f", ",".join(two)]) == 0  # a,b as calibrate takes it
    assert dbg.load_model(tmp_path / "two.onnx").quantizers and "calibration nodes off" in capsys.readouterr().out
    assert main(["get-sensitivity-of-nodes", str(path), str(cnn_dir / "calibration_data"), "-i", ",".join(two)]) == 2
    assert f"did you mean the list [{','.join(two)}]?" in capsys.readouterr().err
    model, _ = hz_twin(onnx.load(cnn_dir / "pc_int8_keep_sym.onnx"))
    onnx.save(model, tmp_path / "hz.onnx")
    assert main(["export", str(tmp_path / "hz.onnx"), "-o", str(tmp_path / "hz_out.onnx")]) == 2
    assert "keep these nodes in float with run_on_cpu" in capsys.readouterr().err
    assert not (tmp_path / "hz_out.onnx").exists()


def test_a_model_past_protobufs_limit_is_written_with_external_data(cnn_dir: Path, samples: list, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import ptqdebug.api.export as export

    monkeypatch.setattr(export, "_PROTOBUF_LIMIT", 1000)  # this small model stands for one past 2 GB
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    node = dbg.load_model(path).sensitivity_nodes[0]
    small = dbg.export_model(path, tmp_path / "small" / "p.onnx", node)
    monkeypatch.setattr(export, "_PROTOBUF_LIMIT", 2**31 - 2**26)
    inline = dbg.export_model(path, tmp_path / "inline.onnx", node)
    assert (tmp_path / "small" / "p.onnx.data").is_file() and sorted(p.name for p in (tmp_path / "small").iterdir()) == ["p.onnx", "p.onnx.data"]
    assert small.path.stat().st_size < inline.path.stat().st_size / 2
    np.testing.assert_array_equal(_run(small.path, samples[0]), _run(inline.path, samples[0]))


@pytest.mark.parametrize("name", ["if", "loop", "scan"])
def test_calibration_nodes_inside_bodies_are_exported_too(name: str, tmp_path: Path) -> None:
    from tests.support.bodies import add_qdq
    from tests.test_bodies import CASES, _samples

    make, shape, signs = CASES[name]
    onnx.save(add_qdq(make()), tmp_path / "m.onnx")
    samples = _samples(shape, signs=signs)
    ctx = dbg.open_context(tmp_path / "m.onnx", samples)
    off = [q.name for q in ctx.model.quantizers][::2]  # in the bodies and outside
    done = dbg.export_model(tmp_path / "m.onnx", tmp_path / "p.onnx", off)
    onnx.checker.check_model(onnx.load(done.path), full_check=True)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(str(done.path), so, providers=["CPUExecutionProvider"])
    out = ctx.model.outputs[0]
    for i in range(len(samples)):
        want = ctx.engine.run(ctx.reference(i, [out]), ctx.model.calibrated_configuration - set(off))[out]
        np.testing.assert_allclose(sess.run([out], dict(ctx.data[i]))[0], want, rtol=1e-5, atol=1e-5)
