package main

// Regression test of a finding on key jobs: an admin key limited
// to some databases saw every database's jobs in GET /admin/jobs.

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestScopedAdminKeyJobs: an admin key limited to "mine*" lists the jobs
// of its databases only, and cannot start a rekey of another; the admin
// key sees both jobs.
func TestScopedAdminKeyJobs(t *testing.T) {
	n, _ := startDefault(t)
	for _, db := range []string{"mine1", "theirs"} {
		if code, out, _ := n.call("PUT", "/entity/"+db, testAdminKey, `{"k":{"a":1}}`); code != 200 {
			t.Fatalf("PUT %s/k = %d %s", db, code, out)
		}
		if code, out, _ := n.call("POST", "/admin/databases/"+db+"/rekey", testAdminKey, nil); code != http.StatusAccepted {
			t.Fatalf("POST /admin/databases/%s/rekey = %d %s", db, code, out)
		}
	}
	code, out, _ := n.call("POST", "/api/keys", testAdminKey, map[string]any{"name": "ops-mine", "permissions": []string{"admin"}, "databases": []string{"mine*"}})
	var key struct{ Secret string }
	if err := json.Unmarshal(out, &key); code != http.StatusCreated || err != nil {
		t.Fatalf("POST /api/keys = %d %s", code, out)
	}
	jobDBs := func(cred string) []string {
		t.Helper()
		code, out, _ := n.call("GET", "/admin/jobs", cred, nil)
		var jobs []struct{ Database string }
		if err := json.Unmarshal(out, &jobs); code != 200 || err != nil {
			t.Fatalf("GET /admin/jobs = %d %s", code, out)
		}
		var dbs []string
		for _, j := range jobs {
			dbs = append(dbs, j.Database)
		}
		return dbs
	}
	if got := jobDBs(key.Secret); len(got) != 1 || got[0] != "mine1" {
		t.Errorf("GET /admin/jobs with a key limited to mine* lists jobs of %q, want only mine1's", got)
	}
	if got := jobDBs(testAdminKey); len(got) != 2 {
		t.Errorf("GET /admin/jobs with the admin key lists jobs of %q, want mine1's and theirs'", got)
	}
	if code, out, _ := n.call("POST", "/admin/databases/theirs/rekey", key.Secret, nil); code != http.StatusForbidden {
		t.Errorf("POST /admin/databases/theirs/rekey with a key limited to mine* = %d %s, want 403", code, out)
	}
}
