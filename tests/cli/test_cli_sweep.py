"""``kie4o`` sweeps, as the magic has them: ``{a|b}``, comma lists, ``-n``, the confirm gate
and a dry run — run as a user runs it, the installed command in a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_subprocess import env_for

from kie_jupyter.testing import MockKieServer

KIE4O = Path(sys.executable).with_name("kie4o")


@pytest.fixture
def server():
    with MockKieServer(api_key="test-key", duration=0.2, rate_limit=None) as mock:
        yield mock


def kie4o(server: MockKieServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KIE4O), *args, "--save", str(tmp_path / "out")],
                          env=env_for(server, tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def batch_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    return path


def sent(server: MockKieServer, endpoint: str = "generate") -> list[dict]:
    return [r.json for r in server.requests_to(endpoint)]


def test_a_prompt_group_and_a_size_list_make_every_combination(server, tmp_path):
    done = kie4o(server, tmp_path, "a {red|blue} fox", "-s", "1:1,3:2")
    assert done.returncode == 0, done.stderr
    bodies = sent(server)
    assert sorted((b["prompt"], b["size"]) for b in bodies) == [
        ("a blue fox", "1:1"), ("a blue fox", "3:2"), ("a red fox", "1:1"), ("a red fox", "3:2")]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    # One line per task, each saying which combination it is.
    assert len(lines) == 4
    assert {line.split("]")[0] + "]" for line in lines} == {
        "[red / 1:1]", "[red / 3:2]", "[blue / 1:1]", "[blue / 3:2]"}
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_literal_braces_reach_the_api_as_single_ones(server, tmp_path):
    done = kie4o(server, tmp_path, "a sign that says {{open}}")
    assert done.returncode == 0, done.stderr
    assert [b["prompt"] for b in sent(server)] == ["a sign that says {open}"]


def test_a_big_sweep_needs_yes_and_sends_nothing_without_it(server, tmp_path):
    refused = kie4o(server, tmp_path, "a {red|blue|green} fox", "-s", "1:1,3:2,2:3")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1  # one line
    assert "9 tasks, 9 images, ≈ 54 credits" in refused.stderr and "--yes" in refused.stderr
    assert "nothing was sent" in refused.stderr
    assert sent(server) == [] and server.requests_to("file-stream-upload") == []
    done = kie4o(server, tmp_path, "a {red|blue|green} fox", "-s", "1:1,3:2,2:3", "--yes")
    assert done.returncode == 0, done.stderr
    assert len(sent(server)) == 9


def test_dry_run_lists_every_request_and_sends_nothing(server, tmp_path):
    done = kie4o(server, tmp_path, "a {red|blue} fox", "--model", "4o,nano-banana-2",
                 "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("POST ") == 4
    assert "# red / 4o" in out and "# blue / nano-banana-2" in out
    assert "/api/v1/gpt4o-image/generate" in out and "/api/v1/jobs/createTask" in out
    assert "test-key" not in out  # the key is masked
    assert "(dry run: 4 requests, 4 images, ≈ 28 credits (≈ $0.14); nothing was sent)" in out
    assert sent(server) == [] and sent(server, "createTask") == []
    assert not (tmp_path / "out").exists()


def test_n_means_the_same_as_in_the_magic(server, tmp_path):
    # 4o makes several images in one task; a one-image model runs one task per image.
    done = kie4o(server, tmp_path, "a fox", "-n", "2")
    assert done.returncode == 0, done.stderr
    assert [b["nVariants"] for b in sent(server)] == [2]
    done = kie4o(server, tmp_path, "a fox", "--model", "nano-banana-2", "-n", "2")
    assert done.returncode == 0, done.stderr
    assert len(sent(server, "createTask")) == 2
    assert "[1]" in done.stdout and "[2]" in done.stdout


def test_a_bad_value_in_a_list_is_one_line_before_anything_is_sent(server, tmp_path):
    refused = kie4o(server, tmp_path, "a fox", "-s", "1:1,7:9")
    assert refused.returncode == 2
    assert refused.stderr.startswith("kie4o: ") and refused.stderr.count("\n") == 1
    assert "7:9" in refused.stderr
    assert sent(server) == []


def test_a_batch_line_may_be_a_sweep(server, tmp_path):
    batch = batch_file(tmp_path, "a plain fox\na {red|blue} house\n")
    done = kie4o(server, tmp_path, "--batch", str(batch))
    assert done.returncode == 0, done.stderr
    assert sorted(b["prompt"] for b in sent(server)) == [
        "a blue house", "a plain fox", "a red house"]
    assert "3 done, 0 failed" in done.stdout


def test_a_dry_run_of_a_big_sweep_needs_no_yes(server, tmp_path):
    done = kie4o(server, tmp_path, "a {red|blue|green} fox", "-s", "1:1,3:2,2:3", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert ("(dry run: 9 requests, 9 images, ≈ 54 credits (≈ $0.27); nothing was sent)"
            in done.stdout)
    assert sent(server) == []


def test_batch_mistakes_name_their_line_even_the_first(server, tmp_path):
    batch = batch_file(tmp_path, "a {red|red} fox\na fine fox\n")
    refused = kie4o(server, tmp_path, "--batch", str(batch))
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"kie4o: {batch}:1: prompt: ")
    batch_file(tmp_path, "a fine fox\na {red|blue|green} fox {big|small|tiny}\n")
    refused = kie4o(server, tmp_path, "--batch", str(batch))
    assert refused.returncode == 2 and f"{batch}:2: this sweep makes 9 tasks" in refused.stderr
    assert sent(server) == []


def test_a_mask_in_a_batch_for_a_model_that_takes_none_is_refused(server, tmp_path):
    from PIL import Image

    for name in ("i.png", "m.png"):
        Image.new("RGB", (64, 64), "white").save(tmp_path / name)
    batch = batch_file(tmp_path, "a fox\n")
    refused = kie4o(server, tmp_path, "--batch", str(batch), "--model", "gpt-image-1.5",
                    "-i", str(tmp_path / "i.png"), "-m", str(tmp_path / "m.png"))
    assert refused.returncode == 2
    assert f"{batch}:1: --mask: gpt-image-1.5 takes no mask" in refused.stderr
    assert sent(server, "createTask") == [] and server.requests_to("file-stream-upload") == []


def test_seeds_sweep_and_a_negative_prompt_from_the_shell(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "--model", "imagen-4-fast", "--seed", "1,2",
                 "--negative", "blurry, text", "--yes")
    assert done.returncode == 0, done.stderr
    bodies = [b["input"] for b in sent(server, "createTask")]
    # Imagen 4 Fast's page types seed as an integer (Imagen 4's as a string).
    assert sorted((b["seed"], b["negative_prompt"]) for b in bodies) == [
        (1, "blurry, text"), (2, "blurry, text")]
    refused = kie4o(server, tmp_path, "a fox", "--seed", "3")
    assert refused.returncode == 2 and "--seed: 4o takes no seed; these do:" in refused.stderr
