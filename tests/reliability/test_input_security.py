"""Security of inputs: nothing from the user is executed or unpickled, node names cannot write
outside ``save_dir``, and a run never touches the network."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.cli import main
from ptqdebug.report.files import safe_filename, unique_filenames
from tests.reliability.models import (
    all_files,
    qdq_text_model,
    text_samples,
    write_folder,
)
from tests.support.source import dotted

SRC = Path(dbg.__file__).resolve().parent

#: The only places allowed to do what the scan forbids, each with its reason.
ALLOWED = {
    # length-prefixed pickles between ptqdebug and the worker processes it started itself, over a
    # private pipe (figure workers, sweep workers): nobody else can write to that pipe
    ("pipes.py", "read_message", "pickle.loads"),
    # `ptqdebug calibrate data.py:function` and `-m metrics.py:function`: the user names a loader
    # script or a metric file on the command line (or in a call) and asks for it to run; nothing
    # read from a file (results, caches, YAML) is ever loaded this way
    ("userscript.py", "load_function", "importlib.util.spec_from_file_location"),
    ("userscript.py", "load_function", "spec.loader.exec_module"),
    # `executor="ray"` with the user's RAY_ADDRESS: one connection attempt to the address Ray is
    # about to connect to anyway, so that a wrong one fails in seconds, not in Ray's retry loop
    ("parallel/cluster.py", "_check_ray_address", "socket.create_connection"),
    # the package's lazy public names: the module comes from its own fixed table, never from input
    ("__init__.py", "__getattr__", "importlib.import_module"),
}

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
FORBIDDEN_ATTRS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.loads", "marshal.load", "marshal.loads",
    "shelve.open", "dill.load", "dill.loads", "joblib.load", "torch.load", "yaml.load", "yaml.unsafe_load",
    "runpy.run_path", "runpy.run_module", "importlib.import_module", "importlib.util.spec_from_file_location",
    "spec.loader.exec_module", "os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
    "urllib.request.urlopen", "requests.get", "requests.post", "socket.socket", "socket.create_connection",
    "http.client.HTTPConnection", "http.client.HTTPSConnection",
}


def _violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        scopes: dict[ast.AST, str] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for child in ast.walk(fn):
                    scopes.setdefault(child, fn.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = dotted(node.func)
            where = (rel, scopes.get(node, "<module>"), name)
            kwargs = {k.arg: k.value for k in node.keywords}
            bad = None
            if name in FORBIDDEN_CALLS or name in FORBIDDEN_ATTRS:
                bad = name
            elif name in ("np.load", "numpy.load"):
                flag = kwargs.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    bad = f"{name} without allow_pickle=False"
            elif name.startswith("subprocess.") and isinstance(kwargs.get("shell"), ast.Constant) and kwargs["shell"].value:
                bad = f"{name}(shell=True)"
            if bad and where not in ALLOWED:
                found.append(f"{rel}:{node.lineno} in {where[1]}: {bad}")
    return found


def test_source_never_evaluates_or_unpickles_user_input() -> None:
    assert _violations() == []


def test_the_scan_sees_what_it_forbids(tmp_path: Path) -> None:
    """The scan itself works: each forbidden pattern in a sample file is reported."""
    sample = "import numpy as np, pickle\ndef f(p):\n    eval(p)\n    np.load(p)\n    np.load(p, allow_pickle=True)\n    pickle.loads(p)\n"
    tree = ast.parse(sample)
    calls = [dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert {"eval", "np.load", "pickle.loads"} <= set(calls)


def test_allowed_exceptions_still_exist() -> None:
    """Every allowed entry points at real code (a stale entry would hide nothing, but confuses)."""
    for rel, _, call in ALLOWED:
        assert call.rsplit(".", 1)[-1] in (SRC / rel).read_text(encoding="utf-8")


# -- node names in file names ------------------------------------------------------------------
WEIRD = {
    "Q_0": "../../x",
    "Q_2": "/abs/w",
    "Q_5": "a/b",
    "Conv_4": "a:b",
    "Relu_7": "名字 \\ " + "y" * 300,
    "Add_8": "..",
}


@pytest.fixture(scope="module")
def weird(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("weird")
    model = qdq_text_model()
    for node in model.graph.node:
        node.name = WEIRD.get(node.name, f"dq {node.name}")
    onnx.save(model, d / "model.onnx")
    return d / "model.onnx", write_folder(d / "data", text_samples(2))


def _cli_list(names: list[str]) -> str:
    return "[" + ",".join(f"'{n}'" if "'" not in n else f'"{n}"' for n in names) + "]"


def _inside(root: Path) -> list[Path]:
    files = all_files(root)
    base = root.resolve()
    for f in files:
        assert not f.is_symlink() and base in f.resolve().parents, f
        assert len(f.name.encode()) < 255 and f.name.isascii(), f.name
    return files


def test_weird_names_round_trip_and_stay_inside_save_dir(weird: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model, data = weird
    names = list(WEIRD.values())
    out = tmp_path / "out"
    assert main(["plot-distribution", str(model), str(data), "-n", _cli_list(names), "-s", str(out)]) == 0, capsys.readouterr().err
    files = _inside(out)
    # one figure per calibration node, one per ordinary node output: all distinct
    assert len(files) == len(names) and len({f.name.lower() for f in files}) == len(files)
    assert not (tmp_path / "x").exists() and not Path("/abs/w").exists()

    cw = tmp_path / "cw"
    assert main(["get-channelwise-data-distribution", str(model), str(data), "-n", _cli_list(["../../x", "/abs/w", "a/b"]),
                 "-s", str(cw)]) == 0
    assert len(_inside(cw)) == 3

    sens = tmp_path / "sens"
    assert main(["get-sensitivity-of-nodes", str(model), str(data), "-n", "node", "-i", _cli_list(["a:b", "..", names[4]]),
                 "-s", str(sens)]) == 0
    mapping = json.loads((sens / "sensitivity_of_node.json").read_text(encoding="utf-8"))
    assert set(mapping) == {"a:b", "..", names[4]}
    capsys.readouterr()


def test_weird_names_in_runall_report(weird: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = weird
    out = tmp_path / "run"
    run = dbg.runall(str(model), str(data), out, node_type=["node", "activation"], dis_nodes_list=list(WEIRD.values()),
                     cw_nodes_list=["../../x", "a/b"], cache=False)
    files = _inside(out)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert sorted(results["files"]) == sorted(str(f.relative_to(out)) for f in files)
    assert {d["name"] for d in results["distributions"]} == set(WEIRD.values())
    assert {results["sensitivity"]["node"]["entries"][i]["name"] for i in range(3)} <= set(WEIRD.values())
    images = [d["image"] for d in results["distributions"]]
    assert len(set(images)) == len(images) and all((out / i).is_file() for i in images)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "名字" in html
    assert run.save_dir == out


@pytest.mark.parametrize("names", [
    ["a/b", "a:b", "a b", "a\\b"],
    ["Conv", "conv"],
    ["名字", "池化", "畳み込み"],
    ["x" * 300 + "1", "x" * 300 + "2"],
    ["..", ".", "...", "", "/", "../..", "-rf"],
])
def test_file_name_fragments_are_safe_and_distinct(names: list[str]) -> None:
    frags = unique_filenames(names)
    assert len({f.lower() for f in frags.values()}) == len(names)
    for frag in frags.values():
        assert frag and "/" not in frag and "\\" not in frag and ".." not in frag and not frag.startswith(".")
        assert frag.isascii() and len(frag) <= 120
    assert safe_filename("/conv1/Conv") == "_conv1_Conv"  # the original tool's '/' → '_'


# -- the network --------------------------------------------------------------------------------
def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("ptqdebug opened a network connection")


def test_runall_makes_no_network_access(weird: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    model, data = weird
    run = dbg.runall(str(model), str(data), tmp_path / "out", cache=False)
    assert (tmp_path / "out" / "index.html").is_file() and run.files


def test_cli_and_figure_workers_make_no_network_access(weird: tuple[Path, Path], tmp_path: Path) -> None:
    """The same in every process of a CLI run (the figure workers too), through sitecustomize."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(*a, **k):\n"
        "    raise RuntimeError('network access attempted')\n"
        # a class, not a function: ssl subclasses socket.socket when imported (onnx < 1.21 imports
        # onnx.hub, hence urllib.request and ssl, with onnx)
        "class _Refused(socket.socket):\n"
        "    __init__ = _refuse\n"
        "socket.socket = _Refused\n"
        "socket.create_connection = socket.getaddrinfo = _refuse\n"
    )
    model, data = weird
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(guard), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "ptqdebug", "runall", str(model), str(data), "-s", str(tmp_path / "out"),
                           "--no-cache"], check=False, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "network access attempted" not in proc.stderr
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.socket()"], check=False, capture_output=True, text=True,
                           env=env)
    assert "network access attempted" in probe.stderr  # the guard is really active in child processes
