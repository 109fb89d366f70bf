"""Thresholds, scales and zero points against hand computations and an independent KL implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptqdebug.calibration.methods import kl_divergences, kl_threshold, percentile_threshold, quant_params, rebin


def kl_reference(hist: np.ndarray, levels: int = 128) -> dict[int, float]:
    """TensorRT's entropy calibration written out literally, one candidate at a time.

    For i kept bins: P = bins[0:i] with the mass beyond added to bin i-1; Q = the same i bins merged
    into ``levels`` groups (bin k in group floor(k·levels/i)) and spread evenly over the bins where
    P is non-zero; KL(P‖Q) on the normalised distributions; candidates where P > 0 but Q = 0: inf.
    """
    h = hist.astype(np.float64)
    out: dict[int, float] = {}
    for i in range(levels, h.size + 1):
        p = h[:i].copy()
        p[-1] += h[i:].sum()
        group = (np.arange(i) * levels) // i
        q = np.zeros(i)
        for g in range(levels):
            members = group == g
            nonzero = members & (p > 0)
            if nonzero.any():
                q[nonzero] = h[:i][members].sum() / nonzero.sum()
        if h[:i].sum() == 0 or ((p > 0) & (q == 0)).any():
            out[i] = math.inf
            continue
        pn, qn = p / p.sum(), q / q.sum()
        m = pn > 0
        out[i] = float(np.sum(pn[m] * np.log(pn[m] / qn[m])))
    return out


@pytest.mark.parametrize("case", ["normal", "heavy-tail", "gaps"])
def test_kl_divergences_match_the_literal_algorithm(case: str) -> None:
    rng = np.random.default_rng(7)
    x = np.abs(rng.normal(size=4000)) if case == "normal" else np.abs(rng.standard_t(3, 8000))
    hist, _ = np.histogram(x, bins=512, range=(0, x.max()))
    if case == "gaps":
        hist[100:180] = 0
    cand, kl = kl_divergences(hist, 128)
    ref = kl_reference(hist, 128)
    expected = np.array([ref[int(i)] for i in cand])
    assert np.array_equal(np.isfinite(kl), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(kl[finite], expected[finite], rtol=0, atol=1e-10)
    assert cand[np.argmin(kl)] == cand[np.argmin(expected)]


def test_kl_threshold_on_a_known_histogram() -> None:
    # A Relu-like histogram: a spike at 0, a smooth bulk, a few far outliers.
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros(50000), np.abs(rng.normal(0, 1, 50000)), [30.0, 31.0]])
    upper = float(x.max())
    hist, _ = np.histogram(x, bins=2048, range=(0, upper))
    t = kl_threshold(hist, upper)
    # The spike at 0 is replaced by bin 1's count before the search (zeros are exact anyway).
    h = hist.astype(np.float64)
    h[0] = h[1]
    ref = kl_reference(h, 128)
    best = min(ref.values())
    i = max(k for k, v in ref.items() if v <= best + 1e-9)
    assert t == pytest.approx(upper * i / 2048)
    assert 2.0 < t < 10.0  # clips the outliers, keeps the bulk


def test_kl_degenerate_histograms() -> None:
    assert kl_threshold(np.zeros(2048), 5.0) == 0.0
    assert kl_threshold(np.ones(2048), 0.0) == 0.0
    # Few distinct values: every candidate is exact (KL 0); the least clipping one wins.
    hist = np.zeros(2048)
    hist[[0, 512, 1024, 2047]] = [100, 10, 10, 10]
    assert kl_threshold(hist, 1.0) == 1.0


def test_percentile_matches_the_quantile_within_a_bin() -> None:
    rng = np.random.default_rng(0)
    a = np.abs(rng.standard_t(3, 200_000))
    upper = float(a.max())
    hist, _ = np.histogram(a, bins=8192, range=(0, upper))
    for p in (0.5, 0.9, 0.999, 0.99995):
        assert percentile_threshold(hist, upper, p) == pytest.approx(np.quantile(a, p, method="inverted_cdf"), abs=upper / 8192)
    assert percentile_threshold(hist, upper, 1.0) == pytest.approx(upper)
    assert percentile_threshold(np.zeros(16), 1.0, 0.5) == 0.0
    with pytest.raises(ValueError):
        percentile_threshold(hist, upper, 0.0)


def test_rebin() -> None:
    h = np.arange(16)
    np.testing.assert_array_equal(rebin(h, 4), [6, 22, 38, 54])
    assert rebin(h, 16) is h
    with pytest.raises(ValueError):
        rebin(h, 5)


def test_quant_params_by_hand() -> None:
    s, z = quant_params(-2.5, 1.0, "int8", symmetric=True)
    assert (s, z) == (np.float32(2.5 / 127), 0)
    s, z = quant_params(0.0, 3.0, "int16", symmetric=True)
    assert (s, z) == (np.float32(3.0 / 32767), 0)
    s, z = quant_params(-1.0, 3.0, "int8", symmetric=False)
    assert s == np.float32(4.0 / 255)
    assert z == round(-128 + 1.0 / float(s))  # 0 maps to the zero point
    s, z = quant_params(0.5, 3.0, "int8", symmetric=False)  # the range is widened to include 0
    assert (s, z) == (np.float32(3.0 / 255), -128)
    # Empty or non-finite ranges fall back to the threshold 1.0 (the original's rule for T <= 0).
    assert quant_params(0.0, 0.0, "int8", symmetric=True) == (np.float32(1 / 127), 0)
    assert quant_params(-math.inf, 1.0, "int8", symmetric=True) == (np.float32(1 / 127), 0)


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-1e4, 0, allow_nan=False), hi=st.floats(0, 1e4, allow_nan=False), sym=st.booleans(),
       qtype=st.sampled_from(["int8", "int16"]))
def test_quant_params_cover_the_range(lo: float, hi: float, sym: bool, qtype: str) -> None:
    scale, zero = quant_params(lo, hi, qtype, sym)
    qmin, qmax = (-128, 127) if qtype == "int8" else (-32768, 32767)
    assert scale > 0 and qmin <= zero <= qmax
    if max(-lo, hi) / 32767 > 1e-30:
        # both ends of the range land on the grid, within half a step of clipping
        for v in (lo, hi):
            q = round(v / float(scale)) + zero
            assert qmin - 1 <= q <= qmax + 1
