package main

import (
	"context"
	"encoding/hex"
	"io"
	"strconv"
	"time"
)

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

// randomIDPrefix is 8 random hex digits, so that the request IDs of
// several main workers (or restarts) do not collide in shared logs.
func randomIDPrefix() string {
	b := make([]byte, 4)
	if _, err := io.ReadFull(cryptoRand, b); err != nil {
		return "r" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b)
}
