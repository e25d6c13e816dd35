// schemas.js: list (GET /admin/schemas), load (GET /schema/{id}),
// create/edit in a textarea and save (PUT /schema/{id}, server errors shown
// inline), delete after a confirmation (DELETE /schema/{id}; a 409 names
// the databases still bound to it), and export of the schema in the editor as a Pydantic v2 model or
// TypeScript interfaces (codegen.js) with a Copy button. The root type is
// named pascalCase(schema ID), e.g. "chat.v1" -> ChatV1 (title when no ID).

import { call } from "./api.js";
import { toPydantic, toTypeScript, pascalCase } from "./codegen.js";
import { copyButton, field, formatJSON, h, messageArea, pageHeading, parseJSON, show, showError } from "./dom.js";
import { denyReason, gate, reasonNote } from "./perms.js";
import { confirmByName } from "./dialog.js";

const TEMPLATE = {
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  properties: {},
  required: [],
};

/** render builds the Schemas page in root. */
export function render(root, ctx = {}) {
  const list = h("ul", { id: "schema-list", testid: "schema-list", class: "schema-list", "aria-label": "Schema IDs" });
  const listMsg = messageArea("schema-list-message");
  const id = h("input", { id: "schema-id", testid: "schema-id", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. chat.v1" });
  const text = h("textarea", { id: "schema-text", testid: "schema-text", spellcheck: "false", rows: "18" });
  const msg = messageArea("schema-message");
  const btn = (bid, label, cls) => h("button", { type: "button", id: bid, testid: bid, text: label, class: cls });
  const newBtn = btn("schema-new", "New", "secondary");
  const load = btn("schema-load", "Load");
  const save = btn("schema-save", "Save");
  const del = btn("schema-delete", "Delete", "danger");
  const writeWhy = denyReason(ctx.me, "write");
  gate(writeWhy, save, del);
  const exPy = btn("schema-export-pydantic", "Export Pydantic", "secondary");
  const exTs = btn("schema-export-ts", "Export TypeScript", "secondary");
  const out = h("pre", { id: "schema-export", testid: "schema-export", tabindex: "0", "aria-label": "Exported code" });
  const copyStatus = messageArea("schema-copy-status");
  const copy = copyButton("schema-copy", () => out.textContent, copyStatus);
  const outTitle = h("h3", { id: "schema-export-title", text: "Export" });

  root.append(
    pageHeading("Schemas"),
    h("section", { class: "panel", "aria-labelledby": "schema-list-title" },
      h("h3", { id: "schema-list-title", text: "Stored schemas" }), listMsg, list),
    h("section", { class: "panel", "aria-labelledby": "schema-edit-title" },
      h("h3", { id: "schema-edit-title", text: "Edit" }),
      field("Schema ID", id),
      h("label", { for: "schema-text", text: "Schema (JSON)" }),
      text,
      h("div", { class: "row" }, newBtn, load, save, exPy, exTs, del),
      reasonNote("schema-write-denied", writeWhy, save, del),
      msg),
    h("section", { class: "panel", "aria-labelledby": "schema-export-title" },
      outTitle, h("div", { class: "row" }, copy), copyStatus, out),
  );

  const loadSchema = async (sid) => {
    if (!sid) return show(msg, "Enter a schema ID.");
    try {
      const doc = await call("GET", `/schema/${encodeURIComponent(sid)}`);
      id.value = sid;
      text.value = formatJSON(doc);
      show(msg, `Loaded ${sid}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  };

  newBtn.addEventListener("click", () => {
    id.value = "";
    text.value = formatJSON(TEMPLATE);
    show(msg, "");
    id.focus();
  });
  load.addEventListener("click", () => loadSchema(id.value.trim()));
  save.addEventListener("click", async () => {
    const sid = id.value.trim();
    if (!sid) return show(msg, "Enter a schema ID.");
    try {
      parseJSON(text.value);
    } catch (e) {
      return show(msg, e.message);
    }
    try {
      await call("PUT", `/schema/${encodeURIComponent(sid)}`, text.value);
      show(msg, `Saved ${sid}.`, "ok");
      loadList(list, listMsg, loadSchema);
    } catch (e) {
      showError(msg, e);
    }
  });

  del.addEventListener("click", async () => {
    const sid = id.value.trim();
    if (!sid) return show(msg, "Enter the ID of the schema to delete.");
    const ok = await confirmByName({ title: `Delete schema "${sid}"?`, name: sid, action: "Delete schema",
      text: "Writes that name it are refused and exported code no longer matches a stored schema. This cannot be undone." });
    if (!ok) return;
    try {
      await call("DELETE", `/schema/${encodeURIComponent(sid)}`);
      show(msg, `Deleted schema ${sid}.`, "ok");
      loadList(list, listMsg, loadSchema);
    } catch (e) {
      // 409: the server's sentence names the databases still bound to it.
      showError(msg, e);
    }
  });

  const exporter = (gen, lang) => () => {
    let schema;
    try {
      schema = parseJSON(text.value);
    } catch (e) {
      return show(msg, e.message);
    }
    const rootName = pascalCase(id.value.trim() || (schema && schema.title) || "Model");
    try {
      out.textContent = gen(schema, rootName);
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

  text.value = formatJSON(TEMPLATE);
  loadList(list, listMsg, loadSchema);
}

async function loadList(list, listMsg, loadSchema) {
  try {
    const ids = await call("GET", "/admin/schemas");
    list.replaceChildren(...(Array.isArray(ids) ? ids : []).map((sid) =>
      h("li", {}, h("button", { type: "button", class: "secondary", testid: "schema-item", "data-schema": sid, text: sid, on: { click: () => loadSchema(sid) } }))));
    show(listMsg, list.children.length ? "" : "No schemas yet.", "info");
  } catch (e) {
    showError(listMsg, e);
  }
}
