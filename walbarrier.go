package main

// Every reader of storage sees every acknowledged write, though the
// workers' logs write entity files after the acknowledgement
// (walapply.go). The main worker's scans (the key index, the list of
// databases, a rekey's pass) first flush every worker's log: the
// in-process worker's by waiting for its applier, a remote worker's by a
// checkpoint, a departed worker's by its handover. A storage tool
// (backup, verify), another process, reads the logs' records over the
// entity files instead. See ARCHITECTURE.md, "The write-ahead log".

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	pb "deltadatabase/proto"
)

// flushTimeout bounds the wait for the workers' logs before a scan.
const flushTimeout = 30 * time.Second

// flushBeforeScan calls flush, if any, within flushTimeout.
func flushBeforeScan(ctx context.Context, flush func(context.Context) error) error {
	if flush == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	return flush(ctx)
}

// flushLogs returns once the entity files hold every write acknowledged
// before the call, so that a scan of storage sees them all: the
// in-process worker's applier catches up, each remote worker in rotation
// checkpoints its log (a renewing one once it is available again), and
// the pending handovers (the logs of workers that left) are done.
// Without logs it returns at once.
func (r *router) flushLogs(ctx context.Context) error {
	if r.ho == nil {
		return nil
	}
	r.mu.RLock()
	var conns []*workerConn
	for _, c := range r.workers {
		if c.placed() {
			conns = append(conns, c)
		}
	}
	r.mu.RUnlock()
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			if ok, err := r.awaitRenewal(ctx, c); err != nil || !ok {
				// Out of rotation meanwhile: its log's takeover is
				// waited for below.
				errs[i] = err
				return
			}
			if w, ok := c.proc.(*worker); ok {
				errs[i] = w.flushLog(ctx)
				return
			}
			_, errs[i] = r.call(ctx, c, true, &pb.EntityOp{Operation: pb.Operation_CHECKPOINT})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, errWALTaken) {
			errs[i] = nil // taken over: its handover applies it, waited for below
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flush the workers' write-ahead logs: %w", err)
	}
	return r.ho.waitSettled(ctx)
}

// waitSettled waits until no handover is pending, or ctx ends.
func (hs *handovers) waitSettled(ctx context.Context) error {
	for {
		hs.mu.Lock()
		n, ch := len(hs.list), hs.settled
		hs.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d handovers of write-ahead logs: %w", n, ctx.Err())
		}
	}
}

// toolView is the store a storage tool reads: st itself on S3 or
// without logs, else st with the logs' newest records over its entity
// files, read before any entity file is, so that every write
// acknowledged before the tool started is in the view (a later one may
// be too).
func toolView(st store, log *slog.Logger) (store, error) {
	fsst, ok := fsBackend(st)
	if !ok {
		return st, nil
	}
	ov, err := readLogsOver(fsst.root)
	if err != nil {
		return nil, err
	}
	if len(ov) > 0 {
		log.Info("reading the write-ahead logs' records not yet in their entity files", "entities", len(ov))
	}
	return &overlayStore{store: st, recs: ov}, nil
}

// readLogsMaxAttempts bounds how often readLogsOver reads again because
// a log directory was claimed, opened or removed while it read.
const readLogsMaxAttempts = 20

// readLogsOver reads every log under root and returns each entity's
// newest record, by object key. Logs may be written meanwhile: a segment
// a checkpoint removed was applied (and synced) first, and is skipped;
// a directory claimed, opened or removed during the read makes it read
// again, since a claimed log's records are in the taken directory.
func readLogsOver(root string) (map[string]*walRecord, error) {
	for attempt := 1; ; attempt++ {
		before, err := logDirNames(root)
		if err != nil {
			return nil, err
		}
		out, err := readLogDirs(root, before)
		if err != nil {
			return nil, err
		}
		after, err := logDirNames(root)
		if err != nil {
			return nil, err
		}
		if slices.Equal(before, after) {
			return out, nil
		}
		if attempt == readLogsMaxAttempts {
			return nil, fmt.Errorf("read write-ahead logs: their directories kept changing (%d reads)", attempt)
		}
	}
}

// logDirNames returns the log directories under root, claimed ones
// first in claim order, then the live ones by name.
func logDirNames(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, walDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read write-ahead logs: %w", err)
	}
	var taken, live []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if id, t, ok := strings.Cut(e.Name(), walTakenInfix); ok {
			taken = append(taken, t+"/"+id+walTakenInfix+t) // claim time first
		} else {
			live = append(live, e.Name())
		}
	}
	slices.Sort(taken)
	for i, t := range taken {
		_, taken[i], _ = strings.Cut(t, "/")
	}
	slices.Sort(live)
	return append(taken, live...), nil
}

// readLogDirs reads the named log directories in order; the newest
// record of an entity wins.
func readLogDirs(root string, names []string) (map[string]*walRecord, error) {
	out := map[string]*walRecord{}
	for _, name := range names {
		dir := filepath.Join(root, walDirName, name)
		segs, err := listSegments(dir)
		if err != nil {
			return nil, fmt.Errorf("read write-ahead log %s: %w", dir, err)
		}
		recs, err := readLiveLog(dir, segs)
		if err != nil {
			return nil, err
		}
		for _, rec := range lastRecords(recs) {
			out[entityObjectKey(rec.DB, rec.Key)] = rec
		}
	}
	return out, nil
}

// readLiveLog is readLog of a log that may be written meanwhile: a
// segment gone was cut by a checkpoint (its records are in the entity
// files) or its directory claimed (readLogsOver reads again).
func readLiveLog(dir string, segs []walSegmentFile) ([]walRecord, error) {
	var recs []walRecord
	for i, s := range segs {
		last := i == len(segs)-1 || segs[i+1].gen != s.gen
		sc, err := scanSegment(filepath.Join(dir, s.name), last)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, sc.records...)
	}
	return recs, nil
}

// overlayStore is a store whose entity objects are the logs' newest
// records where there are some: a put replaces the file's bytes, a
// delete hides it. Only its reads are used (the storage tools').
type overlayStore struct {
	store
	recs map[string]*walRecord
}

// Get returns the logged envelope of an entity with a record, else the
// stored object.
func (o *overlayStore) Get(ctx context.Context, key string) ([]byte, error) {
	if rec, ok := o.recs[key]; ok {
		if rec.Type == walDelete {
			return nil, fmt.Errorf("get %s: deleted in the write-ahead log: %w", key, errNotFound)
		}
		return rec.Sealed, nil
	}
	return o.store.Get(ctx, key)
}

// GetRev is Get with the revision of the bytes.
func (o *overlayStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	if _, ok := o.recs[key]; !ok {
		return o.store.GetRev(ctx, key)
	}
	data, err := o.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return data, fsRev(data), nil
}

// List lists the stored objects with the logged puts added and the
// logged deletes left out.
func (o *overlayStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	keys, err := o.store.List(ctx, prefix, startAfter, 0)
	if err != nil {
		return nil, err
	}
	for k, rec := range o.recs {
		if strings.HasPrefix(k, prefix) && k > startAfter && rec.Type == walPut {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	keys = slices.DeleteFunc(keys, func(k string) bool { r := o.recs[k]; return r != nil && r.Type == walDelete })
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}
