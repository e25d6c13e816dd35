package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRotationOfFormat1Storage: rotating the format-1 fixture to a new
// key upgrades every entity to format 2 under its database's data key,
// wrapped by the new key; afterwards the new key alone passes the key
// check and opens everything, the old key alone is refused.
func TestRotationOfFormat1Storage(t *testing.T) {
	st := copyFixture(t, "format1")
	ctx := t.Context()
	oldKey, _ := hex.DecodeString(format1MasterHex)
	newKey := bytes.Repeat([]byte{0x5a}, 32)
	prevID, _, err := checkKeys(ctx, st, newKey, "main-key-v2", oldKey)
	if err != nil || prevID != "main-key-v1" {
		t.Fatalf("checkKeys(new, previous old) = %q, %v, want main-key-v1, nil", prevID, err)
	}
	// Half-way (nothing rewrapped yet), the new key alone is refused.
	if _, _, err := checkKeys(ctx, st, newKey, "main-key-v2", nil); err == nil || !strings.Contains(err.Error(), "unfinished") {
		t.Errorf("start with the new key alone during a rotation = %v, want 'unfinished'", err)
	}
	ring, _ := newKeyring(st, newKey, "main-key-v2")
	if err := ring.addPrevious(oldKey, prevID); err != nil {
		t.Fatal(err)
	}
	done := false
	rot := &rotator{st: st, ring: ring, log: slog.New(slog.DiscardHandler), done: func() { done = true }}
	if err := rot.run(ctx, nil, "", nil); err != nil || !done {
		t.Fatalf("rotation = %v (done %v)", err, done)
	}
	if _, err := st.Get(ctx, rotationObject); !errors.Is(err, errNotFound) {
		t.Errorf("rotation record after the rotation: %v, want not found", err)
	}
	fresh, _ := newKeyring(st, newKey, "main-key-v2")
	for _, e := range format1Docs {
		b, err := st.Get(ctx, entityObjectKey(e.db, e.key))
		if err != nil {
			t.Fatal(err)
		}
		doc, h, err := fresh.open(ctx, e.db, e.key, b)
		if err != nil || string(doc) != e.doc || h.Format != formatDataKey {
			t.Errorf("after rotation %s/%q = %s (format %d), %v, want %s in format 2", e.db, e.key, doc, h.Format, err, e.doc)
		}
	}
	for _, db := range []string{"chatdb", "notes.v1"} {
		d, _, err := readDataKeys(ctx, st, db)
		if err != nil || d.Legacy || d.Keys[0].MasterKeyID != "main-key-v2" {
			t.Errorf("data keys of %s = %+v, %v, want not legacy, under main-key-v2", db, d, err)
		}
	}
	if _, _, err := checkKeys(ctx, st, newKey, "main-key-v2", nil); err != nil {
		t.Errorf("start with the new key alone after the rotation = %v", err)
	}
	if _, _, err := checkKeys(ctx, st, oldKey, "main-key-v1", nil); err == nil || !strings.Contains(err.Error(), "wrong master key") {
		t.Errorf("start with the old key alone after the rotation = %v, want wrong master key", err)
	}
}

// TestRotationKeyErrors: the refusals of a start that would rotate.
func TestRotationKeyErrors(t *testing.T) {
	ctx := t.Context()
	a, b, c := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	st := newTestFSStore(t)
	if _, _, err := checkKeys(ctx, st, a, "k1", b); err == nil || !strings.Contains(err.Error(), "nothing to rotate") {
		t.Errorf("rotation on empty storage = %v", err)
	}
	if err := checkMasterKey(ctx, st, a, "k1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cur, prev []byte
		want      string
	}{
		{"neither matches", b, c, "neither it nor -master-key matches"},
		{"same key", a, a, "same key as -master-key"},
	} {
		if _, _, err := checkKeys(ctx, st, tc.cur, "k2", tc.prev); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: checkKeys = %v, want containing %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := checkKeys(ctx, st, a, "k1", a); err != nil {
		t.Errorf("previous key given after a finished rotation: %v, want accepted", err)
	}
	if _, _, err := checkKeys(ctx, st, b, "k2", a); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cur, prev []byte
		want      string
	}{
		{"resume with another new key", c, a, "moves to key id"},
		{"resume with another old key", b, c, "moves from key id"},
	} {
		if _, _, err := checkKeys(ctx, st, tc.cur, "k2", tc.prev); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: checkKeys = %v, want containing %q", tc.name, err, tc.want)
		}
	}
}

// writeKeyFile writes a hex master key to a 0600 file and returns its path.
func writeKeyFile(t *testing.T, hexKey string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRotationUnderWritesWithKill: a main worker and a processing worker;
// the main restarts with a new master key and the old one as previous,
// and is SIGKILLed half-way through the rotation while 16 clients write.
// Restarted with both keys it finishes; the worker subscribes again and
// is told to once more when the rotation ends; no acknowledged write is
// lost; afterwards a start with the new key alone serves everything and
// one with the old key alone is refused.
func TestRotationUnderWritesWithKill(t *testing.T) {
	needBinary(t)
	const dbs = 60
	newHex := strings.Repeat("5a", 32)
	oldFile, newFile := writeKeyFile(t, testMasterKey), writeKeyFile(t, newHex)
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.startMain()
	c.startWorker("w1")
	c.waitWorkers(20*time.Second, "w1")
	for i := range dbs {
		if code, out, _ := c.main.call("PUT", fmt.Sprintf("/entity/db%02d", i), testAdminKey, map[string]int{"seed": i}); code != 200 {
			t.Fatalf("seed db%02d = %d %s", i, code, out)
		}
	}
	rotating := []string{"-role=main", "-shared-fs=" + c.dir, "-rest-addr=" + c.main.addr, "-cluster-addr=" + c.clusterAddr,
		"-master-key-file=" + newFile, "-previous-master-key-file=" + oldFile, "-key-id=main-key-v2"}
	env := []string{"MASTER_KEY=", "ADMIN_KEY=" + testAdminKey, joinTokenEnv + "=" + testJoinToken}
	c.main.kill()
	c.main = startNode(t, env, append(rotating, "-key-job-rate=20")...)

	var mu sync.Mutex
	acked := map[string]int{} // "db/key" -> highest value acknowledged
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for cl := range 16 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				db, key := fmt.Sprintf("db%02d", (cl*7+i)%dbs), fmt.Sprintf("c%d", cl)
				code, _, err := tryCall("PUT", c.main.base+"/entity/"+db, testAdminKey, map[string]int{key: i})
				if err == nil && code == 200 {
					mu.Lock()
					acked[db+"/"+key] = i
					mu.Unlock()
				}
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	c.main.waitLog("master key rotation progress", 1)
	c.main.kill()
	if _, err := os.Stat(filepath.Join(c.dir, rotationObject)); err != nil {
		t.Fatalf("rotation record after the kill: %v, want the rotation unfinished", err)
	}
	// Only the new key: refused while the rotation is unfinished.
	out := launch(t, env, "-role=main", "-shared-fs="+c.dir, "-master-key-file="+newFile, "-key-id=main-key-v2").exitErr()
	if !strings.Contains(out, "unfinished") {
		t.Errorf("start with the new key alone half-way: %s, want 'unfinished'", out)
	}
	// Slowly enough that the worker subscribes again (and gets both keys)
	// before the rotation ends: then it is told to subscribe once more.
	c.main = startNode(t, env, append(rotating, "-key-job-rate=5")...)
	c.waitWorkers(20*time.Second, "w1")
	if strings.Contains(c.main.stderr.String(), "master key rotation finished") {
		t.Fatal("the rotation finished before the worker subscribed again: slow the rotation down further")
	}
	c.main.waitLog("master key rotation finished: the previous key is no longer needed", 1)
	c.main.waitLog("worker told to subscribe again for the new master key", 1)
	c.waitWorkers(20*time.Second, "w1")
	time.Sleep(500 * time.Millisecond) // writes go on after the rotation
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 16 {
		t.Fatalf("only %d keys acknowledged", len(acked))
	}
	c.main.kill()
	c.workers["w1"].kill()

	// The new key alone serves every acknowledged write.
	n := startNode(t, []string{"MASTER_KEY=", "ADMIN_KEY=" + testAdminKey}, "-shared-fs="+c.dir, "-master-key-file="+newFile, "-key-id=main-key-v2")
	for dk, i := range acked {
		db, key, _ := strings.Cut(dk, "/")
		code, out, _ := n.call("GET", "/entity/"+db+"?key="+key, testAdminKey, nil)
		var got int
		if code != 200 || json.Unmarshal(out, &got) != nil || got < i {
			t.Errorf("acknowledged %s=%d: after rotation GET = %d %s", dk, i, code, out)
		}
	}
	for i := range dbs {
		if code, out, _ := n.call("GET", fmt.Sprintf("/entity/db%02d?key=seed", i), testAdminKey, nil); code != 200 || string(out) != fmt.Sprint(i) {
			t.Errorf("seed of db%02d after rotation = %d %s", i, code, out)
		}
	}
	n.kill()
	out = launch(t, []string{"MASTER_KEY=" + testMasterKey, "ADMIN_KEY=" + testAdminKey}, "-shared-fs="+c.dir).exitErr()
	if !strings.Contains(out, "wrong master key") {
		t.Errorf("start with the old key alone after the rotation: %s, want 'wrong master key'", out)
	}
	t.Logf("%d acknowledged writes checked", len(acked))
}

// TestRotationJobInAdminJobs: a master-key rotation is a key job like a
// rekey: GET /admin/jobs shows it running with its progress in databases,
// then done with every database counted, without a database of its own;
// the rotation record is gone and the previous key dropped. A start that
// finds a rotation job still marked running, with no rotation due, marks
// it done.
func TestRotationJobInAdminJobs(t *testing.T) {
	ctx := t.Context()
	st := newTestFSStore(t)
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if err := checkMasterKey(ctx, st, oldKey, "k1"); err != nil {
		t.Fatal(err)
	}
	oldRing, _ := newKeyring(st, oldKey, "k1")
	const dbs = 5
	for i := range dbs {
		db := fmt.Sprintf("db%d", i)
		if err := oldRing.prepare(ctx, db); err != nil {
			t.Fatal(err)
		}
		sealed, _, err := oldRing.seal(ctx, db, "k", []byte(`{"n":1}`))
		if err == nil {
			err = st.Put(ctx, entityObjectKey(db, "k"), sealed)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	prevID, _, err := checkKeys(ctx, st, newKey, "k2", oldKey)
	if err != nil || prevID != "k1" {
		t.Fatalf("checkKeys(new, previous old) = %q, %v", prevID, err)
	}
	ring, _ := newKeyring(st, newKey, "k2")
	if err := ring.addPrevious(oldKey, prevID); err != nil {
		t.Fatal(err)
	}
	var rotated atomic.Bool
	ts := newAuthTestServerOn(t, authConfig{}, st)
	log := slog.New(slog.DiscardHandler)
	// Ten objects a second: the five databases take half a second.
	ts.rest.jobs = newKeyJobs(ctx, keyJobsConfig{st: st, ring: ring, log: log, rate: 10,
		barrier:  func(context.Context, uint64) error { return nil },
		rotation: &rotator{st: st, ring: ring, log: log, done: func() { ring.dropPrevious(); rotated.Store(true) }}})
	if err := ts.rest.jobs.resume(); err != nil {
		t.Fatal(err)
	}
	var job jobView
	sawProgress := false
	for deadline := time.Now().Add(30 * time.Second); ; {
		var list []jobView
		if err := json.Unmarshal(ts.mustDo(t, "GET", "/admin/jobs", testAdminKey, "", 200), &list); err != nil || len(list) != 1 {
			t.Fatalf("GET /admin/jobs = %+v, %v, want one job", list, err)
		}
		job = list[0]
		if job.State != jobRunning {
			break
		}
		// Total is 0 until the databases are listed.
		if job.Kind != kindRotate || job.Phase != phaseRewrap || job.Total != dbs && job.Total != 0 || job.Database != "" {
			t.Fatalf("running rotation in GET /admin/jobs = %+v, want kind rotate, phase rewrap, total %d, no database", job, dbs)
		}
		sawProgress = sawProgress || job.Done > 0 && job.Done < dbs
		if time.Now().After(deadline) {
			t.Fatalf("rotation still running after 30 s: %+v", job)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if job.State != jobDone || job.Kind != kindRotate || job.Done != dbs || job.Total != dbs || job.FinishedAt == nil || job.Error != "" {
		t.Errorf("finished rotation in GET /admin/jobs = %+v, want done %d of %d", job, dbs, dbs)
	}
	if !sawProgress {
		t.Errorf("GET /admin/jobs never showed the rotation part-way (0 < done < %d)", dbs)
	}
	if _, err := st.Get(ctx, rotationObject); !errors.Is(err, errNotFound) || !rotated.Load() {
		t.Errorf("after the job: rotation record %v (want not found), previous key dropped %v", err, rotated.Load())
	}
	if _, prev := ring.masters(); prev != nil {
		t.Error("the keyring still holds the previous key")
	}
	if _, _, err := checkKeys(ctx, st, newKey, "k2", nil); err != nil {
		t.Errorf("start with the new key alone after the rotation job = %v", err)
	}

	// A crash between the end of the rotation and its job record's last
	// save: the next start (no rotation due) marks the record done.
	stale := &jobDoc{ID: "rotate-stale", Kind: kindRotate, State: jobRunning, Phase: phaseRewrap, Done: 2, Total: dbs,
		StartedAt: time.Now().UTC()}
	if err := putJSON(ctx, st, jobsPrefix+stale.ID+".json", "job", stale); err != nil {
		t.Fatal(err)
	}
	jobs := newKeyJobs(ctx, keyJobsConfig{st: st, ring: ring, log: log, barrier: func(context.Context, uint64) error { return nil }})
	if err := jobs.resume(); err != nil {
		t.Fatal(err)
	}
	list, err := jobs.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list {
		if j.ID == stale.ID && (j.State != jobDone || j.FinishedAt == nil) {
			t.Errorf("stale rotation record after a start with no rotation due = %+v, want done", j)
		}
	}
}
