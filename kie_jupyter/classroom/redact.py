"""The teacher's key never leaves the proxy, in any spelling.

KIE never echoes the key, but an upstream error page might quote the request; the key is
masked in whatever is passed back to a student: as is, URL-quoted, and in JSON however its
characters are escaped (``\\/``, ``\\u0041``…) — a JSON body with escapes is read, masked
and written again.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["redact_key", "MASK"]

MASK = "***"


def redact_key(content: bytes, key: str) -> bytes:
    """``content`` with every spelling of ``key`` masked (``content`` itself when none)."""
    if not key or len(key) < 4:
        return content
    for form in {key, quote(key, safe=""), quote_plus(key)}:
        raw = form.encode()
        if raw in content:
            content = content.replace(raw, MASK.encode())
    if b"\\" not in content:  # no escapes: nothing else can spell it
        return content
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return content
    masked, changed = _mask(data, key)
    if not changed:
        return content
    return json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode()


def _mask(value: Any, key: str) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (value.replace(key, MASK), True) if key in value else (value, False)
    if isinstance(value, list):
        items = [_mask(v, key) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for k, v in value.items():
            new_k, c1 = _mask(k, key)
            new_v, c2 = _mask(v, key)
            out[new_k] = new_v
            changed = changed or c1 or c2
        return out, changed
    return value, False
