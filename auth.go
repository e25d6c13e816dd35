package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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

// authKeysObject is the logical object of the key store when -key-store is
// not given (SPEC §4).
const authKeysObject = authPrefix + "keys.json"

// attrKeyID is the log attribute of an API key's ID.
const attrKeyID = "key_id"

// newAuthenticator loads the API key store and returns an authenticator
// that accepts the admin key, those keys and the sessions it creates. A
// missing store is an empty one; a corrupt or unreadable store is an error,
// never replaced.
func newAuthenticator(ctx context.Context, cfg authConfig) (*authenticator, error) {
	cfg = cfg.withDefaults()
	var ks keyStore = fileKeyStore{path: cfg.keyFile}
	if cfg.keyFile == "" {
		if cfg.st == nil {
			return nil, errors.New("-key-store: no storage for the API key store")
		}
		ks = objectKeyStore{st: cfg.st, key: authKeysObject}
	}
	set, err := loadKeySet(ctx, ks)
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

// API keys.

// apiKey is one API key as stored in the key store. Its secret is never
// stored, only its SHA-256.
type apiKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// SHA256 is the hex SHA-256 of the secret.
	SHA256      string   `json:"sha256"`
	Permissions []string `json:"permissions"`
	// Databases limits the key to these databases (exact names or
	// prefixes ending in "*"); empty means all.
	Databases []string  `json:"databases,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is nil for a key that never expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// keyInfo is an API key as GET /api/keys shows it: never a secret or hash.
type keyInfo struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	Databases   []string   `json:"databases,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// info is the public view of k.
func (k apiKey) info() keyInfo {
	return keyInfo{ID: k.ID, Name: k.Name, Permissions: k.Permissions, Databases: k.Databases,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt}
}

// keyEntry is a loaded API key with its parsed hash and permissions.
type keyEntry struct {
	apiKey
	hash  [32]byte
	perms perm
}

// principalAt is the principal of k at now, or an error wrapping
// errUnauthenticated once k has expired.
func (k *keyEntry) principalAt(now time.Time) (principal, error) {
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return principal{}, reqErrorf(errUnauthenticated, "API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	var dbs []string
	if len(k.Databases) > 0 {
		dbs = k.Databases
	}
	return principal{clientID: k.ID, perms: k.perms, databases: dbs}, nil
}

// keySet is an immutable set of API keys, indexed by hash and ID.
type keySet struct {
	keys   []*keyEntry // creation order
	byHash map[[32]byte]*keyEntry
	byID   map[string]*keyEntry
}

// newKeySet indexes keys, checking each as it would be accepted from a
// client.
func newKeySet(keys []apiKey) (*keySet, error) {
	s := &keySet{byHash: make(map[[32]byte]*keyEntry, len(keys)), byID: make(map[string]*keyEntry, len(keys))}
	for _, k := range keys {
		e := &keyEntry{apiKey: k}
		h, err := hex.DecodeString(k.SHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("key %q: sha256 is not 64 hex digits", k.ID)
		}
		copy(e.hash[:], h)
		if e.perms, err = parsePerms(k.Permissions); err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		if k.Databases != nil {
			if err := validateKeyDatabases(k.Databases); err != nil {
				return nil, fmt.Errorf("key %q: %w", k.ID, err)
			}
		}
		if k.ID == "" || s.byID[k.ID] != nil || s.byHash[e.hash] != nil {
			return nil, fmt.Errorf("key %q: empty or duplicate id or hash", k.ID)
		}
		s.keys = append(s.keys, e)
		s.byHash[e.hash], s.byID[k.ID] = e, e
	}
	return s, nil
}

// list returns the stored form of every key, in creation order.
func (s *keySet) list() []apiKey {
	out := make([]apiKey, len(s.keys))
	for i, e := range s.keys {
		out[i] = e.apiKey
	}
	return out
}

// keyRequest is the body of POST /api/keys.
type keyRequest struct {
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
	// ExpiresIn is a Go duration ("24h") or days ("30d"); "" never expires.
	ExpiresIn string `json:"expires_in"`
	// Databases is nil for all databases.
	Databases []string `json:"databases"`
}

// newKey is the answer of POST /api/keys: the only time the secret is
// shown.
type newKey struct {
	keyInfo
	Secret string `json:"secret"`
}

// maxKeyNameLen is the longest API key name in bytes.
const maxKeyNameLen = 128

// createKey checks req, creates the key, saves the key store durably and
// only then makes the key usable.
func (a *authenticator) createKey(ctx context.Context, req keyRequest) (newKey, error) {
	perms, err := checkKeyRequest(req)
	if err != nil {
		return newKey{}, err
	}
	now := a.now().UTC()
	k := apiKey{Name: req.Name, Permissions: permNames(perms), Databases: req.Databases, CreatedAt: now}
	if req.ExpiresIn != "" {
		d, err := parseExpiresIn(req.ExpiresIn)
		if err != nil {
			return newKey{}, err
		}
		exp := now.Add(d)
		k.ExpiresAt = &exp
	}
	secret, err := a.randomString("dk_", 32)
	if err != nil {
		return newKey{}, fmt.Errorf("create key: secret: %w", err)
	}
	h := sha256.Sum256([]byte(secret))
	k.SHA256 = hex.EncodeToString(h[:])
	err = a.update(ctx, func(keys []apiKey) ([]apiKey, error) {
		id, err := a.newKeyID(keys)
		k.ID = id
		return append(keys, k), err
	})
	if err != nil {
		return newKey{}, fmt.Errorf("create key: %w", err)
	}
	return newKey{keyInfo: k.info(), Secret: secret}, nil
}

// newKeyID returns a random key ID not used by keys.
func (a *authenticator) newKeyID(keys []apiKey) (string, error) {
	for {
		b := make([]byte, 8)
		if _, err := io.ReadFull(a.rand, b); err != nil {
			return "", fmt.Errorf("key id: read random: %w", err)
		}
		id := "key_" + hex.EncodeToString(b)
		if !slices.ContainsFunc(keys, func(k apiKey) bool { return k.ID == id }) {
			return id, nil
		}
	}
}

// deleteKey removes key id durably; its sessions stop working with it.
func (a *authenticator) deleteKey(ctx context.Context, id string) error {
	return a.update(ctx, func(keys []apiKey) ([]apiKey, error) {
		i := slices.IndexFunc(keys, func(k apiKey) bool { return k.ID == id })
		if i < 0 {
			return nil, reqErrorf(errNotFound, "API key %q not found", id)
		}
		return slices.Delete(keys, i, i+1), nil
	})
}

// listKeys returns every key's public view in creation order.
func (a *authenticator) listKeys() []keyInfo {
	out := []keyInfo{}
	for _, k := range a.keys.Load().list() {
		out = append(out, k.info())
	}
	return out
}

// update applies change to a copy of the keys, saves the result durably and
// then installs it. Writers are serialised; readers see the old set until
// the new one is on disk.
func (a *authenticator) update(ctx context.Context, change func([]apiKey) ([]apiKey, error)) error {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	keys, err := change(a.keys.Load().list())
	if err != nil {
		return err
	}
	set, err := newKeySet(keys)
	if err != nil {
		return fmt.Errorf("index keys: %w", err)
	}
	if err := saveKeySet(ctx, a.store, keys); err != nil {
		return err
	}
	a.keys.Store(set)
	return nil
}

// checkKeyRequest validates a POST /api/keys body (everything but
// expires_in) and returns its permissions.
func checkKeyRequest(req keyRequest) (perm, error) {
	if req.Name == "" || len(req.Name) > maxKeyNameLen || !utf8.ValidString(req.Name) ||
		strings.ContainsFunc(req.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return 0, reqErrorf(errInvalid, "name must be 1 to %d bytes of text without control characters", maxKeyNameLen)
	}
	perms, err := parsePerms(req.Permissions)
	if err != nil {
		return 0, err
	}
	if req.Databases != nil {
		if err := validateKeyDatabases(req.Databases); err != nil {
			return 0, err
		}
	}
	return perms, nil
}

// parsePerms parses a non-empty list of permission names.
func parsePerms(names []string) (perm, error) {
	if len(names) == 0 {
		return 0, reqErrorf(errInvalid, "permissions must list at least one of read, write, admin")
	}
	var p perm
	for _, n := range names {
		switch n {
		case "read":
			p |= permRead
		case "write":
			p |= permWrite
		case "admin":
			p |= permAdmin
		default:
			return 0, reqErrorf(errInvalid, "unknown permission %q (want read, write or admin)", n)
		}
	}
	return p, nil
}

// permNames lists the permissions of p in SPEC order.
func permNames(p perm) []string {
	names := []string{}
	for _, pm := range []perm{permRead, permWrite, permAdmin} {
		if p&pm != 0 {
			names = append(names, permName(pm))
		}
	}
	return names
}

// maxKeyDatabases is the most database patterns one key may carry.
const maxKeyDatabases = 100

// validateKeyDatabases checks a key's database list: 1 to maxKeyDatabases
// exact database names or prefixes ending in "*" ("*" alone is all).
func validateKeyDatabases(dbs []string) error {
	if len(dbs) == 0 || len(dbs) > maxKeyDatabases {
		return reqErrorf(errInvalid, "databases must list 1 to %d names or prefixes (omit it for all)", maxKeyDatabases)
	}
	for _, d := range dbs {
		name, prefix := strings.CutSuffix(d, "*")
		if prefix && name == "" {
			continue
		}
		if err := validateDBName(name); err != nil {
			return reqPrefixf(err, "databases")
		}
	}
	return nil
}

// maxKeyDays is the longest "Nd" expires_in, about 100 years.
const maxKeyDays = 36500

// parseExpiresIn parses expires_in: a positive Go duration ("24h") or a
// whole number of days ("30d").
func parseExpiresIn(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n == 0 || n > maxKeyDays {
			return 0, reqErrorf(errInvalid, "expires_in %q: want 1d to %dd or a duration such as 24h", s, maxKeyDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, reqErrorf(errInvalid, "expires_in %q: want a positive duration (24h) or days (30d)", s)
	}
	return d, nil
}

// The key store.

// keyStore is where the API keys live: an object of the storage backend
// or a local file (-key-store).
type keyStore interface {
	// load returns the stored bytes, or an error wrapping errNotFound if
	// nothing was ever saved.
	load(ctx context.Context) ([]byte, error)
	// save replaces the stored bytes durably (0600).
	save(ctx context.Context, data []byte) error
	// String names the store in messages.
	String() string
}

// keyStoreFormat is the version of the key store document.
const keyStoreFormat = 1

// keyStoreDoc is the JSON document of the key store.
type keyStoreDoc struct {
	Format int      `json:"format"`
	Keys   []apiKey `json:"keys"`
}

// loadKeySet reads and checks the key store. Nothing stored yet is an empty
// set; anything unreadable or malformed is an error that stops the start,
// so a damaged store is never silently replaced by an empty one.
func loadKeySet(ctx context.Context, ks keyStore) (*keySet, error) {
	raw, err := ks.load(ctx)
	if errors.Is(err, errNotFound) {
		return newKeySet(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("read API key store %s: %w", ks, err)
	}
	var doc keyStoreDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, corruptKeyStore(ks, err)
	}
	if doc.Format != keyStoreFormat {
		return nil, corruptKeyStore(ks, fmt.Errorf("format %d, want %d", doc.Format, keyStoreFormat))
	}
	set, err := newKeySet(doc.Keys)
	if err != nil {
		return nil, corruptKeyStore(ks, err)
	}
	return set, nil
}

// corruptKeyStore is the start-up error of a key store that does not parse.
func corruptKeyStore(ks keyStore, err error) error {
	return fmt.Errorf("API key store %s is corrupt (%v): restore it from a backup, or move it aside "+
		"to start with no API keys; it is never replaced automatically: %w", ks, err, errCorrupt)
}

// saveKeySet writes keys to the key store durably.
func saveKeySet(ctx context.Context, ks keyStore, keys []apiKey) error {
	if keys == nil {
		keys = []apiKey{}
	}
	data, err := json.MarshalIndent(keyStoreDoc{Format: keyStoreFormat, Keys: keys}, "", "  ")
	if err != nil {
		return fmt.Errorf("save API key store %s: encode: %w", ks, err)
	}
	if err := ks.save(ctx, append(data, '\n')); err != nil {
		return fmt.Errorf("save API key store %s: %w", ks, err)
	}
	return nil
}

// objectKeyStore keeps the keys in an object of the storage backend, so
// it works on every backend.
type objectKeyStore struct {
	st  store
	key string
}

func (o objectKeyStore) load(ctx context.Context) ([]byte, error) { return o.st.Get(ctx, o.key) }

func (o objectKeyStore) save(ctx context.Context, data []byte) error {
	return o.st.Put(ctx, o.key, data)
}

func (o objectKeyStore) String() string { return o.key + " in the storage" }

// fileKeyStore keeps the keys in a local file, written with the store's
// durable-write sequence.
type fileKeyStore struct{ path string }

func (f fileKeyStore) load(ctx context.Context) ([]byte, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", err, errNotFound)
	}
	return b, err
}

func (f fileKeyStore) save(ctx context.Context, data []byte) error {
	if step, err := writeDurable(f.path, data); err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

func (f fileKeyStore) String() string { return f.path }

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
