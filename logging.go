package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Log formats of -log-format.
const (
	logFormatText = "text" // slog's key=value lines, the default
	logFormatJSON = "json" // one JSON object per line
)

// newLogger is the logger of every role, writing to w: -log-format picks
// the handler, -log-level its level. A record logged with a request's
// context (InfoContext(ctx, ...)) carries that request's ID, so that code
// serving a request needs no logger of its own to say which request it
// logs for.
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case logFormatText:
		return slog.New(requestIDHandler{slog.NewTextHandler(w, opts)}), nil
	case logFormatJSON:
		return slog.New(requestIDHandler{slog.NewJSONHandler(w, opts)}), nil
	default:
		return nil, fmt.Errorf("-log-format: %q is not text or json", format)
	}
}

// requestIDHandler adds the request ID of the context a record is logged
// with (requestIDFrom) as attrRequestID; records logged without one pass
// unchanged. It is safe for concurrent use if its Handler is.
type requestIDHandler struct{ slog.Handler }

// Handle adds the request ID, then hands the record on. The record is
// the logger's own copy, made for this call, so adding to it is safe.
func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String(attrRequestID, id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the request ID on loggers derived with With.
func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the request ID on loggers derived with WithGroup.
func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// msgAccess is the message of the access line, one per finished REST
// request: operators filter on msg="request".
const msgAccess = "request"

// logAccess writes the access line of a finished REST request at info:
// what was asked (method, route pattern, never the path with its names),
// the answer (status, bytes, duration), by whom (client ID and address)
// and its request ID. Bodies, query strings and credentials never reach
// it; -log-level=warn leaves the access lines out.
func (s *restServer) logAccess(rec requestRecord) {
	s.log.LogAttrs(context.Background(), slog.LevelInfo, msgAccess,
		slog.String(attrMethod, rec.Method),
		slog.String(attrRoute, rec.Route),
		slog.Int(attrStatus, rec.Status),
		slog.Int64(attrBytes, rec.Bytes),
		slog.Float64(attrDurationMS, durationMS(rec.Duration)),
		slog.String(attrClient, rec.Principal),
		slog.String(attrAddr, rec.Client),
		slog.String(attrRequestID, rec.RequestID))
}

// durationMS is d in milliseconds, to the microsecond.
func durationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
