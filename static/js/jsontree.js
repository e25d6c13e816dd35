// jsontree.js: a collapsible tree of a JSON document, beside its text.
// Objects and arrays are <details> (open to TREE_OPEN_DEPTH levels; what
// the user opens or closes stays so across updates), scalars one line
// each. A member's name jumps to its place in the text; long strings and
// every object or array have a Copy button for their JSON. Values reach
// the page through textContent only.

import { copyText, h } from "./dom.js";
import { escapePointer } from "./jsonedit.js";

const TREE_OPEN_DEPTH = 3;
const TREE_NODE_LIMIT = 2000; // nodes drawn; the rest are counted
const LONG_STRING = 40; // strings longer than this get a Copy button
const PREVIEW = 60;

/**
 * createJSONTree builds the tree; id names its root (#<id>) and its status
 * line (#<id>-status). onSelect(pointer) runs when a name is clicked.
 * Returns {el, update(text)}: update draws the document text holds, or
 * keeps the last one drawn and says so when text is not JSON.
 */
export function createJSONTree(id, onSelect) {
  const status = h("p", { id: id + "-status", testid: id + "-status", class: "hint", role: "status" });
  const root = h("div", { id, testid: id, class: "json-tree", "aria-label": "Document tree" });
  const el = h("div", { class: "json-tree-box" }, status, root);
  const toggled = new Map(); // pointer -> open, where the user chose
  let drawn = null; // the text last drawn

  const copy = async (btn, value) => {
    const ok = await copyText(typeof value === "string" ? value : JSON.stringify(value, null, 2));
    status.textContent = ok ? "Copied to clipboard." : "Copy failed.";
    btn.dataset.copied = ok ? "true" : "false";
  };
  const copyBtn = (pointer, value) => h("button", {
    type: "button", class: "tree-copy secondary", testid: "tree-copy", "data-pointer": pointer, text: "Copy",
    "aria-label": `Copy ${pointer || "the document"}`, on: { click: (ev) => { ev.preventDefault(); copy(ev.currentTarget, value); } },
  });
  const name = (label, pointer) => label === null ? null : h("button", {
    type: "button", class: "tree-name link", "data-pointer": pointer, text: label,
    on: { click: (ev) => { ev.preventDefault(); onSelect(pointer); } },
  });

  function node(label, value, pointer, depth, budget) {
    budget.n++;
    if (value !== null && typeof value === "object") {
      const arr = Array.isArray(value);
      const entries = arr ? value.map((v, i) => [String(i), v]) : Object.entries(value);
      const det = h("details", { "data-pointer": pointer, class: "tree-node" });
      det.open = toggled.has(pointer) ? toggled.get(pointer) : depth < TREE_OPEN_DEPTH;
      det.addEventListener("toggle", () => toggled.set(pointer, det.open));
      const count = arr ? `[${entries.length}]` : `{${entries.length}}`;
      det.append(h("summary", {}, name(label, pointer), label === null ? null : ": ", h("span", { class: "tree-count", text: count }), " ", copyBtn(pointer, value)));
      const ul = h("ul");
      for (const [k, v] of entries) {
        if (budget.n >= TREE_NODE_LIMIT) {
          budget.cut++;
          continue;
        }
        ul.append(h("li", {}, node(k, v, `${pointer}/${escapePointer(k)}`, depth + 1, budget)));
      }
      det.append(ul);
      return det;
    }
    const kind = typeof value === "string" ? "str" : typeof value === "number" ? "num" : "lit";
    const text = typeof value === "string" ? JSON.stringify(value.length > PREVIEW ? value.slice(0, PREVIEW) + "…" : value) : String(value);
    return h("div", { class: "tree-leaf", "data-pointer": pointer },
      name(label, pointer), label === null ? null : ": ",
      h("span", { class: "tok-" + kind, title: typeof value === "string" && value.length > PREVIEW ? value.slice(0, 2000) : null, text }),
      typeof value === "string" && value.length > LONG_STRING ? [" ", copyBtn(pointer, value)] : null);
  }

  function update(text) {
    if (text === drawn) return;
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      status.textContent = drawn === null ? "The tree shows the document once it is valid JSON." : "Not valid JSON: the tree shows the last valid document.";
      root.classList.add("stale");
      return;
    }
    drawn = text;
    const budget = { n: 0, cut: 0 };
    root.replaceChildren(node(null, value, "", 0, budget));
    root.classList.remove("stale");
    status.textContent = budget.cut ? `Showing the first ${TREE_NODE_LIMIT} values; ${budget.cut} more entries are only in the text.` : "";
  }
  return { el, update };
}
