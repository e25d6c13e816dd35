package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTestFSStore opens an fsStore on a fresh directory.
func newTestFSStore(t testing.TB) *fsStore {
	return newTestFSStoreOps(t, osFileOps())
}

// newTestFSStoreOps opens an fsStore on a fresh directory, doing its file
// operations through ops.
func newTestFSStoreOps(t testing.TB, ops *fileOps) *fsStore {
	t.Helper()
	st, err := newFSStoreWith(filepath.Join(t.TempDir(), "store"), defaultMaxObject, ops)
	if err != nil {
		t.Fatalf("newFSStore() = %v", err)
	}
	return st
}

func TestFSStoreConformance(t *testing.T) {
	testStore(t, func(t *testing.T) store { return newTestFSStore(t) })
}

// tree returns every path under root with its mode, for comparing the
// disk before and after an operation.
func tree(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	m := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return m
}

func TestFSStoreModes(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	for _, k := range []string{entityObjectKey("db", "k"), entityObjectKey("db", strings.Repeat("L", 256)), "templates/a.json", "_meta/keycheck"} {
		if err := st.Put(ctx, k, []byte("x")); err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
		unlock, err := st.Lock(ctx, k)
		if err != nil {
			t.Fatalf("Lock(%q) = %v", k, err)
		}
		unlock()
	}
	for p, mode := range tree(t, st.root) {
		want := fs.FileMode(0o600)
		if mode.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if mode != want {
			t.Errorf("mode of %s = %v, want %v", p, mode, want)
		}
	}
}

func TestFSStoreLayout(t *testing.T) {
	st := newTestFSStore(t)
	hh := func(name string) string {
		sum := sha256.Sum256([]byte(name))
		return fmt.Sprintf("%02x", sum[0])
	}
	long := hex.EncodeToString([]byte(strings.Repeat("é", 128))) // 512 hex chars
	for _, tc := range []struct{ key, want string }{
		{"templates/a.json", "templates/a.json"},
		{"_auth/keys.json", "_auth/keys.json"},
		{entityObjectKey("db", "k"), "files/db/" + hh("6b") + "/6b"},
		{"files/db/" + strings.Repeat("a", 200), "files/db/" + hh(strings.Repeat("a", 200)) + "/" + strings.Repeat("a", 200)},
		{"files/db/" + strings.Repeat("a", 201), "files/db/" + hh(strings.Repeat("a", 201)) + "/" + strings.Repeat("a", 200) + "+/a"},
		{"files/db/" + long, "files/db/" + hh(long) + "/" + long[:200] + "+/" + long[200:400] + "+/" + long[400:]},
	} {
		if err := st.Put(t.Context(), tc.key, []byte(tc.key)); err != nil {
			t.Fatalf("Put(%q) = %v", tc.key, err)
		}
		data, err := os.ReadFile(filepath.Join(st.root, tc.want))
		if err != nil || string(data) != tc.key {
			t.Errorf("file for key %q: ReadFile(%q) = %.20q, %v", tc.key, tc.want, data, err)
		}
	}
	for p := range tree(t, st.root) {
		for c := range strings.SplitSeq(p, "/") {
			if len(c) > 255 {
				t.Errorf("path %q has a %d-byte component", p, len(c))
			}
		}
	}
}

// TestFSStoreRemovesTempLeftovers: a start removes the temp files a crash
// left (old ones) and keeps those a live process sharing the directory is
// writing (recent ones), and every object.
func TestFSStoreRemovesTempLeftovers(t *testing.T) {
	root := t.TempDir()
	files := map[string]bool{ // path -> survives
		"files/db/ab/.tmp-123":       false,
		"templates/.tmp-9":           false,
		".tmp-top":                   false,
		"files/db/ab/.tmp-inflight":  true,
		"files/db/ab/6b":             true,
		"templates/a.json":           true,
		"templates/x.tmp-not-a-temp": true,
	}
	old := time.Now().Add(-staleTempAge - time.Minute)
	for p := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(p, "inflight") {
			if err := os.Chtimes(full, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := newFSStore(root); err != nil {
		t.Fatalf("newFSStore() = %v", err)
	}
	for p, survives := range files {
		_, err := os.Stat(filepath.Join(root, p))
		if exists := err == nil; exists != survives {
			t.Errorf("after newFSStore, %s exists = %v, want %v", p, exists, survives)
		}
	}
}

func TestFSStoreInvalidKeys(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	if err := st.Put(ctx, "templates/a.json", []byte("x")); err != nil {
		t.Fatal(err)
	}
	before := tree(t, filepath.Dir(st.root))
	for _, key := range []string{
		"", "/", "/abs", "a/", "a//b", ".", "..", "./a", "a/./b", "a/../b", "../escape",
		"a\x00b", "files", "files/db", "files/db/", "files/db/a/b", "files//x",
		"_locks/x", "templates/.tmp-x", ".tmp-x",
		"files/db/..", "files/db/" + strings.Repeat("a", 200) + "..",
		"files/db/" + strings.Repeat("a", 200) + ".tmp-x",
		"templates/" + strings.Repeat("x", 256),
	} {
		if err := st.Put(ctx, key, []byte("x")); !errors.Is(err, errInvalid) {
			t.Errorf("Put(%q) = %v, want errInvalid", key, err)
		}
		if _, err := st.Get(ctx, key); !errors.Is(err, errInvalid) {
			t.Errorf("Get(%q) = %v, want errInvalid", key, err)
		}
		if err := st.Delete(ctx, key); !errors.Is(err, errInvalid) {
			t.Errorf("Delete(%q) = %v, want errInvalid", key, err)
		}
		if unlock, err := st.Lock(ctx, key); !errors.Is(err, errInvalid) {
			t.Errorf("Lock(%q) = %v, want errInvalid", key, err)
			if unlock != nil {
				unlock()
			}
		}
	}
	for _, prefix := range []string{"../", "a/../", "a//", "./", "/"} {
		if keys, err := st.List(ctx, prefix, "", 0); !errors.Is(err, errInvalid) {
			t.Errorf("List(%q) = %q, %v, want errInvalid", prefix, keys, err)
		}
	}
	after := tree(t, filepath.Dir(st.root))
	if !maps.Equal(before, after) {
		t.Errorf("invalid keys touched the disk:\nbefore %v\nafter  %v", before, after)
	}
}

func TestFSStoreKeyCollidesWithDirectory(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	if err := st.Put(ctx, "templates/a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	err := st.Put(ctx, "templates/a", []byte("x"))
	if !errors.Is(err, errPrecondition) || !strings.HasPrefix(err.Error(), "put templates/a: rename: ") {
		t.Errorf("Put over a directory = %v, want errPrecondition from rename", err)
	}
	for _, key := range []string{"templates/a", "templates/a/b/c"} {
		if _, err := st.Get(ctx, key); !errors.Is(err, errNotFound) {
			t.Errorf("Get(%q) = %v, want errNotFound", key, err)
		}
		if err := st.Delete(ctx, key); !errors.Is(err, errNotFound) {
			t.Errorf("Delete(%q) = %v, want errNotFound", key, err)
		}
	}
	if keys, err := st.List(ctx, "templates/", "", 0); err != nil || !slices.Equal(keys, []string{"templates/a/b"}) {
		t.Errorf("List = %q, %v, want [templates/a/b]", keys, err)
	}
}

func TestClassify(t *testing.T) {
	pe := func(errno error) error { return &fs.PathError{Op: "open", Path: "/x", Err: errno} }
	for _, tc := range []struct {
		err, want error
	}{
		{pe(unix.ENOENT), errNotFound},
		{pe(unix.ENOSPC), errUnavailable},
		{pe(unix.EIO), errUnavailable},
		{pe(unix.EROFS), errUnavailable},
		{pe(unix.EDQUOT), errUnavailable},
		{pe(unix.EACCES), errConfig},
		{pe(unix.EPERM), errConfig},
		{pe(unix.ENAMETOOLONG), errInvalid},
		{pe(unix.EISDIR), errPrecondition},
		{errors.New("other"), errUnavailable},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	err := fsError("put", "files/x", "rename", pe(unix.ENOSPC))
	if want := "put files/x: rename: open /x: no space left on device: storage unavailable"; err.Error() != want {
		t.Errorf("fsError() = %q, want %q", err, want)
	}
	if !errors.Is(err, unix.ENOSPC) || !errors.Is(err, errUnavailable) {
		t.Errorf("fsError() = %v, does not wrap both ENOSPC and errUnavailable", err)
	}
}

func TestFSStoreUnusableRoot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newFSStore(filepath.Join(file, "store")); !errors.Is(err, errConfig) {
		t.Errorf("newFSStore(under a file) = %v, want errConfig", err)
	}
}

// TestFSStorePermissionDenied: a directory the process may not write into
// is errConfig (the operator must fix it), not a transient failure. Root
// ignores permission bits, so as root (as in CI) the directory is made
// immutable instead, which root cannot write into either.
func TestFSStorePermissionDenied(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	if err := st.Put(ctx, "templates/a.json", nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(st.root, "templates")
	if os.Geteuid() == 0 {
		setImmutable(t, dir)
	} else {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	}
	if err := st.Put(ctx, "templates/a.json", nil); !errors.Is(err, errConfig) {
		t.Errorf("Put into a directory we may not write = %v, want errConfig", err)
	}
	if err := st.Put(ctx, "templates/b.json", nil); !errors.Is(err, errConfig) {
		t.Errorf("Put of a new key there = %v, want errConfig", err)
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h, which x/sys/unix does
// not name.
const fsImmutableFL = 0x10

// setImmutable sets the immutable attribute (chattr +i) on dir until the
// test ends.
func setImmutable(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsImmutableFL)
	}
	if err != nil {
		t.Fatalf("chattr +i %s: %v (the filesystem of the temp dir must support it for this test as root)", dir, err)
	}
	t.Cleanup(func() {
		f, err := os.Open(dir)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
			t.Errorf("chattr -i %s: %v", dir, err)
		}
	})
}

// TestFSStoreCrossProcessLock opens two stores on one root, as two
// processes would: only flock (on separate open file descriptions, which
// conflict on Linux as between processes) can exclude.
func TestFSStoreCrossProcessLock(t *testing.T) {
	a := newTestFSStore(t)
	b, err := newFSStore(a.root)
	if err != nil {
		t.Fatal(err)
	}
	key := entityObjectKey("db", "k")
	unlock, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatalf("a.Lock(%q) = %v", key, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if u, err := b.Lock(ctx, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("b.Lock(%q) while a holds it = %v, want context.DeadlineExceeded", key, err)
		if u != nil {
			u()
		}
	}
	if u, err := b.Lock(t.Context(), entityObjectKey("db", "other")); err != nil {
		t.Errorf("b.Lock(other) = %v", err)
	} else {
		u()
	}
	done := make(chan error)
	go func() {
		u, err := b.Lock(t.Context(), key)
		if err == nil {
			u()
		}
		done <- err
	}()
	// Wait until b's Lock is under way: it has found the flock held.
	for deadline, before := time.Now().Add(5*time.Second), b.lockWaits.Load(); ; {
		if b.lockWaits.Load() > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b.Lock(%q) did not start waiting within 5s", key)
		}
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("b.Lock(%q) returned %v while a holds the lock", key, err)
	default:
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("b.Lock(%q) after a unlocked = %v", key, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("b.Lock(%q) not granted after a unlocked", key)
	}
}

// FuzzFSStoreKeyPath checks the key-to-path mapping: a key is rejected as
// invalid or maps to a path under root, and a stored key reads back and
// lists as itself.
func FuzzFSStoreKeyPath(f *testing.F) {
	for _, k := range []string{
		"templates/a.json", "files/db/6b", "files/db/" + strings.Repeat("ab", 200), "../x", "a/../../b",
		"files/db/" + strings.Repeat("a", 200) + "..", "_meta/.tmp-1", "x\x00", "files/db/+", "a/b+", "..0",
	} {
		f.Add(k)
	}
	st := newTestFSStore(f)
	f.Fuzz(func(t *testing.T, key string) {
		p, err := st.path(key)
		if err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("path(%q) = %v, want errInvalid", key, err)
			}
			return
		}
		rel, err := filepath.Rel(st.root, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.Clean(p) != p {
			t.Fatalf("path(%q) = %q, not a clean path under root %q", key, p, st.root)
		}
		ctx := t.Context()
		if err := st.Put(ctx, key, []byte(key)); err != nil {
			if errors.Is(err, errPrecondition) || errors.Is(err, errInvalid) {
				return // collides with a directory of an earlier key, or too long
			}
			t.Fatalf("Put(%q) = %v", key, err)
		}
		defer func() {
			if err := st.Delete(ctx, key); err != nil {
				t.Errorf("Delete(%q) = %v", key, err)
			}
		}()
		if got, err := st.Get(ctx, key); err != nil || string(got) != key {
			t.Fatalf("Get(%q) = %q, %v", key, got, err)
		}
		if keys, err := st.List(ctx, key, "", 1); err != nil || !slices.Equal(keys, []string{key}) {
			t.Fatalf("List(%q, \"\", 1) = %q, %v, want the key itself", key, keys, err)
		}
	})
}

// parallelism32 is the SetParallelism argument that runs about 32
// goroutines.
func parallelism32() int {
	return max(1, 32/runtime.GOMAXPROCS(0))
}

func BenchmarkFSStorePut1K(b *testing.B) {
	data := make([]byte, 1024)
	b.Run("seq", func(b *testing.B) {
		st := newTestFSStore(b)
		ctx := context.Background()
		b.SetBytes(int64(len(data)))
		for i := 0; b.Loop(); i++ {
			if err := st.Put(ctx, entityObjectKey("bench", fmt.Sprint(i%4096)), data); err != nil {
				b.Fatal(err)
			}
		}
		reportPutsPerSec(b)
	})
	b.Run("parallel32", func(b *testing.B) {
		st := newTestFSStore(b)
		ctx := context.Background()
		var n atomic.Int64
		b.SetBytes(int64(len(data)))
		b.SetParallelism(parallelism32())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if err := st.Put(ctx, entityObjectKey("bench", fmt.Sprint(i%4096)), data); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportPutsPerSec(b)
	})
}

// reportPutsPerSec adds the durable writes per second, the number
// ARCHITECTURE.md "Storage layout" quotes, to the benchmark output.
func reportPutsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// BenchmarkRawDurableWrite1K is the ceiling for BenchmarkFSStorePut1K: the
// bare durable-write sequence over 32 directories (writeDurable, as the
// -ceiling=fsync mode of bench.go runs it), without key mapping, locks or
// error classification.
func BenchmarkRawDurableWrite1K(b *testing.B) {
	root := b.TempDir()
	for d := range 32 {
		if err := os.Mkdir(filepath.Join(root, fmt.Sprint(d)), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	data := make([]byte, 1024)
	var n atomic.Int64
	b.SetBytes(int64(len(data)))
	b.SetParallelism(parallelism32())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			dir := filepath.Join(root, fmt.Sprint(i%32))
			if _, err := writeDurable(filepath.Join(dir, fmt.Sprint(i%4096)), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportPutsPerSec(b)
}

// durableCall is one call of the durable-write sequence seen through a
// store's fileOps: the step and the path it acted on.
type durableCall struct{ step, path string }

// recordingOps returns file operations for a store of a test: every call
// is recorded, and a call for which fail(step, path) is true returns
// errFault instead of doing its work ("write" writes half the bytes
// first, "close" closes first, so a failure leaves what a real one
// would). The function returned gives the calls seen so far.
func recordingOps(fail func(step, path string) bool, errFault error) (*fileOps, func() []durableCall) {
	real := osFileOps()
	var mu sync.Mutex
	var calls []durableCall
	do := func(step, path string) bool {
		mu.Lock()
		calls = append(calls, durableCall{step, path})
		mu.Unlock()
		return fail != nil && fail(step, path)
	}
	ops := &fileOps{
		createTemp: func(dir *os.File) (*os.File, error) {
			if do("createTemp", dir.Name()) {
				return nil, &fs.PathError{Op: "open", Path: dir.Name(), Err: errFault}
			}
			return real.createTemp(dir)
		},
		write: func(f *os.File, data []byte) (int, error) {
			if do("write", f.Name()) {
				n, _ := real.write(f, data[:len(data)/2])
				return n, &fs.PathError{Op: "write", Path: f.Name(), Err: errFault}
			}
			return real.write(f, data)
		},
		fdatasync: func(f *os.File) error {
			if do("fdatasync", f.Name()) {
				return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: errFault}
			}
			return real.fdatasync(f)
		},
		close: func(f *os.File) error {
			if do("close", f.Name()) {
				_ = real.close(f)
				return &fs.PathError{Op: "close", Path: f.Name(), Err: errFault}
			}
			return real.close(f)
		},
		rename: func(dir *os.File, oldName, newName string) error {
			oldpath, newpath := dir.Name()+"/"+oldName, dir.Name()+"/"+newName
			if do("rename", oldpath+" -> "+newpath) {
				return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errFault}
			}
			return real.rename(dir, oldName, newName)
		},
		mkdir: func(dir *os.File, name string, perm uint32) error {
			if do("mkdir", dir.Name()+"/"+name) {
				return &fs.PathError{Op: "mkdir", Path: dir.Name() + "/" + name, Err: errFault}
			}
			return real.mkdir(dir, name, perm)
		},
		syncDir: func(dir *os.File) error {
			if do("syncDir", dir.Name()) {
				return &fs.PathError{Op: "sync", Path: dir.Name(), Err: errFault}
			}
			return real.syncDir(dir)
		},
		syncfs: func(dir string) error {
			if do("syncfs", dir) {
				return &fs.PathError{Op: "syncfs", Path: dir, Err: errFault}
			}
			return real.syncfs(dir)
		},
		writeAt: func(f *os.File, data []byte, off int64) (int, error) {
			if do("writeAt", f.Name()) {
				n, _ := real.writeAt(f, data[:len(data)/2], off)
				return n, &fs.PathError{Op: "write", Path: f.Name(), Err: errFault}
			}
			return real.writeAt(f, data, off)
		},
	}
	return ops, func() []durableCall {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}
}

// tempFiles returns the temp files under root.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	for p := range tree(t, root) {
		if strings.HasPrefix(filepath.Base(p), tmpPrefix) {
			found = append(found, p)
		}
	}
	return found
}

// TestWriteDurableOrder: a Put over an existing object runs exactly write,
// fdatasync, close, rename, directory fsync, on the temp file it created in
// the target's directory, in that order.
func TestWriteDurableOrder(t *testing.T) {
	ops, calls := recordingOps(nil, nil)
	st := newTestFSStoreOps(t, ops)
	key := entityObjectKey("db", "k")
	if err := st.Put(t.Context(), key, []byte("old")); err != nil {
		t.Fatal(err)
	}
	skip := len(calls())
	if err := st.Put(t.Context(), key, []byte("new")); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	target, _ := st.path(key)
	dir := filepath.Dir(target)
	got := calls()[skip:]
	if len(got) != 6 {
		t.Fatalf("calls = %v, want createTemp, write, fdatasync, close, rename, syncDir", got)
	}
	tmp := got[1].path
	if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), tmpPrefix) {
		t.Fatalf("temp file %s is not a %s* file in %s", tmp, tmpPrefix, dir)
	}
	want := []durableCall{
		{"createTemp", dir}, {"write", tmp}, {"fdatasync", tmp}, {"close", tmp},
		{"rename", tmp + " -> " + target}, {"syncDir", dir},
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if data, err := st.Get(t.Context(), key); err != nil || string(data) != "new" {
		t.Errorf("Get() = %q, %v, want new", data, err)
	}
}

// TestWriteDurableFaults fails each step of the durable write in turn: the
// Put fails naming the step, with the status class of the errno; no temp
// file is left; and the object reads back whole, as before the Put (or, if
// only the final directory fsync failed, whole as written).
func TestWriteDurableFaults(t *testing.T) {
	newDoc := []byte(strings.Repeat("new!", 4096))
	for _, c := range []struct {
		name     string
		fail     func(step, path string) bool
		newDB    bool   // write into a database with no directory yet
		wantStep string // in the error
		wantNew  bool   // the new bytes are in place (the rename happened)
	}{
		{"create temp", func(s, _ string) bool { return s == "createTemp" }, false, "create temp", false},
		{"write", func(s, _ string) bool { return s == "write" }, false, "write", false},
		{"fdatasync", func(s, _ string) bool { return s == "fdatasync" }, false, "fdatasync", false},
		{"close", func(s, _ string) bool { return s == "close" }, false, "close", false},
		{"rename", func(s, _ string) bool { return s == "rename" }, false, "rename", false},
		{"sync dir", func(s, _ string) bool { return s == "syncDir" }, false, "sync dir", true},
		{"mkdir", func(s, _ string) bool { return s == "mkdir" }, true, "mkdir", false},
		{"mkdir sync parent", func(s, p string) bool { return s == "syncDir" && filepath.Base(p) == "files" }, true, "mkdir", false},
	} {
		for _, errno := range []struct {
			err  unix.Errno
			want error
		}{{unix.EIO, errUnavailable}, {unix.ENOSPC, errUnavailable}, {unix.EACCES, errConfig}} {
			t.Run(c.name+"/"+errno.err.Error(), func(t *testing.T) {
				var armed atomic.Bool // after the old document is in
				ops, _ := recordingOps(func(step, path string) bool { return armed.Load() && c.fail(step, path) }, errno.err)
				st := newTestFSStoreOps(t, ops)
				ctx := t.Context()
				db := "db"
				if c.newDB {
					db = "fresh"
				} else if err := st.Put(ctx, entityObjectKey(db, "k"), []byte("old")); err != nil {
					t.Fatal(err)
				}
				key := entityObjectKey(db, "k")
				armed.Store(true)
				err := st.Put(ctx, key, newDoc)
				if !errors.Is(err, errno.want) || !errors.Is(err, errno.err) || !strings.Contains(err.Error(), ": "+c.wantStep+": ") {
					t.Errorf("Put() = %v, want step %q, %v and %v", err, c.wantStep, errno.err, errno.want)
				}
				if tmp := tempFiles(t, st.root); len(tmp) > 0 {
					t.Errorf("temp files left after a failed %s: %v", c.wantStep, tmp)
				}
				got, err := st.Get(ctx, key)
				switch {
				case c.wantNew:
					if !bytes.Equal(got, newDoc) {
						t.Errorf("Get() = %d bytes, %v, want the whole new document", len(got), err)
					}
				case c.newDB:
					if !errors.Is(err, errNotFound) {
						t.Errorf("Get() = %d bytes, %v, want errNotFound", len(got), err)
					}
				case string(got) != "old" || err != nil:
					t.Errorf("Get() = %d bytes %.20q, %v, want the old document", len(got), got, err)
				}
			})
		}
	}
}

// TestDurableWriteFaultsReachClient: a failed write of the write-ahead log
// fails the PUT with a 503 (transient: disk full, I/O error) and a JSON
// error body, and the entity keeps its old value. An entity file the
// applier cannot write (permissions) fails nothing: the log holds the
// write, which was acknowledged; reads see the logged value, and the
// applier keeps trying.
func TestDurableWriteFaultsReachClient(t *testing.T) {
	for _, c := range []struct {
		step  string
		errno unix.Errno
		want  int
		after string
	}{
		{"fdatasync", unix.EIO, 503, `"old"`},
		{"write", unix.ENOSPC, 503, `"old"`},
		{"rename", unix.EACCES, 200, `"new"`},
	} {
		t.Run(c.step, func(t *testing.T) {
			// The fault is armed after the first PUT.
			var armed atomic.Bool
			var failed atomic.Int64
			ops, _ := recordingOps(func(step, _ string) bool {
				if armed.Load() && step == c.step {
					failed.Add(1)
					return true
				}
				return false
			}, c.errno)
			s := newLocalRESTOver(t, newTestFSStoreOps(t, ops))
			if rec := serve(s, "PUT", "/entity/db", `{"k":"old"}`); rec.Code != 200 {
				t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
			}
			armed.Store(true)
			// The disk heals before the server closes: its log would
			// otherwise retry the failing step for Close's 30 s.
			defer armed.Store(false)
			rec := serve(s, "PUT", "/entity/db", `{"k":"new"}`)
			var body struct{ Error string }
			if rec.Code != c.want || (c.want != 200 && (json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "")) {
				t.Errorf("PUT with a failing %s = %d %s, want %d with a JSON error", c.step, rec.Code, rec.Body, c.want)
			}
			waitFor(t, func() bool { return failed.Load() > 0 }) // the applier's rename comes after the answer
			if rec := serve(s, "GET", "/entity/db?key=k", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != c.after {
				t.Errorf("GET after the failed PUT = %d %s, want 200 %s", rec.Code, rec.Body, c.after)
			}
		})
	}
}

// TestLogNoSpaceWritingAheadRecovers: the disk is full when the
// write-ahead log's new segment is written with zeros ahead of its first
// records: the PUT answers 503 with a JSON error and stores nothing, and
// once space returns the next PUT is stored.
func TestLogNoSpaceWritingAheadRecovers(t *testing.T) {
	var full atomic.Bool
	var failed atomic.Int64
	ops, _ := recordingOps(func(step, path string) bool {
		if full.Load() && step == "writeAt" && strings.Contains(path, walDirName) {
			failed.Add(1)
			return true
		}
		return false
	}, unix.ENOSPC)
	st := newTestFSStoreOps(t, ops)
	s := newLocalRESTOver(t, st)
	full.Store(true)
	rec := serve(s, "PUT", "/entity/db", `{"k":"lost"}`)
	var body struct{ Error string }
	if rec.Code != 503 || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
		t.Errorf("PUT while the log's new segment cannot be written ahead = %d %s, want 503 with a JSON error", rec.Code, rec.Body)
	}
	if failed.Load() == 0 {
		t.Fatal("the log wrote no zeros ahead through the store's file operations")
	}
	if rec := serve(s, "GET", "/entity/db?key=k", ""); rec.Code != 404 {
		t.Errorf("GET after the refused PUT = %d %s, want 404", rec.Code, rec.Body)
	}
	full.Store(false)
	if rec := serve(s, "PUT", "/entity/db", `{"k":"kept"}`); rec.Code != 200 {
		t.Fatalf("PUT once space returned = %d %s, want 200", rec.Code, rec.Body)
	}
	if rec := serve(s, "GET", "/entity/db?key=k", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `"kept"` {
		t.Errorf("GET after space returned = %d %s, want 200 \"kept\"", rec.Code, rec.Body)
	}
}

// BenchmarkFSStoreGet1K reads 1 KiB entity objects at random out of 1,000:
// the path of a cache miss (every open is resolved beneath the root, see
// beneath.go).
func BenchmarkFSStoreGet1K(b *testing.B) {
	st := newTestFSStore(b)
	data := make([]byte, 1024)
	for i := range 1000 {
		if err := st.Put(b.Context(), entityObjectKey("db", fmt.Sprint(i)), data); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := st.Get(b.Context(), entityObjectKey("db", fmt.Sprint(i*7919%1000))); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDatabaseDirectorySpreadsHashDirs: a database's entity directory is
// marked as the top of a hierarchy (chattr +T) when its first entity is
// written, before its hash directory is made, so that ext4 spreads the
// hash directories over block groups (spreadSubdirs).
func TestDatabaseDirectorySpreadsHashDirs(t *testing.T) {
	st := newTestFSStore(t)
	probe, err := os.Open(st.root)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, err := unix.IoctlGetInt(int(probe.Fd()), unix.FS_IOC_GETFLAGS); err != nil {
		t.Skipf("the temp dir's filesystem keeps no inode flags: %v", err)
	}
	ctx := context.Background()
	if err := st.Put(ctx, "files/db/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	flagsOf := func(dir string) int {
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			t.Fatal(err)
		}
		return flags
	}
	if flagsOf(filepath.Join(st.root, "files", "db"))&fsTopdirFL == 0 {
		t.Error("files/db is not marked as the top of a directory hierarchy")
	}
	if flagsOf(filepath.Join(st.root, "files"))&fsTopdirFL != 0 {
		t.Error("files is marked too: only a database's directory spreads its subdirectories")
	}
	if got, err := st.Get(ctx, "files/db/k"); err != nil || string(got) != "v" {
		t.Errorf("Get = %q, %v", got, err)
	}
}
