"""The replay pack's format, shared by its writer (``kie_jupyter.engine.packs``) and its reader
(``kie_jupyter.fakeapi.packs``).

Stdlib only and importing nothing of the package, so that the fake server, which reads packs,
still stands alone.
"""

from __future__ import annotations

import unicodedata

__all__ = ["FORMAT", "VERSION", "MANIFEST", "SUFFIX", "normalise_prompt"]

FORMAT = "kiepack"
#: The manifest format this version reads and writes.
VERSION = 1
MANIFEST = "manifest.json"
#: The file name ending a pack must have (so it is never taken for a plain zip export).
SUFFIX = ".kiepack"


def normalise_prompt(text: str) -> str:
    """The form two prompts are compared in: case folded, runs of white space as one space,
    no punctuation or space at either end ("A red fox." and "a red  fox" match)."""
    text = " ".join(str(text).casefold().split())
    start, end = 0, len(text)
    while end > start and (unicodedata.category(text[end - 1]).startswith("P")
                           or text[end - 1].isspace()):
        end -= 1
    while start < end and (unicodedata.category(text[start]).startswith("P")
                           or text[start].isspace()):
        start += 1
    return text[start:end]
