"""Files and signals around a run: outputs that would overwrite an input or land inside the data,
folders ptqdebug may not read or write, a folder where an output file goes, SIGTERM/SIGHUP and an
interrupted demo. Each case is one line and exit status 2 (or the signal's status), and leaves the
user's files as they were and no stray folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug.cli import main
from ptqdebug.demo import demo_files
from ptqdebug.errors import DataError, OptionError
from ptqdebug.report.files import STAGING_PREFIX, UnwritableError, write_atomic
from tests.reliability.models import all_files, cnn_qdq, tree_digest

NODE = "Conv_0"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A QDQ CNN (``model.onnx``, its ``float.onnx`` beside it) and its calibration_data folder."""
    return cnn_qdq(tmp_path_factory.mktemp("io") / "m", samples=3)


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> str:
    """Run the CLI in process: exit status 2 and exactly one ``ptqdebug: error:`` line matching."""
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("ptqdebug: error: "), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# -- export: never over an input, never inside the data ---------------------------------------------
def test_export_refuses_to_overwrite_the_float_model(small: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = small
    float_model = _copy(model.parent / "float.onnx", tmp_path / "float.onnx")
    before = float_model.read_bytes()
    _refused(["export", str(model), "-o", str(float_model), "-f", f"[{NODE}]", "--float-model", str(float_model)], capsys,
             "is the float model itself")
    assert float_model.read_bytes() == before
    with pytest.raises(OptionError, match="is the float model itself"):
        dbg.export_model(str(model), float_model, [NODE], float_model=str(float_model))
    ctx = dbg.open_context(model, small[1], float_model=float_model)  # a context knows its float model too
    with pytest.raises(OptionError, match="is a file the context was read from; expected a new file"):
        dbg.export_model(ctx, float_model, [NODE])
    assert float_model.read_bytes() == before


def test_export_sees_the_model_through_a_folder_that_does_not_exist_yet(small: tuple[Path, Path], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``nx/../m.onnx`` is ``m.onnx``: writing it would create ``nx/`` and then replace the model."""
    model = _copy(small[0], tmp_path / "m.onnx")
    before = model.read_bytes()
    _refused(["export", str(model), "-o", str(tmp_path / "nx" / ".." / "m.onnx"), "-f", f"[{NODE}]"], capsys,
             "is the calibrated model itself")
    assert model.read_bytes() == before
    assert not (tmp_path / "nx").exists()


def test_export_refuses_a_file_inside_the_calibration_data(small: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    digest = tree_digest(data)
    for target in (data / "partial.onnx", data / "input" / "partial.onnx", data / "new" / "partial.onnx"):
        _refused(["export", str(model), "-o", str(target), "-f", f"[{NODE}]"], capsys, "is inside the calibration data folder")
        assert tree_digest(data) == digest and sorted(p.name for p in data.iterdir()) == ["input"]
    done = dbg.export_model(str(model), tmp_path / "partial.onnx", [NODE])  # beside the data: fine
    assert done.path.is_file()


# -- calibrate: outputs outside the inputs; an earlier run's data as input -----------------------------
def test_calibrate_refuses_an_output_folder_inside_its_inputs(small: tuple[Path, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    digest = tree_digest(data)
    for out in (data / "out", data):
        _refused(["calibrate", str(model.parent / "float.onnx"), str(data), "-o", str(out), "-m", "max"], capsys,
                 "is inside the calibration inputs folder")
        assert tree_digest(data) == digest and sorted(p.name for p in data.iterdir()) == ["input"]


def test_calibrate_again_from_an_earlier_runs_data_reads_it_in_place(small: tuple[Path, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    prev = tmp_path / "prev"
    float_model = str(model.parent / "float.onnx")
    assert main(["calibrate", float_model, str(data), "-o", str(prev), "-m", "max"]) == 0
    capsys.readouterr()
    files = {p: p.read_bytes() for p in all_files(prev / "calibration_data")}
    assert main(["calibrate", float_model, str(prev / "calibration_data"), "-o", str(prev), "-m", "kl"]) == 0
    out, err = capsys.readouterr()
    assert f"read {prev / 'calibration_data'} in place (3 samples)" in out, (out, err)
    assert {p: p.read_bytes() for p in all_files(prev / "calibration_data")} == files
    assert sorted(p.name for p in prev.iterdir()) == ["calibrated_model.onnx", "calibration_data"]  # no staging folder left
    assert dbg.load_model(prev / "calibrated_model.onnx").quantizers


# -- permissions (skipped where this process ignores them: root with CAP_DAC_OVERRIDE) -------------------
def _permissions_ignored(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return False
    finally:
        probe.chmod(0o644)
        probe.unlink()
    return True


@pytest.fixture
def no_permissions(tmp_path: Path) -> Iterator[Callable[[Path, int], None]]:
    """``chmod(path, mode)`` undone after the test; skips where permissions are not enforced. As
    root: ``setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search
    -- .venv/bin/python -m pytest tests/reliability/test_io_robustness.py``."""
    if os.name != "posix" or _permissions_ignored(tmp_path):
        pytest.skip("this process ignores file permissions (root); run as a normal user or without CAP_DAC_OVERRIDE")
    changed: list[tuple[Path, int]] = []

    def chmod(path: Path, mode: int) -> None:
        changed.append((path, path.stat().st_mode & 0o7777))
        path.chmod(mode)

    yield chmod
    for path, mode in reversed(changed):
        path.chmod(mode)


@pytest.mark.parametrize("where,mode", [(".", 0), (".", 0o600), ("input", 0), ("input", 0o600)])
def test_an_unreadable_data_folder_is_one_line(small: tuple[Path, Path], tmp_path: Path, where: str, mode: int,
                                               no_permissions: Callable[[Path, int], None],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    copy = tmp_path / "data"
    (copy / "input").mkdir(parents=True)
    for f in (data / "input").iterdir():
        _copy(f, copy / "input" / f.name)
    no_permissions(copy / where, mode)
    _refused(["get-sensitivity-of-nodes", str(model), str(copy), "-s", str(tmp_path / "out")], capsys,
             "cannot be read (Permission denied)")
    _refused(["calibrate", str(model.parent / "float.onnx"), str(copy), "-o", str(tmp_path / "cal"), "-m", "max"], capsys,
             "cannot be read (Permission denied)")
    with pytest.raises(DataError, match=r"cannot be read \(Permission denied\); expected a folder ptqdebug may list and enter"):
        dbg.open_context(str(model), str(copy))
    assert not (tmp_path / "out").exists() and not (tmp_path / "cal").exists()


def test_calibrate_into_a_read_only_folder_is_one_line(small: tuple[Path, Path], tmp_path: Path,
                                                       no_permissions: Callable[[Path, int], None],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "notes.txt").write_text("mine")
    no_permissions(ro, 0o555)
    float_model = str(model.parent / "float.onnx")
    _refused(["calibrate", float_model, str(data), "-o", str(ro), "-m", "max"], capsys, "is not writable")
    _refused(["calibrate", float_model, str(data), "-o", str(ro / "sub"), "-m", "max"], capsys, "cannot be created")
    assert sorted(p.name for p in ro.iterdir()) == ["notes.txt"]


def test_write_atomic_into_a_read_only_folder_names_the_file(tmp_path: Path,
                                                             no_permissions: Callable[[Path, int], None]) -> None:
    no_permissions(tmp_path, 0o555)
    with pytest.raises(UnwritableError, match=r"cannot write '.*a\.json' \(Permission denied\)"):
        write_atomic(tmp_path / "a.json", lambda f: f.write("{}"))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """The disk fills up during the write itself (not when the file is made): one line naming the
    file, and no temporary file left (a trial filled a 600 KB tmpfs: tracebacks from runall,
    calibrate, export and the figures)."""
    import errno

    def fill(f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UnwritableError, match=r"cannot write '.*a\.png' \(No space left on device\); expected a writable "
                                              r"folder with free space: free some space on that disk or choose another"):
        write_atomic(tmp_path / "a.png", fill, binary=True)
    assert list(tmp_path.iterdir()) == []


def test_a_function_writing_several_files_writes_all_or_none(small: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up at the second of three figures: none of them lands in save_dir (a trial
    found plot-distribution leaving the first figure, stat-info its JSON and one figure)."""
    from ptqdebug.plots import render as drawing

    model, data = small
    nodes = list(dbg.load_model(model).sensitivity_nodes[:3])
    real, calls = drawing.render, []

    def full_at_the_second(kind: str, result: object, path: str, options: dict) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise UnwritableError(f"cannot write {path!r} (No space left on device)")
        return real(kind, result, path, options)

    monkeypatch.setattr(drawing, "render", full_at_the_second)
    (tmp_path / "pd").mkdir()
    (tmp_path / "pd" / "mine.txt").write_text("mine")
    with pytest.raises(UnwritableError):
        dbg.plot_distribution(model, data, nodes, save_dir=tmp_path / "pd")
    assert [p.name for p in (tmp_path / "pd").iterdir()] == ["mine.txt"]
    import ptqdebug.plots

    def full(fig: object, path: object) -> None:  # the JSON is written; its figures cannot be
        raise UnwritableError(f"cannot write {str(path)!r} (No space left on device)")

    monkeypatch.setattr(ptqdebug.plots, "save_figure", full)
    with pytest.raises(UnwritableError):
        dbg.get_calibration_nodes_stat_info(model, data, save_dir=tmp_path / "new", visualize=True)
    assert not (tmp_path / "new").exists()


# -- a folder where an output file goes ------------------------------------------------------------------
def test_a_folder_where_an_output_file_goes_is_one_line(small: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    model, data = small
    save = tmp_path / "c"
    (save / "sensitivity_of_node.json").mkdir(parents=True)
    (save / "sensitivity_of_node.json" / "mine.txt").write_text("mine")
    line = _refused(["get-sensitivity-of-nodes", str(model), str(data), "-s", str(save)], capsys,
                    "is a folder but ptqdebug writes a file there")
    assert str(save / "sensitivity_of_node.json") in line
    assert (save / "sensitivity_of_node.json" / "mine.txt").read_text() == "mine"
    assert not [p for p in save.rglob("*") if p.name.endswith(".tmp")]
    assert not (save / "sensitivity_of_node.log").exists()  # the pair is written whole or not at all


def test_write_atomic_refuses_a_folder_as_one_line_that_is_still_an_os_error(tmp_path: Path) -> None:
    """An OptionError for the CLI, and still an OSError for callers that may ignore a failed write
    (the results cache)."""
    (tmp_path / "a.json").mkdir()
    with pytest.raises(UnwritableError) as caught:
        write_atomic(tmp_path / "a.json", lambda f: f.write("{}"))
    assert isinstance(caught.value, OptionError) and isinstance(caught.value, OSError)
    assert "\n" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and (tmp_path / "a.json").is_dir()


# -- signals ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo's digits CNN calibrated on 100 samples: runall on all of them takes seconds."""
    model, data_file = demo_files()
    with np.load(data_file, allow_pickle=False) as data:
        calib = data["calibration"]
    cal = dbg.calibrate(model, [{"image": calib[i: i + 1]} for i in range(len(calib))],
                        tmp_path_factory.mktemp("digits") / "cal", method="max")
    return Path(cal.model_path), Path(cal.data_dir)


def _signal_when(argv: list[str], ready: Callable[[], bool], signum: int, delay: float = 0.3) -> subprocess.CompletedProcess[str]:
    """Start ``python -m ptqdebug argv``, wait until ``ready()`` (then ``delay`` more), send ``signum``."""
    proc = subprocess.Popen([sys.executable, "-m", "ptqdebug", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, "the command ended before it could be signalled"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _stopped(proc: subprocess.CompletedProcess[str], status: int, message: str) -> None:
    assert proc.returncode == status, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert lines == [message], proc.stderr


def _staging(folder: Path) -> Callable[[], bool]:
    return lambda: folder.is_dir() and any(p.name.startswith(STAGING_PREFIX) for p in folder.iterdir())


@pytest.mark.parametrize("name,status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_runall_like_ctrl_c(digits: tuple[Path, Path], tmp_path: Path, name: str, status: int) -> None:
    model, data = digits
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = _signal_when(["runall", str(model), str(data), "-s", str(out), "--no-cache", "-dn", "all",
                         "-nt", "[node,weight,activation]"], _staging(out), getattr(signal, name))
    _stopped(proc, status, f"ptqdebug: interrupted by {name}")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_sigterm_stops_calibrate_and_leaves_no_folder(digits: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "new" / "cal"
    float_model, _ = demo_files()
    proc = _signal_when(["calibrate", str(float_model), str(digits[1]), "-o", str(out)], out.is_dir, signal.SIGTERM, 0.2)
    _stopped(proc, 143, "ptqdebug: interrupted by SIGTERM")
    assert not (tmp_path / "new").exists()


def test_main_restores_the_signal_handlers(small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert main(["info", str(small[0])]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


@pytest.mark.parametrize("name,status,when", [("SIGINT", 130, "calibrating"), ("SIGTERM", 143, "analysing")])
def test_an_interrupted_demo_removes_the_folder_it_created(tmp_path: Path, name: str, status: int, when: str) -> None:
    out = tmp_path / "demo_result"
    ready = out.is_dir if when == "calibrating" else _staging(out / "debug_result")
    proc = _signal_when(["demo", "-o", str(out)], ready, getattr(signal, name), 0.1)
    message = "ptqdebug: interrupted" + ("" if name == "SIGINT" else f" by {name}")
    _stopped(proc, status, message)
    assert not out.exists(), sorted(out.rglob("*"))


def test_an_interrupted_demo_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "demo_result"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = _signal_when(["demo", "-o", str(out)], _staging(out / "debug_result"), signal.SIGINT, 0.1)
    _stopped(proc, 130, "ptqdebug: interrupted")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
