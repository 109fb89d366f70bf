"""Activation thresholds from streamed statistics: pure numpy, no ONNX.

Every method turns the statistics of one tensor (its minimum, maximum and a histogram of ``|x|``
over all values of all calibration samples) into a clipping range ``[lo, hi]``, and
:func:`quant_params` turns that range into a scale and a zero point.

Definitions (``T`` is a threshold, ``A = max|x|``):

``max``
    ``T = A``.
``percentile``
    ``T`` = the smallest ``t`` such that at least ``p·n`` of the ``n`` values of ``|x|`` (all values
    of all samples) are ``<= t`` — the inverse empirical CDF, numpy's
    ``quantile(method="inverted_cdf")`` — read from the histogram: the first bin where the
    cumulative count reaches ``p·n``, linearly interpolated inside that bin. Exact to within one bin
    width (``A / bins``).
``kl``
    TensorRT-style entropy calibration on the ``|x|`` histogram re-binned to :data:`KL_BINS` bins.
    First ``h[0]`` is replaced by ``h[1]`` (as NVIDIA's pytorch-quantization does): values at
    exactly 0 (Relu outputs, padding) are exact on any grid, and their spike must not pull the
    threshold down. Then for every candidate ``i`` (kept bins, from ``levels`` to all): the
    reference distribution ``P`` is the first ``i`` bins with the mass beyond folded into the last
    one; the candidate ``Q`` merges those ``i`` bins into ``levels`` groups (bin ``k`` in group
    ``floor(k·levels/i)``) and spreads each group's count evenly over the group's bins where ``P`` is
    non-zero. ``T = i·width`` for the ``i`` with the smallest ``KL(P‖Q)``; divergences within
    :data:`KL_TIE` of the smallest are ties, and the largest such ``i`` wins (least clipping: with
    few distinct values every candidate is exact). No smoothing is needed: ``Q > 0`` wherever
    ``P > 0``, except for candidates whose last group holds only folded-in outliers, which are
    skipped.
``min-max``
    ``[min(x), max(x)]``, always asymmetric.

Symmetric activations use ``[-T, T]``; asymmetric ones clip the observed range to the threshold,
``[max(min, -T), min(max, T)]`` (so ``max`` equals ``min-max`` there).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "KL_BINS",
    "KL_TIE",
    "QRANGES",
    "kl_divergences",
    "kl_threshold",
    "percentile_threshold",
    "quant_params",
    "rebin",
]

#: Histogram resolution the entropy search works on (TensorRT's choice).
KL_BINS = 2048

#: Divergences closer than this count as equal; the largest threshold among them wins (least clipping).
KL_TIE = 1e-9

#: (qmin, qmax) of the integer types calibration writes, asymmetric and symmetric.
QRANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "int16": (-32768, 32767)}


def rebin(hist: np.ndarray, bins: int) -> np.ndarray:
    """Merge adjacent bins of ``hist`` so that it has ``bins`` bins (its length must be a multiple)."""
    hist = np.asarray(hist)
    if hist.size == bins:
        return hist
    if hist.size % bins:
        raise ValueError(f"cannot re-bin {hist.size} bins into {bins}")
    return hist.reshape(bins, -1).sum(axis=1)


def percentile_threshold(hist: np.ndarray, upper: float, p: float) -> float:
    """The ``p``-quantile of the values a histogram over ``[0, upper]`` counts (see module doc)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"percentile {p} is outside (0, 1]")
    counts = np.asarray(hist, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or upper <= 0:
        return 0.0
    cum = np.cumsum(counts)
    target = p * total
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, counts.size - 1)
    before = cum[b - 1] if b > 0 else 0.0
    frac = (target - before) / counts[b] if counts[b] > 0 else 1.0
    width = upper / counts.size
    return float(min(upper, (b + min(max(frac, 0.0), 1.0)) * width))


def kl_divergences(hist: np.ndarray, levels: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(candidates, divergence)``: ``KL(P‖Q)`` for every number of kept bins ``i``.

    Computed for all candidates at once from prefix sums (``O(bins · levels)``), with the same
    definition as the module doc; ``inf`` marks skipped candidates.
    """
    h = np.asarray(hist, dtype=np.float64)
    nbins = h.size
    if nbins < levels:
        raise ValueError(f"{nbins} bins are fewer than {levels} quantization levels")
    total = h.sum()
    cand = np.arange(levels, nbins + 1)
    if total <= 0:
        return cand, np.full(cand.shape, np.inf)
    c = np.concatenate([[0.0], np.cumsum(h)])
    nz = np.concatenate([[0], np.cumsum(h > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    hl = np.concatenate([[0.0], np.cumsum(hlogh)])

    j = np.arange(levels + 1)
    edges = -((-cand[:, None] * j[None, :]) // levels)     # ceil(j·i / levels): even groups
    starts, ends = edges[:, :-1], edges[:, 1:]             # (n, levels); a group may be empty
    s = c[ends] - c[starts]                                # group counts without the outliers
    z = (nz[ends] - nz[starts]).astype(np.float64)         # non-zero bins of h per group
    outliers = total - c[cand]
    last = h[cand - 1]
    p_last = last + outliers
    z[:, -1] += (p_last > 0).astype(np.float64) - (last > 0).astype(np.float64)
    pj = s.copy()
    pj[:, -1] += outliers                                  # P's mass per group

    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = hl[cand - 1] + np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
        logq = np.where((s > 0) & (z > 0), np.log(np.where(s > 0, s, 1.0)) - np.log(np.where(z > 0, z, 1.0)), 0.0)
        cross = (pj * logq).sum(axis=1)
        kept = c[cand]
        kl = plogp / total - math.log(total) - cross / total + np.log(np.where(kept > 0, kept, 1.0))
    bad = (kept <= 0) | ((pj > 0) & (s <= 0)).any(axis=1)
    kl = np.where(bad, np.inf, np.maximum(kl, 0.0))
    return cand, kl


def kl_threshold(hist: np.ndarray, upper: float, levels: int = 128) -> float:
    """Entropy-calibration threshold of a histogram of ``|x|`` over ``[0, upper]`` (module doc)."""
    h = np.array(hist, dtype=np.float64)
    if upper <= 0 or h.sum() <= 0:
        return 0.0
    if h.size > 1:
        h[0] = h[1]  # zeros are exact on any grid: the spike at 0 (Relu, padding) must not steer the choice
    cand, kl = kl_divergences(h, levels)
    if not np.isfinite(kl).any():
        return float(upper)
    best = int(cand[np.flatnonzero(kl <= kl.min() + KL_TIE)[-1]])
    return float(upper * best / h.size)


def quant_params(lo: float, hi: float, qtype: str, symmetric: bool) -> tuple[np.float32, int]:
    """Scale and zero point for the clipping range ``[lo, hi]``.

    Symmetric: ``T = max(|lo|, |hi|)``, ``scale = T / qmax`` with ``qmax = 127`` (int8) or
    ``32767`` (int16), zero point 0 (the grid ``[-qmax, qmax]``, as ONNX Runtime and the original
    toolchain use). Asymmetric: the range is widened to include 0, ``scale = (hi - lo) / (qmax -
    qmin)`` on the full grid (``[-128, 127]`` for int8) and ``zero_point = round(qmin - lo / scale)``.
    A range that is empty, not finite, or too small for float32 falls back to ``T = 1.0`` (the
    original toolchain's rule for thresholds ≤ 0); a zero tensor is exact on any grid.
    """
    qmin, qmax = QRANGES[qtype]
    lo, hi = float(lo), float(hi)
    tiny = float(np.finfo(np.float32).tiny)
    if symmetric:
        t = max(abs(lo), abs(hi))
        if not math.isfinite(t) or t / qmax < tiny:
            t = 1.0
        return np.float32(t / qmax), 0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)) or (hi - lo) / (qmax - qmin) < tiny:
        return np.float32(1.0 / qmax), 0
    scale = np.float32((hi - lo) / (qmax - qmin))
    zero = int(np.clip(round(qmin - lo / float(scale)), qmin, qmax))
    return scale, zero
