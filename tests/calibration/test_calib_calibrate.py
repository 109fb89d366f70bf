"""``calibrate`` end to end on small float models: scales against hand computations, exactness, int16."""

from __future__ import annotations

import json
import re
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ptqdebug
from ptqdebug.calibration import CalibrationResult, calibrate
from ptqdebug.calibration.methods import KL_BINS, kl_threshold
from ptqdebug.errors import DataError, ModelError, OptionError, UnknownNodeError
from ptqdebug.metrics import METRICS, compare
from tests.calibration.models import float_tensors, make_samples, scalar_input, tiny_cnn, two_input_bn


def scales(path: str | Path) -> dict[str, ptqdebug.quantizer.Quantizer]:
    """Calibration nodes of a written model by the tensor they quantize (activations) or name (weights).

    ONNX Runtime renames the producer of a graph output (``y`` → ``y_QuantizeLinear_Input``) so
    that the pair's output keeps the name: such a node is found by its output.
    """
    model = ptqdebug.load_model(path)
    out = {q.input if q.kind == "activation" else q.name: q for q in model.quantizers}
    out.update({q.output: q for q in model.activation_quantizers if q.output in model.outputs})
    return out


def test_max_scales_are_max_abs_over_all_samples(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(6)
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="max")
    assert r.method == "max" and r.num_samples == 6 and set(r.candidates) == {"max"}
    got = scales(r.model_path)
    ref = float_tensors(tiny_cnn(), feeds, ["x", "c1", "r1", "y"])
    for t in ("x", "r1", "y"):
        assert float(got[t].scale) == pytest.approx(np.abs(ref[t]).max() / 127, rel=1e-6)
        assert got[t].qtype == "int8" and int(got[t].zero_point) == 0
    # the Conv output read only by the Relu gets the Relu output's range (as ONNX Runtime does)
    assert float(got["c1"].scale) == float(got["r1"].scale)
    # weights: symmetric per output channel, max |W[c]| / 127
    w1 = onnx.numpy_helper.to_array(next(t for t in tiny_cnn().graph.initializer if t.name == "w1"))
    wq = next(q for q in ptqdebug.load_model(r.model_path).weight_quantizers if q.input == "w1")
    np.testing.assert_allclose(wq.scale, np.abs(w1).reshape(4, -1).max(axis=1) / 127, rtol=1e-6)
    rng_r1 = r.range_of("r1")
    assert rng_r1.minimum == 0.0 and rng_r1.maximum == pytest.approx(ref["r1"].max())
    assert rng_r1.hi == pytest.approx(np.abs(ref["r1"]).max(), rel=1e-6)
    with pytest.raises(UnknownNodeError, match=r"range_of: 'r1x' is not in the model; did you mean 'r1'\?"):
        r.range_of("r1x")  # (a KeyError before)


def test_percentile_scales_are_quantiles(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(6)
    p = 0.99
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="percentile", percentile=p)
    got = scales(r.model_path)
    ref = float_tensors(tiny_cnn(), feeds, ["x", "r1", "y"])
    for t in ("x", "r1", "y"):
        a = np.abs(ref[t])
        assert float(got[t].scale) * 127 == pytest.approx(np.quantile(a, p, method="inverted_cdf"), abs=float(a.max()) / 8192 + 1e-6)


def test_kl_scales_follow_the_histogram(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(6)
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="kl")
    got = scales(r.model_path)
    ref = float_tensors(tiny_cnn(), feeds, ["x", "y"])
    for t in ("x", "y"):
        a = np.abs(ref[t])
        hist, _ = np.histogram(a, bins=KL_BINS, range=(0, a.max()))
        expected = kl_threshold(hist, float(a.max()))
        # the calibration histogram has 8192 bins re-binned to 2048: equal up to edge effects
        assert float(got[t].scale) * 127 == pytest.approx(expected, abs=2 * float(a.max()) / KL_BINS)


def test_min_max_is_asymmetric(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(5)
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="min-max")
    got = scales(r.model_path)
    ref = float_tensors(tiny_cnn(), feeds, ["x", "y"])
    for t in ("x", "y"):
        lo, hi = min(ref[t].min(), 0.0), max(ref[t].max(), 0.0)
        scale = np.float32((hi - lo) / 255)
        assert float(got[t].scale) == pytest.approx(float(scale), rel=1e-6)
        assert int(got[t].zero_point) == round(-128 - lo / float(scale))
        assert got[t].thresholds[0] == pytest.approx(lo, abs=float(scale)) and got[t].thresholds[1] == pytest.approx(hi, abs=float(scale))


def test_asymmetric_clips_the_observed_range(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(5)
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="max", activation_symmetric=False, per_channel=False)
    got = scales(r.model_path)
    ref = float_tensors(tiny_cnn(), feeds, ["r1"])
    # a one-sided Relu output uses the whole 8-bit grid on [0, max]
    assert float(got["r1"].scale) == pytest.approx(ref["r1"].max() / 255, rel=1e-6)
    assert int(got["r1"].zero_point) == -128
    w = ptqdebug.load_model(r.model_path).weight_quantizers
    assert all(q.granularity == "per-tensor" for q in w)


def test_default_selects_the_closest_candidate(tmp_path: Path, tiny_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ptqdebug.calibration")
    r = calibrate(tiny_path, make_samples(6), tmp_path / "out")
    assert set(r.candidates) == {"max", "percentile", "kl"}
    assert r.candidates[r.method] == max(r.candidates.values())
    assert f"Select {r.method} method." in caplog.messages
    assert 0.9 < r.cosine <= 1.0
    assert r.options["method"] == "default"


def test_cosines_as_defined_and_as_deployed_match_onnxruntime_sessions(tmp_path: Path, tiny_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``cosine``: the written model with QDQ fusion off (its ONNX meaning), on every sample;
    ``deployment``: on the first k samples, the same and the file in ONNX Runtime's default session
    (QDQ fused into integer kernels); all against the float model, per sample the mean over
    outputs, then the mean over samples."""
    import ptqdebug.calibration.core as core

    monkeypatch.setattr(core, "DEPLOYED_SAMPLES", 3)
    feeds = make_samples(5)
    r = calibrate(tiny_path, feeds, tmp_path / "out", method="max")
    cos = METRICS["cosine-similarity"]
    plain = ort.SessionOptions()
    meaning = ort.SessionOptions()
    meaning.add_session_config_entry("session.disable_quant_qdq", "1")
    flt = ort.InferenceSession(str(tiny_path), providers=["CPUExecutionProvider"])

    def score(so: ort.SessionOptions, some: list[dict[str, np.ndarray]]) -> float:
        sess = ort.InferenceSession(r.model_path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return float(np.mean([np.mean([compare([cos], a, b)[0] for a, b in zip(flt.run(names, f), sess.run(names, f))])
                              for f in some]))

    assert r.cosine == pytest.approx(score(meaning, feeds), abs=1e-6)
    k, defined, deployed = r.deployment
    assert k == 3
    assert defined == pytest.approx(score(meaning, feeds[:3]), abs=1e-6)
    assert deployed == pytest.approx(score(plain, feeds[:3]), abs=1e-6)
    assert CalibrationResult.from_dict(json.loads(json.dumps(r.to_dict()))).deployment == r.deployment
    # by construction the number runall's verdict gives the written model on the same samples
    from ptqdebug.analyses.verdict import verdict

    judged = verdict(ptqdebug.open_context(r.model_path, r.data_dir, cache=False), None, None)
    assert r.cosine == judged.scores["calibrated"]


def test_float_nodes_give_the_configuration_partial_quantization_scored(tmp_path: Path, tiny_path: Path) -> None:
    """``float_nodes=[n]`` writes the calibrated model with n's calibration nodes cut out: the model
    ptqdebug scores when it un-quantizes n (sensitivity_analysis, runall's recommendations)."""
    from ptqdebug.context import open_context

    feeds = make_samples(4)
    full = calibrate(tiny_path, feeds, tmp_path / "full", method="max")
    kept = calibrate(tiny_path, feeds, tmp_path / "kept", method="max", float_nodes=["conv2"])
    assert kept.options["float_nodes"] == ["conv2"]
    before = ptqdebug.load_model(full.model_path)
    after = {q.name for q in ptqdebug.load_model(kept.model_path).quantizers}
    assert after == {q.name for q in before.quantizers} - set(before.node_quantizers["conv2"])  # r1's and w2's pairs
    conv2 = next(n for n in onnx.load(kept.model_path).graph.node if n.name == "conv2")
    assert list(conv2.input) == ["r1", "w2", "b2"]  # float activation and weight
    # its cosine is the score of the full model with conv2's calibration nodes off
    ctx = open_context(full.model_path, feeds)
    off = set(ctx.model.node_quantizers["conv2"])
    cos = METRICS["cosine-similarity"]
    want = np.mean([compare([cos], ctx.reference(i, ["y"])["y"],
                            ctx.engine.run(ctx.reference(i, ["y"]), ctx.model.calibrated_configuration - off)["y"])[0]
                    for i in range(len(feeds))])
    assert kept.cosine == pytest.approx(want, abs=1e-6) and kept.cosine != pytest.approx(full.cosine, abs=1e-9)

    with pytest.raises(UnknownNodeError, match=r"float_nodes: 'conv3' is not in the model; did you mean 'conv[12]'"):
        calibrate(tiny_path, feeds, tmp_path / "bad", float_nodes=["conv3"])
    with pytest.raises(UnknownNodeError, match=r"'y' is not in the model; did you mean 'y_QuantizeLinear'"):
        calibrate(tiny_path, feeds, tmp_path / "bad", float_nodes=["y"])  # the output tensor
    with pytest.raises(UnknownNodeError, match=r"'zzzzzz' is not in the model; calibrate without --float-nodes, then list"):
        calibrate(tiny_path, feeds, tmp_path / "bad", float_nodes=["zzzzzz"])
    with pytest.raises(OptionError, match="'conv2' in float_nodes switches off the calibration node of 'r1', which int16_nodes"):
        calibrate(tiny_path, feeds, tmp_path / "bad", float_nodes="conv2", int16_nodes=["conv2"])


def test_float_nodes_take_the_output_calibration_node(tmp_path: Path, tiny_path: Path) -> None:
    """The output's calibration node, which no node owns, is named as in a sensitivity ranking;
    keeping everything in float is refused in one line (the written model would be the float one)."""
    feeds = make_samples(4)
    out = calibrate(tiny_path, feeds, tmp_path / "out", method="max", float_nodes=["y_QuantizeLinear"])
    assert "y_QuantizeLinear" not in {q.name for q in ptqdebug.load_model(out.model_path).quantizers}
    assert any(q.name == "c1_QuantizeLinear" for q in ptqdebug.load_model(out.model_path).quantizers)
    with pytest.raises(OptionError, match="'y_QuantizeLinear' in float_nodes switches off the calibration node of 'y'"):
        calibrate(tiny_path, feeds, tmp_path / "both", float_nodes=["y_QuantizeLinear"], int16_nodes=["y"])
    everything = ["conv1", "conv2", "relu1", "y_QuantizeLinear"]
    with pytest.raises(OptionError, match=r"float_nodes switch off every calibration node \(4 names given\)"):
        calibrate(tiny_path, feeds, tmp_path / "all", method="max", float_nodes=everything)
    assert not (tmp_path / "all").exists() or not any((tmp_path / "all").iterdir())


def test_opset_11_with_per_channel_weights_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.onnx"
    onnx.save(tiny_cnn(opset=11), str(path))
    r = calibrate(path, make_samples(3), tmp_path / "out", method="max")
    proto = onnx.load(r.model_path)
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 13
    model = ptqdebug.load_model(r.model_path)
    assert any(q.granularity == "per-channel" for q in model.weight_quantizers)
    ort.InferenceSession(r.model_path, providers=["CPUExecutionProvider"]).run(None, make_samples(1)[0])


def test_no_temporary_files_left_in_the_current_directory(tmp_path: Path, tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    calibrate(tiny_path, make_samples(2), tmp_path / "out", method="max")
    assert list(work.iterdir()) == [] and Path.cwd() == work


def test_option_and_model_errors(tmp_path: Path, tiny_path: Path) -> None:
    feeds = make_samples(2)
    with pytest.raises(OptionError, match=r"method 'kll' is not supported.*did you mean 'kl'"):
        calibrate(tiny_path, feeds, tmp_path / "o", method="kll")
    with pytest.raises(OptionError, match="percentile is 1.5"):
        calibrate(tiny_path, feeds, tmp_path / "o", percentile=1.5)
    with pytest.raises(OptionError, match="data_num is 0"):
        calibrate(tiny_path, feeds, tmp_path / "o", data_num=0)
    with pytest.raises(ModelError, match="does not exist"):
        calibrate(tmp_path / "missing.onnx", feeds, tmp_path / "o")
    r = calibrate(tiny_path, feeds, tmp_path / "q", method="max")
    with pytest.raises(ModelError, match="already has calibration nodes"):
        calibrate(r.model_path, feeds, tmp_path / "o")


def test_result_round_trips_through_json(tmp_path: Path, tiny_path: Path) -> None:
    r = calibrate(tiny_path, make_samples(3), tmp_path / "out", method="max", data_num=2)
    assert r.num_samples == 2 and len(os.listdir(Path(r.data_dir) / "x")) == 2
    text = json.dumps(r.to_dict(), allow_nan=False)
    back = CalibrationResult.from_dict(json.loads(text))
    assert back == r


def test_demo_model(tmp_path: Path) -> None:
    root = Path(ptqdebug.__file__).parent / "demo"
    x = np.load(root / "digits_data.npz")["calibration"]
    r = calibrate(root / "digits_cnn.onnx", x, tmp_path / "out")
    assert r.num_samples == 100 and r.cosine > 0.99
    model = ptqdebug.load_model(r.model_path)
    assert all(q.exact for q in model.quantizers) and model.notes == ()
    result = ptqdebug.get_sensitivity_of_nodes(r.model_path, calibrated_data=Path(r.data_dir), node_type="activation")
    assert set(result) == {q.name for q in model.activation_quantizers}


def test_batchnorm_is_folded_unless_optimize_is_off(tmp_path: Path) -> None:
    path = tmp_path / "bn.onnx"
    onnx.save(two_input_bn(), str(path))
    script = tmp_path / "loader.py"
    script.write_text(
        "import numpy as np\n"
        "def data():\n"
        "    rng = np.random.default_rng(0)\n"
        "    for _ in range(4):\n"
        "        yield {'a': rng.normal(size=(1, 3, 6, 6)), 'b': rng.normal(size=(3, 6, 6)).astype(np.float32)}\n"
    )
    folded = calibrate(path, f"{script}:data", tmp_path / "folded", method="max")
    kept = calibrate(path, f"{script}:data", tmp_path / "kept", method="max", optimize=False)
    ops = lambda r: {n.op_type for n in onnx.load(r.model_path).graph.node}  # noqa: E731
    assert "BatchNormalization" not in ops(folded) and "BatchNormalization" in ops(kept)
    assert sorted(os.listdir(Path(folded.data_dir))) == ["a", "b"]
    for r in (folded, kept):
        model = ptqdebug.load_model(r.model_path)
        assert all(q.exact for q in model.quantizers) and model.notes == () and r.cosine > 0.99


SCALAR_LOADER = """
import numpy as np


def samples():
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(0, 1, (1, 8)).astype(np.float32), "r": np.array(r, np.int64)} for r in (8000, 16000, 8000)]
"""


def test_a_scalar_input_from_every_kind_of_source(tmp_path: Path) -> None:
    """A 0-d input (silero-vad's sample rate) stays 0-d: from a loader script, a folder of .npy files
    and an .npz holding one value per sample; the calibrated model then runs every analysis."""
    float_path = tmp_path / "scalar.onnx"
    onnx.save(scalar_input(), float_path)
    (tmp_path / "load.py").write_text(SCALAR_LOADER)
    samples = [{"x": np.full((1, 8), k, np.float32), "r": np.array(r, np.int64)} for k, r in ((0.5, 8000), (1.0, 16000))]
    folder = tmp_path / "folder"
    for name in ("x", "r"):
        (folder / name).mkdir(parents=True)
        for i, s in enumerate(samples):
            np.save(folder / name / f"{i}.npy", s[name])
    npz = tmp_path / "stacked.npz"
    np.savez(npz, x=np.stack([s["x"] for s in samples]), r=np.array([8000, 16000], np.int64))
    for k, source in enumerate([f"{tmp_path / 'load.py'}:samples", folder, npz]):
        result = calibrate(float_path, source, tmp_path / f"out{k}", method="max")
        data = ptqdebug.load_data(result.data_dir, ptqdebug.load_model(result.model_path).inputs)
        assert all(data[i]["r"].shape == () for i in range(len(data))), source
        assert 0.99 < result.cosine <= 1.0
    run = ptqdebug.runall(result.model_path, npz, tmp_path / "debug", cache=False)  # the .npz straight in
    assert run.results["data"]["samples_total"] == 2
    one = tmp_path / "one.npz"  # a single sample, the scalar as a 0-d array
    np.savez(one, x=samples[0]["x"], r=np.array(8000, np.int64))
    got = ptqdebug.get_sensitivity_of_nodes(result.model_path, calibrated_data=one, node_type="activation", cache=False)
    assert got and all(0.9 < v["cosine-similarity"] <= 1.0 for v in got.values())


def _all_in_branches() -> onnx.ModelProto:
    """x [N,3,8,8] → If(mean > 0): then Conv+Relu, else Conv → y: every computation in a body."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {k: numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), k) for k in ("w_then", "w_else")}
    out = lambda name: [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)]  # noqa: E731
    then_g = helper.make_graph([helper.make_node("Conv", ["x", "w_then"], ["t"], pads=[1, 1, 1, 1], name="then_conv"),
                                helper.make_node("Relu", ["t"], ["b_then"], name="then_relu")], "then", [], out("b_then"),
                               [w["w_then"]])
    else_g = helper.make_graph([helper.make_node("Conv", ["x", "w_else"], ["b_else"], pads=[1, 1, 1, 1], name="else_conv")],
                               "else", [], out("b_else"), [w["w_else"]])
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, name="mean"),
             helper.make_node("Greater", ["m", "zero"], ["cond"], name="positive"),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch")]
    graph = helper.make_graph(nodes, "branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_model_the_quantizer_cannot_reach_is_refused_before_writing(tmp_path: Path) -> None:
    """Every computation inside If branches (as in silero-vad): ONNX Runtime's quantizer inserts
    nothing, and calibrate says why instead of writing a model without calibration nodes."""
    path = tmp_path / "branches.onnx"
    onnx.save(_all_in_branches(), path)
    feeds = make_samples(3, shape=(1, 3, 8, 8))
    with pytest.raises(ModelError, match=r"inserted no calibration nodes: the model's 3 nodes lie inside If/Loop/Scan bodies"):
        calibrate(path, feeds, tmp_path / "out" / "deeper", method="max")
    assert not (tmp_path / "out").exists()  # the folders it made are gone again


def test_nodes_left_float_in_bodies_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.bodies import if_model

    path = tmp_path / "if.onnx"
    onnx.save(if_model(seed=0), path)
    with caplog.at_level(logging.WARNING, logger="ptqdebug"):
        result = calibrate(path, make_samples(3, shape=(1, 3, 8, 8)), tmp_path / "out", method="max")
    assert re.search(r"\d nodes inside If/Loop/Scan bodies stay float", caplog.text)
    assert ptqdebug.load_model(result.model_path).quantizers


def test_data_num_all_as_on_the_command_line(tmp_path: Path, tiny_path: Path) -> None:
    r = calibrate(tiny_path, make_samples(5), tmp_path / "out", method="max", data_num="all")
    assert r.num_samples == 5


def test_preprocessing_options_on_tensors_are_said_to_do_nothing(tmp_path: Path, tiny_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    feeds = make_samples(2)
    with caplog.at_level("WARNING"):
        plain = calibrate(tiny_path, feeds, tmp_path / "a", method="max")
    assert "preprocessing options" not in caplog.text
    with caplog.at_level("WARNING"):
        meant = calibrate(tiny_path, feeds, tmp_path / "b", method="max", preprocess={"mean": [1.0, 2.0, 3.0]})
    assert "the preprocessing options apply to images; the sample list holds tensors already, used as they are" in caplog.text
    assert meant.cosine == plain.cosine


def test_another_models_calibration_data_is_not_replaced(tmp_path: Path, tiny_path: Path) -> None:
    """An output folder holding another model's run: its data (an input this model does not have)
    is refused in one line and kept; this model's own earlier run is replaced."""
    import numpy as np

    other = tmp_path / "out" / "calibration_data" / "image"
    other.mkdir(parents=True)
    np.save(other / "0.npy", np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"holds data for input 'image', which this model does not have \(another model's"):
        calibrate(tiny_path, make_samples(2), tmp_path / "out", method="max")
    assert (other / "0.npy").is_file()
    first = calibrate(tiny_path, make_samples(2), tmp_path / "mine", method="max")
    again = calibrate(tiny_path, make_samples(3), tmp_path / "mine", method="max")
    assert Path(first.data_dir) == Path(again.data_dir) and len(list((Path(again.data_dir) / "x").glob("*.npy"))) == 3


def test_a_symlinked_calibration_data_folder_is_not_emptied(tmp_path: Path, tiny_path: Path) -> None:
    """OUT/calibration_data as a link to another folder: replacing it would empty the folder it
    points to (a reviewer found it so); refused in one line, that folder kept."""
    first = calibrate(tiny_path, make_samples(2), tmp_path / "elsewhere", method="max")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "calibration_data").symlink_to(first.data_dir)
    with pytest.raises(DataError, match=r"is a symbolic link; ptqdebug replaces that folder, and would empty what it points to"):
        calibrate(tiny_path, make_samples(3), tmp_path / "out", method="max")
    assert len(list((Path(first.data_dir) / "x").glob("*.npy"))) == 2


@pytest.mark.parametrize("optimize", [True, False])
def test_ir3_models_list_initializers_as_inputs(tmp_path: Path, optimize: bool) -> None:
    """IR 3 (onnx's own older test models) lists every initializer as a graph input. ORT's
    quant_pre_process merged the two equal weights and left the dropped one listed, so ptqdebug
    asked for data for it; without it, quantize_static's new scales broke IR 3's rule."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w1"), numpy_helper.from_array(w.copy(), "w2")]  # equal: merged
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["x", "w2"], ["b"], name="c2", pads=[1] * 4),
             helper.make_node("Add", ["r", "b"], ["y"], name="add")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    listed = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(w.shape)) for n in ("w1", "w2")]
    g = helper.make_graph(nodes, "ir3", [x, *listed], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)])
    m.ir_version = 3
    onnx.save(m, tmp_path / "ir3.onnx")
    samples = [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    done = calibrate(tmp_path / "ir3.onnx", samples, tmp_path / "out", method="max", optimize=optimize)
    assert done.cosine > 0.99
    q = onnx.load(done.model_path)
    assert [i.name for i in q.graph.input] == ["x"]
    default = [o for o in q.opset_import if o.domain in ("", "ai.onnx")]
    assert q.ir_version >= onnx.helper.find_min_ir_version_for(default) == 7  # opset 8 raised to 13, which needs IR 7
    ort.InferenceSession(done.model_path, providers=["CPUExecutionProvider"]).run(None, samples[0])


def test_a_calibration_that_loses_the_output_is_said(tmp_path: Path, tiny_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One outlier in the data stretches max's input range until every other value rounds to 0:
    the output cosine collapses, and calibrate says so (a trial's KL model read 0.27 silently)."""
    samples = make_samples(4)
    samples[0]["x"][0, 0, 0, 0] = 1e4
    with caplog.at_level("WARNING"):
        lossy = calibrate(tiny_path, samples, tmp_path / "max", method="max")
    assert lossy.cosine < 0.9  # the premise
    assert (f"the calibrated model's output cosine similarity against float is {lossy.cosine:.6f} with the max method: "
            "it loses much of the output. Compare the methods (method 'default'), check that the data") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        fine = calibrate(tiny_path, make_samples(4), tmp_path / "fine", method="max")
    assert fine.cosine > 0.99 and "loses much of the output" not in caplog.text


def test_fill_values_stay_in_float(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An attention mask's ``(1 - mask) * float32.min``: an 8-bit scale for it (3.4e38 / 127)
    rounds the scores to 0 and overflows to -inf, and ``0 · -inf`` is NaN downstream (a trial's
    MiniLM: every attention probability wrong, the output cosine 0.07). The tensors holding such
    values stay in float, said once; the rest is quantized, and the model written scores as
    ONNX Runtime runs it."""
    from tests.calibration.models import masked_attention, masked_samples

    onnx.save(masked_attention(), tmp_path / "float.onnx")
    samples = masked_samples()
    with caplog.at_level(logging.WARNING, logger="ptqdebug"):
        result = calibrate(tmp_path / "float.onnx", samples, tmp_path / "out", method="max")
    fill = result.options["fill_values_in_float"]
    assert set(fill) == {"big", "ext", "ext3", "masked"}
    assert "4 tensors hold values near float32's limit ('ext': -3.4e+38" in caplog.text
    model = ptqdebug.load_model(result.model_path)
    quantized = {q.input for q in model.quantizers}
    assert not quantized & set(fill) and {"x", "scores", "p"} <= quantized  # the rest is quantized
    float_sess = ort.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    qdq = ort.InferenceSession(result.model_path, so, providers=["CPUExecutionProvider"])
    cos = [compare([METRICS["cosine-similarity"]], float_sess.run(None, s)[0], qdq.run(None, s)[0])[0] for s in samples]
    assert result.cosine == pytest.approx(float(np.mean(cos)), abs=1e-6) and result.cosine > 0.99
