"""Partial quantization: what keeping the most sensitive nodes in float recovers (reference §7.1).

For sensitive nodes n1, n2, ... (worst first): ``single[k]`` is the score with only n_k's
calibration nodes on; ``partial[k]`` the score of the calibrated model with n1..n_k all off. The
baseline is the calibrated model itself (key ``"none"`` in the original). ``partial[k] -
partial[k-1]`` is what un-quantizing n_k recovers on top of the ones before it: the
recommendation of what to keep in higher precision.

With ``qtype="int16"`` (the original toolchain's other remedy, ``hmct``'s ``qtype``) ``partial[k]``
is the calibrated model with the activation calibration nodes of n1..n_k in int16 instead of off
(their weights stay 8-bit), scored exactly through int16 twins (:mod:`ptqdebug.analyses.int16`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..metrics import get_metrics
from .sensitivity import Progress, score_configurations

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context

__all__ = ["QTYPES", "PartialQuantizationResult", "apply_commands", "best_prefix", "partial_quantization"]


@dataclass(frozen=True)
class PartialQuantizationResult:
    metric: str
    pick_threshold: float
    nodes: tuple[str, ...]
    baseline: float
    single: tuple[float, ...]
    partial: tuple[float, ...]
    samples: int
    qtype: str = "float32"  # what nodes 1..k become in ``partial``: float32 (off) or int16

    def best_prefix(self) -> tuple[str, ...]:
        """Nodes 1..k of the best ``partial`` score, empty when none beats the baseline."""
        return best_prefix(self.nodes, self.partial, self.baseline, self.metric)

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
                "recovery": list(self.recovery()), "samples": self.samples, "qtype": self.qtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartialQuantizationResult:
        return cls(d["metric"], float(d["pick_threshold"]), tuple(d["nodes"]), float(d["baseline"]),
                   tuple(float(v) for v in d["single"]), tuple(float(v) for v in d["partial"]), int(d["samples"]),
                   str(d.get("qtype", "float32")))


QTYPES = ("float32", "int16")


def best_prefix(nodes: Sequence[str], partial: Sequence[float], baseline: float,
                metric: str = "cosine-similarity") -> tuple[str, ...]:
    """The nodes up to the best of the ``partial`` scores by ``metric`` (NaN worst), or none when no
    score beats ``baseline``: what to keep in higher precision."""
    if not partial:
        return ()
    judge = get_metrics(metric)[0]
    best = max(range(len(partial)), key=lambda i: judge.badness(partial[i]))
    return tuple(nodes[:best + 1]) if judge.worse(baseline, partial[best]) else ()


def apply_commands(nodes: Sequence[str], model: str | None = None, qtype: str = "float32") -> tuple[str, str]:
    """The shell commands that keep ``nodes`` in higher precision (``qtype``: float, or their
    activations in int16): ``ptqdebug export`` on the calibrated ``model`` (exactly the
    configuration partial quantization scored), and ``ptqdebug calibrate`` from the float model."""
    option = "--int16-nodes" if qtype == "int16" else "--float-nodes"
    listed = shlex.quote("[" + ",".join(nodes) + "]")
    return (f"ptqdebug export {shlex.quote(model) if model else 'MODEL'} -o partial.onnx {option} {listed}",
            f"ptqdebug calibrate FLOAT_MODEL INPUTS -o OUT {option} {listed}")


def partial_quantization(
    ctx: Context,
    nodes: Sequence[str],
    *,
    metric: str = "cosine-similarity",
    pick_threshold: float = 0.999,
    data_num: int | None = 1,
    progress: Progress | None = None,
    qtype: str = "float32",
) -> PartialQuantizationResult:
    if qtype not in QTYPES:
        raise OptionError(f"qtype {qtype!r} is not supported; expected one of {', '.join(QTYPES)}")
    mets = get_metrics(metric)
    model = ctx.model
    calibrated = model.calibrated_configuration
    expanded = [frozenset(model.expand(n, "sensitive_nodes")) for n in nodes]
    configs: list[frozenset[str]] = [calibrated, *expanded]  # the calibrated model, then each node alone
    partial: list[frozenset[str]] = []
    off: set[str] = set()
    for qs in expanded:
        off |= qs
        partial.append(calibrated - off)
    if qtype == "float32":
        scores, _ = score_configurations(ctx, configs + partial, metrics=mets, compare_at=model.outputs, data_num=data_num,
                                         progress=progress)
        values = [float(v) for v in scores[:, 0]]
        return _result(mets[0].name, pick_threshold, nodes, values[:len(configs)], values[len(configs):], ctx, data_num, qtype)
    from .int16 import int16_context

    twin_ctx, twins = int16_context(ctx, [q.name for q in model.activation_quantizers if q.name in off & calibrated])
    in_int16: set[str] = set()
    wider: list[frozenset[str]] = []
    for qs in expanded:  # nodes 1..k: their activation calibration nodes int16, their weights still 8-bit
        in_int16 |= qs & twins.keys()
        wider.append((calibrated - in_int16) | {twins[q] for q in in_int16})
    scores, _ = score_configurations(ctx, configs, metrics=mets, compare_at=model.outputs, data_num=data_num)
    twin_scores, _ = score_configurations(twin_ctx, wider, metrics=mets, compare_at=model.outputs, data_num=data_num,
                                          progress=progress)
    return _result(mets[0].name, pick_threshold, nodes, [float(v) for v in scores[:, 0]],
                   [float(v) for v in twin_scores[:, 0]], ctx, data_num, qtype)


def _result(metric: str, pick_threshold: float, nodes: Sequence[str], calibrated_and_single: list[float],
            partial: list[float], ctx: Context, data_num: int | None, qtype: str) -> PartialQuantizationResult:
    return PartialQuantizationResult(
        metric=metric, pick_threshold=float(pick_threshold), nodes=tuple(nodes), baseline=calibrated_and_single[0],
        single=tuple(calibrated_and_single[1:]), partial=tuple(partial), samples=len(ctx.samples(data_num)), qtype=qtype,
    )
