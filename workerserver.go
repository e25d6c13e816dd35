package main

import (
	"context"
	"errors"
	"log/slog"
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
}

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
	sub := s.sub.Load()
	now := s.now()
	switch {
	case sub == nil:
		return nil, s.refuse(ctx, "worker is not subscribed to a main worker")
	case now.After(sub.expires):
		return nil, s.refuse(ctx, "worker token expired: subscribe again")
	case !verifyCall(sub.callKey, s.w.id, req, now):
		return nil, s.refuse(ctx, "call is not signed by the main worker")
	case !sub.calls.accept(req.GetSeq()):
		return nil, s.refuse(ctx, "call replayed: its sequence number was seen before")
	}
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

// refuse answers a call the worker does not accept from this caller.
func (s *workerServer) refuse(ctx context.Context, why string) error {
	grpc.SetTrailer(ctx, metadata.Pairs(handledTrailer, handledInternal))
	return status.Error(codes.Unauthenticated, why)
}

// failure turns the worker's error into the status the main worker gets:
// its code, and the client sentence it carries or, for an internal
// failure, a fixed sentence while the cause is logged here with the
// request ID. Paths, object keys and wrapped chains stay at the worker.
func (s *workerServer) failure(ctx context.Context, err error) error {
	md := metadata.Pairs(handledTrailer, handledSentence)
	if pe := (*preconditionError)(nil); errors.As(err, &pe) && pe.current != "" {
		md.Append(versionHeader, pe.current)
	}
	rid := requestIDFrom(ctx)
	msg := publicMessage(err, rid)
	if _, ok := clientMessage(err); !ok {
		md.Set(handledTrailer, handledInternal)
		s.w.log.ErrorContext(ctx, "process failed", attrWorker, s.w.id, attrErr, err)
	}
	grpc.SetTrailer(ctx, md)
	st := status.New(grpcCode(err), msg)
	if d := errorDetail(err, msg); len(d.Errors) > 0 {
		// A schema's violations travel to the main worker for the
		// client's "errors".
		if ds, derr := st.WithDetails(d); derr == nil {
			st = ds
		}
	}
	return st.Err()
}
