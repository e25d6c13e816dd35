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
	"io/fs"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
				t.Errorf("%s: refused (%d) but storage changed", what, rec.Code)
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
