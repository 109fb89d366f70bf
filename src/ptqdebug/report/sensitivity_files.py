"""Files of a sensitivity sweep: ``sensitivity_of_<node_type>.log`` and ``.json``."""

from __future__ import annotations

import os
from pathlib import Path

from ..analyses.sensitivity import SensitivityResult
from .files import check_targets, dump_json, ensure_dir, write_atomic
from .tables import log_table, sensitivity_rows

__all__ = ["write_sensitivity"]


def write_sensitivity(result: SensitivityResult, save_dir: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Write the reference ``.log`` table and the returned mapping as JSON (same order).

    In the JSON file, non-finite numbers are the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
    """
    folder = ensure_dir(save_dir)
    stem = f"sensitivity_of_{name or result.node_type}"
    check_targets([folder / f"{stem}.log", folder / f"{stem}.json"])  # both or neither
    log = write_atomic(folder / f"{stem}.log", lambda f: f.write(log_table(name or result.node_type, sensitivity_rows(result, rounded=False))))
    js = dump_json(folder / f"{stem}.json", result.as_mapping())
    return [log, js]
