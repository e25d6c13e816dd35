// perms.js: what the logged-in principal may do, from GET /api/me
// ({client_id, name, permissions, is_admin}), and write controls that stay
// disabled, with the reason shown, for a principal that may not use them.
// The server refuses such requests anyway (403); this only saves the user
// a click that cannot work.

import { h } from "./dom.js";

/** can reports whether me holds permission perm ("read", "write" or "admin"); admin implies all. */
export function can(me, perm) {
  if (!me) return false;
  const perms = Array.isArray(me.permissions) ? me.permissions : [];
  return me.is_admin === true || perms.includes("admin") || perms.includes(perm);
}

/** denyReason is why me may not do what needs perm, or "" when it may. */
export function denyReason(me, perm) {
  if (can(me, perm)) return "";
  const who = (me && (me.name || me.client_id)) || "this key";
  const held = me && Array.isArray(me.permissions) && me.permissions.length ? me.permissions.join(", ") : "none";
  return `Needs ${perm} permission; ${who} has ${held}.`;
}

/**
 * gate disables the controls for good when reason is not "" and says why
 * (title, and data-denied for setEnabled). Use setEnabled afterwards, never
 * .disabled, so that a gated control cannot be enabled by page logic.
 */
export function gate(reason, ...controls) {
  for (const c of controls) {
    if (!reason) continue;
    c.dataset.denied = reason;
    c.title = reason;
    c.disabled = true;
  }
}

/** setEnabled enables or disables control, keeping a gated one disabled. */
export function setEnabled(control, on) {
  control.disabled = !on || !!control.dataset.denied;
}

/** reasonNote is a visible note giving reason (hidden when it is ""), linked to the controls. */
export function reasonNote(id, reason, ...controls) {
  const note = h("p", { id, testid: id, class: "hint denied", text: reason, hidden: !reason });
  if (reason) for (const c of controls) c.setAttribute("aria-describedby", id);
  return note;
}

/** whoOf is how a sentence names me: the key's name, else its ID, else "this key". */
export function whoOf(me) {
  return (me && (me.name || me.client_id)) || "this key";
}

/**
 * pageDenial is the plain sentence shown instead of a page that me may not
 * use, or "" when it may. access is the page's {needs: [perm, ...] (any one
 * of them suffices; empty: everyone), allDatabases (a key limited to some
 * databases may not use it), what (what the page does, for the sentence)}.
 */
export function pageDenial(me, access) {
  if (!access || !access.needs || access.needs.length === 0) return "";
  const who = whoOf(me);
  if (!access.needs.some((p) => can(me, p))) {
    if (access.needs.includes("admin")) return `${access.what} is for administrators; ${who} is not one.`;
    const held = me && Array.isArray(me.permissions) && me.permissions.length ? me.permissions.join(" and ") : "no permission";
    return `${access.what} needs the ${access.needs.join(" or ")} permission; ${who} has ${held}.`;
  }
  if (access.allDatabases && me && Array.isArray(me.databases)) {
    return `${access.what} needs a key that may use every database; ${who} may use only ${me.databases.join(", ") || "none"}.`;
  }
  return "";
}
