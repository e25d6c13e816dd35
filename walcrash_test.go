package main

// Black-box tests of the write-ahead log against the binary: SIGKILL
// under 32 writers (-role=all, a worker, during checkpoints), a worker
// paused past its lease (SIGSTOP) and resumed, a damaged log, a backup
// taken during heavy writes.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ackLoad is writers putting increasing values to keys of their own and
// readers checking that no read is older than what was acknowledged
// before it started.
type ackLoad struct {
	t      *testing.T
	base   atomic.Pointer[string]
	client *http.Client

	mu    sync.Mutex
	acked map[string]int // key -> highest value acknowledged
	stale []string

	writes, failures, reads atomic.Int64
	cancel                  context.CancelFunc
	wg                      sync.WaitGroup
}

// startAckLoad starts writers and readers against base (which setBase
// may change, for a restarted server); each writer owns keys db/w<i>-<n>
// for n < keysPer.
func startAckLoad(t *testing.T, base string, writers, readers, keysPer int) *ackLoad {
	l := &ackLoad{t: t, acked: map[string]int{}, client: &http.Client{Timeout: 60 * time.Second}}
	l.setBase(base)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for w := range writers {
		l.wg.Go(func() { l.write(ctx, w, keysPer) })
	}
	for range readers {
		l.wg.Go(func() { l.read(ctx) })
	}
	t.Cleanup(l.stop)
	return l
}

func (l *ackLoad) setBase(b string) { l.base.Store(&b) }

// write puts w<w>-<i mod keysPer> = i for i = 0, 1, ... until ctx ends.
func (l *ackLoad) write(ctx context.Context, w, keysPer int) {
	for i := 0; ctx.Err() == nil; i++ {
		key := fmt.Sprintf("w%d-%d", w, i%keysPer)
		body, _ := json.Marshal(map[string]int{key: i})
		code, err := l.do(ctx, "PUT", "/entity/crash", body)
		switch {
		case err == nil && code == 200:
			l.mu.Lock()
			l.acked[key] = i
			l.mu.Unlock()
			l.writes.Add(1)
		case ctx.Err() != nil:
			return
		default:
			l.failures.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// read reads random acknowledged keys and records any value older than
// the one acknowledged before the read began.
func (l *ackLoad) read(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		key, want, ok := "", 0, false
		for k, v := range l.acked { // map order is random enough
			key, want, ok = k, v, true
			break
		}
		l.mu.Unlock()
		if !ok {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		got, err := l.get(ctx, key)
		if err != nil {
			continue
		}
		l.reads.Add(1)
		if got < want {
			l.mu.Lock()
			l.stale = append(l.stale, fmt.Sprintf("%s: read %d after %d was acknowledged", key, got, want))
			l.mu.Unlock()
		}
	}
}

// do sends one request with the admin key and returns the status.
func (l *ackLoad) do(ctx context.Context, method, path string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, *l.base.Load()+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// get reads one key's value.
func (l *ackLoad) get(ctx context.Context, key string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", *l.base.Load()+"/entity/crash?key="+key, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v int
	if resp.StatusCode != 200 || json.Unmarshal(b, &v) != nil {
		return 0, fmt.Errorf("GET %s = %d %s", key, resp.StatusCode, b)
	}
	return v, nil
}

// waitWrites waits until n more writes were acknowledged.
func (l *ackLoad) waitWrites(n int64) {
	l.t.Helper()
	target := l.writes.Load() + n
	deadline := time.Now().Add(60 * time.Second)
	for l.writes.Load() < target {
		if time.Now().After(deadline) {
			l.t.Fatalf("fewer than %d writes acknowledged in 60 s (%d failed)", n, l.failures.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the load.
func (l *ackLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// verify reads every acknowledged key back from base: each must hold its
// acknowledged value or a later one of its writer (a write that was
// durable but not yet answered). It returns how many keys it checked,
// and fails the test for any lost or stale one, or any stale read seen
// under load.
func (l *ackLoad) verify(base string) int {
	l.t.Helper()
	l.mu.Lock()
	acked := make(map[string]int, len(l.acked))
	for k, v := range l.acked {
		acked[k] = v
	}
	stale := append([]string(nil), l.stale...)
	l.mu.Unlock()
	l.setBase(base)
	lost := 0
	for key, want := range acked {
		got, err := l.get(context.Background(), key)
		if err != nil || got < want {
			lost++
			if lost <= 5 {
				l.t.Errorf("acknowledged %s=%d reads back %d, %v", key, want, got, err)
			}
		}
	}
	if len(stale) > 0 {
		l.t.Errorf("%d reads older than an acknowledged write, e.g. %s", len(stale), stale[0])
	}
	l.t.Logf("%d keys checked (%d writes acknowledged, %d failed, %d reads under load): %d lost or stale, %d stale reads",
		len(acked), l.writes.Load(), l.failures.Load(), l.reads.Load(), lost, len(stale))
	return len(acked)
}

// TestWALKillAllUnderLoad: -role=all is SIGKILLed three times under 32
// writers (once with checkpoints back to back, so that the kill lands
// in one); after each restart every acknowledged write reads back.
func TestWALKillAllUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	args := []string{"-shared-fs=" + dir, "-worker-id=w0"}
	n := startNode(t, keyEnv, args...)
	addr := n.addr
	load := startAckLoad(t, n.base, 32, 2, 20)
	behind := 0
	for round := range 3 {
		load.waitWrites(300)
		n.kill()
		behind += unappliedAtKill(t, dir)
		extra := []string{"-rest-addr=" + addr}
		if round == 1 {
			// Checkpoints back to back: the next kill lands in one.
			extra = append(extra, "-wal-checkpoint-bytes=4096", "-wal-checkpoint-interval=5ms", "-log-level=debug")
		}
		n = startNode(t, keyEnv, append(args, extra...)...)
		if round == 1 {
			load.waitWrites(300)
			// Log lines reach stderr in batches, up to 200 ms after they
			// were logged while lines keep coming: wait for them.
			w := newWait(t, "three checkpoints in the log", 10*time.Second)
			c := strings.Count(n.stderr.String(), msgCheckpoint)
			for ; c < 3 && !w.over(); c = strings.Count(n.stderr.String(), msgCheckpoint) {
				time.Sleep(50 * time.Millisecond)
			}
			if c < 3 {
				t.Errorf("%d checkpoints logged under load with -wal-checkpoint-bytes=4096 (%v)", c, w)
			}
		}
		if checked := load.verify(n.base); checked == 0 {
			t.Fatal("nothing acknowledged before the kill")
		}
	}
	load.stop()
	n.kill()
	n = startNode(t, keyEnv, append(args, "-rest-addr="+addr)...)
	load.verify(n.base)
	if behind == 0 {
		t.Error("the applier had written every entity file at each of the three kills: the kills tested no replay of unapplied writes")
	}
}

// unappliedAtKill counts the objects (entity files, versions) whose
// newest logged state is not in storage dir of a killed process: the
// writes the applier had not caught up with, which the restart must
// replay.
func unappliedAtKill(t *testing.T, dir string) int {
	t.Helper()
	st, err := newFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := readLogsOver(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for obj, data := range objs {
		cur, err := st.Get(t.Context(), obj)
		if (data != nil && (err != nil || !bytes.Equal(cur, data))) || (data == nil && err == nil) {
			n++
		}
	}
	t.Logf("at the kill: %d logged objects, %d not yet in storage", len(objs), n)
	return n
}

// TestWALKillWorkerUnderLoad: one main and two workers; a worker is
// SIGKILLed three times under 32 writers while readers check that no
// read is older than an acknowledged write (the main worker serves the
// killed worker's entities from the other one once it has applied its
// log); the worker comes back each time, and every acknowledged write
// reads back.
func TestWALKillWorkerUnderLoad(t *testing.T) {
	c := startCluster(t, "w1", "w2")
	load := startAckLoad(t, c.main.base, 32, 4, 20)
	for round := range 3 {
		victim := []string{"w2", "w1", "w2"}[round]
		load.waitWrites(300)
		c.workers[victim].kill()
		load.waitWrites(200) // served by the other worker meanwhile
		w := c.startWorker(victim)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s after its restart:\n%s", victim, w.stderr)
			}
		})
		c.waitWorkers(30*time.Second, "w1", "w2")
		load.verify(c.main.base)
	}
	load.stop()
	if load.verify(c.main.base) == 0 {
		t.Fatal("nothing acknowledged")
	}
	if log := c.main.stderr.String(); !strings.Contains(log, "write-ahead log handover done") {
		t.Errorf("the main worker logged no handover:\n%s", log)
	}
}

// TestWALPausedWorkerFenced: a worker stopped (SIGSTOP) past its lease
// under load has its log taken over by the main worker, which serves its
// entities from the other worker; resumed (SIGCONT), it finds its log
// taken, answers nothing it had not acknowledged, subscribes again with a
// new generation, and no value older than an acknowledged write is ever
// read or left.
func TestWALPausedWorkerFenced(t *testing.T) {
	c := startCluster(t, "wa", "wb")
	load := startAckLoad(t, c.main.base, 32, 4, 20)
	load.waitWrites(300)
	wa := c.workers["wa"]
	if err := wa.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			wa.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	c.waitWorkers(20*time.Second, "wb")
	waitLog(t, c.main, "write-ahead log handover done", "worker_id=wa")
	load.waitWrites(300) // wa's entities written through wb meanwhile
	wa.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	c.waitWorkers(30*time.Second, "wa", "wb")
	waitLog(t, wa, "write-ahead log was taken over by the main worker")
	load.waitWrites(300)
	load.stop()
	if load.verify(c.main.base) == 0 {
		t.Fatal("nothing acknowledged")
	}
	if t.Failed() {
		// Each failure tells its story: the three nodes' logs (no
		// secrets; the documents are test integers).
		t.Logf("MAIN:\n%s\nWA:\n%s\nWB:\n%s", c.main.stderr, wa.stderr, c.workers["wb"].stderr)
	}
	// The taken log is gone: applied and removed.
	entries, _ := os.ReadDir(filepath.Join(c.dir, walDirName))
	for _, e := range entries {
		if strings.Contains(e.Name(), walTakenInfix) {
			t.Errorf("claimed log %s left behind", e.Name())
		}
	}
}

// waitLog waits until n's log has a line holding every one of parts.
func waitLog(t *testing.T, n *node, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(n.stderr.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in 30 s:\n%s", parts, n.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWALDamagedLogStopsStart: after a kill the log is 0600 and holds no
// document's plaintext; a changed byte in its middle stops the next start
// with a message naming the file and the offset; a torn last record is dropped with a warning naming them, and
// the start goes on, with every earlier record applied (the entity files
// removed here stand for the writes a power cut lost).
func TestWALDamagedLogStopsStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	args := []string{"-shared-fs=" + dir, "-worker-id=w0"}
	n := startNode(t, keyEnv, args...)
	const marker = "PLAINTEXT-MARKER-wal-5d1e"
	if code, out, _ := n.call("PUT", "/entity/crash", testAdminKey, map[string]string{"secret": marker}); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	for i := range 20 {
		if code, out, _ := n.call("PUT", "/entity/crash", testAdminKey, map[string]int{fmt.Sprint("k", i): i}); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	n.kill()
	seg := onlySegment(t, dir, "w0")
	data, _ := os.ReadFile(seg)
	// The log holds documents sealed only, in files only we can read.
	if bytes.Contains(data, []byte(marker)) {
		t.Errorf("log segment %s holds a document's plaintext", seg)
	}
	for p, want := range map[string]os.FileMode{seg: 0o600, filepath.Dir(seg): os.ModeDir | 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", p, fi.Mode(), want)
		}
	}
	sc, err := scanSegmentBytes(seg, data, true)
	if err != nil || len(sc.records) < 20 {
		t.Fatalf("segment after the kill: %d records, %v", len(sc.records), err)
	}
	damaged := bytes.Clone(data)
	off := sc.offsets[len(sc.offsets)/2]
	damaged[off+walFrameHeader+12] ^= 0x10
	os.WriteFile(seg, damaged, 0o600)
	out := launch(t, keyEnv, args...).exitErr()
	want := fmt.Sprintf("offset %d", off)
	if !strings.Contains(out, want) || !strings.Contains(out, filepath.Base(seg)) {
		t.Fatalf("start with a damaged log:\n%s\nwant a failure naming %s and %s", out, filepath.Base(seg), want)
	}
	// Torn instead: the last record cut short. Without the entity files
	// (lost in a power cut) the log alone brings back every other write.
	// (The failed start had claimed the log; it is where it left it.)
	seg = onlySegment(t, dir, "w0")
	last := sc.offsets[len(sc.offsets)-1]
	os.WriteFile(seg, data[:last+10], 0o600)
	os.RemoveAll(filepath.Join(dir, "files"))
	n = startNode(t, keyEnv, args...)
	waitLog(t, n, "torn tail dropped", filepath.Base(seg), fmt.Sprintf("offset=%d", last), "dropped_bytes=10")
	lastKey := sc.records[len(sc.records)-1].Key
	for _, rec := range sc.records[:len(sc.records)-1] {
		if code, _, _ := n.call("GET", "/entity/crash?key="+rec.Key, testAdminKey, nil); code != 200 {
			t.Errorf("GET %s after replay = %d", rec.Key, code)
		}
	}
	if code, _, _ := n.call("GET", "/entity/crash?key="+lastKey, testAdminKey, nil); code != 404 {
		t.Errorf("GET %s, whose record was torn, = %d, want 404", lastKey, code)
	}
}

// TestWALDamagedWorkerLogNotReady: a main worker that restarts and finds
// a dead worker's log damaged in its middle cannot take it over: /readyz
// answers 503 naming the write-ahead log as damaged, its log names the
// file and the offset; once an operator moves the log away, the check
// passes again (the worker, killed, is not back: the workers check fails).
func TestWALDamagedWorkerLogNotReady(t *testing.T) {
	c := startCluster(t, "w1")
	for i := range 20 {
		if code, out, _ := c.main.call("PUT", "/entity/crash", testAdminKey, map[string]int{fmt.Sprint("k", i): i}); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	c.workers["w1"].kill()
	c.main.kill()
	seg := onlySegment(t, c.dir, "w1")
	data, _ := os.ReadFile(seg)
	sc, err := scanSegmentBytes(seg, data, true)
	if err != nil || len(sc.offsets) < 20 {
		t.Fatalf("w1's segment after the kill: %d records, %v", len(sc.offsets), err)
	}
	off := sc.offsets[len(sc.offsets)/2]
	data[off+walFrameHeader+12] ^= 0x10
	os.WriteFile(seg, data, 0o600)
	c.startMain()
	waitLog(t, c.main, "handover not done yet", filepath.Base(seg), fmt.Sprintf("offset %d", off))
	code, out, _ := c.main.call("GET", "/readyz", "", nil)
	var ready readyBody
	json.Unmarshal(out, &ready)
	if code != 503 || !strings.Contains(ready.Checks["write_ahead_log"].Reason, "damaged") {
		t.Errorf("/readyz with a damaged worker log = %d %s, want 503 naming the damaged log", code, out)
	}
	// The operator moves the log away (accepting the loss of its writes).
	taken, _ := filepath.Glob(filepath.Join(c.dir, walDirName, "w1"+walTakenInfix+"*"))
	if len(taken) != 1 {
		t.Fatalf("claimed logs of w1: %v, want one", taken)
	}
	if err := os.Rename(taken[0], filepath.Join(t.TempDir(), "aside")); err != nil {
		t.Fatal(err)
	}
	for w := newWait(t, "the log check passing once the log was moved away", 20*time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, out, _ = c.main.call("GET", "/readyz", "", nil)
		ready = readyBody{}
		if json.Unmarshal(out, &ready) == nil && ready.Checks["write_ahead_log"].OK {
			break
		}
		if w.over() {
			t.Fatalf("/readyz = %s after the damaged log was moved away (%v)", out, w)
		}
	}
}

// TestWALWorkerRefusedByMainWithoutLogs: a main worker started with
// -wal=false takes no log over, so it refuses a worker that keeps one
// (its entities would be served from files its log had not updated
// after it died), saying which flag to change; a worker with -wal=false
// joins.
func TestWALWorkerRefusedByMainWithoutLogs(t *testing.T) {
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+c.dir, "-wal=false")
	c.clusterAddr = c.main.logAddr("cluster listening")
	logged := c.startWorker("w1")
	c.startWorker("w2", "-wal=false")
	c.waitWorkers(20*time.Second, "w2")
	waitLog(t, logged, "subscribe failed", "keeps a write-ahead log", "-wal=false")
	for _, w := range c.workerRows() {
		if w.WorkerID == "w1" {
			t.Errorf("worker w1, which keeps a log, was registered by a main worker without logs: %+v", w)
		}
	}
}

// onlySegment returns the one log segment of worker id under dir, in its
// live or a claimed log directory.
func onlySegment(t *testing.T, dir, id string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, walDirName, id+"*", "*"+walSegSuffix))
	if err != nil || len(segs) != 1 {
		t.Fatalf("log segments of %s: %v, %v; want one", id, segs, err)
	}
	return segs[0]
}

// TestWALBackupDuringWrites: a backup taken while 32 writers write holds
// every write acknowledged before it began: restored into new storage, a
// server reads each of them back (or a later value of its writer).
func TestWALBackupDuringWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	n := startNode(t, keyEnv, "-shared-fs="+dir)
	load := startAckLoad(t, n.base, 32, 0, 30)
	load.waitWrites(500)
	load.mu.Lock()
	before := make(map[string]int, len(load.acked))
	for k, v := range load.acked {
		before[k] = v
	}
	load.mu.Unlock()
	archive := filepath.Join(t.TempDir(), "backup.tar")
	if _, err := runToolArgs(t, "-role=backup", "-shared-fs="+dir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatalf("backup during writes: %v", err)
	}
	load.stop()
	restored := filepath.Join(t.TempDir(), "restored")
	if _, err := runToolArgs(t, "-role=restore", "-shared-fs="+restored, "-in="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatalf("restore: %v", err)
	}
	r := startNode(t, keyEnv, "-shared-fs="+restored)
	missing := 0
	for key, want := range before {
		code, out, _ := r.call("GET", "/entity/crash?key="+key, testAdminKey, nil)
		var got int
		if code != 200 || json.Unmarshal(out, &got) != nil || got < want {
			if missing++; missing <= 5 {
				t.Errorf("acknowledged before the backup: %s=%d; restored: %d %s", key, want, code, out)
			}
		}
	}
	t.Logf("%d writes acknowledged before the backup began, %d missing from it", len(before), missing)
}

// TestWALRecordTooLargeBinary: with -rest-max-body-size and
// -max-document-size raised above the write-ahead log's largest record, a
// document past it alone, or one half its size with its version, answers
// 413 with a sentence true of it (only the second names versions), and
// neither is stored.
func TestWALRecordTooLargeBinary(t *testing.T) {
	const limit = "100000000"
	n, _ := startDefault(t, "-rest-max-body-size="+limit, "-max-document-size="+limit,
		"-max-response-bytes="+limit, "-max-inflight-read-bytes="+limit)
	if code, out, _ := n.call("PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":2}`); code != 200 {
		t.Fatalf("PUT /api/databases/vdb = %d %s", code, out)
	}
	for _, c := range []struct {
		db       string
		size     int
		versions bool
	}{
		{"plain", walMaxPayload + 1024, false},
		{"vdb", walMaxPayload/2 + 1024, true},
	} {
		code, out, _ := n.call("PUT", "/entity/"+c.db, testAdminKey, map[string]string{"big": strings.Repeat("x", c.size)})
		var e struct{ Error string }
		if json.Unmarshal(out, &e); code != 413 || !strings.Contains(e.Error, "write-ahead log") ||
			strings.Contains(e.Error, "with its versions") != c.versions {
			t.Errorf("PUT %s of %d bytes = %d %s, want 413 naming the log, versions: %v", c.db, c.size, code, out, c.versions)
		}
		if code, _, _ := n.call("GET", "/entity/"+c.db+"?key=big", testAdminKey, nil); code != 404 {
			t.Errorf("GET %s/big after the refused write = %d, want 404", c.db, code)
		}
	}
}
