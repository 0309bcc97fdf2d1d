"""Credit budgets in the class proxy, over HTTP in front of the fake KIE server: the estimate
reserved before sending, settled by what KIE reports, given back on failure; student and class
budgets, allowed models, unknown prices, the 80 % notice, a reset period across a restart,
token expiry, the teacher page and CSV, and an old ledger migrated."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from datetime import datetime, timezone

import httpx
import pytest

from kie_jupyter.api.client import KieClient
from kie_jupyter.api.prices import package_prices
from kie_jupyter.classroom.budget import ClassPolicy, period_key
from kie_jupyter.classroom.costs import estimate_submit, params_of
from kie_jupyter.classroom.ledger import Ledger
from kie_jupyter.classroom.tokens import parse_student_token

from class_helpers import bearer, record, submit, wait_done

FOURO = "/api/v1/gpt4o-image/generate"
MARKET = "/api/v1/jobs/createTask"
KONTEXT = "/api/v1/flux/kontext/generate"
#: 4o text-to-image, per image, in the package's table.
FOURO_PRICE = package_prices().estimate({"model": "4o"}).value


def at(text: str) -> float:
    """A UTC time as a timestamp: ``at("2027-01-31 12:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def market(url: str, token: str, model: str, **fields) -> httpx.Response:
    return httpx.post(url + MARKET, headers=bearer(token), timeout=30,
                      json={"model": model, "input": {"prompt": "a fox", **fields}})


def market_record(url: str, token: str, task_id: str) -> httpx.Response:
    return httpx.get(url + "/api/v1/jobs/recordInfo", params={"taskId": task_id},
                     headers=bearer(token), timeout=30)


def sid(token: str) -> str:
    return parse_student_token(token).student_id


# -- a raw submit body → our parameters → an estimate ---------------------------------------


@pytest.mark.parametrize("path, body, params, credits", [
    (FOURO, {"prompt": "x", "size": "3:2", "nVariants": 4},
     {"model": "4o", "size": "3:2", "variants": 4, "files": []}, 4 * FOURO_PRICE),
    (FOURO, {"prompt": "x", "filesUrl": ["https://x/a.png"]},
     {"model": "4o", "size": "1:1", "variants": 1, "files": ["https://x/a.png"]}, None),
    (MARKET, {"model": "nano-banana-pro", "input": {"prompt": "x", "resolution": "4K"}},
     {"model": "nano-banana-pro", "resolution": "4K"}, 24),
    (MARKET, {"model": "nano-banana-2", "input": {"prompt": "x"}},
     {"model": "nano-banana-2", "resolution": None, "files": []}, 8),
    (MARKET, {"model": "nano-banana-2", "input": {"prompt": "x", "resolution": "2K",
                                                  "image_input": ["https://x/a.png"]}},
     {"model": "nano-banana-2", "resolution": "2K", "files": ["https://x/a.png"]}, 12),
    # An image-to-image id is an edit even with no image, and a left-out quality is the
    # default the extension sends (medium).
    (MARKET, {"model": "gpt-image/1.5-image-to-image", "input": {"prompt": "x"}},
     {"model": "gpt-image-1.5", "quality": "medium", "size": "3:2"}, 4),
    (MARKET, {"model": "gpt-image/1.5-text-to-image",
              "input": {"prompt": "x", "quality": "high"}},
     {"model": "gpt-image-1.5", "quality": "high", "files": []}, 22),
    (MARKET, {"model": "qwen/text-to-image", "input": {"prompt": "x",
                                                       "image_size": "landscape_16_9"}},
     {"model": "qwen-image", "size": "16:9"}, None),
    (KONTEXT, {"model": "flux-kontext-max", "prompt": "x", "aspectRatio": "16:9"},
     {"model": "flux-kontext-max", "size": "16:9", "files": []}, 10),
    (KONTEXT, {"model": "flux-kontext-pro", "prompt": "x", "inputImage": "https://x/a.png"},
     {"model": "flux-kontext-pro", "files": ["https://x/a.png"]}, None),
])
def test_a_raw_submit_body_is_priced_in_our_names(path, body, params, credits):
    got = params_of(path, body)
    assert {k: got[k] for k in params} == params
    assert estimate_submit(path, body).value == credits


def test_period_keys_are_utc_days_and_mondays():
    assert period_key(None, at("2027-01-31 23:59")) == ""
    assert period_key("daily", at("2027-01-31 23:59")) == "2027-01-31"
    assert period_key("weekly", at("2027-01-31 23:59")) == "2027-01-25"  # a Sunday
    assert period_key("weekly", at("2027-02-01 00:00")) == "2027-02-01"


# -- budgets and refusals, over HTTP ---------------------------------------------------------


def test_over_the_student_budget_is_refused_in_one_line_and_nothing_is_sent(make_proxy,
                                                                         ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=10))
    token = ledger.add_student("ada", 20)
    assert submit(proxy.url, token).status_code == 200
    assert ledger.student_named("ada").credits_used == FOURO_PRICE
    refused = submit(proxy.url, token, nVariants=4)
    assert refused.status_code == 402
    assert refused.json() == {"code": 402, "data": None, "classProxy": True, "msg": (
        "class budget: this request needs ≈ 24 credits; you have 4 of 10 left — ask your "
        "teacher")}
    assert len(kie.requests_to("generate")) == 1  # the refused one never reached KIE
    ada = ledger.student_named("ada")
    assert (ada.used, ada.credits_used) == (1, FOURO_PRICE)  # nothing reserved
    # The teacher adds credits: the same request goes through.
    ledger.add_credits(ada.id, 20)
    assert submit(proxy.url, token, nVariants=4).status_code == 200
    assert ledger.student_named("ada").credits_used == 5 * FOURO_PRICE


def test_a_student_s_own_budget_wins_over_the_class_default(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=100))
    token = ledger.add_student("ada", 20, credits=5)
    refused = submit(proxy.url, token)
    assert refused.json()["msg"] == ("class budget: this request needs ≈ 6 credits; you have "
                                     "5 of 5 left — ask your teacher")
    assert not kie.requests_to("generate")


def test_the_class_budget_holds_for_all_students_together(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(class_credits=15))
    ada, bob = ledger.add_student("ada", 20), ledger.add_student("bob", 20)
    assert submit(proxy.url, ada).status_code == 200
    assert submit(proxy.url, bob).status_code == 200
    refused = submit(proxy.url, ada)
    assert refused.status_code == 402 and refused.json()["msg"] == (
        "class budget: this request needs ≈ 6 credits; the class has 3 of 15 left — ask your "
        "teacher")
    assert len(kie.requests_to("generate")) == 2
    assert ledger.class_credits_used() == 2 * FOURO_PRICE


def test_a_model_not_allowed_is_refused_naming_it_and_the_allowed_ones(make_proxy, ledger,
                                                                      kie):
    proxy = make_proxy(policy=ClassPolicy(models=("4o", "nano-banana-2-lite")))
    ada, bob = ledger.add_student("ada", 5), ledger.add_student("bob", 5)
    refused = market(proxy.url, ada, "nano-banana-pro")
    assert refused.status_code == 403 and refused.json()["msg"] == (
        "nano-banana-pro is not allowed in this class (allowed: 4o, nano-banana-2-lite) — ask "
        "your teacher (nothing was charged)")
    assert market(proxy.url, ada, "nano-banana-2-lite").json()["code"] == 200
    # A student's own list is used instead of the class's.
    ledger.set_models(sid(bob), ["nano-banana-pro"])
    assert market(proxy.url, bob, "nano-banana-pro").json()["code"] == 200
    assert submit(proxy.url, bob).json()["msg"].startswith("4o is not allowed in this class "
                                                           "(allowed: nano-banana-pro)")
    assert [r.json["model"] for r in kie.requests_to("createTask")] == [
        "nano-banana-2-lite", "nano-banana-pro"]
    assert ledger.student_named("ada").used == 1 and ledger.student_named("bob").used == 1


def test_an_unknown_price_is_refused_only_under_a_credit_budget(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(class_credits=500))
    token = ledger.add_student("ada", 5)
    refused = market(proxy.url, token, "qwen/text-to-image")
    assert refused.status_code == 402 and refused.json()["msg"] == (
        "the class's budget is in credits and the price of qwen-image is unknown — ask "
        "your teacher")
    edit = submit(proxy.url, token, filesUrl=["https://example.com/a.png"])
    assert "the price of 4o (edit) is unknown" in edit.json()["msg"]
    assert not kie.requests_to("createTask") and not kie.requests_to("generate")
    assert ledger.student_named("ada").used == 0
    # With no credit budget it goes, counted in images, its credits unknown.
    ledger.set_policy(ClassPolicy())
    made = market(proxy.url, token, "qwen/text-to-image")
    assert made.json()["code"] == 200
    row = ledger.task(made.json()["data"]["taskId"])
    assert (row.model, row.credits) == ("qwen-image", None)


def test_reported_credits_replace_the_estimate(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=100))
    token = ledger.add_student("ada", 5)
    made = market(proxy.url, token, "nano-banana-2")
    task_id = made.json()["data"]["taskId"]
    assert ledger.task(task_id).credits == 8 and ledger.student_named("ada").credits_used == 8
    reported = {"taskId": task_id, "model": "nano-banana-2", "state": "success",
                "resultJson": json.dumps({"resultUrls": ["https://x/1.png"]}),
                "creditsConsumed": 3}
    kie.add_fault("recordInfo", body=json.dumps({"code": 200, "msg": "success",
                                                 "data": reported}).encode(),
                  content_type="application/json")
    assert market_record(proxy.url, token, task_id).json()["data"]["creditsConsumed"] == 3
    row = ledger.task(task_id)
    assert (row.state, row.credits, row.credits_basis) == ("success", 3, "reported")
    assert ledger.student_named("ada").credits_used == 3
    market_record(proxy.url, token, task_id)  # the real record now: settled once only
    assert ledger.student_named("ada").credits_used == 3


def test_a_task_that_failed_at_kie_gives_its_credits_back_once(make_proxy, ledger):
    proxy = make_proxy(policy=ClassPolicy(student_credits=50))
    token = ledger.add_student("ada", 5)
    task_id = submit(proxy.url, token, "a cat [mock:fail]", nVariants=2).json()["data"]["taskId"]
    assert ledger.student_named("ada").credits_used == 2 * FOURO_PRICE
    assert wait_done(proxy.url, token, task_id)["successFlag"] != 1
    ada = ledger.student_named("ada")
    assert (ada.used, ada.credits_used) == (0, 0)
    record(proxy.url, token, task_id)
    assert ledger.student_named("ada").credits_used == 0
    assert ledger.task(task_id).state == "failed"


def test_the_80_percent_notice_rides_on_the_successful_submit(make_proxy, ledger):
    proxy = make_proxy(policy=ClassPolicy(student_credits=14))
    token = ledger.add_student("ada", 5)
    first = submit(proxy.url, token)
    assert "x-kie-class-notice" not in first.headers  # 6 of 14
    second = submit(proxy.url, token)
    assert second.status_code == 200
    assert second.headers["X-Kie-Class-Notice"] == "you have used 12 of 14 credits"
    assert second.headers["X-Kie-Class-Notice"].isascii()


def test_me_and_credit_report_credits_when_the_class_counts_them(make_proxy, ledger):
    proxy = make_proxy(policy=ClassPolicy(student_credits=200, class_credits=1000,
                                          reset="weekly"))
    token = ledger.add_student("ada", 20, expires="2099-12-31")
    submit(proxy.url, token, nVariants=2)
    me = httpx.get(proxy.url + "/class/me", headers=bearer(token)).json()["data"]
    assert {k: me[k] for k in ("student", "quota", "used", "remaining", "paused")} == {
        "student": "ada", "quota": 20, "used": 2, "remaining": 18, "paused": False}
    assert (me["credits"], me["creditsUsed"], me["creditsRemaining"]) == (200, 12, 188)
    assert (me["classCredits"], me["classCreditsUsed"]) == (1000, 12)
    assert (me["expires"], me["reset"], me["models"]) == ("2099-12-31", "weekly", None)
    credit = httpx.get(proxy.url + "/api/v1/chat/credit", headers=bearer(token)).json()
    assert credit["data"] == {"credits": 188, "images": 18, "budget": 200, "used": 12,
                              "unit": "class credits"}
    with KieClient(api_key=token, base_url=proxy.url) as client:
        assert client.credits() == 188  # the extension's client reads the credits left


def test_a_reset_period_survives_a_restart_and_is_not_skipped(make_proxy, tmp_path):
    now = [at("2027-01-31 10:00")]
    path = tmp_path / "reset.db"
    book = Ledger(path, clock=lambda: now[0])
    token = book.add_student("ada", 3)
    policy = ClassPolicy(student_credits=20, reset="daily")
    first = make_proxy(book=book, policy=policy)
    assert submit(first.url, token).status_code == 200
    first.stop()
    book.close()
    # Restarted the same day: nothing is reset early.
    now[0] = at("2027-01-31 23:59")
    book = Ledger(path, clock=lambda: now[0])
    second = make_proxy(book=book, policy=policy)
    assert book.student_named("ada").credits_used == FOURO_PRICE
    assert submit(second.url, token).status_code == 200
    second.stop()
    book.close()
    # Down across midnight (UTC): the reset is made on the way up, once.
    now[0] = at("2027-02-01 08:00")
    book = Ledger(path, clock=lambda: now[0])
    third = make_proxy(book=book, policy=policy)
    ada = book.student_named("ada")
    assert (ada.used, ada.credits_used) == (0, 0)
    assert json.loads(book.setting("last_reset"))["period"] == "daily:2027-02-01"
    assert submit(third.url, token).status_code == 200
    assert book.student_named("ada").credits_used == FOURO_PRICE
    # ...and while it runs: the next midnight resets at the next request.
    now[0] = at("2027-02-02 00:01")
    me = httpx.get(third.url + "/class/me", headers=bearer(token)).json()["data"]
    assert (me["used"], me["creditsUsed"]) == (0, 0)
    book.close()


def test_a_task_of_an_earlier_period_gives_nothing_back_to_this_one(tmp_path):
    now = [at("2027-01-31 10:00")]
    book = Ledger(tmp_path / "c.db", clock=lambda: now[0])
    book.set_policy(ClassPolicy(student_credits=20, reset="daily"))
    student = sid(book.add_student("ada", 5))
    assert book.reserve(student, 1, 6.0)
    book.record_task("t1", student, FOURO, 1, "a fox", model="4o", credits=6.0)
    now[0] = at("2027-02-01 10:00")
    assert book.roll_period()
    assert book.reserve(student, 1, 6.0)
    assert book.task_failed("t1")  # paid yesterday: today's use stays
    assert (book.student(student).used, book.student(student).credits_used) == (1, 6.0)
    book.close()


def test_an_expired_token_is_refused_in_one_line(make_proxy, tmp_path, kie):
    now = [at("2027-01-31 23:00")]
    book = Ledger(tmp_path / "c.db", clock=lambda: now[0])
    token = book.add_student("ada", 5, expires="2027-01-31")
    proxy = make_proxy(book=book)
    assert submit(proxy.url, token).status_code == 200  # the last day works
    now[0] = at("2027-02-01 00:00")
    for _ in range(12):  # a valid but expired token locks out no one
        refused = submit(proxy.url, token)
        assert refused.status_code == 401
        assert refused.json()["msg"] == ("this class token expired on 2027-01-31 — ask your "
                                         "teacher")
    assert len(kie.requests_to("generate")) == 1
    book.set_expires(sid(token), "2027-03-01")
    assert submit(proxy.url, token).status_code == 200
    book.close()


def test_credits_are_never_spent_twice_by_requests_at_once(ledger):
    import threading

    ledger.set_policy(ClassPolicy(class_credits=60))
    student = sid(ledger.add_student("ada", 100))
    results: list[bool] = []

    def take() -> None:
        results.append(ledger.reserve(student, 1, 6.0))

    threads = [threading.Thread(target=take) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 10 and ledger.class_credits_used() == 60


# -- the teacher's view ----------------------------------------------------------------------


def _csrf(html: str) -> str:
    return re.search(r'name=csrf value="([^"]+)"', html).group(1)


def test_the_teacher_page_shows_spend_per_model_and_adds_credits(make_proxy, ledger):
    proxy = make_proxy(policy=ClassPolicy(student_credits=200, class_credits=1000))
    ada = ledger.add_student("Ada <b>", 20)
    ledger.add_student("Alan", 20, expires="2099-01-31")
    submit(proxy.url, ada, nVariants=2)
    market(proxy.url, ada, "nano-banana-pro", resolution="4K")
    teacher = ledger.new_teacher_token()
    with httpx.Client(base_url=proxy.url, timeout=30) as page:
        html = page.post("/teacher/login", data={"token": teacher}, follow_redirects=True).text
        assert "36 of 1,000 class credits used" in html
        assert '<tr data-model="nano-banana-pro"><td>nano-banana-pro</td><td class=n>1</td>' \
               '<td class=n>1</td><td class=n>≈ 24</td></tr>' in html
        assert '<tr data-model="4o"><td>4o</td><td class=n>1</td><td class=n>2</td>' \
               '<td class=n>≈ 12</td></tr>' in html
        assert "<td class=credits>36 / 200</td>" in html and "Ada &lt;b&gt;" in html
        assert "Ada <b>" not in html and "(until 2099-01-31)" in html
        answer = page.post("/teacher/credits", data={"csrf": _csrf(html), "credits": "50",
                                                     "student": sid(ada)},
                           follow_redirects=True)
        assert "Ada &lt;b&gt;: credit budget now 250 (36 used)." in answer.text
        assert ledger.student_named("Ada <b>").credits == 250
        stale = page.post("/teacher/credits", data={"csrf": "x", "credits": "50",
                                                    "student": sid(ada)})
        assert stale.status_code == 403 and ledger.student_named("Ada <b>").credits == 250
        rows = list(csv.DictReader(io.StringIO(page.get("/teacher/use.csv").text)))
    by_name = {r["student"]: r for r in rows}
    assert list(rows[0])[-5:] == ["credits_budget", "credits_used", "credits_remaining",
                                  "expires", "credits_overall"]
    assert {k: by_name["Ada <b>"][k] for k in ("used", "credits_budget", "credits_used",
                                               "credits_remaining")} == {
        "used": "3", "credits_budget": "250", "credits_used": "36", "credits_remaining": "214"}
    assert (by_name["Alan"]["credits_budget"], by_name["Alan"]["expires"]) == ("200",
                                                                                "2099-01-31")


# -- an older ledger --------------------------------------------------------------------------

_OLD_SCHEMA = """
CREATE TABLE students (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT,
    quota INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0, hub INTEGER NOT NULL DEFAULT 0,
    hub_name TEXT UNIQUE, created REAL NOT NULL);
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, student_id TEXT NOT NULL REFERENCES students(id),
    endpoint TEXT NOT NULL, images INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'running',
    prompt TEXT NOT NULL DEFAULT '', urls TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL,
    finished REAL);
CREATE INDEX tasks_by_student ON tasks (student_id, created);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO students VALUES ('s1', 'ada', 'hash', 20, 7, 0, 0, NULL, 1.0);
INSERT INTO tasks VALUES ('t1', 's1', '/api/v1/gpt4o-image/generate', 4, 'success', 'a fox',
    '["https://x/1.png"]', 2.0, 3.0);
INSERT INTO tasks VALUES ('t2', 's1', '/api/v1/jobs/createTask', 1, 'running', 'a cat', '[]',
    4.0, NULL);
INSERT INTO settings VALUES ('paused', '1');
"""


def test_an_old_ledger_is_migrated_without_losing_a_row(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
    book = Ledger(path)
    ada = book.student_named("ada")
    assert (ada.quota, ada.used, ada.credits, ada.credits_used, ada.expires) == (
        20, 7, None, 0, None)
    assert book.paused and book.task("t1").urls == ("https://x/1.png",)
    assert (book.task("t1").model, book.task("t2").model) == ("4o", None)
    # It works as a new ledger: credits reserved, tasks settled, spend per model.
    book.set_policy(ClassPolicy(student_credits=30))
    assert book.reserve("s1", 1, 6.0) and book.task_failed("t2")
    assert book.student("s1").used == 7 and book.student("s1").credits_used == 6
    assert [m.model for m in book.spend_by_model()] == ["(not recorded)", "4o"]
    book.close()
    again = Ledger(path)  # opened again: nothing more to add, nothing lost
    assert again.student("s1").credits_used == 6 and again.task("t1").state == "success"
    again.close()


def test_a_price_file_prices_what_the_package_does_not(make_proxy, ledger, kie, tmp_path):
    from kie_jupyter.api.prices import use_prices

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"rows": [{"model": "qwen-image", "credits": 3,
                                            "source": "our invoice, January"}]}))
    proxy = make_proxy(policy=ClassPolicy(student_credits=10))
    token = ledger.add_student("ada", 5)
    try:
        use_prices(prices)
        made = market(proxy.url, token, "qwen/text-to-image")
        assert made.json()["code"] == 200
        assert ledger.task(made.json()["data"]["taskId"]).credits == 3
    finally:
        use_prices(None)
    assert market(proxy.url, token, "qwen/text-to-image").status_code == 402


def test_a_4o_fallback_has_no_known_price_under_a_budget(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=100))
    token = ledger.add_student("ada", 5)
    refused = submit(proxy.url, token, enableFallback=True, fallbackModel="FLUX_MAX")
    assert refused.status_code == 402
    assert refused.json()["msg"] == ("your class budget is in credits and the price of 4o "
                                     "(with fallback) is unknown — ask your teacher")
    assert not kie.requests_to("generate") and ledger.student_named("ada").used == 0


def test_nvariants_must_be_a_whole_number_it_is_priced_by(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=10))
    token = ledger.add_student("ada", 5)
    refused = submit(proxy.url, token, nVariants=4.0)
    assert refused.status_code == 400 and "nVariants: 4.0" in refused.json()["msg"]
    over = submit(proxy.url, token, nVariants=4)  # ≈ 24 credits, 10 left
    assert over.status_code == 402
    assert not kie.requests_to("generate")


def test_a_task_reserved_before_midnight_belongs_to_that_day(tmp_path):
    now = [at("2027-01-31 23:59")]
    book = Ledger(tmp_path / "c.db", clock=lambda: now[0])
    book.set_policy(ClassPolicy(student_credits=20, reset="daily"))
    student = sid(book.add_student("ada", 5))
    day_one = book.reserve_for(student, 1, 6.0)
    assert day_one == "daily:2027-01-31"
    now[0] = at("2027-02-01 00:00")
    assert book.roll_period()
    assert book.reserve_for(student, 1, 6.0) == "daily:2027-02-01"
    # KIE answers the first only now: it is recorded in the day that paid it...
    book.record_task("t1", student, FOURO, 1, "a fox", model="4o", credits=6.0,
                     period=day_one)
    book.record_task("t2", student, FOURO, 1, "an owl", model="4o", credits=6.0)
    assert book.task_failed("t1")  # ...so its failure gives nothing back to day two
    assert (book.student(student).used, book.student(student).credits_used) == (1, 6.0)
    book.release(student, 1, 6.0, day_one)  # nor does a release of day one's reservation
    assert book.student(student).credits_used == 6.0
    book.close()


def test_a_clock_stepping_back_does_not_reset_twice(tmp_path):
    now = [at("2027-02-01 00:00")]
    book = Ledger(tmp_path / "c.db", clock=lambda: now[0])
    book.set_policy(ClassPolicy(student_credits=20, reset="daily"))
    student = sid(book.add_student("ada", 5))
    assert book.reserve(student, 1, 6.0)
    now[0] = at("2027-01-31 23:59")  # the clock steps back over midnight
    assert not book.roll_period() and book.period() == "daily:2027-02-01"
    now[0] = at("2027-02-01 00:01")
    assert not book.roll_period()
    assert book.student(student).credits_used == 6.0
    book.close()


def test_a_failure_kie_reports_a_charge_for_is_charged_that(tmp_path):
    book = Ledger(tmp_path / "c.db")
    book.set_policy(ClassPolicy(student_credits=20))
    student = sid(book.add_student("ada", 5))
    assert book.reserve(student, 1, 6.0)
    book.record_task("t1", student, FOURO, 1, "a fox", model="4o", credits=6.0)
    assert book.task_failed("t1", reported=2.0)
    now = book.student(student)
    assert (now.used, now.credits_used) == (0, 2.0)
    (spend,) = book.spend_by_model()
    assert (spend.model, spend.credits, spend.estimated) == ("4o", 2.0, False)
    assert book.credits_overall() == {student: 2.0}
    book.close()


def test_the_spend_csv_has_each_model_this_period_and_overall(make_proxy, ledger, kie):
    proxy = make_proxy(policy=ClassPolicy(student_credits=100))
    token = ledger.add_student("ada", 5)
    made = submit(proxy.url, token)
    wait_done(proxy.url, token, made.json()["data"]["taskId"])
    teacher = ledger.new_teacher_token()
    answer = httpx.get(proxy.url + "/teacher/spend.csv", headers=bearer(teacher))
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["period", "model", "tasks", "images", "credits", "estimated",
                       "unknown_price_tasks"]
    assert ["this period", "4o", "1", "1", "6", "1", "0"] in rows
    assert ["overall", "4o", "1", "1", "6", "1", "0"] in rows
    use = list(csv.reader(io.StringIO(
        httpx.get(proxy.url + "/teacher/use.csv", headers=bearer(teacher)).text)))
    assert use[0][-1] == "credits_overall" and use[1][-1] == "6"
    assert httpx.get(proxy.url + "/teacher/spend.csv").status_code == 401
