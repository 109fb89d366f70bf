"""runall against the node sensitivity sweep alone, both from a fresh start (model read, sessions built).

Wall times are the benchmark (median of ``repeat`` alternating runs). CPU times are reported
beside them because the machines are shared: runall spreads over the cores (figure renderers
draw while the engine computes), the node sweep does not, so other processes on the machine cost
runall more wall time than they cost the sweep. ``runall_cpu_s`` counts every process of the run
(the renderers included).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import ptqdebug as dbg
from benchmarks.common import no_cache


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the figure renderers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def runall_cost(qpath: Path, samples: list[dict[str, np.ndarray]], repeat: int = 3) -> dict[str, float]:
    data = samples[:1]
    nc_sweep, nc_runall = no_cache(dbg.get_sensitivity_of_nodes), no_cache(dbg.runall)  # compute, never reuse
    dbg.get_sensitivity_of_nodes(qpath, calibrated_data=data, node_type="node", **nc_sweep)  # warm imports and caches
    sweep, full, compute, sweep_cpu, full_cpu = [], [], [], [], []
    for _ in range(repeat):
        c, t = _cpu(), time.perf_counter()
        dbg.get_sensitivity_of_nodes(qpath, calibrated_data=data, node_type="node", **nc_sweep)
        sweep.append(time.perf_counter() - t)
        sweep_cpu.append(_cpu() - c)
        with tempfile.TemporaryDirectory() as out:
            c, t = _cpu(), time.perf_counter()
            run = dbg.runall(qpath, data, out, **nc_runall)
            full.append(time.perf_counter() - t)
            full_cpu.append(_cpu() - c)
            compute.append(run.results["timing"]["total_s"])
    s, f = statistics.median(sweep), statistics.median(full)
    return {"node_sweep_s": s, "runall_s": f, "runall_compute_s": statistics.median(compute), "ratio": f / s,
            "node_sweep_cpu_s": statistics.median(sweep_cpu), "runall_cpu_s": statistics.median(full_cpu),
            "figures": float(len([p for p in run.files if str(p).endswith(".png")]))}
