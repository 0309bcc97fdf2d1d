"""The teacher's side: every action kept in the audit trail (``kie4o class`` and the page),
shown on the page and in a CSV; unsure submits shown apart; a Secure cookie behind https; wrong
teacher tokens answered slowly."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from kie_jupyter.classroom.app import build_app
from kie_jupyter.classroom.cli import main
from kie_jupyter.classroom.forward import ClassProxy
from kie_jupyter.classroom.guard import BadTokenGuard
from kie_jupyter.classroom.ledger import Ledger

from class_helpers import bearer

NOWHERE = "http://127.0.0.1:9"


def _csrf(html: str) -> str:
    found = re.search(r'name=csrf value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


# -- the audit trail: kie4o class ---------------------------------------------------------------


def test_every_cli_action_is_in_the_audit_trail_without_a_token(tmp_path, capsys):
    db = str(tmp_path / "class.db")
    commands = [
        ("add-students", "--name", "Ada", "--name", "Alan", "--quota", "5"),
        ("add-quota", "Ada", "3"), ("credits", "Ada", "50"), ("expires", "Ada", "2027-01-31"),
        ("models", "Ada", "4o"), ("revoke", "Alan"), ("restore", "Alan"), ("reissue", "Alan"),
        ("teacher-token",), ("pause",), ("resume",), ("students",),
    ]
    printed = ""
    for command in commands:
        assert main([*command, "--db", db]) == 0, command
        printed += capsys.readouterr().out
    book = Ledger(db)
    try:
        trail = book.audit()
    finally:
        book.close()
    assert [(a.actor, a.action, a.student) for a in reversed(trail)] == [
        ("cli", "add-students", ""), ("cli", "add-quota", "Ada"), ("cli", "credits", "Ada"),
        ("cli", "expires", "Ada"), ("cli", "models", "Ada"), ("cli", "revoke", "Alan"),
        ("cli", "restore", "Alan"), ("cli", "reissue", "Alan"), ("cli", "teacher-token", ""),
        ("cli", "pause", ""), ("cli", "resume", "")]  # reading the roster is no action
    details = {a.action: a.detail for a in trail}
    assert details["add-students"] == "2 students (5 images each): Ada, Alan"
    assert details["add-quota"] == "+3 images; quota now 8"
    assert details["credits"] == "+50 credits; budget now 50"
    assert "2027-01-31" in details["expires"] and details["models"] == "4o"
    tokens = re.findall(r"k[ct]_[A-Za-z0-9_\-]+", printed)
    assert len(tokens) == 4  # Ada's, Alan's, Alan's new one, the teacher's
    kept = " ".join(f"{a.student} {a.detail}" for a in trail)
    assert not any(token in kept for token in tokens)


# -- the audit trail: the teacher page ----------------------------------------------------------


def test_every_page_action_is_in_the_audit_trail_and_shown_escaped(make_proxy, ledger):
    proxy = make_proxy()
    ledger.add_student("<b>Ada</b>", 5)
    sid = ledger.student_named("<b>Ada</b>").id
    main(["pause", "--db", str(ledger.path)])  # one from the command line too
    teacher = ledger.new_teacher_token()
    with httpx.Client(base_url=proxy.url, timeout=30) as page:
        html = page.post("/teacher/login", data={"token": teacher}, follow_redirects=True).text
        csrf = _csrf(html)
        for path, form in [("/quota", {"images": "4"}), ("/credits", {"credits": "25"}),
                           ("/revoke", {}), ("/restore", {}), ("/reissue", {}),
                           ("/pause", {"paused": "0"}), ("/pause", {"paused": "1"})]:
            answer = page.post("/teacher" + path, follow_redirects=True,
                               data={"csrf": csrf, "student": sid, **form})
            assert answer.status_code == 200, answer.text
            if path == "/reissue":
                new_token = re.search(r"<code id=new-token>([^<]+)</code>", answer.text)
        html = page.get("/teacher").text
        actions_csv = page.get("/teacher/actions.csv")
    assert new_token is not None
    trail = ledger.audit()
    assert [(a.actor, a.action) for a in trail] == [
        ("page", "pause"), ("page", "resume"), ("page", "reissue"), ("page", "restore"),
        ("page", "revoke"), ("page", "credits"), ("page", "add-quota"), ("page", "sign-in"),
        ("cli", "pause")]
    assert {a.student for a in trail if a.action not in ("pause", "resume", "sign-in")} == {
        "<b>Ada</b>"}
    assert not any(new_token.group(1) in a.detail + a.student for a in trail)
    assert not any(teacher in a.detail for a in trail)

    # The page: a section of its own, newest first, every value escaped.
    section = html[html.index("<h2>Teacher actions</h2>"):]
    assert "<b>Ada</b>" not in html and "<span class=who>&lt;b&gt;Ada&lt;/b&gt;</span>" in section
    shown = re.findall(r'<li data-action="[a-z-]+"><span class=when>[^<]+ UTC</span> · '
                       r"(page|cli) · <strong>([a-z-]+)</strong>", section)
    assert shown == [(a.actor, a.action) for a in trail]
    assert section.count("<tr") == 0  # a list: the students' table keeps the rows by name
    assert "+4 images; quota now 9" in section and new_token.group(1) not in section
    # And all of it in the CSV linked from the page.
    assert 'href="/teacher/actions.csv"' in html
    assert actions_csv.status_code == 200
    assert actions_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(actions_csv.text)))
    assert [(r["from"], r["action"], r["student"]) for r in rows][:3] == [
        ("page", "pause", ""), ("page", "resume", ""), ("page", "reissue", "<b>Ada</b>")]
    assert rows[-1]["action"] == "pause" and rows[-1]["from"] == "cli"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", rows[0]["at_utc"])
    assert new_token.group(1) not in actions_csv.text and teacher not in actions_csv.text


def test_the_actions_csv_is_for_the_teacher_only(proxy, ledger):
    teacher = ledger.new_teacher_token()
    assert httpx.get(proxy.url + "/teacher/actions.csv").status_code == 401
    wrong = httpx.get(proxy.url + "/teacher/actions.csv", headers=bearer("kt_wrong"))
    assert wrong.status_code == 401
    right = httpx.get(proxy.url + "/teacher/actions.csv", headers=bearer(teacher))
    assert right.status_code == 200 and right.text.startswith("at_utc,from,action,")


# -- unsure submits -----------------------------------------------------------------------------


def test_unsure_submits_are_shown_apart(proxy, ledger):
    ada = ledger.add_student("Ada <i>", 5)
    sid = ledger.student_named("Ada <i>").id
    teacher = ledger.new_teacher_token()
    with httpx.Client(base_url=proxy.url, timeout=30) as page:
        page.post("/teacher/login", data={"token": teacher})
        assert "Unsure" not in page.get("/teacher").text  # none: nothing shown
        held = ledger.reserve_pending(sid, 2, 12.0, "/api/v1/gpt4o-image/generate")
        assert held is not None
        ledger.sending(held.pending, sid)
        ledger.unsure(held.pending)
        waiting = ledger.reserve_pending(sid, 1, None, "/api/v1/gpt4o-image/generate")
        assert waiting is not None  # not sent yet: not unsure
        html = page.get("/teacher").text
    assert "<h2>Unsure (sent when the proxy stopped; kept charged)</h2>" in html
    unsure = html[html.index("<ul id=unsure>"):]
    unsure = unsure[:unsure.index("</ul>")]
    assert re.fullmatch(r"<ul id=unsure><li><span class=who>Ada &lt;i&gt;</span> · 2 images · "
                        r"12 credits · sent <span class=when>[^<]+ UTC</span></li>", unsure)
    assert ada not in html


# -- the cookie and wrong tokens ----------------------------------------------------------------


@pytest.fixture()
def page_ledger(tmp_path) -> Iterator[Ledger]:
    book = Ledger(tmp_path / "class.db")
    yield book
    book.close()


def _app(book: Ledger, guard: BadTokenGuard | None = None):  # no server: the app itself
    proxy = ClassProxy(ledger=book, api_key="kie-key", upstream=NOWHERE,
                       upload_upstream=NOWHERE)
    return build_app(proxy, teacher_guard=guard) if guard else build_app(proxy)


async def _sign_in(book: Ledger, token: str, *, base: str = "http://class",
                   headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(book))
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        return await client.post("/teacher/login", data={"token": token}, headers=headers)


@pytest.mark.parametrize(("base", "headers", "secure"), [
    ("http://class", None, False),
    ("https://class", None, True),
    ("http://class", {"X-Forwarded-Proto": "https"}, True),
    ("http://class", {"X-Forwarded-Proto": "https,http"}, True),  # the first hop counts
    ("http://class", {"X-Forwarded-Proto": "http"}, False),
])
def test_the_teacher_cookie_is_secure_when_the_browser_came_over_https(page_ledger, base,
                                                                       headers, secure):
    teacher = page_ledger.new_teacher_token()
    answer = asyncio.run(_sign_in(page_ledger, teacher, base=base, headers=headers))
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert ("; secure" in cookie) is secure


class _CountingGuard(BadTokenGuard):
    """A guard that counts the wrong tokens it paced."""

    def __init__(self, *, rate: float, max_waiting: int) -> None:
        super().__init__(rate=rate, max_waiting=max_waiting)
        self.asked = 0

    async def refused(self) -> bool:
        self.asked += 1
        return await super().refused()


def test_wrong_teacher_tokens_are_paced_and_a_right_one_is_not(page_ledger):
    teacher = page_ledger.new_teacher_token()
    guard = _CountingGuard(rate=20.0, max_waiting=16)

    async def burst() -> tuple[list[tuple[int, float]], tuple[int, float], float]:
        transport = httpx.ASGITransport(app=_app(page_ledger, guard))
        async with httpx.AsyncClient(transport=transport, base_url="http://class") as client:
            start = time.monotonic()

            async def attempt(token: str, after: float = 0.0) -> tuple[int, float]:
                await asyncio.sleep(after)
                answer = await client.post("/teacher/login", data={"token": token})
                return answer.status_code, time.monotonic() - start

            *wrong, right = await asyncio.gather(
                *(attempt(f"kt_wrong{n}") for n in range(10)), attempt(teacher, after=0.05))
            return wrong, right, time.monotonic() - start

    wrong, right, took = asyncio.run(burst())
    assert [code for code, _ in wrong] == [401] * 10 and guard.asked == 10
    # At 20 a second, the 10th wrong answer waits for 9 turns before it.
    assert max(at for _, at in wrong) >= 9 / 20 - 0.02 and took >= 9 / 20 - 0.02
    # The right token, sent while the wrong ones still wait, is answered at once.
    assert right[0] == 303 and right[1] < max(at for _, at in wrong)
    assert right[1] < 0.05 + 0.3  # the 10th wrong one waits till 0.45 s

    # A flood fills the queue; the rest are refused at once (429).
    async def flood() -> list[int]:
        transport = httpx.ASGITransport(app=_app(page_ledger, guard))
        async with httpx.AsyncClient(transport=transport, base_url="http://class") as client:
            answers = await asyncio.gather(*(client.post("/teacher/login",
                                                         data={"token": f"kt_x{n}"})
                                             for n in range(30)))
            return [a.status_code for a in answers]

    codes = asyncio.run(flood())
    assert codes.count(429) >= 10 and codes.count(401) >= 16 and set(codes) == {401, 429}


def test_a_wrong_bearer_teacher_token_is_paced_too(page_ledger):
    teacher = page_ledger.new_teacher_token()
    guard = _CountingGuard(rate=20.0, max_waiting=16)

    async def ask() -> list[int]:
        transport = httpx.ASGITransport(app=_app(page_ledger, guard))
        async with httpx.AsyncClient(transport=transport, base_url="http://class") as client:
            answers = await asyncio.gather(
                *(client.get(f"/teacher/{name}", headers=bearer(token)) for name, token in
                  [("use.csv", "kt_wrong"), ("spend.csv", "kt_wrong"),
                   ("actions.csv", "kt_wrong"), ("actions.csv", teacher)]),
                client.get("/teacher/use.csv"))  # no token at all: nothing to pace
            return [a.status_code for a in answers]

    assert asyncio.run(ask()) == [401, 401, 401, 200, 401]
    assert guard.asked == 3


def test_the_page_s_own_guard_answers_two_wrong_tokens_a_second(page_ledger):
    page_ledger.new_teacher_token()

    async def three() -> float:
        transport = httpx.ASGITransport(app=_app(page_ledger))
        async with httpx.AsyncClient(transport=transport, base_url="http://class") as client:
            start = time.monotonic()
            answers = await asyncio.gather(*(client.post("/teacher/login",
                                                         data={"token": "kt_no"})
                                             for _ in range(3)))
            assert [a.status_code for a in answers] == [401] * 3
            return time.monotonic() - start

    assert asyncio.run(three()) >= 1.0 - 0.05  # turns at 0, 0.5 and 1 s
