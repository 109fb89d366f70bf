"""Calibration inputs in, ``calibration_data/`` out.

:func:`open_source` accepts, and :func:`write_calibration_data` streams one sample at a time into
``OUT/calibration_data/<input name>/<i>.npy`` (the layout every ptqdebug command reads):

* a folder of images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``; other files are ignored), or one
  image file: each image is one sample, preprocessed by :mod:`.preprocess` (single-input models);
* what :func:`ptqdebug.load_data` reads: a ``calibration_data`` folder (one folder per input), a
  folder of ``.npy`` files, an ``.npy`` file (first axis = samples) or an ``.npz`` (one array per
  input, first axis = samples); arrays are taken as already preprocessed;
* a data-loader script ``path/to/file.py:function``: the function is called without arguments and
  returns an iterable of ``dict[input name, ndarray]`` (preprocessed samples; the way to feed
  multi-input models). The file is executed only because the user named it;
* in Python: a numpy array (single-input models; first axis = samples, or the batch axis), one
  ``dict`` sample, an iterable of dicts (a generator streams), a ``CalibrationDataReader`` or a
  :class:`ptqdebug.Dataset`.

Samples are checked against the model inputs (names, rank, fixed dims, finite values). A missing
batch axis is added; an array whose dtype differs from the model's is converted when numpy calls
that a same-kind cast (``float64`` → ``float32``), refused otherwise.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Dataset, load_data, visible_entries
from ..errors import DataError
from ..model import TensorSpec
from ..report.files import write_atomic
from ..userscript import SCRIPT, load_function, user_error
from .preprocess import ImagePreprocess, plan_for, read_image

__all__ = ["IMAGE_SUFFIXES", "Source", "open_source", "write_calibration_data", "write_samples"]

logger = logging.getLogger("ptqdebug.calibration")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class Source:
    """Where samples come from: ``samples()`` yields them one by one (a new iterator each call)."""

    description: str
    samples: Callable[[], Iterator[Sample]]
    count: int | None = None
    #: set when the source already is the destination folder (nothing to write)
    folder: Path | None = None
    #: images, which the preprocessing options turn into tensors (other sources are tensors already)
    images: bool = False


def _natural(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def open_source(inputs: object, specs: Sequence[TensorSpec], preprocess: ImagePreprocess,
                destination: Path | None = None) -> Source:
    """Identify ``inputs`` (see module doc) and return a streaming :class:`Source`."""
    if inputs is None:
        raise DataError("no calibration inputs given; expected a folder of images, .npy/.npz data or a loader script file.py:function")
    if isinstance(inputs, (str, os.PathLike)):
        text = os.fspath(inputs)
        m = SCRIPT.match(text)
        if m and not Path(text).exists():
            return _script_source(Path(m["path"]), m["func"], specs)
        return _path_source(Path(text), specs, preprocess, destination)
    if isinstance(inputs, Dataset):
        return Source("the Dataset", lambda: iter(inputs), len(inputs))
    if isinstance(inputs, np.ndarray):
        return _array_source(inputs, specs)
    if isinstance(inputs, Mapping):
        return Source("the sample dict", lambda: iter([dict(inputs)]), 1)
    if hasattr(inputs, "get_next"):
        reader = inputs

        def drain() -> Iterator[Sample]:
            while (item := reader.get_next()) is not None:  # type: ignore[attr-defined]
                yield item

        return Source("the CalibrationDataReader", _once(drain, "the CalibrationDataReader"))
    if isinstance(inputs, Iterable):
        count = len(inputs) if isinstance(inputs, Sequence) else None
        if isinstance(inputs, Sequence):
            return Source("the sample list", lambda: iter(inputs), count)
        return Source("the sample iterable", _once(lambda: iter(inputs), "the sample iterable"))  # type: ignore[arg-type]
    raise DataError(
        f"calibration inputs are a {type(inputs).__name__}; expected a folder of images, an .npy/.npz file, a "
        "calibration_data folder, a loader script file.py:function, an array or an iterable of dicts"
    )


def _once(make: Callable[[], Iterator[Sample]], what: str) -> Callable[[], Iterator[Sample]]:
    used = False

    def samples() -> Iterator[Sample]:
        nonlocal used
        if used:
            raise DataError(f"{what} can be read only once; pass a list or a folder to read it again")
        used = True
        return make()

    return samples


def _path_source(path: Path, specs: Sequence[TensorSpec], pre: ImagePreprocess, destination: Path | None) -> Source:
    if not path.exists():
        raise DataError(f"calibration inputs {str(path)!r} do not exist; expected a folder of images, .npy/.npz data or a loader script file.py:function")
    if destination is not None and path.is_dir():
        src, dst = path.resolve(), destination.resolve()
        if src == dst:
            data = load_data(path, specs)
            return Source(repr(str(path)), lambda: iter(data), len(data), folder=path)
        if dst in src.parents:
            raise DataError(f"calibration inputs {str(path)!r} are inside the output folder {str(destination)!r}, which is rewritten; use another output folder")
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return _image_source([path], specs, pre, repr(str(path)))
        if path.suffix.lower() in (".npy", ".npz"):
            data = load_data(path, specs)
            return Source(repr(str(path)), lambda: iter(data), len(data))
        raise DataError(
            f"calibration inputs {str(path)!r} are a {path.suffix or 'extensionless'} file; expected a folder, an image, "
            "an .npy/.npz file or a loader script file.py:function"
        )
    entries = visible_entries(path, "calibration inputs folder")
    images = sorted((p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: _natural(p.name))
    arrays = [p for p in entries if p.is_dir() or p.suffix.lower() == ".npy"]
    if images and arrays:
        folders, npys = [p.name for p in arrays if p.is_dir()], [p.name for p in arrays if not p.is_dir()]
        found = []
        if folders:
            found.append(("the folders " if len(folders) > 1 else "the folder ") + ", ".join(map(repr, folders[:3]))
                         + (" ..." if len(folders) > 3 else ""))
        if npys:
            found.append(f"{len(npys)} .npy file{'s' if len(npys) > 1 else ''} ({npys[0]!r}{', ...' if len(npys) > 1 else ''})")
        raise DataError(f"{str(path)!r} holds images and {' and '.join(found)}; expected images only, or only per-input "
                        "folders of .npy data: move the other kind elsewhere")
    if images:
        skipped = len(entries) - len(images)
        if skipped:
            logger.warning("ignoring %s in %s: not .jpg/.jpeg/.png/.bmp images", "1 file" if skipped == 1 else f"{skipped} files", path)
        return _image_source(images, specs, pre, repr(str(path)))
    if arrays:
        data = load_data(path, specs)
        return Source(repr(str(path)), lambda: iter(data), len(data))
    raise DataError(
        f"no images found in {str(path)!r} (looked for .jpg, .jpeg, .png, .bmp); expected a folder of images, "
        ".npy files, or one folder per model input holding 0.npy, 1.npy, ..."
    )


def _image_source(files: list[Path], specs: Sequence[TensorSpec], pre: ImagePreprocess, where: str) -> Source:
    if len(specs) != 1:
        names = ", ".join(repr(s.name) for s in specs)
        raise DataError(f"the model has {len(specs)} inputs ({names}); images can feed only a single-input model: use a loader script file.py:function that returns dicts")
    plan = plan_for(specs[0], pre)
    logger.info("images: %s, %dx%d, %s, %s, resize %s", where, plan.width, plan.height, plan.color, plan.layout, plan.resize)

    def samples() -> Iterator[Sample]:
        for f in files:
            try:
                yield {plan.name: plan(read_image(f))}
            except DataError as exc:  # which image, when the problem is one image's
                message = str(exc)
                raise DataError(message if str(f) in message else f"image {f.name!r}: {message}") from None

    return Source(f"{len(files)} images in {where}", samples, len(files), images=True)


def _array_source(arr: np.ndarray, specs: Sequence[TensorSpec]) -> Source:
    if len(specs) != 1:
        raise DataError(f"an array feeds a single-input model, but the model has {len(specs)} inputs; pass a dict per sample")
    spec = specs[0]
    rank = None if spec.shape is None else len(spec.shape)
    if rank is not None and arr.ndim == rank + 1:
        items = [arr[i] for i in range(arr.shape[0])]
    elif rank is None or arr.ndim == rank:
        items = [arr[i: i + 1] for i in range(arr.shape[0])]
    else:
        raise DataError(f"the array has shape {list(arr.shape)}; expected samples of {spec.describe()} stacked along the first axis")
    return Source(f"the array {list(arr.shape)}", lambda: ({spec.name: x} for x in items), len(items))


# -- loader scripts ---------------------------------------------------------------------------
def _user_error(exc: BaseException, script: Path, what: str) -> DataError:
    return user_error(exc, script, what, DataError, "fix the loader script")  # type: ignore[return-value]


def _script_source(path: Path, func: str, specs: Sequence[TensorSpec]) -> Source:
    fn = load_function(path, func, "loader script", DataError, f"def {func}(): return [dict(...), ...]")
    what = f"{path.name}:{func}()"

    def samples() -> Iterator[Sample]:
        try:
            result = fn()
        except Exception as exc:
            raise _user_error(exc, path, what) from None
        if isinstance(result, Mapping):
            result = [result]
        if not isinstance(result, Iterable) or isinstance(result, (str, bytes)):
            raise DataError(f"{what} returned a {type(result).__name__}; expected an iterable of dict[input name, ndarray]")
        it = iter(result)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as exc:
                raise _user_error(exc, path, what) from None
            yield item

    return Source(what, samples)


# -- checking and writing ---------------------------------------------------------------------
def _coerce(sample: object, specs: Sequence[TensorSpec], where: str) -> Sample:
    if not isinstance(sample, Mapping):
        raise DataError(f"{where} is a {type(sample).__name__}; expected a dict of input name → array")
    names = [s.name for s in specs]
    missing = [n for n in names if n not in sample]
    extra = [str(n) for n in sample if n not in names]
    if missing or extra:
        raise DataError(
            f"{where} has inputs {', '.join(repr(str(n)) for n in sample) or 'none'}; the model expects "
            f"{', '.join(map(repr, names))}" + (f" (missing {', '.join(map(repr, missing))})" if missing else "")
            + (f" (unknown {', '.join(map(repr, extra))})" if extra else "")
        )
    out: Sample = {}
    for spec in specs:
        arr = np.asarray(sample[spec.name])
        if arr.dtype != spec.dtype:
            if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
                raise DataError(f"{where}: input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}; convert it with .astype(np.{spec.dtype.name})")
            arr = arr.astype(spec.dtype)
        if spec.shape is not None:
            if arr.ndim == len(spec.shape) - 1:
                arr = arr[None]
            if arr.ndim != len(spec.shape) or any(isinstance(d, int) and d > 0 and d != n for d, n in zip(spec.shape, arr.shape)):
                raise DataError(f"{where}: input {spec.name!r} has shape {list(arr.shape)}, the model expects {spec.describe()} (a name or ? = any size)")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(f"{where}: input {spec.name!r} contains {'NaN' if np.isnan(arr).any() else 'inf'} values; expected finite numbers")
        out[spec.name] = np.asarray(arr, order="C")  # (ascontiguousarray would make a 0-d input 1-d)
    return out


def check_replaceable(folder: Path, inputs: Collection[str] | None = None) -> None:
    """Refuse an existing ``calibration_data`` folder that holds anything ptqdebug did not write,
    or (given the model's ``inputs``) data of an input this model does not have: another model's;
    and a symbolic link, whose target's files clearing would delete."""
    if folder.is_symlink():
        raise DataError(f"{str(folder)!r} is a symbolic link; ptqdebug replaces that folder, and would empty what it "
                        "points to: remove the link or choose another output folder")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} exists and is not a folder; remove it or choose another output folder")
    for entry in folder.iterdir():
        if inputs is not None and entry.is_dir() and entry.name not in inputs:
            raise DataError(f"{str(folder)!r} holds data for input {entry.name!r}, which this model does not have (another "
                            "model's calibration data); remove it or choose another output folder")
        files = list(entry.iterdir()) if entry.is_dir() else [entry]
        strays = [p for p in files if not (entry.is_dir() and p.is_file() and re.fullmatch(r"\d+\.npy", p.name))]
        if strays:
            raise DataError(
                f"{str(folder)!r} holds {str(strays[0].relative_to(folder))!r}, which is not calibration data written by "
                "ptqdebug; remove it or choose another output folder"
            )



def clear_folder(folder: Path) -> None:
    """Remove an earlier run's ``<input>/<i>.npy`` files (after :func:`check_replaceable`)."""
    check_replaceable(folder)
    if folder.exists():
        for entry in list(folder.iterdir()):
            for p in entry.iterdir():
                p.unlink()
            entry.rmdir()


def replace_folder(staging: Path, folder: Path) -> None:
    """Put a fully written ``staging`` folder in place of ``folder`` (an earlier run's data)."""
    clear_folder(folder)
    if folder.exists():
        folder.rmdir()
    os.replace(staging, folder)


def write_calibration_data(source: Source, folder: Path, specs: Sequence[TensorSpec], data_num: int | None = None) -> int:
    """Stream ``source`` into ``folder/<input>/<i>.npy``; return the number of samples written."""
    if source.folder is not None:
        n = source.count or 0
        return n if data_num is None else min(n, data_num)
    iterator: Iterable[Sample] = source.samples()
    if data_num is not None:
        iterator = itertools.islice(iterator, data_num)
    return write_samples(iterator, folder, specs, source.description)


def write_samples(samples: Iterable[Sample], folder: Path, specs: Sequence[TensorSpec], description: str) -> int:
    """Write ``samples`` as a calibration_data folder, ``folder/<input>/<i>.npy`` (emptied
    first); return how many were written."""
    bad = [s.name for s in specs if not s.name or "/" in s.name or "\\" in s.name or s.name in (".", "..")]
    if bad:
        raise DataError(f"model input name {bad[0]!r} cannot be a folder name in calibration_data; rename the model input")
    clear_folder(folder)
    n = 0
    for i, sample in enumerate(samples):
        sample = _coerce(sample, specs, f"sample {i} of {description}")
        for spec in specs:
            d = folder / spec.name
            d.mkdir(parents=True, exist_ok=True)
            array = sample[spec.name]
            write_atomic(d / f"{i}.npy", functools.partial(np.save, arr=array, allow_pickle=False), binary=True)
        n = i + 1
    if n == 0:
        raise DataError(f"{description} gave no samples; expected at least one")
    return n
