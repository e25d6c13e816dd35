// entities.js: get, put and delete one entity. The database comes from a
// dropdown filled by GET /api/databases, or from the free-text box for a
// new database. Calls GET/PUT/DELETE /entity/{db}[?key=K][&schema=ID].
// The document is in the document editor (doceditor.js; Ctrl/Cmd+S puts).
// A Put or Delete of the entity last got sends If-Match with its ETag; a
// 412 opens the three-way merge of the version got, the one stored and
// the edit (conflict.js); its buttons act on the entity that conflicted,
// whatever the form names since. A failed Get clears the document, so it
// never stands under a key it was not read from. Leaving the page, or a
// Get, with unsaved changes asks first; until the user lets them go the
// Get has not started, and the page (merge panel included) stays as it
// was. Only the answer to the page's latest action (Get, Put, Delete, a
// button of the merge panel) changes the editor, the form or the panel:
// an older one answered last only says in the message what came of it.

import { call, entityPath, request, errorMessage } from "./api.js";
import { conflictPanel } from "./conflict.js";
import { field, formatJSON, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { createDocEditor } from "./doceditor.js";
import { latest } from "./latest.js";
import { MISSING } from "./merge.js";
import { can, denyReason, gate, reasonNote } from "./perms.js";
import { undoNote } from "./versions.js";

/** render builds the Entities page in root. */
export function render(root, ctx = {}) {
  const select = h("select", { id: "ent-db", testid: "ent-db" }, h("option", { value: "", text: "Loading…" }));
  const newDb = h("input", { id: "ent-db-new", testid: "ent-db-new", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. chatdb" });
  const key = h("input", { id: "ent-key", testid: "ent-key", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. session_001" });
  const schema = h("input", { id: "ent-schema", testid: "ent-schema", type: "text", autocomplete: "off", spellcheck: "false" });
  const docEditor = createDocEditor("ent-doc", { what: () => `${key.value || "The document"}`, onSave: () => doPut() });
  const doc = docEditor.editor.textarea;
  const setDoc = (text) => docEditor.setValue(text);
  if (ctx.guard) ctx.guard(() => docEditor.confirmDiscard());
  const msg = messageArea("ent-message");
  const btn = (id, text, cls) => h("button", { type: "button", id, testid: id, text, class: cls });
  const get = btn("ent-get", "Get");
  const put = btn("ent-put", "Put");
  const del = btn("ent-delete", "Delete", "danger");
  const conflict = conflictPanel("ent-conflict");
  const writeWhy = denyReason(ctx.me, "write");
  const readWhy = denyReason(ctx.me, "read");
  gate(writeWhy, put, del);
  gate(readWhy, get);
  // loaded is the entity the document was read from: {db, k, etag, doc
  // (the document got, the base of a merge)}. acts counts the page's
  // actions (Get, Put, Delete, Reload of the merge panel), each taken
  // when its request is sent: only the latest one's answer changes the
  // editor, loaded or the merge panel. An older one answered last put
  // its document under the key typed since (a Get), or opened its merge
  // panel over the document got since (a Put's 412).
  let loaded = null;
  const acts = latest();
  // written are the databases this page has put an entity in. The list of
  // databases, read once when the page opens, may answer after a Put
  // created one (it was read before): the list is merged with them, so a
  // database the user has just written to stays to choose from. (Merged
  // rather than read again after each Put: the older list would still
  // come last and would have to lose anyway, and a Put needs no request
  // more.)
  const written = new Set();

  root.append(
    pageHeading("Entities"),
    h("section", { class: "panel" },
      h("div", { class: "grid-2" },
        field("Database", select),
        field("New database (overrides the dropdown)", newDb),
        field("Entity key", key),
        field("Schema ID for Put (optional)", schema, "Validate the document against this schema before writing.")),
      h("label", { for: "ent-doc", text: "Document (JSON)" }),
      docEditor.el,
      h("div", { class: "row" }, get, put, del),
      reasonNote("ent-write-denied", writeWhy, put, del),
      reasonNote("ent-read-denied", readWhy ? `Get and the list of databases: ${readWhy}` : "", get, select),
      msg,
      conflict.el),
  );

  if (can(ctx.me, "read")) fillDatabases(select, msg, written);
  else select.replaceChildren(h("option", { value: "", text: "— type the database below —" }));

  const target = () => {
    const db = newDb.value.trim() || select.value;
    if (!db) throw new Error("Choose a database or type a new one.");
    if (key.value === "") throw new Error("Enter an entity key.");
    return { db, k: key.value };
  };

  const isLoaded = (db, k) => loaded && loaded.db === db && loaded.k === k;

  // nameTarget puts db and k in the form, as the Get of them would have them.
  const nameTarget = (db, k) => {
    key.value = k;
    const listed = [...select.options].some((o) => o.value === db);
    if (listed) select.value = db;
    newDb.value = listed ? "" : db;
  };

  // Get starts once the user let unsaved changes go: "Keep editing" keeps
  // the edit and the merge panel with the choices made in it (it hid the
  // panel before it asked).
  get.addEventListener("click", async () => {
    let t;
    try {
      t = target();
    } catch (e) {
      return showError(msg, e);
    }
    const { db, k } = t;
    if (!(await docEditor.confirmDiscard())) return;
    const current = acts.next();
    conflict.hide();
    loaded = null;
    try {
      const r = await request("GET", entityPath(db, k));
      if (!current()) return;
      if (!r.ok) {
        setDoc("");
        return show(msg, `Could not read ${db} / ${k}: ${errorMessage(r)}`);
      }
      setDoc(r.data === undefined ? r.text : formatJSON(r.data));
      const etag = r.headers.get("ETag") || "";
      loaded = { db, k, etag, doc: r.data === undefined ? MISSING : r.data };
      show(msg, `Loaded ${db} / ${k}` + (etag ? ` (version ${etag})` : ""), "ok");
    } catch (e) {
      if (!current()) return;
      setDoc("");
      showError(msg, e);
    }
  });

  // doPut puts the document under the entity the form names, or under at
  // ({db, k}: a conflict's entity), conditional on pre (a conflict's
  // choice) or else on the version got. A Put of the form hides the merge
  // panel once it is sent (not when the form or the JSON stops it: the
  // panel and its choices stay); a Put of the panel's leaves it until the
  // answer. An answer after a newer action was started only says what
  // came of the Put.
  const doPut = async (pre, at) => {
    if (put.disabled) return;
    try {
      const { db, k } = at || target();
      const p = docEditor.parse();
      if (!p) return show(msg, "Invalid JSON: not saved. The place is marked in the editor.");
      const value = p.doc;
      let path = `/entity/${encodeURIComponent(db)}`;
      if (schema.value.trim()) path += "?schema=" + encodeURIComponent(schema.value.trim());
      const headers = pre || (isLoaded(db, k) ? (loaded.etag ? { "If-Match": loaded.etag } : { "If-None-Match": "*" }) : {});
      // The base of a merge is the version the Put was conditional on: a
      // Get answered meanwhile changes what is loaded.
      const base = isLoaded(db, k) ? loaded.doc : MISSING;
      // What is typed while the Put is on its way stays unsaved.
      const sent = docEditor.value;
      const current = acts.next();
      if (!at) conflict.hide();
      const r = await request("PUT", path, { [k]: value }, { headers });
      if (r.status === 412) {
        if (!current()) return show(msg, `Not saved: ${db} / ${k} changed after you loaded it.`);
        return showConflict(db, k, base, value, sent, current);
      }
      if (!r.ok) return show(msg, errorMessage(r));
      if (current()) {
        conflict.hide();
        loaded = { db, k, etag: r.headers.get("ETag") || "", doc: value };
        docEditor.markClean(sent);
      }
      show(msg, `Saved ${db} / ${k}.`, "ok");
      written.add(db);
      // Whether the database was typed is known from the list, not from
      // the box, which the user may have cleared while the Put was on its
      // way.
      if (![...select.options].some((o) => o.value === db)) {
        select.append(h("option", { value: db, text: db }));
      }
    } catch (e) {
      showError(msg, e);
    }
  };
  put.addEventListener("click", () => doPut());

  // showConflict reads the stored version of db / k and merges it with
  // base (the version the Put was conditional on) and edited (sent: the
  // editor's text put). current is the Put's check: a newer action
  // started while the stored version is read leaves the panel closed.
  //
  // The panel's buttons act on db / k, the entity it names, whatever the
  // form names when they are pressed: the user may have typed another key
  // or database since, and the precondition (the version of db / k just
  // read) means nothing for another entity. (Before, they put to the
  // form's entity: Overwrite sent db / k's If-Match there and met a 412,
  // Reload put k's document under the other key, for a Put to write it
  // there unconditionally.) Each button puts db / k back in the form: the
  // document in the editor is then the one named, and the next Put is
  // conditional on the version the button stored or read, as after a Get.
  async function showConflict(db, k, base, edited, sent, current) {
    const r = await request("GET", entityPath(db, k));
    if (!current()) return show(msg, `Not saved: ${db} / ${k} changed after you loaded it.`);
    if (!r.ok && r.status !== 404) return show(msg, `Changed by someone else, and reading it failed: ${errorMessage(r)}`);
    const stored = r.status === 404 ? null : r.data;
    const etag = r.status === 404 ? "" : r.headers.get("ETag") || "";
    const pre = stored === null ? { "If-None-Match": "*" } : { "If-Match": etag };
    const at = { db, k };
    show(msg, `Not saved: ${db} / ${k} changed after you loaded it.`);
    conflict.show({ key: `${db} / ${k}`, base, stored, edited, sent, typed: () => docEditor.value }, {
      reload: () => {
        acts.drop();
        conflict.hide();
        nameTarget(db, k);
        loaded = { db, k, etag, doc: stored === null ? MISSING : stored };
        setDoc(stored === null ? "" : formatJSON(stored));
        show(msg, stored === null ? `${db} / ${k} was deleted.` : `Reloaded the stored version of ${db} / ${k}.`, "info");
      },
      // Overwrite puts what the editor holds now: the edit, and what was
      // typed after the conflict was shown.
      overwrite: () => {
        nameTarget(db, k);
        loaded = { db, k, etag, doc: stored === null ? MISSING : stored };
        doPut(pre, at);
      },
      saveMerged: (merged) => {
        nameTarget(db, k);
        loaded = { db, k, etag, doc: stored };
        docEditor.editor.setValue(formatJSON(merged));
        doPut(pre, at);
      },
    });
  }

  // Delete starts once confirmed; the merge panel stays until then. Its
  // answer after a newer action only says what came of it: it marked the
  // document got since as saved, and a Get of the same entity answered
  // meanwhile lost its version.
  del.addEventListener("click", async () => {
    try {
      const { db, k } = target();
      if (!window.confirm(`Delete entity "${k}" from database "${db}"? ${await undoNote(db)}`)) return;
      const current = acts.next();
      conflict.hide();
      const headers = isLoaded(db, k) && loaded.etag ? { "If-Match": loaded.etag } : {};
      const r = await request("DELETE", entityPath(db, k), undefined, { headers });
      if (r.status === 412) return show(msg, `Not deleted: ${k} changed after you loaded it. Get it again first.`);
      if (!r.ok) return show(msg, errorMessage(r));
      if (current()) {
        // The form may name another entity by now: its version stays.
        if (isLoaded(db, k)) loaded = null;
        docEditor.markClean();
      }
      show(msg, `Deleted ${db} / ${k}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  });
}

// fillDatabases fills the dropdown with the databases listed and those in
// written (put to since the page opened), keeping the choice made.
async function fillDatabases(select, msg, written) {
  const keep = () => {
    for (const n of written) if (![...select.options].some((o) => o.value === n)) select.append(h("option", { value: n, text: n }));
  };
  try {
    const list = await call("GET", "/api/databases");
    const names = (Array.isArray(list) ? list : []).map((d) => (typeof d === "string" ? d : d.name));
    const chosen = select.value;
    select.replaceChildren(h("option", { value: "", text: names.length || written.size ? "— choose —" : "— none yet —" }));
    for (const n of names) select.append(h("option", { value: n, text: n }));
    keep();
    select.value = chosen;
    if (select.selectedIndex < 0) select.value = "";
  } catch (e) {
    select.replaceChildren(h("option", { value: "", text: "— unavailable —" }));
    keep();
    showError(msg, e);
  }
}
