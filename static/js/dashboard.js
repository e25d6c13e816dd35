// dashboard.js: what the logged-in principal may see of the server,
// refreshed every 5 s by updating nodes in place (built once, so nothing
// flickers).
//
// Everyone: health (GET /health). With read: the database count
// (GET /api/databases). With admin: worker counts by status and the cache
// counters (GET /admin/workers; cache figures are the sums of the
// per-worker "cache" objects), and the last hour from GET /admin/stats:
// requests per second, p50/p95 latency, errors (and errors by route),
// cache hit rate, storage operations and workers, drawn by chart.js. A
// principal without admin gets one sentence saying what it does not see,
// not a panel per figure it may not read.

import { request, errorMessage } from "./api.js";
import { h, messageArea, pageHeading, setText, show, showError } from "./dom.js";
import { formatNumber, lineChart } from "./chart.js";
import { latest } from "./latest.js";
import { can } from "./perms.js";

const REFRESH_MS = 5000;
const CACHE_FIELDS = ["hits", "misses", "evictions", "entries"];
const WINDOWS = [["5m", "5 minutes"], ["15m", "15 minutes"], ["1h", "1 hour"]];
// The storage operations drawn, by label; put_if counts as a put.
const STORAGE_SERIES = [["get", ["get"]], ["put", ["put", "put_if"]], ["delete", ["delete"]], ["list", ["list", "list_dirs"]]];

/** render builds the dashboard in root and returns the function that stops its refresh. */
export function render(root, ctx = {}) {
  const me = ctx.me;
  const admin = ctx.isAdmin === true;
  const reader = can(me, "read");
  const msg = messageArea("dash-message");
  const els = { msg, admin, reader, updated: h("p", { id: "dash-updated", testid: "dash-updated", class: "hint", text: "" }) };
  els.health = h("p", { id: "dash-health", testid: "dash-health", class: "big", text: "…" });
  const panels = [statPanel("dash-h-health", "Health", els.health)];
  if (reader) {
    els.dbs = h("p", { id: "dash-databases", testid: "dash-databases", class: "big", text: "…" });
    panels.push(statPanel("dash-h-dbs", "Databases", els.dbs));
  }
  if (admin) panels.push(...adminPanels(els));
  root.append(pageHeading("Dashboard"), msg, h("div", { class: "stats" }, panels));
  if (!admin) {
    const who = (me && (me.name || me.client_id)) || "this key";
    root.append(h("p", { id: "dash-limited", testid: "dash-limited", class: "hint",
      text: `Traffic, latency, worker and cache figures are shown to administrators; ${who} is not one.` }));
  } else {
    root.append(historySection(els));
  }
  root.append(els.updated);

  // ticks counts the refreshes: one asked while another is on its way
  // (another window chosen) supersedes it, so only the latest is drawn and
  // plans the next (an older one answered last drew its window over the
  // one chosen, and each kept a refresh loop of its own).
  let stopped = false;
  let timer = 0;
  const ticks = latest();
  const tick = async () => {
    const latestTick = ticks.next();
    clearTimeout(timer);
    const current = () => !stopped && latestTick();
    await refresh(els, current);
    if (current()) timer = setTimeout(tick, REFRESH_MS);
  };
  els.refreshNow = tick;
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function statPanel(id, title, ...body) {
  return h("section", { class: "panel stat", "aria-labelledby": id }, h("h3", { id, text: title }), ...body);
}

function adminPanels(els) {
  const v = (id) => h("dd", { id, testid: id, text: "…" });
  els.total = h("p", { id: "dash-workers-total", testid: "dash-workers-total", class: "big", text: "…" });
  els.byStatus = h("ul", { id: "dash-workers-by-status", testid: "dash-workers-by-status", class: "hint" });
  els.cache = Object.fromEntries(CACHE_FIELDS.map((f) => [f, v("dash-cache-" + f)]));
  return [
    statPanel("dash-h-workers", "Workers", els.total, els.byStatus),
    statPanel("dash-h-cache", "Entity cache",
      h("dl", {},
        h("dt", { text: "Hits" }), els.cache.hits,
        h("dt", { text: "Misses" }), els.cache.misses,
        h("dt", { text: "Evictions" }), els.cache.evictions,
        h("dt", { text: "Entries" }), els.cache.entries)),
  ];
}

// historySection builds the charts of GET /admin/stats and the window
// choice.
function historySection(els) {
  const windowSel = h("select", { id: "dash-window", testid: "dash-window" },
    WINDOWS.map(([v, label]) => h("option", { value: v, text: label, selected: v === "15m" })));
  els.window = windowSel;
  els.charts = {
    rps: lineChart("dash-chart-rps", "Requests per second", [{ name: "requests/s" }]),
    latency: lineChart("dash-chart-latency", "Latency (ms)", [{ name: "p50" }, { name: "p95" }], { unit: " ms" }),
    errors: lineChart("dash-chart-errors", "Error answers per interval", [{ name: "4xx" }, { name: "5xx" }]),
    cache: lineChart("dash-chart-cache", "Cache hit rate", [{ name: "hit rate" }], { unit: "%", max: 100 }),
    storage: lineChart("dash-chart-storage", "Storage operations per second", STORAGE_SERIES.map(([name]) => ({ name }))),
    workers: lineChart("dash-chart-workers", "Workers", [{ name: "available" }, { name: "unavailable" }]),
  };
  els.figures = h("dl", { id: "dash-figures", testid: "dash-figures", class: "figures" });
  els.errorRows = h("tbody");
  els.errorsTable = h("table", { id: "dash-errors-table", testid: "dash-errors-table", class: "cards-on-phone" },
    h("caption", { class: "hint", text: "Error answers by route in the window" }),
    h("thead", {}, h("tr", {}, ["Route", "4xx", "5xx"].map((c) => h("th", { scope: "col", text: c })))),
    els.errorRows);
  windowSel.addEventListener("change", () => els.refreshNow());
  return h("section", { class: "panel", id: "dash-history", testid: "dash-history", "aria-labelledby": "dash-h-history" },
    h("div", { class: "row spread" }, h("h3", { id: "dash-h-history", text: "Recent activity" }),
      h("label", { for: "dash-window", class: "inline-label" }, "Show the last ", windowSel)),
    els.figures,
    h("div", { class: "chart-grid-wrap" }, Object.values(els.charts).map((c) => c.el)),
    h("div", { class: "table-wrap" }, els.errorsTable));
}

// refresh reads the figures and draws them while current() holds.
async function refresh(els, current) {
  let problems = [];
  try {
    const none = Promise.resolve(null);
    const [health, workers, dbs, stats] = await Promise.all([
      request("GET", "/health"),
      els.admin ? request("GET", "/admin/workers") : none,
      els.reader ? request("GET", "/api/databases") : none,
      els.admin ? request("GET", "/admin/stats?window=" + encodeURIComponent(els.window.value)) : none,
    ]);
    if (!current()) return;
    setText(els.health, health.ok && health.data ? health.data.status || "ok" : `down (${health.status})`);
    if (workers) problems.push(...showWorkers(els, workers));
    if (dbs) problems.push(...showDatabases(els, dbs));
    if (stats) problems.push(...showStats(els, stats));
    setText(els.updated, "Updated " + new Date().toLocaleTimeString());
    if (problems.length) show(els.msg, problems.join("\n"), "error");
    else show(els.msg, "");
  } catch (e) {
    if (e.authExpired || !current()) return;
    setText(els.health, "unreachable");
    showError(els.msg, e);
  }
}

function showWorkers(els, r) {
  if (!r.ok || !Array.isArray(r.data)) {
    setText(els.total, "n/a");
    for (const f of CACHE_FIELDS) setText(els.cache[f], "n/a");
    return ["Workers: " + errorMessage(r)];
  }
  const counts = new Map();
  const sums = Object.fromEntries(CACHE_FIELDS.map((f) => [f, null]));
  for (const w of r.data) {
    const st = String((w && w.status) || "unknown");
    counts.set(st, (counts.get(st) || 0) + 1);
    const c = w && w.cache;
    if (!c || typeof c !== "object") continue;
    for (const f of CACHE_FIELDS) if (typeof c[f] === "number") sums[f] = (sums[f] || 0) + c[f];
  }
  setText(els.total, r.data.length);
  syncStatusList(els.byStatus, counts);
  for (const f of CACHE_FIELDS) setText(els.cache[f], sums[f] === null ? "n/a" : sums[f]);
  return [];
}

// syncStatusList keeps one <li data-status> per status, updating counts in place.
function syncStatusList(ul, counts) {
  const existing = new Map([...ul.children].map((li) => [li.dataset.status, li]));
  for (const [st, li] of existing) if (!counts.has(st)) li.remove();
  for (const st of [...counts.keys()].sort()) {
    let li = existing.get(st);
    if (!li) {
      li = h("li", { "data-status": st, testid: "dash-status-" + st });
      ul.append(li);
    }
    setText(li, `${st}: ${counts.get(st)}`);
  }
}

function showDatabases(els, r) {
  if (!r.ok || !Array.isArray(r.data)) {
    setText(els.dbs, "n/a");
    return ["Databases: " + errorMessage(r)];
  }
  setText(els.dbs, r.data.length);
  return [];
}

// showStats draws the points of GET /admin/stats and the window's figures.
function showStats(els, r) {
  if (!r.ok || !r.data || !Array.isArray(r.data.points)) return ["Recent activity: " + errorMessage(r)];
  const points = r.data.points;
  const times = points.map((p) => new Date(new Date(p.start).getTime() + p.seconds * 1000));
  const to = times.length ? times[times.length - 1] : new Date();
  const from = new Date(to.getTime() - r.data.window_seconds * 1000);
  const col = (f) => points.map(f);
  const c = els.charts;
  c.rps.update(times, [col((p) => p.requests_per_second)], from, to);
  c.latency.update(times, [col((p) => p.p50_ms), col((p) => p.p95_ms)], from, to);
  c.errors.update(times, [col((p) => p.client_errors), col((p) => p.server_errors)], from, to);
  c.cache.update(times, [col((p) => (p.cache_hit_rate === null ? null : p.cache_hit_rate * 100))], from, to);
  c.storage.update(times, STORAGE_SERIES.map(([, ops]) =>
    col((p) => ops.reduce((n, op) => n + ((p.storage_operations || {})[op] || 0), 0) / Math.max(p.seconds, 0.001))), from, to);
  c.workers.update(times, [col((p) => p.workers_available), col((p) => p.workers_unavailable)], from, to);
  showFigures(els.figures, r.data.summary || {});
  els.errorRows.replaceChildren(...(r.data.errors_by_route || []).map((e) =>
    h("tr", { "data-route": e.route },
      h("td", { class: "mono", "data-label": "Route", text: e.route }),
      h("td", { class: "num", "data-label": "4xx", testid: "dash-route-4xx", text: String(e.client_errors) }),
      h("td", { class: "num", "data-label": "5xx", testid: "dash-route-5xx", text: String(e.server_errors) }))));
  if (!els.errorRows.children.length) {
    els.errorRows.append(h("tr", {}, h("td", { colspan: "3", class: "hint", text: "No error answers in the window." })));
  }
  return [];
}

// showFigures writes the window's totals as a definition list.
function showFigures(dl, s) {
  const ms = (v) => (typeof v === "number" ? formatNumber(v) + " ms" : "—");
  const rows = [
    ["requests", "Requests", formatNumber(s.requests || 0)],
    ["rps", "Per second", formatNumber(s.requests_per_second || 0)],
    ["p50", "p50", ms(s.p50_ms)],
    ["p95", "p95", ms(s.p95_ms)],
    ["errors", "Errors (4xx / 5xx)", `${s.client_errors || 0} / ${s.server_errors || 0}`],
    ["hit-rate", "Cache hit rate", typeof s.cache_hit_rate === "number" ? `${formatNumber(s.cache_hit_rate * 100)}%` : "—"],
  ];
  if (dl.children.length !== rows.length) {
    dl.replaceChildren(...rows.map(([id, label]) => h("div", {}, h("dt", { text: label }), h("dd", { id: "dash-fig-" + id, testid: "dash-fig-" + id }))));
  }
  for (const [id, , value] of rows) setText(dl.querySelector("#dash-fig-" + id), value);
}
