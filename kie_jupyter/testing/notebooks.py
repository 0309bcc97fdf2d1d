"""Helpers for testing notebooks that use ``%%kie4o`` (no nbformat import needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["count_images"]


def count_images(nb: Mapping[str, Any]) -> int:
    """Images embedded in a notebook's outputs: ``image/*`` outputs and ``data:image/`` URIs
    in HTML (the static output of a task)."""
    n = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            n += sum(1 for k in data if k.startswith("image/"))
            n += str(data.get("text/html", "")).count("data:image/")
    return n
