"""Partial quantization after a node sweep, as runall runs it, against scoring every configuration
from the float run (what the engine did before ``Engine.advance`` and the score memo).

    python benchmarks/partial.py [--threads N] [--repeat R]

Every node of the ResNet-18-sized model is taken as sensitive (``pick_threshold=1``): the
configurations are the calibrated model, then for each node "only this node on" (the node sweep
already scored it) and "the calibrated model with this node and the ones before it off" (one
more node off each time). Same context and warm sessions for both; scores must be equal bit for bit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_header, resnet18_qdq


def partial_cost(qpath: Path, samples: list[dict[str, np.ndarray]], threads: int, repeat: int = 5) -> dict[str, object]:
    from ptqdebug.analyses.candidates import candidates_for
    from ptqdebug.analyses.partial import partial_quantization
    from ptqdebug.analyses.sensitivity import node_sensitivity
    from ptqdebug.context import open_context
    from ptqdebug.metrics import METRICS, compare

    ctx = open_context(qpath, samples[:1], threads=threads, cache=False)
    sweep = node_sensitivity(ctx, candidates_for(ctx.model, "node"))
    sweep_keys = set(ctx.scored)
    # every node but the last, which would switch off the last calibration node (the float model)
    nodes = list(partial_quantization(ctx, [e.name for e in sweep.entries], pick_threshold=1.0).nodes)
    for key in set(ctx.scored) - sweep_keys:
        del ctx.scored[key]
    model, cos = ctx.model, METRICS["cosine-similarity"]
    calibrated = model.calibrated_configuration
    configs, off = [calibrated], set()
    for n in nodes:
        qs = frozenset(model.expand(n))
        off |= qs
        configs += [qs, calibrated - off]
    sweep_scores = sweep.as_mapping()

    def from_float() -> list[float]:
        ref = ctx.reference(0, model.outputs)
        return [float(np.mean([compare([cos], ref[t], ctx.engine.run(ref, c, model.outputs)[t])[0] for t in model.outputs]))
                for c in configs]

    def now() -> object:
        for key in set(ctx.scored) - sweep_keys:  # keep only the node sweep's scores, as runall has them
            del ctx.scored[key]
        return partial_quantization(ctx, nodes, pick_threshold=1.0)

    want, got = from_float(), now()
    times: dict[str, list[float]] = {"from float": [], "now": []}
    runs: dict[str, int] = {}
    for _ in range(repeat):  # alternating, so that machine noise hits both alike
        for name, fn in (("from float", from_float), ("now", now)):
            r, t = ctx.engine.runs, time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            runs[name] = ctx.engine.runs - r
    med = {k: statistics.median(v) for k, v in times.items()}
    same = (got.baseline, got.single, got.partial) == (want[0], tuple(want[1::2]), tuple(want[2::2]))  # type: ignore[attr-defined]
    singles_are_sweep = got.single == tuple(sweep_scores[n]["cosine-similarity"] for n in nodes)  # type: ignore[attr-defined]
    return {"nodes": len(nodes), "configurations": len(configs), "segments": len(ctx.engine.plan.segments),
            "median_s": med, "segment_runs": runs, "speedup": med["from float"] / med["now"],
            "bit_identical": same, "singles_from_sweep": singles_are_sweep}


def print_partial(r: dict[str, object]) -> None:
    med, runs = r["median_s"], r["segment_runs"]
    print(f"\nPartial quantization after the node sweep (ResNet-18-sized, all {r['nodes']} nodes sensitive, "
          f"{r['configurations']} configurations, {r['segments']} segments)")
    print(f"  every configuration from the float run: {med['from float']:.2f} s ({runs['from float']} segment runs)")  # type: ignore[index]
    print(f"  scores reused, runs chained:            {med['now']:.2f} s ({runs['now']} segment runs) = "  # type: ignore[index]
          f"{r['speedup']:.1f}x faster; bit-identical {r['bit_identical']}; single scores = the sweep's {r['singles_from_sweep']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print_header(args.threads)
    _, qpath, samples = resnet18_qdq(args.threads)
    print_partial(partial_cost(qpath, samples, args.threads, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
