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
