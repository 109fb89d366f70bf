"""Which samples quantization hurts most (``hmct``'s ``select_sensitive_samples``, whose workings
are not published: its name, its arguments and "the bad-case samples" are what is known).

The sweeps average their scores over samples, and ``runall`` scores one sample by default (the
original's ``data_num=1``): a loss that only some inputs show (a dark image, a long sentence) can
hide there. This analysis scores each sample alone: the calibrated model (every calibration node
on) against the float model at the outputs, with the sweeps' metric and averaging over outputs,
one value per sample. Worst first, the samples make the data to debug on: ``data_num=1`` then
takes the worst one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import get_metrics
from .sensitivity import Progress, averaged_tensors, configuration_values, decode_float, encode_float

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["SampleSensitivity", "sample_sensitivity"]


@dataclass(frozen=True)
class SampleSensitivity:
    """Each sample's score, in the data's order: ``scores[i]`` is sample ``labels[i]`` (its file
    name without ``.npy`` in a calibration_data folder, else its position) scored by ``metric`` at
    ``compared``; NaN where an output became NaN or inf."""

    metric: str
    higher_is_better: bool
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    compared: tuple[str, ...]

    def order(self) -> tuple[int, ...]:
        """Sample positions worst first: non-finite scores, then the worst values; ties in data order."""
        def key(i: int) -> tuple[bool, float]:
            s = self.scores[i]
            return (not math.isnan(s), s if self.higher_is_better else -s)

        return tuple(sorted(range(len(self.scores)), key=key))

    def worst(self, k: int) -> tuple[int, ...]:
        """The positions of the ``k`` worst samples, worst first."""
        return self.order()[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "higher_is_better": self.higher_is_better, "compared": list(self.compared),
                "samples": [{"label": lab, "score": encode_float(s)} for lab, s in zip(self.labels, self.scores)],
                "worst_first": [self.labels[i] for i in self.order()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampleSensitivity:
        rows = d["samples"]
        return cls(d["metric"], bool(d["higher_is_better"]), tuple(r["label"] for r in rows),
                   tuple(decode_float(r["score"]) for r in rows), tuple(d["compared"]))


def sample_sensitivity(ctx: Context, metric: str = "cosine-similarity", data_num: int | None = None,
                       progress: Progress | None = None) -> SampleSensitivity:
    """Score the calibrated model against the float model on each of the first ``data_num``
    samples (all when None), at the model outputs."""
    met = get_metrics(metric)[0]
    compared = ctx.model.outputs
    values = configuration_values(ctx, [ctx.model.calibrated_configuration], metrics=[met], compare_at=compared,
                                  data_num=data_num, progress=progress)[0, :, 0, :]  # [tensor, sample]
    per_sample = values[averaged_tensors(ctx, compared)].mean(axis=0)
    per_sample[np.isnan(values).any(axis=0)] = np.nan  # (an integer output's NaN counts too, as in a sweep)
    labels = ctx.samples(data_num).labels
    return SampleSensitivity(met.name, met.higher_is_better, tuple(labels), tuple(float(v) for v in per_sample), tuple(compared))
