"""One option table: ``%%kie4o`` and the ``kie4o`` CLI accept the same shared options."""

from __future__ import annotations

import argparse

import pytest
from IPython.core.error import UsageError

from kie_jupyter import cli, optiontable
from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.notebook.magics import Kie4o

from magic_helpers import run

SHARED = tuple(optiontable.options_for("cli"))
NOTEBOOK_ONLY = tuple(o for o in optiontable.OPTIONS if o.notebook_only)
CLI_ONLY = {"--batch", "--concurrency", "--resume", "--credits", "--demo", "--fresh",
            "--prices", "--show-prices"}
HELP = {"-h", "--help"}


def _magic_parser() -> argparse.ArgumentParser:
    return Kie4o.kie4o.parser


# argparse lists its actions only in ``_actions``; the tests read them to compare parsers.
def _by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for a in parser._actions for flag in a.option_strings}


def test_notebook_only_options_are_the_expected_ones():
    assert {o.long for o in NOTEBOOK_ONLY} == {"--out", "--no-wait"}
    assert SHARED and not any(o.notebook_only for o in SHARED)


def test_both_parsers_take_the_same_shared_option_strings():
    magic, shell_cli = _flags(_magic_parser()), _flags(cli._parser())
    notebook_only = {f for o in NOTEBOOK_ONLY for f in o.flags}
    assert magic - HELP - notebook_only == shell_cli - HELP - CLI_ONLY
    assert not notebook_only & shell_cli
    assert not CLI_ONLY & magic


@pytest.mark.parametrize("option", SHARED, ids=lambda o: o.long)
def test_each_shared_option_is_declared_alike(option):
    magic = _by_dest(_magic_parser())[option.dest]
    shell_cli = _by_dest(cli._parser())[option.dest]
    assert magic.option_strings == shell_cli.option_strings == list(option.flags)
    for attr in ("type", "nargs", "const", "metavar"):
        assert getattr(magic, attr) == getattr(shell_cli, attr), attr
    expected = list(option.choices) if option.choices is not None else None
    assert magic.choices == expected
    if option.dest == "fallback":
        # The CLI checks the model itself, so that `kie4o --fallback "a fox"` is a prompt.
        assert shell_cli.choices is None
    else:
        assert shell_cli.choices == expected


def test_the_cli_refuses_what_the_magic_refuses_for_fallback():
    with pytest.raises(KieUsageError, match="GPT_IMAGE_1"):
        cli._parse(["a fox", "--fallback", "DALL_E"])
    with pytest.raises(UsageError, match="GPT_IMAGE_1"):
        _magic_parser().parse_args(["--fallback", "DALL_E"])


def test_both_parsers_read_a_line_the_same_way():
    words = ["-s", "3:2", "-n", "2", "-i", "a.png", "-i", "https://x.example/b.png",
             "-m", "m.png", "-e", "--fallback", "GPT_IMAGE_1",
             "--callback", "https://x.example/hook", "--save", "out", "--timeout", "5"]
    magic = vars(_magic_parser().parse_args(words))
    shell_cli = vars(cli._parser().parse_args(["a prompt", *words]))
    for option in SHARED:
        assert magic[option.dest] == shell_cli[option.dest], option.long


def test_defaults_differ_only_where_the_cli_says_so():
    magic = vars(_magic_parser().parse_args([]))
    shell_cli = vars(cli._parser().parse_args([]))
    differ = {o.dest for o in SHARED if magic[o.dest] != shell_cli[o.dest]}
    assert differ == {"save", "timeout"}  # the magic takes these from %config
    # No size: 4o gets 1:1 from the plan, other models their own, a tool none.
    assert (shell_cli["size"], shell_cli["save"], shell_cli["timeout"]) == (
        None, "kie4o_images", 600.0)


def test_a_parse_never_shares_the_image_list():
    first = cli._parser().parse_args(["-i", "a.png"])
    second = cli._parser().parse_args([])
    assert first.image == ["a.png"] and second.image == []


def test_magic_help_lists_every_option(shell):
    text = run(shell, "%%kie4o?").stdout
    words = " ".join(text.split())  # argparse wraps the help
    for option in optiontable.OPTIONS:
        for flag in option.flags:
            assert flag in text, flag
        assert " ".join(option.help.split()[:3]) in words, option.long


def test_cli_help_lists_every_shared_option(capsys):
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in SHARED:
        assert option.long in text
    for option in NOTEBOOK_ONLY:
        assert option.long not in text


def test_a_bad_override_is_caught():
    with pytest.raises(KeyError, match="no cli option with dest out"):
        optiontable.add_options(argparse.ArgumentParser(), "cli", {"out": {"default": "x"}})
    with pytest.raises(TypeError, match="--size: cannot override flags"):
        optiontable.BY_DEST["size"].kwargs("cli", flags=("-z",))
    with pytest.raises(ValueError, match="front_end"):
        list(optiontable.options_for("web"))


def test_long_names_cover_every_flag():
    for option in optiontable.OPTIONS:
        for flag in option.flags:
            assert optiontable.LONG_NAMES[flag] == option.long
    assert optiontable.OBJECT_FLAGS == {"-i", "--image", "-m", "--mask"}
