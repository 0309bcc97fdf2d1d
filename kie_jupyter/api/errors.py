"""One error tree for kie-jupyter.

Every error derives from :class:`KieError`. API errors carry the body ``code``, the server's
``msg`` and the endpoint they came from, and their message names the fix. The table that maps
an API code to a class lives here and nowhere else (:func:`api_error_for`).

No error message ever contains the API key: messages are built from server text and our own
words only, and :func:`redact` scrubs a key out of any text that might hold one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KieError",
    "KieUsageError",
    "KieConfigError",
    "KieAPIError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "NotFoundError",
    "TaskNotFoundError",
    "ValidationError",
    "RateLimitError",
    "InputImageError",
    "MaintenanceError",
    "ServerError",
    "GenerationFailedError",
    "FeatureDisabledError",
    "QueueFullError",
    "ClassRefusalError",
    "KieConnectionError",
    "KieTimeoutError",
    "MalformedResponseError",
    "SubmissionCancelled",
    "TaskFailedError",
    "TaskTimeoutError",
    "DownloadError",
    "api_error_for",
    "redact",
]


class KieError(Exception):
    """Root of every error raised by kie-jupyter.

    ``fix`` names what the user can do, in front-end-neutral words: ``"key"`` (set a key),
    ``"credits"`` (top up), ``"options"`` (check the options), ``"resume"`` (follow the task
    again later), or None. Messages never name a front end's command; each front end adds its
    own (the notebook ``%kie4o login``, the shell ``kie4o --resume ID``): see :mod:`.hints`.
    """

    fix: str | None = None


class KieUsageError(KieError, ValueError):
    """Bad input, caught before any request is sent (nothing was spent)."""


class KieConfigError(KieError):
    """The configuration cannot work (no key, a key over plain http, a bad URL)."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        if fix is not None:
            self.fix = fix
        super().__init__(message)


class KieAPIError(KieError):
    """The API answered with an error code (in the body ``code`` or the HTTP status)."""

    #: What the user can do about it; appended to the message.
    hint: str = ""

    def __init__(
        self,
        code: int,
        msg: str,
        endpoint: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        self.code = code
        self.msg = msg or ""
        self.endpoint = endpoint
        self.http_status = http_status
        self.retry_after = retry_after
        self.body = body
        text = f"KIE API error {code} from {endpoint}"
        if self.msg:
            text += f": {self.msg}"
        if self.hint:
            text += f" — {self.hint}"
        super().__init__(text)


class BadRequestError(KieAPIError):
    """400: the request was malformed or refused by the content policy."""

    hint = "check the prompt and the input images"


class AuthenticationError(KieAPIError):
    """401: the key is missing or wrong."""

    hint = "set KIE_API_KEY (get a key at https://kie.ai/api-key)"
    fix = "key"


class InsufficientCreditsError(KieAPIError):
    """402: not enough credits for this request."""

    hint = "top up your KIE.AI credits"
    fix = "credits"


class NotFoundError(KieAPIError):
    """404: no such resource."""

    hint = "check the task id or URL"


class TaskNotFoundError(NotFoundError):
    """The API knows no task with this id (it answers 422 "record is null")."""

    hint = "check the task id; task records are kept for two months"


class ValidationError(KieAPIError):
    """422: the API refused the request's parameters."""

    hint = "check the options"
    fix = "options"


class RateLimitError(KieAPIError):
    """429: rate limited; the request was dropped, not queued."""

    hint = "too many requests (the limit is 20 generations per 10 s); wait and retry"


class InputImageError(KieAPIError):
    """451: the API could not fetch an input image."""

    hint = "make sure each input image URL is public and reachable"


class MaintenanceError(KieAPIError):
    """455: the service is under maintenance."""

    hint = "the service is under maintenance; retry later"


class ServerError(KieAPIError):
    """500 and other 5xx: a server-side error."""

    hint = "a server error at KIE.AI; retry later"


class GenerationFailedError(KieAPIError):
    """501: generation failed."""

    hint = "the generation failed; try again or change the prompt"


class FeatureDisabledError(KieAPIError):
    """505: the feature is disabled for this account."""

    hint = "this feature is disabled for your account"


class QueueFullError(KieAPIError):
    """550: the queue is full and the task was rejected."""

    hint = "KIE.AI's queue is full; retry in a minute"


class ClassRefusalError(KieAPIError):
    """A class proxy said no (quota used, token refused, class paused…), in its own words.

    The proxy marks its answers with ``"classProxy": true``; its message is meant for the
    student as it is ("class quota used: 20 of 20 images — ask your teacher"), so no hint about
    KIE is added.
    """

    def __init__(self, code: int, msg: str, endpoint: str, **kwargs: Any) -> None:
        super().__init__(code, msg, endpoint, **kwargs)
        self.args = (self.msg or f"the class proxy refused the request ({code})",)


class KieConnectionError(KieError):
    """The server could not be reached, or dropped the connection."""

    def __init__(self, message: str, endpoint: str, *, refused: bool = False) -> None:
        self.endpoint = endpoint
        #: True when the connection was refused, so the request surely never arrived.
        self.refused = refused
        super().__init__(message)


class KieTimeoutError(KieConnectionError):
    """The server did not answer in time (the request may have arrived)."""


class SubmissionCancelled(KieError):
    """A generate was stopped while it waited for a submission slot: nothing was sent."""

    def __init__(self, endpoint: str = "generate") -> None:
        self.endpoint = endpoint
        super().__init__("stopped before the request was sent (nothing was charged)")


class MalformedResponseError(KieError):
    """The server answered with something that is not the API's JSON envelope."""

    def __init__(self, endpoint: str, detail: str, *, http_status: int | None = None) -> None:
        self.endpoint = endpoint
        self.http_status = http_status
        super().__init__(f"unexpected answer from {endpoint}: {detail}")


class TaskFailedError(KieError):
    """A task ended without images; carries the API's own reason."""

    def __init__(self, task_id: str | None, code: int | None, message: str) -> None:
        self.task_id = task_id
        self.code = code
        self.message = message
        where = f"task {task_id}" if task_id else "the task"
        reason = f"{message} (error {code})" if code is not None else message
        super().__init__(f"{where} failed: {reason}")


class TaskTimeoutError(KieError):
    """The local timeout ran out; the task may still finish on the server."""

    fix = "resume"

    def __init__(self, task_id: str, timeout: float, last_error: str | None = None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.last_error = last_error
        why = f" (the last poll failed: {last_error})" if last_error else ""
        super().__init__(
            f"task {task_id} did not finish within {timeout:g} s{why}; "
            "it may still finish and can be resumed"
        )


class DownloadError(KieError):
    """An image could not be downloaded (or was not an acceptable image).

    ``transient`` is True when another try may succeed (a server error, a dropped or
    truncated body); :func:`~kie_jupyter.api.retry.is_transient` reads it.
    """

    def __init__(self, url: str, reason: str, *, transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.transient = transient
        super().__init__(f"could not download {url}: {reason}")


_CODE_TO_CLASS: dict[int, type[KieAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitError,
    451: InputImageError,
    455: MaintenanceError,
    500: ServerError,
    501: GenerationFailedError,
    505: FeatureDisabledError,
    550: QueueFullError,
}


def api_error_for(
    code: int,
    msg: str,
    endpoint: str,
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
    body: Any = None,
) -> KieAPIError:
    """Build the error for an API ``code`` (the one place the table is read)."""
    if isinstance(body, dict) and body.get("classProxy") is True and code != 429:
        # A 429 stays a RateLimitError: the class is busy, and the client waits its turn.
        cls: type[KieAPIError] = ClassRefusalError
    elif code == 422 and "record is null" in (msg or "").lower():
        cls = TaskNotFoundError
    elif code == 404 and endpoint == "record-info":
        # A plain 404 for a task id is the same "unknown task" (the poller's grace needs it).
        cls = TaskNotFoundError
    elif code in _CODE_TO_CLASS:
        cls = _CODE_TO_CLASS[code]
    elif 500 <= code < 600:
        cls = ServerError
    else:
        cls = KieAPIError
    return cls(code, msg, endpoint, http_status=http_status, retry_after=retry_after, body=body)


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with every occurrence of ``secret`` replaced by a mask."""
    if secret and len(secret) >= 4 and secret in text:
        return text.replace(secret, "***")
    return text
