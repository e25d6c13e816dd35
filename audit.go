package main

// The audit log (-audit-log): one JSON line per REST request that reached
// the server, authenticated or refused, chained by SHA-256 and anchored by
// HMAC checkpoints so that a change, a removal or a reordering of lines is
// found by -role=audit-verify (auditverify.go). Lines are written by one
// goroutine that groups many requests' lines into one write and one
// fdatasync, as a commit log does. API.md "Audit log" describes the
// format; ARCHITECTURE.md where the audit sits in the request path.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	pb "deltadatabase/proto"
)

// The HKDF labels of the audit keys. Two keys, so that the hashes of
// names an operator asks for (POST /admin/audit/hash) tell nothing about
// the key that signs the checkpoints.
const (
	auditNamesKeyInfo = "deltadatabase audit names v1"
	auditChainKeyInfo = "deltadatabase audit checkpoints v1"
)

// Defaults of the audit flags.
const (
	// defaultAuditCheckpointEvery is -audit-checkpoint-every: lines after
	// the last checkpoint are protected by the SHA-256 chain alone, which
	// someone who may write the file can recompute; a checkpoint every 100
	// lines bounds that window at 100 lines for about 2 bytes and well under
	// a microsecond per line.
	defaultAuditCheckpointEvery = 100
	// defaultAuditFlushInterval is -audit-flush-interval: without
	// -audit-required, lines reach the disk at least this often (and
	// sooner when 256 KiB wait), so a crash loses at most this long.
	defaultAuditFlushInterval = time.Second
	// auditCheckpointAge writes a checkpoint after lines that waited this
	// long for one, so a quiet log is anchored too.
	auditCheckpointAge = time.Minute
	// auditFlushBytes starts a write without waiting for the interval.
	auditFlushBytes = 256 << 10
	// auditBufferBytes is the capacity of each of the two buffers lines
	// are queued in: room for what arrives while the writer is busy, so
	// that a queue does not grow by copying (the runtime grows a large
	// slice by a quarter at a time).
	auditBufferBytes = 4 * auditFlushBytes
	// auditMaxPending is the most bytes of lines waiting to be written;
	// further requests wait for the writer (a stalled disk slows requests
	// down instead of growing the memory).
	auditMaxPending = 16 << 20
)

// auditHashPrefix starts every name the audit log shows as an HMAC.
const auditHashPrefix = "hmac-sha256:"

// auditKeys are the keys derived from the master key for the audit log.
type auditKeys struct {
	// names hashes database names and entity keys (-audit-hmac-names,
	// POST /admin/audit/hash).
	names []byte
	// chain signs the checkpoints.
	chain []byte
}

// deriveAuditKeys derives the audit keys from the master key (HKDF-SHA256,
// one label each). Every main worker with the same master key derives the
// same keys, so hashes and checkpoints stay comparable across restarts.
func deriveAuditKeys(master []byte) (auditKeys, error) {
	names, err := hkdf.Key(sha256.New, master, nil, auditNamesKeyInfo, 32)
	if err != nil {
		return auditKeys{}, fmt.Errorf("derive audit names key: %w", err)
	}
	chain, err := hkdf.Key(sha256.New, master, nil, auditChainKeyInfo, 32)
	if err != nil {
		return auditKeys{}, fmt.Errorf("derive audit checkpoint key: %w", err)
	}
	return auditKeys{names: names, chain: chain}, nil
}

// hashName is the audit log's form of a name under -audit-hmac-names:
// auditHashPrefix and the hex HMAC-SHA256 of v under the names key.
func hashName(key []byte, v string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return auditHashPrefix + hex.EncodeToString(m.Sum(nil))
}

// auditOptions configure an audit log.
type auditOptions struct {
	// path is the file written; "-" is stdout.
	path   string
	stdout io.Writer
	keys   auditKeys
	// hmacNames writes database names and entity keys as HMACs.
	hmacNames bool
	// required refuses requests (503) whose line is not durable, and every
	// request once the log failed.
	required bool
	// maxBytes rotates the file once it holds this many bytes; 0 never.
	maxBytes int64
	// checkpointEvery is the lines between checkpoints; 0 is the default.
	checkpointEvery int
	// flushInterval bounds the wait of a line without required; 0 is the
	// default.
	flushInterval time.Duration
	now           func() time.Time
	log           *slog.Logger
}

// auditLog writes the audit lines. append adds a line to the chain in
// memory; run (one goroutine, the owner's) writes what was appended, one
// write and one fdatasync for every line waiting, and close writes the
// closing checkpoint. It is safe for concurrent use. After a failed write
// or sync the log stays failed until the process restarts: what reached
// the file is uncertain, and a chain written on top of it could not be
// verified.
type auditLog struct {
	o auditOptions
	// kick wakes run when a line waits for durability or enough bytes
	// wait.
	kick chan struct{}
	// flushMu serialises flushes (run's and close's); unsynced, under
	// it, says that lines were written and not yet synced.
	flushMu  sync.Mutex
	unsynced bool
	// f is the open file; nil for stdout. out is where lines go.
	f   *os.File
	out io.Writer
	// gen is the number the current file gets when rotated.
	gen int
	// noSync is set for a pipe or device, which fdatasync does not
	// apply to.
	noSync bool

	mu   sync.Mutex
	cond *sync.Cond // on mu: durable moved, or the log failed
	// seq is the sequence number of the last line appended, prev its
	// SHA-256 (the chain value the next line carries).
	seq  uint64
	prev [32]byte
	// sinceCheckpoint counts the lines after the last checkpoint,
	// lastCheckpoint is when it was written.
	sinceCheckpoint int
	lastCheckpoint  time.Time
	// fileBytes is what the current file holds once pending is written.
	fileBytes int64
	// pending are the lines appended and not yet written; cuts are the
	// offsets in pending where the file is rotated.
	pending []byte
	spare   []byte
	cuts    []int
	// durable is the seq of the last line written and synced; syncs
	// counts the writes with their fdatasync (many lines share one).
	durable, syncs uint64
	// err is the failure that stopped the log; closed is set by close.
	err    error
	closed bool
}

// openAuditLog opens (or creates, 0600) the audit file of o and continues
// its chain: the first line it adds is an "open" checkpoint that carries
// the chain value of the file's last line and says whether the previous
// writer closed it. A torn last line (a crash in the middle of a write)
// is cut off and counted in that checkpoint.
func openAuditLog(o auditOptions) (*auditLog, error) {
	o.checkpointEvery = cmpOr(o.checkpointEvery, defaultAuditCheckpointEvery)
	o.flushInterval = cmpOr(o.flushInterval, defaultAuditFlushInterval)
	if o.now == nil {
		o.now = time.Now
	}
	l := &auditLog{o: o, kick: make(chan struct{}, 1),
		pending: make([]byte, 0, auditBufferBytes), spare: make([]byte, 0, auditBufferBytes)}
	l.cond = sync.NewCond(&l.mu)
	after, dropped := "new", int64(0)
	if o.path == "-" {
		l.out = o.stdout
		l.o.maxBytes = 0
	} else {
		var err error
		if after, dropped, err = l.openFile(); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	l.appendCheckpoint(auditCheckpoint{Reason: "open", After: after, DroppedBytes: dropped})
	l.mu.Unlock()
	return l, nil
}

// cmpOr is v, or def when v is zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// openFile opens the audit file for appending and reads where its chain
// ends. after says how the previous writer left it: "new" (no file),
// "close" (closed cleanly) or "crash"; dropped is the torn tail cut off.
func (l *auditLog) openFile() (after string, dropped int64, err error) {
	f, err := os.OpenFile(l.o.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("-audit-log: %w", err) // the error names the path
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("-audit-log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		// A pipe or a device (a collector's FIFO): written as it is, never
		// rotated; its chain starts anew.
		l.f, l.out, l.o.maxBytes, l.noSync = f, f, 0, true
		return "new", 0, nil
	}
	if err := f.Chmod(0o600); err != nil {
		return "", 0, fmt.Errorf("-audit-log: chmod %s: %w", l.o.path, err)
	}
	tail, err := readAuditTail(f)
	if err != nil {
		return "", 0, fmt.Errorf("-audit-log %s: %w", l.o.path, err)
	}
	if tail.dropped > 0 {
		if err := f.Truncate(tail.size - tail.dropped); err != nil {
			return "", 0, fmt.Errorf("-audit-log: cut the torn last line of %s: %w", l.o.path, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return "", 0, fmt.Errorf("-audit-log: seek %s: %w", l.o.path, err)
	}
	l.f, l.out = f, f
	l.seq, l.prev, l.durable, l.fileBytes = tail.seq, tail.hash, tail.seq, tail.size-tail.dropped
	if l.gen, err = nextAuditGen(l.o.path); err != nil {
		return "", 0, err
	}
	return tail.after, tail.dropped, nil
}

// auditTail is where an existing audit file's chain ends.
type auditTail struct {
	size, dropped int64
	seq           uint64
	hash          [32]byte
	after         string
}

// maxAuditLine is the longest line the audit log reads back (at start and
// in audit-verify): far above any line it writes.
const maxAuditLine = 16 << 20

// readAuditTail reads the last complete line of f: its seq and SHA-256
// continue the chain. Bytes after the last newline are a torn line.
func readAuditTail(f *os.File) (auditTail, error) {
	fi, err := f.Stat()
	if err != nil {
		return auditTail{}, err
	}
	t := auditTail{size: fi.Size(), after: "new"}
	if t.size == 0 {
		return t, nil
	}
	last, dropped, err := lastLine(f, t.size)
	if err != nil {
		return auditTail{}, err
	}
	var ln auditLineHead
	if err := json.Unmarshal(last, &ln); err != nil || ln.Seq == 0 {
		return auditTail{}, errors.New("its last line is not an audit line; move it away to start a new log")
	}
	t.dropped, t.seq, t.hash, t.after = dropped, ln.Seq, sha256.Sum256(last), "crash"
	if ln.Type == "checkpoint" && ln.Reason == "close" {
		t.after = "close"
	}
	return t, nil
}

// lastLine is the last complete line of f (size bytes, without its
// newline) and the number of bytes after it. It reads back from the end,
// 64 KiB first, more while no line is found, up to maxAuditLine.
func lastLine(f *os.File, size int64) (line []byte, dropped int64, err error) {
	for n := min(size, 64<<10); ; n = min(size, n*4) {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, size-n); err != nil {
			return nil, 0, fmt.Errorf("read the last line: %w", err)
		}
		end := bytes.LastIndexByte(buf, '\n')
		start := bytes.LastIndexByte(buf[:max(end, 0)], '\n') + 1
		if end >= 0 && (start > 0 || n == size) {
			return buf[start:end], n - int64(end) - 1, nil
		}
		if n == size || n >= maxAuditLine {
			return nil, 0, errors.New("holds no complete audit line at its end; move it away to start a new log")
		}
	}
}

// nextAuditGen is the number the next rotated file of path gets: one
// more than the highest path.NNNNNN there is.
func nextAuditGen(path string) (int, error) {
	names, err := rotatedAuditFiles(path)
	if err != nil {
		return 0, err
	}
	gen := 1
	if len(names) > 0 {
		last := names[len(names)-1]
		n, _ := strconv.Atoi(last[strings.LastIndexByte(last, '.')+1:])
		gen = n + 1
	}
	return gen, nil
}

// rotatedAuditFiles lists path's rotated files, path.NNNNNN, oldest
// first.
func rotatedAuditFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".[0-9][0-9][0-9][0-9][0-9][0-9]*")
	if err != nil {
		return nil, fmt.Errorf("list rotated audit files of %s: %w", path, err)
	}
	var out []string
	for _, m := range matches {
		if _, err := strconv.Atoi(m[len(path)+1:]); err == nil {
			out = append(out, m)
		}
	}
	gen := func(s string) int { n, _ := strconv.Atoi(s[len(path)+1:]); return n }
	for i := 1; i < len(out); i++ { // few files: insertion sort by number
		for j := i; j > 0 && gen(out[j]) < gen(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// globEscape escapes the glob metacharacters of a path.
func globEscape(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rotatedName is the name the file of generation gen gets when rotated.
func rotatedName(path string, gen int) string {
	return fmt.Sprintf("%s.%06d", path, gen)
}

// auditLineHead is what every line has in common, as read back.
type auditLineHead struct {
	Seq    uint64 `json:"seq"`
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Prev   string `json:"prev"`
	HMAC   string `json:"hmac"`
}

// auditPrincipal is who a request ran as: the key ID ("admin" for the
// admin key) and name, or the OIDC subject.
type auditPrincipal struct {
	ID, Name, Subject string
}

// auditEntry is a request line (API.md "Audit log" names its members);
// seq and prev are added when it joins the chain. Never a credential, a
// body or a query string beyond the entity key. Empty strings and zero
// numbers are left out of the line.
type auditEntry struct {
	// Time is when the answer's status was known (in the local zone,
	// as the log's lines); zero is now.
	Time      time.Time
	RequestID string
	// Principal is nil when the request did not authenticate.
	Principal *auditPrincipal
	Client    string
	Method    string
	Route     string
	Database  string
	Key       string
	Keys      []string
	// KeysTotal is the number of keys the body named when Keys holds
	// only the first maxAuditKeys.
	KeysTotal int
	Status    int
	// ETagBefore is the version a write replaced or deleted, as its
	// worker answered it (WantPrevious), else the If-Match it succeeded
	// under. ETagAfter is the ETag answered: the version read or written,
	// or the current one of a 412.
	ETagBefore, ETagAfter string
	// GRPCCode is the code a gRPC call was answered with ("OK"); "" on
	// REST.
	GRPCCode string
}

// auditLineBufs recycles the buffers request lines are encoded in.
var auditLineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendMembers appends e's members, without braces, in the order of
// API.md's table: hand-encoded (appendJSONString), as the access line is,
// because encoding/json cost a warm GET more than the rest of the audit.
func (e *auditEntry) appendMembers(b []byte) []byte {
	b = append(b, `"time":"`...)
	b = appendLogTime(b, e.Time, true)
	b = append(b, `","type":"request","request_id":`...)
	b = appendJSONString(b, e.RequestID)
	if p := e.Principal; p != nil {
		b = append(b, `,"principal":{`...)
		b = appendOptionalMember(b, "id", p.ID, true)
		b = appendOptionalMember(b, "name", p.Name, p.ID == "")
		b = appendOptionalMember(b, "subject", p.Subject, p.ID == "" && p.Name == "")
		b = append(b, '}')
	}
	b = append(b, `,"client":`...)
	b = appendJSONString(b, e.Client)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, e.Route)
	b = appendOptionalMember(b, "database", e.Database, false)
	b = appendOptionalMember(b, "key", e.Key, false)
	if len(e.Keys) > 0 {
		b = append(b, `,"keys":[`...)
		for i, k := range e.Keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
		}
		b = append(b, ']')
	}
	if e.KeysTotal > 0 {
		b = append(b, `,"keys_total":`...)
		b = strconv.AppendInt(b, int64(e.KeysTotal), 10)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = appendOptionalMember(b, "etag_before", e.ETagBefore, false)
	b = appendOptionalMember(b, "etag_after", e.ETagAfter, false)
	return appendOptionalMember(b, "grpc_code", e.GRPCCode, false)
}

// appendOptionalMember appends `,"name":"v"` (without the comma when
// first), nothing when v is empty.
func appendOptionalMember(b []byte, name, v string, first bool) []byte {
	if v == "" {
		return b
	}
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return appendJSONString(b, v)
}

// appendRequest adds e's line to the chain and returns its seq, which
// waitDurable waits for. It fails once the log failed or closed. Without
// required, a caller waits here only while auditMaxPending bytes wait.
func (l *auditLog) appendRequest(e *auditEntry) (uint64, error) {
	if e.Time.IsZero() {
		e.Time = l.o.now()
	}
	bp := auditLineBufs.Get().(*[]byte)
	body := e.appendMembers((*bp)[:0])
	defer func() {
		*bp = body
		auditLineBufs.Put(bp)
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.o.required && len(l.pending) > auditMaxPending && l.err == nil && !l.closed {
		l.cond.Wait()
	}
	if err := l.usable(); err != nil {
		return 0, err
	}
	seq := l.appendLine(body, "")
	l.sinceCheckpoint++
	if l.sinceCheckpoint >= l.o.checkpointEvery {
		l.appendCheckpoint(auditCheckpoint{Reason: "every"})
	}
	if l.o.maxBytes > 0 && l.fileBytes >= l.o.maxBytes {
		l.appendCheckpoint(auditCheckpoint{Reason: "rotate"})
		l.cuts = append(l.cuts, len(l.pending))
		l.fileBytes = 0
		l.appendCheckpoint(auditCheckpoint{Reason: "open", After: "rotate"})
	}
	if l.o.required || len(l.pending) >= auditFlushBytes {
		wake(l.kick)
	}
	return seq, nil
}

// usable is nil while lines may be appended. Called with mu held.
func (l *auditLog) usable() error {
	switch {
	case l.err != nil:
		return fmt.Errorf("audit log failed: %w", l.err)
	case l.closed:
		return errors.New("audit log closed")
	}
	return nil
}

// appendLine adds one line to the chain: body are the members of a JSON
// object, without braces; seq goes first, prev (the chain value of the line
// before) last, and with a non-empty macKey the HMAC of everything before
// it after that. Called with mu held.
func (l *auditLog) appendLine(body []byte, macKey string) uint64 {
	l.seq++
	start := len(l.pending)
	b := append(l.pending, `{"seq":`...)
	b = strconv.AppendUint(b, l.seq, 10)
	if len(body) > 0 {
		b = append(b, ',')
		b = append(b, body...)
	}
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, l.prev[:])
	b = append(b, '"')
	if macKey != "" {
		b = appendCheckpointMAC(b, start, []byte(macKey))
	}
	b = append(b, '}')
	l.prev = sha256.Sum256(b[start:])
	l.pending = append(b, '\n')
	l.fileBytes += int64(len(l.pending) - start)
	return l.seq
}

// appendCheckpointMAC appends `,"hmac":"<hex>"` to b, the HMAC-SHA256
// under key of the line so far (b[start:]).
func appendCheckpointMAC(b []byte, start int, key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b[start:])
	b = append(b, `,"hmac":"`...)
	b = hex.AppendEncode(b, m.Sum(nil))
	return append(b, '"')
}

// auditCheckpoint is the body of a checkpoint line (API.md "Audit log").
type auditCheckpoint struct {
	Time string `json:"time"`
	Type string `json:"type"`
	// Reason is open (a writer started: the process, or a new file after
	// a rotation), every (-audit-checkpoint-every lines, or a quiet
	// minute), rotate (the last line of a rotated file) or close.
	Reason string `json:"reason"`
	// After, on open, is how the log was left: new, close, crash (not
	// closed) or rotate; DroppedBytes the torn last line cut off.
	After        string `json:"after,omitempty"`
	DroppedBytes int64  `json:"dropped_bytes,omitempty"`
}

// appendCheckpoint adds checkpoint line c: its HMAC under the chain key
// covers its chain value, so the whole chain before it. Called with mu
// held.
func (l *auditLog) appendCheckpoint(c auditCheckpoint) {
	c.Time, c.Type = l.o.now().Format(time.RFC3339Nano), "checkpoint"
	body, _ := json.Marshal(c) // strings and a number: cannot fail
	l.appendLine(body[1:len(body)-1], string(l.o.keys.chain))
	l.sinceCheckpoint = 0
	l.lastCheckpoint = l.o.now()
}

// waitDurable waits until the line seq is written and synced; an error
// when the log failed first.
func (l *auditLog) waitDurable(seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.durable < seq && l.err == nil {
		l.cond.Wait()
	}
	if l.durable >= seq {
		return nil
	}
	return fmt.Errorf("audit log failed: %w", l.err)
}

// failed reports whether the log stopped after a failed write.
func (l *auditLog) failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err != nil
}

// run writes the pending lines until ctx ends: at once when a line waits
// for durability (many requests share the write and the fdatasync), else
// every flush interval; a quiet log gets a checkpoint once its last lines
// waited auditCheckpointAge. The owner runs it in a goroutine it waits
// for, and calls close after.
func (l *auditLog) run(ctx context.Context) {
	t := time.NewTicker(l.o.flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flush(true)
			return
		case <-l.kick:
			// Required: lines wait for this sync. Otherwise enough bytes
			// wait to be written; the tick syncs them.
			l.flush(l.o.required)
		case <-t.C:
			l.checkpointIfOld()
			l.flush(true)
		}
	}
}

// checkpointIfOld adds a checkpoint when lines waited long enough for one.
func (l *auditLog) checkpointIfOld() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sinceCheckpoint > 0 && l.usable() == nil && l.o.now().Sub(l.lastCheckpoint) >= auditCheckpointAge {
		l.appendCheckpoint(auditCheckpoint{Reason: "every"})
	}
}

// flush writes the pending lines, rotating at the cuts, and with sync
// makes everything written durable and wakes the requests waiting for
// it. A failure stops the log.
func (l *auditLog) flush(sync bool) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	data, cuts, upto := l.pending, l.cuts, l.seq
	l.pending, l.spare, l.cuts = l.spare[:0], nil, nil
	stopped := l.err != nil
	l.mu.Unlock()
	if stopped || len(data) == 0 && !(sync && l.unsynced) {
		l.mu.Lock()
		l.spare = data[:0]
		l.mu.Unlock()
		return
	}
	err := l.writeOut(data, cuts)
	if err == nil && sync {
		err = l.sync()
	}
	l.unsynced = !sync
	l.mu.Lock()
	switch {
	case err != nil:
		l.err = err
	case sync:
		l.durable = upto
		l.syncs++
	}
	l.spare = data[:0]
	l.cond.Broadcast()
	l.mu.Unlock()
	if err != nil {
		l.o.log.Error("audit log failed; it stays failed until restart", "audit_log", l.o.path, "required", l.o.required, attrErr, err)
	}
}

// writeOut writes data, rotating the file at each cut.
func (l *auditLog) writeOut(data []byte, cuts []int) error {
	start := 0
	for _, c := range cuts {
		if err := l.write(data[start:c]); err != nil {
			return err
		}
		if err := l.rotate(); err != nil {
			return err
		}
		start = c
	}
	return l.write(data[start:])
}

// write writes b, whole, to the audit file.
func (l *auditLog) write(b []byte) error {
	if _, err := l.out.Write(b); err != nil {
		return fmt.Errorf("audit log: %w", err) // the error names the file
	}
	return nil
}

// sync makes what was written durable (fdatasync); stdout is the
// collector's to keep.
func (l *auditLog) sync() error {
	if l.f == nil || l.noSync {
		return nil
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("sync %s: %w", l.o.path, err)
	}
	return nil
}

// rotate ends the current file (synced, closed, renamed to its
// generation's name, the directory synced) and opens a new one, 0600.
func (l *auditLog) rotate() error {
	if err := l.sync(); err != nil {
		return err
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", l.o.path, err)
	}
	if err := os.Rename(l.o.path, rotatedName(l.o.path, l.gen)); err != nil {
		return fmt.Errorf("rotate %s: %w", l.o.path, err)
	}
	l.gen++
	f, err := os.OpenFile(l.o.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rotate: open %s: %w", l.o.path, err)
	}
	l.f, l.out = f, f
	if err := syncDir(filepath.Dir(l.o.path)); err != nil {
		return fmt.Errorf("rotate: sync the directory of %s: %w", l.o.path, err)
	}
	return nil
}

// close writes the closing checkpoint and what is pending, and closes the
// file. run must have returned. Lines appended after it fail.
func (l *auditLog) close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	if l.err == nil {
		l.appendCheckpoint(auditCheckpoint{Reason: "close"})
	}
	l.closed = true
	l.mu.Unlock()
	l.flush(true)
	l.mu.Lock()
	err := l.err
	l.cond.Broadcast()
	l.mu.Unlock()
	if l.f != nil {
		if cerr := l.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", l.o.path, cerr)
		}
	}
	return err
}

// auditWriter is the ResponseWriter an audited request's handler writes
// to: when the answer's status is known (the first WriteHeader or Write)
// it writes the request's line, and with required waits until the line
// is durable. A line that cannot be written replaces the answer with a
// 503 under required; the handler's later writes are then dropped.
type auditWriter struct {
	http.ResponseWriter
	s *restServer
	r *http.Request
	// route is the matched pattern, "" before routing or when none matched.
	route string
	info  *requestInfo
	done  bool
	// refused is set when the answer was replaced by the 503.
	refused bool
}

// WriteHeader writes the request's line, then the status (or the 503).
func (a *auditWriter) WriteHeader(code int) {
	if a.done {
		if !a.refused {
			a.ResponseWriter.WriteHeader(code)
		}
		return
	}
	a.done = true
	if err := a.s.audit.record(a.entry(code)); err != nil && !probeRoutes[a.route] {
		a.refuse(err)
		return
	}
	a.ResponseWriter.WriteHeader(code)
}

// Write sends b after the status (200 if none was written).
func (a *auditWriter) Write(b []byte) (int, error) {
	if !a.done {
		a.WriteHeader(http.StatusOK)
	}
	if a.refused {
		return 0, fmt.Errorf("answer replaced: %w", errAuditUnavailable)
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (a *auditWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// admit records the route pattern r matched and reports whether the
// request may be served: not when the audit log refuses every request
// (it answers the 503 itself), except the probes.
func (a *auditWriter) admit(pattern string) bool {
	a.route = pattern
	if !a.s.audit.refusesAll() || probeRoutes[pattern] {
		return true
	}
	a.done = true
	a.s.writeError(a.ResponseWriter, a.r, errAuditUnavailable)
	return false
}

// finish writes the line of a request whose handler wrote nothing.
func (a *auditWriter) finish() {
	if !a.done {
		a.WriteHeader(http.StatusOK)
	}
}

// refuse answers the 503 of a line that could not be written, without
// the headers the handler set for its own answer.
func (a *auditWriter) refuse(err error) {
	a.refused = true
	h := a.ResponseWriter.Header()
	for k := range h {
		if k != "X-Request-Id" {
			delete(h, k)
		}
	}
	a.s.log.ErrorContext(a.r.Context(), "request refused: audit line not written", attrRoute, a.route, attrErr, err)
	writeJSON(a.ResponseWriter, http.StatusServiceUnavailable,
		map[string]string{"error": publicMessage(errAuditUnavailable, requestIDFrom(a.r.Context()))})
}

// entry is the audit line of the request answered with status code.
func (a *auditWriter) entry(code int) *auditEntry {
	r := a.r
	e := &auditEntry{Time: a.s.audit.o.now(), RequestID: requestIDFrom(r.Context()),
		Client: a.s.auth.clientOf(r), Method: r.Method, Route: a.route, Status: code,
		ETagAfter: strings.Trim(headerValue(a.ResponseWriter.Header(), "Etag"), `"`)}
	if p := a.info.who; p.clientID != "" {
		e.Principal = &auditPrincipal{ID: p.clientID, Name: p.name, Subject: p.subject}
	}
	if a.route != "" {
		e.Database = a.s.audit.name(r.PathValue("db"))
	}
	if strings.Contains(a.route, " /entity/") {
		key, _ := queryParam(r.URL.RawQuery, "key")
		e.Key = a.s.audit.name(key)
		if m := r.Header.Get("If-Match"); m != "" && code < 300 {
			e.ETagBefore = strings.Trim(m, `"`)
		}
		if a.info.etagBefore != "" && code < 300 {
			e.ETagBefore = a.info.etagBefore
		}
	}
	for _, k := range a.info.keys {
		e.Keys = append(e.Keys, a.s.audit.name(k))
	}
	e.KeysTotal = a.info.keysTotal
	return e
}

// headerValue is h's first value of canonical key k: Header.Get without
// canonicalizing k every request.
func headerValue(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// name is v as the audit log shows it: itself, or its HMAC under
// -audit-hmac-names; "" stays "".
func (l *auditLog) name(v string) string {
	if v == "" || !l.o.hmacNames {
		return v
	}
	return hashName(l.o.keys.names, v)
}

// record appends e and, with required, waits until it is durable. Without
// required a failed log loses the line (the failure was logged once) and
// the request is answered.
func (l *auditLog) record(e *auditEntry) error {
	seq, err := l.appendRequest(e)
	if err == nil && l.o.required {
		err = l.waitDurable(seq)
	}
	if !l.o.required {
		return nil
	}
	return err
}

// refusesAll reports whether every request is to be refused: the log
// is required and failed. Readiness reports the same.
func (l *auditLog) refusesAll() bool {
	return l != nil && l.o.required && l.failed()
}

// grpcProcessRoute is the route of a client's gRPC Process call in the
// audit log; its method is the operation (GET, PUT, PATCH, DELETE).
const grpcProcessRoute = "/deltadb.MainWorker/Process"

// auditProcess writes the audit line of a client's Process call answered
// resp or err, made by p (zero when it did not authenticate). Under
// -audit-required a line not written is errAuditUnavailable, which
// replaces the answer.
func (m *mainService) auditProcess(ctx context.Context, req *pb.ProcessRequest, p principal, resp *pb.WorkerResponse, err error) error {
	l := m.audit
	if l == nil {
		return nil
	}
	e := &auditEntry{Time: l.o.now(), RequestID: requestIDFrom(ctx), Client: peerAddr(ctx),
		Method: req.GetOperation(), Route: grpcProcessRoute, Database: l.name(req.GetDatabaseName()),
		Key: l.name(req.GetEntityKey()), Status: http.StatusOK, GRPCCode: codes.OK.String()}
	if code, gone := clientGoneCode(ctx, err); gone {
		e.Status, e.GRPCCode = statusClientClosed, code.String()
	} else if err != nil {
		e.Status, e.GRPCCode = statusOf(err), grpcCode(err).String()
	} else {
		e.ETagBefore, e.ETagAfter = cmp.Or(resp.GetPreviousVersion(), req.GetIfMatch()), resp.GetVersion()
	}
	if p.clientID != "" {
		e.Principal = &auditPrincipal{ID: p.clientID, Name: p.name, Subject: p.subject}
	}
	if rerr := l.record(e); rerr != nil {
		return fmt.Errorf("audit line of a Process call: %v: %w", rerr, errAuditUnavailable)
	}
	return nil
}

// probeRoutes are answered even when the audit log refuses requests:
// liveness stays true and readiness names the failed audit log.
var probeRoutes = map[string]bool{"GET /health": true, "GET /healthz": true, "GET /readyz": true}

// auditHashRequest is the body of POST /admin/audit/hash.
type auditHashRequest struct {
	Input string `json:"input"`
}

// maxAuditHashInput bounds the value POST /admin/audit/hash hashes.
const maxAuditHashInput = 4096

// handleAuditHash is POST /admin/audit/hash: the HMAC of a value under the
// audit names key, as -audit-hmac-names writes names, so that an operator
// can find a database or entity key in the log. A key limited to some
// databases may not ask: the hash of a guessed name would tell whether
// the log holds a database it may not see.
func (s *restServer) handleAuditHash(w http.ResponseWriter, r *http.Request, p principal) error {
	if p.databases != nil && !p.admin {
		return reqErrorf(errForbidden, "a credential limited to some databases may not hash audit names")
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req auditHashRequest
	if err := decodeJSONBody(body, &req, `{"input": "<value>"}`); err != nil {
		return err
	}
	if req.Input == "" || len(req.Input) > maxAuditHashInput {
		return reqErrorf(errInvalid, "input must be 1 to %d bytes", maxAuditHashInput)
	}
	writeJSON(w, http.StatusOK, map[string]string{"hash": hashName(s.auditNamesKey, req.Input)})
	return nil
}
