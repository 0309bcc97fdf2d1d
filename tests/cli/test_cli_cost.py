"""``kie4o`` and what a run costs (issue #22 "Know the cost"), run as a user runs it: the
installed command in a real process against a mock server.

Every paid request has an estimate before it is sent (``--dry-run``, the gates) and a cost
after (each task's line, the history); an unknown price and a run over the credit limit ask
for ``--yes``; ``--max-credits`` refuses even with it; a demo run is never asked or refused
on cost; KIE's reported consumption replaces the estimate."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_subprocess import env_for

from kie_jupyter.api.prices import package_prices
from kie_jupyter.api.registry import MODELS
from kie_jupyter.cli import CONFIRM_OVER_CREDITS
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.spend import REPORTED_SOURCE
from kie_jupyter.testing import MockKieServer

KIE4O = Path(sys.executable).with_name("kie4o")

#: A dry run's price line for one request: ``# ≈ 6 credits (≈ $0.03)``.
PRICE_LINE = re.compile(r"^# ≈ ([\d,.]+) credits \(≈ \$([\d,.]+)\)$")


@pytest.fixture
def server():
    with MockKieServer(api_key="test-key", duration=0.2, rate_limit=None) as mock:
        yield mock


@pytest.fixture
def reporting():
    """A fake KIE whose Market records report ``creditsConsumed`` (3 per task)."""
    with MockKieServer(api_key="test-key", duration=0.2, rate_limit=None,
                       report_credits=True, cost_per_image=3) as mock:
        yield mock


def kie4o(server: MockKieServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KIE4O), *args, "--save", str(tmp_path / "out")],
                          env=env_for(server, tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def history(tmp_path: Path) -> HistoryStore:
    """The run's history: ``env_for`` points ``KIE_OUTPUT_DIR`` at ``tmp_path/kie_home``."""
    return HistoryStore(tmp_path / "kie_home")


def nothing_sent(server: MockKieServer) -> bool:
    """No task was created and nothing was uploaded (a credit check may still be there)."""
    return not any(r.endpoint in ("generate", "createTask", "kontext-generate")
                   or r.endpoint.startswith("file-") for r in server.requests)


def one_line(text: str) -> bool:
    return text.startswith("kie4o: ") and text.count("\n") == 1


def prices_file(tmp_path: Path, rows: list[dict], name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"rows": rows}))
    return path


def task_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


# -- the estimate before sending ---------------------------------------------------------------


def test_a_dry_run_prices_every_request_from_the_table_and_totals_them(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "--model", "4o,nano-banana-pro", "-s", "1:1,3:2",
                 "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = package_prices()
    seen, total, total_usd = [], 0.0, 0.0
    for n, line in enumerate(lines):
        labels = re.fullmatch(r"# (\S+) / (\S+)", line)
        if labels is None:
            continue
        model, size = labels.groups()
        price = PRICE_LINE.match(lines[n + 1])
        assert price is not None, f"no price under {line!r}: {lines[n + 1]!r}"
        expected = table.estimate({"model": model, "size": size, "prompt": "a fox"})
        assert expected.value is not None and expected.usd is not None
        assert float(price.group(1).replace(",", "")) == expected.value, line
        assert price.group(2) == f"{expected.usd:,.2f}", line
        assert lines[n + 2].startswith("POST ")
        seen.append((model, size))
        total += expected.value
        total_usd += expected.usd
    assert sorted(seen) == [("4o", "1:1"), ("4o", "3:2"), ("nano-banana-pro", "1:1"),
                            ("nano-banana-pro", "3:2")]
    # 4o: 6 credits a text-to-image request, $0.03 at the table's 0.005 USD a credit.
    assert lines.count("# ≈ 6 credits (≈ $0.03)") == 2
    assert total == 48
    assert (f"(dry run: 4 requests, 4 images, ≈ {total:g} credits (≈ ${total_usd:.2f}); "
            "nothing was sent)") in done.stdout
    assert nothing_sent(server) and not (tmp_path / "out").exists()


def test_a_dry_run_counts_every_image_of_a_4o_task(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "-n", "4", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "# ≈ 24 credits (≈ $0.12)" in done.stdout.splitlines()
    assert "(dry run: 1 request, 4 images, ≈ 24 credits (≈ $0.12); nothing was sent)" \
        in done.stdout


def test_a_dry_run_of_an_unknown_price_says_so_and_why(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "--model", "qwen-image", "--dry-run")
    assert done.returncode == 0, done.stderr  # a dry run asks nothing: it sends nothing
    assert "# cost unknown — " in done.stdout
    assert "per megapixel" in done.stdout  # the table's reason
    assert "cost unknown (qwen-image" in done.stdout
    assert nothing_sent(server)


# -- the gates ---------------------------------------------------------------------------------


def test_an_unknown_price_asks_for_yes_and_sends_nothing(server, tmp_path):
    refused = kie4o(server, tmp_path, "a fox", "--model", "qwen-image")
    assert refused.returncode == 2
    assert one_line(refused.stderr), refused.stderr
    assert "qwen-image" in refused.stderr and "unknown" in refused.stderr
    assert "--yes" in refused.stderr and "nothing was sent" in refused.stderr
    assert refused.stdout == ""
    assert server.requests_to("createTask") == [] and nothing_sent(server)
    assert not list((tmp_path / "out").glob("*"))  # no image written

    done = kie4o(server, tmp_path, "a fox", "--model", "qwen-image", "--yes")
    assert done.returncode == 0, done.stderr
    assert len(server.requests_to("createTask")) == 1
    (line,) = task_lines(done.stdout)
    assert "[cost unknown]" in line


def test_a_4o_edit_has_no_confirmed_price_and_asks_before_uploading(server, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "in.png")
    refused = kie4o(server, tmp_path, "make it blue", "--image", str(tmp_path / "in.png"))
    assert refused.returncode == 2
    assert one_line(refused.stderr), refused.stderr
    assert "4o edit" in refused.stderr and "unknown" in refused.stderr
    assert nothing_sent(server)  # not even the upload

    done = kie4o(server, tmp_path, "make it blue", "--image", str(tmp_path / "in.png"),
                 "--yes")
    assert done.returncode == 0, done.stderr
    assert len(server.requests_to("generate")) == 1


def test_a_run_estimated_over_the_credit_limit_asks_for_yes(server, tmp_path):
    # 60 credits an image: 4 images are 240, over kie4o's 200.
    prices = prices_file(tmp_path, [{"model": "4o", "when": {"mode": ["text"]}, "credits": 60,
                                     "source": "a test's own price"}])
    assert 4 * 60 > CONFIRM_OVER_CREDITS
    refused = kie4o(server, tmp_path, "a fox", "-n", "4", "--prices", str(prices))
    assert refused.returncode == 2
    assert one_line(refused.stderr), refused.stderr
    assert "≈ 240 credits" in refused.stderr
    assert f"{CONFIRM_OVER_CREDITS:g} credits" in refused.stderr
    assert "--yes" in refused.stderr and "nothing was sent" in refused.stderr
    assert nothing_sent(server)

    done = kie4o(server, tmp_path, "a fox", "-n", "4", "--prices", str(prices), "--yes")
    assert done.returncode == 0, done.stderr
    assert "[≈ 240 credits]" in done.stdout


def test_max_credits_refuses_a_run_over_it_even_with_yes(server, tmp_path):
    for extra in ((), ("--yes",)):
        refused = kie4o(server, tmp_path, "a fox", "-n", "4", "--max-credits", "5", *extra)
        assert refused.returncode == 2
        assert one_line(refused.stderr), refused.stderr
        assert "--max-credits 5" in refused.stderr and "≈ 24 credits" in refused.stderr
        assert "nothing was sent" in refused.stderr
        assert nothing_sent(server)

    done = kie4o(server, tmp_path, "a fox", "-n", "4", "--max-credits", "24")  # just fits
    assert done.returncode == 0, done.stderr
    assert len(server.requests_to("generate")) == 1


def test_max_credits_refuses_an_unknown_price_even_with_yes(server, tmp_path):
    refused = kie4o(server, tmp_path, "a fox", "--model", "qwen-image", "--max-credits", "100",
                    "--yes")
    assert refused.returncode == 2
    assert one_line(refused.stderr), refused.stderr
    assert "--max-credits 100" in refused.stderr and "qwen-image" in refused.stderr
    assert "unknown" in refused.stderr
    assert nothing_sent(server)


def test_max_credits_holds_a_whole_sweep(server, tmp_path):
    # Two 4o tasks (12) fit 12; with a nano-banana-pro task (18) the sweep does not fit 20.
    refused = kie4o(server, tmp_path, "a fox", "--model", "4o,nano-banana-pro",
                    "--max-credits", "20", "--yes")
    assert refused.returncode == 2 and one_line(refused.stderr), refused.stderr
    assert "2 tasks, 2 images, ≈ 24 credits" in refused.stderr
    assert nothing_sent(server)
    done = kie4o(server, tmp_path, "a {red|blue} fox", "--max-credits", "12")
    assert done.returncode == 0, done.stderr
    assert len(server.requests_to("generate")) == 2


def test_a_bad_max_credits_is_one_line(server, tmp_path):
    for value in ("lots", "-1"):
        refused = kie4o(server, tmp_path, "a fox", "--max-credits", value)
        assert refused.returncode == 2 and one_line(refused.stderr), refused.stderr
        assert "--max-credits" in refused.stderr
    assert nothing_sent(server)


# -- the cost after ----------------------------------------------------------------------------


def test_each_task_line_shows_its_estimate_and_the_history_records_it(server, tmp_path):
    done = kie4o(server, tmp_path, "a {red|blue} fox")
    assert done.returncode == 0, done.stderr
    lines = task_lines(done.stdout)
    assert len(lines) == 2
    assert all("[≈ 6 credits]" in line for line in lines), lines
    entries = history(tmp_path).entries()
    assert len(entries) == 2
    for entry in entries:
        assert entry.cost is not None, entry
        assert entry.cost["value"] == 6 and entry.cost["unit"] == "credits"
        assert entry.cost["basis"] == "estimate" and entry.cost["demo"] is False
        assert "kie.ai/pricing" in entry.cost["source"]
        assert entry.cost["usd"] == pytest.approx(0.03)


def test_a_reported_consumption_replaces_the_estimate(reporting, tmp_path):
    estimate = package_prices().estimate({"model": "nano-banana-2-lite"})
    assert estimate.value == 4  # the table's figure, which KIE's 3 replaces
    done = kie4o(reporting, tmp_path, "a fox", "--model", "nano-banana-2-lite")
    assert done.returncode == 0, done.stderr
    (line,) = task_lines(done.stdout)
    assert "[3 credits]" in line and "≈" not in line
    (entry,) = history(tmp_path).entries()
    assert entry.cost is not None
    assert entry.cost["value"] == 3 and entry.cost["basis"] == "reported"
    assert entry.cost["source"] == REPORTED_SOURCE and entry.cost["demo"] is False


def test_a_task_kie_failed_keeps_its_estimate(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox [mock:fail]", "--model", "nano-banana-2-lite")
    assert done.returncode == 1, done.stderr
    (line,) = task_lines(done.stdout)
    assert "[≈ 4 credits]" in line
    (entry,) = history(tmp_path).entries()
    assert entry.status == "failed" and entry.cost is not None
    assert entry.cost["value"] == 4 and entry.cost["basis"] == "estimate"
    assert "not documented" in entry.cost["source"]


def test_a_batch_run_again_asks_nothing_for_lines_already_done(server, tmp_path):
    batch = tmp_path / "b.txt"
    batch.write_text("a fox\nan owl\n")
    first = kie4o(server, tmp_path, "--batch", str(batch), "--model", "qwen-image", "--yes")
    assert first.returncode == 0, first.stderr
    again = kie4o(server, tmp_path, "--batch", str(batch), "--model", "qwen-image")
    assert again.returncode == 0, again.stderr  # nothing new to send: nothing to confirm
    assert "2 skipped" in again.stdout
    assert len(server.requests_to("createTask")) == 2


def test_a_history_records_the_cost_of_every_task_of_a_mixed_run(reporting, tmp_path):
    done = kie4o(reporting, tmp_path, "a fox", "--model", "4o,nano-banana-2-lite,qwen-image",
                 "--yes")
    assert done.returncode == 0, done.stderr
    costs = {e.model: e.cost for e in history(tmp_path).entries()}
    assert set(costs) == {"4o", "nano-banana-2-lite", "qwen-image"}
    assert costs["4o"] is not None and costs["4o"]["value"] == 6
    assert costs["4o"]["basis"] == "estimate"
    # The Market models' records report what KIE consumed: that is the cost, even where the
    # table has no price.
    assert costs["nano-banana-2-lite"] is not None
    assert costs["nano-banana-2-lite"]["value"] == 3
    assert costs["qwen-image"] is not None and costs["qwen-image"]["value"] == 3
    assert costs["qwen-image"]["basis"] == "reported"


# -- the price table ---------------------------------------------------------------------------


def test_a_prices_file_changes_the_estimate(server, tmp_path):
    prices = prices_file(tmp_path, [{"model": "4o", "when": {"mode": ["text"]}, "credits": 1,
                                     "source": "a test's own price"}])
    done = kie4o(server, tmp_path, "a fox", "-n", "4", "--dry-run", "--prices", str(prices))
    assert done.returncode == 0, done.stderr
    assert "# ≈ 4 credits (≈ $0.02)" in done.stdout.splitlines()
    assert "≈ 24 credits" not in done.stdout
    assert "(dry run: 1 request, 4 images, ≈ 4 credits (≈ $0.02); nothing was sent)" \
        in done.stdout
    # The file changes this run only.
    plain = kie4o(server, tmp_path, "a fox", "-n", "4", "--dry-run")
    assert "≈ 24 credits" in plain.stdout


def test_kie_prices_in_the_environment_is_the_default_file(server, tmp_path):
    prices = prices_file(tmp_path, [{"model": "4o", "when": {"mode": ["text"]}, "credits": 2,
                                     "source": "a test's own price"}])
    env = {**env_for(server, tmp_path), "KIE_PRICES": str(prices)}
    done = subprocess.run([str(KIE4O), "a fox", "--dry-run", "--save", str(tmp_path / "out")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "# ≈ 2 credits (≈ $0.01)" in done.stdout.splitlines()


@pytest.mark.parametrize("content, message", [
    ({"rows": [{"model": "4o", "credits": 1}]}, "needs a source"),
    ({"rows": [{"model": "4o", "source": "x"}]}, "needs credits"),
    ({"rows": [{"model": "4o", "credits": -1, "source": "x"}]}, "not a number"),
    ("{not json", "JSON"),
])
def test_a_bad_prices_file_is_one_line_and_sends_nothing(server, tmp_path, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    refused = kie4o(server, tmp_path, "a fox", "--prices", str(path))
    assert refused.returncode == 2
    assert one_line(refused.stderr), refused.stderr
    assert "prices" in refused.stderr and str(path) in refused.stderr
    assert message in refused.stderr
    assert nothing_sent(server)


def test_a_missing_prices_file_is_one_line(server, tmp_path):
    refused = kie4o(server, tmp_path, "a fox", "--prices", str(tmp_path / "nope.json"))
    assert refused.returncode == 2 and one_line(refused.stderr), refused.stderr
    assert "nope.json" in refused.stderr
    assert nothing_sent(server)


def test_show_prices_lists_every_model_with_its_source(server, tmp_path):
    done = kie4o(server, tmp_path, "--show-prices")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    rows = {line.split()[0] for line in out.splitlines()
            if line.strip() and not line.startswith(" ")}
    for model in MODELS:
        assert model in rows, f"{model} missing from --show-prices"
    assert "source:" in out
    assert "1 credit ≈ $0.005" in out
    assert "unknown" in out  # qwen-image's price
    assert server.requests == []


def test_show_prices_shows_a_files_row_and_where_it_came_from(server, tmp_path):
    prices = prices_file(tmp_path, [{"model": "4o", "when": {"mode": ["text"]}, "credits": 1,
                                     "source": "a test's own price"}])
    done = kie4o(server, tmp_path, "--show-prices", "--prices", str(prices))
    assert done.returncode == 0, done.stderr
    assert "a test's own price" in done.stdout and str(prices) in done.stdout
    four_o_text = [line for line in done.stdout.splitlines()
                   if line.startswith("4o ") and "mode text" in line]
    assert len(four_o_text) == 1 and "1 credits per image" in four_o_text[0]


# -- demo runs ---------------------------------------------------------------------------------


def test_a_demo_run_never_asks_about_cost_and_is_not_charged(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "--model", "qwen-image", "--demo")
    assert done.returncode == 0, done.stderr
    (line,) = task_lines(done.stdout)
    assert line.startswith("[demo] ")
    assert "not charged" in line
    assert server.requests == []  # the bundled demo server, not the live one
    (entry,) = history(tmp_path).entries()
    assert entry.demo and entry.cost is not None and entry.cost["demo"] is True


def test_a_demo_run_is_not_held_to_max_credits(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "-n", "4", "--max-credits", "5", "--demo")
    assert done.returncode == 0, done.stderr
    (line,) = task_lines(done.stdout)
    assert "[≈ 24 credits (demo: not charged)]" in line


def test_a_demo_dry_run_says_it_is_not_charged(server, tmp_path):
    done = kie4o(server, tmp_path, "a fox", "--demo", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "# ≈ 6 credits (demo: not charged)" in done.stdout.splitlines()
    assert "≈ 6 credits — demo: not charged; nothing was sent" in done.stdout
    assert "$" not in done.stdout  # a demo run costs no dollars


def test_a_tool_runs_from_the_shell_with_no_size_given(server, tmp_path):
    """``kie4o --model topaz-upscale -i FILE`` (the CLI's follow-up): no size is sent to a
    model that has none, 4o still gets 1:1 by default, and the image is upscaled."""
    from kie_jupyter.fakeapi.images import render_png

    source = tmp_path / "fox.png"
    source.write_bytes(render_png("a fox", "3:2", 0, 300))
    done = kie4o(server, tmp_path, "--model", "topaz-upscale", "-i", str(source),
                 "--param", "upscale_factor=4", "--yes")
    assert done.returncode == 0, done.stderr
    (body,) = [r.json for r in server.requests_to("createTask")]
    assert body["model"] == "topaz/image-upscale" and body["input"]["upscale_factor"] == "4"
    assert "aspect_ratio" not in body["input"] and "image_size" not in body["input"]
    (made,) = (tmp_path / "out").glob("*.png")
    from PIL import Image

    with Image.open(made) as im:
        assert im.size == (1200, 800)
    dry = kie4o(server, tmp_path, "a fox", "--dry-run")
    assert '"size": "1:1"' in dry.stdout
