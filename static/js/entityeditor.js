// entityeditor.js: one entity of one database in the JSON editor
// (jsonedit.js), as the Databases page shows it.
//
// Open is GET /entity/{db}?key=K; its ETag is kept. A failed open clears
// the editor, so a document never stands under a key it was not read
// from. Save checks the document against the database's bound schema
// (POST /schema/{id}/validate; failing paths are marked in the editor and
// nothing is written), then PUT /entity/{db} {K: doc} with If-Match: the
// ETag read (If-None-Match: * for a new entity). A 412 opens the conflict
// panel (conflict.js). Delete asks first, and is conditional too.

import { request, entityPath, errorMessage } from "./api.js";
import { conflictPanel } from "./conflict.js";
import { formatJSON, h, messageArea, show, showError } from "./dom.js";
import { createJSONEditor } from "./jsonedit.js";
import { denyReason, gate, reasonNote, setEnabled } from "./perms.js";

/**
 * entityEditor returns {el, open(key), bindingChanged()} for database db. opts: me (from
 * /api/me), binding() (the bound schema ID, "" for none), onOpen(key),
 * onChange("created" | "saved" | "deleted").
 */
export function entityEditor(db, opts) {
  const title = h("h4", { id: "entity-title", testid: "entity-title", text: "No entity open" });
  const meta = h("p", { id: "entity-meta", testid: "entity-meta", class: "hint" });
  const editor = createJSONEditor("entity-editor");
  const check = h("button", { type: "button", id: "entity-check", testid: "entity-check", class: "secondary", text: "Check" });
  const save = h("button", { type: "button", id: "entity-save", testid: "entity-save", text: "Save" });
  const del = h("button", { type: "button", id: "entity-delete", testid: "entity-delete", class: "danger", text: "Delete" });
  const msg = messageArea("entity-message");
  const conflict = conflictPanel("entity-conflict");
  const writeWhy = denyReason(opts.me, "write");
  gate(writeWhy, save, del);

  // The open entity: its key, the ETag it was read with ("" when none),
  // and whether it exists. loadSeq drops answers to superseded opens.
  let current = null;
  let etag = "";
  let exists = false;
  let loadSeq = 0;

  const setControls = (loaded) => {
    editor.setDisabled(!loaded);
    setEnabled(save, loaded);
    setEnabled(del, loaded && exists);
    setEnabled(check, loaded && !!opts.binding());
    check.title = opts.binding() ? `Check against schema ${opts.binding()}` : "No schema is bound to this database.";
  };
  const showMeta = () => {
    meta.textContent = current === null ? "" : exists ? (etag ? `Version ${etag}` : "") : "New entity: Save creates it.";
  };
  setControls(false);

  // clearEditor empties the editor after a failed read.
  const clearEditor = () => {
    editor.setValue("");
    exists = false;
    etag = "";
    setControls(false);
    title.textContent = `${db} / ${current} (not loaded)`;
    meta.textContent = "";
  };

  async function open(key) {
    const seq = ++loadSeq;
    current = key;
    etag = "";
    exists = false;
    conflict.hide();
    title.textContent = `${db} / ${key}`;
    meta.textContent = "";
    opts.onOpen(key);
    editor.setValue("");
    setControls(false);
    show(msg, "Loading…", "info");
    try {
      const r = await request("GET", entityPath(db, key));
      if (seq !== loadSeq) return;
      if (r.status === 404) {
        editor.setValue("{}");
        setControls(true);
        showMeta();
        show(msg, "No such entity yet — edit the document and Save to create it.", "info");
        return;
      }
      if (!r.ok) {
        clearEditor();
        return show(msg, `Could not read ${key}: ${errorMessage(r)}`);
      }
      exists = true;
      etag = r.headers.get("ETag") || "";
      editor.setValue(r.data === undefined ? r.text : formatJSON(r.data));
      setControls(true);
      showMeta();
      show(msg, "");
    } catch (e) {
      if (seq !== loadSeq) return;
      clearEditor();
      showError(msg, e);
    }
  }

  // validate checks doc against the bound schema: true when it passes or
  // nothing is bound (or the server cannot check: the PUT still validates).
  async function validate(doc, quiet) {
    const id = opts.binding();
    editor.clearMarks();
    if (!id) return true;
    // Sent as text: request() would send a string document unencoded.
    const r = await request("POST", `/schema/${encodeURIComponent(id)}/validate`, JSON.stringify(doc));
    if (r.status === 422 && r.data && Array.isArray(r.data.errors)) {
      const n = editor.markErrors(r.data.errors).length + (Number(r.data.omitted) || 0);
      show(msg, `${n} ${n === 1 ? "problem" : "problems"} against schema ${id}` + (quiet ? "" : "; not saved") +
        ". The failing paths are marked in the editor" + (r.data.omitted ? ` (the first ${n - r.data.omitted} of them).` : "."));
      return false;
    }
    if (r.ok || (r.status === 404 && /^no route/.test((r.data && r.data.error) || "")) || r.status === 405) return true;
    show(msg, `Could not check against schema ${id}: ${errorMessage(r)}`);
    return false;
  }

  const parsed = () => {
    editor.refresh();
    try {
      return { doc: JSON.parse(editor.value) };
    } catch (e) {
      show(msg, "Invalid JSON: " + e.message);
      return null;
    }
  };

  async function doSave() {
    if (current === null) return;
    const p = parsed();
    if (!p) return;
    const key = current;
    setEnabled(save, false);
    try {
      if (!(await validate(p.doc, false))) return;
      const headers = exists ? (etag ? { "If-Match": etag } : {}) : { "If-None-Match": "*" };
      const r = await request("PUT", `/entity/${encodeURIComponent(db)}`, { [key]: p.doc }, { headers });
      if (key !== current) return;
      // Both sides pretty-printed alike, so that only real changes differ.
      if (r.status === 412) return showConflict(formatJSON(p.doc));
      if (!r.ok) return show(msg, errorMessage(r));
      const created = !exists;
      exists = true;
      etag = r.headers.get("ETag") || "";
      editor.setValue(formatJSON(p.doc));
      setControls(true);
      showMeta();
      show(msg, created ? "Created." : "Saved.", "ok");
      opts.onChange(created ? "created" : "saved");
    } catch (e) {
      showError(msg, e);
    } finally {
      setEnabled(save, current !== null && !editor.textarea.disabled);
    }
  }

  // showConflict reads the stored version and shows it beside edited.
  async function showConflict(edited) {
    const key = current;
    const r = await request("GET", entityPath(db, key));
    if (key !== current) return;
    if (!r.ok && r.status !== 404) return show(msg, `Changed by someone else, and reading it failed: ${errorMessage(r)}`);
    const stored = r.status === 404 ? null : r.data === undefined ? r.text : formatJSON(r.data);
    const storedTag = r.status === 404 ? "" : r.headers.get("ETag") || "";
    show(msg, "Not saved: the entity changed after you opened it.");
    conflict.show({ key, stored, edited }, {
      reload: () => {
        conflict.hide();
        exists = stored !== null;
        etag = storedTag;
        editor.setValue(stored === null ? "{}" : stored);
        setControls(true);
        showMeta();
        show(msg, stored === null ? "It was deleted; the editor is empty." : "Reloaded the stored version.", "info");
      },
      overwrite: () => {
        conflict.hide();
        exists = stored !== null;
        etag = storedTag;
        editor.setValue(edited);
        doSave();
      },
    });
  }

  check.addEventListener("click", async () => {
    const p = parsed();
    if (!p) return;
    try {
      if (await validate(p.doc, true)) show(msg, `Valid against schema ${opts.binding()}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  });
  save.addEventListener("click", doSave);

  del.addEventListener("click", async () => {
    if (current === null) return;
    const key = current;
    if (!window.confirm(`Delete entity "${key}" from database "${db}"? This cannot be undone.`)) return;
    try {
      const r = await request("DELETE", entityPath(db, key), undefined, { headers: etag ? { "If-Match": etag } : {} });
      if (r.status === 412) {
        await open(key);
        return show(msg, `Not deleted: ${key} changed after you opened it. This is the stored version now.`);
      }
      if (!r.ok) return show(msg, errorMessage(r));
      current = null;
      conflict.hide();
      editor.setValue("");
      exists = false;
      etag = "";
      setControls(false);
      title.textContent = "No entity open";
      showMeta();
      opts.onOpen(null);
      show(msg, `Deleted ${key}.`, "ok");
      opts.onChange("deleted");
    } catch (e) {
      showError(msg, e);
    }
  });

  const el = h("div", { class: "editor", id: "entity-pane", testid: "entity-pane" },
    title, meta,
    h("label", { for: "entity-editor", text: "Document (JSON)" }),
    editor.el,
    editor.errorList,
    h("div", { class: "row" }, check, save, del),
    reasonNote("entity-write-denied", writeWhy, save, del),
    msg,
    conflict.el);
  // bindingChanged follows a bind or unbind: Check needs a bound schema.
  const bindingChanged = () => setControls(current !== null && !editor.textarea.disabled);
  return { el, open, bindingChanged };
}
