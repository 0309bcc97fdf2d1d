"""``paint(image)``: paint a mask over an image in the notebook, then keep a static picture.

The painter is an anywidget (one ES module, ``painter.js``, shipped in the package: nothing
from a CDN). The front end gets a display copy of the image (long side ≤ 1024) and paints on a
canvas at the source's exact pixel size; after every stroke or action it sends that canvas
as a PNG (``mask_png``: base64, the alpha is the paint, "" = nothing painted). Python may set
``mask_png`` too (``paint_rect``, ``fill``…): the front end takes it as its new base.

:class:`Mask` is what the notebook name holds: the mask in KIE's polarity (black = painted =
will change, white = keep) at the source's size, usable as ``-m $m`` / ``mask=m``. When it is
done (its Done button, :meth:`Mask.done`, or its first use as an input) the painter gives way
to a static picture in the same display and every widget is closed, as the task panel does:
a saved notebook keeps the picture and no widget state.
"""

from __future__ import annotations

import base64
import html
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.display import DisplayHandle, display
from PIL import Image, ImageDraw

from ..api.errors import KieUsageError
from ..engine.inputs import InputImage, resolve_images
from .cards import BORDER, FONT, MUTED, TEXT, THUMB_SIZE
from .overlay import PAINT_RGB, mask_overlay
from .resend import remember_card, resend_cards

__all__ = ["Mask", "MaskPainter", "paint", "fallback_line", "finish_used", "forget_used"]

#: Longest side of the copy of the image the front end shows (the mask keeps the source's).
DISPLAY_SIDE = 1024
#: A pixel is painted where the canvas's alpha reaches this (as KIE reads mid-grey).
THRESHOLD = 128
_KIE_LUT = [0 if a >= THRESHOLD else 255 for a in range(256)]


def fallback_line(name: str | None) -> str:
    """What a front end without widgets shows instead of the painter."""
    m = name or "m"
    return ("kie4o mask painter: needs Jupyter widgets (JupyterLab, Notebook 7). Without them: "
            f"{m}.paint_rect(left, top, right, bottom) in fractions 0–1, or a file mask "
            "-m mask.png (black = change, white = keep, the image's size)")


def _percent(fraction: float) -> str:
    """``23%``; ``<1%`` / ``>99%`` rather than a rounded 0 % or 100 % that is not."""
    pct = fraction * 100
    if 0 < pct < 0.5:
        return "<1%"
    if 99.5 <= pct < 100:
        return ">99%"
    return f"{round(pct)}%"


class MaskPainter(anywidget.AnyWidget):
    """The painter's front end; its traits are all it shares with :class:`Mask`."""

    _esm = Path(__file__).with_name("painter.js")
    #: The display copy, a data URL (never the full original).
    image_url = traitlets.Unicode("").tag(sync=True)
    #: The source's pixel size: the mask canvas's own resolution.
    source_width = traitlets.Int(0).tag(sync=True)
    source_height = traitlets.Int(0).tag(sync=True)
    #: The mask canvas as a base64 PNG (alpha = painted), "" = nothing painted.
    mask_png = traitlets.Unicode("").tag(sync=True)
    name = traitlets.Unicode("").tag(sync=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # anywidget's text would be an object repr: say instead what to do without widgets.
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):
            data, meta = bundle
            data["text/plain"] = fallback_line(self.name or None)
            return data, meta
        return bundle

    def close(self) -> None:
        """Close the painter and its layout widget (no widget state is left to save)."""
        for attr in ("layout", "style"):
            part = getattr(self, attr, None)
            if part is not None and hasattr(part, "close"):
                part.close()
        super().close()


class Mask:
    """A painted mask: ``.image`` (mode "L", the source's size, 0 = painted = will change,
    255 = keep), ``.png``, ``.save(path)``, ``.painted``, ``.empty``; ``paint_rect``,
    ``fill``, ``clear``, ``invert`` paint it from code (and update the painter or picture).

    Use it as the mask of an edit: ``%%kie4o -i $fox[0] -m $m`` or ``mask=m``.
    """

    def __init__(self, source: bytes, *, name: str | None = None) -> None:
        self.name = name
        self._source = source
        try:
            with Image.open(io.BytesIO(source)) as opened:
                self._size: tuple[int, int] = opened.size
                self._display_url = _display_copy(opened)
        except Exception as exc:  # noqa: BLE001 - any reason Pillow cannot read it
            raise KieUsageError(f"mask: cannot read the image ({exc})") from None
        self._alpha = Image.new("L", self._size, 0)  # the paint: 255 = painted
        self._lock = threading.RLock()
        self._version = 0
        self._cache: dict[str, tuple[int, Any]] = {}
        self._sent = ""  # the last mask_png Python set (its echo is not news)
        self._widget: MaskPainter | None = None
        self._handle: DisplayHandle | None = None
        self._cell_thread: threading.Thread | None = None
        self._finished = False

    # -- reading ----------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """(width, height): the source image's, exactly."""
        return self._size

    @property
    def image(self) -> Image.Image:
        """The mask as KIE reads it: mode "L", 0 (black) = painted, 255 (white) = keep."""
        with self._lock:
            return self._alpha.point(_KIE_LUT)

    @property
    def png(self) -> bytes:
        """:attr:`image` as PNG bytes."""
        return self._cached("png", lambda: _png(self.image))

    @property
    def painted(self) -> float:
        """The fraction of the image painted (0..1)."""
        with self._lock:
            hist = self._alpha.histogram()
        return sum(hist[THRESHOLD:]) / (self._size[0] * self._size[1])

    @property
    def empty(self) -> bool:
        """True when nothing is painted."""
        return self.painted == 0

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the mask as a PNG; return its absolute path. A folder gets ``mask.png``."""
        text = os.fspath(path)
        target = Path(text).expanduser().absolute()
        if target.is_dir() or text.endswith(("/", os.sep)) or not target.suffix:
            target = target / "mask.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(self.png)
        partial.replace(target)
        return target

    # -- painting from code -----------------------------------------------------------------

    def paint_rect(self, left: float, top: float, right: float, bottom: float) -> Mask:
        """Paint a rectangle given in fractions 0–1 of the image (``paint_rect(0, 0, .5, 1)``
        is the left half); returns the mask."""
        values = (left, top, right, bottom)
        if not (all(isinstance(v, (int, float)) for v in values)
                and 0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            raise KieUsageError(
                "paint_rect: left, top, right, bottom are fractions 0–1 of the image, "
                f"left < right and top < bottom (got {left!r}, {top!r}, {right!r}, {bottom!r})")
        w, h = self._size
        x0, y0 = min(round(left * w), w - 1), min(round(top * h), h - 1)
        x1, y1 = max(round(right * w), x0 + 1), max(round(bottom * h), y0 + 1)
        with self._lock:
            ImageDraw.Draw(self._alpha).rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
        return self._changed()

    def fill(self) -> Mask:
        """Paint everything (the whole image will change)."""
        with self._lock:
            self._alpha = Image.new("L", self._size, 255)
        return self._changed()

    def clear(self) -> Mask:
        """Paint nothing."""
        with self._lock:
            self._alpha = Image.new("L", self._size, 0)
        return self._changed()

    def invert(self) -> Mask:
        """Swap painted and kept."""
        with self._lock:
            self._alpha = self._alpha.point([255 - a for a in range(256)])
        return self._changed()

    def _changed(self) -> Mask:
        """Show the new mask: the painter takes it as its base, or the picture is redrawn."""
        with self._lock:
            self._version += 1
            widget = self._widget
            if widget is not None:
                self._sent = self._front_value()
                widget.mask_png = self._sent
        if widget is None and self._finished:
            self._show_static(remember=False)
        return self

    def _front_value(self) -> str:
        """The mask as the front end paints it: the paint colour, alpha = painted."""
        if self.empty:
            return ""
        layer = Image.new("RGBA", self._size, (*PAINT_RGB, 0))
        layer.putalpha(self._alpha)
        return base64.b64encode(_png(layer)).decode("ascii")

    def _on_front(self, change: dict[str, Any]) -> None:
        """``mask_png`` changed: from the front end (a stroke), unless it is Python's own."""
        value = str(change["new"])
        with self._lock:
            if value == self._sent:
                return
        try:
            alpha = _alpha_of(value, self._size)
        except Exception:  # noqa: BLE001 - a broken message keeps the mask as it was
            return
        with self._lock:
            self._alpha = alpha
            self._sent = value
            self._version += 1

    # -- as an input ------------------------------------------------------------------------

    def as_input_images(self, option: str) -> list[InputImage]:
        """The mask as an edit's input (``-m $m``); refused while nothing is painted. Its
        first use puts the static picture in place of the painter."""
        if self.empty:
            raise KieUsageError(
                f"{option}: the mask has nothing painted — paint the area to change "
                f"(or {self.name or 'm'}.fill()) first")
        with _used_lock:
            _used.append(self)  # finished when the edit is sent (not by a dry run)
        return [InputImage(label="painted mask", data=self.png, source="painted mask")]

    # -- the display ------------------------------------------------------------------------

    def _show(self) -> None:
        """Display the painter with a display id (the static picture takes its place)."""
        widget = MaskPainter(image_url=self._display_url, source_width=self._size[0],
                             source_height=self._size[1], name=self.name or "",
                             mask_png=self._front_value())
        self._sent = widget.mask_png
        widget.observe(self._on_front, names="mask_png")
        widget.on_msg(self._on_message)
        self._widget = widget
        self._cell_thread = threading.current_thread()
        _resend_hook()
        self._handle = display(widget, display_id=True)

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if isinstance(content.get("png"), str):  # each stroke, and the last one with Done
            self._on_front({"new": content["png"]})
        if content.get("event") == "done":
            # A click arrives on a comm message, not in a cell: the next cell sends the
            # picture again for front ends that route output by the running cell.
            self._finish(remember=True)

    def done(self) -> None:
        """Finish painting: the painter gives way to a static picture, its widgets close."""
        self._finish(remember=False)

    def _finish(self, *, remember: bool) -> None:
        with self._lock:
            widget, self._widget = self._widget, None
            self._finished = True
        if widget is None:
            return  # never shown, or already finished: the picture follows each change
        self._show_static(remember=remember)
        widget.unobserve(self._on_front, names="mask_png")
        # Blank before closing: a runner that keeps closed widgets' state (nbconvert's
        # default) then keeps no image in the saved file.
        widget.image_url = widget.mask_png = ""
        widget.close()

    def _show_static(self, *, remember: bool) -> None:
        handle = self._handle
        if handle is None:
            return
        bundle = self.static_bundle()
        handle.update(bundle, raw=True)
        if remember or threading.current_thread() is not self._cell_thread:
            remember_card(handle, bundle)

    def static_bundle(self) -> dict[str, Any]:
        """The picture that replaces the painter: the image with the paint tinted."""
        return dict(self._cached("bundle", self._make_bundle))

    def _make_bundle(self) -> dict[str, Any]:
        overlay = mask_overlay(self._source, self.png, max_side=THUMB_SIZE)
        with Image.open(io.BytesIO(overlay)) as shown:
            width = shown.width
            small = io.BytesIO()  # the HTML's copy: a JPEG, a third of the PNG's bytes
            shown.convert("RGB").save(small, format="JPEG", quality=85)
        jpeg = base64.b64encode(small.getvalue()).decode("ascii")
        w, h = self._size
        esc = html.escape
        label = f"mask {self.name}" if self.name else "mask"
        said = f"{_percent(self.painted)} painted = will be changed"
        alt = f"{label}: the image with the painted area tinted red ({said})"
        figure = (
            f'<figure class="kie4o-static kie4o-mask" style="margin:0;font-family:{FONT};'
            f'color:{TEXT}"><img src="data:image/jpeg;base64,{jpeg}" '
            f'alt="{esc(alt, quote=True)}"'
            f' style="width:100%;max-width:{width}px;height:auto;display:block;'
            f'border:1px solid {BORDER};border-radius:3px"/>'
            f'<figcaption style="font-size:85%;color:{MUTED}"><code style="color:{TEXT}">'
            f'{esc(label)}</code> · {w}×{h} · {esc(said)} · black = change, white = keep'
            f'</figcaption></figure>')
        return {"text/html": figure, "image/png": base64.b64encode(overlay).decode("ascii"),
                "text/plain": repr(self)}

    def _cached(self, key: str, make: Any) -> Any:
        with self._lock:
            version = self._version
            found = self._cache.get(key)
            if found is not None and found[0] == version:
                return found[1]
        value = make()
        with self._lock:
            self._cache[key] = (version, value)
        return value

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name else ""
        w, h = self._size
        return f"<kie4o mask{name} {w}×{h}, {_percent(self.painted)} painted>"


# -- helpers -----------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _display_copy(image: Image.Image) -> str:
    """A data URL of a copy with its long side ≤ :data:`DISPLAY_SIDE` (JPEG unless it has
    transparency)."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    alpha = copy.mode in ("RGBA", "LA", "PA") or "transparency" in copy.info
    buffer = io.BytesIO()
    if alpha:
        copy.convert("RGBA").save(buffer, format="PNG")
        mime = "image/png"
    else:
        copy.convert("RGB").save(buffer, format="JPEG", quality=88)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _alpha_of(value: str, size: tuple[int, int]) -> Image.Image:
    """The paint (alpha) of a front-end mask PNG, at ``size``."""
    if not value:
        return Image.new("L", size, 0)
    with Image.open(io.BytesIO(base64.b64decode(value))) as opened:
        alpha = opened.convert("RGBA").getchannel("A")
    if alpha.size != size:
        alpha = alpha.resize(size, Image.Resampling.NEAREST)
    return alpha


def _source_bytes(image: Any) -> bytes:
    found = resolve_images([image], "mask", max_images=sys.maxsize)
    if len(found) != 1:
        raise KieUsageError("mask: pick one image, e.g. $fox[0]")
    if found[0].data is None:
        raise KieUsageError("mask: needs the image's pixels: give a local file or a task image")
    return found[0].data


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _has_kernel() -> bool:
    """A kernel with a front end that may draw widgets (not a terminal, not plain Python)."""
    return getattr(_shell(), "kernel", None) is not None


def _resend_hook() -> None:
    """Register, once per shell, the hook that sends again a picture put in place between
    cells (the magics register the same one)."""
    events = getattr(_shell(), "events", None)
    if events is not None and resend_cards not in events.callbacks["pre_run_cell"]:
        events.register("pre_run_cell", resend_cards)


def front_end_notes(name: str | None = None) -> list[str]:
    """One line per front end known to need something for custom widgets."""
    notes = []
    if "google.colab" in sys.modules:
        notes.append("kie4o mask painter: Colab draws custom widgets only with its custom "
                     "widget manager (anywidget turns it on; if the painter does not show, run "
                     "`from google.colab import output; output.enable_custom_widget_manager()`"
                     " and run this cell again)")
    if os.environ.get("VSCODE_PID"):
        notes.append("kie4o mask painter: in VS Code custom widget code may come from a CDN "
                     "(jsdelivr/unpkg) when the kernel's own copy is not found; if the painter "
                     f"does not show (offline, a remote kernel), use {name or 'm'}.paint_rect(…) "
                     "or a file mask -m mask.png")
    return notes


#: Masks given to an edit since the last send: :func:`finish_used` finishes them once the
#: edit is sent, :func:`forget_used` when it was a dry run or refused.
_used: list[Mask] = []
_used_lock = threading.Lock()


def finish_used() -> None:
    """The edit that used these masks is being sent: each painter gives way to its picture."""
    with _used_lock:
        masks = list(dict.fromkeys(_used))
        _used.clear()
    for mask in masks:
        mask.done()


def forget_used() -> None:
    """The masks were only looked at (a dry run, a refused cell): they stay live."""
    with _used_lock:
        _used.clear()


def paint(image: Any, *, name: str | None = None) -> Mask:
    """Paint a mask over one image and return it (black = painted = will change).

    ``image``: a task image (``fox[1]``), a task with one image, a local path or bytes.
    ``name`` is the notebook name it will have (for its captions). In a notebook the painter
    shows; with no kernel (a terminal) one line says how to paint from code instead::

        m = kie_jupyter.paint(fox[0], name="m")   # paint, then Done
        edit = kie_jupyter.generate("a red scarf", images=fox[0], mask=m)
    """
    mask = Mask(_source_bytes(image), name=name)
    if not _has_kernel():
        print(fallback_line(name))
        return mask
    for line in front_end_notes(name):
        print(line)
    mask._show()
    return mask
