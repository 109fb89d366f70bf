"""Calibration inputs: images, arrays, loader scripts → calibration_data/, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptqdebug.calibration.inputs import open_source, write_calibration_data
from ptqdebug.calibration.preprocess import ImagePreprocess
from ptqdebug.data import load_data
from ptqdebug.errors import DataError
from ptqdebug.model import TensorSpec

IMG = (TensorSpec("x", np.dtype(np.float32), ("N", 3, 4, 4)),)
TWO = (TensorSpec("a", np.dtype(np.float32), ("N", 2)), TensorSpec("b", np.dtype(np.int64), ("N",)))


def write(source: object, specs: tuple[TensorSpec, ...], out: Path, pre: ImagePreprocess | None = None,
          data_num: int | None = None) -> int:
    src = open_source(source, specs, pre or ImagePreprocess(), destination=out)
    return write_calibration_data(src, out, specs, data_num)


def test_image_folder_in_natural_order(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, value in enumerate([10, 20, 30]):
        Image.fromarray(np.full((8, 6, 3), value, np.uint8)).save(imgs / f"img{[2, 10, 1][i]}.png")
    (imgs / "notes.txt").write_text("ignored")
    out = tmp_path / "calibration_data"
    assert write(imgs, IMG, out, ImagePreprocess(mean=5, scale=0.5)) == 3
    data = load_data(out, IMG)
    # img1 (30), img2 (10), img10 (20): numbers sort as numbers
    assert [float(data[i]["x"][0, 0, 0, 0]) for i in range(3)] == [12.5, 2.5, 7.5]
    assert data[0]["x"].shape == (1, 3, 4, 4)


def test_image_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images found in .*\(looked for \.jpg, \.jpeg, \.png, \.bmp\)"):
        write(empty, IMG, tmp_path / "o1")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "0.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"0\.jpg' could not be read"):
        write(bad, IMG, tmp_path / "o2")
    with pytest.raises(DataError, match=r"the model has 2 inputs .*use a loader script"):
        write(tmp_path / "bad", TWO, tmp_path / "o3")
    with pytest.raises(DataError, match="do not exist"):
        write(tmp_path / "missing", IMG, tmp_path / "o4")
    sized = tmp_path / "sized"
    sized.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(sized / "a.png")
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(sized / "b.png")
    with pytest.raises(DataError, match=r"^image 'b\.png': the image is 6x8 \(width x height\), the model takes 4x4"):
        write(sized, IMG, tmp_path / "o5", ImagePreprocess(resize="none"))
    (sized / "sub").mkdir()  # a stray folder beside images: said as such (it read "images and .npy data/folders")
    with pytest.raises(DataError, match=r"holds images and the folder 'sub'; expected images only, or only per-input folders"):
        write(sized, IMG, tmp_path / "o6")
    np.save(sized / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"holds images and the folder 'sub' and 1 \.npy file \('x\.npy'\)"):
        write(sized, IMG, tmp_path / "o7")


def test_arrays_npy_npz_and_memory(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 1, 3, 4, 4))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    assert write(tmp_path / "x.npy", IMG, tmp_path / "a", data_num=2) == 2
    np.savez(tmp_path / "d.npz", a=np.ones((3, 1, 2), np.float32), b=np.arange(3).reshape(3, 1))
    assert write(tmp_path / "d.npz", TWO, tmp_path / "b") == 3
    # float64 arrays without a batch axis are converted (a same-kind cast) and get one
    n = write([{"x": x[i, 0, :, :, :]} for i in range(4)], IMG, tmp_path / "c")
    assert n == 4 and np.load(tmp_path / "c" / "x" / "3.npy").dtype == np.float32
    assert np.load(tmp_path / "c" / "x" / "3.npy").shape == (1, 3, 4, 4)
    assert write(x[:, 0].astype(np.float32), IMG, tmp_path / "d") == 5  # stacked along the batch axis
    assert write((s for s in [{"x": x[0, 0]}]), IMG, tmp_path / "e") == 1  # a generator streams


def test_sample_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sample 0 of the sample list has inputs 'y'; the model expects 'x' \(missing 'x'\)"):
        write([{"y": np.zeros((1, 3, 4, 4))}], IMG, tmp_path / "a")
    with pytest.raises(DataError, match=r"has dtype float32, the model expects int64"):
        write([{"a": np.zeros((1, 2), np.float32), "b": np.zeros((1,), np.float32)}], TWO, tmp_path / "b")
    with pytest.raises(DataError, match=r"has shape \[1, 3, 5, 4\]"):
        write([{"x": np.zeros((1, 3, 5, 4))}], IMG, tmp_path / "c")
    with pytest.raises(DataError, match="contains NaN"):
        write([{"x": np.full((1, 3, 4, 4), np.nan)}], IMG, tmp_path / "d")
    with pytest.raises(DataError, match="gave no samples"):
        write([], IMG, tmp_path / "e")


LOADER = """
import numpy as np

def samples():
    for i in range(3):
        yield {"a": np.full((1, 2), i, np.float32), "b": np.array([i])}

def broken():
    return [{"a": np.zeros((1, 2), np.float32), "b": np.zeros(1, np.int64)}, 1 / 0]

def not_iterable():
    return 5

def failing():
    raise RuntimeError("no dataset here")
"""


def test_loader_script(tmp_path: Path) -> None:
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    out = tmp_path / "cal"
    assert write(f"{script}:samples", TWO, out) == 3
    data = load_data(out, TWO)
    assert float(data[2]["a"][0, 0]) == 2.0 and data[2]["b"].dtype == np.int64
    with pytest.raises(DataError, match=r"loader\.py:failing\(\) raised RuntimeError: no dataset here at loader\.py:15"):
        write(f"{script}:failing", TWO, tmp_path / "f")
    with pytest.raises(DataError, match=r"raised ZeroDivisionError: division by zero at loader\.py:9"):
        write(f"{script}:broken", TWO, tmp_path / "g")
    with pytest.raises(DataError, match=r"returned a int; expected an iterable of dict"):
        write(f"{script}:not_iterable", TWO, tmp_path / "h")
    with pytest.raises(DataError, match=r"has no function 'sample'; it defines samples, broken"):
        write(f"{script}:sample", TWO, tmp_path / "i")
    with pytest.raises(DataError, match=r"loader script .*nope\.py' does not exist"):
        write(f"{tmp_path / 'nope.py'}:samples", TWO, tmp_path / "j")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    with pytest.raises(DataError, match=r"loader script syntax\.py raised SyntaxError"):
        write(f"{tmp_path / 'syntax.py'}:f", TWO, tmp_path / "k")


def test_rewrites_an_earlier_run_but_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "calibration_data"
    samples = [{"x": np.zeros((1, 3, 4, 4), np.float32)}] * 3
    write(samples, IMG, out)
    write(samples[:1], IMG, out)
    assert sorted(p.name for p in (out / "x").iterdir()) == ["0.npy"]
    (out / "x" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds 'x/keep.txt', which is not calibration data written by ptqdebug"):
        write(samples, IMG, out)
    # the output's own calibration_data as input: read in place, nothing rewritten
    (out / "x" / "keep.txt").unlink()
    assert write(out, IMG, out) == 1
    with pytest.raises(DataError, match="inside the output folder"):
        write(out / "x", IMG, out)
