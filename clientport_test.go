package main

// The client gRPC port's split (clientport.go): workers subscribing on
// -grpc-addr reach the cluster server with every check of -cluster-addr;
// clients keep working; nothing else reaches the cluster server.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// serveSplit serves svc on a split port as the main node does: the client
// server over clientCreds (nil: plaintext), the cluster server over
// svc's cluster identity (mutual TLS when it has a CA). It returns the
// port's address.
func serveSplit(t *testing.T, svc *mainService, clientCreds grpccreds.TransportCredentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	split := splitPort(ln, slog.New(slog.DiscardHandler))
	t.Cleanup(split.close)
	serve := func(l net.Listener, creds grpccreds.TransportCredentials) {
		opts := grpcServerOptions(4 << 20)
		if creds != nil {
			opts = append(opts, grpc.Creds(creds))
		}
		gs := grpc.NewServer(opts...)
		pb.RegisterMainWorkerServer(gs, svc)
		go gs.Serve(l)
		t.Cleanup(gs.Stop)
	}
	serve(split.client, clientCreds)
	serve(split.cluster, grpccreds.NewTLS(svc.ident.tlsConfig(anyPeer, svc.ident.ca != nil)))
	return ln.Addr().String()
}

// checkGenuineJoin subscribes with the join token's proof on addr and
// checks that the answer came from the cluster server: its certificate is
// the cluster identity's, and the master key unwraps.
func checkGenuineJoin(t *testing.T, m *testMain, addr string) {
	t.Helper()
	j := newJoiner(t, "genuine")
	resp, _, mainFP, err := j.subscribe(t, addr, nil, j.prove([]byte(testJoinToken)))
	if err != nil {
		t.Fatalf("Subscribe with the join token's proof on %s = %v", addr, err)
	}
	if mainFP != m.svc.ident.fp {
		t.Errorf("the worker's TLS peer on %s is not the cluster identity", addr)
	}
	if got, err := unwrapKey(j.priv, resp.GetWrappedKey()); err != nil || !bytes.Equal(got, m.master) {
		t.Errorf("unwrapped key = %x, %v; want the master key", got, err)
	}
}

// checkClientProcess PUTs and GETs an entity over conn, a client's.
func checkClientProcess(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	client := pb.NewMainWorkerClient(conn)
	ctx := t.Context()
	if _, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "PUT", Payload: []byte(`{"a":1}`), Token: testAdminKey}); err != nil {
		t.Fatalf("client PUT on the split port = %v", err)
	}
	resp, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "GET", Token: testAdminKey})
	if err != nil || string(resp.GetResult()) != `{"a":1}` {
		t.Errorf("client GET on the split port = %v, %v; want {\"a\":1}", resp, err)
	}
}

// TestClientPortSplitPlaintext: on a plaintext client port, clients work,
// a worker's TLS reaches the cluster server and joins with the token's
// proof, every forged proof is refused as on the cluster port, a TLS
// client without the cluster ALPN gets no TLS at all (the plaintext
// server), Subscribe in plaintext is refused, and a connection that sends
// nothing holds up no one.
func TestClientPortSplitPlaintext(t *testing.T) {
	m := startTestMain(t, 4<<20)
	addr := serveSplit(t, m.svc, nil)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	checkClientProcess(t, dial(t, addr))
	checkGenuineJoin(t, m, addr)
	checkForgedJoins(t, addr)
	checkForgedJoins(t, m.clusterAddr) // the same answers as the cluster port's
	rogue, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		rogue.Close()
		t.Error("a TLS client without the cluster ALPN completed a handshake on the plaintext client port")
	}
	_, err = pb.NewMainWorkerClient(dial(t, addr)).Subscribe(t.Context())
	if err == nil {
		stream, _ := pb.NewMainWorkerClient(dial(t, addr)).Subscribe(t.Context())
		stream.Send(newJoiner(t, "plain").request())
		_, err = stream.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Subscribe in plaintext on the client port = %v, want PermissionDenied", err)
	}
	if rows := m.svc.router.list(); len(rows) != 2 {
		t.Errorf("workers after the joins = %+v, want the in-process one and genuine", rows)
	}
}

// TestClientPortSplitClientTLS: with client TLS (-tls-cert) on the port,
// a client trusting the client certificate gets that certificate and its
// calls work; a worker offering the cluster ALPN gets the cluster
// identity and joins; forged proofs are refused.
func TestClientPortSplitClientTLS(t *testing.T) {
	m := startTestMain(t, 4<<20)
	caFile, certFile, keyFile := writeTestCA(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveSplit(t, m.svc, grpccreds.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}))
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(grpccreds.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkClientProcess(t, conn)
	checkGenuineJoin(t, m, addr)
	checkForgedJoins(t, addr)
}

// TestClientPortSplitClusterCA: when the cluster demands certificates
// signed by -cluster-tls-ca, a worker without one fails the handshake on
// the client port as on the cluster port, and one with one joins.
func TestClientPortSplitClusterCA(t *testing.T) {
	m := startTestMain(t, 4<<20)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCA(t, dir)
	ident, err := newClusterIdentity(certFile, keyFile, caFile, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.svc.ident = ident // before any call: the cluster identity of this test
	addr := serveSplit(t, m.svc, nil)
	j := newJoiner(t, "no-ca-cert")
	_, _, _, err = j.subscribe(t, addr, nil, j.prove([]byte(testJoinToken)))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a worker without a CA-signed certificate on the client port = %v, want Unavailable (handshake refused)", err)
	}
	signed := newJoiner(t, "ca-cert")
	signed.ident, err = newClusterIdentity(certFile, keyFile, caFile, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := signed.subscribe(t, addr, nil, signed.prove([]byte(testJoinToken))); err != nil {
		t.Errorf("a worker with a CA-signed certificate on the client port = %v", err)
	}
}

// TestOffersClusterALPN: what the split reads of a connection's first
// bytes: the HTTP/2 preface and garbage are clients; a ClientHello is the
// cluster's only with the cluster ALPN; the bytes read are all replayed.
func TestOffersClusterALPN(t *testing.T) {
	hello := func(protos ...string) []byte {
		c1, c2 := net.Pipe()
		defer c2.Close()
		go func() {
			tls.Client(c1, &tls.Config{InsecureSkipVerify: true, NextProtos: protos}).Handshake()
			c1.Close()
		}()
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		var seen bytes.Buffer
		offersClusterALPN(c2, io.TeeReader(c2, &seen))
		return seen.Bytes()
	}
	for _, c := range []struct {
		name  string
		first []byte
		want  bool
	}{
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), false},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), false},
		{"ClientHello h2", hello("h2"), false},
		{"ClientHello without ALPN", hello(), false},
		{"ClientHello cluster", hello(clusterALPN, "h2"), true},
		{"ClientHello cluster only", hello(clusterALPN), true},
		{"handshake byte, then garbage", append([]byte{0x16}, bytes.Repeat([]byte{0xff}, 64)...), false},
	} {
		c1, c2 := net.Pipe()
		go func() { c1.Write(c.first); c1.Close() }()
		var seen bytes.Buffer
		got, err := offersClusterALPN(c2, io.TeeReader(c2, &seen))
		if got != c.want {
			t.Errorf("%s: offersClusterALPN = %v, %v; want %v", c.name, got, err, c.want)
		}
		if !bytes.HasPrefix(c.first, seen.Bytes()) {
			t.Errorf("%s: read %q, not a prefix of what was sent", c.name, seen.Bytes())
		}
		c2.Close()
	}
}

// TestWorkerJoinsOnClientPort runs the Compose commands of README's
// "Moving from the original" (the original system's worker arguments) as
// processes: hosts and ports become loopback ones, the storage a temp
// directory. The worker, whose -main-addr is the main worker's client
// gRPC port and which advertises 0.0.0.0, becomes Available and serves
// entities. A worker against a main worker serving client gRPC over TLS
// (-tls-cert) subscribes too.
func TestWorkerJoinsOnClientPort(t *testing.T) {
	commands := map[string][]string{}
	for _, line := range strings.Split(readmeBlock(t, "original-compose"), "\n") {
		if _, list, ok := strings.Cut(line, "command: "); ok {
			var args []string
			if err := json.Unmarshal([]byte(list), &args); err != nil || len(args) == 0 {
				t.Fatalf("README's command %q: %v", list, err)
			}
			commands[args[0]] = args
		}
	}
	dir := filepath.Join(t.TempDir(), "db")
	local := strings.NewReplacer("0.0.0.0:50051", "0.0.0.0:0", "0.0.0.0:8080", "127.0.0.1:0", "0.0.0.0:50052", "0.0.0.0:0",
		"/shared/db", dir)
	args := func(role string, more ...string) []string {
		var out []string
		for _, a := range commands[role] {
			out = append(out, local.Replace(a))
		}
		return append(out, more...)
	}
	if len(commands["-role=main"]) == 0 || len(commands["-role=proc"]) == 0 {
		t.Fatalf("README's block has no -role=main and -role=proc commands: %q", commands)
	}
	c := &cluster{t: t, dir: dir, workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, args("-role=main")...)
	_, port, _ := net.SplitHostPort(c.main.logAddr("grpc listening"))
	worker := args("-role=proc", "-worker-id=proc-1")
	for i, a := range worker {
		worker[i] = strings.Replace(a, "main-worker:50051", "127.0.0.1:"+port, 1)
	}
	c.workers["proc-1"] = launch(t, workerEnv, worker...)
	c.waitWorkers(20*time.Second, "proc-1")
	c.putAndGet(3)

	tdir := t.TempDir()
	_, certFile, keyFile := writeTestCA(t, tdir)
	main := launch(t, clusterEnv, "-role=main", "-shared-fs="+filepath.Join(tdir, "db"), "-tls-cert="+certFile, "-tls-key="+keyFile)
	w := launch(t, workerEnv, "-role=proc", "-main-addr="+main.logAddr("grpc listening"), "-worker-id=proc-2",
		"-shared-fs="+filepath.Join(tdir, "db"))
	w.waitLog("subscribed", 1)
}

// TestMainAddrDefaultIsClientPort: a processing worker started without
// -main-addr subscribes on the main worker's default -grpc-addr (the
// client port, which hands it to the cluster server, as
// TestWorkerJoinsOnClientPort shows), the address the flag tables name and
// the original system's workers used.
func TestMainAddrDefaultIsClientPort(t *testing.T) {
	cfg, err := parseFlags([]string{"-role=proc", "-join-token=" + strings.Repeat("a", 64)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mainAddr != "127.0.0.1:50051" {
		t.Errorf("-main-addr defaults to %q, want 127.0.0.1:50051, the main worker's -grpc-addr", cfg.mainAddr)
	}
	var help strings.Builder
	parseFlags([]string{"-h"}, &help)
	if !strings.Contains(help.String(), `(default "127.0.0.1:50051")`) {
		t.Errorf("-h does not show -main-addr's default 127.0.0.1:50051:\n%s", help.String())
	}
}
