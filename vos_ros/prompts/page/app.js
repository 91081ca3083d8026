// The prompt page: show the tracker's input, draw a box / clicks / paint a mask on a frozen frame,
// preview the mask, send it stamped with that frame; list, remove and reset targets.
"use strict";

const $ = (id) => document.getElementById(id);
const frameCanvas = $("frame"), overlay = $("overlay");
const maskCanvas = document.createElement("canvas");  // the mask being edited: opaque white = object
const state = { live: true, stamp: null, width: 0, height: 0, box: null, drag: null,
                positives: [], negatives: [], painting: false, hasMask: false };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.error || response.statusText);
  return payload;
}

// ------------------------------------------------------------------ frames
async function pollFrame() {
  if (state.live) {
    try {
      const response = await fetch("/api/frame");
      if (response.ok) {
        const bitmap = await createImageBitmap(await response.blob());
        showFrame(bitmap, response.headers.get("X-Frame-Stamp"));
      } else {
        setStatus((await response.json()).error, true);
      }
    } catch (e) { setStatus("no connection to the prompt node", true); }
  }
  setTimeout(pollFrame, 200);
}

function showFrame(bitmap, stamp) {
  if (bitmap.width !== state.width || bitmap.height !== state.height) {
    for (const c of [frameCanvas, overlay, maskCanvas]) { c.width = bitmap.width; c.height = bitmap.height; }
    state.width = bitmap.width; state.height = bitmap.height;
    clearPrompt();
  }
  frameCanvas.getContext("2d").drawImage(bitmap, 0, 0);
  state.stamp = stamp;
  frameCanvas.dataset.stamp = stamp;
  $("stampinfo").textContent = `${state.live ? "live" : "frozen"} frame ${stamp}`;
  if (state.live && $("status").className !== "error") setStatus("live: draw on the image to freeze it");
  if ($("status").className === "error" && state.live) setStatus("live");
}

function setLive(live) {
  state.live = live;
  $("live").textContent = live ? "Freeze" : "Live";
  document.body.dataset.live = live;
  $("stampinfo").textContent = `${live ? "live" : "frozen"} frame ${state.stamp}`;
}

// ------------------------------------------------------------------ drawing
function imagePoint(event) {
  const r = overlay.getBoundingClientRect();
  return [(event.clientX - r.left) * overlay.width / r.width, (event.clientY - r.top) * overlay.height / r.height];
}

function tool() { return document.querySelector("input[name=tool]:checked").value; }

function paintAt([x, y]) {
  const g = maskCanvas.getContext("2d");
  g.globalCompositeOperation = tool() === "paint" ? "source-over" : "destination-out";
  g.fillStyle = "#fff";
  g.beginPath();
  g.arc(x, y, Number($("brush").value), 0, 2 * Math.PI);
  g.fill();
  g.globalCompositeOperation = "source-over";
  markMask(true);
}

overlay.addEventListener("pointerdown", (event) => {
  if (state.stamp === null) return;
  setLive(false);
  overlay.setPointerCapture(event.pointerId);
  const p = imagePoint(event), t = tool();
  if (t === "box") state.drag = p;
  else if (t === "positive" || t === "negative") {
    (t === "positive" ? state.positives : state.negatives).push(p);
    segment();
  } else { state.painting = true; paintAt(p); }
  render();
});

overlay.addEventListener("pointermove", (event) => {
  const p = imagePoint(event);
  if (state.drag) { state.box = [...state.drag, ...p]; render(); }
  else if (state.painting) { paintAt(p); render(); }
});

overlay.addEventListener("pointerup", (event) => {
  if (state.drag) {
    const p = imagePoint(event);
    state.box = [...state.drag, ...p];
    state.drag = null;
    if (Math.abs(state.box[2] - state.box[0]) < 3 || Math.abs(state.box[3] - state.box[1]) < 3) state.box = null;
    else segment();
  }
  state.painting = false;
  render();
});

function render() {
  const g = overlay.getContext("2d");
  g.clearRect(0, 0, overlay.width, overlay.height);
  g.globalAlpha = 0.5;
  g.drawImage(tinted(), 0, 0);
  g.globalAlpha = 1;
  if (state.box) {
    g.strokeStyle = "#ffd700"; g.lineWidth = 2;
    const [x1, y1, x2, y2] = state.box;
    g.strokeRect(Math.min(x1, x2), Math.min(y1, y2), Math.abs(x2 - x1), Math.abs(y2 - y1));
  }
  for (const [points, colour] of [[state.positives, "#3f3"], [state.negatives, "#f33"]]) {
    g.fillStyle = colour;
    for (const [x, y] of points) { g.beginPath(); g.arc(x, y, 5, 0, 2 * Math.PI); g.fill(); }
  }
}

function tinted() {  // the mask in the overlay colour
  const c = document.createElement("canvas");
  c.width = maskCanvas.width; c.height = maskCanvas.height;
  const g = c.getContext("2d");
  g.drawImage(maskCanvas, 0, 0);
  g.globalCompositeOperation = "source-in";
  g.fillStyle = "#1e90ff";
  g.fillRect(0, 0, c.width, c.height);
  return c;
}

function markMask(hasMask) {
  state.hasMask = hasMask;
  $("send").disabled = !hasMask;
  document.body.dataset.mask = hasMask ? "ready" : "none";
}

function clearPrompt() {
  state.box = null; state.positives = []; state.negatives = [];
  maskCanvas.getContext("2d").clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  markMask(false);
  render();
}

// ------------------------------------------------------------------ requests
async function segment() {
  if (!state.box && !state.positives.length) return;
  setStatus("segmenting...");
  document.body.dataset.mask = "pending";
  try {
    const reply = await api("/api/segment", { stamp: state.stamp, box: state.box,
                                             positives: state.positives, negatives: state.negatives });
    const image = new Image();
    image.src = "data:image/png;base64," + reply.mask;
    await image.decode();
    const g = maskCanvas.getContext("2d");
    g.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    g.drawImage(image, 0, 0);
    const pixels = g.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
    for (let i = 0; i < pixels.data.length; i += 4) pixels.data[i + 3] = pixels.data[i];  // grey -> alpha
    g.putImageData(pixels, 0, 0);
    markMask(true);
    setStatus(`mask of ${reply.area} pixels: edit it, name it, send it`);
  } catch (e) { markMask(state.hasMask); setStatus(e.message, true); }
  render();
}

function maskPng() {  // opaque black and white, as the server reads it
  const c = document.createElement("canvas");
  c.width = maskCanvas.width; c.height = maskCanvas.height;
  const g = c.getContext("2d");
  g.fillStyle = "#000"; g.fillRect(0, 0, c.width, c.height);
  g.drawImage(maskCanvas, 0, 0);
  return c.toDataURL("image/png").split(",")[1];
}

$("send").addEventListener("click", async () => {
  try {
    const reply = await api("/api/send", { stamp: state.stamp, mask: maskPng(), name: $("name").value,
                                           id: $("target-id").value });
    setStatus(reply.message, !reply.success);
    document.body.dataset.sent = reply.success ? "ok" : "failed";
    if (reply.success) { clearPrompt(); $("name").value = ""; $("target-id").value = ""; setLive(true); }
  } catch (e) { setStatus(e.message, true); document.body.dataset.sent = "failed"; }
});

$("clear").addEventListener("click", clearPrompt);
$("live").addEventListener("click", () => setLive(!state.live));
$("reset").addEventListener("click", async () => {
  try { setStatus((await api("/api/reset", {})).message); } catch (e) { setStatus(e.message, true); }
});

// ------------------------------------------------------------------ targets
async function pollTargets() {
  try {
    const { targets } = await api("/api/targets");
    const body = $("targets").tBodies[0];
    body.replaceChildren(...targets.map((t) => {
      const row = document.createElement("tr");
      row.dataset.id = t.id;
      for (const v of [t.id, t.name, t.status, t.score.toFixed(2)]) {
        const cell = document.createElement("td"); cell.textContent = v; row.append(cell);
      }
      const remove = document.createElement("button");
      remove.textContent = "remove";
      remove.addEventListener("click", async () => {
        try { setStatus((await api("/api/remove", { ids: [t.id] })).message); } catch (e) { setStatus(e.message, true); }
      });
      const cell = document.createElement("td"); cell.append(remove); row.append(cell);
      return row;
    }));
  } catch (e) { /* the frame poll reports a lost connection */ }
  setTimeout(pollTargets, 1000);
}

markMask(false);
setLive(true);
pollFrame();
pollTargets();
