package main

// Sign-in to the web UI with the OpenID provider: the
// authorization code flow with PKCE (RFC 7636) of a public client, the
// -oidc-ui-client-id. The browser makes the PKCE verifier and its S256
// challenge, sends the user to the provider's authorization endpoint and
// comes back to this server's "/" with a code. POST /api/login/oidc hands
// the code and verifier to this server, which redeems them at the
// provider's token endpoint (the client has no secret: the verifier shows
// that the request comes from whoever started the flow), verifies the
// access token like any bearer credential and answers it. The server keeps
// nothing; the UI sends the access token as its credential until it
// expires. The server, not the browser, redeems the code so that the
// UI's Content-Security-Policy keeps connections to this origin only and
// the provider needs no CORS configuration for the UI.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// oidcLogin is the UI's sign-in with the provider. A nil *oidcLogin offers
// none. It is safe for concurrent use.
type oidcLogin struct {
	v      *oidcVerifier
	issuer string
	// clientID, name and scope are the -oidc-ui-* flags; name is never "".
	clientID, name, scope string
	// params are the -oidc-ui-auth-params.
	params map[string]string
	client *http.Client
}

// Limits of a sign-in request.
const (
	maxOIDCCodeLen     = 4096
	maxRedirectURILen  = 2048
	maxTokenAnswerSize = 64 << 10
)

// newOIDCLogin returns the sign-in of flags f with verifier v, or nil when
// no UI client is configured.
func newOIDCLogin(f oidcFlags, v *oidcVerifier) *oidcLogin {
	if f.ui.clientID == "" || v == nil {
		return nil
	}
	name := f.ui.name
	if name == "" {
		if u, err := url.Parse(f.issuer); err == nil {
			name = u.Host
		}
	}
	q, _ := url.ParseQuery(f.ui.params) // checked with the flags
	params := map[string]string{}
	for k, vs := range q {
		params[k] = vs[len(vs)-1]
	}
	// The token request carries the code and its PKCE verifier: a
	// redirect to another origin took both there (a 307 is posted again
	// with its body), as discovery's and the JWKS's fetches never go.
	return &oidcLogin{v: v, issuer: f.issuer, clientID: f.ui.clientID, name: name, scope: f.ui.scope, params: params,
		client: &http.Client{Timeout: 10 * time.Second, CheckRedirect: sameOriginRedirect}}
}

// oidcLoginConfig is the answer of GET /api/login/oidc: what the UI needs
// to start the flow.
type oidcLoginConfig struct {
	Enabled bool `json:"enabled"`
	// Name is what the sign-in button calls the provider.
	Name                  string            `json:"name,omitempty"`
	Issuer                string            `json:"issuer,omitempty"`
	ClientID              string            `json:"client_id,omitempty"`
	Scope                 string            `json:"scope,omitempty"`
	AuthorizationEndpoint string            `json:"authorization_endpoint,omitempty"`
	Params                map[string]string `json:"params,omitempty"`
}

// handleOIDCConfig is GET /api/login/oidc: {"enabled": false} without a
// UI client, else the provider's name, issuer, client ID, scope,
// authorization endpoint and extra parameters.
func (s *restServer) handleOIDCConfig(w http.ResponseWriter, r *http.Request, _ principal) error {
	l := s.oidcLogin
	if l == nil {
		writeJSON(w, http.StatusOK, oidcLoginConfig{})
		return nil
	}
	ends, err := l.v.flowEndpoints(r.Context())
	if err == nil && ends.Authorization == "" {
		err = fmt.Errorf("oidc discovery names no authorization_endpoint: %w", errProviderUnavailable)
	}
	if err != nil {
		return fmt.Errorf("sign-in with the provider: %w", err)
	}
	writeJSON(w, http.StatusOK, oidcLoginConfig{Enabled: true, Name: l.name, Issuer: l.issuer, ClientID: l.clientID,
		Scope: l.scope, AuthorizationEndpoint: ends.Authorization, Params: l.params})
	return nil
}

// oidcCodeRequest is the body of POST /api/login/oidc.
type oidcCodeRequest struct {
	Code         string `json:"code"`
	CodeVerifier string `json:"code_verifier"`
	RedirectURI  string `json:"redirect_uri"`
}

// oidcCodeShape is what POST /api/login/oidc takes, for error sentences.
const oidcCodeShape = `{"code", "code_verifier", "redirect_uri"}`

// handleOIDCCode is POST /api/login/oidc: the code of the provider's
// redirect, redeemed for an access token that this server accepts. A
// refused code or token counts as a failed authentication of the client
// (the rate limit).
func (s *restServer) handleOIDCCode(w http.ResponseWriter, r *http.Request, _ principal) error {
	l := s.oidcLogin
	if l == nil {
		return reqErrorf(errNotFound, "this server offers no sign-in with an OpenID provider")
	}
	var req oidcCodeRequest
	if err := s.decodeBody(w, r, &req, oidcCodeShape); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	g, err := l.redeem(r.Context(), req)
	if err != nil {
		if errors.Is(err, errUnauthenticated) {
			return s.auth.failed(s.auth.clientOf(r), err)
		}
		return err
	}
	notePrincipal(r.Context(), principal{clientID: g.ClientID})
	s.log.InfoContext(r.Context(), "signed in with the oidc provider", attrClient, g.ClientID)
	writeJSON(w, http.StatusOK, g)
	return nil
}

// check refuses a sign-in request that cannot be a real one before the
// provider is asked: a code of 1 to maxOIDCCodeLen printable characters,
// a verifier as RFC 7636 §4.1 makes them, an http(s) redirect URI.
func (req oidcCodeRequest) check() error {
	if req.Code == "" || len(req.Code) > maxOIDCCodeLen || strings.ContainsFunc(req.Code, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) {
		return reqErrorf(errInvalid, "code must be 1 to %d printable characters", maxOIDCCodeLen)
	}
	if n := len(req.CodeVerifier); n < 43 || n > 128 || strings.ContainsFunc(req.CodeVerifier, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r))
	}) {
		return reqErrorf(errInvalid, "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9 and -._~ (RFC 7636)")
	}
	u, err := url.Parse(req.RedirectURI)
	if err != nil || len(req.RedirectURI) > maxRedirectURILen || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return reqErrorf(errInvalid, "redirect_uri must be the http(s) URL the sign-in started from, up to %d bytes", maxRedirectURILen)
	}
	return nil
}

// redeem exchanges req's code at the token endpoint and verifies the
// access token it answers.
func (l *oidcLogin) redeem(ctx context.Context, req oidcCodeRequest) (sessionGrant, error) {
	ends, err := l.v.flowEndpoints(ctx)
	if err == nil && ends.Token == "" {
		err = fmt.Errorf("oidc discovery names no token_endpoint: %w", errProviderUnavailable)
	}
	if err != nil {
		return sessionGrant{}, fmt.Errorf("sign-in with the provider: %w", err)
	}
	token, err := l.tokenRequest(ctx, ends.Token, req)
	if err != nil {
		return sessionGrant{}, err
	}
	p, err := l.v.verify(token)
	if err != nil {
		return sessionGrant{}, reqPrefixf(err, "the provider's access token is not one this server accepts")
	}
	jwt, _ := parseJWT(token) // verified above
	c, _ := decodeClaims(jwt.payload)
	exp, _, _ := c.numericDate("exp")
	return sessionGrant{Token: token, ClientID: p.clientID, ExpiresAt: exp.UTC(), Permissions: permNames(p.perms)}, nil
}

// tokenRequest is the token request of RFC 6749 §4.1.3 with the PKCE
// verifier; it returns the access token.
func (l *oidcLogin) tokenRequest(ctx context.Context, endpoint string, req oidcCodeRequest) (string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {req.Code}, "redirect_uri": {req.RedirectURI},
		"client_id": {l.clientID}, "code_verifier": {req.CodeVerifier}}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("oidc token request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hr.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(hr)
	if err != nil {
		return "", fmt.Errorf("oidc token request: %w: %w", err, errProviderUnavailable)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswerSize+1))
	if err != nil || len(body) > maxTokenAnswerSize {
		return "", fmt.Errorf("oidc token request: read the answer (%d bytes): %v: %w", len(body), err, errProviderUnavailable)
	}
	var ans struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
	}
	if json.Unmarshal(body, &ans) != nil {
		return "", fmt.Errorf("oidc token request: status %s, an answer that is not JSON: %w", resp.Status, errProviderUnavailable)
	}
	switch {
	case resp.StatusCode == http.StatusOK && ans.AccessToken != "" && strings.EqualFold(ans.TokenType, "bearer"):
		return ans.AccessToken, nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized:
		// The provider's error code is one of RFC 6749 §5.2's few words;
		// its description may quote the request and stays in the log.
		return "", reqErrorf(errUnauthenticated, "sign-in failed: the provider refused the code (%s); sign in again", oauthErrorCode(ans.Error))
	}
	return "", fmt.Errorf("oidc token request: status %s, no bearer access token: %w", resp.Status, errProviderUnavailable)
}

// oauthErrorCode is code if it is an error code of RFC 6749 §5.2, else
// "invalid_grant": a provider's text never reaches a client unchecked.
func oauthErrorCode(code string) string {
	switch code {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope":
		return code
	}
	return "invalid_grant"
}
