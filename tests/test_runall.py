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
    # (all but the last, which would switch off the last calibration node still on: the float model)
    assert [*run.partial.nodes, *run.partial.left_out] == ranked and len(run.partial.left_out) == 1
    # a negligible loss recommends nothing, so no local error is computed
    assert run.verdict.cause == "none" and not run.verdict.recommendations
    assert run.verdict.summary.startswith("Quantization brings the output cosine similarity to ")
    assert f"the loss is negligible; nothing needs higher precision. Partial quantization's table still lists {len(ranked)} sensitive nodes" in run.verdict.summary
    assert run.local_error is None and json.loads((tmp_path / "o" / "results.json").read_text())["local_error"] is None


def test_runall_with_interested_nodes_and_groups_shows_their_calibration_nodes(cnn_dir: Path, tmp_path: Path) -> None:
    """interested_nodes may name ordinary nodes and groups (as in get-sensitivity-of-nodes): the
    distributions and box plots are those of their calibration nodes (it crashed on the names)."""
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    model = dbg.load_model(path)
    a, b = model.quantizers[0].name, model.quantizers[-1].name
    run = dbg.runall(path, cnn_dir / "calibration_data", tmp_path / "o", interested_nodes=["Conv_1", [a, b]])
    for kind in ("weight", "activation"):  # (the node sweep is partial quantization's own, of every node)
        assert {e.name for e in run.sensitivities[kind].entries} == {"Conv_1", f"{a}+{b}"}, kind
    want = list(dict.fromkeys([*model.expand("Conv_1"), a, b]))
    assert sorted(d.name for d in run.distributions) == sorted(want)
    assert sorted(x.name for x in run.channelwise) == sorted(want)
    # with node_type="node", a group at or below pick_threshold stands for its members in partial
    # quantization (its name "a+b" is no node: it crashed)
    run = dbg.runall(path, cnn_dir / "calibration_data", tmp_path / "n", node_type="node", pick_threshold=1.0,
                     interested_nodes=["Conv_1", [a, b]], report=False)
    picked = [e.name for e in run.sensitivities["node"].entries]
    want = [n for name in picked for n in ([a, b] if name == f"{a}+{b}" else [name])]
    assert [*run.partial.nodes, *run.partial.left_out] == want


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


def test_a_figure_the_disk_cannot_take_is_one_line_from_a_worker_too(tmp_path: Path) -> None:
    """A folder that cannot take a figure (a file where it goes; a read-only folder; a full disk)
    is the user's to fix: the worker's OptionError reaches the caller as one (one line, exit
    status 2), not as "drawing figures failed" with a traceback."""
    import pytest

    from ptqdebug.errors import OptionError
    from tests.plots.helpers import make_partial

    (tmp_path / "taken").write_text("mine")
    for workers in (0, 1):
        with pytest.raises(OptionError, match=r"'.*taken' is a file; expected a folder"), Renderer(workers=workers) as r:
            r.submit("partial_quantization", make_partial(), tmp_path / "taken" / "a.png")
            r.close()
    assert (tmp_path / "taken").read_text() == "mine"


def test_renderers_per_machine() -> None:
    """One per core up to four, then half the cores, at most eight (benchmarks/README.md, GPU third run)."""
    from ptqdebug.plots.render import default_workers

    assert [default_workers(c) for c in (1, 2, 4, 6, 8, 12, 16, 64)] == [1, 2, 4, 4, 4, 6, 8, 8]


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


def _boxes_row_by_row(rows, max_fliers: int = 50):  # noqa: ANN001, ANN202 - the original per-row loops
    import numpy as np

    q1, _, q3 = np.percentile(rows, [25, 50, 75], axis=1)
    lo_lim, hi_lim = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    whislo = np.array([r[r >= lo].min() for r, lo in zip(rows, lo_lim)])
    whishi = np.array([r[r <= hi].max() for r, hi in zip(rows, hi_lim)])
    fliers = []
    for r, lo, hi in zip(rows, whislo, whishi):
        f = r[(r < lo) | (r > hi)]
        if f.size > max_fliers:
            f = np.sort(f)
            f = np.concatenate([f[: max_fliers // 2], f[-max_fliers // 2:]])
        fliers.append(f)
    return whislo, whishi, fliers


def test_box_statistics_as_the_row_by_row_loops_gave_them() -> None:
    import numpy as np
    import pytest

    from ptqdebug.analyses.distribution import _boxes

    rng = np.random.default_rng(3)
    data = rng.standard_t(2, size=(37, 300)).astype(np.float32)
    data[5] = 1.0  # a constant channel
    data[6, :250] = 0.0  # mostly one value: everything else is a flier
    data[7, ::3] = rng.normal(size=100) * 1e4  # more fliers than kept
    b = _boxes("q", "weight", "w", data, 0)
    whislo, whishi, fliers = _boxes_row_by_row(data.astype(np.float64))
    np.testing.assert_array_equal(b.whislo, whislo)
    np.testing.assert_array_equal(b.whishi, whishi)
    assert len(b.fliers) == len(fliers) and all(np.array_equal(x, y) for x, y in zip(b.fliers, fliers))
    # non-finite values (an attention mask's -inf, a NaN the quantization made) are left out of
    # their channel's statistics, counted; a channel of none has NaN statistics (it crashed runall)
    data[2, 4], data[3, :7], data[4, :] = np.nan, -np.inf, np.inf
    b = _boxes("q", "weight", "w", data, 0)
    assert b.nonfinite == 1 + 7 + 300
    rows = [r[np.isfinite(r)] for r in data.astype(np.float64)]
    for c in (2, 3):
        q1, med, q3 = np.percentile(rows[c], [25, 50, 75])
        assert (b.q1[c], b.median[c], b.q3[c]) == pytest.approx((q1, med, q3))
        assert (b.mean[c], b.minimum[c], b.maximum[c]) == pytest.approx((rows[c].mean(), rows[c].min(), rows[c].max()))
        (lo,), (hi,), (fl,) = _boxes_row_by_row(rows[c][None, :])
        assert (b.whislo[c], b.whishi[c]) == (lo, hi) and np.array_equal(b.fliers[c], fl)
    assert all(np.isnan(v[4]) for v in (b.q1, b.median, b.q3, b.mean, b.whislo, b.whishi, b.minimum, b.maximum))
    assert b.fliers[4].size == 0


def test_runall_shares_only_what_a_separate_run_computes_the_same(cnn_dir: Path, tmp_path: Path) -> None:
    """runall takes the verdict's calibrated score from partial quantization and the box plots'
    activations from the distributions: the numbers are those of separate computations."""
    import numpy as np

    from ptqdebug.analyses.distribution import channel_boxes, distributions
    from ptqdebug.analyses.verdict import verdict
    from ptqdebug.context import open_context

    model, data = cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data"
    run = dbg.runall(model, data, tmp_path / "out", data_num=2)
    assert run.verdict.scores["calibrated"] == run.partial.baseline
    assert verdict(open_context(model, data), None, 2).scores == run.verdict.scores
    names = [d.name for d in run.distributions]
    for got, want in zip(run.distributions, distributions(open_context(model, data), names)):
        assert got.values.keys() == want.values.keys()
        assert all(np.array_equal(got.values[k], want.values[k]) for k in got.values)
    fresh = channel_boxes(open_context(model, data), [b.name for b in run.channelwise])
    assert len(fresh) == len(run.channelwise)
    for got, want in zip(run.channelwise, fresh):
        for field in ("q1", "median", "q3", "mean", "whislo", "whishi", "minimum", "maximum"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert all(np.array_equal(x, y) for x, y in zip(got.fliers, want.fliers))


def test_a_figure_drawn_early_gets_the_name_the_full_list_gives_it(tmp_path: Path) -> None:
    """Box plots of the top weights are drawn before the activations are known; names that clean
    to the same file name get a hash, so a weight figure drawn early may be renamed at the end."""
    from types import SimpleNamespace

    from ptqdebug.api.early_figures import Figures
    from ptqdebug.report.names import boxplot_png

    class Stub:
        def submit(self, kind: str, item: object, path: Path) -> None:
            path.write_bytes(b"png")

    figures, renderer = Figures(), Stub()
    weight, act = SimpleNamespace(name="a/b"), SimpleNamespace(name="a:b")
    figures.draw_early("channel_boxes", [weight], tmp_path, renderer)
    assert [p.name for p in tmp_path.iterdir()] == ["a_b_boxplot.png"]
    items = figures.merge("channel_boxes", ["a/b", "a:b"], [act])
    assert items == [weight, act]
    paths = figures.write("channel_boxes", items, tmp_path, renderer)
    figures.rename()
    assert [p.name for p in paths] == [boxplot_png(n, ["a/b", "a:b"]) for n in ("a/b", "a:b")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert "a_b_boxplot.png" not in [p.name for p in paths]


def test_results_print_short_in_a_notebook(cnn_dir: Path, tmp_path: Path) -> None:
    """repr of what runall, a sweep, calibrate and a context return fits on a line or two (the full
    objects run to hundreds of kilobytes)."""
    import numpy as np

    ctx = dbg.open_context(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data")
    run = dbg.runall(ctx, cnn_dir / "calibration_data", tmp_path / "out", report=False)
    assert repr(run).startswith(f"RunResult(save_dir={str(tmp_path / 'out')!r}, cause=") and len(repr(run)) < 600
    sweep = dbg.sensitivity_of_nodes(ctx, node_type="activation")
    assert repr(sweep).startswith("SensitivityResult(node_type='activation'") and f"{len(sweep.entries)} entries" in repr(sweep)
    assert repr(ctx).startswith("Context(model=") and "6 samples" in repr(ctx)
    samples = [{"input": np.load(f)} for f in sorted((cnn_dir / "calibration_data" / "input").glob("*.npy"))]
    cal = dbg.calibrate(cnn_dir / "float.onnx", samples, tmp_path / "cal", method="max")
    assert "ranges" not in repr(cal) and len(repr(cal)) < 1500


def test_runall_on_a_model_whose_quantization_makes_inf_and_nan(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer on a text model's attention mask (``float32.min``): -inf and NaN
    in the activations. runall used to crash in the box plots ("zero-size array") and then in
    the histograms ("Too many bins"); it writes every file and the report."""
    import json

    import onnx

    from tests.calibration.models import masked_attention, masked_samples
    from tests.support.builders import quantize_qdq

    onnx.save(masked_attention(), tmp_path / "float.onnx")
    samples = masked_samples()
    qdq = quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", samples, per_channel=False)
    run = dbg.runall(qdq, samples, tmp_path / "debug", data_num=None, cache=False, float_model=tmp_path / "float.onnx")
    results = json.loads((tmp_path / "debug" / "results.json").read_text())
    assert all((tmp_path / "debug" / f).is_file() for f in results["files"]) and "index.html" in results["files"]
    assert run.verdict.scores["calibrated"] < 0.5  # the premise: the mask's quantization breaks the model
    drawn = {b["name"] for b in results["channelwise"]} & {d["name"] for d in results["distributions"]}
    assert {"big_QuantizeLinear", "masked_QuantizeLinear"} <= drawn  # values at float32's limit, drawn
