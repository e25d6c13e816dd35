package main

import (
	"context"
	"encoding/hex"
	"io"
	"strconv"
	"time"

	pb "deltadatabase/proto"
)

// requestInfo is what a request's context carries about the request: its
// ID and, once authenticated, its principal's client ID for the access
// log. One value holds both, so that a REST request adds one context
// value, not two. The REST server writes principal from the request's
// own goroutine only.
type requestInfo struct {
	id        string
	principal string
	// who is the principal itself, for the audit line (audit.go).
	who principal
	// keys are the entity keys a body named (PUT of many, get many), at
	// most maxAuditKeys; keysTotal is their number when there were more.
	keys      []string
	keysTotal int
	// etagBefore is the ETag value of the version a write replaced or
	// deleted, as its worker answered it.
	etagBefore string
	// etag holds the ETag header's value of a GET's answer (etagHeader),
	// so that the header costs no slice of its own.
	etag [1]string
	// answer receives the entity GET's answer when the in-process
	// worker's cache holds it (answerSpace), so that it costs no
	// allocation of its own.
	answer pb.WorkerResponse
}

// requestInfoKey is the context key of a request's requestInfo.
type requestInfoKey struct{}

// withRequestID returns ctx carrying request ID id: the X-Request-ID of a
// REST request, passed on to workers so that every log line of one request
// carries the same ID.
func withRequestID(ctx context.Context, id string) context.Context {
	return withRequestInfo(ctx, &requestInfo{id: id})
}

// withRequestInfo returns ctx carrying in.
func withRequestInfo(ctx context.Context, in *requestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, in)
}

// requestCtx is a context carrying a requestInfo of its own, as
// withRequestInfo's does: the REST server keeps it inside the state of
// the request, so that a request's context costs no allocation of its
// own. Its parent must be set before it is used; its cancellation is its
// parent's, which context.WithCancel below it recognises, as it does a
// context.WithValue's.
type requestCtx struct {
	context.Context
	info requestInfo
}

// Value is the request's info for requestInfoKey, else the parent's value.
func (c *requestCtx) Value(key any) any {
	if _, ok := key.(requestInfoKey); ok {
		return &c.info
	}
	return c.Context.Value(key)
}

// answerSpace is the zero response a request's entity GET may be answered
// in (dataPlane.get's into): its info's, when ctx carries one, else nil.
// A request reads at most one entity this way: the GET of one entity.
func answerSpace(ctx context.Context) *pb.WorkerResponse {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		return &in.answer
	}
	return nil
}

// requestIDFrom returns the request ID ctx carries, "" if none.
func requestIDFrom(ctx context.Context) string {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		return in.id
	}
	return ""
}

// notePrincipal records who the request runs as, for the access log and
// the audit line.
func notePrincipal(ctx context.Context, p principal) {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		in.principal, in.who = p.clientID, p
	}
}

// noteETagBefore records the ETag value of the version a write replaced
// or deleted ("" for none), for the audit line.
func noteETagBefore(ctx context.Context, etag string) {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		in.etagBefore = etag
	}
}

// maxAuditKeys is the most entity keys of one body an audit line names.
const maxAuditKeys = 1000

// noteKeys records the entity keys a request's body names, for the audit
// line.
func noteKeys(ctx context.Context, keys []string) {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		if len(keys) > maxAuditKeys {
			in.keysTotal, keys = len(keys), keys[:maxAuditKeys]
		}
		in.keys = keys
	}
}

// noteKeyCount records the first entity keys of a body too long to hold
// (an import's lines, at most maxAuditKeys of them) and how many it named
// in all, for the audit line.
func noteKeyCount(ctx context.Context, first []string, total int) {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		in.keys = first
		if total > len(first) {
			in.keysTotal = total
		}
	}
}

// randomIDPrefix is 8 random hex digits, so that the request IDs of
// several main workers (or restarts) do not collide in shared logs.
func randomIDPrefix() string {
	b := make([]byte, 4)
	if _, err := io.ReadFull(cryptoRand, b); err != nil {
		return "r" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b)
}
