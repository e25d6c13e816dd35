package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// applierBehind is a -role=all data path over the filesystem backend, as
// the main node builds it (the catalog flushes the logs before a scan),
// whose log applier a test can hold back.
type applierBehind struct {
	st   *fsStore
	rest *restServer
	w    *worker
	gate *gate
}

// newApplierBehind builds it, the applier held back.
func newApplierBehind(t *testing.T) *applierBehind {
	t.Helper()
	st := newTestFSStore(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	schemas := newSchemaRegistry(st, budgets{})
	cat := newCatalog(st)
	ho := newHandovers(st, log, time.Now)
	rt := newRouter(log, time.Now, saturatedInFlight, cat.wrote, ho)
	cat.setFlush(rt.flushLogs)
	cfg := config{role: "all", keyID: "k1", entityCacheSize: 1024, wal: testWALFlags}
	ring, err := newKeyring(st, []byte("0123456789abcdef0123456789abcdef"), cfg.keyID)
	if err != nil {
		t.Fatal(err)
	}
	w, err := addLocalWorker(t.Context(), cfg, rt, st, schemas, ring, log)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{}
	g.shut()
	lock := w.wal.opts.lock
	w.wal.opts.lock = func(ctx context.Context, db, key string) (func(), error) {
		if _, err := g.lock(ctx, db, key); err != nil {
			return nil, err
		}
		return lock(ctx, db, key)
	}
	t.Cleanup(func() { g.open(); w.close() })
	auth, err := newAuthenticator(t.Context(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	rest := newRESTServer(restOptions{auth: auth, data: newDataPlane(rt, cat, schemas, budgets{}), workers: rt.list, maxBody: 1 << 20, log: log})
	return &applierBehind{st: st, rest: rest, w: w, gate: g}
}

// burst writes writers x each entities of db concurrently, each
// acknowledged (200), and returns their keys and values.
func (a *applierBehind) burst(t *testing.T, db string, writers, each int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]int{}
	var wg sync.WaitGroup
	for c := range writers {
		wg.Go(func() {
			for i := range each {
				key, n := fmt.Sprintf("w%02d-%03d", c, i), c*1000+i
				if rec := serve(a.rest, "PUT", "/entity/"+db, fmt.Sprintf(`{%q:{"n":%d}}`, key, n)); rec.Code != 200 {
					t.Errorf("PUT %s = %d %s", key, rec.Code, rec.Body)
					return
				}
				mu.Lock()
				acked[key] = n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return acked
}

// filesMissing counts the acknowledged entities of db without an entity
// file: the writes the applier has not caught up with.
func (a *applierBehind) filesMissing(t *testing.T, db string, acked map[string]int) int {
	t.Helper()
	n := 0
	for k := range acked {
		if _, err := a.st.Get(t.Context(), entityObjectKey(db, k)); err != nil {
			n++
		}
	}
	return n
}

// openLater lets the applier through after a while, as a busy disk
// would: a reader that scans storage must wait for it.
func (a *applierBehind) openLater(t *testing.T) {
	timer := time.AfterFunc(100*time.Millisecond, a.gate.open)
	t.Cleanup(func() { timer.Stop() })
}

// TestWALReadersSeeUnappliedWrites: right after a burst of acknowledged
// writes by 32 writers, with the applier behind (no entity file written
// yet), a key listing, the list of databases, a query, and what a backup
// and a verify read each see every one of them; the owner's reads answer
// them at once.
func TestWALReadersSeeUnappliedWrites(t *testing.T) {
	a := newApplierBehind(t)
	acked := a.burst(t, "burst", 32, 8)
	if n := a.filesMissing(t, "burst", acked); n != len(acked) {
		t.Fatalf("%d of %d entity files missing while the applier was held, want all", n, len(acked))
	}
	// What a backup and a verify read: the logs over the files, no wait.
	view, err := toolView(a.st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := view.List(t.Context(), entityKeyPrefix("burst", ""), "", 0)
	if err != nil || len(objs) != len(acked) {
		t.Fatalf("storage tools' view lists %d entities (%v), want %d", len(objs), err, len(acked))
	}
	for k, n := range acked {
		if rec := serve(a.rest, "GET", "/entity/burst?key="+k, ""); rec.Code != 200 || rec.Body.String() != fmt.Sprintf(`{"n":%d}`, n) {
			t.Fatalf("GET %s = %d %s, want {\"n\":%d}", k, rec.Code, rec.Body, n)
		}
	}
	a.openLater(t)
	rec := serve(a.rest, "GET", "/api/databases/burst/keys?limit=1000", "")
	var page struct{ Keys []string }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
		t.Fatalf("list keys = %d %s", rec.Code, rec.Body)
	}
	want := make([]string, 0, len(acked))
	for k := range acked {
		want = append(want, k)
	}
	slices.Sort(want)
	if !slices.Equal(page.Keys, want) {
		t.Fatalf("listing after the burst: %d keys, want the %d acknowledged", len(page.Keys), len(want))
	}
	var dbs []string
	if rec := serve(a.rest, "GET", "/api/databases", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &dbs) != nil ||
		!slices.Contains(dbs, "burst") {
		t.Fatalf("list databases = %d %s, want burst in it", rec.Code, rec.Body)
	}
	rec = serve(a.rest, "POST", "/api/databases/burst/find", `{"selector":{"n":{"$gte":0}},"limit":1000}`)
	var ans findAnswer
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || len(ans.Keys) != len(acked) {
		t.Fatalf("find after the burst = %d, %d matches, want %d", rec.Code, len(ans.Keys), len(acked))
	}
}

// TestWALDeleteDatabaseAfterBurst: deleting a database right after a
// burst of acknowledged writes, the applier behind, deletes every one of
// them: none comes back once the applier has caught up.
func TestWALDeleteDatabaseAfterBurst(t *testing.T) {
	a := newApplierBehind(t)
	acked := a.burst(t, "gone", 32, 4)
	a.openLater(t)
	rec := serve(a.rest, "DELETE", "/api/databases/gone", "")
	var res struct{ Deleted int }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || res.Deleted != len(acked) {
		t.Fatalf("DELETE database = %d %s, want %d deleted", rec.Code, rec.Body, len(acked))
	}
	if err := a.w.wal.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := a.filesMissing(t, "gone", acked); n != len(acked) {
		t.Errorf("%d entity files left after the delete and the applier caught up", len(acked)-n)
	}
	for k := range acked {
		if rec := serve(a.rest, "GET", "/entity/gone?key="+k, ""); rec.Code != 404 {
			t.Fatalf("GET %s after the delete = %d %s", k, rec.Code, rec.Body)
		}
	}
}

// openDelayedWAL is openTestWAL with -wal-apply-delay delay and room
// for room bytes of unapplied records.
func openDelayedWAL(t *testing.T, st *fsStore, delay time.Duration, room int64) *walLog {
	t.Helper()
	o := testWALOptions()
	o.applyDelay, o.maxUnapplied = delay, room
	l, err := openWAL(t.Context(), st, "w1", true, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.crash() })
	return l
}

// TestWALApplyDelayCoalesces: the writes of an entity within
// -wal-apply-delay of its first cost one entity file, written once the
// delay has passed, with the last value; reads see each write at once.
func TestWALApplyDelayCoalesces(t *testing.T) {
	st := newTestFSStore(t)
	const delay = 300 * time.Millisecond
	l := openDelayedWAL(t, st, delay, 64<<20)
	start := time.Now()
	for i := range 20 {
		if err := l.write(putRec("db", "hot", []byte(fmt.Sprint("v", i)))); err != nil {
			t.Fatal(err)
		}
		if got, ok := l.unappliedRecord("db", "hot"); !ok || string(got.Sealed) != fmt.Sprint("v", i) {
			t.Fatalf("write %d not read back from the table at once", i)
		}
	}
	if err := l.write(putRec("db", "cold", []byte("c"))); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(t.Context(), entityObjectKey("db", "hot")); !errors.Is(err, errNotFound) && time.Since(start) < delay {
		t.Fatalf("entity file written before the delay passed: %v", err)
	}
	waitFor(t, func() bool {
		_, hot := l.unappliedRecord("db", "hot")
		_, cold := l.unappliedRecord("db", "cold")
		return !hot && !cold
	})
	if waited := time.Since(start); waited < delay {
		t.Errorf("records applied %v after the first write, before the %v delay", waited, delay)
	}
	if got, err := st.Get(t.Context(), entityObjectKey("db", "hot")); err != nil || string(got) != "v19" {
		t.Errorf("entity file = %q, %v; want the last value v19", got, err)
	}
	if n := l.stats.applied.Load(); n != 2 {
		t.Errorf("%d entity files written for 21 writes of 2 entities, want 2", n)
	}
}

// TestWALApplyDelayHurried: whoever waits for the entity files (a flush
// before a scan, a checkpoint, a clean close) does not wait for
// -wal-apply-delay.
func TestWALApplyDelayHurried(t *testing.T) {
	st := newTestFSStore(t)
	l := openDelayedWAL(t, st, time.Hour, 64<<20)
	for _, step := range []struct {
		name string
		wait func(context.Context) error
	}{{"flush", l.flush}, {"checkpoint", l.checkpoint}} {
		key := "k-" + step.name
		if err := l.write(putRec("db", key, []byte("v"))); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := step.wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s with a one-hour apply delay: %v", step.name, err)
		}
		if got, err := st.Get(t.Context(), entityObjectKey("db", key)); err != nil || string(got) != "v" {
			t.Errorf("after %s: entity file %q, %v", step.name, got, err)
		}
	}
	if err := l.write(putRec("db", "k-close", []byte("v"))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close took %v with a one-hour apply delay", took)
	}
	if got, err := st.Get(t.Context(), entityObjectKey("db", "k-close")); err != nil || string(got) != "v" {
		t.Errorf("after Close: entity file %q, %v", got, err)
	}
}

// TestWALApplyDelayRoom: records taking more than a sixteenth of the
// table's room are written at once, whatever -wal-apply-delay says, so
// that large documents written fast do not wait in memory.
func TestWALApplyDelayRoom(t *testing.T) {
	st := newTestFSStore(t)
	l := openDelayedWAL(t, st, time.Hour, 16<<10)
	big := []byte(strings.Repeat("x", 2<<10))
	if err := l.write(putRec("db", "big", big)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, ok := l.unappliedRecord("db", "big")
		return !ok
	})
	if got, err := st.Get(t.Context(), entityObjectKey("db", "big")); err != nil || len(got) != len(big) {
		t.Errorf("entity file of %d bytes, %v; want %d", len(got), err, len(big))
	}
}

// TestWALVersionsBeforeTheirFiles: with versions on and the applier held
// back, each write, soft delete, undelete and destroy is in the log alone
// (no version file written) and its owner lists and reads the versions
// at once, pruned as max_versions says; what a backup or verify reads
// has them too. Once the applier catches up the files say the same, no
// log record holds a document in plaintext, and deleting the database
// leaves no version behind in storage or in a log a replay would apply.
func TestWALVersionsBeforeTheirFiles(t *testing.T) {
	a := newApplierBehind(t)
	if rec := serve(a.rest, "PUT", "/api/databases/vw", `{"max_versions":3}`); rec.Code != 200 {
		t.Fatalf("PUT settings = %d %s", rec.Code, rec.Body)
	}
	var etags []string
	for i := 1; i <= 5; i++ {
		rec := serve(a.rest, "PUT", "/entity/vw", fmt.Sprintf(`{"k":{"n":%d,"s":"plain-marker-%d"}}`, i, i))
		if rec.Code != 200 {
			t.Fatalf("PUT %d = %d %s", i, rec.Code, rec.Body)
		}
		etags = append(etags, strings.Trim(rec.Header().Get("ETag"), `"`))
	}
	versionFiles := func() []string { return storedUnder(t, a.st.root, "_versions") }
	if f := versionFiles(); len(f) != 0 {
		t.Fatalf("version files written while the applier was held: %v", f)
	}
	list := func() versionList {
		t.Helper()
		rec := serve(a.rest, "GET", "/entity/vw/versions?key=k", "")
		var l versionList
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &l) != nil {
			t.Fatalf("GET versions = %d %s", rec.Code, rec.Body)
		}
		return l
	}
	l := list()
	if got := fmt.Sprint(versionNumbers(l)); got != "[3 4 5]" {
		t.Fatalf("versions after 5 PUTs with max 3, none applied = %s, want [3 4 5]", got)
	}
	for i, v := range l.Versions {
		if v.ETag != etags[i+2] {
			t.Errorf("version %d has ETag %s, want %s", v.Version, v.ETag, etags[i+2])
		}
	}
	for n := 3; n <= 5; n++ {
		rec := serve(a.rest, "GET", fmt.Sprintf("/entity/vw?key=k&version=%d", n), "")
		if want := fmt.Sprintf(`{"n":%d,"s":"plain-marker-%d"}`, n, n); rec.Code != 200 || rec.Body.String() != want ||
			rec.Header().Get("ETag") != `"`+etags[n-1]+`"` {
			t.Errorf("GET version %d = %d %s ETag %s, want %s", n, rec.Code, rec.Body, rec.Header().Get("ETag"), want)
		}
	}
	if rec := serve(a.rest, "GET", "/entity/vw?key=k&version=2", ""); rec.Code != 404 {
		t.Errorf("GET pruned version 2 = %d %s, want 404", rec.Code, rec.Body)
	}

	// A soft delete, an undelete and a destroy, still before any file.
	for _, step := range []struct{ method, path string }{
		{"DELETE", "/entity/vw?key=k"}, {"POST", "/entity/vw/undelete?key=k"}, {"POST", "/entity/vw/destroy?key=k&versions=4"},
	} {
		if rec := serve(a.rest, step.method, step.path, ""); rec.Code != 200 {
			t.Fatalf("%s %s = %d %s", step.method, step.path, rec.Code, rec.Body)
		}
	}
	l = list()
	if got := fmt.Sprint(versionNumbers(l)); got != "[4 5 6]" || !l.Versions[0].Destroyed || l.Versions[1].Deleted {
		t.Fatalf("versions after delete, undelete, destroy 4 = %+v, want [4 5 6], 4 destroyed, 5 not deleted", l.Versions)
	}
	if rec := serve(a.rest, "GET", "/entity/vw?key=k&version=4", ""); rec.Code != 404 {
		t.Errorf("GET destroyed version 4 = %d %s, want 404", rec.Code, rec.Body)
	}
	if rec := serve(a.rest, "GET", "/entity/vw?key=k&version=6", ""); rec.Code != 200 || rec.Body.String() != `{"n":5,"s":"plain-marker-5"}` {
		t.Errorf("GET undeleted version 6 = %d %s", rec.Code, rec.Body)
	}
	if f := versionFiles(); len(f) != 0 {
		t.Fatalf("version files written while the applier was held: %v", f)
	}

	// What a backup and a verify read: the logs over the files.
	view, err := toolView(a.st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	if err := versionsIn(t.Context(), view, "vw", func(x versionIndex, ns []int64) error {
		if fmt.Sprint(versionNumbers(versionList{Versions: x.Versions})) != "[4 5 6]" {
			t.Errorf("storage tools' view of the index: %+v", x.Versions)
		}
		seen = append(seen, ns...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[5 6]" {
		t.Errorf("storage tools' view holds version objects %v, want [5 6]", seen)
	}
	if dbs, err := view.ListDirs(t.Context(), versionsPrefix); err != nil || !slices.Contains(dbs, "vw") {
		t.Errorf("storage tools' view lists version databases %v (%v), want vw", dbs, err)
	}

	// The applier catches up: the files say what the log said.
	a.gate.open()
	if err := a.w.wal.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f := versionFiles(); len(f) != 3 {
		t.Errorf("version files once applied: %v, want versions 5 and 6 and the index", f)
	}
	if got := fmt.Sprint(versionNumbers(list())); got != "[4 5 6]" {
		t.Errorf("versions once applied = %s, want [4 5 6]", got)
	}
	for _, f := range storedUnder(t, a.st.root, "") {
		if raw, err := os.ReadFile(filepath.Join(a.st.root, f)); err == nil && bytes.Contains(raw, []byte("plain-marker")) {
			t.Errorf("%s holds a document in plaintext", f)
		}
	}

	// Deleting the database: no version file, and no log record a replay
	// would write one from.
	if rec := serve(a.rest, "DELETE", "/api/databases/vw", ""); rec.Code != 200 {
		t.Fatalf("DELETE database = %d %s", rec.Code, rec.Body)
	}
	if f := versionFiles(); len(f) != 0 {
		t.Errorf("version files after the database's deletion: %v", f)
	}
	objs, err := readLogsOver(a.st.root)
	if err != nil {
		t.Fatal(err)
	}
	for obj, data := range objs {
		if strings.HasPrefix(obj, versionsDBPrefix("vw")) && data != nil {
			t.Errorf("after the database's deletion a log still writes %s", obj)
		}
	}
}
