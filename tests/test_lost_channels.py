"""Output channels a calibration node rounds to 0 entirely (ptqdebug.analyses.lost): found
exactly, and said in the verdict even where every score looks fine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.lost import lost_channels
from ptqdebug.analyses.verdict import Verdict
from tests.support.builders import quantize_qdq


def _packed_output(tmp_path: Path, gains: list[float], tail: str = "") -> tuple[Path, list[dict[str, np.ndarray]]]:
    """x → Conv(C) → ×gains per channel → y[N, C, 8, 8]: a detector-like output that packs large
    and small channels under one per-tensor scale; ``tail="last"``: y[1, 64, C], channels last
    (Reshape, Transpose); ``tail="softmax"``: y = Softmax over the channels."""
    rng = np.random.default_rng(0)
    c = len(gains)
    w = rng.normal(0, 0.3, (c, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Mul", ["c", "gain"], ["g" if tail else "y"], name="gain")]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(gains, np.float32).reshape(1, c, 1, 1), "gain")]
    shape: list[object] = ["N", c, 8, 8]
    if tail == "last":
        nodes += [helper.make_node("Reshape", ["g", "shape"], ["r"], name="flat"),
                  helper.make_node("Transpose", ["r"], ["y"], name="last", perm=[0, 2, 1])]
        inits.append(numpy_helper.from_array(np.array([1, c, 64], np.int64), "shape"))
        shape = [1, 64, c]
    elif tail in ("softmax", "sigmoid", "sigmoid-reshaped"):  # classes 3.. far behind: absent
        nodes += [helper.make_node("Add", ["g", "offset"], ["o"], name="offset"),
                  helper.make_node("Softmax", ["o"], ["y"], name="probs", axis=1) if tail == "softmax" else
                  helper.make_node("Sigmoid", ["o"], ["p" if tail == "sigmoid-reshaped" else "y"], name="probs")]
        if tail == "sigmoid-reshaped":  # [1, C, 64]: a detector's layout
            nodes.append(helper.make_node("Reshape", ["p", "shape"], ["y"], name="flat"))
            inits.append(numpy_helper.from_array(np.array([1, c, 64], np.int64), "shape"))
            shape = [1, c, 64]
        offset = np.array([0.0, 0.0] + [-20.0] * (c - 2), np.float32).reshape(1, c, 1, 1)
        inits.append(numpy_helper.from_array(offset, "offset"))
    g = helper.make_graph(nodes, "packed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, tmp_path / "float.onnx")
    samples = [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    return quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples[:3], keep_activations=True), samples


def _brute_force_lost(qdq: Path, float_path: Path, sample: dict[str, np.ndarray]) -> tuple[int, float]:
    """The output's channels whose values all dequantize to 0, from the file's own scale, by hand."""
    proto = onnx.load(qdq)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.name == "y_QuantizeLinear")
    scale, zero = float(inits[q.input[1]]), int(inits[q.input[2]])
    y = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).run(["y"], sample)[0]
    levels = np.clip(np.rint(y / scale) + zero, -128, 127)
    per_channel = [np.all(levels[:, c] == zero) and np.any(y[:, c] != 0) for c in range(y.shape[1])]
    return sum(per_channel), scale


def test_channels_rounded_away_are_found_and_said(tmp_path: Path) -> None:
    qdq, samples = _packed_output(tmp_path, [300.0, 300.0, 0.05, 0.05])
    ctx = dbg.open_context(qdq, samples, cache=False)
    found = lost_channels(ctx)
    want, step = _brute_force_lost(qdq, tmp_path / "float.onnx", samples[0])
    assert want == 2  # the premise: the two small channels are gone
    assert len(found) == 1 and (found[0].quantizer, found[0].tensor) == ("y_QuantizeLinear", "y")
    assert (found[0].lost, found[0].channels) == (2, 4) and found[0].step == pytest.approx(step)
    run = dbg.runall(qdq, samples, tmp_path / "debug", report=False)
    assert run.verdict.scores["calibrated"] > 0.999  # the premise: the output's cosine hardly shows it
    assert ("Careful: y_QuantizeLinear rounds 2 of the 4 channels of output y (axis 1) entirely to 0 on the sample"
            in run.verdict.summary)
    more = dbg.runall(qdq, samples, tmp_path / "more", data_num=3)
    assert "entirely to 0 on all 3 samples" in more.verdict.summary
    assert [(x.quantizer, x.lost, x.samples) for x in more.verdict.lost] == [("y_QuantizeLinear", 2, 3)]
    results = json.loads((tmp_path / "more" / "results.json").read_text())
    assert Verdict.from_dict(results["verdict"]).lost == more.verdict.lost
    page = (tmp_path / "more" / "index.html").read_text()  # first in the verdict, in red, with the command
    verdict_html = page[page.index('id="verdict"'):]
    assert verdict_html.index("<strong>Output channels lost</strong>") < verdict_html.index('class="headline"')
    assert f"ptqdebug export {qdq} -o partial.onnx --float-nodes &#x27;[y_QuantizeLinear]&#x27;" in verdict_html
    assert '<g class="gnode lost"><title>y_QuantizeLinear (QuantizeLinear)' in page  # marked on the graph map too
    # and its data drawn, though no sweep ranks it (only weights swept here): the histogram and the
    # per-channel boxes that show the small channels
    weights = dbg.runall(qdq, samples, tmp_path / "w", node_type="weight", report=False)
    assert "y_QuantizeLinear" not in {q for e in weights.sensitivities["weight"].entries for q in e.quantizers}
    assert (tmp_path / "w" / "data_distribution" / "activation_y_QuantizeLinear.png").is_file()
    assert (tmp_path / "w" / "channelwise_distribution" / "y_QuantizeLinear_boxplot.png").is_file()


def test_channels_last_outputs_are_searched_along_their_channel_axis(tmp_path: Path) -> None:
    """[1, anchors, C] (YOLOv5's layout): every anchor holds a large box value, so only the last
    axis shows the lost class channels."""
    qdq, samples = _packed_output(tmp_path, [300.0, 300.0, 0.05, 0.05], tail="last")
    (found,) = lost_channels(dbg.open_context(qdq, samples, cache=False))
    assert (found.axis, found.lost, found.channels) == (2, 2, 4)


@pytest.mark.parametrize("tail", ["softmax", "sigmoid", "sigmoid-reshaped"])
def test_probabilities_near_zero_are_absent_classes_not_lost(tmp_path: Path, tail: str) -> None:
    """A Softmax's classes, or a Sigmoid map's (a text detector's blank edge columns), near 0,
    also reshaped on the way out."""
    qdq, samples = _packed_output(tmp_path, [1.0] * 6, tail=tail)
    ctx = dbg.open_context(qdq, samples, cache=False)
    y = ctx.reference(0, ["y"])["y"]
    step = float(ctx.model.quantizer_map["y_QuantizeLinear"].scale.reshape(-1)[0])
    assert (np.abs(y).max(axis=tuple(a for a in range(y.ndim) if a != 1)) < step / 2).any()  # the premise
    assert lost_channels(ctx, range(4)) == ()


def test_no_warning_where_every_channel_keeps_levels(tmp_path: Path) -> None:
    qdq, samples = _packed_output(tmp_path, [3.0, 2.0, 1.0, 1.5])
    ctx = dbg.open_context(qdq, samples, cache=False)
    assert _brute_force_lost(qdq, tmp_path / "float.onnx", samples[0])[0] == 0
    assert lost_channels(ctx, range(4)) == ()


def test_calibrate_warns_about_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ptqdebug.calibration import calibrate

    _packed_output(tmp_path, [300.0, 300.0, 0.05, 0.05])
    feeds = [{"x": np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(3)]
    with caplog.at_level("WARNING"):
        done = calibrate(tmp_path / "float.onnx", feeds, tmp_path / "out", method="max")
    assert "y_QuantizeLinear rounds 2 of the 4 channels of output y (axis 1) entirely to 0 on all 3 samples" in caplog.text
    # one float run per scored sample serves both the scores and the scan (it ran twice as many)
    from ptqdebug.engine.engine import Engine

    runs = []
    real = Engine.reference
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Engine, "reference", lambda self, *a, **k: runs.append(1) or real(self, *a, **k))
        calibrate(tmp_path / "float.onnx", feeds, tmp_path / "again", method="max")
    assert len(runs) == len(feeds)
    kept = calibrate(tmp_path / "float.onnx", feeds, tmp_path / "kept", method="max", float_nodes=["y_QuantizeLinear"])
    assert kept.cosine > done.cosine  # the advice helps


def test_a_channel_any_sample_keeps_is_not_lost(tmp_path: Path) -> None:
    """Over several samples, a channel is lost only where none of them keeps a level of it: here
    the small channels' input is scaled up in one sample, and they survive there."""
    qdq, samples = _packed_output(tmp_path, [300.0, 300.0, 0.05, 0.05])
    loud = [dict(samples[0]), {"x": samples[1]["x"] * 40}]
    want = [_brute_force_lost(qdq, tmp_path / "float.onnx", s)[0] for s in loud]
    assert want == [2, 0]  # the premise: only the first sample loses them
    ctx = dbg.open_context(qdq, loud, cache=False)
    assert [x.lost for x in lost_channels(ctx, [0])] == [2] == [x.lost for x in lost_channels(ctx, 0)]
    assert lost_channels(ctx, [0, 1]) == ()
    (both,) = lost_channels(ctx, [0, 0])
    assert (both.lost, both.samples) == (2, 2)


def test_runall_prints_the_command_that_keeps_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptqdebug.cli import main

    qdq, samples = _packed_output(tmp_path, [300.0, 300.0, 0.05, 0.05])
    data = tmp_path / "data" / "x"
    data.mkdir(parents=True)
    for i, s in enumerate(samples):
        np.save(data / f"{i}.npy", s["x"])
    assert main(["runall", str(qdq), str(tmp_path / "data"), "-s", str(tmp_path / "d"), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert (f"to keep y_QuantizeLinear in float, whose output channels are lost: ptqdebug export {qdq} -o partial.onnx "
            "--float-nodes '[y_QuantizeLinear]'") in out
