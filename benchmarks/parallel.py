"""Sweep wall time with worker processes (ptqdebug.parallel) against one process, same run.

    python benchmarks/parallel.py [--samples 8] [--node-type node]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ptqdebug as dbg  # noqa: E402
from benchmarks.common import machine, resnet18_qdq  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--node-type", default="node")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    _, qpath, samples = resnet18_qdq(2)
    data = samples[: args.samples]
    settings = {"1 process, 1 thread": dict(threads=1), "1 process, 2 threads": dict(threads=2),
                "2 workers, 1 thread each": dict(workers=2)}
    times: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeat):
        for name, kw in settings.items():
            t = time.perf_counter()
            ctx = dbg.open_context(qpath, data, cache=False, **kw)
            dbg.sensitivity_of_nodes(ctx, node_type=args.node_type, data_num=None)
            times[name].append(time.perf_counter() - t)
    print(f"machine: {machine()}")
    print(f"ResNet-18-sized QDQ, {args.node_type} sweep, {args.samples} samples (setup included), median of {args.repeat}:")
    base = statistics.median(times["1 process, 1 thread"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<26} {m:6.2f} s   speed-up vs 1 process 1 thread: {base / m:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
