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
	"unicode"
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
	// PreviousSHA256 is the hex SHA-256 of the secret the last rotation
	// replaced; it still authenticates until PreviousExpiresAt. "" for
	// none.
	PreviousSHA256    string     `json:"previous_sha256,omitempty"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at,omitempty"`
	// RotatedAt is when the secret was last replaced; nil: never.
	RotatedAt *time.Time `json:"rotated_at,omitempty"`
	// LastUsedAt is the key's last use to the minute, as last written
	// by flushUsage (keyusage.go); nil: never used since it was created.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
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
	// LastUsedAt is the last use, to the minute; null: never.
	LastUsedAt *time.Time `json:"last_used_at"`
	// RotatedAt is the last rotation; PreviousExpiresAt the end of the
	// replaced secret's grace period (absent once it has ended).
	RotatedAt         *time.Time `json:"rotated_at,omitempty"`
	PreviousExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

// info is the public view of k at now.
func (k apiKey) info(now time.Time) keyInfo {
	i := keyInfo{ID: k.ID, Name: k.Name, Permissions: k.Permissions, Databases: k.Databases,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, RotatedAt: k.RotatedAt}
	if k.PreviousExpiresAt != nil && now.Before(*k.PreviousExpiresAt) {
		i.PreviousExpiresAt = k.PreviousExpiresAt
	}
	return i
}

// keyEntry is a loaded API key with its parsed hashes and permissions.
type keyEntry struct {
	apiKey
	hash  [32]byte
	perms perm
	// prevHash is the hash of PreviousSHA256; hasPrev is false without
	// one.
	prevHash [32]byte
	hasPrev  bool
}

// secretFor checks that h, the hash of a secret that found k, names a
// secret of k that authenticates at now: the current one, or the one the
// last rotation replaced during its grace period. Else an error wrapping
// errUnauthenticated.
func (k *keyEntry) secretFor(h [32]byte, now time.Time) error {
	if prev, live := k.previousAt(now); h != k.hash && (!live || h != prev) {
		return reqErrorf(errUnauthenticated, "this API key secret was replaced by a rotation; use the new secret")
	}
	return nil
}

// previousAt returns the hash of the secret k's last rotation replaced,
// and whether that secret still authenticates at now. A nil k has none.
func (k *keyEntry) previousAt(now time.Time) ([32]byte, bool) {
	if k == nil || !k.hasPrev || k.PreviousExpiresAt == nil || !now.Before(*k.PreviousExpiresAt) {
		return [32]byte{}, false
	}
	return k.prevHash, true
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
		if k.PreviousSHA256 != "" {
			p, err := hex.DecodeString(k.PreviousSHA256)
			if err != nil || len(p) != sha256.Size {
				return nil, fmt.Errorf("key %q: previous_sha256 is not 64 hex digits", k.ID)
			}
			copy(e.prevHash[:], p)
			e.hasPrev = true
		}
		if e.perms, err = parsePerms(k.Permissions); err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		if k.Databases != nil {
			if err := validateKeyDatabases(k.Databases); err != nil {
				return nil, fmt.Errorf("key %q: %w", k.ID, err)
			}
		}
		if k.ID == "" || s.byID[k.ID] != nil || s.byHash[e.hash] != nil || e.hasPrev && (s.byHash[e.prevHash] != nil || e.prevHash == e.hash) {
			return nil, fmt.Errorf("key %q: empty or duplicate id or hash", k.ID)
		}
		s.keys = append(s.keys, e)
		s.byHash[e.hash], s.byID[k.ID] = e, e
		if e.hasPrev {
			s.byHash[e.prevHash] = e
		}
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
	// ExpiresIn is a Go duration ("24h") or days ("30d"); nil (absent or
	// null) never expires. "" is refused, as at an edit: a client whose
	// variable is unset would otherwise make a key that never expires.
	ExpiresIn *string `json:"expires_in"`
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
	if req.ExpiresIn != nil {
		d, err := parseExpiresIn(*req.ExpiresIn)
		if err != nil {
			return newKey{}, err
		}
		exp := now.Add(d)
		k.ExpiresAt = &exp
	}
	secret, hash, err := a.newSecret()
	if err != nil {
		return newKey{}, fmt.Errorf("create key: %w", err)
	}
	k.SHA256 = hash
	err = a.update(ctx, func(keys []apiKey) ([]apiKey, error) {
		id, err := a.newKeyID(keys)
		k.ID = id
		return append(keys, k), err
	})
	if err != nil {
		return newKey{}, fmt.Errorf("create key: %w", err)
	}
	return newKey{keyInfo: k.info(now), Secret: secret}, nil
}

// newSecret returns a new API key secret and the hex SHA-256 stored for
// it.
func (a *authenticator) newSecret() (secret, hash string, err error) {
	secret, err = a.randomString("dk_", 32)
	if err != nil {
		return "", "", fmt.Errorf("secret: %w", err)
	}
	h := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(h[:]), nil
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

// listKeys returns every key's public view in creation order, with its
// last use as this process knows it (newer than the stored one until the
// next flush).
func (a *authenticator) listKeys() []keyInfo {
	out := []keyInfo{}
	now := a.now()
	for _, k := range a.keys.Load().list() {
		out = append(out, a.withUsage(k).info(now))
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
		strings.ContainsFunc(req.Name, unicode.IsControl) {
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
	// The fsStore of a directory writes with the storage's durable-write
	// sequence; it lives as long as the key store (its root descriptor
	// is closed when it is unreachable).
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

// Rotation and editing: a key keeps its ID, name and scope
// while its secret or its permissions change.

// Rotation grace periods: how long the replaced secret still
// authenticates. The default gives every client a day to pick up the new
// one; 0 ends the old secret at once.
const (
	defaultRotationGrace = 24 * time.Hour
	maxRotationGrace     = 7 * 24 * time.Hour
)

// rotateKey gives key id a new secret. The replaced one keeps working for
// grace (its sessions too), then stops; a secret replaced by an earlier
// rotation stops at once. The new secret is in the answer only.
func (a *authenticator) rotateKey(ctx context.Context, id string, grace time.Duration) (newKey, error) {
	secret, hash, err := a.newSecret()
	if err != nil {
		return newKey{}, fmt.Errorf("rotate key: %w", err)
	}
	now := a.now().UTC()
	var rotated apiKey
	err = a.update(ctx, func(keys []apiKey) ([]apiKey, error) {
		i := slices.IndexFunc(keys, func(k apiKey) bool { return k.ID == id })
		if i < 0 {
			return nil, reqErrorf(errNotFound, "API key %q not found", id)
		}
		k := &keys[i]
		k.PreviousSHA256, k.PreviousExpiresAt = "", nil
		if grace > 0 {
			until := now.Add(grace)
			k.PreviousSHA256, k.PreviousExpiresAt = k.SHA256, &until
		}
		k.SHA256, k.RotatedAt = hash, &now
		rotated = *k
		return keys, nil
	})
	if err != nil {
		return newKey{}, fmt.Errorf("rotate key: %w", err)
	}
	return newKey{keyInfo: a.withUsage(rotated).info(now), Secret: secret}, nil
}

// keyEdit is the body of PATCH /api/keys/{id}: each member present
// replaces that part of the key; absent members are left as they are.
type keyEdit struct {
	Name        json.RawMessage `json:"name"`
	Permissions json.RawMessage `json:"permissions"`
	// Databases null allows every database.
	Databases json.RawMessage `json:"databases"`
	// ExpiresIn is a duration or days from now, as at creation; null
	// never expires.
	ExpiresIn json.RawMessage `json:"expires_in"`
}

// keyEditShape is what PATCH /api/keys/{id} takes, for error sentences.
const keyEditShape = `{"name"?, "permissions"?, "databases"? (null: all), "expires_in"? (null: never)}`

// editKey applies edit to key id durably and returns its public view. The
// key's sessions hold what the key holds now from their next request on.
func (a *authenticator) editKey(ctx context.Context, id string, edit keyEdit) (keyInfo, error) {
	if edit.Name == nil && edit.Permissions == nil && edit.Databases == nil && edit.ExpiresIn == nil {
		return keyInfo{}, reqErrorf(errInvalid, "body must be %s with at least one member", keyEditShape)
	}
	now := a.now().UTC()
	var edited apiKey
	err := a.update(ctx, func(keys []apiKey) ([]apiKey, error) {
		i := slices.IndexFunc(keys, func(k apiKey) bool { return k.ID == id })
		if i < 0 {
			return nil, reqErrorf(errNotFound, "API key %q not found", id)
		}
		k, err := applyKeyEdit(keys[i], edit, now)
		if err != nil {
			return nil, err
		}
		keys[i], edited = k, k
		return keys, nil
	})
	if err != nil {
		return keyInfo{}, fmt.Errorf("edit key: %w", err)
	}
	return a.withUsage(edited).info(now), nil
}

// applyKeyEdit returns k with edit applied at now, checked as a new key's
// request would be.
func applyKeyEdit(k apiKey, edit keyEdit, now time.Time) (apiKey, error) {
	req := keyRequest{Name: k.Name, Permissions: k.Permissions, Databases: k.Databases}
	if edit.Name != nil {
		if err := json.Unmarshal(edit.Name, &req.Name); err != nil || string(edit.Name) == "null" {
			return k, reqErrorf(errInvalid, `body must be %s: "name" is not a string`, keyEditShape)
		}
	}
	// Decoded into fresh slices: the key's own are shared with the key
	// set readers use.
	if edit.Permissions != nil {
		var perms []string
		if err := json.Unmarshal(edit.Permissions, &perms); err != nil || perms == nil {
			return k, reqErrorf(errInvalid, `body must be %s: "permissions" is not a list of names`, keyEditShape)
		}
		req.Permissions = perms
	}
	if edit.Databases != nil {
		req.Databases = nil
		if err := json.Unmarshal(edit.Databases, &req.Databases); err != nil {
			return k, reqErrorf(errInvalid, `body must be %s: "databases" is not a list of names or null`, keyEditShape)
		}
	}
	perms, err := checkKeyRequest(req)
	if err != nil {
		return k, err
	}
	k.Name, k.Permissions, k.Databases = req.Name, permNames(perms), req.Databases
	if edit.ExpiresIn != nil {
		var in *string
		if err := json.Unmarshal(edit.ExpiresIn, &in); err != nil {
			return k, reqErrorf(errInvalid, `body must be %s: "expires_in" is not a string or null`, keyEditShape)
		}
		k.ExpiresAt = nil
		if in != nil {
			d, err := parseExpiresIn(*in)
			if err != nil {
				return k, err
			}
			exp := now.Add(d)
			k.ExpiresAt = &exp
		}
	}
	return k, nil
}

// parseGrace parses the grace of a rotation: a Go duration from 0 (the
// old secret stops at once) to maxRotationGrace; "" is
// defaultRotationGrace.
func parseGrace(s string) (time.Duration, error) {
	if s == "" {
		return defaultRotationGrace, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxRotationGrace {
		return 0, reqErrorf(errInvalid, "grace %q: want a duration from 0s to 168h (7 days)", s)
	}
	return d, nil
}
