package main

// GET /api/databases/{db}/changes: the change feed of one database as
// pages, as a long-poll, or as Server-Sent Events (API.md "Following
// changes"). The feed itself is feed.go and changelog.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Budgets of the change routes.
const (
	// changeLimitDefault and changeLimitMax bound a page's changes.
	changeLimitDefault = 100
	changeLimitMax     = 1000
	// longPollDefault and longPollMax bound a long-poll's wait (below the
	// server's write timeout).
	longPollDefault = 30 * time.Second
	longPollMax     = 55 * time.Second
	// streamWriteWait is how long an event may take to reach a consumer
	// before the consumer is dropped.
	streamWriteWait = 10 * time.Second
)

// changeScanMax is the most changes of all databases one page reads to
// find its own: a page of a quiet database in a busy feed ends there,
// with last_seq after the changes it skipped and more set (a variable
// for tests).
var changeScanMax = 20000

// longPollCatchUp is how long a long-poll from far behind reads on
// towards the feed's end (a page at a time) before it answers the empty
// page it reached, more still true: each page may wait changeReadWait for
// its turn at the files, and the answer must be written within
// restWriteTimeout, else the connection is cut and the client, asking
// again from the same cursor, never gets further (a variable for tests).
var longPollCatchUp = restWriteTimeout - 2*changeReadWait

// changeKeepAlive is how often an idle event stream gets a comment line
// (a variable for tests).
var changeKeepAlive = 15 * time.Second

// changeOut is one change as answered: seq is the cursor after it.
type changeOut struct {
	Seq  string          `json:"seq"`
	Key  string          `json:"key"`
	Op   string          `json:"op"`
	ETag string          `json:"etag,omitempty"`
	At   time.Time       `json:"at"`
	Doc  json.RawMessage `json:"doc,omitempty"`
}

// changePage is a page of the feed. More is false only when the page
// read up to the feed's end as it was when the page began: following
// last_seq then finds nothing more for now. A page that stopped short
// of it (at the limit, at changeScanMax, at -max-response-bytes) says
// true, even with no change: a quiet database's page in a busy feed may
// be empty and yet not the end.
type changePage struct {
	Changes []changeOut `json:"changes"`
	LastSeq string      `json:"last_seq"`
	More    bool        `json:"more"`
}

// changeQuery is a request of the change route, parsed.
type changeQuery struct {
	db, prefix string
	since      uint64
	limit      int
	docs       bool
	mode       string // "", "sse" or "longpoll"
	timeout    time.Duration
}

// handleChanges serves GET /api/databases/{db}/changes.
func (s *restServer) handleChanges(w http.ResponseWriter, r *http.Request, p principal) error {
	q, since, err := parseChangeQuery(r)
	if err != nil {
		return err
	}
	f := s.data.feed
	if f == nil {
		return fmt.Errorf("change feed of %s: none kept (S3 storage needs -changes-dir): %w", q.db, errNoFeed)
	}
	// The writes answered before this request are in its answer.
	if err := f.log.barrier(r.Context()); err != nil {
		return fmt.Errorf("change feed: %w: %w", err, errUnavailable)
	}
	if q.since, err = f.cursor(since); err != nil {
		return err
	}
	if q.mode == "" {
		page, held, err := s.changePage(r.Context(), f, q)
		if err != nil {
			return err
		}
		defer held.release()
		writeJSON(w, http.StatusOK, page)
		return nil
	}
	// A stream by ticket has its place already (needFeed).
	if held, ok := r.Context().Value(streamHeldKey{}).(string); !ok || held != p.clientID {
		release, err := f.openStream(p.clientID)
		if err != nil {
			return err
		}
		defer release()
	}
	if q.mode == "longpoll" {
		return s.longPoll(w, r, f, q)
	}
	return s.eventStream(w, r, f, q)
}

// parseChangeQuery reads the route's parameters but for the cursor,
// returned as sent: Last-Event-ID (an event stream's resumption) takes
// the place of since.
func parseChangeQuery(r *http.Request) (q changeQuery, since string, err error) {
	v := r.URL.Query()
	q = changeQuery{db: r.PathValue("db"), prefix: v.Get("prefix"), limit: changeLimitDefault, timeout: longPollDefault}
	if err := validateDBName(q.db); err != nil {
		return q, "", err
	}
	if err := repeatedParam(v, "since", "limit", "prefix", "feed", "timeout", "ticket"); err != nil {
		return q, "", err
	}
	if q.prefix != "" {
		// As a listing's prefix: one no key could start with is a 400.
		if err := validateEntityKey(q.prefix); err != nil {
			return q, "", reqPrefixf(err, "prefix")
		}
	}
	if q.docs, err = boolParam(r, "include_docs"); err != nil {
		return q, "", err
	}
	if err := q.parseMode(r); err != nil {
		return q, "", err
	}
	if l := v.Get("limit"); l != "" {
		n, ok := decimalParam(l, 1, changeLimitMax)
		if !ok {
			return q, "", reqErrorf(errInvalid, "limit %q: must be 1 to %d", l, changeLimitMax)
		}
		q.limit = int(n)
	}
	since = v.Get("since")
	if id := r.Header.Get("Last-Event-ID"); id != "" && q.mode == "sse" {
		since = id
	}
	return q, since, nil
}

// wantsEventStream reports whether r asks for an event stream: feed=sse
// (or eventsource), or no feed= and an Accept of text/event-stream. A
// request needFeed let in with a ticket carries the answer in its
// context (eventStreamKey), worked out once.
func wantsEventStream(r *http.Request) bool {
	if sse, ok := r.Context().Value(eventStreamKey{}).(bool); ok {
		return sse
	}
	switch r.URL.Query().Get("feed") {
	case "sse", "eventsource":
		return true
	case "", "normal":
		return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	}
	return false
}

// eventStreamKey is the request context's key of wantsEventStream's
// answer.
type eventStreamKey struct{}

// parseMode reads feed= (or an Accept of text/event-stream) and timeout=.
func (q *changeQuery) parseMode(r *http.Request) error {
	switch m := r.URL.Query().Get("feed"); {
	case wantsEventStream(r):
		q.mode = "sse"
	case m == "" || m == "normal":
	case m == "longpoll":
		q.mode = "longpoll"
	default:
		return reqErrorf(errInvalid, "feed %q: must be normal, longpoll or sse", m)
	}
	if t := r.URL.Query().Get("timeout"); t != "" {
		// Bounded before it becomes a Duration, whose multiplication
		// would wrap a huge value round to an accepted one.
		ms, ok := decimalParam(t, 0, uint64(longPollMax.Milliseconds()))
		if !ok {
			return reqErrorf(errInvalid, "timeout %q: must be 0 to %d milliseconds", t, longPollMax.Milliseconds())
		}
		q.timeout = time.Duration(ms) * time.Millisecond
	}
	return nil
}

// cursor parses a since value: "" is the oldest change kept, "now" the
// current end. A cursor the feed no longer holds (older than the
// retention, or from a log that is gone) is 410.
func (f *changeFeed) cursor(since string) (uint64, error) {
	end := f.log.durable.Load()
	switch since {
	case "":
		return f.log.oldest(), nil
	case "now":
		return end, nil
	}
	if err := checkCursor(since); err != nil {
		return 0, err
	}
	c, _ := strconv.ParseUint(since, 10, 64)
	if c < f.log.oldest() || c > end {
		return 0, f.gone(c)
	}
	return c, nil
}

// checkCursor refuses a since value that is no cursor: "", "now" or
// decimal digits within 64 bits.
func checkCursor(since string) error {
	if since == "" || since == "now" {
		return nil
	}
	if _, ok := decimalParam(since, 0, math.MaxUint64); !ok {
		return reqErrorf(errInvalid, "since %q: not a cursor (a last_seq or seq of this feed, or now)", since)
	}
	return nil
}

// gone is the 410 of cursor c: one past the end was never given by this
// feed (another feed's, or this one's before it was made anew).
func (f *changeFeed) gone(c uint64) error {
	end := f.log.durable.Load()
	why := "is no longer in the change feed (it keeps -changes-retention)"
	if c > end {
		why = "was never given by this change feed (it is another feed's, or the feed was made anew)"
	}
	return reqErrorf(errGone, "cursor %d %s: list the database, then follow it from last_seq %q, the current end", c, why, strconv.FormatUint(end, 10))
}

// changePage reads one page after q.since: up to q.limit changes of q.db
// (and q.prefix), from at most changeScanMax changes of the feed, with
// each document when q.docs, within -max-response-bytes; the page says
// whether it stopped before the feed's end (More). The documents
// are held in the in-flight read budget (readHeld) until the caller, once
// the page is written, releases held: a page of an event stream that does
// not read held up to -max-response-bytes outside it.
func (s *restServer) changePage(ctx context.Context, f *changeFeed, q changeQuery) (page changePage, held heldRead, err error) {
	// The page's changes first, then their documents: a read from before
	// the log's tail holds a segment of the log until it returns, and a
	// document's read may wait for room in the read budget. The feed's
	// end is taken first: durable seqs are contiguous, so a page whose
	// last seq reaches it has read every change up to it.
	end := f.log.durable.Load()
	var recs []changeRec
	last, err := f.log.read(ctx, q.since, changeScanMax, func(r changeRec) bool {
		if r.DB != q.db || !strings.HasPrefix(r.Key, q.prefix) {
			return true
		}
		recs = append(recs, r)
		return len(recs) < q.limit
	})
	if errors.Is(err, errCursorExpired) {
		return page, heldRead{}, f.gone(q.since)
	}
	if err != nil {
		return page, heldRead{}, err
	}
	page = changePage{Changes: make([]changeOut, 0, len(recs)), LastSeq: strconv.FormatUint(last, 10)}
	var sent int64
	for _, r := range recs {
		c := changeOut{Seq: strconv.FormatUint(r.Seq, 10), Key: r.Key, Op: r.Op, ETag: r.ETag, At: time.Unix(0, r.At).UTC()}
		if q.docs && r.Op == "put" {
			resp, h, err := s.data.readHeld(ctx, q.db, r.Key, nil)
			if err != nil && !errors.Is(err, errNotFound) {
				if len(page.Changes) == 0 {
					return page, heldRead{}, fmt.Errorf("read entity %q of %s: %w", r.Key, q.db, err)
				}
				break
			}
			if sent += int64(len(resp.GetResult())); sent > s.data.lim.response() && len(page.Changes) > 0 {
				h.release()
				break
			}
			if err == nil {
				c.Doc = resp.GetResult()
				held = heldRead{budget: h.budget, n: held.n + h.n}
			}
		}
		page.Changes = append(page.Changes, c)
	}
	if len(page.Changes) < len(recs) {
		// Stopped at a document: resume after the last change answered.
		page.LastSeq = page.Changes[len(page.Changes)-1].Seq
	}
	page.More = mustSeq(page.LastSeq) < end
	return page, held, nil
}

// mustSeq parses a seq this package formatted.
func mustSeq(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// longPoll answers the first page with a change after q.since, waiting up
// to q.timeout for one (then an empty page); deleting the database ends
// the wait. It waits only at the feed's end: a quiet database's cursor
// far behind in a busy feed reads page after page (each within
// changeScanMax) until a change of its own or the end, whatever the
// timeout, so that an empty answer means "nothing yet" (more false); only
// past longPollCatchUp does it answer an empty page with more true.
func (s *restServer) longPoll(w http.ResponseWriter, r *http.Request, f *changeFeed, q changeQuery) error {
	start := time.Now()
	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	deleted := f.deletedSignal(q.db)
	for {
		_, notify := f.log.watch()
		if err := s.stillReads(r, q.db); err != nil {
			return err
		}
		page, held, err := s.changePage(r.Context(), f, q)
		if err != nil {
			return err
		}
		if len(page.Changes) > 0 {
			writeJSON(w, http.StatusOK, page)
			held.release()
			return nil
		}
		held.release()
		q.since = mustSeq(page.LastSeq)
		if page.More {
			if r.Context().Err() != nil {
				return nil
			}
			if time.Since(start) < longPollCatchUp {
				continue // catching up
			}
			writeJSON(w, http.StatusOK, page)
			return nil
		}
		select {
		case <-notify:
			continue
		case <-timer.C:
		case <-deleted:
		case <-r.Context().Done():
			return nil
		}
		if err := s.stillReads(r, q.db); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	}
}

// eventStream streams the changes after q.since as Server-Sent Events
// until the client goes, the database is deleted (event "deleted"), the
// consumer falls more than the feed's memory behind (event "lagging",
// with the cursor to resume from) or stops reading (dropped).
func (s *restServer) eventStream(w http.ResponseWriter, r *http.Request, f *changeFeed, q changeQuery) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The deletion of db is watched before the answer begins: a client
	// that deletes the database once it has the headers gets "deleted".
	deleted := f.deletedSignal(q.db)
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w, rc: rc, f: f}
	if !st.send("retry: 2000\n\n") {
		return nil
	}
	keep := time.NewTicker(changeKeepAlive)
	defer keep.Stop()
	following := false
	for {
		end, notify := f.log.watch()
		if following && end-q.since > changeTailLen {
			f.droppedConsumers.Add(1)
			st.event("lagging", "", map[string]string{"resume_from": strconv.FormatUint(q.since, 10),
				"error": "this stream fell too far behind the feed; resume from resume_from"})
			return nil
		}
		q.limit = changeLimitMax
		if err := s.stillReads(r, q.db); err != nil {
			st.event("error", "", map[string]string{"error": errorSentence(err), "resume_from": strconv.FormatUint(q.since, 10)})
			return nil
		}
		page, held, err := s.changePage(r.Context(), f, q)
		if err != nil {
			st.event("error", "", map[string]string{"error": errorSentence(err), "resume_from": strconv.FormatUint(q.since, 10)})
			return nil
		}
		sent := st.changes(page.Changes)
		held.release()
		if !sent {
			return nil
		}
		q.since = mustSeq(page.LastSeq)
		if page.More {
			following = false
			continue // catching up, a page (changeScanMax at most) at a time
		}
		following = true
		select {
		case <-notify:
		case <-keep.C:
			if !st.send(": keep-alive\n\n") {
				return nil
			}
		case <-deleted:
			s.endDeleted(r.Context(), st, f, q)
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// stillReads checks again that r's credential may read db (a stream
// ticket's stands in its Authorization header): a stream outlives the
// check its request passed, and went on sending the database's changes
// (with include_docs, its documents) to a credential deleted, expired,
// logged out, or left without read or without db, for as long as the
// connection lasted. Each page of a stream, and of a long-poll, checks it
// first. A refusal here is not a guess: it is not counted against the
// failed-auth limit.
func (s *restServer) stillReads(r *http.Request, db string) error {
	p, err := s.auth.authenticateFrom(bearer(r), "")
	if err != nil {
		return err
	}
	return authorize(p, permRead, db)
}

// endDeleted sends the changes of q's deleted database not sent yet (its
// entities' deletes), page after page to the feed's end (a page holds at
// most changeLimitMax of them and reads at most changeScanMax changes),
// then the event "deleted" with that end.
func (s *restServer) endDeleted(ctx context.Context, st *stream, f *changeFeed, q changeQuery) {
	if f.log.barrier(ctx) != nil {
		return
	}
	q.limit = changeLimitMax
	for ctx.Err() == nil {
		page, held, err := s.changePage(ctx, f, q)
		if err != nil {
			return
		}
		sent := st.changes(page.Changes)
		held.release()
		if !sent {
			return
		}
		if !page.More {
			st.event("deleted", "", map[string]string{"last_seq": page.LastSeq})
			return
		}
		q.since = mustSeq(page.LastSeq)
	}
}

// errorSentence is the client sentence of err.
func errorSentence(err error) string {
	if m, ok := clientMessage(err); ok {
		return m
	}
	return "the change feed cannot be read; try again later"
}

// stream writes one event stream, each write within streamWriteWait.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	f  *changeFeed
}

// send writes and flushes text; false when the consumer is gone or does
// not read (then it counts as dropped).
func (st *stream) send(text string) bool {
	st.rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
	if _, err := st.w.Write([]byte(text)); err != nil {
		st.f.droppedConsumers.Add(1)
		return false
	}
	if err := st.rc.Flush(); err != nil {
		st.f.droppedConsumers.Add(1)
		return false
	}
	return true
}

// changes writes each change as an event "change", counting them; false
// when the consumer is gone or does not read.
func (st *stream) changes(cs []changeOut) bool {
	for _, c := range cs {
		if !st.event("change", c.Seq, c) {
			return false
		}
		st.f.sent.Add(1)
	}
	return true
}

// event writes one event of type name with id (none when "") and v as its
// JSON data.
func (st *stream) event(name, id string, v any) bool {
	data, _ := json.Marshal(v)
	var b strings.Builder
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", name, data)
	return st.send(b.String())
}
