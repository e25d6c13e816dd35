// merge.js: the three-way merge of a JSON document behind the 412 panel
// (conflict.js): the version the user opened (base), the one stored now
// (theirs) and the user's edit (mine). A part that only one side changed
// takes that side's value; a part both changed alike takes it once; a part
// both changed differently is a conflict for the user to decide.
//
// Objects merge member by member (a member added, removed or changed is a
// change of that member). Arrays of the base's length on all three sides
// merge element by element; an array that both sides only appended to is a
// conflict whose choices include "both" (the base, their additions, then
// yours). Anything else that both changed differently, a value against a
// removal included, is one conflict at its JSON Pointer.

import { escapePointer } from "./jsonedit.js";

/** MISSING stands for a member (or document) that does not exist. */
export const MISSING = Symbol("missing");

/** deepEqual compares two JSON values (or MISSING) by value. */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (a === MISSING || b === MISSING || a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && v !== MISSING;

/**
 * merge3 merges base, theirs and mine. Returns {merged, conflicts,
 * applied}: merged holds every part decided (a conflict's part holds
 * theirs until resolved); conflicts are [{path, base, theirs, mine,
 * both?}] in document order (both, for two appends, is the value with
 * both sides' additions); applied counts the parts taken from mine
 * alone (the user's changes merged without a question).
 */
export function merge3(base, theirs, mine) {
  const out = { conflicts: [], applied: 0 };
  out.merged = mergeValue(base, theirs, mine, "", out);
  return out;
}

function mergeValue(base, theirs, mine, path, out) {
  if (deepEqual(theirs, mine)) return theirs;
  if (deepEqual(base, theirs)) {
    out.applied++;
    return mine;
  }
  if (deepEqual(base, mine)) return theirs;
  const b = base === MISSING ? {} : base;
  if (isObject(b) && isObject(theirs) && isObject(mine)) return mergeObjects(b, theirs, mine, path, out);
  if (Array.isArray(base) && Array.isArray(theirs) && Array.isArray(mine)) {
    if (theirs.length === base.length && mine.length === base.length) {
      return base.map((x, i) => mergeValue(x, theirs[i], mine[i], `${path}/${i}`, out));
    }
    if (isPrefix(base, theirs) && isPrefix(base, mine)) {
      const both = [...theirs, ...mine.slice(base.length)];
      out.conflicts.push({ path, base, theirs, mine, both });
      return theirs;
    }
  }
  out.conflicts.push({ path, base, theirs, mine });
  return theirs;
}

function mergeObjects(base, theirs, mine, path, out) {
  const merged = {};
  // In the order of the edit, as the user reads it.
  const keys = [...new Set([...Object.keys(mine), ...Object.keys(theirs), ...Object.keys(base)])];
  const get = (o, k) => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : MISSING);
  for (const k of keys) {
    const v = mergeValue(get(base, k), get(theirs, k), get(mine, k), `${path}/${escapePointer(k)}`, out);
    if (v !== MISSING) merged[k] = v;
  }
  return merged;
}

function isPrefix(a, b) {
  return a.length <= b.length && a.every((x, i) => deepEqual(x, b[i]));
}

/**
 * resolve returns the merged document with each conflict i decided by
 * choices[i]: "theirs", "mine" or "both" (a conflict of two appends).
 * A choice of a side where the part is MISSING removes it. The result is
 * MISSING when the whole document was chosen away.
 */
export function resolve(result, choices) {
  let doc = structuredClone(result.merged);
  result.conflicts.forEach((c, i) => {
    const v = choices[i] === "mine" ? c.mine : choices[i] === "both" && c.both ? c.both : c.theirs;
    doc = setAt(doc, c.path, v);
  });
  return doc;
}

// setAt sets (or, for MISSING, removes) the value at pointer in doc and
// returns the document.
function setAt(doc, pointer, value) {
  if (pointer === "") return value === MISSING ? MISSING : structuredClone(value);
  const parts = pointer.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  let cur = doc;
  for (const p of parts.slice(0, -1)) cur = cur[p];
  const last = parts[parts.length - 1];
  if (value === MISSING) {
    if (Array.isArray(cur)) cur.splice(Number(last), 1);
    else delete cur[last];
  } else {
    cur[last] = structuredClone(value);
  }
  return doc;
}
