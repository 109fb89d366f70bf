"""Regressions found by reviewing stop 13's change (each failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ptqdebug as dbg
from ptqdebug.cli import main
from ptqdebug.errors import OptionError


def test_a_negligible_loss_without_the_float_model_recommends_nothing(cnn_dir: Path, tmp_path: Path) -> None:
    """Integer-stored weights, no float model: the cause is unknown, but a negligible activation
    loss still recommends nothing (it recommended four nodes, with an export line)."""
    run = dbg.runall(cnn_dir / "pc_int8_stored.onnx", cnn_dir / "calibration_data", tmp_path / "o", pick_threshold=1.0)
    assert run.verdict.cause == "unknown" and 1 - run.verdict.scores["calibrated"] < 1e-4  # the premise
    assert "The activations' loss is negligible." in run.verdict.summary
    # the user's threshold picked nodes all the same: the verdict says where they are (a trial read a contradiction)
    n = len(run.partial.nodes) + len(run.partial.left_out)
    assert n and f"Partial quantization's table still lists {n} sensitive nodes, for reference." in run.verdict.summary
    named = dbg.runall(cnn_dir / "pc_int8_stored.onnx", cnn_dir / "calibration_data", tmp_path / "n", sensitive_nodes=["Conv_0"])
    assert "still lists 1 sensitive node, for reference." in named.verdict.summary  # named, not picked by a threshold
    assert not run.verdict.recommendations and run.verdict.keep_float == () and not run.verdict.kept


def test_export_of_nodes_whose_weights_are_stored_as_integers(cnn_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The recommended export line for such a model works: the nodes' activation calibration nodes
    go off, their integer weights stay on as in every configuration scored (and it says so);
    naming such a weight calibration node itself is still refused."""
    path = cnn_dir / "pc_int8_stored.onnx"
    model = dbg.load_model(path)
    weight = next(q.name for q in model.weight_quantizers if not q.exact)
    node = next(n for n, qs in model.node_quantizers.items() if weight in qs)
    done = dbg.export_model(path, tmp_path / "p.onnx", [node])
    assert done.stayed == (weight,) and weight not in done.switched_off and done.switched_off
    assert set(done.switched_off) == set(model.node_quantizers[node]) - {weight}
    assert main(["export", str(path), "-o", str(tmp_path / "q.onnx"), "--float-nodes", node]) == 0
    assert "1 weight calibration node of those nodes stay quantized" in capsys.readouterr().err
    with pytest.raises(OptionError, match="stores its weight as integers"):
        dbg.export_model(path, tmp_path / "r.onnx", [weight])


def _float8_matmul(stored: bool, qtype: int) -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((48, 12)) * 0.3).astype(np.float32)
    top, np_type = (448.0, ml_dtypes.float8_e4m3fn) if qtype == T.FLOAT8E4M3FN else (57344.0, ml_dtypes.float8_e5m2)
    scale = (np.abs(w).max(0) / top).astype(np.float32)
    inits = [nh.from_array(scale, "w_s"), h.make_tensor("w_z", qtype, [12], [0] * 12)]
    if stored:
        inits.append(h.make_tensor("w_quantized", qtype, [48, 12], (w / scale).astype(np_type).view(np.uint8).tobytes(), raw=True))
        nodes = [h.make_node("DequantizeLinear", ["w_quantized", "w_s", "w_z"], ["w_dq"], name="w_dq", axis=1),
                 h.make_node("MatMul", ["x", "w_dq"], ["y"], name="mm")]
    else:
        inits.append(nh.from_array(w, "w"))
        nodes = [h.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 48])], [h.make_tensor_value_info("y", T.FLOAT, [1, 12])],
                     inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 19)], ir_version=9)


@pytest.mark.parametrize("qtype", [T.FLOAT8E4M3FN, T.FLOAT8E5M2])
def test_the_right_float_model_of_float8_weights_is_accepted(tmp_path: Path, qtype: int) -> None:
    """Float8 steps grow with the value: the integer-step check must not refuse the float model
    (e5m2 weights were 'typically 478 quantization steps away')."""
    onnx.save(_float8_matmul(True, qtype), tmp_path / "q.onnx")
    onnx.save(_float8_matmul(False, qtype), tmp_path / "f.onnx")
    model = dbg.load_model(tmp_path / "q.onnx", float_model=tmp_path / "f.onnx")
    assert [(q.name, q.exact) for q in model.quantizers] == [("w_dq", True)]


def test_the_deployment_check_gives_a_metric_over_all_outputs_every_output(tmp_path: Path) -> None:
    """A metric over all outputs gets the integer output too, as in the sweeps (it got only the
    floating-point ones there, and a KeyError)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    nodes, inits = [], [nh.from_array(w, "w")]
    for name, src, out, scale in (("xq", "x", "xd", 4 / 127), ("wq", "w", "wd", float(np.abs(w).max() / 127))):
        nodes += [h.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=name),
                  h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [out], name=f"{name}_dq")]
        inits += [nh.from_array(np.array(scale, np.float32), f"{name}_s"), nh.from_array(np.array(0, np.int8), f"{name}_z")]
    nodes += [h.make_node("MatMul", ["xd", "wd"], ["y"], name="mm"), h.make_node("ArgMax", ["y"], ["label"], name="am", axis=1, keepdims=0)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 8]), h.make_tensor_value_info("label", T.INT64, [1])], inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, tmp_path / "m.onnx")
    samples = [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(3)]
    seen: list[tuple[str, ...]] = []

    def agree(reference: dict, actual: dict) -> float:
        seen.append(tuple(sorted(reference)))
        return float(np.all(reference["label"] == actual["label"]))

    agree.all_outputs = True  # type: ignore[attr-defined]
    sweep = dbg.get_sensitivity_of_nodes(tmp_path / "m.onnx", agree, samples, node_type="weight")
    deployed = dbg.check_deployment(tmp_path / "m.onnx", samples, metrics=[agree, "cosine-similarity"])
    assert sweep and set(seen) == {("label", "y")}
    assert [o.output for o in deployed.outputs] == ["y"]  # rows for the floating-point outputs only


def test_workers_are_checked_against_the_executor_in_effect(cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A context opened for Ray takes more workers than this machine has cores, also when a
    function is given it and workers again; back on this machine, they are refused up front."""
    from ptqdebug.parallel import local as local_sweep

    monkeypatch.setattr(local_sweep, "_cores", lambda: 2)
    ctx = dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data", executor="ray", workers=8, cache=False)
    assert dbg.open_context(ctx, None, workers=8) is ctx
    with pytest.raises(OptionError, match="workers is 8, more than the 2 cores"):
        dbg.get_sensitivity_of_nodes(ctx, node_type="weight", executor="local")


def test_booleans_take_0_and_1(cnn_dir: Path) -> None:
    got = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", calibrated_data=cnn_dir / "calibration_data",
                                       node_type="weight", verbose=1)
    assert got
    with pytest.raises(OptionError, match="verbose is 2; expected True or False"):
        dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", calibrated_data=cnn_dir / "calibration_data", verbose=2)


def test_export_beside_a_folder_of_other_arrays(cnn_dir: Path, tmp_path: Path) -> None:
    """A folder of .npy files that are not numbered samples is not calibration data."""
    results = tmp_path / "results"
    results.mkdir()
    np.save(results / "logits_run1.npy", np.zeros(3))
    model = dbg.load_model(cnn_dir / "pc_int8_pairs.onnx")
    node = next(n for n, qs in model.node_quantizers.items() if qs)
    assert dbg.export_model(cnn_dir / "pc_int8_pairs.onnx", results / "p.onnx", [node]).path.is_file()
    np.save(results / "0.npy", np.zeros(3))
    (results / "logits_run1.npy").unlink()
    (results / "p.onnx").unlink()
    with pytest.raises(OptionError, match="is inside the calibration data folder"):
        dbg.export_model(cnn_dir / "pc_int8_pairs.onnx", results / "p.onnx", [node])
