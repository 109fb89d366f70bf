"""The original's list syntax, parsed without eval."""

from __future__ import annotations

import pytest

from ptqdebug.errors import OptionError
from ptqdebug.listsyntax import parse_list


@pytest.mark.parametrize("text,expected", [
    ("weight", "weight"),
    ("[a,b]", ["a", "b"]),
    ("['a','b']", ["a", "b"]),
    ("[ 'cosine-similarity' , 'mse' ]", ["cosine-similarity", "mse"]),
    ("[[a,b],[c]]", [["a", "b"], ["c"]]),
    ("[['Conv_2'], ['Conv_2', 'Conv_90']]", [["Conv_2"], ["Conv_2", "Conv_90"]]),
    ("[]", []),
    ("[a,]", ["a"]),
    ("['a, b', c]", ["a, b", "c"]),
    ("[/model/conv1/Conv, 317_HzCalibration]", ["/model/conv1/Conv", "317_HzCalibration"]),
    ('["名字 with space"]', ["名字 with space"]),
    ("[1]", ["1"]),
    ("['it''s', \"say \"\"hi\"\"\"]", ["it's", 'say "hi"']),  # a doubled quote stands for one
    ("['both '' and \"', '']", ["both ' and \"", ""]),
])
def test_parses(text: str, expected: object) -> None:
    assert parse_list(text) == expected


@pytest.mark.parametrize("text", ["[a,b", "[a,,b]", "[a] x", "a]", "['a]", "[a b c", "[[a]"])
def test_malformed_is_one_clear_error(text: str) -> None:
    with pytest.raises(OptionError, match="expected"):
        parse_list(text, "--interested_nodes")


def test_never_evaluates_code() -> None:
    assert parse_list("[__import__('os').system('echo hi')]") == ["__import__(os).system(echo hi)"]
    value = parse_list("[__import__, os]")
    assert value == ["__import__", "os"]


def test_printed_commands_read_back_every_name() -> None:
    """The export command runall prints must give back the nodes it names, through the shell and
    the list syntax: names with quotes, commas, brackets and spaces are quoted (a node named
    ``<img …> it's $HOME & "q"`` came back without its quotes)."""
    import shlex

    from ptqdebug.analyses.partial import apply_commands
    from ptqdebug.cli.args import names_value

    for nodes in (["a", "/conv1/Conv"], ["<img src=x onerror=alert(1)> it's $HOME & q", "x,y", "[z]", " sp "],
                  ['say "hi"', "plain"], ["both ' and \"", "'''", "''"]):
        for qtype, option in (("float32", "--float-nodes"), ("int16", "--int16-nodes")):
            export, _ = apply_commands(nodes, "m.onnx", qtype)
            argv = shlex.split(export)
            assert names_value(option)(argv[argv.index(option) + 1]) == nodes
