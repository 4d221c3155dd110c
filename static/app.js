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
