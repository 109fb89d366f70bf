"""Calibration data: every accepted source, numeric order, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptqdebug.data import load_data, select
from ptqdebug.errors import DataError, OptionError
from ptqdebug.model import TensorSpec

SPEC = (TensorSpec("x", np.dtype(np.float32), ("N", 3, 4)),)
TWO = (*SPEC, TensorSpec("ids", np.dtype(np.int64), (1, 5)))


def _sample(i: int) -> np.ndarray:
    return np.full((1, 3, 4), i, np.float32)


def _folder(tmp_path: Path, n: int = 12) -> Path:
    d = tmp_path / "calibration_data" / "x"
    d.mkdir(parents=True)
    for i in range(n):
        np.save(d / f"{i}.npy", _sample(i))
    return d.parent


def test_folder_layout_in_numeric_order(tmp_path: Path) -> None:
    data = load_data(_folder(tmp_path), SPEC)
    assert len(data) == 12
    assert [float(data[i]["x"][0, 0, 0]) for i in range(12)] == list(range(12))
    assert data.labels[:3] == ("0", "1", "2") and data.labels[10] == "10"


def test_data_num_takes_the_first(tmp_path: Path) -> None:
    data = load_data(_folder(tmp_path), SPEC)
    assert [float(s["x"][0, 0, 0]) for s in select(data, 3)] == [0, 1, 2]
    assert len(select(data, None)) == 12
    for bad in (0, 13, -1, 1.5, True):
        with pytest.raises(OptionError):
            select(data, bad)


def test_single_input_folder_of_npy_and_npy_and_npz(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in (2, 10, 1):
        np.save(flat / f"{i}.npy", _sample(i))
    assert [float(s["x"][0, 0, 0]) for s in load_data(flat, SPEC)] == [1, 2, 10]
    stacked = np.stack([_sample(i) for i in range(4)])  # [4, 1, 3, 4]: a new sample axis
    np.savez(tmp_path / "d.npz", x=stacked)
    np.save(tmp_path / "d.npy", np.concatenate([_sample(i) for i in range(4)]))  # [4, 3, 4]: along the batch axis
    for path in (tmp_path / "d.npz", tmp_path / "d.npy"):
        data = load_data(path, SPEC)
        assert len(data) == 4 and data[3]["x"].shape == (1, 3, 4) and data[3]["x"][0, 0, 0] == 3


def test_readers_iterables_and_dicts() -> None:
    class Reader:
        def __init__(self) -> None:
            self.items = iter([{"x": _sample(i)} for i in range(3)])

        def get_next(self):
            return next(self.items, None)

    assert len(load_data(Reader(), SPEC)) == 3
    assert len(load_data(({"x": _sample(i)} for i in range(5)), SPEC)) == 5
    assert len(load_data({"x": _sample(0)}, SPEC)) == 1


def test_multi_input_folder(tmp_path: Path) -> None:
    root = tmp_path / "cd"
    for name, arr in (("x", _sample(0)), ("ids", np.arange(5, dtype=np.int64)[None])):
        (root / name).mkdir(parents=True)
        for i in range(2):
            np.save(root / name / f"{i}.npy", arr)
    data = load_data(root, TWO)
    assert set(data[1]) == {"x", "ids"}


@pytest.mark.parametrize("mutate,message", [
    (lambda d: [p.unlink() for p in d.glob("*")], "holds no .npy"),
    (lambda d: np.save(d / "3.npy", np.zeros((1, 3, 4), np.float64)), "dtype float64, the model expects float32"),
    (lambda d: np.save(d / "3.npy", np.zeros((1, 3, 5), np.float32)), "shape \\[1, 3, 5\\], the model expects float32\\[N, 3, 4\\]"),
    (lambda d: np.save(d / "3.npy", np.zeros((3, 4), np.float32)), "shape \\[3, 4\\]"),
    (lambda d: (d / "notes.txt").write_text("hi"), "expected only .npy files"),
])
def test_folder_errors(tmp_path: Path, mutate, message: str) -> None:
    root = _folder(tmp_path, 4)
    mutate(root / "x")
    with pytest.raises(DataError, match=message):
        load_data(root, SPEC)


def test_missing_empty_and_mismatched_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope", SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_data(tmp_path / "empty", SPEC)
    root = _folder(tmp_path, 2)
    (root / "x").rename(root / "images")
    with pytest.raises(DataError, match="has folders 'images'; the model inputs are 'x'"):
        load_data(root, SPEC)
    (root / "stray.npy").write_bytes(b"")
    with pytest.raises(DataError, match="contains the file 'stray.npy'"):
        load_data(root, SPEC)


def test_inputs_with_other_file_names_are_refused_not_paired_by_position(tmp_path: Path) -> None:
    """Sample i is the files of one name: a missing file is named, whether or not the counts
    still agree (a trial's ``b/`` lacked 3.npy but had 6.npy: samples 3-5 were silently mispaired)."""
    root = tmp_path / "cd"
    for name, n in (("x", 3), ("ids", 2)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            np.save(root / name / f"{i}.npy", _sample(0) if name == "x" else np.zeros((1, 5), np.int64))
    with pytest.raises(DataError, match=r"different file names per input \('2.npy' only in 'x'\)"):
        load_data(root, TWO)
    np.save(root / "ids" / "6.npy", np.zeros((1, 5), np.int64))  # the same count, one name off
    with pytest.raises(DataError, match=r"\('6.npy' only in 'ids'; '2.npy' only in 'x'\); expected the same names"):
        load_data(root, TWO)
    np.save(root / "ids" / "2.npy", np.zeros((1, 5), np.int64))
    (root / "ids" / "6.npy").unlink()
    assert len(load_data(root, TWO)) == 3


def test_pickled_npy_is_refused_never_loaded(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(root / "x" / "1.npy", "wb") as f:
        np.lib.format.write_array(f, np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        load_data(root, SPEC)
    assert not marker.exists()


def test_nan_values_are_refused_when_used(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2)
    bad = _sample(1)
    bad[0, 0, 0] = np.nan
    np.save(root / "x" / "1.npy", bad)
    data = load_data(root, SPEC)
    data[0]
    with pytest.raises(DataError, match="NaN"):
        data[1]


def test_npz_wrong_keys_and_wrong_sources(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", y=np.zeros((2, 1, 3, 4), np.float32))
    with pytest.raises(DataError, match="holds arrays 'y'; expected one per model input: 'x'"):
        load_data(tmp_path / "d.npz", SPEC)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder, an .npz or an .npy"):
        load_data(tmp_path / "d.txt", SPEC)
    with pytest.raises(DataError, match="expected a folder path"):
        load_data(42, SPEC)
    with pytest.raises(DataError, match="has inputs 'y'; the model expects 'x'"):
        load_data([{"y": _sample(0)}], SPEC)


def test_one_array_feeds_a_single_input_model_like_an_npy_file(cnn_dir: Path) -> None:
    import ptqdebug as dbg

    files = sorted((cnn_dir / "calibration_data" / "input").glob("*.npy"), key=lambda p: int(p.stem))
    stacked = np.stack([np.load(f) for f in files])
    model = dbg.load_model(cnn_dir / "pc_int8_pairs.onnx")
    data = dbg.load_data(stacked, model.inputs)
    assert len(data) == len(files) and np.array_equal(data[2]["input"], np.load(files[2]))
    with pytest.raises(dbg.DataError, match="images are read by ptqdebug.calibrate"):
        dbg.load_data(["photo.jpg"], model.inputs)[0]


def test_data_num_all_is_every_sample_as_on_the_command_line() -> None:
    from ptqdebug.data import check_data_num

    assert check_data_num("all") is None and check_data_num(" ALL ") is None and check_data_num(3) == 3
    with pytest.raises(OptionError, match="expected a positive whole number, or None or 'all'"):
        check_data_num("some")
