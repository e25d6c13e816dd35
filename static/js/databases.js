// databases.js: one card per database (GET /api/databases); a card lists
// its entity keys (GET /api/databases/{db}/keys?limit=100, "More" follows
// "next") or, when the server has no listing (404/405), offers a key box.
// A key opens the entity (GET /entity/{db}?key=K) in a JSON editor that
// validates before PUT /entity/{db} {K: doc}; Delete asks first
// (DELETE /entity/{db}?key=K).

import { call, entityPath, request, errorMessage } from "./api.js";
import { clear, field, formatJSON, h, messageArea, pageHeading, parseJSON, show, showError } from "./dom.js";

const PAGE = 100;

/** render builds the Databases page in root. */
export function render(root) {
  const msg = messageArea("db-message");
  const cards = h("ul", { id: "db-cards", testid: "db-cards", class: "cards", "aria-label": "Databases" });
  const detail = h("section", { id: "db-detail", testid: "db-detail", class: "panel", "aria-labelledby": "db-detail-title", hidden: true });
  root.append(pageHeading("Databases"), msg, cards, detail);
  loadCards(cards, detail, msg);
}

async function loadCards(cards, detail, msg) {
  try {
    const names = await call("GET", "/api/databases");
    clear(cards);
    if (!Array.isArray(names) || names.length === 0) {
      show(msg, "No databases yet. Put an entity on the Entities page to create one.", "info");
      return;
    }
    for (const name of names) {
      const card = h("button", {
        type: "button", class: "card", testid: "db-card", "data-db": name, "aria-pressed": "false",
        on: { click: () => openDatabase(name, cards, detail) },
      }, h("strong", { text: name }));
      cards.append(h("li", {}, card));
    }
  } catch (e) {
    showError(msg, e);
  }
}

function openDatabase(db, cards, detail) {
  for (const c of cards.querySelectorAll(".card")) c.setAttribute("aria-pressed", String(c.dataset.db === db));
  clear(detail);
  detail.hidden = false;
  const keyList = h("ul", { id: "db-keys", testid: "db-keys", class: "key-list", "aria-label": `Entity keys in ${db}` });
  const more = h("button", { type: "button", id: "db-keys-more", testid: "db-keys-more", class: "secondary", text: "More", hidden: true });
  const listMsg = messageArea("db-list-message");
  const keyInput = h("input", { id: "db-key-input", testid: "db-key-input", type: "text", autocomplete: "off", spellcheck: "false" });
  const openBtn = h("button", { type: "submit", id: "db-key-open", testid: "db-key-open", text: "Open" });
  const openForm = h("form", { class: "row", novalidate: true }, field("Entity key", keyInput), openBtn);
  const editor = buildEditor(db, keyList);
  openForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = keyInput.value;
    if (key === "") return show(listMsg, "Enter an entity key.");
    show(listMsg, "");
    editor.open(key);
  });
  detail.append(
    h("h3", { id: "db-detail-title", text: db }),
    h("div", { class: "split" },
      h("div", {}, h("h4", { text: "Entities" }), listMsg, keyList, more, openForm),
      editor.el),
  );
  loadKeys(db, keyList, more, listMsg, editor, "");
  more.addEventListener("click", () => loadKeys(db, keyList, more, listMsg, editor, more.dataset.cursor || ""));
}

async function loadKeys(db, keyList, more, listMsg, editor, cursor) {
  let path = `/api/databases/${encodeURIComponent(db)}/keys?limit=${PAGE}`;
  if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
  more.disabled = true;
  try {
    const r = await request("GET", path);
    if (r.status === 404 || r.status === 405 || (r.ok && !(r.data && Array.isArray(r.data.keys)))) {
      keyList.hidden = true;
      more.hidden = true;
      show(listMsg, "This server has no key listing; open an entity by its key.", "info");
      return;
    }
    if (!r.ok) return show(listMsg, errorMessage(r));
    for (const key of r.data.keys) keyList.append(keyItem(key, editor));
    if (!cursor && r.data.keys.length === 0) show(listMsg, "No entities.", "info");
    more.hidden = !r.data.next;
    more.dataset.cursor = r.data.next || "";
  } catch (e) {
    showError(listMsg, e);
  } finally {
    more.disabled = false;
  }
}

function keyItem(key, editor) {
  const b = h("button", { type: "button", testid: "db-key-item", "data-key": key, text: key, on: { click: () => editor.open(key) } });
  return h("li", { "data-key": key }, b);
}

// buildEditor returns {el, open(key)}: the JSON editor for one entity of db.
function buildEditor(db, keyList) {
  const title = h("h4", { id: "entity-title", testid: "entity-title", text: "No entity open" });
  const ta = h("textarea", { id: "entity-editor", testid: "entity-editor", spellcheck: "false", disabled: true, rows: "16" });
  const save = h("button", { type: "button", id: "entity-save", testid: "entity-save", text: "Save", disabled: true });
  const del = h("button", { type: "button", id: "entity-delete", testid: "entity-delete", class: "danger", text: "Delete", disabled: true });
  const msg = messageArea("entity-message");
  let current = null;

  const markCurrent = () => {
    for (const b of keyList.querySelectorAll("button")) {
      if (b.dataset.key === current) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  };

  async function open(key) {
    current = key;
    title.textContent = `${db} / ${key}`;
    markCurrent();
    show(msg, "Loading…", "info");
    try {
      const r = await request("GET", entityPath(db, key));
      ta.disabled = save.disabled = false;
      if (r.status === 404) {
        ta.value = "{}";
        del.disabled = true;
        show(msg, "No such entity yet — edit the document and Save to create it.", "info");
        return;
      }
      if (!r.ok) {
        ta.value = "";
        ta.disabled = save.disabled = del.disabled = true;
        return show(msg, errorMessage(r));
      }
      ta.value = r.data === undefined ? r.text : formatJSON(r.data);
      del.disabled = false;
      show(msg, "");
    } catch (e) {
      showError(msg, e);
    }
  }

  save.addEventListener("click", async () => {
    if (current === null) return;
    let doc;
    try {
      doc = parseJSON(ta.value);
    } catch (e) {
      return show(msg, e.message);
    }
    try {
      await call("PUT", `/entity/${encodeURIComponent(db)}`, { [current]: doc });
      ta.value = formatJSON(doc);
      del.disabled = false;
      if (!keyList.hidden && ![...keyList.children].some((li) => li.dataset.key === current)) {
        keyList.append(keyItem(current, { open }));
        markCurrent();
      }
      show(msg, "Saved.", "ok");
    } catch (e) {
      showError(msg, e);
    }
  });

  del.addEventListener("click", async () => {
    if (current === null) return;
    if (!window.confirm(`Delete entity "${current}" from ${db}?`)) return;
    try {
      await call("DELETE", entityPath(db, current));
      for (const li of [...keyList.children]) if (li.dataset.key === current) li.remove();
      show(msg, `Deleted ${current}.`, "ok");
      current = null;
      title.textContent = "No entity open";
      ta.value = "";
      ta.disabled = save.disabled = del.disabled = true;
    } catch (e) {
      showError(msg, e);
    }
  });

  const el = h("div", { class: "editor" },
    title,
    h("label", { for: "entity-editor", text: "Document (JSON)" }),
    ta,
    h("div", { class: "row" }, save, del),
    msg);
  return { el, open };
}
