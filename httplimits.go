package main

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The time limits of our HTTP listeners (REST, ops) protect them from
// clients that hold a connection without finishing it: headers or a body
// sent a byte at a time (slowloris), an answer never read, a connection
// left idle. net/http's own ReadTimeout and WriteTimeout would do it by
// moving two runtime timers on every request, even a warm GET with no
// body whose answer fits in the socket buffer; that cost a few percent
// of the CPU of such a GET (BENCHMARKS.md, "The server's time limits
// without two timers per request"). Here the header and idle limits
// stay net/http's (its per-request cost is small), a body's limit is set
// only for a request that has one, and the write deadline is moved by
// the connection itself at most about once a second (deadlineConn).

// httpLimits are the time limits of one HTTP listener.
type httpLimits struct {
	// header bounds the request line and headers, from their first byte.
	header time.Duration
	// body bounds reading a request's body, from the start of its
	// handler; a handler that streams a long body moves it on itself.
	body time.Duration
	// write bounds an answer, from the end of its request's headers: an
	// answer not written by then is cut off and the connection closed.
	write time.Duration
	// idle bounds the wait for the next request on a kept-alive
	// connection.
	idle time.Duration
}

// restWriteTimeout is the longest a REST response may take to write,
// from the end of its request's headers: a request that needs longer (a
// large deletion) is answered by a closed connection, and repeated.
const restWriteTimeout = 60 * time.Second

// maxHeaderBytes bounds the headers of a REST request and the metadata of
// a gRPC call.
const maxHeaderBytes = 64 << 10

// restLimits are the REST listener's limits.
var restLimits = httpLimits{header: 5 * time.Second, body: 30 * time.Second, write: restWriteTimeout, idle: 120 * time.Second}

// newHTTPServer returns the http.Server of every listener of ours (REST,
// ops) with lim's header, body and idle limits, a header size limit, and
// the server's own errors logged as warnings. It must serve a listener
// from deadlineListener, which holds the write limit.
func newHTTPServer(h http.Handler, lim httpLimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           bodyDeadline(h, lim.body),
		ReadHeaderTimeout: lim.header,
		IdleTimeout:       lim.idle,
		ConnState:         answerDeadline,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// bodyDeadline sets the read deadline of a request that has a body
// before h reads it: d from now. A request without one (a GET) sets
// none; net/http reads it no further.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(d)) //nolint:errcheck // only fails for a hijacked connection
		}
		h.ServeHTTP(w, r)
	})
}

// answerDeadline is the servers' ConnState hook: when a request's headers
// have been read (StateActive), its answer's write deadline is made
// current; a hijacked connection is left to its handler.
func answerDeadline(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	dc, ok := c.(*deadlineConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive:
		dc.freshen()
	case http.StateHijacked:
		dc.release()
	}
}

// deadlineListener returns ln, whose connections keep a write deadline
// of write: see deadlineConn. A TLS listener goes on top of it.
func deadlineListener(ln net.Listener, write time.Duration) net.Listener {
	return &deadlineLn{Listener: ln, write: write}
}

// deadlineLn is deadlineListener's listener.
type deadlineLn struct {
	net.Listener
	write time.Duration
}

// Accept returns the next connection as a deadlineConn.
func (l *deadlineLn) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, write: l.write}, nil
}

// deadlineConn is a server connection that keeps its own write deadline:
// at least write - write/64 and at most write ahead of the end of the
// last request's headers (net/http's StateActive, which comes before
// anything is written, its own answer to a malformed request too). It
// moves the deadline only when it has fallen more than write/64 behind,
// so that a connection answering thousands of requests a second moves
// its runtime timer about once a second instead of twice per request. An
// answer that is not written in time (a client that stops reading, or
// sends requests without reading the answers until the socket's buffers
// are full) fails, and net/http closes the connection.
//
// net/http clears the write deadline after each answer: that is ignored,
// and the deadline stays until the next request moves it. A deadline set
// by anyone else (a streaming handler through http.ResponseController,
// net/http around a TLS handshake) is kept until it is cleared. Safe for
// concurrent use, as net.Conn is.
type deadlineConn struct {
	net.Conn
	write time.Duration

	// foreign is set while someone else's write deadline is in force,
	// or after the connection was hijacked: the connection leaves the
	// deadline alone.
	foreign atomic.Bool
	// due is the connection's deadline, in monotonic nanoseconds since
	// clockStart (0: none set yet).
	due atomic.Int64

	mu       sync.Mutex // serialises moving the deadline
	hijacked bool
}

// clockStart is the origin of deadlineConn's monotonic times.
var clockStart = time.Now()

// freshen moves the write deadline to write from now if it has fallen
// more than write/64 behind that, unless someone else's is in force.
func (c *deadlineConn) freshen() {
	if c.foreign.Load() {
		return
	}
	// Since reads the monotonic clock only: one clock read per request,
	// and the wall clock not at all unless the deadline moves.
	mono := time.Since(clockStart)
	if c.due.Load()-int64(mono) >= int64(c.write-c.write/64) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.foreign.Load() {
		return
	}
	c.due.Store(int64(mono + c.write))
	c.Conn.SetWriteDeadline(clockStart.Add(mono + c.write)) //nolint:errcheck // a closed connection fails its next write anyway
}

// SetWriteDeadline sets someone else's deadline t; a zero t ends it, and
// the connection's own deadline is in force again (it is never cleared).
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() && !c.foreign.Load() {
		return nil // net/http after an answer: the own deadline stays
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hijacked {
		return c.Conn.SetWriteDeadline(t)
	}
	if !t.IsZero() {
		c.foreign.Store(true)
		return c.Conn.SetWriteDeadline(t)
	}
	c.foreign.Store(false)
	if due := c.due.Load(); due != 0 {
		t = clockStart.Add(time.Duration(due))
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, the write one as SetWriteDeadline.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// release hands the connection's deadlines to the handler that hijacked
// it: the connection's own deadline is cleared and never set again.
func (c *deadlineConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hijacked = true
	if !c.foreign.Swap(true) {
		c.Conn.SetWriteDeadline(time.Time{}) //nolint:errcheck // see freshen
	}
}

// CloseWrite half-closes a TCP connection, as net/http does before
// closing one whose request body it did not read.
func (c *deadlineConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
