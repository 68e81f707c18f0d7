// Drawing the canvas: the image, proposals (dashed), accepted masks (outlined, one colour each),
// the current candidate and the prompts. The canvas has the image's pixel size; CSS scales it.

import { colourFor, renderMask } from "./rle.js";
import { $, CURRENT_RGB, state } from "./state.js";

/** Scale the canvas (CSS size) to fit the stage, keeping the image's aspect ratio. */
export function fitCanvas() {
  const canvas = $("#canvas");
  const stage = $("#stage");
  if (!state.image) return;
  const pad = 16;
  const scale = Math.min(
    (stage.clientWidth - pad) / state.image.width,
    (stage.clientHeight - pad) / state.image.height,
  );
  canvas.style.width = `${Math.max(1, Math.floor(state.image.width * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.floor(state.image.height * scale))}px`;
}

export function outlineThickness() {
  const canvas = $("#canvas");
  const shown = canvas.getBoundingClientRect().width || canvas.width;
  return Math.max(1, Math.round((1.6 * canvas.width) / shown));
}

function maskRender(m, rgb, opts) {
  const key = `${opts.thickness}:${opts.fillAlpha}:${opts.dashed ? 1 : 0}`;
  m.renders = m.renders || {};
  if (!(key in m.renders)) m.renders[key] = renderMask(m.decoded, rgb, opts);
  return m.renders[key];
}

function drawRender(ctx, r) {
  if (r) ctx.drawImage(r.canvas, r.x, r.y);
}

export function redraw() {
  const canvas = $("#canvas");
  const ctx = canvas.getContext("2d");
  if (!state.imgEl) return;
  ctx.drawImage(state.imgEl, 0, 0, canvas.width, canvas.height);
  const t = outlineThickness();
  for (const m of state.proposals) {
    const hover = m.id === state.hoverId;
    const opts = { thickness: t, fillAlpha: hover ? 0.45 : 0.12, dashed: !hover };
    drawRender(ctx, maskRender(m, colourFor(m.id), opts));
  }
  for (const m of state.accepted) {
    if (m.id === state.editingId) continue;
    const selected = m.id === state.selectedId;
    const opts = { thickness: selected ? 2 * t : t, fillAlpha: selected ? 0.4 : 0.18 };
    drawRender(ctx, maskRender(m, colourFor(m.id), opts));
  }
  const cand = state.candidates[state.chosen];
  if (cand) {
    drawRender(ctx, maskRender(cand, CURRENT_RGB, { thickness: t, fillAlpha: 0.45 }));
  }
  drawPrompts(ctx, t);
}

function drawPrompts(ctx, t) {
  const r = 4 * t;
  ctx.lineWidth = t;
  const box = state.drag && state.drag.isBox ? dragBox() : state.box;
  if (box) {
    ctx.setLineDash([4 * t, 3 * t]);
    ctx.strokeStyle = "#ffd84a";
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.setLineDash([]);
  }
  state.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = state.labels[i] === 1 ? "#37c978" : "#ff5d5d";
    ctx.fill();
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
  });
}

/** The box being dragged, XYXY in image pixels. */
export function dragBox() {
  const [ax, ay] = state.drag.start;
  const [bx, by] = state.drag.current;
  return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)];
}
