package main

// Checks of stored entities against a schema: binding a
// database to a schema validates every later write, not the entities
// already stored. POST /api/databases/{db}/check starts a job that reads
// each of them through the data plane and validates it; GET
// /api/databases/{db}/check follows its progress and lists the entities
// that do not match. The jobs live in memory (they change nothing, so a
// restart loses only their result) and appear in GET /admin/jobs beside
// the key jobs.
//
// Budgets: one check per database at a time, at most maxRunningChecks
// running in the process (429 beyond), one entity read at a time per job,
// at most maxCheckMismatches entities listed (the rest counted) with at
// most maxCheckIssues violations each, and the results of at most
// maxCheckResults databases kept (the oldest finished are dropped).

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	maxRunningChecks   = 2
	maxCheckMismatches = 100
	maxCheckIssues     = 3
	maxCheckResults    = 64
	// checkPage is how many keys one listing of a check reads.
	checkPage = 500
)

// checkMismatch is an entity that does not match the schema.
type checkMismatch struct {
	Key    string            `json:"key"`
	Errors []validationIssue `json:"errors"`
	// Omitted counts the violations beyond Errors.
	Omitted int `json:"omitted,omitempty"`
}

// checkJob is one check, as GET /api/databases/{db}/check answers it.
type checkJob struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Database string `json:"database"`
	Schema   string `json:"schema"`
	State    string `json:"state"`
	// Done counts the entities checked (or gone meanwhile) of Total, the
	// entities counted at the start.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Mismatched counts the entities that do not match; Mismatches lists
	// the first maxCheckMismatches of them, in key order.
	Mismatched int64           `json:"mismatched"`
	Mismatches []checkMismatch `json:"mismatches"`
	Error      string          `json:"error,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

// checkData is what a check reads: the data plane and the schemas.
type checkData struct {
	// keys lists a page of db's entity keys after a key, in order.
	keys func(ctx context.Context, db, after string, limit int) ([]string, bool, error)
	// count counts db's entities.
	count func(ctx context.Context, db string) (int, error)
	// read returns an entity's document; found is false when it is gone.
	read func(ctx context.Context, db, key string) (doc []byte, found bool, err error)
	// validate checks a document against a schema (schemaRegistry.Validate).
	validate func(ctx context.Context, id string, doc []byte) error
}

// checkJobs runs the checks. It is safe for concurrent use; build it with
// newCheckJobs and stop it with stop, which waits for the running jobs.
type checkJobs struct {
	data checkData
	log  *slog.Logger
	now  func() time.Time
	rand io.Reader
	ctx  context.Context
	stop func()
	wg   sync.WaitGroup

	mu sync.Mutex
	// byDB holds the latest check of each database; running counts those
	// still running.
	byDB    map[string]*checkJob
	running int
}

// newCheckJobs returns the check runner of s; its jobs run until base
// ends or stop is called.
func (s *restServer) newCheckJobs(base context.Context) *checkJobs {
	ctx, cancel := context.WithCancel(base)
	c := &checkJobs{log: s.log, now: time.Now, rand: cryptoRand, ctx: ctx, byDB: map[string]*checkJob{},
		data: checkData{
			keys: func(ctx context.Context, db, after string, limit int) ([]string, bool, error) {
				return s.data.catalog.keys.page(ctx, db, "", after, limit)
			},
			count: s.data.catalog.keys.count,
			read: func(ctx context.Context, db, key string) ([]byte, bool, error) {
				doc, _, found, err := s.data.readEntity(ctx, db, key)
				return doc, found, err
			},
			validate: s.data.schemas.Validate,
		}}
	c.stop = func() {
		cancel()
		c.wg.Wait()
	}
	return c
}

// start starts a check of db against schema id, or returns the one
// running for db (started false). A process already running
// maxRunningChecks refuses with errRateLimited.
func (c *checkJobs) start(db, id string) (view checkJob, started bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.byDB[db]; j != nil && j.State == jobRunning {
		return c.viewOf(j), false, nil
	}
	if c.running >= maxRunningChecks {
		return checkJob{}, false, &rateLimitError{retryAfter: 5 * time.Second,
			reason: fmt.Sprintf("%d checks are running, the most at once; retry when one ends", maxRunningChecks)}
	}
	raw := make([]byte, 8)
	if _, err := io.ReadFull(c.rand, raw); err != nil {
		return checkJob{}, false, fmt.Errorf("new check ID: %w", err)
	}
	now := c.now().UTC()
	j := &checkJob{ID: "check-" + hex.EncodeToString(raw), Kind: "check", Database: db, Schema: id, State: jobRunning,
		Mismatches: []checkMismatch{}, StartedAt: now, UpdatedAt: now}
	c.byDB[db] = j
	c.running++
	c.dropOldest()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.finish(j, c.run(c.ctx, j))
	}()
	return c.viewOf(j), true, nil
}

// dropOldest forgets the oldest finished checks beyond maxCheckResults.
// The caller holds c.mu.
func (c *checkJobs) dropOldest() {
	for len(c.byDB) > maxCheckResults {
		var oldest *checkJob
		for _, j := range c.byDB {
			if j.State != jobRunning && (oldest == nil || j.StartedAt.Before(oldest.StartedAt)) {
				oldest = j
			}
		}
		if oldest == nil {
			return
		}
		delete(c.byDB, oldest.Database)
	}
}

// get returns the latest check of db.
func (c *checkJobs) get(db string) (checkJob, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.byDB[db]
	if !ok {
		return checkJob{}, false
	}
	return c.viewOf(j), true
}

// jobs returns every check kept, as GET /admin/jobs lists jobs.
func (c *checkJobs) jobs() []jobView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]jobView, 0, len(c.byDB))
	for _, j := range c.byDB {
		out = append(out, jobView{ID: j.ID, Kind: j.Kind, Database: j.Database, State: j.State, Done: j.Done, Total: j.Total,
			Error: j.Error, StartedAt: j.StartedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt})
	}
	return out
}

// viewOf copies j for a reader. The caller holds c.mu.
func (c *checkJobs) viewOf(j *checkJob) checkJob {
	v := *j
	v.Mismatches = slices.Clone(j.Mismatches)
	return v
}

// update changes j under c.mu.
func (c *checkJobs) update(j *checkJob, change func(j *checkJob)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	change(j)
	j.UpdatedAt = c.now().UTC()
}

// run checks every entity of j's database, in key order.
func (c *checkJobs) run(ctx context.Context, j *checkJob) error {
	total, err := c.data.count(ctx, j.Database)
	if err != nil {
		return err
	}
	c.update(j, func(j *checkJob) { j.Total = int64(total) })
	after := ""
	for {
		keys, more, err := c.data.keys(ctx, j.Database, after, checkPage)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := c.checkOne(ctx, j, k); err != nil {
				return err
			}
		}
		if !more || len(keys) == 0 {
			return nil
		}
		after = keys[len(keys)-1]
	}
}

// checkOne reads and validates entity key of j's database.
func (c *checkJobs) checkOne(ctx context.Context, j *checkJob, key string) error {
	doc, found, err := c.data.read(ctx, j.Database, key)
	if err != nil {
		return err
	}
	if found {
		err = c.data.validate(ctx, j.Schema, doc)
	}
	bad, err := mismatchOf(key, err)
	if err != nil {
		if errors.Is(err, errNotFound) {
			return reqErrorf(errNotFound, "schema %q was deleted during the check", j.Schema)
		}
		return err
	}
	c.update(j, func(j *checkJob) {
		j.Done++
		if bad == nil {
			return
		}
		j.Mismatched++
		if len(j.Mismatches) < maxCheckMismatches {
			j.Mismatches = append(j.Mismatches, *bad)
		}
	})
	return nil
}

// mismatchOf is the mismatch a validation of entity key ended in: nil
// when it passed, the violations when it did not match, one sentence for
// a document over a budget; err for anything else (a failed check).
func mismatchOf(key string, err error) (*checkMismatch, error) {
	var ve *validationError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &ve):
		n := min(len(ve.Issues), maxCheckIssues)
		return &checkMismatch{Key: key, Errors: ve.Issues[:n], Omitted: len(ve.Issues) - n + ve.Omitted}, nil
	case errors.Is(err, errInvalid), errors.Is(err, errTooLarge):
		if msg, ok := clientMessage(err); ok {
			return &checkMismatch{Key: key, Errors: []validationIssue{{Path: "", Message: msg}}}, nil
		}
	}
	return nil, err
}

// finish records the end of j: done, or failed with a sentence.
func (c *checkJobs) finish(j *checkJob, err error) {
	now := c.now().UTC()
	if err != nil && c.ctx.Err() == nil {
		c.log.Error("schema check failed", "job", j.ID, attrDB, j.Database, attrSchema, j.Schema, attrErr, err)
	}
	c.update(j, func(j *checkJob) {
		j.State, j.FinishedAt = jobDone, &now
		if err != nil {
			j.State = jobFailed
			j.Error = "the check stopped on an error (see the main worker's log); start it again to retry"
			if msg, ok := clientMessage(err); ok {
				j.Error = "the check stopped: " + msg
			}
			if c.ctx.Err() != nil {
				j.Error = "the check stopped: the server is shutting down"
			}
		}
	})
	c.mu.Lock()
	c.running--
	c.mu.Unlock()
}

// withCheckJobs adds the checks of c (nil: none) to the key jobs of GET
// /admin/jobs, newest first.
func withCheckJobs(jobs []jobView, c *checkJobs) []jobView {
	if c == nil {
		return jobs
	}
	jobs = append(jobs, c.jobs()...)
	slices.SortFunc(jobs, func(a, b jobView) int { return b.StartedAt.Compare(a.StartedAt) })
	return jobs
}

// checksAvailable refuses the check routes on a server without checks
// (one built without them; the binary always runs them): 404 with its
// sentence, as jobsAvailable.
func (s *restServer) checksAvailable() error {
	if s.checks == nil {
		return reqErrorf(errNotFound, "this server runs no entity checks")
	}
	return nil
}

// handleStartCheck is POST /api/databases/{db}/check [{"schema": ID}]:
// 202 with the check started, or the one already running. Without a
// schema in the body, the database's bound schema.
func (s *restServer) handleStartCheck(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	var req struct {
		Schema string `json:"schema"`
	}
	if err := s.decodeOptionalBody(w, r, &req, `{"schema"?: ID} or nothing`); err != nil {
		return err
	}
	// A database with no entities and no settings is 404, as its GET is.
	if _, err := s.data.database(r.Context(), db); err != nil {
		return err
	}
	id, err := s.checkSchema(r.Context(), db, req.Schema)
	if err != nil {
		return err
	}
	if err := s.checksAvailable(); err != nil {
		return err
	}
	job, started, err := s.checks.start(db, id)
	if err != nil {
		return err
	}
	if started {
		s.log.InfoContext(r.Context(), "schema check started", "job", job.ID, attrDB, db, attrSchema, id, attrClient, p.clientID)
	}
	writeJSON(w, http.StatusAccepted, job)
	return nil
}

// checkSchema is the schema a check of db uses: named (it must exist), or
// the one db is bound to.
func (s *restServer) checkSchema(ctx context.Context, db, named string) (string, error) {
	if named == "" {
		id, err := s.data.catalog.bindings.get(ctx, db)
		if err != nil {
			return "", err
		}
		if id == "" {
			return "", reqErrorf(errInvalid, `database %q is bound to no schema: bind one, or name it: {"schema": ID}`, db)
		}
		return id, nil
	}
	if err := validateSchemaID(named); err != nil {
		return "", err
	}
	if _, err := s.data.schemas.Get(ctx, named); errors.Is(err, errNotFound) {
		return "", reqErrorf(errInvalid, "unknown schema %q", named)
	} else if err != nil {
		return "", fmt.Errorf("check %s: %w", db, err)
	}
	return named, nil
}

// handleGetCheck is GET /api/databases/{db}/check: the latest check of
// db, running or finished.
func (s *restServer) handleGetCheck(w http.ResponseWriter, r *http.Request, _ principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	if err := s.checksAvailable(); err != nil {
		return err
	}
	job, ok := s.checks.get(db)
	if !ok {
		return reqErrorf(errNotFound, "no check of database %q has run since the server started", db)
	}
	writeJSON(w, http.StatusOK, job)
	return nil
}

// handleSchemaDatabases is GET /schema/{id}/databases: the databases
// bound to schema id that the credential may use; 404 for a schema that
// neither exists nor is bound (a binding outlives a schema file removed
// by hand, and is still listed).
func (s *restServer) handleSchemaDatabases(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	dbs, err := s.data.catalog.bindings.boundTo(r.Context(), id)
	if err != nil {
		return fmt.Errorf("databases bound to %s: %w", id, err)
	}
	if len(dbs) == 0 {
		if _, err := s.data.schema(r.Context(), id); err != nil {
			return err
		}
	}
	visible := []string{}
	for _, db := range dbs {
		if p.allowsDB(db) {
			visible = append(visible, db)
		}
	}
	slices.Sort(visible)
	writeJSON(w, http.StatusOK, map[string][]string{"databases": visible})
	return nil
}
