"""Drawing many figures without waiting for each: worker processes.

Rendering a PNG is single-threaded (layout, Agg, PNG encoding) and takes a tenth of a second or
more per figure; ``runall`` draws a few dozen. :class:`Renderer` sends each figure to a worker
process (:mod:`ptqdebug.plots.worker`, started at the beginning of the run so it imports
matplotlib while the model is read and the engine computes) and collects the written paths at the
end. On Linux one worker process imports matplotlib once and forks its other renderers (idle ones
take the next figure); elsewhere each renderer is a process of its own. Workers are plain
``python -m`` processes, not ``multiprocessing`` ones, so a user's script that calls ``runall`` at
top level is never re-imported by them. With ``workers=0``, or if a worker cannot start, figures
are drawn in-process, one by one.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Renderer", "default_workers", "render"]


def render(kind: str, result: Any, path: str, options: Mapping[str, Any]) -> str:
    """Draw one figure of ``kind`` from ``result`` and save it at ``path``."""
    from . import (
        accumulate_error_figure,
        channel_boxes_figure,
        distribution_figure,
        partial_quantization_figure,
        save_figure,
        stat_info_figure,
    )

    makers: dict[str, Callable[..., Figure]] = {
        "accumulate_error": accumulate_error_figure, "distribution": distribution_figure,
        "channel_boxes": channel_boxes_figure, "partial_quantization": partial_quantization_figure,
        "stat_info": stat_info_figure}
    return str(save_figure(makers[kind](result, **options), path))


#: Environment of a worker process. It draws with Agg, and its numpy starts no BLAS thread pool:
#: the process stays single-threaded until it forks its renderers (forking a multi-threaded
#: process can deadlock the copy, and Python 3.12 warns about it). With ``ptqdebug`` loading its
#: names lazily, a worker never loads ONNX Runtime either, whose import starts a thread too.
WORKER_ENV = {"MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_workers(cores: int | None = None) -> int:
    """Renderers for ``cores`` (default: this machine's): one per core up to four, then half the
    cores, at most eight. They draw while the engine computes, then all at once: on 16 cores
    (runall, ResNet-18-sized, 22 figures) four renderers left runall waiting 0.6 s for its last
    figures after the analyses; eight cut runall from 2.87 to 2.42 s, twelve measured no faster."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, max(4, cores // 2), 8))


def _forks() -> bool:
    """Whether a worker process can fork its other renderers (see :mod:`ptqdebug.plots.worker`)."""
    return sys.platform.startswith("linux")


class Renderer:
    """``submit`` figures, then ``close()`` (or leave the ``with`` block) to get their paths."""

    def __init__(self, workers: int | None = None) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._queues: list[queue.Queue[tuple[Any, ...] | None]] = []
        self._feeders: list[threading.Thread] = []
        self._pending: list[int] = []
        self._done: list[str] = []
        self._next = 0
        renderers = default_workers() if workers is None else workers
        per_process = renderers if _forks() else 1
        for _ in range(-(-renderers // max(per_process, 1))):
            try:
                # own session: a terminal's Ctrl-C reaches ptqdebug, which stops the workers itself
                proc = subprocess.Popen([sys.executable, "-m", "ptqdebug.plots.worker", str(per_process)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env={**os.environ, **WORKER_ENV}, start_new_session=True)
            except OSError:
                break
            jobs: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
            # a feeder thread writes the jobs, so submit() never blocks on a full pipe
            feeder = threading.Thread(target=self._feed, args=(proc, jobs), daemon=True)
            feeder.start()
            self._procs.append(proc)
            self._queues.append(jobs)
            self._feeders.append(feeder)
            self._pending.append(0)

    @staticmethod
    def _feed(proc: subprocess.Popen[bytes], jobs: queue.Queue[tuple[Any, ...] | None]) -> None:
        from ..pipes import write_message

        try:
            while (job := jobs.get()) is not None:
                write_message(proc.stdin, job)  # type: ignore[arg-type]
        except (BrokenPipeError, OSError):
            pass  # the worker died; close() reports the missing figures
        finally:
            if proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass  # the worker was killed

    def submit(self, kind: str, result: Any, path: str | os.PathLike[str], **options: Any) -> None:
        if self._procs:
            i = self._next % len(self._procs)
            self._next += 1
            self._queues[i].put((kind, result, str(path), options))
            self._pending[i] += 1
            return
        self._done.append(render(kind, result, str(path), options))

    def close(self) -> list[Path]:
        """Wait for every figure; raise if a worker failed to draw one."""
        from ..errors import OptionError
        from ..pipes import read_message

        errors: list[str] = []
        refused: list[str] = []  # OptionErrors: the user's to fix (a folder that cannot take a figure)
        for jobs in self._queues:
            jobs.put(None)
        for proc, pending, feeder in zip(self._procs, self._pending, self._feeders):
            for _ in range(pending):
                try:
                    status, value = read_message(proc.stdout)  # type: ignore[arg-type]
                except (EOFError, OSError):
                    errors.append("a figure worker stopped unexpectedly")
                    _kill(proc)  # and the renderers it forked
                    break
                {"ok": self._done, "option": refused}.get(status, errors).append(value)
            feeder.join()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._procs, self._queues, self._feeders, self._pending = [], [], [], []
        done, self._done = self._done, []
        if refused:
            raise OptionError(refused[0])
        if errors:
            raise RuntimeError(f"drawing figures failed: {errors[0]}")
        return [Path(p) for p in done]

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            for proc in self._procs:
                _kill(proc)
            for jobs in self._queues:
                jobs.put(None)
            self._procs, self._queues, self._feeders, self._pending = [], [], [], []
            return
        self.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker and every renderer it forked (its own process group), and reap it."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group is the worker's pid
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
