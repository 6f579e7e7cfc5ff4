// earmark web page: upload, follow a job, show spectrogram + event timeline + events table.
// Plain JS, no dependencies. Talks only to this server's /v1 API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { auth: "keys", key: localStorage.getItem("earmark.key") || "", files: [],
  job: null, events: [], file: 0, duration: 0, audioUrl: null, spectro: null };
// colour-blind-safe palette (Okabe-Ito)
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

function headers() { return state.key ? { Authorization: "Bearer " + state.key } : {}; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}

function say(text, error = false) {
  const el = $("#message");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function fmtTime(s) {
  if (s == null || isNaN(s)) return "";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = (s % 60).toFixed(2);
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + sec.padStart(5, "0");
}

// ------------------------------------------------------------------ upload
function choose(list) {
  state.files = Array.from(list);
  $("#chosen").innerHTML = "";
  for (const f of state.files) {
    const li = document.createElement("li");
    const size = f.size >= 1e6 ? `${(f.size / 1e6).toFixed(1)} MB` : `${Math.ceil(f.size / 1e3)} kB`;
    li.textContent = `${f.name} (${size})`;
    $("#chosen").appendChild(li);
  }
  $("#submit").disabled = state.files.length === 0;
}

async function submit() {
  const form = new FormData();
  for (const f of state.files) form.append("files", f, f.name);
  for (const id of ["model", "threshold", "min_duration", "merge_gap", "labels", "exclude", "group_by", "classes"]) {
    const value = $("#" + id).value.trim();
    if (value !== "") form.append(id, value);
  }
  if ($("#classes").value && $("#audioset").checked) form.append("audioset", "true");
  if ($("#every_class").checked) form.append("every_class", "true");
  $("#submit").disabled = true;
  say("Uploading…");
  try {
    const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
    say(`Job ${job.id} accepted: ${job.files} file(s), ${fmtTime(job.audio_seconds)} of audio.`);
    follow(job.id, state.files.slice());
  } catch (e) {
    say("Upload refused: " + e.message, true);
  } finally {
    $("#submit").disabled = state.files.length === 0;
  }
}

// ------------------------------------------------------------------ progress
async function follow(jobId, localFiles) {
  $("#progress-section").hidden = false;
  $("#results").hidden = true;
  state.localFiles = localFiles || [];
  for (;;) {
    let job;
    try { job = await (await api(`/v1/jobs/${jobId}`)).json(); }
    catch (e) { say("Lost the job: " + e.message, true); return; }
    const p = job.progress;
    $("#progress").value = p.fraction;
    $("#progress-text").textContent =
      `${job.state}: ${p.files_done}/${p.files_total} files, ${fmtTime(p.seconds_done)} of ${fmtTime(p.seconds_total)} audio` +
      (job.error ? ` — ${job.error}` : "");
    $("#file-states").innerHTML = "";
    for (const f of job.files) {
      const li = document.createElement("li");
      li.className = f.state;
      li.textContent = `${f.name}: ${f.state}` + (f.state === "done" ? `, ${f.n_events} events` : "") +
        (f.error ? ` — ${f.error}` : "");
      $("#file-states").appendChild(li);
    }
    if (job.state === "done" || job.state === "failed") { await showResults(job); loadJobs(); return; }
    await new Promise((r) => setTimeout(r, 700));
  }
}

// ------------------------------------------------------------------ results
async function showResults(job) {
  state.job = job;
  const data = await (await api(`/v1/jobs/${job.id}/events`)).json();
  state.events = data.events;
  const select = $("#file-select");
  select.innerHTML = "";
  job.files.forEach((f, i) => {
    const o = document.createElement("option");
    o.value = i; o.textContent = `${f.name} (${f.n_events} events)`;
    select.appendChild(o);
  });
  $("#results").hidden = false;
  $("#review-link").href = "/review/?job=" + encodeURIComponent(job.id);
  await showFile(0);
}

async function showFile(index) {
  state.file = index;
  renderTable();
  const f = state.job.files[index];
  state.duration = f.duration || 0;
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  // local copy if we uploaded it in this page, else the stored audio from the server
  let blob = state.localFiles && state.localFiles[index];
  if (!blob) {
    try { blob = await (await api(`/v1/jobs/${state.job.id}/audio/${index}`)).blob(); } catch (e) { blob = null; }
  }
  state.audioUrl = blob ? URL.createObjectURL(blob) : null;
  $("#player").src = state.audioUrl || "";
  state.spectro = null;
  drawTimeline();
  if (blob && state.duration <= 20 * 60) {
    try { state.spectro = await spectrogram(blob); } catch (e) { state.spectro = null; }
  }
  drawSpectrogram();
}

function stripWidth() {
  return $("#scroller").clientWidth * Number($("#zoom").value);
}

function drawTimeline() {
  const width = stripWidth();
  $("#strip").style.width = width + "px";
  const name = state.job.files[state.file].name;
  const events = state.events.filter((e) => e.file === name);
  const labels = [...new Set(events.map((e) => e.label))];
  const timeline = $("#timeline");
  timeline.innerHTML = "";
  $("#lane-names").innerHTML = "";
  const scale = width / Math.max(state.duration, 1e-3);
  drawAxis(width);
  labels.forEach((label, lane) => {
    const row = document.createElement("div");
    row.className = "lane";
    row.dataset.label = label;
    const tag = document.createElement("div");  // in the fixed column left of the strip
    tag.className = "lane-name";
    tag.textContent = label;
    tag.title = label;
    $("#lane-names").appendChild(tag);
    for (const e of events.filter((x) => x.label === label)) {
      const bar = document.createElement("div");
      bar.className = "event-bar";
      bar.tabIndex = 0;
      bar.style.left = e.onset * scale + "px";
      bar.style.width = Math.max(2, (e.offset - e.onset) * scale) + "px";
      bar.style.background = PALETTE[lane % PALETTE.length];
      bar.style.opacity = 0.35 + 0.65 * (e.peak || 0);
      bar.dataset.label = e.label;
      const also = (e.alternatives || []).map((a) => a.label).join(", ");
      const text = `${e.label}: ${fmtTime(e.onset)} – ${fmtTime(e.offset)} (peak ${e.peak})` +
        (also ? `; also heard as ${also}` : "");
      bar.setAttribute("aria-label", text);
      bar.addEventListener("mousemove", (ev) => tip(text, ev));
      bar.addEventListener("mouseleave", () => { $("#tooltip").hidden = true; });
      bar.addEventListener("click", () => play(e.onset));
      bar.addEventListener("keydown", (ev) => { if (ev.key === "Enter") play(e.onset); });
      row.appendChild(bar);
    }
    timeline.appendChild(row);
  });
  if (!labels.length) timeline.textContent = "No events in this file at these settings.";
}

function tip(text, ev) {
  const t = $("#tooltip");
  t.textContent = text;
  t.style.left = ev.clientX + 12 + "px";
  t.style.top = ev.clientY + 12 + "px";
  t.hidden = false;
}

function play(seconds) {
  const player = $("#player");
  if (!player.src) return;
  player.currentTime = seconds;
  player.play().catch(() => {});
}

$("#player").addEventListener("timeupdate", () => {
  const scale = stripWidth() / Math.max(state.duration, 1e-3);
  $("#cursor").style.left = $("#player").currentTime * scale + "px";
});

// spectrogram: decode in the browser (resampled to 16 kHz), 512-point FFT, log magnitude
async function spectrogram(blob) {
  const bytes = await blob.arrayBuffer();
  const rate = 16000;
  const probe = new OfflineAudioContext(1, rate, rate);
  const buffer = await probe.decodeAudioData(bytes);
  const x = buffer.getChannelData(0);
  const n = 512, columns = Math.min(4000, Math.max(200, Math.floor(x.length / 160)));
  const hop = Math.max(1, Math.floor((x.length - n) / columns));
  const window = new Float32Array(n).map((_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n));
  const bins = n / 2, out = [];
  const re = new Float32Array(n), im = new Float32Array(n);
  for (let c = 0; c * hop + n <= x.length && c < columns; c++) {
    for (let i = 0; i < n; i++) { re[i] = x[c * hop + i] * window[i]; im[i] = 0; }
    fft(re, im);
    const col = new Float32Array(bins);
    for (let k = 0; k < bins; k++) col[k] = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-10);
    out.push(col);
  }
  return { columns: out, bins };
}

function fft(re, im) {  // in-place radix-2
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        [cr, ci] = [cr * wr - ci * wi, cr * wi + ci * wr];
      }
    }
  }
}

function drawSpectrogram() {
  const canvas = $("#spectrogram");
  const width = Math.round(stripWidth());
  canvas.width = Math.min(width, 16000);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const s = state.spectro;
  if (!s || !s.columns.length) {
    ctx.fillStyle = "#aaa";
    ctx.font = "13px system-ui";
    ctx.fillText(state.duration > 1200 ? "spectrogram shown for files up to 20 minutes" : "no spectrogram", 10, 20);
    return;
  }
  let max = -Infinity;
  for (const col of s.columns) for (const v of col) if (v > max) max = v;
  const floor = max - 80, image = ctx.createImageData(canvas.width, canvas.height);
  for (let px = 0; px < canvas.width; px++) {
    const col = s.columns[Math.min(s.columns.length - 1, Math.floor((px / canvas.width) * s.columns.length))];
    for (let py = 0; py < canvas.height; py++) {
      const k = Math.floor(((canvas.height - 1 - py) / canvas.height) * s.bins);
      const v = Math.max(0, Math.min(1, (col[k] - floor) / 80));
      const o = (py * canvas.width + px) * 4;  // dark blue -> teal -> yellow
      image.data[o] = 255 * Math.min(1, Math.max(0, 2 * v - 0.8));
      image.data[o + 1] = 255 * Math.min(1, v * 1.2);
      image.data[o + 2] = 255 * Math.max(0, 0.6 - v * 0.6) + 40;
      image.data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
}

// the selected file's events (the timeline shows the same file)
function renderTable() {
  const needle = $("#filter").value.trim().toLowerCase();
  const minPeak = Number($("#minpeak").value) || 0;
  const name = state.job.files[state.file].name;
  const mine = state.events.filter((e) => e.file === name);
  const rows = mine.filter((e) => (!needle || e.label.toLowerCase().includes(needle)) && (e.peak || 0) >= minPeak);
  const body = $("#events tbody");
  body.innerHTML = "";
  for (const e of rows) {
    const tr = document.createElement("tr");
    const also = (e.alternatives || []).map((a) => a.label).join(", ");
    const cells = [e.label, fmtTime(e.onset), fmtTime(e.offset), e.duration.toFixed(2), e.peak, e.mean, also];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      td.textContent = value == null ? "" : value;
      if (i >= 1 && i <= 5) td.className = "num";
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => play(e.onset));
    body.appendChild(tr);
  }
  $("#count").textContent = `${rows.length} of ${mine.length} events in ${name}`;
}

async function download(format) {
  const perFile = format === "audacity" || format === "npz";
  const path = format === "npz"
    ? `/v1/jobs/${state.job.id}/scores/${state.file}?format=npz`
    : `/v1/jobs/${state.job.id}/events?format=${format}` + (perFile ? `&file=${state.file}` : "");
  const suffix = { json: "events.json", csv: "events.csv", tsv: "events.tsv", audacity: "audacity.txt", npz: "scores.npz" }[format];
  try {
    const blob = await (await api(path)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const name = perFile ? state.job.files[state.file].name : state.job.id;
    a.download = `${name}.${suffix}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  } catch (e) { say("Download failed: " + e.message, true); }
}

function drawAxis(width) {
  const axis = $("#axis");
  axis.innerHTML = "";
  const d = Math.max(state.duration, 1e-3);
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  const step = steps.find((s) => (s * width) / d >= 80) || 3600;
  for (let t = 0; t <= d; t += step) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = (t * width) / d + "px";
    tick.textContent = fmtTime(t).replace(/\.00$/, "");
    axis.appendChild(tick);
  }
}

async function openReport() {
  try {
    const html = await (await api(`/v1/jobs/${state.job.id}/report`)).blob();
    window.open(URL.createObjectURL(html), "_blank");
  } catch (e) { say("Report: " + e.message, true); }
}

async function loadModels() {
  try {
    const models = await (await api("/v1/models")).json();
    const select = $("#model");
    select.innerHTML = "";
    for (const m of models.filter((x) => x.available)) {
      const o = document.createElement("option");
      o.value = m.default ? "" : m.name;
      o.textContent = `${m.name} (mAP ${m.published_map.toFixed(3)}${m.default ? ", default" : ""})`;
      select.appendChild(o);
    }
  } catch (e) { /* keep the default entry */ }
}

// the server's custom-class models (earmark train), if it has any
async function loadClasses() {
  try {
    const models = await (await api("/v1/classes")).json();
    const select = $("#classes");
    select.length = 1;  // keep "none", drop a previous listing
    for (const m of models) {
      const o = document.createElement("option");
      o.value = m.name;
      const f1 = m.expected_event_f1 == null ? "" : `, expected event F1 ${m.expected_event_f1.toFixed(2)}`;
      o.textContent = `${m.name}: ${m.classes.join(", ")} (${m.detector}${f1})`;
      select.appendChild(o);
    }
    $("#classes-box").hidden = models.length === 0;
  } catch (e) { /* no custom classes offered */ }
}

async function loadJobs() {
  try {
    const data = await (await api("/v1/jobs?limit=10")).json();
    const list = $("#jobs");
    list.innerHTML = "";
    for (const j of data.jobs) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "#" + j.id;
      a.textContent = `${j.created_at} — ${j.files} file(s), ${fmtTime(j.audio_seconds)}, ${j.state}`;
      a.addEventListener("click", (ev) => { ev.preventDefault(); follow(j.id, null); });
      li.appendChild(a);
      list.appendChild(li);
    }
    if (!data.jobs.length) list.textContent = "No jobs yet.";
  } catch (e) { $("#jobs").textContent = "Enter an API key to see your jobs."; }
}

// ------------------------------------------------------------------ wiring
async function init() {
  try {
    const config = await (await fetch("/v1/config")).json();
    state.auth = config.auth;
    for (const [name, value] of Object.entries(config.defaults || {})) {  // the CLI's defaults
      const input = document.getElementById(name);
      if (input) { input.value = value; input.dataset.default = value; }
    }
  } catch (e) { /* keep defaults */ }
  $("#keybox").hidden = state.auth === "none";
  $("#apikey").value = state.key;
  const needKey = () => state.auth !== "none" && !state.key;
  $("#savekey").addEventListener("click", () => {
    state.key = $("#apikey").value.trim();
    localStorage.setItem("earmark.key", state.key);
    $("#keyhint").hidden = !needKey();
    if (!needKey()) { loadJobs(); loadModels(); loadClasses(); }
  });
  $("#classes").addEventListener("change", () => { $("#audioset-box").hidden = !$("#classes").value; });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });
  $("#files").addEventListener("change", (e) => choose(e.target.files));
  $("#submit").addEventListener("click", submit);
  $("#file-select").addEventListener("change", (e) => showFile(Number(e.target.value)));
  $("#zoom").addEventListener("input", () => { drawTimeline(); drawSpectrogram(); });
  $("#filter").addEventListener("input", renderTable);
  $("#minpeak").addEventListener("input", renderTable);
  document.querySelectorAll("[data-format]").forEach((b) => b.addEventListener("click", () => download(b.dataset.format)));
  $("#report-btn").addEventListener("click", openReport);
  $("#scores-btn").addEventListener("click", () => download("npz"));
  window.addEventListener("resize", () => { if (state.job) { drawTimeline(); drawSpectrogram(); } });
  if (needKey()) {  // ask for the key first: no request is sent that would be refused
    $("#keyhint").hidden = false;
    $("#jobs").textContent = "Enter your API key above to see your jobs.";
    $("#apikey").focus();
    return;
  }
  loadJobs();
  loadModels();
  loadClasses();
  if (location.hash.length > 1) follow(location.hash.slice(1), null);
}

init();
