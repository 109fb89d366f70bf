"""Deployment check: does ONNX Runtime, as a user deploys the model, compute what ptqdebug analyses?

ptqdebug runs a calibrated model as ONNX defines it: a QuantizeLinear→DequantizeLinear pair is a
rounding of float values (its sessions turn ONNX Runtime's QDQ fusions off). Deployed with ONNX
Runtime's defaults, the same file runs differently: the fusions replace DQ→Conv→Q and the like by
integer kernels that requantize in their own way, and for float8 or int4 activations they delete
a Relu the quantizer does not clamp (see :func:`ptqdebug.formats.qdq.relu_wrongly_fused`). Users
of every simulator ask why its numbers and the device's disagree; this check answers it for ONNX
Runtime on this machine's execution providers.

Per model output and metric it reports three scores, averaged over samples: the deployed model
against the float model, the simulation (every calibration node as in the file) against the float
model, and the deployed model against the simulation. The deployment *agrees* when, for the first
metric at every output, the deployed model is at least as close to the simulation as the
simulation is to float: what separates them is smaller than the quantization error being
analysed (narrowly where it is more than half of it). A model ONNX Runtime cannot load or run
with its fusions on (a fused kernel it lacks) is a finding too (``failure``), not an error: the
analyses turn those fusions off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..engine.build import standalone_model
from ..engine.runtime import SessionError, deployed_session, ort_reason
from ..errors import ModelError, OptionError
from ..metrics import METRICS, Metric, compare, compare_sample, get_metrics
from .floatgap import FloatGap, float_gap
from .sensitivity import Progress, decode_float, encode_float

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["DeploymentCheck", "OutputAgreement", "check_deployment", "check_recommendation", "deployable", "first_departure"]


def _scores(d: Mapping[str, Any]) -> Mapping[str, float]:
    return MappingProxyType({k: decode_float(v) for k, v in d.items()})


@dataclass(frozen=True)
class OutputAgreement:
    """One model output: ``deployed`` and ``simulated`` against the float model, and ``between``
    (the deployed model against the simulation), each ``{metric: mean over samples}``."""

    output: str
    deployed: Mapping[str, float]
    simulated: Mapping[str, float]
    between: Mapping[str, float]

    def agrees(self, metric: Metric) -> bool:
        """Whether the deployed model is at least as close to the simulation as the simulation
        is to float (by ``metric``)."""
        return not metric.worse(self.between[metric.name], self.simulated[metric.name])

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, **{k: {m: encode_float(v) for m, v in getattr(self, k).items()}
                                          for k in ("deployed", "simulated", "between")}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputAgreement:
        return cls(d["output"], _scores(d["deployed"]), _scores(d["simulated"]), _scores(d["between"]))


@dataclass(frozen=True)
class DeploymentCheck:
    """The deployed model against the simulation at every floating-point model output."""

    metrics: tuple[str, ...]
    samples: int
    providers: tuple[str, ...]
    outputs: tuple[OutputAgreement, ...]
    relu_fused: tuple[str, ...] = ()  # calibration nodes whose Relu ONNX Runtime deletes (a known cause)
    failure: str | None = None  # why ONNX Runtime could not load or run the model as deployed (no outputs then)
    #: where the deployment departs from the simulation (when it does): the calibration node whose
    #: switching on, with those before it, first makes the two differ by half as much as in the
    #: whole model, and their output cosine then (see :func:`first_departure`)
    departure: tuple[str, float] | None = None
    #: weights stored as integers that cannot be switched off: "float" is the model with those weights
    weights_fixed: bool = False
    #: the calibrated graph against the float model itself, where one was given: "float" above is
    #: that graph with every calibration node off (:mod:`~ptqdebug.analyses.floatgap`)
    float_gap: FloatGap | None = None

    @property
    def agrees(self) -> bool:
        """Whether every output agrees by the first metric (see :meth:`OutputAgreement.agrees`)."""
        first = get_metrics(self.metrics[0])[0]
        return self.failure is None and all(o.agrees(first) for o in self.outputs)

    def summary(self) -> str:
        """One paragraph: the verdict and the three scores of the first metric (mean over outputs)."""
        if self.failure is not None:
            return (f"ONNX Runtime cannot run this model as deployed (default optimizations, {self.providers[0]}): "
                    f"{self.failure}. ptqdebug's analyses turn ONNX Runtime's QDQ fusions off and are not affected, but "
                    "the model as it stands will not deploy with ONNX Runtime's defaults.")
        m = self.metrics[0]
        mean = {k: float(np.mean([getattr(o, k)[m] for o in self.outputs])) for k in ("deployed", "simulated", "between")}
        where = f"ONNX Runtime as deployed (default optimizations, {self.providers[0]})"
        reference = "the model with its stored integer weights" if self.weights_fixed else "float"
        numbers = (f"{m} against {reference} {mean['deployed']:.6f} deployed, {mean['simulated']:.6f} simulated; "
                   f"deployed against simulated {mean['between']:.6f}")
        gap = (f" Careful: {self.float_gap.describe()}; \"float\" here is this model with every calibration node off."
               if self.float_gap is not None and self.float_gap.matters else "")
        share = self._narrow_share() if self.agrees else None
        if share is not None:
            return (f"{where} agrees with ptqdebug's simulation, narrowly: {numbers}; what separates them is up to "
                    f"{share:.0%} of quantization's own error at an output, so the analyses' rankings should hold, but "
                    f"a deployed score can differ from the simulated one by about that much.{gap}")
        if self.agrees:
            return (f"{where} agrees with ptqdebug's simulation: {numbers}, closer than quantization's own error, so "
                    f"the analyses describe the deployed model.{gap}")
        text = (f"{where} differs from ptqdebug's simulation at least as much as quantization changes the model: {numbers}. "
                "ptqdebug analyses the model as ONNX defines it; ONNX Runtime's rewrites of the quantized graph (fused "
                "integer kernels, removed operators) compute something else here")
        if self._same_size(mean["deployed"], mean["simulated"]):
            text += (", though with an error against float of the same size (within a tenth): the loss the analyses "
                     "measure holds, but the deployed model rounds differently, so single scores may not carry over exactly.")
        else:
            text += ", so the deployed accuracy can differ from every score of the analyses."
        if self.departure is not None:
            text += (f" Switching the calibration nodes on in graph order, the two first part at {self.departure[0]} "
                     f"(deployed against simulated cosine {self.departure[1]:.6f} with it and those before it on).")
        if self.relu_fused:
            n = len(self.relu_fused)
            names = ", ".join(self.relu_fused[:3]) + (", ..." if n > 3 else "")
            text += (f" A known cause: ONNX Runtime removes the Relu before {n} calibration node{'s' * (n != 1)} that "
                     f"keep{'s' * (n == 1)} negative values ({names}).")
        return text + gap

    def _same_size(self, deployed: float, simulated: float) -> bool:
        """Whether the deployed and simulated cosine similarities against float lose the same within
        a tenth (other metrics: not judged)."""
        if self.metrics[0] != "cosine-similarity" or not all(math.isfinite(v) for v in (deployed, simulated)):
            return False
        loss = 1.0 - min(deployed, simulated)
        return loss > 0 and abs(deployed - simulated) <= 0.1 * loss

    def _narrow_share(self) -> float | None:
        """The largest share, over the outputs, of the simulation's own loss against float by which
        the deployed model departs from the simulation (cosine similarity), where it is more than
        half at some output; else None (other metrics: not judged)."""
        m = self.metrics[0]
        if m != "cosine-similarity":
            return None
        shares = [(1 - o.between[m]) / (1 - o.simulated[m]) for o in self.outputs
                  if math.isfinite(o.between[m]) and math.isfinite(o.simulated[m]) and o.simulated[m] < 1]
        return max(shares) if shares and max(shares) > 0.5 else None

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "samples": self.samples, "providers": list(self.providers),
                "agrees": self.agrees, "narrow": self.agrees and self._narrow_share() is not None, "summary": self.summary(),
                "outputs": [o.to_dict() for o in self.outputs], "relu_fused": list(self.relu_fused),
                "failure": self.failure, "departure": list(self.departure) if self.departure is not None else None,
                "weights_fixed": self.weights_fixed,
                "float_gap": None if self.float_gap is None else self.float_gap.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentCheck:
        return cls(tuple(d["metrics"]), int(d["samples"]), tuple(d["providers"]),
                   tuple(OutputAgreement.from_dict(o) for o in d["outputs"]), tuple(d.get("relu_fused", ())),
                   d.get("failure"), (str(d["departure"][0]), float(d["departure"][1])) if d.get("departure") else None,
                   bool(d.get("weights_fixed", False)), FloatGap.from_dict(d["float_gap"]) if d.get("float_gap") else None)


def deployable(ctx: Context) -> str | onnx.ModelProto:
    """The model to deploy, or a one-line error where there is none ONNX Runtime can run."""
    if "horizon" in ctx.model.source_format:
        raise ModelError("the model holds Horizon calibration nodes (HzCalibration), which ONNX Runtime cannot run as "
                         "deployed; expected a QDQ model for the deployment check")
    if ctx.source is None:
        raise OptionError("the deployment check runs the calibrated model's file, but it was given as a loaded "
                          "CalibratedModel; expected a path or an onnx.ModelProto")
    return ctx.source


def check_deployment(ctx: Context, metrics: tuple[str, ...] | list[str] = ("cosine-similarity",),
                     data_num: int | None = None, progress: Progress | None = None, *,
                     configuration: frozenset[str] | None = None) -> DeploymentCheck:
    """Run the calibrated model as deployed and as simulated on the first ``data_num`` samples
    (all when None) and compare both with the float model at its floating-point outputs.

    With ``configuration`` (calibration nodes on), the model deployed is that configuration's,
    as :func:`~ptqdebug.engine.build.standalone_model` (and ``ptqdebug export``) writes it, and
    the simulation runs it; where the two part is then not searched (``departure`` None)."""
    chosen = get_metrics(list(metrics))
    model, engine = ctx.model, ctx.engine
    source = deployable(ctx) if configuration is None else standalone_model(model, configuration)
    on = model.calibrated_configuration if configuration is None else configuration
    samples = len(ctx.samples(data_num))
    outputs = list(model.outputs)
    names = [m.name for m in chosen]
    try:
        session = deployed_session(source if isinstance(source, str) else source.SerializeToString(), engine.providers,
                                   engine.threads)
    except SessionError as exc:  # the analyses may still run: their sessions turn the QDQ fusions off
        return DeploymentCheck(tuple(names), samples, tuple(engine.providers), (), model.relu_fused, exc.reason)
    sums: dict[str, np.ndarray] = {}
    for s in range(samples):
        ref = ctx.reference(s, outputs)
        simulated = engine.run(ref, on, outputs)
        try:
            deployed = dict(zip(outputs, session.run(outputs, dict(ctx.data[s]))))
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types when a fused kernel fails
            return DeploymentCheck(tuple(names), samples, tuple(engine.providers), (), model.relu_fused,
                                   f"running sample {s} failed ({ort_reason(exc)})")
        # every output is compared (a metric over all outputs sees them all, as in the sweeps); the
        # floating-point ones get a row
        rows = np.stack([compare_sample(chosen, outputs, ref.values, deployed, s),
                         compare_sample(chosen, outputs, ref.values, simulated, s),
                         compare_sample(chosen, outputs, simulated, deployed, s)], axis=1)  # [output, kind, metric]
        for t, row in zip(outputs, rows):
            if ref[t].dtype.kind == "f":
                sums[t] = sums.get(t, 0.0) + row
        if progress is not None:
            progress(s + 1, samples)
    agreements = tuple(OutputAgreement(t, *(MappingProxyType(dict(zip(names, row / samples))) for row in sums[t]))
                       for t in outputs if t in sums)
    if not agreements:
        raise ModelError("none of the model's outputs is a floating-point tensor; expected at least one to compare")
    check = DeploymentCheck(tuple(names), samples, tuple(engine.providers), agreements, model.relu_fused,
                            weights_fixed=bool(model.fixed_quantizers),
                            float_gap=float_gap(ctx, data_num) if configuration is None else None)
    if check.agrees or configuration is not None:
        return check
    return replace(check, departure=first_departure(ctx, samples, [o.output for o in agreements]))


def check_recommendation(ctx: Context, nodes: Sequence[str], qtype: str = "float32",
                         metrics: tuple[str, ...] | list[str] = ("cosine-similarity",), data_num: int | None = None,
                         progress: Progress | None = None) -> DeploymentCheck:
    """:func:`check_deployment` of the model that keeps ``nodes`` in higher precision (``qtype``:
    float, or their activations in int16), as ``ptqdebug export`` writes it: partial quantization
    scored it as simulated; this says whether ONNX Runtime deploys it the same (an int16 fix of a
    classifier scored 0.996395 and deployed at 0.980479)."""
    from .partial import higher_precision

    deployable(ctx)  # (a Horizon model has nothing ONNX Runtime deploys)
    scoring, configuration = higher_precision(ctx, nodes, qtype)
    model = scoring.model  # integer-stored weights stay on, as export keeps them
    on = configuration(nodes) | (model.calibrated_configuration & model.fixed_quantizers)
    return check_deployment(scoring, metrics, data_num, progress, configuration=on)


def first_departure(ctx: Context, samples: int, outputs: Sequence[str]) -> tuple[str, float] | None:
    """Where deployment and simulation part: a binary search over the calibrated model's calibration
    nodes in graph order for the shortest prefix whose configuration, deployed (written by
    :func:`~ptqdebug.engine.build.standalone_model`, run with ONNX Runtime's defaults), differs from
    its simulation by at least half as much as the whole model's does (``1 - cosine`` at
    ``outputs``, mean over samples). About log2(N) sessions; ``None`` where the model itself agrees."""
    model, engine = ctx.model, ctx.engine
    cos = METRICS["cosine-similarity"]
    order = [q.name for q in model.quantizers if q.name in model.calibrated_configuration]
    fixed = model.fixed_quantizers

    def gap(m: int) -> float:
        on = frozenset(order[:m]) | fixed
        session = deployed_session(standalone_model(model, on).SerializeToString(), engine.providers, engine.threads)
        values = []
        for s in range(samples):
            simulated = engine.run(ctx.reference(s, outputs), on, outputs)
            deployed = session.run(list(outputs), dict(ctx.data[s]))
            values.append(np.mean([1.0 - compare([cos], simulated[t], d)[0] for t, d in zip(outputs, deployed)]))
        return float(np.mean(values))

    target = gap(len(order)) / 2
    if not target > 0:
        return None
    lo, hi, at_hi = 0, len(order), 2 * target  # gap(lo) < target <= gap(hi), assumed along the way
    while hi - lo > 1:
        mid = (lo + hi) // 2
        g = gap(mid)
        if g >= target:
            hi, at_hi = mid, g
        else:
            lo = mid
    return order[hi - 1], 1.0 - at_hi

