package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// flowIssuer is a provider for the UI's sign-in: discovery with the
// authorization and token endpoints, a JWKS, and a token endpoint whose
// answer the test sets.
type flowIssuer struct {
	srv    *httptest.Server
	signer *testSigner
	mu     sync.Mutex
	// answer writes the token endpoint's answer to the form received.
	answer func(w http.ResponseWriter, form url.Values)
	forms  []url.Values
}

func newFlowIssuer(t *testing.T) *flowIssuer {
	fi := &flowIssuer{signer: testKeys()["rs"]}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": fi.srv.URL, "jwks_uri": fi.srv.URL + "/jwks",
			"authorization_endpoint": fi.srv.URL + "/auth", "token_endpoint": fi.srv.URL + "/token"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{fi.signer.jwk()}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		fi.mu.Lock()
		fi.forms = append(fi.forms, r.PostForm)
		answer := fi.answer
		fi.mu.Unlock()
		answer(w, r.PostForm)
	})
	fi.srv = httptest.NewServer(mux)
	t.Cleanup(fi.srv.Close)
	return fi
}

// token is an access token of the issuer for sub with perms, valid for
// 10 minutes from now, for audience aud.
func (fi *flowIssuer) token(t *testing.T, now time.Time, aud, sub string, perms ...string) string {
	return fi.signer.token(t, map[string]any{"iss": fi.srv.URL, "aud": aud, "sub": sub,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "deltadb": map[string]any{"permissions": perms}})
}

// newFlowServer is an auth test server that accepts fi's tokens and offers
// the UI's sign-in as client "ui" (a failed-auth limit of maxFailures).
func newFlowServer(t *testing.T, fi *flowIssuer, maxFailures int) *authTestServer {
	t.Helper()
	v := newOIDCVerifier(oidcConfig{issuer: fi.srv.URL, audience: testAudience, permsClaim: "deltadb.permissions", now: time.Now})
	if err := v.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := newAuthTestServer(t, authConfig{oidc: v, maxFailures: maxFailures})
	ts.rest.oidcLogin = newOIDCLogin(oidcFlags{issuer: fi.srv.URL, ui: oidcUIFlags{clientID: "ui", scope: "openid deltadb", params: "resource=" + testAudience}}, v)
	return ts
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B

// TestOIDCLoginConfig: GET /api/login/oidc says whether the UI may sign in
// with the provider, and how.
func TestOIDCLoginConfig(t *testing.T) {
	plain := newAuthTestServer(t, authConfig{})
	if got := strings.TrimSpace(string(plain.mustDo(t, "GET", "/api/login/oidc", "", "", 200))); got != `{"enabled":false}` {
		t.Errorf("without a UI client: %s, want {\"enabled\":false}", got)
	}
	fi := newFlowIssuer(t)
	ts := newFlowServer(t, fi, 0)
	var c oidcLoginConfig
	if err := json.Unmarshal(ts.mustDo(t, "GET", "/api/login/oidc", "", "", 200), &c); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(fi.srv.URL, "http://")
	if !c.Enabled || c.Name != host || c.ClientID != "ui" || c.Scope != "openid deltadb" || c.Issuer != fi.srv.URL ||
		c.AuthorizationEndpoint != fi.srv.URL+"/auth" || c.Params["resource"] != testAudience {
		t.Errorf("config = %+v", c)
	}
	// A provider that cannot be reached: 503 with a sentence, not its address.
	v := newOIDCVerifier(oidcConfig{issuer: "http://" + refusedAddr(t), audience: testAudience, permsClaim: "p"})
	down := newAuthTestServer(t, authConfig{oidc: v})
	down.rest.oidcLogin = newOIDCLogin(oidcFlags{issuer: v.cfg.issuer, ui: oidcUIFlags{clientID: "ui", name: "Corp SSO", scope: "openid"}}, v)
	rec := down.do("GET", "/api/login/oidc", "", "", "")
	if rec.Code != 503 || strings.Contains(rec.Body.String(), "127.0.0.1") || !strings.Contains(rec.Body.String(), "the identity provider (the OpenID provider) could not be reached") {
		t.Errorf("with the provider down: %d %s, want 503 saying the identity provider could not be reached, without its address", rec.Code, rec.Body)
	}
}

// TestOIDCLoginRedeem: the code and verifier reach the token endpoint as
// a public client's authorization code grant; the access token answered
// is verified and handed to the UI; refusals are 401 with a sentence and
// count against the failed-auth limit; a bad request never reaches the
// provider.
func TestOIDCLoginRedeem(t *testing.T) {
	fi := newFlowIssuer(t)
	ts := newFlowServer(t, fi, 3)
	good := fi.token(t, time.Now(), testAudience, "ada", "read", "write")
	fi.answer = func(w http.ResponseWriter, form url.Values) {
		json.NewEncoder(w).Encode(map[string]any{"access_token": good, "token_type": "Bearer", "expires_in": 600})
	}
	body := `{"code":"c0de","code_verifier":"` + testVerifier + `","redirect_uri":"http://127.0.0.1:8080/"}`
	var g sessionGrant
	out := ts.mustDo(t, "POST", "/api/login/oidc", "", body, 200)
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatal(err)
	}
	if g.Token != good || g.ClientID != "oidc:ada" || strings.Join(g.Permissions, ",") != "read,write" || time.Until(g.ExpiresAt) < 9*time.Minute {
		t.Errorf("sign-in answered %s", out)
	}
	form := fi.forms[0]
	want := url.Values{"grant_type": {"authorization_code"}, "code": {"c0de"}, "redirect_uri": {"http://127.0.0.1:8080/"},
		"client_id": {"ui"}, "code_verifier": {testVerifier}}
	if form.Encode() != want.Encode() {
		t.Errorf("token request form = %s, want %s (a public client: no secret)", form.Encode(), want.Encode())
	}
	if code, _ := ts.meStatus(g.Token); code != 200 {
		t.Errorf("the token answered does not authenticate: %d", code)
	}

	// The provider refuses; its words stay out of the answer.
	for _, tc := range []struct {
		answer func(w http.ResponseWriter, form url.Values)
		code   int
		want   string
	}{
		{func(w http.ResponseWriter, _ url.Values) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"grant request is invalid <script>"}`))
		}, 401, "sign-in failed: the provider refused the code (invalid_grant); sign in again"},
		{func(w http.ResponseWriter, _ url.Values) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"you have been <b>hacked</b>"}`))
		}, 401, "(invalid_grant)"},
		{func(w http.ResponseWriter, _ url.Values) {
			json.NewEncoder(w).Encode(map[string]any{"access_token": fi.token(t, time.Now(), "https://someone-else.test", "ada", "admin"), "token_type": "Bearer"})
		}, 401, "the provider's access token is not one this server accepts"},
		{func(w http.ResponseWriter, _ url.Values) { w.Write([]byte("<html>oops</html>")) }, 503, "the identity provider (the OpenID provider) could not be reached or gave no usable answer"},
		{func(w http.ResponseWriter, _ url.Values) {
			w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 70<<10) + `","token_type":"Bearer"}`))
		}, 503, "the identity provider (the OpenID provider) could not be reached or gave no usable answer"},
		{func(w http.ResponseWriter, _ url.Values) {
			json.NewEncoder(w).Encode(map[string]any{"access_token": good, "token_type": "mac"})
		}, 503, "the identity provider (the OpenID provider) could not be reached or gave no usable answer"},
	} {
		fi.answer = tc.answer
		rec := ts.do("POST", "/api/login/oidc", "", body, "")
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) || strings.Contains(rec.Body.String(), "<") {
			t.Errorf("provider answer → %d %s, want %d with %q", rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	// Three refusals from one address: the next failure is 429.
	fi.answer = func(w http.ResponseWriter, _ url.Values) {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"invalid_grant"}`))
	}
	rec := ts.do("POST", "/api/login/oidc", "", body, "")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a fourth refused sign-in = %d %s, want 429 with Retry-After", rec.Code, rec.Body)
	}

	// Requests that cannot be real never reach the provider.
	before := len(fi.forms)
	for _, bad := range []string{
		`{"code":"","code_verifier":"` + testVerifier + `","redirect_uri":"http://h/"}`,
		`{"code":"a b","code_verifier":"` + testVerifier + `","redirect_uri":"http://h/"}`,
		`{"code":"` + strings.Repeat("c", maxOIDCCodeLen+1) + `","code_verifier":"` + testVerifier + `","redirect_uri":"http://h/"}`,
		`{"code":"c","code_verifier":"short","redirect_uri":"http://h/"}`,
		`{"code":"c","code_verifier":"` + strings.Repeat("x", 42) + `!","redirect_uri":"http://h/"}`,
		`{"code":"c","code_verifier":"` + testVerifier + `","redirect_uri":"javascript:alert(1)"}`,
		`{"code":"c","code_verifier":"` + testVerifier + `","redirect_uri":"/relative"}`,
		`{"code":"c","code_verifier":"` + testVerifier + `","redirect_uri":"http://h/","client_secret":"x"}`,
		`not json`,
	} {
		if rec := ts.do("POST", "/api/login/oidc", "", bad, "192.0.2.7:1"); rec.Code != 400 {
			t.Errorf("POST /api/login/oidc %s = %d %s, want 400", bad, rec.Code, rec.Body)
		}
	}
	if len(fi.forms) != before {
		t.Errorf("bad requests reached the provider %d times", len(fi.forms)-before)
	}
	plain := newAuthTestServer(t, authConfig{})
	if rec := plain.do("POST", "/api/login/oidc", "", body, ""); rec.Code != 404 {
		t.Errorf("sign-in on a server without a UI client = %d, want 404", rec.Code)
	}
}

// TestOIDCLoginRedirectElsewhere plays a token endpoint that redirects
// (307, which keeps the method and body) to another origin: the sign-in
// is 503 and the other origin receives nothing; the code and its PKCE
// verifier were posted there. A redirect within the provider's origin is
// followed.
func TestOIDCLoginRedirectElsewhere(t *testing.T) {
	fi := newFlowIssuer(t)
	ts := newFlowServer(t, fi, 10)
	var stolen []string
	var mu sync.Mutex
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		stolen = append(stolen, r.PostForm.Encode())
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"access_token": "x", "token_type": "Bearer"})
	}))
	t.Cleanup(elsewhere.Close)
	fi.answer = func(w http.ResponseWriter, _ url.Values) {
		w.Header().Set("Location", elsewhere.URL+"/token")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
	body := `{"code":"c0de","code_verifier":"` + testVerifier + `","redirect_uri":"http://127.0.0.1:8080/"}`
	if rec := ts.do("POST", "/api/login/oidc", "", body, ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), "request ID") {
		t.Errorf("sign-in redirected elsewhere = %d %s, want 503", rec.Code, rec.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stolen) > 0 {
		t.Errorf("another origin received the token request: %q", stolen)
	}
	good := fi.token(t, time.Now(), testAudience, "ada", "read")
	calls := 0
	fi.answer = func(w http.ResponseWriter, form url.Values) {
		if calls++; calls == 1 {
			w.Header().Set("Location", fi.srv.URL+"/token")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": good, "token_type": "Bearer"})
	}
	ts.mustDo(t, "POST", "/api/login/oidc", "", body, 200)
}

// TestOIDCUIFlags: the -oidc-ui-* flags need the issuer and make sense.
func TestOIDCUIFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-oidc-ui-client-id=ui"}, "-oidc-ui-client-id need -oidc-issuer"},
		{[]string{"-oidc-issuer=https://id.example", "-oidc-audience=a", "-oidc-ui-client-id=ui", "-oidc-ui-scope= "}, "-oidc-ui-scope: must not be empty"},
		{[]string{"-oidc-issuer=https://id.example", "-oidc-audience=a", "-oidc-ui-auth-params=a=%zz"}, "-oidc-ui-auth-params"},
	} {
		_, err := parseFlags(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-oidc-issuer=https://id.example", "-oidc-audience=a", "-oidc-ui-client-id=ui", "-oidc-ui-auth-params=audience=https://ddb"}, nil)
	if err != nil || c.oidc.ui.clientID != "ui" || c.oidc.ui.scope != "openid" {
		t.Errorf("parseFlags = %+v, %v", c.oidc.ui, err)
	}
}
