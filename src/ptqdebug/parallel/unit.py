"""One unit of a sweep: one configuration scored on one sample group, by the same code in every
process (this one, its helpers), so that a sweep shared between processes gives the numbers of
one process, bit for bit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from ..metrics import Metric, compare_sample

__all__ = ["score_unit"]


def score_unit(engine: Any, ref: Any, enabled: Collection[str], compare_at: Sequence[str],
               metrics: Sequence[Metric], edges: Sequence[int] | None, samples: Sequence[int]) -> np.ndarray:
    """``[sample of the group, compared tensor, metric]`` for one configuration on one reference
    (one sample, or a batch of samples split at ``edges``); ``samples``: their indices."""
    out = engine.run(ref, enabled, compare_at)
    n = 1 if edges is None else len(edges) - 1
    return np.stack([compare_sample(metrics, compare_at, ref.values, out, samples[k],
                                    None if edges is None else slice(edges[k], edges[k + 1])) for k in range(n)])
