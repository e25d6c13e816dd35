package main

// Stream tickets played by an attacker (feedticket.go): a ticket opens
// the change feed of its database once, for the credential that asked for
// it while that credential is valid, and nothing else; it never reaches
// the log.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// newTicket asks for a stream ticket of db with token and wants 200.
func newTicket(t *testing.T, n *node, token, db string) string {
	t.Helper()
	code, out, _ := n.call("POST", "/api/databases/"+db+"/changes/ticket", token, nil)
	var a streamTicketAnswer
	if json.Unmarshal(out, &a); code != 200 || !strings.HasPrefix(a.Ticket, "dst_") || a.ExpiresAt.Before(time.Now()) {
		t.Fatalf("POST changes/ticket of %s = %d %s", db, code, out)
	}
	return a.Ticket
}

// TestStreamTicketAttacker: a ticket follows its database's feed as an
// EventSource would (no Authorization header); it is good once, for its
// database's feed only, not after a logout, not beside another
// credential, and the log never holds it.
func TestStreamTicketAttacker(t *testing.T) {
	n, _ := startDefault(t)
	putNodeETag(t, n, "chat", "a", 1)
	code, out, _ := n.call("POST", "/api/login", "", map[string]string{"key": testAdminKey})
	var g sessionGrant
	if json.Unmarshal(out, &g); code != 200 || g.Token == "" {
		t.Fatalf("login = %d %s", code, out)
	}
	var seen []string
	try := func(path, ticket string) int {
		seen = append(seen, ticket)
		code, _, _ := n.call("GET", path+"ticket="+ticket, "", nil)
		return code
	}
	// Not a credential for any other route.
	if c := try("/api/databases/chat/keys?", newTicket(t, n, g.Token, "chat")); c != 401 {
		t.Errorf("ticket on the key list = %d, want 401", c)
	}
	if c := try("/entity/chat?key=a&", newTicket(t, n, g.Token, "chat")); c != 401 {
		t.Errorf("ticket on an entity = %d, want 401", c)
	}
	// Another database's feed: refused, and the ticket is spent.
	tk := newTicket(t, n, g.Token, "chat")
	if c := try("/api/databases/other/changes?", tk); c != 401 {
		t.Errorf("ticket of chat on other's feed = %d, want 401", c)
	}
	if c := try("/api/databases/chat/changes?", tk); c != 401 {
		t.Errorf("a ticket tried on another feed, then on its own = %d, want 401 (spent)", c)
	}
	// Good once.
	tk = newTicket(t, n, g.Token, "chat")
	if c := try("/api/databases/chat/changes?", tk); c != 200 {
		t.Errorf("ticket on its feed = %d, want 200", c)
	}
	if c := try("/api/databases/chat/changes?", tk); c != 401 {
		t.Errorf("ticket used twice = %d, want 401", c)
	}
	if c := try("/api/databases/chat/changes?", "dst_"+strings.Repeat("A", 43)); c != 401 {
		t.Errorf("forged ticket = %d, want 401", c)
	}
	// Beside another credential, the header decides.
	tk = newTicket(t, n, g.Token, "chat")
	seen = append(seen, tk)
	if code, _, _ := n.call("GET", "/api/databases/chat/changes?ticket="+tk, "dk_garbage", nil); code != 401 {
		t.Errorf("ticket with a wrong Authorization = %d, want 401", code)
	}
	// An event stream through a ticket gets the changes.
	tk = newTicket(t, n, g.Token, "chat")
	seen = append(seen, tk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.base+"/api/databases/chat/changes?feed=sse&since=now&ticket="+tk, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream by ticket = %v %v", resp, err)
	}
	resp.Body.Close()
	// After a logout, the tickets of the session are dead.
	tk = newTicket(t, n, g.Token, "chat")
	if code, out, _ := n.call("POST", "/api/logout", g.Token, nil); code != 200 && code != 204 {
		t.Fatalf("logout = %d %s", code, out)
	}
	if c := try("/api/databases/chat/changes?", tk); c != 401 {
		t.Errorf("ticket after logout = %d, want 401", c)
	}
	cancel()
	time.Sleep(200 * time.Millisecond) // the stream's access line is written when it ends
	log := n.stderr.String() + n.stdout.String()
	for _, s := range seen {
		if strings.Contains(log, s) {
			t.Errorf("the log holds a stream ticket %q", s)
		}
	}
	if strings.Contains(log, "ticket=") {
		t.Error("the log holds a query string with a ticket")
	}
}

// TestStreamTicketExpiry: a ticket is refused a minute after it was
// issued, and the store refuses new tickets only while it is full of
// valid ones.
func TestStreamTicketExpiry(t *testing.T) {
	now := time.Unix(1e9, 0)
	st := newStreamTickets(func() time.Time { return now })
	if _, err := st.issue("t1", "cred", "chat"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(streamTicketTTL)
	if _, ok := st.redeem("t1", "chat"); ok {
		t.Error("a ticket redeemed at its expiry")
	}
	for i := range streamTicketsMax {
		if _, err := st.issue(string(rune(i))+"x", "cred", "chat"); err != nil {
			t.Fatalf("ticket %d: %v", i, err)
		}
	}
	if _, err := st.issue("over", "cred", "chat"); err == nil {
		t.Error("a ticket beyond the budget of valid ones")
	}
	now = now.Add(streamTicketTTL)
	if _, err := st.issue("later", "cred", "chat"); err != nil {
		t.Errorf("a ticket once the others expired: %v", err)
	}
	if cred, ok := st.redeem("later", "chat"); !ok || cred != "cred" {
		t.Errorf("redeem = %q %v", cred, ok)
	}
}
