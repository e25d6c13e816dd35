// entities.js: get, put and delete one entity. The database comes from a
// dropdown filled by GET /api/databases, or from the free-text box for a
// new database. Calls GET/PUT/DELETE /entity/{db}[?key=K][&schema=ID].

import { call, entityPath, request, errorMessage } from "./api.js";
import { field, formatJSON, h, messageArea, pageHeading, parseJSON, show, showError } from "./dom.js";

/** render builds the Entities page in root. */
export function render(root) {
  const select = h("select", { id: "ent-db", testid: "ent-db" }, h("option", { value: "", text: "Loading…" }));
  const newDb = h("input", { id: "ent-db-new", testid: "ent-db-new", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. chatdb" });
  const key = h("input", { id: "ent-key", testid: "ent-key", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. session_001" });
  const schema = h("input", { id: "ent-schema", testid: "ent-schema", type: "text", autocomplete: "off", spellcheck: "false" });
  const doc = h("textarea", { id: "ent-doc", testid: "ent-doc", spellcheck: "false", rows: "14" });
  const msg = messageArea("ent-message");
  const btn = (id, text, cls) => h("button", { type: "button", id, testid: id, text, class: cls });
  const get = btn("ent-get", "Get");
  const put = btn("ent-put", "Put");
  const del = btn("ent-delete", "Delete", "danger");

  root.append(
    pageHeading("Entities"),
    h("section", { class: "panel" },
      h("div", { class: "grid-2" },
        field("Database", select),
        field("New database (overrides the dropdown)", newDb),
        field("Entity key", key),
        field("Schema ID for Put (optional)", schema, "Validate the document against this schema before writing.")),
      h("label", { for: "ent-doc", text: "Document (JSON)" }),
      doc,
      h("div", { class: "row" }, get, put, del),
      msg),
  );

  fillDatabases(select, msg);

  const target = () => {
    const db = newDb.value.trim() || select.value;
    if (!db) throw new Error("Choose a database or type a new one.");
    if (key.value === "") throw new Error("Enter an entity key.");
    return { db, k: key.value };
  };

  get.addEventListener("click", async () => {
    try {
      const { db, k } = target();
      const r = await request("GET", entityPath(db, k));
      if (!r.ok) return show(msg, errorMessage(r));
      doc.value = r.data === undefined ? r.text : formatJSON(r.data);
      const etag = r.headers.get("ETag");
      show(msg, `Loaded ${db} / ${k}` + (etag ? ` (ETag ${etag})` : ""), "ok");
    } catch (e) {
      showError(msg, e);
    }
  });

  put.addEventListener("click", async () => {
    try {
      const { db, k } = target();
      const value = parseJSON(doc.value);
      let path = `/entity/${encodeURIComponent(db)}`;
      if (schema.value.trim()) path += "?schema=" + encodeURIComponent(schema.value.trim());
      await call("PUT", path, { [k]: value });
      show(msg, `Saved ${db} / ${k}.`, "ok");
      if (newDb.value.trim() && ![...select.options].some((o) => o.value === db)) {
        select.append(h("option", { value: db, text: db }));
      }
    } catch (e) {
      showError(msg, e);
    }
  });

  del.addEventListener("click", async () => {
    try {
      const { db, k } = target();
      if (!window.confirm(`Delete entity "${k}" from ${db}?`)) return;
      await call("DELETE", entityPath(db, k));
      show(msg, `Deleted ${db} / ${k}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  });
}

async function fillDatabases(select, msg) {
  try {
    const names = await call("GET", "/api/databases");
    select.replaceChildren(h("option", { value: "", text: names.length ? "— choose —" : "— none yet —" }));
    for (const n of names) select.append(h("option", { value: n, text: n }));
  } catch (e) {
    select.replaceChildren(h("option", { value: "", text: "— unavailable —" }));
    showError(msg, e);
  }
}
