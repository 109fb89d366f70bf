"""Scoring a sweep on this machine: this process and the helpers of its
:class:`~ptqdebug.parallel.pool.WorkerPool` share the units, this process scoring too while it
computes the float references and hands them out (see :mod:`ptqdebug.parallel`)."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from ..errors import OptionError
from ..metrics import get_metrics
from .pool import WorkerPool, attach_pool
from .unit import score_unit

__all__ = ["PARENT_TAKES_PART", "REFERENCE_BUDGET", "check_workers", "helpers_for", "process_threads", "score_local"]

#: Whether this process scores units itself besides handing them out (tests turn it off to make
#: the helpers score every unit).
PARENT_TAKES_PART = True

#: Bytes of float references (values crossing the cuts) a sweep keeps per process: the sample
#: groups open at once, each process working across them column by column.
REFERENCE_BUDGET = 256 * 2**20


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def process_threads(threads: int | None, workers: int) -> int | None:
    """ONNX Runtime threads per process when ``workers`` processes share this machine: the
    requested count, else the cores split between them (None: ONNX Runtime's choice)."""
    if threads:
        return threads
    return max(1, _cores() // workers) if workers > 1 else None


def check_workers(workers: object, executor: str | None = None) -> int | None:
    """``workers`` (None: one process), refused unless a whole number >= 1 and, on this machine
    (``executor`` local or None), at most its cores: every process holds the model and its own
    sessions, and more processes than cores only share the same cores."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers is {workers!r}; expected a whole number >= 1")
    cores = _cores()
    if (executor or "local") == "local" and workers > cores:
        raise OptionError(f"workers is {workers}, more than the {cores} cores of this machine; expected at most {cores} "
                          "(each worker is a process holding the model and its own sessions)")
    return workers


def helpers_for(workers: int) -> int:
    """Helper processes for ``workers`` (this process counts as one when it takes part; checked
    by :func:`check_workers` where the option entered)."""
    return workers - 1 if PARENT_TAKES_PART else workers


def _pool_for(ctx: Any, workers: int, units: int) -> WorkerPool:
    """The context's pool, with helpers for ``workers`` processes but no more processes than the
    sweep has ``units``: a pool already started is kept (grown if this sweep can use more) unless
    it has more helpers than ``workers`` asks for."""
    pool: WorkerPool | None = getattr(ctx, "pool", None)
    want = helpers_for(min(workers, units))
    if pool is not None and not pool.closed and pool.failure is None and pool.size <= helpers_for(workers):
        if pool.size < want:
            pool.grow(want)
        return pool
    if pool is not None:
        pool.close(kill=True)
    pool = WorkerPool(want)
    pool.send_model(ctx.model)
    attach_pool(ctx, pool)
    return pool


def _start_segment(plan: Any, configuration: Collection[str]) -> int:
    """Where a run of ``configuration`` starts (the engine may start later, never earlier)."""
    where = plan.quantizer_segment
    return min((where[q] for q in configuration if q in where), default=len(plan.segments))


def _reads_from(plan: Any, values: Collection[str], compare_at: Sequence[str]) -> list[frozenset[str]]:
    """Per segment k: the reference values a run starting at k reads (the inputs and outputs of
    segments k onwards, the compared tensors)."""
    out = [frozenset(t for t in compare_at if t in values)]
    for seg in reversed(plan.segments):
        out.append(out[-1] | {t for t in (*seg.inputs, *seg.outputs) if t in values})
    return out[::-1]


def _helper_error(text: str, user: str) -> Exception:
    """What a helper's failure raises here: a user's mistake as its own one-line error, anything
    else as a RuntimeError (a bug, with its traceback)."""
    from .. import errors

    kind = getattr(errors, user, None) if user else None
    if isinstance(kind, type) and issubclass(kind, errors.PtqDebugError):
        return kind(text) if kind is not errors.UnknownNodeError else errors.OptionError(text)
    return RuntimeError(text)


def score_local(ctx: Any, configurations: Sequence[Collection[str]], metrics: Sequence[str],
                compare_at: Sequence[str], data_num: int | None, workers: int,
                progress: Callable[[int, int], None] | None) -> np.ndarray:
    """The per-sample values of ``configurations`` (``[configuration, tensor, metric, sample]``),
    scored by this process and the context's pool of ``workers`` processes in all."""
    mets = get_metrics(list(metrics))
    compare_at = tuple(compare_at)
    configs = [frozenset(c) for c in configurations]
    groups = ctx.score_groups(data_num, compare_at)
    n_c, n_t, n_m = len(configs), len(compare_at), len(mets)
    values = np.full((n_c, n_t, n_m, len(ctx.samples(data_num))), np.nan)
    total, done = len(groups) * n_c, 0
    engine = ctx.engine
    # costliest first: a configuration re-runs the graph from its first enabled calibration node
    starts = [_start_segment(engine.plan, c) for c in configs]
    order = sorted(range(n_c), key=starts.__getitem__)
    refs: dict[int, tuple[Any, list[int] | None]] = {}

    def reference(g: int) -> tuple[Any, list[int] | None]:
        group = groups[g]
        ref = ctx.reference_group(group, compare_at)
        edges = [int(e) for e in np.cumsum([0, *ctx.batch_sizes(group)])] if len(group) > 1 else None
        return ref, edges

    def store(g: int, c: int, vals: np.ndarray) -> None:
        nonlocal done
        for k, s in enumerate(groups[g]):
            values[c, :, :, s] = vals[k]
        done += 1
        if progress is not None:
            progress(done, total)

    _pool_for(ctx, workers, total)  # (a new pool starts while the first reference is computed)
    refs[0] = reference(0)  # builds the float sessions: their value types go to the helpers
    pool = _pool_for(ctx, workers, total)  # a helper lost meanwhile: a new pool
    size = sum(np.asarray(v).nbytes for v in refs[0][0].values.values())
    window = max(1, min(len(groups), REFERENCE_BUDGET // max(1, size)))  # rows open at once
    header = (tuple(engine.providers), engine.threads or process_threads(None, workers), engine.plan,
              dict(engine._types), configs, tuple(metrics), compare_at, groups)  # (metrics: how each helper loads them)
    reads = _reads_from(engine.plan, refs[0][0].values, compare_at)
    sweep = pool.begin(len(groups), order, [reads[k] for k in starts], header)

    def publish() -> None:
        g = sweep.published
        if g not in refs:
            refs[g] = reference(g)
        ref, edges = refs[g]
        sweep.publish((ref.values, edges))

    def drain(block: bool) -> None:
        while True:
            try:
                item = sweep.inbox.get(block=block)
            except queue.Empty:
                return
            if item[0] == "error":
                raise _helper_error(item[1], item[2] if len(item) > 2 else "")
            store(*item)
            block = False

    try:
        publish()
        while PARENT_TAKES_PART:
            # one more row per unit here while rows are few: the helpers always find work, and
            # no reference is computed before it is needed
            if sweep.published < len(groups) and sweep.open_rows() < window:
                publish()
            unit = sweep.take_front()
            if unit is None:
                if sweep.published < len(groups):
                    continue
                break
            g, c = unit
            ref, edges = refs[g]
            store(g, c, score_unit(engine, ref, configs[c], compare_at, mets, edges, groups[g]))
            for r in [r for r in refs if r <= g and sweep.done(r)]:
                del refs[r]
            drain(block=False)
        while done < total:
            while not PARENT_TAKES_PART and sweep.published < len(groups) and sweep.open_rows() < window:
                publish()
            drain(block=True)
    except BaseException:
        pool.close(kill=True)  # helpers may be mid-unit: the next sweep starts fresh ones
        raise
    finally:
        refs.clear()
        pool.end(sweep)
    return values
