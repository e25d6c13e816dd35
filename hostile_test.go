package main

// Hostile-input sweeps of the change feed, entity versions, find,
// export and import, the audit log, key jobs and entity checks, and OIDC
// bearer tokens: each table sends inputs an attacker would (wrong types,
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
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		out[p] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

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
		if rec.Code >= 400 {
			checkHostileBody(t, what, rec.Body.Bytes())
			if after := storeDigest(t, ts.st); !maps.Equal(before, after) {
				t.Errorf("%s: refused (%d) but storage changed: %v", what, rec.Code, digestDiff(before, after))
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
		// A backslash before no dot is dropped, as CouchDB's parse_field does.
		find("path trailing escape", `{"selector":{"a\\":1}}`, 200),
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
