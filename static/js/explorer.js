// explorer.js: send any request to this server with the session token and
// see the status, response headers and body (pretty JSON when it parses).
// Quick buttons fill in and send the common calls.

import { request } from "./api.js";
import { field, formatJSON, h, messageArea, pageHeading, show, showError } from "./dom.js";
import { latest } from "./latest.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const QUICK = [
  ["GET", "/health"],
  ["GET", "/api/databases"],
  ["GET", "/admin/workers"],
  ["GET", "/admin/schemas"],
  ["GET", "/api/me"],
];

/** render builds the Explorer page in root. */
export function render(root) {
  const method = h("select", { id: "ex-method", testid: "ex-method" }, METHODS.map((m) => h("option", { value: m, text: m })));
  const path = h("input", { id: "ex-path", testid: "ex-path", type: "text", value: "/health", autocomplete: "off", spellcheck: "false" });
  const body = h("textarea", { id: "ex-body", testid: "ex-body", spellcheck: "false", rows: "8", placeholder: '{"key": "value"}' });
  const contentType = h("select", { id: "ex-content-type", testid: "ex-content-type" },
    ["application/json", "application/merge-patch+json", "application/json-patch+json"].map((t) => h("option", { value: t, text: t })));
  const send = h("button", { type: "submit", id: "ex-send", testid: "ex-send", text: "Send" });
  const msg = messageArea("ex-message");
  const status = h("p", { id: "ex-status", testid: "ex-status", class: "big", text: "—" });
  const headers = h("pre", { id: "ex-headers", testid: "ex-headers", tabindex: "0", "aria-label": "Response headers" });
  const response = h("pre", { id: "ex-response", testid: "ex-response", tabindex: "0", "aria-label": "Response body" });
  const quick = QUICK.map(([m, p]) => h("button", {
    type: "button", class: "secondary", testid: "ex-quick", "data-method": m, "data-path": p, text: `${m} ${p}`,
    on: { click: () => { method.value = m; path.value = p; body.value = ""; doSend(); } },
  }));
  const form = h("form", { id: "ex-form", novalidate: true },
    h("div", { class: "grid-2" }, field("Method", method), field("Path", path, "Same-origin path, e.g. /entity/chatdb?key=session_001")),
    field("Content type", contentType),
    h("label", { for: "ex-body", text: "Body" }),
    body,
    h("div", { class: "row" }, send));

  root.append(
    pageHeading("Explorer"),
    h("section", { class: "panel", "aria-labelledby": "ex-quick-title" }, h("h3", { id: "ex-quick-title", text: "Quick calls" }), h("div", { class: "row" }, quick)),
    h("section", { class: "panel", "aria-labelledby": "ex-req-title" }, h("h3", { id: "ex-req-title", text: "Request" }), form, msg),
    h("section", { class: "panel", "aria-labelledby": "ex-resp-title" },
      h("h3", { id: "ex-resp-title", text: "Response" }), status,
      h("h4", { text: "Headers" }), headers, h("h4", { text: "Body" }), response),
  );

  // sends counts the requests sent: only the latest one's answer is shown
  // (a quick call answered after a newer one showed the older answer).
  const sends = latest();
  async function doSend() {
    const current = sends.next();
    show(msg, "");
    const p = path.value.trim();
    const m = method.value;
    const b = body.value.trim() === "" || m === "GET" ? undefined : body.value;
    send.disabled = true;
    try {
      const r = await request(m, p, b, { headers: b === undefined ? {} : { "Content-Type": contentType.value } });
      if (!current()) return;
      status.textContent = `${r.status}${r.ok ? " OK" : ""}`;
      headers.textContent = [...r.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n");
      response.textContent = r.data !== undefined ? formatJSON(r.data) : r.text;
    } catch (e) {
      if (current()) showError(msg, e);
    } finally {
      if (current()) send.disabled = false;
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    doSend();
  });
}
