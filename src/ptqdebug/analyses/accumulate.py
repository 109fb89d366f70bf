"""Cumulative error curves: the error at every node's outputs, in topological order, for chosen
configurations against the float model (reference §4, what ``plot_acc_error`` draws).

Configurations follow the original's rules (§4.3):

* ``quantize_node`` with the keywords ``weight`` / ``activation``: the calibrated model and
  "only weight" / "only activation" quantized;
* ``quantize_node`` names: one curve per name, only that node's calibration nodes on;
  nested lists: the calibrated model, then one curve per group (only the group on);
* ``non_quantize_node`` in the same shapes: the calibrated model with those calibration nodes off.
  Unlike the original (reference §1.4), a flat list really switches each node off.

Curves keep the user's order. Non-finite points stay at their index (the original dropped +inf
points, which shifted every later point left). The original draws one sample; given several, each
point is the mean of the samples' scores (NaNs skipped, as the sweeps average), so that a curve's
last point is the score the sweeps and the verdict give on those samples. Beyond the original's
tensors (the outputs of the nodes that have calibration nodes), the model's floating-point
outputs the curve would not reach are its last points, named after the node or calibration node
that produces them (an output QDQ pair; the float tail NNCF leaves after the last calibration
node), so a curve ends at the score the verdict gives; nodes that only compute shapes, which
score 1 whatever is quantized, are left out.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..metrics import compare, get_metrics, per_tensor_only
from .candidates import flat_names, normalize_node_list

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context

__all__ = ["AccumulateErrorResult", "Configuration", "ErrorCurve", "accumulate_error", "configurations_for"]

KEYWORDS = ("weight", "activation")


@dataclass(frozen=True)
class Configuration:
    """A labelled set of enabled calibration nodes."""

    label: str
    enabled: frozenset[str]


@dataclass(frozen=True)
class ErrorCurve:
    label: str
    values: tuple[float, ...]
    enabled: int  # how many calibration nodes were on

    def running_mean(self) -> tuple[float, ...]:
        """``average_mode``: mean of the first i+1 finite points at each index (NaN until one exists)."""
        out, total, count = [], 0.0, 0
        for v in self.values:
            if math.isfinite(v):
                total += v
                count += 1
            out.append(total / count if count else math.nan)
        return tuple(out)


@dataclass(frozen=True)
class AccumulateErrorResult:
    """One figure's worth of curves: ``values[j]`` is the error at ``tensors[j]`` (output of
    ``nodes[j]``), the mean over ``samples`` samples."""

    prefix: str
    metric: str
    tensors: tuple[str, ...]
    nodes: tuple[str, ...]
    curves: tuple[ErrorCurve, ...]
    samples: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "metric": self.metric, "tensors": list(self.tensors), "nodes": list(self.nodes),
                "curves": [{"label": c.label, "enabled": c.enabled, "values": list(c.values)} for c in self.curves],
                "samples": self.samples}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AccumulateErrorResult:
        curves = tuple(ErrorCurve(c["label"], tuple(float(v) for v in c["values"]), int(c["enabled"])) for c in d["curves"])
        return cls(d["prefix"], d["metric"], tuple(d["tensors"]), tuple(d["nodes"]), curves, int(d.get("samples", 1)))


def configurations_for(ctx: Context, quantize_node: object = None, non_quantize_node: object = None) -> list[tuple[str, list[Configuration]]]:
    """The (file prefix, configurations) pairs the arguments ask for, one pair per figure."""
    model = ctx.model
    q_flat = flat_names(quantize_node, "quantize_node") if quantize_node is not None else []
    nq_flat = flat_names(non_quantize_node, "non_quantize_node") if non_quantize_node is not None else []
    if not q_flat and not nq_flat:
        raise OptionError("'quantize_node' and 'non_quantize_node' are both empty; give at least one (e.g. "
                          "quantize_node=['weight','activation'], on the command line -q \"['weight','activation']\")")
    if any(k in nq_flat for k in KEYWORDS):
        raise OptionError("non_quantize_node cannot be 'weight' or 'activation'; use quantize_node=['weight','activation'] for those curves")
    calibrated = model.calibrated_configuration
    figures: list[tuple[str, list[Configuration]]] = []
    default = Configuration("weight_activation_calibrated", calibrated)
    if any(k in q_flat for k in KEYWORDS):
        weights = frozenset(q.name for q in model.weight_quantizers) & calibrated
        acts = frozenset(q.name for q in model.activation_quantizers) & calibrated
        # weights that cannot be switched off are on in the reference too: their cost is not in the curve
        fixed, total = len(weights & model.fixed_quantizers), len(weights)
        unmeasured = ("" if not fixed else " (weights as stored: not measured)" if fixed == total
                      else f" ({total - fixed} of {total} weights measured)")
        only_w = Configuration("only_weight_calibrated" + unmeasured, weights)
        only_a = Configuration("only_activation_calibrated", acts)
        if "weight" in q_flat and "activation" in q_flat:
            figures.append(("weight_activation_quantized_separately", [default, only_a, only_w]))
        elif "weight" in q_flat:
            figures.append(("weight_quantized", [default, only_w]))
        else:
            figures.append(("activation_quantized", [default, only_a]))
    elif q_flat:
        figures.append(_node_figure(ctx, quantize_node, "quantize_node", lambda qs: qs))
    if nq_flat:
        figures.append(_node_figure(ctx, non_quantize_node, "non_quantize_node", lambda qs: calibrated - qs))
    return figures


def _node_figure(ctx: Context, value: object, what: str, make) -> tuple[str, list[Configuration]]:  # noqa: ANN001
    items = normalize_node_list(value, what)
    calibrated = ctx.model.calibrated_configuration
    if any(isinstance(i, list) for i in items):
        configs = [Configuration("default calibrated model", calibrated)]
        for i, item in enumerate(items):
            names = [item] if isinstance(item, str) else item
            configs.append(Configuration(f"partial_qmodel_{i}", frozenset(make(frozenset(ctx.model.expand(names, what))))))
        return f"{what}_accumulate_err_of_partial_qmodel", configs
    names = list(dict.fromkeys(i for i in items if isinstance(i, str)))  # no groups here (see above): de-duplicated, in the user's order
    configs = [Configuration(n, frozenset(make(frozenset(ctx.model.expand(n, what))))) for n in names]  # type: ignore[arg-type]
    return f"{what}_accumulate_err_of_node", configs


def accumulate_error(
    ctx: Context,
    configs: Sequence[Configuration],
    *,
    prefix: str,
    metric: str = "cosine-similarity",
    samples: Sequence[int] = (0,),
) -> AccumulateErrorResult:
    """The error at every output of every node with calibration nodes (reference §2.3), per
    configuration: the mean over ``samples`` (indices into the context's data; NaNs skipped)."""
    (m,) = get_metrics(metric)
    per_tensor_only([m], "cumulative error curves")
    model = ctx.model
    # (a node that only computes a shape scores 1 whatever is quantized: not drawn)
    fixed = model.fixed_nodes()
    pairs = [(n, t) for n in model.sensitivity_nodes if n not in fixed for t in model.node_outputs[n]]
    # the model's floating-point outputs the curve does not reach (one a calibration node
    # produces, as ONNX Runtime's output QDQ pairs do; one after a float tail, as NNCF leaves the
    # nodes after the last calibration node) are its last points: a curve ends at the verdict's score
    shown = {t for _, t in pairs}
    producer = {q.output: q.name for q in model.quantizers} | {t: n for n, outs in model.node_outputs.items() for t in outs}
    pairs += [(producer.get(t, t), t) for t in model.outputs if t not in shown and t not in model.integer_outputs]
    tensors = [t for _, t in pairs]
    values = np.full((len(samples), len(configs), len(tensors)), np.nan)
    index = {t: j for j, t in enumerate(tensors)}
    for s, sample in enumerate(samples):

        def visit(t: str, ref: np.ndarray, actual: list[np.ndarray], s: int = s, sample: int = sample) -> None:
            for i, a in enumerate(actual):
                values[s, i, index[t]] = compare([m], ref, a, sample)[0]

        ctx.engine.trace(ctx.data[sample], [c.enabled for c in configs], tensors, visit)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point NaN on every sample stays NaN
        mean = np.nanmean(values, axis=0)
    curves = tuple(ErrorCurve(c.label, tuple(float(v) for v in mean[i]), len(c.enabled)) for i, c in enumerate(configs))
    return AccumulateErrorResult(prefix, m.name, tuple(tensors), tuple(n for n, _ in pairs), curves, len(samples))
