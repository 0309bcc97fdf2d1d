"""One click to see an image at full size, and two side by side at the same zoom.

Every image a card, a sweep grid, compare or the gallery shows is a ``kie4o-zoom`` image:
focusable, with alt text, and ``data-full`` where a larger copy than the embedded one can be
had (the result's https URL; KIE keeps results 14 days). One small script, sent with each
view and installed once per page, opens a clicked image (or Enter on a focused one) in an
overlay at 100 % — its own pixels, scrollable — with Fit / 100 % / zoom buttons; "Compare"
puts another image of the same output beside it, both at the same zoom and scrolled
together (a larger image scrolls on past a smaller one's end); Tab stays in the overlay, one
overlay is open at a time, and Escape or Close ends it and gives the focus back.

Where scripts do not run (a saved notebook on GitHub or nbviewer, an untrusted notebook) the
image stays at its embedded size and its caption says what it is and how to get the full
one (``fox[1]`` and its pixel size): nothing pretends to open.

Hand-written on purpose: a dozen lines of DOM code, no framework, nothing fetched (the
wheel ships it; no CDN), and the same file in JupyterLab 4 and Notebook 7.
"""

from __future__ import annotations

import html

__all__ = ["SCRIPT", "script_tag", "zoom_attrs"]

SCRIPT = r"""
(() => {
  if (window.__kie4oViewer) return;
  window.__kie4oViewer = 1;
  const el = (tag, css, text) => {
    const e = document.createElement(tag);
    if (css) e.style.cssText = css;
    if (text) e.textContent = text;
    return e;
  };
  const button = (text, label) => {
    const b = el('button', 'font:inherit;padding:2px 10px;border-radius:4px;border:1px solid '
      + '#888;background:#333;color:#fff;cursor:pointer', text);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    return b;
  };
  const open = (first) => {
    const back = document.activeElement;
    const scope = first.closest('.kie4o-view') || first.parentElement;
    const others = Array.from(scope.querySelectorAll('img.kie4o-zoom'));
    const box = el('div', 'position:fixed;inset:0;z-index:100000;background:rgba(0,0,0,.9);'
      + 'display:flex;flex-direction:column;color:#fff;font:14px system-ui,sans-serif');
    box.className = 'kie4o-viewer';
    box.setAttribute('role', 'dialog');
    box.setAttribute('aria-modal', 'true');
    box.setAttribute('aria-label', 'full-size image');
    box.tabIndex = -1;
    const bar = el('div', 'display:flex;gap:8px;align-items:center;padding:8px 12px;'
      + 'flex-wrap:wrap');
    const zoomText = el('span', 'min-width:5em');
    const fit = button('Fit', 'fit to the window');
    const full = button('100 %', 'actual pixels');
    const less = button('−', 'zoom out');
    const more = button('+', 'zoom in');
    const compare = button('Compare…', 'put another image beside this one');
    const close = button('Close ✕', 'close (Escape)');
    const row = el('div', 'flex:1;display:flex;gap:8px;padding:0 12px 12px;min-height:0');
    bar.append(zoomText, fit, full, less, more, compare, el('span', 'flex:1'), close);
    box.append(bar, row);
    let zoom = 1;
    const panes = [];
    const show = () => {
      zoomText.textContent = zoom ? Math.round(zoom * 100) + ' %' : 'fit';
      for (const p of panes) {
        const im = p.img;
        if (!zoom) {
          im.style.width = ''; im.style.maxWidth = '100%'; im.style.maxHeight = '100%';
        } else {
          im.style.maxWidth = 'none'; im.style.maxHeight = 'none';
          im.style.width = (im.naturalWidth * zoom) + 'px';
        }
      }
    };
    const add = (src) => {
      const pane = el('figure', 'flex:1 1 0;min-width:0;margin:0;display:flex;'
        + 'flex-direction:column;background:#111;border-radius:4px');
      const view = el('div', 'flex:1;overflow:auto;min-height:0');
      const img = el('img', 'display:block');
      img.className = 'kie4o-viewer-img';
      img.alt = src.alt;
      img.src = src.dataset.full || src.src;
      img.addEventListener('error', () => {
        if (img.src !== src.src) {
          img.src = src.src;
          cap.textContent += ' (the full image\'s link has expired: the embedded copy)';
        }
      });
      const cap = el('figcaption', 'padding:4px 8px;color:#ddd',
                     (src.dataset.pick || src.alt) + (src.dataset.size ? ' · '
                       + src.dataset.size : ''));
      img.addEventListener('load', () => {
        // Only the embedded copy, and it is smaller than the image: say so, and where the
        // full image is.
        const got = img.naturalWidth + '×' + img.naturalHeight;
        if (img.src === src.src && src.dataset.size && src.dataset.size !== got
            && !cap.dataset.told) {
          cap.dataset.told = '1';
          cap.textContent += ' — this is the embedded ' + got + ' copy'
            + (src.dataset.saved ? '; the full image is saved at ' + src.dataset.saved : '');
        }
        show();
      });
      view.append(img);
      view.tabIndex = 0;  // scrolled with the arrow keys, in the dialog's Tab order
      view.setAttribute('role', 'region');
      view.setAttribute('aria-label', 'scroll ' + (src.dataset.pick || src.alt));
      const me = {view, img, echo: null};
      // Scrolled together: a pane moved by the sync must not write back, or the larger
      // image would be held to the smaller one's range (its scroll is clamped there).
      view.addEventListener('scroll', () => {
        const at = view.scrollLeft + ',' + view.scrollTop;
        if (me.echo !== null) {
          const echo = me.echo;
          me.echo = null;
          if (echo === at) return;
        }
        for (const q of panes) {
          if (q === me) continue;
          const was = q.view.scrollLeft + ',' + q.view.scrollTop;
          q.view.scrollLeft = view.scrollLeft;
          q.view.scrollTop = view.scrollTop;
          const now = q.view.scrollLeft + ',' + q.view.scrollTop;
          if (now !== was) q.echo = now;
        }
      });
      pane.append(view, cap);
      row.append(pane);
      panes.push(me);
      box.setAttribute('aria-label', panes.length > 1
        ? panes.length + ' images side by side at the same zoom' : 'full-size image');
      show();
    };
    const pick = () => {
      const strip = el('div', 'display:flex;gap:6px;flex-wrap:wrap;padding:0 12px 8px');
      strip.setAttribute('role', 'listbox');
      strip.setAttribute('aria-label', 'the image to compare with');
      for (const o of others) {
        if (o === first) continue;
        const t = el('img', 'height:64px;cursor:pointer;border-radius:3px;outline-offset:2px');
        t.src = o.src; t.alt = 'compare with ' + o.alt; t.tabIndex = 0;
        t.className = 'kie4o-viewer-choice';
        t.setAttribute('role', 'option');
        const choose = () => { strip.remove(); add(o); compare.disabled = true; };
        t.addEventListener('click', choose);
        t.addEventListener('keydown', e => { if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault(); choose(); } });
        strip.append(t);
      }
      box.insertBefore(strip, row);
      const firstChoice = strip.querySelector('img');
      if (firstChoice) firstChoice.focus();
    };
    // Tab and Shift+Tab go round the dialog's own controls, never to the page behind.
    const tabs = () => Array.from(box.querySelectorAll('button, [tabindex="0"]'))
      .filter(t => !t.disabled && t.isConnected);
    const cycle = e => {
      const all = tabs();
      if (!all.length) return;
      const at = all.indexOf(document.activeElement);
      const next = e.shiftKey ? (at <= 0 ? all.length - 1 : at - 1)
                              : (at === -1 || at === all.length - 1 ? 0 : at + 1);
      e.preventDefault();
      all[next].focus();
    };
    // Escape is caught before the page's own keys (JupyterLab's command mode), while open.
    const onKey = e => {
      if (e.key === 'Escape') { e.preventDefault(); e.stopImmediatePropagation(); end(); }
      else if (e.key === 'Tab') { e.stopImmediatePropagation(); cycle(e); }
    };
    // The focus sent behind the dialog (a click, a script) comes back to it.
    const onFocus = e => { if (!box.contains(e.target)) box.focus(); };
    const end = () => {
      document.removeEventListener('keydown', onKey, true);
      document.removeEventListener('focusin', onFocus, true);
      box.remove();
      if (back && back.focus) back.focus();
    };
    fit.onclick = () => { zoom = 0; show(); };
    full.onclick = () => { zoom = 1; show(); };
    less.onclick = () => { zoom = Math.max((zoom || 1) / 1.5, 0.05); show(); };
    more.onclick = () => { zoom = Math.min((zoom || 1) * 1.5, 16); show(); };
    compare.onclick = pick;
    compare.disabled = others.length < 2;
    close.onclick = end;
    document.addEventListener('keydown', onKey, true);
    document.addEventListener('focusin', onFocus, true);
    document.body.append(box);
    add(first);
    close.focus();
  };
  const target = e => e.target && e.target.closest ? e.target.closest('img.kie4o-zoom') : null;
  // One viewer at a time: an image behind an open one does nothing (its Escape would
  // otherwise close the hidden viewer first).
  const openOnce = img => { if (!document.querySelector('.kie4o-viewer')) open(img); };
  // Caught first and kept from the page: Enter on a focused image must not also put
  // JupyterLab's cell into edit mode (which would take the focus from the viewer).
  document.addEventListener('click', e => {
    const img = target(e);
    if (img) { e.preventDefault(); e.stopImmediatePropagation(); openOnce(img); }
  }, true);
  document.addEventListener('keydown', e => {
    const img = target(e);
    if (img && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault(); e.stopImmediatePropagation(); openOnce(img);
    }
  }, true);
})();
"""


def script_tag() -> str:
    """The viewer's script, to send with a view (it installs itself once per page)."""
    return f"<script>{SCRIPT}</script>"


def zoom_attrs(*, alt: str, pick: str | None = None, full: str | None = None,
               size: tuple[int, int] | None = None, saved: str | None = None) -> str:
    """The attributes that make an ``<img>`` open full size: its class, focus, alt text,
    what picks it (``fox[1]``), its full pixel size, a larger copy's URL and the file the
    full image is saved in, all escaped."""
    esc = html.escape
    parts = ['class="kie4o-zoom"', 'tabindex="0"', 'role="button"',
             f'alt="{esc(alt, quote=True)}"',
             f'aria-label="{esc("open full size: " + alt, quote=True)}"']
    if pick:
        parts.append(f'data-pick="{esc(pick, quote=True)}"')
    if size:
        parts.append(f'data-size="{size[0]}×{size[1]}"')
    if full:
        parts.append(f'data-full="{esc(full, quote=True)}"')
    if saved:
        parts.append(f'data-saved="{esc(saved, quote=True)}"')
    return " ".join(parts)
