// browse.js: the Databases page's tools for the entities of one database
// beyond paging: columns chosen from document fields and the sort
// (remembered per database in localStorage), the selection with its bulk
// Delete (each key's DELETE /entity/{db}?key=K, If-Match the ETag listed)
// and Export (POST /api/databases/{db}/get, written as NDJSON), and the
// export and import of a whole database (GET /api/databases/{db}/export,
// POST /api/databases/{db}/import) with their progress and report.

import { getToken, request, errorMessage } from "./api.js";
import { h, show } from "./dom.js";
import { plural } from "./format.js";

const STORE_PREFIX = "deltadb.browse.";
const MAX_COLUMNS = 8;
const MAX_FIELDS = 40; // fields offered from the documents of a page
const CELL_CHARS = 48;
const GET_BATCH = 1000; // keys of one POST .../get (-max-batch-keys)
const DELETERS = 4; // deletes under way at once

/** loadPrefs returns db's remembered {columns: [path], sort: "key:asc" | ...}. */
export function loadPrefs(db) {
  let v = null;
  try {
    v = JSON.parse(localStorage.getItem(STORE_PREFIX + db) || "null");
  } catch {
    v = null;
  }
  const columns = v && Array.isArray(v.columns) ? v.columns.filter((c) => typeof c === "string" && c).slice(0, MAX_COLUMNS) : [];
  const sort = v && typeof v.sort === "string" ? v.sort : "key:asc";
  return { columns, sort };
}

/** savePrefs remembers db's columns and sort on this device. */
export function savePrefs(db, prefs) {
  try {
    localStorage.setItem(STORE_PREFIX + db, JSON.stringify({ columns: prefs.columns, sort: prefs.sort }));
  } catch {
    // storage full or unavailable: the choice lasts for this page only
  }
}

/** parseSort reads "key:asc", "modified:desc" or "col:<path>:desc". */
export function parseSort(s) {
  const m = /^(key|modified):(asc|desc)$/.exec(s) || /^(col):(.+):(asc|desc)$/.exec(s);
  if (!m) return { by: "key", dir: "asc", field: "" };
  return m[1] === "col" ? { by: "col", field: m[2], dir: m[3] } : { by: m[1], dir: m[2], field: "" };
}

/** fieldValue is the value at a dotted path ("user.id", "messages.0.role") of doc, or undefined. */
export function fieldValue(doc, path) {
  let v = doc;
  for (const part of path.split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = Array.isArray(v) ? v[Number(part)] : v[part];
  }
  return v;
}

/** cellText is a value as a short line: strings bare, the rest as JSON, cut at CELL_CHARS. */
export function cellText(v) {
  if (v === undefined) return "—";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > CELL_CHARS ? s.slice(0, CELL_CHARS - 1) + "…" : s;
}

/** discoverFields lists the field paths of docs: members, and members of member objects, sorted. */
export function discoverFields(docs) {
  const seen = new Set();
  for (const d of docs) {
    if (!d || typeof d !== "object" || Array.isArray(d)) continue;
    for (const [k, v] of Object.entries(d)) {
      if (k.includes(".")) continue; // a dotted path could not name it
      seen.add(k);
      if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const k2 of Object.keys(v)) if (!k2.includes(".")) seen.add(k + "." + k2);
      }
      if (seen.size >= MAX_FIELDS) break;
    }
  }
  return [...seen].sort();
}

/** compareValues orders JSON values for a sort of one page: missing first, then null, numbers, strings, the rest as JSON. */
export function compareValues(a, b) {
  const rank = (v) => (v === undefined ? 0 : v === null ? 1 : typeof v === "boolean" ? 2 : typeof v === "number" ? 3 : typeof v === "string" ? 4 : 5);
  const ra = rank(a), rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 3) return a - b;
  if (ra === 2) return Number(a) - Number(b);
  const sa = ra === 4 ? a : JSON.stringify(a), sb = rb === 4 ? b : JSON.stringify(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** ndjsonLine is one entity as an export line. */
export function ndjsonLine(key, etag, modified, doc) {
  const line = { key };
  if (etag) line.etag = etag;
  if (modified) line.modified = modified;
  line.doc = doc;
  return JSON.stringify(line) + "\n";
}

/** download saves blob as a file named name. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, class: "offscreen" });
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own reference once started.
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/**
 * exportSelected reads keys of db (POST .../get, GET_BATCH at a time,
 * following remaining) and resolves to {text (NDJSON, in the order asked),
 * missing: [keys that no longer exist]}. progress(done) follows.
 */
export async function exportSelected(db, keys, progress = () => {}) {
  let out = "";
  const missing = [];
  let todo = [...keys];
  let done = 0;
  while (todo.length) {
    const batch = todo.slice(0, GET_BATCH);
    const r = await request("POST", `/api/databases/${encodeURIComponent(db)}/get`, { keys: batch });
    if (!r.ok) throw new Error(errorMessage(r));
    const d = r.data || {};
    const docs = d.documents || {}, etags = d.etags || {}, mod = d.modified || {};
    const remaining = Array.isArray(d.remaining) ? d.remaining : [];
    for (const k of batch) {
      if (remaining.includes(k)) continue;
      if (Object.hasOwn(docs, k)) out += ndjsonLine(k, etags[k], mod[k], docs[k]);
      else missing.push(k);
      done++;
    }
    progress(done);
    todo = remaining.concat(todo.slice(GET_BATCH));
    if (remaining.length === batch.length) throw new Error(`The server answered none of ${plural(batch.length, "key", "keys")}; try again.`);
  }
  return { text: out, missing };
}

/**
 * deleteSelected deletes each of items ([{key, etag}]) of db through
 * DELETE /entity/{db}?key=K, If-Match its ETag when known (an entity
 * changed since it was listed is not deleted), DELETERS at a time. It
 * resolves to {deleted: [keys], failed: [{key, error}]}; progress(done)
 * follows.
 */
export async function deleteSelected(db, items, progress = () => {}) {
  const deleted = [], failed = [];
  let next = 0, done = 0;
  const one = async (it) => {
    const headers = it.etag ? { "If-Match": it.etag } : {};
    try {
      const r = await request("DELETE", `/entity/${encodeURIComponent(db)}?key=${encodeURIComponent(it.key)}`, undefined, { headers });
      if (r.ok) deleted.push(it.key);
      else if (r.status === 412) failed.push({ key: it.key, error: "changed since it was listed; open it and delete it from the editor" });
      else if (r.status === 404) failed.push({ key: it.key, error: "already gone" });
      else failed.push({ key: it.key, error: errorMessage(r) });
    } catch (e) {
      if (e.authExpired) throw e;
      failed.push({ key: it.key, error: e.message });
    }
    progress(++done);
  };
  const worker = async () => {
    while (next < items.length) await one(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(DELETERS, items.length) }, worker));
  return { deleted, failed };
}

/**
 * transferPanel is a database's Export and Import: buttons, a progress bar
 * with its sentence, and the per-line errors of an import. dbName() names
 * the database (the open one, or one typed); onImported runs after an
 * import that wrote something. can: {read, write} reasons ("" when
 * allowed) gate the buttons.
 */
export function transferPanel(prefix, dbName, { exportWhy = "", importWhy = "", onImported = () => {}, exportable = true } = {}) {
  const exportBtn = h("button", { type: "button", id: `${prefix}-export`, testid: `${prefix}-export`, class: "secondary", text: "Export NDJSON" });
  const file = h("input", { type: "file", id: `${prefix}-import-file`, testid: `${prefix}-import-file`, accept: ".ndjson,.jsonl,.json,application/x-ndjson" });
  const importBtn = h("button", { type: "button", id: `${prefix}-import`, testid: `${prefix}-import`, class: "secondary", text: "Import NDJSON" });
  const bar = h("progress", { id: `${prefix}-transfer-progress`, testid: `${prefix}-transfer-progress`, max: 1, value: 0, hidden: true });
  const status = h("p", { id: `${prefix}-transfer-status`, testid: `${prefix}-transfer-status`, class: "message", role: "status", "aria-live": "polite", hidden: true });
  const errors = h("ol", { id: `${prefix}-import-errors`, testid: `${prefix}-import-errors`, class: "import-errors", hidden: true });
  const fileLabel = h("label", { for: file.id, text: "NDJSON file to import" });
  exportBtn.hidden = !exportable;
  if (exportWhy) Object.assign(exportBtn, { disabled: true, title: exportWhy });
  if (importWhy) Object.assign(importBtn, { disabled: true, title: importWhy }), (file.disabled = true);
  const el = h("div", { class: "transfer" },
    h("div", { class: "row transfer-row" }, exportBtn, h("span", { class: "file-pick" }, fileLabel, file), importBtn),
    bar, status, errors);
  let busy = false;
  const setBusy = (on) => {
    busy = on;
    exportBtn.disabled = on || !!exportWhy;
    importBtn.disabled = on || !!importWhy;
  };

  exportBtn.addEventListener("click", async () => {
    if (busy) return;
    const db = dbName();
    if (!db) return show(status, "Choose a database first.");
    setBusy(true);
    errors.hidden = true;
    try {
      await exportDatabase(db, bar, status);
    } finally {
      setBusy(false);
    }
  });
  importBtn.addEventListener("click", async () => {
    if (busy) return;
    const db = dbName();
    const f = file.files && file.files[0];
    if (!db) return show(status, "Enter the database to import into.");
    if (!f) return show(status, "Choose an NDJSON file first (one {\"key\": ..., \"doc\": ...} per line).");
    setBusy(true);
    try {
      const rep = await importFile(db, f, bar, status, errors);
      if (rep && rep.imported > 0) onImported(db, rep);
    } finally {
      setBusy(false);
    }
  });
  return { el };
}

// exportDatabase streams db's export, counting lines against
// X-Entity-Count, then saves it as <db>.ndjson.
async function exportDatabase(db, bar, status) {
  bar.hidden = false;
  bar.removeAttribute("value");
  show(status, `Exporting ${db}…`, "info");
  let resp;
  try {
    resp = await fetch(`/api/databases/${encodeURIComponent(db)}/export`, {
      headers: { Authorization: "Bearer " + getToken(), Accept: "application/x-ndjson" }, cache: "no-store",
    });
  } catch (e) {
    bar.hidden = true;
    return show(status, "Network error: " + e.message);
  }
  if (!resp.ok) {
    const text = await resp.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    bar.hidden = true;
    return show(status, `Export failed: ${errorMessage({ status: resp.status, data, text })}`);
  }
  const total = Number(resp.headers.get("X-Entity-Count")) || 0;
  bar.max = Math.max(total, 1);
  const chunks = [];
  let lines = 0, bytes = 0;
  try {
    const reader = resp.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      bytes += value.length;
      for (const b of value) if (b === 10) lines++;
      bar.value = Math.min(lines, bar.max);
      show(status, `Exporting ${db}: ${lines.toLocaleString()}${total ? " of " + total.toLocaleString() : ""} entities (${kib(bytes)})…`, "info");
    }
  } catch (e) {
    bar.hidden = true;
    return show(status, `Export of ${db} broke off after ${plural(lines, "entity", "entities")}: ${e.message}. Nothing was saved; try again.`);
  }
  bar.max = Math.max(lines, 1);
  bar.value = bar.max;
  download(new Blob(chunks, { type: "application/x-ndjson" }), `${db}.ndjson`);
  show(status, `Exported ${plural(lines, "entity", "entities")} of ${db} (${kib(bytes)}) to ${db}.ndjson.`, "ok");
}

// importFile posts f to db's import, showing the bytes sent, then the
// report: counts and each refused line. It resolves to the report (or
// null when there is none).
function importFile(db, f, bar, status, errors) {
  return new Promise((resolve) => {
    bar.hidden = false;
    bar.max = Math.max(f.size, 1);
    bar.value = 0;
    errors.hidden = true;
    errors.replaceChildren();
    show(status, `Sending ${f.name} (${kib(f.size)}) to ${db}…`, "info");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/databases/${encodeURIComponent(db)}/import`);
    xhr.setRequestHeader("Authorization", "Bearer " + getToken());
    xhr.setRequestHeader("Content-Type", "application/x-ndjson");
    xhr.setRequestHeader("Accept", "application/json");
    // The file's lines, counted while it is sent: the bytes sent then
    // say about how many lines the server has.
    let lines = 0;
    countLines(f).then((n) => (lines = n), () => {});
    xhr.upload.addEventListener("progress", (e) => {
      bar.value = e.loaded;
      const about = lines && f.size ? ` (about ${Math.floor((lines * e.loaded) / f.size).toLocaleString()} of ${plural(lines, "line", "lines")})` : "";
      show(status, `Sending ${f.name} to ${db}: ${kib(e.loaded)} of ${kib(f.size)}${about}; lines are checked and written as they arrive…`, "info");
    });
    xhr.addEventListener("error", () => {
      bar.hidden = true;
      show(status, `The import of ${f.name} broke off (network error). Entities of the batches already written stay; import the file again to finish (each line replaces its entity).`);
      resolve(null);
    });
    xhr.addEventListener("load", () => {
      bar.value = bar.max;
      let rep;
      try {
        rep = JSON.parse(xhr.responseText);
      } catch {
        rep = null;
      }
      resolve(showReport(db, f, xhr.status, rep, xhr.responseText, status, errors));
    });
    xhr.send(f);
  });
}

// showReport shows an import's answer and returns its report.
function showReport(db, f, code, rep, text, status, errors) {
  if (!rep || typeof rep.imported !== "number") {
    const msg = rep && rep.error ? rep.error : text.trim() || `status ${code}`;
    show(status, `Import into ${db} failed: ${msg}`);
    return null;
  }
  const list = Array.isArray(rep.errors) ? rep.errors : [];
  errors.replaceChildren(...list.map((e) => h("li", { testid: "import-error", "data-line": String(e.line) },
    h("strong", { text: `Line ${e.line}` + (e.key ? ` (${e.key})` : "") + ": " }), e.error || "",
    Array.isArray(e.errors) && e.errors.length ? h("ul", {}, e.errors.map((v) => h("li", { text: `${v.path || "/"}: ${v.message}` }))) : null)));
  if (rep.errors_omitted) errors.append(h("li", { text: `… and ${plural(rep.errors_omitted, "more line", "more lines")}` }));
  errors.hidden = list.length === 0;
  const wrote = `Imported ${plural(rep.imported, "entity", "entities")} into ${db} in ${plural(rep.batches, "batch", "batches")}`;
  if (code === 200) show(status, `${wrote} from ${plural(rep.lines, "line", "lines")} of ${f.name}.`, "ok");
  else if (list.length && code === 400) {
    show(status, `${wrote}; ${plural(list.length + (rep.errors_omitted || 0), "line was", "lines were")} refused, and the ${plural(rep.rejected_batches, "batch", "batches")} holding them ${rep.rejected_batches === 1 ? "was" : "were"} not written. Fix the lines below and import the file again.`);
  } else show(status, `${wrote}, then it stopped: ${rep.error || "status " + code}`);
  return rep;
}

// countLines counts the lines of f, reading it a chunk at a time.
async function countLines(f) {
  const reader = f.stream().getReader();
  let n = 0, last = 10;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    for (const b of value) if (b === 10) n++;
    if (value.length) last = value[value.length - 1];
  }
  return last === 10 ? n : n + 1;
}

function kib(n) {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}
