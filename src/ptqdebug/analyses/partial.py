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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..metrics import get_metrics
from .sensitivity import Progress, score_configurations

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context
    from ..model import CalibratedModel

__all__ = ["ORDERS", "QTYPES", "PartialQuantizationResult", "apply_commands", "best_prefix", "check_command", "higher_precision", "partial_quantization",
           "prune", "unnamed_reason"]


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
    order: str = "sensitivity"  # how nodes are ordered: as given (worst single sensitivity first) or greedy
    #: sensitive nodes not scored (float32 only): with them too in float, every calibration node that
    #: can be switched off would be off, which is the float model, not a partial quantization
    left_out: tuple[str, ...] = ()

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
                "recovery": list(self.recovery()), "samples": self.samples, "qtype": self.qtype,
                "order": self.order, "left_out": list(self.left_out)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartialQuantizationResult:
        return cls(d["metric"], float(d["pick_threshold"]), tuple(d["nodes"]), float(d["baseline"]),
                   tuple(float(v) for v in d["single"]), tuple(float(v) for v in d["partial"]), int(d["samples"]),
                   str(d.get("qtype", "float32")), str(d.get("order", "sensitivity")), tuple(d.get("left_out", ())))


QTYPES = ("float32", "int16")
ORDERS = ("sensitivity", "greedy")


def best_prefix(nodes: Sequence[str], partial: Sequence[float], baseline: float,
                metric: str = "cosine-similarity") -> tuple[str, ...]:
    """The nodes up to the best of the ``partial`` scores by ``metric`` (NaN worst), or none when no
    score beats ``baseline``: what to keep in higher precision."""
    if not partial:
        return ()
    judge = get_metrics(metric)[0]
    best = max(range(len(partial)), key=lambda i: judge.badness(partial[i]))
    return tuple(nodes[:best + 1]) if judge.worse(baseline, partial[best]) else ()


def _all_off(model: CalibratedModel, off: frozenset[str]) -> bool:
    """Whether switching ``off`` off leaves no calibration node on that could be switched off
    (integer-stored weights without their float model stay on regardless): the float model."""
    switchable = model.calibrated_configuration - model.fixed_quantizers
    return bool(switchable) and switchable <= off


def higher_precision(ctx: Context, nodes: Sequence[str], qtype: str
                      ) -> tuple[Context, Callable[[Sequence[str]], frozenset[str]]]:
    """The context that scores "these of ``nodes`` in higher precision", and the configuration
    for a choice of them: their calibration nodes off (float32), or their activations swapped for
    int16 twins (weights stay 8-bit), in a context that has the twins."""
    model = ctx.model
    calibrated = model.calibrated_configuration
    expanded = {n: frozenset(model.expand(n, "sensitive_nodes")) for n in nodes}
    if qtype != "int16":
        return ctx, lambda chosen: calibrated - frozenset().union(*(expanded[n] for n in chosen))
    weights = [n for n in nodes if n in {q.name for q in model.weight_quantizers}]
    if weights:
        raise OptionError(f"{weights[0]!r} is a weight calibration node; int16 is for activations (weights stay 8-bit): "
                          "name its node or its input's activation calibration node")
    from .int16 import int16_context

    off = frozenset().union(*expanded.values())
    score_ctx, twins = int16_context(ctx, [q.name for q in model.activation_quantizers if q.name in off & calibrated])

    def higher(chosen: Sequence[str]) -> frozenset[str]:
        wider = frozenset().union(*(expanded[n] for n in chosen)) & twins.keys()
        return (calibrated - wider) | {twins[q] for q in wider}

    return score_ctx, higher


def prune(ctx: Context, result: PartialQuantizationResult, data_num: int | None = 1) -> tuple[tuple[str, ...], float]:
    """The best prefix without the nodes it does not need, and its score.

    A node of the best prefix that recovered nothing on top of the ones before it (its score is not
    better than theirs: recovery ≤ 0 for cosine similarity) is dropped where the prefix without it
    scores no worse (scored exactly, one configuration per such node, the last first); nodes that
    recovered something stay. On a real classifier this
    took out a node that recovered 0.0 and one that cost 0.0044 of cosine similarity."""
    keep = list(result.best_prefix())
    if not keep:
        return (), result.baseline
    judge = get_metrics(result.metric)[0]
    score = result.partial[len(keep) - 1]
    score_ctx, higher = higher_precision(ctx, keep, result.qtype)
    before = [result.baseline, *result.partial]
    recovered = {n: judge.worse(before[i], before[i + 1]) for i, n in enumerate(keep)}
    for node in reversed(list(keep)):
        if recovered[node] or len(keep) == 1:
            continue
        trial = [n for n in keep if n != node]
        values, _ = score_configurations(score_ctx, [higher(trial)], metrics=[judge], compare_at=ctx.model.outputs,
                                         data_num=data_num)
        if not judge.worse(float(values[0, 0]), score):
            keep, score = trial, float(values[0, 0])
    return tuple(keep), score


def apply_commands(nodes: Sequence[str], model: str | None = None, qtype: str = "float32",
                   float_model: str | None = None, renamed: Collection[str] = (),
                   not_in_float: Collection[str] = ()) -> tuple[str, str | None]:
    """The shell commands that keep ``nodes`` in higher precision (``qtype``: float, or their
    activations in int16): ``ptqdebug export`` on the calibrated ``model`` (exactly the
    configuration partial quantization scored: with the ``float_model`` it was scored with, if
    any), and ``ptqdebug calibrate`` from the float model, None where one of ``nodes`` is among
    ``renamed`` (names ptqdebug gave nodes the file left unnamed) or ``not_in_float`` (names the
    float model has no node for): the float model does not know them (:func:`unnamed_reason`)."""
    option = "--int16-nodes" if qtype == "int16" else "--float-nodes"
    listed = shlex.quote("[" + ",".join(map(_listed_name, nodes)) + "]")
    floated = f" --float-model {shlex.quote(float_model)}" if float_model else ""
    calibrate = None if unnamed_reason(nodes, renamed, not_in_float) else (
        f"ptqdebug calibrate {shlex.quote(float_model) if float_model else 'FLOAT_MODEL'} INPUTS -o OUT {option} {listed}")
    written = "partial_int16.onnx" if qtype == "int16" else "partial.onnx"  # (both printed: one must not overwrite the other)
    return f"ptqdebug export {shlex.quote(model) if model else 'MODEL'}{floated} -o {written} {option} {listed}", calibrate


def check_command(float_nodes: bool, int16_nodes: bool, data: str | None = None) -> str:
    """The ``ptqdebug check-deployment`` command for what :func:`apply_commands`' export lines
    write (``partial.onnx``, ``partial_int16.onnx``), on ``data`` (``DATA`` where unknown)."""
    files = [f for f, given in (("partial.onnx", float_nodes), ("partial_int16.onnx", int16_nodes)) if given]
    also = f" (and the same for {files[1]})" if len(files) > 1 else ""
    return f"ptqdebug check-deployment {files[0] if files else 'partial.onnx'} {shlex.quote(data) if data else 'DATA'}{also}"


def _listed_name(name: str) -> str:
    """``name`` as an element of the list syntax (:mod:`ptqdebug.listsyntax`): bare where that reads
    back the same, else in the quotes it does not contain, or in single quotes with its own doubled."""
    if name == name.strip() and not any(c in name for c in ",[]'\""):
        return name
    if "'" in name and '"' not in name:
        return f'"{name}"'
    return "'" + name.replace("'", "''") + "'"


def unnamed_reason(nodes: Sequence[str], renamed: Collection[str], not_in_float: Collection[str] = ()) -> str | None:
    """Why :func:`apply_commands` offers no ``calibrate`` command for ``nodes``, or None: those of
    them that are among ``renamed`` (named at most three) or else ``not_in_float``."""
    for among, one, several in (
            (renamed, "is unnamed in the file, a name ptqdebug gave it", "are unnamed in the file, names ptqdebug gave them"),
            (not_in_float, "is no node of the float model (the quantizer renamed or added it)",
             "are no nodes of the float model (the quantizer renamed or added them)")):
        names = [n for n in nodes if n in among]
        if names:
            listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            many = len(names) > 1
            return f"{listed} {several if many else one}: calibrating the float model again cannot take {'them' if many else 'it'}"
    return None


def partial_quantization(
    ctx: Context,
    nodes: Sequence[str],
    *,
    metric: str = "cosine-similarity",
    pick_threshold: float = 0.999,
    data_num: int | None = 1,
    progress: Progress | None = None,
    qtype: str = "float32",
    order: str = "sensitivity",
) -> PartialQuantizationResult:
    """Score the calibrated model with ``nodes`` 1..k in higher precision (``qtype``), for every k.

    ``order="greedy"`` reorders ``nodes`` first: each next node is the one that, added to those
    already chosen, gives the best score (ties: the earlier in ``nodes``). Interactions between
    nodes make this reach a given score with fewer nodes than the single-sensitivity order (YOLOv8n:
    the static order's best with 12 nodes, 0.999854, in 8), at the cost of scoring n(n+1)/2
    configurations instead of n.

    In float32, a node that would switch off the last calibration node still on (with those
    before it) ends the list: it and the ones after it are ``left_out``, since that configuration
    is the float model."""
    if qtype not in QTYPES:
        raise OptionError(f"qtype {qtype!r} is not supported; expected one of {', '.join(QTYPES)}")
    if order not in ORDERS:
        raise OptionError(f"order {order!r} is not supported; expected one of {', '.join(ORDERS)}")
    mets = get_metrics(metric)
    model = ctx.model
    calibrated = model.calibrated_configuration
    expanded = {n: frozenset(model.expand(n, "sensitive_nodes")) for n in nodes}
    score_ctx, higher = higher_precision(ctx, nodes, qtype)

    def everything(chosen: Sequence[str]) -> bool:
        """Whether keeping ``chosen`` in float leaves no calibration node on: the float model."""
        return qtype == "float32" and _all_off(model, frozenset().union(*(expanded[n] for n in chosen)))

    def scored(configs: list[frozenset[str]], report: Progress | None = None) -> list[float]:
        values, _ = score_configurations(score_ctx, configs, metrics=mets, compare_at=model.outputs, data_num=data_num,
                                         progress=report)
        return [float(v) for v in values[:, 0]]

    def alone(names: Sequence[str]) -> list[float]:
        """The calibrated model, then each node alone, in ``ctx`` (scores the node sweep has are reused);
        the calibrated run is also where the runs of the configurations after it start."""
        values, _ = score_configurations(ctx, [calibrated, *(expanded[n] for n in names)], metrics=mets,
                                         compare_at=model.outputs, data_num=data_num)
        return [float(v) for v in values[:, 0]]

    partial: list[float]
    left_out: list[str] = []
    if order == "greedy":
        baseline = alone([])[0]
        ranked: list[str] = []
        partial, remaining = [], list(nodes)
        while remaining:
            allowed = [n for n in remaining if not everything([*ranked, n])]
            if not allowed:
                left_out = remaining
                break
            values = scored([higher([*ranked, n]) for n in allowed])
            best = max(range(len(values)), key=lambda i: (mets[0].badness(values[i]), -i))
            ranked.append(allowed[best])
            remaining.remove(allowed[best])
            partial.append(values[best])
            if progress is not None:
                progress(len(ranked), len(nodes))
        nodes = ranked
        single = alone(nodes)[1:]
    else:
        end = next((k for k in range(len(nodes)) if everything(nodes[:k + 1])), len(nodes))
        nodes, left_out = list(nodes[:end]), list(nodes[end:])
        if score_ctx is ctx:  # one call: the partial runs start from the calibrated run
            baseline, *rest = scored([calibrated, *(expanded[n] for n in nodes),
                                      *(higher(nodes[:k + 1]) for k in range(len(nodes)))], progress)
            single, partial = rest[:len(nodes)], rest[len(nodes):]
        else:
            baseline, *single = alone(nodes)
            partial = scored([higher(nodes[:k + 1]) for k in range(len(nodes))], progress)
    return PartialQuantizationResult(
        metric=mets[0].name, pick_threshold=float(pick_threshold), nodes=tuple(nodes), baseline=baseline,
        single=tuple(single), partial=tuple(partial), samples=len(ctx.samples(data_num)),
        qtype=qtype, order=order, left_out=tuple(left_out),
    )
