"""Static views for the line magic: task status, history table, settings table.

Each returns an object with ``text/html`` and ``text/plain``; every value is escaped.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from typing import Any

from ..api.models import TaskRecord
from ..engine.history import HistoryEntry
from ..engine.spend import entry_cost
from .cards import image_source, thumbnail

__all__ = ["Table", "status_snapshot", "history_table", "config_table"]


class Table:
    """A small table shown as HTML in notebooks and as aligned text in terminals.

    ``html_rows`` (already escaped, e.g. with thumbnails) and ``html_header`` replace the
    escaped text cells in the HTML form only.
    """

    def __init__(self, title: str, header: list[str], rows: list[list[str]],
                 html_rows: list[list[str]] | None = None,
                 html_header: list[str] | None = None) -> None:
        self.title = title
        self.header = header
        self.rows = rows
        self.html_rows = html_rows
        self.html_header = html_header

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        esc = html.escape
        # Long values wrap inside their column (a doc path, a list of ratios), so the table
        # fits the output's width instead of running off its right edge.
        cell = ("<{0} style='text-align:left;vertical-align:top;overflow-wrap:anywhere;"
                "min-width:4em'>{1}</{0}>")
        head = "".join(cell.format("th", esc(h)) for h in self.html_header or self.header)
        rows = self.html_rows or [[esc(c) for c in row] for row in self.rows]
        body = "".join(
            "<tr>" + "".join(cell.format("td", c) for c in row) + "</tr>" for row in rows
        )
        markup = (f"<b>{esc(self.title)}</b><table style='max-width:100%;"
                  f"table-layout:auto'><tr>{head}</tr>{body}</table>")
        table = [self.header, *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.header))]
        lines = [self.title]
        lines += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)) for r in table]
        return {"text/html": markup, "text/plain": "\n".join(lines)}

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def when(iso: str | None) -> str:
    """An ISO time as the notebook shows it: local time to the minute."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def status_snapshot(task_id: str, record: TaskRecord | None,
                    entry: HistoryEntry | None) -> Table:
    """One snapshot of a task, from the API (and history, for the prompt)."""
    if record is None:
        rows = [["status", "just submitted: no record yet"]]
    else:
        state = ("failed" if record.failed else "success" if record.succeeded else "generating")
        raw = getattr(record, "state", "") or getattr(record, "status", "")
        rows = [["status", f"{state} ({raw})"], ["progress", f"{record.progress:.0%}"]]
        if record.failed:
            rows.append(["reason", record.failure_reason()])
        rows += [["image", u] for u in record.urls]
        prompt = record.params.get("prompt") if record.params else None
        if prompt:
            rows.append(["prompt", _short(str(prompt), 120)])
    if entry is not None and not any(r[0] == "prompt" for r in rows):
        rows.append(["prompt", _short(entry.prompt, 120)])
    return Table(f"kie4o task {task_id}", ["field", "value"], rows)


def _thumb_cell(entry: HistoryEntry) -> str:
    for path in entry.saved_paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        small, mime = thumbnail(data, 64)
        src = base64.b64encode(small).decode("ascii")
        return f"<img src='data:{mime};base64,{src}' style='max-height:48px' alt=''/>"
    return ""


def _status(entry: HistoryEntry) -> str:
    # A demo result must never be taken for a real one (nor its id for a resumable task).
    if not getattr(entry, "demo", None):
        return entry.status
    source = image_source(entry.urls or ())
    return f"{entry.status} (demo)" if source == "synthetic" else \
        f"{entry.status} (demo, {source})"


def history_table(entries: list[HistoryEntry], *, embed: bool = True,
                  search: str | None = None) -> Table:
    """Recent tasks: prompt, size, variants, status, cost, time, id (thumbnails of saved
    images).

    ``search`` is the text the entries were filtered by (it words the empty table).
    """
    header = ["prompt", "size", "variants", "status", "cost", "time", "task id"]
    rows = [
        [_short(e.prompt), str(e.params.get("size", "")), str(e.params.get("variants", "")),
         _status(e), entry_cost(e).short(), when(e.created), e.task_id]
        for e in entries
    ]
    if not rows:
        title = (f"kie4o history: no task matches {search!r}" if search
                 else "kie4o history: no tasks yet")
        return Table(title, header, [])
    title = f"kie4o history ({len(rows)})"
    if not embed:
        return Table(title, header, rows)
    html_rows = [[_thumb_cell(e), *(html.escape(c) for c in row)]
                 for e, row in zip(entries, rows, strict=True)]
    return Table(title, header, rows, html_rows, ["", *header])


def config_table(rows: dict[str, str], title: str = "kie4o settings",
                 header: tuple[str, str] = ("setting", "value")) -> Table:
    """The effective settings (the key already masked by the caller), or any two-column
    table of ``rows`` under ``title``."""
    return Table(title, list(header), [[k, v] for k, v in rows.items()])
