package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testWALFlags are the -wal* defaults, for tests that build a config by
// hand.
var testWALFlags = walFlags{on: true, checkpointBytes: 64 << 20, checkpointInterval: 30 * time.Second}

// testWALOptions are the options of a log in tests: no background
// checkpoint unless asked, no entity locks.
func testWALOptions() walOptions {
	return walOptions{checkpointBytes: 1 << 40, checkpointInterval: time.Hour, now: time.Now,
		log:  slog.New(slog.DiscardHandler),
		lock: func(ctx context.Context, db, key string) (func(), error) { return func() {}, nil }}
}

// openTestWAL opens worker id's log over st; the test closes it.
func openTestWAL(t *testing.T, st *fsStore, id string) *walLog {
	t.Helper()
	l, err := openWAL(t.Context(), st, id, true, testWALOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.crash() })
	return l
}

// crash drops the log as a killed process would: no checkpoint, its
// files and locks closed.
func (l *walLog) crash() {
	l.stop()
	l.wg.Wait()
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if l.seg != nil && l.seg.f != nil {
		l.seg.f.Close()
		l.seg.f = nil
	}
	l.dir.close()
}

// sealedDoc seals doc as entity key of db under a fresh key.
func sealedDoc(t testing.TB, s *sealer, db, key, doc string) []byte {
	t.Helper()
	b, err := s.seal(db, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putRec is a put record of db/key with sealed bytes.
func putRec(db, key string, sealed []byte) *walRecord {
	return &walRecord{Type: walPut, DB: db, Key: key, Principal: "admin", ETag: "e", Sealed: sealed}
}

// liveRecords reads back what the live log holds.
func liveRecords(t *testing.T, l *walLog) []walRecord {
	t.Helper()
	segs, err := listSegments(l.dir.path)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := readLog(l.dir.path, segs)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestWALRecordRoundTrip: every field of a record and of a start record
// decodes as it was encoded; a frame's checksum catches any changed byte.
func TestWALRecordRoundTrip(t *testing.T) {
	rec := walRecord{Type: walPut, LSN: 7, Batch: 5, Time: 1234567, DB: "chatdb", Key: "s/1 é",
		Principal: "ci-writer", ETag: "00112233445566778899aabb", Sealed: []byte("envelope")}
	got, ok := decodeWALRecord(rec.encode(nil))
	if !ok || !equalRecords(got, rec) {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", rec, got, ok)
	}
	del := walRecord{Type: walDelete, LSN: 8, Batch: 8, Time: 1, DB: "d", Key: "k"}
	if got, ok := decodeWALRecord(del.encode(nil)); !ok || !equalRecords(got, del) {
		t.Fatalf("delete: decode = %+v, %v", got, ok)
	}
	start := walStartRecord{WorkerID: "w1", Gen: 99, Seq: 3, FirstLSN: 11}
	if got, ok := decodeWALStart(start.encode(nil)); !ok || got != start {
		t.Fatalf("start: decode = %+v, %v", got, ok)
	}
	frame := appendFrame(nil, rec.encode(nil))
	if n := rec.payloadSize(); n != len(rec.encode(nil)) {
		t.Errorf("payloadSize = %d, the payload has %d bytes", n, len(rec.encode(nil)))
	}
	// A group frames its records in place, after the groups before them.
	prefix := appendFrame(nil, del.encode(nil))
	if inPlace := appendRecordFrame(slices.Clone(prefix), &rec); !bytes.Equal(inPlace, append(prefix, frame...)) {
		t.Errorf("appendRecordFrame = %x, want %x", inPlace, append(prefix, frame...))
	}
	if len(frame)%walAlign != 0 {
		t.Fatalf("frame of %d bytes is not %d-byte aligned", len(frame), walAlign)
	}
	for i := range frame {
		if i >= walFrameHeader+len(rec.encode(nil)) {
			break // padding is not covered
		}
		bad := slices.Clone(frame)
		bad[i] ^= 0x40
		if _, _, ok := frameAt(bad, 0); ok {
			payload, _, _ := frameAt(bad, 0)
			if r, ok := decodeWALRecord(payload); ok && equalRecords(r, rec) {
				t.Fatalf("byte %d flipped: the frame still reads back as the record", i)
			}
		}
	}
}

func equalRecords(a, b walRecord) bool {
	return a.Type == b.Type && a.LSN == b.LSN && a.Batch == b.Batch && a.Time == b.Time && a.DB == b.DB &&
		a.Key == b.Key && a.Principal == b.Principal && a.ETag == b.ETag && bytes.Equal(a.Sealed, b.Sealed)
}

// TestWALGroupCommit: 32 concurrent appenders share fdatasyncs (far
// fewer syncs than records), and every record reads back in LSN order.
func TestWALGroupCommit(t *testing.T) {
	var syncs atomic.Int64
	ops := osFileOps()
	real := *ops
	ops.fdatasync = func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(2 * time.Millisecond)
		return real.fdatasync(f)
	}
	l := openTestWAL(t, newTestFSStoreOps(t, ops), "w1")
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec := putRec("db", fmt.Sprintf("k%d-%d", w, i), []byte("sealed"))
				if err := l.write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	recs := liveRecords(t, l)
	if len(recs) != writers*each {
		t.Fatalf("%d records read back, want %d", len(recs), writers*each)
	}
	for i, r := range recs {
		if r.LSN != uint64(i+1) {
			t.Fatalf("record %d has LSN %d", i, r.LSN)
		}
	}
	if n := syncs.Load(); n > writers*each/4 {
		t.Errorf("%d fdatasyncs for %d records from %d writers: groups did not form", n, writers*each, writers)
	}
	t.Logf("%d records, %d fdatasyncs", len(recs), syncs.Load())
}

// TestWALAckAfterSync: an append returns only after the fdatasync that
// covers its record: while that sync is held up, the append waits.
func TestWALAckAfterSync(t *testing.T) {
	release := make(chan struct{})
	var holding atomic.Bool
	ops := osFileOps()
	real := *ops
	ops.fdatasync = func(f *os.File) error {
		if holding.Load() {
			<-release
		}
		return real.fdatasync(f)
	}
	l := openTestWAL(t, newTestFSStoreOps(t, ops), "w1")
	if _, err := l.append(putRec("db", "warm", []byte("x"))); err != nil { // opens the segment
		t.Fatal(err)
	}
	holding.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := l.append(putRec("db", "k", []byte("x")))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("append returned (%v) while its fdatasync had not finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWALIdleAppendsAtOnce: an append to an idle log is written at once,
// with no timer: 200 appends in a row with a free fdatasync take far less
// than 200 times any batching delay, and each makes one write and one
// sync.
func TestWALIdleAppendsAtOnce(t *testing.T) {
	var counting atomic.Bool
	var writes, syncs atomic.Int64
	ops := osFileOps()
	real := *ops
	ops.write = func(f *os.File, b []byte) (int, error) {
		if counting.Load() {
			writes.Add(1)
		}
		return real.write(f, b)
	}
	ops.fdatasync = func(f *os.File) error {
		if !counting.Load() {
			return real.fdatasync(f)
		}
		syncs.Add(1)
		return nil
	}
	l := openTestWAL(t, newTestFSStoreOps(t, ops), "w1")
	if _, err := l.append(putRec("db", "warm", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	counting.Store(true)
	start := time.Now()
	const n = 200
	for i := range n {
		if _, err := l.append(putRec("db", fmt.Sprint(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	if writes.Load() != n || syncs.Load() != n {
		t.Errorf("%d appends made %d writes and %d syncs, want one each", n, writes.Load(), syncs.Load())
	}
	if took > scaled(n*time.Millisecond/2) {
		t.Errorf("%d appends on an idle log took %v: more than 0.5 ms each (scaled by the machine's load)", n, took)
	}
}

// TestWALFdatasyncFailureFailsItsGroup: one fdatasync of the log fails
// (EIO, ENOSPC) under 16 concurrent appenders: every append of its group
// answers 503, that descriptor is never written again, and the log
// afterwards holds exactly the acknowledged records: none lost, none of
// the refused ones.
func TestWALFdatasyncFailureFailsItsGroup(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EIO, unix.ENOSPC} {
		t.Run(errno.Error(), func(t *testing.T) { testSyncFailure(t, errno) })
	}
}

func testSyncFailure(t *testing.T, errno unix.Errno) {
	var mu sync.Mutex
	var failedFile string
	var writesAfter int
	var armed atomic.Bool
	var calls atomic.Int64
	ops := osFileOps()
	real := *ops
	ops.write = func(f *os.File, b []byte) (int, error) {
		mu.Lock()
		if failedFile != "" && f.Name() == failedFile {
			writesAfter++
		}
		mu.Unlock()
		return real.write(f, b)
	}
	ops.fdatasync = func(f *os.File) error {
		if !armed.Load() {
			return real.fdatasync(f)
		}
		time.Sleep(3 * time.Millisecond)
		if calls.Add(1) == 4 && strings.HasSuffix(f.Name(), walSegSuffix) {
			mu.Lock()
			failedFile = f.Name()
			mu.Unlock()
			return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: errno}
		}
		return real.fdatasync(f)
	}
	l := openTestWAL(t, newTestFSStoreOps(t, ops), "w1")
	armed.Store(true)
	var wg sync.WaitGroup
	var amu sync.Mutex
	acked, refused := map[string]bool{}, map[string]bool{}
	for w := range 16 {
		wg.Go(func() {
			for i := range 8 {
				key := fmt.Sprintf("k%d-%d", w, i)
				rec := putRec("db", key, []byte("s"))
				err := l.write(rec)
				amu.Lock()
				if err == nil {
					acked[key] = true
				} else {
					refused[key] = true
					if !errors.Is(err, errWALWrite) || statusOf(err) != 503 {
						t.Errorf("append in the failed group: %v, want a 503", err)
					}
				}
				amu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(refused) == 0 {
		t.Fatal("no append failed: the fault was not hit")
	}
	mu.Lock()
	if writesAfter > 0 {
		t.Errorf("%d writes through the descriptor whose fdatasync failed", writesAfter)
	}
	mu.Unlock()
	got := map[string]bool{}
	for _, r := range liveRecords(t, l) {
		got[r.Key] = true
	}
	for k := range acked {
		if !got[k] {
			t.Errorf("acknowledged %s is not in the log", k)
		}
	}
	for k := range refused {
		if got[k] {
			t.Errorf("refused %s is in the log (its group's bytes were not cut)", k)
		}
	}
	if err := l.health(); err != nil {
		t.Errorf("health after the log recovered: %v", err)
	}
	t.Logf("%d acknowledged, %d refused with the failed group", len(acked), len(refused))
}

// TestWALNoSpaceRecovers: while the disk is full every append answers
// 503 and the log is unhealthy (readiness false); once space returns,
// appends succeed again with nothing of the failed ones in the log.
func TestWALNoSpaceRecovers(t *testing.T) {
	var full atomic.Bool
	ops, _ := recordingOps(func(step, path string) bool {
		return full.Load() && step == "write" && strings.Contains(path, walDirName)
	}, unix.ENOSPC)
	l := openTestWAL(t, newTestFSStoreOps(t, ops), "w1")
	if _, err := l.append(putRec("db", "before", []byte("s"))); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	for i := range 3 {
		_, err := l.append(putRec("db", fmt.Sprint("full", i), []byte("s")))
		if statusOf(err) != 503 {
			t.Fatalf("append on a full disk = %v, want 503", err)
		}
	}
	if l.health() == nil {
		t.Error("health is nil while the log cannot be written")
	}
	full.Store(false)
	if _, err := l.append(putRec("db", "after", []byte("s"))); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	if err := l.health(); err != nil {
		t.Errorf("health after space returned: %v", err)
	}
	var keys []string
	for _, r := range liveRecords(t, l) {
		keys = append(keys, r.Key)
	}
	if !slices.Equal(keys, []string{"before", "after"}) {
		t.Errorf("log holds %v, want [before after]", keys)
	}
}

// writeGroups appends n records to a fresh log, each in its own group,
// and returns the path of its one segment, left as a crash would.
func writeGroups(t *testing.T, n int) (string, []int64) {
	t.Helper()
	st := newTestFSStore(t)
	l := openTestWAL(t, st, "w1")
	for i := range n {
		if _, err := l.append(putRec("db", fmt.Sprint("k", i), bytes.Repeat([]byte{byte(i)}, 100))); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := listSegments(l.dir.path)
	path := filepath.Join(l.dir.path, segs[0].name)
	sc, err := scanSegment(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return path, sc.offsets
}

// TestWALTornTail: a crash mid-append leaves a record cut short, zeros,
// or garbage at the end of the last segment: replay drops that record
// and keeps every one before it. Zeros through the end of the file are
// also what a group that never reached the disk leaves in a segment
// written ahead with zeros: the segment's end, not a tear.
func TestWALTornTail(t *testing.T) {
	for _, c := range []struct {
		name string
		tear func(data []byte, last int64) []byte
		torn bool
	}{
		{"cut short", func(d []byte, last int64) []byte { return d[:last+20] }, true},
		{"header only", func(d []byte, last int64) []byte { return d[:last+4] }, true},
		{"zeros", func(d []byte, last int64) []byte { clear(d[last:]); return d }, false},
		{"zeros after its header", func(d []byte, last int64) []byte { clear(d[last+walFrameHeader:]); return d }, true},
		{"garbage", func(d []byte, last int64) []byte { d[last+walFrameHeader+50] ^= 0xff; return d }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, offs := writeGroups(t, 10)
			data, _ := os.ReadFile(path)
			os.WriteFile(path, c.tear(data, offs[9]), 0o600)
			sc, err := scanSegment(path, true)
			if err != nil {
				t.Fatalf("scan of a torn tail: %v", err)
			}
			if len(sc.records) != 9 || sc.torn != c.torn {
				t.Errorf("%d records read, torn=%v; want the 9 before the torn one, torn=%v", len(sc.records), sc.torn, c.torn)
			}
		})
	}
}

// TestWALNewerRecordStops: a whole record of a payload version above
// this binary's (a newer binary's) stops the scan with a sentence saying
// so wherever it lies: as the last record of the last segment, which a
// binary from before version 2 records took for a torn tail and dropped
// with its acknowledged write, in the middle, or as the start record.
func TestWALNewerRecordStops(t *testing.T) {
	for name, at := range map[string]func(offs []int64) int64{
		"the last record":        func(o []int64) int64 { return o[9] },
		"a record in the middle": func(o []int64) int64 { return o[4] },
		"the start record":       func([]int64) int64 { return 0 },
	} {
		path, offs := writeGroups(t, 10)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off := at(offs)
		p := data[off+walFrameHeader : off+walFrameHeader+int64(binary.LittleEndian.Uint32(data[off:]))]
		p[0] = walVersionObjects + 1
		binary.LittleEndian.PutUint32(data[off+4:], crc32.Checksum(p, walCRC))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sc, err := scanSegment(path, true)
		if !errors.Is(err, errWALDamaged) || !strings.Contains(err.Error(), "written by a newer binary") {
			read := 0
			if sc != nil {
				read = len(sc.records)
			}
			t.Errorf("%s of a newer version: scan read %d records, %v; want it refused as a newer binary's", name, read, err)
		}
	}
}

// TestWALSegmentPreallocated: a segment's file is written with zeros
// ahead of its records, so that a group commit changes no file size (its
// fdatasync commits no filesystem journal transaction) until a group
// passes the zeros; the zeros read as the segment's end, in the last
// segment and in any other.
func TestWALSegmentPreallocated(t *testing.T) {
	st := newTestFSStore(t)
	l := openTestWAL(t, st, "w1")
	size := func() int64 {
		t.Helper()
		segs, _ := listSegments(l.dir.path)
		fi, err := os.Stat(filepath.Join(l.dir.path, segs[len(segs)-1].name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if _, err := l.append(putRec("db", "k0", []byte("v"))); err != nil {
		t.Fatal(err)
	}
	first := size()
	if first < walPrealloc {
		t.Fatalf("segment of %d bytes after one record, want at least %d written ahead", first, walPrealloc)
	}
	for i := 1; i < 20; i++ {
		if _, err := l.append(putRec("db", fmt.Sprint("k", i), bytes.Repeat([]byte("v"), 1000))); err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got != first {
		t.Errorf("segment grew from %d to %d bytes for 20 KB of records", first, got)
	}
	// A group larger than what is left extends the file.
	if _, err := l.append(putRec("db", "big", bytes.Repeat([]byte("b"), walPrealloc))); err != nil {
		t.Fatal(err)
	}
	if got := size(); got <= first+walPrealloc/2 {
		t.Errorf("segment of %d bytes after a 1 MiB record, want it extended past %d", got, first)
	}
	segs, _ := listSegments(l.dir.path)
	path := filepath.Join(l.dir.path, segs[0].name)
	for _, last := range []bool{true, false} {
		sc, err := scanSegment(path, last)
		if err != nil {
			t.Fatalf("scan (last %v): %v", last, err)
		}
		if len(sc.records) != 21 || sc.torn {
			t.Errorf("scan (last %v): %d records, torn=%v; want 21 and no tear", last, len(sc.records), sc.torn)
		}
	}
}

// TestWALTornGroupOutOfOrder: the last group's pages reached the disk out
// of order (its second record torn, its third whole): still a torn tail,
// the whole group dropped, nothing acknowledged lost.
func TestWALTornGroupOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, walSegmentName(1, 0))
	start := walStartRecord{WorkerID: "w", Gen: 1, FirstLSN: 1}
	data := appendFrame(nil, start.encode(nil))
	recs := []walRecord{{Type: walPut, LSN: 1, Batch: 1, DB: "d", Key: "a", Sealed: []byte("1")},
		{Type: walPut, LSN: 2, Batch: 2, DB: "d", Key: "b", Sealed: []byte("2")},
		{Type: walPut, LSN: 3, Batch: 2, DB: "d", Key: "c", Sealed: []byte("3")},
		{Type: walPut, LSN: 4, Batch: 2, DB: "d", Key: "e", Sealed: []byte("4")}}
	var offs []int64
	for _, r := range recs {
		offs = append(offs, int64(len(data)))
		data = appendFrame(data, r.encode(nil))
	}
	clear(data[offs[1]+walFrameHeader : offs[2]]) // record 2's payload never written
	os.WriteFile(path, data, 0o600)
	sc, err := scanSegment(path, true)
	if err != nil {
		t.Fatalf("scan: %v, want a torn tail", err)
	}
	if len(sc.records) != 1 || sc.records[0].Key != "a" {
		t.Errorf("records = %+v, want only a", sc.records)
	}
}

// TestWALDamagedMiddle: a changed byte in a record followed by a later
// group stops the replay with the file and the offset; the same change in
// a segment that is not the last is damage too.
func TestWALDamagedMiddle(t *testing.T) {
	path, offs := writeGroups(t, 10)
	data, _ := os.ReadFile(path)
	data[offs[3]+walFrameHeader+10] ^= 0x01
	os.WriteFile(path, data, 0o600)
	_, err := scanSegment(path, true)
	want := fmt.Sprintf("%s: offset %d", path, offs[3])
	if !errors.Is(err, errWALDamaged) || !strings.Contains(err.Error(), want) {
		t.Fatalf("scan = %v, want damage naming %q", err, want)
	}
	// The last record changed: in the last segment a torn tail, in an
	// earlier one damage.
	path, offs = writeGroups(t, 10)
	data, _ = os.ReadFile(path)
	data[offs[9]+walFrameHeader+10] ^= 0x01
	os.WriteFile(path, data, 0o600)
	if sc, err := scanSegment(path, true); err != nil || len(sc.records) != 9 {
		t.Errorf("last record changed in the last segment: %v", err)
	}
	if _, err := scanSegment(path, false); !errors.Is(err, errWALDamaged) {
		t.Errorf("last record changed in an earlier segment: %v, want damage", err)
	}
}

// TestWALLengthDamaged: a damaged length field is damage, not a torn
// tail, when a later group follows.
func TestWALLengthDamaged(t *testing.T) {
	path, offs := writeGroups(t, 10)
	data, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint32(data[offs[2]:], 1<<30)
	os.WriteFile(path, data, 0o600)
	if _, err := scanSegment(path, true); !errors.Is(err, errWALDamaged) {
		t.Fatalf("scan = %v, want damage", err)
	}
}

// gate is an entity lock for the applier that a test can hold shut.
type gate struct {
	mu     sync.Mutex
	closed chan struct{}
}

// shut makes the applier wait at every entity until open.
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = make(chan struct{})
}

// open lets the applier through.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// lock is the walOptions.lock of the gate.
func (g *gate) lock(ctx context.Context, db, key string) (func(), error) {
	g.mu.Lock()
	c := g.closed
	g.mu.Unlock()
	if c != nil {
		select {
		case <-c:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return func() {}, nil
}

// openGatedWAL is openTestWAL of worker w1 whose applier waits at a gate,
// shut until the test opens it, with room for max bytes of unapplied
// records (0: plenty).
func openGatedWAL(t *testing.T, st *fsStore, max int64) (*walLog, *gate) {
	t.Helper()
	g := &gate{}
	g.shut()
	o := testWALOptions()
	o.lock = g.lock
	if max > 0 {
		o.maxUnapplied = max
	}
	l, err := openWAL(t.Context(), st, "w1", true, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.open(); l.crash() })
	return l, g
}

// writeKeys logs puts of entities k0 to k(n-1) of database "db".
func writeKeys(t *testing.T, l *walLog, n int) {
	t.Helper()
	for i := range n {
		if err := l.write(putRec("db", fmt.Sprint("k", i), []byte("s"))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWALApplierWritesFiles: a logged write is read back from the table
// at once and its entity file is written by the applier soon after.
func TestWALApplierWritesFiles(t *testing.T) {
	st := newTestFSStore(t)
	l, g := openGatedWAL(t, st, 0)
	rec := putRec("db", "k", []byte("v1"))
	if err := l.write(rec); err != nil {
		t.Fatal(err)
	}
	if got, ok := l.unappliedRecord("db", "k"); !ok || got != rec {
		t.Fatal("a logged record is not in the table before it is applied")
	}
	if _, err := st.Get(t.Context(), entityObjectKey("db", "k")); !errors.Is(err, errNotFound) {
		t.Fatalf("entity file written while the applier was held: %v", err)
	}
	g.open()
	// The record leaves the table only once its file is written.
	waitFor(t, func() bool {
		_, ok := l.unappliedRecord("db", "k")
		return !ok
	})
	if got, err := st.Get(t.Context(), entityObjectKey("db", "k")); err != nil || string(got) != "v1" {
		t.Errorf("entity file once the record left the table: %q, %v; want v1", got, err)
	}
}

// TestWALApplierCoalesces: an entity written many times while the
// applier is behind gets its file written once, with the last value, and
// the older records no longer hold their segment.
func TestWALApplierCoalesces(t *testing.T) {
	ops, calls := recordingOps(nil, nil)
	st := newTestFSStoreOps(t, ops)
	// Only the calls after the open count.
	l, g := openGatedWAL(t, st, 0)
	skip := len(calls())
	for i := range 50 {
		if err := l.write(putRec("db", "hot", []byte(fmt.Sprint("v", i)))); err != nil {
			t.Fatal(err)
		}
	}
	g.open()
	if err := l.checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(t.Context(), entityObjectKey("db", "hot")); string(got) != "v49" {
		t.Errorf("entity file = %q, want the last value v49", got)
	}
	renames := 0
	for _, c := range calls()[skip:] {
		if c.step == "rename" {
			renames++
		}
	}
	if renames != 1 {
		t.Errorf("%d entity files written for 50 writes of one entity, want 1", renames)
	}
}

// TestWALCheckpointCuts: a checkpoint waits until the applier has written
// the entity file of every record it cuts, makes them durable with one
// syncfs and leaves no segment but the one appended to meanwhile.
func TestWALCheckpointCuts(t *testing.T) {
	ops, calls := recordingOps(nil, nil)
	st := newTestFSStoreOps(t, ops)
	// Only the calls after the open count.
	l, g := openGatedWAL(t, st, 0)
	skip := len(calls())
	writeKeys(t, l, 5)
	done := make(chan error, 1)
	go func() { done <- l.checkpoint(t.Context()) }()
	select {
	case err := <-done:
		t.Fatalf("checkpoint returned (%v) while 5 records had no entity file", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := l.append(putRec("db", "during", []byte("s"))); err != nil {
		t.Fatalf("append during a checkpoint: %v", err)
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	syncfsCalls := 0
	for _, c := range calls()[skip:] {
		if c.step == "syncfs" {
			syncfsCalls++
		}
	}
	if syncfsCalls != 1 {
		t.Errorf("%d syncfs calls in a checkpoint, want 1", syncfsCalls)
	}
	for i := range 5 {
		if _, err := st.Get(t.Context(), entityObjectKey("db", fmt.Sprint("k", i))); err != nil {
			t.Errorf("k%d after the checkpoint: %v", i, err)
		}
	}
	left, _ := listSegments(l.dir.path)
	if len(left) != 1 {
		t.Fatalf("segments after the checkpoint: %v, want only the one appended to during it", left)
	}
	if recs := liveRecords(t, l); len(recs) != 1 || recs[0].Key != "during" {
		t.Errorf("log after the checkpoint holds %v", recs)
	}
}

// TestWALApplierRetries: while entity files cannot be written (a full
// disk) the records stay in the table, reads see them and no checkpoint
// cuts them; once the disk takes them the applier writes them.
func TestWALApplierRetries(t *testing.T) {
	var full atomic.Bool
	full.Store(true)
	ops, _ := recordingOps(func(step, path string) bool {
		return full.Load() && step == "createTemp" && strings.Contains(path, entitiesPrefix)
	}, unix.ENOSPC)
	st := newTestFSStoreOps(t, ops)
	l := openTestWAL(t, st, "w1")
	rec := putRec("db", "k", []byte("v1"))
	if err := l.write(rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * applyRetry)
	if got, ok := l.unappliedRecord("db", "k"); !ok || got != rec {
		t.Fatal("the record left the table though its file could not be written")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := l.checkpoint(ctx); err == nil {
		t.Fatal("a checkpoint cut the log while a record had no entity file")
	}
	full.Store(false)
	if err := l.checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(t.Context(), entityObjectKey("db", "k")); err != nil || string(got) != "v1" {
		t.Errorf("entity file after the disk recovered: %q, %v", got, err)
	}
}

// TestWALWaitRoom: when the records not yet applied fill their room,
// writes wait for the applier instead of growing memory without bound.
func TestWALWaitRoom(t *testing.T) {
	st := newTestFSStore(t)
	l, g := openGatedWAL(t, st, 1000)
	for i := 0; ; i++ {
		if err := l.waitRoom(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := l.write(putRec("db", fmt.Sprint("k", i), bytes.Repeat([]byte("x"), 300))); err != nil {
			t.Fatal(err)
		}
		if l.unappliedBytes > 1000 {
			break
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := l.waitRoom(ctx); err == nil {
		t.Fatal("waitRoom returned at once while the table was over its room")
	}
	g.open()
	if err := l.waitRoom(t.Context()); err != nil {
		t.Fatalf("waitRoom after the applier caught up: %v", err)
	}
}

// TestWALApplierFenced: a process whose applier was held while its log
// was taken over, and the entity written since by another worker, never
// writes its older record over the newer value.
func TestWALApplierFenced(t *testing.T) {
	st := newTestFSStore(t)
	s := randSealer(t, "k")
	l, g := openGatedWAL(t, st, 0)
	if err := l.write(putRec("db", "a", sealedDoc(t, s, "db", "a", "old"))); err != nil {
		t.Fatal(err)
	}
	if _, err := takeOverLog(t.Context(), st, "w1", claimGen, l.generation(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	newer := sealedDoc(t, s, "db", "a", "newer")
	if err := st.Put(t.Context(), entityObjectKey("db", "a"), newer); err != nil { // the new owner's write
		t.Fatal(err)
	}
	g.open()
	waitFor(t, l.isFenced)
	if got, _ := st.Get(t.Context(), entityObjectKey("db", "a")); !bytes.Equal(got, newer) {
		t.Error("the resumed applier wrote its old record over the new owner's write")
	}
}

// TestWALReplayAtOpen: a process killed after logging but before writing
// entity files: the next open of its log applies the last record of each
// entity (a delete removes it) and cuts the log.
func TestWALReplayAtOpen(t *testing.T) {
	st := newTestFSStore(t)
	s := randSealer(t, "k")
	l := openTestWAL(t, st, "w1")
	gone := sealedDoc(t, s, "db", "gone", "1")
	if err := st.Put(t.Context(), entityObjectKey("db", "gone"), gone); err != nil {
		t.Fatal(err)
	}
	v2 := sealedDoc(t, s, "db", "a", "2")
	for _, rec := range []*walRecord{putRec("db", "a", sealedDoc(t, s, "db", "a", "1")), putRec("db", "a", v2),
		putRec("db", "b", sealedDoc(t, s, "db", "b", "1")), {Type: walDelete, DB: "db", Key: "gone"}} {
		if _, err := l.append(rec); err != nil {
			t.Fatal(err)
		}
	}
	l.crash()
	l2 := openTestWAL(t, st, "w1")
	if got, err := st.Get(t.Context(), entityObjectKey("db", "a")); err != nil || !bytes.Equal(got, v2) {
		t.Errorf("a after replay: %v, want its last version", err)
	}
	if _, err := st.Get(t.Context(), entityObjectKey("db", "b")); err != nil {
		t.Errorf("b after replay: %v", err)
	}
	if _, err := st.Get(t.Context(), entityObjectKey("db", "gone")); !errors.Is(err, errNotFound) {
		t.Errorf("deleted entity after replay: %v, want not found", err)
	}
	entries, _ := os.ReadDir(filepath.Join(st.root, walDirName))
	for _, e := range entries {
		if strings.Contains(e.Name(), walTakenInfix) {
			t.Errorf("taken log directory %s left after replay", e.Name())
		}
	}
	if recs := liveRecords(t, l2); len(recs) != 0 {
		t.Errorf("the new generation holds %d records", len(recs))
	}
}

// TestWALReplayKeepsReencryption: replay leaves an entity file alone when
// it holds the logged version re-encrypted (same ETag, other bytes), so
// that a rekey done after the write is not undone.
func TestWALReplayKeepsReencryption(t *testing.T) {
	st := newTestFSStore(t)
	old, fresh := randSealer(t, "old"), randSealer(t, "new")
	l := openTestWAL(t, st, "w1")
	sealed := sealedDoc(t, old, "db", "a", `"x"`)
	if _, err := l.append(putRec("db", "a", sealed)); err != nil {
		t.Fatal(err)
	}
	h, _, _ := parseHeader(sealed)
	resealed := fresh.reseal(h, "db", "a", []byte(`"x"`))
	if err := st.Put(t.Context(), entityObjectKey("db", "a"), resealed); err != nil {
		t.Fatal(err)
	}
	l.crash()
	openTestWAL(t, st, "w1")
	if got, _ := st.Get(t.Context(), entityObjectKey("db", "a")); !bytes.Equal(got, resealed) {
		t.Error("replay wrote the logged envelope over its re-encryption")
	}
}

// TestWALTakeoverFences: another process claims a live log (as the main
// worker does when its worker stops answering): the writer's next append
// is refused, before any acknowledgement, and the taker has applied what
// was acknowledged; after reopen the writer logs in a new generation.
func TestWALTakeoverFences(t *testing.T) {
	st := newTestFSStore(t)
	s := randSealer(t, "k")
	l := openTestWAL(t, st, "w1")
	v1 := sealedDoc(t, s, "db", "a", "1")
	if _, err := l.append(putRec("db", "a", v1)); err != nil {
		t.Fatal(err)
	}
	n, err := takeOverLog(t.Context(), st, "w1", claimGen, l.generation(), slog.New(slog.DiscardHandler))
	if err != nil || n != 1 {
		t.Fatalf("takeover = %d, %v; want 1 entity written", n, err)
	}
	if got, _ := st.Get(t.Context(), entityObjectKey("db", "a")); !bytes.Equal(got, v1) {
		t.Error("the taker did not apply the acknowledged record")
	}
	_, err = l.append(putRec("db", "a", sealedDoc(t, s, "db", "a", "2")))
	if !errors.Is(err, errWALTaken) || statusOf(err) != 503 {
		t.Fatalf("append after the takeover = %v, want 503 taken over", err)
	}
	if got, _ := st.Get(t.Context(), entityObjectKey("db", "a")); !bytes.Equal(got, v1) {
		t.Error("the refused append changed the entity")
	}
	if taken, err := l.reopen(nil); !taken || err != nil {
		t.Fatalf("reopen = %v, %v; want taken over and reopened", taken, err)
	}
	if _, err := l.append(putRec("db", "a", sealedDoc(t, s, "db", "a", "3"))); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
}

// TestWALHandoverLogsItsDuration: a takeover that fails at first (its
// claim lock cannot be opened) and succeeds later logs, when done, the
// time since it was registered (how long its entities' writes may have
// waited) and its attempts, not the last attempt's time alone.
func TestWALHandoverLogsItsDuration(t *testing.T) {
	st := newTestFSStore(t)
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	var out syncBuffer
	hs := newHandovers(st, slog.New(slog.NewTextHandler(&out, nil)), now)
	claim := filepath.Join(st.root, walDirName, "w1"+walClaimLock)
	if err := os.MkdirAll(claim, 0o700); err != nil { // not a lockable file
		t.Fatal(err)
	}
	hs.add(&handover{worker: "w1", kind: hoTakeover, claim: claimDead})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { hs.run(ctx, nil, nil) })
	defer func() { cancel(); wg.Wait() }()
	waitFor := func(what string) {
		t.Helper()
		for w := newWait(t, what, 10*time.Second); !strings.Contains(out.String(), what); {
			if w.over() {
				t.Fatalf("no %q in the log:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("handover not done yet")
	clock.Add(int64(5 * time.Second))
	if err := os.Remove(claim); err != nil {
		t.Fatal(err)
	}
	waitFor("handover done")
	line := out.String()[strings.Index(out.String(), "handover done"):]
	if !strings.Contains(line, "duration_ms=5000\n") || strings.Contains(line, "attempts=1 ") {
		t.Errorf("handover done after 5 s and more than one attempt, logged as:\n%s", line)
	}
}

// TestWALDamagedHandoverNotReady: the main worker taking over a dead
// worker's log with a damaged record in its middle cannot finish: its
// readiness check names the damage (the file and offset to the log)
// until an operator moves the log away, and then the handover is done.
func TestWALDamagedHandoverNotReady(t *testing.T) {
	st := newTestFSStore(t)
	segName, offset := damagedTestLog(t, st, "w1")
	hs := newHandovers(st, slog.New(slog.DiscardHandler), time.Now)
	hs.add(&handover{worker: "w1", kind: hoTakeover, claim: claimDead})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { hs.run(ctx, nil, nil) })
	defer func() { cancel(); wg.Wait() }()
	for w := newWait(t, "the damage reported", 10*time.Second); hs.health() == nil; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("no readiness failure for a damaged log (%v)", w)
		}
	}
	err := hs.health()
	if want := fmt.Sprintf("offset %d", offset); !errors.Is(err, errWALDamaged) || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), segName) {
		t.Errorf("health = %v, want the damage naming %s and %s", err, segName, want)
	}
	checks := map[string]readyCheck{}
	logCheck(checks, hs.health, slog.New(slog.DiscardHandler))
	if c := checks["write_ahead_log"]; c.OK || !strings.Contains(c.Reason, "damaged") {
		t.Errorf("readiness check = %+v, want failed as damaged", c)
	}
	taken, _ := takenDirs(st.root, "w1")
	if len(taken) != 1 {
		t.Fatalf("claimed log directories: %v, want one", taken)
	}
	if err := os.Rename(taken[0], filepath.Join(t.TempDir(), "aside")); err != nil {
		t.Fatal(err)
	}
	for w := newWait(t, "the handover done", 10*time.Second); len(hs.pending()) > 0 || hs.health() != nil; time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("handover still pending after its log was moved away (%v): %v", w, hs.health())
		}
	}
}

// damagedTestLog leaves worker id's log under st as a crash would, with
// three records, the middle one damaged; it returns the segment's name
// and the damaged record's offset.
func damagedTestLog(t *testing.T, st *fsStore, id string) (segName string, offset int) {
	t.Helper()
	l := openTestWAL(t, st, id)
	for i := range 3 {
		if _, err := l.append(putRec("db", fmt.Sprint("k", i), []byte("sealed"))); err != nil {
			t.Fatal(err)
		}
	}
	l.crash()
	segs, _ := listSegments(l.dir.path)
	path := filepath.Join(l.dir.path, segs[0].name)
	data, _ := os.ReadFile(path)
	sc, err := scanSegmentBytes(path, data, true)
	if err != nil || len(sc.offsets) != 3 {
		t.Fatalf("log before the damage: %d records, %v", len(sc.offsets), err)
	}
	data[sc.offsets[1]+walFrameHeader+4] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return segs[0].name, int(sc.offsets[1])
}

// TestWALTakeoverLeavesNewerGeneration: a takeover naming an old
// generation does not claim the log of a restarted worker.
func TestWALTakeoverLeavesNewerGeneration(t *testing.T) {
	st := newTestFSStore(t)
	l := openTestWAL(t, st, "w1")
	if _, err := l.append(putRec("db", "a", []byte("s"))); err != nil {
		t.Fatal(err)
	}
	if _, err := takeOverLog(t.Context(), st, "w1", claimGen, l.generation()-1, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.append(putRec("db", "b", []byte("s"))); err != nil {
		t.Errorf("append after a takeover of an older generation: %v", err)
	}
}

// TestWALOneOwner: a second process with the same worker ID cannot open
// the log while the first lives.
func TestWALOneOwner(t *testing.T) {
	st := newTestFSStore(t)
	openTestWAL(t, st, "w1")
	_, err := openWAL(t.Context(), st, "w1", true, testWALOptions())
	if err == nil || !strings.Contains(err.Error(), "another live process") {
		t.Fatalf("second open = %v, want refused", err)
	}
}

// FuzzWALSegment: no segment bytes make the scan panic or return records
// that do not decode.
func FuzzWALSegment(f *testing.F) {
	start := walStartRecord{WorkerID: "w", Gen: 1, FirstLSN: 1}
	seed := appendFrame(nil, start.encode(nil))
	seed = appendFrame(seed, (&walRecord{Type: walPut, LSN: 1, Batch: 1, DB: "d", Key: "k", Sealed: []byte("x")}).encode(nil))
	f.Add(seed, true)
	f.Add(seed[:len(seed)-3], false)
	f.Fuzz(func(t *testing.T, data []byte, last bool) {
		sc, err := scanSegmentBytes("seg", data, last)
		if err != nil {
			return
		}
		for i, r := range sc.records {
			if r.LSN != sc.start.FirstLSN+uint64(i) {
				t.Fatalf("record %d has LSN %d", i, r.LSN)
			}
		}
	})
}

// BenchmarkWALReplay100k times a start that replays a log of 100,000
// puts of distinct entities (about 400 bytes sealed each): "files-current"
// is the start after a killed process (every entity file already holds
// its logged version: the log is read and each file compared),
// "files-lost" the start after a machine crash that lost every file
// (each rewritten, then one syncfs).
func BenchmarkWALReplay100k(b *testing.B) {
	for _, tc := range []struct {
		name       string
		writeFiles bool
	}{{"files-current", true}, {"files-lost", false}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				st := newTestFSStore(b)
				recs := fillLog(b, st, 100_000, tc.writeFiles)
				b.StartTimer()
				l, err := openWAL(b.Context(), st, "w1", true, testWALOptions())
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				l.crash()
				b.ReportMetric(float64(recs), "records")
			}
		})
	}
}

// fillLog appends n puts of distinct entities to worker w1's log through
// 64 concurrent appenders (group commits), writes their entity files
// when writeFiles is set, and leaves the log as a killed process would.
func fillLog(b *testing.B, st *fsStore, n int, writeFiles bool) int {
	b.Helper()
	l, err := openWAL(b.Context(), st, "w1", true, testWALOptions())
	if err != nil {
		b.Fatal(err)
	}
	s := randSealer(b, "k")
	doc := `{"text":"` + strings.Repeat("x", 300) + `"}`
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				key := fmt.Sprintf("k%07d", i)
				rec := putRec("db", key, sealedDoc(b, s, "db", key, doc))
				if _, err := l.append(rec); err != nil {
					b.Error(err)
					return
				}
				if writeFiles {
					if err := writeRecord(st, rec); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	l.crash()
	return n
}

// TestWALRefusesLinksAndSpecialFiles: someone with write access to the
// storage puts a link to a host file, a FIFO or /dev/zero in place of a
// segment, or makes a worker's log directory a link elsewhere: replay
// refuses each (never reads through it, never blocks, never allocates
// without bound), and the log never writes into the linked directory.
func TestWALRefusesLinksAndSpecialFiles(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("TOPSECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	path, _ := writeGroups(t, 3)
	plant := map[string]func() error{
		"link to a host file": func() error { return os.Symlink(secret, path) },
		"link to /dev/zero":   func() error { return os.Symlink("/dev/zero", path) },
		"FIFO":                func() error { return unix.Mkfifo(path, 0o600) },
	}
	for name, plantIt := range plant {
		t.Run(name, func(t *testing.T) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := plantIt(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := scanSegment(path, true)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !(errors.Is(err, errSymlink) || errors.Is(err, errCorrupt)) {
					t.Fatalf("scanSegment = %v, want a refusal (link or not a regular file)", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("scanSegment blocked on the planted file")
			}
		})
	}

	st := newTestFSStore(t)
	elsewhere := t.TempDir()
	if err := os.MkdirAll(filepath.Join(st.root, walDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, walLogDir(st.root, "w9")); err != nil {
		t.Fatal(err)
	}
	// The start claims a log directory left behind by renaming it aside,
	// which moves the link, not its target; the new log is a directory
	// of its own.
	if l, err := openWAL(t.Context(), st, "w9", true, testWALOptions()); err == nil {
		if _, err := l.append(putRec("db", "k", []byte("v"))); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(walLogDir(st.root, "w9"))
		if err != nil || !fi.IsDir() {
			t.Fatalf("the log directory after open: %v, %v; want a directory", fi, err)
		}
		l.crash()
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("the link's target got %d files", len(entries))
	}
}

// TestWALFlush: a flush returns only once every record logged before it
// has its entity file, and cuts nothing.
func TestWALFlush(t *testing.T) {
	st := newTestFSStore(t)
	l, g := openGatedWAL(t, st, 0)
	writeKeys(t, l, 5)
	done := make(chan error, 1)
	go func() { done <- l.flush(t.Context()) }()
	select {
	case err := <-done:
		t.Fatalf("flush returned (%v) while 5 records had no entity file", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := st.Get(t.Context(), entityObjectKey("db", fmt.Sprint("k", i))); err != nil {
			t.Errorf("k%d after the flush: %v", i, err)
		}
	}
	if recs := liveRecords(t, l); len(recs) != 5 {
		t.Errorf("a flush cut the log: %d records left", len(recs))
	}
}

// TestWALFlushRewritten: an entity written again while a flush waits for
// its first record (no entity file yet) holds the flush until its file
// is written: the flush is the barrier before a scan, which would miss
// the entity (a rekey's pass skipped such entities, in CI).
func TestWALFlushRewritten(t *testing.T) {
	st := newTestFSStore(t)
	l, g := openGatedWAL(t, st, 0)
	if err := l.write(putRec("db", "new", []byte("v1"))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.flush(t.Context()) }()
	waitFor(t, func() bool { return l.hurrying.Load() > 0 })
	time.Sleep(50 * time.Millisecond) // the flush has taken its snapshot
	if err := l.write(putRec("db", "new", []byte("v2"))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		_, ferr := st.Get(t.Context(), entityObjectKey("db", "new"))
		t.Fatalf("flush returned (%v) with the rewritten entity's file not written (%v)", err, ferr)
	case <-time.After(100 * time.Millisecond):
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(t.Context(), entityObjectKey("db", "new")); err != nil || string(got) != "v2" {
		t.Errorf("entity file after the flush = %q, %v; want v2", got, err)
	}
}

// TestWALRecordObjects: a record's objects (versions beside the entity)
// decode as they were encoded; a record naming an object outside its
// entity's versions directory, or a written object without bytes, does
// not decode, so no replay writes it.
func TestWALRecordObjects(t *testing.T) {
	dir := versionsDir("db", "k")
	rec := walRecord{Type: walPut, LSN: 3, Batch: 3, Time: 9, DB: "db", Key: "k", ETag: "e", Sealed: []byte("env"),
		Objects: []walObject{{Key: versionObjectKey("db", "k", 7), Data: []byte("v7")}, {Key: versionObjectKey("db", "k", 4)},
			{Key: versionsIndexKey("db", "k"), Data: []byte(`{"versions":[]}`)}}}
	if n := rec.payloadSize(); n != len(rec.encode(nil)) {
		t.Errorf("payloadSize = %d, the payload has %d bytes", n, len(rec.encode(nil)))
	}
	got, ok := decodeWALRecord(rec.encode(nil))
	if !ok || !equalRecords(got, rec) || !slices.EqualFunc(got.Objects, rec.Objects, func(a, b walObject) bool {
		return a.Key == b.Key && bytes.Equal(a.Data, b.Data) && (a.Data == nil) == (b.Data == nil)
	}) {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", rec, got, ok)
	}
	destroy := walRecord{Type: walVersions, LSN: 4, Batch: 4, DB: "db", Key: "k", Objects: rec.Objects[1:]}
	if got, ok := decodeWALRecord(destroy.encode(nil)); !ok || got.Type != walVersions || len(got.Objects) != 2 {
		t.Fatalf("versions record: decode = %+v, %v", got, ok)
	}
	for name, objs := range map[string][]walObject{
		"another entity's version": {{Key: versionObjectKey("db", "other", 1), Data: []byte("x")}},
		"an entity file":           {{Key: entityObjectKey("db", "k"), Data: []byte("x")}},
		"a deeper path":            {{Key: dir + "a/b", Data: []byte("x")}},
		"the directory itself":     {{Key: dir, Data: []byte("x")}},
		"a written empty object":   {{Key: dir + "0000000001", Data: []byte{}}},
	} {
		bad := rec
		bad.Objects = objs
		if _, ok := decodeWALRecord(bad.encode(nil)); ok {
			t.Errorf("a record writing %s decodes", name)
		}
	}
	if _, ok := decodeWALRecord((&walRecord{Type: walVersions, LSN: 1, Batch: 1, DB: "db", Key: "k"}).encode(nil)); ok {
		t.Error("a versions record without objects decodes")
	}
}

// versionsRec is a record of db/k writing objs (version number -> bytes,
// nil removing it; -1 is the index) beside a put of sealed (nil: a
// versions record).
func versionsRec(sealed []byte, objs map[int64][]byte) *walRecord {
	rec := &walRecord{Type: walVersions, DB: "db", Key: "k", Principal: "admin", ETag: "e", Sealed: sealed}
	if sealed != nil {
		rec.Type = walPut
	}
	for _, n := range slices.Sorted(maps.Keys(objs)) {
		key := versionObjectKey("db", "k", n)
		if n < 0 {
			key = versionsIndexKey("db", "k")
		}
		rec.Objects = append(rec.Objects, walObject{Key: key, Data: objs[n]})
	}
	return rec
}

// TestWALVersionsReplay: versions logged and not yet written are read
// from the table, and a replay after a crash writes each object's last
// logged state: a version a later record destroyed is removed (not
// brought back), one a later write of the entity (without objects of
// its own) followed is written.
func TestWALVersionsReplay(t *testing.T) {
	st := newTestFSStore(t)
	l, _ := openGatedWAL(t, st, 0)
	// Version 1 was applied before: the destroy must remove its file.
	if err := st.Put(t.Context(), versionObjectKey("db", "k", 1), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*walRecord{
		versionsRec([]byte("e2"), map[int64][]byte{2: []byte("v2"), -1: []byte("i2")}),
		versionsRec(nil, map[int64][]byte{1: nil, -1: []byte("i3")}),
		versionsRec([]byte("e3"), nil),
	} {
		if err := l.write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := l.unappliedObject("db", "k", versionObjectKey("db", "k", 1)); !ok || got != nil {
		t.Errorf("destroyed version in the table: %q, %v; want removed", got, ok)
	}
	if got, ok := l.unappliedObject("db", "k", versionsIndexKey("db", "k")); !ok || string(got) != "i3" {
		t.Errorf("index in the table: %q, %v; want i3", got, ok)
	}
	if rec, ok := l.unappliedRecord("db", "k"); !ok || string(rec.Sealed) != "e3" {
		t.Errorf("entity in the table: %+v, %v; want e3", rec, ok)
	}
	l.crash()
	openTestWAL(t, st, "w1")
	for obj, want := range map[string]string{entityObjectKey("db", "k"): "e3", versionObjectKey("db", "k", 2): "v2",
		versionsIndexKey("db", "k"): "i3", versionObjectKey("db", "k", 1): ""} {
		got, err := st.Get(t.Context(), obj)
		if want == "" {
			if !errors.Is(err, errNotFound) {
				t.Errorf("%s after replay: %q, %v; want removed", obj, got, err)
			}
		} else if err != nil || string(got) != want {
			t.Errorf("%s after replay: %q, %v; want %s", obj, got, err, want)
		}
	}
}

// TestWALCheckpointKeepsUnwrittenVersions: a record whose versions are
// not written yet stays in the log after a later write of its entity
// replaced it in the table: a checkpoint does not cut it, and a crash
// then replays its versions.
func TestWALCheckpointKeepsUnwrittenVersions(t *testing.T) {
	st := newTestFSStore(t)
	l, _ := openGatedWAL(t, st, 0)
	if err := l.write(versionsRec([]byte("e1"), map[int64][]byte{1: []byte("v1"), -1: []byte("i1")})); err != nil {
		t.Fatal(err)
	}
	// The checkpoint ends with its deadline (the versions are never
	// written), which must come after it has sealed: scaled by the load.
	ctx, cancel := context.WithTimeout(t.Context(), scaled(300*time.Millisecond))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.checkpoint(ctx) }()
	// The checkpoint seals the segment of the first record and waits for
	// it; the second record goes to the next segment.
	waitFor(t, func() bool {
		l.commitMu.Lock()
		defer l.commitMu.Unlock()
		return len(l.sealed) == 1
	})
	if err := l.write(versionsRec([]byte("e2"), nil)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("a checkpoint cut a record whose versions were not written")
	}
	l.crash()
	openTestWAL(t, st, "w1")
	if got, err := st.Get(t.Context(), versionObjectKey("db", "k", 1)); err != nil || string(got) != "v1" {
		t.Errorf("version 1 after the crash: %q, %v; want v1", got, err)
	}
	if got, err := st.Get(t.Context(), entityObjectKey("db", "k")); err != nil || string(got) != "e2" {
		t.Errorf("entity after the crash: %q, %v; want e2", got, err)
	}
}

// TestWALRefusesOversizedRecord: a record larger than a replay reads
// back as a frame is refused with 413 before anything is logged, with a
// sentence true of it: a document near the limit with its versions, or
// one past it alone (under a -max-document-size raised above it).
func TestWALRefusesOversizedRecord(t *testing.T) {
	half := make([]byte, walMaxPayload/2)
	for _, c := range []struct {
		name     string
		rec      *walRecord
		versions bool
	}{
		{"with versions", versionsRec(half, map[int64][]byte{1: half, -1: []byte("i")}), true},
		{"alone", putRec("db", "k", make([]byte, walMaxPayload+1)), false},
	} {
		l := openTestWAL(t, newTestFSStore(t), "w1")
		err := l.write(c.rec)
		if !errors.Is(err, errTooLarge) {
			t.Fatalf("%s: write of a %d-byte record = %v, want errTooLarge", c.name, c.rec.payloadSize(), err)
		}
		if got := strings.Contains(err.Error(), "with its versions"); got != c.versions {
			t.Errorf("%s: sentence %q names versions: %v, want %v", c.name, err, got, c.versions)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(c.rec.payloadSize())) {
			t.Errorf("%s: sentence %q does not name the record's %d bytes", c.name, err, c.rec.payloadSize())
		}
		if recs := liveRecords(t, l); len(recs) != 0 {
			t.Errorf("%s: the refused record was logged: %d records", c.name, len(recs))
		}
	}
}

// TestWALApplyDelayVersions: an entity's versions wait for
// -wal-apply-delay up to a quarter of the room (its envelopes alone up to
// a sixteenth), so that a hot entity's writes cost one file each (its
// version), not three; past a quarter they are written at once.
func TestWALApplyDelayVersions(t *testing.T) {
	st := newTestFSStore(t)
	l := openDelayedWAL(t, st, time.Hour, 64<<10)
	doc := []byte(strings.Repeat("x", 1<<10))
	write := func(from, to int64) {
		t.Helper()
		for n := from; n <= to; n++ {
			if err := l.write(versionsRec(doc, map[int64][]byte{n: doc, -1: []byte("index")})); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(1, 10) // about 11 KiB: over a sixteenth, under a quarter
	time.Sleep(200 * time.Millisecond)
	if _, err := st.Get(t.Context(), versionObjectKey("db", "k", 1)); !errors.Is(err, errNotFound) {
		t.Fatalf("version 1 written before the delay with the table under a quarter of its room: %v", err)
	}
	write(11, 16) // past a quarter
	waitFor(t, func() bool {
		_, err := st.Get(t.Context(), versionObjectKey("db", "k", 16))
		return err == nil
	})
}

// TestWALOpenRacesNoTakeover: a worker opening its log while the main
// worker looks for dead logs to take over (as it does at its start, when
// a worker subscribes at the same moment) keeps its new log: the live
// directory is never seen between its creation and its owner lock, so it
// is never claimed as dead and the worker's first write is not refused.
func TestWALOpenRacesNoTakeover(t *testing.T) {
	st := newTestFSStore(t)
	s := randSealer(t, "k")
	if err := mkdirWAL(st, walDirName); err != nil { // as the main worker's scan finds it
		t.Fatal(err)
	}
	for i := range 100 {
		id := fmt.Sprintf("w%d", i)
		done := make(chan struct{})
		claimed := make(chan bool, 1)
		go func() {
			took := false
			for {
				select {
				case <-done:
					claimed <- took
					return
				default:
				}
				ok, err := claimLogDir(t.Context(), st.root, id, claimDead, 0)
				if err != nil {
					t.Error(err)
				}
				took = took || ok
			}
		}()
		l, err := openWAL(t.Context(), st, id, false, testWALOptions())
		close(done)
		if err != nil {
			t.Fatalf("open log %s: %v", id, err)
		}
		if <-claimed {
			t.Errorf("log %s was claimed as dead while its worker opened it", id)
		}
		if _, err := l.append(putRec("db", id, sealedDoc(t, s, "db", id, "1"))); err != nil {
			t.Errorf("first write to log %s: %v", id, err)
		}
		l.crash()
	}
}
