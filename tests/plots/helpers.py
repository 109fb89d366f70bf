"""Result objects built directly (no model needed) for the figure and report tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ptqdebug.analyses.accumulate import AccumulateErrorResult, ErrorCurve
from ptqdebug.analyses.distribution import ChannelBoxes, Distribution
from ptqdebug.analyses.partial import PartialQuantizationResult
from ptqdebug.analyses.stats import CalibrationNodeStats

HOSTILE = "<script>alert(1)</script>"


def make_accumulate(curves: dict[str, Sequence[float]], nodes: Sequence[str] | None = None,
                    prefix: str = "weight_activation_quantized_separately", metric: str = "cosine-similarity") -> AccumulateErrorResult:
    n = max((len(v) for v in curves.values()), default=0)
    nodes = tuple(nodes) if nodes is not None else tuple(f"/model/layer{j}/Conv" for j in range(n))
    return AccumulateErrorResult(prefix, metric, tuple(f"{x}_output_0" for x in nodes), nodes,
                                 tuple(ErrorCurve(label, tuple(float(v) for v in vals), 3) for label, vals in curves.items()))


def make_boxes(channels: int, name: str = "conv.weight_q", seed: int = 0, per_channel: int = 64) -> ChannelBoxes:
    """Box statistics computed the way ``analyses.distribution`` does (1.5 IQR whiskers)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(channels, per_channel)) * (1 + np.arange(channels)[:, None] % 5)
    q1, med, q3 = np.percentile(rows, [25, 50, 75], axis=1)
    iqr = q3 - q1
    wl = np.array([r[r >= v].min() for r, v in zip(rows, q1 - 1.5 * iqr)])
    wh = np.array([r[r <= v].max() for r, v in zip(rows, q3 + 1.5 * iqr)])
    fliers = tuple(r[(r < a) | (r > b)] for r, a, b in zip(rows, wl, wh))
    return ChannelBoxes(name, "weight", name, 0, q1, med, q3, rows.mean(1), wl, wh, rows.min(1), rows.max(1), fliers)


def make_partial(nodes: Sequence[str] = ("a", "b", "c"), single: Sequence[float] = (0.97, 0.98, 0.99),
                 partial: Sequence[float] = (0.975, 0.99, 0.995), baseline: float = 0.95) -> PartialQuantizationResult:
    return PartialQuantizationResult("cosine-similarity", 0.999, tuple(nodes), baseline, tuple(single), tuple(partial), 2)


def make_stats(n: int = 6) -> list[CalibrationNodeStats]:
    out = []
    for i in range(n):
        kind = "weight" if i % 2 == 0 else "feature"
        out.append(CalibrationNodeStats(f"q{i}", kind, "per-channel", "int8", (1.0 + i, 0.5), ((1.0 + i) / 127, 0.5 / 127),
                                        (2.0 + i, 3.0), (1e-3 * (i + 1), 1e-4)))
    return out


def activation_distribution(x: np.ndarray, threshold: float | None = 2.0, name: str = "act_q") -> Distribution:
    x = np.asarray(x, dtype=np.float32)
    am = float(max(x.max(), -x.min())) if x.size else 0.0
    return Distribution(name, "activation", "t", {"input": x}, am, threshold=threshold)

