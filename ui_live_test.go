package main

// The live document in the real browser: the Databases page follows the
// database's change feed through an EventSource (static/js/live.js), so a
// change made through the REST API (as curl would) reaches an open
// document: reloaded when it has no unsaved edits, "changed elsewhere"
// with the edits kept while it has some; leaving the page closes the
// stream.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// openStreams reads deltadb_changes_streams_open from the metrics.
func openStreams(t *testing.T, base string) int {
	t.Helper()
	code, out, _ := httpCall(t, "GET", base+"/metrics", testAdminKey, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "deltadb_changes_streams_open "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no deltadb_changes_streams_open in the metrics")
	return 0
}

// waitStreams waits until the server holds want open change streams.
func waitStreams(t *testing.T, base string, want int) {
	t.Helper()
	deadline := time.Now().Add(scaled(15 * time.Second))
	for n := openStreams(t, base); n != want; n = openStreams(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("%d change streams open, want %d", n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storedDoc decodes the stored document of db/key.
func storedDoc(t *testing.T, seed uiSeed, db, key string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(seed.entity(db, key), &m); err != nil {
		t.Fatalf("stored %s/%s: %v", db, key, err)
	}
	return m
}

// TestUILive runs the live flows at the laptop and the phone size, each
// with its own browser tab against one server.
func TestUILive(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	for _, v := range [][2]int64{deskView, phoneView} {
		t.Run(fmt.Sprintf("%dx%d", v[0], v[1]), func(t *testing.T) {
			seed := uiSeed{t, n.base}
			db := fmt.Sprintf("live%d", v[0])
			seed.call("PUT", "/entity/"+db, map[string]any{
				"s1": map[string]any{"title": "first", "n": 1},
				"s2": map[string]any{"title": "second", "n": 1},
			}, http.StatusOK)
			tb := openTab(t, browser, n.base, v[0], v[1])
			tb.login(testAdminKey)
			if v[0] < 800 {
				tb.openMenu()
			}
			tb.openDB(db)
			waitStreams(t, n.base, 1)

			// Unchanged locally: the open document reloads, with a notice,
			// and the list marks the key.
			tb.openEntity("s1")
			seed.call("PUT", "/entity/"+db, map[string]any{"s1": map[string]any{"title": "from curl", "n": 2}}, http.StatusOK)
			tb.waitText("entity-message", "Changed elsewhere: reloaded")
			tb.waitFor("the new value in the editor", `document.getElementById("entity-editor").value.includes("from curl")`)
			tb.waitFor("s1 marked changed", `document.querySelector('#db-keys button[data-key="s1"]').dataset.live === "changed"`)
			tb.shots("live-reloaded", "#entity-pane")

			// Unsaved edits: kept, and the user is told; Save then merges.
			tb.openEntity("s2")
			edited := "{\n  \"title\": \"mine\",\n  \"n\": 1\n}"
			tb.setEditor("entity-editor", edited)
			seed.call("PUT", "/entity/"+db, map[string]any{"s2": map[string]any{"title": "second", "n": 7}}, http.StatusOK)
			tb.waitText("entity-message", "Changed elsewhere while you edit")
			var now string
			tb.eval(`document.getElementById("entity-editor").value`, &now)
			if now != edited {
				t.Errorf("the editor holds %q after a change elsewhere, want the edit %q kept", now, edited)
			}
			tb.shots("live-changed-elsewhere", "#entity-pane")
			tb.click("#entity-save")
			tb.waitFor("the merge panel", `!document.getElementById("entity-conflict").hidden`)
			tb.click("#entity-conflict-save")
			tb.waitText("entity-message", "Saved.")
			if got := storedDoc(t, seed, db, "s2"); got["title"] != "mine" || got["n"] != float64(7) {
				t.Errorf("stored s2 after Save merged = %v, want title from the edit and n from elsewhere", got)
			}

			// A delete elsewhere strikes the key out of the list.
			seed.call("DELETE", "/entity/"+db+"?key=s1", nil, http.StatusOK)
			tb.waitFor("s1 marked deleted", `document.querySelector('#db-keys button[data-key="s1"]').dataset.live === "deleted"`)

			// Leaving the page closes the stream.
			if v[0] < 800 {
				tb.openMenu()
			}
			tb.goTo("dashboard", "Dashboard")
			waitStreams(t, n.base, 0)
		})
	}
}
