"""The price table: its rows and sources, matching, user files, and KIE's reported figures."""

from __future__ import annotations

import json

import pytest

from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.api.kontext import KontextRecord
from kie_jupyter.api.market import MarketRecord
from kie_jupyter.api.models import TaskRecord
from kie_jupyter.api.prices import (
    Cost,
    active_prices,
    load_prices,
    package_prices,
    use_prices,
)
from kie_jupyter.api.registry import MODELS


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    monkeypatch.delenv("KIE_PRICES", raising=False)
    use_prices(None)
    yield
    use_prices(None)


def test_every_registered_model_has_rows_each_with_a_source_and_a_date():
    table = package_prices()
    assert {row.model for row in table.rows} == set(MODELS)
    for row in table.rows:
        assert row.source.startswith("https://kie.ai/pricing"), row
        assert row.read in ("2026-12-04", "2026-12-05"), row
        assert row.credits is None or row.credits > 0  # unknown is None, never 0
    assert table.usd_per_credit == 0.005 and "kie.ai/pricing" in table.usd_source


@pytest.mark.parametrize(("params", "credits"), [
    ({"model": "4o"}, 6),
    ({"variants": 4}, 24),  # 4o by default; per image
    ({"model": "4o", "files": ["https://x/a.png"]}, None),  # an edit: no confirmed price
    ({"model": "gpt-image-1.5", "quality": "medium"}, 4),
    ({"model": "gpt-image-1.5", "quality": "high", "files": ["u"]}, 22),
    ({"model": "nano-banana-2"}, 8),  # KIE's default resolution is 1K
    ({"model": "nano-banana-2", "resolution": "4K"}, 18),
    ({"model": "nano-banana-pro", "resolution": "2K"}, 18),
    ({"model": "nano-banana-pro", "resolution": "4K"}, 24),
    ({"model": "nano-banana-2-lite"}, 4),
    ({"model": "seedream-4.5", "quality": "high"}, 6.5),
    ({"model": "qwen-image"}, None),
    ({"model": "flux-2-pro", "resolution": "2K"}, 7),
    ({"model": "flux-2-pro", "files": ["u"]}, 5),  # edit, default 1K
    ({"model": "flux-2-pro", "resolution": "2K", "files": ["u"]}, 7),
    ({"model": "flux-2-flex"}, 14),
    ({"model": "flux-2-flex", "resolution": "2K", "files": ["u"]}, 24),
    ({"model": "seedream-3.0"}, 3.5),
    ({"model": "seedream-4.0", "resolution": "4K", "files": ["u"]}, 5),
    ({"model": "nano-banana", "files": ["u"]}, 4),
    ({"model": "z-image"}, 0.8),
    ({"model": "imagen-4-ultra"}, 12),
    ({"model": "recraft-remove-background", "files": ["u"]}, 1),
    ({"model": "recraft-crisp-upscale", "files": ["u"]}, 0.5),
    ({"model": "qwen-image-to-image", "files": ["u"]}, None),  # per megapixel
    ({"model": "imagen-4"}, 8),  # per request (one image: the page has no count)
    ({"model": "imagen-4-fast"}, 4),
    ({"model": "grok-imagine"}, None),  # per 2 images, or per generation with a switch
    ({"model": "grok-imagine", "files": ["u"]}, 4),  # per generation
    ({"model": "ideogram-character", "files": ["u"]}, None),  # by rendering_speed
    ({"model": "topaz-upscale", "files": ["u"]}, None),  # by output resolution
    ({"model": "ideogram-reframe", "files": ["u"]}, None),  # no row in KIE's feed
    ({"model": "flux-kontext-max"}, 10),
    ({"model": "no-such-model"}, None),
])
def test_estimates_follow_the_table(params, credits):
    cost = package_prices().estimate(params)
    assert cost.value == credits
    assert cost.basis == "estimate" and cost.unit == "credits"
    if credits is None:
        assert str(cost) == "cost unknown" and cost.usd is None
    else:
        assert str(cost).startswith("≈ ") and cost.usd == pytest.approx(credits * 0.005)


def test_a_user_file_overrides_a_row_and_adds_its_own(tmp_path):
    mine = tmp_path / "p.json"
    mine.write_text(json.dumps({"usd_per_credit": {"value": 0.004, "source": "my top-up"},
                                "rows": [
        {"model": "4o", "when": {"mode": "text"}, "credits": 5, "source": "contract"},
        {"model": "qwen-image", "when": {"size": ["1:1"]}, "credits": 4, "source": "mine"}]}))
    table = use_prices(mine)
    assert active_prices() == table
    assert table.estimate({"model": "4o"}).value == 5
    assert table.estimate({"model": "qwen-image", "size": "1:1"}).value == 4
    assert table.estimate({"model": "qwen-image", "size": "16:9"}).value is None
    assert table.estimate({"model": "4o"}).usd == pytest.approx(0.02)
    shown = "\n".join(table.lines())
    assert "contract" in shown and "my top-up" in shown
    # The package's 4o text row is replaced in what is shown, not listed twice.
    assert sum(1 for r in table.effective_rows() if r.model == "4o"
               and r.when.get("mode") == ("text",)) == 1


def test_toml_files_and_the_environment(tmp_path, monkeypatch):
    mine = tmp_path / "p.toml"
    mine.write_text('[[rows]]\nmodel = "qwen-image"\ncredits = 3\nsource = "toml"\n')
    monkeypatch.setenv("KIE_PRICES", str(mine))
    assert active_prices().estimate({"model": "qwen-image"}).value == 3


@pytest.mark.parametrize(("content", "message"), [
    ("{", "JSON"),
    ('{"rows": 3}', "rows: expected a list"),
    ('{"rows": [{"credits": 1, "source": "s"}]}', "row 1: needs a model name"),
    ('{"rows": [{"model": "4o", "source": "s"}]}', "needs credits"),
    ('{"rows": [{"model": "4o", "credits": "6", "source": "s"}]}', "is not a number"),
    ('{"rows": [{"model": "4o", "credits": 6}]}', "needs a source"),
    ('{"rows": [{"model": "4o", "credits": 6, "source": "s", "when": {"colour": "red"}}]}',
     "'colour' is not one of"),
    ('{"rows": []}', "nothing to use"),
])
def test_a_bad_file_is_one_line_naming_the_problem(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(KieUsageError, match=message) as refused:
        load_prices(bad)
    assert "\n" not in str(refused.value) and str(bad) in str(refused.value)
    with pytest.raises(KieUsageError, match="cannot read"):
        load_prices(tmp_path / "missing.json")


def test_a_cost_round_trips_and_says_what_it_is():
    reported = Cost(3.0, "reported", "KIE")
    assert str(reported) == "3 credits" and not reported.estimated
    assert Cost.from_dict(reported.to_dict()) == reported
    demo = Cost(6.0, demo=True, usd=0.03)
    assert str(demo) == "≈ 6 credits (demo: not charged)"
    assert demo.with_usd() == str(demo)  # no dollars for a demo task
    assert Cost(1240.0, usd=6.2).with_usd() == "≈ 1,240 credits (≈ $6.20)"
    for junk in (None, [], {"value": -1}, {"value": True}, {"value": float("nan")}):
        assert Cost.from_dict(junk) is None


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("creditsConsumed", 3, 3.0),
    ("creditsConsumed", "2.5", 2.5),
    ("consumeCredits", 0, 0.0),
    ("creditsConsumed", -1, None),
    ("creditsConsumed", True, None),
    ("creditsConsumed", "lots", None),
])
def test_records_read_what_kie_reports_it_consumed(field, value, expected):
    market = MarketRecord.from_api({"taskId": "t", "state": "fail", field: value})
    fouro = TaskRecord.from_api({"taskId": "t", field: value})
    kontext = KontextRecord.from_api({"taskId": "t", field: value})
    assert market.credits_consumed == fouro.credits_consumed == kontext.credits_consumed \
        == expected
    assert MarketRecord.from_api({"taskId": "t"}).credits_consumed is None


def test_a_user_row_wins_over_more_specific_package_rows(tmp_path):
    mine = tmp_path / "p.json"
    mine.write_text(json.dumps({"rows": [
        {"model": "4o", "credits": 5, "source": "contract"},
        {"model": "nano-banana-pro", "when": {"resolution": "default"}, "credits": 15,
         "source": "contract"}]}))
    table = use_prices(mine)
    assert table.estimate({"model": "4o"}).value == 5
    assert table.estimate({"model": "4o", "files": ["u"]}).value == 5  # covers edits too
    assert table.estimate({"model": "nano-banana-pro"}).value == 15
    assert table.estimate({"model": "nano-banana-pro", "resolution": "4K"}).value == 24
    shown = table.effective_rows()
    # The package's 4o rows are covered by the user's: only the user's is listed.
    assert [r.source for r in shown if r.model == "4o"] == ["contract"]
    assert len([r for r in shown if r.model == "nano-banana-pro"]) == 3


def test_a_toml_file_can_say_unknown(tmp_path):
    mine = tmp_path / "p.toml"
    mine.write_text('[[rows]]\nmodel = "4o"\ncredits = "unknown"\nsource = "not sure"\n')
    assert use_prices(mine).estimate({"model": "4o"}).value is None


def test_kie_prices_broken_after_it_was_read_keeps_the_last_good_table(tmp_path, monkeypatch):
    mine = tmp_path / "p.json"
    mine.write_text(json.dumps({"rows": [{"model": "qwen-image", "credits": 3,
                                          "source": "s"}]}))
    monkeypatch.setenv("KIE_PRICES", str(mine))
    assert active_prices().estimate({"model": "qwen-image"}).value == 3
    mine.write_text("{not json")  # a running task must not lose its cost
    assert active_prices().estimate({"model": "qwen-image"}).value == 3
    monkeypatch.setenv("KIE_PRICES", str(tmp_path / "other.json"))
    with pytest.raises(KieUsageError, match="cannot read"):
        active_prices()  # a new file that cannot be read is refused (before sending)


def test_the_4o_fallback_has_no_confirmed_price():
    cost = package_prices().estimate({"model": "4o", "fallback": True})
    assert cost.value is None and "fallback" in cost.what


def test_a_class_notice_is_one_clean_line_and_never_the_key():
    from kie_jupyter.api.client import KieClient, _Answer

    key = "sk-secret-token-123456"
    client = KieClient(key, base_url="http://127.0.0.1:9")
    try:
        raw = "you have used\n160 of 200 credits " + key[:10] + "\xad" + key[10:]
        notice = client._notice_of(_Answer(200, "OK", {"X-Kie-Class-Notice": raw}, b""))
        assert notice is not None and key not in notice and "\n" not in notice
        assert notice.startswith("you have used 160 of 200 credits")
        assert client._notice_of(_Answer(200, "OK", {}, b"")) is None
    finally:
        client.close()
