// keys.js: API keys (admin only). Lists GET /api/keys, creates with
// POST /api/keys {name, permissions, expires_in?, databases?} and shows the
// returned secret once, deletes with DELETE /api/keys/{id} after confirm().

import { call } from "./api.js";
import { copyButton, field, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { timeElement } from "./format.js";

const PERMS = ["read", "write", "admin"];
const COLUMNS = ["ID", "Name", "Permissions", "Databases", "Created", "Expires", "Actions"];

/** render builds the API Keys page in root. */
export function render(root) {
  const msg = messageArea("keys-message");
  const name = h("input", { id: "key-name", testid: "key-name", type: "text", autocomplete: "off", required: true });
  const perms = PERMS.map((p) => h("input", { type: "checkbox", id: "key-perm-" + p, testid: "key-perm-" + p, value: p, checked: p === "read" }));
  const expires = h("input", { id: "key-expires", testid: "key-expires", type: "text", autocomplete: "off", placeholder: "e.g. 24h or 30d" });
  const dbs = h("input", { id: "key-databases", testid: "key-databases", type: "text", autocomplete: "off", placeholder: "e.g. chatdb, logs_*" });
  const create = h("button", { type: "submit", id: "key-create", testid: "key-create", text: "Create key" });
  const form = h("form", { id: "key-form", testid: "key-form", novalidate: true },
    field("Name", name),
    h("fieldset", {}, h("legend", { text: "Permissions" }),
      perms.map((cb) => h("span", {}, cb, " ", h("label", { for: cb.id, text: cb.value })))),
    field("Expires in (optional)", expires, "A Go duration like 24h or a number of days like 30d; empty never expires."),
    field("Databases (optional)", dbs, "Comma-separated names, or prefixes ending in *; empty allows all."),
    create);

  const secret = h("code", { id: "key-secret", testid: "key-secret", class: "secret" });
  const copyStatus = messageArea("key-secret-copy-status");
  const secretBox = h("section", { id: "key-secret-box", testid: "key-secret-box", class: "panel warning", hidden: true, "aria-labelledby": "key-secret-title" },
    h("h3", { id: "key-secret-title", text: "New key secret" }),
    h("p", { text: "Copy this secret now: it is shown only once and cannot be retrieved later." }),
    secret,
    h("div", { class: "row" }, copyButton("key-secret-copy", () => secret.textContent, copyStatus, "Copy secret")),
    copyStatus);

  const tbody = h("tbody");
  const table = h("table", { id: "keys-table", testid: "keys-table", class: "cards-on-phone" },
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", text: c })))),
    tbody);

  root.append(
    pageHeading("API Keys"),
    msg,
    h("section", { class: "panel", "aria-labelledby": "key-create-title" }, h("h3", { id: "key-create-title", text: "Create a key" }), form),
    secretBox,
    h("section", { class: "panel table-wrap", "aria-labelledby": "key-list-title" }, h("h3", { id: "key-list-title", text: "Keys" }), table),
  );

  const reload = () => loadKeys(tbody, msg, reload);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim(), permissions: perms.filter((cb) => cb.checked).map((cb) => cb.value) };
    if (!body.name) return show(msg, "Enter a name.");
    if (body.permissions.length === 0) return show(msg, "Choose at least one permission.");
    if (expires.value.trim()) body.expires_in = expires.value.trim();
    const list = dbs.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (list.length) body.databases = list;
    create.disabled = true;
    try {
      const r = await call("POST", "/api/keys", body);
      secret.textContent = (r && r.secret) || "";
      secretBox.hidden = false;
      show(copyStatus, "");
      show(msg, `Created key ${r && r.name ? r.name : body.name}.`, "ok");
      form.reset();
      secretBox.scrollIntoView({ block: "nearest" });
      reload();
    } catch (e) {
      showError(msg, e);
    } finally {
      create.disabled = false;
    }
  });
  reload();
}

async function loadKeys(tbody, msg, reload) {
  try {
    const data = await call("GET", "/api/keys");
    const list = Array.isArray(data) ? data : data && Array.isArray(data.keys) ? data.keys : [];
    tbody.replaceChildren(...list.map((k) => row(k, msg, reload)));
    if (list.length === 0) tbody.append(h("tr", {}, h("td", { colspan: String(COLUMNS.length), class: "hint", text: "No API keys." })));
  } catch (e) {
    showError(msg, e);
  }
}

function row(k, msg, reload) {
  const opt = (v) => (v === undefined || v === null || v === "" ? "—" : Array.isArray(v) ? v.join(", ") || "—" : String(v));
  const del = h("button", {
    type: "button", class: "danger", testid: "key-delete", "data-id": opt(k.id), text: "Delete",
    "aria-label": `Delete key ${opt(k.name)}`,
    on: {
      click: async () => {
        if (!window.confirm(`Delete API key "${opt(k.name)}" (${opt(k.id)})? Clients using it stop working.`)) return;
        try {
          await call("DELETE", `/api/keys/${encodeURIComponent(k.id)}`);
          show(msg, `Deleted key ${opt(k.name)}.`, "ok");
          reload();
        } catch (e) {
          showError(msg, e);
        }
      },
    },
  });
  // data-label names each cell when the table is shown as cards.
  const [id, name, permissions, databases, created, expires, actions] = COLUMNS;
  return h("tr", { "data-key-id": opt(k.id), "data-key-name": opt(k.name) },
    h("td", { class: "mono", "data-label": id, text: opt(k.id) }),
    h("td", { "data-label": name, text: opt(k.name) }),
    h("td", { "data-label": permissions, text: opt(k.permissions) }),
    h("td", { "data-label": databases, text: k.databases && k.databases.length ? opt(k.databases) : "all" }),
    h("td", { "data-label": created, testid: "key-created" }, timeElement(k.created_at)),
    h("td", { "data-label": expires, testid: "key-expires-at" }, timeElement(k.expires_at, "never")),
    h("td", { class: "actions", "data-label": actions }, del));
}
