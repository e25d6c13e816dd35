// jsonedit_test.js holds the unit tests of jsonedit.js's scanner.
// runJSONEditTests() returns [{name, pass, got, want}]; the Go browser test
// imports this module in the page and fails on any pass === false. It runs
// under node too:
//   node --input-type=module -e 'import("./static/js/jsonedit_test.js").then(m => console.log(m.runJSONEditTests().filter(r => !r.pass)))'
//
// The invariant: for seeded random documents, written compactly and
// indented, the tokens put together are the text, and every value's JSON
// Pointer is placed where the text of exactly that value stands.

import { escapePointer, locate, scanJSON } from "./jsonedit.js";
import { attempt, rng, runFixed } from "./testkit.js";

const NAMES = ["a", "role", "messages", "x/y", "t~1", "", "ü", "q\"uote", "back\\slash", "new\nline"];

function randomValue(r, depth) {
  const k = Math.floor(r() * (depth > 3 ? 5 : 7));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.round((r() - 0.5) * 1e6) / (r() < 0.5 ? 1 : 1000);
    case 3: return NAMES[Math.floor(r() * NAMES.length)] + "\u00e9\t";
    case 4: return "";
    case 5: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) o[NAMES[Math.floor(r() * NAMES.length)]] = randomValue(r, depth + 1);
      return o;
    }
  }
}

// pointers lists [pointer, value] for v and everything inside it.
function pointers(v, p = "", out = []) {
  out.push([p, v]);
  if (Array.isArray(v)) v.forEach((x, i) => pointers(x, `${p}/${i}`, out));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) pointers(x, `${p}/${escapePointer(k)}`, out);
  return out;
}

function checkDoc(doc, indent) {
  const text = JSON.stringify(doc, null, indent);
  const { tokens, values } = scanJSON(text);
  const joined = tokens.map((t) => text.slice(t.start, t.end)).join("");
  if (joined !== text) return `tokens rebuild ${JSON.stringify(joined)}, not the text`;
  for (const [p, v] of pointers(doc)) {
    const at = values.get(p);
    if (!at) return `pointer ${JSON.stringify(p)} not placed`;
    const slice = text.slice(at.start, at.end);
    if (JSON.stringify(JSON.parse(slice)) !== JSON.stringify(v)) return `pointer ${JSON.stringify(p)} placed at ${JSON.stringify(slice)}`;
  }
  if (values.size !== pointers(doc).length) return `${values.size} pointers placed, want ${pointers(doc).length}`;
  return "";
}

const fixed = [
  {
    name: "a missing member is reported at its object's name",
    run: () => {
      const text = '{\n  "messages": [\n    {"text": "hi"}\n  ]\n}';
      const at = locate(text, "/messages/0/role");
      return at ? `${at.pointer} line ${at.line} ${text.slice(at.start, at.end)}` : "null";
    },
    want: "/messages/0 line 3 {",
  },
  {
    name: "a member's name is what gets underlined, in URI fragment form too",
    run: () => {
      const text = '{"a": {"b~c": [1, 2]}}';
      const at = locate(text, "#/a/b~0c/1");
      return at ? `${at.pointer} ${text.slice(at.start, at.end)}` : "null";
    },
    want: "/a/b~0c/1 2",
  },
  {
    name: "broken text still tokenizes and places what it can",
    run: () => {
      const { tokens, values } = scanJSON('{"a": tru, "b": [1,');
      return tokens.filter((t) => t.kind !== "ws").map((t) => t.kind).join(",") + " " + [...values.keys()].join(",");
    },
    want: "punct,key,punct,bad,punct,key,punct,punct,num,punct ,/b,/b/0",
  },
];

/** runJSONEditTests runs every case and returns their results. */
export function runJSONEditTests() {
  const results = runFixed(fixed);
  const r = rng(14);
  for (let i = 0; i < 200; i++) {
    const doc = randomValue(r, 0);
    for (const indent of [0, 2]) {
      const problem = attempt(() => checkDoc(doc, indent));
      results.push({ name: `random document ${i} (indent ${indent})`, pass: problem === "", got: problem, want: JSON.stringify(doc) });
    }
  }
  return results;
}
