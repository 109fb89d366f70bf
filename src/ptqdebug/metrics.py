"""How far an actual tensor is from its float reference.

Each metric is a small pure function of ``(reference, actual)`` computed in float64 on the
flattened tensors (booleans and integers are converted to float). Names and directions follow the
original tool (reference §3.4); where its formula is surprising, ptqdebug uses the standard
definition:

================== ======================================== ======== =================================
name               formula (a = reference, b = actual)      better   original tool
================== ======================================== ======== =================================
cosine-similarity  a·b / (max(‖a‖,1e-8) · max(‖b‖,1e-8))    higher   same
mse                mean((a - b)²)                           lower    same
mre                Σ|a - b| / Σ|a|  (relative L1 error)     lower    mean(|a - b|): an absolute error
sqnr               10·log10(Σa² / Σ(a - b)²)  in dB         higher   half of it: 10·log10(‖a‖/‖a-b‖)
chebyshev          max|a - b|                               lower    same
================== ======================================== ======== =================================

Special values, defined everywhere:

* identical tensors (including all-zero ones) score the best value: cosine 1, mse/mre/chebyshev
  0, sqnr +inf (a lossless calibration node);
* positions where both tensors hold the same non-finite value (the float model's own inf/NaN) are
  left out;
* if the actual tensor is non-finite where the reference is not (or the reverse), every metric is
  NaN: the comparison is undefined, and rankings put such candidates first and flag them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import OptionError

__all__ = ["METRICS", "Metric", "compare", "get_metrics"]


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    best: float
    func: Callable[[np.ndarray, np.ndarray], float]

    def worse(self, x: float, y: float) -> bool:
        """Whether score ``x`` is worse than ``y`` (NaN is worse than anything)."""
        if math.isnan(x):
            return not math.isnan(y)
        if math.isnan(y):
            return False
        return x < y if self.higher_is_better else x > y

    def badness(self, x: float) -> float:
        """A key that sorts worst first: NaN, then the worst values."""
        if math.isnan(x):
            return -math.inf
        return x if self.higher_is_better else -x


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not np.dot: OpenBLAS's threaded dot is ~15x slower next to ONNX Runtime's threads
    return float(np.einsum("i,i->", a, b))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = math.sqrt(_dot(a, a)), math.sqrt(_dot(b, b))
    value = _dot(a, b) / (max(na, 1e-8) * max(nb, 1e-8))
    return min(1.0, max(-1.0, value))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return _dot(d, d) / d.size


def _mre(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.abs(a).sum())
    num = float(np.abs(a - b).sum())
    return num / den if den > 0 else math.inf


def _sqnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    noise = _dot(d, d)
    signal = _dot(a, a)
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _chebyshev(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


METRICS: dict[str, Metric] = {
    "cosine-similarity": Metric("cosine-similarity", True, 1.0, _cosine),
    "mse": Metric("mse", False, 0.0, _mse),
    "mre": Metric("mre", False, 0.0, _mre),
    "sqnr": Metric("sqnr", True, math.inf, _sqnr),
    "chebyshev": Metric("chebyshev", False, 0.0, _chebyshev),
}


def get_metrics(names: str | Sequence[str]) -> tuple[Metric, ...]:
    """Metric objects for names (case-insensitive); an unknown name is an :class:`OptionError`."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise OptionError(f"no metric given; expected one or more of {', '.join(METRICS)}")
    out = []
    for name in names:
        key = str(name).strip().lower()
        if key not in METRICS:
            raise OptionError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
        out.append(METRICS[key])
    return tuple(dict.fromkeys(out))


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(-1).astype(np.float64, copy=False)


def compare(metrics: Sequence[Metric], reference: np.ndarray, actual: np.ndarray) -> tuple[float, ...]:
    """Every metric of ``actual`` against ``reference``, with the special values described above."""
    a, b = _flat(reference), _flat(actual)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {np.shape(reference)}, actual {np.shape(actual)}")
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (fa.all() and fb.all()):
        same = ~fa & ~fb & ((a == b) | (np.isnan(a) & np.isnan(b)))
        if np.any((~fa | ~fb) & ~same):
            return tuple(math.nan for _ in metrics)
        a, b = a[~same], b[~same]
    if a.size == 0 or np.array_equal(a, b):
        return tuple(m.best for m in metrics)
    return tuple(m.func(a, b) for m in metrics)
