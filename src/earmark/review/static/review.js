// earmark review: the queue of detections, keyboard decisions, boundary dragging, free mode.
// Plain JavaScript, no build step. Every decision is POSTed at once and saved by the server
// (an fsynced journal) before the page shows it as done.
"use strict";

const STEP = 0.05; // seconds an arrow key moves a boundary
const $ = (id) => document.getElementById(id);
let S = null; // the server's state
let items = {}; // id -> item
let pos = 0; // index into S.order
let edit = null; // {onset, offset} being dragged or moved with the keys
let saveTimer = null;
// served by `earmark review` (/api/...) or by the service for one job (?job=ID, with its key)
const JOB = new URLSearchParams(location.search).get("job");
const BASE = JOB ? "/v1/jobs/" + encodeURIComponent(JOB) + "/review" : "";
const KEY = JOB ? localStorage.getItem("earmark.key") || "" : "";
const URLS = JOB ? {
  state: BASE + "?order=", decide: BASE, media: (kind, q) => BASE + "/snippet?kind=" + kind + "&" + q,
  export: (name) => BASE + "/" + name,
} : {
  state: "/api/state?order=", decide: "/api/decide",
  media: (kind, q) => "/api/" + (kind === "audio" ? "audio" : "spectrogram") + "?" + q,
  export: (name) => "/api/export/" + name,
};

function auth() { return KEY ? {Authorization: "Bearer " + KEY} : {}; }

// <img> and <audio> send no key: with one, fetch the media and show it from a blob URL
async function setMedia(el, url) {
  if (!KEY) { el.src = url; return; }
  if (el.dataset.blob) URL.revokeObjectURL(el.dataset.blob);
  const res = await fetch(url, {headers: auth()});
  el.dataset.blob = res.ok ? URL.createObjectURL(await res.blob()) : "";
  el.src = el.dataset.blob;
}

async function api(path, body) {
  const options = body === undefined ? {headers: auth()} : {
    method: "POST", headers: Object.assign({"Content-Type": "application/json"}, auth()),
    body: JSON.stringify(body),
  };
  const res = await fetch(path, options);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function warn(text, kind) {
  const div = document.createElement("div");
  div.className = kind || "warning";
  div.textContent = text;
  $("warnings").appendChild(div);
}

async function load() {
  S = await api(URLS.state + $("order").value);
  for (const a of document.querySelectorAll("#exports a")) a.href = URLS.export(a.dataset.name);
  items = {};
  for (const it of S.items) items[it.id] = it;
  $("run").textContent = S.run;
  $("warnings").textContent = "";
  for (const w of S.warnings) warn(w);
  $("classes").innerHTML = "";
  for (const c of S.classes) {
    const o = document.createElement("option");
    o.value = c;
    $("classes").appendChild(o);
  }
  const first = S.order.findIndex((id) => items[id].status === "pending");
  pos = first >= 0 ? first : 0;
  if (S.compare) showCompare();
  $("retrain").hidden = !S.retrain;
  if (S.retrain) pollRetrain();
  render();
}

function current() { return items[S.order[pos]]; }
function fileIndex(path) { return S.files.findIndex((f) => f.path === path); }
function fmt(t) { return t.toFixed(2) + " s"; }

function windowOf(it) {
  const base = it.original || it;
  const file = S.files[fileIndex(it.file)];
  const start = Math.max(0, Math.min(base.onset, it.onset) - S.roll);
  let end = Math.max(base.offset, it.offset) + S.roll;
  if (file && file.duration) end = Math.min(end, file.duration);
  return [start, end];
}

function render() {
  renderCounts();
  renderQueue();
  const it = current();
  if (!it) { $("title").textContent = "nothing to review"; return; }
  edit = null;
  $("card").dataset.id = it.id;
  $("card").dataset.status = it.status;
  $("title").textContent = it.label + " — " + it.status;
  const det = S.detections[it.id];
  $("meta").textContent = it.file.split("/").pop() + " · " + fmt(it.onset) + " – " + fmt(it.offset)
    + (det ? " · peak " + det.peak.toFixed(3) + " / threshold " + det.threshold.toFixed(3) : " · labelled by hand")
    + (it.user ? " · last decision by " + it.user + " at " + it.time : "");
  const p = S.priorities[it.id];
  $("why").textContent = p ? "why here: uncertainty " + p.uncertainty + ", disagreement " + p.disagreement
    + ", few reviewed " + p.rarity : "";
  const [ws, we] = windowOf(it);
  const q = "file=" + fileIndex(it.file) + "&start=" + ws.toFixed(3) + "&end=" + we.toFixed(3);
  setMedia($("spec"), URLS.media("spectrogram", q));
  setMedia($("player"), URLS.media("audio", q));
  drawBox(it.onset, it.offset);
  renderTimeline(it);
}

function drawBox(onset, offset) {
  const [ws, we] = windowOf(current());
  const box = $("box");
  box.style.left = (100 * (onset - ws) / (we - ws)) + "%";
  box.style.width = (100 * (offset - onset) / (we - ws)) + "%";
  box.dataset.onset = onset.toFixed(3);
  box.dataset.offset = offset.toFixed(3);
}

function renderCounts() {
  const c = S.counts;
  $("progress-text").textContent = c.reviewed + " / " + c.total + " reviewed";
  $("progress-bar").style.width = (c.total ? 100 * c.reviewed / c.total : 0) + "%";
  const body = $("counts").querySelector("tbody");
  body.innerHTML = "";
  for (const [label, row] of Object.entries(c.per_class).sort()) {
    const tr = document.createElement("tr");
    for (const v of [label, row.accepted, row.corrected, row.added, row.rejected, row.pending]) {
      const td = document.createElement("td");
      td.textContent = v === undefined ? 0 : v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function renderQueue() {
  const ol = $("queue");
  ol.innerHTML = "";
  S.order.slice(0, 300).forEach((id, n) => {
    const it = items[id];
    const li = document.createElement("li");
    li.dataset.id = id;
    li.dataset.status = it.status;
    li.className = it.status + (n === pos ? " current" : "");
    li.textContent = it.label + " " + fmt(it.onset) + " (" + it.file.split("/").pop() + ")";
    li.onclick = () => { pos = n; render(); };
    ol.appendChild(li);
  });
}

function renderTimeline(it) {
  const file = S.files[fileIndex(it.file)];
  $("free-file").textContent = file ? file.name : "";
  const duration = timelineDuration(it.file);
  const line = $("timeline");
  for (const el of line.querySelectorAll(".event")) el.remove();
  for (const other of Object.values(items)) {
    if (other.file !== it.file) continue;
    const div = document.createElement("div");
    div.className = "event " + other.status + (other.id === it.id ? " current" : "");
    div.style.left = (100 * other.onset / duration) + "%";
    div.style.width = Math.max(0.3, 100 * (other.offset - other.onset) / duration) + "%";
    div.title = other.label + " " + fmt(other.onset) + " – " + fmt(other.offset);
    div.onclick = () => { pos = S.order.indexOf(other.id); render(); };
    line.appendChild(div);
  }
}

function timelineDuration(path) {
  const file = S.files[fileIndex(path)];
  if (file && file.duration) return file.duration;
  return Math.max(1, ...Object.values(items).filter((i) => i.file === path).map((i) => i.offset));
}

async function decide(body, advance) {
  const it = current();
  try {
    const res = await api(URLS.decide, Object.assign({id: it.id, base: it.version}, body));
    items[res.item.id] = res.item;
    S.counts = res.counts;
    if (res.warning) warn(res.warning, "conflict");
    if (advance) nextPending();
    render();
  } catch (e) {
    warn("not saved: " + e.message, "error");
  }
}

function nextPending() {
  for (let k = 1; k <= S.order.length; k++) {
    const n = (pos + k) % S.order.length;
    if (items[S.order[n]].status === "pending") { pos = n; return; }
  }
  pos = Math.min(pos + 1, S.order.length - 1);
}

function moveBound(which, delta) {
  const it = current();
  edit = edit || {onset: it.onset, offset: it.offset};
  edit[which] = Math.max(0, edit[which] + delta);
  if (edit.offset - edit.onset < STEP) return;
  drawBox(edit.onset, edit.offset);
  clearTimeout(saveTimer);
  saveTimer = setTimeout(saveBounds, 400);
}

function saveBounds() {
  clearTimeout(saveTimer);
  if (!edit) return Promise.resolve();
  const body = {op: "bounds", onset: +edit.onset.toFixed(3), offset: +edit.offset.toFixed(3)};
  edit = null;
  return decide(body, false);
}

function startRelabel() {
  $("relabel-form").hidden = false;
  $("label-input").value = current().label;
  $("label-input").focus();
  $("label-input").select();
}

$("relabel-form").onsubmit = (ev) => {
  ev.preventDefault();
  const label = $("label-input").value.trim();
  $("relabel-form").hidden = true;
  if (label) decide({op: "relabel", label: label}, true);
};

$("accept").onclick = () => decide({op: "accept"}, true);
$("reject").onclick = () => decide({op: "reject"}, true);
$("relabel").onclick = startRelabel;
$("next").onclick = () => { pos = Math.min(pos + 1, S.order.length - 1); render(); };
$("prev").onclick = () => { pos = Math.max(pos - 1, 0); render(); };
$("order").onchange = load;

document.addEventListener("keydown", async (ev) => {
  const typing = ev.target.tagName === "INPUT";
  if (ev.key === "Escape") { $("relabel-form").hidden = true; $("free-form").hidden = true; return; }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || !S) return;
  const keys = {
    a: () => saveBounds().then(() => decide({op: "accept"}, true)),
    r: () => decide({op: "reject"}, true),
    l: startRelabel,
    u: () => decide({op: "reset"}, false),
    j: () => $("next").onclick(),
    k: () => $("prev").onclick(),
    " ": () => { const p = $("player"); if (p.paused) p.play(); else p.pause(); },
  };
  if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
    ev.preventDefault();
    moveBound(ev.shiftKey ? "offset" : "onset", ev.key === "ArrowLeft" ? -STEP : STEP);
  } else if (keys[ev.key]) {
    ev.preventDefault();
    keys[ev.key]();
  }
});

// dragging a boundary of the box over the spectrogram
for (const which of ["start", "end"]) {
  $("h-" + which).addEventListener("mousedown", (down) => {
    down.preventDefault();
    const it = current();
    const [ws, we] = windowOf(it);
    const rect = $("spec-wrap").getBoundingClientRect();
    edit = {onset: it.onset, offset: it.offset};
    const move = (ev) => {
      const t = ws + (we - ws) * Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
      if (which === "start") edit.onset = Math.min(t, edit.offset - STEP);
      else edit.offset = Math.max(t, edit.onset + STEP);
      drawBox(edit.onset, edit.offset);
    };
    const up = () => {
      document.removeEventListener("mousemove", move);
      document.removeEventListener("mouseup", up);
      saveBounds();
    };
    document.addEventListener("mousemove", move);
    document.addEventListener("mouseup", up);
  });
}

// free mode: select a stretch of the current file's timeline and label it
let selection = null;
$("timeline").addEventListener("mousedown", (down) => {
  if (down.target.classList.contains("event")) return;
  const rect = $("timeline").getBoundingClientRect();
  const duration = timelineDuration(current().file);
  const at = (ev) => duration * Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
  const t0 = at(down);
  const sel = $("selection");
  const move = (ev) => {
    const t1 = at(ev);
    selection = {onset: Math.min(t0, t1), offset: Math.max(t0, t1)};
    sel.hidden = false;
    sel.style.left = (100 * selection.onset / duration) + "%";
    sel.style.width = (100 * (selection.offset - selection.onset) / duration) + "%";
  };
  const up = () => {
    document.removeEventListener("mousemove", move);
    document.removeEventListener("mouseup", up);
    if (selection && selection.offset - selection.onset > STEP) {
      $("free-form").hidden = false;
      $("free-span").textContent = fmt(selection.onset) + " – " + fmt(selection.offset);
      $("free-label").focus();
    }
  };
  document.addEventListener("mousemove", move);
  document.addEventListener("mouseup", up);
});

$("free-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const label = $("free-label").value.trim();
  if (!label || !selection) return;
  try {
    const res = await api(URLS.decide, {
      op: "add", file: fileIndex(current().file), label: label,
      onset: +selection.onset.toFixed(3), offset: +selection.offset.toFixed(3),
    });
    items[res.item.id] = res.item;
    S.order.push(res.item.id);
    S.counts = res.counts;
    $("free-form").hidden = true;
    $("selection").hidden = true;
    $("free-label").value = "";
    selection = null;
    render();
  } catch (e) {
    warn("not saved: " + e.message, "error");
  }
};

async function pollRetrain() {
  const r = await api("/api/retrain");
  $("retrain-state").textContent = r.state + (r.error ? ": " + r.error : "") + " — model " + r.model;
  $("retrain").dataset.state = r.state;
  $("retrain-log").textContent = (r.log || []).join("\n");
  $("retrain-btn").disabled = r.state === "training" || r.state === "detecting";
  if (r.state === "done" && r.compare) showCompare(r.compare);
  if (r.state === "training" || r.state === "detecting") setTimeout(pollRetrain, 2000);
}

$("retrain-btn").onclick = async () => {
  try {
    await api("/api/retrain", {});
  } catch (e) {
    warn("cannot retrain: " + e.message, "error");
  }
  pollRetrain();
};

async function showCompare(given) {
  const c = given || await api("/api/compare");
  $("compare").hidden = false;
  const rows = [["new events", c.new.length], ["removed events", c.removed.length],
    ["relabelled events", c.relabelled.length], ["unchanged", c.unchanged]];
  $("compare-body").innerHTML = "";
  const table = document.createElement("table");
  for (const [k, v] of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<th></th><td></td>";
    tr.children[0].textContent = k;
    tr.children[1].textContent = v;
    table.appendChild(tr);
  }
  $("compare-body").appendChild(table);
  const p = document.createElement("p");
  p.textContent = c.advice;
  $("compare-body").appendChild(p);
}

// downloads with the key: fetch, then save from a blob URL
document.querySelector("#exports").addEventListener("click", async (ev) => {
  if (!KEY || ev.target.tagName !== "A") return;
  ev.preventDefault();
  const res = await fetch(ev.target.href, {headers: auth()});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await res.blob());
  a.download = ev.target.dataset.name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 5000);
});

load().catch((e) => warn("cannot load the review: " + e.message, "error"));
