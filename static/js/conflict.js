// conflict.js: what a Save that lost a race shows. The server answered
// 412 (the entity changed since it was opened; If-Match no longer holds):
// the version opened, the one stored now and the user's edit are merged
// three ways (merge.js). Changes of only one side are taken without a
// question; each place both changed differently is listed with its
// choices (theirs, yours, and both for two appends). "Save merged" stores
// the result, still conditional on the stored version's ETag. Reload takes
// the stored version; Overwrite writes the edit over it (conditional too).
// The stored document and the edit stay visible side by side, the lines
// that differ marked.
//
// The editor stays open under the panel, and the user may type on. What
// is typed after the save that met the 412 is not lost without a
// question: Overwrite writes what the editor holds when it is pressed (the
// page's handler reads the editor), Save merged merges again with it (the
// panel is drawn anew, to be checked and pressed again) and Reload asks
// before it replaces it.

import { confirmDialog } from "./dialog.js";
import { h } from "./dom.js";
import { MISSING, merge3, resolve } from "./merge.js";

const DIFF_LIMIT = 2000; // lines per side beyond which no lines are marked
const VALUE_CHARS = 400; // a conflicting value is shown up to this long

const text = (v) => (v === MISSING ? "(removed)" : JSON.stringify(v, null, 2));
const clip = (s) => (s.length > VALUE_CHARS ? s.slice(0, VALUE_CHARS - 1) + "…" : s);

/**
 * conflictPanel builds the hidden panel; ids are <id>, <id>-summary,
 * <id>-list (li[data-path] with inputs name=<id>-choice-<i> value
 * theirs|mine|both), <id>-merged, <id>-save, <id>-stored, <id>-edited,
 * <id>-reload and <id>-overwrite. show(state, on) opens it for state {key
 * (the entity that conflicted, as the page names it), base (the document
 * opened, MISSING for a new one), stored (the document stored now, or
 * null when it was deleted), edited (the edit), sent (the editor's text
 * that was saved), typed() (the editor's text now)} with handlers on
 * {reload, overwrite (writes what the editor holds), saveMerged(doc)},
 * which act on that entity whatever the page's fields hold when they are
 * pressed; hide() closes it.
 */
export function conflictPanel(id) {
  const title = h("h4", { id: id + "-title", text: "Changed by someone else" });
  const explain = h("p", { class: "hint", id: id + "-explain" });
  const summary = h("p", { id: id + "-summary", testid: id + "-summary" });
  const list = h("ol", { id: id + "-list", testid: id + "-list", class: "conflict-list" });
  const merged = h("pre", { id: id + "-merged", testid: id + "-merged", tabindex: "0", "aria-label": "Merged document" });
  const save = h("button", { type: "button", id: id + "-save", testid: id + "-save", text: "Save merged" });
  const need = h("span", { id: id + "-need", class: "hint" });
  const mergeBox = h("div", { class: "merge-box" }, summary, list,
    h("figure", {}, h("figcaption", { text: "Merged result" }), merged), h("div", { class: "row" }, save, need));
  const stored = h("pre", { id: id + "-stored", testid: id + "-stored", tabindex: "0", "aria-label": "Stored document" });
  const edited = h("pre", { id: id + "-edited", testid: id + "-edited", tabindex: "0", "aria-label": "Your edited document" });
  const reload = h("button", { type: "button", id: id + "-reload", testid: id + "-reload", class: "secondary", text: "Reload" });
  const overwrite = h("button", { type: "button", id: id + "-overwrite", testid: id + "-overwrite", class: "danger", text: "Overwrite" });
  const el = h("section", { id, testid: id, class: "panel conflict", hidden: true, role: "alert", "aria-labelledby": id + "-title" },
    title, explain, mergeBox,
    h("details", { class: "conflict-sides", open: true }, h("summary", { text: "Stored now and your edit, side by side" }),
      h("div", { class: "conflict-grid" },
        h("figure", {}, h("figcaption", { text: "Stored now" }), stored),
        h("figure", {}, h("figcaption", { text: "Your edit" }), edited))),
    h("div", { class: "row" }, reload, overwrite));
  let handlers = {};
  let result = null;
  let shown = null; // the state shown
  // typedSince is the editor's text when the user typed in it after the
  // save that conflicted, else null.
  const typedSince = () => {
    const now = shown && shown.typed ? shown.typed() : null;
    return now !== null && now !== shown.sent ? now : null;
  };
  reload.addEventListener("click", async () => {
    const on = handlers;
    if (!on.reload) return;
    if (typedSince() !== null && !(await confirmDialog({ title: "Discard what you typed?", action: "Reload", keep: "Keep editing",
      text: `You changed "${shown.key}" in the editor after this conflict was shown. Reload replaces it with the stored version.` }))) return;
    if (handlers === on) on.reload();
  });
  overwrite.addEventListener("click", () => handlers.overwrite && handlers.overwrite());
  save.addEventListener("click", () => {
    const doc = chosen();
    if (doc === null || !handlers.saveMerged) return;
    const typed = typedSince();
    if (typed === null) return handlers.saveMerged(doc);
    // The merge was of the edit saved: merged again with what the editor
    // holds now, for the user to check before it is saved.
    let edited;
    try {
      edited = JSON.parse(typed);
    } catch {
      need.textContent = "You changed the document after this conflict was shown and it is not valid JSON: fix it in the editor, then Save merged merges it.";
      return;
    }
    panel.show({ ...shown, edited, sent: typed }, handlers);
    summary.textContent = "Merged again with what you typed after the conflict was shown. " + summary.textContent;
  });

  // chosen is the merged document with the choices made, or null while a
  // conflict has no choice.
  const chosen = () => {
    const picks = result.conflicts.map((_, i) => list.querySelector(`input[name="${id}-choice-${i}"]:checked`)?.value);
    if (picks.some((p) => !p)) return null;
    const doc = resolve(result, picks);
    return doc === MISSING ? null : doc;
  };
  const update = () => {
    const doc = chosen();
    const open = result.conflicts.length - [...list.querySelectorAll("input:checked")].length;
    merged.textContent = doc === null ? (open > 0 ? "(choose for every conflict above)" : "(the document would be empty)") : JSON.stringify(doc, null, 2);
    save.disabled = doc === null;
    need.textContent = open > 0 ? `${open} ${open === 1 ? "conflict needs" : "conflicts need"} a choice.` : "";
  };
  list.addEventListener("change", update);

  const panel = {
    el,
    show(state, on) {
      handlers = on;
      shown = state;
      const gone = state.stored === null;
      const storedText = gone ? "" : JSON.stringify(state.stored, null, 2);
      const editedText = JSON.stringify(state.edited, null, 2);
      fillDiff(stored, edited, storedText, editedText);
      if (gone) stored.textContent = "(deleted)";
      mergeBox.hidden = gone;
      if (gone) {
        explain.textContent = `"${state.key}" was deleted after you opened it. Reload drops your edit; Overwrite stores it again.`;
      } else {
        explain.textContent = `"${state.key}" was saved by someone else after you opened it; nothing was written. ` +
          "Their changes and yours are merged below; Reload takes the stored version (your edit is lost); Overwrite replaces it with your edit.";
        result = merge3(state.base, state.stored, state.edited);
        summary.textContent = mergeSummary(result);
        list.replaceChildren(...result.conflicts.map((c, i) => conflictItem(id, c, i)));
        list.hidden = result.conflicts.length === 0;
        update();
      }
      el.hidden = false;
      el.scrollIntoView({ block: "nearest" });
    },
    hide() {
      el.hidden = true;
      handlers = {};
      result = null;
      shown = null;
    },
  };
  return panel;
}

function mergeSummary(r) {
  const took = r.applied === 0 ? "None of your changes could be merged without a question" :
    `${r.applied} of your changes ${r.applied === 1 ? "was" : "were"} merged with theirs`;
  const n = r.conflicts.length;
  return `${took}; ${n === 0 ? "nothing conflicts." : `${n} ${n === 1 ? "place" : "places"} both of you changed: choose for each.`}`;
}

function conflictItem(id, c, i) {
  const choice = (value, label, v) => {
    const input = h("input", { type: "radio", name: `${id}-choice-${i}`, id: `${id}-choice-${i}-${value}`, value, testid: `${id}-choice` });
    return h("div", { class: "choice" }, input, " ",
      h("label", { for: input.id }, h("strong", { text: label }), h("pre", { class: "choice-value", text: clip(text(v)) })));
  };
  return h("li", { "data-path": c.path },
    h("p", {}, "At ", h("code", { text: c.path || "(the whole document)" }), c.base === MISSING ? " (added by both)" : "",
      h("span", { class: "hint", text: ` — opened as ${clip(c.base === MISSING ? "(absent)" : JSON.stringify(c.base))}` })),
    h("div", { class: "choices" },
      choice("theirs", "Keep theirs", c.theirs),
      choice("mine", "Keep yours", c.mine),
      c.both ? choice("both", "Keep both (theirs first)", c.both) : null));
}

// fillDiff writes both texts line by line, marking the lines that are not
// in their longest common subsequence.
function fillDiff(leftEl, rightEl, left, right) {
  const a = left.split("\n");
  const b = right.split("\n");
  const [keepA, keepB] = a.length <= DIFF_LIMIT && b.length <= DIFF_LIMIT ? commonLines(a, b) : [null, null];
  leftEl.replaceChildren(...lines(a, keepA, "diff-del"));
  rightEl.replaceChildren(...lines(b, keepB, "diff-add"));
}

function lines(list, keep, cls) {
  return list.map((line, i) => h("span", { class: keep && !keep[i] ? cls : null, text: line + (i < list.length - 1 ? "\n" : "") }));
}

// commonLines marks, for each side, the lines of a longest common
// subsequence of a and b.
function commonLines(a, b) {
  const n = a.length;
  const m = b.length;
  const len = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      len[i][j] = a[i] === b[j] ? len[i + 1][j + 1] + 1 : Math.max(len[i + 1][j], len[i][j + 1]);
    }
  }
  const keepA = new Array(n).fill(false);
  const keepB = new Array(m).fill(false);
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[i] === b[j]) {
      keepA[i++] = true;
      keepB[j++] = true;
    } else if (len[i + 1][j] >= len[i][j + 1]) i++;
    else j++;
  }
  return [keepA, keepB];
}
