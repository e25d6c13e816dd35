package main

// Hostile-input sweeps of the change feed, entity versions, find,
// export and import, the audit log, key jobs and entity checks, OIDC
// bearer tokens, and the core routes: entity PUT, GET, DELETE and PATCH,
// API keys and the login, schemas and bindings, and the client port's
// gRPC Process: each table sends inputs an attacker would (wrong types,
// huge and negative numbers, duplicate parameters, invalid UTF-8 and NUL
// bytes, encoded slashes and dots, forged cursors and tickets, odd
// conditional headers, another database's scope) to the REST server in
// process and checks what a client and an operator would: the status, a
// body {"error": one sentence about the request} that leaks no internals,
// storage unchanged by a refused request, and no secret or document in
// the log.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// hostileCase is one hostile request and the status it must get.
type hostileCase struct {
	name         string
	method, path string
	body         string
	// hdr are request headers; an "Authorization" here replaces token's.
	hdr map[string]string
	// token is the bearer credential: "" the admin key, "-" none.
	token string
	want  int
	// readBack is a GET path whose answer a refused request must leave
	// byte-identical ("" for none): what the worker serves, cached or not.
	readBack string
	// wantHdr are answer headers the case must carry.
	wantHdr map[string]string
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostileServer is an auth test server whose REST log is kept in logs at
// debug level.
func hostileServer(t *testing.T, cfg authConfig) (*authTestServer, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	ts := newAuthTestServerOn(t, cfg, newTestFSStore(t), func(o *restOptions) {
		o.log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	return ts, logs
}

// storeDigest is every file under the fs store's root with a hash of its
// bytes, for checking that a refused request changed nothing.
func storeDigest(t *testing.T, st store) map[string]string {
	t.Helper()
	fst, ok := fsBackend(st)
	if !ok {
		t.Fatal("storeDigest needs the filesystem backend")
	}
	out := map[string]string{}
	err := filepath.WalkDir(fst.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(p, "/_locks/") {
			// A write's lock file (one of a bounded set, empty) is
			// made when first taken, refused or not.
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// A file last changed a while ago and hashed since is not read
		// again: any later change gives it a later time. One changed
		// lately might change again within the clock's tick (file times
		// are coarse), with the same size and time, so it is read.
		stamp := digestStamp{p, info.Size(), info.ModTime().UnixNano()}
		settled := time.Since(info.ModTime()) > 100*time.Millisecond
		if h, ok := digestCache.Load(stamp); ok && settled {
			out[p] = h.(string)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		out[p] = hex.EncodeToString(h[:])
		if settled {
			digestCache.Store(stamp, out[p])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// digestStamp names one version of a file for digestCache.
type digestStamp struct {
	path        string
	size, mtime int64
}

// digestCache holds the hash of each file version storeDigest read.
var digestCache sync.Map

// leakPattern matches what an error sentence must not show: file paths,
// Go internals, a format's mistake, a stack.
var leakPattern = regexp.MustCompile(`/tmp/|\.go:|goroutine|runtime\.|panic|%!|strconv\.|json: |\bfunc\b|0xc0|\*main\.|main\.[a-z]`)

// checkHostileBody fails unless body is {"error": one sentence} without
// internals.
func checkHostileBody(t *testing.T, what string, body []byte) {
	t.Helper()
	var e map[string]json.RawMessage
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: body %q is not a JSON object", what, body)
		return
	}
	var msg string
	if err := json.Unmarshal(e["error"], &msg); err != nil || msg == "" {
		t.Errorf("%s: body %s has no \"error\" sentence", what, body)
		return
	}
	switch {
	case strings.ContainsAny(msg, "\n\r\x00"):
		t.Errorf("%s: error %q spans lines or holds a NUL", what, msg)
	case regexp.MustCompile(`[.!?] [A-Z]`).MatchString(msg):
		t.Errorf("%s: error %q is more than one sentence", what, msg)
	case leakPattern.MatchString(msg):
		t.Errorf("%s: error %q shows internals", what, msg)
	case len(msg) > 600:
		t.Errorf("%s: error of %d bytes: %.200q...", what, len(msg), msg)
	}
}

// runHostile sends each case to ts and checks its status and, for a
// refusal, its body and that storage did not change; then that the log
// holds none of secrets.
func runHostile(t *testing.T, ts *authTestServer, logs *lockedBuffer, cases []hostileCase, secrets ...string) {
	t.Helper()
	for _, c := range cases {
		before := storeDigest(t, ts.st)
		var readBefore string
		if c.readBack != "" {
			readBefore = ts.do("GET", c.readBack, testAdminKey, "", "").Body.String()
		}
		req := httptest.NewRequest(c.method, "http://x"+c.path, strings.NewReader(c.body))
		switch c.token {
		case "":
			req.Header.Set("Authorization", "Bearer "+testAdminKey)
		case "-":
		default:
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		// A case that should be refused but is served as a stream would
		// hold the test: the context ends it.
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		rec := httptest.NewRecorder()
		start := time.Now()
		ts.rest.ServeHTTP(rec, req.WithContext(ctx))
		cancel()
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s %s took %v", c.method, c.path, d)
		}
		what := c.name + ": " + c.method + " " + c.path
		if rec.Code != c.want {
			t.Errorf("%s = %d %.300s, want %d", what, rec.Code, rec.Body, c.want)
		}
		for k, v := range c.wantHdr {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s: %s: %q, want %q", what, k, got, v)
			}
		}
		if rec.Code >= 400 {
			checkHostileBody(t, what, rec.Body.Bytes())
			if after := storeDigest(t, ts.st); !maps.Equal(before, after) {
				t.Errorf("%s: refused (%d) but storage changed: %v", what, rec.Code, digestDiff(before, after))
			}
			if c.readBack != "" {
				if after := ts.do("GET", c.readBack, testAdminKey, "", "").Body.String(); after != readBefore {
					t.Errorf("%s: refused (%d) but GET %s changed: %.200s, was %.200s", what, rec.Code, c.readBack, after, readBefore)
				}
			}
		}
	}
	log := logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// hostileKeys are the credentials the sweeps use besides the admin key.
type hostileKeys struct {
	read, write, scoped, scopedSess string
}

// newHostileKeys creates a read key, a write-only key and a read and
// write key limited to "other*" (with a session of it).
func newHostileKeys(t *testing.T, ts *authTestServer) hostileKeys {
	t.Helper()
	k := hostileKeys{
		read:   ts.createKey(t, `{"name":"r","permissions":["read"]}`).Secret,
		write:  ts.createKey(t, `{"name":"w","permissions":["write"]}`).Secret,
		scoped: ts.createKey(t, `{"name":"s","permissions":["read","write"],"databases":["other*"]}`).Secret,
	}
	k.scopedSess = ts.login(t, k.scoped).Token
	return k
}

// hostileSecret is a document value no log line may hold.
const hostileSecret = "plaintext-7c1d93"

// TestHostileChanges sweeps the change feed's page, long-poll, event
// stream and ticket routes.
func TestHostileChanges(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/entity/feeddb", testAdminKey, `{"a":{"s":"`+hostileSecret+`"},"b":{"n":1}}`, 200)
	ts.mustDo(t, "PUT", "/entity/otherdb", testAdminKey, `{"a":{"n":1}}`, 200)
	ticket := func(db, token string) string {
		var a streamTicketAnswer
		if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/"+db+"/changes/ticket", token, "", 200), &a); err != nil {
			t.Fatal(err)
		}
		return a.Ticket
	}
	spent := ticket("feeddb", k.read)
	ts.mustDo(t, "GET", "/api/databases/feeddb/changes?ticket="+spent, "", "", 200)
	otherTicket := ticket("otherdb", k.scoped)
	dupTicket := ticket("feeddb", k.read)
	const feed = "/api/databases/feeddb/changes"
	long := strings.Repeat("a", 300)
	cases := []hostileCase{
		{name: "since letters", method: "GET", path: feed + "?since=abc", want: 400},
		{name: "since negative", method: "GET", path: feed + "?since=-1", want: 400},
		{name: "since plus", method: "GET", path: feed + "?since=%2B1", want: 400},
		{name: "since exponent", method: "GET", path: feed + "?since=1e3", want: 400},
		{name: "since past uint64", method: "GET", path: feed + "?since=18446744073709551616", want: 400},
		{name: "since max uint64", method: "GET", path: feed + "?since=18446744073709551615", want: 410},
		{name: "since zero", method: "GET", path: feed + "?since=0", want: 410},
		{name: "since NOW", method: "GET", path: feed + "?since=NOW", want: 400},
		{name: "since NUL", method: "GET", path: feed + "?since=%00", want: 400},
		{name: "since invalid UTF-8", method: "GET", path: feed + "?since=%FF%FE", want: 400},
		{name: "since space", method: "GET", path: feed + "?since=%201", want: 400},
		{name: "since twice", method: "GET", path: feed + "?since=1&since=2", want: 400},
		{name: "since overlong", method: "GET", path: feed + "?since=" + strings.Repeat("9", 5000), want: 400},
		{name: "limit zero", method: "GET", path: feed + "?limit=0", want: 400},
		{name: "limit negative", method: "GET", path: feed + "?limit=-1", want: 400},
		{name: "limit too big", method: "GET", path: feed + "?limit=1001", want: 400},
		{name: "limit huge", method: "GET", path: feed + "?limit=99999999999999999999", want: 400},
		{name: "limit letters", method: "GET", path: feed + "?limit=ten", want: 400},
		{name: "limit fraction", method: "GET", path: feed + "?limit=1.5", want: 400},
		{name: "limit twice", method: "GET", path: feed + "?limit=1&limit=2", want: 400},
		{name: "timeout negative", method: "GET", path: feed + "?feed=longpoll&timeout=-1", want: 400},
		{name: "timeout too long", method: "GET", path: feed + "?feed=longpoll&timeout=55001", want: 400},
		{name: "timeout overflowing", method: "GET", path: feed + "?feed=longpoll&timeout=9223372036855", want: 400},
		{name: "timeout wrapping", method: "GET", path: feed + "?feed=longpoll&timeout=18446744073710", want: 400},
		{name: "timeout letters", method: "GET", path: feed + "?feed=longpoll&timeout=soon", want: 400},
		{name: "timeout twice", method: "GET", path: feed + "?feed=longpoll&timeout=1&timeout=2", want: 400},
		{name: "feed unknown", method: "GET", path: feed + "?feed=websocket", want: 400},
		{name: "feed upper case", method: "GET", path: feed + "?feed=SSE", want: 400},
		{name: "feed twice", method: "GET", path: feed + "?feed=longpoll&feed=sse", want: 400},
		{name: "feed NUL", method: "GET", path: feed + "?feed=%00", want: 400},
		{name: "include_docs 1", method: "GET", path: feed + "?include_docs=1", want: 400},
		{name: "include_docs twice", method: "GET", path: feed + "?include_docs=true&include_docs=false", want: 400},
		{name: "prefix NUL", method: "GET", path: feed + "?prefix=a%00", want: 400},
		{name: "prefix invalid UTF-8", method: "GET", path: feed + "?prefix=%FF", want: 400},
		{name: "prefix overlong", method: "GET", path: feed + "?prefix=" + long, want: 400},
		{name: "prefix twice", method: "GET", path: feed + "?prefix=a&prefix=b", want: 400},
		{name: "sse bad Last-Event-ID", method: "GET", path: feed + "?feed=sse", hdr: map[string]string{"Last-Event-ID": "abc"}, want: 400},
		{name: "sse future Last-Event-ID", method: "GET", path: feed + "?feed=sse", hdr: map[string]string{"Last-Event-ID": "99999999999999999"}, want: 410},
		{name: "sse Accept bad since", method: "GET", path: feed + "?since=x", hdr: map[string]string{"Accept": "text/event-stream"}, want: 400},
		{name: "db encoded slash", method: "GET", path: "/api/databases/feed%2Fdb/changes", want: 400},
		{name: "db encoded dots", method: "GET", path: "/api/databases/%2E%2E/changes", want: 400},
		{name: "db NUL", method: "GET", path: "/api/databases/feed%00db/changes", want: 400},
		{name: "db overlong", method: "GET", path: "/api/databases/" + long + "/changes", want: 400},
		{name: "db invalid UTF-8", method: "GET", path: "/api/databases/%FF/changes", want: 400},
		{name: "scoped key, another db", method: "GET", path: feed, token: k.scoped, want: 403},
		{name: "scoped key, no such db", method: "GET", path: "/api/databases/nosuchdb/changes", token: k.scoped, want: 403},
		{name: "scoped session, another db", method: "GET", path: feed + "?feed=longpoll&timeout=0", token: k.scopedSess, want: 403},
		{name: "scoped key, another db's stream", method: "GET", path: feed + "?feed=sse", token: k.scoped, want: 403},
		{name: "write-only key", method: "GET", path: feed, token: k.write, want: 403},
		{name: "forged ticket", method: "GET", path: feed + "?ticket=dst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", token: "-", want: 401},
		{name: "empty ticket", method: "GET", path: feed + "?ticket=", token: "-", want: 401},
		{name: "overlong ticket", method: "GET", path: feed + "?ticket=" + strings.Repeat("x", 5000), token: "-", want: 401},
		{name: "ticket replayed", method: "GET", path: feed + "?ticket=" + spent, token: "-", want: 401},
		{name: "another db's ticket", method: "GET", path: feed + "?ticket=" + otherTicket, token: "-", want: 401},
		{name: "another db's ticket, spent", method: "GET", path: "/api/databases/otherdb/changes?ticket=" + otherTicket, token: "-", want: 401},
		{name: "ticket on an entity route", method: "GET", path: "/entity/feeddb?key=a&ticket=" + dupTicket, token: "-", want: 401},
		{name: "ticket as a bearer token", method: "GET", path: feed, token: dupTicket, want: 401},
		{name: "ticket twice", method: "GET", path: feed + "?ticket=" + dupTicket + "&ticket=" + dupTicket, token: "-", want: 400},
		{name: "ticket of a scoped key, another db", method: "POST", path: "/api/databases/feeddb/changes/ticket", token: k.scoped, want: 403},
		{name: "ticket of a write-only key", method: "POST", path: "/api/databases/feeddb/changes/ticket", token: k.write, want: 403},
		{name: "ticket, encoded slash", method: "POST", path: "/api/databases/a%2Fb/changes/ticket", want: 400},
		{name: "ticket, NUL", method: "POST", path: "/api/databases/a%00/changes/ticket", want: 400},
		{name: "ticket with a bad limit", method: "GET", path: feed + "?limit=0&ticket=" + dupTicket, token: "-", want: 400},
		{name: "ticket with a bad since", method: "GET", path: feed + "?since=x&ticket=" + dupTicket, token: "-", want: 400},
		// Every request above was refused: the ticket is still good.
		{name: "ticket after refusals", method: "GET", path: feed + "?ticket=" + dupTicket, token: "-", want: 200},
		{name: "ticket, no credential", method: "POST", path: "/api/databases/feeddb/changes/ticket", token: "-", want: 401},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped, spent, dupTicket, otherTicket)
}

// TestNumericParamsStrict: every number of a query parameter (and
// Last-Event-ID, the event stream's since) is decimal digits without a
// sign, space, leading zero, fraction, exponent or base prefix, as the
// server writes its numbers and version numbers already were: any other
// form is 400 with the parameter's own sentence, naming the value, and
// changes nothing; the plain number (and timeout=0) is served. On the old
// code strconv took "+5" and "05" for limit, timeout and batch ("-0" too
// for timeout) and "05" for since, and answered them as 5 and 0.
func TestNumericParamsStrict(t *testing.T) {
	ts, _ := hostileServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/numdb", testAdminKey, `{"a":{"n":1},"b":{"n":2}}`, 200)
	var page changePage
	if err := json.Unmarshal(ts.mustDo(t, "GET", "/api/databases/numdb/changes", testAdminKey, "", 200), &page); err != nil {
		t.Fatal(err)
	}
	const line = `{"key":"c","doc":{}}` + "\n"
	for _, c := range []struct {
		name, method, path, body, hdr string
		good                          string // a value served, 200
	}{
		{"limit", "GET", "/api/databases/numdb/keys?limit=", "", "", "5"},
		{"limit", "GET", "/api/databases/numdb/changes?limit=", "", "", "5"},
		{"timeout", "GET", "/api/databases/numdb/changes?feed=longpoll&since=now&timeout=", "", "", "0"},
		{"batch", "POST", "/api/databases/numdb/import?batch=", line, "", "5"},
		{"since", "GET", "/api/databases/numdb/changes?since=", "", "", page.LastSeq},
		{"since", "GET", "/api/databases/numdb/changes?feed=sse", "", "Last-Event-ID", ""},
	} {
		do := func(v string) *httptest.ResponseRecorder {
			path := c.path + url.QueryEscape(v)
			if c.hdr != "" {
				path = c.path
			}
			req := httptest.NewRequest(c.method, "http://x"+path, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+testAdminKey)
			if c.hdr != "" {
				req.Header.Set(c.hdr, v)
			}
			rec := httptest.NewRecorder()
			ts.rest.ServeHTTP(rec, req)
			return rec
		}
		for _, v := range []string{"+5", "-5", "-0", "+0", "05", "0005", "00", " 5", "5 ", "5.0", "5e0", "0x5", "0b1", "5_0", "٥"} {
			before := storeDigest(t, ts.st)
			rec := do(v)
			var e errorBody
			json.Unmarshal(rec.Body.Bytes(), &e)
			if want := c.name + " " + fmt.Sprintf("%q", v) + ":"; rec.Code != 400 || !strings.HasPrefix(e.Error, want) {
				t.Errorf("%s %s with %q = %d %s, want 400 starting %s", c.method, c.path, v, rec.Code, rec.Body, want)
			}
			if after := storeDigest(t, ts.st); !maps.Equal(before, after) {
				t.Errorf("%s %s with %q: refused but storage changed: %v", c.method, c.path, v, digestDiff(before, after))
			}
		}
		if c.good != "" {
			if rec := do(c.good); rec.Code != 200 {
				t.Errorf("%s %s with %q = %d %s, want 200", c.method, c.path, c.good, rec.Code, rec.Body)
			}
		}
	}
}

// TestHostileVersions sweeps version reads, listings, undelete, destroy
// and the max_versions setting.
func TestHostileVersions(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/api/databases/verdb", testAdminKey, `{"max_versions":3}`, 200)
	ts.mustDo(t, "PUT", "/entity/verdb", testAdminKey, `{"k":{"s":"`+hostileSecret+`"},"gone":{"n":1}}`, 200)
	etag := ts.do("PUT", "/entity/verdb", testAdminKey, `{"k":{"n":2}}`, "").Header().Get("ETag")
	ts.mustDo(t, "DELETE", "/entity/verdb?key=gone", testAdminKey, "", 200)
	const e = "/entity/verdb?key=k"
	long := strings.Repeat("v", 300)
	cases := []hostileCase{
		{name: "version zero", method: "GET", path: e + "&version=0", want: 400},
		{name: "version negative", method: "GET", path: e + "&version=-1", want: 400},
		{name: "version plus", method: "GET", path: e + "&version=%2B1", want: 400},
		{name: "version leading zero", method: "GET", path: e + "&version=01", want: 400},
		{name: "version hex", method: "GET", path: e + "&version=0x1", want: 400},
		{name: "version fraction", method: "GET", path: e + "&version=1.0", want: 400},
		{name: "version exponent", method: "GET", path: e + "&version=1e0", want: 400},
		{name: "version past int64", method: "GET", path: e + "&version=9223372036854775808", want: 400},
		{name: "version max int64", method: "GET", path: e + "&version=9223372036854775807", want: 404},
		{name: "version not kept", method: "GET", path: e + "&version=9", want: 404},
		{name: "version empty", method: "GET", path: e + "&version=", want: 400},
		{name: "version twice", method: "GET", path: e + "&version=1&version=1", want: 400},
		{name: "version NUL", method: "GET", path: e + "&version=1%00", want: 400},
		{name: "version invalid UTF-8", method: "GET", path: e + "&version=%FF", want: 400},
		{name: "version bad escape", method: "GET", path: e + "&version=%zz", want: 400},
		{name: "version with a semicolon", method: "GET", path: e + "&version=1;x", want: 400},
		{name: "version overlong", method: "GET", path: e + "&version=" + strings.Repeat("1", 5000), want: 400},
		{name: "version, If-None-Match star", method: "GET", path: e + "&version=1", hdr: map[string]string{"If-None-Match": "*"}, want: 304},
		{name: "version, If-None-Match weak", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": "W/" + etag}, want: 304},
		{name: "version, If-None-Match list", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": `"x", ` + etag}, want: 304},
		{name: "version, If-None-Match unquoted", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": strings.Trim(etag, `"`)}, want: 400},
		{name: "version, If-None-Match garbage", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": `"a", , ,"b`}, want: 400},
		{name: "version, If-None-Match overlong", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": `"` + strings.Repeat("a", 9000) + `"`}, want: 200},
		{name: "version of a deleted entity", method: "GET", path: "/entity/verdb?key=gone&version=1", want: 200},
		{name: "version, If-None-Match weak star", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": "W/*"}, want: 400},
		{name: "version, If-None-Match a thousand", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-None-Match": strings.Repeat(`"x", `, 1000) + etag}, want: 304},
		{name: "version, If-Match ignored", method: "GET", path: e + "&version=2", hdr: map[string]string{"If-Match": `"other"`}, want: 200},
		{name: "version, scoped key", method: "GET", path: e + "&version=1", token: k.scoped, want: 403},
		{name: "version, scoped key, no such db", method: "GET", path: "/entity/nosuchdb?key=k&version=1", token: k.scoped, want: 403},
		{name: "version, write-only key", method: "GET", path: e + "&version=1", token: k.write, want: 403},
		{name: "version, no key", method: "GET", path: "/entity/verdb?version=1", want: 400},
		{name: "list, no key", method: "GET", path: "/entity/verdb/versions", want: 400},
		{name: "list, empty key", method: "GET", path: "/entity/verdb/versions?key=", want: 400},
		{name: "list, key twice", method: "GET", path: "/entity/verdb/versions?key=k&key=k", want: 400},
		{name: "list, key NUL", method: "GET", path: "/entity/verdb/versions?key=k%00", want: 400},
		{name: "list, key invalid UTF-8", method: "GET", path: "/entity/verdb/versions?key=%FF", want: 400},
		{name: "list, key overlong", method: "GET", path: "/entity/verdb/versions?key=" + long, want: 400},
		{name: "list, key encoded slash", method: "GET", path: "/entity/verdb/versions?key=..%2F..%2Fx", want: 400},
		{name: "list, no such key", method: "GET", path: "/entity/verdb/versions?key=nope", want: 404},
		{name: "list, db encoded slash", method: "GET", path: "/entity/ver%2Fdb/versions?key=k", want: 400},
		{name: "list, db dots", method: "GET", path: "/entity/%2E%2E/versions?key=k", want: 400},
		{name: "list, scoped key", method: "GET", path: "/entity/verdb/versions?key=k", token: k.scoped, want: 403},
		{name: "list, scoped session, no such db", method: "GET", path: "/entity/nosuchdb/versions?key=k", token: k.scopedSess, want: 403},
		{name: "undelete, live entity", method: "POST", path: "/entity/verdb/undelete?key=k", want: 409},
		{name: "undelete, no such key", method: "POST", path: "/entity/verdb/undelete?key=nope", want: 404},
		{name: "undelete, no key", method: "POST", path: "/entity/verdb/undelete", want: 400},
		{name: "undelete, key twice", method: "POST", path: "/entity/verdb/undelete?key=gone&key=k", want: 400},
		{name: "undelete, read key", method: "POST", path: "/entity/verdb/undelete?key=gone", token: k.read, want: 403},
		{name: "undelete, scoped key", method: "POST", path: "/entity/verdb/undelete?key=gone", token: k.scoped, want: 403},
		{name: "destroy, no versions", method: "POST", path: "/entity/verdb/destroy?key=gone", want: 400},
		{name: "destroy, empty versions", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=", want: 400},
		{name: "destroy, empty item", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1,,2", want: 400},
		{name: "destroy, trailing comma", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1,", want: 400},
		{name: "destroy, letters", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=a", want: 400},
		{name: "destroy, negative", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=-1", want: 400},
		{name: "destroy, space", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1,%202", want: 400},
		{name: "destroy, past int64", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=99999999999999999999", want: 400},
		{name: "destroy, twice", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1&versions=1", want: 400},
		{name: "destroy, many", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=" + strings.Repeat("1,", 20000) + "1", want: 400},
		{name: "destroy, one not kept", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1,77", want: 404},
		{name: "destroy, current", method: "POST", path: "/entity/verdb/destroy?key=k&versions=2", want: 409},
		{name: "destroy, no such key", method: "POST", path: "/entity/verdb/destroy?key=nope&versions=1", want: 404},
		{name: "destroy, write key", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1", token: k.write, want: 403},
		{name: "destroy, scoped key", method: "POST", path: "/entity/verdb/destroy?key=gone&versions=1", token: k.scoped, want: 403},
		{name: "max_versions negative", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":-1}`, want: 400},
		{name: "max_versions too many", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":101}`, want: 400},
		{name: "max_versions huge", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":1e400}`, want: 400},
		{name: "max_versions string", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":"3"}`, want: 400},
		{name: "max_versions fraction", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":2.5}`, want: 400},
		{name: "max_versions bool", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":true}`, want: 400},
		{name: "max_versions twice", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":3,"max_versions":500}`, want: 400},
		{name: "max_versions, scoped key", method: "PUT", path: "/api/databases/verdb", body: `{"max_versions":1}`, token: k.scoped, want: 403},
		{name: "settings, invalid UTF-8", method: "PUT", path: "/api/databases/verdb", body: "{\"max_versions\":1,\"x\xff\":1}", want: 400},
		{name: "settings, NUL", method: "PUT", path: "/api/databases/verdb", body: "{\"max_versions\":1}\x00", want: 400},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped)
}

// digestDiff names the files added, removed or changed from a to b.
func digestDiff(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return d
}

// TestHostileFind sweeps find and explain bodies: types, numbers,
// budgets, patterns, bookmarks and scopes.
func TestHostileFind(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/entity/finddb", testAdminKey, `{"a":{"s":"`+hostileSecret+`","n":1},"b":{"n":2},"c":{"n":3}}`, 200)
	ts.mustDo(t, "PUT", "/entity/otherdb", testAdminKey, `{"a":{"n":1},"b":{"n":2}}`, 200)
	var page struct{ Bookmark string }
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/finddb/find", testAdminKey, `{"selector":{"n":{"$gt":0}},"limit":1}`, 200), &page); err != nil {
		t.Fatal(err)
	}
	var otherPage struct{ Bookmark string }
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/otherdb/find", testAdminKey, `{"selector":{"n":{"$gt":0}},"limit":1}`, 200), &otherPage); err != nil {
		t.Fatal(err)
	}
	const f = "/api/databases/finddb/find"
	nest := func(open, leaf, close string, n int) string {
		return strings.Repeat(open, n) + leaf + strings.Repeat(close, n)
	}
	many := func(item string, n int) string {
		return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
	}
	find := func(name, body string, want int) hostileCase {
		return hostileCase{name: name, method: "POST", path: f, body: body, want: want}
	}
	cases := []hostileCase{
		find("empty body", "", 400),
		find("null", "null", 400),
		find("array", "[]", 400),
		find("not JSON", "selector=a", 400),
		find("no selector", `{}`, 400),
		find("selector string", `{"selector":"n"}`, 400),
		find("selector array", `{"selector":[{"n":1}]}`, 400),
		find("selector null", `{"selector":null}`, 400),
		find("selector number", `{"selector":1}`, 400),
		// The last of a member given twice counts, as in every body.
		find("selector twice", `{"selector":{"n":1},"selector":{}}`, 200),
		find("trailing garbage", `{"selector":{}} x`, 400),
		find("two objects", `{"selector":{}}{"selector":{}}`, 400),
		find("BOM", "\ufeff{\"selector\":{}}", 400),
		find("invalid UTF-8 in a value", "{\"selector\":{\"s\":\"\xff\"}}", 400),
		find("invalid UTF-8 in a name", "{\"selector\":{\"\xfe\":1}}", 400),
		find("lone surrogate", `{"selector":{"s":"\ud800"}}`, 400),
		find("NUL in a value", `{"selector":{"s":"a\u0000b"}}`, 200),
		find("raw NUL", "{\"selector\":{\"s\":\"a\x00b\"}}", 400),
		find("unknown member", `{"selector":{},"where":"1"}`, 400),
		find("partition", `{"selector":{},"partition":"p"}`, 400),
		find("deep $and", `{"selector":`+nest(`{"$and":[`, `{"n":1}`, `]}`, 40)+`}`, 413),
		find("deep $not", `{"selector":`+nest(`{"$not":`, `{"n":1}`, `}`, 40)+`}`, 413),
		find("deep objects", `{"selector":`+nest(`{"a":`, `1`, `}`, 40)+`}`, 413),
		find("very deep arrays", `{"selector":{"n":`+nest(`[`, `1`, `]`, 100000)+`}}`, 413),
		find("very deep objects", `{"selector":`+nest(`{"a":`, `1`, `}`, 100000)+`}`, 413),
		find("huge $in", `{"selector":{"n":{"$in":[`+many("1", 1001)+`]}}}`, 413),
		find("huge $all", `{"selector":{"n":{"$all":[`+many(`"x"`, 1001)+`]}}}`, 413),
		find("huge $or", `{"selector":{"$or":[`+many(`{"n":1}`, 1001)+`]}}`, 413),
		find("many operators", `{"selector":{"$and":[`+many(`{"n":{"$gt":1,"$lt":9}}`, 300)+`]}}`, 413),
		find("huge array value", `{"selector":{"n":[`+many("1", 200000)+`]}}`, 200),
		find("regex bomb", `{"selector":{"s":{"$regex":"(a*)*b"}}}`, 200),
		find("regex counted repetition", `{"selector":{"s":{"$regex":"a{0,1000}b"}}}`, 413),
		find("regex nested repetition", `{"selector":{"s":{"$regex":"((a{100}){100}){100}"}}}`, 400),
		find("regex backreference", `{"selector":{"s":{"$regex":"(a)\\1"}}}`, 400),
		find("regex lookahead", `{"selector":{"s":{"$regex":"a(?=b)"}}}`, 400),
		find("regex unclosed", `{"selector":{"s":{"$regex":"("}}}`, 400),
		find("regex too long", `{"selector":{"s":{"$regex":"`+strings.Repeat("a", 1025)+`"}}}`, 413),
		find("regex many patterns", `{"selector":{"$or":[`+many(`{"s":{"$regex":"[a-z]{9}"}}`, 40)+`]}}`, 413),
		find("regex number", `{"selector":{"s":{"$regex":1}}}`, 400),
		find("regex invalid UTF-8", "{\"selector\":{\"s\":{\"$regex\":\"\xff\"}}}", 400),
		find("mod by zero", `{"selector":{"n":{"$mod":[0,1]}}}`, 400),
		find("mod one item", `{"selector":{"n":{"$mod":[2]}}}`, 400),
		find("mod fraction", `{"selector":{"n":{"$mod":[2.5,1]}}}`, 400),
		find("mod strings", `{"selector":{"n":{"$mod":["2","1"]}}}`, 400),
		find("mod huge", `{"selector":{"n":{"$mod":[1e400,1]}}}`, 400),
		find("mod many digits", `{"selector":{"n":{"$mod":[`+strings.Repeat("9", 101)+`,1]}}}`, 413),
		find("mod negative divisor", `{"selector":{"n":{"$mod":[-3,1]}}}`, 200),
		find("mod min int64", `{"selector":{"n":{"$mod":[-9223372036854775808,-1]}}}`, 200),
		find("size negative", `{"selector":{"n":{"$size":-1}}}`, 400),
		find("size fraction", `{"selector":{"n":{"$size":1.5}}}`, 400),
		find("size string", `{"selector":{"n":{"$size":"1"}}}`, 400),
		find("size huge", `{"selector":{"n":{"$size":1e300}}}`, 400),
		find("type unknown", `{"selector":{"n":{"$type":"int"}}}`, 400),
		find("exists string", `{"selector":{"n":{"$exists":"yes"}}}`, 400),
		find("in not an array", `{"selector":{"n":{"$in":1}}}`, 400),
		find("elemMatch string", `{"selector":{"n":{"$elemMatch":"x"}}}`, 400),
		find("and not an array", `{"selector":{"$and":{"n":1}}}`, 400),
		find("or empty", `{"selector":{"$or":[]}}`, 200),
		find("unknown operator", `{"selector":{"n":{"$near":1}}}`, 400),
		find("where", `{"selector":{"$where":"1"}}`, 400),
		find("long path", `{"selector":{"`+strings.Repeat("a", 600)+`":1}}`, 413),
		find("path of many names", `{"selector":{"`+many("a", 40)+`":1}}`, 200),
		find("path of many dotted names", `{"selector":{"`+strings.Repeat("a.", 40)+`a":1}}`, 413),
		find("empty path", `{"selector":{"":1}}`, 400),
		find("path trailing dot", `{"selector":{"a.":1}}`, 400),
		// A backslash before another character is dropped, as CouchDB's
		// parse_field does; one at the end escapes nothing (400).
		find("path escape of a letter", `{"selector":{"a\\b":1}}`, 200),
		find("path trailing escape", `{"selector":{"a\\":1}}`, 400),
		find("path trailing escape in fields", `{"selector":{},"fields":["a\\"]}`, 400),
		find("path trailing escape in sort", `{"selector":{},"sort":["a\\"]}`, 400),
		find("limit negative", `{"selector":{},"limit":-1}`, 400),
		find("limit too big", `{"selector":{},"limit":10001}`, 400),
		find("limit huge", `{"selector":{},"limit":1e30}`, 400),
		find("limit string", `{"selector":{},"limit":"5"}`, 400),
		find("limit fraction", `{"selector":{},"limit":1.5}`, 400),
		find("limit past int64", `{"selector":{},"limit":9223372036854775808}`, 400),
		find("skip negative", `{"selector":{},"skip":-1}`, 400),
		find("skip too big", `{"selector":{},"skip":10001}`, 400),
		find("skip min int64", `{"selector":{},"skip":-9223372036854775808}`, 400),
		find("fields string", `{"selector":{},"fields":"a"}`, 400),
		find("fields numbers", `{"selector":{},"fields":[1]}`, 400),
		find("fields too many", `{"selector":{},"fields":[`+many(`"a"`, 101)+`]}`, 413),
		find("fields empty name", `{"selector":{},"fields":[""]}`, 400),
		find("sort string", `{"selector":{},"sort":"n"}`, 400),
		find("sort too many", `{"selector":{"n":{"$gt":0}},"sort":[`+many(`"n"`, 9)+`]}`, 413),
		find("sort mixed directions", `{"selector":{"n":{"$gt":0}},"sort":[{"n":"asc"},{"m":"desc"}]}`, 400),
		find("sort unknown direction", `{"selector":{"n":{"$gt":0}},"sort":[{"n":"up"}]}`, 400),
		find("sort two members", `{"selector":{"n":{"$gt":0}},"sort":[{"n":"asc","m":"asc"}]}`, 400),
		find("sort number", `{"selector":{},"sort":[1]}`, 400),
		find("bookmark garbage", `{"selector":{"n":{"$gt":0}},"bookmark":"!!!"}`, 400),
		find("bookmark base64 garbage", `{"selector":{"n":{"$gt":0}},"bookmark":"eyJxIjoiYSJ9"}`, 400),
		find("bookmark overlong", `{"selector":{"n":{"$gt":0}},"bookmark":"`+strings.Repeat("A", 200000)+`"}`, 400),
		find("bookmark number", `{"selector":{"n":{"$gt":0}},"bookmark":1}`, 400),
		find("bookmark of another selector", `{"selector":{"n":{"$gt":1}},"bookmark":"`+page.Bookmark+`"}`, 400),
		find("bookmark of another database", `{"selector":{"n":{"$gt":0}},"limit":1,"bookmark":"`+otherPage.Bookmark+`"}`, 400),
		find("use_index number", `{"selector":{},"use_index":1}`, 400),
		find("use_index three", `{"selector":{},"use_index":["a","b","c"]}`, 400),
		find("use_index unknown", `{"selector":{},"use_index":"nope"}`, 200),
		find("execution_stats string", `{"selector":{},"execution_stats":"yes"}`, 400),
		find("r two", `{"selector":{},"r":2}`, 400),
		find("r huge", `{"selector":{},"r":1e40}`, 400),
		find("allow_fallback false", `{"selector":{"n":1},"allow_fallback":false}`, 400),
		{name: "scoped key", method: "POST", path: f, body: `{"selector":{}}`, token: k.scoped, want: 403},
		{name: "scoped session", method: "POST", path: f, body: `{"selector":{}}`, token: k.scopedSess, want: 403},
		{name: "scoped key, no such db", method: "POST", path: "/api/databases/nosuchdb/find", body: `{"selector":{}}`, token: k.scoped, want: 403},
		{name: "write-only key", method: "POST", path: f, body: `{"selector":{}}`, token: k.write, want: 403},
		{name: "explain, scoped key", method: "POST", path: "/api/databases/finddb/explain", body: `{"selector":{}}`, token: k.scoped, want: 403},
		{name: "db encoded slash", method: "POST", path: "/api/databases/find%2Fdb/find", body: `{"selector":{}}`, want: 400},
		{name: "db dots", method: "POST", path: "/api/databases/%2E%2E/find", body: `{"selector":{}}`, want: 400},
		{name: "db NUL", method: "POST", path: "/api/databases/a%00/find", body: `{"selector":{}}`, want: 400},
		{name: "explain deep", method: "POST", path: "/api/databases/finddb/explain", body: `{"selector":` + nest(`{"$or":[`, `{"n":1}`, `]}`, 40) + `}`, want: 413},
		{name: "explain regex", method: "POST", path: "/api/databases/finddb/explain", body: `{"selector":{"s":{"$regex":"("}}}`, want: 400},
		{name: "text body", method: "POST", path: f, body: `{"selector":{}}`, hdr: map[string]string{"Content-Type": "text/plain"}, want: 200},
		{name: "body over the limit", method: "POST", path: f, body: `{"selector":{"s":"` + strings.Repeat("x", 2<<20) + `"}}`, want: 413},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped)
}

// TestHostileTransfer sweeps export and import: parameters, NDJSON
// lines and scopes. Each refused import is one batch, so that nothing of
// it is written.
func TestHostileTransfer(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/entity/xdb", testAdminKey, `{"a":{"s":"`+hostileSecret+`"},"b":{"n":2}}`, 200)
	const im = "/api/databases/xdb/import"
	imp := func(name, body string, want int) hostileCase {
		return hostileCase{name: name, method: "POST", path: im, body: body, want: want}
	}
	line := func(key, doc string) string { return `{"key":"` + key + `","doc":` + doc + `}` }
	long := strings.Repeat("k", 300)
	cases := []hostileCase{
		{name: "export, prefix NUL", method: "GET", path: "/api/databases/xdb/export?prefix=a%00", want: 400},
		{name: "export, prefix invalid UTF-8", method: "GET", path: "/api/databases/xdb/export?prefix=%FF", want: 400},
		{name: "export, prefix overlong", method: "GET", path: "/api/databases/xdb/export?prefix=" + long, want: 400},
		{name: "export, prefix twice", method: "GET", path: "/api/databases/xdb/export?prefix=a&prefix=b", want: 400},
		{name: "export, prefix encoded slash", method: "GET", path: "/api/databases/xdb/export?prefix=..%2F", want: 400},
		{name: "export, no such db", method: "GET", path: "/api/databases/nosuchdb/export", want: 404},
		{name: "export, db encoded slash", method: "GET", path: "/api/databases/x%2Fdb/export", want: 400},
		{name: "export, db dots", method: "GET", path: "/api/databases/%2E%2E/export", want: 400},
		{name: "export, scoped key", method: "GET", path: "/api/databases/xdb/export", token: k.scoped, want: 403},
		{name: "export, scoped key, no such db", method: "GET", path: "/api/databases/nosuchdb/export", token: k.scoped, want: 403},
		{name: "export, write-only key", method: "GET", path: "/api/databases/xdb/export", token: k.write, want: 403},
		{name: "import, batch zero", method: "POST", path: im + "?batch=0", body: line("n", "{}"), want: 400},
		{name: "import, batch negative", method: "POST", path: im + "?batch=-1", body: line("n", "{}"), want: 400},
		{name: "import, batch huge", method: "POST", path: im + "?batch=99999999999999999999", body: line("n", "{}"), want: 400},
		{name: "import, batch letters", method: "POST", path: im + "?batch=ten", body: line("n", "{}"), want: 400},
		{name: "import, batch empty", method: "POST", path: im + "?batch=", body: line("n", "{}"), want: 400},
		{name: "import, batch twice", method: "POST", path: im + "?batch=1&batch=2", body: line("n", "{}"), want: 400},
		imp("null line", "null\n", 400),
		imp("array line", "[]\n", 400),
		imp("string line", `"a"`+"\n", 400),
		imp("no doc", `{"key":"n"}`+"\n", 400),
		imp("no key", `{"doc":{}}`+"\n", 400),
		imp("number key", `{"key":1,"doc":{}}`+"\n", 400),
		// A line's document is any JSON value, as a PUT's; the last of a
		// member given twice counts, as in a PUT's body.
		imp("null doc", `{"key":"n","doc":null}`+"\n", 200),
		imp("key twice", `{"key":"n","key":"a","doc":{"x":1}}`+"\n", 200),
		imp("doc twice", `{"key":"n","doc":{},"doc":{"x":1}}`+"\n", 200),
		imp("unknown member", `{"key":"n","doc":{},"extra":1}`+"\n", 400),
		imp("key NUL", line(`n\u0000`, "{}"), 400),
		imp("key raw NUL", line("n\x00", "{}"), 400),
		imp("key slash", line("../n", "{}"), 400),
		imp("key overlong", line(long, "{}"), 400),
		imp("key empty", line("", "{}"), 400),
		imp("key invalid UTF-8", line("n\xff", "{}"), 400),
		imp("key lone surrogate", line(`n\udc00`, "{}"), 400),
		imp("doc invalid UTF-8", line("n", "{\"s\":\"\xff\"}"), 400),
		imp("doc lone surrogate", line("n", `{"s":"\ud800"}`), 400),
		imp("doc deep", line("n", strings.Repeat(`{"a":`, 5000)+"1"+strings.Repeat("}", 5000)), 400),
		imp("doc huge number", line("n", `{"x":1e400}`), 200),
		imp("BOM", "\ufeff"+line("n", "{}")+"\n", 400),
		imp("trailing garbage", line("n", "{}")+" x\n", 400),
		imp("two objects on a line", line("n", "{}")+line("m", "{}")+"\n", 400),
		imp("same key twice in a batch", line("n", "{}")+"\n"+line("n", `{"x":1}`)+"\n", 400),
		imp("a good line and a bad one", line("n", "{}")+"\n"+line("../m", "{}")+"\n", 400),
		imp("giant line", line("n", `{"s":"`+strings.Repeat("x", 3<<20)+`"}`)+"\n", 413),
		imp("giant line without newline", line("n", `{"s":"`+strings.Repeat("x", 3<<20)+`"}`), 413),
		imp("doc over -max-document-size", line("n", `{"s":"`+strings.Repeat("x", 1<<20)+`"}`)+"\n", 400),
		imp("a line cut short", `{"key":"n","doc":{"s":"abc`, 400),
		imp("blank lines only", strings.Repeat("\n", 10000), 200),
		imp("no trailing newline", line("n1", "{}"), 200),
		imp("CRLF", line("n2", "{}")+"\r\n"+line("n3", "{}")+"\r\n", 200),
		imp("lone CR", line("n4", "{}")+"\r"+line("n5", "{}")+"\r", 400),
		imp("an export's line", `{"key":"n6","etag":"\"x\"","modified":"2026-01-01T00:00:00Z","doc":{}}`+"\n", 200),
		imp("empty body", "", 200),
		{name: "import, read key", method: "POST", path: im, body: line("n", "{}"), token: k.read, want: 403},
		{name: "import, scoped key", method: "POST", path: im, body: line("n", "{}"), token: k.scoped, want: 403},
		{name: "import, scoped session, no such db", method: "POST", path: "/api/databases/nosuchdb/import", body: line("n", "{}"), token: k.scopedSess, want: 403},
		{name: "import, db encoded slash", method: "POST", path: "/api/databases/x%2Fdb/import", body: line("n", "{}"), want: 400},
		{name: "import, db NUL", method: "POST", path: "/api/databases/x%00/import", body: line("n", "{}"), want: 400},
		{name: "import, db reserved", method: "POST", path: "/api/databases/_meta/import", body: line("n", "{}"), want: 400},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped)
}

// TestHostileOIDC sweeps bearer tokens of an OpenID provider against the
// new routes (a token limited to some databases reaching others through
// the feed, its tickets, find, export, import and versions) and the
// sign-in's bodies; no token or code reaches the log.
func TestHostileOIDC(t *testing.T) {
	fi := newFlowIssuer(t)
	v := newOIDCVerifier(oidcConfig{issuer: fi.srv.URL, audience: testAudience, permsClaim: "deltadb.permissions",
		dbsClaim: "deltadb.databases", now: time.Now})
	if err := v.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts, logs := hostileServer(t, authConfig{oidc: v, maxFailures: -1})
	ts.rest.oidcLogin = newOIDCLogin(oidcFlags{issuer: fi.srv.URL, ui: oidcUIFlags{clientID: "ui", scope: "openid"}}, v)
	fi.answer = func(w http.ResponseWriter, form url.Values) {
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]any{"error": "invalid_grant", "error_description": "code " + form.Get("code") + " unknown"})
	}
	now := time.Now()
	claims := func(change func(c map[string]any)) map[string]any {
		c := map[string]any{"iss": fi.srv.URL, "aud": testAudience, "sub": "svc", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
			"deltadb": map[string]any{"permissions": []string{"read", "write", "admin"}, "databases": []string{"other*"}}}
		change(c)
		return c
	}
	sign := func(change func(c map[string]any)) string { return fi.signer.token(t, claims(change)) }
	scoped := sign(func(map[string]any) {})
	ts.mustDo(t, "PUT", "/api/databases/verdb", testAdminKey, `{"max_versions":3}`, 200)
	ts.mustDo(t, "PUT", "/entity/verdb", testAdminKey, `{"k":{"s":"`+hostileSecret+`"}}`, 200)
	ts.mustDo(t, "PUT", "/entity/verdb", testAdminKey, `{"k":{"n":2}}`, 200)
	ts.mustDo(t, "PUT", "/entity/otherdb", testAdminKey, `{"k":{"n":1}}`, 200)
	var tk streamTicketAnswer
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/otherdb/changes/ticket", scoped, "", 200), &tk); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ name, token string }{
		{"exp huge", sign(func(c map[string]any) { c["exp"] = 1e300 })},
		{"exp past int64", sign(func(c map[string]any) { c["exp"] = json.Number("9223372036854775808") })},
		{"exp negative", sign(func(c map[string]any) { c["exp"] = -1 })},
		{"exp string", sign(func(c map[string]any) { c["exp"] = "9999999999" })},
		{"iat huge negative", sign(func(c map[string]any) { c["iat"] = -1e300 })},
		{"nbf NaN-like", sign(func(c map[string]any) { c["nbf"] = "NaN" })},
		{"databases a string with NUL", sign(func(c map[string]any) { c["deltadb"].(map[string]any)["databases"] = "ver\x00db" })},
		{"databases a path", sign(func(c map[string]any) { c["deltadb"].(map[string]any)["databases"] = []string{"../verdb"} })},
		{"databases numbers", sign(func(c map[string]any) { c["deltadb"].(map[string]any)["databases"] = []any{1} })},
		{"sub an object", sign(func(c map[string]any) { c["sub"] = map[string]any{"a": 1} })},
		{"aud a number", sign(func(c map[string]any) { c["aud"] = 1 })},
		{"garbage", "a.b.c"},
		{"oversized", strings.Repeat("a", 17<<10) + ".b.c"},
		{"alg none", fi.signer.tokenWith(t, map[string]any{"alg": "none", "kid": fi.signer.kid}, claims(func(map[string]any) {}))},
		{"kid a number", fi.signer.tokenWith(t, map[string]any{"alg": "RS256", "kid": 7}, claims(func(map[string]any) {}))},
	}
	var cases []hostileCase
	for _, b := range bad {
		cases = append(cases, hostileCase{name: "token " + b.name, method: "GET", path: "/api/databases/otherdb/changes", token: b.token, want: 401})
	}
	cases = append(cases, []hostileCase{
		{name: "scoped token, feed", method: "GET", path: "/api/databases/verdb/changes", token: scoped, want: 403},
		{name: "scoped token, no such db's feed", method: "GET", path: "/api/databases/nosuchdb/changes", token: scoped, want: 403},
		{name: "scoped token, ticket", method: "POST", path: "/api/databases/verdb/changes/ticket", token: scoped, want: 403},
		{name: "scoped token's ticket, another db", method: "GET", path: "/api/databases/verdb/changes?ticket=" + tk.Ticket, token: "-", want: 401},
		{name: "scoped token, find", method: "POST", path: "/api/databases/verdb/find", body: `{"selector":{}}`, token: scoped, want: 403},
		{name: "scoped token, export", method: "GET", path: "/api/databases/verdb/export", token: scoped, want: 403},
		{name: "scoped token, import", method: "POST", path: "/api/databases/verdb/import", body: `{"key":"k","doc":{}}`, token: scoped, want: 403},
		{name: "scoped token, version", method: "GET", path: "/entity/verdb?key=k&version=1", token: scoped, want: 403},
		{name: "scoped token, versions", method: "GET", path: "/entity/verdb/versions?key=k", token: scoped, want: 403},
		{name: "scoped token, destroy", method: "POST", path: "/entity/verdb/destroy?key=k&versions=1", token: scoped, want: 403},
		{name: "scoped token, rekey", method: "POST", path: "/admin/databases/verdb/rekey", token: scoped, want: 403},
		{name: "scoped token, check", method: "POST", path: "/api/databases/verdb/check", token: scoped, want: 403},
		{name: "scoped token, audit hash", method: "POST", path: "/admin/audit/hash", body: `{"input":"verdb"}`, token: scoped, want: 403},
		{name: "scoped token, keys", method: "GET", path: "/api/keys", token: scoped, want: 403},
		{name: "scoped token, encoded slash", method: "GET", path: "/api/databases/other%2F..%2Fverdb/changes", token: scoped, want: 400},
	}...)
	login := func(name, body string, want int) hostileCase {
		return hostileCase{name: "sign-in " + name, method: "POST", path: "/api/login/oidc", body: body, token: "-", want: want}
	}
	const verifier = `"code_verifier":"` + testVerifier + `"`
	const redirect = `"redirect_uri":"http://127.0.0.1:8080/"`
	cases = append(cases, []hostileCase{
		login("empty body", "", 400),
		login("not JSON", "code=a", 400),
		login("array", "[]", 400),
		login("no code", `{`+verifier+`,`+redirect+`}`, 400),
		login("code a number", `{"code":1,`+verifier+`,`+redirect+`}`, 400),
		login("code too long", `{"code":"`+strings.Repeat("c", 4097)+`",`+verifier+`,`+redirect+`}`, 400),
		login("code NUL", `{"code":"c\u0000",`+verifier+`,`+redirect+`}`, 400),
		login("code newline", `{"code":"c\nd",`+verifier+`,`+redirect+`}`, 400),
		login("code invalid UTF-8", "{\"code\":\"c\xff\","+verifier+`,`+redirect+`}`, 400),
		login("verifier short", `{"code":"c","code_verifier":"abc",`+redirect+`}`, 400),
		login("verifier bad characters", `{"code":"c","code_verifier":"`+strings.Repeat("+", 43)+`",`+redirect+`}`, 400),
		login("redirect javascript", `{"code":"c",`+verifier+`,"redirect_uri":"javascript:alert(1)"}`, 400),
		login("redirect empty", `{"code":"c",`+verifier+`,"redirect_uri":""}`, 400),
		login("redirect NUL", `{"code":"c",`+verifier+`,"redirect_uri":"http://a/\u0000"}`, 400),
		login("unknown member", `{"code":"c",`+verifier+`,`+redirect+`,"client_secret":"x"}`, 400),
		login("code refused", `{"code":"secret-code-31f",`+verifier+`,`+redirect+`}`, 401),
	}...)
	secrets := []string{hostileSecret, scoped, tk.Ticket, "secret-code-31f", testVerifier}
	for _, b := range bad {
		if len(b.token) < 1000 {
			secrets = append(secrets, b.token)
		}
	}
	runHostile(t, ts, logs, cases, secrets...)
}

// TestHostileJobs sweeps the key jobs' and entity checks' routes and the
// audit log's name hash.
func TestHostileJobs(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	scopedAdmin := ts.createKey(t, `{"name":"sa","permissions":["read","write","admin"],"databases":["other*"]}`).Secret
	ts.mustDo(t, "PUT", "/schema/h.v1", testAdminKey, `{"type":"object"}`, 200)
	ts.mustDo(t, "PUT", "/entity/jobdb", testAdminKey, `{"k":{"s":"`+hostileSecret+`"}}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/jobdb", testAdminKey, `{"schema":"h.v1"}`, 200)
	ts.mustDo(t, "PUT", "/entity/plaindb", testAdminKey, `{"k":{"n":1}}`, 200)
	hash := func(name, body string, want int) hostileCase {
		return hostileCase{name: "hash " + name, method: "POST", path: "/admin/audit/hash", body: body, want: want}
	}
	cases := []hostileCase{
		{name: "rekey, no such db", method: "POST", path: "/admin/databases/nosuchdb/rekey", want: 404},
		{name: "rekey, encoded slash", method: "POST", path: "/admin/databases/job%2Fdb/rekey", want: 400},
		{name: "rekey, dots", method: "POST", path: "/admin/databases/%2E%2E/rekey", want: 400},
		{name: "rekey, NUL", method: "POST", path: "/admin/databases/jobdb%00/rekey", want: 400},
		{name: "rekey, invalid UTF-8", method: "POST", path: "/admin/databases/%FF/rekey", want: 400},
		{name: "rekey, overlong", method: "POST", path: "/admin/databases/" + strings.Repeat("d", 300) + "/rekey", want: 400},
		{name: "rekey, reserved", method: "POST", path: "/admin/databases/_auth/rekey", want: 400},
		{name: "rekey, scoped admin key", method: "POST", path: "/admin/databases/jobdb/rekey", token: scopedAdmin, want: 403},
		{name: "rekey, scoped admin key, no such db", method: "POST", path: "/admin/databases/nosuchdb/rekey", token: scopedAdmin, want: 403},
		{name: "rekey, write key", method: "POST", path: "/admin/databases/jobdb/rekey", token: k.write, want: 403},
		{name: "jobs, scoped key", method: "GET", path: "/admin/jobs", token: k.scoped, want: 403},
		{name: "check, no schema", method: "POST", path: "/api/databases/plaindb/check", want: 400},
		{name: "check, no such db", method: "POST", path: "/api/databases/nosuchdb/check", want: 404},
		{name: "check, encoded slash", method: "POST", path: "/api/databases/job%2Fdb/check", want: 400},
		{name: "check, NUL", method: "POST", path: "/api/databases/jobdb%00/check", want: 400},
		{name: "check, scoped key", method: "POST", path: "/api/databases/jobdb/check", token: k.scoped, want: 403},
		{name: "check, scoped key, no such db", method: "POST", path: "/api/databases/nosuchdb/check", token: k.scoped, want: 403},
		{name: "check, read key", method: "POST", path: "/api/databases/jobdb/check", token: k.read, want: 403},
		{name: "check, body not JSON", method: "POST", path: "/api/databases/jobdb/check", body: "schema=h.v1", want: 400},
		{name: "check, schema a number", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":1}`, want: 400},
		{name: "check, schema a path", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":"../h.v1"}`, want: 400},
		{name: "check, schema NUL", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":"h.v1\u0000"}`, want: 400},
		{name: "check, schema overlong", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":"` + strings.Repeat("s", 5000) + `"}`, want: 400},
		{name: "check, no such schema", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":"nope.v1"}`, want: 400},
		{name: "check, unknown member", method: "POST", path: "/api/databases/jobdb/check", body: `{"schema":"h.v1","all":true}`, want: 400},
		{name: "check result, never checked", method: "GET", path: "/api/databases/plaindb/check", want: 404},
		{name: "check result, scoped key", method: "GET", path: "/api/databases/jobdb/check", token: k.scoped, want: 403},
		{name: "check result, encoded slash", method: "GET", path: "/api/databases/job%2Fdb/check", want: 400},
		hash("empty body", "", 400),
		hash("empty input", `{"input":""}`, 400),
		hash("number input", `{"input":1}`, 400),
		hash("null input", `{"input":null}`, 400),
		hash("unknown member", `{"input":"a","key":"b"}`, 400),
		hash("overlong input", `{"input":"`+strings.Repeat("i", 70000)+`"}`, 400),
		hash("invalid UTF-8", "{\"input\":\"\xff\"}", 400),
		hash("trailing garbage", `{"input":"a"} {}`, 400),
		{name: "hash, scoped admin key", method: "POST", path: "/admin/audit/hash", body: `{"input":"jobdb"}`, token: scopedAdmin, want: 403},
		{name: "hash, read key", method: "POST", path: "/admin/audit/hash", body: `{"input":"jobdb"}`, token: k.read, want: 403},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped, scopedAdmin)
}

// entityFaultStore fails reads of entity objects while fail is set, as
// storage that lists but cannot read.
type entityFaultStore struct {
	*fsStore
	fail atomic.Bool
}

func (f *entityFaultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if f.fail.Load() && strings.HasPrefix(key, entitiesPrefix) {
		return nil, fmt.Errorf("read %s: %w", key, errUnavailable)
	}
	return f.fsStore.Get(ctx, key)
}

func (f *entityFaultStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	if f.fail.Load() && strings.HasPrefix(key, entitiesPrefix) {
		return nil, "", fmt.Errorf("read %s: %w", key, errUnavailable)
	}
	return f.fsStore.GetRev(ctx, key)
}

// TestExportFailsBeforeFirstLine: an export whose first document cannot
// be read is answered 503 with its sentence, as any request whose
// storage fails. Before, the handler aborted and the client got a
// connection closed without an answer (EOF), which it cannot tell from a
// network fault.
func TestExportFailsBeforeFirstLine(t *testing.T) {
	fst := newTestFSStore(t)
	// Written through another server, so that the exporting server's
	// worker has nothing cached and reads the storage.
	newAuthTestServerOn(t, authConfig{}, fst).mustDo(t, "PUT", "/entity/xdb", testAdminKey, `{"a":{"s":"`+hostileSecret+`"}}`, 200)
	st := &entityFaultStore{fsStore: fst}
	ts := newAuthTestServerOn(t, authConfig{}, st)
	srv := httptest.NewServer(ts.rest)
	t.Cleanup(srv.Close)
	st.fail.Store(true)
	req, _ := http.NewRequest("GET", srv.URL+"/api/databases/xdb/export", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("export with unreadable storage: %v, want a 503 answer", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("export with unreadable storage = %d %v %s, want 503 application/json without Content-Disposition", resp.StatusCode, resp.Header, body)
	}
	checkHostileBody(t, "export with unreadable storage", body)
}

// Content types of the two patch formats.
const (
	ctMergePatch = "application/merge-patch+json"
	ctJSONPatch  = "application/json-patch+json"
)

// TestHostilePatch sweeps PATCH /entity/{db}: malformed patches of both
// formats, operations on paths that name nothing, "-" misused, the
// patch and document budgets, failed tests, results the bound schema
// refuses, content types and preconditions. Every refusal leaves the
// stored document as it was, read back through the worker (whose cache
// a half-applied patch would have changed) as well as in storage.
func TestHostilePatch(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/schema/p.v1", testAdminKey, `{"type":"object","required":["n"],"properties":{"n":{"type":"number"},"a":{"type":"array","maxItems":5}}}`, 200)
	ts.mustDo(t, "PUT", "/entity/pdb", testAdminKey, `{"k":{"n":1,"s":"`+hostileSecret+`","a":[1,2,3],"o":{"x":1},"a~b":1,"c/d":2}}`, 200)
	ts.mustDo(t, "PUT", "/entity/pbound", testAdminKey, `{"k":{"n":1,"a":[1]}}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/pbound", testAdminKey, `{"schema":"p.v1"}`, 200)
	ts.mustDo(t, "PUT", "/entity/pbig", testAdminKey, `{"k":{"s":"`+strings.Repeat("b", 700<<10)+`"}}`, 200)
	etag := ts.do("GET", "/entity/pdb?key=k", testAdminKey, "", "").Header().Get("ETag")
	const e = "/entity/pdb?key=k"
	jp := func(name, body string, want int) hostileCase {
		return hostileCase{name: "json " + name, method: "PATCH", path: e, body: body, hdr: map[string]string{"Content-Type": ctJSONPatch}, want: want, readBack: e}
	}
	mp := func(name, body string, want int) hostileCase {
		return hostileCase{name: "merge " + name, method: "PATCH", path: e, body: body, hdr: map[string]string{"Content-Type": ctMergePatch}, want: want, readBack: e}
	}
	on := func(c hostileCase, path string) hostileCase {
		c.path, c.readBack = path, path
		return c
	}
	with := func(c hostileCase, kv ...string) hostileCase {
		h := maps.Clone(c.hdr)
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		c.hdr = h
		return c
	}
	as := func(c hostileCase, token string) hostileCase {
		c.token = token
		return c
	}
	ops := func(op string, n int) string { return "[" + strings.TrimSuffix(strings.Repeat(op+",", n), ",") + "]" }
	deep := func(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) }
	// Each copy of the whole document doubles it: past 1 MiB by the 15th.
	var copies []string
	for i := range 40 {
		copies = append(copies, fmt.Sprintf(`{"op":"copy","from":"","path":"/d%d"}`, i))
	}
	doubling := "[" + strings.Join(copies, ",") + "]"
	cases := []hostileCase{
		jp("empty body", "", 400),
		jp("not JSON", `[{"op":`, 400),
		jp("null", "null", 400),
		jp("an object", `{"op":"add","path":"/x","value":1}`, 400),
		jp("a string", `"add"`, 400),
		jp("an array of numbers", `[1]`, 400),
		jp("an array of arrays", `[[]]`, 400),
		jp("a null operation", `[null]`, 400),
		jp("trailing garbage", `[] x`, 400),
		jp("two arrays", `[][]`, 400),
		jp("BOM", "\ufeff[]", 400),
		jp("invalid UTF-8 in a value", "[{\"op\":\"add\",\"path\":\"/x\",\"value\":\"\xff\"}]", 400),
		jp("invalid UTF-8 in a path", "[{\"op\":\"add\",\"path\":\"/\xff\",\"value\":1}]", 400),
		jp("lone surrogate", `[{"op":"add","path":"/x","value":"\ud800"}]`, 400),
		jp("raw NUL", "[{\"op\":\"add\",\"path\":\"/x\",\"value\":\"a\x00\"}]", 400),
		jp("unknown op", `[{"op":"frob","path":"/n"}]`, 400),
		jp("op upper case", `[{"op":"ADD","path":"/x","value":1}]`, 400),
		jp("op a number", `[{"op":1,"path":"/n"}]`, 400),
		jp("op null", `[{"op":null,"path":"/n"}]`, 400),
		jp("no op", `[{"path":"/n","value":1}]`, 400),
		jp("no path", `[{"op":"add","value":1}]`, 400),
		jp("path a number", `[{"op":"add","path":1,"value":1}]`, 400),
		jp("path null", `[{"op":"remove","path":null}]`, 400),
		jp("no value", `[{"op":"add","path":"/x"}]`, 400),
		jp("replace without value", `[{"op":"replace","path":"/n"}]`, 400),
		jp("test without value", `[{"op":"test","path":"/n"}]`, 400),
		jp("move without from", `[{"op":"move","path":"/x"}]`, 400),
		jp("copy without from", `[{"op":"copy","path":"/x"}]`, 400),
		jp("from a number", `[{"op":"copy","from":1,"path":"/x"}]`, 400),
		jp("op given twice", `[{"op":"add","op":"remove","path":"/n","value":1}]`, 400),
		jp("path given twice", `[{"op":"remove","path":"/n","path":"/s"}]`, 400),
		jp("value given twice", `[{"op":"replace","path":"/n","value":1,"value":2}]`, 400),
		jp("path without a slash", `[{"op":"add","path":"x","value":1}]`, 400),
		jp("from without a slash", `[{"op":"copy","from":"n","path":"/x"}]`, 400),
		jp("bad escape ~2", `[{"op":"add","path":"/~2","value":1}]`, 400),
		jp("bad escape at the end", `[{"op":"add","path":"/a~","value":1}]`, 400),
		jp("URI fragment pointer", `[{"op":"add","path":"#/x","value":1}]`, 400),
		jp("remove of the whole document", `[{"op":"remove","path":""}]`, 400),
		jp("move into its own child", `[{"op":"move","from":"/o","path":"/o/y"}]`, 400),
		jp("move of the whole document into a member", `[{"op":"move","from":"","path":"/x"}]`, 400),
		jp("remove a missing member", `[{"op":"remove","path":"/nope"}]`, 409),
		jp("replace a missing member", `[{"op":"replace","path":"/nope","value":1}]`, 409),
		jp("add under a missing member", `[{"op":"add","path":"/nope/x","value":1}]`, 409),
		jp("add into a number", `[{"op":"add","path":"/n/x","value":1}]`, 409),
		jp("add into a string", `[{"op":"add","path":"/s/0","value":1}]`, 409),
		jp("move from a missing member", `[{"op":"move","from":"/nope","path":"/x"}]`, 409),
		jp("copy from a missing member", `[{"op":"copy","from":"/nope","path":"/x"}]`, 409),
		jp("copy from past an array", `[{"op":"copy","from":"/a/3","path":"/x"}]`, 409),
		jp("unescaped member a~b", `[{"op":"remove","path":"/a~b"}]`, 400),
		jp("member c/d unescaped", `[{"op":"remove","path":"/c/d"}]`, 409),
		jp("add past the end", `[{"op":"add","path":"/a/4","value":9}]`, 409),
		jp("add at a negative index", `[{"op":"add","path":"/a/-1","value":9}]`, 409),
		jp("add at a leading-zero index", `[{"op":"add","path":"/a/01","value":9}]`, 409),
		jp("add at index +1", `[{"op":"add","path":"/a/+1","value":9}]`, 409),
		jp("add at a huge index", `[{"op":"add","path":"/a/99999999999999999999","value":9}]`, 409),
		jp("add at index 1e0", `[{"op":"add","path":"/a/1e0","value":9}]`, 409),
		jp("remove past the end", `[{"op":"remove","path":"/a/3"}]`, 409),
		jp("remove -", `[{"op":"remove","path":"/a/-"}]`, 409),
		jp("replace -", `[{"op":"replace","path":"/a/-","value":9}]`, 409),
		jp("test -", `[{"op":"test","path":"/a/-","value":9}]`, 409),
		jp("move from -", `[{"op":"move","from":"/a/-","path":"/x"}]`, 409),
		jp("copy from -", `[{"op":"copy","from":"/a/-","path":"/x"}]`, 409),
		jp("- under -", `[{"op":"add","path":"/a/-/-","value":9}]`, 409),
		jp("- of an object", `[{"op":"remove","path":"/o/-"}]`, 409),
		jp("- of a number", `[{"op":"add","path":"/n/-","value":9}]`, 409),
		jp("test fails", `[{"op":"test","path":"/n","value":2}]`, 409),
		jp("test of another type", `[{"op":"test","path":"/n","value":"1"}]`, 409),
		jp("test of a missing member", `[{"op":"test","path":"/nope","value":null}]`, 409),
		jp("test of the whole document", `[{"op":"test","path":"","value":{}}]`, 409),
		jp("writes before a test that fails", `[{"op":"add","path":"/z","value":1},{"op":"replace","path":"/n","value":7},{"op":"test","path":"/n","value":1}]`, 409),
		jp("writes before a remove that fails", `[{"op":"add","path":"/a/-","value":4},{"op":"remove","path":"/o/x"},{"op":"remove","path":"/nope"}]`, 409),
		jp("writes before a malformed operation", `[{"op":"add","path":"/z","value":1},{"op":"frob","path":"/n"}]`, 400),
		jp("too many operations", ops(`{"op":"test","path":"/n","value":1}`, 1001), 413),
		jp("too many operations, all failing", ops(`{"op":"remove","path":"/nope"}`, 5000), 413),
		jp("value nested too deep", `[{"op":"add","path":"/x","value":`+deep(64)+`}]`, 413),
		jp("value nested very deep", `[{"op":"add","path":"/x","value":`+deep(100000)+`}]`, 413),
		jp("result nested too deep", `[{"op":"add","path":"/o/y","value":`+deep(63)+`}]`, 413),
		jp("copy doubling past the limit", doubling, 413),
		jp("body over the limit", `[{"op":"add","path":"/x","value":"`+strings.Repeat("x", 1<<20)+`"}]`, 413),
		on(jp("copy past the document limit", `[{"op":"copy","from":"/s","path":"/t"}]`, 413), "/entity/pbig?key=k"),
		on(jp("add past the document limit", `[{"op":"add","path":"/t","value":"`+strings.Repeat("t", 400<<10)+`"}]`, 413), "/entity/pbig?key=k"),
		on(jp("result the schema refuses (type)", `[{"op":"replace","path":"/n","value":"one"}]`, 400), "/entity/pbound?key=k"),
		on(jp("result the schema refuses (required)", `[{"op":"remove","path":"/n"}]`, 400), "/entity/pbound?key=k"),
		on(jp("result the schema refuses (maxItems)", ops(`{"op":"add","path":"/a/-","value":1}`, 5), 400), "/entity/pbound?key=k"),
		on(jp("result the schema refuses (not an object)", `[{"op":"replace","path":"","value":[1]}]`, 400), "/entity/pbound?key=k"),
		on(jp("result a huge number", `[{"op":"replace","path":"/n","value":1e1000001}]`, 413), "/entity/pbound?key=k"),
		on(jp("no such entity", `[]`, 404), "/entity/pdb?key=nope"),
		on(jp("no such database", `[]`, 404), "/entity/nosuchdb?key=k"),
		on(jp("no key", `[]`, 400), "/entity/pdb"),
		on(jp("key twice", `[]`, 400), "/entity/pdb?key=k&key=k"),
		on(jp("key empty", `[]`, 400), "/entity/pdb?key="),
		on(jp("key NUL", `[]`, 400), "/entity/pdb?key=k%00"),
		on(jp("key encoded slash", `[]`, 400), "/entity/pdb?key=..%2Fk"),
		on(jp("key dots", `[]`, 400), "/entity/pdb?key=.."),
		on(jp("key overlong", `[]`, 400), "/entity/pdb?key="+strings.Repeat("k", 257)),
		on(jp("db encoded slash", `[]`, 400), "/entity/p%2Fdb?key=k"),
		on(jp("schema unknown", `[]`, 400), e+"&schema=nope.v1"),
		on(jp("schema a path", `[]`, 400), e+"&schema=..%2Fp.v1"),
		on(jp("schema twice", `[]`, 400), e+"&schema=p.v1&schema=p.v1"),
		on(jp("schema empty", `[]`, 400), e+"&schema="),
		on(jp("schema refuses", `[{"op":"remove","path":"/n"}]`, 400), e+"&schema=p.v1"),
		with(on(jp("If-Match, no such database", `[]`, 412), "/entity/nodb2?key=k"), "If-Match", "*"),
		{name: "undelete, no such database", method: "POST", path: "/entity/nodb3/undelete?key=k", want: 404},
		{name: "put If-Match, no such database", method: "PUT", path: "/entity/nodb4", body: `{"k":{}}`, hdr: map[string]string{"If-Match": "*"}, want: 412},
		{name: "put if_match, no such database", method: "PUT", path: "/entity/nodb5?if_match=k:*&if_match=j:*", body: `{"k":{},"j":{}}`, want: 412},
		with(jp("If-Match stale", `[]`, 412), "If-Match", `"0000"`),
		with(jp("If-Match weak", `[]`, 412), "If-Match", "W/"+etag),
		with(jp("If-Match unquoted", `[]`, 400), "If-Match", strings.Trim(etag, `"`)),
		with(jp("If-Match empty", `[]`, 400), "If-Match", ""),
		with(jp("If-Match a list with garbage", `[]`, 400), "If-Match", `"a", b`),
		with(jp("If-Match weak star", `[]`, 400), "If-Match", "W/*"),
		with(jp("If-Match star and a tag", `[]`, 400), "If-Match", "*, "+etag),
		with(jp("If-Match a thousand stale", `[]`, 412), "If-Match", strings.TrimSuffix(strings.Repeat(`"x", `, 1000), ", ")),
		with(jp("If-None-Match star", `[]`, 412), "If-None-Match", "*"),
		with(jp("If-None-Match current", `[]`, 412), "If-None-Match", `"x", `+etag),
		with(jp("If-None-Match garbage", `[]`, 400), "If-None-Match", `"a`),
		with(jp("If-Match good, If-None-Match star", `[]`, 412), "If-Match", etag, "If-None-Match", "*"),
		with(on(jp("If-Match star, no such entity", `[]`, 412), "/entity/pdb?key=nope"), "If-Match", "*"),
		with(jp("no Content-Type", `[]`, 415), "Content-Type", ""),
		with(jp("application/json", `[]`, 415), "Content-Type", "application/json"),
		with(jp("text/plain", `[]`, 415), "Content-Type", "text/plain"),
		with(jp("patch type as a suffix", `[]`, 415), "Content-Type", "application/x-json-patch+json"),
		with(jp("two types", `[]`, 415), "Content-Type", ctJSONPatch+", "+ctMergePatch),
		with(jp("garbage type", `[]`, 415), "Content-Type", ";;;"),
		with(jp("gzip encoding", `[]`, 415), "Content-Encoding", "gzip"),
		as(jp("read key", `[]`, 403), k.read),
		as(jp("scoped key", `[]`, 403), k.scoped),
		as(jp("scoped session", `[]`, 403), k.scopedSess),
		as(jp("write-only key, test", `[{"op":"test","path":"/s","value":"guess"}]`, 403), k.write),
		as(on(jp("write-only key, schema", `[]`, 403), e+"&schema=p.v1"), k.write),
		as(jp("no credential", `[]`, 401), "-"),
		mp("empty body", "", 400),
		mp("not JSON", `{"n":`, 400),
		mp("trailing garbage", `{} {}`, 400),
		mp("BOM", "\ufeff{}", 400),
		mp("invalid UTF-8 in a value", "{\"s\":\"\xff\"}", 400),
		mp("invalid UTF-8 in a name", "{\"\xff\":1}", 400),
		mp("lone surrogate", `{"s":"\udc00"}`, 400),
		mp("raw NUL", "{\"s\":\"\x00\"}", 400),
		mp("nested too deep", `{"x":`+deep(64)+`}`, 413),
		mp("nested very deep", strings.Repeat(`{"x":`, 100000)+"1"+strings.Repeat("}", 100000), 413),
		mp("body over the limit", `{"x":"`+strings.Repeat("x", 1<<20)+`"}`, 413),
		on(mp("past the document limit", `{"t":"`+strings.Repeat("t", 400<<10)+`"}`, 413), "/entity/pbig?key=k"),
		on(mp("the schema refuses (type)", `{"n":"one"}`, 400), "/entity/pbound?key=k"),
		on(mp("the schema refuses (removed)", `{"n":null}`, 400), "/entity/pbound?key=k"),
		on(mp("the schema refuses (an array)", `[1]`, 400), "/entity/pbound?key=k"),
		on(mp("the schema refuses (null)", `null`, 400), "/entity/pbound?key=k"),
		on(mp("a huge number", `{"n":1e1000001}`, 413), "/entity/pbound?key=k"),
		on(mp("no such entity", `{}`, 404), "/entity/pdb?key=nope"),
		on(mp("no such entity, null", `null`, 404), "/entity/pdb?key=nope"),
		with(mp("If-Match stale", `{"n":2}`, 412), "If-Match", `"0000"`),
		with(mp("If-Match weak", `{"n":2}`, 412), "If-Match", "W/"+etag),
		with(mp("If-None-Match star", `{"n":2}`, 412), "If-None-Match", "*"),
		with(mp("If-Match a semicolon", `{"n":2}`, 400), "If-Match", etag+";"),
		as(mp("read key", `{"n":2}`, 403), k.read),
		as(mp("scoped key", `{"n":2}`, 403), k.scoped),
		as(on(mp("write-only key, schema", `{}`, 403), e+"&schema=p.v1"), k.write),
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped, k.write)
}

// TestHostileEntity sweeps PUT, GET and DELETE /entity/{db}: bodies that
// are not an object of documents, keys the names rule forbids, nesting
// and numbers, bytes that are not text, conditional headers, repeated
// and unknown parameters, and methods the route does not take.
func TestHostileEntity(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/entity/edb", testAdminKey, `{"k":{"s":"`+hostileSecret+`"},"n":{"x":1e400}}`, 200)
	etag := ts.do("GET", "/entity/edb?key=k", testAdminKey, "", "").Header().Get("ETag")
	const e = "/entity/edb"
	const g = e + "?key=k"
	put := func(name, body string, want int) hostileCase {
		return hostileCase{name: "put " + name, method: "PUT", path: e, body: body, want: want, readBack: g}
	}
	get := func(name, path string, want int) hostileCase {
		return hostileCase{name: "get " + name, method: "GET", path: path, want: want}
	}
	del := func(name, path string, want int) hostileCase {
		return hostileCase{name: "delete " + name, method: "DELETE", path: path, want: want, readBack: g}
	}
	hdr := func(c hostileCase, kv ...string) hostileCase {
		c.hdr = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			c.hdr[kv[i]] = kv[i+1]
		}
		return c
	}
	doc := func(key string) string { return `{"` + key + `":{"a":1}}` }
	deepDoc := func(n int) string { return `{"d":` + strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) + `}` }
	cases := []hostileCase{
		put("empty body", "", 400),
		put("null", "null", 400),
		put("an array", `[{"k":{}}]`, 400),
		put("a number", "1", 400),
		put("a string", `"k"`, 400),
		put("true", "true", 400),
		put("not JSON", "k=v", 400),
		put("cut short", `{"k":{"s":"x"`, 400),
		put("trailing garbage", `{"k":{}} x`, 400),
		put("two objects", `{"k":{}}{"j":{}}`, 400),
		put("BOM", "\ufeff"+doc("j"), 400),
		put("empty object", "{}", 400),
		put("invalid UTF-8 in a value", "{\"j\":{\"s\":\"\xff\"}}", 400),
		put("invalid UTF-8 in a member", "{\"j\":{\"\xc3\":1}}", 400),
		put("invalid UTF-8 in a key", "{\"j\xff\":{}}", 400),
		put("lone surrogate in a value", `{"j":{"s":"\ud800"}}`, 400),
		put("lone surrogate in a key", `{"j\udfff":{}}`, 400),
		put("raw NUL in a value", "{\"j\":{\"s\":\"a\x00\"}}", 400),
		put("raw NUL after the body", doc("j")+"\x00", 400),
		put("key empty", doc(""), 400),
		put("key slash", doc("a/b"), 400),
		put("key backslash", doc(`a\\b`), 400),
		put("key dots", doc(".."), 400),
		put("key with dots inside", doc("a..b"), 400),
		put("key NUL", doc(`a\u0000`), 400),
		put("key tab", doc(`a\tb`), 400),
		put("key DEL", doc("a\x7fb"), 400),
		put("key C1 control", doc(`a\u0085b`), 400),
		put("key newline", doc(`a\nb`), 400),
		put("key 257 bytes", doc(strings.Repeat("k", 257)), 400),
		put("key of 129 two-byte letters", doc(strings.Repeat("é", 129)), 400),
		put("a good key and a bad one", `{"j":{"a":1},"../x":{"a":1}}`, 400),
		// The last of a key given twice counts, as in every body.
		put("duplicate keys", `{"j":{"a":1},"j":{"a":2}}`, 200),
		put("document nested too deep", deepDoc(65), 413),
		put("body nested very deep", strings.Repeat(`{"a":`, 100000)+"1"+strings.Repeat("}", 100000), 413),
		put("arrays nested very deep", `{"j":`+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+`}`, 413),
		put("body over the limit", `{"j":{"s":"`+strings.Repeat("x", 1<<20)+`"}}`, 413),
		put("too many keys", "{"+strings.TrimSuffix(strings.Repeat(`"x":1,`, 1001), ",")+"}", 200),
		hdr(put("If-Match stale", doc("k"), 412), "If-Match", `"00"`),
		hdr(put("If-Match weak", doc("k"), 412), "If-Match", "W/"+etag),
		hdr(put("If-Match unquoted", doc("k"), 400), "If-Match", strings.Trim(etag, `"`)),
		hdr(put("If-Match empty", doc("k"), 400), "If-Match", ""),
		hdr(put("If-Match garbage list", doc("k"), 400), "If-Match", `"a",,`+etag+`,b`),
		hdr(put("If-Match weak star", doc("k"), 400), "If-Match", "W/*"),
		hdr(put("If-Match star, no such key", doc("nope"), 412), "If-Match", "*"),
		hdr(put("If-None-Match star", doc("k"), 412), "If-None-Match", "*"),
		hdr(put("If-None-Match current in a list", doc("k"), 412), "If-None-Match", `W/"y", `+etag),
		hdr(put("If-None-Match unquoted", doc("k"), 400), "If-None-Match", "abc"),
		hdr(put("If-Match on several keys", `{"k":{},"j":{}}`, 400), "If-Match", etag),
		hdr(put("If-None-Match on several keys", `{"k":{},"j":{}}`, 400), "If-None-Match", "*"),
		{name: "put if_match garbage", method: "PUT", path: e + "?if_match=k", body: `{"k":{},"j":{}}`, want: 400, readBack: g},
		{name: "put if_match stale", method: "PUT", path: e + "?if_match=k:00", body: `{"k":{},"j":{}}`, want: 412, readBack: g},
		{name: "put if_match key not in the body", method: "PUT", path: e + "?if_match=z:*", body: `{"k":{},"j":{}}`, want: 400, readBack: g},
		{name: "put if_none_match existing", method: "PUT", path: e + "?if_none_match=k", body: `{"k":{},"j":{}}`, want: 412, readBack: g},
		{name: "put if_match and if_none_match on one key", method: "PUT", path: e + "?if_match=k:*&if_none_match=k", body: `{"k":{},"j":{}}`, want: 400, readBack: g},
		{name: "put with key in the query", method: "PUT", path: e + "?key=k", body: doc("k"), want: 400, readBack: g},
		{name: "put read key", method: "PUT", path: e, body: doc("k"), token: k.read, want: 403, readBack: g},
		{name: "put scoped key", method: "PUT", path: e, body: doc("k"), token: k.scoped, want: 403, readBack: g},
		{name: "put no credential", method: "PUT", path: e, body: doc("k"), token: "-", want: 401, readBack: g},
		{name: "put text/plain", method: "PUT", path: e, body: doc("j"), hdr: map[string]string{"Content-Encoding": "gzip"}, want: 415, readBack: g},
		{name: "put db dots", method: "PUT", path: "/entity/%2E%2E", body: doc("j"), want: 400},
		{name: "put db encoded slash", method: "PUT", path: "/entity/e%2Fdb", body: doc("j"), want: 400},
		{name: "put db reserved", method: "PUT", path: "/entity/_auth", body: doc("j"), want: 400},
		{name: "put db 65 characters", method: "PUT", path: "/entity/" + strings.Repeat("d", 65), body: doc("j"), want: 400},
		{name: "put db leading dash", method: "PUT", path: "/entity/-db", body: doc("j"), want: 400},
		{name: "put db invalid UTF-8", method: "PUT", path: "/entity/%FF", body: doc("j"), want: 400},
		{name: "put db missing", method: "PUT", path: "/entity/", body: doc("j"), want: 400},
		get("no key", e, 400),
		get("key twice", g+"&key=k", 400),
		get("key empty", e+"?key=", 400),
		get("key NUL", e+"?key=k%00", 400),
		get("key encoded slash", e+"?key=..%2Fk", 400),
		get("key backslash", e+"?key=a%5Cb", 400),
		get("key invalid UTF-8", e+"?key=%FF", 400),
		get("key bad escape", e+"?key=%zz", 400),
		get("key semicolon", e+"?key=k;x", 400),
		get("key overlong", e+"?key="+strings.Repeat("k", 257), 400),
		get("no such key", e+"?key=nope", 404),
		get("no such database", "/entity/nosuchdb?key=k", 404),
		get("unknown parameter", g+"&foo=1", 200),
		get("number past float64 kept", e+"?key=n", 200),
		hdr(get("If-None-Match star", g, 304), "If-None-Match", "*"),
		hdr(get("If-None-Match weak", g, 304), "If-None-Match", "W/"+etag),
		hdr(get("If-None-Match list", g, 304), "If-None-Match", `"a", `+etag),
		hdr(get("If-None-Match stale", g, 200), "If-None-Match", `"a"`),
		hdr(get("If-None-Match unquoted", g, 400), "If-None-Match", "a"),
		hdr(get("If-None-Match empty", g, 400), "If-None-Match", ""),
		hdr(get("If-None-Match star on no such key", e+"?key=nope", 404), "If-None-Match", "*"),
		hdr(get("If-Match ignored", g, 200), "If-Match", `"a"`),
		get("read by a write-only key", g+"&x=1", 200),
		{name: "get write-only key", method: "GET", path: g, token: k.write, want: 403},
		{name: "get scoped key", method: "GET", path: g, token: k.scoped, want: 403},
		{name: "get scoped key, no such db", method: "GET", path: "/entity/nosuchdb?key=k", token: k.scoped, want: 403},
		{name: "get unknown credential", method: "GET", path: g, token: "dk_" + strings.Repeat("A", 43), want: 401},
		{name: "get two Authorization headers", method: "GET", path: g, hdr: map[string]string{"Authorization": "Bearer " + testAdminKey + ", Bearer x"}, want: 401},
		{name: "head", method: "HEAD", path: g, want: 200},
		{name: "head no such key", method: "HEAD", path: e + "?key=nope", want: 404},
		del("no key", e, 400),
		del("key twice", g+"&key=k", 400),
		del("key encoded slash", e+"?key=..%2Fk", 400),
		del("key NUL", e+"?key=k%00", 400),
		del("no such key", e+"?key=nope", 404),
		del("no such database", "/entity/nosuchdb?key=k", 404),
		hdr(del("If-Match stale", g, 412), "If-Match", `"00"`),
		hdr(del("If-Match weak", g, 412), "If-Match", "W/"+etag),
		hdr(del("If-Match garbage", g, 400), "If-Match", "garbage"),
		hdr(del("If-None-Match star", g, 412), "If-None-Match", "*"),
		hdr(del("If-None-Match current", g, 412), "If-None-Match", etag),
		hdr(del("If-Match star, no such key", e+"?key=nope", 412), "If-Match", "*"),
		{name: "delete read key", method: "DELETE", path: g, token: k.read, want: 403, readBack: g},
		{name: "delete scoped key", method: "DELETE", path: g, token: k.scoped, want: 403, readBack: g},
		{name: "POST", method: "POST", path: g, body: doc("j"), want: 405, readBack: g, wantHdr: map[string]string{"Allow": "DELETE, GET, HEAD, PATCH, PUT"}},
		{name: "OPTIONS", method: "OPTIONS", path: g, want: 405, readBack: g},
		{name: "TRACE", method: "TRACE", path: g, want: 405, readBack: g},
		{name: "lower-case get", method: "get", path: g, want: 405, readBack: g},
		{name: "unknown method", method: "FROB", path: g, want: 405, readBack: g},
		{name: "POST, no credential", method: "POST", path: g, token: "-", want: 405, readBack: g},
		{name: "not canonical", method: "GET", path: "/entity/../entity/edb?key=k", want: 400},
		{name: "double slash", method: "GET", path: "/entity//edb?key=k", want: 400},
		{name: "trailing slash", method: "GET", path: "/entity/edb/?key=k", want: 404},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped, k.write)
	if got := ts.mustDo(t, "GET", "/entity/edb?key=n", testAdminKey, "", 200); string(got) != `{"x":1e400}` {
		t.Errorf("a number past float64 = %s, want its text kept", got)
	}
}

// TestHostileKeys sweeps the API key routes and the login: permissions,
// expiries, database patterns, names and IDs an attacker would send, and
// credentials of the wrong kind, size or type at the login. No key
// secret or session token reaches the log.
func TestHostileKeys(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{maxFailures: -1})
	k := newHostileKeys(t, ts)
	adminKey := ts.createKey(t, `{"name":"a","permissions":["admin"]}`)
	adminSess := ts.login(t, adminKey.Secret).Token
	key := func(name, body string, want int) hostileCase {
		return hostileCase{name: "create " + name, method: "POST", path: "/api/keys", body: body, want: want}
	}
	perms := func(p string) string { return `{"name":"n","permissions":` + p + `}` }
	expires := func(e string) string { return `{"name":"n","permissions":["read"],"expires_in":` + e + `}` }
	dbs := func(d string) string { return `{"name":"n","permissions":["read"],"databases":` + d + `}` }
	name := func(n string) string { return `{"name":` + n + `,"permissions":["read"]}` }
	edit := func(what, id, body string, want int) hostileCase {
		return hostileCase{name: "edit " + what, method: "PATCH", path: "/api/keys/" + id, body: body, want: want}
	}
	login := func(what, body string, want int) hostileCase {
		return hostileCase{name: "login " + what, method: "POST", path: "/api/login", body: body, token: "-", want: want}
	}
	many := func(item string, n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	hugeKey := "dk_" + strings.Repeat("A", 200<<10)
	cases := []hostileCase{
		key("empty body", "", 400),
		key("null", "null", 400),
		key("an array", `[]`, 400),
		key("not JSON", "name=n", 400),
		key("unknown member", `{"name":"n","permissions":["read"],"admin":true}`, 400),
		key("trailing garbage", perms(`["read"]`)+"x", 400),
		key("no permissions", `{"name":"n"}`, 400),
		key("permissions empty", perms(`[]`), 400),
		key("permissions null", perms(`null`), 400),
		key("permissions a string", perms(`"read"`), 400),
		key("permission unknown", perms(`["root"]`), 400),
		key("permission upper case", perms(`["READ"]`), 400),
		key("permission with a space", perms(`["read "]`), 400),
		key("permission a number", perms(`[1]`), 400),
		key("permission null", perms(`[null]`), 400),
		key("permission star", perms(`["*"]`), 400),
		key("permission invalid UTF-8", perms("[\"re\xffad\"]"), 400),
		key("expires_in negative", expires(`"-1h"`), 400),
		key("expires_in zero", expires(`"0s"`), 400),
		key("expires_in 0d", expires(`"0d"`), 400),
		key("expires_in -1d", expires(`"-1d"`), 400),
		key("expires_in +1d", expires(`"+1d"`), 400),
		key("expires_in 1.5d", expires(`"1.5d"`), 400),
		key("expires_in 1e9h", expires(`"1e9h"`), 400),
		key("expires_in past a duration", expires(`"9999999999h"`), 400),
		key("expires_in past the days", expires(`"36501d"`), 400),
		key("expires_in past uint32 days", expires(`"4294967297d"`), 400),
		key("expires_in under a nanosecond", expires(`"0.1ns"`), 400),
		key("expires_in empty", expires(`""`), 400),
		key("expires_in a number", expires(`3600`), 400),
		key("expires_in days and hours", expires(`"1d2h"`), 400),
		key("expires_in no unit", expires(`"30"`), 400),
		key("expires_in a week", expires(`"1w"`), 400),
		key("expires_in NUL", expires(`"1h\u0000"`), 400),
		key("databases empty", dbs(`[]`), 400),
		key("databases an empty name", dbs(`[""]`), 400),
		key("databases **", dbs(`["**"]`), 400),
		key("databases a*b", dbs(`["a*b"]`), 400),
		key("databases *a", dbs(`["*a"]`), 400),
		key("databases a**", dbs(`["a**"]`), 400),
		key("databases a path", dbs(`["../x"]`), 400),
		key("databases a reserved name", dbs(`["_auth"]`), 400),
		key("databases a string", dbs(`"a"`), 400),
		key("databases a number", dbs(`[1]`), 400),
		key("databases 101", dbs(many(`"a"`, 101)), 400),
		key("databases a name too long", dbs(`["`+strings.Repeat("d", 65)+`"]`), 400),
		key("databases a prefix too long", dbs(`["`+strings.Repeat("d", 65)+`*"]`), 400),
		key("databases NUL", dbs(`["a\u0000"]`), 400),
		key("name empty", name(`""`), 400),
		key("name missing", `{"permissions":["read"]}`, 400),
		key("name a number", name(`1`), 400),
		key("name 129 bytes", name(`"`+strings.Repeat("n", 129)+`"`), 400),
		key("name huge", name(`"`+strings.Repeat("n", 900<<10)+`"`), 400),
		key("name over the body limit", name(`"`+strings.Repeat("n", 2<<20)+`"`), 413),
		key("name NUL", name(`"a\u0000"`), 400),
		key("name newline", name(`"a\nb"`), 400),
		key("name DEL", name("\"a\x7f\""), 400),
		key("name C1 control", name(`"a\u0085b"`), 400),
		key("name invalid UTF-8", name("\"a\xff\""), 400),
		key("name lone surrogate", name(`"a\ud800"`), 400),
		{name: "create, read key", method: "POST", path: "/api/keys", body: perms(`["read"]`), token: k.read, want: 403},
		{name: "create, scoped key", method: "POST", path: "/api/keys", body: perms(`["read"]`), token: k.scoped, want: 403},
		{name: "create, scoped session", method: "POST", path: "/api/keys", body: perms(`["read"]`), token: k.scopedSess, want: 403},
		{name: "list, write key", method: "GET", path: "/api/keys", token: k.write, want: 403},
		{name: "delete, no such id", method: "DELETE", path: "/api/keys/key_0000000000000000", want: 404},
		{name: "delete, a path", method: "DELETE", path: "/api/keys/..%2F..%2F_auth%2Fkeys.json", want: 400},
		{name: "delete, dots", method: "DELETE", path: "/api/keys/%2E%2E", want: 400},
		{name: "delete, NUL", method: "DELETE", path: "/api/keys/key_%00", want: 404},
		{name: "delete, invalid UTF-8", method: "DELETE", path: "/api/keys/%FF", want: 404},
		{name: "delete, overlong", method: "DELETE", path: "/api/keys/" + strings.Repeat("k", 5000), want: 404},
		{name: "delete, the secret as the id", method: "DELETE", path: "/api/keys/" + k.read, want: 404},
		{name: "delete, admin", method: "DELETE", path: "/api/keys/admin", want: 404},
		{name: "delete, empty", method: "DELETE", path: "/api/keys/", want: 404},
		{name: "delete, scoped key", method: "DELETE", path: "/api/keys/" + adminKey.ID, token: k.scoped, want: 403},
		{name: "delete, read key", method: "DELETE", path: "/api/keys/" + adminKey.ID, token: k.read, want: 403},
		edit("no such id", "key_0000000000000000", `{"name":"x"}`, 404),
		edit("a path", "..%2Fkeys.json", `{"name":"x"}`, 400),
		edit("empty body", adminKey.ID, "", 400),
		edit("empty object", adminKey.ID, `{}`, 400),
		edit("unknown member", adminKey.ID, `{"secret":"x"}`, 400),
		edit("permissions empty", adminKey.ID, `{"permissions":[]}`, 400),
		edit("permissions null", adminKey.ID, `{"permissions":null}`, 400),
		edit("databases **", adminKey.ID, `{"databases":["**"]}`, 400),
		edit("databases empty", adminKey.ID, `{"databases":[]}`, 400),
		edit("expires_in negative", adminKey.ID, `{"expires_in":"-1h"}`, 400),
		edit("expires_in a number", adminKey.ID, `{"expires_in":1}`, 400),
		edit("name control", adminKey.ID, `{"name":"a\u0001"}`, 400),
		edit("name C1 control", adminKey.ID, `{"name":"a\u009b"}`, 400),
		edit("name twice", adminKey.ID, `{"name":"a","name":"`+strings.Repeat("n", 129)+`"}`, 400),
		{name: "rotate, no such id", method: "POST", path: "/api/keys/key_0000000000000000/rotate", want: 404},
		{name: "rotate, grace negative", method: "POST", path: "/api/keys/" + adminKey.ID + "/rotate", body: `{"grace":"-1s"}`, want: 400},
		{name: "rotate, grace too long", method: "POST", path: "/api/keys/" + adminKey.ID + "/rotate", body: `{"grace":"169h"}`, want: 400},
		{name: "rotate, grace days", method: "POST", path: "/api/keys/" + adminKey.ID + "/rotate", body: `{"grace":"1d"}`, want: 400},
		login("empty body", "", 400),
		login("null", "null", 400),
		login("an array", `["`+testAdminKey+`"]`, 400),
		login("not JSON", "key="+testAdminKey, 400),
		login("key empty", `{"key":""}`, 400),
		login("key null", `{"key":null}`, 400),
		login("key a number", `{"key":1}`, 400),
		login("key an object", `{"key":{"key":"`+testAdminKey+`"}}`, 400),
		login("key an array", `{"key":["`+testAdminKey+`"]}`, 400),
		login("key true", `{"key":true}`, 400),
		login("unknown member", `{"key":"`+testAdminKey+`","ttl":"999h"}`, 400),
		login("key twice", `{"key":"x","key":"`+k.read+`"}`, 200),
		login("trailing garbage", `{"key":"`+testAdminKey+`"} x`, 400),
		login("a session token", `{"key":"`+k.scopedSess+`"}`, 401),
		login("an admin session token", `{"key":"`+adminSess+`"}`, 401),
		login("an unknown key", `{"key":"dk_`+strings.Repeat("B", 43)+`"}`, 401),
		login("a huge key", `{"key":"`+hugeKey+`"}`, 401),
		login("a key over the body limit", `{"key":"`+strings.Repeat("k", 2<<20)+`"}`, 413),
		login("the key with a NUL", `{"key":"`+k.read+`\u0000"}`, 401),
		login("the key with a space", `{"key":" `+k.read+`"}`, 401),
		login("the key with Bearer", `{"key":"Bearer `+k.read+`"}`, 401),
		login("the key invalid UTF-8", "{\"key\":\""+k.read+"\xff\"}", 400),
		login("the key upper case", `{"key":"`+strings.ToUpper(k.read)+`"}`, 401),
		login("the admin key's prefix", `{"key":"`+testAdminKey[:len(testAdminKey)-1]+`"}`, 401),
		{name: "login, a bearer and no body", method: "POST", path: "/api/login", want: 400},
		{name: "logout, an API key", method: "POST", path: "/api/logout", token: k.read, want: 400},
		{name: "logout, unknown token", method: "POST", path: "/api/logout", token: "ds_" + strings.Repeat("C", 43), want: 401},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.write, k.scoped, k.scopedSess, adminKey.Secret, adminSess, hugeKey[:100], testAdminKey)
}

// TestHostileSchemas sweeps PUT, GET and DELETE /schema/{id} and the
// database binding: $refs to other documents (which must not be
// fetched), recursion, the compile and pattern budgets, regexes that
// backtrack in other engines, formats, bad IDs; binding to what does not
// exist, bodies of the wrong shape, and a binding that existing documents
// do not match (allowed: API.md says they are not checked again).
func TestHostileSchemas(t *testing.T) {
	var fetched atomic.Int32
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Write([]byte(`{"type":"object"}`))
	}))
	defer remote.Close()
	ts, logs := hostileServer(t, authConfig{})
	k := newHostileKeys(t, ts)
	ts.mustDo(t, "PUT", "/schema/s.v1", testAdminKey, `{"type":"object","required":["n"]}`, 200)
	ts.mustDo(t, "PUT", "/entity/sdb", testAdminKey, `{"k":{"s":"`+hostileSecret+`"}}`, 200)
	ts.mustDo(t, "PUT", "/entity/otherdb", testAdminKey, `{"k":{"n":1}}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/otherdb", testAdminKey, `{"schema":"s.v1"}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/zdb", testAdminKey, `{"schema":"s.v1"}`, 200)
	sch := func(name, body string, want int) hostileCase {
		return hostileCase{name: "put " + name, method: "PUT", path: "/schema/h.v1", body: body, want: want, readBack: "/schema/s.v1"}
	}
	many := func(item string, n int) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	// anyOf levels of two $refs each, 2^n subschemas along a path.
	var defs []string
	for i := range 30 {
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, `"d30":{"type":"string"}`)
	exponential := `{"$ref":"#/$defs/d0","$defs":{` + strings.Join(defs, ",") + `}}`
	var nums []string
	for i := range 30000 {
		nums = append(nums, fmt.Sprint(i))
	}
	numbers := strings.Join(nums, ",")
	bind := func(name, db, body string, want int) hostileCase {
		return hostileCase{name: "bind " + name, method: "PUT", path: "/api/databases/" + db, body: body, want: want}
	}
	cases := []hostileCase{
		sch("empty body", "", 400),
		sch("not JSON", "type: object", 400),
		sch("trailing garbage", `{"type":"object"} x`, 400),
		sch("invalid UTF-8", "{\"pattern\":\"\xff\"}", 400),
		sch("lone surrogate", `{"const":"\ud800"}`, 400),
		sch("a number", `1`, 400),
		sch("a string", `"object"`, 400),
		sch("null", `null`, 400),
		sch("an array", `[{"type":"object"}]`, 400),
		sch("unknown type", `{"type":"strnig"}`, 400),
		sch("type a number", `{"type":1}`, 400),
		sch("required not a list", `{"required":"n"}`, 400),
		sch("minimum a string", `{"minimum":"1"}`, 400),
		sch("remote $ref http", `{"$ref":"`+remote.URL+`/s.json"}`, 400),
		sch("remote $ref in a property", `{"properties":{"a":{"$ref":"`+remote.URL+`/a.json#/x"}}}`, 400),
		sch("remote $schema", `{"$schema":"`+remote.URL+`/meta.json","type":"object"}`, 400),
		sch("remote $id and a relative $ref", `{"$id":"`+remote.URL+`/base.json","$ref":"other.json"}`, 400),
		sch("$ref to a file", `{"$ref":"file:///etc/passwd"}`, 400),
		sch("$ref to a relative file", `{"$ref":"../schemas/s.v1.json"}`, 400),
		sch("$ref to another stored schema", `{"$ref":"s.v1"}`, 400),
		sch("$ref to nothing", `{"$ref":"#/$defs/nope"}`, 400),
		sch("$ref a number", `{"$ref":1}`, 400),
		// A cycle that never descends is stored, and matches nothing
		// (schema.go): a document gets its sentence, not a hang.
		sch("$ref cycle", `{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}}}`, 200),
		sch("$ref to itself", `{"allOf":[{"$ref":"#"}]}`, 200),
		sch("exponential $refs", exponential, 400),
		sch("nested too deep", strings.Repeat(`{"items":`, 70)+"{}"+strings.Repeat("}", 70), 413),
		sch("too many subschemas", `{"anyOf":[`+many(`{}`, 10001)+`]}`, 413),
		sch("pattern over the budget", `{"pattern":"^.{1,600}$"}`, 400),
		sch("pattern counted repetition", `{"pattern":"a{0,1000}b"}`, 400),
		sch("patternProperties over the budget", `{"patternProperties":{"^.{1,600}$":{}}}`, 400),
		sch("pattern backreference", `{"pattern":"(a)\\1"}`, 400),
		sch("pattern lookahead", `{"pattern":"a(?=b)"}`, 400),
		sch("pattern lookbehind", `{"pattern":"(?<=a)b"}`, 400),
		sch("pattern possessive", `{"pattern":"a++"}`, 400),
		sch("pattern unclosed", `{"pattern":"("}`, 400),
		sch("pattern a number", `{"pattern":1}`, 400),
		sch("pattern nested repetition", `{"pattern":"((a{100}){100}){100}"}`, 400),
		sch("format a number", `{"format":1}`, 400),
		sch("enum of equal items", `{"enum":[`+many("1", 30000)+`]}`, 400),
		sch("enum of objects past the subschema limit", `{"enum":[`+many(`{}`, 10001)+`]}`, 413),
		// Stored, with what other engines backtrack on: RE2 does not.
		sch("enum of 30000 numbers", `{"enum":[`+numbers+`]}`, 200),
		sch("pattern (a+)+$", `{"type":"string","pattern":"(a+)+$"}`, 200),
		sch("format unknown", `{"format":"nope"}`, 200),
		{name: "put id dots", method: "PUT", path: "/schema/..", body: `{}`, want: 400},
		{name: "put id with dots", method: "PUT", path: "/schema/a..b", body: `{}`, want: 400},
		{name: "put id encoded slash", method: "PUT", path: "/schema/a%2Fb", body: `{}`, want: 400},
		{name: "put id NUL", method: "PUT", path: "/schema/a%00", body: `{}`, want: 400},
		{name: "put id invalid UTF-8", method: "PUT", path: "/schema/%FF", body: `{}`, want: 400},
		{name: "put id 129 characters", method: "PUT", path: "/schema/" + strings.Repeat("s", 129), body: `{}`, want: 400},
		{name: "put id leading dot", method: "PUT", path: "/schema/.s", body: `{}`, want: 400},
		{name: "put id with a space", method: "PUT", path: "/schema/a%20b", body: `{}`, want: 400},
		{name: "put read key", method: "PUT", path: "/schema/h.v1", body: `{}`, token: k.read, want: 403},
		{name: "put scoped key, bound elsewhere", method: "PUT", path: "/schema/s.v1", body: `{}`, token: k.scoped, want: 403},
		{name: "put no credential", method: "PUT", path: "/schema/h.v1", body: `{}`, token: "-", want: 401},
		{name: "get no such schema", method: "GET", path: "/schema/nope.v1", token: "-", want: 404},
		{name: "get id dots", method: "GET", path: "/schema/%2E%2E", token: "-", want: 400},
		{name: "get id encoded slash", method: "GET", path: "/schema/..%2F_auth%2Fkeys", token: "-", want: 400},
		{name: "get id NUL", method: "GET", path: "/schema/s.v1%00", token: "-", want: 400},
		{name: "get id overlong", method: "GET", path: "/schema/" + strings.Repeat("s", 5000), token: "-", want: 400},
		{name: "get id empty", method: "GET", path: "/schema/", token: "-", want: 400},
		{name: "get id reserved", method: "GET", path: "/schema/_meta", token: "-", want: 400},
		{name: "delete no such schema", method: "DELETE", path: "/schema/nope.v1", want: 404},
		{name: "delete bound schema", method: "DELETE", path: "/schema/s.v1", want: 409, readBack: "/schema/s.v1"},
		{name: "delete id encoded slash", method: "DELETE", path: "/schema/a%2Fb", want: 400},
		{name: "validate no such schema", method: "POST", path: "/schema/nope.v1/validate", body: `{}`, want: 404},
		{name: "validate not JSON", method: "POST", path: "/schema/s.v1/validate", body: `{`, want: 400},
		{name: "validate nested too deep", method: "POST", path: "/schema/s.v1/validate", body: strings.Repeat("[", 100) + strings.Repeat("]", 100), want: 413},
		{name: "validate huge number", method: "POST", path: "/schema/s.v1/validate", body: `{"n":1e1000001}`, want: 413},
		bind("no such schema", "sdb", `{"schema":"nope.v1"}`, 400),
		bind("schema a path", "sdb", `{"schema":"../s.v1"}`, 400),
		bind("schema a number", "sdb", `{"schema":1}`, 400),
		bind("schema an object", "sdb", `{"schema":{"type":"object"}}`, 400),
		bind("schema NUL", "sdb", `{"schema":"s.v1\u0000"}`, 400),
		bind("schema overlong", "sdb", `{"schema":"`+strings.Repeat("s", 129)+`"}`, 400),
		bind("empty object", "sdb", `{}`, 400),
		bind("empty body", "sdb", ``, 400),
		bind("null", "sdb", `null`, 400),
		bind("an array", "sdb", `["s.v1"]`, 400),
		bind("a string", "sdb", `"s.v1"`, 400),
		bind("unknown member", "sdb", `{"schema":"s.v1","validate":true}`, 400),
		bind("trailing garbage", "sdb", `{"schema":"s.v1"} x`, 400),
		bind("invalid UTF-8", "sdb", "{\"schema\":\"s.v1\xff\"}", 400),
		bind("db encoded slash", "s%2Fdb", `{"schema":"s.v1"}`, 400),
		bind("db dots", "%2E%2E", `{"schema":"s.v1"}`, 400),
		bind("db reserved", "_meta", `{"schema":"s.v1"}`, 400),
		bind("db overlong", strings.Repeat("d", 65), `{"schema":"s.v1"}`, 400),
		{name: "bind read key", method: "PUT", path: "/api/databases/sdb", body: `{"schema":"s.v1"}`, token: k.read, want: 403},
		{name: "bind scoped key", method: "PUT", path: "/api/databases/sdb", body: `{"schema":"s.v1"}`, token: k.scoped, want: 403},
		{name: "get database, no such db", method: "GET", path: "/api/databases/nosuchdb", want: 404},
		{name: "get database, encoded slash", method: "GET", path: "/api/databases/a%2Fb", want: 400},
		{name: "get database, scoped key", method: "GET", path: "/api/databases/sdb", token: k.scoped, want: 403},
		// Binding does not check what is stored (API.md): "k" lacks "n".
		bind("while documents do not match", "sdb", `{"schema":"s.v1"}`, 200),
		{name: "write after binding", method: "PUT", path: "/entity/sdb", body: `{"j":{"m":1}}`, want: 400, readBack: "/entity/sdb?key=k"},
		{name: "patch after binding", method: "PATCH", path: "/entity/sdb?key=k", body: `{"m":1}`, hdr: map[string]string{"Content-Type": ctMergePatch}, want: 400, readBack: "/entity/sdb?key=k"},
		{name: "delete schema after binding", method: "DELETE", path: "/schema/s.v1", want: 409},
	}
	runHostile(t, ts, logs, cases, hostileSecret, k.read, k.scoped)
	if n := fetched.Load(); n != 0 {
		t.Errorf("the server fetched %d remote documents for $refs", n)
	}
}

// grpcHostileCase is one hostile call of the client port's Process and
// the code it must get.
type grpcHostileCase struct {
	name string
	req  *pb.ProcessRequest
	// md is the call's metadata, key and value pairs.
	md   []string
	want codes.Code
}

// TestHostileGRPC sweeps /deltadb.MainWorker/Process (clientport.go's
// client server): operation strings of every kind, credentials missing,
// doubled or of the wrong kind, bad names, payloads over the budgets or
// not JSON, schema IDs that do not exist, patches and preconditions.
// Each failure is its gRPC code with one sentence, storage unchanged and
// the document read back unchanged; no secret reaches the log.
func TestHostileGRPC(t *testing.T) {
	ts, logs := hostileServer(t, authConfig{maxFailures: -1})
	k := newHostileKeys(t, ts)
	svc := newMainService(mainServiceOptions{auth: ts.auth, data: ts.rest.data, maxMsg: 4 << 20,
		log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ts.mustDo(t, "PUT", "/schema/g.v1", testAdminKey, `{"type":"object","required":["n"],"properties":{"n":{"type":"number"}}}`, 200)
	ts.mustDo(t, "PUT", "/entity/gdb", testAdminKey, `{"k":{"n":1,"s":"`+hostileSecret+`"}}`, 200)
	ts.mustDo(t, "PUT", "/entity/gbound", testAdminKey, `{"k":{"n":1}}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/gbound", testAdminKey, `{"schema":"g.v1"}`, 200)
	etag := strings.Trim(ts.do("GET", "/entity/gdb?key=k", testAdminKey, "", "").Header().Get("ETag"), `"`)
	call := func(op string, change ...func(r *pb.ProcessRequest)) *pb.ProcessRequest {
		r := &pb.ProcessRequest{DatabaseName: "gdb", EntityKey: "k", Operation: op, Token: testAdminKey}
		for _, c := range change {
			c(r)
		}
		return r
	}
	db := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.DatabaseName = v } }
	key := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.EntityKey = v } }
	token := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.Token = v } }
	payload := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.Payload = []byte(v) } }
	schema := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.SchemaId = v } }
	ct := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.ContentType = v } }
	ifMatch := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.IfMatch = v } }
	ifNone := func(v string) func(*pb.ProcessRequest) { return func(r *pb.ProcessRequest) { r.IfNoneMatch = v } }
	merge, jpatch := ct(ctMergePatch), ct(ctJSONPatch)
	big := `{"s":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []grpcHostileCase{
		{"operation empty", call(""), nil, codes.InvalidArgument},
		{"operation lower case", call("get"), nil, codes.InvalidArgument},
		{"operation mixed case", call("Put", payload(`{}`)), nil, codes.InvalidArgument},
		{"operation with a space", call("GET "), nil, codes.InvalidArgument},
		{"operation with a NUL", call("GET\x00"), nil, codes.InvalidArgument},
		{"operation POST", call("POST", payload(`{}`)), nil, codes.InvalidArgument},
		{"operation HEAD", call("HEAD"), nil, codes.InvalidArgument},
		{"operation FIND", call("FIND", payload(`{"selector":{}}`)), nil, codes.InvalidArgument},
		{"operation SCAN", call("SCAN"), nil, codes.InvalidArgument},
		{"operation UNDELETE", call("UNDELETE"), nil, codes.InvalidArgument},
		{"operation DESTROY", call("DESTROY"), nil, codes.InvalidArgument},
		{"operation an enum number", call("1", payload(`{}`)), nil, codes.InvalidArgument},
		{"operation overlong", call(strings.Repeat("G", 10000)), nil, codes.InvalidArgument},
		{"operation, no credential", call("FROB", token("")), nil, codes.Unauthenticated},
		{"no credential", call("GET", token("")), nil, codes.Unauthenticated},
		{"unknown key", call("GET", token("dk_"+strings.Repeat("A", 43))), nil, codes.Unauthenticated},
		{"huge token", call("GET", token(strings.Repeat("t", 100<<10))), nil, codes.Unauthenticated},
		{"token with a NUL", call("GET", token(testAdminKey+"\x00")), nil, codes.Unauthenticated},
		{"empty bearer metadata", call("GET", token("")), []string{"authorization", "Bearer "}, codes.Unauthenticated},
		{"two authorization values", call("GET", token("")), []string{"authorization", "Bearer " + testAdminKey, "authorization", "Bearer " + k.read}, codes.InvalidArgument},
		{"token and other metadata", call("GET"), []string{"authorization", "Bearer " + k.read}, codes.InvalidArgument},
		{"read key writes", call("PUT", token(k.read), payload(`{"n":2}`)), nil, codes.PermissionDenied},
		{"read key patches", call("PATCH", token(k.read), merge, payload(`{}`)), nil, codes.PermissionDenied},
		{"read key deletes", call("DELETE", token(k.read)), nil, codes.PermissionDenied},
		{"write key reads", call("GET", token(k.write)), nil, codes.PermissionDenied},
		{"write key tests", call("PATCH", token(k.write), jpatch, payload(`[{"op":"test","path":"/s","value":"x"}]`)), nil, codes.PermissionDenied},
		{"write key picks a schema", call("PATCH", token(k.write), merge, payload(`{}`), schema("g.v1")), nil, codes.PermissionDenied},
		{"scoped key", call("GET", token(k.scoped)), nil, codes.PermissionDenied},
		{"scoped session, no such db", call("PUT", token(k.scopedSess), db("nosuchdb"), payload(`{}`)), nil, codes.PermissionDenied},
		{"db empty", call("GET", db("")), nil, codes.InvalidArgument},
		{"db a path", call("GET", db("../gdb")), nil, codes.InvalidArgument},
		{"db with a slash", call("PUT", db("a/b"), payload(`{}`)), nil, codes.InvalidArgument},
		{"db reserved", call("PUT", db("_auth"), payload(`{}`)), nil, codes.InvalidArgument},
		{"db NUL", call("GET", db("gdb\x00")), nil, codes.InvalidArgument},
		{"db 65 characters", call("GET", db(strings.Repeat("d", 65))), nil, codes.InvalidArgument},
		{"db invalid UTF-8", call("GET", db("g\xff")), nil, codes.InvalidArgument},
		{"key empty", call("GET", key("")), nil, codes.InvalidArgument},
		{"key a path", call("PUT", key("../k"), payload(`{}`)), nil, codes.InvalidArgument},
		{"key backslash", call("DELETE", key(`a\b`)), nil, codes.InvalidArgument},
		{"key dots", call("GET", key("..")), nil, codes.InvalidArgument},
		{"key control", call("PUT", key("a\x01"), payload(`{}`)), nil, codes.InvalidArgument},
		{"key 257 bytes", call("PUT", key(strings.Repeat("k", 257)), payload(`{}`)), nil, codes.InvalidArgument},
		{"key invalid UTF-8", call("PUT", key("k\xff"), payload(`{}`)), nil, codes.InvalidArgument},
		{"no such key", call("GET", key("nope")), nil, codes.NotFound},
		{"no such db", call("GET", db("nosuchdb")), nil, codes.NotFound},
		{"delete no such key", call("DELETE", key("nope")), nil, codes.NotFound},
		{"put no payload", call("PUT"), nil, codes.InvalidArgument},
		{"put not JSON", call("PUT", payload(`{"n":`)), nil, codes.InvalidArgument},
		{"put trailing garbage", call("PUT", payload(`{} {}`)), nil, codes.InvalidArgument},
		{"put invalid UTF-8", call("PUT", payload("{\"s\":\"\xff\"}")), nil, codes.InvalidArgument},
		{"put lone surrogate", call("PUT", payload(`{"s":"\ud800"}`)), nil, codes.InvalidArgument},
		{"put raw NUL", call("PUT", payload("{\"s\":\"\x00\"}")), nil, codes.InvalidArgument},
		{"put BOM", call("PUT", payload("\ufeff{}")), nil, codes.InvalidArgument},
		{"put over the document limit", call("PUT", payload(big)), nil, codes.ResourceExhausted},
		{"put nested too deep", call("PUT", payload(strings.Repeat("[", 65)+strings.Repeat("]", 65))), nil, codes.ResourceExhausted},
		{"put nested very deep", call("PUT", payload(strings.Repeat("[", 100000)+strings.Repeat("]", 100000))), nil, codes.ResourceExhausted},
		{"put no such schema", call("PUT", payload(`{"n":1}`), schema("nope.v1")), nil, codes.InvalidArgument},
		{"put schema a path", call("PUT", payload(`{"n":1}`), schema("../g.v1")), nil, codes.InvalidArgument},
		{"put schema NUL", call("PUT", payload(`{"n":1}`), schema("g.v1\x00")), nil, codes.InvalidArgument},
		{"put the schema refuses", call("PUT", payload(`{"m":1}`), schema("g.v1")), nil, codes.InvalidArgument},
		{"put the bound schema refuses", call("PUT", db("gbound"), payload(`{"n":"one"}`)), nil, codes.InvalidArgument},
		{"put a huge number, bound", call("PUT", db("gbound"), payload(`{"n":1e1000001}`)), nil, codes.ResourceExhausted},
		{"put If-Match stale", call("PUT", payload(`{"n":2}`), ifMatch("0000")), nil, codes.FailedPrecondition},
		{"put If-Match quoted", call("PUT", payload(`{"n":2}`), ifMatch(`"`+etag+`"`)), nil, codes.InvalidArgument},
		{"put If-Match weak", call("PUT", payload(`{"n":2}`), ifMatch("W/"+etag)), nil, codes.FailedPrecondition},
		{"put If-Match empty item", call("PUT", payload(`{"n":2}`), ifMatch(",")), nil, codes.InvalidArgument},
		{"put If-Match star, no such key", call("PUT", key("nope"), payload(`{}`), ifMatch("*")), nil, codes.FailedPrecondition},
		{"put If-Match star, no such db", call("PUT", db("nodb6"), payload(`{}`), ifMatch("*")), nil, codes.FailedPrecondition},
		{"put If-None-Match star", call("PUT", payload(`{"n":2}`), ifNone("*")), nil, codes.FailedPrecondition},
		{"put If-None-Match current", call("PUT", payload(`{"n":2}`), ifNone("x,"+etag)), nil, codes.FailedPrecondition},
		{"patch no content type", call("PATCH", payload(`{}`)), nil, codes.InvalidArgument},
		{"patch application/json", call("PATCH", ct("application/json"), payload(`{}`)), nil, codes.InvalidArgument},
		{"patch content type with a NUL", call("PATCH", ct(ctMergePatch+"\x00"), payload(`{}`)), nil, codes.InvalidArgument},
		{"patch no payload", call("PATCH", jpatch), nil, codes.InvalidArgument},
		{"patch null", call("PATCH", jpatch, payload(`null`)), nil, codes.InvalidArgument},
		{"patch not JSON", call("PATCH", merge, payload(`{`)), nil, codes.InvalidArgument},
		{"patch unknown op", call("PATCH", jpatch, payload(`[{"op":"frob","path":"/n"}]`)), nil, codes.InvalidArgument},
		{"patch remove missing", call("PATCH", jpatch, payload(`[{"op":"remove","path":"/nope"}]`)), nil, codes.Aborted},
		{"patch test fails", call("PATCH", jpatch, payload(`[{"op":"add","path":"/z","value":1},{"op":"test","path":"/n","value":2}]`)), nil, codes.Aborted},
		{"patch remove -", call("PATCH", jpatch, payload(`[{"op":"remove","path":"/s/-"}]`)), nil, codes.Aborted},
		{"patch too many operations", call("PATCH", jpatch, payload("["+strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"/n","value":1},`, 1001), ",")+"]")), nil, codes.ResourceExhausted},
		{"patch over the document limit", call("PATCH", merge, payload(big)), nil, codes.ResourceExhausted},
		{"patch nested too deep", call("PATCH", merge, payload(`{"x":`+strings.Repeat("[", 64)+strings.Repeat("]", 64)+`}`)), nil, codes.ResourceExhausted},
		{"patch no such key", call("PATCH", merge, key("nope"), payload(`{}`)), nil, codes.NotFound},
		{"patch no such db", call("PATCH", merge, db("nodb7"), payload(`{}`)), nil, codes.NotFound},
		{"patch no such schema", call("PATCH", merge, payload(`{}`), schema("nope.v1")), nil, codes.InvalidArgument},
		{"patch the bound schema refuses", call("PATCH", merge, db("gbound"), payload(`{"n":null}`)), nil, codes.InvalidArgument},
		{"patch If-Match stale", call("PATCH", merge, payload(`{}`), ifMatch("0000")), nil, codes.FailedPrecondition},
		{"patch If-None-Match star", call("PATCH", merge, payload(`{}`), ifNone("*")), nil, codes.FailedPrecondition},
		{"delete If-Match stale", call("DELETE", ifMatch("0000")), nil, codes.FailedPrecondition},
		{"delete If-None-Match current", call("DELETE", ifNone(etag)), nil, codes.FailedPrecondition},
		{"put If-Match with a space", call("PUT", payload(`{"n":2}`), ifMatch("0000, 1111")), nil, codes.FailedPrecondition},
		{"put If-Match a quote inside", call("PUT", payload(`{"n":2}`), ifMatch(`a"b`)), nil, codes.InvalidArgument},
		{"put If-Match star in a list", call("PUT", payload(`{"n":2}`), ifMatch("*,0000")), nil, codes.FailedPrecondition},
		{"put If-None-Match empty item", call("PUT", payload(`{"n":2}`), ifNone(etag+",")), nil, codes.InvalidArgument},
		{"put If-Match a control character", call("PUT", payload(`{"n":2}`), ifMatch("a\x01")), nil, codes.InvalidArgument},
		// Last: on the old code it deleted the entity (" v" is not "v").
		{"delete If-None-Match current after a space", call("DELETE", ifNone("x, "+etag)), nil, codes.FailedPrecondition},
	}
	for _, c := range cases {
		before := storeDigest(t, ts.st)
		readBefore := ts.do("GET", "/entity/gdb?key=k", testAdminKey, "", "").Body.String()
		ctx := t.Context()
		if len(c.md) > 0 {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(c.md...))
		}
		start := time.Now()
		_, err := svc.Process(ctx, c.req)
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v", c.name, d)
		}
		s := status.Convert(err)
		if s.Code() != c.want {
			t.Errorf("%s: %v %q, want %v", c.name, s.Code(), s.Message(), c.want)
		}
		if err == nil {
			continue
		}
		body, _ := json.Marshal(map[string]string{"error": s.Message()})
		checkHostileBody(t, c.name, body)
		if after := storeDigest(t, ts.st); !maps.Equal(before, after) {
			t.Errorf("%s: refused (%v) but storage changed: %v", c.name, s.Code(), digestDiff(before, after))
		}
		if after := ts.do("GET", "/entity/gdb?key=k", testAdminKey, "", "").Body.String(); after != readBefore {
			t.Errorf("%s: refused (%v) but the document changed: %.200s", c.name, s.Code(), after)
		}
	}
	for _, secret := range []string{hostileSecret, k.read, k.write, k.scoped, k.scopedSess, testAdminKey} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}
