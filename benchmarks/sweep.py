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
                brute_limit: int | None = None, limit: int | None = None) -> dict[str, object]:
    """Median cost per candidate of each sweep (warm sessions), and brute force on the same candidates.

    ``limit``: time a spread subset of that many candidates per sweep instead of all of them (the
    sweep total is then the subset's mean per candidate times the number of candidates);
    ``brute_limit``: run brute force on a spread subset of that many candidates and extrapolate.
    """
    fsess = float_session(fpath, threads)
    # the float forward pass is timed before the first sweep and again after each one; each sweep's
    # ratio uses the forward times on either side of it (shared machines change speed by the minute)
    forwards = [median_time(lambda: fsess.run(None, samples[0]))]
    forward = forwards[0]
    t0 = time.perf_counter()
    ctx = open_context(qpath, samples[:1], threads=threads)
    ctx.reference(0, ctx.model.outputs)
    setup = time.perf_counter() - t0
    out: dict[str, object] = {"forward_s": forward, "setup_s": setup, "segments": len(ctx.engine.plan.segments),
                              "calibration_nodes": len(ctx.model.quantizers)}
    for node_type in node_types:
        all_cands = candidates_for(ctx.model, node_type)
        cands = spread(all_cands, limit)
        node_sensitivity(ctx, cands, node_type=node_type)  # warm: builds switchable sessions
        stamps: list[float] = []
        ctx.scored.clear()  # time the runs, not the reuse of the warm sweep's scores
        t0 = time.perf_counter()
        result = node_sensitivity(ctx, cands, node_type=node_type, progress=lambda d, t, s=stamps: s.append(time.perf_counter()))
        total = time.perf_counter() - t0
        per = np.diff([t0, *stamps])
        if len(cands) < len(all_cands):
            total = total * len(all_cands) / len(cands)  # extrapolated to the whole sweep
        forwards.append(median_time(lambda: fsess.run(None, samples[0]), repeat=7))
        around = (forwards[-2] + forwards[-1]) / 2
        row = {"candidates": len(all_cands), "timed_candidates": len(cands), "total_s": total,
               "median_per_candidate_s": float(statistics.median(per)), "mean_per_candidate_s": total / len(all_cands),
               "forward_around_s": around, "ratio_median_to_forward": float(statistics.median(per)) / around}
        if node_type in brute:
            chosen = spread(cands, brute_limit)
            t0 = time.perf_counter()
            brute_scores, fixed = _brute(ctx.model, chosen, samples[:1], threads)
            # the float session and reference are made once; only the per-candidate part scales
            bt = fixed + (time.perf_counter() - t0 - fixed) * len(all_cands) / len(chosen)
            # the sweep again right after brute force: the speed-up uses the mean of the two sweeps
            ctx.scored.clear()
            t1 = time.perf_counter()
            node_sensitivity(ctx, cands, node_type=node_type)
            again = (time.perf_counter() - t1) * len(all_cands) / len(cands)
            row["brute_candidates"] = len(chosen)
            row["brute_total_s"] = bt
            row["sweep_again_s"] = again
            row["speedup_vs_brute"] = bt / ((total + again) / 2)
            ours = result.as_mapping()
            row["max_abs_cosine_diff"] = max(abs(ours[c.name]["cosine-similarity"] - brute_scores[c.name]) for c in chosen)
        out[node_type] = row
    out["forward_s"] = float(statistics.median(forwards))
    out["forward_all_s"] = forwards
    return out


def spread(items: list, k: int | None) -> list:
    """``k`` items evenly spread over ``items`` (first and last included); all when ``k`` is None or too big."""
    if k is None or k >= len(items):
        return list(items)
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, k).round().astype(int).tolist()))]


def _brute(model, cands, samples, threads) -> tuple[dict[str, float], float]:
    """One model and one session per candidate, like the original tool; also the seconds spent on
    the float model (made once, whatever the number of candidates)."""
    t0 = time.perf_counter()
    float_sess = make_session(build_model(model).model, ["CPUExecutionProvider"], threads)
    refs = [float_sess.run(None, s) for s in samples]
    fixed = time.perf_counter() - t0
    scores = {}
    for c in cands:
        sess = make_session(build_model(model, on=c.quantizers).model, ["CPUExecutionProvider"], threads)
        vals = []
        for s, ref in zip(samples, refs):
            outs = sess.run(None, s)
            vals.append(np.mean([compare([METRICS["cosine-similarity"]], r, o)[0] for r, o in zip(ref, outs)]))
        scores[c.name] = float(np.mean(vals))
    return scores, fixed
