package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// TestApplyEpochWaitsForWrites: applyEpoch does not return while a write
// holds the gate, and a write after it seals under the key now active: the
// first half of the rekey argument (rekey.go).
func TestApplyEpochWaitsForWrites(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	k, _ := newKeyring(st, bytes.Repeat([]byte{4}, 32), "k")
	if err := k.prepare(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	release := k.hold() // a write in progress
	var released atomic.Bool
	done := make(chan struct{})
	go func() {
		k.applyEpoch(7)
		if !released.Load() {
			t.Error("applyEpoch returned while a write held the gate")
		}
		close(done)
	}()
	// Wait until applyEpoch waits for the gate: a pending writer makes
	// TryRLock fail.
	for k.gate.TryRLock() {
		k.gate.RUnlock()
		runtime.Gosched()
	}
	select {
	case <-done:
		t.Fatal("applyEpoch returned while a write held the gate")
	default:
	}
	released.Store(true)
	release()
	<-done
	if e := k.keysEpoch(); e != 7 {
		t.Errorf("keysEpoch = %d, want 7", e)
	}
}

// TestRekeyJobOrder: the rekey's barrier runs after the new data key is
// active in storage and the main keyring applied the new epoch, and before
// any entity is re-encrypted; afterwards every entity is format 2 under
// the new key, the old key is gone, the job is done with done == total,
// and ETags are unchanged.
func TestRekeyJobOrder(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	master := bytes.Repeat([]byte{5}, 32)
	ring, _ := newKeyring(st, master, "k")
	w := newWorker("w1", st, newSchemaRegistry(st, budgets{}), newLRU[string, cachedEntity](16, 0, time.Now), budgets{}, slog.New(slog.DiscardHandler), nil)
	w.setKeys(ring)
	const n = 30
	etags := map[string]string{}
	for i := range n {
		key := fmt.Sprintf("k%02d", i)
		resp, err := w.Process(ctx, putReq("db", key, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		etags[key] = resp.GetVersion()
	}
	before, _, _ := readDataKeys(ctx, st, "db")
	var barrierCalls atomic.Int32
	barrier := func(ctx context.Context, e uint64) error {
		barrierCalls.Add(1)
		doc, _, err := readDataKeys(ctx, st, "db")
		if err != nil || doc.Active == before.Active || len(doc.Keys) != 2 {
			t.Errorf("at the barrier the data keys are %+v, %v: want the new key active beside the old", doc, err)
		}
		if ring.keysEpoch() < e {
			t.Errorf("at the barrier the main keyring is at epoch %d, want %d", ring.keysEpoch(), e)
		}
		for i := range n {
			if f, id := storedFormat(t, st, "db", fmt.Sprintf("k%02d", i)); f != formatDataKey || id != before.Active {
				t.Errorf("at the barrier k%02d is under %q already", i, id)
			}
		}
		return nil
	}
	jobs := newKeyJobs(ctx, keyJobsConfig{st: st, ring: ring, barrier: barrier, log: slog.New(slog.DiscardHandler)})
	view, started, err := jobs.startRekey(ctx, "db")
	if err != nil || !started {
		t.Fatalf("startRekey = %+v, %v, %v", view, started, err)
	}
	job := waitJob(t, jobs, view.ID)
	if job.State != jobDone || job.Done != n || job.Total != n || barrierCalls.Load() != 1 {
		t.Errorf("job = %+v (barrier calls %d), want done %d/%d after one barrier", job, barrierCalls.Load(), n, n)
	}
	after, _, err := readDataKeys(ctx, st, "db")
	if err != nil || len(after.Keys) != 1 || after.Active == before.Active {
		t.Fatalf("data keys after the rekey = %+v, %v, want only a new key", after, err)
	}
	fresh, _ := newKeyring(st, master, "k")
	for i := range n {
		key := fmt.Sprintf("k%02d", i)
		b, _ := st.Get(ctx, entityObjectKey("db", key))
		doc, h, err := fresh.open(ctx, "db", key, b)
		if err != nil || string(doc) != fmt.Sprint(i) || h.KeyID != after.Active || h.etag() != etags[key] {
			t.Errorf("%s after the rekey = %s under %q etag %s, %v; want %d under %q, etag %s", key, doc, h.KeyID, h.etag(), err, i, after.Active, etags[key])
		}
	}
}

// waitJob polls the job list until job id is no longer running.
func waitJob(t *testing.T, jobs *keyJobs, id string) jobView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		list, err := jobs.list(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range list {
			if j.ID == id && j.State != jobRunning {
				return j
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s still running after 30s", id)
	return jobView{}
}

// TestRekeyKillAndResume: a rekey of one database, paced, under writes,
// is SIGKILLed half-way; the restarted server resumes it from its record
// and completes it; every entity of the database then decrypts under the
// one new data key, every acknowledged write reads back, and another
// database's data key is untouched. The write-ahead log writes no entity
// file until a flush hurries it (-wal-apply-delay=1h) and the writes run
// across the rekey's flushes, so a flush that let an entity go before
// its file was written (rewritten meanwhile) would leave the pass without
// it for good: the job counted fewer entities done than it had, in CI.
// TestWALFlushRewritten reproduces that flush deterministically.
func TestRekeyKillAndResume(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	const lazyFiles = "-wal-apply-delay=1h"
	n := startNode(t, keyEnv, "-shared-fs="+dir, "-key-job-rate=100", lazyFiles)
	const total = 300
	body := map[string]int{}
	for i := range total {
		body[fmt.Sprintf("e%03d", i)] = i
	}
	if code, out, _ := n.call("PUT", "/entity/rk", testAdminKey, body); code != 200 {
		t.Fatalf("PUT rk = %d %s", code, out)
	}
	if code, out, _ := n.call("PUT", "/entity/other", testAdminKey, map[string]int{"x": 1}); code != 200 {
		t.Fatalf("PUT other = %d %s", code, out)
	}
	otherBefore, _ := os.ReadFile(filepath.Join(dir, dataKeysObjectKey("other")))
	var mu sync.Mutex
	acked := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for cl := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Each client its own keys, with growing values.
				key := fmt.Sprintf("e%03d", cl+4*((i*7)%(total/4)))
				code, _, err := tryCall("PUT", n.base+"/entity/rk", testAdminKey, map[string]int{key: total + i})
				if err == nil && code == 200 {
					mu.Lock()
					acked[key] = max(acked[key], total+i)
					mu.Unlock()
				}
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	code, out, _ := n.call("POST", "/admin/databases/rk/rekey", testAdminKey, nil)
	var job jobView
	if code != 202 || json.Unmarshal(out, &job) != nil || job.ID == "" || job.State != jobRunning {
		t.Fatalf("POST rekey = %d %s, want 202 and a running job", code, out)
	}
	// Half-way: GET /admin/jobs shows progress, and the job record holds
	// some (it is stored every second).
	recPath := filepath.Join(dir, jobsPrefix+job.ID+".json")
	for w := newWait(t, "the job's progress stored", 20*time.Second); ; {
		j := findJob(t, n, job.ID)
		var stored jobDoc
		raw, _ := os.ReadFile(recPath)
		if json.Unmarshal(raw, &stored) == nil && stored.Done > 0 && j.Done < total {
			break
		}
		if j.State != jobRunning || w.over() {
			t.Fatalf("job before the kill = %+v, stored %s; want running with progress stored", j, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.kill()
	var rec jobDoc
	raw, err := os.ReadFile(recPath)
	if err != nil || json.Unmarshal(raw, &rec) != nil || rec.State != jobRunning || rec.Phase != phaseReencrypt || rec.Done >= total {
		t.Fatalf("job record after the kill = %s, %v; want running, re-encrypting, not finished", raw, err)
	}
	n = startNode(t, keyEnv, "-shared-fs="+dir, "-rest-addr="+n.addr, lazyFiles)
	n.waitLog("resuming key job", 1)
	var final jobView
	for w := newWait(t, "the resumed job to finish", 30*time.Second); ; {
		final = findJob(t, n, job.ID)
		if final.State != jobRunning {
			break
		}
		if w.over() {
			t.Fatalf("job after restart still running: %+v", final)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Done == total: the resumed job went on from its cursor (from the
	// start it would count the first rec.Done entities twice).
	if final.State != jobDone || final.Total != total || final.Done != total {
		t.Errorf("job after resume = %+v, want done with %d of %d", final, total, total)
	}
	// Storage, as a storage tool reads it while the node runs (the
	// entity files with the records its log has not applied yet over
	// them): one data key for rk, every entity under it.
	fsst, err := newFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := toolView(fsst, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := readDataKeys(context.Background(), st, "rk")
	if err != nil || len(keys.Keys) != 1 {
		t.Fatalf("data keys of rk = %+v, %v, want exactly one", keys, err)
	}
	master, _ := hex.DecodeString(testMasterKey)
	ring, _ := newKeyring(st, master, "main-key-v1")
	mu.Lock()
	defer mu.Unlock()
	for i := range total {
		key := fmt.Sprintf("e%03d", i)
		b, err := st.Get(context.Background(), entityObjectKey("rk", key))
		if err != nil {
			t.Fatal(err)
		}
		doc, h, err := ring.open(context.Background(), "rk", key, b)
		var got int
		if err != nil || h.KeyID != keys.Active || json.Unmarshal(doc, &got) != nil {
			t.Errorf("%s after the rekey: %v (key %q), want it under %q", key, err, h.KeyID, keys.Active)
			continue
		}
		want := i
		if a, ok := acked[key]; ok {
			want = a
		}
		if got < want {
			t.Errorf("%s = %d, want at least %d (acknowledged)", key, got, want)
		}
	}
	if otherAfter, _ := os.ReadFile(filepath.Join(dir, dataKeysObjectKey("other"))); !bytes.Equal(otherBefore, otherAfter) {
		t.Errorf("the data keys of another database changed")
	}
	t.Logf("job %s: %d entities, %d done before the kill, %d writes acknowledged during it", job.ID, total, rec.Done, len(acked))
}

// findJob returns job id from GET /admin/jobs.
func findJob(t *testing.T, n *node, id string) jobView {
	t.Helper()
	code, out, _ := n.call("GET", "/admin/jobs", testAdminKey, nil)
	var jobs []jobView
	if code != 200 || json.Unmarshal(out, &jobs) != nil {
		t.Fatalf("GET /admin/jobs = %d %s", code, out)
	}
	for _, j := range jobs {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("job %s not in GET /admin/jobs: %s", id, out)
	return jobView{}
}

// putReq is a worker's PUT of doc as (db, key), by its owner.
func putReq(db, key, doc string) *pb.WorkerRequest {
	return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_PUT, Payload: []byte(doc)}, Owner: true}
}
