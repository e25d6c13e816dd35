package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// The tests here forge tokens with keys of their own, published by a
// small issuer (testIssuer), to reach what no real provider signs: alg
// none, HMAC with the public key, tampered payloads, made-up key IDs.
// oidc_provider_test.go runs the real flows against a real provider.

const testAudience = "https://deltadb.test"

// testKeys are generated once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() map[string]*testSigner {
	r1, _ := rsa.GenerateKey(rand.Reader, 2048)
	r2, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return map[string]*testSigner{
		"rs":    {kid: "rs-1", alg: "RS256", rsa: r1},
		"ps":    {kid: "ps-1", alg: "PS256", rsa: r2},
		"es":    {kid: "es-1", alg: "ES256", ec: ec},
		"small": {kid: "small-1", alg: "RS256", rsa: small},
	}
})

// testSigner is one signing key of the test issuer.
type testSigner struct {
	kid, alg string
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
}

// jwk is the signer's public key as its issuer publishes it.
func (s *testSigner) jwk() map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	if s.ec != nil {
		return map[string]any{"kty": "EC", "crv": "P-256", "kid": s.kid, "alg": s.alg, "use": "sig",
			"x": b64(s.ec.X.FillBytes(make([]byte, 32))), "y": b64(s.ec.Y.FillBytes(make([]byte, 32)))}
	}
	return map[string]any{"kty": "RSA", "kid": s.kid, "alg": s.alg, "use": "sig",
		"n": b64(s.rsa.N.Bytes()), "e": b64(big.NewInt(int64(s.rsa.E)).Bytes())}
}

// token signs claims with the signer's own algorithm and kid.
func (s *testSigner) token(t testing.TB, claims map[string]any) string {
	return s.tokenWith(t, map[string]any{"alg": s.alg, "kid": s.kid, "typ": "at+jwt"}, claims)
}

// tokenWith signs claims under header, with the algorithm the header
// names (HS256 uses the RSA public key in PEM as the secret, the classic
// confusion attack).
func (s *testSigner) tokenWith(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, claims)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch header["alg"] {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, h[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, s.rsa, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, s.ec, h[:])
		if err == nil {
			sig = append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
		}
	case "HS256":
		der, _ := x509.MarshalPKIXPublicKey(&s.rsa.PublicKey)
		mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	case "none":
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// testIssuer serves discovery and a JWKS on loopback and counts the JWKS
// fetches.
type testIssuer struct {
	srv     *httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	keys    []map[string]any
	// header is added to each JWKS answer (cache headers).
	header http.Header
}

func newTestIssuer(t testing.TB, signers ...*testSigner) *testIssuer {
	ti := &testIssuer{header: http.Header{}}
	ti.publish(signers...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		ti.mu.Lock()
		defer ti.mu.Unlock()
		for k, v := range ti.header {
			w.Header()[k] = v
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": ti.keys})
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

// publish replaces the published keys.
func (ti *testIssuer) publish(signers ...*testSigner) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = nil
	for _, s := range signers {
		ti.keys = append(ti.keys, s.jwk())
	}
}

// claims are valid claims for the issuer at now, with perms in
// deltadb.permissions.
func (ti *testIssuer) claims(now time.Time, perms ...string) map[string]any {
	return map[string]any{"iss": ti.srv.URL, "aud": testAudience, "sub": "svc-1",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "deltadb": map[string]any{"permissions": perms}}
}

// newTestVerifier is a started verifier of ti on clock, as configured by
// cfg's non-zero fields.
func newTestVerifier(t *testing.T, ti *testIssuer, clock *fakeClock, cfg oidcConfig) *oidcVerifier {
	t.Helper()
	cfg.issuer, cfg.audience, cfg.now = ti.srv.URL, testAudience, clock.now
	if cfg.permsClaim == "" {
		cfg.permsClaim = "deltadb.permissions"
	}
	v := newOIDCVerifier(cfg)
	if err := v.start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	return v
}

// TestOIDCAlgorithms: tokens signed with RS256, PS256 and ES256 by keys
// the issuer publishes are accepted, and give the principal of their
// claims.
func TestOIDCAlgorithms(t *testing.T) {
	k := testKeys()
	ti := newTestIssuer(t, k["rs"], k["ps"], k["es"])
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{})
	for _, name := range []string{"rs", "ps", "es"} {
		p, err := v.verify(k[name].token(t, ti.claims(clock.now(), "read", "write")))
		if err != nil {
			t.Errorf("%s token: %v", k[name].alg, err)
			continue
		}
		if p.subject != "svc-1" || p.clientID != "oidc:svc-1" || p.perms != permRead|permWrite || p.databases != nil || p.admin {
			t.Errorf("%s token: principal %+v, want subject svc-1 with read and write on all databases", k[name].alg, p)
		}
	}
}

// TestOIDCRefusals: every check refuses the token it is for, with a
// sentence naming the check, and a 401 kind.
func TestOIDCRefusals(t *testing.T) {
	k := testKeys()
	ti := newTestIssuer(t, k["rs"], k["ps"], k["es"], k["small"])
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{skew: 30 * time.Second})
	now := clock.now()
	with := func(change func(c map[string]any)) map[string]any {
		c := ti.claims(now, "admin")
		change(c)
		return c
	}
	rs := k["rs"]
	tampered := func() string {
		parts := strings.Split(rs.token(t, ti.claims(now, "read")), ".")
		parts[1] = b64JSON(t, ti.claims(now, "admin"))
		return strings.Join(parts, ".")
	}()
	for _, c := range []struct {
		name, token, want string
	}{
		{"expired", rs.token(t, with(func(c map[string]any) { c["exp"] = now.Add(-31 * time.Second).Unix() })), "expired"},
		{"no exp", rs.token(t, with(func(c map[string]any) { delete(c, "exp") })), "no expiry"},
		{"exp not a number", rs.token(t, with(func(c map[string]any) { c["exp"] = "tomorrow" })), "exp claim is not a NumericDate"},
		{"not yet valid", rs.token(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), "not valid before"},
		{"issued in the future", rs.token(t, with(func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), "issued in the future"},
		{"wrong audience", rs.token(t, with(func(c map[string]any) { c["aud"] = "https://other.test" })), "audience (aud) does not include"},
		{"wrong audience list", rs.token(t, with(func(c map[string]any) { c["aud"] = []string{"a", "b"} })), "audience (aud) does not include"},
		{"no audience", rs.token(t, with(func(c map[string]any) { delete(c, "aud") })), "audience (aud) does not include"},
		{"wrong issuer", rs.token(t, with(func(c map[string]any) { c["iss"] = "https://evil.test" })), "issuer (iss) is not"},
		{"no subject", rs.token(t, with(func(c map[string]any) { delete(c, "sub") })), "no subject"},
		{"tampered payload", tampered, "signature does not verify"},
		{"alg none", rs.tokenWith(t, map[string]any{"alg": "none", "kid": rs.kid}, ti.claims(now, "admin")), "alg none"},
		{"alg None", rs.tokenWith(t, map[string]any{"alg": "None", "kid": rs.kid}, ti.claims(now, "admin")), "alg none"},
		{"no alg", rs.tokenWith(t, map[string]any{"kid": rs.kid}, ti.claims(now, "admin")), "alg none"},
		{"HS256 with the public key", rs.tokenWith(t, map[string]any{"alg": "HS256", "kid": rs.kid}, ti.claims(now, "admin")), "HMAC-signed"},
		{"RS256 header on a PS256 key", k["ps"].tokenWith(t, map[string]any{"alg": "RS256", "kid": "ps-1"}, ti.claims(now, "admin")), "not the one of its signing key"},
		{"ES256 header on an RSA key", k["es"].tokenWith(t, map[string]any{"alg": "ES256", "kid": "rs-1"}, ti.claims(now, "admin")), "not the one of its signing key"},
		{"RSA key under 2048 bits", k["small"].token(t, ti.claims(now, "admin")), "does not publish"},
		{"unknown kid", rs.tokenWith(t, map[string]any{"alg": "RS256", "kid": "nope"}, ti.claims(now, "admin")), "does not publish"},
		{"no kid among several keys", rs.tokenWith(t, map[string]any{"alg": "RS256"}, ti.claims(now, "admin")), "names no key"},
		{"critical extension", rs.tokenWith(t, map[string]any{"alg": "RS256", "kid": rs.kid, "crit": []string{"exp"}, "exp": 1}, ti.claims(now, "admin")), "critical"},
		{"oversized", rs.token(t, with(func(c map[string]any) { c["pad"] = strings.Repeat("x", 16<<10) })), "larger than 16 KiB"},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.e30", "three dot-separated parts"},
		{"header not base64", "eyJ!!.e30.AA", "header is not base64url"},
		{"payload not an object", rs.tokenWith(t, map[string]any{"alg": "RS256", "kid": rs.kid}, nil), "not a JSON object"},
		{"permissions not strings", rs.token(t, with(func(c map[string]any) { c["deltadb"] = map[string]any{"permissions": []any{1}} })), "not a string"},
	} {
		_, err := v.verify(c.token)
		if !errors.Is(err, errUnauthenticated) || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("%s: verify = %v, want a 401 containing %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), c.token) || strings.Contains(err.Error(), "eyJ") {
			t.Errorf("%s: the error %q repeats the token", c.name, err)
		}
	}
	// The skew tolerates a token just expired, and one just not yet valid.
	for name, claims := range map[string]map[string]any{
		"expired 29 s ago":     with(func(c map[string]any) { c["exp"] = now.Add(-29 * time.Second).Unix() }),
		"valid in 29 s":        with(func(c map[string]any) { c["nbf"] = now.Add(29 * time.Second).Unix() }),
		"audience in the list": with(func(c map[string]any) { c["aud"] = []string{"x", testAudience} }),
	} {
		if _, err := v.verify(rs.token(t, claims)); err != nil {
			t.Errorf("%s: verify = %v, want accepted", name, err)
		}
	}
}

// TestOIDCSingleKeyWithoutKid: a token without a kid is checked against
// the issuer's only key.
func TestOIDCSingleKeyWithoutKid(t *testing.T) {
	es := testKeys()["es"]
	ti := newTestIssuer(t, es)
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{})
	if _, err := v.verify(es.tokenWith(t, map[string]any{"alg": "ES256"}, ti.claims(clock.now(), "read"))); err != nil {
		t.Errorf("token without kid, issuer with one key: %v", err)
	}
}

// TestOIDCUnknownKidFlood: concurrent tokens with made-up key IDs cost one
// JWKS fetch per refetch interval, however many arrive.
func TestOIDCUnknownKidFlood(t *testing.T) {
	rs := testKeys()["rs"]
	ti := newTestIssuer(t, rs)
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{})
	if got := ti.fetches.Load(); got != 1 {
		t.Fatalf("JWKS fetches after start = %d, want 1", got)
	}
	flood := func() {
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				tok := rs.tokenWith(t, map[string]any{"alg": "RS256", "kid": fmt.Sprintf("random-%d", i)}, ti.claims(clock.now(), "admin"))
				if _, err := v.verify(tok); !errors.Is(err, errUnauthenticated) {
					t.Errorf("token with made-up kid: %v, want refused", err)
				}
			})
		}
		wg.Wait()
	}
	flood() // within 10 s of the start fetch: none
	if got := ti.fetches.Load(); got != 1 {
		t.Errorf("JWKS fetches after a flood right after start = %d, want 1", got)
	}
	clock.advance(10 * time.Second)
	flood()
	if got := ti.fetches.Load(); got != 2 {
		t.Errorf("JWKS fetches after a flood 10 s later = %d, want 2 (one refetch)", got)
	}
	if got, want := v.fetches.Load(), ti.fetches.Load(); got != want {
		t.Errorf("verifier counts %d fetches, the issuer saw %d", got, want)
	}
}

// TestOIDCRotation: a token signed by a key published after the last
// fetch is accepted once the interval allows a refetch; a key the issuer
// withdrew is refused once the cached JWKS goes stale.
func TestOIDCRotation(t *testing.T) {
	k := testKeys()
	ti := newTestIssuer(t, k["rs"])
	ti.header.Set("Cache-Control", "public, max-age=300")
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{})
	old := k["rs"].token(t, ti.claims(clock.now(), "read"))
	ti.publish(k["ps"], k["rs"])
	clock.advance(10 * time.Second)
	if _, err := v.verify(k["ps"].token(t, ti.claims(clock.now(), "read"))); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
	ti.publish(k["ps"])
	if _, err := v.verify(old); err != nil {
		t.Errorf("token of the withdrawn key while the JWKS is fresh: %v, want accepted (max-age 300)", err)
	}
	clock.advance(300 * time.Second)
	if _, err := v.verify(old); err == nil || !strings.Contains(err.Error(), "does not publish") {
		t.Errorf("token of the withdrawn key after max-age: %v, want refused", err)
	}
	if got := ti.fetches.Load(); got != 3 {
		t.Errorf("JWKS fetches = %d, want 3 (start, new kid, stale)", got)
	}
}

// TestOIDCProviderDown: with the provider gone, the keys fetched before
// keep serving; never fetched, tokens are refused with a sentence that
// says so.
func TestOIDCProviderDown(t *testing.T) {
	rs := testKeys()["rs"]
	ti := newTestIssuer(t, rs)
	ti.header.Set("Cache-Control", "no-store")
	clock := &fakeClock{t: authTestStart}
	v := newTestVerifier(t, ti, clock, oidcConfig{})
	tok := rs.token(t, ti.claims(clock.now(), "read"))
	ti.srv.Close()
	clock.advance(time.Minute)
	if _, err := v.verify(tok); err != nil {
		t.Errorf("provider down, keys cached: %v, want accepted", err)
	}
	cold := newOIDCVerifier(oidcConfig{issuer: ti.srv.URL, audience: testAudience, permsClaim: "deltadb.permissions", now: clock.now})
	if err := cold.start(context.Background()); err == nil {
		t.Error("start with the provider down = nil, want an error")
	}
	if _, err := cold.verify(tok); !errors.Is(err, errProviderUnavailable) || errors.Is(err, errUnauthenticated) {
		t.Errorf("verify, provider never reached = %v, want the provider unavailable (503), not a refused token", err)
	}
}

// TestOIDCProviderDownAnswer: a bearer token whose signing key cannot be
// had because the OpenID provider is down (never reached; or, once keys
// were fetched, a key they lack while the fetch fails) is answered 503
// saying the identity provider is unavailable, with the request ID under
// which the cause is logged, and is not counted as a failed
// authentication: a client is never rate limited for the provider's
// outage. On the old code it was 401 "the OpenID provider's signing keys
// could not be fetched", counted against the limit (429 after 3), or, for
// the sign-in, 503 "storage or workers unavailable".
func TestOIDCProviderDownAnswer(t *testing.T) {
	k := testKeys()
	ti := newTestIssuer(t, k["rs"])
	clock := &fakeClock{t: authTestStart}
	warm := newTestVerifier(t, ti, clock, oidcConfig{})
	cold := newOIDCVerifier(oidcConfig{issuer: "http://" + refusedAddr(t), audience: testAudience, permsClaim: "deltadb.permissions", now: clock.now})
	cold.start(context.Background())
	// The key "ps" is not among those warm fetched; the issuer goes away.
	newKey := k["ps"].token(t, ti.claims(clock.now(), "read"))
	ti.srv.Close()
	clock.advance(time.Minute) // past the wait between two fetches
	for _, c := range []struct {
		name  string
		v     *oidcVerifier
		token string
	}{
		{"provider never reached", cold, k["rs"].token(t, ti.claims(clock.now(), "read"))},
		{"a key not fetched, provider down", warm, newKey},
	} {
		var logs syncBuffer
		ts := newAuthTestServer(t, authConfig{oidc: c.v, maxFailures: 3})
		log, err := newLogger(&logs, logFormatJSON, slog.LevelInfo)
		if err != nil {
			t.Fatal(err)
		}
		ts.rest.log = log
		for i := range 5 {
			req := httptest.NewRequest("GET", "/api/me", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			req.Header.Set("X-Request-ID", fmt.Sprintf("idp-down-%d", i))
			rec := httptest.NewRecorder()
			ts.rest.ServeHTTP(rec, req)
			var body errorBody
			json.Unmarshal(rec.Body.Bytes(), &body)
			want := fmt.Sprintf("the identity provider (the OpenID provider) could not be reached or gave no usable answer; try again later (request ID idp-down-%d)", i)
			if rec.Code != http.StatusServiceUnavailable || body.Error != want {
				t.Errorf("%s: GET /api/me #%d = %d %s, want 503 %q", c.name, i+1, rec.Code, rec.Body, want)
			}
		}
		lines := linesWith(parseLog(t, logs.String(), logFormatJSON), logLine{"msg": "request failed", "level": "ERROR", "request_id": "idp-down-0", "status": "503"})
		if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["err"]), "connection refused") {
			t.Errorf("%s: log:\n%s\nwant one ERROR \"request failed\" of idp-down-0 with the failed fetch", c.name, logs.String())
		}
	}
}

// TestOIDCDiscoveryChecksIssuer: a discovery document naming another
// issuer is refused (OpenID Connect Discovery §4.3).
func TestOIDCDiscoveryChecksIssuer(t *testing.T) {
	ti := newTestIssuer(t, testKeys()["rs"])
	v := newOIDCVerifier(oidcConfig{issuer: ti.srv.URL + "/", audience: testAudience, permsClaim: "p"})
	if err := v.start(context.Background()); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Errorf("start with issuer %s/ = %v, want the issuer mismatch", ti.srv.URL, err)
	}
}

func TestCacheLifetime(t *testing.T) {
	now := authTestStart
	date := now.Format(http.TimeFormat)
	for _, c := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{nil, time.Hour},
		{map[string]string{"Cache-Control": "public, max-age=600"}, 10 * time.Minute},
		{map[string]string{"Cache-Control": "max-age=600", "Age": "100"}, 500 * time.Second},
		{map[string]string{"Cache-Control": "max-age=\"60\""}, time.Minute},
		{map[string]string{"Cache-Control": "no-cache"}, 0},
		{map[string]string{"Cache-Control": "max-age=600, no-store"}, 0},
		{map[string]string{"Cache-Control": "max-age=99999999"}, 24 * time.Hour},
		{map[string]string{"Cache-Control": "max-age=60", "Expires": now.Add(time.Hour).Format(http.TimeFormat)}, time.Minute},
		{map[string]string{"Expires": now.Add(5 * time.Minute).Format(http.TimeFormat), "Date": date}, 5 * time.Minute},
		{map[string]string{"Expires": "0"}, 0},
		{map[string]string{"Expires": now.Add(-time.Minute).Format(http.TimeFormat), "Date": date}, 0},
	} {
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		if got := cacheLifetime(h, now); got != c.want {
			t.Errorf("cacheLifetime(%v) = %v, want %v", c.h, got, c.want)
		}
	}
}

// TestOIDCClaimMapping: the permissions and databases claims at their
// configured paths, through a role map or as permission names.
func TestOIDCClaimMapping(t *testing.T) {
	rs := testKeys()["rs"]
	ti := newTestIssuer(t, rs)
	clock := &fakeClock{t: authTestStart}
	keycloak := newTestVerifier(t, ti, clock, oidcConfig{permsClaim: "realm_access.roles",
		roleMap: map[string]perm{"ddb-reader": permRead, "ddb-writer": permRead | permWrite, "ddb-admin": permAdmin}})
	auth0 := newTestVerifier(t, ti, clock, oidcConfig{permsClaim: "https://deltadb.example/permissions", dbsClaim: "https://deltadb.example/databases"})
	scoped := newTestVerifier(t, ti, clock, oidcConfig{dbsClaim: "deltadb.databases"})
	with := func(extra map[string]any) string {
		c := ti.claims(clock.now())
		delete(c, "deltadb")
		for k, v := range extra {
			c[k] = v
		}
		return rs.token(t, c)
	}
	for _, c := range []struct {
		name  string
		v     *oidcVerifier
		token string
		perms perm
		dbs   []string
	}{
		{"keycloak reader", keycloak, with(map[string]any{"realm_access": map[string]any{"roles": []string{"offline_access", "ddb-reader"}}}), permRead, nil},
		{"keycloak writer", keycloak, with(map[string]any{"realm_access": map[string]any{"roles": []string{"ddb-writer", "default-roles-x"}}}), permRead | permWrite, nil},
		{"keycloak admin", keycloak, with(map[string]any{"realm_access": map[string]any{"roles": []string{"ddb-admin"}}}), permAdmin, nil},
		{"role map ignores bare names", keycloak, with(map[string]any{"realm_access": map[string]any{"roles": []string{"admin", "write"}}}), 0, nil},
		{"no roles claim", keycloak, with(nil), 0, nil},
		{"auth0 namespaced", auth0, with(map[string]any{"https://deltadb.example/permissions": []string{"read"}, "https://deltadb.example/databases": []string{"app-*"}}), permRead, []string{"app-*"}},
		{"space-separated string", auth0, with(map[string]any{"https://deltadb.example/permissions": "read write"}), permRead | permWrite, nil},
		{"unknown names grant nothing", auth0, with(map[string]any{"https://deltadb.example/permissions": []string{"superuser"}}), 0, nil},
		{"scoped", scoped, with(map[string]any{"deltadb": map[string]any{"permissions": []string{"write"}, "databases": []string{"team-a", "shared*"}}}), permWrite, []string{"team-a", "shared*"}},
		{"scoped to nothing", scoped, with(map[string]any{"deltadb": map[string]any{"permissions": []string{"read"}, "databases": []string{}}}), permRead, []string{}},
		{"databases claim absent", scoped, with(map[string]any{"deltadb": map[string]any{"permissions": []string{"read"}}}), permRead, nil},
	} {
		p, err := c.v.verify(c.token)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if p.perms != c.perms || !slices.Equal(p.databases, c.dbs) || (p.databases == nil) != (c.dbs == nil) {
			t.Errorf("%s: perms %v databases %#v, want %v %#v", c.name, permNames(p.perms), p.databases, permNames(c.perms), c.dbs)
		}
	}
	bad := with(map[string]any{"deltadb": map[string]any{"permissions": []string{"read"}, "databases": []string{"../etc"}}})
	if _, err := scoped.verify(bad); !errors.Is(err, errUnauthenticated) || !strings.Contains(err.Error(), "not a database name") {
		t.Errorf("databases claim with ../etc: %v, want refused", err)
	}
}

func TestParseRoleMap(t *testing.T) {
	m, err := parseRoleMap(" ddb-reader=read, ddb-writer=read+write,ddb-admin=admin")
	want := map[string]perm{"ddb-reader": permRead, "ddb-writer": permRead | permWrite, "ddb-admin": permAdmin}
	if err != nil || len(m) != len(want) || m["ddb-reader"] != want["ddb-reader"] || m["ddb-writer"] != want["ddb-writer"] || m["ddb-admin"] != want["ddb-admin"] {
		t.Errorf("parseRoleMap = %v, %v; want %v", m, err, want)
	}
	if m, err := parseRoleMap(""); m != nil || err != nil {
		t.Errorf(`parseRoleMap("") = %v, %v; want nil, nil`, m, err)
	}
	for _, bad := range []string{"reader", "=read", "r=", "r=root", "r=read+", "a=read,,b=write"} {
		if _, err := parseRoleMap(bad); err == nil || !strings.Contains(err.Error(), "-oidc-role-map") {
			t.Errorf("parseRoleMap(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}

func TestOIDCFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-oidc-issuer", "https://id.example"}, "-oidc-audience: required"},
		{[]string{"-oidc-audience", "x"}, "-oidc-issuer"},
		{[]string{"-oidc-required"}, "-oidc-issuer"},
		{[]string{"-oidc-issuer", "id.example", "-oidc-audience", "x"}, "-oidc-issuer: \"id.example\" is not an http(s) URL"},
		{[]string{"-oidc-issuer", "https://id.example", "-oidc-audience", "x", "-oidc-clock-skew", "-1s"}, "-oidc-clock-skew"},
		{[]string{"-oidc-issuer", "https://id.example", "-oidc-audience", "x", "-oidc-permissions-claim", ""}, "-oidc-permissions-claim"},
		{[]string{"-oidc-role-map", "x=root"}, "-oidc-role-map"},
	} {
		_, err := parseFlags(c.args, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", c.args, err, c.want)
		}
	}
	cfg, err := parseFlags([]string{"-oidc-issuer", "https://id.example", "-oidc-audience", "x", "-oidc-role-map", "r=read"}, &strings.Builder{})
	if err != nil || cfg.oidc.permsClaim != "deltadb.permissions" || cfg.oidc.skew != 30*time.Second || cfg.oidc.roleMap["r"] != permRead {
		t.Errorf("parseFlags defaults = %+v, %v; want permissions claim deltadb.permissions, skew 30s, role map r=read", cfg.oidc, err)
	}
}

// TestOIDCRequiredStopsStart: with -oidc-required an unreachable issuer
// stops the start with an error naming the flag; without it the server
// starts (and logs).
func TestOIDCRequiredStopsStart(t *testing.T) {
	ti := newTestIssuer(t, testKeys()["rs"])
	url := ti.srv.URL
	ti.srv.Close()
	f := oidcFlags{issuer: url, audience: "x", permsClaim: "p", required: true}
	log := slog.New(slog.DiscardHandler)
	if _, err := startOIDC(context.Background(), f, log); err == nil || !strings.Contains(err.Error(), "-oidc-issuer") {
		t.Errorf("startOIDC(required, unreachable) = %v, want an error naming -oidc-issuer", err)
	}
	f.required = false
	if v, err := startOIDC(context.Background(), f, log); err != nil || v == nil {
		t.Errorf("startOIDC(not required, unreachable) = %v, %v; want a verifier", v, err)
	}
}

// TestOIDCOverRESTAndGRPC: a token reaches exactly what its claims allow
// on REST and on the client gRPC Process path; /api/me shows it; refused
// tokens are 401 with the check's sentence and count against the
// failed-auth limit.
func TestOIDCOverRESTAndGRPC(t *testing.T) {
	k := testKeys()
	ti := newTestIssuer(t, k["rs"], k["es"])
	ts := newAuthTestServer(t, authConfig{maxFailures: 3})
	clock := ts.clock
	ts.auth.oidc = newTestVerifier(t, ti, clock, oidcConfig{dbsClaim: "deltadb.databases"})
	tok := func(perms []string, dbs []string) string {
		c := ti.claims(clock.now(), perms...)
		if dbs != nil {
			c["deltadb"].(map[string]any)["databases"] = dbs
		}
		return k["es"].token(t, c)
	}
	reader, writer, admin := tok([]string{"read"}, nil), tok([]string{"read", "write"}, nil), tok([]string{"admin"}, nil)
	scoped := tok([]string{"read", "write"}, []string{"team-a"})

	me := ts.mustDo(t, "GET", "/api/me", scoped, "", 200)
	if want := `{"client_id":"oidc:svc-1","name":"svc-1","permissions":["read","write"],"is_admin":false,"databases":["team-a"],"subject":"svc-1"}`; strings.TrimSpace(string(me)) != want {
		t.Errorf("GET /api/me (scoped token) = %s, want %s", me, want)
	}
	ts.mustDo(t, "PUT", "/entity/team-a", writer, `{"k":1}`, 200)
	ts.mustDo(t, "PUT", "/entity/team-b", admin, `{"k":2}`, 200)
	ts.mustDo(t, "GET", "/entity/team-a?key=k", reader, "", 200)
	ts.mustDo(t, "PUT", "/entity/team-a", reader, `{"k":3}`, 403)
	ts.mustDo(t, "PUT", "/entity/team-a", scoped, `{"k":3}`, 200)
	ts.mustDo(t, "GET", "/entity/team-b?key=k", scoped, "", 403)
	ts.mustDo(t, "GET", "/api/keys", writer, "", 403)
	ts.mustDo(t, "GET", "/api/keys", admin, "", 200)

	// A store of its own: its worker has another master key, so it could
	// not open the data keys the REST worker made in ts.st.
	m := serveTestMain(t, 1<<20, newMemStore(), ts.auth)
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	ctx := context.Background()
	for _, c := range []struct {
		name, token, op, db string
		want                codes.Code
	}{
		{"reader PUT", reader, "PUT", "team-a", codes.PermissionDenied},
		{"writer PUT", writer, "PUT", "team-a", codes.OK},
		{"reader GET", reader, "GET", "team-a", codes.OK},
		{"scoped PUT in scope", scoped, "PUT", "team-a", codes.OK},
		{"scoped PUT out of scope", scoped, "PUT", "team-b", codes.PermissionDenied},
		{"admin PUT", admin, "PUT", "team-b", codes.OK},
		{"scoped GET out of scope", scoped, "GET", "team-b", codes.PermissionDenied},
	} {
		_, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: c.db, EntityKey: "g", Operation: c.op, Payload: []byte(`5`), Token: c.token})
		if status.Code(err) != c.want {
			t.Errorf("gRPC %s = %v, want %v", c.name, err, c.want)
		}
	}

	expired := k["rs"].token(t, func() map[string]any {
		c := ti.claims(clock.now(), "admin")
		c["exp"] = clock.now().Add(-time.Hour).Unix()
		return c
	}())
	if _, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "team-a", EntityKey: "k", Operation: "GET", Token: expired}); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
		t.Errorf("gRPC with an expired token = %v, want Unauthenticated naming the expiry", err)
	}
	for i := range 3 {
		rec := ts.do("GET", "/api/me", expired, "", "198.51.100.7:1")
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), "OIDC token refused: the token expired") || strings.Contains(rec.Body.String(), "eyJ") {
			t.Errorf("attempt %d with an expired token = %d %s, want 401 naming the expiry, not the token", i, rec.Code, rec.Body)
		}
	}
	if rec := ts.do("GET", "/api/me", expired, "", "198.51.100.7:1"); rec.Code != 429 {
		t.Errorf("4th failed attempt = %d %s, want 429 (limit 3)", rec.Code, rec.Body)
	}
	if rec := ts.do("GET", "/api/me", reader, "", "198.51.100.7:1"); rec.Code != 200 {
		t.Errorf("valid token from the limited address = %d, want 200", rec.Code)
	}
}

// FuzzOIDCVerify: no token, however mangled, panics the verifier or gets
// through without the signature of a published key.
func FuzzOIDCVerify(f *testing.F) {
	k := testKeys()
	ti := newTestIssuer(f, k["rs"], k["es"])
	clock := &fakeClock{t: authTestStart}
	v := newOIDCVerifier(oidcConfig{issuer: ti.srv.URL, audience: testAudience, permsClaim: "deltadb.permissions",
		dbsClaim: "deltadb.databases", now: clock.now, refetchEvery: time.Hour})
	if err := v.start(context.Background()); err != nil {
		f.Fatal(err)
	}
	valid := map[string]bool{}
	for _, s := range []*testSigner{k["rs"], k["es"]} {
		tok := s.token(f, ti.claims(clock.now(), "read"))
		valid[tok] = true
		f.Add(tok)
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJ..")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.verify(token)
		if err == nil && !valid[token] {
			t.Errorf("verify(%q) = %+v, want refused: only the seeds are signed", token, p)
		}
		if err != nil && !errors.Is(err, errUnauthenticated) {
			t.Errorf("verify(%q) = %v, want a 401", token, err)
		}
	})
}

// TestOIDCRefusesRedirectToAnotherOrigin is a hostile-input probe:
// the verifier followed a JWKS redirect to another host, whose keys then
// decided which tokens were genuine. Now a redirect of the JWKS or of
// discovery to another origin (scheme, host and port) is refused, and a
// token signed by the other origin's key with it; a redirect within the
// origin is still followed.
func TestOIDCRefusesRedirectToAnotherOrigin(t *testing.T) {
	k := testKeys()
	clock := &fakeClock{t: authTestStart}
	const discovery = "/.well-known/openid-configuration"
	for _, c := range []struct {
		name, path string
		elsewhere  bool // redirect to the other server, else within the origin
		wantErr    string
	}{
		{"jwks to another host", "/jwks", true, "redirect to another origin"},
		{"discovery to another host", discovery, true, "redirect to another origin"},
		{"jwks within the origin", "/jwks", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var base string
			// The other origin answers as the issuer would, naming it,
			// but with keys of its own.
			evil := http.NewServeMux()
			var evilSrv *httptest.Server
			evil.HandleFunc("GET "+discovery, func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]string{"issuer": base, "jwks_uri": evilSrv.URL + "/jwks"})
			})
			evil.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{k["es"].jwk()}})
			})
			evilSrv = httptest.NewServer(evil)
			defer evilSrv.Close()
			mux := http.NewServeMux()
			if c.path != discovery {
				mux.HandleFunc("GET "+discovery, func(w http.ResponseWriter, r *http.Request) {
					json.NewEncoder(w).Encode(map[string]string{"issuer": base, "jwks_uri": base + "/jwks"})
				})
			}
			mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{k["rs"].jwk()}})
			})
			mux.HandleFunc("GET "+c.path, func(w http.ResponseWriter, r *http.Request) {
				to := "/keys"
				if c.elsewhere {
					to = evilSrv.URL + c.path
				}
				http.Redirect(w, r, to, http.StatusFound)
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			base = srv.URL
			v := newOIDCVerifier(oidcConfig{issuer: base, audience: testAudience, permsClaim: "deltadb.permissions", now: clock.now})
			err := v.start(context.Background())
			claims := map[string]any{"iss": base, "aud": testAudience, "sub": "svc-1", "iat": clock.now().Unix(),
				"exp": clock.now().Add(10 * time.Minute).Unix(), "deltadb": map[string]any{"permissions": []string{"admin"}}}
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("start = %v, want the same-origin redirect followed", err)
				}
				if _, err := v.verify(k["rs"].token(t, claims)); err != nil {
					t.Errorf("a token signed by the issuer's key = %v, want accepted", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("start = %v, want %q", err, c.wantErr)
			}
			// Not accepted: the keys could not be had, so the provider is
			// unavailable (503), as for any failed fetch.
			if _, err := v.verify(k["es"].token(t, claims)); !errors.Is(err, errProviderUnavailable) {
				t.Errorf("a token signed by the other origin's key = %v, want not accepted, the provider unavailable", err)
			}
		})
	}
}

// TestOIDCRequiresHTTPS is a hostile-input probe: an http://
// issuer was accepted. Now -oidc-issuer must be https, except on loopback
// or with -oidc-allow-http, and so must discovery's jwks_uri.
func TestOIDCRequiresHTTPS(t *testing.T) {
	for _, c := range []struct {
		args, want string // want "" for accepted
	}{
		{"-oidc-issuer=http://idp.example.com/realms/x", "is plain http"},
		{"-oidc-issuer=http://10.0.0.7:8080/realms/x", "is plain http"},
		{"-oidc-issuer=http://idp.example.com/realms/x -oidc-allow-http", ""},
		{"-oidc-issuer=https://idp.example.com/realms/x", ""},
		{"-oidc-issuer=http://127.0.0.1:8081/realms/x", ""},
		{"-oidc-issuer=http://localhost:8081/realms/x", ""},
		{"-oidc-issuer=http://[::1]:8081/", ""},
		{"-oidc-issuer=ftp://idp.example.com/", "not an http(s) URL"},
		{"-oidc-allow-http", "need -oidc-issuer"},
	} {
		args := strings.Fields(c.args)
		if strings.Contains(c.args, "-oidc-issuer") {
			args = append(args, "-oidc-audience=deltadb")
		}
		_, err := parseFlags(args, io.Discard)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error containing %q", c.args, err, c.want)
		}
	}
	// A loopback issuer whose discovery sends the keys to plain http
	// elsewhere.
	mux := http.NewServeMux()
	var base string
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": base, "jwks_uri": "http://keys.example.com/jwks"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base = srv.URL
	v := newOIDCVerifier(oidcConfig{issuer: base, audience: testAudience, permsClaim: "p"})
	if err := v.start(context.Background()); err == nil || !strings.Contains(err.Error(), "jwks_uri") || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("start with a plain-http jwks_uri = %v, want it refused", err)
	}
}
