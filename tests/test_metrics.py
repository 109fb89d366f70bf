"""Metrics agree with their textbook formulas and define every special case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ptqdebug.errors import OptionError
from ptqdebug.metrics import METRICS, compare, get_metrics

ALL = list(METRICS.values())


def brute(name: str, a: np.ndarray, b: np.ndarray) -> float:
    a = [float(v) for v in a.ravel()]
    b = [float(v) for v in b.ravel()]
    d = [x - y for x, y in zip(a, b)]
    if name == "cosine-similarity":
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
        return sum(x * y for x, y in zip(a, b)) / (max(na, 1e-8) * max(nb, 1e-8))
    if name == "mse":
        return sum(x * x for x in d) / len(d)
    if name == "mre":
        return sum(abs(x) for x in d) / sum(abs(x) for x in a)
    if name == "sqnr":
        return 10 * math.log10(sum(x * x for x in a) / sum(x * x for x in d))
    return max(abs(x) for x in d)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(2, 40), elements=st.floats(-100, 100, width=32)),
       arrays(np.float32, st.integers(2, 40), elements=st.floats(-1, 1, width=32)))
def test_metrics_match_brute_force(a: np.ndarray, noise: np.ndarray) -> None:
    n = min(a.size, noise.size)
    a, b = a[:n], a[:n] + noise[:n]
    if np.array_equal(a, b) or not np.abs(a).sum():
        return
    got = compare(ALL, a, b)
    for m, v in zip(ALL, got):
        assert v == pytest.approx(brute(m.name, a, b), rel=1e-9, abs=1e-12), m.name


def test_identical_tensors_score_best_even_all_zero() -> None:
    for x in (np.zeros(5, np.float32), np.arange(5, dtype=np.float32)):
        assert compare(ALL, x, x.copy()) == (1.0, 0.0, 0.0, math.inf, 0.0)


def test_zero_reference_with_error() -> None:
    cos, mse, mre, sqnr, cheb = compare(ALL, np.zeros(3), np.array([0.0, 1.0, 0.0]))
    assert cos == 0.0 and mse == pytest.approx(1 / 3) and mre == math.inf and sqnr == -math.inf and cheb == 1.0


def test_nonfinite_actual_makes_every_metric_nan() -> None:
    a = np.array([1.0, 2.0, 3.0], np.float32)
    for bad in (np.inf, -np.inf, np.nan):
        b = a.copy()
        b[1] = bad
        assert all(math.isnan(v) for v in compare(ALL, a, b))


def test_shared_nonfinite_positions_are_left_out() -> None:
    a = np.array([1.0, np.inf, np.nan, 3.0], np.float32)
    b = np.array([1.5, np.inf, np.nan, 3.0], np.float32)
    assert compare(ALL, a, b) == compare(ALL, a[[0, 3]], b[[0, 3]])


def test_integer_and_bool_tensors() -> None:
    assert compare([METRICS["mse"]], np.array([1, 2, 3]), np.array([1, 2, 5]))[0] == pytest.approx(4 / 3)
    assert compare([METRICS["chebyshev"]], np.array([True, False]), np.array([True, True]))[0] == 1.0


def test_names_and_errors() -> None:
    assert [m.name for m in get_metrics(["MSE", "sqnr"])] == ["mse", "sqnr"]
    with pytest.raises(OptionError, match="unknown metric 'kl'"):
        get_metrics("kl")
    with pytest.raises(OptionError):
        get_metrics([])


def test_sqnr_is_the_standard_db_value() -> None:
    a = np.array([3.0, 4.0])
    b = np.array([3.0, 4.5])
    assert compare([METRICS["sqnr"]], a, b)[0] == pytest.approx(10 * math.log10(25 / 0.25))


def test_ranking_key_puts_nan_first() -> None:
    cos, mse = METRICS["cosine-similarity"], METRICS["mse"]
    assert math.isnan(sorted([0.9, math.nan, 0.5], key=cos.badness)[0])
    assert sorted([0.9, 0.5, 0.99], key=cos.badness) == [0.5, 0.9, 0.99]
    assert sorted([0.1, 3.0, 0.2], key=mse.badness) == [3.0, 0.2, 0.1]
