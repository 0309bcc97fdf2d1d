"""The ``kie4o`` command: single prompts, batches with a concurrency cap, demo, errors."""

from __future__ import annotations

import json

import pytest

from kie_jupyter.api.models import MAX_PROMPT_CHARS
from kie_jupyter.cli import main
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.task import Task


@pytest.fixture(autouse=True)
def _output_dir(tmp_path, monkeypatch):
    """History goes to the test's folder, never the real home."""
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie_home"))


def test_single_prompt_saves_images(kie_mock, tmp_path, capsys):
    assert main(["a fox", "-n", "2", "-s", "3:2", "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Done in" in out
    assert len(list(tmp_path.glob("*.png"))) == 2 and len(list(tmp_path.glob("*.json"))) == 1


def test_batch_respects_concurrency(kie_mock, tmp_path, capsys):
    batch = tmp_path / "prompts.txt"
    batch.write_text("# a comment\none\ntwo\n\nthree\nfour\n")
    assert main(["--batch", str(batch), "--concurrency", "2", "--save", str(tmp_path)]) == 0
    assert len(kie_mock.requests_to("generate")) == 4
    assert len(list(tmp_path.glob("*.png"))) == 4
    # Never more than two tasks at once: the third generate waits for a task to end.
    times = sorted(r.time for r in kie_mock.requests_to("generate"))
    assert times[2] - times[0] >= 0.8  # the fixture's tasks take 1 s


def test_failures_exit_non_zero(kie_mock, tmp_path, capsys):
    assert main(["[mock:fail] refused", "--save", str(tmp_path)]) == 1
    assert "Failed:" in capsys.readouterr().out


def test_bad_input_and_no_key(kie_mock, monkeypatch, capsys):
    assert main(["x", "-i", "/no/such.png"]) == 2
    assert "no such file" in capsys.readouterr().err
    monkeypatch.delenv("KIE_API_KEY")
    assert main(["x"]) == 2
    assert "KIE_API_KEY" in capsys.readouterr().err
    assert not kie_mock.requests


def test_demo_and_credits(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.3")
    assert main(["--demo", "demo fox", "--save", str(tmp_path)]) == 0
    assert list(tmp_path.glob("*.png"))
    assert main(["--demo", "--credits"]) == 0
    assert "credits" in capsys.readouterr().out


# -- issue 11: no credit spent by accident, every mistake one line -----------------------------


def one_error_line(capsys) -> str:
    """The CLI's stderr: exactly one line, ``kie4o: …``, no traceback, no usage text."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("kie4o: ") and "Traceback" not in captured.err
    return lines[0]


def test_batch_that_is_not_text_is_one_line(kie_mock, tmp_path, capsys):
    png = tmp_path / "some.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert main(["--batch", str(png), "--save", str(tmp_path / "out")]) == 2
    assert "not a text file" in one_error_line(capsys)
    assert main(["--batch", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in one_error_line(capsys)
    assert main(["--batch", str(tmp_path)]) == 2
    assert "directory" in one_error_line(capsys)
    assert not kie_mock.requests


@pytest.mark.parametrize("text", ["", "\n\n  \n", "# only a comment\n   # another\n"])
def test_batch_without_prompts_is_a_usage_error(kie_mock, tmp_path, capsys, text):
    batch = tmp_path / "prompts.txt"
    batch.write_text(text)
    assert main(["--batch", str(batch), "--save", str(tmp_path / "out")]) == 2
    assert f"no prompts in {batch}" in one_error_line(capsys)
    assert not kie_mock.requests


@pytest.mark.parametrize("value", ["0", "-3"])
def test_concurrency_below_one_is_a_usage_error(kie_mock, tmp_path, capsys, value):
    batch = tmp_path / "prompts.txt"
    batch.write_text("one\n")
    assert main(["--batch", str(batch), "--concurrency", value]) == 2
    assert "--concurrency" in one_error_line(capsys)
    assert not kie_mock.requests


def test_prompt_and_batch_together_name_both(kie_mock, tmp_path, capsys):
    batch = tmp_path / "prompts.txt"
    batch.write_text("one\n")
    assert main(["a fox", "--batch", str(batch)]) == 2
    line = one_error_line(capsys)
    assert "prompt" in line and "--batch" in line
    assert main(["a fox", "--resume", "task123"]) == 2
    assert "--resume" in one_error_line(capsys)
    assert not kie_mock.requests


def test_batch_line_too_long_names_file_and_line_and_sends_nothing(kie_mock, tmp_path, capsys):
    batch = tmp_path / "prompts.txt"
    batch.write_text(f"a fine prompt\n# comment\n\n{'x' * (MAX_PROMPT_CHARS + 1)}\nlast one\n")
    assert main(["--batch", str(batch), "--save", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert f"{batch}:4: prompt: {MAX_PROMPT_CHARS + 1} characters" in line
    assert not kie_mock.requests  # the good first line was not sent either


def test_batch_line_with_control_character_names_its_line(kie_mock, tmp_path, capsys):
    batch = tmp_path / "prompts.txt"
    batch.write_text("one\ntwo \x07 bell\n")
    assert main(["--batch", str(batch)]) == 2
    assert f"{batch}:2: prompt: control character" in one_error_line(capsys)
    assert not kie_mock.requests


def test_save_failure_exits_non_zero_with_the_reason(kie_mock, tmp_path, capsys, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Task, "save", disk_full)
    assert main(["a fox", "--save", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "could not save" in out and "No space left on device" in out


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_bad_timeout_is_a_usage_error_before_sending(kie_mock, tmp_path, capsys, value):
    assert main(["a fox", "--timeout", value, "--save", str(tmp_path / "out")]) == 2
    assert "--timeout" in one_error_line(capsys)
    assert not kie_mock.requests
    assert not (tmp_path / "out").exists()


def test_bad_save_folder_is_a_usage_error_before_sending(kie_mock, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["a fox", "--save", str(a_file)]) == 2
    assert "--save" in one_error_line(capsys)
    assert main(["a fox", "--save", str(a_file / "sub")]) == 2
    assert "--save" in one_error_line(capsys)
    assert not kie_mock.requests


def test_default_save_folder_is_checked_and_used(kie_mock, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kie4o_images").write_text("a file in the way")
    assert main(["a fox"]) == 2
    assert "--save" in one_error_line(capsys)
    assert not kie_mock.requests


def test_bad_option_values_are_one_line(kie_mock, tmp_path, capsys):
    for argv in (["x", "-n", "3"], ["x", "--concurrency", "many"], ["x", "--nope"],
                 ["x", "--timeout", "soon"], ["x", "-s", "4:3"]):
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert "kie4o --help" in line and "usage:" not in line
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    assert main(["x", "-i", str(not_an_image)]) == 2
    assert "not an image" in one_error_line(capsys)
    assert not kie_mock.requests


def test_errors_carry_the_cli_hint_not_the_notebook_one(kie_mock, tmp_path, capsys,
                                                        monkeypatch):
    kie_mock.add_fault("generate", code=402, msg="Insufficient credits")
    assert main(["a fox", "--save", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "`kie4o --credits`" in out and "%kie4o" not in out
    # A local timeout: the task goes on and the line says how to get it.
    assert main(["a fox", "--timeout", "0.3", "--save", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    task_id = out.split()[0]
    assert f"`kie4o --resume {task_id}`" in out and "%kie4o" not in out
    monkeypatch.delenv("KIE_API_KEY")
    assert main(["a fox"]) == 2
    line = one_error_line(capsys)
    assert "KIE_API_KEY" in line and "kie4o --demo" in line and "%kie4o" not in line


def test_demo_results_and_credits_say_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.2")
    assert main(["--demo", "demo fox", "--save", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("[demo] ") and "Done in" in line
    assert main(["--demo", "--credits"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "not real credits" in out


def test_fallback_and_callback_reach_the_request(kie_mock, tmp_path):
    # --yes: a fallback's price is unknown, so kie4o asks first.
    assert main(["a fox", "--fallback", "--callback", "https://example.com/hook",
                 "--save", str(tmp_path), "--yes"]) == 0
    # --fallback right before the prompt: the default model, and the prompt stays a prompt.
    assert main(["--fallback", "a cat", "--save", str(tmp_path), "--yes"]) == 0
    assert main(["--fallback", "GPT_IMAGE_1", "a dog", "--save", str(tmp_path), "--yes"]) == 0
    bodies = [r.json for r in kie_mock.requests_to("generate")]
    assert bodies[0]["enableFallback"] is True and bodies[0]["fallbackModel"] == "FLUX_MAX"
    assert bodies[0]["callBackUrl"] == "https://example.com/hook"
    assert bodies[1]["prompt"] == "a cat" and bodies[1]["fallbackModel"] == "FLUX_MAX"
    assert bodies[2]["prompt"] == "a dog" and bodies[2]["fallbackModel"] == "GPT_IMAGE_1"


def test_bad_fallback_or_callback_is_a_usage_error(kie_mock, capsys):
    assert main(["--fallback", "DALL_E", "a fox"]) == 2
    assert "--fallback" in one_error_line(capsys)
    assert main(["a fox", "--callback", "ftp://example.com"]) == 2
    assert "--callback" in one_error_line(capsys)
    assert not kie_mock.requests


def test_history_records_demo_and_sidecar_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.2")
    assert main(["--demo", "demo fox", "--save", str(tmp_path / "out")]) == 0
    entries = HistoryStore(tmp_path / "kie_home").entries()
    assert entries and all(e.demo is True for e in entries)
    assert len(list((tmp_path / "out").glob("*.json"))) == 1


# -- resumable batches: what a re-run may skip or follow ------------------------------------


def test_a_demo_batch_never_stands_for_a_live_one(kie_mock, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.2")
    batch = tmp_path / "b.txt"
    batch.write_text("a red fox\n")
    out = tmp_path / "out"
    assert main(["--demo", "--batch", str(batch), "--save", str(out)]) == 0
    capsys.readouterr()
    assert main(["--batch", str(batch), "--save", str(out)]) == 0
    assert "1 done, 0 failed, 0 skipped (already done), 0 resumed" in capsys.readouterr().out
    assert len(kie_mock.requests_to("generate")) == 1  # the live run made its own image


def test_a_partly_saved_task_is_followed_again_not_skipped(kie_mock, tmp_path, capsys):
    batch = tmp_path / "b.txt"
    batch.write_text("two foxes\n")
    out = tmp_path / "out"
    assert main(["--batch", str(batch), "--save", str(out), "-n", "2"]) == 0
    next(out.glob("*_1.png")).unlink()  # one of the two images is gone
    capsys.readouterr()
    assert main(["--batch", str(batch), "--save", str(out), "-n", "2"]) == 0
    assert "1 resumed" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 2
    assert len(kie_mock.requests_to("generate")) == 1


def test_4o_params_are_checked_and_never_override_the_options(kie_mock, tmp_path, capsys):
    assert main(["a fox", "--save", str(tmp_path), "--param", "upload_cn=true"]) == 0
    assert kie_mock.requests_to("generate")[0].json["uploadCn"] is True
    for bad in (["--param", "upload_cn=\"no\""], ["-e", "--param", "enhance=false"],
                ["--param", "fallback_model=GPT_IMAGE_1"]):
        assert main(["a fox", "--save", str(tmp_path), *bad]) == 2, bad
    assert len(kie_mock.requests_to("generate")) == 1


def test_an_option_given_twice_is_refused(kie_mock, tmp_path, capsys):
    assert main(["a fox", "--model", "4o", "--model", "seedream-4.5",
                 "--save", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--model: given twice; give it once (a comma list runs each: --model a,b)" in err
    assert main(["a fox", "--save", str(tmp_path), "--save", str(tmp_path / "x")]) == 2
    assert "--save: given twice" in capsys.readouterr().err
    assert not kie_mock.requests_to("generate")
