"""Node sensitivity: the error at the compared outputs when only one candidate is quantized.

For each candidate (an ordinary node's calibration nodes, one weight or one activation
calibration node, or a user group), everything else stays float; the candidate's outputs are
compared with the float outputs by each metric, per sample and per compared tensor, then averaged
over samples and over tensors (reference §3.3). Entries are ranked worst first by the first
metric; a candidate whose quantization makes a compared value NaN or inf ranks first of all and
is flagged ``nonfinite``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import Metric, compare_sample, get_metrics, known_metric, portable_refs
from .candidates import Candidate

if TYPE_CHECKING:  # the engine (ONNX Runtime) is not needed to read or draw a result
    from ..context import Context

__all__ = ["Progress", "SensitivityEntry", "SensitivityResult", "averaged_tensors", "configuration_values", "decode_float",
           "encode_float", "node_sensitivity", "rank", "score_configurations"]

#: Called as ``progress(done, total)`` after each unit of work.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SensitivityEntry:
    """One candidate's scores.

    ``node`` is, for a calibration node, the ordinary nodes reading it (joined with ``;``);
    ``threshold`` and ``bits`` describe an activation calibration node.
    """

    name: str
    quantizers: tuple[str, ...]
    scores: Mapping[str, float]
    nonfinite: bool = False
    node: str = ""
    threshold: float | None = None
    bits: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quantizers": list(self.quantizers),
            "scores": {k: encode_float(v) for k, v in self.scores.items()},
            "nonfinite": self.nonfinite,
            "node": self.node,
            "threshold": encode_float(self.threshold) if self.threshold is not None else None,
            "bits": self.bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SensitivityEntry:
        return cls(
            name=d["name"],
            quantizers=tuple(d["quantizers"]),
            scores=MappingProxyType({k: decode_float(v) for k, v in d["scores"].items()}),
            nonfinite=bool(d.get("nonfinite", False)),
            node=d.get("node", ""),
            threshold=decode_float(d["threshold"]) if d.get("threshold") is not None else None,
            bits=d.get("bits"),
        )


@dataclass(frozen=True, repr=False)
class SensitivityResult:
    """A ranked sweep: ``entries`` worst first by ``metrics[0]``."""

    node_type: str
    metrics: tuple[str, ...]
    entries: tuple[SensitivityEntry, ...]
    compared: tuple[str, ...]
    samples: int

    def __repr__(self) -> str:  # entries run to thousands on real models
        first = self.metrics[0]
        top = ", ".join(f"{e.name!r}: {e.scores[first]:.6g}" for e in self.entries[:3])
        return (f"SensitivityResult(node_type={self.node_type!r}, metrics={list(self.metrics)}, samples={self.samples}, "
                f"{len(self.entries)} entries, worst: {{{top}{', ...' if len(self.entries) > 3 else ''}}})")

    def as_mapping(self) -> dict[str, dict[str, float]]:
        """``{name: {metric: value}}`` in ranked order: what ``get_sensitivity_of_nodes`` returns."""
        return {e.name: dict(e.scores) for e in self.entries}

    def top(self, k: int) -> tuple[SensitivityEntry, ...]:
        return self.entries[:k]

    def to_dict(self) -> dict[str, Any]:
        known = {m: known_metric(m) for m in self.metrics}
        return {
            "node_type": self.node_type,
            "metrics": list(self.metrics),
            # for readers without the metrics' code (a report rendered from results.json)
            "higher_is_better": {m: k.higher_is_better for m, k in known.items() if k is not None},
            "compared": list(self.compared),
            "samples": self.samples,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SensitivityResult:
        return cls(
            node_type=d["node_type"],
            metrics=tuple(d["metrics"]),
            entries=tuple(SensitivityEntry.from_dict(e) for e in d["entries"]),
            compared=tuple(d["compared"]),
            samples=int(d["samples"]),
        )


def encode_float(x: float) -> float | str:
    """A float for JSON: non-finite values as the strings "nan", "inf", "-inf" (:func:`decode_float` reads them)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


def decode_float(x: float | str) -> float:
    return float(x)


def rank(entries: Sequence[SensitivityEntry], metric: Metric, *then: Metric) -> list[SensitivityEntry]:
    """Worst first: flagged non-finite entries, then by ``metric``; ties by the ``then`` metrics
    in turn (a score like top-1 agreement ties often), then in their order."""
    return sorted(entries, key=lambda e: (not e.nonfinite, *(m.badness(e.scores[m.name]) for m in (metric, *then))))


def score_configurations(
    ctx: Context,
    configurations: Sequence[Collection[str]],
    *,
    metrics: Sequence[Metric],
    compare_at: Sequence[str],
    data_num: int | None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each configuration against the float model (reference §3.3 step 6).

    Returns ``(scores, nonfinite)``: ``scores[c, m]`` is metric ``m`` of configuration ``c``
    averaged over samples, then over the compared tensors but the model's integer outputs
    (:attr:`~ptqdebug.model.CalibratedModel.integer_outputs`: a copy of the token ids scores 1
    whatever happens; all tensors where every one is such); NaN (and ``nonfinite[c]`` True) when a
    compared value became NaN/inf. See :func:`configuration_values` for how they are computed.
    """
    values = configuration_values(ctx, configurations, metrics=metrics, compare_at=compare_at, data_num=data_num,
                                  progress=progress)
    nonfinite = np.isnan(values).any(axis=(1, 2, 3))
    scores = values[:, averaged_tensors(ctx, compare_at)].mean(axis=3).mean(axis=1)
    scores[nonfinite] = np.nan
    return scores, nonfinite


def averaged_tensors(ctx: Context, compare_at: Sequence[str]) -> list[int]:
    """The positions in ``compare_at`` a score averages over: all but the model's integer outputs
    (all of them where every one is such)."""
    return [t for t, name in enumerate(compare_at) if name not in ctx.model.integer_outputs] or list(range(len(compare_at)))


def configuration_values(
    ctx: Context,
    configurations: Sequence[Collection[str]],
    *,
    metrics: Sequence[Metric],
    compare_at: Sequence[str],
    data_num: int | None,
    progress: Progress | None = None,
) -> np.ndarray:
    """``values[c, t, m, s]``: metric ``m`` at compared tensor ``t`` of configuration ``c`` on
    sample ``s``. Samples stream a group at a time: memory does not grow with them.

    Exact shortcuts: a configuration this context already scored on the same samples, tensors
    and metrics is not run again (:meth:`Context.remember_score`; ``runall``'s partial
    quantization re-scores nodes of the node sweep), and, in this process, a run starts from the
    previous configuration's run instead of the float one where the two differ later in the
    graph (:meth:`Engine.advance`; partial quantization switches one more node off each time).
    The rest is shared with helper processes or Ray tasks where the context has them
    (:mod:`ptqdebug.parallel`).
    """
    groups = ctx.score_groups(data_num, compare_at)
    names = tuple(m.key for m in metrics)
    values = np.full((len(configurations), len(compare_at), len(metrics), len(ctx.samples(data_num))), np.nan)
    missing: dict[int, list[int]] = {}  # configuration -> the groups it still needs
    first: dict[frozenset[str], int] = {}
    same: dict[int, int] = {}  # configuration -> an earlier one with the same calibration nodes on (a
    # node sweep's Shape and its tensor's reader: 125 of ViT-S's 665 candidates), copied, not run
    for c, enabled in enumerate(configurations):
        if (c0 := first.setdefault(frozenset(enabled), c)) != c:
            same[c] = c0
            continue
        for g, group in enumerate(groups):
            got = ctx.scored.get(_score_key(enabled, group, compare_at, names))
            if got is None:
                missing.setdefault(c, []).append(g)
            else:
                values[c][..., group] = got
    todo = sorted(missing)
    elsewhere = (ctx.workers > 1 or ctx.executor == "ray") and len(todo) > 1
    if elsewhere:  # helpers score whole configurations
        missing = {c: list(range(len(groups))) for c in todo}
    total = len(groups) * len(configurations)
    reused = total - sum(len(gs) for gs in missing.values())
    report = None if progress is None else (lambda done, _: progress(reused + done, total))
    if reused and progress is not None:
        progress(reused, total)
    if elsewhere:
        from ..parallel import values_in_parallel

        values[todo] = values_in_parallel(ctx, [configurations[c] for c in todo], metrics=portable_refs(metrics),
                                          compare_at=compare_at, data_num=data_num, workers=ctx.workers, executor=ctx.executor, progress=report)
    else:
        _values_here(ctx, configurations, missing, groups, metrics, compare_at, values, report)
    for c, gs in missing.items():
        for g in gs:
            ctx.remember_score(_score_key(configurations[c], groups[g], compare_at, names), values[c][..., groups[g]].copy())
    for c, c0 in same.items():
        values[c] = values[c0]
    return values


def _values_here(ctx: Context, configurations: Sequence[Collection[str]], missing: Mapping[int, list[int]],
                 groups: Sequence[list[int]], metrics: Sequence[Metric], compare_at: Sequence[str],
                 values: np.ndarray, progress: Progress | None) -> None:
    """Fill ``values`` for the ``missing`` (configuration, group) pairs in this process."""
    done, total = 0, sum(len(gs) for gs in missing.values())
    for g, group in enumerate(groups):  # several samples in one run when the model's batch dimension allows
        todo = [c for c, gs in missing.items() if g in gs]
        if not todo:
            continue
        ref = ctx.reference_group(group, compare_at)
        edges = np.cumsum([0, *ctx.batch_sizes(group)]) if len(group) > 1 else None
        last = ref  # the previous run: the next configuration starts from it where that is later
        for c in todo:
            enabled = configurations[c]
            start = last if ctx.engine.start(last, enabled) > ctx.engine.start(ref, enabled) else ref
            last = ctx.engine.advance(start, enabled, compare_at)
            for k, s in enumerate(group):
                rows = None if edges is None else slice(edges[k], edges[k + 1])
                values[c, :, :, s] = compare_sample(metrics, compare_at, ref.values, last.values, s, rows)
            done += 1
            if progress is not None:
                progress(done, total)


def _score_key(enabled: Collection[str], group: Sequence[int], compare_at: Sequence[str], metrics: Sequence[str]) -> bytes:
    """What a configuration's per-sample scores depend on within one context (a digest: a
    configuration can name a thousand calibration nodes)."""
    parts = ("\0".join(sorted(enabled)), ",".join(map(str, group)), "\0".join(compare_at), ",".join(metrics))
    return hashlib.blake2b("\1".join(parts).encode(), digest_size=20).digest()


def node_sensitivity(
    ctx: Context,
    candidates: Sequence[Candidate],
    *,
    metrics: str | Sequence[str] = "cosine-similarity",
    compare_at: Sequence[str] | None = None,
    node_type: str = "node",
    data_num: int | None = 1,
    progress: Progress | None = None,
) -> SensitivityResult:
    """Score every candidate against the float model (see module doc)."""
    mets = get_metrics(metrics)
    tensors = tuple(compare_at) if compare_at is not None else ctx.model.outputs
    scores, nonfinite = score_configurations(ctx, [c.quantizers for c in candidates], metrics=mets,
                                             compare_at=tensors, data_num=data_num, progress=progress)
    entries = [
        _entry(ctx, cand, {m.name: float(scores[c, i]) for i, m in enumerate(mets)}, bool(nonfinite[c]))
        for c, cand in enumerate(candidates)
    ]
    ranked = rank(entries, *mets)
    return SensitivityResult(node_type, tuple(m.name for m in mets), tuple(ranked), tensors, len(ctx.samples(data_num)))


def _entry(ctx: Context, cand: Candidate, scores: dict[str, float], nonfinite: bool) -> SensitivityEntry:
    qmap = ctx.model.quantizer_map
    node, threshold, bits = "", None, None
    if len(cand.quantizers) == 1 and cand.name in qmap:
        q = qmap[cand.name]
        node = ";".join(ctx.model.quantizer_consumers.get(q.name, ()))
        if q.kind == "activation":
            threshold = round(q.threshold, 5) if q.threshold is not None else None
            bits = q.bits
    return SensitivityEntry(cand.name, cand.quantizers, MappingProxyType(scores), nonfinite, node, threshold, bits)
