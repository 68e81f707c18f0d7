// Mouse, keyboard and button bindings. `actions` holds the page's operations (see app.js).

import { dragBox, fitCanvas, redraw } from "./draw.js";
import { $, DRAG_THRESHOLD_PX, setStatus, state } from "./state.js";

function installCanvasEvents(actions) {
  const canvas = $("#canvas");
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("mousedown", (ev) => {
    if (!state.ready || state.busy) {
      if (!state.ready) setStatus("Wait for the embedding to finish…");
      return;
    }
    ev.preventDefault();
    const negative = ev.button === 2 || ev.shiftKey || ev.altKey;
    state.drag = {
      start: actions.toImage(ev),
      current: actions.toImage(ev),
      screen: [ev.clientX, ev.clientY],
      negative,
      isBox: false,
    };
  });
  window.addEventListener("mousemove", (ev) => {
    if (!state.drag) return;
    state.drag.current = actions.toImage(ev);
    const dx = ev.clientX - state.drag.screen[0];
    const dy = ev.clientY - state.drag.screen[1];
    if (!state.drag.negative && Math.hypot(dx, dy) > DRAG_THRESHOLD_PX) state.drag.isBox = true;
    if (state.drag.isBox) redraw();
  });
  window.addEventListener("mouseup", (ev) => {
    if (!state.drag) return;
    state.drag.current = actions.toImage(ev);
    const { isBox, start, negative } = state.drag;
    const box = isBox ? dragBox() : null;
    state.drag = null;
    if (box) actions.setBox(box);
    else actions.addPoint(start, negative ? 0 : 1);
    redraw();
  });
}

function installKeys(actions) {
  document.addEventListener("keydown", (ev) => {
    const inInput = ev.target instanceof HTMLInputElement;
    if (inInput) {
      if (ev.key === "Enter" && ev.target.id === "text-prompt") {
        ev.preventDefault();
        actions.findText();
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        actions.acceptCurrent();
      } else if (ev.key === "Escape") {
        ev.target.blur();
      }
      return;
    }
    if (!$("#help").hidden && (ev.key === "Escape" || ev.key === "?" || ev.key === "h")) {
      $("#help").hidden = true;
      return;
    }
    const key = ev.key;
    let handled = true;
    if ((ev.ctrlKey || ev.metaKey) && key.toLowerCase() === "z") actions.undo();
    else if (ev.ctrlKey || ev.metaKey || ev.altKey) handled = false;
    else if (key === "Enter" || key === "a") actions.acceptCurrent();
    else if (key === "A") actions.resolveProposals(null, true);
    else if (key === "R") actions.resolveProposals(null, false);
    else if (key === "z" || key === "Backspace") actions.undo();
    else if (key === "Escape" || key === "c") actions.clearAll();
    else if (key === "1" || key === "2" || key === "3") actions.choose(Number(key) - 1);
    else if (key === "f") actions.prefill();
    else if (key === "n" || key === "ArrowRight") actions.stepImage(1);
    else if (key === "p" || key === "ArrowLeft") actions.stepImage(-1);
    else if ((key === "d" || key === "Delete") && state.selectedId !== null)
      actions.deleteMask(state.selectedId);
    else if (key === "e" && state.selectedId !== null) actions.startEdit(state.selectedId);
    else if (key === "?" || key === "h") $("#help").hidden = !$("#help").hidden;
    else handled = false;
    if (handled) ev.preventDefault();
  });
}

function installButtons(actions) {
  $("#undo").addEventListener("click", actions.undo);
  $("#clear").addEventListener("click", actions.clearAll);
  $("#accept").addEventListener("click", actions.acceptCurrent);
  $("#find").addEventListener("click", actions.findText);
  $("#prefill").addEventListener("click", actions.prefill);
  $("#accept-all").addEventListener("click", () => actions.resolveProposals(null, true));
  $("#reject-all").addEventListener("click", () => actions.resolveProposals(null, false));
  $("#help-button").addEventListener("click", () => ($("#help").hidden = false));
  $("#help-close").addEventListener("click", () => ($("#help").hidden = true));
  window.addEventListener("resize", () => {
    fitCanvas();
    redraw();
  });
}

/** Bind every input of the page to `actions`. */
export function installEvents(actions) {
  installCanvasEvents(actions);
  installKeys(actions);
  installButtons(actions);
}
