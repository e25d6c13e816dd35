// dialog.js: modal dialogs on the <dialog> element (focus stays inside,
// Escape closes), and the confirmation of destructive actions, which asks
// for the name of what is destroyed to be typed (never window.confirm).

import { h } from "./dom.js";

/**
 * modal builds a hidden modal dialog: <dialog id> holding a form with
 * title h3#<id>-title and body. Returns {el, form, title, open(), close()};
 * onClose(returnValue) runs whenever it closes (Escape, Cancel, close()).
 */
export function modal(id, titleText, body, onClose) {
  const title = h("h3", { id: id + "-title", text: titleText });
  const form = h("form", { novalidate: true }, title, body);
  const el = h("dialog", { id, testid: id, class: "modal", "aria-labelledby": id + "-title" }, form);
  el.addEventListener("close", () => onClose && onClose(el.returnValue));
  return {
    el,
    form,
    title,
    open() {
      if (!el.isConnected) document.body.append(el);
      el.returnValue = "";
      if (!el.open) el.showModal();
    },
    close(value = "") {
      if (el.open) el.close(value);
    },
  };
}

/**
 * confirmByName asks for name to be typed before action (e.g. "Delete
 * database") is done; it resolves to true only when the user typed it and
 * confirmed. text says what will be lost. Elements: dialog#confirm-dialog,
 * #confirm-name (the input), #confirm-ok, #confirm-cancel.
 */
export function confirmByName({ title, text, name, action }) {
  return new Promise((resolve) => {
    const input = h("input", { id: "confirm-name", testid: "confirm-name", type: "text", autocomplete: "off", spellcheck: "false" });
    const ok = h("button", { type: "submit", id: "confirm-ok", testid: "confirm-ok", class: "danger", text: action, disabled: true });
    const cancel = h("button", { type: "button", id: "confirm-cancel", testid: "confirm-cancel", class: "secondary", text: "Cancel" });
    const d = modal("confirm-dialog", title, [
      h("p", { id: "confirm-text", testid: "confirm-text", text }),
      h("div", { class: "field" },
        h("label", { for: "confirm-name" }, "Type ", h("code", { text: name }), " to confirm"), input),
      h("div", { class: "row end" }, cancel, ok),
    ], (value) => {
      d.el.remove();
      resolve(value === "confirmed");
    });
    input.addEventListener("input", () => {
      ok.disabled = input.value !== name;
    });
    cancel.addEventListener("click", () => d.close("cancel"));
    d.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input.value === name) d.close("confirmed");
    });
    d.open();
    input.focus();
  });
}

/**
 * confirmDialog asks a question with two answers; it resolves to true for
 * action, false for keep (or Escape). Elements: dialog#ask-dialog,
 * #ask-text, #ask-ok, #ask-keep.
 */
export function confirmDialog({ title, text, action, keep = "Cancel" }) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", id: "ask-ok", testid: "ask-ok", class: "danger", text: action });
    const cancel = h("button", { type: "button", id: "ask-keep", testid: "ask-keep", class: "secondary", text: keep });
    const d = modal("ask-dialog", title, [
      h("p", { id: "ask-text", testid: "ask-text", text }),
      h("div", { class: "row end" }, cancel, ok),
    ], (value) => {
      d.el.remove();
      resolve(value === "confirmed");
    });
    cancel.addEventListener("click", () => d.close("keep"));
    d.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      d.close("confirmed");
    });
    d.open();
    cancel.focus();
  });
}
