// conflict.js: what a Save that lost a race shows. The server answered
// 412 (the entity changed since it was loaded, If-Match no longer holds):
// the stored document and the user's edit side by side, lines that differ
// marked, with Reload (take the stored one) and Overwrite (write the edit
// over it, still conditional on the version just shown).

import { h } from "./dom.js";

const DIFF_LIMIT = 2000; // lines per side beyond which no lines are marked

/**
 * conflictPanel builds the hidden panel; ids are <id>, <id>-stored,
 * <id>-edited, <id>-reload and <id>-overwrite. show(state, {reload,
 * overwrite}) opens it for state {key, stored (text, or null when the
 * entity was deleted), edited (text)}; hide() closes it.
 */
export function conflictPanel(id) {
  const title = h("h4", { id: id + "-title", text: "Changed by someone else" });
  const explain = h("p", { class: "hint", id: id + "-explain" });
  const stored = h("pre", { id: id + "-stored", testid: id + "-stored", tabindex: "0", "aria-label": "Stored document" });
  const edited = h("pre", { id: id + "-edited", testid: id + "-edited", tabindex: "0", "aria-label": "Your edited document" });
  const reload = h("button", { type: "button", id: id + "-reload", testid: id + "-reload", class: "secondary", text: "Reload" });
  const overwrite = h("button", { type: "button", id: id + "-overwrite", testid: id + "-overwrite", class: "danger", text: "Overwrite" });
  const el = h("section", { id, testid: id, class: "panel conflict", hidden: true, role: "alert", "aria-labelledby": id + "-title" },
    title, explain,
    h("div", { class: "conflict-grid" },
      h("figure", {}, h("figcaption", { text: "Stored now" }), stored),
      h("figure", {}, h("figcaption", { text: "Your edit" }), edited)),
    h("div", { class: "row" }, reload, overwrite));
  let handlers = {};
  reload.addEventListener("click", () => handlers.reload && handlers.reload());
  overwrite.addEventListener("click", () => handlers.overwrite && handlers.overwrite());

  return {
    el,
    show(state, on) {
      handlers = on;
      const gone = state.stored === null;
      explain.textContent = gone
        ? `"${state.key}" was deleted after you opened it. Reload drops your edit; Overwrite stores it again.`
        : `"${state.key}" was saved by someone else after you opened it; nothing was written. ` +
          "Reload shows the stored version (your edit is lost); Overwrite replaces it with your edit.";
      fillDiff(stored, edited, gone ? "" : state.stored, state.edited);
      if (gone) stored.textContent = "(deleted)";
      el.hidden = false;
      el.scrollIntoView({ block: "nearest" });
    },
    hide() {
      el.hidden = true;
      handlers = {};
    },
  };
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
