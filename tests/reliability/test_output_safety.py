"""Nothing lost: atomic writes, a clean Ctrl-C, re-runs that replace only ptqdebug's own files,
inputs never modified, and bit-identical results from the same inputs."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.errors import DataError, OptionError
from ptqdebug.report.files import STAGING_PREFIX, StagedOutput
from tests.reliability.models import all_files, cnn_qdq, tree_digest, write_folder
from tests.support.builders import image_samples, quantize_qdq, resnet18
from tests.support.source import dotted

SRC = Path(dbg.__file__).resolve().parent

#: Writers that do not go through report.files.write_atomic, with the reason each is accepted.
NON_ATOMIC = {
    # calibrate's scratch files in its own temporary work folder
    ("calibration/writer.py", "onnx.save"): "temporary work folder",
    # calibrate writes calibration_data into a staging folder, then renames it into place
    ("calibration/inputs.py", "os.replace"): "the rename that moves the finished staging folder into place",
    # export of a model past 2 GB: the model and its data file are written in a staging folder, then renamed into place
    ("api/export.py", "onnx.save_model"): "staging folder next to the target",
    ("api/export.py", "os.replace"): "the renames that move the finished model and data file into place",
}
WRITERS = {"open", "np.save", "np.savez", "np.savez_compressed", "numpy.save", "onnx.save", "onnx.save_model",
           "shutil.copyfile", "shutil.copy", "shutil.copy2", "shutil.move", "shutil.copytree", "json.dump", "pickle.dump",
           "os.rename", "os.replace", "tempfile.mkstemp"}
WRITER_METHODS = {"write_text", "write_bytes", "savefig", "tofile"}


def _writers() -> list[tuple[str, int, str]]:
    """Every call that writes a file, outside report/files.py and outside write_atomic callbacks."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "report/files.py":
            continue  # the atomic writer itself
        tree = ast.parse(path.read_text(encoding="utf-8"))
        atomic: set[int] = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and dotted(n.func).endswith("write_atomic"):
                for arg in [*n.args[1:], *(k.value for k in n.keywords)]:
                    atomic.update(id(x) for x in ast.walk(arg))
        for n in ast.walk(tree):
            if not isinstance(n, ast.Call) or id(n) in atomic:
                continue
            name = dotted(n.func)
            if name == "open":
                mode = n.args[1] if len(n.args) > 1 else next((k.value for k in n.keywords if k.arg == "mode"), None)
                if not (isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")):
                    continue
            elif name not in WRITERS and name.rsplit(".", 1)[-1] not in WRITER_METHODS:
                continue
            found.append((rel, n.lineno, name))
    return found


def test_every_writer_is_atomic() -> None:
    unexpected = [f"{rel}:{line} {name}" for rel, line, name in _writers() if (rel, name) not in NON_ATOMIC]
    assert unexpected == [], "write through ptqdebug.report.files.write_atomic (or dump_json)"


# -- Ctrl-C ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model large enough that a sweep takes seconds: ResNet-18 at 64×64, quantized by ORT."""
    d = tmp_path_factory.mktemp("resnet")
    onnx.save(resnet18(size=64), d / "float.onnx")
    samples = image_samples(4, 64, seed=3)
    quantize_qdq(d / "float.onnx", d / "model.onnx", samples[:2])
    return d / "model.onnx", write_folder(d / "calibration_data", samples)


def _interrupt_runall(resnet: tuple[Path, Path], out: Path, group: bool) -> subprocess.CompletedProcess[str]:
    model, data = resnet
    proc = subprocess.Popen([sys.executable, "-m", "ptqdebug", "runall", str(model), str(data), "-s", str(out), "--no-cache",
                             "-dn", "all", "-nt", "[node,weight,activation]"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir()):  # the sweeps have started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if group:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    else:
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _check_interrupted(proc: subprocess.CompletedProcess[str], out: Path, before: dict[str, bytes]) -> None:
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert lines == ["ptqdebug: interrupted"], proc.stderr
    after = {str(p.relative_to(out)): p.read_bytes() for p in all_files(out)}
    assert after == before, "an interrupted run must leave save_dir exactly as it was"
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_ctrl_c_stops_a_sweep_cleanly(resnet: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "node_sensitivity").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "node_sensitivity" / "sensitivity_of_weight.log").write_text("an earlier run's result")
    before = {str(p.relative_to(out)): p.read_bytes() for p in all_files(out)}
    _check_interrupted(_interrupt_runall(resnet, out, group=False), out, before)


def test_ctrl_c_in_a_terminal_interrupts_the_whole_process_group(resnet: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = {str(p.relative_to(out)): p.read_bytes() for p in all_files(out)}
    _check_interrupted(_interrupt_runall(resnet, out, group=True), out, before)


# -- re-runs, failures, inputs -------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return cnn_qdq(tmp_path_factory.mktemp("small") / "m", samples=3)


def test_rerun_replaces_only_its_own_files(small: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = small
    out = tmp_path / "out"
    first = dbg.runall(str(model), str(data), out, node_type="activation", dis_nodes_list=["input_QuantizeLinear"],
                       cw_nodes_list=["input_QuantizeLinear"], cache=False)
    old_dist = out / "data_distribution" / "activation_input_QuantizeLinear.png"
    assert old_dist.is_file()
    (out / "notes.txt").write_text("mine")
    (out / "data_distribution" / "my_figure.png").write_bytes(b"mine")
    (out / "sensitivity_analysis" / "keep.json").write_text("{}")
    second = dbg.runall(str(model), str(data), out, node_type="activation", dis_nodes_list=["Conv_0"],
                        cw_nodes_list=["input_QuantizeLinear"], cache=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "data_distribution" / "my_figure.png").read_bytes() == b"mine"
    assert (out / "sensitivity_analysis" / "keep.json").read_text() == "{}"
    assert not old_dist.exists(), "a figure the first run wrote and the second did not is stale"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    own = {str(p.relative_to(out)) for p in all_files(out)} - {"notes.txt", "data_distribution/my_figure.png",
                                                               "sensitivity_analysis/keep.json"}
    assert own == set(results["files"]) == {str(p.relative_to(out)) for p in second.files}
    assert set(first.results["files"]) - set(results["files"]) == {"data_distribution/activation_input_QuantizeLinear.png"}


def test_a_failure_mid_run_leaves_save_dir_as_it_was(small: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = small
    out = tmp_path / "out"
    dbg.runall(str(model), str(data), out, node_type="activation", cache=False)
    before = {str(p.relative_to(out)): p.read_bytes() for p in all_files(out)}
    runall_module = sys.modules["ptqdebug.api.runall"]  # (ptqdebug.api.runall is also the function's name)

    for error in (DataError("a late problem"), RuntimeError("a bug"), KeyboardInterrupt()):
        def fail(*args: object, error: BaseException = error, **kwargs: object) -> None:
            raise error

        monkeypatch.setattr(runall_module, "verdict", fail)  # the last step, after every figure was submitted
        with pytest.raises(type(error)):
            dbg.runall(str(model), str(data), out, node_type=["weight", "activation"], cache=False)
        assert {str(p.relative_to(out)): p.read_bytes() for p in all_files(out)} == before
        assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    new = tmp_path / "new" / "out"
    with pytest.raises(KeyboardInterrupt):
        dbg.runall(str(model), str(data), new, cache=False)
    assert not (tmp_path / "new").exists(), "folders a failed run created are removed again"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_files_have_the_usual_permissions(small: tuple[Path, Path], tmp_path: Path) -> None:
    """Files and folders come out as any the user makes (umask), not private like temporary ones:
    a report must open for others and a web server must serve it. Run under umask 027, so that
    neither 0600 nor a fixed 0644 would pass."""
    model, data = small
    script = f"""
import ptqdebug as dbg
dbg.runall({str(model)!r}, {str(data)!r}, {str(tmp_path / 'out')!r}, node_type="activation", cache=False)
dbg.calibrate({str(model.parent / 'float.onnx')!r}, {str(data)!r}, {str(tmp_path / 'cal')!r}, method="max")
dbg.export_model({str(model)!r}, {str(tmp_path / 'partial.onnx')!r}, ["Conv_0"])
"""
    done = subprocess.run([sys.executable, "-c", script], preexec_fn=lambda: os.umask(0o027), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out, cal = tmp_path / "out", tmp_path / "cal"
    files = [*all_files(out), *all_files(cal), tmp_path / "partial.onnx"]
    folders = [p for root in (out, cal) for p in [root, *root.rglob("*")] if p.is_dir()]
    assert len(files) > 20 and cal / "calibration_data" in folders and cal / "calibrated_model.onnx" in files
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o640"}
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {"0o750"}


def test_staged_output_moves_nothing_when_a_target_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "node_sensitivity").write_text("a user's file where a folder goes")
    with StagedOutput(tmp_path) as stage:
        assert stage.root is not None
        (stage.root / "node_sensitivity").mkdir()
        (stage.root / "node_sensitivity" / "a.log").write_text("x")
        (stage.root / "results.json").write_text("{}")
        with pytest.raises(OptionError, match="is a file but ptqdebug writes a folder there"):
            stage.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node_sensitivity"]


def _stage_two_files(stage: StagedOutput) -> None:
    assert stage.root is not None
    (stage.root / "node_sensitivity").mkdir()
    for name in ("node_sensitivity/a.log", "node_sensitivity/b.log", "results.json"):
        (stage.root / name).write_text("new")


def test_staged_output_moves_nothing_into_a_folder_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier run's folder left read-only (another user's, a container's): one line before
    any move, not a PermissionError halfway with the folder half old, half new. (Permissions
    are simulated: the suite may run as root, which ignores them.)"""
    from ptqdebug.report.files import UnwritableError

    (tmp_path / "node_sensitivity").mkdir()
    (tmp_path / "results.json").write_text("old")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "node_sensitivity" and real(p, mode))
    with StagedOutput(tmp_path) as stage:
        _stage_two_files(stage)
        with pytest.raises(UnwritableError, match=r"cannot write into '.*node_sensitivity' \(permission denied\)"):
            stage.commit()
    assert (tmp_path / "results.json").read_text() == "old" and not list((tmp_path / "node_sensitivity").iterdir())


def test_ctrl_c_during_the_moves_waits_for_the_last_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that arrives while the files move into place is held until every file has moved:
    save_dir holds one run's files, never a mix of two (a trial hit the milliseconds' window)."""
    (tmp_path / "results.json").write_text("old")
    real, moved = os.replace, []

    def replace(a: object, b: object) -> None:
        real(a, b)
        moved.append(b)
        if len(moved) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt), StagedOutput(tmp_path) as stage:
        _stage_two_files(stage)
        stage.commit(then=lambda: moved.append("then"))  # (runall's removal of an earlier run's stale files)
    assert len(moved) == 4 and moved[-1] == "then"
    assert {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == {
        "node_sensitivity/a.log": "new", "node_sensitivity/b.log": "new", "results.json": "new"}


def test_inputs_are_never_modified(small: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = small
    float_model = model.parent / "float.onnx"
    before = tree_digest(model, float_model, data)
    listing = sorted(p.name for p in model.parent.iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in [model, float_model, *all_files(data)]}
    dbg.runall(str(model), str(data), tmp_path / "out", float_model=str(float_model), data_num=None,
               node_type=["node", "weight", "activation"], cache=False)
    assert tree_digest(model, float_model, data) == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(p.name for p in model.parent.iterdir()) == listing
    assert sorted(p.name for p in all_files(data)) == sorted(p.name for p in stamps if data in p.parents)


# -- determinism ---------------------------------------------------------------------------------
def _results(out: Path) -> dict[str, object]:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results.pop("timing")
    return results


def test_same_inputs_give_bit_identical_results(small: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = small
    runs = [tmp_path / name for name in ("a", "b", "cached_1", "cached_2")]
    for out in runs:  # the second cached run takes its sweeps from the results cache
        dbg.runall(str(model), str(data), out, data_num=2, node_type=["node", "activation"], dis_nodes_list=["Conv_0"],
                   cw_nodes_list=["Conv_0"], cache=out.name.startswith("cached"), report=False)
    reference = _results(runs[0])
    for out in runs[1:]:
        assert _results(out) == reference, out.name
        for rel in reference["files"]:  # type: ignore[union-attr]
            if rel.endswith((".json", ".log")) and rel != "results.json":
                assert (out / rel).read_bytes() == (runs[0] / rel).read_bytes(), rel


def test_fixed_thread_count_gives_identical_results_in_another_context(small: tuple[Path, Path], tmp_path: Path) -> None:
    """docs/reliability.md: a fixed thread count (``open_context(..., threads=N)``) makes results
    independent of the machine's core count; two contexts with it agree bit for bit."""
    model, data = small
    a = dbg.get_sensitivity_of_nodes(dbg.open_context(str(model), str(data), threads=1, cache=False), data_num=None)
    b = dbg.get_sensitivity_of_nodes(dbg.open_context(str(model), str(data), threads=1, cache=False), data_num=None)
    assert json.dumps(a) == json.dumps(b)
    assert np.isfinite([v["cosine-similarity"] for v in a.values()]).all()


def test_what_a_killed_run_left_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """``kill -9`` leaves the staging folder (nothing can catch it); the next run in that folder
    removes it, since its process is gone, and keeps a live process's and another host's."""
    import socket

    if os.name != "posix":
        pytest.skip("process ids are checked on POSIX only")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    left = tmp_path / f"{STAGING_PREFIX}{dead.pid}@{host}-abc123"
    live = tmp_path / f"{STAGING_PREFIX}{os.getppid()}@{host}-def456"
    other_host = tmp_path / f"{STAGING_PREFIX}{dead.pid}@not-{host}-ghi789"
    for folder in (left, live, other_host):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "a.png").write_text("x")
    with StagedOutput(tmp_path) as stage:
        assert stage.root is not None and stage.root.name.startswith(f"{STAGING_PREFIX}{os.getpid()}@{host}-")
        stage.commit()
    assert not left.exists() and live.exists() and other_host.exists()
