package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// These tests run against a real OpenID provider: node's oidc-provider
// (an OpenID-certified implementation), pinned in .ci/oidc/package.json,
// installed by .ci/oidc.sh and started here as a child process running
// .ci/oidc/provider.mjs. Its clients use the client-credentials grant and
// get JWT access tokens carrying deltadb.permissions (and
// deltadb.databases). Without the install the tests skip, except with
// CI=true, where they fail:
//
//	eval "$(bash .ci/oidc.sh install)" && go test -run RealOIDCProvider .

// oidcProvider is a running provider.mjs.
type oidcProvider struct {
	issuer string
	stdin  io.WriteCloser
}

// startOIDCProvider starts provider.mjs and waits until it serves: the
// issuer line it prints once it listens, then its discovery document
// from that issuer. A start that stalls is killed and tried once more
// (twice in CI a start stopped for minutes right after node loaded the
// provider's modules, on a loaded machine); a failure shows everything
// each attempt printed. Closing its stdin (at cleanup) stops it.
func startOIDCProvider(t *testing.T) *oidcProvider {
	t.Helper()
	dir := os.Getenv("DELTADB_OIDC_PROVIDER_DIR")
	node, err := exec.LookPath("node")
	if dir == "" || err != nil {
		msg := "no OpenID provider: run eval \"$(bash .ci/oidc.sh install)\" (needs node)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// It takes 1-4 s on an idle machine (node loads the provider's
	// modules and makes three signing keys); the budget is for a loaded
	// two-core one, and stretches with the load.
	var why []string
	for attempt := 1; attempt <= 2; attempt++ {
		p, failed := tryOIDCProvider(t, node, dir, time.Minute)
		if p != nil {
			return p
		}
		why = append(why, fmt.Sprintf("attempt %d: %s", attempt, failed))
	}
	t.Fatalf("provider.mjs did not serve:\n%s", strings.Join(why, "\n"))
	return nil
}

// tryOIDCProvider starts provider.mjs once and waits up to budget
// (stretched by the load) until it serves; on failure it stops it and
// says why, with everything it printed.
func tryOIDCProvider(t *testing.T, node, dir string, budget time.Duration) (*oidcProvider, string) {
	t.Helper()
	cmd := exec.Command(node, filepath.Join(".ci", "oidc", "provider.mjs"))
	cmd.Env = append(os.Environ(), "OIDC_PROVIDER_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	printed := &syncBuffer{} // stdout and stderr, as they come
	cmd.Stderr = printed
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	issuers := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		scanIssuer(stdout, printed, issuers)
	}()
	exited := make(chan struct{})
	go func() { <-read; cmd.Wait(); close(exited) }() // Wait closes stdout: after its reads
	stop := func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(scaled(10 * time.Second)):
			cmd.Process.Kill()
			<-exited
		}
	}
	w := newWait(t, "provider.mjs to serve", budget)
	fail := func(why string) (*oidcProvider, string) {
		cmd.Process.Kill()
		stop()
		return nil, fmt.Sprintf("provider.mjs %s (%v); it printed:\n%s", why, w, printed)
	}
	var issuer string
	for issuer == "" {
		select {
		case issuer = <-issuers:
		case <-exited:
			return fail("exited before printing its issuer")
		case <-time.After(100 * time.Millisecond):
			if w.over() {
				return fail("printed no issuer")
			}
		}
	}
	for !servesDiscovery(issuer) {
		if w.over() {
			return fail("printed its issuer but does not serve its discovery document")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(stop)
	return &oidcProvider{issuer: issuer, stdin: stdin}, ""
}

// scanIssuer copies r's lines to out and sends the issuer of the first
// line that is provider.mjs's {"issuer": ...} to issuer.
func scanIssuer(r io.Reader, out io.Writer, issuer chan<- string) {
	s := bufio.NewScanner(r)
	found := false
	for s.Scan() {
		fmt.Fprintf(out, "stdout: %s\n", s.Text())
		var line struct {
			Issuer string `json:"issuer"`
		}
		if !found && json.Unmarshal(s.Bytes(), &line) == nil && line.Issuer != "" {
			found = true
			issuer <- line.Issuer
		}
	}
	io.Copy(io.Discard, r) // a line too long for the scanner
}

// servesDiscovery reports whether issuer answers its discovery document
// naming itself.
func servesDiscovery(issuer string) bool {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer string `json:"issuer"`
	}
	return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&doc) == nil && doc.Issuer == issuer
}

// token gets an access token for client with the client-credentials grant.
func (p *oidcProvider) token(t *testing.T, client string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"deltadb"}}
	req, err := http.NewRequest("POST", p.issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, "deltadb-test-client-secret")
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	p.post(t, req, &out)
	if out.AccessToken == "" || !looksLikeJWT(out.AccessToken) {
		t.Fatalf("token of %s = %+v, want a JWT access token", client, out)
	}
	return out.AccessToken
}

// rotate makes the provider sign with new keys (the old ones stay
// published) and returns the new key IDs.
func (p *oidcProvider) rotate(t *testing.T) []string {
	t.Helper()
	req, err := http.NewRequest("POST", p.issuer+"/test/rotate", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Kids []string `json:"kids"`
	}
	p.post(t, req, &out)
	return out.Kids
}

func (p *oidcProvider) post(t *testing.T, req *http.Request, out any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, out) != nil {
		t.Fatalf("POST %s = %d %s", req.URL, resp.StatusCode, body)
	}
}

// rsaPublicPEM is the PEM of the provider's first RSA signing key, as
// anyone can fetch it from the JWKS.
func (p *oidcProvider) rsaPublicPEM(t *testing.T) []byte {
	t.Helper()
	code, body, _ := httpCall(t, "GET", p.issuer+"/jwks", "", nil)
	var set struct{ Keys []rawJWK }
	if code != 200 || json.Unmarshal(body, &set) != nil {
		t.Fatalf("GET /jwks = %d %s", code, body)
	}
	for _, k := range set.Keys {
		if k.Kty == "RSA" {
			n, _ := base64.RawURLEncoding.DecodeString(k.N)
			e, _ := base64.RawURLEncoding.DecodeString(k.E)
			der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())})
			if err != nil {
				t.Fatal(err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		}
	}
	t.Fatal("the provider publishes no RSA key")
	return nil
}

// kidOf is the kid in a token's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	jwt, err := parseJWT(token)
	if err != nil {
		t.Fatal(err)
	}
	return jwt.header.Kid
}

// TestRealOIDCProvider: tokens of a real provider reach exactly what
// their claims allow, on REST and on gRPC Process; tokens it did not
// issue for us, changed, or forged with its public key are refused; a
// flood of unknown key IDs costs one JWKS fetch; its key rotation is
// followed without a restart; its tokens expire.
func TestRealOIDCProvider(t *testing.T) {
	prov := startOIDCProvider(t)
	ts := newAuthTestServer(t, authConfig{maxFailures: -1})
	clock := ts.clock
	// The provider stamps tokens with the real time: the test's clock
	// catches up with it before each step (and moves on by itself where a
	// step needs time to pass), so a slow machine cannot make a fresh
	// token look issued in the future.
	catchUp := func() {
		if d := time.Since(clock.now()); d > 0 {
			clock.advance(d)
		}
	}
	catchUp()
	v := newOIDCVerifier(oidcConfig{issuer: prov.issuer, audience: "https://deltadb.test", permsClaim: "deltadb.permissions",
		dbsClaim: "deltadb.databases", skew: 30 * time.Second, now: clock.now})
	if err := v.start(context.Background()); err != nil {
		t.Fatalf("start against the provider: %v", err)
	}
	ts.auth.oidc = v
	tok := map[string]string{}
	for _, c := range []string{"reader", "writer", "scoped", "admin", "nobody", "otheraud"} {
		tok[c] = prov.token(t, c)
	}

	me := ts.mustDo(t, "GET", "/api/me", tok["scoped"], "", 200)
	if want := `{"client_id":"oidc:scoped","name":"scoped","permissions":["read","write"],"is_admin":false,"databases":["team-a","shared*"],"subject":"scoped"}`; strings.TrimSpace(string(me)) != want {
		t.Errorf("GET /api/me (scoped) = %s, want %s", me, want)
	}
	// REST: each token reaches exactly what its claims allow.
	for _, c := range []struct {
		client, method, path, body string
		want                       int
	}{
		{"admin", "PUT", "/entity/team-a", `{"k":1}`, 200},
		{"admin", "PUT", "/entity/team-b", `{"k":1}`, 200},
		{"admin", "GET", "/api/keys", "", 200},
		{"reader", "GET", "/entity/team-b?key=k", "", 200},
		{"reader", "PUT", "/entity/team-a", `{"k":2}`, 403},
		{"reader", "GET", "/api/keys", "", 403},
		{"writer", "PUT", "/entity/team-b", `{"k":3}`, 200},
		{"writer", "DELETE", "/entity/team-b?key=k", "", 200},
		{"writer", "GET", "/api/keys", "", 403},
		{"scoped", "PUT", "/entity/team-a", `{"k":4}`, 200},
		{"scoped", "PUT", "/entity/shared-x", `{"k":4}`, 200},
		{"scoped", "GET", "/entity/team-a?key=k", "", 200},
		{"scoped", "GET", "/entity/team-b?key=k", "", 403},
		{"scoped", "PUT", "/entity/team-b", `{"k":5}`, 403},
		{"nobody", "GET", "/entity/team-a?key=k", "", 403},
		{"nobody", "GET", "/api/me", "", 200},
	} {
		if rec := ts.do(c.method, c.path, tok[c.client], c.body, ""); rec.Code != c.want {
			t.Errorf("%s %s %s = %d %s, want %d", c.client, c.method, c.path, rec.Code, rec.Body, c.want)
		}
	}

	// gRPC Process, through the same authenticator.
	// A store of its own: its worker has another master key, so it could
	// not open the data keys the REST worker made in ts.st.
	m := serveTestMain(t, 1<<20, newMemStore(), ts.auth)
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	for _, c := range []struct {
		client, op, db string
		want           codes.Code
	}{
		{"reader", "PUT", "team-a", codes.PermissionDenied},
		{"writer", "PUT", "team-a", codes.OK},
		{"reader", "GET", "team-a", codes.OK},
		{"scoped", "PUT", "team-a", codes.OK},
		{"scoped", "PUT", "team-b", codes.PermissionDenied},
		{"scoped", "GET", "team-b", codes.PermissionDenied},
		{"admin", "PUT", "team-b", codes.OK},
		{"nobody", "GET", "team-a", codes.PermissionDenied},
		{"otheraud", "GET", "team-a", codes.Unauthenticated},
	} {
		_, err := client.Process(context.Background(), &pb.ProcessRequest{DatabaseName: c.db, EntityKey: "g", Operation: c.op, Payload: []byte(`7`), Token: tok[c.client]})
		if status.Code(err) != c.want {
			t.Errorf("gRPC %s %s %s = %v, want %v", c.client, c.op, c.db, err, c.want)
		}
	}

	// Refused: each with the sentence of the check that failed.
	parts := strings.Split(tok["reader"], ".")
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(payload, &claims)
	claims["deltadb"] = map[string]any{"permissions": []string{"admin"}}
	tampered := parts[0] + "." + b64JSON(t, claims) + "." + parts[2]
	noneHdr := b64JSON(t, map[string]any{"alg": "none", "kid": kidOf(t, tok["reader"])})
	hsInput := b64JSON(t, map[string]any{"alg": "HS256", "kid": kidOf(t, tok["reader"])}) + "." + b64JSON(t, claims)
	mac := hmac.New(sha256.New, prov.rsaPublicPEM(t))
	mac.Write([]byte(hsInput))
	other := startOIDCProvider(t) // another issuer, with keys of its own
	catchUp()
	for _, c := range []struct {
		name, token, want string
	}{
		{"wrong audience", tok["otheraud"], "audience (aud) does not include https://deltadb.test"},
		{"another issuer", other.token(t, "admin"), "does not publish"},
		{"tampered payload", tampered, "signature does not verify"},
		{"alg none", noneHdr + "." + b64JSON(t, claims) + ".", "alg none"},
		{"HS256 with the provider's public key", hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), "HMAC-signed"},
		{"oversized", tok["admin"] + strings.Repeat("A", 16<<10), "larger than 16 KiB"},
	} {
		rec := ts.do("GET", "/api/me", c.token, "", "")
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), c.want) || strings.Contains(rec.Body.String(), "eyJ") {
			t.Errorf("%s: GET /api/me = %d %s, want 401 containing %q and not the token", c.name, rec.Code, rec.Body, c.want)
		}
	}

	// A flood of made-up key IDs: one JWKS fetch.
	catchUp()
	clock.advance(10 * time.Second)
	before := v.fetches.Load()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			forged := b64JSON(t, map[string]any{"alg": "RS256", "kid": fmt.Sprintf("made-up-%d", i)}) + "." + parts[1] + "." + parts[2]
			if _, err := ts.auth.authenticateFrom(forged, ""); !errors.Is(err, errUnauthenticated) {
				t.Errorf("token with a made-up kid: %v, want 401", err)
			}
		})
	}
	wg.Wait()
	if got := v.fetches.Load() - before; got != 1 {
		t.Errorf("JWKS fetches for a flood of 100 unknown kids = %d, want 1", got)
	}

	// Key rotation: the provider signs with a new key; no restart.
	kids := prov.rotate(t)
	rotated := prov.token(t, "writer")
	if k := kidOf(t, rotated); !strings.Contains(strings.Join(kids, " "), k) {
		t.Fatalf("token after rotation is signed by %s, not one of the new keys %v", k, kids)
	}
	catchUp()
	clock.advance(10 * time.Second)
	ts.mustDo(t, "PUT", "/entity/team-a", rotated, `{"after-rotation":1}`, 200)
	ts.mustDo(t, "GET", "/entity/team-a?key=k", tok["reader"], "", 200) // the old key is still published

	// Expiry: the provider's tokens live 600 s.
	clock.advance(600*time.Second + 31*time.Second)
	if rec := ts.do("GET", "/api/me", rotated, "", ""); rec.Code != 401 || !strings.Contains(rec.Body.String(), "expired") {
		t.Errorf("GET /api/me with an expired token = %d %s, want 401 naming the expiry", rec.Code, rec.Body)
	}
}

// TestRealOIDCProviderBinary: the binary takes the -oidc-* flags: with the
// provider up it serves its tokens over REST; with -oidc-required and the
// provider unreachable it refuses to start.
func TestRealOIDCProviderBinary(t *testing.T) {
	needBinary(t)
	prov := startOIDCProvider(t)
	n, _ := startDefault(t, "-oidc-issuer="+prov.issuer, "-oidc-audience=https://deltadb.test",
		"-oidc-databases-claim=deltadb.databases", "-oidc-required")
	if code, body, _ := n.call("GET", "/api/me", prov.token(t, "scoped"), nil); code != 200 || !strings.Contains(string(body), `"subject":"scoped"`) {
		t.Errorf("GET /api/me with a provider token = %d %s, want 200 with subject scoped", code, body)
	}
	if code, body, _ := n.call("PUT", "/entity/team-a", prov.token(t, "reader"), `{"k":1}`); code != 403 {
		t.Errorf("PUT with a read-only provider token = %d %s, want 403", code, body)
	}
	if code, body, _ := n.call("PUT", "/entity/team-a", prov.token(t, "writer"), `{"k":1}`); code != 200 {
		t.Errorf("PUT with a read-write provider token = %d %s, want 200", code, body)
	}

	down := launch(t, keyEnv, "-shared-fs="+filepath.Join(t.TempDir(), "db"), "-oidc-issuer=http://"+refusedAddr(t),
		"-oidc-audience=https://deltadb.test", "-oidc-required")
	if log := down.exitErr(); !strings.Contains(log, "-oidc-issuer") {
		t.Errorf("start with -oidc-required and an unreachable issuer: stderr %q, want an error naming -oidc-issuer", log)
	}
}
