"""The static card of a task (or a grid of tasks): HTML with embedded images, and text.

This is what a saved notebook keeps: the live panel gives way to it when the task ends, so
it shows in JupyterLab, Notebook 7, nbviewer or GitHub with no kernel and no widget state.
Each fact appears once: a header (model, chips, status, task id, "demo"), the prompt, then the
images with the expression that picks each (``fox[0]``) or the reason there are none.

Images are embedded as bytes (result URLs expire), sized by the ``embed`` setting:
``thumb`` (a small JPEG copy), ``full`` or ``none``. Colours are JupyterLab's CSS variables
(``--jp-*``) with light fallbacks for pages without them (nbviewer), so a dark theme reads.
"""

from __future__ import annotations

import base64
import html
import itertools
import re
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from ..api.models import TaskStatus
from ..engine.spend import costs_text
from ..hints import status_text, with_hint
from .viewer import script_tag, zoom_attrs

if TYPE_CHECKING:
    from ..engine.task import Task

__all__ = [
    "EMBED_CHOICES",
    "THUMB_SIZE",
    "Card",
    "SweepCard",
    "sweep_bundle",
    "card_bundle",
    "name_task",
    "static_bundle",
    "status_text",
    "summary_lines",
    "thumbnail",
]

EMBED_CHOICES = ("thumb", "full", "none")
#: Longest side of an embedded thumbnail, in pixels: wide enough to judge (a card shows a
#: single image up to 512 px wide); one click opens the full image (:mod:`.viewer`).
THUMB_SIZE = 512


def thumbnail(data: bytes, size: int = THUMB_SIZE) -> tuple[bytes, str]:
    """A small JPEG copy of an image and its MIME type (the image itself if Pillow cannot
    read it). Made on the engine's one image thread (see ``engine.runner.on_image_thread``:
    memory stays at the images however many threads draw cards)."""
    from ..engine.runner import on_image_thread

    return on_image_thread(_thumbnail, data, size)


def _thumbnail(data: bytes, size: int) -> tuple[bytes, str]:
    # Imported here: %load_ext imports this module and must not wait for Pillow.
    from ..api.imagedata import mime_of
    from ..engine.images import thumbnail_jpeg

    try:
        return thumbnail_jpeg(data, size), "image/jpeg"
    except Exception:  # an image Pillow cannot read is embedded as it is
        return data, mime_of(data)


def _safe_link(url: str) -> str | None:
    """An http(s) link worth saving: not to this machine (demo URLs die with the kernel)."""
    if not url.startswith(("http://", "https://")):
        return None
    host = urlsplit(url).hostname or ""
    return None if host in ("127.0.0.1", "localhost", "::1") else url


def _fix_of(task: Task) -> str | None:
    fix = getattr(task.error, "fix", None) if task.error else None
    return fix or ("resume" if task.status is TaskStatus.TIMED_OUT else None)


def summary_lines(task: Task) -> list[str]:
    """Plain-text lines describing a task: what a terminal shows."""
    p = task.params
    demo = ""
    if getattr(task, "demo", False):
        source = image_source(task.urls)
        demo = " (demo)" if source == "synthetic" else f" (demo, {source})"
    head = f"kie4o task {task.task_id or '(not submitted)'} — {task.status.value}{demo}"
    if task.prompt or not p.get("files"):
        lines = [head, f"prompt: {task.prompt}"]
        lines.append(f"size {p.get('size', '?')} · variants {p.get('variants', '?')}"
                     + (f" · {task.cost}" if not task.never_created else ""))
    else:  # a tool (upscale, remove background…): an image in, no prompt
        lines = [head, f"{task.model} of {', '.join(task.parents) or 'an input image'}"]
        lines.append(" · ".join([*_tool_fields(task), *([str(task.cost)]
                                                        if not task.never_created else [])]))
    if task.error:
        reason = with_hint(str(task.error), _fix_of(task), "notebook", task.task_id)
        lines.append(f"error: {reason}")
    lines.extend(f"image {n + 1}: {reason}" for n, reason in sorted(task.image_errors.items()))
    if task.save_error:
        lines.append(task.save_error)
    if task.notice:
        lines.append(task.notice)
    lines.extend(f"saved: {path}" for path in task.saved_paths)
    if task.status.finished and task.completed:
        lines.append(f"time: {task.elapsed:.1f} s")
    return lines


# -- theme ------------------------------------------------------------------------------------
# JupyterLab's variables, each with the light value a page without them (nbviewer) uses.

FONT = "var(--jp-ui-font-family, sans-serif)"
TEXT = "var(--jp-content-font-color1, #1f1f1f)"
MUTED = "var(--jp-content-font-color2, #5f6368)"
CHIP_BG = "var(--jp-layout-color2, #eeeeee)"
BORDER = "var(--jp-border-color2, #e0e0e0)"
ERROR = "var(--jp-error-color1, #c62828)"
LINK = "var(--jp-content-link-color, #1a73e8)"
CODE_FONT = "var(--jp-code-font-family, monospace)"
#: A demo task stands out: its images are made up and cost nothing. The orange is light in
#: JupyterLab's light and dark themes alike, so its text stays dark in both.
DEMO_BG = "var(--jp-warn-color3, #ffe0b2)"
DEMO_TEXT = "#3e2700"
CHIP = f"display:inline-block;border-radius:9px;padding:0 7px;margin:0 4px 2px 0;" \
       f"font-size:85%;line-height:1.6;background:{CHIP_BG};color:{TEXT}"

# -- names ------------------------------------------------------------------------------------

#: The notebook name each task was given (``-o fox`` → ``fox``), so the card can show the
#: expression that picks each image. Weak: a card never keeps a task alive.
_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

#: One task, one row of tasks, or rows of tasks (a sweep, a comparison, a gallery).
Cardable = Union["Task", Sequence["Task"], Sequence[Sequence["Task"]]]


def name_task(task: Task, name: str) -> None:
    """Remember the notebook variable that holds ``task`` (the card shows ``name[i]``)."""
    _names[task] = name


def chips(task: Task) -> list[str]:
    """The parameter chips of a task, as plain labels (the panel shows the same)."""
    p = task.params
    labels = [p.get("size"), f"×{p.get('variants') or 1}" if p and task.prompt else None,
              *_tool_fields(task)]
    if p.get("files"):
        labels.append(f"{len(p['files'])} input image(s)")
    if p.get("mask"):
        labels.append("mask")
    if p.get("enhance"):
        labels.append("enhance")
    if p.get("fallback"):
        labels.append(f"fallback {p.get('fallback_model') or 'FLUX_MAX'}")
    if p.get("seed") not in (None, ""):
        labels.append(f"seed {p['seed']}")
    if p.get("negative"):
        labels.append(f"not: {_short(str(p['negative']))}")
    return [str(label) for label in labels if label]


def _tool_fields(task: Task) -> list[str]:
    """A tool's own fields (``upscale_factor 4``): what it was asked, there being no prompt."""
    if task.prompt:
        return []
    fields = task.params.get("params")
    return [f"{k} {v}" for k, v in fields.items()] if isinstance(fields, dict) else []


def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def image_source(urls: Sequence[str]) -> str:
    """Where a demo task's images came from, in the words a card or table may show:
    ``"from the class pack"``, ``"partly from the class pack"`` or ``"synthetic"``.

    The demo server names a recorded image ``…/files/pack/…`` and a made-up one
    ``…/files/results/…``, so the task's URLs (kept in history too) tell.
    """
    marks = ["/files/pack/" in url for url in urls]
    if marks and all(marks):
        return "from the class pack"
    return "partly from the class pack" if any(marks) else "synthetic"


def chip_html(task: Task) -> str:
    """The chips as HTML, "demo" (or "class pack") first when the task ran in demo mode."""
    esc = html.escape
    out = "".join(f'<span class="kie4o-chip" style="{CHIP}">{esc(c)}</span>'
                  for c in chips(task))
    if getattr(task, "demo", False):
        style = f"{CHIP};background:{DEMO_BG};color:{DEMO_TEXT}"
        if image_source(task.urls) == "synthetic":
            out = (f'<span class="kie4o-chip kie4o-demo" style="{style}" '
                   'title="demo mode: made-up images from the bundled mock server, no credits '
                   'spent">demo</span>' + out)
        else:
            out = (f'<span class="kie4o-chip kie4o-demo" style="{style}" '
                   'title="demo mode: recorded images from the class\'s replay pack, no '
                   'credits spent">demo · class pack</span>' + out)
    return out


def _head_status(task: Task) -> str:
    """The status as the header says it: the outcome only (the reason is below, once)."""
    if task.status is TaskStatus.SUCCESS or not task.status.finished:
        return status_text(task)
    return {TaskStatus.FAILED: "Failed", TaskStatus.TIMED_OUT: "Timed out",
            TaskStatus.STOPPED: "Stopped"}.get(task.status, task.status.value)


def _reason(task: Task) -> str | None:
    """Why a finished task has no images, in plain words with what to do."""
    if task.status is TaskStatus.STOPPED:
        return status_text(task, front_end="notebook")
    if task.error:
        return with_hint(str(task.error), _fix_of(task), "notebook", task.task_id)
    return None


def _alt(task: Task, n: int, pick: str | None, labels: Sequence[str]) -> str:
    """An image's alt text: its prompt and number; in a sweep's grid also the cell's labels,
    its model and the expression that picks it, so no two cells read the same."""
    prompt = " ".join(task.prompt.split())[:100]
    if not labels:
        return f"{prompt} — image {n + 1}"
    model = str(getattr(task, "model", "") or "")
    said = " / ".join([*labels, model] if model and model not in labels else labels)
    return f"{prompt} — {said} — image {n + 1}" + (f" ({pick})" if pick else "")


def _figure(task: Task, n: int, data: bytes, embed: str, name: str | None,
            labels: Sequence[str] = ()) -> str:
    esc = html.escape
    from ..api.imagedata import sniff_image

    info = sniff_image(data)
    size = (info.width, info.height) if info else None
    if embed == "thumb":
        body, mime = thumbnail(data)
    else:
        from ..api.imagedata import mime_of

        body, mime = data, mime_of(data)
    src = f"data:{mime};base64," + base64.b64encode(body).decode("ascii")
    pick = f"{name}[{n}]" if name else f"[{n}]"
    tip = (f"{pick}.save('image.png') writes this image; {pick} is its TaskImage"
           if name else "display the task with a name (-o NAME) to pick its images by name")
    if name == "_kie4o":
        tip += " (_kie4o is the latest task: -o NAME keeps a name)"
    link = _safe_link(task.urls[n]) if n < len(task.urls) else None
    full = (f' · <a href="{esc(link, quote=True)}" target="_blank" rel="noopener" '
            f'download="{esc(f"{task.task_id}_{n}", quote=True)}" '
            f'style="color:{LINK};text-decoration:underline">full size</a>') if link else ""
    pixels = f' · <span class="kie4o-px">{size[0]}×{size[1]}</span>' if size else ""
    alt = _alt(task, n, pick if name else None, labels)
    attrs = zoom_attrs(alt=alt, pick=pick if name else None, size=size,
                       full=link if link and embed == "thumb" else None)
    return (f'<figure class="kie4o-figure" style="margin:0;min-width:0">'
            f'<img src="{src}" {attrs} style="width:100%;max-width:{THUMB_SIZE}px;'
            f'height:auto;display:block;border-radius:3px;cursor:zoom-in"/>'
            f'<figcaption style="font-size:85%;color:{MUTED};overflow-wrap:anywhere">'
            f'<code style="font-family:{CODE_FONT};color:{TEXT}" '
            f'title="{esc(tip, quote=True)}">{esc(pick)}</code>{pixels}{full}</figcaption>'
            f'</figure>')


def _sources(task: Task) -> list[str]:
    """Small figures of an edit's source images (those whose pixels are at hand), to see
    before and after side by side; where a mask was used, drawn over its source (the
    painted area tinted: what changes)."""
    inputs = [item for item in getattr(task, "inputs", ()) if item.data is not None]
    mask = getattr(task, "mask_input", None)
    mask_data = mask.data if mask is not None else None
    out = []
    for item in inputs:
        data, label = item.data, f"source: {item.label}"
        if mask_data is not None and len(inputs) == 1:
            from .overlay import mask_overlay  # Pillow: not at %load_ext

            try:
                data = mask_overlay(item.data, mask_data, 512)
                label += " · tinted = the mask's area (changed)"
                mask_data = None
            except (OSError, ValueError):
                pass  # shown apart below
        out.append(_source_figure(data, label))
    if mask_data is not None:
        out.append(_source_figure(mask_data, "mask (black = changed)"))
    return out


def _source_figure(data: bytes, label: str) -> str:
    body, mime = thumbnail(data, 256)
    src = f"data:{mime};base64," + base64.b64encode(body).decode("ascii")
    esc = html.escape
    return (f'<figure class="kie4o-source" style="margin:0;min-width:0">'
            f'<img src="{src}" {zoom_attrs(alt=label)} style="max-width:min(256px,100%);'
            f'height:auto;display:block;border-radius:3px;opacity:.92;cursor:zoom-in"/>'
            f'<figcaption style="font-size:85%;color:{MUTED};overflow-wrap:anywhere">'
            f'{esc(label)}</figcaption></figure>')


def _id_html(task: Task) -> str:
    """The task id, cut with an ellipsis where the column is narrow (whole when copied)."""
    esc = html.escape
    task_id = task.task_id or ""
    return (f'<code class="kie4o-id" style="font-family:'
            f'{CODE_FONT};font-size:85%;color:{MUTED};min-width:0;max-width:100%;'
            f'overflow:hidden;text-overflow:ellipsis;white-space:nowrap">{esc(task_id)}</code>')


def cell_html(task: Task, embed: str = "thumb", name: str | None = None,
              labels: Sequence[str] = ()) -> str:
    """A task as one cell of a sweep's grid: its images with what picks them, its cost and
    id on one short line, and — only while it runs or when it failed — its state and reason;
    the grid's header and labels say the rest once (``labels`` are the cell's, for the
    images' alt text)."""
    esc = html.escape
    ended = task.status.finished
    parts = [f'<div class="kie4o-card kie4o-cell" style="font-family:{FONT};color:{TEXT};'
             f'border:1px solid {BORDER};border-radius:6px;padding:6px;min-width:0;'
             f'box-sizing:border-box">']
    if task.status is not TaskStatus.SUCCESS:
        parts.append(f'<div class="kie4o-status" style="font-weight:600">'
                     f'{esc(_head_status(task))}</div>')
    reason = _reason(task) if ended else None
    if reason:
        parts.append(f'<div class="kie4o-error" style="color:{ERROR}">{esc(reason)}</div>')
    images = task.numbered_images() if ended else []
    if images and embed != "none":
        parts.append('<div class="kie4o-images" style="display:grid;gap:6px">')
        parts.extend(_figure(task, n, data, embed, name, labels) for n, data in images)
        parts.append("</div>")
    elif images:
        picks = ", ".join(f"{name}[{n}]" if name else f"#{n + 1}" for n, _ in images)
        parts.append(f'<code style="font-family:{CODE_FONT}">{esc(picks)}</code>')
    parts.extend(f'<div style="color:{ERROR}">image {n + 1}: {esc(why)}</div>'
                 for n, why in sorted(task.image_errors.items()))
    parts.append(f'<div class="kie4o-meta" style="display:flex;gap:6px;align-items:baseline;'
                 f'min-width:0;font-size:85%">{_cost_html(task)}{_id_html(task)}</div></div>')
    return "".join(parts)


def _cost_html(task: Task) -> str:
    """The task's cost in the header (``≈ 6 credits`` until KIE reports it), its source on
    hover; nothing for a task never sent."""
    if task.never_created:
        return ""
    cost = task.cost
    text = cost.short().replace(" (demo: not charged)", " · not charged")
    return (f'<span class="kie4o-cost" title="{html.escape(cost.source, quote=True)}" '
            f'style="margin:0 6px 0 0;white-space:nowrap;color:{MUTED};font-size:85%">'
            f'{html.escape(text)}</span>')


def card_html(task: Task, embed: str = "thumb", name: str | None = None) -> str:
    """One task's card: header, prompt, images (or the reason there are none), notes."""
    esc = html.escape
    name = name or _names.get(task)
    family = str(getattr(task, "model", None)
                 or getattr(getattr(task, "backend", None), "family", "4o"))
    parts = [
        f'<div class="kie4o-card kie4o-static" style="font-family:{FONT};color:{TEXT};'
        f'border:1px solid {BORDER};border-radius:6px;padding:6px 10px;margin:2px 0;'
        f'max-width:100%;box-sizing:border-box">',
        # A wrapping row: in a narrow column each part moves to a line of its own instead of
        # running into the next card.
        f'<div class="kie4o-head" style="margin:0 0 4px;display:flex;flex-wrap:wrap;'
        f'align-items:baseline;gap:2px 6px;min-width:0">'
        f'<b>kie4o</b> <span style="color:{MUTED}">{esc(family)} image</span>'
        f'<span>{chip_html(task)}</span><span class="kie4o-status" '
        f'style="white-space:nowrap">{esc(_head_status(task))}</span>{_cost_html(task)}'
        f'{_id_html(task)}</div>',
        f'<div class="kie4o-prompt" style="white-space:pre-wrap;color:{TEXT};margin:2px 0 6px;'
        f'max-height:12em;overflow:auto;line-height:1.35">{esc(task.prompt[:2000])}</div>',
    ]
    # The status, not task.done: a listener draws the card as the task ends, a moment
    # before done is set.
    ended = task.status.finished
    reason = _reason(task) if ended else None
    if reason:
        parts.append(f'<div class="kie4o-error" style="color:{ERROR}">{esc(reason)}</div>')
    images = task.numbered_images() if ended else []
    if images and embed != "none":
        # Side by side in the output's width: one image up to 512 px, several in columns.
        sources = _sources(task)
        count = len(images) + len(sources)
        parts.append(f'<div class="kie4o-images" style="display:grid;gap:8px;'
                     f'align-items:start;grid-template-columns:repeat(auto-fit,'
                     f'minmax(min(100%,220px),1fr));max-width:min(100%,{count * 520}px)">')
        parts.extend(sources)  # an edit: what it started from, beside the result
        parts.extend(_figure(task, n, data, embed, name) for n, data in images)
        parts.append("</div>")
    elif images:
        picks = ", ".join(f"{name}[{n}]" if name else f"#{n + 1}" for n, _ in images)
        parts.append(f'<div style="color:{MUTED}">{len(images)} image(s), not embedded '
                     f'(embed = none): <code style="font-family:{CODE_FONT}">{esc(picks)}'
                     "</code></div>")
    if task.notice:
        parts.append(f'<div class="kie4o-notice" style="color:{MUTED};font-size:85%">'
                     f'{esc(task.notice)}</div>')
    notes = [f"image {n + 1}: {why}" for n, why in sorted(task.image_errors.items())]
    notes += [task.save_error] if task.save_error else []
    parts.extend(f'<div style="color:{ERROR}">{esc(note)}</div>' for note in notes)
    parts.extend(f'<div style="color:{MUTED};font-size:85%">saved <code style="font-family:'
                 f'{CODE_FONT}">{esc(path)}</code></div>' for path in task.saved_paths)
    parts.append("</div>")
    return "".join(parts)


def _rows(item: Cardable) -> list[list[Task]]:
    if isinstance(item, Sequence) and not isinstance(item, str | bytes):
        rows: list[list[Task]] = [list(r) if isinstance(r, Sequence) else [r] for r in item]
        return rows if any(isinstance(r, Sequence) for r in item) else [
            [t for t in item if not isinstance(t, Sequence)]]
    return [[item]]


def card_bundle(item: Cardable, embed: str = "thumb", *,
                names: dict[int, str] | None = None) -> dict[str, Any]:
    """The mimebundle (``text/html`` and ``text/plain``) of one task's card or of a grid.

    ``item`` is a task, a row of tasks or rows of tasks (a sweep, a comparison, a gallery);
    ``names`` maps ``id(task)`` to the name that picks its images, where not remembered by
    :func:`name_task`.
    """
    names = names or {}
    rows = _rows(item)
    tasks = [t for row in rows for t in row]
    if len(tasks) == 1:
        task = tasks[0]
        return {"text/html": f'<div class="kie4o-view">'
                             f'{card_html(task, embed, names.get(id(task)))}</div>'
                             + script_tag(),
                "text/plain": "\n".join(summary_lines(task))}
    width = max(len(row) for row in rows)
    cells = "".join(card_html(t, embed, names.get(id(t))) for row in rows for t in row)
    grid = (f'<div class="kie4o-grid kie4o-view" style="display:grid;gap:8px;'
            f'grid-template-columns:repeat({width},minmax(0,1fr));align-items:start">'
            f'{cells}</div>')
    text = "\n\n".join("\n".join(summary_lines(t)) for t in tasks)
    return {"text/html": grid + script_tag(), "text/plain": text}


def static_bundle(task: Task, embed: str = "thumb") -> dict[str, Any]:
    """The mimebundle of a task's static card (what ``display(task)`` shows)."""
    return card_bundle(task, embed)


def register_cards(shell: Any) -> None:
    """Show tasks and sweeps as their static cards wherever ``shell`` displays them.

    Registered with IPython's display formatter by type name, so nothing of the engine is
    imported (``%load_ext`` stays light) and the engine draws nothing itself."""
    formatter = getattr(getattr(shell, "display_formatter", None), "mimebundle_formatter", None)
    if formatter is None:
        return
    formatter.for_type_by_name("kie_jupyter.engine.task", "Task",
                               lambda task: static_bundle(task, task.embed))
    formatter.for_type_by_name("kie_jupyter.engine.sweep", "Sweep",
                               lambda sweep: sweep_bundle(sweep, sweep.embed))


def sweep_bundle(sweep: Any, embed: str = "thumb", name: str | None = None) -> dict[str, Any]:
    """A sweep as one labelled grid: rows and columns are the values of its last two
    dimensions, earlier ones stack as sections; each cell the task's card (live: its state).

    ``name`` is the sweep's variable, so each image says how to pick it
    (``sw['oil', '3:2'][0]``).
    """
    esc = html.escape
    axes = list(sweep.axes)
    counts = sweep.counts()
    head = (f"kie4o sweep — {counts['done']} of {counts['total']} done"
            + (f" ({counts['succeeded']} succeeded, {counts['failed']} failed"
               + (f", {counts['stopped']} stopped" if counts.get("stopped") else "") + ")"
               if counts["done"] else "")
            + f" · {costs_text([t.cost for t in sweep.tasks])}")
    dims = " × ".join(f"{a.name} ({len(a.values)})" for a in axes)
    by_labels = {labels: task for labels, task in sweep.cells}

    # -n alone on a one-image-per-task model: its tasks are picked by position, as the
    # images of one 4o task are (sw[1] is the second), not by their labels "1", "2"; the
    # headers and the text say that position too, so what is shown is what is typed.
    by_position = [a.name for a in axes] == ["variant"]
    positions = {labels: n for n, (labels, _) in enumerate(sweep.cells)}

    def pick(labels: tuple[str, ...]) -> str | None:
        if not name:
            return None
        if by_position:
            return f"{name}[{positions[labels]}]"
        return f"{name}[{', '.join(repr(v) for v in labels)}]"

    def shown(labels: tuple[str, ...]) -> tuple[str, ...]:
        if by_position and labels in positions:
            return (pick(labels) or f"[{positions[labels]}]",)
        return labels

    def cell(labels: tuple[str, ...]) -> str:
        task = by_labels.get(labels)
        if task is None:  # a hole keeps its place, so the cells stay under their labels
            return '<div class="kie4o-cell-none"></div>'
        return cell_html(task, embed, pick(labels), shown(labels))

    cols = axes[-1] if axes else None
    rows = axes[-2] if len(axes) >= 2 else None
    sections = axes[:-2]
    parts = [f'<div class="kie4o-sweep kie4o-view" style="font-family:{FONT};color:{TEXT}">'
             f'<div class="kie4o-sweep-head" style="margin:2px 0 6px"><b>{esc(head)}</b> '
             f'<span style="color:{MUTED}">{esc(dims)}</span></div>'
             f'{_shared_facts(sweep)}']
    label_style = f'style="color:{MUTED};font-weight:600;padding:2px 4px"'
    for outer in itertools.product(*(a.values for a in sections)):
        if outer:
            title = " · ".join(f"{a.name}: {v}" for a, v in zip(sections, outer, strict=True))
            parts.append(f'<div class="kie4o-section" {label_style}>{esc(title)}</div>')
        ncols = len(cols.values) if cols else 1
        parts.append(f'<div class="kie4o-grid" style="display:grid;gap:8px;align-items:start;'
                     f'grid-template-columns:{"auto " if rows else ""}'
                     f'repeat({ncols},minmax(0,1fr))">')
        if cols:
            if rows:
                parts.append("<div></div>")
            parts.extend(f'<div class="kie4o-col" {label_style}>{esc(shown((v,))[0])}</div>'
                         for v in cols.values)
        for r in (rows.values if rows else (None,)):
            if rows:
                parts.append(f'<div class="kie4o-row" {label_style}>{esc(r or "")}</div>')
            for v in (cols.values if cols else (None,)):
                labels = tuple(x for x in (*outer, r, v) if x is not None)
                parts.append(cell(labels))
        parts.append("</div>")
    parts.append("</div>")
    lines = [f"{head}; {dims}"]
    for labels, task in sweep.cells:
        said = shown(labels)[0] if by_position else f"[{', '.join(labels)}]"
        lines.append(f"  {said} " + " ".join(summary_lines(task)[:1]))
    return {"text/html": "".join(parts) + script_tag(), "text/plain": "\n".join(lines)}


def _shared_facts(sweep: Any) -> str:
    """What every task of a sweep has in common, said once: the model (if one), the chips,
    and the prompt with its varying part marked."""
    esc = html.escape
    tasks = list(sweep.tasks)
    if not tasks:
        return ""
    models = {str(getattr(t, "model", "")) for t in tasks}
    shared = [c for c in chips(tasks[0]) if all(c in chips(t) for t in tasks[1:])]
    facts = ([f'<span style="color:{MUTED}">{esc(models.pop())} image</span>']
             if len(models) == 1 else [])
    if all(getattr(t, "demo", False) for t in tasks):
        facts.append(f'<span class="kie4o-chip kie4o-demo" style="{CHIP};background:{DEMO_BG};'
                     f'color:{DEMO_TEXT}">demo</span>')
    facts += [f'<span class="kie4o-chip" style="{CHIP}">{esc(c)}</span>' for c in shared]
    return (f'<div class="kie4o-shared" style="margin:0 0 6px;display:flex;flex-wrap:wrap;'
            f'gap:2px 6px;align-items:baseline">{"".join(facts)}</div>'
            f'{_shared_prompt(sweep, tasks)}')


def _shared_prompt(sweep: Any, tasks: Sequence[Task]) -> str:
    """The prompt every task shares, or the template with its ``{a|b}`` groups marked;
    nothing when the prompts differ and no template says how (the labels tell them apart)."""
    esc = html.escape
    template = getattr(sweep, "template", None)
    prompts = {t.prompt for t in tasks}
    if len(prompts) == 1:
        prompt = esc(template if template and "{" not in template else tasks[0].prompt)
    elif template:  # the {a|b} groups, marked
        prompt = re.sub(r"\{[^{}|]*(\|[^{}|]*)+\}", lambda m: (
            f'<mark style="background:{CHIP_BG};color:{TEXT};border-radius:3px">'
            f'{m.group(0)}</mark>'), esc(template))
    else:
        return ""
    return (f'<div class="kie4o-prompt" style="white-space:pre-wrap;margin:0 0 8px;'
            f'max-height:8em;overflow:auto">{prompt}</div>')


class SweepCard:
    """A displayable grid of a sweep (what the magic shows, live and at the end)."""

    def __init__(self, sweep: Any, embed: str = "thumb", name: str | None = None) -> None:
        self.sweep = sweep
        self.embed = embed
        self.name = name

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return sweep_bundle(self.sweep, self.embed, self.name)


class Card:
    """A displayable card of one task or a grid of tasks (``display(Card(task))``)."""

    def __init__(self, item: Cardable, embed: str = "thumb", *,
                 names: dict[int, str] | None = None) -> None:
        self.item = item
        self.embed = embed
        self.names = names

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return card_bundle(self.item, self.embed, names=self.names)
