"""The verdict: is the loss caused by weights, activations or both, and what to keep in higher precision.

The cause comes from three configurations scored at the model outputs (cosine similarity against
float): the calibrated model, only weights quantized, only activations quantized. With
``loss = 1 - cosine``: no real loss below 1e-4; otherwise the side whose loss is at least twice the
other's is the cause, else both. Where weights are stored as integers and no float model was
given, they stay quantized in every configuration, the reference included: the cause is then
``"unknown"`` and the summary says that only the activations were measured. Recommendations come
from the partial quantization step: the sensitive nodes in order, each with the score once it and
the ones before it are un-quantized (up to the last that leaves some calibration node on), then,
where int16 was scored, the nodes float left out (``left_out`` rows, scored in int16 only); the
summary names the shortest prefix that recovers half of the best prefix's gain, and the best.

Everything rests on the first ``data_num`` samples (the original's default is one). Where the data
holds more, the calibrated model is also scored on the first :data:`CHECK_SAMPLES`, and the summary
says so when they tell another story (one sample can show no loss where the others do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..metrics import METRICS
from .floatgap import FloatGap, float_gap
from .lost import LostChannels, lost_channels
from .partial import PartialQuantizationResult, best_prefix, prune
from .rangefit import RangeFit, range_fits
from .sensitivity import score_configurations

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context

__all__ = ["Recommendation", "Verdict", "verdict"]

NEGLIGIBLE_LOSS = 1e-4
DOMINANCE = 2.0
#: nodes named in the summary sentence; beyond that it counts them
NAMED_IN_SUMMARY = 5
#: recommended nodes whose activation ranges the summary explains (and at most this many sentences)
WHY_NODES = 2
#: samples the calibrated model is also scored on when the verdict uses fewer and the data has more
CHECK_SAMPLES = 8


@dataclass(frozen=True)
class Recommendation:
    """One row of "what to keep in higher precision": ``node`` (an ordinary node, a calibration
    node no node reads, or what the user named) and the ``calibration_nodes`` keeping it switches
    off (weights stored as integers, which stay on, are not among them), in partial
    quantization's order. A ``left_out`` row is scored in int16 only: with it too in float, no
    calibration node would be on (:attr:`PartialQuantizationResult.left_out`), so its
    ``score_after`` and ``recovery`` are NaN."""

    node: str
    calibration_nodes: tuple[str, ...]
    score_after: float  # with this node and the ones before it in float
    recovery: float
    score_int16: float = math.nan  # with their activations in int16 instead (NaN: not computed)
    left_out: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the run concludes: ``cause`` (``"weight"``, ``"activation"``, ``"both"``, ``"none"``,
    or ``"unknown"`` where weights are stored as integers and no float model was given, so that
    ``scores`` has no ``only_weight``) from ``scores`` (``calibrated``, ``only_weight``, ``only_activation``, by
    ``metric``), the ``recommendations`` behind :attr:`keep_float` / :attr:`keep_int16`, and the
    ``summary`` sentence printed and shown first in the report."""

    metric: str
    cause: str
    scores: Mapping[str, float]
    summary: str
    recommendations: tuple[Recommendation, ...]
    #: (k, the calibrated model's score on the first k samples) where the data holds more samples
    #: than the verdict used, else None
    check: tuple[int, float] | None = None
    #: per qtype ("float32", "int16"): the best prefix without the nodes it does not need, and its
    #: score (:func:`~ptqdebug.analyses.partial.prune`); absent: the best prefix as it is
    kept: Mapping[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)
    #: output channels a calibration node rounds to 0 entirely, which the scores can hide
    #: (:mod:`ptqdebug.analyses.lost`): the first thing to fix where there are any
    lost: tuple[LostChannels, ...] = ()
    #: how the recommended nodes' activation ranges fit their values (:mod:`ptqdebug.analyses.rangefit`)
    fits: tuple[RangeFit, ...] = ()
    #: the calibrated graph against the float model itself, where one was given (:mod:`~ptqdebug.analyses.floatgap`)
    float_gap: FloatGap | None = None

    @property
    def keep_float(self) -> tuple[str, ...]:
        """What to keep in float, with ``ptqdebug export`` or ``ptqdebug calibrate --float-nodes``
        (:func:`~ptqdebug.analyses.partial.apply_commands`): the recommended nodes up to the best
        score, less those that add nothing to it; empty when nothing is recommended or
        un-quantizing recovers nothing."""
        if "float32" in self.kept:
            return self.kept["float32"][0]
        recs = self.recommendations
        return best_prefix([r.node for r in recs], [r.score_after for r in recs], self.scores.get("calibrated", math.inf),
                           self.metric)

    @property
    def keep_int16(self) -> tuple[str, ...]:
        """As :attr:`keep_float`, for the nodes' activations in int16 (``ptqdebug export
        --int16-nodes``); empty when int16 was not scored or recovers nothing."""
        if "int16" in self.kept:
            return self.kept["int16"][0]
        recs = [r for r in self.recommendations if not math.isnan(r.score_int16)]
        if len(recs) != len(self.recommendations):
            return ()
        return best_prefix([r.node for r in recs], [r.score_int16 for r in recs], self.scores.get("calibrated", math.inf),
                           self.metric)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "cause": self.cause, "scores": dict(self.scores), "summary": self.summary,
                "recommendations": [{"node": r.node, "calibration_nodes": list(r.calibration_nodes),
                                     "score_after": r.score_after, "recovery": r.recovery, "score_int16": r.score_int16,
                                     "left_out": r.left_out}
                                    for r in self.recommendations],
                "keep_float": list(self.keep_float), "keep_int16": list(self.keep_int16),
                "kept": {q: {"nodes": list(nodes), "score": score} for q, (nodes, score) in self.kept.items()},
                "check": None if self.check is None else {"samples": self.check[0], "score": self.check[1]},
                "lost": [asdict(x) for x in self.lost], "fits": [asdict(x) for x in self.fits],
                "float_gap": None if self.float_gap is None else self.float_gap.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        recs = tuple(Recommendation(r["node"], tuple(r["calibration_nodes"]), float(r["score_after"]), float(r["recovery"]),
                                    float(r.get("score_int16", math.nan)), bool(r.get("left_out", False)))
                     for r in d["recommendations"])
        check = d.get("check")
        kept = {q: (tuple(k["nodes"]), float(k["score"])) for q, k in d.get("kept", {}).items()}
        gap = d.get("float_gap")
        return cls(d["metric"], d["cause"], {k: float(v) for k, v in d["scores"].items()}, d["summary"], recs,
                   None if check is None else (int(check["samples"]), float(check["score"])), kept,
                   tuple(LostChannels(**x) for x in d.get("lost", ())), tuple(RangeFit(**x) for x in d.get("fits", ())),
                   None if gap is None else FloatGap.from_dict(gap))


def _cause(calibrated: float, only_w: float, only_a: float) -> str:
    loss_c, loss_w, loss_a = 1 - calibrated, 1 - only_w, 1 - only_a
    if not loss_c > NEGLIGIBLE_LOSS and not max(loss_w, loss_a) > NEGLIGIBLE_LOSS:
        return "none"
    if loss_a >= DOMINANCE * loss_w:
        return "activation"
    if loss_w >= DOMINANCE * loss_a:
        return "weight"
    return "both"


def verdict(ctx: Context, partial: PartialQuantizationResult | None = None, data_num: int | None = 1,
            partial_int16: PartialQuantizationResult | None = None, ranking: Sequence[float] = (),
            lost: Sequence[LostChannels] | None = None) -> Verdict:
    """Cause and recommendations; ``partial_int16`` (the same nodes, ``qtype="int16"``) adds
    each recommendation's score with the activations in int16 instead of float; ``ranking`` (the
    node sweep's cosine similarities at the outputs, most sensitive first) lets the summary
    suggest a pick threshold where none was reached; ``lost``: :func:`lost_channels` on the same
    samples, where the caller has it already."""
    model = ctx.model
    calibrated = model.calibrated_configuration
    weights = frozenset(q.name for q in model.weight_quantizers) & calibrated
    acts = frozenset(q.name for q in model.activation_quantizers) & calibrated
    cos = METRICS["cosine-similarity"]
    # the calibrated model is usually partial quantization's baseline already: the context's
    # score store (Context.remember_score) hands it back instead of running it again
    scores, _ = score_configurations(ctx, [calibrated, weights, acts], metrics=[cos], compare_at=model.outputs, data_num=data_num)
    c, w, a = (float(v) for v in scores[:, 0])
    # weights stored as integers, with no float model: they stay quantized in every configuration,
    # the "float" reference included, so what they cost is not measured
    weights_fixed = bool(model.fixed_quantizers)
    cause = "unknown" if weights_fixed else _cause(c, w, a)
    recs: list[Recommendation] = []
    negligible = cause == "none" or (cause == "unknown" and not 1 - c > NEGLIGIBLE_LOSS)
    if partial is not None and not negligible:
        wider = partial_int16.partial if partial_int16 is not None else [math.nan] * len(partial.nodes)
        def switched(node: str) -> tuple[str, ...]:  # (weights stored as integers stay on: not listed)
            return tuple(q for q in model.expand(node) if q not in model.fixed_quantizers)

        for node, after, gain, after16 in zip(partial.nodes, partial.partial, partial.recovery(), wider):
            recs.append(Recommendation(node, switched(node), after, gain, after16))
        if partial_int16 is not None:  # the nodes float leaves out, where int16 scored them after the others
            for node, after16 in zip(partial.left_out, wider[len(partial.nodes):]):
                recs.append(Recommendation(node, switched(node), math.nan, math.nan, after16, left_out=True))
    kept: dict[str, tuple[tuple[str, ...], float]] = {}
    if recs:  # (with int16 scored, the nodes float leaves out are rows too)
        for result in (partial, partial_int16):
            if result is not None and result.best_prefix():
                kept[result.qtype] = prune(ctx, result, data_num)
    threshold = partial.pick_threshold if partial is not None else None
    left_out = partial.left_out if partial is not None and not negligible else ()
    summary = _summary(cause, c, w, a, recs, kept, threshold, left_out, model.fixed_reason if weights_fixed else None, ranking)
    if negligible and partial is not None and (partial.nodes or partial.left_out):  # picked or named all the same
        n = len(partial.nodes) + len(partial.left_out)
        summary += f" Partial quantization's table still lists {n} sensitive node{'s' * (n > 1)}, for reference."
    lost = tuple(lost_channels(ctx, range(len(ctx.samples(data_num)))) if lost is None else lost)
    # the recommended nodes' activation ranges: the "why" (not for Horizon models: symmetric by hardware)
    fits = () if "horizon" in model.source_format else range_fits(
        ctx, [q for r in recs for q in r.calibration_nodes], range(len(ctx.samples(data_num))))
    gap = float_gap(ctx, data_num)
    summary += _why_sentence(recs, fits) + _blind_sentence(ctx, data_num) + _lost_sentence(lost) + _gap_sentence(gap)
    used, more = len(ctx.samples(data_num)), min(len(ctx.data), CHECK_SAMPLES)
    check = None
    if more > used:  # scores of the first samples are reused where they ran one at a time
        wide, _ = score_configurations(ctx, [calibrated], metrics=[cos], compare_at=model.outputs, data_num=more)
        check = (more, float(wide[0, 0]))
        summary += _check_sentence(c, used, *check)
    measured = {"calibrated": c, "only_activation": a} if weights_fixed else {"calibrated": c, "only_weight": w, "only_activation": a}
    return Verdict(cos.name, cause, measured, summary, tuple(recs), check, kept, lost, fits, gap)


def _blind_sentence(ctx: Context, data_num: int | None) -> str:
    """A warning about outputs holding one value per sample, whose cosine similarity is 1 whatever
    the error (unless the sign flips), such as a voice-activity probability."""
    outputs = [o for o in ctx.model.outputs if o not in ctx.model.integer_outputs]
    ref = ctx.reference(ctx.sample_groups(data_num)[0][0], outputs)
    blind = [t for t in outputs if ref[t].size == 1]
    if not blind:
        return ""
    if len(blind) == len(outputs):
        return (f" The output{'s' * (len(blind) > 1)} hold{'s' * (len(blind) == 1)} one value per sample, whose cosine "
                "similarity is 1 whatever the error (unless the sign flips): judge this model with mse or sqnr, or "
                "your own metric (metrics=, --ns_metrics).")
    names = ", ".join(repr(t) for t in blind[:3]) + (", ..." if len(blind) > 3 else "")
    return (f" Output{'s' * (len(blind) > 1)} {names} hold{'s' * (len(blind) == 1)} one value per sample, whose cosine "
            "similarity is 1 whatever the error (unless the sign flips): these scores rest on the other outputs; judge "
            f"{'it' if len(blind) == 1 else 'them'} with mse or sqnr, or your own metric (metrics=, --ns_metrics).")


def _why_sentence(recs: Sequence[Recommendation], fits: Sequence[RangeFit]) -> str:
    """Why the first recommended nodes lose, where their activations' ranges say it (see
    :mod:`ptqdebug.analyses.rangefit`): values clipped, a symmetric range on one-sided values, or
    most values rounded to 0."""
    first = {q for r in recs[:WHY_NODES] for q in r.calibration_nodes}
    advice = [a for f in fits if f.quantizer in first and (a := f.advice())]
    return "".join(f" Why: {a}." for a in advice[:WHY_NODES])


def _lost_sentence(lost: Sequence[LostChannels]) -> str:
    """A warning about output channels a calibration node rounds to 0 entirely (see
    :mod:`ptqdebug.analyses.lost`), which a score over the whole output can hide."""
    out = ""
    for x in lost:
        out += (f" Careful: {x.describe()}, which a score over the whole output hides where its other channels are "
                "larger. If they carry "
                "information (class scores beside box coordinates), keep it in float (export --float-nodes) or in int16 "
                "(--int16-nodes), and judge with your task's metric.")
    return out


def _gap_sentence(gap: FloatGap | None) -> str:
    """A warning where the calibrated graph in float is not the float model (see
    :mod:`ptqdebug.analyses.floatgap`): the scores above leave that part of the loss out."""
    if gap is None or not gap.matters:
        return ""
    return (f" Careful: {gap.describe()}. The quantizer changed more than calibration nodes; the scores here measure "
            "quantization against the changed graph, and no calibration node switches the change off: to recover that "
            "part, quantize without it (keep the original operators).")


def _check_sentence(c: float, used: int, more: int, wide: float) -> str:
    """A warning when the calibrated model's loss on more samples differs from the one judged
    (by more than half of the larger one, and more than a negligible loss)."""
    loss, wide_loss = 1 - c, 1 - wide
    if abs(wide_loss - loss) <= max(NEGLIGIBLE_LOSS, 0.5 * max(loss, wide_loss)) and not math.isnan(wide):
        return ""
    on = "this sample does" if used == 1 else f"these {used} samples do"
    return (f" But on the first {more} samples the calibrated model scores {wide:.6f}: {on} not represent the data; "
            "judge on more (data_num='all', --data_num all).")


def _summary(cause: str, c: float, w: float, a: float, recs: list[Recommendation],
             kept: Mapping[str, tuple[tuple[str, ...], float]] | None = None, threshold: float | None = None,
             left_out: Sequence[str] = (), fixed_reason: str | None = None, ranking: Sequence[float] = ()) -> str:
    """The verdict's sentences; ``left_out``: sensitive nodes after ``recs`` that partial
    quantization left out (with them too in float, no calibration node would be on that can be
    switched off: the float model, or where weights stay as stored, ``fixed_reason`` saying why,
    the reference)."""
    end = ("every calibration node that can be: that is the reference (weights as stored)" if fixed_reason
           else "every calibration node: that is the float model")
    head = f"Quantization brings the output cosine similarity to {c:.6f} (float = 1)"
    if cause == "none":
        return head + ": the loss is negligible; nothing needs higher precision."
    if cause == "unknown":
        text = (f"Quantizing the activations brings the output cosine similarity to {c:.6f}, against the model with its "
                f"weights as stored (integers): {fixed_reason}, so these scores leave out what weight quantization costs.")
        if not 1 - c > NEGLIGIBLE_LOSS:
            return text + " The activations' loss is negligible."
    else:
        who = {"activation": "Activation quantization causes most of it", "weight": "Weight quantization causes most of it",
               "both": "Weights and activations contribute together"}[cause]
        cancel = "the whole model's score: the two errors partly cancel each other"
        after_w = f" (below {cancel})" if w < c <= a else ""
        after_a = f" (below {cancel})" if a < c <= w else f" (both below {cancel})" if max(w, a) < c else ""
        text = f"{head}. {who}: only weights quantized gives {w:.6f}{after_w}, only activations {a:.6f}{after_a}."
    # the best prefix, and the shortest one that recovers half as much (often far shorter)
    rows, recs = recs, [r for r in recs if not r.left_out]  # every row; the rows scored in float
    best = max(range(len(recs)), key=lambda i: recs[i].score_after) if recs else -1
    gain = recs[best].score_after - c if recs else math.nan
    kept = kept or {}
    keep: tuple[str, ...] = ()
    if not recs and left_out:
        text += (f" Keeping the sensitive {'node' if len(left_out) == 1 else 'nodes'}, {_listed(left_out)}, in float "
                 f"would switch off {end}, not a partial quantization.")
    elif not recs and threshold is not None and c > threshold:
        text += (f" No single node scores at or below the pick threshold {threshold:g}, which the whole model is above "
                 "too: raise the threshold (pick_threshold, -pt)" + _raised(ranking, threshold)
                 + " to see which nodes to keep in higher precision.")
    elif not recs:
        text += " No single node scores at or below the pick threshold: the loss is spread over many nodes."
    elif gain > 0:
        half = next(i for i in range(best + 1) if recs[i].score_after - c >= gain / 2)
        text += f" Keeping {_first(recs, half)} in higher precision brings it to {recs[half].score_after:.6f}"
        if half < best:
            which = f"all {len(recs)}" if best + 1 == len(recs) else f"the first {best + 1} of the {len(recs)}"
            text += f" (at least half the best recovery); the best prefix, {recs[best].score_after:.6f}, keeps {which} sensitive nodes"
        text += "."
        if left_out:
            text += f" Keeping {_listed(left_out)} in float too would switch off {end}, not a recommendation."
        keep = tuple(r.node for r in recs[:best + 1])
        if "float32" in kept and len(kept["float32"][0]) < len(keep):
            dropped = [n for n in keep if n not in kept["float32"][0]]
            names = ", ".join(dropped[:NAMED_IN_SUMMARY]) + (", …" if len(dropped) > NAMED_IN_SUMMARY else "")
            text += (f" Leaving {len(dropped)} of those quantized scores as well or better ({names}): the other "
                     f"{len(kept['float32'][0])} bring it to {kept['float32'][1]:.6f}.")
            keep = kept["float32"][0]
    elif any(r.recovery > 0 for r in recs):  # some nodes help, on top of others that cost more
        text += (f" Keeping the sensitive nodes in float recovers nothing: in their order every prefix scores below the "
                 f"calibrated model (at best {recs[best].score_after:.6f}, with the first {best + 1}), whose errors "
                 "partly cancel each other.")
    elif recs[best].score_after < c:  # every prefix makes it worse: say so, it is not "no change"
        text += (f" Keeping the sensitive node, {recs[0].node}, in float makes it worse: {recs[0].score_after:.6f}."
                 if len(recs) == 1 else
                 f" Keeping the sensitive nodes in float makes it worse: every prefix of the {len(recs)} scores below "
                 f"the calibrated model (at best {recs[best].score_after:.6f}, with the first {best + 1}).")
    else:
        text += (f" Keeping the sensitive node, {recs[0].node}, in float recovers nothing." if len(recs) == 1 else
                 f" Keeping any of the {len(recs)} sensitive nodes in float recovers nothing.")
    scored16 = [r.score_int16 for r in rows]
    if rows and not any(math.isnan(v) for v in scored16):  # int16 was scored: what Verdict.keep_int16 recommends
        if "int16" in kept:
            keep16, after16 = kept["int16"]
        else:
            keep16 = best_prefix([r.node for r in rows], scored16, c)
            after16 = scored16[len(keep16) - 1] if keep16 else c
        if not keep16:
            text += " Their activations in int16 instead of float recover nothing."
        elif keep16 == keep:
            text += f" With their activations in int16 instead of float, the same nodes bring it to {after16:.6f}."
        else:
            extra = [n for n in keep16 if n not in keep]
            which = (f"keeping {_listed(keep16)}" if not keep else
                     f"the same nodes and {_listed(extra)}" if set(keep) <= set(keep16) else
                     f"another selection, {_listed(keep16)},")
            verb = "bring" if which.startswith("the same") else "brings"
            text += f" With their activations in int16 instead of float, {which} {verb} it to {after16:.6f}."
    return text


def _raised(ranking: Sequence[float], threshold: float, count: int = 5) -> str:
    """A pick threshold that takes about the ``count`` most sensitive nodes of ``ranking`` (node
    sweep cosine similarities, most sensitive first), as words for the summary, or nothing."""
    finite = [v for v in ranking if math.isfinite(v)]
    if not finite:
        return ""
    k = min(count, len(finite))
    t = math.ceil(finite[k - 1] * 1e6) / 1e6  # (6 decimals, at or above the k-th score)
    return f", e.g. -pt {t:.6f} for about the {k} most sensitive nodes," if threshold < t < 1 else ""


def _first(recs: list[Recommendation], last: int) -> str:
    """The nodes up to index ``last``: named, or counted past :data:`NAMED_IN_SUMMARY` (a
    sentence, not a table: the report lists them all)."""
    return _listed([r.node for r in recs[: last + 1]], "the first ")


def _listed(nodes: Sequence[str], which: str = "") -> str:
    if len(nodes) <= NAMED_IN_SUMMARY:
        return ", ".join(nodes)
    return f"{which}{len(nodes)} sensitive nodes ({', '.join(nodes[:NAMED_IN_SUMMARY])}, …)"
