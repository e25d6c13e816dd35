package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// oidcVerifier accepts the access tokens of one OpenID Connect provider
// (the issuer) as bearer credentials: JWTs signed with RS256, PS256 or
// ES256 by a key the issuer publishes in its JWKS. It finds the JWKS by
// discovery, caches it for as long as the JWKS answer's cache headers
// allow, and fetches it again for a token signed by a key it does not
// know, at most once per refetchEvery: a flood of tokens with made-up key
// IDs costs at most one fetch per interval. It is safe for concurrent use.
type oidcVerifier struct {
	cfg oidcConfig
	// keys is the current JWKS; nil until the first fetch succeeds.
	keys atomic.Pointer[jwkSet]
	// fetches counts the JWKS fetches attempted (tests, operators).
	fetches atomic.Int64

	// fetchMu serialises discovery and JWKS fetches and guards the
	// fields below.
	fetchMu sync.Mutex
	// jwksURL is the jwks_uri of the discovery document; "" until
	// discovery succeeded.
	jwksURL string
	// endpoints are the discovery document's authorization and token
	// endpoints (the UI's sign-in, oidclogin.go); set with jwksURL.
	endpoints oidcEndpoints
	// lastFetch is when the last fetch was attempted; zero: never.
	lastFetch time.Time
	// fetchErr is the error of the last fetch (discovery and JWKS), nil
	// when it succeeded or none was attempted: a token whose key is not
	// known then is the provider's failure, not the token's.
	fetchErr error
}

// oidcConfig configures an oidcVerifier (the -oidc-* flags).
type oidcConfig struct {
	// issuer is the provider's issuer URL; the iss claim must equal it.
	issuer string
	// audience must be one of the token's aud values.
	audience string
	// permsClaim and dbsClaim are dotted paths into the claims; dbsClaim
	// "" does not limit tokens to databases.
	permsClaim, dbsClaim string
	// roleMap maps claim values to permissions; nil: the values read,
	// write and admin stand for themselves.
	roleMap map[string]perm
	// skew is the clock difference tolerated on exp, nbf and iat.
	skew time.Duration
	// client fetches discovery and the JWKS; nil: one with a 10 s timeout.
	client *http.Client
	now    func() time.Time
	// refetchEvery is the least time between two fetches of the JWKS; 0:
	// 10 s.
	refetchEvery time.Duration
	// allowHTTP accepts a plain-http jwks_uri beyond loopback
	// (-oidc-allow-http; checkOIDCURL).
	allowHTTP bool
}

// Limits of the verifier.
const (
	// maxTokenBytes is the largest token accepted; real access tokens are
	// a few KiB, so anything larger is refused before it is decoded.
	maxTokenBytes = 16 << 10
	// maxOIDCDocBytes bounds the discovery document and the JWKS.
	maxOIDCDocBytes = 1 << 20
	// jwksDefaultLife is how long a JWKS without cache headers is used
	// before it is fetched again; jwksMaxLife caps what headers may ask.
	jwksDefaultLife = time.Hour
	jwksMaxLife     = 24 * time.Hour
	// minRSABits is the smallest RSA key accepted (RFC 7518 §3.3).
	minRSABits = 2048
)

// newOIDCVerifier returns a verifier for cfg; it fetches nothing until
// start or the first token.
func newOIDCVerifier(cfg oidcConfig) *oidcVerifier {
	if cfg.client == nil {
		cfg.client = &http.Client{Timeout: 10 * time.Second}
	}
	client := *cfg.client
	client.CheckRedirect = sameOriginRedirect
	cfg.client = &client
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.refetchEvery <= 0 {
		cfg.refetchEvery = 10 * time.Second
	}
	return &oidcVerifier{cfg: cfg}
}

// start runs discovery and fetches the JWKS once, so that a provider that
// is unreachable or misconfigured is noticed when the server starts.
func (v *oidcVerifier) start(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	v.lastFetch = v.cfg.now()
	v.fetchErr = v.refresh(ctx)
	return v.fetchErr
}

// verify checks token and returns the principal its claims describe. Every
// error wraps errUnauthenticated with a sentence naming the check that
// failed, never the token, but for a key that could not be had because
// the provider failed (errProviderUnavailable, key).
func (v *oidcVerifier) verify(token string) (principal, error) {
	if len(token) > maxTokenBytes {
		return principal{}, oidcRefused("the token is larger than %d KiB", maxTokenBytes>>10)
	}
	jwt, err := parseJWT(token)
	if err != nil {
		return principal{}, err
	}
	key, err := v.key(jwt.header.Kid)
	if err != nil {
		return principal{}, err
	}
	if err := key.verify(jwt.header.Alg, jwt.signingInput, jwt.signature); err != nil {
		return principal{}, err
	}
	claims, err := decodeClaims(jwt.payload)
	if err != nil {
		return principal{}, err
	}
	if err := v.checkClaims(claims, v.cfg.now()); err != nil {
		return principal{}, err
	}
	return v.principalOf(claims)
}

// oidcRefused is the error of a refused token: a 401 whose sentence says
// which check failed.
func oidcRefused(format string, args ...any) error {
	return reqErrorf(errUnauthenticated, "OIDC token refused: "+format, args...)
}

// JWT parsing (RFC 7515 compact serialisation).

// jwt is a token split into its parts, the signature not yet checked.
type jwt struct {
	header       jwtHeader
	payload      []byte
	signingInput []byte
	signature    []byte
}

// jwtHeader is the JOSE header fields the verifier reads.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Crit []string `json:"crit"`
}

// looksLikeJWT reports whether cred has the shape of a compact JWS: three
// dot-separated parts, the first a base64url JSON object. API keys and
// session tokens never do.
func looksLikeJWT(cred string) bool {
	return strings.HasPrefix(cred, "eyJ") && strings.Count(cred, ".") == 2
}

// parseJWT splits token and decodes its header and signature. It refuses
// unsigned and HMAC tokens here: the keys of an OpenID provider are
// public, and an HMAC "signed" with a public key proves nothing.
func parseJWT(token string) (jwt, error) {
	parts := strings.Split(token, ".")
	// Strict: one token has one encoding, so a changed character is a
	// changed token.
	b64 := base64.RawURLEncoding.Strict()
	if len(parts) != 3 {
		return jwt{}, oidcRefused("not a signed JWT (want three dot-separated parts)")
	}
	var t jwt
	hdr, err := b64.DecodeString(parts[0])
	if err != nil {
		return jwt{}, oidcRefused("the header is not base64url")
	}
	if err := json.Unmarshal(hdr, &t.header); err != nil {
		return jwt{}, oidcRefused("the header is not a JSON object")
	}
	switch alg := t.header.Alg; {
	case strings.EqualFold(alg, "none") || alg == "":
		return jwt{}, oidcRefused("unsigned tokens (alg none) are not accepted")
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return jwt{}, oidcRefused("HMAC-signed tokens (%s) are not accepted; the provider must sign with RS256, PS256 or ES256", alg)
	case len(t.header.Crit) > 0:
		return jwt{}, oidcRefused("the header names critical extensions this server does not support")
	}
	if t.payload, err = b64.DecodeString(parts[1]); err != nil {
		return jwt{}, oidcRefused("the payload is not base64url")
	}
	if t.signature, err = b64.DecodeString(parts[2]); err != nil {
		return jwt{}, oidcRefused("the signature is not base64url")
	}
	t.signingInput = []byte(token[:len(parts[0])+1+len(parts[1])])
	return t, nil
}

// JWKS (RFC 7517) and signatures (RFC 7518 §3).

// jwkSet is an immutable fetched JWKS.
type jwkSet struct {
	byKid map[string]*jwk
	// only is the single signing key of a JWKS that has one, for tokens
	// without a kid; nil otherwise.
	only *jwk
	// fresh is when the set should be fetched again (cache headers).
	fresh time.Time
}

// jwk is one public signing key and the algorithms it may verify.
type jwk struct {
	pub crypto.PublicKey
	// algs are the algorithms this key verifies, decided by the key
	// (kty, crv and alg), never by a token.
	algs []string
}

// rawJWK is a JWK as published.
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS decodes a JWKS, keeping the signing keys this server can use:
// RSA keys of at least minRSABits for RS256 and PS256, and P-256 keys for
// ES256. Other keys (encryption keys, HMAC secrets, other curves) are
// skipped, as RFC 7517 §5 asks of keys an implementation does not
// understand.
func parseJWKS(body []byte) (*jwkSet, error) {
	var doc struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	set := &jwkSet{byKid: map[string]*jwk{}}
	var usable []*jwk
	for _, r := range doc.Keys {
		k, err := r.key()
		if err != nil || k == nil {
			continue
		}
		usable = append(usable, k)
		set.byKid[r.Kid] = k
	}
	if len(usable) == 0 {
		return nil, errors.New("decode JWKS: no RS256, PS256 or ES256 signing key")
	}
	if len(usable) == 1 {
		set.only = usable[0]
	}
	return set, nil
}

// key builds the public key of r; nil, nil for a key that is not a
// signing key of an algorithm this server verifies.
func (r rawJWK) key() (*jwk, error) {
	if r.Use != "" && r.Use != "sig" {
		return nil, nil
	}
	switch {
	case r.Kty == "RSA" && (r.Alg == "" || r.Alg == "RS256" || r.Alg == "PS256"):
		pub, err := r.rsaKey()
		if err != nil {
			return nil, err
		}
		algs := []string{"RS256", "PS256"}
		if r.Alg != "" {
			algs = []string{r.Alg}
		}
		return &jwk{pub: pub, algs: algs}, nil
	case r.Kty == "EC" && r.Crv == "P-256" && (r.Alg == "" || r.Alg == "ES256"):
		pub, err := r.ecKey()
		if err != nil {
			return nil, err
		}
		return &jwk{pub: pub, algs: []string{"ES256"}}, nil
	}
	return nil, nil
}

// rsaKey decodes the modulus and exponent of an RSA JWK.
func (r rawJWK) rsaKey() (*rsa.PublicKey, error) {
	n, err := base64.RawURLEncoding.DecodeString(r.N)
	if err != nil {
		return nil, fmt.Errorf("jwk %q: n: %w", r.Kid, err)
	}
	e, err := base64.RawURLEncoding.DecodeString(r.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("jwk %q: bad exponent", r.Kid)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
		return nil, fmt.Errorf("jwk %q: RSA key under %d bits or bad exponent", r.Kid, minRSABits)
	}
	return pub, nil
}

// ecKey decodes a P-256 JWK; the point must lie on the curve.
func (r rawJWK) ecKey() (*ecdsa.PublicKey, error) {
	x, errX := base64.RawURLEncoding.DecodeString(r.X)
	y, errY := base64.RawURLEncoding.DecodeString(r.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("jwk %q: bad P-256 coordinates", r.Kid)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("jwk %q: %w", r.Kid, err)
	}
	return pub, nil
}

// verify checks sig over input with alg, which must be one of the
// algorithms of k: the header only picks among what the key allows.
func (k *jwk) verify(alg string, input, sig []byte) error {
	allowed := false
	for _, a := range k.algs {
		allowed = allowed || a == alg
	}
	if !allowed {
		return oidcRefused("the token's algorithm %q is not the one of its signing key", alg)
	}
	h := sha256.Sum256(input)
	var ok bool
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if alg == "PS256" {
			ok = rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
		}
	case *ecdsa.PublicKey:
		// JWS carries ES256 signatures as r||s, 32 bytes each (RFC 7518
		// §3.4), not ASN.1.
		if len(sig) == 64 {
			ok = ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}
	}
	if !ok {
		return oidcRefused("the signature does not verify")
	}
	return nil
}

// Fetching discovery and the JWKS.

// key returns the signing key kid ("" for a token without one): from the
// cached JWKS while it is fresh; otherwise, or when kid is unknown, after
// fetching the JWKS again, at most once per refetchEvery. A fetch that
// fails keeps the keys fetched before. A key not found while the last
// fetch failed (or none succeeded yet) is errProviderUnavailable, with
// the fetch's error for the log: the provider may publish it, so the
// token is not refused for it.
func (v *oidcVerifier) key(kid string) (*jwk, error) {
	set := v.keys.Load()
	var fetchErr error
	if set == nil || !v.cfg.now().Before(set.fresh) || set.lookup(kid) == nil {
		v.fetchMu.Lock()
		if now := v.cfg.now(); v.lastFetch.IsZero() || now.Sub(v.lastFetch) >= v.cfg.refetchEvery {
			v.lastFetch = now
			v.fetchErr = v.refresh(context.Background())
		}
		fetchErr = v.fetchErr
		v.fetchMu.Unlock()
		set = v.keys.Load()
	}
	if set == nil || set.lookup(kid) == nil && fetchErr != nil {
		return nil, fmt.Errorf("oidc token: signing key %q: the last fetch of the provider's keys failed: %w: %w",
			kid, cmp.Or(fetchErr, errors.New("no keys fetched yet")), errProviderUnavailable)
	}
	k := set.lookup(kid)
	if k == nil && kid == "" {
		return nil, oidcRefused("the token names no key (kid) and the provider publishes several")
	}
	if k == nil {
		return nil, oidcRefused("the token is signed by a key the OpenID provider does not publish")
	}
	return k, nil
}

// lookup is the key kid of s, or its only key for kid "".
func (s *jwkSet) lookup(kid string) *jwk {
	if kid == "" {
		return s.only
	}
	return s.byKid[kid]
}

// refresh runs discovery if it has not succeeded yet, then fetches the
// JWKS. The caller holds fetchMu.
func (v *oidcVerifier) refresh(ctx context.Context) error {
	if v.jwksURL == "" {
		u, ends, err := v.discover(ctx)
		if err != nil {
			return err
		}
		v.jwksURL, v.endpoints = u, ends
	}
	v.fetches.Add(1)
	body, hdr, err := v.get(ctx, v.jwksURL)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	set, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", v.jwksURL, err)
	}
	now := v.cfg.now()
	set.fresh = now.Add(cacheLifetime(hdr, now))
	v.keys.Store(set)
	return nil
}

// oidcEndpoints are the endpoints of the authorization code flow, from
// discovery; "" where the document names none.
type oidcEndpoints struct {
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
}

// discover fetches the issuer's discovery document (OpenID Connect
// Discovery 1.0 §4) and returns its jwks_uri and endpoints. The document
// must name the configured issuer exactly (§4.3), so a typo in
// -oidc-issuer fails here rather than on every token.
func (v *oidcVerifier) discover(ctx context.Context) (string, oidcEndpoints, error) {
	u := strings.TrimSuffix(v.cfg.issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := v.get(ctx, u)
	if err != nil {
		return "", oidcEndpoints{}, fmt.Errorf("oidc discovery: %w", err)
	}
	var doc struct {
		oidcEndpoints
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", oidcEndpoints{}, fmt.Errorf("oidc discovery %s: decode: %w", u, err)
	}
	if doc.Issuer != v.cfg.issuer {
		return "", oidcEndpoints{}, fmt.Errorf("oidc discovery %s: the document names issuer %q, not %q", u, doc.Issuer, v.cfg.issuer)
	}
	if err := checkOIDCURL(doc.JWKSURI, v.cfg.allowHTTP); err != nil {
		return "", oidcEndpoints{}, fmt.Errorf("oidc discovery %s: jwks_uri: %w", u, err)
	}
	// The UI's flow sends the browser to one and the code to the other:
	// the same rule as the keys.
	for _, e := range []struct{ name, url string }{{"authorization_endpoint", doc.Authorization}, {"token_endpoint", doc.Token}} {
		if e.url == "" {
			continue
		}
		if err := checkOIDCURL(e.url, v.cfg.allowHTTP); err != nil {
			return "", oidcEndpoints{}, fmt.Errorf("oidc discovery %s: %s: %w", u, e.name, err)
		}
	}
	if doc.JWKSURI == "" {
		return "", oidcEndpoints{}, fmt.Errorf("oidc discovery %s: no jwks_uri", u)
	}
	return doc.JWKSURI, doc.oidcEndpoints, nil
}

// flowEndpoints returns the endpoints of the authorization code flow,
// running discovery first if it has not succeeded yet (at most once per
// refetchEvery, like a JWKS fetch).
func (v *oidcVerifier) flowEndpoints(ctx context.Context) (oidcEndpoints, error) {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if v.jwksURL == "" {
		now := v.cfg.now()
		if now.Sub(v.lastFetch) < v.cfg.refetchEvery {
			return oidcEndpoints{}, fmt.Errorf("oidc discovery: the provider was unreachable less than %v ago: %w: %w", v.cfg.refetchEvery, v.fetchErr, errProviderUnavailable)
		}
		v.lastFetch = now
		if v.fetchErr = v.refresh(ctx); v.fetchErr != nil {
			return oidcEndpoints{}, fmt.Errorf("%w: %w", v.fetchErr, errProviderUnavailable)
		}
	}
	return v.endpoints, nil
}

// checkOIDCURL refuses a URL of the provider (the issuer, its jwks_uri)
// that is not https, except on a loopback host or with allowHTTP: the
// keys fetched from it decide which tokens are genuine, so whoever could
// change them on the way could forge any token.
func checkOIDCURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%q is not an http(s) URL", raw)
	case u.Scheme == "http" && !allowHTTP && !isLoopback(net.JoinHostPort(u.Hostname(), "0")):
		return fmt.Errorf("%q is plain http: the provider's signing keys would come without TLS, so anyone on the way "+
			"could forge tokens; use https (plain http is accepted on loopback, and elsewhere with -oidc-allow-http)", raw)
	}
	return nil
}

// sameOriginRedirect is the redirect policy of discovery and JWKS
// fetches and of the sign-in's token request: a redirect is followed only
// within the origin (scheme, host and port) of the URL first asked for, at
// most 10 times. Another origin could serve keys of its own choosing, or
// receive the code and verifier of a sign-in.
func sameOriginRedirect(req *http.Request, via []*http.Request) error {
	from := via[0].URL
	verb := strings.ToLower(via[0].Method)
	switch {
	case len(via) >= 10:
		return fmt.Errorf("%s %s: stopped after 10 redirects", verb, from.Redacted())
	case req.URL.Scheme != from.Scheme || req.URL.Host != from.Host:
		return fmt.Errorf("%s %s: redirect to another origin (%s://%s) refused", verb, from.Redacted(), req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// get fetches u and returns its body (at most maxOIDCDocBytes) and
// headers; anything but 200 is an error.
func (v *oidcVerifier) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("get %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOIDCDocBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: read: %w", u, err)
	}
	if len(body) > maxOIDCDocBytes {
		return nil, nil, fmt.Errorf("get %s: larger than %d bytes", u, maxOIDCDocBytes)
	}
	return body, resp.Header, nil
}

// cacheLifetime is how long a response with headers h, received at now,
// may be used (RFC 9111): Cache-Control max-age less Age, else Expires
// less Date, else jwksDefaultLife; no-store and no-cache mean not at all.
// The result is capped at jwksMaxLife.
func cacheLifetime(h http.Header, now time.Time) time.Duration {
	life, found := jwksDefaultLife, false
	for _, d := range strings.Split(strings.Join(h.Values("Cache-Control"), ","), ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(strings.ToLower(d)), "=")
		switch name {
		case "no-store", "no-cache":
			return 0
		case "max-age":
			if s, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && s >= 0 {
				life, found = time.Duration(min(s, int64(jwksMaxLife/time.Second)))*time.Second, true
			}
		}
	}
	if found {
		if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
			life -= time.Duration(min(age, int64(jwksMaxLife/time.Second))) * time.Second
		}
	} else if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0 // RFC 9111 §5.3: an invalid Expires is already expired.
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			date = now
		}
		life = t.Sub(date)
	}
	return max(0, min(life, jwksMaxLife))
}

// Claims (RFC 7519 §4.1, RFC 9068).

// claims are a token's decoded payload; numbers stay json.Number.
type claims map[string]any

// decodeClaims decodes a payload, which must be a JSON object.
func decodeClaims(payload []byte) (claims, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var c claims
	if err := d.Decode(&c); err != nil || c == nil {
		return nil, oidcRefused("the payload is not a JSON object")
	}
	return c, nil
}

// checkClaims checks the registered claims at now: iss is the issuer, aud
// names the audience, exp is in the future and nbf and iat are not, each
// time within the allowed skew.
func (v *oidcVerifier) checkClaims(c claims, now time.Time) error {
	if iss, _ := c["iss"].(string); iss != v.cfg.issuer {
		return oidcRefused("the issuer (iss) is not %s", v.cfg.issuer)
	}
	if !c.hasAudience(v.cfg.audience) {
		return oidcRefused("the audience (aud) does not include %s", v.cfg.audience)
	}
	exp, ok, err := c.numericDate("exp")
	switch {
	case err != nil:
		return err
	case !ok:
		return oidcRefused("the token has no expiry (exp)")
	case !now.Before(exp.Add(v.cfg.skew)):
		return oidcRefused("the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := c.numericDate("nbf"); err != nil {
		return err
	} else if ok && now.Add(v.cfg.skew).Before(nbf) {
		return oidcRefused("the token is not valid before %s (nbf)", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok, err := c.numericDate("iat"); err != nil {
		return err
	} else if ok && now.Add(v.cfg.skew).Before(iat) {
		return oidcRefused("the token is issued in the future (iat %s)", iat.UTC().Format(time.RFC3339))
	}
	return nil
}

// hasAudience reports whether aud, a string or an array of strings,
// names want.
func (c claims) hasAudience(want string) bool {
	switch aud := c["aud"].(type) {
	case string:
		return aud == want
	case []any:
		for _, a := range aud {
			if a == want {
				return true
			}
		}
	}
	return false
}

// numericDate decodes NumericDate claim name; ok is false when it is absent.
func (c claims) numericDate(name string) (t time.Time, ok bool, err error) {
	v, present := c[name]
	if !present {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	f, ferr := n.Float64()
	if !isNum || ferr != nil || f < 0 || f > 1e11 {
		return time.Time{}, false, oidcRefused("the %s claim is not a NumericDate", name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// at returns the claim at dotted path, e.g. "realm_access.roles". A key
// that itself contains dots (Auth0's namespaced claims such as
// "https://example.com/roles") is found too: at each level the whole
// remaining path is tried as a key before it is split.
func (c claims) at(path string) (any, bool) {
	var cur any = map[string]any(c)
	for path != "" {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok := m[path]; ok {
			return v, true
		}
		head, rest, found := strings.Cut(path, ".")
		if !found {
			return nil, false
		}
		if cur, ok = m[head]; !ok {
			return nil, false
		}
		path = rest
	}
	return nil, false
}

// stringList returns the claim at path as a list: an array of strings, or a
// string of space-separated values (as OAuth's scope is); present is
// false when the claim is absent.
func (c claims) stringList(path string) (vals []string, present bool, err error) {
	v, ok := c.at(path)
	if !ok {
		return nil, false, nil
	}
	switch v := v.(type) {
	case string:
		return strings.Fields(v), true, nil
	case []any:
		vals = make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, true, oidcRefused("the %s claim holds a value that is not a string", path)
			}
			vals = append(vals, s)
		}
		return vals, true, nil
	}
	return nil, true, oidcRefused("the %s claim is neither a string nor an array of strings", path)
}

// principalOf maps verified claims to a principal: the subject, the
// permissions of the permissions claim (through the role map) and the
// databases of the databases claim. A token without a permissions claim
// authenticates but may do nothing; a databases claim, when configured and
// present, limits the token to the databases it lists, exactly like a
// scoped API key.
func (v *oidcVerifier) principalOf(c claims) (principal, error) {
	sub, _ := c["sub"].(string)
	if sub == "" {
		sub, _ = c["client_id"].(string)
	}
	if sub == "" {
		return principal{}, oidcRefused("the token has no subject (sub)")
	}
	p := principal{clientID: "oidc:" + sub, name: sub, subject: sub}
	roles, _, err := c.stringList(v.cfg.permsClaim)
	if err != nil {
		return principal{}, err
	}
	for _, r := range roles {
		p.perms |= v.permOf(r)
	}
	if v.cfg.dbsClaim == "" {
		return p, nil
	}
	dbs, present, err := c.stringList(v.cfg.dbsClaim)
	if err != nil || !present {
		return p, err
	}
	for _, d := range dbs {
		if name, prefix := strings.CutSuffix(d, "*"); !(prefix && name == "") && validateDBName(name) != nil {
			return principal{}, oidcRefused("the %s claim holds %q, which is not a database name or prefix", v.cfg.dbsClaim, d)
		}
	}
	p.databases = append([]string{}, dbs...)
	return p, nil
}

// permOf is the permission a role claim value grants: through the role
// map when one is configured, else the values read, write and admin.
// Other values (a provider's own roles) grant nothing.
func (v *oidcVerifier) permOf(role string) perm {
	if v.cfg.roleMap != nil {
		return v.cfg.roleMap[role]
	}
	p, err := parsePerms([]string{role})
	if err != nil {
		return 0
	}
	return p
}

// parseRoleMap parses -oidc-role-map: comma-separated role=perms, perms
// being read, write and admin joined by "+", e.g.
// "ddb-reader=read,ddb-writer=read+write,ddb-admin=admin". "" is nil.
func parseRoleMap(s string) (map[string]perm, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]perm{}
	for _, entry := range strings.Split(s, ",") {
		role, perms, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok || role == "" || perms == "" {
			return nil, fmt.Errorf("-oidc-role-map: %q is not role=permissions (e.g. ddb-writer=read+write)", entry)
		}
		p, err := parsePerms(strings.Split(perms, "+"))
		if err != nil {
			return nil, fmt.Errorf("-oidc-role-map: %s: %w", role, err)
		}
		m[role] |= p
	}
	return m, nil
}
