"""Provenance in every PNG this tool writes, and reading it back.

Each PNG gets text chunks saying how it was made — the prompt, the parameters (JSON), the
model, the task id, the parent task ids (tasks whose images were inputs) and the creation time
— plus the standard ``Description`` and ``Software`` keywords that image viewers and
``exiftool`` show. ``read_provenance`` (``kie_jupyter.provenance(path)``) gives them back.

The chunks are inserted into the PNG as the API made it, without decoding and re-encoding the
pixels (Pillow can add text only by re-encoding, which changes the file and costs time on
large images): a PNG is a list of length-type-data-CRC chunks, so the new ``iTXt`` chunks go
in just before ``IEND``. JPEG and other formats are written as they are.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from .._version import __version__

__all__ = [
    "PREFIX",
    "embed_provenance",
    "provenance_fields",
    "read_provenance",
    "task_id_in",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Our keywords start with this (``kie:prompt``, ``kie:task_id``…).
PREFIX = "kie:"


def provenance_fields(*, prompt: str, params: Mapping[str, Any], model: str,
                      task_id: str | None, parents: list[str], created: str,
                      demo: bool) -> dict[str, str]:
    """The text chunks for one image (keyword → text)."""
    return {
        f"{PREFIX}prompt": prompt,
        f"{PREFIX}parameters": json.dumps(dict(params), ensure_ascii=False, sort_keys=True),
        f"{PREFIX}model": model,
        f"{PREFIX}task_id": task_id or "",
        f"{PREFIX}parents": json.dumps(parents),
        f"{PREFIX}created": created,
        f"{PREFIX}demo": "true" if demo else "false",
        "Description": prompt,
        "Software": f"kie-jupyter {__version__}",
    }


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _itxt(keyword: str, text: str) -> bytes:
    # keyword, NUL, compression flag 0, method 0, no language tag, no translated keyword
    return _chunk(b"iTXt", keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8"))


def embed_provenance(data: bytes, fields: Mapping[str, str]) -> bytes:
    """``data`` with ``fields`` as iTXt chunks if it is a PNG (else unchanged).

    Chunks of ours already there (an image saved again) are replaced, not repeated.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return data
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return data  # a damaged PNG is written as it came
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            out.extend(_itxt(k, v) for k, v in fields.items())
            out.append(data[pos:end])
            return b"".join(out)
        keyword = body.split(b"\0", 1)[0].decode("latin-1", "replace")
        if not (kind in (b"iTXt", b"tEXt", b"zTXt") and keyword in fields):
            out.append(data[pos:end])
        pos = end
    return data  # no IEND: not a PNG we understand


def task_id_in(data: bytes) -> str | None:
    """The task id recorded in PNG bytes written by this tool (None for any other image)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    try:
        found = read_provenance(io.BytesIO(data))
    except Exception:  # any image Pillow cannot read simply has no provenance
        return None
    return found.get("task_id") or None


def read_provenance(path: str | os.PathLike[str] | io.BytesIO) -> dict[str, Any]:
    """What a PNG written by this tool says of how it was made.

    Returns ``prompt``, ``parameters`` (a dict), ``model``, ``task_id``, ``parents`` (a list),
    ``created``, ``demo`` (a bool), ``software``; an empty dict for an image without ours.
    """
    from PIL import Image

    with Image.open(path) as im:
        text: dict[str, str] = dict(getattr(im, "text", {}) or {})
    ours = {k[len(PREFIX):]: v for k, v in text.items() if k.startswith(PREFIX)}
    if not ours:
        return {}
    result: dict[str, Any] = dict(ours)
    for key in ("parameters", "parents"):
        try:
            result[key] = json.loads(ours.get(key, "null"))
        except ValueError:
            pass
    result["demo"] = ours.get("demo") == "true"
    if "Software" in text:
        result["software"] = text["Software"]
    return result
