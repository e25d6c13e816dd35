// merge_test.js holds the unit tests of merge.js, the three-way merge of
// the 412 panel. runMergeTests() returns [{name, pass, got, want}]; the Go
// browser test (ui_console_test.go) imports this module in the page and
// fails on any pass === false. It runs under node too:
//   node --input-type=module -e 'import("./static/js/merge_test.js").then(m => console.log(m.runMergeTests().filter(r => !r.pass)))'
//
// Besides the fixed cases, seeded random documents check the invariants:
// changes of the two sides to disjoint members merge without a conflict
// into a document that has both; a side that changed nothing yields the
// other; resolving every conflict for one side gives that side's value
// at each conflicting place.

import { MISSING, deepEqual, merge3, resolve } from "./merge.js";
import { attempt, rng, runFixed } from "./testkit.js";

const show = (v) => (v === MISSING ? "MISSING" : JSON.stringify(v));

// summary is what a case compares: the merged document (conflicts taken
// as theirs), and each conflict's path with its choices.
function summary(base, theirs, mine) {
  const r = merge3(base, theirs, mine);
  const conflicts = r.conflicts.map((c) => `${c.path || "(root)"}:${show(c.theirs)}|${show(c.mine)}${c.both ? "|both=" + show(c.both) : ""}`);
  return `${show(r.merged)} conflicts[${conflicts.join(" ")}] applied ${r.applied}`;
}

const fixed = [
  {
    name: "changes to different members both apply",
    run: () => summary({ a: 1, b: 1, c: 1 }, { a: 2, b: 1, c: 1 }, { a: 1, b: 2, c: 1 }),
    want: '{"a":2,"b":2,"c":1} conflicts[] applied 1',
  },
  {
    name: "the same member changed differently is a conflict; the rest merges",
    run: () => summary({ title: "t", n: 1 }, { title: "theirs", n: 2 }, { title: "mine", n: 1 }),
    want: '{"title":"theirs","n":2} conflicts[/title:"theirs"|"mine"] applied 0',
  },
  {
    name: "the same change on both sides is no conflict",
    run: () => summary({ a: 1 }, { a: 5 }, { a: 5 }),
    want: '{"a":5} conflicts[] applied 0',
  },
  {
    name: "members added by each side are both kept",
    run: () => summary({}, { by: "other" }, { tag: "mine" }),
    want: '{"tag":"mine","by":"other"} conflicts[] applied 1',
  },
  {
    name: "one member added by both with different values is a conflict",
    run: () => summary({ v: 1 }, { v: 2, by: "other" }, { v: 1, by: "me" }),
    want: '{"v":2,"by":"other"} conflicts[/by:"other"|"me"] applied 0',
  },
  {
    name: "a removal against an unchanged member removes it",
    run: () => summary({ a: 1, b: 2 }, { a: 1 }, { a: 1, b: 2, c: 3 }),
    want: '{"a":1,"c":3} conflicts[] applied 1',
  },
  {
    name: "a removal against a change is a conflict",
    run: () => summary({ a: 1, b: 2 }, { a: 1 }, { a: 1, b: 3 }),
    want: '{"a":1} conflicts[/b:MISSING|3] applied 0',
  },
  {
    name: "array elements changed at different places merge",
    run: () => summary({ m: [{ t: "a" }, { t: "b" }, { t: "c" }] }, { m: [{ t: "A" }, { t: "b" }, { t: "c" }] }, { m: [{ t: "a" }, { t: "b" }, { t: "C", x: 1 }] }),
    want: '{"m":[{"t":"A"},{"t":"b"},{"t":"C","x":1}]} conflicts[] applied 1',
  },
  {
    name: "two appends are a conflict whose choices include both",
    run: () => summary({ m: [1] }, { m: [1, 2] }, { m: [1, 3] }),
    want: '{"m":[1,2]} conflicts[/m:[1,2]|[1,3]|both=[1,2,3]] applied 0',
  },
  {
    name: "one side's append merges with the other's edit elsewhere",
    run: () => summary({ title: "t", m: [1] }, { title: "new", m: [1] }, { title: "t", m: [1, 2] }),
    want: '{"title":"new","m":[1,2]} conflicts[] applied 1',
  },
  {
    name: "nested objects merge at depth; keys with / and ~ make pointers",
    run: () => summary({ a: { "x/y": { "t~": 1, k: 1 } } }, { a: { "x/y": { "t~": 2, k: 1 } } }, { a: { "x/y": { "t~": 3, k: 2 } } }),
    want: '{"a":{"x/y":{"t~":2,"k":2}}} conflicts[/a/x~1y/t~0:2|3] applied 1',
  },
  {
    name: "a change of type against a change is a conflict at that place",
    run: () => summary({ a: { b: 1 } }, { a: "flat" }, { a: { b: 2 } }),
    want: '{"a":"flat"} conflicts[/a:"flat"|{"b":2}] applied 0',
  },
  {
    name: "different scalar documents conflict at the root",
    run: () => summary(1, 2, 3),
    want: "2 conflicts[(root):2|3] applied 0",
  },
  {
    name: "a document created meanwhile merges member by member",
    run: () => summary(MISSING, { a: 1, b: 1 }, { a: 1, c: 1 }),
    want: '{"a":1,"c":1,"b":1} conflicts[] applied 1',
  },
  {
    name: "resolve applies each choice: mine, theirs, both, and a removal",
    run: () => {
      const r = merge3({ a: 1, b: 1, m: [0], d: 1 }, { a: 2, b: 2, m: [0, 1] }, { a: 3, b: 3, m: [0, 2], d: 2 });
      return show(resolve(r, ["mine", "theirs", "both", "theirs"])) + " " + show(resolve(r, ["theirs", "mine", "mine", "mine"]));
    },
    want: '{"a":3,"b":2,"m":[0,1,2]} {"a":2,"b":3,"m":[0,2],"d":2}',
  },
  {
    name: "resolve leaves the merge result untouched",
    run: () => {
      const r = merge3({ a: { x: 1 } }, { a: { x: 2 } }, { a: { x: 3 } });
      resolve(r, ["mine"]);
      return show(r.merged);
    },
    want: '{"a":{"x":2}}',
  },
];

const NAMES = ["a", "b", "c", "d", "role", "text", "x/y", "t~", "messages"];

function randomValue(r, depth) {
  const k = Math.floor(r() * (depth > 2 ? 4 : 6));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.round(r() * 1000);
    case 3: return "s" + Math.floor(r() * 100);
    case 4: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) o[NAMES[Math.floor(r() * NAMES.length)]] = randomValue(r, depth + 1);
      return o;
    }
  }
}

// changeMembers returns a copy of base with each member in keys changed
// (a new value, or removed) and a member added when add is set.
function changeMembers(r, base, keys, add) {
  const out = structuredClone(base);
  for (const k of keys) {
    if (r() < 0.25) delete out[k];
    else {
      let v;
      do v = randomValue(r, 1);
      while (deepEqual(v, base[k]));
      out[k] = v;
    }
  }
  if (add) out[add] = randomValue(r, 1);
  return out;
}

function randomCase(r) {
  const base = {};
  for (const n of NAMES) if (r() < 0.7) base[n] = randomValue(r, 1);
  const keys = Object.keys(base);
  const mineKeys = keys.filter(() => r() < 0.3);
  const theirKeys = keys.filter((k) => !mineKeys.includes(k) && r() < 0.4);
  const theirs = changeMembers(r, base, theirKeys, r() < 0.5 ? "theirs_new" : "");
  const mine = changeMembers(r, base, mineKeys, r() < 0.5 ? "mine_new" : "");
  const want = structuredClone(theirs);
  for (const k of [...mineKeys, "mine_new"]) {
    if (k in mine) want[k] = mine[k];
    else delete want[k];
  }
  const r1 = merge3(base, theirs, mine);
  if (r1.conflicts.length) return `disjoint changes gave conflicts ${r1.conflicts.map((c) => c.path).join(",")}`;
  if (!deepEqual(r1.merged, want)) return `merged ${show(r1.merged)}, want ${show(want)}`;
  if (!deepEqual(merge3(base, base, mine).merged, mine)) return "theirs unchanged did not yield mine";
  if (!deepEqual(merge3(base, theirs, base).merged, theirs)) return "mine unchanged did not yield theirs";
  // Both sides changing the same members: resolving every conflict for
  // one side gives that side's values where they conflicted.
  const other = changeMembers(r, base, mineKeys, "");
  const r2 = merge3(base, other, mine);
  for (const side of ["mine", "theirs"]) {
    const doc = resolve(r2, r2.conflicts.map(() => side));
    const src = side === "mine" ? mine : other;
    for (const c of r2.conflicts) {
      const k = c.path.slice(1).split("/")[0].replace(/~1/g, "/").replace(/~0/g, "~");
      const got = k in doc ? doc[k] : MISSING;
      const exp = k in src ? src[k] : MISSING;
      if (c.path.split("/").length === 2 && !deepEqual(got, exp)) return `resolving ${c.path} for ${side} gave ${show(got)}, want ${show(exp)}`;
    }
  }
  return "";
}

/** runMergeTests runs every case and returns their results. */
export function runMergeTests() {
  const results = runFixed(fixed);
  const r = rng(25);
  for (let i = 0; i < 300; i++) {
    const problem = attempt(() => randomCase(r));
    results.push({ name: `random documents ${i}`, pass: problem === "", got: problem, want: "" });
  }
  return results;
}
