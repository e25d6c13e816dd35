package main

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// subscriber keeps a worker subscribed to the main worker: subscribe with
// backoff, heartbeat, renew before the token expires, and subscribe again
// when the main worker restarts or forgets the worker.
type subscriber struct {
	id        string
	mainAddr  string
	advertise string
	priv      *rsa.PrivateKey
	srv       *workerServer
	// join is the join token, ident this worker's TLS identity, pin where
	// the proven main worker's certificate is pinned for srv.
	join   []byte
	ident  *clusterIdentity
	pin    *pinnedMain
	log    *slog.Logger
	maxMsg int
	// now is the clock of renewals and of the sealer's headers.
	now func() time.Time
	// retry spaces failed subscription attempts.
	retry backoff
}

// subscribeBackoff spaces the attempts of a worker to subscribe to a main
// worker that answers and refuses; while the connection is down, attempts
// fail on it at once, and its coming back cuts the wait short
// (awaitRetry).
var subscribeBackoff = backoff{base: 200 * time.Millisecond, max: 10 * time.Second, jitter: rand.Int64N}

// subscribeReconnect paces a worker's attempts to connect to a main worker
// it cannot reach: gRPC's default backoff grows to 2 minutes, which a main
// worker back from a restart would wait for its workers. A connection
// attempt a second, refused or timing out, costs a main worker that is
// down nothing.
var subscribeReconnect = grpc.ConnectParams{MinConnectTimeout: 20 * time.Second,
	Backoff: grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}

// run subscribes and heartbeats until ctx ends.
func (s *subscriber) run(ctx context.Context) error {
	// Any certificate will do for Subscribe's handshake: the main worker
	// proves the join token over that very connection before anything it
	// says is used.
	conn, err := s.dial(anyPeer)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewMainWorkerClient(conn)
	failures := 0
	for ctx.Err() == nil {
		was := conn.GetState()
		sub, err := s.subscribe(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			s.log.Warn("subscribe failed; retrying", attrAddr, s.mainAddr, attrErr, err, "attempt", failures)
			// Failed on a connection that was not ready: it may be
			// ready by now.
			onConn := was != connectivity.Ready && status.Code(err) == codes.Unavailable
			if s.awaitRetry(ctx, conn, onConn, failures) {
				// A new connection, perhaps to a restarted main
				// worker: the backoff starts over.
				failures = 0
			}
			continue
		}
		failures = 0
		s.log.Info("subscribed", attrWorker, s.id, attrAddr, s.mainAddr, "expires", sub.expires.UTC().Format(time.RFC3339))
		// Heartbeats carry the worker token: they go only to the main
		// worker that proved the join token.
		hconn, err := s.dial(pinned(*s.pin.fp.Load()))
		if err != nil {
			return err
		}
		s.heartbeat(ctx, pb.NewMainWorkerClient(hconn), sub)
		hconn.Close()
	}
	return nil
}

// awaitRetry waits before the subscription attempt after n failures: the
// backoff's delay, cut short when conn becomes ready, which it then
// reports. Only a change to ready counts: during the wait, or during the
// attempt when it failed on the connection (onConn). A connection that
// was ready all along leads to a main worker that answers and refuses, and
// the backoff spaces the attempts; so does one it closes, which the wait
// does not reopen. ctx's end ends the wait.
func (s *subscriber) awaitRetry(ctx context.Context, conn *grpc.ClientConn, onConn bool, n int) (reconnected bool) {
	ctx, cancel := context.WithTimeout(ctx, s.retry.delay(n))
	defer cancel()
	st := conn.GetState()
	if onConn && st == connectivity.Ready {
		return true
	}
	for conn.WaitForStateChange(ctx, st) {
		if st = conn.GetState(); st == connectivity.Ready {
			return true
		}
	}
	return false
}

// dial connects to the main worker over TLS, checking its certificate
// with pin.
func (s *subscriber) dial(pin func([32]byte) error) (*grpc.ClientConn, error) {
	creds := grpccreds.NewTLS(withClusterALPN(s.ident.tlsConfig(pin, false)))
	opts := append(grpcDialOptions(s.maxMsg, creds), grpc.WithConnectParams(subscribeReconnect))
	conn, err := grpc.NewClient(s.mainAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("-main-addr %s: %w", s.mainAddr, err)
	}
	return conn, nil
}

// subscribe calls Subscribe, proving the join token, and installs the
// unwrapped keys once the main worker has proved it too.
func (s *subscriber) subscribe(ctx context.Context, client pb.MainWorkerClient) (*subscription, error) {
	pub, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := client.Subscribe(cctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	exporter, mainFP, err := peerChannel(stream.Context())
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	tags := map[string]string{"grpc_addr": s.advertise}
	gen, err := s.srv.w.reopenLog()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if gen != 0 {
		tags[walGenTag] = strconv.FormatUint(gen, 10)
	}
	req := &pb.SubscribeRequest{WorkerId: s.id, Pubkey: pub, CertSha256: s.ident.fp[:], Tags: tags, BatchedCalls: true}
	if req.Proof, err = workerProof(s.join, exporter, req); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := stream.Send(req); err != nil {
		return nil, fmt.Errorf("subscribe: send: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	want, err := mainProof(s.join, exporter, mainFP, resp)
	if err != nil || !hmac.Equal(want, resp.GetProof()) {
		return nil, errors.New("subscribe: the main worker did not prove the join token; its answer and keys are ignored")
	}
	return s.install(resp, mainFP)
}

// peerChannel is the TLS exporter of a client stream's connection and the
// fingerprint of the server's certificate.
func peerChannel(ctx context.Context) ([]byte, [32]byte, error) {
	p, _ := peer.FromContext(ctx)
	var info grpccreds.TLSInfo
	if p != nil {
		info, _ = p.AuthInfo.(grpccreds.TLSInfo)
	}
	if len(info.State.PeerCertificates) == 0 {
		return nil, [32]byte{}, errors.New("connection to the main worker is not TLS")
	}
	exporter, err := channelBinding(info.State)
	return exporter, certFingerprint(info.State.PeerCertificates[0].Raw), err
}

// install unwraps the keys of a proven answer, builds the sealer, pins the
// main worker's certificate for its calls and makes the subscription
// current.
func (s *subscriber) install(resp *pb.SubscribeResponse, mainFP [32]byte) (*subscription, error) {
	master, err := unwrapKey(s.priv, resp.GetWrappedKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap master key: %w", err)
	}
	defer zero(master)
	callKey, err := unwrapKey(s.priv, resp.GetWrappedCallKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap call key: %w", err)
	}
	ring, err := newKeyring(s.srv.w.st, master, resp.GetKeyId())
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	ring.now = s.now
	// A fresh keyring has no data key cached: it is at the epoch at once.
	ring.epoch = resp.GetKeysEpoch()
	if w := resp.GetWrappedPreviousKey(); len(w) > 0 {
		prev, err := unwrapKey(s.priv, w)
		if err != nil {
			return nil, fmt.Errorf("subscribe: unwrap previous master key: %w", err)
		}
		err = ring.addPrevious(prev, resp.GetPreviousKeyId())
		zero(prev)
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	s.srv.w.setKeys(ring)
	s.srv.w.routedAfter(resp.GetEpoch())
	s.pin.fp.Store(&mainFP)
	sub := &subscription{token: resp.GetToken(), callKey: callKey, expires: time.Unix(resp.GetExpiresAtUnix(), 0),
		epoch: resp.GetEpoch(), every: time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond}
	if sub.every <= 0 {
		sub.every = time.Second
	}
	if old := s.srv.sub.Swap(sub); old != nil {
		zero(old.callKey)
	}
	return sub, nil
}

// heartbeat reports liveness until the subscription must be renewed, the
// main worker asks for a new subscription, or it stops answering.
func (s *subscriber) heartbeat(ctx context.Context, client pb.MainWorkerClient, sub *subscription) {
	now := s.now()
	// At 80% of the token's life, and two heartbeats before its end at
	// the latest: renewals happen on heartbeat ticks, and the expiry
	// comes in whole seconds, so a short -worker-ttl would otherwise let
	// the token expire first (the worker then refuses the main worker's
	// calls).
	renewAt := now.Add(sub.expires.Sub(now) * 4 / 5)
	if latest := sub.expires.Add(-2 * sub.every); renewAt.After(latest) {
		renewAt = latest
	}
	t := time.NewTicker(sub.every)
	defer t.Stop()
	failures := 0
	// The first heartbeat goes at once: it makes the worker Available.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if s.now().After(renewAt) {
			s.log.Info("renewing subscription before the token expires", attrWorker, s.id)
			return
		}
		st := s.srv.w.stats()
		ring := s.srv.w.keys.Load()
		cctx, cancel := context.WithTimeout(ctx, 2*sub.every)
		resp, err := client.Heartbeat(cctx, &pb.HeartbeatRequest{WorkerId: s.id, Token: sub.token,
			InFlight: s.srv.w.inFlight.Load(), Cache: &pb.CacheStats{Hits: st.Hits, Misses: st.Misses,
				Evictions: st.Evictions, Entries: int64(st.Entries), Capacity: int64(st.Capacity),
				Bytes: st.Bytes, MaxBytes: st.MaxBytes},
			KeysEpoch: ring.keysEpoch()})
		cancel()
		if err == nil {
			// Reported applied in the next heartbeat (rekey.go).
			ring.applyEpoch(resp.GetKeysEpoch())
		}
		switch {
		case err != nil:
			if failures++; failures >= 3 {
				s.log.Warn("main worker not answering heartbeats; subscribing again", attrAddr, s.mainAddr, attrErr, err)
				return
			}
		case resp.GetResubscribe():
			s.log.Info("main worker asks for a new subscription", attrAddr, s.mainAddr)
			return
		default:
			failures = 0
		}
	}
}
