package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// serveWith is serve with extra request headers (name, value pairs).
func serveWith(s *restServer, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// listAll pages through GET /api/databases/{db}/keys with prefix and a
// page size of limit, checking that only the last page lacks "next".
func listAll(t *testing.T, s *restServer, db, prefix string, limit int) []string {
	t.Helper()
	var keys []string
	for cursor, pages := "", 0; ; pages++ {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if prefix != "" {
			q.Set("prefix", prefix)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		rec := serve(s, "GET", "/api/databases/"+db+"/keys?"+q.Encode(), "")
		var page struct {
			Keys []string
			Next *string
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil || page.Keys == nil {
			t.Fatalf("GET keys of %s (%s) = %d %s", db, q.Encode(), rec.Code, rec.Body)
		}
		if len(page.Keys) > limit || (page.Next != nil && len(page.Keys) != limit) {
			t.Fatalf("page %d of %s: %d keys with limit %d, next %v", pages, db, len(page.Keys), limit, page.Next != nil)
		}
		keys = append(keys, page.Keys...)
		if page.Next == nil {
			return keys
		}
		cursor = *page.Next
	}
}

// TestListingAfterWrites: after random writes through the API (batch PUTs,
// PATCHes, DELETEs, and writes refused by a precondition), every listing
// (any prefix, any page size), the entity count and the database list
// match what was written, and storage was scanned once.
func TestListingAfterWrites(t *testing.T) {
	s := newLocalREST(t)
	rnd := rand.New(rand.NewPCG(10, 2))
	if got := listAll(t, s, "db", "", 10); len(got) != 0 {
		t.Fatalf("new database lists %q", got)
	}
	model := map[string]bool{}
	key := func() string {
		return fmt.Sprintf("%c%03d", 'a'+rnd.IntN(3), rnd.IntN(60)) + []string{"", "é", "ключ"}[rnd.IntN(3)]
	}
	for round := range 12 {
		for range 15 {
			k := key()
			switch rnd.IntN(5) {
			case 0, 1: // batch PUT
				batch := map[string]int{}
				for range 1 + rnd.IntN(6) {
					batch[key()] = 1
				}
				body, _ := json.Marshal(batch)
				if rec := serve(s, "PUT", "/entity/db", string(body)); rec.Code != 200 {
					t.Fatalf("PUT %s = %d %s", body, rec.Code, rec.Body)
				}
				for bk := range batch {
					model[bk] = true
				}
			case 2: // PATCH: 200 on an entity, 404 (nothing written) on none
				want := map[bool]int{true: 200, false: 404}[model[k]]
				if rec := serveWith(s, "PATCH", "/entity/db?key="+url.QueryEscape(k), `{"p":1}`, "Content-Type", mergePatchType); rec.Code != want {
					t.Fatalf("PATCH %q = %d %s, want %d", k, rec.Code, rec.Body, want)
				}
			case 3: // DELETE: 200 or 404
				want := map[bool]int{true: 200, false: 404}[model[k]]
				if rec := serve(s, "DELETE", "/entity/db?key="+url.QueryEscape(k), ""); rec.Code != want {
					t.Fatalf("DELETE %q = %d %s, want %d", k, rec.Code, rec.Body, want)
				}
				delete(model, k)
			case 4: // create-only PUT: 412 (nothing written) if it exists
				want := map[bool]int{true: 412, false: 200}[model[k]]
				body, _ := json.Marshal(map[string]int{k: 2})
				if rec := serveWith(s, "PUT", "/entity/db", string(body), "If-None-Match", "*"); rec.Code != want {
					t.Fatalf("PUT If-None-Match %q = %d %s, want %d", k, rec.Code, rec.Body, want)
				}
				model[k] = true
			}
		}
		var want []string
		for k := range model {
			want = append(want, k)
		}
		slices.Sort(want)
		prefix := []string{"", "a", "b0", "c01", "d"}[round%5]
		limit := 1 + rnd.IntN(40)
		var wantPrefixed []string
		for _, k := range want {
			if strings.HasPrefix(k, prefix) {
				wantPrefixed = append(wantPrefixed, k)
			}
		}
		if got := listAll(t, s, "db", prefix, limit); !slices.Equal(got, wantPrefixed) {
			t.Fatalf("round %d: listing (prefix %q, limit %d) = %q, want %q", round, prefix, limit, got, wantPrefixed)
		}
		var info databaseInfo
		rec := serve(s, "GET", "/api/databases/db", "")
		if len(want) > 0 && (rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &info) != nil || info.Entities != len(want)) {
			t.Errorf("round %d: GET /api/databases/db = %d %s, want %d entities", round, rec.Code, rec.Body, len(want))
		}
	}
	// Empty the database: it leaves the database list.
	for k := range model {
		if rec := serve(s, "DELETE", "/entity/db?key="+url.QueryEscape(k), ""); rec.Code != 200 {
			t.Fatalf("DELETE %q = %d %s", k, rec.Code, rec.Body)
		}
	}
	if got := listAll(t, s, "db", "", 7); len(got) != 0 {
		t.Errorf("emptied database lists %q", got)
	}
	if rec := serve(s, "GET", "/api/databases", ""); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("GET /api/databases after emptying db = %s, want []", rec.Body)
	}
	// One scan found the database empty (an empty database is not
	// kept), one indexed it after the first writes.
	if n := s.data.catalog.keys.scans.Load(); n != 2 {
		t.Errorf("storage scanned %d times for the listings, want 2", n)
	}
}

// TestListingConcurrentWrites: listings and counts taken while other
// clients write (the index serves readers and writers at once) end up
// exact once the writers are done.
func TestListingConcurrentWrites(t *testing.T) {
	s := newLocalREST(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 40 {
				k := fmt.Sprintf("w%d-%02d", w, i)
				if rec := serve(s, "PUT", "/entity/db", fmt.Sprintf(`{%q:1}`, k)); rec.Code != 200 {
					t.Errorf("PUT %s = %d %s", k, rec.Code, rec.Body)
					return
				}
				if i%2 == 1 {
					if rec := serve(s, "DELETE", "/entity/db?key="+k, ""); rec.Code != 200 {
						t.Errorf("DELETE %s = %d %s", k, rec.Code, rec.Body)
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if rec := serve(s, "GET", "/api/databases/db/keys?limit=13", ""); rec.Code != 200 {
				t.Errorf("GET keys = %d %s", rec.Code, rec.Body)
				return
			}
		}
	})
	wg.Wait()
	var want []string
	for w := range 4 {
		for i := 0; i < 40; i += 2 {
			want = append(want, fmt.Sprintf("w%d-%02d", w, i))
		}
	}
	if got := listAll(t, s, "db", "", 11); !slices.Equal(got, want) {
		t.Errorf("listing after concurrent writes = %q, want %q", got, want)
	}
}

// BenchmarkListing times GET /api/databases and pages of keys over
// DELTADB_BENCH_DBS databases (default 20) of DELTADB_BENCH_PER_DB
// entities each (default 250), stored in DELTADB_BENCH_DIR (default a
// temp dir; an existing store there is reused, so that big runs fill it
// once). BENCHMARKS.md has figures for 20 x 5,000.
func BenchmarkListing(b *testing.B) {
	dbs, perDB := envInt(b, "DELTADB_BENCH_DBS", 20), envInt(b, "DELTADB_BENCH_PER_DB", 250)
	dir := os.Getenv("DELTADB_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	st, err := newFSStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	fillListingStore(b, st, dbs, perDB)
	s := newLocalRESTOver(b, st)
	get := func(b *testing.B, path string) []byte {
		rec := serve(s, "GET", path, "")
		if rec.Code != 200 {
			b.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	b.Run("databases", func(b *testing.B) {
		for b.Loop() {
			get(b, "/api/databases")
		}
	})
	b.Run("keys-scan", func(b *testing.B) {
		// The first page of a database: one scan of storage.
		for b.Loop() {
			s.data.catalog = newCatalog(st)
			get(b, "/api/databases/db00/keys")
		}
	})
	var page keyPage
	json.Unmarshal(get(b, "/api/databases/db00/keys"), &page)
	b.Run("keys-first-page", func(b *testing.B) {
		for b.Loop() {
			get(b, "/api/databases/db00/keys")
		}
	})
	b.Run("keys-next-page", func(b *testing.B) {
		for b.Loop() {
			get(b, "/api/databases/db00/keys?cursor="+page.Next)
		}
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			get(b, "/api/databases/db00")
		}
	})
}

// envInt is the positive integer in environment variable name, or def.
func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// fillListingStore puts perDB small objects into each of dbs databases
// db00, db01, ... directly through the store, unless db00 already holds
// that many. Listings never read the objects' bytes.
func fillListingStore(tb testing.TB, st store, dbs, perDB int) {
	if keys, err := st.List(tb.Context(), entityKeyPrefix("db00", ""), "", 0); err == nil && len(keys) >= perDB {
		return
	}
	var wg sync.WaitGroup
	work := make(chan string)
	for range 32 {
		wg.Go(func() {
			for key := range work {
				if err := st.Put(tb.Context(), key, []byte("{}")); err != nil {
					tb.Error(err)
				}
			}
		})
	}
	for d := range dbs {
		for i := range perDB {
			work <- entityObjectKey(fmt.Sprintf("db%02d", d), fmt.Sprintf("user:%07d", i))
		}
	}
	close(work)
	wg.Wait()
}
