package main

// The write-ahead log's applier: the table of logged records whose
// entity files are not written yet (the worker reads it, newest record
// per entity), the background writing of those files, coalescing the
// records of an entity written again meanwhile, and the room the table
// may take. See ARCHITECTURE.md, "The write-ahead log".

import (
	"context"
	"fmt"
	"maps"
	"time"
)

// walEntry is what the log holds of an entity that its files do not yet:
// its newest record and the objects (versions) of its records.
type walEntry struct {
	// rec is the entity's newest put or delete; nil when its records
	// since the last file change only its versions (walVersions).
	rec *walRecord
	db  string
	key string
	// objs are the objects its records write beside the entity file
	// (walRecord.Objects), by key, the newest of each (nil: removed).
	objs map[string][]byte
	// segs are the segments holding the records the entry stands for,
	// one per record: each counts it unapplied (walSegment.unapplied)
	// until the entry is applied. A record replaced by a later one of the
	// entity drops out, unless it wrote objects, which the later record
	// does not repeat: a replay needs it until they are written.
	segs []*walSegment
	// since is when the entity's oldest record not yet in its file was
	// logged: the applier writes the file applyDelay after it, so that
	// the writes of a hot entity meanwhile cost one file, not one each.
	since time.Time
	// chain is the same for the entries of an entity that replaced one
	// another with no file written between them: a flush waiting for a
	// record waits for its chain, whose newest entry's file holds it or
	// a later write.
	chain uint64
	// objBytes is the size of objs' keys and bytes.
	objBytes int64
}

// size is what an entry counts against the room of the table.
func (e *walEntry) size() int64 {
	n := int64(len(e.key)+64) + e.objBytes
	if e.rec != nil {
		n += int64(len(e.rec.Sealed))
	}
	return n
}

// merge adds objects written after the entry's own, newest last.
func (e *walEntry) merge(objs []walObject) {
	if len(objs) == 0 {
		return
	}
	if e.objs == nil {
		e.objs = make(map[string][]byte, len(objs))
	}
	for _, o := range objs {
		if old, ok := e.objs[o.Key]; ok {
			e.objBytes -= int64(len(o.Key) + len(old))
		}
		e.objs[o.Key] = o.Data
		e.objBytes += int64(len(o.Key) + len(o.Data))
	}
}

// Applier tuning.
const (
	// applyBatch is how many entities one pass of the applier takes.
	applyBatch = 256
	// applyRetry spaces passes that wrote nothing because of failures.
	applyRetry = 200 * time.Millisecond
	// applyRoomWait bounds how long a write waits for room (waitRoom).
	applyRoomWait = 10 * time.Second
)

// write logs rec (group commit) and makes it the entity's state for
// reads, replacing any older record of the entity the applier has not
// written yet; the applier writes its entity file (and its objects)
// later. The caller holds the entity's lock, so records of one entity
// enter in log order.
func (l *walLog) write(rec *walRecord) error {
	seg, err := l.append(rec)
	if err != nil {
		return err
	}
	obj := entityObjectKey(rec.DB, rec.Key)
	e := &walEntry{db: rec.DB, key: rec.Key, segs: []*walSegment{seg}, since: l.opts.now()}
	if rec.Type != walVersions {
		e.rec = rec
	}
	l.mu.Lock()
	idle := len(l.unapplied) == 0
	if old := l.unapplied[obj]; old != nil {
		// The applier holds the entity's lock while it writes a file, as
		// this writer does: an entry replaced here is one still waiting.
		e.since, e.chain = old.since, old.chain
		l.remove(obj, old)
		if e.rec != nil && len(old.objs) == 0 {
			l.release(old)
		} else {
			// Its objects (or, under a versions record, its entity state)
			// are still to be written: the entry carries them on, in a
			// map of its own, since merge adds to it while an applier may
			// still be writing the old entry's.
			e.segs = append(old.segs, e.segs...)
			e.objs, e.objBytes = maps.Clone(old.objs), old.objBytes
			if e.rec == nil {
				e.rec = old.rec
			}
		}
	} else {
		l.chains++
		e.chain = l.chains
	}
	e.merge(rec.Objects)
	rec.Objects = nil // the entry holds them
	l.unapplied[obj] = e
	l.unappliedBytes += e.size()
	l.objectBytes += e.objBytes
	full := l.delayFull()
	l.mu.Unlock()
	if idle || full || l.opts.applyDelay == 0 {
		// Otherwise the applier already waits for the oldest entry.
		l.kickApplier()
	}
	return nil
}

// remove takes an entry out of the table. The caller holds mu.
func (l *walLog) remove(obj string, e *walEntry) {
	delete(l.unapplied, obj)
	l.unappliedBytes -= e.size()
	l.objectBytes -= e.objBytes
}

// release gives up an entry's records: applied, or replaced by a later
// record of the entity, which makes them unnecessary to any replay. The
// caller holds mu.
func (l *walLog) release(e *walEntry) {
	for _, s := range e.segs {
		s.unapplied--
	}
	l.applied.Broadcast()
}

// drop removes an applied entry. The caller holds mu.
func (l *walLog) drop(obj string, e *walEntry) {
	l.remove(obj, e)
	l.release(e)
}

// unappliedRecord returns an entity's newest record whose entity file is
// not written yet, if any: what a read must answer before the file.
func (l *walLog) unappliedRecord(db, key string) (*walRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.unapplied[entityObjectKey(db, key)]
	if e == nil || e.rec == nil {
		return nil, false
	}
	return e.rec, true
}

// unappliedObject returns the newest bytes a record of entity key of db
// wrote to object obj (one of its versions or their index) that are not
// in storage yet, if any: nil data when the record removed it.
func (l *walLog) unappliedObject(db, key, obj string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.unapplied[entityObjectKey(db, key)]
	if e == nil {
		return nil, false
	}
	data, ok := e.objs[obj]
	return data, ok
}

// waitRoom waits while the records not yet applied take more than their
// room (-wal-checkpoint-bytes): the applier is behind, and a write waits
// for it before it takes its entity's lock. After applyRoomWait (a disk
// that takes the log but not the entity files) it gives up with a 503.
func (l *walLog) waitRoom(ctx context.Context) error {
	l.mu.Lock()
	full := l.unappliedBytes > l.opts.maxUnapplied
	l.mu.Unlock()
	if !full {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, applyRoomWait)
	defer cancel()
	stop := l.wakeWhenDone(wctx)
	defer stop()
	defer l.hurry()()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.unappliedBytes > l.opts.maxUnapplied && !l.closed && !l.fenced && wctx.Err() == nil {
		l.applied.Wait()
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case wctx.Err() != nil:
		return errApplierBehind
	}
	return nil
}

// errApplierBehind: the applier could not make room within
// applyRoomWait (503).
var errApplierBehind = fmt.Errorf("the write-ahead log's entity files are not being written; nothing stored: %w", errUnavailable)

// wakeWhenDone wakes whoever waits on applied once ctx ends; the
// returned function stops that.
func (l *walLog) wakeWhenDone(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.applied.Broadcast()
		l.mu.Unlock()
	})
}

// delayFull reports whether the table holds more than a sixteenth of its
// room in entity envelopes, or a quarter in all: then the applier writes
// files at once, without waiting for applyDelay, so that large documents
// written fast do not sit in memory. Versions get the larger share: with
// versions on, each write of an entity adds a version and the index to
// its entry, and 1000 entities of 1 KiB written 8 times a second with 10
// versions kept take about 10 MiB; past a sixteenth they would be written
// at once, three files a write (entity, version, index), where the delay
// writes one a write (its version) and the entity's file and index once.
// The caller holds mu.
func (l *walLog) delayFull() bool {
	return l.unappliedBytes-l.objectBytes > l.opts.maxUnapplied/16 || l.unappliedBytes > l.opts.maxUnapplied/4
}

// hurry has the applier write every entry at once, not applyDelay after
// it was logged, until the returned function is called: someone waits
// for the entity files (a flush, a checkpoint, a write waiting for room).
func (l *walLog) hurry() func() {
	l.hurrying.Add(1)
	l.kickApplier()
	return func() { l.hurrying.Add(-1) }
}

// kickApplier wakes the applier.
func (l *walLog) kickApplier() {
	select {
	case l.dirty <- struct{}{}:
	default:
	}
}

// runApplier writes the entity files of logged records until ctx ends:
// each entity's file applyDelay after its oldest record not yet in it was
// logged (at once while someone hurries it), up to applyBatch entities
// per pass. Between passes it sleeps until the next entry is due or it is
// woken (a write to an empty table, a hurry). A pass that writes nothing
// (a full or failing disk) waits applyRetry before the next.
func (l *walLog) runApplier(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		entries, next := l.dueUnapplied(applyBatch)
		if len(entries) == 0 {
			// A little later than the first entry is due, so that one pass
			// takes the entries due about then, not one wake-up each.
			if next > 0 {
				next += l.opts.applyDelay / 4
			}
			l.sleepApplier(ctx, next)
			continue
		}
		written, err := l.applyAll(ctx, entries)
		if written > 0 || err == nil {
			if failures > 0 {
				l.applyDown.Store(nil)
			}
			failures = 0
			continue
		}
		down := fmt.Errorf("write-ahead log applier: write entity files: %w", err)
		l.applyDown.Store(&down)
		if failures++; failures == 1 || failures%50 == 0 {
			l.opts.log.Error("write-ahead log applier cannot write entity files; reads still see the logged records, retrying",
				attrWorker, l.id, "unapplied", len(entries), attrErr, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(applyRetry):
		}
	}
}

// sleepApplier waits until ctx ends, the applier is woken, or next (when
// positive) has passed.
func (l *walLog) sleepApplier(ctx context.Context, next time.Duration) {
	var due <-chan time.Time
	if next > 0 {
		t := time.NewTimer(next)
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
	case <-l.dirty:
	case <-due:
	}
}

// dueUnapplied returns up to n entries of the table that are due: logged
// applyDelay ago or more, or any while someone hurries the applier. With
// none due it returns how long until the first is (0: the table is
// empty).
func (l *walLog) dueUnapplied(n int) ([]*walEntry, time.Duration) {
	delay := l.opts.applyDelay
	if l.hurrying.Load() > 0 {
		delay = 0
	}
	now := l.opts.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.delayFull() {
		delay = 0
	}
	var out []*walEntry
	next := time.Duration(0)
	for _, e := range l.unapplied {
		if len(out) == n {
			break
		}
		if wait := delay - now.Sub(e.since); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		out = append(out, e)
	}
	return out, next
}

// applyAll writes the entity files of entries and returns how many it
// wrote and the last failure.
func (l *walLog) applyAll(ctx context.Context, entries []*walEntry) (int, error) {
	written := 0
	var last error
	for _, e := range entries {
		if err := l.applyOne(ctx, e.db, e.key); err != nil {
			last = err
			if ctx.Err() != nil || l.isFenced() {
				return written, err
			}
			continue
		}
		written++
	}
	return written, last
}

// applyOne writes the entity file of an entity's newest unapplied record,
// under the entity's lock (in this process and, by flock, in others).
// Only while the log is still this process's: a process resumed after
// its log was taken over, and the entity written since by another worker,
// must never write its older record over the newer one.
func (l *walLog) applyOne(ctx context.Context, db, key string) error {
	unlock, err := l.opts.lock(ctx, db, key)
	if err != nil {
		return err
	}
	defer unlock()
	obj := entityObjectKey(db, key)
	l.mu.Lock()
	e := l.unapplied[obj]
	l.mu.Unlock()
	if e == nil {
		return nil
	}
	if err := e.segs[len(e.segs)-1].checkFence(); err != nil {
		l.mu.Lock()
		l.fenced = true
		l.applied.Broadcast()
		l.mu.Unlock()
		return errWALTaken
	}
	// Objects first: an index names no version whose object is not
	// there.
	if err := writeObjects(l.fs, e.objs); err != nil {
		return err
	}
	if e.rec != nil {
		if err := writeRecord(l.fs, e.rec); err != nil {
			return err
		}
	}
	l.stats.applied.Add(1)
	l.mu.Lock()
	if l.unapplied[obj] == e {
		l.drop(obj, e)
	}
	l.mu.Unlock()
	return nil
}

// isFenced reports whether the log was taken over.
func (l *walLog) isFenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fenced
}

// flush returns once every record acknowledged before it was called has
// its entity file written, or a later record of its entity has: a
// barrier before a scan of storage, by this process or by another on
// its behalf. Unlike a checkpoint it neither syncs nor cuts the log. A
// log taken over meanwhile is errWALTaken: its taker applies it.
func (l *walLog) flush(ctx context.Context) error {
	stop := l.wakeWhenDone(ctx)
	defer stop()
	defer l.hurry()()
	l.mu.Lock()
	defer l.mu.Unlock()
	waiting := make([]*walEntry, 0, len(l.unapplied))
	for _, e := range l.unapplied {
		waiting = append(waiting, e)
	}
	for len(waiting) > 0 && !l.fenced && ctx.Err() == nil {
		// An entry leaves the table when its file is written or a later
		// record of its entity replaces it; the replacement continues its
		// chain, whose file is still to come (a new entity has none
		// before it: a scan would miss it). Each entry is looked at once
		// its chain is done, so the wait costs the size of the snapshot.
		e := waiting[len(waiting)-1]
		if cur := l.unapplied[entityObjectKey(e.db, e.key)]; cur == nil || cur.chain != e.chain {
			waiting = waiting[:len(waiting)-1]
			continue
		}
		l.applied.Wait()
	}
	switch {
	case len(waiting) == 0:
		return nil
	case l.fenced:
		return errWALTaken
	}
	return fmt.Errorf("apply the write-ahead log (%d entities left): %w", len(waiting), ctx.Err())
}
