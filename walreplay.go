package main

// Taking a write-ahead log over: claiming a log directory (which fences
// the process that wrote it), applying its records to the entity files,
// and cutting it. The main worker takes over the log of a worker that
// left; a process taking over its own log at start does the same. See
// ARCHITECTURE.md, "The write-ahead log".

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A log directory _wal/<id> is claimed by renaming it to
// _wal/<id>.taken-<unix ns>: from then on its writer's paths name nothing
// (its fence check fails before any acknowledgement) and the taken
// directory belongs to whoever applies it. _wal/<id>.claim is flocked
// around the claim, so that a worker starting and the main worker never
// claim one directory at once.
const (
	walTakenInfix = ".taken-"
	walClaimLock  = ".claim"
)

// walClaim says which live log directory a takeover may claim.
type walClaim int

const (
	// claimNone claims nothing: only directories taken already are
	// applied.
	claimNone walClaim = iota
	// claimDead claims the directory only if no live process holds its
	// owner lock.
	claimDead
	// claimGen claims it if its owner is dead or is the generation the
	// caller names (a worker that stopped answering: fence it), but not
	// a newer generation (the worker restarted and claimed the old one).
	claimGen
)

// claimLogDir claims worker id's live log directory as c allows, under
// the claim lock. It reports whether it claimed one.
func claimLogDir(ctx context.Context, root, id string, c walClaim, gen uint64) (bool, error) {
	if c == claimNone {
		return false, nil
	}
	unlock, err := flockFile(ctx, filepath.Join(root, walDirName, id+walClaimLock))
	if err != nil {
		return false, fmt.Errorf("claim log of worker %q: %w", id, err)
	}
	defer unlock()
	dir := walLogDir(root, id)
	ownerGen, live, err := logOwner(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim log of worker %q: %w", id, err)
	}
	if live && (c == claimDead || ownerGen != gen) {
		return false, nil
	}
	taken := walTakenDir(root, id, time.Now())
	if err := os.Rename(dir, taken); err != nil {
		return false, fmt.Errorf("claim log of worker %q: %w", id, err)
	}
	return true, syncDir(filepath.Dir(dir))
}

// walTakenDir names a newly claimed log directory of worker id.
func walTakenDir(root, id string, now time.Time) string {
	return filepath.Join(root, walDirName, fmt.Sprintf("%s%s%020d", id, walTakenInfix, now.UnixNano()))
}

// logOwner reads the owner lock of a log directory: the generation its
// writer wrote there and whether a live process holds it.
func logOwner(dir string) (gen uint64, live bool, err error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, false, err
	}
	f, err := os.OpenFile(filepath.Join(dir, walOwnerLock), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil // never owned: a crash before the lock existed
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	ok, err := tryFlock(f)
	if err != nil {
		return 0, false, err
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	gen, _ = strconv.ParseUint(strings.TrimSpace(string(b[:n])), 10, 64)
	return gen, !ok, nil
}

// flockFile takes an exclusive flock on path (created if needed),
// waiting until it is free or ctx ends. The returned function releases
// it.
func flockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		ok, err := tryFlock(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			return func() { f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPollInterval):
		}
	}
}

// takeOverLog claims worker id's live log directory as c allows (gen for
// claimGen) and applies every taken directory of id, oldest first. It
// returns how many files (entities, versions) it wrote or removed. When
// it returns nil, no record of id's earlier logs is left to apply: the
// files hold them all, durably.
func takeOverLog(ctx context.Context, st *fsStore, id string, c walClaim, gen uint64, log *slog.Logger) (int, error) {
	root := st.root
	if _, err := claimLogDir(ctx, root, id, c, gen); err != nil {
		return 0, err
	}
	taken, err := takenDirs(root, id)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, dir := range taken {
		n, err := applyTakenDir(ctx, st, dir, log)
		total += n
		if err != nil {
			return total, err
		}
		log.Info("write-ahead log taken over and applied", attrWorker, id, "dir", dir, "files_written", n)
	}
	return total, nil
}

// takenDirs returns worker id's claimed log directories, oldest first.
func takenDirs(root, id string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, walDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), id+walTakenInfix); ok && e.IsDir() && isDigits(rest) {
			dirs = append(dirs, filepath.Join(root, walDirName, e.Name()))
		}
	}
	slices.Sort(dirs) // fixed-width times: name order is claim order
	return dirs, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// applyTakenDir applies a claimed log directory: each object its records
// write (an entity's file, the entity's versions) is brought to its last
// logged state, unless it holds it already; then one syncfs makes them
// durable and the directory is removed. A damaged record stops it with
// an error naming the file and offset; the directory stays for an
// operator to look at. A torn tail is dropped with a warning naming the
// same.
func applyTakenDir(ctx context.Context, st *fsStore, dir string, log *slog.Logger) (int, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return 0, fmt.Errorf("read log directory %s: %w", dir, err)
	}
	recs, tears, err := readLog(dir, segs)
	if err != nil {
		return 0, err
	}
	for _, t := range tears {
		log.Warn("write-ahead log: torn tail dropped (a crash during its last write, which was not acknowledged)",
			"file", t.path, "offset", t.off, "dropped_bytes", t.dropped)
	}
	objs := map[string][]byte{}
	loggedObjects(recs, objs)
	n, err := applyAll(ctx, st, objs)
	if err != nil {
		return n, fmt.Errorf("apply log %s: %w", dir, err)
	}
	if err := st.ops.syncfs(st.root); err != nil {
		return n, fmt.Errorf("apply log %s: syncfs: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return n, fmt.Errorf("remove applied log %s: %w", dir, err)
	}
	return n, syncDir(filepath.Dir(dir))
}

// replayWorkers is how many objects a replay brings up to date at once.
// Each is a few syscalls (open beneath the root, read and compare, or a
// temp file and a rename) that mostly wait, for the disk after a machine
// crash or for directory locks, so more than the cores help; every one
// is another object, so they never touch one file.
const replayWorkers = 8

// applyAll brings each object of objs (loggedObjects) to its logged
// state with up to replayWorkers at once and returns how many it wrote
// or removed. The first failure stops it. The order does not matter: the
// caller makes them all durable at once, and until then the log holds
// them.
func applyAll(ctx context.Context, st *fsStore, objs map[string][]byte) (int, error) {
	keys := slices.Sorted(maps.Keys(objs))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, wrote atomic.Int64
	var wg sync.WaitGroup
	for range min(replayWorkers, len(keys)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(keys)) && ctx.Err() == nil; i = next.Add(1) - 1 {
				ok, err := applyReplayed(st, keys[i], objs[keys[i]])
				if err != nil {
					cancel(err)
					return
				}
				if ok {
					wrote.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(wrote.Load()), context.Cause(ctx)
}

// loggedObjects folds recs, in log order, into into: for each object the
// records write (an entity's file, each object beside it) its last
// logged bytes, nil when it was removed.
func loggedObjects(recs []walRecord, into map[string][]byte) {
	for i := range recs {
		r := &recs[i]
		for _, o := range r.Objects {
			into[o.Key] = o.Data
		}
		switch r.Type {
		case walPut:
			into[entityObjectKey(r.DB, r.Key)] = r.Sealed
		case walDelete:
			into[entityObjectKey(r.DB, r.Key)] = nil
		}
	}
}

// applyReplayed brings object obj to its last logged state, data (nil:
// removed), unless it is there already: bytes holding the same version
// (an envelope with the same nonce, other bytes equal) are left alone,
// since a re-encryption keeps the nonce and must not be undone; a
// removal of a missing object is done. It reports whether it wrote or
// removed the object.
func applyReplayed(st *fsStore, obj string, data []byte) (bool, error) {
	comps, err := physicalComponents(obj)
	if err != nil {
		return false, err
	}
	cur, err := st.top.read(comps, walMaxPayload)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if data == nil {
			return false, nil
		}
	case err != nil:
		return false, err
	case data != nil && sameVersion(cur, data):
		return false, nil
	}
	return true, writeObject(st, obj, data)
}

// sameVersion reports whether two envelopes hold the same version of an
// entity: the same nonce (ETag), the same bytes or a re-encryption.
// Bytes that are no envelope (a version index) are the same when equal.
func sameVersion(a, b []byte) bool {
	ha, _, err1 := parseHeader(a)
	hb, _, err2 := parseHeader(b)
	if err1 != nil || err2 != nil {
		return bytes.Equal(a, b)
	}
	return ha.Nonce == hb.Nonce
}

// writeRecord makes an entity file what rec says (writeObject).
func writeRecord(st *fsStore, rec *walRecord) error {
	if rec.Type == walDelete {
		return writeObject(st, entityObjectKey(rec.DB, rec.Key), nil)
	}
	return writeObject(st, entityObjectKey(rec.DB, rec.Key), rec.Sealed)
}

// writeObjects makes each object of objs what it says (writeObject), in
// key order: an entity's versions before their index.
func writeObjects(st *fsStore, objs map[string][]byte) error {
	for _, k := range slices.Sorted(maps.Keys(objs)) {
		if err := writeObject(st, k, objs[k]); err != nil {
			return err
		}
	}
	return nil
}

// writeObject makes object key hold data (nil: removes it), visibly to
// every process at once but not durably: a write replaces the file by
// rename, a removal unlinks it, both in its directory opened beneath the
// root (beneath.go). The log holds the record durably until a checkpoint
// has made the file durable (syncfs).
func writeObject(st *fsStore, key string, data []byte) error {
	comps, err := physicalComponents(key)
	if err != nil {
		return err
	}
	name := comps[len(comps)-1]
	if data == nil {
		dir, err := st.top.openDir(comps[:len(comps)-1])
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fsError("delete", key, "open dir", err)
		}
		defer dir.Close()
		if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fsError("delete", key, "unlink", &fs.PathError{Op: "unlink", Path: dir.Name() + "/" + name, Err: err})
		}
		return nil
	}
	if step, err := writeVisible(st, comps, data); err != nil {
		return fsError("put", key, step, err)
	}
	return nil
}

// allocate gives f the blocks of its first n bytes before they are
// written, best effort. On ext4 a file written without allocated blocks
// (delayed allocation) and renamed over another is written out at once
// (auto_da_alloc), an I/O per applied file; with its blocks allocated it
// is written back as any dirty file is, or never if it is replaced
// first. A filesystem that cannot allocate ahead refuses the call, and
// the write goes on without it.
func allocate(f *os.File, n int) {
	if n > 0 {
		_ = unix.Fallocate(int(f.Fd()), 0, 0, int64(n))
	}
}

// writeVisible replaces the object at comps with data by a temp file and
// a rename in its directory, so that readers see the old or the new
// bytes, never a mix, without the fdatasync and directory fsync of
// writeDurableIn: durability comes from the log.
func writeVisible(st *fsStore, comps []string, data []byte) (step string, err error) {
	dirComps := comps[:len(comps)-1]
	dir, err := st.top.openDir(dirComps)
	if errors.Is(err, fs.ErrNotExist) {
		if dir, err = st.ops.mkdirAllBeneath(st.root, dirComps); err != nil {
			return "mkdir", err
		}
	}
	if err != nil {
		return "open dir", err
	}
	defer dir.Close()
	ops := st.ops
	f, err := ops.createTemp(dir)
	if err != nil {
		return "create temp", err
	}
	tmp := filepath.Base(f.Name())
	allocate(f, len(data))
	if _, err = ops.write(f, data); err != nil {
		f.Close()
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return "write", err
	}
	if err = ops.close(f); err != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return "close", err
	}
	if err = ops.rename(dir, tmp, comps[len(comps)-1]); err != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return "rename", err
	}
	return "", nil
}
