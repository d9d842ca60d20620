// xmr's web page: search by text, image or sound; browse, play, and find more like a result.
// Plain JavaScript, no build step; talks only to this server's /api/v1.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE = 24;
const LABELS = { image: "Images", audio: "Audio", text: "Text" };
const FILTERS = ["ext", "path", "after", "before", "min_size", "max_size", "min_duration", "max_duration"];

const state = {
  q: "", to: "all", filters: {}, upload: null, like: null, likeTrack: null,
  hits: { image: [], audio: [], text: [] }, offset: 0, done: false, busy: false, order: [], current: -1,
};

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
  if (state.q) p.append("q", state.q);
  if (state.to !== "all") p.append("to", state.to);
  else if (state.like !== null || state.upload) p.append("to", "all");
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
  if (state.upload || state.like !== null) {
    const body = new FormData();
    if (state.upload) body.append(state.upload.kind, state.upload.file, state.upload.file.name || state.upload.kind);
    if (state.like !== null) body.append("like", state.like);
    if (state.like !== null && state.likeTrack) body.append("like_track", state.likeTrack);
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
  if (state.q) p.set("q", state.q);
  if (state.to !== "all") p.set("to", state.to);
  if (state.like !== null) p.set("like", state.like);
  for (const [name, value] of Object.entries(state.filters)) if (value) p.set(name, value);
  history.replaceState(null, "", p.toString() ? "?" + p : "/");
}

async function run(fresh = true) {
  if (state.busy || (!fresh && state.done)) return;
  if (!state.q && !state.upload && state.like === null) { render(); return; }
  state.busy = true;
  if (fresh) {
    state.offset = 0; state.done = false; state.hits = { image: [], audio: [], text: [] };
    $("#status").textContent = "Searching…";
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
    $("#status").textContent = err.message;
    $("#status").classList.add("error");
    setTimeout(() => $("#status").classList.remove("error"), 4000);
  } finally {
    state.busy = false;
  }
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

function name(hit) {
  return hit.path.split("/").pop();
}

function card(hit, index) {
  const open = () => showDetail(index);
  const score = el("span", { class: "score", title: "similarity" }, hit.score.toFixed(3));
  if (hit.modality === "image") {
    const img = el("img", { src: hit.thumbnail_url + "?size=256", alt: name(hit), loading: "lazy", decoding: "async" });
    return el("figure", { class: "card", tabindex: "0", "data-id": hit.id, onclick: open, onkeydown: enter(open) }, img,
      el("figcaption", {}, el("span", { class: "name", title: hit.path }, name(hit)), score));
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
    return el("div", { class: "row", "data-id": hit.id },
      el("button", { class: "name link", type: "button", title: hit.path, onclick: open }, name(hit)),
      el("span", { class: "meta" }, duration), player, score);
  }
  const where = hit.line ? `${hit.path}:${hit.line}` : hit.path;
  return el("div", { class: "row text", "data-id": hit.id, tabindex: "0", onclick: open, onkeydown: enter(open) },
    el("p", { class: "snippet" }, (hit.text || "").slice(0, 280)), el("span", { class: "meta", title: where }, where), score);
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
  if (hit.modality === "image") body.append(el("img", { class: "full", src: hit.media_url, alt: name(hit) }));
  else if (hit.modality === "video") body.append(el("video", { class: "full", controls: "", autoplay: "", src: mediaAt(hit) }));
  else if (hit.modality === "audio") body.append(el("audio", { class: "full", controls: "", autoplay: "", src: mediaAt(hit) }));
  else body.append(el("pre", { class: "full text" }, hit.text || ""));
  const rows = [["path", hit.path], ["score", hit.score.toFixed(4)], ["id", hit.id]];
  if (hit.start != null) rows.push(["moment", `${clock(hit.start)}–${clock(hit.end)}`]);
  if (hit.line) rows.push(["line", hit.line]);
  for (const [key, value] of Object.entries(hit.metadata || {})) {
    if (value !== null && value !== undefined && key !== "content_hash") rows.push([key, value]);
  }
  const table = el("table", { class: "meta-table" });
  for (const [key, value] of rows) table.append(el("tr", {}, el("th", {}, key), el("td", {}, String(value))));
  const like = el("button", { type: "button", class: "go", id: "more-like", onclick: () => moreLike(hit) }, "More like this");
  const open = hit.media_url ? el("a", { href: hit.media_url, target: "_blank", rel: "noopener", class: "chip ghost" }, "Open file") : "";
  body.append(el("div", { class: "side" }, table, el("div", { class: "actions" }, like, open)));
  $("#detail").hidden = false;
  $("#close").focus();
}

function hideDetail() {
  $("#detail").hidden = true;
  $("#detail-body").replaceChildren();
  state.current = -1;
}

function moreLike(hit) {
  hideDetail();
  state.like = hit.id;
  state.likeTrack = hit.track || null;  // a video: like what matched, its frames or its soundtrack
  state.upload = null;
  state.q = "";
  $("#q").value = "";
  preview(`More like ${name(hit)}`);
  run();
}

function preview(text, file) {
  const box = $("#query-preview");
  box.replaceChildren();
  if (!text) { box.hidden = true; return; }
  if (file && file.type.startsWith("image/")) box.append(el("img", { src: URL.createObjectURL(file), alt: "query image" }));
  box.append(el("span", {}, text), el("button", { type: "button", class: "chip ghost", onclick: clearQuery }, "Clear"));
  box.hidden = false;
}

function clearQuery() {
  state.upload = null; state.like = null;
  preview("");
  run();
}

function searchWithFile(file) {
  if (!file) return;
  const kind = file.type.startsWith("audio/") ? "audio" : "image";
  state.upload = { kind, file };
  state.like = null;
  state.q = $("#q").value.trim();
  preview(`${kind === "image" ? "Image" : "Sound"}: ${file.name || "pasted"}`, file);
  run();
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
  $("#q").value = state.q;
  for (const name of FILTERS) {
    const input = document.querySelector(`#filters input[name="${name}"]`);
    if (p.get(name)) { input.value = p.get(name); $("#filters").hidden = false; }
  }
  readFilters();
  for (const chip of document.querySelectorAll("#chips [data-to]")) chip.classList.toggle("on", chip.dataset.to === state.to);
  if (state.like !== null) preview(`More like item ${state.like}`);
}

function setup() {
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = $("#q").value.trim();
    if (state.q) state.like = null;
    if (!state.q && !state.upload && state.like === null) return;
    readFilters();
    run();
  });
  for (const chip of document.querySelectorAll("#chips [data-to]")) {
    chip.addEventListener("click", () => {
      state.to = chip.dataset.to;
      for (const other of document.querySelectorAll("#chips [data-to]")) other.classList.toggle("on", other === chip);
      run();
    });
  }
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
  if (state.q || state.like !== null) run();
  else $("#q").focus();
}

start();
