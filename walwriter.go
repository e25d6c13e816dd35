package main

// Appending to the write-ahead log: group commit, segments, the fence,
// faults and checkpoints. See ARCHITECTURE.md, "The write-ahead log".

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// walOptions configure a log.
type walOptions struct {
	// checkpointBytes starts a checkpoint once this many bytes were
	// appended since the last one (-wal-checkpoint-bytes).
	checkpointBytes int64
	// checkpointInterval starts one at least this often while anything
	// was appended (-wal-checkpoint-interval).
	checkpointInterval time.Duration
	// maxUnapplied is the room of the records not yet applied (their
	// envelopes' bytes): beyond it writes wait for the applier.
	maxUnapplied int64
	// applyDelay is how long after an entity's record is logged the
	// applier writes its file (-wal-apply-delay): the entity's later
	// writes meanwhile cost no file of their own. 0 writes it at once.
	applyDelay time.Duration
	// lock takes an entity's write lock, as a write does: the applier
	// holds it while it writes the entity's file.
	lock func(ctx context.Context, db, key string) (func(), error)
	now  func() time.Time
	log  *slog.Logger
}

// walLog is one process's write-ahead log: its records are appended by
// one appender, in groups that share one write and one fdatasync
// (group commit). It is safe for concurrent use.
//
// A group forms while the one before it is being written: the first
// record of a group makes its appender the group's leader, which waits
// for the commit lock, closes the group and writes it; later records
// join the next group. An idle log writes a record at once.
type walLog struct {
	fs   *fsStore
	id   string
	opts walOptions

	mu sync.Mutex // guards the fields below up to commitMu
	// open is the group being formed; nil when none is.
	open    *walBatch
	gen     uint64
	nextLSN uint64
	// sinceCut is the number of bytes appended since the last checkpoint.
	sinceCut int64
	// unapplied is each entity's newest record whose entity file is not
	// written yet, by object key (walapply.go): reads see it, the applier
	// writes it; unappliedBytes is the sum of their sizes (envelopes and
	// objects), objectBytes the part of it their objects take.
	unapplied      map[string]*walEntry
	unappliedBytes int64
	objectBytes    int64
	// chains numbers the runs of an entity's records between two of its
	// files (walEntry.chain).
	chains uint64
	// fenced is set once another process took the log over: nothing is
	// appended until reopen starts a new generation.
	fenced bool
	closed bool
	// applied is signalled when records get applied (a segment's count
	// drops, room frees up) or fail to be.
	applied *sync.Cond

	commitMu sync.Mutex // held while a group is written; guards the fields below
	// dir is the live log directory of the current generation.
	dir     *walDir
	seg     *walSegment
	sealed  []*walSegment
	nextSeq uint32
	// broken is a failed segment that could not be truncated back to its
	// last good group yet: nothing is appended until it is.
	broken *walSegment
	// down is the last failure that left the log unwritable, for the log
	// line and readiness; nil when the log is healthy.
	down atomic.Pointer[error]
	// applyDown is why the applier cannot write entity files now, nil
	// while it can (walapply.go).
	applyDown atomic.Pointer[error]

	// stats are counted for the metrics.
	stats walStats

	cpMu sync.Mutex // one checkpoint at a time
	kick chan struct{}
	// dirty wakes the applier.
	dirty chan struct{}
	// hurrying counts those waiting for the entity files (walapply.go):
	// while any does, the applier does not wait for applyDelay.
	hurrying atomic.Int32
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// walSegment is one segment file of the log.
type walSegment struct {
	path string
	seq  uint32
	f    *os.File // nil once sealed
	// dev and ino identify the file: a segment no longer at its path
	// with the same identity was taken over (the fence).
	dev, ino uint64
	// size is the end of its last record (the file offset); alloc the
	// bytes the file holds, zeros after size (reserve).
	size, alloc int64
	records     int
	// unapplied counts its records whose entity file is not written yet
	// and that no later record of the same entity replaced (guarded by
	// walLog.mu); a checkpoint waits for zero.
	unapplied int
}

// walStats are a log's counters.
type walStats struct {
	// records and commits: records acknowledged, and the group commits
	// (fdatasyncs) that held them.
	records, commits atomic.Uint64
	// checkpoints counts the checkpoints that cut the log.
	checkpoints atomic.Uint64
	// applied counts the entity files the applier wrote (or removed):
	// fewer than records when an entity's writes coalesced.
	applied atomic.Uint64
}

// walBatch is one group commit.
type walBatch struct {
	first uint64 // LSN of its first record: the records' Batch
	buf   []byte
	n     int
	done  chan struct{}
	// Set by the leader before done is closed.
	seg *walSegment
	err error
}

// batchBufs recycles the buffers groups are framed in: a group's bytes
// are written once and never read again, and at c=32 framing each group
// in a new buffer grown record by record was a quarter of the bytes a
// durable PUT allocated.
var batchBufs sync.Pool

// batchBufMax is the largest buffer batchBufs keeps: a group of large
// documents does not pin its memory.
const batchBufMax = 1 << 20

// getBatchBuf returns an empty buffer for a group.
func getBatchBuf() []byte {
	if p, ok := batchBufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 64<<10)
}

// putBatchBuf gives a group's buffer back once it is written.
func putBatchBuf(b []byte) {
	if cap(b) <= batchBufMax {
		batchBufs.Put(&b)
	}
}

// Failures of the log: each a 503, nothing acknowledged.
var (
	errWALWrite  = fmt.Errorf("write-ahead log write failed, nothing acknowledged: %w", errUnavailable)
	errWALTaken  = fmt.Errorf("write-ahead log taken over by another process, nothing acknowledged: %w", errUnavailable)
	errWALClosed = fmt.Errorf("write-ahead log closed, nothing acknowledged: %w", errUnavailable)
)

// openWAL opens worker id's log under fs's root: it claims the log
// directory an earlier process of this worker left (refused while a
// live process holds it), applies it when applyOwn is set (the main
// worker's own log; a remote worker's is applied by the main worker),
// and starts a new generation and the background checkpoints.
func openWAL(ctx context.Context, fs *fsStore, id string, applyOwn bool, o walOptions) (*walLog, error) {
	if err := mkdirWAL(fs, walDirName); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	if _, err := claimLogDir(ctx, fs.root, id, claimDead, 0); err != nil {
		return nil, err
	}
	l := &walLog{fs: fs, id: id, opts: o, unapplied: map[string]*walEntry{}, kick: make(chan struct{}, 1),
		dirty: make(chan struct{}, 1)}
	l.applied = sync.NewCond(&l.mu)
	l.gen, l.nextLSN = uint64(o.now().UnixNano()), 1
	dir, err := openWALDir(fs, id, l.gen)
	if err != nil {
		return nil, err
	}
	l.dir = dir
	if applyOwn {
		if _, err := takeOverLog(ctx, fs, id, claimNone, 0, o.log); err != nil {
			dir.close()
			return nil, err
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.runCheckpoints(cctx)
	}()
	go func() {
		defer l.wg.Done()
		l.runApplier(cctx)
	}()
	return l, nil
}

// walDir is the open live directory of one log generation.
type walDir struct {
	path string
	// f is the directory itself: segments are created in it (openat)
	// and it is fsynced, so that a process whose directory was claimed
	// never creates files in another's.
	f *os.File
	// owner is the owner lock file, flock held while the generation is
	// live; it holds the generation's number.
	owner *os.File
	// dev and ino identify the directory f is, so that a takeover (which
	// renames it away) is seen even when the log holds no segment whose
	// path would show it (moved).
	dev, ino uint64
}

// moved reports whether d is no longer the directory at its path: a
// takeover renamed it away (and removed it), or another took its place.
func (d *walDir) moved() bool {
	var st unix.Stat_t
	if err := unix.Stat(d.path, &st); err != nil {
		return true
	}
	return uint64(st.Dev) != d.dev || st.Ino != d.ino
}

// openWALDir creates worker id's live log directory for generation gen
// and takes its owner lock; another live process holding it is an error.
// Both happen under the claim lock: a directory seen between its mkdir
// and its owner lock looks dead, and the main worker scanning for dead
// logs (at its start, as this worker subscribes) would claim it.
func openWALDir(st *fsStore, id string, gen uint64) (_ *walDir, err error) {
	root := st.root
	path := walLogDir(root, id)
	if err := mkdirWAL(st, walDirName); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	unlock, err := flockFile(context.Background(), filepath.Join(root, walDirName, id+walClaimLock))
	if err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	defer unlock()
	if err := mkdirWAL(st, walDirName, id); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	d := &walDir{path: path}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.f, err = openDirBeneath(root, []string{walDirName, id}); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	var ds unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &ds); err != nil {
		return nil, fmt.Errorf("open log of worker %q: stat its directory: %w", id, err)
	}
	d.dev, d.ino = uint64(ds.Dev), ds.Ino
	if d.owner, err = os.OpenFile(filepath.Join(path, walOwnerLock), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	ok, err := tryFlock(d.owner)
	if err == nil && !ok {
		err = fmt.Errorf("another live process writes the log of worker ID %q (%s): give each worker its own -worker-id", id, path)
	}
	if err != nil {
		return nil, err
	}
	if err := d.owner.Truncate(0); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	if _, err := d.owner.WriteAt([]byte(strconv.FormatUint(gen, 10)), 0); err != nil {
		return nil, fmt.Errorf("open log of worker %q: %w", id, err)
	}
	return d, nil
}

// close releases the directory and its owner lock.
func (d *walDir) close() {
	if d.f != nil {
		d.f.Close()
	}
	if d.owner != nil {
		d.owner.Close()
	}
}

// generation returns the current generation, reported to the main
// worker so that a takeover can leave a newer one alone.
func (l *walLog) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// append logs rec (setting its LSN, Batch and Time) and returns once the
// group commit holding it is on disk, with the segment it is in. The
// caller then writes the entity file and reports it (done).
func (l *walLog) append(rec *walRecord) (*walSegment, error) {
	if n := rec.payloadSize(); n > walMaxPayload {
		// A replay would take a larger frame for damage. A document
		// near the limit with versions on (two or three envelopes in one
		// record) gets here, or one past it alone under a
		// -max-document-size raised above it.
		what := fmt.Sprintf("the write of entity %q", rec.Key)
		if len(rec.Objects) > 0 {
			what += " with its versions"
		}
		return nil, reqErrorf(errTooLarge, "%s takes %d bytes in the write-ahead log, more than its %d: store a smaller document",
			what, n, walMaxPayload)
	}
	l.mu.Lock()
	if err := l.refusing(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	if rec.gen != 0 && rec.gen != l.gen {
		// The write began under a generation taken over since: it was
		// routed to this worker before, and an entity it wrote may have
		// been written by another worker meanwhile.
		l.mu.Unlock()
		return nil, fmt.Errorf("write begun under generation %d of the write-ahead log, taken over since: %w", rec.gen, errWALTaken)
	}
	b := l.open
	lead := b == nil
	if lead {
		b = &walBatch{first: l.nextLSN, done: make(chan struct{}), buf: getBatchBuf()}
		l.open = b
	}
	rec.LSN, rec.Batch = l.nextLSN, b.first
	if rec.Time == 0 {
		rec.Time = l.opts.now().UnixNano()
	}
	l.nextLSN++
	b.buf = appendRecordFrame(b.buf, rec)
	b.n++
	l.mu.Unlock()
	if lead {
		l.commit(b)
	} else {
		<-b.done
	}
	return b.seg, b.err
}

// refusing is why the log takes no record now, or nil. The caller holds
// mu.
func (l *walLog) refusing() error {
	switch {
	case l.closed:
		return errWALClosed
	case l.fenced:
		return errWALTaken
	}
	return nil
}

// commit is a group's leader's part: wait for the group before it,
// close the group, write and sync it, and wake its members.
func (l *walLog) commit(b *walBatch) {
	l.commitMu.Lock()
	l.mu.Lock()
	l.open = nil // records from now on form the next group
	l.mu.Unlock()
	seg, err := l.writeBatch(b)
	l.mu.Lock()
	if err == nil {
		seg.unapplied += b.n
		l.sinceCut += int64(len(b.buf))
		l.stats.records.Add(uint64(b.n))
		l.stats.commits.Add(1)
	} else if errors.Is(err, errWALTaken) {
		l.fenced = true
	}
	full := l.sinceCut >= l.opts.checkpointBytes
	l.mu.Unlock()
	putBatchBuf(b.buf)
	b.buf = nil
	b.seg, b.err = seg, err
	l.commitMu.Unlock()
	close(b.done)
	if full {
		l.kickCheckpoint()
	}
}

// writeBatch writes one group to the current segment and syncs it. Only
// then, and only if the segment is still the one at its path (the
// fence), may its records be acknowledged. The caller holds commitMu.
func (l *walLog) writeBatch(b *walBatch) (*walSegment, error) {
	if err := l.ensureSegment(b.first); err != nil {
		return nil, err
	}
	seg := l.seg
	if err := seg.reserve(l.fs.ops, int64(len(b.buf))); err != nil {
		return nil, l.failSegment(seg, "preallocate", err)
	}
	if _, err := l.fs.ops.write(seg.f, b.buf); err != nil {
		return nil, l.failSegment(seg, "write", err)
	}
	if err := l.fs.ops.fdatasync(seg.f); err != nil {
		return nil, l.failSegment(seg, "fdatasync", err)
	}
	seg.size += int64(len(b.buf))
	seg.records += b.n
	if err := seg.checkFence(); err != nil {
		l.opts.log.Error("write-ahead log taken over by another process: this worker takes no writes until it subscribes again",
			attrWorker, l.id, "segment", seg.path, attrErr, err)
		// The group is in the taken segment: the taker may have read it.
		return nil, fmt.Errorf("log %s: %w: %w: %w", seg.path, err, errWALTaken, errWriteFenced)
	}
	l.down.Store(nil)
	return seg, nil
}

// ensureSegment makes a segment ready for a group starting at LSN first:
// a failed one truncated back first, a new one opened if there is none.
// The caller holds commitMu.
func (l *walLog) ensureSegment(first uint64) error {
	if l.broken != nil {
		if err := l.truncateBroken(); err != nil {
			return err
		}
	}
	if l.seg != nil {
		return nil
	}
	seg, err := l.openSegment(first)
	if err != nil && l.dir.moved() {
		// Taken over while the log held no segment (after a checkpoint):
		// not a storage fault; the next subscription reopens the log.
		return fmt.Errorf("open log segment: %w: %w", err, errWALTaken)
	}
	if err != nil {
		l.setDown(fmt.Errorf("open a log segment in %s: %w", l.dir.path, err))
		return fmt.Errorf("open log segment: %w: %w", err, errWALWrite)
	}
	l.seg = seg
	return nil
}

// openSegment creates the next segment file in the live directory,
// its start record durable (and its directory entry) before any record
// is written to it. The caller holds commitMu.
func (l *walLog) openSegment(first uint64) (_ *walSegment, err error) {
	l.mu.Lock()
	gen := l.gen
	l.mu.Unlock()
	seq := l.nextSeq
	name := walSegmentName(gen, seq)
	// Not O_APPEND: groups are written at the file offset, over the
	// zeros reserve wrote ahead of them.
	fd, err := unix.Openat(int(l.dir.f.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: filepath.Join(l.dir.path, name), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(l.dir.path, name))
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(int(l.dir.f.Fd()), name, 0)
		}
	}()
	start := walStartRecord{WorkerID: l.id, Gen: gen, Seq: seq, FirstLSN: first}
	buf := appendFrame(nil, start.encode(nil))
	if _, err := l.fs.ops.write(f, buf); err != nil {
		return nil, err
	}
	seg := &walSegment{path: f.Name(), seq: seq, f: f, size: int64(len(buf)), alloc: int64(len(buf))}
	if err := seg.reserve(l.fs.ops, 0); err != nil {
		return nil, err
	}
	if err := l.fs.ops.fdatasync(f); err != nil {
		return nil, err
	}
	if err := l.fs.ops.syncDir(l.dir.f); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	seg.dev, seg.ino = st.Dev, st.Ino
	l.nextSeq++
	return seg, nil
}

// walPrealloc is how far ahead of its records a segment's file is
// written with zeros. A group then overwrites bytes the file already
// has: its fdatasync flushes the data alone and commits no filesystem
// journal transaction (the file's size and blocks do not change), so it
// neither waits for nor carries the entity files the applier renamed
// meanwhile. One group in walPrealloc bytes extends the file, and its
// fdatasync commits that extension. A scan takes zeros after the last
// record for the end of the segment (wal.go).
const walPrealloc = 1 << 20

// walZeros is what reserve writes.
var walZeros = make([]byte, walPrealloc)

// reserve makes sure the file holds n bytes after the segment's records,
// writing zeros through ops up to walPrealloc bytes past them when it
// does not. The caller syncs the file.
func (s *walSegment) reserve(ops *fileOps, n int64) error {
	return ops.writeZeros(s.f, &s.alloc, s.size+n, walPrealloc)
}

// writeZeros writes zeros to f from *alloc, chunk bytes (at most
// walPrealloc) at a time, until it holds end bytes, and advances *alloc.
func (ops *fileOps) writeZeros(f *os.File, alloc *int64, end, chunk int64) error {
	for *alloc < end {
		if _, err := ops.writeAt(f, walZeros[:chunk], *alloc); err != nil {
			return fmt.Errorf("write ahead of the log: %w", err)
		}
		*alloc += chunk
	}
	return nil
}

// checkFence reports an error unless the segment is still the file at
// its path: a taker renames a log's segments away before reading them.
func (s *walSegment) checkFence() error {
	var st unix.Stat_t
	if err := unix.Stat(s.path, &st); err != nil {
		return fmt.Errorf("segment no longer at its path: %w", err)
	}
	if st.Dev != s.dev || st.Ino != s.ino {
		return errors.New("another file is at the segment's path")
	}
	return nil
}

// failSegment handles a failed write or fdatasync of a group: no record
// of the group is acknowledged and the descriptor is never written again
// (after a failed fdatasync the kernel may have dropped the dirty pages
// and will not report it twice). The segment is truncated back to its
// last good group through a fresh descriptor and sealed; the next group
// opens a new segment. The caller holds commitMu.
func (l *walLog) failSegment(seg *walSegment, step string, cause error) error {
	seg.f.Close()
	seg.f = nil
	l.seg, l.broken = nil, seg
	err := fmt.Errorf("log segment %s: %s: %w", seg.path, step, cause)
	l.setDown(err)
	if terr := l.truncateBroken(); terr != nil {
		l.opts.log.Error("write-ahead log cannot be written: writes answer 503 until it can", attrWorker, l.id, attrErr, err,
			"truncate", terr)
	} else {
		l.opts.log.Error("write-ahead log write failed: its group answered 503; continuing in a new segment", attrWorker, l.id,
			attrErr, err)
	}
	return fmt.Errorf("%w: %w", err, errWALWrite)
}

// truncateBroken cuts the failed segment back to its last good group,
// durably, and seals it. The caller holds commitMu.
func (l *walLog) truncateBroken() error {
	seg := l.broken
	f, err := os.OpenFile(seg.path, os.O_WRONLY, 0)
	if err == nil {
		err = f.Truncate(seg.size)
		if err == nil {
			err = l.fs.ops.fdatasync(f)
		}
		f.Close()
	}
	if err != nil {
		l.setDown(fmt.Errorf("truncate failed log segment %s: %w", seg.path, err))
		return fmt.Errorf("truncate log segment: %w: %w", err, errWALWrite)
	}
	l.broken = nil
	l.sealed = append(l.sealed, seg)
	return nil
}

// setDown records why the log cannot be written (readiness false).
func (l *walLog) setDown(err error) { l.down.Store(&err) }

// health is nil while the log takes writes, else why it does not.
func (l *walLog) health() error {
	if p := l.down.Load(); p != nil {
		return *p
	}
	if p := l.applyDown.Load(); p != nil {
		return *p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced {
		return errors.New("write-ahead log taken over by another process")
	}
	return nil
}

// kickCheckpoint asks the background checkpointer for a checkpoint.
func (l *walLog) kickCheckpoint() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// runCheckpoints checkpoints when asked (the log grew by
// checkpointBytes) and every checkpointInterval, until ctx ends.
func (l *walLog) runCheckpoints(ctx context.Context) {
	t := time.NewTicker(l.opts.checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-t.C:
		}
		if err := l.checkpoint(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errWALTaken) {
			l.opts.log.Warn("write-ahead log checkpoint failed; retrying later", attrWorker, l.id, attrErr, err)
		}
	}
}

// checkpoint cuts the log: it seals the current segment, waits until
// the applier has written the entity file of every record of the sealed
// segments (or of a later record of the same entity), makes all entity
// files durable with one syncfs, and deletes the sealed segments, oldest
// first. Afterwards the log holds nothing a replay would need, and every
// record appended before the call is in the entity files (a barrier for
// other readers). Appends go on meanwhile, into a new segment.
func (l *walLog) checkpoint(ctx context.Context) error {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	cut := l.sealAll()
	l.mu.Lock()
	l.sinceCut = 0
	l.mu.Unlock()
	if len(cut) == 0 {
		return nil
	}
	start := l.opts.now()
	if err := l.waitApplied(ctx, cut); err != nil {
		return err
	}
	if err := l.fs.ops.syncfs(l.fs.root); err != nil {
		return fmt.Errorf("checkpoint: syncfs: %w", err)
	}
	if err := l.cut(cut); err != nil {
		return err
	}
	l.stats.checkpoints.Add(1)
	l.opts.log.Debug(msgCheckpoint, attrWorker, l.id, "segments", len(cut), attrDurationMS, durationMS(l.opts.now().Sub(start)))
	return nil
}

// msgCheckpoint is the message of the debug line of each checkpoint.
const msgCheckpoint = "write-ahead log checkpoint"

// sealAll seals the current segment, if it holds records (the next
// group opens a new one), and returns the sealed segments.
func (l *walLog) sealAll() []*walSegment {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if l.seg != nil && l.seg.records > 0 {
		l.seg.f.Close()
		l.seg.f = nil
		l.sealed = append(l.sealed, l.seg)
		l.seg = nil
	}
	return slices.Clone(l.sealed)
}

// waitApplied waits until no record of segs lacks its entity file.
func (l *walLog) waitApplied(ctx context.Context, segs []*walSegment) error {
	stop := l.wakeWhenDone(ctx)
	defer stop()
	defer l.hurry()()
	l.mu.Lock()
	defer l.mu.Unlock()
	for busy(segs) && !l.fenced && ctx.Err() == nil {
		l.applied.Wait()
	}
	if l.fenced {
		return errWALTaken
	}
	return ctx.Err()
}

// busy reports whether a record of segs lacks its entity file. The
// caller holds walLog.mu.
func busy(segs []*walSegment) bool {
	for _, s := range segs {
		if s.unapplied > 0 {
			return true
		}
	}
	return false
}

// cut deletes checkpointed segments, oldest first, each deletion durable
// before the next: a crash part-way leaves a suffix of the log, which a
// replay applies without going back in time. A segment no longer at its
// path was taken over: the log is fenced.
func (l *walLog) cut(segs []*walSegment) error {
	for _, s := range segs {
		if err := s.checkFence(); err != nil {
			l.mu.Lock()
			l.fenced = true
			l.mu.Unlock()
			return fmt.Errorf("checkpoint: %s: %w: %w", s.path, err, errWALTaken)
		}
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("checkpoint: remove %s: %w", s.path, err)
		}
		if err := l.fs.ops.syncDir(l.dir.f); err != nil {
			return fmt.Errorf("checkpoint: sync %s: %w", l.dir.path, err)
		}
		l.commitMu.Lock()
		l.sealed = slices.DeleteFunc(l.sealed, func(x *walSegment) bool { return x == s })
		l.commitMu.Unlock()
	}
	return nil
}

// reopen starts a new generation after the log was taken over (the
// worker subscribes again): whatever was appended before belongs to the
// taker now. It reports whether the log had been taken over; an error
// means the new live directory could not be opened, and the log stays
// fenced. onTaken (if not nil) runs when it was taken, while the log
// still refuses every record and before generation() can return the new
// generation: the worker's fence against the calls routed to it before
// (worker.reopenLog).
func (l *walLog) reopen(onTaken func()) (bool, error) {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	l.mu.Lock()
	fenced := l.fenced
	l.mu.Unlock()
	if !fenced && !l.anyTaken() {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fenced = true
	if onTaken != nil {
		onTaken()
	}
	if l.seg != nil && l.seg.f != nil {
		l.seg.f.Close()
	}
	// What was not applied belongs to the taker, which applied it.
	l.seg, l.sealed, l.broken = nil, nil, nil
	l.unapplied, l.unappliedBytes, l.objectBytes = map[string]*walEntry{}, 0, 0
	l.applied.Broadcast()
	l.sinceCut = 0
	gen := max(uint64(l.opts.now().UnixNano()), l.gen+1)
	dir, err := openWALDir(l.fs, l.id, gen)
	if err != nil {
		return true, err
	}
	l.dir.close()
	l.dir, l.gen, l.nextLSN, l.nextSeq, l.fenced = dir, gen, 1, 0, false
	l.down.Store(nil)
	return true, nil
}

// anyTaken reports whether a segment of the log, or its directory, is no
// longer at its path. The caller holds commitMu.
func (l *walLog) anyTaken() bool {
	segs := slices.Clip(l.sealed)
	for _, s := range []*walSegment{l.seg, l.broken} {
		if s != nil {
			segs = append(segs, s)
		}
	}
	for _, s := range segs {
		if s.checkFence() != nil {
			return true
		}
	}
	// A log with no segment (cut by a checkpoint, nothing written since)
	// shows a takeover by its directory alone.
	return l.dir != nil && l.dir.moved()
}

// Close refuses new records, cuts the log once more (the applier
// writing every entity file first, so that a clean restart replays
// nothing), stops the background work and releases the owner lock.
func (l *walLog) Close() error {
	l.mu.Lock()
	l.closed = true
	l.applied.Broadcast()
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.checkpoint(ctx)
	l.stop()
	l.wg.Wait()
	l.commitMu.Lock()
	if l.seg != nil && l.seg.f != nil {
		l.seg.f.Close()
	}
	l.dir.close()
	l.commitMu.Unlock()
	if errors.Is(err, errWALTaken) {
		return nil
	}
	return err
}

// registerWALMetrics registers the counters of a worker's log.
func registerWALMetrics(r *registry, l *walLog) {
	r.counterFunc("deltadb_wal_records_total", "Writes acknowledged through the write-ahead log.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(l.stats.records.Load())) })
	r.counterFunc("deltadb_wal_commits_total", "Group commits of the write-ahead log: one write and one fdatasync each.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(l.stats.commits.Load())) })
	r.counterFunc("deltadb_wal_applied_total", "Entity files the write-ahead log's applier wrote or removed: one per entity per -wal-apply-delay at most.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(l.stats.applied.Load())) })
	r.counterFunc("deltadb_wal_checkpoints_total", "Checkpoints that cut the write-ahead log.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(l.stats.checkpoints.Load())) })
	r.gaugeFunc("deltadb_wal_ready", "1 while the write-ahead log takes writes, 0 while it does not (a failed disk, taken over).", nil,
		func(emit func(labelValues, float64)) {
			v := 1.0
			if l.health() != nil {
				v = 0
			}
			emit(labelValues{}, v)
		})
}

// syncfs makes everything written to the filesystem holding dir durable:
// the entity files written since the last checkpoint and their directory
// entries, in one call.
func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return &fs.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// mkdirWAL creates the directory comps beneath st's root, durably,
// without following a link (beneath.go).
func mkdirWAL(st *fsStore, comps ...string) error {
	d, err := st.ops.mkdirAllBeneath(st.root, comps)
	if err != nil {
		return err
	}
	return d.Close()
}
