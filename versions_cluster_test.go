package main

// Entity versions across processes: main + 2 workers on a shared
// directory and on S3, a worker leaving, a SIGKILL of -role=all under
// load.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// versionsMarker is in every document the cluster tests write: no stored
// object may hold it in the clear.
const versionsMarker = "versions-plain-marker"

// clusterVersions lists the versions of key in vdb through n.
func clusterVersions(t *testing.T, n *node, key string) versionList {
	t.Helper()
	return nodeVersions(t, n, "vdb", key)
}

// runVersionsCluster writes versions through c's main worker, stops
// worker w2 and writes again (the new owner continues each entity's
// numbering), soft-deletes, undeletes and destroys; it checks each
// answer.
func runVersionsCluster(t *testing.T, c *cluster) {
	t.Helper()
	m := c.main
	if code, out, _ := m.call("PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":4}`); code != 200 {
		t.Fatalf("PUT settings = %d %s", code, out)
	}
	const keys = 12
	etags := map[string][]string{}
	write := func(round int) {
		for i := range keys {
			k := fmt.Sprintf("k%d", i)
			code, out, hdr := m.call("PUT", "/entity/vdb", testAdminKey, fmt.Sprintf(`{%q:{"round":%d,"m":%q}}`, k, round, versionsMarker))
			if code != 200 {
				t.Fatalf("PUT %s round %d = %d %s", k, round, code, out)
			}
			etags[k] = append(etags[k], strings.Trim(hdr.Get("ETag"), `"`))
		}
	}
	write(1)
	write(2)
	c.workers["w2"].stop()
	c.waitWorkers(scaled(20*time.Second), "w1")
	write(3)
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		l := clusterVersions(t, m, k)
		if got := fmt.Sprint(versionNumbers(l)); got != "[1 2 3]" {
			t.Fatalf("versions of %s after a worker left = %s, want [1 2 3]", k, got)
		}
		for j, v := range l.Versions {
			if v.ETag != etags[k][j] {
				t.Errorf("%s version %d ETag %s, want %s (the PUT's)", k, v.Version, v.ETag, etags[k][j])
			}
		}
		if code, out, _ := m.call("GET", "/entity/vdb?key="+k+"&version=2", testAdminKey, nil); code != 200 || !jsonEqual(out, []byte(fmt.Sprintf(`{"round":2,"m":%q}`, versionsMarker))) {
			t.Errorf("GET %s version 2 = %d %s", k, code, out)
		}
	}
	if code, out, _ := m.call("DELETE", "/entity/vdb?key=k1", testAdminKey, nil); code != 200 {
		t.Fatalf("DELETE = %d %s", code, out)
	}
	if code, _, _ := m.call("GET", "/entity/vdb?key=k1", testAdminKey, nil); code != 404 {
		t.Errorf("GET after a soft delete = %d, want 404", code)
	}
	if code, out, _ := m.call("POST", "/entity/vdb/undelete?key=k1", testAdminKey, nil); code != 200 {
		t.Fatalf("undelete = %d %s", code, out)
	}
	if code, out, _ := m.call("POST", "/entity/vdb/destroy?key=k2&versions=1,2", testAdminKey, nil); code != 200 {
		t.Fatalf("destroy = %d %s", code, out)
	}
	if code, _, _ := m.call("GET", "/entity/vdb?key=k2&version=1", testAdminKey, nil); code != 404 {
		t.Errorf("GET of a destroyed version = %d, want 404", code)
	}
	if l := clusterVersions(t, m, "k1"); fmt.Sprint(versionNumbers(l)) != "[1 2 3 4]" || l.Versions[2].Deleted {
		t.Errorf("versions of k1 after delete and undelete = %+v", l)
	}
	if code, out, _ := m.call("GET", "/api/databases/vdb/keys", testAdminKey, nil); code != 200 || bytes.Contains(out, []byte("_versions")) || !bytes.Contains(out, []byte(`"k1"`)) {
		t.Errorf("keys = %d %s", code, out)
	}
	if code, out, _ := m.call("POST", "/api/databases/vdb/find", testAdminKey, `{"selector":{"round":2}}`); code != 200 || !bytes.Contains(out, []byte(`"docs":[]`)) {
		t.Errorf("find of round 2 (only in versions) = %d %s, want no document", code, out)
	}
}

// TestVersionsClusterFS: main + 2 workers on one directory.
func TestVersionsClusterFS(t *testing.T) {
	needBinary(t)
	c := startCluster(t, "w1", "w2")
	runVersionsCluster(t, c)
	assertNoMarker(t, c.dir)
}

// TestVersionsWorkerKilled: a worker SIGKILLed right after writes with
// versions on, its applier still holding them back: the main worker takes
// its log over, and every acknowledged write is a version, listed and
// readable, through the worker that takes its entities.
func TestVersionsWorkerKilled(t *testing.T) {
	needBinary(t)
	c := startCluster(t, "w1", "w2")
	m := c.main
	if code, out, _ := m.call("PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":5}`); code != 200 {
		t.Fatalf("PUT settings = %d %s", code, out)
	}
	const keys = 16
	etags := map[string][]string{}
	for round := 1; round <= 3; round++ {
		for i := range keys {
			k := fmt.Sprintf("k%d", i)
			code, out, hdr := m.call("PUT", "/entity/vdb", testAdminKey, fmt.Sprintf(`{%q:{"round":%d}}`, k, round))
			if code != 200 {
				t.Fatalf("PUT %s round %d = %d %s", k, round, code, out)
			}
			etags[k] = append(etags[k], strings.Trim(hdr.Get("ETag"), `"`))
		}
	}
	c.workers["w2"].kill()
	if pending := unappliedVersionsAtKill(t, c.dir); pending == 0 {
		t.Error("every version was in storage at the kill: the kill tested no takeover of logged versions")
	}
	c.waitWorkers(scaled(20*time.Second), "w1")
	count := 0
	for k, want := range etags {
		l := clusterVersions(t, m, k)
		for j, v := range l.Versions {
			if j >= len(want) || v.ETag != want[j] {
				t.Errorf("%s versions after the kill: %+v, want ETags %v", k, l.Versions, want)
				break
			}
			code, out, _ := m.call("GET", fmt.Sprintf("/entity/vdb?key=%s&version=%d", k, v.Version), testAdminKey, nil)
			if code != 200 || string(out) != fmt.Sprintf(`{"round":%d}`, j+1) {
				t.Errorf("GET %s version %d after the kill = %d %s", k, v.Version, code, out)
			}
			count++
		}
	}
	if count != keys*3 {
		t.Errorf("%d of %d acknowledged writes are versions after the kill", count, keys*3)
	}
}

// TestS3Versions: main + 2 workers on S3.
func TestS3Versions(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	c, dirs := startS3Cluster(t, s3NodeArgs(cfg, bucket.bucket), "w1", "w2")
	runVersionsCluster(t, c)
	objs := bucketKeys(t, bucket, versionsPrefix)
	if len(objs) < 12*3 {
		t.Errorf("the bucket holds %d version objects, want at least 36", len(objs))
	}
	for _, k := range bucketKeys(t, bucket, "") {
		raw, err := bucket.Get(t.Context(), k)
		if err == nil && bytes.Contains(raw, []byte(versionsMarker)) {
			t.Errorf("object %s holds a document in the clear", k)
		}
	}
	for _, d := range dirs {
		assertNoMarker(t, d)
	}
	if code, out, _ := c.main.call("DELETE", "/api/databases/vdb", testAdminKey, nil); code != 200 {
		t.Fatalf("DELETE database = %d %s", code, out)
	}
	if left := bucketKeys(t, bucket, versionsPrefix); len(left) != 0 {
		t.Errorf("after deleting the database the bucket holds %v", left)
	}
}

// assertNoMarker fails when a file under dir holds versionsMarker.
func assertNoMarker(t *testing.T, dir string) {
	t.Helper()
	for _, f := range storedUnder(t, dir, "") {
		if raw, err := os.ReadFile(filepath.Join(dir, f)); err == nil && bytes.Contains(raw, []byte(versionsMarker)) {
			t.Errorf("%s holds a document in the clear", f)
		}
	}
}

// TestVersionsKillUnderLoad: clients write versions of a few keys through
// -role=all (log on) until it is SIGKILLed while the applier still holds
// versions back; after a restart every acknowledged write is a kept
// version, listed with its ETag and readable with its document: none is
// lost.
func TestVersionsKillUnderLoad(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	args := []string{"-shared-fs=" + dir, "-max-versions=100"}
	n := startNode(t, keyEnv, args...)
	type ackedWrite struct {
		etag string
		i    int
	}
	var mu sync.Mutex
	acked := map[string][]ackedWrite{} // key -> writes acknowledged, in order
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for cl := range 6 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 90; i++ {
				key := fmt.Sprintf("c%d-k%d", cl, i%3)
				code, _, hdr, err := doCall("PUT", n.base+"/entity/kdb", testAdminKey, fmt.Sprintf(`{%q:{"i":%d}}`, key, i))
				if err == nil && code == 200 {
					mu.Lock()
					acked[key] = append(acked[key], ackedWrite{strings.Trim(hdr.Get("ETag"), `"`), i})
					mu.Unlock()
				}
			}
		})
	}
	deadline := time.Now().Add(scaled(20 * time.Second))
	for {
		mu.Lock()
		total := 0
		for _, e := range acked {
			total += len(e)
		}
		mu.Unlock()
		if total >= 120 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.kill()
	cancel()
	wg.Wait()
	if pending := unappliedVersionsAtKill(t, dir); pending == 0 {
		t.Error("every version was in storage at the kill: the kill tested no replay of logged versions")
	}
	n = startNode(t, keyEnv, args...)
	defer n.stop()
	count, lost := 0, 0
	for key, writes := range acked {
		l := nodeVersions(t, n, "kdb", key)
		kept := map[string]int64{}
		for _, v := range l.Versions {
			kept[v.ETag] = v.Version
		}
		for _, w := range writes {
			count++
			v, ok := kept[w.etag]
			if !ok {
				lost++
				t.Errorf("%s: acknowledged write with ETag %s has no version after SIGKILL (versions %+v)", key, w.etag, l.Versions)
				continue
			}
			code, body, hdr := n.call("GET", fmt.Sprintf("/entity/kdb?key=%s&version=%d", key, v), testAdminKey, nil)
			if want := fmt.Sprintf(`{"i":%d}`, w.i); code != 200 || string(body) != want || strings.Trim(hdr.Get("ETag"), `"`) != w.etag {
				lost++
				t.Errorf("%s version %d = %d %s (ETag %s), want %s (ETag %s)", key, v, code, body, hdr.Get("ETag"), want, w.etag)
			}
		}
	}
	if count < 30 {
		t.Fatalf("only %d writes acknowledged before the kill", count)
	}
	t.Logf("%d acknowledged writes, %d lost: each a kept version, listed and readable, after SIGKILL and restart", count, lost)
}

// unappliedVersionsAtKill counts the version objects (and indexes) the
// logs of a killed process hold that storage dir does not yet.
func unappliedVersionsAtKill(t *testing.T, dir string) int {
	t.Helper()
	objs, err := readLogsOver(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for obj, data := range objs {
		if !strings.HasPrefix(obj, versionsPrefix) {
			continue
		}
		cur, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(obj)))
		if (data != nil && (err != nil || !bytes.Equal(cur, data))) || (data == nil && err == nil) {
			n++
		}
	}
	t.Logf("at the kill: %d version objects logged and not yet in storage", n)
	return n
}
