"""Writing files safely: atomically (temporary file, then rename) and with safe names."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import OptionError

__all__ = ["FILE_MODE", "StagedOutput", "UnwritableError", "check_dir", "check_targets", "dump_json", "ensure_dir", "move_file",
           "owned_prefix", "remove_abandoned", "safe_filename", "staging_folder", "unique_filenames", "write_atomic"]

#: Prefix of the hidden folder a run writes into before its files are moved into place.
STAGING_PREFIX = ".ptqdebug-staging-"


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` sets it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of what ptqdebug writes: those of any file or folder the user creates (``umask``).
#: Temporary files and folders are created private (0600/0700) and would otherwise stay so once
#: renamed into place: reports that nobody else can open, a web server cannot serve.
_UMASK = _umask()
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


def staging_folder(prefix: str, parent: str | os.PathLike[str]) -> Path:
    """A new uniquely named folder in ``parent`` that may be renamed into place later (it gets
    the usual permissions, not a temporary folder's). Its name carries this process's id and
    host, so that a later run can remove it if this process is killed (:func:`remove_abandoned`)."""
    remove_abandoned(prefix, parent)
    folder = Path(tempfile.mkdtemp(prefix=owned_prefix(prefix), dir=parent))
    os.chmod(folder, DIR_MODE)
    return folder


def owned_prefix(prefix: str) -> str:
    """``prefix`` with this process's id and host: ``<prefix><pid>@<host>-``."""
    return f"{prefix}{os.getpid()}@{socket.gethostname()}-"


def remove_abandoned(prefix: str, parent: str | os.PathLike[str]) -> None:
    """Delete the folders in ``parent`` named by :func:`owned_prefix` whose process, on this host,
    is gone: what a run killed outright (``kill -9``, out of memory) left behind. Folders of
    live processes, of other hosts (a shared disk) and of unknown form are kept."""
    if os.name != "posix":  # (os.kill(pid, 0) would send Ctrl-C on Windows)
        return
    host = socket.gethostname()
    try:
        found = [p for p in Path(parent).iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    for folder in found:
        pid, _, rest = folder.name[len(prefix):].partition("@")
        if not pid.isdigit() or not rest.startswith(f"{host}-") or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


def _as_path(path: object, what: str) -> Path:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise OptionError(f"{what} is {path!r}; expected a folder path such as './debug_result/'")
    return Path(path)


def check_dir(path: str | os.PathLike[str], what: str = "save_dir") -> Path:
    """Check that ``path`` is, or can become, a writable folder, without creating anything.

    Commands call this before any work, so that a bad ``save_dir`` fails in a second and a failed
    command leaves no empty folder behind; the folder is created when the first file is written.
    """
    p = _as_path(path, what)
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise OptionError(f"{what} {str(p)!r} is a file; expected a folder (or a path where one can be created)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OptionError(f"{what} {str(p)!r} is not writable; choose a writable folder")
        return p
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OptionError(f"{what} {str(p)!r} cannot be created: {str(parent)!r} is a file; choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"{what} {str(p)!r} cannot be created: {str(parent)!r} is not writable; choose a writable folder")
    return p


def ensure_dir(path: str | os.PathLike[str], what: str = "save_dir") -> Path:
    """Create ``path`` (and parents) or say clearly why it cannot be used."""
    p = _as_path(path, what)
    if p.exists() and not p.is_dir():
        raise OptionError(f"{what} {str(p)!r} is a file; expected a folder (or a path where one can be created)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"{what} {str(p)!r} cannot be created ({exc.strerror}); choose a writable folder") from None
    if not os.access(p, os.W_OK):
        raise OptionError(f"{what} {str(p)!r} is not writable; choose a writable folder")
    return p


class StagedOutput:
    """All of a run's files, or none: write under :attr:`root`, then :meth:`commit`.

    ``root`` is a hidden folder inside ``save_dir``; :meth:`commit` moves every file written there
    to the same relative path in ``save_dir`` (each move an atomic rename on the same file
    system) and returns the final paths. Leaving the ``with`` block without committing (an error,
    Ctrl-C) deletes the staging folder, so ``save_dir`` keeps exactly what it held before. Files
    in ``save_dir`` that the run does not write (a user's notes, other runs' results) are never
    touched.
    """

    def __init__(self, save_dir: str | os.PathLike[str], what: str = "save_dir") -> None:
        self.final = check_dir(save_dir, what)
        self.what = what
        self.root: Path | None = None
        self._committed = False

    def __enter__(self) -> StagedOutput:
        missing = []  # folders this run creates, removed again if it fails
        folder = self.final.absolute()
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        self._created = missing
        ensure_dir(self.final, self.what)
        self.root = staging_folder(STAGING_PREFIX, self.final)
        return self

    def final_path(self, staged: str | os.PathLike[str]) -> Path:
        """Where a file written under :attr:`root` ends up."""
        assert self.root is not None
        return self.final / Path(staged).relative_to(self.root)

    def commit(self, then: Callable[[], None] | None = None) -> list[Path]:
        """Move every staged file into ``save_dir``, then call ``then`` (what completes the run's
        output: runall removes an earlier run's stale files), both held from Ctrl-C, so that
        ``save_dir`` never holds a mix of two runs; return the final paths (sorted)."""
        assert self.root is not None
        staged = sorted(p for p in self.root.rglob("*") if p.is_file())
        moves = [(p, self.final_path(p)) for p in staged]
        for _, target in moves:  # check first, so that a clash moves nothing
            for parent in reversed(target.relative_to(self.final).parents):
                folder = self.final / parent
                if folder.exists() and not folder.is_dir():
                    raise OptionError(f"{str(folder)!r} is a file but ptqdebug writes a folder there; move it away or choose another {self.what}")
                if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):  # (an earlier run's, as another user)
                    raise UnwritableError(f"cannot write into {str(folder)!r} (permission denied); expected writable folders "
                                          f"in {self.what}: fix its permissions or choose another {self.what}")
            if target.is_dir():
                raise OptionError(f"{str(target)!r} is a folder but ptqdebug writes a file there; move it away or choose another {self.what}")
        with _signals_held():  # Ctrl-C now would leave some files new and some old: it waits for the last move
            for source, target in moves:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                except OSError as exc:
                    raise _unwritable(target, exc) from None
            self._committed = True
            if then is not None:
                then()
        self._remove()
        return [target for _, target in moves]

    def _remove(self) -> None:
        if self.root is not None:
            for _ in range(3):  # a figure worker stopped a moment ago may still have had a file open
                shutil.rmtree(self.root, ignore_errors=True)
                if not self.root.exists():
                    break
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._remove()
        if not self._committed:
            for folder in getattr(self, "_created", []):
                try:
                    folder.rmdir()  # only if still empty
                except OSError:
                    break


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then deliver them: their handlers
    are swapped for one that notes them (only the main thread can; a mask would not do, as another
    thread of the process would take the signal and Python would still interrupt this one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = [signal.SIGINT, *(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))]
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def move_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename a file this run wrote to another name in the same folder (one atomic rename)."""
    os.replace(source, target)
    return Path(target)


class UnwritableError(OptionError, OSError):
    """A file ptqdebug must write cannot be: a folder in its place, no permission, a read-only or
    full disk. An :class:`OptionError` (one line, exit status 2) that is still an ``OSError``, so
    that a caller for whom a failed write is harmless (the results cache) goes on as before."""


#: the reasons a write fails that the user can fix (anything else is a bug and keeps its traceback)
_USER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR})


def _unwritable(target: Path, exc: OSError) -> OSError:
    """``exc`` as one line naming ``target``, where the user can fix it; ``exc`` itself otherwise."""
    if exc.errno not in _USER_ERRNOS:
        return exc
    fix = "free some space on that disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix its permissions"
    return UnwritableError(f"cannot write {str(target)!r} ({exc.strerror}); expected a writable folder with free space: "
                           f"{fix} or choose another folder")


def check_targets(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a folder where one of ``paths`` (files about to be written) goes: called before the
    first of several files, it leaves none of them written (:func:`write_atomic` alone refuses the
    folder only when its own file's turn comes)."""
    for path in paths:
        if Path(path).is_dir():
            raise UnwritableError(f"{str(path)!r} is a folder but ptqdebug writes a file there; move it away or choose "
                                  "another folder")


def write_atomic(path: str | os.PathLike[str], write: Callable[[Any], None], binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place.

    A folder where the file goes, or a folder that cannot take the file (permissions, a full or
    read-only disk), is an :class:`UnwritableError` naming the file; nothing is left behind.
    """
    target = Path(path)
    check_targets([target])
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    try:
        os.chmod(tmp, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                write(f)  # (a full disk fails here, or where the file is flushed)
            os.replace(tmp, target)
        except OSError as exc:
            raise _unwritable(target, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


def dump_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Valid JSON (``allow_nan=False``: inf/NaN written as the strings "inf", "-inf", "nan")."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    return write_atomic(path, lambda f: f.write(text + "\n"))


_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+=@,]")


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_filename(name: str, limit: int = 120) -> str:
    """A file-name fragment from an untrusted node name.

    Every character outside ``[A-Za-z0-9._-+=@,]`` becomes ``_`` (so ``/conv1/Conv`` gives
    ``_conv1_Conv``, as the original tool's ``/`` → ``_`` did), no ``..`` survives and no name
    starts with a dot, and a name longer than ``limit`` keeps its end plus a short hash of the
    whole name, so distinct names stay distinct.
    """
    cleaned = _UNSAFE.sub("_", name).replace("..", "__")
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    cleaned = cleaned or "_"
    if len(cleaned) > limit:
        cleaned = f"{cleaned[-(limit - 9):]}-{_digest(name)}"
    return cleaned


def unique_filenames(names: Iterable[str], limit: int = 120) -> dict[str, str]:
    """:func:`safe_filename` for each of ``names``, made distinct: names whose fragments would
    collide (``a/b`` and ``a:b`` both give ``a_b``; ``Conv`` and ``conv`` on a case-insensitive
    disk) get a short hash of the full name appended. The others keep the plain fragment, so the
    common case keeps the original tool's file names."""
    names = list(dict.fromkeys(names))
    plain = {n: safe_filename(n, limit) for n in names}
    seen: dict[str, int] = {}
    for frag in plain.values():
        seen[frag.lower()] = seen.get(frag.lower(), 0) + 1
    out = {}
    for n, frag in plain.items():
        if seen[frag.lower()] > 1:
            frag = f"{safe_filename(n, limit - 9)}-{_digest(n)}"
        out[n] = frag
    return out
