"""runall against the node sensitivity sweep alone, both from a fresh start (model read, sessions built)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import ptqdebug as dbg
from benchmarks.common import no_cache


def runall_cost(qpath: Path, samples: list[dict[str, np.ndarray]], repeat: int = 3) -> dict[str, float]:
    data = samples[:1]
    nc_sweep, nc_runall = no_cache(dbg.get_sensitivity_of_nodes), no_cache(dbg.runall)  # compute, never reuse
    dbg.get_sensitivity_of_nodes(qpath, calibrated_data=data, node_type="node", **nc_sweep)  # warm imports and caches
    sweep, full, compute = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        dbg.get_sensitivity_of_nodes(qpath, calibrated_data=data, node_type="node", **nc_sweep)
        sweep.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            run = dbg.runall(qpath, data, out, **nc_runall)
            full.append(time.perf_counter() - t)
            compute.append(run.results["timing"]["total_s"])
    s, f = statistics.median(sweep), statistics.median(full)
    return {"node_sweep_s": s, "runall_s": f, "runall_compute_s": statistics.median(compute), "ratio": f / s,
            "figures": float(len([p for p in run.files if str(p).endswith(".png")]))}
