// api.js is the one place the UI talks to the server. Every request carries
// Authorization: Bearer <credential>: the session token bought by
// /api/login (never the key the user typed), or the access token of a
// sign-in with the OpenID provider. It is kept in this tab (sessionStorage)
// by default, or on this device (localStorage) until it expires when the
// user chose to stay signed in; logging out removes it from both (and ends
// a session token at the server). A 401 from any call except the login
// itself forgets the credential and hands control to the handler app.js
// installs (back to the login page).

const TOKEN_KEY = "deltadb.session";

let unauthorized = () => {};

/** ApiError is a failed request: status is the HTTP status (0 = network), authExpired marks a handled 401. */
export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.authExpired = false;
  }
}

// stored reads the credential kept in storage: {token, expires_at?, kind?}
// or null. A value that is no JSON object is a bare token (older UIs kept
// the token as such). One past its expiry is removed.
function stored(storage) {
  let raw;
  try {
    raw = storage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
  if (!raw) return null;
  let v;
  try {
    v = JSON.parse(raw);
  } catch {
    v = null;
  }
  if (!v || typeof v !== "object" || typeof v.token !== "string") v = { token: raw };
  if (v.expires_at && Date.parse(v.expires_at) <= Date.now()) {
    storage.removeItem(TOKEN_KEY);
    return null;
  }
  return v;
}

/** credential returns {token, expires_at, kind, remembered} of the credential in use, or null when logged out. */
export function credential() {
  const tab = stored(sessionStorage);
  if (tab) return { ...tab, remembered: false };
  const device = stored(localStorage);
  return device ? { ...device, remembered: true } : null;
}

/** getToken returns the credential's token or "" when logged out. */
export function getToken() {
  const c = credential();
  return c ? c.token : "";
}

/**
 * setToken keeps token (with its expires_at and kind: "session" or
 * "oidc"): in this tab, or with remember on this device until it expires.
 */
export function setToken(token, { remember = false, expiresAt = "", kind = "session" } = {}) {
  const v = JSON.stringify({ token, expires_at: expiresAt || undefined, kind });
  // This tab's credential comes first (credential()); another tab's
  // remembered one is left alone by a login just for this tab.
  sessionStorage.removeItem(TOKEN_KEY);
  (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, v);
}

/** clearToken forgets the credential, in this tab and on this device. */
export function clearToken() {
  for (const storage of [sessionStorage, localStorage]) {
    try {
      storage.removeItem(TOKEN_KEY);
    } catch {
      // storage unavailable: nothing to forget
    }
  }
}

/** onDeviceLogout calls fn when another tab removes the credential kept on this device. */
export function onDeviceLogout(fn) {
  window.addEventListener("storage", (ev) => {
    if (ev.key === TOKEN_KEY && ev.storageArea === localStorage && !ev.newValue && !stored(sessionStorage)) fn();
  });
}

/** onUnauthorized installs fn, called after a 401 has cleared the token. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/**
 * request sends method path and resolves to {status, ok, headers, text, data}
 * (data is the parsed JSON body or undefined). body may be a string (sent
 * as is) or a value (JSON-encoded). It rejects only on network failure or a
 * handled 401. opts.login marks the login call, whose 401 is the user's.
 */
export async function request(method, path, body, opts = {}) {
  if (!path.startsWith("/") || path.startsWith("//")) {
    throw new ApiError("Path must start with a single /", 0);
  }
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  const token = getToken();
  if (token && !opts.login) headers.Authorization = "Bearer " + token;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined && body !== null && method !== "GET" && method !== "HEAD") {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError("Network error: " + e.message, 0);
  }
  const text = await resp.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  const result = { status: resp.status, ok: resp.ok, headers: resp.headers, text, data };
  if (resp.status === 401 && !opts.login) {
    clearToken();
    const err = new ApiError(errorMessage(result), 401, data);
    err.authExpired = true;
    unauthorized();
    throw err;
  }
  return result;
}

/** errorMessage returns the server's {"error"} text, else the raw body, else the status. */
export function errorMessage(result) {
  if (result.data && typeof result.data.error === "string") return result.data.error;
  const t = (result.text || "").trim();
  if (t && t.length < 300) return `${result.status}: ${t}`;
  return `Request failed with status ${result.status}`;
}

/** call is request for pages: it resolves to the parsed body and rejects with ApiError on any non-2xx. */
export async function call(method, path, body, opts) {
  const r = await request(method, path, body, opts);
  if (!r.ok) throw new ApiError(errorMessage(r), r.status, r.data);
  return r.data;
}

/** entityPath returns /entity/{db}?key=K with both parts escaped. */
export function entityPath(db, key) {
  return `/entity/${encodeURIComponent(db)}?key=${encodeURIComponent(key)}`;
}
