"""Drawing many figures without waiting for each: a small pool of worker processes.

Rendering a PNG is single-threaded Python and C (layout, Agg, PNG encoding) and takes a tenth of
a second or more per figure; ``runall`` draws a few dozen. :class:`Renderer` hands each figure to a
worker process (started with ``spawn`` at the beginning of the run, so workers import matplotlib
while the engine is still computing) and collects the written paths at the end. With
``workers=0``, or where worker processes cannot start, figures are drawn in-process, one by one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["Renderer", "render"]


def _figure(kind: str, result: Any, options: Mapping[str, Any]):  # noqa: ANN202
    from . import (
        accumulate_error_figure,
        channel_boxes_figure,
        distribution_figure,
        partial_quantization_figure,
        stat_info_figure,
    )

    makers = {"accumulate_error": accumulate_error_figure, "distribution": distribution_figure,
              "channel_boxes": channel_boxes_figure, "partial_quantization": partial_quantization_figure,
              "stat_info": stat_info_figure}
    return makers[kind](result, **options)


def render(kind: str, result: Any, path: str, options: Mapping[str, Any]) -> str:
    """Draw one figure of ``kind`` from ``result`` and save it at ``path`` (a worker's job)."""
    from ._base import save_figure

    return str(save_figure(_figure(kind, result, options), path))


def _warm() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401  (import while the parent computes)


class Renderer:
    """``submit`` figures, then ``close()`` (or leave the ``with`` block) to get their paths."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: list[Future[str] | str] = []
        if workers > 0:
            try:
                import multiprocessing

                self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                for _ in range(workers):
                    self._pool.submit(_warm)
            except (OSError, RuntimeError, ImportError):
                self._pool = None

    def submit(self, kind: str, result: Any, path: str | os.PathLike[str], **options: Any) -> None:
        if self._pool is not None:
            try:
                self._jobs.append(self._pool.submit(render, kind, result, str(path), options))
                return
            except RuntimeError:  # the pool broke: draw here from now on
                self._pool = None
        self._jobs.append(render(kind, result, str(path), options))

    def close(self) -> list[Path]:
        """Wait for every figure; re-raise the first failure."""
        try:
            return [Path(j.result() if isinstance(j, Future) else j) for j in self._jobs]
        finally:
            self._jobs = []
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            return
        self.close()
