"""Writing files safely: atomically (temporary file, then rename) and with safe names."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import OptionError

__all__ = ["dump_json", "ensure_dir", "safe_filename", "write_atomic"]


def ensure_dir(path: str | os.PathLike[str], what: str = "save_dir") -> Path:
    """Create ``path`` (and parents) or say clearly why it cannot be used."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OptionError(f"{what} {str(p)!r} is a file; expected a folder (or a path where one can be created)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"{what} {str(p)!r} cannot be created ({exc.strerror}); choose a writable folder") from None
    if not os.access(p, os.W_OK):
        raise OptionError(f"{what} {str(p)!r} is not writable; choose a writable folder")
    return p


def write_atomic(path: str | os.PathLike[str], write: Callable[[Any], None], binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


def dump_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Valid JSON (``allow_nan=False``: inf/NaN written as the strings "inf", "-inf", "nan")."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    return write_atomic(path, lambda f: f.write(text + "\n"))


_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+=@,]")


def safe_filename(name: str, limit: int = 120) -> str:
    """A file-name fragment from an untrusted node name.

    Every character outside ``[A-Za-z0-9._-+=@,]`` becomes ``_`` (so ``/conv1/Conv`` gives
    ``_conv1_Conv``, as the original tool's ``/`` → ``_`` did), no ``..`` survives and no name
    starts with a dot, and a name longer than ``limit`` keeps its end plus a short hash of the
    whole name, so distinct names stay distinct.
    """
    cleaned = _UNSAFE.sub("_", name).replace("..", "__")
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    cleaned = cleaned or "_"
    if len(cleaned) > limit:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[-(limit - 9):]}-{digest}"
    return cleaned
