package main

// Handovers: the main worker's part of the write-ahead log. Before a
// worker's entities are written by another worker, the log that may hold
// records of them is checkpointed by its live writer, or taken over by
// the main worker (claimed, applied, cut) when its writer left. Until
// then writes of those entities wait, and their reads are served without
// caching. See ARCHITECTURE.md, "The write-ahead log".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "deltadatabase/proto"
)

// Timing of handovers.
const (
	// handoverWait is how long a write of an entity being handed over
	// waits before it answers 503.
	handoverWait = 10 * time.Second
	// handoverRetry spaces the attempts of a handover that failed.
	handoverRetry = 250 * time.Millisecond
	// checkpointCallTimeout bounds a worker's checkpoint on request.
	checkpointCallTimeout = 30 * time.Second
)

// errHandingOver: a write of an entity whose worker's log is being
// handed over waited longer than handoverWait (503).
var errHandingOver error = workerError("entity being handed over to another worker")

// errHandingOverLost: a call failed at the transport level and its retry
// waited longer than handoverWait for the handover of the lost worker's
// log (503, the sentence of errHandingOver). Unlike errHandingOver it
// does not say nothing was written: the lost call's outcome is unknown.
var errHandingOverLost error = workerError("entity being handed over after its worker was lost")

// errHandoverDamaged: an entity whose worker's log cannot be taken over
// because a record in it is damaged, which retrying cannot mend (503 at
// once, naming the operator's part, rather than a wait and "try again").
var errHandoverDamaged error = workerError("entity held by a damaged write-ahead log")

// errHandoverDamagedLost is errHandoverDamaged for a call that failed at
// the transport level first: its outcome is unknown (see
// errHandingOverLost).
var errHandoverDamagedLost error = workerError("entity held by a damaged write-ahead log after its worker was lost")

// handoverKind is what a handover does.
type handoverKind int

const (
	// hoCheckpoint: the worker lives and loses entities to a worker that
	// joined: it checkpoints its own log.
	hoCheckpoint handoverKind = iota
	// hoTakeover: the worker left (or stopped answering): the main worker
	// claims its log, which fences it, applies it and cuts it.
	hoTakeover
	// hoAwait: found held by a live process when the main worker
	// started: checkpointed once its worker subscribes, taken over if it
	// does not in time.
	hoAwait
)

// handover is one log to settle.
type handover struct {
	worker string
	kind   handoverKind
	// from are the workers available when the worker owned the entities
	// at stake: an entity is at stake if the worker was its owner among
	// them. nil (the main worker's start) puts every entity at stake.
	from []string
	// claim and gen say what a takeover may claim (walreplay.go).
	claim walClaim
	gen   uint64
	// conn is the registration of a worker that stopped answering: if it
	// is still the registered one when its log is taken over, the worker
	// must subscribe again (its next heartbeat is told so), which makes
	// it reopen its log. nil for a process already replaced or gone.
	conn *workerConn
	// drain: the checkpoint waits for the worker's writes routed before
	// this write generation.
	drain uint64
	// deadline ends an await.
	deadline time.Time
	// failures counts failed attempts, for the log; err is the last
	// one's error (under the handovers' mu, for health).
	failures int
	err      error
	// added is when it was registered: its writes have waited since.
	added time.Time
}

// atStake reports whether a write of (db, key) by worker owner must wait
// for h: the entity was h.worker's, and either another worker writes it
// now or h.worker's log is being taken over (its records are applied by
// the main worker, which must come first).
func (h *handover) atStake(db, key, owner string) bool {
	if h.from == nil {
		return true
	}
	if h.from[rendezvousOrder(db, key, h.from)[0]] != h.worker {
		return false
	}
	return h.kind != hoCheckpoint || owner != h.worker
}

// handovers are the pending handovers of a main worker, and their
// runner. It is safe for concurrent use.
type handovers struct {
	// fs is the store whose logs are taken over; root is its root.
	fs   *fsStore
	root string
	log  *slog.Logger
	now  func() time.Time

	mu   sync.Mutex
	list []*handover
	// settled is closed and replaced whenever a handover completes or
	// is found damaged.
	settled chan struct{}
	// n is len(list), read without mu on every routed request.
	n    atomic.Int32
	kick chan struct{}
}

// newHandovers returns the handovers of the logs in the filesystem
// store st.
func newHandovers(st *fsStore, log *slog.Logger, now func() time.Time) *handovers {
	return &handovers{fs: st, root: st.root, log: log, now: now, settled: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// add registers a handover and wakes the runner.
func (hs *handovers) add(h *handover) {
	h.added = hs.now()
	hs.mu.Lock()
	hs.list = append(hs.list, h)
	hs.n.Store(int32(len(hs.list)))
	hs.mu.Unlock()
	select {
	case hs.kick <- struct{}{}:
	default:
	}
}

// blocking returns the first pending handover a write of (db, key) by
// owner must wait for, and the channel closed when one completes.
func (hs *handovers) blocking(db, key, owner string) (*handover, <-chan struct{}) {
	if hs == nil || hs.n.Load() == 0 {
		return nil, nil
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range hs.list {
		if h.atStake(db, key, owner) {
			return h, hs.settled
		}
	}
	return nil, nil
}

// done removes a completed handover and wakes the writes waiting.
func (hs *handovers) done(h *handover) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for i, x := range hs.list {
		if x == h {
			hs.list = append(hs.list[:i], hs.list[i+1:]...)
			break
		}
	}
	hs.n.Store(int32(len(hs.list)))
	hs.wakeLocked()
}

// wakeLocked wakes the writes waiting for a handover, to look at the
// pending ones again. The caller holds mu.
func (hs *handovers) wakeLocked() {
	close(hs.settled)
	hs.settled = make(chan struct{})
}

// health is why a pending handover cannot be done by retrying: its log
// is damaged, so its entities answer 503 until an operator restores or
// moves it (README.md, "Storage and security"). nil otherwise.
func (hs *handovers) health() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range hs.list {
		if err := h.damage(); err != nil {
			return fmt.Errorf("handover of worker %q's write-ahead log: %w", h.worker, err)
		}
	}
	return nil
}

// damage is why handover h cannot be done by retrying (its log is
// damaged), nil otherwise.
func (hs *handovers) damage(h *handover) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return h.damage()
}

// damage is h's last error when it says the log is damaged, nil
// otherwise. The handovers' mu must be held.
func (h *handover) damage() error {
	if errors.Is(h.err, errWALDamaged) {
		return h.err
	}
	return nil
}

// awaiting returns the workers whose logs a live process holds and that
// are awaited (scan): nothing they may have written can be read before
// they subscribe. nil for no handovers.
func (hs *handovers) awaiting() []string {
	if hs == nil {
		return nil
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var ids []string
	for _, h := range hs.list {
		if h.kind == hoAwait {
			ids = append(ids, h.worker)
		}
	}
	return ids
}

// pending returns the handovers not yet done.
func (hs *handovers) pending() []*handover {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]*handover(nil), hs.list...)
}

// scan registers, at the main worker's start, every log under the
// storage root but local's (the in-process worker's, applied when it
// opened): the live log of a worker whose process is gone is taken
// over, one a live process holds is awaited, and claimed directories
// are applied. The workers that owned their entities are unknown, so
// every entity waits for them.
func (hs *handovers) scan(local string, await time.Duration) error {
	entries, err := os.ReadDir(filepath.Join(hs.root, walDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scan write-ahead logs: %w", err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		id, _, _ := strings.Cut(e.Name(), walTakenInfix)
		if !e.IsDir() || id == local || seen[id] || validateDBName(id) != nil {
			continue
		}
		seen[id] = true
		gen, live, err := logOwner(walLogDir(hs.root, id))
		switch {
		case err == nil && live:
			hs.add(&handover{worker: id, kind: hoAwait, gen: gen, deadline: hs.now().Add(await)})
		case err == nil || errors.Is(err, os.ErrNotExist):
			hs.add(&handover{worker: id, kind: hoTakeover, claim: claimDead})
		default:
			return fmt.Errorf("scan write-ahead log of worker %q: %w", id, err)
		}
	}
	return nil
}

// takeOverDead does at once the takeovers scan registered for logs whose
// process is gone: they need no worker, and the writes a crash left open
// are settled through the router (which waits for every handover) before
// anything serves, when the runner does not run yet. One that fails stays
// for the runner.
func (hs *handovers) takeOverDead(ctx context.Context, r handoverRouter) {
	for _, h := range hs.pending() {
		if h.kind == hoTakeover && hs.takeOver(ctx, r, h, func(string) {}) == nil {
			hs.done(h)
		}
	}
}

// handoverRouter is what the runner needs of the router.
type handoverRouter interface {
	// stateOf returns worker id's registration and its state (nil and
	// stateOut if none).
	stateOf(id string) (*workerConn, workerState)
	// registered returns worker id's connection, nil if none.
	registered(id string) *workerConn
	// call sends op to worker c.
	call(ctx context.Context, c *workerConn, owner bool, op *pb.EntityOp) (*pb.WorkerResponse, error)
}

// run settles the pending handovers until ctx ends: each is tried in
// turn, again after handoverRetry while it fails. forget makes a worker
// whose log is taken over subscribe again (and so reopen its log).
func (hs *handovers) run(ctx context.Context, r handoverRouter, forget func(id string)) {
	t := time.NewTicker(handoverRetry)
	defer t.Stop()
	for {
		for _, h := range hs.pending() {
			if ctx.Err() != nil {
				return
			}
			if err := hs.settle(ctx, r, h, forget); err != nil {
				hs.mu.Lock()
				wasDamaged := h.damage() != nil
				h.err = err
				if !wasDamaged && h.damage() != nil {
					// Writes waiting for h learn at once that waiting
					// cannot mend it (router.target).
					hs.wakeLocked()
				}
				hs.mu.Unlock()
				if h.failures++; h.failures == 1 || h.failures%40 == 0 {
					hs.log.Warn("write-ahead log handover not done yet; writes of its entities wait", attrWorker, h.worker,
						"attempts", h.failures, attrErr, err)
				}
				continue
			}
			hs.done(h)
		}
		select {
		case <-ctx.Done():
			return
		case <-hs.kick:
		case <-t.C:
		}
	}
}

// settle tries one handover once. A worker renewing its subscription
// is waited for (the router takes it out of rotation, and registers its
// log's takeover, if its renewal lapses).
func (hs *handovers) settle(ctx context.Context, r handoverRouter, h *handover, forget func(string)) error {
	if h.kind == hoTakeover {
		return hs.takeOver(ctx, r, h, forget)
	}
	c, state := r.stateOf(h.worker)
	switch {
	case state == stateAvailable:
		return hs.checkpoint(ctx, r, c, h)
	case state == stateRenewing:
		return fmt.Errorf("waiting for worker %q to finish renewing its subscription", h.worker)
	case h.kind == hoAwait && hs.now().Before(h.deadline):
		return fmt.Errorf("waiting for worker %q, whose process holds its log, to subscribe", h.worker)
	case h.kind == hoAwait:
		hs.toTakeover(h, c)
	default:
		// A checkpoint whose worker left the rotation: the takeover of
		// its log registered then fences whatever registration it has.
		hs.toTakeover(h, nil)
	}
	return hs.takeOver(ctx, r, h, forget)
}

// toTakeover turns a handover whose worker is gone (or never came) into
// a takeover that fences the generation it knew.
func (hs *handovers) toTakeover(h *handover, conn *workerConn) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h.kind, h.claim, h.conn = hoTakeover, claimGen, conn
}

// checkpoint asks a live worker to checkpoint its log, once the writes
// routed to it before the handover have ended, then applies any log
// directory of it claimed earlier.
func (hs *handovers) checkpoint(ctx context.Context, r handoverRouter, c *workerConn, h *handover) error {
	if !c.writes.drained(h.drain) {
		return fmt.Errorf("worker %q still has writes in flight from before the handover", h.worker)
	}
	cctx, cancel := context.WithTimeout(ctx, checkpointCallTimeout)
	defer cancel()
	_, err := r.call(cctx, c, true, &pb.EntityOp{Operation: pb.Operation_CHECKPOINT})
	if errors.Is(err, errWALTaken) {
		// Its log was claimed meanwhile: what it held is in a claimed
		// directory, applied below.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint of worker %q: %w", h.worker, err)
	}
	_, err = takeOverLog(ctx, hs.fs, h.worker, claimNone, 0, hs.log)
	return err
}

// takeOver claims (as h allows), applies and cuts a worker's log; the
// worker, if it still runs, must subscribe again, which reopens its log.
func (hs *handovers) takeOver(ctx context.Context, r handoverRouter, h *handover, forget func(string)) error {
	if h.conn != nil && r.registered(h.worker) == h.conn {
		forget(h.worker)
	}
	n, err := takeOverLog(ctx, hs.fs, h.worker, h.claim, h.gen, hs.log)
	if err != nil {
		return err
	}
	// The duration is the handover's, every attempt included: how long
	// writes of its entities may have waited.
	hs.log.Info("write-ahead log handover done", attrWorker, h.worker, "files_written", n,
		"attempts", h.failures+1, attrDurationMS, durationMS(hs.now().Sub(h.added)))
	return nil
}

// writeTracker counts a worker's writes in flight by write generation,
// so that a checkpoint handover can wait for those routed before it.
type writeTracker struct {
	mu     sync.Mutex
	gen    uint64
	counts map[uint64]int
}

// begin counts one write in the current generation; the returned
// function ends it.
func (t *writeTracker) begin() func() {
	t.mu.Lock()
	g := t.gen
	if t.counts == nil {
		t.counts = map[uint64]int{}
	}
	t.counts[g]++
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		if t.counts[g]--; t.counts[g] == 0 {
			delete(t.counts, g)
		}
		t.mu.Unlock()
	}
}

// bump starts a new generation and returns it: writes counted from now
// on are not waited for by a handover made now.
func (t *writeTracker) bump() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	return t.gen
}

// drained reports whether no write of a generation before g is in
// flight.
func (t *writeTracker) drained(g uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for x := range t.counts {
		if x < g {
			return false
		}
	}
	return true
}
