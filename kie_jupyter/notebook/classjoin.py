"""``%kie4o class URL``: join a class proxy from a student's kernel; ``%kie4o class off`` leaves.

The proxy (``kie4o class serve``, ``kie_jupyter.classroom``) speaks KIE's API at ``URL``
(``URL/api/v1/…``) and the upload API at ``URL/upload``, with each student's token as the
key, and tells a student where they stand at ``GET URL/class/me``::

    {"code": 200, "msg": "success",
     "data": {"student": "alice", "quota": 20, "used": 3, "remaining": 17, "paused": false}}

Joining asks that once (a refused token changes nothing), then points this kernel's
``base_url``, ``upload_url`` and key at the class — in memory only; the token is never
printed, stored or put in the notebook. Everything else (panel, sweeps, history, gallery)
is unchanged. The same works with no magic at all: ``KIE_BASE_URL=URL``,
``KIE_UPLOAD_URL=URL/upload``, ``KIE_API_KEY=<token>``.
"""

from __future__ import annotations

import getpass
import os
import weakref
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from IPython.core.error import StdinNotImplementedError, UsageError

from ..api.client import KieClient
from ..api.errors import KieConfigError, KieError
from ..fakeapi.demo import DemoServer

__all__ = ["join", "leave", "joined", "UPLOAD_PATH", "ME_PATH"]

#: Where the proxy serves KIE's File Upload API, under the class's URL.
UPLOAD_PATH = "/upload"
#: Where the proxy says who the token belongs to and how much quota is left.
ME_PATH = "/class/me"


class ClassHost(Protocol):
    """What ``%kie4o class`` uses of the ``Kie4o`` magics (its traits and in-memory key)."""

    demo: DemoServer
    base_url: str | None
    upload_url: str | None
    _api_key: str | None

    def load_message(self, continued: bool = False) -> str: ...


#: Per magics instance: the settings before joining (restored by ``class off``) and the
#: class's URL. In memory only, never written anywhere.
_joined: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, Any, Any], str]] = (
    weakref.WeakKeyDictionary())


def class_url(raw: str) -> str:
    """The class's URL without a trailing slash; a one-line error if it is not one."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"%kie4o class: {raw!r} is not an http(s) URL with a host, e.g. "
                         "`%kie4o class https://class.example.org`")
    if parts.query or parts.fragment:
        raise UsageError(f"%kie4o class: {raw!r}: give the class's address without ? or #")
    return url


def _token(token_env: str | None) -> str:
    """The student's token: ``--token-env NAME``, else ``JUPYTERHUB_API_TOKEN``, else asked
    with a hidden prompt. Never echoed."""
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise UsageError(f"%kie4o class --token-env: ${token_env} is not set; nothing "
                             "changed")
        return token
    hub = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
    if hub:
        return hub
    try:
        token = getpass.getpass("Class token (hidden): ").strip()
    except (StdinNotImplementedError, EOFError):
        raise UsageError("%kie4o class: this front end cannot ask for input (no terminal); "
                         "put the token in an environment variable and add "
                         "`--token-env NAME`") from None
    if not token:
        raise UsageError("%kie4o class: no token entered; nothing changed")
    return token


def _whoami(url: str, token: str) -> dict[str, Any]:
    """``GET URL/class/me`` once; the proxy's refusal as one line."""
    try:
        client = KieClient(token, base_url=url, upload_url=url + UPLOAD_PATH)
    except KieConfigError as exc:  # plain http to another machine, a token with spaces…
        raise UsageError(f"%kie4o class: {exc}; nothing changed") from None
    try:
        me = client.call("GET", ME_PATH, "class/me", retries=False)
    except KieError as exc:
        why = getattr(exc, "msg", None) or str(exc)
        if getattr(exc, "code", None) in (401, 403):
            raise UsageError(f"%kie4o class: the class at {url} refused the token: {why}; "
                             "nothing changed") from None
        raise UsageError(f"%kie4o class: no class answered at {url} ({why}); nothing "
                         "changed") from None
    finally:
        client.close()
    if not isinstance(me, dict):
        raise UsageError(f"%kie4o class: {url} did not answer like a class proxy (no student "
                         "in its /class/me); nothing changed")
    return me


def join(host: ClassHost, raw_url: str, *, token_env: str | None = None,
         demo_off: Callable[[Any], None]) -> None:
    """Check the token with the class, then point this kernel at it (``demo_off(host)``
    first when demo mode is on: the class is a live endpoint)."""
    url = class_url(raw_url)
    token = _token(token_env)
    me = _whoami(url, token)
    if host.demo.running:
        demo_off(host)
        print("kie4o: demo mode off: the class is this kernel's endpoint now")
    previous = _joined[host][0] if host in _joined else (
        host.base_url, host.upload_url, host._api_key)
    host.base_url, host.upload_url, host._api_key = url, url + UPLOAD_PATH, token
    _joined[host] = (previous, url)
    student = str(me.get("student") or "a student")
    quota, remaining = me.get("quota"), me.get("remaining")
    left = (f" — {remaining} of {quota} images left"
            if isinstance(quota, int) and isinstance(remaining, int) else "")
    paused = "; the teacher has paused the class for now" if me.get("paused") else ""
    print(f"kie4o: connected to the class at {url} as {student}{left}{paused}. "
          "`%kie4o class off` to leave.")


def joined(host: Any) -> str | None:
    """The URL of the class this kernel joined with ``%kie4o class``, if any."""
    found = _joined.get(host)
    return found[1] if found else None


def leave(host: ClassHost) -> None:
    """Go back to the settings the kernel had before ``%kie4o class URL``."""
    joined = _joined.pop(host, None)
    if joined is None:
        print("kie4o: not in a class (`%kie4o class URL` joins one)")
        return
    (host.base_url, host.upload_url, host._api_key), url = joined
    print(f"kie4o: left the class at {url}; " + host.load_message().removeprefix("kie4o: "))
