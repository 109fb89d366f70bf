"""The ``ptqdebug`` command line: a thin layer over :mod:`ptqdebug.api`.

Subcommands keep the original tool's names and flags (``hmct-debugger`` → ``ptqdebug``). Every
user mistake ends as one line ``ptqdebug: error: ...`` on stderr and exit status 2; an interrupt
as ``ptqdebug: interrupted`` and status 130 (files are written atomically, and ``runall`` moves
its files into place only at the end, so nothing half-written is left); SIGTERM (``kill``, a job
scheduler's time limit) and SIGHUP (the terminal closed) stop it the same way, with status 143 and
129 (128 + the signal's number, as a shell reports them); a closed output pipe
(``ptqdebug info m.onnx | head``) ends quietly. Bugs keep their traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from ..errors import PtqDebugError
from .args import UsageError, build_parser, folder_hint, normalize_argv, unrecognized_hint

__all__ = ["main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, as Ctrl-C raises ``KeyboardInterrupt``: a
    subclass of it, so that every clean-up Ctrl-C runs (staging folders, workers, folders a
    command created) runs for these signals too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_termination() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated` (a signal the process
    ignores, as under ``nohup``, stays ignored). The first one starts the clean-up, which later
    ones do not cut short (a service manager may repeat SIGTERM before its SIGKILL). The handlers
    before are restored after, so that ``main()`` called from Python leaves no trace."""
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    before: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}

    def terminate(signum: int, frame: FrameType | None) -> None:
        for other in before:
            signal.signal(other, signal.SIG_IGN)
        raise Terminated(signum)

    try:
        for signum in wanted:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                before[signum] = signal.signal(signum, terminate)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    with _stop_on_termination():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # a node name in a script the font lacks is drawn as a box; the warning helps no one here
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font", category=UserWarning)
    try:
        parser = build_parser()
        args = parser.parse_args(normalize_argv(args_in, parser.commands))
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"ptqdebug: error: {unrecognized_hint(str(exc), args_in)}", file=sys.stderr)
        return 2
    except PtqDebugError as exc:
        print(f"ptqdebug: error: {exc}{folder_hint(exc)}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"ptqdebug: interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("ptqdebug: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
