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

// Remembered forms: the last values of each service's form come back after a reload (kept in
// this browser's localStorage). A page opened with values of its own (reuse parameters) wins.
function formValues(form) {
  const values = {};
  for (const el of form.elements) {
    if (!el.name || el.type === "file" || el.type === "hidden" || el.disabled) continue;
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
  }
  const save = () => localStorage.setItem(key, JSON.stringify(formValues(form)));
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  form.querySelector("[data-reset-form]")?.addEventListener("click", () => {
    localStorage.removeItem(key);
    form.reset();
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
    form.dispatchEvent(new Event("change"));
    if (note) note.textContent = `Filled ${Object.keys(answer.values).length} fields from ${file.name}.`;
  });
}
