"""``calibrate`` end to end on small float models: scales against hand computations, exactness, int16."""

from __future__ import annotations

import json
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
from ptqdebug.errors import ModelError, OptionError, UnknownNodeError
from ptqdebug.metrics import METRICS, compare
from tests.calibration.models import float_tensors, make_samples, tiny_cnn, two_input_bn


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
    with pytest.raises(OptionError, match="'conv2' is in both float_nodes and int16_nodes"):
        calibrate(tiny_path, feeds, tmp_path / "bad", float_nodes="conv2", int16_nodes=["conv2"])


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
