// The page's lists: images (with their counts and a mark for changed files), accepted masks,
// proposals, masks of earlier versions of the file, and the folder's notices (files skipped).
// `actions` are the page's operations (see app.js); nothing here talks to the server.

import { colourFor, rgbCss } from "./rle.js";
import { $, state } from "./state.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, className, title, onClick) {
  const b = el("button", className, text);
  if (title) b.title = title;
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();
    onClick();
  });
  return b;
}

export function renderImageList(actions) {
  const list = $("#image-list");
  list.replaceChildren();
  for (const img of state.images) {
    const li = el("li");
    li.dataset.id = img.id;
    li.classList.toggle("active", img.id === state.imageId);
    const name = el("span", "name", img.file_name);
    name.title = `${img.file_name} (${img.width}×${img.height})`;
    const badges = el("span");
    const ok = el("span", "badge ok count", `${img.num_accepted}`);
    ok.title = "accepted masks";
    badges.append(ok);
    if (img.num_proposals) {
      const pr = el("span", "badge prop", `${img.num_proposals}?`);
      pr.title = "proposals waiting for review";
      badges.append(" ", pr);
    }
    if (img.num_stale) {
      const st = el("span", "badge stale", "changed");
      st.title = `the file changed after ${img.num_stale} masks were drawn on it: they are kept apart`;
      badges.append(" ", st);
    }
    li.append(name, badges);
    li.addEventListener("click", () => actions.openImage(img.id));
    list.append(li);
  }
  $("#image-count").textContent = `(${state.images.length})`;
}

/** Files the server left out of the folder's listing, and why. */
export function renderFolderNotices(skipped) {
  const box = $("#folder-notices");
  box.replaceChildren();
  box.hidden = !skipped.length;
  if (!skipped.length) return;
  const head = el("div", "notice", `${skipped.length} file${skipped.length === 1 ? "" : "s"} skipped`);
  head.title = skipped.map((s) => `${s.name}: ${s.reason}`).join("\n");
  const list = el("ul", "skipped");
  for (const s of skipped) list.append(el("li", "", `${s.name}: ${s.reason}`));
  box.append(head, list);
}

function describe(m) {
  const label = m.label ? m.label : "(no label)";
  return `#${m.id} ${label} · ${m.area} px`;
}

function who(m) {
  const edited = m.edited_by ? `, edited by ${m.edited_by}` : "";
  return `by ${m.author || "?"}${edited} at ${m.updated_at}`;
}

function swatch(m) {
  const sw = el("span", "swatch");
  sw.style.background = rgbCss(colourFor(m.id));
  return sw;
}

export function renderMaskLists(actions) {
  const list = $("#accepted-list");
  list.replaceChildren();
  for (const m of state.accepted) {
    const li = el("li");
    li.dataset.id = m.id;
    li.classList.toggle("selected", m.id === state.selectedId);
    li.classList.toggle("editing", m.id === state.editingId);
    const text = el("span", "text", describe(m));
    text.title = `${describe(m)}\n${who(m)}`;
    li.append(
      swatch(m),
      text,
      button("Edit", "edit", "Edit (E)", () => actions.startEdit(m.id)),
      button("✕", "delete", "Delete (D)", () => actions.deleteMask(m.id)),
    );
    li.addEventListener("click", () => actions.select(m.id));
    list.append(li);
  }
  $("#accepted-count").textContent = `(${state.accepted.length})`;

  const plist = $("#proposal-list");
  plist.replaceChildren();
  $("#proposals-section").hidden = state.proposals.length === 0;
  for (const m of state.proposals) {
    const li = el("li");
    li.dataset.id = m.id;
    const score = m.predicted_iou == null ? "" : ` · iou ${m.predicted_iou.toFixed(2)}`;
    li.append(
      swatch(m),
      el("span", "text", `#${m.id} · ${m.area} px${score}`),
      button("✓", "", "Accept this proposal", () => actions.resolveProposals([m.id], true)),
      button("✕", "", "Reject this proposal", () => actions.resolveProposals([m.id], false)),
    );
    li.addEventListener("mouseenter", () => actions.hover(m.id));
    li.addEventListener("mouseleave", () => actions.hover(null));
    plist.append(li);
  }
  $("#proposal-count").textContent = `(${state.proposals.length})`;

  // Masks drawn on an earlier version of this file: listed apart, never exported; deletable.
  const slist = $("#stale-list");
  slist.replaceChildren();
  $("#stale-section").hidden = state.stale.length === 0;
  for (const m of state.stale) {
    const li = el("li");
    li.dataset.id = m.id;
    const text = el("span", "text", describe(m));
    text.title = `${describe(m)}\n${who(m)}\ndrawn on the file with SHA-256 ${m.image_sha256}`;
    li.append(text, button("✕", "delete", "Delete this old mask", () => actions.deleteMask(m.id)));
    slist.append(li);
  }
  $("#stale-count").textContent = `(${state.stale.length})`;
}
