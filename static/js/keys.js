// keys.js: API keys (admin with every database). The list comes first
// (GET /api/keys: permissions, databases, last use, expiry); Create key
// opens a dialog (POST /api/keys) whose databases are picked from
// GET /api/databases (or typed as a name or a prefix ending in *), and the
// new secret is shown once, with Copy. Each row can be edited (PATCH
// /api/keys/{id}: name, permissions, databases, expiry), rotated (POST
// /api/keys/{id}/rotate: a new secret, the old one valid for a grace
// period) or deleted after its name is typed (DELETE /api/keys/{id}).

import { call } from "./api.js";
import { copyButton, field, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { confirmByName, modal } from "./dialog.js";
import { timeElement } from "./format.js";
import { latest } from "./latest.js";

const PERMS = ["read", "write", "admin"];
const COLUMNS = ["Name", "ID", "Permissions", "Databases", "Last used", "Created", "Expires", "Actions"];
const EXPIRY = [["", "Never"], ["1d", "In 1 day"], ["7d", "In 7 days"], ["30d", "In 30 days"], ["90d", "In 90 days"], ["365d", "In 1 year"], ["custom", "Other…"]];
const GRACE = [["0s", "Stops at once"], ["1h", "1 hour"], ["24h", "24 hours"], ["168h", "7 days"]];
const DEFAULT_GRACE = "24h";

/** render builds the API Keys page in root. */
export function render(root) {
  const msg = messageArea("keys-message");
  const create = h("button", { type: "button", id: "key-new", testid: "key-new", text: "Create key" });
  const tbody = h("tbody");
  const table = h("table", { id: "keys-table", testid: "keys-table", class: "cards-on-phone" },
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", text: c })))),
    tbody);
  // loads: only the latest load of the list is drawn (a reload after a
  // create, edit or delete answered before the page's first load drew
  // the older list last, without the change).
  const page = { msg, tbody, databases: [], loads: latest() };
  page.reload = () => loadKeys(page);
  page.form = keyForm(page);
  page.rotate = rotateDialog(page);
  root.append(
    pageHeading("API Keys"),
    h("div", { class: "row spread" },
      h("p", { class: "hint", text: "Keys are bearer credentials for scripts and the UI. A secret is shown once, when it is made." }), create),
    msg,
    h("section", { class: "panel table-wrap", "aria-labelledby": "key-list-title" }, h("h3", { id: "key-list-title", text: "Keys" }), table),
    page.form.dialog.el, page.rotate.el);
  create.addEventListener("click", () => page.form.openCreate());
  page.reload();
  page.databasesLoaded = loadDatabases(page);
}

async function loadKeys(page) {
  const current = page.loads.next();
  try {
    const data = await call("GET", "/api/keys");
    if (!current()) return;
    const list = Array.isArray(data) ? data : [];
    page.tbody.replaceChildren(...list.map((k) => row(k, page)));
    if (list.length === 0) page.tbody.append(h("tr", {}, h("td", { colspan: String(COLUMNS.length), class: "hint", text: "No API keys yet." })));
  } catch (e) {
    if (current()) showError(page.msg, e);
  }
}

async function loadDatabases(page) {
  try {
    const list = await call("GET", "/api/databases");
    page.databases = (Array.isArray(list) ? list : []).map((d) => (typeof d === "string" ? d : d.name));
  } catch {
    page.databases = []; // names and prefixes can still be typed
  }
}

function row(k, page) {
  const opt = (v) => (v === undefined || v === null || v === "" ? "—" : Array.isArray(v) ? v.join(", ") || "—" : String(v));
  const btn = (testid, text, cls, click) => h("button", {
    type: "button", class: cls, testid, "data-id": opt(k.id), text, "aria-label": `${text} key ${opt(k.name)}`, on: { click },
  });
  const del = btn("key-delete", "Delete", "danger", async () => {
    const ok = await confirmByName({ title: `Delete API key "${opt(k.name)}"?`, name: opt(k.name), action: "Delete key",
      text: `Clients using key ${opt(k.id)} and its sessions stop working at once. This cannot be undone.` });
    if (!ok) return;
    try {
      await call("DELETE", `/api/keys/${encodeURIComponent(k.id)}`);
      show(page.msg, `Deleted key ${opt(k.name)}.`, "ok");
      page.reload();
    } catch (e) {
      showError(page.msg, e);
    }
  });
  const edit = btn("key-edit", "Edit", "secondary", () => page.form.openEdit(k));
  const rotate = btn("key-rotate", "Rotate", "secondary", () => page.rotate.openFor(k));
  const grace = k.previous_secret_expires_at
    ? h("span", { class: "hint block", testid: "key-grace" }, "Old secret until ", timeElement(k.previous_secret_expires_at)) : null;
  const [name, id, permissions, databases, used, created, expires, actions] = COLUMNS;
  // data-label names each cell when the table is shown as cards.
  return h("tr", { "data-key-id": opt(k.id), "data-key-name": opt(k.name) },
    h("td", { "data-label": name, text: opt(k.name) }),
    h("td", { class: "mono", "data-label": id, text: opt(k.id) }),
    h("td", { "data-label": permissions, testid: "key-permissions", text: opt(k.permissions) }),
    h("td", { "data-label": databases, testid: "key-databases", text: k.databases && k.databases.length ? opt(k.databases) : "all" }),
    h("td", { "data-label": used, testid: "key-last-used" }, timeElement(k.last_used_at, "never", { minute: true })),
    h("td", { "data-label": created, testid: "key-created" }, timeElement(k.created_at)),
    h("td", { "data-label": expires, testid: "key-expires-at" }, timeElement(k.expires_at, "never"), grace),
    h("td", { class: "actions", "data-label": actions }, h("div", { class: "row" }, edit, rotate, del)));
}

// secretPanel shows a secret once, with Copy; done closes its dialog.
// Its elements are #<id> (the secret), #<id>-box, -note, -copy, -done.
function secretPanel(id, onDone) {
  const secret = h("code", { id, testid: id, class: "secret" });
  const note = h("p", { id: id + "-note", testid: id + "-note" });
  const copyStatus = messageArea(id + "-copy-status");
  const done = h("button", { type: "button", id: id + "-done", testid: id + "-done", text: "Done" });
  done.addEventListener("click", onDone);
  const el = h("section", { id: id + "-box", testid: id + "-box", class: "warning", hidden: true },
    note, secret, h("div", { class: "row" }, copyButton(id + "-copy", () => secret.textContent, copyStatus, "Copy secret"), done),
    copyStatus);
  return {
    el,
    showSecret(s, text) {
      secret.textContent = s;
      note.textContent = text;
      show(copyStatus, "");
      el.hidden = false;
      done.focus();
    },
    hide() {
      el.hidden = true;
      secret.textContent = "";
    },
  };
}

// keyForm is the dialog that creates a key or edits one.
function keyForm(page) {
  const name = h("input", { id: "key-name", testid: "key-name", type: "text", autocomplete: "off", required: true, maxlength: "128" });
  const perms = PERMS.map((p) => h("input", { type: "checkbox", id: "key-perm-" + p, testid: "key-perm-" + p, value: p }));
  const expiry = h("select", { id: "key-expiry", testid: "key-expiry" });
  const custom = h("input", { id: "key-expires", testid: "key-expires", type: "text", autocomplete: "off", placeholder: "e.g. 12h or 45d", hidden: true });
  const allDbs = h("input", { type: "radio", name: "key-db-scope", id: "key-db-all", testid: "key-db-all", value: "all" });
  const someDbs = h("input", { type: "radio", name: "key-db-scope", id: "key-db-some", testid: "key-db-some", value: "some" });
  const dbList = h("ul", { id: "key-db-list", testid: "key-db-list", class: "check-list", "aria-label": "Databases the key may use" });
  const addInput = h("input", { id: "key-db-add", testid: "key-db-add", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "name or prefix*" });
  const addBtn = h("button", { type: "button", id: "key-db-add-button", testid: "key-db-add-button", class: "secondary", text: "Add" });
  const pick = h("div", { id: "key-db-pick", testid: "key-db-pick", class: "db-pick" },
    dbList, h("div", { class: "row" }, h("label", { for: "key-db-add", class: "visually-hidden", text: "Add a database name or a prefix ending in *" }), addInput, addBtn));
  const submit = h("button", { type: "submit", id: "key-create", testid: "key-create", text: "Create key" });
  const cancel = h("button", { type: "button", id: "key-cancel", testid: "key-cancel", class: "secondary", text: "Cancel" });
  const formMsg = messageArea("key-form-message");
  const fields = h("div", { id: "key-fields" },
    field("Name", name),
    h("fieldset", {}, h("legend", { text: "Permissions" }),
      perms.map((cb) => h("span", { class: "check" }, cb, " ", h("label", { for: cb.id, text: cb.value })))),
    field("Expires", expiry, "When the key stops working."), custom,
    h("fieldset", {}, h("legend", { text: "Databases" }),
      h("span", { class: "check" }, allDbs, " ", h("label", { for: "key-db-all", text: "All databases" })),
      h("span", { class: "check" }, someDbs, " ", h("label", { for: "key-db-some", text: "Only these" })),
      pick),
    formMsg,
    h("div", { class: "row end" }, cancel, submit));
  const secret = secretPanel("key-secret", () => dialog.close("done"));
  // acts counts the submits; closing the dialog (or opening it) supersedes
  // the one on its way. Only the latest one's answer changes the dialog:
  // one answered after the dialog was closed only says what came of it
  // (it showed a new key's secret, or closed the dialog, when the user
  // had opened it again for another key).
  const acts = latest();
  const dialog = modal("key-dialog", "Create an API key", [fields, secret.el], () => {
    acts.drop();
    page.reload();
  });
  let editing = null; // the key being edited; null when creating

  const addDb = (db, checked) => {
    if (!db) return;
    let cb = dbList.querySelector(`input[data-db="${CSS.escape(db)}"]`);
    if (!cb) {
      const cid = "key-db-" + dbList.children.length;
      cb = h("input", { type: "checkbox", id: cid, "data-db": db, value: db });
      dbList.append(h("li", {}, cb, " ", h("label", { for: cid, class: "mono", text: db })));
    }
    if (checked) cb.checked = true;
  };
  const syncScope = () => {
    pick.hidden = !someDbs.checked;
  };
  allDbs.addEventListener("change", syncScope);
  someDbs.addEventListener("change", syncScope);
  expiry.addEventListener("change", () => {
    custom.hidden = expiry.value !== "custom";
    if (!custom.hidden) custom.focus();
  });
  addBtn.addEventListener("click", () => {
    addDb(addInput.value.trim(), true);
    addInput.value = "";
  });
  addInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      addBtn.click();
    }
  });
  cancel.addEventListener("click", () => dialog.close("cancel"));

  const reset = (k) => {
    acts.drop();
    editing = k;
    submit.disabled = false;
    secret.hide();
    fields.hidden = false;
    show(formMsg, "");
    name.value = k ? k.name : "";
    for (const cb of perms) cb.checked = k ? (k.permissions || []).includes(cb.value) : cb.value === "read";
    const opts = k ? [["keep", k.expires_at ? "Keep (" + new Date(k.expires_at).toLocaleString() + ")" : "Keep (never)"], ...EXPIRY] : EXPIRY;
    expiry.replaceChildren(...opts.map(([v, label]) => h("option", { value: v, text: label })));
    expiry.value = k ? "keep" : "";
    custom.hidden = true;
    custom.value = "";
    dbList.replaceChildren();
    for (const db of page.databases) addDb(db, false);
    const scoped = k && Array.isArray(k.databases) && k.databases.length > 0;
    if (scoped) for (const db of k.databases) addDb(db, true);
    allDbs.checked = !scoped;
    someDbs.checked = scoped;
    syncScope();
    dialog.title.textContent = k ? `Edit key ${k.name}` : "Create an API key";
    submit.textContent = k ? "Save changes" : "Create key";
    dialog.open();
    name.focus();
    // A dialog opened before the databases came gets them when they come
    // (addDb keeps what was picked meanwhile).
    page.databasesLoaded.then(() => {
      if (dialog.el.open) for (const db of page.databases) addDb(db, false);
    });
  };

  // body is the request body of the form, or an Error naming what to fix.
  const body = () => {
    const b = { name: name.value.trim(), permissions: perms.filter((cb) => cb.checked).map((cb) => cb.value) };
    if (!b.name) return new Error("Enter a name.");
    if (b.permissions.length === 0) return new Error("Choose at least one permission.");
    if (someDbs.checked) {
      const dbs = [...dbList.querySelectorAll("input:checked")].map((cb) => cb.value);
      if (dbs.length === 0) return new Error("Choose at least one database, or All databases.");
      b.databases = dbs;
    } else if (editing) {
      b.databases = null;
    }
    const ex = expiry.value === "custom" ? custom.value.trim() : expiry.value;
    if (expiry.value === "custom" && !ex) return new Error("Enter when the key expires, e.g. 12h or 45d.");
    if (ex && ex !== "keep") b.expires_in = ex;
    else if (!ex && editing) b.expires_in = null;
    return b;
  };

  dialog.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (fields.hidden) return;
    const b = body();
    if (b instanceof Error) return show(formMsg, b.message);
    submit.disabled = true;
    const current = acts.next();
    try {
      if (editing) {
        const k = await call("PATCH", `/api/keys/${encodeURIComponent(editing.id)}`, b);
        show(page.msg, `Saved key ${k.name}.`, "ok");
        if (current()) dialog.close("saved");
        else page.reload();
        return;
      }
      const k = await call("POST", "/api/keys", b);
      if (!current()) {
        show(page.msg, `Created key ${k.name}, but its secret was not shown: the dialog was closed before the answer came. Rotate the key for a secret you can copy.`, "info");
        page.reload();
        return;
      }
      fields.hidden = true;
      secret.showSecret((k && k.secret) || "", `Copy the secret of ${k.name} now: it is shown only once and cannot be retrieved later.`);
      show(page.msg, `Created key ${k.name}.`, "ok");
      page.reload();
    } catch (e) {
      showError(current() ? formMsg : page.msg, e);
    } finally {
      if (current()) submit.disabled = false;
    }
  });
  return { dialog, openCreate: () => reset(null), openEdit: (k) => reset(k) };
}

// rotateDialog asks for the old secret's grace period, rotates, and shows
// the new secret once.
function rotateDialog(page) {
  const grace = h("select", { id: "key-grace", testid: "key-grace-select" },
    GRACE.map(([v, label]) => h("option", { value: v, text: label, selected: v === DEFAULT_GRACE })));
  const go = h("button", { type: "submit", id: "key-rotate-confirm", testid: "key-rotate-confirm", text: "Rotate" });
  const cancel = h("button", { type: "button", class: "secondary", text: "Cancel" });
  const formMsg = messageArea("key-rotate-message");
  const explain = h("p", { id: "key-rotate-text", class: "hint" });
  const fields = h("div", {}, explain, field("The old secret keeps working for", grace), formMsg, h("div", { class: "row end" }, cancel, go));
  const secret = secretPanel("key-rotate-secret", () => d.close("done"));
  // acts: as in keyForm, a rotation answered after the dialog was closed
  // only says what came of it (it showed the new secret in the dialog
  // opened since for another key).
  const acts = latest();
  const d = modal("key-rotate-dialog", "Rotate", [fields, secret.el], () => {
    acts.drop();
    page.reload();
  });
  let key = null;
  cancel.addEventListener("click", () => d.close("cancel"));
  d.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (fields.hidden || !key) return;
    go.disabled = true;
    const current = acts.next();
    try {
      const k = await call("POST", `/api/keys/${encodeURIComponent(key.id)}/rotate`, { grace: grace.value });
      if (!current()) {
        show(page.msg, `Rotated key ${k.name}, but its new secret was not shown: the dialog was closed before the answer came. Rotate it again for a secret you can copy.`, "info");
        page.reload();
        return;
      }
      fields.hidden = true;
      const until = k.previous_secret_expires_at ? `The old secret works until ${new Date(k.previous_secret_expires_at).toLocaleString()}.` : "The old secret no longer works.";
      secret.showSecret(k.secret || "", `The new secret of ${k.name}, shown only once. ${until}`);
      show(page.msg, `Rotated key ${k.name}.`, "ok");
    } catch (e) {
      showError(current() ? formMsg : page.msg, e);
    } finally {
      if (current()) go.disabled = false;
    }
  });
  return {
    el: d.el,
    openFor(k) {
      acts.drop();
      key = k;
      go.disabled = false;
      fields.hidden = false;
      secret.hide();
      show(formMsg, "");
      grace.value = DEFAULT_GRACE;
      d.title.textContent = `Rotate key ${k.name}`;
      explain.textContent = `A new secret replaces the current one of ${k.name}. Give clients time to switch: the old secret (and its sessions) keeps working for the period chosen. A secret replaced by an earlier rotation stops now.`;
      d.open();
      grace.focus();
    },
  };
}
