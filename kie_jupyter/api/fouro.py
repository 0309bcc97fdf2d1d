"""The 4o Image API as a :class:`~kie_jupyter.api.backend.Backend` (the first family)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .client import KieClient
from .models import GenerationRequest, TaskRecord

__all__ = ["FourOBackend"]


class FourOBackend:
    """``/api/v1/gpt4o-image/*`` over a :class:`KieClient` (which owns transport, retries,
    the rate limit, uploads and downloads)."""

    family = "4o"
    reports_progress = True
    #: Where submissions go (shown by dry runs).
    submit_path = "/api/v1/gpt4o-image/generate"

    def __init__(self, client: KieClient) -> None:
        self.client = client

    def submit(self, request: GenerationRequest, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        return self.client.generate(request, stop=stop, on_wait=on_wait)

    def poll(self, task_id: str) -> TaskRecord | None:
        # One attempt per poll: the poller's own backoff and deadline handle errors.
        return self.client.record_info(task_id, retries=False)

    def params_of(self, snapshot: Any) -> dict[str, Any]:
        api: dict[str, Any] = getattr(snapshot, "params", None) or {}
        return {
            "prompt": api.get("prompt", ""),
            "size": api.get("size", ""),
            "variants": api.get("nVariants", 1),
            "files": api.get("filesUrl") or [],
            "mask": api.get("maskUrl"),
            "enhance": bool(api.get("isEnhance", False)),
            "fallback": bool(api.get("enableFallback", False)),
            "fallback_model": api.get("fallbackModel"),
            "callback_url": api.get("callBackUrl"),
            "upload_cn": bool(api.get("uploadCn", False)),
        }

    def download_url(self, task_id: str, url: str) -> str:
        return self.client.download_url(task_id, url)
