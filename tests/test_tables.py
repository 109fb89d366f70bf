"""The text tables are the original tool's, character for character (reference §3.5, §6.3)."""

from __future__ import annotations

from ptqdebug.report.tables import info_table, log_table


def test_info_table_layout() -> None:
    rows = {"Conv_60": {"cosine-similarity": 0.77795, "mse": 68.02103}, "Conv_48": {"cosine-similarity": 0.78428, "mse": 64.36318}}
    text = info_table("node sensitivity", "node", rows)
    # widths: first column max(10, 7) + 2 = 12; cosine 17 + 2; mse max(3, 8) + 2 → 41 in all
    assert text.split("\n") == [
        "",
        "=" * 12 + "node sensitivity" + "=" * 13,
        "node        cosine-similarity  mse       ",
        "-" * 41,
        "Conv_60     0.77795            68.02103  ",
        "Conv_48     0.78428            64.36318  ",
    ]


def test_info_table_missing_cells_and_long_names() -> None:
    name = "n" * 60
    rows = {name: {"node": "", "threshold": None, "cosine-similarity": 1.0}}
    lines = info_table("node sensitivity", "activation", rows).split("\n")
    assert lines[4].startswith("..." + "n" * 47 + "  ")
    assert len(lines[4]) == len(lines[3])


def test_log_table_layout() -> None:
    rows = {"471_HzCalibration": {"cosine-similarity": 0.9997813701629639, "mse": 0.07518617063760757}}
    text = log_table("weight", rows)
    # Node width max(4, 17) + 2 = 19; cos 18 + 2 = 20; mse 19 + 2 = 21 → 60; title pad int((60-6)/2) = 27
    assert text == (
        "=" * 27 + "weight" + "=" * 27 + "\n"
        + "Node".ljust(19) + "cosine-similarity".ljust(20) + "mse".ljust(21) + "\n"
        + "-" * 60 + "\n"
        + "471_HzCalibration".ljust(19) + "0.9997813701629639".ljust(20) + "0.07518617063760757".ljust(21) + "\n"
    )


def test_log_table_odd_padding_is_equal_on_both_sides() -> None:
    text = log_table("node", {"ab": {"mse": 1.5}})
    first = text.splitlines()[0]
    left, right = first.split("node")
    assert left == right


def test_shown_keeps_the_original_rounding_unless_it_hides_the_loss() -> None:
    from ptqdebug.report.tables import shown

    assert shown(0.9999512) == 0.99995 and shown(0.123456789) == 0.12346  # the original's 5 decimals
    assert shown(0.9999967) == 0.9999967 and shown(0.99999996) == 0.99999996  # not 1.0: not lossless
    assert shown(1.0) == 1.0 and shown(3.2e-9, "mse") == 3.2e-9 and shown(0.0, "mse") == 0.0
    assert shown(1.234e-14, "mse") == 1.2e-14  # no cap: a tiny loss never reads as none
    assert shown(0.99999951, "cosine-similarity", 6) == 0.99999951  # two digits of the loss
    assert shown(float("inf"), "sqnr") == float("inf") and shown(0.4, "my_own_metric") == 0.4


def test_a_printed_table_names_a_few_readers_and_counts_the_rest() -> None:
    """The verbose node column of an activation sweep: a tensor read by a dozen nodes made the
    table hundreds of characters wide; the .log keeps every name."""
    from ptqdebug.analyses.sensitivity import SensitivityEntry, SensitivityResult
    from ptqdebug.report.tables import sensitivity_rows

    readers = ";".join(f"/encoder/layer.{i}/attention/MatMul" for i in range(12))
    entries = (SensitivityEntry("t_q", ("t_q",), {"cosine-similarity": 0.99}, node=readers),
               SensitivityEntry("u_q", ("u_q",), {"cosine-similarity": 0.999}, node="a;b;c"))
    result = SensitivityResult("activation", ("cosine-similarity",), entries, ("y",), 1)
    shown = sensitivity_rows(result, rounded=True)
    assert shown["t_q"]["node"] == "/encoder/layer.0/attention/MatMul;/encoder/layer.1/attention/MatMul;+10 more"
    assert shown["u_q"]["node"] == "a;b;c"  # (three fit)
    assert "node" not in sensitivity_rows(result, rounded=False)["t_q"]
