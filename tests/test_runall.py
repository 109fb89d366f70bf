"""runall as a library call: results, figures drawn by workers, and a script without a main guard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ptqdebug as dbg
from ptqdebug.analyses.verdict import Verdict
from ptqdebug.plots.render import Renderer


def test_runall_returns_and_writes_everything(cnn_dir: Path, tmp_path: Path) -> None:
    run = dbg.runall(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data", tmp_path / "out", data_num=2)
    assert set(run.sensitivities) == {"weight", "activation", "node"}
    assert all(p.is_file() for p in run.files)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert Verdict.from_dict(results["verdict"]) == run.verdict
    assert results["data"]["samples_used"] == 2
    # the top 5 of each kind get distributions and box plots
    top = [e.name for kind in ("weight", "activation") for e in run.sensitivities[kind].top(5)]
    assert [d.name for d in run.distributions if d.kind != "node"] == top
    assert [b.name for b in run.channelwise] == top


def test_runall_node_type_node_expands_top_nodes(cnn_dir: Path, tmp_path: Path) -> None:
    run = dbg.runall(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data", tmp_path / "o",
                     node_type="node", pick_threshold=1.0)
    assert list(run.sensitivities) == ["node"]
    assert (tmp_path / "o" / "node_sensitivity" / "sensitivity_of_node.log").is_file()
    # pick_threshold 1.0: every node with any loss is analysed, in ranked order
    ranked = [e.name for e in run.sensitivities["node"].entries if e.scores["cosine-similarity"] <= 1.0]
    assert list(run.partial.nodes) == ranked


def test_script_without_main_guard_runs_once(cnn_dir: Path, tmp_path: Path) -> None:
    """Figure workers must not re-import the caller's script (multiprocessing's spawn would)."""
    script = tmp_path / "user_script.py"
    script.write_text(
        "import ptqdebug as dbg\n"
        "print('RUNNING USER SCRIPT', flush=True)\n"
        f"dbg.runall({str(cnn_dir / 'pc_int8_pairs.onnx')!r}, {str(cnn_dir / 'calibration_data')!r}, {str(tmp_path / 'out')!r})\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("RUNNING USER SCRIPT") == 1


def test_renderer_workers_and_inline_draw_the_same_files(tmp_path: Path) -> None:
    from ptqdebug.analyses.partial import PartialQuantizationResult

    result = PartialQuantizationResult("cosine-similarity", 0.999, ("a", "b"), 0.99, (0.995, 0.996), (0.993, 0.999), 1)
    for workers in (0, 2):
        with Renderer(workers=workers) as r:
            for i in range(3):
                r.submit("partial_quantization", result, tmp_path / f"w{workers}_{i}.png")
            paths = r.close()
        assert sorted(p.name for p in paths) == [f"w{workers}_{i}.png" for i in range(3)]
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


class _DiesWhenUnpickled:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        import os

        return (os._exit, (3,))


def test_a_renderer_that_dies_is_reported_not_waited_for(tmp_path: Path) -> None:
    """Renderers share the worker's pipes: one dying mid-run must end in an error, never a hang."""
    import pytest

    from tests.plots.helpers import make_partial

    for workers in (1, 2):
        with pytest.raises(RuntimeError, match="stopped unexpectedly"), Renderer(workers=workers) as r:
            r.submit("partial_quantization", make_partial(), tmp_path / "a.png")
            r.submit("partial_quantization", _DiesWhenUnpickled(), tmp_path / "b.png")
            r.submit("partial_quantization", make_partial(), tmp_path / "c.png")
            r.close()
