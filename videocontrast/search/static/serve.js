// videocontrast serve: the grid of previews, a click -> nearest neighbours, each playable; the Duplicates,
// Outliers and Queue tabs show what `videocontrast curate` finds with the same previews.
"use strict";
const $ = (id) => document.getElementById(id);

function span(item) {
  return Number.isFinite(item.clip_start) ? ` ${item.clip_start.toFixed(1)}-${item.clip_end.toFixed(1)} s` : "";
}

function tile(item, withPlay, badge) {
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
  if (badge) {
    const b = document.createElement("span");
    b.className = "badge";
    b.textContent = badge + " ";
    cap.prepend(b);
  }
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

// ----------------------------------------------------------------------------- Duplicates, Outliers, Queue
// One view at a time, named by the address's #fragment (a reload or a link keeps it); each asks its /api/ route
// for a page of rows and appends the next on "more".
const MODES = ["browse", "duplicates", "outliers", "queue"];
const PER_PAGE = { duplicates: 20, outliers: 20, queue: 100 };
let mode = "browse";
let shown = 0;

function param(id) { return $(id).value.trim(); }

function curateURL(offset) {
  const q = new URLSearchParams({ offset: String(offset) });
  if (mode === "duplicates") {
    q.set("limit", String(PER_PAGE.duplicates));
    if (param("threshold")) q.set("threshold", param("threshold"));
    return `/api/duplicates?${q}`;
  }
  if (mode === "outliers") {
    q.set("top", param("top") || String(PER_PAGE.outliers));
    return `/api/outliers?${q}`;
  }
  q.set("limit", String(PER_PAGE.queue));
  if ($("queue-source").dataset.known) q.set("source", $("queue-source").value);
  if ($("queue-source").value === "computed") {
    if (param("budget")) q.set("budget", param("budget"));
    q.set("strategy", $("strategy").value);
    q.set("seed", param("seed") || "0");
  }
  return `/api/queue?${q}`;
}

function renderDuplicates(r, body) {
  $("curate-title").textContent = `${r.count} near-duplicate groups (${r.rows_in_groups} of ${r.rows} rows)`;
  $("curate-note").textContent = `threshold ${r.threshold.toFixed(4)}, ${r.chosen_by}; ${r.neighbours} neighbours ` +
    `a row, ${r.search} search. Each group's first row is the one a keep list keeps; the number is the ` +
    `${r.similarity}.`;
  for (const g of r.groups) {
    const box = document.createElement("div");
    box.className = "group";
    box.dataset.group = g.group;
    const h = document.createElement("h3");
    h.textContent = `group ${g.group} (${g.size})`;
    const grid = document.createElement("div");
    grid.className = "grid";
    grid.append(...g.rows.map((item, i) => tile(item, true, i === 0 ? "keep" : "")));
    box.append(h, grid);
    body.appendChild(box);
  }
  return r.groups.length;
}

function orderedGrid(body) {
  let grid = body.querySelector(".grid");
  if (!grid) {
    grid = document.createElement("div");
    grid.className = "grid ranked";
    body.appendChild(grid);
  }
  return grid;
}

function renderOutliers(r, body) {
  $("curate-title").textContent = `outliers, most outlying first (${r.rows} rows)`;
  $("curate-note").textContent = `score: ${r.score} (${r.search} search); higher is farther from the rest.`;
  orderedGrid(body).append(...r.items.map((item) => tile(item, true, `#${item.rank} score ${item.score.toFixed(3)}`)));
  return r.items.length;
}

function renderQueue(r, body) {
  const source = $("queue-source");
  if (!source.dataset.known) {  // the first answer says whether serve was given a --queue file
    source.dataset.known = "1";
    source.value = r.source;
    source.querySelector('option[value="file"]').disabled = r.source !== "file";
  }
  if (r.source === "file") {
    $("curate-title").textContent = `labelling queue: ${r.count} rows of ${r.file}, in its order`;
    $("curate-note").textContent = r.missing ? `${r.missing} of the file's ${r.entries} entries are not in this ` +
      `collection and are left out (first: ${r.missing_first.join("; ")})` : "";
  } else {
    $("curate-title").textContent = `labelling queue: ${r.count} rows, ${r.strategy}, in the order to label them`;
    $("curate-note").textContent = `${r.how}; seed ${r.seed}. videocontrast curate select writes the same queue.`;
  }
  orderedGrid(body).append(...r.items.map((item) => tile(item, true, `${item.rank}.`)));
  return r.items.length;
}

async function loadCurate(append) {
  const body = $("curate-body");
  if (!append) { body.replaceChildren(); shown = 0; $("curate-more").hidden = true; }
  const asked = mode;
  $("status").textContent = shown ? "" : "computing (the first time: each row's nearest rows)...";
  try {
    const r = await getJSON(curateURL(shown));
    if (asked !== mode) return;  // another tab was chosen meanwhile
    const added = { duplicates: renderDuplicates, outliers: renderOutliers, queue: renderQueue }[mode](r, body);
    shown += added;
    $("curate-more").hidden = added === 0 || shown >= r.count;
    $("status").textContent = "";
    document.body.dataset.view = mode;
  } catch (e) { if (asked === mode) $("status").textContent = e.message; }
}

function showMode(next) {
  mode = MODES.includes(next) ? next : "browse";
  document.querySelectorAll("#tabs button").forEach((b) => {
    b.classList.toggle("active", b.dataset.mode === mode);
    b.setAttribute("aria-selected", String(b.dataset.mode === mode));
  });
  $("view-browse").hidden = mode !== "browse";
  $("view-curate").hidden = mode === "browse";
  document.querySelectorAll("#controls [data-for]").forEach((c) => { c.hidden = c.dataset.for !== mode; });
  $("results").hidden = true;
  if (mode === "browse") { $("status").textContent = ""; document.body.dataset.view = mode; return; }
  loadCurate(false);
}

document.querySelectorAll("#tabs button").forEach((b) => {
  b.addEventListener("click", () => {
    location.hash = b.dataset.mode === "browse" ? "" : b.dataset.mode;
    showMode(b.dataset.mode);
  });
});
window.addEventListener("hashchange", () => {
  const m = location.hash.slice(1) || "browse";
  if (m !== mode) showMode(m);
});
$("controls").addEventListener("submit", (event) => { event.preventDefault(); loadCurate(false); });
$("queue-source").addEventListener("change", () => loadCurate(false));
$("curate-more").addEventListener("click", () => loadCurate(true));
showMode(location.hash.slice(1) || "browse");
