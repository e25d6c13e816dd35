package main

// Browser tests of the console of issue 25: the dashboard's last hour and
// the pages each principal sees, the key management, the editor, the
// three-way merge and the login choices. Like ui_test.go: the real binary,
// Debian's Chromium through chromedp, a flow per tab at the laptop
// (1366x900) and the phone (390x844) sizes, failing on any console error,
// and every flow checks what the server holds afterwards.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestUIConsole runs the flows of issue 25 in one Chromium against one
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
			tb.choose("dash-window", "5m")
			tb.waitFor("the 5 minute window drawn", `document.querySelector('#dash-chart-rps path').dataset.points >= 1`)
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
}

// seedKey returns key id as GET /api/keys lists it.
func seedKey(t *testing.T, seed uiSeed, id string) keyAnswer {
	t.Helper()
	var keys []keyAnswer
	if err := json.Unmarshal(seed.call("GET", "/api/keys", nil, http.StatusOK), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("GET /api/keys lists no %s", id)
	return keyAnswer{}
}
