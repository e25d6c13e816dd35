package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// keyAnswer is a key as GET /api/keys, PATCH and rotate answer it.
type keyAnswer struct {
	ID                string     `json:"id"`
	Name              string     `json:"name"`
	Secret            string     `json:"secret"`
	Permissions       []string   `json:"permissions"`
	Databases         []string   `json:"databases"`
	ExpiresAt         *time.Time `json:"expires_at"`
	LastUsedAt        *time.Time `json:"last_used_at"`
	RotatedAt         *time.Time `json:"rotated_at"`
	PreviousExpiresAt *time.Time `json:"previous_secret_expires_at"`
}

// listedKey returns the key id as GET /api/keys lists it.
func (ts *authTestServer) listedKey(t *testing.T, id string) keyAnswer {
	t.Helper()
	return keyIn(t, ts.mustDo(t, "GET", "/api/keys", testAdminKey, "", 200), id)
}

// keyIn returns key id of a GET /api/keys answer.
func keyIn(t *testing.T, answer []byte, id string) keyAnswer {
	t.Helper()
	var keys []keyAnswer
	if err := json.Unmarshal(answer, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("GET /api/keys lists no key %s", id)
	return keyAnswer{}
}

// meStatus is the status of GET /api/me with cred.
func (ts *authTestServer) meStatus(cred string) (int, string) {
	rec := ts.do("GET", "/api/me", cred, "", "")
	return rec.Code, rec.Body.String()
}

// TestKeyRotation: a rotated key's new secret works at once, the old one
// (and its sessions) for the grace period only; a second rotation ends
// the first old secret at once; the rotation is durable.
func TestKeyRotation(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	k := ts.createKey(t, `{"name":"bot","permissions":["read"]}`)
	oldSession := ts.login(t, k.Secret).Token
	var rot keyAnswer
	if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/keys/"+k.ID+"/rotate", testAdminKey, "", 200), &rot); err != nil {
		t.Fatal(err)
	}
	wantUntil := authTestStart.Add(24 * time.Hour)
	if rot.ID != k.ID || rot.Name != "bot" || !strings.HasPrefix(rot.Secret, "dk_") || rot.Secret == k.Secret ||
		rot.PreviousExpiresAt == nil || !rot.PreviousExpiresAt.Equal(wantUntil) || rot.RotatedAt == nil {
		t.Fatalf("rotate = %+v, want the same key, a new dk_ secret, the old one until %v", rot, wantUntil)
	}
	if listed := ts.listedKey(t, k.ID); listed.Secret != "" || listed.PreviousExpiresAt == nil {
		t.Errorf("GET /api/keys after a rotation = %+v, want no secret and the grace's end", listed)
	}
	graceLogin := ts.login(t, k.Secret)
	if !graceLogin.ExpiresAt.Equal(wantUntil) {
		t.Errorf("a login with the old secret expires at %v, want the grace's end %v", graceLogin.ExpiresAt, wantUntil)
	}
	for what, cred := range map[string]string{"new secret": rot.Secret, "old secret": k.Secret, "old session": oldSession, "login during grace": graceLogin.Token} {
		if code, body := ts.meStatus(cred); code != 200 {
			t.Errorf("during the grace, %s: GET /api/me = %d %s, want 200", what, code, body)
		}
	}
	ts.clock.advance(24*time.Hour + time.Second)
	for what, cred := range map[string]string{"old secret": k.Secret, "old session": oldSession, "login during grace": graceLogin.Token} {
		if code, _ := ts.meStatus(cred); code != 401 {
			t.Errorf("after the grace, %s: GET /api/me = %d, want 401", what, code)
		}
	}
	if code, body := ts.meStatus(k.Secret); !strings.Contains(body, "replaced by a rotation") {
		t.Errorf("the old secret after the grace = %d %s, want a sentence naming the rotation", code, body)
	}
	if code, body := ts.meStatus(rot.Secret); code != 200 {
		t.Errorf("the new secret = %d %s, want 200", code, body)
	}

	// Two rotations: the first secret stops at the second.
	var r2, r3 keyAnswer
	json.Unmarshal(ts.mustDo(t, "POST", "/api/keys/"+k.ID+"/rotate", testAdminKey, `{"grace":"1h"}`, 200), &r2)
	if code, _ := ts.meStatus(rot.Secret); code != 200 {
		t.Errorf("the replaced secret in its 1h grace = %d, want 200", code)
	}
	json.Unmarshal(ts.mustDo(t, "POST", "/api/keys/"+k.ID+"/rotate", testAdminKey, `{"grace":"0s"}`, 200), &r3)
	for what, cred := range map[string]string{"first replaced": rot.Secret, "second replaced, grace 0s": r2.Secret} {
		if code, _ := ts.meStatus(cred); code != 401 {
			t.Errorf("%s secret = %d, want 401", what, code)
		}
	}
	if r3.PreviousExpiresAt != nil {
		t.Errorf("a rotation with grace 0s answers previous_secret_expires_at %v, want none", r3.PreviousExpiresAt)
	}

	// Durable: a new authenticator over the same storage knows the newest secret only.
	a2, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: ts.st, now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.authenticateFrom(r3.Secret, ""); err != nil {
		t.Errorf("after a restart the newest secret = %v, want accepted", err)
	}
	if _, err := a2.authenticateFrom(r2.Secret, ""); err == nil {
		t.Error("after a restart a replaced secret with grace 0s is accepted")
	}
}

// TestKeyRotationErrors: the grace budget, bodies, unknown keys.
func TestKeyRotationErrors(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	k := ts.createKey(t, `{"name":"bot","permissions":["read"]}`)
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/keys/" + k.ID + "/rotate", `{"grace":"169h"}`, 400, "0s to 168h"},
		{"/api/keys/" + k.ID + "/rotate", `{"grace":"-1h"}`, 400, "0s to 168h"},
		{"/api/keys/" + k.ID + "/rotate", `{"grace":"soon"}`, 400, "0s to 168h"},
		{"/api/keys/" + k.ID + "/rotate", `{"grace":"1h","extra":1}`, 400, "unknown member"},
		{"/api/keys/" + k.ID + "/rotate", `[]`, 400, "body must be"},
		{"/api/keys/key_0000000000000000/rotate", "", 404, "not found"},
	} {
		rec := ts.do("POST", tc.path, testAdminKey, tc.body, "")
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("POST %s %s = %d %s, want %d with %q", tc.path, tc.body, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	if code, _ := ts.meStatus(k.Secret); code != 200 {
		t.Errorf("after refused rotations the secret = %d, want still 200", code)
	}
	// An admin key limited to some databases may not rotate: it could
	// otherwise take over an unlimited key's secret.
	scoped := ts.createKey(t, `{"name":"scoped","permissions":["admin"],"databases":["team-*"]}`)
	for _, req := range [][3]string{{"POST", "/api/keys/" + k.ID + "/rotate", ""}, {"PATCH", "/api/keys/" + k.ID, `{"name":"x"}`}} {
		rec := ts.do(req[0], req[1], scoped.Secret, req[2], "")
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), "limited to some databases") {
			t.Errorf("%s %s with a limited admin key = %d %s, want 403", req[0], req[1], rec.Code, rec.Body)
		}
	}
}

// TestKeyEdit: PATCH changes what a key (and its live sessions) may do,
// each member alone, durably; bad bodies change nothing.
func TestKeyEdit(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/chatdb", testAdminKey, `{"k":{"a":1}}`, 200)
	k := ts.createKey(t, `{"name":"bot","permissions":["read"],"databases":["other"],"expires_in":"1h"}`)
	sess := ts.login(t, k.Secret).Token
	if rec := ts.do("GET", "/entity/chatdb?key=k", sess, "", ""); rec.Code != 403 {
		t.Fatalf("before the edit the session reads chatdb: %d", rec.Code)
	}
	edit := func(body string, want int) keyAnswer {
		t.Helper()
		var a keyAnswer
		out := ts.mustDo(t, "PATCH", "/api/keys/"+k.ID, testAdminKey, body, want)
		if want == 200 {
			if err := json.Unmarshal(out, &a); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	a := edit(`{"databases":null,"permissions":["write","read"]}`, 200)
	if strings.Join(a.Permissions, ",") != "read,write" || a.Databases != nil || a.Name != "bot" || a.ExpiresAt == nil {
		t.Errorf("after editing databases and permissions: %+v, want read,write on all, name and expiry kept", a)
	}
	if rec := ts.do("GET", "/entity/chatdb?key=k", sess, "", ""); rec.Code != 200 {
		t.Errorf("the live session after the edit reads chatdb: %d %s, want 200", rec.Code, rec.Body)
	}
	a = edit(`{"name":"bot v2","expires_in":null}`, 200)
	if a.Name != "bot v2" || a.ExpiresAt != nil {
		t.Errorf("after renaming and clearing the expiry: %+v", a)
	}
	a = edit(`{"expires_in":"2d","databases":["chat*"]}`, 200)
	if a.ExpiresAt == nil || !a.ExpiresAt.Equal(authTestStart.Add(48*time.Hour)) || strings.Join(a.Databases, ",") != "chat*" {
		t.Errorf("after setting expiry 2d and databases chat*: %+v", a)
	}
	edit(`{"permissions":["read"]}`, 200)
	if rec := ts.do("PUT", "/entity/chatdb", sess, `{"k":{"a":2}}`, ""); rec.Code != 403 {
		t.Errorf("after taking write away the session writes: %d, want 403", rec.Code)
	}
	before := ts.listedKey(t, k.ID)
	for _, body := range []string{`{}`, `{"permissions":[]}`, `{"permissions":null}`, `{"permissions":["root"]}`,
		`{"name":null}`, `{"name":""}`, `{"name":5}`, `{"databases":["bad..name"]}`, `{"databases":[]}`, `{"databases":"all"}`,
		`{"expires_in":"soon"}`, `{"expires_in":5}`, `{"secret":"dk_mine"}`, `not json`} {
		rec := ts.do("PATCH", "/api/keys/"+k.ID, testAdminKey, body, "")
		if rec.Code != 400 {
			t.Errorf("PATCH %s = %d %s, want 400", body, rec.Code, rec.Body)
		}
	}
	if after := ts.listedKey(t, k.ID); mustJSON(t, after) != mustJSON(t, before) {
		t.Errorf("refused edits changed the key: %+v, was %+v", after, before)
	}
	ts.mustDo(t, "PATCH", "/api/keys/key_0000000000000000", testAdminKey, `{"name":"x"}`, 404)
	a2, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: ts.st, now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a2.authenticateFrom(k.Secret, ""); err != nil || p.name != "bot v2" || p.perms != permRead {
		t.Errorf("after a restart the key is %+v (%v), want the edited one", p, err)
	}
}

// TestKeyLastUsed: a use shows in GET /api/keys at once, to the minute,
// without a storage write; the flush writes it once, keeps keys another
// main worker added to the shared store, and a restart still shows it.
func TestKeyLastUsed(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	k := ts.createKey(t, `{"name":"bot","permissions":["read"]}`)
	if got := ts.listedKey(t, k.ID).LastUsedAt; got != nil {
		t.Fatalf("a new key's last use = %v, want null", got)
	}
	stored := func() string {
		t.Helper()
		b, err := ts.st.Get(context.Background(), authKeysObject)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := stored()
	ts.clock.advance(90 * time.Second)
	for range 50 {
		ts.mustDo(t, "GET", "/api/me", k.Secret, "", 200)
	}
	sess := ts.login(t, k.Secret).Token
	ts.clock.advance(time.Minute)
	ts.mustDo(t, "GET", "/api/me", sess, "", 200)
	if stored() != before {
		t.Error("using a key wrote the key store; want no write per request")
	}
	want := authTestStart.Add(150 * time.Second).Truncate(time.Minute)
	if got := ts.listedKey(t, k.ID).LastUsedAt; got == nil || !got.Equal(want) {
		t.Errorf("last_used_at = %v, want %v (the session's use, to the minute)", got, want)
	}

	// Another main worker on the same store adds a key meanwhile.
	other, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: ts.st, now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	o, err := other.createKey(context.Background(), keyRequest{Name: "other", Permissions: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.auth.flushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := stored()
	if !strings.Contains(after, `"last_used_at"`) || !strings.Contains(after, o.ID) {
		t.Errorf("after a flush the key store holds:\n%s\nwant the last use and the other main worker's key", after)
	}
	if err := ts.auth.flushUsage(context.Background()); err != nil || stored() != after {
		t.Errorf("a flush with nothing new wrote the store (%v)", err)
	}
	if code, _ := ts.meStatus(o.Secret); code != http.StatusOK {
		t.Errorf("the other main worker's key after the flush = %d, want 200 here too", code)
	}
	restarted, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: ts.st, now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range restarted.listKeys() {
		if ki.ID == k.ID && (ki.LastUsedAt == nil || !ki.LastUsedAt.Equal(want)) {
			t.Errorf("after a restart last_used_at = %v, want %v", ki.LastUsedAt, want)
		}
	}
}

// BenchmarkKeyUsageNote is the cost a request of an API key pays to note
// its use: in a minute already noted, one map lookup and one atomic load.
func BenchmarkKeyUsageNote(b *testing.B) {
	var u keyUsage
	now := authTestStart
	u.note("key_1", now)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.note("key_1", now)
		}
	})
}

// BenchmarkAuthenticateAPIKey is an API key's authentication as every
// REST request with a key does it ("noted"), beside the same steps without
// noting the use ("lookup"): the difference is what last use costs.
func BenchmarkAuthenticateAPIKey(b *testing.B) {
	a, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: newTestFSStore(b)})
	if err != nil {
		b.Fatal(err)
	}
	k, err := a.createKey(context.Background(), keyRequest{Name: "bench", Permissions: []string{"read"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("noted", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.authenticateFrom(k.Secret, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("lookup", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h := sha256.Sum256([]byte(k.Secret))
				e := a.keys.Load().byHash[h]
				if err := e.secretFor(h, time.Now()); err != nil {
					b.Fatal(err)
				}
				if _, err := e.principalAt(time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
