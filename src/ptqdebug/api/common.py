"""Pieces every compatible function shares: argument checks, contexts, logging of tables."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import onnx

from ..analyses.sensitivity import Progress
from ..context import Context, open_context
from ..errors import OptionError
from ..model import CalibratedModel
from ..report.files import StagedOutput
from .checks import check_bool

__all__ = ["FloatModelArg", "ModelArg", "ProgressFactory", "context_for", "logger", "show_info", "step_progress", "write_all"]

logger = logging.getLogger("ptqdebug")

ModelArg = str | os.PathLike[str] | onnx.ModelProto | CalibratedModel | Context
FloatModelArg = str | os.PathLike[str] | onnx.ModelProto | None
#: Called with a step title; returns that step's ``progress(done, total)`` callback.
ProgressFactory = Callable[[str], Progress]


def write_all(save_dir: str | os.PathLike[str], write: Callable[[Path], object]) -> list[Path]:
    """``write(folder)`` into a staging folder inside ``save_dir``, then every file moved into
    place (:class:`~ptqdebug.report.files.StagedOutput`), and their final paths: a function that
    writes several files (figures, a JSON beside them) writes all of them or, on a full disk or
    Ctrl-C, none."""
    with StagedOutput(save_dir) as stage:
        assert stage.root is not None
        write(stage.root)
        return stage.commit()


def step_progress(progress: Progress | ProgressFactory | None, title: str) -> Progress | None:
    """A per-step callback from either a plain callback or a factory of them."""
    if progress is None:
        return None
    try:
        made = cast(ProgressFactory, progress)(title)  # a plain callback raises TypeError here
    except TypeError:
        return progress  # type: ignore[return-value]
    return made if callable(made) else progress  # type: ignore[return-value]


def context_for(
    model_or_file: ModelArg,
    calibrated_data: object,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    cache: bool = True,
    workers: int | None = None,
    executor: str | None = None,
) -> Context:
    """Check the two required arguments the way the original does, and the runtime options, then
    open a context."""
    from ..parallel.cluster import check_ray

    if model_or_file is None:
        raise OptionError("there is no calibrated model: pass model_or_file (e.g. './calibrated_model.onnx')")
    if calibrated_data is None and not isinstance(model_or_file, Context):
        raise OptionError("there is no calibration data: pass calibrated_data (e.g. './calibration_data/')")
    cache = check_bool(cache, "cache")
    if executor == "ray":
        check_ray()
    if isinstance(model_or_file, Context):  # it holds the model, the data and the runtime already
        fixed = [name for name, given in (("float_model", float_model is not None), ("providers", providers is not None),
                                          ("cache", not cache and model_or_file.cache.enabled)) if given]
        if fixed:
            raise OptionError(f"{fixed[0]} is fixed when the context is opened, and a context was given; pass it to "
                              "ptqdebug.open_context instead (or leave it out here)")
        model_or_file.check_same_data(calibrated_data)
        model_or_file.check_unchanged()
    return open_context(model_or_file, calibrated_data, float_model=float_model, providers=providers, cache=cache,
                        workers=workers, executor=executor)


def is_runtime_error(exc: BaseException) -> bool:
    """An exception raised by ONNX Runtime itself (its types share no base class but the module)."""
    return type(exc).__module__.startswith("onnxruntime")


@contextmanager
def runtime_errors(ctx: Context, data_num: int | None = None) -> Iterator[None]:
    """Turn an ONNX Runtime failure into a one-line user error when the user's model fails on its
    own too (a broken model, or a sample of a shape it cannot take: see
    :meth:`Context.runtime_failure`); anything else — ptqdebug's own graph surgery failing — keeps
    its traceback, as a bug should."""
    try:
        yield
    except Exception as exc:
        if not is_runtime_error(exc):
            raise
        problem = ctx.runtime_failure(data_num)
        if problem is None:
            raise
        raise problem from exc


def show_info(text: str) -> None:
    """Log a table at INFO; make sure it is seen even when logging is not configured."""
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.info(text)
