// The kie4o mask painter: one ES module for anywidget, no build step, nothing fetched.
//
// Traits (see painter.py): image_url (a display copy), source_width/source_height (the mask
// canvas's own resolution: the source's exact pixel size), mask_png (the mask canvas as a
// base64 PNG, alpha = painted, "" = nothing painted), name. After every stroke or action the
// canvas goes to Python; a mask_png set from Python becomes the new base layer.
// Undo replays the list of actions from that base: no pixel copies per step.

const PAINT = "rgb(255, 32, 64)"; // painter.py's PAINT_RGB
const THRESHOLD = 128; // alpha from which a pixel counts as painted (as Python reads it)
const MAX_OPS = 200; // beyond this, the oldest actions are folded into the base

const CSS = `
.kie4o-painter { font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, #1f1f1f);
  max-width: 100%; padding: 2px 0; }
.kie4o-painter .kp-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px;
  margin: 0 0 4px; }
.kie4o-painter button { font: inherit; line-height: 1.4; padding: 2px 10px; cursor: pointer;
  color: var(--jp-ui-font-color1, #1f1f1f); background: var(--jp-layout-color2, #eeeeee);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 4px; }
.kie4o-painter button:hover:not(:disabled) { background: var(--jp-layout-color3, #e0e0e0); }
.kie4o-painter button:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2);
  outline-offset: 1px; }
.kie4o-painter button[aria-pressed="true"], .kie4o-painter button.kp-done {
  background: var(--jp-accept-color-normal, #1976d2); border-color: transparent; color: #fff; }
.kie4o-painter button[aria-pressed="true"]:hover:not(:disabled),
.kie4o-painter button.kp-done:hover:not(:disabled) {
  background: var(--jp-accept-color-hover, #1565c0); }
.kie4o-painter button.kp-done { font-weight: 600; }
.kie4o-painter button:disabled { opacity: 0.45; cursor: default; }
.kie4o-painter .kp-sep { width: 1px; align-self: stretch; margin: 0 2px;
  background: var(--jp-border-color2, #e0e0e0); }
.kie4o-painter label { display: inline-flex; align-items: center; gap: 4px; }
.kie4o-painter input[type="range"] { width: 96px; margin: 0;
  accent-color: var(--jp-accept-color-normal, #1976d2); }
.kie4o-painter .kp-size { min-width: 3.6em; font-variant-numeric: tabular-nums; }
.kie4o-painter .kp-help, .kie4o-painter .kp-status { margin: 3px 0;
  color: var(--jp-ui-font-color2, #5f6368); }
.kie4o-painter .kp-help b { color: var(--jp-ui-font-color1, #1f1f1f); font-weight: 600; }
.kie4o-painter .kp-stage { position: relative; overflow: hidden; touch-action: none;
  user-select: none; -webkit-user-select: none; border-radius: 3px;
  border: 1px solid var(--jp-border-color2, #e0e0e0); background: var(--jp-layout-color2, #eee); }
.kie4o-painter .kp-stage img, .kie4o-painter .kp-stage canvas { position: absolute; left: 0;
  top: 0; width: 100%; height: 100%; display: block; }
.kie4o-painter .kp-stage img { pointer-events: none; }
.kie4o-painter .kp-stage canvas { opacity: 0.6; cursor: crosshair; touch-action: none;
  filter: drop-shadow(0 0 1px #fff) drop-shadow(0 0 1px #000); } /* an edge on any picture */
.kie4o-painter .kp-stage.kp-mask-only { background: #fff; }
.kie4o-painter .kp-stage.kp-mask-only img { visibility: hidden; }
.kie4o-painter .kp-stage.kp-mask-only canvas { opacity: 1; filter: brightness(0); }
.kie4o-painter .kp-ring { position: absolute; pointer-events: none; border-radius: 50%;
  border: 1.5px solid #fff; box-shadow: 0 0 0 1px rgba(0, 0, 0, 0.65);
  transform: translate(-50%, -50%); display: none; }
`;

function make(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function button(text, title, extra = {}) {
  return make("button", { type: "button", title, text, ...extra });
}

/** "23%", or "<1%" / ">99%" rather than a rounded 0 % or 100 % that is not (as Python). */
function percent(fraction) {
  const pct = fraction * 100;
  if (pct > 0 && pct < 0.5) return "<1%";
  if (pct >= 99.5 && pct < 100) return ">99%";
  return `${Math.round(pct)}%`;
}

function render({ model, el }) {
  const W = Math.max(1, model.get("source_width"));
  const H = Math.max(1, model.get("source_height"));
  const listeners = [];
  const on = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts);
    listeners.push(() => target.removeEventListener(type, fn, opts));
  };

  // -- the page -------------------------------------------------------------------------------
  const brush = button("Brush", "Paint the area to change", { "aria-pressed": "true" });
  const eraser = button("Eraser", "Unpaint (keep this area)", { "aria-pressed": "false" });
  const slider = make("input", { type: "range", min: "4", max: "160", step: "1",
                                 "aria-label": "brush size in screen pixels" });
  slider.value = "36";
  const sizeText = make("span", { class: "kp-size" });
  const undo = button("Undo", "Undo the last action");
  const clear = button("Clear", "Unpaint everything");
  const invert = button("Invert", "Swap painted and kept");
  const fill = button("Fill", "Paint everything");
  const maskOnly = button("Mask only", "Show the mask as KIE receives it: black = change, "
                          + "white = keep", { "aria-pressed": "false" });
  const done = button("Done", "Finish: the painter becomes a picture of the mask",
                      { class: "kp-done" });
  const sep = () => make("span", { class: "kp-sep", "aria-hidden": "true" });
  const bar = make("div", { class: "kp-bar", role: "toolbar", "aria-label": "mask painter" }, [
    brush, eraser, make("label", {}, ["Size", slider, sizeText]), sep(),
    undo, clear, invert, fill, sep(), maskOnly, done,
  ]);
  const help = make("div", { class: "kp-help" }, [
    make("b", { text: "Painted" }), " = will be changed · ",
    make("b", { text: "unpainted" }), " = kept",
  ]);
  const img = make("img", { alt: "the image to paint over", draggable: false });
  img.src = model.get("image_url");
  const canvas = make("canvas", { "aria-label": "paint here: the area to change" });
  canvas.width = W;
  canvas.height = H;
  const ring = make("div", { class: "kp-ring" });
  const stage = make("div", { class: "kp-stage" }, [img, canvas, ring]);
  // Fit ~720 px wide and ~640 px tall, never wider than the output area; the pixels stay W×H.
  const widest = Math.min(720, (640 * W) / H);
  stage.style.width = `min(100%, ${widest.toFixed(1)}px)`;
  stage.style.aspectRatio = `${W} / ${H}`;
  const status = make("div", { class: "kp-status", "aria-live": "polite" });
  const root = make("div", { class: "kie4o-painter" }, [
    make("style", { text: CSS }), bar, help, stage, status,
  ]);
  el.append(root);

  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let tool = "brush";
  let base = null; // a canvas holding the mask Python gave last (null: empty)
  let ops = []; // the actions since then, replayed by undo
  let stroke = null; // the stroke being drawn
  let sent = model.get("mask_png"); // the value the model holds from this view
  let loading = 0;

  // -- drawing --------------------------------------------------------------------------------
  function invertCanvas(target) {
    const tmp = make("canvas");
    tmp.width = W;
    tmp.height = H;
    const t = tmp.getContext("2d");
    t.fillStyle = PAINT;
    t.fillRect(0, 0, W, H);
    t.globalCompositeOperation = "destination-out"; // alpha becomes 255 - alpha
    t.drawImage(target.canvas, 0, 0);
    target.clearRect(0, 0, W, H);
    target.drawImage(tmp, 0, 0);
  }

  function segment(target, op, from, to) {
    target.save();
    target.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
    target.strokeStyle = target.fillStyle = PAINT;
    target.lineWidth = op.size;
    target.lineCap = target.lineJoin = "round";
    target.beginPath();
    if (from === to) {
      target.arc(to[0], to[1], op.size / 2, 0, 2 * Math.PI);
      target.fill();
    } else {
      target.moveTo(from[0], from[1]);
      target.lineTo(to[0], to[1]);
      target.stroke();
    }
    target.restore();
  }

  function apply(target, op) {
    if (op.kind === "stroke") {
      const p = op.points;
      if (p.length === 1) return segment(target, op, p[0], p[0]);
      target.save();
      target.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
      target.strokeStyle = PAINT;
      target.lineWidth = op.size;
      target.lineCap = target.lineJoin = "round";
      target.beginPath();
      target.moveTo(p[0][0], p[0][1]);
      for (let i = 1; i < p.length; i++) target.lineTo(p[i][0], p[i][1]);
      target.stroke();
      target.restore();
    } else if (op.kind === "fill") {
      target.fillStyle = PAINT;
      target.fillRect(0, 0, W, H);
    } else if (op.kind === "clear") {
      target.clearRect(0, 0, W, H);
    } else if (op.kind === "invert") {
      invertCanvas(target);
    }
  }

  function replay() {
    ctx.clearRect(0, 0, W, H);
    if (base) ctx.drawImage(base, 0, 0);
    for (const op of ops) apply(ctx, op);
  }

  function painted() {
    const data = ctx.getImageData(0, 0, W, H).data;
    let count = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] >= THRESHOLD) count++;
    return count / (W * H);
  }

  function refresh(fraction) {
    status.textContent = `${percent(fraction)} painted · mask ${W}×${H}`;
    undo.disabled = ops.length === 0;
  }

  /** The canvas to Python (after every stroke or action), "" when nothing is painted. */
  function commit() {
    if (ops.length > MAX_OPS) {
      // Fold the oldest half into the base: one copy now and then, not one per step.
      const folded = make("canvas");
      folded.width = W;
      folded.height = H;
      const f = folded.getContext("2d");
      if (base) f.drawImage(base, 0, 0);
      for (const op of ops.splice(0, MAX_OPS / 2)) apply(f, op);
      base = folded;
    }
    const fraction = painted();
    refresh(fraction);
    const value = fraction > 0 ? canvas.toDataURL("image/png").split(",", 2)[1] : "";
    if (value === sent) return;
    sent = value;
    model.set("mask_png", value);
    model.save_changes(); // other views of the widget follow
    // A custom message is never held back (ipywidgets throttles state syncs while the kernel
    // is busy): the kernel gets every stroke, in order with the cells that use the mask.
    model.send({ event: "mask", png: value });
  }

  function act(kind) {
    ops.push({ kind });
    replay();
    commit();
  }

  /** A mask from Python (or another view): the new base; the undo history starts again. */
  async function loadBase(value) {
    const mine = ++loading;
    let next = null;
    if (value) {
      const image = new Image();
      image.src = `data:image/png;base64,${value}`;
      try {
        await image.decode();
      } catch (err) {
        console.warn("kie4o mask painter: could not read the mask", err);
        return;
      }
      if (mine !== loading) return; // a newer mask came meanwhile
      next = make("canvas");
      next.width = W;
      next.height = H;
      const n = next.getContext("2d");
      n.drawImage(image, 0, 0, W, H);
      n.globalCompositeOperation = "source-in"; // the paint colour, whatever was sent
      n.fillStyle = PAINT;
      n.fillRect(0, 0, W, H);
    }
    base = next;
    ops = [];
    stroke = null;
    replay();
    refresh(painted());
  }

  // -- pointer: mouse, pen and touch ----------------------------------------------------------
  function toSource(event) {
    const r = canvas.getBoundingClientRect();
    return [((event.clientX - r.left) * W) / r.width, ((event.clientY - r.top) * H) / r.height];
  }

  function showRing(event) {
    const r = canvas.getBoundingClientRect();
    const d = Number(slider.value);
    ring.style.width = ring.style.height = `${d}px`;
    ring.style.left = `${event.clientX - r.left}px`;
    ring.style.top = `${event.clientY - r.top}px`;
    ring.style.display = event.pointerType === "touch" ? "none" : "block";
  }

  let finished = false;
  on(canvas, "pointerdown", (event) => {
    if (finished || (event.button !== 0 && event.pointerType === "mouse")) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    const r = canvas.getBoundingClientRect();
    const size = (Number(slider.value) * W) / r.width; // screen pixels → source pixels
    const point = toSource(event);
    stroke = { kind: "stroke", erase: tool === "eraser", size, points: [point], id: event.pointerId };
    segment(ctx, stroke, point, point);
    showRing(event);
  });
  on(canvas, "pointermove", (event) => {
    showRing(event);
    if (!stroke || event.pointerId !== stroke.id) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const point = toSource(e);
      const last = stroke.points[stroke.points.length - 1];
      if (point[0] === last[0] && point[1] === last[1]) continue;
      stroke.points.push(point);
      segment(ctx, stroke, last, point);
    }
  });
  const end = (event) => {
    if (!stroke || event.pointerId !== stroke.id) return;
    const { kind, erase, size, points } = stroke;
    stroke = null;
    ops.push({ kind, erase, size, points });
    replay(); // exactly what undo would redraw
    commit();
  };
  on(canvas, "pointerup", end);
  on(canvas, "pointercancel", end);
  on(canvas, "pointerleave", () => { ring.style.display = "none"; });
  on(canvas, "contextmenu", (event) => event.preventDefault());

  // -- the toolbar ----------------------------------------------------------------------------
  const setTool = (name) => {
    tool = name;
    brush.setAttribute("aria-pressed", String(name === "brush"));
    eraser.setAttribute("aria-pressed", String(name === "eraser"));
  };
  const showSize = () => { sizeText.textContent = `${slider.value} px`; };
  showSize();
  on(brush, "click", () => setTool("brush"));
  on(eraser, "click", () => setTool("eraser"));
  on(slider, "input", showSize);
  on(undo, "click", () => {
    if (!ops.length) return;
    ops.pop();
    replay();
    commit();
  });
  on(clear, "click", () => act("clear"));
  on(invert, "click", () => act("invert"));
  on(fill, "click", () => act("fill"));
  on(maskOnly, "click", () => {
    const now = maskOnly.getAttribute("aria-pressed") !== "true";
    maskOnly.setAttribute("aria-pressed", String(now));
    stage.classList.toggle("kp-mask-only", now);
  });
  on(done, "click", () => {
    finished = true; // no stroke after Done reaches the kernel
    done.disabled = true;
    done.textContent = "Done…";
    model.send({ event: "done", png: sent });
  });

  const onMask = () => {
    const value = model.get("mask_png");
    if (value === sent) return; // this view's own stroke
    sent = value;
    loadBase(value);
  };
  model.on("change:mask_png", onMask);

  if (sent) loadBase(sent);
  else refresh(0);

  return () => {
    model.off("change:mask_png", onMask);
    for (const off of listeners) off();
  };
}

export default { render };
