package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "deltadatabase/proto"
)

// Cluster security (ARCHITECTURE.md "Trust boundaries", README "Security
// model"): the main worker
// and its processing workers share a join token that never crosses the
// wire. Every link between them is TLS 1.3; each side proves the token with
// an HMAC over the connection's TLS exporter (RFC 9266), so a proof is
// worthless on any other connection, and over its own certificate
// fingerprint, which the other side then pins for later connections.

// joinTokenEnv is the environment variable that may carry the join token;
// it is cleared once read, so that child processes do not inherit it.
const joinTokenEnv = "DELTADB_JOIN_TOKEN"

// minJoinTokenLen is the shortest join token accepted: 32 bytes of entropy
// as 64 hex digits (openssl rand -hex 32); any other text must be at least
// 43 characters, the length of 32 random bytes in base64.
const (
	minJoinTokenHex   = 64
	minJoinTokenOther = 43
)

// joinTokenHint says how to make a join token, for the start-up errors.
const joinTokenHint = "make one with `openssl rand -hex 32` and give the same one to the main worker and every processing worker " +
	"(-join-token-file, env " + joinTokenEnv + " or -join-token)"

// checkJoinToken refuses a join token with less than 32 bytes of entropy.
func checkJoinToken(tok string) error {
	isHex := tok != "" && strings.Trim(strings.ToLower(tok), "0123456789abcdef") == ""
	switch {
	case isHex && len(tok) < minJoinTokenHex:
		return fmt.Errorf("join token: %d hex digits is less than 32 bytes; %s", len(tok), joinTokenHint)
	case !isHex && len(tok) < minJoinTokenOther:
		return fmt.Errorf("join token: %d characters is too short (want 64 hex digits or 43 base64 characters); %s", len(tok), joinTokenHint)
	}
	return nil
}

// exporterLabel is the TLS exporter label of RFC 9266 (tls-exporter
// channel binding); exporterLen its length in bytes.
const (
	exporterLabel = "EXPORTER-Channel-Binding"
	exporterLen   = 32
)

// channelBinding is the TLS exporter of a connection: the same on both ends
// of one TLS 1.3 connection, different on every other.
func channelBinding(st tls.ConnectionState) ([]byte, error) {
	if st.Version < tls.VersionTLS13 {
		return nil, errors.New("channel binding: connection is not TLS 1.3")
	}
	b, err := st.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
	if err != nil {
		return nil, fmt.Errorf("channel binding: %w", err)
	}
	return b, nil
}

// proofMAC is HMAC-SHA256 under the join token of a purpose string and
// fields, each length-prefixed so that no two field lists collide.
func proofMAC(token []byte, purpose string, fields ...[]byte) []byte {
	m := hmac.New(sha256.New, token)
	for _, f := range append([][]byte{[]byte(purpose)}, fields...) {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		m.Write(f)
	}
	return m.Sum(nil)
}

// workerProof is a worker's proof of the join token on the connection
// whose exporter is given: it covers every field of req but the proof.
func workerProof(token, exporter []byte, req *pb.SubscribeRequest) ([]byte, error) {
	b, err := encodeWithout(req, func(r *pb.SubscribeRequest) { r.Proof = nil })
	if err != nil {
		return nil, err
	}
	return proofMAC(token, "deltadb worker v1", exporter, b), nil
}

// mainProof is the main worker's proof of the join token in its answer:
// it covers the exporter, the main worker's certificate fingerprint (the
// one the worker saw) and every field of resp but the proof.
func mainProof(token, exporter []byte, mainCert [32]byte, resp *pb.SubscribeResponse) ([]byte, error) {
	b, err := encodeWithout(resp, func(r *pb.SubscribeResponse) { r.Proof = nil })
	if err != nil {
		return nil, err
	}
	return proofMAC(token, "deltadb main v1", exporter, mainCert[:], b), nil
}

// encodeWithout is the deterministic encoding of a copy of m with clear
// applied (which unsets the proof).
func encodeWithout[M proto.Message](m M, clear func(M)) ([]byte, error) {
	c := proto.Clone(m).(M)
	clear(c)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode for proof: %w", err)
	}
	return b, nil
}

// certFingerprint is SHA-256 of a certificate's DER.
func certFingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

// clusterIdentity is one process's TLS identity on the cluster links: its
// certificate (generated at start, or the operator's) and, with
// -cluster-tls-ca, the CA every peer's certificate must chain to as well
// as matching its pinned fingerprint. Read-only after construction.
type clusterIdentity struct {
	cert tls.Certificate
	fp   [32]byte
	// ca is nil without -cluster-tls-ca.
	ca *x509.CertPool
}

// newClusterIdentity loads the operator's certificate and key, or
// generates an ECDSA P-256 key and a self-signed certificate when certFile
// is empty. caFile, if set, names a PEM CA bundle.
func newClusterIdentity(certFile, keyFile, caFile string, rand io.Reader, now time.Time) (*clusterIdentity, error) {
	var id clusterIdentity
	var err error
	if certFile != "" {
		if id.cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("-cluster-tls-cert: %w", err)
		}
	} else if id.cert, err = selfSignedCert(rand, now); err != nil {
		return nil, err
	}
	id.fp = certFingerprint(id.cert.Certificate[0])
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-cluster-tls-ca: %w", err)
		}
		id.ca = x509.NewCertPool()
		if !id.ca.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cluster-tls-ca: %s holds no PEM certificate", caFile)
		}
	}
	return &id, nil
}

// selfSignedCert generates an ECDSA P-256 key and a self-signed
// certificate for it. Nobody checks its names or dates: peers pin its
// fingerprint, learnt through the token-authenticated Subscribe.
func selfSignedCert(rand io.Reader, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate cluster key: %w", err)
	}
	serial := make([]byte, 16)
	if _, err := io.ReadFull(rand, serial); err != nil {
		return tls.Certificate{}, fmt.Errorf("generate cluster certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial),
		Subject:      pkix.Name{CommonName: "deltadatabase cluster"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate cluster certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// verifyPeer returns a VerifyPeerCertificate function accepting a peer
// whose leaf certificate has a fingerprint pin accepts and, with a CA,
// chains to it. Names are not checked: the pin is the identity.
func (id *clusterIdentity) verifyPeer(pin func([32]byte) error) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer sent no certificate")
		}
		if err := pin(certFingerprint(raw[0])); err != nil {
			return err
		}
		if id.ca == nil {
			return nil
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if c, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(c)
			}
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: id.ca, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		return nil
	}
}

// anyPeer is the pin of a link whose peer is proven some other way (the
// join token proof of Subscribe).
func anyPeer([32]byte) error { return nil }

// pinned is the pin accepting only the fingerprint want.
func pinned(want [32]byte) func([32]byte) error {
	return func(got [32]byte) error {
		if got != want {
			return fmt.Errorf("peer certificate %s is not the pinned one", hex.EncodeToString(got[:8]))
		}
		return nil
	}
}

// tlsConfig is the TLS 1.3 configuration of a cluster link with pin as
// the check of the peer's certificate. A server config with requireClient
// demands the peer's certificate (mutual TLS); a client config always
// presents its own.
func (id *clusterIdentity) tlsConfig(pin func([32]byte) error, requireClient bool) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		// Names and dates are not what identifies a peer here; the pin
		// (and the CA, when given) is, checked by VerifyPeerCertificate.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: id.verifyPeer(pin),
	}
	if requireClient {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	return c
}

// seqWindow remembers which call sequence numbers a worker has served,
// refusing any seen before: a sliding window of the last seqWindowSize
// numbers below the highest seen; older ones are refused too. Calls run
// concurrently and may arrive slightly out of order, hence the window.
// Safe for concurrent use; the zero value is an empty window.
type seqWindow struct {
	mu   sync.Mutex
	top  uint64
	seen [seqWindowSize / 64]uint64
}

// seqWindowSize is how far below the highest number a call may arrive.
const seqWindowSize = 4096

// accept reports whether seq is new, and marks it seen.
func (w *seqWindow) accept(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case seq == 0:
		return false
	case seq > w.top:
		w.advance(seq)
	case w.top-seq >= seqWindowSize:
		return false
	}
	word, bit := (seq%seqWindowSize)/64, uint64(1)<<(seq%64)
	if w.seen[word]&bit != 0 {
		return false
	}
	w.seen[word] |= bit
	return true
}

// advance moves the top to seq, forgetting the numbers that fall out of
// the window. The caller holds mu.
func (w *seqWindow) advance(seq uint64) {
	if seq-w.top >= seqWindowSize {
		w.seen = [seqWindowSize / 64]uint64{}
	} else {
		for s := w.top + 1; s <= seq; s++ {
			w.seen[(s%seqWindowSize)/64] &^= uint64(1) << (s % 64)
		}
	}
	w.top = seq
}

// pinnedMain is the fingerprint of the main worker a processing worker
// accepts calls from: the one that proved the join token in the last
// Subscribe; nil before the first.
type pinnedMain struct{ fp atomic.Pointer[[32]byte] }

// check is the pin of the worker's server: only the pinned main worker.
func (p *pinnedMain) check(got [32]byte) error {
	want := p.fp.Load()
	if want == nil {
		return errors.New("no main worker has proved the join token yet")
	}
	return pinned(*want)(got)
}

// callSkew is how far a signed call's timestamp may be from the worker's
// clock.
const callSkew = 5 * time.Minute

// signCall returns the main worker's signature of req for worker id:
// HMAC-SHA256 under the call key handed to that worker on Subscribe, over
// the worker ID and the deterministic encoding of req with its signature
// unset. Every field is signed, including any added later.
func signCall(callKey []byte, workerID string, req *pb.WorkerRequest) ([]byte, error) {
	return newCallMAC(callKey, workerID).sum(req, nil)
}

// verifyCall checks a call's signature (in constant time) and freshness.
func verifyCall(callKey []byte, workerID string, req *pb.WorkerRequest, now time.Time) bool {
	return newCallMAC(callKey, workerID).verify(req, now)
}

// callMAC computes signCall's signatures under one call key for one
// worker, keeping its HMAC state (the key's pads hashed once) and its
// encoding buffer from call to call: a call stream signs or checks every
// message, and a fresh HMAC and encoding each time were most of the cost.
// Not safe for concurrent use.
type callMAC struct {
	mac    hash.Hash
	prefix []byte // the length-prefixed worker ID
	buf    []byte
}

// newCallMAC returns the signer of calls to workerID under callKey.
func newCallMAC(callKey []byte, workerID string) *callMAC {
	// The worker ID is length-prefixed, so no two (worker, request) pairs
	// sign the same bytes.
	prefix := binary.BigEndian.AppendUint32(nil, uint32(len(workerID)))
	return &callMAC{mac: hmac.New(sha256.New, callKey), prefix: append(prefix, workerID...)}
}

// sum appends req's signature to dst.
func (c *callMAC) sum(req *pb.WorkerRequest, dst []byte) ([]byte, error) {
	b, err := appendUnsigned(c.buf[:0], req, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		return nil, err
	}
	if cap(b) <= maxKeptCallBuf {
		c.buf = b
	}
	return c.macOf(b, dst), nil
}

// appendUnsigned appends to dst the encoding of req with its signature
// unset, the bytes a signature covers.
func appendUnsigned(dst []byte, req *pb.WorkerRequest, opts proto.MarshalOptions) ([]byte, error) {
	sig := req.Signature
	req.Signature = nil
	b, err := opts.MarshalAppend(dst, req)
	req.Signature = sig
	if err != nil {
		return nil, fmt.Errorf("sign call: %w", err)
	}
	return b, nil
}

// macOf appends to dst the HMAC of the worker ID and encoding b.
func (c *callMAC) macOf(b, dst []byte) []byte {
	c.mac.Reset()
	c.mac.Write(c.prefix)
	c.mac.Write(b)
	return c.mac.Sum(dst)
}

// maxKeptCallBuf is the largest encoding buffer a callMAC keeps for the
// next call: a large write's buffer is left to the collector.
const maxKeptCallBuf = 64 << 10

// verify checks req's signature (in constant time) and freshness.
func (c *callMAC) verify(req *pb.WorkerRequest, now time.Time) bool {
	if !fresh(req, now) {
		return false
	}
	var arr [sha256.Size]byte
	want, err := c.sum(req, arr[:0])
	return err == nil && hmac.Equal(want, req.GetSignature())
}

// check checks req's signature: over wire, the sealed call it was
// decoded from, or without wire (nil) over its deterministic encoding.
func (c *callMAC) check(req *pb.WorkerRequest, wire []byte, now time.Time) bool {
	if wire != nil {
		return c.verifySealed(wire, req, now)
	}
	return c.verify(req, now)
}

// fresh reports whether req was issued within callSkew of now.
func fresh(req *pb.WorkerRequest, now time.Time) bool {
	d := now.Sub(time.Unix(0, req.GetIssuedAtUnixNano()))
	return d <= callSkew && d >= -callSkew
}

// A sealed call is how the main worker sends a request on the Calls
// stream: the signature field first, then the deterministic encoding of
// the request without it, the very bytes signCall signs. It is a valid
// encoding of the signed request (protobuf reads fields in any order),
// so neither side encodes a message twice: the sender signs the bytes it
// sends, and the worker checks the bytes it received, then decodes them
// once.

// sealedPrefix begins every sealed call: the tag of WorkerRequest's
// field 6 (signature, length-delimited) and the signature's length.
var sealedPrefix = [2]byte{6<<3 | 2, sha256.Size}

// sealedHead is the length of a sealed call's signature field.
const sealedHead = len(sealedPrefix) + sha256.Size

// seal returns req sealed: its signature field, then the encoding the
// signature covers. req's own Signature is neither read nor set.
func (c *callMAC) seal(req *pb.WorkerRequest) ([]byte, error) {
	// Size caches the sizes MarshalAppend then uses: one pass each, into
	// a buffer of the exact length.
	sig := req.Signature
	req.Signature = nil
	n := proto.Size(req)
	req.Signature = sig
	b, err := appendUnsigned(make([]byte, sealedHead, sealedHead+n), req, proto.MarshalOptions{Deterministic: true, UseCachedSize: true})
	if err != nil {
		return nil, err
	}
	copy(b, sealedPrefix[:])
	c.macOf(b[sealedHead:], b[len(sealedPrefix):len(sealedPrefix)])
	return b, nil
}

// isSealed reports whether wire has the form of a sealed call.
func isSealed(wire []byte) bool {
	return len(wire) >= sealedHead && wire[0] == sealedPrefix[0] && wire[1] == sealedPrefix[1]
}

// verifySealed checks the signature of a sealed call (isSealed) over the
// bytes received, in constant time, and the freshness of req, their
// decoding.
func (c *callMAC) verifySealed(wire []byte, req *pb.WorkerRequest, now time.Time) bool {
	if !fresh(req, now) || !isSealed(wire) {
		return false
	}
	var arr [sha256.Size]byte
	return hmac.Equal(c.macOf(wire[sealedHead:], arr[:0]), wire[len(sealedPrefix):sealedHead])
}
