package main

// The rekey job (POST /admin/databases/{db}/rekey), run by the main
// worker beside the traffic it routes, and the pacing of key jobs. The
// re-encryption of the entities is the keyring's (keyring.reencrypt).

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// pacer spaces the objects a key job rewrites, to at most a rate per
// second (-key-job-rate); a nil pacer, or rate 0, does not wait.
type pacer struct {
	every time.Duration
	next  time.Time
}

// newPacer returns a pacer of perSecond objects a second (0: unlimited).
func newPacer(perSecond int) *pacer {
	if perSecond <= 0 {
		return nil
	}
	return &pacer{every: time.Second / time.Duration(perSecond)}
}

// wait returns when the next object may be rewritten, or ctx's error. It
// is not safe for concurrent use.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.every)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// A rekey moves one database's entities to a fresh data key, online:
//
//  1. switch: a new data key becomes the database's active one, beside
//     the old ones (writers that read the data keys from now on seal
//     under it; entities under the old keys keep opening);
//  2. announce: the data-key epoch is raised (keyring.applyEpoch) and the
//     job waits until every available worker has applied it;
//  3. re-encrypt every entity not yet under the new key, in key order,
//     recording progress and a cursor in the job record;
//  4. retire: a second pass reseals any straggler, then the old keys are
//     removed from the database's data keys.
//
// Why no worker seals under a retired key once the job says done: a
// worker seals only with the gate of its keyring held shared, from
// choosing the data key until the entity is stored (worker.store), and a
// keyring applying a new epoch takes the gate exclusively and forgets
// every cached active key: once a worker has applied the epoch of step 2,
// every write it has in progress has finished, and every later write
// reads the data keys again, written in step 1, before the epoch was
// announced. A worker reports the epoch applied in its next heartbeat;
// step 2 ends when every available worker has (a worker that subscribes
// later gets a fresh keyring, which caches nothing). The in-process
// worker of -role=all shares the main worker's keyring, which applies
// the epoch directly. So after step 2 no write seals under an old key,
// and the pass of step 3 lists the database after step 2: an entity it
// lists is resealed under the lock writers take, and one written later
// is written under the new key. The one case this does not cover is a
// worker that stops heartbeating (out of rotation) with a write still in
// progress that completes much later; the pass of step 4 catches such a
// straggler if it has landed by then. TestRekeyBarrier checks the order.
//
// A crash anywhere resumes at the next start from the job record: the
// switch is skipped if the active key is already new, the epoch is
// announced again, and re-encryption continues after the cursor.

// jobsPrefix holds one record per key job.
const jobsPrefix = metaPrefix + "jobs/"

// Job states.
const (
	jobRunning = "running"
	jobDone    = "done"
	jobFailed  = "failed"
)

// Phases of a running rekey, in order.
const (
	phaseSwitch    = "switch"
	phaseReencrypt = "reencrypt"
	phaseRetire    = "retire"
)

// jobDoc is a key job's record, stored at jobsPrefix+ID+".json".
type jobDoc struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Database string `json:"database"`
	State    string `json:"state"`
	// Phase is the step a running job is at; "" once it ended.
	Phase string `json:"phase,omitempty"`
	// Done and Total count the entities re-encrypted and listed.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// NewKey is the data key the entities move to; OldKeys the ones it
	// retires.
	NewKey  string   `json:"new_key,omitempty"`
	OldKeys []string `json:"old_keys,omitempty"`
	// Cursor is the object key of the last entity re-encrypted.
	Cursor     string     `json:"cursor,omitempty"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// jobView is a job as GET /admin/jobs shows it: the record without its
// key IDs and cursor.
type jobView struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	Database   string     `json:"database"`
	State      string     `json:"state"`
	Phase      string     `json:"phase,omitempty"`
	Done       int64      `json:"done"`
	Total      int64      `json:"total"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// view returns the API view of d.
func (d *jobDoc) view() jobView {
	return jobView{ID: d.ID, Kind: d.Kind, Database: d.Database, State: d.State, Phase: d.Phase, Done: d.Done,
		Total: d.Total, Error: d.Error, StartedAt: d.StartedAt, UpdatedAt: d.UpdatedAt, FinishedAt: d.FinishedAt}
}

// keyJobs starts, runs and resumes the rekey jobs of the main worker. It
// is safe for concurrent use; build it with newKeyJobs.
type keyJobs struct {
	st   store
	ring *keyring
	log  *slog.Logger
	// rate is -key-job-rate.
	rate int
	// barrier returns once every available worker has applied data-key
	// epoch e (mainService.waitKeysEpoch), or ctx's error.
	barrier func(ctx context.Context, e uint64) error
	now     func() time.Time
	// saveEvery is how often a running job's progress is stored.
	saveEvery time.Duration
	// base is the context jobs run in: it ends with the main worker.
	base context.Context

	mu sync.Mutex
	// running are the jobs this process runs, by database.
	running map[string]*jobDoc
}

// newKeyJobs returns the job runner of the main worker; its jobs run
// until base ends.
func newKeyJobs(base context.Context, st store, ring *keyring, rate int, barrier func(context.Context, uint64) error, log *slog.Logger) *keyJobs {
	return &keyJobs{st: st, ring: ring, log: log, rate: rate, barrier: barrier, now: time.Now,
		saveEvery: time.Second, base: base, running: map[string]*jobDoc{}}
}

// startRekey starts a rekey of db, or returns the one already running
// (started false). A database without entities or data keys is
// errNotFound.
func (j *keyJobs) startRekey(ctx context.Context, db string) (view jobView, started bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if d := j.running[db]; d != nil {
		return d.view(), false, nil
	}
	dbs, err := keyedDatabases(ctx, j.st)
	if err != nil {
		return jobView{}, false, err
	}
	if !slices.Contains(dbs, db) {
		return jobView{}, false, reqErrorf(errNotFound, "database %q not found", db)
	}
	if err := j.ring.prepare(ctx, db); err != nil {
		return jobView{}, false, err
	}
	keys, _, err := readDataKeys(ctx, j.st, db)
	if err != nil {
		return jobView{}, false, err
	}
	id := make([]byte, 8)
	if _, err := io.ReadFull(j.ring.rand, id); err != nil {
		return jobView{}, false, fmt.Errorf("new job ID: %w", err)
	}
	now := j.now().UTC()
	d := &jobDoc{ID: "rekey-" + hex.EncodeToString(id), Kind: "rekey", Database: db, State: jobRunning, Phase: phaseSwitch,
		StartedAt: now, UpdatedAt: now}
	for _, k := range keys.Keys {
		d.OldKeys = append(d.OldKeys, k.ID)
	}
	if err := j.save(ctx, d); err != nil {
		return jobView{}, false, err
	}
	j.running[db] = d
	go j.run(j.base, d)
	return d.view(), true, nil
}

// resume restarts the jobs a previous run left running.
func (j *keyJobs) resume() error {
	docs, err := j.stored(j.base)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, d := range docs {
		if d.State == jobRunning && j.running[d.Database] == nil {
			j.log.Info("resuming key job", "job", d.ID, attrDB, d.Database, "phase", d.Phase, "done", d.Done)
			j.running[d.Database] = d
			go j.run(j.base, d)
		}
	}
	return nil
}

// list returns every job, newest first: stored records, with the live
// progress of the jobs this process runs.
func (j *keyJobs) list(ctx context.Context) ([]jobView, error) {
	docs, err := j.stored(ctx)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	out := make([]jobView, 0, len(docs))
	for _, d := range docs {
		if live := j.running[d.Database]; live != nil && live.ID == d.ID {
			d = live
		}
		out = append(out, d.view())
	}
	j.mu.Unlock()
	slices.SortFunc(out, func(a, b jobView) int { return b.StartedAt.Compare(a.StartedAt) })
	return out, nil
}

// stored reads every job record.
func (j *keyJobs) stored(ctx context.Context) ([]*jobDoc, error) {
	keys, err := j.st.List(ctx, jobsPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	docs := make([]*jobDoc, 0, len(keys))
	for _, k := range keys {
		var d jobDoc
		found, err := getJSON(ctx, j.st, k, "job", &d)
		switch {
		case err != nil:
			return nil, err
		case !found:
			continue
		case d.ID == "":
			return nil, fmt.Errorf("read job %s: not a job record: %w", k, errCorrupt)
		}
		docs = append(docs, &d)
	}
	return docs, nil
}

// save stores d durably. The caller holds j.mu or owns d.
func (j *keyJobs) save(ctx context.Context, d *jobDoc) error {
	d.UpdatedAt = j.now().UTC()
	return putJSON(ctx, j.st, jobsPrefix+d.ID+".json", "job "+d.ID, d)
}

// update applies change to d under j.mu (GET /admin/jobs reads it) and
// stores it when store is set.
func (j *keyJobs) update(ctx context.Context, d *jobDoc, store bool, change func(d *jobDoc)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	change(d)
	if !store {
		return nil
	}
	return j.save(ctx, d)
}

// run runs rekey job d to its end, or until ctx ends (a later start
// resumes it). A failure is recorded in the job.
func (j *keyJobs) run(ctx context.Context, d *jobDoc) {
	err := j.rekey(ctx, d)
	if ctx.Err() != nil {
		return
	}
	now := j.now().UTC()
	if err != nil {
		j.log.Error("rekey failed", "job", d.ID, attrDB, d.Database, attrErr, err)
	} else {
		j.log.Info("rekey finished", "job", d.ID, attrDB, d.Database, "entities", d.Done)
	}
	serr := j.update(context.WithoutCancel(ctx), d, true, func(d *jobDoc) {
		d.State, d.Phase, d.FinishedAt = jobDone, "", &now
		if err != nil {
			d.State, d.Error = jobFailed, "the rekey stopped on an error (see the main worker's log); start it again to retry"
		}
	})
	if serr != nil {
		j.log.Error("save job", "job", d.ID, attrErr, serr)
	}
	j.mu.Lock()
	delete(j.running, d.Database)
	j.mu.Unlock()
}

// rekey runs the steps of the rekey d from its phase.
func (j *keyJobs) rekey(ctx context.Context, d *jobDoc) error {
	db := d.Database
	keys, err := j.ring.updateDataKeys(ctx, db, func(k *dataKeysDoc, exists bool) (bool, error) {
		if !exists {
			return false, fmt.Errorf("rekey %s: data keys missing: %w", db, errCorrupt)
		}
		if !slices.Contains(d.OldKeys, k.Active) {
			return false, nil // switched before a crash
		}
		w, err := j.ring.newDataKey(db)
		if err != nil {
			return false, err
		}
		k.Keys, k.Active = append(k.Keys, w), w.ID
		return true, nil
	})
	if err != nil {
		return err
	}
	epoch := max(j.ring.keysEpoch()+1, uint64(j.now().UnixNano()))
	j.ring.applyEpoch(epoch)
	j.log.Info("rekey: new data key active; waiting for the workers to apply it", "job", d.ID, attrDB, db)
	if err := j.barrier(ctx, epoch); err != nil {
		return err
	}
	if d.Phase == phaseSwitch {
		total, err := countEntities(ctx, j.st, db)
		if err != nil {
			return err
		}
		if err := j.update(ctx, d, true, func(d *jobDoc) { d.NewKey, d.Phase, d.Total = keys.Active, phaseReencrypt, total }); err != nil {
			return err
		}
	}
	pace := newPacer(j.rate)
	if d.Phase == phaseReencrypt {
		if err := j.reencryptJob(ctx, d, pace); err != nil {
			return err
		}
	}
	// Step 4: stragglers, then retire the old keys.
	if err := j.ring.reencrypt(ctx, db, d.NewKey, "", pace, nil); err != nil {
		return err
	}
	_, err = j.ring.updateDataKeys(ctx, db, func(k *dataKeysDoc, _ bool) (bool, error) {
		if k.Active != d.NewKey {
			return false, fmt.Errorf("rekey %s: active data key changed under the job: %w", db, errCorrupt)
		}
		k.Keys = slices.DeleteFunc(k.Keys, func(w wrappedDataKey) bool { return slices.Contains(d.OldKeys, w.ID) })
		k.Legacy = false
		return true, nil
	})
	return err
}

// reencryptJob is step 3: it re-encrypts from the job's cursor, storing
// progress every saveEvery.
func (j *keyJobs) reencryptJob(ctx context.Context, d *jobDoc, pace *pacer) error {
	last := j.now()
	err := j.ring.reencrypt(ctx, d.Database, d.NewKey, d.Cursor, pace, func(obj string) error {
		save := j.now().Sub(last) >= j.saveEvery
		if save {
			last = j.now()
		}
		return j.update(ctx, d, save, func(d *jobDoc) { d.Done++; d.Cursor = obj })
	})
	if err != nil {
		return err
	}
	return j.update(ctx, d, true, func(d *jobDoc) { d.Phase = phaseRetire })
}

// countEntities counts db's entities.
func countEntities(ctx context.Context, st store, db string) (int64, error) {
	var n int64
	after := ""
	for {
		objs, err := st.List(ctx, entityKeyPrefix(db, ""), after, 1000)
		if err != nil {
			return 0, fmt.Errorf("count entities of %s: %w", db, err)
		}
		if len(objs) == 0 {
			return n, nil
		}
		n += int64(len(objs))
		after = objs[len(objs)-1]
	}
}
