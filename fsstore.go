package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
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

// On-disk layout constants of the filesystem backend.
const (
	// tmpPrefix starts the name of every temp file. Such files are never
	// valid data: List skips them and newFSStore removes them.
	tmpPrefix = ".tmp-"
	// lockDir is the top-level directory of the flock files; it is not a
	// logical key and List never shows it.
	lockDir = "_locks"
	// maxComponentLen is the file-name limit of common POSIX filesystems.
	maxComponentLen = 255
	// lockPollInterval is how often Lock retries a flock held by another
	// process.
	lockPollInterval = 2 * time.Millisecond
)

// fsStore is the store over a POSIX directory (ARCHITECTURE.md "Storage
// layout"). A logical key is a path under root, except entity objects
// "files/<db>/<name>" (entityObjectKey, layout.go: the one part of the layout
// a backend knows), which live in one of 256 hash-prefix directories,
// "files/<db>/<hh>/<name>", with names longer than segmentLen split into
// directory segments (see segments), so that concurrent writers do not queue
// on one directory's metadata commits.
//
// Keys under entitiesPrefix must have exactly three components. The top-level
// component "_locks" and components starting with ".tmp-" are reserved.
// Delete leaves emptied directories in place.
//
// No call follows a symbolic link under root (beneath.go): a link, or
// anything but a regular file where an object should be, is refused with
// an error wrapping errCorrupt, and so is an object over maxObject bytes.
//
// fsStore is safe for concurrent use, also by several processes sharing
// root: Lock is flock.
type fsStore struct {
	root string // absolute, cleaned
	// top is root opened once: the object and lock files are opened
	// beneath it.
	top *storageRoot
	// maxObject is the largest object Get reads; a larger one is refused
	// from its size, before anything is allocated.
	maxObject int64
	// lockWaits counts the times Lock found its flock held by someone
	// else and waited.
	lockWaits atomic.Uint64
	// ops are the file operations of durable writes, directory creation
	// and the write-ahead log on this store (osFileOps unless a test
	// injects faults).
	ops *fileOps
}

var _ store = (*fsStore)(nil)

// newFSStore opens (creating it 0700 if needed) the store rooted at root
// and removes temp files left over by a crash (those older than
// staleTempAge: the directory may be shared with live processes whose
// writes are in flight). An unusable root yields an error wrapping
// errConfig.
func newFSStore(root string) (*fsStore, error) {
	return newFSStoreLimit(root, defaultMaxObject)
}

// defaultMaxObject is the largest object an fsStore reads unless its
// opener says otherwise (budgets.storedObject).
const defaultMaxObject = 64 << 20

// newFSStoreLimit is newFSStore reading objects of at most maxObject
// bytes.
func newFSStoreLimit(root string, maxObject int64) (*fsStore, error) {
	return newFSStoreWith(root, maxObject, osFileOps())
}

// newFSStoreWith is newFSStoreLimit doing its file operations through
// ops (tests inject faults there).
func newFSStoreWith(root string, maxObject int64, ops *fileOps) (*fsStore, error) {
	s, err := openFSStore(root, ops)
	if err != nil {
		return nil, err
	}
	s.maxObject = maxObject
	if err := removeTempFiles(s.root); err != nil {
		return nil, fmt.Errorf("open fs store %s: remove temp files: %w: %w", root, err, errConfig)
	}
	return s, nil
}

// openFSStore is newFSStore without the removal of temp files, for the
// storage tools (backup.go), which run beside a live server: its writes
// in flight are temp files. Its file operations are ops.
func openFSStore(root string, ops *fileOps) (*fsStore, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open fs store %s: %w: %w", root, err, errConfig)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open fs store %s: %w: %w", root, err, errConfig)
	}
	locks, err := ops.mkdirAllBeneath(abs, []string{lockDir})
	if err != nil {
		return nil, fmt.Errorf("open fs store %s: %w: %w", root, err, errConfig)
	}
	locks.Close()
	top, err := openStorageRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open fs store %s: %w: %w", root, err, errConfig)
	}
	return &fsStore{root: abs, top: top, maxObject: defaultMaxObject, ops: ops}, nil
}

// staleTempAge is how long a temp file must have gone unmodified before a
// starting process removes it. Writes give up after the write timeout (60
// s), so an older temp file belongs to no write in flight; a younger one
// may belong to another process sharing the directory (a main worker and
// its workers, or a restarted worker), and removing it would fail that
// process's write at its rename.
const staleTempAge = 10 * time.Minute

// removeTempFiles deletes every temp file under root last modified more
// than staleTempAge ago. A temp file is never valid data: it only becomes
// an object by the rename in writeDurable. WalkDir follows no symbolic
// link, and the unlink goes through the directory opened beneath root.
func removeTempFiles(root string) error {
	cutoff := time.Now().Add(-staleTempAge)
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed by its writer meanwhile
		}
		if err != nil {
			return err
		}
		if info.ModTime().After(cutoff) {
			return nil
		}
		if err := unlinkBeneath(root, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// unlinkBeneath removes the file at path, a path under root, through its
// directory opened beneath root.
func unlinkBeneath(root, path string) error {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return err
	}
	comps := strings.Split(filepath.ToSlash(rel), "/")
	dir, err := openDirBeneath(root, comps[:len(comps)-1])
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Unlinkat(int(dir.Fd()), comps[len(comps)-1], 0); err != nil {
		return &fs.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// Get returns the object at key, or an error wrapping errNotFound.
func (s *fsStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	comps, err := physicalComponents(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	data, err := s.top.read(comps, s.maxObject)
	if err != nil {
		return nil, fsError("get", key, "read", notFoundIfShadowed(err))
	}
	return data, nil
}

// Put writes data to key durably (see writeDurable).
func (s *fsStore) Put(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	comps, err := physicalComponents(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if step, err := s.writeObject(comps, data); err != nil {
		return fsError("put", key, step, err)
	}
	return nil
}

// writeObject writes data durably to the object at comps, opening its
// directory beneath root (creating it on the first write there: a stat
// per write would cost more than the rare retry).
func (s *fsStore) writeObject(comps []string, data []byte) (step string, err error) {
	dirComps := comps[:len(comps)-1]
	dir, err := s.top.openDir(dirComps)
	if errors.Is(err, fs.ErrNotExist) {
		if dir, err = s.ops.mkdirAllBeneath(s.root, dirComps); err != nil {
			return "mkdir", err
		}
	}
	if err != nil {
		return "open dir", err
	}
	defer dir.Close()
	return s.ops.writeDurableIn(dir, comps[len(comps)-1], data)
}

// GetRev returns the object at key and its revision, the hex SHA-256 of
// its bytes (see fsRev).
func (s *fsStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	data, err := s.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return data, fsRev(data), nil
}

// PutIf writes data to key if the object's revision is still rev ("": if
// it does not exist). It reads the current bytes and then writes, so it is
// atomic only while the caller holds Lock(key), as the store doc says.
func (s *fsStore) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	cur, err := s.Get(ctx, key)
	switch {
	case errors.Is(err, errNotFound) && rev == "":
	case err != nil && !errors.Is(err, errNotFound):
		return "", fmt.Errorf("put %s if revision %q: %w", key, rev, err)
	case err != nil:
		return "", fmt.Errorf("put %s if revision %q: object missing: %w", key, rev, errPrecondition)
	case rev == "":
		return "", fmt.Errorf("put %s if absent: object exists: %w", key, errPrecondition)
	case fsRev(cur) != rev:
		return "", fmt.Errorf("put %s if revision %q: revision changed: %w", key, rev, errPrecondition)
	}
	if err := s.Put(ctx, key, data); err != nil {
		return "", err
	}
	return fsRev(data), nil
}

// fsRev is the revision of an object's bytes on the filesystem backend:
// the hex SHA-256 of its contents (entity envelopes never repeat, as each
// write draws a fresh nonce).
func fsRev(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Delete removes key and syncs its directory, or returns an error wrapping
// errNotFound if key does not exist.
func (s *fsStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	comps, err := physicalComponents(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	dir, err := s.top.openDir(comps[:len(comps)-1])
	if err != nil {
		return fsError("delete", key, "unlink", notFoundIfShadowed(err))
	}
	defer dir.Close()
	// unlink, not os.Remove: a key never names a directory, even an empty
	// one. A symbolic link planted there is removed, never followed.
	if err := unix.Unlinkat(int(dir.Fd()), comps[len(comps)-1], 0); err != nil {
		err = &fs.PathError{Op: "unlink", Path: dir.Name() + "/" + comps[len(comps)-1], Err: err}
		return fsError("delete", key, "unlink", notFoundIfShadowed(err))
	}
	if err := dir.Sync(); err != nil {
		return fsError("delete", key, "sync dir", err)
	}
	return nil
}

// Close closes the root's descriptor; every other file is closed after
// each call, and held locks belong to their unlock functions. Calls after
// Close fail.
func (s *fsStore) Close() error { return s.top.close() }

// fileOps are the file operations of writeDurableIn and mkdirAt, and of
// the write-ahead log (walwriter.go, walreplay.go) and the change log's
// writes (changelog.go, which opens its own). Each store holds its
// own, given when it is opened, so that a test can inject a failure at
// each step and record the order of the calls in its store alone, while
// that store's background work (the log's applier) runs. Each acts on a
// directory opened beneath the storage root (beneath.go) and on names in
// it, never on a path that could pass through a link.
type fileOps struct {
	createTemp func(dir *os.File) (*os.File, error)
	write      func(f *os.File, data []byte) (int, error)
	fdatasync  func(f *os.File) error
	close      func(f *os.File) error
	rename     func(dir *os.File, oldName, newName string) error
	mkdir      func(dir *os.File, name string, perm uint32) error
	syncDir    func(dir *os.File) error
	// syncfs makes the whole filesystem durable: the write-ahead log's
	// checkpoints (walwriter.go).
	syncfs func(dir string) error
	// writeAt writes the zeros a log segment is written ahead with
	// (writeZeros), where a full disk shows first.
	writeAt func(f *os.File, data []byte, off int64) (int, error)
}

// osFileOps returns the file operations that act on the filesystem.
func osFileOps() *fileOps {
	return &fileOps{createTempIn, (*os.File).Write, fdatasync, (*os.File).Close, renameIn, mkdirIn, (*os.File).Sync, syncfs,
		(*os.File).WriteAt}
}

// writeDurable is writeDurableIn for the file at path, in a directory
// that exists (the load tool's fsync ceiling, bench.go).
func writeDurable(path string, data []byte) (step string, err error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "open dir", err
	}
	defer dir.Close()
	return osFileOps().writeDurableIn(dir, filepath.Base(path), data)
}

// writeDurableIn is the one durable-write sequence of the store. It
// returns once data is the file name in dir and survives a crash; on
// failure it names the step that failed and leaves no temp file behind.
func (ops *fileOps) writeDurableIn(dir *os.File, name string, data []byte) (step string, err error) {
	// 1. Create the temp file in the target directory, so the rename below
	//    stays within one filesystem and one directory: a unique name,
	//    created 0600, never through a link.
	f, err := ops.createTemp(dir)
	if err != nil {
		return "create temp", err
	}
	tmp := filepath.Base(f.Name())
	// 2. On any later failure close and remove the temp file.
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
		}
	}()
	// 3. Write the bytes.
	if _, err = ops.write(f, data); err != nil {
		return "write", err
	}
	// 4. fdatasync: data (and the size) reach the disk before the name does.
	if err = ops.fdatasync(f); err != nil {
		return "fdatasync", err
	}
	// 5. Close, reporting deferred write errors.
	closed = true
	if err = ops.close(f); err != nil {
		return "close", err
	}
	// 6. Rename over the target: readers see the old or the new bytes, never
	//    a mix. A link at the target's name is replaced, not followed.
	if err = ops.rename(dir, tmp, name); err != nil {
		return "rename", err
	}
	// 7. fsync the directory so that the rename itself is durable. Only now
	//    may the write be acknowledged.
	if err = ops.syncDir(dir); err != nil {
		return "sync dir", err
	}
	return "", nil
}

// createTempIn creates a new temp file 0600 in dir, named tmpPrefix and
// random digits; O_EXCL|O_NOFOLLOW never opens what is already there.
func createTempIn(dir *os.File) (*os.File, error) {
	for range 10000 {
		name := tmpPrefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := ignoringEINTR(func() (int, error) {
			return unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: dir.Name() + "/" + name, Err: err}
		}
		return os.NewFile(uintptr(fd), dir.Name()+"/"+name), nil
	}
	return nil, &fs.PathError{Op: "createtemp", Path: dir.Name() + "/" + tmpPrefix + "*", Err: fs.ErrExist}
}

// renameIn renames oldName to newName within dir.
func renameIn(dir *os.File, oldName, newName string) error {
	if err := unix.Renameat(int(dir.Fd()), oldName, int(dir.Fd()), newName); err != nil {
		return &os.LinkError{Op: "rename", Old: dir.Name() + "/" + oldName, New: dir.Name() + "/" + newName, Err: err}
	}
	return nil
}

// mkdirIn creates the directory name in dir.
func mkdirIn(dir *os.File, name string, perm uint32) error {
	if err := unix.Mkdirat(int(dir.Fd()), name, perm); err != nil {
		return &fs.PathError{Op: "mkdir", Path: dir.Name() + "/" + name, Err: err}
	}
	return nil
}

// fdatasync flushes f's data and the metadata needed to read it back.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// syncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// path maps a logical key to its file under root, or returns an error
// wrapping errInvalid without touching the filesystem.
func (s *fsStore) path(key string) (string, error) {
	comps, err := physicalComponents(key)
	if err != nil {
		return "", err
	}
	return s.root + "/" + strings.Join(comps, "/"), nil
}

// physicalComponents validates key and returns the path components of its
// file relative to root. Entity objects "files/<db>/<name>" become
// "files/<db>/<hh>/<segments...>/<last>".
func physicalComponents(key string) ([]string, error) {
	if key == "" {
		return nil, fmt.Errorf("key is empty: %w", errInvalid)
	}
	if strings.IndexByte(key, 0) >= 0 {
		return nil, fmt.Errorf("key %q contains NUL: %w", key, errInvalid)
	}
	comps := strings.Split(key, "/")
	if reservedTop(comps[0]) {
		return nil, fmt.Errorf("key %q: %q is reserved: %w", key, comps[0], errInvalid)
	}
	if comps[0]+"/" == entitiesPrefix {
		if len(comps) != 3 {
			return nil, fmt.Errorf("key %q: entity keys are files/<db>/<name>: %w", key, errInvalid)
		}
		comps = append(comps[:2:2], entityPath(comps[2])...)
	}
	for _, c := range comps {
		if err := validateComponent(c); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
	}
	return comps, nil
}

// reservedTop reports whether a top-level directory under the root is
// not part of the key space: the lock files, the write-ahead logs
// (wal.go) and the change log (changelog.go). Listings, and so backups, never show them.
func reservedTop(name string) bool {
	return name == lockDir || name == walDirName || name == changesDirName
}

// validateComponent rejects path components that are empty, "." or "..",
// reserved for temp files, or too long for the filesystem.
func validateComponent(c string) error {
	switch {
	case c == "" || c == "." || c == "..":
		return fmt.Errorf("path component %q not allowed: %w", c, errInvalid)
	case strings.HasPrefix(c, tmpPrefix):
		return fmt.Errorf("path component %q uses the temp prefix: %w", c, errInvalid)
	case len(c) > maxComponentLen:
		return fmt.Errorf("path component longer than %d bytes: %w", maxComponentLen, errInvalid)
	}
	return nil
}

// entityPath returns the components under "files/<db>/" of the entity
// object name: the hash directory, then segments of long names.
func entityPath(name string) []string {
	return append([]string{hashDir(name)}, segments(name)...)
}

// hashDir is the directory of an entity name: the first byte of its
// SHA-256 in hex, one of 256.
func hashDir(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:1])
}

// isSegmentDir reports whether a directory entry under a hash directory is
// a segment of a long entity name (files are never that long).
func isSegmentDir(name string) bool {
	return len(name) == segmentLen+len(segmentMark) && strings.HasSuffix(name, segmentMark)
}

// notFoundIfShadowed maps the errors of reading or unlinking a key whose
// path is (or passes through) a directory of other keys to not found: no
// such object exists.
func notFoundIfShadowed(err error) error {
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	return err
}

// fsError wraps a filesystem failure as "op key: step: err" and classifies
// it with one sentinel error.
func fsError(op, key, step string, err error) error {
	return fmt.Errorf("%s %s: %s: %w: %w", op, key, step, err, classify(err))
}

// classify maps a filesystem error to the store's sentinel errors. Failures
// the operator must fix are errConfig; anything else that is not a client
// mistake may pass (full disk, I/O error, read-only remount), so it is
// errUnavailable.
func classify(err error) error {
	switch {
	case errors.Is(err, errCorrupt), errors.Is(err, errSymlink):
		// Not a regular file, a link, or an object over the read limit:
		// someone changed the storage behind our back.
		return errCorrupt
	case errors.Is(err, fs.ErrNotExist):
		return errNotFound
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return errConfig
	case errors.Is(err, unix.ENAMETOOLONG):
		return errInvalid
	case errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EEXIST):
		// The key and a directory of other keys want the same path.
		return errPrecondition
	default: // ENOSPC, EIO, EROFS, EDQUOT, EMFILE, ...
		return errUnavailable
	}
}

// List returns the logical keys starting with prefix and sorting after
// startAfter, in byte order, at most limit of them (limit <= 0: all). Hash
// directories, name segments and temp files do not show.
func (s *fsStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	start, err := listStart(prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	var keys []string
	if err := s.walk(ctx, start, prefix, &keys); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		return nil, fsError("list", prefix, "read dir", err)
	}
	slices.Sort(keys)
	i, found := slices.BinarySearch(keys, startAfter)
	if found {
		i++
	}
	keys = keys[i:]
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return slices.Clip(keys), nil
}

// ListDirs returns the names of the directories directly under the
// logical directory prefix that hold at least one object: one read of that
// directory, plus a descent into each subdirectory that stops at its first
// object (Delete leaves emptied directories in place, so a directory alone
// proves nothing). Under "files/<db>/" it is empty: entity names hold no
// "/", whatever the hash directories on disk.
func (s *fsStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("list dirs %s: prefix must be empty or end in \"/\": %w", prefix, errInvalid)
	}
	if db, ok := strings.CutPrefix(prefix, entitiesPrefix); ok && db != "" {
		return nil, nil
	}
	rel, err := listStart(prefix)
	if err != nil {
		return nil, fmt.Errorf("list dirs: %w", err)
	}
	entries, err := s.readDir(rel)
	if err != nil {
		return nil, fsError("list dirs", prefix, "read dir", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || strings.HasPrefix(n, tmpPrefix) || (rel == "" && reservedTop(n)) {
			continue
		}
		found, err := s.holdsObject(ctx, append(relComponents(rel), n))
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("list dirs %s: %w", prefix, err)
			}
			return nil, fsError("list dirs", prefix, "read dir", err)
		}
		if found {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// holdsObject reports whether the directory comps or a directory below it
// holds a regular file other than a temp file. It reads a few entries at
// a time and descends depth-first, stopping at the first file, so a
// directory of many objects costs a few short reads.
func (s *fsStore) holdsObject(ctx context.Context, comps []string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d, err := s.top.openDir(comps)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // removed meanwhile
	}
	if err != nil {
		return false, err
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(32)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				continue
			}
			if e.Type().IsRegular() {
				return true, nil
			}
			if !e.IsDir() {
				continue // a link or a device: not an object
			}
			if found, err := s.holdsObject(ctx, append(slices.Clip(comps), e.Name())); found || err != nil {
				return found, err
			}
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// listStart returns the deepest logical directory that holds every key
// with prefix: the prefix up to its last slash, or "files/<db>" for entity
// prefixes. It rejects prefixes whose directory part would leave root.
func listStart(prefix string) (string, error) {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return "", nil
	}
	comps := strings.Split(prefix[:i], "/")
	if comps[0]+"/" == entitiesPrefix && len(comps) > 2 {
		comps = comps[:2]
	}
	for _, c := range comps {
		if c == "" || c == "." || c == ".." || strings.IndexByte(c, 0) >= 0 {
			return "", fmt.Errorf("prefix %q: path component %q not allowed: %w", prefix, c, errInvalid)
		}
	}
	return strings.Join(comps, "/"), nil
}

// walk appends to keys every key with prefix under the logical directory
// rel ("" is root), descending only into directories that can hold such
// keys.
func (s *fsStore) walk(ctx context.Context, rel, prefix string, keys *[]string) error {
	if db, ok := entityDBDir(rel); ok {
		return s.listEntities(ctx, db, prefix, keys)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := s.readDir(rel)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) || (rel == "" && reservedTop(name)) {
			continue
		}
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		switch {
		case e.IsDir():
			if dirPrefix := child + "/"; strings.HasPrefix(dirPrefix, prefix) || strings.HasPrefix(prefix, dirPrefix) {
				if err := s.walk(ctx, child, prefix, keys); err != nil {
					return err
				}
			}
		case rel+"/" == entitiesPrefix, !e.Type().IsRegular():
			// Not a key: everything under files/ is files/<db>/<name>, and
			// a link or a device is no object.
		case strings.HasPrefix(child, prefix):
			*keys = append(*keys, child)
		}
	}
	return nil
}

// entityDBDir reports whether the logical directory rel is "files/<db>".
func entityDBDir(rel string) (db string, ok bool) {
	rest, ok := strings.CutPrefix(rel, entitiesPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// listEntities appends the keys with prefix of the entities of db by
// reading its hash directories.
func (s *fsStore) listEntities(ctx context.Context, db, prefix string, keys *[]string) error {
	base := entityKeyPrefix(db, "")
	if !strings.HasPrefix(prefix, base) && !strings.HasPrefix(base, prefix) {
		return nil
	}
	namePrefix := strings.TrimPrefix(prefix, base)
	if len(prefix) < len(base) {
		namePrefix = ""
	}
	dbDir := entitiesPrefix + db
	hashDirs, err := s.readDir(dbDir)
	if err != nil {
		return err
	}
	for _, h := range hashDirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !h.IsDir() || !isHashDir(h.Name()) {
			continue
		}
		err := s.listNames(dbDir+"/"+h.Name(), h.Name(), "", namePrefix, func(name string) {
			*keys = append(*keys, base+name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// listNames calls add for each entity name with namePrefix in the hash
// directory hh (or in its segment directory dir, whose names start with
// segs), reassembling segmented names. Stray files whose hash does not
// match hh are not entities and are skipped, as are links and devices.
func (s *fsStore) listNames(dir, hh, segs, namePrefix string, add func(name string)) error {
	entries, err := s.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		if e.IsDir() {
			sub := segs + strings.TrimSuffix(n, segmentMark)
			if isSegmentDir(n) && (strings.HasPrefix(sub, namePrefix) || strings.HasPrefix(namePrefix, sub)) {
				if err := s.listNames(dir+"/"+n, hh, sub, namePrefix, add); err != nil {
					return err
				}
			}
			continue
		}
		if name := segs + n; e.Type().IsRegular() && len(n) <= segmentLen && strings.HasPrefix(name, namePrefix) && hashDir(name) == hh {
			add(name)
		}
	}
	return nil
}

// isHashDir reports whether name is a hash directory: two lowercase hex
// digits.
func isHashDir(name string) bool {
	if len(name) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		if !strings.ContainsRune("0123456789abcdef", rune(name[i])) {
			return false
		}
	}
	return true
}

// readDir returns the entries of the logical directory rel ("" is root)
// in directory order (List sorts once at the end). A missing directory, or
// a file where a directory was expected, holds no keys: no entries and no
// error. A link on the way is refused (errSymlink).
func (s *fsStore) readDir(rel string) ([]fs.DirEntry, error) {
	d, err := s.top.openDir(relComponents(rel))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// relComponents splits the logical directory rel into its components;
// root ("") has none.
func relComponents(rel string) []string {
	if rel == "" {
		return nil
	}
	return strings.Split(rel, "/")
}

// Lock takes flock on one of 65536 files, root/_locks/<first 16 bits of the
// key's SHA-256, hex>, which excludes every other holder of key in any
// process (each call opens its own file description). It waits until it is
// held or ctx is done, polling: callers take their in-process keyLocks
// first, so only other processes and keys sharing a lock file ever wait
// here. Keys sharing a lock file exclude each other while held, which costs
// little and keeps _locks bounded however many entities are written; it is
// also why a caller must not hold two locks at once.
func (s *fsStore) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if _, err := physicalComponents(key); err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	fd, err := s.flock(ctx, key)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() {
		// Closing the only descriptor releases the flock.
		once.Do(func() { _ = unix.Close(fd) })
	}, nil
}

// flock opens key's lock file and polls for an exclusive flock on it until
// it is granted or ctx is done. Closing the returned descriptor releases
// it. A bare descriptor: the lock makes no other call on it.
func (s *fsStore) flock(ctx context.Context, key string) (int, error) {
	sum := sha256.Sum256([]byte(key))
	comps := []string{lockDir, hex.EncodeToString(sum[:2])}
	fd, _, err := s.top.openFD(comps, unix.O_RDWR|unix.O_CREAT, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // lock directory removed under us
		var dir *os.File
		if dir, err = s.ops.mkdirAllBeneath(s.root, comps[:1]); err == nil {
			dir.Close()
			fd, _, err = s.top.openFD(comps, unix.O_RDWR|unix.O_CREAT, 0o600)
		}
	}
	if err != nil {
		return -1, fsError("lock", key, "open lock file", err)
	}
	for {
		ok, err := tryFlockFD(fd)
		if err != nil {
			_ = unix.Close(fd)
			return -1, fsError("lock", key, "flock", err)
		}
		if ok {
			return fd, nil
		}
		s.lockWaits.Add(1)
		select {
		case <-ctx.Done():
			_ = unix.Close(fd)
			return -1, fmt.Errorf("lock %s: %w", key, ctx.Err())
		case <-time.After(lockPollInterval):
		}
	}
}

// tryFlock takes an exclusive flock on f without blocking; ok is false if
// another open file description holds it.
func tryFlock(f *os.File) (ok bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ok, ferr = tryFlockFD(int(fd)) }); err != nil {
		return false, err
	}
	return ok, ferr
}

// tryFlockFD is tryFlock of the descriptor fd.
func tryFlockFD(fd int) (ok bool, err error) {
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EWOULDBLOCK {
		return false, nil
	}
	return err == nil, err
}
