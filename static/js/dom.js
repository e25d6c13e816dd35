// dom.js holds the small DOM helpers every page uses. Server data only ever
// reaches the page through textContent or attribute values, never innerHTML.

/**
 * h builds an element. attrs: "text" sets textContent, "testid" sets
 * data-testid, "for" sets htmlFor, "on" maps event names to listeners,
 * booleans toggle attributes, anything else becomes an attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "for") el.htmlFor = v;
    else if (k === "class") el.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** clear removes every child of node. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** setText updates node's text only when it changed, so refreshes don't flicker. */
export function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

/**
 * field returns a labelled form row: <div class="field"><label for>...</label>input</div>.
 * hint, when given, is linked with aria-describedby.
 */
export function field(label, input, hint) {
  const row = h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
  if (hint) {
    const hintId = input.id + "-hint";
    input.setAttribute("aria-describedby", hintId);
    row.append(h("p", { class: "hint", id: hintId, text: hint }));
  }
  return row;
}

/**
 * messageArea returns a live region for a page's errors and notices.
 * Use show(area, text, kind) to fill it; kind is "error", "ok" or "info".
 */
export function messageArea(id) {
  return h("div", { id, testid: id, class: "message", role: "status", "aria-live": "polite", hidden: true });
}

/** show puts text in a message area (hidden when text is empty). */
export function show(area, text, kind = "error") {
  area.textContent = text || "";
  area.className = "message " + kind;
  area.hidden = !text;
}

/** showError shows an error from api.js (or any Error) in area; an expired session is handled by the app. */
export function showError(area, err) {
  if (err && err.authExpired) return;
  show(area, err && err.message ? err.message : String(err), "error");
}

/** copyText copies text to the clipboard, falling back to execCommand; resolves true on success. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // permission denied or unsupported: try the fallback below
  }
  const ta = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true", tabindex: "-1" });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** copyButton returns a button copying getText() and reporting in statusEl. */
export function copyButton(id, getText, statusEl, label = "Copy") {
  return h("button", {
    type: "button",
    id,
    testid: id,
    class: "secondary",
    text: label,
    on: {
      click: async () => {
        const ok = await copyText(getText());
        show(statusEl, ok ? "Copied to clipboard." : "Copy failed — select the text and copy it by hand.", ok ? "ok" : "error");
      },
    },
  });
}

/** formatJSON pretty-prints v with two-space indentation. */
export function formatJSON(v) {
  return JSON.stringify(v, null, 2);
}

/** parseJSON parses text, throwing an Error whose message starts "Invalid JSON:". */
export function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error("Invalid JSON: " + e.message);
  }
}

/** pageHeading returns the page's <h2>, focusable so the router can move focus to it. */
export function pageHeading(text) {
  return h("h2", { id: "page-title", testid: "page-title", tabindex: "-1", text });
}
