package main

// Export and import of a database as NDJSON (API.md, Export and import):
// GET /api/databases/{db}/export streams one line per entity in key order,
// holding one document at a time; POST /api/databases/{db}/import reads
// lines {"key": K, "doc": D}, checks each as a PUT checks its documents
// (names, budgets, the bound schema) and writes them in batches, a batch
// only when every line of it passed, then answers a report with the
// error of each refused line.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "deltadatabase/proto"
)

// Import budgets and defaults, the values of the flags when not given.
const (
	// defaultMaxImportBytes bounds one import's body (-max-import-bytes).
	defaultMaxImportBytes = 1 << 30
	// defaultMaxImportLines bounds one import's lines (-max-import-lines).
	defaultMaxImportLines = 1_000_000
	// defaultImportBatch is the lines of a batch without ?batch=.
	defaultImportBatch = 100
	// importLineOverhead is what a line may hold besides its document:
	// the key (at most maxEntityKeyBytes), the member names, an ETag and
	// a time (an exported line), whitespace.
	importLineOverhead = 64 << 10
	// importBatchBytes ends a batch early once its documents reach it, so
	// that a batch of large documents holds at most this much (plus one
	// document).
	importBatchBytes = 16 << 20
	// importWriters is how many writes of one batch run at once: the
	// write-ahead log commits concurrent writes in one sync.
	importWriters = 8
	// maxImportErrors is the most line errors a report lists; the rest
	// are counted.
	maxImportErrors = 100
	// transferIdle is the longest an export or import may go without
	// moving a batch: each batch pushes the connection's deadlines this
	// far ahead, past the REST server's fixed ones.
	transferIdle = 60 * time.Second
)

func (b budgets) importBytes() int64 { return cmp.Or(b.maxImportBytes, defaultMaxImportBytes) }
func (b budgets) importLines() int   { return cmp.Or(b.maxImportLines, defaultMaxImportLines) }

// importLine is the largest line an import reads: a document of the
// budget and its wrapper.
func (b budgets) importLine() int { return int(b.document()) + importLineOverhead }

// exportLine is one line of an export; an import reads the same shape
// (etag and modified are ignored there).
type exportLine struct {
	Key      *string         `json:"key"`
	ETag     string          `json:"etag,omitempty"`
	Modified string          `json:"modified,omitempty"`
	Doc      json.RawMessage `json:"doc"`
}

// handleExport is GET /api/databases/{db}/export[?prefix=P]: every entity
// (whose key starts with P) as one NDJSON line {"key","etag","modified",
// "doc"}, in key order, streamed. X-Entity-Count is the database's entity
// count when the export starts (without a prefix), for a progress bar. A
// failure before the first line is answered as any error; one after it
// ends the answer without its last chunk, so no client takes a cut
// export for a whole one.
func (s *restServer) handleExport(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	prefix := r.URL.Query().Get("prefix")
	if err := repeatedParam(r.URL.Query(), "prefix"); err != nil {
		return err
	}
	if prefix != "" {
		if err := validateEntityKey(prefix); err != nil {
			return reqPrefixf(err, "prefix")
		}
	}
	info, err := s.data.database(r.Context(), db)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", db+".ndjson"))
	if prefix == "" {
		h.Set("X-Entity-Count", strconv.Itoa(info.Entities))
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(transferIdle))
	var line []byte
	// sent: the answer has begun (a line or a flush). Until then a
	// failure is answered as any error, not by a cut connection the
	// client cannot tell from a network fault.
	sent := false
	n, err := s.data.export(r.Context(), db, prefix, func(k string, doc []byte, m docMeta) error {
		sent = true
		line = appendExportLine(line[:0], k, doc, m)
		_, err := w.Write(line)
		return err
	}, func() error {
		sent = true
		rc.SetWriteDeadline(time.Now().Add(transferIdle))
		return rc.Flush()
	})
	if err != nil && !sent {
		h.Del("Content-Disposition")
		h.Del("X-Entity-Count")
		return fmt.Errorf("export %s: %w", db, err)
	}
	if err != nil {
		s.log.WarnContext(r.Context(), "export ended early", attrDB, db, slog.Int("count", n), attrErr, err)
		panic(http.ErrAbortHandler)
	}
	s.log.InfoContext(r.Context(), "database exported", attrDB, db, slog.Int("count", n), attrClient, p.clientID)
	return nil
}

// appendExportLine appends entity k's export line to b.
func appendExportLine(b []byte, k string, doc []byte, m docMeta) []byte {
	b = append(b, `{"key":`...)
	b = append(b, jsonText(k)...)
	b = append(b, `,"etag":`...)
	b = append(b, jsonText(m.etag)...)
	if !m.modified.IsZero() {
		b = append(b, `,"modified":"`...)
		b = m.modified.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"doc":`...)
	b = append(b, doc...)
	return append(b, "}\n"...)
}

// export hands every entity of db whose key starts with prefix to emit, in
// key order, one document held at a time, walking the key index a page
// at a time and calling page after each. It returns how many it emitted.
// An entity deleted after its page was listed is left out.
func (d *dataPlane) export(ctx context.Context, db, prefix string, emit func(string, []byte, docMeta) error, page func() error) (int, error) {
	n, after := 0, ""
	for {
		keys, more, err := d.catalog.keys.page(ctx, db, prefix, after, maxListLimit)
		if err != nil {
			return n, fmt.Errorf("list keys of %s: %w", db, err)
		}
		for _, k := range keys {
			ok, err := d.exportOne(ctx, db, k, emit)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
		if err := page(); err != nil {
			return n, fmt.Errorf("send export: %w", err)
		}
		if !more || len(keys) == 0 {
			return n, nil
		}
		after = keys[len(keys)-1]
	}
}

// exportOne reads entity k of db and hands it to emit, within the
// in-flight read budget and without filling the workers' caches (a scan
// read); ok is false when it no longer exists.
func (d *dataPlane) exportOne(ctx context.Context, db, k string, emit func(string, []byte, docMeta) error) (ok bool, err error) {
	resp, held, err := d.readHeldOp(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: k, Operation: pb.Operation_GET, Scan: true})
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read entity %q of %s: %w", k, db, err)
	}
	defer held.release()
	if err := emit(k, resp.GetResult(), metaOf(resp)); err != nil {
		return false, fmt.Errorf("send export: %w", err)
	}
	return true, nil
}

// importReport is the answer of an import.
type importReport struct {
	// Imported counts the entities written.
	Imported int `json:"imported"`
	// Batches counts the batches written; Rejected those not written
	// because a line of theirs was refused.
	Batches  int `json:"batches"`
	Rejected int `json:"rejected_batches"`
	// Lines counts the lines read (blank lines included).
	Lines int `json:"lines"`
	// Errors are the refused lines, at most maxImportErrors; Omitted
	// counts those left out.
	Errors  []importError `json:"errors"`
	Omitted int           `json:"errors_omitted,omitempty"`
	// Error is set when the import did not read every line: the sentence
	// of why it stopped (a budget, a failed write).
	Error string `json:"error,omitempty"`
	// ResumeLine is set when the import stopped before its end: the
	// first line of the batch under way. Every line before it was
	// written or refused (and listed); from it on nothing was written
	// but the lines of that batch Imported counts, which are full
	// replacements, so sending the lines from it on again finishes the
	// import.
	ResumeLine int `json:"resume_line,omitempty"`
}

// importError is one refused line: its number (from 1), its key when it
// has one, the sentence, and for a document its schema refuses each
// violation as {path, message} (a JSON Pointer into the document).
type importError struct {
	Line   int               `json:"line"`
	Key    string            `json:"key,omitempty"`
	Error  string            `json:"error"`
	Errors []validationIssue `json:"errors,omitempty"`
}

// importRow is one checked line of a batch.
type importRow struct {
	line int
	key  string
	doc  json.RawMessage
}

// importer runs one import: it reads lines, checks them into the current
// batch and writes each batch whose lines all passed.
type importer struct {
	d  *dataPlane
	db string
	// principal is the name the lines' writes record (versions, the
	// log), as a PUT's.
	principal string
	batch     int
	rep       importReport
	// rows are the current batch's lines that passed, lines counts its
	// lines (blank ones aside), bytes its documents' size; bad says
	// whether one of its lines was refused.
	rows  []importRow
	lines int
	bytes int
	bad   bool
	// start is the first line of the current batch (its report's
	// resume_line if the import stops in it).
	start int
	// seen maps the batch's keys to their lines, for duplicates.
	seen map[string]int
	// ids are the schemas the batch is validated against, resolved at
	// its first line; nil before.
	ids []string
	// named are the first maxAuditKeys keys the lines name, for the
	// audit line; namedTotal counts them all.
	named      []string
	namedTotal int
}

// handleImport is POST /api/databases/{db}/import[?batch=N]: NDJSON lines
// {"key": K, "doc": D} written in batches of N lines (blank lines aside;
// default 100, at most -max-batch-keys; fewer when their documents reach
// 16 MiB). 200 with the report when every line was written; 400
// with it when lines were refused (their batches were not written, the
// others were); 413 when the body, a line or the line count passes its
// budget, 503 when a write failed: the import stopped there, and the
// report says what was written before.
func (s *restServer) handleImport(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	batch, err := importBatchParam(r, s.data.lim.batchKeys())
	if err != nil {
		return err
	}
	lim := s.data.lim.importBytes()
	if r.ContentLength > lim {
		return reqErrorf(errTooLarge, "import body of %d bytes exceeds the limit of %d bytes (-max-import-bytes)", r.ContentLength, lim)
	}
	rc := http.NewResponseController(w)
	deadline := func() {
		rc.SetReadDeadline(time.Now().Add(transferIdle))
		rc.SetWriteDeadline(time.Now().Add(transferIdle))
	}
	deadline()
	imp := &importer{d: s.data, db: db, principal: principalName(p), batch: batch, seen: map[string]int{}, start: 1, rep: importReport{Errors: []importError{}}}
	err = imp.run(r.Context(), http.MaxBytesReader(w, r.Body, lim), deadline)
	noteKeyCount(r.Context(), imp.named, imp.namedTotal)
	rep := imp.rep
	code := http.StatusOK
	switch {
	case err != nil && r.Context().Err() != nil:
		// Nobody reads the report; the 499 is for the access line, the
		// metrics and the audit line (statusClientClosed): an import
		// that answered nothing would be counted as a 200.
		code = statusClientClosed
		rep.Error = fmt.Sprintf(clientClosed, requestIDFrom(r.Context()))
		s.log.InfoContext(r.Context(), "client went away", attrRoute, r.Pattern, attrStatus, code, attrErr, err)
	case err != nil:
		code = statusOf(err)
		rep.Error = publicMessage(err, requestIDFrom(r.Context()))
		rep.ResumeLine = imp.start
		switch {
		case retrySoon(err):
			// A write refused for now (its entity being handed over
			// between workers): nothing failed, and the report says
			// where to resume, so the client may send the rest again
			// shortly, as writeError's other retry-soon refusals.
			w.Header().Set("Retry-After", retrySoonAfter)
			s.log.WarnContext(r.Context(), "import stopped", attrDB, db, attrStatus, code, attrErr, err)
		case code >= 500:
			s.log.ErrorContext(r.Context(), "import stopped", attrDB, db, attrStatus, code, attrErr, err)
		}
	case len(rep.Errors) > 0:
		code = http.StatusBadRequest
		rep.Error = fmt.Sprintf("%s refused (first: line %d: %s); the batches holding them were not written",
			plural(len(rep.Errors)+rep.Omitted, "line", "lines"), rep.Errors[0].Line, rep.Errors[0].Error)
	}
	s.log.InfoContext(r.Context(), "database imported", attrDB, db, slog.Int("count", rep.Imported),
		slog.Int("refused", len(rep.Errors)+rep.Omitted), attrClient, p.clientID)
	writeJSON(w, code, rep)
	return nil
}

// plural is n and the noun that goes with it: "1 line", "2 lines".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// importBatchParam reads ?batch=, the lines of a batch.
func importBatchParam(r *http.Request, most int) (int, error) {
	q := r.URL.Query()
	if !q.Has("batch") {
		return min(defaultImportBatch, most), nil
	}
	if err := repeatedParam(q, "batch"); err != nil {
		return 0, err
	}
	n, ok := decimalParam(q.Get("batch"), 1, uint64(max(most, 0)))
	if !ok {
		return 0, reqErrorf(errInvalid, "batch %q: want a number from 1 to %d (-max-batch-keys)", q.Get("batch"), most)
	}
	return int(n), nil
}

// run reads body line by line, checking each into the batch and writing
// every full batch, then the last; progress is called after each batch.
// It returns the error that stopped it: a budget (errTooLarge), a body
// that cannot be read, a failed write.
func (im *importer) run(ctx context.Context, body io.Reader, progress func()) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), im.d.lim.importLine())
	for sc.Scan() {
		im.rep.Lines++
		if im.rep.Lines > im.d.lim.importLines() {
			return reqErrorf(errTooLarge, "line %d: the import exceeds the limit of %d lines (-max-import-lines)", im.rep.Lines, im.d.lim.importLines())
		}
		if err := im.check(ctx, im.rep.Lines, sc.Bytes()); err != nil {
			return err
		}
		if im.lines >= im.batch || im.bytes >= importBatchBytes {
			if err := im.flush(ctx); err != nil {
				return err
			}
			progress()
		}
	}
	if err := im.scanError(sc.Err()); err != nil {
		return err
	}
	return im.flush(ctx)
}

// scanError turns the scanner's error into the import's.
func (im *importer) scanError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bufio.ErrTooLong):
		return reqErrorf(errTooLarge, "line %d exceeds the limit of %d bytes (-max-document-size and 64 KiB)", im.rep.Lines+1, im.d.lim.importLine())
	case errors.As(err, &mbe):
		return reqErrorf(errTooLarge, "line %d: the import body exceeds the limit of %d bytes (-max-import-bytes)", im.rep.Lines+1, mbe.Limit)
	default:
		return fmt.Errorf("read import body at line %d: %v: %w", im.rep.Lines+1, err, errInvalid)
	}
}

// check checks line n into the batch; a refused line goes to the report
// and marks the batch bad. Only a failure of the server (resolving the
// binding, running a schema) is returned.
func (im *importer) check(ctx context.Context, n int, line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	im.lines++
	key, doc, err := im.parse(ctx, line)
	if key != "" && validateEntityKey(key) == nil {
		if im.namedTotal++; len(im.named) < maxAuditKeys {
			im.named = append(im.named, key)
		}
	}
	if err == nil && im.seen[key] != 0 {
		err = reqErrorf(errInvalid, "key %q is on line %d of the same batch already", key, im.seen[key])
	}
	if err != nil {
		return im.refuse(n, key, err)
	}
	im.seen[key] = n
	im.rows = append(im.rows, importRow{line: n, key: key, doc: doc})
	im.bytes += len(doc)
	return nil
}

// parse checks one line: its text and shape, the key, the document
// against the budgets and the database's schema. It returns the key and
// the document compacted, as a PUT stores it.
func (im *importer) parse(ctx context.Context, line []byte) (string, json.RawMessage, error) {
	const shape = `{"key": "<entity key>", "doc": <document>}`
	// The line's object around the document is not counted against the
	// document's nesting budget, nor named in its refusal.
	if err := checkJSONText("the line", line, im.d.lim.depth()+1); err != nil {
		if errors.Is(err, errTooLarge) {
			return "", nil, reqErrorf(errTooLarge, "the line's document nests arrays and objects deeper than the limit of %d levels", im.d.lim.depth())
		}
		return "", nil, err
	}
	var l exportLine
	if err := decodeJSONBody(line, &l, shape); err != nil {
		msg, _ := clientMessage(err)
		return "", nil, reqErrorf(errInvalid, "%s", strings.Replace(msg, "body must be", "the line must be", 1))
	}
	if l.Key == nil || l.Doc == nil {
		return "", nil, reqErrorf(errInvalid, "the line must be %s", shape)
	}
	if err := validateEntityKey(*l.Key); err != nil && len(*l.Key) > maxEntityKeyLen {
		// The report names the line, not a key longer than any.
		return "", nil, err
	} else if err != nil {
		return *l.Key, nil, err
	}
	doc, err := im.d.document(*l.Key, l.Doc, docUnscanned)
	if err != nil {
		return *l.Key, nil, err
	}
	if im.ids == nil {
		// Once a batch: a binding changed during an import applies
		// from the next batch on.
		if im.ids, err = im.d.catalog.bindings.schemasFor(ctx, im.db, ""); err != nil {
			return "", nil, err
		}
	}
	return *l.Key, doc, im.d.schemas.validateDoc(ctx, im.ids, doc)
}

// refuse records line n's error in the report, or returns err when it is
// not about the line (the server failed).
func (im *importer) refuse(n int, key string, err error) error {
	msg, ok := clientMessage(err)
	if !ok {
		return fmt.Errorf("line %d: %w", n, err)
	}
	im.bad = true
	if len(im.rep.Errors) >= maxImportErrors {
		im.rep.Omitted++
		return nil
	}
	e := importError{Line: n, Key: key, Error: msg}
	if ve := schemaIssues(err); ve != nil {
		e.Errors = ve.Issues
	}
	im.rep.Errors = append(im.rep.Errors, e)
	return nil
}

// flush writes the batch unless a line of it was refused, then starts a
// new one.
func (im *importer) flush(ctx context.Context) error {
	rows, bad := im.rows, im.bad
	im.rows, im.lines, im.bytes, im.bad, im.ids = nil, 0, 0, false, nil
	clear(im.seen)
	switch {
	case bad:
		im.rep.Rejected++
	case len(rows) > 0:
		n, err := im.d.writeRows(ctx, im.db, im.principal, rows)
		im.rep.Imported += n
		if err != nil {
			return err // start stays this batch's first line
		}
		im.rep.Batches++
	}
	im.start = im.rep.Lines + 1
	return nil
}

// writeRows writes checked rows of db, importWriters at a time, each
// through the write path of a single PUT (by principal, keeping versions
// as the database says), and returns how many were written. On a failure
// the others still run to their end; the error names the first failed
// line.
func (d *dataPlane) writeRows(ctx context.Context, db, principal string, rows []importRow) (int, error) {
	maxVersions, err := d.maxVersions(ctx, db)
	if err != nil {
		return 0, err
	}
	errs := make([]error, len(rows))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(importWriters, len(rows)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				op := &pb.EntityOp{DatabaseName: db, EntityKey: rows[i].key, Operation: pb.Operation_PUT, Payload: rows[i].doc,
					Principal: principal, MaxVersions: int32(maxVersions)}
				if _, err := d.proc.Process(ctx, op); err != nil {
					errs[i] = reqPrefixf(err, "line %d (key %q)", rows[i].line, rows[i].key)
				}
			}
		}()
	}
	for i := range rows {
		next <- i
	}
	close(next)
	wg.Wait()
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	for _, err := range errs {
		if err != nil {
			return n, fmt.Errorf("import: %d of %d entities of the batch written: %w", n, len(rows), err)
		}
	}
	return n, nil
}
