"""Streaming statistics of activation tensors: memory bounded by the tensors, not the samples.

Calibration runs the float model one sample at a time and folds every tensor it will quantize into
small running summaries, then drops the tensor:

* pass 1 (:meth:`Statistics.observe_range`): running minimum, maximum and count of each tensor;
* pass 2 (:meth:`Statistics.observe_histogram`), only for ``percentile``, ``kl`` and ``default``:
  a histogram of ``|x|`` with :data:`HIST_BINS` equal bins over the fixed range ``[0, max|x|]``
  known from pass 1, so no re-binning and no approximation beyond the bin width.

Memory is ``HIST_BINS`` counters per tensor (64 KiB) plus one sample's tensors, whatever the number
of samples — ONNX Runtime's own calibrators keep every tensor of every sample instead.

Non-finite values (``inf``/``NaN``, e.g. after a ``Reciprocal`` of 0) are counted and left out of
the statistics: a threshold cannot be infinite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HIST_BINS", "Statistics", "TensorStats"]

#: Bins of the ``|x|`` histograms (a multiple of :data:`methods.KL_BINS`).
HIST_BINS = 8192


@dataclass
class TensorStats:
    """What calibration knows about one tensor after streaming the samples."""

    name: str
    minimum: float = float("inf")
    maximum: float = float("-inf")
    count: int = 0
    nonfinite: int = 0
    histogram: np.ndarray | None = field(default=None, repr=False)

    @property
    def absmax(self) -> float:
        """``max|x|`` over the finite values (0 when none were seen)."""
        if self.count == 0:
            return 0.0
        return max(abs(self.minimum), abs(self.maximum))

    @property
    def one_sided(self) -> bool:
        """Whether every finite value has the same sign (e.g. after a Relu)."""
        return self.count > 0 and (self.minimum >= 0.0 or self.maximum <= 0.0)


def _finite(x: np.ndarray) -> tuple[np.ndarray, int]:
    flat = np.asarray(x).reshape(-1)
    if flat.dtype.kind != "f" or flat.dtype.itemsize < 4:
        flat = flat.astype(np.float32)
    if flat.size == 0:
        return flat, 0
    # A cheap check first: min/max are finite only when every value is.
    lo, hi = flat.min(), flat.max()
    if np.isfinite(lo) and np.isfinite(hi):
        return flat, 0
    mask = np.isfinite(flat)
    return flat[mask], int(flat.size - mask.sum())


class Statistics:
    """Running statistics of the named tensors (see module doc)."""

    def __init__(self, names: Iterable[str], bins: int = HIST_BINS) -> None:
        self.bins = int(bins)
        self.tensors: dict[str, TensorStats] = {n: TensorStats(n) for n in names}

    def __getitem__(self, name: str) -> TensorStats:
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    # -- pass 1 --------------------------------------------------------------------------------
    def observe_range(self, values: Mapping[str, np.ndarray]) -> None:
        """Fold one sample's tensors into the running minimum/maximum."""
        for name, x in values.items():
            st = self.tensors.get(name)
            if st is None:
                continue
            flat, bad = _finite(x)
            st.nonfinite += bad
            if flat.size == 0:
                continue
            st.minimum = min(st.minimum, float(flat.min()))
            st.maximum = max(st.maximum, float(flat.max()))
            st.count += int(flat.size)

    # -- pass 2 --------------------------------------------------------------------------------
    def observe_histogram(self, values: Mapping[str, np.ndarray]) -> None:
        """Fold one sample's tensors into the ``|x|`` histograms over ``[0, max|x|]``."""
        for name, x in values.items():
            st = self.tensors.get(name)
            if st is None:
                continue
            if st.histogram is None:
                st.histogram = np.zeros(self.bins, dtype=np.int64)
            flat, _ = _finite(x)
            if flat.size == 0:
                continue
            upper = st.absmax
            if upper <= 0.0:
                st.histogram[0] += flat.size
                continue
            factor = self.bins / upper
            mag = np.abs(flat)
            if factor > 1e30:  # float32 would overflow to inf
                mag = mag.astype(np.float64)
            idx = (mag * mag.dtype.type(factor)).astype(np.int64)
            np.minimum(idx, self.bins - 1, out=idx)
            st.histogram += np.bincount(idx, minlength=self.bins)
