"""Scoring configurations in parallel: worker processes on this machine, or a Ray cluster.

A sweep scores every configuration on every sample; each (sample group, configuration) pair is a
*unit*, independent of the others.

* ``workers=N`` (local): this process and N-1 *helper* processes started as
  ``python -m ptqdebug.parallel`` (never through ``multiprocessing``, which would re-import the
  user's script) share the units. Every process runs ``threads`` ONNX Runtime threads (default
  cores/N) with the same segment plan, value types and session options, and every unit is scored
  by the same code (:func:`~ptqdebug.parallel.unit.score_unit`), so the results are those of one
  process with that many threads, bit for bit. N is at most the cores
  (:func:`~ptqdebug.parallel.local.check_workers`), and a pool started for a sweep has no more
  processes than the sweep has units. Where the time goes, and what keeps it down
  (``benchmarks/parallel.py``):

  - start-up: helpers start when the context opens and read the model file themselves while this
    process reads it (file stamps and calibration node names checked; a helper whose reading may
    differ gets this process's model, pickled); they stay up for the context's whole life
    (every sweep of ``runall``), keeping their sessions;
  - float references: computed once, here; a helper gets, per sample, only the values crossing
    the cuts that its units read (late candidates read little), never running the float model;
  - load balance: units are handed out one at a time (a helper asks for the next one while it
    computes the current one). Configurations are ordered costliest first (a candidate re-runs
    the graph from its first segment); this process takes the leftmost unit of the open samples,
    the helpers the rightmost, so each side works column by column and the two meet at one
    column for every sample: a segment's switchable sessions are built on one side only, the
    graph's tail float sessions on both;
  - memory: the samples open at once hold at most :data:`~ptqdebug.parallel.local.REFERENCE_BUDGET`
    of references.

* ``executor="ray"``: one Ray task per share of the configurations (interleaved, so every task
  gets a mix of cheap late and costly early candidates) on the cluster ``ray.init()`` connects to
  (the ``ray`` extra; a local instance when none is configured); each task rebuilds an engine
  from the pickled model (:func:`run_job`).

The modules, imports flowing down the list:

* ``unit.py`` — one unit, scored by the same code in every process;
* ``stamps.py`` — what tells whether a helper read the same model as this process;
* ``sweep.py`` — the units of one sweep as a grid, handed out from both ends;
* ``pool.py`` — the helper processes, this process's side (:class:`WorkerPool`);
* ``local.py`` — a sweep scored here with the pool (thread and helper counts, the scoring loop);
* ``helper.py`` — a helper process's own side; ``__main__.py`` starts it;
* ``cluster.py`` — Ray jobs;
* this package — the entry point, :func:`values_in_parallel`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

from ..errors import OptionError
from .cluster import Job, run_job, score_on_ray
from .local import process_threads, score_local
from .pool import WorkerPool

__all__ = ["EXECUTORS", "Job", "WorkerPool", "process_threads", "run_job", "values_in_parallel"]

EXECUTORS = ("local", "ray")


def values_in_parallel(
    ctx: object,
    configurations: Sequence[Collection[str]],
    *,
    metrics: Sequence[str],
    compare_at: Sequence[str],
    data_num: int | None,
    workers: int,
    executor: str = "local",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The per-sample values of ``configurations`` (``[configuration, tensor, metric, sample]``),
    computed by ``workers`` processes or on Ray, exactly as
    :func:`ptqdebug.analyses.sensitivity.configuration_values` computes them in one process."""
    if executor not in EXECUTORS:
        raise OptionError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if executor == "local":
        return score_local(ctx, configurations, metrics, compare_at, data_num, max(1, workers), progress)
    return score_on_ray(ctx, configurations, metrics, compare_at, data_num, workers)
