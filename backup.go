package main

// -role=backup and -role=restore (and the flag set they share with
// -role=verify, verify.go): copying every storage object, as stored, to an
// archive (archive.go) and back into empty storage of either backend.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// toolFlags configure the storage tools -role=backup, -role=restore and
// -role=verify, which have a flag set of their own: the storage flags of
// the server (-shared-fs, -s3-*), the master key for verify, and theirs.
type toolFlags struct {
	// cfg holds the storage and master-key flags, as the server reads them.
	cfg config
	// out is the archive backup writes; in the archive restore reads.
	out, in string
	// concurrency is the number of objects read or written at once.
	concurrency int
	// progress is auto (a bar on a terminal, lines otherwise), bar, lines
	// or off; progressEvery is the interval of progress lines.
	progress      string
	progressEvery time.Duration
}

// toolRoles are the roles whose flags are toolFlags.
var toolRoles = map[string]bool{"backup": true, "restore": true, "verify": true}

// parseToolFlags parses the arguments of a storage tool role. A bad value
// is an error naming the flag.
func parseToolFlags(args []string, stderr io.Writer) (toolFlags, error) {
	var t toolFlags
	fs := flag.NewFlagSet("deltadatabase -role=backup|restore|verify", flag.ContinueOnError)
	fs.StringVar(&t.cfg.role, "role", "", "backup, restore or verify")
	storageFlags(fs, &t.cfg)
	masterKeyFlags(fs, &t.cfg)
	fs.StringVar(&t.out, "out", "", "backup: the archive file to write (must not exist)")
	fs.StringVar(&t.in, "in", "", "restore: the archive file to read")
	fs.IntVar(&t.concurrency, "concurrency", 16, "objects read or written at once")
	fs.StringVar(&t.progress, "progress", "auto", "auto (a bar on a terminal, lines otherwise), bar, lines or off")
	fs.DurationVar(&t.progressEvery, "progress-every", 10*time.Second, "interval of progress lines")
	fs.StringVar(&t.cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseArgs(fs, args, stderr); err != nil {
		return t, err
	}
	return t, t.check()
}

// check rejects tool flag values that parse but make no sense.
func (t *toolFlags) check() error {
	switch {
	case t.cfg.role == "backup" && t.out == "":
		return errors.New("-out: -role=backup needs the archive file to write")
	case t.cfg.role == "restore" && t.in == "":
		return errors.New("-in: -role=restore needs the archive file to read")
	case t.concurrency <= 0:
		return fmt.Errorf("-concurrency: must be positive, got %d", t.concurrency)
	case t.progress != "auto" && t.progress != "bar" && t.progress != "lines" && t.progress != "off":
		return fmt.Errorf("-progress: %q is not auto, bar, lines or off", t.progress)
	case t.progressEvery <= 0:
		return fmt.Errorf("-progress-every: must be positive, got %v", t.progressEvery)
	case t.cfg.sharedFS == "" && t.cfg.s3.endpoint == "":
		return errors.New("-shared-fs: must not be empty without -s3-endpoint")
	}
	_, err := slogLevel(t.cfg.logLevel)
	return err
}

// runTool runs -role=backup, -role=restore or -role=verify.
func runTool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	t, err := parseToolFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	level, _ := slogLevel(t.cfg.logLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	warnOpenSecretFiles(log, t.cfg.secretFiles())
	st, err := openToolStore(ctx, t.cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if t.cfg.role == "restore" {
		return restore(ctx, t, st, stdout, stderr, log)
	}
	// Every acknowledged write, also those the workers' logs have not
	// written to their entity files yet (walbarrier.go).
	view, err := toolView(st, log)
	if err != nil {
		return fmt.Errorf("%s: %w", t.cfg.role, err)
	}
	if t.cfg.role == "backup" {
		return backup(ctx, t, view, stdout, stderr, log)
	}
	return verify(ctx, t, view, stdout, stderr, log)
}

// openToolStore opens the configured storage for a storage tool. A
// directory is opened without removing temp files (a server may be
// writing them), and must exist unless the tool is restore.
func openToolStore(ctx context.Context, cfg config) (store, error) {
	if cfg.s3.endpoint != "" {
		return openStore(ctx, cfg)
	}
	if fi, err := os.Stat(cfg.sharedFS); cfg.role != "restore" && (err != nil || !fi.IsDir()) {
		return nil, fmt.Errorf("-shared-fs %s: not a storage directory", cfg.sharedFS)
	}
	return openFSStore(cfg.sharedFS, osFileOps())
}

// backup writes every object of st to the archive t.out. Each object is
// read once, whole, so the archive holds one version of it as stored at
// some moment of the run: per object, not one point in time across
// objects. An object listed at the start and deleted before it is read is
// left out. The archive appears under its name only once complete and
// durable. Progress goes to stderr.
func backup(ctx context.Context, t toolFlags, st store, stdout, stderr io.Writer, log *slog.Logger) error {
	started := time.Now()
	macKey, err := archiveKeyOf(ctx, t.cfg, st)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	keys, err := st.List(ctx, "", "", 0)
	if err != nil {
		return fmt.Errorf("backup: list objects: %w", err)
	}
	log.Info("backup started", "objects", len(keys), "source", storageName(t.cfg))
	var size int64
	vanished := 0
	prog := startProgress(stderr, t.progress, t.progressEvery, "backup", "objects", int64(len(keys)))
	err = createDurable(t.out, func(w io.Writer) error {
		aw := newArchiveWriter(w, storageName(t.cfg), started, macKey, t.cfg.keyID)
		err := getInOrder(ctx, st, keys, t.concurrency, func(key string, data []byte, err error) error {
			prog.add(1)
			if errors.Is(err, errNotFound) {
				vanished++
				return nil
			}
			if err != nil {
				return fmt.Errorf("read object: %w", err)
			}
			size += int64(len(data))
			return aw.add(key, data)
		})
		if err != nil {
			return err
		}
		return aw.close()
	})
	prog.finish()
	if err != nil {
		return fmt.Errorf("backup to %s: %w", t.out, err)
	}
	fmt.Fprintf(stdout, "backup: %d objects (%d bytes) from %s written to %s in %v\n",
		len(keys)-vanished, size, storageName(t.cfg), t.out, time.Since(started).Round(time.Millisecond))
	if vanished > 0 {
		fmt.Fprintf(stdout, "backup: %d objects were deleted while the backup ran and are not in it\n", vanished)
	}
	return nil
}

// archiveKeyOf derives the archive key (archive.go) from the configured
// master key, which backup and restore require. Storage that holds a key
// check must match it (backup): an archive under the wrong key could not
// be restored with the right one.
func archiveKeyOf(ctx context.Context, cfg config, st store) ([]byte, error) {
	master, err := toolMasterKey(ctx, cfg, st, ": archives are authenticated under a key derived from it")
	if err != nil {
		return nil, err
	}
	defer zero(master)
	return deriveArchiveKey(master)
}

// getInOrder reads keys from st, up to n at once, and calls emit for each
// in the order of keys with its bytes or the read's error. It stops at
// emit's first error and returns it.
func getInOrder(ctx context.Context, st store, keys []string, n int, emit func(key string, data []byte, err error) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	// pending holds each read's result channel in key order; its capacity
	// bounds the reads in flight.
	pending := make(chan chan result, n)
	go func() {
		defer close(pending)
		for _, key := range keys {
			c := make(chan result, 1)
			select {
			case pending <- c:
			case <-ctx.Done():
				return
			}
			go func() {
				data, err := st.Get(ctx, key)
				c <- result{data, err}
			}()
		}
	}()
	i := 0
	for c := range pending {
		r := <-c
		if err := emit(keys[i], r.data, r.err); err != nil {
			cancel()
			for c := range pending { // let the producer finish
				<-c
			}
			return err
		}
		i++
	}
	return ctx.Err()
}

// createDurable writes a new file at path through write: to a temp file
// in the same directory, synced, then renamed to path (which must not
// exist) and the directory synced. On any failure no file is left.
func createDurable(path string, write func(w io.Writer) error) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists: choose a new name", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+"archive-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	// Link, unlike rename, refuses to replace a file created meanwhile.
	if err := os.Link(f.Name(), path); err != nil {
		return fmt.Errorf("name the archive: %w", err)
	}
	os.Remove(f.Name())
	return syncDir(filepath.Dir(path))
}

// restore writes every object of the archive t.in into st, which must
// hold no object. A first pass checks the whole archive before anything is
// written: every entry's type, size and key, every object against the
// manifest, the manifest against its HMAC under the archive key of the
// configured master key. The second writes each object durably, once its
// bytes match that manifest again, reads it back and compares its SHA-256
// again. Progress goes to stderr.
func restore(ctx context.Context, t toolFlags, st store, stdout, stderr io.Writer, log *slog.Logger) error {
	started := time.Now()
	present, err := st.List(ctx, "", "", 1)
	if err != nil {
		return fmt.Errorf("restore: inspect storage: %w", err)
	}
	if len(present) > 0 {
		return fmt.Errorf("restore: storage %s is not empty (it holds %s): restore only into empty storage", storageName(t.cfg), present[0])
	}
	macKey, err := archiveKeyOf(ctx, t.cfg, st)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f, err := os.Open(t.in)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	prog := startProgress(stderr, t.progress, t.progressEvery, "restore: check archive", "bytes", fi.Size())
	man, err := readArchive(bufio.NewReaderSize(f, 1<<20), macKey, nil, func(_ string, data []byte) error {
		prog.add(int64(len(data)))
		return nil
	})
	prog.add(fi.Size() - prog.done.Load()) // headers and the manifest
	prog.finish()
	if err != nil {
		return fmt.Errorf("restore: refused %s: %w", t.in, err)
	}
	log.Info("restore: archive checked", "objects", len(man.Objects), "source", man.Source, "created_at", man.CreatedAt)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var size int64
	prog = startProgress(stderr, t.progress, t.progressEvery, "restore", "objects", int64(len(man.Objects)))
	pool := newWorkPool(ctx, t.concurrency)
	_, err = readArchive(bufio.NewReaderSize(f, 1<<20), macKey, &man, func(key string, data []byte) error {
		size += int64(len(data))
		return pool.run(func(ctx context.Context) error {
			defer prog.add(1)
			return putChecked(ctx, st, key, data)
		})
	})
	if werr := pool.wait(); err == nil {
		err = werr
	}
	prog.finish()
	if err != nil {
		return fmt.Errorf("restore from %s into %s (stopped part-way: empty the storage before trying again): %w",
			t.in, storageName(t.cfg), err)
	}
	fmt.Fprintf(stdout, "restore: %d objects (%d bytes) from %s written to %s and read back, every checksum verified, in %v\n",
		len(man.Objects), size, t.in, storageName(t.cfg), time.Since(started).Round(time.Millisecond))
	return nil
}

// putChecked stores data at key durably and reads it back, comparing
// checksums.
func putChecked(ctx context.Context, st store, key string, data []byte) error {
	if err := st.Put(ctx, key, data); err != nil {
		return fmt.Errorf("write object %s: %w", key, err)
	}
	back, err := st.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read back object %s: %w", key, err)
	}
	if sha256.Sum256(back) != sha256.Sum256(data) {
		return fmt.Errorf("object %s read back differs from what was written: %w", key, errCorrupt)
	}
	return nil
}

// workPool runs functions on up to n goroutines and keeps the first
// error, at which the context it gives them is cancelled. run and wait
// are called from one goroutine.
type workPool struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	wg     sync.WaitGroup

	mu  sync.Mutex // guards err
	err error
}

// newWorkPool returns a pool of n goroutines under ctx.
func newWorkPool(ctx context.Context, n int) *workPool {
	pctx, cancel := context.WithCancel(ctx)
	return &workPool{parent: ctx, ctx: pctx, cancel: cancel, slots: make(chan struct{}, n)}
}

// run starts f once a goroutine is free. It returns the pool's first
// error instead once there is one.
func (p *workPool) run(f func(ctx context.Context) error) error {
	select {
	case p.slots <- struct{}{}:
	case <-p.ctx.Done():
		return p.firstErr()
	}
	p.wg.Go(func() {
		defer func() { <-p.slots }()
		if err := f(p.ctx); err != nil {
			p.mu.Lock()
			if p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
			p.cancel()
		}
	})
	return nil
}

// wait waits for every function started and returns the first error.
func (p *workPool) wait() error {
	p.wg.Wait()
	p.cancel()
	return p.firstErr()
}

// firstErr is the first error of a function, or that of the pool's
// parent context.
func (p *workPool) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return p.parent.Err()
}
