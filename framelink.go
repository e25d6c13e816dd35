package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	pb "deltadatabase/proto"
)

// The frame link: the messages of a Calls stream (the same sealed
// WorkerRequest bytes, the same WorkerResponse answers, with every rule of
// the stream) carried as length-prefixed frames on a TLS connection of
// their own, reached through the worker's gRPC port by the ALPN protocol
// frameALPN. On gRPC each message costs several goroutine hand-offs on
// each side (the caller to gRPC's writer; gRPC's reader to the stream's
// receiver to the caller); here the sending caller writes the frame
// itself and one reader per side hands each answer on.
//
// A frame is a 4-byte big-endian length and that many bytes; a frame of
// length 0 is a ping (main worker to worker) or its answer.

// frameALPN is the ALPN protocol of the frame link.
const frameALPN = "deltadb-calls/1"

// frameHeader is a frame's length prefix, bytes.
const frameHeader = 4

// frameIdle is how long a worker waits for the main worker's next frame
// (a live main worker pings a link it heard nothing on for callPingAfter)
// and frameWait how long a frame, once begun, may take to arrive whole,
// and a write to be taken.
const (
	frameIdle = 3 * callPingAfter
	frameWait = callPingTimeout
)

// frameDialWait bounds the opening of a frame link, its handshake
// included: a worker that takes the connection and never answers (one
// stopped) would hold every caller of the link, which waits for it, for
// as long as their own deadlines allow, and a REST request has none.
const frameDialWait = 5 * time.Second

// frameConn is the main worker's side of a frame link (callConn).
type frameConn struct {
	c   net.Conn
	in  frameReader
	max int
	// after and dead are the keepalive: ping after after of silence,
	// close after dead more.
	after, dead time.Duration

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
}

// dialFrames dials addr for a frame link under cfg (the cluster link's
// TLS configuration); it returns nil, nil if the worker does not speak
// the frame protocol (a worker from before it), whose Calls stream is to
// be used instead.
func dialFrames(ctx context.Context, addr string, cfg *tls.Config, maxMsg int) (*frameConn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{frameALPN, "h2"}
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, frameDialWait)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.(*tls.Conn).ConnectionState().NegotiatedProtocol != frameALPN {
		c.Close()
		return nil, nil
	}
	return &frameConn{c: c, in: newFrameReader(c, maxMsg), max: maxMsg, after: callPingAfter, dead: callPingTimeout}, nil
}

// close closes the connection: the receiver's read and a send under way
// fail.
func (f *frameConn) close() { f.closeOnce.Do(func() { f.c.Close() }) }

// send writes wire as one frame. A write that fails after sending part
// of it (to the worker, a whole TLS record of it at least) may have
// delivered the calls it carries: they are lost under way. Either way
// the link closes.
func (f *frameConn) send(wire []byte) error {
	if len(wire) > f.max {
		return fmt.Errorf("send on frame link: message of %d bytes over the limit of %d: %w", len(wire), f.max, errTransport)
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.wbuf = binary.BigEndian.AppendUint32(f.wbuf[:0], uint32(len(wire)))
	f.wbuf = append(f.wbuf, wire...)
	n, err := f.c.Write(f.wbuf)
	if cap(f.wbuf) > frameKeep {
		f.wbuf = nil // a large write's buffer is not kept
	}
	switch {
	case err == nil:
		return nil
	case n == 0:
		f.close()
		return fmt.Errorf("send on frame link: %w: %w", err, errTransport)
	}
	f.close()
	return fmt.Errorf("send on frame link: %w: %w, with the call under way: %w", err, errTransport, errCallLost)
}

// ping writes an empty frame unless a send is under way (whose answer
// shows the worker alive or not); a worker that does not take it within
// f.dead is dead.
func (f *frameConn) ping() {
	if f.wmu.TryLock() {
		f.c.SetWriteDeadline(time.Now().Add(f.dead))
		f.c.Write([]byte{0, 0, 0, 0}) //nolint:errcheck // a dead link is seen by the read's deadline
		f.c.SetWriteDeadline(time.Time{})
		f.wmu.Unlock()
	}
}

// recv returns the worker's next answer. A link silent for f.after is
// pinged, and closed as dead when f.dead more passes without a byte.
func (f *frameConn) recv() (*pb.WorkerResponse, error) {
	for {
		b, err := f.in.next(f.after, f.dead, frameWait, f.ping)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("answer: %w", err)
		}
		if len(b) == 0 {
			continue // the answer to a ping
		}
		// b is the link's read buffer, valid until the next read; the
		// answer outlives it (its caller reads it after this returns),
		// which holds because proto.Unmarshal copies bytes fields
		// (Result) and strings out of b.
		resp := &pb.WorkerResponse{}
		if err := proto.Unmarshal(b, resp); err != nil {
			f.close()
			return nil, fmt.Errorf("decode answer: %w", err)
		}
		return resp, nil
	}
}

// frameReader reads the frames of one link.
type frameReader struct {
	c   net.Conn
	r   *bufio.Reader
	max int
	buf []byte
}

// frameKeep is the largest read buffer a link keeps between frames.
const frameKeep = 64 << 10

func newFrameReader(c net.Conn, max int) frameReader {
	return frameReader{c: c, r: bufio.NewReaderSize(c, 32<<10), max: max}
}

// next returns the next frame's bytes, valid until the next call; empty
// for a ping. Silent for idle, the link is pinged (ping, if any) and
// given dead more, then fails; a frame begun is to arrive whole within
// rest. A frame over the limit is refused on its length, before room is
// made for it.
func (fr *frameReader) next(idle, dead, rest time.Duration, ping func()) ([]byte, error) {
	if cap(fr.buf) > frameKeep {
		fr.buf = nil
	}
	if fr.r.Buffered() == 0 {
		wait, pinged := idle, false
		for {
			fr.c.SetReadDeadline(time.Now().Add(wait))
			_, err := fr.r.Peek(1)
			if err == nil {
				break
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return nil, err
			}
			if ping == nil || pinged {
				return nil, fmt.Errorf("link silent for %v: %w", idle+dead, err)
			}
			ping()
			wait, pinged = dead, true
		}
		fr.c.SetReadDeadline(time.Now().Add(rest))
	}
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > fr.max {
		return nil, fmt.Errorf("frame of %d bytes over the limit of %d", n, fr.max)
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(fr.r, fr.buf[:n]); err != nil {
		return nil, err
	}
	return fr.buf[:n], nil
}

// frameCreds are the worker's server credentials: TLS as before, and a
// connection that chose frameALPN is served as a frame link (serve)
// instead of gRPC.
type frameCreds struct {
	grpccreds.TransportCredentials
	serve func(net.Conn)
}

// newFrameCreds returns the worker's server credentials over cfg.
func newFrameCreds(cfg *tls.Config, serve func(net.Conn)) frameCreds {
	cfg.NextProtos = []string{frameALPN, "h2"}
	return frameCreds{TransportCredentials: grpccreds.NewTLS(cfg), serve: serve}
}

// ServerHandshake implements grpccreds.TransportCredentials.
func (f frameCreds) ServerHandshake(raw net.Conn) (net.Conn, grpccreds.AuthInfo, error) {
	c, info, err := f.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	if ti, ok := info.(grpccreds.TLSInfo); ok && ti.State.NegotiatedProtocol == frameALPN {
		if fr, ok := raw.(*frameRawConn); ok {
			fr.dispatched.Store(true)
		}
		f.serve(c)
		return nil, nil, grpccreds.ErrConnDispatched
	}
	return c, info, nil
}

// Clone implements grpccreds.TransportCredentials.
func (f frameCreds) Clone() grpccreds.TransportCredentials {
	return frameCreds{TransportCredentials: f.TransportCredentials.Clone(), serve: f.serve}
}

// frameListener is the worker's gRPC listener. gRPC clears a
// connection's deadline once its handshake returns, also for one the
// frame credentials took (ErrConnDispatched); that could land after the
// frame link set a deadline of its own and leave a read with none, so a
// slow or silent peer held its link open for good. Its connections
// ignore gRPC's SetDeadline once dispatched.
type frameListener struct{ net.Listener }

// Accept implements net.Listener.
func (l frameListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// gRPC sets this on a *net.TCPConn only, which the wrapper
		// hides: unacknowledged data fails the connection as its
		// keepalive would (grpcKeepalive).
		setUserTimeout(tc, grpcPingTimeout)
	}
	return &frameRawConn{Conn: c}, nil
}

// frameRawConn is an accepted connection of frameListener.
type frameRawConn struct {
	net.Conn
	// dispatched is set when the connection became a frame link.
	dispatched atomic.Bool
}

// SetDeadline is gRPC's call (the frame link sets its read and write
// deadlines apart): ignored once the connection is a frame link.
func (c *frameRawConn) SetDeadline(t time.Time) error {
	if c.dispatched.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

// setUserTimeout sets c's TCP_USER_TIMEOUT to d; a failure leaves the
// system's default, as gRPC does.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { //nolint:errcheck // best effort, as gRPC's
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond)) //nolint:errcheck
	})
}

// frameServerConn is the worker's side of a frame link (callPeer).
type frameServerConn struct {
	c  net.Conn
	in frameReader
	// idle and wait are frameIdle and frameWait, or the server's.
	idle, wait time.Duration
	ctx        context.Context
	cancel     context.CancelFunc

	wmu  sync.Mutex
	wbuf []byte
}

// dispatchFrames serves c, a frame link, in a goroutine the node waits
// for.
func (s *workerServer) dispatchFrames(c net.Conn) {
	s.streams.Go(func() { s.serveFrames(c) })
}

// serveFrames serves the calls of frame link c until it ends or the node
// stops, then closes it.
func (s *workerServer) serveFrames(c net.Conn) {
	// gRPC's handshake deadline, on each half (frameRawConn ignores
	// SetDeadline once dispatched).
	c.SetReadDeadline(time.Time{})
	c.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	fc := &frameServerConn{c: c, in: newFrameReader(c, cmp.Or(s.maxMsg, defaultMaxMsg)),
		idle: cmp.Or(s.frameIdle, frameIdle), wait: cmp.Or(s.frameWait, frameWait), ctx: ctx, cancel: cancel}
	s.serveCalls(fc) //nolint:errcheck // the link's end is the answer
	cancel()
	c.Close()
}

// Context implements callPeer.
func (f *frameServerConn) Context() context.Context { return f.ctx }

// RecvMsg reads the next frame into m, a *sealedCall, answering pings.
// Its bytes are the connection's read buffer, valid until the next read.
func (f *frameServerConn) RecvMsg(m any) error {
	err := f.recv(m.(*sealedCall))
	if err != nil {
		// The main worker is gone, or broke the link: its calls end,
		// unanswered.
		f.cancel()
		f.c.Close()
	}
	return err
}

func (f *frameServerConn) recv(in *sealedCall) error {
	for {
		b, err := f.in.next(f.idle, 0, f.wait, nil)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			in.b, in.buf = b, nil
			return nil
		}
		if err := f.write([]byte{0, 0, 0, 0}); err != nil { // a ping's answer
			return err
		}
	}
}

// Send implements callPeer: it writes resp as one frame.
func (f *frameServerConn) Send(resp *pb.WorkerResponse) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	b, err := proto.MarshalOptions{}.MarshalAppend(append(f.wbuf[:0], 0, 0, 0, 0), resp)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-frameHeader))
	err = f.writeLocked(b)
	if cap(b) <= frameKeep {
		f.wbuf = b
	}
	return err
}

// write writes b, one frame, under the write lock.
func (f *frameServerConn) write(b []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.writeLocked(b)
}

// writeLocked writes b, within frameWait: a main worker that takes
// nothing (stopped) does not hold the calls waiting to answer, nor the
// worker's shutdown; the link closes instead.
func (f *frameServerConn) writeLocked(b []byte) error {
	f.c.SetWriteDeadline(time.Now().Add(f.wait))
	if _, err := f.c.Write(b); err != nil {
		f.cancel()
		f.c.Close()
		return err
	}
	return nil
}
