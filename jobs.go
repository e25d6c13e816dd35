package main

// Key jobs: the resumable background jobs of the main worker that rewrite
// keys or entities, a rekey of one database (rekey.go) and a master-key
// rotation (rotation.go). Each has a record in the storage, updated as it
// runs, that GET /admin/jobs lists and that a restart resumes from; a
// pacer spaces the objects they rewrite.

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

// Job kinds.
const (
	kindRekey  = "rekey"
	kindRotate = "rotate"
)

// Job states.
const (
	jobRunning = "running"
	jobDone    = "done"
	jobFailed  = "failed"
)

// jobDoc is a key job's record, stored at jobsPrefix+ID+".json".
type jobDoc struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // kindRekey or kindRotate
	// Database is the database a rekey rewrites; "" for a rotation,
	// which rewrites every database.
	Database string `json:"database,omitempty"`
	State    string `json:"state"`
	// Phase is the step a running job is at; "" once it ended.
	Phase string `json:"phase,omitempty"`
	// Done and Total count what the job rewrote and has to: a rekey's
	// entities, a rotation's databases.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// NewKey is the data key a rekey's entities move to; OldKeys the ones
	// it retires.
	NewKey  string   `json:"new_key,omitempty"`
	OldKeys []string `json:"old_keys,omitempty"`
	// Cursor is where the job resumes after: the object key of a rekey's
	// last entity re-encrypted, a rotation's last database done.
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
	Database   string     `json:"database,omitempty"`
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

// keyJobsConfig is what the key jobs of a main worker run with.
type keyJobsConfig struct {
	st   store
	ring *keyring
	log  *slog.Logger
	// rate is -key-job-rate.
	rate int
	// barrier returns once every available worker has applied data-key
	// epoch e (mainService.waitKeysEpoch), or ctx's error.
	barrier func(ctx context.Context, e uint64) error
	// keys counts a database's entities for a rekey's total; nil is an
	// index of its own over st (the main worker passes the catalog's).
	keys *keyIndex
	// rotation is the master-key rotation to run, nil when none is due
	// (the start found no -previous-master-key to rotate from).
	rotation *rotator
}

// keyJobs starts, runs and resumes the key jobs of the main worker. It
// is safe for concurrent use; build it with newKeyJobs.
type keyJobs struct {
	keyJobsConfig
	now func() time.Time
	// saveEvery is how often a running job's progress is stored.
	saveEvery time.Duration
	// base is the context jobs run in: it ends with the main worker.
	base context.Context
	// runs counts the jobs' goroutines, for wait.
	runs sync.WaitGroup

	mu sync.Mutex
	// running are the jobs this process runs, by database ("" for the
	// rotation).
	running map[string]*jobDoc
}

// newKeyJobs returns the job runner of the main worker; its jobs run
// until base ends. Call resume to start the jobs that are due.
func newKeyJobs(base context.Context, c keyJobsConfig) *keyJobs {
	if c.keys == nil {
		c.keys = newKeyIndex(c.st)
	}
	return &keyJobs{keyJobsConfig: c, now: time.Now, saveEvery: time.Second, base: base, running: map[string]*jobDoc{}}
}

// resume restarts the jobs a previous run left running and starts the
// rotation if one is due and not among them.
func (j *keyJobs) resume() error {
	docs, err := j.stored(j.base)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, d := range docs {
		switch {
		case d.State != jobRunning || j.running[d.Database] != nil:
		case d.Kind == kindRotate && j.rotation == nil:
			// The start found no rotation record: the rotation ended
			// before its job record said so.
			now := j.now().UTC()
			d.State, d.Phase, d.FinishedAt = jobDone, "", &now
			if err := j.save(j.base, d); err != nil {
				return err
			}
		default:
			j.log.Info("resuming key job", "job", d.ID, "kind", d.Kind, attrDB, d.Database, "phase", d.Phase, "done", d.Done)
			j.running[d.Database] = d
			j.launch(d)
		}
	}
	if j.rotation != nil && j.running[""] == nil {
		d, err := j.newJob(kindRotate, "")
		if err != nil {
			return err
		}
		d.Phase = phaseRewrap
		return j.start(j.base, d)
	}
	return nil
}

// newJob returns the record of a new job of kind on db, running.
func (j *keyJobs) newJob(kind, db string) (*jobDoc, error) {
	id := make([]byte, 8)
	if _, err := io.ReadFull(j.ring.rand, id); err != nil {
		return nil, fmt.Errorf("new job ID: %w", err)
	}
	now := j.now().UTC()
	return &jobDoc{ID: kind + "-" + hex.EncodeToString(id), Kind: kind, Database: db, State: jobRunning,
		StartedAt: now, UpdatedAt: now}, nil
}

// start stores the record of the new job d and runs it. The caller holds
// j.mu.
func (j *keyJobs) start(ctx context.Context, d *jobDoc) error {
	if err := j.save(ctx, d); err != nil {
		return err
	}
	j.running[d.Database] = d
	j.launch(d)
	return nil
}

// launch runs job d in a goroutine of its own, until it ends or base
// does.
func (j *keyJobs) launch(d *jobDoc) {
	j.runs.Add(1)
	go func() {
		defer j.runs.Done()
		j.run(j.base, d)
	}()
}

// wait returns once every job goroutine has returned: after base ended,
// promptly, since each stops at its next object.
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
	return putJSON(ctx, j.st, jobObjectKey(d.ID), "job "+d.ID, d)
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

// run runs job d to its end, or until ctx ends (a later start resumes
// it). A failure is recorded in the job.
func (j *keyJobs) run(ctx context.Context, d *jobDoc) {
	var err error
	failed := "the rekey stopped on an error (see the main worker's log); start it again to retry"
	if d.Kind == kindRotate {
		err = j.rotate(ctx, d)
		failed = "the master-key rotation stopped on an error (see the main worker's log); restart the main worker with both keys to resume it"
	} else {
		err = j.rekey(ctx, d)
	}
	if ctx.Err() != nil {
		return
	}
	now := j.now().UTC()
	if err != nil {
		j.log.Error("key job failed", "job", d.ID, "kind", d.Kind, attrDB, d.Database, attrErr, err)
	} else {
		j.log.Info("key job finished", "job", d.ID, "kind", d.Kind, attrDB, d.Database, "done", d.Done)
	}
	serr := j.update(context.WithoutCancel(ctx), d, true, func(d *jobDoc) {
		d.State, d.Phase, d.FinishedAt = jobDone, "", &now
		if err != nil {
			d.State, d.Error = jobFailed, failed
		}
	})
	if serr != nil {
		j.log.Error("save job", "job", d.ID, attrErr, serr)
	}
	j.mu.Lock()
	delete(j.running, d.Database)
	j.mu.Unlock()
}

// progress returns the progress callback of job d: it applies change to
// d, storing it at most every saveEvery (and when final is set).
func (j *keyJobs) progress(ctx context.Context, d *jobDoc) func(final bool, change func(d *jobDoc)) error {
	last := j.now()
	return func(final bool, change func(d *jobDoc)) error {
		save := final || j.now().Sub(last) >= j.saveEvery
		if save {
			last = j.now()
		}
		return j.update(ctx, d, save, change)
	}
}

// phaseRewrap is the one phase of a running rotation.
const phaseRewrap = "rewrap"

// rotate runs the rotation job d: every database after its cursor, then
// the end of the rotation (rotator.run).
func (j *keyJobs) rotate(ctx context.Context, d *jobDoc) error {
	base := d.Done
	step := j.progress(ctx, d)
	return j.rotation.run(ctx, newPacer(j.rate), d.Cursor, func(db string, n, total int) error {
		return step(n == 0, func(d *jobDoc) {
			d.Done, d.Total = base+int64(n), base+int64(total)
			if db != "" {
				d.Cursor = db
			}
		})
	})
}
