"""What it costs, through the magic in a real shell: the estimate before paying, the gates,
the budget, the cost after (KIE's figure where it reports one), and the line magics."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from kie_jupyter.api.prices import package_prices, use_prices
from kie_jupyter.api.registry import MODELS
from kie_jupyter.testing import MockKieServer

from magic_helpers import KEY, cell, sent


def text_of(cap) -> str:
    return "\n".join([cap.stdout, *(o.data.get("text/plain", "") for o in cap.outputs)])


def html_of(cap) -> str:
    return "\n".join(o.data.get("text/html", "") for o in cap.outputs)


@pytest.fixture(autouse=True)
def _package_prices():
    use_prices(None)
    yield
    use_prices(None)


@pytest.fixture()
def reporting(monkeypatch, tmp_path):
    """A fake KIE whose Market records report ``creditsConsumed`` (3 per task)."""
    with MockKieServer(api_key=KEY, duration=0.3, report_credits=True,
                       cost_per_image=3) as srv:
        monkeypatch.setenv("KIE_API_KEY", KEY)
        monkeypatch.setenv("KIE_BASE_URL", srv.url)
        monkeypatch.setenv("KIE_UPLOAD_URL", srv.url)
        monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
        yield srv


def estimate(params) -> float:
    value = package_prices().estimate(params).value
    assert value is not None
    return value


def test_the_dry_run_estimate_is_the_table_for_every_model_with_a_known_price(shell, server):
    for name, spec in MODELS.items():
        resolutions = spec.resolutions or (None,)
        for resolution in resolutions:
            option = f" --resolution {resolution}" if resolution else ""
            if spec.text is None:
                continue
            cap = cell(shell, f"%%kie4o --dry-run --model {name}{option}\na lighthouse")
            text = text_of(cap)
            expected = package_prices().estimate({"model": name, "resolution": resolution,
                                                  **({"quality": spec.text.quality.default}
                                                     if spec.text.quality else {})})
            assert f"# {expected.with_usd()}" in text, (name, resolution, text[:300])
            if expected.value is None:
                assert "cost unknown" in text
    assert not server.requests


def test_a_sweep_total_is_the_sum_of_its_requests(shell, server):
    cap = cell(shell, "%%kie4o --dry-run --model 4o,nano-banana-pro,seedream-4.5 -s 1:1,3:2 "
                      "-n 2\na {red|blue} fox")
    text = text_of(cap)
    per_model = {name: estimate({"model": name})
                 for name in ("4o", "nano-banana-pro", "seedream-4.5")}
    # Beside models that make one image per task, 4o runs one task per image too: a
    # ``variant`` dimension of 2, so 2 prompts × 2 sizes × 2 variants per model.
    total = sum(8 * price for price in per_model.values())
    assert f"24 requests, 24 images, ≈ {total:g} credits" in text.splitlines()[-1]
    assert text.count("POST ") == 24
    assert not server.requests


def test_an_unknown_price_asks_first_and_sends_nothing(shell, server):
    with pytest.raises(UsageError) as refused:
        cell(shell, "%%kie4o --model qwen-image\na lighthouse")
    message = str(refused.value)
    assert "qwen-image" in message and "unknown" in message and "--yes" in message
    assert "\n" not in message
    assert not sent(server, "createTask")
    cap = cell(shell, "%%kie4o --model qwen-image --yes -o t\na lighthouse")
    task = shell.user_ns["t"]
    assert task.status.value == "success"
    assert task.cost.value is None and "cost unknown" in html_of(cap)


def test_a_sweep_over_the_credit_gate_asks_with_the_figures(shell, server):
    cell(shell, "%config Kie4o.confirm_over_credits = 20")
    with pytest.raises(UsageError, match=r"4 tasks, 4 images, ≈ 24 credits \(≈ \$0\.12\), "
                                         r"more than %config Kie4o.confirm_over_credits = 20"):
        cell(shell, "%%kie4o -s 1:1,3:2\na {red|blue} fox")
    assert not sent(server, "generate")
    cell(shell, "%%kie4o -s 1:1,3:2 --yes\na {red|blue} fox")
    assert len(sent(server, "generate")) == 4


def test_max_credits_refuses_even_with_yes(shell, server):
    with pytest.raises(UsageError, match=r"--max-credits 10; this needs 1 task, 4 images, "
                                         r"≈ 24 credits"):
        cell(shell, "%%kie4o -n 4 --max-credits 10 --yes\na fox")
    with pytest.raises(UsageError, match="qwen-image is unknown"):
        cell(shell, "%%kie4o --model qwen-image --max-credits 100 --yes\na fox")
    with pytest.raises(UsageError, match="--max-credits"):
        cell(shell, "%%kie4o --max-credits lots\na fox")
    assert not server.requests
    cell(shell, "%%kie4o -n 4 --max-credits 24\na fox")
    assert len(sent(server, "generate")) == 1


def test_the_session_budget_holds_across_cells(shell, server):
    cell(shell, "%config Kie4o.budget = 20")
    cell(shell, "%%kie4o -n 2 -o first\na fox")  # 12 of 20
    with pytest.raises(UsageError) as refused:
        cell(shell, "%%kie4o -n 2\nanother fox")  # 12 more: over
    message = str(refused.value)
    assert "%config Kie4o.budget: 8 credits left" in message and "≈ 12 credits" in message
    assert len(sent(server, "generate")) == 1
    cell(shell, "%%kie4o\na third fox")  # 6: fits
    assert len(sent(server, "generate")) == 2


def test_demo_mode_shows_what_it_would_cost_and_never_asks(shell, server):
    cell(shell, "%kie4o demo")
    try:
        cell(shell, "%config Kie4o.budget = 1")
        cap = cell(shell, "%%kie4o --model qwen-image -o q\na fox")  # unknown, over budget
        assert shell.user_ns["q"].status.value == "success"
        cap = cell(shell, "%%kie4o -n 2 -o t\na fox")
        task = shell.user_ns["t"]
        assert task.cost.demo and task.cost.value == 12
        assert "≈ 12 credits · not charged" in html_of(cap)
    finally:
        cell(shell, "%kie4o demo off")
    assert not server.requests


def test_the_card_and_history_show_the_estimate_then_spend_sums_it(shell, server):
    cap = cell(shell, "%%kie4o -n 2 -o t\na fox")
    assert "≈ 12 credits" in html_of(cap)
    task = shell.user_ns["t"]
    assert task.cost.estimated and task.cost.value == 12 and task.cost.unit == "credits"
    history = text_of(cell(shell, "%kie4o history"))
    assert "≈ 12 credits" in history
    spend = text_of(cell(shell, "%kie4o spend"))
    assert "≈ 12 credits (1 task)" in spend


def test_a_reported_consumption_replaces_the_estimate_everywhere(shell, reporting):
    cap = cell(shell, "%%kie4o --model nano-banana-2-lite -o t\na fox")
    task = shell.user_ns["t"]
    assert task.cost.basis == "reported" and task.cost.value == 3
    assert str(task.cost) == "3 credits"
    card = html_of(cap)
    assert ">3 credits<" in card and "≈ 3" not in card
    recorded = task.history.get(task.task_id).cost
    assert recorded["basis"] == "reported" and recorded["value"] == 3
    spend = text_of(cell(shell, "%kie4o spend --by model"))
    assert "nano-banana-2-lite" in spend and "3 credits (1 task)" in spend
    assert "≈ 3" not in spend


def test_spend_groups_by_day_and_filters_since(shell, server):
    cell(shell, "%%kie4o\na fox")
    cell(shell, "%%kie4o --model nano-banana-2-lite\na fox")
    by_day = text_of(cell(shell, "%kie4o spend --by day"))
    assert "≈ 10 credits (2 tasks)" in by_day
    later = text_of(cell(shell, "%kie4o spend --since 2999-01-01"))
    assert "no live tasks since 2999-01-01" in later
    with pytest.raises(UsageError, match="--since: 'yesterday' is not a date"):
        cell(shell, "%kie4o spend --since yesterday")


def test_prices_shows_the_table_with_sources_and_a_user_file_overrides_it(shell, server,
                                                                         tmp_path, caplog):
    table = text_of(cell(shell, "%kie4o prices"))
    for name in MODELS:
        assert name in table
    assert "source" in table and "2026-12-04" in table and "unknown" in table
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"rows": [
        {"model": "qwen-image", "credits": 2, "source": "my invoice", "read": "2026-12-01"}]}))
    cell(shell, f"%config Kie4o.prices = '{mine}'")
    table = text_of(cell(shell, "%kie4o prices"))
    assert "my invoice" in table
    cap = cell(shell, "%%kie4o --dry-run --model qwen-image\na fox")
    assert "# ≈ 2 credits" in text_of(cap)
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [{"model": "4o", "credits": -1, "source": "x"}]}')
    cell(shell, f"%config Kie4o.prices = '{bad}'")  # IPython logs the refusal
    assert "row 1: credits -1 is not a number" in caplog.text
    # The bad file changed nothing: the good one is still in use.
    assert "# ≈ 2 credits" in text_of(cell(shell, "%%kie4o --dry-run --model qwen-image\nx"))


def test_credits_says_what_the_balance_buys(shell, server):
    text = text_of(cell(shell, "%kie4o credits"))
    assert "100 credits — ≈ 16 images of 4o at 6 credits each" in text


def test_a_bad_price_file_in_the_config_warns_and_the_extension_loads(server, tmp_path):
    from kie_jupyter.testing.shell import TestingShell

    sh = TestingShell.instance()
    sh.config.pop("Kie4o", None)
    sh.config.Kie4o.prices = str(tmp_path / "missing.json")
    try:
        with capture_output() as cap:
            result = sh.run_cell("%load_ext kie_jupyter")
        assert result.error_in_exec is None
        assert "kie4o: prices: cannot read" in cap.stderr
        cap = cell(sh, "%%kie4o --dry-run\na fox")
        assert "# ≈ 6 credits" in text_of(cap)  # KIE's table from the package
    finally:
        sh.config.pop("Kie4o", None)
        with capture_output():
            sh.run_cell("%unload_ext kie_jupyter")


def test_spend_never_shows_an_unknown_price_as_a_figure(shell, server):
    cell(shell, "%%kie4o --model qwen-image --yes\na fox")
    assert "unknown (1 task; 1 of unknown price)" in text_of(cell(shell, "%kie4o spend"))
    cell(shell, "%%kie4o\nan owl")
    assert "≈ 6 credits + unknown (2 tasks; 1 of unknown price)" in text_of(
        cell(shell, "%kie4o spend"))


def test_demo_mode_never_spends_its_pretend_balance(shell, server):
    cell(shell, "%kie4o demo")
    try:
        before = text_of(cell(shell, "%kie4o credits"))
        cell(shell, "%%kie4o -n 4\na fox")
        assert text_of(cell(shell, "%kie4o credits")) == before
    finally:
        cell(shell, "%kie4o demo off")
