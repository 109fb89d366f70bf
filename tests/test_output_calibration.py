"""A model output's calibration node (ONNX Runtime quantizes outputs too): no node reads it, so
node-level sweeps score it alone, and what to keep in float may name it, but never every
calibration node at once (that is the float model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.analyses.partial import PartialQuantizationResult
from ptqdebug.analyses.verdict import Verdict
from ptqdebug.calibration import calibrate
from ptqdebug.cli import main
from tests.calibration.models import make_samples, tiny_cnn


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("outq")
    onnx.save(tiny_cnn(), d / "float.onnx")
    return calibrate(d / "float.onnx", make_samples(4), d / "cal", method="max")


def test_the_recommendation_stops_short_of_the_float_model(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = dbg.runall(tiny.model_path, tiny.data_dir, tmp_path / "debug", node_type="node", data_num=None,
                     pick_threshold=0.99999)
    model = dbg.load_model(tiny.model_path)
    picked = [e.name for e in run.sensitivities["node"].entries if e.scores["cosine-similarity"] <= 0.99999]
    covered = [set().union(*(model.expand(n) for n in picked[:k + 1])) for k in range(len(picked))]
    # the premise: all 4 sensitive nodes together hold every calibration node, the first 3 do not
    assert len(picked) == 4 and "y_QuantizeLinear" in picked
    assert covered[3] == set(model.calibrated_configuration) and covered[2] < set(model.calibrated_configuration)
    assert run.partial.nodes == tuple(picked[:3]) and run.partial.left_out == (picked[3],)
    assert len(run.partial.partial) == 3  # the float model is not scored as a partial quantization
    assert [r.node for r in run.verdict.recommendations if not r.left_out] == picked[:3]
    assert run.verdict.keep_float and set(run.verdict.keep_float) <= set(picked[:3])
    assert "the best prefix, 0.999961, keeps all 3 sensitive nodes" in run.verdict.summary
    assert (f"Keeping {picked[3]} in float too would switch off every calibration node: that is the float model"
            in run.verdict.summary)
    # int16 is no float model: there all 4 are scored
    assert run.partial_int16 is not None and run.partial_int16.nodes == tuple(picked)
    results = json.loads((tmp_path / "debug" / "results.json").read_text())
    assert results["partial_quantization"]["left_out"] == [picked[3]]
    assert PartialQuantizationResult.from_dict(results["partial_quantization"]) == run.partial
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "1 output calibration node among them, which no node reads, scored alone" in page
    assert "Timing: analyses <b>" in page  # the footer's time is the analyses' (figures finish later)
    assert f"left out: {picked[3]} (with it too in float, no calibration node would be on)" in page

    assert main(["sensitivity-analysis", tiny.model_path, tiny.data_dir, "-p", "0.99999", "-d", "all",
                 "-sd", str(tmp_path / "sa")]) == 0
    out, err = capsys.readouterr()
    assert "best with nodes 1..3 in float: ptqdebug export" in out
    assert f"note: {picked[3]} left out: with it too in float, no calibration node would be on" in err
    for order in ("greedy",):  # greedy never picks the node that would switch the last one off
        greedy = dbg.sensitivity_analysis(tiny.model_path, tiny.data_dir, 0.99999, None, save_dir=None, order=order)
        assert len(greedy.nodes) == 3 and len(greedy.left_out) == 1 and 1.0 not in greedy.partial


def _lone_matmul() -> tuple[onnx.ModelProto, list[dict[str, np.ndarray]]]:
    """x → Q/DQ → MatMul(W Q/DQ) → y: the only candidate holds every calibration node."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (16, 8)).astype(np.float32)
    f = lambda a, n: numpy_helper.from_array(np.asarray(a), n)  # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_DequantizeLinear"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="w_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="w_DequantizeLinear"),
             helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")]
    inits = [f(w, "w"), f(np.float32(0.1), "xs"), f(np.int8(0), "xz"), f(np.float32(np.abs(w).max() / 127), "ws"),
             f(np.int8(0), "wz")]
    g = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, [{"x": rng.normal(0, 0.3, (1, 16)).astype(np.float32)} for _ in range(4)]


def test_a_lone_node_holding_every_calibration_node(tmp_path: Path) -> None:
    m, samples = _lone_matmul()
    run = dbg.runall(m, samples, tmp_path / "debug", node_type="node", data_num=None, pick_threshold=0.9999, report=False)
    assert run.partial.nodes == () and run.partial.left_out == ("mm",) and run.verdict.keep_float == ()
    assert ("Keeping the sensitive node, mm, in float would switch off every calibration node: that is the float model, "
            "not a partial quantization" in run.verdict.summary)
    # in int16 it is a partial quantization still: scored, and offered
    assert run.partial_int16 is not None and run.partial_int16.nodes == ("mm",)
    assert run.partial_int16.partial[0] > run.partial.baseline and run.verdict.keep_int16 == ("mm",)
    assert (f"With their activations in int16 instead of float, keeping mm brings it to {run.partial_int16.partial[0]:.6f}."
            in run.verdict.summary)


def test_with_weights_stored_as_integers_the_end_is_the_reference(cnn_dir: Path, tmp_path: Path) -> None:
    """Without the float model, integer-stored weights stay quantized in every configuration, the
    reference included: switching every other calibration node off is that reference (score 1),
    left out as the float model is, and said so (it is not the float model)."""
    path, data = cnn_dir / "pc_int8_stored.onnx", cnn_dir / "calibration_data"
    model = dbg.load_model(path)
    assert model.fixed_quantizers  # the premise
    run = dbg.runall(path, data, tmp_path / "debug", node_type="node", data_num=2, pick_threshold=1.0, report=False)
    assert run.partial.left_out and 1.0 not in run.partial.partial
    from ptqdebug.analyses.verdict import Recommendation, _summary

    recs = [Recommendation("a", ("qa",), 0.995, 0.005), Recommendation("b", ("qb",), 0.997, 0.002)]
    text = _summary("unknown", 0.99, 1.0, 0.99, recs, None, 0.999, ("c",), fixed_reason="no float model was given")
    assert ("Keeping c in float too would switch off every calibration node that can be: that is the reference "
            "(weights as stored), not a recommendation.") in text
    everything = [*run.partial.nodes, *run.partial.left_out]
    exported = dbg.export_model(path, tmp_path / "e.onnx", everything)
    assert not exported.all_off and exported.stayed  # the weights as stored: not the float model


def test_export_says_when_every_calibration_node_is_off(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Writing the float model as ptqdebug runs it is allowed (a debugging aid), and said."""
    everything = ["conv1", "conv2", "relu1", "y_QuantizeLinear"]
    assert dbg.export_model(tiny.model_path, tmp_path / "f.onnx", everything).all_off
    assert main(["export", tiny.model_path, "-o", str(tmp_path / "g.onnx"), "--float-nodes", ",".join(everything)]) == 0
    assert "every calibration node is off: the file is the float model" in capsys.readouterr().err
    assert not any(n.op_type == "QuantizeLinear" for n in onnx.load(tmp_path / "g.onnx").graph.node)
    # the output's calibration node alone: the others stay
    out = dbg.export_model(tiny.model_path, tmp_path / "o.onnx", ["y_QuantizeLinear"])
    assert out.switched_off == ("y_QuantizeLinear",) and not out.all_off


def test_horizon_models_have_no_such_candidate(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The original toolchain's settings name operators; a recommendation of a calibration node
    could not be applied there."""
    from tests.support.horizon import hz_twin

    hz, _ = hz_twin(onnx.load(tiny.model_path))
    onnx.save(hz, tmp_path / "hz.onnx")
    model = dbg.load_model(tmp_path / "hz.onnx")
    assert any(not model.quantizer_nodes.get(q.name) for q in model.activation_quantizers)  # the output's HzCalibration
    assert model.unowned_quantizers == ()
    assert [c.name for c in candidates_for(model, "node")] == list(model.sensitivity_nodes)
    assert main(["info", str(tmp_path / "hz.onnx")]) == 0
    assert "no node owns" not in capsys.readouterr().out


def test_the_printed_commands_work_for_the_model_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --float-model the export line carries it (the scores used it); where the file left
    nodes unnamed, ptqdebug's names for them mean nothing to calibrate, which is not offered."""
    from tests.support.builders import quantize_qdq

    samples = make_samples(4)
    onnx.save(tiny_cnn(seed=1, named=False), tmp_path / "float.onnx")
    qdq = quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples[:3], per_channel=False, keep_activations=True,
                       weight_pairs=False)  # weights stored as integers: the float model is needed
    model = dbg.load_model(qdq, tmp_path / "float.onnx")
    assert model.float_source == str(tmp_path / "float.onnx")
    assert set(model.sensitivity_nodes) <= model.auto_named  # the premise: ORT kept the float model's unnamed nodes
    data = tmp_path / "data" / "x"
    data.mkdir(parents=True)
    for i, s in enumerate(samples):
        np.save(data / f"{i}.npy", s["x"])
    data = data.parent
    assert main(["runall", str(qdq), str(data), "-s", str(tmp_path / "debug"), "-dn", "all", "-nt", "node", "-pt", "0.99999",
                 "--float-model", str(tmp_path / "float.onnx")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("to keep the recommended nodes in float: "))
    assert f"ptqdebug export {qdq} --float-model {tmp_path / 'float.onnx'} -o partial.onnx --float-nodes" in line
    assert "are unnamed in the file, names ptqdebug gave them: calibrating the float model again cannot take them" in line
    assert "ptqdebug calibrate" not in line
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "--float-model" in page and "calibrating the float model again cannot take them" in page


def test_no_calibrate_command_for_nodes_the_float_model_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A quantizer that renames nodes (ONNX Runtime's MatMulNBits quantizer: ``mk`` becomes
    ``mk_matmul_Q4``): calibrate cannot take the new names, so it is not offered; export is."""
    from tests.support.builders import quantize_qdq

    samples = make_samples(4)
    onnx.save(tiny_cnn(seed=1), tmp_path / "float.onnx")
    qdq = quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples[:3], per_channel=False, keep_activations=True,
                       weight_pairs=False)
    m = onnx.load(qdq)
    float_names = {n.name for n in onnx.load(tmp_path / "float.onnx").graph.node}
    for n in m.graph.node:
        if n.name in float_names:
            n.name += "_Q4"
    onnx.save(m, qdq)
    model = dbg.load_model(qdq, tmp_path / "float.onnx")
    assert model.not_in_float == {f"{n}_Q4" for n in float_names} and not model.auto_named
    assert dbg.load_model(qdq).not_in_float == frozenset()  # (without a float model, nothing to compare with)
    np.savez(tmp_path / "data.npz", x=np.concatenate([s["x"] for s in samples]))
    assert main(["runall", str(qdq), str(tmp_path / "data.npz"), "-s", str(tmp_path / "debug"), "-dn", "all", "-nt", "node",
                 "-pt", "0.99999", "--float-model", str(tmp_path / "float.onnx")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("to keep the recommended nodes in float: "))
    assert "ptqdebug export" in line and "ptqdebug calibrate" not in line
    assert "_Q4 are no nodes of the float model (the quantizer renamed or added them): calibrating the float model again" in line
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "are no nodes of the float model" in page and "ptqdebug calibrate" not in page


def test_calibrate_is_offered_for_the_names_it_gave_an_unnamed_float_models_nodes(tmp_path: Path) -> None:
    """ptqdebug's calibrate names an unnamed float model's nodes <op_type>_<index> and takes those
    names back: they are no nodes "the float model lacks"."""
    from ptqdebug.analyses.partial import apply_commands
    from ptqdebug.calibration import calibrate

    onnx.save(tiny_cnn(seed=1, named=False), tmp_path / "float.onnx")
    cal = calibrate(tmp_path / "float.onnx", make_samples(3), tmp_path / "cal", method="max")
    model = dbg.load_model(cal.model_path, tmp_path / "float.onnx")
    assert not model.auto_named and not model.not_in_float
    node = model.sensitivity_nodes[0]
    _, command = apply_commands([node], str(cal.model_path), "float32", str(tmp_path / "float.onnx"), model.auto_named,
                                model.not_in_float)
    assert command is not None and node in command
    calibrate(tmp_path / "float.onnx", make_samples(3), tmp_path / "cal2", method="max", float_nodes=[node])  # it takes it


def test_a_float_model_given_in_memory_is_asked_for_in_the_command(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.builders import quantize_qdq

    samples = make_samples(4)
    onnx.save(tiny_cnn(seed=1), tmp_path / "float.onnx")
    qdq = quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples[:3], per_channel=False, keep_activations=True,
                       weight_pairs=False)
    run = dbg.runall(qdq, samples, tmp_path / "debug", node_type="node", data_num=None, pick_threshold=0.99999,
                     float_model=onnx.load(tmp_path / "float.onnx"))
    assert run.verdict.keep_float  # the premise
    assert run.results["model"]["float_model"] == "FLOAT_MODEL"
    assert f"ptqdebug export {qdq} --float-model FLOAT_MODEL -o partial.onnx" in (tmp_path / "debug" / "index.html").read_text()


def test_the_report_counts_only_calibration_nodes_no_node_reads(tiny, tmp_path: Path) -> None:
    """Candidates named by interested_nodes may be calibration nodes that nodes do read."""
    run = dbg.runall(tiny.model_path, tiny.data_dir, tmp_path / "debug", node_type="node",
                     interested_nodes=["conv1", "r1_QuantizeLinear", "w1_QuantizeLinear"], pick_threshold=0.5)
    assert [e.name for e in run.sensitivities["node"].entries]  # the premise
    assert "output calibration node" not in (tmp_path / "debug" / "index.html").read_text()


def test_calibrate_names_a_tensor_ort_left_float(tmp_path: Path) -> None:
    """The graph input feeds a MaxPool, which ONNX Runtime's quantizer leaves in float: its
    calibration node name is plausible up front and refused, in one line, once the model is written."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MaxPool", ["input"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["mp", "w0"], ["y"], name="conv0", pads=[1] * 4)]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
                          [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w0")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, tmp_path / "float.onnx")
    feeds = [{"input": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    from ptqdebug.errors import OptionError

    with pytest.raises(OptionError, match=r"float_nodes: 'input_QuantizeLinear' is not a calibration node of the written "
                                          r"model \(ONNX Runtime's quantizer left its tensor in float\)"):
        calibrate(tmp_path / "float.onnx", feeds, tmp_path / "out", method="max", float_nodes=["input_QuantizeLinear"])
    assert not (tmp_path / "out").exists()


def test_int16_rows_for_the_nodes_float_leaves_out(tiny, tmp_path: Path) -> None:
    """int16 scores the node partial quantization in float leaves out: it gets a row of its own
    (float: left out), so what keep_int16 names is in the table, and the report applies it."""
    run = dbg.runall(tiny.model_path, tiny.data_dir, tmp_path / "debug", node_type="node", data_num=None,
                     pick_threshold=0.99999)
    assert run.partial_int16 is not None and run.partial.left_out
    rows = run.verdict.recommendations
    assert [r.node for r in rows] == [*run.partial.nodes, *run.partial.left_out]
    assert [r.left_out for r in rows] == [False] * len(run.partial.nodes) + [True] * len(run.partial.left_out)
    assert [r.score_int16 for r in rows] == list(run.partial_int16.partial)
    last = rows[-1]
    assert np.isnan(last.score_after) and np.isnan(last.recovery)
    assert set(run.verdict.keep_int16) <= {r.node for r in rows}
    results = json.loads((tmp_path / "debug" / "results.json").read_text())
    assert Verdict.from_dict(results["verdict"]).recommendations[-1].left_out
    page = (tmp_path / "debug" / "index.html").read_text()
    assert 'title="with this row too in float, no calibration node would be on">left out</td>' in page
    assert "<em>Left out</em>: with that row too in float" in page


def test_a_lone_left_out_node_gets_its_int16_command_in_the_report(tmp_path: Path) -> None:
    m, samples = _lone_matmul()
    run = dbg.runall(m, samples, tmp_path / "debug", node_type="node", data_num=None, pick_threshold=0.9999)
    assert [(r.node, r.left_out) for r in run.verdict.recommendations] == [("mm", True)]
    assert run.verdict.keep_int16 == ("mm",) and run.verdict.keep_float == ()
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "With activations in int16 instead (the best int16 score, row 1" in page
    assert "Then check the written model as ONNX Runtime deploys it, on these samples and on held-out ones" in page
    assert "Keeping these nodes in float recovers nothing" not in page
