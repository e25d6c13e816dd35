// api.js is the one place the UI talks to the server. Every request carries
// Authorization: Bearer <session token>; only the token returned by
// /api/login is kept (in sessionStorage), never the key the user typed.
// A 401 from any call except the login itself forgets the token and hands
// control to the handler app.js installs (back to the login page).

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

/** getToken returns the session token or "" when logged out. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** setToken keeps the session token for this tab. */
export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** clearToken forgets the session token. */
export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage unavailable: nothing to forget
  }
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
