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
}
