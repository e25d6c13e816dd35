package main

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each names one kind of failure; rest.go maps them to HTTP
// statuses (statusOf) and proc.go to gRPC codes (grpcCodes), each in one
// place. Backends set them at the storage boundary: os.ErrNotExist and S3
// NoSuchKey both become errNotFound.
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
	// errTooLarge: a request body over -rest-max-body-size (413).
	errTooLarge = errors.New("request body too large")
	// errUnsupportedMedia: a body of a media type the route does not take
	// (415).
	errUnsupportedMedia = errors.New("unsupported media type")
	// errMethod: a method the route does not serve (405).
	errMethod = errors.New("method not allowed")
	// errTransport marks a call that never reached a worker's handler (the
	// connection failed); such calls are retried on the next worker. It is
	// also errUnavailable (503) when no retry is left.
	errTransport error = workerError("worker unreachable")
	// errNoWorker: no processing worker is in rotation, or the last one
	// tried was unreachable (503, as errUnavailable).
	errNoWorker error = workerError("no processing worker is available")
)

// workerError is a failure of the worker tier: errors.Is finds it as
// errUnavailable (503, retry later) but its text names the workers, so
// that an unreachable worker is never logged or answered as unavailable
// storage.
type workerError string

func (e workerError) Error() string { return string(e) }

// Is makes a workerError an errUnavailable.
func (e workerError) Is(target error) bool { return target == errUnavailable }

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

// clientMessage returns the sentence of the outermost requestError in err's
// chain, and false when there is none: the error is then internal and the
// client gets a fixed sentence for its status instead.
func clientMessage(err error) (string, bool) {
	var re *requestError
	if errors.As(err, &re) {
		return re.msg, true
	}
	return "", false
}

// clientKinds are the sentinels of failures caused by the request, in the
// order statusOf tries them, each with the fixed sentence a client gets
// when the error carries no requestError of its own.
var clientKinds = []struct {
	kind error
	msg  string
}{
	{errUnauthenticated, "missing, unknown or expired credential"},
	{errForbidden, "this credential does not allow the request"},
	{errRateLimited, "too many failed authentications from this address; try again later"},
	{errTooLarge, "request body too large"},
	{errInvalid, "the request is not valid"},
	{errNotFound, "not found"},
	{errPrecondition, "a precondition of the request does not hold"},
	{errPatchConflict, "the patch does not apply to the document"},
	{errConflict, "the request conflicts with what is stored"},
	{errUnsupportedMedia, "unsupported media type"},
	{errMethod, "method not allowed"},
}

// publicMessage is what a client is told about err: the sentence of its
// requestError, or a fixed sentence for its kind. Any other error is
// internal: the client gets a fixed sentence naming requestID, under which
// the caller logs the cause. REST (writeError) and gRPC answers use it.
func publicMessage(err error, requestID string) string {
	for _, k := range clientKinds {
		if errors.Is(err, k.kind) {
			if msg, ok := clientMessage(err); ok {
				return msg
			}
			return k.msg
		}
	}
	if errors.Is(err, errTransport) || errors.Is(err, errNoWorker) {
		return fmt.Sprintf("worker unreachable: no processing worker answered, try again later (request ID %s)", requestID)
	}
	if errors.Is(err, errUnavailable) {
		return fmt.Sprintf("storage or workers unavailable, try again later (request ID %s)", requestID)
	}
	return fmt.Sprintf("internal error (request ID %s)", requestID)
}
