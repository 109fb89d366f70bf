"""A results cache on disk, so re-running a sweep (or runall) reuses what was computed.

Entries are JSON files named by a SHA-256 key over everything that determines the result: the
model as ptqdebug runs it (the canonical graph, which includes restored Relu/Clip nodes and float
weights taken from a float model), every sample that was used (bytes, dtype and shape), the
options, the execution providers, the ptqdebug and ONNX Runtime versions, and the engine's session
options that change numbers (``engine.runtime.NUMERICS``). Changing any weight,
any input value or any option changes the key: the cache cannot return a stale result.

Location: ``$PTQDEBUG_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptqdebug``, else
``~/.cache/ptqdebug``. Writes are atomic; an unreadable or corrupt entry, or one that does not
read back as its kind of result (a file edited by hand, an older layout), is a miss. Pass
``cache=False`` (``--no-cache``) to compute afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ResultCache", "cache_dir", "sample_digest"]


def cache_dir() -> Path:
    if os.environ.get("PTQDEBUG_CACHE_DIR"):
        return Path(os.environ["PTQDEBUG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ptqdebug"


def sample_digest(sample: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(sample):
        arr = np.asarray(sample[name], order="C")
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class ResultCache:
    """get/put JSON-able results under keys made from a model digest and the other inputs."""

    def __init__(self, model_digest: Callable[[], str], enabled: bool = True, folder: Path | None = None) -> None:
        self._model_digest = model_digest  # computed on first use: hashing a large model takes time
        self.enabled = enabled
        self.folder = folder or cache_dir()
        self.hits = 0
        self._kinds: dict[str, str] = {}  # key → the kind of result it was made for

    def key(self, kind: str, samples: Sequence[str], options: Mapping[str, Any]) -> str:
        import onnxruntime

        from . import __version__
        from .engine.runtime import NUMERICS

        payload = json.dumps({"kind": kind, "model": self._model_digest(), "samples": list(samples), "options": options,
                              "ptqdebug": __version__, "onnxruntime": onnxruntime.__version__, "numerics": NUMERICS},
                             sort_keys=True, default=str)
        key = hashlib.sha256(payload.encode()).hexdigest()
        self._kinds[key] = kind
        return key

    def get(self, key: str) -> Any | None:
        if not self.enabled:
            return None
        path = self.folder / f"{key}.json"
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not _readable(self._kinds.get(key, ""), value):
            return None  # computed again, and the entry overwritten
        self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        if not self.enabled:
            return
        from .report.files import dump_json

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            dump_json(self.folder / f"{key}.json", value)
        except OSError:
            pass  # a cache that cannot be written is only a slower run


def _readable(kind: str, value: Any) -> bool:
    """Whether ``value`` reads back as a result of ``kind`` (any JSON but null for other kinds)."""
    if value is None:
        return False
    if kind != "sensitivity":
        return True
    from .analyses.sensitivity import SensitivityResult

    try:
        result = SensitivityResult.from_dict(value)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return bool(result.metrics) and all(set(e.scores) == set(result.metrics) for e in result.entries)
