package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

func TestCheckJoinToken(t *testing.T) {
	for _, c := range []struct {
		tok string
		ok  bool
	}{
		{strings.Repeat("ab", 32), true},
		{strings.Repeat("AB", 32), true},
		{strings.Repeat("ab", 31) + "a", false}, // 63 hex digits
		{strings.Repeat("x", 43), true},
		{strings.Repeat("x", 42), false},
		{"", false},
		{"correct horse battery staple", false},
	} {
		if err := checkJoinToken(c.tok); (err == nil) != c.ok {
			t.Errorf("checkJoinToken(%q) = %v, want ok %v", c.tok, err, c.ok)
		}
	}
	// -h states the rule checkJoinToken applies (it said ">= 32 bytes",
	// which a 40-character token meets and the start refuses).
	var usage bytes.Buffer
	parseFlags([]string{"-h"}, &usage)
	_, line, _ := strings.Cut(usage.String(), "  -join-token string\n")
	line, _, _ = strings.Cut(line, "\n")
	for _, want := range []string{fmt.Sprintf("%d hex digits", minJoinTokenHex), fmt.Sprintf("at least %d other characters", minJoinTokenOther)} {
		if !strings.Contains(line, want) {
			t.Errorf("-h says of -join-token %q, want it to say %q", line, want)
		}
	}
}

// TestSeqWindow: a number is accepted once; out-of-order numbers inside
// the window are accepted once each; numbers below the window are refused.
func TestSeqWindow(t *testing.T) {
	var w seqWindow
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false}, {1, true}, {1, false}, {3, true}, {2, true}, {2, false}, {3, false},
		{seqWindowSize + 2, true}, {2, false}, {3, false}, {seqWindowSize + 1, true}, {seqWindowSize + 1, false},
		{10 * seqWindowSize, true}, {10*seqWindowSize - 1, true}, {9 * seqWindowSize, false}, {9*seqWindowSize + 1, true},
	}
	for i, s := range steps {
		if got := w.accept(s.seq); got != s.want {
			t.Errorf("step %d: accept(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
}

// newTestIdentity is a generated cluster identity.
func newTestIdentity(t testing.TB) *clusterIdentity {
	t.Helper()
	id, err := newClusterIdentity("", "", "", rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// joiner is a client that subscribes by hand, as an attacker or a test
// worker would: its own TLS identity and RSA key, the cluster ALPN offered
// as workers do.
type joiner struct {
	id    string
	ident *clusterIdentity
	priv  *rsa.PrivateKey
}

func newJoiner(t testing.TB, id string) *joiner {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &joiner{id: id, ident: newTestIdentity(t), priv: priv}
}

// request is the joiner's SubscribeRequest without a proof.
func (j *joiner) request() *pb.SubscribeRequest {
	der, _ := x509.MarshalPKIXPublicKey(&j.priv.PublicKey)
	return &pb.SubscribeRequest{WorkerId: j.id, Pubkey: der, CertSha256: j.ident.fp[:],
		Tags: map[string]string{"grpc_addr": "127.0.0.1:1"}}
}

// prove returns the proof function of a worker knowing token.
func (j *joiner) prove(token []byte) func(exporter []byte, req *pb.SubscribeRequest) {
	return func(exporter []byte, req *pb.SubscribeRequest) {
		req.Proof, _ = workerProof(token, exporter, req)
	}
}

// subscribe opens a Subscribe stream over a new TLS connection to addr,
// lets prove set the request's proof from the connection's exporter, and
// returns the answer, the exporter and the main worker's fingerprint.
func (j *joiner) subscribe(t testing.TB, addr string, opt grpc.CallOption, prove func([]byte, *pb.SubscribeRequest)) (*pb.SubscribeResponse, []byte, [32]byte, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(grpccreds.NewTLS(withClusterALPN(j.ident.tlsConfig(anyPeer, false)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var opts []grpc.CallOption
	if opt != nil {
		opts = append(opts, opt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaled(20*time.Second))
	defer cancel()
	stream, err := pb.NewMainWorkerClient(conn).Subscribe(ctx, opts...)
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	exporter, mainFP, err := peerChannel(stream.Context())
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	req := j.request()
	prove(exporter, req)
	if err := stream.Send(req); err != nil {
		return nil, nil, [32]byte{}, err
	}
	resp, err := stream.CloseAndRecv()
	return resp, exporter, mainFP, err
}

// otherExporter is the TLS exporter of a new connection to addr, on which
// nothing is sent.
func otherExporter(t *testing.T, addr string) []byte {
	t.Helper()
	ident := newTestIdentity(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(grpccreds.NewTLS(withClusterALPN(ident.tlsConfig(anyPeer, false)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := pb.NewMainWorkerClient(conn).Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exporter, _, err := peerChannel(stream.Context())
	if err != nil {
		t.Fatal(err)
	}
	return exporter
}

// TestSubscribeNeedsJoinProof runs -role=main with a join token: a client
// with a fresh key pair and no proof, a proof under another token, or a
// proof made on another connection is refused, gets no key material and
// is not registered; the client knowing the token is answered with a
// proof and the wrapped master key.
func TestSubscribeNeedsJoinProof(t *testing.T) {
	c := startCluster(t)
	token := []byte(testJoinToken)
	checkForgedJoins(t, c.clusterAddr)
	if rows := c.workerRows(); len(rows) != 0 {
		t.Errorf("after refused Subscribes /admin/workers = %+v, want none", rows)
	}
	refused := func(log string) bool { return strings.Contains(log, "subscribe refused: no valid join token proof") }
	if !refused(c.main.logOnceTrue(refused)) {
		t.Errorf("the main worker does not log the refusals:\n%s", c.main.stderr)
	}
	// The control: the same client with the token's proof gets the key.
	j := newJoiner(t, "genuine")
	resp, exporter, mainFP, err := j.subscribe(t, c.clusterAddr, nil, j.prove(token))
	if err != nil {
		t.Fatalf("Subscribe with the join token's proof = %v", err)
	}
	if want, _ := mainProof(token, exporter, mainFP, resp); !bytes.Equal(want, resp.GetProof()) {
		t.Error("the main worker's proof does not verify")
	}
	if got, err := unwrapKey(j.priv, resp.GetWrappedKey()); err != nil || hex.EncodeToString(got) != testMasterKey {
		t.Errorf("unwrapped key = %x, %v; want the master key", got, err)
	}
}

// checkForgedJoins subscribes on addr with a proof that is missing, made
// under another token, made on another connection (the genuine proof of
// the very request, whose stream is abandoned before it is sent),
// garbage, or made before batched_calls was set or cleared (a relay that
// changes the framing the main worker uses): each must be
// PermissionDenied with no answer.
func checkForgedJoins(t *testing.T, addr string) {
	t.Helper()
	token := []byte(testJoinToken)
	recorded := func(_ []byte, req *pb.SubscribeRequest) {
		req.Proof, _ = workerProof(token, otherExporter(t, addr), req)
	}
	batchedAfter := func(exporter []byte, req *pb.SubscribeRequest) {
		req.Proof, _ = workerProof(token, exporter, req)
		req.BatchedCalls = true
	}
	unbatchedAfter := func(exporter []byte, req *pb.SubscribeRequest) {
		req.BatchedCalls = true
		req.Proof, _ = workerProof(token, exporter, req)
		req.BatchedCalls = false
	}
	for name, prove := range map[string]func([]byte, *pb.SubscribeRequest){
		"no proof":                              func([]byte, *pb.SubscribeRequest) {},
		"proof under another token":             newJoiner(t, "z").prove([]byte(strings.Repeat("ab", 32))),
		"proof of another connection":           recorded,
		"garbage proof":                         func(_ []byte, r *pb.SubscribeRequest) { r.Proof = bytes.Repeat([]byte{1}, 32) },
		"batched calls set after the proof":     batchedAfter,
		"batched calls cleared after the proof": unbatchedAfter,
	} {
		id := "evil-" + strings.ReplaceAll(name, " ", "-")
		resp, _, _, err := newJoiner(t, id).subscribe(t, addr, nil, prove)
		if status.Code(err) != codes.PermissionDenied || resp != nil {
			t.Errorf("%s on %s: Subscribe = (answer: %v), %v; want PermissionDenied and no answer", name, addr, resp != nil, err)
		}
	}
}

// TestWorkerWrongJoinToken: a worker whose join token is not the main
// worker's says why, keeps retrying with backoff and never becomes a
// worker the main routes to.
func TestWorkerWrongJoinToken(t *testing.T) {
	c := startCluster(t)
	n := launch(t, []string{"MASTER_KEY=", "ADMIN_KEY=", joinTokenEnv + "=" + strings.Repeat("cd", 32)}, "-role=proc", "-worker-id=wrong",
		"-main-addr="+c.clusterAddr, "-shared-fs="+c.dir)
	n.waitLog("subscribe failed; retrying", 3)
	if log := n.stderr.String(); !strings.Contains(log, "join token proof does not verify") {
		t.Errorf("the worker's log does not say why:\n%s", log)
	}
	if rows := c.workerRows(); len(rows) != 0 {
		t.Errorf("/admin/workers = %+v, want no worker", rows)
	}
}

// waitLog waits until msg has been logged at least count times.
func (n *node) waitLog(msg string, count int) {
	n.t.Helper()
	w := newWait(n.t, fmt.Sprintf("%q logged %d times", msg, count), 20*time.Second)
	// slog's text handler quotes a message only when it has to.
	logged := func() int {
		log := n.stderr.String()
		return strings.Count(log, `msg="`+msg+`"`) + strings.Count(log, "msg="+msg+" ")
	}
	for logged() < count {
		select {
		case <-n.done:
			n.t.Fatalf("process exited before logging %q %d times:\n%s", msg, count, n.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if w.over() {
			n.t.Fatalf("%q logged fewer than %d times: %v\n%s", msg, count, w, n.stderr)
		}
	}
}

// fakeMain is a MainWorker answering Subscribe with keys of its choosing
// (master, callKey) wrapped for the worker, and the proof prove makes
// from the connection's exporter and fp, its own certificate's
// fingerprint: a genuine main worker when prove uses the join token, a
// forger otherwise; without prove, garbage.
type fakeMain struct {
	pb.UnimplementedMainWorkerServer
	master, callKey []byte
	fp              [32]byte
	prove           func(exporter []byte, fp [32]byte, resp *pb.SubscribeResponse) []byte
}

func (f *fakeMain) Subscribe(stream pb.MainWorker_SubscribeServer) error {
	p, _ := peer.FromContext(stream.Context())
	exporter, err := channelBinding(p.AuthInfo.(grpccreds.TLSInfo).State)
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	pub, err := parseWorkerKey(req.GetPubkey())
	if err != nil {
		return err
	}
	wrapped, _ := wrapKey(pub, f.master, rand.Reader)
	wrappedCall, _ := wrapKey(pub, f.callKey, rand.Reader)
	resp := &pb.SubscribeResponse{Token: "t", WrappedKey: wrapped, KeyId: "k1", ExpiresAtUnix: time.Now().Add(time.Hour).Unix(),
		HeartbeatIntervalMs: 1000, WrappedCallKey: wrappedCall, Proof: bytes.Repeat([]byte{9}, 32)}
	if f.prove != nil {
		resp.Proof = f.prove(exporter, f.fp, resp)
	}
	return stream.SendAndClose(resp)
}

// TestWorkerRefusesFakeMain: a worker pointed at a main worker that does
// not know the join token refuses its answer, says why, and does not
// serve calls signed with the call key it offered.
func TestWorkerRefusesFakeMain(t *testing.T) {
	ident := newTestIdentity(t)
	fake := &fakeMain{master: bytes.Repeat([]byte{0xee}, 32), callKey: bytes.Repeat([]byte{0xcc}, 32)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(grpccreds.NewTLS(ident.tlsConfig(anyPeer, false))))
	pb.RegisterMainWorkerServer(gs, fake)
	go gs.Serve(ln)
	defer gs.Stop()
	n := launch(t, workerEnv, "-role=proc", "-worker-id=w1", "-main-addr="+ln.Addr().String(), "-shared-fs="+t.TempDir())
	workerAddr := n.logAddr("worker listening")
	n.waitLog("subscribe failed; retrying", 2)
	log := n.stderr.String()
	if !strings.Contains(log, "the main worker did not prove the join token") || strings.Contains(log, `msg=subscribed`) {
		t.Errorf("the worker's log does not say it refused the fake main:\n%s", log)
	}
	// The fake main calls the worker with the call key it handed out.
	conn, err := grpc.NewClient(workerAddr, grpc.WithTransportCredentials(grpccreds.NewTLS(ident.tlsConfig(anyPeer, false))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)},
		IssuedAtUnixNano: time.Now().UnixNano(), Seq: 1}
	req.Signature, _ = signCall(fake.callKey, "w1", req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewProcessingWorkerClient(conn).Process(ctx, req); status.Code(err) != codes.Unavailable {
		t.Errorf("the fake main's call = %v, want Unavailable (TLS handshake refused)", err)
	}
}

// relay is a TCP relay that records every byte in both directions.
type relay struct {
	ln     net.Listener
	target chan string
	mu     sync.Mutex
	seen   bytes.Buffer
}

// startRelay listens on loopback; connections are forwarded once
// setTarget is called.
func startRelay(t *testing.T) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: make(chan string, 1)}
	t.Cleanup(func() { ln.Close() })
	go r.serve()
	return r
}

func (r *relay) setTarget(addr string) { r.target <- addr }

func (r *relay) serve() {
	target := ""
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if target == "" {
			target = <-r.target
		}
		go r.pipe(c, target)
	}
}

func (r *relay) pipe(c net.Conn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	copyRec := func(dst, src net.Conn) {
		io.Copy(io.MultiWriter(dst, r), src)
		done <- struct{}{}
	}
	go copyRec(u, c)
	go copyRec(c, u)
	<-done
}

func (r *relay) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.Write(p)
}

func (r *relay) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.seen.Bytes())
}

// TestClusterWireIsOpaque places a TCP relay on both links between the
// main worker and a worker (Subscribe and heartbeats one way, Process
// calls the other) and records every byte during PUTs and GETs: no
// document, no join token, no master key (raw or hex) crosses.
func TestClusterWireIsOpaque(t *testing.T) {
	c := startCluster(t)
	toMain, toWorker := startRelay(t), startRelay(t)
	toMain.setTarget(c.clusterAddr)
	n := launch(t, workerEnv, "-role=proc", "-worker-id=w1", "-main-addr="+toMain.ln.Addr().String(),
		"-advertise-addr="+toWorker.ln.Addr().String(), "-shared-fs="+c.dir)
	toWorker.setTarget(n.logAddr("worker listening"))
	c.workers["w1"] = n
	c.waitWorkers(20*time.Second, "w1")
	docs := map[string]string{}
	for i := range 5 {
		docs[fmt.Sprintf("k%d", i)] = fmt.Sprintf("plaintext-document-%d-visible", i)
	}
	if code, out, _ := c.main.call("PUT", "/entity/chatdb", testAdminKey, docs); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	for k, v := range docs {
		if code, out, _ := c.main.call("GET", "/entity/chatdb?key="+k, testAdminKey, nil); code != 200 || string(out) != `"`+v+`"` {
			t.Fatalf("GET %s = %d %s", k, code, out)
		}
	}
	master, _ := hex.DecodeString(testMasterKey)
	wire := append(toMain.bytes(), toWorker.bytes()...)
	if len(toWorker.bytes()) == 0 || len(toMain.bytes()) == 0 {
		t.Fatal("the relays saw no traffic: the test would prove nothing")
	}
	for name, secret := range map[string][]byte{"document": []byte("plaintext-document"), "join token": []byte(testJoinToken),
		"master key": master, "master key (hex)": []byte(testMasterKey), "admin key": []byte(testAdminKey)} {
		if bytes.Contains(wire, secret) {
			t.Errorf("the %s crosses the wire between main and worker", name)
		}
	}
}

// TestSubscribeLiveWorkerID: a Subscribe, even one proving the join token,
// for the ID of a live worker with another key is refused, and the live
// worker keeps its traffic.
func TestSubscribeLiveWorkerID(t *testing.T) {
	c := startCluster(t, "w1")
	before := c.workerRows()
	j := newJoiner(t, "w1")
	_, _, _, err := j.subscribe(t, c.clusterAddr, nil, j.prove([]byte(testJoinToken)))
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("Subscribe with a live worker's ID = %v, want AlreadyExists", err)
	}
	after := c.waitWorkers(5*time.Second, "w1")
	if after[0].Tags["grpc_addr"] != before[0].Tags["grpc_addr"] {
		t.Errorf("w1's address changed from %s to %s", before[0].Tags["grpc_addr"], after[0].Tags["grpc_addr"])
	}
	c.putAndGet(20)
}

// TestWorkerRenewalKeepsWriting: a worker renewing its subscription
// (-worker-ttl, at 80% of its life) is the same process with the same
// write-ahead log: writes of its entities go on being answered 200 and
// read back, with one worker or two. The main worker used to take the log
// over at each renewal, fencing the live worker: its writes answered 503
// until its next renewal; and between a renewal's Subscribe and its first
// heartbeat a lone worker was out of rotation, so a request then found no
// worker (503) instead of waiting those milliseconds, /readyz failed and
// /admin/workers showed it Unavailable.
func TestWorkerRenewalKeepsWriting(t *testing.T) {
	for _, ids := range [][]string{{"w1"}, {"w1", "w2"}} {
		t.Run(strings.Join(ids, "+"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			c := &cluster{t: t, dir: dir, workers: map[string]*node{}}
			c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+dir, "-worker-ttl=3s")
			c.clusterAddr = c.main.logAddr("cluster listening")
			var logs []*node
			for _, id := range ids {
				logs = append(logs, c.startWorker(id))
			}
			c.waitWorkers(20*time.Second, ids...)
			logs[0].waitLog("renewing subscription before the token expires", 1)
			renewals := func() (n int) {
				for _, w := range logs {
					n += strings.Count(w.stderr.String(), "renewing subscription")
				}
				return n
			}
			for i := 0; i < 400 && (i < 50 || renewals() < 4); i++ {
				body := map[string]any{fmt.Sprint("k", i%10): map[string]int{"n": i}}
				if code, out, err := tryCall("PUT", c.main.base+"/entity/renew", testAdminKey, body); code != http.StatusOK {
					if err != nil {
						t.Fatalf("PUT %d: %v\nMAIN:\n%s\nworker:\n%s", i, err, c.main.stderr, logs[0].stderr)
					}
					t.Fatalf("PUT %d after %d renewals = %d %s\nworker log:\n%s\nMAIN:\n%s", i, renewals(), code, out, logs[0].stderr, c.main.stderr)
				}
				if code, out, _ := c.main.call("GET", fmt.Sprint("/entity/renew?key=k", i%10), testAdminKey, nil); code != http.StatusOK || string(out) != fmt.Sprintf(`{"n":%d}`, i) {
					t.Fatalf("GET %d after %d renewals = %d %s, want 200 {\"n\":%d}\nMAIN:\n%s", i, renewals(), code, out, i, c.main.stderr)
				}
				for _, row := range c.workerRows() {
					if row.Status != statusAvailable {
						t.Fatalf("after %d renewals /admin/workers shows %s %s", renewals(), row.WorkerID, row.Status)
					}
				}
				if code, out, _ := c.main.call("GET", "/readyz", "", nil); code != http.StatusOK {
					t.Fatalf("after %d renewals /readyz = %d %s", renewals(), code, out)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := renewals(); n < 4 {
				t.Errorf("the workers renewed %d times, want at least 4 during the writes", n)
			}
		})
	}
}

// writeTestCA generates a CA and a certificate for 127.0.0.1 signed by it
// in dir and returns the paths of the CA, the certificate and its key.
func writeTestCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER)
}

// TestClientTLS: with -tls-cert/-tls-key, REST answers over TLS to curl
// trusting the test CA, a plaintext request to that port gets nothing, and
// client gRPC is TLS too.
func TestClientTLS(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed")
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCA(t, dir)
	n := launch(t, keyEnv, "-shared-fs="+filepath.Join(dir, "db"), "-tls-cert="+certFile, "-tls-key="+keyFile)
	addr := n.logAddr("rest listening")
	out, err := exec.Command("curl", "-sS", "--retry", "20", "--retry-connrefused", "--retry-delay", "0",
		"--cacert", caFile, "https://"+addr+"/health").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"status":"ok"`) {
		t.Fatalf("curl --cacert https://%s/health = %v %s", addr, err, out)
	}
	if out, err := exec.Command("curl", "-sS", "https://"+addr+"/health").CombinedOutput(); err == nil {
		t.Errorf("curl without the CA succeeded: %s", out)
	}
	resp, err := http.Get("http://" + addr + "/health")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), `"status":"ok"`) {
			t.Errorf("plaintext GET /health on the TLS port = %d %s, want a failure", resp.StatusCode, body)
		}
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(n.logAddr("grpc listening"), grpc.WithTransportCredentials(grpccreds.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewMainWorkerClient(conn).Process(context.Background(), &pb.ProcessRequest{DatabaseName: "db", EntityKey: "nope", Operation: "GET", Token: testAdminKey})
	if status.Code(err) != codes.NotFound {
		t.Errorf("client gRPC GET over TLS = %v, want NotFound", err)
	}
}

// TestJoinTokenRequired: -role=main and -role=proc refuse to start without
// a join token, or with a short one, saying how to make one.
func TestJoinTokenRequired(t *testing.T) {
	needBinary(t)
	for _, args := range [][]string{{"-role=main"}, {"-role=proc"}, {"-role=main", "-join-token=short"}} {
		out, err := runBinary(t, append(args, "-shared-fs="+t.TempDir())...)
		if err == nil || !strings.Contains(string(out), "openssl rand -hex 32") {
			t.Errorf("%v: %v\n%s\nwant a refusal saying how to make a token", args, err, out)
		}
	}
}

// TestRouterPrune: a remote worker silent for longer than its token's
// life is removed and its connection closed; a live one and the
// in-process worker stay.
func TestRouterPrune(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	rt := newRouter(slog.New(slog.DiscardHandler), clock.now, 0, nil, nil)
	closed := map[string]bool{}
	for _, id := range []string{"gone", "live"} {
		rt.add(&workerConn{id: id, close: func() { closed[id] = true }})
	}
	rt.add(&workerConn{id: "local"})
	clock.advance(30 * time.Minute)
	rt.seen("live", cacheStats{})
	clock.advance(31 * time.Minute)
	if got := rt.prune(time.Hour); !slices.Equal(got, []string{"gone"}) {
		t.Errorf("prune = %v, want [gone]", got)
	}
	if !closed["gone"] || closed["live"] {
		t.Errorf("closed = %v, want only gone", closed)
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if _, ok := rt.workers["gone"]; ok || len(rt.workers) != 2 {
		t.Errorf("workers after prune = %v, want live and local", rt.workers)
	}
}

// TestClusterOperatorCerts: with -cluster-tls-cert/-key/-ca on both sides
// a worker joins; a worker with a generated certificate the CA did not
// sign is refused at the TLS handshake and never registered.
func TestClusterOperatorCerts(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCA(t, dir)
	tlsArgs := []string{"-cluster-tls-cert=" + certFile, "-cluster-tls-key=" + keyFile, "-cluster-tls-ca=" + caFile}
	c := &cluster{t: t, dir: filepath.Join(dir, "db"), workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, append([]string{"-role=main", "-shared-fs=" + c.dir}, tlsArgs...)...)
	c.clusterAddr = c.main.logAddr("cluster listening")
	c.startWorker("w1", tlsArgs...)
	c.waitWorkers(20*time.Second, "w1")
	c.putAndGet(10)
	stranger := c.startWorker("w2")
	stranger.waitLog("subscribe failed; retrying", 2)
	if rows := c.workerRows(); len(rows) != 1 {
		t.Errorf("/admin/workers = %+v, want only w1", rows)
	}
}

// TestAllWithoutJoinToken: -role=all without a join token registers no
// external worker (Subscribe is PermissionDenied and says why) and still
// serves client applications on its gRPC port.
func TestAllWithoutJoinToken(t *testing.T) {
	n, _ := startDefault(t)
	if strings.Contains(n.stderr.String(), `msg="cluster listening"`) {
		t.Error("-role=all without a join token opened a cluster listener")
	}
	client := pb.NewMainWorkerClient(dial(t, n.logAddr("grpc listening")))
	stream, err := client.Subscribe(context.Background())
	if err == nil {
		stream.Send(newJoiner(t, "w9").request())
		_, err = stream.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "without a join token") {
		t.Errorf("Subscribe = %v, want PermissionDenied (no join token)", err)
	}
	_, err = client.Process(context.Background(), &pb.ProcessRequest{DatabaseName: "db", EntityKey: "nope", Operation: "GET", Token: testAdminKey})
	if status.Code(err) != codes.NotFound {
		t.Errorf("client Process = %v, want NotFound", err)
	}
}

// TestJoinProofForgedByWorker (in-process): the main worker refuses a
// Subscribe whose proof is missing, made under another token, made on
// another connection or garbage: PermissionDenied, no answer (no key
// material), no worker registered. The control, the genuine proof, gets
// the wrapped master key.
func TestJoinProofForgedByWorker(t *testing.T) {
	m := startTestMain(t, 4<<20)
	token := []byte(testJoinToken)
	checkForgedJoins(t, m.clusterAddr)
	if rows := m.svc.router.list(); len(rows) != 1 || rows[0].WorkerID != "local" {
		t.Errorf("after refused Subscribes the workers are %+v, want only the in-process one", rows)
	}
	j := newJoiner(t, "genuine")
	resp, _, _, err := j.subscribe(t, m.clusterAddr, nil, j.prove(token))
	if err != nil {
		t.Fatalf("Subscribe with the join token's proof = %v", err)
	}
	if got, err := unwrapKey(j.priv, resp.GetWrappedKey()); err != nil || !bytes.Equal(got, m.master) {
		t.Errorf("unwrapped key = %x, %v; want the master key", got, err)
	}
}

// TestJoinProofForgedByMain (in-process): a worker's subscriber refuses
// the answer of a main worker whose proof is garbage, made under another
// token, or bound to another certificate: Subscribe fails, and no master
// key, call key or pin is installed. The control, a main worker proving
// the join token, is installed.
func TestJoinProofForgedByMain(t *testing.T) {
	token := []byte(testJoinToken)
	proofUnder := func(tok []byte, fp func([32]byte) [32]byte) func([]byte, [32]byte, *pb.SubscribeResponse) []byte {
		return func(exporter []byte, own [32]byte, resp *pb.SubscribeResponse) []byte {
			b, _ := mainProof(tok, exporter, fp(own), resp)
			return b
		}
	}
	same := func(fp [32]byte) [32]byte { return fp }
	cases := []struct {
		name  string
		prove func([]byte, [32]byte, *pb.SubscribeResponse) []byte
		ok    bool
	}{
		{"garbage proof", func([]byte, [32]byte, *pb.SubscribeResponse) []byte { return bytes.Repeat([]byte{9}, 32) }, false},
		{"proof under another token", proofUnder([]byte(strings.Repeat("cd", 32)), same), false},
		{"proof for another certificate", proofUnder(token, func([32]byte) [32]byte { return newTestIdentity(t).fp }), false},
		{"the join token's proof", proofUnder(token, same), true},
	}
	for _, c := range cases {
		ident := newTestIdentity(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(grpc.Creds(grpccreds.NewTLS(ident.tlsConfig(anyPeer, false))))
		pb.RegisterMainWorkerServer(gs, &fakeMain{master: bytes.Repeat([]byte{0xee}, 32), callKey: bytes.Repeat([]byte{0xcc}, 32),
			fp: ident.fp, prove: c.prove})
		go gs.Serve(ln)
		t.Cleanup(gs.Stop)
		sub := newTestSubscriber(t, ln.Addr().String(), token)
		conn, err := sub.dial(anyPeer)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sub.subscribe(t.Context(), pb.NewMainWorkerClient(conn))
		conn.Close()
		installed := sub.srv.w.keys.Load() != nil || sub.srv.sub.Load() != nil || sub.pin.fp.Load() != nil
		switch {
		case c.ok && (err != nil || !installed):
			t.Errorf("%s: subscribe = %v, installed %v; want the subscription installed", c.name, err, installed)
		case !c.ok && (err == nil || installed):
			t.Errorf("%s: subscribe = %v, installed %v; want an error and nothing installed", c.name, err, installed)
		}
	}
}

// newTestSubscriber is the subscriber of a fresh in-process worker without
// keys, knowing token, for the main worker at mainAddr.
func newTestSubscriber(t *testing.T, mainAddr string, token []byte) *subscriber {
	t.Helper()
	st := newMemStore()
	log := slog.New(slog.DiscardHandler)
	w := newWorker("w1", st, newSchemaRegistry(st, budgets{}), newLRU[string, cachedEntity](16, 0, time.Now), budgets{}, log, nil)
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &subscriber{id: "w1", mainAddr: mainAddr, advertise: "127.0.0.1:1", priv: priv, srv: &workerServer{w: w, now: time.Now},
		join: token, ident: newTestIdentity(t), pin: &pinnedMain{}, log: log, maxMsg: 4 << 20, now: time.Now, retry: subscribeBackoff}
}

// TestSubscribeWorkerAddr: a client that knows the join token advertises
// addresses that are not a TCP host:port (a Unix socket, another of
// gRPC's schemes, no port, a port out of range or by name). Each is refused as invalid and registers nothing;
// before, the main worker took any of them and dialed it.
func TestSubscribeWorkerAddr(t *testing.T) {
	c := startCluster(t)
	token := []byte(testJoinToken)
	for i, addr := range []string{
		"unix:/tmp/deltadb-rogue.sock", "unix:///tmp/deltadb-rogue.sock", "unix-abstract:rogue",
		"dns:///127.0.0.1:1", "passthrough:///127.0.0.1:1", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999",
		"127.0.0.1:01", "host/evil:1", "-host:1", "127.0.0.1:http",
	} {
		j := newJoiner(t, fmt.Sprintf("rogue%d", i))
		_, _, _, err := j.subscribe(t, c.clusterAddr, nil, func(exporter []byte, req *pb.SubscribeRequest) {
			req.Tags["grpc_addr"] = addr
			j.prove(token)(exporter, req)
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Subscribe advertising %q = %v, want InvalidArgument", addr, err)
		}
	}
	if rows := c.workerRows(); len(rows) != 0 {
		t.Errorf("after the refused Subscribes /admin/workers = %+v, want none", rows)
	}
	// The control: a TCP host:port is taken.
	j := newJoiner(t, "genuine")
	if _, _, _, err := j.subscribe(t, c.clusterAddr, nil, j.prove(token)); err != nil {
		t.Fatalf("Subscribe advertising 127.0.0.1:1 = %v", err)
	}
}
