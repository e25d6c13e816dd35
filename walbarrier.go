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
func (r *router) flushLogs(ctx context.Context) error { return r.syncLogs(ctx, false) }

// checkpointLogs is flushLogs that also cuts the in-process worker's log
// (a remote worker's is cut by its checkpoint already): afterwards no
// log holds a record written before the call, so no replay writes its
// objects again. Before objects are removed behind the logs' back (the
// versions of a deleted database).
func (r *router) checkpointLogs(ctx context.Context) error { return r.syncLogs(ctx, true) }

// syncLogs is flushLogs, and checkpointLogs when cut is set.
func (r *router) syncLogs(ctx context.Context, cut bool) error {
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
				if cut {
					_, errs[i] = w.checkpoint(ctx)
				} else {
					errs[i] = w.flushLog(ctx)
				}
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
	return &overlayStore{store: st, objs: ov}, nil
}

// readLogsMaxAttempts bounds how often readLogsOver reads again because
// a log directory was claimed, opened or removed while it read.
const readLogsMaxAttempts = 20

// readLogsOver reads every log under root and returns the newest state
// the records give each object they write (loggedObjects): by object
// key, its bytes, nil when removed. Logs may be written meanwhile: a segment
// a checkpoint removed was applied (and synced) first, and is skipped;
// a directory claimed, opened or removed during the read makes it read
// again, since a claimed log's records are in the taken directory.
func readLogsOver(root string) (map[string][]byte, error) {
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
// record of an object wins.
func readLogDirs(root string, names []string) (map[string][]byte, error) {
	out := map[string][]byte{}
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
		loggedObjects(recs, out)
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

// overlayStore is a store whose objects are the logs' newest states of
// them where the logs write them (readLogsOver): logged bytes replace the
// file's, a logged removal hides it. Only its reads are used (the storage
// tools').
type overlayStore struct {
	store
	objs map[string][]byte
}

// Get returns the logged bytes of an object the logs write, else the
// stored object.
func (o *overlayStore) Get(ctx context.Context, key string) ([]byte, error) {
	if data, ok := o.objs[key]; ok {
		if data == nil {
			return nil, fmt.Errorf("get %s: removed in the write-ahead log: %w", key, errNotFound)
		}
		return data, nil
	}
	return o.store.Get(ctx, key)
}

// GetRev is Get with the revision of the bytes.
func (o *overlayStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	if _, ok := o.objs[key]; !ok {
		return o.store.GetRev(ctx, key)
	}
	data, err := o.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return data, fsRev(data), nil
}

// List lists the stored objects with the logged ones added and the
// logged removals left out.
func (o *overlayStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	keys, err := o.store.List(ctx, prefix, startAfter, 0)
	if err != nil {
		return nil, err
	}
	for k, data := range o.objs {
		if strings.HasPrefix(k, prefix) && k > startAfter && data != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	keys = slices.DeleteFunc(keys, func(k string) bool { data, ok := o.objs[k]; return ok && data == nil })
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// ListDirs lists the stored directories under prefix with those of the
// logged objects added: a version kept only in a log so far is listed
// (verify's walk). A directory whose every object the logs removed may
// still be listed; its listing then holds nothing.
func (o *overlayStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	dirs, err := o.store.ListDirs(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for k, data := range o.objs {
		if rest, ok := strings.CutPrefix(k, prefix); ok && data != nil {
			if d, _, found := strings.Cut(rest, "/"); found {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs), nil
}
