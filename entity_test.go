package main

// Integration tests of API.md "Versions and ETags" and "PATCH" on the real
// binary: ETags and preconditions, PATCH, key listing, schema-bound databases,
// and the runnable examples/ against a live server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// entityClient sends requests with headers to one server with the admin
// key.
type entityClient struct {
	t    testing.TB
	base string
}

// reply is one answer.
type reply struct {
	code   int
	body   []byte
	header http.Header
}

// etag is the answer's ETag header.
func (r reply) etag() string { return r.header.Get("ETag") }

// do sends method path with body (string, or nil) and headers given as
// name, value pairs. It may run in any goroutine: a request that gets no
// answer is reported with t.Error and returned as status 0.
func (c entityClient) do(method, path string, body any, headers ...string) reply {
	c.t.Helper()
	r, err := c.send(method, path, body, headers...)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return reply{body: []byte(err.Error())}
	}
	return r
}

// send is do without reporting.
func (c entityClient) send(method, path string, body any, headers ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read body: %w", err)
	}
	return reply{resp.StatusCode, out, resp.Header}, nil
}

// check reports with t.Error, for use in goroutines, unless r has status
// code.
func (c entityClient) check(r reply, code int, what string) bool {
	c.t.Helper()
	if r.code != code {
		c.t.Errorf("%s = %d %s, want %d", what, r.code, r.body, code)
		return false
	}
	return true
}

// want fails the test unless r has status code; it returns r. Only for
// the test's own goroutine (see check).
func (c entityClient) want(r reply, code int, what string) reply {
	c.t.Helper()
	if r.code != code {
		c.t.Fatalf("%s = %d %s, want %d", what, r.code, r.body, code)
	}
	if code >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(r.body, &e) != nil || e.Error == "" {
			c.t.Errorf("%s: error body %q, want {\"error\": ...}", what, r.body)
		}
	}
	return r
}

func TestEntityETagsAndPreconditions(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	// PUT answers the new ETag, GET the same one; each write changes it.
	put1 := c.want(c.do("PUT", "/entity/db", `{"s":{"v":1}}`), 200, "PUT s")
	e1 := put1.etag()
	if len(e1) < 3 || e1[0] != '"' || e1[len(e1)-1] != '"' {
		t.Fatalf("PUT ETag = %q, want a quoted version", e1)
	}
	if got := c.want(c.do("GET", "/entity/db?key=s", nil), 200, "GET s").etag(); got != e1 {
		t.Errorf("GET ETag = %q, want the PUT's %q", got, e1)
	}
	e2 := c.want(c.do("PUT", "/entity/db", `{"s":{"v":2}}`), 200, "PUT s again").etag()
	if e2 == e1 || e2 == "" {
		t.Errorf("ETag after a second PUT = %q, want a new one (was %q)", e2, e1)
	}
	// If-Match: stale is 412 with the current ETag; current succeeds.
	r := c.want(c.do("PUT", "/entity/db", `{"s":{"v":3}}`, "If-Match", e1), 412, "PUT If-Match stale")
	if r.etag() != e2 {
		t.Errorf("412 ETag = %q, want the current %q", r.etag(), e2)
	}
	if got := c.do("GET", "/entity/db?key=s", nil); string(got.body) != `{"v":2}` {
		t.Errorf("after a failed If-Match PUT the entity is %s, want {\"v\":2}", got.body)
	}
	e3 := c.want(c.do("PUT", "/entity/db", `{"s":{"v":3}}`, "If-Match", e2), 200, "PUT If-Match current").etag()
	c.want(c.do("PUT", "/entity/db", `{"s":{"v":4}}`, "If-Match", `"x", `+e3), 200, "PUT If-Match list")
	c.want(c.do("PUT", "/entity/db", `{"s":{"v":5}}`, "If-Match", "*"), 200, "PUT If-Match *")
	c.want(c.do("PUT", "/entity/db", `{"s":{"v":6}}`, "If-Match", "W/"+c.do("GET", "/entity/db?key=s", nil).etag()), 412, "PUT If-Match weak")
	c.want(c.do("PUT", "/entity/db", `{"none":1}`, "If-Match", e1), 412, "PUT If-Match on a missing entity")
	c.want(c.do("PUT", "/entity/db", `{"none":1}`, "If-Match", "*"), 412, "PUT If-Match * on a missing entity")
	c.want(c.do("GET", "/entity/db?key=none", nil), 404, "GET after failed If-Match creates")
	c.want(c.do("PUT", "/entity/db", `{"s":1}`, "If-Match", "unquoted"), 400, "PUT If-Match malformed")
	// If-None-Match: * creates once.
	c.want(c.do("PUT", "/entity/db", `{"once":1}`, "If-None-Match", "*"), 200, "PUT If-None-Match * (new)")
	r = c.want(c.do("PUT", "/entity/db", `{"once":2}`, "If-None-Match", "*"), 412, "PUT If-None-Match * (exists)")
	if want := c.do("GET", "/entity/db?key=once", nil).etag(); r.etag() != want || want == "" {
		t.Errorf("412 for If-None-Match has ETag %q, want the current %q", r.etag(), want)
	}
	if got := c.do("GET", "/entity/db?key=once", nil); string(got.body) != "1" {
		t.Errorf("create-once entity = %s, want 1", got.body)
	}
	// GET with If-None-Match of the current version is 304.
	cur := c.do("GET", "/entity/db?key=once", nil).etag()
	if r := c.do("GET", "/entity/db?key=once", nil, "If-None-Match", cur); r.code != 304 || r.etag() != cur || len(r.body) != 0 {
		t.Errorf("GET If-None-Match current = %d %q %s, want 304 with the ETag and no body", r.code, r.etag(), r.body)
	}
	c.want(c.do("GET", "/entity/db?key=once", nil, "If-None-Match", e1), 200, "GET If-None-Match other")
	// DELETE honours If-Match.
	c.want(c.do("DELETE", "/entity/db?key=once", nil, "If-Match", e1), 412, "DELETE If-Match stale")
	c.want(c.do("DELETE", "/entity/db?key=once", nil, "If-Match", cur), 200, "DELETE If-Match current")
	c.want(c.do("DELETE", "/entity/db?key=once", nil, "If-Match", cur), 412, "DELETE If-Match on a missing entity")
	c.want(c.do("DELETE", "/entity/db?key=once", nil), 404, "DELETE missing")
	c.want(c.do("PUT", "/entity/db", `{"once":3}`, "If-None-Match", "*"), 200, "PUT If-None-Match * after delete")
}

func TestEntityBatchPreconditions(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	c.want(c.do("PUT", "/entity/db", `{"a":1,"b:x":1}`), 200, "PUT a, b:x")
	ea := c.do("GET", "/entity/db?key=a", nil).etag()
	eb := c.do("GET", "/entity/db?key=b:x", nil).etag()
	q := func(pairs ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(pairs); i += 2 {
			v.Add(pairs[i], pairs[i+1])
		}
		return "/entity/db?" + v.Encode()
	}
	// One failing precondition: nothing of the batch is written.
	r := c.want(c.do("PUT", q("if_match", "a:"+ea, "if_match", "b:x:"+ea, "if_none_match", "new"), `{"a":2,"b:x":2,"new":2}`), 412, "batch with a stale key")
	if !strings.Contains(string(r.body), `b:x`) {
		t.Errorf("412 body %s does not name the failing key b:x", r.body)
	}
	for _, k := range []string{"a", "b:x"} {
		if got := c.do("GET", "/entity/db?key="+url.QueryEscape(k), nil); string(got.body) != "1" {
			t.Errorf("after the failed batch %s = %s, want 1", k, got.body)
		}
	}
	c.want(c.do("GET", "/entity/db?key=new", nil), 404, "GET new after the failed batch")
	c.want(c.do("PUT", q("if_none_match", "a"), `{"a":2,"z":2}`), 412, "batch if_none_match on an existing key")
	c.want(c.do("GET", "/entity/db?key=z", nil), 404, "GET z after the failed batch")
	// All hold: everything is written.
	c.want(c.do("PUT", q("if_match", "a:"+ea, "if_match", "b:x:"+strings.Trim(eb, `"`), "if_none_match", "new"), `{"a":2,"b:x":2,"new":2}`), 200, "batch whose preconditions hold")
	for _, k := range []string{"a", "b:x", "new"} {
		if got := c.do("GET", "/entity/db?key="+url.QueryEscape(k), nil); string(got.body) != "2" {
			t.Errorf("after the batch %s = %s, want 2", k, got.body)
		}
	}
	// Malformed forms are 400.
	c.want(c.do("PUT", q("if_match", "zz:"+ea), `{"a":3,"b:x":3}`), 400, "if_match on a key not in the body")
	c.want(c.do("PUT", q("if_match", "a"), `{"a":3,"b:x":3}`), 400, "if_match without an etag")
	c.want(c.do("PUT", q("if_none_match", "a", "if_none_match", "a"), `{"a":3,"b:x":3}`), 400, "if_none_match twice")
	c.want(c.do("PUT", "/entity/db", `{"a":3,"b:x":3}`, "If-Match", ea), 400, "If-Match header on a multi-key PUT")
	// The query form works for a single key as well.
	c.want(c.do("PUT", q("if_match", "a:"+ea), `{"a":3}`), 412, "single-key if_match stale")
}

func TestEntityPatch(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	const merge, jpatch = "application/merge-patch+json", "application/json-patch+json"
	e0 := c.want(c.do("PUT", "/entity/chat", `{"s1":{"title":"t","messages":[{"role":"user","content":"hi"}]}}`), 200, "PUT s1").etag()
	r := c.want(c.do("PATCH", "/entity/chat?key=s1", `{"title":"new","tags":["x"]}`, "Content-Type", merge), 200, "merge patch")
	if !jsonEqual(r.body, []byte(`{"title":"new","tags":["x"],"messages":[{"role":"user","content":"hi"}]}`)) {
		t.Errorf("merge patch answer = %s", r.body)
	}
	e1 := r.etag()
	if e1 == "" || e1 == e0 {
		t.Errorf("merge patch ETag = %q, want a new one (was %q)", e1, e0)
	}
	if got := c.do("GET", "/entity/chat?key=s1", nil); !jsonEqual(got.body, r.body) || got.etag() != e1 {
		t.Errorf("GET after patch = %s %q, want %s %q", got.body, got.etag(), r.body, e1)
	}
	r = c.want(c.do("PATCH", "/entity/chat?key=s1", `[{"op":"add","path":"/messages/-","value":{"role":"assistant","content":"hello"}},{"op":"remove","path":"/tags"}]`,
		"Content-Type", jpatch+"; charset=utf-8", "If-Match", e1), 200, "JSON patch append with If-Match")
	if !jsonEqual(r.body, []byte(`{"title":"new","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`)) {
		t.Errorf("JSON patch answer = %s", r.body)
	}
	e2 := r.etag()
	// Failures leave the entity alone.
	c.want(c.do("PATCH", "/entity/chat?key=s1", `{"title":"x"}`, "Content-Type", merge, "If-Match", e1), 412, "patch If-Match stale")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `{"title":"x"}`, "Content-Type", "application/json"), 415, "patch application/json")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `{"title":"x"}`), 415, "patch without Content-Type")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `{"title":`, "Content-Type", merge), 400, "merge patch not JSON")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `[{"op":"frob","path":"/a"}]`, "Content-Type", jpatch), 400, "JSON patch unknown op")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `{"op":"add"}`, "Content-Type", jpatch), 400, "JSON patch not an array")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `[{"op":"test","path":"/title","value":"old"},{"op":"replace","path":"/title","value":"x"}]`,
		"Content-Type", jpatch), 409, "JSON patch test fails")
	c.want(c.do("PATCH", "/entity/chat?key=s1", `[{"op":"remove","path":"/messages/9"}]`, "Content-Type", jpatch), 409, "JSON patch path missing")
	c.want(c.do("PATCH", "/entity/chat?key=nope", `{"a":1}`, "Content-Type", merge), 404, "patch a missing entity")
	c.want(c.do("PATCH", "/entity/chat", `{"a":1}`, "Content-Type", merge), 400, "patch without key")
	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	r = c.want(c.do("PATCH", "/entity/chat?key=s1&schema=chat.v1", `{"messages":[{"role":"robot","content":"x"}]}`, "Content-Type", merge), 400, "patch failing ?schema=")
	if !strings.Contains(string(r.body), "/messages/0/role") {
		t.Errorf("validation error %s does not name /messages/0/role", r.body)
	}
	if got := c.do("GET", "/entity/chat?key=s1", nil); got.etag() != e2 {
		t.Errorf("after failed patches ETag = %q, want %q unchanged", got.etag(), e2)
	}
}

// chatAppends sends appends PATCHes of one message each to db/key from
// clients goroutines and fails the test unless all succeed.
func chatAppends(t *testing.T, base, db, key string, appends, clients int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	go func() {
		for i := range appends {
			next <- i
		}
		close(next)
	}()
	for range clients {
		wg.Go(func() {
			c := entityClient{t, base}
			for i := range next {
				patch := fmt.Sprintf(`[{"op":"add","path":"/messages/-","value":{"role":"user","content":"m%d"}}]`, i)
				if r := c.do("PATCH", "/entity/"+db+"?key="+key, patch, "Content-Type", jsonPatchType); r.code != 200 {
					t.Errorf("append %d = %d %s", i, r.code, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkMessages fails the test unless db/key holds exactly m0..m(n-1),
// each once.
func checkMessages(t *testing.T, base, db, key string, n int) {
	t.Helper()
	c := entityClient{t, base}
	r := c.want(c.do("GET", "/entity/"+db+"?key="+key, nil), 200, "GET session")
	var s struct{ Messages []struct{ Content string } }
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range s.Messages {
		seen[m.Content] = true
	}
	if len(s.Messages) != n || len(seen) != n {
		t.Errorf("session holds %d messages (%d distinct), want %d", len(s.Messages), len(seen), n)
	}
}

func TestEntityConcurrentAppends(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	c.want(c.do("PUT", "/entity/chat", `{"s":{"messages":[]}}`), 200, "PUT session")
	start := time.Now()
	chatAppends(t, n.base, "chat", "s", 1000, 32)
	t.Logf("1000 appends from 32 clients in %v", time.Since(start).Round(time.Millisecond))
	checkMessages(t, n.base, "chat", "s", 1000)
}

// TestEntityClusterAppendsAndBinding: with a main and two workers, 1000
// concurrent appends from 32 clients to one session all land (on the
// session's owner), and a binding applies to patches served by either
// worker.
func TestEntityClusterAppendsAndBinding(t *testing.T) {
	cl := startCluster(t, "w1", "w2")
	base := cl.main.base
	c := entityClient{t, base}
	c.want(c.do("PUT", "/entity/chat", `{"hot":{"messages":[]}}`), 200, "PUT hot")
	start := time.Now()
	chatAppends(t, base, "chat", "hot", 1000, 32)
	t.Logf("1000 appends from 32 clients through main + 2 workers in %v", time.Since(start).Round(time.Millisecond))
	checkMessages(t, base, "chat", "hot", 1000)
	// Eight sessions land on both workers; each must see the binding.
	sessions := map[string]any{}
	for i := range 8 {
		sessions[fmt.Sprint("s", i)] = map[string]any{"messages": []any{}}
	}
	c.want(c.do("PUT", "/entity/chat", sessions), 200, "PUT sessions")
	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"chat.v1"}`), 200, "bind chat")
	for s := range sessions {
		c.want(c.do("PATCH", "/entity/chat?key="+s, `{"messages":"not a list"}`, "Content-Type", mergePatchType), 400, "invalid patch of "+s)
		c.want(c.do("PATCH", "/entity/chat?key="+s, `{"title":"ok"}`, "Content-Type", mergePatchType), 200, "valid patch of "+s)
	}
}

func TestEntityListing(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	const total = 2500
	keys := make([]string, 0, total)
	for i := range total {
		keys = append(keys, fmt.Sprintf("k%05d", i*2)) // even numbers; inserts use odd ones
	}
	// Batch PUTs of 250 keys, ten at a time.
	var wg sync.WaitGroup
	for b := 0; b < total; b += 250 {
		wg.Go(func() {
			body := map[string]int{}
			for _, k := range keys[b : b+250] {
				body[k] = 1
			}
			c.check(c.do("PUT", "/entity/big", body), 200, "batch PUT")
		})
	}
	wg.Wait()
	// Page through while other clients insert keys all over the range.
	stop := make(chan struct{})
	var inserted sync.WaitGroup
	for w := range 4 {
		inserted.Go(func() {
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("k%05d", (i*7919%total)*2+1)
				if !c.check(c.do("PUT", "/entity/big", map[string]int{k: 2}), 200, "insert "+k) {
					return
				}
			}
		})
	}
	var listed []string
	cursor, pages := "", 0
	for {
		path := "/api/databases/big/keys?limit=" + fmt.Sprint(50+pages%7*100)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Keys []string
			Next *string
		}
		r := c.want(c.do("GET", path, nil), 200, "GET "+path)
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		listed = append(listed, page.Keys...)
		pages++
		if page.Next == nil {
			if strings.Contains(string(r.body), `"next"`) {
				t.Errorf("last page %s carries next", r.body)
			}
			break
		}
		if *page.Next == "" || pages > total {
			t.Fatalf("page %d: next = %q", pages, *page.Next)
		}
		cursor = *page.Next
	}
	close(stop)
	inserted.Wait()
	if !slices.IsSorted(listed) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Errorf("listing of %d keys is not strictly increasing (order or duplicates)", len(listed))
	}
	for _, k := range keys {
		if _, found := slices.BinarySearch(listed, k); !found {
			t.Errorf("pre-existing key %s not listed", k)
			break
		}
	}
	t.Logf("%d pages, %d keys listed (%d pre-existing)", pages, len(listed), total)
	// Prefix and limits.
	var page struct {
		Keys []string
		Next string
	}
	json.Unmarshal(c.want(c.do("GET", "/api/databases/big/keys?prefix=k0001&limit=3", nil), 200, "prefix").body, &page)
	if len(page.Keys) != 3 || page.Keys[0] != "k00010" || !strings.HasPrefix(page.Keys[2], "k0001") || page.Next == "" {
		t.Errorf("prefix k0001 limit 3 = %q next %q", page.Keys, page.Next)
	}
	// Following next gives the keys right after the first page's, in order:
	// together the pages are the whole prefix listing.
	first, next := page.Keys, page.Next
	var all struct{ Keys []string }
	json.Unmarshal(c.want(c.do("GET", "/api/databases/big/keys?prefix=k0001&limit=1000", nil), 200, "whole prefix").body, &all)
	page.Keys, page.Next = nil, ""
	json.Unmarshal(c.want(c.do("GET", "/api/databases/big/keys?prefix=k0001&limit=3&cursor="+url.QueryEscape(next), nil), 200, "second page").body, &page)
	if got := append(slices.Clone(first), page.Keys...); len(all.Keys) <= 3 || !slices.Equal(got, all.Keys[:min(6, len(all.Keys))]) {
		t.Errorf("pages of prefix k0001: %q then %q, want the first 6 of %q", first, page.Keys, all.Keys)
	}
	json.Unmarshal(c.want(c.do("GET", "/api/databases/big/keys", nil), 200, "default limit").body, &page)
	if len(page.Keys) != defaultListLimit {
		t.Errorf("default page has %d keys, want %d", len(page.Keys), defaultListLimit)
	}
	r := c.want(c.do("GET", "/api/databases/none/keys", nil), 200, "empty database")
	if strings.TrimSpace(string(r.body)) != `{"keys":[]}` {
		t.Errorf("empty listing = %s, want {\"keys\":[]}", r.body)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "cursor=%25%25", "cursor=", "cursor=Lw", "prefix=a%2Fb"} {
		c.want(c.do("GET", "/api/databases/big/keys?"+bad, nil), 400, "listing with "+bad)
	}
	c.want(c.do("GET", "/api/databases/big/keys?limit=1000", nil), 200, "limit 1000")
	c.want(c.do("GET", "/entity/big", nil), 400, "GET /entity/{db} without key")
}

func TestEntityBoundDatabase(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	c.want(c.do("PUT", "/schema/titled.v1", `{"type":"object","required":["title"]}`), 200, "PUT schema")
	c.want(c.do("GET", "/api/databases/chat", nil), 404, "GET unknown database")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"nope.v1"}`), 400, "bind to an unknown schema")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"bad/id"}`), 400, "bind to a bad ID")
	c.want(c.do("PUT", "/api/databases/chat", `{}`), 400, "bind without schema")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"chat.v1","x":1}`), 400, "bind with unknown member")
	r := c.want(c.do("PUT", "/api/databases/chat", `{"schema":"chat.v1"}`), 200, "bind")
	if !jsonEqual(r.body, []byte(`{"name":"chat","schema":"chat.v1","entities":0,"max_versions":0}`)) {
		t.Errorf("bind answer = %s", r.body)
	}
	// Every write is validated without ?schema=; nothing of a failing batch
	// is written. The invalid key sorts last, so a batch validated only as
	// it is written would have stored the valid ones first.
	r = c.want(c.do("PUT", "/entity/chat", `{"ok":{"messages":[]},"a-ok":{"messages":[]},"zz-bad":{"messages":[{"role":"robot","content":1}]}}`), 400, "PUT invalid into bound db")
	for _, want := range []string{"zz-bad", "/messages/0/role", "/messages/0/content"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("validation error %s does not mention %q", r.body, want)
		}
	}
	c.want(c.do("GET", "/entity/chat?key=ok", nil), 404, "GET ok after the failed batch")
	c.want(c.do("GET", "/entity/chat?key=a-ok", nil), 404, "GET a-ok after the failed batch")
	c.want(c.do("PUT", "/entity/chat", `{"ok":{"messages":[]}}`), 200, "PUT valid into bound db")
	c.want(c.do("PATCH", "/entity/chat?key=ok", `[{"op":"add","path":"/messages/-","value":{"role":"user"}}]`, "Content-Type", jsonPatchType), 400, "PATCH to invalid")
	c.want(c.do("PATCH", "/entity/chat?key=ok", `[{"op":"add","path":"/messages/-","value":{"role":"user","content":"hi"}}]`, "Content-Type", jsonPatchType), 200, "PATCH valid")
	// ?schema= on a bound database: the document must match both.
	c.want(c.do("PUT", "/entity/chat?schema=titled.v1", `{"ok":{"messages":[]}}`), 400, "PUT matching only the bound schema")
	c.want(c.do("PUT", "/entity/chat?schema=titled.v1", `{"ok":{"title":"t"}}`), 400, "PUT matching only ?schema=")
	c.want(c.do("PUT", "/entity/chat?schema=titled.v1", `{"ok":{"title":"t","messages":[]}}`), 200, "PUT matching both")
	r = c.want(c.do("GET", "/api/databases/chat", nil), 200, "GET bound db")
	if !jsonEqual(r.body, []byte(`{"name":"chat","schema":"chat.v1","entities":1,"max_versions":0}`)) {
		t.Errorf("GET bound db = %s", r.body)
	}
	// Unbinding is explicit, with null or "".
	r = c.want(c.do("PUT", "/api/databases/chat", `{"schema":null}`), 200, "unbind")
	if !jsonEqual(r.body, []byte(`{"name":"chat","schema":null,"entities":1,"max_versions":0}`)) {
		t.Errorf("unbind answer = %s", r.body)
	}
	c.want(c.do("PUT", "/entity/chat", `{"free":"anything"}`), 200, "PUT into unbound db")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"chat.v1"}`), 200, "bind again")
	c.want(c.do("PUT", "/entity/chat", `{"free":"anything"}`), 400, "PUT into rebound db")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":""}`), 200, "unbind with \"\"")
	c.want(c.do("PUT", "/entity/chat", `{"free":"again"}`), 200, "PUT after unbinding")
	// A binding alone makes the database known.
	c.want(c.do("PUT", "/api/databases/empty", `{"schema":"chat.v1"}`), 200, "bind an empty db")
	c.want(c.do("GET", "/api/databases/empty", nil), 200, "GET bound empty db")
}

// TestExamples runs each client of examples/ against a live server and
// checks what it stored. A missing interpreter or tool skips its example
// locally and fails it in CI.
func TestExamples(t *testing.T) {
	n, _ := startDefault(t)
	c := entityClient{t, n.base}
	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	c.want(c.do("PUT", "/api/databases/examples", `{"schema":"chat.v1"}`), 200, "bind")
	for _, ex := range []struct {
		name  string
		tools []string
		cmd   []string
	}{
		{"go", []string{"go"}, []string{"go", "run", "./examples/go"}},
		{"python", []string{"python3"}, []string{"python3", "examples/python/chat.py"}},
		{"curl", []string{"bash", "curl", "jq"}, []string{"bash", "examples/curl/chat.sh"}},
	} {
		t.Run(ex.name, func(t *testing.T) {
			c := entityClient{t, n.base} // this subtest's t
			for _, tool := range ex.tools {
				if _, err := exec.LookPath(tool); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatalf("%s is needed to run examples/%s", tool, ex.name)
					}
					t.Skipf("%s not installed", tool)
				}
			}
			session := "example-" + ex.name
			// The first run creates the session, the second appends to it.
			for run := 1; run <= 2; run++ {
				cmd := exec.Command(ex.cmd[0], append(ex.cmd[1:], fmt.Sprintf("hello %d", run))...)
				cmd.Env = append(os.Environ(), "DDB_URL="+n.base, "DDB_TOKEN="+testAdminKey, "DDB_DB=examples", "DDB_SESSION="+session)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("examples/%s run %d: %v\n%s", ex.name, run, err, out)
				}
				t.Logf("examples/%s run %d:\n%s", ex.name, run, out)
			}
			r := c.want(c.do("GET", "/entity/examples?key="+session, nil), 200, "GET "+session)
			var s struct {
				Title    string
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal(r.body, &s); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range s.Messages {
				got = append(got, m.Role+":"+m.Content)
			}
			want := []string{"user:hello 1", "assistant:You said: hello 1", "user:hello 2", "assistant:You said: hello 2"}
			if s.Title == "" || !slices.Equal(got, want) {
				t.Errorf("examples/%s stored %s, want a titled session with messages %q", ex.name, r.body, want)
			}
		})
	}
}

// TestS3EntityCluster runs appends, preconditions, listing and a binding
// through a main and two workers storing in one S3 bucket (skipped without
// an S3 server, as s3store_test.go says).
func TestS3EntityCluster(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	cfg.Bucket = "ddb-" + uniqueName(t)
	bucket, err := configureS3Store(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the processes are killed
		defer bucket.Close()
		removeAll(t, bucket)
		if _, err := bucket.do(context.Background(), s3Request{method: http.MethodDelete}); err != nil {
			t.Errorf("cleanup: delete bucket %q: %v", cfg.Bucket, err)
		}
	})
	s3args := []string{"-s3-endpoint=" + cfg.Endpoint, "-s3-access-key=" + cfg.AccessKey,
		"-s3-secret-key=" + cfg.SecretKey, "-s3-bucket=" + cfg.Bucket}
	cl := &cluster{t: t, workers: map[string]*node{}}
	cl.main = startNode(t, clusterEnv, append([]string{"-role=main", "-shared-fs=" + filepath.Join(t.TempDir(), "unused")}, s3args...)...)
	cl.clusterAddr = cl.main.logAddr("cluster listening")
	for _, id := range []string{"w1", "w2"} {
		cl.workers[id] = launch(t, workerEnv, append([]string{"-role=proc", "-worker-id=" + id,
			"-main-addr=" + cl.clusterAddr, "-grpc-addr=127.0.0.1:0", "-shared-fs=" + filepath.Join(t.TempDir(), "unused")}, s3args...)...)
	}
	cl.waitWorkers(20*time.Second, "w1", "w2")
	base := cl.main.base
	c := entityClient{t, base}

	sessions := []string{"s1", "s2"}
	for _, s := range sessions {
		c.want(c.do("PUT", "/entity/chat", map[string]any{s: map[string]any{"messages": []any{}}}, "If-None-Match", "*"), 200, "create "+s)
	}
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() { chatAppends(t, base, "chat", s, 200, 8) })
	}
	wg.Wait()
	for _, s := range sessions {
		checkMessages(t, base, "chat", s, 200)
	}
	tag := c.do("GET", "/entity/chat?key=s1", nil).etag()
	c.want(c.do("PUT", "/entity/chat", `{"s1":{"messages":[]}}`, "If-Match", `"stale"`), 412, "PUT If-Match stale")
	c.want(c.do("PUT", "/entity/chat", `{"s1":{"messages":[]}}`, "If-None-Match", "*"), 412, "PUT If-None-Match existing")
	c.want(c.do("DELETE", "/entity/chat?key=s1", nil, "If-Match", tag), 200, "DELETE If-Match current")

	body := map[string]int{}
	for i := range 300 {
		body[fmt.Sprintf("k%03d", i)] = i
	}
	c.want(c.do("PUT", "/entity/list", body), 200, "batch PUT")
	var listed []string
	for cursor := ""; ; {
		var page struct {
			Keys []string
			Next string
		}
		path := "/api/databases/list/keys?limit=70"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		json.Unmarshal(c.want(c.do("GET", path, nil), 200, "list").body, &page)
		listed = append(listed, page.Keys...)
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(listed) != 300 || !slices.IsSorted(listed) || listed[0] != "k000" {
		t.Errorf("listing over S3 = %d keys, sorted %v", len(listed), slices.IsSorted(listed))
	}

	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	c.want(c.do("PUT", "/api/databases/chat", `{"schema":"chat.v1"}`), 200, "bind")
	c.want(c.do("PATCH", "/entity/chat?key=s2", `{"messages":7}`, "Content-Type", mergePatchType), 400, "invalid patch in bound db")
	r := c.want(c.do("GET", "/api/databases/chat", nil), 200, "GET db")
	if !jsonEqual(r.body, []byte(`{"name":"chat","schema":"chat.v1","entities":1,"max_versions":0}`)) {
		t.Errorf("GET db = %s", r.body)
	}
}

// TestRefusedWriteMakesNoDataKey: a write that needs its entity to be
// stored (a PATCH, a PUT with If-Match, an undelete), refused in a
// database that has no entity, leaves storage as it was. Before, the
// worker made the database's first data key before finding the entity
// missing, so each such 404 or 412 wrote _meta/datakeys/<db>.json, and
// the database showed up in storage.
func TestRefusedWriteMakesNoDataKey(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	for _, c := range []struct {
		db, method, path, body, ct, ifMatch string
		want                                int
	}{
		{"fresh1", "PATCH", "/entity/fresh1?key=k", `{"a":1}`, "application/merge-patch+json", "", 404},
		{"fresh2", "PATCH", "/entity/fresh2?key=k", `[]`, "application/json-patch+json", "*", 412},
		{"fresh3", "PUT", "/entity/fresh3", `{"k":{}}`, "", "*", 412},
		{"fresh4", "POST", "/entity/fresh4/undelete?key=k", "", "", "", 404},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		if c.ifMatch != "" {
			req.Header.Set("If-Match", c.ifMatch)
		}
		rec := httptest.NewRecorder()
		ts.rest.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, rec.Code, rec.Body, c.want)
		}
		if _, err := ts.st.Get(t.Context(), dataKeysObjectKey(c.db)); !errors.Is(err, errNotFound) {
			t.Errorf("after %s %s (refused) the data keys of %s: %v, want none", c.method, c.path, c.db, err)
		}
	}
	// A PUT with If-Match of an entity that exists still writes.
	ts.mustDo(t, "PUT", "/entity/fresh5", testAdminKey, `{"k":{"n":1}}`, 200)
	rec := ts.doWith("PATCH", "/entity/fresh5?key=k", testAdminKey, `{"n":2}`, "application/merge-patch+json")
	if rec.Code != 200 || rec.Body.String() != `{"n":2}` {
		t.Errorf("PATCH of a stored entity = %d %s, want 200 {\"n\":2}", rec.Code, rec.Body)
	}
}
