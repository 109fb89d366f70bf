"""Fixtures of the figure and report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plots.helpers import make_partial


@pytest.fixture(scope="session")
def png_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real PNG written by ``save_figure``, made once."""
    from ptqdebug.plots import partial_quantization_figure, save_figure

    return save_figure(partial_quantization_figure(make_partial()), tmp_path_factory.mktemp("png") / "f.png").read_bytes()


@pytest.fixture
def tiny_png(tmp_path: Path, png_bytes: bytes) -> Callable[[str], str]:
    """Write that PNG at ``tmp_path/rel`` and return ``rel``."""

    def write(rel: str) -> str:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes)
        return rel

    return write
