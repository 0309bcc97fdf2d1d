"""Helpers for testing notebooks that use ``%%kie4o`` (no nbformat import needed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["count_images", "write_kernelspec"]


def write_kernelspec(root: Path, name: str) -> Path:
    """A kernelspec ``name`` under ``root/kernels`` whose ipykernel runs on this interpreter
    (not whatever ``python3`` is on the PATH); return ``root``, for ``JUPYTER_PATH``."""
    spec = root / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name, "language": "python"}))
    return root


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
