"""Upload helpers for the mock server: multipart parsing, base64 decoding, names.

The type of an upload is sniffed by ``images.sniff_mime`` (Pillow).
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import posixpath
import uuid

EXTENSIONS: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
KNOWN_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".jfif", ".pjpeg", ".pjp"})


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename or None, bytes).

    Uses the stdlib ``email`` parser (``cgi`` is gone from Python 3.13).
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def decode_base64(text: str) -> bytes:
    """Bytes of raw base64 or of a ``data:<mime>;base64,...`` URL; ``ValueError`` if invalid."""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("only base64 data URLs are supported")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 data: {exc}") from None


def clean_upload_path(path: object) -> str | None:
    """``uploadPath`` without surrounding slashes, or None if unusable (empty, ``..``)."""
    if not isinstance(path, str):
        return None
    path = path.strip().strip("/")
    parts = path.split("/")
    if not path or "\\" in path or any(p in ("", ".", "..") for p in parts):
        return None
    return path


def choose_file_name(requested: object, original: str | None, mime: str) -> str | None:
    """The stored file name: the requested one, else a fresh one keeping a known extension.

    Returns None for a requested name that is not a plain file name.
    """
    if isinstance(requested, str) and requested.strip():
        name = requested.strip()
        if "/" in name or "\\" in name or name in (".", ".."):
            return None
        return name
    suffix = posixpath.splitext(original or "")[1].lower()
    if suffix not in KNOWN_SUFFIXES:
        suffix = EXTENSIONS.get(mime, "")
    return f"{uuid.uuid4().hex[:16]}{suffix}"
