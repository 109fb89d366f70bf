"""Partial quantization: what keeping the most sensitive nodes in float recovers (reference §7.1).

For sensitive nodes n1, n2, ... (worst first): ``single[k]`` is the score with only n_k's
calibration nodes on; ``partial[k]`` the score of the calibrated model with n1..n_k all off. The
baseline is the calibrated model itself (key ``"none"`` in the original). ``partial[k] -
partial[k-1]`` is what un-quantizing n_k recovers on top of the ones before it: the
recommendation of what to keep in higher precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..metrics import get_metrics
from .sensitivity import Progress, score_configurations

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context

__all__ = ["PartialQuantizationResult", "partial_quantization"]


@dataclass(frozen=True)
class PartialQuantizationResult:
    metric: str
    pick_threshold: float
    nodes: tuple[str, ...]
    baseline: float
    single: tuple[float, ...]
    partial: tuple[float, ...]
    samples: int

    def recovery(self) -> tuple[float, ...]:
        """What un-quantizing each node adds to the ones before it (in metric units)."""
        prev, out = self.baseline, []
        for p in self.partial:
            out.append(p - prev)
            prev = p
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "pick_threshold": self.pick_threshold, "nodes": list(self.nodes),
                "baseline": self.baseline, "single": list(self.single), "partial": list(self.partial),
                "recovery": list(self.recovery()), "samples": self.samples}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartialQuantizationResult:
        return cls(d["metric"], float(d["pick_threshold"]), tuple(d["nodes"]), float(d["baseline"]),
                   tuple(float(v) for v in d["single"]), tuple(float(v) for v in d["partial"]), int(d["samples"]))


def partial_quantization(
    ctx: Context,
    nodes: Sequence[str],
    *,
    metric: str = "cosine-similarity",
    pick_threshold: float = 0.999,
    data_num: int | None = 1,
    progress: Progress | None = None,
) -> PartialQuantizationResult:
    mets = get_metrics(metric)
    model = ctx.model
    calibrated = model.calibrated_configuration
    configs: list[frozenset[str]] = [calibrated]
    off: set[str] = set()
    expanded = [frozenset(model.expand(n, "sensitive_nodes")) for n in nodes]
    for qs in expanded:
        configs.append(qs)
        off |= qs
        configs.append(calibrated - off)
    scores, _ = score_configurations(ctx, configs, metrics=mets, compare_at=model.outputs, data_num=data_num, progress=progress)
    values = [float(v) for v in scores[:, 0]]
    return PartialQuantizationResult(
        metric=mets[0].name, pick_threshold=float(pick_threshold), nodes=tuple(nodes), baseline=values[0],
        single=tuple(values[1::2]), partial=tuple(values[2::2]), samples=len(ctx.samples(data_num)),
    )
