// dashboard.js: health, worker counts by status, database count and cache
// counters, refreshed every 5 s by updating text nodes in place (the DOM is
// built once, so nothing flickers).
//
// Calls: GET /health, GET /admin/workers (403 -> "admin only"),
// GET /api/databases. Cache figures are the sums of the per-worker "cache"
// objects ({hits, misses, evictions, entries}) in /admin/workers.

import { request, errorMessage } from "./api.js";
import { h, messageArea, pageHeading, setText, show, showError } from "./dom.js";

const REFRESH_MS = 5000;
const CACHE_FIELDS = ["hits", "misses", "evictions", "entries"];

/** render builds the dashboard in root and returns the function that stops its refresh. */
export function render(root, ctx = {}) {
  const v = (id) => h("dd", { id, testid: id, text: "…" });
  const health = h("p", { id: "dash-health", testid: "dash-health", class: "big", text: "…" });
  const total = h("p", { id: "dash-workers-total", testid: "dash-workers-total", class: "big", text: "…" });
  const byStatus = h("ul", { id: "dash-workers-by-status", testid: "dash-workers-by-status", class: "hint" });
  const dbs = h("p", { id: "dash-databases", testid: "dash-databases", class: "big", text: "…" });
  const cache = Object.fromEntries(CACHE_FIELDS.map((f) => [f, v("dash-cache-" + f)]));
  const updated = h("p", { id: "dash-updated", testid: "dash-updated", class: "hint", text: "" });
  const msg = messageArea("dash-message");

  root.append(
    pageHeading("Dashboard"),
    msg,
    h("div", { class: "stats" },
      h("section", { class: "panel stat", "aria-labelledby": "dash-h-health" },
        h("h3", { id: "dash-h-health", text: "Health" }), health),
      h("section", { class: "panel stat", "aria-labelledby": "dash-h-workers" },
        h("h3", { id: "dash-h-workers", text: "Workers" }), total, byStatus),
      h("section", { class: "panel stat", "aria-labelledby": "dash-h-dbs" },
        h("h3", { id: "dash-h-dbs", text: "Databases" }), dbs),
      h("section", { class: "panel stat", "aria-labelledby": "dash-h-cache" },
        h("h3", { id: "dash-h-cache", text: "Entity cache" }),
        h("dl", {},
          h("dt", { text: "Hits" }), cache.hits,
          h("dt", { text: "Misses" }), cache.misses,
          h("dt", { text: "Evictions" }), cache.evictions,
          h("dt", { text: "Entries" }), cache.entries))),
    updated,
  );

  let stopped = false;
  let timer = 0;
  // Non-admins would only get 403 from /admin/workers: say so without asking.
  const els = { health, total, byStatus, dbs, cache, updated, msg, admin: ctx.isAdmin !== false };
  const tick = async () => {
    await refresh(els);
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

async function refresh(els) {
  let problems = [];
  try {
    const [health, workers, dbs] = await Promise.all([
      request("GET", "/health"),
      els.admin ? request("GET", "/admin/workers") : Promise.resolve({ status: 403, ok: false }),
      request("GET", "/api/databases"),
    ]);
    setText(els.health, health.ok && health.data ? health.data.status || "ok" : `down (${health.status})`);
    problems = problems.concat(showWorkers(els, workers), showDatabases(els, dbs));
    setText(els.updated, "Updated " + new Date().toLocaleTimeString());
    if (problems.length) show(els.msg, problems.join("\n"), "error");
    else show(els.msg, "");
  } catch (e) {
    if (e.authExpired) return;
    setText(els.health, "unreachable");
    showError(els.msg, e);
  }
}

function showWorkers(els, r) {
  if (r.status === 403) {
    setText(els.total, "admin only");
    syncStatusList(els.byStatus, new Map());
    for (const f of CACHE_FIELDS) setText(els.cache[f], "admin only");
    return [];
  }
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
  if (r.status === 403) {
    setText(els.dbs, "no read permission");
    return [];
  }
  if (!r.ok || !Array.isArray(r.data)) {
    setText(els.dbs, "n/a");
    return ["Databases: " + errorMessage(r)];
  }
  setText(els.dbs, r.data.length);
  return [];
}
