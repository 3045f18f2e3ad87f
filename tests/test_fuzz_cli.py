"""Every CLI command, every numeric option, hostile values: exit code 2 with a one-line message,
never a traceback. Commands are run in-process with the work they would do kept tiny."""

import argparse
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmac.cli import build_parser, main

# minimal valid arguments per command, so that only the fuzzed option is wrong
BASE = {
    "bench": ["--shapes", "64x64", "--bits", "2", "--regime", "hot", "--repeat", "1"],
    "demo": ["--m", "32", "--k", "64", "--group-size", "32", "--repeats", "1"],
    "fp4-study": ["--m", "8", "--k", "128", "--seeds", "1"],
    "fp4-bench": ["--m", "64", "--k", "128", "--group-size", "32", "--repeats", "1"],
    "generate": ["hello", "--model", "/nonexistent/model.gguf"],
    "perplexity": ["/nonexistent/text.txt", "--model", "/nonexistent/model.gguf"],
    "tune": ["--shapes", "64x64", "--bits", "2", "--threads", "1"],
}


def numeric_options():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[-1]) for name, sp in sub.choices.items()
            for action in sp._actions if action.option_strings and name in BASE
            and action.type is not None and action.type is not str]


OPTIONS = numeric_options()


def test_every_command_with_numeric_options_is_covered():
    assert {name for name, _ in OPTIONS} == set(BASE)


@settings(max_examples=60, deadline=None)
@given(choice=st.sampled_from(OPTIONS), value=st.sampled_from(["-5", "x", "", "1e999", "nan", "-0.5"]))
def test_hostile_numeric_values_exit_2(choice, value):
    name, option = choice
    err_buffer, out_buffer = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err_buffer), contextlib.redirect_stdout(out_buffer):
        try:
            code = main([name, *BASE[name], option, value])
        except SystemExit as exit_:                 # argparse's own refusal
            code = exit_.code
    err = err_buffer.getvalue()
    if code == 0:                                   # a value some options accept (e.g. --seed -5)
        return
    assert code == 2, (name, option, value, err)
    assert "Traceback" not in err and "error" in err


@pytest.mark.parametrize("argv", [["golden", "verify", "/nonexistent/dir"], ["fetch", "nosuchmodel"],
                                  ["bench", "nosuchmode"], ["golden", "export"]])
def test_bad_positional_arguments_exit_cleanly(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code in (1, 2) and "Traceback" not in capsys.readouterr().err
