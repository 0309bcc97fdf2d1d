"""``%kie4o class URL``: join a class proxy from a student's kernel; ``%kie4o class off`` leaves.

The proxy (``kie4o class serve``, ``kie_jupyter.classroom``) speaks KIE's API at ``URL``
(``URL/api/v1/…``) and the upload API at ``URL/upload``, with each student's token as the
key, and tells a student where they stand at ``GET URL/class/me``::

    {"code": 200, "msg": "success",
     "data": {"student": "alice", "quota": 20, "used": 3, "remaining": 17, "paused": false}}

The token is ``--token-env NAME``'s, else asked with a hidden prompt. ``JUPYTERHUB_API_TOKEN``
can act as the student on their hub, so it is sent unasked only to a service of the hub itself
(the class's origin is one of ``JUPYTERHUB_PUBLIC_URL``, ``JUPYTERHUB_PUBLIC_HUB_URL``,
``JUPYTERHUB_API_URL`` and its path is under the hub's ``services/``), or anywhere with
``--hub-token``; a class on the hub that refuses it
(a proxy with its own roster) gets the hidden prompt once instead.

Joining asks ``/class/me`` once (a refused token changes nothing), then points this kernel's
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
from urllib.parse import unquote, urlsplit

from IPython import get_ipython
from IPython.core.error import StdinNotImplementedError, UsageError

from ..api.client import KieClient
from ..api.errors import KieConfigError, KieError
from ..api.prices import format_credits
from ..fakeapi.demo import DemoServer
from ..session import Session

__all__ = ["join", "leave", "joined", "joined_class", "on_the_hub", "park", "unpark",
           "HUB_URL_ENVS", "UPLOAD_PATH", "ME_PATH"]

#: Where the proxy serves KIE's File Upload API, under the class's URL.
UPLOAD_PATH = "/upload"
#: Where the proxy says who the token belongs to and how much quota is left.
ME_PATH = "/class/me"


class ClassHost(Protocol):
    """What ``%kie4o class`` uses of the ``Kie4o`` magics (its traits and its session)."""

    session: Session
    base_url: str | None
    upload_url: str | None

    @property
    def demo(self) -> DemoServer: ...

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


#: Where a single-user server on a JupyterHub learns the hub's own addresses: a class at one
#: of these origins is a hub service, the only place the hub token is sent unasked.
HUB_URL_ENVS = ("JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_API_URL")
_HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL, the default port filled in; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def on_the_hub(url: str) -> bool:
    """Whether ``url`` is a service of this server's JupyterHub: the hub's origin (one of
    :data:`HUB_URL_ENVS`) and a path under the hub's ``services/`` (``JUPYTERHUB_BASE_URL``,
    ``/`` by default).

    The hub token can act as the student on the hub, so it goes unasked only to a service the
    hub's admin set up, never to any other address a notebook names — not even one on the hub's
    origin: on a hub without subdomains, ``/user/NAME/proxy/PORT`` is another user's server.
    """
    origin = _origin(url)
    hubs = {_origin(os.environ[name]) for name in HUB_URL_ENVS if os.environ.get(name)}
    if origin is None or origin not in hubs:
        return False
    segments = [unquote(part) for part in urlsplit(url.strip()).path.split("/") if part]
    if any(part in (".", "..") or "/" in part for part in segments):
        return False  # a path that a server might resolve elsewhere
    base = [part for part in os.environ.get("JUPYTERHUB_BASE_URL", "/").split("/") if part]
    return (len(segments) > len(base) + 1 and segments[:len(base)] == base
            and segments[len(base)] == "services")


def _ask() -> str:
    """The class token, asked with a hidden prompt (never echoed)."""
    try:
        token = getpass.getpass("Class token (hidden): ").strip()
    except (StdinNotImplementedError, EOFError):
        raise UsageError("%kie4o class: this front end cannot ask for input (no terminal); "
                         "put the token in an environment variable and add "
                         "`--token-env NAME`") from None
    if not token:
        raise UsageError("%kie4o class: no token entered; nothing changed")
    return token


def _token(url: str, token_env: str | None, hub_token: bool) -> tuple[str, bool]:
    """The student's token and whether it is the hub token taken unasked.

    ``--token-env NAME``, else ``--hub-token`` (``$JUPYTERHUB_API_TOKEN``), else the hub token
    when the class is on the hub itself (:func:`on_the_hub`), else asked with a hidden prompt.
    """
    if token_env and hub_token:
        raise UsageError("%kie4o class: --token-env and --hub-token both name the token; give "
                         "one")
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise UsageError(f"%kie4o class --token-env: ${token_env} is not set; nothing "
                             "changed")
        return token, False
    hub = os.environ.get(_HUB_TOKEN_ENV, "").strip()
    if hub_token:
        if not hub:
            raise UsageError(f"%kie4o class --hub-token: ${_HUB_TOKEN_ENV} is not set (this "
                             "server is not on a JupyterHub); nothing changed")
        return hub, False
    if hub and on_the_hub(url):
        return hub, True
    return _ask(), False


class _Refused(UsageError):
    """The class answered 401 or 403 to the token."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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
        code = getattr(exc, "code", None)
        if code in (401, 403):
            raise _Refused(f"%kie4o class: the class at {url} refused the token: {why}; "
                           "nothing changed", code) from None
        raise UsageError(f"%kie4o class: no class answered at {url} ({why}); nothing "
                         "changed") from None
    finally:
        client.close()
    if not isinstance(me, dict):
        raise UsageError(f"%kie4o class: {url} did not answer like a class proxy (no student "
                         "in its /class/me); nothing changed")
    return me


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def standing(me: dict[str, Any]) -> str:
    """Where a student stands, from ``/class/me``: ``188 of 200 class credits left · 18 of
    20 images left`` (credits only when the class counts them)."""
    parts = []
    credits, left = me.get("credits"), me.get("creditsRemaining")
    if isinstance(credits, (int, float)) and isinstance(left, (int, float)) \
            and _number(credits) and _number(left):
        parts.append(f"{format_credits(float(left))} of {format_credits(float(credits))} "
                     "class credits left")
    quota, remaining = me.get("quota"), me.get("remaining")
    if isinstance(quota, int) and isinstance(remaining, int):
        parts.append(f"{remaining} of {quota} images left")
    return " · ".join(parts)


def standing_now(client: KieClient) -> str:
    """:func:`standing` asked of the joined class now (empty if it does not answer)."""
    try:
        me = client.call("GET", ME_PATH, "class/me", retries=False)
    except KieError:
        return ""
    return standing(me) if isinstance(me, dict) else ""


def join(host: ClassHost, raw_url: str, *, token_env: str | None = None,
         hub_token: bool = False, demo_off: Callable[[Any], None]) -> None:
    """Check the token with the class, then point this kernel at it (``demo_off(host)``
    first when demo mode is on: the class is a live endpoint)."""
    url = class_url(raw_url)
    token, automatic = _token(url, token_env, hub_token)
    try:
        me = _whoami(url, token)
    except _Refused as refused:
        # A proxy on the hub may keep its own roster (set-up A on a hub): it does not know
        # hub logins, so ask for the class token once instead.
        if not (automatic and refused.code == 401):
            raise
        print(f"kie4o: the class at {url} does not take your hub login; give your class "
              "token")
        token = _ask()
        me = _whoami(url, token)
    if host.demo.running:
        demo_off(host)
        print("kie4o: demo mode off: the class is this kernel's endpoint now")
    previous = _joined[host][0] if host in _joined else (
        host.base_url, host.upload_url, host.session.api_key)
    host.base_url, host.upload_url, host.session.api_key = url, url + UPLOAD_PATH, token
    _joined[host] = (previous, url)
    student = str(me.get("student") or "a student")
    left = standing(me)
    left = f" — {left}" if left else ""
    paused = "; the teacher has paused the class for now" if me.get("paused") else ""
    print(f"kie4o: connected to the class at {url} as {student}{left}{paused}. "
          "`%kie4o class off` to leave.")


#: A joined class handed from an unloaded ``%kie4o`` to a load later in the same cell
#: (``%reload_ext``), by shell: ``((previous settings, url), (base_url, upload_url, token),
#: forget)``. In memory only; dropped when the cell ends unclaimed (a plain ``%unload_ext``).
_parked: dict[int, tuple[tuple[tuple[Any, Any, Any], str], tuple[Any, Any, Any],
                         Callable[..., None]]] = {}


def park(shell: Any, host: ClassHost) -> None:
    """``%unload_ext``: keep the class ``host`` joined for a load later in this cell."""
    found = _joined.pop(host, None)
    events = getattr(shell, "events", None)
    if found is None or events is None:
        return

    def forget_unclaimed(*_: Any) -> None:
        events.unregister("post_run_cell", forget_unclaimed)
        _parked.pop(id(shell), None)

    earlier = _parked.pop(id(shell), None)
    if earlier is not None:
        events.unregister("post_run_cell", earlier[2])
    _parked[id(shell)] = (found, (host.base_url, host.upload_url, host.session.api_key),
                          forget_unclaimed)
    events.register("post_run_cell", forget_unclaimed)


def unpark(shell: Any, host: ClassHost) -> str | None:
    """A load after an unload in the same cell: the new ``host`` takes over the class parked
    for ``shell``; its URL (None: none was parked)."""
    parked = _parked.pop(id(shell), None)
    if parked is None:
        return None
    (previous, url), (host.base_url, host.upload_url, host.session.api_key), forget = parked
    shell.events.unregister("post_run_cell", forget)
    _joined[host] = (previous, url)
    return url


def joined(host: Any) -> str | None:
    """The URL of the class this kernel joined with ``%kie4o class``, if any."""
    found = _joined.get(host)
    return found[1] if found else None


def joined_class(shell: Any = None) -> str | None:
    """The URL of the class this kernel's ``%kie4o`` joined (``%kie4o class URL``), else None.

    For a notebook that turns demo mode on by itself: a kernel in a class keeps its class
    (``%kie4o demo`` refuses while in one)::

        from kie_jupyter.notebook.classjoin import joined_class
        if not os.environ.get("KIE_API_KEY") and not joined_class():
            %kie4o demo
    """
    if shell is None:
        shell = get_ipython()
    manager = getattr(shell, "magics_manager", None)
    magics = manager.registry.get("Kie4o") if manager is not None else None
    return joined(magics) if magics is not None else None


def leave(host: ClassHost, *, say: bool = True) -> str | None:
    """Go back to the settings the kernel had before ``%kie4o class URL``; the class's URL
    (None: not in a class). ``say=False`` leaves the one line to the caller."""
    joined = _joined.pop(host, None)
    if joined is None:
        if say:
            print("kie4o: not in a class (`%kie4o class URL` joins one)")
        return None
    (host.base_url, host.upload_url, host.session.api_key), url = joined
    if say:
        print(f"kie4o: left the class at {url}; "
              + host.load_message().removeprefix("kie4o: "))
    return url
