// entityeditor.js: one entity of one database in the document editor
// (doceditor.js: text and tree, wrap, copy, Ctrl/Cmd+S), as the
// Databases page shows it.
//
// Open is GET /entity/{db}?key=K; its ETag and document (the base of a
// later merge) are kept. Opening another entity while this one has
// unsaved changes asks first. A failed open clears the editor, so a
// document never stands under a key it was not read from. Save checks the
// JSON (a syntax error is marked where it is, replacing older marks) and
// the database's bound schema (POST /schema/{id}/validate; failing paths
// are marked and nothing is written), then PUT /entity/{db} {K: doc} with
// If-Match: the ETag read (If-None-Match: * for a new entity). A 412
// opens the three-way merge (conflict.js) of the version opened, the one
// stored and the edit. Delete asks first, and is conditional too. Below
// the editor, the entity's kept versions (versions.js): diff, Restore,
// and Undelete of a soft-deleted one.

import { request, entityPath, errorMessage } from "./api.js";
import { conflictPanel } from "./conflict.js";
import { formatJSON, h, messageArea, show, showError } from "./dom.js";
import { createDocEditor } from "./doceditor.js";
import { latest } from "./latest.js";
import { MISSING } from "./merge.js";
import { denyReason, gate, reasonNote, setEnabled } from "./perms.js";
import { undoNote, versionsPanel } from "./versions.js";

/**
 * entityEditor returns {el, open(key, force) (resolves to false when the
 * user kept unsaved changes of the open entity), bindingChanged(),
 * confirmDiscard()} for database db. opts: me (from /api/me), binding()
 * (the bound schema ID, "" for none), onOpen(key), onChange("created" |
 * "saved" | "deleted"); remoteChange(change) follows a change of the
 * database's feed.
 */
export function entityEditor(db, opts) {
  const title = h("h4", { id: "entity-title", testid: "entity-title", text: "No entity open" });
  const meta = h("p", { id: "entity-meta", testid: "entity-meta", class: "hint" });
  const check = h("button", { type: "button", id: "entity-check", testid: "entity-check", class: "secondary", text: "Check" });
  const save = h("button", { type: "button", id: "entity-save", testid: "entity-save", text: "Save" });
  const del = h("button", { type: "button", id: "entity-delete", testid: "entity-delete", class: "danger", text: "Delete" });
  const msg = messageArea("entity-message");
  const conflict = conflictPanel("entity-conflict");
  const writeWhy = denyReason(opts.me, "write");
  gate(writeWhy, save, del);

  // The open entity: its key, the ETag and document it was read (or last
  // saved) with, and whether it exists. acts counts the opens, saves and
  // Reloads of the merge panel: only the latest one's answer changes the
  // editor or the merge panel. A save answered after its entity was
  // opened again (its unsaved edit discarded) only says what came of it:
  // its merge panel, or its version, does not belong over the document
  // read since.
  let current = null;
  let etag = "";
  let base = MISSING;
  let exists = false;
  const acts = latest();
  // saving is true while a write is on its way; a change of the feed
  // meanwhile waits in pendingRemote.
  let saving = false;
  let pendingRemote = null;
  const doc = createDocEditor("entity-editor", { what: () => `${db} / ${current}`, onSave: () => doSave() });
  const versions = versionsPanel(db, {
    me: opts.me,
    // An entity restored after the user opened another is not opened
    // again over it.
    onRestored: async (key) => {
      if (key === current) await open(key, true);
      opts.onChange("created");
    },
  });

  const setControls = (loaded) => {
    doc.setDisabled(!loaded);
    setEnabled(save, loaded);
    setEnabled(del, loaded && exists);
    setEnabled(check, loaded && !!opts.binding());
    check.title = opts.binding() ? `Check against schema ${opts.binding()}` : "No schema is bound to this database.";
  };
  const showMeta = () => {
    meta.textContent = current === null ? "" : exists ? (etag ? `Version ${etag}` : "") : "New entity: Save creates it.";
  };
  setControls(false);

  // settle records what the server holds now: the document (parsed, or
  // MISSING) and its ETag, and puts it in the editor as a clean baseline.
  // After a save (sent: the text saved), what was typed while it was on
  // its way stays in the editor, unsaved.
  const settle = (stored, tag, text, sent) => {
    delete msg.dataset.changedElsewhere;
    exists = stored !== MISSING;
    base = stored;
    etag = tag;
    if (sent !== undefined && doc.value !== sent) doc.markClean(sent);
    else doc.setValue(text !== undefined ? text : stored === MISSING ? "{}" : formatJSON(stored));
    setControls(true);
    showMeta();
    versions.load(current, stored, tag);
  };

  // clearEditor empties the editor after a failed read.
  const clearEditor = () => {
    doc.setValue("");
    exists = false;
    etag = "";
    base = MISSING;
    setControls(false);
    title.textContent = `${db} / ${current} (not loaded)`;
    meta.textContent = "";
    versions.load(null);
  };

  async function open(key, force) {
    if (!force && !(await doc.confirmDiscard())) return false;
    const latestOpen = acts.next();
    current = key;
    etag = "";
    exists = false;
    base = MISSING;
    conflict.hide();
    title.textContent = `${db} / ${key}`;
    meta.textContent = "";
    opts.onOpen(key);
    doc.setValue("");
    setControls(false);
    show(msg, "Loading…", "info");
    try {
      const r = await request("GET", entityPath(db, key));
      if (!latestOpen()) return true;
      if (r.status === 404) {
        settle(MISSING, "");
        show(msg, "No such entity yet — edit the document and Save to create it.", "info");
        return true;
      }
      if (!r.ok) {
        clearEditor();
        show(msg, `Could not read ${key}: ${errorMessage(r)}`);
        return true;
      }
      settle(r.data === undefined ? MISSING : r.data, r.headers.get("ETag") || "", r.data === undefined ? r.text : undefined);
      show(msg, "");
    } catch (e) {
      if (!latestOpen()) return true;
      clearEditor();
      showError(msg, e);
    }
    return true;
  }

  // validate checks value against the bound schema: true when it passes or
  // nothing is bound (or the server cannot check: the PUT still validates).
  // The failing paths are marked only while still() holds: the entity
  // checked is open and the editor holds the text checked. A later answer
  // (another entity opened, or the text edited, meanwhile) only says what
  // it found: it marked the paths on the lines of what the editor held
  // then.
  async function validate(value, quiet, still) {
    const id = opts.binding();
    const key = current;
    doc.editor.clearMarks();
    if (!id) return true;
    // Sent as text: request() would send a string document unencoded.
    const r = await request("POST", `/schema/${encodeURIComponent(id)}/validate`, JSON.stringify(value));
    if (r.status === 422 && r.data && Array.isArray(r.data.errors) && !still()) {
      const n = r.data.errors.length + (Number(r.data.omitted) || 0);
      const problems = `${n} ${n === 1 ? "problem" : "problems"} against schema ${id}`;
      show(msg, quiet ? `${key} as checked: ${problems}. Not marked: the editor has changed since.` : `Not saved: ${key}: ${problems}.`);
      return false;
    }
    if (r.status === 422 && r.data && Array.isArray(r.data.errors)) {
      const n = doc.editor.markErrors(r.data.errors).length + (Number(r.data.omitted) || 0);
      show(msg, `${n} ${n === 1 ? "problem" : "problems"} against schema ${id}` + (quiet ? "" : "; not saved") +
        ". The failing paths are marked in the editor" + (r.data.omitted ? ` (the first ${n - r.data.omitted} of them).` : "."));
      return false;
    }
    if (r.ok || (r.status === 404 && /^no route/.test((r.data && r.data.error) || "")) || r.status === 405) return true;
    show(msg, `Could not check against schema ${id}: ${errorMessage(r)}`);
    return false;
  }

  // parsed is the document in the editor, or null with its syntax error
  // marked in the editor (in place of any older marks) and named here.
  const parsed = () => {
    const p = doc.parse();
    if (!p) {
      const li = doc.editor.errorList.querySelector("li");
      show(msg, `Invalid JSON${li ? ` (line ${li.dataset.line})` : ""}: not saved. The place is marked in the editor.`);
    }
    return p;
  };

  // put writes value with the precondition of what the editor was opened
  // with, and answers the response.
  const put = (key, value, precondition) =>
    request("PUT", `/entity/${encodeURIComponent(db)}`, { [key]: value }, { headers: precondition });

  const precondition = () => (exists ? (etag ? { "If-Match": etag } : {}) : { "If-None-Match": "*" });

  async function doSave() {
    if (current === null || save.disabled) return;
    const p = parsed();
    if (!p) return;
    await store(current, p.doc, precondition());
  }

  // late says what came of a save of key answered after the user opened
  // an entity (another, or key again): the editor and the panel are that
  // open's.
  const late = (key, r, created) => {
    if (r.status === 412) return show(msg, `Not saved: ${key} changed after you opened it.`);
    if (!r.ok) return show(msg, `Not saved: ${key}: ${errorMessage(r)}`);
    show(msg, `${created ? "Created" : "Saved"} ${key}.`, "ok");
    opts.onChange(created ? "created" : "saved");
  };

  // store validates and writes value under key, conditional on pre; a 412
  // opens the merge.
  async function store(key, value, pre) {
    const sent = doc.value;
    const creating = !exists;
    const act = acts.next();
    setEnabled(save, false);
    saving = true;
    try {
      if (!(await validate(value, false, () => act() && doc.value === sent))) return;
      const r = await put(key, value, pre);
      if (key !== current || !act()) return late(key, r, creating);
      if (r.status === 412) return showConflict(value, sent, act);
      if (!r.ok) return show(msg, errorMessage(r));
      const created = !exists;
      conflict.hide();
      settle(value, r.headers.get("ETag") || "", undefined, sent);
      show(msg, created ? "Created." : "Saved.", "ok");
      opts.onChange(created ? "created" : "saved");
    } catch (e) {
      showError(msg, e);
    } finally {
      setEnabled(save, current !== null && !doc.editor.textarea.disabled);
      saving = false;
      const c = pendingRemote;
      pendingRemote = null;
      if (c) remoteChange(c);
    }
  }

  // showConflict reads the stored version and merges it with the version
  // opened and edited (sent: the editor's text saved); act is the save's
  // check.
  async function showConflict(edited, sent, act) {
    const key = current;
    const r = await request("GET", entityPath(db, key));
    if (key !== current || !act()) return show(msg, `Not saved: ${key} changed after you opened it.`);
    if (!r.ok && r.status !== 404) return show(msg, `Changed by someone else, and reading it failed: ${errorMessage(r)}`);
    const stored = r.status === 404 ? null : r.data;
    const storedTag = r.status === 404 ? "" : r.headers.get("ETag") || "";
    show(msg, "Not saved: the entity changed after you opened it.");
    // What the next write is conditional on: the version just read.
    const pre = stored === null ? { "If-None-Match": "*" } : { "If-Match": storedTag };
    conflict.show({ key, base, stored, edited, sent, typed: () => doc.value }, {
      reload: () => {
        acts.drop();
        conflict.hide();
        settle(stored === null ? MISSING : stored, storedTag);
        show(msg, stored === null ? "It was deleted; the editor is empty." : "Reloaded the stored version.", "info");
      },
      // Overwrite writes what the editor holds now: the edit, and what
      // was typed after the conflict was shown.
      overwrite: () => {
        if (key !== current) return;
        const p = parsed();
        if (!p) return;
        exists = stored !== null;
        etag = storedTag;
        base = stored === null ? MISSING : stored;
        store(key, p.doc, pre);
      },
      saveMerged: (merged) => {
        exists = true;
        etag = storedTag;
        base = stored;
        doc.editor.setValue(formatJSON(merged));
        store(key, merged, pre);
      },
    });
  }

  // remoteChange follows a change of the feed (live.js): a change of the
  // open entity that is not the version shown reloads it when it has no
  // unsaved edits; with edits, they are kept and the user is told (Save
  // then meets the 412 and its merge).
  async function remoteChange(c) {
    if (current === null || c.key !== current || doc.editor.textarea.disabled) return;
    if (saving) {
      pendingRemote = c; // judged once the save's ETag is known: it may be ours
      return;
    }
    if (c.op === "put" ? exists && c.etag === etag : !exists) return; // what is shown (or our own write)
    if (doc.isDirty()) {
      msg.dataset.changedElsewhere = "true";
      return show(msg, c.op === "delete"
        ? "Deleted elsewhere while you edit: your edits are kept; Save would create it again."
        : "Changed elsewhere while you edit: your edits are kept; Save merges them with the stored version.", "info");
    }
    const key = current;
    await open(key, true);
    if (key !== current) return;
    show(msg, c.op === "delete" ? "Deleted elsewhere: the editor shows no stored version now." : "Changed elsewhere: reloaded the stored version.", "info");
  }

  // Check starts no action of its own: a newer open, save or edit makes
  // its answer late.
  check.addEventListener("click", async () => {
    const p = parsed();
    if (!p) return;
    const key = current;
    const text = doc.value;
    const latestAct = acts.now();
    const still = () => latestAct() && doc.value === text;
    try {
      if (await validate(p.doc, true, still)) {
        show(msg, still() ? `Valid against schema ${opts.binding()}.` : `${key} as checked: valid against schema ${opts.binding()}.`, "ok");
      }
    } catch (e) {
      showError(msg, e);
    }
  });
  save.addEventListener("click", doSave);

  // Delete deletes the entity shown when it was pressed, conditional on
  // the version shown then; the user may open another entity before the
  // question (its note is read first) or the answer, and that one stays.
  del.addEventListener("click", async () => {
    if (current === null) return;
    const key = current;
    const tag = etag;
    if (!window.confirm(`Delete entity "${key}" from database "${db}"? ${await undoNote(db)}`)) return;
    // Like a save, a delete holds the feed's changes until it is answered:
    // its own change must not reload the entity under it.
    saving = true;
    try {
      const r = await request("DELETE", entityPath(db, key), undefined, { headers: tag ? { "If-Match": tag } : {} });
      saving = false;
      const shown = key === current;
      if (r.status === 412) {
        if (!shown) return show(msg, `Not deleted: ${key} changed after you opened it.`);
        await open(key, true);
        return show(msg, `Not deleted: ${key} changed after you opened it. This is the stored version now.`);
      }
      if (!r.ok) return show(msg, errorMessage(r));
      if (!shown) {
        show(msg, `Deleted ${key}.`, "ok");
        opts.onChange("deleted");
        return;
      }
      current = null;
      versions.load(key, MISSING, "");
      conflict.hide();
      doc.setValue("");
      exists = false;
      etag = "";
      base = MISSING;
      setControls(false);
      title.textContent = "No entity open";
      showMeta();
      opts.onOpen(null);
      show(msg, `Deleted ${key}.`, "ok");
      opts.onChange("deleted");
    } catch (e) {
      showError(msg, e);
    } finally {
      saving = false;
      const c = pendingRemote;
      pendingRemote = null;
      if (c) remoteChange(c);
    }
  });

  const el = h("div", { class: "editor", id: "entity-pane", testid: "entity-pane" },
    title, meta,
    h("label", { for: "entity-editor", text: "Document (JSON)" }),
    doc.el,
    h("div", { class: "row" }, check, save, del, h("span", { class: "hint", text: "Ctrl+S / ⌘S saves" })),
    reasonNote("entity-write-denied", writeWhy, save, del),
    msg,
    conflict.el,
    versions.el);
  // bindingChanged follows a bind or unbind: Check needs a bound schema.
  const bindingChanged = () => setControls(current !== null && !doc.editor.textarea.disabled);
  return { el, open, bindingChanged, remoteChange, confirmDiscard: () => doc.confirmDiscard() };
}
