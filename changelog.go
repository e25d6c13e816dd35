package main

// The change log: the change feed's durable record (feed.go), kept by the
// main worker under the storage root (`_changes/`). Every write routed
// through the main worker logs an intent before its owner answers and a
// completion (or an abort) after; completions carry the feed's sequence
// numbers. Records hold names, ETags and times, never documents.
// Segments are append-only files of records framed as the write-ahead
// log's (wal.go), group-committed by one writer goroutine: one write and
// one fdatasync per group.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Record types of the change log.
const (
	changeIntent = "i" // a write routed to its owner, outcome not known yet
	changeDone   = "c" // a write applied: a change of the feed, with its seq
	changeAbort  = "a" // a write that changed nothing
)

// changesDirName is the change log's directory under the storage root.
const changesDirName = "_changes"

// changeSegmentMax is the size past which the log starts a new segment
// file, or a sixteenth of -changes-retention-bytes when that is less:
// retention drops whole segments.
const changeSegmentMax = 4 << 20

// changeFileReads is how many segments' worth of bytes the reads from
// before the tail hold at once (each reads a whole segment into memory and
// walks it): the other reads wait their turn. Without a bound, 200 page
// requests of a database at once took a server from 0.9 to 1.9 GB.
const changeFileReads = 8

// changeFileReaders is how many reads from before the tail run at once:
// half the cores, at least one. Each walks whole segments, decoding every
// record (0.10-0.24 s of CPU for a page that reads 20,000 changes), so
// the segment bound alone (changeFileReads) let 8 of them take every core
// of a small machine from the requests that need little. The others wait
// their turn, in arrival order, changeReadWait at most.
func changeFileReaders() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// changeReadWait bounds how long a read from before the tail waits for
// its turn (changeFileReaders): then 503, as a read waiting for room in
// the read budget is.
const changeReadWait = callWait

// changeRetentionMin is the least -changes-retention-bytes.
const changeRetentionMin = 64 << 10

// changeTailLen is how many of the latest changes stay in memory for live
// readers, who then never read the files.
const changeTailLen = 8192

// changeRec is one record of the change log. Op is "put" or "delete"; At
// is Unix nanoseconds.
type changeRec struct {
	T    string `json:"t"`
	ID   uint64 `json:"id,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
	DB   string `json:"db,omitempty"`
	Key  string `json:"k,omitempty"`
	Op   string `json:"op,omitempty"`
	ETag string `json:"etag,omitempty"`
	At   int64  `json:"at,omitempty"`
}

// changeSegment is one segment file: the first seq it may hold, its size
// and the time of its last record.
type changeSegment struct {
	first uint64
	size  int64
	last  time.Time
}

// changeGroup is the records of one commit. done closes once they are
// durable (err nil) or failed.
type changeGroup struct {
	// payloads are the encoded records (changeJSON), framed by the
	// writer once it knows their numbers in the segment; buf is the
	// group's frames.
	payloads [][]byte
	buf      []byte
	recs     []changeRec
	first    uint64
	done     chan struct{}
	err      error
}

// wait waits for g's commit and returns its error.
func (g *changeGroup) wait() error {
	<-g.done
	return g.err
}

// changeLog is the change log of one main worker. append adds records to
// the group being formed; the writer goroutine (run) commits groups in
// order. Safe for concurrent use once openChangeLog returns.
type changeLog struct {
	// lock holds the log's lock file (lockChangeLog) until close.
	lock *os.File
	dir  string
	now  func() time.Time
	// maxAge and maxBytes are the retention; segBytes the segment size.
	maxAge   time.Duration
	maxBytes int64
	segBytes int64
	// fileReads holds the bytes of the segments read into memory
	// (readFiles), changeFileReads segments' worth at most.
	fileReads *byteBudget
	// fileReaders holds a token for each read from before the tail under
	// way (changeFileReaders); readWait bounds the wait for one
	// (changeReadWait; tests shorten it).
	fileReaders chan struct{}
	readWait    time.Duration

	mu      sync.Mutex
	forming *changeGroup
	nextSeq uint64
	nextID  uint64
	segs    []changeSegment
	// notify is closed and replaced whenever durable advances.
	notify chan struct{}
	// tail holds the latest durable changes, seqs contiguous.
	tail []changeRec
	// broken is the error of a failed commit: the segment is not written
	// again through its descriptor (a failed fdatasync may have lost
	// pages) until repair cuts it back to its last durable record; no
	// record is taken meanwhile.
	broken error

	durable atomic.Uint64
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	// f is the current segment and segNext the number its next record
	// gets (from 1 in each segment); alloc is f's size, zeros after its
	// records (written ahead as the write-ahead log's segments are,
	// walPrealloc); all the writer goroutine's only.
	f       *os.File
	segNext uint64
	alloc   int64
	// committed is called after each commit with the group (feed.go).
	committed func(*changeGroup)
	// ops write and sync the segments (osFileOps; a test injects
	// faults).
	ops *fileOps
	// mark, when set, records outside the log's directory a number above
	// every seq given; reserved is the last number recorded (or read at
	// open): seqs below it may be given without recording another. The
	// writer goroutine's only once open.
	mark     seqMark
	reserved uint64
}

// seqMark is where a change log records, outside its directory, a number
// above every seq it gave (the storage, feed.go): a log made anew where
// one was lost starts past it, so that a cursor of the lost log never
// names a change of the new one, even when the clock was set back before
// the lost log was made. load is 0 when nothing is recorded.
type seqMark interface {
	load() (uint64, error)
	store(n uint64) error
}

// seqReserve is how many seqs a recorded mark leaves to give before the
// next must be recorded: one write per four billion changes, and a log
// made anew starts at most that far past the last seq given.
const seqReserve = 1 << 32

// A change record's payload: a version byte and three zero bytes, u64
// the record's number in its segment (from 1), u64 the number of the
// first record of its group commit, then the record as JSON. The numbers
// let a scan tell a torn tail from damage as the write-ahead log's does
// (tornTail). Records are framed by appendFrame (wal.go: u32 length, u32
// CRC32C, payload, 8-byte aligned).
const (
	changeVersion = 1
	changeHeader  = 20
)

// errChangeLogDamaged marks a change log record that fails its checksum
// or does not decode where a torn write cannot explain it.
var errChangeLogDamaged = fmt.Errorf("change log damaged: %w", errCorrupt)

// changeJSON encodes a record's JSON. The entity key is stored
// hex-encoded, as entity file names hold it, so no key a client chose
// appears as plain text in the storage.
func changeJSON(rec changeRec) []byte {
	rec.Key = hex.EncodeToString([]byte(rec.Key))
	return appendChangeJSON(make([]byte, 0, 64+len(rec.DB)+len(rec.Key)+len(rec.ETag)), rec)
}

// appendChangeJSON appends rec's JSON without reflection: the members
// json.Marshal writes, in its order, omitting empty ones as it does;
// strings escaped as the log's lines are (appendJSONString), which
// decodes to what json.Marshal's escapes decode to.
func appendChangeJSON(b []byte, rec changeRec) []byte {
	b = appendJSONString(append(b, `{"t":`...), rec.T)
	b = appendMemberUint(b, `,"id":`, rec.ID)
	b = appendMemberUint(b, `,"seq":`, rec.Seq)
	b = appendMemberString(b, `,"db":`, rec.DB)
	b = appendMemberString(b, `,"k":`, rec.Key)
	b = appendMemberString(b, `,"op":`, rec.Op)
	b = appendMemberString(b, `,"etag":`, rec.ETag)
	if rec.At != 0 {
		b = strconv.AppendInt(append(b, `,"at":`...), rec.At, 10)
	}
	return append(b, '}')
}

// appendMemberUint appends an omitempty number member, name then v;
// nothing when v is 0.
func appendMemberUint(b []byte, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, name...), v, 10)
}

// appendMemberString appends an omitempty string member, name then v;
// nothing when v is empty.
func appendMemberString(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, name...), v)
}

// appendChangeFrame appends the frame of a record's JSON js, record n of
// its segment in the group commit whose first record is batch.
func appendChangeFrame(buf, js []byte, n, batch uint64) []byte {
	p := make([]byte, 0, changeHeader+len(js))
	p = append(p, changeVersion, 0, 0, 0)
	p = binary.LittleEndian.AppendUint64(p, n)
	p = binary.LittleEndian.AppendUint64(p, batch)
	return appendFrame(buf, append(p, js...))
}

// decodeChangeFrame reads a frame's payload: the record and its numbers.
func decodeChangeFrame(p []byte) (rec changeRec, n, batch uint64, err error) {
	if len(p) < changeHeader || p[0] != changeVersion {
		return rec, 0, 0, errors.New("decode change record: not a version 1 record")
	}
	n, batch = binary.LittleEndian.Uint64(p[4:]), binary.LittleEndian.Uint64(p[12:])
	if batch == 0 || batch > n {
		return rec, 0, 0, errors.New("decode change record: bad numbers")
	}
	rec, err = decodeChangeRec(p[changeHeader:])
	return rec, n, batch, err
}

// changePos is the framePos of change records.
func changePos(p []byte) (uint64, uint64, bool) {
	_, n, batch, err := decodeChangeFrame(p)
	return n, batch, err == nil
}

// changeScan is what scanChangeSegment read of a segment: the offset
// after its last good frame, the number of the record after it, and
// whether bytes after end were a torn tail.
type changeScan struct {
	end  int64
	next uint64
	torn bool
}

// scanChangeSegment hands f the records of a segment's bytes in order
// until f returns false. last says whether it is the log's last segment,
// the only one a crash can have torn: a bad frame there with no later
// group commit after it ends the scan as a torn tail; any other bad
// frame is damage, an error wrapping errChangeLogDamaged that names the
// file and the offset.
func scanChangeSegment(path string, data []byte, last bool, f func(changeRec) bool) (changeScan, error) {
	sc := changeScan{next: 1}
	prevBatch := uint64(0)
	for sc.end < int64(len(data)) {
		payload, next, ok := frameAt(data, sc.end)
		if ok && payload[0] != changeVersion {
			// Whole and checksummed, so written as it is: not a torn write.
			return sc, fmt.Errorf("change log segment %s: offset %d: a record of format %d, this build reads format %d: %w",
				path, sc.end, payload[0], changeVersion, errChangeLogDamaged)
		}
		var rec changeRec
		if ok {
			var n, batch uint64
			var err error
			rec, n, batch, err = decodeChangeFrame(payload)
			ok = err == nil && n == sc.next && (batch == prevBatch || batch == n)
			prevBatch = batch
		}
		if !ok && allZero(data[sc.end:]) {
			// The zeros the segment is written ahead with: its end.
			return sc, nil
		}
		if !ok {
			if tornTail(data, sc.end, sc.next, last, changePos) {
				sc.torn = true
				return sc, nil
			}
			return sc, fmt.Errorf("change log segment %s: offset %d: record %d fails its checksum or does not decode: %w",
				path, sc.end, sc.next, errChangeLogDamaged)
		}
		sc.end, sc.next = next, sc.next+1
		if !f(rec) {
			break
		}
	}
	return sc, nil
}

// decodeChangeRec reads one record's payload, its key hex-decoded.
func decodeChangeRec(payload []byte) (changeRec, error) {
	var rec changeRec
	if err := json.Unmarshal(payload, &rec); err != nil {
		return rec, fmt.Errorf("decode change record: %w", err)
	}
	key, err := hex.DecodeString(rec.Key)
	if err != nil {
		return rec, fmt.Errorf("decode change record key: %w", err)
	}
	rec.Key = string(key)
	return rec, nil
}

// segmentName is the file name of the segment whose first seq is first.
func segmentName(first uint64) string { return fmt.Sprintf("%020d.log", first) }

// openChangeLog opens (creating) the change log in dir and starts its
// writer. It returns the intents the log holds without an outcome: the
// writes a crash cut between their intent and their completion.
func openChangeLog(dir string, maxAge time.Duration, maxBytes int64, now func() time.Time, ops *fileOps, mark seqMark) (*changeLog, []changeRec, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create change log %s: %w", dir, err)
	}
	lock, err := lockChangeLog(dir)
	if err != nil {
		return nil, nil, err
	}
	segBytes := min(changeSegmentMax, maxBytes/16)
	l := &changeLog{lock: lock, dir: dir, now: now, maxAge: maxAge, maxBytes: maxBytes, segBytes: segBytes,
		nextSeq: 1, nextID: 1, notify: make(chan struct{}), fileReads: newByteBudget(changeFileReads * segBytes),
		fileReaders: make(chan struct{}, changeFileReaders()), readWait: changeReadWait,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ops: ops, mark: mark}
	open, err := l.scan()
	if err == nil && mark != nil {
		l.reserved, err = mark.load()
		if err != nil {
			err = fmt.Errorf("read the change log's seq mark: %w", err)
		}
	}
	if err == nil && len(l.segs) == 0 {
		l.nextSeq = max(firstSeq(now()), l.reserved)
	}
	if err == nil {
		err = l.openCurrent()
	}
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	l.durable.Store(l.nextSeq - 1)
	l.wg.Add(1)
	go l.run()
	return l, open, nil
}

// firstSeq is the seq a new log gives its first change: its creation
// time in microseconds (or the seq mark, when that is later). Cursors are
// plain numbers, so a log started from 1 again (the feed's directory
// lost, or storage restored from a backup, which holds no feed) would
// read a client's cursor of the earlier log as one of its own and skip
// the changes before it; numbered from its start, it finds such a cursor
// before its oldest and answers 410.
func firstSeq(t time.Time) uint64 {
	return uint64(max(1, t.UnixMicro()))
}

// lockChangeLog takes the lock file of the log in dir: one process
// appends to a log (two main workers on one storage would interleave
// sequence numbers).
func lockChangeLog(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "owner.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open change log lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("change log %s is held by another main worker (%w): one main worker per storage, or a -changes-dir of its own", dir, err)
	}
	return f, nil
}

// scan reads every segment: the next seq and intent ID, the segments'
// sizes and times, and the intents without an outcome. A torn tail of the
// last segment (a group not acknowledged) is cut off; damage stops it
// with an error naming the file and offset.
func (l *changeLog) scan() ([]changeRec, error) {
	names, err := filepath.Glob(filepath.Join(l.dir, "*.log"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	open := map[uint64]changeRec{}
	for i, name := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".log"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("change log %s: not a segment name", name)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read change log: %w", err)
		}
		l.nextSeq = max(l.nextSeq, first)
		sc, err := scanChangeSegment(name, b, i == len(names)-1, func(r changeRec) bool {
			l.noteScanned(r, open)
			return true
		})
		if err != nil {
			return nil, err
		}
		if sc.torn {
			if err := os.Truncate(name, sc.end); err != nil {
				return nil, fmt.Errorf("cut the torn tail of change log %s: %w", name, err)
			}
		}
		l.segNext = sc.next
		seg := changeSegment{first: first, size: sc.end, last: l.now()}
		if st, err := os.Stat(name); err == nil {
			seg.last = st.ModTime()
		}
		l.segs = append(l.segs, seg)
	}
	out := make([]changeRec, 0, len(open))
	for _, r := range open {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b changeRec) int { return cmpUint(a.ID, b.ID) })
	return out, nil
}

// noteScanned takes one record read at open into the log's counters and
// the intents still open.
func (l *changeLog) noteScanned(r changeRec, open map[uint64]changeRec) {
	l.nextID = max(l.nextID, r.ID+1)
	switch r.T {
	case changeIntent:
		open[r.ID] = r
	case changeDone:
		l.nextSeq = max(l.nextSeq, r.Seq+1)
		delete(open, r.ID)
		l.tail = append(l.tail, r)
		if len(l.tail) > changeTailLen {
			l.tail = slices.Delete(l.tail, 0, len(l.tail)-changeTailLen)
		}
	case changeAbort:
		delete(open, r.ID)
	}
}

// openCurrent opens the last segment for appending, or creates the
// first.
func (l *changeLog) openCurrent() error {
	if len(l.segs) == 0 {
		return l.newSegment(l.nextSeq)
	}
	cur := l.segs[len(l.segs)-1]
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(cur.first)), os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open change log: %w", err)
	}
	// Appends go after the last record, over the zeros written ahead.
	st, err := f.Stat()
	if err == nil {
		_, err = f.Seek(cur.size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("open change log: %w", err)
	}
	l.f, l.alloc = f, st.Size()
	return nil
}

// newSegment creates the segment starting at first and makes it the
// current one; its directory entry is synced before it is written.
func (l *changeLog) newSegment(first uint64) error {
	path := filepath.Join(l.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create change log segment: %w", err)
	}
	var alloc int64
	l.writeAhead(f, &alloc, 1)
	err = l.ops.fdatasync(f)
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		// Removed, so that the segment can be created again once the
		// disk allows it.
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create change log segment: %w", err)
	}
	if l.f != nil {
		// The zeros written ahead of the full segment are not needed any
		// more: cut them, so that the files stay the size retention counts
		// (a failure leaves zeros a scan reads as the end).
		l.mu.Lock()
		size := l.segs[len(l.segs)-1].size
		l.mu.Unlock()
		_ = l.f.Truncate(size)
		l.f.Close()
	}
	l.f, l.segNext, l.alloc = f, 1, alloc
	l.mu.Lock()
	l.segs = append(l.segs, changeSegment{first: first, last: l.now()})
	l.mu.Unlock()
	return nil
}

// aheadBytes is how far a segment is written ahead with zeros: a
// write-ahead log's walPrealloc, or a segment's size when that is less,
// so that the files stay near the retention's bytes.
func (l *changeLog) aheadBytes() int64 { return min(walPrealloc, l.segBytes) }

// writeAhead writes zeros to f from *alloc, aheadBytes at a time, until
// it holds end bytes (fileOps.writeZeros). The zeros only spare a
// group's fdatasync the file's growth: when they cannot be written (a
// full disk), the group is written without them, and fails only if its
// own records cannot be.
func (l *changeLog) writeAhead(f *os.File, alloc *int64, end int64) {
	_ = l.ops.writeZeros(f, alloc, end, l.aheadBytes())
}

// errChangeLogBroken is the error of appends after a failed commit.
var errChangeLogBroken error = unavailableError("change log cannot be written")

// errChangeLogUnreadable is the error of a write whose entity's earlier
// write could not be settled because the change log's files could not be
// read (changeFeed.settle): neither storage nor a worker failed, and the
// write was refused before anything of it was written.
var errChangeLogUnreadable error = unavailableError("change log cannot be read")

// append adds recs to the group being formed and returns it; a
// completion gets the next seq, an intent the next ID (set in recs).
func (l *changeLog) append(recs ...*changeRec) *changeGroup {
	l.mu.Lock()
	if broken := l.broken; broken != nil {
		l.mu.Unlock()
		// Failed as a commit fails, so that the completions it refuses
		// leave their intents open (committed) as a failed group's do.
		g := &changeGroup{done: make(chan struct{}), err: fmt.Errorf("%w: %w", errChangeLogBroken, broken)}
		for _, r := range recs {
			if r.T == changeDone {
				g.recs = append(g.recs, *r)
			}
		}
		close(g.done)
		if l.committed != nil {
			l.committed(g)
		}
		return g
	}
	g := l.forming
	if g == nil {
		g = &changeGroup{first: l.nextSeq, done: make(chan struct{})}
		l.forming = g
	}
	for _, r := range recs {
		r.At = cmpOr(r.At, l.now().UnixNano())
		switch r.T {
		case changeIntent:
			r.ID = l.nextID
			l.nextID++
		case changeDone:
			r.Seq = l.nextSeq
			l.nextSeq++
			g.recs = append(g.recs, *r)
		}
		g.payloads = append(g.payloads, changeJSON(*r))
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return g
}

// run is the writer goroutine: it commits the group formed meanwhile,
// one at a time, until close.
func (l *changeLog) run() {
	defer l.wg.Done()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-l.kick:
		case <-retry.C:
			l.repairBroken()
			l.rotateQuiet()
			continue
		case <-l.stop:
			l.commitForming()
			return
		}
		l.commitForming()
	}
}

// commitForming commits the group being formed, if any.
func (l *changeLog) commitForming() {
	l.mu.Lock()
	g := l.forming
	l.forming = nil
	l.mu.Unlock()
	if g != nil {
		l.commit(g)
	}
}

// commit writes and syncs g, starting a new segment first when the
// current one is full, publishes its changes and wakes the waiters.
func (l *changeLog) commit(g *changeGroup) {
	defer close(g.done)
	g.err = l.write(g)
	var failed *changeGroup
	l.mu.Lock()
	if g.err != nil {
		failed = l.fail(g)
	} else {
		cur := &l.segs[len(l.segs)-1]
		cur.size += int64(len(g.buf))
		cur.last = l.now()
		l.tail = append(l.tail, g.recs...)
		if len(l.tail) > 2*changeTailLen {
			l.tail = slices.Delete(l.tail, 0, len(l.tail)-changeTailLen)
		}
		if len(g.recs) > 0 {
			l.durable.Store(g.recs[len(g.recs)-1].Seq)
			close(l.notify)
			l.notify = make(chan struct{})
		}
	}
	l.mu.Unlock()
	if failed != nil {
		failed.err = g.err
		close(failed.done)
	}
	for _, d := range []*changeGroup{g, failed} {
		if d != nil && l.committed != nil {
			l.committed(d)
		}
	}
	if g.err != nil {
		l.repairBroken()
	}
}

// fail records g's failure; the caller holds mu. The group formed
// meanwhile fails with it and the seqs they were given are given again,
// so that the durable seqs stay contiguous. It returns that group.
func (l *changeLog) fail(g *changeGroup) *changeGroup {
	l.broken = g.err
	l.nextSeq = g.first
	failed := l.forming
	l.forming = nil
	return failed
}

// repairBroken, after a failed commit, cuts the current segment back to
// its last durable record through a new descriptor, syncs it and goes on
// appending there; until it can, appends fail (errChangeLogBroken). The
// writer goroutine's only.
func (l *changeLog) repairBroken() {
	l.mu.Lock()
	broken := l.broken
	cur := l.segs[len(l.segs)-1]
	l.mu.Unlock()
	if broken == nil {
		return
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	path := filepath.Join(l.dir, segmentName(cur.first))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		err = f.Truncate(cur.size)
		if err == nil {
			err = l.ops.fdatasync(f)
		}
		f.Close()
	}
	if err == nil {
		err = l.openCurrent()
	}
	if err != nil {
		return // tried again on the next tick
	}
	l.mu.Lock()
	l.broken = nil
	l.mu.Unlock()
}

// rotateQuiet starts a new segment when the current one's last record is
// older than the retention, then prunes: retention keeps the current
// segment (its name carries the next seq), so a quiet log would otherwise
// keep its changes and answer their cursors past the retention instead
// of 410. The new segment starts at the next seq to commit, so the
// current end stays a valid cursor. The writer goroutine's only; a
// failure is tried again on the next tick.
func (l *changeLog) rotateQuiet() {
	l.mu.Lock()
	cur := l.segs[len(l.segs)-1]
	next := l.nextSeq
	if l.forming != nil {
		next = l.forming.first
	}
	// A segment of intents and aborts only starts at the next seq: it
	// holds no change a cursor could name.
	quiet := l.broken == nil && cur.size > 0 && next > cur.first && l.now().Sub(cur.last) > l.maxAge
	l.mu.Unlock()
	if !quiet {
		return
	}
	if err := l.newSegment(next); err == nil {
		_ = l.prune()
	}
}

// write appends g to the current segment (a new one when it is full) and
// syncs it.
func (l *changeLog) write(g *changeGroup) error {
	if err := l.reserve(g.first + uint64(len(g.recs))); err != nil {
		return err
	}
	l.frame(g)
	l.mu.Lock()
	full := l.segs[len(l.segs)-1].size > 0 && l.segs[len(l.segs)-1].size+int64(len(g.buf)) > l.segBytes
	l.mu.Unlock()
	if full {
		if err := l.newSegment(g.first); err != nil {
			return err
		}
		if err := l.prune(); err != nil {
			return err
		}
		l.frame(g) // numbered from 1 in the new segment
	}
	l.mu.Lock()
	end := l.segs[len(l.segs)-1].size + int64(len(g.buf))
	l.mu.Unlock()
	l.writeAhead(l.f, &l.alloc, end)
	if _, err := l.ops.write(l.f, g.buf); err != nil {
		return fmt.Errorf("write change log: %w", err)
	}
	// Past the zeros when they could not be written: the next are
	// written after these records, never over them.
	l.alloc = max(l.alloc, end)
	if err := l.ops.fdatasync(l.f); err != nil {
		return fmt.Errorf("sync change log: %w", err)
	}
	l.segNext += uint64(len(g.payloads))
	return nil
}

// reserve records the seq mark before a seq at or past the recorded one
// is given: end is one past the last seq about to be given.
func (l *changeLog) reserve(end uint64) error {
	if l.mark == nil || end <= l.reserved {
		return nil
	}
	if err := l.mark.store(end + seqReserve); err != nil {
		return fmt.Errorf("record the change log's seq mark: %w", err)
	}
	l.reserved = end + seqReserve
	return nil
}

// frame frames g's records as the next records of the current segment.
func (l *changeLog) frame(g *changeGroup) {
	g.buf = g.buf[:0]
	for i, js := range g.payloads {
		g.buf = appendChangeFrame(g.buf, js, l.segNext+uint64(i), l.segNext)
	}
}

// close commits what was appended and stops the writer.
func (l *changeLog) close() error {
	close(l.stop)
	l.wg.Wait()
	defer l.lock.Close()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}

// health is why the log takes no records (a failed commit not yet
// repaired), nil while it does.
func (l *changeLog) health() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// watch returns the durable seq and a channel closed when it advances.
func (l *changeLog) watch() (uint64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable.Load(), l.notify
}

// barrier waits until every change appended before it is durable, so
// that a reader sees the writes answered before it asked.
func (l *changeLog) barrier(ctx context.Context) error {
	l.mu.Lock()
	target := l.nextSeq - 1
	l.mu.Unlock()
	for {
		l.mu.Lock()
		d, notify, broken := l.durable.Load(), l.notify, l.broken
		l.mu.Unlock()
		switch {
		case d >= target:
			return nil
		case broken != nil:
			return fmt.Errorf("%w: %w", errChangeLogBroken, broken)
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// oldest is the oldest cursor the log can resume from: the seq before
// its first segment's.
func (l *changeLog) oldest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].first - 1
}

// errCursorExpired is the error of a cursor older than the retention.
var errCursorExpired = fmt.Errorf("change log: cursor expired: %w", errGone)

// read hands f the changes after since, in seq order, up to the durable
// seq, until f returns false or scan changes were read. It returns the
// seq of the last change handed to f. A cursor older than the log's
// oldest is errCursorExpired. A read from before the tail waits for its
// turn (readFiles) until ctx ends.
func (l *changeLog) read(ctx context.Context, since uint64, scan int, f func(changeRec) bool) (uint64, error) {
	end := l.durable.Load()
	l.mu.Lock()
	if since < l.segs[0].first-1 {
		l.mu.Unlock()
		return since, errCursorExpired
	}
	if n := len(l.tail); n > 0 && l.tail[0].Seq <= since+1 {
		recs := l.tail[min(since+1-l.tail[0].Seq, uint64(n)):]
		recs = recs[:min(len(recs), scan)]
		l.mu.Unlock()
		last := since
		for _, r := range recs {
			if r.Seq > end {
				break
			}
			last = r.Seq
			if !f(r) {
				break
			}
		}
		return last, nil
	}
	segs := slices.Clone(l.segs)
	l.mu.Unlock()
	return l.readFiles(ctx, segs, since, end, scan, f)
}

// readFiles is read from the segment files segs, once it has its turn
// among the reads from the files (fileReaders): within readWait, else
// 503.
func (l *changeLog) readFiles(ctx context.Context, segs []changeSegment, since, end uint64, scan int, f func(changeRec) bool) (uint64, error) {
	select {
	case l.fileReaders <- struct{}{}:
	default:
		tm := time.NewTimer(l.readWait)
		defer tm.Stop()
		select {
		case l.fileReaders <- struct{}{}: // blocked senders go in arrival order
		case <-ctx.Done():
			return since, fmt.Errorf("wait for a turn to read the change log's files: %w", ctx.Err())
		case <-tm.C:
			return since, fmt.Errorf("wait for a turn to read the change log's files: none within %v: %w", l.readWait, errBusy)
		}
	}
	defer func() { <-l.fileReaders }()
	i, _ := slices.BinarySearchFunc(segs, since+2, func(s changeSegment, t uint64) int { return cmpUint(s.first, t) })
	i = max(i-1, 0)
	last, n := since, 0
	for ; i < len(segs); i++ {
		path := filepath.Join(l.dir, segmentName(segs[i].first))
		b, held, err := l.readSegment(path)
		if errors.Is(err, fs.ErrNotExist) {
			return since, errCursorExpired
		}
		if err != nil {
			return since, fmt.Errorf("read change log: %w", err)
		}
		more := true
		_, err = scanChangeSegment(path, b, i == len(segs)-1, func(r changeRec) bool {
			if r.T != changeDone || r.Seq <= since {
				return true
			}
			if r.Seq > end || n >= scan {
				more = false
				return false
			}
			n++
			last = r.Seq
			more = f(r)
			return more
		})
		l.fileReads.release(held)
		if err != nil {
			return since, err
		}
		if !more {
			break
		}
	}
	return last, nil
}

// readSegment reads the segment file at path whole, first taking its size
// (at most the whole) of fileReads, which the caller releases, held, once
// done with the bytes.
func (l *changeLog) readSegment(path string) (b []byte, held int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	held = min(st.Size(), l.fileReads.capacity)
	if err := l.fileReads.acquire(context.Background(), held); err != nil {
		return nil, 0, err
	}
	b = make([]byte, st.Size())
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) { // cut back since (repair): read what is there
		l.fileReads.release(held)
		return nil, 0, err
	}
	return b[:n], held, nil
}

// lastChange is the latest change of key of db the log holds; an error
// when the log could not be read (then it is not known).
func (l *changeLog) lastChange(ctx context.Context, db, key string) (changeRec, bool, error) {
	var out changeRec
	found := false
	_, err := l.read(ctx, l.oldest(), int(^uint(0)>>1), func(r changeRec) bool {
		if r.DB == db && r.Key == key {
			out, found = r, true
		}
		return true
	})
	if err != nil {
		return changeRec{}, false, fmt.Errorf("last change of %q in %s: %w", key, db, err)
	}
	return out, found, nil
}

// prune drops the oldest segments while they are older than the
// retention or the log is over its size; the current segment stays
// (rotateQuiet retires it once it is older than the retention).
func (l *changeLog) prune() error {
	l.mu.Lock()
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	var drop []changeSegment
	for len(l.segs) > 1 && (l.now().Sub(l.segs[0].last) > l.maxAge || total > l.maxBytes) {
		total -= l.segs[0].size
		drop = append(drop, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for _, s := range drop {
		if err := os.Remove(filepath.Join(l.dir, segmentName(s.first))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("prune change log: %w", err)
		}
	}
	return nil
}
