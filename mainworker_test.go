package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	pb "deltadatabase/proto"
)

// captureCodec is the proto codec, recording every message it decodes: the
// bytes exactly as they crossed the wire.
type captureCodec struct {
	mu   sync.Mutex
	seen [][]byte
}

func (c *captureCodec) Marshal(v any) ([]byte, error) { return protobuf.Marshal(v.(protobuf.Message)) }
func (c *captureCodec) Unmarshal(data []byte, v any) error {
	c.mu.Lock()
	c.seen = append(c.seen, bytes.Clone(data))
	c.mu.Unlock()
	return protobuf.Unmarshal(data, v.(protobuf.Message))
}
func (c *captureCodec) Name() string { return "proto" }

// testMain is a mainService with an in-process worker, served on loopback.
type testMain struct {
	svc  *mainService
	addr string
	// clusterAddr is the TLS listener for workers (join token
	// testJoinToken).
	clusterAddr string
	master      []byte
	auth        *authenticator
}

// startTestMain serves a mainService over real gRPC on 127.0.0.1:0.
func startTestMain(t *testing.T, maxMsg int) *testMain {
	t.Helper()
	st := newMemStore()
	auth, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	return serveTestMain(t, maxMsg, st, auth)
}

// serveTestMain serves a mainService with auth and an in-process worker
// over st, over real gRPC on 127.0.0.1:0.
func serveTestMain(t *testing.T, maxMsg int, st store, auth *authenticator) *testMain {
	t.Helper()
	return serveTestMainLog(t, maxMsg, st, auth, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// serveTestMainLog is serveTestMain logging to log.
func serveTestMainLog(t *testing.T, maxMsg int, st store, auth *authenticator, log *slog.Logger) *testMain {
	t.Helper()
	master := []byte("0123456789abcdef0123456789abcdef")
	rt := newRouter(log, time.Now, 0, nil, nil)
	w := newTestWorker(t, "local", st)
	rt.add(&workerConn{id: "local", proc: w, stats: w.stats})
	ident := newTestIdentity(t)
	svc := newMainService(mainServiceOptions{router: rt, auth: auth, data: newDataPlane(rt, newCatalog(st), w.schemas, budgets{}), master: master,
		keyID: "k1", workerTTL: time.Hour, every: time.Second, maxMsg: maxMsg, rand: rand.Reader, now: time.Now, log: log,
		join: []byte(testJoinToken), ident: ident})
	serve := func(opts ...grpc.ServerOption) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMsg))...)
		pb.RegisterMainWorkerServer(gs, svc)
		go gs.Serve(ln)
		t.Cleanup(gs.Stop)
		return ln.Addr().String()
	}
	addr := serve()
	clusterAddr := serve(grpc.Creds(grpccreds.NewTLS(ident.tlsConfig(anyPeer, false))))
	t.Cleanup(rt.closeAll)
	return &testMain{svc: svc, addr: addr, clusterAddr: clusterAddr, master: master, auth: auth}
}

// dial connects a gRPC client to addr.
func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSubscribeWireHasNoPlainMasterKey captures the Subscribe response
// bytes of a worker that proved the join token: the master key appears in
// them neither raw nor in hex, the main worker's proof verifies, and the
// worker's private key unwraps the key.
func TestSubscribeWireHasNoPlainMasterKey(t *testing.T) {
	m := startTestMain(t, 4<<20)
	codec := &captureCodec{}
	j := newJoiner(t, "w1")
	resp, exporter, mainFP, err := j.subscribe(t, m.clusterAddr, grpc.ForceCodec(codec), j.prove([]byte(testJoinToken)))
	if err != nil {
		t.Fatal(err)
	}
	if len(codec.seen) != 1 {
		t.Fatalf("captured %d messages, want 1", len(codec.seen))
	}
	wire := codec.seen[0]
	for _, secret := range [][]byte{m.master, []byte(hex.EncodeToString(m.master))} {
		if bytes.Contains(wire, secret) {
			t.Fatal("the master key crosses the wire in plaintext")
		}
	}
	if want, _ := mainProof([]byte(testJoinToken), exporter, mainFP, resp); !bytes.Equal(want, resp.GetProof()) {
		t.Error("the main worker's proof does not verify")
	}
	got, err := unwrapKey(j.priv, resp.GetWrappedKey())
	if err != nil || !bytes.Equal(got, m.master) {
		t.Errorf("unwrapKey(wrapped_key) = %x, %v; want the master key", got, err)
	}
	if resp.GetKeyId() != "k1" || resp.GetToken() == "" || resp.GetExpiresAtUnix() <= time.Now().Unix() {
		t.Errorf("Subscribe = key_id %q token %q expires %d", resp.GetKeyId(), resp.GetToken(), resp.GetExpiresAtUnix())
	}
	// The token proves the worker on heartbeats; a wrong one is told to
	// subscribe again.
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	hb, err := client.Heartbeat(context.Background(), &pb.HeartbeatRequest{WorkerId: "w1", Token: resp.GetToken()})
	if err != nil || hb.GetResubscribe() {
		t.Errorf("Heartbeat with the token = %v, %v; want accepted", hb, err)
	}
	hb, err = client.Heartbeat(context.Background(), &pb.HeartbeatRequest{WorkerId: "w1", Token: "forged"})
	if err != nil || !hb.GetResubscribe() {
		t.Errorf("Heartbeat with a forged token = %v, %v; want resubscribe", hb, err)
	}
	// The plaintext client port registers nobody.
	stream, err := client.Subscribe(context.Background())
	if err == nil {
		stream.Send(j.request())
		_, err = stream.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Subscribe on the plaintext port = %v, want PermissionDenied", err)
	}
}

// TestWorkerRefusesForgedCalls: a worker serves only calls signed with its
// subscription's call key, and none once its token has expired.
func TestWorkerRefusesForgedCalls(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	w := newTestWorker(t, "w1", newMemStore())
	srv := &workerServer{w: w, now: clock.now}
	callKey := bytes.Repeat([]byte{7}, 32)
	srv.sub.Store(&subscription{callKey: callKey, expires: clock.now().Add(time.Hour)})
	addr := serveWorker(t, srv)
	client := pb.NewProcessingWorkerClient(dial(t, addr))
	seq := uint64(0)
	put := func() *pb.WorkerRequest {
		seq++
		return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)},
			IssuedAtUnixNano: clock.now().UnixNano(), Seq: seq}
	}
	sign := func(key []byte, id string, r *pb.WorkerRequest) *pb.WorkerRequest {
		sig, err := signCall(key, id, r)
		if err != nil {
			t.Fatal(err)
		}
		r.Signature = sig
		return r
	}
	signed := func(key []byte) *pb.WorkerRequest { return sign(key, "w1", put()) }
	tampered := signed(callKey)
	tampered.Op.Payload = []byte(`2`)
	stale := put()
	stale.IssuedAtUnixNano = clock.now().Add(-time.Hour).UnixNano()
	sign(callKey, "w1", stale)
	for name, req := range map[string]*pb.WorkerRequest{
		"no signature":        put(),
		"garbage signature":   func() *pb.WorkerRequest { r := put(); r.Signature = []byte("garbage"); return r }(),
		"wrong key":           signed(bytes.Repeat([]byte{8}, 32)),
		"tampered":            tampered,
		"replayed (old)":      stale,
		"signed for w2":       sign(callKey, "w2", put()),
		"admin key signature": func() *pb.WorkerRequest { r := put(); r.Signature = []byte(testAdminKey); return r }(),
	} {
		if _, err := client.Process(context.Background(), req); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: Process = %v, want Unauthenticated", name, err)
		}
	}
	ok := signed(callKey)
	if _, err := client.Process(context.Background(), ok); err != nil {
		t.Fatalf("correctly signed Process = %v, want OK", err)
	}
	_, err := client.Process(context.Background(), ok)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("the same signed call again = %v, want Unauthenticated (replayed)", err)
	}
	clock.advance(2 * time.Hour)
	_, err = client.Process(context.Background(), signed(callKey))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Process after the worker token expired = %v, want Unauthenticated (expired)", err)
	}
	srv.sub.Store(&subscription{callKey: callKey, expires: clock.now().Add(time.Hour)})
	if _, err := client.Process(context.Background(), signed(callKey)); err != nil {
		t.Errorf("Process after subscribing again = %v, want OK", err)
	}
}

// TestClientProcessAuth: client applications reach the data path over the
// main worker's gRPC port with the REST credentials and rules.
func TestClientProcessAuth(t *testing.T) {
	m := startTestMain(t, 4096)
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	ctx := context.Background()
	put := &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "s1", Operation: "PUT", Payload: []byte(`{"a":1}`)}
	if _, err := client.Process(ctx, put); status.Code(err) != codes.Unauthenticated {
		t.Errorf("PUT without credential = %v, want Unauthenticated", err)
	}
	put.Token = "wrong"
	if _, err := client.Process(ctx, put); status.Code(err) != codes.Unauthenticated {
		t.Errorf("PUT with a wrong credential = %v, want Unauthenticated", err)
	}
	put.Token = testAdminKey
	if _, err := client.Process(ctx, put); err != nil {
		t.Fatalf("PUT with the admin key in token = %v", err)
	}
	md := metadata.New(map[string]string{"authorization": "Bearer " + testAdminKey})
	resp, err := client.Process(metadata.NewOutgoingContext(ctx, md),
		&pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "s1", Operation: "GET"})
	if err != nil || string(resp.GetResult()) != `{"a":1}` || resp.GetVersion() == "" {
		t.Errorf("GET with authorization metadata = %v, %v; want {\"a\":1} and a version", resp, err)
	}
	// Two credentials that may differ are refused, whichever is valid:
	// the call ran as the first metadata value, or the token over the
	// metadata, so a proxy's credential and a client's could differ.
	twice := metadata.Pairs("authorization", "Bearer "+testAdminKey, "authorization", "Bearer wrong")
	if _, err := client.Process(metadata.NewOutgoingContext(ctx, twice), &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "s1", Operation: "GET"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GET with two authorization metadata values = %v, want InvalidArgument", err)
	}
	other := metadata.Pairs("authorization", "Bearer wrong")
	if _, err := client.Process(metadata.NewOutgoingContext(ctx, other), &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "s1", Operation: "GET", Token: testAdminKey}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GET with a token and other authorization metadata = %v, want InvalidArgument", err)
	}
	if _, err := client.Process(metadata.NewOutgoingContext(ctx, md), &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "s1", Operation: "GET", Token: testAdminKey}); err != nil {
		t.Errorf("GET with the same credential as token and metadata = %v, want OK", err)
	}
	reader, err := m.auth.createKey(ctx, keyRequest{Name: "ro", Permissions: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	put.Token = reader.Secret
	if _, err := client.Process(ctx, put); status.Code(err) != codes.PermissionDenied {
		t.Errorf("PUT with a read-only key = %v, want PermissionDenied", err)
	}
	_, err = client.Process(ctx, &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "nope", Operation: "GET", Token: reader.Secret})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GET of a missing entity = %v, want NotFound", err)
	}
	_, err = client.Process(ctx, &pb.ProcessRequest{DatabaseName: "chatdb", EntityKey: "big", Operation: "PUT",
		Token: testAdminKey, Payload: []byte(`"` + strings.Repeat("x", 8192) + `"`)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("PUT over -grpc-max-recv-msg-size = %v, want ResourceExhausted", err)
	}
}

// BenchmarkRemoteGetHit is a cached GET through the gRPC hop: the main
// worker's signed call, the worker's check and cache, and the answer.
func BenchmarkRemoteGetHit(b *testing.B) {
	w := newTestWorker(b, "w1", newMemStore())
	_, _, rw := remoteStub(b, &workerServer{w: w, now: time.Now}, bytes.Repeat([]byte{7}, 32), grpcServerOptions(4<<20)...)
	ctx := context.Background()
	doc := []byte(`{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}`)
	if _, err := rw.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: doc}, Owner: true}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(16) // like 32 concurrent clients on two cores
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if _, err := rw.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWorkerErrorsKeepTheirRESTStatus: an error that crosses the gRPC hop
// from a worker answers the same REST status as it would in-process (a
// validation failure stays 400, not-found 404, a decryption failure 500).
// A client sentence crosses unchanged; an internal failure crosses as its
// fixed sentence, never its chain.
func TestWorkerErrorsKeepTheirRESTStatus(t *testing.T) {
	for _, c := range []struct {
		sentinel error
		want     int
	}{
		{errInvalid, 400}, {errNotFound, 404}, {errPrecondition, 412}, {errPatchConflict, 409},
		{errUnavailable, 503}, {errCorrupt, 500}, {errTooLarge, 413}, {errUnauthenticated, 401},
		{errForbidden, 403}, {errors.New("unclassified"), 500},
		// errRateLimited is not here: only the main worker limits, and it
		// shares ResourceExhausted with errTooLarge, so it would come back
		// as 413.
	} {
		sentinel := c.sentinel
		err := fmt.Errorf("put entity db/\"k\": open /srv/root/files/db/6b: %w", sentinel)
		back := errorFromStatus(status.Error(grpcCode(err), publicMessage(err, "rid1")), false)
		if got := statusOf(back); got != c.want {
			t.Errorf("%v: REST status after the hop = %d, want %d", sentinel, got, c.want)
		}
		if msg, ok := clientMessage(back); ok || strings.Contains(back.Error(), "/srv/root") {
			t.Errorf("%v: internal failure after the hop = %q (sentence %q), want the fixed sentence only", sentinel, back, msg)
		}
		if sentinelOf(grpcCode(err)) == nil {
			continue
		}
		cerr := fmt.Errorf("put entity db/\"k\": %w", reqErrorf(sentinel, "entity %q: something about it", "k"))
		msg, _ := clientMessage(cerr)
		back = errorFromStatus(status.Error(grpcCode(cerr), msg), true)
		if got, want := statusOf(back), statusOf(cerr); got != want {
			t.Errorf("%v: REST status of a sentence after the hop = %d, want %d", sentinel, got, want)
		}
		if got, _ := clientMessage(back); got != msg {
			t.Errorf("%v: sentence after the hop = %q, want %q", sentinel, got, msg)
		}
	}
}

// rawCodec passes messages as the bytes they are on the wire, so that a
// test can speak the original system's encoding without our generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = bytes.Clone(data); return nil }
func (rawCodec) Name() string                       { return "proto" }

// originalProcessRequest encodes a ProcessRequest exactly as the original
// system's clients do: database_name=1, entity_key=2, schema_id=3,
// operation=4 (a string), payload=5 (bytes), token=6, all length-delimited.
func originalProcessRequest(db, key, schema, op string, payload []byte, token string) []byte {
	var b []byte
	for i, f := range [][]byte{[]byte(db), []byte(key), []byte(schema), []byte(op), payload, []byte(token)} {
		if len(f) > 0 {
			b = protowire.AppendTag(b, protowire.Number(i+1), protowire.BytesType)
			b = protowire.AppendBytes(b, f)
		}
	}
	return b
}

// decodeOriginalResponse decodes a ProcessResponse as the original
// system's clients do: status=1 string, result=2 bytes, version=3 string,
// error=4 string. Any other field or wire type is an error.
func decodeOriginalResponse(b []byte) (map[protowire.Number]string, error) {
	out := map[protowire.Number]string{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || num < 1 || num > 4 {
			return nil, fmt.Errorf("unexpected field %d of wire type %d", num, typ)
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		out[num] = string(v)
		b = b[n+m:]
	}
	return out, nil
}

// TestClientProcessOriginalWire: a client built from the original
// messages alone (hand-encoded field numbers and types) calls
// /deltadb.MainWorker/Process on the real server: PUT and GET answer
// status "OK", the document and a version; a missing entity is NotFound
// with the sentence in the message and in a ProcessResponse detail
// (status "ERROR", error = the sentence); an unknown operation string is
// InvalidArgument.
func TestClientProcessOriginalWire(t *testing.T) {
	m := startTestMain(t, 4<<20)
	conn := dial(t, m.addr, grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	call := func(req []byte) (map[protowire.Number]string, error) {
		var resp []byte
		if err := conn.Invoke(context.Background(), "/deltadb.MainWorker/Process", &req, &resp); err != nil {
			return nil, err
		}
		return decodeOriginalResponse(resp)
	}
	put, err := call(originalProcessRequest("chatdb", "s1", "", "PUT", []byte(`{"a": 1}`), testAdminKey))
	if err != nil || put[1] != "OK" || put[3] == "" {
		t.Fatalf("PUT = %q, %v; want status OK and a version", put, err)
	}
	get, err := call(originalProcessRequest("chatdb", "s1", "", "GET", nil, testAdminKey))
	if err != nil || get[1] != "OK" || get[2] != `{"a":1}` || get[3] != put[3] {
		t.Errorf("GET = %q, %v; want status OK, {\"a\":1} and version %q", get, err, put[3])
	}
	_, err = call(originalProcessRequest("chatdb", "nope", "", "GET", nil, testAdminKey))
	st := status.Convert(err)
	const sentence = `entity "nope" not found in database "chatdb"`
	if st.Code() != codes.NotFound || st.Message() != sentence {
		t.Errorf("GET of a missing entity = %v, want NotFound %q", err, sentence)
	}
	details := st.Proto().GetDetails()
	if len(details) != 1 || details[0].GetTypeUrl() != "type.googleapis.com/deltadb.ProcessResponse" {
		t.Fatalf("status details = %v, want one deltadb.ProcessResponse", details)
	}
	if d, err := decodeOriginalResponse(details[0].GetValue()); err != nil || d[1] != "ERROR" || d[4] != sentence {
		t.Errorf("detail = %q, %v; want status ERROR and error %q", d, err, sentence)
	}
	_, err = call(originalProcessRequest("chatdb", "s1", "", "FROB", nil, testAdminKey))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), `"FROB"`) {
		t.Errorf("operation FROB = %v, want InvalidArgument naming it", err)
	}
}

// TestRemoteWorkerErrorsCarryNoInternals: a remote worker over a real
// filesystem store answers a missing entity with the client sentence and a
// corrupt one with a fixed sentence naming the request ID: no storage path,
// object key or wrapped chain crosses the hop, and the REST status holds.
func TestRemoteWorkerErrorsCarryNoInternals(t *testing.T) {
	st := newTestFSStore(t)
	w := newTestWorker(t, "w1", st)
	_, _, rw := remoteStub(t, &workerServer{w: w, now: time.Now}, bytes.Repeat([]byte{7}, 32))
	ctx := context.Background()
	get := func(key string) error {
		_, err := rw.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_GET},
			Owner: true, RequestId: "rid-42"})
		return err
	}
	err := get("nope")
	if msg, ok := clientMessage(err); !ok || msg != `entity "nope" not found in database "db"` || statusOf(err) != 404 {
		t.Errorf("GET of a missing entity = %v (sentence %q), want 404 with the sentence", err, msg)
	}
	if err := st.Put(ctx, entityObjectKey("db", "bad"), []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	err = get("bad")
	if _, ok := clientMessage(err); ok || statusOf(err) != 500 || !strings.Contains(err.Error(), "rid-42") {
		t.Errorf("GET of a corrupt entity = %v, want 500 without a client sentence, naming request rid-42", err)
	}
	for _, leak := range []string{st.root, "files/", "open ", ": " + errCorrupt.Error() + ":"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error after the hop %q contains %q", err, leak)
		}
	}
}

// serveWorker serves srv's ProcessingWorker on a loopback port until the
// test ends and returns its address.
func serveWorker(tb testing.TB, srv *workerServer, opts ...grpc.ServerOption) string {
	_, addr := serveWorkerGS(tb, srv, opts...)
	return addr
}

// serveWorkerGS is serveWorker, also returning the server (a test may
// stop it early); when the test ends it waits for the Calls streams too.
func serveWorkerGS(tb testing.TB, srv *workerServer, opts ...grpc.ServerOption) (*grpc.Server, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(append(callServerOptions(), opts...)...)
	pb.RegisterProcessingWorkerServer(gs, srv)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(frameListener{ln}) }()
	tb.Cleanup(func() { gs.Stop(); <-served; srv.wait() })
	return gs, ln.Addr().String()
}

// remoteStub serves srv (opts: its server's options) subscribed under
// callKey, as worker w1, and returns its server, the main worker's client
// of it and its stub (remoteWorker), all closed when the test ends.
func remoteStub(tb testing.TB, srv *workerServer, callKey []byte, opts ...grpc.ServerOption) (*grpc.Server, pb.ProcessingWorkerClient, *remoteWorker) {
	srv.sub.Store(&subscription{callKey: callKey, expires: srv.now().Add(time.Hour)})
	gs, addr := serveWorkerGS(tb, srv, opts...)
	client := pb.NewProcessingWorkerClient(dial(tb, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20))))
	rw := newRemoteWorker("w1", client, callKey, time.Now, true)
	tb.Cleanup(rw.close)
	return gs, client, rw
}

// prefaceOnly opens a TCP connection to addr, sends the HTTP/2 client
// preface and an empty SETTINGS frame, then only reads (answering no
// ping), and returns how long the server kept the connection open, or
// limit if it was still open then.
func prefaceOnly(t *testing.T, addr string, limit time.Duration) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0} // length 0, type SETTINGS, no flags, stream 0
	if _, err := conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(start.Add(limit))
	_, err = io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return limit
	}
	return time.Since(start)
}

// TestGRPCPrefaceOnlyConnectionClosed is a hostile-input probe: a
// connection to the client gRPC port that sent the HTTP/2 preface and
// nothing else stayed open forever. Now it is closed once it has been
// idle for -grpc-max-connection-idle (GOAWAY, then close after the
// unanswered ping of the drain, 5 s); a working client reconnects.
func TestGRPCPrefaceOnlyConnectionClosed(t *testing.T) {
	n, _ := startDefault(t, "-grpc-max-connection-idle=1s")
	addr := n.logAddr("grpc listening")
	client := pb.NewMainWorkerClient(dial(t, addr))
	if _, err := client.Process(t.Context(), clientProcess("PUT", "g", "k", testAdminKey, []byte(`1`))); err != nil {
		t.Fatal(err)
	}
	open := prefaceOnly(t, addr, 30*time.Second)
	t.Logf("a preface-only connection was closed after %v", open.Round(100*time.Millisecond))
	if open >= 30*time.Second {
		t.Fatal("a preface-only connection is still open after 30 s")
	}
	if open > 15*time.Second {
		t.Errorf("a preface-only connection stayed open %v, want about 1 s idle + 5 s", open)
	}
	// The idle client connection was closed meanwhile too; it reconnects.
	if resp, err := client.Process(t.Context(), clientProcess("GET", "g", "k", testAdminKey, nil)); err != nil || string(resp.GetResult()) != "1" {
		t.Errorf("GET after the idle close = %s, %v", resp.GetResult(), err)
	}
}

// TestFencedWriteOutcomeUnknown: a worker whose write-ahead log was taken
// over while it was paused appends the next write to the taken log, whose
// taker may have read it: the main worker answers 503 saying the owner
// changed and the write may or may not have been applied (it said
// "storage or workers unavailable", as for a write refused before it
// began). The next write, refused before it is appended, keeps that
// sentence.
func TestFencedWriteOutcomeUnknown(t *testing.T) {
	st := newTestFSStore(t)
	l := openTestWAL(t, st, "w1")
	w := newTestWorker(t, "w1", st)
	w.wal = l
	_, _, rw := remoteStub(t, &workerServer{w: w, now: time.Now}, bytes.Repeat([]byte{7}, 32))
	put := func(doc string) error {
		_, err := rw.Process(t.Context(), &pb.WorkerRequest{RequestId: "rid1", Owner: true,
			Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(doc)}})
		return err
	}
	if err := put(`{"v":1}`); err != nil {
		t.Fatal(err)
	}
	if _, err := takeOverLog(t.Context(), st, "w1", claimGen, l.generation(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	err := put(`{"v":2}`)
	msg := publicMessage(err, "rid1")
	if statusOf(err) != 503 || nothingWritten(err) || !strings.Contains(msg, "owner changed") ||
		!strings.Contains(msg, "may or may not have been applied") || !strings.Contains(msg, "rid1") {
		t.Errorf("PUT appended after the takeover = %v (status %d, sentence %q), want 503: owner changed, may or may not have been applied", err, statusOf(err), msg)
	}
	err = put(`{"v":3}`)
	if msg := publicMessage(err, "rid1"); statusOf(err) != 503 || strings.Contains(msg, "owner changed") {
		t.Errorf("PUT refused before it was appended = %v (sentence %q), want 503 without the unknown outcome", err, msg)
	}
}
