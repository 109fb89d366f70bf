"""Argument parsing: the original's flags, list syntax and boolean options, with argparse.

Conveniences that run before argparse sees the arguments (:func:`normalize_argv`):

* a subcommand may be spelled with underscores, as the Python function (``plot_acc_error``);
* a list value split by the shell at a space (``-q ['weight', 'activation']`` arrives as two
  words) is joined back until its brackets balance;
* a boolean flag (``-v``) may be given bare or followed by a value (``-v True``, ``-v no``), as
  with the original's click options.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Sequence
from typing import NoReturn

from ..errors import OptionError, UnknownNodeError
from ..listsyntax import ListValue, parse_list

__all__ = ["BOOL_FLAGS", "UsageError", "build_parser", "names_value", "normalize_argv", "parse_bool", "unrecognized_hint"]

_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}

#: Boolean options per subcommand (short and long spellings); ``-a`` is a boolean only in
#: plot-acc-error (elsewhere it is ``--axis``).
BOOL_FLAGS: dict[str, set[str]] = {
    "get-sensitivity-of-nodes": {"-v", "--verbose"},
    "runall": {"-v", "--verbose", "-avm", "--average_mode"},
    "plot-acc-error": {"-a", "--average_mode"},
    "get-calibration-nodes-stat-info": {"-v", "--visualize"},
}


class UsageError(Exception):
    """A command-line mistake argparse found."""


def parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; expected true/false, yes/no, 1/0, on/off")


def list_value(what: str):  # noqa: ANN201 - argparse type factory
    def parse(text: str) -> ListValue:
        try:
            value = parse_list(text, what)
        except OptionError as exc:  # argparse already names the option: drop our own prefix
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None
        if value == [] or value == "":
            raise argparse.ArgumentTypeError("empty; give at least one name (e.g. [a,b]) or leave the option out")
        return value

    return parse


def names_value(what: str):  # noqa: ANN201 - argparse type factory
    """A flat list of names, as ``a,b`` or ``[a,b]`` (ptqdebug's own node options: ``export`` and
    ``calibrate``'s ``--float-nodes`` / ``--int16-nodes``; the original's options take its list syntax)."""
    def parse(text: str) -> list[str]:
        try:
            value = parse_list(text, what) if text.strip().startswith("[") else [t.strip() for t in text.split(",")]
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None
        flat = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in flat):
            raise argparse.ArgumentTypeError(f"{text!r} is a nested list; expected names like a,b or [a,b]")
        names = [v for v in flat if v]
        if not names:
            raise argparse.ArgumentTypeError("empty; give at least one name (e.g. a,b) or leave the option out")
        return names  # type: ignore[return-value]

    return parse


def _starts_option(token: str) -> bool:
    """``-s``, ``--save_dir``, ``-nq``: a flag, not the rest of a list value split by the shell."""
    return len(token) > 1 and token[0] == "-" and (token[1].isalpha() or token[1] == "-")


#: Python function names whose subcommand is not their hyphenated spelling
PYTHON_NAMES = {"local_errors": "local-error", "export_model": "export"}


def normalize_argv(argv: Sequence[str], commands: Collection[str] = ()) -> list[str]:
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is not None and argv[at] not in commands:  # the Python name of a function: plot_acc_error
        named = PYTHON_NAMES.get(argv[at], argv[at].replace("_", "-"))
        if named in commands:
            argv = [*argv[:at], named, *argv[at + 1:]]
    command = argv[at] if at is not None else ""
    flags = BOOL_FLAGS.get(command, set())
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in flags:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and (nxt.strip().lower() in _TRUE | _FALSE or not nxt.strip()):  # -v '': parse_bool says why
                out.append(f"{tok}={nxt}")
                i += 2
            else:
                out.append(f"{tok}=true")
                i += 1
            continue
        if tok.lstrip().startswith("[") and tok.count("[") > tok.count("]"):
            joined = tok
            j = i + 1
            while j < len(argv) and joined.count("[") > joined.count("]") and not _starts_option(argv[j]):
                joined += " " + argv[j]
                j += 1
            if joined.count("[") == joined.count("]"):
                out.append(joined)
                i = j
                continue
        out.append(tok)
        i += 1
    return out


def folder_hint(exc: Exception) -> str:
    """A pointer to ``-s`` when an output node (``-o`` in the analysis commands, the original's
    flag) names a folder, as ``-o`` does in ``calibrate`` and ``export``; else empty."""
    if isinstance(exc, UnknownNodeError) and exc.what == "output_node" and exc.names:
        name = exc.names[0]
        if name.endswith(("/", os.sep)) or os.path.isdir(name):
            return " (-o names the node to compare at, as in the original tool; the output folder is -s)"
    return ""


def unrecognized_hint(message: str, argv: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" ``message``, which the top-level parser raises, pointed
    at the subcommand's help, with a hint when the word follows a boolean flag: ``-v maybe``
    reads as a bare ``-v`` and a stray ``maybe``."""
    head, see, tail = message.partition(" (see ")
    if not head.startswith("unrecognized arguments:"):
        return message
    given = next((a for a in argv if not a.startswith("-")), "")
    command = PYTHON_NAMES.get(given, given.replace("_", "-"))
    see = f" (see `ptqdebug {command} --help`)" if command else see + tail
    if not head.removeprefix("unrecognized arguments:").strip():  # only empty words: `-s ''` or a stray ''
        return f"unrecognized empty argument ''; expected none there: remove it, or put there the value it stands for{see}"
    stray = set(head.removeprefix("unrecognized arguments:").split())
    flags = BOOL_FLAGS.get(command, set())
    for flag, word in zip(argv, argv[1:]):
        if flag in flags and word in stray:
            return f"{flag} is true or false (bare {flag} means true), not {word!r}{see}"
    return head + see


class _Parser(argparse.ArgumentParser):
    commands: tuple[str, ...] = ()  # the subcommands (on the top-level parser)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> _Parser:
    from . import commands

    parser = _Parser(
        prog="ptqdebug",
        description="Find where and why post-training quantization hurts an ONNX model.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"ptqdebug {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    commands.register(sub)
    parser.commands = tuple(sub.choices)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def add_model_and_data(p: argparse.ArgumentParser) -> None:
    """The two positional arguments every analysis takes, model first (as in the original)."""
    p.add_argument("model_or_file", metavar="MODEL", help="the calibrated model (.onnx)")
    p.add_argument("calibrated_data", metavar="CALIBRATION_DATA",
                   help="calibration data: a folder with one folder per model input (0.npy, 1.npy, ...; for a "
                        "one-input model the .npy files may sit in the folder itself), an .npz or an .npy")


def add_runtime(p: argparse.ArgumentParser, sweeps: bool = True) -> None:
    """The options of the runtime; ``sweeps``: also those of the sweeps (cache, workers, executor)."""
    p.add_argument("--float-model", dest="float_model", metavar="FLOAT.onnx",
                   help="the float model, for QDQ models that store weights as integers")
    p.add_argument("--providers", metavar="LIST",
                   help="ONNX Runtime execution providers, comma-separated: a,b or [a,b] (default: CPUExecutionProvider, "
                        "or $PTQDEBUG_PROVIDERS where set)")
    if not sweeps:
        p.set_defaults(cache=True, workers=None, executor=None)
        return
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="compute sweeps afresh instead of reusing ptqdebug's results cache")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="score candidates in N processes")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where candidates run: this machine (default) or a Ray cluster (pip install 'ptqdebug[ray]')")
