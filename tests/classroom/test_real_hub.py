"""The class proxy under a REAL JupyterHub, end to end: ``kie4o class serve --hub`` as a
hub-managed service (docs/class-proxy.md, set-up B), reached through the hub's own
configurable-http-proxy at ``/services/kie-class/`` exactly as students reach it, in front of
the fake KIE server. Users and their tokens are made with the hub's REST API.

Skips when jupyterhub or configurable-http-proxy is missing (``bash scripts/hub-deps.sh``),
unless ``CI=true`` or ``KIE_REQUIRE_HUB=1``: then it fails.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from hub_helpers import SERVICE, RealHub, skip_or_fail_without_hub

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.testing import MockKieServer

from class_helpers import TEACHER_KEY, bearer, record, submit, wait_done

#: Images each hub user gets the first time the proxy sees them (``serve --quota``).
QUOTA = 2
#: A second class proxy on the same hub, for the flood alone: a flood locks the address every
#: student comes from (the hub's proxy, 127.0.0.1) for 5 minutes, which must not leak into
#: the other tests of the module.
FLOOD_SERVICE = "kie-class-flood"
FLOOD_SECONDS = 10.0


@pytest.fixture(scope="module")
def hub_kie() -> Iterator[MockKieServer]:
    """The fake KIE server the hub's class proxies forward to (the teacher's key only)."""
    with MockKieServer(api_key=TEACHER_KEY, duration=0.3) as server:
        yield server


@pytest.fixture(scope="module")
def real_hub(tmp_path_factory: pytest.TempPathFactory,
             hub_kie: MockKieServer) -> Iterator[RealHub]:
    """A running JupyterHub (its HOME, database and logs in a temporary folder) with the class
    proxy as its managed services ``kie-class`` and ``kie-class-flood``."""
    skip_or_fail_without_hub()
    hub = RealHub(tmp_path_factory.mktemp("real-hub"), upstream=hub_kie.url,
                  api_key=TEACHER_KEY, quota=QUOTA, services=(SERVICE, FLOOD_SERVICE))
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()  # the hub, its proxy and both services; asserts nothing is left


@dataclass
class HubUser:
    name: str
    token: str


_serial = itertools.count(1)


@pytest.fixture()
def alice_and_bob(real_hub: RealHub) -> tuple[HubUser, HubUser]:
    """Two new hub users (``alice-N``, ``bob-N``: each test its own, so the quota each test
    sees is its own wherever pytest-xdist runs it), each with an API token from
    ``POST /hub/api/users/NAME/tokens``."""
    n = next(_serial)
    alice, bob = f"alice-{n}", f"bob-{n}"
    return HubUser(alice, real_hub.add_user(alice)), HubUser(bob, real_hub.add_user(bob))


def _generates(kie: MockKieServer) -> int:
    return len(kie.requests_to("generate"))


def _refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.json()["classProxy"] is True, answer.text


# -- a. an image through the hub ---------------------------------------------------------------


def test_a_students_hub_token_makes_an_image_through_the_hub(real_hub, alice_and_bob, hub_kie):
    alice, bob = alice_and_bob
    url = real_hub.url()
    me = httpx.get(f"{url}/class/me", headers=bearer(alice.token), timeout=30)
    assert me.status_code == 200, me.text
    assert {k: me.json()["data"][k] for k in ("student", "quota", "used", "remaining")} == {
        "student": alice.name, "quota": QUOTA, "used": 0, "remaining": QUOTA}
    # Alice as test_proxy does it: submit, then poll record-info until the task ends.
    made = submit(url, alice.token, "a fox on a hub")
    assert made.status_code == 200 and made.json()["code"] == 200, made.text
    data = wait_done(url, alice.token, made.json()["data"]["taskId"], timeout=30)
    assert data["successFlag"] == 1, data
    result = httpx.get(data["response"]["resultUrls"][0], timeout=30)
    assert result.status_code == 200 and result.content.startswith(b"\x89PNG")
    # Bob with the extension's own client, its base URL the hub's address of the service.
    with KieClient(api_key=bob.token, base_url=url, upload_url=f"{url}/upload") as client:
        task = kie_jupyter.generate("a badger on a hub", model="4o", client=client, timeout=60)
        assert task.status.value == "success", task.error
        assert task.images and task.images[0].startswith(b"\x89PNG")
        assert client.credits() == QUOTA - 1  # credit answers the images left
    used = httpx.get(f"{url}/class/me", headers=bearer(alice.token), timeout=30).json()["data"]
    assert (used["used"], used["remaining"]) == (1, QUOTA - 1)
    # KIE saw the teacher's key on every API call, and never a hub token.
    calls = [r for r in hub_kie.requests if r.path.startswith("/api/")]
    assert calls and all(r.headers.get("authorization") == f"Bearer {TEACHER_KEY}"
                         for r in calls)
    assert not any(t in str(r.headers) for r in hub_kie.requests
                   for t in (alice.token, bob.token))


# -- b. the quota per hub user -----------------------------------------------------------------


def test_b_each_hub_user_has_their_own_quota(real_hub, alice_and_bob, hub_kie):
    alice, bob = alice_and_bob
    url = real_hub.url()
    for n in range(QUOTA):
        made = submit(url, alice.token, f"fox {n}")
        assert made.status_code == 200 and made.json()["code"] == 200, made.text
    sent = _generates(hub_kie)
    refused = submit(url, alice.token, "one fox too many")
    _refused(refused, 402)
    assert refused.json()["msg"] == (f"class quota used: {QUOTA} of {QUOTA} images — ask your "
                                     "teacher")
    assert _generates(hub_kie) == sent  # nothing reached KIE
    # Bob's quota is his own.
    made = submit(url, bob.token, "bob's fox")
    assert made.status_code == 200 and made.json()["code"] == 200, made.text
    assert wait_done(url, bob.token, made.json()["data"]["taskId"], timeout=30)[
        "successFlag"] == 1
    me = httpx.get(f"{url}/class/me", headers=bearer(bob.token), timeout=30).json()["data"]
    assert (me["student"], me["used"], me["remaining"]) == (bob.name, 1, QUOTA - 1)


# -- c. a service's token ----------------------------------------------------------------------


def test_c_a_hub_service_token_is_refused(real_hub, hub_kie):
    token = real_hub.admin_token
    # The hub knows the token, as a service's (so the refusal is the proxy's rule, not a miss).
    owner = httpx.get(f"{real_hub.public_url}/hub/api/user",
                      headers={"Authorization": f"token {token}"}, timeout=30)
    assert owner.status_code == 200 and owner.json()["kind"] == "service"
    url = real_hub.url()
    sent = _generates(hub_kie)
    _refused(submit(url, token), 401)
    _refused(httpx.get(f"{url}/class/me", headers=bearer(token), timeout=30), 401)
    assert _generates(hub_kie) == sent


# -- d. a user deleted on the hub ----------------------------------------------------------------


def test_d_a_user_deleted_on_the_hub_is_refused_at_once(real_hub, alice_and_bob, hub_kie):
    alice, bob = alice_and_bob
    url = real_hub.url()
    made = submit(url, bob.token, "before")
    assert made.status_code == 200 and made.json()["code"] == 200, made.text
    real_hub.delete_user(bob.name)
    gone = httpx.get(f"{real_hub.public_url}/hub/api/user",
                     headers={"Authorization": f"token {bob.token}"}, timeout=30)
    assert gone.status_code == 403  # the hub no longer knows the token
    sent = _generates(hub_kie)
    refused = submit(url, bob.token, "after")
    _refused(refused, 401)
    assert _generates(hub_kie) == sent  # nothing was sent to KIE, nothing charged
    # Alice, still on the hub, is served.
    made = submit(url, alice.token, "alice after bob left")
    assert made.status_code == 200 and made.json()["code"] == 200, made.text


# -- e. a flood of bad tokens --------------------------------------------------------------------


def _garbage_token(rng: random.Random) -> str:
    """A wrong token: hub-looking (a uuid4's hex, the hub's own format), or any string."""
    kind = rng.randrange(4)
    if kind == 0:
        return uuid.uuid4().hex
    if kind == 1:
        return secrets.token_hex(rng.randrange(4, 33))
    if kind == 2:
        return secrets.token_urlsafe(rng.randrange(1, 48))
    alphabet = string.ascii_letters + string.digits + string.punctuation
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))


class Flood:
    """A thread sending wrong tokens to ``url`` as fast as it can (``workers`` requests in
    flight on one event loop: more than a proxy would queue), to submit, poll and /class/me
    alike."""

    def __init__(self, url: str, workers: int = 96) -> None:
        self.url = url
        self.workers = workers
        self.statuses: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()),
                                        name="bad-token-flood", daemon=True)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.workers)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            workers = [asyncio.create_task(self._worker(http, n)) for n in range(self.workers)]
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            for worker in workers:  # requests still waiting for an answer are dropped
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            headers = bearer(_garbage_token(rng))
            which = rng.randrange(3)
            try:
                if which == 0:
                    answer = await http.post(f"{self.url}/api/v1/gpt4o-image/generate",
                                             headers=headers,
                                             json={"prompt": "x", "size": "1:1"})
                elif which == 1:
                    answer = await http.get(f"{self.url}/api/v1/gpt4o-image/record-info",
                                            params={"taskId": uuid.uuid4().hex},
                                            headers=headers)
                else:
                    answer = await http.get(f"{self.url}/class/me", headers=headers)
                self.statuses[answer.status_code] += 1
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the flood did not stop"


def _paid_task(url: str, token: str, prompt: str) -> list[tuple[str, int, str]]:
    """A submit and its polls until the task ends: every answer as (what, status, body)."""
    answers = []
    made = submit(url, token, prompt)
    answers.append(("generate", made.status_code, made.text[:300]))
    if made.status_code != 200 or made.json().get("code") != 200:
        return answers
    task_id = made.json()["data"]["taskId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = record(url, token, task_id)
        answers.append(("record-info", polled.status_code, polled.text[:300]))
        if polled.status_code != 200:
            return answers
        data = polled.json().get("data") or {}
        if data.get("successFlag") in (1, 2, 3):
            answers.append(("successFlag", data["successFlag"], ""))
            return answers
        time.sleep(0.1)
    answers.append(("timeout", 0, f"task {task_id} did not finish in 30 s"))
    return answers


def test_e_a_flood_of_bad_tokens_does_not_stop_the_class(real_hub, alice_and_bob, hub_kie):
    alice, bob = alice_and_bob
    url = real_hub.url(FLOOD_SERVICE)
    sent_before = _generates(hub_kie)
    started = time.monotonic()
    with Flood(url) as flood:
        time.sleep(2.0)  # long enough for the flood to lock out the hub proxy's address
        # Tokens the proxy has never seen (a server just started, or the last check is old),
        # used while the flood goes on.
        with ThreadPoolExecutor(2) as pool:
            runs = dict(zip((alice.name, bob.name), pool.map(
                lambda user: _paid_task(url, user.token, f"{user.name}'s fox in a flood"),
                (alice, bob)), strict=True))
        time.sleep(max(0.0, FLOOD_SECONDS - (time.monotonic() - started)))
    answered = sum(v for k, v in flood.statuses.items() if isinstance(k, int))
    assert answered > 100, f"the flood hardly ran: {dict(flood.statuses)}"
    refused = {name: bad for name, answers in runs.items()
               if (bad := [a for a in answers if a[0] != "successFlag" and a[1] != 200])}
    assert not refused, (f"not served during the flood: {refused} (the flood's answers: "
                         f"{dict(flood.statuses)})")
    for name, answers in runs.items():
        assert ("successFlag", 1, "") in answers, f"{name}'s task did not succeed: {answers}"
    # Every wrong token was refused by the proxy itself: nothing of the flood reached KIE.
    assert not [k for k in flood.statuses if not isinstance(k, int) or k < 400], \
        dict(flood.statuses)
    assert _generates(hub_kie) - sent_before == 2
