"""The units of one sweep as a grid, handed out from both ends: this process takes from the left,
the helpers (through :class:`~ptqdebug.parallel.pool.WorkerPool`) from the right."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["Sweep"]


class Sweep:
    """The units of one sweep, as a grid: a row per sample group (published as this process
    computes its float reference), a column per configuration, costliest first.

    This process takes the leftmost unit of the published rows, the helpers the rightmost: each
    side works column by column across the rows, so the two meet at one column for every row and
    a segment's switchable sessions are built on one side only.
    """

    def __init__(self, sid: int, groups: int, order: Sequence[int], needs: Sequence[frozenset[str]]) -> None:
        self.sid = sid
        self.order = list(order)
        self.needs = needs  # per configuration: the reference values a run of it reads
        self.groups = groups
        self.cond = threading.Condition()
        self.lo: list[int] = []  # per published row: next column from the left
        self.hi: list[int] = []  # and from the right (exclusive)
        self.payload: dict[int, tuple[Any, ...]] = {}  # the rows with units left
        self.stopped = False
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()

    @property
    def published(self) -> int:
        return len(self.lo)

    def open_rows(self) -> int:
        with self.cond:
            return len(self.payload)

    def publish(self, payload: tuple[Any, ...]) -> None:
        with self.cond:
            self.payload[len(self.lo)] = payload
            self.lo.append(0)
            self.hi.append(len(self.order))
            self.cond.notify_all()

    def done(self, g: int) -> bool:
        return self.lo[g] >= self.hi[g]

    def _taken(self, g: int) -> None:
        if self.lo[g] >= self.hi[g]:
            self.payload.pop(g, None)

    def take_front(self) -> tuple[int, int] | None:
        with self.cond:
            if not self.payload:
                return None
            g = min(self.payload, key=lambda r: (self.lo[r], r))
            c = self.order[self.lo[g]]
            self.lo[g] += 1
            self._taken(g)
            return g, c

    def take_back(self) -> tuple[int, int, tuple[Any, ...]] | None:
        """The next unit for a helper, waiting for a row to be published; None when every unit is
        handed out or the sweep stopped."""
        with self.cond:
            while not self.stopped:
                if self.payload:
                    g = min(self.payload, key=lambda r: (-self.hi[r], r))
                    payload = self.payload[g]
                    self.hi[g] -= 1
                    self._taken(g)
                    return g, self.order[self.hi[g]], payload
                if len(self.lo) == self.groups:
                    return None
                self.cond.wait()
            return None

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
