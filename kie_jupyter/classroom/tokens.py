"""Class tokens: minted at random, shown once, stored only as a hash, checked in constant time.

A student token reads ``kc_<id>_<secret>``: the id finds the student's row, and the secret's
SHA-256 is compared with :func:`hmac.compare_digest`. The secret is 32 random bytes, so a plain
hash (no salt, no slow KDF) is enough: there is nothing to guess from it. The teacher's token
is ``kt_<secret>``, hashed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["StudentToken", "mint_student_token", "mint_teacher_token", "parse_student_token",
           "teacher_secret", "hash_secret", "same_hash", "new_student_id"]

_STUDENT_PREFIX = "kc_"
_TEACHER_PREFIX = "kt_"


def new_student_id() -> str:
    """A short random id for a student's row (part of their token, not a secret)."""
    return secrets.token_hex(5)


def hash_secret(secret: str) -> str:
    """The stored form of a token's secret part."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_hash(secret: str, stored: str | None) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    return stored is not None and hmac.compare_digest(hash_secret(secret), stored)


class StudentToken:
    """A parsed ``kc_<id>_<secret>`` token."""

    __slots__ = ("student_id", "secret")

    def __init__(self, student_id: str, secret: str) -> None:
        self.student_id = student_id
        self.secret = secret

    def __repr__(self) -> str:  # never the secret
        return f"StudentToken({self.student_id!r}, ***)"


def mint_student_token(student_id: str) -> tuple[str, str]:
    """A new token for ``student_id``: (the token to hand out once, the hash to store)."""
    secret = secrets.token_urlsafe(32)
    return f"{_STUDENT_PREFIX}{student_id}_{secret}", hash_secret(secret)


def mint_teacher_token() -> tuple[str, str]:
    """A new teacher token: (the token to show once, the hash to store)."""
    secret = secrets.token_urlsafe(32)
    return f"{_TEACHER_PREFIX}{secret}", hash_secret(secret)


def parse_student_token(token: str) -> StudentToken | None:
    """The parts of a student token, or None when ``token`` is not one."""
    if not token.startswith(_STUDENT_PREFIX):
        return None
    student_id, sep, secret = token[len(_STUDENT_PREFIX):].partition("_")
    if not sep or not student_id or not secret:
        return None
    return StudentToken(student_id, secret)


def teacher_secret(token: str) -> str | None:
    """The secret part of a teacher token, or None when ``token`` is not one."""
    if token.startswith(_TEACHER_PREFIX) and len(token) > len(_TEACHER_PREFIX):
        return token[len(_TEACHER_PREFIX):]
    return None
