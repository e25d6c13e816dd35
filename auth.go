package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
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

// authenticator checks bearer credentials (SPEC §3, §7): the admin key, API
// keys and session tokens, and owns the API key store and the sessions. It
// is safe for concurrent use.
//
// Every credential is looked up by its SHA-256. Map lookups are not
// constant time, but they are keyed by a hash of what the caller sent, so
// their timing tells the caller about hashes of its own guesses only; it
// cannot be steered towards the bytes of a stored 256-bit secret
// (preimage resistance). The admin key, which may be short, is compared
// with subtle.ConstantTimeCompare.
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

	// sessions maps the SHA-256 of a session token to its session. The
	// least recently used session goes first when it is full.
	sessions *lru[[32]byte, session]
	limiter  *failLimiter
}

// authConfig configures an authenticator. Zero values of the optional
// fields take the defaults named on each.
type authConfig struct {
	adminKey string
	// st holds the API key store at _auth/keys.json when keyFile is "".
	st store
	// keyFile is -key-store when it names a local file.
	keyFile   string
	clientTTL time.Duration
	now       func() time.Time
	// rand is the randomness of secrets, key IDs and tokens; nil: crypto/rand.
	rand io.Reader
	// maxFailures is how many failed authentications one client address
	// may make per failWindow before it gets 429; 0: 20.
	maxFailures int
	// failWindow is the rate limit's window; 0: one minute.
	failWindow time.Duration
	// maxClients bounds the client addresses the rate limit remembers; 0:
	// 10000.
	maxClients int
	// maxSessions bounds the live session tokens; 0: 100000.
	maxSessions int
}

// newAuthenticator loads the API key store and returns an authenticator
// that accepts the admin key, those keys and the sessions it creates. A
// missing store is an empty one; a corrupt or unreadable store is an error,
// never replaced.
func newAuthenticator(ctx context.Context, cfg authConfig) (*authenticator, error) {
	cfg = cfg.withDefaults()
	ks, err := openKeyStore(cfg.st, cfg.keyFile)
	if err != nil {
		return nil, err
	}
	set, err := ks.load(ctx)
	if err != nil {
		return nil, err
	}
	a := &authenticator{
		hasAdmin:  cfg.adminKey != "",
		adminHash: sha256.Sum256([]byte(cfg.adminKey)),
		store:     ks,
		clientTTL: cfg.clientTTL,
		now:       cfg.now,
		rand:      cfg.rand,
		sessions:  newLRU[[32]byte, session](cfg.maxSessions, cfg.clientTTL, cfg.now),
		limiter:   newFailLimiter(cfg.maxFailures, cfg.failWindow, cfg.maxClients, cfg.now),
	}
	a.keys.Store(set)
	return a, nil
}

// withDefaults fills in the zero fields of c.
func (c authConfig) withDefaults() authConfig {
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = cryptoRand
	}
	if c.clientTTL <= 0 {
		c.clientTTL = 24 * time.Hour
	}
	if c.maxFailures <= 0 {
		c.maxFailures = 20
	}
	if c.failWindow <= 0 {
		c.failWindow = time.Minute
	}
	if c.maxClients <= 0 {
		c.maxClients = 10000
	}
	if c.maxSessions <= 0 {
		c.maxSessions = 100000
	}
	return c
}

// authenticateFrom returns the principal of a bearer credential presented
// from clientAddr ("host:port" or a bare IP). Failures count against the
// client's address; a client over the limit gets an error wrapping
// errRateLimited before its credential is even looked at. An empty
// clientAddr (an in-process caller with no address) is not rate limited.
func (a *authenticator) authenticateFrom(cred, clientAddr string) (principal, error) {
	if cred == "" {
		return principal{}, reqErrorf(errUnauthenticated, "missing credential: send Authorization: Bearer <key or token>")
	}
	if clientAddr == "" {
		return a.resolve(cred)
	}
	client := clientKey(clientAddr)
	if wait := a.limiter.blocked(client); wait > 0 {
		return principal{}, &rateLimitError{retryAfter: wait}
	}
	p, err := a.resolve(cred)
	if err != nil {
		a.limiter.fail(client)
	}
	return p, err
}

// adminPrincipal is the principal of the admin key and its sessions.
var adminPrincipal = principal{clientID: "admin", perms: permRead | permWrite | permAdmin, admin: true}

// resolve maps a credential to its principal: the admin key, an API key or
// a session token, in that order.
func (a *authenticator) resolve(cred string) (principal, error) {
	h := sha256.Sum256([]byte(cred))
	now := a.now()
	if a.isAdmin(h) {
		return adminPrincipal, nil
	}
	if k, ok := a.keys.Load().byHash[h]; ok {
		return k.principalAt(now)
	}
	if s, ok := a.sessions.Get(h); ok {
		return a.sessionPrincipal(h, s, now)
	}
	return principal{}, reqErrorf(errUnauthenticated, "unknown credential")
}

// isAdmin reports in constant time whether h is the admin key's hash.
func (a *authenticator) isAdmin(h [32]byte) bool {
	return a.hasAdmin && subtle.ConstantTimeCompare(h[:], a.adminHash[:]) == 1
}

// sessionPrincipal checks session s (token hash h) at now. The principal is
// derived again from the session's key on every use, so a session never
// holds more than its key does now: a deleted or expired key ends its
// sessions at once.
func (a *authenticator) sessionPrincipal(h [32]byte, s session, now time.Time) (principal, error) {
	if !now.Before(s.expires) {
		a.sessions.Remove(h)
		return principal{}, reqErrorf(errUnauthenticated, "session token expired: log in again")
	}
	if s.keyID == "" {
		return adminPrincipal, nil
	}
	k, ok := a.keys.Load().byID[s.keyID]
	if !ok {
		a.sessions.Remove(h)
		return principal{}, reqErrorf(errUnauthenticated, "session token ended: its API key was deleted")
	}
	return k.principalAt(now)
}

// session is one server-side session created by /api/login.
type session struct {
	// keyID is the API key the session came from; "" for the admin key.
	keyID   string
	expires time.Time
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
func (a *authenticator) login(key, clientAddr string) (sessionGrant, error) {
	client := clientKey(clientAddr)
	if wait := a.limiter.blocked(client); wait > 0 {
		return sessionGrant{}, &rateLimitError{retryAfter: wait}
	}
	h := sha256.Sum256([]byte(key))
	now := a.now()
	s := session{expires: now.Add(a.clientTTL)}
	p := adminPrincipal
	if !a.isAdmin(h) {
		k, ok := a.keys.Load().byHash[h]
		if !ok {
			a.limiter.fail(client)
			return sessionGrant{}, reqErrorf(errUnauthenticated, "unknown key")
		}
		var err error
		if p, err = k.principalAt(now); err != nil {
			a.limiter.fail(client)
			return sessionGrant{}, fmt.Errorf("login: %w", err)
		}
		s.keyID = k.ID
		if k.ExpiresAt != nil && k.ExpiresAt.Before(s.expires) {
			s.expires = *k.ExpiresAt
		}
	}
	token, err := a.randomString("ds_", 32)
	if err != nil {
		return sessionGrant{}, fmt.Errorf("login: %w", err)
	}
	a.sessions.Add(sha256.Sum256([]byte(token)), s)
	return sessionGrant{Token: token, ClientID: p.clientID, ExpiresAt: s.expires.UTC(), Permissions: permNames(p.perms)}, nil
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

// rateLimitError is errRateLimited with the time until the client may try
// again.
type rateLimitError struct{ retryAfter time.Duration }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("too many failed authentications from this address; retry in %d s", e.seconds())
}

// Unwrap returns the message as a client sentence of kind errRateLimited.
func (e *rateLimitError) Unwrap() error { return &requestError{msg: e.Error(), kind: errRateLimited} }

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

// blocked returns how long client must wait before its credentials are
// checked again; 0 when it may try now.
func (l *failLimiter) blocked(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients.Peek(client)
	if !ok || c.n < l.max {
		return 0
	}
	return max(0, c.start.Add(l.window).Sub(l.now()))
}

// fail counts one failed authentication of client.
func (l *failLimiter) fail(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c, ok := l.clients.Peek(client)
	if !ok || !now.Before(c.start.Add(l.window)) {
		c = failCount{start: now}
	}
	c.n++
	l.clients.Add(client, c)
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

// The permissions of SPEC §3. admin implies read and write.
const (
	permRead perm = 1 << iota
	permWrite
	permAdmin
)

// principal is who a request acts for, once authenticated.
type principal struct {
	// clientID names the caller in logs and /api/me ("admin", a key ID, ...).
	clientID string
	perms    perm
	// admin is true for the admin key, which bypasses RBAC.
	admin bool
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

// permName is the SPEC name of a single permission.
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
func bearer(r *http.Request) string {
	cred, _ := bearerCredential(r.Header.Get("Authorization"))
	return cred
}

// bearerCredential returns the credential of a "Bearer X" header value
// (the scheme in any case); ok is false when h has no such prefix.
func bearerCredential(h string) (cred string, ok bool) {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}
