"""The exceptions ptqdebug raises for problems the user can fix.

Every :class:`PtqDebugError` message says what was found, what was expected and how to fix it, in
one line, so that the command line can print it as ``ptqdebug: error: <message>`` and exit with
status 2. Anything else that escapes is a bug in ptqdebug and keeps its traceback.

Tree::

    PtqDebugError
    ├── ModelError          the calibrated (or float) model cannot be used
    │   └── UnsupportedOpError   a custom operator ONNX Runtime cannot run
    ├── DataError           the calibration data does not fit the model
    └── OptionError         an argument or option has a wrong value
        └── UnknownNodeError     a node name that is not in the model
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DataError",
    "ModelError",
    "OptionError",
    "PtqDebugError",
    "UnknownNodeError",
    "UnsupportedOpError",
]


class PtqDebugError(Exception):
    """Base class of every error caused by the user's model, data or options."""


class ModelError(PtqDebugError):
    """The model file is missing, unreadable, invalid, or has no calibration nodes."""


class UnsupportedOpError(ModelError):
    """The model contains custom operators that plain ONNX Runtime cannot run."""


class DataError(PtqDebugError):
    """The calibration data is missing, malformed, or does not match the model inputs."""


class OptionError(PtqDebugError, ValueError):
    """An option has a value outside what it accepts."""


class UnknownNodeError(OptionError):
    """A node name given by the user does not exist in the model."""

    def __init__(self, names: Iterable[str], what: str, known: Iterable[str],
                 listing: str = "list the names with `ptqdebug info MODEL`") -> None:
        self.names, self.what = tuple(names), what
        known = list(known)
        first = self.names[0]
        parts = [p.strip() for p in first.split(",")]
        known_set = set(known)
        shown = ", ".join(repr(n) for n in self.names[:5]) + (" ..." if len(self.names) > 5 else "")
        msg = f"{what}: {shown} {'is' if len(self.names) == 1 else 'are'} not in the model"
        if len(parts) > 1 and all(p in known_set for p in parts):  # a list written without its brackets
            msg += f"; did you mean the list [{','.join(parts)}]?"
        else:  # a tensor named for its calibration node, else the closest name
            hint = f"{first}_QuantizeLinear" if f"{first}_QuantizeLinear" in known_set else _closest(first, known)
            msg += f"; did you mean {hint!r}?" if hint else f"; {listing}"
        super().__init__(msg)


def _closest(name: str, known: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None
