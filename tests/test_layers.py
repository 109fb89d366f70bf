"""Imports flow one way (docs/architecture.md): the core never pulls in presentation or the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ptqdebug"

#: package → packages it must never import (directly, at any depth of its modules)
FORBIDDEN = {
    "analyses": ("plots", "report", "api", "cli", "calibration", "demo"),
    "engine": ("analyses", "plots", "report", "api", "cli", "calibration", "demo"),
    "formats": ("engine", "analyses", "plots", "report", "api", "cli"),
    "plots": ("api", "cli", "engine", "calibration"),
    "report": ("api", "cli", "engine", "calibration"),
    "api": ("cli",),
    "parallel": ("plots", "report", "api", "cli", "calibration", "demo"),
}

#: parallel/'s modules, each importing only modules before it (the package doc lists them so)
PARALLEL_ORDER = ("unit", "stamps", "sweep", "pool", "local", "helper", "cluster", "__init__", "__main__")


def _imports(path: Path) -> set[str]:
    """Absolute names of the ptqdebug modules a file imports."""
    rel = path.relative_to(SRC.parent).with_suffix("").parts
    package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {n for n in out if n.startswith("ptqdebug")}


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_one_way_imports(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            assert len(parts) < 2 or parts[1] not in FORBIDDEN[package], f"{path.relative_to(SRC)} imports {name}"


def test_parallel_modules_import_one_way() -> None:
    """Inside ``parallel/``, a module imports only the modules before it in :data:`PARALLEL_ORDER`
    (no cycles; the package itself, its ``__init__``, comes after all but ``__main__``)."""
    found = {path.stem: path for path in (SRC / "parallel").glob("*.py")}
    assert set(found) == set(PARALLEL_ORDER)
    for i, module in enumerate(PARALLEL_ORDER):
        for name in _imports(found[module]):
            parts = name.split(".")
            if parts[:2] != ["ptqdebug", "parallel"]:
                continue
            other = parts[2] if len(parts) > 2 and parts[2] in found else "__init__"
            assert other != module and PARALLEL_ORDER.index(other) < i, f"parallel/{module}.py imports {name}"


def test_importing_the_package_is_light() -> None:
    probe = "import sys, ptqdebug; print('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    loaded = proc.stdout.split()
    assert not [m for m in loaded if m.startswith(("matplotlib", "tqdm", "ptqdebug.cli", "PIL", "yaml", "onnxruntime"))]


def test_public_names_load_on_first_use() -> None:
    import ptqdebug

    for name in ptqdebug.__all__:
        assert getattr(ptqdebug, name) is not None, name
    assert set(ptqdebug.__all__) <= set(dir(ptqdebug))
    from ptqdebug import OptionError, runall  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ptqdebug.nope  # noqa: B018


def test_lazy_names_and_what_type_checkers_see_agree() -> None:
    """``ptqdebug._EXPORTS`` (what loads at run time) and the ``if TYPE_CHECKING`` imports (what
    type checkers and editors see) name the same things from the same modules."""
    import ptqdebug

    tree = ast.parse((SRC / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.asname or a.name: "." + (imp.module or "") for imp in block.body if isinstance(imp, ast.ImportFrom) for a in imp.names}
    assert set(seen) == set(ptqdebug._EXPORTS)
    for name, module in seen.items():
        assert module.startswith(ptqdebug._EXPORTS[name]), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renderers fork on Linux only")
def test_figure_worker_is_single_threaded_without_onnxruntime_when_it_forks() -> None:
    """What a worker has loaded when it forks its renderers: matplotlib and the figure code, no
    ONNX Runtime, and one thread (Python 3.12 warns when a multi-threaded process forks)."""
    import os

    from ptqdebug.plots.render import WORKER_ENV

    probe = ("import sys, ptqdebug.plots.worker, matplotlib.backends.backend_agg\n"
             "threads = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Threads')]\n"
             "print(threads[0], 'onnxruntime' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **WORKER_ENV})
    assert proc.stdout.split() == ["1", "False"], proc.stderr
