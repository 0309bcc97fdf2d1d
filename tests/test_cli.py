"""The ``kie4o`` command: single prompts, batches with a concurrency cap, demo, errors."""

from __future__ import annotations

from kie_jupyter.cli import main


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
