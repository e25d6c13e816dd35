// doceditor.js: the document editor of the entity and schema pages: the
// JSON editor (jsonedit.js) with a toolbar (Tree, Wrap lines, Format,
// Copy), the collapsible tree beside the text (jsontree.js), Ctrl/Cmd+S
// to save, and what the user has not saved: isDirty, a question before it
// is thrown away (confirmDiscard) and the browser's own question when the
// tab is closed or reloaded.
//
// Wrap lines is on by default on a narrow screen (long chat messages
// otherwise scroll sideways) and remembered per browser (localStorage
// deltadb.wrap), as is the tree (deltadb.tree).

import { copyText, h, messageArea, show } from "./dom.js";
import { confirmDialog } from "./dialog.js";
import { createJSONEditor } from "./jsonedit.js";
import { createJSONTree } from "./jsontree.js";

const NARROW = "(max-width: 800px)";

// live are the editors on the page, for the tab-close question.
const live = new Set();
window.addEventListener("beforeunload", (ev) => {
  for (const ed of live) {
    if (!ed.el.isConnected) live.delete(ed);
    else if (ed.isDirty()) {
      ev.preventDefault();
      ev.returnValue = ""; // older browsers ask only when it is set
      return;
    }
  }
});

function pref(name, fallback) {
  try {
    const v = localStorage.getItem("deltadb." + name);
    return v === null ? fallback : v === "1";
  } catch {
    return fallback;
  }
}

function setPref(name, on) {
  try {
    localStorage.setItem("deltadb." + name, on ? "1" : "0");
  } catch {
    // storage unavailable: the choice lasts for this page only
  }
}

/**
 * createDocEditor builds the editor. id names the textarea as in
 * createJSONEditor; the toolbar's controls are #<id>-tree, #<id>-wrap,
 * #<id>-format, #<id>-copy, the tree #<id>-tree-view. opts: what (how
 * the page names the document, for questions), onSave() (Ctrl/Cmd+S).
 * Returns {el, editor, get value, setValue(text) (a clean baseline),
 * markClean(text) (text, by default the editor's, is what is saved),
 * isDirty(), parse() ({doc} or null, the syntax error marked
 * in place of any other mark), confirmDiscard() (a promise: true when
 * nothing is unsaved or the user lets it go), setDisabled(bool)}.
 */
export function createDocEditor(id, opts = {}) {
  const editor = createJSONEditor(id);
  const tree = createJSONTree(id + "-tree-view", (pointer) => editor.select(pointer));
  const check = (suffix, label, on) => {
    const cb = h("input", { type: "checkbox", id: `${id}-${suffix}`, testid: `${id}-${suffix}`, checked: on });
    return [cb, h("span", { class: "check" }, cb, " ", h("label", { for: cb.id, text: label }))];
  };
  const [treeCb, treeLabel] = check("tree", "Tree", pref("tree", !matchMedia(NARROW).matches));
  const [wrapCb, wrapLabel] = check("wrap", "Wrap lines", pref("wrap", matchMedia(NARROW).matches));
  const format = h("button", { type: "button", id: id + "-format", testid: id + "-format", class: "secondary small", text: "Format" });
  const copy = h("button", { type: "button", id: id + "-copy", testid: id + "-copy", class: "secondary small", text: "Copy" });
  const status = messageArea(id + "-toolbar-status");
  const body = h("div", { class: "doc-body" }, editor.el, tree.el);
  const el = h("div", { class: "doc-editor", testid: id + "-doc" },
    h("div", { class: "row toolbar", role: "toolbar", "aria-label": "Document" }, treeLabel, wrapLabel, format, copy),
    status, body, editor.errorList);
  let baseline = "";
  let treeFrame = 0;

  const drawTree = () => {
    treeFrame = 0;
    if (treeCb.checked) tree.update(editor.value);
  };
  const showTree = () => {
    el.classList.toggle("with-tree", treeCb.checked);
    tree.el.hidden = !treeCb.checked;
    drawTree();
  };
  treeCb.addEventListener("change", () => {
    setPref("tree", treeCb.checked);
    showTree();
  });
  wrapCb.addEventListener("change", () => {
    setPref("wrap", wrapCb.checked);
    editor.setWrap(wrapCb.checked);
  });
  editor.textarea.addEventListener("input", () => {
    if (!treeFrame) treeFrame = requestAnimationFrame(drawTree);
  });
  format.addEventListener("click", () => {
    const err = editor.markSyntax();
    if (err) return show(status, "Not formatted: the text is not valid JSON (marked below).", "error");
    const at = editor.textarea.scrollTop;
    editor.textarea.value = JSON.stringify(JSON.parse(editor.value), null, 2);
    editor.textarea.dispatchEvent(new Event("input"));
    editor.textarea.scrollTop = at;
    show(status, "");
  });
  copy.addEventListener("click", async () => {
    const ok = await copyText(editor.value);
    show(status, ok ? "Copied the document." : "Copy failed — select the text and copy it by hand.", ok ? "ok" : "error");
  });
  // Ctrl/Cmd+S saves the document whose page is shown, wherever the focus is.
  const onKey = (ev) => {
    if (!el.isConnected) {
      document.removeEventListener("keydown", onKey);
      return;
    }
    if ((ev.ctrlKey || ev.metaKey) && !ev.altKey && !ev.shiftKey && ev.key.toLowerCase() === "s") {
      ev.preventDefault();
      if (opts.onSave && !editor.textarea.disabled) opts.onSave();
    }
  };
  document.addEventListener("keydown", onKey);

  const api = {
    el,
    editor,
    get value() {
      return editor.value;
    },
    setValue(text) {
      editor.setValue(text);
      baseline = text;
      drawTree();
    },
    markClean(text = editor.value) {
      baseline = text;
    },
    isDirty() {
      return !editor.textarea.disabled && editor.value !== baseline;
    },
    parse() {
      editor.refresh();
      const err = editor.markSyntax();
      if (err) return null;
      return { doc: JSON.parse(editor.value) };
    },
    async confirmDiscard() {
      if (!api.isDirty()) return true;
      return confirmDialog({ title: "Discard your changes?", action: "Discard changes", keep: "Keep editing",
        text: `${opts.what ? opts.what() : "The document"} has changes that are not saved.` });
    },
    setDisabled(off) {
      editor.setDisabled(off);
    },
  };
  live.add(api);
  editor.setWrap(wrapCb.checked);
  showTree();
  return api;
}
