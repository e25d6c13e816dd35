package main

// Browser flows of browsing a database (static/js/browse.js and
// databases.js): columns from document fields, remembered; the sort by a
// column across pages, by key descending and by modified time; the
// selection's Delete and Export; a database's NDJSON export and import
// with its per-line report. Each runs at 1366x900 and 390x844 and checks
// what the server holds afterwards.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// openDBAt opens the Databases page (through the menu on a phone) and
// the card of db (openCard).
func (tb *uiTab) openDBAt(db string) {
	tb.t.Helper()
	tb.nav("databases", "Databases")
	tb.openCard(db)
}

// fitsWidth fails the flow when the page scrolls sideways.
func (tb *uiTab) fitsWidth(what string) {
	tb.t.Helper()
	var over int
	tb.eval(`document.documentElement.scrollWidth - innerWidth`, &over)
	if over > 0 {
		tb.t.Errorf("%s: the page is %d px wider than the %d px screen", what, over, tb.width)
	}
}

// colValues returns the text of column col of each listed entity, in order.
func (tb *uiTab) colValues(col string) []string {
	tb.t.Helper()
	var vals []string
	tb.eval(fmt.Sprintf(`[...document.querySelectorAll('#db-keys [data-testid="db-key-col"][data-col=%q]')].map(e => e.textContent)`, col), &vals)
	return vals
}

// allowDownloads saves the tab's downloads in a fresh directory and
// returns it.
func (tb *uiTab) allowDownloads() string {
	tb.t.Helper()
	dir := tb.t.TempDir()
	params := browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}
	if _, err := chromedp.Call(tb.ctx, browser.SetDownloadBehavior, params); err != nil {
		tb.t.Fatalf("allow downloads: %v", err)
	}
	return dir
}

// waitFile waits for the file name in dir to be complete and returns it.
func (tb *uiTab) waitFile(dir, name string) []byte {
	tb.t.Helper()
	w := newWait(tb.t, "the download "+name, 30*time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			if _, err := os.Stat(filepath.Join(dir, name+".crdownload")); err != nil {
				return b
			}
		}
		if w.over() {
			tb.t.Fatalf("no download: %v", w)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ndjsonKeys returns the keys of an export's lines, in order.
func ndjsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var keys []string
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e exportedLine
		if err := json.Unmarshal(l, &e); err != nil || e.Key == "" || e.ETag == "" || e.Modified.IsZero() {
			t.Fatalf("line %s: want {key, etag, modified, doc} (%v)", l, err)
		}
		keys = append(keys, e.Key)
	}
	return keys
}

// TestUIBrowse runs the browsing flows at both sizes in one Chromium
// against one server.
func TestUIBrowse(t *testing.T) {
	br := newBrowser(t)
	n, _ := startDefault(t)
	for _, v := range [][2]int64{deskView, phoneView} {
		size := fmt.Sprintf("%dx%d", v[0], v[1])
		tab := func(t *testing.T) *uiTab { return openTab(t, br, n.base, v[0], v[1]) }
		t.Run("ColumnsAndSort/"+size, func(t *testing.T) { uiColumnsAndSort(t, tab(t), uiSeed{t, n.base}, "uicols"+size) })
		t.Run("BulkDeleteAndExport/"+size, func(t *testing.T) { uiBulk(t, tab(t), uiSeed{t, n.base}, "uibulk"+size) })
		t.Run("ExportImport/"+size, func(t *testing.T) { uiExportImport(t, tab(t), uiSeed{t, n.base}, "uixfer"+size) })
	}
}

// uiColumnsAndSort: a column chosen from the documents' fields shows each
// entity's value and is remembered for the database; a sort on it orders
// every entity (the first page holds the largest values of all 15), key
// descending too; modified time is shown and sorts the page.
func uiColumnsAndSort(t *testing.T, tb *uiTab, seed uiSeed, db string) {
	docs := map[string]any{}
	for i := range 15 {
		docs[fmt.Sprintf("k%02d", i)] = map[string]any{"title": fmt.Sprintf("Title %02d", i), "n": (i * 7) % 15, "user": map[string]any{"id": fmt.Sprintf("u%d", i%3)}}
	}
	seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
	time.Sleep(10 * time.Millisecond)
	seed.call("PUT", "/entity/"+db, map[string]any{"k03": map[string]any{"title": "Newest", "n": 6, "user": map[string]any{"id": "u0"}}}, http.StatusOK)
	tb.login(testAdminKey)
	tb.openDBAt(db)
	tb.choose("db-page-size", "10")
	tb.waitText("db-keys-count", "Keys 1–10 of 15")
	if got := tb.listedKeys(); len(got) != 10 || got[0] != "k00" {
		t.Fatalf("listed %q, want k00 .. k09", got)
	}
	var modified int
	tb.eval(`document.querySelectorAll('#db-keys [data-testid="db-key-modified"]').length`, &modified)
	if modified != 10 {
		t.Errorf("%d entities show a modified time, want 10", modified)
	}

	// Choose the columns title and user.id from the fields offered.
	tb.click("#db-columns summary")
	tb.click(`#db-columns-list input[data-field="title"]`)
	tb.click(`#db-columns-list input[data-field="user.id"]`)
	if got := tb.colValues("title"); len(got) != 10 || got[0] != "Title 00" || got[3] != "Newest" {
		t.Errorf("title column = %q, want Title 00, ..., Newest at k03", got)
	}
	if got := tb.colValues("user.id"); len(got) != 10 || got[1] != "u1" {
		t.Errorf("user.id column = %q, want u0, u1, ...", got)
	}
	tb.fitsWidth("the list with two columns")
	tb.shots("columns", "#db-detail")

	// Add the column n by its path, then sort by it descending: the first
	// page is n 14..5 of all 15 entities.
	tb.typeInto("db-column-field", "n")
	tb.click("#db-column-add")
	tb.waitFor("the n column", `document.querySelectorAll('#db-keys [data-col="n"][data-testid="db-key-col"]').length === 10`)
	tb.choose("db-sort", "col:n:desc")
	tb.waitText("db-keys-count", "sorted by n, descending")
	if got := tb.colValues("n"); !slices.Equal(got, []string{"14", "13", "12", "11", "10", "9", "8", "7", "6", "5"}) {
		t.Errorf("sorted by n descending, page 1 n = %q, want 14 down to 5", got)
	}
	tb.click("#db-keys-next")
	tb.waitText("db-keys-count", "11–15")
	if got := tb.colValues("n"); !slices.Equal(got, []string{"4", "3", "2", "1", "0"}) {
		t.Errorf("page 2 n = %q, want 4 down to 0", got)
	}
	tb.choose("db-sort", "key:desc")
	tb.waitText("db-keys-count", "1–10")
	if got := tb.listedKeys(); len(got) != 10 || got[0] != "k14" || got[9] != "k05" {
		t.Errorf("key descending = %q, want k14 .. k05", got)
	}
	tb.choose("db-sort", "modified:desc")
	tb.waitFor("newest first", `document.querySelector('#db-keys button[data-key]')?.dataset.key === "k03"`)

	// Find by content with two conditions built from field, operator and
	// value: n >= 12 and user.id one of u0, u2.
	tb.click("#db-find summary")
	tb.typeInto("db-find-field", "n")
	tb.choose("db-find-op", "$gte")
	tb.typeInto("db-find-value", "12")
	tb.click("#db-find-add")
	tb.typeInto("db-find-field-2", "user.id")
	tb.choose("db-find-op-2", "$in")
	tb.typeInto("db-find-value-2", "u0, u2")
	var sel string
	tb.eval(`document.getElementById("db-find-selector").value`, &sel)
	if !jsonEqual([]byte(sel), []byte(`{"n":{"$gte":12},"user.id":{"$in":["u0","u2"]}}`)) {
		t.Errorf("built selector = %s", sel)
	}
	tb.click("#db-find-go")
	tb.waitText("db-keys-count", "Matches 1–2")
	if got := tb.listedKeys(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"k02", "k06"}) {
		t.Errorf("matches = %q, want k02 and k06", got)
	}
	tb.fitsWidth("the find conditions")
	tb.click("#db-find-clear")
	tb.waitText("db-keys-count", "Keys 1–10 of 15")

	// Reload: the columns and sort are remembered for this database.
	tb.do("reload", chromedp.Reload())
	tb.waitFor("the list after a reload", `document.querySelectorAll('#db-keys [data-col="title"][data-testid="db-key-col"]').length > 0`)
	var sortNow string
	tb.eval(`document.getElementById("db-sort").value`, &sortNow)
	if sortNow != "modified:desc" || tb.listedKeys()[0] != "k03" {
		t.Errorf("after a reload sort = %q, first %q; want modified:desc and k03", sortNow, tb.listedKeys()[0])
	}
	tb.fitsWidth("the list after a reload")
	tb.shots("sorted", "#db-detail")
}

// uiBulk: Select page and single checkboxes; Export selected downloads
// their lines; Delete selected asks for the database's name, then the
// server no longer holds them and still holds the rest.
func uiBulk(t *testing.T, tb *uiTab, seed uiSeed, db string) {
	docs := map[string]any{}
	for i := range 12 {
		docs[fmt.Sprintf("e%02d", i)] = map[string]any{"i": i}
	}
	seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
	dir := tb.allowDownloads()
	tb.login(testAdminKey)
	tb.openDBAt(db)
	tb.choose("db-page-size", "10")
	tb.waitText("db-keys-count", "Keys 1–10 of 12")

	// Select the page, then unselect two: 8 selected.
	tb.click("#db-select-all")
	tb.waitText("db-selected-count", "10 entities selected")
	tb.click(`#db-keys input[data-select="e00"]`)
	tb.click(`#db-keys input[data-select="e01"]`)
	tb.waitText("db-selected-count", "8 entities selected")
	var indeterminate bool
	tb.eval(`document.getElementById("db-select-all").indeterminate`, &indeterminate)
	if !indeterminate {
		t.Errorf("Select page is not indeterminate with 8 of 10 selected")
	}
	// One more on the next page: the selection spans pages.
	tb.click("#db-keys-next")
	tb.waitText("db-keys-count", "Keys 11–12 of 12")
	tb.click(`#db-keys input[data-select="e11"]`)
	tb.waitText("db-selected-count", "9 entities selected")
	tb.fitsWidth("the selection")

	tb.click("#db-bulk-export")
	tb.waitText("db-bulk-message", "Exported 9 entities")
	want := []string{"e02", "e03", "e04", "e05", "e06", "e07", "e08", "e09", "e11"}
	if got := ndjsonKeys(t, tb.waitFile(dir, db+"-selected.ndjson")); !slices.Equal(got, want) {
		t.Errorf("exported keys = %q, want %q", got, want)
	}

	tb.click("#db-bulk-delete")
	text := tb.confirmTyped(db)
	if !strings.Contains(text, "e02") || !strings.Contains(text, "4 more") || !strings.HasSuffix(text, "This cannot be undone.") {
		t.Errorf("confirmation %q, want it to name the first keys and how many more, and say it cannot be undone (no versions kept)", text)
	}
	tb.waitText("db-bulk-message", "Deleted 9 entities from "+db)
	for i := range 12 {
		k := fmt.Sprintf("e%02d", i)
		if gone := seed.entity(db, k) == nil; gone != slices.Contains(want, k) {
			t.Errorf("after Delete selected, %s gone = %v, want %v", k, gone, !gone)
		}
	}
	tb.waitText("db-info", "3 entities")
	tb.waitText("db-keys-count", "Keys 1–3 of 3")
	tb.waitFor("the selection cleared", `document.getElementById("db-bulk").hidden`)
	tb.shots("bulk-deleted", "#db-detail")
}

// uiExportImport: Export downloads every entity of the database; the file
// imported into a new database (the page's Import) makes the server hold
// the same entities; a file with bad lines shows each line's error and
// writes nothing of their batches.
func uiExportImport(t *testing.T, tb *uiTab, seed uiSeed, db string) {
	docs := map[string]any{}
	for i := range 30 {
		docs[fmt.Sprintf("doc%02d", i)] = map[string]any{"title": fmt.Sprintf("T%d", i), "tags": []any{"a", i}}
	}
	seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
	dir := tb.allowDownloads()
	tb.login(testAdminKey)
	tb.openDBAt(db)
	tb.click("#db-export")
	tb.waitText("db-transfer-status", "Exported 30 entities of "+db)
	file := tb.waitFile(dir, db+".ndjson")
	if keys := ndjsonKeys(t, file); len(keys) != 30 || keys[0] != "doc00" || keys[29] != "doc29" {
		t.Fatalf("export file keys = %q, want doc00 .. doc29", keys)
	}
	tb.fitsWidth("the export")

	// Import the file into a new database from the page's Import.
	copyDB := db + "copy"
	// The database's detail is open on this same page, whose title
	// already reads "Databases": goTo waits for the page drawn anew, or
	// the click could find the import panel that the new drawing then
	// replaces ("Could not find node with given id").
	tb.nav("databases", "Databases")
	tb.click("#db-import-panel summary")
	tb.typeInto("db-new-import-name", copyDB)
	path := filepath.Join(dir, db+".ndjson")
	tb.do("choose the file", chromedp.SetUploadFiles(chromedp.ID("db-new-import-file"), []string{path}))
	tb.click("#db-new-import")
	tb.waitText("db-new-transfer-status", "Imported 30 entities into "+copyDB)
	for k, d := range docs {
		b, _ := json.Marshal(d)
		if got := seed.entity(copyDB, k); !jsonEqual(got, b) {
			t.Errorf("imported %s/%s = %s, want %s", copyDB, k, got, b)
		}
	}
	tb.waitFor("the new card", fmt.Sprintf(`document.querySelector('#db-cards button[data-db=%q]')?.dataset.entities === "30"`, copyDB))
	tb.fitsWidth("the import")
	tb.shots("imported", "#db-import-panel")

	// A file with bad lines: each refused line is listed; its batch is
	// not written, the others are.
	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	lines := []string{`{"key":"ok1","doc":{"v":1}}`, `{"key":"bad/key","doc":{}}`, `not json`}
	for i := range 100 {
		lines = append(lines, fmt.Sprintf(`{"key":"fill%03d","doc":{"v":%d}}`, i, i))
	}
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb.typeInto("db-new-import-name", copyDB)
	tb.do("choose the bad file", chromedp.SetUploadFiles(chromedp.ID("db-new-import-file"), []string{bad}))
	tb.click("#db-new-import")
	tb.waitText("db-new-transfer-status", "2 lines were refused")
	var errs []string
	tb.eval(`[...document.querySelectorAll('#db-new-import-errors [data-testid="import-error"]')].map(e => e.dataset.line + " " + e.textContent)`, &errs)
	if len(errs) != 2 || !strings.HasPrefix(errs[0], "2 Line 2 (bad/key)") || !strings.HasPrefix(errs[1], "3 Line 3:") {
		t.Errorf("import errors = %q, want line 2 (bad/key) and line 3", errs)
	}
	// Lines 1-100 are the first batch (refused); 101-103 the second.
	if seed.entity(copyDB, "ok1") != nil || seed.entity(copyDB, "fill096") != nil || seed.entity(copyDB, "fill097") == nil {
		t.Errorf("after the bad import: ok1 or fill096 written, or fill097 not; want the first batch refused, the second written")
	}
	tb.fitsWidth("the import errors")
	tb.shots("import-errors", "#db-import-panel")
}
