// schemas.js: list (GET /admin/schemas), load (GET /schema/{id}),
// create/edit in the document editor (doceditor.js: text and tree, wrap,
// copy, Ctrl/Cmd+S) and save (PUT /schema/{id}, server errors shown
// inline), delete once its ID is typed (DELETE /schema/{id}; a 409 names
// the databases still bound to it), and export of the schema in the
// editor as a Pydantic v2 model or TypeScript interfaces (codegen.js)
// with a Copy button. The root type is named pascalCase(schema ID), e.g.
// "chat.v1" -> ChatV1 (title when no ID).
//
// A loaded schema lists the databases bound to it (GET
// /schema/{id}/databases), each with "Check stored entities": a job on
// the server (POST /api/databases/{db}/check) whose progress is followed
// (GET /api/databases/{db}/check, every second while it runs) and whose
// result lists the entities that do not match, each a link to it on the
// Databases page. Leaving the page, or loading another schema, with
// unsaved changes asks first.

import { call, request, errorMessage } from "./api.js";
import { toPydantic, toTypeScript, pascalCase } from "./codegen.js";
import { copyButton, field, formatJSON, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { confirmByName } from "./dialog.js";
import { createDocEditor } from "./doceditor.js";
import { latest, latestBy } from "./latest.js";
import { can, denyReason, gate, reasonNote } from "./perms.js";

const TEMPLATE = {
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  properties: {},
  required: [],
};
const POLL_MS = 1000;

/** render builds the Schemas page in root; it returns the cleanup that stops following checks. */
export function render(root, ctx = {}) {
  const list = h("ul", { id: "schema-list", testid: "schema-list", class: "schema-list", "aria-label": "Schema IDs" });
  const listMsg = messageArea("schema-list-message");
  const id = h("input", { id: "schema-id", testid: "schema-id", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. chat.v1" });
  const msg = messageArea("schema-message");
  const btn = (bid, label, cls) => h("button", { type: "button", id: bid, testid: bid, text: label, class: cls });
  const newBtn = btn("schema-new", "New", "secondary");
  const load = btn("schema-load", "Load");
  const save = btn("schema-save", "Save");
  const del = btn("schema-delete", "Delete", "danger");
  const writeWhy = denyReason(ctx.me, "write");
  gate(writeWhy, save, del);
  const doc = createDocEditor("schema-text", { what: () => `Schema ${id.value.trim() || "(new)"}`, onSave: () => doSave() });
  if (ctx.guard) ctx.guard(() => doc.confirmDiscard());
  const exPy = btn("schema-export-pydantic", "Export Pydantic", "secondary");
  const exTs = btn("schema-export-ts", "Export TypeScript", "secondary");
  const out = h("pre", { id: "schema-export", testid: "schema-export", tabindex: "0", "aria-label": "Exported code" });
  const copyStatus = messageArea("schema-copy-status");
  const copy = copyButton("schema-copy", () => out.textContent, copyStatus);
  const outTitle = h("h3", { id: "schema-export-title", text: "Export" });
  const bound = boundPanel(ctx);
  // Only the latest load of the list is drawn: the page's first load
  // answered after the one a save or delete asked drew the older list.
  const lists = latest();
  const reloadList = () => loadList(list, listMsg, loadSchema, lists.next());

  root.append(
    pageHeading("Schemas"),
    h("section", { class: "panel", "aria-labelledby": "schema-list-title" },
      h("h3", { id: "schema-list-title", text: "Stored schemas" }), listMsg, list),
    h("section", { class: "panel", "aria-labelledby": "schema-edit-title" },
      h("h3", { id: "schema-edit-title", text: "Edit" }),
      field("Schema ID", id),
      h("label", { for: "schema-text", text: "Schema (JSON)" }),
      doc.el,
      h("div", { class: "row" }, newBtn, load, save, exPy, exTs, del),
      reasonNote("schema-write-denied", writeWhy, save, del),
      msg),
    bound.el,
    h("section", { class: "panel", "aria-labelledby": "schema-export-title" },
      outTitle, h("div", { class: "row" }, copy), copyStatus, out),
  );

  // acts counts the loads, News, saves and deletes: a schema read is put
  // in the editor only while its load is the latest of them (an older one
  // answered last replaced the schema the user chose since), and a save
  // or delete answered after a newer action only says what came of it (it
  // marked the schema loaded since as saved and showed the databases
  // bound to its own schema under it).
  const acts = latest();
  const loadSchema = async (sid) => {
    if (!sid) return show(msg, "Enter a schema ID.");
    if (!(await doc.confirmDiscard())) return;
    const current = acts.next();
    try {
      const schema = await call("GET", `/schema/${encodeURIComponent(sid)}`);
      if (!current()) return;
      id.value = sid;
      doc.setValue(formatJSON(schema));
      show(msg, `Loaded ${sid}.`, "ok");
      bound.show(sid);
    } catch (e) {
      if (current()) showError(msg, e);
    }
  };

  newBtn.addEventListener("click", async () => {
    if (!(await doc.confirmDiscard())) return;
    acts.drop();
    id.value = "";
    doc.setValue(formatJSON(TEMPLATE));
    show(msg, "");
    bound.show("");
    id.focus();
  });
  load.addEventListener("click", () => loadSchema(id.value.trim()));
  async function doSave() {
    if (save.disabled) return;
    const sid = id.value.trim();
    if (!sid) return show(msg, "Enter a schema ID.");
    if (!doc.parse()) return show(msg, "Invalid JSON: not saved. The place is marked in the editor.");
    // What is typed while the save is on its way stays unsaved.
    const sent = doc.value;
    const current = acts.next();
    try {
      await call("PUT", `/schema/${encodeURIComponent(sid)}`, sent);
      if (current()) {
        doc.markClean(sent);
        bound.show(sid);
      }
      show(msg, `Saved ${sid}.`, "ok");
      reloadList();
    } catch (e) {
      showError(msg, e);
    }
  }
  save.addEventListener("click", doSave);

  del.addEventListener("click", async () => {
    const sid = id.value.trim();
    if (!sid) return show(msg, "Enter the ID of the schema to delete.");
    const ok = await confirmByName({ title: `Delete schema "${sid}"?`, name: sid, action: "Delete schema",
      text: "Writes that name it are refused and exported code no longer matches a stored schema. This cannot be undone." });
    if (!ok) return;
    const current = acts.next();
    try {
      await call("DELETE", `/schema/${encodeURIComponent(sid)}`);
      if (current()) {
        doc.markClean();
        bound.show("");
      }
      show(msg, `Deleted schema ${sid}.`, "ok");
      reloadList();
    } catch (e) {
      // 409: the server's sentence names the databases still bound to it.
      showError(msg, e);
    }
  });

  const exporter = (gen, lang) => () => {
    const p = doc.parse();
    if (!p) return show(msg, "Invalid JSON: the place is marked in the editor.");
    const rootName = pascalCase(id.value.trim() || (p.doc && p.doc.title) || "Model");
    try {
      out.textContent = gen(p.doc, rootName);
      out.dataset.lang = lang;
      outTitle.textContent = `Export (${lang})`;
      show(copyStatus, "");
      show(msg, "");
    } catch (e) {
      show(msg, `Export failed: ${e.message}`);
    }
  };
  exPy.addEventListener("click", exporter(toPydantic, "Pydantic"));
  exTs.addEventListener("click", exporter(toTypeScript, "TypeScript"));

  doc.setValue(formatJSON(TEMPLATE));
  reloadList();
  return () => bound.stop();
}

// loadList draws the list of schemas while current() holds.
async function loadList(list, listMsg, loadSchema, current) {
  try {
    const ids = await call("GET", "/admin/schemas");
    if (!current()) return;
    list.replaceChildren(...(Array.isArray(ids) ? ids : []).map((sid) =>
      h("li", {}, h("button", { type: "button", class: "secondary", testid: "schema-item", "data-schema": sid, text: sid, on: { click: () => loadSchema(sid) } }))));
    show(listMsg, list.children.length ? "" : "No schemas yet.", "info");
  } catch (e) {
    if (current()) showError(listMsg, e);
  }
}

// boundPanel is the list of the databases bound to the loaded schema,
// with the check of their stored entities. Its elements: #schema-dbs
// (li[data-db]), #schema-dbs-message, per database
// button[data-testid=schema-check][data-db], progress (data-state and
// data-job: the check drawn) and
// [data-testid=schema-check-result] with a[data-key] per mismatch.
function boundPanel(ctx) {
  const list = h("ul", { id: "schema-dbs", testid: "schema-dbs", class: "bound-list" });
  const msg = messageArea("schema-dbs-message");
  const checkWhy = denyReason(ctx.me, "write");
  const title = h("h3", { id: "schema-dbs-title", text: "Bound databases" });
  const el = h("section", { class: "panel", id: "schema-bound", testid: "schema-bound", "aria-labelledby": "schema-dbs-title", hidden: true },
    title, h("p", { class: "hint", text: "Binding validates every later write; Check stored entities validates what is already stored, on the server." }),
    msg, list, reasonNote("schema-check-denied", checkWhy ? `Check stored entities: ${checkWhy}` : ""));
  const timers = new Map(); // db -> timeout of its poll
  const seqs = latestBy(); // per database: an answer to an older request is dropped
  let shown = "";

  const stop = () => {
    for (const t of timers.values()) clearTimeout(t);
    timers.clear();
  };

  const row = (db) => {
    const b = h("button", { type: "button", class: "secondary", testid: "schema-check", "data-db": db, text: "Check stored entities" });
    gate(checkWhy, b);
    const progress = h("progress", { testid: "schema-check-progress", hidden: true, max: 1, "aria-label": `Check of ${db}` });
    const state = h("span", { class: "hint", testid: "schema-check-state" });
    const result = h("div", { testid: "schema-check-result", class: "check-result" });
    b.addEventListener("click", () => start(db, { b, progress, state, result }));
    const li = h("li", { "data-db": db },
      h("div", { class: "row" }, h("a", { href: `#/databases?db=${encodeURIComponent(db)}`, class: "mono", text: db }), b, progress, state), result);
    // data-ready marks the row once its latest check (if any) is drawn.
    follow(db, { b, progress, state, result }, true).finally(() => li.setAttribute("data-ready", "true"));
    return li;
  };

  async function start(db, ui) {
    ui.b.disabled = true;
    clearTimeout(timers.get(db));
    const current = seqs.next(db);
    try {
      const job = await call("POST", `/api/databases/${encodeURIComponent(db)}/check`, {});
      if (!current()) return;
      draw(db, ui, job);
      follow(db, ui, false);
    } catch (e) {
      showError(msg, e);
      ui.b.disabled = !!ui.b.dataset.denied;
    }
  }

  // follow reads db's latest check and, while it runs, reads it again.
  async function follow(db, ui, quiet) {
    clearTimeout(timers.get(db));
    if (!can(ctx.me, "read")) return;
    const current = seqs.next(db);
    const r = await request("GET", `/api/databases/${encodeURIComponent(db)}/check`);
    if (!ui.b.isConnected || !current()) return;
    if (r.status === 404) return;
    if (!r.ok) return quiet ? undefined : show(msg, errorMessage(r));
    draw(db, ui, r.data);
    if (r.data.state === "running") timers.set(db, setTimeout(() => follow(db, ui, quiet), POLL_MS));
  }

  function draw(db, ui, job) {
    const running = job.state === "running";
    ui.b.disabled = running || !!ui.b.dataset.denied;
    ui.progress.hidden = false;
    ui.progress.max = job.total || 1;
    if (job.total || !running) ui.progress.value = job.total ? job.done : 1;
    else ui.progress.removeAttribute("value");
    ui.progress.dataset.state = job.state;
    ui.progress.dataset.job = job.id;
    ui.state.textContent = running ? `Checking: ${job.done} of ${job.total}` :
      job.state === "failed" ? `Failed: ${job.error || ""}` :
        `${job.done} checked against ${job.schema}: ${job.mismatched === 0 ? "all match" : `${job.mismatched} do not match`}`;
    const items = (job.mismatches || []).map((m) => h("li", { "data-key": m.key },
      h("a", { href: `#/databases?db=${encodeURIComponent(db)}&key=${encodeURIComponent(m.key)}`, class: "mono", "data-key": m.key, text: m.key }),
      ": ", (m.errors || []).map((e) => `${e.path || "(root)"} ${e.message}`).join("; ") + (m.omitted ? ` (and ${m.omitted} more)` : "")));
    const more = job.mismatched > items.length ? h("p", { class: "hint", text: `${job.mismatched - items.length} more are not listed.` }) : null;
    ui.result.replaceChildren(...(items.length ? [h("ul", { class: "mismatch-list" }, items)] : []), more || "");
  }

  return {
    el,
    stop,
    async show(sid) {
      stop();
      shown = sid;
      list.replaceChildren();
      show(msg, "");
      el.hidden = !sid;
      if (!sid) return;
      title.textContent = `Databases bound to ${sid}`;
      if (!can(ctx.me, "read")) return show(msg, "Listing the bound databases needs the read permission.", "info");
      const r = await request("GET", `/schema/${encodeURIComponent(sid)}/databases`);
      if (shown !== sid) return;
      if (!r.ok) return show(msg, errorMessage(r));
      const dbs = (r.data && r.data.databases) || [];
      list.replaceChildren(...dbs.map(row));
      show(msg, dbs.length ? "" : `No database is bound to ${sid}. Bind one on the Databases page.`, "info");
    },
  };
}
