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
  if (input) {
    input.value = button.dataset.setValue;
    input.dispatchEvent(new Event("input", { bubbles: true }));  // remembered with the form
  }
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
    // Hidden fields are not the user's, but for those marked data-remember (an input image's
    // draft name: a reload keeps the image).
    if (!el.name || el.type === "file" || el.tagName === "FIELDSET") continue;
    if (el.type === "hidden" && !("remember" in el.dataset)) continue;
    if (el.closest(".picker")) continue;  // a picker is remembered whole, below
    if (el.closest("[data-no-remember]")) continue;  // an X/Y/Z grid is made once
    if (el.type === "checkbox") values[el.name] = el.checked;
    else if (el.multiple) values[el.name] = [...el.selectedOptions].map((o) => o.value);
    else values[el.name] = el.value;
  }
  for (const picker of form.querySelectorAll(".picker")) values[picker.dataset.key] = pickerValue(picker);
  return values;
}

function setValue(el, value) {
  if (el.type === "checkbox") { el.checked = value === true || value === "true"; return; }
  if (el.tagName === "SELECT") {
    const wanted = Array.isArray(value) ? value.map(String) : [String(value)];
    // "—" (the service's setting) where the page drew the choices with that setting known
    // (and so no "—"): the choice marked current, as the list's own request would pick.
    const current = el.querySelector("option[data-current]");
    if (current && !el.multiple && wanted.length === 1 && wanted[0] === ""
        && ![...el.options].some((o) => o.value === "")) {
      for (const o of el.options) o.selected = o === current;
      return;
    }
    for (const v of wanted) {
      // A backend-fed select has few options until it loads: add the value so it is kept.
      // Drawn with its choices already, a value they lack is marked as the server marks it.
      const label = v + (el.dataset.staleNote || "");
      if (v !== "" && ![...el.options].some((o) => o.value === v)) el.add(new Option(label, v));
    }
    for (const o of el.options) o.selected = wanted.includes(o.value);
    return;
  }
  el.value = value;
}

function fillForm(form, values) {
  for (const [name, value] of Object.entries(values)) {
    const picker = [...form.querySelectorAll(".picker")].find((p) => p.dataset.key === name);
    if (picker) { setPicker(picker, value); continue; }
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
  formFilled(form);
  const save = () => localStorage.setItem(key, JSON.stringify(formValues(form)));
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  form.querySelector("[data-reset-form]")?.addEventListener("click", () => {
    localStorage.removeItem(key);
    resetForm(form);
  });
}

// Drop an image on the form to reuse the generation parameters written in it (A1111 infotext).
for (const form of document.querySelectorAll("form[data-read-image]")) {
  const note = document.getElementById("form-note");
  form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("drop-target"); });
  form.addEventListener("dragleave", () => form.classList.remove("drop-target"));
  form.addEventListener("drop", async (event) => {
    // A drop on an image field is that field's input image.
    if (event.target.closest?.("input[type=file], [data-drop-zone]")) return;
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
    formFilled(form);
    form.dispatchEvent(new Event("change"));
    if (note) note.textContent = `Filled ${Object.keys(answer.values).length} fields from ${file.name}.`;
  });
}

// --- Issue 12: the form -------------------------------------------------------------------
// (Function declarations only at the top level of this section: the remembered-form code
// above calls formFilled while the script is still being read.)

// After the form was filled by script (remembered values, an image's parameters, a reset):
// what follows the fields' values.
function formFilled(form) {
  syncSliders(form);
  for (const tools of form.querySelectorAll("[data-size-pair]")) markAspect(tools);
  for (const zone of form.querySelectorAll("[data-drop-zone]")) showChosenImage(zone);
}

// Enter in a field does not generate (typing 30 into Steps and pressing Enter is not a request
// for a picture): only Ctrl/Cmd+Enter and the Generate button do.
function submitsOnEnter(el) {
  return el.tagName === "INPUT" && !["submit", "button", "reset", "file", "image"].includes(el.type);
}
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.ctrlKey || event.metaKey) return;
  const el = event.target;
  if (submitsOnEnter(el) && el.form?.classList.contains("gen-form")) event.preventDefault();
});

// "Reset to defaults": the definition's defaults (data-defaults), not the values the page was
// opened with: form.reset() alone brings back reused parameters, a fixed seed included,
// because they are the inputs' own initial values.
function resetForm(form) {
  form.reset();
  let defaults = {};
  try { defaults = JSON.parse(form.dataset.defaults || "{}"); } catch { /* none */ }
  for (const [name, value] of Object.entries(defaults)) {
    const el = form.elements.namedItem(name);
    if (!el || el instanceof RadioNodeList || el.type === "file") continue;
    if (el.tagName === "SELECT" && (value === null || value === "")) {
      // No fixed default: the service's current value where it has one, else "—".
      const current = el.querySelector("option[data-current]") || el.querySelector("option[value='']");
      for (const o of el.options) o.selected = o === current;
      if (!current && el.options.length && !el.multiple) el.selectedIndex = 0;
    } else {
      setValue(el, value === null ? "" : value);
    }
  }
  for (const zone of form.querySelectorAll("[data-drop-zone]")) clearImage(zone, false);
  applyConditions(form);
  clearErrors(form);
  formFilled(form);
  // The address no longer says "filled from this image": a reload shows the defaults too.
  delete form.dataset.prefilled;
  const url = new URL(location.href);
  const given = ["from", "init", "use_seed"].filter((name) => url.searchParams.has(name));
  if (given.length) {
    for (const name of given) url.searchParams.delete(name);
    history.replaceState(history.state, "", url);
  }
  const note = document.getElementById("form-note");
  if (note) note.textContent = "The form is back to its defaults.";
  form.dispatchEvent(new Event("change"));
}

// Field errors (from Generate, _form_errors.html): each field with a message is marked
// invalid, the groups that hold one open, and the first is focused.
function markErrors(form) {
  let first = null;
  for (const slot of form.querySelectorAll(".field-error")) {
    const control = document.getElementById(slot.id.replace(/^err-/, "f-"));
    if (!control) continue;
    if (slot.textContent.trim()) {
      control.setAttribute("aria-invalid", "true");
      openAround(control);
      first = first || control;
    } else {
      control.removeAttribute("aria-invalid");
    }
  }
  return first;
}

function clearSlots(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
}

function clearErrors(form) {
  clearSlots(form);
  const summary = form.querySelector(".form-errors");
  if (summary) summary.replaceChildren();
  markErrors(form);
}

function openAround(el) {
  for (let d = el.closest("details"); d; d = d.parentElement?.closest("details")) d.open = true;
}

function focusField(control) {
  openAround(control);
  // A visually hidden control (an image field's file input) shows through its drop zone.
  (control.closest("[data-drop-zone]") || control).scrollIntoView({ block: "center" });
  control.focus({ preventScroll: true });
}

document.addEventListener("htmx:afterSwap", (event) => {
  // (Fired on each element an answer swapped in: acted on once, for the summary.)
  const form = document.querySelector("form.gen-form");
  if (!form) return;
  if (!event.target.classList?.contains("form-errors")) return;
  // The summary was replaced: by the errors of the form (the result area left as it was), or
  // emptied by a job that started, which comes without the fields' messages: they go with it.
  if (!event.target.textContent.trim()) clearSlots(form);
  const first = markErrors(form);
  if (first) focusField(first);
});

document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[data-field]");
  const control = link && document.getElementById(link.dataset.field);
  if (!control) return;
  event.preventDefault();
  focusField(control);
});

// Sliders: a range is also a slider beside its number; each follows the other.
function syncSliders(root) {
  for (const slider of root.querySelectorAll("input[data-slider-for]")) {
    const number = document.getElementById(slider.dataset.sliderFor);
    if (!number) continue;
    const empty = number.value === "" || Number.isNaN(Number(number.value));
    slider.value = empty ? slider.min : number.value;
    slider.classList.toggle("unset", empty);
  }
}

for (const type of ["input", "change"]) {
  document.addEventListener(type, (event) => {
    const el = event.target;
    if (el.matches?.("input[data-slider-for]")) {
      const number = document.getElementById(el.dataset.sliderFor);
      if (!number) return;
      number.value = el.value;
      el.classList.remove("unset");
      number.dispatchEvent(new Event(type, { bubbles: true }));  // remembered, conditions
    } else if (el.matches?.("input[type=number]")) {
      const field = el.closest(".with-slider");
      if (field) syncSliders(field);
      const tools = el.form?.querySelector("[data-size-pair]");
      if (tools) markAspect(tools);
    }
  });
}

// Width and height (_size_tools.html): swap, and aspect presets within each field's min, max
// and step.
function sizeFields(tools) {
  return [document.getElementById(tools.dataset.width), document.getElementById(tools.dataset.height)];
}

function sizeOf(input) {
  const value = Number(input.value);
  if (input.value !== "" && value > 0) return value;
  return Number(input.defaultValue) || Number(input.min) || 512;
}

function onGrid(input, value) {
  const min = input.min === "" ? 1 : Number(input.min);
  const max = input.max === "" ? Infinity : Number(input.max);
  const step = Number(input.step) > 0 ? Number(input.step) : 1;
  let v = min + Math.round((Math.min(max, Math.max(min, value)) - min) / step) * step;
  if (v > max) v -= step;
  return Number(v.toFixed(6));
}

function setSize(tools, width, height) {
  const [w, h] = sizeFields(tools);
  w.value = onGrid(w, width);
  h.value = onGrid(h, height);
  for (const el of [w, h]) {
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  markAspect(tools);
}

function markAspect(tools) {
  const [w, h] = sizeFields(tools);
  if (!w || !h) return;
  const ratio = sizeOf(w) / sizeOf(h);
  for (const button of tools.querySelectorAll("[data-aspect]")) {
    const [rw, rh] = button.dataset.aspect.split(":").map(Number);
    button.setAttribute("aria-pressed", String(Math.abs(ratio / (rw / rh) - 1) < 0.03));
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest?.("[data-size-swap], [data-aspect]");
  const tools = button?.closest("[data-size-pair]");
  if (!tools) return;
  const [w, h] = sizeFields(tools);
  if (!w || !h) return;
  const width = sizeOf(w);
  const height = sizeOf(h);
  if (button.hasAttribute("data-size-swap")) {
    setSize(tools, height, width);
    return;
  }
  // About the same number of pixels in the new shape, scaled to fit both ranges.
  const [rw, rh] = button.dataset.aspect.split(":").map(Number);
  let newW = Math.sqrt(width * height * rw / rh);
  let newH = newW * rh / rw;
  const shrink = Math.min(1, (Number(w.max) || Infinity) / newW, (Number(h.max) || Infinity) / newH);
  newW *= shrink;
  newH *= shrink;
  const grow = Math.max(1, (Number(w.min) || 0) / newW, (Number(h.min) || 0) / newH);
  setSize(tools, newW * grow, newH * grow);
});

// Image fields (_image_field.html): a drop zone. A file dropped, pasted or chosen is stored on
// the server as a draft at once; the field keeps its name (remembered with the form), so a
// reload keeps the image and Generate does not send the file again.
function zoneParts(zone) {
  const file = zone.querySelector("input[type=file]");
  return {
    file,
    ref: zone.querySelector("[data-image-ref]"),
    preview: zone.querySelector("img.upload-preview"),
    name: zone.querySelector("[data-image-name]"),
    clear: zone.querySelector("[data-image-clear]"),
    error: document.getElementById(file.id.replace(/^f-/, "err-")),
  };
}

function zoneError(zone, message) {
  const { error, file } = zoneParts(zone);
  if (error) error.textContent = message;
  if (message) file.setAttribute("aria-invalid", "true");
  else file.removeAttribute("aria-invalid");
}

function showImage(zone, src, label, ref = "") {
  const { preview, name, clear } = zoneParts(zone);
  if (preview.src.startsWith("blob:") && preview.src !== src) URL.revokeObjectURL(preview.src);
  preview.src = src;
  preview.dataset.ref = ref;  // the image it shows (none while one is being stored)
  preview.hidden = false;
  name.textContent = label;
  clear.hidden = false;
  zone.classList.add("has-image");
}

function clearImage(zone, tell = true) {
  const { file, ref, preview, name, clear } = zoneParts(zone);
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  file.value = "";
  ref.value = "";
  preview.removeAttribute("src");
  preview.dataset.ref = "";
  preview.hidden = true;
  name.textContent = "";
  clear.hidden = true;
  zone.classList.remove("has-image", "storing");
  if (tell) ref.dispatchEvent(new Event("change", { bubbles: true }));
}

// The image a form names after a reload (its draft, or a gallery image); one that is gone is
// said so.
function showChosenImage(zone) {
  const { ref, preview } = zoneParts(zone);
  if (!ref.value) {
    if (!zone.classList.contains("storing")) clearImage(zone, false);
    return;
  }
  if (preview.dataset.ref === ref.value && !preview.hidden) return;  // shown already
  const src = `${zone.dataset.store}/${encodeURIComponent(ref.value)}`;
  preview.addEventListener("error", () => {
    if (ref.value && preview.getAttribute("src") === src) {
      clearImage(zone);
      zoneError(zone, "The image chosen earlier is no longer kept on the server: choose it again.");
    }
  }, { once: true });
  showImage(zone, src, "Chosen earlier.", ref.value);
}

async function useImage(zone, file) {
  const { file: input, ref, preview, name } = zoneParts(zone);
  const label = file.name && file.name !== "image.png" ? file.name : "Pasted image";
  const before = { ref: ref.value, src: preview.getAttribute("src"), label: name.textContent };
  zoneError(zone, "");
  showImage(zone, URL.createObjectURL(file), `${label} (storing…)`);
  zone.classList.add("storing");
  const body = new FormData();
  body.append("image", file, file.name || "pasted.png");
  const answer = await fetch(zone.dataset.store, { method: "POST", body })
    .then((r) => (r.headers.get("content-type") || "").includes("json") ? r.json()
      : { error: r.status === 413 ? "The image is too large for webui." : `webui could not keep the image (HTTP ${r.status}).` })
    .catch(() => ({ error: "webui did not answer: is the server still running?" }));
  zone.classList.remove("storing");
  if (answer.error) {
    // The image chosen before stays; the field says what was wrong with this one.
    clearImage(zone, false);
    if (before.ref) {
      ref.value = before.ref;
      showImage(zone, before.src, before.label, before.ref);
    }
    zoneError(zone, answer.error);
    return;
  }
  input.value = "";  // sent by name from now on
  ref.value = answer.ref;
  showImage(zone, answer.url, `${label} · ${answer.width}×${answer.height}`, answer.ref);
  ref.dispatchEvent(new Event("change", { bubbles: true }));  // remembered
}

function imageFileOf(transfer) {
  return [...(transfer?.files || [])].find((f) => f.type.startsWith("image/")) || null;
}

function isTextField(el) {
  return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && ["text", "search", "number"].includes(el.type)));
}

for (const zone of document.querySelectorAll("[data-drop-zone]")) {
  const { file, clear } = zoneParts(zone);
  zone.addEventListener("click", (event) => {
    if (!event.target.closest("button, input")) file.click();
  });
  file.addEventListener("change", () => {
    if (file.files?.[0]) useImage(zone, file.files[0]);
  });
  clear.addEventListener("click", () => { clearImage(zone); file.focus(); });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.stopPropagation();  // not the form's "read the parameters" drop
    zone.classList.add("drag-over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("drag-over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("drag-over");
    let image = imageFileOf(event.dataTransfer);
    // An image dragged from one of webui's own pages comes as its address.
    const url = !image && event.dataTransfer?.getData("text/uri-list")?.split("\n")[0].trim();
    if (url && new URL(url, location.href).origin === location.origin) {
      const blob = await fetch(url).then((r) => (r.ok ? r.blob() : null)).catch(() => null);
      if (blob?.type.startsWith("image/")) image = new File([blob], url.split("/").pop(), { type: blob.type });
    }
    if (image) useImage(zone, image);
    else zoneError(zone, "Drop an image file here (PNG, JPEG, WEBP…).");
  });
}

// Ctrl+V with an image on the clipboard: it goes to the focused image field, else to the first
// one — unless text is being pasted into a text field.
document.addEventListener("paste", (event) => {
  const image = imageFileOf(event.clipboardData);
  if (!image) return;
  const active = document.activeElement;
  let zone = active?.closest?.("[data-drop-zone]");
  if (!zone) {
    if (isTextField(active) && event.clipboardData.types.includes("text/plain")) return;
    zone = [...document.querySelectorAll("[data-drop-zone]")].find((z) => !z.closest("fieldset[disabled]"));
  }
  const reader = zone ? null : document.querySelector("[data-read-zone]");
  if (!zone && !reader) return;
  event.preventDefault();
  if (zone) useImage(zone, image);
  else readInto(reader, image);
});

// --- Issue 12: while a job runs -------------------------------------------------------------

// A part of a job's panel swapped out of band (_job_update.html): the panel's own state
// follows its state part.
document.addEventListener("htmx:oobAfterSwap", (event) => {
  const part = event.target;
  if (!part.classList?.contains("job-state")) return;
  const panel = part.closest(".job");
  if (!panel || panel.dataset.status === part.dataset.status) return;
  panel.classList.replace(`job-${panel.dataset.status}`, `job-${part.dataset.status}`);
  panel.dataset.status = part.dataset.status;
});

// An answer drawn while the job ran (Interrupt's, a poll's) can arrive after the panel has
// ended (its final form pushed over the stream meanwhile): it would put "running" parts back
// into a finished panel. An answer to a panel that has ended is turned away, part by part (an
// ended panel keeps an empty place for each, so that none is "without a target").
// What such an answer says to the live region ("Interrupting.") goes with it: the parts of one
// answer are swapped one after another in one go, the sentence last.
const ENDED = new Set(["done", "failed", "interrupted", "cancelled"]);
let lateAnswer = false;
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const target = event.detail.target;
  if (lateAnswer && target?.id === "announcer") { event.detail.shouldSwap = false; return; }
  const panel = target?.closest?.(".job");
  if (panel && ENDED.has(panel.dataset.status)) {
    event.detail.shouldSwap = false;
    if (!lateAnswer) { lateAnswer = true; queueMicrotask(() => { lateAnswer = false; }); }
  }
});

// When a panel is replaced (the job ended) while the focus was in it, on a button the new
// panel no longer has, the focus goes to the new panel rather than back to the page's start.
let focusedPanel = null;
function panelLeaving(event) {
  // Cleared once settled only: an answer while the last still settles must not forget it.
  const target = event.detail.target;
  if (event.detail.shouldSwap !== false && target?.classList?.contains("job")
      && target.contains(document.activeElement)) focusedPanel = target.id;
}
document.addEventListener("htmx:beforeSwap", panelLeaving);
document.addEventListener("htmx:oobBeforeSwap", panelLeaving);  // an ended job's final panel
document.addEventListener("htmx:afterSettle", () => {
  if (!focusedPanel) return;
  const panel = document.getElementById(focusedPanel);
  focusedPanel = null;
  if (panel && (!document.activeElement || document.activeElement === document.body)) panel.focus();
});

// After Generate, the job panel is brought into view where it is not (on a phone it is below
// the form).
document.addEventListener("htmx:afterSwap", (event) => {
  // (Fired on each element an answer swapped in, out-of-band ones too: once, on the area.)
  if (event.target.id !== "result" || event.detail.requestConfig?.verb !== "post") return;
  const shown = event.target;
  const box = shown.getBoundingClientRect();
  if (box.top >= 0 && box.top < window.innerHeight * 0.6) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  shown.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
});


// ---- Pickers ---------------------------------------------------------------------------------
// A select searched on the server as you type (templates/_picker.html: thousands of LoRAs, the
// prompt styles), its chosen values shown as chips, each with its weight where it has one.
// htmx asks the server for the matches; this picks one (click, or ↑/↓ and Enter), builds its
// chip from the picker's <template>, removes chips, and keeps pickers in remembered forms.

function pickerParts(picker) {
  return {
    input: picker.querySelector(".picker-search input[type=search]"),
    list: picker.querySelector(".picker-results"),
    status: picker.querySelector(".picker-count"),
    chips: picker.querySelector(".chips"),
  };
}

function setPickerOpen(picker, open) {
  const { input, list } = pickerParts(picker);
  list.hidden = !open;
  input.setAttribute("aria-expanded", String(open));
  if (!open) {
    setActiveOption(picker, null);
    delete picker.dataset.browsing;
  }
}

function setActiveOption(picker, option) {
  const { input, list } = pickerParts(picker);
  for (const o of list.querySelectorAll("[aria-selected=true]")) o.setAttribute("aria-selected", "false");
  if (option) {
    option.setAttribute("aria-selected", "true");
    input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  } else {
    input.removeAttribute("aria-activedescendant");
  }
}

function pickerSay(picker, text) {
  const { status } = pickerParts(picker);
  status.classList.remove("inline-error");
  status.textContent = text;
}

// A chosen value that the service's syntax cannot carry is marked, and said at the field at
// once (Generate refuses it with the same words). Any other message there was about the
// chips as they were: a change of them clears it.
function showPickerProblems(picker) {
  const slot = picker.closest(".field")?.querySelector(".field-error");
  if (!slot) return;
  const bad = [...picker.querySelectorAll(".chip[data-problem]")];
  slot.textContent = bad.map((c) => `“${c.querySelector(".chip-label").textContent}” cannot be used: ${c.dataset.problem}`).join(" ");
}

function pickerChanged(picker) {
  showPickerProblems(picker);
  // Remembered forms and conditions listen for changes of the form.
  picker.closest("form")?.dispatchEvent(new Event("change", { bubbles: true }));
}

function addChip(picker, item) {
  const value = String(item.value);
  const label = item.label || value;
  const existing = [...picker.querySelectorAll(".chip")].find((c) => c.dataset.value === value);
  if (existing) return existing;
  if (picker.dataset.multiple !== "true") for (const c of picker.querySelectorAll(".chip")) c.remove();
  const chip = picker.querySelector("template.chip-template").content.firstElementChild.cloneNode(true);
  chip.dataset.value = value;
  chip.querySelector(".chip-label").textContent = label;
  chip.querySelector("input[type=hidden]").value = value;
  const weight = chip.querySelector(".chip-weight");
  if (weight) {
    if (item.weight !== undefined && item.weight !== null && item.weight !== "") weight.value = item.weight;
    weight.setAttribute("aria-label", `${weight.title} of ${label}`);
  }
  chip.querySelector(".chip-remove").setAttribute("aria-label", `Remove ${label}`);
  if (item.problem) {
    chip.dataset.problem = item.problem;
    chip.classList.add("refused");
  }
  pickerParts(picker).chips.append(chip);
  return chip;
}

function pickOption(picker, option) {
  const { input } = pickerParts(picker);
  const known = [...picker.querySelectorAll(".chip")].some((c) => c.dataset.value === option.dataset.value);
  const chip = addChip(picker, { value: option.dataset.value, label: option.dataset.label, problem: option.dataset.problem });
  input.value = "";
  setPickerOpen(picker, false);
  const weight = chip.querySelector(".chip-weight");
  pickerSay(picker, known ? `${option.dataset.label} is already chosen.`
    : `Added ${option.dataset.label}${weight ? `, ${weight.title.toLowerCase()} ${weight.value}` : ""}. ${picker.querySelectorAll(".chip").length} chosen.`);
  pickerChanged(picker);
  input.focus();
}

function removeChip(chip) {
  const picker = chip.closest(".picker");
  const chips = [...picker.querySelectorAll(".chip")];
  const at = chips.indexOf(chip);
  const label = chip.querySelector(".chip-label").textContent;
  chip.remove();
  // Focus stays in the picker: the next chip's button, else the previous one's, else the box.
  const next = chips[at + 1] || chips[at - 1];
  (next ? next.querySelector(".chip-remove") : pickerParts(picker).input).focus();
  pickerSay(picker, `Removed ${label}. ${picker.querySelectorAll(".chip").length} chosen.`);
  pickerChanged(picker);
}

document.addEventListener("mousedown", (event) => {
  // Keeps the focus in the search box while an option is clicked.
  if (event.target.closest?.(".picker-option")) event.preventDefault();
});

document.addEventListener("click", (event) => {
  const option = event.target.closest?.(".picker-option");
  if (option) { pickOption(option.closest(".picker"), option); return; }
  const remove = event.target.closest?.(".chip-remove");
  if (remove) removeChip(remove.closest(".chip"));
});

document.addEventListener("keydown", (event) => {
  const picker = event.target.closest?.(".picker");
  if (!picker || event.key !== "Enter" || event.ctrlKey || event.metaKey) return;
  // Enter in a picker chooses (or does nothing); only Ctrl+Enter and the button generate.
  if (event.target.matches(".chip-weight, .picker-search input")) event.preventDefault();
});

document.addEventListener("keydown", (event) => {
  const input = event.target;
  if (!input.matches?.(".picker-search input[type=search]")) return;
  const picker = input.closest(".picker");
  const { list } = pickerParts(picker);
  const options = [...list.querySelectorAll(".picker-option")];
  const active = list.querySelector("[aria-selected=true]");
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    if (list.hidden) { if (options.length) setPickerOpen(picker, true); else return; }
    const at = options.indexOf(active);
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = options[at < 0 ? (step > 0 ? 0 : options.length - 1) : (at + step + options.length) % options.length];
    setActiveOption(picker, next || null);
  } else if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) {
    const chosen = active || (options.length === 1 ? options[0] : null);
    if (chosen && !list.hidden) pickOption(picker, chosen);
  } else if (event.key === "Escape" && !list.hidden) {
    event.preventDefault();
    setPickerOpen(picker, false);
  }
});

document.addEventListener("focusout", (event) => {
  const picker = event.target.closest?.(".picker");
  if (picker && !picker.contains(event.relatedTarget)) setPickerOpen(picker, false);
});

document.addEventListener("htmx:afterSwap", (event) => {
  const list = event.detail.target;
  // (No target: htmx restoring its history, or a pushed swap.)
  if (!list?.matches?.(".picker-results")) return;
  const picker = list.closest(".picker");
  const { input } = pickerParts(picker);
  // Matches already chosen say so (choosing one again does nothing).
  const chosen = new Set([...picker.querySelectorAll(".chip")].map((c) => c.dataset.value));
  for (const option of list.querySelectorAll(".picker-option")) {
    // (htmx may report one swap more than once: marked once.)
    if (!chosen.has(option.dataset.value) || option.classList.contains("chosen")) continue;
    option.classList.add("chosen");
    const mark = document.createElement("span");
    mark.className = "opt-chosen";
    mark.textContent = "chosen";
    option.append(" ", mark);
  }
  // Shown while the box has the focus and something was typed, or it was clicked (browsing):
  // tabbing through the form fetches the first matches without opening them.
  const focused = document.activeElement === input;
  const open = focused && (input.value.trim() !== "" || picker.dataset.browsing === "true");
  setPickerOpen(picker, open);
  if (open) list.scrollIntoView({ block: "nearest" });
});

document.addEventListener("pointerdown", (event) => {
  const input = event.target.closest?.(".picker-search input[type=search]");
  if (!input) return;
  const picker = input.closest(".picker");
  picker.dataset.browsing = "true";
  // Already focused and loaded: open now (no new request comes).
  if (document.activeElement === input && pickerParts(picker).list.children.length) setPickerOpen(picker, true);
});

function pickerValue(picker) {
  return [...picker.querySelectorAll(".chip")].map((chip) => {
    const item = { value: chip.dataset.value, label: chip.querySelector(".chip-label").textContent };
    const weight = chip.querySelector(".chip-weight");
    if (weight) item.weight = weight.value;
    if (chip.dataset.problem) item.problem = chip.dataset.problem;
    return item;
  });
}

function setPicker(picker, value) {
  for (const chip of picker.querySelectorAll(".chip")) chip.remove();
  const items = value === null || value === undefined || value === "" ? [] : (Array.isArray(value) ? value : [value]);
  for (const item of items) {
    if (item && typeof item === "object") { if (item.value !== undefined && item.value !== "") addChip(picker, item); }
    else if (item !== "") addChip(picker, { value: item });
  }
  showPickerProblems(picker);
}

for (const form of document.querySelectorAll("form.gen-form")) {
  // Reset to defaults: a picker's default is nothing chosen.
  form.addEventListener("reset", () => {
    for (const picker of form.querySelectorAll(".picker")) setPicker(picker, []);
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
    // Back to the gallery's tile of the image shown last (stepped to with ← →) where it is
    // on the page, else to the link the viewer was opened from.
    const shown = dialog.querySelector(".viewer-body")?.dataset.image;
    const tile = shown && document.querySelector(`a.tile[data-image="${shown}"]`);
    dialog.replaceChildren();
    const back = tile || viewer.opener;
    viewer.opener = null;
    if (back?.isConnected) back.focus();
    galleryRelease();
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

// --- Issue 13: pushed updates (server-sent events) ---------------------------------------------
// A job's panel, the queue page and the compare page follow their jobs over one stream each
// (htmx's sse extension: sse-connect, sse-swap; views/events.py). The extension opens its
// streams through htmx.createEventSource, replaced here by a source that
// - rests while the tab is hidden and connects again when it shows: a browser opens at most
//   six connections to one server over HTTP/1.1, shared by all its tabs, and a stream holds
//   one (and a server thread) while it is open;
// - knows whether it is live: it heard something (an update, or the server's ping every 5 s)
//   within STALE_MS, or it was opened less than GRACE_MS ago and has not failed (the first
//   event comes at once: the poller does not race it).
// While the stream around it is live, a poller (data-poll) does not ask: polling is the
// fallback when there is no EventSource, the stream is refused or dropped, or a proxy holds
// its data back.
const STALE_MS = 12000;
const GRACE_MS = 3000;
const liveSources = new Set();

class LiveSource {
  constructor(url) {
    this.url = url;
    this.listeners = new Map();  // event name -> the extension's listeners
    this.onopen = null;
    this.onerror = null;
    this.source = null;
    this.heard = 0;
    this.opened = 0;  // when it was (re)opened; 0 once it failed
    this.closed = false;
    this.readyState = 0;  // CONNECTING until it opens (also while resting)
    this.relay = (event) => {
      this.heard = Date.now();
      for (const listener of [...(this.listeners.get(event.type) || [])]) listener.call(this, event);
    };
    liveSources.add(this);
    if (!document.hidden) this.connect();
  }

  get live() {
    const now = Date.now();
    return !this.closed && this.source !== null
      && (now - this.heard < STALE_MS || now - this.opened < GRACE_MS);
  }

  connect() {
    if (this.closed || this.source || !window.EventSource) return;
    const source = this.source = new EventSource(this.url);
    this.opened = Date.now();
    source.onopen = (event) => {
      this.readyState = 1;
      this.opened = Date.now();  // (also when the browser connected again by itself)
      this.onopen?.(event);
    };
    source.onerror = (event) => {
      this.heard = this.opened = 0;
      this.readyState = source.readyState;
      // Refused (not a stream): this source is done; the extension makes a new one later.
      if (source.readyState === 2) this.end();
      this.onerror?.(event);
    };
    source.addEventListener("ping", this.relay);
    for (const name of this.listeners.keys()) source.addEventListener(name, this.relay);
  }

  rest() {
    this.source?.close();
    this.source = null;
    this.heard = this.opened = 0;
    if (!this.closed) this.readyState = 0;
  }

  end() {
    this.closed = true;
    this.rest();
    this.readyState = 2;
    liveSources.delete(this);
  }

  close() { this.end(); }

  addEventListener(name, listener) {
    if (!this.listeners.has(name)) {
      this.listeners.set(name, new Set());
      this.source?.addEventListener(name, this.relay);
    }
    this.listeners.get(name).add(listener);
  }

  removeEventListener(name, listener) {
    this.listeners.get(name)?.delete(listener);
  }
}

if (window.htmx) htmx.createEventSource = (url) => new LiveSource(url);

document.addEventListener("visibilitychange", () => {
  for (const source of liveSources) {
    if (document.hidden) source.rest(); else source.connect();
  }
});

function streamIsLive(elt) {
  const url = elt.closest?.("[sse-connect]")?.getAttribute("sse-connect");
  return !!url && [...liveSources].some((source) => source.url === url && source.live);
}

document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (elt?.hasAttribute?.("data-poll") && streamIsLive(elt)) event.preventDefault();
});

// A job that ends on its stream replaces its panel (an "end-<id>" event): as for a poll's
// answer, a focus that was in the old panel goes to the new one (htmx:afterSettle, above).
document.addEventListener("htmx:sseBeforeMessage", (event) => {
  const name = event.target.getAttribute?.("sse-swap") || "";
  if (!name.startsWith("end-")) return;
  const panel = document.getElementById(`job-${name.slice(4)}`);
  if (panel?.contains(document.activeElement)) focusedPanel = panel.id;
});

// --- Issue 14: X/Y/Z grids ------------------------------------------------------------------

// "Reset to defaults" puts each axis of a grid back to "Nothing": its values control follows
// (after the reset has happened: the event comes before it).
document.addEventListener("reset", (event) => {
  const axes = event.target.querySelectorAll?.(".grid-axis select");
  if (!axes?.length) return;
  setTimeout(() => { for (const select of axes) htmx.trigger(select, "change"); });
}, true);

// The grid's cost follows the form only while its section is open (and is asked for on
// opening it: _grid_section.html): typing a prompt with the grid closed sends nothing.
document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (elt?.matches?.("details.grid-axes") && !elt.open) event.preventDefault();
});

// Cancel grid: its button leaves with the grid's state line; the focus goes to the grid's
// panel rather than back to the page's start.
let cancelledGrid = null;
document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (elt?.matches?.(".grid-panel button[id$='-cancel']")) cancelledGrid = elt.closest(".grid-panel").id;
});
document.addEventListener("htmx:afterSettle", () => {
  if (!cancelledGrid) return;
  const panel = document.getElementById(cancelledGrid);
  cancelledGrid = null;
  if (panel && (!document.activeElement || document.activeElement === document.body)) panel.focus();
});

