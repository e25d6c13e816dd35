// app.js boots the DeltaDatabase management UI: session handling, the
// hash router, the navigation shell and the narrow-screen menu.
//
// Page structure (index.html):
//   #login-view  login form: #login-key (password), #login-remember (stay
//                signed in on this device), #login-submit, #login-error
//                (server error, e.g. on 401), #login-notice ("Session
//                expired or invalid — please log in again"), #login-oidc
//                with #login-oidc-button (oidc.js; shown when the server
//                offers sign-in with its OpenID provider)
//   #app-view    the shell once logged in:
//     header     #menu-button (aria-controls="sidebar", aria-expanded; shown
//                below 800px), #whoami, #logout
//     #sidebar   nav links #nav-dashboard #nav-databases #nav-entities
//                #nav-workers #nav-schemas #nav-keys #nav-jobs #nav-explorer;
//                the <li> of a page the principal may not use is hidden;
//                #backdrop behind it when open as an overlay
//     #page      #global-message, then #page-content where one page module
//                renders; every page starts with h2#page-title (a page the
//                principal may not use shows p#page-denied, why, instead)
//
// Routes and modules (each exports render(container, ctx) -> cleanup?; a
// page with unsaved work calls ctx.guard(fn), fn resolving to true when it
// may be left: a hash change to another page, or Log out, asks it first):
//   #/login      login form              (this file)
//   #/dashboard  dashboard.js  #dash-health, #dash-databases (read),
//                admin: #dash-workers-total #dash-workers-by-status
//                (li[data-status]) #dash-cache-hits #dash-cache-misses
//                #dash-cache-evictions #dash-cache-entries, #dash-history
//                (#dash-window, #dash-fig-*, svg#dash-chart-rps -latency
//                -errors -cache -storage -workers with path[data-series] and
//                data-span, the seconds drawn,
//                #dash-errors-table tr[data-route]); others: #dash-limited;
//                #dash-updated #dash-message
//   #/databases  databases.js  #db-cards > button[data-testid=db-card][data-db]
//                (data-entities, data-schema) #db-message #db-detail #db-info
//                #db-schema-select #db-bind #db-unbind #db-delete
//                #db-detail-message #db-prefix #db-prefix-go #db-page-size
//                details#db-find (#db-find-field -op -value -selector -go
//                -clear; the find is not kept in the hash)
//                #db-keys-count #db-keys > li > button[data-testid=db-key-item][data-key]
//                (span[data-testid=db-key-preview]) #db-keys-prev #db-keys-page
//                #db-keys-next #db-key-input #db-key-open (a key changed or
//                deleted elsewhere gets data-live="changed"|"deleted", live.js
//                following the feed); the place in the
//                list is in the hash: #/databases?db=&prefix=&limit=&pages=&key=
//                entity editor (entityeditor.js, doceditor.js): #entity-title
//                #entity-meta, toolbar #entity-editor-tree -wrap -format -copy,
//                tree #entity-editor-tree-view (button.tree-name[data-pointer]),
//                #entity-editor (textarea; jsonedit.js adds
//                #entity-editor-errors li[data-path][data-line] and a gutter
//                span[data-line].line-invalid) #entity-check #entity-save
//                #entity-delete #entity-write-denied #entity-message
//                #entity-conflict (conflict.js, the three-way merge:
//                #entity-conflict-summary, -list li[data-path] with radio
//                inputs theirs|mine|both, -merged, -save, -stored, -edited,
//                -reload, -overwrite); unsaved changes ask in dialog#ask-dialog
//   #/entities   entities.js   #ent-db (select) #ent-db-new #ent-key
//                #ent-schema #ent-doc #ent-get #ent-put #ent-delete #ent-message
//                #ent-write-denied #ent-conflict (as #entity-conflict)
//   #/workers    workers.js    #workers-table (tr[data-worker]) #workers-refresh
//                #workers-message
//   #/schemas    schemas.js    #schema-list > li > button[data-testid=schema-item]
//                #schema-id #schema-text (doceditor.js, as #entity-editor;
//                #schema-dbs li[data-db] with the check of stored entities)
//                #schema-new #schema-load #schema-save
//                #schema-message #schema-export-pydantic #schema-export-ts
//                #schema-export (pre) #schema-copy #schema-copy-status
//                #schema-delete #schema-write-denied
//   #/keys       keys.js       #key-new opens dialog#key-dialog: #key-name
//                #key-perm-read #key-perm-write #key-perm-admin #key-expiry
//                (#key-expires for another) #key-db-all #key-db-some
//                #key-db-list (input[data-db]) #key-db-add #key-create, then
//                #key-secret-box #key-secret #key-secret-copy #key-secret-done;
//                #keys-message #keys-table (tr[data-key-id]) with
//                [data-testid=key-last-used], buttons key-edit, key-rotate
//                (dialog#key-rotate-dialog: #key-grace #key-rotate-confirm
//                #key-rotate-secret) and key-delete (dialog.js: the name is
//                typed in #confirm-name, then #confirm-ok)
//                (Keys and Workers tables are cards below 800px: class
//                cards-on-phone, every td has data-label)
//   #/jobs       jobs.js       (admin only; nav #nav-jobs in #nav-jobs-item)
//                #jobs-db #jobs-rekey #jobs-message #jobs-table
//                (tr[data-job][data-state], progress[data-testid=job-progress])
//   #/explorer   explorer.js   #ex-method #ex-path #ex-body #ex-send
//                #ex-status #ex-headers #ex-response #ex-message
//                button[data-testid=ex-quick][data-path]
// Every element named above carries the same string as id and data-testid.
// A page is one module; shared parts are modules of their own (dom.js,
// format.js for times, perms.js for disabled write controls, jsonedit.js,
// conflict.js, latest.js for drawing only the latest answer), so a new
// panel is a new file plus a line in routes.

import { clearToken, credential, getToken, onDeviceLogout, onUnauthorized, request, setToken, errorMessage } from "./api.js";
import { finishOIDC, oidcCallback, showOIDCButton } from "./oidc.js";
import { clear, setText } from "./dom.js";
import { latest } from "./latest.js";
import { pageDenial } from "./perms.js";
import * as dashboard from "./dashboard.js";
import * as databases from "./databases.js";
import * as entities from "./entities.js";
import * as workers from "./workers.js";
import * as schemas from "./schemas.js";
import * as keys from "./keys.js";
import * as jobs from "./jobs.js";
import * as explorer from "./explorer.js";

const SESSION_EXPIRED = "Session expired or invalid — please log in again";

// access says who may use a page (perms.js pageDenial): its menu link is
// hidden from everyone else, and a visit by URL shows why instead.
const routes = {
  dashboard: { page: dashboard, title: "Dashboard" },
  databases: { page: databases, title: "Databases", access: { needs: ["read"], what: "Browsing databases and their entities" } },
  entities: { page: entities, title: "Entities", access: { needs: ["read", "write"], what: "Reading and writing entities" } },
  workers: { page: workers, title: "Workers", access: { needs: ["admin"], what: "The list of processing workers" } },
  schemas: { page: schemas, title: "Schemas" },
  keys: { page: keys, title: "API Keys", access: { needs: ["admin"], allDatabases: true, what: "Managing API keys" } },
  jobs: { page: jobs, title: "Key jobs", access: { needs: ["admin"], what: "Running key jobs" } },
  explorer: { page: explorer, title: "Explorer" },
};

/** state is the UI's session: who is logged in and the current page's cleanup. */
const state = {
  me: null, // {client_id, permissions, is_admin} from /api/me
  cleanup: null,
  // guard, set by the page shown (ctx.guard), resolves to true when the
  // page may be left (nothing unsaved, or the user lets it go).
  guard: null,
  afterLogin: "dashboard",
};

const $ = (id) => document.getElementById(id);

function isAdmin() {
  const me = state.me;
  return !!me && (me.is_admin === true || (Array.isArray(me.permissions) && me.permissions.includes("admin")));
}

function currentRoute() {
  const m = /^#\/([a-z]+)/.exec(location.hash);
  return m ? m[1] : "";
}

function navigate(name) {
  if (currentRoute() === name) route();
  else location.hash = "#/" + name;
}

// ---- login ---------------------------------------------------------------------

function showLogin(notice) {
  teardownPage();
  state.me = null;
  closeMenu();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  const n = $("login-notice");
  n.textContent = notice || "";
  n.hidden = !notice;
  $("login-error").hidden = true;
  document.title = "Log in · DeltaDatabase";
  $("login-key").focus();
  showOIDCButton(() => state.afterLogin, () => $("login-remember").checked, showLoginError);
}

async function submitLogin(ev) {
  ev.preventDefault();
  const input = $("login-key");
  const err = $("login-error");
  const button = $("login-submit");
  const key = input.value.trim();
  err.hidden = true;
  if (!key) {
    showLoginError("Enter a key.");
    return;
  }
  button.disabled = true;
  try {
    const r = await request("POST", "/api/login", { key }, { login: true });
    if (!r.ok || !r.data || typeof r.data.token !== "string") {
      showLoginError(r.ok ? "Login answered without a token." : errorMessage(r));
      input.select();
      return;
    }
    input.value = ""; // the raw key is never kept
    setToken(r.data.token, { remember: $("login-remember").checked, expiresAt: r.data.expires_at });
    await enter(r.data);
  } catch (e) {
    if (!e.authExpired) showLoginError(e.message);
  } finally {
    button.disabled = false;
  }
}

// enter finishes a login that set the credential (grant: the login's
// answer): who we are, then the page the user was going to.
async function enter(grant) {
  state.me = { client_id: grant.client_id, permissions: grant.permissions || [], is_admin: false };
  const at = location.hash;
  await loadMe();
  if (!getToken()) return; // /api/me said 401: already back on the login page
  $("login-notice").hidden = true;
  // An address the user went to while /api/me was on its way is shown
  // already (route, with the login's identity): it wins over afterLogin.
  if (location.hash !== at) return;
  const target = state.afterLogin && state.afterLogin !== "login" ? state.afterLogin : "dashboard";
  navigate(target);
}

function showLoginError(text) {
  const err = $("login-error");
  err.textContent = text;
  err.hidden = false;
}

// loadMe asks /api/me who we are; if the endpoint is missing it keeps what
// /api/login said.
async function loadMe() {
  try {
    const r = await request("GET", "/api/me");
    if (r.ok && r.data) state.me = r.data;
    else if (!state.me) state.me = { permissions: [], is_admin: false };
  } catch (e) {
    if (e.authExpired) return;
    if (!state.me) state.me = { permissions: [], is_admin: false };
  }
  updateShell();
}

// logout ends the session at the server too (POST /api/logout revokes the
// token), then forgets it; a failed call still logs out this tab.
async function logout() {
  if (state.guard && !(await state.guard())) return;
  // A provider's access token cannot be ended here: it is only forgotten.
  const c = credential();
  if (c && c.kind !== "oidc") {
    try {
      await request("POST", "/api/logout");
    } catch {
      // network error or token already ended: nothing more to revoke
    }
  }
  clearToken();
  state.me = null;
  state.afterLogin = "dashboard";
  location.hash = "#/login";
  showLogin("You are logged out.");
}

// ---- shell -----------------------------------------------------------------------

function updateShell() {
  for (const [name, r] of Object.entries(routes)) {
    const li = $("nav-" + name)?.closest("li");
    if (li) li.hidden = !!pageDenial(state.me, r.access);
  }
  const me = state.me || {};
  const perms = Array.isArray(me.permissions) ? me.permissions.join(", ") : "";
  // People know a key by the name it was created with, not its ID.
  const who = me.name || me.client_id;
  setText($("whoami"), who ? `${who}${isAdmin() ? " (admin)" : perms ? ` (${perms})` : ""}` : "");
  if (me.client_id) $("whoami").title = `Key ID ${me.client_id}`;
}

function teardownPage() {
  state.guard = null;
  if (state.cleanup) {
    try {
      state.cleanup();
    } finally {
      state.cleanup = null;
    }
  }
}

// routing: the page drawn is the one the address names when who we are
// is known. A route that waits for the first /api/me yields to any route
// since (the address changed meanwhile): it drew its older page over the
// newer one when its answer came last.
const routing = latest();

async function route() {
  const current = routing.next();
  const name = currentRoute();
  if (!getToken()) {
    if (name && name !== "login") state.afterLogin = name;
    if (name !== "login") history.replaceState(null, "", "#/login");
    showLogin($("login-notice").hidden ? "" : $("login-notice").textContent);
    return;
  }
  if (name === "login" || !routes[name]) {
    location.replace("#/dashboard");
    return;
  }
  if (!state.me) await loadMe();
  if (!getToken() || !current()) return;
  renderPage(name);
}

function renderPage(name) {
  const r = routes[name];
  teardownPage();
  closeMenu();
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  updateShell();
  for (const a of document.querySelectorAll("#sidebar a")) {
    if (a.getAttribute("href") === "#/" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const msg = $("global-message");
  msg.hidden = true;
  const content = $("page-content");
  clear(content);
  document.title = `${r.title} · DeltaDatabase`;
  const denied = pageDenial(state.me, r.access);
  if (denied) {
    const why = document.createElement("p");
    why.id = why.dataset.testid = "page-denied";
    why.className = "message info";
    why.textContent = denied;
    content.append(heading(r.title), why);
  } else {
    const guard = (fn) => {
      state.guard = fn;
    };
    const cleanup = r.page.render(content, { me: state.me, isAdmin: isAdmin(), navigate, guard });
    state.cleanup = typeof cleanup === "function" ? cleanup : null;
  }
  const title = $("page-title");
  if (title && document.activeElement !== $("login-key")) title.focus({ preventScroll: true });
}

function heading(text) {
  const h2 = document.createElement("h2");
  h2.id = "page-title";
  h2.dataset.testid = "page-title";
  h2.tabIndex = -1;
  h2.textContent = text;
  return h2;
}

// ---- narrow-screen menu ------------------------------------------------------------

function menuOpen() {
  return $("sidebar").classList.contains("open");
}

function openMenu() {
  $("sidebar").classList.add("open");
  $("backdrop").hidden = false;
  const b = $("menu-button");
  b.setAttribute("aria-expanded", "true");
  b.setAttribute("aria-label", "Close menu");
  const first = document.querySelector("#sidebar a");
  if (first) first.focus();
}

function closeMenu(returnFocus) {
  if (!menuOpen()) return;
  $("sidebar").classList.remove("open");
  $("backdrop").hidden = true;
  const b = $("menu-button");
  b.setAttribute("aria-expanded", "false");
  b.setAttribute("aria-label", "Open menu");
  if (returnFocus) b.focus();
}

function wireShell() {
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", logout);
  $("menu-button").addEventListener("click", (ev) => {
    ev.stopPropagation();
    if (menuOpen()) closeMenu(true);
    else openMenu();
  });
  $("backdrop").addEventListener("click", () => closeMenu(true));
  document.addEventListener("click", (ev) => {
    if (!menuOpen()) return;
    if ($("sidebar").contains(ev.target) && !ev.target.closest("a")) return;
    closeMenu(false);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && menuOpen()) closeMenu(true);
  });
  $("skip-link").addEventListener("click", (ev) => {
    ev.preventDefault();
    const target = $("app-view").hidden ? $("login-key") : $("page");
    target.focus();
  });
  window.addEventListener("hashchange", leaveThenRoute);
  onUnauthorized(() => {
    state.me = null;
    const name = currentRoute();
    if (name && name !== "login") state.afterLogin = name;
    history.replaceState(null, "", "#/login");
    showLogin(SESSION_EXPIRED);
  });
}

// leaveThenRoute shows the page a changed hash names, unless the page shown
// has unsaved work the user wants to keep: then the old hash is put back.
let guarded = ""; // the hash a guard already let through
async function leaveThenRoute(ev) {
  if (!(location.hash.startsWith("#/") || location.hash === "")) return;
  const target = location.hash;
  if (state.guard && guarded !== target) {
    history.replaceState(null, "", new URL(ev.oldURL).hash || "#/");
    if (!(await state.guard())) return;
    guarded = target;
    location.hash = target;
    return;
  }
  guarded = "";
  route();
}

// boot finishes a sign-in with the OpenID provider when the page is its
// redirect back, then shows the page the URL names.
async function boot() {
  const cb = oidcCallback();
  if (cb) {
    state.afterLogin = cb.afterLogin || state.afterLogin;
    history.replaceState(null, "", location.pathname + "#/login");
    try {
      const grant = await finishOIDC(cb);
      return enter(grant);
    } catch (e) {
      clearToken();
      route();
      showLoginError(e.message);
      return;
    }
  }
  route();
}

wireShell();
onDeviceLogout(() => {
  state.me = null;
  history.replaceState(null, "", "#/login");
  showLogin("You logged out on this device in another tab.");
});
boot();

// Exposed for tests and the console: the current identity, read-only.
export function whoami() {
  return state.me ? { ...state.me } : null;
}
