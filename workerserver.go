package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// workerServer serves ProcessingWorker over gRPC for a remote worker. Only
// calls signed with the call key of the worker's current subscription are
// served; without one (never subscribed, or the worker token expired) every
// call is Unauthenticated.
type workerServer struct {
	pb.UnimplementedProcessingWorkerServer
	w   *worker
	now func() time.Time
	sub atomic.Pointer[subscription]
	// metrics counts each call of a Calls stream as a Process call, so
	// deltadb_grpc_calls_total counts calls, not streams (nil: none).
	metrics *grpcMetrics
	// maxMsg is the largest frame a frame link takes (framelink.go):
	// -grpc-max-recv-msg-size.
	maxMsg int
	// frameIdle and frameWait replace the frame link's (tests).
	frameIdle, frameWait time.Duration

	// quit is closed by stop, when the node stops: Calls streams finish
	// the calls they hold and end (callstream.go).
	quitOnce, stopOnce sync.Once
	quit               chan struct{}
	// streams counts the receivers of Calls streams; the node waits for
	// them once its gRPC server has stopped.
	streams sync.WaitGroup
}

// quitting returns the channel stop closes.
func (s *workerServer) quitting() chan struct{} {
	s.quitOnce.Do(func() { s.quit = make(chan struct{}) })
	return s.quit
}

// stop ends the Calls streams once their calls are answered; serve
// stops the gRPC server after it, then calls wait.
func (s *workerServer) stop() { s.stopOnce.Do(func() { close(s.quitting()) }) }

// wait waits for the receivers of the Calls streams.
func (s *workerServer) wait() { s.streams.Wait() }

// subscription is what a worker holds from its last Subscribe.
type subscription struct {
	token   string
	callKey []byte
	expires time.Time
	epoch   uint64
	every   time.Duration
	// calls are the sequence numbers of the main worker's calls served
	// under callKey.
	calls seqWindow
}

// handledTrailer marks an error that came from a worker's handler, so the
// main worker can tell a worker's own error from a transport failure. Its
// value says what the status message is: handledSentence, a sentence the
// client may see, or handledInternal, a fixed sentence standing for a
// failure logged at the worker. It travels as a trailer of failed calls
// only, keeping successful calls free of metadata.
const (
	handledTrailer  = "x-deltadb-handled"
	handledSentence = "sentence"
	handledInternal = "internal"
)

// Process serves one call of the main worker.
func (s *workerServer) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	now := s.now()
	var f *callFailure
	if why := s.admit(req, nil, now, nil); why != "" {
		f = refusal(why)
	} else {
		var resp *pb.WorkerResponse
		if resp, f = s.serve(ctx, req, now); f == nil {
			return resp, nil
		}
	}
	md := metadata.Pairs(handledTrailer, f.handled)
	if f.version != "" {
		md.Append(versionHeader, f.version)
	}
	grpc.SetTrailer(ctx, md)
	return nil, f.st.Err()
}

// admit checks that the main worker of the current subscription sent req
// and has not sent it before; it returns why not, or "". wire is the
// sealed call req was decoded from (callMAC.seal), or nil. With sc (a
// Calls stream's check), req's number must also be above the number of
// the stream's previous message, which it becomes. A batch of calls
// (admitBatch) is admitted on a stream only, all its calls or none.
func (s *workerServer) admit(req *pb.WorkerRequest, wire []byte, now time.Time, sc *streamCheck) string {
	sub := s.sub.Load()
	switch {
	case sub == nil:
		return "worker is not subscribed to a main worker"
	case now.After(sub.expires):
		return "worker token expired: subscribe again"
	case !sc.mac(sub, s.w.id).check(req, wire, now):
		return "call is not signed by the main worker"
	case len(req.GetBatch()) > 0:
		return admitBatch(sub, req, sc)
	case sc != nil && req.GetSeq() <= sc.last:
		return "call out of order: its sequence number is not above the stream's last"
	case !sub.calls.accept(req.GetSeq()):
		return "call replayed: its sequence number was seen before"
	}
	if sc != nil {
		sc.last = req.GetSeq()
	}
	return ""
}

// admitBatch checks the calls of batch, a signed message of the Calls
// stream (sc) that carries several (pb.WorkerRequest.batch): the message
// holds nothing but them, its signature and its time; there are at most
// maxCallBatch; each is a plain call, numbered above the one before it
// (the first above the stream's last), and none was seen before. The
// last number becomes the stream's.
func admitBatch(sub *subscription, batch *pb.WorkerRequest, sc *streamCheck) string {
	calls := batch.GetBatch()
	switch {
	case sc == nil:
		return "a batch of calls is only accepted on the Calls stream"
	case len(calls) > maxCallBatch:
		return "batch of calls too large"
	case batch.GetOp() != nil || batch.GetEpoch() != 0 || batch.GetOwner() || batch.GetRequestId() != "" ||
		batch.GetSeq() != 0 || batch.GetTimeoutNanos() != 0 || batch.GetCancelSeq() != 0:
		return "batch of calls carries a call's fields"
	}
	last := sc.last
	for _, c := range calls {
		switch {
		case len(c.GetSignature()) > 0 || c.GetIssuedAtUnixNano() != 0 || len(c.GetBatch()) > 0:
			return "call in a batch carries a signature, a time or a batch of its own"
		case c.GetSeq() <= last:
			return "call out of order: its sequence number is not above the stream's last"
		}
		last = c.GetSeq()
	}
	for _, c := range calls {
		// A number refused here was seen or is too old: the batch is
		// refused whole, and the numbers before it stay marked (the main
		// worker numbers each call once: none is sent again).
		if !sub.calls.accept(c.GetSeq()) {
			return "call replayed: its sequence number was seen before"
		}
	}
	sc.last = last
	return ""
}

// streamCheck is what a Calls stream's receiver keeps to admit its
// messages: the last number read, and the signature checker of the
// subscription it was built for.
type streamCheck struct {
	last    uint64
	sub     *subscription
	checker *callMAC
}

// mac returns the signature checker for sub: the stream's own while the
// subscription stays the same, a new one without a stream (sc nil).
func (sc *streamCheck) mac(sub *subscription, workerID string) *callMAC {
	if sc == nil {
		return newCallMAC(sub.callKey, workerID)
	}
	if sc.sub != sub {
		sc.sub, sc.checker = sub, newCallMAC(sub.callKey, workerID)
	}
	return sc.checker
}

// callFailure is a failed call as the worker answers it: the status, and
// the handledTrailer and versionHeader values that go with it.
type callFailure struct {
	st      *status.Status
	handled string
	version string
}

// refusal is the answer to a call the worker does not accept from this
// caller.
func refusal(why string) *callFailure {
	return &callFailure{st: status.New(codes.Unauthenticated, why), handled: handledInternal}
}

// serve runs an admitted call that arrived at now.
func (s *workerServer) serve(ctx context.Context, req *pb.WorkerRequest, now time.Time) (*pb.WorkerResponse, *callFailure) {
	ctx = withRequestID(ctx, req.GetRequestId())
	resp, err := s.w.Process(ctx, req)
	s.logCall(ctx, req, err, s.now().Sub(now))
	if err != nil {
		return nil, s.failure(ctx, err)
	}
	return resp, nil
}

// msgWorkerCall is the message of a worker's line per served call.
const msgWorkerCall = "worker request"

// logCall writes one debug line per served call, carrying the request ID
// (from ctx) that the main worker's access line has: the operation, the
// gRPC code and the time taken; never the database, key or document.
func (s *workerServer) logCall(ctx context.Context, req *pb.WorkerRequest, err error, took time.Duration) {
	if !s.w.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	code := codes.OK
	if err != nil {
		code = grpcCode(err)
	}
	s.w.log.LogAttrs(ctx, slog.LevelDebug, msgWorkerCall, slog.String(attrWorker, s.w.id),
		slog.String("op", req.GetOp().GetOperation().String()), slog.Bool("owner", req.GetOwner()),
		slog.String("code", code.String()), slog.Float64(attrDurationMS, durationMS(took)))
}

// failure turns the worker's error into the status the main worker gets:
// its code, and the client sentence it carries or, for an internal
// failure, a fixed sentence while the cause is logged here with the
// request ID. Paths, object keys and wrapped chains stay at the worker.
func (s *workerServer) failure(ctx context.Context, err error) *callFailure {
	f := &callFailure{handled: handledSentence}
	if pe := (*preconditionError)(nil); errors.As(err, &pe) {
		f.version = pe.current
	}
	rid := requestIDFrom(ctx)
	msg := publicMessage(err, rid)
	if _, ok := clientMessage(err); !ok {
		f.handled = handledInternal
		line, level := "process failed", slog.LevelError
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			// The main worker cancelled the call (its client went
			// away) or this worker is stopping: nothing failed here,
			// and the answer is Canceled (callServer.start).
			line, level = "call cancelled", slog.LevelInfo
		case retrySoon(err):
			line, level = "process refused", slog.LevelWarn // busy: nothing failed
		}
		s.w.log.Log(ctx, level, line, attrWorker, s.w.id, attrErr, err)
	}
	f.st = withReason(status.New(grpcCode(err), msg), err)
	if d := errorDetail(err, msg); len(d.Errors) > 0 {
		// A schema's violations travel to the main worker for the
		// client's "errors".
		if ds, derr := f.st.WithDetails(d); derr == nil {
			f.st = ds
		}
	}
	return f
}
