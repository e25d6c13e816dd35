// workers.js: the table of processing workers from GET /admin/workers
// (admin only; a 403 says so).

import { call } from "./api.js";
import { h, messageArea, pageHeading, show, showError } from "./dom.js";
import { timeElement } from "./format.js";
import { latest } from "./latest.js";

const ADMIN_ONLY = "Workers are visible to administrators only (admin only).";
const COLUMNS = ["Worker ID", "Status", "Key ID", "Last seen", "gRPC address", "In flight", "Cache hits", "Cache misses"];

/** render builds the Workers page in root. */
export function render(root, ctx = {}) {
  const msg = messageArea("workers-message");
  const tbody = h("tbody");
  const table = h("table", { id: "workers-table", testid: "workers-table", class: "cards-on-phone" },
    h("caption", { class: "hint", text: "Processing workers known to the main worker" }),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", text: c })))),
    tbody);
  const refresh = h("button", { type: "button", id: "workers-refresh", testid: "workers-refresh", class: "secondary", text: "Refresh" });
  root.append(pageHeading("Workers"), h("div", { class: "row" }, refresh), msg, h("div", { class: "panel table-wrap" }, table));
  // Only the latest load is drawn: a Refresh answered before the load
  // of the page's opening drew the older table last.
  const loads = latest();
  const load = () => (ctx.isAdmin === false ? show(msg, ADMIN_ONLY, "error") : loadWorkers(tbody, msg, loads.next()));
  refresh.addEventListener("click", load);
  load();
}

// loadWorkers draws the table while current() holds.
async function loadWorkers(tbody, msg, current) {
  try {
    const list = await call("GET", "/admin/workers");
    if (!current()) return;
    tbody.replaceChildren(...(Array.isArray(list) ? list : []).map(row));
    show(msg, Array.isArray(list) && list.length === 0 ? "No workers registered." : "", "info");
  } catch (e) {
    if (!current()) return;
    tbody.replaceChildren();
    if (e.status === 403) show(msg, ADMIN_ONLY, "error");
    else showError(msg, e);
  }
}

function row(w) {
  const tags = (w && w.tags) || {};
  const cache = (w && w.cache) || {};
  const opt = (v) => (v === undefined || v === null ? "—" : String(v));
  // data-label names each cell when the table is shown as cards.
  const cell = (i, attrs, ...kids) => h("td", { "data-label": COLUMNS[i], ...attrs }, ...kids);
  return h("tr", { "data-worker": opt(w.worker_id) },
    cell(0, { class: "mono", text: opt(w.worker_id) }),
    cell(1, {}, h("span", { class: "status-pill", text: opt(w.status) })),
    cell(2, { text: opt(w.key_id) }),
    cell(3, { testid: "worker-last-seen" }, timeElement(w.last_seen)),
    cell(4, { class: "mono", text: opt(tags.grpc_addr) }),
    cell(5, { class: "num", text: opt(w.in_flight) }),
    cell(6, { class: "num", text: opt(cache.hits) }),
    cell(7, { class: "num", text: opt(cache.misses) }));
}
