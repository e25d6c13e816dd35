package main

// Request budgets: limits that keep one request from taking the
// server down, each a flag. A request over a budget is refused before
// anything is stored, with 413 and a sentence naming the limit; the
// -rest-max-body-size limit itself is in rest.go (readBody).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
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
	// maxImportBytes and maxImportLines bound one import's body and
	// lines (-max-import-bytes, -max-import-lines; transfer.go).
	maxImportBytes int64
	maxImportLines int
	// maxVersions is how many versions of each entity a database keeps
	// unless its settings say otherwise (-max-versions; 0: versions off).
	maxVersions int
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

// readShare is the most of the in-flight read budget that the reads of
// one worker's entities hold while they wait for its answers, when
// several workers share the entities: half of it, never under one
// document (ARCHITECTURE.md, "Placement").
func (b budgets) readShare() int64 { return max(b.inflightRead()/2, b.document()) }
func (b budgets) validation() time.Duration {
	return cmp.Or(b.validationTimeout, defaultValidationTimeout)
}

// storedObject is the largest object the filesystem store reads
// (fsstore.go): twice the document budget, room for any object a write
// within the budgets stores, and never less than defaultMaxObject, so that
// lowering a budget leaves what is stored readable.
func (b budgets) storedObject() int64 { return max(defaultMaxObject, 2*b.document()) }

// checkJSONText refuses what of a JSON text (a body, a document or a
// schema) must never be decoded: bytes that are not UTF-8 and \u escapes
// of a UTF-16 surrogate without its pair (400; the decoders would silently
// replace them with U+FFFD, or store them verbatim), and nesting deeper
// than maxDepth (413; the decoders recurse, and a schema compiles in time
// quadratic in its depth). It scans the bytes once, without decoding;
// malformed JSON is left to the decoder.
func checkJSONText(what string, b []byte, maxDepth int) error {
	if f := scanJSONText(b, maxDepth); f.kind != textOK {
		return f.err(what, maxDepth)
	}
	return nil
}

// textFault is what scanJSONText found wrong with a JSON text, kept apart
// from its sentence so that a caller names the text only when it fails.
type textFault struct {
	kind uint8
	// escape is the lone surrogate's escape (textLoneSurrogate).
	escape []byte
}

// The kinds of textFault.
const (
	textOK = uint8(iota)
	textNotUTF8
	textLoneSurrogate
	textTooDeep
)

// scanJSONText is checkJSONText without the sentence.
func scanJSONText(b []byte, maxDepth int) textFault {
	if !utf8.Valid(b) {
		return textFault{kind: textNotUTF8}
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			n, lone := escapeLen(b[i:])
			if lone {
				return textFault{kind: textLoneSurrogate, escape: b[i : i+6]}
			}
			i += n - 1
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return textFault{kind: textTooDeep}
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return textFault{}
}

// err is f's error for the text what, scanned with the limit maxDepth.
func (f textFault) err(what string, maxDepth int) error {
	switch f.kind {
	case textNotUTF8:
		return reqErrorf(errInvalid, "%s is not valid UTF-8", what)
	case textLoneSurrogate:
		return reqErrorf(errInvalid, "%s holds the escape %s, half of a UTF-16 surrogate pair without the other half: not a Unicode character",
			what, f.escape)
	case textTooDeep:
		return reqErrorf(errTooLarge, "%s nests arrays and objects deeper than the limit of %d levels", what, maxDepth)
	}
	return nil
}

// escapeLen returns the length of the escape at the start of b (which
// starts with a backslash): 2, or 6 for \uXXXX, or 12 for a surrogate pair
// \uD8XX\uDCXX; lone is true for a \u escape of a surrogate not paired
// that way. A malformed escape counts 2, left to the decoder to refuse.
func escapeLen(b []byte) (n int, lone bool) {
	r, ok := hexEscape(b)
	switch {
	case !ok:
		return 2, false
	case r >= 0xdc00 && r <= 0xdfff:
		return 6, true
	case r < 0xd800 || r > 0xdbff:
		return 6, false
	}
	if low, ok := hexEscape(b[6:]); ok && low >= 0xdc00 && low <= 0xdfff {
		return 12, false
	}
	return 6, true
}

// hexEscape decodes the \uXXXX escape at the start of b.
func hexEscape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkDocumentSize refuses a document over the document budget.
func (b budgets) checkDocumentSize(what string, n int) error {
	if int64(n) > b.document() {
		return reqErrorf(errTooLarge, "%s of %d bytes exceeds the document limit of %d bytes", what, n, b.document())
	}
	return nil
}

// runWithin runs f, giving up after d with the error tooLong (a 413) or
// when ctx ends. f keeps running after that (the schema library cannot be
// interrupted from outside); what bounds its work is the expansion limit
// on schemas (schemaExpansion) for a validation, the bounds of
// checkSchemaCost and budgetVocabulary, which stops it at its next
// subschema, for a compilation.
func runWithin(ctx context.Context, d time.Duration, tooLong error, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return tooLong
	case <-ctx.Done():
		return fmt.Errorf("validate: %w", ctx.Err())
	}
}

// validationBytesPerSecond is how many bytes of strings a validation may
// read per second of its time budget, a string counted once for each
// subschema the schema's expansion counts (a $ref and its target are
// two): each check may read all of it (minLength counts its characters, a
// pattern scans it, the library copies it). Measured on the development
// machine, shared: 2^12 minLength checks of a 900 KB string, an expansion
// of 16,383, took 3.6 s of CPU at load 5.7 (about 2^32 such bytes a
// second), 2^9 of them 0.7 s at load 9.8 (2^31.3); so a document let
// through takes about the budget at most on a busy core.
const validationBytesPerSecond = 1 << 31

// checkStringWork refuses (413) a document whose strings the schema may
// read more of than a validation can within its time budget: their bytes
// (values and member names) times expansion, the most subschemas the
// schema applies along one path. The validation cannot be interrupted: it
// ran on past its time budget after the client's answer (2^12 minLength
// checks of a 900 KB string: 3.6 s of CPU, 2.6 s of them after a 1 s
// budget's 413). size is the length of the document's JSON text, which
// its strings, unescaped, never exceed: most documents are let through on
// it without walking v.
func (b budgets) checkStringWork(expansion, size int, v any) error {
	limit := int64(b.validation().Seconds() * validationBytesPerSecond)
	if int64(expansion)*int64(size) <= limit {
		return nil
	}
	n := stringBytes(v)
	if int64(expansion)*n <= limit {
		return nil
	}
	return reqErrorf(errTooLarge, "the document's %d bytes of strings, each checked by up to %d of the schema's subschemas, are more than validating within %v can read",
		n, expansion, b.validation())
}

// validationChecksPerSecond is how many checks of a value (valueWalk's
// unit) a validation may make per second of its time budget. Measured on
// the development machine at load 9 on 2 cores: an enum of 1,000 numbers
// or 1,000 minimums checked against 10,000 numbers, 10^7 checks, took
// 11.4 and 13.7 s of CPU (numbers compare as exact rationals).
const validationChecksPerSecond = 1 << 20

// checkValueWork refuses (413) a document that the schema would check
// more often than a validation can within its time budget: it walks the
// document with the schema as the validator would, counting a check for
// each subschema applied to each value and for each enum value and pattern
// instruction met, and stops at the budget. Validation cannot be
// interrupted: an array of 10,000 numbers against an enum of 10,000 got
// its 413 after 1 s and went on for minutes of CPU, a 1 MiB array for an
// hour. The count walks what may apply: every patternProperties, and
// additionalProperties for a member no property names, so it may count
// more than the validator checks, never less.
//
// used, when not nil, is the checks the documents of the same request
// made before this one (validateDocs), and is advanced by this one's: they
// share the budget.
func (b budgets) checkValueWork(s *jsonschema.Schema, v any, used *int64) error {
	w := valueWalk{limit: int64(b.validation().Seconds() * validationChecksPerSecond)}
	if used != nil {
		w.n = *used
	}
	w.visit(s, v, 0)
	switch {
	case w.n <= w.limit && used != nil:
		*used = w.n
	case w.n <= w.limit:
	case used != nil:
		return reqErrorf(errTooLarge, "the schema would check the values of the request's documents more than %d times, more than validating within %v can",
			w.limit, b.validation())
	default:
		return reqErrorf(errTooLarge, "the schema would check the document's values more than %d times, more than validating within %v can",
			w.limit, b.validation())
	}
	return nil
}

// sharedChecksKey is the context key of the checks made so far by the
// documents of one request, which share one budget (checkValueWork).
type sharedChecksKey struct{}

// valueWalk counts the checks of a validation (checkValueWork), n, up to
// past limit. It allocates per subschema, not per value: the validation it
// guards runs on every write of a bound database.
type valueWalk struct {
	n, limit int64
	// stack holds the schemas being applied, those of the current value
	// from the index visit is given.
	stack []*jsonschema.Schema
	// same memoizes subschemas' first list per schema.
	same map[*jsonschema.Schema][]*jsonschema.Schema
	// works memoizes schemaWork.
	works map[*jsonschema.Schema]*[numKinds]int64
}

// schemaWork is what applying s to a value of each kind costs beyond one
// check (memoized): its patterns, its enum and const values and, on a
// number, its numeric keywords.
func (w *valueWalk) schemaWork(s *jsonschema.Schema) *[numKinds]int64 {
	if m, ok := w.works[s]; ok {
		return m
	}
	m := new([numKinds]int64)
	for kind := range m {
		m[kind] = int64(patternCost(s, kind)) + enumWork(s, kind)
	}
	m[kindScalar] += ratWork(s.Minimum) + ratWork(s.Maximum) + ratWork(s.ExclusiveMinimum) +
		ratWork(s.ExclusiveMaximum) + ratWork(s.MultipleOf)
	if w.works == nil {
		w.works = map[*jsonschema.Schema]*[numKinds]int64{}
	}
	w.works[s] = m
	return m
}

// visit counts the checks of s on v. stack[base:] holds the schemas
// applied to v on the way here (a $ref back to one of them is a loop the
// validator refuses).
func (w *valueWalk) visit(s *jsonschema.Schema, v any, base int) {
	if s == nil || w.n > w.limit || slices.Contains(w.stack[base:], s) {
		return
	}
	kind := kindScalar
	switch v.(type) {
	case []any:
		kind = kindArray
	case map[string]any:
		kind = kindObject
	}
	checks := 1 + w.schemaWork(s)[kind]
	if n, ok := v.(json.Number); ok {
		work, _ := numberWork(n)
		checks *= work
	}
	w.n += checks
	w.stack = append(w.stack, s)
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()
	same, ok := w.same[s]
	if !ok {
		same, _, _ = subschemas(s)
		same = slices.DeleteFunc(same, func(c *jsonschema.Schema) bool { return c == nil })
		if w.same == nil {
			w.same = map[*jsonschema.Schema][]*jsonschema.Schema{}
		}
		w.same[s] = same
	}
	for _, c := range same {
		w.visit(c, v, base)
	}
	below := len(w.stack)
	switch v := v.(type) {
	case []any:
		tuple, _ := s.Items.([]*jsonschema.Schema)
		for i, e := range v {
			w.visit(s.Contains, e, below)
			w.visit(s.UnevaluatedItems, e, below)
			switch {
			case i < len(s.PrefixItems):
				w.visit(s.PrefixItems[i], e, below)
			case i < len(tuple):
				w.visit(tuple[i], e, below)
			case tuple != nil:
				w.visitAny(s.AdditionalItems, e, below)
			case s.Items2020 != nil:
				w.visit(s.Items2020, e, below)
			default:
				w.visitAny(s.Items, e, below)
			}
		}
	case map[string]any:
		for name, e := range v {
			if s.PropertyNames != nil { // a name made an any allocates
				w.visit(s.PropertyNames, name, below)
			}
			w.visit(s.UnevaluatedProperties, e, below)
			for _, c := range s.PatternProperties {
				w.visit(c, e, below)
			}
			if c, ok := s.Properties[name]; ok {
				w.visit(c, e, below)
			} else {
				w.visitAny(s.AdditionalProperties, e, below)
			}
		}
	}
}

// visitAny visits the schema of a keyword that may hold one (or a bool).
func (w *valueWalk) visitAny(s any, v any, base int) {
	if c, ok := s.(*jsonschema.Schema); ok {
		w.visit(c, v, base)
	}
}

// maxRatExp is the largest power of ten, either way, that the schema
// library's exact numbers take: it parses a number's text with math/big's
// Rat.SetString at each check (minimum, multipleOf, enum, uniqueItems),
// which fails past this exponent (less the digits after the point), and
// the library uses the nil it then gets: {"n": 1e1000000} validated
// against {"maximum": 10} took the whole server down.
const maxRatExp = 1_000_000

// numberWork is what checking the number n costs the schema library, in
// valueWalk's checks (about a microsecond each): its text parsed as an
// exact fraction, compared and divided. Measured at load 5 on 2 cores, a
// parse, a comparison and two divisions took 630 µs for a number of
// 10,000 digits, 18 to 30 ms for 100,000 digits, 2.3 s for 1,000,000,
// 40 to 70 µs for an exponent of 10,000, 1 ms for one of 100,000 and
// 25 ms for one of 1,000,000: the digits cost about their square, an
// exponent (a power of five as large) less, counted here as its power 1.5. A 1 MiB array of 1e999999 against {"maximum": 10} took an hour of
// CPU after its 413, counted as one check per number. ok is false for a
// number past maxRatExp, which the library cannot check at all.
func numberWork(n json.Number) (work int64, ok bool) {
	s := string(n)
	digits, fraction, exp := int64(0), int64(0), int64(0)
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits, fraction = digits+1, fraction+1
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		e, err := parseExponent([]byte(s[i:]))
		if err != nil {
			return 1, true // not a JSON number: the library refuses its type
		}
		exp = e
	}
	pow := exp - fraction
	if pow < -maxRatExp || pow > maxRatExp {
		return math.MaxInt32, false
	}
	pow = max(pow, -pow)
	return 1 + digits*digits/100000 + pow*int64(math.Sqrt(float64(pow)))/10000, true
}

// checkNumbers refuses (413) a document holding a number the schema
// library cannot check (numberWork), wherever it is: uniqueItems and an
// enum of arrays read the numbers inside the values they compare too.
func checkNumbers(v any) error {
	switch v := v.(type) {
	case json.Number:
		if _, ok := numberWork(v); !ok {
			return reqErrorf(errTooLarge, "the document's number %q is beyond what a schema can check: more than 10^%d or less than 10^-%d as written",
				cutQuoted(string(v)), maxRatExp, maxRatExp)
		}
	case []any:
		for _, e := range v {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range v {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// stringBytes is the size of the strings of a decoded JSON value: its
// string values and member names.
func stringBytes(v any) int64 {
	var n int64
	switch v := v.(type) {
	case string:
		n = int64(len(v))
	case []any:
		for _, e := range v {
			n += stringBytes(e)
		}
	case map[string]any:
		for k, e := range v {
			n += int64(len(k)) + stringBytes(e)
		}
	}
	return n
}

// Bounds of compiling a schema (schema.go compile), checked on the decoded
// document before the compiler sees it, and while it runs.
const (
	// maxSchemaNodes is the most objects and booleans, each a possible
	// subschema, of one schema document. The compiler's work grows with
	// their square: 10,000 of them take about 0.5 s.
	maxSchemaNodes = 10000
	// maxSchemaRefWork is the most distinct $ref targets times nodes: each
	// target outside the keywords the compiler knows copies its table of
	// every subschema seen so far.
	maxSchemaRefWork = 2000000
	// maxSchemaCompile is the time budget of one compilation, for what the
	// two bounds above let through on a slow or busy machine.
	maxSchemaCompile = 2 * time.Second
)

// compileTimeError is the 413 of a compilation that took longer than
// limit: a type of its own, so that callers tell it (isCompileTimeout)
// from the errors of the schema's bytes.
type compileTimeError struct{ limit time.Duration }

func (e *compileTimeError) Error() string {
	return fmt.Sprintf("schema takes longer than the limit of %v to compile", e.limit)
}

// Unwrap returns the sentence as a client sentence of kind errTooLarge.
func (e *compileTimeError) Unwrap() error { return &requestError{msg: e.Error(), kind: errTooLarge} }

// isCompileTimeout reports whether err is a compilation over its time
// budget.
func isCompileTimeout(err error) bool {
	var te *compileTimeError
	return errors.As(err, &te)
}

// checkSchemaCost refuses, with 413, a decoded schema document whose
// compilation would cost more than the bounds allow: more than
// maxSchemaNodes objects and booleans, or distinct $ref, $dynamicRef and
// $recursiveRef targets times those nodes over maxSchemaRefWork. It walks
// the document once.
func checkSchemaCost(doc any) error {
	nodes, refs := 0, map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case bool:
			nodes++
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			nodes++
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "$ref" || k == "$dynamicRef" || k == "$recursiveRef") {
					refs[s] = true
				}
				walk(e)
			}
		}
	}
	walk(doc)
	if nodes > maxSchemaNodes {
		return reqErrorf(errTooLarge, "schema has %d objects and booleans (subschemas), more than the limit of %d", nodes, maxSchemaNodes)
	}
	if nodes*len(refs) > maxSchemaRefWork {
		return reqErrorf(errTooLarge, "schema has %d distinct $ref targets among %d subschemas, more than the limit of %d for their product",
			len(refs), nodes, maxSchemaRefWork)
	}
	return nil
}

// budgetVocabulary is a vocabulary of no keywords whose compile step the
// compiler runs for every subschema object it compiles: it stops the
// compilation once ctx is done or d has passed since it was made.
func budgetVocabulary(ctx context.Context, d time.Duration) *jsonschema.Vocabulary {
	deadline := time.Now().Add(d)
	return &jsonschema.Vocabulary{URL: "urn:deltadatabase:compile-budget",
		Compile: func(*jsonschema.CompilerContext, map[string]any) (jsonschema.SchemaExt, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if time.Now().After(deadline) {
				return nil, &compileTimeError{d}
			}
			return nil, nil
		}}
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
		n := 1 + patternCost(k.s, k.kind)
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

// patternCost is what the patterns of s add to its count on a value of
// kind: each instruction of a pattern counts as a subschema, since each
// may run at every byte of the string (boundedRegexp).
func patternCost(s *jsonschema.Schema, kind int) int {
	n := 0
	switch kind {
	case kindScalar:
		if re, ok := s.Pattern.(boundedRegexp); ok {
			n += re.cost
		}
	case kindObject:
		for re := range s.PatternProperties {
			if re, ok := re.(boundedRegexp); ok {
				n += re.cost
			}
		}
	}
	return n
}

// enumWork is what the enum and const of s add to its checks on a value
// of kind: each of their values of that kind is compared with it (as exact
// numbers, about a microsecond each), and the library parses the numbers
// of an enum value again at each comparison: an enum of three 1e999999
// took 75 ms for each number checked, counted as 3 checks.
func enumWork(s *jsonschema.Schema, kind int) int64 {
	var n int64
	each := func(v any) {
		switch v.(type) {
		case []any:
			n += int64(b2i(kind == kindArray)) * numbersWork(v)
		case map[string]any:
			n += int64(b2i(kind == kindObject)) * numbersWork(v)
		default:
			n += int64(b2i(kind == kindScalar)) * numbersWork(v)
		}
	}
	if s.Enum != nil {
		for _, v := range s.Enum.Values {
			each(v)
		}
	}
	if s.Const != nil {
		each(*s.Const)
	}
	return n
}

// numbersWork is 1 and what v's numbers cost beyond 1 each (numberWork):
// the work of comparing v, as enumWork counts it.
func numbersWork(v any) int64 {
	n := int64(1)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case json.Number:
			work, _ := numberWork(v)
			n += work - 1
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return n
}

// ratWork is what comparing a number with the numeric keyword r
// (minimum, multipleOf, ...) costs beyond the number's own work: a
// fraction of many digits is multiplied, for a comparison, or divided by,
// at each check. Measured at load 5 on 2 cores: a minimum of 1e-999999
// (3.3 million bits) took 5 ms a number, about 1 per 200 digits.
func ratWork(r *big.Rat) int64 {
	if r == nil {
		return 0
	}
	digits := int64(r.Num().BitLen()+r.Denom().BitLen()) * 3 / 10
	return digits / 200
}

// b2i is 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
// starved by small ones. While nobody waits, taking and giving back room
// are single atomic steps on used, without the lock: a warm GET takes,
// shrinks and releases its room three times per request. It is safe for
// concurrent use; build it with newByteBudget.
type byteBudget struct {
	capacity int64
	// used is the bytes taken; it never exceeds capacity.
	used atomic.Int64
	// waiting is len(waiters), for release and the lock-free acquire to
	// read without mu.
	waiting atomic.Int32
	mu      sync.Mutex
	waiters []*budgetWaiter // in arrival order; guarded by mu
}

// budgetWaiter is one acquire waiting for room; ready is closed once its
// bytes are counted as used.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// workerShare is a worker's share of the read budget (budgets.readShare)
// and whether the worker is stuck: one of its reads went overdue
// (dataPlane.watchRead) and it has answered no read since, so its reads
// take room in the overdue half first (dataPlane.holdRead).
type workerShare struct {
	byteBudget
	stuck atomic.Bool
}

// newWorkerShare returns a share of capacity bytes (at least 1).
func newWorkerShare(capacity int64) *workerShare {
	return &workerShare{byteBudget: byteBudget{capacity: max(capacity, 1)}}
}

// newByteBudget returns a budget of capacity bytes (at least 1).
func newByteBudget(capacity int64) *byteBudget {
	return &byteBudget{capacity: max(capacity, 1)}
}

// acquire takes n bytes (at most the capacity), waiting for room until
// ctx ends. It takes nothing when it returns an error.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	return b.acquireWithin(ctx, n, 0, nil)
}

// acquireWithin is acquire waiting for room wait at most (0: no limit
// but ctx); past it, the error wraps late. The timer is set only when
// the room is not there at once.
func (b *byteBudget) acquireWithin(ctx context.Context, n int64, wait time.Duration, late error) error {
	n = min(n, b.capacity)
	if b.waiting.Load() == 0 && b.take(n) {
		return nil
	}
	var timeout <-chan time.Time
	if wait > 0 {
		tm := time.NewTimer(wait)
		defer tm.Stop()
		timeout = tm.C
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.mu.Lock()
	b.waiters = append(b.waiters, w)
	// Room given back since the attempt above, by a release that saw
	// nobody waiting, is handed out here (wake stores waiting first).
	b.wake()
	b.mu.Unlock()
	why := error(nil)
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		why = ctx.Err()
	case <-timeout:
		why = fmt.Errorf("no room after %v: %w", wait, late)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while giving up: give the bytes back.
		b.used.Add(-n)
	default:
		b.waiters = slices.DeleteFunc(b.waiters, func(x *budgetWaiter) bool { return x == w })
	}
	b.wake()
	return fmt.Errorf("wait for %d bytes of the read budget: %w", n, why)
}

// tryAcquire takes n bytes (at most the capacity) if they are free and
// nobody waits for room, without waiting.
func (b *byteBudget) tryAcquire(n int64) bool {
	return b.waiting.Load() == 0 && b.take(min(n, b.capacity))
}

// take takes n bytes if they fit, in one atomic step.
func (b *byteBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.capacity {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// release gives back n bytes taken by acquire. Either it sees a waiter
// queued, and wakes the line, or the waiter's own wake, after queueing,
// sees these bytes free (both steps are sequentially consistent atomics).
func (b *byteBudget) release(n int64) {
	b.used.Add(-min(n, b.capacity))
	if b.waiting.Load() == 0 {
		return
	}
	b.mu.Lock()
	b.wake()
	b.mu.Unlock()
}

// wake grants the waiters at the head of the line that now fit, and
// publishes how many still wait. b.mu must be held.
func (b *byteBudget) wake() {
	b.waiting.Store(int32(len(b.waiters)))
	for len(b.waiters) > 0 && b.take(b.waiters[0].n) {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		close(w.ready)
	}
	b.waiting.Store(int32(len(b.waiters)))
}
