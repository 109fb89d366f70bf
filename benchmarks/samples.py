"""Sweep cost with 8 samples against 1 sample (ResNet-18-sized QDQ model, activation sweep).

    python benchmarks/samples.py [--threads N] [--repeat R]

Same context, warm sessions; the median wall time of whole sweeps. When the engine batches samples
(``Context.batch_size``), 8 samples are also timed one at a time (``batch_size = 1``) to show what
the batching brings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_header, resnet18_qdq


def samples_cost(qpath: Path, samples: list[dict[str, np.ndarray]], threads: int, n: int = 8, repeat: int = 3,
                 node_type: str = "activation") -> dict[str, object]:
    from ptqdebug.analyses.candidates import candidates_for
    from ptqdebug.analyses.sensitivity import node_sensitivity
    from ptqdebug.context import open_context

    ctx = open_context(qpath, samples[:n], threads=threads)
    cands = candidates_for(ctx.model, node_type)
    settings: dict[str, tuple[int, int | None]] = {"1 sample": (1, None), f"{n} samples": (n, None)}
    batch = getattr(ctx, "batch_size", None)
    groups = ctx.sample_groups(n) if hasattr(ctx, "sample_groups") else [[i] for i in range(n)]
    if batch and batch > 1 and len(groups) < n:
        settings[f"{n} samples, one at a time"] = (n, 1)
    times: dict[str, list[float]] = {k: [] for k in settings}
    for name, (num, bs) in settings.items():  # warm: sessions for this batch shape, references
        _with_batch(ctx, bs, lambda num=num: node_sensitivity(ctx, cands, node_type=node_type, data_num=num))
    for _ in range(repeat):  # interleaved, so that machine noise hits every setting alike
        for name, (num, bs) in settings.items():
            t = time.perf_counter()
            _with_batch(ctx, bs, lambda num=num: node_sensitivity(ctx, cands, node_type=node_type, data_num=num))
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    one = med["1 sample"]
    return {"node_type": node_type, "candidates": len(cands), "samples": n, "batch_size": batch,
            "sample_groups": [len(g) for g in groups], "repeat": repeat,
            "median_sweep_s": med, "ratio_to_1_sample": {k: v / one for k, v in med.items()},
            "median_per_candidate_s": {k: v / len(cands) for k, v in med.items()}}


def _with_batch(ctx: object, batch_size: int | None, fn: Callable[[], object]) -> object:
    ctx.scored.clear()  # type: ignore[attr-defined]  # time the runs, not the reuse of scores already run
    if batch_size is None:
        return fn()
    old = ctx.batch_size  # type: ignore[attr-defined]
    ctx.batch_size = batch_size  # type: ignore[attr-defined]
    try:
        return fn()
    finally:
        ctx.batch_size = old  # type: ignore[attr-defined]


def print_samples(r: dict[str, object]) -> None:
    print(f"\nSweep cost against the number of samples (ResNet-18-sized QDQ, {r['node_type']} sweep, {r['candidates']} candidates,"
          f" median of {r['repeat']}; engine batch_size {r['batch_size']}, {r['samples']} samples run as groups of "
          f"{r['sample_groups']})")
    for k, v in r["median_sweep_s"].items():  # type: ignore[union-attr]
        print(f"  {k:<26} sweep {v:6.2f} s ({r['median_per_candidate_s'][k] * 1e3:6.1f} ms/candidate)"  # type: ignore[index]
              f" = {r['ratio_to_1_sample'][k]:.2f}x the 1-sample sweep")  # type: ignore[index]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print_header(args.threads)
    _, qpath, samples = resnet18_qdq(args.threads)
    print_samples(samples_cost(qpath, samples, args.threads, repeat=args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
