package main

// The data plane's operations on several entities at once (dataplane.go
// holds the rest): a PUT of one or more documents, checked all before any
// is written, and a read of several keys answered one document at a time
// within the response budget.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	pb "deltadatabase/proto"
)

// put stores the documents of ops, PUTs of distinct keys of one database
// with their preconditions. Every document is checked against the budgets,
// compacted and validated against the database's bound schema and
// schemaID before anything is written: the only validation it gets (the
// worker stores it as is). scans, when not nil, says what is known of
// each op's document (a REST body's split); nil, nothing. It answers one
// response per op, in order.
func (d *dataPlane) put(ctx context.Context, schemaID string, ops []*pb.EntityOp, scans []docScan) ([]*pb.WorkerResponse, error) {
	if len(ops) == 0 {
		return nil, reqErrorf(errInvalid, "nothing to store")
	}
	if len(ops) > d.lim.batchKeys() {
		return nil, reqErrorf(errTooLarge, "PUT of %d entities exceeds the limit of %d entities per request", len(ops), d.lim.batchKeys())
	}
	db := ops[0].GetDatabaseName()
	if err := validateDBName(db); err != nil {
		return nil, err
	}
	if err := checkSchemaID(schemaID); err != nil {
		return nil, err
	}
	docs := make([]entityDoc, len(ops))
	for i, op := range ops {
		if err := validateEntityKey(op.GetEntityKey()); err != nil {
			return nil, err
		}
		scan := docUnscanned
		if scans != nil {
			scan = scans[i]
		}
		doc, err := d.document(op.GetEntityKey(), op.GetPayload(), scan)
		if err != nil {
			return nil, err
		}
		docs[i], op.Payload = entityDoc{key: op.GetEntityKey(), doc: doc}, doc
	}
	ids, err := d.catalog.bindings.schemasFor(ctx, db, schemaID)
	if err != nil {
		return nil, err
	}
	if err := d.schemas.validateDocs(ctx, ids, docs); err != nil {
		return nil, err
	}
	if err := d.withVersions(ctx, db, ops...); err != nil {
		return nil, err
	}
	return d.write(ctx, ops)
}

// document checks one document of a PUT against the budgets (size,
// UTF-8, nesting) and returns it without insignificant whitespace, the
// form the worker stores, in a new slice (doc may alias a request body).
// A document that scan says is valid JSON within a body already checked
// whole (readEntitiesBody: UTF-8, surrogates, and nesting one level
// deeper than a document's limit) is only measured and compacted: the
// other checks could not fail. The sentences name the document only
// when one fails.
func (d *dataPlane) document(key string, doc []byte, scan docScan) ([]byte, error) {
	if int64(len(doc)) > d.lim.document() {
		return nil, d.lim.checkDocumentSize(documentWhat(key), len(doc))
	}
	switch scan {
	case docCompact:
		return slices.Clone(doc), nil
	case docSpaced:
		return appendCompacted(make([]byte, 0, len(doc)), doc), nil
	}
	if f := scanJSONText(doc, d.lim.depth()); f.kind != textOK {
		return nil, f.err(documentWhat(key), d.lim.depth())
	}
	if out, ok := compactJSON(doc); ok {
		return out, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil || buf.Len() == 0 {
		return nil, reqErrorf(errInvalid, "%s is not valid JSON", documentWhat(key))
	}
	return buf.Bytes(), nil
}

// documentWhat names the document of key in error sentences.
func documentWhat(key string) string { return fmt.Sprintf("document %q", key) }

// write routes the writes of a PUT. Several writes with preconditions are
// checked all before any is written, under the router's entity write
// locks (batchProcessor) when the processor has them.
func (d *dataPlane) write(ctx context.Context, ops []*pb.EntityOp) ([]*pb.WorkerResponse, error) {
	if len(ops) > 1 && slices.ContainsFunc(ops, hasPreconditions) {
		if bp, ok := d.proc.(batchProcessor); ok {
			return bp.ProcessAll(ctx, ops)
		}
		return processAll(ctx, d.proc, ops)
	}
	out := make([]*pb.WorkerResponse, 0, len(ops))
	for _, op := range ops {
		resp, err := d.proc.Process(ctx, op)
		if err != nil {
			return nil, entityError(err, op.GetDatabaseName(), op.GetEntityKey())
		}
		out = append(out, resp)
	}
	return out, nil
}

// docFunc receives one entity of an answer of several documents: its
// document, ETag and write time, or found false when it does not exist.
// doc is valid until it returns.
type docFunc func(key string, doc []byte, m docMeta, found bool) error

// docMeta is what an answer tells of a stored document besides its body.
type docMeta struct {
	etag string
	// modified is when the stored version was written (the envelope's
	// write time, which a rekey keeps); zero when unknown.
	modified time.Time
}

// metaOf is the docMeta of a worker's answer.
func metaOf(resp *pb.WorkerResponse) docMeta {
	m := docMeta{etag: etagOf(resp.GetVersion())}
	if ns := resp.GetModified(); ns != 0 {
		m.modified = time.Unix(0, ns).UTC()
	}
	return m
}

// getMany reads the entities keys of db, up to the batch budget of keys,
// each once in the order asked, and hands each to emit (eachDoc): within
// the response budget, so it may stop before the last. remaining are the
// keys not answered, in the order asked, each once ([] when all were).
func (d *dataPlane) getMany(ctx context.Context, db string, keys []string, emit docFunc) (remaining []string, err error) {
	if len(keys) > d.lim.batchKeys() {
		return nil, reqErrorf(errTooLarge, "a read of %d keys exceeds the limit of %d keys per request", len(keys), d.lim.batchKeys())
	}
	if err := validateDBName(db); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := validateEntityKey(k); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]bool, len(keys))
	unique := slices.DeleteFunc(slices.Clone(keys), func(k string) bool {
		dup := seen[k]
		seen[k] = true
		return dup
	})
	n, err := d.eachDoc(ctx, db, unique, emit)
	return unique[n:], err
}

// eachDoc reads the entities keys of db in order for an answer of several
// documents and hands them to emit one at a time, each held in the
// in-flight read budget until emit returns. It stops before a document
// that would take the answer past the response budget
// (-max-response-bytes; never before the first document), after a failed
// read or a failed emit, and returns how many keys it handled: emitted, or
// found not to exist. An answer streamed by emit thus holds one document
// at a time.
func (d *dataPlane) eachDoc(ctx context.Context, db string, keys []string, emit docFunc) (int, error) {
	var sent int64
	for i, k := range keys {
		resp, held, err := d.readHeld(ctx, db, k, nil)
		if errors.Is(err, errNotFound) {
			if err := emit(k, nil, docMeta{}, false); err != nil {
				return i, err
			}
			continue
		}
		if err != nil {
			return i, fmt.Errorf("read entity %q of %s: %w", k, db, err)
		}
		m := metaOf(resp)
		size := int64(len(k) + len(m.etag) + len(resp.GetResult()))
		if sent > 0 && sent+size > d.lim.response() {
			held.release()
			return i, nil
		}
		sent += size
		err = emit(k, resp.GetResult(), m, true)
		held.release()
		if err != nil {
			return i, err
		}
	}
	return len(keys), nil
}
