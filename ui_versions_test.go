package main

// The web UI's entity versions (static/js/versions.js): the list under
// the entity editor, a diff against the current document, Restore, and
// Undelete of a soft-deleted entity, at desk and phone sizes, each checked
// against what the server then holds.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestUIVersions(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	for _, size := range []struct {
		name string
		view [2]int64
	}{{"Desk", deskView}, {"Phone", phoneView}} {
		t.Run(size.name, func(t *testing.T) {
			seed := uiSeed{t, n.base}
			db := "uiver" + strings.ToLower(size.name)
			seed.call("PUT", "/api/databases/"+db, map[string]any{"max_versions": 5}, http.StatusOK)
			seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"title": "first draft"}}, http.StatusOK)
			seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"title": "second draft"}}, http.StatusOK)
			tb := openTab(t, browser, n.base, size.view[0], size.view[1])
			tb.login(testAdminKey)
			if size.view == phoneView {
				tb.openMenu()
			}
			tb.openDB(db)
			tb.openEntity("k")
			tb.waitFor("two versions listed", `document.querySelectorAll("#versions-list li").length === 2 && !document.getElementById("versions").hidden`)
			var rows []string
			tb.eval(`[...document.querySelectorAll("#versions-list li")].map(li => li.textContent)`, &rows)
			if len(rows) != 2 || !strings.HasPrefix(rows[0], "v2") || !strings.Contains(rows[0], "current") || !strings.Contains(rows[0], "by admin") || !strings.HasPrefix(rows[1], "v1") {
				t.Errorf("versions listed = %q, want v2 (current, by admin) then v1", rows)
			}

			tb.click(`[data-testid="version-diff-1"]`)
			tb.waitFor("the diff", `!document.getElementById("versions-diff").hidden`)
			diff := tb.text("versions-diff")
			if !strings.Contains(diff, `-   "title": "first draft"`) || !strings.Contains(diff, `+   "title": "second draft"`) {
				t.Errorf("diff of version 1 against the current one = %q", diff)
			}
			tb.shots("diff", "#entity-pane")

			tb.click(`[data-testid="version-restore-1"]`)
			tb.waitText("versions-message", "Restored version 1.")
			if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"title":"first draft"}`)) {
				t.Errorf("after Restore the server holds %s, want version 1's document", got)
			}
			tb.waitFor("three versions", `document.querySelectorAll("#versions-list li").length === 3`)
			tb.waitFor("the editor to hold version 1's document", `document.getElementById("entity-editor").value.includes("first draft")`)

			tb.click("#entity-delete")
			tb.waitText("entity-message", "Deleted k")
			// The list is read again after the delete: without k, so that
			// k listed after Undelete is the list read again once more.
			tb.waitFor("k gone from the list", `!document.querySelector('#db-keys button[data-key="k"]')`)
			tb.waitFor("Undelete offered", `!document.getElementById("versions-undelete").hidden`)
			if got := seed.entity(db, "k"); got != nil {
				t.Errorf("after Delete the server holds %s", got)
			}
			tb.shots("deleted", "#entity-pane")
			tb.click("#versions-undelete")
			tb.waitText("versions-message", "Undeleted k.")
			if got := seed.entity(db, "k"); !jsonEqual(got, []byte(`{"title":"first draft"}`)) {
				t.Errorf("after Undelete the server holds %s, want the deleted document back", got)
			}
			tb.waitFor("k listed again", `document.querySelector('#db-keys button[data-key="k"]') !== null`)
			d := tb.dialogSeen()
			// The database keeps versions: the confirmation of the (soft)
			// delete says Undelete brings it back, not that it is for good.
			if len(d) != 2 || !strings.Contains(d[0], "Restore version 1") || !strings.Contains(d[1], `Delete entity "k"`) ||
				!strings.Contains(d[1], "Undelete") || strings.Contains(d[1], "cannot be undone") {
				t.Errorf("confirmations = %q, want Restore then Delete saying Undelete brings it back", d)
			}
			var vs versionList
			decodeInto(t, "versions", seed.call("GET", fmt.Sprintf("/entity/%s/versions?key=k", db), nil, http.StatusOK), &vs)
			if got := fmt.Sprint(versionNumbers(vs)); got != "[1 2 3 4]" || vs.Versions[2].Deleted {
				t.Errorf("versions on the server = %+v, want 1..4, 3 no longer deleted", vs)
			}
		})
	}
}
