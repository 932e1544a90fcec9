// artconv studio: the page builds its form from the engines' option records (/api/info),
// uploads images (the body is the file; the server names it), starts jobs and follows them
// and the queue by one stream of server-sent events (/api/events). No build step, no
// libraries.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FINISHED = ["done", "stopped", "failed", "cancelled"];
// jobs and sweeps: the latest state of each seen, by id (the stream sends what changed)
const state = { info: null, engine: "style", mode: "single", content: null, styles: [],
  watching: null, sweep: null, sheetVersion: null, jobs: {}, sweeps: {}, photos: [] };
const TRAIN = "train";  // the job kind that trains a fast style network (web/training.py)

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status}`);
  return body;
}

function say(text) { $("#message").textContent = text || ""; }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// -- form from the option record ---------------------------------------------------------
function shown(value) {
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join(",") : String(value);
}

function fieldInput(f) {
  let input;
  if (f.kind === "choice") {
    input = el("select");
    if (f.optional) input.append(el("option", { value: "" }, "(auto)"));
    for (const c of f.choices) input.append(el("option", { value: String(c) }, String(c)));
    input.value = shown(f.default);
  } else if (f.kind === "bool") {
    input = el("input", { type: "checkbox" });
    input.checked = Boolean(f.default);
  } else {
    input = el("input", { type: "text", inputmode: f.kind === "text" ? "text" : "decimal",
      placeholder: f.default === null ? "auto" : "" });
    input.value = shown(f.default);
  }
  input.name = f.name;
  input.dataset.initial = f.kind === "bool" ? String(Boolean(f.default)) : shown(f.default);
  const range = [f.min !== null ? `min ${f.min}` : "", f.max !== null ? `max ${f.max}` : ""]
    .filter(Boolean).join(", ");
  return el("label", { class: "field", title: f.help + (range ? ` (${range})` : "") },
    f.label, input);
}

function engineInfo() {
  return state.engine === TRAIN ? { ...state.info.train, takes_styles: true }
    : state.info.engines[state.engine];
}

function renderFields() {
  const main = $("#main-fields"), more = $("#more-fields");
  main.replaceChildren(); more.replaceChildren();
  for (const f of engineInfo().fields) (f.main ? main : more).append(fieldInput(f));
  const preset = $("#preset");
  preset.replaceChildren(el("option", { value: "" }, "(none)"));
  for (const p of state.info.presets.filter((p) => p.engine === state.engine && !p.style)) {
    preset.append(el("option", { value: p.name, title: p.description }, p.name));
  }
  const sweep = $("#sweep-option");
  sweep.replaceChildren();
  const names = engineInfo().fields.map((f) => f.name);
  const first = state.info.sweep.fields.filter((n) => names.includes(n));
  for (const n of [...first, ...names.filter((n) => !first.includes(n))]) {
    sweep.append(el("option", { value: n }, n.replaceAll("_", " ")));
  }
  $("#styles-block").hidden = !engineInfo().takes_styles;
}

function optionValues() {
  const out = {};
  for (const input of $("#options").querySelectorAll("[name]")) {
    const value = input.type === "checkbox" ? String(input.checked) : input.value.trim();
    if (value !== input.dataset.initial) out[input.name] = value;
  }
  return out;
}

function setOptions(options) {
  for (const [name, value] of Object.entries(options || {})) {
    const input = $("#options").querySelector(`[name="${name}"]`);
    if (!input) continue;
    if (input.type === "checkbox") input.checked = String(value) === "true" || value === true;
    else input.value = shown(value);
  }
}

function chooseEngine(name) {
  state.engine = name;
  for (const b of document.querySelectorAll("#engines button")) {
    b.classList.toggle("active", b.dataset.engine === name);
  }
  $("#train-setup").hidden = name !== TRAIN;
  $("#content-drop").hidden = name === TRAIN;  // training takes photos, not one content
  renderFields();
}

// -- inputs ----------------------------------------------------------------------------------
async function upload(file) {
  return api("/api/uploads", { method: "POST", body: file,
    headers: { "Content-Type": file.type || "application/octet-stream" } });
}

async function pickContent(files) {
  if (!files.length) return;
  say("uploading…");
  try {
    const made = await upload(files[0]);
    state.content = made.id;
    const thumb = $("#content-thumb");
    thumb.src = made.url; thumb.hidden = false;
    say("");
  } catch (e) { say(e.message); }
}

async function pickStyles(files) {
  say("uploading…");
  try {
    for (const file of files) {
      const made = await upload(file);
      state.styles.push({ id: made.id, url: made.url });
    }
    renderPicked(); say("");
  } catch (e) { say(e.message); }
}

async function pickPhotos(files) {
  say("uploading…");
  try {
    for (const file of files) state.photos.push((await upload(file)).id);
    $("#train-photos").textContent = `${state.photos.length} photos uploaded`; say("");
  } catch (e) { say(e.message); }
}

function renderPicked() {
  const box = $("#style-picked");
  box.replaceChildren();
  state.styles.forEach((s, i) => {
    box.append(el("div", { class: "thumb picked", title: "click to remove",
      onclick: () => { state.styles.splice(i, 1); renderPicked(); renderPresets(); } },
      s.url ? el("img", { src: s.url, alt: "" }) : el("div", { class: "none" }),
      s.preset || "upload"));
  });
}

function renderPresets() {
  const box = $("#style-presets");
  box.replaceChildren();
  for (const p of state.info.presets.filter((p) => p.style)) {
    const picked = state.styles.some((s) => s.preset === p.name);
    const card = el("div", { class: "thumb" + (p.available ? "" : " unavailable") +
      (picked ? " picked" : ""), "data-preset": p.name,
      title: p.available ? `${p.description}\n${p.licence}` :
        `${p.name}: not on this machine (run \`artconv presets --fetch\` once online)` },
      p.available ? el("img", { src: `/api/presets/${p.name}/thumb`, alt: "" })
        : el("div", { class: "none" }), p.name);
    if (p.available) {
      card.addEventListener("click", () => {
        const at = state.styles.findIndex((s) => s.preset === p.name);
        if (at >= 0) state.styles.splice(at, 1);
        else state.styles.push({ preset: p.name, url: `/api/presets/${p.name}/thumb` });
        renderPicked(); renderPresets();
      });
    }
    box.append(card);
  }
}

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", () => zone.classList.add("over"));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", () => zone.classList.remove("over"));
  zone.querySelector("input").addEventListener("change", (e) => {
    onFiles([...e.target.files]); e.target.value = "";
  });
}

function form() {
  if (state.engine === TRAIN) {
    return { engine: TRAIN, name: $("#train-name").value.trim(),
      styles: state.styles.map((s) => s.preset || s.id),
      photos: state.photos.length ? state.photos : $("#train-folder").value,
      options: optionValues() };
  }
  return { engine: state.engine, content: state.content, preset: $("#preset").value || null,
    // The picked styles stay picked while another engine is tried; only style jobs get them.
    styles: engineInfo().takes_styles ? state.styles.map((s) => s.preset || s.id) : [],
    options: optionValues() };
}

// -- running ---------------------------------------------------------------------------------
async function start() {
  say("");
  if (state.engine === TRAIN && state.mode === "sweep") { say("no sweeps of training"); return; }
  if (!state.content && state.engine !== TRAIN) { say("pick a content image first"); return; }
  try {
    if (state.mode === "sweep") {
      const values = $("#sweep-values").value.split("\n").map((v) => v.trim())
        .filter(Boolean);
      const sweep = await api("/api/sweeps", { method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ form: form(), option: $("#sweep-option").value, values }) });
      followSweep(sweep);
    } else {
      const job = await api("/api/jobs", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(form()) });
      state.jobs[job.id] ||= job;  // the stream may have told of it already
      watch(job.id);
    }
  } catch (e) { say(e.message); }
}

function watch(id) {
  if (state.watching === id) return;
  state.watching = id;
  // Nothing of the previous job stays on show: its bar, its curve, its step counts.
  $("#bar").style.width = "0";
  drawCurve(null);
  if (state.jobs[id]) show(state.jobs[id]);
}

// The one stream: on every change, the queue's lines and the jobs and sweeps that changed.
function listen() {
  const source = new EventSource("/api/events");
  source.onmessage = (e) => update(JSON.parse(e.data));
}

function update(changes) {
  let ended = false;
  for (const job of changes.jobs) {
    const before = state.jobs[job.id];
    ended ||= FINISHED.includes(job.status) && !(before && FINISHED.includes(before.status));
    state.jobs[job.id] = job;
    if (job.id === state.watching) show(job);
  }
  for (const sweep of changes.sweeps) {
    state.sweeps[sweep.id] = sweep;
    if (sweep.id === state.sweep) showSweep(sweep);
  }
  showQueue(changes.queue);
  // When the job watched is over (or none is), the running one is shown.
  const watched = state.jobs[state.watching];
  const running = changes.queue.find((j) => j.status === "running");
  if (running && (!watched || FINISHED.includes(watched.status))) watch(running.id);
  if (ended) refreshGallery();
}

// The jobs waiting or running.
function showQueue(lines) {
  const box = $("#queue");
  box.replaceChildren();
  if (!lines.length) box.append(el("li", { class: "empty" }, "empty"));
  for (const j of lines) {
    box.append(el("li", { class: j.id === state.watching ? "watched" : "",
      onclick: () => watch(j.id) }, `${j.label}: ${j.status}`));
  }
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  return s >= 90 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`;
}

function show(job) {
  const step = job.step || {};
  const running = job.status === "running" || job.status === "queued";
  let text = `${job.label}: ${job.status}`;
  if (job.status === "queued") text += ` (position ${job.position || "?"})`;
  if (step.total) text += ` · step ${step.done}/${step.total} · ${step.label}`;
  if (job.eta !== null && job.status === "running") text += ` · ETA ${seconds(job.eta)}`;
  if (job.error) text += ` · ${job.error}`;
  $("#status").textContent = text;
  Object.assign($("#status").dataset, { status: job.status, job: job.id,
    done: step.done || 0, total: step.total || 0 });
  $("#bar").style.width = step.total ? `${(100 * step.done) / step.total}%` : "0";
  const stop = $("#stop");
  stop.disabled = !running; stop.dataset.job = job.id;
  const img = $("#preview");
  if (job.preview && img.dataset.want !== `${job.id}:${job.preview}`) {
    img.dataset.want = `${job.id}:${job.preview}`;
    img.src = `/api/jobs/${job.id}/preview?v=${job.preview}`;
  }
  drawCurve(job.curve);
  showTraining(job);
}

// A training job: its work folder's loss curve and preview sheet (redrawn as they grow),
// and Resume once it stopped (the same form again continues from the checkpoint).
function showTraining(job) {
  const view = $("#train-view");
  view.hidden = !job.train;
  if (!job.train) return;
  for (const [key, id] of [["curve", "#train-curve"], ["sheet", "#train-sheet"]]) {
    const img = $(id), url = job.train[key];
    img.hidden = !url;
    if (url && img.dataset.want !== url) { img.dataset.want = url; img.src = url; }
  }
  const resume = $("#resume");
  resume.hidden = !["stopped", "failed", "cancelled"].includes(job.status);
  resume.dataset.job = job.id;
}

async function resume() {
  const job = state.jobs[$("#resume").dataset.job];
  if (!job) return;
  try {
    const again = await api("/api/jobs", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(job.form) });
    state.jobs[again.id] ||= again;
    watch(again.id);
  } catch (e) { say(e.message); }
}

function previewLoaded() {
  const img = $("#preview");
  img.classList.add("shown"); $("#idle").hidden = true;
  img.dataset.loads = String(Number(img.dataset.loads || 0) + 1);
}

function drawCurve(curve) {
  const canvas = $("#curve");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * ratio, h = canvas.clientHeight * ratio;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const points = (curve && curve.points) || [];
  canvas.dataset.points = String(points.length);
  if (points.length < 2) return;
  // Losses fall over orders of magnitude: a log scale when every value is positive.
  const log = points.every((p) => p[1] > 0);
  const ys = points.map((p) => (log ? Math.log10(p[1]) : p[1]));
  const x0 = points[0][0], x1 = points[points.length - 1][0];
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const pad = 6 * ratio;
  ctx.strokeStyle = "#e0a030"; ctx.lineWidth = 1.5 * ratio; ctx.beginPath();
  points.forEach((p, i) => {
    const x = pad + ((p[0] - x0) / Math.max(x1 - x0, 1)) * (w - 2 * pad);
    const y = h - pad - ((ys[i] - lo) / Math.max(hi - lo, 1e-12)) * (h - 2 * pad);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#9aa0aa"; ctx.font = `${11 * ratio}px system-ui`;
  ctx.fillText(`${curve.name}${log ? " (log)" : ""}: ${points[points.length - 1][1]
    .toPrecision(3)}`, pad, 12 * ratio);
}

async function stop() {
  const id = $("#stop").dataset.job;
  if (!id) return;
  try { show(await api(`/api/jobs/${id}/stop`, { method: "POST" })); }
  catch (e) { say(e.message); }
}

function followSweep(sweep) {
  state.sweep = sweep.id;
  $("#sweep-view").hidden = false;
  showSweep(state.sweeps[sweep.id] || sweep);
}

function showSweep(sweep) {
  const done = sweep.jobs.filter((j) => ["done", "stopped"].includes(j.status)).length;
  $("#sweep-status").textContent = `${sweep.option}: ${done} of ${sweep.jobs.length} done`;
  if (sweep.sheet && sweep.sheet !== state.sheetVersion) {
    state.sheetVersion = sweep.sheet; $("#sheet").src = sweep.sheet;
  }
  const running = sweep.jobs.find((j) => j.status === "running");
  if (running) watch(running.id);
  $("#sweep-view").dataset.finished = sweep.finished ? "1" : "";
  if (sweep.finished) refreshGallery();
}

// -- gallery ---------------------------------------------------------------------------------
async function refreshGallery() {
  let items;
  try { items = await api("/api/gallery"); } catch (e) { say(e.message); return; }
  const box = $("#gallery");
  box.replaceChildren();
  for (const item of items) {
    box.append(el("div", { class: "card", "data-id": item.id },
      el("a", { href: item.url, target: "_blank" }, el("img", { src: item.url, alt: item.label })),
      el("p", {}, `${item.label} · ${item.status} · ${item.seconds} s`),
      el("div", { class: "actions" },
        el("a", { href: item.url, target: "_blank" }, "Open"),
        el("a", { href: item.download, download: item.output, class: "download" }, "Download"),
        el("button", { type: "button", class: "recipe", onclick: () => showRecipe(item.id) },
          "Recipe"),
        el("button", { type: "button", class: "again", onclick: () => runAgain(item) },
          "Run again"))));
  }
}

async function showRecipe(id) {
  try {
    const recipe = await api(`/api/results/${id}/recipe`);
    $("#recipe").textContent = JSON.stringify(recipe, null, 1);
    $("#recipe-dialog").showModal();
  } catch (e) { say(e.message); }
}

function runAgain(item) {
  const f = item.form;
  setMode("single");
  chooseEngine(f.engine);
  $("#preset").value = f.preset || "";
  setOptions(f.options);
  state.content = f.content;
  const urls = item.inputs || {};
  if (urls.content) { $("#content-thumb").src = urls.content; $("#content-thumb").hidden = false; }
  state.styles = f.styles.map((s, i) => (/^[0-9a-f]{16}$/.test(s)
    ? { id: s, url: (urls.styles || [])[i] } : { preset: s, url: `/api/presets/${s}/thumb` }));
  renderPicked(); renderPresets();
  say("settings loaded: press Start");
}

function setMode(mode) {
  state.mode = mode;
  for (const t of document.querySelectorAll(".tab")) {
    t.classList.toggle("active", t.dataset.mode === mode);
  }
  $("#sweep-setup").hidden = mode !== "sweep";
  $("#start").textContent = mode === "sweep" ? "Start sweep" : "Start";
}

async function init() {
  state.info = await api("/api/info");
  const net = state.info.network.style;  // the server's network: not a choice of the page
  $("#version").textContent =
    `artconv ${state.info.version} · ` +
    (net.backbone ? `backbone ${net.backbone}` : `${net.arch} ${net.weights} weights`) +
    ` · ${state.info.folder}`;
  const engines = $("#engines");
  for (const [name, e] of Object.entries(state.info.engines)) {
    engines.append(el("button", { type: "button", class: "tab", "data-engine": name,
      title: e.summary, onclick: () => chooseEngine(name) }, name));
  }
  if (state.info.train) {
    engines.append(el("button", { type: "button", class: "tab", "data-engine": TRAIN,
      title: "Train a fast style network (artconv train) on photos", onclick: () =>
        chooseEngine(TRAIN) }, TRAIN));
    const folder = $("#train-folder");
    for (const f of state.info.train.photo_folders) {
      folder.append(el("option", { value: f }, f ? `photos/${f}` : "photos/"));
    }
  }
  chooseEngine("style");
  dropZone($("#train-photos-drop"), pickPhotos);
  $("#resume").addEventListener("click", resume);
  renderPresets();
  dropZone($("#content-drop"), pickContent);
  dropZone($("#style-drop"), pickStyles);
  for (const t of document.querySelectorAll(".tab[data-mode]")) {
    t.addEventListener("click", () => setMode(t.dataset.mode));
  }
  $("#start").addEventListener("click", start);
  $("#stop").addEventListener("click", stop);
  $("#preview").addEventListener("load", previewLoaded);
  document.body.dataset.ready = "1";
  refreshGallery();
  listen();
}

init().catch((e) => say(e.message));
