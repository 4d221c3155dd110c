// The mask editor: loaded (after app.js, whose functions it uses) only by a page whose form
// has a parameter with the role mask (service.html): every other page is lighter by it.

// --- Issue 14: Mask editor ---------------------------------------------------------------------
// A parameter with the role mask (_mask_field.html) is painted over the mode's input image:
// a canvas the size of that image, on top of a copy of its preview. Pointer events make one
// code path for mouse, pen and touch. The paint is kept in the canvas's alpha (the colour is
// only for show): each change is exported as a PNG, stored as a draft like a chosen image, and
// the field names it; the server turns it into the service's encoding (white on black, or
// transparent where to repaint). An empty canvas names nothing: no mask is sent.
const MASK_RGB = [255, 40, 120];
const MASK_COLOUR = `rgb(${MASK_RGB.join(", ")})`;
// Undo keeps up to 30 steps, fewer for a large picture (each step is a copy of the canvas).
const MASK_UNDO_LIMIT = 30;
const MASK_UNDO_BYTES = 128 * 1024 * 1024;
const MASK_HEIGHT = 420;

function maskParts(editor) {
  return {
    ref: editor.querySelector("[data-mask-ref]"),
    stage: editor.querySelector("[data-mask-stage]"),
    base: editor.querySelector("[data-mask-base]"),
    canvas: editor.querySelector("canvas"),
    cursor: editor.querySelector("[data-mask-cursor]"),
    empty: editor.querySelector("[data-mask-empty]"),
    size: editor.querySelector("[data-mask-size]"),
    sizeOut: editor.querySelector("[data-mask-size-out]"),
    undo: editor.querySelector("[data-mask-undo]"),
    status: editor.querySelector("[data-mask-status]"),
    source: document.getElementById(editor.dataset.imageFor),
  };
}

function maskSay(editor, text) {
  maskParts(editor).status.textContent = text;
}

function maskIsEmpty(canvas) {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return false;
  return true;
}

// The input image's preview changed (chosen, stored, removed): the stage shows it, and the
// canvas takes its size; paint already there is scaled to it, not lost.
function maskFollowImage(editor) {
  const { source, stage, base, canvas, empty } = maskParts(editor);
  const src = source && !source.hidden ? source.getAttribute("src") : null;
  stage.hidden = !src;
  empty.hidden = Boolean(src);
  if (!src) { base.removeAttribute("src"); return; }
  if (base.getAttribute("src") === src) return;
  base.addEventListener("load", () => {
    const w = base.naturalWidth, h = base.naturalHeight;
    if (!w || !h) return;
    // As wide as the field allows, at most MASK_HEIGHT pixels high: a small picture is
    // enlarged to paint on, a tall one fits the screen.
    maskParts(editor).stage.style.width = `min(100%, ${Math.round((MASK_HEIGHT * w) / h)}px)`;
    if (canvas.width === w && canvas.height === h && editor.dataset.sized) return;
    const old = editor.dataset.sized && !maskIsEmpty(canvas) ? maskCopy(canvas) : null;
    canvas.width = w;
    canvas.height = h;
    editor.dataset.sized = "1";
    if (old) {
      canvas.getContext("2d").drawImage(old, 0, 0, w, h);
      maskChanged(editor);
    } else if (editor._pendingMask) {
      maskDraw(editor, editor._pendingMask);
    }
  }, { once: true });
  base.src = src;
}

function maskCopy(canvas) {
  const copy = document.createElement("canvas");
  copy.width = canvas.width;
  copy.height = canvas.height;
  copy.getContext("2d").drawImage(canvas, 0, 0);
  return copy;
}

// A mask named by the form (a reload, reused parameters) is drawn into the canvas once the
// canvas has its image's size. Its alpha marks the paint; an opaque one marks by brightness.
function maskLoad(editor, ref) {
  const img = new Image();
  img.addEventListener("load", () => {
    editor._pendingMask = img;
    if (editor.dataset.sized) maskDraw(editor, img);
  }, { once: true });
  img.addEventListener("error", () => {
    maskParts(editor).ref.value = "";
    maskSay(editor, "The mask painted earlier is no longer kept on the server: paint it again.");
  }, { once: true });
  img.src = `${editor.dataset.store}/${encodeURIComponent(ref)}`;
}

function maskDraw(editor, img) {
  const { canvas } = maskParts(editor);
  editor._pendingMask = null;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = pixels.data;
  let opaque = true;
  for (let i = 3; i < d.length; i += 4) if (d[i] < 255) { opaque = false; break; }
  for (let i = 0; i < d.length; i += 4) {
    const a = opaque ? Math.round((d[i] + d[i + 1] + d[i + 2]) / 3) : d[i + 3];
    [d[i], d[i + 1], d[i + 2]] = MASK_RGB; d[i + 3] = a;
  }
  ctx.putImageData(pixels, 0, 0);
}

function maskPush(editor) {
  const { canvas, undo } = maskParts(editor);
  const stack = editor._undo || (editor._undo = []);
  stack.push(canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height));
  const step = canvas.width * canvas.height * 4;
  const limit = Math.max(3, Math.min(MASK_UNDO_LIMIT, Math.floor(MASK_UNDO_BYTES / step)));
  while (stack.length > limit) stack.shift();
  undo.disabled = false;
}

// After each change: stored as a draft (the last change wins), or nothing when empty.
function maskChanged(editor, said = "") {
  const { canvas, ref } = maskParts(editor);
  const run = (editor._version = (editor._version || 0) + 1);
  if (maskIsEmpty(canvas)) {
    editor._storing = null;
    ref.value = "";
    ref.dispatchEvent(new Event("change", { bubbles: true }));
    maskSay(editor, said || "Nothing painted: the whole image is redrawn.");
    return;
  }
  maskSay(editor, "Storing the mask…");
  editor._storing = new Promise((resolve) => canvas.toBlob(resolve, "image/png"))
    .then((blob) => {
      const body = new FormData();
      body.append("image", blob, "mask.png");
      return fetch(editor.dataset.store, { method: "POST", body });
    })
    .then((r) => r.json())
    .catch(() => ({ error: "webui did not answer: is the server still running?" }))
    .then((answer) => {
      if (run !== editor._version) return;  // a later change is on its way
      editor._storing = null;
      if (answer.error) { maskSay(editor, `The mask could not be kept: ${answer.error}`); return; }
      ref.value = answer.ref;
      ref.dispatchEvent(new Event("change", { bubbles: true }));  // remembered
      maskSay(editor, said || "Painted areas are redrawn; the rest is kept.");
    });
}

function maskPoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  // A pen presses lighter or harder (0.5, its middle, is the brush's size); mouse and touch
  // have no pressure that means anything.
  const weight = event.pointerType === "pen" && event.pressure > 0 ? 0.25 + event.pressure * 1.5 : 1;
  return { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale, scale: scale * weight };
}

function maskStroke(editor, from, to) {
  const { canvas, size } = maskParts(editor);
  const ctx = canvas.getContext("2d");
  ctx.globalCompositeOperation = editor.dataset.tool === "erase" ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = MASK_COLOUR;
  ctx.lineCap = ctx.lineJoin = "round";
  // The brush's size is in screen pixels: what it covers on the picture, whatever its zoom.
  ctx.lineWidth = Number(size.value) * to.scale;
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  ctx.globalCompositeOperation = "source-over";
}

function maskCursor(editor, event) {
  const { canvas, cursor, size } = maskParts(editor);
  if (!event || event.pointerType === "touch") { cursor.hidden = true; return; }
  const rect = canvas.getBoundingClientRect();
  const d = Number(size.value);
  cursor.hidden = false;
  cursor.style.width = cursor.style.height = `${d}px`;
  cursor.style.left = `${event.clientX - rect.left - d / 2}px`;
  cursor.style.top = `${event.clientY - rect.top - d / 2}px`;
}

function setupMaskEditor(editor) {
  const { canvas, source, size, sizeOut, undo, ref } = maskParts(editor);
  editor.dataset.tool = "paint";
  if (source) {
    new MutationObserver(() => maskFollowImage(editor))
      .observe(source, { attributes: true, attributeFilter: ["src", "hidden"] });
  }
  maskFollowImage(editor);
  if (ref.value) maskLoad(editor, ref.value);

  let last = null;
  let pointer = null;  // one stroke at a time: a second finger does not draw a line to the first
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !editor.dataset.sized || last) return;
    event.preventDefault();
    pointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    maskPush(editor);
    last = maskPoint(canvas, event);
    maskStroke(editor, last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    maskCursor(editor, event);
    if (!last || event.pointerId !== pointer) return;
    // Coalesced events: a fast pen or finger stroke keeps every point it passed.
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of points.length ? points : [event]) {
      const next = maskPoint(canvas, e);
      maskStroke(editor, last, next);
      last = next;
    }
  });
  const end = (event) => {
    if (!last || event.pointerId !== pointer) return;
    last = null;
    maskChanged(editor);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("pointerleave", () => maskCursor(editor, null));

  size.addEventListener("input", () => { sizeOut.textContent = size.value; });
  for (const button of editor.querySelectorAll("[data-mask-tool]")) {
    button.addEventListener("click", () => {
      editor.dataset.tool = button.dataset.maskTool;
      for (const b of editor.querySelectorAll("[data-mask-tool]")) b.setAttribute("aria-pressed", String(b === button));
    });
  }
  undo.addEventListener("click", () => {
    const snapshot = editor._undo?.pop();
    if (!snapshot) return;
    if (snapshot.width === canvas.width && snapshot.height === canvas.height) {
      canvas.getContext("2d").putImageData(snapshot, 0, 0);
    }
    undo.disabled = !editor._undo.length;
    maskChanged(editor, "Undone.");
  });
  // With the focus on the canvas or its tools: Ctrl+Z undoes, [ and ] change the brush.
  editor.addEventListener("keydown", (event) => {
    if (event.target.closest("input[type=file]")) return;
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo.click();
    } else if (event.key === "[" || event.key === "]") {
      event.preventDefault();
      const step = Number(size.step) * (event.key === "]" ? 1 : -1);
      size.value = String(Number(size.value) + step);
      size.dispatchEvent(new Event("input"));
    }
  });
  editor.querySelector("[data-mask-invert]").addEventListener("click", () => {
    if (!editor.dataset.sized) return;
    maskPush(editor);
    const ctx = canvas.getContext("2d");
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      [d[i], d[i + 1], d[i + 2]] = MASK_RGB; d[i + 3] = 255 - d[i + 3];
    }
    ctx.putImageData(pixels, 0, 0);
    maskChanged(editor);
  });
  editor.querySelector("[data-mask-clear]").addEventListener("click", () => {
    if (!editor.dataset.sized) return;
    maskPush(editor);
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    maskChanged(editor, "Cleared: the whole image is redrawn.");
  });
}

for (const editor of document.querySelectorAll("[data-mask-editor]")) setupMaskEditor(editor);

// "Reset to defaults" forgets the mask too (after resetForm, whose listener runs first).
document.addEventListener("click", (event) => {
  const form = event.target.closest?.("[data-reset-form]")?.form;
  for (const editor of form?.querySelectorAll("[data-mask-editor]") || []) {
    const { canvas, ref } = maskParts(editor);
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    editor._version = (editor._version || 0) + 1;  // a store still on its way is dropped
    editor._storing = null;
    editor._undo = [];
    maskParts(editor).undo.disabled = true;
    ref.value = "";
    ref.dispatchEvent(new Event("change", { bubbles: true }));  // forgotten by the form too
    maskSay(editor, "Nothing painted: the whole image is redrawn.");
  }
});

// Generate waits for a mask still being stored: the request then names the mask as painted.
document.addEventListener("htmx:confirm", (event) => {
  const form = event.target.closest?.("form.gen-form");
  const storing = [...(form?.querySelectorAll("[data-mask-editor]") || [])]
    .map((editor) => editor._storing).filter(Boolean);
  if (!storing.length) return;
  event.preventDefault();
  Promise.all(storing).then(() => event.detail.issueRequest(true));
});
// --- end of Mask editor ------------------------------------------------------------------------
