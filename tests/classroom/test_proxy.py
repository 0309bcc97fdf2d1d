"""The class proxy end to end: uvicorn in front of the fake KIE server, students on httpx and
on the extension's own client."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.api.errors import ClassRefusalError
from kie_jupyter.classroom.fairshare import FairShare
from kie_jupyter.classroom.guard import BadTokenGuard
from kie_jupyter.classroom.ledger import Ledger
from kie_jupyter.classroom.tokens import parse_student_token

from class_helpers import TEACHER_KEY, bearer, record, submit, wait_done

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def student_client(proxy, token: str) -> KieClient:
    return KieClient(api_key=token, base_url=proxy.url, upload_url=proxy.url + "/upload")


@pytest.mark.parametrize("model", ["4o", "nano-banana-2", "flux-kontext-pro"])
def test_a_student_gets_images_with_the_extension_and_never_the_key(proxy, ledger, kie,
                                                                    tmp_path, model):
    token = ledger.add_student("ada", 5)
    source = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(source)
    with student_client(proxy, token) as client:
        # yes=True: an edit's price is unknown for some models (the extension asks first).
        task = kie_jupyter.generate("a red fox", model=model, images=[source], client=client,
                                    timeout=30, yes=True)
        assert task.status.value == "success", task.error
        assert task.images and all(i.startswith(b"\x89PNG") or i[:3] == b"\xff\xd8\xff"
                                   for i in task.images)
        assert client.credits() == 4  # credit answers the images left
    row = ledger.tasks_of(parse_student_token(token).student_id)[0]
    assert row.state == "success" and row.prompt == "a red fox" and row.urls
    assert ledger.student_named("ada").used == 1
    # Every API request reached KIE with the teacher's key (result images are fetched from
    # their URLs directly, with no key at all).
    calls = [r for r in kie.requests if r.path.startswith("/api/")]
    assert len(calls) >= 3 and all(r.headers.get("authorization") == f"Bearer {TEACHER_KEY}"
                                   for r in calls)
    assert not any(token in str(r.headers) for r in kie.requests)


def test_the_teacher_key_appears_in_no_answer_log_row_or_page(make_proxy, ledger, kie,
                                                              tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = make_proxy()
    token = ledger.add_student("ada", 3)
    teacher = ledger.new_teacher_token()
    seen: list[httpx.Response] = []
    with httpx.Client(base_url=proxy.url, headers=bearer(token), timeout=30) as http:
        seen.append(http.get("/class/me"))
        seen.append(http.get("/api/v1/chat/credit"))
        made = http.post("/api/v1/gpt4o-image/generate", json={"prompt": "a fox", "size": "1:1"})
        seen.append(made)
        task_id = made.json()["data"]["taskId"]
        data = wait_done(proxy.url, token, task_id)
        seen.append(record(proxy.url, token, task_id))
        seen.append(http.post("/api/v1/gpt4o-image/download-url",
                              json={"taskId": task_id, "url": data["response"]["resultUrls"][0]}))
        seen.append(http.post("/upload/api/file-stream-upload",
                              files={"file": ("a.png", PNG, "image/png")},
                              data={"uploadPath": "x"}))
        seen.append(http.get("/nope"))
        seen.append(http.get("/class/me", headers={"Authorization": "Bearer kc_x_wrong"}))
    with httpx.Client(base_url=proxy.url, timeout=30) as page:
        page.post("/teacher/login", data={"token": teacher})
        seen.append(page.get("/teacher"))
        seen.append(page.get("/teacher/use.csv"))
    assert seen[2].status_code == 200 and "a fox" in seen[-2].text
    for answer in seen:
        assert TEACHER_KEY not in answer.text
        assert TEACHER_KEY not in str(answer.headers)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "ada" in logs and TEACHER_KEY not in logs and token not in logs
    ledger_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("class.db*"))
    assert TEACHER_KEY.encode() not in ledger_bytes and token.encode() not in ledger_bytes
    assert repr(proxy.proxy).count(TEACHER_KEY) == 0


def test_wrong_and_revoked_tokens_are_refused_and_no_one_is_locked_out(make_proxy, ledger):
    proxy = make_proxy(guard=BadTokenGuard(rate=1000.0))
    good = ledger.add_student("ada", 3)
    revoked = ledger.add_student("bob", 3)
    ledger.revoke(parse_student_token(revoked).student_id)
    for _ in range(10):  # a revoked student re-running cells
        answer = submit(proxy.url, revoked)
        assert answer.status_code == 401 and "revoked — ask your teacher" in answer.json()["msg"]
    answer = submit(proxy.url, good + "x")
    assert answer.json() == {"code": 401, "data": None, "classProxy": True,
                             "msg": "class token not recognised — check the token your "
                                    "teacher gave you"}
    assert httpx.get(proxy.url + "/class/me").status_code == 401  # no token at all
    for _ in range(30):
        assert submit(proxy.url, "kc_guess_guess").status_code == 401
    # A good token is served from the same address: a class shares one address.
    assert httpx.get(proxy.url + "/class/me", headers=bearer(good)).status_code == 200
    assert submit(proxy.url, good).status_code == 200
    assert ledger.student_named("ada").used == 1 and ledger.student_named("bob").used == 0


def test_quota_is_reserved_released_on_failure_and_runs_out(proxy, ledger):
    token = ledger.add_student("ada", 3)
    ok = submit(proxy.url, token, nVariants=2)
    assert ok.status_code == 200 and ledger.student_named("ada").used == 2
    fails = submit(proxy.url, token, "a cat [mock:fail]")
    assert ledger.student_named("ada").used == 3
    data = wait_done(proxy.url, token, fails.json()["data"]["taskId"])
    assert data["successFlag"] != 1
    assert ledger.student_named("ada").used == 2  # the failed task's image came back
    record(proxy.url, token, fails.json()["data"]["taskId"])
    assert ledger.student_named("ada").used == 2  # only once
    too_many = submit(proxy.url, token, nVariants=2)
    assert too_many.status_code == 402
    assert too_many.json()["msg"] == ("class quota: 1 of 3 images left, this asks for 2 — "
                                      "ask your teacher")
    assert submit(proxy.url, token).status_code == 200
    used_up = submit(proxy.url, token)
    assert used_up.json()["msg"] == "class quota used: 3 of 3 images — ask your teacher"
    with student_client(proxy, token) as client, pytest.raises(ClassRefusalError) as err:
        client.generate(kie_jupyter.api.models.GenerationRequest(prompt="x", size="1:1"))
    assert str(err.value) == "class quota used: 3 of 3 images — ask your teacher"
    assert err.value.fix is None


def test_a_refused_submit_at_kie_gives_the_images_back(proxy, ledger, kie):
    token = ledger.add_student("ada", 2)
    kie.add_fault("generate", code=422, msg="bad size")
    answer = submit(proxy.url, token)
    assert answer.json()["code"] == 422 and "classProxy" not in answer.json()  # KIE's, as is
    assert ledger.student_named("ada").used == 0


def test_a_student_reads_only_their_own_tasks(proxy, ledger):
    ada = ledger.add_student("ada", 2)
    bob = ledger.add_student("bob", 2)
    task_id = submit(proxy.url, ada).json()["data"]["taskId"]
    answer = record(proxy.url, bob, task_id)
    assert answer.status_code == 404 and "not one of yours" in answer.json()["msg"]
    answer = httpx.post(proxy.url + "/api/v1/gpt4o-image/download-url", headers=bearer(bob),
                        json={"taskId": task_id, "url": "http://x/y.png"})
    assert answer.status_code == 404


def test_unknown_paths_and_methods_are_not_forwarded(proxy, ledger, kie):
    token = ledger.add_student("ada", 2)
    before = len(kie.requests)
    for method, path in [("GET", "/"), ("GET", "/api/v1/user/info"),
                         ("POST", "/api/v1/chat/credit"),
                         ("GET", "/api/v1/gpt4o-image/generate"),
                         ("POST", "/api/v1/veo/generate"),
                         ("GET", "/upload/api/file-stream-upload"),
                         ("POST", "/upload/api/other"), ("GET", "/admin"),
                         ("GET", "/https://example.com/")]:
        answer = httpx.request(method, proxy.url + path, headers=bearer(token))
        if path == "/":
            assert answer.status_code == 200 and "class proxy" in answer.text
            continue
        assert answer.status_code in (404, 405), (method, path)
        assert answer.json()["classProxy"] is True
    assert len(kie.requests) == before  # nothing reached KIE


def test_oversized_bodies_are_refused_with_413(make_proxy, ledger, kie):
    proxy = make_proxy(max_body=2048, max_upload=4096)
    token = ledger.add_student("ada", 2)
    big = submit(proxy.url, token, "x" * 5000)
    assert big.status_code == 413 and "too large" in big.json()["msg"]
    upload = httpx.post(proxy.url + "/upload/api/file-base64-upload", headers=bearer(token),
                        json={"base64Data": "A" * 10_000, "uploadPath": "x", "fileName": "a"})
    assert upload.status_code == 413

    def chunks():  # no Content-Length: the cap holds on what arrives
        for _ in range(10):
            yield b"A" * 1000

    streamed = httpx.post(proxy.url + "/upload/api/file-base64-upload", headers=bearer(token),
                          content=chunks())
    assert streamed.status_code == 413
    small = httpx.post(proxy.url + "/upload/api/file-stream-upload", headers=bearer(token),
                       files={"file": ("a.png", PNG, "image/png")}, data={"uploadPath": "x"})
    assert small.status_code == 200 and small.json()["code"] == 200
    assert ledger.student_named("ada").used == 0
    # (A streamed upload is cut off mid-way at the cap: KIE may see its start, never its end.)
    assert "file-stream-upload" in [r.endpoint for r in kie.requests]


def test_a_paused_class_refuses_new_tasks_and_finishes_running_ones(proxy, ledger):
    token = ledger.add_student("ada", 3)
    task_id = submit(proxy.url, token).json()["data"]["taskId"]
    ledger.set_paused(True)
    paused = submit(proxy.url, token)
    assert paused.status_code == 403 and "paused by your teacher" in paused.json()["msg"]
    assert wait_done(proxy.url, token, task_id)["successFlag"] == 1
    assert ledger.student_named("ada").used == 1
    ledger.set_paused(False)
    assert submit(proxy.url, token).status_code == 200


def test_a_restart_mid_class_loses_no_row_and_tasks_stay_resolvable(make_proxy, ledger,
                                                                   tmp_path):
    first = make_proxy()
    token = ledger.add_student("ada", 4)
    task_id = submit(first.url, token, nVariants=2).json()["data"]["taskId"]
    first.stop()
    ledger.close()
    again = Ledger(tmp_path / "class.db")
    second = make_proxy(book=again)
    assert wait_done(second.url, token, task_id)["successFlag"] == 1
    assert again.student_named("ada").used == 2
    assert again.task(task_id).state == "success"
    again.close()


def test_thirty_students_at_once_stay_within_the_rate_and_are_served_fairly(make_proxy,
                                                                          ledger, kie):
    # The account's 20 per 10 s, scaled to 20 per second on both sides to keep the run short:
    # the fake server refuses (429) anything over it, which would show here as a failure.
    kie.rate_limit = (20, 1.0)
    kie.credits = 10_000.0
    proxy = make_proxy(fair=FairShare(20, 1.0, max_wait=20))
    tokens = {f"student{i:02d}": ledger.add_student(f"student{i:02d}", 4) for i in range(30)}
    warm = ledger.add_student("warmup", 20)

    async def class_at_once() -> list[tuple[str, int, float]]:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30,
                                     limits=httpx.Limits(max_connections=200)) as http:
            async def one(token: str, prompt: str) -> tuple[str, int, float]:
                started = time.monotonic()
                answer = await http.post("/api/v1/gpt4o-image/generate",
                                         headers=bearer(token),
                                         json={"prompt": prompt, "size": "1:1"})
                return prompt, answer.json()["code"], time.monotonic() - started

            # The window is full when the class arrives, so every submit of the class waits
            # for a turn (on a loaded machine the 120 arrive spread out: with free slots the
            # first comers would be served at once, whatever the order of the others).
            await asyncio.gather(*(one(warm, f"warmup {n}") for n in range(20)))
            return await asyncio.gather(*(one(tokens[n], n) for n in tokens for _ in range(4)))

    started = time.monotonic()
    results = asyncio.run(class_at_once())
    wall = time.monotonic() - started
    assert [code for _, code, _ in results] == [200] * 120
    # Grant order, as KIE saw the submits: every student's first before anyone's third.
    order = [r.json["prompt"] for r in kie.requests_to("generate")
             if not r.json["prompt"].startswith("warmup")]
    firsts = [order.index(n) for n in tokens]
    thirds = [[i for i, p in enumerate(order) if p == n][2] for n in tokens]
    assert max(firsts) < min(thirds)
    print(f"\n30 students × 4 submits after a full window: {wall:.2f} s for 140 at 20 per "
          f"second; max wait {max(w for *_, w in results):.2f} s")


def test_served_under_a_hub_service_prefix(make_proxy, ledger):
    proxy = make_proxy(prefix="/services/kie-class")
    assert proxy.url.endswith("/services/kie-class")
    token = ledger.add_student("ada", 2)
    task_id = submit(proxy.url, token).json()["data"]["taskId"]
    assert wait_done(proxy.url, token, task_id)["successFlag"] == 1
    base = proxy.url.rsplit("/services/", 1)[0]
    assert httpx.post(base + "/api/v1/gpt4o-image/generate", headers=bearer(token),
                      json={"prompt": "x"}).status_code == 404
    teacher = ledger.new_teacher_token()
    with httpx.Client(base_url=proxy.url, timeout=30) as page:
        signed_in = page.post("/teacher/login", data={"token": teacher}, follow_redirects=True)
        assert signed_in.status_code == 200 and "ada" in signed_in.text
        assert 'action="/services/kie-class/teacher/quota"' in signed_in.text
        assert page.cookies.jar and all(c.path == "/services/kie-class/teacher"
                                        for c in page.cookies.jar)


def test_a_submit_that_would_wait_too_long_is_told_to_retry_and_charged_nothing(make_proxy,
                                                                               ledger):
    proxy = make_proxy(fair=FairShare(1, 60.0, max_wait=0.2))
    ada = ledger.add_student("ada", 2)
    bob = ledger.add_student("bob", 2)
    assert submit(proxy.url, ada).status_code == 200  # the window's one slot
    busy = submit(proxy.url, bob)
    assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["msg"].startswith("the class is busy: your place in the queue is kept")
    assert busy.json()["placeKept"] is True
    assert ledger.student_named("bob").used == 0


@pytest.mark.parametrize("body, why", [
    ({"model": "sora-2-pro-text-to-video", "input": {"prompt": "x"}}, "not one of this class"),
    ({"model": "nano-banana-2", "input": {"prompt": "x", "num_images": 4}},
     "input.num_images: a class task makes one image"),
    ({"model": "nano-banana-2"}, "needs an input object"),
    ({"model": "nano-banana-2", "input": {"prompt": "x", "NUM_IMAGES": 4}},
     "input.NUM_IMAGES: a class task makes one image"),
    ({"Model": "sora-2-pro-text-to-video", "model": "nano-banana-2", "input": {"prompt": "x"}},
     "'Model': did you mean 'model'?"),
])
def test_only_the_class_s_image_models_one_image_a_task(proxy, ledger, kie, body, why):
    token = ledger.add_student("ada", 1)
    answer = httpx.post(proxy.url + "/api/v1/jobs/createTask", headers=bearer(token), json=body)
    assert answer.status_code == 400 and why in answer.json()["msg"]
    assert "nothing was charged" in answer.json()["msg"]
    assert not kie.requests_to("createTask") and ledger.student_named("ada").used == 0


def test_kie_reads_exactly_the_submit_that_was_checked(proxy, ledger, kie):
    # A field given twice reaches KIE once, with the value counted; one in other letters
    # (which a case-blind parser would read as the field) is refused.
    token = ledger.add_student("ada", 4)
    raw = b'{"prompt": "a fox", "size": "1:1", "nVariants": 4, "nVariants": 1}'
    answer = httpx.post(proxy.url + "/api/v1/gpt4o-image/generate", content=raw,
                        headers={**bearer(token), "Content-Type": "application/json"})
    assert answer.json()["code"] == 200
    (sent,) = kie.requests_to("generate")
    assert sent.body.count(b"nVariants") == 1 and sent.json["nVariants"] == 1
    assert ledger.student_named("ada").used == 1
    for body in ({"prompt": "a fox", "NVARIANTS": 4}, {"prompt": "a fox", "nvariants": 4}):
        refused = submit(proxy.url, token, **body)
        assert refused.status_code == 400 and "case-sensitive" in refused.json()["msg"]
    refused = httpx.post(proxy.url + "/api/v1/gpt4o-image/generate", headers=bearer(token),
                         content=b'{"prompt": "a fox", "x": NaN}')
    assert refused.status_code == 400
    assert len(kie.requests_to("generate")) == 1 and ledger.student_named("ada").used == 1


def test_a_submit_answered_without_kie_s_envelope_keeps_its_images(proxy, ledger, kie):
    # The task is made and charged at KIE, but a gateway answers in its place.
    token = ledger.add_student("ada", 3)
    kie.add_fault("generate", after_processing=True, http_status=502,
                  body=b"<html>Bad gateway</html>", content_type="text/html")
    answer = submit(proxy.url, token)
    assert answer.status_code == 502
    assert ledger.student_named("ada").used == 1  # kept: the task may exist
    kie.add_fault("generate", code=500, msg="server error")  # an envelope: KIE made nothing
    submit(proxy.url, token)
    assert ledger.student_named("ada").used == 1


def test_a_slow_answer_to_a_submit_is_still_recorded(make_proxy, ledger, kie):
    # KIE makes (and charges) the task but answers after the proxy's sending deadline: the
    # proxy still waits for the answer, so the task is the student's and can be followed.
    proxy = make_proxy(submit_deadline=0.5)
    token = ledger.add_student("ada", 3)
    kie.add_fault("generate", delay=1.5, after_processing=True)
    answer = submit(proxy.url, token)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["taskId"]
    assert ledger.task(task_id).student_id == ledger.student_named("ada").id
    assert wait_done(proxy.url, token, task_id)["successFlag"] == 1


def test_a_record_answer_that_is_not_an_object_is_passed_through(proxy, ledger, kie):
    token = ledger.add_student("ada", 3)
    task_id = submit(proxy.url, token).json()["data"]["taskId"]
    for body in (b"null", b"[1, 2]", b'"busy"', b"[" * 5000):
        kie.add_fault("record-info", body=body, http_status=502,
                      content_type="application/json")
        answer = record(proxy.url, token, task_id)
        assert (answer.status_code, answer.content) == (502, body)
    assert ledger.task(task_id).state != "failed" and ledger.student_named("ada").used == 1


def test_kie_out_of_credits_is_the_teacher_s_problem(proxy, ledger, kie):
    token = ledger.add_student("ada", 3)
    kie.add_fault("generate", code=402, msg="insufficient credits")
    answer = submit(proxy.url, token)
    assert answer.status_code == 402
    assert answer.json()["msg"].startswith("the class's KIE account is out of credits — tell "
                                           "your teacher")
    assert ledger.student_named("ada").used == 0


def test_kie_s_429_is_sent_again_in_the_student_s_next_turn(proxy, ledger, kie):
    token = ledger.add_student("ada", 3)
    kie.add_fault("generate", code=429, msg="rate limited", http_status=429)
    answer = submit(proxy.url, token)
    assert answer.json()["code"] == 200 and len(kie.requests_to("generate")) == 2
    assert ledger.student_named("ada").used == 1


def test_a_success_is_settled_only_with_its_urls(proxy, ledger, kie):
    token = ledger.add_student("ada", 3)
    kie.script_next_task(empty_url_polls=2, duration=0.1)
    task_id = submit(proxy.url, token).json()["data"]["taskId"]
    wait_done(proxy.url, token, task_id)
    for _ in range(4):
        record(proxy.url, token, task_id)
    assert ledger.task(task_id).state == "success" and ledger.task(task_id).urls


def test_a_task_is_read_only_through_its_own_family(proxy, ledger):
    token = ledger.add_student("ada", 3)
    task_id = submit(proxy.url, token).json()["data"]["taskId"]
    answer = httpx.get(proxy.url + "/api/v1/jobs/recordInfo", params={"taskId": task_id},
                       headers=bearer(token))
    assert answer.status_code == 404


def test_the_teacher_page_reads_no_large_form(proxy, ledger):
    ledger.new_teacher_token()
    answer = httpx.post(proxy.url + "/teacher/login", content=b"token=" + b"x" * 100_000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413
