// xmr's web page: search by text, image or sound; browse, play, and find more like a result.
// Plain JavaScript, no build step; talks only to this server's /api/v1.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE = 24;
const LABELS = { image: "Images", audio: "Audio", text: "Text" };
const PART_LABELS = { text: "Text", image: "Image", audio: "Sound", like: "Like" };
const EXAMPLES = ["a dog on a beach", "birdsong", "rain on a window"];
const FILTERS = ["ext", "path", "after", "before", "min_size", "max_size", "min_duration", "max_duration"];

// The query is its parts (text, an image, a sound, "more like" an item), each with a weight.
// A new text, file or "more like this" starts a new query, unless "Combine" is on: then it
// joins the parts already there. The page shows the parts as chips (#query-preview).
const state = {
  q: "", to: "all", filters: {}, files: { image: null, audio: null }, like: null, likeTrack: null, likeName: "",
  weights: { text: 1, image: 1, audio: 1, like: 1 }, combine: false, counts: null,
  hits: { image: [], audio: [], text: [] }, offset: 0, done: false, busy: false, order: [], current: -1,
};

function hasQuery() {
  return Boolean(state.q || state.files.image || state.files.audio || state.like !== null);
}

function startNewQuery() {
  state.q = ""; state.files = { image: null, audio: null }; state.like = null; state.likeTrack = null;
  state.likeName = ""; state.weights = { text: 1, image: 1, audio: 1, like: 1 };
  $("#q").value = "";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function params(offset) {
  const p = new URLSearchParams();
  if (state.q) p.append("q", state.weights.text !== 1 ? `${state.q}^${state.weights.text}` : state.q);
  if (state.to !== "all") p.append("to", state.to);
  else if (state.like !== null || state.files.image || state.files.audio) p.append("to", "all");
  p.append("k", PAGE);
  p.append("offset", offset);
  for (const [name, value] of Object.entries(state.filters)) {
    if (!value) continue;
    if (name === "ext") value.split(/[\s,]+/).filter(Boolean).forEach((e) => p.append("ext", e));
    else p.append(name, value);
  }
  return p;
}

async function api(offset) {
  const p = params(offset);
  let response;
  if (state.files.image || state.files.audio || state.like !== null) {
    const body = new FormData();
    for (const kind of ["image", "audio"]) {
      const file = state.files[kind];
      if (!file) continue;
      body.append(kind, file, file.name || kind);
      if (state.weights[kind] !== 1) body.append(`${kind}_weight`, state.weights[kind]);
    }
    if (state.like !== null) body.append("like", state.like);
    if (state.like !== null && state.likeTrack) body.append("like_track", state.likeTrack);
    if (state.like !== null && state.weights.like !== 1) body.append("like_weight", state.weights.like);
    response = await fetch("/api/v1/search?" + p, { method: "POST", body });
  } else {
    response = await fetch("/api/v1/search?" + p);
  }
  if (response.status === 401) { showLogin(); throw new Error("log in first"); }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function syncUrl() {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.weights.text !== 1 ? `${state.q}^${state.weights.text}` : state.q);
  if (state.to !== "all") p.set("to", state.to);
  if (state.like !== null) p.set("like", state.like);
  for (const [name, value] of Object.entries(state.filters)) if (value) p.set(name, value);
  history.replaceState(null, "", p.toString() ? "?" + p : "/");
}

async function run(fresh = true) {
  if (state.busy && fresh) { state.again = true; showQuery(); return; }  // asked anew while busy: once it is done
  if (state.busy || (!fresh && state.done)) return;
  showQuery();
  if (!hasQuery()) {
    state.hits = { image: [], audio: [], text: [] };
    $("#status").textContent = "";
    $("#status").classList.remove("error");
    syncUrl();
    render();
    return;
  }
  state.busy = true;
  if (fresh) {
    state.offset = 0; state.done = false; state.hits = { image: [], audio: [], text: [] };
    $("#status").textContent = "Searching…";
    $("#status").classList.remove("error");
    syncUrl();
  }
  try {
    const data = await api(state.offset);
    let got = 0;
    for (const [modality, hits] of Object.entries(data.results)) {
      state.hits[modality] = state.hits[modality].concat(hits);
      got = Math.max(got, hits.length);
    }
    state.offset += PAGE;
    state.done = got < PAGE;
    const total = Object.values(state.hits).reduce((n, h) => n + h.length, 0);
    $("#status").textContent = total ? `${total} results · ${data.took_ms.toFixed(0)} ms` : "No results";
    render();
  } catch (err) {
    // The error in place of the results: what is under it would be the last query's answer.
    if (fresh) { state.hits = { image: [], audio: [], text: [] }; state.done = true; render(); }
    $("#status").textContent = err.message;
    $("#status").classList.add("error");
  } finally {
    state.busy = false;
  }
  if (state.again) { state.again = false; run(); return; }
  if (!state.done && state.observer) {
    // Observing anew reports the sentinel's current state: a page that does not yet fill the
    // screen asks for the next one at once, and scrolling asks when it comes near.
    state.observer.unobserve($("#more"));
    state.observer.observe($("#more"));
  }
}

function render() {
  const root = $("#results");
  root.replaceChildren();
  state.order = [];
  if (!hasQuery()) { root.append(hint()); return; }
  for (const modality of ["image", "audio", "text"]) {
    const hits = state.hits[modality];
    if (!hits.length) continue;
    const section = el("section", { class: `group ${modality}` }, el("h2", {}, LABELS[modality]));
    const box = el("div", { class: modality === "image" ? "grid" : "list" });
    for (const hit of hits) {
      const index = state.order.push(hit) - 1;
      box.append(card(hit, index));
    }
    section.append(box);
    root.append(section);
  }
}

// The empty page: what to type, and what the index holds.
function hint() {
  const examples = EXAMPLES.flatMap((text, i) => [i ? ", " : "",
    el("button", { type: "button", class: "example link", onclick: () => { $("#q").value = text; submit(); } }, text)]);
  const box = el("div", { class: "hint" },
    el("p", {}, "Type what you are looking for, e.g. ", ...examples,
      " — or drop, paste or pick (▣ ♪) an image or a sound to search with it."));
  if (state.counts) {
    const words = { image: ["image", "images"], audio: ["sound", "sounds"], text: ["text", "texts"], video: ["video", "videos"] };
    const held = Object.entries(state.counts).filter(([, n]) => n > 0)
      .map(([m, n]) => `${n} ${(words[m] || [m, m])[n === 1 ? 0 : 1]}`);
    if (held.length) box.append(el("p", { class: "held" }, `This index holds ${held.join(", ")}.`));
  }
  return box;
}

function name(hit) {
  return hit.path.split("/").pop();
}

function card(hit, index) {
  const open = () => showDetail(index);
  const score = el("span", { class: "score", title: "similarity" }, hit.score.toFixed(3));
  if (hit.modality === "image") {
    const img = el("img", { src: hit.thumbnail_url + "?size=256", alt: name(hit), loading: "lazy", decoding: "async" });
    const read = hit.snippet ? el("p", { class: "snippet said" }, ...marked(hit.snippet, state.q)) : "";
    return el("figure", { class: "card", tabindex: "0", "data-id": hit.id, onclick: open, onkeydown: enter(open) }, img,
      el("figcaption", {}, el("span", { class: "name", title: hit.path }, name(hit)), score), read);
  }
  if (hit.modality === "video" && hit.track === "image") {
    // A frame of a video: the video itself, paused at that moment (muted, so it never plays aloud).
    const still = el("video", { src: mediaAt(hit), preload: "metadata", muted: "", playsinline: "" });
    const when = hit.start != null ? el("span", { class: "when" }, clock(hit.start)) : "";
    return el("figure", { class: "card video", tabindex: "0", "data-id": hit.id, onclick: open, onkeydown: enter(open) },
      still, el("figcaption", {}, el("span", { class: "name", title: hit.path }, name(hit)), when, score));
  }
  if (hit.modality === "audio" || hit.modality === "video") {
    const player = el("audio", { controls: "", preload: "none", src: mediaAt(hit) });
    const duration = hit.start != null ? `${clock(hit.start)}–${clock(hit.end)}`
      : hit.metadata.duration ? `${hit.metadata.duration.toFixed(1)} s` : "";
    const said = hit.snippet ? el("p", { class: "snippet said" }, ...marked(hit.snippet, state.q)) : "";
    return el("div", { class: "row", "data-id": hit.id },
      el("button", { class: "name link", type: "button", title: hit.path, onclick: open }, name(hit)),
      el("span", { class: "meta" }, duration), player, score, said);
  }
  const where = hit.line ? `${hit.path}:${hit.line}` : hit.path;
  return el("div", { class: "row text", "data-id": hit.id, tabindex: "0", onclick: open, onkeydown: enter(open) },
    el("p", { class: "snippet" }, (hit.text || "").slice(0, 280)), el("span", { class: "meta", title: where }, where), score);
}

// What was said, with the words of the query marked (as full-text search reads them: letters
// and digits, any case).
function marked(text, query) {
  const wanted = new Set((query.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || []));
  return text.split(/([\p{L}\p{N}_]+)/u).map((part) =>
    wanted.has(part.toLowerCase()) ? el("mark", {}, part) : part);
}

// A moment of a long file plays from its start (a media fragment, #t=START,END).
function mediaAt(hit) {
  return hit.start != null ? `${hit.media_url}#t=${hit.start},${hit.end}` : hit.media_url;
}

function clock(seconds) {
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

function enter(fn) {
  return (event) => { if (event.key === "Enter") fn(); };
}

function showDetail(index) {
  const hit = state.order[index];
  if (!hit) return;
  state.current = index;
  const body = $("#detail-body");
  body.replaceChildren();
  let player = null;
  if (hit.modality === "image") {
    const img = el("img", { class: "full", src: hit.media_url, alt: name(hit) });
    // A small picture (a sprite, an icon) is shown enlarged with its pixels sharp, not smeared.
    img.addEventListener("load", () => img.classList.toggle("pixelated", img.naturalWidth < 256 && img.naturalHeight < 256));
    body.append(hit.box ? framed(img, hit.box) : img);
  } else if (hit.modality === "video") player = el("video", { class: "full", controls: "", autoplay: "", src: mediaAt(hit) });
  else if (hit.modality === "audio") player = el("audio", { class: "full", controls: "", autoplay: "", src: mediaAt(hit) });
  else body.append(el("pre", { class: "full text" }, hit.text || ""));
  if (player) {
    const media = el("div", { class: "media" }, player);
    if (hit.start != null) media.append(stopAtEnd(player, hit));
    body.append(media);
  }
  const rows = [["path", hit.path], ["score", hit.score.toFixed(4)], ["id", hit.id]];
  if (hit.start != null) rows.push(["moment", `${clock(hit.start)}–${clock(hit.end)}`]);
  if (hit.line) rows.push(["line", hit.line]);
  for (const [key, value] of Object.entries(hit.metadata || {})) {
    if (value !== null && value !== undefined && key !== "content_hash") rows.push([key, readable(key, value)]);
  }
  const table = el("table", { class: "meta-table" });
  for (const [key, value] of rows) table.append(el("tr", {}, el("th", {}, key), el("td", {}, String(value))));
  const like = el("button", { type: "button", class: "go", id: "more-like", onclick: () => moreLike(hit) }, "More like this");
  const open = hit.media_url ? el("a", { href: hit.media_url, target: "_blank", rel: "noopener", class: "chip ghost" }, "Open file") : "";
  body.append(el("div", { class: "side" }, table, el("div", { class: "actions" }, like, open)));
  $("#detail").hidden = false;
  $("#close").focus();
}

// A moment plays from its start and stops at its end (the next scene is another moment);
// playing on from there goes on into the file. The note under the player says where it ends.
// The line of text a hit was found by, outlined on the picture: an SVG over the image with the
// picture's own pixels as its viewBox, fitted as the image is (object-fit: contain).
function framed(img, box) {
  const ns = "http://www.w3.org/2000/svg";
  const layer = document.createElementNS(ns, "svg");
  layer.setAttribute("class", "box-layer");
  layer.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const outline = document.createElementNS(ns, "polygon");
  outline.setAttribute("points", box.map(([x, y]) => `${x},${y}`).join(" "));
  layer.append(outline);
  img.addEventListener("load", () => layer.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`));
  return el("div", { class: "frame" }, img, layer);
}

function stopAtEnd(player, hit) {
  const note = el("p", { class: "moment-end" }, `Moment ${clock(hit.start)}–${clock(hit.end)}: playback stops at its end (${clock(hit.end)}).`);
  let held = false;
  player.addEventListener("timeupdate", () => {
    if (!held && player.currentTime >= hit.end) { held = true; player.pause(); }
  });
  player.addEventListener("pause", () => {
    if (player.currentTime >= hit.end - 0.3) {
      held = true;
      note.textContent = `Paused at the moment's end (${clock(hit.end)}): press play to go on.`;
    }
  });
  return note;
}

// Metadata as people read it: sizes in KB/MB, durations in seconds, rates in Hz.
function readable(key, value) {
  if (key === "size" && typeof value === "number") return bytes(value);
  if (key === "duration" && typeof value === "number") return value >= 60 ? clock(value) : `${value.toFixed(1)} s`;
  if (key === "sample_rate" && typeof value === "number") return `${value} Hz`;
  return value;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// The Duplicates view: groups of copies side by side, sizes shown, the one to keep marked.
// xmr never deletes: the page only shows them.
async function showDuplicates() {
  state.view = "duplicates";
  $("#query-bar").hidden = true;
  $("#more").replaceChildren();
  $("#status").textContent = "Looking for copies…";
  let body;
  try {
    const response = await fetch("/api/v1/duplicates");
    body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  } catch (err) {
    $("#status").textContent = `Could not list duplicates: ${err.message}`;
    return;
  }
  const groups = body.groups || [];
  const copies = groups.reduce((n, g) => n + g.items.length - 1, 0);
  $("#status").textContent = groups.length
    ? `${groups.length} groups of copies, ${copies} beside the files to keep (most pixels, then longest, then oldest). Nothing is deleted.`
    : "No copies found.";
  $("#results").replaceChildren(...groups.map((g) => duplicateGroup(g)));
}

function duplicateGroup(group) {
  const cards = group.items.map((item) => {
    const kept = item.id === group.keep;
    const shape = item.width ? `${item.width}×${item.height}` : item.duration ? readable("duration", item.duration) : "";
    const picture = item.thumbnail_url
      ? el("img", { src: item.thumbnail_url, alt: item.path, loading: "lazy" })
      : el("div", { class: "kind" }, group.modality);
    return el("figure", { class: kept ? "card dup keep" : "card dup", "data-id": item.id, title: item.path },
      picture,
      el("figcaption", {}, el("span", { class: "name" }, item.path.split("/").pop()),
        el("span", { class: "when" }, [bytes(item.size), shape].filter(Boolean).join(" · "))),
      kept ? el("span", { class: "badge" }, "keep") : "");
  });
  return el("section", { class: "dup-group" },
    el("p", { class: "why" }, `${group.modality}: ${group.why}`),
    el("div", { class: "dup-row" }, ...cards));
}

function hideDetail() {
  $("#detail").hidden = true;
  $("#detail-body").replaceChildren();
  state.current = -1;
}

function moreLike(hit) {
  hideDetail();
  if (!state.combine) startNewQuery();
  state.like = hit.id;
  // A video: like what matched, its frames or its soundtrack (found by what is said: its soundtrack).
  state.likeTrack = hit.track === "speech" ? (hit.modality === "video" ? "audio" : null)
    : hit.track === "text" ? null : hit.track || null;
  state.likeName = name(hit);
  run();
}

// The query's parts as chips: what each is, its weight (editable), and a button to remove it.
function showQuery() {
  const box = $("#query-preview");
  box.replaceChildren();
  const parts = [];
  if (state.q) parts.push(["text", `“${state.q}”`]);
  for (const kind of ["image", "audio"]) {
    const file = state.files[kind];
    if (file) parts.push([kind, file.name || "pasted", kind === "image" ? file : null]);
  }
  if (state.like !== null) parts.push(["like", state.likeName ? `more like ${state.likeName}` : `more like item ${state.like}`]);
  for (const [kind, label, picture] of parts) {
    const weight = el("input", { type: "number", step: "0.1", min: "-1000", max: "1000", value: String(state.weights[kind]),
      "aria-label": `weight of the ${PART_LABELS[kind].toLowerCase()} part`, title: "weight (negative: steer away)" });
    weight.addEventListener("change", () => {
      const value = Number(weight.value);
      if (weight.value.trim() && Number.isFinite(value) && value !== 0) { state.weights[kind] = value; run(); }
      else weight.value = String(state.weights[kind]);
    });
    const remove = el("button", { type: "button", class: "remove icon", title: "Remove this part", "aria-label": `remove the ${PART_LABELS[kind].toLowerCase()} part`,
      onclick: () => removePart(kind) }, "✕");
    const chip = el("span", { class: "part", "data-kind": kind },
      picture ? el("img", { src: URL.createObjectURL(picture), alt: "query image" }) : "",
      el("b", {}, PART_LABELS[kind]), el("span", { class: "label" }, label), el("label", { class: "weight" }, "×", weight), remove);
    box.append(chip);
  }
  $("#query-bar").hidden = parts.length === 0 && !state.combine;
  $("#combine").setAttribute("aria-pressed", String(state.combine));
  $("#combine").classList.toggle("on", state.combine);
}

function removePart(kind) {
  if (kind === "text") { state.q = ""; $("#q").value = ""; }
  else if (kind === "like") { state.like = null; state.likeTrack = null; state.likeName = ""; }
  else state.files[kind] = null;
  state.weights[kind] = 1;
  run();
}

function clearQuery() {
  startNewQuery();
  run();
}

function searchWithFile(file) {
  if (!file) return;
  const kind = file.type.startsWith("audio/") ? "audio" : "image";
  if (!state.combine) startNewQuery();
  state.files[kind] = file;
  run();
}

// Enter in the search box: the text is a new query, or (Combine on) the query's text part.
function submit() {
  const text = $("#q").value.trim();
  if (text && !state.combine) startNewQuery();
  state.q = text;
  $("#q").value = text;
  readFilters();
  if (hasQuery()) run();
}

function readFilters() {
  state.filters = {};
  for (const input of document.querySelectorAll("#filters input")) state.filters[input.name] = input.value.trim();
}

function showLogin() {
  $("#login").hidden = false;
  $("#login input").focus();
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.to = p.get("to") || "all";
  state.like = p.has("like") ? Number(p.get("like")) : null;
  const weighted = state.q.match(/^(.*)\^(-?\d+(?:\.\d*)?|-?\.\d+)$/s);
  if (weighted) { state.q = weighted[1]; state.weights.text = Number(weighted[2]); }
  $("#q").value = state.q;
  for (const name of FILTERS) {
    const input = document.querySelector(`#filters input[name="${name}"]`);
    if (p.get(name)) { input.value = p.get(name); $("#filters").hidden = false; }
  }
  readFilters();
  for (const chip of document.querySelectorAll("#chips [data-to]")) chip.classList.toggle("on", chip.dataset.to === state.to);
}

function setup() {
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("#combine").addEventListener("click", () => {
    state.combine = !state.combine;
    showQuery();
  });
  $("#clear-query").addEventListener("click", clearQuery);
  for (const chip of document.querySelectorAll("#chips [data-to]")) {
    chip.addEventListener("click", () => {
      state.to = chip.dataset.to;
      for (const other of document.querySelectorAll("#chips [data-to]")) other.classList.toggle("on", other === chip);
      run();
    });
  }
  $("#show-duplicates").addEventListener("click", showDuplicates);
  $("#toggle-filters").addEventListener("click", () => {
    const box = $("#filters");
    box.hidden = !box.hidden;
    $("#toggle-filters").setAttribute("aria-expanded", String(!box.hidden));
  });
  for (const input of document.querySelectorAll("#filters input")) {
    input.addEventListener("change", () => { readFilters(); run(); });
  }
  $("#clear-filters").addEventListener("click", () => {
    for (const input of document.querySelectorAll("#filters input")) input.value = "";
    readFilters();
    run();
  });
  $("#pick-image").addEventListener("click", () => $("#image-file").click());
  $("#pick-audio").addEventListener("click", () => $("#audio-file").click());
  $("#image-file").addEventListener("change", (e) => searchWithFile(e.target.files[0]));
  $("#audio-file").addEventListener("change", (e) => searchWithFile(e.target.files[0]));
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); searchWithFile(file); }
  });
  let depth = 0;
  document.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; $("#drop").hidden = false; });
  document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("#drop").hidden = true; } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("#drop").hidden = true;
    searchWithFile(event.dataTransfer.files[0]);
  });
  $("#close").addEventListener("click", hideDetail);
  $("#prev").addEventListener("click", () => showDetail(state.current - 1));
  $("#next").addEventListener("click", () => showDetail(state.current + 1));
  $("#detail").addEventListener("click", (event) => { if (event.target.id === "detail") hideDetail(); });
  document.addEventListener("keydown", (event) => {
    if ($("#detail").hidden) {
      if (event.key === "/" && document.activeElement !== $("#q")) { event.preventDefault(); $("#q").focus(); }
      return;
    }
    if (event.key === "Escape") hideDetail();
    else if (event.key === "ArrowLeft") showDetail(state.current - 1);
    else if (event.key === "ArrowRight") showDetail(state.current + 1);
  });
  state.observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.offset > 0) run(false);
  }, { rootMargin: "300px" });
  state.observer.observe($("#more"));
}

async function start() {
  setup();
  const session = await fetch("/api/v1/session");
  if (session.status === 401) { showLogin(); return; }
  fromUrl();
  try {
    const info = await fetch("/api/v1/info");
    if (info.ok) {
      const facts = await info.json();
      state.counts = facts.counts || null;
      $("#logout").hidden = !facts.auth;  // a token server: the cookie can be dropped here
    }
  } catch (err) { /* the hint goes without the counts */ }
  run();
  if (!hasQuery()) $("#q").focus();
}

start();
