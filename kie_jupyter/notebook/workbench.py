"""Static views of the prompt workbench: the gallery, compare, the export contact sheet, and
the ``%%kie4o`` cell that re-runs a task.

Everything here is plain HTML with embedded thumbnails (no widgets, no kernel needed), so a
saved notebook, nbviewer or an exported file shows it as it was; every value is escaped.
Colours come from JupyterLab's theme variables with light fallbacks.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..api.imagedata import sniff_image
from ..api.prices import Cost
from ..engine.history import HistoryEntry
from ..engine.images import thumbnail_jpeg
from ..engine.provenance import embed_provenance, provenance_fields
from ..engine.spend import entry_cost
from ..engine.subscribers import THUMB_SIDE
from .viewer import script_tag, zoom_attrs
from .views import when

__all__ = [
    "Item",
    "HTMLView",
    "item_of_task",
    "item_of_entry",
    "gallery_view",
    "compare_view",
    "contact_sheet",
    "export_zip",
    "rerun_cell",
]

_BORDER = "var(--jp-border-color2, #ddd)"
_MUTED = "var(--jp-ui-font-color2, #666)"
_TEXT = "var(--jp-content-font-color1, #222)"
_CHIP = "var(--jp-layout-color2, #eef)"
# Pale in both themes, so the marked words keep a dark colour of their own (white text on
# pale green was unreadable in JupyterLab's dark theme).
_INS = "var(--jp-success-color3, #d4f7d4)"
_DEL = "var(--jp-error-color3, #fbd5d5)"
_MARKED = "#1f1f1f"
_THUMB = 160
esc = html.escape


@dataclass
class Item:
    """One task as the workbench views show it (from a live task or a history entry)."""

    task_id: str
    prompt: str
    params: dict[str, Any]
    status: str
    created: str | None = None
    model: str = "4o"
    demo: bool = False
    starred: bool = False
    #: Small JPEG copies to show.
    thumbs: list[bytes] = field(default_factory=list)
    #: Full images where known: (file name, bytes).
    full: list[tuple[str, bytes]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    saved_paths: list[str] = field(default_factory=list)
    #: What the task cost (KIE's figure, else the estimate); None: not known here.
    cost: Cost | None = None
    #: Each image's own pixel size, where known (the viewer says when it shows a smaller copy).
    sizes: list[tuple[int, int]] = field(default_factory=list)
    #: The image number of each of ``thumbs`` (empty: 0, 1, 2…), where one was not kept.
    thumb_numbers: list[int] = field(default_factory=list)
    #: History deleted the thumbnails to keep within its cap (the full images are elsewhere).
    thumbs_dropped: bool = False

    def cost_text(self) -> str:
        return self.cost.short() if self.cost is not None else ""


def item_of_task(task: Any) -> Item:
    """A live :class:`~kie_jupyter.engine.task.Task` as an item (its images in memory)."""
    images = task.numbered_images() if task.done else []
    thumbs, numbers = [], []
    for n, data in images:
        try:
            thumbs.append(thumbnail_jpeg(data, 2 * _THUMB))
        except ValueError:
            continue
        numbers.append(n)
    return Item(
        task_id=task.task_id or "(not submitted)", prompt=task.prompt, params=dict(task.params),
        status=task.status.value, created=task.created.isoformat(), model=task.model,
        demo=task.demo, thumbs=thumbs,
        full=[(f"{task.task_id}_{n}.png", data) for n, data in images],
        parents=task.parents, urls=list(task.urls), saved_paths=list(task.saved_paths),
        cost=None if task.never_created else task.cost, sizes=_sizes(d for _, d in images),
        thumb_numbers=numbers,
    )


def _sizes(images: Iterable[bytes]) -> list[tuple[int, int]]:
    """The pixel size of each image (up to the first one that cannot be read)."""
    out = []
    for data in images:
        info = sniff_image(data)
        if info is None:
            break
        out.append((info.width, info.height))
    return out


def item_of_entry(entry: HistoryEntry, *, full: bool = False) -> Item:
    """A history entry as an item: its kept thumbnails (and saved files when ``full``)."""
    thumbs, numbers = [], []
    for place, path in enumerate(entry.thumbs):
        data = _read(path)
        if data:
            n = _number_in_name(entry.task_id, Path(path).name)
            thumbs.append(data)
            numbers.append(place if n is None else n)
    files: list[tuple[str, bytes]] = []
    if full:
        for path in entry.saved_paths:
            data = _read(path)
            if data and Path(path).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
                files.append((Path(path).name, data))
    return Item(
        task_id=entry.task_id, prompt=entry.prompt, params=dict(entry.params),
        status=entry.status or "?", created=entry.created, model=entry.model or "4o",
        demo=bool(entry.demo), starred=entry.starred, thumbs=thumbs, full=files,
        parents=list(entry.parents), urls=list(entry.urls), saved_paths=list(entry.saved_paths),
        cost=entry_cost(entry), sizes=_sizes(data for _, data in files),
        thumb_numbers=numbers, thumbs_dropped=entry.thumbs_dropped and not thumbs,
    )


def _number_in_name(task_id: str, name: str) -> int | None:
    """The image number in a file named ``<taskId>_<n>.<ext>``, else None."""
    found = re.fullmatch(rf"{re.escape(task_id)}_(\d+)\.\w+", name)
    return int(found.group(1)) if found else None


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


class HTMLView:
    """Static HTML with a plain-text twin (what terminals and ``repr`` show)."""

    def __init__(self, markup: str, text: str) -> None:
        self.markup = markup
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.markup, "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


def _img(item: Item, n: int, data: bytes, width: int = _THUMB) -> str:
    """Image ``n``'s thumbnail, which opens full size in one click (:mod:`.viewer`): the
    result's URL where there is one, else the thumbnail with its true size and saved file."""
    b64 = base64.b64encode(data).decode("ascii")
    sized = f"width:{width}px;" if width else "width:100%;"  # 0: the cell's width
    attrs = zoom_attrs(alt=_alt(item, n), full=_full(item, n),
                       size=item.sizes[n] if n < len(item.sizes) else None,
                       saved=_saved_file(item, n))
    return (f'<img src="data:image/jpeg;base64,{b64}" {attrs} '
            f'style="{sized}max-width:100%;height:auto;border-radius:4px;margin:0;'
            'cursor:zoom-in;display:block">')


def _saved_file(item: Item, n: int) -> str | None:
    """Where image ``n`` was saved under its own name (``<taskId>_<n>.<ext>``), if it was."""
    stem = f"{item.task_id}_{n}."
    return next((p for p in item.saved_paths if Path(p).name.startswith(stem)), None)


def _full(item: Item, n: int) -> str | None:
    """A larger copy of image ``n`` than the kept thumbnail: its result URL, for a live
    task (KIE keeps results 14 days; the demo server's die with its kernel)."""
    if item.demo or n >= len(item.urls):
        return None
    url = item.urls[n]
    return url if url.startswith("https://") else None


def _chips(item: Item) -> str:
    p = item.params
    values = [item.model, p.get("size"), f"×{p.get('variants', 1)}" if p.get("variants") else None,
              "demo" if item.demo else None, "★" if item.starred else None]
    return "".join(
        f'<span style="background:{_CHIP};border-radius:8px;padding:0 6px;margin-right:3px;'
        f'font-size:85%">{esc(str(v))}</span>' for v in values if v
    )


def _tile(item: Item) -> str:
    shown = list(_numbered_thumbs(item).items())[:4]
    images = "".join(_img(item, n, t, width=0) for n, t in shown) or (
        f'<div style="color:{_MUTED};padding:8px;overflow-wrap:anywhere">'
        f'{esc(_dropped_text(item) if item.thumbs_dropped else item.status)}</div>')
    prompt = esc(item.prompt)
    short = esc(item.prompt[:80] + ("…" if len(item.prompt) > 80 else ""))
    return (
        f'<div class="kie4o-tile" style="border:1px solid {_BORDER};border-radius:6px;'
        f'padding:6px;min-width:0;color:{_TEXT}"><div style="display:grid;gap:4px;'
        f'grid-template-columns:repeat({min(max(len(item.thumbs), 1), 2)},minmax(0,1fr))">'
        f'{images}</div>'
        f'<details style="margin:4px 0"><summary>{short}</summary>'
        f'<div style="white-space:pre-wrap">{prompt}</div></details>'
        f'<div>{_chips(item)}</div>'
        f'<div style="color:{_MUTED};font-size:85%">{esc(when(item.created))} · '
        f'{esc(item.status)}{_cost_part(item)} · <code>{esc(item.task_id)}</code></div></div>'
    )


def _dropped_text(item: Item) -> str:
    """What a tile whose thumbnails history dropped (to keep within its cap) says instead."""
    where = [p for p in item.saved_paths if Path(p).is_file()]
    if where:
        return f"thumbnail dropped, full image at {where[0]}" + (
            f" (+{len(where) - 1} more)" if len(where) > 1 else "")
    live = [u for u in item.urls if u.startswith("https://")] if not item.demo else []
    if live and not _older_than(item.created, RESULT_DAYS):
        return (f"thumbnail dropped, full image at {live[0]} (KIE keeps results "
                f"{RESULT_DAYS} days)")
    return "thumbnail dropped; the full image was not saved (save with --save DIR)"


#: How long KIE keeps generated images (KIE_4O_API.md, "Limits and retention": 14 days).
RESULT_DAYS = 14


def _older_than(created: str | None, days: int) -> bool:
    """Whether an ISO time is more than ``days`` ago (unknown: no)."""
    try:
        when_made = datetime.fromisoformat(created or "")
    except ValueError:
        return False
    if when_made.tzinfo is None:
        when_made = when_made.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - when_made > timedelta(days=days)


def _cost_part(item: Item) -> str:
    """`` · ≈ 6 credits`` (its source on hover), or nothing."""
    if item.cost is None:
        return ""
    title = esc(item.cost.source, quote=True)
    return f' · <span class="kie4o-cost" title="{title}">{esc(item.cost_text())}</span>'



def gallery_view(items: Sequence[Item], *, total: int, page: int, per_page: int,
                 query: str) -> HTMLView:
    """One page of past results as a thumbnail grid, newest first."""
    pages = max((total + per_page - 1) // per_page, 1)
    title = f"kie4o gallery — {total} task(s){query}; page {page} of {pages}"
    more = (f" · next: <code>%kie4o gallery --page {page + 1}</code>"
            if page < pages else "")
    tiles = "".join(_tile(i) for i in items)
    # The output's full width, in as many columns as fit (responsive).
    markup = (f'<div class="kie4o-gallery kie4o-view"><b>{esc(title)}</b>{more}'
              f'<div style="display:grid;gap:8px;margin-top:6px;grid-template-columns:'
              f'repeat(auto-fill,minmax(240px,1fr))">{tiles}</div></div>{script_tag()}')
    lines = [title] + [f"{when(i.created)}  {i.status:<9} {i.task_id}  {i.prompt[:60]}"
                       + (f"  [{i.cost_text()}]" if i.cost is not None else "")
                       + (f"\n    {_dropped_text(i)}" if i.thumbs_dropped else "")
                       for i in items]
    if not items:
        lines.append("(nothing matches)")
        markup = f"<b>{esc(title)}</b><div>nothing matches</div>"
    return HTMLView(markup, "\n".join(lines))


def _word_diff(base: str, other: str) -> str:
    """``other`` as HTML with the words inserted against ``base`` marked, and those deleted
    shown struck through."""
    a, b = base.split(), other.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(esc(" ".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            out.append(f'<del style="background:{_DEL};color:{_MARKED}">'
                       f'{esc(" ".join(a[i1:i2]))}</del>')
        if op in ("insert", "replace"):
            out.append(f'<ins style="background:{_INS};color:{_MARKED};text-decoration:none">'
                       f'{esc(" ".join(b[j1:j2]))}</ins>')
    return " ".join(out)


def compare_view(items: Sequence[Item]) -> HTMLView:
    """Columns side by side: prompts with word differences against the first, parameters
    with differing values marked, the images."""
    keys = sorted({k for i in items for k, v in i.params.items()
                   if k != "prompt" and v not in (None, [], "", False)} | {"model"})

    def value(item: Item, key: str) -> str:
        v = item.model if key == "model" else item.params.get(key)
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)

    first = items[0]
    cols = []
    for n, item in enumerate(items):
        prompt = esc(item.prompt) if n == 0 else _word_diff(first.prompt, item.prompt)
        rows = "".join(
            f"<tr><td style='color:{_MUTED}'>{esc(k)}</td><td>"
            + (f'<mark style="background:{_INS};color:{_MARKED}">{esc(value(item, k))}</mark>'
               if n and value(item, k) != value(first, k) else esc(value(item, k)))
            + "</td></tr>"
            for k in keys
        )
        images = "".join(_img(item, k, t) for k, t in _numbered_thumbs(item).items()
                         ) or esc(item.status)
        cols.append(
            f'<div style="flex:1;min-width:200px;border:1px solid {_BORDER};border-radius:6px;'
            f'padding:6px;color:{_TEXT}"><div><code>{esc(item.task_id)}</code> '
            f'{_chips(item)}</div><div style="white-space:pre-wrap;margin:4px 0">{prompt}</div>'
            f'<table style="font-size:85%">{rows}</table><div>{images}</div></div>'
        )
    markup = (f'<div class="kie4o-compare kie4o-view" style="display:flex;gap:8px;'
              f'align-items:flex-start">{"".join(cols)}</div>{script_tag()}')
    text = ["kie4o compare"]
    for item in items:
        params = ", ".join(f"{k}={value(item, k)}" for k in keys)
        text.append(f"{item.task_id}  {item.status}  {params}\n  {item.prompt}")
    return HTMLView(markup, "\n".join(text))


#: The long side of a contact sheet's images (JPEG, from the saved full image where there
#: is one, else the kept thumbnail).
SHEET_SIDE = 1024
_SHEET_CSS = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#1f1f1f;background:#fff}"
    "h1{font-size:1.4em;font-weight:600}"
    ".card{border:1px solid #ddd;border-radius:8px;padding:12px;margin:0 0 20px;"
    "break-inside:avoid;page-break-inside:avoid}"
    ".images{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}"
    ".images img{max-width:min(100%,720px);height:auto;border-radius:4px}"
    ".prompt{white-space:pre-wrap;font-size:1.05em;margin:10px 0 6px;overflow-wrap:break-word}"
    ".chip{display:inline-block;background:#eef;border-radius:9px;padding:0 8px;"
    "margin:0 4px 4px 0;font-size:85%}"
    ".demo{background:#ffe0b2;color:#3e2700}"
    ".note{color:#555;font-size:90%;margin:6px 0 0}"
    "details{color:#555;font-size:85%;margin-top:6px}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}"
    "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}"
    "@media print{body{margin:0}.card{border:none;padding:0 0 12px}"
    "details{display:none}}"
)


def _unique(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Each image once: a file saved twice (``fox[1].save(...)`` and ``<id>_1.png``) is
    the same bytes."""
    seen: set[str] = set()
    out = []
    for name, data in files:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append((name, data))
    return out


@dataclass
class _Picture:
    """One image of a task as an export has it: full, or only its kept small copy."""

    data: bytes
    #: Its number in the task (None: a saved file matched to none of them).
    n: int | None
    full: bool = True
    #: The saved file it came from, where it was not matched to a number.
    file: str | None = None


def _numbered_thumbs(item: Item) -> dict[int, bytes]:
    numbers = item.thumb_numbers or range(len(item.thumbs))
    return dict(zip(numbers, item.thumbs, strict=False))


def _numbered_full(item: Item) -> tuple[dict[int, bytes], list[tuple[str, bytes]]]:
    """Each full image by its number: from its file name (``<taskId>_<n>.png``), else the
    kept thumbnail it makes (``fox[1].save('pick.png')``); and the files matched to none."""
    kept = {data: n for n, data in _numbered_thumbs(item).items()}
    found: dict[int, bytes] = {}
    loose: list[tuple[str, bytes]] = []
    for name, data in _unique(item.full):
        n = _number_in_name(item.task_id, name)
        if n is None and kept:
            small = _small_copy(data)
            n = kept.get(small) if small is not None else None
        if n is None:
            loose.append((name, data))
        else:
            found.setdefault(n, data)
    return found, loose


def _small_copy(data: bytes) -> bytes | None:
    """The thumbnail history keeps of an image (the same bytes for the same pixels)."""
    try:
        return thumbnail_jpeg(data, THUMB_SIDE)
    except ValueError:
        return None


def _pictures(item: Item, fetch: Callable[[str], bytes] | None = None
              ) -> tuple[list[_Picture], list[str]]:
    """A task's images in order, each the full one where it is at hand (saved, else fetched
    with ``fetch``), else its kept small copy; and a line for each not had in full."""
    full, loose = _numbered_full(item)
    thumbs = _numbered_thumbs(item)
    count = max([len(item.urls), *(n + 1 for n in full), *(n + 1 for n in thumbs)])
    out: list[_Picture] = []
    missing: list[str] = []
    for n in range(count):
        data, why = full.get(n), "not saved"
        if data is None and fetch is not None and n < len(item.urls):
            try:
                data = fetch(item.urls[n])
            except Exception as exc:  # one image lost never loses the others
                why = f"not saved, and its link failed ({exc})"
        if data is not None:
            out.append(_Picture(data, n))
        elif n in thumbs:
            out.append(_Picture(thumbs[n], n, full=False))
            missing.append(f"image {n + 1}: {why}; only its small copy is kept")
        else:
            missing.append(f"image {n + 1}: {why}, and no copy of it is kept")
    out += [_Picture(data, None, file=name) for name, data in loose]
    return out, missing


def _sheet_image(item: Item, picture: _Picture) -> str:
    """One image of the contact sheet: large where the full image is at hand."""
    data = picture.data
    if picture.full:
        try:
            data = thumbnail_jpeg(data, SHEET_SIDE)
        except ValueError:
            return ""
    alt = (_alt(item, picture.n) if picture.n is not None
           else f"{' '.join(item.prompt.split())[:120]} — saved file {picture.file} "
                f"({item.model})")
    if not picture.full:
        alt += ", a small copy"
    return (f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}" '
            f'alt="{esc(alt, quote=True)}">')


def _sheet_chips(item: Item) -> str:
    p = item.params
    values = [item.model, p.get("size"), p.get("resolution"), p.get("quality"),
              f"{p['variants']} images" if isinstance(p.get("variants"), int)
              and p["variants"] > 1 else None,
              item.cost_text() or None, "★" if item.starred else None]
    chips = "".join(f'<span class="chip">{esc(str(v))}</span>' for v in values if v)
    if item.demo:
        chips = '<span class="chip demo">demo (not a real result)</span>' + chips
    return chips


def _provenance(item: Item) -> str:
    """How it was made, folded away: id, time, status, the parameters that were set."""
    rows = [("task", item.task_id), ("made", when(item.created)), ("status", item.status)]
    rows += [(k, json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)
             for k, v in sorted(item.params.items())
             if v not in (None, "", [], {}, False) and k not in ("prompt", "files", "mask")]
    if item.parents:
        rows.append(("made from", ", ".join(item.parents)))
    if item.cost is not None:
        rows.append(("cost source", item.cost.source))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in rows)
    return f"<details><summary>How it was made</summary><dl>{body}</dl></details>"


def contact_sheet(items: Sequence[Item], title: str,
                  fetch: Callable[[str], bytes] | None = None) -> str:
    """A self-contained page to send: per task its prompt, its parameters as chips, its
    images large (embedded, so it opens offline and links nowhere), and how it was made
    folded away; printable (one task never split across pages).

    Each image is the saved full one, else fetched with ``fetch`` when given, else its kept
    small copy; a line says which are small copies or missing."""
    cards = []
    for item in items:
        pictures, missing = _pictures(item, fetch)
        images = "".join(_sheet_image(item, p) for p in pictures)
        notes = "".join(f'<p class="note">{esc(line)}</p>' for line in missing)
        cards.append(
            f'<section class="card"><div class="images">{images or esc(item.status)}</div>'
            f'{notes}<p class="prompt">{esc(item.prompt)}</p><div>{_sheet_chips(item)}</div>'
            f"{_provenance(item)}</section>")
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{_SHEET_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{''.join(cards)}</body></html>")


def _alt(item: Item, n: int) -> str:
    short = " ".join(item.prompt.split())[:120]
    return f"{short} — image {n + 1} ({item.model})"


def _zip_name(item: Item, picture: _Picture, used: set[str]) -> str:
    """``<taskId>_<n>.<ext>`` by the image's number (``…_small.jpg`` for a kept small
    copy); a file matched to no number keeps its own name, made unique."""
    info = sniff_image(picture.data)
    ext = {"jpeg": "jpg"}.get(info.format, info.format) if info else "bin"
    if picture.n is None:
        stem = Path(picture.file or "image").stem
    else:
        stem = f"{item.task_id}_{picture.n}" + ("" if picture.full else "_small")
    name, k = f"{stem}.{ext}", 2
    while name in used:
        name, k = f"{stem}-{k}.{ext}", k + 1
    used.add(name)
    return name


def export_zip(items: Iterable[Item], fetch: Callable[[str], bytes] | None = None) -> bytes:
    """A zip of each task's full images (PNG with provenance) and one JSON per task.

    Image ``n`` is ``<taskId>_<n>.png``, from its saved file, else ``fetch(url)`` when given
    (result URLs expire), else its kept small copy (``<taskId>_<n>_small.jpg``); the JSON
    says which images are not there in full.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in items:
            pictures, missing = _pictures(item, fetch)
            fields = provenance_fields(prompt=item.prompt, params=item.params,
                                       model=item.model, task_id=item.task_id,
                                       parents=item.parents, created=item.created or "",
                                       demo=item.demo)
            names: list[str] = []
            used: set[str] = {f"{item.task_id}.json"}
            for picture in pictures:
                name = _zip_name(item, picture, used)
                zf.writestr(f"{item.task_id}/{name}", embed_provenance(picture.data, fields))
                names.append(name)
            meta = {"task_id": item.task_id, "prompt": item.prompt, "params": item.params,
                    "model": item.model, "status": item.status, "created": item.created,
                    "parents": item.parents, "demo": item.demo, "urls": item.urls,
                    "files": names, "missing": missing or None,
                    "cost": item.cost.to_dict() if item.cost is not None else None}
            zf.writestr(f"{item.task_id}/{item.task_id}.json",
                        json.dumps(meta, indent=2, ensure_ascii=False))
    return buf.getvalue()


def rerun_cell(params: Mapping[str, Any], prompt: str, *, model: str = "4o") -> str:
    """The ``%%kie4o`` cell (option line and prompt) that makes a task like this again."""
    words = ["%%kie4o"]
    if model and model != "4o":
        words += ["--model", model]
    size = params.get("size")
    if size:
        words += ["-s", str(size)]
    variants = params.get("variants")
    if variants and int(variants) != 1:
        words += ["-n", str(variants)]
    for url in params.get("files") or []:
        words += ["-i", _quote(str(url))]
    if params.get("mask"):
        words += ["-m", _quote(str(params["mask"]))]
    if params.get("enhance"):
        words.append("-e")
    if params.get("fallback"):
        words += ["--fallback", str(params.get("fallback_model") or "FLUX_MAX")]
    for flag, key in (("--resolution", "resolution"), ("--quality", "quality"),
                      ("--format", "output_format")):
        if params.get(key):
            words += [flag, _quote(str(params[key]))]
    for flag, key in (("--seed", "seed"), ("--negative", "negative")):
        if params.get(key) not in (None, ""):
            # --flag=value: a value starting with "-" (a seed, a negative prompt) stays its own
            words.append(_quote(f"{flag}={params[key]}"))
    extra = dict(params.get("params") or {})
    if params.get("upload_cn"):
        extra["upload_cn"] = True
    for key, value in extra.items():
        # Text as written (the model's page types it again); other values as JSON.
        text = value if isinstance(value, str) else json.dumps(value)
        words += ["--param", _quote(f"{key}={text}")]
    if params.get("callback_url"):
        words += ["--callback", _quote(str(params["callback_url"]))]
    # Braces in the prompt would be read as {name} fills or sweep groups: escape them.
    body = prompt.replace("{", "{{").replace("}", "}}")
    return " ".join(words) + "\n" + body


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
