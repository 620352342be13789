// upright serve: the test page. Plain JS, no build step, no external resources.
// The images shown come from the API as untagged JPEG data URLs: `view` is already upright
// (what the model saw) and `stored_view` is the pixels as the file stores them, so the
// browser's own EXIF handling has nothing to apply to either.
"use strict";

const $ = (id) => document.getElementById(id);
const LIVE_MIN_GAP_MS = 200;    // camera: at most 5 frames/s, never more than one in flight
const FRAME_LONG_SIDE = 640;    // camera frames are scaled down before upload
const FPS_WINDOW = 8;           // the frame rate shown is over the last this many answers

let maxBytes = 25_000_000;
let topK = 5;
let modelCrop = true;           // the backbone classifies the centre square of the view
let seq = 0;                    // newer uploads win over slower older answers
let live = null;                // {stream, timer, answered: [ms]} while the camera runs
let turnTest = false;           // ask for the four turned views too (?turns=1)
let last = null;                // {blob, name}: the last photo, re-sent when the turn test is switched on

// One message: the file's name (when there is one) and one reason, never the old result beside it.
function showError(message, name) {
  const box = $("error");
  box.replaceChildren();
  if (name) {
    const file = document.createElement("strong");
    file.className = "error-file";
    file.textContent = name;
    box.append(file, " — ");
  }
  box.append(message.charAt(0).toUpperCase() + message.slice(1));
  box.hidden = false;
}
function clearError() { $("error").hidden = true; }

// A photo that could not be classified must not sit above the previous photo's answer, which
// would read as its own: the result goes until the next answer (the camera keeps its view).
function clearResult() {
  $("result").hidden = true;
  last = null;
}

function fmtMB(n) { return n >= 100_000 ? (n / 1e6).toFixed(1) + " MB" : n.toLocaleString() + " bytes"; }

const DENIED = "This server needs its access token: open the link (or scan the QR code) that " +
  "`upright serve --lan` printed. The token changes every time the server starts.";

async function loadModelInfo() {
  try {
    const res = await fetch("/api/model");
    if (res.status === 403) { $("model-info").textContent = "no access"; showError(DENIED); return; }
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
    $("health").textContent = h.status === "ok" ? "server ok"
      : h.status === "warming" ? "warming up the model…" : "server: " + (h.error || h.status);
    if (h.status === "warming") setTimeout(health, 1000);
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

function turnCaption(t) {
  const cap = document.createElement("figcaption");
  const deg = document.createElement("span");
  deg.className = "turn-deg";
  deg.textContent = t.degrees === 0 ? "as is" : `turned ${t.degrees}°`;
  const label = document.createElement("span");
  label.className = "turn-label";
  label.textContent = t.label;
  const score = document.createElement("span");
  score.className = "turn-score";
  score.textContent = (t.score * 100).toFixed(0) + "%";
  cap.append(deg, label, score);
  return cap;
}

function renderTurns(tt) {
  $("turn-test").hidden = !tt;
  if (!tt) return;
  const verdict = $("turn-verdict");
  verdict.textContent = tt.verdict.charAt(0).toUpperCase() + tt.verdict.slice(1) + ".";
  verdict.className = "verdict " + (tt.changes ? "changes" : "stable");
  const first = tt.turns[0].label;
  const grid = $("turns");
  grid.replaceChildren();
  for (const t of tt.turns) {
    const fig = document.createElement("figure");
    fig.className = "turn" + (t.label !== first ? " differs" : "");
    fig.dataset.degrees = String(t.degrees);
    const box = document.createElement("div");
    box.className = "turn-frame";
    const img = document.createElement("img");
    img.src = t.view;
    img.alt = `The picture ${t.degrees === 0 ? "as is" : "turned " + t.degrees + "° clockwise"}`;
    box.append(img);
    fig.append(box, turnCaption(t));
    grid.append(fig);
  }
}

function renderLiveFrame(body) {
  // The frame the model saw, as the server decoded it: upright in portrait and landscape alike.
  const [w, h] = body.view_size;
  $("live-figure").hidden = false;
  $("live-view").src = body.view;
  $("live-caption").textContent =
    `The last frame the model saw: ${w}×${h}, ${w > h ? "landscape" : w < h ? "portrait" : "square"}, upright`;
}

function noteAnswer(session) {
  const now = performance.now();
  session.answered.push(now);
  if (session.answered.length > FPS_WINDOW) session.answered.shift();
  const n = session.answered.length;
  if (n >= 2) {
    const fps = (n - 1) * 1000 / (now - session.answered[0]);
    $("fps").textContent = `${fps.toFixed(1)} frames/s`;
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
  renderTurns(turnTest ? body.turn_test : null);  // switched off while the answer was on its way
  if (isLive) renderLiveFrame(body);
  const t = body.timings || {};
  $("timing").textContent =
    `${Math.round(roundTripMs)} ms round trip · server ${Math.round(body.ms)} ms` +
    (t.decode_ms !== undefined ? ` (decode ${Math.round(t.decode_ms)} ms, model ${Math.round(t.model_ms)} ms` +
      (t.batch > 1 ? `, ${t.batch} pictures in one model call` : "") + ")" : "");
}

async function classify(blob, name, isLive = false) {
  if (blob.size > maxBytes) {
    showError(`too large (${fmtMB(blob.size)}): this server accepts up to ${fmtMB(maxBytes)} (upright serve --max-upload-mb).`,
      name || "this file");
    if (!isLive) clearResult();
    return;
  }
  const mine = ++seq;
  const fd = new FormData();
  fd.append("file", blob, name || "upload");
  if (!isLive) { $("timing").textContent = "classifying…"; last = { blob, name }; }
  const t0 = performance.now();
  let res, body;
  try {
    res = await fetch(`/api/predict?top_k=${topK}` + (turnTest ? "&turns=1" : ""), { method: "POST", body: fd });
  } catch (e) {
    if (mine === seq) showError("The server did not answer (is `upright serve` still running?)");
    return;
  }
  try { body = await res.json(); } catch (e) { body = { error: `HTTP ${res.status}` }; }
  if (mine !== seq) return;  // a newer upload is on its way; drop this answer
  if (!res.ok) {
    if (res.status === 403) { showError(DENIED); if (live) stopCamera(); return; }
    // The server's reason already says what kind of failure it is ("not an image: the file holds text").
    const kind = { 413: "too large", 415: "not an image", 400: "unreadable image" }[res.status] || `error ${res.status}`;
    showError(body.error || kind, isLive ? "camera frame" : (name || "pasted or dropped image"));
    if (!isLive) clearResult();
    return;
  }
  render(body, performance.now() - t0, isLive);
  return true;
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
    // No width/height: a phone then gives frames the way it is held (portrait or landscape),
    // and the browser turns them as the screen turns, so every frame drawn below is upright.
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" } },
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
  live = { stream, timer: null, answered: [] };
  $("result").hidden = false;
  $("view").hidden = true;
  video.hidden = false;
  $("view-caption").textContent = "Live camera (frames are sent upright, the way the phone is held)";
  $("stored-figure").hidden = true;
  $("plain-note").hidden = true;
  $("camera-controls").hidden = false;
  $("camera-stop").hidden = false;
  $("fps").textContent = "measuring…";
  $("camera-btn").textContent = "Stop camera";
  $("result").scrollIntoView({ block: "start", behavior: "smooth" });  // on a phone: the camera fills the screen
  tick();
}

function stopCamera() {
  if (!live) return;
  seq++;  // an answer still on its way belongs to the stopped camera: drop it
  clearTimeout(live.timer);
  for (const track of live.stream.getTracks()) track.stop();
  live = null;
  $("video").hidden = true;
  $("video").srcObject = null;
  $("view").hidden = !$("view").getAttribute("src");
  $("camera-controls").hidden = true;
  $("camera-stop").hidden = true;
  $("live-figure").hidden = true;
  $("camera-btn").textContent = "Live camera";
}

async function tick() {
  if (!live) return;
  const session = live;
  const started = performance.now();
  const video = $("video");
  // videoWidth/videoHeight are read every frame: they swap when the phone turns.
  if (video.videoWidth > 0 && document.visibilityState === "visible") {
    const scale = Math.min(1, FRAME_LONG_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const canvas = $("grab");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    if (blob && live === session) {
      const ok = await classify(blob, "camera.jpg", true);  // waits: no pile-up
      if (ok && live === session) noteAnswer(session);
    }
  }
  if (live !== session) return;
  const wait = Math.max(0, LIVE_MIN_GAP_MS - (performance.now() - started));
  session.timer = setTimeout(tick, wait);
}

$("camera-btn").addEventListener("click", () => (live ? stopCamera() : startCamera()));
$("camera-stop").addEventListener("click", stopCamera);

// ---- turn test: the same picture turned 90/180/270, in the same model call

$("turn-btn").addEventListener("click", () => {
  turnTest = !turnTest;
  $("turn-btn").setAttribute("aria-pressed", String(turnTest));
  $("turn-btn").textContent = turnTest ? "Turn test: on" : "Turn test";
  if (!turnTest) { renderTurns(null); return; }
  if (!live && last) classify(last.blob, last.name);  // the camera's next frame carries it anyway
});

loadModelInfo();
health();
setInterval(health, 15000);
