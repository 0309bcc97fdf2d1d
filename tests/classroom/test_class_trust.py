"""The class proxy as a JupyterHub trial found it (issue 26): lock-outs, quota lost on a
crash, the rate window across a restart, bodies checked one way and sent another, outbound
URLs, the key in other spellings, and hub users removed while they work."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from kie_jupyter.classroom.fairshare import FairShare
from kie_jupyter.classroom.forward import ClassProxy
from kie_jupyter.classroom.guard import BadTokenGuard
from kie_jupyter.classroom.hub import HubBusy, HubIdentity, HubUnavailable
from kie_jupyter.classroom.ledger import Ledger
from kie_jupyter.classroom.redact import redact_key
from kie_jupyter.classroom.serve import ProxyThread

from class_helpers import HUB_TOKENS, TEACHER_KEY, bearer, submit, wait_done


def _sid(ledger: Ledger, name: str) -> str:
    return ledger.student_named(name).id


# -- defect 1 and 7: no lock-out, whoever floods, whatever headers say ------------------------

def test_a_flood_of_wrong_tokens_never_delays_or_refuses_a_valid_one(make_proxy, ledger, hub):
    proxy = make_proxy(hub=HubIdentity(hub.api_url),
                       guard=BadTokenGuard(rate=5.0, max_waiting=3))
    roster = ledger.add_student("ada", 5)
    stop = threading.Event()
    wrong: list[int] = []

    def flood(n: int) -> None:
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                # Rotating X-Forwarded-For changes nothing: no address is kept.
                answer = http.get("/class/me", headers={
                    **bearer(f"kc_guess{n}_{i}" if i % 2 else f"guess-{n}-{i}-abcdef"),
                    "X-Forwarded-For": f"10.0.{n}.{i % 250}"})
                wrong.append(answer.status_code)

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        for _ in range(5):
            for token in (roster, "hub-token-ada"):
                started = time.monotonic()
                answer = httpx.get(proxy.url + "/class/me", headers=bearer(token), timeout=30)
                assert answer.status_code == 200, answer.text
                assert time.monotonic() - started < 1.0  # never queued behind the guesses
        assert submit(proxy.url, roster).status_code == 200
        assert submit(proxy.url, "hub-token-ada").status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(wrong) <= {401, 429} and 429 in wrong  # the flood was paced, then refused
    assert wrong.count(401) <= 5 * 6 + 10  # about 5 wrong answers a second at most


def test_garbage_is_refused_without_asking_the_hub_and_never_asked_twice(make_proxy, ledger,
                                                                       hub):
    identity = HubIdentity(hub.api_url)
    proxy = make_proxy(hub=identity, guard=BadTokenGuard(rate=1000.0))
    for token in ("x", "not a token!", "a" * 65, "short", "has a space in it"):
        assert httpx.get(proxy.url + "/class/me", headers=bearer(token)).status_code == 401
    assert identity.asked == 0  # cannot be a hub token: the hub is not asked
    for _ in range(5):
        assert httpx.get(proxy.url + "/class/me",
                         headers=bearer("hub-token-guess")).status_code == 401
    assert identity.asked == 1  # the hub's "no" is remembered


def _flood_then_ada(claim_of: Callable[[int], str], queued_per_claim: int
                    ) -> tuple[list[str], int]:
    """A hundred garbage tokens claiming ``claim_of(i)``, then ada's, one hub check at a time
    (ada a hub user the class knows, as the ledger's): the order the hub was asked in, and how
    many checks were refused as busy."""
    async def go() -> tuple[list[str], int]:
        identity = HubIdentity("http://127.0.0.1:9/hub/api", concurrency=1,
                               queued_per_claim=queued_per_claim)
        order: list[str] = []

        async def ask(token: str, digest: str) -> str | None:
            order.append(token)
            await asyncio.sleep(0.001)
            return "ada" if token.startswith("ada") else None

        identity._ask = ask  # type: ignore[method-assign]
        identity.remember_names(["ada"])
        tasks = [asyncio.ensure_future(identity.user_name(f"garbage-token-{i}",
                                                          claim=claim_of(i)))
                 for i in range(100)]
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(identity.user_name("ada-token-0001", claim="ada")))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await identity.aclose()
        return order, sum(isinstance(r, HubBusy) for r in results)

    return asyncio.run(go())


def test_each_claimed_hub_user_has_its_own_turn_at_the_hub():
    # Checks of unknown tokens queue per claimed user, round-robin: a hundred checks claiming
    # "mallory" go before ada's one by at most one round.
    order, busy = _flood_then_ada(lambda i: "mallory", queued_per_claim=200)
    assert order.index("ada-token-0001") <= 2 and busy == 0


def test_a_flood_claiming_a_new_name_per_guess_shares_one_queue():
    # Each guess claims a name of its own: unconfirmed names share one queue (refused once
    # it is full), so ada, a hub user the class knows, waits one turn at most.
    order, busy = _flood_then_ada(lambda i: f"name-{i}", queued_per_claim=8)
    assert order.index("ada-token-0001") <= 2 and busy == 100 - 1 - 8


def test_a_hub_answer_that_is_not_about_the_token_is_not_remembered_as_a_refusal(hub):
    async def go() -> list[type]:
        identity = HubIdentity(hub.api_url)
        seen: list[type] = []
        for status in (404, 429):
            identity._http = httpx.AsyncClient(transport=httpx.MockTransport(
                lambda r, s=status: httpx.Response(s)))
            try:
                await identity.user_name("hub-token-ada")
            except HubUnavailable:
                seen.append(HubUnavailable)
        identity._http = httpx.AsyncClient()
        seen.append(type(await identity.user_name("hub-token-ada")))
        await identity.aclose()
        return seen

    assert asyncio.run(go()) == [HubUnavailable, HubUnavailable, str]


# -- defect 5: a user removed on the hub makes nothing more ----------------------------------

def test_a_hub_user_removed_is_refused_at_their_next_submit(make_proxy, ledger, hub,
                                                           monkeypatch):
    identity = HubIdentity(hub.api_url)
    proxy = make_proxy(hub=identity)
    assert submit(proxy.url, "hub-token-ada").status_code == 200
    calls = len(hub.calls)
    assert httpx.get(proxy.url + "/class/me",
                     headers=bearer("hub-token-ada")).status_code == 200
    assert len(hub.calls) == calls  # polls use the recent answer
    monkeypatch.delitem(HUB_TOKENS, "hub-token-ada")  # deleted on the hub
    refused = submit(proxy.url, "hub-token-ada")
    assert refused.status_code == 401
    assert ledger.student_named("ada").used == 1


# -- defects 2 and 6: a crash loses no quota; a restart keeps KIE's window --------------------

def test_reservations_that_never_reached_kie_come_back_at_start(tmp_path, kie):
    book = Ledger(tmp_path / "class.db")
    ada = book.add_student("ada", 10)
    sid = _sid(book, "ada")
    # A proxy killed while three submits waited for their turn, and one was being sent.
    waiting = [book.reserve_pending(sid, 2, None, "/api/v1/gpt4o-image/generate")
               for _ in range(3)]
    sent = book.reserve_pending(sid, 1, None, "/api/v1/gpt4o-image/generate")
    assert all(waiting) and sent is not None
    book.sending(sent.pending, sid)
    assert book.student_named("ada").used == 7
    book.close()
    book = Ledger(tmp_path / "class.db")
    proxy = ClassProxy(ledger=book, api_key=TEACHER_KEY, upstream=kie.url,
                       upload_upstream=kie.url)
    thread = ProxyThread(proxy).start()
    try:
        assert book.student_named("ada").used == 1  # only the one that may have reached KIE
        unsure = book.pending("unsure")
        assert [(p.images, p.student_id) for p in unsure] == [(1, sid)]
        assert submit(thread.url, ada).status_code == 200
    finally:
        thread.stop()
        book.close()


def test_a_restarted_proxy_keeps_kie_s_window(tmp_path, kie, make_proxy):
    book = Ledger(tmp_path / "c.db")
    tokens = [book.add_student(f"s{i}", 5) for i in range(6)]
    first = make_proxy(book=book, fair=FairShare(4, 30.0, burst=4, max_wait=0.3))
    for token in tokens[:4]:
        assert submit(first.url, token).status_code == 200
    first.stop()
    second = make_proxy(book=book, fair=FairShare(4, 30.0, burst=4, max_wait=0.3))
    before = len(kie.requests_to("generate"))
    answer = submit(second.url, tokens[4])
    assert answer.status_code == 429 and answer.json()["placeKept"] is True
    assert len(kie.requests_to("generate")) == before  # the window was full: nothing sent
    assert book.student_named("s4").used == 0


def test_who_was_served_survives_a_restart(tmp_path):
    book = Ledger(tmp_path / "c.db")
    book.add_student("ada", 5)
    sid = _sid(book, "ada")
    held = book.reserve_pending(sid, 1, None, "/x")
    assert held is not None
    book.sending(held.pending, sid)
    book.close()
    again = Ledger(tmp_path / "c.db")
    assert again.served() == {sid: 1}
    again.clear_served()
    assert again.served() == {}


# -- defect 8 and 9: what reaches KIE is what was checked; no outbound URL of a student's ------

def test_download_url_sends_the_body_it_checked(proxy, ledger, kie):
    ada = ledger.add_student("ada", 3)
    bob = ledger.add_student("bob", 3)
    ada_task = submit(proxy.url, ada).json()["data"]["taskId"]
    bob_task = submit(proxy.url, bob).json()["data"]["taskId"]
    url = wait_done(proxy.url, bob, bob_task)["response"]["resultUrls"][0]
    wait_done(proxy.url, ada, ada_task)
    # Bob names his own task for the check, and Ada's under a duplicate or case-twin key.
    for raw in (f'{{"taskId": "{bob_task}", "url": "{url}", "taskId": "{ada_task}"}}',
                f'{{"taskId": "{bob_task}", "url": "{url}", "TaskId": "{ada_task}"}}'):
        answer = httpx.post(proxy.url + "/api/v1/gpt4o-image/download-url",
                            headers={**bearer(bob), "Content-Type": "application/json"},
                            content=raw)
        assert answer.status_code in (400, 404), answer.text
    good = httpx.post(proxy.url + "/api/v1/gpt4o-image/download-url", headers=bearer(bob),
                      json={"taskId": bob_task, "url": url, "extra": "x"})
    assert good.status_code == 200, good.text
    sent = kie.requests_to("download-url")
    assert [r.json for r in sent] == [{"taskId": bob_task, "url": url}]


def test_outbound_urls_are_only_the_student_s_own_results(proxy, ledger, kie):
    ada = ledger.add_student("ada", 3)
    bob = ledger.add_student("bob", 3)
    task = submit(proxy.url, ada).json()["data"]["taskId"]
    url = wait_done(proxy.url, ada, task)["response"]["resultUrls"][0]
    before = len(kie.requests)
    for token, path, body in [
        (ada, "/api/v1/common/download-url", {"url": "http://169.254.169.254/latest"}),
        (bob, "/api/v1/common/download-url", {"url": url}),  # not Bob's
        (ada, "/upload/api/file-url-upload", {"fileUrl": "http://10.0.0.1/x.png",
                                              "uploadPath": "u"}),
        (bob, "/upload/api/file-url-upload", {"fileUrl": url, "uploadPath": "u"}),
        (ada, "/api/v1/gpt4o-image/generate", {"prompt": "a", "size": "1:1",
                                               "callBackUrl": "http://evil.example/cb"}),
        (ada, "/api/v1/gpt4o-image/generate", {"prompt": "a", "size": "1:1",
                                               "callbackUrl": "http://evil.example/cb"}),
    ]:
        answer = httpx.post(proxy.url + path, headers=bearer(token), json=body)
        assert answer.status_code in (400, 403), (path, answer.text)
        assert answer.json()["classProxy"] is True
    assert len(kie.requests) == before  # none reached KIE
    assert ledger.student_named("ada").used == 1
    ok = httpx.post(proxy.url + "/api/v1/common/download-url", headers=bearer(ada),
                    json={"url": url})
    assert ok.status_code == 200, ok.text
    up = httpx.post(proxy.url + "/upload/api/file-url-upload", headers=bearer(ada),
                    json={"fileUrl": url, "uploadPath": "u", "junk": 1})
    assert up.status_code == 200, up.text
    assert kie.requests_to("file-url-upload")[-1].json == {"fileUrl": url, "uploadPath": "u"}


def test_a_teacher_may_allow_callbacks_to_their_own_address(make_proxy, ledger, kie):
    proxy = make_proxy(callbacks=("https://teacher.example/hook/",))
    ada = ledger.add_student("ada", 3)
    answer = submit(proxy.url, ada, callBackUrl="https://teacher.example/hook/1")
    assert answer.status_code == 200
    assert submit(proxy.url, ada, callBackUrl="https://teacher.example.evil/x").status_code \
        == 400


# -- defect 12: the key in any spelling -------------------------------------------------------

@pytest.mark.parametrize("spelled", [
    TEACHER_KEY,
    TEACHER_KEY.replace("-", "\\u002d"),
    "".join(f"\\u{ord(c):04x}" for c in TEACHER_KEY),
])
def test_the_key_is_masked_in_any_json_spelling(spelled):
    body = ('{"code": 500, "msg": "upstream said: Bearer ' + spelled + '"}').encode()
    assert json.loads(body)["msg"].endswith(TEACHER_KEY)  # the body does spell the key
    masked = redact_key(body, TEACHER_KEY)
    assert json.loads(masked)["msg"] == "upstream said: Bearer ***"


def test_a_url_quoted_key_is_masked():
    key = "k+y/with=signs-1234"
    body = b"GET /x?key=k%2By%2Fwith%3Dsigns-1234 and k+y/with=signs-1234"
    assert redact_key(body, key) == b"GET /x?key=*** and ***"


def test_the_key_echoed_json_escaped_by_kie_never_reaches_a_student(proxy, ledger, kie):
    ada = ledger.add_student("ada", 3)
    escaped = "".join(f"\\u{ord(c):04x}" for c in TEACHER_KEY)
    kie.add_fault("generate", http_status=401, code=401,
                  body=('{"code": 401, "msg": "bad key ' + escaped + '", "data": null}')
                  .encode())
    answer = submit(proxy.url, ada)
    assert TEACHER_KEY not in answer.json()["msg"] and "***" in answer.json()["msg"]


def test_serve_refuses_a_callback_allowance_that_is_not_a_url_prefix(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--db",
         str(tmp_path / "c.db"), "--port", "0", "--allow-callback", "teacher.example"],
        env={"KIE_API_KEY": TEACHER_KEY, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--allow-callback" in done.stderr
    assert TEACHER_KEY not in done.stderr + done.stdout


def test_a_url_is_the_student_s_only_when_it_is_one_of_their_results(ledger):
    ledger.add_students(["ada"], quota=4)
    ada = ledger.student_named("ada")
    urls = ["https://tempfile.aiquickdraw.com/a.png", "https://tempfile.aiquickdraw.com/b.png"]
    ledger.record_task("t1", ada.id, "/api/v1/gpt4o-image/generate", 2, "a fox")
    ledger.task_succeeded("t1", urls)
    assert all(ledger.owns_url(ada.id, u) for u in urls)
    # Pieces of the stored list are not URLs of hers (", " matched before: a substring test).
    for piece in ['", "', ", ", "https://tempfile.aiquickdraw.com/a", "png"]:
        assert not ledger.owns_url(ada.id, piece), piece


def test_a_submit_kie_refused_for_its_rate_is_given_back_if_the_proxy_stops_before_resending(
        ledger):
    ledger.add_students(["ada"], quota=4)
    ada = ledger.student_named("ada")
    held = ledger.reserve_pending(ada.id, 1, None, "/api/v1/gpt4o-image/generate")
    assert held is not None
    ledger.answered(ledger.sending(held.pending, ada.id))
    ledger.requeue(held.pending)  # KIE said 429: it made nothing; the submit waits again
    assert ledger.recover() == (1, 0)  # the proxy stopped before the resend
    assert ledger.student(ada.id).used == 0
