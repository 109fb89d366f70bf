"""Scoring configurations in parallel: worker processes on this machine, or a Ray cluster.

A sweep scores every configuration on every sample; each (sample group, configuration) pair is a
*unit*, independent of the others.

* ``workers=N`` (local): this process and N-1 *helper* processes started as
  ``python -m ptqdebug.parallel`` (never through ``multiprocessing``, which would re-import the
  user's script) share the units. Every process runs ``threads`` ONNX Runtime threads (default
  cores/N) with the same segment plan, value types and session options, and every unit is scored
  by the same code (:func:`_score_unit`), so the results are those of one process with that many
  threads, bit for bit. Where the time goes, and what keeps it down (``benchmarks/parallel.py``):

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
  - memory: the samples open at once hold at most :data:`REFERENCE_BUDGET` of references.

* ``executor="ray"``: one Ray task per share of the configurations (interleaved, so every task
  gets a mix of cheap late and costly early candidates) on the cluster ``ray.init()`` connects to
  (the ``ray`` extra; a local instance when none is configured); each task rebuilds an engine
  from the pickled model (:func:`run_job`).
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .errors import OptionError
from .metrics import Metric, compare, get_metrics
from .model import CalibratedModel
from .pipes import read_message, write_message

__all__ = ["EXECUTORS", "Job", "WorkerPool", "process_threads", "run_job", "values_in_parallel"]

EXECUTORS = ("local", "ray")

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


# -- one unit of work, the same code in every process ---------------------------------------------
def _score_unit(engine: Any, ref: Any, enabled: Collection[str], compare_at: Sequence[str],
                metrics: Sequence[Metric], edges: Sequence[int] | None) -> np.ndarray:
    """``[sample of the group, compared tensor, metric]`` for one configuration on one reference
    (one sample, or a batch of samples split at ``edges``)."""
    out = engine.run(ref, enabled, compare_at)
    n = 1 if edges is None else len(edges) - 1
    vals = np.full((n, len(compare_at), len(metrics)), np.nan)
    for t, name in enumerate(compare_at):
        if edges is None:
            vals[0, t] = compare(metrics, ref[name], out[name])
            continue
        for k in range(n):
            rows = slice(edges[k], edges[k + 1])
            vals[k, t] = compare(metrics, ref[name][rows], out[name][rows])
    return vals


# -- the local pool ---------------------------------------------------------------------------------
class _Pickled:
    """A message pickled once, however many helpers it goes to."""

    def __init__(self, message: object) -> None:
        self._message: object = message
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                self._data = pickle.dumps(self._message, protocol=pickle.HIGHEST_PROTOCOL)
                self._message = None
            return self._data


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    """One message as :func:`ptqdebug.pipes.write_message` frames it, already pickled."""
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


class _Sweep:
    """The units of one sweep, as a grid: a row per sample group (published as this process
    computes its float reference), a column per configuration, costliest first.

    This process takes the leftmost unit of the published rows, the helpers the rightmost: each
    side works column by column across the rows, so the two meet at one column for every row and
    a segment's switchable sessions are built on one side only.
    """

    def __init__(self, sid: int, groups: int, order: Sequence[int], needs: Sequence[frozenset[str]]) -> None:
        self.sid = sid
        self.order = list(order)
        self.needs = needs  # per configuration: the reference values a run of it reads
        self.groups = groups
        self.cond = threading.Condition()
        self.lo: list[int] = []  # per published row: next column from the left
        self.hi: list[int] = []  # and from the right (exclusive)
        self.payload: dict[int, tuple[Any, ...]] = {}  # the rows with units left
        self.stopped = False
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()

    @property
    def published(self) -> int:
        return len(self.lo)

    def open_rows(self) -> int:
        with self.cond:
            return len(self.payload)

    def publish(self, payload: tuple[Any, ...]) -> None:
        with self.cond:
            self.payload[len(self.lo)] = payload
            self.lo.append(0)
            self.hi.append(len(self.order))
            self.cond.notify_all()

    def done(self, g: int) -> bool:
        return self.lo[g] >= self.hi[g]

    def _taken(self, g: int) -> None:
        if self.lo[g] >= self.hi[g]:
            self.payload.pop(g, None)

    def take_front(self) -> tuple[int, int] | None:
        with self.cond:
            if not self.payload:
                return None
            g = min(self.payload, key=lambda r: (self.lo[r], r))
            c = self.order[self.lo[g]]
            self.lo[g] += 1
            self._taken(g)
            return g, c

    def take_back(self) -> tuple[int, int, tuple[Any, ...]] | None:
        """The next unit for a helper, waiting for a row to be published; None when every unit is
        handed out or the sweep stopped."""
        with self.cond:
            while not self.stopped:
                if self.payload:
                    g = min(self.payload, key=lambda r: (-self.hi[r], r))
                    payload = self.payload[g]
                    self.hi[g] -= 1
                    self._taken(g)
                    return g, self.order[self.hi[g]], payload
                if len(self.lo) == self.groups:
                    return None
                self.cond.wait()
            return None

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class _Helper:
    """One helper process, with a thread writing its messages and one reading its replies."""

    def __init__(self, pool: WorkerPool, env: Mapping[str, str]) -> None:
        self.pool = pool
        self.proc = subprocess.Popen([sys.executable, "-m", "ptqdebug.parallel"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=dict(env),
                                     start_new_session=True)  # Ctrl-C reaches ptqdebug, which stops the helpers
        self.outbox: queue.Queue[object] = queue.Queue()
        self.units = 0  # units this helper scored
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def send(self, message: object) -> None:
        self.outbox.put(message)

    def _write(self) -> None:
        stream = self.proc.stdin
        assert stream is not None
        try:
            while True:
                item = self.outbox.get()
                if item is None:
                    break
                data = item.data() if isinstance(item, _Pickled) else pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                _write_frame(stream, data)
        except (OSError, ValueError):
            pass  # the helper is gone: its reader reports it
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        held: dict[tuple[int, int], set[str]] = {}  # (sweep, row) → reference values this helper holds
        try:
            while True:
                message = read_message(stream)
                kind, sid = message[0], message[1]
                sweep = self.pool.sweep
                live = sweep is not None and sweep.sid == sid
                if kind == "result":  # a result asks for the next unit
                    self.units += 1
                    if live:
                        sweep.inbox.put(message[2:])  # type: ignore[union-attr]
                    wanted = 1
                elif kind == "want":
                    wanted = message[2]
                elif kind == "need-model":
                    self.send(self.pool.pickled_model())
                    continue
                else:
                    self.pool.fail(f"a sweep worker failed: {message[2]}")
                    continue
                for _ in range(wanted):
                    unit = sweep.take_back() if live else None  # type: ignore[union-attr]
                    if unit is None:
                        held.clear()
                        self.send(("end", sid))
                        continue
                    g, c, (values, edges) = unit
                    gone = [r for s_, r in held if s_ == sid and r != g and sweep.done(r)]  # type: ignore[union-attr]
                    if gone:  # rows with no units left: the helper frees their references
                        for r in gone:
                            del held[(sid, r)]
                        self.send(("drop", sid, gone))
                    have = held.setdefault((sid, g), set())
                    missing = sweep.needs[c] - have  # type: ignore[union-attr]
                    if missing or not have:  # only what this run reads: late runs read little
                        self.send(("ref", sid, g, {k: values[k] for k in missing}, edges))
                        have.update(missing)
                    self.send(("unit", sid, g, c))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
            if not self.pool.closed:
                self.pool.fail(f"a sweep worker stopped: {exc or 'no reply'}")


class WorkerPool:
    """Helper processes scoring units for one context (see the module doc).

    Started by :func:`ptqdebug.open_context` when it is given ``workers > 1``, before the model
    is read, and closed with the context (or at exit). A helper that fails makes the running sweep
    raise; the pool is then closed and the next sweep starts a new one.
    """

    def __init__(self, size: int) -> None:
        import ptqdebug

        env = dict(os.environ)  # helpers import this very ptqdebug
        root = os.path.dirname(os.path.dirname(os.path.abspath(ptqdebug.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.closed = False
        self.failure: str | None = None
        self.model: CalibratedModel | None = None
        self.sweep: _Sweep | None = None
        self._ids = itertools.count(1)
        self.helpers = [_Helper(self, env) for _ in range(size)]

    @property
    def size(self) -> int:
        return len(self.helpers)

    @property
    def units(self) -> int:
        """Units scored by the helpers so far."""
        return sum(h.units for h in self.helpers)

    def load(self, files: Sequence[str | None]) -> None:
        """Have every helper read the model itself from ``files`` (model, float model or None),
        while this process reads it too; :meth:`loaded` then checks they read the same."""
        for h in self.helpers:
            h.send(("load", 0, tuple(files)))

    def loaded(self, model: CalibratedModel, stamps: object) -> None:
        """The model as this process read it, and the files' :func:`file_stamps` from before and
        after; a helper whose own reading differs (a file changed) asks for this one, pickled."""
        self.model = model
        for h in self.helpers:
            h.send(("check", 0, stamps, _model_key(model)))

    def send_model(self, model: CalibratedModel) -> None:
        """Give every helper the model, pickled once, in the background."""
        self.model = model
        message = self.pickled_model()
        for h in self.helpers:
            h.send(message)

    def pickled_model(self) -> _Pickled:
        """The model message, pickled when first written (and freed once written)."""
        return _Pickled(("model", 0, self.model))

    def fail(self, text: str) -> None:
        if self.failure is None:
            self.failure = text
        sweep = self.sweep
        if sweep is not None:
            sweep.inbox.put(("error", text))
            sweep.stop()

    def begin(self, groups: int, order: Sequence[int], needs: Sequence[frozenset[str]],
              header: tuple[Any, ...]) -> _Sweep:
        if self.failure is not None:
            raise RuntimeError(self.failure)
        sweep = _Sweep(next(self._ids), groups, order, needs)
        self.sweep = sweep
        for h in self.helpers:
            h.send(("sweep", sweep.sid, *header))
        return sweep

    def end(self, sweep: _Sweep) -> None:
        sweep.stop()
        if self.sweep is sweep:
            self.sweep = None

    def close(self, kill: bool = False) -> None:
        """Stop the helpers: end of input (they exit), or at once with ``kill``."""
        if self.closed:
            return
        self.closed = True
        if self.sweep is not None:
            self.sweep.stop()
        for h in self.helpers:
            h.send(None)
        for h in self.helpers:
            if not kill:
                try:
                    h.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            if h.proc.poll() is None:
                h.proc.kill()
            h.proc.wait()


def file_stamps(files: Sequence[str | None]) -> tuple[object, ...]:
    """What identifies the files' contents: device, inode, size and modification time."""
    out: list[object] = []
    for f in files:
        if f is None:
            out.append(None)
            continue
        try:
            st = os.stat(f)
        except OSError:
            out.append("missing")
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _model_key(model: CalibratedModel) -> tuple[object, ...]:
    return len(model.proto.graph.node), len(model.proto.graph.initializer), tuple(q.name for q in model.quantizers)


def helpers_for(workers: int) -> int:
    """Helper processes for ``workers`` (this process counts as one when it takes part)."""
    return workers - 1 if PARENT_TAKES_PART else workers


def attach_pool(ctx: Any, pool: WorkerPool) -> None:
    """Make ``pool`` the context's, closed when the context is collected or at exit."""
    ctx.pool = pool
    weakref.finalize(ctx, pool.close)


def _pool_for(ctx: Any, workers: int) -> WorkerPool:
    pool: WorkerPool | None = getattr(ctx, "pool", None)
    want = helpers_for(workers)
    if pool is not None and not pool.closed and pool.failure is None and pool.size == want:
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


def _score_local(ctx: Any, configurations: Sequence[Collection[str]], metrics: Sequence[str],
                 compare_at: Sequence[str], data_num: int | None, workers: int,
                 progress: Callable[[int, int], None] | None) -> np.ndarray:
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

    _pool_for(ctx, workers)  # (a new pool starts while the first reference is computed)
    refs[0] = reference(0)  # builds the float sessions: their value types go to the helpers
    pool = _pool_for(ctx, workers)  # a helper lost meanwhile: a new pool
    size = sum(np.asarray(v).nbytes for v in refs[0][0].values.values())
    window = max(1, min(len(groups), REFERENCE_BUDGET // max(1, size)))  # rows open at once
    header = (tuple(engine.providers), engine.threads or process_threads(None, workers), engine.plan,
              dict(engine._types), configs, tuple(m.name for m in mets), compare_at)
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
                raise RuntimeError(item[1])
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
            store(g, c, _score_unit(engine, ref, configs[c], compare_at, mets, edges))
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


# -- entry point --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """A Ray task's share of a sweep."""

    model: CalibratedModel
    samples: tuple[dict[str, np.ndarray], ...]
    providers: tuple[str, ...]
    threads: int | None
    batch_size: int
    metrics: tuple[str, ...]
    compare_at: tuple[str, ...]
    configurations: tuple[frozenset[str], ...]


def run_job(job: Job, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """A job's per-sample values in this process (what every Ray task runs)."""
    from .analyses.sensitivity import configuration_values
    from .context import Context
    from .data import load_data
    from .engine.engine import Engine

    data = load_data(list(job.samples), job.model.inputs)
    shapes = {k: tuple(v.shape) for k, v in job.samples[0].items()}
    engine = Engine(job.model, providers=list(job.providers), threads=job.threads, shapes=shapes)
    ctx = Context(job.model, data, engine, cache=False)
    ctx.batch_size = job.batch_size
    return configuration_values(ctx, job.configurations, metrics=get_metrics(list(job.metrics)),
                                compare_at=job.compare_at, data_num=None, progress=progress)


def _shares(n: int, parts: int) -> list[list[int]]:
    return [idx for idx in (list(range(i, n, parts)) for i in range(parts)) if idx]


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
        return _score_local(ctx, configurations, metrics, compare_at, data_num, max(1, workers), progress)
    samples = tuple(ctx.samples(data_num)[i] for i in range(len(ctx.samples(data_num))))  # type: ignore[attr-defined]
    shares = _shares(len(configurations), max(1, workers))
    jobs = [Job(ctx.model, samples, tuple(ctx.engine.providers), ctx.engine.threads, ctx.batch_size, tuple(metrics),  # type: ignore[attr-defined]
                tuple(compare_at), tuple(frozenset(configurations[i]) for i in share)) for share in shares]
    results = _run_ray(jobs)
    values = np.full((len(configurations), len(compare_at), len(metrics), len(samples)), np.nan)
    for share, vals in zip(shares, results):
        values[share] = vals
    return values


def _run_ray(jobs: list[Job]) -> list[np.ndarray]:
    try:
        import ray
    except ImportError:
        raise OptionError("executor 'ray' needs Ray: pip install 'ptqdebug[ray]'") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(run_job)
    return ray.get([remote.remote(job) for job in jobs])


# -- the helper process ---------------------------------------------------------------------------------
class _HelperState:
    """What a helper keeps between messages: the model, an engine (sessions stay across sweeps),
    the running sweep and the reference it was sent last."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.model: CalibratedModel | None = None
        self.engine: Any = None
        self.read: tuple[object, ...] | None = None  # file stamps around this helper's own reading
        self.stashed: list[tuple[Any, ...]] | None = None  # messages held while the model comes
        self.sid = 0
        self.configs: list[frozenset[str]] = []
        self.metrics: tuple[Metric, ...] = ()
        self.compare_at: tuple[str, ...] = ()
        self.refs: dict[int, tuple[Any, list[int] | None]] = {}

    def handle(self, message: tuple[Any, ...]) -> None:
        kind, sid = message[0], message[1]
        if self.stashed is not None and kind != "model":
            self.stashed.append(message)
            return
        if kind == "load":
            self._load(message[2])
        elif kind == "check":
            stamps, key = message[2:]
            if self.model is None or self.read != (stamps, stamps) or _model_key(self.model) != key:
                self.model, self.engine, self.stashed = None, None, []  # ask for the parent's model
                write_message(self.sink, ("need-model", 0))
        elif kind == "model":
            self.model, self.engine = message[2], None
            stashed, self.stashed = self.stashed or [], None
            for m in stashed:
                self.handle(m)
        elif kind == "sweep":
            self._begin(sid, *message[2:])
        elif kind == "ref" and sid == self.sid:
            from .engine.engine import Reference

            g, values, edges = message[2:]
            if g in self.refs:
                self.refs[g][0].values.update(values)  # type: ignore[attr-defined]
            else:
                self.refs[g] = (Reference(sample={}, values=values, fetch=self.compare_at), edges)
        elif kind == "drop" and sid == self.sid:
            for g in message[2]:
                self.refs.pop(g, None)
        elif kind == "unit" and sid == self.sid:
            g, c = message[2:]
            ref, edges = self.refs[g]
            vals = _score_unit(self.engine, ref, self.configs[c], self.compare_at, self.metrics, edges)
            write_message(self.sink, ("result", sid, g, c, vals))  # asks for the next unit too
        elif kind == "end" and sid == self.sid:
            self.refs = {}
        # anything else belongs to a sweep that is over

    def _load(self, files: tuple[str | None, str | None]) -> None:
        from .model import load_model

        before = file_stamps(files)
        try:
            self.model = load_model(str(files[0]), files[1])
        except Exception:  # noqa: BLE001 - the parent reads it too and reports why; this helper will ask for it
            self.model = None
        self.read = (before, file_stamps(files))

    def _begin(self, sid: int, providers: tuple[str, ...], threads: int | None, plan: Any,
               types: Mapping[str, Any], configs: list[frozenset[str]], metrics: tuple[str, ...],
               compare_at: tuple[str, ...]) -> None:
        from .engine.engine import Engine

        if self.model is None:
            raise RuntimeError("no model was sent")
        engine = self.engine
        if engine is None or engine.providers != list(providers) or engine.threads != threads or engine.plan != plan:
            engine = Engine(self.model, providers=list(providers), threads=threads)
            engine.plan = plan  # the cuts of the parent's engine, so every session is the same
        engine._types.update(types)  # and the types it gave the values crossing them
        self.engine = engine
        self.sid, self.configs, self.compare_at = sid, configs, compare_at
        self.metrics = get_metrics(list(metrics))
        self.refs = {}
        write_message(self.sink, ("want", sid, 2))  # one to run, one to come meanwhile


def main() -> int:
    """Helper process: handle the parent's messages until its end of input."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    state = _HelperState(sink)
    while True:
        try:
            message = read_message(source)
        except EOFError:
            return 0
        try:
            state.handle(message)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            write_message(sink, ("error", message[1] if isinstance(message, tuple) else 0, f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    sys.exit(main())
