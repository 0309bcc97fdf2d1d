"""``%kie4o`` subcommands: one argparse subparser each, ``-h`` each, one-line mistakes."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.notebook import subcommands

from magic_helpers import all_text, run


@pytest.mark.parametrize("sub", subcommands.SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(shell, server, sub):
    cap = run(shell, f"%kie4o {sub} -h")  # prints, and does not raise
    assert f"usage: %kie4o {sub} [-h]" in cap.stdout
    assert "--help" in cap.stdout
    assert not server.requests  # help does nothing else


def test_help_lists_the_subcommands(shell):
    text = run(shell, "%kie4o -h").stdout
    for sub in subcommands.SUBCOMMANDS:
        assert f"\n    {sub} " in text or f"\n    {sub}\n" in text  # a long name: own line


def test_help_names_the_arguments(shell):
    assert "[--search TEXT] [--export FILE.jsonl] [--info] [N]" in run(
        shell, "%kie4o history --help").stdout
    assert "[TASK_ID]" in run(shell, "%kie4o resume -h").stdout
    assert "{on,off}" in run(shell, "%kie4o demo -h").stdout


def test_unknown_subcommand_is_one_line(shell):
    with pytest.raises(UsageError) as info:
        run(shell, "%kie4o frobnicate --now")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("%kie4o: 'frobnicate' is not a subcommand (login, demo,")


def test_history_count_and_search(shell, server, tmp_path):
    store = HistoryStore(tmp_path / "kie")  # the fixture's KIE_OUTPUT_DIR
    for n, prompt in enumerate(("a red fox", "an owl", "a fox cub", "a grey fox", "a fox den",
                                "a fox", "fox tracks")):
        store.append({"task_id": f"task-{n}", "prompt": prompt, "status": "success"})
    table = shell.run_line_magic("kie4o", "history 5 --search fox")
    text = table._repr_mimebundle_()["text/plain"]
    assert "fox tracks" in text and "a fox den" in text and "an owl" not in text
    assert "a red fox" not in text  # the sixth fox: five asked for, newest first
    shell.user_ns["needle"] = "OWL"
    text = all_text(run(shell, "%kie4o history --search=$needle"))
    assert "an owl" in text and "fox" not in text


@pytest.mark.parametrize(("line", "message"), [
    ("history 0", "%kie4o history: '0' is not a positive count or --search TEXT"),
    ("history --search", "%kie4o history --search: give the text to look for"),
    ("history 2 3", "%kie4o history: unrecognized arguments: 3 "
                         "(give [N] [--search TEXT], --export FILE.jsonl or --info)"),
    ("status a b", "%kie4o status: give one task id, e.g. `%kie4o status 3f2a…` "
                   "(see `%kie4o history`)"),
    ("resume ' '", "%kie4o resume: give one task id, e.g. `%kie4o resume 3f2a…` "
                   "(see `%kie4o history`)"),
    ("demo on off", "%kie4o demo: use `%kie4o demo`, `%kie4o demo on` or `%kie4o demo off`"),
    ("credits now", "%kie4o credits takes no argument"),
    ("config --all", "%kie4o config takes no argument; change settings with "
                     "`%config Kie4o.<name> = value`"),
])
def test_mistakes_are_one_line_and_send_nothing(shell, server, line, message):
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o {line}")
    assert str(info.value) == message
    assert not server.requests


def test_demo_mode_is_case_insensitive(shell):
    try:
        assert "synthetic" in run(shell, "%kie4o demo ON").stdout
    finally:
        assert "demo mode off" in run(shell, "%kie4o demo Off").stdout


def test_the_models_table_wraps_to_the_output_width(shell):
    from IPython.utils.capture import capture_output

    with capture_output():
        shown = shell.run_cell("%kie4o models").result._repr_mimebundle_()["text/html"]
    assert "max-width:100%" in shown and "overflow-wrap:anywhere" in shown
    assert "a task each" in shown and "; -n" not in shown
    # Grouped by kind; --all accounts for KIE's models that are not registered, and why.
    assert shown.index("generators —") < shown.index("editors —") < shown.index("tools —")
    assert shown.index("tools —") < shown.index(">topaz-upscale<")
    assert "Grok Imagine Upscale" not in shown
    with capture_output():
        every = shell.run_cell("%kie4o models --all").result._repr_mimebundle_()["text/html"]
    assert "not registered" in every and "Grok Imagine Upscale" in every


def test_the_catalogue_accounts_for_every_image_model():
    from kie_jupyter.api.catalogue import CATALOGUE
    from kie_jupyter.api.registry import MODELS

    assert {e.model for e in CATALOGUE if e.model} == set(MODELS)
    assert all(e.why_not for e in CATALOGUE if not e.model)
    titles = " ".join(e.title for e in CATALOGUE)
    for name in ("Seedream 3.0", "Seedream 4.0", "Z-Image", "Nano Banana Edit", "Imagen 4 Fast",
                 "Imagen 4 Ultra", "Flux-2 Flex", "Grok Imagine Upscale", "Topaz",
                 "Recraft Remove Background", "Recraft Crisp Upscale", "Ideogram V3 Reframe",
                 "Ideogram Character Edit", "Ideogram Character Remix", "Qwen image-to-image"):
        assert name in titles, name
