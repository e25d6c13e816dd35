package main

// The change feed (ARCHITECTURE.md "The change feed"): the router logs
// every write it sends to an owner in the change log (changelog.go), an
// intent before and an outcome after, so that the feed holds every
// acknowledged write exactly once, each key's changes in the order they
// were acknowledged. The REST route is in changes.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pb "deltadatabase/proto"
)

// feedLimits are the -changes-* flags.
type feedLimits struct {
	// dir is -changes-dir: where the log lives ("" is _changes under the
	// filesystem backend's root; with S3, no feed).
	dir string
	// retention and retentionBytes bound the log by age and size.
	retention      time.Duration
	retentionBytes int64
	// maxStreams and maxStreamsPerPrincipal bound the open streams
	// (SSE and long-polls) in total and per principal.
	maxStreams, maxStreamsPerPrincipal int
}

// changeFeed is the main worker's change feed. newChangeFeed builds it;
// run prunes the log and settles the writes a crash left open.
type changeFeed struct {
	log *changeLog
	lim feedLimits
	// read reads an entity's current version through the router, without
	// its write lock (the caller holds it or no write runs).
	read func(ctx context.Context, db, key string) (etag string, found bool, err error)
	// lock takes an entity's write lock (the router's).
	lock func(ctx context.Context, key string) (func(), error)
	slog *slog.Logger

	mu sync.Mutex
	// settling are the keys whose last outcome record is not durable
	// yet: their next write waits for it, so that a key never has two
	// open intents.
	settling map[string]*changeGroup
	// open are the intents whose outcome is not known (by entity):
	// settled before the entity's next write.
	open map[string]changeRec
	// dropped has one channel per database being followed, closed when
	// the database is deleted.
	dropped map[string]chan struct{}
	// streams counts open streams per principal; total is their sum.
	streams map[string]int
	total   int

	sent, droppedConsumers atomic.Int64
}

// newChangeFeed opens the change log in dir, written through ops; the
// intents it left open are settled before their entity's next write, or
// by settle.
func newChangeFeed(dir string, lim feedLimits, log *slog.Logger, ops *fileOps, mark seqMark) (*changeFeed, error) {
	cl, open, err := openChangeLog(dir, lim.retention, lim.retentionBytes, time.Now, ops, mark)
	if err != nil {
		return nil, err
	}
	f := &changeFeed{log: cl, lim: lim, slog: log, settling: map[string]*changeGroup{}, open: map[string]changeRec{},
		dropped: map[string]chan struct{}{}, streams: map[string]int{}}
	for _, r := range open {
		f.open[cacheKey(r.DB, r.Key)] = r
	}
	cl.committed = f.committed
	return f, nil
}

// attachFeed opens the change feed in dir, its seq mark in st (nil: none),
// and has rt log every write in it; the feed reads entities and takes
// their write locks through rt.
func attachFeed(rt *router, dir string, st store, lim feedLimits, log *slog.Logger) (*changeFeed, error) {
	var mark seqMark
	if st != nil {
		mark = storeSeqMark{st: st}
	}
	f, err := newChangeFeed(dir, lim, log, osFileOps(), mark)
	if err != nil {
		return nil, err
	}
	f.read, f.lock = rt.currentVersion, rt.writes.lock
	rt.feed = f
	return f, nil
}

// storeSeqMark is the change log's seq mark in the storage
// (changesMarkObject), which outlives a lost -changes-dir, or a
// _changes directory removed by hand.
type storeSeqMark struct{ st store }

// seqMarkTimeout bounds one read or write of the seq mark (S3 retries
// within it).
const seqMarkTimeout = 30 * time.Second

func (m storeSeqMark) load() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), seqMarkTimeout)
	defer cancel()
	b, err := m.st.Get(ctx, changesMarkObject)
	if errors.Is(err, errNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v struct {
		Below uint64 `json:"below"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("%s: %w", changesMarkObject, err)
	}
	return v.Below, nil
}

func (m storeSeqMark) store(n uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), seqMarkTimeout)
	defer cancel()
	return m.st.Put(ctx, changesMarkObject, fmt.Appendf(nil, "{\"below\":%d}\n", n))
}

// committed forgets the keys of group g as settling once it is written.
// The outcomes a failed group lost leave their intents open, settled from
// the entity before its next write.
func (f *changeFeed) committed(g *changeGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.settling {
		if s == g {
			delete(f.settling, k)
		}
	}
	if g.err == nil {
		return
	}
	for _, r := range g.recs {
		f.open[cacheKey(r.DB, r.Key)] = changeRec{T: changeIntent, ID: r.ID, DB: r.DB, Key: r.Key, Op: r.Op}
	}
}

// close closes the change log.
func (f *changeFeed) close() error { return f.log.close() }

// changeTicket is one write logged by begin: its intent and the group
// that makes the intent durable.
type changeTicket struct {
	rec    changeRec
	intent *changeGroup
}

// opName is the feed's name of a write operation: an undelete is a put
// of the version it restores.
func opName(op pb.Operation) string {
	if op == pb.Operation_DELETE {
		return "delete"
	}
	return "put"
}

// begin logs the intent of a write of key of db; the caller holds the
// entity's write lock. It first waits for the key's previous outcome to be
// durable and settles an intent left open.
func (f *changeFeed) begin(ctx context.Context, db, key string, op pb.Operation) (*changeTicket, error) {
	k := cacheKey(db, key)
	f.mu.Lock()
	g := f.settling[k]
	f.mu.Unlock()
	if g != nil {
		select {
		case <-g.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the change log: %w", ctx.Err())
		}
	}
	f.mu.Lock()
	in, isOpen := f.open[k]
	f.mu.Unlock()
	if isOpen {
		if err := f.settle(ctx, in); errors.Is(err, errBusy) {
			// No turn to read the change log's files came (the server
			// at its limit of reads): this write is refused before its
			// intent, nothing written, and may be sent again shortly
			// (retrySoon), where errUnavailable's 503 would say that
			// storage or the workers failed.
			return nil, fmt.Errorf("settle an earlier write of entity %q: %w", key, err)
		} else if err != nil {
			return nil, fmt.Errorf("settle an earlier write of entity %q: %w: %w", key, err, errUnavailable)
		}
	}
	t := &changeTicket{rec: changeRec{T: changeIntent, DB: db, Key: key, Op: opName(op)}}
	t.intent = f.log.append(&t.rec)
	select {
	case <-t.intent.done:
		// A log that takes no records refuses the write before it is
		// sent: written, it would be answered 503 all the same.
		if err := t.intent.err; errors.Is(err, errChangeLogBroken) {
			return nil, err
		}
	default:
	}
	return t, nil
}

// finish logs the outcome of t's write (resp, err from its owner) and
// returns the error the write answers: a write whose intent did not reach
// the log waits for its outcome record instead.
func (f *changeFeed) finish(ctx context.Context, t *changeTicket, resp *pb.WorkerResponse, err error) error {
	ierr := t.intent.wait()
	rec := changeRec{T: changeAbort, ID: t.rec.ID}
	switch {
	case err == nil:
		rec = changeRec{T: changeDone, ID: t.rec.ID, DB: t.rec.DB, Key: t.rec.Key, Op: t.rec.Op}
		if rec.Op == "put" {
			rec.ETag = etagOf(resp.GetVersion())
		}
	case !changedNothing(err):
		// A client gone does not end the write's account in the feed.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
		defer cancel()
		if serr := f.settle(sctx, t.rec); serr != nil {
			f.markOpen(t.rec)
			f.slog.Warn("change feed: outcome of a write unknown, settled before the entity's next write", attrErr, serr)
		}
		return err
	}
	g := f.log.append(&rec)
	f.mu.Lock()
	f.settling[cacheKey(t.rec.DB, t.rec.Key)] = g
	f.mu.Unlock()
	if ierr != nil && err == nil {
		if werr := g.wait(); werr != nil {
			return fmt.Errorf("entity %q was written and the change log cannot record it: %w: %w", t.rec.Key, werr, errUnavailable)
		}
	}
	return err
}

// settleWait bounds the settlement of a write whose outcome is not
// known; after it the intent stays open for run to settle.
const settleWait = 10 * time.Second

// changedNothing reports whether a write that failed with err certainly
// left its entity as it was.
func changedNothing(err error) bool {
	for _, e := range []error{errNotFound, errInvalid, errPrecondition, errPatchConflict, errConflict, errTooLarge,
		errUnsupportedMedia, errForbidden, errHandingOver, errHandoverDamaged} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// markOpen keeps intent in as open: settled before its entity's next
// write or by settleOpen.
func (f *changeFeed) markOpen(in changeRec) {
	f.mu.Lock()
	f.open[cacheKey(in.DB, in.Key)] = in
	f.mu.Unlock()
}

// settle logs the outcome of intent in from the entity's current version
// and the feed's last change of it: a version the feed has not reported
// is a put, an entity gone that the feed last reported present is a
// delete, anything else changed nothing. It waits for the record.
func (f *changeFeed) settle(ctx context.Context, in changeRec) error {
	etag, found, err := f.read(ctx, in.DB, in.Key)
	if err != nil {
		return err
	}
	last, known, err := f.log.lastChange(ctx, in.DB, in.Key)
	if errors.Is(err, errBusy) {
		return err
	}
	if err != nil {
		// The cause only for the log: its own kind (a segment pruned
		// meanwhile is errGone, a cursor's 410) is not the write's.
		return fmt.Errorf("%w: %v", errChangeLogUnreadable, err)
	}
	rec := changeRec{T: changeAbort, ID: in.ID}
	switch {
	case found && (!known || last.Op == "delete" || last.ETag != etag):
		rec = changeRec{T: changeDone, ID: in.ID, DB: in.DB, Key: in.Key, Op: "put", ETag: etag}
	case !found && (known && last.Op == "put" || !known && in.Op == "delete"):
		rec = changeRec{T: changeDone, ID: in.ID, DB: in.DB, Key: in.Key, Op: "delete"}
	}
	if err := f.log.append(&rec).wait(); err != nil {
		return err
	}
	f.mu.Lock()
	if cur, ok := f.open[cacheKey(in.DB, in.Key)]; ok && cur.ID == in.ID {
		delete(f.open, cacheKey(in.DB, in.Key))
	}
	f.mu.Unlock()
	return nil
}

// openWrites is the number of intents whose outcome is not known yet.
func (f *changeFeed) openWrites() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// settleOpen settles every open intent it can; those whose entity cannot
// be read yet (no worker) stay open.
func (f *changeFeed) settleOpen(ctx context.Context) (left int) {
	f.mu.Lock()
	open := make([]changeRec, 0, len(f.open))
	for _, r := range f.open {
		open = append(open, r)
	}
	f.mu.Unlock()
	for _, r := range open {
		if err := f.settleLocked(ctx, r); err != nil {
			left++
		}
	}
	return left
}

// settleLocked settles in under its entity's write lock.
func (f *changeFeed) settleLocked(ctx context.Context, in changeRec) error {
	unlock, err := f.lock(ctx, cacheKey(in.DB, in.Key))
	if err != nil {
		return err
	}
	defer unlock()
	f.mu.Lock()
	cur, ok := f.open[cacheKey(in.DB, in.Key)]
	f.mu.Unlock()
	if !ok || cur.ID != in.ID {
		return nil // settled by a write meanwhile
	}
	return f.settle(ctx, in)
}

// run prunes the log every minute and settles open intents every few
// seconds until ctx ends.
func (f *changeFeed) run(ctx context.Context) {
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	settle := time.NewTicker(2 * time.Second)
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			if err := f.log.prune(); err != nil {
				f.slog.Warn("change feed: prune", attrErr, err)
			}
		case <-settle.C:
			f.settleOpen(ctx)
		}
	}
}

// databaseDeleted ends the streams following db.
func (f *changeFeed) databaseDeleted(db string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.dropped[db]; ok {
		close(c)
		delete(f.dropped, db)
	}
}

// deletedSignal is a channel closed when db is deleted.
func (f *changeFeed) deletedSignal(db string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.dropped[db]
	if !ok {
		c = make(chan struct{})
		f.dropped[db] = c
	}
	return c
}

// streamRetryAfter is the Retry-After of a stream refused for the
// open-stream budgets: a long-poll holds its place for its timeout, 30 s
// unless it asks for another (longPollDefault), so the long-polls open
// now have mostly ended by then; an event stream holds its place until
// its client leaves, which no number foresees.
const streamRetryAfter = longPollDefault

// openStream counts a stream of principal who within the budgets, or
// answers 429 with streamRetryAfter; the release returned ends it.
func (f *changeFeed) openStream(who string) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total >= f.lim.maxStreams {
		return nil, &rateLimitError{retryAfter: streamRetryAfter, kind: errTooManyStreams,
			reason: fmt.Sprintf("%d change streams are open, the most this server keeps (-changes-max-streams)", f.total)}
	}
	if f.streams[who] >= f.lim.maxStreamsPerPrincipal {
		return nil, &rateLimitError{retryAfter: streamRetryAfter, kind: errTooManyStreams,
			reason: fmt.Sprintf("this credential has %d change streams open, the most it may (-changes-max-streams-per-principal); close one", f.streams[who])}
	}
	f.total++
	f.streams[who]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.total--
		if f.streams[who]--; f.streams[who] == 0 {
			delete(f.streams, who)
		}
	}, nil
}

// openStreams is the number of open streams.
func (f *changeFeed) openStreams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

// registerFeedMetrics registers the change feed's metrics in r.
func registerFeedMetrics(r *registry, f *changeFeed) {
	r.gaugeFunc("deltadb_changes_streams_open", "Change feed streams (Server-Sent Events and long-polls) open now.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(f.openStreams())) })
	r.counterFunc("deltadb_changes_events_sent_total", "Changes sent on change feed streams.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(f.sent.Load())) })
	r.counterFunc("deltadb_changes_consumers_dropped_total", "Change feed streams ended because their consumer fell behind or stopped reading.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(f.droppedConsumers.Load())) })
	r.gaugeFunc("deltadb_changes_last_seq", "The change feed's last durable sequence number.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(f.log.durable.Load())) })
}
