package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "deltadatabase/proto"
)

// The main worker's calls to a remote worker travel on one long-lived
// ProcessingWorker.Calls stream per worker link instead of one gRPC call
// each (ARCHITECTURE.md "Processing workers and routing"): a unary call
// pays gRPC's stream set-up, most of the hop's cost. Every request on the
// stream is signed, timestamped and numbered as a unary Process call is;
// the worker also refuses a number not above the last one it read from
// the same stream (a reordered message), and each answer names the
// number of its request. Deadlines travel as the time left, and a caller
// that gives up sends a signed cancel message naming its call.

// sealedCall is a message of the Calls stream as bytes: on the main
// worker a sealed call (callMAC.seal) to send as it is, on a worker the
// bytes of a request as received, held in buf until free.
type sealedCall struct {
	b   []byte
	buf mem.Buffer
}

// sealed returns the received bytes if they are a sealed call
// (callMAC.seal), whose signature covers them; otherwise nil: the
// request's signature is then checked over its deterministic encoding.
func (s *sealedCall) sealed() []byte {
	if isSealed(s.b) {
		return s.b
	}
	return nil
}

// free releases the received bytes; b is not to be read after.
func (s *sealedCall) free() {
	if s.buf != nil {
		s.buf.Free()
	}
	s.b, s.buf = nil, nil
}

// callCodec is the gRPC codec of both ends of the Calls stream: a
// sealedCall's bytes go out as they are, and a receiver asking for a
// sealedCall gets the message's bytes without decoding; every other
// message is protobuf, as with gRPC's own codec. Its name is gRPC's
// codec's ("proto"): the bytes on the wire are protobuf either way.
type callCodec struct{}

// protoCodec is gRPC's protobuf codec, which callCodec defers to.
var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Marshal implements encoding.CodecV2.
func (callCodec) Marshal(v any) (mem.BufferSlice, error) {
	if s, ok := v.(*sealedCall); ok {
		return mem.BufferSlice{mem.SliceBuffer(s.b)}, nil
	}
	return protoCodec.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (callCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if s, ok := v.(*sealedCall); ok {
		s.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		s.b = s.buf.ReadOnlyData()
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// Name implements encoding.CodecV2.
func (callCodec) Name() string { return grpcproto.Name }

// The HTTP/2 flow-control windows of a connection that carries a Calls
// stream, on both ends (the main worker's connection to a worker, and
// the worker's server): fixed, which turns off gRPC's estimate of the
// link's bandwidth (a PING each way per round trip of a busy link) and
// makes window updates rare. They are as large as that estimate may
// grow them, and a stream's window holds the largest message by default.
const (
	callStreamWindow = 4 << 20
	callConnWindow   = 16 << 20
)

// callLinkDialOptions are the options of the main worker's connection to
// a worker, beyond grpcDialOptions.
func callLinkDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(callStreamWindow), grpc.WithInitialConnWindowSize(callConnWindow)}
}

// callServerOptions are the options of a worker's gRPC server, which
// serves the Calls streams, beyond the others of every server of ours:
// callCodec and the windows above.
func callServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(callCodec{}),
		grpc.InitialWindowSize(callStreamWindow), grpc.InitialConnWindowSize(callConnWindow)}
}

// sealFunc numbers, timestamps and signs a request, returning it sealed.
type sealFunc func(*pb.WorkerRequest) ([]byte, error)

// callAnswer is what a caller on the stream receives: the worker's
// answer, or the error that ended the stream.
type callAnswer struct {
	resp *pb.WorkerResponse
	err  error
}

// callLink is the main worker's side of the Calls streams to one worker.
// It opens a stream on the first call and again after one ends, and
// closes with the worker's registration, waiting for its goroutines.
type callLink struct {
	id     string
	client pb.ProcessingWorkerClient
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the goroutines of the link: each stream's receiver and
	// the senders of cancel messages.
	wg sync.WaitGroup

	mu     sync.Mutex
	cur    *callStream
	closed bool
}

// newCallLink returns the link to worker id over client; nothing is sent
// before the first call.
func newCallLink(id string, client pb.ProcessingWorkerClient) *callLink {
	ctx, cancel := context.WithCancel(context.Background())
	return &callLink{id: id, client: client, ctx: ctx, cancel: cancel}
}

// close ends the link's streams (calls in flight fail as transport
// failures) and waits for its goroutines.
func (l *callLink) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}

// spawn runs f in a goroutine that close waits for, unless the link is
// closed.
func (l *callLink) spawn(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.wg.Go(f)
	}
}

// callStream is one open Calls stream and the calls awaiting an answer
// on it.
type callStream struct {
	stream grpc.BidiStreamingClient[pb.WorkerRequest, pb.WorkerResponse]
	cancel context.CancelFunc
	// sending is a lock of one slot: Send is not safe for concurrent use,
	// and numbers must go out in order. A caller that gives up while
	// waiting for it leaves.
	sending chan struct{}
	// out carries each sealed call into SendMsg, under sending (gRPC
	// keeps the bytes, not the message).
	out sealedCall

	mu      sync.Mutex
	pending map[uint64]chan callAnswer
	err     error // set once the stream ended; no call is added after
}

// stream returns the open stream, opening one if there is none. Opening
// waits for the connection at most as long as ctx allows.
func (l *callLink) stream(ctx context.Context) (*callStream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("worker %s: link closed: %w", l.id, errTransport)
	}
	if l.cur != nil {
		return l.cur, nil
	}
	sctx, cancel := context.WithCancel(l.ctx)
	stop := context.AfterFunc(ctx, cancel)
	st, err := l.client.Calls(sctx, grpc.ForceCodecV2(callCodec{}))
	if !stop() || err != nil {
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("worker %s: open call stream: %s: %w", l.id, status.Convert(err).Message(), errTransport)
	}
	cs := &callStream{stream: st, cancel: cancel, sending: make(chan struct{}, 1), pending: map[uint64]chan callAnswer{}}
	l.cur = cs
	l.wg.Go(func() { l.receive(cs) })
	return cs, nil
}

// receive hands each answer on cs to its caller until the stream ends,
// then fails every call still waiting and forgets the stream, so that
// the next call opens another.
func (l *callLink) receive(cs *callStream) {
	for {
		resp, err := cs.stream.Recv()
		if err != nil {
			l.ended(cs, err)
			return
		}
		cs.mu.Lock()
		ch := cs.pending[resp.GetSeq()]
		delete(cs.pending, resp.GetSeq())
		cs.mu.Unlock()
		if ch != nil {
			ch <- callAnswer{resp: resp} // buffered: never blocks
		}
		// An answer to no waiting call (its caller gave up) is dropped.
	}
}

// ended records that cs ended with err and fails its waiting calls.
func (l *callLink) ended(cs *callStream, err error) {
	msg := "call stream closed"
	if !errors.Is(err, io.EOF) {
		msg = status.Convert(err).Message()
	}
	fail := fmt.Errorf("worker %s: %s: %w", l.id, msg, errTransport)
	l.mu.Lock()
	if l.cur == cs {
		l.cur = nil
	}
	l.mu.Unlock()
	cs.mu.Lock()
	cs.err = fail
	waiting := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	for _, ch := range waiting {
		ch <- callAnswer{err: fail}
	}
	cs.cancel()
}

// call sends req on the link's stream, sealed by seal (which numbers and
// signs it), and waits for its answer, for the stream's end or for ctx.
func (l *callLink) call(ctx context.Context, req *pb.WorkerRequest, seal sealFunc) (*pb.WorkerResponse, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutNanos = max(1, int64(time.Until(dl)))
	}
	cs, err := l.stream(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan callAnswer, 1)
	if err := cs.send(ctx, req, seal, ch); err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		if a.err == nil && len(a.resp.GetStatus()) > 0 && ctx.Err() != nil {
			// The worker failed because the call's deadline passed
			// there too: the caller's own context says why.
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return a.resp, a.err
	case <-ctx.Done():
		if seq := req.GetSeq(); cs.forget(seq) {
			l.spawn(func() { cs.sendCancel(l.ctx, seq, seal) })
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// send seals and sends req, registering ch for its answer. A failed Send
// is a transport failure: the stream is broken, and its receiver fails
// the other calls.
func (cs *callStream) send(ctx context.Context, req *pb.WorkerRequest, seal sealFunc, ch chan callAnswer) error {
	select {
	case cs.sending <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-cs.sending }()
	wire, err := seal(req)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	if cs.err != nil {
		cs.mu.Unlock()
		return cs.err
	}
	cs.pending[req.GetSeq()] = ch
	cs.mu.Unlock()
	cs.out.b = wire
	err = cs.stream.SendMsg(&cs.out)
	cs.out.b = nil
	if err != nil {
		cs.forget(req.GetSeq())
		return fmt.Errorf("send on call stream: %s: %w", status.Convert(err).Message(), errTransport)
	}
	return nil
}

// forget removes the call numbered seq from the waiting ones; it reports
// whether it was still waiting (no answer had come).
func (cs *callStream) forget(seq uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	_, ok := cs.pending[seq]
	delete(cs.pending, seq)
	return ok
}

// sendCancel tells the worker that the caller of call seq gave up, so
// that it stops working on it. It is best effort: a stream that ended
// has nothing left to cancel.
func (cs *callStream) sendCancel(ctx context.Context, seq uint64, seal sealFunc) {
	select {
	case cs.sending <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-cs.sending }()
	if wire, err := seal(&pb.WorkerRequest{CancelSeq: seq}); err == nil {
		cs.out.b = wire
		cs.stream.SendMsg(&cs.out) //nolint:errcheck // a broken stream is the receiver's to report
		cs.out.b = nil
	}
}

// answerError turns a failed call's answer on the stream back into the
// error a unary Process call would have returned.
func answerError(resp *pb.WorkerResponse) error {
	var sp spb.Status
	if err := proto.Unmarshal(resp.GetStatus(), &sp); err != nil || sp.GetCode() == int32(codes.OK) {
		return status.Error(codes.Internal, "worker answered a malformed status")
	}
	return status.FromProto(&sp).Err()
}

// streamCallsInFlight is how many calls of one Calls stream a worker runs
// at once; past it, the worker stops reading the stream until one ends,
// and HTTP/2 flow control holds the main worker's sends (backpressure).
const streamCallsInFlight = 256

// callServer is the worker's side of one Calls stream.
type callServer struct {
	s      *workerServer
	stream grpc.BidiStreamingServer[pb.WorkerRequest, pb.WorkerResponse]
	slots  chan struct{}

	// sendMu serialises answers; sendClosed is set when the handler
	// returns, after which nothing may be sent.
	sendMu     sync.Mutex
	sendClosed bool

	mu      sync.Mutex
	closed  bool // no call starts any more
	running map[uint64]context.CancelFunc
	wg      sync.WaitGroup
}

// Calls serves the main worker's calls on one stream until the main
// worker closes it or the node stops; either way the calls already read
// finish and are answered first. It implements pb.ProcessingWorkerServer.
func (s *workerServer) Calls(stream grpc.BidiStreamingServer[pb.WorkerRequest, pb.WorkerResponse]) error {
	cs := &callServer{s: s, stream: stream, slots: make(chan struct{}, streamCallsInFlight),
		running: map[uint64]context.CancelFunc{}}
	received := make(chan error, 1)
	// Recv cannot be interrupted: the receiver may outlive the handler
	// by a moment (until gRPC ends the stream); the node waits for it.
	s.streams.Go(func() { received <- cs.receive() })
	var err error
	select {
	case err = <-received:
	case <-s.quitting():
		err = status.Error(codes.Unavailable, "worker is shutting down")
	}
	cs.mu.Lock()
	cs.closed = true
	cs.mu.Unlock()
	cs.wg.Wait()
	cs.sendMu.Lock()
	cs.sendClosed = true
	cs.sendMu.Unlock()
	return err
}

// receive reads the stream's messages, admitting each (admit) and
// starting its call, until the stream or the handler ends.
func (cs *callServer) receive() error {
	ctx := cs.stream.Context()
	var sc streamCheck
	var in sealedCall // each message's bytes, in turn
	for {
		req, err := cs.next(&in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		now := cs.s.now()
		why := cs.s.admit(req, in.sealed(), now, &sc)
		in.free()
		if why != "" {
			cs.answer(req.GetSeq(), nil, refusal(why))
			continue
		}
		if c := req.GetCancelSeq(); c != 0 {
			cs.cancel(c)
			continue
		}
		if resp, ok := cs.s.w.cached(req); ok {
			cs.served(ctx, req, now)
			cs.answer(req.GetSeq(), resp, nil)
			continue
		}
		select {
		case cs.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		if !cs.start(ctx, req, now) {
			return nil
		}
	}
}

// next reads the stream's next request into in, its bytes held until
// freed (admit checks a sealed call's signature over them), and returns
// their decoding.
func (cs *callServer) next(in *sealedCall) (*pb.WorkerRequest, error) {
	if err := cs.stream.RecvMsg(in); err != nil {
		return nil, err
	}
	req := &pb.WorkerRequest{}
	if err := proto.Unmarshal(in.b, req); err != nil {
		in.free()
		return nil, status.Errorf(codes.Internal, "decode call: %v", err)
	}
	return req, nil
}

// start runs req's call in its own goroutine, under its deadline; it
// reports false, starting nothing, once the handler is ending.
func (cs *callServer) start(ctx context.Context, req *pb.WorkerRequest, now time.Time) bool {
	cctx, cancel := context.WithCancel(ctx)
	if t := req.GetTimeoutNanos(); t > 0 {
		cctx, cancel = context.WithTimeout(ctx, time.Duration(t))
	}
	seq := req.GetSeq()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		cancel()
		<-cs.slots
		return false
	}
	cs.running[seq] = cancel
	cs.wg.Go(func() {
		defer func() { <-cs.slots }()
		resp, f := cs.s.serve(cctx, req, now)
		if f != nil && cctx.Err() != nil {
			// It failed because its deadline passed or it was
			// cancelled: that is the answer, as gRPC gives it.
			f = &callFailure{st: status.FromContextError(cctx.Err())}
		}
		cs.observe(now, f)
		cs.mu.Lock()
		delete(cs.running, seq)
		cs.mu.Unlock()
		cancel()
		cs.answer(seq, resp, f)
	})
	return true
}

// served logs and counts a call answered from the cache (worker.cached)
// as serve and start do for the others.
func (cs *callServer) served(ctx context.Context, req *pb.WorkerRequest, now time.Time) {
	if cs.s.w.log.Enabled(ctx, slog.LevelDebug) {
		cs.s.logCall(withRequestID(ctx, req.GetRequestId()), req, nil, cs.s.now().Sub(now))
	}
	cs.observe(now, nil)
}

// observe counts a call that arrived at now and ended with f (nil: it
// succeeded) in deltadb_grpc_calls_total, as a Process call.
func (cs *callServer) observe(now time.Time, f *callFailure) {
	if m := cs.s.metrics; m != nil {
		var err error
		if f != nil {
			err = f.st.Err()
		}
		m.observe(pb.ProcessingWorker_Process_FullMethodName, now, err)
	}
}

// cancel ends the context of call seq, if it still runs.
func (cs *callServer) cancel(seq uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cancel := cs.running[seq]; cancel != nil {
		cancel()
	}
}

// answer sends the answer to call seq: resp, or failure f. A send that
// fails means the stream ended, which the main worker sees for itself.
func (cs *callServer) answer(seq uint64, resp *pb.WorkerResponse, f *callFailure) {
	if f != nil {
		b, err := proto.Marshal(f.st.Proto())
		if err != nil {
			b, _ = proto.Marshal(status.New(codes.Internal, "worker could not encode its status").Proto())
		}
		resp = &pb.WorkerResponse{Status: b, Handled: f.handled, CurrentVersion: f.version}
	}
	resp.Seq = seq
	cs.sendMu.Lock()
	defer cs.sendMu.Unlock()
	if !cs.sendClosed {
		cs.stream.Send(resp) //nolint:errcheck // see above
	}
}
