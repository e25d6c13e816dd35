package main

// Tests of the budgets of answers (read amplification): one
// answer's documents within -max-response-bytes, ending early with what
// follows; the documents read and not yet sent within
// -max-inflight-read-bytes; the entity cache within -entity-cache-bytes.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// putSized stores n documents of about size bytes each in db, keys
// d000, d001, ...
func putSized(t *testing.T, fe *frontEnds, db string, n, size int) {
	t.Helper()
	for i := range n {
		doc := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", size-20))
		if _, err := fe.client.Process(t.Context(), clientProcess("PUT", db, fmt.Sprintf("d%03d", i), testAdminKey, []byte(doc))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListIncludeDocsEndsAtResponseBudget: ten documents of about 900
// bytes (with key and ETag under 1,000) under a response budget of 3,000 bytes come three to a page, each
// page with a next cursor, and walking the cursors gives every document
// once, in key order.
func TestListIncludeDocsEndsAtResponseBudget(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 1200, maxResponse: 3000})
	putSized(t, fe, "big", 10, 900)
	var got []string
	cursor := ""
	for pages := 1; ; pages++ {
		q := url.Values{"include_docs": {"true"}, "limit": {"10"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		code, body := restCall{method: "GET", target: "/api/databases/big/keys?" + q.Encode()}.do(fe.rest, testAdminKey)
		var page struct {
			Items []struct {
				Key, ETag string
				Doc       struct{ I int }
			}
			Next string
		}
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
			t.Fatalf("page %d = %d %.200s (%v)", pages, code, body, err)
		}
		if len(page.Items) != min(3, 10-len(got)) {
			t.Errorf("page %d holds %d documents, want %d (three fit in 3,000 bytes)", pages, len(page.Items), min(3, 10-len(got)))
		}
		for _, it := range page.Items {
			if it.Key != fmt.Sprintf("d%03d", it.Doc.I) || it.ETag == "" {
				t.Errorf("item %+v: key and document differ, or no ETag", it)
			}
			got = append(got, it.Key)
		}
		if cursor = page.Next; cursor == "" || pages > 10 {
			break
		}
	}
	if want := "d000 d001 d002 d003 d004 d005 d006 d007 d008 d009"; strings.Join(got, " ") != want {
		t.Errorf("walking the pages gave %q, want %q", got, want)
	}
}

// getManyPage is the answer of POST /api/databases/{db}/get.
type getManyPage struct {
	Documents map[string]json.RawMessage
	ETags     map[string]string
	Missing   []string
	Remaining []string
}

// TestGetManyEndsAtResponseBudget: a get of ten documents of about 900
// bytes, a missing key and repeats under a response budget of 3,000 bytes
// answers the first three documents found, the missing key met on the way
// and the keys not answered, in the order asked and each once; asking
// again for the remaining ones until none remain gives every document.
func TestGetManyEndsAtResponseBudget(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 1200, maxResponse: 3000})
	putSized(t, fe, "big", 10, 900)
	keys := []string{"d009", "nope", "d000", "d009", "d001", "d002", "d003", "d004", "d005", "d006", "d007", "d008"}
	first := getManyREST(t, fe, keys)
	if len(first.Documents) != 3 || first.Documents["d009"] == nil || first.Documents["d001"] == nil ||
		strings.Join(first.Missing, " ") != "nope" || strings.Join(first.Remaining, " ") != "d002 d003 d004 d005 d006 d007 d008" {
		t.Errorf("first answer: documents of %d keys, missing %q, remaining %q; want d009, d000, d001, missing nope, remaining d002..d008",
			len(first.Documents), first.Missing, first.Remaining)
	}
	docs, asks := map[string]bool{}, 0
	for pending := keys; len(pending) > 0 && asks < 10; asks++ {
		page := getManyREST(t, fe, pending)
		for k, d := range page.Documents {
			var v struct{ I int }
			if json.Unmarshal(d, &v) != nil || fmt.Sprintf("d%03d", v.I) != k || page.ETags[k] == "" {
				t.Errorf("document of %s = %.40s, ETag %q", k, d, page.ETags[k])
			}
			docs[k] = true
		}
		pending = page.Remaining
	}
	if len(docs) != 10 || asks != 4 {
		t.Errorf("asking for the remaining keys until none remain gave %d documents in %d answers, want 10 in 4", len(docs), asks)
	}
}

// getManyREST asks POST /api/databases/big/get for keys.
func getManyREST(t *testing.T, fe *frontEnds, keys []string) getManyPage {
	t.Helper()
	b, _ := json.Marshal(map[string][]string{"keys": keys})
	code, body := restCall{method: "POST", target: "/api/databases/big/get", body: string(b)}.do(fe.rest, testAdminKey)
	var page getManyPage
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || page.Remaining == nil || page.Missing == nil {
		t.Fatalf("POST /api/databases/big/get = %d %.200s (%v), want 200 with missing and remaining", code, body, err)
	}
	return page
}

// TestResponseBudgetHoldsOneDocument: a document larger than the response
// budget still comes, alone: an answer always holds at least one.
func TestResponseBudgetHoldsOneDocument(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 5000, maxResponse: 100})
	putSized(t, fe, "big", 2, 3000)
	page := getManyREST(t, fe, []string{"d000", "d001"})
	if len(page.Documents) != 1 || strings.Join(page.Remaining, " ") != "d001" {
		t.Errorf("get of two 3,000-byte documents under a 100-byte budget: %d documents, remaining %q; want one, remaining d001", len(page.Documents), page.Remaining)
	}
}

// failingReads fails the GET of one key; everything else goes to next.
type failingReads struct {
	next processor
	key  string
}

func (f failingReads) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if op.GetOperation() == pb.Operation_GET && op.GetEntityKey() == f.key {
		return nil, fmt.Errorf("read %s: disk on fire: %w", f.key, errCorrupt)
	}
	return f.next.Process(ctx, op)
}

// TestAnswerEndsEarlyOnFailedRead: a read that fails after the first
// document was sent ends the answer there, saying what follows (next,
// remaining), never a silently partial answer; asking for the rest then
// gets the error, as a failure before the first document does.
func TestAnswerEndsEarlyOnFailedRead(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	putSized(t, fe, "big", 4, 100)
	fe.data.proc = failingReads{next: fe.data.proc, key: "d002"}
	page := getManyREST(t, fe, []string{"d000", "d001", "d002", "d003"})
	if len(page.Documents) != 2 || strings.Join(page.Remaining, " ") != "d002 d003" {
		t.Errorf("get-many with d002 failing: %d documents, remaining %q; want d000, d001 and remaining d002 d003", len(page.Documents), page.Remaining)
	}
	code, body := restCall{method: "POST", target: "/api/databases/big/get", body: `{"keys":["d002","d003"]}`}.do(fe.rest, testAdminKey)
	if code != 500 || !strings.Contains(body, "internal error (request ID") {
		t.Errorf("get-many of the remaining keys = %d %s, want 500 naming a request ID", code, body)
	}
	code, body = restCall{method: "GET", target: "/api/databases/big/keys?include_docs=true"}.do(fe.rest, testAdminKey)
	var list struct {
		Items []struct{ Key string }
		Next  string
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Items) != 2 || list.Next != encodeCursor("d001") {
		t.Errorf("listing with d002 failing = %d %.300s, want d000, d001 and next after d001", code, body)
	}
}

// TestByteBudget: acquire takes room while there is some, waits in
// arrival order otherwise, gives up when its context ends (taking
// nothing), and release lets the next waiters in.
func TestByteBudget(t *testing.T) {
	b := newByteBudget(10)
	ctx := t.Context()
	if err := b.acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.acquire(short, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire(5) with 4 free = %v, want to wait until the deadline", err)
	}
	var wg sync.WaitGroup
	for i, n := range []int64{8, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.acquire(ctx, n); err != nil {
				t.Error(err)
			}
		}()
		waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == i+1 })
	}
	// 1 byte would fit, but waits behind the 8 that came first.
	b.mu.Lock()
	used, waiting := b.used.Load(), len(b.waiters)
	b.mu.Unlock()
	if used != 6 || waiting != 2 {
		t.Errorf("with 6 of 10 taken and waiters for 8 then 1: used %d, %d waiting; want 6, 2", used, waiting)
	}
	b.release(6) // the 8 fits, then the 1
	wg.Wait()
	b.release(9)
	if b.used.Load() != 0 || len(b.waiters) != 0 {
		t.Errorf("after every release: used %d, %d waiters; want 0, 0", b.used.Load(), len(b.waiters))
	}
}

// TestByteBudgetConcurrent: many readers taking and giving back room at
// once, through the lock-free steps and the waiters' line, never hold
// more than the capacity together, and none is left waiting for room
// that was given back (a lost wake-up would hang the test).
func TestByteBudgetConcurrent(t *testing.T) {
	const capacity = 10
	b := newByteBudget(capacity)
	var held, most atomic.Int64
	// A lost wake-up shows as a waiter that gives up here.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := int64((g+i)%capacity + 1)
				if err := b.acquire(ctx, n); err != nil {
					t.Errorf("acquire(%d) with %d of %d used: %v", n, b.used.Load(), capacity, err)
					return
				}
				h := held.Add(n)
				for m := most.Load(); h > m && !most.CompareAndSwap(m, h); m = most.Load() {
				}
				if i%3 == 0 {
					runtime.Gosched()
				}
				// A read keeps part of its room and gives the rest back
				// first, as keepRead does.
				keep := n / 2
				held.Add(keep - n)
				b.release(n - keep)
				held.Add(-keep)
				b.release(keep)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > capacity {
		t.Errorf("readers held %d bytes at once; the capacity is %d", m, capacity)
	}
	if used, waiting := b.used.Load(), b.waiting.Load(); used != 0 || waiting != 0 {
		t.Errorf("after every release: used %d, %d waiting; want 0, 0", used, waiting)
	}
}

// waitFor polls ok for up to 5 s.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not reached in 5 s")
		}
	}
}

// slowReads delays every GET and counts how many are under way at once.
type slowReads struct {
	next      processor
	now, most atomic.Int64
	delay     time.Duration
}

func (s *slowReads) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if op.GetOperation() != pb.Operation_GET {
		return s.next.Process(ctx, op)
	}
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	time.Sleep(s.delay)
	return s.next.Process(ctx, op)
}

// TestInflightReadsBounded: with an in-flight read budget of three times
// the document limit, twelve concurrent GETs (REST, and gRPC's entry of
// the data plane) are never more than three reads at once; each gets its
// document. (The gRPC server is not used: it would read the data plane's
// processor, swapped here, without synchronising with the test.)
func TestInflightReadsBounded(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 1000, maxInflightRead: 3000})
	putSized(t, fe, "big", 12, 500)
	slow := &slowReads{next: fe.data.proc, delay: 20 * time.Millisecond}
	fe.data.proc = slow
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("d%03d", i)
			if i%2 == 0 {
				if code, body := (restCall{method: "GET", target: "/entity/big?key=" + key}).do(fe.rest, testAdminKey); code != 200 || !strings.Contains(body, `"pad"`) {
					t.Errorf("REST GET %s = %d %.80s", key, code, body)
				}
				return
			}
			op := &pb.EntityOp{DatabaseName: "big", EntityKey: key, Operation: pb.Operation_GET}
			if resp, err := fe.data.process(context.Background(), principal{admin: true}, "", op); err != nil || len(resp.GetResult()) == 0 {
				t.Errorf("gRPC's GET %s = %v", key, err)
			}
		}()
	}
	wg.Wait()
	if most := slow.most.Load(); most > 3 || most < 2 {
		t.Errorf("at most %d reads under way at once, want 3 (the budget holds three documents of the limit)", most)
	}
	if used := fe.data.reads.used.Load(); used != 0 {
		t.Errorf("read budget holds %d bytes after every answer, want 0", used)
	}
}

// stallOwner holds every GET of the entities the workers stalled own
// until release is closed or the GET's context ends, counting those
// held; everything else goes to the router, whose read shares
// (readSharer) it keeps.
type stallOwner struct {
	*router
	stalled []string
	release chan struct{}
	held    atomic.Int64
	most    atomic.Int64
}

// cachedRead sends every read through Process.
func (s *stallOwner) cachedRead(context.Context, string, string, readPlace, *pb.WorkerResponse) (*pb.WorkerResponse, bool) {
	return nil, false
}

func (s *stallOwner) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if err := s.stall(ctx, op); err != nil {
		return nil, err
	}
	return s.router.Process(ctx, op)
}

// readAt stalls as Process does.
func (s *stallOwner) readAt(ctx context.Context, op *pb.EntityOp, at readPlace) (*pb.WorkerResponse, error) {
	if err := s.stall(ctx, op); err != nil {
		return nil, err
	}
	return s.router.readAt(ctx, op, at)
}

// stall holds a read of a stalled worker's entities until release, or
// until ctx ends, reporting why.
func (s *stallOwner) stall(ctx context.Context, op *pb.EntityOp) error {
	if op.GetOperation() == pb.Operation_GET {
		if c := s.candidates(op.GetDatabaseName(), op.GetEntityKey()); slices.Contains(s.stalled, c[0].id) {
			n := s.held.Add(1)
			for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
			}
			defer s.held.Add(-1)
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// newStallRig is a router over in-process workers ids of one store,
// under budgets lim, a stallOwner holding the GETs of the workers
// stalled, and a data plane over it; keys holds at least want[id] keys
// of database "db" that worker id owns, each stored as a document of
// about 900 bytes; read reads one through the data plane.
func newStallRig(t *testing.T, lim budgets, ids, stalled []string, want map[string]int) (
	rt *router, stall *stallOwner, data *dataPlane, keys map[string][]string, read func(key string) error) {
	t.Helper()
	st := newMemStore()
	rt = newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	for _, id := range ids {
		w := newTestWorker(t, id, st)
		w.lim = lim
		rt.add(&workerConn{id: id, proc: w, stats: w.stats})
	}
	stall = &stallOwner{router: rt, stalled: stalled, release: make(chan struct{})}
	data = newDataPlane(stall, newCatalog(st), newSchemaRegistry(st, lim), lim)
	keys = map[string][]string{}
	short := func() bool {
		for id, n := range want {
			if len(keys[id]) < n {
				return true
			}
		}
		return false
	}
	for i := 0; short(); i++ {
		k := fmt.Sprint("k", i)
		owner := ids[rendezvousOrder("db", k, ids)[0]]
		keys[owner] = append(keys[owner], k)
		doc := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 900))
		if _, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: k, Operation: pb.Operation_PUT, Payload: []byte(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	read = func(key string) error {
		_, held, err := data.get(t.Context(), "db", key, nil)
		held.release()
		return err
	}
	return rt, stall, data, keys, read
}

// TestStalledOwnerHoldsHalfTheReadBudget: with two workers and a read
// budget of four documents of the limit, eight reads of entities whose
// owner does not answer hold two documents' room at most (its share,
// half the budget), and reads of the other worker's entities are
// answered meanwhile. Once the owner answers, every held read gets its
// document and the budget and the share are empty again.
func TestStalledOwnerHoldsHalfTheReadBudget(t *testing.T) {
	lim := budgets{maxDocument: 1000, maxInflightRead: 4000}
	rt, stall, data, keys, read := newStallRig(t, lim, []string{"wa", "wb"}, []string{"wa"}, map[string]int{"wa": 8, "wb": 4})
	stalled := make(chan error, 8)
	for _, k := range keys["wa"][:8] {
		go func() { stalled <- read(k) }()
	}
	waitFor(t, func() bool { return stall.held.Load() >= 2 })
	time.Sleep(50 * time.Millisecond) // for any more to arrive
	for _, k := range keys["wb"][:4] {
		done := make(chan error, 1)
		go func() { done <- read(k) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("read of %s (owner answering) = %v", k, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("read of %s (owner answering) waits while %d reads wait at the other owner", k, stall.held.Load())
		}
	}
	close(stall.release)
	for range 8 {
		if err := <-stalled; err != nil {
			t.Errorf("read held at the stalled owner = %v", err)
		}
	}
	if most := stall.most.Load(); most != 2 {
		t.Errorf("%d reads waited at the stalled owner at once, want 2 (its share: half of four documents)", most)
	}
	if used := data.reads.used.Load(); used != 0 {
		t.Errorf("read budget holds %d bytes after every answer, want 0", used)
	}
	if share, _ := rt.readShare("db", keys["wa"][0], 0); share.used.Load() != 0 {
		t.Errorf("the stalled owner's share holds %d bytes after every answer, want 0", share.used.Load())
	}
}

// TestStalledOwnersHoldHalfTheReadBudget: with three workers, two of
// which answer nothing, and a read budget of four documents of the
// limit, the two stalled owners' shares (two documents each) fill the
// budget at first; once their reads are overdue, they hold the overdue
// half (two documents) at most together: the reads over it end with
// errWorkerSlow's 503 and the stalled owners' next reads wait for room
// there, holding nothing. So the reads of the worker that answers are
// answered, within the overdue time at first and at once after. Once
// the stalled owners answer, every read not ended gets its document and
// every budget is empty again.
func TestStalledOwnersHoldHalfTheReadBudget(t *testing.T) {
	lim := budgets{maxDocument: 1000, maxInflightRead: 4000}
	rt, stall, data, keys, read := newStallRig(t, lim, []string{"wa", "wb", "wc"}, []string{"wa", "wb"},
		map[string]int{"wa": 6, "wb": 6, "wc": 8})
	data.overdueAfter = 300 * time.Millisecond
	stalled := make(chan error, 12)
	for _, k := range append(keys["wa"][:6], keys["wb"][:6]...) {
		go func() { stalled <- read(k) }()
	}
	waitFor(t, func() bool { return stall.held.Load() >= 4 })
	healthy := func(k string, within time.Duration) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- read(k) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("read of %s (owner answering) = %v", k, err)
			}
		case <-time.After(within):
			t.Fatalf("read of %s (owner answering) waits %v while %d reads wait at the stalled owners (budget used %d of 4000)",
				k, within, stall.held.Load(), data.reads.used.Load())
		}
		t.Logf("read of %s (owner answering) answered after %v", k, time.Since(start).Round(time.Millisecond))
	}
	// The budget is full of the stalled owners' reads: the first read
	// of wc's entities waits until they are overdue.
	healthy(keys["wc"][0], scaled(5*time.Second))
	waitFor(t, func() bool { return stall.held.Load() <= 2 })
	for _, k := range keys["wc"][1:8] {
		healthy(k, scaled(5*time.Second))
	}
	// The reads waiting at the stalled owners hold the overdue half, and
	// the budget holds nothing else.
	waitFor(t, func() bool { return stall.held.Load() <= 2 && data.reads.used.Load() <= 2000 })
	close(stall.release)
	ended := 0
	for range 12 {
		err := <-stalled
		switch {
		case err == nil:
		case errors.Is(err, errWorkerSlow) && statusOf(err) == 503 && strings.Contains(publicMessage(err, "r1"), "did not answer in time"):
			ended++
		default:
			t.Errorf("read held at a stalled owner = %v, want its document or errWorkerSlow's 503", err)
		}
	}
	if ended == 0 || ended > 10 {
		t.Errorf("%d of the 12 reads held at the stalled owners ended with 503, want some (over the overdue half) and not all", ended)
	}
	if used := data.reads.used.Load(); used != 0 {
		t.Errorf("read budget holds %d bytes after every answer, want 0", used)
	}
	if used := data.late.used.Load(); used != 0 {
		t.Errorf("the overdue half holds %d bytes after every answer, want 0", used)
	}
	for _, id := range []string{"wa", "wb"} {
		if share, _ := rt.readShare("db", keys[id][0], 0); share.used.Load() != 0 {
			t.Errorf("stalled owner %s's share holds %d bytes after every answer, want 0", id, share.used.Load())
		}
	}
}

// busyAnswer is errBusy's sentence for request ID id: a refusal of the
// server's own admission limit, which once read "storage or workers
// unavailable" and sent an operator to look at storage and workers.
func busyAnswer(id string) string {
	return "the server is at its limit of concurrent reads; try again shortly (request ID " + id + ")"
}

// TestReadBudgetFullIsBusy: a request refused because the in-flight read
// budget is full answers 503 with errBusy's sentence and logs its cause
// under the request ID, at warn (TestFailureLogLevels). A sorted find
// whose documents find no room while another sorted query waits for it
// is refused at once (the test holds that query's turn,
// dataPlane.sortWait); a GET that finds none waits, and is refused when
// its wait for room ends (dataPlane.roomWait, here shortened from
// callWait's 15 s). Across the gRPC hop, a worker's busy answer comes
// back as errBusy, a 503 that nothing was written by and that a query is
// not planned again for (retryFind).
func TestReadBudgetFullIsBusy(t *testing.T) {
	lim := budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10}
	fe := newFrontEnds(t, lim)
	var logs syncBuffer
	var err error
	if fe.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	for i := range 6 { // 60 KB sorted by n: more than a page's room
		body := fmt.Sprintf(`{"d%d": {"n": %d, "g": 0, "pad": %q}}`, i, 5-i, strings.Repeat("p", 10<<10))
		if code, answer := (restCall{method: "PUT", target: "/entity/busy", body: body}).do(fe.rest, testAdminKey); code != 200 {
			t.Fatalf("PUT d%d = %d %s", i, code, answer)
		}
	}
	reads := fe.data.reads
	page := min(lim.findBytes(), lim.inflightRead())
	if err := reads.acquire(t.Context(), reads.capacity-page); err != nil {
		t.Fatal(err)
	}
	fe.data.sortWait.Lock()
	find := restCall{method: "POST", target: "/api/databases/busy/find", body: `{"selector":{"g":0},"sort":["n"],"limit":10}`,
		header: []string{"X-Request-ID: busy-find-1"}}
	code, body := find.do(fe.rest, testAdminKey)
	fe.data.sortWait.Unlock()
	if want := `{"error":"` + busyAnswer("busy-find-1") + `"}` + "\n"; code != 503 || body != want {
		t.Errorf("sorted find with the read budget full = %d %q, want 503 %q", code, body, want)
	}
	lines := linesWith(parseLog(t, logs.String(), logFormatJSON), logLine{"msg": "request refused", "level": "WARN", "request_id": "busy-find-1"})
	if len(lines) != 1 || lines[0]["status"] != "503" || lines[0]["route"] != "POST /api/databases/{db}/find" ||
		!strings.Contains(lines[0]["err"], "no room in the read budget while another sorted query waits for it") {
		t.Errorf("log of the refused find = %v, want one WARN line naming request ID busy-find-1, status 503 and the budget:\n%s", lines, logs.String())
	}
	if used := reads.used.Load(); used != reads.capacity-page {
		t.Errorf("after the refused find the read budget holds %d bytes, want the test's %d", used, reads.capacity-page)
	}

	if err := reads.acquire(t.Context(), page); err != nil {
		t.Fatal(err)
	}
	fe.data.roomWait = 50 * time.Millisecond
	_, err = fe.data.process(t.Context(), principal{admin: true}, "", &pb.EntityOp{DatabaseName: "busy", EntityKey: "d0", Operation: pb.Operation_GET})
	if msg := publicMessage(err, "r1"); !errors.Is(err, errBusy) || statusOf(err) != 503 || !nothingWritten(err) || msg != busyAnswer("r1") {
		t.Errorf("GET with the read budget full = %v (%d, %q), want errBusy's 503 %q", err, statusOf(err), msg, busyAnswer("r1"))
	}
	// As a worker answers it (workerServer) and the main worker reads it.
	hop := withReason(status.New(grpcCode(err), publicMessage(err, "r1")), err).Err()
	back := errorFromStatus(hop, false)
	if status.Code(hop) != codes.Unavailable || !errors.Is(back, errBusy) || statusOf(back) != 503 || retryFind(back) ||
		publicMessage(back, "r2") != busyAnswer("r2") {
		t.Errorf("a busy answer across the gRPC hop = %v (%v), back %v (%d, retried %v), want Unavailable, errBusy's 503, not retried",
			hop, status.Code(hop), back, statusOf(back), retryFind(back))
	}
	reads.release(reads.capacity)
	if used := reads.used.Load(); used != 0 {
		t.Errorf("read budget holds %d bytes once the test gave its room back, want 0", used)
	}
}

// TestBusyRetryAfter: a 503 that only means "try again shortly" says
// when, as the failed-authentication 429 does: a REST GET refused for
// want of room in the read budget answers 503 with Retry-After: 1 and
// errBusy's JSON body, and so does an entity still being handed over;
// the other 503s (and a 500) carry no Retry-After. The gRPC front end's
// busy answer is unchanged: UNAVAILABLE, errBusy's sentence and the
// BUSY reason, no retry metadata. It had no Retry-After on any 503.
func TestBusyRetryAfter(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10})
	if code, answer := (restCall{method: "PUT", target: "/entity/retry", body: `{"d0": {"g": 0}}`}).do(fe.rest, testAdminKey); code != 200 {
		t.Fatalf("PUT d0 = %d %s", code, answer)
	}
	reads := fe.data.reads
	if err := reads.acquire(t.Context(), reads.capacity); err != nil {
		t.Fatal(err)
	}
	fe.data.roomWait = 50 * time.Millisecond
	req := httptest.NewRequest("GET", "/entity/retry?key=d0", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("X-Request-ID", "retry-1")
	rec := httptest.NewRecorder()
	fe.rest.ServeHTTP(rec, req)
	want := `{"error":"` + busyAnswer("retry-1") + `"}` + "\n"
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != want {
		t.Errorf("REST GET with the read budget full = %d, Retry-After %q, Content-Type %q, %q; want 503, 1, application/json, %q",
			rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Content-Type"), rec.Body.String(), want)
	}
	var hdr, trl metadata.MD
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-request-id", "retry-2")
	_, err := fe.client.Process(ctx, clientProcess("GET", "retry", "d0", testAdminKey, nil), grpc.Header(&hdr), grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || st.Message() != busyAnswer("retry-2") || reasonSentinel(st) != errBusy ||
		len(hdr.Get("retry-after")) != 0 || len(trl.Get("retry-after")) != 0 {
		t.Errorf("gRPC GET with the read budget full = %v (reason %v), retry-after %v %v; want UNAVAILABLE %q with reason BUSY, no retry-after",
			err, reasonSentinel(st), hdr.Get("retry-after"), trl.Get("retry-after"), busyAnswer("retry-2"))
	}
	reads.release(reads.capacity)

	cases := []struct {
		name string
		err  error
		want string
	}{
		{"busy", fmt.Errorf("find in db: %w", errBusy), "1"},
		{"handing over", fmt.Errorf("route: %w", errHandingOver), "1"},
		{"handing over after a lost worker", fmt.Errorf("%w: %v: %w", errHandingOverLost, errHandingOver, errTransport), ""},
		{"handover damaged", errHandoverDamaged, ""},
		{"storage", fmt.Errorf("get: %w", errUnavailable), ""},
		{"no worker", errNoWorker, ""},
		{"worker lost", errCallLost, ""},
		{"worker slow", errWorkerSlow, ""},
		{"owner changed", errWriteFenced, ""},
		{"change log broken", errChangeLogBroken, ""},
		{"audit", errAuditUnavailable, ""},
		{"corrupt", errCorrupt, ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/entity/db?key=k", nil).WithContext(withRequestID(t.Context(), "retry-3"))
		rec := httptest.NewRecorder()
		(&restServer{log: slog.New(slog.DiscardHandler)}).writeError(rec, r, c.err)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != publicMessage(c.err, "retry-3") ||
			rec.Header().Get("Retry-After") != c.want {
			t.Errorf("%s: %d, Retry-After %q, %s; want Retry-After %q and its sentence", c.name, rec.Code, rec.Header().Get("Retry-After"), rec.Body, c.want)
		}
	}
}

// TestBusyWaitClientGone: a request whose client went away while it
// waited for room in the full read budget fails with its context's end,
// as every request whose client went away does, never as errBusy: a GET,
// a find's page and a sorted find's documents (findRun.growRoom). They
// all wrapped errBusy around any failed wait, so a client that hung up
// was answered, logged and counted as the server being busy (503). Over
// REST it is answered as any request whose client went away: not 503,
// logged at info as such.
func TestBusyWaitClientGone(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10})
	if code, answer := (restCall{method: "PUT", target: "/entity/gone", body: `{"d0": {"g": 0}}`}).do(fe.rest, testAdminKey); code != 200 {
		t.Fatalf("PUT d0 = %d %s", code, answer)
	}
	reads := fe.data.reads
	if err := reads.acquire(t.Context(), reads.capacity); err != nil {
		t.Fatal(err)
	}
	defer reads.release(reads.capacity)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	waits := []struct {
		name string
		wait func() error
	}{
		{"GET", func() error {
			_, err := fe.data.process(gone, principal{admin: true}, "", &pb.EntityOp{DatabaseName: "gone", EntityKey: "d0", Operation: pb.Operation_GET})
			return err
		}},
		{"find", func() error {
			_, _, err := fe.data.find(gone, "gone", findRequest{Selector: json.RawMessage(`{"g":0}`)})
			return err
		}},
		{"sorted find's documents", func() error {
			r := &findRun{d: fe.data, q: &findQuery{db: "gone"}, ctx: gone, deadline: time.Now().Add(time.Minute)}
			return r.growRoom(1 << 10)
		}},
	}
	for _, w := range waits {
		if err := w.wait(); !errors.Is(err, context.Canceled) || errors.Is(err, errBusy) || statusOf(err) == http.StatusServiceUnavailable {
			t.Errorf("%s waiting for room when its client went away = %v (%d), want the context's end, not errBusy's 503", w.name, err, statusOf(err))
		}
	}
	var logs syncBuffer
	var err error
	if fe.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/entity/gone?key=d0", nil).WithContext(gone)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("X-Request-ID", "gone-get-1")
	rec := httptest.NewRecorder()
	fe.rest.ServeHTTP(rec, req)
	lines := parseLog(t, logs.String(), logFormatJSON)
	gotGone := linesWith(lines, logLine{"msg": "client went away", "request_id": "gone-get-1", "level": "INFO"})
	if rec.Code == http.StatusServiceUnavailable || len(gotGone) != 1 || len(linesWith(lines, logLine{"level": "ERROR"})) != 0 {
		t.Errorf("REST GET whose client went away waiting for room = %d, log:\n%s\nwant not 503, one INFO line \"client went away\", no ERROR",
			rec.Code, logs.String())
	}
}

// TestClientGoneIs499: a REST request whose client hangs up while it
// waits for room in the full read budget is answered, counted and logged
// as 499 (client closed request), not as a 500 of the server: the
// metric deltadb_http_requests_total has status "499" and no "500", the
// access line says 499, the dashboard (GET /admin/stats) counts it among
// the route's client errors and none among its server errors, and the
// cause is logged at INFO "client went away", never at ERROR. The client
// is a real one over a connection it closes, as curl's Ctrl-C does. On
// the old code the request was counted and logged as a 500.
func TestClientGoneIs499(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10})
	if code, answer := (restCall{method: "PUT", target: "/entity/gone", body: `{"d0": {"g": 0}}`}).do(fe.rest, testAdminKey); code != 200 {
		t.Fatalf("PUT d0 = %d %s", code, answer)
	}
	var logs syncBuffer
	var err error
	if fe.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fe.rest)
	defer srv.Close()
	reads := fe.data.reads
	if err := reads.acquire(t.Context(), reads.capacity); err != nil {
		t.Fatal(err)
	}
	defer reads.release(reads.capacity)
	ctx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/entity/gone?key=d0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("X-Request-ID", "gone-499")
	answered := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	for w := newWait(t, "the GET waiting for room in the read budget", 10*time.Second); reads.waiting.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("no GET waiting: %v", w)
		}
	}
	hangUp()
	if err := <-answered; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's GET = %v, want its own cancellation", err)
	}
	const counted = `deltadb_http_requests_total{route="/entity/{db}",method="GET",status="499"} 1`
	waitScraped(t, fe.rest.reg, counted)
	if m := scrape(t, fe.rest.reg); strings.Contains(m, `status="500"`) {
		t.Errorf("a request whose client went away is counted as a 500:\n%s", m)
	}
	stats := fe.rest.stats.answer(time.Hour)
	want := []routeErrors{{Route: "GET /entity/{db}", ClientErrors: 1}}
	if !slices.Equal(stats.ErrorsByRoute, want) || stats.Summary.ServerErrors != 0 || stats.Summary.ClientErrors != 1 {
		t.Errorf("dashboard: errors_by_route %+v, client_errors %d, server_errors %d; want %+v, 1, 0",
			stats.ErrorsByRoute, stats.Summary.ClientErrors, stats.Summary.ServerErrors, want)
	}
	lines := parseLog(t, logs.String(), logFormatJSON)
	access := linesWith(lines, logLine{"msg": msgAccess, "request_id": "gone-499"})
	gone := linesWith(lines, logLine{"msg": "client went away", "request_id": "gone-499", "level": "INFO", "status": "499"})
	if len(access) != 1 || access[0]["status"] != "499" || len(gone) != 1 || len(linesWith(lines, logLine{"level": "ERROR"})) != 0 {
		t.Errorf("log:\n%s\nwant one access line with status 499, one INFO \"client went away\" with status 499, no ERROR", logs.String())
	}
}

// TestGRPCClientGoneIsCanceled: a gRPC Process call whose client
// cancels it while it waits for room in the full read budget is counted
// as Canceled in deltadb_grpc_calls_total (gRPC's code for a call its
// client cancelled, REST's 499), never as Internal; its audit line says
// grpc_code Canceled and status 499, and it is logged at INFO "client
// went away", never at ERROR. On the old code it was counted and audited
// as Internal (500).
func TestGRPCClientGoneIsCanceled(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10})
	if code, answer := (restCall{method: "PUT", target: "/entity/gone", body: `{"d0": {"g": 0}}`}).do(fe.rest, testAdminKey); code != 200 {
		t.Fatalf("PUT d0 = %d %s", code, answer)
	}
	var logs syncBuffer
	log, err := newLogger(&logs, logFormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	audit, stopAudit := startTestAudit(t, auditOptions{path: path})
	reg := newRegistry()
	svc := newMainService(mainServiceOptions{router: fe.data.proc.(*router), auth: fe.auth, data: fe.data, maxMsg: 4 << 20, log: log, audit: audit})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(grpcServerOptions(4<<20), newGRPCMetrics(reg).serverOptions()...)...)
	pb.RegisterMainWorkerServer(gs, svc)
	go gs.Serve(ln)
	defer gs.Stop()
	client := pb.NewMainWorkerClient(dial(t, ln.Addr().String()))
	reads := fe.data.reads
	if err := reads.acquire(t.Context(), reads.capacity); err != nil {
		t.Fatal(err)
	}
	defer reads.release(reads.capacity)
	ctx, hangUp := context.WithCancel(metadata.AppendToOutgoingContext(t.Context(), requestIDMetadata, "gone-grpc"))
	defer hangUp()
	called := make(chan error, 1)
	go func() {
		_, err := client.Process(ctx, clientProcess("GET", "gone", "d0", testAdminKey, nil))
		called <- err
	}()
	for w := newWait(t, "the gRPC GET waiting for room in the read budget", 10*time.Second); reads.waiting.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("no GET waiting: %v", w)
		}
	}
	hangUp()
	if err := <-called; status.Code(err) != codes.Canceled {
		t.Fatalf("the client's call = %v, want its own cancellation", err)
	}
	const counted = `deltadb_grpc_calls_total{method="/deltadb.MainWorker/Process",code="Canceled"} 1`
	for w := newWait(t, "the call counted", 10*time.Second); !strings.Contains(scrape(t, reg), counted); time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("metrics lack %s: %v\n%s", counted, w, scrape(t, reg))
		}
	}
	if m := scrape(t, reg); strings.Contains(m, `code="Internal"`) {
		t.Errorf("a call whose client went away is counted as Internal:\n%s", m)
	}
	stopAudit()
	var lines []map[string]any
	for _, l := range auditLines(t, path) {
		if l["request_id"] == "gone-grpc" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || lines[0]["grpc_code"] != "Canceled" || lines[0]["status"] != float64(statusClientClosed) {
		t.Errorf("audit lines of the call = %v, want one with grpc_code Canceled, status 499", lines)
	}
	logged := parseLog(t, logs.String(), logFormatJSON)
	if len(linesWith(logged, logLine{"msg": "client went away", "level": "INFO", "request_id": "gone-grpc"})) != 1 ||
		len(linesWith(logged, logLine{"level": "ERROR"})) != 0 {
		t.Errorf("log:\n%s\nwant one INFO \"client went away\", no ERROR", logs.String())
	}
}

// TestShareWaitClientGone: a read whose client went away while it
// waited for room in its owner's share, or in the overdue half, fails
// with its context's end, not errUnavailable's 503 (it wrapped
// errUnavailable around any failed wait). A wait that runs out is still
// errWorkerSlow's 503 (TestStalledOwnersHoldHalfTheReadBudget).
func TestShareWaitClientGone(t *testing.T) {
	lim := budgets{maxDocument: 1000, maxInflightRead: 4000}
	rt, _, data, keys, _ := newStallRig(t, lim, []string{"wa", "wb"}, nil, map[string]int{"wa": 1})
	k := keys["wa"][0]
	share, _ := rt.readShare("db", k, lim.readShare())
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if err := share.acquire(t.Context(), share.capacity); err != nil {
		t.Fatal(err)
	}
	_, err := data.holdRead(gone, "db", k)
	if !errors.Is(err, context.Canceled) || errors.Is(err, errUnavailable) {
		t.Errorf("read waiting in its owner's full share when its client went away = %v (%d), want the context's end, not 503", err, statusOf(err))
	}
	share.release(share.capacity)
	share.stuck.Store(true)
	if err := data.late.acquire(t.Context(), data.late.capacity); err != nil {
		t.Fatal(err)
	}
	_, err = data.holdRead(gone, "db", k)
	if !errors.Is(err, context.Canceled) || errors.Is(err, errUnavailable) {
		t.Errorf("read waiting in the full overdue half when its client went away = %v (%d), want the context's end, not 503", err, statusOf(err))
	}
	if used := share.used.Load(); used != 0 {
		t.Errorf("share holds %d bytes after the read gave up, want 0", used)
	}
}

// TestFindRoomWaitBounded: a find whose page finds no room in the read
// budget waits for it within -find-timeout, then answers the busy 503; it
// used to wait for as long as its client did. Once room is back the same
// find answers.
func TestFindRoomWaitBounded(t *testing.T) {
	lim := budgets{maxDocument: 16 << 10, maxResponse: 16 << 10, maxInflightRead: 256 << 10, findTimeout: 200 * time.Millisecond}
	fe := newFrontEnds(t, lim)
	if code, answer := (restCall{method: "PUT", target: "/entity/wait", body: `{"d0": {"g": 0}}`}).do(fe.rest, testAdminKey); code != 200 {
		t.Fatalf("PUT d0 = %d %s", code, answer)
	}
	reads := fe.data.reads
	if err := reads.acquire(t.Context(), reads.capacity); err != nil {
		t.Fatal(err)
	}
	find := restCall{method: "POST", target: "/api/databases/wait/find", body: `{"selector":{"g":0}}`,
		header: []string{"X-Request-ID: wait-find-1"}}
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		code, body := find.do(fe.rest, testAdminKey)
		done <- answer{code, body}
	}()
	select {
	case a := <-done:
		if want := `{"error":"` + busyAnswer("wait-find-1") + `"}` + "\n"; a.code != 503 || a.body != want {
			t.Errorf("find with the read budget full = %d %q, want 503 %q", a.code, a.body, want)
		}
		if took := time.Since(start); took < lim.findTimeout {
			t.Errorf("find refused after %v, want it to wait for room for -find-timeout (%v)", took, lim.findTimeout)
		}
	case <-time.After(30 * time.Second):
		reads.release(reads.capacity)
		<-done
		t.Fatalf("find with the read budget full still waiting after 30 s, want 503 after -find-timeout (%v)", lim.findTimeout)
	}
	reads.release(reads.capacity)
	if code, body := find.do(fe.rest, testAdminKey); code != 200 || !strings.Contains(body, `"d0"`) {
		t.Errorf("find with room back = %d %s, want 200 with d0", code, body)
	}
	if used := reads.used.Load(); used != 0 {
		t.Errorf("read budget holds %d bytes after the finds, want 0", used)
	}
}
