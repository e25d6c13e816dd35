package main

// Re-encryption of a database's entities, run by the main worker beside
// the traffic it routes: the upgrade of format-1 entities (during a
// master-key rotation) and the rekey job (POST /admin/databases/{db}/rekey).
// Each entity is resealed under its lock (the same lock a worker's write
// takes, which on the filesystem excludes other processes) with a
// conditional write on the revision read (which catches writers on S3),
// keeping its nonce and write time, so its ETag does not change.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// reencryptBatch is how many entity keys one listing of a re-encryption
// reads.
const reencryptBatch = 256

// upgradeDatabase reseals db's format-1 entities under db's active data
// key (creating it if needed), then clears the Legacy mark.
func (k *keyring) upgradeDatabase(ctx context.Context, db string, pace *pacer) error {
	if err := k.prepare(ctx, db); err != nil {
		return err
	}
	doc, _, err := readDataKeys(ctx, k.st, db)
	if err != nil {
		return err
	}
	if err := k.reencrypt(ctx, db, doc.Active, "", pace, nil); err != nil {
		return err
	}
	_, err = k.updateDataKeys(ctx, db, func(doc *dataKeysDoc, exists bool) (bool, error) {
		changed := doc.Legacy
		doc.Legacy = false
		return exists && changed, nil
	})
	return err
}

// reencrypt reseals, in key order after the object key startAfter (""
// from the first), every entity of db that is not format 2 under data key
// id. progress, unless nil, is told each object key done.
func (k *keyring) reencrypt(ctx context.Context, db, id, startAfter string, pace *pacer, progress func(objKey string) error) error {
	s, err := k.dataSealer(ctx, db, id)
	if err != nil {
		return err
	}
	prefix := entityKeyPrefix(db, "")
	for {
		objs, err := k.st.List(ctx, prefix, startAfter, reencryptBatch)
		if err != nil {
			return fmt.Errorf("re-encrypt %s: %w", db, err)
		}
		if len(objs) == 0 {
			return nil
		}
		for _, obj := range objs {
			if err := pace.wait(ctx); err != nil {
				return fmt.Errorf("re-encrypt %s: %w", db, err)
			}
			if err := k.resealEntity(ctx, db, obj, s); err != nil {
				return err
			}
			if progress != nil {
				if err := progress(obj); err != nil {
					return err
				}
			}
			startAfter = obj
		}
	}
}

// resealEntity reseals the entity at object key obj of db under s unless
// it is sealed under s already or gone.
func (k *keyring) resealEntity(ctx context.Context, db, obj string, s *sealer) error {
	key, err := decodeEntityObjectName(strings.TrimPrefix(obj, entityKeyPrefix(db, "")))
	if err != nil {
		return fmt.Errorf("re-encrypt %s: %w", db, err)
	}
	for attempt := 1; ; attempt++ {
		err := k.resealOnce(ctx, db, key, obj, s)
		if errors.Is(err, errPrecondition) && attempt < maxWriteAttempts {
			continue // written meanwhile (S3): look again
		}
		if err != nil {
			return fmt.Errorf("re-encrypt %s/%q: %w", db, key, err)
		}
		return nil
	}
}

// resealOnce is one attempt of resealEntity.
func (k *keyring) resealOnce(ctx context.Context, db, key, obj string, s *sealer) error {
	unlock, err := lockObject(ctx, &k.locks, k.st, obj)
	if err != nil {
		return err
	}
	defer unlock()
	sealed, rev, err := k.st.GetRev(ctx, obj)
	if errors.Is(err, errNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if h, _, err := parseHeader(sealed); err == nil && h.Format == formatDataKey && h.KeyID == s.keyID {
		return nil
	}
	doc, h, err := k.open(ctx, db, key, sealed)
	if err != nil {
		return err
	}
	_, err = k.st.PutIf(ctx, obj, s.reseal(h, db, key, doc), rev)
	return err
}

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
	// runs counts the jobs' goroutines, for wait.
	runs sync.WaitGroup

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
	j.start(d)
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
			j.start(d)
		}
	}
	return nil
}

// start runs job d in a goroutine of its own, until it ends or base does.
func (j *keyJobs) start(d *jobDoc) {
	j.runs.Add(1)
	go func() {
		defer j.runs.Done()
		j.run(j.base, d)
	}()
}

// wait returns once every job started has returned: after base ended,
// once they have stopped using the store and the keyring.
func (j *keyJobs) wait() { j.runs.Wait() }

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
		raw, err := j.st.Get(ctx, k)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read job: %w", err)
		}
		var d jobDoc
		if err := json.Unmarshal(raw, &d); err != nil || d.ID == "" {
			return nil, fmt.Errorf("read job %s: not a job record: %w", k, errCorrupt)
		}
		docs = append(docs, &d)
	}
	return docs, nil
}

// save stores d durably. The caller holds j.mu or owns d.
func (j *keyJobs) save(ctx context.Context, d *jobDoc) error {
	d.UpdatedAt = j.now().UTC()
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("save job %s: %w", d.ID, err)
	}
	if err := j.st.Put(ctx, jobsPrefix+d.ID+".json", append(raw, '\n')); err != nil {
		return fmt.Errorf("save job %s: %w", d.ID, err)
	}
	return nil
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
