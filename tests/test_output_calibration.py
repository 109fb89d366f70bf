"""A model output's calibration node (ONNX Runtime quantizes outputs too): no node reads it, so
node-level sweeps score it alone, and what to keep in float may name it, but never every
calibration node at once (that is the float model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.analyses.partial import short_of_float
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
    nodes = run.partial.nodes
    covered = [set().union(*(model.expand(n) for n in nodes[:k + 1])) for k in range(len(nodes))]
    # the premise: all 4 sensitive nodes together hold every calibration node, the first 3 do not
    assert len(nodes) == 4 and "y_QuantizeLinear" in nodes
    assert covered[3] == set(model.calibrated_configuration) and covered[2] < set(model.calibrated_configuration)
    assert run.partial.partial[3] == 1.0  # scored: the float model
    assert short_of_float(model, nodes) == 3 and short_of_float(model, nodes, "int16") == 4
    assert [r.node for r in run.verdict.recommendations] == list(nodes[:3])
    assert run.verdict.keep_float and set(run.verdict.keep_float) <= set(nodes[:3])
    assert "the best, 0.999961, keeps the first 3 of the 4 sensitive nodes" in run.verdict.summary
    assert "Keeping all 4 in float would switch off every calibration node: that is the float model" in run.verdict.summary
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "1 output calibration node among them, which no node reads, scored alone" in page

    assert main(["sensitivity-analysis", tiny.model_path, tiny.data_dir, "-p", "0.99999", "-d", "all",
                 "-sd", str(tmp_path / "sa")]) == 0
    out = capsys.readouterr().out
    assert "best with nodes 1..3 in float: ptqdebug export" in out


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


def test_horizon_models_have_no_such_candidate(tiny, tmp_path: Path) -> None:
    """The original toolchain's settings name operators; a recommendation of a calibration node
    could not be applied there."""
    from tests.support.horizon import hz_twin

    hz, _ = hz_twin(onnx.load(tiny.model_path))
    onnx.save(hz, tmp_path / "hz.onnx")
    model = dbg.load_model(tmp_path / "hz.onnx")
    assert model.unowned_quantizers  # the output's HzCalibration
    names = [c.name for c in candidates_for(model, "node")]
    assert names == list(model.sensitivity_nodes)


def test_the_printed_commands_work_for_the_model_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --float-model the export line carries it (the scores used it); where the file left
    nodes unnamed, ptqdebug's names for them mean nothing to calibrate, which is not offered."""
    from tests.support.builders import quantize_qdq

    samples = make_samples(4)
    onnx.save(tiny_cnn(seed=1, named=False), tmp_path / "float.onnx")
    qdq = quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples[:3], per_channel=False, keep_activations=True,
                       weight_pairs=False)  # weights stored as integers: the float model is needed
    model = dbg.load_model(qdq, tmp_path / "float.onnx")
    assert model.float_path == str(tmp_path / "float.onnx")
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
    assert "is unnamed in the file, a name ptqdebug gave it: calibrate cannot take it" in line
    assert "ptqdebug calibrate" not in line
    page = (tmp_path / "debug" / "index.html").read_text()
    assert "--float-model" in page and "calibrating the float model again cannot take it" in page
