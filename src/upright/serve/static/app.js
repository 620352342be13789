// upright serve: the test page. Plain JS, no build step, no external resources.
// The images shown come from the API as untagged JPEG data URLs: `view` is already upright
// (what the model saw) and `stored_view` is the pixels as the file stores them, so the
// browser's own EXIF handling has nothing to apply to either.
"use strict";

const $ = (id) => document.getElementById(id);
const LIVE_INTERVAL_MS = 700;   // camera: one frame this often, never more than one in flight
const FRAME_LONG_SIDE = 640;    // camera frames are scaled down before upload

let maxBytes = 25_000_000;
let topK = 5;
let modelCrop = true;           // the backbone classifies the centre square of the view
let seq = 0;                    // newer uploads win over slower older answers
let live = null;                // {stream, timer} while the camera runs

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}
function clearError() { $("error").hidden = true; }

function fmtMB(n) { return n >= 100_000 ? (n / 1e6).toFixed(1) + " MB" : n.toLocaleString() + " bytes"; }

async function loadModelInfo() {
  try {
    const res = await fetch("/api/model");
    const info = await res.json();
    maxBytes = info.max_bytes || maxBytes;
    topK = info.top_k || topK;
    const bits = [`${info.labels.length} labels: ${info.labels.join(", ")}`];
    if (info.backbone) bits.push(info.backbone);
    const acc = info.training && info.training.val_accuracy;
    if (typeof acc === "number") bits.push(`val accuracy ${(acc * 100).toFixed(1)}%`);
    $("model-info").textContent = `model ${info.model} · ` + bits.join(" · ");
  } catch (e) {
    $("model-info").textContent = "could not load the model description";
  }
}

async function health() {
  try {
    const res = await fetch("/healthz", { cache: "no-store" });
    const h = await res.json();
    $("health").textContent = h.status === "ok" ? "server ok" : "server: " + h.status;
  } catch (e) {
    $("health").textContent = "server unreachable";
  }
}

function renderPredictions(preds) {
  const list = $("predictions");
  list.replaceChildren();
  for (const p of preds) {
    const li = document.createElement("li");
    const row = document.createElement("div");
    row.className = "pred-row";
    const label = document.createElement("span");
    label.className = "pred-label";
    label.textContent = p.label;
    const score = document.createElement("span");
    score.className = "pred-score";
    score.textContent = (p.score * 100).toFixed(1) + "%";
    row.append(label, score);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = Math.max(0, Math.min(100, p.score * 100)).toFixed(1) + "%";
    bar.append(fill);
    li.append(row, bar);
    list.append(li);
  }
}

function render(body, roundTripMs, isLive) {
  clearError();
  $("result").hidden = false;
  if (!isLive) {
    $("view").hidden = false;
    $("video").hidden = true;
    $("view").src = body.view;
    // the file's upright size: tags 5-8 swap width and height
    const [sw, sh] = body.stored_size;
    const [uw, uh] = body.stored_view && body.orientation >= 5 && body.orientation <= 8 ? [sh, sw] : [sw, sh];
    $("view-caption").textContent =
      `What the model saw: upright, ${body.view_size[0]}×${body.view_size[1]} preview of a ` +
      `${uw}×${uh} ${body.format || "image"}` + (modelCrop ? `; the model looks at the centre square` : "");
  }
  const tagged = !!body.stored_view;
  $("stored-figure").hidden = !tagged;
  if (tagged) {
    $("stored").src = body.stored_view;
    $("note").textContent = body.orientation_note;
  }
  $("plain-note").hidden = tagged || isLive;
  $("plain-note").textContent = tagged ? "" : body.orientation_note;
  $("filename").textContent = isLive ? "camera frame" : (body.path || "pasted or dropped image");
  renderPredictions(body.predictions);
  const t = body.timings || {};
  $("timing").textContent =
    `${Math.round(roundTripMs)} ms round trip · server ${Math.round(body.ms)} ms` +
    (t.decode_ms !== undefined ? ` (decode ${Math.round(t.decode_ms)} ms, model ${Math.round(t.model_ms)} ms` +
      (t.batch > 1 ? `, batched with ${t.batch - 1} other${t.batch > 2 ? "s" : ""}` : "") + ")" : "");
}

async function classify(blob, name, isLive = false) {
  if (blob.size > maxBytes) {
    showError(`That file is ${fmtMB(blob.size)}; this server accepts up to ${fmtMB(maxBytes)} (upright serve --max-upload-mb).`);
    return;
  }
  const mine = ++seq;
  const fd = new FormData();
  fd.append("file", blob, name || "upload");
  if (!isLive) $("timing").textContent = "classifying…";
  const t0 = performance.now();
  let res, body;
  try {
    res = await fetch(`/api/predict?top_k=${topK}`, { method: "POST", body: fd });
  } catch (e) {
    if (mine === seq) showError("The server did not answer (is `upright serve` still running?)");
    return;
  }
  try { body = await res.json(); } catch (e) { body = { error: `HTTP ${res.status}` }; }
  if (mine !== seq) return;  // a newer upload is on its way; drop this answer
  if (!res.ok) {
    const kind = { 413: "Too large", 415: "Not an image", 400: "Unreadable image" }[res.status] || `Error ${res.status}`;
    showError(`${kind}: ${body.error || res.statusText}`);
    if (!isLive) $("timing").textContent = "";
    return;
  }
  render(body, performance.now() - t0, isLive);
}

function takeFiles(files) {
  const file = files && files[0];
  if (!file) return;
  if (live) stopCamera();
  classify(file, file.name);
}

// ---- upload, drag and drop, paste

for (const id of ["file", "capture"]) {
  $(id).addEventListener("change", (ev) => { takeFiles(ev.target.files); ev.target.value = ""; });
}
const drop = $("drop");
let dragDepth = 0;
window.addEventListener("dragenter", (ev) => { ev.preventDefault(); dragDepth++; drop.classList.add("over"); });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; drop.classList.remove("over"); } });
window.addEventListener("dragover", (ev) => { ev.preventDefault(); ev.dataTransfer.dropEffect = "copy"; });
window.addEventListener("drop", (ev) => {
  ev.preventDefault();
  dragDepth = 0;
  drop.classList.remove("over");
  takeFiles(ev.dataTransfer && ev.dataTransfer.files);
});
drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("file").click(); } });
window.addEventListener("paste", (ev) => {
  const items = (ev.clipboardData && ev.clipboardData.items) || [];
  for (const item of items) {
    if (item.kind === "file") {
      const f = item.getAsFile();
      if (f) { ev.preventDefault(); if (live) stopCamera(); classify(f, f.name || "pasted image"); return; }
    }
  }
});

// ---- live camera: a steady rate, at most one request in flight

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("The live camera needs https or http://localhost (browsers block it elsewhere). " +
      "Use “Take photo” instead: on a phone it opens the camera.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
  } catch (e) {
    showError(`No camera: ${e.message || e.name}`);
    return;
  }
  clearError();
  const video = $("video");
  video.srcObject = stream;
  await video.play().catch(() => {});
  live = { stream, timer: null };
  $("result").hidden = false;
  $("view").hidden = true;
  video.hidden = false;
  $("view-caption").textContent = "Live camera (frames are sent upright; the browser already turned them)";
  $("stored-figure").hidden = true;
  $("camera-controls").hidden = false;
  $("interval").textContent = String(LIVE_INTERVAL_MS);
  $("camera-btn").textContent = "Stop camera";
  tick();
}

function stopCamera() {
  if (!live) return;
  clearTimeout(live.timer);
  for (const track of live.stream.getTracks()) track.stop();
  live = null;
  $("video").hidden = true;
  $("video").srcObject = null;
  $("view").hidden = !$("view").getAttribute("src");
  $("camera-controls").hidden = true;
  $("camera-btn").textContent = "Live camera";
}

async function tick() {
  if (!live) return;
  const session = live;
  const started = performance.now();
  const video = $("video");
  if (video.videoWidth > 0) {
    const scale = Math.min(1, FRAME_LONG_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const canvas = $("grab");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    if (blob && live === session) await classify(blob, "camera.jpg", true);  // waits: no pile-up
  }
  if (live !== session) return;
  const wait = Math.max(0, LIVE_INTERVAL_MS - (performance.now() - started));
  session.timer = setTimeout(tick, wait);
}

$("camera-btn").addEventListener("click", () => (live ? stopCamera() : startCamera()));
$("camera-stop").addEventListener("click", stopCamera);

loadModelInfo();
health();
setInterval(health, 15000);
