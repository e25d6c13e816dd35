package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testLimits are short limits for the attack tests: each is far below
// the few seconds a test waits for the server to give up.
var testLimits = httpLimits{header: 300 * time.Millisecond, body: 300 * time.Millisecond, write: 400 * time.Millisecond, idle: 500 * time.Millisecond}

// serveLimited serves h with lim as newHTTPServer and deadlineListener
// serve the REST listener (over TLS with tlsConfig, unless nil) and
// returns its address; the server is closed with the test.
func serveLimited(t *testing.T, h http.Handler, lim httpLimits, tlsConfig *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = deadlineListener(ln, lim.write)
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := newHTTPServer(h, lim, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// closedWithin reports whether the server closes c (a read returns EOF or
// an error other than the client's own timeout) within d, reading and
// dropping whatever it sent before.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// limitedConn serves h as serveLimited does and returns a connection to
// it, with TLS when client is not nil, closed with the test.
func limitedConn(t *testing.T, h http.Handler, lim httpLimits, server, client *tls.Config) net.Conn {
	t.Helper()
	addr := serveLimited(t, h, lim, server)
	var c net.Conn
	var err error
	if client != nil {
		c, err = tls.Dial("tcp", addr, client)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendGet writes a GET of path to c.
func sendGet(c net.Conn, path string) {
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
}

// readAnswer reads the next answer from br, its body whole.
func readAnswer(br *bufio.Reader) (*http.Response, []byte, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestSlowHeadersCutOff: a client that sends its headers a byte at a time
// (slowloris) is disconnected at the header limit, and no handler runs.
func TestSlowHeadersCutOff(t *testing.T) {
	called := make(chan struct{}, 1)
	c := limitedConn(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called <- struct{}{} }), testLimits, nil, nil)
	start := time.Now()
	req := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200) + "\r\n\r\n"
	var err error
	for i := 0; i < len(req) && err == nil; i++ {
		_, err = c.Write([]byte{req[i]})
		time.Sleep(20 * time.Millisecond) // 4 s for the whole request
	}
	if err == nil && !closedWithin(t, c, scaled(5*time.Second)) {
		t.Fatal("the server kept a connection whose headers came a byte every 20 ms")
	}
	if took := time.Since(start); took > scaled(3*time.Second) {
		t.Errorf("the slow headers were cut off after %v, want about the header limit %v", took, testLimits.header)
	}
	select {
	case <-called:
		t.Error("a handler ran for headers sent past the limit")
	default:
	}
}

// TestSlowBodyCutOff: a request whose body comes a byte at a time has its
// body read fail at the body limit, and the connection is closed.
func TestSlowBodyCutOff(t *testing.T) {
	readErr := make(chan error, 1)
	c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
	}), testLimits, nil, nil)
	fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	start := time.Now()
	go func() {
		for i := 0; i < 1000; i++ {
			if _, err := c.Write([]byte{'a'}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // 20 s for the whole body
		}
	}()
	select {
	case err := <-readErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("reading the slow body: %v, want a timeout", err)
		}
	case <-time.After(scaled(10 * time.Second)):
		t.Fatal("a body sent a byte every 20 ms was still being read after 10 s")
	}
	if took := time.Since(start); took > scaled(3*time.Second) {
		t.Errorf("the slow body was cut off after %v, want about the body limit %v", took, testLimits.body)
	}
	if !closedWithin(t, c, scaled(5*time.Second)) {
		t.Error("the server kept the connection of a body it timed out")
	}
}

// TestUnreadAnswerCutOff: a client that asks for a large answer and never
// reads it has the answer cut off at the write limit (the handler's write
// fails, the connection closes), over TCP and over TLS.
func TestUnreadAnswerCutOff(t *testing.T) {
	cert, err := selfSignedCert(rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		server *tls.Config
		client *tls.Config
	}{
		{"tcp", nil, nil},
		{"tls", &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{InsecureSkipVerify: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeErr := make(chan error, 1)
			c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeErr <- writeLarge(w)
			}), testLimits, tc.server, tc.client)
			sendGet(c, "/")
			start := time.Now()
			cutOff(t, writeErr)
			if took := time.Since(start); took > scaled(3*time.Second) {
				t.Errorf("the unread answer was cut off after %v, want about the write limit %v", took, testLimits.write)
			}
			if !closedWithin(t, c, scaled(5*time.Second)) {
				t.Error("the server kept the connection of an answer it cut off")
			}
		})
	}
}

// TestPipelinedUnreadAnswersCutOff: a client that sends request after
// request and reads none of the small answers, until the socket's
// buffers are full, is disconnected at the write limit: every answer has
// a write deadline, not only large ones.
func TestPipelinedUnreadAnswersCutOff(t *testing.T) {
	answer := []byte(strings.Repeat("x", 16<<10))
	served := make(chan struct{}, 1<<16)
	c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(answer)
		served <- struct{}{}
	}), testLimits, nil, nil)
	go func() {
		req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		for {
			if _, err := c.Write(req); err != nil {
				return
			}
		}
	}()
	time.Sleep(2 * time.Second) // the socket buffers fill
	if !closedWithin(t, c, scaled(20*time.Second)) {
		t.Fatalf("the server kept a connection whose %d answers were not read", len(served))
	}
}

// TestIdleConnectionClosed: a kept-alive connection with no request is
// closed at the idle limit.
func TestIdleConnectionClosed(t *testing.T) {
	c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), testLimits, nil, nil)
	br := bufio.NewReader(c)
	sendGet(c, "/")
	if _, _, err := readAnswer(br); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !closedWithin(t, c, scaled(5*time.Second)) {
		t.Fatal("an idle connection was kept past the idle limit")
	}
	if took := time.Since(start); took < testLimits.idle/2 {
		t.Errorf("an idle connection was closed after %v, before the idle limit %v", took, testLimits.idle)
	}
}

// TestWriteDeadlineMoves: the connection's write deadline moves with its
// requests: requests on one connection for several times the write limit
// are all answered, one after a pause longer than the limit too, and so
// is a malformed request after such a pause (net/http's own 400, written
// before any handler runs).
func TestWriteDeadlineMoves(t *testing.T) {
	lim := testLimits
	// Every answer here must be written in time: on a loaded machine
	// (the race detector) one could be late by the default limit.
	lim.write, lim.idle = 2*testLimits.write, time.Minute
	c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }), lim, nil, nil)
	br := bufio.NewReader(c)
	get := func(pause time.Duration) {
		t.Helper()
		time.Sleep(pause)
		sendGet(c, "/")
		resp, body, err := readAnswer(br)
		if err != nil {
			t.Fatalf("after a pause of %v: %v", pause, err)
		}
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("after a pause of %v: %d %q, want 200 ok", pause, resp.StatusCode, body)
		}
	}
	for end := time.Now().Add(3 * lim.write); time.Now().Before(end); {
		get(20 * time.Millisecond)
	}
	get(2 * lim.write)
	time.Sleep(2 * lim.write)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a malformed request after a pause: %v, want a 400 answer", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed request after a pause: %d, want 400", resp.StatusCode)
	}
}

// TestHandlerWriteDeadline: a handler that sets its own write deadline
// through http.ResponseController (a stream) writes past the listener's
// write limit; the next answer on the connection has the limit again.
func TestHandlerWriteDeadline(t *testing.T) {
	writeErr := make(chan error, 2)
	c := limitedConn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			rc := http.NewResponseController(w)
			rc.SetWriteDeadline(time.Now().Add(time.Minute))
			for i := 0; i < 5; i++ {
				w.Write([]byte("tick\n"))
				rc.Flush()
				time.Sleep(testLimits.write / 2)
			}
			return
		}
		writeErr <- writeLarge(w)
	}), testLimits, nil, nil)
	br := bufio.NewReader(c)
	sendGet(c, "/stream")
	_, body, err := readAnswer(br)
	if err != nil || strings.Count(string(body), "tick") != 5 {
		t.Fatalf("a stream of 2.5 write limits with its own deadline: %q, %v; want 5 ticks", body, err)
	}
	sendGet(c, "/large")
	cutOff(t, writeErr)
}

// writeLarge writes 256 MiB to w, more than any socket buffer holds, and
// returns the first write's error.
func writeLarge(w http.ResponseWriter) error {
	chunk := make([]byte, 1<<20)
	for range 256 {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// cutOff fails t unless writeLarge's result, on writeErr, is an error
// within 10 s: the answer to a client that reads nothing was cut off.
func cutOff(t *testing.T, writeErr <-chan error) {
	t.Helper()
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("the server wrote 256 MiB to a client that reads nothing")
		}
	case <-time.After(scaled(10 * time.Second)):
		t.Fatal("the answer to a client that reads nothing was still being written after 10 s")
	}
}

// TestServerRefusals: the requests net/http refuses before any handler
// runs get the answers API.md ("Errors and request IDs") documents as its
// exception to JSON bodies: headers over 64 KiB are 431, two
// Content-Length headers 400, each text/plain with the connection closed.
// Headers just under the limit reach the handler.
func TestServerRefusals(t *testing.T) {
	called := make(chan struct{}, 4)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called <- struct{}{} })
	for _, c := range []struct {
		name, req string
		want      int
	}{
		{"headers of 60 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 60<<10) + "\r\n\r\n", 200},
		{"headers of 70 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
		{"two Content-Length", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
	} {
		conn := limitedConn(t, h, restLimits, nil, nil)
		if _, err := io.WriteString(conn, c.req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if ct := resp.Header.Get("Content-Type"); c.want != 200 && (!strings.HasPrefix(ct, "text/plain") || !resp.Close) {
			t.Errorf("%s: Content-Type %q, close %v; want text/plain and the connection closed, as documented", c.name, ct, resp.Close)
		}
	}
	if len(called) != 1 {
		t.Errorf("the handler ran %d times, want once (only for the headers under the limit)", len(called))
	}
}
