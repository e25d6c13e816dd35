package main

// Stream tickets: how a browser's EventSource, which cannot send an
// Authorization header, follows a database's change feed (API.md
// "Following changes"). POST /api/databases/{db}/changes/ticket, with the
// caller's credential, answers a random ticket; GET
// /api/databases/{db}/changes?ticket=T then authenticates as that
// credential. A ticket is good for the change feed of the database it was
// issued for and nothing else: for one page or long-poll within a minute,
// or for one event stream at a time and its reconnections, each within a
// minute of the previous stream's end, so that an EventSource resumes by
// itself (Last-Event-ID). The credential behind it is checked again at
// each use (a logout or a key deleted since ends it), and the access line
// never holds a query string. Each principal holds at most
// streamTicketsPerPrincipal tickets and the server streamTicketsMax, so
// that one credential cannot take every ticket.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"sync"
	"time"
)

// Budgets of the stream tickets.
const (
	// streamTicketTTL is how long a ticket may wait for its request: an
	// EventSource opens at once, and reconnects with a new ticket.
	streamTicketTTL = time.Minute
	// streamTicketsMax bounds the tickets kept, of all principals: their
	// memory.
	streamTicketsMax = 10000
	// streamTicketsPerPrincipal bounds the tickets one principal (an API
	// key and its sessions, the admin key, an OIDC subject) keeps, waiting
	// or held by its streams, so that one credential cannot take them all
	// and lock the others out of the feed. Twice the default
	// -changes-max-streams-per-principal: a principal at its stream budget
	// still gets tickets to reconnect.
	streamTicketsPerPrincipal = 200
)

// streamTicket is one ticket waiting for its request, or held by the
// event stream it opened (streaming), which gives it another minute when
// it ends. owner is the principal it was issued to (principal.clientID),
// whose budget it counts in.
type streamTicket struct {
	cred, owner, db string
	expires         time.Time
	streaming       bool
}

// streamTickets holds the tickets issued and not yet used, by the SHA-256
// of the ticket. Safe for concurrent use.
type streamTickets struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]streamTicket
	// owned holds the keys of m by owner: a principal's budget is checked
	// and swept without a walk through everyone's tickets.
	owned map[string]map[[32]byte]struct{}
}

// newStreamTickets returns an empty ticket store.
func newStreamTickets(now func() time.Time) *streamTickets {
	return &streamTickets{now: now, m: map[[32]byte]streamTicket{}, owned: map[string]map[[32]byte]struct{}{}}
}

// issue keeps ticket for cred, the credential of principal owner, and db,
// or refuses it when owner holds its budget of tickets still valid, or
// the store is full of them.
func (t *streamTickets) issue(ticket, cred, owner, db string) (time.Time, error) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.owned[owner]) >= streamTicketsPerPrincipal {
		t.sweep(now, maps.Keys(t.owned[owner]))
	}
	if n := len(t.owned[owner]); n >= streamTicketsPerPrincipal {
		return time.Time{}, &rateLimitError{retryAfter: t.firstFree(now, maps.Keys(t.owned[owner])), kind: errTooManyStreams,
			reason: fmt.Sprintf("this credential holds %d stream tickets, waiting or in use, the most one credential may; use them", n)}
	}
	if len(t.m) >= streamTicketsMax {
		t.sweep(now, maps.Keys(t.m))
	}
	if len(t.m) >= streamTicketsMax {
		return time.Time{}, &rateLimitError{retryAfter: t.firstFree(now, maps.Keys(t.m)), kind: errTooManyStreams,
			reason: fmt.Sprintf("%d stream tickets are waiting to be used, the most this server keeps", len(t.m))}
	}
	exp := now.Add(streamTicketTTL)
	h := sha256.Sum256([]byte(ticket))
	t.m[h] = streamTicket{cred: cred, owner: owner, db: db, expires: exp}
	if t.owned[owner] == nil {
		t.owned[owner] = map[[32]byte]struct{}{}
	}
	t.owned[owner][h] = struct{}{}
	return exp, nil
}

// sweep drops the tickets among hs that expired waiting. t.mu is held.
func (t *streamTickets) sweep(now time.Time, hs iter.Seq[[32]byte]) {
	for h := range hs {
		if st := t.m[h]; !st.streaming && !now.Before(st.expires) {
			t.drop(h)
		}
	}
}

// firstFree is how long until one of the tickets hs frees its place: the
// first of those waiting expires (within streamTicketTTL); with none
// waiting, all held by open streams, streamTicketTTL, the least a held
// ticket is kept once its stream ends. The Retry-After of a ticket
// refused for the budget of hs. t.mu is held.
func (t *streamTickets) firstFree(now time.Time, hs iter.Seq[[32]byte]) time.Duration {
	first := streamTicketTTL
	for h := range hs {
		if st := t.m[h]; !st.streaming {
			first = min(first, st.expires.Sub(now))
		}
	}
	return first
}

// drop forgets ticket h. t.mu is held.
func (t *streamTickets) drop(h [32]byte) {
	owner := t.m[h].owner
	delete(t.m, h)
	if delete(t.owned[owner], h); len(t.owned[owner]) == 0 {
		delete(t.owned, owner)
	}
}

// redeem uses ticket for the change feed of db and returns the
// credential it stands for; false when it is unknown, used, expired,
// held by an open stream or issued for another database (then it is
// spent). A ticket redeemed for a page is spent; for an event stream it is
// held until release, which gives it another streamTicketTTL.
func (t *streamTickets) redeem(ticket, db string, stream bool) (cred string, release func(), ok bool) {
	h := sha256.Sum256([]byte(ticket))
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.m[h]
	switch {
	case !ok || st.streaming:
		return "", nil, false
	case st.db != db || !t.now().Before(st.expires):
		t.drop(h)
		return "", nil, false
	case !stream:
		t.drop(h)
		return st.cred, func() {}, true
	}
	st.streaming = true
	t.m[h] = st
	return st.cred, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		st.streaming, st.expires = false, t.now().Add(streamTicketTTL)
		t.m[h] = st
	}, true
}

// owner is the principal ticket was issued to when redeem would take it
// now for db (known, not held by a stream, for db, not expired); false
// otherwise. It changes nothing: needFeed counts the ticket's stream
// before the ticket is redeemed.
func (t *streamTickets) owner(ticket, db string) (string, bool) {
	h := sha256.Sum256([]byte(ticket))
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.m[h]
	if !ok || st.streaming || st.db != db || !t.now().Before(st.expires) {
		return "", false
	}
	return st.owner, true
}

// streamTicketAnswer is the answer of POST /api/databases/{db}/changes/ticket.
type streamTicketAnswer struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleStreamTicket serves POST /api/databases/{db}/changes/ticket: a
// ticket for one request of the change feed of db as the caller.
func (s *restServer) handleStreamTicket(w http.ResponseWriter, r *http.Request, p principal) error {
	db := r.PathValue("db")
	if err := validateDBName(db); err != nil {
		return err
	}
	if s.data.feed == nil {
		// As the feed's route answers: a ticket would open nothing.
		return fmt.Errorf("stream ticket of %s: no change feed kept (S3 storage needs -changes-dir): %w", db, errNoFeed)
	}
	ticket, err := s.auth.randomString("dst_", 32)
	if err != nil {
		return err
	}
	exp, err := s.tickets.issue(ticket, bearer(r), p.clientID, db)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, streamTicketAnswer{Ticket: ticket, ExpiresAt: exp})
	return nil
}

// streamHeldKey is the request context's key of the principal whose
// open stream needFeed counted for the request (and ends after it).
type streamHeldKey struct{}

// needFeed is need for the change feed's route: a request without an
// Authorization header may bring a stream ticket of its database instead.
func (s *restServer) needFeed(pm perm, h handler) http.Handler {
	inner := s.need(pm, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ticket := r.URL.Query().Get("ticket")
		if ticket == "" || r.Header.Get("Authorization") != "" {
			inner.ServeHTTP(w, r)
			return
		}
		// A request the route refuses for its parameters does not
		// spend the ticket: they are checked before it is redeemed.
		q, since, err := parseChangeQuery(r)
		if err == nil {
			err = checkCursor(since)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// Nor does a stream beyond the open-stream budgets: its place is
		// taken (openStream, which counts and checks at once) for the
		// ticket's principal before the ticket is redeemed, and given
		// back if it is not; handleChanges keeps it.
		ctx := r.Context()
		if owner, ok := s.tickets.owner(ticket, q.db); ok && q.mode != "" && s.data.feed != nil {
			done, err := s.data.feed.openStream(owner)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			defer done()
			ctx = context.WithValue(ctx, streamHeldKey{}, owner)
		}
		sse := q.mode == "sse"
		cred, release, ok := s.tickets.redeem(ticket, q.db, sse)
		if !ok {
			s.writeError(w, r, s.auth.failed(s.auth.clientOf(r),
				reqErrorf(errUnauthenticated, "the stream ticket is unknown, used, expired or for another database: ask for a new one")))
			return
		}
		defer release()
		r = r.Clone(context.WithValue(ctx, eventStreamKey{}, sse))
		r.Header.Set("Authorization", "Bearer "+cred)
		inner.ServeHTTP(w, r)
	})
}
