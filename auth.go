package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// authenticator checks bearer credentials (API.md "Credentials: login,
// sessions, who am I, API keys"): the admin key, API keys and session tokens,
// and owns the API key store and the sessions. It is safe for concurrent use.
//
// Every key is looked up by its SHA-256. Map lookups are not constant
// time, but they are keyed by a hash of what the caller sent, so their
// timing tells the caller about hashes of its own guesses only; it cannot
// be steered towards the bytes of a stored 256-bit secret (preimage
// resistance). The admin key, which may be short, is compared with
// subtle.ConstantTimeCompare, session token MACs with hmac.Equal.
type authenticator struct {
	// adminHash is the SHA-256 of the admin key; hasAdmin is false when no
	// admin key was configured.
	adminHash [32]byte
	hasAdmin  bool
	store     keyStore
	clientTTL time.Duration
	now       func() time.Time
	rand      io.Reader

	// keys is the current set of API keys. It is replaced whole after each
	// durable save, so readers never lock; saveMu serialises the writers.
	keys   atomic.Pointer[keySet]
	saveMu sync.Mutex

	sessions *sessions
	// limiter is nil when the failed-auth rate limit is off.
	limiter *failLimiter
	// trusted are the proxies whose X-Forwarded-For is believed.
	trusted []netip.Prefix
	// failures counts failed authentications, rateLimited those of them
	// answered with errRateLimited (for the metrics).
	failures, rateLimited atomic.Uint64
	// oidc accepts an OpenID provider's access tokens; nil: none.
	oidc *oidcVerifier
	// usage is when each API key was last used (keyusage.go).
	usage keyUsage
}

// authConfig configures an authenticator. Zero values of the optional
// fields take the defaults named on each.
type authConfig struct {
	// adminKey is the admin key; adminHash, when set, is its SHA-256
	// instead (a stored, generated admin key). Neither: no admin key.
	adminKey  string
	adminHash *[32]byte
	// st holds the API key store at _auth/keys.json when keyFile is "",
	// and the session revocations; nil keeps revocations in memory.
	st store
	// keyFile is -key-store when it names a local file.
	keyFile string
	// sessionKey signs session tokens (deriveSessionKey); nil: a random
	// key, so sessions end with the authenticator (tests).
	sessionKey []byte
	clientTTL  time.Duration
	now        func() time.Time
	// rand is the randomness of secrets, key IDs and tokens; nil: crypto/rand.
	rand io.Reader
	// maxFailures is how many failed authentications one client may make
	// per failWindow before its failing attempts get 429 (-auth-fail-limit);
	// 0: 20; negative: no limit.
	maxFailures int
	// failWindow is the rate limit's window; 0: one minute.
	failWindow time.Duration
	// maxClients bounds the clients the rate limit remembers; 0: 10000.
	maxClients int
	// trustedProxies are the -trusted-proxies networks; nil: none.
	trustedProxies []netip.Prefix
	// maxSessions bounds the live session tokens of one key; 0: 1000.
	maxSessions int
	// oidc, when set, accepts the access tokens of an OpenID provider.
	oidc *oidcVerifier
}

// newAuthenticator loads the API key store and the session revocations
// and returns an authenticator that accepts the admin key, those keys and
// the sessions signed with cfg.sessionKey. A missing store is an empty
// one; a corrupt or unreadable store is an error, never replaced.
func newAuthenticator(ctx context.Context, cfg authConfig) (*authenticator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ks, err := openKeyStore(cfg.st, cfg.keyFile)
	if err != nil {
		return nil, err
	}
	set, err := ks.load(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := newSessions(ctx, cfg.sessionKey, cfg.st, cfg.now, cfg.rand, cfg.maxSessions)
	if err != nil {
		return nil, err
	}
	a := &authenticator{
		hasAdmin:  cfg.adminKey != "" || cfg.adminHash != nil,
		adminHash: sha256.Sum256([]byte(cfg.adminKey)),
		store:     ks,
		clientTTL: cfg.clientTTL,
		now:       cfg.now,
		rand:      cfg.rand,
		sessions:  sess,
		trusted:   cfg.trustedProxies,
		oidc:      cfg.oidc,
	}
	if cfg.adminHash != nil {
		a.adminHash = *cfg.adminHash
	}
	if cfg.maxFailures > 0 {
		a.limiter = newFailLimiter(cfg.maxFailures, cfg.failWindow, cfg.maxClients, cfg.now)
	}
	a.keys.Store(set)
	return a, nil
}

// withDefaults fills in the zero fields of c.
func (c authConfig) withDefaults() (authConfig, error) {
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = cryptoRand
	}
	if c.sessionKey == nil {
		c.sessionKey = make([]byte, 32)
		if _, err := io.ReadFull(cryptoRand, c.sessionKey); err != nil {
			return c, fmt.Errorf("session key: read random: %w", err)
		}
	}
	if c.clientTTL <= 0 {
		c.clientTTL = 24 * time.Hour
	}
	if c.maxFailures == 0 {
		c.maxFailures = 20
	}
	if c.failWindow <= 0 {
		c.failWindow = time.Minute
	}
	if c.maxClients <= 0 {
		c.maxClients = 10000
	}
	if c.maxSessions <= 0 {
		c.maxSessions = 1000
	}
	return c, nil
}

// authenticateFrom returns the principal of a bearer credential presented
// by client (an address, see clientAddr). A valid credential always
// passes, also from a client over the failed-auth limit: the limit only
// turns a failing attempt of such a client into an error wrapping
// errRateLimited, so a client with a stale key (or many users behind one
// address) cannot lock out the correct credentials. An empty client (an
// in-process caller with no address) is not rate limited.
func (a *authenticator) authenticateFrom(cred, client string) (principal, error) {
	if cred == "" {
		return principal{}, reqErrorf(errUnauthenticated, "missing credential: send Authorization: Bearer <key or token>")
	}
	p, err := a.resolve(cred)
	if errors.Is(err, errProviderUnavailable) {
		// The OpenID provider failed, not the client: not counted.
		return principal{}, err
	}
	if err != nil {
		return principal{}, a.failed(client, err)
	}
	return p, nil
}

// failed counts a failed authentication of client and returns err, or a
// rateLimitError once client is over the limit.
func (a *authenticator) failed(client string, err error) error {
	a.failures.Add(1)
	if a.limiter == nil || client == "" {
		return err
	}
	if wait := a.limiter.fail(clientKey(client)); wait > 0 {
		a.rateLimited.Add(1)
		return &rateLimitError{retryAfter: wait}
	}
	return err
}

// adminPrincipal is the principal of the admin key and its sessions.
var adminPrincipal = principal{clientID: "admin", name: "admin", perms: permRead | permWrite | permAdmin, admin: true}

// resolve maps a credential to its principal: the admin key, an API key,
// an OIDC access token (a JWT, when an issuer is configured) or a session
// token, in that order.
func (a *authenticator) resolve(cred string) (principal, error) {
	h := sha256.Sum256([]byte(cred))
	if a.isAdmin(h) {
		return adminPrincipal, nil // the admin key never expires: no clock read
	}
	now := a.now()
	if k, ok := a.keys.Load().byHash[h]; ok {
		if err := k.secretFor(h, now); err != nil {
			return principal{}, err
		}
		return a.keyPrincipal(k, now)
	}
	if a.oidc != nil && looksLikeJWT(cred) {
		return a.oidc.verify(cred)
	}
	c, k, err := a.checkSession(cred, now)
	if err != nil {
		return principal{}, err
	}
	if c.keyID == "" {
		return adminPrincipal, nil
	}
	return a.keyPrincipal(k, now)
}

// keyPrincipal is the principal of API key k at now, whose use it notes.
func (a *authenticator) keyPrincipal(k *keyEntry, now time.Time) (principal, error) {
	p, err := k.principalAt(now)
	if err == nil {
		a.usage.note(k.ID, now)
	}
	return p, err
}

// isAdmin reports in constant time whether h is the admin key's hash.
func (a *authenticator) isAdmin(h [32]byte) bool {
	return a.hasAdmin && subtle.ConstantTimeCompare(h[:], a.adminHash[:]) == 1
}

// checkSession checks session token token at now and returns its claims
// and its API key (nil for the admin key):
// signed by us for a key that still exists (the admin key that is
// configured now), not expired, not logged out. The principal is derived
// again from the key on every use (resolve), so a session never holds
// more than its key does now: a deleted or expired key ends its sessions
// at once.
func (a *authenticator) checkSession(token string, now time.Time) (sessionClaims, *keyEntry, error) {
	c, payload, mac, ok := parseSessionToken(token)
	if !ok {
		return c, nil, reqErrorf(errUnauthenticated, "unknown credential")
	}
	keyHash, k := a.adminHash, (*keyEntry)(nil)
	if c.keyID == "" {
		ok = a.hasAdmin
	} else if k, ok = a.keys.Load().byID[c.keyID]; ok {
		keyHash = k.hash
	}
	// A token of a deleted key, or one we never signed, is the same to
	// the client: both are unknown. A session bought with a secret that
	// a rotation replaced lasts as long as that secret's grace.
	signed := ok && a.sessions.verify(payload, mac, keyHash)
	if prev, live := k.previousAt(now); ok && !signed && live {
		signed = a.sessions.verify(payload, mac, prev)
	}
	if !signed {
		return c, nil, reqErrorf(errUnauthenticated, "unknown or ended session token: log in again")
	}
	if !now.Before(c.expires) {
		return c, nil, reqErrorf(errUnauthenticated, "session token expired: log in again")
	}
	if a.sessions.isRevoked(c) {
		return c, nil, reqErrorf(errUnauthenticated, "session token was logged out: log in again")
	}
	return c, k, nil
}

// sessionGrant is the answer of POST /api/login.
type sessionGrant struct {
	Token       string    `json:"token"`
	ClientID    string    `json:"client_id"`
	ExpiresAt   time.Time `json:"expires_at"`
	Permissions []string  `json:"permissions"`
}

// login exchanges the admin key or an API key (not a session token) for a
// new session token valid for clientTTL, and no longer than the key. It
// counts failures like authenticateFrom.
func (a *authenticator) login(key, client string) (sessionGrant, error) {
	h := sha256.Sum256([]byte(key))
	now := a.now()
	expires := now.Add(a.clientTTL)
	p, keyID := adminPrincipal, ""
	if !a.isAdmin(h) {
		k, ok := a.keys.Load().byHash[h]
		if !ok {
			return sessionGrant{}, a.failed(client, reqErrorf(errUnauthenticated, "unknown key"))
		}
		err := k.secretFor(h, now)
		if err == nil {
			p, err = a.keyPrincipal(k, now)
		}
		if err != nil {
			return sessionGrant{}, a.failed(client, fmt.Errorf("login: %w", err))
		}
		keyID = k.ID
		if k.ExpiresAt != nil && k.ExpiresAt.Before(expires) {
			expires = *k.ExpiresAt
		}
		// A session of a replaced secret ends with its grace.
		if h != k.hash && k.PreviousExpiresAt.Before(expires) {
			expires = *k.PreviousExpiresAt
		}
	}
	token, err := a.sessions.issue(keyID, h, expires)
	if err != nil {
		return sessionGrant{}, fmt.Errorf("login: %w", err)
	}
	return sessionGrant{Token: token, ClientID: p.clientID, ExpiresAt: expires.UTC(), Permissions: permNames(p.perms)}, nil
}

// logout revokes session token token, which must be valid: durably, until
// the token would have expired.
func (a *authenticator) logout(ctx context.Context, token string) error {
	c, _, err := a.checkSession(token, a.now())
	if err != nil {
		return reqErrorf(errInvalid, "logout takes a session token from /api/login, not a key")
	}
	return a.sessions.revoke(ctx, c)
}

// randomString is prefix followed by n random bytes in unpadded base64url.
func (a *authenticator) randomString(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(a.rand, b); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Failed-authentication rate limit.

// rateLimitError is a 429 with the time until the client may try again
// (REST's Retry-After): errRateLimited, or the sentinel kind.
type rateLimitError struct {
	retryAfter time.Duration
	// reason is the sentence before "retry in"; "": too many failed
	// authentications.
	reason string
	// kind is the sentinel of the refusal, a 429's; nil: errRateLimited.
	kind error
}

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("%s; retry in %d s", cmp.Or(e.reason, "too many failed authentications from this address"), e.seconds())
}

// Unwrap returns the message as a client sentence of its kind.
func (e *rateLimitError) Unwrap() error {
	return &requestError{msg: e.Error(), kind: cmp.Or(e.kind, errRateLimited)}
}

// seconds is the Retry-After value: whole seconds, rounded up, at least 1.
func (e *rateLimitError) seconds() int {
	return max(1, int((e.retryAfter+time.Second-1)/time.Second))
}

// failLimiter counts failed authentications per client address in fixed
// windows. It remembers at most maxClients addresses, dropping the one
// that failed least recently, so its memory is bounded. It is safe for
// concurrent use; mu makes each check-and-count atomic.
type failLimiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	now     func() time.Time
	clients *lru[string, failCount]
}

// failCount is one client's failures in the window starting at start.
type failCount struct {
	start time.Time
	n     int
}

func newFailLimiter(maxFailures int, window time.Duration, maxClients int, now func() time.Time) *failLimiter {
	return &failLimiter{max: maxFailures, window: window, now: now,
		clients: newLRU[string, failCount](maxClients, window, now)}
}

// blocked returns how long client's failing attempts are answered 429;
// 0 when they are answered 401.
func (l *failLimiter) blocked(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients.Peek(client)
	if !ok || c.n < l.max {
		return 0
	}
	return max(0, c.start.Add(l.window).Sub(l.now()))
}

// fail counts one failed authentication of client and returns how long
// client must wait before a failing attempt is answered 401 again: 0
// while it is within the limit, counting this one.
func (l *failLimiter) fail(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c, ok := l.clients.Peek(client)
	if !ok || !now.Before(c.start.Add(l.window)) {
		c = failCount{start: now}
	}
	if c.n >= l.max {
		return max(time.Nanosecond, c.start.Add(l.window).Sub(now))
	}
	c.n++
	l.clients.Add(client, c)
	return 0
}

// clientOf is the address r comes from, for the rate limit and logs
// (clientAddr). A nil authenticator trusts no proxy.
func (a *authenticator) clientOf(r *http.Request) string {
	if a == nil || len(a.trusted) == 0 {
		// No proxy is trusted: the TCP peer is the client (clientAddr
		// would say so too, after parsing it).
		return r.RemoteAddr
	}
	return clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.trusted)
}

// clientAddr is the address a request comes from: remote, its TCP peer,
// unless that is a trusted proxy; then the right-most address of
// X-Forwarded-For (xff: the header's values in order) that is not a
// trusted proxy. Entries left of that one were written by the client
// itself and prove nothing. An entry that does not parse ends the walk at
// the trusted proxy that passed it on.
func clientAddr(remote string, xff []string, trusted []netip.Prefix) string {
	ip, ok := parseHostIP(remote)
	if !ok || !isTrusted(ip, trusted) {
		return remote
	}
	var hops []string
	for _, v := range xff {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := parseHostIP(strings.TrimSpace(hops[i]))
		if !ok {
			return client
		}
		client = ip.String()
		if !isTrusted(ip, trusted) {
			return client
		}
	}
	return client
}

// parseHostIP parses an IP address with or without a port.
func parseHostIP(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.WithZone("").Unmap(), true
}

// isTrusted reports whether ip is in one of the trusted networks.
func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientKey is the rate-limit identity of a remote address: the IP, or
// the /64 network of an IPv6 address, since one host usually owns a whole
// /64.
func clientKey(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Principals and permissions.

// perm is a set of permissions. The zero value grants nothing; as a
// route's requirement it means any valid credential.
type perm uint8

// The permissions of API.md "Credentials: login, sessions, who am I, API
// keys". admin implies read and write.
const (
	permRead perm = 1 << iota
	permWrite
	permAdmin
)

// principal is who a request acts for, once authenticated.
type principal struct {
	// clientID names the caller in logs and /api/me ("admin", a key ID, ...).
	clientID string
	// name is what a person calls the caller: "admin" or the API key's
	// name (the UI's top bar shows it; IDs mean nothing to people).
	name  string
	perms perm
	// admin is true for the admin key, which bypasses RBAC.
	admin bool
	// subject is the sub claim of an OIDC token; "" for keys and sessions.
	subject string
	// databases limits the principal to these databases (exact names or
	// prefixes ending in "*"); nil means all.
	databases []string
}

// allowsDB reports whether p may touch database db.
func (p principal) allowsDB(db string) bool {
	if p.admin || p.databases == nil {
		return true
	}
	for _, pat := range p.databases {
		if pre, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(db, pre) || pat == db {
			return true
		}
	}
	return false
}

// authorize is the one permission check of REST routes and gRPC Process:
// p must hold need and, when db is not "", be allowed database db.
func authorize(p principal, need perm, db string) error {
	if !p.has(need) {
		return reqErrorf(errForbidden, "this credential lacks the %s permission", permName(need))
	}
	if db != "" && !p.allowsDB(db) {
		return reqErrorf(errForbidden, "this credential may not access database %q", db)
	}
	return nil
}

// permName is the API name of a single permission.
func permName(pm perm) string {
	switch pm {
	case permRead:
		return "read"
	case permWrite:
		return "write"
	default:
		return "admin"
	}
}

// has reports whether p holds permission need; admin holds all.
func (p principal) has(need perm) bool {
	return p.admin || p.perms&permAdmin != 0 || p.perms&need == need
}

// bearer extracts the credential of an "Authorization: Bearer X" header.
// The header is read by its canonical key, not through Header.Get, which
// would canonicalize the key on every request.
func bearer(r *http.Request) string {
	cred, _ := bearerCredential(firstHeader(r.Header, "Authorization"))
	return cred
}

// firstHeader is h.Get(key) for a key already in canonical form
// (http.CanonicalHeaderKey(key) == key), without canonicalizing it.
func firstHeader(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// bearerCredential returns the credential of a "Bearer X" header value
// (the scheme in any case); ok is false when h has no such prefix.
func bearerCredential(h string) (cred string, ok bool) {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}
