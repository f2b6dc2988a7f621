// videocontrast serve: the grid of previews, a click -> nearest neighbours, each playable.
"use strict";
const $ = (id) => document.getElementById(id);

function span(item) {
  return Number.isFinite(item.clip_start) ? ` ${item.clip_start.toFixed(1)}-${item.clip_end.toFixed(1)} s` : "";
}

function tile(item, withPlay) {
  const fig = document.createElement("figure");
  fig.className = "tile";
  fig.dataset.row = item.row;
  const img = document.createElement("img");
  img.src = item.preview;
  img.alt = item.name;
  img.loading = "lazy";
  fig.appendChild(img);
  const cap = document.createElement("figcaption");
  const sim = item.sim !== undefined ? `<span class="sim">${item.sim.toFixed(3)}</span> ` : "";
  cap.innerHTML = sim + (item.exists ? "" : '<span class="missing">[missing] </span>');
  cap.appendChild(document.createTextNode(`${item.label ? item.label + " · " : ""}${item.name}${span(item)}`));
  cap.title = item.path;
  fig.appendChild(cap);
  if (withPlay && item.media) {
    const button = document.createElement("button");
    button.className = "play";
    button.textContent = "play";
    button.addEventListener("click", (event) => { event.stopPropagation(); play(fig, img, item); button.remove(); });
    fig.appendChild(button);
  }
  fig.addEventListener("click", () => showNeighbours(item.row));
  return fig;
}

function play(fig, img, item) {
  const video = document.createElement("video");
  video.controls = true;
  video.muted = true;
  video.playsInline = true;
  const source = document.createElement("source");
  source.src = item.media;
  source.type = item.type;
  // A format the browser cannot play (AVI): keep the animated preview and say so.
  source.addEventListener("error", () => { video.replaceWith(img); fig.dataset.played = "preview"; });
  video.appendChild(source);
  video.addEventListener("playing", () => { fig.dataset.played = "video"; });
  if (Number.isFinite(item.clip_start)) {
    video.addEventListener("loadedmetadata", () => { video.currentTime = item.clip_start; }, { once: true });
  }
  img.replaceWith(video);
  video.play().catch(() => {});
}

// Every request of the page carries X-Videocontrast: the server refuses a query (or a POST) without it, and
// another site's page cannot send it (a custom header needs a CORS preflight, never granted).
async function getJSON(url, options = {}) {
  const headers = { "X-Videocontrast": "1", ...(options.headers || {}) };
  const response = await fetch(url, { ...options, headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showResults(title, query, neighbours) {
  $("results").hidden = false;
  $("results-title").textContent = title;
  $("query").replaceChildren(...(query ? [tile(query, true)] : []));
  $("neighbours").replaceChildren(...neighbours.map((n) => tile(n, true)));
  document.querySelectorAll("#grid .tile").forEach((t) => {
    t.classList.toggle("selected", query !== null && Number(t.dataset.row) === query.row);
  });
  $("status").textContent = "";
  window.scrollTo(0, 0);
}

async function showNeighbours(row) {
  try {
    const r = await getJSON(`/api/neighbours/${row}?k=8`);
    showResults(`nearest to ${r.query.name}`, r.query, r.neighbours);
  } catch (e) { $("status").textContent = e.message; }
}

$("by-path").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("status").textContent = "embedding the query...";
  try {
    const r = await getJSON(`/api/query?k=8&path=${encodeURIComponent($("path").value)}`);
    showResults(`nearest to ${$("path").value}`, null, r.neighbours);
  } catch (e) { $("status").textContent = e.message; }
});

$("by-upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("upload").files[0];
  if (!file) { $("status").textContent = "choose a video first"; return; }
  $("status").textContent = "embedding the upload...";
  try {
    // The name is URI-encoded: a header carries only Latin-1, and the server reads nothing but its extension.
    const headers = { "X-Filename": encodeURIComponent(file.name) };
    const r = await getJSON("/api/query?k=8", { method: "POST", body: file, headers });
    showResults(`nearest to the upload ${file.name}`, null, r.neighbours);
  } catch (e) { $("status").textContent = e.message; }
});

// The grid, a page of 200 at a time: a collection of millions of clips loads as fast as a small one.
let loaded = 0;
async function loadMore() {
  try {
    const r = await getJSON(`/api/items?offset=${loaded}&limit=200`);
    $("count").textContent = `${r.count} ${r.per_clip ? "clips" : "videos"}`;
    $("grid").append(...r.items.map((item) => tile(item, false)));
    loaded += r.items.length;
    $("more").hidden = loaded >= r.count;
    document.body.dataset.ready = "1";
  } catch (e) { $("status").textContent = e.message; }
}
$("more").addEventListener("click", loadMore);
loadMore();
