"""Scoring configurations in parallel: worker processes on this machine, or a Ray cluster.

A sweep's configurations are independent, so they can be split between workers. Each worker gets
a :class:`Job` — the loaded model, the selected samples, the options and its share of the
configurations (interleaved, so every worker gets a mix of cheap late and costly early
candidates) — builds its own engine and returns its scores. Results are exactly those of the
in-process sweep up to float rounding (each worker runs fewer ONNX Runtime threads).

* ``workers=N``: N processes started as ``python -m ptqdebug.parallel`` (never through
  ``multiprocessing``, which would re-import the user's script), each with cores/N threads.
* ``executor="ray"``: one Ray task per share on the cluster ``ray.init()`` connects to (the
  ``ray`` extra; a local instance when none is configured).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import OptionError
from .model import CalibratedModel
from .pipes import read_message, write_message

__all__ = ["EXECUTORS", "Job", "run_job", "score_in_parallel"]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    model: CalibratedModel
    samples: tuple[dict[str, np.ndarray], ...]
    providers: tuple[str, ...]
    threads: int | None
    batch_size: int
    metrics: tuple[str, ...]
    compare_at: tuple[str, ...]
    configurations: tuple[frozenset[str], ...]


def run_job(job: Job, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score a job's configurations in this process (what every worker runs)."""
    from .analyses.sensitivity import score_configurations
    from .context import Context
    from .data import load_data
    from .engine.engine import Engine
    from .metrics import get_metrics

    data = load_data(list(job.samples), job.model.inputs)
    shapes = {k: tuple(v.shape) for k, v in job.samples[0].items()}
    engine = Engine(job.model, providers=list(job.providers), threads=job.threads, shapes=shapes)
    ctx = Context(job.model, data, engine, cache=False)
    ctx.batch_size = job.batch_size
    return score_configurations(ctx, job.configurations, metrics=get_metrics(list(job.metrics)),
                                compare_at=job.compare_at, data_num=None, progress=progress)


def _shares(n: int, parts: int) -> list[list[int]]:
    return [idx for idx in (list(range(i, n, parts)) for i in range(parts)) if idx]


def score_in_parallel(
    ctx: object,
    configurations: Sequence[Collection[str]],
    *,
    metrics: Sequence[str],
    compare_at: Sequence[str],
    data_num: int | None,
    workers: int,
    executor: str = "local",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``configurations`` between ``workers`` and gather ``(scores, nonfinite)`` in order."""
    if executor not in EXECUTORS:
        raise OptionError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    samples = tuple(ctx.samples(data_num)[i] for i in range(len(ctx.samples(data_num))))  # type: ignore[attr-defined]
    shares = _shares(len(configurations), max(1, workers))
    cores = os.cpu_count() or 1
    threads = max(1, cores // len(shares)) if executor == "local" else ctx.engine.threads  # type: ignore[attr-defined]
    jobs = [Job(ctx.model, samples, tuple(ctx.engine.providers), threads, ctx.batch_size, tuple(metrics),  # type: ignore[attr-defined]
                tuple(compare_at), tuple(frozenset(configurations[i]) for i in share)) for share in shares]
    results = _run_ray(jobs) if executor == "ray" else _run_processes(jobs, progress)
    scores = np.full((len(configurations), len(metrics)), np.nan)
    nonfinite = np.zeros(len(configurations), dtype=bool)
    for share, (s, nf) in zip(shares, results):
        scores[share] = s
        nonfinite[share] = nf
    return scores, nonfinite


def _run_processes(jobs: list[Job], progress: Callable[[int, int], None] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    procs = [subprocess.Popen([sys.executable, "-m", "ptqdebug.parallel"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              start_new_session=True)  # Ctrl-C reaches ptqdebug, which stops the workers
             for _ in jobs]
    inbox: queue.Queue[tuple[int, object]] = queue.Queue()

    def pump(i: int, proc: subprocess.Popen[bytes], job: Job) -> None:
        try:
            write_message(proc.stdin, job)  # type: ignore[arg-type]
            proc.stdin.close()  # type: ignore[union-attr]
            while True:
                message = read_message(proc.stdout)  # type: ignore[arg-type]
                inbox.put((i, message))
                if message[0] != "progress":
                    return
        except (EOFError, OSError) as exc:
            inbox.put((i, ("error", f"worker stopped: {exc or 'no reply'}")))

    threads = [threading.Thread(target=pump, args=(i, p, j), daemon=True) for i, (p, j) in enumerate(zip(procs, jobs))]
    for t in threads:
        t.start()
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    done = [0.0] * len(jobs)  # configurations finished per worker
    total = sum(len(j.configurations) for j in jobs)
    try:
        while len(results) < len(jobs):
            i, message = inbox.get()
            kind = message[0]  # type: ignore[index]
            if kind == "progress":
                d, t = message[1], message[2]  # type: ignore[index]
                done[i] = len(jobs[i].configurations) * d / t
                if progress is not None:
                    progress(int(round(sum(done))), total)
            elif kind == "done":
                results[i] = (message[1], message[2])  # type: ignore[index]
            else:
                raise RuntimeError(f"a sweep worker failed: {message[1]}")  # type: ignore[index]
    finally:
        for p in procs:
            if p.poll() is None and len(results) < len(jobs):
                p.kill()
            p.wait()
    return [results[i] for i in range(len(jobs))]


def _run_ray(jobs: list[Job]) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        import ray
    except ImportError:
        raise OptionError("executor 'ray' needs Ray: pip install 'ptqdebug[ray]'") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(run_job)
    return ray.get([remote.remote(job) for job in jobs])


def main() -> int:
    """Worker process: read one Job, report progress, reply ``("done", scores, nonfinite)``."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    try:
        job = read_message(source)
        scores, nonfinite = run_job(job, progress=lambda d, t: write_message(sink, ("progress", d, t)))
        write_message(sink, ("done", scores, nonfinite))
    except Exception as exc:  # reported to the parent, which raises it
        write_message(sink, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
