"""Sweep wall time with worker processes (ptqdebug.parallel) against one process, same run.

    python benchmarks/parallel.py [--samples 8] [--node-type node] [--repeat 5]

Each setting runs in a fresh process, timed from ``open_context`` to the end of the sweep (model
reading, sessions and float references included; interpreter start and imports not), settings
interleaved round by round so that a shared machine's load hits them alike; medians. The
*ceiling* is this machine's own limit: two independent one-thread processes doing the whole
single-process sweep at the same time; its speed-up is twice one run's time over the pair's wall
time (2.00x when the two cores really are free and independent).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, resnet18_qdq, source_state

SETTINGS = {
    "1 process, 1 thread": {"threads": 1},
    "1 process, 2 threads": {"threads": 2},
    "2 workers, 1 thread each": {"workers": 2},
}


def child(kw: dict[str, int], samples: int, node_type: str) -> None:
    """One timed sweep in this process; prints its wall time (and what the helpers did) as JSON."""
    import resource

    import ptqdebug as dbg

    _, qpath, data = resnet18_qdq(2)
    t, cpu = time.perf_counter(), time.process_time()
    ctx = dbg.open_context(qpath, data[:samples], cache=False, **kw)
    result = dbg.sensitivity_of_nodes(ctx, node_type=node_type, data_num=None)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    units, pool = 0, getattr(ctx, "pool", None)
    if pool is not None:
        units = pool.units
        pool.close()  # the helpers exit: their CPU time is then this process's children's
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    scores = {k: v["cosine-similarity"] for k, v in result.as_mapping().items()}
    print(json.dumps({"wall": wall, "cpu": cpu + children.ru_utime + children.ru_stime, "helper_units": units,
                      "scores": scores}))


def spawn(kw: dict[str, int], args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(kw), "--samples", str(args.samples),
                             "--node-type", args.node_type], stdout=subprocess.PIPE, text=True)


def collect(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"benchmark child failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--node-type", default="node")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child), args.samples, args.node_type)
        return 0
    resnet18_qdq(2)  # build the model once, before timing
    times: dict[str, list[float]] = {k: [] for k in [*SETTINGS, "ceiling pair"]}
    cpus: dict[str, list[float]] = {k: [] for k in SETTINGS}
    scores: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name, kw in SETTINGS.items():
            res = collect(spawn(kw, args))
            times[name].append(res["wall"])
            cpus[name].append(res["cpu"])
            scores[name] = res["scores"]
        pair = [spawn(SETTINGS["1 process, 1 thread"], args) for _ in range(2)]  # the ceiling
        times["ceiling pair"].append(max(collect(p)["wall"] for p in pair))
    base = statistics.median(times["1 process, 1 thread"])
    print(f"machine: {machine()}; {source_state()}")
    print(f"ResNet-18-sized QDQ, {args.node_type} sweep, {args.samples} samples (setup included), "
          f"median of {args.repeat} interleaved rounds (best in brackets):")
    for name in SETTINGS:
        m = statistics.median(times[name])
        print(f"  {name:<26} {m:6.2f} s ({min(times[name]):5.2f})   speed-up vs 1 process 1 thread: {base / m:.2f}x"
              f" ({min(times['1 process, 1 thread']) / min(times[name]):.2f}x)   CPU, all processes: "
              f"{statistics.median(cpus[name]):.2f} s")
    pair = statistics.median(times["ceiling pair"])
    print(f"  ceiling, two 1-thread sweeps at once: {pair:.2f} s ({min(times['ceiling pair']):.2f}):"
          f" this machine's own limit {2 * base / pair:.2f}x ({2 * min(times['1 process, 1 thread']) / min(times['ceiling pair']):.2f}x)")
    one, two = times["1 process, 1 thread"], times["2 workers, 1 thread each"]
    ratios = [a / b for a, b in zip(one, two)]
    limits = [2 * a / b for a, b in zip(one, times["ceiling pair"])]
    print(f"  per round, 2 workers: {' '.join(f'{r:.2f}x' for r in ratios)} (median {statistics.median(ratios):.2f}x);"
          f" ceiling: {' '.join(f'{r:.2f}x' for r in limits)} (median {statistics.median(limits):.2f}x)")
    same = scores["2 workers, 1 thread each"] == scores["1 process, 1 thread"]
    print(f"  2-worker scores identical to 1 process, 1 thread: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
