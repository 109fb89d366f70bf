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


def test_fits_match_onnxruntime(calibrated) -> None:
    ctx = dbg.open_context(calibrated.model_path, calibrated.data_dir)
    names = [q.name for q in ctx.model.activation_quantizers]
    fits = {f.quantizer: f for f in range_fits(ctx, names, range(4))}
    assert set(fits) == set(names)
    for q in ctx.model.activation_quantizers:
        values = np.concatenate([ctx.reference(i, [q.input])[q.input].ravel() for i in range(4)])
        scale, zero = float(q.scale.reshape(-1)[0]), int(np.asarray(q.zero_point).reshape(-1)[0])
        levels = _ort_levels(values, scale, zero, q.qtype)
        f = fits[q.name]
        assert f.used == pytest.approx((levels.max() - levels.min() + 1) / 256)
        clipped = [not -128 <= round(float(np.float32(v)) / scale) + zero <= 127 for v in values]  # Python's round: half to even
        assert f.clipped == pytest.approx(np.mean(clipped))
        assert (f.low, f.high) == (float(values.min()), float(values.max()))
    assert any(f.clipped > 0.01 for f in fits.values())  # the premise: percentile 99 clips


def test_advice() -> None:
    relu = RangeFit("r_q", "int8", 0.0, 0.5, 0.0, 1.3, -1.3, 1.29, True)
    assert relu.advice() == ("r_q reaches only 50% of its int8 levels, the negative half unused (its values span 0 to 1.3, "
                             "its range -1.3 to 1.29): an asymmetric range (calibrate --asymmetric) may recover it without float")
    clip = RangeFit("c_q", "int8", 0.031, 0.99, -6.0, 6.0, -3.0, 2.98, True)
    assert clip.advice().startswith("c_q clips 3.1% of its values (its values span -6 to 6")
    assert RangeFit("a_q", "uint8", 0.0, 0.5, 0.0, 1.3, 0.0, 1.3, False).advice() is None  # asymmetric already
    assert RangeFit("b_q", "int8", 0.0, 0.5, -1.0, 1.0, -2.0, 2.0, True).advice() is None  # two-sided values


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
    worst = max(first, key=lambda f: (f.clips, f.one_sided, f.clipped, -f.used))
    assert f">{worst.brief()}</td>" in page
