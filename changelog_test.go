package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	pb "deltadatabase/proto"
	"golang.org/x/sys/unix"
)

// changeDoneRec is the completion of a put of key with seq.
func changeDoneRec(seq uint64, key string) changeRec {
	return changeRec{T: changeDone, ID: seq, Seq: seq, DB: "db", Key: key, Op: "put", ETag: "e" + key, At: 1}
}

// segmentBytes frames groups of records as the change log writes them:
// each group's records numbered on from the one before, in one group
// commit. It returns the bytes and each record's frame offset.
func segmentBytes(groups ...[]changeRec) ([]byte, []int64) {
	var b []byte
	var offs []int64
	n := uint64(1)
	for _, g := range groups {
		batch := n
		for _, r := range g {
			offs = append(offs, int64(len(b)))
			b = appendChangeFrame(b, changeJSON(r), n, batch)
			n++
		}
	}
	return b, offs
}

// testChangeLog is a change log that a test may close before its end.
type testChangeLog struct {
	*changeLog
	once sync.Once
}

// close closes the log the first time.
func (l *testChangeLog) close() { l.once.Do(func() { l.changeLog.close() }) }

// openTestChangeLog opens the change log in dir, closed at the end of
// the test.
func openTestChangeLog(t *testing.T, dir string) (*testChangeLog, error) {
	t.Helper()
	return openTestChangeLogOps(t, dir, osFileOps())
}

// openTestChangeLogOps is openTestChangeLog writing through ops.
func openTestChangeLogOps(t *testing.T, dir string, ops *fileOps) (*testChangeLog, error) {
	t.Helper()
	cl, _, err := openChangeLog(dir, time.Hour, 1<<20, time.Now, ops, nil)
	if err != nil {
		return nil, err
	}
	l := &testChangeLog{changeLog: cl}
	t.Cleanup(l.close)
	return l, nil
}

// changeKeys reads the keys of every change the log holds.
func changeKeys(t *testing.T, l *testChangeLog) []string {
	t.Helper()
	var keys []string
	if _, err := l.read(t.Context(), l.oldest(), 1<<20, func(r changeRec) bool { keys = append(keys, r.Key); return true }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestChangeLogFrames: the change log frames its records as the
// write-ahead log does (8-byte aligned, CRC32C), and what it appends
// reads back after a reopen, with appends going on after it.
func TestChangeLogFrames(t *testing.T) {
	dir := t.TempDir()
	l, err := openTestChangeLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.append(&changeRec{T: changeDone, DB: "db", Key: fmt.Sprint("k", i), Op: "put", ETag: "e"}).wait(); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	b, err := os.ReadFile(filepath.Join(dir, segmentName(l.segs[0].first)))
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%walAlign != 0 {
		t.Errorf("segment of %d bytes: frames are not %d-byte aligned", len(b), walAlign)
	}
	if strings.Contains(string(b), `"k0"`) {
		t.Error("the key a client chose is in the segment as plain text")
	}
	l, err = openTestChangeLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.append(&changeRec{T: changeDone, DB: "db", Key: "k5", Op: "put", ETag: "e"}).wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(changeKeys(t, l), ","); got != "k0,k1,k2,k3,k4,k5" {
		t.Errorf("changes after a reopen = %s, want k0..k5", got)
	}
}

// TestChangeLogTornTail: a bad frame in the last group of the last
// segment is a torn tail (a crash during its write; nothing in it was
// acknowledged): the log opens with the groups before it, cuts the file
// there, and numbers what it appends next on from the last good record.
// A good frame of the same group after the bad one does not change that.
func TestChangeLogTornTail(t *testing.T) {
	g1 := []changeRec{changeDoneRec(1, "a"), changeDoneRec(2, "b")}
	g2 := []changeRec{changeDoneRec(3, "c"), changeDoneRec(4, "d"), changeDoneRec(5, "e")}
	for _, c := range []struct {
		name string
		tear func(b []byte, offs []int64) []byte
		keep string // the changes left
		cut  int    // the frame the file is cut before
	}{
		{"cut mid-frame", func(b []byte, offs []int64) []byte { return b[:offs[3]+5] }, "a,b,c", 3},
		{"cut between frames of a group", func(b []byte, offs []int64) []byte { return b[:offs[3]] }, "a,b,c", 3},
		{"middle frame of the last group lost", func(b []byte, offs []int64) []byte {
			clear(b[offs[3]:offs[4]]) // pages reached the disk out of order
			return b
		}, "a,b,c", 3},
		{"first frame of the last group lost", func(b []byte, offs []int64) []byte {
			clear(b[offs[2]:offs[3]])
			return b
		}, "a,b", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			b, offs := segmentBytes(g1, g2)
			path := filepath.Join(dir, segmentName(1))
			if err := os.WriteFile(path, c.tear(b, offs), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := openTestChangeLog(t, dir)
			if err != nil {
				t.Fatalf("open with a torn tail: %v", err)
			}
			keep := c.keep
			if got := strings.Join(changeKeys(t, l), ","); got != keep {
				t.Fatalf("changes after a torn tail = %s, want %s", got, keep)
			}
			if st, err := os.Stat(path); err != nil || st.Size() != offs[c.cut] {
				t.Errorf("segment after the open: %v, %v; want it cut to %d bytes, after the last good frame", st.Size(), err, offs[c.cut])
			}
			if err := l.append(&changeRec{T: changeDone, DB: "db", Key: "z", Op: "put"}).wait(); err != nil {
				t.Fatal(err)
			}
			l.close()
			l, err = openTestChangeLog(t, dir)
			if err != nil {
				t.Fatalf("reopen after appending past the torn tail: %v", err)
			}
			if got := strings.Join(changeKeys(t, l), ","); got != keep+",z" {
				t.Errorf("changes after the reopen = %s, want %s,z", got, keep)
			}
		})
	}
}

// TestChangeLogDamage: a bad frame that a crash cannot explain stops the
// open with an error naming the file and offset: one followed by a good
// frame of a later group commit, one in a segment before the last, and
// a whole record of a format this build does not read.
func TestChangeLogDamage(t *testing.T) {
	g1 := []changeRec{changeDoneRec(1, "a"), changeDoneRec(2, "b")}
	g2 := []changeRec{changeDoneRec(3, "c")}
	g3 := []changeRec{changeDoneRec(4, "d")}
	b, offs := segmentBytes(g1, g2, g3)
	flip := func(off int64) []byte {
		d := append([]byte(nil), b...)
		d[off+walFrameHeader+3] ^= 0x10
		return d
	}
	for _, c := range []struct {
		name  string
		files map[string][]byte
		bad   string
		off   int64
	}{
		{"middle group", map[string][]byte{segmentName(1): flip(offs[2])}, segmentName(1), offs[2]},
		{"last frame of a group with a later group after it", map[string][]byte{segmentName(1): flip(offs[1])},
			segmentName(1), offs[1]},
		{"tail of a segment before the last", map[string][]byte{segmentName(1): b[:offs[3]+3], segmentName(4): nil},
			segmentName(1), offs[3]},
		{"older format", map[string][]byte{segmentName(1): appendFrame(nil, []byte(`{"t":"c","seq":1}`))}, segmentName(1), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := openTestChangeLog(t, dir)
			want := fmt.Sprintf("%s: offset %d:", filepath.Join(dir, c.bad), c.off)
			if !errors.Is(err, errCorrupt) || !strings.Contains(fmt.Sprint(err), want) {
				t.Fatalf("open = %v, want errCorrupt naming %q", err, want)
			}
		})
	}
}

// TestChangeLogWrittenAhead: a segment's file is written with zeros ahead
// of its records, as the write-ahead log's are, so that a group's
// fdatasync changes no file size; the zeros read as the segment's end,
// and after a reopen appends go on right after the last record.
func TestChangeLogWrittenAhead(t *testing.T) {
	dir := t.TempDir()
	l, err := openTestChangeLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segmentName(l.segs[0].first))
	put := func(l *testChangeLog, key string) {
		t.Helper()
		if err := l.append(&changeRec{T: changeDone, DB: "db", Key: key, Op: "put"}).wait(); err != nil {
			t.Fatal(err)
		}
	}
	put(l, "a")
	st, err := os.Stat(path)
	if err != nil || st.Size() < l.aheadBytes() {
		t.Fatalf("segment after one record: %v, %v; want at least %d bytes written ahead", st.Size(), err, l.aheadBytes())
	}
	put(l, "b")
	if st2, _ := os.Stat(path); st2.Size() != st.Size() {
		t.Errorf("segment grew from %d to %d bytes for one small record", st.Size(), st2.Size())
	}
	l.close()
	l, err = openTestChangeLog(t, dir)
	if err != nil {
		t.Fatalf("reopen over the zeros: %v", err)
	}
	put(l, "c")
	l.close()
	l, err = openTestChangeLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(changeKeys(t, l), ","); got != "a,b,c" {
		t.Errorf("changes after two reopens = %s, want a,b,c", got)
	}
	// A full segment keeps no zeros once the next one starts.
	var g *changeGroup
	for i := range 2000 {
		g = l.append(&changeRec{T: changeDone, DB: "db", Key: fmt.Sprint("k", i), Op: "put"})
	}
	if err := g.wait(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	segs := slices.Clone(l.segs)
	l.mu.Unlock()
	if len(segs) < 2 {
		t.Fatalf("%d segments after 2000 records, want a full one", len(segs))
	}
	for _, seg := range segs[:len(segs)-1] {
		if st, err := os.Stat(filepath.Join(dir, segmentName(seg.first))); err != nil || st.Size() != seg.size {
			t.Errorf("full segment %d: %d bytes, %v; want its records' %d", seg.first, st.Size(), err, seg.size)
		}
	}
}

// TestChangeLogNoSpaceWritingAhead: zeros the change log cannot write
// ahead of its records (a full disk, from its start on) fail nothing:
// every change is written without them, through a new segment too; once
// space returns the zeros are written again, after the records and never
// over them: every change reads back after a reopen.
func TestChangeLogNoSpaceWritingAhead(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	var failed atomic.Int64
	full.Store(true)
	ops, _ := recordingOps(func(step, _ string) bool {
		if full.Load() && step == "writeAt" {
			failed.Add(1)
			return true
		}
		return false
	}, unix.ENOSPC)
	l, err := openTestChangeLogOps(t, dir, ops)
	if err != nil {
		t.Fatalf("open on a disk too full for the zeros: %v", err)
	}
	put := func(key string) *changeGroup {
		return l.append(&changeRec{T: changeDone, DB: "db", Key: key, Op: "put"})
	}
	want := []string{"a"}
	if err := put("a").wait(); err != nil {
		t.Fatalf("append without zeros ahead: %v", err)
	}
	var g *changeGroup
	for i := range 1000 {
		want = append(want, fmt.Sprint("k", i))
		g = put(want[len(want)-1])
	}
	if err := g.wait(); err != nil {
		t.Fatalf("appends into a new segment without zeros ahead: %v", err)
	}
	if failed.Load() == 0 {
		t.Fatal("the change log wrote no zeros ahead through its file operations")
	}
	l.mu.Lock()
	segs := len(l.segs)
	l.mu.Unlock()
	if segs < 2 {
		t.Fatalf("%d segments after 1000 changes, want a new one started", segs)
	}
	full.Store(false)
	for _, k := range []string{"b", "c"} {
		want = append(want, k)
		if err := put(k).wait(); err != nil {
			t.Fatalf("append once space returned: %v", err)
		}
	}
	l.mu.Lock()
	cur := l.segs[len(l.segs)-1]
	l.mu.Unlock()
	if st, err := os.Stat(filepath.Join(dir, segmentName(cur.first))); err != nil || st.Size() <= cur.size {
		t.Errorf("segment once space returned: %v; want zeros after its %d bytes of records", err, cur.size)
	}
	l.close()
	l, err = openTestChangeLog(t, dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got := changeKeys(t, l); !slices.Equal(got, want) {
		t.Errorf("changes after a reopen: %d, want %d (first %v)", len(got), len(want), got[:min(len(got), 3)])
	}
}

// TestChangeLogRetentionByAge: once the changes of a segment are older
// than -changes-retention, the segment is dropped, oldest first, the
// current one kept; a cursor from before what is kept answers 410 with
// the sentence telling the client to list the database, while a page
// from the oldest cursor kept still reads the recent changes.
func TestChangeLogRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	cl, _, err := openChangeLog(dir, time.Hour, 1<<20, clock.now, osFileOps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &testChangeLog{changeLog: cl}
	t.Cleanup(l.close)
	put := func(prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i += 50 {
			recs := make([]*changeRec, 50)
			for j := range recs {
				recs[j] = &changeRec{T: changeDone, DB: "db", Key: fmt.Sprint(prefix, i+j), Op: "put", ETag: "e"}
			}
			if err := l.append(recs...).wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("old", 2000)
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) < 3 {
		t.Fatalf("%d segments after 2000 changes, want several", len(segs))
	}
	start := firstSeq(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) - 1
	clock.advance(30 * time.Minute)
	if err := l.prune(); err != nil || l.oldest() != start {
		t.Fatalf("prune within the retention: %v, oldest cursor %d; want nothing dropped", err, l.oldest())
	}
	clock.advance(time.Hour)
	put("new", 100)
	if err := l.prune(); err != nil {
		t.Fatal(err)
	}
	oldest := l.oldest()
	if oldest == start {
		t.Fatal("prune after the retention dropped nothing")
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) != 1 {
		t.Errorf("%d segment files after the retention, want the current one", len(segs))
	}
	f := &changeFeed{log: cl}
	if _, err := f.cursor(fmt.Sprint(start + 1)); !errors.Is(err, errGone) || !strings.Contains(fmt.Sprint(err), "list the database") {
		t.Errorf("cursor of the first change after the retention: %v, want 410 telling to list the database", err)
	}
	if c, err := f.cursor(""); err != nil || c != oldest {
		t.Errorf("since absent = %d, %v; want the oldest kept, %d", c, err, oldest)
	}
	keys := changeKeys(t, l)
	if len(keys) == 0 || keys[len(keys)-1] != "new99" || slices.Contains(keys, "old0") {
		t.Errorf("%d changes kept, last %q; want the recent ones, not the first", len(keys), keys[len(keys)-1:])
	}
}

// openClockedChangeLog opens the change log in dir on clock, with an
// hour's retention and seq mark mark (nil: none), closed at the end of
// the test.
func openClockedChangeLog(t *testing.T, dir string, clock *fakeClock, mark seqMark) *testChangeLog {
	t.Helper()
	cl, _, err := openChangeLog(dir, time.Hour, 1<<20, clock.now, osFileOps(), mark)
	if err != nil {
		t.Fatal(err)
	}
	l := &testChangeLog{changeLog: cl}
	t.Cleanup(l.close)
	return l
}

// putChangeKeys appends a put of each key of db "db" to l, one commit each.
func putChangeKeys(t *testing.T, l *testChangeLog, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if err := l.append(&changeRec{T: changeDone, DB: "db", Key: k, Op: "put", ETag: "e"}).wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChangeLogQuietPastRetention: a quiet log, whose only segment holds
// changes older than -changes-retention, retires them (the writer starts
// a new segment and drops the old): a cursor of those changes answers 410
// as in a busy log, while the current end stays a cursor that reads the
// next change, and a reopen goes on after the seqs given.
func TestChangeLogQuietPastRetention(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	l := openClockedChangeLog(t, dir, clock, nil)
	putChangeKeys(t, l, "a", "b", "c")
	old := fmt.Sprint(l.oldest())
	end := l.durable.Load()
	f := &changeFeed{log: l.changeLog}
	clock.advance(30 * time.Minute)
	time.Sleep(1500 * time.Millisecond) // a tick of the writer
	if _, err := f.cursor(old); err != nil {
		t.Fatalf("cursor %s within the retention: %v", old, err)
	}
	clock.advance(time.Hour)
	w := newWait(t, "the quiet segment retired", 10*time.Second)
	for _, err := f.cursor(old); err == nil && !w.over(); _, err = f.cursor(old) {
		time.Sleep(50 * time.Millisecond)
	}
	if c, err := f.cursor(old); !errors.Is(err, errGone) {
		t.Fatalf("cursor %s of changes past the retention of a quiet log = %d, %v; want 410", old, c, err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) != 1 {
		t.Errorf("%d segment files, want the new current one", len(segs))
	}
	if c, err := f.cursor(fmt.Sprint(end)); err != nil || c != end {
		t.Errorf("cursor %d, the current end = %d, %v; want it kept", end, c, err)
	}
	putChangeKeys(t, l, "d")
	var got []string
	if _, err := l.read(t.Context(), end, 100, func(r changeRec) bool { got = append(got, fmt.Sprint(r.Key, r.Seq-end)); return true }); err != nil || !slices.Equal(got, []string{"d1"}) {
		t.Errorf("changes after the current end = %v, %v; want d, next in seq", got, err)
	}
	l.close()
	l = openClockedChangeLog(t, dir, clock, nil)
	putChangeKeys(t, l, "e")
	if keys := changeKeys(t, l); !slices.Equal(keys, []string{"d", "e"}) || l.durable.Load() != end+2 {
		t.Errorf("after a reopen the log holds %v up to %d, want d e up to %d", keys, l.durable.Load(), end+2)
	}
}

// TestChangeLogNewNumbersFromItsStart: a log made anew where one was
// lost (or storage restored from a backup, which holds no feed) numbers
// its changes from its start, so a cursor of the earlier log answers 410
// instead of skipping the new log's first changes; a reopened log goes
// on where it was.
func TestChangeLogNewNumbersFromItsStart(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	l := openClockedChangeLog(t, dir, clock, nil)
	putChangeKeys(t, l, "a", "b", "c")
	cursor := fmt.Sprint(l.durable.Load() - 1) // after "b"
	l.close()
	clock.advance(time.Second)
	l = openClockedChangeLog(t, dir, clock, nil)
	putChangeKeys(t, l, "d")
	f := &changeFeed{log: l.changeLog}
	if c, err := f.cursor(cursor); err != nil || c != l.durable.Load()-2 {
		t.Errorf("cursor %s after a reopen = %d, %v; want the same place, before c and d", cursor, c, err)
	}
	l.close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Second)
	l = openClockedChangeLog(t, dir, clock, nil)
	putChangeKeys(t, l, "x", "y", "z", "w", "v")
	f = &changeFeed{log: l.changeLog}
	if c, err := f.cursor(cursor); !errors.Is(err, errGone) {
		t.Errorf("cursor %s of the lost log = %d, %v; want 410 (the new log's changes are not after it)", cursor, c, err)
	}
	if keys := changeKeys(t, l); strings.Join(keys, "") != "xyzwv" {
		t.Errorf("new log holds %v, want x y z w v", keys)
	}
}

// TestChangeLogClockSetBack: a log made anew where one was lost, on a
// clock set back to the lost log's start, numbers its changes past every
// seq the lost log gave (the seq mark in the storage), so a cursor of the
// lost log answers 410 instead of skipping the new log's first changes;
// a running log records a new mark before it gives a seq past the one
// recorded.
func TestChangeLogClockSetBack(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	mark := storeSeqMark{st: newMemStore()}
	l := openClockedChangeLog(t, dir, clock, mark)
	putChangeKeys(t, l, "a", "b", "c")
	cursor := fmt.Sprint(l.durable.Load() - 1) // after "b"
	l.close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	clock.t = start // set back to the lost log's start
	l = openClockedChangeLog(t, dir, clock, mark)
	putChangeKeys(t, l, "x", "y", "z", "w", "v")
	f := &changeFeed{log: l.changeLog}
	if c, err := f.cursor(cursor); !errors.Is(err, errGone) {
		t.Errorf("cursor %s of the lost log on a clock set back = %d, %v; want 410 (the new log's changes are not after it)", cursor, c, err)
	}
	if keys := changeKeys(t, l); strings.Join(keys, "") != "xyzwv" {
		t.Errorf("new log holds %v, want x y z w v", keys)
	}
	// A mark just past the next seq: the log records another before it
	// gives the seqs beyond.
	l.close()
	next := l.durable.Load() + 1
	if err := mark.store(next + 1); err != nil {
		t.Fatal(err)
	}
	l = openClockedChangeLog(t, dir, clock, mark)
	for i := range 3 {
		putChangeKeys(t, l, fmt.Sprint("m", i))
		if n, err := mark.load(); err != nil || n <= l.durable.Load() {
			t.Fatalf("seq mark %d, %v after seq %d was given; want above it", n, err, l.durable.Load())
		}
	}
}

// TestChangeLogRecoversAfterFailedCommit: a group whose write or
// fdatasync fails fails alone; the segment is cut back to its last durable
// record and the log goes on taking changes, their seqs contiguous, and a
// reopen reads exactly the changes acknowledged (a torn half-written group
// is not left in the middle of the segment).
func TestChangeLogRecoversAfterFailedCommit(t *testing.T) {
	for _, tc := range []struct {
		step  string
		fault error
	}{{"write", unix.ENOSPC}, {"fdatasync", unix.EIO}} {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			var armed atomic.Bool
			ops, _ := recordingOps(func(step, _ string) bool {
				return step == tc.step && armed.CompareAndSwap(true, false)
			}, tc.fault)
			l, err := openTestChangeLogOps(t, dir, ops)
			if err != nil {
				t.Fatal(err)
			}
			put := func(key string) error {
				return l.append(&changeRec{T: changeDone, DB: "db", Key: key, Op: "put"}).wait()
			}
			for _, k := range []string{"a", "b"} {
				if err := put(k); err != nil {
					t.Fatal(err)
				}
			}
			armed.Store(true)
			if err := put("lost"); !errors.Is(err, tc.fault) {
				t.Fatalf("append with a failing %s: %v, want %v", tc.step, err, tc.fault)
			}
			for _, k := range []string{"c", "d"} {
				if err := put(k); err != nil {
					t.Fatalf("append after the failed group: %v", err)
				}
			}
			check := func(l *testChangeLog, when string) {
				var keys []string
				var seqs []uint64
				if _, err := l.read(t.Context(), l.oldest(), 1<<20, func(r changeRec) bool {
					keys, seqs = append(keys, r.Key), append(seqs, r.Seq)
					return true
				}); err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if want := []string{"a", "b", "c", "d"}; !slices.Equal(keys, want) {
					t.Errorf("%s: changes %v, want %v", when, keys, want)
				}
				for i := 1; i < len(seqs); i++ {
					if seqs[i] != seqs[i-1]+1 {
						t.Errorf("%s: seqs %v, want contiguous", when, seqs)
						break
					}
				}
			}
			check(l, "running")
			l.close()
			l, err = openTestChangeLog(t, dir)
			if err != nil {
				t.Fatalf("reopen after a failed group: %v", err)
			}
			check(l, "reopened")
		})
	}
}

// TestChangeFeedSettlesLostOutcome: a write whose intent was durable is
// acknowledged even when the group holding its outcome fails; the log
// goes on, and the outcome it lost is settled from the entity before the
// entity's next write, so the feed holds each acknowledged write once,
// in order.
func TestChangeFeedSettlesLostOutcome(t *testing.T) {
	// armed fails the next fdatasync; syncsAfter counts those after it
	// (the first is the repair's).
	var armed atomic.Bool
	var syncsAfter atomic.Int32
	ops, _ := recordingOps(func(step, _ string) bool {
		if step != "fdatasync" {
			return false
		}
		if armed.CompareAndSwap(true, false) {
			syncsAfter.Store(0)
			return true
		}
		syncsAfter.Add(1)
		return false
	}, unix.EIO)
	f, err := newChangeFeed(t.TempDir(), feedLimits{retention: time.Hour, retentionBytes: 1 << 20}, slog.New(slog.DiscardHandler), ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	stored := ""
	f.read = func(context.Context, string, string) (string, bool, error) { return etagOf(stored), stored != "", nil }
	ctx := context.Background()
	write := func(version string, lose bool) {
		t.Helper()
		tk, err := f.begin(ctx, "db", "k", pb.Operation_PUT)
		if err != nil {
			t.Fatalf("begin write %s: %v", version, err)
		}
		if err := tk.intent.wait(); err != nil {
			t.Fatalf("intent of %s: %v", version, err)
		}
		stored = version
		armed.Store(lose)
		if err := f.finish(ctx, tk, &pb.WorkerResponse{Version: version}, nil); err != nil {
			t.Fatalf("write %s with a durable intent answered %v, want acknowledged", version, err)
		}
		// The answer does not wait for the outcome's group: wait for its
		// sync to be the one that fails, then for the log's repair (the
		// next write's intent is refused until then, as it should be).
		repaired := func() bool { return !lose || syncsAfter.Load() > 0 && f.log.health() == nil }
		for end := time.Now().Add(5 * time.Second); armed.Load() || !repaired(); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("the outcome's group was not synced, or the log not repaired after it failed (%v)", f.log.health())
			}
		}
	}
	write("v1", true)
	write("v2", false)
	// An outcome refused while the log is broken, before any repair,
	// is kept open too.
	tk, err := f.begin(ctx, "db", "k", pb.Operation_PUT)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.intent.wait(); err != nil {
		t.Fatal(err)
	}
	stored = "v3"
	f.log.mu.Lock()
	f.log.broken = errors.New("test: a commit failed")
	f.log.mu.Unlock()
	if err := f.finish(ctx, tk, &pb.WorkerResponse{Version: "v3"}, nil); err != nil {
		t.Fatalf("write v3 with a durable intent answered %v, want acknowledged", err)
	}
	f.log.mu.Lock()
	f.log.broken = nil
	f.log.mu.Unlock()
	write("v4", false)
	if err := f.log.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	var etags []string
	if _, err := f.log.read(t.Context(), f.log.oldest(), 1<<20, func(r changeRec) bool { etags = append(etags, r.ETag); return true }); err != nil {
		t.Fatal(err)
	}
	if want := []string{etagOf("v1"), etagOf("v2"), etagOf("v3"), etagOf("v4")}; !slices.Equal(etags, want) {
		t.Errorf("feed after a lost outcome: %v, want %v", etags, want)
	}
}

// TestChangeFeedRefusesWritesWhileBroken: while a failed commit cannot
// be repaired (the disk still refuses), a write is refused before it is
// sent to its owner (503 saying the change log cannot be written, nothing
// written); once the disk takes writes
// again, writes go on within the repair's retry.
func TestChangeFeedRefusesWritesWhileBroken(t *testing.T) {
	var failing atomic.Bool
	ops, _ := recordingOps(func(step, _ string) bool { return step == "fdatasync" && failing.Load() }, unix.EIO)
	f, err := newChangeFeed(t.TempDir(), feedLimits{retention: time.Hour, retentionBytes: 1 << 20}, slog.New(slog.DiscardHandler), ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	ctx := context.Background()
	failing.Store(true)
	if err := f.log.append(&changeRec{T: changeDone, DB: "db", Key: "a", Op: "put"}).wait(); !errors.Is(err, unix.EIO) {
		t.Fatalf("commit with a failing fdatasync: %v", err)
	}
	_, err = f.begin(ctx, "db", "k", pb.Operation_PUT)
	if !errors.Is(err, errUnavailable) {
		t.Fatalf("begin while the log cannot be repaired: %v, want unavailable before the write is sent", err)
	}
	// The client is told which part failed (it was "storage or workers
	// unavailable"), and the cause stays in the log.
	want := "the change feed's log cannot be written, so writes are refused until it is repaired; try again later (request ID r1)"
	if msg := publicMessage(err, "r1"); statusOf(err) != 503 || msg != want {
		t.Errorf("the refusal's answer = %d %q, want 503 %q", statusOf(err), msg, want)
	}
	if f.log.health() == nil {
		t.Error("the log's health is nil while it takes no records (readiness would stay true)")
	}
	failing.Store(false)
	var tk *changeTicket
	for end := time.Now().Add(scaled(5 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
		if tk, err = f.begin(ctx, "db", "k", pb.Operation_PUT); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		t.Fatalf("begin once the disk takes writes again: %v", err)
	}
	if err := f.finish(ctx, tk, &pb.WorkerResponse{Version: "v1"}, nil); err != nil {
		t.Fatalf("write once repaired: %v", err)
	}
	if err := f.log.health(); err != nil {
		t.Errorf("the log's health once repaired: %v", err)
	}
}

// TestChangeJSONDecodesAsMarshal: a change record written by the hand
// encoder reads back as the one json.Marshal writes, for plain records
// byte for byte, and for strings json.Marshal escapes (quotes, HTML
// bytes, control characters, invalid UTF-8, U+2028) as the same value.
func TestChangeJSONDecodesAsMarshal(t *testing.T) {
	odd := []string{"", "db1", `a"b\c`, "<&>", "x\n\t\x01y", "caf\xe9", "\u2028\u2029", "é日本", "\x7f"}
	for i := range 400 {
		rec := changeRec{T: []string{changeIntent, changeDone}[i%2], ID: uint64(i % 3 * 12345), Seq: uint64(i % 5 * 987654321),
			DB: odd[i%len(odd)], Key: odd[(i/3)%len(odd)], Op: []string{"", "put", "delete"}[i%3],
			ETag: odd[(i/7)%len(odd)], At: int64(i%4) * -1e17}
		got := changeJSON(rec)
		hexed := rec
		hexed.Key = hex.EncodeToString([]byte(rec.Key))
		want, err := json.Marshal(hexed)
		if err != nil {
			t.Fatal(err)
		}
		// Strings json.Marshal escapes otherwise are compared decoded.
		plain := utf8.ValidString(rec.DB+rec.ETag) && !strings.ContainsAny(rec.DB+rec.ETag, "\"\\<&>\n\t\x01\u2028\u2029")
		if plain && !bytes.Equal(got, want) {
			t.Fatalf("changeJSON(%+v) = %s, json.Marshal wrote %s", rec, got, want)
		}
		var a, b changeRec
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("changeJSON(%+v) = %s: %v", rec, got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("changeJSON(%+v) reads back as %+v, json.Marshal's as %+v", rec, a, b)
		}
		back, err := decodeChangeRec(got)
		if err != nil || back.Key != rec.Key {
			t.Fatalf("decodeChangeRec(%s) = %+v, %v; want the key %q", got, back, err, rec.Key)
		}
	}
}

// pastTailChangeLog is a change log whose oldest changes are past its
// in-memory tail: a read of them reads the segment files.
func pastTailChangeLog(t *testing.T) *testChangeLog {
	t.Helper()
	cl, _, err := openChangeLog(t.TempDir(), time.Hour, 64<<20, time.Now, osFileOps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &testChangeLog{changeLog: cl}
	t.Cleanup(l.close)
	var last *changeGroup
	for i := range 5 * changeTailLen { // past the tail, which holds up to twice changeTailLen
		last = l.append(&changeRec{T: changeDone, DB: "db", Key: fmt.Sprintf("k%05d", i), Op: "put", ETag: "e"})
	}
	if err := last.wait(); err != nil {
		t.Fatal(err)
	}
	return l
}

// heldReads are reads of a change log from its oldest change, each held
// in its first change until release closes, counting how many are in
// at once (most).
type heldReads struct {
	l            *testChangeLog
	inside, most atomic.Int32
	release      chan struct{}
}

func newHeldReads(l *testChangeLog) *heldReads {
	return &heldReads{l: l, release: make(chan struct{})}
}

// read reads 10 changes, held in the first when hold.
func (h *heldReads) read(ctx context.Context, hold bool) error {
	first := hold
	_, err := h.l.read(ctx, h.l.oldest(), 10, func(changeRec) bool {
		if first {
			first = false
			n := h.inside.Add(1)
			for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
			}
			<-h.release
			h.inside.Add(-1)
		}
		return true
	})
	return err
}

// TestChangeLogReadsTakeTurns: reads from before the log's tail, which
// decode whole segments (0.10-0.24 s of CPU a page of 20,000 changes),
// run changeFileReaders at once, half the cores; the segment bound alone
// let 8 run (50 old pages at once took 1.7 of the development machine's
// 2 cores). The others wait their turn: one whose client goes away
// stops waiting, one whose turn does not come within readWait is 503,
// and once the reads under way end, the next goes in at once.
func TestChangeLogReadsTakeTurns(t *testing.T) {
	l := pastTailChangeLog(t)
	l.readWait = 300 * time.Millisecond
	turns := changeFileReaders()
	h := newHeldReads(l)
	inside, most, read := &h.inside, &h.most, h.read
	var wg sync.WaitGroup
	for range turns + 2 { // two more than the turns: they wait, then 503
		wg.Go(func() {
			if err := read(t.Context(), true); err != nil && statusOf(err) != http.StatusServiceUnavailable {
				t.Errorf("a read from the files = %v, want it answered or 503", err)
			}
		})
	}
	w := newWait(t, "reads in their turns", 10*time.Second)
	for inside.Load() < int32(turns) && !w.over() {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the others, had they no turns to wait for
	if n := most.Load(); n != int32(turns) {
		t.Errorf("%d reads from the files at once, want %d (changeFileReaders)", n, turns)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := read(ctx, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read waiting for its turn when its client went away = %v, want the context's end", err)
	}
	start := time.Now()
	err := read(t.Context(), false)
	if waited := time.Since(start); !errors.Is(err, errBusy) || statusOf(err) != http.StatusServiceUnavailable || waited < l.readWait {
		t.Errorf("a read whose turn did not come = %v (%d) after %v, want errBusy's 503 after %v", err, statusOf(err), waited, l.readWait)
	}
	close(h.release)
	wg.Wait()
	start = time.Now()
	if err := read(t.Context(), false); err != nil || time.Since(start) > scaled(time.Second) {
		t.Errorf("a read once the others ended = %v after %v, want it answered at once", err, time.Since(start))
	}
}

// TestChangeLogBoundsSegmentReads: a read from before the log's tail reads
// a whole segment into memory, held while it walks it: at most
// changeFileReads segments are held at once, the other reads wait their
// turn. Without a bound, 200 page requests of a database at once took a
// server from 0.9 to 1.9 GB (segments of 4 MiB).
func TestChangeLogBoundsSegmentReads(t *testing.T) {
	l := pastTailChangeLog(t)
	const readers = 3 * changeFileReads
	// The turns (TestChangeLogReadsTakeTurns) would hold them to fewer.
	l.fileReaders = make(chan struct{}, readers)
	h := newHeldReads(l)
	inside, most, release := &h.inside, &h.most, h.release
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			if err := h.read(t.Context(), true); err != nil {
				t.Error(err)
			}
		})
	}
	w := newWait(t, "readers in their segments", 10*time.Second)
	for inside.Load() < changeFileReads/2 && !w.over() {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the others, had they no bound
	st, err := os.Stat(filepath.Join(l.dir, segmentName(l.oldest()+1)))
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(most.Load()); n < 1 || n*st.Size() > changeFileReads*l.segBytes {
		t.Errorf("%d reads held their segment of %d bytes at once, want 1 to %d segments' worth (%d bytes)", n, st.Size(), changeFileReads, changeFileReads*l.segBytes)
	}
	close(release)
	wg.Wait()
}
