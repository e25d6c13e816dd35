// databases.js: one card per database (GET /api/databases, with entity
// count and bound schema from GET /api/databases/{db} when the list holds
// names only). A card opens the database: its schema binding (bind and
// unbind with PUT /api/databases/{db} {"schema": ID | null}), Delete
// database (DELETE /api/databases/{db}, admin, once its name is typed),
// and its keys
// (GET /api/databases/{db}/keys?prefix=&limit=&cursor=&include_docs=true)
// with a prefix search, a count, Previous/Next paging and a one-line
// preview of each document; "Find by content" lists the documents a
// selector matches instead (POST /api/databases/{db}/find, paged by its
// bookmark), the selector typed as JSON or built from a field, an operator
// and a value. A key opens the entity in the editor (entityeditor.js).
// Columns chosen from the documents' fields, the sort, the selection with
// its bulk Delete and Export, and the database's NDJSON export and import
// are browse.js's; a sort on a column or by key descending runs through
// find (every matching entity, not one page), a sort by modified time
// orders the page shown.
//
// The place in the list (database, prefix, page size, the cursors of the
// pages before this one, the open key) lives in the URL hash, updated
// without a navigation, and in memory for the session: a Save, a Delete,
// a reload of the tab or a visit to another page comes back to the same
// page of keys.

import { call, request, errorMessage } from "./api.js";
import { clear, field, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { parseTime, plural, relativeTime } from "./format.js";
import { denyReason, gate, reasonNote, setEnabled } from "./perms.js";
import { entityEditor } from "./entityeditor.js";
import { confirmByName } from "./dialog.js";
import {
  cellText, compareValues, deleteSelected, discoverFields, download, exportSelected, fieldValue, loadPrefs,
  parseSort, savePrefs, transferPanel,
} from "./browse.js";
import { latest, latestBy } from "./latest.js";
import { followChanges } from "./live.js";
import { undoNote } from "./versions.js";

const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_PAGE = 25;
const PREVIEW_CHARS = 96;
const NARROW = "(max-width: 1000px)"; // the width below which .split is one column

// remembered is the place of the last visit in this session.
let remembered = null;

/** render builds the Databases page in root. */
export function render(root, ctx = {}) {
  const page = {
    me: ctx.me,
    msg: messageArea("db-message"),
    cards: h("ul", { id: "db-cards", testid: "db-cards", class: "cards", "aria-label": "Databases" }),
    detail: h("section", { id: "db-detail", testid: "db-detail", class: "panel", "aria-labelledby": "db-detail-title", hidden: true }),
    infos: new Map(), // db -> {name, schema, entities}
    infoReads: latestBy(), // per database: its reads of infos (refreshInfo)
    view: null, // the open database's view
  };
  const importName = h("input", { id: "db-new-import-name", testid: "db-new-import-name", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. chatdb_copy" });
  const newImport = transferPanel("db-new", () => importName.value.trim(), {
    exportable: false, importWhy: denyReason(ctx.me, "write"),
    onImported: async (db) => {
      if (!page.infos.has(db)) {
        page.infos.set(db, { name: db, schema: undefined, entities: undefined });
        page.cards.append(h("li", {}, card(page, db)));
      }
      await refreshInfo(page, db);
    },
  });
  const importPanel = h("details", { id: "db-import-panel", testid: "db-import-panel", class: "panel import-panel" },
    h("summary", { text: "Import NDJSON into a database" }),
    field("Database (new or existing)", importName, "Each line {\"key\": ..., \"doc\": ...}; an export's file imports as it is. A line replaces the entity with its key."),
    newImport.el);
  root.append(pageHeading("Databases"), page.msg, importPanel, page.cards, page.detail);
  // Leaving the page, or opening another database, asks first when the
  // open entity has unsaved changes.
  page.confirmDiscard = () => (page.view ? page.view.confirmDiscard() : Promise.resolve(true));
  if (ctx.guard) ctx.guard(page.confirmDiscard);
  // The place of the last visit is opened once the cards are read, unless
  // the user opened a database first: the latest choice wins.
  const place = readPlace() || remembered;
  page.opens = 0;
  loadCards(page).then(() => {
    if (place && place.db && page.infos.has(place.db) && page.opens === 0) openDatabase(page, place.db, place);
  });
  // Leaving the page ends the open database's live updates.
  return () => {
    page.gone = true;
    if (page.view && page.view.feed) page.view.feed.close();
  };
}

// ---- place in the URL --------------------------------------------------------------

function readPlace() {
  const q = location.hash.indexOf("?");
  if (q < 0) return null;
  const p = new URLSearchParams(location.hash.slice(q + 1));
  if (!p.get("db")) return null;
  const limit = Number(p.get("limit"));
  return {
    db: p.get("db"),
    prefix: p.get("prefix") || "",
    limit: PAGE_SIZES.includes(limit) ? limit : DEFAULT_PAGE,
    cursors: (p.get("pages") || "").split(".").filter(Boolean),
    key: p.has("key") ? p.get("key") : null,
  };
}

function writePlace(place) {
  remembered = place ? { ...place, cursors: [...place.cursors] } : null;
  let hash = "#/databases";
  if (place) {
    const p = new URLSearchParams({ db: place.db });
    if (place.prefix) p.set("prefix", place.prefix);
    if (place.limit !== DEFAULT_PAGE) p.set("limit", String(place.limit));
    if (place.cursors.length) p.set("pages", place.cursors.join("."));
    if (place.key !== null) p.set("key", place.key);
    hash += "?" + p.toString();
  }
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// ---- cards -------------------------------------------------------------------------

async function loadCards(page) {
  let list;
  try {
    list = await call("GET", "/api/databases");
  } catch (e) {
    return showError(page.msg, e);
  }
  clear(page.cards);
  if (!Array.isArray(list) || list.length === 0) {
    show(page.msg, "No databases yet. Put an entity on the Entities page to create one.", "info");
    return;
  }
  const names = list.map((d) => (typeof d === "string" ? d : d.name));
  for (const d of list) if (typeof d === "object" && d) page.infos.set(d.name, d);
  for (const name of names) {
    if (!page.infos.has(name)) page.infos.set(name, { name, schema: undefined, entities: undefined });
    page.cards.append(h("li", {}, card(page, name)));
  }
  // Older list answers carry names only: ask for each database's details.
  await Promise.all(names.filter((n) => page.infos.get(n).entities === undefined).map((n) => refreshInfo(page, n)));
}

function card(page, name) {
  const b = h("button", {
    type: "button", class: "card", testid: "db-card", "data-db": name, "aria-pressed": "false",
    on: {
      click: async () => {
        if (page.view && page.view.db !== name && !(await page.confirmDiscard())) return;
        openDatabase(page, name, null);
      },
    },
  }, h("strong", { class: "card-title", text: name }),
  h("span", { class: "card-meta", testid: "db-card-count" }),
  h("span", { class: "card-meta", testid: "db-card-schema" }));
  fillCard(b, page.infos.get(name));
  return b;
}

function fillCard(b, info) {
  const [count, schema] = b.querySelectorAll(".card-meta");
  count.textContent = typeof info.entities === "number" ? plural(info.entities, "entity", "entities") : "…";
  schema.textContent = info.schema === undefined ? "" : info.schema ? `Schema: ${info.schema}` : "No schema";
  b.dataset.entities = typeof info.entities === "number" ? String(info.entities) : "";
  b.dataset.schema = info.schema || "";
}

// refreshInfo reads db's count and binding again and updates its card and,
// when open, its detail; an answer to a read that a newer one of db
// supersedes is dropped (it drew an older count last).
async function refreshInfo(page, db) {
  const current = page.infoReads.next(db);
  try {
    const r = await request("GET", `/api/databases/${encodeURIComponent(db)}`);
    if (!current()) return;
    const info = r.ok && r.data ? r.data : { name: db, schema: null, entities: r.status === 404 ? 0 : undefined };
    page.infos.set(db, info);
    const b = page.cards.querySelector(`.card[data-db="${CSS.escape(db)}"]`);
    if (b) fillCard(b, info);
    if (page.view && page.view.db === db) page.view.showInfo(info);
  } catch (e) {
    showError(page.msg, e);
  }
}

// ---- one database ------------------------------------------------------------------

function openDatabase(page, db, place) {
  page.opens++;
  for (const c of page.cards.querySelectorAll(".card")) c.setAttribute("aria-pressed", String(c.dataset.db === db));
  show(page.msg, "");
  clear(page.detail);
  page.detail.hidden = false;
  const st = place && place.db === db ? { ...place, cursors: [...place.cursors] } : { db, prefix: "", limit: DEFAULT_PAGE, cursors: [], key: null };
  if (page.view && page.view.feed) page.view.feed.close();
  // selected: key -> ETag listed; loads counts the list's loads, so that
  // only the answer to the latest is drawn.
  const view = { db, st, prefs: loadPrefs(db), items: [], selected: new Map(), loads: latest() };
  page.view = view;
  // showing is true while this view is the page's and the page is shown:
  // only then is its place written to the address (markPlace). An answer
  // that came after the user opened another database or left the page (a
  // save's reload of the list, a delete) wrote its place over the address
  // of what is shown.
  const showing = () => page.view === view && !page.gone;
  const markPlace = () => {
    if (showing()) writePlace(view.st);
  };

  // Header: counts, binding, delete.
  const info = h("p", { id: "db-info", testid: "db-info", class: "hint" });
  const schemaSelect = h("select", { id: "db-schema-select", testid: "db-schema-select" });
  const bind = h("button", { type: "button", id: "db-bind", testid: "db-bind", text: "Bind" });
  const unbind = h("button", { type: "button", id: "db-unbind", testid: "db-unbind", class: "secondary", text: "Unbind" });
  const delDb = h("button", { type: "button", id: "db-delete", testid: "db-delete", class: "danger", text: "Delete database" });
  const headMsg = messageArea("db-detail-message");
  const writeWhy = denyReason(page.me, "write");
  const adminWhy = denyReason(page.me, "admin");
  gate(writeWhy, bind, unbind, schemaSelect);
  gate(adminWhy, delDb);

  // Keys: search, count, list, paging, open by key.
  const prefix = h("input", { id: "db-prefix", testid: "db-prefix", type: "search", autocomplete: "off", spellcheck: "false", placeholder: "Key prefix", value: st.prefix });
  const search = h("button", { type: "submit", id: "db-prefix-go", testid: "db-prefix-go", class: "secondary", text: "Search" });
  const size = h("select", { id: "db-page-size", testid: "db-page-size" },
    PAGE_SIZES.map((n) => h("option", { value: String(n), text: `${n} per page`, selected: n === st.limit })));
  const count = h("p", { id: "db-keys-count", testid: "db-keys-count", class: "hint", "aria-live": "polite" });
  const keyList = h("ul", { id: "db-keys", testid: "db-keys", class: "key-list", "aria-label": `Entity keys in ${db}` });
  const prev = h("button", { type: "button", id: "db-keys-prev", testid: "db-keys-prev", class: "secondary", text: "‹ Previous", disabled: true });
  const next = h("button", { type: "button", id: "db-keys-next", testid: "db-keys-next", class: "secondary", text: "Next ›", disabled: true });
  const pageNo = h("span", { id: "db-keys-page", testid: "db-keys-page", class: "hint" });
  const listMsg = messageArea("db-list-message");
  const keyInput = h("input", { id: "db-key-input", testid: "db-key-input", type: "text", autocomplete: "off", spellcheck: "false" });
  const openBtn = h("button", { type: "submit", id: "db-key-open", testid: "db-key-open", text: "Open" });
  const openForm = h("form", { class: "row open-key", novalidate: true }, field("Open or create by key", keyInput), openBtn);
  const searchForm = h("form", { class: "row search", role: "search", novalidate: true },
    h("label", { for: "db-prefix", class: "visually-hidden", text: "Key prefix" }), prefix, search,
    h("label", { for: "db-page-size", class: "visually-hidden", text: "Page size" }), size);

  const finder = findPanel(page.me);
  const readWhy = denyReason(page.me, "read");
  const transfer = transferPanel("db", () => db, {
    exportWhy: readWhy, importWhy: writeWhy,
    onImported: () => {
      refreshInfo(page, db);
      reload();
    },
  });

  // The list's tools: select the page, the selection's actions, sort, columns.
  const selectAll = h("input", { type: "checkbox", id: "db-select-all", testid: "db-select-all" });
  const selCount = h("span", { id: "db-selected-count", testid: "db-selected-count", class: "hint", "aria-live": "polite" });
  const bulkExport = h("button", { type: "button", id: "db-bulk-export", testid: "db-bulk-export", class: "secondary", text: "Export selected" });
  const bulkDelete = h("button", { type: "button", id: "db-bulk-delete", testid: "db-bulk-delete", class: "danger", text: "Delete selected" });
  const clearSel = h("button", { type: "button", id: "db-select-clear", testid: "db-select-clear", class: "link", text: "Clear" });
  gate(writeWhy, bulkDelete);
  const sortSel = h("select", { id: "db-sort", testid: "db-sort" });
  const columnsList = h("div", { id: "db-columns-list", testid: "db-columns-list", class: "columns-list" });
  const columnField = h("input", { id: "db-column-field", testid: "db-column-field", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. user.id" });
  const columnAdd = h("button", { type: "submit", id: "db-column-add", testid: "db-column-add", class: "secondary", text: "Add" });
  const columns = h("details", { id: "db-columns", testid: "db-columns", class: "columns-panel" },
    h("summary", { text: "Columns" }), columnsList,
    h("form", { class: "row", novalidate: true }, field("Field path", columnField), columnAdd));
  const bulkRow = h("div", { id: "db-bulk", testid: "db-bulk", class: "row bulk-row", hidden: true }, selCount, bulkExport, bulkDelete, clearSel);
  const tools = h("div", { class: "row list-tools" },
    h("span", { class: "check-row" }, selectAll, h("label", { for: "db-select-all", text: "Select page" })),
    h("span", { class: "sort-field" }, h("label", { for: "db-sort", text: "Sort" }), sortSel), columns);
  const bulkMsg = messageArea("db-bulk-message");

  const editor = entityEditor(db, {
    me: page.me,
    binding: () => (page.infos.get(db) || {}).schema || "",
    onOpen: (key) => {
      view.st.key = key;
      markPlace();
      markCurrent();
    },
    onChange: (what) => {
      refreshInfo(page, db);
      // A created or deleted key changes the list; reload the same page.
      if (what === "created" || what === "deleted") reload(true);
    },
  });

  view.confirmDiscard = () => editor.confirmDiscard();
  // Live: the open entity follows the feed, and the list marks the keys
  // changed or deleted elsewhere (a new key is named until the list is
  // read again).
  if (!page.gone) {
    view.feed = followChanges(db, (c) => {
      if (page.view !== view) return;
      editor.remoteChange(c);
      const b = keyList.querySelector(`button[data-key="${CSS.escape(c.key)}"]`);
      if (b) {
        b.dataset.live = c.op === "delete" ? "deleted" : "changed";
        b.title = c.op === "delete" ? "Deleted elsewhere" : "Changed elsewhere";
      } else if (c.op === "put" && !view.find && c.key.startsWith(view.st.prefix)) {
        show(listMsg, `New entity ${c.key} written elsewhere: Search shows the list as it is now.`, "info");
      }
    });
  }
  page.detail.append(
    h("div", { class: "db-head" },
      h("div", {}, h("h3", { id: "db-detail-title", text: db }), info),
      h("div", { class: "row" }, field("Schema", schemaSelect), bind, unbind, delDb)),
    reasonNote("db-write-denied", writeWhy, bind, unbind, schemaSelect),
    reasonNote("db-admin-denied", adminWhy ? `Delete database: ${adminWhy}` : "", delDb),
    headMsg,
    transfer.el,
    h("div", { class: "split" },
      h("div", { class: "keys-pane" },
        h("h4", { text: "Entities" }), searchForm, finder.el, tools, bulkRow, bulkMsg, count, listMsg, keyList,
        h("div", { class: "row pager" }, prev, pageNo, next), openForm),
      editor.el),
  );

  const markCurrent = () => {
    for (const b of keyList.querySelectorAll("button[data-key]")) {
      if (b.dataset.key === view.st.key) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  };

  view.showInfo = (inf) => {
    const bound = inf.schema || "";
    info.textContent = (typeof inf.entities === "number" ? plural(inf.entities, "entity", "entities") : "…") +
      " · " + (bound ? `bound to schema ${bound}` : "no schema bound");
    info.dataset.schema = bound;
    unbind.hidden = !bound;
    if (schemaSelect.options.length) schemaSelect.value = bound;
    bind.textContent = bound ? "Change" : "Bind";
    view.total = inf.entities;
    showCount();
    editor.bindingChanged();
  };

  // The list: one page at st.cursors' last cursor.
  let shown = 0;
  let hasNext = false;
  const showCount = () => {
    if (keyList.hidden || view.find) return;
    const first = view.st.cursors.length * view.st.limit;
    const range = shown ? `${first + 1}–${first + shown}` : "none";
    let text;
    if (view.st.prefix) {
      const of = hasNext ? `more than ${first + shown}` : String(first + shown);
      text = `Keys starting with "${view.st.prefix}": ${range} of ${of}`;
    } else {
      text = `Keys ${range} of ${typeof view.total === "number" ? view.total : "…"}`;
    }
    count.textContent = text;
    pageNo.textContent = `Page ${view.st.cursors.length + 1}`;
  };

  // startLoad starts a load of the list and returns its check: true while
  // it is the latest of the database open (a newer search, page, sort or
  // find supersedes it).
  const startLoad = () => {
    const latestLoad = view.loads.next();
    return () => page.view === view && latestLoad();
  };

  async function loadKeys() {
    const current = startLoad();
    finder.setActive(false);
    const st = view.st;
    const cursor = st.cursors[st.cursors.length - 1] || "";
    let path = `/api/databases/${encodeURIComponent(db)}/keys?limit=${st.limit}&include_docs=true`;
    if (st.prefix) path += "&prefix=" + encodeURIComponent(st.prefix);
    if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
    prev.disabled = next.disabled = true;
    markPlace();
    try {
      const r = await request("GET", path);
      if (!current()) return;
      const items = r.ok && r.data ? listItems(r.data) : null;
      if (r.status === 405 || (r.status === 404 && /^no route/.test((r.data && r.data.error) || "")) || (r.ok && !items)) {
        keyList.hidden = count.hidden = true;
        prev.hidden = next.hidden = pageNo.hidden = searchForm.hidden = true;
        show(listMsg, "This server has no key listing; open an entity by its key.", "info");
        return;
      }
      if (!r.ok) return show(listMsg, errorMessage(r));
      if (items.length === 0 && st.cursors.length > 0) {
        // The last keys of this page were deleted: step back a page.
        st.cursors.pop();
        return loadKeys();
      }
      view.items = items;
      renderItems();
      shown = items.length;
      hasNext = !!r.data.next;
      next.dataset.cursor = r.data.next || "";
      prev.disabled = st.cursors.length === 0;
      next.disabled = !hasNext;
      show(listMsg, items.length === 0 ? (st.prefix ? `No keys start with "${st.prefix}".` : "No entities.") : "", "info");
      showCount();
    } catch (e) {
      if (current()) showError(listMsg, e);
    }
  }

  // renderItems shows view.items: sorted by modified time when that is
  // the sort (the page shown), each with its checkbox, chosen columns (or
  // a preview) and modified time.
  function renderItems() {
    const s = parseSort(view.prefs.sort);
    let items = view.items;
    if (s.by === "modified") {
      const t = (it) => normTime(it.modified);
      items = [...items].sort((a, b) => (t(a) < t(b) ? -1 : t(a) > t(b) ? 1 : a.key < b.key ? -1 : 1) * (s.dir === "asc" ? 1 : -1));
    }
    keyList.replaceChildren(...items.map((it) => keyItem(it)));
    fillColumns();
    selectionChanged();
    markCurrent();
  }

  function keyItem(it) {
    const cb = h("input", { type: "checkbox", class: "key-select", testid: "db-key-select", "data-select": it.key, "aria-label": `Select ${it.key}` });
    cb.checked = view.selected.has(it.key);
    cb.addEventListener("change", () => {
      if (cb.checked) view.selected.set(it.key, it.etag || "");
      else view.selected.delete(it.key);
      selectionChanged();
    });
    const b = h("button", {
      type: "button", testid: "db-key-item", "data-key": it.key,
      on: { click: () => openKey(it.key, true) },
    }, h("span", { class: "key-name", text: it.key }));
    const cols = view.prefs.columns;
    if (it.doc !== undefined && cols.length) {
      b.append(h("span", { class: "key-cols" }, cols.map((c) => h("span", { class: "key-col", "data-col": c },
        h("span", { class: "key-col-name", text: c }), " ",
        h("span", { class: "key-col-value", testid: "db-key-col", "data-col": c, text: cellText(fieldValue(it.doc, c)) })))));
    } else if (it.doc !== undefined) {
      b.append(h("span", { class: "key-preview", testid: "db-key-preview", text: preview(it.doc) }));
    }
    if (it.modified) b.append(modifiedElement(it.modified));
    return h("li", { "data-key": it.key, class: "key-row" }, cb, b);
  }

  // selectionChanged shows the selection's count and actions and the
  // state of Select page.
  function selectionChanged() {
    const n = view.selected.size;
    bulkRow.hidden = n === 0;
    selCount.textContent = `${plural(n, "entity", "entities")} selected`;
    const onPage = view.items.filter((it) => view.selected.has(it.key)).length;
    selectAll.checked = view.items.length > 0 && onPage === view.items.length;
    selectAll.indeterminate = onPage > 0 && onPage < view.items.length;
  }
  selectAll.addEventListener("change", () => {
    for (const it of view.items) {
      if (selectAll.checked) view.selected.set(it.key, it.etag || "");
      else view.selected.delete(it.key);
    }
    for (const cb of keyList.querySelectorAll("input.key-select")) cb.checked = view.selected.has(cb.dataset.select);
    selectionChanged();
  });
  clearSel.addEventListener("click", () => {
    view.selected.clear();
    for (const cb of keyList.querySelectorAll("input.key-select")) cb.checked = false;
    selectionChanged();
    show(bulkMsg, "");
  });

  bulkDelete.addEventListener("click", async () => {
    const items = [...view.selected].map(([key, etag]) => ({ key, etag })).sort((a, b) => (a.key < b.key ? -1 : 1));
    const n = items.length;
    if (n === 0) return;
    const what = plural(n, "entity", "entities");
    const named = items.slice(0, 5).map((it) => it.key).join(", ") + (n > 5 ? ` and ${n - 5} more` : "");
    const ok = await confirmByName({ title: `Delete ${what} from "${db}"?`, name: db, action: `Delete ${what}`,
      text: `This deletes ${named}. An entity changed since it was listed is not deleted. ${await undoNote(db, n)}` });
    if (!ok) return;
    setEnabled(bulkDelete, false);
    show(bulkMsg, `Deleting ${what}…`, "info");
    try {
      const r = await deleteSelected(db, items, (done) => show(bulkMsg, `Deleting: ${done} of ${n} done…`, "info"));
      for (const k of r.deleted) view.selected.delete(k);
      if (r.failed.length === 0) show(bulkMsg, `Deleted ${plural(r.deleted.length, "entity", "entities")} from ${db}.`, "ok");
      else {
        const why = r.failed.slice(0, 5).map((f) => `${f.key}: ${f.error}`).join("; ") + (r.failed.length > 5 ? `; and ${r.failed.length - 5} more` : "");
        show(bulkMsg, `Deleted ${r.deleted.length} of ${n}; not deleted (still selected): ${why}.`);
      }
      if (r.deleted.includes(view.st.key)) editor.open(view.st.key);
    } catch (e) {
      showError(bulkMsg, e);
    } finally {
      setEnabled(bulkDelete, true);
      refreshInfo(page, db);
      // The pages have moved: back to the first.
      reload(false);
    }
  });

  bulkExport.addEventListener("click", async () => {
    const keys = [...view.selected.keys()].sort();
    if (keys.length === 0) return;
    setEnabled(bulkExport, false);
    show(bulkMsg, `Exporting ${plural(keys.length, "entity", "entities")}…`, "info");
    try {
      const r = await exportSelected(db, keys, (done) => show(bulkMsg, `Exporting: ${done} of ${keys.length} read…`, "info"));
      const name = `${db}-selected.ndjson`;
      download(new Blob([r.text], { type: "application/x-ndjson" }), name);
      const got = keys.length - r.missing.length;
      show(bulkMsg, `Exported ${plural(got, "entity", "entities")} to ${name}.` +
        (r.missing.length ? ` Gone since they were listed: ${r.missing.join(", ")}.` : ""), r.missing.length ? "info" : "ok");
    } catch (e) {
      showError(bulkMsg, e);
    } finally {
      setEnabled(bulkExport, true);
    }
  });

  // fillSort offers key, modified time and each chosen column, both ways.
  function fillSort() {
    const opts = [["key:asc", "Key, A to Z"], ["key:desc", "Key, Z to A"],
      ["modified:desc", "Modified, newest first (this page)"], ["modified:asc", "Modified, oldest first (this page)"]];
    const cols = [...view.prefs.columns];
    const cur = parseSort(view.prefs.sort);
    if (cur.by === "col" && !cols.includes(cur.field)) cols.push(cur.field);
    for (const c of cols) opts.push([`col:${c}:asc`, `${c}, ascending`], [`col:${c}:desc`, `${c}, descending`]);
    sortSel.replaceChildren(...opts.map(([v, label]) => h("option", { value: v, text: label })));
    sortSel.value = view.prefs.sort;
    if (sortSel.value !== view.prefs.sort) sortSel.value = "key:asc";
  }
  sortSel.addEventListener("change", () => {
    view.prefs.sort = sortSel.value;
    savePrefs(db, view.prefs);
    reload(false);
  });

  // fillColumns offers the fields of the page's documents and the chosen
  // ones, each a checkbox.
  function fillColumns() {
    const fields = discoverFields(view.items.map((it) => it.doc));
    for (const c of view.prefs.columns) if (!fields.includes(c)) fields.push(c);
    columnsList.replaceChildren(...(fields.length ? fields.map((f, i) => {
      const cb = h("input", { type: "checkbox", id: `db-col-${i}`, testid: "db-col", "data-field": f, checked: view.prefs.columns.includes(f) });
      cb.addEventListener("change", () => setColumn(f, cb.checked));
      return h("span", { class: "check-row" }, cb, h("label", { for: `db-col-${i}`, text: f }));
    }) : [h("p", { class: "hint", text: "No fields on this page; add one by its path." })]));
  }
  function setColumn(f, on) {
    const cols = view.prefs.columns.filter((c) => c !== f);
    if (on) {
      if (cols.length >= 8) return show(listMsg, "At most 8 columns.");
      cols.push(f);
    }
    view.prefs.columns = cols;
    savePrefs(db, view.prefs);
    fillSort();
    renderItems();
  }
  columnAdd.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = columnField.value.trim();
    if (!f) return;
    columnField.value = "";
    setColumn(f, true);
  });

  // reload shows the list again from its first page (or the same page
  // when keep): the key listing, or a find when the user searches by
  // content or the sort needs every entity (a column, key descending).
  function reload(keep) {
    const s = parseSort(view.prefs.sort);
    const sorted = s.by === "col" || (s.by === "key" && s.dir === "desc");
    if (view.find && view.find.user) {
      if (!keep) view.find.bookmarks = [];
      return findPage();
    }
    if (sorted) {
      const p = view.st.prefix;
      if (!keep || !view.find) view.find = { selector: p ? { _id: { $gte: p, $lt: p + "\uffff" } } : {}, bookmarks: [], next: "", user: false };
      return findPage();
    }
    view.find = null;
    if (!keep) view.st.cursors = [];
    return loadKeys();
  }

  // openKey opens key in the editor; a tap on a phone (one column) then
  // scrolls the editor into view.
  function openKey(key, fromList) {
    view.keyChosen = true;
    editor.open(key);
    if (fromList && matchMedia(NARROW).matches) editor.el.scrollIntoView({ block: "start" });
  }

  searchForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    view.st.prefix = prefix.value;
    if (view.find && !view.find.user) view.find = null;
    reload(false);
  });
  size.addEventListener("change", () => {
    view.st.limit = Number(size.value);
    reload(false);
  });
  prev.addEventListener("click", () => {
    if (view.find) {
      view.find.bookmarks.pop();
      return findPage();
    }
    view.st.cursors.pop();
    loadKeys();
  });
  next.addEventListener("click", () => {
    if (view.find) {
      if (!view.find.next) return;
      view.find.bookmarks.push(view.find.next);
      return findPage();
    }
    if (!next.dataset.cursor) return;
    view.st.cursors.push(next.dataset.cursor);
    loadKeys();
  });
  // Find by content: one page of matches at the last bookmark.
  async function findPage() {
    const current = startLoad();
    const f = view.find;
    const body = { selector: f.selector, limit: view.st.limit, fields: ["_id"] };
    const s = parseSort(view.prefs.sort);
    if (s.by === "col") body.sort = [{ [s.field]: s.dir }];
    else if (s.by === "key" && s.dir === "desc") body.sort = [{ _id: "desc" }];
    const bookmark = f.bookmarks[f.bookmarks.length - 1];
    if (bookmark) body.bookmark = bookmark;
    prev.disabled = next.disabled = true;
    finder.setActive(f.user);
    markPlace();
    try {
      const r = await request("POST", `/api/databases/${encodeURIComponent(db)}/find`, body);
      if (!current()) return;
      if (!r.ok) {
        view.items = [];
        keyList.replaceChildren();
        count.textContent = "";
        return show(listMsg, errorMessage(r));
      }
      const keys = Array.isArray(r.data.keys) ? r.data.keys : [];
      const items = await readItems(keys);
      if (!current()) return;
      view.items = items;
      renderItems();
      f.next = r.data.more ? r.data.bookmark || "" : "";
      prev.disabled = f.bookmarks.length === 0;
      next.disabled = !f.next;
      const first = f.bookmarks.length * view.st.limit;
      const what = f.user ? "Matches" : `Entities${view.st.prefix ? ` starting with "${view.st.prefix}"` : ""}, sorted by ${sortSel.selectedOptions[0]?.textContent || "key"}:`;
      count.textContent = keys.length
        ? `${what} ${first + 1}–${first + keys.length}` + (f.next ? ", more on the next page" : "")
        : `${what} none` + (f.next ? " on this page; more on the next" : "");
      pageNo.textContent = `Page ${f.bookmarks.length + 1}`;
      show(listMsg, r.data.warning && f.user ? `Note: ${r.data.warning}` : "", "info");
    } catch (e) {
      if (current()) showError(listMsg, e);
    }
  }

  // readItems reads the documents, ETags and write times of keys (a page
  // a find answered), in order; a key deleted meanwhile is left out.
  async function readItems(keys) {
    if (keys.length === 0) return [];
    const r = await request("POST", `/api/databases/${encodeURIComponent(db)}/get`, { keys });
    if (!r.ok) throw new Error(errorMessage(r));
    const d = r.data || {};
    const docs = d.documents || {}, etags = d.etags || {}, mod = d.modified || {};
    return keys.map((key) => (Object.hasOwn(docs, key) ? { key, etag: etags[key], modified: mod[key], doc: docs[key] } : Array.isArray(d.remaining) && d.remaining.includes(key) ? { key } : null))
      .filter(Boolean);
  }
  finder.onFind = (selector) => {
    view.find = { selector, bookmarks: [], next: "", user: true };
    findPage();
  };
  finder.onError = (text) => show(listMsg, text);
  finder.onClear = () => {
    view.find = null;
    reload(false);
  };

  openForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (keyInput.value === "") return show(listMsg, "Enter an entity key.");
    show(listMsg, "");
    openKey(keyInput.value, false);
  });

  // Binding.
  const setBinding = async (id) => {
    const cur = (page.infos.get(db) || {}).schema || "";
    const q = id
      ? `Bind database "${db}" to schema "${id}"?` + (cur ? ` This removes its binding to schema "${cur}".` : "") +
        " Every later write to it is validated against the schema; stored entities are not checked."
      : `Remove the binding of database "${db}" to schema "${cur}"? Writes to it are no longer validated.`;
    if (!window.confirm(q)) return;
    setEnabled(bind, false);
    setEnabled(unbind, false);
    try {
      const inf = await call("PUT", `/api/databases/${encodeURIComponent(db)}`, { schema: id || null });
      page.infos.set(db, inf);
      show(headMsg, id ? `Bound ${db} to schema ${id}.` : `Unbound ${db} from schema ${cur}.`, "ok");
      await refreshInfo(page, db);
    } catch (e) {
      showError(headMsg, e);
    } finally {
      setEnabled(bind, true);
      setEnabled(unbind, true);
    }
  };
  bind.addEventListener("click", () => {
    if (!schemaSelect.value) return show(headMsg, "Choose a schema to bind.");
    setBinding(schemaSelect.value);
  });
  unbind.addEventListener("click", () => setBinding(""));

  delDb.addEventListener("click", async () => {
    const inf = page.infos.get(db) || {};
    const n = typeof inf.entities === "number" ? plural(inf.entities, "entity", "entities") : "all its entities";
    const ok = await confirmByName({ title: `Delete database "${db}"?`, name: db, action: "Delete database",
      text: `This deletes ${n}` + (inf.schema ? ` and the binding to schema "${inf.schema}"` : "") + ". It cannot be undone." });
    if (!ok) return;
    setEnabled(delDb, false);
    try {
      const r = await call("DELETE", `/api/databases/${encodeURIComponent(db)}`);
      const gone = r && typeof r.deleted === "number" ? plural(r.deleted, "entity", "entities") : "its entities";
      page.infos.delete(db);
      const li = page.cards.querySelector(`.card[data-db="${CSS.escape(db)}"]`)?.closest("li");
      if (li) li.remove();
      // Another database opened meanwhile stays open.
      if (showing()) {
        page.view = null;
        page.detail.hidden = true;
        clear(page.detail);
        writePlace(null);
      }
      show(page.msg, `Deleted database ${db} (${gone}).`, "ok");
    } catch (e) {
      if (!showing()) return showError(page.msg, e);
      showError(headMsg, e);
      setEnabled(delDb, true);
    }
  });

  fillSchemas(schemaSelect, headMsg).then(() => view.showInfo(page.infos.get(db) || { name: db }));
  view.showInfo(page.infos.get(db) || { name: db });
  fillSort();
  // The place's key opens once the list is read, unless the user opened
  // an entity first (it asked to discard that one's edits).
  reload(true).then(() => {
    if (view.st.key !== null && page.view === view && !view.keyChosen) editor.open(view.st.key);
  });
}

// FIND_OPS are the operators of the selector builder.
const FIND_OPS = [
  ["$eq", "equals"], ["$ne", "does not equal"], ["$lt", "<"], ["$lte", "≤"], ["$gt", ">"], ["$gte", "≥"],
  ["$in", "is one of (list)"], ["$nin", "is none of (list)"], ["$regex", "matches (regular expression)"],
  ["$exists", "exists (true or false)"], ["$size", "array has length"], ["$type", "has type"],
];
const MAX_CONDITIONS = 8;

// findPanel is the "Find by content" form: a selector as JSON, which the
// conditions above it (field, operator, value; several are all required)
// write as they change. onFind gets the parsed selector; onError a
// sentence about the form; onClear returns to the key list.
function findPanel(me) {
  const readWhy = denyReason(me, "read");
  const rows = h("div", { id: "db-find-rows", testid: "db-find-rows", class: "find-rows" });
  const selector = h("textarea", { id: "db-find-selector", testid: "db-find-selector", rows: 3, spellcheck: "false", placeholder: '{"messages": {"$elemMatch": {"role": "assistant"}}}' });
  const addCond = h("button", { type: "button", id: "db-find-add", testid: "db-find-add", class: "secondary", text: "Add condition" });
  const go = h("button", { type: "submit", id: "db-find-go", testid: "db-find-go", text: "Find" });
  const clearBtn = h("button", { type: "button", id: "db-find-clear", testid: "db-find-clear", class: "secondary", text: "Show all keys", hidden: true });
  gate(readWhy, selector, go, addCond);
  const form = h("form", { class: "find", novalidate: true },
    rows, h("div", { class: "row" }, addCond),
    field("Selector (JSON)", selector, "The conditions write it (all of them must hold); edit it for $or, $elemMatch and more."),
    h("div", { class: "row" }, go, clearBtn));
  const el = h("details", { id: "db-find", testid: "db-find", class: "find-panel" }, h("summary", { text: "Find by content" }), form);
  const panel = { el, onFind: () => {}, onError: () => {}, onClear: () => {} };
  const conds = [];

  // addRow adds one condition; the first keeps the plain IDs
  // (db-find-field, -op, -value), the others end in -2, -3, ...
  const addRow = () => {
    const sfx = conds.length === 0 ? "" : `-${conds.length + 1}`;
    const c = {
      field: h("input", { id: "db-find-field" + sfx, testid: "db-find-field", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. messages.0.role" }),
      op: h("select", { id: "db-find-op" + sfx, testid: "db-find-op" }, FIND_OPS.map(([v, label]) => h("option", { value: v, text: label }))),
      value: h("input", { id: "db-find-value" + sfx, testid: "db-find-value", type: "text", autocomplete: "off", spellcheck: "false", placeholder: 'user, 42, true, "42" or ["a", "b"]' }),
    };
    gate(readWhy, c.field, c.op, c.value);
    const row = h("div", { class: "row find-row" }, field("Field", c.field), field("Operator", c.op), field("Value", c.value));
    if (sfx) {
      row.append(h("button", { type: "button", class: "link", testid: "db-find-remove", text: "Remove", "aria-label": `Remove condition ${conds.length + 1}`,
        on: { click: () => { conds.splice(conds.indexOf(c), 1); row.remove(); build(); } } }));
    }
    for (const i of [c.field, c.value]) i.addEventListener("input", build);
    c.op.addEventListener("change", build);
    conds.push(c);
    rows.append(row);
    return c;
  };
  addRow();
  addCond.addEventListener("click", () => {
    if (conds.length >= MAX_CONDITIONS) return panel.onError(`At most ${MAX_CONDITIONS} conditions here; type more in the selector.`);
    addRow().field.focus();
  });

  // build writes the selector of the conditions with a field: one object
  // when their fields differ, else {"$and": [...]}.
  function build() {
    const parts = conds.filter((c) => c.field.value.trim() !== "").map((c) => [c.field.value.trim(), condition(c.op.value, c.value.value)]);
    if (parts.length === 0) return;
    const fields = parts.map(([f]) => f);
    const sel = new Set(fields).size === fields.length
      ? Object.fromEntries(parts)
      : { $and: parts.map(([f, v]) => ({ [f]: v })) };
    selector.value = JSON.stringify(sel);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    let sel;
    try {
      sel = JSON.parse(selector.value.trim() || "{}");
    } catch (e) {
      return panel.onError(`The selector is not JSON: ${e.message}.`);
    }
    if (sel === null || typeof sel !== "object" || Array.isArray(sel)) return panel.onError("The selector must be a JSON object.");
    panel.onFind(sel);
  });
  clearBtn.addEventListener("click", () => panel.onClear());
  panel.setActive = (on) => {
    clearBtn.hidden = !on;
  };
  return panel;
}

// condition is one builder condition: a value that parses as JSON is that
// value (42, true, null, "42"), anything else the text itself; a list for
// $in and $nin (JSON, or items split at commas); a number for $size.
function condition(op, text) {
  let v = text.trim();
  try {
    v = JSON.parse(v);
  } catch {
    // a plain word: the text itself
  }
  switch (op) {
    case "$eq":
      return v;
    case "$exists":
      return { $exists: v !== false && v !== "false" };
    case "$in":
    case "$nin":
      if (!Array.isArray(v)) v = text.trim() === "" ? [] : text.split(",").map((p) => condition("$eq", p));
      return { [op]: v };
    case "$size":
      return { $size: Number(v) };
    default:
      return { [op]: v };
  }
}

// listItems returns [{key, doc?}] from either listing answer:
// {"keys": [...]} or, with include_docs, {"items": [{key, etag, doc}]}.
function listItems(data) {
  if (Array.isArray(data.items)) return data.items.filter((it) => it && typeof it.key === "string");
  if (Array.isArray(data.keys)) return data.keys.map((key) => ({ key }));
  return null;
}

function preview(doc) {
  const s = JSON.stringify(doc);
  return s === undefined ? "" : s.length > PREVIEW_CHARS ? s.slice(0, PREVIEW_CHARS - 1) + "…" : s;
}

async function fillSchemas(select, msg) {
  try {
    const ids = await call("GET", "/admin/schemas");
    select.replaceChildren(h("option", { value: "", text: "— none —" }),
      ...(Array.isArray(ids) ? ids : []).map((id) => h("option", { value: id, text: id })));
  } catch (e) {
    showError(msg, e);
  }
}

// normTime makes an RFC 3339 UTC time sort as text: its fraction of a
// second padded to nine digits ("" for none).
function normTime(t) {
  return typeof t === "string" ? t.replace(/(\.\d+)?Z$/, (m, f) => (f || ".").padEnd(10, "0") + "Z") : "";
}

// modifiedElement is an entity's write time, "3 minutes ago" with the
// exact time as its title.
function modifiedElement(t) {
  const d = parseTime(t);
  const el = h("time", { class: "key-modified", testid: "db-key-modified" });
  el.textContent = d ? `modified ${relativeTime(d)}` : "";
  if (d) {
    el.dateTime = d.toISOString();
    el.title = t;
  }
  return el;
}
