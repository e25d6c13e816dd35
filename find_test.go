package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// findPlane is a data plane over n in-process workers sharing one store:
// the fan-out, ownership and merging of a cluster without processes.
type findPlane struct {
	data    *dataPlane
	rt      *router
	workers []*worker
	st      *memStore
}

// newFindPlane builds a findPlane of n workers keeping budgets lim.
func newFindPlane(t testing.TB, n int, lim budgets) *findPlane {
	t.Helper()
	st := newMemStore()
	cat := newCatalog(st)
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0, cat.wrote, nil)
	p := &findPlane{rt: rt, st: st}
	for i := range n {
		w := newTestWorker(t, fmt.Sprintf("w%d", i), st)
		rt.add(&workerConn{id: w.id, proc: w, stats: w.stats})
		p.workers = append(p.workers, w)
	}
	p.data = newDataPlane(rt, cat, p.workers[0].schemas, lim)
	return p
}

// put stores docs (key: JSON) in db.
func (p *findPlane) put(t testing.TB, db string, docs map[string]string) {
	t.Helper()
	var ops []*pb.EntityOp
	for k, d := range docs {
		ops = append(ops, &pb.EntityOp{DatabaseName: db, EntityKey: k, Operation: pb.Operation_PUT, Payload: []byte(d)})
	}
	for _, op := range ops {
		if _, err := p.data.put(t.Context(), "", []*pb.EntityOp{op}, nil); err != nil {
			t.Fatalf("put %s: %v", op.EntityKey, err)
		}
	}
}

// find runs body (a /find request) on db.
func (p *findPlane) find(t testing.TB, db, body string) *findAnswer {
	t.Helper()
	ans, err := p.tryFind(t.Context(), db, body)
	if err != nil {
		t.Fatalf("find %s: %v", body, err)
	}
	return ans
}

// tryFind runs body on db.
func (p *findPlane) tryFind(ctx context.Context, db, body string) (*findAnswer, error) {
	req, err := parseFindRequest([]byte(body))
	if err != nil {
		return nil, err
	}
	ans, release, err := p.data.find(ctx, db, req)
	if err == nil {
		release()
	}
	return ans, err
}

// index creates an index of db on fields.
func (p *findPlane) index(t testing.TB, db, name string, fields ...string) {
	t.Helper()
	raw, _ := json.Marshal(fields)
	var req indexRequest
	if err := json.Unmarshal([]byte(fmt.Sprintf(`{"index":{"fields":%s},"name":%q}`, raw, name)), &req); err != nil {
		t.Fatal(err)
	}
	if _, err := p.data.createIndex(t.Context(), db, req); err != nil {
		t.Fatalf("create index %s: %v", name, err)
	}
}

// TestFindEveryOperator runs every selector case through the whole path
// (fan-out to owners, reading, merging, paging by bookmark) with one and
// three workers, with and without indexes on the fields, and checks the
// keys found against the reference evaluation.
func TestFindEveryOperator(t *testing.T) {
	for _, workers := range []int{1, 3} {
		for _, indexed := range []bool{false, true} {
			t.Run(fmt.Sprintf("workers=%d,indexed=%v", workers, indexed), func(t *testing.T) {
				p := newFindPlane(t, workers, budgets{})
				p.put(t, "db", selectorDocs)
				if indexed {
					p.index(t, "db", "by-age", "age")
					p.index(t, "db", "by-name", "name")
					p.index(t, "db", "by-user-id", "user.id", "age")
				}
				for _, c := range selectorCases {
					sel := parseSelectorT(t, c.sel)
					_, want := matchingKeys(t, sel, selectorDocs)
					got := p.allKeys(t, "db", c.sel, 3)
					if !slices.Equal(got, want) {
						t.Errorf("find %s = %q, want %q", c.sel, got, want)
					}
				}
			})
		}
	}
}

// allKeys pages through the query sel (limit per page) and returns the
// keys found, sorted; it fails on a key found twice.
func (p *findPlane) allKeys(t testing.TB, db, sel string, limit int) []string {
	t.Helper()
	var got []string
	bookmark := ""
	for page := 0; ; page++ {
		body := fmt.Sprintf(`{"selector":%s,"limit":%d,"bookmark":%q}`, sel, limit, bookmark)
		ans := p.find(t, db, body)
		for _, k := range ans.Keys {
			if slices.Contains(got, k) {
				t.Fatalf("find %s: key %q on two pages", sel, k)
			}
			got = append(got, k)
		}
		if !ans.More {
			break
		}
		if page > 1000 {
			t.Fatalf("find %s: no end after 1000 pages", sel)
		}
		bookmark = ans.Bookmark
	}
	slices.Sort(got)
	return got
}

// TestFindSortAndFields: sort ascending and descending through a scan and
// an index, in CouchDB's collation order across types, with projection.
func TestFindSortAndFields(t *testing.T) {
	p := newFindPlane(t, 3, budgets{})
	p.put(t, "db", map[string]string{
		"k1": `{"v":3,"t":"c","x":{"y":1}}`, "k2": `{"v":"a","t":"a"}`, "k3": `{"v":null,"t":"b"}`,
		"k4": `{"v":1.5,"t":"d"}`, "k5": `{"v":[1],"t":"e"}`, "k6": `{"v":{"a":1},"t":"f"}`, "k7": `{"v":false}`,
		"k8": `{"t":"g"}`, "k9": `{"v":3,"t":"h"}`,
	})
	wantAsc := []string{"k3", "k7", "k4", "k1", "k9", "k2", "k5", "k6"}
	check := func(label string) {
		ans := p.find(t, "db", `{"selector":{"v":{"$exists":true}},"sort":["v"],"limit":100}`)
		if !slices.Equal(ans.Keys, wantAsc) {
			t.Errorf("%s: sort v asc = %q, want %q", label, ans.Keys, wantAsc)
		}
		ans = p.find(t, "db", `{"selector":{"v":{"$exists":true}},"sort":[{"v":"desc"}],"limit":100}`)
		desc := slices.Clone(wantAsc)
		slices.Reverse(desc)
		if !slices.Equal(ans.Keys, desc) {
			t.Errorf("%s: sort v desc = %q, want %q", label, ans.Keys, desc)
		}
	}
	check("scan")
	p.index(t, "db", "by-v", "v")
	check("index")
	ans := p.find(t, "db", `{"selector":{"v":3},"fields":["_id","x.y","nope"],"sort":["_id"]}`)
	if got := fmt.Sprintf("%s", ans.Docs); got != `[{"_id":"k1","x":{"y":1}} {"_id":"k9"}]` {
		t.Errorf("fields = %s", got)
	}
	// Without $exists, documents lacking v sort first (a scan: the index
	// cannot serve a query some matches of which lack its field).
	ans = p.find(t, "db", `{"selector":{},"sort":["v"],"limit":2}`)
	if !slices.Equal(ans.Keys, []string{"k8", "k3"}) {
		t.Errorf("sort over documents lacking the field = %q, want [k8 k3]", ans.Keys)
	}
}

// budgetDocs are n documents {"n": i, "g": i%3, "pad": ...} of about
// 200 bytes, keyed d0000...
func budgetDocs(n int) map[string]string {
	docs := map[string]string{}
	for i := range n {
		docs[fmt.Sprintf("d%04d", i)] = fmt.Sprintf(`{"n":%d,"g":%d,"pad":"%s"}`, i, i%3, strings.Repeat("p", 160))
	}
	return docs
}

// TestFindBudgetsEndPagesWithBookmarks: a scan budget, a time budget and
// a bytes budget each end pages early, saying so, and resuming from the
// bookmarks gives every match exactly once, through a scan, an index read
// and a sorted plan.
func TestFindBudgetsEndPagesWithBookmarks(t *testing.T) {
	docs := budgetDocs(300)
	want := []string{}
	for k, d := range docs {
		if strings.Contains(d, `"g":0`) {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	budgetCases := []struct {
		name string
		lim  budgets
		warn string
	}{
		{"scan", budgets{findMaxScan: 40}, "-find-max-scan"},
		{"time", budgets{findTimeout: time.Nanosecond}, "-find-timeout"},
		{"bytes", budgets{maxDocument: 1024, maxResponse: 1500}, "-max-response-bytes"},
	}
	queries := []struct{ name, body string }{
		{"scan", `{"selector":{"g":0},"limit":1000`},
		{"index", `{"selector":{"g":0,"n":{"$gte":0}},"limit":1000`},
		{"index-sort", `{"selector":{"g":0,"n":{"$gte":0}},"sort":[{"n":"desc"}],"limit":1000`},
	}
	for _, bc := range budgetCases {
		p := newFindPlane(t, 3, bc.lim)
		p.put(t, "db", docs)
		p.index(t, "db", "by-n", "n")
		for _, qc := range queries {
			got, warned, pages := []string{}, false, 0
			bookmark := ""
			for ; pages < 1000; pages++ {
				ans := p.find(t, "db", qc.body+fmt.Sprintf(`,"bookmark":%q}`, bookmark))
				warned = warned || strings.Contains(ans.Warning, bc.warn)
				for _, k := range ans.Keys {
					if slices.Contains(got, k) {
						t.Fatalf("%s/%s: key %s on two pages", bc.name, qc.name, k)
					}
					got = append(got, k)
				}
				if !ans.More {
					break
				}
				bookmark = ans.Bookmark
			}
			if qc.name == "index-sort" {
				if !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(b, a) }) {
					t.Errorf("%s/%s: pages not in descending order: %q", bc.name, qc.name, got)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s/%s: %d keys over %d pages, want the %d matches once each", bc.name, qc.name, len(got), pages, len(want))
			}
			if !warned || pages < 2 {
				t.Errorf("%s/%s: %d pages, warned %v: the budget should have ended pages", bc.name, qc.name, pages, warned)
			}
		}
	}
}

// TestFindSortedNeedsEveryMatch: a sort no index serves is refused past
// the scan budget, naming the index to create, never answered from part
// of the matches.
func TestFindSortedNeedsEveryMatch(t *testing.T) {
	p := newFindPlane(t, 2, budgets{findMaxScan: 100})
	p.put(t, "db", budgetDocs(150))
	_, err := p.tryFind(t.Context(), "db", `{"selector":{"g":0},"sort":["n"]}`)
	msg, _ := clientMessage(err)
	if statusOf(err) != 413 || !strings.Contains(msg, "create an index") {
		t.Fatalf("sorted scan past the budget = %v (%d), want 413 naming the index to create", err, statusOf(err))
	}
	p.index(t, "db", "by-g-n", "g", "n")
	ans := p.find(t, "db", `{"selector":{"g":0,"n":{"$gt":10}},"sort":["g","n"],"limit":3}`)
	if !slices.Equal(ans.Keys, []string{"d0012", "d0015", "d0018"}) {
		t.Errorf("sorted by the index = %q", ans.Keys)
	}
}

// findSpy is the router as the finds of a test call it: it notes, for
// each find (its number in the context, findIDKey), the bytes of
// documents its calls were answered, and checks at every call that the
// finds still running hold them in the read budget.
type findSpy struct {
	*router
	reads *byteBudget
	mu    sync.Mutex
	finds map[int]*spiedFind
	// worst is the most the documents of the running finds exceeded
	// what the budget counted, at any call; peak the most they held.
	worst, peak int64
}

// spiedFind is one find as findSpy sees it.
type spiedFind struct {
	ctx context.Context // of its latest call
	// answered: its documents so far; kept: those of them answered
	// before its latest call, which the find had added to what it holds.
	answered, kept int64
}

type findIDKey struct{}

func (s *findSpy) findCall(ctx context.Context, m findMembers, i int, db string, op *pb.FindOp) (*pb.FindResult, error) {
	id, ok := ctx.Value(findIDKey{}).(int)
	if !ok { // not a find's (building an index)
		return s.router.findCall(ctx, m, i, db, op)
	}
	s.mu.Lock()
	f := s.finds[id]
	if f == nil {
		f = &spiedFind{}
		s.finds[id] = f
	}
	f.ctx, f.kept = ctx, f.answered
	// The budget first: a find gives its room back only after its calls'
	// context ended, so one whose room is not counted here is left out.
	used, held := s.reads.used.Load(), int64(0)
	for _, f := range s.finds {
		if f.ctx.Err() == nil {
			held += f.kept
		}
	}
	s.worst, s.peak = max(s.worst, held-used), max(s.peak, held)
	s.mu.Unlock()
	res, err := s.router.findCall(ctx, m, i, db, op)
	n := int64(0)
	for _, m := range res.GetMatches() {
		n += int64(len(m.Doc))
	}
	s.mu.Lock()
	f.answered += n
	s.mu.Unlock()
	return res, err
}

// TestFindSortedHeld: the documents a sorted query keeps while it sorts
// (every match, up to skip+limit) are held in the in-flight read budget,
// as every document read for an answer is, beyond the room of the page
// the query takes before it runs. They were not: a sorted query held up
// to four pages' bytes (64 MiB by default) outside the budget, and
// concurrent ones as many times. One query, then 32 at once over a
// budget that holds the matches of a few: the documents the running
// queries keep never exceed what the budget counts; each query answers
// its first match, or 503 for want of room; the budget is empty after.
func TestFindSortedHeld(t *testing.T) {
	lim := budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10}
	p := newFindPlane(t, 1, lim)
	spy := &findSpy{router: p.rt, reads: p.data.reads, finds: map[int]*spiedFind{}}
	p.data.proc = spy
	docs := map[string]string{}
	for i := range 6 {
		docs[fmt.Sprintf("d%d", i)] = fmt.Sprintf(`{"n":%d,"g":0,"pad":%q}`, 5-i, strings.Repeat("p", 10<<10))
	}
	p.put(t, "plain", docs)
	p.put(t, "indexed", docs)
	p.index(t, "indexed", "by-g", "g")
	// Sorted by n, which no index serves: a scan, and an index read.
	queries := []string{"plain", "indexed"}
	const body = `{"selector":{"g":0},"sort":["n"],"limit":10}`
	find := func(id int) (*findAnswer, error) {
		return p.tryFind(context.WithValue(t.Context(), findIDKey{}, id), queries[id%2], body)
	}
	check := func(what string) {
		t.Helper()
		spy.mu.Lock()
		defer spy.mu.Unlock()
		if spy.worst > 0 {
			t.Errorf("%s: the documents sorted queries kept exceeded the read budget's count by %d bytes", what, spy.worst)
		}
		if page := lim.findBytes(); spy.peak <= page {
			t.Errorf("%s: the queries kept %d bytes at most, not over a page's room (%d): the case was not played", what, spy.peak, page)
		}
		if used := p.data.reads.used.Load(); used != 0 {
			t.Errorf("%s: after the queries the read budget holds %d bytes, want 0", what, used)
		}
	}

	for id := range 2 {
		ans, err := find(id)
		if err != nil || len(ans.Keys) == 0 || ans.Keys[0] != "d5" {
			t.Fatalf("a sorted query of %s = %v, %v; want d5 first", queries[id], ans, err)
		}
	}
	check("one query at a time")

	var wg sync.WaitGroup
	var answered, refused sync.Map
	for id := 2; id < 34; id++ { // new numbers: each find counts its own
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := find(id)
			switch msg := publicMessage(err, "r1"); {
			case err == nil && len(ans.Keys) > 0 && ans.Keys[0] == "d5":
				answered.Store(id, true)
			case errors.Is(err, errBusy) && statusOf(err) == 503 && msg == busyAnswer("r1"):
				refused.Store(id, true)
			default:
				t.Errorf("a sorted query of %s among 32 = %v, %v (%q); want d5 first or errBusy's 503", queries[id%2], ans, err, msg)
			}
		}()
	}
	wg.Wait()
	check("32 queries at once")
	n := 0
	answered.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Errorf("none of 32 sorted queries at once was answered")
	}
	t.Logf("32 sorted queries at once: %d answered, the others 503; the documents they kept peaked at %d bytes of a budget of %d", n, spy.peak, lim.inflightRead())
}

// TestFindIndexCoherentUnderWrites: writers change, delete and recreate
// entities while queries read an index and scan: no answer holds a
// document that does not match, nor a key twice; once the writers stop,
// the index and the scan both answer exactly the entities that match, and
// again after a worker joins and another leaves (the indexes are built
// anew for the new owners).
func TestFindIndexCoherentUnderWrites(t *testing.T) {
	p := newFindPlane(t, 3, budgets{})
	p.index(t, "db", "by-state", "state")
	const n = 120
	states := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	ctx, stop := context.WithTimeout(t.Context(), 2*time.Second)
	defer stop()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("e%03d", (i*7+w*31)%n)
				op := &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_PUT,
					Payload: []byte(fmt.Sprintf(`{"state":%q,"w":%d,"i":%d}`, states[(i+w)%3], w, i))}
				if i%5 == 4 {
					op = &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_DELETE}
				}
				if _, err := p.data.write(context.Background(), []*pb.EntityOp{op}); err != nil && statusOf(err) != 404 {
					t.Errorf("write %s: %v", key, err)
					return
				}
			}
		}()
	}
	queries := 0
	for ctx.Err() == nil {
		for _, body := range []string{`{"selector":{"state":"a"},"limit":1000}`, `{"selector":{"$or":[{"state":"a"}]},"limit":1000}`,
			`{"selector":{"state":{"$gt":"a"}},"sort":["state"],"limit":1000}`} {
			ans := p.find(t, "db", body)
			checkFound(t, body, ans)
			queries++
		}
	}
	wg.Wait()
	t.Logf("%d queries during the writes", queries)
	p.checkExact(t)
	p.rt.add(&workerConn{id: "w9", proc: newTestWorker(t, "w9", p.st)})
	p.rt.markUnavailable("w1", "test")
	for i := range 30 {
		p.put(t, "db", map[string]string{fmt.Sprintf("e%03d", i): fmt.Sprintf(`{"state":%q}`, states[i%3])})
	}
	p.checkExact(t)
}

// checkFound checks that every document of ans matches body's selector
// and that no key comes twice.
func checkFound(t *testing.T, body string, ans *findAnswer) {
	t.Helper()
	var req findRequest
	json.Unmarshal([]byte(body), &req)
	sel := parseSelectorT(t, string(req.Selector))
	for i, k := range ans.Keys {
		if !sel.matches(k, ans.Docs[i]) {
			t.Errorf("%s: %s = %s does not match", body, k, ans.Docs[i])
		}
		if slices.Index(ans.Keys, k) != i {
			t.Errorf("%s: %s found twice", body, k)
		}
	}
}

// checkExact compares the index's, a scan's and a sorted answer of
// {"state": "a"} with the entities read one by one.
func (p *findPlane) checkExact(t *testing.T) {
	t.Helper()
	want := []string{}
	keys, _, err := p.data.listKeys(t.Context(), "db", keyQuery{limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		resp, held, err := p.data.get(t.Context(), "db", k, nil)
		if err != nil {
			t.Fatal(err)
		}
		held.release()
		if strings.Contains(string(resp.Result), `"state":"a"`) {
			want = append(want, k)
		}
	}
	for _, body := range []string{`{"selector":{"state":"a"},"limit":1000}`, `{"selector":{"$or":[{"state":"a"}]},"limit":1000}`,
		`{"selector":{"state":{"$lte":"a"}},"sort":["state"],"limit":1000}`} {
		ans := p.find(t, "db", body)
		got := slices.Sorted(slices.Values(ans.Keys))
		if !slices.Equal(got, want) {
			t.Errorf("after the writes %s = %q, want %q", body, got, want)
		}
	}
}

// TestFindPermissions plays the attacker with API keys: a key limited to
// some databases cannot query, explain or list the indexes of another; a
// write-only key cannot query at all (403, and nothing of a document in
// the answer); a read-only key can query but not create or delete
// indexes.
func TestFindPermissions(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/secretdb", testAdminKey, `{"s1":{"pin":"4242-SECRET"}}`, 200)
	ts.mustDo(t, "PUT", "/entity/chatdb", testAdminKey, `{"c1":{"user":"u1"}}`, 200)
	scoped := ts.createKey(t, `{"name":"scoped","permissions":["read","write"],"databases":["chat*"]}`)
	writer := ts.createKey(t, `{"name":"writer","permissions":["write"]}`)
	reader := ts.createKey(t, `{"name":"reader","permissions":["read"]}`)
	find := `{"selector":{"pin":{"$regex":"^4"}}}`
	cases := []struct {
		key, method, path, body string
		want                    int
	}{
		{scoped.Secret, "POST", "/api/databases/secretdb/find", find, 403},
		{scoped.Secret, "POST", "/api/databases/secretdb/explain", find, 403},
		{scoped.Secret, "GET", "/api/databases/secretdb/index", "", 403},
		{scoped.Secret, "POST", "/api/databases/secretdb/index", `{"index":{"fields":["pin"]}}`, 403},
		{scoped.Secret, "POST", "/api/databases/chatdb/find", `{"selector":{"user":"u1"}}`, 200},
		{writer.Secret, "POST", "/api/databases/secretdb/find", find, 403},
		{writer.Secret, "POST", "/api/databases/secretdb/explain", find, 403},
		{writer.Secret, "GET", "/api/databases/secretdb/index", "", 403},
		{reader.Secret, "POST", "/api/databases/secretdb/index", `{"index":{"fields":["pin"]}}`, 403},
		{reader.Secret, "DELETE", "/api/databases/secretdb/index/x", "", 403},
		{reader.Secret, "POST", "/api/databases/secretdb/find", find, 200},
		{"", "POST", "/api/databases/secretdb/find", find, 401},
	}
	for _, c := range cases {
		rec := ts.do(c.method, c.path, c.key, c.body, "")
		if rec.Code != c.want {
			t.Errorf("%s %s with %s = %d %s, want %d", c.method, c.path, c.key[:min(len(c.key), 6)], rec.Code, rec.Body, c.want)
		}
		if c.want != 200 && strings.Contains(rec.Body.String(), "SECRET") {
			t.Errorf("%s %s refused with a document's value: %s", c.method, c.path, rec.Body)
		}
	}
}

// TestFindRequestRefused: what the endpoint does not support is a 400
// naming it; a bookmark of another query is refused.
func TestFindRequestRefused(t *testing.T) {
	p := newFindPlane(t, 1, budgets{})
	p.put(t, "db", map[string]string{"k": `{"a":1}`})
	other := p.find(t, "db", `{"selector":{"a":1},"limit":1}`).Bookmark
	cases := []struct{ body, want string }{
		{`{}`, `must have a "selector"`},
		{`{"selector":{},"partition":"x"}`, `member "partition" of CouchDB's _find is not supported`},
		{`{"selector":{},"bogus":1}`, `unknown member "bogus"`},
		{`{"selector":{},"r":2}`, `"r": 2 is not supported`},
		{`{"selector":{},"conflicts":true}`, `"conflicts": true is not supported`},
		{`{"selector":{},"sort":[{"a":"asc"},{"b":"desc"}]}`, "same direction"},
		{`{"selector":{},"sort":[{"a":"up"}]}`, `{"field": "asc"|"desc"}`},
		{`{"selector":{},"limit":-1}`, `"limit" must be`},
		{`{"selector":{},"skip":100000}`, `"skip" must be`},
		{`{"selector":{"a":{"$where":1}}}`, `operator "$where" is not supported`},
		{`{"selector":{},"bookmark":"nope"}`, "not a bookmark"},
		{fmt.Sprintf(`{"selector":{"a":2},"bookmark":%q}`, other), "belongs to another query"},
		{`{"selector":{},"allow_fallback":false}`, "no index of database"},
		// A path ending in an escape of nothing, in each place a path goes.
		{`{"selector":{"a\\":1}}`, `field "a\\" ends in a backslash`},
		{`{"selector":{"a":{"b\\":1}}}`, `field "a.b\\" ends in a backslash`},
		{`{"selector":{"a\\.b\\":{"$exists":true}}}`, `field "a\\.b\\" ends in a backslash`},
		{`{"selector":{"\\":1}}`, `field "\\" ends in a backslash`},
		{`{"selector":{},"fields":["a","b\\"]}`, `field "b\\" ends in a backslash`},
		{`{"selector":{},"sort":["a\\"]}`, `field "a\\" ends in a backslash`},
		{`{"selector":{},"sort":[{"a.\\":"desc"}]}`, `field "a.\\" ends in a backslash`},
	}
	for _, c := range cases {
		_, err := p.tryFind(t.Context(), "db", c.body)
		msg, _ := clientMessage(err)
		if statusOf(err) != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("find %s = %v (%d), want 400 %q", c.body, err, statusOf(err), c.want)
		}
	}
}

// TestIndexDefinitions: create answers "exists" for the same fields, 409
// for a name taken by other fields, 413 past the limit of indexes; the
// listing is CouchDB's; delete is 404 for an unknown name; deleting the
// database deletes its indexes.
func TestIndexDefinitions(t *testing.T) {
	p := newFindPlane(t, 2, budgets{})
	p.put(t, "db", map[string]string{"k": `{"a":1,"b":2}`})
	create := func(body string) (indexCreated, error) {
		var req indexRequest
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		return p.data.createIndex(t.Context(), "db", req)
	}
	if ans, err := create(`{"index":{"fields":["a"]},"name":"by-a"}`); err != nil || ans.Result != "created" {
		t.Fatalf("create = %+v, %v", ans, err)
	}
	if ans, err := create(`{"index":{"fields":[{"a":"asc"}]},"name":"other"}`); err != nil || ans != (indexCreated{"exists", "by-a"}) {
		t.Errorf("create of the same fields = %+v, %v, want exists by-a", ans, err)
	}
	if _, err := create(`{"index":{"fields":["a","b\\"]},"name":"by-b"}`); statusOf(err) != 400 {
		t.Errorf("create on a field ending in a backslash = %v, want 400", err)
	}
	if _, err := create(`{"index":{"fields":["b"]},"name":"by-a"}`); statusOf(err) != 409 {
		t.Errorf("create under a taken name = %v, want 409", err)
	}
	for i := 1; i < maxIndexes; i++ {
		if _, err := create(fmt.Sprintf(`{"index":{"fields":["f%d"]}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := create(`{"index":{"fields":["last"]}}`); statusOf(err) != 413 {
		t.Errorf("index %d = %v, want 413", maxIndexes+1, err)
	}
	list, err := p.data.listIndexes(t.Context(), "db")
	if err != nil || list.TotalRows != maxIndexes+1 || list.Indexes[0].Name != "_all_docs" || list.Indexes[1].Name != "by-a" {
		t.Errorf("list = %+v, %v", list, err)
	}
	if err := p.data.deleteIndex(t.Context(), "db", "nope"); statusOf(err) != 404 {
		t.Errorf("delete unknown = %v, want 404", err)
	}
	// A name no index could have is 400, as it is when creating one.
	for _, name := range []string{"a\x00b", "a b", strings.Repeat("n", maxIndexNameLen+1)} {
		if err := p.data.deleteIndex(t.Context(), "db", name); statusOf(err) != 400 {
			t.Errorf("delete %q = %v, want 400", name, err)
		}
	}
	if _, err := p.data.deleteDatabase(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	if list, _ := p.data.listIndexes(t.Context(), "db"); list.TotalRows != 1 {
		t.Errorf("after deleting the database, indexes = %+v", list.Indexes)
	}
}
