package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Each names one kind of failure; errorTable says, in one
// place, what each means to a REST client (status), a gRPC client (code),
// a person (sentence) and the key index (whether a failed write left
// storage as it was). Backends set them at the storage boundary:
// os.ErrNotExist and S3 NoSuchKey both become errNotFound.
var (
	// errNotFound: the object, entity, schema or key does not exist (404).
	errNotFound = errors.New("not found")
	// errInvalid: the caller sent something malformed (bad name, bad JSON,
	// failed validation); never retried (400).
	errInvalid = errors.New("invalid")
	// errPrecondition: a precondition on the stored object did not hold:
	// If-Match / If-None-Match, or a storage compare-and-swap (412).
	errPrecondition = errors.New("precondition failed")
	// errPatchConflict: a well-formed patch that does not apply to the
	// current document: a failed "test" operation, or a path that names
	// nothing (409).
	errPatchConflict = errors.New("patch does not apply to the document")
	// errConflict: the request conflicts with what is stored, such as
	// deleting a schema a database is still bound to (409).
	errConflict = errors.New("conflict")
	// errUnavailable: the backend or every worker could not be reached or
	// failed transiently; the request may succeed later (503).
	errUnavailable = errors.New("storage unavailable")
	// errBusy: the server's own admission limit is full (the in-flight
	// read budget, the turns to read the change log's files) and the
	// request waited its time for room: nothing failed and nothing was
	// written, the server is only busy (503). It is not errUnavailable,
	// so that a query is not planned again for it (retryFind).
	errBusy = errors.New("server busy")
	// errConfig: the backend refused us for a reason only the operator can
	// fix (wrong credentials, wrong bucket, permissions).
	errConfig = errors.New("storage configuration")
	// errCorrupt: stored bytes failed to decrypt or parse (500).
	errCorrupt = errors.New("corrupt data")
	// errUnauthenticated: no, an unknown or an expired credential (401).
	errUnauthenticated = errors.New("missing or invalid credential")
	// errForbidden: a valid credential without the permission (403).
	errForbidden = errors.New("permission denied")
	// errRateLimited: a client over the failed-authentication limit (429).
	errRateLimited = errors.New("too many failed authentications")
	// errTooManyStreams: a change stream beyond the open-stream budgets
	// (429; feed.go).
	errTooManyStreams = errors.New("too many change streams")
	// errGone: a change feed cursor older than the retention (410;
	// changes.go).
	errGone = errors.New("cursor no longer retained")
	// errTooLarge: a request body over -rest-max-body-size (413).
	errTooLarge = errors.New("request body too large")
	// errUnsupportedMedia: a body of a media type the route does not take
	// (415).
	errUnsupportedMedia = errors.New("unsupported media type")
	// errNoFeed: this server keeps no change feed (S3 storage without
	// -changes-dir): 501, since retrying cannot help.
	errNoFeed = errors.New("no change feed kept")
	// errMethod: a method the route does not serve (405).
	errMethod = errors.New("method not allowed")
	// errTransport marks a call that never reached a worker's handler (the
	// connection failed); such calls are retried on the next worker. It is
	// also errUnavailable (503) when no retry is left.
	errTransport error = workerError("worker unreachable")
	// errCallLost: the link to a worker broke (or its keepalive closed
	// it) while a call sent on it awaited its answer; the call is also
	// errTransport, but the worker may have run it, so a write is not
	// retried: its outcome is unknown (503).
	errCallLost error = workerError("worker lost with the call under way")
	// errWorkerSlow: a call of a worker got no answer within callWait
	// (503); the worker may have done it, so a write's outcome is
	// unknown.
	errWorkerSlow error = workerError("worker did not answer in time")
	// errAuditUnavailable: under -audit-required, the request's audit line
	// could not be written durably (503; audit.go).
	errAuditUnavailable = errors.New("audit log cannot be written")
	// errProviderUnavailable: the OpenID provider (the identity provider)
	// could not be reached or gave no usable answer: its discovery
	// document, its signing keys (JWKS) or its token endpoint (503;
	// oidc.go, oidclogin.go). It is not errUnavailable: storage and the
	// workers are not at fault, and the client's credential may be good.
	errProviderUnavailable = errors.New("identity provider unavailable")
	// errNoWorker: no processing worker is in rotation, or the last one
	// tried was unreachable (503, as errUnavailable).
	errNoWorker error = workerError("no processing worker is available")
	// errWriteFenced: a write appended to a worker's write-ahead log
	// after another process had taken the log over (the fence,
	// walwriter.go). The taker may have read the record and applied it,
	// or not: the outcome is unknown (503). Its gRPC code is
	// errUnavailable's; a worker's answer names it by a detail
	// (errorReasons).
	errWriteFenced error = workerError("write appended to a write-ahead log another process took over")
)

// workerError is a failure of the worker tier: errors.Is finds it as
// errUnavailable (503, retry later) but its text names the workers, so
// that an unreachable worker is never logged or answered as unavailable
// storage.
type workerError string

func (e workerError) Error() string { return string(e) }

// Is makes a workerError an errUnavailable.
func (e workerError) Is(target error) bool { return target == errUnavailable }

// unavailableError is a part of the server other than storage and the
// workers that cannot do its work for now (the change log,
// errChangeLogBroken): errors.Is finds it as errUnavailable (503, a
// write's outcome unknown), but its row of errorTable tells the client
// which part failed.
type unavailableError string

func (e unavailableError) Error() string { return string(e) }

// Is makes an unavailableError an errUnavailable.
func (e unavailableError) Is(target error) bool { return target == errUnavailable }

// requestError is an error whose message a client may see: one plain
// sentence about the client's request (`entity "nope" not found in database
// "chatdb"`), never a path, object key, Go type or wrapped chain. kind is
// the sentinel that sets the status. Wrapping a requestError with context
// for the log (fmt.Errorf("get entity: %w", err)) keeps the sentence
// reachable: clientMessage finds it with errors.As.
type requestError struct {
	msg  string
	kind error
	// cause is the error the sentence was made from (reqPrefixf), nil for
	// none; it stays reachable for errors.As.
	cause error
}

func (e *requestError) Error() string { return e.msg }

// Unwrap returns the kind and, if any, the cause.
func (e *requestError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// reqErrorf returns a requestError of kind whose sentence is format applied
// to args. Arguments must be the client's own input or fixed text.
func reqErrorf(kind error, format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// reqPrefixf puts context (format applied to args) in front of the
// sentence of err's requestError, keeping its kind: `JSON patch operation
// 2: no member "a"`. An err without a sentence is wrapped as usual, so it
// stays internal.
func reqPrefixf(err error, format string, args ...any) error {
	var re *requestError
	if !errors.As(err, &re) {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return &requestError{msg: fmt.Sprintf(format, args...) + ": " + re.msg, kind: re.kind, cause: err}
}

// revealingError is a failure whose sentence shows something of the
// stored document (a schema's messages quote its values and member names;
// a patched size tells the stored one). hidden is what a client that may
// not read the document is told instead (withoutDocument). errors.Is and
// errors.As see the detailed error.
type revealingError struct {
	err    error
	hidden error
}

func (e *revealingError) Error() string { return e.err.Error() }

// Unwrap returns the detailed error.
func (e *revealingError) Unwrap() error { return e.err }

// revealing marks err as showing the stored document; hidden (a
// requestError of the same kind) is the sentence for a client that may
// not read it.
func revealing(err, hidden error) error { return &revealingError{err: err, hidden: hidden} }

// withoutDocument is err as a client that may not read the document it is
// about gets it: a revealingError's hidden sentence, else err unchanged
// (its sentence is about the request itself).
func withoutDocument(err error) error {
	var re *revealingError
	if errors.As(err, &re) {
		return re.hidden
	}
	return err
}

// clientMessage returns the sentence of the outermost requestError in err's
// chain, and false when there is none: the error is then internal and the
// client gets a fixed sentence for its status instead.
//
// Every piece of client input a sentence quotes is cut to maxQuoted bytes
// here (cutInput), so that an answer is not as large as the request
// allows: a 200 KB key, pointer or member name is quoted by its first 64
// bytes and an ellipsis. Input a sentence shows must therefore be quoted
// (%q), never written bare (%s).
func clientMessage(err error) (string, bool) {
	var re *requestError
	if errors.As(err, &re) {
		return cutInput(re.msg), true
	}
	return "", false
}

// sentencef is fmt.Sprintf for a client's sentence made outside a
// requestError (a listener's own answer): its quoted input is cut as
// clientMessage cuts it.
func sentencef(format string, args ...any) string {
	return cutInput(fmt.Sprintf(format, args...))
}

// cutInput cuts each quoted value of a client's sentence: "..." as %q
// writes it, and `...` as a regular expression's error quotes the
// expression (a schema's "pattern").
func cutInput(msg string) string {
	return cutQuotedPieces(cutQuotedPieces(msg, '"'), '`')
}

// maxQuoted is the most bytes of one quoted value a client's sentence
// shows, before its ellipsis.
const maxQuoted = 64

// cutQuotedPieces cuts each value quoted by q in msg (a q inside escaped
// by a backslash) to maxQuoted bytes and an ellipsis. Cutting again
// changes nothing, so a worker's sentence the main worker passes on is
// cut once.
func cutQuotedPieces(msg string, q byte) string {
	if len(msg) <= maxQuoted {
		return msg
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(msg, q)
		if open < 0 {
			break
		}
		end := closingQuote(msg, open+1, q)
		if end < 0 {
			break
		}
		b.WriteString(msg[:open+1])
		b.WriteString(cutQuoted(msg[open+1 : end]))
		b.WriteByte(q)
		msg = msg[end+1:]
	}
	b.WriteString(msg)
	return b.String()
}

// closingQuote returns the index of the q that closes a quoted value
// starting at from in msg, skipping escapes; -1 when there is none.
func closingQuote(msg string, from int, q byte) int {
	for i := from; i < len(msg); i++ {
		switch msg[i] {
		case '\\':
			i++
		case q:
			return i
		}
	}
	return -1
}

// ellipsis marks a quoted value cut short.
const ellipsis = "…"

// cutQuoted cuts a quoted value to at most maxQuoted bytes and an
// ellipsis, on a character boundary and not inside a backslash escape
// (\", \u00e9). A value already cut is returned as it is.
func cutQuoted(v string) string {
	if len(v) <= maxQuoted || len(v) <= maxQuoted+len(ellipsis) && strings.HasSuffix(v, ellipsis) {
		return v
	}
	cut := 0
	for cut < len(v) {
		n := quotedEscapeLen(v[cut:])
		if n == 0 {
			_, n = utf8.DecodeRuneInString(v[cut:])
		}
		if cut+n > maxQuoted {
			break
		}
		cut += n
	}
	return v[:cut] + ellipsis
}

// quotedEscapeLen is the length of the backslash escape v starts with
// (\n, \x7f, \u00e9, \U0001f600), 0 when it starts with none.
func quotedEscapeLen(v string) int {
	if len(v) < 2 || v[0] != '\\' {
		return 0
	}
	n := 2
	switch v[1] {
	case 'x':
		n = 4
	case 'u':
		n = 6
	case 'U':
		n = 10
	}
	return min(n, len(v))
}

// writeEffect says what a failed write may have left in storage. Its zero
// value is no answer, so that the test of errorTable finds a row that
// forgot it.
type writeEffect int

const (
	// wroteNothing: the write was refused before anything was written.
	wroteNothing writeEffect = iota + 1
	// mayHaveWritten: the outcome is unknown (a lost connection, a
	// storage failure after the write began).
	mayHaveWritten
)

// errorKind is what one sentinel means to each side: the HTTP status of a
// REST answer, the gRPC code of a Process answer (and of a worker's answer
// to the main worker), the sentence a client gets when the error carries
// none of its own, and what a write that failed with it left behind.
type errorKind struct {
	err    error
	status int
	code   codes.Code
	// msg is the fixed sentence. A status under 500 is the request's
	// fault: an error's own sentence (requestError) replaces msg. A 5xx
	// never shows its own sentence; msg is a format taking the request ID
	// under which the cause is logged.
	msg     string
	written writeEffect
}

// errorTable is the one table of what an error means, in the order the
// lookups try it: the first row whose sentinel errors.Is finds wins.
// errHandingOverLost and errHandoverDamagedLost come before errTransport,
// which they wrap. The
// worker tier's errors (errTransport, errNoWorker), errChangeLogBroken and
// errChangeLogUnreadable come before errUnavailable, which they also are; errBusy and errAuditUnavailable
// after it, so that a worker's Unavailable stays errUnavailable (a busy
// worker's answer names errBusy by its reason, errorReasons); errTooLarge before errRateLimited,
// which shares its gRPC code, so that a worker's ResourceExhausted comes
// back as 413.
var errorTable = []errorKind{
	{errUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated, "missing, unknown or expired credential", wroteNothing},
	{errForbidden, http.StatusForbidden, codes.PermissionDenied, "this credential does not allow the request", wroteNothing},
	{errTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, "request body too large", wroteNothing},
	{errRateLimited, http.StatusTooManyRequests, codes.ResourceExhausted, "too many failed authentications from this address; try again later", wroteNothing},
	{errTooManyStreams, http.StatusTooManyRequests, codes.ResourceExhausted, "too many change streams", wroteNothing},
	{errGone, http.StatusGone, codes.OutOfRange, "the cursor is older than the change feed's retention", wroteNothing},
	{errInvalid, http.StatusBadRequest, codes.InvalidArgument, "the request is not valid", wroteNothing},
	{errNotFound, http.StatusNotFound, codes.NotFound, "not found", wroteNothing},
	{errPrecondition, http.StatusPreconditionFailed, codes.FailedPrecondition, "a precondition of the request does not hold", wroteNothing},
	{errPatchConflict, http.StatusConflict, codes.Aborted, "the patch does not apply to the document", wroteNothing},
	{errConflict, http.StatusConflict, codes.Aborted, "the request conflicts with what is stored", wroteNothing},
	{errUnsupportedMedia, http.StatusUnsupportedMediaType, codes.InvalidArgument, "unsupported media type", wroteNothing},
	{errMethod, http.StatusMethodNotAllowed, codes.Unimplemented, "method not allowed", wroteNothing},
	{errNoFeed, http.StatusNotImplemented, codes.Unimplemented, "this server keeps no change feed: its operator has not given it a directory for one (request ID %s)", wroteNothing},
	{errHandingOverLost, http.StatusServiceUnavailable, codes.Unavailable, handingOver, mayHaveWritten},
	{errHandoverDamagedLost, http.StatusServiceUnavailable, codes.Unavailable, handoverDamaged, mayHaveWritten},
	{errCallLost, http.StatusServiceUnavailable, codes.Unavailable, workerLost, mayHaveWritten},
	{errTransport, http.StatusServiceUnavailable, codes.Unavailable, workerUnreachable, mayHaveWritten},
	{errNoWorker, http.StatusServiceUnavailable, codes.Unavailable, workerUnreachable, mayHaveWritten},
	{errHandingOver, http.StatusServiceUnavailable, codes.Unavailable, handingOver, wroteNothing},
	{errHandoverDamaged, http.StatusServiceUnavailable, codes.Unavailable, handoverDamaged, wroteNothing},
	{errWriteFenced, http.StatusServiceUnavailable, codes.Unavailable, ownerChanged, mayHaveWritten},
	{errWorkerSlow, http.StatusServiceUnavailable, codes.Unavailable, workerSlow, mayHaveWritten},
	{errChangeLogBroken, http.StatusServiceUnavailable, codes.Unavailable, "the change feed's log cannot be written, so writes are refused until it is repaired; try again later (request ID %s)", mayHaveWritten},
	{errChangeLogUnreadable, http.StatusServiceUnavailable, codes.Unavailable, "the change feed's log could not be read to settle an earlier write of this entity, so this write was refused and nothing of it was written; try again later (request ID %s)", wroteNothing},
	{errUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "storage or workers unavailable, try again later (request ID %s)", mayHaveWritten},
	{errBusy, http.StatusServiceUnavailable, codes.Unavailable, "the server is at its limit of concurrent reads; try again shortly (request ID %s)", wroteNothing},
	{errAuditUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "the audit log cannot be written, so requests are refused; try again later (request ID %s)", mayHaveWritten},
	{errProviderUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "the identity provider (the OpenID provider) could not be reached or gave no usable answer; try again later (request ID %s)", wroteNothing},
	{errCorrupt, http.StatusInternalServerError, codes.DataLoss, internalError, mayHaveWritten},
	{errConfig, http.StatusInternalServerError, codes.Internal, internalError, mayHaveWritten},
}

// Fixed sentences of the failures that are not the request's fault; each
// takes the request ID under which the cause is logged.
const (
	workerUnreachable = "worker unreachable: no processing worker answered, try again later (request ID %s)"
	internalError     = "internal error (request ID %s)"
	handingOver       = "this entity's worker left or another joined, and its write-ahead log is still being applied to storage before another worker writes it: try again shortly (request ID %s)"
	handoverDamaged   = "this entity's worker left and its write-ahead log is damaged, so the entity cannot be served until an operator restores the storage or moves that log away (request ID %s)"
	workerLost        = "this entity's worker was lost while it had the request, so the request was given up: a write may or may not have been applied, so read the entity before retrying it (request ID %s)"
	workerSlow        = "this entity's worker did not answer in time, so the request was given up: a write may or may not have been applied, so read the entity before retrying it (request ID %s)"
	ownerChanged      = "this entity's owner changed while the write was being made durable (its worker's write-ahead log was taken over), so the write may or may not have been applied: read the entity, then retry if needed (request ID %s)"
)

// statusClientClosed is the status a REST request is answered, counted
// and logged with when its client went away (its context ended) before
// the answer and the failure is one a server error would name: nginx's
// 499 "client closed request". Nobody reads it; it is there so that the
// metrics, the access and audit lines and the dashboard count a client
// that hung up as the client's doing, not as a 500 of the server
// (writeError).
const statusClientClosed = 499

// clientClosed is the sentence of a statusClientClosed answer.
const clientClosed = "the client closed the request before it was answered (request ID %s)"

// clientGoneCode is the gRPC code of a call that failed with err, a
// failure a server error would name (Internal, Unavailable: a 5xx),
// after its client went away (ctx ended): Canceled when the client
// cancelled it, DeadlineExceeded when its deadline passed, as gRPC names
// a call its context ended (status.FromContextError). false when the
// client is still there or the failure is the request's own. It is REST's
// statusClientClosed for gRPC: the metrics and the audit line count the
// call as the client's doing, not as the server failing.
func clientGoneCode(ctx context.Context, err error) (codes.Code, bool) {
	if err == nil || ctx.Err() == nil || statusOf(err) < 500 {
		return codes.OK, false
	}
	return status.FromContextError(ctx.Err()).Code(), true
}

// kindOf is the row of errorTable for err, nil when no sentinel matches
// (an internal error: 500, Internal).
func kindOf(err error) *errorKind {
	for i := range errorTable {
		if errors.Is(err, errorTable[i].err) {
			return &errorTable[i]
		}
	}
	return nil
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	if k := kindOf(err); k != nil {
		return k.status
	}
	return http.StatusInternalServerError
}

// grpcCode maps an error to its gRPC code.
func grpcCode(err error) codes.Code {
	if k := kindOf(err); k != nil {
		return k.code
	}
	return codes.Internal
}

// sentinelOf returns the sentinel a worker's gRPC code c stands for: the
// first row with that code, leaving out the rows that refine
// errUnavailable: the worker tier's own errors, which the main worker
// makes about its workers (or, for errWriteFenced, learns from the
// answer's detail: reasonSentinel), and the main worker's change log. A call past its
// deadline (DeadlineExceeded, which gRPC sets, never a worker) is
// errUnavailable: it may succeed later. nil for Internal and codes not in
// the table.
func sentinelOf(c codes.Code) error {
	if c == codes.DeadlineExceeded {
		return errUnavailable
	}
	for _, k := range errorTable {
		if refines := k.err != errUnavailable && errors.Is(k.err, errUnavailable); !refines && k.code == c {
			return k.err
		}
	}
	return nil
}

// errorReasons are the sentinels a worker makes that share their gRPC
// code with another row and mean something else to the client; a
// worker's failed call names one by an ErrorInfo detail with its reason
// (withReason), and the main worker maps it back (reasonSentinel).
var errorReasons = map[string]error{
	"WRITE_FENCED": errWriteFenced,
	"BUSY":         errBusy,
}

// errorDomain is the domain of the ErrorInfo details we send.
const errorDomain = "deltadatabase"

// reasonOf is the reason naming err's sentinel in errorReasons, "" for
// none.
func reasonOf(err error) string {
	for reason, sentinel := range errorReasons {
		if errors.Is(err, sentinel) {
			return reason
		}
	}
	return ""
}

// withReason adds to st the ErrorInfo detail naming err's reason, if it
// has one (reasonOf).
func withReason(st *status.Status, err error) *status.Status {
	reason := reasonOf(err)
	if reason == "" {
		return st
	}
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); derr == nil {
		return d
	}
	return st
}

// reasonSentinel is the sentinel an ErrorInfo detail of st names
// (withReason), nil for none.
func reasonSentinel(st *status.Status) error {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			if sentinel := errorReasons[info.GetReason()]; sentinel != nil {
				return sentinel
			}
		}
	}
	return nil
}

// nothingWritten reports whether a write that failed with err certainly
// left storage as it was: it was refused before anything was written.
func nothingWritten(err error) bool {
	k := kindOf(err)
	return k != nil && k.written == wroteNothing
}

// retrySoon reports whether err is a refusal that only means "try again
// shortly": the server's own admission limit is full (errBusy) or the
// entity's log is being handed over to another worker (errHandingOver).
// Nothing failed and nothing was written, and it is expected under load
// or while workers come and go, so the front ends log it at warn, not as
// a fault at error, and REST says when to retry (Retry-After: 1). The
// other 503s are faults an operator may have to mend (storage, a worker
// lost or silent, a damaged log, the audit log, the change log after a
// failed write, no worker in rotation) or leave a write's outcome
// unknown (errHandingOverLost); they stay at error, without Retry-After:
// retrying them at once is no use, or not safe before the entity is
// read.
func retrySoon(err error) bool {
	k := kindOf(err)
	return k != nil && (k.err == errBusy || k.err == errHandingOver)
}

// publicMessage is what a client is told about err: for a failure of the
// request (a status under 500), the sentence of its requestError or else
// its kind's fixed sentence; for any other, a fixed sentence naming
// requestID, under which the caller logs the cause. REST (writeError) and
// gRPC answers use it.
func publicMessage(err error, requestID string) string {
	k := kindOf(err)
	if k == nil {
		return fmt.Sprintf(internalError, requestID)
	}
	if k.status >= 500 {
		return fmt.Sprintf(k.msg, requestID)
	}
	if msg, ok := clientMessage(err); ok {
		return msg
	}
	return k.msg
}
