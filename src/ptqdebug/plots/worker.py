"""A figure-drawing worker process: ``python -m ptqdebug.plots.worker [RENDERERS]``.

It reads jobs from stdin and writes one reply per job to stdout, each a length-prefixed pickle
(:mod:`ptqdebug.pipes`):
job ``(kind, result, path, options)`` → reply ``("ok", path)``, ``("option", message)`` (an
:class:`~ptqdebug.errors.OptionError`, such as a folder that cannot take the file: the user's to
fix) or ``("error", message)``. The
parent is always ptqdebug's own :class:`~ptqdebug.plots.render.Renderer` over a private pipe, so
unpickling its messages trusts no one else. Being started as a module (not through
``multiprocessing``), the worker never re-imports the user's script.

Importing matplotlib costs a worker most of a second of CPU. With ``RENDERERS`` > 1 (Linux), the
worker imports it once and then forks the other renderers, which share its stdin and stdout: the
renderer that holds the read lock takes the next whole job, so an idle renderer always takes the
next figure, and each reply is written whole under the write lock. The locks are POSIX record
locks on a scratch file, which the system releases if a renderer dies; every renderer leaves at
the end of stdin, so the parent never waits for a reply that cannot come. Renderers run at a
lower priority (:data:`NICE`): figures are background work, the engine's run is the critical path.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from ..pipes import read_message, write_message

__all__ = ["main"]

_READ_LOCK, _WRITE_LOCK = 0, 1  # byte offsets locked in the scratch file
_MAX_ERROR = 2000  # characters of an error message sent back
#: Scheduling priority added to the renderers (Unix): on a busy core the engine runs first, and
#: the figures take every moment it leaves.
NICE = 5


class _Unbuffered:
    """A file descriptor read exactly, never ahead: the renderers share it, and a buffered reader
    would take bytes of the next job, which another renderer may be about to read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                break  # end of input: read_message raises EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _Pipes:
    """Whole messages (:mod:`ptqdebug.pipes`) in and out over the worker's stdin/stdout, shared
    by its renderers, each under its lock."""

    def __init__(self, source: int, sink: int, lock_fd: int | None) -> None:
        self.source = _Unbuffered(source)
        self.sink = os.fdopen(sink, "wb", closefd=False)
        self.lock_fd = lock_fd

    def _locked(self, offset: int, fn: Any) -> Any:
        if self.lock_fd is None:
            return fn()
        import fcntl

        fcntl.lockf(self.lock_fd, fcntl.LOCK_EX, 1, offset)
        try:
            return fn()
        finally:
            fcntl.lockf(self.lock_fd, fcntl.LOCK_UN, 1, offset)

    def read(self) -> Any:
        """The next job, or None at the end of input."""
        try:
            return self._locked(_READ_LOCK, lambda: read_message(self.source))
        except EOFError:
            return None

    def write(self, reply: tuple[str, str]) -> None:
        self._locked(_WRITE_LOCK, lambda: write_message(self.sink, reply))


def _serve(pipes: _Pipes) -> None:
    from ..errors import OptionError
    from .render import render

    while (job := pipes.read()) is not None:
        kind, result, path, options = job
        try:
            reply = ("ok", render(kind, result, path, options))
        except OptionError as exc:
            reply = ("option", str(exc)[:_MAX_ERROR])
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which re-raises it
            reply = ("error", f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
        pipes.write(reply)


def _fork_renderers(count: int) -> list[int]:
    """Start ``count`` copies of this process (after the imports); [] in a copy."""
    children: list[int] = []
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError:
            break  # fewer renderers, same figures
        if pid == 0:
            return []
        children.append(pid)
    return children


def main(argv: list[str] | None = None) -> int:
    import gc
    import warnings

    if hasattr(os, "nice"):  # figures are background work: the analyses keep their core when both want one
        try:
            os.nice(NICE)
        except OSError:
            pass
    argv = sys.argv[1:] if argv is None else argv
    renderers = max(1, int(argv[0])) if argv else 1
    # node names in scripts the default font lacks: the figure is still right, the warning is noise
    # (matplotlib < 3.9 says "missing from current font", later ones "missing from font(s) ...")
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from (current )?font")

    # loaded before the first job arrives
    import matplotlib.backends.backend_agg
    import matplotlib.collections
    import matplotlib.figure
    import matplotlib.patches
    import matplotlib.ticker  # noqa: F401

    from . import render  # noqa: F401
    # the imported modules live as long as the process: the garbage collector need not scan them
    # again after each figure (a tenth of the drawing time otherwise)
    gc.collect()
    gc.freeze()

    if renderers < 2 or not sys.platform.startswith("linux"):
        _serve(_Pipes(sys.stdin.fileno(), sys.stdout.fileno(), None))
        return 0
    with tempfile.TemporaryFile() as lock:  # its bytes 0 and 1 are the read and write locks
        lock.write(b"\0\0")
        lock.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        children = _fork_renderers(renderers - 1)
        pipes = _Pipes(sys.stdin.fileno(), sys.stdout.fileno(), lock.fileno())
        if not children:  # a copy: no interpreter shutdown, nothing of the parent's to flush twice
            status = 1
            try:
                _serve(pipes)
                status = 0
            finally:
                os._exit(status)
        _serve(pipes)
        failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in children)
        if failed:
            pipes.write(("error", f"{failed} figure renderer(s) stopped unexpectedly"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
