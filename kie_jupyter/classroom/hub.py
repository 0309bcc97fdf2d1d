"""JupyterHub identities: a hub user's own API token instead of a roster token.

On a class hub every single-user server has ``JUPYTERHUB_API_TOKEN``. The proxy asks the hub
who owns a token with the hub's documented ``GET /hub/api/user`` (header
``Authorization: token …``) and keys the quota by the hub user name, so students need no token
of ours at all. Tokens are known by their hash (the token itself is not kept).

* Every paid submit asks the hub afresh (``fresh=True``): a user removed or stopped on the hub
  makes nothing more. Polls and downloads use a recent answer (``ttl``).
* Checks of tokens not yet known good are shared fairly: at most ``concurrency`` at once, in
  turn between the hub users the requests *claim* to be (the extension sends its
  ``JUPYTERHUB_USER`` as ``X-Kie-Hub-User``; a claim only picks the queue, the hub's answer
  decides), so garbage under one name, or none, cannot starve another student's sign-in.
  Tokens known good skip the queue. What cannot be a hub token is refused without asking, and
  the hub's refusals are remembered, so the same guess costs the hub nothing twice.

Hand-written: the queue is round-robin between claims, which no limiter library offers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import TypeVar

import httpx

__all__ = ["HubIdentity", "HubUnavailable", "HubBusy", "CLAIM_HEADER"]

log = logging.getLogger("kie_jupyter.classroom")

#: The header the extension names its hub user in (``$JUPYTERHUB_USER``): a queue, not a proof.
CLAIM_HEADER = "X-Kie-Hub-User"

#: What a hub token can look like: JupyterHub makes 32 hex digits (``uuid4().hex``); tokens an
#: admin configures are 8 to 64 characters without white space (its ``Hashed.min_length`` and
#: ``_TOKEN_MAX_LEN``, JupyterHub 6.1). Anything else is garbage.
_TOKEN = re.compile(r"[\x21-\x7e]{8,64}")
_V = TypeVar("_V")
#: Tokens remembered (good and refused), each book; the oldest are forgotten first.
_REMEMBERED = 50_000


class HubUnavailable(Exception):
    """The hub could not be asked (down, restarting, erroring): not the student's fault."""


class HubBusy(Exception):
    """Too many sign-in checks are queued under this claim: retry in a moment."""


class HubIdentity:
    """Who owns a hub API token, asked of the hub at ``api_url`` (e.g. ``…/hub/api``)."""

    def __init__(self, api_url: str, *, ttl: float = 300.0, refused_ttl: float = 600.0,
                 timeout: float = 5.0, concurrency: int = 4, queued_per_claim: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_url = api_url.rstrip("/")
        self.ttl = ttl
        self.refused_ttl = refused_ttl
        self.concurrency = concurrency
        self.queued_per_claim = queued_per_claim
        self._clock = clock
        self._good: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._ring: deque[str] = deque()
        #: Hub user names known to be real (the hub said so, or the ledger has them): only
        #: these claims get a queue of their own; any other claim shares one.
        self._names: set[str] = set()
        self._running = 0
        #: Calls made to the hub (for tests and the benchmark).
        self.asked = 0
        self._http = httpx.AsyncClient(timeout=timeout)

    @staticmethod
    def may_be_token(token: str) -> bool:
        """Whether ``token`` has the shape of a hub token (else it is refused unasked)."""
        return _TOKEN.fullmatch(token) is not None

    def remember_names(self, names: Iterable[str]) -> None:
        """Hub users known to be real (the ledger's, at start): their claims queue apart."""
        self._names.update(names)

    def known_name(self, token: str) -> str | None:
        """The hub user name of ``token`` if the hub said so lately (no call to the hub)."""
        cached = self._good.get(_digest(token))
        return cached[0] if cached is not None and cached[1] > self._clock() else None

    async def user_name(self, token: str, *, claim: str = "", fresh: bool = False) -> str | None:
        """The hub user name owning ``token``, or None when it is not a user's token; raises
        :class:`HubUnavailable` when the hub cannot say, :class:`HubBusy` when too many checks
        wait under ``claim``. ``fresh``: ask the hub even when it answered lately."""
        if not self.may_be_token(token):
            return None
        digest = _digest(token)
        now = self._clock()
        good = self._good.get(digest)
        if good is not None and not fresh and good[1] > now:
            return good[0]
        refused = self._refused.get(digest)
        if refused is not None and refused > now:
            return None
        if good is not None:  # known good (if stale): no queue
            return await self._ask(token, digest)
        # A name the hub never confirmed queues with every other such name: a flood that
        # claims a new name per guess gets one queue, not a turn per name.
        await self._turn(claim if claim in self._names else "")
        try:
            return await self._ask(token, digest)
        finally:
            self._done()

    async def _turn(self, claim: str) -> None:
        if self._running < self.concurrency and not self._ring:
            self._running += 1
            return
        queue = self._queues.setdefault(claim, deque())
        if len(queue) >= self.queued_per_claim:
            if not queue:
                del self._queues[claim]
            raise HubBusy
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        if claim not in self._ring:
            self._ring.append(claim)
        try:
            await future  # _done hands its place over: _running already counts this one
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._done()  # handed a place just as the student hung up: pass it on
            else:
                self._forget(claim, future)
            raise

    def _forget(self, claim: str, future: asyncio.Future[None]) -> None:
        queue = self._queues.get(claim)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._queues[claim]
                self._ring.remove(claim)

    def _done(self) -> None:
        """A check finished: its place goes to the next claim in turn (or is freed)."""
        while self._ring:
            claim = self._ring.popleft()
            queue = self._queues[claim]
            future = queue.popleft()
            if queue:
                self._ring.append(claim)
            else:
                del self._queues[claim]
            if not future.done():
                future.set_result(None)
                return
        self._running -= 1

    async def _ask(self, token: str, digest: str) -> str | None:
        self.asked += 1
        try:
            answer = await self._http.get(f"{self.api_url}/user",
                                          headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            log.warning("the hub could not be asked who a token is (%s)", type(exc).__name__)
            raise HubUnavailable from None  # not remembered: the next request asks again
        if answer.status_code not in (200, 401, 403):
            # Not an answer about the token (the hub failing, a proxy misrouting, a 429):
            # nothing remembered, so a good token is not refused for 10 minutes after.
            log.warning("the hub answered HTTP %d when asked who a token is",
                        answer.status_code)
            raise HubUnavailable
        name: str | None = None
        if answer.status_code == 200:
            try:
                model = answer.json()
            except ValueError:
                model = None
            value = model.get("name") if isinstance(model, dict) else None
            # A service's token also answers /user (with "kind": "service"): not a student.
            if isinstance(value, str) and value and model.get("kind", "user") == "user":
                name = value
        now = self._clock()
        self._good.pop(digest, None)
        self._refused.pop(digest, None)
        if name is not None:
            _remember(self._good, digest, (name, now + self.ttl))
            self._names.add(name)
        else:
            # A token refused stays refused: random tokens are never re-issued.
            _remember(self._refused, digest, now + self.refused_ttl)
        return name

    async def aclose(self) -> None:
        await self._http.aclose()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _remember(book: OrderedDict[str, _V], key: str, value: _V) -> None:
    book[key] = value
    while len(book) > _REMEMBERED:
        book.popitem(last=False)
