"""Length-prefixed pickles over a pipe, between ptqdebug and its own worker processes.

Used only on private pipes to child processes ptqdebug started itself (figure workers, sweep
workers), so unpickling trusts no one else.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any, Protocol

__all__ = ["read_message", "write_message"]


class Readable(Protocol):
    """What :func:`read_message` reads from: a binary file, or anything with ``read(size) -> bytes``."""

    def read(self, size: int, /) -> bytes: ...


def write_message(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def read_message(stream: Readable) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)  # noqa: S301 - our own child or parent process, over a private pipe
