package main

// Session tokens (API.md "Login and logout"): stateless signed
// tokens, their revocation list and the per-key cap on live sessions.

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// sessionTokenPrefix starts every session token, so a token is never
// mistaken for an API key (dk_).
const sessionTokenPrefix = "ds_"

// sessionKeyInfo is the HKDF info of the session signing key: a key of its
// own, derived from the master key, so that a token's MAC says nothing
// about the key that encrypts the entities.
const sessionKeyInfo = "deltadatabase session tokens v1"

// deriveSessionKey derives the HMAC-SHA256 key of session tokens from the
// master key. Every main worker with the same master key derives the same
// key, so any of them checks any token, also after a restart.
func deriveSessionKey(master []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, nil, sessionKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive session key: %w", err)
	}
	return k, nil
}

// A session token is sessionTokenPrefix + base64url(payload || mac):
//
//	payload = version (1 byte) || expiry, unix ns (8 bytes, big endian)
//	          || token ID (16 random bytes) || key ID ("" for the admin key)
//	mac     = HMAC-SHA256(session key, payload || SHA-256 of the key)
//
// The MAC covers the hash of the key the session came from, so a session
// ends when its key is deleted, and an admin session when the admin key
// is changed, without any server-side state.
const (
	sessionTokenVersion = 1
	sessionHeaderLen    = 1 + 8 + 16
	// maxSessionTokenLen bounds what is decoded: the header, a key ID
	// and the MAC, in base64 with its prefix.
	maxSessionTokenLen = 256
)

// sessionClaims is what a session token says.
type sessionClaims struct {
	// keyID is the API key the session came from; "" for the admin key.
	keyID   string
	expires time.Time
	// id is the token's random ID, the name of its revocation.
	id [16]byte
}

// sessions signs and checks session tokens, keeps the revoked ones until
// they expire and caps the live sessions of each key. It is safe for
// concurrent use; mu guards revoked and live.
type sessions struct {
	key []byte
	// st holds the revocations durably; nil keeps them in memory only.
	st   store
	now  func() time.Time
	rand io.Reader
	// maxPerKey is the most live sessions of one key (see live).
	maxPerKey int

	mu sync.Mutex
	// revoked maps the ID of each logged-out token to its expiry.
	revoked map[[16]byte]time.Time
	// live holds, per key ID, the expiries of the tokens this process
	// issued that have not expired. Tokens are stateless, so this is the
	// only count of them there is: it starts empty on every start and
	// each main worker counts its own logins. A logout does not free a
	// slot: every logout leaves a revocation object until the token's
	// expiry, and counting issued tokens bounds those at maxPerKey per
	// key, where login and logout in a loop could otherwise fill the
	// storage.
	live map[string][]time.Time
}

// newSessions returns the session keeper of signing key key, loading the
// revocations from st.
func newSessions(ctx context.Context, key []byte, st store, now func() time.Time, rand io.Reader, maxPerKey int) (*sessions, error) {
	s := &sessions{key: key, st: st, now: now, rand: rand, maxPerKey: maxPerKey,
		revoked: map[[16]byte]time.Time{}, live: map[string][]time.Time{}}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// issue returns a new token for the key with ID keyID (hash keyHash),
// valid until expires. A key at its cap of live sessions gets an error
// wrapping errRateLimited instead.
func (s *sessions) issue(keyID string, keyHash [32]byte, expires time.Time) (string, error) {
	c := sessionClaims{keyID: keyID, expires: expires}
	if _, err := io.ReadFull(s.rand, c.id[:]); err != nil {
		return "", fmt.Errorf("session token: read random: %w", err)
	}
	if err := s.reserve(keyID, expires); err != nil {
		return "", err
	}
	payload := c.payload()
	raw := append(payload, s.mac(payload, keyHash)...)
	return sessionTokenPrefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// reserve counts one more session of keyID, expiring at expires, or
// refuses it when maxPerKey tokens of the key issued here are unexpired.
func (s *sessions) reserve(keyID string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	live := s.live[keyID][:0]
	for _, e := range s.live[keyID] {
		if now.Before(e) {
			live = append(live, e)
		}
	}
	if len(live) >= s.maxPerKey {
		s.live[keyID] = live
		first := live[0]
		for _, e := range live {
			first = minTime(first, e)
		}
		return &rateLimitError{retryAfter: first.Sub(now),
			reason: fmt.Sprintf("this key already has %d unexpired session tokens, the most allowed; reuse one", s.maxPerKey)}
	}
	s.live[keyID] = append(live, expires)
	return nil
}

// minTime is the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// payload is the signed part of c's token.
func (c sessionClaims) payload() []byte {
	b := make([]byte, sessionHeaderLen, sessionHeaderLen+len(c.keyID)+sha256.Size)
	b[0] = sessionTokenVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(c.expires.UnixNano()))
	copy(b[9:sessionHeaderLen], c.id[:])
	return append(b, c.keyID...)
}

// mac is the MAC of payload for the key with hash keyHash.
func (s *sessions) mac(payload []byte, keyHash [32]byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	m.Write(keyHash[:])
	return m.Sum(nil)
}

// parseSessionToken decodes token without checking its MAC (see verify); ok is
// false when it is not a session token at all.
func parseSessionToken(token string) (c sessionClaims, payload, mac []byte, ok bool) {
	rest, found := strings.CutPrefix(token, sessionTokenPrefix)
	if !found || len(token) > maxSessionTokenLen {
		return c, nil, nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) < sessionHeaderLen+sha256.Size || raw[0] != sessionTokenVersion {
		return c, nil, nil, false
	}
	payload, mac = raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	c.expires = time.Unix(0, int64(binary.BigEndian.Uint64(payload[1:9])))
	copy(c.id[:], payload[9:sessionHeaderLen])
	c.keyID = string(payload[sessionHeaderLen:])
	return c, payload, mac, true
}

// verify reports whether mac is the MAC of payload for the key with hash
// keyHash, in constant time.
func (s *sessions) verify(payload, mac []byte, keyHash [32]byte) bool {
	return hmac.Equal(mac, s.mac(payload, keyHash))
}

// isRevoked reports whether the token with claims c was logged out.
func (s *sessions) isRevoked(c sessionClaims) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.revoked[c.id]
	return ok
}

// revoke logs out the token with claims c: durably first, then here.
func (s *sessions) revoke(ctx context.Context, c sessionClaims) error {
	if s.st != nil {
		if err := s.st.Put(ctx, revocationObject(c.expires, c.id), []byte("{}\n")); err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[c.id] = c.expires
	return nil
}

// reload replaces the revocation list with the one in storage, deleting
// the revocations of tokens that have expired. Other main workers'
// logouts arrive here; watch calls it periodically.
func (s *sessions) reload(ctx context.Context) error {
	if s.st == nil {
		return nil
	}
	names, err := s.st.List(ctx, revokedPrefix, "", 0)
	if err != nil {
		return fmt.Errorf("list session revocations: %w", err)
	}
	now := s.now()
	revoked := make(map[[16]byte]time.Time, len(names))
	for _, name := range names {
		exp, id, ok := parseRevocation(name)
		if !ok {
			continue // not ours; left alone
		}
		if !now.Before(exp) {
			if err := s.st.Delete(ctx, name); err != nil && !errors.Is(err, errNotFound) {
				return fmt.Errorf("prune session revocation: %w", err)
			}
			continue
		}
		revoked[id] = exp
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Keep the revocations this process made since the listing began.
	for id, exp := range s.revoked {
		if now.Before(exp) {
			revoked[id] = exp
		}
	}
	s.revoked = revoked
	return nil
}

// watch reloads the revocations every interval until ctx ends, so a
// logout at another main worker takes effect here within interval.
// Failures are returned to onErr and retried at the next tick.
func (s *sessions) watch(ctx context.Context, interval time.Duration, onErr func(error)) {
	runEvery(ctx, interval, func() {
		if err := s.reload(ctx); err != nil && ctx.Err() == nil {
			onErr(err)
		}
	})
}
