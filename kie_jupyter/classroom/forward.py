"""The student-facing routes: check the token, count the quota and credits, share the rate,
forward.

Answers from KIE pass through unchanged (status, body, content type); the proxy's own answers
use KIE's error shape — ``{"code", "msg", "data"}`` plus ``"classProxy": true`` — so the
extension shows the proxy's words as they are ("class quota used: 20 of 20 images — ask your
teacher"). The teacher's key goes only into the ``Authorization`` header of requests to KIE.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .admit import (
    NOTICE_HEADER,
    Charge,
    Refused,
    charge_for,
    credit_data,
    expired,
    me_data,
    notice,
    why_not_reserved,
)
from .bodies import TooLarge, read_capped
from .budget import ClassPolicy
from .endpoints import (
    CREDIT_PATH,
    ENDPOINTS,
    RECORD_OF_SUBMIT,
    UPLOAD_PATHS,
    Endpoint,
    canonical_body,
    images_asked,
    no_case_twins,
    prompt_of,
)
from .fairshare import FairShare, Grant, Overloaded
from .guard import BadTokenGuard
from .hub import CLAIM_HEADER, HubBusy, HubIdentity, HubUnavailable
from .ledger import Ledger, Reservation, Student
from .redact import redact_key
from .tokens import parse_student_token, same_hash

__all__ = ["ClassProxy", "refusal"]

log = logging.getLogger("kie_jupyter.classroom")

#: The upload by URL (KIE fetches it), and the fields forwarded from its body.
_URL_UPLOAD = "/api/file-url-upload"
_URL_UPLOAD_FIELDS = ("fileUrl", "uploadPath", "fileName")

#: Sends of one submit when KIE answers 429 (it drops such a request: nothing is charged).
_SUBMIT_TRIES = 3


def refusal(code: int, msg: str, *, retry_after: int | None = None,
            place_kept: bool = False) -> JSONResponse:
    """The proxy's own answer, in KIE's error shape (HTTP status = the code);
    ``place_kept``: a busy class kept the submit's place (the extension sends again)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body: dict[str, Any] = {"code": code, "msg": msg, "data": None, "classProxy": True}
    if place_kept:
        body["placeKept"] = True
    return JSONResponse(body, status_code=code, headers=headers)


@dataclass
class ClassProxy:
    """Everything the forwarding routes share: the ledger, the key, the upstreams, the gates."""

    ledger: Ledger
    api_key: str
    upstream: str
    upload_upstream: str
    default_quota: int = 20
    fair: FairShare = field(default_factory=FairShare)
    guard: BadTokenGuard = field(default_factory=BadTokenGuard)
    hub: HubIdentity | None = None
    #: The class's rules (credit budgets, models, reset period), written to the ledger when
    #: the proxy starts; None keeps what the ledger holds.
    policy: ClassPolicy | None = None
    #: URL prefixes a submit's ``callBackUrl`` may name (none: callbacks are refused, since
    #: KIE would post to wherever a student says on the teacher's account).
    callbacks: tuple[str, ...] = ()
    #: Largest JSON body accepted on the API endpoints, and largest upload.
    max_body: int = 256 * 1024
    max_upload: int = 36 * 1024 * 1024
    #: Seconds from a submit's arrival within which it is sent to KIE (fair-share wait,
    #: resends after KIE's 429): under the student's read timeout (30 s), so that no task is
    #: sent after its student has given up. KIE's answer is then awaited up to
    #: ``read_timeout``, past the deadline if need be: a task KIE made is recorded (and
    #: charged to its student) even if the student's client stopped waiting for it.
    submit_deadline: float = 25.0
    read_timeout: float = 30.0
    upload_timeout: float = 120.0
    http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never the key
        return f"ClassProxy(upstream={self.upstream!r}, ledger={str(self.ledger.path)!r})"

    async def start(self) -> None:
        if self.policy is not None:
            self.ledger.set_policy(self.policy)
        self.ledger.roll_period()
        # What a stopped (or killed) proxy left: reservations that never reached KIE go
        # back; KIE's window and who was served carry on.
        released, unsure = self.ledger.recover()
        if released or unsure:
            log.warning("at start: %d reservation(s) that never reached KIE given back; %d "
                        "sent with no answer kept charged (unsure, see the teacher page)",
                        released, unsure)
        wall = time.time()
        self.fair.restore(self.ledger.recent_submits(wall - 2 * self.fair.per - 120.0),
                          self.ledger.served(), wall)
        self.fair.on_idle = self.ledger.clear_served
        if self.hub is not None:
            self.hub.remember_names(self.ledger.hub_names())
        if self.http is None:
            # Nagle off: a request's head and body go in two writes, and the second would wait
            # for a delayed ACK (40 ms) on every forwarded POST.
            transport = httpx.AsyncHTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
            self.http = httpx.AsyncClient(timeout=httpx.Timeout(self.read_timeout, connect=5.0),
                                          follow_redirects=False, transport=transport)

    async def stop(self) -> None:
        self.fair.close()
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.hub is not None:
            await self.hub.aclose()

    # -- who is asking ------------------------------------------------------------------------

    async def student_for(self, request: Request, *, paid: bool = False) -> Student | Response:
        """The student behind the request's token, or the refusal to send.

        A valid token is always served at once, whatever else arrives (a class shares one
        address behind a hub, so nothing is kept per address). Wrong tokens are answered in
        one paced queue (:class:`.guard.BadTokenGuard`). A hub login is checked with the hub
        afresh for every ``paid`` request (a submit), from a recent answer otherwise.
        """
        self.ledger.roll_period()  # a new day (or week) starts with nothing used
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            parsed = parse_student_token(token)
            if parsed is not None:
                row = self.ledger.student(parsed.student_id)
                if row is not None and same_hash(parsed.secret,
                                                 self.ledger.token_hash(row.id)):
                    if row.revoked:
                        return refusal(401, "this class token was revoked — ask your teacher")
                    return self._unexpired(row)
            elif self.hub is not None:
                try:
                    name = await self.hub.user_name(
                        token, claim=request.headers.get(CLAIM_HEADER, ""), fresh=paid)
                except HubUnavailable:
                    return refusal(503, "the class could not check your hub login (the hub "
                                        "did not answer); try again in a minute")
                except HubBusy:
                    return refusal(429, "many sign-ins are being checked: retry in a few "
                                        "seconds", retry_after=2)
                if name is not None:
                    student = self.ledger.hub_student(name, self.default_quota)
                    if student.revoked:
                        return refusal(401, "your class access was revoked — ask your "
                                            "teacher")
                    return self._unexpired(student)
        if not await self.guard.refused():
            return refusal(429, "too many wrong class tokens are being tried right now — "
                                "check your token with your teacher and retry in a minute",
                           retry_after=60)
        return refusal(401, "class token not recognised — check the token your teacher gave "
                            "you")

    def _unexpired(self, student: Student) -> Student | Response:
        late = expired(self.ledger, student)
        return student if late is None else refusal(late.code, late.msg)

    def _passthrough(self, answer: httpx.Response, notice: str | None = None) -> Response:
        content = redact_key(answer.content, self.api_key)
        headers = {}
        if "retry-after" in answer.headers:
            headers["Retry-After"] = answer.headers["retry-after"]
        if notice:
            headers[NOTICE_HEADER] = notice.encode("ascii", "replace").decode()
        return Response(content, status_code=answer.status_code, headers=headers,
                        media_type=answer.headers.get("content-type", "application/json"))

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    # -- routes ---------------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        """``GET /class/me``: who the token is, their images and credits left, their
        rules."""
        student = await self.student_for(request)
        if isinstance(student, Response):
            return student
        return JSONResponse({"code": 200, "msg": "success",
                             "data": me_data(self.ledger, student)})

    async def credit(self, request: Request) -> Response:
        """``GET /api/v1/chat/credit``: the student's remaining images (not the account's),
        or their credits left when the class counts credits (:func:`.admit.credit_data`)."""
        student = await self.student_for(request)
        if isinstance(student, Response):
            return student
        return JSONResponse({"code": 200, "msg": "success",
                             "data": credit_data(self.ledger, student)})

    async def api(self, request: Request) -> Response:
        """Every path under ``/api/v1``: forwarded when it is in :data:`ENDPOINTS`."""
        arrived = time.monotonic()
        path = "/api/v1/" + request.path_params["rest"]
        if path == CREDIT_PATH and request.method == "GET":
            return await self.credit(request)
        endpoint = ENDPOINTS.get(path)
        if endpoint is None or endpoint.method != request.method:
            return refusal(404, f"the class proxy does not forward {request.method} {path}")
        student = await self.student_for(request, paid=endpoint.kind == "submit")
        if isinstance(student, Response):
            return student
        try:
            body = await read_capped(request, self.max_body) if request.method == "POST" else b""
        except TooLarge:
            return refusal(413, f"request too large for the class proxy "
                                f"(over {self.max_body // 1024} KB)")
        if endpoint.kind == "submit":
            return await self._submit(path, student, body, arrived)
        if endpoint.kind == "record":
            return await self._record(path, endpoint, student, request)
        return await self._download(path, endpoint, student, body)

    async def upload(self, request: Request) -> Response:
        """``POST /upload/api/file-*-upload``: KIE's File Upload API, size-capped."""
        path = "/" + request.path_params["rest"]
        if path not in UPLOAD_PATHS or request.method != "POST":
            return refusal(404, f"the class proxy does not forward {request.method} "
                                f"/upload{path}")
        student = await self.student_for(request)
        if isinstance(student, Response):
            return student
        if path == _URL_UPLOAD:
            return await self._url_upload(path, student, request)
        too_large = refusal(413, "upload too large for the class proxy "
                                 f"(over {self.max_upload // (1024 * 1024)} MB)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_upload:
            return too_large
        sent = [0]

        async def capped() -> Any:
            # Streamed through, never held whole: thirty students' uploads at once stay small.
            async for chunk in request.stream():
                sent[0] += len(chunk)
                if sent[0] > self.max_upload:
                    raise TooLarge
                yield chunk

        headers = self._headers(request.headers.get("content-type"))
        if declared.isdigit():
            headers["Content-Length"] = declared
        assert self.http is not None
        try:
            answer = await self.http.post(self.upload_upstream + path, content=capped(),
                                          headers=headers, timeout=self.upload_timeout)
        except TooLarge:
            return too_large
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__ or exc.__context__, TooLarge):
                return too_large
            return self._unreachable(exc, "upload")
        log.info("%s: upload %s (%d bytes) → %d", student.name, path, sent[0],
                 answer.status_code)
        return self._passthrough(answer)

    async def _url_upload(self, path: str, student: Student, request: Request) -> Response:
        """KIE's upload service fetches a URL: only a result of the student's own class
        tasks (else KIE would fetch wherever a student says, on the teacher's account); the
        body is re-written from the fields checked."""
        try:
            data = json.loads(await read_capped(request, self.max_body))
            if not isinstance(data, Mapping):
                raise ValueError
            no_case_twins(data, tuple(_URL_UPLOAD_FIELDS))
        except TooLarge:
            return refusal(413, "request too large for the class proxy")
        except (ValueError, RecursionError):
            return refusal(400, "the class proxy could not read this request (a JSON object "
                                "with fileUrl)")
        sent = {k: data[k] for k in _URL_UPLOAD_FIELDS if k in data}
        if any(not isinstance(v, str) for v in sent.values()):
            return refusal(400, "fileUrl, uploadPath and fileName are strings")
        url = sent.get("fileUrl", "")
        if not url or not self.ledger.owns_url(student.id, url):
            return refusal(403, "fileUrl: only the results of your own class tasks can be "
                                "fetched by KIE through the class (upload a file instead)")
        assert self.http is not None
        try:
            answer = await self.http.post(self.upload_upstream + path,
                                          content=canonical_body(sent),
                                          headers=self._headers("application/json"))
        except httpx.HTTPError as exc:
            return self._unreachable(exc, "upload")
        log.info("%s: upload %s (a result of theirs) → %d", student.name, path,
                 answer.status_code)
        return self._passthrough(answer)

    # -- the three kinds --------------------------------------------------------------------

    async def _submit(self, path: str, student: Student, body: bytes,
                      arrived: float) -> Response:
        # One deadline, from the request's arrival (a slow hub lookup counts), for sending:
        # the student's client gives up reading after 30 s, and a task sent after that would
        # be charged with no one to follow it.
        deadline = arrived + self.submit_deadline
        if self.ledger.paused:
            return refusal(403, "the class is paused by your teacher — try again later "
                                "(nothing was charged)")
        try:
            data = json.loads(body)
            if not isinstance(data, Mapping):
                raise ValueError("not a JSON object")
            images = images_asked(path, data)
            self._check_callback(data)
            body = canonical_body(data)  # KIE reads exactly what was checked
        except (ValueError, RecursionError) as exc:
            return refusal(400, f"the class proxy refused this request: {exc} (nothing was "
                                "charged)")
        charge = charge_for(self.ledger, student, path, data, images)
        if isinstance(charge, Refused):
            return refusal(charge.code, charge.msg)
        held = self.ledger.reserve_pending(student.id, images, charge.credits, path)
        if held is None:
            why = why_not_reserved(self.ledger, student, charge)
            return refusal(why.code, why.msg)
        charge = replace(charge, period=held.period)
        for attempt in range(1, _SUBMIT_TRIES + 1):
            turn = await self._turn(student, charge, held, deadline)
            if isinstance(turn, Response):
                return turn
            grant, submit = turn
            assert self.http is not None
            left = deadline - time.monotonic()
            try:
                answer = await self.http.post(
                    self.upstream + path, content=body,
                    headers=self._headers("application/json"),
                    # Sent within the deadline (a free connection included); KIE's answer
                    # is then awaited up to read_timeout, past the deadline if need be.
                    timeout=httpx.Timeout(self.read_timeout, connect=min(5.0, max(left, 1.0)),
                                          pool=max(left, 0.1)))
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # No connection, so the request never left: nothing made, nothing charged.
                self._give_back(student, charge, held)
                return self._unreachable(exc, "submit")
            except httpx.HTTPError as exc:
                # It may have arrived and made a task we cannot name: keep the images
                # reserved (the teacher's money first), list it for the teacher, and say so.
                self.ledger.unsure(held.pending)
                log.warning("%s: submit to %s had no answer (%s); %d image(s) kept reserved",
                            student.name, path, type(exc).__name__, images)
                return refusal(504, "KIE did not answer the class proxy in time; the task may "
                                    "still have been made — do not resend, ask your teacher")
            finally:
                # KIE has counted it by now: the slot counts from here, here and in the ledger.
                self.fair.settle(grant)
                self.ledger.answered(submit)
            # KIE drops (never queues or charges) a submit over the account's rate: a clock
            # skew between its window and ours. Take the student's next turn and send again.
            if not _rate_limited(answer) or attempt == _SUBMIT_TRIES:
                break
            self.ledger.requeue(held.pending)  # nothing made: a stop now gives it back
            log.info("%s: KIE said 429; sending again in the student's next turn", student.name)
        return self._submitted(path, student, charge, held, data, answer)

    def _check_callback(self, data: Mapping[str, Any]) -> None:
        """Refuse a ``callBackUrl`` (KIE would post there on the teacher's account) unless
        the teacher allowed its prefix; raises ValueError."""
        no_case_twins(data, ("callBackUrl",))
        url = data.get("callBackUrl")
        if url is None or url == "":
            return
        if isinstance(url, str) and any(url.startswith(p) for p in self.callbacks):
            return
        raise ValueError("callBackUrl: callbacks are not sent through the class (the "
                         "extension follows the task itself; drop --callback-url)")

    def _give_back(self, student: Student, charge: Charge, held: Reservation) -> None:
        self.ledger.release(student.id, charge.images, charge.credits, charge.period,
                            pending=held.pending)

    async def _turn(self, student: Student, charge: Charge, held: Reservation,
                    deadline: float) -> Response | tuple[Grant, int]:
        """Wait for the student's fair turn within the deadline: the grant (to settle once
        KIE answers) and its ``submits`` row, or the refusal when there is none (the images
        given back). Pause and revocation are checked again after the wait."""
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise Overloaded(self.fair.retry_after)
            grant = await self.fair.acquire(student.id, max_wait=min(self.fair.max_wait, left))
        except Overloaded as exc:
            self._give_back(student, charge, held)
            return refusal(429, "the class is busy: your place in the queue is kept — "
                                f"sending again in {exc.retry_after} s",
                           retry_after=exc.retry_after, place_kept=True)
        except BaseException:
            self._give_back(student, charge, held)
            raise
        try:
            now = self.ledger.student(student.id)
            if self.ledger.paused or now is None or now.revoked:
                self.fair.settle(grant)  # not sent
                self._give_back(student, charge, held)
                if self.ledger.paused:
                    return refusal(403, "the class is paused by your teacher — try again "
                                        "later (nothing was charged)")
                return refusal(401, "this class token was revoked — ask your teacher")
            return grant, self.ledger.sending(held.pending, student.id)
        except BaseException:
            self.fair.settle(grant)  # not sent
            self._give_back(student, charge, held)
            raise

    def _submitted(self, path: str, student: Student, charge: Charge, held: Reservation,
                   data: Mapping[str, Any], answer: httpx.Response) -> Response:
        """Record the task KIE made, or give the images (and credits) back when KIE surely
        made none."""
        images = charge.images
        envelope = _envelope(answer)
        task_id = _task_id(envelope)
        if task_id is not None:
            self.ledger.record_task(task_id, student.id, path, images, prompt_of(data),
                                    model=charge.model, credits=charge.credits,
                                    period=charge.period, pending=held.pending)
            log.info("%s: %s → task %s (%d image(s), %s)", student.name, path, task_id,
                     images, charge.cost.short())
            return self._passthrough(answer, notice(self.ledger, student.id))
        if envelope is None or (answer.status_code >= 500 and envelope.get("code") == 200):
            # Not KIE's envelope (a gateway page, a cut-off body): the task may exist.
            self.ledger.unsure(held.pending)
            log.warning("%s: %s answered HTTP %d without KIE's envelope; %d image(s) kept "
                        "reserved", student.name, path, answer.status_code, images)
            return self._passthrough(answer)
        self._give_back(student, charge, held)
        log.info("%s: %s refused by KIE (code %s)", student.name, path, envelope.get("code"))
        if envelope.get("code") == 402:
            return refusal(402, "the class's KIE account is out of credits — tell your "
                                "teacher (nothing was charged to your quota)")
        return self._passthrough(answer)

    async def _record(self, path: str, endpoint: Endpoint, student: Student,
                      request: Request) -> Response:
        task_id = request.query_params.get("taskId", "")
        row = self.ledger.task(task_id) if task_id else None
        if row is None or row.student_id != student.id \
                or RECORD_OF_SUBMIT.get(row.endpoint) != path:
            return refusal(404, f"task {task_id or '(none)'} is not one of yours in this class")
        assert self.http is not None
        try:
            answer = await self.http.get(self.upstream + path, params={"taskId": task_id},
                                         headers=self._headers(None))
        except httpx.HTTPError as exc:
            return self._unreachable(exc, "record")
        self._settle(endpoint, task_id, answer)
        return self._passthrough(answer)

    def _settle(self, endpoint: Endpoint, task_id: str, answer: httpx.Response) -> None:
        try:
            payload = answer.json()
        except (ValueError, RecursionError):
            return
        if not isinstance(payload, Mapping):  # null, a list, a string: not KIE's envelope
            return
        data = payload.get("data")
        if payload.get("code") != 200 or not isinstance(data, Mapping) or endpoint.record is None:
            return
        try:
            record = endpoint.record(data, task_id)
        except Exception:  # a malformed record settles nothing; the student's client says so
            return
        # Every family's record has it (None where KIE does not report it).
        consumed = getattr(record, "credits_consumed", None)
        reported = (float(consumed) if isinstance(consumed, (int, float))
                    and not isinstance(consumed, bool) else None)
        if record.failed and self.ledger.task_failed(task_id, reported):
            log.info("task %s failed at KIE: images given back, and credits%s", task_id,
                     "" if reported is None else f" less the {reported:g} KIE reported")
        elif record.succeeded and record.urls:  # 4o may say SUCCESS a poll before its URLs
            self.ledger.task_succeeded(task_id, record.urls)
            if reported is not None and self.ledger.task_reported(task_id, reported):
                log.info("task %s: KIE reported %s credits", task_id, reported)

    async def _download(self, path: str, endpoint: Endpoint, student: Student,
                        body: bytes) -> Response:
        """A download link for one of the student's own results: the body is read, checked
        and re-written (only the fields checked reach KIE), and its URL must be one KIE made
        for a task of theirs."""
        try:
            data = json.loads(body)
            if not isinstance(data, Mapping):
                raise ValueError
            no_case_twins(data, ("taskId", "url"))
        except (ValueError, RecursionError):
            return refusal(400, "the class proxy could not read this request (a JSON object "
                                "with url" + (" and taskId" if endpoint.owns_task else "") + ")")
        url = data.get("url")
        if not isinstance(url, str) or not url:
            return refusal(400, "url: the result's URL is needed")
        sent: dict[str, str] = {}
        if endpoint.owns_task:
            task_id = data.get("taskId")
            row = self.ledger.task(task_id) if isinstance(task_id, str) and task_id else None
            if row is None or row.student_id != student.id:
                return refusal(404, f"task {task_id} is not one of yours in this class")
            if url not in row.urls:
                return refusal(403, "url: not a result of that task")
            sent["taskId"] = task_id  # type: ignore[assignment]  # checked above: a str
        elif not self.ledger.owns_url(student.id, url):
            return refusal(403, "url: only the results of your own class tasks can be "
                                "downloaded through the class")
        sent["url"] = url
        assert self.http is not None
        try:
            answer = await self.http.post(self.upstream + path, content=canonical_body(sent),
                                          headers=self._headers("application/json"))
        except httpx.HTTPError as exc:
            return self._unreachable(exc, "download")
        return self._passthrough(answer)

    def _unreachable(self, exc: httpx.HTTPError, what: str) -> Response:
        log.warning("%s: KIE unreachable (%s)", what, type(exc).__name__)
        timed_out = isinstance(exc, httpx.TimeoutException)
        return refusal(504 if timed_out else 502,
                       f"the class proxy could not reach KIE ({type(exc).__name__}); "
                       "try again in a minute")


def _rate_limited(answer: httpx.Response) -> bool:
    if answer.status_code == 429:
        return True
    try:
        payload = answer.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("code") == 429


def _envelope(answer: httpx.Response) -> dict[str, Any] | None:
    """KIE's JSON envelope (``{"code", "msg", "data"}``), or None when the answer is not one."""
    try:
        payload = answer.json()
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) and "code" in payload else None


def _task_id(envelope: Mapping[str, Any] | None) -> str | None:
    """The new task's id when KIE took the submit, else None."""
    if envelope is None or envelope.get("code") != 200:
        return None
    data = envelope.get("data")
    task_id = data.get("taskId") if isinstance(data, dict) else None
    return str(task_id) if task_id else None
