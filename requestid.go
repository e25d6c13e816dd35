package main

import "context"

// requestIDKey is the context key of a request's ID.
type requestIDKey struct{}

// withRequestID returns ctx carrying request ID id: the X-Request-ID of a
// REST request, passed on to workers so that every log line of one request
// carries the same ID.
func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// requestIDFrom returns the request ID ctx carries, "" if none.
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
