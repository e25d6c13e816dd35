// versions.js: the kept versions of the entity open in the editor
// (API.md, Entity versions). GET /entity/{db}/versions?key=K lists them;
// Diff shows a version's document against the current one, line by line;
// Restore writes the version's document back, conditional on the current
// ETag (a PUT with If-Match, or If-None-Match: * when the entity is gone),
// so a change made meanwhile is a 412, never overwritten. When the entity
// was soft-deleted, Undelete (POST /entity/{db}/undelete) brings it back.

import { request, errorMessage } from "./api.js";
import { clear, formatJSON, h, messageArea, show, showError } from "./dom.js";
import { timeElement } from "./format.js";
import { denyReason, gate, setEnabled } from "./perms.js";
import { latest } from "./latest.js";
import { MISSING } from "./merge.js";

// maxDiffLines bounds the line diff (its table grows with the product of
// the two lengths): longer documents are not diffed.
const maxDiffLines = 2000;

/**
 * lineDiff returns the lines of a and b (arrays of strings) as
 * [{op: " " | "-" | "+", line}], a longest-common-subsequence diff: "-"
 * only in a, "+" only in b.
 */
export function lineDiff(a, b) {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: " ", line: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: "-", line: a[i++] });
    else out.push({ op: "+", line: b[j++] });
  }
  while (i < n) out.push({ op: "-", line: a[i++] });
  while (j < m) out.push({ op: "+", line: b[j++] });
  return out;
}

/**
 * undoNote answers the sentence a confirmation of deleting n entities of
 * db ends with. While the database keeps versions (its max_versions, or
 * -max-versions, above 0) a DELETE is a soft delete that Undelete brings
 * back; otherwise it cannot be undone. The setting is read now, as it may
 * have changed since the page loaded; when it cannot be read, the note
 * says what holds either way.
 */
export async function undoNote(db, n = 1) {
  try {
    const r = await request("GET", `/api/databases/${encodeURIComponent(db)}`);
    if (r.ok && r.data && typeof r.data.max_versions === "number") {
      if (r.data.max_versions === 0) return "This cannot be undone.";
      return n === 1
        ? `"${db}" keeps versions: this is a soft delete, and Undelete in the entity's Versions brings it back.`
        : `"${db}" keeps versions: these are soft deletes, and Undelete in each entity's Versions brings it back.`;
    }
  } catch {
    // The note below holds whatever the setting is.
  }
  return "This cannot be undone unless the database keeps versions (then Undelete brings it back).";
}

/**
 * versionsPanel returns {el, load(key, stored, etag)} for database db:
 * load shows the versions of key, whose current document is stored
 * (MISSING when it does not exist) with ETag etag. opts: me (from
 * /api/me), onRestored(key) after a Restore or Undelete wrote key (which
 * may no longer be the entity shown).
 */
export function versionsPanel(db, opts) {
  const list = h("ol", { id: "versions-list", testid: "versions-list", class: "versions-list" });
  const diff = h("pre", { id: "versions-diff", testid: "versions-diff", class: "versions-diff", hidden: true });
  const undelete = h("button", { type: "button", id: "versions-undelete", testid: "versions-undelete", text: "Undelete", hidden: true });
  const note = h("p", { id: "versions-note", testid: "versions-note", class: "hint" });
  const msg = messageArea("versions-message");
  const writeWhy = denyReason(opts.me, "write");
  gate(writeWhy, undelete);
  const el = h("section", { id: "versions", testid: "versions", class: "versions", hidden: true, "aria-label": "Versions" },
    h("h4", { text: "Versions" }), note, undelete, list, diff, msg);

  // The entity shown: its key, its current document and ETag. loads
  // counts the loads (an answer to an older one is dropped; loaded is the
  // check of the latest), diffs the diffs asked: only the latest is
  // drawn, and only for the entity it was asked of.
  let key = null;
  let stored = MISSING;
  let etag = "";
  const loads = latest();
  let loaded = () => false;
  const diffs = latest();

  const path = (suffix) => `/entity/${encodeURIComponent(db)}/${suffix}?key=${encodeURIComponent(key)}`;

  async function load(k, doc, tag) {
    const current = loads.next();
    loaded = current;
    key = k;
    stored = doc;
    etag = tag;
    diff.hidden = true;
    show(msg, "");
    if (k === null) {
      el.hidden = true;
      return;
    }
    try {
      const r = await request("GET", path("versions"));
      if (!current()) return;
      if (r.status === 404 || !r.ok || !r.data || !Array.isArray(r.data.versions) || r.data.versions.length === 0) {
        el.hidden = true;
        return;
      }
      render(r.data.versions);
      el.hidden = false;
    } catch (e) {
      if (!current()) return;
      el.hidden = false;
      showError(msg, e);
    }
  }

  function render(versions) {
    clear(list);
    const newest = versions[versions.length - 1];
    const gone = stored === MISSING;
    undelete.hidden = !(gone && newest.deleted && !newest.destroyed);
    note.textContent = gone && newest.deleted
      ? `Deleted${newest.deleted_by ? ` by ${newest.deleted_by}` : ""}: Undelete brings version ${newest.version} back.`
      : `${versions.length} kept, newest first.`;
    for (const v of [...versions].reverse()) list.append(row(v));
  }

  function row(v) {
    const current = stored !== MISSING && v.etag && etag.replace(/"/g, "") === v.etag;
    const flags = [current ? "current" : "", v.deleted ? "deleted" : "", v.destroyed ? "destroyed" : ""].filter(Boolean);
    const diffBtn = h("button", { type: "button", class: "secondary", testid: `version-diff-${v.version}`, text: "Diff" });
    const restore = h("button", { type: "button", class: "secondary", testid: `version-restore-${v.version}`, text: "Restore" });
    gate(writeWhy, restore);
    setEnabled(diffBtn, !v.destroyed && !current);
    setEnabled(restore, !v.destroyed && !current && !writeWhy);
    diffBtn.addEventListener("click", () => showDiff(v));
    restore.addEventListener("click", () => doRestore(v));
    return h("li", { "data-version": String(v.version), testid: `version-${v.version}` },
      h("span", { class: "version-no", text: `v${v.version}` }), " ",
      timeElement(v.time), " ",
      h("span", { class: "hint", text: `by ${v.principal || "unknown"}` }),
      flags.length ? h("span", { class: "badge", text: flags.join(", ") }) : null,
      h("span", { class: "row" }, diffBtn, restore));
  }

  // readVersion answers the document of version v of k, or null after
  // showing why not.
  async function readVersion(k, v) {
    const r = await request("GET", `/entity/${encodeURIComponent(db)}?key=${encodeURIComponent(k)}&version=${v.version}`);
    if (!r.ok) {
      show(msg, `Could not read version ${v.version}: ${errorMessage(r)}`);
      return null;
    }
    return r.data;
  }

  async function showDiff(v) {
    const current = diffs.next();
    const sameLoad = loaded;
    const cur = stored;
    try {
      const doc = await readVersion(key, v);
      if (!current() || !sameLoad()) return;
      if (doc === null) return;
      const a = formatJSON(doc).split("\n");
      const b = cur === MISSING ? [] : formatJSON(cur).split("\n");
      clear(diff);
      if (a.length > maxDiffLines || b.length > maxDiffLines) {
        diff.textContent = `Too long to diff here (over ${maxDiffLines} lines).`;
      } else {
        diff.append(h("span", { class: "diff-head", text: `--- version ${v.version}\n+++ current\n` }));
        for (const d of lineDiff(a, b)) {
          diff.append(h("span", { class: d.op === "-" ? "diff-del" : d.op === "+" ? "diff-add" : "diff-same", text: `${d.op} ${d.line}\n` }));
        }
      }
      diff.dataset.version = String(v.version);
      diff.hidden = false;
    } catch (e) {
      showError(msg, e);
    }
  }

  // doRestore writes version v back over the entity it is a version of,
  // as it was shown when Restore was pressed: the editor may have opened
  // another entity by the time the version's document comes.
  async function doRestore(v) {
    const k = key;
    const pre = stored === MISSING ? { "If-None-Match": "*" } : { "If-Match": etag };
    if (!window.confirm(`Restore version ${v.version} of "${k}"? It replaces the current document (as a new version).`)) return;
    try {
      const doc = await readVersion(k, v);
      if (doc === null) return;
      const r = await request("PUT", `/entity/${encodeURIComponent(db)}`, { [k]: doc }, { headers: pre });
      if (r.status === 412) return show(msg, `Not restored: ${k} changed since it was opened. Open it again first.`);
      if (!r.ok) return show(msg, errorMessage(r));
      await opts.onRestored(k);
      show(msg, k === key ? `Restored version ${v.version}.` : `Restored version ${v.version} of ${k}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  }

  undelete.addEventListener("click", async () => {
    const k = key;
    try {
      const r = await request("POST", path("undelete"));
      if (!r.ok) return show(msg, errorMessage(r));
      await opts.onRestored(k);
      show(msg, `Undeleted ${k}.`, "ok");
    } catch (e) {
      showError(msg, e);
    }
  });

  return { el, load };
}
