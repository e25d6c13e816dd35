package main

// Browser tests of the console: the dashboard's last hour and
// the pages each principal sees, the key management, the editor, the
// three-way merge and the login choices. Like ui_test.go: the real binary,
// Debian's Chromium through chromedp, a flow per tab at the laptop
// (1366x900) and the phone (390x844) sizes, failing on any console error,
// and every flow checks what the server holds afterwards.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// consoleKey creates an API key through the API and returns its ID and
// secret.
func (s uiSeed) consoleKey(name string, perms []string, dbs ...string) (id, secret string) {
	s.t.Helper()
	body := map[string]any{"name": name, "permissions": perms}
	if len(dbs) > 0 {
		body["databases"] = dbs
	}
	var k struct{ ID, Secret string }
	if err := json.Unmarshal(s.call("POST", "/api/keys", body, http.StatusCreated), &k); err != nil {
		s.t.Fatal(err)
	}
	return k.ID, k.Secret
}

// choose picks value in the <select> with id, with the change event a
// person's choice fires.
func (tb *uiTab) choose(id, value string) {
	tb.t.Helper()
	tb.do("choose "+value+" in #"+id, chromedp.SetValue(chromedp.ID(id), value),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).dispatchEvent(new Event("change"))`, id)))
}

// confirmTyped answers the typed-name confirmation (dialog.js) that is
// open or opening: Confirm stays disabled until the name is typed
// exactly. It returns the dialog's text.
func (tb *uiTab) confirmTyped(name string) string {
	tb.t.Helper()
	tb.waitFor("the confirmation", `document.getElementById("confirm-dialog")?.open`)
	tb.typeInto("confirm-name", name[:len(name)-1])
	var early bool
	tb.eval(`document.getElementById("confirm-ok").disabled`, &early)
	if !early {
		tb.t.Errorf("the confirmation of %q is enabled before the whole name is typed", name)
	}
	text := tb.text("confirm-text")
	tb.typeInto("confirm-name", name)
	tb.click("#confirm-ok")
	tb.waitFor("the confirmation closed", `!document.getElementById("confirm-dialog")`)
	return text
}

// nav follows the menu link to page name, opening the menu first on a
// narrow screen.
func (tb *uiTab) nav(name, title string) {
	tb.t.Helper()
	if tb.width <= 800 {
		tb.openMenu()
	}
	tb.goTo(name, title)
}

// navShown returns the pages whose menu links are shown, in menu order.
func (tb *uiTab) navShown() []string {
	tb.t.Helper()
	var shown []string
	tb.eval(`[...document.querySelectorAll("#sidebar li")].filter(li => !li.hidden).map(li => li.querySelector("a").id.replace("nav-", ""))`, &shown)
	return shown
}

// consoleChatSchema is the chat schema the editor flows bind.
const consoleChatSchema = `{"type": "object", "required": ["messages"], "properties": {"title": {"type": "string"}, "messages": {"type": "array",
	"items": {"type": "object", "required": ["role"], "properties": {"role": {"enum": ["user", "assistant"]}, "text": {"type": "string"}}}}}}`

// TestUIConsole runs the flows in one Chromium against one
// server.
func TestUIConsole(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	desk := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, deskView[0], deskView[1]) }
	phone := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, phoneView[0], phoneView[1]) }

	// DashboardCharts: the admin's dashboard draws the last minutes from
	// GET /admin/stats; its errors by route are the server's.
	t.Run("DashboardCharts", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui25dash"
		seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"n": 1}}, http.StatusOK)
		for range 3 {
			seed.call("GET", "/entity/"+db+"?key=missing", nil, http.StatusNotFound)
		}
		for range 5 {
			seed.call("GET", "/entity/"+db+"?key=a", nil, http.StatusOK)
		}
		for _, size := range []func(*testing.T) *uiTab{desk, phone} {
			tb := size(t)
			tb.login(testAdminKey)
			route := `#dash-errors-table tr[data-route="GET /entity/{db}"]`
			tb.waitFor("the charts drawn", `(p => p && Number(p.dataset.points) >= 1)(document.querySelector('#dash-chart-rps path[data-series="requests/s"]'))`)
			tb.waitFor("errors by route", fmt.Sprintf(`document.querySelector('%s')`, route))
			var ui struct {
				Client      string
				Paths       map[string]int
				Limited     bool
				Requests    string
				Desc, Title string
			}
			tb.eval(fmt.Sprintf(`({Client: document.querySelector('%s [data-testid="dash-route-4xx"]').textContent,
				Paths: Object.fromEntries([...document.querySelectorAll("#dash-history path[data-series]")].map(p => [p.closest("svg").id + "/" + p.dataset.series, Number(p.dataset.points)])),
				Limited: !!document.getElementById("dash-limited"),
				Requests: document.getElementById("dash-fig-requests").textContent,
				Desc: document.querySelector("#dash-chart-rps desc").textContent,
				Title: document.querySelector("#dash-chart-rps title").textContent})`, route), &ui)
			var stats statsAnswer
			if err := json.Unmarshal(seed.call("GET", "/admin/stats?window=15m", nil, http.StatusOK), &stats); err != nil {
				t.Fatal(err)
			}
			want := ""
			for _, e := range stats.ErrorsByRoute {
				if e.Route == "GET /entity/{db}" {
					want = fmt.Sprint(e.ClientErrors)
				}
			}
			if ui.Client != want || want != "3" {
				t.Errorf("dashboard shows %s 4xx on GET /entity/{db}, the server %s; want both 3", ui.Client, want)
			}
			for _, p := range []string{"dash-chart-rps/requests/s", "dash-chart-latency/p50", "dash-chart-latency/p95",
				"dash-chart-errors/4xx", "dash-chart-storage/get", "dash-chart-workers/available"} {
				if ui.Paths[p] < 1 {
					t.Errorf("chart line %s draws %d points, want at least 1 (all: %v)", p, ui.Paths[p], ui.Paths)
				}
			}
			if ui.Limited || ui.Requests == "" || ui.Requests == "0" || ui.Title != "Requests per second" || !strings.HasPrefix(ui.Desc, "Latest: requests/s ") {
				t.Errorf("admin dashboard: limited note %v, requests %q, chart %q described %q", ui.Limited, ui.Requests, ui.Title, ui.Desc)
			}
			// The 15 minute chart already has points: wait for the chart of
			// the window chosen.
			tb.choose("dash-window", "5m")
			tb.waitFor("the 5 minute window drawn", `(c => c.dataset.span === "300" && c.querySelector("path").dataset.points >= 1)(document.getElementById("dash-chart-rps"))`)
			tb.shots("dashboard", "#dash-history")
		}
	})

	// PagesPerPrincipal: each kind of key sees the pages it can use in the
	// menu, a plain sentence on the others, and no "admin only" or server
	// error where a figure would be.
	t.Run("PagesPerPrincipal", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		seed.call("PUT", "/entity/ui25pages", map[string]any{"k": map[string]any{"a": 1}}, http.StatusOK)
		_, reader := seed.consoleKey("ui25-reader", []string{"read"})
		_, writer := seed.consoleKey("ui25-writer", []string{"write"})
		_, scoped := seed.consoleKey("ui25-scoped-admin", []string{"admin"}, "team-*")
		for _, tc := range []struct {
			name, secret string
			nav          string
			denied       map[string]string // page -> sentence shown
		}{
			{"reader", reader, "[dashboard databases entities schemas explorer]", map[string]string{
				"workers": "The list of processing workers is for administrators; ui25-reader is not one.",
				"keys":    "Managing API keys is for administrators; ui25-reader is not one."}},
			{"writer", writer, "[dashboard entities schemas explorer]", map[string]string{
				"databases": "Browsing databases and their entities needs the read permission; ui25-writer has write.",
				"jobs":      "Running key jobs is for administrators; ui25-writer is not one."}},
			{"scoped-admin", scoped, "[dashboard databases entities workers schemas jobs explorer]", map[string]string{
				"keys": "Managing API keys needs a key that may use every database; ui25-scoped-admin may use only team-*."}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tb := desk(t)
				tb.login(tc.secret)
				tb.waitText("dash-health", "ok")
				if got := fmt.Sprint(tb.navShown()); got != tc.nav {
					t.Errorf("menu shows %s, want %s", got, tc.nav)
				}
				var body string
				tb.eval(`document.body.innerText`, &body)
				if strings.Contains(body, "admin only") || strings.Count(body, "administrators") > 1 {
					t.Errorf("dashboard of %s says:\n%s\nwant no \"admin only\" and at most one sentence about administrators", tc.name, body)
				}
				for page, want := range tc.denied {
					tb.do("open "+page+" by URL", chromedp.Navigate(n.base+"/#/"+page))
					if got := tb.waitText("page-denied", want); got != want {
						t.Errorf("#/%s shows %q, want %q", page, got, want)
					}
				}
				tb.shots("pages-"+tc.name, "")
			})
		}
		// The write-only key on Entities: no list it cannot read, no
		// server error, Get disabled with the reason; Put still works.
		tb := phone(t)
		tb.login(writer)
		tb.do("open entities", chromedp.Navigate(n.base+"/#/entities"))
		tb.waitFor("the entities page", `document.getElementById("page-title")?.textContent === "Entities"`)
		var ent struct {
			Get     bool
			Message bool
			Why     string
		}
		tb.eval(`({Get: document.getElementById("ent-get").disabled, Message: !document.getElementById("ent-message").hidden,
			Why: document.getElementById("ent-read-denied").textContent})`, &ent)
		if !ent.Get || ent.Message || !strings.Contains(ent.Why, "Needs read permission") {
			t.Errorf("write-only Entities page: Get disabled %v, message shown %v, reason %q", ent.Get, ent.Message, ent.Why)
		}
		tb.typeInto("ent-db-new", "ui25pages")
		tb.typeInto("ent-key", "w")
		tb.setEditor("ent-doc", `{"by": "writer"}`)
		tb.click("#ent-put")
		tb.waitText("ent-message", "Saved ui25pages / w")
		if got := seed.entity("ui25pages", "w"); !jsonEqual(got, []byte(`{"by": "writer"}`)) {
			t.Errorf("after the write-only key's Put the server holds %s", got)
		}
		tb.shots("writer-entities", "")
	})

	// KeysManage: the key list comes first; Create key opens a dialog with
	// the databases to pick; the secret is shown once; Edit, Rotate and
	// Delete (after the name is typed) change what the server holds.
	t.Run("KeysManage", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		seed.call("PUT", "/entity/ui25keysdb", map[string]any{"k": map[string]any{"a": 1}}, http.StatusOK)
		seed.call("PUT", "/entity/ui25other", map[string]any{"k": map[string]any{"a": 1}}, http.StatusOK)
		for i, size := range []func(*testing.T) *uiTab{desk, phone} {
			name := fmt.Sprintf("ui25-bot-%d", i)
			tb := size(t)
			tb.login(testAdminKey)
			tb.nav("keys", "API Keys")
			var first struct {
				DialogOpen bool
				TableTop   float64
				NewTop     float64
			}
			tb.eval(`({DialogOpen: document.getElementById("key-dialog").open,
				TableTop: document.getElementById("keys-table").getBoundingClientRect().top,
				NewTop: document.getElementById("key-new").getBoundingClientRect().top})`, &first)
			if first.DialogOpen || first.TableTop > float64(tb.height) {
				t.Errorf("keys page: dialog open %v, list starts at %.0fpx of %d; want the list on the first screen, no form", first.DialogOpen, first.TableTop, tb.height)
			}
			tb.click("#key-new")
			tb.waitFor("the create dialog", `document.getElementById("key-dialog").open`)
			tb.typeInto("key-name", name)
			tb.click("#key-perm-write")
			tb.click("#key-db-some")
			tb.waitFor("the databases to pick", `document.querySelector('#key-db-list input[data-db="ui25keysdb"]') && document.querySelector('#key-db-list input[data-db="ui25other"]')`)
			tb.click(`#key-db-list input[data-db="ui25keysdb"]`)
			tb.typeInto("key-db-add", "logs_*")
			tb.click("#key-db-add-button")
			tb.choose("key-expiry", "30d")
			tb.shots(fmt.Sprintf("create-dialog-%d", i), "")
			tb.click("#key-create")
			tb.waitFor("the secret", `!document.getElementById("key-secret-box").hidden && document.getElementById("key-secret").textContent.startsWith("dk_")`)
			secret := tb.text("key-secret")
			tb.shots(fmt.Sprintf("secret-%d", i), "")
			tb.click("#key-secret-done")
			tb.waitFor("the dialog closed", `!document.getElementById("key-dialog").open`)
			var keys []keyAnswer
			if err := json.Unmarshal(seed.call("GET", "/api/keys", nil, http.StatusOK), &keys); err != nil {
				t.Fatal(err)
			}
			var k keyAnswer
			for _, x := range keys {
				if x.Name == name {
					k = x
				}
			}
			if fmt.Sprint(k.Permissions, k.Databases) != "[read write] [ui25keysdb logs_*]" || k.ExpiresAt == nil ||
				time.Until(*k.ExpiresAt) < 29*24*time.Hour || time.Until(*k.ExpiresAt) > 30*24*time.Hour {
				t.Fatalf("the server holds %+v, want read and write on ui25keysdb and logs_*, expiring in 30 days", k)
			}
			// A use shows as the last use.
			if code, body, _ := httpCall(t, "GET", n.base+"/entity/ui25keysdb?key=k", secret, nil); code != 200 {
				t.Fatalf("the new key reads its database: %d %s", code, body)
			}
			if code, _, _ := httpCall(t, "GET", n.base+"/entity/ui25other?key=k", secret, nil); code != 403 {
				t.Errorf("the new key reads another database: %d, want 403", code)
			}
			rowSel := fmt.Sprintf(`#keys-table tr[data-key-id=%q]`, k.ID)
			tb.nav("dashboard", "Dashboard")
			tb.nav("keys", "API Keys")
			tb.waitFor("the last use", fmt.Sprintf(`/within the last minutes/.test(document.querySelector('%s [data-testid="key-last-used"]')?.textContent)`, rowSel))

			// Edit: read only, every database, no expiry.
			tb.click(rowSel + ` [data-testid="key-edit"]`)
			tb.waitFor("the edit dialog", `document.getElementById("key-dialog").open && document.getElementById("key-name").value !== ""`)
			tb.click("#key-perm-write")
			tb.click("#key-db-all")
			tb.choose("key-expiry", "")
			tb.click("#key-create")
			tb.waitFor("the dialog closed", `!document.getElementById("key-dialog").open`)
			tb.waitText("keys-message", "Saved key "+name)
			k = seedKey(t, seed, k.ID)
			if fmt.Sprint(k.Permissions) != "[read]" || k.Databases != nil || k.ExpiresAt != nil {
				t.Errorf("after Edit the server holds %+v, want read on every database, never expiring", k)
			}
			tb.waitFor("the row updated", fmt.Sprintf(`document.querySelector('%s [data-testid="key-databases"]').textContent === "all"`, rowSel))

			// Rotate with a grace of an hour: both secrets work meanwhile.
			tb.click(rowSel + ` [data-testid="key-rotate"]`)
			tb.waitFor("the rotate dialog", `document.getElementById("key-rotate-dialog").open`)
			tb.choose("key-grace", "1h")
			tb.click("#key-rotate-confirm")
			tb.waitFor("the new secret", `!document.getElementById("key-rotate-secret-box").hidden && document.getElementById("key-rotate-secret").textContent.startsWith("dk_")`)
			newSecret := tb.text("key-rotate-secret")
			tb.shots(fmt.Sprintf("rotated-%d", i), "")
			tb.click("#key-rotate-secret-done")
			tb.waitFor("the grace in the row", fmt.Sprintf(`document.querySelector('%s [data-testid="key-grace"]')`, rowSel))
			for what, cred := range map[string]string{"old": secret, "new": newSecret} {
				if code, _, _ := httpCall(t, "GET", n.base+"/api/me", cred, nil); newSecret == secret || code != 200 {
					t.Errorf("the %s secret after a rotation with an hour's grace: %d, want 200", what, code)
				}
			}
			if k = seedKey(t, seed, k.ID); k.PreviousExpiresAt == nil || time.Until(*k.PreviousExpiresAt) > time.Hour || time.Until(*k.PreviousExpiresAt) < 50*time.Minute {
				t.Errorf("after Rotate the server's grace ends %v, want in an hour", k.PreviousExpiresAt)
			}
			tb.shots(fmt.Sprintf("list-%d", i), "#keys-table")

			// Delete after typing the name.
			tb.click(rowSel + ` [data-testid="key-delete"]`)
			tb.confirmTyped(name)
			tb.waitText("keys-message", "Deleted key "+name)
			for _, cred := range []string{secret, newSecret} {
				if code, _, _ := httpCall(t, "GET", n.base+"/api/me", cred, nil); code != 401 {
					t.Errorf("a secret of the deleted key: %d, want 401", code)
				}
			}
		}
	})

	// KeysDatabasesLate: a create dialog opened before the page's list of
	// databases has come gets the databases when it comes; they used to
	// stay missing from that dialog (a slow answer failed KeysManage).
	t.Run("KeysDatabasesLate", func(t *testing.T) {
		uiSeed{t, n.base}.call("PUT", "/entity/ui25late", map[string]any{"k": map[string]any{"a": 1}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		// The page's GET /api/databases waits until the test lets it go.
		tb.eval(`(() => {
			const real = window.fetch;
			window.__dbsHeld = new Promise((r) => { window.__releaseDbs = r; });
			window.fetch = (path, init) => String(path).startsWith("/api/databases") && (init?.method ?? "GET") === "GET"
				? window.__dbsHeld.then(() => real(path, init)) : real(path, init);
			return true;
		})()`, nil)
		tb.nav("keys", "API Keys")
		tb.click("#key-new")
		tb.waitFor("the create dialog", `document.getElementById("key-dialog").open`)
		var listed bool
		tb.eval(`!!document.querySelector('#key-db-list input[data-db="ui25late"]')`, &listed)
		if listed {
			t.Fatal("ui25late listed while the databases' request was held: the test held nothing")
		}
		tb.click("#key-db-some")
		tb.eval(`(window.__releaseDbs(), true)`, nil)
		tb.waitFor("ui25late in the open dialog once the databases came", `document.querySelector('#key-db-list input[data-db="ui25late"]')`)
		tb.click(`#key-db-list input[data-db="ui25late"]`)
		var picked bool
		tb.eval(`document.querySelector('#key-db-list input[data-db="ui25late"]').checked && document.getElementById("key-db-some").checked`, &picked)
		if !picked {
			t.Error("ui25late cannot be picked in the dialog after the databases came late")
		}
	})

	// EditorTextTreeWrap: the document editor's tree beside the text (a
	// name jumps to the text), wrapped lines with numbers as tall as their
	// lines, Copy, Ctrl+S, and the stale-error bug: invalid JSON after a
	// schema failure marks only the syntax error, at its line.
	t.Run("EditorTextTreeWrap", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui25edit"
		seed.call("PUT", "/schema/ui25.chat.v1", consoleChatSchema, http.StatusOK)
		long := strings.Repeat("a long message that wraps ", 12)
		stored := fmt.Sprintf(`{"title":"t","messages":[{"role":"user","text":"hi"},{"role":"assistant","text":%q}]}`, long)
		seed.call("PUT", "/entity/"+db, map[string]any{"chat": json.RawMessage(stored)}, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": "ui25.chat.v1"}, http.StatusOK)
		for i, size := range []func(*testing.T) *uiTab{desk, phone} {
			tb := size(t)
			tb.login(testAdminKey)
			if tb.width <= 800 {
				tb.openMenu()
			}
			tb.openDB(db)
			tb.openEntity("chat")
			// The tree: on by default on a laptop, off on a phone.
			var treeOn bool
			tb.eval(`document.getElementById("entity-editor-tree").checked`, &treeOn)
			if treeOn != (tb.width > 800) {
				t.Errorf("tree shown by default = %v at %dpx", treeOn, tb.width)
			}
			if !treeOn {
				tb.click("#entity-editor-tree")
			}
			tb.waitFor("the tree", `document.querySelector('#entity-editor-tree-view details[data-pointer="/messages"]')`)
			tb.click(`#entity-editor-tree-view button.tree-name[data-pointer="/messages/1/text"]`)
			var sel struct{ Selected string }
			tb.eval(`(ta => ({Selected: ta.value.slice(ta.selectionStart, ta.selectionEnd)}))(document.getElementById("entity-editor"))`, &sel)
			if sel.Selected != `"text"` {
				t.Errorf("a click on /messages/1/text in the tree selects %q in the text, want its name", sel.Selected)
			}
			// Wrap: the long line wraps, its number is as tall as it is.
			var wrapOn bool
			tb.eval(`document.getElementById("entity-editor-wrap").checked`, &wrapOn)
			if wrapOn != (tb.width <= 800) {
				t.Errorf("wrap on by default = %v at %dpx", wrapOn, tb.width)
			}
			if !wrapOn {
				tb.click("#entity-editor-wrap")
			}
			tb.settle()
			var wrap struct {
				Overflow     bool
				Tall, Normal float64
				Line         int
			}
			tb.eval(`(() => {
				const ta = document.getElementById("entity-editor");
				const line = ta.value.split("\n").findIndex(l => l.includes("wraps")) + 1;
				const g = n => document.querySelector('[data-testid="entity-editor-gutter"] span[data-line="' + n + '"]').getBoundingClientRect().height;
				return {Overflow: ta.scrollWidth > ta.clientWidth + 1, Tall: g(line), Normal: g(1), Line: line};
			})()`, &wrap)
			if wrap.Overflow || wrap.Tall < 2*wrap.Normal {
				t.Errorf("wrapped: sideways scroll %v, line %d numbered %.0fpx tall against %.0fpx; want no sideways scroll and a taller number", wrap.Overflow, wrap.Line, wrap.Tall, wrap.Normal)
			}
			tb.shots(fmt.Sprintf("editor-tree-wrap-%d", i), "#entity-pane")

			// Copy: what the button hands to the clipboard is the document.
			tb.eval(`window.__copied = null; Object.defineProperty(navigator, "clipboard", {configurable: true, value: {writeText: async t => { window.__copied = t; }}}); 1`, nil)
			tb.click("#entity-editor-copy")
			tb.waitText("entity-editor-toolbar-status", "Copied the document.")
			var copied, text string
			tb.eval(`window.__copied`, &copied)
			tb.eval(`document.getElementById("entity-editor").value`, &text)
			if copied != text || !jsonEqual([]byte(copied), []byte(stored)) {
				t.Errorf("Copy handed %q to the clipboard, want the document", copied)
			}

			// The stale-error bug: a schema failure, then invalid JSON.
			tb.setEditor("entity-editor", "{\n  \"messages\": [\n    {\"role\": \"robot\"},\n    {\"role\": 5}\n  ]\n}")
			tb.click("#entity-save")
			tb.waitText("entity-message", "2 problems against schema ui25.chat.v1")
			tb.setEditor("entity-editor", "{\n  \"messages\": [\n    {\"role\": \"user\",, }\n  ]\n}")
			tb.click("#entity-save")
			tb.waitText("entity-message", "Invalid JSON (line 3)")
			var marks struct {
				Items  []string
				Gutter []int
			}
			tb.eval(`({Items: [...document.querySelectorAll("#entity-editor-errors li")].map(li => li.dataset.line + ":" + (li.dataset.syntax || "") + ":" + li.textContent),
				Gutter: [...document.querySelectorAll('[data-testid="entity-editor-gutter"] .line-invalid')].map(s => Number(s.dataset.line))})`, &marks)
			if len(marks.Items) != 1 || !strings.HasPrefix(marks.Items[0], "3:true:Line 3") || fmt.Sprint(marks.Gutter) != "[3]" {
				t.Errorf("after invalid JSON the editor lists %q and marks lines %v; want only the syntax error, on line 3", marks.Items, marks.Gutter)
			}
			if got := seed.entity(db, "chat"); !jsonEqual(got, []byte(stored)) {
				t.Errorf("after refused saves the server holds %s", got)
			}
			tb.shots(fmt.Sprintf("editor-syntax-%d", i), "#entity-pane")

			// Ctrl+S saves a valid edit.
			edit := fmt.Sprintf(`{"title":"saved with ctrl+s %d","messages":[]}`, i)
			tb.setEditor("entity-editor", edit)
			tb.do("Ctrl+S", chromedp.KeyEvent("s", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
			tb.waitText("entity-message", "Saved.")
			if got := seed.entity(db, "chat"); !jsonEqual(got, []byte(edit)) {
				t.Errorf("after Ctrl+S the server holds %s, want %s", got, edit)
			}
			seed.call("PUT", "/entity/"+db, map[string]any{"chat": json.RawMessage(stored)}, http.StatusOK)
		}
	})

	// UnsavedGuard: an edit is not lost silently: opening another key, going
	// to another page and closing the tab ask first; Keep editing keeps it.
	t.Run("UnsavedGuard", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui25guard"
		seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"n": 1}, "b": map[string]any{"n": 2}}, http.StatusOK)
		for _, size := range []func(*testing.T) *uiTab{desk, phone} {
			tb := size(t)
			tb.login(testAdminKey)
			tb.nav("databases", "Databases")
			tb.click(fmt.Sprintf(`#db-cards button[data-db=%q]`, db))
			tb.openEntity("a")
			tb.do("type an edit", chromedp.Click(chromedp.ID("entity-editor")), chromedp.KeyEvent("\n"))
			tb.setEditor("entity-editor", `{"n": 100}`)
			ask := func(answer string) {
				t.Helper()
				tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
				if got := tb.text("ask-text"); !strings.Contains(got, db+" / a") {
					t.Errorf("the question says %q, want it to name %s / a", got, db)
				}
				tb.click("#" + answer)
				tb.waitFor("the question answered", `!document.getElementById("ask-dialog")`)
			}
			tb.click(`#db-keys button[data-key="b"]`)
			ask("ask-keep")
			var st struct{ Value, Title, Hash string }
			read := func() {
				t.Helper()
				tb.eval(`({Value: document.getElementById("entity-editor").value, Title: document.getElementById("entity-title").textContent, Hash: location.hash})`, &st)
			}
			read()
			if st.Value != `{"n": 100}` || !strings.HasSuffix(st.Title, " / a") {
				t.Errorf("after Keep editing: editor %q, title %q; want the edit of a", st.Value, st.Title)
			}
			if tb.width <= 800 {
				tb.openMenu()
			}
			tb.click("#nav-workers")
			tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
			tb.click("#ask-keep")
			tb.waitFor("still on Databases", `!document.getElementById("ask-dialog") && document.getElementById("page-title").textContent === "Databases"`)
			read()
			if st.Value != `{"n": 100}` || !strings.HasPrefix(st.Hash, "#/databases") {
				t.Errorf("after Keep editing on leaving: editor %q, hash %q", st.Value, st.Hash)
			}
			if got := seed.entity(db, "a"); !jsonEqual(got, []byte(`{"n": 1}`)) {
				t.Errorf("the server holds %s, want the unsaved edit not stored", got)
			}
			// Closing the tab (a reload here) asks the browser's question.
			before := len(tb.dialogSeen())
			tb.do("reload", chromedp.Reload())
			tb.waitFor("the page again", `document.getElementById("page-title")?.textContent === "Databases"`)
			if len(tb.dialogSeen()) != before+1 {
				t.Errorf("a reload with unsaved changes showed %d browser dialogs, want the leave-page question", len(tb.dialogSeen())-before)
			}
			// Discard: the other key opens.
			tb.openEntity("a")
			tb.setEditor("entity-editor", `{"n": 101}`)
			tb.click(`#db-keys button[data-key="b"]`)
			ask("ask-ok")
			tb.waitFor("b open", `document.getElementById("entity-title").textContent.endsWith(" / b") && JSON.parse(document.getElementById("entity-editor").value).n === 2`)
			tb.shots("guard", "#entity-pane")
		}
	})

	// SchemaEditorAndCheck: the schema page has the same editor (tree,
	// gutter, Ctrl+S), lists the databases bound to the schema, and checks
	// their stored entities on the server: the entities listed are those
	// the server's job found.
	t.Run("SchemaEditorAndCheck", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const id, db = "ui25.check.v1", "ui25checked"
		docs := map[string]any{}
		for i := range 30 {
			docs[fmt.Sprintf("s%02d", i)] = map[string]any{"messages": []any{map[string]any{"role": "user"}}}
		}
		docs["s07"] = map[string]any{"msgs": []any{}}
		docs["s21"] = map[string]any{"messages": []any{map[string]any{"role": "robot"}}}
		seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
		seed.call("PUT", "/schema/"+id, consoleChatSchema, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": id}, http.StatusOK)
		for i, size := range []func(*testing.T) *uiTab{desk, phone} {
			tb := size(t)
			tb.login(testAdminKey)
			tb.nav("schemas", "Schemas")
			tb.click(fmt.Sprintf(`#schema-list button[data-schema=%q]`, id))
			tb.waitText("schema-message", "Loaded "+id)
			if tb.width > 800 {
				tb.waitFor("the schema's tree", `document.querySelector('#schema-text-tree-view details[data-pointer="/properties"]')`)
			}
			tb.waitFor("the bound database", fmt.Sprintf(`document.querySelector('#schema-dbs li[data-db=%q][data-ready]')`, db))
			var before string
			tb.eval(fmt.Sprintf(`document.querySelector('#schema-dbs li[data-db=%q] progress').dataset.job || ""`, db), &before)
			tb.click(fmt.Sprintf(`#schema-dbs button[data-testid="schema-check"][data-db=%q]`, db))
			tb.waitFor("the check done", fmt.Sprintf(`(p => p.dataset.state === "done" && p.dataset.job !== %q)(document.querySelector('#schema-dbs li[data-db=%q] progress'))`, before, db))
			var ui struct {
				Keys  []string
				State string
				Bar   [2]float64
			}
			tb.eval(fmt.Sprintf(`(li => ({Keys: [...li.querySelectorAll('[data-testid="schema-check-result"] a[data-key]')].map(a => a.dataset.key),
				State: li.querySelector('[data-testid="schema-check-state"]').textContent,
				Bar: [li.querySelector("progress").value, li.querySelector("progress").max]}))(document.querySelector('#schema-dbs li[data-db=%q]'))`, db), &ui)
			var job checkJob
			if err := json.Unmarshal(seed.call("GET", "/api/databases/"+db+"/check", nil, http.StatusOK), &job); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, m := range job.Mismatches {
				want = append(want, m.Key)
			}
			if fmt.Sprint(ui.Keys) != fmt.Sprint(want) || fmt.Sprint(want) != "[s07 s21]" || ui.Bar != [2]float64{30, 30} || !strings.Contains(ui.State, "2 do not match") {
				t.Errorf("the page lists %v (%q, bar %v), the server's job %v; want s07 and s21, 30 of 30", ui.Keys, ui.State, ui.Bar, want)
			}
			tb.shots(fmt.Sprintf("schema-check-%d", i), "#schema-bound")
			// Ctrl+S saves the schema.
			edited := strings.Replace(consoleChatSchema, `"required": ["messages"]`, fmt.Sprintf(`"required": ["messages"], "title": "saved %d"`, i), 1)
			tb.setEditor("schema-text", edited)
			tb.do("Ctrl+S", chromedp.KeyEvent("s", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
			tb.waitText("schema-message", "Saved "+id)
			if got := seed.call("GET", "/schema/"+id, nil, http.StatusOK); !jsonEqual(got, []byte(edited)) {
				t.Errorf("after Ctrl+S the server's schema is %s", got)
			}
			// A mismatch is a link to the entity.
			tb.waitFor("the result listed again", `document.querySelector('#schema-dbs a[data-key="s21"]')`)
			tb.click(`#schema-dbs a[data-key="s21"]`)
			tb.waitFor("the entity open", fmt.Sprintf(`document.getElementById("entity-title")?.textContent === "%s / s21"`, db))
		}
	})

	// ThreeWayMerge: a Save that loses a race merges three ways: changes
	// to different members are taken without a question; overlapping ones
	// are listed for a choice; the merged Save is conditional.
	t.Run("ThreeWayMerge", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui25merge"
		for i, size := range []func(*testing.T) *uiTab{desk, phone} {
			key := fmt.Sprintf("doc%d", i)
			seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"title": "t", "n": 1, "messages": []any{"m1"}}}, http.StatusOK)
			tb := size(t)
			tb.login(testAdminKey)
			if tb.width <= 800 {
				tb.openMenu()
			}
			tb.openDB(db)
			tb.openEntity(key)

			// Not overlapping: they change n, I change the title. My edit
			// comes first: an unedited document follows the change feed
			// and would reload their version instead of meeting a 412.
			tb.setEditor("entity-editor", `{"title": "mine", "n": 1, "messages": ["m1"]}`)
			seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"title": "t", "n": 2, "messages": []any{"m1"}}}, http.StatusOK)
			tb.click("#entity-save")
			tb.waitFor("the merge", `!document.getElementById("entity-conflict").hidden`)
			var m struct {
				Summary   string
				Conflicts int
				Merged    string
				Save      bool
			}
			read := func() {
				t.Helper()
				tb.eval(`({Summary: document.getElementById("entity-conflict-summary").textContent,
					Conflicts: document.querySelectorAll("#entity-conflict-list > li").length,
					Merged: document.getElementById("entity-conflict-merged").textContent,
					Save: document.getElementById("entity-conflict-save").disabled})`, &m)
			}
			read()
			if m.Conflicts != 0 || !jsonEqual([]byte(m.Merged), []byte(`{"title": "mine", "n": 2, "messages": ["m1"]}`)) || m.Save || !strings.Contains(m.Summary, "nothing conflicts") {
				t.Errorf("merge of non-overlapping edits: %+v; want their n and my title, no conflict, Save enabled", m)
			}
			tb.shots(fmt.Sprintf("merge-clean-%d", i), "#entity-conflict")
			tb.click("#entity-conflict-save")
			tb.waitText("entity-message", "Saved.")
			if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"title": "mine", "n": 2, "messages": ["m1"]}`)) {
				t.Errorf("after Save merged the server holds %s", got)
			}

			// Overlapping: both change the title and append a message.
			tb.setEditor("entity-editor", `{"title": "mine again", "n": 3, "messages": ["m1", "my m2"]}`)
			seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"title": "theirs", "n": 2, "messages": []any{"m1", "their m2"}}}, http.StatusOK)
			tb.click("#entity-save")
			tb.waitFor("the merge", `!document.getElementById("entity-conflict").hidden && document.querySelectorAll("#entity-conflict-list > li").length === 2`)
			read()
			if !m.Save || !strings.Contains(m.Summary, "2 places both of you changed") {
				t.Errorf("merge of overlapping edits: %+v; want Save disabled until both are chosen", m)
			}
			var paths []string
			tb.eval(`[...document.querySelectorAll("#entity-conflict-list > li")].map(li => li.dataset.path)`, &paths)
			if fmt.Sprint(paths) != "[/title /messages]" {
				t.Errorf("conflicts at %v, want /title and /messages", paths)
			}
			tb.click(`#entity-conflict-list li[data-path="/title"] input[value="mine"]`)
			tb.click(`#entity-conflict-list li[data-path="/messages"] input[value="both"]`)
			want := `{"title": "mine again", "n": 3, "messages": ["m1", "their m2", "my m2"]}`
			if got := tb.text("entity-conflict-merged"); !jsonEqual([]byte(got), []byte(want)) {
				t.Errorf("merged result after the choices = %s, want %s", got, want)
			}
			tb.shots(fmt.Sprintf("merge-conflicts-%d", i), "#entity-conflict")
			// Someone writes again before the merged Save: it is conditional.
			seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"title": "theirs", "n": 2, "messages": []any{"m1", "their m2"}, "late": true}}, http.StatusOK)
			tb.click("#entity-conflict-save")
			tb.waitText("entity-message", "Not saved")
			if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"title": "theirs", "n": 2, "messages": ["m1", "their m2"], "late": true}`)) {
				t.Errorf("a merged Save over a newer version stored %s; want it refused", got)
			}
			// The new merge against the newest version keeps the choices made: nothing conflicts.
			tb.waitFor("the merge again", `!document.getElementById("entity-conflict").hidden && document.getElementById("entity-conflict-summary").textContent.includes("nothing conflicts")`)
			tb.click("#entity-conflict-save")
			tb.waitText("entity-message", "Saved.")
			if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"title": "mine again", "n": 3, "messages": ["m1", "their m2", "my m2"], "late": true}`)) {
				t.Errorf("after the second merged Save the server holds %s", got)
			}
		}
	})

	t.Run("MergeUnitTests", func(t *testing.T) {
		desk(t).requireJSSuite("/js/merge_test.js", "runMergeTests", 300)
	})

	// StaySignedIn: by default the session lasts for its tab; "Stay signed
	// in" keeps it on the device until it expires, for every tab, and Log
	// out in one tab ends it at the server and in every tab.
	// FindByContent: the Databases page lists the documents a selector
	// matches (POST /api/databases/{db}/find), the selector built from a
	// field, an operator and a value or typed as JSON, paged by the
	// bookmark; the server's own answer is the reference.
	t.Run("FindByContent", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui25find"
		docs := map[string]any{}
		for i := range 12 {
			docs[fmt.Sprintf("s%02d", i)] = map[string]any{"role": []string{"user", "assistant"}[i%2], "n": i}
		}
		seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
		serverFind := func(selector string) []string {
			var a struct{ Keys []string }
			out := seed.call("POST", "/api/databases/"+db+"/find", json.RawMessage(`{"selector":`+selector+`,"limit":100}`), http.StatusOK)
			if err := json.Unmarshal(out, &a); err != nil {
				t.Fatal(err)
			}
			return a.Keys
		}
		for _, size := range []func(*testing.T) *uiTab{desk, phone} {
			tb := size(t)
			tb.login(testAdminKey)
			if tb.width <= 800 {
				tb.openMenu()
			}
			tb.openDB(db)
			tb.choose("db-page-size", "10")
			tb.waitFor("a page of 10 keys", `document.querySelectorAll("#db-keys button[data-key]").length === 10`)
			tb.click("#db-find summary")
			tb.typeInto("db-find-field", "role")
			tb.typeInto("db-find-value", "assistant")
			var sel string
			tb.eval(`document.getElementById("db-find-selector").value`, &sel)
			if sel != `{"role":"assistant"}` {
				t.Errorf("the builder wrote %s, want {\"role\":\"assistant\"}", sel)
			}
			tb.click("#db-find-go")
			tb.waitFor("the matches", `document.getElementById("db-keys-count").textContent.startsWith("Matches 1–6")`)
			if got, want := tb.listedKeys(), serverFind(`{"role":"assistant"}`); !slices.Equal(got, want) || len(want) != 6 {
				t.Errorf("found by role = %v, want the server's %v", got, want)
			}
			// A selector typed as JSON, over two pages.
			tb.setEditor("db-find-selector", `{"n": {"$gte": 1}}`)
			tb.click("#db-find-go")
			tb.waitFor("page 1 of the matches", `document.getElementById("db-keys-count").textContent === "Matches 1–10, more on the next page"`)
			page1 := tb.listedKeys()
			tb.click("#db-keys-next")
			tb.waitFor("page 2 of the matches", `document.getElementById("db-keys-count").textContent.startsWith("Matches 11–11")`)
			if got, want := append(page1, tb.listedKeys()...), serverFind(`{"n": {"$gte": 1}}`); !slices.Equal(got, want) || len(want) != 11 {
				t.Errorf("found n >= 1 over two pages = %v, want the server's %v", got, want)
			}
			tb.click("#db-keys-prev")
			tb.waitFor("page 1 again", `document.getElementById("db-keys-count").textContent === "Matches 1–10, more on the next page"`)
			// A found key opens in the editor.
			tb.openEntity(page1[0])
			// Mistakes: not JSON is said before asking; the server's
			// sentence for an unknown operator is shown.
			tb.setEditor("db-find-selector", `{"n": `)
			tb.click("#db-find-go")
			tb.waitFor("the JSON mistake", `document.getElementById("db-list-message").textContent.startsWith("The selector is not JSON")`)
			tb.setEditor("db-find-selector", `{"n": {"$bogus": 1}}`)
			tb.click("#db-find-go")
			tb.waitFor("the server's sentence", `document.getElementById("db-list-message").textContent.includes("$bogus")`)
			tb.click("#db-find-clear")
			tb.waitFor("the key list back", `document.getElementById("db-keys-count").textContent === "Keys 1–10 of 12"`)
			tb.shots("find", "#db-detail")
		}
	})

	t.Run("StaySignedIn", func(t *testing.T) {
		_, secret := uiSeed{t, n.base}.consoleKey("ui25-device", []string{"read"})
		one := desk(t)
		one.login(secret)
		var st struct{ Session, Device string }
		storage := func(tb *uiTab) {
			t.Helper()
			tb.eval(`({Session: sessionStorage.getItem("deltadb.session") || "", Device: localStorage.getItem("deltadb.session") || ""})`, &st)
		}
		storage(one)
		if st.Session == "" || st.Device != "" {
			t.Errorf("a login without Stay signed in keeps %+v, want the tab only", st)
		}
		other := phone(t)
		other.do("open UI", chromedp.Navigate(n.base+"/"))
		other.waitFor("the login page in another tab", `!document.getElementById("login-view").hidden`)

		// Stay signed in: on the device, with the server's expiry.
		one.click("#logout")
		one.waitFor("logged out", `!document.getElementById("login-view").hidden`)
		one.typeInto("login-key", secret)
		one.click("#login-remember")
		one.click("#login-submit")
		one.waitFor("the dashboard", `!document.getElementById("app-view").hidden && document.getElementById("page-title")?.textContent === "Dashboard"`)
		storage(one)
		var dev struct {
			Token     string    `json:"token"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal([]byte(st.Device), &dev); err != nil || st.Session != "" || !strings.HasPrefix(dev.Token, "ds_") ||
			time.Until(dev.ExpiresAt) < 23*time.Hour || strings.Contains(st.Device, secret) {
			t.Fatalf("Stay signed in keeps %+v (%v), want a session token with its expiry on the device, never the key", st, err)
		}
		other.do("open UI again", chromedp.Navigate(n.base+"/#/databases"))
		other.waitFor("signed in in another tab", `!document.getElementById("app-view").hidden && document.getElementById("page-title")?.textContent === "Databases"`)
		other.shots("remembered", "")
		// Log out in the other tab: the server ends the session, this tab follows.
		other.click("#logout")
		other.waitFor("logged out", `!document.getElementById("login-view").hidden && !localStorage.getItem("deltadb.session")`)
		if code, _, _ := httpCall(t, "GET", n.base+"/api/me", dev.Token, nil); code != http.StatusUnauthorized {
			t.Errorf("the remembered session after Log out = %d, want 401", code)
		}
		one.waitText("login-notice", "You logged out on this device in another tab.")

		// An expired session kept on the device is dropped.
		one.eval(`localStorage.setItem("deltadb.session", JSON.stringify({token: "ds_old", expires_at: "2020-01-01T00:00:00Z"})); 1`, nil)
		one.do("reload", chromedp.Navigate(n.base+"/#/dashboard"))
		one.waitFor("the login page", `!document.getElementById("login-view").hidden && !localStorage.getItem("deltadb.session")`)
	})
}

// seedKey returns key id as GET /api/keys lists it.
func seedKey(t *testing.T, seed uiSeed, id string) keyAnswer {
	t.Helper()
	return keyIn(t, seed.call("GET", "/api/keys", nil, http.StatusOK), id)
}

// TestUIOIDCSignIn: "Sign in with <provider>" goes through the real
// provider (.ci/oidc, its development login and consent pages) with the
// authorization code flow and PKCE; the access token the UI then holds is
// what the server accepts for that account, at the laptop and the phone
// size, per tab or on the device; a forged redirect is refused.
func TestUIOIDCSignIn(t *testing.T) {
	prov := startOIDCProvider(t)
	browser := newBrowser(t)
	n, _ := startDefault(t, "-oidc-issuer="+prov.issuer, "-oidc-audience=https://deltadb.test", "-oidc-ui-client-id=deltadb-ui",
		"-oidc-ui-scope=openid deltadb", "-oidc-ui-name=Test IdP", "-oidc-databases-claim=deltadb.databases")
	req, err := http.NewRequest("POST", prov.issuer+"/test/ui-client", strings.NewReader(`{"redirect_uri":"`+n.base+`/"}`))
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		RedirectURI string `json:"redirect_uri"`
	}
	prov.post(t, req, &set)

	signIn := func(tb *uiTab, account string, remember bool) {
		t.Helper()
		// A sign-in of another account: no provider session from the last one.
		if _, err := chromedp.Call(tb.ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatalf("clear cookies: %v", err)
		}
		tb.do("open UI", chromedp.Navigate(n.base+"/#/databases"))
		tb.waitText("login-oidc-button", "Sign in with Test IdP")
		if remember {
			tb.click("#login-remember")
		}
		tb.click("#login-oidc-button")
		tb.waitFor("the provider's login page", `location.href.startsWith(`+fmt.Sprintf("%q", prov.issuer)+`) && document.querySelector('input[name="login"]')`)
		tb.screenshot(tb.ctx, fmt.Sprintf("provider-login-%dx%d.png", tb.width, tb.height), chromedp.CaptureScreenshot())
		tb.do("sign in at the provider", chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), account),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"))
		tb.do("submit", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
		tb.waitFor("the consent page", `document.querySelector('input[name="prompt"][value="consent"]')`)
		tb.do("consent", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
		tb.waitFor("back, signed in, on the page asked for", `location.origin === `+fmt.Sprintf("%q", n.base)+` && location.search === "" &&
			!document.getElementById("app-view").hidden && document.getElementById("page-title")?.textContent === "Databases"`)
	}
	token := func(tb *uiTab, remember bool) string {
		t.Helper()
		var v struct {
			Token, Kind string
			ExpiresAt   time.Time `json:"expires_at"`
		}
		where := "sessionStorage"
		if remember {
			where = "localStorage"
		}
		var raw string
		tb.eval(where+`.getItem("deltadb.session") || ""`, &raw)
		if err := json.Unmarshal([]byte(raw), &v); err != nil || !looksLikeJWT(v.Token) || v.Kind != "oidc" || time.Until(v.ExpiresAt) <= 0 {
			t.Fatalf("%s holds %q (%v), want the provider's access token with its expiry", where, raw, err)
		}
		return v.Token
	}
	me := func(tok string) (m struct {
		ClientID    string   `json:"client_id"`
		Subject     string   `json:"subject"`
		Permissions []string `json:"permissions"`
		Databases   []string `json:"databases"`
	}) {
		t.Helper()
		code, body, _ := httpCall(t, "GET", n.base+"/api/me", tok, nil)
		if code != 200 || json.Unmarshal(body, &m) != nil {
			t.Fatalf("GET /api/me with the UI's token = %d %s", code, body)
		}
		return m
	}

	tab := func(t *testing.T, size [2]int64) *uiTab {
		tb := openTab(t, browser, n.base, size[0], size[1])
		// The provider's development pages load a web font from the
		// internet, which these machines do not reach.
		tb.foreign = []string{prov.issuer, "https://fonts.googleapis.com", "https://fonts.gstatic.com"}
		return tb
	}

	for _, tc := range []struct {
		name, account string
		size          [2]int64
		remember      bool
		// me is what GET /api/me says of the UI's token: permissions and
		// databases.
		me, nav string
	}{
		{"AdminPerTab", "ui-admin", deskView, false, "[admin] []", "[dashboard databases entities workers schemas keys jobs explorer]"},
		{"ScopedOnDevice", "ui-team", phoneView, true, "[read write] [team-*]", "[dashboard databases entities schemas explorer]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := tab(t, tc.size)
			signIn(tb, tc.account, tc.remember)
			m := me(token(tb, tc.remember))
			if m.Subject != tc.account || fmt.Sprint(m.Permissions, " ", m.Databases) != tc.me {
				t.Errorf("the UI's token is %+v, want %s with %s", m, tc.account, tc.me)
			}
			if who := tb.text("whoami"); tb.width > 800 && !strings.Contains(who, tc.account) {
				t.Errorf("top bar = %q, want %s", who, tc.account)
			}
			if got := fmt.Sprint(tb.navShown()); got != tc.nav {
				t.Errorf("menu of %s shows %s, want %s", tc.account, got, tc.nav)
			}
			tb.shots("signed-in", "")
			tb.click("#logout")
			tb.waitFor("logged out", `!document.getElementById("login-view").hidden && !sessionStorage.getItem("deltadb.session") && !localStorage.getItem("deltadb.session")`)
		})
	}

	t.Run("ForgedRedirect", func(t *testing.T) {
		tb := tab(t, deskView)
		tb.do("a redirect nobody started", chromedp.Navigate(n.base+"/?code=stolen&state=forged"))
		tb.waitText("login-error", "does not belong to a sign-in started in this tab")
		var stored int
		tb.eval(`sessionStorage.length + (localStorage.getItem("deltadb.session") ? 1 : 0)`, &stored)
		if stored != 0 {
			t.Errorf("a forged redirect left %d credentials", stored)
		}
		code, body, _ := httpCall(t, "POST", n.base+"/api/login/oidc", "", map[string]string{"code": "stolen",
			"code_verifier": testVerifier, "redirect_uri": n.base + "/"})
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "the provider refused the code (invalid_grant)") {
			t.Errorf("a made-up code = %d %s, want 401 from the provider's refusal", code, body)
		}
	})
}
