"""Sensitivity sweep cost per candidate, against a float forward pass and against brute force.

Brute force is the original tool's approach: for every candidate, a fresh model (only that
candidate's calibration nodes on) and a fresh ONNX Runtime session, then the samples.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import float_session, median_time
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.analyses.sensitivity import node_sensitivity
from ptqdebug.context import open_context
from ptqdebug.engine.build import build_model
from ptqdebug.engine.runtime import make_session
from ptqdebug.metrics import METRICS, compare


def sweep_costs(qpath: Path, fpath: Path, samples: list[dict[str, np.ndarray]], threads: int,
                node_types: tuple[str, ...] = ("activation", "weight", "node"), brute: tuple[str, ...] = ("activation",),
                brute_limit: int | None = None) -> dict[str, object]:
    fsess = float_session(fpath, threads)
    forward = median_time(lambda: fsess.run(None, samples[0]))
    t0 = time.perf_counter()
    ctx = open_context(qpath, samples[:1], threads=threads)
    ctx.reference(0, ctx.model.outputs)
    setup = time.perf_counter() - t0
    out: dict[str, object] = {"forward_s": forward, "setup_s": setup, "segments": len(ctx.engine.plan.segments),
                              "calibration_nodes": len(ctx.model.quantizers)}
    for node_type in node_types:
        cands = candidates_for(ctx.model, node_type)
        node_sensitivity(ctx, cands, node_type=node_type)  # warm: builds switchable sessions
        stamps: list[float] = []
        t0 = time.perf_counter()
        result = node_sensitivity(ctx, cands, node_type=node_type, progress=lambda d, t: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
        per = np.diff([t0, *stamps])
        row = {"candidates": len(cands), "total_s": total, "median_per_candidate_s": float(statistics.median(per)),
               "mean_per_candidate_s": total / len(cands),
               "ratio_median_to_forward": float(statistics.median(per)) / forward}
        if node_type in brute:
            chosen = cands if brute_limit is None else cands[:brute_limit]
            t0 = time.perf_counter()
            brute_scores = _brute(ctx.model, chosen, samples[:1], threads)
            bt = (time.perf_counter() - t0) * len(cands) / len(chosen)
            row["brute_total_s"] = bt
            row["speedup_vs_brute"] = bt / total
            ours = result.as_mapping()
            row["max_abs_cosine_diff"] = max(abs(ours[c.name]["cosine-similarity"] - brute_scores[c.name]) for c in chosen)
        out[node_type] = row
    return out


def _brute(model, cands, samples, threads) -> dict[str, float]:
    """One model and one session per candidate, like the original tool."""
    float_sess = make_session(build_model(model).model, ["CPUExecutionProvider"], threads)
    refs = [float_sess.run(None, s) for s in samples]
    scores = {}
    for c in cands:
        sess = make_session(build_model(model, on=c.quantizers).model, ["CPUExecutionProvider"], threads)
        vals = []
        for s, ref in zip(samples, refs):
            outs = sess.run(None, s)
            vals.append(np.mean([compare([METRICS["cosine-similarity"]], r, o)[0] for r, o in zip(ref, outs)]))
        scores[c.name] = float(np.mean(vals))
    return scores
