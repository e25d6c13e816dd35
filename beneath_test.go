package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// eachResolveMode runs f once with openat2 resolving paths (when the
// kernel has it) and once with the component walk, restoring the mode
// after. Tests that call it must not run in parallel with each other.
func eachResolveMode(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := resolveMode.Load()
	t.Cleanup(func() { resolveMode.Store(saved) })
	modes := []struct {
		name string
		mode int32
	}{{"openat2", resolveProbe}, {"walk", resolveWalk}}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			resolveMode.Store(m.mode)
			f(t)
			if m.mode == resolveProbe && resolveMode.Load() != resolveOpenat2 {
				t.Log("this kernel has no usable openat2: the walk ran twice")
			}
		})
	}
}

// TestResolveModes: both modes open a plain path, and the probe finds
// openat2 on this kernel (Linux 5.6 or later), so that the openat2 runs
// of the probes below are what they say.
func TestResolveModes(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		key := entityObjectKey("db", "k")
		if err := st.Put(t.Context(), key, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Get(t.Context(), key); err != nil || string(got) != "v" {
			t.Fatalf("Get() = %q, %v", got, err)
		}
	})
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		t.Logf("kernel %s", unix.ByteSliceToString(uts.Release[:]))
	}
	resolveMode.Store(resolveProbe)
	if _, err := readBeneath(t.TempDir(), nil, 1); err == nil {
		t.Fatal("readBeneath of a directory succeeded")
	}
	if _, err := readBeneath(t.TempDir(), []string{"missing"}, 1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("readBeneath(missing) = %v", err)
	}
	if resolveMode.Load() != resolveOpenat2 && os.Getenv("CI") == "true" {
		t.Error("openat2 is not usable here: only the walk was tested")
	}
}

// plantLink makes the object key of st a symbolic link to target,
// creating the directories on the way.
func plantLink(t *testing.T, st *fsStore, key, target string) string {
	t.Helper()
	p, err := st.path(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSymlinkedTemplateDoesNotReturnMasterKey is a hostile-input probe:
// a link at templates/x.json to the master key file made an
// anonymous GET /schema/x return the key. Now the read is refused: 500
// with the fixed sentence and the request ID, the cause (a link) in the
// log, the key nowhere in the answer; the link is not listed either.
func TestSymlinkedTemplateDoesNotReturnMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	keyFile := filepath.Join(t.TempDir(), "master-key")
	if err := os.WriteFile(keyFile, []byte(testMasterKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, []string{"MASTER_KEY=", "ADMIN_KEY=" + testAdminKey}, "-shared-fs="+dir, "-master-key-file="+keyFile)
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keyFile, filepath.Join(dir, "templates", "x.json")); err != nil {
		t.Fatal(err)
	}
	code, out, hdr := n.call("GET", "/schema/x", "", nil)
	if code != 500 || strings.Contains(string(out), testMasterKey) || !strings.Contains(string(out), "internal error (request ID ") {
		t.Fatalf("GET /schema/x over a link to the master key = %d %s, want 500 with the fixed sentence", code, out)
	}
	id := hdr.Get("X-Request-Id")
	log := n.logOnceTrue(func(log string) bool { return strings.Contains(log, "symbolic link") })
	if !strings.Contains(log, "a symbolic link on the path is refused") || !strings.Contains(log, id) {
		t.Errorf("log has no line naming the link with request ID %q:\n%s", id, log)
	}
	if strings.Contains(log, testMasterKey) {
		t.Error("the master key is in the log")
	}
	if _, out, _ := n.call("GET", "/admin/schemas", testAdminKey, nil); strings.Contains(string(out), `"x"`) {
		t.Errorf("GET /admin/schemas = %s, lists the link", out)
	}
}

// TestSymlinkToEtcPasswd: an entity object linked to /etc/passwd (or any
// file of another user) is refused by the store and answered 500 over
// REST, without a byte of the file.
func TestSymlinkToEtcPasswd(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		s := newLocalRESTOver(t, st)
		key := entityObjectKey("db", "k")
		plantLink(t, st, key, "/etc/passwd")
		if got, err := st.Get(t.Context(), key); !errors.Is(err, errCorrupt) || got != nil {
			t.Fatalf("Get() = %.30q, %v, want errCorrupt and no bytes", got, err)
		}
		rec := serve(s, "GET", "/entity/db?key=k", "")
		if rec.Code != 500 || strings.Contains(rec.Body.String(), "root:") {
			t.Errorf("GET /entity/db?key=k = %d %s, want 500 without the file", rec.Code, rec.Body)
		}
		// A write replaces the link itself; /etc/passwd is untouched.
		before, _ := os.ReadFile("/etc/passwd")
		if rec := serve(s, "PUT", "/entity/db", `{"k":"mine"}`); rec.Code != 200 {
			t.Fatalf("PUT over the link = %d %s", rec.Code, rec.Body)
		}
		if after, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(before, after) {
			t.Fatal("a PUT wrote through the link into /etc/passwd")
		}
		if rec := serve(s, "GET", "/entity/db?key=k", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `"mine"` {
			t.Errorf("GET after the PUT = %d %s", rec.Code, rec.Body)
		}
	})
}

// TestSymlinkToDevZero: a link to /dev/zero crashed the server and
// -role=verify with out-of-memory. Now the store refuses it at once, and
// verify counts it as a failed entity and goes on.
func TestSymlinkToDevZero(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		key := entityObjectKey("db", "zero")
		plantLink(t, st, key, "/dev/zero")
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		done := make(chan error, 1)
		go func() { _, err := st.Get(context.Background(), key); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("Get(link to /dev/zero) = %v, want errCorrupt", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Get(link to /dev/zero) still reading after 10 s")
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
			t.Errorf("Get(link to /dev/zero) allocated %d MB", grew>>20)
		}
	})
	dir := filepath.Join(t.TempDir(), "db")
	st := mustFSStore(t, dir)
	if rec := serve(newLocalRESTOver(t, st), "PUT", "/entity/db", `{"good":1}`); rec.Code != 200 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	// The link is no object: verify neither lists nor reads it. An entity
	// swollen to 1 GiB (sparse) is listed, refused from its size and
	// counted as failed.
	plantLink(t, st, entityObjectKey("db", "zero"), "/dev/zero")
	if err := st.Put(t.Context(), entityObjectKey("db", "huge"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	p, _ := st.path(entityObjectKey("db", "huge"))
	if err := os.Truncate(p, 1<<30); err != nil {
		t.Fatal(err)
	}
	// newLocalRESTOver's master key, in hex, and key ID.
	master := hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	out, err := runToolArgs(t, "-role=verify", "-shared-fs="+dir, "-master-key="+master, "-key-id=k1", "-progress=off")
	if err == nil || !strings.Contains(out, "verify: 2 entities, 1 failed") || !strings.Contains(out, "over the read limit") {
		t.Errorf("verify over a link to /dev/zero and a 1 GiB entity = %v\n%s\nwant the big one counted as one failure", err, out)
	}
}

// TestFIFOObjectRefused: a named pipe at an object's path would block a
// read forever; it is refused at once, as anything but a regular file.
func TestFIFOObjectRefused(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		key := schemaObjectKey("pipe")
		p, _ := st.path(key)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := st.Get(context.Background(), key); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("Get(fifo) = %v, want errCorrupt naming it", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Get(fifo) blocked")
		}
		if keys, err := st.List(t.Context(), templatesPrefix, "", 0); err != nil || len(keys) != 0 {
			t.Errorf("List(templates/) = %v, %v, want no keys", keys, err)
		}
	})
}

// TestOversizedObjectRefusedBeforeRead: a regular file over the read
// limit (1 GiB here, sparse) is refused from its size; nothing near its
// size is allocated.
func TestOversizedObjectRefusedBeforeRead(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		key := entityObjectKey("db", "huge")
		if err := st.Put(t.Context(), key, []byte("x")); err != nil {
			t.Fatal(err)
		}
		p, _ := st.path(key)
		if err := os.Truncate(p, 1<<30); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := st.Get(t.Context(), key)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "over the read limit") {
			t.Fatalf("Get(1 GiB object) = %v, want errCorrupt over the read limit", err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("Get(1 GiB object) allocated %d bytes", grew)
		}
	})
	if got := (budgets{maxDocument: 100 << 20}).storedObject(); got != 200<<20 {
		t.Errorf("storedObject() with a 100 MiB document budget = %d", got)
	}
	if got := (budgets{}).storedObject(); got != defaultMaxObject {
		t.Errorf("storedObject() by default = %d, want %d", got, defaultMaxObject)
	}
}

// TestSymlinkedDirectory: a directory on an object's path replaced by a
// link (a hash directory, the templates directory, the lock directory)
// is refused for reads, writes, deletes and locks; nothing is read from
// or written to where it points, and listings do not follow it.
func TestSymlinkedDirectory(t *testing.T) {
	eachResolveMode(t, func(t *testing.T) {
		st := newTestFSStore(t)
		ctx := t.Context()
		outside := t.TempDir()
		key := entityObjectKey("db", "k")
		p, _ := st.path(key)
		// The hash directory of "k" points outside, where a file of the
		// same name waits to be read.
		if err := os.WriteFile(filepath.Join(outside, filepath.Base(p)), []byte("outside"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Dir(p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Get(ctx, key); !errors.Is(err, errCorrupt) {
			t.Errorf("Get through a linked directory = %q, %v, want errCorrupt", got, err)
		}
		if err := st.Put(ctx, key, []byte("new")); !errors.Is(err, errCorrupt) {
			t.Errorf("Put through a linked directory = %v, want errCorrupt", err)
		}
		if err := st.Delete(ctx, key); !errors.Is(err, errCorrupt) {
			t.Errorf("Delete through a linked directory = %v, want errCorrupt", err)
		}
		if keys, err := st.List(ctx, entitiesPrefix+"db/", "", 0); err != nil || len(keys) != 0 {
			t.Errorf("List(files/db/) = %v, %v, want nothing", keys, err)
		}
		// The templates directory itself points outside.
		if err := os.Symlink(outside, filepath.Join(st.root, "templates")); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, schemaObjectKey("s"), []byte(`{}`)); !errors.Is(err, errCorrupt) {
			t.Errorf("Put(templates/s.json) through a link = %v, want errCorrupt", err)
		}
		if _, err := st.List(ctx, templatesPrefix, "", 0); !errors.Is(err, errCorrupt) {
			t.Errorf("List(templates/) through a link = %v, want errCorrupt", err)
		}
		if dirs, err := st.ListDirs(ctx, ""); err != nil || slices.Contains(dirs, "templates") {
			t.Errorf("ListDirs() = %v, %v, want no templates", dirs, err)
		}
		entries, _ := os.ReadDir(outside)
		if len(entries) != 1 {
			t.Errorf("the outside directory holds %d entries after the writes, want its 1 file", len(entries))
		}
		if got, _ := os.ReadFile(filepath.Join(outside, filepath.Base(p))); string(got) != "outside" {
			t.Errorf("the outside file reads %q", got)
		}
		// The lock directory points outside: no lock file is made there.
		os.RemoveAll(filepath.Join(st.root, lockDir))
		if err := os.Symlink(outside, filepath.Join(st.root, lockDir)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Lock(ctx, key); !errors.Is(err, errCorrupt) {
			t.Errorf("Lock with a linked lock directory = %v, want errCorrupt", err)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 1 {
			t.Errorf("Lock created %d files in the linked directory", len(entries)-1)
		}
	})
}

// TestBackupSkipsSymlinks: -role=backup copied a file a link in the storage
// pointed to (the master key file, /etc/passwd) into the archive. Links
// are no objects: the archive holds the stored objects alone.
func TestBackupSkipsSymlinks(t *testing.T) {
	src, srcDir := newToolFSStore(t)
	want := seedObjects(t, src)
	secret := filepath.Join(t.TempDir(), "master-key")
	if err := os.WriteFile(secret, []byte("SECRET-OUTSIDE-THE-STORAGE"), 0o600); err != nil {
		t.Fatal(err)
	}
	plantLink(t, src, schemaObjectKey("x"), secret)
	plantLink(t, src, entityObjectKey("chatdb", "passwd"), "/etc/passwd")
	archive := filepath.Join(t.TempDir(), "backup.tar")
	out, err := runToolArgs(t, "-role=backup", "-shared-fs="+srcDir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !strings.Contains(out, fmt.Sprintf("backup: %d objects", len(want))) {
		t.Errorf("backup printed %q, want the %d stored objects and no link", out, len(want))
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("SECRET-OUTSIDE-THE-STORAGE")) || bytes.Contains(b, []byte("root:x:0:0")) {
		t.Error("the archive holds a file from outside the storage")
	}
}

// TestFSStoreCloseReleasesRoot: closing a filesystem store closes the
// descriptor of its root, which a server would otherwise keep until the
// garbage collector finds the store; a call after Close fails.
func TestFSStoreCloseReleasesRoot(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	if err := st.Put(ctx, "_meta/a.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if n := fdsOpenOn(t, st.root); n != 1 {
		t.Fatalf("%d descriptors open on the store's root, want 1", n)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if n := fdsOpenOn(t, st.root); n != 0 {
		t.Errorf("%d descriptors open on the store's root after Close, want 0", n)
	}
	if _, err := st.Get(ctx, "_meta/a.json"); err == nil {
		t.Error("Get after Close succeeded")
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// fdsOpenOn counts this process's descriptors open on the path dir.
func fdsOpenOn(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == dir {
			n++
		}
	}
	return n
}
