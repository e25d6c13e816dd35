package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// waitCheck polls GET /api/databases/{db}/check until the check is no
// longer running and returns it.
func (ts *authTestServer) waitCheck(t *testing.T, db string) checkJob {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var j checkJob
		if err := json.Unmarshal(ts.mustDo(t, "GET", "/api/databases/"+db+"/check", testAdminKey, "", 200), &j); err != nil {
			t.Fatal(err)
		}
		if j.State != jobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("check of %s still running after 20 s: %+v", db, j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCheckStoredEntities: a check reads every stored entity and lists the
// ones that do not match the bound schema, in key order, with their
// violations; it changes nothing and shows in GET /admin/jobs.
func TestCheckStoredEntities(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/schema/chat.v1", testAdminKey, `{"type":"object","required":["messages"],"properties":{"messages":{"type":"array","items":{"type":"object","required":["role"],"properties":{"role":{"enum":["user","assistant"]}}}}}}`, 200)
	ts.mustDo(t, "PUT", "/entity/chats", testAdminKey, `{"a":{"messages":[]},"b":{"msgs":[]},"c":{"messages":[{"role":"user"}]},
		"d":{"messages":[{"role":"x"},{"role":"y"},{"role":"z"},{},{"role":1}]},"e":{"messages":[]},"f":"not an object"}`, 200)
	rec := ts.do("POST", "/api/databases/chats/check", testAdminKey, "", "")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "bound to no schema") {
		t.Errorf("a check of an unbound database = %d %s, want 400 naming the missing binding", rec.Code, rec.Body)
	}
	ts.mustDo(t, "PUT", "/api/databases/chats", testAdminKey, `{"schema":"chat.v1"}`, 200)
	before := ts.mustDo(t, "POST", "/api/databases/chats/get", testAdminKey, `{"keys":["a","b","c","d","e","f"]}`, 200)
	var started checkJob
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/chats/check", testAdminKey, "", 202), &started); err != nil {
		t.Fatal(err)
	}
	if started.Kind != "check" || started.Schema != "chat.v1" || started.Database != "chats" || !strings.HasPrefix(started.ID, "check-") {
		t.Errorf("started check = %+v", started)
	}
	j := ts.waitCheck(t, "chats")
	if j.ID != started.ID || j.State != jobDone || j.Done != 6 || j.Total != 6 || j.Mismatched != 3 || j.FinishedAt == nil {
		t.Fatalf("finished check = %+v, want done, 6 of 6, 3 mismatched", j)
	}
	var keys []string
	for _, m := range j.Mismatches {
		keys = append(keys, m.Key)
	}
	if strings.Join(keys, ",") != "b,d,f" {
		t.Errorf("mismatches %v, want b, d, f in key order", keys)
	}
	d := j.Mismatches[1]
	if len(d.Errors) != maxCheckIssues || d.Omitted != 2 || d.Errors[0].Path != "/messages/0/role" {
		t.Errorf("mismatch of d = %+v, want the first %d of its 5 violations and 2 omitted", d, maxCheckIssues)
	}
	if after := ts.mustDo(t, "POST", "/api/databases/chats/get", testAdminKey, `{"keys":["a","b","c","d","e","f"]}`, 200); string(after) != string(before) {
		t.Errorf("the check changed the entities or their ETags:\n%s\nwas\n%s", after, before)
	}
	var jobs []jobView
	json.Unmarshal(ts.mustDo(t, "GET", "/admin/jobs", testAdminKey, "", 200), &jobs)
	if len(jobs) != 1 || jobs[0].Kind != "check" || jobs[0].ID != j.ID || jobs[0].Done != 6 {
		t.Errorf("GET /admin/jobs = %+v, want the check", jobs)
	}

	// Against a named schema, and the errors of the routes.
	ts.mustDo(t, "PUT", "/schema/any.v1", testAdminKey, `{}`, 200)
	ts.mustDo(t, "POST", "/api/databases/chats/check", testAdminKey, `{"schema":"any.v1"}`, 202)
	if j := ts.waitCheck(t, "chats"); j.Schema != "any.v1" || j.Mismatched != 0 || j.Done != 6 {
		t.Errorf("check against any.v1 = %+v, want 6 checked, none mismatched", j)
	}
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/api/databases/chats/check", `{"schema":"nope.v1"}`, "400 unknown schema"},
		{"POST", "/api/databases/chats/check", `{"schema":"bad..id"}`, "400 "},
		{"POST", "/api/databases/chats/check", `{"schema":1}`, "400 body must be"},
		{"POST", "/api/databases/chats/check", `{"db":"x"}`, "400 unknown member"},
		{"POST", "/api/databases/bad..db/check", "", "400 "},
		{"GET", "/api/databases/never/check", "", "404 no check of database"},
		{"POST", "/api/databases/never/check", `{"schema":"any.v1"}`, "404 has no entities and no settings"},
	} {
		rec := ts.do(tc.method, tc.path, testAdminKey, tc.body, "")
		if got := fmt.Sprintf("%d %s", rec.Code, rec.Body); !strings.HasPrefix(got, tc.want[:4]) || !strings.Contains(got, tc.want[4:]) {
			t.Errorf("%s %s %s = %s, want %s", tc.method, tc.path, tc.body, got, tc.want)
		}
	}
}

// TestSchemaDatabases: GET /schema/{id}/databases lists the databases bound
// to it that the credential may use.
func TestSchemaDatabases(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/schema/s.v1", testAdminKey, `{}`, 200)
	for _, db := range []string{"team-b", "team-a", "other"} {
		ts.mustDo(t, "PUT", "/api/databases/"+db, testAdminKey, `{"schema":"s.v1"}`, 200)
	}
	scoped := ts.createKey(t, `{"name":"s","permissions":["read"],"databases":["team-*"]}`)
	for cred, want := range map[string]string{testAdminKey: `{"databases":["other","team-a","team-b"]}`, scoped.Secret: `{"databases":["team-a","team-b"]}`} {
		if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/schema/s.v1/databases", cred, "", 200))); got != want {
			t.Errorf("GET /schema/s.v1/databases = %s, want %s", got, want)
		}
	}
	ts.mustDo(t, "PUT", "/schema/unbound.v1", testAdminKey, `{}`, 200)
	if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/schema/unbound.v1/databases", testAdminKey, "", 200))); got != `{"databases":[]}` {
		t.Errorf("an unbound schema's databases = %s, want []", got)
	}
	if rec := ts.do("GET", "/schema/never.v1/databases", testAdminKey, "", ""); rec.Code != 404 || !strings.Contains(rec.Body.String(), `schema \"never.v1\" not found`) {
		t.Errorf("the databases of a schema that does not exist = %d %s, want 404 naming it", rec.Code, rec.Body)
	}
}

// blockingCheckData is check data whose reads wait until release is
// closed.
func blockingCheckData(n int, release chan struct{}, bad func(key string) bool) checkData {
	return checkData{
		count: func(context.Context, string) (int, error) { return n, nil },
		keys: func(_ context.Context, _, after string, limit int) ([]string, bool, error) {
			var out []string
			for i := 0; i < n && len(out) < limit; i++ {
				if k := fmt.Sprintf("k%04d", i); k > after {
					out = append(out, k)
				}
			}
			return out, len(out) == limit, nil
		},
		read: func(ctx context.Context, _, key string) ([]byte, bool, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			return []byte(`"` + key + `"`), true, nil
		},
		validate: func(_ context.Context, _ string, doc []byte) error {
			if bad(strings.Trim(string(doc), `"`)) {
				return &validationError{Issues: []validationIssue{{Path: "", Message: "bad"}}}
			}
			return nil
		},
	}
}

// TestCheckBudgets: one check per database at a time, at most
// maxRunningChecks at once, at most maxCheckMismatches listed, at most
// maxCheckResults databases kept; stop ends the running jobs and waits.
func TestCheckBudgets(t *testing.T) {
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &checkJobs{log: slog.New(slog.DiscardHandler), now: time.Now, rand: &countingReader{}, ctx: ctx, byDB: map[string]*checkJob{},
		data: blockingCheckData(150, release, func(string) bool { return true })}
	c.stop = func() { cancel(); c.wg.Wait() }
	first, started, err := c.start("db1", "s")
	if err != nil || !started {
		t.Fatalf("start db1 = %v, %v", started, err)
	}
	again, started, err := c.start("db1", "s")
	if err != nil || started || again.ID != first.ID {
		t.Errorf("a second start of db1 = %+v started %v (%v), want the running one", again, started, err)
	}
	if _, _, err := c.start("db2", "s"); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.start("db3", "s")
	var rl *rateLimitError
	if !errors.As(err, &rl) || !strings.Contains(err.Error(), "2 checks are running") {
		t.Errorf("a third running check = %v, want 429 naming the limit", err)
	}
	close(release)
	for _, db := range []string{"db1", "db2"} {
		for {
			j, _ := c.get(db)
			if j.State != jobRunning {
				if j.State != jobDone || j.Mismatched != 150 || len(j.Mismatches) != maxCheckMismatches || j.Mismatches[99].Key != "k0099" {
					t.Errorf("check of %s = %s, %d mismatched, %d listed; want done, 150, %d", db, j.State, j.Mismatched, len(j.Mismatches), maxCheckMismatches)
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	c.data = blockingCheckData(1, release, func(string) bool { return false })
	for i := 0; i < maxCheckResults+10; {
		if _, _, err := c.start(fmt.Sprintf("many%02d", i), "s"); err != nil {
			time.Sleep(2 * time.Millisecond) // two are running: wait for one to end
			continue
		}
		i++
	}
	c.stop()
	c.mu.Lock()
	n, running := len(c.byDB), c.running
	c.mu.Unlock()
	if n > maxCheckResults+maxRunningChecks || running != 0 {
		t.Errorf("after %d checks %d results are kept and %d run, want at most %d kept and none running", maxCheckResults+12, n, running, maxCheckResults+maxRunningChecks)
	}
}

// TestCheckFails: a check whose schema disappears, or whose storage
// fails, ends failed with a sentence; the next one can start.
func TestCheckFails(t *testing.T) {
	release := make(chan struct{})
	close(release)
	for _, tc := range []struct {
		validate error
		want     string
	}{
		{fmt.Errorf("validate: %w", errNotFound), `the check stopped: schema "s" was deleted during the check`},
		{fmt.Errorf("read: %w", errCorrupt), "the check stopped on an error (see the main worker's log); start it again to retry"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		c := &checkJobs{log: slog.New(slog.DiscardHandler), now: time.Now, rand: &countingReader{}, ctx: ctx, byDB: map[string]*checkJob{},
			data: blockingCheckData(3, release, func(string) bool { return false })}
		c.stop = func() { cancel(); c.wg.Wait() }
		c.data.validate = func(context.Context, string, []byte) error { return tc.validate }
		c.start("db", "s")
		c.wg.Wait()
		if j, _ := c.get("db"); j.State != jobFailed || j.Error != tc.want {
			t.Errorf("check with validation error %v = %s %q, want failed %q", tc.validate, j.State, j.Error, tc.want)
		}
		if _, started, err := c.start("db", "s"); !started || err != nil {
			t.Errorf("a new check after a failed one: started %v, %v", started, err)
		}
		c.stop()
	}
}
