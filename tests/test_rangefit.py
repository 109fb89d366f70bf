"""How well an activation calibration node's range fits its values (ptqdebug.analyses.rangefit):
exact against ONNX Runtime's QuantizeLinear, and said in the verdict as the "why"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.rangefit import RangeFit, range_fits
from ptqdebug.calibration import calibrate
from tests.calibration.models import make_samples, tiny_cnn


def _ort_levels(values: np.ndarray, scale: float, zero: int, qtype: str) -> np.ndarray:
    """QuantizeLinear as ONNX Runtime computes it: the levels an oracle sees."""
    elem = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8}[qtype]
    dtype = {"int8": np.int8, "uint8": np.uint8}[qtype]
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    g = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [values.size])],
                          [helper.make_tensor_value_info("y", elem, [values.size])],
                          [numpy_helper.from_array(np.float32(scale), "s"), numpy_helper.from_array(dtype(zero), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": values.astype(np.float32).ravel()})[0].astype(np.int64)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("fit")
    onnx.save(tiny_cnn(), d / "float.onnx")
    return calibrate(d / "float.onnx", make_samples(4), d / "cal", method="percentile", percentile=0.99)


def _check_against_onnxruntime(model_path: Path, data: Path) -> dict[str, RangeFit]:
    ctx = dbg.open_context(model_path, data)
    names = [q.name for q in ctx.model.activation_quantizers]
    fits = {f.quantizer: f for f in range_fits(ctx, names, range(4))}
    assert set(fits) == set(names)
    for q in ctx.model.activation_quantizers:
        values = np.concatenate([ctx.reference(i, [q.input])[q.input].ravel() for i in range(4)])
        scale, zero = float(q.scale.reshape(-1)[0]), int(np.asarray(q.zero_point).reshape(-1)[0])
        levels = _ort_levels(values, scale, zero, q.qtype)
        f = fits[q.name]
        assert f.used == pytest.approx((levels.max() - levels.min() + 1) / 256)
        lo, hi = (-128, 127) if q.qtype == "int8" else (0, 255)
        raw = [round(float(np.float32(v)) / scale) + zero for v in values]  # Python's round: half to even
        assert f.clipped == pytest.approx(np.mean([not lo <= r <= hi for r in raw]))
        assert (f.low, f.high) == (float(values.min()), float(values.max()))
        # rounded to the zero point, not clipped to it
        assert f.zeroed == pytest.approx(np.mean([r == zero for r, v in zip(raw, values) if v != 0]))
    return fits


def test_fits_match_onnxruntime(calibrated) -> None:
    fits = _check_against_onnxruntime(calibrated.model_path, calibrated.data_dir)
    assert any(f.clipped > 0.01 for f in fits.values())  # the premise: percentile 99 clips


def test_fits_match_onnxruntime_with_zero_points_off_zero(tmp_path: Path) -> None:
    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    cal = calibrate(tmp_path / "float.onnx", make_samples(4), tmp_path / "cal", method="percentile", percentile=0.99,
                    activation_symmetric=False)
    ctx = dbg.open_context(cal.model_path, cal.data_dir)
    assert any(int(np.asarray(q.zero_point).reshape(-1)[0]) not in (0, -128) for q in ctx.model.activation_quantizers)
    _check_against_onnxruntime(cal.model_path, cal.data_dir)


def test_a_deleted_relu_is_applied_before_the_fit(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer deletes a Relu before a uint8 node, whose clipping at 0 stands for
    it: the fit measures the values after the Relu (none clipped), not the negatives it removes
    (which read "clips 50%" and as rounded to 0)."""
    from tests.support.builders import quantize_qdq

    onnx.save(tiny_cnn(seed=1), tmp_path / "float.onnx")
    samples = make_samples(4)
    quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples, activation_type="uint8")
    ctx = dbg.open_context(tmp_path / "qdq.onnx", samples, float_model=tmp_path / "float.onnx")
    deleted = [q for q in ctx.model.activation_quantizers if q.off_node is not None]
    assert deleted  # the premise
    for q, f in zip(deleted, range_fits(ctx, [q.name for q in deleted], range(4))):
        after = np.concatenate([np.maximum(ctx.reference(i, [q.input])[q.input], 0).ravel() for i in range(4)])
        assert f.quantizer == q.name and f.clipped == 0 and f.low == float(after.min()) >= 0 and f.fits
        scale, zero = float(q.scale.reshape(-1)[0]), int(np.asarray(q.zero_point).reshape(-1)[0])
        levels = _ort_levels(after, scale, zero, q.qtype)
        assert f.zeroed == pytest.approx(np.mean(levels[after != 0] == zero))


def test_advice() -> None:
    relu = RangeFit("r_q", "int8", 0.0, 0.5, 0.0, 1.3, -1.3, 1.29, True)
    assert relu.advice() == ("r_q reaches only 50% of its int8 levels, the negative half unused (its values span 0 to 1.3, "
                             "its range -1.3 to 1.29): an asymmetric range, where the target allows one (here: calibrate --asymmetric), "
                             "may recover it without float")
    clip = RangeFit("c_q", "int8", 0.031, 0.99, -6.0, 6.0, -3.0, 2.98, True)
    assert clip.advice().startswith("c_q clips 3.1% of its values (its values span -6 to 6")
    assert RangeFit("a_q", "uint8", 0.0, 0.5, 0.0, 1.3, 0.0, 1.3, False).advice() is None  # asymmetric already
    assert RangeFit("b_q", "int8", 0.0, 0.5, -1.0, 1.0, -2.0, 2.0, True).advice() is None  # two-sided values
    soft = RangeFit("p_q", "uint8", 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, False, 4, 0.7)
    assert soft.coarse and soft.brief() == "rounds 70% to 0"
    assert soft.advice() == ("p_q rounds 70% of its non-zero values to 0 (its values span 0 to 1, its range 0 to 1): its "
                             "uint8 steps are coarse for most of them; int16 (export --int16-nodes) may recover it without float")
    assert RangeFit("p_q", "int16", 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, False, 4, 0.7).advice() is None  # already fine-grained
    assert RangeFit("p_q", "uint8", 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, False, 4, 0.4).fits


def _attention_like(tmp_path: Path) -> Path:
    """Logits over 400 positions, a Softmax, then a MatMul: most probabilities are far below 1/255."""
    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array((rng.standard_normal((16, 400)) * 0.8).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((400, 8)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["logits"], name="mm1"),
             helper.make_node("Softmax", ["logits"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "w2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "att", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "float.onnx")
    return tmp_path / "float.onnx"


def test_a_softmax_whose_probabilities_round_to_zero_is_coarse_and_int16_recovers_it(tmp_path: Path) -> None:
    """The range 0..1 fits the probabilities' extremes, yet most of them round to 0: the fit says
    so, and int16 for that node (what the advice suggests) brings the output closer to float."""
    rng = np.random.default_rng(4)
    samples = [{"x": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(4)]
    cal = calibrate(_attention_like(tmp_path), samples, tmp_path / "cal", method="max", activation_symmetric=False,
                    optimize=False)
    ctx = dbg.open_context(cal.model_path, cal.data_dir)
    q = next(q for q in ctx.model.activation_quantizers if q.input == "p")
    (fit,) = range_fits(ctx, [q.name], range(4))
    assert not fit.clips and not fit.one_sided and fit.coarse and fit.zeroed > 0.5
    assert "int16 (export --int16-nodes)" in (fit.advice() or "")
    # the claim behind the advice: int16 for that node, as export writes it, is closer to float
    base = dbg.get_sensitivity_of_nodes(cal.model_path, calibrated_data=cal.data_dir, node_type="activation", data_num=None)
    dbg.export_model(cal.model_path, tmp_path / "int16.onnx", int16_nodes=[q.name])
    after = dbg.get_sensitivity_of_nodes(tmp_path / "int16.onnx", calibrated_data=cal.data_dir, node_type="activation", data_num=None)
    new = next(n for n in after if n.startswith("p_"))
    assert 1 - after[new]["cosine-similarity"] < 0.1 * (1 - base[q.name]["cosine-similarity"])


def test_the_verdict_says_why(calibrated, tmp_path: Path) -> None:
    run = dbg.runall(calibrated.model_path, calibrated.data_dir, tmp_path / "d", node_type="node", data_num=None,
                     pick_threshold=0.9999)
    assert run.verdict.recommendations  # the premise
    ctx = dbg.open_context(calibrated.model_path, calibrated.data_dir)
    first = [q for r in run.verdict.recommendations[:2] for q in r.calibration_nodes]
    advice = [a for f in range_fits(ctx, first, range(4)) if (a := f.advice())]
    assert advice  # the premise: one of them clips
    assert all(f" Why: {a}." in run.verdict.summary for a in advice[:2])
    # every recommended node's fit is kept (results.json too), and the report's table shows the worst of each row's
    every = [q for r in run.verdict.recommendations for q in r.calibration_nodes]
    assert run.verdict.fits == range_fits(ctx, every, range(4))
    import json

    from ptqdebug.analyses.verdict import Verdict
    assert Verdict.from_dict(json.loads((tmp_path / "d" / "results.json").read_text())["verdict"]).fits == run.verdict.fits
    page = (tmp_path / "d" / "index.html").read_text()
    assert ">its range</th>" in page
    fits = {f.quantizer: f for f in run.verdict.fits}
    first = [fits[q] for q in run.verdict.recommendations[0].calibration_nodes if q in fits]
    worst = max(first, key=lambda f: f.severity)
    assert f">{worst.brief()}</td>" in page
