"""runall's figures in the order one call on ``nodes_list`` gives, though some are drawn early.

The box plots and histograms of the top weight calibration nodes need no run of the model, so
``runall`` sends them to the renderers right after the weight sweep, while the next sweeps run.
A file name depends on every name in its folder (:mod:`ptqdebug.report.names`), so a figure drawn
early under a name that the full list changes is renamed once every figure is on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plots.render import Renderer
from ..report.files import ensure_dir, move_file
from ..report.names import boxplot_png, distribution_png

__all__ = ["Figures", "figure_name"]


class Figures:
    """The distributions and box plots of ``nodes_list``: the top weights' drawn early
    (:meth:`draw_early`), the rest after all sweeps (:meth:`rest`, fetched in one run), every
    result back in the order of one call on ``nodes_list`` (:meth:`merge`), early figures renamed
    where the full list changes their name (:meth:`write`, then :meth:`rename`)."""

    def __init__(self) -> None:
        self.early: dict[str, dict[str, Any]] = {"distribution": {}, "channel_boxes": {}}  # node name -> result
        self.drawn: dict[int, Path] = {}  # id(result) -> where it was drawn
        self.moves: list[tuple[Path, Path]] = []

    def draw_early(self, kind: str, items: list[Any], folder: Path, renderer: Renderer) -> None:
        done = self.early[kind]
        done.update((item.name, item) for item in items)
        among = list(done.values())
        ensure_dir(folder)
        for item in items:
            path = folder / figure_name(kind, item, among)
            self.drawn[id(item)] = path
            renderer.submit(kind, item, path)

    def rest(self, kind: str, nodes_list: list[str]) -> list[str]:
        return [n for n in nodes_list if n not in self.early[kind]]

    def merge(self, kind: str, nodes_list: list[str], later: list[Any]) -> list[Any]:
        """Early and later results in ``nodes_list`` order, as one call on ``nodes_list`` returns them."""
        pending, out = list(later), []
        for n in nodes_list:
            if n in self.early[kind]:
                out.append(self.early[kind][n])
            while pending and pending[0].name == n:
                out.append(pending.pop(0))
        return out + pending

    def write(self, kind: str, items: list[Any], folder: Path, renderer: Renderer) -> list[Path]:
        """Draw the items not drawn yet; note the early ones whose final name differs."""
        ensure_dir(folder)
        paths = [folder / figure_name(kind, item, items) for item in items]
        for item, path in zip(items, paths):
            drawn = self.drawn.get(id(item))
            if drawn is None:
                renderer.submit(kind, item, path)
            elif drawn != path:
                self.moves.append((drawn, path))
        return paths

    def rename(self) -> None:
        for old, new in self.moves:
            move_file(old, new)


def figure_name(kind: str, item: Any, among: list[Any]) -> str:
    return distribution_png(item, among) if kind == "distribution" else boxplot_png(item.name, [x.name for x in among])
