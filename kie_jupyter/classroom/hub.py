"""JupyterHub identities: a hub user's own API token instead of a roster token.

On a class hub every single-user server has ``JUPYTERHUB_API_TOKEN``. The proxy asks the hub
who owns a token with the hub's documented ``GET /hub/api/user`` (header
``Authorization: token …``) and keys the quota by the hub user name, so students need no token
of ours at all. Answers are cached for a few minutes, keyed by the token's hash (the token
itself is not kept).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import httpx

__all__ = ["HubIdentity", "HubUnavailable"]


class HubUnavailable(Exception):
    """The hub could not be asked (down, restarting, erroring): not the student's fault."""

log = logging.getLogger("kie_jupyter.classroom")


class HubIdentity:
    """Who owns a hub API token, asked of the hub at ``api_url`` (e.g. ``…/hub/api``)."""

    def __init__(self, api_url: str, *, ttl: float = 300.0, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_url = api_url.rstrip("/")
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._http = httpx.AsyncClient(timeout=timeout)

    def known_name(self, token: str) -> str | None:
        """The hub user name of ``token`` if the hub said so lately (no call to the hub)."""
        cached = self._cache.get(hashlib.sha256(token.encode()).hexdigest())
        return cached[0] if cached is not None and cached[1] > self._clock() else None

    async def user_name(self, token: str) -> str | None:
        """The hub user name owning ``token``, or None when the hub does not know it; raises
        :class:`HubUnavailable` when the hub cannot say."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            answer = await self._http.get(f"{self.api_url}/user",
                                          headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            log.warning("the hub could not be asked who a token is (%s)", type(exc).__name__)
            raise HubUnavailable from None  # not cached: the next request asks again
        if answer.status_code >= 500:
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
        if len(self._cache) > 10_000:
            self._cache.clear()
        # A refusal is cached briefly only, so a hub restart does not lock students out long.
        self._cache[digest] = (name, now + (self.ttl if name else 10.0))
        return name

    async def aclose(self) -> None:
        await self._http.aclose()
