"""The pool of helper processes, this process's side: starting them, the threads that write
their messages and read their replies, handing them units of the running sweep, stopping them."""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import IO, Any

from ..model import CalibratedModel
from ..pipes import read_message
from .stamps import model_key
from .sweep import Sweep

__all__ = ["WorkerPool", "attach_pool"]


class _Pickled:
    """A message pickled once, however many helpers it goes to."""

    def __init__(self, message: object) -> None:
        self._message: object = message
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                self._data = pickle.dumps(self._message, protocol=pickle.HIGHEST_PROTOCOL)
                self._message = None
            return self._data


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    """One message as :func:`ptqdebug.pipes.write_message` frames it, already pickled."""
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


class _Helper:
    """One helper process, with a thread writing its messages and one reading its replies."""

    def __init__(self, pool: WorkerPool, env: Mapping[str, str]) -> None:
        self.pool = pool
        self.proc = subprocess.Popen([sys.executable, "-m", "ptqdebug.parallel"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=dict(env),
                                     start_new_session=True)  # Ctrl-C reaches ptqdebug, which stops the helpers
        self.outbox: queue.Queue[object] = queue.Queue()
        self.units = 0  # units this helper scored
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def send(self, message: object) -> None:
        self.outbox.put(message)

    def _write(self) -> None:
        stream = self.proc.stdin
        assert stream is not None
        try:
            while True:
                item = self.outbox.get()
                if item is None:
                    break
                data = item.data() if isinstance(item, _Pickled) else pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                _write_frame(stream, data)
        except (OSError, ValueError):
            pass  # the helper is gone: its reader reports it
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        held: dict[tuple[int, int], set[str]] = {}  # (sweep, row) → reference values this helper holds
        try:
            while True:
                message = read_message(stream)
                kind, sid = message[0], message[1]
                sweep = self.pool.sweep
                live = sweep is not None and sweep.sid == sid
                if kind == "result":  # a result asks for the next unit
                    self.units += 1
                    if live:
                        sweep.inbox.put(message[2:])  # type: ignore[union-attr]
                    wanted = 1
                elif kind == "want":
                    wanted = message[2]
                elif kind == "need-model":
                    self.send(self.pool.pickled_model())
                    continue
                else:
                    user = message[3] if len(message) > 3 else ""
                    self.pool.fail(message[2] if user else f"a sweep worker failed: {message[2]}", user)
                    continue
                for _ in range(wanted):
                    unit = sweep.take_back() if live else None  # type: ignore[union-attr]
                    if unit is None:
                        held.clear()
                        self.send(("end", sid))
                        continue
                    g, c, (values, edges) = unit
                    gone = [r for s_, r in held if s_ == sid and r != g and sweep.done(r)]  # type: ignore[union-attr]
                    if gone:  # rows with no units left: the helper frees their references
                        for r in gone:
                            del held[(sid, r)]
                        self.send(("drop", sid, gone))
                    have = held.setdefault((sid, g), set())
                    missing = sweep.needs[c] - have  # type: ignore[union-attr]
                    if missing or not have:  # only what this run reads: late runs read little
                        self.send(("ref", sid, g, {k: values[k] for k in missing}, edges))
                        have.update(missing)
                    self.send(("unit", sid, g, c))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
            if not self.pool.closed:
                self.pool.fail(f"a sweep worker stopped: {exc or 'no reply'}")


class WorkerPool:
    """Helper processes scoring units for one context (see :mod:`ptqdebug.parallel`).

    Started by :func:`ptqdebug.open_context` when it is given ``workers > 1``, before the model
    is read, and closed with the context (or at exit). A helper that fails makes the running sweep
    raise; the pool is then closed and the next sweep starts a new one.
    """

    def __init__(self, size: int) -> None:
        import ptqdebug

        env = dict(os.environ)  # helpers import this very ptqdebug
        root = os.path.dirname(os.path.dirname(os.path.abspath(ptqdebug.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.closed = False
        self.failure: str | None = None
        self.model: CalibratedModel | None = None
        self.sweep: Sweep | None = None
        self._ids = itertools.count(1)
        self._env = env
        self.helpers = [_Helper(self, env) for _ in range(size)]

    @property
    def size(self) -> int:
        return len(self.helpers)

    @property
    def units(self) -> int:
        """Units scored by the helpers so far."""
        return sum(h.units for h in self.helpers)

    def load(self, files: Sequence[str | None]) -> None:
        """Have every helper read the model itself from ``files`` (model, float model or None),
        while this process reads it too; :meth:`loaded` then checks they read the same."""
        for h in self.helpers:
            h.send(("load", 0, tuple(files)))

    def loaded(self, model: CalibratedModel, stamps: object) -> None:
        """The model as this process read it, and the files' :func:`~ptqdebug.parallel.stamps.file_stamps`
        from before and after; a helper whose own reading differs (a file changed) asks for this
        one, pickled."""
        self.model = model
        for h in self.helpers:
            h.send(("check", 0, stamps, model_key(model)))

    def send_model(self, model: CalibratedModel) -> None:
        """Give every helper the model, pickled once, in the background."""
        self.model = model
        message = self.pickled_model()
        for h in self.helpers:
            h.send(message)

    def grow(self, size: int) -> None:
        """Start helpers up to ``size`` in all, between sweeps; they get the model pickled."""
        added = [_Helper(self, self._env) for _ in range(size - self.size)]
        self.helpers += added
        message = self.pickled_model()
        for h in added:
            h.send(message)

    def pickled_model(self) -> _Pickled:
        """The model message, pickled when first written (and freed once written)."""
        return _Pickled(("model", 0, self.model))

    def fail(self, text: str, user: str = "") -> None:
        """Stop the sweep with ``text``; ``user``: the :class:`~ptqdebug.errors.PtqDebugError`
        subclass a helper raised (a user's mistake, raised again here as itself), else empty."""
        if self.failure is None:
            self.failure = text
        sweep = self.sweep
        if sweep is not None:
            sweep.inbox.put(("error", text, user))
            sweep.stop()

    def begin(self, groups: int, order: Sequence[int], needs: Sequence[frozenset[str]],
              header: tuple[Any, ...]) -> Sweep:
        if self.failure is not None:
            raise RuntimeError(self.failure)
        sweep = Sweep(next(self._ids), groups, order, needs)
        self.sweep = sweep
        for h in self.helpers:
            h.send(("sweep", sweep.sid, *header))
        return sweep

    def end(self, sweep: Sweep) -> None:
        sweep.stop()
        if self.sweep is sweep:
            self.sweep = None

    def close(self, kill: bool = False) -> None:
        """Stop the helpers: end of input (they exit), or at once with ``kill``."""
        if self.closed:
            return
        self.closed = True
        if self.sweep is not None:
            self.sweep.stop()
        for h in self.helpers:
            h.send(None)
        for h in self.helpers:
            if not kill:
                try:
                    h.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            if h.proc.poll() is None:
                h.proc.kill()
            h.proc.wait()


def attach_pool(ctx: Any, pool: WorkerPool) -> None:
    """Make ``pool`` the context's, closed when the context is collected or at exit."""
    ctx.pool = pool
    weakref.finalize(ctx, pool.close)
