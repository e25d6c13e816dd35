package main

// Browser tests of the web UI's races between what the user does and
// answers that come late: a page or dialog that keeps what it read when
// it opened while what it depends on is still on its way, and two loads
// of one view whose older answer is drawn last. Each flow holds the
// request that makes the window (hold, release) so the late answer surely
// comes after the user's newer action, then checks that the action won.
// Like ui_test.go: the real binary and Debian's Chromium.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// hold makes the answers to the page's requests that match (a JavaScript
// expression of p, the path, and m, the method) wait until release(name);
// the requests are sent at once, as a slow answer's are. The requests
// asked meanwhile are counted (held), and so are the answers the page has
// acted on since the release (answered): a task queued once an answer's
// body is read runs after the page's code that awaited it.
func (tb *uiTab) hold(name, match string) {
	tb.t.Helper()
	tb.eval(holdScript(name, match), nil)
}

// holdFromStart is hold for the documents the tab loads from now on,
// installed before their own scripts run (a request the page sends as it
// starts, such as the first /api/me).
func (tb *uiTab) holdFromStart(name, match string) {
	tb.t.Helper()
	tb.do("hold "+name+" from the start", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: holdScript(name, match)})
		return err
	}))
}

// holdScript is the JavaScript of hold.
func holdScript(name, match string) string {
	return fmt.Sprintf(`(() => {
		if (!window.__holds) {
			window.__holds = {};
			const real = window.fetch;
			window.fetch = (path, init) => {
				const p = String(path), m = (init && init.method) || "GET";
				const h = Object.values(window.__holds).find((h) => h.match(p, m));
				if (!h) return real(path, init);
				h.asked++;
				const answer = real(path, init);
				return h.gate.then(() => answer).then((resp) => {
					const text = resp.text.bind(resp);
					resp.text = () => text().then((v) => (setTimeout(() => h.answered++, 0), v));
					return resp;
				});
			};
		}
		let release;
		const gate = new Promise((r) => { release = r; });
		window.__holds[%q] = { match: (p, m) => (%s), gate, release, asked: 0, answered: 0 };
		return true;
	})()`, name, match)
}

// held waits until the page has asked n requests held by name.
func (tb *uiTab) held(name string, n int) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%d requests held by %s", n, name), fmt.Sprintf(`window.__holds[%q].asked >= %d`, name, n))
}

// release lets the requests held by name go, and those asked later, and
// waits until the page has acted on the answers of all asked so far.
func (tb *uiTab) release(name string) {
	tb.t.Helper()
	var n int
	tb.eval(fmt.Sprintf(`(h => (h.release(), h.asked))(window.__holds[%q])`, name), &n)
	tb.waitFor(fmt.Sprintf("the %d answers held by %s acted on", n, name), fmt.Sprintf(`window.__holds[%q].answered >= %d`, name, n))
}

// addressWins goes to the Workers page while the /api/me held as "me"
// (after, what it answers) is on its way, lets it come, and checks that
// the page the address names is the one shown.
func addressWins(t *testing.T, tb *uiTab, after string) {
	t.Helper()
	tb.held("me", 1)
	tb.eval(`location.hash = "#/workers"; 1`, nil)
	tb.waitFor("the Workers page", `document.getElementById("page-title")?.textContent === "Workers"`)
	tb.release("me")
	var got struct{ Title, Hash string }
	tb.eval(`({title: document.getElementById("page-title")?.textContent, hash: location.hash})`, &got)
	if got.Title != "Workers" || got.Hash != "#/workers" {
		t.Errorf("after %s came: page %q at %q; want Workers, the address", after, got.Title, got.Hash)
	}
}

// TestUIRaces runs the flows in one Chromium against one server.
func TestUIRaces(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	desk := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, deskView[0], deskView[1]) }
	// entitiesDesk writes docs to db, then opens a desk tab signed in as
	// the admin on the Entities page with db chosen.
	entitiesDesk := func(t *testing.T, db string, docs map[string]any) *uiTab {
		uiSeed{t, n.base}.call("PUT", "/entity/"+db, docs, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.entitiesOf(db)
		return tb
	}
	// databasesDesk writes entity k ({"v": 1}) to each of dbs, then
	// opens a desk tab signed in as the admin on the Databases page with
	// dbs[0] open.
	databasesDesk := func(t *testing.T, dbs ...string) *uiTab {
		seed := uiSeed{t, n.base}
		for _, db := range dbs {
			seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"v": 1}}, http.StatusOK)
		}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(dbs[0])
		return tb
	}

	// ReopenYieldsToClick: the Databases page reopens the database last
	// open once every card has its details; a card clicked before then is
	// the user's choice, and the reopen used to replace it.
	t.Run("ReopenYieldsToClick", func(t *testing.T) {
		tb := databasesDesk(t, "uir1a", "uir1b")
		tb.goTo("dashboard", "Dashboard")
		// Each card's details (GET /api/databases/{db}) wait.
		tb.hold("details", `/^\/api\/databases\/[^\/?]+$/.test(p) && m === "GET"`)
		tb.goTo("databases", "Databases")
		tb.held("details", 2)
		tb.click(`#db-cards button[data-db="uir1b"]`)
		tb.waitFor("uir1b open", `document.getElementById("db-detail-title")?.textContent === "uir1b"`)
		tb.release("details")
		tb.waitFor("the cards with their counts", `[...document.querySelectorAll("#db-cards button[data-db]")].every(b => b.dataset.entities)`)
		var got struct {
			Title, Hash string
		}
		tb.eval(`({title: document.getElementById("db-detail-title")?.textContent, hash: location.hash})`, &got)
		if got.Title != "uir1b" || !strings.Contains(got.Hash, "db=uir1b") {
			t.Errorf("after the cards' details came: %q open, hash %q; want uir1b, the card clicked", got.Title, got.Hash)
		}
	})

	// SearchLate: a prefix search answered after a newer search is not
	// drawn: the list shows what the prefix box asked last.
	t.Run("SearchLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir2"
		for _, k := range []string{"a_1", "a_2", "b_1", "b_2"} {
			seed.call("PUT", "/entity/"+db, map[string]any{k: map[string]any{"k": k}}, http.StatusOK)
		}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.waitFor("four keys", `document.querySelectorAll("#db-keys button[data-key]").length === 4`)
		tb.hold("prefix a_", fmt.Sprintf(`p.startsWith("/api/databases/%s/keys?") && p.includes("prefix=a_")`, db))
		tb.typeInto("db-prefix", "a_")
		tb.click("#db-prefix-go")
		tb.held("prefix a_", 1)
		tb.typeInto("db-prefix", "b_")
		tb.redrawn("the list of b_", "#db-keys li", func() { tb.click("#db-prefix-go") })
		tb.waitText("db-keys-count", `Keys starting with "b_": 1–2 of 2`)
		tb.release("prefix a_")
		if got := tb.listedKeys(); !slices.Equal(got, []string{"b_1", "b_2"}) {
			t.Errorf("after the older search's answer: %q listed, want b_1 b_2", got)
		}
		if got := tb.text("db-keys-count"); !strings.Contains(got, `"b_"`) {
			t.Errorf("count %q, want the b_ search's", got)
		}
	})

	// RestoreAfterSwitch: Restore writes the version back over the entity
	// it is a version of, conditional on the version shown when it was
	// pressed. It read the key and ETag once the version's document came:
	// another entity opened meanwhile was overwritten with it.
	t.Run("RestoreAfterSwitch", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir3"
		seed.call("PUT", "/api/databases/"+db, map[string]any{"max_versions": 5}, http.StatusOK)
		seed.call("PUT", "/entity/"+db, map[string]any{"k1": map[string]any{"title": "first"}}, http.StatusOK)
		seed.call("PUT", "/entity/"+db, map[string]any{"k1": map[string]any{"title": "second"}}, http.StatusOK)
		seed.call("PUT", "/entity/"+db, map[string]any{"k2": map[string]any{"title": "other"}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("k1")
		tb.waitFor("two versions of k1", `document.querySelectorAll("#versions-list li").length === 2 && !document.getElementById("versions").hidden`)
		tb.hold("version", fmt.Sprintf(`p.startsWith("/entity/%s?key=k1&version=1")`, db))
		tb.click(`[data-testid="version-restore-1"]`)
		tb.held("version", 1)
		tb.openEntity("k2")
		tb.waitFor("the versions of k2", `document.querySelectorAll("#versions-list li").length === 1`)
		tb.release("version")
		tb.waitText("versions-message", "Restored version 1")
		if got := seed.entity(db, "k2"); !jsonEqual(got, []byte(`{"title":"other"}`)) {
			t.Errorf("k2 holds %s after a Restore of k1's version 1, want its own document", got)
		}
		if got := seed.entity(db, "k1"); !jsonEqual(got, []byte(`{"title":"first"}`)) {
			t.Errorf("k1 holds %s after the Restore of its version 1, want that version's document", got)
		}
		var title string
		tb.eval(`document.getElementById("entity-title").textContent`, &title)
		if !strings.HasSuffix(title, " / k2") {
			t.Errorf("editor title %q after the Restore, want k2, the entity the user opened last", title)
		}
	})

	// DeleteAfterSwitch: Delete reads whether the database keeps versions
	// before it asks; an entity opened meanwhile stays open, and the
	// delete is of the entity (and version) shown when it was pressed. It
	// sent the ETag of the entity open at the answer, failed on it with a
	// 412, and opened the deleted one again over the user's.
	t.Run("DeleteAfterSwitch", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir4"
		seed.call("PUT", "/entity/"+db, map[string]any{"k1": map[string]any{"title": "one"}}, http.StatusOK)
		seed.call("PUT", "/entity/"+db, map[string]any{"k2": map[string]any{"title": "two"}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("k1")
		tb.hold("note", fmt.Sprintf(`p === "/api/databases/%s" && m === "GET"`, db))
		tb.click("#entity-delete")
		tb.held("note", 1)
		tb.openEntity("k2")
		tb.release("note")
		tb.waitFor("the delete of k1 answered", `/Deleted k1\.|Not deleted: k1/.test(document.getElementById("entity-message").textContent)`)
		if got := tb.text("entity-message"); got != "Deleted k1." {
			t.Errorf("#entity-message = %q, want Deleted k1.", got)
		}
		if got := seed.entity(db, "k1"); got != nil {
			t.Errorf("k1 holds %s after its Delete was confirmed", got)
		}
		if got := seed.entity(db, "k2"); !jsonEqual(got, []byte(`{"title":"two"}`)) {
			t.Errorf("k2 holds %s, want its document", got)
		}
		var ed struct {
			Title, Value string
		}
		tb.eval(`({title: document.getElementById("entity-title").textContent, value: document.getElementById("entity-editor").value})`, &ed)
		if !strings.HasSuffix(ed.Title, " / k2") || !strings.Contains(ed.Value, `"two"`) {
			t.Errorf("editor %q holds %q after the delete of k1, want k2 as the user opened it", ed.Title, ed.Value)
		}
		if d := tb.dialogSeen(); len(d) != 1 || !strings.Contains(d[0], `Delete entity "k1"`) {
			t.Errorf("confirmations = %q, want the one of deleting k1", d)
		}
		tb.waitFor("k1 gone from the list", `!document.querySelector('#db-keys button[data-key="k1"]')`)
	})

	// EntitiesGetLate: on the Entities page, a Get answered after a newer
	// Get of another key is not put in the editor: it put the older
	// key's document under the key typed since, for a Put to write there.
	t.Run("EntitiesGetLate", func(t *testing.T) {
		const db = "uir6"
		tb := entitiesDesk(t, db, map[string]any{"a": map[string]any{"v": "A"}, "b": map[string]any{"v": "B"}})
		tb.hold("get a", fmt.Sprintf(`p === "/entity/%s?key=a"`, db))
		tb.typeInto("ent-key", "a")
		tb.click("#ent-get")
		tb.held("get a", 1)
		tb.typeInto("ent-key", "b")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / b")
		tb.release("get a")
		var got struct{ Doc, Msg, Key string }
		tb.eval(`({doc: document.getElementById("ent-doc").value, msg: document.getElementById("ent-message").textContent, key: document.getElementById("ent-key").value})`, &got)
		if !strings.Contains(got.Doc, `"B"`) || !strings.Contains(got.Msg, db+" / b") || got.Key != "b" {
			t.Errorf("after the older Get's answer: key %q, document %q, message %q; want b's", got.Key, got.Doc, got.Msg)
		}
	})

	// SchemaLoadLate: a schema whose load is answered after the user chose
	// another is not put in the editor.
	t.Run("SchemaLoadLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		for _, id := range []string{"uir7a", "uir7b"} {
			seed.call("PUT", "/schema/"+id, map[string]any{"type": "object", "title": "title of " + id}, 0)
		}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("schemas", "Schemas")
		tb.waitFor("the schemas listed", `document.querySelector('[data-testid="schema-item"][data-schema="uir7b"]')`)
		tb.hold("load a", `p === "/schema/uir7a"`)
		tb.click(`[data-testid="schema-item"][data-schema="uir7a"]`)
		tb.held("load a", 1)
		tb.click(`[data-testid="schema-item"][data-schema="uir7b"]`)
		tb.waitText("schema-message", "Loaded uir7b.")
		tb.release("load a")
		var got struct{ ID, Text, Msg string }
		tb.eval(`({id: document.getElementById("schema-id").value, text: document.getElementById("schema-text").value, msg: document.getElementById("schema-message").textContent})`, &got)
		if got.ID != "uir7b" || !strings.Contains(got.Text, "title of uir7b") || got.Msg != "Loaded uir7b." {
			t.Errorf("after the older load's answer: ID %q, message %q, text %q; want uir7b's", got.ID, got.Msg, got.Text)
		}
	})

	// DashboardWindowLate: the dashboard's refresh of the window shown
	// before another was chosen is not drawn when it answers last.
	t.Run("DashboardWindowLate", func(t *testing.T) {
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("explorer", "Explorer")
		tb.hold("15m", `p === "/admin/stats?window=15m"`)
		tb.goTo("dashboard", "Dashboard")
		tb.held("15m", 1)
		tb.choose("dash-window", "5m")
		spans := `[...document.querySelectorAll("#dash-history svg")].map(c => c.dataset.span)`
		tb.waitFor("the 5 minute window drawn", spans+`.every(s => s === "300")`)
		tb.release("15m")
		var got []string
		tb.eval(spans, &got)
		if len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != "300" }) {
			t.Errorf("charts' spans %q after the 15 minute refresh answered, want 300 s each (the 5 minutes chosen)", got)
		}
	})

	// ExplorerLate: an Explorer request answered after a newer one is not
	// shown over the newer one's answer.
	t.Run("ExplorerLate", func(t *testing.T) {
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("explorer", "Explorer")
		tb.hold("workers", `p === "/admin/workers"`)
		tb.click(`[data-testid="ex-quick"][data-path="/admin/workers"]`)
		tb.held("workers", 1)
		tb.click(`[data-testid="ex-quick"][data-path="/api/me"]`)
		tb.waitText("ex-response", "client_id")
		tb.release("workers")
		var got struct{ Path, Response string }
		tb.eval(`({path: document.getElementById("ex-path").value, response: document.getElementById("ex-response").textContent})`, &got)
		if got.Path != "/api/me" || !strings.Contains(got.Response, "client_id") || strings.Contains(got.Response, "worker_id") {
			t.Errorf("after the older request's answer: path %q, response %q; want /api/me's", got.Path, got.Response)
		}
	})

	// askedOrLeft follows the link to page name and tells whether the page
	// shown asked first about unsaved changes (they are then discarded) or
	// left at once.
	askedOrLeft := func(tb *uiTab, name, title string) bool {
		t.Helper()
		tb.click("#nav-" + name)
		tb.waitFor("the question or "+title, fmt.Sprintf(`document.getElementById("ask-dialog")?.open || document.getElementById("page-title")?.textContent === %q`, title))
		var asked bool
		tb.eval(`!!document.getElementById("ask-dialog")?.open`, &asked)
		if asked {
			tb.click("#ask-ok")
		}
		tb.waitFor("page "+title, fmt.Sprintf(`!document.getElementById("ask-dialog") && document.getElementById("page-title")?.textContent === %q`, title))
		return asked
	}

	// EditDuringSave: what is typed while a save is on its way stays in
	// the editor, unsaved; the save's answer replaced it with the text
	// saved (the entity editor) or marked it saved (the Entities and
	// Schemas pages), so that leaving did not ask.
	t.Run("EditDuringSave", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir8"
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"n": 1}}, http.StatusOK)
		seed.call("PUT", "/schema/uir8s", map[string]any{"type": "object", "title": "first"}, 0)
		tb := desk(t)
		tb.login(testAdminKey)
		// saveWhileTyping types saved, saves with the button save, types
		// typed while the PUT to path is held, and lets the answer come
		// (its sentence: saved).
		saveWhileTyping := func(editor, save, path, msgID, saved, typed, answered string) {
			t.Helper()
			tb.setEditor(editor, saved)
			tb.hold("put "+path, fmt.Sprintf(`p.startsWith(%q) && m === "PUT"`, path))
			tb.click(save)
			tb.held("put "+path, 1)
			tb.setEditor(editor, typed)
			tb.release("put " + path)
			tb.waitText(msgID, answered)
			var value string
			tb.eval(fmt.Sprintf(`document.getElementById(%q).value`, editor), &value)
			if value != typed {
				t.Errorf("%s holds %q after the save's answer, want %q, typed while it was on its way", editor, value, typed)
			}
		}

		tb.openDB(db)
		tb.openEntity("k")
		saveWhileTyping("entity-editor", "#entity-save", "/entity/"+db, "entity-message", `{"n": 2}`, `{"n": 3}`, "Saved.")
		if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"n":2}`)) {
			t.Errorf("the server holds %s, want the document saved", got)
		}
		if !askedOrLeft(tb, "workers", "Workers") {
			t.Error("the Databases page left without asking about the edit typed during the save")
		}

		tb.entitiesOf(db)
		tb.typeInto("ent-key", "k")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / k")
		saveWhileTyping("ent-doc", "#ent-put", "/entity/"+db, "ent-message", `{"n": 4}`, `{"n": 5}`, "Saved "+db+" / k.")
		if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"n":4}`)) {
			t.Errorf("the server holds %s, want the document put", got)
		}
		if !askedOrLeft(tb, "workers", "Workers") {
			t.Error("the Entities page left without asking about the edit typed during the Put")
		}

		tb.goTo("schemas", "Schemas")
		tb.waitFor("the schemas listed", `document.querySelector('[data-testid="schema-item"][data-schema="uir8s"]')`)
		tb.click(`[data-testid="schema-item"][data-schema="uir8s"]`)
		tb.waitText("schema-message", "Loaded uir8s.")
		saveWhileTyping("schema-text", "#schema-save", "/schema/uir8s", "schema-message",
			`{"type": "object", "title": "second"}`, `{"type": "object", "title": "third"}`, "Saved uir8s.")
		if !askedOrLeft(tb, "workers", "Workers") {
			t.Error("the Schemas page left without asking about the edit typed during the save")
		}
	})

	// PlaceKeyYields: the entity of the place the Databases page reopens
	// is opened once the list is read, unless the user opened one first:
	// it opened the place's key again over it (asking to discard the
	// user's edits of it).
	t.Run("PlaceKeyYields", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir12"
		seed.call("PUT", "/entity/"+db, map[string]any{"k1": map[string]any{"v": 1}, "k2": map[string]any{"v": 2}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("k1")
		tb.goTo("dashboard", "Dashboard")
		tb.hold("list", fmt.Sprintf(`p.startsWith("/api/databases/%s/keys?")`, db))
		tb.goTo("databases", "Databases")
		tb.held("list", 1)
		tb.typeInto("db-key-input", "k2")
		tb.click("#db-key-open")
		tb.waitFor("k2 open", `(e => !e.disabled && e.value.includes("2") && document.getElementById("entity-title").textContent.endsWith(" / k2"))(document.getElementById("entity-editor"))`)
		tb.setEditor("entity-editor", `{"v": 20}`)
		tb.release("list")
		var got struct {
			Asked        bool
			Title, Value string
		}
		tb.eval(`({asked: !!document.getElementById("ask-dialog")?.open, title: document.getElementById("entity-title").textContent, value: document.getElementById("entity-editor").value})`, &got)
		if got.Asked || !strings.HasSuffix(got.Title, " / k2") || got.Value != `{"v": 20}` {
			t.Errorf("after the list came: asked to discard %v, editor %q holds %q; want k2 as edited, no question", got.Asked, got.Title, got.Value)
		}
	})

	// CountLate: a database's count read before a later change and
	// answered after the read that followed it is not drawn.
	t.Run("CountLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir11"
		seed.call("PUT", "/entity/"+db, map[string]any{"k1": map[string]any{"v": 1}, "k2": map[string]any{"v": 2}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.typeInto("db-key-input", "k3")
		tb.click("#db-key-open")
		tb.waitText("entity-message", "No such entity yet")
		tb.setEditor("entity-editor", `{"v": 3}`)
		// The first read of the database after the create (its count: 3)
		// is answered last.
		tb.hold("count", fmt.Sprintf(`p === "/api/databases/%s" && m === "GET" && (window.__counts = (window.__counts || 0) + 1) === 1`, db))
		tb.click("#entity-save")
		tb.waitText("entity-message", "Created.")
		tb.held("count", 1)
		tb.click("#entity-delete")
		tb.waitText("entity-message", "Deleted k3.")
		card := fmt.Sprintf(`document.querySelector('#db-cards button[data-db=%q]')`, db)
		tb.waitFor("the count after the delete", card+`.dataset.entities === "2" && document.getElementById("db-info").textContent.startsWith("2 entities")`)
		tb.release("count")
		var got struct{ Card, Info string }
		tb.eval(`({card: `+card+`.dataset.entities, info: document.getElementById("db-info").textContent})`, &got)
		if got.Card != "2" || !strings.HasPrefix(got.Info, "2 entities") {
			t.Errorf("after the older count came: card %q, detail %q; want 2 entities", got.Card, got.Info)
		}
	})

	// listRedrawn runs reload, which makes the page load a list again
	// while an older load of it is held by name, waits until the newer
	// list is drawn (want: a JavaScript condition), lets the older answer
	// come and fails when it was drawn: want no longer holds, or the rows
	// the newer load drew (the CSS selector rows; "" for a list that
	// refreshes itself) were replaced.
	listRedrawn := func(tb *uiTab, name, rows, want string, reload func()) {
		tb.t.Helper()
		tb.held(name, 1)
		reload()
		tb.waitFor("the newer list", want)
		if rows == "" {
			rows = "#none"
		}
		tb.eval(fmt.Sprintf(`(l => { for (const e of l) e.dataset.newer = "1"; return l.length })(document.querySelectorAll(%q))`, rows), nil)
		tb.release(name)
		var got struct {
			Want     bool
			Replaced int
		}
		tb.eval(fmt.Sprintf(`({want: !!(%s), replaced: [...document.querySelectorAll(%q)].filter(e => !e.dataset.newer).length})`, want, rows), &got)
		if !got.Want || got.Replaced > 0 {
			tb.t.Errorf("after the older load's answer: the newer list shown %v, %d rows drawn anew (%s); want the newer list as it was", got.Want, got.Replaced, rows)
		}
	}
	// firstOnly matches the first request of path and method only.
	firstOnly := func(path, method string) string {
		v := "__first" + strings.NewReplacer("/", "_", "?", "_", "=", "_").Replace(path)
		return fmt.Sprintf(`p === %q && m === %q && (window.%s = (window.%s || 0) + 1) === 1`, path, method, v, v)
	}

	// KeysListLate: the API Keys list read when the page opened, answered
	// after the list read again once a dialog closed, is not drawn: it
	// drew the list without the key created meanwhile.
	t.Run("KeysListLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.hold("keys", firstOnly("/api/keys", "GET"))
		tb.goTo("keys", "API Keys")
		seed.consoleKey("uir13-new", []string{"read"})
		listRedrawn(tb, "keys", "#keys-table tbody tr", `document.querySelector('#keys-table tr[data-key-name="uir13-new"]')`, func() {
			tb.click("#key-new")
			tb.click("#key-cancel")
		})
	})

	// WorkersListLate: the Workers table read when the page opened,
	// answered after a Refresh, is not drawn over the Refresh's (older
	// counters).
	t.Run("WorkersListLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.hold("workers", firstOnly("/admin/workers", "GET"))
		tb.goTo("workers", "Workers")
		seed.call("PUT", "/entity/uir14", map[string]any{"k": map[string]any{"v": 1}}, http.StatusOK)
		seed.entity("uir14", "k")
		var before string
		listRedrawn(tb, "workers", "#workers-table tbody tr", `document.querySelector("#workers-table tr[data-worker]")`, func() {
			tb.click("#workers-refresh")
			tb.waitFor("the refreshed table", `document.querySelector("#workers-table tr[data-worker]")`)
			before = tb.text("workers-table")
		})
		if got := tb.text("workers-table"); got != before {
			t.Errorf("the Workers table after the older load's answer:\n%s\nwant the refreshed one:\n%s", got, before)
		}
	})

	// SchemasListLate: the list of schemas read when the page opened,
	// answered after the list read again after a save, is not drawn: it
	// drew the list without the schema saved.
	t.Run("SchemasListLate", func(t *testing.T) {
		tb := desk(t)
		tb.login(testAdminKey)
		tb.hold("schemas", firstOnly("/admin/schemas", "GET"))
		tb.goTo("schemas", "Schemas")
		listRedrawn(tb, "schemas", "#schema-list li", `document.querySelector('[data-testid="schema-item"][data-schema="uir15s"]')`, func() {
			tb.typeInto("schema-id", "uir15s")
			tb.setEditor("schema-text", `{"type": "object"}`)
			tb.click("#schema-save")
			tb.waitText("schema-message", "Saved uir15s.")
		})
	})

	// JobsListLate: the Key jobs list read when the page opened, answered
	// after the one a Rekey asked, is not drawn: it drew the list without
	// the job started ("No key jobs yet.").
	t.Run("JobsListLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir16"
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"v": 1}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.hold("jobs", firstOnly("/admin/jobs", "GET"))
		tb.goTo("jobs", "Key jobs")
		listRedrawn(tb, "jobs", "", `document.querySelector("#jobs-table tr[data-job]")`, func() {
			tb.typeInto("jobs-db", db)
			tb.click("#jobs-rekey")
			tb.waitText("jobs-message", "Rekey of "+db+" started")
		})
		if got := tb.text("jobs-message"); strings.Contains(got, "No key jobs") {
			t.Errorf("#jobs-message = %q with the job listed", got)
		}
	})

	// FirstPageIsAddress: the page shown once the first /api/me answers
	// is the one the address names then: a page loaded at #/schemas whose
	// address changed to #/workers meanwhile showed Workers, then
	// Schemas over it when that first answer came last.
	t.Run("FirstPageIsAddress", func(t *testing.T) {
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("schemas", "Schemas")
		tb.holdFromStart("me", firstOnly("/api/me", "GET"))
		tb.do("reload", chromedp.Reload())
		addressWins(t, tb, "the first /api/me")
	})

	// LoginAddressWins: an address gone to while the login's /api/me is
	// on its way is the page shown, not the dashboard the login goes to.
	t.Run("LoginAddressWins", func(t *testing.T) {
		tb := desk(t)
		tb.do("open UI", chromedp.Navigate(tb.base+"/#/login"))
		tb.waitFor("login form", `!document.getElementById("login-view").hidden`)
		tb.hold("me", `p === "/api/me"`)
		tb.typeInto("login-key", testAdminKey)
		tb.click("#login-submit")
		addressWins(t, tb, "the login's /api/me")
	})

	// PutKeepsDatabase: on the Entities page, the list of databases read
	// when the page opened, answered after a Put created a database, does
	// not take it from the dropdown.
	t.Run("PutKeepsDatabase", func(t *testing.T) {
		const db = "uir17"
		tb := desk(t)
		tb.login(testAdminKey)
		tb.hold("dbs", `p === "/api/databases" && m === "GET"`)
		tb.goTo("entities", "Entities")
		tb.held("dbs", 1)
		tb.typeInto("ent-db-new", db)
		tb.typeInto("ent-key", "k")
		tb.setEditor("ent-doc", `{"v": 1}`)
		tb.click("#ent-put")
		tb.waitText("ent-message", "Saved "+db+" / k.")
		option := fmt.Sprintf(`!!document.querySelector('#ent-db option[value=%q]')`, db)
		tb.waitFor("the database put to in the dropdown", option)
		tb.release("dbs")
		var kept bool
		tb.eval(option, &kept)
		if !kept {
			t.Errorf("after the list of databases came, %s (just put to) is not in the dropdown", db)
		}
	})

	// MergeKeepsTyping: what is typed after a save met a conflict is not
	// replaced without a question by the merge panel's buttons: Reload
	// asks, Save merged merges again with it, Overwrite writes it. They
	// put the stored version, the merge of the edit saved, or the edit
	// saved in the editor over it.
	t.Run("MergeKeepsTyping", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir18"
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"t": "a", "n": 1}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("k")
		// conflict saves mine over a version changed elsewhere to theirs,
		// then types typed while the merge panel is shown. Mine is typed
		// first: an unedited document follows the change feed and would
		// reload theirs instead of meeting a 412.
		conflict := func(theirs map[string]any, mine, typed string) {
			t.Helper()
			tb.setEditor("entity-editor", mine)
			seed.call("PUT", "/entity/"+db, map[string]any{"k": theirs}, http.StatusOK)
			tb.click("#entity-save")
			tb.waitFor("the merge panel", `!document.getElementById("entity-conflict").hidden`)
			tb.setEditor("entity-editor", typed)
		}
		editor := func() string {
			var v string
			tb.eval(`document.getElementById("entity-editor").value`, &v)
			return v
		}
		conflict(map[string]any{"t": "a", "n": 2}, `{"t": "mine", "n": 1}`, `{"t": "typed", "n": 1}`)
		tb.click("#entity-conflict-reload")
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open || document.getElementById("entity-conflict").hidden`)
		var asked bool
		tb.eval(`!!document.getElementById("ask-dialog")?.open`, &asked)
		if !asked {
			t.Fatalf("Reload replaced the text typed after the conflict without asking; editor holds %q", editor())
		}
		tb.click("#ask-keep")
		tb.waitFor("the question answered", `!document.getElementById("ask-dialog")`)
		if got := editor(); got != `{"t": "typed", "n": 1}` {
			t.Errorf("editor holds %q after Keep editing, want the text typed", got)
		}
		tb.click("#entity-conflict-save")
		tb.waitFor("the merge with the text typed", `document.getElementById("entity-conflict-merged").textContent.includes('"typed"')`)
		if got := editor(); got != `{"t": "typed", "n": 1}` {
			t.Errorf("editor holds %q after Save merged met the text typed, want it kept", got)
		}
		if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"t":"a","n":2}`)) {
			t.Errorf("the server holds %s before the new merge was saved, want theirs", got)
		}
		tb.click("#entity-conflict-save")
		tb.waitText("entity-message", "Saved.")
		if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"t":"typed","n":2}`)) {
			t.Errorf("the server holds %s after Save merged, want theirs merged with the text typed", got)
		}

		conflict(map[string]any{"t": "b", "n": 3}, `{"t": "mine", "n": 2}`, `{"t": "typed again", "n": 2}`)
		tb.click("#entity-conflict-overwrite")
		tb.waitFor("the overwrite answered", `document.getElementById("entity-conflict").hidden`)
		tb.waitText("entity-message", "Saved.")
		if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"t":"typed again","n":2}`)) {
			t.Errorf("the server holds %s after Overwrite, want the text typed after the conflict", got)
		}
	})

	// MergeActsOnItsEntity: on the Entities page, the merge panel's
	// buttons act on the entity that conflicted, whatever key or database
	// the form holds when they are pressed, and put it back in the form.
	// They put to the form's entity: Overwrite and Save merged sent the
	// conflicting version's If-Match to the other key (a 412, a panel for
	// it), and Reload left the stored document under the other database
	// for Put to write there unconditionally.
	t.Run("MergeActsOnItsEntity", func(t *testing.T) {
		const db, other = "uir19", "uir19other"
		uiSeed{t, n.base}.call("PUT", "/entity/"+db, map[string]any{"b": map[string]any{"v": "B"}}, http.StatusOK)
		for _, c := range []struct {
			button, field, typed string // the button, and what is typed in which field before
			theirs               map[string]any
			mine, said, wantA    string // what the page says, and then holds for a
		}{
			{"overwrite", "ent-key", "b", map[string]any{"v": 2}, `{"v": 1, "by": "me"}`,
				"Saved " + db + " / a.", `{"v":1,"by":"me"}`},
			{"save", "ent-key", "b", map[string]any{"v": 1, "t": "theirs"}, `{"v": 2}`,
				"Saved " + db + " / a.", `{"v":2,"t":"theirs"}`},
			{"reload", "ent-db-new", other, map[string]any{"v": 4}, `{"v": 5}`,
				"Reloaded the stored version of " + db + " / a.", `{"v":4}`},
		} {
			t.Run(c.button, func(t *testing.T) {
				seed := uiSeed{t, n.base}
				tb := desk(t)
				type form struct{ Db, New, Key, Doc string }
				// check checks what the server holds for a (wantA), b and
				// a of the other database, and that the form names a.
				check := func(after, wantA string) form {
					t.Helper()
					if got := seed.entity(db, "a"); !jsonEqual(got, []byte(wantA)) {
						t.Errorf("after %s the server holds %s for a, want %s", after, got, wantA)
					}
					if got := seed.entity(db, "b"); !jsonEqual(got, []byte(`{"v":"B"}`)) {
						t.Errorf("after %s the server holds %s for b, want it untouched", after, got)
					}
					if got := seed.entity(other, "a"); got != nil {
						t.Errorf("after %s the server holds %s for %s / a, want none", after, got, other)
					}
					var f form
					tb.eval(`(id => ({db: id("ent-db").value, new: id("ent-db-new").value, key: id("ent-key").value,
						doc: id("ent-doc").value}))(document.getElementById.bind(document))`, &f)
					if f.Db != db || f.New != "" || f.Key != "a" {
						t.Errorf("after %s the form names %+v, want %s / a, the entity acted on", after, f, db)
					}
					return f
				}
				// answer does what act does on the page and returns the
				// page's message once it has answered.
				answer := func(what string, act func()) string {
					t.Helper()
					tb.eval(`document.getElementById("ent-message").textContent = ""; 1`, nil)
					act()
					tb.waitFor("the answer to "+what, `document.getElementById("ent-message").textContent !== ""`)
					return tb.text("ent-message")
				}

				// a is got at {"v": 1}, changed elsewhere to theirs, and
				// mine is put over it: the merge panel.
				seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"v": 1}}, http.StatusOK)
				tb.login(testAdminKey)
				tb.entitiesOf(db)
				tb.typeInto("ent-key", "a")
				tb.click("#ent-get")
				tb.waitText("ent-message", "Loaded "+db+" / a")
				tb.setEditor("ent-doc", c.mine)
				seed.call("PUT", "/entity/"+db, map[string]any{"a": c.theirs}, http.StatusOK)
				tb.click("#ent-put")
				tb.waitFor("the merge panel", `!document.getElementById("ent-conflict").hidden`)
				tb.typeInto(c.field, c.typed)
				if got := answer(c.button, func() { tb.click("#ent-conflict-" + c.button) }); !strings.Contains(got, c.said) {
					t.Errorf("%s, %s typed in #%s since the conflict: the page says %q, want %q", c.button, c.typed, c.field, got, c.said)
				}
				f := check(c.button, c.wantA)
				if c.button != "reload" {
					return
				}
				if !jsonEqual([]byte(f.Doc), []byte(c.wantA)) {
					t.Errorf("after Reload the editor holds %q, want a's stored version %s", f.Doc, c.wantA)
				}
				// The next Put writes the entity reloaded, conditional on
				// the version read.
				tb.setEditor("ent-doc", `{"v": 6}`)
				if got := answer("Put", func() { tb.click("#ent-put") }); !strings.Contains(got, "Saved "+db+" / a.") {
					t.Errorf("a Put after Reload: the page says %q, want a saved", got)
				}
				check("Reload and Put", `{"v":6}`)
				tb.setEditor("ent-doc", `{"v": 7}`)
				seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"v": 8}}, http.StatusOK)
				if got := answer("Put", func() { tb.click("#ent-put") }); !strings.Contains(got, "Not saved: "+db+" / a changed") {
					t.Errorf("a Put over a change elsewhere of a: the page says %q, want a's merge", got)
				}
				check("a Put over a change elsewhere", `{"v":8}`)
			})
		}
	})

	// PutListsDatabaseTyped: a Put to a database typed in the New database
	// box puts it in the dropdown, also when the box was cleared while the
	// Put was on its way (it read the box after the answer).
	t.Run("PutListsDatabaseTyped", func(t *testing.T) {
		const db = "uir20"
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("entities", "Entities")
		tb.waitFor("the list of databases", `!document.querySelector('#ent-db option[value=""]')?.textContent.includes("Loading")`)
		tb.typeInto("ent-db-new", db)
		tb.typeInto("ent-key", "k")
		tb.setEditor("ent-doc", `{"v": 1}`)
		tb.hold("put", `m === "PUT"`)
		tb.click("#ent-put")
		tb.held("put", 1)
		tb.eval(`document.getElementById("ent-db-new").value = ""; 1`, nil)
		tb.release("put")
		tb.waitText("ent-message", "Saved "+db+" / k.")
		var listed bool
		tb.eval(fmt.Sprintf(`!!document.querySelector('#ent-db option[value=%q]')`, db), &listed)
		if !listed {
			t.Errorf("after the Put created %s, the box cleared meanwhile, %s is not in the dropdown", db, db)
		}
	})

	// DeleteKeepsOtherVersion: a Delete answered after a Get of another
	// entity leaves that entity's version loaded: it forgot it, and the
	// next Put of that entity went out without If-Match and wrote over a
	// change made elsewhere.
	t.Run("DeleteKeepsOtherVersion", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir21"
		tb := entitiesDesk(t, db, map[string]any{"a": map[string]any{"v": "A"}, "b": map[string]any{"v": "B"}})
		tb.typeInto("ent-key", "a")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / a")
		tb.hold("delete", `m === "DELETE"`)
		tb.click("#ent-delete")
		tb.held("delete", 1)
		tb.typeInto("ent-key", "b")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / b")
		tb.release("delete")
		tb.waitText("ent-message", "Deleted "+db+" / a.")
		seed.call("PUT", "/entity/"+db, map[string]any{"b": map[string]any{"v": "theirs"}}, http.StatusOK)
		tb.setEditor("ent-doc", `{"v": "mine"}`)
		tb.click("#ent-put")
		tb.waitFor("the Put answered", `!document.getElementById("ent-conflict").hidden || document.getElementById("ent-message").textContent.includes("Saved")`)
		if got := seed.entity(db, "b"); !jsonEqual(got, []byte(`{"v":"theirs"}`)) {
			t.Errorf("a Put of b (got before the Delete of a was answered) over a change elsewhere left %s, want the change kept (a 412)", got)
		}
	})

	// entitiesConflict gets db / k on the Entities page, puts mine over
	// theirs (stored meanwhile) and waits for the merge panel.
	entitiesConflict := func(tb *uiTab, seed uiSeed, db, k string, theirs map[string]any, mine string) {
		t.Helper()
		tb.typeInto("ent-key", k)
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / "+k)
		tb.setEditor("ent-doc", mine)
		seed.call("PUT", "/entity/"+db, map[string]any{k: theirs}, http.StatusOK)
		tb.click("#ent-put")
		tb.waitFor("the merge panel", `!document.getElementById("ent-conflict").hidden`)
	}
	// entitiesPage is what the Entities page shows: the merge panel, the
	// choice of its first conflict, the editor and the message.
	type entitiesPage struct {
		Panel       bool
		Choice, Doc string
		Msg, Merged string
	}
	entitiesNow := func(tb *uiTab) (p entitiesPage) {
		t.Helper()
		tb.eval(`(id => ({panel: !id("ent-conflict").hidden, choice: document.querySelector('input[name="ent-conflict-choice-0"]:checked')?.value || "",
			doc: id("ent-doc").value, msg: id("ent-message").textContent, merged: id("ent-conflict-merged").textContent}))(document.getElementById.bind(document))`, &p)
		return p
	}

	// GetKeepsMerge: on the Entities page, a Get pressed while the merge
	// panel is shown over unsaved edits asks first, and "Keep editing"
	// leaves the page as it was: the panel, the choices made in it and
	// the edit. It hid the panel before it asked, and the choices were
	// lost. A Put that the JSON stops keeps the panel too (it hid it when
	// pressed); a Get whose discard is confirmed closes it.
	t.Run("GetKeepsMerge", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir22"
		tb := entitiesDesk(t, db, map[string]any{"a": map[string]any{"v": 1, "t": "x"}})
		const mine = `{"v": 3, "t": "x"}`
		entitiesConflict(tb, seed, db, "a", map[string]any{"v": 2, "t": "y"}, mine)
		tb.click("#ent-conflict-choice-0-mine")
		tb.click("#ent-get")
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-keep")
		tb.waitFor("the question answered", `!document.getElementById("ask-dialog")`)
		if got := entitiesNow(tb); !got.Panel || got.Choice != "mine" || got.Doc != mine {
			t.Errorf("after Get and Keep editing: panel shown %v, choice %q, editor %q; want the panel with the choice mine, the edit %s", got.Panel, got.Choice, got.Doc, mine)
		}
		tb.setEditor("ent-doc", `{"v": 3,`)
		tb.click("#ent-put")
		tb.waitText("ent-message", "Invalid JSON")
		if got := entitiesNow(tb); !got.Panel || got.Choice != "mine" {
			t.Errorf("after a Put of invalid JSON: panel shown %v, choice %q; want the panel with the choice mine", got.Panel, got.Choice)
		}
		tb.setEditor("ent-doc", mine)
		if !entitiesNow(tb).Panel {
			t.Fatal("the merge panel is gone: nothing to save merged")
		}
		tb.click("#ent-conflict-save")
		tb.waitText("ent-message", "Saved "+db+" / a.")
		if got := seed.entity(db, "a"); !jsonEqual(got, []byte(`{"v":3,"t":"y"}`)) {
			t.Errorf("after Save merged the server holds %s, want theirs merged with mine chosen for v", got)
		}

		entitiesConflict(tb, seed, db, "a", map[string]any{"v": 5, "t": "y"}, `{"v": 4, "t": "y"}`)
		tb.click("#ent-get")
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-ok")
		tb.waitFor("the Get answered", `!document.getElementById("ask-dialog") && document.getElementById("ent-message").textContent.startsWith("Loaded")`)
		if got := entitiesNow(tb); got.Panel || !jsonEqual([]byte(got.Doc), []byte(`{"v":5,"t":"y"}`)) {
			t.Errorf("after Get and Discard: panel shown %v, editor %q; want no panel, the stored version", got.Panel, got.Doc)
		}
	})

	// PutConflictLate: on the Entities page, a Put's 412 answered after a
	// newer Get of the same entity does not open its merge panel over the
	// document got: the message says it was not saved, and the editor and
	// the next Put stay the Get's. The panel was shown over it.
	t.Run("PutConflictLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir23"
		tb := entitiesDesk(t, db, map[string]any{"a": map[string]any{"v": 1}})
		tb.typeInto("ent-key", "a")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / a")
		tb.setEditor("ent-doc", `{"v": "mine"}`)
		seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"v": "theirs"}}, http.StatusOK)
		tb.hold("put", `m === "PUT"`)
		tb.click("#ent-put")
		tb.held("put", 1)
		tb.eval(`document.getElementById("ent-message").textContent = ""; 1`, nil)
		tb.click("#ent-get")
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-ok")
		tb.waitText("ent-message", "Loaded "+db+" / a")
		tb.release("put")
		tb.waitText("ent-message", "Not saved: "+db+" / a changed")
		if got := entitiesNow(tb); got.Panel || !jsonEqual([]byte(got.Doc), []byte(`{"v":"theirs"}`)) {
			t.Errorf("after the older Put's 412: panel shown %v, editor %q; want no panel, the document got", got.Panel, got.Doc)
		}
		tb.setEditor("ent-doc", `{"v": "next"}`)
		tb.click("#ent-put")
		tb.waitText("ent-message", "Saved "+db+" / a.")
		if got := seed.entity(db, "a"); !jsonEqual(got, []byte(`{"v":"next"}`)) {
			t.Errorf("after a Put of the document got the server holds %s", got)
		}
	})

	// SaveConflictLate: on the Databases page, a save's 412 answered after
	// the entity was opened again (its edit discarded) does not open the
	// merge panel over the document read: the message says it was not
	// saved. The panel was shown over it.
	t.Run("SaveConflictLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir25"
		tb := databasesDesk(t, db)
		tb.openEntity("k")
		tb.setEditor("entity-editor", `{"v": "mine"}`)
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"v": "theirs"}}, http.StatusOK)
		tb.hold("put", `m === "PUT"`)
		tb.click("#entity-save")
		tb.held("put", 1)
		tb.click(`#db-keys button[data-key="k"]`)
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-ok")
		tb.waitFor("k read again", `(e => !e.disabled && e.value.includes("theirs"))(document.getElementById("entity-editor"))`)
		tb.release("put")
		tb.waitFor("the save's 412 answered", `document.getElementById("entity-message").textContent.startsWith("Not saved")`)
		var got struct {
			Panel    bool
			Doc, Msg string
		}
		tb.eval(`(id => ({panel: !id("entity-conflict").hidden, doc: id("entity-editor").value, msg: id("entity-message").textContent}))(document.getElementById.bind(document))`, &got)
		if got.Panel || !jsonEqual([]byte(got.Doc), []byte(`{"v":"theirs"}`)) || !strings.Contains(got.Msg, "Not saved: k changed") {
			t.Errorf("after the older save's 412: panel shown %v, editor %q, message %q; want no panel, the document read, Not saved: k changed", got.Panel, got.Doc, got.Msg)
		}
	})

	// DeleteLateKeepsEdit: on the Entities page, a Delete answered after
	// a newer Get leaves the edits of the document got unsaved: it marked
	// them saved, and a Get then replaced them without a question.
	t.Run("DeleteLateKeepsEdit", func(t *testing.T) {
		const db = "uir24"
		tb := entitiesDesk(t, db, map[string]any{"a": map[string]any{"v": "A"}, "b": map[string]any{"v": "B"}})
		tb.typeInto("ent-key", "a")
		tb.hold("delete", `m === "DELETE"`)
		tb.click("#ent-delete")
		tb.held("delete", 1)
		tb.typeInto("ent-key", "b")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded "+db+" / b")
		tb.setEditor("ent-doc", `{"v": "edited"}`)
		tb.release("delete")
		tb.waitText("ent-message", "Deleted "+db+" / a.")
		tb.click("#ent-get")
		tb.waitFor("the question or the Get answered", `document.getElementById("ask-dialog")?.open || document.getElementById("ent-message").textContent.startsWith("Loaded")`)
		var asked bool
		tb.eval(`!!document.getElementById("ask-dialog")?.open`, &asked)
		if !asked {
			t.Fatalf("a Get after the older Delete's answer replaced the edit of b without asking; editor holds %q", entitiesNow(tb).Doc)
		}
		tb.click("#ask-keep")
		tb.waitFor("the question answered", `!document.getElementById("ask-dialog")`)
		if got := entitiesNow(tb).Doc; got != `{"v": "edited"}` {
			t.Errorf("editor holds %q after Keep editing, want the edit", got)
		}
	})

	// ValidateLate: the Databases page's editor marks the paths that fail
	// the bound schema only while the entity checked is open with the
	// text checked; a check answered later only says what it found. A
	// Save's check answered after another entity was opened marked its
	// paths on that entity's lines, and a Check answered after an edit
	// marked the edited text.
	t.Run("ValidateLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db, schema = "uir26", "uir26s"
		seed.call("PUT", "/schema/"+schema, map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "number"}}}, 0)
		seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"n": 1}, "b": map[string]any{"n": 2}}, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": schema}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("a")
		// nth matches the nth request for the schema's check.
		nth := func(v string) string {
			return fmt.Sprintf(`p === "/schema/%s/validate" && (window.%s = (window.%s || 0) + 1) === 1`, schema, v, v)
		}
		type state struct {
			Marks []string
			Msg   string
		}
		now := func() (s state) {
			t.Helper()
			tb.eval(`({marks: [...document.querySelectorAll("#entity-editor-errors li")].map(li => li.dataset.path + " line " + li.dataset.line),
				msg: document.getElementById("entity-message").textContent})`, &s)
			return s
		}

		tb.setEditor("entity-editor", `{"n": "one"}`)
		tb.hold("save check", nth("__uir26save"))
		tb.click("#entity-save")
		tb.held("save check", 1)
		tb.click(`#db-keys button[data-key="b"]`)
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-ok")
		tb.waitFor("b open", `(e => !e.disabled && e.value.includes("2") && document.getElementById("entity-title").textContent.endsWith(" / b"))(document.getElementById("entity-editor"))`)
		tb.release("save check")
		if got := now(); len(got.Marks) != 0 || got.Msg != "Not saved: a: 1 problem against schema "+schema+"." {
			t.Errorf("after a's check came, b open: marks %q, message %q; want none on b, Not saved: a: 1 problem", got.Marks, got.Msg)
		}
		if got := seed.entity(db, "a"); !jsonEqual(got, []byte(`{"n":1}`)) {
			t.Errorf("a holds %s after a save its check refused", got)
		}

		tb.setEditor("entity-editor", `{"n": "two"}`)
		tb.hold("check", nth("__uir26check"))
		tb.click("#entity-check")
		tb.held("check", 1)
		tb.setEditor("entity-editor", `{"n": 2, "m": "edited"}`)
		tb.release("check")
		if got := now(); len(got.Marks) != 0 || !strings.HasPrefix(got.Msg, "b as checked: 1 problem") {
			t.Errorf("after the Check of b came, b edited since: marks %q, message %q; want none, b as checked: 1 problem", got.Marks, got.Msg)
		}

		// The check of the text shown marks it.
		tb.setEditor("entity-editor", `{"n": "three"}`)
		tb.eval(`document.getElementById("entity-message").textContent = ""; 1`, nil)
		tb.click("#entity-check")
		tb.waitText("entity-message", "1 problem against schema "+schema)
		if got := now(); !slices.Equal(got.Marks, []string{"/n line 1"}) {
			t.Errorf("after a Check of the text shown: marks %q, want /n on line 1", got.Marks)
		}
	})

	// SchemaSaveLate: on the Schemas page, a save answered after another
	// schema was loaded (the edit discarded) only says what came of it:
	// it showed the databases bound to the schema saved under the one
	// loaded, and marked the one loaded as edited, so that leaving asked.
	t.Run("SchemaSaveLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		for _, id := range []string{"uir27a", "uir27b"} {
			seed.call("PUT", "/schema/"+id, map[string]any{"type": "object", "title": "title of " + id}, 0)
		}
		seed.call("PUT", "/entity/uir27db", map[string]any{"k": map[string]any{"v": 1}}, http.StatusOK)
		seed.call("PUT", "/api/databases/uir27db", map[string]any{"schema": "uir27b"}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("schemas", "Schemas")
		tb.waitFor("the schemas listed", `document.querySelector('[data-testid="schema-item"][data-schema="uir27b"]')`)
		tb.click(`[data-testid="schema-item"][data-schema="uir27a"]`)
		tb.waitText("schema-message", "Loaded uir27a.")
		tb.setEditor("schema-text", `{"type": "object", "title": "saved"}`)
		tb.hold("save", `p === "/schema/uir27a" && m === "PUT"`)
		tb.click("#schema-save")
		tb.held("save", 1)
		tb.click(`[data-testid="schema-item"][data-schema="uir27b"]`)
		tb.waitFor("the question", `document.getElementById("ask-dialog")?.open`)
		tb.click("#ask-ok")
		tb.waitText("schema-message", "Loaded uir27b.")
		tb.waitFor("the databases bound to uir27b", `document.querySelector('#schema-dbs li[data-db="uir27db"]')`)
		tb.release("save")
		var got struct{ ID, Text, Msg, Bound string }
		tb.eval(`(id => ({id: id("schema-id").value, text: id("schema-text").value, msg: id("schema-message").textContent,
			bound: id("schema-dbs-title").textContent}))(document.getElementById.bind(document))`, &got)
		if got.ID != "uir27b" || !strings.Contains(got.Text, "title of uir27b") || got.Msg != "Saved uir27a." || got.Bound != "Databases bound to uir27b" {
			t.Errorf("after the save of uir27a came: ID %q, message %q, bound panel %q, text %q; want uir27b's, Saved uir27a.", got.ID, got.Msg, got.Bound, got.Text)
		}
		if askedOrLeft(tb, "workers", "Workers") {
			t.Error("leaving asked about unsaved changes of uir27b, loaded and not edited")
		}
	})

	// LeftPageKeepsAddress: what the Databases page does after the user
	// left it does not write its place to the address of the page shown.
	// A save that created an entity, answered once the user was on the
	// Workers page, reloaded the list and put #/databases?db=… in the
	// address; so did the reopening of the place last open, when the
	// list of databases came after the user left.
	t.Run("LeftPageKeepsAddress", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "uir28"
		tb := databasesDesk(t, db)
		tb.typeInto("db-key-input", "new")
		tb.click("#db-key-open")
		tb.waitText("entity-message", "No such entity yet")
		tb.setEditor("entity-editor", `{"v": 2}`)
		tb.hold("put", `m === "PUT"`)
		tb.click("#entity-save")
		tb.held("put", 1)
		if !askedOrLeft(tb, "workers", "Workers") {
			t.Error("the Databases page left without asking about the edit being saved")
		}
		tb.release("put")
		if got := seed.entity(db, "new"); !jsonEqual(got, []byte(`{"v":2}`)) {
			t.Errorf("the server holds %s for new, want the document saved", got)
		}
		var hash string
		tb.eval(`location.hash`, &hash)
		if hash != "#/workers" {
			t.Errorf("after the save came, on the Workers page: address %q, want #/workers", hash)
		}

		tb.hold("dbs", `p === "/api/databases" && m === "GET"`)
		tb.goTo("databases", "Databases")
		tb.held("dbs", 1)
		tb.goTo("workers", "Workers")
		tb.hold("reopened list", fmt.Sprintf(`p.startsWith("/api/databases/%s/keys?")`, db))
		tb.release("dbs")
		tb.held("reopened list", 1)
		tb.eval(`location.hash`, &hash)
		tb.release("reopened list")
		if hash != "#/workers" {
			t.Errorf("after the list of databases came, on the Workers page: address %q, want #/workers", hash)
		}
	})

	// DeleteDatabaseLate: a Delete database answered after the user opened
	// another database leaves that one open; it closed its detail.
	t.Run("DeleteDatabaseLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		tb := databasesDesk(t, "uir29a", "uir29b")
		tb.hold("delete", `p === "/api/databases/uir29a" && m === "DELETE"`)
		tb.click("#db-delete")
		tb.confirmTyped("uir29a")
		tb.held("delete", 1)
		tb.click(`#db-cards button[data-db="uir29b"]`)
		tb.waitFor("uir29b open", `document.getElementById("db-detail-title")?.textContent === "uir29b" && document.querySelector('#db-keys button[data-key="k"]')`)
		tb.release("delete")
		var got struct {
			Hidden          bool
			Title, Hash     string
			Msg             string
			DeletedCardGone bool
		}
		tb.eval(`({hidden: document.getElementById("db-detail").hidden, title: document.getElementById("db-detail-title")?.textContent || "",
			hash: location.hash, msg: document.getElementById("db-message").textContent,
			deletedCardGone: !document.querySelector('#db-cards button[data-db="uir29a"]')})`, &got)
		if got.Hidden || got.Title != "uir29b" || !strings.Contains(got.Hash, "db=uir29b") {
			t.Errorf("after the delete of uir29a came: detail hidden %v, title %q, address %q; want uir29b open", got.Hidden, got.Title, got.Hash)
		}
		if !strings.HasPrefix(got.Msg, "Deleted database uir29a") || !got.DeletedCardGone {
			t.Errorf("after the delete of uir29a came: message %q, its card gone %v; want Deleted database uir29a, the card gone", got.Msg, got.DeletedCardGone)
		}
		if seed.entity("uir29a", "k") != nil {
			t.Error("uir29a / k is still stored after the database's delete")
		}
	})

	// KeyDialogLate: on the API Keys page, a create or a rotation answered
	// after its dialog was closed (and opened again for another key) does
	// not change the dialog: the page's message says what came of it. The
	// new key's secret replaced the Edit form of another key; the rotated
	// key's secret was shown under "Rotate key" of another.
	t.Run("KeyDialogLate", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		seed.consoleKey("uir30-old", []string{"read"})
		seed.consoleKey("uir30-other", []string{"read"})
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("keys", "API Keys")
		row := func(name string) string { return fmt.Sprintf(`#keys-table tr[data-key-name=%q]`, name) }
		tb.waitFor("the keys listed", fmt.Sprintf(`document.querySelector('%s') && document.querySelector('%s')`, row("uir30-old"), row("uir30-other")))
		type dialog struct {
			Open, FieldsShown, SecretShown bool
			Title, Msg                     string
		}
		dialogNow := func(id, fieldsSel, secretID string) (d dialog) {
			t.Helper()
			tb.eval(fmt.Sprintf(`(d => ({open: d.open, fieldsShown: d.querySelector(%q).checkVisibility(), secretShown: document.getElementById(%q).checkVisibility(),
				title: document.getElementById(%q).textContent, msg: document.getElementById("keys-message").textContent}))(document.getElementById(%q))`,
				fieldsSel, secretID, id+"-title", id), &d)
			return d
		}
		// press clicks the button sel matches now: a row's buttons are
		// drawn anew whenever the list is read again (each dialog's close).
		press := func(sel string) {
			t.Helper()
			tb.eval(fmt.Sprintf(`document.querySelector(%q).click(); 1`, sel), nil)
		}

		tb.click("#key-new")
		tb.typeInto("key-name", "uir30-new")
		tb.hold("create", `p === "/api/keys" && m === "POST"`)
		tb.click("#key-create")
		tb.held("create", 1)
		tb.click("#key-cancel")
		tb.waitFor("the dialog closed", `!document.getElementById("key-dialog").open`)
		press(row("uir30-old") + ` [data-testid="key-edit"]`)
		tb.waitFor("the Edit dialog", `document.getElementById("key-dialog").open && document.getElementById("key-name").value === "uir30-old"`)
		tb.release("create")
		if got := dialogNow("key-dialog", "#key-fields", "key-secret-box"); !got.Open || !got.FieldsShown || got.SecretShown || got.Title != "Edit key uir30-old" ||
			!strings.HasPrefix(got.Msg, "Created key uir30-new, but its secret was not shown") {
			t.Errorf("after the create came: %+v; want the Edit form of uir30-old as it was, the message saying the secret was not shown", got)
		}
		// Closed as Cancel would (which the old code hid).
		tb.eval(`document.getElementById("key-dialog").close("cancel"); 1`, nil)
		tb.waitFor("the dialog closed", `!document.getElementById("key-dialog").open`)

		press(row("uir30-old") + ` [data-testid="key-rotate"]`)
		tb.waitFor("the Rotate dialog", `document.getElementById("key-rotate-dialog").open`)
		tb.hold("rotate", `p.endsWith("/rotate") && m === "POST"`)
		tb.click("#key-rotate-confirm")
		tb.held("rotate", 1)
		tb.eval(`[...document.querySelectorAll("#key-rotate-dialog button")].find(b => b.textContent === "Cancel").click(); 1`, nil)
		tb.waitFor("the dialog closed", `!document.getElementById("key-rotate-dialog").open`)
		press(row("uir30-other") + ` [data-testid="key-rotate"]`)
		tb.waitFor("the Rotate dialog of uir30-other", `document.getElementById("key-rotate-dialog").open && document.getElementById("key-rotate-dialog-title").textContent === "Rotate key uir30-other"`)
		tb.release("rotate")
		if got := dialogNow("key-rotate-dialog", "#key-rotate-text", "key-rotate-secret-box"); !got.Open || !got.FieldsShown || got.SecretShown ||
			!strings.HasPrefix(got.Msg, "Rotated key uir30-old, but its new secret was not shown") {
			t.Errorf("after the rotation of uir30-old came: %+v; want the Rotate form of uir30-other as it was, the message saying the secret was not shown", got)
		}
	})
}

// entitiesOf opens the Entities page with database db chosen, once the
// page's list of databases holds it.
func (tb *uiTab) entitiesOf(db string) {
	tb.goTo("entities", "Entities")
	tb.waitFor("the databases to choose from", fmt.Sprintf(`document.querySelector('#ent-db option[value=%q]')`, db))
	tb.choose("ent-db", db)
}
