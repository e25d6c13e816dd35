package main

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// mainService is the main worker's gRPC service (ARCHITECTURE.md "Processing
// workers and routing"): workers subscribe and heartbeat; client applications
// call Process with the same credentials and permission rules as REST. It is
// safe for concurrent use.
type mainService struct {
	pb.UnimplementedMainWorkerServer
	router *router
	auth   *authenticator
	// data runs client applications' entity operations, as it does
	// REST's.
	data      *dataPlane
	master    []byte
	keyID     string
	workerTTL time.Duration
	every     time.Duration
	maxMsg    int
	rand      io.Reader
	now       func() time.Time
	log       *slog.Logger
	// audit writes a line per client Process call; nil for none.
	audit *auditLog
	// join is the join token; nil accepts no workers (-role=all without
	// one).
	join []byte
	// ident is the cluster TLS identity; set whenever join is.
	ident *clusterIdentity

	// ring is the main worker's keyring: its epoch is the data-key epoch
	// announced to workers (rekey.go). nil announces 0.
	ring *keyring

	// mu guards tokens: SHA-256 of each worker token -> worker ID. A
	// lookup by hash of a 256-bit random token leaks nothing useful
	// through timing. It also guards the fields below.
	mu     sync.Mutex
	tokens map[[32]byte]string
	// previous is the master key a rotation moves from, named previousID;
	// nil outside a rotation. Workers subscribing get it too.
	previous   []byte
	previousID string
	// keysGen counts finished rotations; subGen is the keysGen each
	// worker last subscribed at: a worker behind is told to subscribe
	// again, which drops the previous key.
	keysGen uint64
	subGen  map[string]uint64
	// applied is the data-key epoch each worker reported applied.
	applied map[string]uint64
}

// mainServiceOptions are the parts and settings of a mainService.
type mainServiceOptions struct {
	router *router
	auth   *authenticator
	data   *dataPlane
	// ring is the main worker's keyring (nil announces data-key epoch 0).
	ring *keyring
	// master is the master key handed to workers, named keyID;
	// previous, named previousID, the one a rotation moves from (nil
	// outside a rotation).
	master, previous  []byte
	keyID, previousID string
	// workerTTL is the lifetime of a worker token (-worker-ttl).
	workerTTL time.Duration
	// maxMsg is the largest gRPC message, both ways.
	maxMsg int
	// join is the join token, ident the cluster TLS identity; nil join
	// accepts no workers.
	join  []byte
	ident *clusterIdentity
	// every is the heartbeat interval; 0 is heartbeatEvery.
	every time.Duration
	// now and rand are the clock and the randomness; nil are the real
	// ones.
	now  func() time.Time
	rand io.Reader
	log  *slog.Logger
	// audit is the audit log (audit.go); nil for none.
	audit *auditLog
}

// newMainService returns the service of o.
func newMainService(o mainServiceOptions) *mainService {
	m := &mainService{router: o.router, auth: o.auth, data: o.data, ring: o.ring, master: o.master, keyID: o.keyID,
		previous: o.previous, previousID: o.previousID, workerTTL: o.workerTTL, maxMsg: o.maxMsg, join: o.join,
		ident: o.ident, every: cmp.Or(o.every, heartbeatEvery), now: o.now, rand: cmp.Or(o.rand, cryptoRand),
		log: o.log, audit: o.audit, tokens: map[[32]byte]string{}, subGen: map[string]uint64{}, applied: map[string]uint64{}}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// heartbeatEvery is how often workers heartbeat; a worker silent for
// heartbeatMisses intervals is taken out of rotation.
const (
	heartbeatEvery  = time.Second
	heartbeatMisses = 3
)

// Subscribe registers a worker once it has proved the join token on this
// TLS connection (cluster.go): it wraps the master key and a fresh call
// key for the worker's public key, issues a worker token and proves the
// token in turn, so that the worker can trust the answer. Without a join
// token, or on a connection without TLS, it registers nothing.
func (m *mainService) Subscribe(stream pb.MainWorker_SubscribeServer) error {
	ctx := stream.Context()
	exporter, err := m.channel(ctx)
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	want, err := workerProof(m.join, exporter, req)
	if err != nil || !hmac.Equal(want, req.GetProof()) {
		m.log.Warn("subscribe refused: no valid join token proof", attrWorker, req.GetWorkerId(), attrAddr, peerAddr(ctx))
		return status.Error(codes.PermissionDenied, "join token proof does not verify: this worker's join token is not the main worker's")
	}
	if tags := req.GetTags(); tags != nil {
		if addr, ok := reachableAddr(tags["grpc_addr"], peerAddr(ctx)); ok {
			m.log.Info("worker advertised an unspecified host; dialing the address its subscription came from",
				attrWorker, req.GetWorkerId(), "advertised", tags["grpc_addr"], attrAddr, addr)
			tags["grpc_addr"] = addr
		}
	}
	resp, err := m.subscribe(req)
	if err != nil {
		m.log.Warn("subscribe refused", attrWorker, req.GetWorkerId(), attrAddr, peerAddr(ctx), attrErr, err)
		return err
	}
	if resp.Proof, err = mainProof(m.join, exporter, m.ident.fp, resp); err != nil {
		return status.Errorf(codes.Internal, "prove join token: %v", err)
	}
	return stream.SendAndClose(resp)
}

// channel is the TLS exporter of the caller's connection, or the status
// refusing a Subscribe that cannot be proven: no join token here, or no
// TLS 1.3 (the client port -grpc-addr).
func (m *mainService) channel(ctx context.Context) ([]byte, error) {
	if m.join == nil {
		return nil, status.Error(codes.PermissionDenied, "this main worker accepts no processing workers: it was started without a join token")
	}
	p, _ := peer.FromContext(ctx)
	info, ok := p.AuthInfo.(grpccreds.TLSInfo)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "subscribe on the main worker's -cluster-addr (TLS), not on -grpc-addr")
	}
	exporter, err := channelBinding(info.State)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "%v", err)
	}
	return exporter, nil
}

// subscribe registers a worker that proved the join token, unless its ID
// belongs to a live worker with another key.
func (m *mainService) subscribe(req *pb.SubscribeRequest) (*pb.SubscribeResponse, error) {
	id, addr := req.GetWorkerId(), req.GetTags()["grpc_addr"]
	if err := validateDBName(id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "worker_id: %v", err)
	}
	if addr == "" {
		return nil, status.Error(codes.InvalidArgument, "tags: grpc_addr is required")
	}
	if err := checkWorkerAddr(addr); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "tags: grpc_addr %q: %v", addr, err)
	}
	if req.GetTags()[walGenTag] != "" && m.router.ho == nil {
		// Nobody would apply its log when it died: another worker would
		// serve its entities from files the log had not updated yet.
		return nil, status.Errorf(codes.FailedPrecondition, "worker %q keeps a write-ahead log and this main worker takes none over "+
			"(it runs with -wal=false or on S3): give the worker -wal=false, or the main worker -wal", id)
	}
	pub, err := parseWorkerKey(req.GetPubkey())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "pubkey: %v", err)
	}
	var certFP [32]byte
	if copy(certFP[:], req.GetCertSha256()) != len(certFP) || len(req.GetCertSha256()) != len(certFP) {
		return nil, status.Error(codes.InvalidArgument, "cert_sha256: want 32 bytes")
	}
	identity := sha256.Sum256(append(certFP[:], req.GetPubkey()...))
	if m.router.liveElsewhere(id, identity, heartbeatMisses*m.every) {
		return nil, status.Errorf(codes.AlreadyExists, "worker %q is live with another key; its ID is free once it misses its heartbeats", id)
	}
	wrapped, err := wrapKey(pub, m.master, m.rand)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "wrap master key: %v", err)
	}
	wrappedPrev, prevID, err := m.wrapPrevious(pub, id)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "wrap previous master key: %v", err)
	}
	callKey, token := make([]byte, 32), make([]byte, 32)
	if err := readRand(m.rand, callKey, token); err != nil {
		return nil, status.Errorf(codes.Internal, "generate worker secrets: %v", err)
	}
	wrappedCall, err := wrapKey(pub, callKey, m.rand)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "wrap call key: %v", err)
	}
	// The main worker dials the worker over mutual TLS, accepting only
	// the certificate the worker named in its proof.
	creds := grpccreds.NewTLS(m.ident.tlsConfig(pinned(certFP), false))
	// passthrough: the address goes to the dialer as it is, so no part of
	// it is read as a gRPC scheme (a host named "unix" would otherwise
	// name a local socket).
	conn, err := grpc.NewClient("passthrough:///"+addr, append(grpcDialOptions(m.maxMsg, creds), callLinkDialOptions()...)...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "grpc_addr %q: %v", addr, err)
	}
	tok := hex.EncodeToString(token)
	expires := m.now().Add(m.workerTTL)
	m.remember(tok, id)
	// A worker from before batched calls refuses a batch: it gets every
	// call alone (callLink.most).
	rw := newRemoteWorker(id, pb.NewProcessingWorkerClient(conn), callKey, m.now, req.GetBatchedCalls())
	rw.link.batchMax = batchBytes(m.maxMsg)
	frameTLS := m.ident.tlsConfig(pinned(certFP), false)
	rw.link.frames = func(ctx context.Context) (*frameConn, error) { return dialFrames(ctx, addr, frameTLS, m.maxMsg) }
	m.router.add(&workerConn{id: id, keyID: m.keyID, tags: req.GetTags(), expires: expires, identity: identity,
		proc: rw, close: func() { rw.close(); conn.Close() }})
	return &pb.SubscribeResponse{Token: tok, WrappedKey: wrapped, KeyId: m.keyID, ExpiresAtUnix: expires.Unix(),
		Epoch: m.router.epoch.Load(), HeartbeatIntervalMs: m.every.Milliseconds(), WrappedCallKey: wrappedCall,
		WrappedPreviousKey: wrappedPrev, PreviousKeyId: prevID, KeysEpoch: m.keysEpoch()}, nil
}

// wrapPrevious wraps the previous master key for pub while a rotation
// runs (nil, "" otherwise) and records that worker id subscribed at the
// current key generation.
func (m *mainService) wrapPrevious(pub *rsa.PublicKey, id string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subGen[id] = m.keysGen
	if m.previous == nil {
		return nil, "", nil
	}
	w, err := wrapKey(pub, m.previous, m.rand)
	return w, m.previousID, err
}

// keysEpoch is the data-key epoch announced to workers.
func (m *mainService) keysEpoch() uint64 {
	if m.ring == nil {
		return 0
	}
	return m.ring.keysEpoch()
}

// rotationDone drops the previous master key: workers that subscribed
// with it are told to subscribe again.
func (m *mainService) rotationDone() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.previous, m.previousID = nil, ""
	m.keysGen++
}

// waitKeysEpoch returns once every available remote worker has reported
// data-key epoch e applied (rekey.go), or ctx's error. A worker that
// leaves the rotation is not waited for: it gets no calls.
func (m *mainService) waitKeysEpoch(ctx context.Context, e uint64) error {
	t := time.NewTicker(m.every / 4)
	defer t.Stop()
	for len(m.behindKeysEpoch(e)) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// behindKeysEpoch returns the available remote workers that have not
// reported epoch e applied.
func (m *mainService) behindKeysEpoch(e uint64) []string {
	rows := m.router.list()
	m.mu.Lock()
	defer m.mu.Unlock()
	var behind []string
	for _, r := range rows {
		if _, remote := m.subGen[r.WorkerID]; remote && r.Status == statusAvailable && m.applied[r.WorkerID] < e {
			behind = append(behind, r.WorkerID)
		}
	}
	return behind
}

// heardFrom records what a heartbeat of worker id says about its keys and
// reports whether the worker must subscribe again to drop a previous
// master key.
func (m *mainService) heardFrom(id string, applied uint64) (resubscribe bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied[id] = applied
	return m.subGen[id] < m.keysGen
}

// reachableAddr is the address to dial a worker that advertised
// advertised from peer (the address its Subscribe came from): when the
// advertised host is unspecified (0.0.0.0, ::, empty: the worker listens on
// every interface and gave no -advertise-addr), the peer's host with the
// advertised port, and true; otherwise false, and advertised is dialled
// as given.
func reachableAddr(advertised, peer string) (string, bool) {
	host, port, err := net.SplitHostPort(advertised)
	if err != nil {
		return "", false
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return "", false
	}
	peerHost, _, err := net.SplitHostPort(peer)
	if err != nil || peerHost == "" {
		return "", false
	}
	return net.JoinHostPort(peerHost, port), true
}

// checkWorkerAddr accepts the address a worker advertises only as TCP
// host:port: a host name or an IP address and a port from 1 to 65535. The
// main worker dials it; a worker that knows the join token must not make
// it open a Unix socket or another of gRPC's schemes (ARCHITECTURE.md
// "Trust boundaries").
func checkWorkerAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	// port[0] == '0': no port 0 and no leading zeros.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || port[0] == '0' {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if host == "" || len(host) > 253 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" ||
		host[0] == '-' || host[0] == '.' {
		return fmt.Errorf("host %q: want a host name or an IP address", host)
	}
	return nil
}

// parseWorkerKey parses a PKIX DER RSA public key of at least 2048 bits.
func parseWorkerKey(der []byte) (*rsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < 2048 {
		return nil, fmt.Errorf("want an RSA public key of at least 2048 bits")
	}
	return pub, nil
}

// readRand fills every buffer from r.
func readRand(r io.Reader, bufs ...[]byte) error {
	for _, b := range bufs {
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
	}
	return nil
}

// remember records a worker token, dropping the worker's older ones.
func (m *mainService) remember(token, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(id)
	m.tokens[sha256.Sum256([]byte(token))] = id
}

// forget drops the worker tokens of worker id.
func (m *mainService) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(id)
}

// forgetLocked is forget with mu held.
func (m *mainService) forgetLocked(id string) {
	for h, w := range m.tokens {
		if w == id {
			delete(m.tokens, h)
		}
	}
}

// Heartbeat records a worker's liveness and load. An unknown token or
// worker (the main worker restarted, or the token expired) is told to
// subscribe again.
func (m *mainService) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	m.mu.Lock()
	id, ok := m.tokens[sha256.Sum256([]byte(req.GetToken()))]
	m.mu.Unlock()
	if !ok || id != req.GetWorkerId() {
		return &pb.HeartbeatResponse{Epoch: m.router.epoch.Load(), Resubscribe: true}, nil
	}
	if m.heardFrom(id, req.GetKeysEpoch()) {
		m.log.Info("worker told to subscribe again for the new master key", attrWorker, id)
		return &pb.HeartbeatResponse{Epoch: m.router.epoch.Load(), Resubscribe: true, KeysEpoch: m.keysEpoch()}, nil
	}
	c := req.GetCache()
	stats := cacheStats{Hits: c.GetHits(), Misses: c.GetMisses(), Evictions: c.GetEvictions(),
		Entries: int(c.GetEntries()), Capacity: int(c.GetCapacity()), Bytes: c.GetBytes(), MaxBytes: c.GetMaxBytes()}
	if !m.router.seen(id, stats) {
		return &pb.HeartbeatResponse{Epoch: m.router.epoch.Load(), Resubscribe: true}, nil
	}
	return &pb.HeartbeatResponse{Epoch: m.router.epoch.Load(), KeysEpoch: m.keysEpoch()}, nil
}

// Process serves a client application: the credential (the request's
// token, or "authorization: Bearer ..." metadata) must hold the permission
// the operation needs, as on REST, and the data plane runs it as it runs
// REST's requests. Failures are statuses whose message is one sentence
// about the request (see clientStatus); internal causes are logged here
// with the request ID.
func (m *mainService) Process(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	rid := grpcRequestID(ctx)
	ctx = withRequestID(ctx, rid)
	// The client learns the ID its call is logged under, as a REST client
	// does from X-Request-ID. Only an in-process call has no header to set.
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDMetadata, rid))
	if m.audit.refusesAll() {
		return nil, clientStatus(errAuditUnavailable, rid)
	}
	resp, p, err := m.process(ctx, req)
	if aerr := m.auditProcess(ctx, req, p, resp, err); aerr != nil {
		resp, err = nil, aerr
	}
	if err != nil {
		m.logFailure(ctx, req, err)
		if code, gone := clientGoneCode(ctx, err); gone {
			// Nobody reads it; the code is for the metrics.
			return nil, status.Error(code, fmt.Sprintf(clientClosed, rid))
		}
		return nil, clientStatus(err, rid)
	}
	return &pb.ProcessResponse{Status: "OK", Result: resp.GetResult(), Version: resp.GetVersion()}, nil
}

// logFailure logs a failed client call as REST's writeError does: an
// internal failure (5xx on REST) with its cause at error, a refusal that
// only means "try again shortly" (retrySoon) at warn, a call whose client
// went away (its context ended) at info, anything else at info with its
// code only, so that a refused credential never reaches the log.
func (m *mainService) logFailure(ctx context.Context, req *pb.ProcessRequest, err error) {
	code := grpcCode(err)
	server := code == codes.Internal || code == codes.DataLoss || code == codes.Unavailable || code == codes.DeadlineExceeded
	_, gone := clientGoneCode(ctx, err)
	switch {
	case gone:
		m.log.InfoContext(ctx, "client went away", attrDB, req.GetDatabaseName(), "code", code.String(), attrErr, err)
	case retrySoon(err):
		m.log.WarnContext(ctx, "grpc process refused", attrDB, req.GetDatabaseName(), "code", code.String(), attrErr, err)
	case server:
		m.log.ErrorContext(ctx, "grpc process failed", attrDB, req.GetDatabaseName(), "code", code.String(), attrErr, err)
	default:
		m.log.InfoContext(ctx, "grpc process refused", attrDB, req.GetDatabaseName(), "code", code.String())
	}
}

// process authenticates a client's request, authorizes it for its
// operation and database, and hands it to the data plane, as REST does.
// It returns the principal once authenticated, for the audit line.
func (m *mainService) process(ctx context.Context, req *pb.ProcessRequest) (*pb.WorkerResponse, principal, error) {
	cred, err := clientCredential(ctx, req)
	if err != nil {
		return nil, principal{}, err
	}
	p, err := m.auth.authenticateFrom(cred, peerAddr(ctx))
	if err != nil {
		return nil, principal{}, err
	}
	op, err := clientOp(req)
	if err != nil {
		return nil, p, err
	}
	if err := authorize(p, permissionFor(op.Operation), op.DatabaseName); err != nil {
		return nil, p, err
	}
	// The audit line of a write names the version it replaced.
	op.WantPrevious = m.audit != nil
	resp, err := m.data.process(ctx, p, req.GetSchemaId(), op)
	return resp, p, err
}

// clientCredential is the request's token, or else the authorization
// metadata ("Bearer <credential>" or the bare credential). Two metadata
// values, or a token and metadata that differ, are InvalidArgument: which
// one counted would be an accident, and a proxy's credential and a
// client's could differ (REST refuses two Authorization headers alike).
func clientCredential(ctx context.Context, req *pb.ProcessRequest) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) > 1 {
		return "", reqErrorf(errInvalid, "the call has %d authorization metadata values; send one credential", len(v))
	}
	token := req.GetToken()
	if len(v) == 0 {
		return token, nil
	}
	cred, ok := bearerCredential(v[0])
	if !ok {
		cred = strings.TrimSpace(v[0])
	}
	if token != "" && token != cred {
		return "", reqErrorf(errInvalid, "the call has a token and other authorization metadata; send one credential")
	}
	return cred, nil
}

// clientOps maps the operation strings of ProcessRequest to operations.
var clientOps = map[string]pb.Operation{
	"GET": pb.Operation_GET, "PUT": pb.Operation_PUT, "DELETE": pb.Operation_DELETE, "PATCH": pb.Operation_PATCH,
}

// clientOp builds the EntityOp a client's request asks for; the data
// plane checks its names and payload.
func clientOp(req *pb.ProcessRequest) (*pb.EntityOp, error) {
	kind, ok := clientOps[req.GetOperation()]
	if !ok {
		return nil, reqErrorf(errInvalid, "operation %q is not GET, PUT, DELETE or PATCH", req.GetOperation())
	}
	ifMatch, err := clientETags("if_match", req.GetIfMatch())
	if err != nil {
		return nil, err
	}
	ifNoneMatch, err := clientETags("if_none_match", req.GetIfNoneMatch())
	if err != nil {
		return nil, err
	}
	return &pb.EntityOp{DatabaseName: req.GetDatabaseName(), EntityKey: req.GetEntityKey(), Operation: kind,
		Payload: req.GetPayload(), ContentType: req.GetContentType(), IfMatch: ifMatch,
		IfNoneMatch: ifNoneMatch}, nil
}

// clientETags checks a precondition of a client's request ("" for none):
// "*" or a comma-separated list of ETag values without quotes, spaces
// around them dropped, as REST's parseETags returns a header's (a "*" in
// a list is a tag no version has, not any version). Anything else is
// InvalidArgument: a quoted value or an empty item would never match, so
// an If-Match would fail forever and an If-None-Match hold whatever the
// version (" v1" is not "v1").
func clientETags(field, v string) (string, error) {
	if v == "" || v == "*" {
		return v, nil
	}
	tags := strings.Split(v, ",")
	for i, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" || strings.ContainsFunc(t, func(r rune) bool { return r == '"' || r <= ' ' || r == 0x7f }) {
			return "", reqErrorf(errInvalid, "%s %q is not * or a comma-separated list of ETag values without quotes", field, v)
		}
		tags[i] = t
	}
	return strings.Join(tags, ","), nil
}

// requestIDMetadata is the gRPC metadata key of a client call's request
// ID, both ways: the X-Request-ID of REST.
const requestIDMetadata = "x-request-id"

// grpcRequestID is the x-request-id metadata of a client call if sane
// (saneRequestID), or a new random request ID.
func grpcRequestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestIDMetadata); len(v) > 0 && saneRequestID(v[0]) {
		return v[0]
	}
	return "g" + randomIDPrefix() + randomIDPrefix()
}

// peerAddr is the client's address, for the failed-auth rate limit.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// monitor takes silent workers out of rotation until ctx ends.
func (m *mainService) monitor(ctx context.Context) {
	runEvery(ctx, m.every/2, func() {
		m.router.expire(heartbeatMisses * m.every)
		for _, id := range m.router.prune(m.workerTTL) {
			m.forget(id)
		}
		m.router.touchLocal()
	})
}
