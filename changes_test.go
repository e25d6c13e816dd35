package main

// Black-box tests of the change feed against the binary: pages and
// cursors across a restart, include_docs and prefix, Server-Sent Events
// resumed with Last-Event-ID and their access lines, long-poll, 410 after
// retention, the permissions and stream budgets, deleting a database,
// and SIGKILL under 32 writers (-role=all, and a worker or the main
// worker of main + 2) comparing the feed with the acknowledged writes.
// In process, where a test must hold a consumer or shorten a timer:
// keep-alive lines, a consumer dropped for lagging, a stream whose
// cursor left the retention.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testFeed attaches a change feed to rt when st is the filesystem
// backend (nil otherwise), closed at the test's end. Its log is a
// directory of its own: tests build several servers over one store, and a
// log takes one owner.
func testFeed(t *testing.T, rt *router, st store) *changeFeed {
	if _, ok := fsBackend(st); !ok {
		return nil
	}
	f, err := attachFeed(rt, filepath.Join(t.TempDir(), changesDirName), st, feedLimits{retention: time.Hour,
		retentionBytes: 2 << 20, maxStreams: 10, maxStreamsPerPrincipal: 10}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	return f
}

// feedPage is a page of GET .../changes as a client reads it.
type feedPage struct {
	Changes []struct {
		Seq  string          `json:"seq"`
		Key  string          `json:"key"`
		Op   string          `json:"op"`
		ETag string          `json:"etag"`
		At   time.Time       `json:"at"`
		Doc  json.RawMessage `json:"doc"`
	} `json:"changes"`
	LastSeq string `json:"last_seq"`
	// More is nil when the page has no "more".
	More *bool `json:"more"`
}

// more is the page's "more", failing the test when it has none.
func (p feedPage) more(t *testing.T) bool {
	t.Helper()
	if p.More == nil {
		t.Fatalf("page %+v has no \"more\"", p)
	}
	return *p.More
}

// changes reads one page of db's feed with query q and wants status 200.
func changesPage(t *testing.T, n *node, token, db, q string) feedPage {
	t.Helper()
	code, out, _ := n.call("GET", "/api/databases/"+db+"/changes?"+q, token, nil)
	if code != 200 {
		t.Fatalf("changes of %s?%s = %d %s", db, q, code, out)
	}
	var p feedPage
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("changes page %s: %v", out, err)
	}
	return p
}

// allPages reads db's feed with query q page after page from the oldest
// change, following last_seq while more is true (as API.md tells
// clients to), and returns the pages that hold changes.
func allPages(t *testing.T, n *node, db, q string) []feedPage {
	t.Helper()
	var pages []feedPage
	for since, i := "", 0; i < 1000; i++ {
		p := changesPage(t, n, testAdminKey, db, q+"&since="+since)
		if len(p.Changes) > 0 {
			pages = append(pages, p)
		}
		if !p.more(t) {
			return pages
		}
		since = p.LastSeq
	}
	t.Fatalf("feed of %s: still more after 1000 pages", db)
	return nil
}

// putNodeETag writes db/key = doc and returns its ETag.
func putNodeETag(t *testing.T, n *node, db, key string, doc any) string {
	t.Helper()
	code, out, hdr := n.call("PUT", "/entity/"+db, testAdminKey, map[string]any{key: doc})
	if code != 200 {
		t.Fatalf("PUT %s/%s = %d %s", db, key, code, out)
	}
	return hdr.Get("ETag")
}

// summary is a page's changes as "key op etag" lines.
func (p feedPage) summary() []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Key+" "+c.Op+" "+c.ETag)
	}
	return out
}

// TestChangesPagesAndCursors: each write appears once, in order, with
// the ETag its PUT answered; pages chained by last_seq replay the same
// changes; prefix and include_docs filter and fill; since=now is the end;
// a cursor stays valid across a restart and the feed goes on after it.
func TestChangesPagesAndCursors(t *testing.T) {
	n, dir := startDefault(t)
	e1 := putNodeETag(t, n, "chat", "s1", map[string]int{"v": 1})
	e2 := putNodeETag(t, n, "chat", "s2", map[string]int{"v": 2})
	putNodeETag(t, n, "other", "x", 1)
	e3 := putNodeETag(t, n, "chat", "s1", map[string]int{"v": 3})
	if code, out, _ := n.call("DELETE", "/entity/chat?key=s2", testAdminKey, nil); code != 200 {
		t.Fatalf("DELETE = %d %s", code, out)
	}
	want := []string{"s1 put " + e1, "s2 put " + e2, "s1 put " + e3, "s2 delete "}
	all := changesPage(t, n, testAdminKey, "chat", "")
	if got := all.summary(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("feed = %q, want %q", got, want)
	}
	var paged []string
	for _, p := range allPages(t, n, "chat", "limit=1") {
		paged = append(paged, p.summary()...)
	}
	if strings.Join(paged, "|") != strings.Join(want, "|") {
		t.Errorf("pages of 1 = %q, want %q", paged, want)
	}
	if p := changesPage(t, n, testAdminKey, "chat", "since=now"); len(p.Changes) != 0 || p.LastSeq != all.LastSeq {
		t.Errorf("since=now = %+v, want no changes and last_seq %s", p, all.LastSeq)
	}
	docs := changesPage(t, n, testAdminKey, "chat", "include_docs=true&prefix=s1")
	if got := docs.summary(); len(got) != 2 || !strings.HasPrefix(got[0], "s1 put") || string(docs.Changes[1].Doc) != `{"v":3}` {
		t.Errorf("include_docs&prefix=s1 = %q, docs %s", got, docs.Changes[len(docs.Changes)-1].Doc)
	}
	for _, q := range []string{"since=abc", "limit=0", "limit=100000", "feed=x", "feed=longpoll&timeout=-1"} {
		if code, out, _ := n.call("GET", "/api/databases/chat/changes?"+q, testAdminKey, nil); code != 400 || !strings.Contains(string(out), `"error"`) {
			t.Errorf("?%s = %d %s, want 400 with an error", q, code, out)
		}
	}
	n.stop()
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	if got := changesPage(t, n, testAdminKey, "chat", "since="+paged2cursor(all, 1)).summary(); strings.Join(got, "|") != strings.Join(want[2:], "|") {
		t.Errorf("after a restart, since the second change = %q, want %q", got, want[2:])
	}
	e4 := putNodeETag(t, n, "chat", "s3", 4)
	if p := changesPage(t, n, testAdminKey, "chat", "since="+all.LastSeq); strings.Join(p.summary(), "|") != "s3 put "+e4 {
		t.Errorf("after a restart, the next change = %q", p.summary())
	}
}

// TestChangesIncludeDocsBudget: with include_docs a page ends early at
// -max-response-bytes of documents (at least one), its last_seq after its
// last change, so that following last_seq reads every change once; an
// event stream sends them all, a page at a time.
func TestChangesIncludeDocsBudget(t *testing.T) {
	n, _ := startDefault(t, "-max-response-bytes=3000", "-max-document-size=2000")
	doc := strings.Repeat("x", 1000)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		putNodeETag(t, n, "big", k, doc)
	}
	var pages []string
	for _, p := range allPages(t, n, "big", "include_docs=true") {
		bytes := 0
		for _, c := range p.Changes {
			bytes += len(c.Doc)
		}
		if bytes > 3000 && len(p.Changes) > 1 {
			t.Errorf("a page of %d changes holds %d bytes of documents, over -max-response-bytes", len(p.Changes), bytes)
		}
		pages = append(pages, fmt.Sprintf("%d/%v", len(p.Changes), p.more(t)))
	}
	// A page ended early by the documents says more: following it reads
	// the rest.
	if got := strings.Join(pages, " "); got != "2/true 2/true 1/false" {
		t.Errorf("pages of 1000-byte documents within 3000 bytes hold %q changes (and more), want 2/true 2/true 1/false", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, events := openSSE(t, ctx, n, testAdminKey, "big", "include_docs=true", nil)
	for i := range 5 {
		var c struct{ Doc string }
		if ev := nextEvent(t, events); json.Unmarshal([]byte(ev.data), &c) != nil || c.Doc != doc {
			t.Fatalf("event %d: %+v, want a change with its document", i, ev)
		}
	}
}

// paged2cursor is the seq of p's change i.
func paged2cursor(p feedPage, i int) string { return p.Changes[i].Seq }

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, event, data string }

// openSSE opens db's event stream with token (none: q holds a ticket)
// and extra headers.
func openSSE(t *testing.T, ctx context.Context, n *node, token, db, q string, hdr map[string]string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.base+"/api/databases/"+db+"/changes?"+q, nil)
	if token != "" { // none: a ticket in q, as an EventSource sends it
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sseEvent, 100)
	if resp.StatusCode != 200 {
		close(events)
		return resp, events
	}
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return resp, events
}

// nextEvent waits for the next event of events.
func nextEvent(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(scaled(20 * time.Second)):
		t.Fatal("no event in 20 s")
	}
	return sseEvent{}
}

// TestChangesEventStream: an event stream sends each change with its
// cursor as id and is written to the access log when it ends, with its
// duration; a second stream resumed with Last-Event-ID gets the
// changes after it only; a long-poll answers a change made while it
// waits, and an empty page at its timeout.
func TestChangesEventStream(t *testing.T) {
	n, _ := startDefault(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, events := openSSE(t, ctx, n, testAdminKey, "chat", "since=now", nil)
	opened := time.Now()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("event stream = %d %q", resp.StatusCode, ct)
	}
	etags := []string{putNodeETag(t, n, "chat", "a", 1), putNodeETag(t, n, "chat", "b", 2)}
	var last string
	for _, e := range etags {
		ev := nextEvent(t, events)
		var c struct{ Seq, ETag string }
		json.Unmarshal([]byte(ev.data), &c)
		if ev.event != "change" || c.ETag != e || ev.id != c.Seq {
			t.Fatalf("event %+v, want a change with ETag %s and id = seq", ev, e)
		}
		last = ev.id
	}
	lastEvent := time.Since(opened)
	cancel()
	// The stream's access line is written when it ends, with its
	// duration.
	id := resp.Header.Get("X-Request-Id")
	for w := newWait(t, "the stream's access line", 10*time.Second); ; time.Sleep(20 * time.Millisecond) {
		if line := logLineWith(n.stderr.String(), "msg=request ", " request_id="+id+"\n"); line != "" {
			d := regexp.MustCompile(`duration_ms=([0-9.]+)`).FindStringSubmatch(line)
			if ms, err := strconv.ParseFloat(d[min(1, len(d)-1)], 64); err != nil || !strings.Contains(line, "status=200") ||
				time.Duration(ms*float64(time.Millisecond)) < lastEvent {
				t.Errorf("stream's access line %q, want status 200 and a duration of at least %v", line, lastEvent)
			}
			break
		}
		if w.over() {
			t.Fatalf("no access line with request_id=%s: %v", id, w)
		}
	}
	e3 := putNodeETag(t, n, "chat", "c", 3)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, resumed := openSSE(t, ctx2, n, testAdminKey, "chat", "", map[string]string{"Last-Event-ID": last})
	var c3 struct{ Key, ETag string }
	if ev := nextEvent(t, resumed); json.Unmarshal([]byte(ev.data), &c3) != nil || c3.ETag != e3 || c3.Key != "c" {
		t.Errorf("resumed after %s: first event %+v, want the change of c", last, ev)
	}
	cancel2()

	// The long-poll counts as an open stream once it has taken "now" as
	// its cursor: the change written after that is its to answer. (A
	// fixed pause before the write let a loaded machine take "now" after
	// it, and the long-poll waited for a change that had come.)
	waitStreams(t, n.base, 0)
	done := make(chan feedPage, 1)
	go func() {
		_, out, _, _ := doCall("GET", n.base+"/api/databases/chat/changes?feed=longpoll&timeout=20000&since=now", testAdminKey, nil)
		var p feedPage
		json.Unmarshal(out, &p)
		done <- p
	}()
	waitStreams(t, n.base, 1)
	e4 := putNodeETag(t, n, "chat", "d", 4)
	select {
	case p := <-done:
		if strings.Join(p.summary(), "|") != "d put "+e4 {
			t.Errorf("long-poll = %q, want the change of d", p.summary())
		}
	case <-time.After(scaled(15 * time.Second)):
		t.Fatal("the long-poll did not answer the change")
	}
	start := time.Now()
	if p := changesPage(t, n, testAdminKey, "chat", "feed=longpoll&timeout=200&since=now"); len(p.Changes) != 0 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("idle long-poll = %+v after %v, want an empty page after 200 ms", p, time.Since(start))
	}
}

// TestChangesRetention: with a small -changes-retention-bytes, a cursor
// from before the records kept answers 410 with a sentence saying to
// list the database and resume from last_seq, and pages from the oldest
// kept still work.
func TestChangesRetention(t *testing.T) {
	n, _ := startDefault(t, "-changes-retention-bytes=65536")
	big := strings.Repeat("k", 200)
	for i := range 60 {
		docs := map[string]int{}
		for j := range 20 {
			docs[fmt.Sprintf("%s-%d-%d", big, i, j)] = j
		}
		if code, out, _ := n.call("PUT", "/entity/chat", testAdminKey, docs); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	code, out, _ := n.call("GET", "/api/databases/chat/changes?since=1", testAdminKey, nil)
	if code != 410 || !strings.Contains(string(out), "list the database") || !strings.Contains(string(out), "last_seq") {
		t.Fatalf("since=1 after 1,200 changes in 64 KiB = %d %s, want 410 telling to list and resume", code, out)
	}
	if !strings.Contains(string(out), "is no longer in the change feed") {
		t.Errorf("since=1 = %s, want it to say the cursor is no longer in the feed", out)
	}
	// A long-poll and an event stream answer the same 410 before they
	// wait or stream.
	if code, out, _ := n.call("GET", "/api/databases/chat/changes?feed=longpoll&timeout=5000&since=1", testAdminKey, nil); code != 410 || !strings.Contains(string(out), "list the database") {
		t.Errorf("long-poll since=1 = %d %s, want 410", code, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, _ := openSSE(t, ctx, n, testAdminKey, "chat", "feed=sse&since=1", nil)
	resp.Body.Close()
	if resp.StatusCode != 410 {
		t.Errorf("event stream since=1 = %d, want 410", resp.StatusCode)
	}
	// A cursor past the end is not an old one: it says so.
	code, out, _ = n.call("GET", "/api/databases/chat/changes?since=18446744073709551615", testAdminKey, nil)
	if code != 410 || !strings.Contains(string(out), "was never given by this change feed") || !strings.Contains(string(out), "list the database") {
		t.Errorf("since past the end = %d %s, want 410 saying this feed never gave it", code, out)
	}
	if p := changesPage(t, n, testAdminKey, "chat", "limit=1000"); len(p.Changes) == 0 || p.Changes[0].Seq == "1" {
		t.Errorf("oldest page = %d changes from %v, want some, not from 1", len(p.Changes), p.Changes[0].Seq)
	}
}

// TestChangesPermissions: the feed needs read: a write-only key is 403,
// a key scoped to other databases is 403, a scoped reader reads its own;
// the open-stream budgets per credential and in total answer 429 beyond
// them.
func TestChangesPermissions(t *testing.T) {
	n, _ := startDefault(t, "-changes-max-streams-per-principal=1", "-changes-max-streams=3")
	putNodeETag(t, n, "app_chat", "a", 1)
	key := func(body string) string {
		code, out, _ := n.call("POST", "/api/keys", testAdminKey, body)
		var k struct{ Secret string }
		if json.Unmarshal(out, &k); code != 201 {
			t.Fatalf("POST /api/keys = %d %s", code, out)
		}
		return k.Secret
	}
	writer := key(`{"name":"w","permissions":["write"]}`)
	scoped := key(`{"name":"r","permissions":["read"],"databases":["app_*"]}`)
	for _, c := range []struct {
		token, db string
		want      int
	}{{writer, "app_chat", 403}, {scoped, "other", 403}, {scoped, "app_chat", 200}, {"", "app_chat", 401}} {
		if code, out, _ := n.call("GET", "/api/databases/"+c.db+"/changes", c.token, nil); code != c.want {
			t.Errorf("changes of %s = %d %s, want %d", c.db, code, out, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if resp, _ := openSSE(t, ctx, n, scoped, "app_chat", "since=now", nil); resp.StatusCode != 200 {
		t.Fatalf("first stream = %d", resp.StatusCode)
	}
	if code, body := refusedStream(openSSE(t, ctx, n, scoped, "app_chat", "since=now", nil)); code != 429 || !strings.Contains(body, "-changes-max-streams-per-principal") {
		t.Errorf("second stream of one key = %d %s, want 429", code, body)
	}
	if code, out, h := n.call("GET", "/api/databases/app_chat/changes?feed=longpoll&timeout=10", scoped, nil); code != 429 || h.Get("Retry-After") != "30" {
		t.Errorf("long-poll beside the stream = %d %s, Retry-After %q; want 429, 30", code, out, h.Get("Retry-After"))
	}
	if resp, _ := openSSE(t, ctx, n, testAdminKey, "app_chat", "since=now", nil); resp.StatusCode != 200 {
		t.Errorf("another credential's stream = %d, want 200", resp.StatusCode)
	}
	// -changes-max-streams=3: a third credential's stream is the last.
	if resp, _ := openSSE(t, ctx, n, key(`{"name":"r2","permissions":["read"]}`), "app_chat", "since=now", nil); resp.StatusCode != 200 {
		t.Errorf("third stream = %d, want 200", resp.StatusCode)
	}
	r3 := key(`{"name":"r3","permissions":["read"]}`)
	if code, body := refusedStream(openSSE(t, ctx, n, r3, "app_chat", "since=now", nil)); code != 429 || !strings.Contains(body, "-changes-max-streams)") {
		t.Errorf("fourth stream, of a fourth credential = %d %s, want 429 naming -changes-max-streams", code, body)
	}
	if got := metricOf(t, n, "deltadb_changes_streams_open"); got != 3 {
		t.Errorf("deltadb_changes_streams_open = %v, want 3", got)
	}
}

// refusedStream is the status of a stream openSSE opened and, when it
// was refused, its body (an open stream's body is its reader's).
func refusedStream(resp *http.Response, _ <-chan sseEvent) (int, string) {
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestChangesDeleteDatabase: deleting a database ends its event streams
// (event "deleted") after the deletes of its entities.
func TestChangesDeleteDatabase(t *testing.T) {
	n, _ := startDefault(t)
	putNodeETag(t, n, "gone", "a", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The stream watches the deletion before its headers are sent, and
	// openSSE returns once they are here.
	_, events := openSSE(t, ctx, n, testAdminKey, "gone", "since=now", nil)
	if code, out, _ := n.call("DELETE", "/api/databases/gone", testAdminKey, nil); code != 200 {
		t.Fatalf("DELETE database = %d %s", code, out)
	}
	if ev := nextEvent(t, events); ev.event != "change" || !strings.Contains(ev.data, `"op":"delete"`) {
		t.Errorf("first event %+v, want the delete of a", ev)
	}
	if ev := nextEvent(t, events); ev.event != "deleted" {
		t.Errorf("event %+v, want deleted", ev)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Error("the stream went on after deleted")
		}
	case <-time.After(scaled(10 * time.Second)):
		t.Error("the stream did not end")
	}
}

// feedLoad is writers putting to keys of their own and recording, per
// key, the ETags acknowledged in order.
type feedLoad struct {
	base   atomic.Pointer[string]
	mu     sync.Mutex
	acked  map[string][]string
	writes atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFeedLoad starts writers writers on db "crash", each over keysPer
// keys.
func startFeedLoad(t *testing.T, base string, writers, keysPer int) *feedLoad {
	l := &feedLoad{acked: map[string][]string{}}
	l.base.Store(&base)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i%keysPer)
				body, _ := json.Marshal(map[string]int{key: i})
				req, _ := http.NewRequestWithContext(ctx, "PUT", *l.base.Load()+"/entity/crash", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testAdminKey)
				resp, err := client.Do(req)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					l.mu.Lock()
					l.acked[key] = append(l.acked[key], resp.Header.Get("ETag"))
					l.mu.Unlock()
					l.writes.Add(1)
				}
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the writers.
func (l *feedLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// waitWrites waits for n more acknowledged writes.
func (l *feedLoad) waitWrites(t *testing.T, n int64) {
	t.Helper()
	target := l.writes.Load() + n
	w := newWait(t, fmt.Sprintf("%d more writes", n), 60*time.Second)
	for l.writes.Load() < target {
		if w.over() {
			t.Fatalf("writes acknowledged: %d, want %d: %v", l.writes.Load(), target, w)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify reads the whole feed of "crash" and checks it against the
// acknowledged writes: each acknowledged ETag once, each key's in the
// order acknowledged, no ETag twice, and each key's last change the
// entity's version.
func (l *feedLoad) verify(t *testing.T, n *node) {
	t.Helper()
	// Writes the stopped writers left in flight end first.
	for prev := ""; ; time.Sleep(500 * time.Millisecond) {
		end := changesPage(t, n, testAdminKey, "crash", "since=now").LastSeq
		if end == prev {
			break
		}
		prev = end
	}
	// A write a crash cut after it changed its entity is in the feed once
	// the main worker has settled it: with -role=main before the key's
	// next write or within 2 s in the background.
	feed, total := readCrashFeed(t, n)
	start := time.Now()
	for w := newWait(t, "the feed to reach every entity's version", 10*time.Second); ; {
		stale := staleEnds(t, n, feed)
		if len(stale) == 0 || w.over() {
			break
		}
		t.Logf("%d keys' entities ahead of the feed (%s), %v after the writes ended", len(stale), stale[0].msg, time.Since(start))
		time.Sleep(500 * time.Millisecond)
		feed, total = readCrashFeed(t, n)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	bad := 0
	acked := 0
	for key, want := range l.acked {
		acked += len(want)
		got := feed[key]
		seen := map[string]int{}
		for i, e := range got {
			if _, dup := seen[e]; dup {
				bad++
				t.Errorf("%s: ETag %s twice in the feed", key, e)
			}
			seen[e] = i
		}
		prev := -1
		for _, e := range want {
			i, ok := seen[e]
			switch {
			case !ok:
				bad++
				if bad < 5 {
					t.Errorf("%s: acknowledged ETag %s missing from the feed (%d changes of it)", key, e, len(got))
				}
			case i < prev:
				bad++
				t.Errorf("%s: ETag %s out of order in the feed", key, e)
			default:
				prev = i
			}
		}
	}
	// The feed ends where the entity is: a write applied but not answered
	// (cut by the kill) is in it too.
	for _, e := range staleEnds(t, n, feed) {
		bad++
		t.Errorf("%s (acked last %q)", e.msg, l.acked[e.key][max(0, len(l.acked[e.key])-2):])
	}
	t.Logf("feed: %d changes, %d writes acknowledged, %d keys, %d problems", total, acked, len(l.acked), bad)
}

// readCrashFeed reads the whole feed of "crash": each key's ETags in
// order, and the number of changes.
func readCrashFeed(t *testing.T, n *node) (map[string][]string, int) {
	t.Helper()
	feed, total := map[string][]string{}, 0
	for _, p := range allPages(t, n, "crash", "limit=1000") {
		for _, c := range p.Changes {
			feed[c.Key] = append(feed[c.Key], c.ETag)
			total++
		}
	}
	return feed, total
}

// staleEnd is a key whose last change in the feed is not its entity's
// version.
type staleEnd struct{ key, msg string }

// staleEnds reads every key of feed and returns those whose entity's
// ETag is not the feed's last for it.
func staleEnds(t *testing.T, n *node, feed map[string][]string) []staleEnd {
	t.Helper()
	var out []staleEnd
	for key, got := range feed {
		code, body, hdr := n.call("GET", "/entity/crash?key="+key, testAdminKey, nil)
		if code != 200 || hdr.Get("ETag") != got[len(got)-1] {
			out = append(out, staleEnd{key, fmt.Sprintf("%s: the feed ends at %s, the entity reads %d %s with ETag %s", key, got[len(got)-1], code, body, hdr.Get("ETag"))})
		}
	}
	return out
}

// TestChangesKillAllUnderLoad: -role=all SIGKILLed twice under 32
// writers; after each restart the feed holds every acknowledged write
// once, each key's in order.
func TestChangesKillAllUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	args := []string{"-shared-fs=" + dir, "-worker-id=w0"}
	n := startNode(t, keyEnv, args...)
	addr := n.addr
	load := startFeedLoad(t, n.base, 32, 10)
	for range 2 {
		load.waitWrites(t, 300)
		n.kill()
		n = startNode(t, keyEnv, append(args, "-rest-addr="+addr)...)
		load.waitWrites(t, 100)
	}
	load.stop()
	load.verify(t, n)
	n.stop()
}

// TestChangesKillWorkerUnderLoad: main + 2 workers, a worker SIGKILLed
// under 32 writers and restarted: the feed holds every acknowledged
// write once, in order per key, and its cursors did not change.
func TestChangesKillWorkerUnderLoad(t *testing.T) {
	c := startCluster(t, "w1", "w2")
	load := startFeedLoad(t, c.main.base, 32, 10)
	load.waitWrites(t, 300)
	before := changesPage(t, c.main, testAdminKey, "crash", "limit=5")
	c.workers["w2"].kill()
	load.waitWrites(t, 200)
	c.startWorker("w2")
	c.waitWorkers(30*time.Second, "w1", "w2")
	load.waitWrites(t, 200)
	load.stop()
	load.verify(t, c.main)
	after := changesPage(t, c.main, testAdminKey, "crash", "limit=5")
	if strings.Join(before.summary(), "|") != strings.Join(after.summary(), "|") {
		t.Errorf("the first changes moved when a worker changed: %q, then %q", before.summary(), after.summary())
	}
}

// TestChangesKillMainUnderLoad: main + 2 workers on the filesystem
// backend, the main worker SIGKILLed under 32 writers and restarted on
// its ports (its workers subscribe again): the feed holds every
// acknowledged write once, in order per key, and the cursors given
// before the kill read the same changes after it.
func TestChangesKillMainUnderLoad(t *testing.T) {
	c := startCluster(t, "w1", "w2")
	load := startFeedLoad(t, c.main.base, 32, 10)
	load.waitWrites(t, 300)
	before := changesPage(t, c.main, testAdminKey, "crash", "limit=5")
	c.main.kill()
	c.startMain()
	c.waitWorkers(30*time.Second, "w1", "w2")
	load.waitWrites(t, 300)
	load.stop()
	load.verify(t, c.main)
	if after := changesPage(t, c.main, testAdminKey, "crash", "limit=5"); strings.Join(before.summary(), "|") != strings.Join(after.summary(), "|") {
		t.Errorf("the first changes moved across the main worker's restart: %q, then %q", before.summary(), after.summary())
	}
}

// TestS3Changes: S3 storage, main + 2 workers, the feed in -changes-dir;
// the main worker SIGKILLed under 32 writers and restarted (its workers
// subscribe again): the feed holds every acknowledged write once, in
// order per key, and the main's log stays out of the bucket.
func TestS3Changes(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	changes := filepath.Join(t.TempDir(), "changes")
	s3args := append(s3NodeArgs(cfg, bucket.bucket), "-changes-dir="+changes)
	c, dirs := startS3Cluster(t, s3args, "w1", "w2")
	load := startFeedLoad(t, c.main.base, 32, 10)
	load.waitWrites(t, 300)
	c.main.kill()
	c.main = startNode(t, clusterEnv, append([]string{"-role=main", "-shared-fs=" + dirs[0], "-rest-addr=" + c.main.addr,
		"-cluster-addr=" + c.clusterAddr}, s3args...)...)
	c.waitWorkers(30*time.Second, "w1", "w2")
	load.waitWrites(t, 300)
	load.stop()
	load.verify(t, c.main)
	for _, k := range bucketKeys(t, bucket, "") {
		if strings.HasPrefix(k, changesDirName) {
			t.Errorf("the bucket holds %s: the feed's log belongs in -changes-dir", k)
		}
	}
	if segs, _ := filepath.Glob(filepath.Join(changes, "*.log")); len(segs) == 0 {
		t.Errorf("no segment in -changes-dir %s", changes)
	}
	// Without -changes-dir an S3 main keeps no feed and says so: 501, not
	// an internal error.
	c.main.kill()
	c.main = startNode(t, clusterEnv, append([]string{"-role=main", "-shared-fs=" + dirs[0], "-rest-addr=" + c.main.addr,
		"-cluster-addr=" + c.clusterAddr}, s3NodeArgs(cfg, bucket.bucket)...)...)
	code, out, _ := c.main.call("GET", "/api/databases/chat/changes", testAdminKey, nil)
	if code != http.StatusNotImplemented || !strings.Contains(string(out), "keeps no change feed") {
		t.Errorf("changes without -changes-dir on S3 = %d %s, want 501 saying no feed is kept", code, out)
	}
	var doc struct {
		Paths map[string]map[string]struct{ Responses map[string]any }
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil || doc.Paths["/api/databases/{db}/changes"]["get"].Responses["501"] == nil {
		t.Errorf("openapi.json does not list the 501 of GET /api/databases/{db}/changes (%v)", err)
	}
}

// metricOf reads one unlabelled sample of n's /metrics, -1 when absent.
func metricOf(t *testing.T, n *node, name string) float64 {
	t.Helper()
	_, out, _ := n.call("GET", "/metrics", testAdminKey, nil)
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestChangesSlowConsumerDropped: a consumer that opens an event stream
// with documents and never reads is disconnected once its socket stays
// full (the metrics count it and the stream closes), while 30 MB of
// changes were written: the server's memory grows by far less than
// that, and a reading consumer got every change meanwhile.
func TestChangesSlowConsumerDropped(t *testing.T) {
	// A small cache, so that what the documents leave in memory is the
	// streams' alone, and Go's own pacing of the collector, whose heap
	// floor (-gc-heap-floor) would let 32 MB of garbage wait.
	n, _ := startDefault(t, "-entity-cache-bytes=1048576", "-gc-heap-floor=0")
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/databases/big/changes?feed=sse&include_docs=true&since=now HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", testAdminKey)
	head := make([]byte, 512)
	if _, err := conn.Read(head); err != nil || !strings.HasPrefix(string(head), "HTTP/1.1 200") {
		t.Fatalf("stream = %q, %v", head, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, reader := openSSE(t, ctx, n, testAdminKey, "big", "since=now", nil)
	before, err := vmRSS(n.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Repeat("x", 100<<10)
	const writes = 300
	for i := range writes {
		putNodeETag(t, n, "big", fmt.Sprintf("k%03d", i), doc)
	}
	for i := range writes {
		if ev := nextEvent(t, reader); ev.event != "change" {
			t.Fatalf("reading consumer: event %d is %+v", i, ev)
		}
	}
	w := newWait(t, "the silent consumer dropped", 30*time.Second)
	for metricOf(t, n, "deltadb_changes_consumers_dropped_total") < 1 {
		if w.over() {
			t.Fatalf("deltadb_changes_consumers_dropped_total = %v: %v", metricOf(t, n, "deltadb_changes_consumers_dropped_total"), w)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after, _ := vmRSS(n.cmd.Process.Pid)
	if grew := after - before; grew > 32<<20 {
		t.Errorf("RSS grew by %d MB while a consumer did not read 30 MB of changes", grew>>20)
	}
	if got := metricOf(t, n, "deltadb_changes_streams_open"); got != 1 {
		t.Errorf("deltadb_changes_streams_open = %v after the drop, want 1 (the reader)", got)
	}
	if got := metricOf(t, n, "deltadb_changes_events_sent_total"); got < writes {
		t.Errorf("deltadb_changes_events_sent_total = %v, want at least %d", got, writes)
	}
	conn.SetReadDeadline(time.Now().Add(scaled(10 * time.Second)))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Errorf("the dropped stream did not end: %v", err)
	}
	t.Logf("RSS %d MB before, %d MB after", before>>20, after>>20)
}

// streamRecorder is an event stream's consumer in process: it keeps what
// the server wrote, and holds the write of the first change until
// release is closed (closing held when it starts waiting).
type streamRecorder struct {
	hdr           http.Header
	held, release chan struct{}
	once          sync.Once
	// syncBuffer keeps what was written; its String is what the server
	// wrote so far.
	syncBuffer
}

// newStreamRecorder is a recorder whose first change waits for release
// (already closed when hold is false).
func newStreamRecorder(hold bool) *streamRecorder {
	r := &streamRecorder{hdr: http.Header{}, held: make(chan struct{}), release: make(chan struct{})}
	if !hold {
		close(r.release)
	}
	return r
}

func (r *streamRecorder) Header() http.Header { return r.hdr }
func (r *streamRecorder) WriteHeader(int)     {}
func (r *streamRecorder) Flush()              {}

// Write keeps p, first waiting for release when p is the first change.
func (r *streamRecorder) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("event: change")) {
		r.once.Do(func() {
			close(r.held)
			<-r.release
		})
	}
	return r.syncBuffer.Write(p)
}

// serveStream serves db's event stream (query q) to rec in process until
// the returned stop; done closes when the handler has returned.
func serveStream(t *testing.T, ts *authTestServer, rec *streamRecorder, q string) (stop func(), done <-chan struct{}) {
	return serveStreamAs(t, ts, rec, testAdminKey, q)
}

// serveStreamAs is serveStream with credential token ("" for none: a
// ticket in q).
func serveStreamAs(t *testing.T, ts *authTestServer, rec *streamRecorder, token, q string) (stop func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/databases/chat/changes?feed=sse&"+q, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		ts.rest.ServeHTTP(rec, req)
	}()
	stop = func() {
		cancel()
		<-ended
	}
	t.Cleanup(stop)
	return stop, ended
}

// appendChanges appends n changes of db to f's log, 50 a group.
func appendChanges(t *testing.T, f *changeFeed, db string, n int) {
	t.Helper()
	for i := 0; i < n; i += 50 {
		recs := make([]*changeRec, min(50, n-i))
		for j := range recs {
			recs[j] = &changeRec{T: changeDone, DB: db, Key: fmt.Sprint(i + j), Op: "put", ETag: `"e"`}
		}
		if err := f.log.append(recs...).wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitClosed waits for c to close, failing with sentence after 10 s.
func waitClosed(t *testing.T, c <-chan struct{}, sentence string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(scaled(10 * time.Second)):
		t.Fatal(sentence)
	}
}

// TestChangesKeepAlive: an idle event stream gets a comment line every
// keep-alive interval, so that proxies keep its connection open.
func TestChangesKeepAlive(t *testing.T) {
	defer func(d time.Duration) { changeKeepAlive = d }(changeKeepAlive)
	changeKeepAlive = 20 * time.Millisecond
	ts := newAuthTestServer(t, authConfig{})
	rec := newStreamRecorder(false)
	stop, _ := serveStream(t, ts, rec, "since=now")
	w := newWait(t, "keep-alive lines", 10*time.Second)
	for strings.Count(rec.String(), "\n: keep-alive\n\n") < 2 {
		if w.over() {
			t.Fatalf("idle stream wrote %q, want keep-alive comment lines: %v", rec.String(), w)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if got := rec.hdr.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type %q", got)
	}
}

// TestChangesLaggingConsumer: a consumer following the feed that falls
// more than the feed's memory (changeTailLen changes) behind gets the
// event "lagging" with the cursor to resume from and the stream ends
// (counted as dropped); a page from that cursor catches up from the log.
func TestChangesLaggingConsumer(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	f := ts.rest.data.feed
	rec := newStreamRecorder(true)
	_, done := serveStream(t, ts, rec, "since=now")
	for w := newWait(t, "the stream open", 10*time.Second); f.openStreams() != 1; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("no stream: %v", w)
		}
	}
	appendChanges(t, f, "chat", 1)
	first := f.log.durable.Load()
	waitClosed(t, rec.held, "the stream sent no change")
	// While the consumer takes its first change, the feed moves on by
	// more than it keeps in memory.
	appendChanges(t, f, "o", changeTailLen+100)
	close(rec.release)
	waitClosed(t, done, "the lagging stream did not end")
	out := rec.String()
	want := fmt.Sprintf("event: lagging\ndata: {\"error\":\"this stream fell too far behind the feed; resume from resume_from\",\"resume_from\":\"%d\"}\n\n", first)
	if !strings.HasSuffix(out, want) || strings.Count(out, "event: change") != 1 {
		t.Errorf("stream wrote\n%s\nwant one change, then\n%s", out, want)
	}
	if got := f.droppedConsumers.Load(); got != 1 {
		t.Errorf("consumers dropped = %d, want 1", got)
	}
	var page feedPage
	json.Unmarshal(ts.mustDo(t, "GET", fmt.Sprintf("/api/databases/chat/changes?since=%d", first), testAdminKey, "", 200), &page)
	if end := fmt.Sprint(f.log.durable.Load()); len(page.Changes) != 0 || page.LastSeq != end {
		t.Errorf("page from resume_from = %+v, want no change of chat and last_seq %s, the end", page, end)
	}
}

// logLineWith is the first line of log holding each of parts, "" when
// none does.
func logLineWith(log string, parts ...string) string {
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return line
		}
	}
	return ""
}

// TestChangesStreamCursorExpired: an event stream whose cursor leaves the
// retention while its consumer is slow ends with the event "error": the
// 410's sentence (list the database) and resume_from.
func TestChangesStreamCursorExpired(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	f, err := newChangeFeed(t.TempDir(), feedLimits{retention: time.Hour, retentionBytes: changeRetentionMin,
		maxStreams: 10, maxStreamsPerPrincipal: 10}, slog.New(slog.DiscardHandler), osFileOps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	ts.rest.data.feed = f
	first := f.log.durable.Load() + 1 // the first change's seq
	appendChanges(t, f, "chat", 1)
	rec := newStreamRecorder(true)
	_, done := serveStream(t, ts, rec, "")
	waitClosed(t, rec.held, "the stream sent no change")
	// While the consumer takes its first change, the retention's 64 KiB
	// drop the segment after which it would resume.
	appendChanges(t, f, "o", 2000)
	if f.log.oldest() <= first {
		t.Fatalf("oldest cursor kept %d after 2000 changes in 64 KiB, want past %d", f.log.oldest(), first)
	}
	close(rec.release)
	waitClosed(t, done, "the stream did not end")
	out := rec.String()
	i := strings.LastIndex(out, "event: error\ndata: ")
	var ev struct {
		Error      string `json:"error"`
		ResumeFrom string `json:"resume_from"`
	}
	if i < 0 || json.Unmarshal([]byte(strings.TrimSpace(out[i+len("event: error\ndata: "):])), &ev) != nil ||
		ev.ResumeFrom != fmt.Sprint(first) || !strings.Contains(ev.Error, "list the database") {
		t.Errorf("stream wrote\n%s\nwant an error event with the 410's sentence and resume_from %d", out, first)
	}
}

// TestChangesKillAllWithLiveWorker: -role=all with a -role=proc worker
// attached, SIGKILLed under 32 writers and restarted on its ports while
// the worker lives on and holds its write-ahead log. The writes the crash
// left open in the feed cannot be settled before the worker subscribes
// again (its log may hold any entity's last write), which it does only
// once the restarted main worker serves: the start serves at once, the
// writes go on, and the feed holds every acknowledged write once, in
// order per key, and each entity's version.
func TestChangesKillAllWithLiveWorker(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	c := &cluster{t: t, dir: dir, workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, "-role=all", "-shared-fs="+dir, "-worker-id=w0")
	c.clusterAddr = c.main.logAddr("cluster listening")
	w1 := c.startWorker("w1")
	c.waitWorkers(20*time.Second, "w0", "w1")
	load := startFeedLoad(t, c.main.base, 32, 10)
	load.waitWrites(t, 300)
	// The writes routed to w1 wait while it is stopped, so the kill
	// surely finds writes open (a kill at a random instant found none in
	// about 1 run of 4); resumed, w1 lives on as before, well within its
	// lease.
	if err := w1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	c.main.kill()
	if err := w1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.main = launch(t, clusterEnv, "-role=all", "-shared-fs="+dir, "-worker-id=w0",
		"-rest-addr="+c.main.addr, "-cluster-addr="+c.clusterAddr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("main after its restart:\n%s\nworker:\n%s", c.main.stderr, w1.stderr)
		}
	})
	c.main.waitHealthy()
	t.Logf("restarted and healthy in %v", time.Since(start))
	// The kill left writes open: the start did not wait on them.
	if log := c.main.stderr.String(); !strings.Contains(log, "writes a crash left open are settled once the logs of running workers are handed over") {
		t.Errorf("the restart reports no write left open for the worker's log; the kill did not reproduce the case:\n%s", log)
	}
	c.waitWorkers(30*time.Second, "w0", "w1")
	load.waitWrites(t, 300)
	load.stop()
	load.verify(t, c.main)
}

// TestChangesIncludeDocsHeld: the documents of a change page with
// include_docs are held in the in-flight read budget until the page is
// written, as every answer of documents is. They were not: each event
// stream that did not read held a page of up to -max-response-bytes (100
// streams of one read-only key, 40 new documents of 900 KB: 260 MB, 106
// with them held), and the streams a server keeps (2,000) could hold 32
// GB.
func TestChangesIncludeDocsHeld(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	reads := ts.rest.data.reads
	doc := `{"pad":"` + strings.Repeat("x", 10000) + `"}`
	for _, k := range []string{"a", "b", "c"} {
		ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, fmt.Sprintf(`{%q:%s}`, k, doc), 200)
	}
	ts.mustDo(t, "GET", "/api/databases/chat/changes?include_docs=true", testAdminKey, "", 200)
	if used := reads.used.Load(); used != 0 {
		t.Errorf("after a page was answered the read budget holds %d bytes, want 0", used)
	}
	rec := newStreamRecorder(true)
	stop, _ := serveStream(t, ts, rec, "include_docs=true")
	waitClosed(t, rec.held, "the stream sent no change")
	if used := reads.used.Load(); used < 3*int64(len(doc)) {
		t.Errorf("while its page is written the read budget holds %d bytes, want the page's 3 documents (%d)", used, 3*len(doc))
	}
	close(rec.release)
	stop()
	if used := reads.used.Load(); used != 0 {
		t.Errorf("after the stream ended the read budget holds %d bytes, want 0", used)
	}
}

// TestChangeLogTurnBusy: a request that waits its limit for a turn to
// read the change log's files (changeFileReaders, all held) is refused as
// the server at its limit of reads: 503 with errBusy's JSON sentence (and
// the request ID), Retry-After: 1, logged at WARN "request refused", and
// nothing written. Two requests wait for a turn: a page of the feed from
// before its tail, and a PUT of an entity whose earlier write's outcome
// is still open (settling it reads the entity's last change from the
// files); the PUT's intent is not logged, the entity not written and the
// earlier intent stays open. Once a turn is free, both are answered. On
// the old code the PUT was answered as storage or workers unavailable
// (errBusy under errUnavailable), without Retry-After, logged at ERROR.
func TestChangeLogTurnBusy(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	var logs syncBuffer
	var err error
	if ts.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	f := ts.rest.data.feed
	l := f.log
	fillPastTail(t, l)
	l.mu.Lock()
	inMemory := l.tail[0].Seq <= l.segs[0].first
	l.mu.Unlock()
	if inMemory {
		t.Fatal("the change log holds its oldest changes in memory: no read from the oldest reads the files")
	}
	f.markOpen(changeRec{T: changeIntent, ID: 1, DB: "chat", Key: "k", Op: "put"})
	l.readWait = 200 * time.Millisecond
	for range cap(l.fileReaders) {
		l.fileReaders <- struct{}{}
	}
	held := true
	release := func() {
		if held {
			held = false
			for range cap(l.fileReaders) {
				<-l.fileReaders
			}
		}
	}
	defer release()
	end := l.durable.Load()
	busy := regexp.MustCompile(`^the server is at its limit of concurrent reads; try again shortly \(request ID (busy-[a-z]+)\)$`)
	for _, c := range []struct{ method, target, body, id string }{
		{"GET", fmt.Sprintf("/api/databases/chat/changes?since=%d", l.oldest()), "", "busy-page"},
		{"PUT", "/entity/chat", `{"k": {"v": 1}}`, "busy-put"},
	} {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		req.Header.Set("X-Request-ID", c.id)
		rec := httptest.NewRecorder()
		start := time.Now()
		ts.rest.ServeHTTP(rec, req)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s %s = %d %s: not JSON: %v", c.method, c.target, rec.Code, rec.Body, err)
		}
		m := busy.FindStringSubmatch(fmt.Sprint(body["error"]))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || len(body) != 1 || m == nil || m[1] != c.id {
			t.Errorf("%s %s without a turn = %d, Retry-After %q, %s; want 503, 1, {\"error\": errBusy's sentence with request ID %s}",
				c.method, c.target, rec.Code, rec.Header().Get("Retry-After"), rec.Body, c.id)
		}
		if waited := time.Since(start); waited < l.readWait {
			t.Errorf("%s %s refused after %v, want after its wait for a turn (%v)", c.method, c.target, waited, l.readWait)
		}
	}
	lines := parseLog(t, logs.String(), logFormatJSON)
	for _, id := range []string{"busy-page", "busy-put"} {
		if len(linesWith(lines, logLine{"msg": "request refused", "level": "WARN", "request_id": id, "status": "503"})) != 1 {
			t.Errorf("no WARN \"request refused\" line for %s", id)
		}
	}
	if errs := linesWith(lines, logLine{"level": "ERROR"}); len(errs) != 0 {
		t.Errorf("ERROR lines for busy refusals: %v", errs)
	}
	if got := l.durable.Load(); got != end || f.openWrites() != 1 {
		t.Errorf("after the refusals the change log ends at %d (open intents %d), want %d (1): nothing logged", got, f.openWrites(), end)
	}
	ts.mustDo(t, "GET", "/entity/chat?key=k", testAdminKey, "", http.StatusNotFound)
	release()
	ts.mustDo(t, "GET", fmt.Sprintf("/api/databases/chat/changes?since=%d&limit=1", l.oldest()), testAdminKey, "", http.StatusOK)
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"k": {"v": 1}}`, http.StatusOK)
	if got := ts.mustDo(t, "GET", "/entity/chat?key=k", testAdminKey, "", http.StatusOK); strings.TrimSpace(string(got)) != `{"v":1}` {
		t.Errorf("GET k after the turn came = %s, want {\"v\":1}", got)
	}
}

// fillPastTail logs changes of database chat past those l keeps in
// memory (a commit past twice changeTailLen keeps the last
// changeTailLen), within the retention (2 MiB), so that a read from the
// oldest reads the files.
func fillPastTail(t *testing.T, l *changeLog) {
	t.Helper()
	for i := range 8 {
		recs := make([]*changeRec, 2*changeTailLen/8+1)
		for j := range recs {
			recs[j] = &changeRec{T: changeDone, DB: "chat", Key: fmt.Sprint("o", i*len(recs)+j), Op: "put", ETag: `"e"`}
		}
		if err := l.append(recs...).wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChangeLogUnreadableSettle: a write of an entity whose earlier
// write's outcome is still open, when the change log's files that settle
// it cannot be read (a segment gone, or not a file), is refused 503 with
// the sentence that says so (the change feed's log, not storage or the
// workers; nothing written) and the request ID, without Retry-After;
// nothing is logged to the feed, the entity is not written and the
// earlier intent stays open; once the files read again the write is
// served. On the old code the gone segment answered the PUT 410 (the
// cursor older than the retention) and the other "storage or workers
// unavailable".
func TestChangeLogUnreadableSettle(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	f := ts.rest.data.feed
	l := f.log
	fillPastTail(t, l) // settling reads the files
	l.mu.Lock()
	seg := filepath.Join(l.dir, segmentName(l.segs[0].first))
	l.mu.Unlock()
	f.markOpen(changeRec{T: changeIntent, ID: 1, DB: "chat", Key: "k", Op: "put"})
	end := l.durable.Load()
	want := regexp.MustCompile(`^the change feed's log could not be read to settle an earlier write of this entity, so this write was refused and nothing of it was written; try again later \(request ID (unreadable-[a-z]+)\)$`)
	for _, c := range []struct {
		id    string
		spoil func() error
	}{
		{"unreadable-gone", func() error { return os.Rename(seg, seg+".away") }},
		{"unreadable-dir", func() error { return os.Mkdir(seg, 0o700) }},
	} {
		if err := c.spoil(); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("PUT", "/entity/chat", strings.NewReader(`{"k": {"v": 1}}`))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		req.Header.Set("X-Request-ID", c.id)
		rec := httptest.NewRecorder()
		ts.rest.ServeHTTP(rec, req)
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		m := want.FindStringSubmatch(fmt.Sprint(body["error"]))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "" || len(body) != 1 || m == nil || m[1] != c.id {
			t.Errorf("%s: PUT = %d, Retry-After %q, %s; want 503, none, the change log's sentence with request ID %s",
				c.id, rec.Code, rec.Header().Get("Retry-After"), rec.Body, c.id)
		}
		if got := l.durable.Load(); got != end || f.openWrites() != 1 {
			t.Errorf("%s: after the refusal the change log ends at %d (open intents %d), want %d (1)", c.id, got, f.openWrites(), end)
		}
		ts.mustDo(t, "GET", "/entity/chat?key=k", testAdminKey, "", http.StatusNotFound)
	}
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(seg+".away", seg); err != nil {
		t.Fatal(err)
	}
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"k": {"v": 1}}`, http.StatusOK)
	if f.openWrites() != 0 {
		t.Errorf("after the write %d intents are open, want 0 (settled)", f.openWrites())
	}
}

// TestChangesCredentialRevoked plays a reader whose credential is taken
// away while its stream is open: its API key deleted, limited to another
// database, left without read, its session logged out, or the key behind
// its stream ticket deleted. The stream ends with the event "error" (the
// credential's refusal and the cursor to resume from) before the next
// change, and a long-poll waiting at the time answers the refusal instead
// of the page: both went on serving the changes for as long as the
// connection lasted.
func TestChangesCredentialRevoked(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	f := ts.rest.data.feed
	newKey := func(name string) (secret, id string) {
		rec := ts.do("POST", "/api/keys", testAdminKey, `{"name":"`+name+`","permissions":["read"],"databases":["chat"]}`, "")
		var k struct{ Secret, ID string }
		if json.Unmarshal(rec.Body.Bytes(), &k); rec.Code != 201 {
			t.Fatalf("POST /api/keys = %d %s", rec.Code, rec.Body)
		}
		return k.Secret, k.ID
	}
	type revocation struct {
		name   string
		open   func() (token, q string)
		revoke func()
	}
	var id, session string
	byKey := func(name string) func() (string, string) {
		return func() (string, string) {
			var secret string
			secret, id = newKey(name)
			return secret, "since=now"
		}
	}
	edit := func(body string) func() {
		return func() {
			if rec := ts.do("PATCH", "/api/keys/"+id, testAdminKey, body, ""); rec.Code != 200 {
				t.Fatalf("PATCH %s = %d %s", body, rec.Code, rec.Body)
			}
		}
	}
	deleteKey := func() {
		if rec := ts.do("DELETE", "/api/keys/"+id, testAdminKey, "", ""); rec.Code != 200 {
			t.Fatalf("DELETE key = %d %s", rec.Code, rec.Body)
		}
	}
	for _, c := range []revocation{
		{"key deleted", byKey("deleted"), deleteKey},
		{"key limited to another database", byKey("rescoped"), edit(`{"databases":["other"]}`)},
		{"key without read", byKey("writer"), edit(`{"permissions":["write"]}`)},
		{"session logged out", func() (string, string) {
			secret, _ := newKey("session")
			rec := ts.do("POST", "/api/login", "", `{"key":"`+secret+`"}`, "")
			var l struct{ Token string }
			if json.Unmarshal(rec.Body.Bytes(), &l); rec.Code != 200 {
				t.Fatalf("login = %d %s", rec.Code, rec.Body)
			}
			session = l.Token
			return session, "since=now"
		}, func() {
			if rec := ts.do("POST", "/api/logout", session, "", ""); rec.Code != 200 {
				t.Fatalf("logout = %d %s", rec.Code, rec.Body)
			}
		}},
		{"ticket's key deleted", func() (string, string) {
			var secret string
			secret, id = newKey("ticket")
			rec := ts.do("POST", "/api/databases/chat/changes/ticket", secret, "", "")
			var tk struct{ Ticket string }
			if json.Unmarshal(rec.Body.Bytes(), &tk); rec.Code != 200 {
				t.Fatalf("ticket = %d %s", rec.Code, rec.Body)
			}
			return "", "since=now&ticket=" + tk.Ticket
		}, deleteKey},
	} {
		rec := newStreamRecorder(false)
		token, q := c.open()
		_, done := serveStreamAs(t, ts, rec, token, q)
		for w := newWait(t, c.name+": the stream to open", 10*time.Second); !strings.Contains(rec.String(), "retry:"); time.Sleep(5 * time.Millisecond) {
			if w.over() {
				t.Fatalf("%s: stream wrote %q: %v", c.name, rec.String(), w)
			}
		}
		appendChanges(t, f, "chat", 1)
		w := newWait(t, c.name+": the first change", 10*time.Second)
		for !strings.Contains(rec.String(), "event: change") {
			if w.over() {
				t.Fatalf("%s: stream wrote %q, want a change: %v", c.name, rec.String(), w)
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.revoke()
		appendChanges(t, f, "chat", 1)
		waitClosed(t, done, c.name+": the stream did not end")
		if got := rec.String(); strings.Count(got, "event: change") != 1 || !strings.Contains(got, "event: error") ||
			!strings.Contains(got, "resume_from") {
			t.Errorf("%s: stream wrote %q, want one change, then the event error", c.name, got)
		}
	}

	secret, id := newKey("poller")
	answer := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		answer <- ts.do("GET", "/api/databases/chat/changes?feed=longpoll&since=now&timeout=20000", secret, "", "")
	}()
	for w := newWait(t, "the long-poll to wait", 10*time.Second); f.openStreams() == 0; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("no long-poll waiting: %v", w)
		}
	}
	time.Sleep(50 * time.Millisecond) // into its wait
	if rec := ts.do("DELETE", "/api/keys/"+id, testAdminKey, "", ""); rec.Code != 200 {
		t.Fatalf("DELETE key = %d %s", rec.Code, rec.Body)
	}
	appendChanges(t, f, "chat", 1)
	select {
	case rec := <-answer:
		if rec.Code != 401 || strings.Contains(rec.Body.String(), "changes") {
			t.Errorf("long-poll of a deleted key = %d %s, want 401", rec.Code, rec.Body)
		}
	case <-time.After(scaled(15 * time.Second)):
		t.Fatal("the long-poll did not answer")
	}
}

// lowScanMax lowers changeScanMax to n for the test, so that a busy feed
// of a few hundred changes stands for one of tens of thousands.
func lowScanMax(t *testing.T, n int) {
	old := changeScanMax
	changeScanMax = n
	t.Cleanup(func() { changeScanMax = old })
}

// inPage reads one page of chat's feed (query q) from ts, wanting 200.
func inPage(t *testing.T, ts *authTestServer, q string) feedPage {
	t.Helper()
	var p feedPage
	if err := json.Unmarshal(ts.mustDo(t, "GET", "/api/databases/chat/changes?"+q, testAdminKey, "", 200), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChangesMoreQuietDatabase: a quiet database's write behind more
// than a page's scan budget of another database's changes is found by
// following last_seq while more is true. The first page holds no change
// and says more; the page with the write, which reaches the end, says
// none; so does a page at the end, and since=now. A page cut by limit
// says more, but for one that ends exactly at the feed's end. Before,
// pages said nothing of it, and a client following "until a page is
// empty" stopped at the first page and missed the acknowledged write.
func TestChangesMoreQuietDatabase(t *testing.T) {
	ts, f, since := quietBehindBusy(t)

	var pages []string
	var got []string
	cursor := since
	for range 10 {
		p := inPage(t, ts, "since="+cursor)
		pages = append(pages, fmt.Sprintf("%d/%v", len(p.Changes), p.more(t)))
		got = append(got, p.summary()...)
		cursor = p.LastSeq
		if !p.more(t) {
			break
		}
	}
	// 250 changes of busy, then chat's: two pages of 100 with none of
	// chat's, then the rest with it, at the end.
	if strings.Join(pages, " ") != "0/true 0/true 1/false" || len(got) != 1 || !strings.HasPrefix(got[0], "a put") {
		t.Errorf("following chat by more from %s: pages %q (changes, more), changes %q; want 0/true 0/true 1/false and the put of a", since, pages, got)
	}
	end := fmt.Sprint(f.log.durable.Load())
	if cursor != end {
		t.Errorf("last page's last_seq = %s, want the end %s", cursor, end)
	}
	for _, q := range []string{"since=" + end, "since=now", "since=now&limit=1"} {
		if p := inPage(t, ts, q); len(p.Changes) != 0 || p.more(t) || p.LastSeq != end {
			t.Errorf("?%s = %d changes, more %v, last_seq %s; want none, more false, %s", q, len(p.Changes), p.more(t), p.LastSeq, end)
		}
	}

	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"b": {"v": 2}}`, 200)
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"c": {"v": 3}}`, 200)
	p := inPage(t, ts, "limit=1&since="+end)
	if got := p.summary(); len(got) != 1 || !strings.HasPrefix(got[0], "b put") || !p.more(t) {
		t.Errorf("limit=1 before two changes = %q, more %v; want the put of b, more true", got, p.more(t))
	}
	// Cut by its limit exactly at the end: the page knows it is the end.
	p = inPage(t, ts, "limit=1&since="+p.LastSeq)
	if got := p.summary(); len(got) != 1 || !strings.HasPrefix(got[0], "c put") || p.more(t) {
		t.Errorf("limit=1 before the last change = %q, more %v; want the put of c, more false", got, p.more(t))
	}
}

// quietBehindBusy is a server whose feed, after cursor since, holds 250
// changes of database busy and then one put of chat's key a, with the
// scan budget of a page lowered to 100: chat's change is two pages of
// busy's behind since.
func quietBehindBusy(t *testing.T) (ts *authTestServer, f *changeFeed, since string) {
	t.Helper()
	lowScanMax(t, 100)
	ts = newAuthTestServer(t, authConfig{})
	f = ts.rest.data.feed
	since = fmt.Sprint(f.log.durable.Load())
	appendChanges(t, f, "busy", 2*changeScanMax+50)
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"a": {"v": 1}}`, 200)
	return ts, f, since
}

// TestChangesLongPollCatchesUp: a long-poll of a quiet database whose
// cursor is more than a page's scan budget behind in a busy feed reads on
// to the database's change and answers it at once; one with no change
// of its database after its cursor reads to the end, then waits its
// timeout and answers an empty page at the end, more false; one that
// cannot reach the end within longPollCatchUp answers the empty page it
// reached, more true. Before, the long-poll waited after the first empty
// page, as if at the end: for its timeout, then an empty page, while the
// change was there. The event stream catches up page after page the same
// way.
func TestChangesLongPollCatchesUp(t *testing.T) {
	ts, f, since := quietBehindBusy(t)

	start := time.Now()
	p := inPage(t, ts, "feed=longpoll&timeout=20000&since="+since)
	if got := p.summary(); len(got) != 1 || !strings.HasPrefix(got[0], "a put") || time.Since(start) > scaled(5*time.Second) {
		t.Errorf("long-poll from %d changes behind = %q after %v, want the put of a at once", 2*changeScanMax+51, got, time.Since(start))
	}
	if p.more(t) {
		t.Errorf("long-poll's page with the last change says more")
	}

	rec := newStreamRecorder(false)
	serveStream(t, ts, rec, "since="+since)
	for w := newWait(t, "the event stream's change", 10*time.Second); !strings.Contains(rec.String(), "event: change"); time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("event stream from %s wrote %q, want chat's change: %v", since, rec.String(), w)
		}
	}

	from := fmt.Sprint(f.log.durable.Load())
	appendChanges(t, f, "busy", 2*changeScanMax+50)
	end := fmt.Sprint(f.log.durable.Load())
	start = time.Now()
	p = inPage(t, ts, "feed=longpoll&timeout=300&since="+from)
	if len(p.Changes) != 0 || p.more(t) || p.LastSeq != end || time.Since(start) < 300*time.Millisecond {
		t.Errorf("long-poll with no change of chat = %d changes, more %v, last_seq %s after %v; want an empty page, more false, last_seq %s (the end) after 300 ms",
			len(p.Changes), p.more(t), p.LastSeq, time.Since(start), end)
	}

	// Past longPollCatchUp it answers the page it reached, before the
	// server's write limit would cut the answer: empty, more true, one
	// page further on.
	defer func(d time.Duration) { longPollCatchUp = d }(longPollCatchUp)
	longPollCatchUp = 0
	p = inPage(t, ts, "feed=longpoll&timeout=20000&since="+from)
	if want := fmt.Sprint(mustSeq(from) + uint64(changeScanMax)); len(p.Changes) != 0 || !p.more(t) || p.LastSeq != want {
		t.Errorf("long-poll past its catch-up time = %d changes, more %v, last_seq %s; want an empty page, more true, last_seq %s",
			len(p.Changes), p.more(t), p.LastSeq, want)
	}
}

// TestChangesDeletedStreamEnd: an event stream whose database is deleted
// sends every change of it not sent yet before the event "deleted", page
// after page, and "deleted" names the feed's end. Before, it read one
// page: past the scan budget of other changes (or a page's limit of
// deletes) the rest were never sent, and "deleted" named a last_seq
// short of them.
func TestChangesDeletedStreamEnd(t *testing.T) {
	lowScanMax(t, 100)
	ts := newAuthTestServer(t, authConfig{})
	f := ts.rest.data.feed
	since := f.log.durable.Load()
	appendChanges(t, f, "busy", 2*changeScanMax+50)
	for _, k := range []string{"a", "b", "c"} {
		if err := f.log.append(&changeRec{T: changeDone, DB: "chat", Key: k, Op: "delete"}).wait(); err != nil {
			t.Fatal(err)
		}
	}
	rec := newStreamRecorder(false)
	st := &stream{w: rec, rc: http.NewResponseController(rec), f: f}
	ts.rest.endDeleted(t.Context(), st, f, changeQuery{db: "chat", since: since})
	out := rec.String()
	want := fmt.Sprintf("event: deleted\ndata: {\"last_seq\":\"%d\"}\n\n", f.log.durable.Load())
	if strings.Count(out, "event: change") != 3 || !strings.HasSuffix(out, want) {
		t.Errorf("end of a deleted database's stream from %d changes behind:\n%s\nwant the 3 deletes, then\n%s", 2*changeScanMax+53, out, want)
	}
}
