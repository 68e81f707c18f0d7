// Shared state of the annotation page and the status line helpers.

export const $ = (sel) => document.querySelector(sel);
export const CURRENT_RGB = [63, 184, 255];
export const DRAG_THRESHOLD_PX = 5; // screen pixels a press must move to become a box

export const state = {
  images: [],
  imageId: null,
  image: null, // {id, file_name, width, height, ...}
  imgEl: null,
  ready: false, // embedding available: prompts can be decoded
  points: [], // [[x, y], ...]
  labels: [], // 1 foreground, 0 background
  box: null, // [x0, y0, x1, y1]
  text: null, // the phrase of a text prompt (kept with later clicks), or null
  textPrompts: false, // the model has a text path
  history: [], // undo stack: {kind: "point"} | {kind: "box", previous}
  candidates: [], // [{segmentation, score, area, bbox, decoded, render}]
  chosen: 0,
  previousId: null, // prediction_id of the answer on screen (its logits can be fed back)
  accepted: [], // mask rows + {decoded, renders}
  proposals: [],
  stale: [], // accepted masks of an earlier version of the file (kept apart, not exported)
  editingId: null,
  selectedId: null,
  hoverId: null,
  drag: null, // {start: [x, y], screen: [x, y], current: [x, y], button, negative}
  predictSeq: 0,
  openSeq: 0,
  busy: false,
};

// ---------------------------------------------------------------------------------------------
// Status and busy state

export function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

export function setBusy(text) {
  state.busy = Boolean(text);
  $("#busy").hidden = !text;
  $("#busy-text").textContent = text || "";
  for (const id of ["#prefill", "#accept", "#accept-all", "#reject-all"]) $(id).disabled = state.busy;
}

export function showError(err) {
  setStatus(`Error: ${err.message || err}`, true);
}
