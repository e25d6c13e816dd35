package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// loginHTTP exchanges key for a session token at n.
func loginHTTP(t *testing.T, n *node, key string) string {
	t.Helper()
	code, out, _ := n.call("POST", "/api/login", "", map[string]string{"key": key})
	var g sessionGrant
	if code != 200 || json.Unmarshal(out, &g) != nil || g.Token == "" {
		t.Fatalf("POST /api/login = %d %s, want 200 with a token", code, out)
	}
	return g.Token
}

// TestSessionsSurviveRestart (sessions died on every restart):
// session tokens of the admin key and of an API key still work after the
// main worker restarts on the same storage and master key.
func TestSessionsSurviveRestart(t *testing.T) {
	n, dir := startDefault(t)
	admin := loginHTTP(t, n, testAdminKey)
	k := createKeyHTTP(t, n, `{"name":"reader","permissions":["read"]}`)
	reader := loginHTTP(t, n, k.Secret)
	n.stop()
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	for _, c := range []struct{ name, token, want string }{
		{"admin", admin, `"client_id":"admin"`},
		{"API key", reader, `"client_id":"` + k.ID + `"`},
	} {
		if code, out, _ := n.call("GET", "/api/me", c.token, nil); code != 200 || !strings.Contains(string(out), c.want) {
			t.Errorf("GET /api/me with the %s session after a restart = %d %s, want 200 with %s", c.name, code, out, c.want)
		}
	}
	// A deleted key still ends its sessions.
	n.call("DELETE", "/api/keys/"+k.ID, testAdminKey, nil)
	if code, _, _ := n.call("GET", "/api/me", reader, nil); code != 401 {
		t.Errorf("session of a deleted key = %d, want 401", code)
	}
}

// TestLogoutRevocationSurvivesRestart (UI logout only forgot
// the token in the browser, it stayed valid for 24 h): POST /api/logout
// ends the token it is sent with, not the others, and the revocation is
// still in force after a restart.
func TestLogoutRevocationSurvivesRestart(t *testing.T) {
	n, dir := startDefault(t)
	out, stay := loginHTTP(t, n, testAdminKey), loginHTTP(t, n, testAdminKey)
	if code, body, _ := n.call("POST", "/api/logout", out, nil); code != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("POST /api/logout = %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
	check := func(when string) {
		t.Helper()
		if code, _, _ := n.call("GET", "/api/me", out, nil); code != 401 {
			t.Errorf("%s: the logged-out token = %d, want 401", when, code)
		}
		if code, _, _ := n.call("GET", "/api/me", stay, nil); code != 200 {
			t.Errorf("%s: another session = %d, want 200", when, code)
		}
	}
	check("after logout")
	n.stop()
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	check("after a restart")
}

// generatedAdminKey returns the ADMIN_KEY= line's key of n's stdout, or "".
func generatedAdminKey(n *node) string {
	sc := bufio.NewScanner(strings.NewReader(n.stdout.String()))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], "ADMIN_KEY=") {
			return strings.TrimPrefix(f[0], "ADMIN_KEY=")
		}
	}
	return ""
}

// TestAdminKeySurvivesRestart (a generated admin key changed on
// every restart): a generated admin key is printed on the first start
// only, stored as a hash (never the key), and works after a restart; an
// explicit admin key wins over it.
func TestAdminKeySurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	env := []string{"MASTER_KEY=" + testMasterKey, "ADMIN_KEY="}
	n := startNode(t, env, "-shared-fs="+dir)
	admin := generatedAdminKey(n)
	if admin == "" {
		t.Fatalf("first start: stdout = %q, want an ADMIN_KEY= line", n.stdout)
	}
	n.stop()
	n = startNode(t, env, "-shared-fs="+dir)
	if strings.Contains(n.stdout.String(), "ADMIN_KEY=") {
		t.Errorf("second start printed an admin key again: %q", n.stdout)
	}
	if code, out, _ := n.call("GET", "/api/me", admin, nil); code != 200 || !strings.Contains(string(out), `"is_admin":true`) {
		t.Errorf("generated admin key after a restart = %d %s, want 200 as admin", code, out)
	}
	n.stop()
	stored, err := os.ReadFile(filepath.Join(dir, "_auth", "admin.json"))
	if err != nil || strings.Contains(string(stored), admin) || !strings.Contains(string(stored), sha256Hex(admin)) {
		t.Errorf("_auth/admin.json = %q, %v: want the key's SHA-256 and never the key", stored, err)
	}
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	if code, _, _ := n.call("GET", "/api/me", admin, nil); code != 401 {
		t.Errorf("generated admin key with ADMIN_KEY set = %d, want 401 (the explicit key wins)", code)
	}
	if code, _, _ := n.call("GET", "/api/me", testAdminKey, nil); code != 200 {
		t.Errorf("explicit admin key = %d, want 200", code)
	}
}

// TestAdminKeyFileAndWeakKey: -admin-key-file works and is refused
// together with ADMIN_KEY; an admin key under 16 characters stops a start
// whose REST listens beyond loopback unless -allow-weak-admin-key, and
// only warns on loopback.
func TestAdminKeyFileAndWeakKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.key")
	os.WriteFile(file, []byte(testAdminKey+"\n"), 0o600)
	dir := filepath.Join(t.TempDir(), "db")
	n := startNode(t, []string{"MASTER_KEY=" + testMasterKey, "ADMIN_KEY="}, "-shared-fs="+dir, "-admin-key-file="+file)
	if code, _, _ := n.call("GET", "/api/me", testAdminKey, nil); code != 200 {
		t.Errorf("admin key from -admin-key-file = %d, want 200", code)
	}
	if generatedAdminKey(n) != "" {
		t.Error("an admin key was generated although -admin-key-file gave one")
	}
	n.stop()
	if msg := launch(t, keyEnv, "-shared-fs="+dir, "-admin-key-file="+file).exitErr(); !strings.Contains(msg, "-admin-key-file") {
		t.Errorf("-admin-key-file with ADMIN_KEY: stderr = %q, want it named", msg)
	}
	weak := []string{"MASTER_KEY=" + testMasterKey, "ADMIN_KEY=mysecretkey"}
	msg := launch(t, weak, "-shared-fs="+dir, "-rest-addr=0.0.0.0:0").exitErr()
	if !strings.Contains(msg, "too short") || strings.Contains(msg, "mysecretkey") {
		t.Errorf("short admin key beyond loopback: stderr = %q, want 'too short' and no key", msg)
	}
	n = startNode(t, weak, "-shared-fs="+dir, "-rest-addr=0.0.0.0:0", "-allow-weak-admin-key")
	n.stop()
	n = startNode(t, weak, "-shared-fs="+dir)
	if !strings.Contains(n.stderr.String(), "admin key is short") {
		t.Errorf("short admin key on loopback: log = %q, want a warning", n.stderr)
	}
}

// TestWeakAdminKeyStoresNothing: a start refused for its admin key (the
// original system's README example, 8 characters, beyond loopback)
// generates no master key and stores nothing, so the next start with a
// good admin key is a first start again, not one refused for want of a
// master key that was printed by a start that failed.
func TestWeakAdminKeyStoresNothing(t *testing.T) {
	st := newMemStore()
	var stdout bytes.Buffer
	cfg := config{restAddr: "0.0.0.0:8080", adminKey: "changeme", keyID: "main-key-v1"}
	if _, err := loadKeys(t.Context(), cfg, st, &stdout); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("loadKeys with an 8-character admin key beyond loopback = %v, want it refused as too short", err)
	}
	if names, _ := st.List(t.Context(), "", "", 0); len(names) != 0 || stdout.Len() != 0 {
		t.Errorf("after the refused start the storage holds %q and stdout %q, want nothing", names, stdout.String())
	}
	cfg.adminKey = "0123456789abcdef"
	keys, err := loadKeys(t.Context(), cfg, st, &stdout)
	if err != nil || !strings.Contains(stdout.String(), "MASTER_KEY=") {
		t.Fatalf("the next start with a 16-character key = %v, stdout %q; want a first start printing a master key", err, stdout.String())
	}
	zero(keys.master)
}

// TestSecretEnvCleared: parsing the flags removes the environment
// variables that hold secrets, after taking their values.
func TestSecretEnvCleared(t *testing.T) {
	for _, name := range []string{"MASTER_KEY", "ADMIN_KEY", "S3_SECRET_KEY"} {
		t.Setenv(name, "secret-of-"+name)
	}
	cfg, err := parseFlags(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.masterKey != "secret-of-MASTER_KEY" || cfg.adminKey != "secret-of-ADMIN_KEY" || cfg.s3.secretKey != "secret-of-S3_SECRET_KEY" {
		t.Errorf("parseFlags took master %q admin %q s3 %q from the environment", cfg.masterKey, cfg.adminKey, cfg.s3.secretKey)
	}
	for _, name := range []string{"MASTER_KEY", "ADMIN_KEY", "S3_SECRET_KEY"} {
		if v, ok := os.LookupEnv(name); ok {
			t.Errorf("%s is still in the environment (%q)", name, v)
		}
	}
}

// callFrom sends one request to n with an X-Forwarded-For header.
func callFrom(t *testing.T, n *node, token, xff string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", n.base+"/api/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestTrustedProxyHonoured (behind a reverse proxy one client
// with a stale key locked out every user): with -trusted-proxies naming
// the proxy, failures count against the address the proxy reports, so a
// second client behind it is not limited, and a client cannot escape its
// count by writing its own X-Forwarded-For entries.
func TestTrustedProxyHonoured(t *testing.T) {
	n, _ := startDefault(t, "-auth-fail-limit=3", "-trusted-proxies=127.0.0.0/8,::1")
	for i := range 3 {
		if code, _ := callFrom(t, n, fmt.Sprintf("dk_stale%d", i), "203.0.113.5"); code != 401 {
			t.Fatalf("failure %d = %d, want 401", i, code)
		}
	}
	if code, hdr := callFrom(t, n, "dk_stale", "198.51.100.1, 203.0.113.5"); code != 429 || hdr.Get("Retry-After") == "" {
		t.Errorf("the limited client with a forged X-Forwarded-For entry = %d, want 429 with Retry-After", code)
	}
	if code, _ := callFrom(t, n, "dk_stale", "203.0.113.6"); code != 401 {
		t.Errorf("another client behind the proxy = %d, want 401 (not limited)", code)
	}
	if code, _ := callFrom(t, n, testAdminKey, "203.0.113.5"); code != 200 {
		t.Errorf("the limited client with a valid key = %d, want 200", code)
	}
}

// TestTrustedProxyUntrustedIgnored: without -trusted-proxies the
// X-Forwarded-For header is ignored, so a client cannot dodge the limit
// by sending a new address with every guess.
func TestTrustedProxyUntrustedIgnored(t *testing.T) {
	n, _ := startDefault(t)
	for i := range 20 {
		if code, _ := callFrom(t, n, fmt.Sprintf("dk_guess%d", i), fmt.Sprintf("203.0.113.%d", i)); code != 401 {
			t.Fatalf("guess %d = %d, want 401", i, code)
		}
	}
	if code, _ := callFrom(t, n, "dk_guess", "203.0.113.200"); code != 429 {
		t.Errorf("21st guess with a fresh X-Forwarded-For = %d, want 429", code)
	}
}

// TestClientAddr: the walk through X-Forwarded-For.
func TestClientAddr(t *testing.T) {
	trusted, err := parseTrustedProxies("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"198.51.100.1:5", []string{"203.0.113.9"}, "198.51.100.1:5"},       // untrusted peer: header ignored
		{"10.1.2.3:5", []string{"203.0.113.9"}, "203.0.113.9"},              // trusted peer
		{"10.1.2.3:5", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},     // right-most untrusted
		{"10.1.2.3:5", []string{"203.0.113.9", "192.0.2.1"}, "203.0.113.9"}, // two headers, two proxies
		{"10.1.2.3:5", []string{"203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"10.1.2.3:5", []string{"10.2.2.2"}, "10.2.2.2"},                // all trusted: the left-most
		{"10.1.2.3:5", []string{"1.1.1.1, garbage"}, "10.1.2.3:5"},      // unparsable: the proxy
		{"10.1.2.3:5", nil, "10.1.2.3:5"},                               // no header
		{"10.1.2.3:5", []string{"[2001:db8::1]:443"}, "2001:db8::1"},    // with a port
		{"[::ffff:10.1.2.3]:5", []string{"203.0.113.9"}, "203.0.113.9"}, // mapped peer
	} {
		if got := clientAddr(c.remote, c.xff, trusted); got != c.want {
			t.Errorf("clientAddr(%q, %q) = %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
	if got := clientAddr("10.1.2.3:5", []string{"203.0.113.9"}, nil); got != "10.1.2.3:5" {
		t.Errorf("clientAddr with no trusted proxies = %q, want the peer", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.0/8,x"} {
		if _, err := parseTrustedProxies(bad); err == nil {
			t.Errorf("parseTrustedProxies(%q) = nil error, want one", bad)
		}
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if fmt.Sprint(trusted) != fmt.Sprint(want) {
		t.Errorf("parseTrustedProxies = %v, want %v", trusted, want)
	}
}

// TestSessionTokenForgery: a token changed in any byte, signed under
// another key, or of the admin key after the admin key changed, is 401.
func TestSessionTokenForgery(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: -1})
	tok := ts.login(t, testAdminKey).Token
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, sessionTokenPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		forged := sessionTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
		if rec := ts.do("GET", "/api/me", forged, "", ""); rec.Code != 401 {
			t.Fatalf("token with byte %d changed = %d, want 401", i, rec.Code)
		}
	}
	other := newAuthTestServer(t, authConfig{}) // another random session key
	if rec := other.do("GET", "/api/me", tok, "", ""); rec.Code != 401 {
		t.Errorf("token checked under another session key = %d, want 401", rec.Code)
	}
	key := make([]byte, 32)
	a1, err := newAuthenticator(t.Context(), authConfig{adminKey: "admin-one-0123456789", st: ts.st, sessionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	g, err := a1.login("admin-one-0123456789", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		admin string
		ok    bool
	}{{"admin-one-0123456789", true}, {"admin-two-0123456789", false}} {
		a2, err := newAuthenticator(t.Context(), authConfig{adminKey: c.admin, st: ts.st, sessionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a2.authenticateFrom(g.Token, ""); (err == nil) != c.ok {
			t.Errorf("admin session with admin key %q: err = %v, want ok %v", c.admin, err, c.ok)
		}
	}
}

// TestSessionCapPerKey: one key cannot hold more than maxSessions
// unexpired sessions (429 with Retry-After), which leaves other keys'
// logins alone; a logout does not free a slot (else login and logout in a
// loop would pile up revocations), an expiry does.
func TestSessionCapPerKey(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxSessions: 2, clientTTL: time.Hour})
	k := ts.createKey(t, `{"name":"k","permissions":["read"]}`)
	s1 := ts.login(t, k.Secret)
	ts.clock.advance(time.Minute)
	ts.login(t, k.Secret)
	body := `{"key":"` + k.Secret + `"}`
	rec := ts.do("POST", "/api/login", "", body, "")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "3540" {
		t.Errorf("third login of a key capped at 2 = %d Retry-After %q, want 429 and 3540", rec.Code, rec.Header().Get("Retry-After"))
	}
	checkErrorBody(t, "capped login", rec)
	ts.login(t, testAdminKey) // another key is not affected
	ts.mustDo(t, "POST", "/api/logout", s1.Token, "", 200)
	ts.mustDo(t, "POST", "/api/login", "", body, 429)
	ts.clock.advance(59 * time.Minute) // the first token expires
	ts.login(t, k.Secret)
	ts.mustDo(t, "POST", "/api/login", "", body, 429)
}

// TestRevocationsPruned: a revocation is kept in the store until its token
// would have expired, then a reload deletes it; a reload also brings in
// the revocations another main worker wrote. On each backend.
func TestRevocationsPruned(t *testing.T) {
	t.Run("fs", func(t *testing.T) { testRevocationsPruned(t, newTestFSStore(t)) })
	t.Run("s3", func(t *testing.T) { testRevocationsPruned(t, newTestS3Store(t, nil)) })
}

func testRevocationsPruned(t *testing.T, st store) {
	ctx := context.Background()
	ts := newAuthTestServerOn(t, authConfig{clientTTL: time.Hour}, st)
	tok := ts.login(t, testAdminKey).Token
	ts.mustDo(t, "POST", "/api/logout", tok, "", 200)
	names, _ := ts.st.List(ctx, revokedPrefix, "", 0)
	if len(names) != 1 {
		t.Fatalf("revocations in the store after a logout = %q, want 1", names)
	}
	// Another main worker over the same store sees it after a reload.
	other, err := newAuthenticator(ctx, authConfig{adminKey: testAdminKey, st: ts.st, now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, _ := parseSessionToken(tok)
	if !other.sessions.isRevoked(c) {
		t.Error("a new authenticator does not know the stored revocation")
	}
	ts.clock.advance(time.Hour)
	if err := ts.auth.sessions.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if names, _ := ts.st.List(ctx, revokedPrefix, "", 0); len(names) != 0 {
		t.Errorf("revocations after their tokens expired = %q, want none", names)
	}
}

// TestLogoutStorageFault: a logout whose revocation cannot be stored
// fails with 503 and leaves the token valid, so the client knows to retry.
func TestLogoutStorageFault(t *testing.T) {
	fs := &faultStore{store: newTestFSStore(t)}
	ts := newAuthTestServerOn(t, authConfig{}, fs)
	tok := ts.login(t, testAdminKey).Token
	fault := fmt.Errorf("put: %w", errUnavailable)
	fs.fault.Store(&fault)
	rec := ts.do("POST", "/api/logout", tok, "", "")
	fs.fault.Store(nil)
	if rec.Code != 503 {
		t.Errorf("logout with the store down = %d %s, want 503", rec.Code, rec.Body)
	}
	ts.mustDo(t, "GET", "/api/me", tok, "", 200)
}

// TestStoredAdminKey: the first call generates a key and stores only its
// hash; later calls return that hash and no key to print. On each backend.
func TestStoredAdminKey(t *testing.T) {
	for name, newStore := range map[string]func(*testing.T) store{
		"fs": func(t *testing.T) store { return newTestFSStore(t) },
		"s3": func(t *testing.T) store { return newTestS3Store(t, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			h1, key, err := storedAdminKey(t.Context(), st)
			if err != nil || !strings.HasPrefix(key, "dk_admin_") || h1 != sha256.Sum256([]byte(key)) {
				t.Fatalf("first storedAdminKey = %x, %q, %v: want a new key and its hash", h1, key, err)
			}
			h2, again, err := storedAdminKey(t.Context(), st)
			if err != nil || again != "" || h2 != h1 {
				t.Errorf("second storedAdminKey = %x, %q, %v: want the same hash and no key", h2, again, err)
			}
			raw, _ := st.Get(t.Context(), adminKeyObject)
			if strings.Contains(string(raw), key) {
				t.Errorf("%s holds the key itself: %s", adminKeyObject, raw)
			}
			st.Put(t.Context(), adminKeyObject, []byte("{"))
			if _, _, err := storedAdminKey(t.Context(), st); !errors.Is(err, errCorrupt) {
				t.Errorf("storedAdminKey over a corrupt %s = %v, want errCorrupt (never replaced)", adminKeyObject, err)
			}
		})
	}
}

// TestLogoutRevokesToken (in-process): after POST /api/logout the token is
// refused with 401 on every route it reached before, over REST and gRPC
// Process, and by a main worker started afresh over the same storage with
// the same session key; another session of the same key keeps working.
func TestLogoutRevokesToken(t *testing.T) {
	sessionKey := bytes.Repeat([]byte{5}, 32)
	ts := newAuthTestServer(t, authConfig{sessionKey: sessionKey, clientTTL: time.Hour})
	k := ts.createKey(t, `{"name":"k","permissions":["read","write"]}`)
	tok, other := ts.login(t, k.Secret).Token, ts.login(t, k.Secret).Token
	ts.mustDo(t, "PUT", "/entity/db", tok, `{"k":1}`, 200)
	ts.mustDo(t, "POST", "/api/logout", tok, "", 200)
	for _, r := range [][3]string{{"GET", "/api/me", ""}, {"GET", "/entity/db?key=k", ""}, {"PUT", "/entity/db", `{"k":2}`}, {"GET", "/api/databases", ""}} {
		ts.mustDo(t, r[0], r[1], tok, r[2], 401)
	}
	ts.mustDo(t, "GET", "/entity/db?key=k", other, "", 200)
	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	get := &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "GET", Token: tok}
	if _, err := client.Process(t.Context(), get); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC Process with the logged-out token = %v, want Unauthenticated", err)
	}
	restarted := newAuthTestServerOn(t, authConfig{sessionKey: sessionKey, clientTTL: time.Hour}, ts.st)
	restarted.mustDo(t, "GET", "/api/me", other, "", 200) // the control: the key signs the same
	restarted.mustDo(t, "GET", "/api/me", tok, "", 401)
}
