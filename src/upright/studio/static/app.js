// upright studio: the page. Plain JS, no build step, nothing remote. Every picture shown is a
// thumbnail the server made through upright's one door (untagged JPEGs): the browser never
// has an orientation tag to apply, so "upright" and "as stored" mean exactly what they say.
"use strict";

const $ = (id) => document.getElementById(id);
const UPLOAD_FILES_PER_REQUEST = 8;
const UPLOADS_IN_FLIGHT = 2;
const BURST_GAP_MS = 200;        // hold for a burst: 5 photos a second
const BURST_MAX = 60;
const CAPTURE_LONG_SIDE = 1280;  // camera captures are scaled down to this before upload
const SEVERITY_WORDS = { error: "error", warning: "warning", info: "info" };
const DENIED = "This studio needs its access token: open the link (or scan the QR code) that " +
  "`upright studio --lan` printed. The token changes every time the studio starts.";

let project = null;        // GET /api/project
let maxBytes = 25_000_000;
let tab = "collect";
let trainJob = null;       // the running (or last) training job
let cameraFor = null;      // {label, stream}
const exportStatus = new Map();  // model -> the last export words (kept when the list is redrawn)

// ---------------------------------------------------------------- small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function fmtMB(n) { return n >= 100_000 ? (n / 1e6).toFixed(1) + " MB" : n.toLocaleString() + " bytes"; }
function pct(x) { return (x * 100).toFixed(x >= 0.995 || x < 0.1 ? 0 : 1) + "%"; }
function plural(n, word) { return `${n} ${word}${n === 1 ? "" : word.endsWith("s") ? "es" : "s"}`; }

function showError(message, kind = "error") {
  const box = $("error");
  box.textContent = message;
  box.className = kind;  // "error", or "note": something to know, nothing went wrong
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 12000);
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["content-type"] = "application/json"; }
  let res;
  try { res = await fetch(url, opts); } catch (e) { return { ok: false, status: 0, body: { error: "the studio did not answer (is it still running?)" } }; }
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: `HTTP ${res.status}` }; }
  if (res.status === 403 && data && String(data.error || "").includes("token")) showError(DENIED);
  return { ok: res.ok, status: res.status, body: data };
}

function thumbUrl(sha, view = "upright") { return `/api/thumbs/${sha}` + (view === "stored" ? "?view=stored" : ""); }

// A thumbnail <img>. The server makes a thumbnail on first use (a turned photo's before the
// pages hear of it); one that fails to load (the studio restarting, a photo being changed)
// is asked for again twice, so a tile never stays blank for a photo that can be shown.
function thumbImg(sha, view = "upright", props = {}) {
  const img = el("img", { src: thumbUrl(sha, view), alt: "", loading: "lazy", "data-sha": sha, ...props });
  let tries = 0;
  img.addEventListener("error", () => {
    if (++tries > 2) return;
    setTimeout(() => { img.src = thumbUrl(sha, view) + (view === "stored" ? "&" : "?") + `again=${tries}`; }, 800 * tries);
  });
  return img;
}

// ---------------------------------------------------------------- tabs

function showTab(name) {
  tab = name;
  for (const b of document.querySelectorAll(".tabs [data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  if (name === "review") loadReview();
  if (name === "test") showTest();
}
for (const b of document.querySelectorAll(".tabs [data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));

// ---------------------------------------------------------------- the project (every page, live)

async function loadProject() {
  const r = await api("GET", "/api/project");
  if (!r.ok) { if (r.status !== 403) showError(r.body.error || "cannot load the project"); return; }
  project = r.body;
  maxBytes = project.max_bytes || maxBytes;
  $("project-name").textContent = project.project;
  document.title = `upright studio · ${project.project}`;
  renderClasses();
  renderTrashCount();
  renderModels();
  renderTrainReady();
  for (const j of project.jobs || []) if (j.kind === "train") renderJob(j);
  if (tab === "review") loadReview();
}

let projectTimer = null;
function projectChanged() {
  clearTimeout(projectTimer);
  projectTimer = setTimeout(loadProject, 150);
}

function listen() {
  const es = new EventSource("/api/events");
  es.addEventListener("hello", () => { $("live").textContent = "live"; $("live").className = "live on"; loadProject(); loadAudit(); });
  es.addEventListener("project", projectChanged);
  es.addEventListener("audit", loadAudit);
  es.addEventListener("job", (ev) => {
    const job = JSON.parse(ev.data);
    if (job.kind === "train") renderJob(job);
    if (job.kind === "audit") renderContentJob(job);
    if (job.state !== "running") projectChanged();
  });
  es.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "live"; };
}

// ---------------------------------------------------------------- Collect: classes

function renderClasses() {
  const box = $("classes");
  const cards = new Map([...box.children].map((c) => [c.dataset.class, c]));
  const names = project.classes.map((c) => c.name);
  $("no-classes").hidden = names.length > 0;
  for (const [name, card] of cards) if (!names.includes(name)) card.remove();
  project.classes.forEach((c, i) => {
    let card = cards.get(c.name);
    if (!card) card = makeCard(c.name);
    if (box.children[i] !== card) box.insertBefore(card, box.children[i] || null);
    fillCard(card, c);
  });
}

function makeCard(name) {
  const card = $("class-card").content.firstElementChild.cloneNode(true);
  card.dataset.class = name;
  card.querySelector(".upload-input").addEventListener("change", (ev) => {
    enqueue(card.dataset.class, [...ev.target.files], "upload");
    ev.target.value = "";
  });
  card.querySelector(".camera-btn").addEventListener("click", () => openCamera(card.dataset.class));
  card.querySelector(".rename-btn").addEventListener("click", () => {
    const form = card.querySelector(".rename-form");
    form.hidden = !form.hidden;
    card.querySelector(".rename-input").value = card.dataset.class;
    if (!form.hidden) card.querySelector(".rename-input").focus();
  });
  card.querySelector(".rename-form").addEventListener("submit", (ev) => { ev.preventDefault(); renameClass(card); });
  card.querySelector(".delete-btn").addEventListener("click", () => deleteClass(card.dataset.class));
  dropTarget(card);
  return card;
}

function fillCard(card, c) {
  card.querySelector(".class-name").textContent = c.name;
  const extra = [c.captured ? `${c.captured} from the page's camera` : null, c.tagged ? `${c.tagged} with an orientation tag` : null]
    .filter(Boolean).join(", ");
  card.querySelector(".count").textContent = plural(c.count, "photo") + (extra ? ` (${extra})` : "");
  const thumbs = card.querySelector(".thumbs");
  const want = c.recent.join(",");
  if (thumbs.dataset.shas === want) return;
  thumbs.dataset.shas = want;
  thumbs.replaceChildren(...c.recent.map((sha) => thumbImg(sha)));
  if (!c.recent.length) thumbs.append(el("span", { class: "muted small", text: "Empty: upload photos, or use the camera." }));
}

function dropTarget(card) {
  let depth = 0;
  card.addEventListener("dragenter", (ev) => { ev.preventDefault(); depth++; card.classList.add("over"); });
  card.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; card.classList.remove("over"); } });
  card.addEventListener("dragover", (ev) => { ev.preventDefault(); ev.dataTransfer.dropEffect = "copy"; });
  card.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    card.classList.remove("over");
    enqueue(card.dataset.class, [...((ev.dataTransfer && ev.dataTransfer.files) || [])], "upload");
  });
}
window.addEventListener("dragover", (ev) => ev.preventDefault());
window.addEventListener("drop", (ev) => ev.preventDefault());  // a photo dropped beside a card never navigates away

$("new-class").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("new-class-name");
  const name = input.value.trim();
  if (!name) return;
  const r = await api("POST", "/api/classes", { name });
  if (!r.ok) { showError(r.body.error); return; }
  if (input.value.trim() === name) input.value = "";  // unless the next name is being typed already
  projectChanged();
});

async function renameClass(card) {
  const old = card.dataset.class;
  const name = card.querySelector(".rename-input").value.trim();
  if (!name || name === old) { card.querySelector(".rename-form").hidden = true; return; }
  const r = await api("PATCH", `/api/classes/${encodeURIComponent(old)}`, { name });
  if (!r.ok) { showError(r.body.error); return; }
  card.dataset.class = r.body.name;
  card.querySelector(".rename-form").hidden = true;
  projectChanged();
}

async function deleteClass(name) {
  if (!window.confirm(`Move the class '${name}' and its photos to the trash? (You can restore it.)`)) return;
  const r = await api("DELETE", `/api/classes/${encodeURIComponent(name)}`);
  if (!r.ok) showError(r.body.error);
  projectChanged();
}

// ---------------------------------------------------------------- Collect: uploads

const queues = new Map();  // class -> {items: [{blob, name}], source, sending, totals}

function status(label, text) {
  const card = [...$("classes").children].find((c) => c.dataset.class === label);
  if (card) card.querySelector(".status").textContent = text;
}

const TOTALS_FOR_MS = 20000;  // photos sent within this of the last ones add to the same summary

function enqueue(label, files, source) {
  let q = queues.get(label + "\u0000" + source);
  if (!q) { q = { label, source, items: [], sending: 0, totals: fresh(), idle: 0 }; queues.set(label + "\u0000" + source, q); }
  if (!q.items.length && !q.sending && Date.now() - q.idle > TOTALS_FOR_MS) q.totals = fresh();
  for (const f of files) {
    if (f.size > maxBytes) q.totals.refused.push(`${f.name}: ${fmtMB(f.size)}, over the ${fmtMB(maxBytes)} limit`);
    else q.items.push({ blob: f, name: f.name || "photo.jpg" });
  }
  q.totals.queued += files.length;
  pump(q);
}

function fresh() { return { queued: 0, stored: 0, duplicates: [], refused: [] }; }

function batch(q) {
  const out = [];
  let bytes = 0;
  while (q.items.length && out.length < UPLOAD_FILES_PER_REQUEST && bytes + q.items[0].blob.size < maxBytes * 0.9) {
    const item = q.items.shift();
    bytes += item.blob.size;
    out.push(item);
  }
  if (!out.length && q.items.length) out.push(q.items.shift());
  return out;
}

async function pump(q) {
  while (q.items.length && q.sending < UPLOADS_IN_FLIGHT) {
    const items = batch(q);
    q.sending++;
    report(q);
    send(q, items).finally(() => { q.sending--; report(q); pump(q); });
  }
  report(q);
}

async function send(q, items) {
  const fd = new FormData();
  fd.append("source", q.source);
  for (const it of items) fd.append("file", it.blob, it.name);
  const r = await api("POST", `/api/classes/${encodeURIComponent(q.label)}/photos`, fd);
  if (!r.ok) { q.totals.refused.push(...items.map((it) => `${it.name}: ${r.body.error}`)); return; }
  q.totals.stored += r.body.stored.length;
  q.totals.duplicates.push(...r.body.duplicates.map((d) => `${d.name} (same as ${d.of})`));
  q.totals.refused.push(...r.body.refused.map((d) => `${d.name}: ${d.reason}`));
}

function report(q) {
  const t = q.totals;
  const done = t.stored + t.duplicates.length + t.refused.length;
  const busy = q.items.length || q.sending;
  const parts = [busy ? `sending ${done}/${t.queued}…` : null, t.stored ? `${t.stored} stored` : null,
    t.duplicates.length ? `${plural(t.duplicates.length, "duplicate")} not stored again: ${t.duplicates.slice(0, 3).join(", ")}` : null,
    t.refused.length ? `${t.refused.length} refused: ${t.refused.slice(0, 3).join("; ")}` : null];
  status(q.label, parts.filter(Boolean).join(" · "));
  if (!busy) q.idle = Date.now();
}

// ---------------------------------------------------------------- Collect: the page's camera

async function openCamera(label) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("The camera needs https or http://localhost (start the studio with --lan for phones). " +
      "Upload works everywhere: on a phone it offers the camera app too.");
    return;
  }
  closeCamera();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: "environment" } }, audio: false });
  } catch (e) { showError(`No camera: ${e.message || e.name}`); return; }
  cameraFor = { label, stream, taken: 0 };
  const video = $("camera-video");
  video.srcObject = stream;
  await video.play().catch(() => {});
  $("camera-class").textContent = label;
  $("camera").hidden = false;
  $("camera").scrollIntoView({ block: "start", behavior: "smooth" });
}

function closeCamera() {
  stopBurst();
  if (!cameraFor) return;
  for (const t of cameraFor.stream.getTracks()) t.stop();
  cameraFor = null;
  $("camera-video").srcObject = null;
  $("camera").hidden = true;
}

async function grab() {
  const video = $("camera-video");
  if (!cameraFor || !video.videoWidth) return null;
  const scale = Math.min(1, CAPTURE_LONG_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const canvas = $("grab");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function shoot() {
  const blob = await grab();
  if (!blob || !cameraFor) return;
  cameraFor.taken++;
  $("camera-status").textContent = `${plural(cameraFor.taken, "photo")} taken for '${cameraFor.label}'`;
  enqueue(cameraFor.label, [new File([blob], `camera-${Date.now()}.jpg`, { type: "image/jpeg" })], "camera");
}

let burst = null;
function startBurst(ev) {
  ev.preventDefault();
  if (burst || !cameraFor) return;
  let n = 0;
  $("camera-burst").classList.add("recording");
  burst = setInterval(() => { if (++n > BURST_MAX) stopBurst(); else shoot(); }, BURST_GAP_MS);
  shoot();
}
function stopBurst() {
  if (!burst) return;
  clearInterval(burst);
  burst = null;
  $("camera-burst").classList.remove("recording");
}
$("camera-shot").addEventListener("click", shoot);
$("camera-burst").addEventListener("pointerdown", startBurst);
for (const e of ["pointerup", "pointerleave", "pointercancel"]) $("camera-burst").addEventListener(e, stopBurst);
$("camera-burst").addEventListener("contextmenu", (ev) => ev.preventDefault());  // a long press is not a menu
$("camera-close").addEventListener("click", closeCamera);

// ---------------------------------------------------------------- the audit

async function loadAudit() {
  const r = await api("GET", "/api/audit/view");
  if (!r.ok) return;
  const a = r.body;
  const c = a.counts || {};
  $("audit-state").textContent = a.running ? "checking…" : a.state === "done"
    ? `${plural(a.n_images || 0, "photo")} checked · ${plural(c.error || 0, "error")}, ${plural(c.warning || 0, "warning")}, ${c.info || 0} info`
    : "waiting for photos";
  const list = $("findings");
  list.replaceChildren(...a.findings.map(renderFinding));
  $("audit-empty").hidden = a.findings.length > 0;
  if (a.note && !a.findings.length) $("audit-empty").textContent = a.note;
  renderContentJob(a.content.job, a.content);
}

function renderFinding(f) {
  const li = el("li", { class: `finding ${f.severity}`, "data-kind": f.kind, "data-attribute": f.attribute || "" });
  const head = el("p", { class: "finding-head" },
    el("span", { class: `sev ${f.severity}`, text: SEVERITY_WORDS[f.severity] || f.severity }),
    el("span", { class: "headline", text: f.headline }));
  const thumbs = el("div", { class: "finding-thumbs" },
    ...f.thumbs.map((sha) => thumbImg(sha)));
  const more = el("details", { class: "small" }, el("summary", { text: "why it matters" }), el("p", { text: f.message }));
  li.append(head, thumbs, more);
  return li;
}

function renderContentJob(job, content) {
  const s = $("content-state");
  if (job && job.state === "running") {
    const p = job.progress || {};
    s.textContent = p.step ? `${p.step}${p.total ? ` ${p.done}/${p.total}` : ""}…` : "starting…";
    $("content-audit").disabled = true;
    return;
  }
  $("content-audit").disabled = false;
  if (job && job.state === "failed") s.textContent = `content check failed: ${job.error}`;
  else if (content && content.done) s.textContent = `content checked; ${plural(content.scored, "photo")} with a sideways score (Review sorts by it)`;
}

$("content-audit").addEventListener("click", async () => {
  const r = await api("POST", "/api/audit/content");
  if (!r.ok) showError(r.body.error);
  else $("content-state").textContent = "starting…";
});

// ---------------------------------------------------------------- trash

function renderTrashCount() {
  $("trash-count").textContent = project.trash ? `(${project.trash})` : "(empty)";
  if ($("trash").open) loadTrash();
}
$("trash").addEventListener("toggle", () => { if ($("trash").open) loadTrash(); });

async function loadTrash() {
  const r = await api("GET", "/api/trash");
  if (!r.ok) return;
  $("trash-items").replaceChildren(...r.body.items.map((it) => {
    const what = it.kind === "class" ? `class '${it.class}' (${plural(it.photos, "photo")})`
      : `${plural(it.files, "photo")}` + (it.class ? ` from '${it.class}'` : "");
    const btn = el("button", { class: "btn small-btn", type: "button", text: "Restore" });
    btn.addEventListener("click", async () => {
      const res = await api("POST", `/api/trash/${encodeURIComponent(it.item)}/restore`);
      if (!res.ok) showError(res.body.error);
      else if (res.body.kept.length) showError(`Restored ${res.body.restored}; left in the trash: ${res.body.kept.join("; ")}`, "note");
      projectChanged();
    });
    return el("li", {}, el("span", { text: `${what}, deleted ${it.when || ""}` }), btn);
  }));
}

// ---------------------------------------------------------------- Review

let reviewPhotos = [];

async function loadReview() {
  const select = $("review-class");
  const names = project ? project.classes.map((c) => c.name) : [];
  const current = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (names.includes(current)) select.value = current;
  if (!select.value) { $("grid").replaceChildren(); $("review-note").textContent = "No classes yet."; return; }
  const r = await api("GET", `/api/classes/${encodeURIComponent(select.value)}/photos`);
  if (!r.ok) return;
  reviewPhotos = r.body.photos;
  renderGrid();
}

function renderGrid() {
  const sort = $("review-sort").value;
  const photos = [...reviewPhotos];
  if (sort === "sideways") photos.sort((a, b) => ((b.sideways || {}).confidence ?? -1) - ((a.sideways || {}).confidence ?? -1));
  const scored = photos.filter((p) => p.sideways).length;
  $("review-note").textContent = `${plural(photos.length, "photo")}. ` + (scored ? `${scored} with a sideways score.`
    : "Sideways scores come from “Check content” on the Collect tab (40 photos or more).");
  const others = project.classes.map((c) => c.name).filter((n) => n !== $("review-class").value);
  $("grid").replaceChildren(...photos.map((p) => tile(p, others)));
}

function tagWords(p) {
  if (p.orientation === 1) return p.captured ? "captured in the page" : "stored upright";
  return { 2: "stored mirrored", 3: "stored upside down", 4: "stored mirrored upside down", 5: "stored sideways, mirrored",
    6: "stored sideways", 7: "stored sideways, mirrored", 8: "stored sideways" }[p.orientation] + ` (tag ${p.tag})`;
}

function tile(p, others) {
  const fig = el("figure", { class: "tile", "data-id": p.id });
  const views = el("div", { class: "views" },
    thumbImg(p.sha256, "upright", { class: "upright", alt: "upright" }));
  if (p.orientation !== 1) {
    views.append(el("span", { class: "stored-box" }, thumbImg(p.sha256, "stored", { class: "stored", alt: "as stored" }),
      el("span", { class: "stored-label", text: "as stored" })));
  }
  const side = p.sideways ? ` · sideways ${pct(p.sideways.confidence)}` + (p.sideways.confidence >= 0.5 ? ` (looks turned ${p.sideways.rotation}°)` : "") : "";
  const cap = el("figcaption", { class: "small" }, el("span", { class: "tag-words", text: tagWords(p) + side }));
  const actions = el("div", { class: "tile-actions" },
    action("↻", "Turn 90° clockwise", () => turn(p, 90)),
    action("↺", "Turn 90° counter-clockwise", () => turn(p, 270)),
    action("180°", "Turn upside down", () => turn(p, 180)),
    p.orientation !== 1 ? action("Fix tag", "Store the pixels upright (what the tag says), nothing else changes", () => turn(p, 0)) : null,
    p.turned ? action("Undo turn", "Put this photo back exactly as it was uploaded", () => undoTurn(p)) : null,
    moveSelect(p, others),
    action("Trash", "Move to the trash", () => trashPhoto(p)));
  fig.append(views, cap, actions);
  return fig;
}

function action(text, title, fn) {
  const b = el("button", { class: "btn small-btn", type: "button", text, title });
  b.setAttribute("aria-label", title);
  b.addEventListener("click", async () => { b.disabled = true; await fn(); b.disabled = false; });
  return b;
}

function moveSelect(p, others) {
  const s = el("select", { class: "move", title: "Move to another class" },
    el("option", { value: "", text: "Move to…" }), ...others.map((n) => el("option", { value: n, text: n })));
  s.addEventListener("change", async () => {
    if (!s.value) return;
    const r = await api("POST", "/api/photos/move", { photos: [p.id], to: s.value });
    if (!r.ok) showError(r.body.error);
    loadReview();
  });
  return s;
}

async function turn(p, degrees) {
  const r = await api("POST", "/api/photos/turn", { photo: p.id, degrees });
  if (!r.ok) { showError(r.body.error); return; }
  if (r.body.note) showError(`${p.id}: ${r.body.note}`, "note");
  await loadReview();
}

async function undoTurn(p) {
  const r = await api("POST", "/api/photos/undo-turn", { photo: p.id });
  if (!r.ok) showError(r.body.error);
  await loadReview();
}

async function trashPhoto(p) {
  const r = await api("POST", "/api/photos/trash", { photos: [p.id] });
  if (!r.ok) showError(r.body.error);
  await loadReview();
}

$("review-class").addEventListener("change", () => loadReview());
$("review-sort").addEventListener("change", renderGrid);
$("undo-turns").addEventListener("click", async () => {
  if (!window.confirm("Put every turned photo back exactly as it was uploaded (upright fix --undo)?")) return;
  const r = await api("POST", "/api/photos/undo-turns");
  if (!r.ok) showError(r.body.error);
  else showError(`${plural(r.body.restored.length, "photo")} back as uploaded` +
    (r.body.conflicts.length ? `; ${r.body.conflicts.length} changed since and left alone` : ""), "note");
  loadReview();
});

// ---------------------------------------------------------------- Train

$("train-finetune").addEventListener("change", () => { $("epochs-label").hidden = !$("train-finetune").checked; });

function renderTrainReady() {
  const counts = project.classes.filter((c) => c.count > 0).length;
  $("train-ready").textContent = `${plural(counts, "class")} with photos, ${project.classes.reduce((s, c) => s + c.count, 0)} photos`;
}

$("train-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { preset: $("train-preset").value, fine_tune: $("train-finetune").checked };
  if (body.fine_tune) body.epochs = Number($("train-epochs").value) || 3;
  const r = await api("POST", "/api/train", body);
  if (!r.ok) { showError(r.body.error); return; }
  renderJob({ id: r.body.job, kind: "train", state: "running", progress: {}, steps: [], model: r.body.model });
});

$("train-cancel").addEventListener("click", async () => {
  if (!trainJob) return;
  const r = await api("POST", `/api/jobs/${encodeURIComponent(trainJob.id)}/cancel`);
  if (!r.ok) showError(r.body.error);
});

function renderJob(job) {
  if (trainJob && trainJob.id !== job.id && job.started && trainJob.started && job.started < trainJob.started) return;
  trainJob = job;
  const running = job.state === "running";
  $("train-job").hidden = false;
  $("train-btn").disabled = running;
  $("train-cancel").hidden = !running;
  const p = job.progress || {};
  const bar = $("train-progress");
  if (running && p.total) bar.value = p.done / p.total; else if (running) bar.removeAttribute("value"); else bar.value = 1;
  const words = { running: "training", done: "done", failed: "failed", cancelled: "cancelled" }[job.state];
  const step = running ? (p.step ? `${p.step}${p.total ? ` ${p.done}/${p.total}` : ""}` : "starting…")
    : job.state === "failed" ? job.error : job.state === "done" ? `model ${job.model} written` : "no model written";
  $("train-step").textContent = `${words}: ${step}`;
  $("train-step").className = "small " + job.state;
  $("train-steps").textContent = (job.steps || []).length ? "steps: " + job.steps.join(" → ") : "";
}

function renderModels() {
  const box = $("models");
  $("no-models").hidden = project.models.length > 0;
  box.replaceChildren(...project.models.map(modelCard));
  fillTestModels();
}

const CARD_CLASSES = 8;   // per-class rows on a model card (the lowest recall first when more)
const CARD_WARNINGS = 3;  // audit warnings on a model card; the rest are in the report

function modelCard(m) {
  const card = el("article", { class: "card model", "data-model": m.name });
  const acc = typeof m.val_accuracy === "number" ? `val accuracy ${pct(m.val_accuracy)}` : (m.error || "");
  const photos = m.classes ? Object.values(m.classes).reduce((a, b) => a + b, 0) : null;
  const counts = m.classes ? Object.entries(m.classes).map(([k, v]) => `${k} ${v}`).join(", ") : "";
  card.append(el("div", { class: "card-head" }, el("h3", { text: m.name }), el("span", { class: "acc", text: acc })),
    el("p", { class: "muted small", text: `${m.preset || ""}${m.fine_tuned ? ", fine-tuned" : ""}` +
      (photos !== null ? ` · ${plural(photos, "photo")}: ${counts}` : "") }));
  card.append(...cardSummary(m));
  const row = el("div", { class: "row" });
  if (m.report) {
    const full = action("Full report", "Per class, confusion matrix, worst mistakes, audit warnings", () => showReport(m.name));
    full.classList.add("primary");
    row.append(full);
  }
  row.append(action("Test", "Open it in the Test tab", () => { chooseTestModel(m.name); showTab("test"); }));
  for (const [fmt, label] of [["onnx", "ONNX"], ["tflite", "TFLite"], ["coreml", "Core ML"]]) {
    const missing = project.converters && project.converters[fmt];
    const b = action(label, missing || `Download ${label}` + (fmt === "onnx" ? " (preprocessing in the graph)" : ""),
      () => download(m.name, fmt));
    b.classList.add("export-btn");
    b.dataset.format = fmt;
    if (missing) b.classList.add("unavailable");
    row.append(b);
  }
  card.append(row, el("p", { class: "export-status muted small", "aria-live": "polite", text: exportStatus.get(m.name) || "" }));
  return card;
}

// The card's summary of the report, from model.json: recall per class as bars, the mistakes,
// the audit's warnings in a line each. Models trained before these were recorded show none.
function cardSummary(m) {
  const out = [];
  const per = m.per_class ? Object.entries(m.per_class) : [];
  if (per.length) {
    const heldOut = per.reduce((a, [, v]) => a + (v.n || 0), 0);
    const shown = per.length > CARD_CLASSES
      ? [...per].sort((a, b) => (a[1].recall ?? 2) - (b[1].recall ?? 2)).slice(0, CARD_CLASSES) : per;
    out.push(el("p", { class: "small card-label", text: `Recall per class, on ${plural(heldOut, "held-out photo")}` +
      (shown.length < per.length ? ` (the ${shown.length} lowest of ${per.length} classes)` : "") }));
    out.push(el("div", { class: "recall" }, ...shown.map(([label, v]) => recallRow(label, v))));
    const n = m.n_mistakes ?? 0;
    out.push(el("p", { class: "small mistakes", "data-mistakes": String(n),
      text: n ? `${plural(n, "mistake")} on the held-out photos: the full report shows them, surest first`
        : "No mistakes on the held-out photos." }));
  }
  const warnings = m.audit_warnings || [];
  if (warnings.length) {
    out.push(el("ul", { class: "card-warnings" }, ...warnings.slice(0, CARD_WARNINGS).map((w) =>
      el("li", { class: `finding ${w.severity}` }, el("span", { class: `sev ${w.severity}`, text: SEVERITY_WORDS[w.severity] || w.severity }),
        el("span", { class: "headline", text: w.headline })))));
    if (warnings.length > CARD_WARNINGS) out.push(el("p", { class: "muted small", text: `${warnings.length - CARD_WARNINGS} more audit warnings in the full report` }));
  } else if (Array.isArray(m.audit_warnings)) {
    out.push(el("p", { class: "muted small", text: "The audit of its training photos found nothing to warn about." }));
  }
  return out;
}

function recallRow(label, v) {
  const r = typeof v.recall === "number" ? v.recall : null;
  const bar = el("span", { class: "bar" }, el("span", { class: "fill" }));
  bar.firstChild.style.width = r === null ? "0" : `${Math.round(r * 100)}%`;
  const right = r === null ? "n/a" : `${pct(r)} of ${v.n}`;
  const row = el("div", { class: "recall-row", "data-class": label, title: `'${label}': ${right} held-out photos predicted right` },
    el("span", { class: "recall-label", text: label }), bar, el("span", { class: "recall-value", text: right }));
  if (r !== null && r < 0.8) row.classList.add("low");
  return row;
}

function showReport(name) {
  $("report-name").textContent = name;
  $("report-box").hidden = false;
  const frame = $("report");
  frame.onload = () => fitFrame(frame);
  frame.src = `/api/models/${encodeURIComponent(name)}/report`;
  $("report-box").scrollIntoView({ block: "start", behavior: "smooth" });
}
$("report-close").addEventListener("click", () => { $("report-box").hidden = true; $("report").src = "about:blank"; });

function exportSays(name, text) {
  exportStatus.set(name, text);
  const card = document.querySelector(`.model[data-model="${CSS.escape(name)}"] .export-status`);
  if (card) card.textContent = text;
}

async function download(name, fmt) {
  const line = { set textContent(text) { exportSays(name, text); } };
  line.textContent = `exporting ${fmt}… (the first time takes a while)`;
  let res;
  try { res = await fetch(`/api/models/${encodeURIComponent(name)}/export?format=${fmt}`); } catch (e) { line.textContent = "the studio did not answer"; return; }
  if (!res.ok) {
    let msg = `HTTP ${res.status}`;
    try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
    line.textContent = `${fmt}: ${msg}`;
    return;
  }
  const blob = await res.blob();
  const disposition = res.headers.get("content-disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(disposition);
  const a = el("a", { href: URL.createObjectURL(blob), download: m ? m[1] : `${name}.${fmt}` });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 10000);
  line.textContent = `${fmt}: downloaded (${fmtMB(blob.size)})`;
}

// ---------------------------------------------------------------- Test: serve's page, framed

function fillTestModels() {
  const select = $("test-model");
  const names = project.models.map((m) => m.name);
  const current = select.value || cookieModel();
  select.replaceChildren(...names.map((n, i) => el("option", { value: n, text: n + (i === 0 ? " (newest)" : "") })));
  if (names.includes(current)) select.value = current;
  $("test-none").hidden = names.length > 0;
  $("test-frame").hidden = !names.length;
}

function cookieModel() {
  const m = /(?:^|; )upright_model=([^;]*)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : "";
}

function chooseTestModel(name) {
  document.cookie = `upright_model=${encodeURIComponent(name)}; path=/; SameSite=Strict`;
  $("test-model").value = name;
  if (tab === "test") loadTestFrame(true);
}

function showTest() { if (project && project.models.length) loadTestFrame(false); }

function loadTestFrame(force) {
  const frame = $("test-frame");
  if (!$("test-model").value) return;
  if (cookieModel() !== $("test-model").value) document.cookie = `upright_model=${encodeURIComponent($("test-model").value)}; path=/; SameSite=Strict`;
  if (force || !frame.getAttribute("src")) {
    frame.onload = () => fitFrame(frame);
    frame.src = "/test";
  }
}

$("test-model").addEventListener("change", () => chooseTestModel($("test-model").value));

function fitFrame(frame) {
  // Same origin: the frame is as tall as its page, so the phone scrolls one page, not two.
  try {
    const doc = frame.contentDocument;
    const fit = () => { frame.style.height = Math.max(320, doc.documentElement.scrollHeight + 8) + "px"; };
    fit();
    new ResizeObserver(fit).observe(doc.documentElement);
  } catch (e) { /* not loaded */ }
}

listen();
loadProject();
loadAudit();
