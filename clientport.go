package main

// The client gRPC port (-grpc-addr) also lets processing workers in: the
// original system's workers subscribed on the main worker's client port,
// and the Compose files and scripts written for it still say
// -main-addr=main:50051. The first bytes of each connection tell a worker
// from a client: a worker's TLS ClientHello offers the ALPN protocol
// clusterALPN, which no client offers. Such a connection goes to the
// cluster gRPC server, the one serving -cluster-addr, whose checks (the
// cluster TLS and its client certificates, the join token proof) it then
// passes or fails exactly as there. Every other connection (plaintext
// HTTP/2, client TLS with -tls-cert, or anything else) goes to the client
// gRPC server as before.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// clusterALPN is the ALPN protocol a worker offers, beside h2, on its
// connections to the main worker; the cluster server selects h2.
const clusterALPN = "deltadb-cluster/1"

// helloTimeout is how long a connection to the client port may take to
// send its first bytes (a TLS ClientHello or the HTTP/2 preface) before
// it is closed.
const helloTimeout = 10 * time.Second

// withClusterALPN adds clusterALPN to the protocols a worker's TLS
// configuration offers, so that the client port hands it to the cluster
// server.
func withClusterALPN(c *tls.Config) *tls.Config {
	c.NextProtos = append(c.NextProtos, clusterALPN)
	return c
}

// portSplit accepts the connections of one listener and hands each to
// the client or the cluster listener it exposes, by its first bytes. It
// starts its goroutines in splitPort and waits for them in close.
type portSplit struct {
	ln      net.Listener
	client  *connQueue
	cluster *connQueue
	log     *slog.Logger
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections still sending their first bytes
}

// splitPort starts splitting the connections of ln. The caller serves
// client and cluster (grpc.Server.Serve) and calls close after those
// servers stopped.
func splitPort(ln net.Listener, log *slog.Logger) *portSplit {
	s := &portSplit{ln: ln, client: newConnQueue(ln.Addr()), cluster: newConnQueue(ln.Addr()), log: log,
		pending: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// close stops accepting, cuts the connections still being read, waits
// for every goroutine of s and closes both queues.
func (s *portSplit) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.pending {
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
	s.client.Close()
	s.cluster.Close()
}

// accept hands every accepted connection to a goroutine of its own, so
// that a slow first byte holds up nobody else.
func (s *portSplit) accept() {
	defer s.wg.Done()
	for failures := 0; ; {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: wait, as net/http does.
			failures++
			s.log.Warn("grpc accept", attrErr, err)
			time.Sleep(min(5*time.Millisecond<<min(failures, 8), time.Second))
			continue
		}
		failures = 0
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.route(c)
		}()
	}
}

// track notes c as pending unless s is closing.
func (s *portSplit) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pending[c] = struct{}{}
	return true
}

// route reads the first bytes of c and queues it, those bytes replayed,
// on the client or the cluster listener.
func (s *portSplit) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	var seen bytes.Buffer
	cluster, err := offersClusterALPN(c, io.TeeReader(c, &seen))
	c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
	if err != nil && seen.Len() == 0 {
		c.Close() // it sent nothing: nobody to answer
		return
	}
	q := s.client
	if cluster {
		q = s.cluster
	}
	if !q.put(&replayConn{Conn: c, r: io.MultiReader(&seen, c)}) {
		c.Close()
	}
}

// offersClusterALPN reads from r, the start of connection c, until it
// knows whether c opens with a TLS ClientHello offering clusterALPN. A
// connection whose first byte is not a TLS handshake record (0x16) does
// not; a handshake that is not a ClientHello does not either.
func offersClusterALPN(c net.Conn, r io.Reader) (bool, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return false, err
	}
	if first[0] != 0x16 {
		return false, nil
	}
	// crypto/tls parses the ClientHello; what it would answer is dropped,
	// and helloRead stops the handshake once the hello is read.
	helloRead := errors.New("client hello read")
	var protos []string
	probe := tls.Server(&helloConn{Conn: c, r: io.MultiReader(bytes.NewReader(first[:]), r)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			protos = h.SupportedProtos
			return nil, helloRead
		}})
	if err := probe.Handshake(); !errors.Is(err, helloRead) {
		return false, err
	}
	return slices.Contains(protos, clusterALPN), nil
}

// helloConn is c as crypto/tls sees it while offersClusterALPN reads a
// ClientHello: reads come from r, writes (an alert) are dropped.
type helloConn struct {
	net.Conn
	r io.Reader
}

func (h *helloConn) Read(p []byte) (int, error)  { return h.r.Read(p) }
func (h *helloConn) Write(p []byte) (int, error) { return len(p), nil }

// replayConn is a connection whose first bytes, already read, are read
// again from r before the rest.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connQueue is a net.Listener whose connections come from a portSplit.
// Close stops Accept (grpc.Server.Stop closes its listeners); it does not
// close the port, which the portSplit owns.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to Accept; false once the queue is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Accept returns the next connection routed here.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; it may be called more than once.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr is the split port's address.
func (q *connQueue) Addr() net.Addr { return q.addr }
