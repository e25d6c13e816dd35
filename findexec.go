package main

// Running a query across the workers (ARCHITECTURE.md, Finding
// documents). The main worker fans the query out to the workers in
// rotation, each evaluating it over the entities it owns, and merges what
// they answer in the plan's order:
//
//   - a scan walks the key index in pages, sends each owner its keys of
//     the page, and merges by key;
//   - an index read asks every worker for its entries in the range, after
//     the bookmark, and merges by entry;
//   - a sorted plan collects every match (within -find-max-scan) and the
//     main worker sorts them, keeping the best skip+limit.
//
// Every worker says how far it got; a page ends where the slowest one
// stopped, so an answer is never silently partial: when a budget ends it
// early (-find-max-scan, -find-timeout, -max-response-bytes), it carries a
// bookmark from which the next page goes on, and a warning.

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	pb "deltadatabase/proto"
)

// findRouter is the router as a query uses it.
type findRouter interface {
	// findMembers returns the workers in rotation and their epoch.
	findMembers() findMembers
	// findCall sends a FIND of db to worker i of m.
	findCall(ctx context.Context, m findMembers, i int, db string, op *pb.FindOp) (*pb.FindResult, error)
}

// findMembers are the workers in rotation at one routing epoch, sorted by
// ID: their rendezvous order places every entity.
type findMembers struct {
	epoch uint64
	ids   []string
	conns []*workerConn
}

// owner is the index of the member that owns key of db.
func (m findMembers) owner(db, key string) int { return rendezvousOrder(db, key, m.ids)[0] }

// findMembers implements findRouter: the workers in rotation (findCall
// waits for a renewing one) and the epoch, read together.
func (r *router) findMembers() findMembers {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := findMembers{epoch: r.epoch.Load()}
	for _, c := range r.workers {
		if c.placed() {
			m.conns = append(m.conns, c)
		}
	}
	sort.Slice(m.conns, func(i, j int) bool { return m.conns[i].id < m.conns[j].id })
	for _, c := range m.conns {
		m.ids = append(m.ids, c.id)
	}
	return m
}

// findCall implements findRouter. The call carries the members' epoch:
// a worker that has seen a newer one refuses (errEpochMoved). A worker
// that cannot be reached leaves the rotation.
func (r *router) findCall(ctx context.Context, m findMembers, i int, db string, op *pb.FindOp) (*pb.FindResult, error) {
	c := m.conns[i]
	if ok, err := r.awaitRenewal(ctx, c); err != nil {
		return nil, fmt.Errorf("find on worker %s: %w", c.id, err)
	} else if !ok {
		// Out of rotation meanwhile: the data plane plans again.
		return nil, fmt.Errorf("find on worker %s: %w", c.id, errNoWorker)
	}
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	resp, err := c.proc.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: db, Operation: pb.Operation_FIND,
		Find: op}, Epoch: m.epoch, Owner: true, RequestId: requestIDFrom(ctx)})
	if errors.Is(err, errTransport) {
		r.markUnavailable(c.id, err.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("find on worker %s: %w", c.id, err)
	}
	if resp.GetFound() == nil {
		return nil, fmt.Errorf("find on worker %s: no result in its answer", c.id)
	}
	return resp.GetFound(), nil
}

// retryFind reports whether a query failed because the workers changed
// under it (or one went away): planning and running it again may work.
func retryFind(err error) bool {
	return errors.Is(err, errUnavailable) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// fanOut sends every member the FIND that op builds for it (op gets the
// member's name) at once, and returns their results, in member order.
func fanOut(ctx context.Context, fr findRouter, m findMembers, db string, op func(self string) *pb.FindOp) ([]*pb.FindResult, error) {
	if len(m.ids) == 0 {
		return nil, errNoWorker
	}
	results := make([]*pb.FindResult, len(m.ids))
	errs := make([]error, len(m.ids))
	var wg sync.WaitGroup
	for i := range m.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = fr.findCall(ctx, m, i, db, op(m.ids[i]))
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// keysFrom returns up to limit keys of db from `from` on (inclusive or
// not), in byte order, and whether more follow.
func (ix *keyIndex) keysFrom(ctx context.Context, db, from string, incl bool, limit int) ([]string, bool, error) {
	d, err := ix.get(ctx, db)
	if err != nil {
		return nil, false, fmt.Errorf("list keys of %s: %w", db, err)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	keys, more := []string{}, false
	d.keys.ascend(from, "", func(k string) bool {
		switch {
		case !incl && k == from:
			return true
		case len(keys) == limit:
			more = true
			return false
		}
		keys = append(keys, k)
		return true
	})
	return keys, more, nil
}

// findRun is one run of a query.
type findRun struct {
	d    *dataPlane
	fr   findRouter
	q    *findQuery
	plan findPlan
	m    findMembers

	deadline  time.Time
	maxScan   int64
	bytesLeft int64
	// ctx is the run's context, for the waits for room of growRoom.
	ctx context.Context
	// grown is the room of the read budget the run took beyond the
	// page's, for a sorted set's documents (growRoom); noRoom says
	// growRoom found none: a 503 that running the query again at once
	// would only repeat (runFind).
	grown  int64
	noRoom bool
	// skip is what is left of the query's skip.
	skip int64
	// examined counts the entities (scan) or entries (index) examined.
	examined int64
	// pos is the position of the last entity dealt with: where the
	// bookmark resumes.
	pos []byte
	// more: further pages may hold matches.
	more     bool
	warnings []string
	ans      *findAnswer
}

// newFindRun prepares a run of q by plan whose documents total at most
// maxBytes.
func newFindRun(d *dataPlane, fr findRouter, q *findQuery, plan findPlan, maxBytes int64) *findRun {
	r := &findRun{d: d, fr: fr, q: q, plan: plan, maxScan: d.lim.findScan(), bytesLeft: maxBytes,
		skip: q.skip, warnings: slices.Clone(plan.warnings), ans: &findAnswer{Docs: []json.RawMessage{},
			Keys: []string{}, ETags: []string{}, ExecutionStats: &findStats{}}}
	if q.bookmark != nil {
		r.pos = q.bookmark.Pos
	}
	return r
}

// Warnings of pages that a budget ended.
const (
	warnScanBudget = "the page ended early: the query examined -find-max-scan entities; continue from the bookmark"
	warnTimeBudget = "the page ended early: the query took -find-timeout; continue from the bookmark"
	warnByteBudget = "the page ended early: its documents reached -max-response-bytes; continue from the bookmark"
)

// run runs the plan and completes the answer.
func (r *findRun) run(ctx context.Context) (*findAnswer, error) {
	r.m = r.fr.findMembers()
	if len(r.m.ids) == 0 {
		return nil, errNoWorker
	}
	r.deadline = time.Now().Add(r.d.lim.findTime())
	// Worker calls get a little longer than the query's time, so that a
	// worker that stops at the deadline can still answer what it has.
	defer r.releaseRoom() // after cancel: no call of the run goes on
	ctx, cancel := context.WithDeadline(ctx, r.deadline.Add(5*time.Second))
	defer cancel()
	r.ctx = ctx
	var err error
	switch {
	case r.q.limit == 0:
		r.more = true
	case r.plan.index == nil && !r.plan.sorted:
		err = r.streamScan(ctx)
	case r.plan.index == nil:
		err = r.sortedScan(ctx)
	case !r.plan.sorted:
		err = r.streamIndex(ctx)
	default:
		err = r.sortedIndex(ctx)
	}
	if err != nil {
		return nil, err
	}
	return r.finish(), nil
}

// finish completes the answer: bookmark, more, warnings, statistics.
func (r *findRun) finish() *findAnswer {
	bm := findBookmark{Query: r.q.hash, Sorted: r.plan.sorted, Pos: r.pos}
	if r.plan.index != nil {
		bm.Index = r.plan.index.ID
	}
	r.ans.ExecutionStats.TotalKeysExamined = r.examined
	r.ans.Bookmark, r.ans.More = bm.encode(), r.more
	r.ans.Warning = joinWarnings(slices.Compact(r.warnings))
	r.ans.ExecutionStats.TotalDocsExamined = r.examined
	return r.ans
}

// taken says what adding a match did to the page.
type taken int

const (
	takenOK    taken = iota
	takenFull        // the page has limit documents
	takenBytes       // the match did not fit the bytes left: not taken
)

// take adds match m to the page (or skips it).
func (r *findRun) take(m *pb.FindMatch) taken {
	if r.skip > 0 {
		r.skip--
		r.pos = m.Position
		return takenOK
	}
	etag := etagOf(m.Version)
	size := matchBytes(m.Doc, m.Key, etag)
	if size > r.bytesLeft && len(r.ans.Docs) > 0 {
		return takenBytes
	}
	r.bytesLeft -= size
	r.ans.Docs = append(r.ans.Docs, m.Doc)
	r.ans.Keys = append(r.ans.Keys, m.Key)
	r.ans.ETags = append(r.ans.ETags, etag)
	r.pos = m.Position
	if int64(len(r.ans.Docs)) >= r.q.limit {
		return takenFull
	}
	return takenOK
}

// takeAll adds matches to the page in order and reports whether the page
// ended (full, or out of bytes: then it says so) before they were all
// taken.
func (r *findRun) takeAll(matches []*pb.FindMatch) bool {
	for _, m := range matches {
		switch r.take(m) {
		case takenFull:
			r.more = true
			return true
		case takenBytes:
			r.more = true
			r.warnings = append(r.warnings, warnByteBudget)
			return true
		}
	}
	return false
}

// outOfBudget says whether the scan or time budget is spent, adding its
// warning when it is.
func (r *findRun) outOfBudget() bool {
	switch {
	case r.examined >= r.maxScan:
		r.warnings = append(r.warnings, warnScanBudget)
	case r.examined > 0 && time.Now().After(r.deadline):
		// Past the deadline only once something was examined: every
		// page makes progress.
		r.warnings = append(r.warnings, warnTimeBudget)
	default:
		return false
	}
	return true
}

// op is the FIND every call of the run starts from.
func (r *findRun) op(self string) *pb.FindOp {
	return &pb.FindOp{Selector: r.q.sel.raw, Fields: r.q.fields, DeadlineUnixNano: r.deadline.UnixNano(),
		MaxBytes: min(r.bytesLeft, findCallBytes), Members: r.m.ids, Self: self, LiveIndexes: r.plan.live}
}

// scanStart is where a scan starts: after the bookmark, else at the
// range's start.
func (r *findRun) scanStart() (string, bool) {
	if r.q.bookmark != nil {
		return string(r.q.bookmark.Pos), false
	}
	return r.plan.keys.from, r.plan.keys.fromIncl
}

// scanPage returns the next page of keys of the scan from `from`, within
// the range, at most n, and whether more follow.
func (r *findRun) scanPage(ctx context.Context, from string, incl bool, n int) ([]string, bool, error) {
	keys, more, err := r.d.catalog.keys.keysFrom(ctx, r.q.db, from, incl, n)
	if err != nil {
		return nil, false, err
	}
	for i, k := range keys {
		if !r.plan.keys.within(k) {
			return keys[:i], false, nil
		}
	}
	return keys, more, nil
}

// Scan page sizes: the first page is small (a query with a small limit
// often ends in it), later ones grow.
const (
	firstScanPage = 256
	maxScanPage   = 4096
)

// streamScan pages through the keys in order, taking matches until the
// page is full, the keys end or a budget ends the page.
func (r *findRun) streamScan(ctx context.Context) error {
	if r.plan.keys.empty {
		return nil
	}
	from, incl := r.scanStart()
	for size := firstScanPage; ; size = min(2*size, maxScanPage) {
		if r.outOfBudget() {
			r.more = true
			return nil
		}
		keys, more, err := r.scanPage(ctx, from, incl, int(min(int64(size), r.maxScan-r.examined)))
		if err != nil || len(keys) == 0 {
			return err
		}
		through, matches, err := r.evalKeys(ctx, keys, nil)
		if err != nil {
			return err
		}
		if r.takeAll(matches) {
			return nil
		}
		r.examined += int64(through + 1)
		if through >= 0 {
			r.pos = []byte(keys[through])
		}
		if through < len(keys)-1 {
			r.more = true
			r.warnings = append(r.warnings, r.stopWarning())
			return nil
		}
		if !more {
			return nil
		}
		from, incl = keys[len(keys)-1], false
	}
}

// stopWarning is the warning of a page a worker ended: by the deadline,
// or else by the bytes of its answer.
func (r *findRun) stopWarning() string {
	if time.Now().After(r.deadline) {
		return warnTimeBudget
	}
	return warnByteBudget
}

// evalKeys sends each owner its keys of the page and merges what they
// found, in key order. through is the index of the last key up to which
// every owner examined every key (-1: none); the matches are those up to
// it. With add (a sorted scan), an owner stopped by the bytes of its
// answer is asked again for the rest, so that through is the last key
// unless the deadline passed, and each answer's matches go to add as it
// comes (none are returned): a page of keys may match far more documents
// than one answer holds, and add holds them within the read budget
// (sortedSet.addAll). add is called by one owner's call at a time; the
// first error it returns ends the page.
func (r *findRun) evalKeys(ctx context.Context, keys []string, add func([]*pb.FindMatch) error) (int, []*pb.FindMatch, error) {
	groups := make([][]string, len(r.m.ids))
	for _, k := range keys {
		o := r.m.owner(r.q.db, k)
		groups[o] = append(groups[o], k)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var addErr error
	if add != nil {
		inner := add
		add = func(ms []*pb.FindMatch) error {
			mu.Lock()
			defer mu.Unlock()
			if addErr == nil {
				if addErr = inner(ms); addErr != nil {
					cancel() // the other owners' calls are wasted now
				}
			}
			return addErr
		}
	}
	results := make([]groupResult, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		if len(g) == 0 {
			results[i].done = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.evalGroup(ctx, i, g, add)
		}()
	}
	wg.Wait()
	if addErr != nil {
		return 0, nil, addErr
	}
	through := len(keys) - 1
	var matches []*pb.FindMatch
	for _, g := range results {
		if g.err != nil {
			return 0, nil, g.err
		}
		if !g.done {
			through = min(through, sort.SearchStrings(keys, g.through+"\x00")-1)
		}
		matches = append(matches, g.matches...)
	}
	slices.SortFunc(matches, func(a, b *pb.FindMatch) int { return cmpStrings(a.Key, b.Key) })
	n := sort.Search(len(matches), func(i int) bool { return through < 0 || matches[i].Key > keys[through] })
	return through, matches[:n], nil
}

// cmpStrings compares two strings.
func cmpStrings(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) }

// groupResult is what one owner found among its keys of a page.
type groupResult struct {
	matches []*pb.FindMatch
	// done: every key examined; else through is the last key examined
	// ("" for none).
	done    bool
	through string
	err     error
}

// evalGroup sends one owner its keys (again for the rest, with add,
// while it makes progress), handing each answer's matches to add when
// not nil.
func (r *findRun) evalGroup(ctx context.Context, i int, keys []string, add func([]*pb.FindMatch) error) groupResult {
	var g groupResult
	all := add != nil
	for len(keys) > 0 {
		op := r.op(r.m.ids[i])
		op.Keys, op.Sort = keys, r.sortFields()
		res, err := r.fr.findCall(ctx, r.m, i, r.q.db, op)
		if err != nil {
			return groupResult{err: err}
		}
		if all {
			if err := add(res.GetMatches()); err != nil {
				return groupResult{err: err}
			}
		} else {
			g.matches = append(g.matches, res.GetMatches()...)
		}
		if res.GetDone() {
			g.done = true
			return g
		}
		n := sort.SearchStrings(keys, string(res.GetThrough())+"\x00")
		if res.GetThrough() == nil {
			n = 0
		}
		if n > 0 {
			g.through = keys[n-1]
		}
		if !all || n == 0 {
			return g
		}
		keys = keys[n:]
	}
	g.done = true
	return g
}

// sortFields are the sort paths a worker computes positions of: the
// query's for a sorted plan, none otherwise (positions are walk places).
func (r *findRun) sortFields() []string {
	if r.plan.sorted {
		return r.q.sort
	}
	return nil
}

// streamIndex reads the index in rounds: every worker answers its next
// matches after the position reached, as many as the page still needs;
// the merge keeps those up to where the slowest worker got. It ends when
// the page is full, every worker walked to the end, or a budget ends it.
func (r *findRun) streamIndex(ctx context.Context) error {
	for {
		if r.outOfBudget() {
			r.more = true
			return nil
		}
		need := r.skip + r.q.limit - int64(len(r.ans.Docs))
		perWorker := max(1, (r.maxScan-r.examined)/int64(len(r.m.ids)))
		results, err := fanOut(ctx, r.fr, r.m, r.q.db, func(self string) *pb.FindOp {
			op := r.op(self)
			op.Index, op.Start, op.End, op.Descending = r.plan.index.spec(), r.plan.start, r.plan.end, r.plan.desc
			op.After, op.Limit, op.MaxExamined = r.pos, need, perWorker
			return op
		})
		if err != nil {
			return err
		}
		cut, matches, allDone := r.mergeIndex(results)
		if r.takeAll(matches) {
			return nil
		}
		if allDone {
			return nil
		}
		if bytes.Equal(cut, r.pos) && len(matches) == 0 {
			r.more = true
			r.warnings = append(r.warnings, r.stopWarning())
			return nil
		}
		r.pos = cut
	}
}

// mergeIndex merges the workers' index matches in walk order and cuts
// them where the worker that got least far stopped. allDone says every
// worker walked its whole range (nothing was cut).
func (r *findRun) mergeIndex(results []*pb.FindResult) (cut []byte, matches []*pb.FindMatch, allDone bool) {
	allDone = true
	for _, res := range results {
		r.examined += res.GetExamined()
		matches = append(matches, res.GetMatches()...)
		if res.GetDone() {
			continue
		}
		t := res.GetThrough()
		if t == nil {
			t = r.pos
		}
		if allDone || r.before(t, cut) {
			cut = t
		}
		allDone = false
	}
	slices.SortFunc(matches, func(a, b *pb.FindMatch) int { return r.order(a.Position, b.Position) })
	if !allDone {
		n := sort.Search(len(matches), func(i int) bool { return r.before(cut, matches[i].Position) })
		matches = matches[:n]
	}
	return cut, matches, allDone
}

// order compares two positions in the plan's direction.
func (r *findRun) order(a, b []byte) int {
	if r.plan.desc {
		return bytes.Compare(b, a)
	}
	return bytes.Compare(a, b)
}

// before reports whether position a comes strictly before b ("" or nil
// before everything).
func (r *findRun) before(a, b []byte) bool {
	switch {
	case len(a) == 0:
		return len(b) > 0
	case len(b) == 0:
		return false
	}
	return r.order(a, b) < 0
}

// errSortBudget refuses a sorted query that cannot see every match.
func (r *findRun) errSortBudget(why string) error {
	return reqErrorf(errTooLarge, "sorting needs every match, and this query %s; create an index on %q (POST /api/databases/%s/index)", why, r.q.sort, r.q.db)
}

// sortedScan scans every key in the range, keeping the best matches.
func (r *findRun) sortedScan(ctx context.Context) error {
	best := r.newSortedSet()
	if !r.plan.keys.empty {
		from, incl := r.plan.keys.from, r.plan.keys.fromIncl
		for more := true; more; {
			if err := r.sortBudget(); err != nil {
				return err
			}
			var keys []string
			var err error
			keys, more, err = r.scanPage(ctx, from, incl, int(min(maxScanPage, r.maxScan-r.examined+1)))
			if err != nil || len(keys) == 0 {
				return errors.Join(err, r.answerSorted(best))
			}
			through, _, err := r.evalKeys(ctx, keys, best.addAll)
			if err != nil {
				return err
			}
			if through < len(keys)-1 {
				return r.errSortBudget(fmt.Sprintf("took longer than the limit of %v (-find-timeout)", r.d.lim.findTime()))
			}
			r.examined += int64(len(keys))
			from, incl = keys[len(keys)-1], false
		}
	}
	return r.answerSorted(best)
}

// sortBudget refuses a sorted query past its scan or time budget.
func (r *findRun) sortBudget() error {
	switch {
	case r.examined > r.maxScan:
		return r.errSortBudget(fmt.Sprintf("would examine more than %d entities (-find-max-scan)", r.maxScan))
	case time.Now().After(r.deadline):
		return r.errSortBudget(fmt.Sprintf("took longer than the limit of %v (-find-timeout)", r.d.lim.findTime()))
	}
	return nil
}

// sortedIndex reads the index range on every worker to its end (asking
// again while a worker's answer was cut by its bytes), keeping the best
// matches.
func (r *findRun) sortedIndex(ctx context.Context) error {
	best := r.newSortedSet()
	perWorker := max(1, r.maxScan/int64(len(r.m.ids)))
	errs := make([]error, len(r.m.ids))
	examined := make([]int64, len(r.m.ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range r.m.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			examined[i], errs[i] = r.readWhole(ctx, i, perWorker, func(ms []*pb.FindMatch) error {
				mu.Lock()
				defer mu.Unlock()
				return best.addAll(ms)
			})
		}()
	}
	wg.Wait()
	for _, n := range examined {
		r.examined += n
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.answerSorted(best)
}

// readWhole reads worker i's whole range, handing each answer's matches
// to add, and returns how many entries it examined.
func (r *findRun) readWhole(ctx context.Context, i int, budget int64, add func([]*pb.FindMatch) error) (int64, error) {
	var after []byte
	for examined := int64(0); ; {
		op := r.op(r.m.ids[i])
		op.Index, op.Start, op.End, op.Sort = r.plan.index.spec(), r.plan.start, r.plan.end, r.q.sort
		op.After, op.MaxExamined = after, budget-examined+1
		res, err := r.fr.findCall(ctx, r.m, i, r.q.db, op)
		if err != nil {
			return examined, err
		}
		examined += res.GetExamined()
		if err := add(res.GetMatches()); err != nil {
			return examined, err
		}
		switch {
		case res.GetDone():
			return examined, nil
		case examined > budget:
			return examined, r.errSortBudget(fmt.Sprintf("would examine more than %d index entries (-find-max-scan)", r.maxScan))
		case res.GetThrough() == nil || time.Now().After(r.deadline):
			return examined, r.errSortBudget(fmt.Sprintf("took longer than the limit of %v (-find-timeout)", r.d.lim.findTime()))
		}
		after = res.GetThrough()
	}
}

// newSortedSet returns the set keeping the best skip+limit matches after
// the bookmark. Its documents are held in the in-flight read budget: the
// page's room, which find took before the run, then what grow takes as
// they outgrow it, given back when the run ends (releaseRoom). Its
// bound is never over the whole budget, which grow could not take.
func (r *findRun) newSortedSet() *sortedSet {
	s := &sortedSet{desc: r.q.desc, k: int(r.q.skip + r.q.limit), room: r.bytesLeft,
		maxBytes: min(4*r.d.lim.findBytes(), r.d.lim.inflightRead()), grow: r.growRoom}
	if r.q.bookmark != nil {
		s.after = r.q.bookmark.Pos
	}
	return s
}

// growRoom takes n more bytes of the read budget for the sorted set's
// documents: at once if they are free; else, if no other sorted query
// waits for room (dataPlane.sortWait), waiting as a read does (in arrival
// order, callWait at most) but no longer than the query's own time;
// else 503 at once, giving back the room it held, which the waiting
// query may need. Room taken is given back when the run ends
// (releaseRoom).
func (r *findRun) growRoom(n int64) error {
	if !r.d.reads.tryAcquire(n) {
		if !r.d.sortWait.TryLock() {
			r.noRoom = true
			return fmt.Errorf("find in %s: the documents sorting keeps: no room in the read budget while another sorted query waits for it: %w", r.q.db, errBusy)
		}
		wait := max(min(callWait, time.Until(r.deadline)), time.Millisecond)
		err := r.d.reads.acquireWithin(r.ctx, n, wait, errBusy)
		r.d.sortWait.Unlock()
		if err != nil {
			r.noRoom = true
			return fmt.Errorf("find in %s: the documents sorting keeps: %w", r.q.db, err)
		}
	}
	r.grown += n
	return nil
}

// releaseRoom gives back the room the run took beyond the page's: the
// answer's documents are within the page's room.
func (r *findRun) releaseRoom() {
	r.d.reads.release(r.grown)
	r.grown = 0
}

// answerSorted takes the best matches, in order, into the page.
func (r *findRun) answerSorted(s *sortedSet) error {
	items := s.sorted()
	for i, m := range items {
		switch r.take(m) {
		case takenFull:
			r.more = i < len(items)-1 || s.total > len(items)
			return nil
		case takenBytes:
			r.more = true
			r.warnings = append(r.warnings, warnByteBudget)
			return nil
		}
	}
	r.more = s.total > len(items)
	return nil
}

// sortedSet keeps the best k matches by position (a heap with the worst
// on top), those after the bookmark only. Its documents are bounded by
// maxBytes: past it, it refuses. They are held within room, which grow
// makes larger when they outgrow it. It is not safe for concurrent use.
type sortedSet struct {
	desc     bool
	k        int
	after    []byte
	items    []*pb.FindMatch
	bytes    int64
	maxBytes int64
	room     int64
	grow     func(n int64) error
	// total counts the matches after the bookmark seen.
	total int
}

// addAll adds matches.
func (s *sortedSet) addAll(ms []*pb.FindMatch) error {
	for _, m := range ms {
		if s.after != nil && s.cmp(m.Position, s.after) <= 0 {
			continue
		}
		s.total++
		heap.Push(s, m)
		s.bytes += int64(len(m.Doc))
		if s.Len() > s.k {
			worst := heap.Pop(s).(*pb.FindMatch)
			s.bytes -= int64(len(worst.Doc))
		}
		if s.bytes > s.maxBytes {
			return reqErrorf(errTooLarge, "sorting this query holds more than %d bytes of documents; lower skip or limit, or create an index on the sort fields", s.maxBytes)
		}
		if s.bytes > s.room {
			// sortRoomStep at least, so that a set growing by small
			// matches does not take room for each.
			n := min(max(s.bytes-s.room, sortRoomStep), s.maxBytes-s.room)
			if err := s.grow(n); err != nil {
				return err
			}
			s.room += n
		}
	}
	return nil
}

// sortRoomStep is the least room a sorted set takes at once.
const sortRoomStep = 1 << 20

// cmp compares positions in the answer's direction.
func (s *sortedSet) cmp(a, b []byte) int {
	if s.desc {
		return bytes.Compare(b, a)
	}
	return bytes.Compare(a, b)
}

// sorted returns the items best first.
func (s *sortedSet) sorted() []*pb.FindMatch {
	out := slices.Clone(s.items)
	slices.SortFunc(out, func(a, b *pb.FindMatch) int { return s.cmp(a.Position, b.Position) })
	return out
}

// Len, Less, Swap, Push and Pop make sortedSet a heap whose top is the
// worst item.
func (s *sortedSet) Len() int           { return len(s.items) }
func (s *sortedSet) Less(i, j int) bool { return s.cmp(s.items[i].Position, s.items[j].Position) > 0 }
func (s *sortedSet) Swap(i, j int)      { s.items[i], s.items[j] = s.items[j], s.items[i] }
func (s *sortedSet) Push(x any)         { s.items = append(s.items, x.(*pb.FindMatch)) }
func (s *sortedSet) Pop() any {
	it := s.items[len(s.items)-1]
	s.items = s.items[:len(s.items)-1]
	return it
}
