// jsonedit.js: the JSON editor of the entity pages. A transparent textarea
// (what the user types into) lies over a highlighted copy of its text, with
// a line-number gutter beside them. Values that failed schema validation
// (JSON Pointer paths from POST /schema/{id}/validate) are underlined, their
// line numbers marked, and listed below with a button that jumps to each.
//
// Highlighting builds <span>s with textContent only: the document never
// reaches innerHTML. Text longer than HIGHLIGHT_LIMIT is shown plain, so a
// large document stays responsive.

import { h } from "./dom.js";

const HIGHLIGHT_LIMIT = 200000;
// WRAP_MEASURE_LIMIT is the most lines whose wrapped heights are measured.
const WRAP_MEASURE_LIMIT = 5000;

// TOKEN splits JSON text, valid or not: a string (perhaps unterminated),
// a number, a literal, punctuation, white space, or a run of anything else.
const TOKEN = /("(?:[^"\\\n]|\\.)*"?)|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(true|false|null)\b|([{}[\],:])|(\s+)|([^\s{}[\],:"]+)/y;
const KINDS = [null, "str", "num", "lit", "punct", "ws", "bad"];

/**
 * scanJSON tokenizes text and maps the JSON Pointer of every value it can
 * place to its position. It never throws: invalid text still tokenizes
 * (for highlighting) and places what it can.
 * Returns {tokens: [{kind, start, end}], values: Map(pointer -> {start, end,
 * keyStart?, keyEnd?})}; kind is key, str, num, lit, punct, ws or bad.
 */
export function scanJSON(text) {
  const tokens = [];
  const values = new Map();
  const stack = []; // {arr, ptr, index, expectKey}
  let pendingKey = null; // {name, start, end} of the member whose value comes next

  const pointer = () => {
    if (stack.length === 0) return values.has("") ? null : "";
    const top = stack[stack.length - 1];
    if (top.ptr === null) return null;
    if (top.arr) return `${top.ptr}/${top.index}`;
    return pendingKey ? `${top.ptr}/${escapePointer(pendingKey.name)}` : null;
  };
  const beginValue = (start, end) => {
    const ptr = pointer();
    if (ptr !== null && !values.has(ptr)) {
      const v = { start, end };
      if (pendingKey) Object.assign(v, { keyStart: pendingKey.start, keyEnd: pendingKey.end });
      values.set(ptr, v);
    }
    pendingKey = null;
    return ptr;
  };

  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const start = TOKEN.lastIndex;
    const m = TOKEN.exec(text);
    if (!m) break; // unreachable: the last alternative takes any other run
    const end = TOKEN.lastIndex;
    let kind = KINDS[m.findIndex((g, i) => i > 0 && g !== undefined)];
    const top = stack[stack.length - 1];
    if (kind === "str" && top && !top.arr && top.expectKey) {
      kind = "key";
      pendingKey = { name: decodeString(m[0]), start, end };
      top.expectKey = false;
    } else if (kind === "str" || kind === "num" || kind === "lit") {
      beginValue(start, end);
    } else if (kind === "punct") {
      const c = m[0];
      if (c === "{" || c === "[") {
        const ptr = beginValue(start, start + 1);
        stack.push({ arr: c === "[", ptr, index: 0, expectKey: c === "{" });
      } else if (c === "}" || c === "]") {
        const frame = stack.pop();
        if (frame && frame.ptr !== null && values.has(frame.ptr)) values.get(frame.ptr).end = end;
        pendingKey = null;
      } else if (c === "," && top) {
        if (top.arr) top.index++;
        else top.expectKey = true;
        pendingKey = null;
      }
    }
    tokens.push({ kind, start, end });
  }
  return { tokens, values };
}

/** escapePointer escapes one JSON Pointer segment (RFC 6901). */
export function escapePointer(s) {
  return String(s).replace(/~/g, "~0").replace(/\//g, "~1");
}

function decodeString(tok) {
  try {
    return JSON.parse(tok);
  } catch {
    return tok.replace(/^"|"$/g, "");
  }
}

/** lineStarts returns the offset where each line of text starts. */
function lineStarts(text) {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

/** lineOf is the 1-based line of offset pos, given lineStarts. */
function lineOf(starts, pos) {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

/**
 * locate finds where the value at pointer is written in text: the nearest
 * placed ancestor when the value itself is absent (a missing required
 * member is reported at its object). Returns {pointer, start, end, line}
 * of the part to underline (the member name, or a scalar, or the opening
 * bracket of a nameless container), or null when nothing is placed.
 */
export function locate(text, pointer, scanned = scanJSON(text)) {
  let p = normalizePointer(pointer);
  for (;;) {
    const v = scanned.values.get(p);
    if (v) {
      let start = v.start;
      let end = v.end;
      if (v.keyStart !== undefined) [start, end] = [v.keyStart, v.keyEnd];
      else if (text[start] === "{" || text[start] === "[") end = start + 1;
      return { pointer: p, start, end, line: lineOf(lineStarts(text), start) };
    }
    if (p === "") return null;
    p = p.slice(0, p.lastIndexOf("/"));
  }
}

// normalizePointer accepts "/a/0", "#/a/0" (URI fragment form) or "".
function normalizePointer(p) {
  let s = String(p || "");
  if (s.startsWith("#")) s = decodeURIComponent(s.slice(1));
  if (s !== "" && !s.startsWith("/")) s = "/" + s;
  return s;
}

/**
 * jsonSyntaxError returns null when text is JSON, else {message, pos,
 * line}: the parser's message and where the error is (from the message's
 * "position N" when it has one, else the end of the text for a text cut
 * short, else the first token that is no JSON).
 */
export function jsonSyntaxError(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const message = String(e.message || e);
    let pos = -1;
    const m = /position (\d+)/.exec(message);
    if (m) pos = Number(m[1]);
    else if (/end of JSON input/i.test(message)) pos = text.trimEnd().length;
    else {
      const unterminated = (t) => t.kind === "str" && (t.end - t.start < 2 || text[t.end - 1] !== '"');
      const bad = scanJSON(text).tokens.find((t) => t.kind === "bad" || unterminated(t));
      pos = bad ? bad.start : 0;
    }
    pos = Math.max(0, Math.min(pos, text.length));
    return { message, pos, line: lineOf(lineStarts(text), pos) };
  }
}

/**
 * createJSONEditor builds the editor. id names the textarea (the label's
 * target and the tests' handle); errors are listed in #<id>-errors.
 * Returns {el, textarea, errorList, get value, setValue(text),
 * setDisabled(bool), markErrors([{path, message}]) -> [{path, message,
 * line}], markSyntax(text) -> error or null (replaces every mark by the
 * JSON syntax error of the text, if any), clearMarks(), refresh(),
 * setWrap(bool), select(pointer)}.
 */
export function createJSONEditor(id, opts = {}) {
  const ta = h("textarea", {
    id, testid: id, spellcheck: "false", autocomplete: "off", autocapitalize: "off", wrap: "off",
    "aria-describedby": id + "-errors",
  });
  if (opts.placeholder) ta.placeholder = opts.placeholder;
  const hl = h("pre", { class: "code-hl", "aria-hidden": "true", testid: id + "-highlight" });
  const gutter = h("pre", { class: "code-gutter", "aria-hidden": "true", testid: id + "-gutter" });
  const measure = h("div", { class: "code-measure", "aria-hidden": "true" });
  const el = h("div", { class: "code", testid: id + "-box" }, gutter, h("div", { class: "code-area" }, hl, measure, ta));
  const errorList = h("ul", { id: id + "-errors", testid: id + "-errors", class: "code-errors", hidden: true, "aria-label": "Schema problems" });
  let marks = []; // [{path, message, pos?}]: pos places a syntax error
  let frame = 0;
  let wrap = false;

  const syncScroll = () => {
    hl.scrollTop = ta.scrollTop;
    hl.scrollLeft = ta.scrollLeft;
    gutter.scrollTop = ta.scrollTop;
  };

  function refresh() {
    cancelAnimationFrame(frame);
    frame = 0;
    const text = ta.value;
    const starts = lineStarts(text);
    const scanned = text.length <= HIGHLIGHT_LIMIT ? scanJSON(text) : null;
    const place = (m) => (m.pos === undefined ? locate(text, m.path, scanned)
      : { pointer: "", start: m.pos, end: Math.min(text.length, m.pos + 1), line: lineOf(starts, m.pos) });
    const located = scanned || marks.some((m) => m.pos !== undefined) ? marks.map((m) => ({ ...m, at: place(m) })) : [];
    const badLines = new Set(located.filter((m) => m.at).map((m) => m.at.line));
    renderHighlight(hl, text, scanned, located.filter((m) => m.at).map((m) => m.at));
    renderGutter(gutter, starts.length, badLines);
    renderErrors(errorList, located, (line) => focusLine(line));
    if (wrap) measureLines(text);
    syncScroll();
    return located;
  }

  // measureLines gives each line number the height of its line as
  // wrapped: a hidden copy of the text, one block per line, as wide as
  // the textarea, is measured. Past WRAP_MEASURE_LIMIT lines the numbers
  // are left as they are (one per visual line).
  function measureLines(text) {
    const lines = text.split("\n");
    const spans = gutter.querySelectorAll("span[data-line]");
    if (lines.length > WRAP_MEASURE_LIMIT || spans.length !== lines.length) return;
    measure.replaceChildren(...lines.map((l) => h("div", { text: l || "\u200b" })));
    const heights = [...measure.children].map((d) => d.getBoundingClientRect().height);
    spans.forEach((sp, i) => {
      sp.style.height = heights[i] + "px";
    });
    measure.replaceChildren();
  }

  function setWrap(on) {
    wrap = !!on;
    el.classList.toggle("wrap", wrap);
    ta.wrap = wrap ? "soft" : "off";
    if (!wrap) for (const sp of gutter.querySelectorAll("span[data-line]")) sp.style.height = "";
    gutter.dataset.bad = ""; // force the gutter to be drawn again
    refresh();
  }
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (wrap && !frame) frame = requestAnimationFrame(refresh);
    }).observe(ta);
  }

  // select puts the caret on the value at pointer (the nearest placed
  // ancestor) and scrolls it into view.
  function select(pointer) {
    const at = locate(ta.value, pointer);
    if (!at) return false;
    focusLine(at.line);
    ta.setSelectionRange(at.start, at.end);
    return true;
  }

  function focusLine(line) {
    const starts = lineStarts(ta.value);
    const pos = starts[Math.min(line, starts.length) - 1] || 0;
    const lh = parseFloat(getComputedStyle(ta).lineHeight) || 20;
    ta.focus({ preventScroll: true });
    ta.setSelectionRange(pos, pos);
    ta.scrollTop = Math.max(0, (line - 1) * lh - ta.clientHeight / 3);
    syncScroll();
  }

  ta.addEventListener("input", () => {
    if (!frame) frame = requestAnimationFrame(refresh);
  });
  ta.addEventListener("scroll", syncScroll);
  // Tab indents instead of leaving the editor; Escape then Tab leaves it.
  let escaped = false;
  ta.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") escaped = true;
    else if (ev.key === "Tab" && !ev.shiftKey && !escaped && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      ta.setRangeText("  ", ta.selectionStart, ta.selectionEnd, "end");
      ta.dispatchEvent(new Event("input"));
    } else escaped = false;
  });

  const api = {
    el,
    textarea: ta,
    errorList,
    get value() {
      return ta.value;
    },
    setValue(text) {
      ta.value = text;
      marks = [];
      ta.scrollTop = 0;
      ta.scrollLeft = 0;
      refresh();
    },
    setDisabled(off) {
      ta.disabled = off;
      el.classList.toggle("disabled", off);
    },
    markErrors(errors) {
      marks = (errors || []).map((e) => ({ path: String(e.path ?? ""), message: String(e.message ?? "") }));
      return refresh().map((m) => ({ path: m.path, message: m.message, line: m.at ? m.at.line : 0 }));
    },
    clearMarks() {
      marks = [];
      refresh();
    },
    markSyntax(text = ta.value) {
      const err = jsonSyntaxError(text);
      marks = err ? [{ path: "", message: "Invalid JSON: " + err.message, pos: err.pos }] : [];
      refresh();
      return err;
    },
    refresh,
    setWrap,
    select,
  };
  refresh();
  return api;
}

// renderHighlight fills pre with the tokens of text as spans; ranges
// (from locate) are underlined. A trailing newline keeps the copy as tall
// as the textarea.
function renderHighlight(pre, text, scanned, ranges) {
  const frag = document.createDocumentFragment();
  if (!scanned) {
    frag.append(text);
  } else {
    for (const t of scanned.tokens) {
      const s = text.slice(t.start, t.end);
      if (t.kind === "ws") {
        frag.append(s);
        continue;
      }
      const bad = ranges.some((r) => t.start < r.end && r.start < t.end);
      frag.append(h("span", { class: `tok-${t.kind}${bad ? " tok-invalid" : ""}`, text: s }));
    }
  }
  frag.append("\n");
  pre.replaceChildren(frag);
}

function renderGutter(pre, lines, badLines) {
  if (pre.childElementCount === lines && pre.dataset.bad === [...badLines].join(",")) return;
  const frag = document.createDocumentFragment();
  for (let i = 1; i <= lines; i++) {
    frag.append(h("span", { class: badLines.has(i) ? "line-invalid" : null, "data-line": i, text: String(i) }), "\n");
  }
  pre.replaceChildren(frag);
  pre.dataset.bad = [...badLines].join(",");
}

function renderErrors(list, located, jump) {
  list.replaceChildren(...located.map((m) => {
    const where = m.path === "" ? "(document)" : m.path;
    const line = m.at ? m.at.line : 0;
    const label = line ? `Line ${line}` : "—";
    // A syntax error has a place but no path.
    const syntax = m.pos !== undefined;
    return h("li", { "data-path": m.path, "data-line": line, "data-syntax": syntax ? "true" : null },
      h("button", { type: "button", class: "link", disabled: !line, text: label, on: { click: () => jump(line) } }),
      " ", syntax ? null : h("code", { text: where }), syntax ? null : " ", m.message);
  }));
  list.hidden = located.length === 0;
}
