package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// runToolArgs runs the binary's run in-process with args and returns its
// stdout and error (stderr goes to the test log).
func runToolArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args, &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("%v stderr:\n%s", args, stderr.String())
	}
	return stdout.String(), err
}

// seedObjects stores one object of every kind the storage holds: entities
// (one with a 256-byte key, stored in segments), a schema template, the
// API keys, a session revocation, the key check and a database's wrapped
// data keys. Entities are opaque bytes here: backup and restore never look
// inside.
func seedObjects(t *testing.T, st store) map[string][]byte {
	t.Helper()
	objects := map[string][]byte{
		entityObjectKey("chatdb", "session_001"):            []byte("DDBE\x01sealed bytes \x00\xff"),
		entityObjectKey("chatdb", strings.Repeat("k", 256)): bytes.Repeat([]byte{0xAB}, 3000),
		entityObjectKey("other.db", "a"):                    {},
		schemaObjectKey("chat.v1"):                          []byte(`{"type":"object"}`),
		authKeysObject:                                      []byte(`{"keys":[]}`),
		revokedPrefix + "abc":                               []byte(`{}`),
		keyCheckObject:                                      testKeyCheck(),
		dataKeysObjectKey("chatdb"):                         []byte(`{"active":"dk-1"}`),
		bindingObjectKey("chatdb"):                          []byte(`{"schema":"chat.v1"}`),
	}
	for k, v := range objects {
		if err := st.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	return objects
}

// testKeyCheck is the key check document of testMasterKey under the
// tools' default -key-id.
func testKeyCheck() []byte {
	master, _ := hex.DecodeString(testMasterKey)
	doc, _ := json.Marshal(keyCheckDoc{Format: storageFormat, KeyID: "main-key-v1", Check: hex.EncodeToString(keyCheckValue(master, "main-key-v1"))})
	return doc
}

// testArchiveKey is the archive key of testMasterKey.
func testArchiveKey(t testing.TB) []byte {
	t.Helper()
	k, err := deriveArchiveKey(mustHex(testMasterKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storeObjects returns every object of st.
func storeObjects(t *testing.T, st store) map[string][]byte {
	t.Helper()
	keys, err := st.List(t.Context(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	objects := map[string][]byte{}
	for _, k := range keys {
		if objects[k], err = st.Get(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	return objects
}

// sameObjects reports the differences between two sets of objects.
func sameObjects(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: object %s missing", what, k)
		} else if !bytes.Equal(g, want[k]) {
			t.Errorf("%s: object %s = %q, want %q", what, k, g, want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected object %s", what, k)
		}
	}
}

// newToolFSStore is newTestFSStore with its directory, for -shared-fs.
func newToolFSStore(t *testing.T) (*fsStore, string) {
	st := newTestFSStore(t)
	return st, st.root
}

// TestBackupRestoreRoundTrip: every object, of every kind, comes back
// byte for byte in new storage; the archive is a tar any tool reads, with
// each object under objects/ and the manifest last.
func TestBackupRestoreRoundTrip(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	want := seedObjects(t, src)
	archive := filepath.Join(t.TempDir(), "backup.tar")
	out, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !strings.Contains(out, fmt.Sprintf("backup: %d objects", len(want))) {
		t.Errorf("backup printed %q, want the object count %d", out, len(want))
	}
	var names []string
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for tr := tar.NewReader(f); ; {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive is not a tar: %v", err)
		}
		names = append(names, hdr.Name)
	}
	wantNames := []string{}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		wantNames = append(wantNames, "objects/"+k)
	}
	wantNames = append(wantNames, "manifest.json", "manifest.hmac")
	if !slices.Equal(names, wantNames) {
		t.Errorf("archive entries = %q, want %q", names, wantNames)
	}

	dst, dstDir := newToolFSStore(t)
	if out, err = runToolArgs(t, "-role=restore", "-shared-fs="+dstDir, "-in="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !strings.Contains(out, fmt.Sprintf("restore: %d objects", len(want))) || !strings.Contains(out, "every checksum verified") {
		t.Errorf("restore printed %q", out)
	}
	sameObjects(t, "restored", storeObjects(t, dst), want)
}

// TestBackupRefusesExistingArchive: -out never replaces a file.
func TestBackupRefusesExistingArchive(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	seedObjects(t, src)
	archive := filepath.Join(t.TempDir(), "backup.tar")
	os.WriteFile(archive, []byte("keep me"), 0o600)
	_, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off")
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup over an existing file = %v, want an error saying it exists", err)
	}
	if b, _ := os.ReadFile(archive); string(b) != "keep me" {
		t.Errorf("existing file now holds %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(archive), tmpPrefix+"*")); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}

// backupOf writes an archive of objects (in key order) and returns it.
func backupOf(t *testing.T, objects map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	aw := newArchiveWriter(&buf, "test", time.Unix(1700000000, 0), testArchiveKey(t), "main-key-v1")
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		if err := aw.add(k, objects[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRestoreRefusesFlippedByte: one changed byte inside an object's
// bytes makes restore refuse the archive, naming the object, and write
// nothing.
func TestRestoreRefusesFlippedByte(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	objects := seedObjects(t, src)
	archive := filepath.Join(t.TempDir(), "backup.tar")
	if _, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{schemaObjectKey("chat.v1"), entityObjectKey("chatdb", strings.Repeat("k", 256))} {
		i := bytes.Index(good, objects[key])
		if i < 0 {
			t.Fatalf("object %s not found in the archive", key)
		}
		bad := bytes.Clone(good)
		bad[i+len(objects[key])/2] ^= 0x01
		badPath := filepath.Join(t.TempDir(), "bad.tar")
		os.WriteFile(badPath, bad, 0o600)
		dst, dstDir := newToolFSStore(t)
		_, err := runToolArgs(t, "-role=restore", "-shared-fs="+dstDir, "-in="+badPath, "-master-key="+testMasterKey, "-progress=off")
		if err == nil || !strings.Contains(err.Error(), "object "+key+" does not match its checksum in the manifest") {
			t.Errorf("restore of an archive with a byte of %s flipped = %v, want a refusal naming it", key, err)
		}
		if got := storeObjects(t, dst); len(got) != 0 {
			t.Errorf("refused restore wrote %d objects", len(got))
		}
	}
}

// TestArchiveAnyFlippedByte: whichever byte of an archive is changed,
// reading it either fails or yields exactly the objects backed up (a byte
// of tar padding carries nothing). Cutting it short anywhere fails.
func TestArchiveAnyFlippedByte(t *testing.T) {
	objects := map[string][]byte{
		entityObjectKey("db", "k"):                      []byte("sealed"),
		entityObjectKey("db", strings.Repeat("x", 200)): []byte("long name, PAX header"),
		schemaObjectKey("s.v1"):                         []byte(`{}`),
	}
	good := backupOf(t, objects)
	read := func(archive []byte) (map[string][]byte, error) {
		got := map[string][]byte{}
		_, err := readArchive(bytes.NewReader(archive), testArchiveKey(t), nil, func(key string, data []byte) error {
			got[key] = data
			return nil
		})
		return got, err
	}
	if got, err := read(good); err != nil {
		t.Fatalf("intact archive: %v", err)
	} else {
		sameObjects(t, "intact archive", got, objects)
	}
	refused := 0
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x20
		got, err := read(bad)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Errorf("byte %d flipped: error %v does not wrap errCorrupt", i, err)
			}
			refused++
			continue
		}
		if !maps.EqualFunc(got, objects, bytes.Equal) {
			t.Errorf("byte %d flipped: archive accepted with different objects", i)
		}
	}
	// Cut anywhere before the end of the manifest checksum (what follows
	// is padding and tar's end blocks).
	end := bytes.LastIndexByte(good, '\n') + 1
	for n := 0; n < end; n += 37 {
		if _, err := read(good[:n]); err == nil {
			t.Errorf("archive cut at %d of %d bytes accepted", n, len(good))
		}
	}
	t.Logf("%d of %d single-byte changes refused, the rest in padding", refused, len(good))
}

// TestRestoreRefusesNonEmptyStorage: restore writes only into storage
// holding no object, and leaves non-empty storage as it was.
func TestRestoreRefusesNonEmptyStorage(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	seedObjects(t, src)
	archive := filepath.Join(t.TempDir(), "backup.tar")
	if _, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatal(err)
	}
	dst, dstDir := newToolFSStore(t)
	existing := map[string][]byte{schemaObjectKey("mine"): []byte(`{"type":"string"}`)}
	dst.Put(t.Context(), schemaObjectKey("mine"), existing[schemaObjectKey("mine")])
	_, err := runToolArgs(t, "-role=restore", "-shared-fs="+dstDir, "-in="+archive, "-master-key="+testMasterKey, "-progress=off")
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into non-empty storage = %v, want a refusal saying it is not empty", err)
	}
	sameObjects(t, "non-empty storage after a refused restore", storeObjects(t, dst), existing)
}

// TestToolFlags: the storage tools refuse missing and bad flags with an
// error naming the flag.
func TestToolFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-role=backup", "-out"},
		{"-role=restore", "-in"},
		{"-role=backup -out=x -concurrency=0", "-concurrency"},
		{"-role=backup -out=x -progress=loud", "-progress"},
		{"-role=restore -in=x -rest-addr=:1", "rest-addr"},
	} {
		_, err := runToolArgs(t, strings.Fields(c.args+" -shared-fs="+t.TempDir())...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// TestBackupWhileWriting: a backup taken while 16 writers keep writing,
// restored into a new directory, holds every write acknowledged before
// the backup started with its value, and a server on it reads every
// entity it lists.
func TestBackupWhileWriting(t *testing.T) {
	n, dir := startDefault(t)
	n.call("PUT", "/schema/doc.v1", testAdminKey, `{"type":"object"}`)
	var mu sync.Mutex
	acked := map[string]string{} // key -> value, each key written once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	perWriter := make([]chan struct{}, 16)
	for c := range 16 {
		perWriter[c] = make(chan struct{})
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key, value := fmt.Sprintf("w%02d-%05d", c, i), fmt.Sprintf(`{"writer":%d,"i":%d}`, c, i)
				body, _ := json.Marshal(map[string]json.RawMessage{key: json.RawMessage(value)})
				req, _ := http.NewRequestWithContext(ctx, "PUT", n.base+"/entity/live", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testAdminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("PUT %s: %v", key, err)
					}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("PUT %s = %d", key, resp.StatusCode)
					return
				}
				mu.Lock()
				acked[key] = value
				mu.Unlock()
				if i == 20 {
					close(perWriter[c])
				}
			}
		})
	}
	for _, c := range perWriter { // every writer has 20 writes acknowledged
		select {
		case <-c:
		case <-time.After(scaled(60 * time.Second)):
			t.Fatal("writers too slow")
		}
	}
	mu.Lock()
	before := maps.Clone(acked)
	mu.Unlock()
	archive := filepath.Join(t.TempDir(), "live.tar")
	out, err := runBinary(t, "-role=backup", "-shared-fs="+dir, "-out="+archive, "-master-key="+testMasterKey, "-progress=lines")
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "objects (100%)") {
		t.Errorf("backup -progress=lines printed no final progress line:\n%s", out)
	}
	mu.Lock()
	during := len(acked) - len(before)
	mu.Unlock()
	cancel()
	wg.Wait()
	t.Logf("%d writes acknowledged before the backup, %d while it ran", len(before), during)
	if during == 0 {
		t.Error("no write was acknowledged while the backup ran: the test proves nothing")
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if out, err := runBinary(t, "-role=restore", "-shared-fs="+restored, "-in="+archive, "-master-key="+testMasterKey, "-progress=lines"); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	out, err = runBinary(t, "-role=verify", "-shared-fs="+restored, "-master-key="+testMasterKey, "-progress=off")
	if err != nil || !strings.Contains(string(out), ", 0 failed") {
		t.Errorf("verify of the restored storage: %v\n%s", err, out)
	}
	r := startNode(t, keyEnv, "-shared-fs="+restored)
	for key, value := range before {
		code, got, _ := r.call("GET", "/entity/live?key="+key, testAdminKey, nil)
		if code != 200 || !jsonEqual(got, []byte(value)) {
			t.Errorf("acknowledged before the backup: %s = %d %s, want %s", key, code, got, value)
		}
	}
	// Every entity the restored storage holds decrypts, and holds what was
	// written to it (each key was written once).
	keys := listAllKeys(t, r, "live")
	if len(keys) < len(before) {
		t.Errorf("restored storage lists %d keys, want at least %d", len(keys), len(before))
	}
	for _, key := range keys {
		code, got, _ := r.call("GET", "/entity/live?key="+key, testAdminKey, nil)
		mu.Lock()
		want, ok := acked[key]
		mu.Unlock()
		if code != 200 || (ok && !jsonEqual(got, []byte(want))) {
			t.Errorf("restored %s = %d %s, want 200 %s", key, code, got, want)
		}
	}
	if code, got, _ := r.call("GET", "/schema/doc.v1", "", nil); code != 200 {
		t.Errorf("restored schema: %d %s", code, got)
	}
}

// listAllKeys pages through GET /api/databases/{db}/keys.
func listAllKeys(t *testing.T, n *node, db string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for {
		path := "/api/databases/" + db + "/keys?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		code, out, _ := n.call("GET", path, testAdminKey, nil)
		var page struct {
			Keys []string `json:"keys"`
			Next string   `json:"next"`
		}
		if code != 200 || json.Unmarshal(out, &page) != nil {
			t.Fatalf("list keys of %s: %d %s", db, code, out)
		}
		keys = append(keys, page.Keys...)
		if page.Next == "" {
			return keys
		}
		cursor = page.Next
	}
}

// TestS3BackupRoundTrip: directory -> S3 -> directory through two backups
// and two restores: every object comes back byte for byte, so every
// document reads back the same from a server on the final directory.
func TestS3BackupRoundTrip(t *testing.T) {
	cfg := s3TestConfig(t)
	n, dir := startDefault(t)
	docs := map[string]string{"session_001": `{"messages":["hi"]}`, strings.Repeat("k", 256): `[1,2,3]`, "ünï": `"text"`}
	for key, doc := range docs {
		if code, out, _ := n.call("PUT", "/entity/chatdb", testAdminKey, map[string]json.RawMessage{key: json.RawMessage(doc)}); code != 200 {
			t.Fatalf("PUT %s: %d %s", key, code, out)
		}
	}
	n.call("PUT", "/schema/chat.v1", testAdminKey, `{"type":"object"}`)
	if code, out, _ := n.call("POST", "/api/keys", testAdminKey, map[string]any{"name": "reader", "permissions": []string{"read"}}); code/100 != 2 {
		t.Fatalf("POST /api/keys: %d %s", code, out)
	}
	n.stop()
	original := storeObjects(t, mustFSStore(t, dir))
	for _, prefix := range []string{entitiesPrefix, templatesPrefix, authPrefix, metaPrefix} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(original)), func(k string) bool { return strings.HasPrefix(k, prefix) }) {
			t.Errorf("the server stored nothing under %s: the round trip would not cover it", prefix)
		}
	}
	t.Logf("%d objects", len(original))

	bucket := testBucket(t, cfg)
	s3 := s3NodeArgs(cfg, bucket.bucket)
	tmp := t.TempDir()
	final := filepath.Join(tmp, "final")
	for _, step := range [][]string{
		{"-role=backup", "-shared-fs=" + dir, "-out=" + filepath.Join(tmp, "dir.tar")},
		append([]string{"-role=restore", "-in=" + filepath.Join(tmp, "dir.tar")}, s3...),
		append([]string{"-role=backup", "-out=" + filepath.Join(tmp, "s3.tar")}, s3...),
		{"-role=restore", "-shared-fs=" + final, "-in=" + filepath.Join(tmp, "s3.tar")},
	} {
		if out, err := runBinary(t, append(step, "-master-key="+testMasterKey, "-progress=off")...); err != nil {
			t.Fatalf("%q: %v\n%s", step, err, out)
		}
	}
	sameObjects(t, "in S3", storeObjects(t, bucket), original)
	sameObjects(t, "back in a directory", storeObjects(t, mustFSStore(t, final)), original)
	r := startNode(t, keyEnv, "-shared-fs="+final)
	for key, doc := range docs {
		code, got, _ := r.call("GET", "/entity/chatdb?key="+url.QueryEscape(key), testAdminKey, nil)
		if code != 200 || string(got) != doc {
			t.Errorf("after the round trip %s = %d %s, want %s", key, code, got, doc)
		}
	}
}

// mustFSStore opens the fsStore at dir.
func mustFSStore(t *testing.T, dir string) *fsStore {
	t.Helper()
	st, err := openFSStore(dir, osFileOps())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReadmeBackup runs README's backup block against the quick start's
// storage, with its server still running, and compares the output with
// README's (durations and byte counts aside: they vary from run to run).
func TestReadmeBackup(t *testing.T) {
	env := quickStartEnv(t)
	work := t.TempDir()
	n := startNode(t, env, "-shared-fs="+filepath.Join(work, "shared", "db"))
	runQuickStart(t, n, env)
	out := runReadmeBlock(t, "backup", work, printedMasterKey(t, n), nil)
	want := readmeBlock(t, "backup-output")
	if got := normalizeToolOutput(out); got != normalizeToolOutput(want) {
		t.Errorf("README backup block printed:\n%s\nwant (README):\n%s", out, want)
	}
}

// TestS3ReadmeBackup runs README's block that moves the quick start's
// storage into a bucket, against the S3 server of the tests.
func TestS3ReadmeBackup(t *testing.T) {
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	env := quickStartEnv(t)
	work := t.TempDir()
	n := startNode(t, env, "-shared-fs="+filepath.Join(work, "shared", "db"))
	runQuickStart(t, n, env)
	out := runReadmeBlock(t, "backup-s3", work, printedMasterKey(t, n), strings.NewReplacer(
		"-s3-endpoint=127.0.0.1:8333", "-s3-endpoint="+cfg.Endpoint, "-s3-bucket=chat", "-s3-bucket="+bucket.bucket,
		"-s3-access-key=AK", "-s3-access-key="+cfg.AccessKey, "-s3-secret-key=SK", "-s3-secret-key="+cfg.SecretKey))
	if !strings.Contains(out, "verify: 2 entities, 0 failed") {
		t.Errorf("README S3 block printed:\n%s\nwant verify to find the quick start's 2 entities", out)
	}
}

// runReadmeBlock runs README's block name with bash in dir, the binary
// for "go run ." and MASTER_KEY=master, after r (if not nil) rewrote it,
// and returns its stdout.
func runReadmeBlock(t *testing.T, name, dir, master string, r *strings.Replacer) string {
	t.Helper()
	script := strings.ReplaceAll(readmeBlock(t, name), "go run .", binPath)
	if r != nil {
		script = r.Replace(script)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MASTER_KEY="+master)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("README block %s: %v\nstdout:\n%s\nstderr:\n%s", name, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// printedMasterKey is the master key n generated and printed.
func printedMasterKey(t *testing.T, n *node) string {
	t.Helper()
	m := regexp.MustCompile(`MASTER_KEY=([0-9a-f]{64})`).FindStringSubmatch(n.stdout.String())
	if m == nil {
		t.Fatalf("the server printed no generated master key:\n%s", n.stdout.String())
	}
	return m[1]
}

// normalizeToolOutput replaces what varies between runs of the storage
// tools: durations and byte counts.
func normalizeToolOutput(s string) string {
	s = regexp.MustCompile(`in [0-9.]+(µs|ms|s)\b`).ReplaceAllString(s, "in T")
	s = regexp.MustCompile(`\(\d+ bytes\)`).ReplaceAllString(s, "(N bytes)")
	return strings.TrimSpace(s)
}

// rewriteArchive re-tars archive with each entry's bytes passed through
// edit, then does what an attacker without the master key can: puts each
// object's new size and SHA-256 into the manifest and recomputes every
// plain checksum (manifest.sha256, if the archive has one). manifest.hmac
// is left as it was.
func rewriteArchive(t *testing.T, archive []byte, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	type entry struct {
		name string
		data []byte
	}
	var entries []entry
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		entries = append(entries, entry{hdr.Name, edit(hdr.Name, data)})
	}
	sums := map[string][2]any{}
	for _, e := range entries {
		if key, ok := strings.CutPrefix(e.name, archiveObjectsDir); ok {
			sum := sha256.Sum256(e.data)
			sums[key] = [2]any{len(e.data), hex.EncodeToString(sum[:])}
		}
	}
	var doc []byte
	for i, e := range entries {
		switch e.name {
		case archiveManifest:
			var man map[string]any
			if err := json.Unmarshal(e.data, &man); err != nil {
				t.Fatal(err)
			}
			for _, o := range man["objects"].([]any) {
				o := o.(map[string]any)
				s := sums[o["key"].(string)]
				o["size"], o["sha256"] = s[0], s[1]
			}
			doc, _ = json.MarshalIndent(man, "", " ")
			doc = append(doc, '\n')
			entries[i].data = doc
		case "manifest.sha256":
			sum := sha256.Sum256(doc)
			entries[i].data = []byte(hex.EncodeToString(sum[:]) + "\n")
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.data)), Mode: 0o600})
		tw.Write(e.data)
	}
	tw.Close()
	return buf.Bytes()
}

// TestRestoreRefusesEditedArchiveWithRehashedManifest is the probe of
// an archive whose API keys were replaced by a planted
// admin key, with the manifest's sizes and checksums recomputed (and
// manifest.sha256 with them), restored with exit 0. Now restore refuses
// it, and an archive signed under another master key, before writing
// anything; and it needs the master key at all.
func TestRestoreRefusesEditedArchiveWithRehashedManifest(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	seedObjects(t, src)
	dir := t.TempDir()
	archive := filepath.Join(dir, "backup.tar")
	if _, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	planted := []byte(`{"format":1,"keys":[{"id":"evil","name":"evil","sha256":"` + strings.Repeat("ab", 32) +
		`","permissions":["admin"],"is_admin":true,"created_at":"2026-01-01T00:00:00Z"}]}`)
	edited := rewriteArchive(t, good, func(name string, data []byte) []byte {
		if name == archiveObjectsDir+authKeysObject {
			return planted
		}
		return data
	})
	otherMaster := strings.Repeat("ee", 32)
	otherKey, _ := deriveArchiveKey(mustHex(otherMaster))
	// The same edit, signed under a master key the attacker chose.
	resigned := rewriteArchive(t, edited, func(name string, data []byte) []byte { return data })
	resigned = rewriteArchive(t, resigned, func(name string, data []byte) []byte {
		if name == archiveManifestMAC {
			return nil // replaced below, once the manifest is final
		}
		return data
	})
	resigned = signArchive(t, resigned, otherKey)
	for _, c := range []struct {
		name, master, want string
		archive            []byte
	}{
		{"edited, manifest rehashed", testMasterKey, "the manifest does not match its HMAC", edited},
		{"edited, signed under another key", testMasterKey, "the manifest does not match its HMAC", resigned},
		{"intact, wrong master key", otherMaster, `written under another master key (it names key id "main-key-v1")`, good},
		{"intact, no master key", "", "-master-key: restore needs the storage's master key", good},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "in.tar")
			os.WriteFile(p, c.archive, 0o600)
			dst, dstDir := newToolFSStore(t)
			args := []string{"-role=restore", "-shared-fs=" + dstDir, "-in=" + p, "-progress=off"}
			if c.master != "" {
				args = append(args, "-master-key="+c.master)
			}
			_, err := runToolArgs(t, args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("restore = %v, want a refusal containing %q", err, c.want)
			}
			if got := storeObjects(t, dst); len(got) != 0 {
				t.Errorf("refused restore wrote %d objects", len(got))
			}
		})
	}
	// Backup checks the key against the storage's key check: an archive
	// under the wrong key could never be restored with the right one.
	_, err = runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+filepath.Join(dir, "wrong.tar"), "-master-key="+otherMaster, "-progress=off")
	if err == nil || !strings.Contains(err.Error(), "wrong master key") {
		t.Errorf("backup with the wrong master key = %v, want a refusal", err)
	}
}

// signArchive sets the archive's manifest.hmac to the manifest's HMAC
// under key.
func signArchive(t *testing.T, archive, key []byte) []byte {
	t.Helper()
	var doc []byte
	return rewriteArchive(t, archive, func(name string, data []byte) []byte {
		switch name {
		case archiveManifest:
			doc = data
		case archiveManifestMAC:
			return []byte(manifestMAC(key, doc) + "\n")
		}
		return data
	})
}

// rawTarHeader is a ustar header block for name, of typeflag and size.
func rawTarHeader(name string, typeflag byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:], "0000600\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], fmt.Sprintf("%011o\x00", 1700000000))
	copy(h[148:], "        ")
	h[156] = typeflag
	copy(h[257:], "ustar\x0000")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// tarPad pads b to whole 512-byte blocks.
func tarPad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// paxRecord is one PAX extended header record, "<len> key=value\n".
func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec) + 1
	for len(fmt.Sprint(n))+len(rec) != n {
		n++
	}
	return fmt.Sprint(n) + rec
}

// sparseTar is a few KB of tar: one PAX-sparse (format 1.0) object entry
// declaring realSize bytes, all a hole but the last byte.
func sparseTar(realSize int64) []byte {
	name := archiveObjectsDir + entityObjectKey("db", "k")
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(realSize))
	sparseMap := tarPad([]byte(fmt.Sprintf("1\n%d\n1\n", realSize-1)))
	body := append(sparseMap, tarPad([]byte("x"))...)
	var b []byte
	b = append(b, rawTarHeader("PaxHeaders/k", 'x', int64(len(pax)))...)
	b = append(b, tarPad([]byte(pax))...)
	b = append(b, rawTarHeader("GNUSparseFile.0/k", '0', int64(len(sparseMap)+1))...)
	b = append(b, body...)
	return append(b, make([]byte, 1024)...)
}

// TestRestoreRefusesSparseTar is a hostile-input probe: a 12 KB
// PAX-sparse tar declaring a 1 GiB entry took restore to 2.1 GB of memory.
// Now it is refused from its header, a sparse entry also when small, and
// an entry declaring more than an object may hold; restore allocates
// next to nothing and writes nothing.
func TestRestoreRefusesSparseTar(t *testing.T) {
	oversized := append(rawTarHeader(archiveObjectsDir+entityObjectKey("db", "k"), '0', 1<<30), make([]byte, 8192)...)
	// What any tar reader makes of the sparse archive: one 1 GiB file.
	hdr, err := tar.NewReader(bytes.NewReader(sparseTar(1 << 30))).Next()
	if err != nil || hdr.Size != 1<<30 || hdr.Name != archiveObjectsDir+entityObjectKey("db", "k") {
		t.Fatalf("the sparse archive reads as %+v, %v; want one 1 GiB object", hdr, err)
	}
	for _, c := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"sparse 1 GiB", sparseTar(1 << 30), "is a sparse file"},
		{"sparse 1 KiB", sparseTar(1 << 10), "is a sparse file"},
		{"1 GiB declared", oversized, "declares 1073741824 bytes, over its limit of 67108864"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "in.tar")
			os.WriteFile(p, c.archive, 0o600)
			dst, dstDir := newToolFSStore(t)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := runToolArgs(t, "-role=restore", "-shared-fs="+dstDir, "-in="+p, "-master-key="+testMasterKey, "-progress=off")
			runtime.ReadMemStats(&after)
			t.Logf("%d-byte archive: restore allocated %d KB", len(c.archive), (after.TotalAlloc-before.TotalAlloc)>>10)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("restore = %v, want a refusal containing %q", err, c.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Errorf("restore of a %d-byte archive allocated %d MB", len(c.archive), grew>>20)
			}
			if got := storeObjects(t, dst); len(got) != 0 {
				t.Errorf("refused restore wrote %d objects", len(got))
			}
		})
	}
}

// TestRestoreGoodEntryThenBadKeyWritesNothing is a hostile-input probe:
// an archive with a good object followed by one whose key storage
// refuses left the good one written. Now every key is checked before the
// first write, in an archive whose manifest is otherwise genuine.
func TestRestoreGoodEntryThenBadKeyWritesNothing(t *testing.T) {
	for _, bad := range []string{"_locks/x", "templates/../_auth/keys.json", "files/db", "templates//x.json", "templates/.tmp-x", "templates/a.json"} {
		t.Run(bad, func(t *testing.T) {
			var buf bytes.Buffer
			aw := newArchiveWriter(&buf, "test", time.Unix(1700000000, 0), testArchiveKey(t), "main-key-v1")
			for _, key := range []string{schemaObjectKey("a"), bad} {
				if err := aw.add(key, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			if err := aw.close(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "in.tar")
			os.WriteFile(p, buf.Bytes(), 0o600)
			dst, dstDir := newToolFSStore(t)
			_, err := runToolArgs(t, "-role=restore", "-shared-fs="+dstDir, "-in="+p, "-master-key="+testMasterKey, "-progress=off")
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("restore = %v, want a refusal", err)
			}
			if got := storeObjects(t, dst); len(got) != 0 {
				t.Errorf("refused restore wrote %d objects: %q", len(got), slices.Sorted(maps.Keys(got)))
			}
		})
	}
}
