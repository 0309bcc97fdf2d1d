"""Request bodies read with a cap: the proxy's JSON bodies and the teacher page's forms."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["TooLarge", "read_capped"]


class TooLarge(Exception):
    """The body is over its cap (said by its Content-Length, or found while reading)."""


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or :class:`TooLarge` past ``limit`` bytes (reading no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
