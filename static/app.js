// Small behaviours htmx does not cover. No build step; loaded with defer.
"use strict";

// Ctrl+Enter (Cmd+Enter) submits the generation form, wherever the focus is on the page.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  const form = event.target.closest?.("form.gen-form") || document.querySelector("form.gen-form");
  if (form) {
    event.preventDefault();
    form.requestSubmit();
  }
});

// Buttons such as "random" next to the seed set a value on another field.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-set-value]");
  if (!button) return;
  const input = document.getElementById(button.dataset.for);
  if (input) input.value = button.dataset.setValue;
});

// Polling elements (a job's panel, a status badge) rest while the tab is hidden; a panel asks
// again when the tab shows (its visibilitychange trigger). Done here, not in a trigger filter:
// filters are evaluated code, which the Content-Security-Policy does not allow.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (document.hidden && event.detail.elt?.hasAttribute?.("data-poll")) event.preventDefault();
});

// If webui itself cannot be reached, say so where the result would have appeared.
document.addEventListener("htmx:sendError", (event) => {
  const target = event.detail.target;
  if (!target) return;
  const note = document.createElement("div");
  note.className = "notice error";
  note.setAttribute("role", "alert");
  note.textContent = "webui did not answer: is the server still running? Nothing was sent to the backend.";
  target.replaceChildren(note);
});

// Show the chosen image next to its file input (nothing is uploaded until Generate).
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.matches?.("input[type=file][data-preview]")) return;
  const preview = document.getElementById(input.dataset.preview);
  if (!preview) return;
  if (preview.src) URL.revokeObjectURL(preview.src);
  const file = input.files && input.files[0];
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
});

// Fields that apply only while others have certain values (`when` in the definition): shown
// and enabled while their condition holds, else hidden and disabled (so not sent). The same
// for select options offered only with some values of other fields.
function currentValues(form, name) {
  const el = form.elements.namedItem(name);
  if (!el || el instanceof RadioNodeList || el.closest("fieldset[disabled]")) return [];
  if (el.type === "checkbox") return [el.checked ? "true" : "false"];
  if (el.tagName === "SELECT") return [...el.selectedOptions].map((o) => o.value);
  return [el.value];
}

function sameValue(value, wanted) {
  // "/regex/": a family of values ("/^gpt-image/").
  if (typeof wanted === "string" && wanted.length >= 2 && wanted.startsWith("/") && wanted.endsWith("/")) {
    try { return new RegExp(wanted.slice(1, -1)).test(String(value)); } catch { return false; }
  }
  const w = String(wanted).toLowerCase();
  const v = String(value).toLowerCase();
  if (v === w) return true;
  return v !== "" && w !== "" && !Number.isNaN(Number(v)) && Number(v) === Number(w);
}

function holds(form, when) {
  return Object.entries(when).every(([name, wanted]) => {
    const list = Array.isArray(wanted) ? wanted : [wanted];
    return currentValues(form, name).some((v) => list.some((w) => sameValue(v, w)));
  });
}

function applyConditions(form) {
  // A condition may name a field that has one itself: repeat until nothing changes.
  for (let round = 0; round < 5; round++) {
    let changed = false;
    for (const box of form.querySelectorAll("fieldset.when[data-when]")) {
      const on = holds(form, JSON.parse(box.dataset.when));
      if (box.disabled === on) { box.disabled = !on; box.hidden = !on; changed = true; }
    }
    for (const option of form.querySelectorAll("option[data-when]")) {
      const on = holds(form, JSON.parse(option.dataset.when));
      if (option.disabled === on) {
        option.disabled = !on; option.hidden = !on; changed = true;
        const select = option.closest("select");
        if (!on && option.selected && select) {
          // The chosen option is not offered with these values: take the first that is.
          option.selected = false;
          const first = [...select.options].find((o) => !o.disabled);
          if (first) first.selected = true;
        }
      }
    }
    if (!changed) break;
  }
}

for (const form of document.querySelectorAll("form.gen-form")) {
  applyConditions(form);
  form.addEventListener("change", () => applyConditions(form));
  // Selects filled by htmx change what the conditions see.
  form.addEventListener("htmx:afterSwap", () => applyConditions(form));
}

// Remembered forms: the last values of each service's form come back after a reload (kept in
// this browser's localStorage). A page opened with values of its own (reuse parameters) wins.
function formValues(form) {
  const values = {};
  for (const el of form.elements) {
    // Fields switched off by a condition are remembered too (they come back when it holds).
    if (!el.name || el.type === "file" || el.type === "hidden" || el.tagName === "FIELDSET") continue;
    if (el.type === "checkbox") values[el.name] = el.checked;
    else if (el.multiple) values[el.name] = [...el.selectedOptions].map((o) => o.value);
    else values[el.name] = el.value;
  }
  return values;
}

function setValue(el, value) {
  if (el.type === "checkbox") { el.checked = value === true || value === "true"; return; }
  if (el.tagName === "SELECT") {
    const wanted = Array.isArray(value) ? value.map(String) : [String(value)];
    for (const v of wanted) {
      // A backend-fed select has few options until it loads: add the value so it is kept.
      if (v !== "" && ![...el.options].some((o) => o.value === v)) el.add(new Option(v, v));
    }
    for (const o of el.options) o.selected = wanted.includes(o.value);
    return;
  }
  el.value = value;
}

function fillForm(form, values) {
  for (const [name, value] of Object.entries(values)) {
    const el = form.elements.namedItem(name);
    if (el && !(el instanceof RadioNodeList) && el.type !== "file") setValue(el, value);
  }
}

for (const form of document.querySelectorAll("form[data-remember]")) {
  const key = form.dataset.remember;
  if (!("prefilled" in form.dataset)) {
    try { fillForm(form, JSON.parse(localStorage.getItem(key) || "{}")); } catch { /* ignore */ }
    applyConditions(form);
  }
  const save = () => localStorage.setItem(key, JSON.stringify(formValues(form)));
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  form.querySelector("[data-reset-form]")?.addEventListener("click", () => {
    localStorage.removeItem(key);
    form.reset();
    applyConditions(form);
    for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  });
}

// Drop an image on the form to reuse the generation parameters written in it (A1111 infotext).
for (const form of document.querySelectorAll("form[data-read-image]")) {
  const note = document.getElementById("form-note");
  form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("drop-target"); });
  form.addEventListener("dragleave", () => form.classList.remove("drop-target"));
  form.addEventListener("drop", async (event) => {
    if (event.target.closest?.("input[type=file]")) return;  // a drop on a file input is an upload
    event.preventDefault();
    form.classList.remove("drop-target");
    const file = event.dataTransfer?.files?.[0];
    if (!file) return;
    const body = new FormData();
    body.append("image", file);
    const answer = await fetch(form.dataset.readImage, { method: "POST", body })
      .then((r) => r.json()).catch(() => ({ error: "webui did not answer." }));
    if (answer.error) { if (note) note.textContent = answer.error; return; }
    fillForm(form, answer.values);
    applyConditions(form);
    form.dispatchEvent(new Event("change"));
    if (note) note.textContent = `Filled ${Object.keys(answer.values).length} fields from ${file.name}.`;
  });
}

// ---------------------------------------------------------------------------------------------
// Results you can act on: "Use seed", the image viewer, ← → between neighbouring images.

function plainClick(event) {
  return event.button === 0 && !(event.ctrlKey || event.metaKey || event.shiftKey || event.altKey);
}

// "Use seed": on the form's own page the seed goes straight into its field (and is remembered
// with the form); elsewhere the link opens the form with ?use_seed=, whose #use-seed marker is
// applied here, after the remembered values.
function useSeed(fieldId, seed) {
  const input = document.getElementById(fieldId);
  if (!input) return false;
  input.closest("details")?.setAttribute("open", "");
  input.value = seed;
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.dispatchEvent(new Event("change", { bubbles: true }));
  const note = document.getElementById("form-note");
  if (note) note.textContent = `Seed ${seed} is in the form.`;
  return true;
}

document.addEventListener("click", (event) => {
  const control = event.target.closest?.("[data-use-seed]");
  if (!control || !plainClick(event)) return;
  if (!useSeed(control.dataset.for, control.dataset.useSeed)) return;  // the link goes there
  event.preventDefault();
  control.closest("dialog")?.close();  // from the viewer: back to the form
});

{
  const pending = document.getElementById("use-seed");
  if (pending) useSeed(pending.dataset.for, pending.dataset.useSeed);
}

// The viewer: a link with data-viewer (a result, a gallery tile, the image page's picture)
// opens its image in a dialog instead of following the link: fitted or at its own size (the
// button, a click on the picture or Z), ← → (or a swipe, or the buttons) to the neighbouring
// images of the gallery, Esc to close, the focus back where it was. The content is the
// server's (/gallery/<id>/view); without JavaScript the links lead to the image's page.
const viewer = { dialog: null, opener: null, zoomed: false, touch: null, loading: 0 };

function viewerDialog() {
  if (viewer.dialog) return viewer.dialog;
  const dialog = document.createElement("dialog");
  dialog.className = "viewer";
  dialog.setAttribute("aria-labelledby", "viewer-title");
  document.body.append(dialog);
  dialog.addEventListener("click", (event) => {
    const go = event.target.closest("a[data-viewer-go]");
    if (go && plainClick(event)) {
      event.preventDefault();
      viewerLoad(go.dataset.viewerGo, go.dataset.focusKey);
    } else if (event.target.closest("[data-viewer-zoom]")) {
      viewerZoom(!viewer.zoomed);
    } else if (event.target.closest("[data-viewer-close]")) {
      dialog.close();
    }
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      viewerStep(event.key === "ArrowLeft" ? "prev" : "next");
    } else if (event.key === "z" || event.key === "Z") {
      viewerZoom(!viewer.zoomed);
    }
  });
  // A swipe to the left shows the next image, to the right the previous one (not while zoomed
  // in: then a swipe pans the picture).
  dialog.addEventListener("touchstart", (event) => {
    viewer.touch = event.touches.length === 1 ? [event.touches[0].clientX, event.touches[0].clientY] : null;
  }, { passive: true });
  dialog.addEventListener("touchend", (event) => {
    const start = viewer.touch;
    viewer.touch = null;
    if (!start || viewer.zoomed) return;
    const dx = event.changedTouches[0].clientX - start[0];
    const dy = event.changedTouches[0].clientY - start[1];
    if (Math.abs(dx) > 50 && Math.abs(dx) > 2 * Math.abs(dy)) viewerStep(dx < 0 ? "next" : "prev");
  });
  dialog.addEventListener("close", () => {
    dialog.replaceChildren();
    if (viewer.opener?.isConnected) viewer.opener.focus();
    viewer.opener = null;
  });
  viewer.dialog = dialog;
  return dialog;
}

function viewerStep(rel) {
  const link = viewer.dialog.querySelector(`a[data-viewer-go][rel=${rel}]`);
  if (link) viewerLoad(link.dataset.viewerGo, link.dataset.focusKey);
}

function viewerZoom(on) {
  viewer.zoomed = on;
  viewer.dialog.classList.toggle("zoomed", on);
  for (const b of viewer.dialog.querySelectorAll("button[data-viewer-zoom]")) b.setAttribute("aria-pressed", String(on));
}

async function viewerLoad(url, focusKey) {
  const dialog = viewerDialog();
  const ticket = ++viewer.loading;  // the last image asked for wins, whatever answers first
  let html;
  try {
    const answer = await fetch(url);
    html = answer.ok ? await answer.text() : null;
  } catch {
    html = null;
  }
  if (ticket !== viewer.loading) return;
  if (html === null) {
    // Shown in the dialog, which stays usable (closable) as it was.
    const note = document.createElement("div");
    note.className = "notice error viewer-error";
    note.setAttribute("role", "alert");
    note.textContent = "This image could not be shown: it may have been deleted, or webui did not answer.";
    dialog.querySelector(".viewer-error")?.remove();
    if (!dialog.querySelector(".viewer-body")) {
      const close = document.createElement("button");
      close.type = "button";
      close.dataset.viewerClose = "";
      close.textContent = "Close";
      dialog.replaceChildren(note, close);
    } else {
      dialog.querySelector(".viewer-bar").after(note);
    }
  } else {
    dialog.innerHTML = html;
  }
  viewerZoom(viewer.zoomed);
  if (!dialog.open) dialog.showModal();
  const focus = (focusKey && dialog.querySelector(`[data-focus-key="${focusKey}"]`))
    || dialog.querySelector("[data-viewer-close]");
  focus?.focus();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[data-viewer]");
  if (!link || !plainClick(event) || link.closest("dialog")) return;
  event.preventDefault();
  viewer.opener = link;
  viewerLoad(link.dataset.viewer);
});

// The image page: ← → go to the neighbouring images, as its Previous and Next links do.
document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  if (event.target.closest?.("input, textarea, select, [contenteditable], dialog")) return;
  const link = document.querySelector(`a[data-page-nav][rel=${event.key === "ArrowLeft" ? "prev" : "next"}]`);
  if (link) link.click();
});

// --- PNG Info ----------------------------------------------------------------------------------
// A drop zone reads the file dropped on it, and a paste anywhere on its page reads the pasted
// image: each is put into the zone's file input, whose change sends the form (htmx).
function readInto(zone, file) {
  const input = zone.querySelector("input[type=file]");
  if (!input || !file) return;
  const files = new DataTransfer();
  files.items.add(file);
  input.files = files.files;
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

for (const zone of document.querySelectorAll("[data-drop-zone]")) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("drop-target"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drop-target"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("drop-target");
    readInto(zone, event.dataTransfer?.files?.[0]);
  });
}

document.addEventListener("paste", (event) => {
  const zone = document.querySelector("[data-drop-zone]");
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (!zone || !file) return;
  event.preventDefault();
  readInto(zone, file);
});
