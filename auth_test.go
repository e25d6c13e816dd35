package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// authTestStart is the test clock's start.
var authTestStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// authTestServer is a REST server in-process over a temporary fs store
// (or the store given to newAuthTestServerOn), with the admin key
// testAdminKey and a settable clock.
type authTestServer struct {
	rest  *restServer
	auth  *authenticator
	st    store
	clock *fakeClock
}

// newAuthTestServer builds the server as runAll does. cfg's adminKey, st
// and now are filled in; the rest of cfg is passed on.
func newAuthTestServer(t *testing.T, cfg authConfig) *authTestServer {
	t.Helper()
	return newAuthTestServerOn(t, cfg, newTestFSStore(t))
}

// newAuthTestServerOn is newAuthTestServer over st; extra change the
// REST server's options (an audit log) before it is built.
func newAuthTestServerOn(t *testing.T, cfg authConfig, st store, extra ...func(*restOptions)) *authTestServer {
	t.Helper()
	clock := &fakeClock{t: authTestStart}
	cfg.adminKey, cfg.st, cfg.now = testAdminKey, st, clock.now
	auth, err := newAuthenticator(context.Background(), cfg)
	if err != nil {
		t.Fatalf("newAuthenticator() = %v", err)
	}
	ring, err := newKeyring(st, make([]byte, 32), "test-key")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	schemas := newSchemaRegistry(st, budgets{})
	w := newWorker("w1", st, schemas, newLRU[string, cachedEntity](64, 0, nil), budgets{}, log, nil)
	w.setKeys(ring)
	cat := newCatalog(st)
	rt := newRouter(log, time.Now, 0, cat.wrote, nil)
	rt.add(&workerConn{id: w.id, proc: w, stats: w.stats})
	data := newDataPlane(rt, cat, schemas, budgets{})
	data.feed = testFeed(t, rt, st)
	o := restOptions{auth: auth, data: data, workers: rt.list, maxBody: 1 << 20,
		jobs:          newKeyJobs(t.Context(), keyJobsConfig{st: st, ring: ring, log: log, barrier: func(context.Context, uint64) error { return nil }}),
		keyChecked:    true,
		auditNamesKey: testAuditKeys(t).names, ctx: t.Context(), log: log}
	for _, f := range extra {
		f(&o)
	}
	rest := newRESTServer(o)
	t.Cleanup(rest.checks.stop)
	return &authTestServer{rest: rest, auth: auth, st: st, clock: clock}
}

// do sends one request from remote ("" keeps httptest's 192.0.2.1:1234).
func (ts *authTestServer) do(method, path, token, body, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if remote != "" {
		req.RemoteAddr = remote
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	ts.rest.ServeHTTP(rec, req)
	return rec
}

// doWith sends one request with Content-Type ct ("" for none).
func (ts *authTestServer) doWith(method, path, token, body, ct string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	ts.rest.ServeHTTP(rec, req)
	return rec
}

// mustDo sends one request and fails the test unless it answers want.
func (ts *authTestServer) mustDo(t *testing.T, method, path, token, body string, want int) []byte {
	t.Helper()
	rec := ts.do(method, path, token, body, "")
	if rec.Code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, rec.Code, rec.Body, want)
	}
	return rec.Body.Bytes()
}

// createKey creates an API key with the admin key.
func (ts *authTestServer) createKey(t *testing.T, body string) newKey {
	t.Helper()
	var k newKey
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/keys", testAdminKey, body, 201), &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// login exchanges key for a session.
func (ts *authTestServer) login(t *testing.T, key string) sessionGrant {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key})
	var g sessionGrant
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/login", "", string(body), 200), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// countingReader yields the bytes 0, 1, 2, ... so secrets are predictable.
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

func TestParseExpiresIn(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"24h", 24 * time.Hour},
		{"30d", 30 * 24 * time.Hour},
		{"1d", 24 * time.Hour},
		{"1s", time.Second},
		{"1h30m", 90 * time.Minute},
		{"36500d", 36500 * 24 * time.Hour},
	} {
		if got, err := parseExpiresIn(c.in); err != nil || got != c.want {
			t.Errorf("parseExpiresIn(%q) = %v, %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "d", "0d", "-1d", "1.5d", "36501d", "99999999999999999999d", "0s", "-1h", "soon", "1w", "24"} {
		if _, err := parseExpiresIn(in); !errors.Is(err, errInvalid) {
			t.Errorf("parseExpiresIn(%q) error = %v, want errInvalid", in, err)
		}
	}
}

// TestCreateKeyExact: with pinned randomness and clock the answer of POST
// /api/keys is exact, the secret is dk_ + 256 bits, and neither the
// listing nor the stored object holds the secret.
func TestCreateKeyExact(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{rand: &countingReader{}})
	k := ts.createKey(t, `{"name":"ci bot","permissions":["write","read","read"],"expires_in":"30d","databases":["chatdb","users_*"]}`)
	seq := make([]byte, 40)
	(&countingReader{}).Read(seq)
	wantSecret := "dk_" + base64.RawURLEncoding.EncodeToString(seq[:32])
	if k.Secret != wantSecret {
		t.Errorf("secret = %q, want %q", k.Secret, wantSecret)
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k.Secret, "dk_")); len(raw) != 32 {
		t.Errorf("secret carries %d random bytes, want 32", len(raw))
	}
	wantExp := authTestStart.Add(30 * 24 * time.Hour)
	if k.ID != "key_"+hex.EncodeToString(seq[32:40]) || k.Name != "ci bot" || !slices.Equal(k.Permissions, []string{"read", "write"}) ||
		!k.CreatedAt.Equal(authTestStart) || k.ExpiresAt == nil || !k.ExpiresAt.Equal(wantExp) ||
		!slices.Equal(k.Databases, []string{"chatdb", "users_*"}) {
		t.Errorf("created key = %+v", k)
	}

	list := ts.mustDo(t, "GET", "/api/keys", testAdminKey, "", 200)
	var infos []map[string]any
	if err := json.Unmarshal(list, &infos); err != nil || len(infos) != 1 {
		t.Fatalf("GET /api/keys = %s", list)
	}
	var fields []string
	for f := range infos[0] {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	if want := []string{"created_at", "databases", "expires_at", "id", "last_used_at", "name", "permissions"}; !slices.Equal(fields, want) {
		t.Errorf("GET /api/keys fields = %v, want %v", fields, want)
	}
	stored, err := ts.st.Get(context.Background(), authKeysObject)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256Hex(k.Secret)
	for what, b := range map[string][]byte{"GET /api/keys": list, "key store": stored} {
		if bytes.Contains(b, []byte(strings.TrimPrefix(k.Secret, "dk_"))) {
			t.Errorf("%s contains the secret", what)
		}
	}
	if bytes.Contains(list, []byte(sum)) {
		t.Error("GET /api/keys contains the secret's hash")
	}
	if !bytes.Contains(stored, []byte(sum)) {
		t.Errorf("key store %s does not hold the secret's SHA-256", stored)
	}
}

// TestCreateKeyErrors: every malformed POST /api/keys is a 400 that
// creates nothing.
func TestCreateKeyErrors(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	for _, body := range []string{
		`not json`,
		`{}`,
		`{"permissions":["read"]}`,
		`{"name":"","permissions":["read"]}`,
		`{"name":"a\u0007b","permissions":["read"]}`,
		`{"name":"` + strings.Repeat("n", 129) + `","permissions":["read"]}`,
		`{"name":"x"}`,
		`{"name":"x","permissions":[]}`,
		`{"name":"x","permissions":["root"]}`,
		`{"name":"x","permissions":["read","Write"]}`,
		`{"name":"x","permissions":"read"}`,
		`{"name":"x","permissions":["read"],"expires_in":"soon"}`,
		`{"name":"x","permissions":["read"],"expires_in":"-1h"}`,
		`{"name":"x","permissions":["read"],"expires_in":"0d"}`,
		// An unset variable is refused, as at an edit, not a key that
		// never expires.
		`{"name":"x","permissions":["read"],"expires_in":""}`,
		// C1 controls (U+0080 to U+009F) are control characters too.
		`{"name":"a\u0085b","permissions":["read"]}`,
		`{"name":"x","permissions":["read"],"databases":[]}`,
		`{"name":"x","permissions":["read"],"databases":["bad db"]}`,
		`{"name":"x","permissions":["read"],"databases":["..*"]}`,
		`{"name":"x","permissions":["read"],"databases":["a*b"]}`,
		`{"name":"x","permissions":["read"],"databases":["**"]}`,
		`{"name":"x","permissions":["read"],"extra":1}`,
		`{"name":"x","permissions":["read"]} {}`,
	} {
		rec := ts.do("POST", "/api/keys", testAdminKey, body, "")
		if rec.Code != 400 {
			t.Errorf("POST /api/keys %s = %d %s, want 400", body, rec.Code, rec.Body)
		}
		checkErrorBody(t, "POST /api/keys "+body, rec)
	}
	if got := ts.mustDo(t, "GET", "/api/keys", testAdminKey, "", 200); strings.TrimSpace(string(got)) != "[]" {
		t.Errorf("after only bad requests GET /api/keys = %s, want []", got)
	}
	if _, err := ts.st.Get(context.Background(), authKeysObject); !errors.Is(err, errNotFound) {
		t.Errorf("after only bad requests the key store exists (err %v)", err)
	}
}

// TestLoginAndMe: sessions of the admin key and of API keys, their
// lifetime, and what /api/me says.
func TestLoginAndMe(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{clientTTL: time.Hour})
	admin := ts.login(t, testAdminKey)
	if !strings.HasPrefix(admin.Token, "ds_") || admin.ClientID != "admin" ||
		!slices.Equal(admin.Permissions, []string{"read", "write", "admin"}) || !admin.ExpiresAt.Equal(authTestStart.Add(time.Hour)) {
		t.Errorf("admin login = %+v", admin)
	}
	me := ts.mustDo(t, "GET", "/api/me", admin.Token, "", 200)
	if want := `{"client_id":"admin","name":"admin","permissions":["read","write","admin"],"is_admin":true}`; strings.TrimSpace(string(me)) != want {
		t.Errorf("GET /api/me (admin session) = %s, want %s", me, want)
	}

	rk := ts.createKey(t, `{"name":"r","permissions":["read"]}`)
	short := ts.createKey(t, `{"name":"s","permissions":["write"],"expires_in":"10m"}`)
	rs := ts.login(t, rk.Secret)
	if rs.ClientID != rk.ID || !slices.Equal(rs.Permissions, []string{"read"}) {
		t.Errorf("read key login = %+v", rs)
	}
	me = ts.mustDo(t, "GET", "/api/me", rs.Token, "", 200)
	if want := `{"client_id":"` + rk.ID + `","name":"r","permissions":["read"],"is_admin":false}`; strings.TrimSpace(string(me)) != want {
		t.Errorf("GET /api/me (read session) = %s, want %s", me, want)
	}
	ss := ts.login(t, short.Secret)
	if !ss.ExpiresAt.Equal(authTestStart.Add(10 * time.Minute)) {
		t.Errorf("session of a key expiring in 10m expires at %v, want the key's expiry", ss.ExpiresAt)
	}
	// A session carries at most its key's permissions.
	ts.mustDo(t, "PUT", "/entity/db", rs.Token, `{"k":1}`, 403)
	ts.mustDo(t, "GET", "/api/keys", rs.Token, "", 403)

	ts.clock.advance(10 * time.Minute)
	ts.mustDo(t, "GET", "/api/me", ss.Token, "", 401)
	ts.mustDo(t, "GET", "/api/me", rs.Token, "", 200)
	ts.clock.advance(50 * time.Minute)
	ts.mustDo(t, "GET", "/api/me", rs.Token, "", 401)
	ts.mustDo(t, "GET", "/api/me", admin.Token, "", 401)
	ts.mustDo(t, "GET", "/api/me", rk.Secret, "", 200)

	for _, c := range []struct {
		body string
		want int
	}{
		{`nope`, 400},
		{`{}`, 400},
		{`{"key":""}`, 400},
		{`{"key":1}`, 400},
		{`{"key":"x","extra":1}`, 400},
		{`{"key":"dk_unknown"}`, 401},
		{`{"key":"` + admin.Token + `"}`, 401},  // a session token is not a key
		{`{"key":"` + short.Secret + `"}`, 401}, // expired
	} {
		rec := ts.do("POST", "/api/login", "", c.body, "")
		if rec.Code != c.want {
			t.Errorf("POST /api/login %s = %d %s, want %d", c.body, rec.Code, rec.Body, c.want)
		}
		checkErrorBody(t, "POST /api/login "+c.body, rec)
	}
}

// TestDeleteKeyRevokesSessions: deleting a key ends the key and every
// session made from it; deleting it again is a 404.
func TestDeleteKeyRevokesSessions(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	k := ts.createKey(t, `{"name":"k","permissions":["read","write"]}`)
	other := ts.createKey(t, `{"name":"o","permissions":["read"]}`)
	s1, s2 := ts.login(t, k.Secret), ts.login(t, k.Secret)
	so := ts.login(t, other.Secret)
	ts.mustDo(t, "PUT", "/entity/db", s1.Token, `{"k":1}`, 200)
	ts.mustDo(t, "DELETE", "/api/keys/"+k.ID, testAdminKey, "", 200)
	for _, cred := range []string{k.Secret, s1.Token, s2.Token} {
		ts.mustDo(t, "GET", "/entity/db?key=k", cred, "", 401)
	}
	ts.mustDo(t, "GET", "/entity/db?key=k", so.Token, "", 200)
	ts.mustDo(t, "DELETE", "/api/keys/"+k.ID, testAdminKey, "", 404)
	var list []keyInfo
	json.Unmarshal(ts.mustDo(t, "GET", "/api/keys", testAdminKey, "", 200), &list)
	if len(list) != 1 || list[0].ID != other.ID {
		t.Errorf("after delete GET /api/keys = %+v, want only %s", list, other.ID)
	}
}

// TestScopedKey: a key limited to databases works inside them, gets 403
// outside, sees only its databases, and cannot manage keys even with the
// admin permission; its sessions carry the same limit.
func TestScopedKey(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/other", testAdminKey, `{"x":1}`, 200)
	k := ts.createKey(t, `{"name":"scoped","permissions":["read","write","admin"],"databases":["chatdb","users_*"]}`)
	s := ts.login(t, k.Secret)
	for _, cred := range []string{k.Secret, s.Token} {
		ts.mustDo(t, "PUT", "/entity/chatdb", cred, `{"a":1}`, 200)
		ts.mustDo(t, "PUT", "/entity/users_eu", cred, `{"a":1}`, 200)
		ts.mustDo(t, "GET", "/entity/users_eu?key=a", cred, "", 200)
		ts.mustDo(t, "PUT", "/entity/chatdb2", cred, `{"a":1}`, 403)
		ts.mustDo(t, "GET", "/entity/other?key=x", cred, "", 403)
		ts.mustDo(t, "DELETE", "/entity/other?key=x", cred, "", 403)
		ts.mustDo(t, "GET", "/api/keys", cred, "", 403)
		ts.mustDo(t, "POST", "/api/keys", cred, `{"name":"esc","permissions":["admin"]}`, 403)
		ts.mustDo(t, "DELETE", "/api/keys/"+k.ID, cred, "", 403)
		if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/api/databases", cred, "", 200))); got != `["chatdb","users_eu"]` {
			t.Errorf("GET /api/databases (scoped) = %s, want [\"chatdb\",\"users_eu\"]", got)
		}
		me := ts.mustDo(t, "GET", "/api/me", cred, "", 200)
		if !strings.Contains(string(me), `"databases":["chatdb","users_*"]`) {
			t.Errorf("GET /api/me (scoped) = %s, want its databases", me)
		}
	}
	if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/api/databases", testAdminKey, "", 200))); got != `["chatdb","other","users_eu"]` {
		t.Errorf("GET /api/databases (admin) = %s", got)
	}
}

// TestFailedAuthRateLimit: past maxFailures failures in the window an
// address gets 429 with Retry-After for every failing credential, on every
// authenticated route and on login; other addresses are not affected; the
// window ends. (Valid credentials: TestFailedAuthLockoutSparesValidKey.)
func TestFailedAuthRateLimit(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 3, failWindow: time.Minute})
	const bad, good = "198.51.100.7:4000", "198.51.100.8:4000"
	ts.do("GET", "/api/me", "", "", bad) // no credential: not a guess
	for i := range 3 {
		if rec := ts.do("GET", "/entity/db?key=k", fmt.Sprintf("dk_guess%d", i), "", bad); rec.Code != 401 {
			t.Fatalf("guess %d = %d, want 401", i, rec.Code)
		}
	}
	ts.clock.advance(20 * time.Second)
	for _, r := range []struct{ method, path, token, body string }{
		{"GET", "/api/me", "dk_guess", ""},
		{"GET", "/entity/db?key=k", "ds_forged", ""},
		{"POST", "/api/login", "", `{"key":"dk_guess"}`},
	} {
		rec := ts.do(r.method, r.path, r.token, r.body, bad)
		if rec.Code != 429 || rec.Header().Get("Retry-After") != "40" {
			t.Errorf("%s %s when limited = %d Retry-After %q, want 429 and 40", r.method, r.path, rec.Code, rec.Header().Get("Retry-After"))
		}
		checkErrorBody(t, "limited "+r.path, rec)
	}
	if rec := ts.do("GET", "/api/me", "dk_guess", "", good); rec.Code != 401 {
		t.Errorf("another address = %d, want 401", rec.Code)
	}
	ts.clock.advance(40 * time.Second)
	if rec := ts.do("GET", "/api/me", "dk_guess", "", bad); rec.Code != 401 {
		t.Errorf("after the window = %d %s, want 401", rec.Code, rec.Body)
	}
	// Failed logins count too.
	for range 2 {
		ts.do("POST", "/api/login", "", `{"key":"dk_nope"}`, good)
	}
	if rec := ts.do("POST", "/api/login", "", `{"key":"dk_nope"}`, good); rec.Code != 429 {
		t.Errorf("login after 3 failed logins = %d, want 429", rec.Code)
	}
}

// TestFailedAuthLockoutSparesValidKey (the lockout also blocked
// correct credentials, so behind a proxy one client with a stale key
// locked out every user): while an address is over the limit its failing
// attempts get 429, but a valid key, session or login from it is served,
// and does not lengthen the lockout.
func TestFailedAuthLockoutSparesValidKey(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 3, failWindow: time.Minute})
	const addr = "198.51.100.7:4000"
	for i := range 4 {
		ts.do("GET", "/api/me", fmt.Sprintf("dk_stale%d", i), "", addr)
	}
	if rec := ts.do("GET", "/api/me", "dk_stale", "", addr); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("bad key from the locked-out address = %d Retry-After %q, want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := ts.do("PUT", "/entity/db", testAdminKey, `{"k":1}`, addr); rec.Code != 200 {
		t.Errorf("valid admin key from the locked-out address = %d %s, want 200", rec.Code, rec.Body)
	}
	rec := ts.do("POST", "/api/login", "", `{"key":"`+testAdminKey+`"}`, addr)
	if rec.Code != 200 {
		t.Fatalf("login with a valid key from the locked-out address = %d %s, want 200", rec.Code, rec.Body)
	}
	var g sessionGrant
	json.Unmarshal(rec.Body.Bytes(), &g)
	if rec := ts.do("GET", "/entity/db?key=k", g.Token, "", addr); rec.Code != 200 {
		t.Errorf("valid session from the locked-out address = %d %s, want 200", rec.Code, rec.Body)
	}
	ts.clock.advance(time.Minute)
	if rec := ts.do("GET", "/api/me", "dk_stale", "", addr); rec.Code != 401 {
		t.Errorf("bad key after the window = %d, want 401", rec.Code)
	}
}

// TestFailLimiterBounded: the limiter remembers at most maxClients
// addresses, and an IPv6 host cannot escape it by changing addresses
// within its /64.
func TestFailLimiterBounded(t *testing.T) {
	clock := &fakeClock{t: authTestStart}
	l := newFailLimiter(2, time.Minute, 10, clock.now)
	for i := range 1000 {
		l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.clients.Len(); n > 10 {
		t.Errorf("limiter holds %d clients, want at most 10", n)
	}
	l.fail(clientKey("[2001:db8:1:2::1]:443"))
	l.fail(clientKey("[2001:db8:1:2:ffff::9]:80"))
	if l.blocked(clientKey("[2001:db8:1:2::77]:1")) == 0 {
		t.Error("another address of the same /64 is not limited")
	}
	if l.blocked(clientKey("[2001:db8:1:3::1]:1")) != 0 {
		t.Error("an address of another /64 is limited")
	}
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1%eth0]:1", "2001:db8::/64"},
		{"not an address", "not an address"},
	} {
		if got := clientKey(c.in); got != c.want {
			t.Errorf("clientKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestKeyStorePersists: keys written by one authenticator are accepted by
// the next one over the same store, for the storage object and for a
// -key-store file (0600, holding no secret).
func TestKeyStorePersists(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "auth", "keys.json")
	for _, c := range []struct {
		name string
		cfg  func(st store) authConfig
	}{
		{"object", func(st store) authConfig { return authConfig{adminKey: "adm", st: st} }},
		{"file", func(st store) authConfig { return authConfig{adminKey: "adm", keyFile: file} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newTestFSStore(t)
			a1, err := newAuthenticator(ctx, c.cfg(st))
			if err != nil {
				t.Fatal(err)
			}
			k, err := a1.createKey(ctx, keyRequest{Name: "k", Permissions: []string{"write"}})
			if err != nil {
				t.Fatal(err)
			}
			gone, err := a1.createKey(ctx, keyRequest{Name: "gone", Permissions: []string{"read"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := a1.deleteKey(ctx, gone.ID); err != nil {
				t.Fatal(err)
			}
			a2, err := newAuthenticator(ctx, c.cfg(st))
			if err != nil {
				t.Fatal(err)
			}
			if p, err := a2.authenticateFrom(k.Secret, ""); err != nil || p.clientID != k.ID || p.perms != permWrite {
				t.Errorf("after reload authenticate(key) = %+v, %v", p, err)
			}
			if _, err := a2.authenticateFrom(gone.Secret, ""); !errors.Is(err, errUnauthenticated) {
				t.Errorf("after reload the deleted key: err = %v, want errUnauthenticated", err)
			}
			if c.name == "file" {
				fi, err := os.Stat(file)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("key file: %v, mode %v, want 0600", err, fi.Mode().Perm())
				}
				b, _ := os.ReadFile(file)
				if bytes.Contains(b, []byte(k.Secret)) || !bytes.Contains(b, []byte(sha256Hex(k.Secret))) {
					t.Errorf("key file %s holds the secret or not its hash", b)
				}
				if _, err := st.Get(ctx, authKeysObject); !errors.Is(err, errNotFound) {
					t.Errorf("with -key-store the storage object exists too (err %v)", err)
				}
			}
		})
	}
}

// TestKeyStoreCorrupt: a key store that does not parse or cannot be read
// stops newAuthenticator with a message naming it, and is left as it was.
func TestKeyStoreCorrupt(t *testing.T) {
	ctx := context.Background()
	hash := sha256Hex("x")
	for _, data := range []string{
		"",
		"{",
		"garbage",
		`{"format":2,"keys":[]}`,
		`{"keys":[]}`,
		`{"format":1,"keys":[{"id":"a","sha256":"zz","permissions":["read"]}]}`,
		`{"format":1,"keys":[{"id":"a","sha256":"` + hash + `","permissions":["root"]}]}`,
		`{"format":1,"keys":[{"id":"a","sha256":"` + hash + `","permissions":[]}]}`,
		`{"format":1,"keys":[{"id":"","sha256":"` + hash + `","permissions":["read"]}]}`,
		`{"format":1,"keys":[{"id":"a","sha256":"` + hash + `","permissions":["read"],"databases":["bad db"]}]}`,
		`{"format":1,"keys":[{"id":"a","sha256":"` + hash + `","permissions":["read"]},{"id":"a","sha256":"` + sha256Hex("y") + `","permissions":["read"]}]}`,
		`{"format":1,"keys":[],"secret":"x"}`,
	} {
		st := newTestFSStore(t)
		if err := st.Put(ctx, authKeysObject, []byte(data)); err != nil {
			t.Fatal(err)
		}
		_, err := newAuthenticator(ctx, authConfig{adminKey: "adm", st: st})
		if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "API key store") {
			t.Errorf("key store %q: newAuthenticator error = %v, want a corrupt key store error", data, err)
		}
		if got, _ := st.Get(ctx, authKeysObject); string(got) != data {
			t.Errorf("key store %q was replaced by %q", data, got)
		}
	}
	// Unreadable: the -key-store path is a directory.
	dir := t.TempDir()
	_, err := newAuthenticator(ctx, authConfig{adminKey: "adm", keyFile: dir})
	if err == nil || !strings.Contains(err.Error(), "read API key store "+dir) {
		t.Errorf("-key-store naming a directory: err = %v, want a read error naming it", err)
	}
	// A valid empty store loads.
	if _, err := newAuthenticator(ctx, authConfig{adminKey: "adm", keyFile: filepath.Join(dir, "none.json")}); err != nil {
		t.Errorf("missing key file: err = %v, want an empty store", err)
	}
}

// TestAuthenticateAdminKey: only the exact admin key is the admin, and an
// empty admin key accepts nothing.
func TestAuthenticateAdminKey(t *testing.T) {
	ctx := context.Background()
	a, err := newAuthenticator(ctx, authConfig{adminKey: "adm-key", st: newTestFSStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.authenticateFrom("adm-key", ""); err != nil || !p.admin {
		t.Errorf("authenticate(admin key) = %+v, %v", p, err)
	}
	for _, cred := range []string{"", "adm-ke", "adm-key ", "ADM-KEY"} {
		if _, err := a.authenticateFrom(cred, ""); !errors.Is(err, errUnauthenticated) {
			t.Errorf("authenticate(%q) err = %v, want errUnauthenticated", cred, err)
		}
	}
	none, err := newAuthenticator(ctx, authConfig{st: newTestFSStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.authenticateFrom(" ", "192.0.2.1:1"); !errors.Is(err, errUnauthenticated) {
		t.Errorf("no admin key: err = %v, want errUnauthenticated", err)
	}
}

// sha256Hex is the hex SHA-256 of s, as the key store holds it.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Integration tests over the real binary.

// createKeyHTTP creates an API key on a running node with the admin key.
func createKeyHTTP(t *testing.T, n *node, body string) newKey {
	t.Helper()
	code, out, _ := n.call("POST", "/api/keys", testAdminKey, body)
	var k newKey
	if code != 201 || json.Unmarshal(out, &k) != nil || !strings.HasPrefix(k.Secret, "dk_") {
		t.Fatalf("POST /api/keys %s = %d %s", body, code, out)
	}
	return k
}

// TestAPIKeysRealBinary: keys created over HTTP are stored hashed in
// <shared-fs>/_auth/keys.json (0600, no secret), survive a restart with
// their permissions, and a deleted key's session is revoked at once.
func TestAPIKeysRealBinary(t *testing.T) {
	n, dir := startDefault(t)
	r := createKeyHTTP(t, n, `{"name":"reader","permissions":["read"]}`)
	w := createKeyHTTP(t, n, `{"name":"writer","permissions":["write"],"expires_in":"30d"}`)
	d := createKeyHTTP(t, n, `{"name":"doomed","permissions":["read","write"]}`)
	if code, out, _ := n.call("PUT", "/entity/db", w.Secret, `{"k":1}`); code != 200 {
		t.Fatalf("PUT with the write key = %d %s", code, out)
	}
	path := filepath.Join(dir, "_auth", "keys.json")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key store %s: %v, want mode 0600", path, err)
	}
	raw, _ := os.ReadFile(path)
	for _, k := range []newKey{r, w, d} {
		if bytes.Contains(raw, []byte(k.Secret)) || bytes.Contains(raw, []byte(strings.TrimPrefix(k.Secret, "dk_"))) {
			t.Errorf("key store contains the secret of %s", k.Name)
		}
	}

	_, out, _ := n.call("POST", "/api/login", "", map[string]string{"key": d.Secret})
	var s sessionGrant
	if json.Unmarshal(out, &s) != nil || s.Token == "" {
		t.Fatalf("login = %s", out)
	}
	if code, _, _ := n.call("GET", "/entity/db?key=k", s.Token, nil); code != 200 {
		t.Errorf("GET with the session = %d, want 200", code)
	}
	if code, out, _ := n.call("DELETE", "/api/keys/"+d.ID, testAdminKey, nil); code != 200 || strings.TrimSpace(string(out)) != `{"status":"ok"}` {
		t.Errorf("DELETE key = %d %s", code, out)
	}
	for _, cred := range []string{s.Token, d.Secret} {
		if code, _, _ := n.call("GET", "/entity/db?key=k", cred, nil); code != 401 {
			t.Errorf("deleted key's credential: GET = %d, want 401", code)
		}
	}
	n.stop()

	n = startNode(t, keyEnv, "-shared-fs="+dir)
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/entity/db?key=k", r.Secret, "", 200},
		{"PUT", "/entity/db", r.Secret, `{"k":2}`, 403},
		{"PUT", "/entity/db", w.Secret, `{"k":2}`, 200},
		{"GET", "/entity/db?key=k", w.Secret, "", 403},
		{"GET", "/entity/db?key=k", d.Secret, "", 401},
	} {
		if code, out, _ := n.call(c.method, c.path, c.token, c.body); code != c.want {
			t.Errorf("after restart %s %s = %d %s, want %d", c.method, c.path, code, out, c.want)
		}
	}
	var list []keyInfo
	_, out, _ = n.call("GET", "/api/keys", testAdminKey, nil)
	if json.Unmarshal(out, &list) != nil || len(list) != 2 || list[0].Name != "reader" || list[1].Name != "writer" || list[1].ExpiresAt == nil {
		t.Errorf("after restart GET /api/keys = %s", out)
	}
	if bytes.Contains(out, []byte("dk_")) || bytes.Contains(out, []byte("sha256")) {
		t.Errorf("GET /api/keys shows a secret or hash: %s", out)
	}
}

// TestKeyStoreFlagRealBinary: -key-store puts the keys in that file and
// not in the storage.
func TestKeyStoreFlagRealBinary(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys", "keys.json")
	n, dir := startDefault(t, "-key-store="+file)
	k := createKeyHTTP(t, n, `{"name":"f","permissions":["read"]}`)
	n.stop()
	if _, err := os.Stat(filepath.Join(dir, "_auth", "keys.json")); err == nil {
		t.Error("with -key-store the keys were also written to <shared-fs>/_auth/keys.json")
	}
	if b, err := os.ReadFile(file); err != nil || !bytes.Contains(b, []byte(k.ID)) {
		t.Fatalf("-key-store file: %v %s", err, b)
	}
	n = startNode(t, keyEnv, "-shared-fs="+dir, "-key-store="+file)
	if code, _, _ := n.call("GET", "/api/me", k.Secret, nil); code != 200 {
		t.Errorf("after restart with -key-store GET /api/me = %d, want 200", code)
	}
}

// TestExpiredKeyRealBinary: a key created with a short expires_in works,
// then stops working without a restart, together with its session. The
// fresh checks count only if they ended before the key's own expires_at:
// on a loaded machine the create, login and first call can take longer
// than the expiry, and a 401 then says nothing about the key, so the test
// tries again with twice the expiry rather than fail for the wrong reason.
func TestExpiredKeyRealBinary(t *testing.T) {
	n, _ := startDefault(t)
	const longest = 24 * time.Second
	var k newKey
	var s sessionGrant
	for expiry := 3 * time.Second; ; expiry *= 2 {
		k = createKeyHTTP(t, n, fmt.Sprintf(`{"name":"brief","permissions":["read"],"expires_in":%q}`, expiry))
		if k.ExpiresAt == nil {
			t.Fatalf("key created with expires_in %v has no expires_at", expiry)
		}
		lcode, lout, _ := n.call("POST", "/api/login", "", map[string]string{"key": k.Secret})
		code, out, _ := n.call("GET", "/api/me", k.Secret, nil)
		took := time.Now()
		if took.Before(*k.ExpiresAt) {
			if lcode != 200 || json.Unmarshal(lout, &s) != nil || s.Token == "" {
				t.Fatalf("fresh key: POST /api/login = %d %s, want 200 with a token", lcode, lout)
			}
			if code != 200 {
				t.Fatalf("fresh key: GET /api/me = %d %s, want 200 (%v before its expiry)", code, out, k.ExpiresAt.Sub(took).Round(time.Millisecond))
			}
			break
		}
		// Each late try costs two failed authentications; three stay far
		// under the 20 a minute that rate-limit this address.
		late := took.Sub(*k.ExpiresAt).Round(time.Millisecond)
		if expiry >= longest {
			t.Fatalf("the login and first call with a key expiring in %v ended %v after its expiry: the machine is too slow to check a fresh key", expiry, late)
		}
		t.Logf("the login and first call with a key expiring in %v ended %v after its expiry (GET /api/me = %d); trying %v", expiry, late, code, 2*expiry)
	}
	if !s.ExpiresAt.Equal(*k.ExpiresAt) {
		t.Errorf("session expires %v, want the key's expiry %v", s.ExpiresAt, k.ExpiresAt)
	}
	time.Sleep(time.Until(*k.ExpiresAt) + 100*time.Millisecond)
	for _, cred := range []string{k.Secret, s.Token} {
		if code, out, _ := n.call("GET", "/api/me", cred, nil); code != 401 {
			t.Errorf("expired credential: GET /api/me = %d %s, want 401", code, out)
		}
	}
}

// TestCorruptKeyStoreRealBinary: a corrupt key store stops the binary at
// start with a clear message and stays as it was.
func TestCorruptKeyStoreRealBinary(t *testing.T) {
	n, dir := startDefault(t)
	createKeyHTTP(t, n, `{"name":"k","permissions":["read"]}`)
	n.stop()
	path := filepath.Join(dir, "_auth", "keys.json")
	garbage := []byte(`{"format":1,"keys":[{"id":`)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	msg := launch(t, keyEnv, "-shared-fs="+dir).exitErr()
	if !strings.Contains(msg, "API key store") || !strings.Contains(msg, "corrupt") || !strings.Contains(msg, "keys.json") {
		t.Errorf("corrupt key store: stderr = %q, want a message naming the corrupt key store", msg)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, garbage) {
		t.Errorf("the corrupt key store was replaced by %q", b)
	}
}

// TestFailedAuthRateLimitRealBinary: 20 failed authentications from one
// address are 401s; the next failing one gets 429 with Retry-After, while
// the admin key still works.
func TestFailedAuthRateLimitRealBinary(t *testing.T) {
	n, _ := startDefault(t)
	start := time.Now()
	for i := range 20 {
		if code, _, _ := n.call("GET", "/entity/db?key=k", fmt.Sprintf("dk_guess%02d", i), nil); code != 401 {
			t.Fatalf("guess %d = %d, want 401", i, code)
		}
	}
	code, out, hdr := n.call("GET", "/api/me", "dk_guess", nil)
	// The window is a minute from the first failure, in whole seconds.
	minWait := 60 - int(time.Since(start).Seconds()) - 1
	var e struct{ Error string }
	wait, err := strconv.Atoi(hdr.Get("Retry-After"))
	if code != 429 || err != nil || wait < minWait || wait > 60 || json.Unmarshal(out, &e) != nil || e.Error == "" {
		t.Errorf("after 20 failures: %d Retry-After %q body %s, want 429 with Retry-After %d..60 and an error body", code, hdr.Get("Retry-After"), out, minWait)
	}
	if code, out, _ := n.call("GET", "/api/me", testAdminKey, nil); code != 200 {
		t.Errorf("GET /api/me with the admin key when limited = %d %s, want 200", code, out)
	}
	if code, _, _ := n.call("GET", "/health", "", nil); code != 200 {
		t.Errorf("GET /health when limited = %d, want 200", code)
	}
}
