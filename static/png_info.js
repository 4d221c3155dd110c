// PNG Info's own behaviour (png_info.html), after app.js (it uses imageFileOf; app.js's paste
// handler uses readInto on this page).

// --- PNG Info ----------------------------------------------------------------------------------
// A zone whose image is read, not kept (png_info.html): the file dropped on it (or pasted:
// app.js's paste handler) goes into its file input, whose change sends the form (htmx).
function readInto(zone, file) {
  const input = zone.querySelector("input[type=file]");
  if (!input || !file) return;
  const files = new DataTransfer();
  files.items.add(file);
  input.files = files.files;
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

for (const zone of document.querySelectorAll("[data-read-zone]")) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("drag-over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drag-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("drag-over");
    readInto(zone, imageFileOf(event.dataTransfer));
  });
}

// A file chosen before htmx had set the form up (a quick pick while the page loads, or a form
// the browser restored) made a change nobody heard: it is read once htmx is ready.
const pngForm = document.getElementById("png-info-form");
if (pngForm) {
  let asked = false;
  pngForm.addEventListener("htmx:beforeRequest", () => { asked = true; });
  htmx.onLoad((element) => {
    if (element.contains(pngForm) && !asked && pngForm.querySelector("input[type=file]").files.length) {
      htmx.trigger(pngForm, "change");
    }
  });
}
