"""What tells whether a helper read the same model as this process: the model files' stamps
around each reading, and a key of the model read."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..model import CalibratedModel

__all__ = ["file_stamps", "model_key"]


def file_stamps(files: Sequence[str | None]) -> tuple[object, ...]:
    """What identifies the files' contents: device, inode, size and modification time."""
    out: list[object] = []
    for f in files:
        if f is None:
            out.append(None)
            continue
        try:
            st = os.stat(f)
        except OSError:
            out.append("missing")
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def model_key(model: CalibratedModel) -> tuple[object, ...]:
    """Node and initializer counts and the calibration node names of a model as read."""
    return len(model.proto.graph.node), len(model.proto.graph.initializer), tuple(q.name for q in model.quantizers)
