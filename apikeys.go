package main

// API keys (API.md "API keys (permission: admin)", ARCHITECTURE.md "Trust
// boundaries"): the key model, its checks, and its persistence as one document
// in the storage.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// attrKeyID is the log attribute of an API key's ID.
const attrKeyID = "key_id"

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
// It is a type of its own, not apiKey with the hash cleared, so that no
// forgotten line can send a hash to a client: it has no field for one.
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
	return principal{clientID: k.ID, name: k.Name, perms: k.perms, databases: dbs}, nil
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
	if err := a.store.save(ctx, keys); err != nil {
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

// permNames lists the permissions of p in the order API.md lists them (read,
// write, admin).
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

// The key store: one JSON document, an object of a store like every other
// piece of state.

// keyStore is where the API keys are persisted: object key of st. It is
// the storage's _auth/keys.json by default; -key-store names a local file
// instead, served by an fsStore rooted at the file's directory.
type keyStore struct {
	st  store
	key string
	// name names the store in messages: the -key-store path, or the
	// object in the storage.
	name string
}

// openKeyStore returns the key store of cfg: file (-key-store) if it is
// set, else authKeysObject in st.
func openKeyStore(st store, file string) (keyStore, error) {
	if file == "" {
		if st == nil {
			return keyStore{}, errors.New("-key-store: no storage for the API key store")
		}
		return keyStore{st: st, key: authKeysObject, name: authKeysObject + " in the storage"}, nil
	}
	// An fsStore takes a directory in its layout's place for a missing
	// object; a key store that is not a file must stop the start instead.
	if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() {
		return keyStore{}, fmt.Errorf("read API key store %s: not a regular file: %w", file, errConfig)
	}
	// The fsStore of a directory needs no Close, and writes with the
	// storage's durable-write sequence.
	dir, err := newFSStore(filepath.Dir(file))
	if err != nil {
		return keyStore{}, fmt.Errorf("-key-store %s: %w", file, err)
	}
	return keyStore{st: dir, key: filepath.Base(file), name: file}, nil
}

// keyStoreFormat is the version of the key store document.
const keyStoreFormat = 1

// keyStoreDoc is the JSON document of the key store.
type keyStoreDoc struct {
	Format int      `json:"format"`
	Keys   []apiKey `json:"keys"`
}

// load reads and checks the key store. Nothing stored yet is an empty set;
// anything unreadable or malformed is an error that stops the start, so a
// damaged store is never silently replaced by an empty one.
func (ks keyStore) load(ctx context.Context) (*keySet, error) {
	raw, err := ks.st.Get(ctx, ks.key)
	if errors.Is(err, errNotFound) {
		return newKeySet(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("read API key store %s: %w", ks.name, err)
	}
	var doc keyStoreDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, ks.corrupt(err)
	}
	if doc.Format != keyStoreFormat {
		return nil, ks.corrupt(fmt.Errorf("format %d, want %d", doc.Format, keyStoreFormat))
	}
	set, err := newKeySet(doc.Keys)
	if err != nil {
		return nil, ks.corrupt(err)
	}
	return set, nil
}

// corrupt is the start-up error of a key store that does not parse.
func (ks keyStore) corrupt(err error) error {
	return fmt.Errorf("API key store %s is corrupt (%v): restore it from a backup, or move it aside "+
		"to start with no API keys; it is never replaced automatically: %w", ks.name, err, errCorrupt)
}

// save writes keys to the key store durably.
func (ks keyStore) save(ctx context.Context, keys []apiKey) error {
	if keys == nil {
		keys = []apiKey{}
	}
	data, err := json.MarshalIndent(keyStoreDoc{Format: keyStoreFormat, Keys: keys}, "", "  ")
	if err != nil {
		return fmt.Errorf("save API key store %s: encode: %w", ks.name, err)
	}
	if err := ks.st.Put(ctx, ks.key, append(data, '\n')); err != nil {
		return fmt.Errorf("save API key store %s: %w", ks.name, err)
	}
	return nil
}
