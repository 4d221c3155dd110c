// The gallery's own behaviour (gallery.html), after app.js (it uses the viewer's state).

// --- Gallery: a bounded page -------------------------------------------------------------------
// Infinite scroll would keep every page it loaded (at page 50: 3,000 tiles, 15,000 elements,
// the pixels of every thumbnail). A page of tiles far out of view is emptied instead, keeping
// its height, so nothing on the screen moves; when it comes back near, it asks its own address
// again (its hx-get, on "restore": the same images). A page holding the focus, or the tile
// the viewer was opened from, is kept until they leave it. benchmarks/gallery.py measures it.
// Without JavaScript the gallery is plain pages with Older / Newer links.
const gallery = { near: null, far: null, kept: new Set(), focusTo: null };

function galleryHolds(page) {
  return page.contains(document.activeElement) || (viewer.opener && page.contains(viewer.opener));
}

function galleryDrop(page) {
  if (!page.isConnected || page.classList.contains("dropped")) return;
  if (galleryHolds(page)) {
    gallery.kept.add(page);
    return;
  }
  // CSSOM: allowed by the CSP. The height is also kept in data-height: a copy of the page
  // (htmx's history snapshot, restored on Back) loses the style attribute to the CSP.
  page.dataset.height = `${page.getBoundingClientRect().height}px`;
  page.style.height = page.dataset.height;
  page.dataset.count = page.querySelectorAll(".tile").length;
  gallerySkips(page);
  page.classList.add("dropped");
}

// An emptied page holds two links (to its images as a plain page), at its top and its bottom:
// the keyboard (Tab from above, Shift+Tab from below) or a screen reader arriving there finds
// something, and the page is asked for; its tile at that end then takes the focus.
function gallerySkips(page) {
  page.replaceChildren(...["first", "last"].map((end) => {
    const link = document.createElement("a");
    link.className = `gallery-skip ${end}`;
    link.href = page.dataset.plain;
    link.textContent = `${page.dataset.count} images scrolled out of view`;
    return link;
  }));
}

document.addEventListener("focusin", (event) => {
  const skip = event.target.closest?.(".gallery-skip");
  if (!skip) return;
  const page = skip.closest(".gallery-page");
  gallery.focusTo = { page, end: skip.classList.contains("last") ? "last" : "first" };
  galleryRestore(page);
});
document.addEventListener("click", (event) => {
  if (event.target.closest?.(".gallery-skip")) event.preventDefault();  // it is being asked for
});

function galleryRestore(page) {
  if (page.classList.contains("dropped") && !page.classList.contains("htmx-request")) {
    htmx.trigger(page, "restore");
  }
}

// Pages come back within a screen of the window and go beyond three: a page does not come and
// go while scrolling to and fro around its edge.
function galleryWatch(root) {
  if (!("IntersectionObserver" in window)) return;
  gallery.near ??= new IntersectionObserver((entries) => {
    for (const entry of entries) if (entry.isIntersecting) galleryRestore(entry.target);
  }, { rootMargin: "100% 0px" });
  gallery.far ??= new IntersectionObserver((entries) => {
    for (const entry of entries) if (!entry.isIntersecting) galleryDrop(entry.target);
  }, { rootMargin: "300% 0px" });
  const pages = root.matches?.(".gallery-page") ? [root] : root.querySelectorAll?.(".gallery-page") ?? [];
  for (const page of pages) {
    if (page.classList.contains("dropped")) page.style.height = page.dataset.height;
    gallery.near.observe(page);
    gallery.far.observe(page);
  }
}

// Observed afresh, a page is judged where it is now (the observer reports its state at once).
function galleryRecheck(page) {
  gallery.far?.unobserve(page);
  gallery.far?.observe(page);
}

galleryWatch(document);
// htmx keeps a copy of the page for Back (it is about to be replaced): without the style
// attributes, which the CSP would refuse when the copy is put back (data-height has them).
document.addEventListener("htmx:beforeHistorySave", () => {
  for (const page of document.querySelectorAll(".gallery-page[style]")) {
    page.removeAttribute("style");
    if (!page.classList.contains("dropped")) continue;
    queueMicrotask(() => { page.style.height = page.dataset.height; });  // once it is copied
  }
});
document.addEventListener("htmx:historyRestore", () => galleryWatch(document));
document.addEventListener("htmx:load", (event) => galleryWatch(event.target));
document.addEventListener("htmx:beforeCleanupElement", (event) => {
  if (!event.target.classList?.contains("gallery-page")) return;
  gallery.near?.unobserve(event.target);
  gallery.far?.unobserve(event.target);
  gallery.kept.delete(event.target);
});
document.addEventListener("htmx:afterSwap", (event) => {
  const page = event.detail?.target;
  if (!page?.classList?.contains("gallery-page") || !page.classList.contains("dropped")) return;
  const tiles = page.querySelectorAll(".tile");
  if (!tiles.length) {  // an error page has no tiles: still a spacer, asked again later
    gallerySkips(page);
    return;
  }
  page.classList.remove("dropped");
  page.style.height = "";
  delete page.dataset.height;
  // The focus was on one of its links (now gone), and nowhere else since: on its tile there.
  if (gallery.focusTo?.page === page && (!document.activeElement || document.activeElement === document.body)) {
    tiles[gallery.focusTo.end === "last" ? tiles.length - 1 : 0].focus();
  }
  if (gallery.focusTo?.page === page) gallery.focusTo = null;
  galleryRecheck(page);  // scrolled away again while it was asked for: emptied again
});
// A page kept for the focus goes once the focus has moved on (and is still far away).
function galleryRelease() {
  for (const page of gallery.kept) {
    if (galleryHolds(page)) continue;
    gallery.kept.delete(page);
    galleryRecheck(page);
  }
}
document.addEventListener("focusin", galleryRelease);
