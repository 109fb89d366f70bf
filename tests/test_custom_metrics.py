"""Your own metric: a function (Python) or ``file.py:function`` (anywhere, the command line too).

Scores equal a brute force that applies the same function to the outputs of one model and session
per candidate; a file's metric works in helper processes and its cached results follow the file's
code; every mistake in the user's metric is one clear line.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.cli import main
from ptqdebug.errors import OptionError
from ptqdebug.model import load_model
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, cosine, oracle_from_file

MODEL = "pc_int8_pairs_keep.onnx"


def top1(reference: np.ndarray, actual: np.ndarray) -> float:
    """1 when the quantized model picks the float model's class."""
    return float(np.argmax(reference) == np.argmax(actual))


def top_logit_error(reference: np.ndarray, actual: np.ndarray) -> float:
    """How far the float model's winning logit moved (lower is better)."""
    i = int(np.argmax(reference))
    return float(abs(reference.flat[i] - actual.flat[i]))


top_logit_error.higher_is_better = False  # type: ignore[attr-defined]

METRIC_FILE = '''
import numpy as np


def top_logit_error(reference, actual):
    i = int(np.argmax(reference))
    return float(abs(reference.flat[i] - actual.flat[i]))


top_logit_error.higher_is_better = False


def broken(reference, actual):
    return reference.no_such_attribute


def wordy(reference, actual):
    return "fine"


def arrays(reference, actual):
    return reference - actual


def mse(reference, actual):
    return 0.0
'''


@pytest.fixture()
def metric_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_metrics.py"
    path.write_text(textwrap.dedent(METRIC_FILE))
    return path


@pytest.mark.parametrize("node_type", ["activation", "node"])
def test_function_metrics_match_brute_force(cnn_dir: Path, samples, node_type: str) -> None:
    path = cnn_dir / MODEL
    got = dbg.get_sensitivity_of_nodes(path, [top_logit_error, top1], cnn_dir / "calibration_data",
                                      node_type=node_type, data_num=4)
    cm = load_model(path)
    cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
    run = lambda qs, s: oracle_from_file(path, qs, s)  # noqa: E731
    for fn in (top_logit_error, top1):
        want = brute_force_sensitivity(run, cands, samples[:4], list(cm.outputs), fn)
        for n, v in want.items():
            assert got[n][fn.__name__] == pytest.approx(v, rel=1e-5, abs=1e-6), (n, fn.__name__)
    want = brute_force_sensitivity(run, cands, samples[:4], list(cm.outputs), top_logit_error)
    assert_same_ranking([(n, v["top_logit_error"]) for n, v in got.items()], want, higher_is_better=False)
    assert max(want.values()) > 0  # the metric sees the quantization error


def test_a_function_sees_each_sample_in_its_own_shape(cnn_dir: Path) -> None:
    seen: list[tuple[tuple[int, ...], np.dtype]] = []

    def shape_probe(reference: np.ndarray, actual: np.ndarray) -> float:
        seen.append((reference.shape, actual.dtype))
        return 1.0

    dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, shape_probe, cnn_dir / "calibration_data", node_type="weight", data_num=2)
    out = load_model(cnn_dir / MODEL).outputs
    assert seen and {s for s, _ in seen} == {(1, 10)} and len(out) == 1
    assert {d for _, d in seen} == {np.dtype(np.float64)}


def test_file_metric_from_the_command_line(cnn_dir: Path, metric_file: Path, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    spec = f"{metric_file}:top_logit_error"
    rc = main(["get-sensitivity-of-nodes", str(cnn_dir / MODEL), str(cnn_dir / "calibration_data"), "-n", "activation",
               "-m", f"['{spec}','cosine-similarity']", "-d", "3", "-s", str(tmp_path / "out")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "top_logit_error" in printed
    saved = json.loads((tmp_path / "out" / "sensitivity_of_activation.json").read_text())
    direct = dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, top_logit_error, cnn_dir / "calibration_data",
                                         node_type="activation", data_num=3)
    assert {n: v["top_logit_error"] for n, v in saved.items()} == pytest.approx(
        {n: v["top_logit_error"] for n, v in direct.items()}, rel=1e-12)
    assert list(saved) == list(direct)  # ranked by the file's metric, lower is better


HELPER_FILE = """
import os
import time

import numpy as np

PARENT = int(os.environ["PTQDEBUG_TEST_PARENT"])


def _record(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")


def top_logit_error(reference, actual):
    _record(os.environ["PTQDEBUG_TEST_CALLS"])
    if os.getpid() == PARENT:
        time.sleep(0.05)  # the parent is slow: the helpers take most of the work
    i = int(np.argmax(reference))
    return float(abs(reference.flat[i] - actual.flat[i]))


top_logit_error.higher_is_better = False


def fails_in_helpers(reference, actual):
    if os.getpid() == PARENT:
        time.sleep(0.05)
        return 1.0
    raise ValueError("only helpers see this")
"""


def test_file_metric_runs_in_helper_processes(cnn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = tmp_path / "helper_metrics.py"
    path.write_text(HELPER_FILE)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("PTQDEBUG_TEST_PARENT", str(os.getpid()))
    monkeypatch.setenv("PTQDEBUG_TEST_CALLS", str(calls))
    data = cnn_dir / "calibration_data"
    here = dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, f"{path}:top_logit_error", data, node_type="node", data_num=2,
                                        cache=False)
    calls.unlink()
    helpers = dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, f"{path}:top_logit_error", data, node_type="node", data_num=2,
                                           cache=False, workers=2)
    assert helpers == here
    pids = set(calls.read_text().split())
    assert pids - {str(os.getpid())}, "the premise: a helper process scored some candidates"
    with pytest.raises(OptionError, match=r"metric fails_in_helpers raised ValueError: only helpers see this at "
                                          r"helper_metrics\.py:\d+; fix the metric function"):
        dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, f"{path}:fails_in_helpers", data, node_type="node", data_num=2,
                                     cache=False, workers=2)


def test_a_helper_refuses_a_metric_file_edited_since_it_was_loaded(metric_file: Path) -> None:
    from ptqdebug.metrics import get_metrics, portable_refs

    (ref,) = portable_refs(get_metrics(f"{metric_file}:top_logit_error"))
    assert ref.startswith(f"{metric_file.resolve()}:top_logit_error#") and get_metrics(ref)[0].name == "top_logit_error"
    metric_file.write_text(metric_file.read_text() + "\n# edited\n")
    with pytest.raises(OptionError, match="changed while ptqdebug was using it; run again"):
        get_metrics(ref)


def test_metrics_sharing_a_name_are_refused_and_any_callable_works() -> None:
    from dataclasses import dataclass

    from ptqdebug.metrics import get_metrics

    @dataclass
    class TopK:  # a callable object, not hashable
        k: int

        def __call__(self, reference: np.ndarray, actual: np.ndarray) -> float:
            top = lambda x: set(np.argsort(x.ravel())[-self.k:].tolist())  # noqa: E731
            return len(top(reference) & top(actual)) / self.k

    (m,) = get_metrics([TopK(3)])
    assert m.name == "TopK" and m.func(np.arange(10.0), np.arange(10.0)) == 1.0
    with pytest.raises(OptionError, match="two different metrics are named '<lambda>'"):
        get_metrics([lambda a, b: 1.0, lambda a, b: 2.0])


def test_function_metric_with_workers_says_to_use_a_file(cnn_dir: Path) -> None:
    with pytest.raises(OptionError, match=r"file\.py:function.*workers=1"):
        dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, top1, cnn_dir / "calibration_data", node_type="node", workers=2,
                                     cache=False)


def test_cache_follows_the_metric_file_and_skips_functions(cnn_dir: Path, metric_file: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTQDEBUG_CACHE_DIR", str(tmp_path / "cache"))
    model, data = cnn_dir / MODEL, cnn_dir / "calibration_data"
    spec = f"{metric_file}:top_logit_error"

    def sweep(metric: object) -> tuple[dbg.Context, dict]:
        ctx = dbg.open_context(model, data)
        return ctx, dbg.sensitivity_of_nodes(ctx, node_type="activation", metrics=metric).as_mapping()

    _, first = sweep(spec)
    ctx, again = sweep(spec)
    assert ctx.cache.hits == 1 and ctx.engine.runs == 0 and again == first
    # the same function name, other code: a miss, and the new code's numbers
    metric_file.write_text(metric_file.read_text().replace("return float(abs(", "return 2 * float(abs("))
    ctx, doubled = sweep(spec)
    assert ctx.cache.hits == 0 and ctx.engine.runs > 0
    assert {n: v["top_logit_error"] for n, v in doubled.items()} == pytest.approx(
        {n: 2 * v["top_logit_error"] for n, v in first.items()}, rel=1e-12)
    # a function of this process has no file to key it by: never cached
    for _ in range(2):
        ctx, _ = sweep(top1)
        assert ctx.cache.hits == 0 and ctx.engine.runs > 0


@pytest.mark.parametrize(("metric", "message"), [
    ("{file}:broken", r"metric broken raised AttributeError: .*no_such_attribute.* at my_metrics\.py:\d+; fix the metric function"),
    ("{file}:wordy", r"metric wordy returned 'fine'; expected a number"),
    ("{file}:mse", r"named 'mse' like a built-in metric; rename it"),
    ("{file}:arrays", r"metric arrays returned an array of shape \[1, 10\]; expected a number"),
    ("{file}", r"unknown metric '.*my_metrics\.py'; name the function too: '.*my_metrics\.py:FUNCTION'"),
    ("{file}:missing", r"has no function 'missing'; it defines top_logit_error, broken, wordy, arrays, mse"),
    ("{dir}/nowhere.py:top1", r"metric file .*nowhere\.py' does not exist"),
    ("cosine", r"unknown metric 'cosine'; did you mean 'cosine-similarity'\? expected one of cosine-similarity, .*file\.py:function"),
])
def test_metric_mistakes_are_one_line_and_exit_2(cnn_dir: Path, metric_file: Path, capsys: pytest.CaptureFixture[str],
                                                 metric: str, message: str) -> None:
    spec = metric.format(file=metric_file, dir=metric_file.parent)
    rc = main(["get-sensitivity-of-nodes", str(cnn_dir / MODEL), str(cnn_dir / "calibration_data"), "-n", "weight",
               "-m", spec])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("ptqdebug: error: ") and re.search(message, err), err


def test_curves_with_a_function_equal_the_built_in_metric(cnn_dir: Path, tmp_path: Path) -> None:
    """A function computing the cosine gives plot_acc_error's built-in curve: the same tensors reach it."""

    def my_cosine(reference: np.ndarray, actual: np.ndarray) -> float:
        a, b = reference.ravel(), actual.ravel()
        return float(a @ b / (max(np.linalg.norm(a), 1e-8) * max(np.linalg.norm(b), 1e-8)))

    data, model = cnn_dir / "calibration_data", cnn_dir / MODEL
    split = ["weight", "activation"]
    builtin = dbg.plot_acc_error(data, model, split, metric="cosine-similarity", save_dir=tmp_path)
    mine = dbg.plot_acc_error(data, model, split, metric=my_cosine, save_dir=tmp_path)
    assert len(mine) == len(builtin) == 1 and len(mine[0].curves) == 3
    for a, b in zip(builtin[0].curves, mine[0].curves):
        assert a.label == b.label
        np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-9)
    assert (tmp_path / "weight_activation_quantized_separately_my_cosine.png").is_file()


def test_runall_with_a_function_metric(cnn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = dbg.runall(cnn_dir / MODEL, cnn_dir / "calibration_data", tmp_path,
                     ns_metrics=["cosine-similarity", top_logit_error], cache=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    weight = saved["sensitivity"]["weight"]
    assert weight["metrics"] == ["cosine-similarity", "top_logit_error"]
    direct = dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, top_logit_error, cnn_dir / "calibration_data", node_type="weight")
    assert {e["name"]: e["scores"]["top_logit_error"] for e in weight["entries"]} == pytest.approx(
        {n: v["top_logit_error"] for n, v in direct.items()}, rel=1e-12)
    page = (tmp_path / "index.html").read_text()
    assert "top_logit_error" in page and 'title="lower is better"' in page  # the function's direction
    assert run.verdict is not None
    # rendered again where the function is unknown: results.json recorded the direction
    import ptqdebug.metrics as metrics
    from ptqdebug.report.html import render_report

    monkeypatch.setattr(metrics, "_USER", {})
    assert metrics.known_metric("top_logit_error") is None
    assert 'title="lower is better"' in render_report(saved, tmp_path)


def test_a_redefined_function_is_scored_again_in_the_same_context(cnn_dir: Path) -> None:
    """A context remembers scores by metric; two functions of one name are two metrics."""
    ctx = dbg.open_context(cnn_dir / MODEL, cnn_dir / "calibration_data", cache=False)

    def score(reference: np.ndarray, actual: np.ndarray) -> float:
        return top_logit_error(reference, actual)

    first = dbg.sensitivity_of_nodes(ctx, node_type="weight", metrics=score).as_mapping()

    def score(reference: np.ndarray, actual: np.ndarray) -> float:  # noqa: F811 - the point of the test
        return 3 * top_logit_error(reference, actual)

    second = dbg.sensitivity_of_nodes(ctx, node_type="weight", metrics=score).as_mapping()
    assert {n: v["score"] for n, v in second.items()} == pytest.approx({n: 3 * v["score"] for n, v in first.items()})
    assert max(v["score"] for v in first.values()) > 0


def test_ties_of_the_first_metric_are_ranked_by_the_next(cnn_dir: Path) -> None:
    """top-1 agreement ties on almost every node of a small CNN: the cosine orders the ties."""
    got = dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, [top1, "cosine-similarity"], cnn_dir / "calibration_data",
                                      node_type="node", data_num=2)
    keys = [(v["top1"], v["cosine-similarity"]) for v in got.values()]
    assert keys == sorted(keys) and len({k[0] for k in keys}) < len(keys)


LABELED_FILE = """
import os
import time
from pathlib import Path

import numpy as np

LABELS = np.load(Path(__file__).with_name("labels.npy"))


def accuracy(reference, actual, sample):
    with open(Path(__file__).with_name("pids.txt"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    if os.getpid() == int(os.environ["PTQDEBUG_TEST_PARENT"]):
        time.sleep(0.02)  # the parent is slow: the helpers take most of the work
    return float(np.argmax(actual) == LABELS[sample])
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_metric_with_the_sample_index_scores_against_labels(cnn_dir: Path, samples, tmp_path: Path, workers: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """accuracy against labels, brute force: each candidate's file with only its pairs on, a session
    per candidate and sample, argmax against the sample's label; in helper processes too."""
    import os

    monkeypatch.setenv("PTQDEBUG_TEST_PARENT", str(os.getpid()))
    path = cnn_dir / MODEL
    cm = load_model(path)
    float_out = [oracle_from_file(path, (), s)["logits"] for s in samples]
    labels = np.array([int(np.argmax(o)) for o in float_out])
    labels[1] = (labels[1] + 1) % 10  # one label the float model gets wrong: accuracy is not agreement
    np.save(tmp_path / "labels.npy", labels)
    script = tmp_path / "labeled.py"
    script.write_text(LABELED_FILE)
    got = dbg.get_sensitivity_of_nodes(path, f"{script}:accuracy", cnn_dir / "calibration_data", node_type="node",
                                      data_num=None, cache=False, workers=workers)
    for c in candidates_for(cm, "node"):
        want = np.mean([float(np.argmax(oracle_from_file(path, c.quantizers, s)["logits"]) == labels[i])
                        for i, s in enumerate(samples)])
        assert got[c.name]["accuracy"] == pytest.approx(want), c.name
    assert max(v["accuracy"] for v in got.values()) < 1.0  # the wrong label costs every candidate
    helpers = set((tmp_path / "pids.txt").read_text().split()) - {str(os.getpid())}
    assert bool(helpers) == (workers > 1)  # with workers, helper processes scored some of it
    # labels are read by the metric, not seen by the results cache: such sweeps are never cached
    ctx = dbg.open_context(path, cnn_dir / "calibration_data")
    dbg.sensitivity_of_nodes(ctx, metrics=f"{script}:accuracy", node_type="activation", data_num=None)
    again = dbg.open_context(path, cnn_dir / "calibration_data")
    dbg.sensitivity_of_nodes(again, metrics=f"{script}:accuracy", node_type="activation", data_num=None)
    assert again.cache.hits == 0 and again.engine.runs > 0


def test_a_three_argument_function_in_every_step(cnn_dir: Path, samples, tmp_path: Path) -> None:
    """Curves, local errors and the deployment check pass each sample's own index: a probe checks
    that the compared tensor is nearest that sample's float output among all samples'."""
    data = cnn_dir / "calibration_data"
    model = load_model(cnn_dir / MODEL)
    floats = [oracle_from_file(cnn_dir / MODEL, (), s)["logits"] for s in samples]
    wrong: list[tuple[str, int]] = []
    seen: dict[str, set[int]] = {}

    def probe_for(step: str):  # noqa: ANN202
        def probe(reference: np.ndarray, actual: np.ndarray, sample: int) -> float:
            seen.setdefault(step, set()).add(sample)
            # (the deployment check also compares the deployed model against the simulation: then
            # the reference is the simulated output, still nearest its own sample's float output)
            if reference.shape == floats[sample].shape:
                nearest = int(np.argmin([np.abs(reference - f).max() for f in floats]))
                if nearest != sample:
                    wrong.append((step, sample))
            return 1.0
        probe.__name__ = f"probe_{step.replace('-', '_')}"
        return probe

    dbg.plot_acc_error(data, cnn_dir / MODEL, ["weight"], metric=probe_for("curves"), save_dir=tmp_path)
    dbg.local_errors(cnn_dir / MODEL, data, metrics=probe_for("local"), data_num=2)
    dbg.check_deployment(cnn_dir / MODEL, data, metrics=[probe_for("deployment")], data_num=3)
    assert seen == {"curves": {0}, "local": {0, 1}, "deployment": {0, 1, 2}} and not wrong
    assert model.outputs == ("logits",)


def test_the_sample_index_in_batched_groups(cnn_dir: Path, samples) -> None:
    """On GPU providers samples run in batches of 8: each row still gets its own sample's index."""
    floats = [oracle_from_file(cnn_dir / MODEL, (), s)["logits"] for s in samples]

    def own(reference: np.ndarray, actual: np.ndarray, sample: int) -> float:
        return float(np.allclose(reference, floats[sample], atol=1e-5))

    ctx = dbg.open_context(cnn_dir / MODEL, cnn_dir / "calibration_data", cache=False)
    ctx.batch_size = 4
    assert any(len(g) > 1 for g in ctx.score_groups(None, ("logits",)))  # the premise: batched
    got = dbg.sensitivity_of_nodes(ctx, metrics=own, node_type="activation", data_num=None).as_mapping()
    assert got and all(v["own"] == 1.0 for v in got.values())


def test_which_functions_get_the_sample_index() -> None:
    from ptqdebug.metrics import get_metrics

    def with_eps(reference, actual, eps=1e-12):  # noqa: ANN001, ANN202 - an optional third parameter is not the index
        return 0.0

    def wrapper(*args):  # noqa: ANN002, ANN202
        return 0.0

    def named(reference, actual, sample=None):  # noqa: ANN001, ANN202
        return 0.0

    def labels(reference, actual, index):  # noqa: ANN001, ANN202
        return 0.0

    assert [m.takes_sample for m in get_metrics([with_eps, wrapper, named, labels])] == [False, False, True, True]


# -- a metric over all compared tensors at once (all_outputs) --------------------------------------

def weighted_outputs(reference: dict, actual: dict) -> float:
    """Cosine per compared tensor, weighted 1, 2, 3, ... in name order (a detector weighing its
    boxes against its scores)."""
    names = sorted(reference)
    weights = np.arange(1, len(names) + 1, dtype=np.float64)
    return float(sum(w * cosine(reference[n], actual[n]) for w, n in zip(weights, names)) / weights.sum())


weighted_outputs.all_outputs = True  # type: ignore[attr-defined]


def logits_cosine(reference: dict, actual: dict) -> float:
    return cosine(reference["logits"], actual["logits"])


logits_cosine.all_outputs = True  # type: ignore[attr-defined]


def test_a_metric_over_all_outputs_matches_brute_force(cnn_dir: Path, samples) -> None:
    """Compared at two nodes' outputs (output_node), the function gets both tensors of a sample
    together; its score equals a brute force with one model and session per candidate."""
    path = cnn_dir / MODEL
    cm = load_model(path)
    at = ["Relu_1", "Gemm_0"]
    tensors = [t for n in at for t in cm.node_outputs[n]]
    got = dbg.get_sensitivity_of_nodes(path, weighted_outputs, cnn_dir / "calibration_data", output_node=at,
                                       node_type="activation", data_num=3)
    floats = [oracle_from_file(path, (), s, tensors) for s in samples[:3]]
    for c in candidates_for(cm, "activation"):
        want = np.mean([weighted_outputs(f, oracle_from_file(path, c.quantizers, s, tensors)) for f, s in zip(floats, samples)])
        assert got[c.name]["weighted_outputs"] == pytest.approx(want, abs=1e-9), c.name
    assert len({round(v["weighted_outputs"], 9) for v in got.values()}) > 1  # it discriminates


def test_a_metric_over_all_outputs_equals_the_built_in_one_everywhere(cnn_dir: Path, tmp_path: Path) -> None:
    """On a one-output model, cosine of the 'logits' entry is the built-in cosine: in the sweeps
    (in this process, in batched sample groups, in helper processes), partial quantization and the
    deployment check."""
    path, data = cnn_dir / MODEL, cnn_dir / "calibration_data"
    script = tmp_path / "whole.py"
    script.write_text(textwrap.dedent('''
        import numpy as np

        def logits_cosine(reference, actual):
            a, b = reference["logits"].ravel(), actual["logits"].ravel()
            return float(min(1.0, max(-1.0, a @ b / (max(np.linalg.norm(a), 1e-8) * max(np.linalg.norm(b), 1e-8)))))

        logits_cosine.all_outputs = True
    '''))
    builtin = dbg.get_sensitivity_of_nodes(path, "cosine-similarity", data, node_type="node", data_num=4)
    ctx = dbg.open_context(path, data, cache=False)
    ctx.batch_size = 4
    ways = {"here": dbg.get_sensitivity_of_nodes(path, logits_cosine, data, node_type="node", data_num=4),
            "batched": dbg.sensitivity_of_nodes(ctx, metrics=logits_cosine, node_type="node", data_num=4).as_mapping(),
            "helpers": dbg.get_sensitivity_of_nodes(path, f"{script}:logits_cosine", data, node_type="node", data_num=4,
                                                    workers=2, cache=False)}
    # (a batch of 4 runs other kernels than one sample: the batched way has its own built-in reference)
    batched = dbg.sensitivity_of_nodes(ctx, metrics="cosine-similarity", node_type="node", data_num=4).as_mapping()
    for way, got in ways.items():
        for n, v in (batched if way == "batched" else builtin).items():
            assert got[n]["logits_cosine"] == pytest.approx(v["cosine-similarity"], abs=1e-12), (way, n)
    deployed = dbg.check_deployment(path, data, metrics=[logits_cosine, "cosine-similarity"], data_num=2)
    for o in deployed.outputs:
        for k in ("deployed", "simulated", "between"):
            assert getattr(o, k)["logits_cosine"] == pytest.approx(getattr(o, k)["cosine-similarity"], abs=1e-12)
    nodes = list(builtin)[:3]
    a = dbg.sensitivity_analysis(path, data, sensitive_nodes=nodes, metric=logits_cosine, save_dir=None)
    b = dbg.sensitivity_analysis(path, data, sensitive_nodes=nodes, save_dir=None)
    assert a.partial == pytest.approx(b.partial, abs=1e-12) and a.baseline == pytest.approx(b.baseline, abs=1e-12)


def test_a_metric_over_all_outputs_is_refused_where_each_nodes_tensors_are_compared(
        cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, data = cnn_dir / MODEL, cnn_dir / "calibration_data"
    message = r"metric logits_cosine scores the compared outputs together \(all_outputs\), but {} compare each node's own tensors"
    with pytest.raises(OptionError, match=message.format("cumulative error curves")):
        dbg.plot_acc_error(data, path, metric=logits_cosine, save_dir=tmp_path / "curves")
    with pytest.raises(OptionError, match=message.format("local errors")):
        dbg.local_errors(path, data, metrics=[logits_cosine])
    with pytest.raises(OptionError, match=message.format("cumulative error curves")):
        dbg.runall(path, data, tmp_path / "all", ae_metric=logits_cosine)
    assert not any(tmp_path.iterdir())  # refused before anything was computed or written
    script = tmp_path.parent / f"{tmp_path.name}_whole.py"
    script.write_text("def total(reference, actual):\n    return 1.0\n\ntotal.all_outputs = True\n")
    code = main(["plot-acc-error", str(path), str(data), "-q", "['weight']", "-m", f"{script}:total", "-s", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "all_outputs" in err
    script.write_text("def boxes(reference, actual):\n    return reference['boxes'].sum()\n\nboxes.all_outputs = True\n")
    code = main(["get-sensitivity-of-nodes", str(path), str(data), "-m", f"{script}:boxes"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"metric boxes raised KeyError: 'boxes' at {script.name}:2; fix the metric function (its dicts hold 'logits')" in err


def test_a_metric_over_all_outputs_is_not_called_on_undefined_values() -> None:
    from ptqdebug.metrics import compare_sample, get_metrics

    calls: list[int] = []

    def total(reference: dict, actual: dict) -> float:
        calls.append(1)
        return float(sum(np.abs(reference[n] - actual[n]).sum() for n in reference))

    total.all_outputs = True  # type: ignore[attr-defined]
    metrics = get_metrics([total, "mse"])
    ref = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0]], np.float32)}
    got = compare_sample(metrics, ["a", "b"], ref, {"a": np.array([1.0, 2.5]), "b": np.array([[4.0]], np.float32)}, 0)
    assert got.shape == (2, 2) and got[:, 0].tolist() == [1.5, 1.5] and got[:, 1].tolist() == [0.125, 1.0]
    got = compare_sample(metrics, ["a", "b"], ref, {"a": np.array([1.0, np.inf]), "b": np.array([[4.0]], np.float32)}, 0)
    assert np.isnan(got[:, 0]).all() and np.isnan(got[0, 1]) and got[1, 1] == 1.0 and len(calls) == 1


def test_a_users_metric_runs_with_numpy_blas_on_one_thread(cnn_dir: Path) -> None:
    """BLAS threads a metric starts (np.dot) would spin beside ONNX Runtime's: while it runs, numpy's
    BLAS has one thread, and its setting is given back afterwards."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen: list[list[int]] = []

    def dot_cosine(reference, actual):  # noqa: ANN001, ANN202
        seen.append(blas_threads())
        a, b = reference.ravel(), actual.ravel()
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    before = blas_threads()
    got = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", dot_cosine, cnn_dir / "calibration_data",
                                       node_type="weight", cache=False)
    assert seen and all(threads == [1] * len(threads) for threads in seen)
    assert blas_threads() == before
    builtin = dbg.get_sensitivity_of_nodes(cnn_dir / "pc_int8_pairs.onnx", "cosine-similarity", cnn_dir / "calibration_data",
                                           node_type="weight", cache=False)
    for name, scores in builtin.items():
        assert got[name]["dot_cosine"] == pytest.approx(scores["cosine-similarity"], abs=1e-9)


def test_overlapping_metric_calls_give_the_blas_setting_back() -> None:
    """Overlapping calls (metrics running in threads): the first limits BLAS, the last gives the
    user's setting back; a call ending while another runs leaves it at one (each call saving and
    restoring its own left BLAS at one thread for good)."""
    from threadpoolctl import threadpool_info

    from ptqdebug.metrics import _one_blas_thread

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    first, second = _one_blas_thread(), _one_blas_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first ends while the second still runs
    assert blas_threads() == [1] * len(before)
    second.__exit__(None, None, None)
    assert blas_threads() == before


def test_a_metric_returning_a_numeric_string_is_refused() -> None:
    """float('1.0') would take it: a string is no number, whatever it spells."""
    from ptqdebug.errors import OptionError
    from ptqdebug.metrics import _user_metric

    metric = _user_metric(lambda reference, actual: "1.0", "stringy", "", None)
    with pytest.raises(OptionError, match=r"metric stringy returned '1.0'; expected a number"):
        metric.func(np.ones(3), np.ones(3))
    assert _user_metric(lambda reference, actual: np.float32(0.5), "plain", "", None).func(np.ones(3), np.ones(3)) == 0.5
