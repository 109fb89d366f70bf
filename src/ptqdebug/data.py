"""Calibration data in: samples checked against the model's inputs.

A *sample* is one feed, ``dict[input name, ndarray]``. :func:`load_data` accepts:

* the original layout, a folder with one sub-folder per model input named exactly like it, each
  holding ``0.npy``, ``1.npy``, ... (sorted in numeric order: ``2.npy`` before ``10.npy``; the
  original tool sorted them as text and so took ``10.npy`` first);
* for a single-input model, a folder of ``.npy`` files, or one ``.npy`` file whose first axis
  indexes samples;
* a ``.npz`` file with one array per input name, first axis indexing samples;
* an ``onnxruntime.quantization.CalibrationDataReader`` (anything with ``get_next()``), a single
  ``dict``, or any iterable of dicts;
* a :class:`Dataset` (returned as is).

Files are read with ``np.load(..., allow_pickle=False)``; a pickled array is refused, never loaded.
Folder data is read lazily, one sample at a time, so memory does not grow with the sample count.
Every sample is checked against the model's inputs (names, dtype, rank, fixed dims, finite values)
and a mismatch names what was found and what was expected.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import DataError, OptionError
from .model import TensorSpec

__all__ = ["Dataset", "check_data_num", "data_folder_around", "load_data", "select", "visible_entries"]

Sample = dict[str, np.ndarray]


def _pickled(path: Path) -> DataError:
    return DataError(
        f"{str(path)!r} holds a pickled object array, which ptqdebug refuses to load "
        "(allow_pickle=False); save plain numeric arrays with np.save"
    )


def _sniff(path: Path, expected: str) -> str:
    """What a data file holds, from its first bytes: ``npy``, ``npz``, or a :class:`DataError`
    that says what it is instead (a pickle is named as such and never unpickled)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise DataError(f"{str(path)!r} could not be read ({exc.strerror or exc}); expected a readable {expected} file") from None
    if head == b"\x93NUMPY":
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if head[:1] == b"\x80":
        raise _pickled(path)
    what = "empty" if not head else f"not an {expected} file (it starts with {head!r})"
    saver = "np.save" if expected == ".npy" else "np.savez"
    raise DataError(f"{str(path)!r} is {what}; expected an array saved with {saver}")


def _native(arr: np.ndarray) -> np.ndarray:
    """The array in the machine's byte order (ONNX Runtime reads native-order buffers only)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _np_header(path: Path) -> np.ndarray:
    """An empty stand-in with the file's dtype and shape, read from the .npy header only."""
    if _sniff(path, ".npy") == "npz":
        raise DataError(f"{str(path)!r} is an .npz archive named .npy; rename it to .npz or save one array per file with np.save")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{str(path)!r} is not a readable .npy file ({exc}); expected an array saved with np.save") from None
    if dtype.hasobject:
        raise _pickled(path)
    dtype = dtype if dtype.isnative else dtype.newbyteorder("=")
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=[0] * len(shape))


def _np_load(path: Path) -> np.ndarray:
    if _sniff(path, ".npy") == "npz":
        raise DataError(f"{str(path)!r} is an .npz archive named .npy; rename it to .npz or save one array per file with np.save")
    try:
        value = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _pickled(path) from None
        raise DataError(f"{str(path)!r} is not a readable .npy file ({exc}); expected an array saved with np.save") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{str(path)!r} could not be read ({exc}); expected an array saved with np.save") from None
    return _native(value)


def _numeric_key(path: Path) -> tuple[int, int | str, str]:
    stem = path.stem
    return (0, int(stem), "") if re.fullmatch(r"\d+", stem) else (1, stem, path.name)


def visible_entries(folder: Path, what: str = "calibration data folder") -> list[Path]:
    """The entries of a data folder (hidden ones left out), by name. A folder ptqdebug may not list
    (no read permission), or whose entries it may not look at (no execute permission: the first
    entry tells), is a :class:`DataError` here, before an ``is_dir()`` on an entry raises
    ``PermissionError``."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if entries:
            entries[0].lstat()
    except OSError as exc:
        raise DataError(f"{what} {str(folder)!r} cannot be read ({exc.strerror or exc}); expected a folder ptqdebug "
                        "may list and enter: check its permissions (chmod u+rx)") from None
    return sorted(entries, key=lambda p: p.name)


def data_folder_around(path: str | os.PathLike[str], inputs: Sequence[TensorSpec]) -> Path | None:
    """The nearest existing folder at or above ``path`` laid out as calibration data for
    ``inputs`` (one folder per input and nothing else, or for one input only numbered ``.npy``
    files: ``0.npy``, ``1.npy``, ...), or None. A file or folder written there would make it unreadable as data: a command that writes
    but is given no data folder (``export``) refuses such a place."""
    names = {s.name for s in inputs}
    target = Path(os.path.realpath(path))
    for folder in (target, *target.parents):
        try:
            entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
            per_input = {p.name for p in entries} == names and all(p.is_dir() for p in entries)
            arrays = len(names) == 1 and all(p.suffix == ".npy" and p.stem.isdigit() and p.is_file() for p in entries)
        except OSError:  # not there (yet), not a folder, not readable: not data
            continue
        if entries and (per_input or arrays):
            return folder
    return None


class Dataset(Sequence[Sample]):
    """Validated samples, read on demand.

    ``Dataset[i]`` returns sample ``i`` as a dict; ``len()`` is the sample count. ``source``
    says where the data came from, for messages and reports.
    """

    def __init__(self, loaders: Sequence[Callable[[], Sample]], inputs: Sequence[TensorSpec], source: str,
                 labels: Sequence[str] | None = None, shapes: Sequence[Mapping[str, tuple[int, ...]]] | None = None) -> None:
        self._loaders = list(loaders)
        self.inputs = tuple(inputs)
        self.source = source
        self.labels = tuple(labels) if labels is not None else tuple(str(i) for i in range(len(self._loaders)))
        self._shapes = list(shapes) if shapes is not None else None

    def shapes(self, i: int) -> dict[str, tuple[int, ...]]:
        """Sample ``i``'s input shapes, without reading its values when the files' headers tell."""
        if self._shapes is not None:
            return dict(self._shapes[i])
        return {name: tuple(np.shape(arr)) for name, arr in self[i].items()}

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.subset(range(*i.indices(len(self))))
        sample = self._loaders[i]()
        if isinstance(sample, Mapping):
            sample = {k: _native(v) if isinstance(v, np.ndarray) else v for k, v in sample.items()}
        _check_sample(sample, self.inputs, f"sample {self.labels[i]} of {self.source}", values=True)
        return sample

    def subset(self, positions: Sequence[int], source: str | None = None) -> Dataset:
        """The samples at ``positions``, in that order, with their labels (``source``: what to call
        them in messages, default this data's)."""
        return Dataset([self._loaders[j] for j in positions], self.inputs, source or self.source,
                       [self.labels[j] for j in positions], None if self._shapes is None else [self._shapes[j] for j in positions])

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when ``n`` is None)."""
        return self if n is None else self[:n]


def _check_sample(sample: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec], where: str, values: bool) -> None:
    if not isinstance(sample, Mapping):
        hint = ("; images are read by ptqdebug.calibrate, which writes the calibration_data folder the analyses take"
                if isinstance(sample, (str, os.PathLike)) else "")
        raise DataError(f"{where} is a {type(sample).__name__}; expected a dict of input name → array{hint}")
    names = [s.name for s in inputs]
    missing = [n for n in names if n not in sample]
    extra = [n for n in sample if n not in names]
    if missing or extra:
        found = ", ".join(repr(n) for n in sample) or "nothing"
        raise DataError(
            f"{where} has inputs {found}; the model expects {', '.join(repr(n) for n in names)}"
            + (f" (missing {', '.join(map(repr, missing))})" if missing else "")
            + (f" (unknown {', '.join(map(repr, extra))})" if extra else "")
        )
    for spec in inputs:
        arr = sample[spec.name]
        if not isinstance(arr, np.ndarray):
            raise DataError(f"{where}: input {spec.name!r} is a {type(arr).__name__}; expected a numpy array")
        if arr.dtype.newbyteorder("=") != spec.dtype:
            raise DataError(
                f"{where}: input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}; "
                f"convert it with .astype(np.{spec.dtype.name})"
            )
        if arr.size == 0:
            raise DataError(
                f"{where}: input {spec.name!r} has shape {list(arr.shape)}, which holds no values; "
                "expected at least one element along every axis"
            )
        if spec.shape is not None:
            if arr.ndim != len(spec.shape) or any(
                isinstance(d, int) and d > 0 and d != n for d, n in zip(spec.shape, arr.shape)
            ):
                raise DataError(
                    f"{where}: input {spec.name!r} has shape {list(arr.shape)}, the model expects "
                    f"{spec.describe()} (a name or ? = any size)"
                )
        if values and arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = "NaN" if np.isnan(arr).any() else "inf"
            raise DataError(f"{where}: input {spec.name!r} contains {bad} values; expected finite numbers")


def _from_memory(samples: Iterable[Mapping[str, np.ndarray]], inputs: Sequence[TensorSpec], source: str,
                 limit: int | None) -> Dataset:
    loaded: list[Sample] = []
    for i, sample in enumerate(samples):
        if limit is not None and i >= limit:
            break
        sample = dict(sample) if isinstance(sample, Mapping) else sample
        _check_sample(sample, inputs, f"sample {i} of {source}", values=False)  # type: ignore[arg-type]
        loaded.append(sample)  # type: ignore[arg-type]
    shapes = [{k: tuple(v.shape) for k, v in s.items()} for s in loaded]
    loaders = [lambda s=s: s for s in loaded]
    return Dataset(loaders, inputs, source, shapes=shapes)


def _split_samples(arr: np.ndarray, spec: TensorSpec, where: str) -> list[np.ndarray]:
    rank = None if spec.shape is None else len(spec.shape)
    # np.asarray(order="C"), not np.ascontiguousarray, which makes a 0-d sample (a scalar input) 1-d
    if rank is not None and arr.ndim == rank + 1:
        return [np.asarray(arr[i], order="C") for i in range(arr.shape[0])]
    if arr.ndim == 0:  # one sample of a scalar input
        return [np.asarray(arr, order="C")]
    if rank is None or arr.ndim == rank:
        return [np.asarray(arr[i: i + 1], order="C") for i in range(arr.shape[0])]
    raise DataError(
        f"{where}: input {spec.name!r} has shape {list(arr.shape)}; expected samples of {spec.describe()} "
        "stacked along a new first axis (or along the batch axis)"
    )


def _from_arrays(arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec], source: str) -> Dataset:
    names = [s.name for s in inputs]
    if sorted(arrays) != sorted(names):
        raise DataError(
            f"{source} holds {'arrays ' + ', '.join(map(repr, arrays)) if arrays else 'no arrays'}; expected one per model input: "
            f"{', '.join(map(repr, names))}"
        )
    per_input = {s.name: _split_samples(arrays[s.name], s, source) for s in inputs}
    counts = {n: len(v) for n, v in per_input.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"{source} has unequal sample counts per input {counts}; expected the same count for every input")
    n = next(iter(counts.values()))
    samples = [{name: per_input[name][i] for name in names} for i in range(n)]
    return _from_memory(samples, inputs, source, None)


def _check_same_names(folder: Path, per_input: Mapping[str, list[Path]]) -> None:
    """Sample i is the files of one name in every input's folder: a file missing from one of them
    is named, not paired by position with another sample's file."""
    (first, names), *others = [(k, {p.name for p in v}) for k, v in per_input.items()]
    for name, here in others:
        found = "; ".join(f"{', '.join(map(repr, files[:3]))}{' ...' if len(files) > 3 else ''} only in {where!r}"
                          for files, where in ((_by_number(names - here), first), (_by_number(here - names), name)) if files)
        if found:
            raise DataError(
                f"calibration data folder {str(folder)!r} has different file names per input ({found}); expected the same "
                "names in every input folder (a sample is the files of one name): add or remove the unmatched files"
            )


def _by_number(names: set[str]) -> list[str]:
    return sorted(names, key=lambda n: _numeric_key(Path(n)))


def _from_folder(folder: Path, inputs: Sequence[TensorSpec]) -> Dataset:
    entries = visible_entries(folder)
    if not entries:
        raise DataError(f"calibration data folder {str(folder)!r} is empty; expected one folder per model input holding 0.npy, 1.npy, ...")
    names = [s.name for s in inputs]
    dirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file()]
    if not dirs and len(inputs) == 1 and all(p.suffix == ".npy" for p in files):
        per_input = {names[0]: sorted(files, key=_numeric_key)}
    else:
        if files:
            raise DataError(
                f"calibration data folder {str(folder)!r} contains the file {files[0].name!r}; expected only "
                f"one folder per model input ({', '.join(map(repr, names))})"
            )
        found = [p.name for p in dirs]
        if sorted(found) != sorted(names):
            raise DataError(
                f"calibration data folder {str(folder)!r} has folders {', '.join(map(repr, found))}; the model "
                f"inputs are {', '.join(map(repr, names))}: name one folder after each input"
            )
        per_input = {}
        for d in dirs:
            items = visible_entries(d)
            stray = [p for p in items if not (p.is_file() and p.suffix == ".npy")]
            if stray:
                broken = " (a link to nothing)" if stray[0].is_symlink() and not stray[0].exists() else ""
                raise DataError(f"{str(d)!r} contains {stray[0].name!r}{broken}; expected only .npy files (0.npy, 1.npy, ...)")
            per_input[d.name] = sorted(items, key=_numeric_key)
    _check_same_names(folder, per_input)
    n = len(per_input[names[0]])
    if n == 0:
        raise DataError(f"calibration data folder {str(folder)!r} holds no .npy files; expected 0.npy, 1.npy, ... per input")
    # Check headers (dtype, shape) of every file now; values are read and checked when used.
    shapes = []
    for i in range(n):
        header = {name: _np_header(paths[i]) for name, paths in per_input.items()}
        _check_sample(header, inputs, f"sample file {per_input[names[0]][i].name!r} in {str(folder)!r}", values=False)
        shapes.append({name: tuple(arr.shape) for name, arr in header.items()})
    loaders = [lambda i=i: {name: np.asarray(_np_load(paths[i])) for name, paths in per_input.items()} for i in range(n)]
    labels = [per_input[names[0]][i].stem for i in range(n)]
    return Dataset(loaders, inputs, repr(str(folder)), labels, shapes)


def load_data(source: object, inputs: Sequence[TensorSpec]) -> Dataset:
    """Calibration data from any supported source, checked against ``inputs`` (see module doc)."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence) or not all(isinstance(s, TensorSpec) for s in inputs):
        raise OptionError(f"inputs is {inputs!r}; expected the model's input specs, such as load_model(path).inputs")
    if source is None:
        raise DataError("no calibration data given; expected a calibration_data folder (one folder per model input)")
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataError(f"calibration data {str(path)!r} does not exist; expected a folder with one folder per model input")
        if path.is_dir():
            return _from_folder(path, inputs)
        if path.suffix == ".npz":
            if _sniff(path, ".npz") != "npz":
                raise DataError(f"{str(path)!r} is a single .npy array named .npz; rename it to .npy")
            try:
                with np.load(path, allow_pickle=False) as archive:
                    arrays = {k: _native(archive[k]) for k in archive.files}
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise DataError(f"{str(path)!r} holds pickled object arrays, which ptqdebug refuses to load; save plain numeric arrays with np.savez") from None
                raise DataError(f"{str(path)!r} is not a readable .npz file ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{str(path)!r} is not a readable .npz file ({exc}); expected an archive saved with np.savez") from None
            return _from_arrays(arrays, inputs, repr(str(path)))
        if path.suffix == ".npy":
            if len(inputs) != 1:
                raise DataError(f"{str(path)!r} is one array but the model has {len(inputs)} inputs; use a folder per input or an .npz with one array per input")
            return _from_arrays({inputs[0].name: np.asarray(_np_load(path))}, inputs, repr(str(path)))
        kind = f"a {path.suffix}" if path.suffix else "an extensionless"
        raise DataError(f"calibration data {str(path)!r} is {kind} file; expected a folder, an .npz or an .npy file")
    if isinstance(source, np.ndarray):  # as an .npy file holds it: samples along a new first axis (or the batch axis)
        if len(inputs) != 1:
            raise DataError(f"the calibration data is one array but the model has {len(inputs)} inputs; pass a list "
                            "with a dict per sample, or an .npz file with one array per input")
        return _from_arrays({inputs[0].name: _native(source)}, inputs, "the array")
    if hasattr(source, "get_next"):
        reader = source

        def drain() -> Iterable[Mapping[str, np.ndarray]]:
            while (item := reader.get_next()) is not None:  # type: ignore[attr-defined]
                yield item

        return _from_memory(drain(), inputs, "the CalibrationDataReader", None)
    if isinstance(source, Mapping):
        return _from_memory([source], inputs, "the sample dict", None)
    if isinstance(source, Iterable):
        return _from_memory(source, inputs, "the sample iterable", None)  # type: ignore[arg-type]
    raise DataError(
        f"calibration data is a {type(source).__name__}; expected a folder path, an .npz file, a "
        "CalibrationDataReader or an iterable of dicts"
    )


def check_data_num(data_num: object) -> int | None:
    """The type and sign of ``data_num`` (None: all samples); the upper bound needs the data."""
    if data_num is None or (isinstance(data_num, str) and data_num.strip().lower() == "all"):
        return None
    if isinstance(data_num, bool) or not isinstance(data_num, (int, np.integer)):
        raise OptionError(f"data_num is {data_num!r}; expected a positive whole number, or None or 'all' (every sample)")
    if data_num < 1:
        raise OptionError(f"data_num is {data_num}; expected at least 1")
    return int(data_num)


def select(data: Dataset, data_num: int | None) -> Dataset:
    """The first ``data_num`` samples (all when None), with the original tool's bounds check.

    The original tool took the *last* ``data_num`` files in text order; ptqdebug takes the first
    ones in numeric order, which is what the word "first" suggests and what users expect.
    """
    data_num = check_data_num(data_num)
    if data_num is None:
        return data
    if data_num > len(data):
        raise OptionError(f"there are only {len(data)} samples in {data.source}, but data_num is {data_num}; use at most {len(data)}")
    return data.head(data_num)
