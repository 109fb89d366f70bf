"""Scoring a sweep on a Ray cluster: one task per share of the configurations (interleaved, so
every task gets a mix of cheap late and costly early candidates), each rebuilding an engine from
the pickled model (:func:`run_job`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OptionError
from ..metrics import get_metrics
from ..model import CalibratedModel

__all__ = ["CONNECT_TIMEOUT", "Job", "check_ray", "run_job", "score_on_ray"]


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
    from ..analyses.sensitivity import configuration_values
    from ..context import Context
    from ..data import load_data
    from ..engine.engine import Engine

    data = load_data(list(job.samples), job.model.inputs)
    shapes = {k: tuple(v.shape) for k, v in job.samples[0].items()}
    engine = Engine(job.model, providers=list(job.providers), threads=job.threads, shapes=shapes)
    ctx = Context(job.model, data, engine, cache=False)
    ctx.batch_size = job.batch_size
    return configuration_values(ctx, job.configurations, metrics=get_metrics(list(job.metrics)),
                                compare_at=job.compare_at, data_num=None, progress=progress)


def _shares(n: int, parts: int) -> list[list[int]]:
    return [idx for idx in (list(range(i, n, parts)) for i in range(parts)) if idx]


def score_on_ray(ctx: Any, configurations: Sequence[Collection[str]], metrics: Sequence[str],
                 compare_at: Sequence[str], data_num: int | None, workers: int) -> np.ndarray:
    """The per-sample values of ``configurations`` (``[configuration, tensor, metric, sample]``),
    computed by ``workers`` Ray tasks."""
    samples = tuple(ctx.samples(data_num)[i] for i in range(len(ctx.samples(data_num))))
    shares = _shares(len(configurations), max(1, workers))
    jobs = [Job(ctx.model, samples, tuple(ctx.engine.providers), ctx.engine.threads, ctx.batch_size, tuple(metrics),
                tuple(compare_at), tuple(frozenset(configurations[i]) for i in share)) for share in shares]
    results = _run_ray(jobs)
    values = np.full((len(configurations), len(compare_at), len(metrics), len(samples)), np.nan)
    for share, vals in zip(shares, results):
        values[share] = vals
    return values


#: Seconds the head node ``$RAY_ADDRESS`` names has to accept a connection before Ray is asked to connect
CONNECT_TIMEOUT = 10.0


def _check_ray_address(address: str) -> None:
    """Refuse a ``$RAY_ADDRESS`` that is not ``host:port`` (or ``ray://host:port``, ``auto``,
    ``local``), or whose host does not answer on that port within :data:`CONNECT_TIMEOUT` (Ray
    itself retries for minutes), in one line."""
    import socket

    if address in ("", "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 address: [::1]:6379
    fix = "set it to the head node's host:port (e.g. 10.0.0.5:6379), or unset it to start Ray on this machine"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"RAY_ADDRESS is {address!r}; expected host:port of a Ray cluster's head node: {fix}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise OptionError(f"cannot reach the Ray cluster at RAY_ADDRESS={address!r} ({reason} within "
                          f"{CONNECT_TIMEOUT:g} s); expected a running cluster there: start it (ray start --head), "
                          f"or {fix}") from None


def check_ray() -> None:
    """Refuse ``executor="ray"`` before any work where Ray is missing or ``$RAY_ADDRESS`` names
    no cluster this machine can reach (nothing to check when the caller connected Ray already)."""
    import importlib.util
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return
    if importlib.util.find_spec("ray") is None:
        raise OptionError("executor 'ray' needs Ray, which is not installed; expected pip install 'ptqdebug[ray]' "
                          "(or leave out executor for processes on this machine)")
    _check_ray_address(os.environ.get("RAY_ADDRESS", ""))


def _run_ray(jobs: list[Job]) -> list[np.ndarray]:
    try:
        import ray
    except ImportError:
        raise OptionError("executor 'ray' needs Ray: pip install 'ptqdebug[ray]'") from None
    started = not ray.is_initialized()
    try:
        if started:
            address = os.environ.get("RAY_ADDRESS", "")
            _check_ray_address(address)
            try:
                ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, TimeoutError, ValueError) as exc:  # Ray's own words for a cluster it cannot use
                where = f"the Ray cluster at RAY_ADDRESS={address!r}" if address else "a Ray instance"
                reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise OptionError(f"cannot connect to {where}: {reason}; expected a running cluster: check RAY_ADDRESS, "
                                  "or unset it to start Ray on this machine") from None
        remote = ray.remote(run_job)
        refs = [remote.remote(job) for job in jobs]
        try:
            return ray.get(refs)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    except KeyboardInterrupt:  # Ctrl-C: the Ray instance this run started goes with it, not minutes later
        if started:
            ray.shutdown()
        raise
