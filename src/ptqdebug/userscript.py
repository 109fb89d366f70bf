"""Functions from the user's own Python files, named ``path/to/file.py:function``.

Two options take them: calibration inputs (a loader script that returns samples) and metrics (a
function that scores a tensor against its float reference). The file is imported as a module of
its own (never as ``__main__``, never from ``sys.path``); an exception raised by the user's code
becomes a one-line :class:`~ptqdebug.errors.PtqDebugError` that names the file and line, so the
command line reports it like any other user mistake instead of printing a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import PtqDebugError

__all__ = ["SCRIPT", "file_digest", "load_function", "user_error"]

#: ``path/to/file.py:function``
SCRIPT = re.compile(r"^(?P<path>.+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")


def user_error(exc: BaseException, script: Path, what: str, error: type[PtqDebugError], fix: str) -> PtqDebugError:
    """``error`` saying that ``what`` raised ``exc``, at the line of ``script`` where it happened."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == script.resolve():
            where = f" at {script.name}:{frame.lineno}"
            break
    return error(f"{what} raised {type(exc).__name__}: {exc}{where}; {fix}")


def load_function(path: Path, func: str, what: str, error: type[PtqDebugError], example: str) -> Callable[..., Any]:
    """Import ``path`` and return its function ``func``; ``what`` names the file in messages
    ("loader script"), ``example`` shows what to define when the function is missing."""
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist; expected file.py:function")
    name = f"_ptqdebug_user_{hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise error(f"{what} {str(path)!r} cannot be imported; expected a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code
        raise user_error(exc, path, f"{what} {path.name}", error, f"fix the {what}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == name]
        raise error(f"{what} {str(path)!r} has no function {func!r}"
                    + (f"; it defines {', '.join(found[:5])}" if found else f"; define {example}"))
    return fn  # type: ignore[no-any-return]


def file_digest(path: Path) -> str:
    """A digest of the file's bytes: what a cached result computed with its code depends on."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
