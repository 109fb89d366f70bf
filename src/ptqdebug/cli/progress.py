"""Progress bars on stderr for long loops (drawn on a terminal only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["ProgressBars", "progress_bar"]


class ProgressBars:
    """One tqdm bar per step: ``bars(title)`` closes the previous bar and returns the new step's
    ``progress(done, total)`` callback (the factory form the API's ``progress=`` accepts)."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None

    def __call__(self, title: str) -> Callable[[int, int], None]:
        self.close()
        holder: dict[str, tqdm[Any]] = {}

        def update(done: int, total: int) -> None:
            from tqdm import tqdm

            bar = holder.get("bar")
            if bar is None:
                bar = tqdm(total=total, desc=title, unit="run", leave=False, disable=None, dynamic_ncols=True)
                holder["bar"] = bar
                self._bar = bar
            bar.update(done - bar.n)

        return update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def progress_bar(desc: str) -> Iterator[Callable[[int, int], None]]:
    """A single ``progress(done, total)`` callback drawing a bar titled ``desc``."""
    bars = ProgressBars()
    try:
        yield bars(desc)
    finally:
        bars.close()
