package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Known-answer inputs. katSealed was computed independently of this
// package with Python's cryptography AESGCM from the layout documented in
// crypto.go, and TestSealKnownAnswer re-derives it with raw crypto/aes.
var (
	katKey       = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	katKeyID     = "k1"
	katNonce     = mustHex("a0a1a2a3a4a5a6a7a8a9aaab")
	katWritten   = time.Unix(1_700_000_000, 123_456_789).UTC()
	katDB        = "chatdb"
	katEntity    = "user/42"
	katPlaintext = []byte(`{"hello":"world"}`)
	katSealed    = "" +
		"44444245" + "01" + "02" + "6b31" + // magic "DDBE", format 1, key ID length 2, "k1"
		"a0a1a2a3a4a5a6a7a8a9aaab" + // nonce
		"17979cfe3d85cd15" + // written-at, Unix nanoseconds
		"9d3a144829a76d9d5847f0bc7516a4fc0d" + // ciphertext (17 bytes)
		"29fcc68df31e2ec891952dd77aff197d" // tag
	// katCheck is HMAC-SHA256(katKey, "deltadatabase key check v1|k1"),
	// also computed with Python.
	katCheck = "e3a131e4f4ac65fd08dc9ee65ca0014e8917c032afd39de92000cb120768a138"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// katSealer returns a sealer whose every seal uses the pinned nonce and clock.
func katSealer(t testing.TB) *sealer {
	t.Helper()
	s, err := newSealer(katKey, katKeyID, repeatReader(katNonce), func() time.Time { return katWritten })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// repeatReader yields b over and over.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r[i%len(r)]
	}
	return len(p), nil
}

// randSealer returns a sealer under a random key with crypto/rand nonces.
func randSealer(t testing.TB, keyID string) *sealer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	s, err := newSealer(key, keyID, rand.Reader, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealKnownAnswer(t *testing.T) {
	got, err := katSealer(t).seal(katDB, katEntity, katPlaintext)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != katSealed {
		t.Errorf("seal(%q, %q) =\n%x\nwant\n%s", katDB, katEntity, got, katSealed)
	}
}

// TestKnownAnswerRawGCM decrypts the pinned blob with crypto/aes and
// crypto/cipher directly, using only the documented layout, so the
// known answer does not depend on parseHeader or additionalData.
func TestKnownAnswerRawGCM(t *testing.T) {
	blob := mustHex(katSealed)
	const hdrLen = 4 + 1 + 1 + 2 + 12 + 8
	if string(blob[:4]) != "DDBE" || blob[4] != 1 || blob[5] != 2 || string(blob[6:8]) != "k1" {
		t.Fatalf("header prefix = %x, want DDBE 01 02 k1", blob[:8])
	}
	if !bytes.Equal(blob[8:20], katNonce) {
		t.Errorf("nonce = %x, want %x", blob[8:20], katNonce)
	}
	if ns := int64(binary.BigEndian.Uint64(blob[20:28])); ns != katWritten.UnixNano() {
		t.Errorf("written-at = %d, want %d", ns, katWritten.UnixNano())
	}
	block, err := aes.NewCipher(katKey)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ad := append(append([]byte(nil), blob[:hdrLen]...), "chatdb\x00user/42"...)
	pt, err := gcm.Open(nil, blob[8:20], blob[hdrLen:], ad)
	if err != nil {
		t.Fatalf("raw GCM open of pinned blob: %v", err)
	}
	if !bytes.Equal(pt, katPlaintext) {
		t.Errorf("raw GCM plaintext = %q, want %q", pt, katPlaintext)
	}
}

func TestOpenKnownAnswer(t *testing.T) {
	pt, h, err := katSealer(t).open(katDB, katEntity, mustHex(katSealed))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pt, katPlaintext) {
		t.Errorf("open plaintext = %q, want %q", pt, katPlaintext)
	}
	want := envelopeHeader{Format: 1, KeyID: katKeyID, Nonce: [12]byte(katNonce), Written: katWritten}
	if h != want {
		t.Errorf("open header = %+v, want %+v", h, want)
	}
	if got, want := h.etag(), "a0a1a2a3a4a5a6a7a8a9aaab"; got != want {
		t.Errorf("etag() = %q, want %q", got, want)
	}
}

func TestSealerHeader(t *testing.T) {
	s := katSealer(t)
	h, err := s.header(mustHex(katSealed))
	want := envelopeHeader{Format: 1, KeyID: katKeyID, Nonce: [12]byte(katNonce), Written: katWritten}
	if err != nil || h != want {
		t.Errorf("header(kat) = %+v, %v, want %+v, nil", h, err, want)
	}
	if _, err := s.header([]byte("DDBE")); !errors.Is(err, errCorrupt) {
		t.Errorf("header(truncated) error = %v, want wrapping errCorrupt", err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := randSealer(t, "main")
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("ab"), 40000)} {
		blob, err := s.seal("db", "k", pt)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := s.open("db", "k", blob)
		if err != nil {
			t.Fatalf("open(seal(%d bytes)) error: %v", len(pt), err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("open(seal(%d bytes)) = %d bytes, want the original", len(pt), len(got))
		}
	}
}

// assertCorrupt fails unless open rejected the blob cleanly.
func assertCorrupt(t *testing.T, what string, pt []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: open succeeded, want error", what)
	}
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("%s: open error %q does not wrap errCorrupt", what, err)
	}
	if pt != nil {
		t.Fatalf("%s: open returned %d plaintext bytes with the error", what, len(pt))
	}
	if strings.Contains(err.Error(), string(katPlaintext)) {
		t.Fatalf("%s: error %q contains the plaintext", what, err)
	}
}

func TestOpenFlippedBytes(t *testing.T) {
	s := katSealer(t)
	blob := mustHex(katSealed)
	for i := range blob {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(blob)
			b[i] ^= mask
			pt, _, err := s.open(katDB, katEntity, b)
			assertCorrupt(t, fmt.Sprintf("byte %d ^ %#02x", i, mask), pt, err)
		}
	}
}

func TestOpenTruncatedAndExtended(t *testing.T) {
	s := katSealer(t)
	blob := mustHex(katSealed)
	for n := range len(blob) {
		pt, _, err := s.open(katDB, katEntity, blob[:n:n])
		assertCorrupt(t, fmt.Sprintf("truncated to %d bytes", n), pt, err)
	}
	pt, _, err := s.open(katDB, katEntity, append(bytes.Clone(blob), 0))
	assertCorrupt(t, "one byte appended", pt, err)
}

// TestOpenMoved seals fresh blobs and opens each where it was sealed (it
// must open, or the test proves nothing) and under other names: another
// database, another key, and the same bytes with the boundary between the
// names moved. Only the additional data differs between the two opens.
// The envelope of a data key (format 2) is moved within its database,
// whose data key then opens it but for the names.
func TestOpenMoved(t *testing.T) {
	moves := func(db, key string) [][2]string {
		return [][2]string{{"otherdb", key}, {db, "user/43"}, {"otherdb", "user/43"}, {db, ""}, {"", key},
			{db + key[:1], key[1:]}, {db[:len(db)-1], db[len(db)-1:] + key}}
	}
	s := randSealer(t, "k1")
	blob, err := s.seal(katDB, katEntity, katPlaintext)
	if err != nil {
		t.Fatal(err)
	}
	if pt, _, err := s.open(katDB, katEntity, blob); err != nil || !bytes.Equal(pt, katPlaintext) {
		t.Fatalf("open(%q, %q) where sealed = %q, %v; want the plaintext", katDB, katEntity, pt, err)
	}
	for _, m := range moves(katDB, katEntity) {
		pt, _, err := s.open(m[0], m[1], blob)
		assertCorrupt(t, fmt.Sprintf("open(%q, %q) of a blob sealed for (%q, %q)", m[0], m[1], katDB, katEntity), pt, err)
	}

	ring, err := newKeyring(newMemStore(), bytes.Repeat([]byte{7}, 32), "k1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := ring.prepare(ctx, katDB); err != nil {
		t.Fatal(err)
	}
	blob, _, err = ring.seal(ctx, katDB, katEntity, katPlaintext)
	if err != nil {
		t.Fatal(err)
	}
	if pt, _, err := ring.open(ctx, katDB, katEntity, blob); err != nil || !bytes.Equal(pt, katPlaintext) {
		t.Fatalf("keyring open where sealed = %q, %v; want the plaintext", pt, err)
	}
	for _, key := range []string{"user/43", "user/42x", "user/4"} {
		pt, _, err := ring.open(ctx, katDB, key, blob)
		assertCorrupt(t, fmt.Sprintf("keyring open(%q, %q) of a blob sealed for %q", katDB, key, katEntity), pt, err)
	}
}

func TestOpenWrongKey(t *testing.T) {
	blob := mustHex(katSealed)
	otherKey := bytes.Clone(katKey)
	otherKey[0] ^= 1
	fixed := func() time.Time { return katWritten }

	sameIDOtherKey, err := newSealer(otherKey, katKeyID, rand.Reader, fixed)
	if err != nil {
		t.Fatal(err)
	}
	pt, _, err := sameIDOtherKey.open(katDB, katEntity, blob)
	assertCorrupt(t, "same key ID, other key", pt, err)

	otherID, err := newSealer(katKey, "k2", rand.Reader, fixed)
	if err != nil {
		t.Fatal(err)
	}
	pt, _, err = otherID.open(katDB, katEntity, blob)
	assertCorrupt(t, "other key ID", pt, err)
	msg := err.Error()
	for _, want := range []string{`"k1"`, `"k2"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("wrong key ID error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, hex.EncodeToString(katKey)) || strings.Contains(msg, string(katKey)) {
		t.Errorf("wrong key ID error %q contains key bytes", msg)
	}
}

func TestOpenErrorMessages(t *testing.T) {
	s := katSealer(t)
	blob := mustHex(katSealed)
	with := func(i int, v byte) []byte { b := bytes.Clone(blob); b[i] = v; return b }
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "open entity: header truncated at 0 bytes: corrupt data"},
		{"bad magic", with(0, 'X'), "open entity: not an entity envelope (bad magic): corrupt data"},
		{"future format", with(4, 3), "open entity: unknown envelope format 3: corrupt data"},
		{"other format", with(4, 2), "open entity: envelope format 2, want 1: corrupt data"},
		{"empty key ID", with(5, 0), "open entity: empty key ID: corrupt data"},
		{"key ID too long", with(5, 255), "open entity: envelope truncated at 61 bytes, want at least 297: corrupt data"},
		{"no tag", blob[:28+15], "open entity: envelope truncated at 43 bytes, want at least 44: corrupt data"},
		{"bad tag", with(len(blob)-1, 0), "open entity: decrypt: message authentication failed: corrupt data"},
	}
	for _, tt := range tests {
		_, _, err := s.open(katDB, katEntity, tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("open(%s) error = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNonceUniqueness(t *testing.T) {
	s := randSealer(t, "main")
	const n = 10000
	seen := make(map[string]bool, n)
	for range n {
		blob, err := s.seal("db", "k", []byte("same"))
		if err != nil {
			t.Fatal(err)
		}
		_, h, err := s.open("db", "k", blob)
		if err != nil {
			t.Fatal(err)
		}
		if seen[h.etag()] {
			t.Fatalf("nonce %s repeated within %d seals", h.etag(), n)
		}
		seen[h.etag()] = true
	}
}

func TestSealNonceReadError(t *testing.T) {
	s, err := newSealer(katKey, katKeyID, bytes.NewReader(katNonce[:5]), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.seal("db", "k", []byte("x"))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "seal: read nonce: ") {
		t.Errorf("seal with short nonce source error = %v, want seal: read nonce: unexpected EOF", err)
	}
}

func TestSealerConcurrent(t *testing.T) {
	s := randSealer(t, "main")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			key := "k" + strconv.Itoa(w)
			for i := range 200 {
				pt := []byte(strconv.Itoa(i))
				blob, err := s.seal("db", key, pt)
				if err != nil {
					t.Error(err)
					return
				}
				got, _, err := s.open("db", key, blob)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("open(seal(%q)) = %q, %v", pt, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNewSealerErrors(t *testing.T) {
	now := func() time.Time { return katWritten }
	tests := []struct {
		name   string
		key    []byte
		keyID  string
		nonces io.Reader
		now    func() time.Time
		want   string
	}{
		{"short key", katKey[:31], "k", rand.Reader, now, "master key is 31 bytes, want 32"},
		{"long key", append(bytes.Clone(katKey), 0), "k", rand.Reader, now, "master key is 33 bytes, want 32"},
		{"empty key ID", katKey, "", rand.Reader, now, "key ID is 0 bytes, want 1 to 255"},
		{"long key ID", katKey, strings.Repeat("k", 256), rand.Reader, now, "key ID is 256 bytes, want 1 to 255"},
		{"no nonces", katKey, "k", nil, now, "nonce source and clock are required"},
		{"no clock", katKey, "k", rand.Reader, nil, "nonce source and clock are required"},
	}
	for _, tt := range tests {
		_, err := newSealer(tt.key, tt.keyID, tt.nonces, tt.now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newSealer(%s) error = %v, want containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := newSealer(katKey, strings.Repeat("k", 255), rand.Reader, now); err != nil {
		t.Errorf("newSealer(255-byte key ID) error = %v, want nil", err)
	}
}

func TestKeyCheckValue(t *testing.T) {
	got := keyCheckValue(katKey, katKeyID)
	if hex.EncodeToString(got) != katCheck {
		t.Errorf("keyCheckValue(katKey, %q) = %x, want %s", katKeyID, got, katCheck)
	}
	other := bytes.Clone(katKey)
	other[31] ^= 1
	if bytes.Equal(keyCheckValue(other, katKeyID), got) {
		t.Errorf("keyCheckValue does not depend on the key")
	}
	if bytes.Equal(keyCheckValue(katKey, "k2"), got) {
		t.Errorf("keyCheckValue does not depend on the key ID")
	}
}

func TestParseMasterKey(t *testing.T) {
	const valid = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	good := []string{valid, valid + "\n", "  " + strings.ToUpper(valid) + "\r\n"}
	for _, in := range good {
		got, err := parseMasterKey(in)
		if err != nil || !bytes.Equal(got, katKey) {
			t.Errorf("parseMasterKey(%q) = %x, %v, want %x, nil", in, got, err, katKey)
		}
	}
	secret := "5ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec"
	bad := []struct {
		in, want string
	}{
		{"", "got 0 characters, want 64"},
		{secret[:63], "got 63 characters, want 64"},
		{secret + "00", "got 65 characters, want 64"},
		{secret[:62] + "zz", "not hexadecimal"},
		{"g" + secret[1:63] + "g", "not hexadecimal"},
	}
	for _, tt := range bad {
		_, err := parseMasterKey(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseMasterKey(%d chars) error = %v, want containing %q", len(tt.in), err, tt.want)
			continue
		}
		if len(tt.in) >= 8 && strings.Contains(err.Error(), tt.in[:8]) {
			t.Errorf("parseMasterKey error %q echoes the input", err)
		}
		if strings.Contains(err.Error(), "'z'") || strings.Contains(err.Error(), "'g'") {
			t.Errorf("parseMasterKey error %q echoes an input character", err)
		}
	}
}

// rsaKeys returns two 2048-bit test keys, generated once per test binary.
var rsaKeys = sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
	var ks [2]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return ks, err
		}
		ks[i] = k
	}
	return ks, nil
})

func TestWrapUnwrapKey(t *testing.T) {
	ks, err := rsaKeys()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := wrapKey(&ks[0].PublicKey, katKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != 256 || bytes.Contains(wrapped, katKey) {
		t.Errorf("wrapKey = %d bytes containing the key: %v, want 256 opaque bytes", len(wrapped), bytes.Contains(wrapped, katKey))
	}
	got, err := unwrapKey(ks[0], wrapped)
	if err != nil || !bytes.Equal(got, katKey) {
		t.Errorf("unwrapKey(wrapKey(k)) = %x, %v, want %x, nil", got, err, katKey)
	}
	again, err := wrapKey(&ks[0].PublicKey, katKey, rand.Reader)
	if err != nil || bytes.Equal(again, wrapped) {
		t.Errorf("wrapKey twice gave equal ciphertexts (err %v), want randomised padding", err)
	}

	if got, err := unwrapKey(ks[1], wrapped); err == nil {
		t.Errorf("unwrapKey(other private key) = %x, nil, want error", got)
	}
	tampered := bytes.Clone(wrapped)
	tampered[100] ^= 1
	if got, err := unwrapKey(ks[0], tampered); err == nil {
		t.Errorf("unwrapKey(tampered) = %x, nil, want error", got)
	}
	if _, err := wrapKey(nil, katKey, rand.Reader); err == nil {
		t.Errorf("wrapKey(nil public key) error = nil, want error")
	}
	if _, err := unwrapKey(nil, wrapped); err == nil {
		t.Errorf("unwrapKey(nil private key) error = nil, want error")
	}
}

// TestWrapKeyIsOAEPSHA256 checks the wire format of the key a worker
// receives (ARCHITECTURE.md "Processing workers and routing") rather than a
// round trip: wrapKey's output opens with crypto/rsa's OAEP over SHA-256
// (and not SHA-1), and unwrapKey opens what crypto/rsa wraps with SHA-256.
// A worker of another implementation depends on exactly this.
func TestWrapKeyIsOAEPSHA256(t *testing.T) {
	ks, err := rsaKeys()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := wrapKey(&ks[0].PublicKey, katKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rsa.DecryptOAEP(sha256.New(), nil, ks[0], wrapped, nil); err != nil || !bytes.Equal(got, katKey) {
		t.Errorf("rsa.DecryptOAEP(SHA-256, wrapKey(k)) = %x, %v, want %x", got, err, katKey)
	}
	if _, err := rsa.DecryptOAEP(sha1.New(), nil, ks[0], wrapped, nil); err == nil {
		t.Error("rsa.DecryptOAEP(SHA-1, wrapKey(k)) succeeded, want wrapKey to use SHA-256")
	}
	theirs, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &ks[0].PublicKey, katKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unwrapKey(ks[0], theirs); err != nil || !bytes.Equal(got, katKey) {
		t.Errorf("unwrapKey(rsa.EncryptOAEP(SHA-256, k)) = %x, %v, want %x", got, err, katKey)
	}
}

func TestZero(t *testing.T) {
	b := bytes.Clone(katKey)
	zero(b)
	if !bytes.Equal(b, make([]byte, len(katKey))) {
		t.Errorf("zero left %x", b)
	}
	zero(nil)
}

// FuzzOpen feeds arbitrary bytes to open: it must never panic, every
// failure must wrap errCorrupt with no plaintext, and a success can only
// be the pinned plaintext.
func FuzzOpen(f *testing.F) {
	blob := mustHex(katSealed)
	f.Add(blob)
	f.Add([]byte{})
	f.Add(blob[:len(blob)-1])
	f.Add(blob[:27])
	f.Add(blob[:6])
	f.Add([]byte("DDBE\x01\xff"))
	s := katSealer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		pt, _, err := s.open(katDB, katEntity, in)
		if err != nil {
			if !errors.Is(err, errCorrupt) || pt != nil {
				t.Fatalf("open error %v (wraps errCorrupt: %v) with %d plaintext bytes", err, errors.Is(err, errCorrupt), len(pt))
			}
			return
		}
		if !bytes.Equal(pt, katPlaintext) {
			t.Fatalf("open succeeded with %q, want only %q", pt, katPlaintext)
		}
	})
}

func benchSeal(b *testing.B, size int) {
	s := randSealer(b, "main")
	pt := make([]byte, size)
	b.SetBytes(int64(size))
	for b.Loop() {
		if _, err := s.seal("db", "entity", pt); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOpen(b *testing.B, size int) {
	s := randSealer(b, "main")
	blob, err := s.seal("db", "entity", make([]byte, size))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	for b.Loop() {
		if _, _, err := s.open("db", "entity", blob); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal1K(b *testing.B)  { benchSeal(b, 1<<10) }
func BenchmarkOpen1K(b *testing.B)  { benchOpen(b, 1<<10) }
func BenchmarkSeal64K(b *testing.B) { benchSeal(b, 64<<10) }
func BenchmarkOpen64K(b *testing.B) { benchOpen(b, 64<<10) }
