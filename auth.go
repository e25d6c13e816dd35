package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"
)

// perm is a set of permissions. The zero value grants nothing.
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

// has reports whether p holds permission need; admin holds all.
func (p principal) has(need perm) bool {
	return p.admin || p.perms&permAdmin != 0 || p.perms&need == need
}

// errUnauthenticated means no, an unknown or an expired credential (401);
// errForbidden a valid credential without the permission (403).
var (
	errUnauthenticated = errors.New("missing or invalid credential")
	errForbidden       = errors.New("permission denied")
)

// authenticator checks bearer credentials. It is safe for concurrent use.
type authenticator struct {
	// adminHash is the SHA-256 of the admin key; comparing fixed-length
	// hashes in constant time leaks neither content nor length.
	adminHash [32]byte
}

// authConfig configures an authenticator.
type authConfig struct {
	adminKey string
	// st holds the API key store at _auth/keys.json when keyFile is "".
	st store
	// keyFile is -key-store when it names a local file.
	keyFile   string
	clientTTL time.Duration
	now       func() time.Time
}

// newAuthenticator returns an authenticator that accepts the admin key.
func newAuthenticator(ctx context.Context, cfg authConfig) (*authenticator, error) {
	return &authenticator{adminHash: sha256.Sum256([]byte(cfg.adminKey))}, nil
}

// authenticate returns the principal of a bearer credential.
func (a *authenticator) authenticate(cred string) (principal, error) {
	if cred == "" {
		return principal{}, errUnauthenticated
	}
	h := sha256.Sum256([]byte(cred))
	if subtle.ConstantTimeCompare(h[:], a.adminHash[:]) == 1 {
		return principal{clientID: "admin", perms: permRead | permWrite | permAdmin, admin: true}, nil
	}
	return principal{}, errUnauthenticated
}

// bearer extracts the credential of an "Authorization: Bearer X" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}
