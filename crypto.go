package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Entity envelope, one self-describing blob per entity (ARCHITECTURE.md
// "Storage layout"):
//
//	offset  size  field
//	0       4     magic "DDBE"
//	4       1     format version: 1 sealed under the master key itself
//	              (before envelope encryption), 2 under the database's
//	              data key (keyring.go)
//	5       1     key ID length n (1..255)
//	6       n     key ID: of the master key (format 1) or of the
//	              database's data key (format 2)
//	6+n     12    GCM nonce
//	18+n    8     written-at, Unix nanoseconds, big-endian int64
//	26+n    ...   AES-256-GCM ciphertext followed by the 16-byte tag
//
// The GCM additional data is the whole header (bytes 0 to 26+n) followed by
// the database name, one 0x00 byte and the entity key. Names are validated
// and never contain 0x00, so the pair is unambiguous: a blob copied to
// another (db, key), or any edit to its header, fails authentication.
const (
	envelopeMagic = "DDBE"
	// formatMaster is the format of entities sealed directly under the
	// master key: every entity written before envelope encryption. They
	// are read, never written, and turn into formatDataKey on their next
	// write (or a rekey, or a master-key rotation).
	formatMaster = 1
	// formatDataKey is the format of entities sealed under their
	// database's data key.
	formatDataKey = 2
	masterKeySize = 32 // AES-256
	nonceSize     = 12 // GCM standard nonce
	writtenSize   = 8
	tagSize       = 16
	maxKeyIDLen   = 255
)

// envelopeHeader is the decoded plaintext header of a sealed entity.
type envelopeHeader struct {
	Format  uint8     // envelope format version: formatMaster or formatDataKey
	KeyID   string    // ID of the key the entity was sealed with (see Format)
	Nonce   [12]byte  // GCM nonce, fresh random bytes on every write
	Written time.Time // when the entity was sealed, from the sealer's clock, UTC
}

// etag returns the hex nonce: it changes on every write of an entity, so
// it serves as the entity's version tag.
func (h envelopeHeader) etag() string {
	return hex.EncodeToString(h.Nonce[:])
}

// sealer encrypts and decrypts entity envelopes of one format under one
// key. It is safe for concurrent use; reads from the nonce source are
// serialised. The zero value is not usable; build one with newSealer or
// newDataKeySealer.
type sealer struct {
	aead   cipher.AEAD
	keyID  string
	format uint8
	now    func() time.Time

	mu     sync.Mutex // guards nonces
	nonces io.Reader
}

// newSealer returns a sealer of format-1 envelopes for the 32-byte
// masterKey named keyID (1 to 255 bytes). Nonces are read from nonces
// (crypto/rand.Reader in production) and write times from now. The sealer
// keeps no reference to masterKey, so the caller may zero it afterwards.
func newSealer(masterKey []byte, keyID string, nonces io.Reader, now func() time.Time) (*sealer, error) {
	return newFormatSealer(formatMaster, masterKey, keyID, nonces, now)
}

// newDataKeySealer is newSealer for format-2 envelopes under a database's
// data key named keyID.
func newDataKeySealer(dataKey []byte, keyID string, nonces io.Reader, now func() time.Time) (*sealer, error) {
	return newFormatSealer(formatDataKey, dataKey, keyID, nonces, now)
}

// newFormatSealer is newSealer for envelopes of format.
func newFormatSealer(format uint8, key []byte, keyID string, nonces io.Reader, now func() time.Time) (*sealer, error) {
	if len(key) != masterKeySize {
		return nil, fmt.Errorf("new sealer: master key is %d bytes, want %d", len(key), masterKeySize)
	}
	if keyID == "" || len(keyID) > maxKeyIDLen {
		return nil, fmt.Errorf("new sealer: key ID is %d bytes, want 1 to %d", len(keyID), maxKeyIDLen)
	}
	if nonces == nil || now == nil {
		return nil, errors.New("new sealer: nonce source and clock are required")
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("new sealer: %w", err)
	}
	return &sealer{aead: aead, keyID: keyID, format: format, now: now, nonces: nonces}, nil
}

// newGCM returns AES-256-GCM under key.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext as the entity key of database db and returns the
// complete envelope.
func (s *sealer) seal(db, key string, plaintext []byte) ([]byte, error) {
	h := envelopeHeader{Format: s.format, KeyID: s.keyID, Written: s.now()}
	if err := s.readNonce(h.Nonce[:]); err != nil {
		return nil, fmt.Errorf("seal: read nonce: %w", err)
	}
	return s.sealAs(h, db, key, plaintext), nil
}

// reseal encrypts plaintext again under this sealer's key, keeping the
// nonce and write time of h, the header it had: its ETag (the nonce)
// stays, so that re-encrypting an entity (a rekey, an upgrade of its
// format) is no new version of it. A GCM nonce must be unique per key,
// and this key has never sealed this entity: a random 96-bit nonce drawn
// under another key repeats one drawn under this one with negligible
// probability, as any two random nonces do.
func (s *sealer) reseal(h envelopeHeader, db, key string, plaintext []byte) []byte {
	h.Format, h.KeyID = s.format, s.keyID
	return s.sealAs(h, db, key, plaintext)
}

// sealAs encrypts plaintext with header h.
func (s *sealer) sealAs(h envelopeHeader, db, key string, plaintext []byte) []byte {
	hdr := h.marshal(make([]byte, 0, h.size()+len(plaintext)+tagSize))
	return s.aead.Seal(hdr, h.Nonce[:], plaintext, additionalData(hdr, db, key))
}

// open authenticates and decrypts an envelope sealed for (db, key). Every
// failure wraps errCorrupt and returns no plaintext; it never panics.
func (s *sealer) open(db, key string, sealed []byte) ([]byte, envelopeHeader, error) {
	h, n, err := parseHeader(sealed)
	if err != nil {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: %w", err)
	}
	if h.Format != s.format {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: envelope format %d, want %d: %w", h.Format, s.format, errCorrupt)
	}
	if h.KeyID != s.keyID {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: sealed with key ID %q, but the loaded master key is %q: %w",
			h.KeyID, s.keyID, errCorrupt)
	}
	plaintext, err := s.aead.Open(nil, h.Nonce[:], sealed[n:], additionalData(sealed[:n], db, key))
	if err != nil {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: decrypt: message authentication failed: %w", errCorrupt)
	}
	return plaintext, h, nil
}

// header decodes the header of an envelope without authenticating it,
// for example to take the etag of a blob seal just returned. Its contents
// are attacker-controlled for stored bytes: use open to read those. Errors
// wrap errCorrupt.
func (s *sealer) header(sealed []byte) (envelopeHeader, error) {
	h, _, err := parseHeader(sealed)
	if err != nil {
		return envelopeHeader{}, fmt.Errorf("read envelope header: %w", err)
	}
	return h, nil
}

// readNonce fills b from the nonce source.
func (s *sealer) readNonce(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := io.ReadFull(s.nonces, b)
	return err
}

// size returns the encoded length of h.
func (h envelopeHeader) size() int {
	return len(envelopeMagic) + 2 + len(h.KeyID) + nonceSize + writtenSize
}

// marshal appends the encoded header to b.
func (h envelopeHeader) marshal(b []byte) []byte {
	b = append(b, envelopeMagic...)
	b = append(b, h.Format, byte(len(h.KeyID)))
	b = append(b, h.KeyID...)
	b = append(b, h.Nonce[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.Written.UnixNano()))
}

// parseHeader decodes the header at the start of sealed and returns it with
// its length. It checks every length before slicing; errors wrap errCorrupt.
func parseHeader(sealed []byte) (envelopeHeader, int, error) {
	const fixed = len(envelopeMagic) + 2 // magic, format, key ID length
	if len(sealed) < fixed {
		return envelopeHeader{}, 0, fmt.Errorf("header truncated at %d bytes: %w", len(sealed), errCorrupt)
	}
	if string(sealed[:len(envelopeMagic)]) != envelopeMagic {
		return envelopeHeader{}, 0, fmt.Errorf("not an entity envelope (bad magic): %w", errCorrupt)
	}
	h := envelopeHeader{Format: sealed[4]}
	if h.Format != formatMaster && h.Format != formatDataKey {
		return envelopeHeader{}, 0, fmt.Errorf("unknown envelope format %d: %w", h.Format, errCorrupt)
	}
	idLen := int(sealed[5])
	if idLen == 0 {
		return envelopeHeader{}, 0, fmt.Errorf("empty key ID: %w", errCorrupt)
	}
	n := fixed + idLen + nonceSize + writtenSize
	if len(sealed) < n+tagSize {
		return envelopeHeader{}, 0, fmt.Errorf("envelope truncated at %d bytes, want at least %d: %w", len(sealed), n+tagSize, errCorrupt)
	}
	h.KeyID = string(sealed[fixed : fixed+idLen])
	copy(h.Nonce[:], sealed[fixed+idLen:])
	h.Written = time.Unix(0, int64(binary.BigEndian.Uint64(sealed[n-writtenSize:n]))).UTC()
	return h, n, nil
}

// additionalData returns header || db || 0x00 || key, the GCM additional
// data binding an envelope to its header and its place.
func additionalData(header []byte, db, key string) []byte {
	ad := make([]byte, 0, len(header)+len(db)+1+len(key))
	ad = append(ad, header...)
	ad = append(ad, db...)
	ad = append(ad, 0)
	return append(ad, key...)
}

// parseMasterKey decodes a master key given as 64 hexadecimal characters;
// surrounding white space (a trailing newline in a key file) is ignored.
// Its errors never repeat the input.
func parseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*masterKeySize {
		return nil, fmt.Errorf("parse master key: got %d characters, want %d hexadecimal characters", len(s), 2*masterKeySize)
	}
	key := make([]byte, masterKeySize)
	if _, err := hex.Decode(key, []byte(s)); err != nil {
		zero(key)
		return nil, errors.New("parse master key: not hexadecimal (want 64 characters 0-9, a-f)")
	}
	return key, nil
}

// wrapKey encrypts key for the holder of pub with RSA-OAEP SHA-256 and no
// label, using rnd for the padding (crypto/rand.Reader in production).
func wrapKey(pub *rsa.PublicKey, key []byte, rnd io.Reader) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("wrap key: no public key")
	}
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rnd, pub, key, nil)
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	return wrapped, nil
}

// unwrapKey decrypts a key wrapped by wrapKey.
func unwrapKey(priv *rsa.PrivateKey, wrapped []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("unwrap key: no private key")
	}
	key, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("unwrap key: %w", err)
	}
	return key, nil
}

// zero overwrites b with zeros, to drop key material once it is no longer
// needed.
func zero(b []byte) {
	clear(b)
}
