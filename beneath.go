package main

// Opening files and directories under the storage root (fsstore.go)
// without ever following a symbolic link. Whoever can write the storage
// directory, but holds no master key, must not make the server read or
// write anything outside it (the master key file, /etc/passwd, /dev/zero),
// nor read one object in place of another. Linux 5.6 and later resolve the
// whole path in the kernel: openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS. Older kernels, and sandboxes whose seccomp filter
// refuses openat2, get the same guarantee from a walk that opens one
// component at a time with O_NOFOLLOW, each relative to the directory
// opened before it. Either way a symbolic link anywhere on the path is an
// error wrapping errSymlink (ELOOP).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// errSymlink is the error of a path under the storage root that passes
// through, or ends in, a symbolic link: never followed, always refused.
var errSymlink = unix.ELOOP

// Path resolution modes of openAt; resolveMode holds the one in use.
const (
	resolveProbe   int32 = iota // not known yet: the first open probes openat2
	resolveOpenat2              // the kernel resolves (openat2)
	resolveWalk                 // one component at a time, O_NOFOLLOW
)

// resolveMode is how openAt resolves paths: probed once, then fixed.
// Tests set it to run their probes over both modes.
var resolveMode atomic.Int32

// openBeneath opens comps (validated components, see physicalComponents)
// under the directory root with flags, adding O_NOFOLLOW and O_CLOEXEC. A
// symbolic link on the path is an error wrapping errSymlink; the root
// itself, the operator's choice, may be one. No components opens root.
func openBeneath(root string, comps []string, flags int, mode uint32) (*os.File, error) {
	rootFD, err := openRootFD(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootFD)
	return openUnder(rootFD, root, comps, flags, mode)
}

// openRootFD opens the directory root as a starting point of openUnder
// (O_PATH: it grants nothing but lookups beneath it).
func openRootFD(root string) (int, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	return fd, nil
}

// openUnder is openBeneath from rootFD, the directory root opened.
func openUnder(rootFD int, root string, comps []string, flags int, mode uint32) (*os.File, error) {
	fd, name, err := openFDUnder(rootFD, root, comps, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openFDUnder is openUnder returning the bare descriptor and its name,
// for a caller that only makes system calls on it and closes it (the
// entity lock): an *os.File costs a system call of its own.
func openFDUnder(rootFD int, root string, comps []string, flags int, mode uint32) (int, string, error) {
	name := strings.Join(append([]string{root}, comps...), "/")
	fd, err := openAt(rootFD, comps, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV),
		errors.Is(err, unix.ENOTDIR) && linkOnPath(rootFD, comps):
		return -1, name, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("a symbolic link on the path is refused: %w", errSymlink)}
	case err != nil:
		return -1, name, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, name, nil
}

// linkOnPath reports whether a symbolic link is on the path comps under
// dirFD. O_DIRECTORY|O_NOFOLLOW fails on a link with ENOTDIR, as on a
// file, so that error alone does not tell a link from a key whose path
// another key's file shadows; this tells them apart, on that error path
// only.
func linkOnPath(dirFD int, comps []string) bool {
	for i := range comps {
		var st unix.Stat_t
		if err := unix.Fstatat(dirFD, strings.Join(comps[:i+1], "/"), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			return true
		case unix.S_IFDIR:
		default:
			return false
		}
	}
	return false
}

// openAt opens comps relative to the directory dirFD with flags.
func openAt(dirFD int, comps []string, flags int, mode uint32) (int, error) {
	if len(comps) == 0 {
		return ignoringEINTR(func() (int, error) { return unix.Openat(dirFD, ".", flags, mode) })
	}
	if resolveMode.Load() == resolveProbe {
		probeOpenat2(dirFD)
	}
	if resolveMode.Load() == resolveWalk {
		return walkAt(dirFD, comps, flags, mode)
	}
	how := &unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	return ignoringEINTR(func() (int, error) { return unix.Openat2(dirFD, strings.Join(comps, "/"), how) })
}

// probeOpenat2 sets resolveMode: openat2 if the kernel (and any seccomp
// filter) lets it open dirFD itself, the walk otherwise.
func probeOpenat2(dirFD int) {
	fd, err := unix.Openat2(dirFD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
	mode := resolveOpenat2
	if err != nil {
		// ENOSYS: before Linux 5.6; EPERM: a seccomp filter that does not
		// know the call. Anything else says openat2 exists.
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			mode = resolveWalk
		}
	} else {
		unix.Close(fd)
	}
	resolveMode.CompareAndSwap(resolveProbe, mode)
}

// walkAt opens comps relative to dirFD one component at a time, each
// directory with O_NOFOLLOW, so that a symbolic link anywhere fails with
// ELOOP; flags must hold O_NOFOLLOW for the last component.
func walkAt(dirFD int, comps []string, flags int, mode uint32) (int, error) {
	cur := dirFD
	closeCur := func() {
		if cur != dirFD {
			unix.Close(cur)
		}
	}
	defer func() { closeCur() }()
	for _, c := range comps[:len(comps)-1] {
		next, err := ignoringEINTR(func() (int, error) {
			return unix.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			return -1, err
		}
		closeCur()
		cur = next
	}
	last := comps[len(comps)-1]
	return ignoringEINTR(func() (int, error) { return unix.Openat(cur, last, flags, mode) })
}

// ignoringEINTR calls open until it is not interrupted by a signal.
func ignoringEINTR(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// openDirBeneath opens the directory comps under root for reading entries
// and for the *at calls of the durable write.
func openDirBeneath(root string, comps []string) (*os.File, error) {
	return openBeneath(root, comps, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// storageRoot is a storage root opened once, the starting point of every
// open beneath it: resolving the root's path on each open cost an open
// and a close more per file operation, on the write path's busiest
// calls. The root is resolved when it is opened (it may be a symbolic
// link, the operator's choice); a directory moved to its path later is
// not followed. Everything beneath it is resolved on each call, as by
// openBeneath. It is safe for concurrent use.
type storageRoot struct {
	path string
	// dir is the root, O_PATH, closed by close. Every call reaches its
	// number through conn, which holds the descriptor open during the
	// call, so a call racing close fails instead of meeting the number
	// reused by another file.
	dir *os.File
	// conn is dir's: Control holds dir open during each call.
	conn syscall.RawConn
}

// openStorageRoot opens the directory path as a storageRoot.
func openStorageRoot(path string) (*storageRoot, error) {
	fd, err := openRootFD(path)
	if err != nil {
		return nil, err
	}
	dir := os.NewFile(uintptr(fd), path)
	conn, err := dir.SyscallConn()
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &storageRoot{path: path, dir: dir, conn: conn}, nil
}

// close closes the root's descriptor: every later call fails. Closing
// it again does nothing.
func (r *storageRoot) close() error {
	if err := r.dir.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close storage root %s: %w", r.path, err)
	}
	return nil
}

// openFD is openFDUnder from the root.
func (r *storageRoot) openFD(comps []string, flags int, mode uint32) (fd int, name string, err error) {
	if cerr := r.conn.Control(func(root uintptr) {
		fd, name, err = openFDUnder(int(root), r.path, comps, flags, mode)
	}); cerr != nil {
		return -1, "", &fs.PathError{Op: "open", Path: r.path, Err: cerr}
	}
	return fd, name, err
}

// open is openBeneath from the root.
func (r *storageRoot) open(comps []string, flags int, mode uint32) (*os.File, error) {
	fd, name, err := r.openFD(comps, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openDir is openDirBeneath from the root.
func (r *storageRoot) openDir(comps []string) (*os.File, error) {
	return r.open(comps, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// read is readBeneath from the root.
func (r *storageRoot) read(comps []string, limit int64) ([]byte, error) {
	f, err := r.open(comps, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOpened(f, limit)
}

// readBeneath returns the bytes of the regular file comps under root. A
// directory there is an error wrapping EISDIR; a device, pipe or socket
// one wrapping errCorrupt, as is a file larger than limit, refused from
// its size before anything is allocated. O_NONBLOCK keeps the open of a
// pipe from waiting for a writer.
func readBeneath(root string, comps []string, limit int64) ([]byte, error) {
	f, err := openBeneath(root, comps, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOpened(f, limit)
}

// readOpened is readBeneath of the file f, opened for it.
func readOpened(f *os.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, &fs.PathError{Op: "read", Path: f.Name(), Err: unix.EISDIR}
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file (%s), refused: %w", f.Name(), fi.Mode().Type(), errCorrupt)
	case fi.Size() > limit:
		return nil, fmt.Errorf("%s is %d bytes, over the read limit of %d: %w", f.Name(), fi.Size(), limit, errCorrupt)
	}
	// The size was checked; one byte more tells a file that grew since.
	data := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, data)
	switch {
	case err == nil:
		return nil, fmt.Errorf("%s grew past its size of %d bytes while read: %w", f.Name(), fi.Size(), errCorrupt)
	case !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		return nil, err
	}
	return data[:n], nil
}

// mkdirAllBeneath opens the directory comps under root, creating it and
// its missing parents 0700 first, each without following a symbolic link,
// and fsyncing each parent after creating a child in it so that new
// directories (a new hash directory, a new database) survive a crash. A
// database's entity directory is marked to spread its hash directories
// (spreadSubdirs) before any is made in it.
func (ops *fileOps) mkdirAllBeneath(root string, comps []string) (*os.File, error) {
	dir, err := openDirBeneath(root, nil)
	if err != nil {
		return nil, err
	}
	for i, c := range comps {
		next, err := ops.mkdirAt(dir, c)
		dir.Close()
		if err != nil {
			return nil, err
		}
		dir = next
		if i == 1 && comps[0]+"/" == entitiesPrefix {
			spreadSubdirs(dir)
		}
	}
	return dir, nil
}

// fsTopdirFL is FS_TOPDIR_FL of linux/fs.h (chattr +T), which x/sys/unix
// does not name.
const fsTopdirFL = 0x20000

// spreadSubdirs marks dir as the top of a directory hierarchy (chattr
// +T), so that ext4 places each subdirectory made in it afterwards, and
// the files made in that subdirectory, in a block group of its own rather
// than in dir's. A database's hash directories then spread over the
// disk's block groups. It matters for the write-ahead log's applier
// (walapply.go): each entity file it writes is a new inode replacing one,
// and ext4 without a journal, looking for a free inode in a group, skips
// every one freed in the last 30 s while its inode table block is dirty.
// With all of a database's files in one group that scan took most of the
// applier's CPU (BENCHMARKS.md). Best effort: other filesystems, which
// keep no such flag, refuse the call, and allocation is theirs to decide.
func spreadSubdirs(dir *os.File) {
	fd := int(dir.Fd())
	flags, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsTopdirFL != 0 {
		return
	}
	_ = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, flags|fsTopdirFL)
}

// mkdirAt opens the directory name in dir, creating it (durably) if it
// does not exist.
func (ops *fileOps) mkdirAt(dir *os.File, name string) (*os.File, error) {
	open := func() (*os.File, error) {
		fd, err := ignoringEINTR(func() (int, error) {
			return unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) && linkOnPath(int(dir.Fd()), []string{name}) {
			err = fmt.Errorf("a symbolic link on the path is refused: %w", errSymlink)
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: dir.Name() + "/" + name, Err: err}
		}
		return os.NewFile(uintptr(fd), dir.Name()+"/"+name), nil
	}
	f, err := open()
	if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	// A concurrent writer may create it first; syncing the parent anyway
	// makes sure the entry is durable before we rely on it.
	if err := ops.mkdir(dir, name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := ops.syncDir(dir); err != nil {
		return nil, err
	}
	return open()
}
