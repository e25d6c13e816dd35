package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// Worker statuses shown by GET /admin/workers.
const (
	statusAvailable   = "Available"
	statusUnavailable = "Unavailable"
)

// router is the main worker's data path: it picks the processing worker
// for each entity and calls it (ARCHITECTURE.md "Processing workers
// and routing"). It is safe for concurrent use.
//
// Placement is rendezvous hashing of (database, key) over the workers in
// rotation (available or renewing), so every entity has one owner whose
// cache stays warm without per-entity state. The routing epoch changes
// whenever that set changes (a renewal keeps it); every call carries it,
// and a worker that sees a newer epoch than its cache's drops the cache
// (proc.go), so an entity whose owner changed and changed back is never
// served from an old cache entry.
type router struct {
	log *slog.Logger
	now func() time.Time
	// saturated is the in-flight count at which an owner is passed over
	// for the least-loaded worker; 0 disables the fallback.
	saturated int64

	mu      sync.RWMutex
	workers map[string]*workerConn
	// conns holds the same workers as workers, for candidatesLocked,
	// which runs on every request: walking a slice skips a map
	// iterator's set-up (its random start). Guarded by mu; relist
	// rebuilds it.
	conns []*workerConn
	epoch atomic.Uint64
	// inProcess is set once an in-process worker (no close) was added:
	// only then may cachedRead answer a read.
	inProcess atomic.Bool

	// writes serialises the writes of each entity that pass through this
	// main worker (the single entry point), so that ProcessAll can check
	// the preconditions of several entities and write them with no other
	// write of those entities in between.
	writes keyLocks

	// written, if not nil, hears the outcome of every write routed,
	// while the entity's write lock is still held, so in the order of
	// the writes of each entity: the catalog keeps its key index by it.
	written func(db, key string, deleted bool, err error)

	// ho are the handovers of the workers' write-ahead logs when
	// entities change owner (handover.go); nil when workers keep no log
	// (S3, -wal=false).
	ho *handovers

	// feed logs every write in the change feed (feed.go); nil keeps no
	// feed. Set before the router serves.
	feed *changeFeed

	// awaitWorkersUntil is, for a main worker that just started, when a
	// call stops waiting for a worker to come into rotation when none
	// is (awaitWorker); zero: it never waits. Set before the router
	// serves.
	awaitWorkersUntil time.Time
	// inRotation is closed, and replaced, whenever a worker comes into
	// rotation (joined): the calls that wait for one (awaitWorker) wake
	// on it rather than polling. Guarded by mu.
	inRotation chan struct{}
	// renewals is closed, and replaced, whenever a renewing registration
	// stops renewing (setStateLocked): its first heartbeat, leaving the
	// rotation, or another Subscribe replacing it. The calls waiting for
	// a renewal (awaitRenewal) wake on it rather than polling. Guarded
	// by mu.
	renewals chan struct{}
}

// workerConn is one processing worker as the router sees it.
type workerConn struct {
	id    string
	keyID string
	tags  map[string]string
	proc  processingWorker
	// close releases the connection of a remote worker; nil for the
	// in-process worker.
	close func()
	// stats reports cache counters; for remote workers the latest
	// heartbeat's.
	stats func() cacheStats

	inFlight atomic.Int64
	// share is the share of the main worker's read budget that reads of
	// the worker's entities may hold while they wait for its answers
	// (readShare); made by the first such read.
	share atomic.Pointer[workerShare]
	// The fields below are guarded by router.mu. A renewing
	// registration's lastSeen is its Subscribe's time.
	lastSeen  time.Time
	state     workerState
	expires   time.Time // zero: never (the in-process worker)
	heartbeat cacheStats
	// identity is SHA-256 of a remote worker's certificate fingerprint
	// and public key: a Subscribe with the same ID and another identity
	// may not replace it while it is live. Zero for the in-process worker.
	identity [32]byte
	// writes counts the writes in flight to the worker, for handovers;
	// a renewal's registration shares its predecessor's (the same
	// process and log).
	writes *writeTracker
}

// workerState is where a worker's registration stands in the rotation.
type workerState uint8

const (
	// stateOut: out of rotation. A new registration until its first
	// heartbeat (which proves it installed the subscription's keys), or
	// a worker that missed its heartbeats, failed or let its renewal
	// lapse. It owns no entity and gets no call.
	stateOut workerState = iota
	// stateAvailable: in rotation, called.
	stateAvailable
	// stateRenewing: the registration of a renewal (the same process
	// and log as the one it replaced), from its Subscribe until its
	// first heartbeat, renewalAwait at most. It keeps the entities it
	// owned, so the placement and the epoch do not change; calls for
	// them wait for the heartbeat (awaitRenewal), and so do the
	// handovers of its log. Shown as Available.
	stateRenewing
)

// placed reports whether c is in rotation: it owns entities. The caller
// holds router.mu.
func (c *workerConn) placed() bool { return c.state != stateOut }

// walGenTag is the tag in which a worker reports the generation of its
// write-ahead log when it subscribes: a takeover fences that generation
// and no newer one.
const walGenTag = "wal_gen"

// walGen is the log generation a worker reported, 0 if none.
func (c *workerConn) walGen() uint64 {
	g, _ := strconv.ParseUint(c.tags[walGenTag], 10, 64)
	return g
}

// newRouter returns a router with no workers that passes an owner with
// saturated calls in flight over for reads (0: never), reports the
// outcome of every write to written (nil for none) and hands entities
// over between workers' logs through ho (nil: workers keep no log).
func newRouter(log *slog.Logger, now func() time.Time, saturated int64, written func(db, key string, deleted bool, err error),
	ho *handovers) *router {
	r := &router{log: log, now: now, saturated: saturated, written: written, ho: ho, workers: map[string]*workerConn{},
		inRotation: make(chan struct{}), renewals: make(chan struct{})}
	r.bumpEpoch()
	return r
}

// bumpEpoch moves to a new routing epoch. Epochs are wall-clock based and
// strictly increasing so that they also increase across a main worker
// restart, which workers' caches outlive.
func (r *router) bumpEpoch() uint64 {
	for {
		old := r.epoch.Load()
		next := max(old+1, uint64(r.now().UnixNano()))
		if r.epoch.CompareAndSwap(old, next) {
			return next
		}
	}
}

// add registers (or replaces) a worker. A remote worker (one with close)
// starts out of rotation: it gets traffic from its first heartbeat on,
// which proves it has installed the keys of this subscription. The
// in-process worker is available at once. A renewal of a worker in
// rotation (the same process, key and log generation) is renewing until
// its first heartbeat: it keeps its entities. Replacing a worker closes
// the old connection: at once, or once its calls are answered when the
// same process renewed its subscription.
func (r *router) add(c *workerConn) {
	c.state, c.lastSeen = stateOut, r.now()
	if c.close == nil {
		c.state = stateAvailable
		r.inProcess.Store(true)
	}
	r.mu.Lock()
	before := r.placedLocked()
	old := r.workers[c.id]
	renewal := old != nil && old.close != nil && old.identity == c.identity && old.walGen() == c.walGen()
	switch {
	case renewal && old.placed():
		// The same process renewed its subscription: its log is live and
		// its own, and who owns what does not change. Its calls wait for
		// its first heartbeat; a renewal of a renewal keeps the first
		// one's time, so the wait stays bounded.
		c.state, c.heartbeat, c.writes = stateRenewing, old.heartbeat, old.writes
		c.share.Store(old.share.Load()) // the same process's calls
		if old.state == stateRenewing {
			c.lastSeen = old.lastSeen
		}
	case renewal:
		// Out of rotation already (its log's takeover, if any, is
		// registered): it joins again with its first heartbeat.
	case old != nil:
		// The process it replaces left: its log is taken over.
		r.handOver(old, hoTakeover, before)
	}
	if c.writes == nil {
		c.writes = &writeTracker{}
	}
	if old != nil {
		r.setStateLocked(old, stateOut) // replaced: calls waiting on it look again
	}
	r.workers[c.id] = c
	r.relist()
	if c.state == stateAvailable || !renewal && old != nil && old.placed() {
		r.bumpEpoch()
	}
	if c.state == stateAvailable {
		r.joined(c, before)
	}
	r.mu.Unlock()
	switch {
	case old == nil || old.close == nil:
	case renewal:
		// The same process answers the calls already sent on the old
		// connection, under the subscription they were signed for;
		// closing it now would cancel them, and a write cancelled on
		// the way has an unknown outcome (503).
		go closeWhenIdle(old, renewalDrain)
	default:
		old.close()
	}
	r.log.Info("worker registered", attrWorker, c.id, attrAddr, c.tags["grpc_addr"])
}

// renewalDrain bounds how long the connection of a renewed registration
// stays open for the calls already sent on it: a call's own deadline is
// shorter.
const renewalDrain = 30 * time.Second

// closeWhenIdle closes c once no call is in flight on it, or after limit.
// A call that chose c just before it was replaced counts itself in flight
// a moment later, hence the pause before the first look.
func closeWhenIdle(c *workerConn, limit time.Duration) {
	const step = 50 * time.Millisecond
	for waited := step; ; waited += step {
		time.Sleep(step)
		if c.inFlight.Load() == 0 || waited >= limit {
			break
		}
	}
	c.close()
}

// seen records a heartbeat; it reports false for an unknown worker or an
// expired subscription, which must subscribe again.
func (r *router) seen(id string, stats cacheStats) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.workers[id]
	if c == nil || !c.expires.IsZero() && r.now().After(c.expires) {
		return false
	}
	c.lastSeen, c.heartbeat = r.now(), stats
	switch c.state {
	case stateRenewing:
		// Its entities were its own all along: nothing moves.
		r.setStateLocked(c, stateAvailable)
	case stateOut:
		before := r.placedLocked()
		r.setStateLocked(c, stateAvailable)
		r.bumpEpoch()
		r.joined(c, before)
		r.log.Info("worker available", attrWorker, id)
	}
	return true
}

// setStateLocked moves c to state s, waking the calls waiting for c's
// renewal (renewals) when c stops renewing. mu must be held for writing.
func (r *router) setStateLocked(c *workerConn, s workerState) {
	if c.state == stateRenewing && s != stateRenewing {
		close(r.renewals)
		r.renewals = make(chan struct{})
	}
	c.state = s
}

// relist rebuilds conns from workers after a change. mu must be held
// for writing.
func (r *router) relist() {
	r.conns = slices.Collect(maps.Values(r.workers))
}

// placedLocked returns the IDs of the workers in rotation: the owners
// of the entities. The caller holds mu.
func (r *router) placedLocked() []string {
	ids := make([]string, 0, len(r.workers))
	for id, c := range r.workers {
		if c.placed() {
			ids = append(ids, id)
		}
	}
	return ids
}

// joined registers the handovers of a worker joining the ones in
// rotation (before): each of them may lose entities to it, so each
// checkpoints its log, after the writes routed to it so far; and wakes
// the calls waiting for a worker in rotation. The caller holds mu for
// writing.
func (r *router) joined(c *workerConn, before []string) {
	close(r.inRotation)
	r.inRotation = make(chan struct{})
	for _, id := range before {
		if id != c.id {
			r.handOver(r.workers[id], hoCheckpoint, before)
		}
	}
}

// renewalAwait is how long a renewing registration waits for its first
// heartbeat before it leaves the rotation and its log is taken over: the
// heartbeats it may miss.
const renewalAwait = heartbeatMisses * heartbeatEvery

// renewalLapsed is why a renewing registration left the rotation.
var renewalLapsed = fmt.Sprintf("renewed its subscription and sent no heartbeat within %v", renewalAwait)

// awaitRenewal waits while c is renewing: until its first heartbeat, or
// until renewalAwait has passed since its Subscribe, when it leaves the
// rotation (its log is taken over and the epoch moves). It reports
// whether c is available then; an error only if ctx ends first. It
// wakes when a renewal ends (renewals) and at c's deadline, with one
// timer for the whole wait: a call is answered as soon as the heartbeat
// comes, and the calls waiting cost nothing meanwhile.
func (r *router) awaitRenewal(ctx context.Context, c *workerConn) (bool, error) {
	var deadline *time.Timer
	for {
		r.mu.RLock()
		state, since, changed := c.state, c.lastSeen, r.renewals
		r.mu.RUnlock()
		if state != stateRenewing {
			return state == stateAvailable, nil
		}
		left := renewalAwait - r.now().Sub(since)
		if left <= 0 {
			r.lapse(c)
			continue
		}
		if deadline == nil {
			deadline = time.NewTimer(left)
			defer deadline.Stop()
		} else {
			deadline.Reset(left) // no stale tick: timers since Go 1.23
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("wait for worker %q renewing its subscription: %w", c.id, ctx.Err())
		case <-changed:
		case <-deadline.C:
		}
	}
}

// lapse takes c out of the rotation if it is still its worker's
// registration, still renewing, and renewalAwait has passed since its
// Subscribe. Checked under mu for writing, so a heartbeat that came
// since the caller looked keeps it in.
func (r *router) lapse(c *workerConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers[c.id] == c && c.state == stateRenewing && c.renewalOverdue(r.now()) {
		r.unavailableLocked(c, renewalLapsed)
	}
}

// workersAwaitAtStart is how long after a main worker's start its calls
// wait for a worker to come into rotation when none is, instead of
// answering 503 at once: its workers, which outlived its restart,
// reconnect within a second (subscribeReconnect) and subscribe, all at
// about the same moment, while the first requests have already come.
const workersAwaitAtStart = 3 * time.Second

// awaitWorker waits, until awaitWorkersUntil, for a worker to be in
// rotation; it reports whether one is (false at once when the time has
// passed or ctx ended). It wakes when a worker joins (inRotation).
func (r *router) awaitWorker(ctx context.Context) bool {
	wait := time.Until(r.awaitWorkersUntil)
	if wait <= 0 {
		return false
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		r.mu.RLock()
		placed := slices.ContainsFunc(r.conns, (*workerConn).placed)
		changed := r.inRotation
		r.mu.RUnlock()
		if placed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-changed:
		}
	}
}

// handOver registers a handover of worker c's log, whose entities were
// c's among the workers from. The caller holds mu.
func (r *router) handOver(c *workerConn, kind handoverKind, from []string) {
	if r.ho == nil {
		return
	}
	h := &handover{worker: c.id, kind: kind, from: from, gen: c.walGen(), claim: claimGen}
	if kind == hoCheckpoint {
		h.drain = c.writes.bump()
	}
	if kind == hoTakeover && r.workers[c.id] == c && c.close != nil {
		h.conn = c // still registered, perhaps still running
	}
	r.ho.add(h)
}

// registered returns worker id's connection, nil if none.
func (r *router) registered(id string) *workerConn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.workers[id]
}

// stateOf returns worker id's registration and its state: nil and
// stateOut if none.
func (r *router) stateOf(id string) (*workerConn, workerState) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c := r.workers[id]; c != nil {
		return c, c.state
	}
	return nil, stateOut
}

// liveElsewhere reports whether worker id is registered with another
// identity and has heartbeated within timeout: its ID is not free.
func (r *router) liveElsewhere(id string, identity [32]byte, timeout time.Duration) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := r.workers[id]
	return c != nil && c.identity != identity && r.now().Sub(c.lastSeen) <= timeout
}

// prune removes the remote workers silent for longer than gone (their
// token's life), so that registrations of workers that left do not pile
// up, and returns their IDs.
func (r *router) prune(gone time.Duration) []string {
	now := r.now()
	var ids []string
	var closers []func()
	r.mu.Lock()
	for id, c := range r.workers {
		if c.close != nil && now.Sub(c.lastSeen) > gone {
			if c.placed() {
				r.handOver(c, hoTakeover, r.placedLocked())
				r.bumpEpoch()
			}
			r.setStateLocked(c, stateOut) // calls waiting on it look again
			delete(r.workers, id)
			ids, closers = append(ids, id), append(closers, c.close)
		}
	}
	if len(ids) > 0 {
		r.relist()
	}
	r.mu.Unlock()
	for i, id := range ids {
		closers[i]()
		r.log.Info("worker removed", attrWorker, id, "reason", "silent for longer than its token's life")
	}
	return ids
}

// markUnavailable takes a worker out of rotation (missed heartbeats,
// transport failure or expired token).
func (r *router) markUnavailable(id, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.workers[id]; c != nil {
		r.unavailableLocked(c, why)
	}
}

// markConnUnavailable is markUnavailable of connection c only: a call
// that failed on a connection since replaced by a new subscription says
// nothing of the new one.
func (r *router) markConnUnavailable(c *workerConn, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers[c.id] == c {
		r.unavailableLocked(c, why)
	}
}

// unavailableLocked takes c out of rotation; its log is taken over
// before its entities are written elsewhere. The caller holds mu.
func (r *router) unavailableLocked(c *workerConn, why string) {
	if !c.placed() {
		return
	}
	before := r.placedLocked()
	r.setStateLocked(c, stateOut)
	r.bumpEpoch()
	r.handOver(c, hoTakeover, before)
	if rw, ok := c.proc.(*remoteWorker); ok {
		// Its calls under way may never be answered (a worker stopped
		// leaves its connection up until the keepalive closes it): they
		// fail now as lost, reads retried once its log is taken over.
		rw.link.reset()
	}
	r.log.Warn("worker unavailable", attrWorker, c.id, "reason", why)
}

// expire takes out of rotation every worker silent for longer than
// timeout or whose token has expired, and every renewal that sent no
// heartbeat within renewalAwait; the main worker runs it periodically.
func (r *router) expire(timeout time.Duration) {
	stale, lapsed := r.overdue(timeout)
	for _, c := range stale {
		r.retire(c, timeout) // unless a heartbeat came meanwhile
	}
	for _, c := range lapsed {
		r.lapse(c) // unless its first heartbeat came meanwhile
	}
}

// overdue is expire's look, under mu for reading, so that the periodic
// look, which mostly finds nothing, never holds up the calls being
// routed: the available workers silent for longer than timeout or
// whose token has expired, and the renewals past renewalAwait. What it
// finds is only a candidate: retire and lapse look again under mu for
// writing.
func (r *router) overdue(timeout time.Duration) (stale, lapsed []*workerConn) {
	now := r.now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.workers {
		switch {
		case c.close == nil:
		case c.state == stateAvailable && c.silent(now, timeout):
			stale = append(stale, c)
		case c.state == stateRenewing && c.renewalOverdue(now):
			lapsed = append(lapsed, c)
		}
	}
	return stale, lapsed
}

// retire takes c out of the rotation if it is still its worker's
// registration, available, and silent for longer than timeout (or its
// token has expired) by a fresh look at the clock. Checked under mu for
// writing, as lapse checks: a heartbeat that came since overdue looked
// keeps it in, where taking it out would hand its entities over for
// nothing.
func (r *router) retire(c *workerConn, timeout time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers[c.id] == c && c.state == stateAvailable && c.silent(r.now(), timeout) {
		r.unavailableLocked(c, "missed heartbeats or expired token")
	}
}

// silent reports whether c sent no heartbeat for longer than timeout
// before now, or its token has expired by now. The caller holds
// router.mu.
func (c *workerConn) silent(now time.Time, timeout time.Duration) bool {
	return now.Sub(c.lastSeen) > timeout || !c.expires.IsZero() && now.After(c.expires)
}

// renewalOverdue reports whether c, renewing, sent no heartbeat within
// renewalAwait before now. The caller holds router.mu.
func (c *workerConn) renewalOverdue(now time.Time) bool {
	return now.Sub(c.lastSeen) >= renewalAwait
}

// candidates returns the workers in rotation in rendezvous order for
// (db, key): the owner first.
func (r *router) candidates(db, key string) []*workerConn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.candidatesLocked(make([]*workerConn, 0, len(r.workers)), db, key)
}

// candidatesLocked is candidates with mu held, appended to out (a
// caller's buffer on its stack, so that routing a call allocates nothing).
func (r *router) candidatesLocked(out []*workerConn, db, key string) []*workerConn {
	for _, c := range r.conns {
		if c.state != stateOut {
			out = append(out, c)
		}
	}
	sortRendezvous(out, func(c *workerConn) string { return c.id }, db, key)
	return out
}

// rendezvousOrder returns the indexes of ids sorted by descending
// rendezvous score of (db, key): the first is the owner. Only the keys of
// a leaving worker move, and a joining worker takes ~1/N of the keys.
func rendezvousOrder(db, key string, ids []string) []int {
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	sortRendezvous(order, func(i int) string { return ids[i] }, db, key)
	return order
}

// sortRendezvous sorts the workers of list, whose IDs id gives, by
// descending rendezvous score of (db, key), ties by ID. Lists are short
// (the workers of one cluster): the scores of up to 16 stay on the stack
// and an insertion sort orders them, so a call allocates nothing.
func sortRendezvous[T any](list []T, id func(T) string, db, key string) {
	if len(list) < 2 {
		return // one worker (-role=all, main + 1) owns every key: no hash
	}
	var stack [16]uint64
	scores := stack[:0]
	if len(list) > len(stack) {
		scores = make([]uint64, 0, len(list))
	}
	for _, w := range list {
		scores = append(scores, rendezvousScore(id(w), db, key))
	}
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && rendezvousBefore(scores[j], id(list[j]), scores[j-1], id(list[j-1])); j-- {
			list[j], list[j-1] = list[j-1], list[j]
			scores[j], scores[j-1] = scores[j-1], scores[j]
		}
	}
}

// rendezvousBefore reports whether score a of worker idA ranks before
// score b of worker idB.
func rendezvousBefore(a uint64, idA string, b uint64, idB string) bool {
	if a != b {
		return a > b
	}
	return idA < idB
}

// rendezvousScore is worker id's score for (db, key): the first 8 bytes of
// SHA-256(id 0 db 0 key), big-endian.
func rendezvousScore(id, db, key string) uint64 {
	var stack [256]byte
	b := append(append(append(append(append(stack[:0], id...), 0), db...), 0), key...)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// pick chooses the worker for a call: the owner, unless it is saturated
// and another available candidate has fewer calls in flight. The caller
// holds mu.
func (r *router) pick(cands []*workerConn) *workerConn {
	owner := cands[0]
	if r.saturated <= 0 || owner.inFlight.Load() < r.saturated {
		return owner
	}
	best := owner
	for _, c := range cands[1:] {
		if c.state == stateAvailable && c.inFlight.Load() < best.inFlight.Load() {
			best = c
		}
	}
	return best
}

// processor runs one entity operation: the router, as the REST and gRPC
// handlers of the main worker see it. The op is built once by the handler
// and reaches the worker unchanged.
type processor interface {
	Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error)
}

// cachedReader is a processor that may answer the owner's plain read of
// an entity from an in-process worker's cache without building a call
// (the router: cachedRead). into, when not nil, is a zero response that
// receives the answer, so that the caller's memory holds it; false means
// the read goes through Process, and into is left as it was.
type cachedReader interface {
	cachedRead(ctx context.Context, db, key string, at readPlace, into *pb.WorkerResponse) (*pb.WorkerResponse, bool)
}

// Process routes one entity operation to its worker. Writes always go to
// the owner, whose write-through cache therefore never holds an old value;
// only a read may go to a less loaded worker, which then reads storage and
// leaves its cache alone. A call that fails at the transport level is
// retried once on the next worker. It implements processor.
func (r *router) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if op.GetOperation() != pb.Operation_GET {
		unlock, err := r.writes.lock(ctx, cacheKey(op.GetDatabaseName(), op.GetEntityKey()))
		if err != nil {
			return nil, fmt.Errorf("wait for entity write lock: %w", err)
		}
		defer unlock()
	}
	return r.route(ctx, op)
}

// ProcessAll runs writes of distinct entities as one unit: it takes the
// write lock of every entity, in key order so that two batches cannot
// deadlock, then runs processAll. No other write of those entities through
// this main worker can come between the checks and the writes. It
// implements batchProcessor.
func (r *router) ProcessAll(ctx context.Context, ops []*pb.EntityOp) ([]*pb.WorkerResponse, error) {
	keys := make([]string, 0, len(ops))
	for _, op := range ops {
		keys = append(keys, cacheKey(op.GetDatabaseName(), op.GetEntityKey()))
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		unlock, err := r.writes.lock(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("wait for entity write lock: %w", err)
		}
		defer unlock()
	}
	return processAll(ctx, processorFunc(r.route), ops)
}

// batchProcessor is a processor that can run several writes as one unit.
type batchProcessor interface {
	ProcessAll(ctx context.Context, ops []*pb.EntityOp) ([]*pb.WorkerResponse, error)
}

// processorFunc adapts a function to processor.
type processorFunc func(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error)

// Process calls f.
func (f processorFunc) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	return f(ctx, op)
}

// processAll checks the preconditions of every request against a fresh
// read of its entity and, only if all of them hold, runs the requests in
// order; each write carries its preconditions again, so its owner checks
// them once more atomically with the write. The first failure stops the
// batch, naming the entity; the writes before it stay done.
func processAll(ctx context.Context, p processor, ops []*pb.EntityOp) ([]*pb.WorkerResponse, error) {
	for _, op := range ops {
		if !hasPreconditions(op) {
			continue
		}
		var cur current
		resp, err := p.Process(ctx, &pb.EntityOp{DatabaseName: op.GetDatabaseName(),
			EntityKey: op.GetEntityKey(), Operation: pb.Operation_GET})
		switch {
		case errors.Is(err, errNotFound):
		case err != nil:
			return nil, fmt.Errorf("check entity %q: %w", op.GetEntityKey(), err)
		default:
			cur = current{exists: true, version: resp.GetVersion()}
		}
		if err := checkPreconditions(op, cur); err != nil {
			return nil, fmt.Errorf("entity %q: %w", op.GetEntityKey(), err)
		}
	}
	out := make([]*pb.WorkerResponse, 0, len(ops))
	for _, op := range ops {
		resp, err := p.Process(ctx, op)
		if err != nil {
			return nil, fmt.Errorf("entity %q: %w", op.GetEntityKey(), err)
		}
		out = append(out, resp)
	}
	return out, nil
}

// route sends one operation to its worker (see send) and reports the
// outcome of a write to r.written.
func (r *router) route(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	var t *changeTicket
	if changesEntity(op.GetOperation()) && r.feed != nil {
		var err error
		if t, err = r.feed.begin(ctx, op.GetDatabaseName(), op.GetEntityKey(), op.GetOperation()); err != nil {
			return nil, err
		}
	}
	if t != nil {
		// The owner's call is not cut when the client goes: its outcome
		// must be known to the feed.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeCallWait)
		defer cancel()
		ctx = wctx
	}
	resp, err := r.send(ctx, op)
	if t != nil {
		err = r.feed.finish(ctx, t, resp, err)
	}
	if kind := op.GetOperation(); changesEntity(kind) && r.written != nil {
		r.written(op.GetDatabaseName(), op.GetEntityKey(), kind == pb.Operation_DELETE, err)
	}
	return resp, err
}

// changesEntity reports whether an operation of kind writes or removes
// the entity itself (the key index hears of it): the reads and the
// destruction of versions do not.
func changesEntity(kind pb.Operation) bool {
	switch kind {
	case pb.Operation_PUT, pb.Operation_PATCH, pb.Operation_DELETE, pb.Operation_UNDELETE:
		return true
	}
	return false
}

// writeCallWait bounds a write's call of its owner when the change feed
// logs it (as the REST write timeout bounds the request).
const writeCallWait = restWriteTimeout

// currentVersion reads the ETag of entity key of db from its owner once
// a handover of its log is done (as a write would), found false when it
// does not exist: the change feed's settlement of a write whose outcome
// it does not know.
func (r *router) currentVersion(ctx context.Context, db, key string) (string, bool, error) {
	resp, err := r.sendAs(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET}, true)
	switch {
	case errors.Is(err, errNotFound):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	return etagOf(resp.GetVersion()), true, nil
}

// send sends one operation to its worker (see Process).
func (r *router) send(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	return r.sendAs(ctx, op, op.GetOperation() != pb.Operation_GET)
}

// sendAs is send; write routes op as a write (to the owner, after a
// handover of the entity), whatever its operation.
func (r *router) sendAs(ctx context.Context, op *pb.EntityOp, write bool) (*pb.WorkerResponse, error) {
	return r.sendAt(ctx, op, write, readPlace{})
}

// sendAt is sendAs of a read placed at at by readShare (the zero
// readPlace: not placed). A retry ranks the workers anew: the failed one
// left the rotation.
func (r *router) sendAt(ctx context.Context, op *pb.EntityOp, write bool, at readPlace) (*pb.WorkerResponse, error) {
	t, err := r.target(ctx, op, write, at)
	if err != nil {
		return nil, err
	}
	resp, err := r.callTarget(ctx, t, op)
	if !errors.Is(err, errTransport) {
		return resp, err
	}
	r.markConnUnavailable(t.c, err.Error())
	if errors.Is(err, errCallLost) {
		if op.GetOperation() != pb.Operation_GET {
			// The worker may have written it: run again, a patch would
			// apply twice and a precondition would fail on the write's
			// own result. Its outcome is unknown (the change feed
			// settles it).
			return nil, err
		}
		// A read wrote nothing: if its retry fails too, it is a worker
		// unreachable, not a write that may have been applied.
		err = fmt.Errorf("%v: %w", err, errTransport)
	}
	// The failed worker is out of rotation now, so the first candidate
	// is the owner under the new epoch.
	if t, err2 := r.target(ctx, op, write, readPlace{}); errors.Is(err2, errHandingOver) {
		// The client is told the entity is being handed over, not that
		// nothing was written: the lost call's outcome is unknown.
		return nil, fmt.Errorf("%w: %v: %w", errHandingOverLost, err2, err)
	} else if errors.Is(err2, errHandoverDamaged) {
		return nil, fmt.Errorf("%w: %v: %w", errHandoverDamagedLost, err2, err)
	} else if err2 != nil {
		return nil, fmt.Errorf("%w: %w", err2, err)
	} else {
		return r.callTarget(ctx, t, op)
	}
}

// routeTarget is where one call goes: the worker, whether it is called
// as the owner, and the end of its count as a write in flight.
type routeTarget struct {
	c     *workerConn
	owner bool
	done  func()
}

// target picks the worker of op: the owner, or for a read without logs a
// less loaded worker when the owner is saturated. An owner renewing its
// subscription is waited for (awaitRenewal). A write of an entity
// whose previous owner's log is being handed over waits for the handover
// (at most handoverWait); a read of it is served as readTarget says. A
// read placed by readShare (at) skips ranking the workers while its
// placement holds (placedAt).
func (r *router) target(ctx context.Context, op *pb.EntityOp, write bool, at readPlace) (routeTarget, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	var timeout <-chan time.Time
	var buf [8]*workerConn
	for {
		r.mu.RLock()
		var cands []*workerConn
		if write {
			cands = r.candidatesLocked(buf[:0], db, key)
		} else {
			cands = r.placedAt(buf[:0], db, key, at)
		}
		if len(cands) == 0 {
			r.mu.RUnlock()
			if r.awaitWorker(ctx) {
				continue
			}
			return routeTarget{}, errNoWorker
		}
		if owner := cands[0]; owner.state == stateRenewing {
			r.mu.RUnlock()
			if _, err := r.awaitRenewal(ctx, owner); err != nil {
				return routeTarget{}, err
			}
			continue
		}
		h, settled := r.ho.blocking(db, key, cands[0].id)
		if !write {
			if t, ok := r.readTarget(cands, h); ok {
				r.mu.RUnlock()
				return t, nil
			}
		} else if h == nil {
			t := routeTarget{c: cands[0], owner: true, done: cands[0].writes.begin()}
			r.mu.RUnlock()
			return t, nil
		}
		r.mu.RUnlock()
		if err := r.ho.damage(h); err != nil {
			// Waiting cannot mend it: the operator must (README.md).
			return routeTarget{}, fmt.Errorf("entity %q of database %q: %w: %v", key, db, errHandoverDamaged, err)
		}
		if timeout == nil {
			tm := time.NewTimer(handoverWait)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return routeTarget{}, fmt.Errorf("wait for the handover of worker %q's log: %w", h.worker, ctx.Err())
		case <-timeout:
			return routeTarget{}, fmt.Errorf("entity %q of database %q waited %v for the handover of worker %q's log: %w",
				key, db, handoverWait, h.worker, errHandingOver)
		}
	}
}

// readTarget picks the worker of a read among cands (the owner first)
// while handover h (nil: none) is pending; false means wait for h.
// Without logs any less loaded worker reads the entity file. With logs
// only the owner holds the writes its log has not applied yet, so only
// the owner reads; during a checkpoint handover the old owner does
// (uncached), and during a takeover nobody until it is done. The caller
// holds mu.
func (r *router) readTarget(cands []*workerConn, h *handover) (routeTarget, bool) {
	switch {
	case r.ho == nil:
		first := r.pick(cands)
		return routeTarget{c: first, owner: first == cands[0], done: func() {}}, true
	case h == nil:
		return routeTarget{c: cands[0], owner: true, done: func() {}}, true
	case h.kind == hoCheckpoint:
		if c := r.workers[h.worker]; c != nil && c.state == stateAvailable {
			return routeTarget{c: c, done: func() {}}, true
		}
	}
	return routeTarget{}, false
}

// cachedRead answers the owner's plain read of entity key of db from the
// in-process worker's cache, when that worker is where Process would send
// the read, as its owner (no handover in the way, not passed over as
// saturated), and its cache holds the entity. The worker checks the read
// as it checks a call (worker.lookup: its master key, the names, the
// routing epoch); the read counts in flight as the router's calls do
// (the worker's own count, which only a remote worker's heartbeat
// reports, is left alone); the call's messages stay on the stack, and the
// answer goes in into when given.
// false: send the read through Process. It implements cachedReader.
// It picks its target through route's own steps (placedAt of at, where
// readShare placed the entity, the handover check, readTarget): a rule route adds outside them must be
// added here too.
func (r *router) cachedRead(ctx context.Context, db, key string, at readPlace, into *pb.WorkerResponse) (*pb.WorkerResponse, bool) {
	if !r.inProcess.Load() {
		return nil, false
	}
	var buf [8]*workerConn
	r.mu.RLock()
	cands := r.placedAt(buf[:0], db, key, at)
	var t routeTarget
	ok := len(cands) > 0
	if ok {
		h, _ := r.ho.blocking(db, key, cands[0].id)
		t, ok = r.readTarget(cands, h)
	}
	r.mu.RUnlock()
	if !ok {
		return nil, false
	}
	defer t.done()
	w, local := t.c.proc.(*worker)
	if !t.owner || !local {
		return nil, false
	}
	t.c.inFlight.Add(1)
	defer t.c.inFlight.Add(-1)
	op := pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET}
	req := pb.WorkerRequest{Op: &op, Epoch: r.epoch.Load(), Owner: true, RequestId: requestIDFrom(ctx)}
	e, ok := w.lookup(&req)
	if !ok {
		return nil, false
	}
	if into == nil {
		return e.response(), true
	}
	return e.answerIn(into), true
}

// readShare returns the share of the read budget of the owner of entity
// key of db, of capacity bytes (made on first use), or nil when it is
// the only worker in rotation: then it owns every entity, and a share
// would only bound reads that nobody else could serve; and where the
// entity was placed, for the read's call (readAt) not to rank the
// workers again. It implements readSharer.
func (r *router) readShare(db, key string, capacity int64) (*workerShare, readPlace) {
	var buf [8]*workerConn
	r.mu.RLock()
	cands := r.candidatesLocked(buf[:0], db, key)
	var at readPlace
	if len(cands) > 0 {
		at = readPlace{owner: cands[0], epoch: r.epoch.Load()}
	}
	r.mu.RUnlock()
	if len(cands) < 2 {
		return nil, at
	}
	owner := cands[0]
	if s := owner.share.Load(); s != nil {
		return s, at
	}
	owner.share.CompareAndSwap(nil, newWorkerShare(capacity))
	return owner.share.Load(), at
}

// readPlace is the owner of an entity under a routing epoch, as
// readShare found it. Under the same epoch the workers in rotation are
// the same, so the owner is too, unless its registration was replaced
// by a renewal (which keeps the epoch and takes the replaced one out of
// rotation); the zero readPlace places nothing.
type readPlace struct {
	owner *workerConn
	epoch uint64
}

// readAt is Process of a read whose entity readShare placed at at: its
// call goes where Process would send it, the owner not ranked again
// while at still holds (placedAt). It implements readSharer.
func (r *router) readAt(ctx context.Context, op *pb.EntityOp, at readPlace) (*pb.WorkerResponse, error) {
	if op.GetOperation() != pb.Operation_GET {
		return r.Process(ctx, op)
	}
	return r.sendAt(ctx, op, false, at)
}

// placedAt returns cands as candidatesLocked would, into out: only the
// owner at (read's placement) when at still holds and no other worker
// could be picked (pick: a saturated owner's reads without logs go to
// the least loaded), all of them ranked otherwise. The caller holds mu.
func (r *router) placedAt(out []*workerConn, db, key string, at readPlace) []*workerConn {
	if c := at.owner; c != nil && c.state != stateOut && at.epoch == r.epoch.Load() &&
		(r.ho != nil || r.saturated <= 0 || c.inFlight.Load() < r.saturated) {
		return append(out, c)
	}
	return r.candidatesLocked(out, db, key)
}

// callTarget sends op to t.
func (r *router) callTarget(ctx context.Context, t routeTarget, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	defer t.done()
	return r.call(ctx, t.c, t.owner, op)
}

// call sends op to worker c under the current epoch. The op travels as
// built by the handler; only the routing facts are added around it.
func (r *router) call(ctx context.Context, c *workerConn, owner bool, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	return c.proc.Process(ctx, &pb.WorkerRequest{Op: op, Epoch: r.epoch.Load(), Owner: owner,
		RequestId: requestIDFrom(ctx)})
}

// list returns the rows of GET /admin/workers, sorted by worker ID.
func (r *router) list() []workerInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]workerInfo, 0, len(r.workers))
	for _, c := range r.workers {
		status := statusUnavailable
		if c.placed() {
			status = statusAvailable
		}
		stats := c.heartbeat
		if c.stats != nil {
			stats = c.stats()
		}
		out = append(out, workerInfo{WorkerID: c.id, Status: status, KeyID: c.keyID, LastSeen: c.lastSeen.UTC(),
			Tags: c.tags, InFlight: c.inFlight.Load(), Cache: stats})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].WorkerID < out[j].WorkerID })
	return out
}

// touchLocal keeps the in-process worker's last_seen current: it needs no
// heartbeat because it shares the main worker's process.
func (r *router) touchLocal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.workers {
		if c.close == nil {
			c.lastSeen = r.now()
		}
	}
}

// closeAll releases every remote worker connection.
func (r *router) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.workers {
		if c.close != nil {
			c.close()
		}
	}
}

// remoteWorker is the main worker's stub for a processing worker over
// gRPC: it signs each call, sends it on the link's call stream
// (callstream.go) and turns the worker's failures back into sentinel
// errors. It implements processingWorker.
type remoteWorker struct {
	id   string
	now  func() time.Time
	link *callLink
	// seq numbers the calls of this subscription (the worker refuses a
	// number it has seen); the first call is 1.
	seq atomic.Uint64
	// macMu guards mac, which signs every call.
	macMu sync.Mutex
	mac   *callMAC
}

// newRemoteWorker returns the stub of worker id over client, signing
// under callKey, sending calls in batches if batched (the worker said in
// its Subscribe that it reads them); close releases it.
func newRemoteWorker(id string, client pb.ProcessingWorkerClient, callKey []byte, now func() time.Time, batched bool) *remoteWorker {
	return &remoteWorker{id: id, now: now, link: newCallLink(id, client, batched), mac: newCallMAC(callKey, id)}
}

// close ends the worker's call stream; calls in flight fail.
func (r *remoteWorker) close() { r.link.close() }

// number returns the next call number (callSigner).
func (r *remoteWorker) number() uint64 { return r.seq.Add(1) }

// seal timestamps and signs req, returning it sealed (callMAC.seal;
// callSigner).
func (r *remoteWorker) seal(req *pb.WorkerRequest) ([]byte, error) {
	req.IssuedAtUnixNano = r.now().UnixNano()
	r.macMu.Lock()
	wire, err := r.mac.seal(req)
	r.macMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", r.id, err)
	}
	return wire, nil
}

// Process signs req and sends it. A call that never reached the worker's
// handler is errTransport (retried on the next worker); a worker's own
// failure comes back with its sentinel and sentence.
func (r *remoteWorker) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	resp, err := r.link.call(ctx, req, r)
	switch {
	case errors.Is(err, errTransport), errors.Is(err, errWorkerSlow):
		return nil, err
	case err != nil:
		return nil, r.callError(err, "", "")
	case len(resp.GetStatus()) > 0:
		return nil, r.callError(answerError(resp), resp.GetHandled(), resp.GetCurrentVersion())
	}
	return resp, nil
}

// callError is the error of a failed call: err, the status the worker
// (or gRPC) answered, with handled and version the trailers of a failure
// from the worker's handler.
func (r *remoteWorker) callError(err error, handled, version string) error {
	if handled == "" && status.Code(err) == codes.Unavailable {
		return fmt.Errorf("worker %s: %s: %w", r.id, status.Convert(err).Message(), errTransport)
	}
	if status.Code(err) == codes.Unauthenticated {
		// The worker does not accept this main worker's signature (its
		// subscription expired or was replaced): a server-side fault that
		// another worker can serve, never the client's credential.
		return fmt.Errorf("worker %s refused the call: %s: %w", r.id, status.Convert(err).Message(), errTransport)
	}
	err = errorFromStatus(err, handled == handledSentence)
	if version != "" && errors.Is(err, errPrecondition) {
		if msg, ok := clientMessage(err); ok {
			return &preconditionError{msg: msg, current: version}
		}
	}
	return fmt.Errorf("worker %s: %w", r.id, err)
}

// errorFromStatus turns a worker's gRPC error back into the sentinel error
// its code stands for. With sentence the status message is a sentence for
// the client and comes back as a requestError; otherwise it is the fixed
// sentence of a failure logged at the worker, and stays internal.
func errorFromStatus(err error, sentence bool) error {
	st := status.Convert(err)
	kind := sentinelOf(st.Code())
	if k := reasonSentinel(st); k != nil {
		kind = k
	}
	switch {
	case kind != nil && sentence:
		if ve := issuesFromDetail(st); ve != nil {
			return &requestError{msg: st.Message(), kind: kind, cause: ve}
		}
		return reqErrorf(kind, "%s", st.Message())
	case kind != nil:
		return fmt.Errorf("%s: %w", st.Message(), kind)
	default:
		return errors.New(st.Message())
	}
}
