package main

// Request budgets (issue 12): limits that keep one request from taking the
// server down, each a flag. A request over a budget is refused before
// anything is stored, with 413 and a sentence naming the limit; the
// -rest-max-body-size limit itself is in rest.go (readBody).

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Budget defaults, the values of the flags when not given.
const (
	defaultMaxPatchOps       = 1000
	defaultMaxBatchKeys      = 1000
	defaultMaxJSONDepth      = 64
	defaultValidationTimeout = time.Second
	defaultMaxDocument       = 1 << 20
	// defaultMaxResponse holds 16 documents of the default largest size
	// in one answer: a page of them streams in well under a second on a
	// LAN, and a client asks again for the rest.
	defaultMaxResponse = 16 << 20
	// defaultMaxInflightRead lets 64 reads of documents of the default
	// largest size be under way at once, or many more of a few KiB, each
	// waiting for room once the documents of the others total 64 MiB.
	defaultMaxInflightRead = 64 << 20
)

// budgets are the per-request limits. A zero field means its default, so
// the zero value is the defaults.
type budgets struct {
	// maxDocument is the largest document stored, bytes, also the largest
	// result of a PATCH, checked while it is applied
	// (-max-document-size; default -rest-max-body-size).
	maxDocument int64
	// maxPatchOps is the most operations of one JSON Patch
	// (-max-patch-ops).
	maxPatchOps int
	// maxBatchKeys is the most entities of one PUT, and the most keys of
	// one POST /api/databases/{db}/get (-max-batch-keys).
	maxBatchKeys int
	// maxDepth is the deepest nesting of arrays and objects in a JSON body,
	// document or schema (-max-json-depth).
	maxDepth int
	// validationTimeout bounds the validation of one document against one
	// schema (-validation-timeout).
	validationTimeout time.Duration
	// maxResponse bounds the documents of one answer of several: a
	// listing with include_docs, a get of many keys
	// (-max-response-bytes); never under maxDocument, so that an answer
	// holds at least one document.
	maxResponse int64
	// maxInflightRead bounds the documents read for answers and not yet
	// sent, over all requests (-max-inflight-read-bytes); never under
	// maxDocument.
	maxInflightRead int64
	// findMaxScan and findTimeout bound one query (find.go): entities or
	// index entries examined (-find-max-scan) and its time
	// (-find-timeout); its documents are bounded by maxResponse.
	findMaxScan int64
	findTimeout time.Duration
}

func (b budgets) document() int64 { return cmp.Or(b.maxDocument, defaultMaxDocument) }
func (b budgets) patchOps() int   { return cmp.Or(b.maxPatchOps, defaultMaxPatchOps) }
func (b budgets) batchKeys() int  { return cmp.Or(b.maxBatchKeys, defaultMaxBatchKeys) }
func (b budgets) depth() int      { return cmp.Or(b.maxDepth, defaultMaxJSONDepth) }
func (b budgets) response() int64 {
	return max(cmp.Or(b.maxResponse, defaultMaxResponse), b.document())
}
func (b budgets) inflightRead() int64 {
	return max(cmp.Or(b.maxInflightRead, defaultMaxInflightRead), b.document())
}
func (b budgets) validation() time.Duration {
	return cmp.Or(b.validationTimeout, defaultValidationTimeout)
}

// checkJSONText refuses what of a JSON text (a body, a document or a
// schema) must never be decoded: bytes that are not UTF-8 (400; the
// decoders would silently replace them, or store them verbatim) and
// nesting deeper than maxDepth (413; the decoders recurse, and a schema
// compiles in time quadratic in its depth). It scans the bytes once,
// without decoding; malformed JSON is left to the decoder.
func checkJSONText(what string, b []byte, maxDepth int) error {
	if !utf8.Valid(b) {
		return reqErrorf(errInvalid, "%s is not valid UTF-8", what)
	}
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			inString = c != '"'
			escaped = c == '\\'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return reqErrorf(errTooLarge, "%s nests arrays and objects deeper than the limit of %d levels", what, maxDepth)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// checkDocumentSize refuses a document over the document budget.
func (b budgets) checkDocumentSize(what string, n int) error {
	if int64(n) > b.document() {
		return reqErrorf(errTooLarge, "%s of %d bytes exceeds the document limit of %d bytes", what, n, b.document())
	}
	return nil
}

// runWithin runs f, giving up after d (413) or when ctx ends. f keeps
// running after that (the schema library cannot be interrupted); what
// bounds its work is the expansion limit on schemas (schemaExpansion).
func runWithin(ctx context.Context, d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return reqErrorf(errTooLarge, "document takes longer than the limit of %v to validate", d)
	case <-ctx.Done():
		return fmt.Errorf("validate: %w", ctx.Err())
	}
}

// maxSchemaExpansion is the most subschemas one path of a document may be
// checked against once every $ref is expanded (schemaExpansion). Schemas
// written by hand stay far below it; 30 nested anyOf levels of two $refs
// each (2^30, hours of validation) do not, nor a recursive schema that
// doubles its work on each level of the document.
const maxSchemaExpansion = 100000

// instance kinds, as far as the applicability of keywords goes.
const (
	kindScalar = iota
	kindArray
	kindObject
	numKinds
)

// expansionKey is one state of schemaExpansion: a subschema applied to a
// value of kind, with depth levels of the document below it.
type expansionKey struct {
	s     *jsonschema.Schema
	depth int
	kind  int
}

// schemaExpansion is the worst-case work of validating one path from the
// root of a document nested at most depth levels against s: how many
// subschemas are applied along it with every reference expanded, the
// value at each level of the worst kind. It stops counting past limit.
// Each (subschema, depth, kind) is counted once (memo), so the count
// itself takes time linear in the schema times depth; a reference back to
// a subschema being counted on the same value (an infinite loop the
// validator refuses) counts 1.
func schemaExpansion(s *jsonschema.Schema, depth, limit int) int {
	memo := map[expansionKey]int{}
	var count func(k expansionKey) int
	// worst is count for a value of unknown kind.
	worst := func(s *jsonschema.Schema, depth int) int {
		n := 0
		for k := range numKinds {
			n = max(n, count(expansionKey{s, depth, k}))
		}
		return n
	}
	count = func(k expansionKey) int {
		if k.s == nil {
			return 0
		}
		if n, ok := memo[k]; ok {
			return n
		}
		if len(memo) > 2*limit {
			return limit + 1 // a schema this large is over the limit anyway
		}
		memo[k] = 1 // in progress
		n := 1
		same, arr, obj := subschemas(k.s)
		for _, c := range same {
			n += count(expansionKey{c, k.depth, k.kind})
		}
		var below []*jsonschema.Schema
		switch k.kind {
		case kindArray:
			below = arr
		case kindObject:
			below = obj
		}
		if k.depth > 0 {
			for _, c := range below {
				n += worst(c, k.depth-1)
			}
		}
		n = min(n, limit+1)
		memo[k] = n
		return n
	}
	return worst(s, depth)
}

// subschemas lists the schemas s applies: to the same value (references
// included), to the elements of an array, to the members of an object.
func subschemas(s *jsonschema.Schema) (same, arr, obj []*jsonschema.Schema) {
	same = []*jsonschema.Schema{s.Ref, s.RecursiveRef, s.Not, s.If, s.Then, s.Else, s.ContentSchema}
	if s.DynamicRef != nil {
		same = append(same, s.DynamicRef.Ref)
	}
	same = append(append(append(same, s.AllOf...), s.AnyOf...), s.OneOf...)
	for _, c := range s.DependentSchemas {
		same = append(same, c)
	}
	for _, v := range s.Dependencies {
		same = appendSchemaOf(same, v)
	}
	arr = append([]*jsonschema.Schema{s.Contains, s.Items2020, s.UnevaluatedItems}, s.PrefixItems...)
	arr = appendSchemaOf(appendSchemaOf(arr, s.Items), s.AdditionalItems)
	obj = []*jsonschema.Schema{s.PropertyNames, s.UnevaluatedProperties}
	for _, c := range s.Properties {
		obj = append(obj, c)
	}
	for _, c := range s.PatternProperties {
		obj = append(obj, c)
	}
	return same, arr, appendSchemaOf(obj, s.AdditionalProperties)
}

// appendSchemaOf appends the schemas of a keyword that may hold a schema,
// a list of schemas or something else (a bool, required names).
func appendSchemaOf(out []*jsonschema.Schema, v any) []*jsonschema.Schema {
	switch v := v.(type) {
	case *jsonschema.Schema:
		return append(out, v)
	case []*jsonschema.Schema:
		return append(out, v...)
	}
	return out
}

// byteBudget is a weighted semaphore of bytes: the documents read for
// answers and not yet sent, over all requests (-max-inflight-read-bytes).
// Waiters are served in arrival order, so a large reservation is not
// starved by small ones. It is safe for concurrent use; build it with
// newByteBudget.
type byteBudget struct {
	mu       sync.Mutex
	capacity int64
	used     int64
	waiters  []*budgetWaiter // in arrival order
}

// budgetWaiter is one acquire waiting for room; ready is closed once its
// bytes are counted as used.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// newByteBudget returns a budget of capacity bytes (at least 1).
func newByteBudget(capacity int64) *byteBudget {
	return &byteBudget{capacity: max(capacity, 1)}
}

// acquire takes n bytes (at most the capacity), waiting for room until
// ctx ends. It takes nothing when it returns an error.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.capacity)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.capacity {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while ctx ended: give the bytes back.
		b.used -= n
	default:
		b.waiters = slices.DeleteFunc(b.waiters, func(x *budgetWaiter) bool { return x == w })
	}
	b.wake()
	return fmt.Errorf("wait for %d bytes of the read budget: %w", n, ctx.Err())
}

// release gives back n bytes taken by acquire.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= min(n, b.capacity)
	b.wake()
}

// wake grants the waiters at the head of the line that now fit. b.mu must
// be held.
func (b *byteBudget) wake() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.capacity {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		close(w.ready)
	}
}
