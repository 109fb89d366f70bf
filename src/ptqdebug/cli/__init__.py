"""The ``ptqdebug`` command line: a thin layer over :mod:`ptqdebug.api`.

Subcommands keep the original tool's names and flags (``hmct-debugger`` → ``ptqdebug``). Every
user mistake ends as one line ``ptqdebug: error: ...`` on stderr and exit status 2; an interrupt
as ``ptqdebug: interrupted`` and status 130 (files are written atomically, and ``runall`` moves
its files into place only at the end, so nothing half-written is left); a closed output pipe
(``ptqdebug info m.onnx | head``) ends quietly. Bugs keep their traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from ..errors import PtqDebugError
from .args import UsageError, bool_value_hint, build_parser, normalize_argv

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # a node name in a script the font lacks is drawn as a box; the warning helps no one here
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
    try:
        parser = build_parser()
        args = parser.parse_args(normalize_argv(args_in, parser.commands))
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"ptqdebug: error: {bool_value_hint(str(exc), args_in)}", file=sys.stderr)
        return 2
    except PtqDebugError as exc:
        print(f"ptqdebug: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ptqdebug: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
