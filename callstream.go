package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
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
// It pings a link that has sent nothing for callPingAfter and closes it
// when callPingTimeout passes without a byte back: a worker stopped
// (SIGSTOP) or a network that drops its packets leaves the TCP
// connection up, and the calls on it would wait for callWait each; with
// the connection closed they fail as transport failures, retried on the
// next worker.
func callLinkDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(callStreamWindow), grpc.WithInitialConnWindowSize(callConnWindow),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: callPingAfter, Timeout: callPingTimeout, PermitWithoutStream: true})}
}

// Keepalive of the main worker's links to its workers.
const (
	// callPingAfter is gRPC's least client ping interval (it raises a
	// lower one).
	callPingAfter = 10 * time.Second
	// callPingTimeout is as long as a worker's heartbeats may stop
	// before it leaves the rotation.
	callPingTimeout = heartbeatMisses * heartbeatEvery
	// callMinPing is the least ping interval a worker's server takes
	// from the main worker: below callPingAfter, so that pings a little
	// early by the clocks are not refused as a flood (which closes the
	// link).
	callMinPing = callPingAfter / 2
)

// callServerOptions are the options of a worker's gRPC server, which
// serves the Calls streams, beyond the others of every server of ours:
// callCodec, the windows above and, replacing grpcKeepalive's, a ping
// policy that takes the main worker's keepalive. They go after the
// others: gRPC keeps the last of an option given twice.
func callServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(callCodec{}),
		grpc.InitialWindowSize(callStreamWindow), grpc.InitialConnWindowSize(callConnWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: callMinPing, PermitWithoutStream: true})}
}

// callSigner numbers and seals the messages of a link's streams: the
// main worker's stub of the worker (remoteWorker).
type callSigner interface {
	// number returns the subscription's next call number.
	number() uint64
	// seal timestamps and signs req, returning it sealed (callMAC.seal).
	seal(req *pb.WorkerRequest) ([]byte, error)
}

// maxCallBatch is the most calls one message of a Calls stream carries;
// a worker refuses a larger batch.
const maxCallBatch = 64

// leadRounds is how many messages a caller that sends for the others
// (callStream.lead) sends before it hands the sending on to a waiting
// caller: its own answer waits meanwhile.
const leadRounds = 4

// callAnswer is what a caller on the stream receives: the worker's
// answer, or the error that ended the stream; or, with lead, no answer
// but the turn to send the waiting messages (callStream.lead).
type callAnswer struct {
	resp *pb.WorkerResponse
	err  error
	lead bool
}

// outCall is a message waiting to be sent on a stream: a call, whose
// caller waits on ch, or a cancel message (ch nil).
type outCall struct {
	req *pb.WorkerRequest
	ch  chan callAnswer
	// size is about req's size in a batch (enqueue).
	size int
	// Under the stream's qmu: taken once a sender took it from the queue
	// and gave it its number seq; lead once its caller was told to send.
	seq   uint64
	taken bool
	lead  bool
}

// callLink is the main worker's side of the Calls streams to one worker.
// It opens a stream on the first call and again after one ends, and
// closes with the worker's registration, waiting for its goroutines.
type callLink struct {
	id     string
	client pb.ProcessingWorkerClient
	// frames dials the worker's frame link (framelink.go); nil: the
	// Calls stream only. noFrames, held by the opening token (stream),
	// is set once the worker turned the frame protocol down (a worker
	// from before it).
	frames   func(ctx context.Context) (*frameConn, error)
	noFrames bool
	// wait bounds a call whose context has no deadline: callWait.
	wait time.Duration
	// most is the most calls one message carries: maxCallBatch, or 1 for
	// a worker that did not subscribe as reading batches (one from before
	// them refuses a batch, each call of it answered so).
	most int
	// batchMax bounds the bytes of calls one message carries together:
	// batchBytes of the main worker's message limit.
	batchMax int
	ctx      context.Context
	cancel   context.CancelFunc
	// wg counts the goroutines of the link: each stream's receiver and
	// the senders of cancel messages.
	wg sync.WaitGroup

	// opening holds a token while a call opens a stream; the others
	// wait for it as long as they may wait (stream).
	opening chan struct{}

	mu     sync.Mutex
	cur    *callStream
	closed bool
}

// newCallLink returns the link to worker id over client, sending calls
// in batches if batched; nothing is sent before the first call.
func newCallLink(id string, client pb.ProcessingWorkerClient, batched bool) *callLink {
	ctx, cancel := context.WithCancel(context.Background())
	most := 1
	if batched {
		most = maxCallBatch
	}
	return &callLink{id: id, client: client, wait: callWait, most: most, batchMax: maxBatchBytes, ctx: ctx, cancel: cancel,
		opening: make(chan struct{}, 1)}
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

// reset ends the open stream, if any: the calls waiting on it fail as
// lost under way (errCallLost), and the next call opens another.
func (l *callLink) reset() {
	l.mu.Lock()
	cs := l.cur
	l.mu.Unlock()
	if cs != nil {
		cs.cancel()
	}
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
	stream callConn
	cancel context.CancelFunc
	most   int // the link's: the most calls to a message
	// batchMax is the link's: the most bytes of calls to a message.
	batchMax int

	// Group sending: a caller queues its message and, when no other
	// caller is sending, sends it itself; one that is sending takes every
	// message queued meanwhile and sends them as one (a batch: one
	// signature, one frame, one wake-up of the worker's receiver). A lone
	// call goes out at once, with no timer. qmu guards queue, sending,
	// sealed and each outCall's taken, seq and lead; lock order qmu, mu.
	qmu     sync.Mutex
	queue   []*outCall
	sending bool
	// sealed is the number of the last call sealed; sealWait is signalled
	// when it moves. A caller that gives up after its call was taken
	// waits for it to be sealed: the seal reads the request, whose bytes
	// (a write's document) are the caller's.
	sealed   uint64
	sealWait sync.Cond
	// The sender's own, under sending: the messages it takes and the
	// batch's calls.
	taken []*outCall
	reqs  []*pb.WorkerRequest

	mu      sync.Mutex
	pending map[uint64]chan callAnswer
	err     error // set once the stream ended; no call is added after
}

// callConn is the transport of a link's calls: a Calls stream
// (grpcCallConn) or a frame link (frameConn).
type callConn interface {
	// send sends one sealed message; its caller is the stream's only
	// sender. A failure is errTransport, errCallLost too if part of the
	// message may have reached the worker.
	send(wire []byte) error
	// recv returns the next answer; its caller is the stream's receiver.
	recv() (*pb.WorkerResponse, error)
}

// grpcCallConn is a Calls stream as a callConn.
type grpcCallConn struct {
	st grpc.BidiStreamingClient[pb.WorkerRequest, pb.WorkerResponse]
	// out carries the sealed bytes into SendMsg (gRPC keeps the bytes,
	// not the message).
	out sealedCall
}

func (g *grpcCallConn) send(wire []byte) error {
	g.out.b = wire
	err := g.st.SendMsg(&g.out)
	g.out.b = nil
	if err != nil {
		return fmt.Errorf("send on call stream: %s: %w", status.Convert(err).Message(), errTransport)
	}
	return nil
}

func (g *grpcCallConn) recv() (*pb.WorkerResponse, error) { return g.st.Recv() }

// stream returns the open stream, opening one if there is none. Opening
// waits for the connection (gRPC reconnecting to the worker, a TLS
// handshake the worker never answers) at most as long as ctx allows and,
// for a call bounded by timeout (callWait, set just before), as long as
// the call may wait: then errWorkerSlow. The calls that come meanwhile
// wait for that opening within their own bounds, not on mu.
func (l *callLink) stream(ctx context.Context, timeout <-chan time.Time) (*callStream, error) {
	if cs, err := l.open(); cs != nil || err != nil {
		return cs, err
	}
	var expire time.Time
	if timeout != nil {
		expire = time.Now().Add(l.wait) // the timer was set just now
	}
	select {
	case l.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("worker %s: wait to open call stream: %w", l.id, status.FromContextError(ctx.Err()).Err())
	case <-timeout:
		return nil, l.slow()
	}
	defer func() { <-l.opening }()
	if cs, err := l.open(); cs != nil || err != nil {
		return cs, err // opened by the call before
	}
	octx := ctx
	if !expire.IsZero() {
		var stopTimer context.CancelFunc
		octx, stopTimer = context.WithDeadline(ctx, expire)
		defer stopTimer()
	}
	var conn callConn
	var cancel context.CancelFunc
	if l.frames != nil && !l.noFrames {
		fc, err := l.frames(octx)
		if err != nil {
			if ctx.Err() == nil && octx.Err() != nil {
				return nil, l.slow()
			}
			return nil, fmt.Errorf("worker %s: open frame link: %w: %w", l.id, err, errTransport)
		}
		if fc == nil {
			l.noFrames = true
		} else {
			conn, cancel = fc, fc.close
		}
	}
	if conn == nil {
		sctx, scancel := context.WithCancel(l.ctx)
		stop := context.AfterFunc(octx, scancel)
		st, err := l.client.Calls(sctx, grpc.ForceCodecV2(callCodec{}))
		if !stop() || err != nil {
			scancel()
			switch {
			case ctx.Err() != nil:
				err = ctx.Err()
			case octx.Err() != nil:
				return nil, l.slow()
			}
			return nil, fmt.Errorf("worker %s: open call stream: %s: %w", l.id, status.Convert(err).Message(), errTransport)
		}
		conn, cancel = &grpcCallConn{st: st}, scancel
	} else {
		// The link's close ends the frame link too.
		stop := context.AfterFunc(l.ctx, cancel)
		cancel = func() { stop(); conn.(*frameConn).close() }
	}
	cs := &callStream{stream: conn, cancel: cancel, most: l.most, batchMax: l.batchMax, pending: map[uint64]chan callAnswer{}}
	cs.sealWait.L = &cs.qmu
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		cancel()
		return nil, fmt.Errorf("worker %s: link closed: %w", l.id, errTransport)
	}
	l.cur = cs
	l.wg.Go(func() { l.receive(cs) })
	return cs, nil
}

// open returns the open stream, or an error once the link is closed;
// neither when a stream is to be opened.
func (l *callLink) open() (*callStream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("worker %s: link closed: %w", l.id, errTransport)
	}
	return l.cur, nil
}

// slow is the error of a call that waited l.wait for its answer.
func (l *callLink) slow() error {
	return fmt.Errorf("worker %s: no answer within %v: %w", l.id, l.wait, errWorkerSlow)
}

// receive hands each answer on cs to its caller until the stream ends,
// then fails every call still waiting and forgets the stream, so that
// the next call opens another.
func (l *callLink) receive(cs *callStream) {
	for {
		resp, err := cs.stream.recv()
		if err != nil {
			l.ended(cs, err)
			return
		}
		if b := resp.GetBatch(); len(b) > 0 {
			for _, r := range b {
				cs.deliver(r)
			}
			continue
		}
		cs.deliver(resp)
	}
}

// deliver hands resp to the call it answers. An answer to no waiting
// call (its caller gave up) is dropped.
func (cs *callStream) deliver(resp *pb.WorkerResponse) {
	cs.mu.Lock()
	ch := cs.pending[resp.GetSeq()]
	delete(cs.pending, resp.GetSeq())
	cs.mu.Unlock()
	if ch != nil {
		ch <- callAnswer{resp: resp} // buffered, and the only send once pending: never blocks
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
	// The calls waiting were sent: the worker may have run them.
	lost := fmt.Errorf("%w, with the call under way: %w", fail, errCallLost)
	for _, ch := range waiting {
		ch <- callAnswer{err: lost}
	}
	cs.cancel()
}

// call sends req on the link's stream, numbered and sealed by sg, and
// waits for its answer, for the stream's end or for ctx.
func (l *callLink) call(ctx context.Context, req *pb.WorkerRequest, sg callSigner) (*pb.WorkerResponse, error) {
	var timeout <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutNanos = max(1, int64(time.Until(dl)))
	} else {
		// No deadline of its own: bounded by callWait, on the main
		// worker only (the cancel message ends the worker's part).
		tm := callTimers.Get().(*time.Timer)
		tm.Reset(l.wait)
		defer func() { tm.Stop(); callTimers.Put(tm) }()
		timeout = tm.C
	}
	cs, err := l.stream(ctx, timeout)
	if err != nil {
		return nil, err
	}
	c := &outCall{req: req, ch: make(chan callAnswer, 1)}
	if cs.enqueue(c) {
		cs.lead(sg)
	}
	for {
		giveUp := error(nil)
		select {
		case a := <-c.ch:
			if a.lead {
				cs.lead(sg)
				continue
			}
			if a.err == nil && len(a.resp.GetStatus()) > 0 && ctx.Err() != nil {
				// The worker failed because the call's deadline passed
				// there too: the caller's own context says why.
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			return a.resp, a.err
		case <-ctx.Done():
			giveUp = status.FromContextError(ctx.Err()).Err()
		case <-timeout:
			giveUp = l.slow()
		}
		seq, lead := cs.abandon(c)
		if lead {
			cs.lead(sg)
		}
		if seq != 0 && cs.forget(seq) {
			l.spawn(func() { cs.sendCancel(seq, sg) })
		}
		return nil, giveUp
	}
}

// callWait bounds a call of a worker whose context has no deadline (a
// REST request's has none; a gRPC client's may): one whose worker does
// not answer (stopped, a link that holds its bytes, a handler stuck on
// storage) fails with errWorkerSlow (503) instead of holding its caller,
// and its room in the read budget, for ever. A quarter of the REST
// answer's limit (restWriteTimeout): a read may also wait as long for
// room in the read budget (holdRead), and its 503 is still written in
// time. A connection that stops answering altogether fails sooner, at
// its keepalive (callLinkDialOptions).
const callWait = restWriteTimeout / 4

// callTimers are the timers of callWait, reused: a timer stopped under Go
// 1.23's rules delivers nothing after, and a call's own costs a few
// hundred nanoseconds of the hop.
var callTimers = sync.Pool{New: func() any {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	return tm
}}

// enqueue queues c to be sent; it reports whether the caller is to send
// it (lead), no other caller being at it.
func (cs *callStream) enqueue(c *outCall) bool {
	// The number it gets, and a batch's field around it, add a few bytes.
	c.size = proto.Size(c.req) + 32
	cs.qmu.Lock()
	defer cs.qmu.Unlock()
	cs.queue = append(cs.queue, c)
	if cs.sending {
		return false
	}
	cs.sending = true
	return true
}

// abandon takes back call c, whose caller gives up. Still queued, it
// leaves the queue (and the caller is to send the others if it was told
// to: lead); taken, it returns its number once it is sealed.
func (cs *callStream) abandon(c *outCall) (seq uint64, lead bool) {
	cs.qmu.Lock()
	defer cs.qmu.Unlock()
	if !c.taken {
		if i := slices.Index(cs.queue, c); i >= 0 {
			cs.queue = slices.Delete(cs.queue, i, i+1)
		}
		return 0, c.lead
	}
	for cs.sealed < c.seq {
		cs.sealWait.Wait()
	}
	return c.seq, false
}

// lead sends the queued messages, up to the link's most to a message, until
// none is left, then lets the next caller send. After leadRounds messages
// it hands the sending to the first waiting caller instead, whose answer
// has not come yet either.
//
// With calls in flight on the stream it first yields the processor once
// (no timer): the handlers that are ready to run then queue their calls
// before it takes the queue. Without that yield a send is so short (gRPC
// only queues the frame) that calls almost never wait for one: 1.03 calls
// per message at 32 callers. A lone call on an idle stream never yields,
// nor does a call to a worker that gets every call alone.
func (cs *callStream) lead(sg callSigner) {
	if cs.most > 1 {
		cs.mu.Lock()
		busy := len(cs.pending) > 0
		cs.mu.Unlock()
		if busy {
			runtime.Gosched()
		}
	}
	for round := 0; ; round++ {
		cs.qmu.Lock()
		if len(cs.queue) == 0 {
			cs.sending = false
			cs.qmu.Unlock()
			return
		}
		if round >= leadRounds {
			if i := slices.IndexFunc(cs.queue, func(c *outCall) bool { return c.ch != nil }); i >= 0 {
				next := cs.queue[i]
				next.lead = true
				next.ch <- callAnswer{lead: true} // queued, so its channel is empty
				cs.qmu.Unlock()
				return
			}
			// Only cancel messages wait, with no caller: send them too.
		}
		n := batchLen(cs.queue, cs.most, cs.batchMax)
		cs.taken = append(cs.taken[:0], cs.queue[:n]...)
		rest := copy(cs.queue, cs.queue[n:])
		clear(cs.queue[rest:])
		cs.queue = cs.queue[:rest]
		cs.mu.Lock()
		failed := cs.err
		for _, c := range cs.taken {
			c.taken, c.seq = true, sg.number()
			c.req.Seq = c.seq
			if failed == nil && c.ch != nil {
				cs.pending[c.seq] = c.ch
			}
		}
		cs.mu.Unlock()
		cs.qmu.Unlock()
		if failed != nil {
			cs.markSealed()
			cs.fail(failed)
			continue
		}
		cs.transmit(sg)
	}
}

// batchLen is how many of the queued messages, from the first, go out as
// one: at most most, and at most max bytes of them unless the first is
// larger alone. The worker refuses a message over its limit
// (-grpc-max-recv-msg-size), and a batch of writes that passed it would
// fail every one of them.
func batchLen(queue []*outCall, most, max int) int {
	n, size := 0, 0
	for _, c := range queue[:min(len(queue), most)] {
		if size += c.size; n > 0 && size > max {
			break
		}
		n++
	}
	return n
}

// transmit seals the taken messages, one alone or all as a batch, and
// sends them. A failed Send is a transport failure: the stream is broken,
// and its receiver fails the other calls.
func (cs *callStream) transmit(sg callSigner) {
	msg := cs.taken[0].req
	if len(cs.taken) > 1 {
		cs.reqs = cs.reqs[:0]
		for _, c := range cs.taken {
			cs.reqs = append(cs.reqs, c.req)
		}
		msg = &pb.WorkerRequest{Batch: cs.reqs}
	}
	wire, err := sg.seal(msg)
	clear(cs.reqs)
	cs.markSealed()
	if err == nil {
		err = cs.stream.send(wire)
	}
	if err != nil {
		for _, c := range cs.taken {
			if c.ch != nil && cs.forget(c.seq) {
				c.ch <- callAnswer{err: err}
			}
		}
	}
	clear(cs.taken)
}

// fail answers every taken call with err: the stream had ended.
func (cs *callStream) fail(err error) {
	for _, c := range cs.taken {
		if c.ch != nil {
			c.ch <- callAnswer{err: err}
		}
	}
	clear(cs.taken)
}

// markSealed records that the taken messages are sealed (or will never
// be): their callers may leave.
func (cs *callStream) markSealed() {
	cs.qmu.Lock()
	for _, c := range cs.taken {
		cs.sealed = max(cs.sealed, c.seq)
	}
	cs.qmu.Unlock()
	cs.sealWait.Broadcast()
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
func (cs *callStream) sendCancel(seq uint64, sg callSigner) {
	if cs.enqueue(&outCall{req: &pb.WorkerRequest{CancelSeq: seq}}) {
		cs.lead(sg)
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

// callServer is the worker's side of one link: a Calls stream or a frame
// link.
type callServer struct {
	s      *workerServer
	stream callPeer
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
	return s.serveCalls(stream)
}

// callPeer is the worker's side of a link's transport: a Calls stream
// (grpc.BidiStreamingServer) or a frame link (frameServerConn).
type callPeer interface {
	// RecvMsg reads the next message into a *sealedCall.
	RecvMsg(m any) error
	// Send sends one answer; one sender at a time (callServer.sendMu).
	Send(*pb.WorkerResponse) error
	// Context ends when the link does.
	Context() context.Context
}

// serveCalls serves the main worker's calls on one link until the main
// worker closes it or the node stops; either way the calls already read
// finish and are answered first.
func (s *workerServer) serveCalls(stream callPeer) error {
	// A link opened after stop began is refused before anything is read:
	// otherwise its receiver could serve a call before the select below
	// sees the node quitting.
	select {
	case <-s.quitting():
		return status.Error(codes.Unavailable, "worker is shutting down")
	default:
	}
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
// starting its calls, until the stream or the handler ends. The answers
// to a message's calls that the cache holds go back together, as one
// message for a batch.
func (cs *callServer) receive() error {
	ctx := cs.stream.Context()
	var sc streamCheck
	var in sealedCall // each message's bytes, in turn
	var one [1]*pb.WorkerRequest
	var answers []*pb.WorkerResponse
	size := 0 // of answers, about (answerBytes)
	flush := func() {
		cs.send(answers)
		clear(answers)
		answers, size = answers[:0], 0
	}
	// add holds resp for the next flush, first flushing what is held if
	// the batch would grow past its bounds: the main worker refuses a
	// message over its limit (-grpc-max-recv-msg-size), which would end
	// the link and every call on it.
	maxBytes := batchBytes(cmp.Or(cs.s.maxMsg, defaultMaxMsg))
	add := func(resp *pb.WorkerResponse) {
		n := answerBytes(resp)
		if len(answers) > 0 && (len(answers) >= maxCallBatch || size+n > maxBytes) {
			flush()
		}
		answers = append(answers, resp)
		size += n
	}
	defer flush()
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
		calls := req.GetBatch()
		if len(calls) == 0 {
			one[0] = req
			calls = one[:]
		}
		if why != "" {
			for _, c := range calls[:min(len(calls), maxCallBatch)] {
				add(cs.failed(c.GetSeq(), refusal(why)))
			}
			flush()
			continue
		}
		for _, c := range calls {
			if seq := c.GetCancelSeq(); seq != 0 {
				cs.cancel(seq)
				continue
			}
			if resp, ok := cs.s.w.cached(c); ok {
				cs.served(ctx, c, now)
				resp.Seq = c.GetSeq()
				add(resp)
				continue
			}
			select {
			case cs.slots <- struct{}{}:
			default:
				// Every slot is taken: answer what is ready before waiting.
				flush()
				select {
				case cs.slots <- struct{}{}:
				case <-ctx.Done():
					return nil
				}
			}
			if !cs.start(ctx, c, now) {
				return nil
			}
		}
		flush()
	}
}

// maxBatchBytes bounds the calls one message of the main worker carries
// together, and the answers one message of the worker carries (about:
// outCall.size, answerBytes), well under the other side's message limit;
// a call or answer larger alone goes alone, as it would anyway.
const maxBatchBytes = 256 << 10

// batchBytes is the bound of a batch's bytes under a message limit of
// maxMsg (-grpc-max-recv-msg-size, taken to be the cluster's): at most
// half of it, leaving room for what the estimates leave out, so calls
// each within the limit are never refused for travelling together.
func batchBytes(maxMsg int) int { return min(maxBatchBytes, maxMsg/2) }

// defaultMaxMsg is -grpc-max-recv-msg-size's default, for a worker server
// built without it (tests).
const defaultMaxMsg = 4 << 20

// answerBytes is about the size of resp encoded in a batch: its variable
// fields and a bound on the rest.
func answerBytes(resp *pb.WorkerResponse) int {
	return len(resp.GetResult()) + len(resp.GetVersion()) + len(resp.GetStatus()) + len(resp.GetCurrentVersion()) +
		len(resp.GetPreviousVersion()) + 64
}

// next reads the stream's next request into in, its bytes held until
// freed (admit checks a sealed call's signature over them), and returns
// their decoding.
func (cs *callServer) next(in *sealedCall) (*pb.WorkerRequest, error) {
	if err := cs.stream.RecvMsg(in); err != nil {
		return nil, err
	}
	// On a frame link in.b is the link's read buffer, valid until the
	// next read; the request outlives it (a call runs in its own
	// goroutine while the next message is read), which holds because
	// proto.Unmarshal copies bytes fields (a write's payload) and strings
	// out of in.b.
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

// answer sends the answer to call seq: resp, or failure f.
func (cs *callServer) answer(seq uint64, resp *pb.WorkerResponse, f *callFailure) {
	if f != nil {
		resp = cs.failed(seq, f)
	}
	resp.Seq = seq
	cs.sendMu.Lock()
	defer cs.sendMu.Unlock()
	if !cs.sendClosed {
		cs.stream.Send(resp) //nolint:errcheck // a send that fails means the stream ended, which the main worker sees for itself
	}
}

// failed is the answer to call seq that failed with f.
func (cs *callServer) failed(seq uint64, f *callFailure) *pb.WorkerResponse {
	b, err := proto.Marshal(f.st.Proto())
	if err != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, "worker could not encode its status").Proto())
	}
	return &pb.WorkerResponse{Seq: seq, Status: b, Handled: f.handled, CurrentVersion: f.version}
}

// send sends answers, each naming its call: one as it is, several as one
// message (pb.WorkerResponse.batch).
func (cs *callServer) send(answers []*pb.WorkerResponse) {
	switch len(answers) {
	case 0:
	case 1:
		cs.answer(answers[0].GetSeq(), answers[0], nil)
	default:
		cs.sendMu.Lock()
		defer cs.sendMu.Unlock()
		if !cs.sendClosed {
			cs.stream.Send(&pb.WorkerResponse{Batch: answers}) //nolint:errcheck // as in answer
		}
	}
}
