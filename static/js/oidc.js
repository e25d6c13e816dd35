// oidc.js: "Sign in with <provider>" on the login page, when the server
// has an -oidc-ui-client-id (GET /api/login/oidc says so): the
// authorization code flow with PKCE (RFC 7636) of a public client.
//
// start makes a random verifier, its S256 challenge and a random state,
// keeps them in this tab (sessionStorage deltadb.oidc) and sends the
// browser to the provider's authorization endpoint. The provider sends it
// back to this server's "/" with ?code=&state= (or ?error=); boot (app.js)
// calls finishOIDC, which checks the state (and the issuer, RFC 9207) and
// hands code and verifier to POST /api/login/oidc. The server redeems
// them at the provider and answers the access token, which becomes the
// credential, in this tab or on this device as chosen before leaving.

import { errorMessage, request, setToken } from "./api.js";

const FLOW_KEY = "deltadb.oidc";
const FLOW_MAX_AGE_MS = 10 * 60 * 1000; // a sign-in not back within 10 minutes is refused

let config = null; // the promise of GET /api/login/oidc, asked once

function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * showOIDCButton shows #login-oidc when the server offers the sign-in.
 * afterLogin() and remember() are read when the button is pressed;
 * onError(text) shows why the sign-in could not start.
 */
export function showOIDCButton(afterLogin, remember, onError) {
  const box = document.getElementById("login-oidc");
  const btn = document.getElementById("login-oidc-button");
  config ??= request("GET", "/api/login/oidc", undefined, { login: true })
    .then((r) => (r.ok && r.data ? r.data : { enabled: false }), () => ({ enabled: false }));
  config.then((c) => {
    box.hidden = !c.enabled;
    if (!c.enabled) return;
    btn.textContent = `Sign in with ${c.name}`;
    btn.onclick = () => start(c, afterLogin(), remember()).catch((e) => onError(e.message));
  });
}

// start sends the browser to the provider.
async function start(c, afterLogin, remember) {
  if (!window.crypto || !crypto.subtle) {
    throw new Error(`Sign-in with ${c.name} needs HTTPS (or localhost): the browser computes the PKCE challenge with Web Crypto.`);
  }
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const redirect = location.origin + "/";
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ state, verifier, redirect, remember, afterLogin, issuer: c.issuer, started: Date.now() }));
  const u = new URL(c.authorization_endpoint);
  for (const [k, v] of Object.entries(c.params || {})) u.searchParams.set(k, v);
  const q = { response_type: "code", client_id: c.client_id, redirect_uri: redirect, scope: c.scope, state,
    code_challenge: challenge, code_challenge_method: "S256" };
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  location.assign(u.toString());
}

/**
 * oidcCallback returns the provider's answer when this page is its
 * redirect ({code, state, iss, error, description, afterLogin}), else null.
 */
export function oidcCallback() {
  const p = new URLSearchParams(location.search);
  if (!p.has("state") || !(p.has("code") || p.has("error"))) return null;
  let flow = null;
  try {
    flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
  } catch {
    flow = null;
  }
  return { code: p.get("code"), state: p.get("state"), iss: p.get("iss"), error: p.get("error"),
    description: p.get("error_description"), flow, afterLogin: flow && flow.afterLogin };
}

/** finishOIDC completes the sign-in of cb; it resolves to the login's answer or rejects with a sentence. */
export async function finishOIDC(cb) {
  sessionStorage.removeItem(FLOW_KEY);
  const f = cb.flow;
  if (cb.error) throw new Error(`Sign-in was not completed: ${cb.error}${cb.description ? ` (${cb.description})` : ""}.`);
  if (!f || f.state !== cb.state) throw new Error("Sign-in refused: the answer does not belong to a sign-in started in this tab. Start it again.");
  if (Date.now() - f.started > FLOW_MAX_AGE_MS) throw new Error("Sign-in refused: it took more than 10 minutes. Start it again.");
  if (cb.iss && f.issuer && cb.iss !== f.issuer) throw new Error("Sign-in refused: the answer comes from another provider than the one asked.");
  const r = await request("POST", "/api/login/oidc", { code: cb.code, code_verifier: f.verifier, redirect_uri: f.redirect }, { login: true });
  if (!r.ok || !r.data || typeof r.data.token !== "string") throw new Error(r.ok ? "Sign-in answered without a token." : errorMessage(r));
  setToken(r.data.token, { remember: !!f.remember, expiresAt: r.data.expires_at, kind: "oidc" });
  return r.data;
}
