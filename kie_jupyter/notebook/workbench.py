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
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.imagedata import sniff_image
from ..api.prices import Cost
from ..engine.history import HistoryEntry
from ..engine.images import thumbnail_jpeg
from ..engine.provenance import embed_provenance, provenance_fields
from ..engine.spend import entry_cost
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

    def cost_text(self) -> str:
        return self.cost.short() if self.cost is not None else ""


def item_of_task(task: Any) -> Item:
    """A live :class:`~kie_jupyter.engine.task.Task` as an item (its images in memory)."""
    images = task.numbered_images() if task.done else []
    thumbs = []
    for _, data in images:
        try:
            thumbs.append(thumbnail_jpeg(data, 2 * _THUMB))
        except ValueError:
            continue
    return Item(
        task_id=task.task_id or "(not submitted)", prompt=task.prompt, params=dict(task.params),
        status=task.status.value, created=task.created.isoformat(), model=task.model,
        demo=task.demo, thumbs=thumbs,
        full=[(f"{task.task_id}_{n}.png", data) for n, data in images],
        parents=task.parents, urls=list(task.urls), saved_paths=list(task.saved_paths),
        cost=None if task.never_created else task.cost, sizes=_sizes(d for _, d in images),
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
    thumbs = [data for data in (_read(p) for p in entry.thumbs) if data]
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
    )


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
    images = "".join(_img(item, n, t, width=0) for n, t in enumerate(item.thumbs[:4])) or (
        f'<div style="color:{_MUTED};padding:8px">{esc(item.status)}</div>')
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
        images = "".join(_img(item, k, t) for k, t in enumerate(item.thumbs)) or esc(item.status)
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
    ".images{display:flex;flex-wrap:wrap;gap:10px}"
    ".images img{max-width:min(100%,720px);height:auto;border-radius:4px}"
    ".prompt{white-space:pre-wrap;font-size:1.05em;margin:10px 0 6px;overflow-wrap:break-word}"
    ".chip{display:inline-block;background:#eef;border-radius:9px;padding:0 8px;"
    "margin:0 4px 4px 0;font-size:85%}"
    ".demo{background:#ffe0b2;color:#3e2700}"
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


def _sheet_images(item: Item) -> list[bytes]:
    out = []
    for _, data in _unique(item.full):
        try:
            out.append(thumbnail_jpeg(data, SHEET_SIDE))
        except ValueError:
            continue
    return out or list(item.thumbs)


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


def contact_sheet(items: Sequence[Item], title: str) -> str:
    """A self-contained page to send: per task its prompt, its parameters as chips, its
    images large (embedded, so it opens offline and links nowhere), and how it was made
    folded away; printable (one task never split across pages)."""
    cards = []
    for item in items:
        images = "".join(
            f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}" '
            f'alt="{esc(_alt(item, n), quote=True)}">'
            for n, data in enumerate(_sheet_images(item)))
        cards.append(
            f'<section class="card"><div class="images">{images or esc(item.status)}</div>'
            f'<p class="prompt">{esc(item.prompt)}</p><div>{_sheet_chips(item)}</div>'
            f"{_provenance(item)}</section>")
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{_SHEET_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{''.join(cards)}</body></html>")


def _alt(item: Item, n: int) -> str:
    short = " ".join(item.prompt.split())[:120]
    return f"{short} — image {n + 1} ({item.model})"


def export_zip(items: Iterable[Item], fetch: Callable[[str], bytes] | None = None) -> bytes:
    """A zip of each task's full images (PNG with provenance) and one JSON per task.

    Images come from saved files, else from ``fetch(url)`` when given (result URLs expire);
    a task whose images cannot be had says so in its JSON.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in items:
            files = _unique(item.full)
            missing: list[str] = []
            if not files and fetch is not None:
                for n, url in enumerate(item.urls):
                    try:
                        files.append((f"{item.task_id}_{n}.png", fetch(url)))
                    except Exception as exc:  # one image lost never loses the others
                        missing.append(f"{url}: {exc}")
            fields = provenance_fields(prompt=item.prompt, params=item.params,
                                       model=item.model, task_id=item.task_id,
                                       parents=item.parents, created=item.created or "",
                                       demo=item.demo)
            names = []
            for name, data in files:
                zf.writestr(f"{item.task_id}/{name}", embed_provenance(data, fields))
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
    extra = dict(params.get("params") or {})
    if params.get("upload_cn"):
        extra["upload_cn"] = True
    for key, value in extra.items():
        words += ["--param", _quote(f"{key}={json.dumps(value)}")]
    if params.get("callback_url"):
        words += ["--callback", _quote(str(params["callback_url"]))]
    # Braces in the prompt would be read as {name} fills or sweep groups: escape them.
    body = prompt.replace("{", "{{").replace("}", "}}")
    return " ".join(words) + "\n" + body


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
