// The annotation page: pick an image, click points / drag boxes, see SAM's mask at once, accept it.
// All image coordinates are (x, y) pixels of the original image; the canvas has the image's size
// and is scaled by CSS, so event positions are converted with the canvas' on-screen rectangle.

import { api, idempotencyKey } from "./api.js";
import { fitCanvas, redraw } from "./draw.js";
import { installEvents } from "./input.js";
import { renderFolderNotices, renderImageList as drawImages, renderMaskLists as drawMasks } from "./lists.js";
import { decodeRle } from "./rle.js";
import { $, setBusy, setStatus, showError, state } from "./state.js";

// What the lists can do (lists.js draws them, app.js owns the operations).
const listActions = {
  openImage: (id) => openImage(id),
  startEdit: (id) => startEdit(id),
  deleteMask: (id) => deleteMask(id),
  resolveProposals: (ids, accept) => resolveProposals(ids, accept),
  select(id) {
    state.selectedId = state.selectedId === id ? null : id;
    renderMaskLists();
    redraw();
  },
  hover(id) {
    state.hoverId = id;
    redraw();
  },
};
const renderImageList = () => drawImages(listActions);
const renderMaskLists = () => drawMasks(listActions);

// The server answers "image_changed" when the file was replaced on disk after the page loaded
// it: reload the list and the image, so the page shows the new pixels and the old masks apart.
async function reportError(err) {
  if (err && err.code === "image_changed" && state.imageId !== null) {
    const id = state.imageId;
    await loadImages();
    if (state.images.some((im) => im.id === id)) await openImage(id);
    setStatus(
      "This image changed on disk and was reloaded; masks drawn on the old file are listed " +
        "apart and not exported.",
      true,
    );
    return;
  }
  showError(err);
}

// ---------------------------------------------------------------------------------------------
// Images

async function loadImages() {
  const data = await api.images();
  state.images = data.images;
  renderImageList();
  renderFolderNotices(data.skipped || []);
}

function loadImageElement(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

async function openImage(id) {
  const seq = ++state.openSeq;
  const info = state.images.find((im) => im.id === id);
  if (!info) return;
  resetPrompts();
  state.editingId = null;
  state.selectedId = null;
  state.imageId = id;
  state.image = info;
  state.ready = false;
  history.replaceState(null, "", `#image=${id}`);
  renderImageList();
  const canvas = $("#canvas");
  canvas.dataset.state = "loading";
  setStatus(`Opening ${info.file_name}…`);
  try {
    const [imgEl] = await Promise.all([loadImageElement(api.imageUrl(id, info.sha256)), loadMasks()]);
    if (seq !== state.openSeq) return;
    state.imgEl = imgEl;
    canvas.width = info.width;
    canvas.height = info.height;
    canvas.classList.add("shown");
    $("#placeholder").hidden = true;
    fitCanvas();
    redraw();
    const emb = await api.embeddingState(id);
    if (seq !== state.openSeq) return;
    if (emb.state !== "memory" && emb.state !== "disk") {
      canvas.dataset.state = "embedding";
      const t0 = performance.now();
      const tick = setInterval(() => {
        const s = ((performance.now() - t0) / 1000).toFixed(0);
        setBusy(`Computing the image embedding (once per image)… ${s} s`);
      }, 500);
      setBusy("Computing the image embedding (once per image)…");
      try {
        const res = await api.computeEmbedding(id);
        if (seq !== state.openSeq) return;
        setStatus(`Embedding ready (${res.source}, ${res.seconds.toFixed(2)} s). Click to segment.`);
      } finally {
        clearInterval(tick);
        if (seq === state.openSeq) setBusy(null);
      }
    } else {
      setStatus(`Embedding cached (${emb.state}). Click to segment.`);
    }
    state.ready = true;
    canvas.dataset.state = "ready";
  } catch (err) {
    if (seq === state.openSeq) {
      canvas.dataset.state = "error";
      if (err.code === "image_changed") reportError(err);
      else showError(err);
    }
  }
}

function stepImage(delta) {
  if (!state.images.length) return;
  const idx = state.images.findIndex((im) => im.id === state.imageId);
  const next = idx < 0 ? 0 : (idx + delta + state.images.length) % state.images.length;
  openImage(state.images[next].id);
}

// ---------------------------------------------------------------------------------------------
// Masks of the open image

async function loadMasks() {
  const id = state.imageId;
  const data = await api.masks(id);
  if (id !== state.imageId) return;
  state.accepted = data.accepted.map((m) => ({ ...m, decoded: decodeRle(m.segmentation) }));
  state.proposals = data.proposals.map((m) => ({ ...m, decoded: decodeRle(m.segmentation) }));
  state.stale = data.stale || [];
  const info = state.images.find((im) => im.id === id);
  if (info) {
    info.num_accepted = state.accepted.length;
    info.num_proposals = state.proposals.length;
    info.num_stale = state.stale.length;
  }
  renderImageList();
  renderMaskLists();
  redraw();
}

// ---------------------------------------------------------------------------------------------
// Prompts and prediction

function resetPrompts() {
  state.points = [];
  state.labels = [];
  state.box = null;
  state.text = null;
  state.history = [];
  state.candidates = [];
  state.chosen = 0;
  state.previousId = null;
  state.predictSeq += 1; // drop answers to earlier prompts
  renderCandidates();
}

function toImage(ev) {
  const canvas = $("#canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((ev.clientY - rect.top) * canvas.height) / rect.height;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}


function hasPrompt() {
  return state.points.length > 0 || state.box !== null || state.text !== null;
}

// feedBack: a click was added, so the chosen candidate's low-res logits of the last answer go
// back to the model as the mask prompt (SAM's interactive loop). Undo and box changes start over.
async function predict(feedBack = false) {
  const t0 = performance.now(); // click-to-mask: from the prompt change to the mask drawn
  const seq = ++state.predictSeq;
  if (!hasPrompt()) {
    state.candidates = [];
    state.previousId = null;
    renderCandidates();
    redraw();
    return;
  }
  const body = { points: state.points, labels: state.labels, box: state.box };
  if (state.text !== null) body.text = state.text;
  if (feedBack && state.previousId && state.candidates.length) {
    body.previous = { prediction_id: state.previousId, candidate: state.chosen };
  }
  try {
    let res;
    try {
      res = await api.predict(state.imageId, body);
    } catch (err) {
      if (!body.previous || err.code !== "prediction_expired") throw err;
      delete body.previous; // the server no longer holds it: decode the clicks alone
      res = await api.predict(state.imageId, body);
    }
    if (seq !== state.predictSeq) return; // a newer prompt is on its way
    state.previousId = res.prediction_id;
    state.candidates = res.candidates.map((c) => ({ ...c, decoded: decodeRle(c.segmentation) }));
    state.chosen = res.best;
    $("#canvas").dataset.usedPrevious = String(Boolean(res.used_previous));
    renderCandidates();
    redraw();
    const total = performance.now() - t0;
    $("#latency").textContent =
      `decode ${res.timing.decode_ms.toFixed(0)} ms · ` +
      `round trip ${res._roundTripMs.toFixed(0)} ms · click-to-mask ${total.toFixed(0)} ms`;
    const canvas = $("#canvas");
    canvas.dataset.roundTripMs = res._roundTripMs.toFixed(2);
    canvas.dataset.clickToMaskMs = total.toFixed(2);
    canvas.dataset.decodeMs = res.timing.decode_ms.toFixed(2);
    canvas.dataset.predictions = String(Number(canvas.dataset.predictions || 0) + 1);
    setStatus(
      state.candidates.length > 1
        ? "Ambiguous prompt: pick a candidate (1/2/3), add points, or accept (Enter)."
        : "Add points to refine, or accept (Enter).",
    );
  } catch (err) {
    if (seq === state.predictSeq) reportError(err);
  }
}

function renderCandidates() {
  const bar = $("#candidates");
  bar.replaceChildren();
  if (!state.candidates.length) {
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = state.editingId
      ? `Editing mask #${state.editingId}: change its prompts, then Accept.`
      : "Left click: object · Right/Shift click: background · Drag: box";
    bar.append(hint);
    return;
  }
  state.candidates.forEach((c, i) => {
    const b = document.createElement("button");
    b.className = "candidate";
    b.classList.toggle("active", i === state.chosen);
    b.textContent = `${i + 1} · score ${c.score.toFixed(2)} · ${c.area} px`;
    b.addEventListener("click", () => choose(i));
    bar.append(b);
  });
}

function choose(i) {
  if (i < state.candidates.length) {
    state.chosen = i;
    renderCandidates();
    redraw();
  }
}

// A phrase (text prompt) starts a new prompt: the model proposes a mask for it, and later clicks
// and boxes refine that proposal with the phrase kept.
function findText() {
  const phrase = $("#text-prompt").value.trim();
  if (!state.ready) {
    setStatus("Wait for the embedding to finish…");
    return;
  }
  resetPrompts();
  if (!phrase) {
    setStatus("Type a phrase to find, e.g. the yellow star.");
    redraw();
    return;
  }
  state.text = phrase;
  if (!$("#label").value) $("#label").value = phrase;
  $("#text-prompt").blur(); // keys go to the page again: 1/2/3 choose, Enter accepts
  predict();
}

function addPoint(xy, label) {
  state.points.push(xy.map((v) => Math.round(v * 10) / 10));
  state.labels.push(label);
  state.history.push({ kind: "point" });
  predict(true);
}

function setBox(box) {
  state.history.push({ kind: "box", previous: state.box });
  state.box = box.map((v) => Math.round(v * 10) / 10);
  predict();
}

function undo() {
  const last = state.history.pop();
  if (!last) return;
  if (last.kind === "point") {
    state.points.pop();
    state.labels.pop();
  } else {
    state.box = last.previous;
  }
  predict();
}

function clearAll() {
  const wasEditing = state.editingId !== null;
  resetPrompts();
  state.editingId = null;
  $("#label").value = "";
  $("#text-prompt").value = "";
  if (wasEditing) renderMaskLists();
  setStatus("Cleared.");
  redraw();
}

// ---------------------------------------------------------------------------------------------
// Accept, edit, delete, proposals

async function acceptCurrent() {
  const cand = state.candidates[state.chosen];
  if (!cand || state.busy) {
    setStatus("Nothing to accept yet: click on the object first.", !cand);
    return;
  }
  const label = $("#label").value.trim() || null;
  const body = {
    segmentation: cand.segmentation,
    predicted_iou: cand.score,
    prompts: {
      points: state.points,
      labels: state.labels,
      box: state.box,
      ...(state.text !== null ? { text: state.text } : {}),
    },
    label,
    image_sha256: state.image.sha256, // refused if the file changed since it was opened
  };
  try {
    let saved;
    if (state.editingId !== null) {
      saved = await api.update(state.editingId, body);
    } else {
      // One key per candidate: a retry, or Enter pressed twice, stores the mask once.
      cand.acceptKey = cand.acceptKey || idempotencyKey();
      saved = await api.accept(state.imageId, body, cand.acceptKey);
    }
    state.editingId = null;
    resetPrompts();
    // Shortcuts work again after accepting from the label field; the label stays for the next.
    if (document.activeElement === $("#label")) $("#label").blur();
    await loadMasks();
    setStatus(`Saved mask #${saved.id}${label ? ` (${label})` : ""}.`);
  } catch (err) {
    reportError(err);
  }
}

function startEdit(id) {
  const m = state.accepted.find((a) => a.id === id);
  if (!m) return;
  resetPrompts();
  state.editingId = id;
  state.selectedId = id;
  const p = m.prompts || {};
  state.points = (p.points || []).map((xy) => [...xy]);
  state.labels = [...(p.labels || [])];
  state.box = p.box || null;
  state.text = p.text || null;
  $("#text-prompt").value = p.text || "";
  state.history = [
    ...(state.box ? [{ kind: "box", previous: null }] : []),
    ...state.points.map(() => ({ kind: "point" })),
  ];
  state.candidates = [{ ...m, score: m.predicted_iou ?? 1, renders: {} }];
  state.chosen = 0;
  $("#label").value = m.label || "";
  renderMaskLists();
  renderCandidates();
  setStatus(`Editing mask #${id}: add or undo points, then Accept (Enter); Esc cancels.`);
  redraw();
}

async function deleteMask(id) {
  try {
    await api.remove(id);
    if (state.editingId === id) clearAll();
    if (state.selectedId === id) state.selectedId = null;
    await loadMasks();
    setStatus(`Deleted mask #${id}.`);
  } catch (err) {
    showError(err);
  }
}

async function prefill() {
  if (!state.ready || state.busy) return;
  const id = state.imageId;
  setBusy("Pre-fill: running the automatic mask generator…");
  try {
    const res = await api.prefill(id);
    setStatus(
      `Pre-fill proposed ${res.proposals.length} masks in ${res.seconds.toFixed(1)} s: ` +
        "accept or reject them, then click to add what is missing.",
    );
  } catch (err) {
    showError(err);
  } finally {
    setBusy(null);
  }
  if (id === state.imageId) await loadMasks();
}

async function resolveProposals(ids, accept) {
  if (!state.imageId || state.busy) return;
  try {
    const fn = accept ? api.acceptProposals : api.rejectProposals;
    const res = await fn(state.imageId, ids);
    const n = (accept ? res.accepted : res.rejected).length;
    state.hoverId = null;
    await loadMasks();
    setStatus(`${accept ? "Accepted" : "Rejected"} ${n} proposal${n === 1 ? "" : "s"}.`);
  } catch (err) {
    showError(err);
  }
}

async function main() {
  installEvents({
    addPoint,
    setBox,
    undo,
    clearAll,
    findText,
    acceptCurrent,
    resolveProposals,
    choose,
    prefill,
    stepImage,
    deleteMask,
    startEdit,
    toImage,
  });
  renderCandidates();
  try {
    const info = await api.info();
    $("#project-info").textContent =
      `${info.image_dir} · model ${info.model.name} (${info.model.fingerprint})` +
      (info.author ? ` · ${info.author}` : "");
    state.textPrompts = Boolean(info.model.text_prompts);
    $("#text-tools").hidden = !state.textPrompts;
    await loadImages();
    const match = /image=(\d+)/.exec(location.hash);
    const wanted = match ? Number(match[1]) : null;
    const first = state.images.find((im) => im.id === wanted) || state.images[0];
    if (first) await openImage(first.id);
    else setStatus("No images in this folder.");
  } catch (err) {
    showError(err);
  }
}

window.anyseg = { state, openImage, redraw };
main();
