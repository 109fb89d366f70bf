"""Streaming statistics equal the statistics of all samples at once."""

from __future__ import annotations

import numpy as np

from ptqdebug.calibration.stats import Statistics


def test_streamed_ranges_and_histograms_equal_the_whole_data() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(0.5, 2.0, (1, 4, 5, 5)).astype(np.float32) for _ in range(7)]
    stats = Statistics(["t"], bins=256)
    for b in batches:
        stats.observe_range({"t": b, "other": b})  # unknown names are ignored
    for b in batches:
        stats.observe_histogram({"t": b})
    every = np.concatenate([b.reshape(-1) for b in batches])
    st = stats["t"]
    assert (st.minimum, st.maximum, st.count) == (float(every.min()), float(every.max()), every.size)
    assert st.absmax == float(np.abs(every).max())
    expected, _ = np.histogram(np.abs(every), bins=256, range=(0, st.absmax))
    assert st.histogram is not None and st.histogram.sum() == every.size
    # equal up to values sitting exactly on a bin edge (float rounding decides their side)
    assert np.abs(st.histogram - expected).sum() <= 2


def test_non_finite_values_are_counted_and_left_out() -> None:
    x = np.array([1.0, -3.0, np.inf, np.nan, 2.0], dtype=np.float32)
    stats = Statistics(["t"], bins=8)
    stats.observe_range({"t": x})
    stats.observe_histogram({"t": x})
    st = stats["t"]
    assert (st.minimum, st.maximum, st.count, st.nonfinite) == (-3.0, 2.0, 3, 2)
    assert st.histogram is not None and st.histogram.sum() == 3 and st.histogram[-1] == 1  # |-3| in the last bin


def test_all_zero_and_unseen_tensors() -> None:
    stats = Statistics(["zero", "never"], bins=8)
    stats.observe_range({"zero": np.zeros(5, np.float32)})
    stats.observe_histogram({"zero": np.zeros(5, np.float32)})
    assert stats["zero"].absmax == 0.0 and stats["zero"].histogram[0] == 5  # type: ignore[index]
    assert stats["zero"].one_sided
    assert stats["never"].count == 0 and stats["never"].absmax == 0.0 and not stats["never"].one_sided
