package main

import (
	"net/http"
	"time"
)

// requestRecord is what one finished REST request leaves for the access
// log and the metrics: never a body, a key or a credential.
type requestRecord struct {
	Method string
	// Route is the route pattern that matched ("GET /entity/{db}"), or
	// "" when none did, so that labels stay few whatever the paths.
	Route    string
	Status   int
	Bytes    int64
	Duration time.Duration
	// End is when the answer was finished, the access line's time; zero
	// means when the line is written.
	End       time.Time
	Principal string // the principal's client ID; "" when unauthenticated
	RequestID string
	Client    string
}

// finishRequest is called once per REST request after its answer is
// written; every observer of finished requests hangs off it.
func (s *restServer) finishRequest(rec requestRecord) {
	s.metrics.observe(rec)
	s.logAccess(rec)
}

// meteredWriter counts what a handler writes: the status and the body
// bytes.
type meteredWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (m *meteredWriter) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *meteredWriter) Write(b []byte) (int, error) {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	n, err := m.ResponseWriter.Write(b)
	m.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (m *meteredWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// status is the status sent, 200 when the handler wrote nothing at all.
func (m *meteredWriter) status() int {
	if m.code == 0 {
		return http.StatusOK
	}
	return m.code
}
