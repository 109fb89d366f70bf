"""A figure-drawing worker process: ``python -m ptqdebug.plots.worker``.

It reads jobs from stdin and writes one reply per job to stdout, each a length-prefixed pickle
(:mod:`ptqdebug.pipes`):
job ``(kind, result, path, options)`` → reply ``("ok", path)`` or ``("error", message)``. The
parent is always ptqdebug's own :class:`~ptqdebug.plots.render.Renderer` over a private pipe, so
unpickling its messages trusts no one else. Being started as a module (not through
``multiprocessing``), the worker never re-imports the user's script.
"""

from __future__ import annotations

import sys

from ..pipes import read_message, write_message

__all__ = ["main"]


def main() -> int:
    import warnings

    from .render import render

    # node names in scripts the default font lacks: the figure is still right, the warning is noise
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")

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
