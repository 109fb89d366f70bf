"""A figure-drawing worker process: ``python -m ptqdebug.plots.worker``.

It reads jobs from stdin and writes one reply per job to stdout, each a length-prefixed pickle:
job ``(kind, result, path, options)`` → reply ``("ok", path)`` or ``("error", message)``. The
parent is always ptqdebug's own :class:`~ptqdebug.plots.render.Renderer` over a private pipe, so
unpickling its messages trusts no one else. Being started as a module (not through
``multiprocessing``), the worker never re-imports the user's script.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO, Any

__all__ = ["read_message", "write_message"]


def write_message(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))  # noqa: S301 - our own parent process, over a private pipe


def main() -> int:
    from .render import render

    import matplotlib.backends.backend_agg  # noqa: F401  (loaded before the first job arrives)

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            kind, result, path, options = read_message(source)
        except EOFError:
            return 0
        try:
            write_message(sink, ("ok", render(kind, result, path, options)))
        except Exception as exc:  # reported to the parent, which re-raises it
            write_message(sink, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    sys.exit(main())
