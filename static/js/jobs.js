// jobs.js: key jobs (admin only): start a rekey of a database
// (POST /admin/databases/{db}/rekey) and follow every job from
// GET /admin/jobs, rekeys and master-key rotations, with a progress bar,
// refreshed every second while one runs.

import { call } from "./api.js";
import { field, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { timeElement } from "./format.js";
import { latest } from "./latest.js";

const COLUMNS = ["Job", "Database", "State", "Progress", "Started", "Finished"];
const REFRESH_MS = 1000;

/** render builds the Key jobs page in root; it returns the cleanup that stops the refresh. */
export function render(root) {
  const msg = messageArea("jobs-message");
  const db = h("input", { id: "jobs-db", testid: "jobs-db", type: "text", autocomplete: "off", spellcheck: "false" });
  const start = h("button", { type: "submit", id: "jobs-rekey", testid: "jobs-rekey", text: "Rekey" });
  const form = h("form", { class: "panel", novalidate: true },
    field("Database", db, "Re-encrypts every entity of the database under a fresh data key, online; it resumes after a restart."),
    start);
  const tbody = h("tbody");
  const table = h("table", { id: "jobs-table", testid: "jobs-table", class: "cards-on-phone" },
    h("caption", { class: "hint", text: "Key jobs, newest first" }),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", text: c })))),
    tbody);
  root.append(pageHeading("Key jobs"), form, msg, h("div", { class: "panel table-wrap" }, table));
  let timer = null;
  let stopped = false;
  // Only the latest load is drawn and plans the next: the list read when
  // the page opened, answered after the one a Rekey asked, drew the list
  // without the job started (until the next refresh, if any ran).
  const loads = latest();
  const load = async () => {
    const current = loads.next();
    clearTimeout(timer);
    try {
      const list = await call("GET", "/admin/jobs");
      if (!current()) return;
      const jobs = Array.isArray(list) ? list : [];
      tbody.replaceChildren(...jobs.map(row));
      if (jobs.length === 0) show(msg, "No key jobs yet.", "info");
      else if (msg.classList.contains("info")) show(msg, "", "info");
      if (!stopped && jobs.some((j) => j.state === "running")) timer = setTimeout(load, REFRESH_MS);
    } catch (e) {
      if (current()) showError(msg, e);
    }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = db.value.trim();
    if (!name) return show(msg, "Enter a database name.", "error");
    start.disabled = true;
    try {
      const job = await call("POST", `/admin/databases/${encodeURIComponent(name)}/rekey`);
      show(msg, `Rekey of ${name} started (job ${job.id}).`, "ok");
      load();
    } catch (e) {
      showError(msg, e);
    } finally {
      start.disabled = false;
    }
  });
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function row(j) {
  const opt = (v) => (v === undefined || v === null || v === "" ? "—" : String(v));
  const done = Number(j.done) || 0;
  const total = Number(j.total) || 0;
  const cell = (i, attrs, ...kids) => h("td", { "data-label": COLUMNS[i], ...attrs }, ...kids);
  // Before the entities are counted a running job has no total: the bar
  // is indeterminate (no value attribute).
  // A master-key rotation (kind rotate) rewrites every database: it
  // counts databases, a rekey entities.
  const rotation = j.kind === "rotate";
  const target = rotation ? "every database (master-key rotation)" : opt(j.database);
  const bar = h("progress", { testid: "job-progress", max: total || 1, value: total ? done : (j.state === "running" ? null : 1),
    "aria-label": `${target}: ${done} of ${total} ${rotation ? "databases" : "entities"}` });
  const state = j.state === "failed" && j.error ? `failed: ${j.error}` : opt(j.state) + (j.phase ? ` (${j.phase})` : "");
  return h("tr", { "data-job": opt(j.id), "data-state": opt(j.state) },
    cell(0, { class: "mono", text: opt(j.id) }),
    cell(1, { text: target }),
    cell(2, {}, h("span", { class: "status-pill", text: state })),
    cell(3, { testid: "job-progress-cell" }, bar, h("span", { class: "num", text: ` ${done} / ${total}` })),
    cell(4, {}, timeElement(j.started_at)),
    cell(5, {}, timeElement(j.finished_at)));
}
