"""``KieClient``: the transport every API family shares, over requests.

It owns the key, the envelope check, retries, the submission rate limit, the File Upload API,
result downloads, KIE's common download-url endpoint and the credit balance; each family's own
endpoints live in its module (:mod:`.fouro`, :mod:`.market`, :mod:`.kontext`) and go through
:meth:`KieClient.call`. Plain Python, no IPython. The envelope check
(:meth:`KieClient._check`), the sending loop (:meth:`KieClient._send`) and the retry rule
(:func:`~kie_jupyter.api.retry.is_transient`) each live in one place:

* reads (record-info, credit, download URLs, uploads, image downloads) retry timeouts,
  connection errors, 429 and 5xx with exponential backoff and jitter, honouring ``Retry-After``;
* a submission (``kind="submit"``: 4o's generate, the Market's createTask, Flux Kontext's
  generate) is retried only when the server surely did not take the request: a 429 (the API
  drops, not queues, rate-limited requests) or a connection that was never made. Never after
  the request may have reached the server, so a task is never started (and charged) twice.

Size: over 400 lines because transport, the envelope check, uploads and downloads share one
session and one retry loop; uploads and downloads are the next to move to a module of their
own (their retry rule is already :func:`~kie_jupyter.api.retry.is_transient`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from .._version import __version__
from . import fouro
from .errors import (
    DownloadError,
    KieAPIError,
    KieConfigError,
    KieConnectionError,
    KieError,
    KieTimeoutError,
    KieUsageError,
    MalformedResponseError,
    SubmissionCancelled,
    api_error_for,
    redact,
)
from .models import GenerationRequest, TaskRecord, download_link, is_http_url
from .ratelimit import SlidingWindowLimiter, submit_limiter
from .retry import RetryPolicy, backoff_delay, is_transient, parse_retry_after

if TYPE_CHECKING:
    import requests

# requests (with urllib3) and Pillow (image checks) are imported when the first request is
# sent, not with this module: ``%load_ext`` builds a client to say which endpoint it uses and
# must stay fast (benchmarks/bench_load.py).
__all__ = ["KieClient", "DEFAULT_BASE_URL", "DEFAULT_UPLOAD_URL", "NOTICE_HEADER"]

#: The header a class proxy puts a word to the student in ("you have used 160 of 200
#: credits"); the task keeps it and its card shows it.
NOTICE_HEADER = "X-Kie-Class-Notice"
#: The hub user a class proxy's sign-in check is queued under (``$JUPYTERHUB_USER``).
CLAIM_HEADER = "X-Kie-Hub-User"
#: Times a class proxy may say "your place is kept, send again" for one submit (about 25 s
#: each): a class of 300 on a 20-per-10-s account needs about six.
_QUEUE_RESENDS = 60

log = logging.getLogger("kie_jupyter")

DEFAULT_BASE_URL = "https://api.kie.ai"
DEFAULT_UPLOAD_URL = "https://kieai.redpandaai.co"
#: Result images larger than this are refused (the API's own inputs are capped at 25 MiB).
DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
#: uploadPath for our uploads (no leading or trailing slash, as the API requires).
UPLOAD_PATH = "kie-jupyter"

#: Bytes asked for per read of an image body (a read returns what one socket read brings).
_DOWNLOAD_CHUNK = 64 * 1024

Kind = Literal["read", "submit"]


def _never_connected() -> tuple[type[BaseException], ...]:
    """Errors in a failed request's cause chain that show the connection was never made."""
    import urllib3

    return (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError,
            ConnectionRefusedError)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked_base(url: str, what: str) -> str:
    """A base URL we may send the key to: https, or http only to this machine."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KieConfigError(f"{what}: {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise KieConfigError(
            f"{what}: refusing to send the API key over plain http to {parts.hostname}; "
            "use https (plain http is allowed only for 127.0.0.1/localhost)"
        )
    return url.strip().rstrip("/")


def _connection_refused(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made, so the request cannot have arrived."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    never = _never_connected()
    # requests wraps urllib3's MaxRetryError (in ``args``), which holds the real error in
    # ``reason``; a socket error may sit further down as a cause or context.
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, never):
            return True
        stack.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return False


def _place_kept(err: KieError) -> bool:
    """Whether a class proxy answered "busy, your place is kept: send again"."""
    body = getattr(err, "body", None)
    return isinstance(body, dict) and body.get("classProxy") is True \
        and body.get("placeKept") is True


class _Answer(NamedTuple):
    """An HTTP answer as plain data (the response, and its socket, already released)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes

    @classmethod
    def of(cls, response: requests.Response) -> _Answer:
        try:
            return cls(response.status_code, response.reason or "", response.headers,
                       response.content)
        finally:
            response.close()


class KieClient:
    """A client for KIE.AI's APIs: the transport of every family's endpoints (:meth:`call`;
    the families' backends send them), the File Upload API, result downloads and credits.

    Settings come from the arguments, then the environment, then defaults:
    ``api_key`` (``KIE_API_KEY``), ``base_url`` (``KIE_BASE_URL``, default
    ``https://api.kie.ai``), ``upload_url`` (``KIE_UPLOAD_URL``, default
    ``https://kieai.redpandaai.co``). The key is sent only to those two hosts, never over
    plain http except to loopback, and never appears in a repr, log line or error.

    >>> client = KieClient()                      # doctest: +SKIP
    >>> client.credits()                          # doctest: +SKIP
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        upload_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        user_agent: str | None = None,
        retry: RetryPolicy | None = None,
        limiter: SlidingWindowLimiter | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        download_timeout: float = 120.0,
        sleep: Callable[[float], None] | None = None,
        session: requests.Session | None = None,
        demo: bool = False,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("KIE_API_KEY")
        self._api_key = check_key(key)
        self.base_url = _checked_base(
            base_url or os.environ.get("KIE_BASE_URL") or DEFAULT_BASE_URL, "base URL"
        )
        self.upload_url = _checked_base(
            upload_url or os.environ.get("KIE_UPLOAD_URL") or DEFAULT_UPLOAD_URL, "upload URL"
        )
        self.timeout = (connect_timeout, read_timeout)
        self.user_agent = user_agent or f"kie-jupyter/{__version__}"
        self.retry = retry or RetryPolicy()
        self.limiter = limiter if limiter is not None else submit_limiter
        self.max_download_bytes = max_download_bytes
        #: Total seconds one image download may take (a slow trickle is cut off).
        self.download_timeout = download_timeout
        self._closed = threading.Event()
        #: Per thread: the last answer's notice (see :meth:`notice`).
        self._notices = threading.local()
        # Retry waits end at once when the client is closed (``%unload_ext``).
        self._sleep = sleep or self._closed.wait
        self._rng = random.Random()
        self._own_session = session is None
        # Made on first use (see the imports above): a client that sends nothing costs nothing.
        self._session_obj = session
        self._session_lock = threading.Lock()
        #: True when this client talks to the bundled demo server (synthetic images, no
        #: credit): tasks and history entries carry it so a demo result is never taken for real.
        self.demo = bool(demo)

    @property
    def _session(self) -> requests.Session:
        """The HTTP session (connection pool), made on first use."""
        session = self._session_obj
        if session is None:
            with self._session_lock:
                if self._session_obj is None:
                    self._session_obj = self._new_session()
                session = self._session_obj
        return session

    @staticmethod
    def _new_session() -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        s = requests.Session()
        # Retries are ours (one policy); the adapter must never resend a request by itself.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.trust_env = False  # no netrc or proxy auth that could override our header
        return s

    # -- introspection -------------------------------------------------------------------

    @property
    def has_key(self) -> bool:
        """Whether a key is configured (the key itself is never exposed by this object)."""
        return self._api_key is not None

    def secret_for_redaction(self) -> str | None:
        """The key, only so that error text can be scrubbed of it (never shown)."""
        return self._api_key

    def masked_key(self) -> str:
        """The key as ``sk-…abcd`` for display (at most the last four characters)."""
        if not self._api_key:
            return "(none)"
        tail = self._api_key[-4:] if len(self._api_key) >= 12 else ""
        head = self._api_key[:3] if len(self._api_key) >= 12 else ""
        return f"{head}…{tail}"

    def __repr__(self) -> str:
        key = "set" if self.has_key else "missing"
        demo = ", demo=True" if self.demo else ""
        return (f"KieClient(base_url={self.base_url!r}, upload_url={self.upload_url!r}, "
                f"key={key}{demo})")

    def close(self) -> None:
        """Close pooled connections (only those of a session this client created)."""
        self._closed.set()
        if self._own_session and self._session_obj is not None:
            self._session_obj.close()

    def __enter__(self) -> KieClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one place requests are sent and retried -------------------------------------

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        host = urlsplit(url).netloc
        trusted = {urlsplit(self.base_url).netloc, urlsplit(self.upload_url).netloc}
        if host in trusted:
            if not self._api_key:
                raise KieConfigError("no API key: set KIE_API_KEY", fix="key")
            headers["Authorization"] = f"Bearer {self._api_key}"
            hub_user = os.environ.get("JUPYTERHUB_USER")
            if hub_user and self.base_url != DEFAULT_BASE_URL:  # a class on a hub, not KIE
                headers[CLAIM_HEADER] = quote(hub_user, safe="")
        return headers

    def _send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        kind: Kind = "read",
        json: Any = None,
        params: dict[str, str] | None = None,
        files: Any = None,
        data: Any = None,
        retries: bool = True,
        stop: threading.Event | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> Any:
        """Send one API request under the retry policy; return the envelope's ``data``.

        ``retries=False`` makes one attempt (the poller has its own backoff); ``stop`` ends a
        wait for a submission slot without sending anything; ``on_wait`` hears of that wait
        (see :meth:`SlidingWindowLimiter.acquire_open`).
        """
        import requests

        attempt = 0
        resends = 0
        max_retries = self.retry.max_retries if retries else 0
        while True:
            if self._closed.is_set():
                raise KieConfigError(f"{endpoint}: the client was closed (extension unloaded)")
            slot = None
            try:
                if kind == "submit":
                    slot = self.limiter.acquire_open(stop, on_wait=on_wait)
                    if slot is None:
                        raise SubmissionCancelled(endpoint)
                try:
                    response = self._session.request(
                        method,
                        url,
                        headers=self._headers(url),
                        json=json,
                        params=params,
                        files=files,
                        data=data,
                        timeout=self.timeout,
                    )
                finally:
                    if slot is not None:  # answered (or failed): it arrived by now if ever
                        self.limiter.settle(slot)
                # Keep only plain data: an error's traceback keeps its frames (and their
                # locals) alive until the garbage collector runs; a socket must not wait.
                answer = _Answer.of(response)
                del response
                log.debug("%s %s -> HTTP %s", method, endpoint, answer.status)
                self._notices.text = self._notice_of(answer)
                return self._check(answer, endpoint)
            except KieConfigError:
                raise
            except requests.exceptions.Timeout as exc:
                connect = isinstance(exc, requests.exceptions.ConnectTimeout)
                err: KieError = KieTimeoutError(
                    f"{endpoint} did not answer within {self.timeout[0 if connect else 1]:g} s",
                    endpoint,
                    refused=connect,
                )
            except requests.exceptions.ConnectionError as exc:
                refused = _connection_refused(exc)
                what = "could not connect to" if refused else "lost the connection to"
                err = KieConnectionError(
                    f"{what} {urlsplit(url).netloc} ({endpoint})", endpoint, refused=refused
                )
            except requests.exceptions.RequestException as exc:
                # A body cut off mid-way (ChunkedEncodingError, ContentDecodingError...): the
                # request reached the server. The exception's text is not kept (it can quote
                # headers).
                err = KieConnectionError(
                    f"broken answer from {urlsplit(url).netloc} ({endpoint}: "
                    f"{type(exc).__name__})", endpoint, refused=False,
                )
            except (KieAPIError, MalformedResponseError) as exc:
                err = exc
            if max_retries and resends < _QUEUE_RESENDS and _place_kept(err):
                # A class proxy kept this submit's place in its queue: send again as told;
                # a long queue is not a failing server, so this is not counted as a retry.
                resends += 1
                self._sleep(min(getattr(err, "retry_after", None) or 1.0, 5.0))
                continue
            if not is_transient(err, kind) or attempt >= max_retries:
                raise err
            retry_after = getattr(err, "retry_after", None)
            if retry_after is not None and retry_after > self.retry.max_retry_after:
                raise err
            delay = backoff_delay(attempt, self.retry, retry_after, self._rng)
            log.info("retrying %s in %.2f s after: %s", endpoint, delay, err)
            self._sleep(delay)
            attempt += 1

    def _notice_of(self, answer: _Answer) -> str | None:
        """A class proxy's word to the student (``X-Kie-Class-Notice``), one clean line."""
        raw = answer.headers.get(NOTICE_HEADER)
        if not raw:
            return None
        text = "".join(c for c in " ".join(str(raw).split()) if c.isprintable())
        return redact(text, self._api_key)[:200] or None

    def notice(self) -> str | None:
        """What the server said to the user with the last answer this thread received (a
        class proxy's budget warning), if anything."""
        return getattr(self._notices, "text", None)

    def _check(self, answer: _Answer, endpoint: str) -> Any:
        """The envelope check: the body ``code`` first (errors come as HTTP 200), then HTTP."""
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        try:
            body = json.loads(answer.content) if answer.content else None
        except ValueError:
            body = None
        status = answer.status
        if isinstance(body, dict) and isinstance(body.get("code"), (int, str)):
            try:
                code = int(body["code"])
            except ValueError:
                code = status
            # Some servers echo the key they were sent ("invalid key sk-..."): scrub it.
            # The Market's recordInfo says ``message`` where every other endpoint says ``msg``.
            msg = redact(str(body.get("msg") or body.get("message") or ""), self._api_key)
            if code != 200 or body.get("success") is False:
                code = code if code != 200 else (status if status >= 400 else 500)
                raise api_error_for(
                    code, msg, endpoint, http_status=status, retry_after=retry_after, body=body
                )
            if status >= 400:
                raise api_error_for(
                    status, msg, endpoint, http_status=status, retry_after=retry_after, body=body
                )
            return body.get("data")
        if status >= 400:
            raise api_error_for(
                status, answer.reason, endpoint, http_status=status, retry_after=retry_after,
            )
        text = answer.content[:80].decode("utf-8", "replace").replace("\n", " ")
        snippet = text if answer.content else "an empty body"
        snippet = redact(snippet, self._api_key)
        raise MalformedResponseError(endpoint, f"not a JSON envelope ({snippet!r})",
                                     http_status=status)

    # -- any JSON endpoint on the API host ---------------------------------------------

    def call(self, method: str, path: str, endpoint: str, *, json: Any = None,
             params: dict[str, str] | None = None, kind: Kind = "read", retries: bool = True,
             stop: threading.Event | None = None,
             on_wait: Callable[[float], None] | None = None) -> Any:
        """Send one JSON request to ``path`` on the API host; return the envelope's ``data``.

        The transport of every API family (4o, Market jobs, Flux Kontext): the same envelope
        check, retry rule and key handling. ``kind="submit"`` marks a request that starts (and
        charges) a task: it waits for the process-wide submission limiter (``stop`` cancels
        that wait with nothing sent, ``on_wait`` hears of it) and is retried only when the
        server surely did not take it, never after it may have arrived (no double charge).
        ``retries=False`` makes one attempt (the poller has its own backoff). ``endpoint``
        names the call in errors and logs.
        """
        if not path.startswith("/") or "://" in path:
            raise KieUsageError(f"{endpoint}: path {path!r} must start with / (on the API host)")
        return self._send(method, f"{self.base_url}{path}", endpoint, kind=kind, json=json,
                          params=params, retries=retries, stop=stop, on_wait=on_wait)

    # -- the 4o Image API: its endpoints live in .fouro; these hand-offs stay for code that
    # drives the client alone, without a backend (tests/api/test_client.py,
    # benchmarks/bench_detection.py's baseline loop), and ``download_url`` is public API.

    def generate(self, request: GenerationRequest, *,
                 stop: threading.Event | None = None,
                 on_wait: Callable[[float], None] | None = None) -> str:
        """Create a 4o task; return its ``taskId`` (:func:`.fouro.generate`)."""
        return fouro.generate(self, request, stop=stop, on_wait=on_wait)

    def record_info(self, task_id: str, *, retries: bool = True) -> TaskRecord | None:
        """One snapshot of a 4o task, None while it has no record yet
        (:func:`.fouro.record_info`)."""
        return fouro.record_info(self, task_id, retries=retries)

    def download_url(self, task_id: str, url: str) -> str:
        """A direct download URL for one result image of a 4o task
        (:func:`.fouro.download_url`)."""
        return fouro.download_url(self, task_id, url)

    # -- shared by every family ----------------------------------------------------------

    def common_download_url(self, url: str) -> str:
        """A direct download URL for any KIE file URL."""
        data = self._send(
            "POST", f"{self.base_url}/api/v1/common/download-url", "common-download-url",
            json={"url": url},
        )
        return download_link(data, "common-download-url")

    def credits(self) -> float:
        """The account's credit balance."""
        data = self._send("GET", f"{self.base_url}/api/v1/chat/credit", "credit")
        if isinstance(data, dict):
            data = data.get("credits", data.get("balance"))
        try:
            return float(data)
        except (TypeError, ValueError) as exc:
            raise MalformedResponseError("credit", "the balance is not a number") from exc

    # -- the File Upload API -------------------------------------------------------------

    def upload_file(self, path: str | os.PathLike[str], *, upload_path: str = UPLOAD_PATH,
                    file_name: str | None = None) -> str:
        """Upload a local image (stream upload); return its public URL."""
        from .imagedata import read_image_file

        return self.upload_stream(read_image_file(path), file_name or Path(path).name,
                                  upload_path=upload_path)

    def upload_stream(self, data: bytes, file_name: str = "image.png", *,
                      upload_path: str = UPLOAD_PATH) -> str:
        """Upload image bytes as multipart (any size up to 25 MiB); return the public URL."""
        from .imagedata import check_image_bytes, mime_of, unique_name

        check_image_bytes(data, file_name)
        name = unique_name(file_name)
        answer = self._send(
            "POST",
            f"{self.upload_url}/api/file-stream-upload",
            "file-stream-upload",
            files={"file": (name, data, mime_of(data))},
            data={"uploadPath": upload_path, "fileName": name},
        )
        return self._uploaded_url(answer, "file-stream-upload")

    def upload_bytes(self, data: bytes, file_name: str = "image.png", *,
                     upload_path: str = UPLOAD_PATH) -> str:
        """Upload a small in-memory image as base64; return its public URL."""
        from .imagedata import check_image_bytes, mime_of, unique_name

        check_image_bytes(data, file_name)
        payload = f"data:{mime_of(data)};base64," + base64.b64encode(data).decode("ascii")
        answer = self._send(
            "POST",
            f"{self.upload_url}/api/file-base64-upload",
            "file-base64-upload",
            json={"base64Data": payload, "uploadPath": upload_path,
                  "fileName": unique_name(file_name)},
        )
        return self._uploaded_url(answer, "file-base64-upload")

    def upload_from_url(self, url: str, *, upload_path: str = UPLOAD_PATH,
                        file_name: str | None = None) -> str:
        """Have the upload service fetch ``url``; return the stored file's URL."""
        body: dict[str, str] = {"fileUrl": url, "uploadPath": upload_path}
        if file_name:
            body["fileName"] = file_name
        answer = self._send("POST", f"{self.upload_url}/api/file-url-upload", "file-url-upload",
                            json=body)
        return self._uploaded_url(answer, "file-url-upload")

    @staticmethod
    def _uploaded_url(data: Any, endpoint: str) -> str:
        if isinstance(data, dict):
            url = data.get("downloadUrl") or data.get("fileUrl")
            if is_http_url(url):
                return url
        raise MalformedResponseError(endpoint, "no downloadUrl in the answer")

    # -- result images -------------------------------------------------------------------

    def fetch_image(self, url: str) -> bytes:
        """Download one result image: http(s) only, size-capped, must be an image.

        Retried like any read (:func:`~kie_jupyter.api.retry.is_transient`). Never sends the
        key (result files live on a CDN). A body that stops arriving for the read timeout
        fails that try; one still incomplete after ``download_timeout`` seconds is refused.
        """
        if not is_http_url(url):
            raise DownloadError(str(url), "not an http(s) URL")
        attempt = 0
        while True:
            try:
                return self._fetch_once(url)
            except DownloadError as exc:
                if not is_transient(exc, "read") or attempt >= self.retry.max_retries:
                    raise
                self._sleep(backoff_delay(attempt, self.retry, None, self._rng))
                attempt += 1

    def _fetch_once(self, url: str) -> bytes:
        import requests
        import urllib3

        from .imagedata import sniff_image

        headers = {"User-Agent": self.user_agent, "Accept": "image/*"}
        try:
            # stream=True: the read timeout applies to each socket read of the body, so a
            # stalled body fails a read instead of hanging; the deadline below bounds a trickle.
            with self._session.get(url, headers=headers, timeout=self.timeout,
                                   stream=True) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise DownloadError(url, f"HTTP {status}", transient=True)
                if status >= 400:
                    raise DownloadError(url, f"HTTP {status}")
                declared = response.headers.get("Content-Length", "")
                expected = int(declared) if declared.isdigit() else None
                if expected is not None and expected > self.max_download_bytes:
                    raise DownloadError(url, f"larger than {self.max_download_bytes} bytes")
                # Content-Length counts the encoded bytes: compare it with the body only when
                # the body is not encoded (a gzip-encoded image would always look truncated).
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    expected = None
                deadline = time.monotonic() + self.download_timeout
                chunks: list[bytes] = []
                size = 0
                for chunk in _body_chunks(response):
                    if time.monotonic() > deadline:
                        raise DownloadError(
                            url, f"too slow: not complete after {self.download_timeout:g} s")
                    size += len(chunk)
                    if size > self.max_download_bytes:
                        raise DownloadError(url, f"larger than {self.max_download_bytes} bytes")
                    chunks.append(chunk)
                ctype = response.headers.get("Content-Type", "unknown type")
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                OSError) as exc:
            # A dropped connection, a read timeout, a broken chunk: the exception's text is not
            # kept (it can quote the URL's query and headers).
            raise DownloadError(url, type(exc).__name__, transient=True) from None
        # Joined once at its final size: no image-sized buffer grows, moves and is dropped
        # on the way (in a download thread's own allocator arena, that would be left behind
        # as a hole the size of an image; the chunks are small and reused).
        data = b"".join(chunks)
        del chunks
        if expected is not None and expected != len(data):
            raise DownloadError(url, f"truncated ({len(data)} of {expected} bytes)",
                                transient=True)
        if sniff_image(data) is None:
            raise DownloadError(url, f"not an image ({ctype})")
        return data


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """A streamed body, decoded, as it arrives.

    urllib3's ``read1`` returns after at most one socket read, so a deadline checked between
    items is overshot by no more than one read timeout, even by a server that trickles a few
    bytes at a time. Older urllib3 (no ``read1``) falls back to requests' ``iter_content``.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(_DOWNLOAD_CHUNK)
        return
    while chunk := read1(_DOWNLOAD_CHUNK, decode_content=True):
        yield chunk


def check_key(key: str | None) -> str | None:
    """The key stripped, or None; refuse one that cannot be sent in a header (no echo)."""
    if not key or not key.strip():
        return None
    key = key.strip()
    if not key.isascii() or not key.isprintable() or " " in key:
        raise KieConfigError(
            "the API key contains spaces, line breaks or non-ASCII characters; "
            "copy it again from https://kie.ai/api-key"
        )
    return key
