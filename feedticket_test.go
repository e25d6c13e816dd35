package main

// Stream tickets played by an attacker (feedticket.go): a ticket opens
// the change feed of its database once, for the credential that asked for
// it while that credential is valid, and nothing else; it never reaches
// the log.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	// An event stream through a ticket gets the changes; while it is open
	// the ticket opens no other; once it ends, the same request with
	// Last-Event-ID (an EventSource reconnecting by itself) resumes after
	// the last event.
	tk = newTicket(t, n, g.Token, "chat")
	seen = append(seen, tk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if resp, _ := openSSE(t, ctx, n, "", "chat", "since=now&ticket="+tk, nil); resp.StatusCode != 200 {
		t.Fatalf("event stream by ticket = %d", resp.StatusCode)
	}
	if second, _ := openSSE(t, ctx, n, "", "chat", "since=now&ticket="+tk, nil); second.StatusCode != 401 {
		t.Errorf("a second stream with a ticket whose stream is open = %d, want 401", second.StatusCode)
	}
	// reconnect opens the stream again with tk once the server has seen
	// the last one end, as an EventSource retries.
	reconnect := func(hdr map[string]string) <-chan sseEvent {
		cancel()
		w := newWait(t, "a reconnection with the ticket", 5*time.Second)
		for {
			ctx, cancel = context.WithCancel(context.Background())
			resp, events := openSSE(t, ctx, n, "", "chat", "since=now&ticket="+tk, hdr)
			if resp.StatusCode == 200 {
				return events
			}
			cancel()
			if w.over() {
				t.Fatalf("reconnection with the ticket = %d, want 200 once its stream ended: %v", resp.StatusCode, w)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	events := reconnect(nil)
	putNodeETag(t, n, "chat", "b", 1)
	ev := nextEvent(t, events)
	putNodeETag(t, n, "chat", "c", 1)
	events = reconnect(map[string]string{"Last-Event-ID": ev.id})
	defer cancel()
	if got := nextEvent(t, events); !strings.Contains(got.data, `"key":"c"`) {
		t.Errorf("first event after reconnecting with Last-Event-ID %s: %+v, want the change of c", ev.id, got)
	}
	cancel()
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

// TestStreamTicketWithoutFeed: a server that keeps no change feed (S3
// storage without -changes-dir) answers a ticket's request as it answers
// the feed's, 501, instead of a ticket that opens nothing.
func TestStreamTicketWithoutFeed(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.rest.data.feed = nil
	for _, path := range []string{"/api/databases/chat/changes/ticket", "/api/databases/chat/changes"} {
		method := map[bool]string{true: "POST", false: "GET"}[strings.HasSuffix(path, "/ticket")]
		rec := ts.do(method, path, testAdminKey, "", "")
		if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "keeps no change feed") {
			t.Errorf("%s %s without a feed = %d %s, want 501 saying there is no feed", method, path, rec.Code, rec.Body)
		}
	}
}

// TestStreamTicketExpiry: a ticket is refused a minute after it was
// issued, and the store refuses new tickets only while it is full of
// valid ones.
func TestStreamTicketExpiry(t *testing.T) {
	now := time.Unix(1e9, 0)
	st := newStreamTickets(func() time.Time { return now })
	if _, err := st.issue("t1", "cred", "key1", "chat"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(streamTicketTTL)
	if _, _, ok := st.redeem("t1", "chat", false); ok {
		t.Error("a ticket redeemed at its expiry")
	}
	for i := range streamTicketsMax {
		if _, err := st.issue(string(rune(i))+"x", "cred", manyOwners(i), "chat"); err != nil {
			t.Fatalf("ticket %d: %v", i, err)
		}
	}
	if _, err := st.issue("over", "cred", "newcomer", "chat"); err == nil {
		t.Error("a ticket beyond the budget of valid ones")
	}
	now = now.Add(streamTicketTTL)
	if _, err := st.issue("later", "cred", "key1", "chat"); err != nil {
		t.Errorf("a ticket once the others expired: %v", err)
	}
	if cred, _, ok := st.redeem("later", "chat", false); !ok || cred != "cred" {
		t.Errorf("redeem = %q %v", cred, ok)
	}
}

// TestStreamTicketReconnects: a ticket that opened an event stream is
// held by it (a second stream with it is refused, without spending it),
// and once the stream ends it is good for another minute, so that an
// EventSource reconnects with it by itself; a page spends a ticket.
func TestStreamTicketReconnects(t *testing.T) {
	now := time.Unix(1e9, 0)
	st := newStreamTickets(func() time.Time { return now })
	st.issue("t1", "cred", "key1", "chat")
	_, release, ok := st.redeem("t1", "chat", true)
	if !ok {
		t.Fatal("a new ticket refused for an event stream")
	}
	if _, _, ok := st.redeem("t1", "chat", true); ok {
		t.Error("a ticket opened a second stream while its first is open")
	}
	now = now.Add(10 * streamTicketTTL) // a long stream outlives the first minute
	for i := range streamTicketsMax {   // and the store's sweep of expired tickets
		st.issue(fmt.Sprint(i), "cred", manyOwners(i), "chat")
	}
	release()
	now = now.Add(streamTicketTTL - time.Second)
	cred, release, ok := st.redeem("t1", "chat", true)
	if !ok || cred != "cred" {
		t.Fatalf("reconnection within a minute of the stream's end = %q %v, want the credential", cred, ok)
	}
	release()
	now = now.Add(streamTicketTTL)
	if _, _, ok := st.redeem("t1", "chat", true); ok {
		t.Error("a ticket reconnected a minute after its stream ended")
	}
	st.issue("t2", "cred", "key1", "chat")
	if _, _, ok := st.redeem("t2", "chat", false); !ok {
		t.Fatal("a new ticket refused for a page")
	}
	if _, _, ok := st.redeem("t2", "chat", true); ok {
		t.Error("a ticket used for a page opened a stream after it")
	}
}

// manyOwners spreads the tickets numbered i over principals, each given
// streamTicketsPerPrincipal of them: streamTicketsMax tickets fill the
// store without any principal's budget refusing one.
func manyOwners(i int) string {
	return fmt.Sprint("key", i/streamTicketsPerPrincipal)
}

// TestStreamTicketsPerPrincipal: a principal holding its budget of
// tickets, waiting or held by open streams, gets no more until some
// expire, while another principal still gets one; a stream's ticket
// counts while the stream is open.
func TestStreamTicketsPerPrincipal(t *testing.T) {
	now := time.Unix(1e9, 0)
	st := newStreamTickets(func() time.Time { return now })
	for i := range streamTicketsPerPrincipal {
		if _, err := st.issue(fmt.Sprint("a", i), "credA", "keyA", "chat"); err != nil {
			t.Fatalf("ticket %d of keyA: %v", i, err)
		}
	}
	_, release, ok := st.redeem("a0", "chat", true)
	if !ok {
		t.Fatal("keyA's ticket refused for an event stream")
	}
	if _, err := st.issue("a-over", "credA", "keyA", "chat"); !errors.Is(err, errTooManyStreams) {
		t.Errorf("keyA's ticket beyond its budget: %v, want %v", err, errTooManyStreams)
	}
	if _, err := st.issue("b0", "credB", "keyB", "chat"); err != nil {
		t.Errorf("keyB's first ticket while keyA holds its budget: %v", err)
	}
	if cred, _, ok := st.redeem("b0", "chat", false); !ok || cred != "credB" {
		t.Errorf("keyB's ticket redeemed = %q %v, want credB", cred, ok)
	}
	// The waiting ones expire; the stream's stays held while it is open.
	now = now.Add(streamTicketTTL)
	for i := 1; i < streamTicketsPerPrincipal; i++ {
		if _, err := st.issue(fmt.Sprint("a-later", i), "credA", "keyA", "chat"); err != nil {
			t.Fatalf("keyA's ticket %d once its waiting ones expired: %v", i, err)
		}
	}
	if _, err := st.issue("a-over2", "credA", "keyA", "chat"); !errors.Is(err, errTooManyStreams) {
		t.Errorf("keyA's ticket beyond its budget with one stream open: %v, want %v", err, errTooManyStreams)
	}
	release()
	if cred, _, ok := st.redeem("a0", "chat", false); !ok || cred != "credA" {
		t.Errorf("keyA's stream ticket after its stream ended = %q %v, want credA", cred, ok)
	}
	if _, err := st.issue("a-after", "credA", "keyA", "chat"); err != nil {
		t.Errorf("keyA's ticket once one of its tickets was spent: %v", err)
	}
}

// TestStreamTicketBudgetAttacker: a read-only API key takes every stream
// ticket it may, and through its sessions too (they are the same
// principal); the next answers 429 with one sentence, and another key
// still gets a ticket and follows the feed with it.
func TestStreamTicketBudgetAttacker(t *testing.T) {
	n, _ := startDefault(t)
	putNodeETag(t, n, "chat", "a", 1)
	attacker := createKeyHTTP(t, n, `{"name":"attacker","permissions":["read"]}`)
	victim := createKeyHTTP(t, n, `{"name":"victim","permissions":["read"]}`)
	code, out, _ := n.call("POST", "/api/login", "", map[string]string{"key": attacker.Secret})
	var g sessionGrant
	if json.Unmarshal(out, &g); code != 200 || g.Token == "" {
		t.Fatalf("login with the attacker's key = %d %s", code, out)
	}
	for i := range streamTicketsPerPrincipal {
		newTicket(t, n, []string{attacker.Secret, g.Token}[i%2], "chat")
	}
	for _, cred := range []string{attacker.Secret, g.Token} {
		code, out, _ := n.call("POST", "/api/databases/chat/changes/ticket", cred, nil)
		var e struct{ Error string }
		if json.Unmarshal(out, &e); code != 429 || !strings.Contains(e.Error, "the most one credential may") {
			t.Errorf("the attacker's ticket beyond its budget = %d %s, want 429 saying so", code, out)
		}
	}
	tk := newTicket(t, n, victim.Secret, "chat")
	if code, out, _ := n.call("GET", "/api/databases/chat/changes?ticket="+tk, "", nil); code != 200 || !strings.Contains(string(out), `"key":"a"`) {
		t.Errorf("the victim's feed by ticket = %d %s, want 200 with the change of a", code, out)
	}
}

// TestStreamRefusalsRetryAfter: every 429 of the change feed's budgets
// says when to retry (Retry-After, whole seconds), as the other 429s do:
// a ticket beyond its credential's budget or the server's when the first
// of those tickets still waiting expires (40 s for tickets issued 20 s
// ago), or a minute when all are held by open streams; a stream
// (long-poll or event stream) beyond the open-stream budgets, per
// credential or in total, after streamRetryAfter, a long-poll's default
// wait (30 s). On the old code none of these 429s carried Retry-After.
func TestStreamRefusalsRetryAfter(t *testing.T) {
	now := time.Unix(1e9, 0)
	st := newStreamTickets(func() time.Time { return now })
	for i := range streamTicketsPerPrincipal {
		if _, err := st.issue(fmt.Sprint("a", i), "credA", "keyA", "chat"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			now = now.Add(5 * time.Second) // the first expires 5 s before the others
		}
	}
	now = now.Add(20 * time.Second)
	var rl *rateLimitError
	if _, err := st.issue("a-over", "credA", "keyA", "chat"); !errors.As(err, &rl) || rl.seconds() != 35 || !errors.Is(err, errTooManyStreams) {
		t.Errorf("a ticket beyond the budget, the first waiting one issued 25 s ago = %v, want a 429 retry in 35 s", err)
	}
	for i := range streamTicketsPerPrincipal {
		st.redeem(fmt.Sprint("a", i), "chat", true)
	}
	if _, err := st.issue("a-over", "credA", "keyA", "chat"); !errors.As(err, &rl) || rl.seconds() != 60 {
		t.Errorf("a ticket beyond the budget, all held by streams = %v, want a 429 retry in 60 s", err)
	}

	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"a":{"v":1}}`, 200)
	f := ts.rest.data.feed
	// check wants a 429 whose Retry-After is lo to hi seconds and whose
	// sentence says it.
	check := func(name, method, target string, lo, hi int) {
		t.Helper()
		rec := ts.do(method, target, testAdminKey, "", "")
		var body errorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		got := rec.Header().Get("Retry-After")
		n, err := strconv.Atoi(got)
		if rec.Code != 429 || err != nil || n < lo || n > hi || !strings.HasSuffix(body.Error, "; retry in "+got+" s") {
			t.Errorf("%s = %d %s, Retry-After %q; want 429, Retry-After %d to %d and the sentence saying so", name, rec.Code, rec.Body, got, lo, hi)
		}
	}
	f.lim.maxStreamsPerPrincipal = 1
	release, err := f.openStream(adminPrincipal.clientID)
	if err != nil {
		t.Fatal(err)
	}
	check("a long-poll beyond the credential's streams", "GET", "/api/databases/chat/changes?feed=longpoll&timeout=10", 30, 30)
	f.lim.maxStreamsPerPrincipal, f.lim.maxStreams = 10, 1
	check("a long-poll beyond the server's streams", "GET", "/api/databases/chat/changes?feed=longpoll&timeout=10", 30, 30)
	release()
	for i := range streamTicketsPerPrincipal {
		if rec := ts.do("POST", "/api/databases/chat/changes/ticket", testAdminKey, "", ""); rec.Code != 200 {
			t.Fatalf("ticket %d = %d %s", i, rec.Code, rec.Body)
		}
	}
	// The tickets were issued just now: the first expires within a
	// minute (a few seconds less on a loaded machine).
	check("a ticket beyond the credential's budget", "POST", "/api/databases/chat/changes/ticket", 45, 60)
}

// TestStreamTicketKeptBeyondStreamBudget: a stream by ticket beyond the
// open-stream budgets (the credential's or the server's) is refused 429
// before its ticket is redeemed, so the client's retry with the same
// ticket is served once a stream has ended; the budget still holds
// when requests with tickets race for the last places. On the old code
// the 429 came after the long-poll's ticket was spent, and the retry was
// 401.
func TestStreamTicketKeptBeyondStreamBudget(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"a":{"v":1}}`, 200)
	f := ts.rest.data.feed
	ticket := func() string {
		var a streamTicketAnswer
		if err := json.Unmarshal(ts.mustDo(t, "POST", "/api/databases/chat/changes/ticket", testAdminKey, "", 200), &a); err != nil {
			t.Fatal(err)
		}
		return a.Ticket
	}
	const poll = "/api/databases/chat/changes?feed=longpoll&since=now&timeout="
	f.lim.maxStreamsPerPrincipal = 1
	release, err := f.openStream(adminPrincipal.clientID)
	if err != nil {
		t.Fatal(err)
	}
	tk := ticket()
	if rec := ts.do("GET", poll+"0&ticket="+tk, "", "", ""); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a long-poll by ticket beyond the credential's streams = %d %s, want 429 with Retry-After", rec.Code, rec.Body)
	}
	release()
	if rec := ts.do("GET", poll+"0&ticket="+tk, "", "", ""); rec.Code != 200 {
		t.Errorf("its retry with the same ticket, a stream closed since = %d %s, want 200", rec.Code, rec.Body)
	}
	if rec := ts.do("GET", poll+"0&ticket="+tk, "", "", ""); rec.Code != 401 {
		t.Errorf("the ticket again after its long-poll = %d %s, want 401 (spent)", rec.Code, rec.Body)
	}

	// Six long-polls by ticket at once for two places: two wait, four
	// are refused, and each of those four tickets serves its retry.
	f.lim.maxStreamsPerPrincipal, f.lim.maxStreams = 10, 2
	tickets := make([]string, 6)
	codes := make([]int, len(tickets))
	var wg sync.WaitGroup
	for i := range tickets {
		tickets[i] = ticket()
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = ts.do("GET", poll+"1500&ticket="+tickets[i], "", "", "").Code
		}()
	}
	wg.Wait()
	served := 0
	for i, c := range codes {
		switch c {
		case 200:
			served++
		case 429:
			if rec := ts.do("GET", poll+"0&ticket="+tickets[i], "", "", ""); rec.Code != 200 {
				t.Errorf("the retry of a refused long-poll with its ticket = %d %s, want 200", rec.Code, rec.Body)
			}
		default:
			t.Errorf("a long-poll by ticket = %d, want 200 or 429", c)
		}
	}
	if served != 2 {
		t.Errorf("%d long-polls by ticket served at once (codes %v), want 2, the server's budget", served, codes)
	}
	if n := f.openStreams(); n != 0 {
		t.Errorf("after every long-poll ended %d streams are counted open, want 0", n)
	}
}
