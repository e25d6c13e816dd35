package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schemaRegistry keeps JSON Schema templates in plaintext at
// schemaObjectKey(id) and validates documents against them (ARCHITECTURE.md
// "Validation and schemas").
//
// Compiled schemas are cached by ID together with the SHA-256 of the bytes
// they were compiled from (ARCHITECTURE.md "Validation and schemas": compiled
// once, cached until replaced). A Put through this registry replaces the
// cached schema at once. A cached schema older than recheckEvery is checked
// against the stored bytes on its next use and recompiled only when their hash
// changed, so a template replaced by another process sharing the storage, or
// edited by hand, takes effect within recheckEvery without a storage read per
// validation.
//
// A schemaRegistry is safe for concurrent use. Create it with
// newSchemaRegistry; the zero value is not usable.
type schemaRegistry struct {
	st  store
	now func() time.Time // when cached schemas were checked; set in tests
	// lim bounds schemas (nesting, $ref expansion) and the time of a
	// validation; the zero value is the defaults.
	lim budgets
	// compileTimeout bounds one compilation; 0 is maxSchemaCompile.
	compileTimeout time.Duration

	mu    sync.Mutex                 // guards cache
	cache map[string]*compiledSchema // by schema ID

	// compiles counts schema compilations (Put and cache misses);
	// validations counts documents validated, failures those that did not
	// pass; reads counts template reads from storage.
	compiles, validations, failures, reads atomic.Uint64
}

// compiledSchema is the outcome of compiling one version of a template.
// Exactly one of sch and err is set; compiling is deterministic (no loader
// reaches outside the document), so a failure is cached as well.
type compiledSchema struct {
	sum     [sha256.Size]byte  // SHA-256 of the raw template bytes
	sch     *jsonschema.Schema // safe for concurrent Validate calls
	err     error              // why stored bytes do not compile; wraps errCorrupt
	checked time.Time          // when sum was last compared with storage
	// expansion is the most subschemas sch applies along one path of a
	// document (schemaExpansion): how often one string may be read.
	expansion int
}

// maxValidationMessages caps the messages of one validationError so that a
// huge failing document cannot produce a huge error body.
const maxValidationMessages = 50

// schemaBaseURL is the base URL under which templates are compiled. It only
// names the document in compiler messages (where it is cut off again:
// clients see only the schema ID) and anchors relative $refs, which the
// loader then refuses.
const schemaBaseURL = "deltadb:///"

// newSchemaRegistry returns a registry over st keeping the budgets lim
// (the zero value is the defaults).
func newSchemaRegistry(st store, lim budgets) *schemaRegistry {
	return &schemaRegistry{st: st, lim: lim, now: time.Now, cache: make(map[string]*compiledSchema)}
}

// Put compiles raw as a JSON Schema and, only if it compiles within the
// budgets (compile) and ctx is still alive, stores it durably as template
// id, replacing any previous version. Invalid JSON and documents that are
// not valid schemas are errors wrapping errInvalid, a schema over a budget
// wraps errTooLarge; on any error the previous template stays in place.
func (r *schemaRegistry) Put(ctx context.Context, id string, raw []byte) error {
	if err := validateSchemaID(id); err != nil {
		return fmt.Errorf("put schema: %w", err)
	}
	sch, expansion, err := r.compile(ctx, id, raw, maxSchemaPattern)
	switch {
	case ctx.Err() != nil:
		// The client is gone (or its deadline passed): store nothing.
		return fmt.Errorf("put schema %q: %w", id, ctx.Err())
	case errors.Is(err, errTooLarge):
		return reqPrefixf(err, "schema %q", id)
	case err != nil:
		return reqErrorf(errInvalid, "schema %q: %v", id, err)
	}
	if err := r.st.Put(ctx, schemaObjectKey(id), raw); err != nil {
		return fmt.Errorf("put schema %q: %w", id, err)
	}
	r.remember(id, &compiledSchema{sum: sha256.Sum256(raw), sch: sch, expansion: expansion, checked: r.now()})
	return nil
}

// Get returns the stored template exactly as it was put, or an error
// wrapping errNotFound.
func (r *schemaRegistry) Get(ctx context.Context, id string) ([]byte, error) {
	if err := validateSchemaID(id); err != nil {
		return nil, fmt.Errorf("get schema: %w", err)
	}
	raw, err := r.st.Get(ctx, schemaObjectKey(id))
	if err != nil {
		return nil, fmt.Errorf("get schema %q: %w", id, err)
	}
	return raw, nil
}

// Delete removes template id durably and drops its compiled form. A
// missing template is an error wrapping errNotFound. Whether a database is
// still bound to it is the caller's concern.
func (r *schemaRegistry) Delete(ctx context.Context, id string) error {
	if err := validateSchemaID(id); err != nil {
		return fmt.Errorf("delete schema: %w", err)
	}
	err := r.st.Delete(ctx, schemaObjectKey(id))
	r.forget(id)
	if err != nil {
		return fmt.Errorf("delete schema %q: %w", id, err)
	}
	return nil
}

// List returns the sorted IDs of the stored templates. Objects under
// "templates/" whose name is not "<valid schema id>.json" are ignored. The
// result is never nil.
func (r *schemaRegistry) List(ctx context.Context) ([]string, error) {
	keys, err := r.st.List(ctx, templatesPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("list schemas: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, ok := jsonObjectName(templatesPrefix, k)
		if ok && validateSchemaID(id) == nil {
			ids = append(ids, id)
		}
	}
	// Byte order of keys is not byte order of IDs: "a.b.json" < "a.json".
	slices.Sort(ids)
	return ids, nil
}

// Validate checks doc against template id. An unknown template is an error
// wrapping errNotFound; a doc that is not JSON wraps errInvalid; a doc that
// does not match is a *validationError (which also matches errInvalid). A
// stored template that no longer compiles (edited by hand) wraps errCorrupt.
// A validation that takes longer than the budget wraps errTooLarge.
func (r *schemaRegistry) Validate(ctx context.Context, id string, doc []byte) error {
	r.validations.Add(1)
	c, err := r.load(ctx, id)
	if err != nil {
		return fmt.Errorf("validate against schema %q: %w", id, err)
	}
	v, err := decodeJSON(doc)
	if err != nil {
		r.failures.Add(1)
		return reqErrorf(errInvalid, "document is invalid JSON: %v", err)
	}
	used, _ := ctx.Value(sharedChecksKey{}).(*int64)
	if err := cmp.Or(r.lim.checkStringWork(c.expansion, len(doc), v), checkNumbers(v), r.lim.checkValueWork(c.sch, v, used)); err != nil {
		r.failures.Add(1)
		return err
	}
	tooLong := reqErrorf(errTooLarge, "document takes longer than the limit of %v to validate", r.lim.validation())
	err = runWithin(ctx, r.lim.validation(), tooLong, func() error { return validationResult(c.sch.Validate(v)) })
	if err != nil {
		r.failures.Add(1)
	}
	return err
}

// validationResult is the error of Validate for the library's err.
func validationResult(err error) error {
	var verr *jsonschema.ValidationError
	if errors.As(err, &verr) {
		return newValidationError(verr)
	}
	if err != nil {
		return reqErrorf(errInvalid, "document does not match: %v", err)
	}
	return nil
}

// load returns the compiled form of template id: the cached one if it was
// checked within recheckEvery, else that of the stored bytes, compiling
// them only if they differ from the cached version.
func (r *schemaRegistry) load(ctx context.Context, id string) (*compiledSchema, error) {
	if err := validateSchemaID(id); err != nil {
		return nil, err
	}
	if c := r.fresh(id); c != nil {
		return c, c.err
	}
	r.reads.Add(1)
	raw, err := r.st.Get(ctx, schemaObjectKey(id))
	if errors.Is(err, errNotFound) {
		r.forget(id)
	}
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	sum := sha256.Sum256(raw)
	if c := r.cached(id, sum); c != nil {
		return c, c.err
	}
	c := &compiledSchema{sum: sum, checked: r.now()}
	// A stored template's patterns are not refused for their cost: it
	// was accepted when it was stored, perhaps under other limits, and
	// refusing it now would refuse every write it checks.
	c.sch, c.expansion, c.err = r.compile(ctx, id, raw, 0)
	if ctx.Err() != nil || isCompileTimeout(c.err) {
		// Not a property of the bytes: the next use compiles them again.
		return nil, fmt.Errorf("compile stored template: %w", c.err)
	}
	if c.err != nil {
		c.err = fmt.Errorf("stored template: %v: %w", c.err, errCorrupt)
	}
	r.remember(id, c)
	return c, c.err
}

// fresh returns the cache entry for id if it was checked against storage
// within recheckEvery, else nil.
func (r *schemaRegistry) fresh(id string) *compiledSchema {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cache[id]; c != nil && r.now().Sub(c.checked) < recheckEvery {
		return c
	}
	return nil
}

// cached returns the cache entry for id, marked checked now, if it was
// compiled from bytes hashing to sum, else nil.
func (r *schemaRegistry) cached(id string, sum [sha256.Size]byte) *compiledSchema {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cache[id]; c != nil && c.sum == sum {
		c.checked = r.now()
		return c
	}
	return nil
}

// remember caches c as the compiled form of id. Racing writers may leave an
// older version cached; the hash check in load makes that harmless.
func (r *schemaRegistry) remember(id string, c *compiledSchema) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cache[id] = c
}

// forget drops id from the cache, once its template is gone.
func (r *schemaRegistry) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cache, id)
}

// compile turns raw into a schema: draft-07 unless $schema names another
// dialect, with no loader for anything outside the document itself. The
// compiler's work grows with the square of the subschemas it reaches and
// with the $ref targets times the subschemas (a chain of 18,500 $refs took
// 135 s), and it cannot be interrupted from outside; so the decoded
// document is measured first (checkSchemaCost) and the compiler checks
// ctx and a time budget at every subschema it compiles (budgetVocabulary).
// Errors of a budget wrap errTooLarge (a time budget: compileTimeError),
// those of ctx its error; the rest carry a message but no sentinel, and
// callers classify them.
func (r *schemaRegistry) compile(ctx context.Context, id string, raw []byte, patternLimit int) (*jsonschema.Schema, int, error) {
	r.compiles.Add(1)
	if err := checkJSONText("schema", raw, r.lim.depth()); err != nil {
		return nil, 0, err
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("invalid JSON: %v", err)
	}
	if err := checkSchemaCost(doc); err != nil {
		return nil, 0, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseLoader(noRemoteLoader{})
	c.UseRegexpEngine(boundedRegexpEngine(patternLimit))
	budget := cmp.Or(r.compileTimeout, maxSchemaCompile)
	c.RegisterVocabulary(budgetVocabulary(ctx, budget))
	c.AssertVocabs() // drafts 2019-09 and 2020-12 call the vocabulary only so
	loc := schemaBaseURL + id
	if err := c.AddResource(loc, doc); err != nil {
		return nil, 0, fmt.Errorf("invalid schema: %s", compileMessage(err))
	}
	var sch *jsonschema.Schema
	err = runWithin(ctx, budget, &compileTimeError{budget}, func() (err error) {
		sch, err = c.Compile(loc)
		return err
	})
	if isCompileTimeout(err) || ctx.Err() != nil {
		return nil, 0, cmp.Or(ctx.Err(), err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("invalid schema: %s", compileMessage(err))
	}
	// Refuse a schema whose $refs expand beyond the budget: validation
	// against it could take hours and cannot be interrupted.
	n := schemaExpansion(sch, r.lim.depth(), maxSchemaExpansion)
	if n > maxSchemaExpansion {
		return nil, 0, fmt.Errorf("invalid schema: with its $refs expanded it applies more than %d subschemas to one document, the limit", maxSchemaExpansion)
	}
	return sch, n, nil
}

// compileMessage renders a compiler error on one line, listing each
// metaschema violation with its location in the schema document.
func compileMessage(err error) string {
	var serr *jsonschema.SchemaValidationError
	var verr *jsonschema.ValidationError
	if errors.As(err, &serr) && errors.As(serr.Err, &verr) {
		return "does not match its metaschema: " + newValidationError(verr).Error()
	}
	// The compiler asked noRemoteLoader for a document: a $ref to another
	// one, or a $schema naming a dialect whose metaschema is not built in.
	var lerr *jsonschema.LoadURLError
	if errors.As(err, &lerr) {
		return fmt.Sprintf("%q is outside the schema document: a $ref may point only into it, and $schema may name draft-07 (the default), 2019-09, 2020-12, draft-06 or draft-04",
			strings.ReplaceAll(lerr.URL, schemaBaseURL, ""))
	}
	return strings.ReplaceAll(err.Error(), schemaBaseURL, "")
}

// boundedRegexp is a schema's pattern (pattern, patternProperties) with
// its cost per byte of a string matched, regexProgram's.
type boundedRegexp struct {
	*regexp.Regexp
	cost int
}

// maxSchemaPattern bounds the instructions of one compiled schema
// pattern when a template is stored. It is looser than a find's
// maxRegexProgram: a template is written by an administrator, not by
// any reader, and its length-bounded patterns (^.{1,500}$ is 1003
// instructions) are common; a match costs at most the string's length
// times the instructions, so a 1 MiB string against the worst 1024-
// instruction pattern takes seconds, not minutes.
const maxSchemaPattern = 1024

// boundedRegexpEngine compiles the patterns of a schema as Go's regexp,
// refusing one that costs more than limit instructions (0: no limit): a
// match takes time linear in the string times the instructions and cannot
// be interrupted, so a validation past -validation-timeout would go on in
// the background.
func boundedRegexpEngine(limit int) func(string) (jsonschema.Regexp, error) {
	return func(pattern string) (jsonschema.Regexp, error) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		cost := regexProgram(re)
		if limit > 0 && cost > limit {
			return nil, fmt.Errorf("pattern %q is too costly: it compiles to %d instructions, more than the limit of %d (a counted repetition such as {1,100} costs each count)", pattern, cost, limit)
		}
		return boundedRegexp{re, cost}, nil
	}
}

// noRemoteLoader refuses every URL the compiler asks for. The metaschemas
// of the supported drafts are built into the library and never reach it,
// so only $refs and $schema URLs outside the template itself fail here.
type noRemoteLoader struct{}

// Load implements jsonschema.URLLoader.
func (noRemoteLoader) Load(url string) (any, error) {
	return nil, errors.New("references outside the schema document are not allowed")
}

// decodeJSON parses one JSON value, keeping numbers exact (json.Number).
func decodeJSON(b []byte) (any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty document")
	}
	return v, err
}

// validationError is a document that does not match its schema. It matches
// errInvalid through Unwrap.
type validationError struct {
	// Issues say where and why, one per violation, in a stable order
	// (validationIssues); at most maxValidationMessages.
	Issues []validationIssue
	// Omitted counts the violations left out of Issues.
	Omitted int
}

// validationIssue is one violation of a schema: where in the document (a
// JSON Pointer, "" for the root) and why.
type validationIssue struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Messages renders the issues as lines such as
// "at /messages/0/role: value must be one of 'user', 'assistant'".
func (e *validationError) Messages() []string {
	msgs := make([]string, 0, len(e.Issues)+1)
	for _, is := range e.Issues {
		msgs = append(msgs, "at "+cmp.Or(is.Path, "(root)")+": "+is.Message)
	}
	if e.Omitted > 0 {
		msgs = append(msgs, fmt.Sprintf("and %d more", e.Omitted))
	}
	return msgs
}

// Error joins the messages.
func (e *validationError) Error() string { return strings.Join(e.Messages(), "; ") }

// Unwrap returns the messages as a client sentence of kind errInvalid.
func (e *validationError) Unwrap() error { return &requestError{msg: e.Error(), kind: errInvalid} }

// newValidationError builds the validationError of verr from its tree
// of causes, as the library's Basic output lists them but for the nodes
// that only group their causes (a $ref's or several keywords', "validation
// failed"): there a $ref with one failing keyword takes that keyword's
// place and hides its sentence. Duplicates are dropped, the rest sorted by
// path then message (the library's order follows map iteration), and at
// most maxValidationMessages kept.
func newValidationError(verr *jsonschema.ValidationError) *validationError {
	var issues []validationIssue
	seen := make(map[validationIssue]bool)
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if is, ok := issueOf(e); ok && !seen[is] {
			seen[is] = true
			issues = append(issues, is)
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	for _, c := range verr.Causes {
		walk(c)
	}
	if len(issues) == 0 {
		issues = []validationIssue{{Message: strings.ReplaceAll(verr.Error(), schemaBaseURL, "")}}
	}
	slices.SortFunc(issues, func(a, b validationIssue) int {
		return cmp.Or(comparePointers(a.Path, b.Path), cmp.Compare(a.Message, b.Message))
	})
	e := &validationError{Issues: issues}
	if n := len(issues); n > maxValidationMessages {
		e.Issues, e.Omitted = issues[:maxValidationMessages], n-maxValidationMessages
	}
	return e
}

// issueOf is the violation one node of a validation error's tree states,
// ok false for a node that only groups its causes. A $ref that leads back
// to the same subschema on the same value (a loop the validator breaks)
// is named with the schema keyword that loops.
func issueOf(e *jsonschema.ValidationError) (is validationIssue, ok bool) {
	var path strings.Builder
	for _, tok := range e.InstanceLocation {
		// A member name is cut as a sentence quotes it: the path is
		// repeated in the answer for each violation under it.
		path.WriteString("/" + cutQuoted(pointerToken(tok)))
	}
	is.Path = path.String()
	switch k := e.ErrorKind.(type) {
	case *kind.Group, *kind.Reference:
		return is, false
	case *kind.RefCycle:
		is.Message = fmt.Sprintf("the schema's %s loops back to the same value without descending into it, so it never matches", k.KeywordLocation1)
		return is, true
	}
	// The sentence of the node's own kind, in the library's words: the
	// Basic output of a node without causes is that sentence.
	k, more := shortenKindLists(e.ErrorKind)
	alone := &jsonschema.ValidationError{ErrorKind: k}
	// Quoted input is cut before the length is: a cut through a quote
	// would leave it open, and the sentence's own cut would miss it.
	is.Message = cutInput(shortenQuoted(alone.BasicOutput().Error.String()))
	if more > 0 {
		is.Message += fmt.Sprintf(" (and %d more)", more)
	}
	if len(is.Message) > maxIssueMessage {
		is.Message = strings.ToValidUTF8(is.Message[:maxIssueMessage], "") + "…"
	}
	return is, true
}

// maxListedValues is the most values or names a violation's sentence
// lists (an enum's values, required or additional properties), and
// maxIssueMessage the most bytes of the sentence: the library lists them
// all, and an enum of 100,000 values made each violation 700 KB and a PUT
// of 1,000 failing documents 18 s of CPU.
const (
	maxListedValues = 10
	maxIssueMessage = 1024
)

// shortenKindLists returns k with its list cut to maxListedValues, and
// how many it left out. Additional properties come in map order: they are
// sorted first, so that the same document always gets the same sentence.
func shortenKindLists(k jsonschema.ErrorKind) (jsonschema.ErrorKind, int) {
	cut := func(n int) (int, int) { return min(n, maxListedValues), max(0, n-maxListedValues) }
	switch k := k.(type) {
	case *kind.Enum:
		n, more := cut(len(k.Want))
		return &kind.Enum{Got: k.Got, Want: k.Want[:n]}, more
	case *kind.Required:
		n, more := cut(len(k.Missing))
		return &kind.Required{Missing: k.Missing[:n]}, more
	case *kind.Dependency:
		n, more := cut(len(k.Missing))
		return &kind.Dependency{Prop: k.Prop, Missing: k.Missing[:n]}, more
	case *kind.DependentRequired:
		n, more := cut(len(k.Missing))
		return &kind.DependentRequired{Prop: k.Prop, Missing: k.Missing[:n]}, more
	case *kind.AdditionalProperties:
		props := slices.Sorted(slices.Values(k.Properties))
		n, more := cut(len(props))
		return &kind.AdditionalProperties{Properties: props[:n]}, more
	}
	return k, 0
}

// shortenQuoted cuts each value the library quoted in a violation's
// sentence ('...', a quote inside escaped as \'): the library quotes the
// whole value ("'...' does not match pattern"), so a long string failing
// many keywords made an answer many times the document's size.
func shortenQuoted(msg string) string { return cutQuotedPieces(msg, '\'') }

// comparePointers orders JSON Pointers token by token, array indexes by
// number ("/messages/2" before "/messages/10"), so that errors come out in
// document order as far as paths tell it.
func comparePointers(a, b string) int {
	at, bt := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(at) && i < len(bt); i++ {
		an, aerr := strconv.ParseUint(at[i], 10, 64)
		bn, berr := strconv.ParseUint(bt[i], 10, 64)
		c := cmp.Compare(at[i], bt[i])
		if aerr == nil && berr == nil {
			c = cmp.Compare(an, bn)
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(at), len(bt))
}

// validateDocs checks every document of a PUT against each schema of ids,
// all documents before answering: the one validation a PUT document gets.
// A mismatch is errInvalid naming every failing key with the schema's
// messages (`documents do not match schema "chat.v1": "bad": at (root):
// ...`); an unknown schema is errInvalid naming it.
//
// The sentence's cause is a *validationError of every failing document's
// violations, each path a JSON Pointer into the PUT body {key: document}
// (under "/" + the key): the "errors" a 400 lists beside the sentence.
func (r *schemaRegistry) validateDocs(ctx context.Context, ids []string, docs []entityDoc) error {
	for _, id := range ids {
		// The documents share one budget of checks per schema: each
		// had its own, and a PUT of 1,000 documents against an enum of
		// 100,000 values took 1,000 of them (minutes of CPU).
		ctx := context.WithValue(ctx, sharedChecksKey{}, new(int64))
		var failed []string
		nFailed := 0
		var all validationError
		for _, d := range docs {
			err := r.validateDoc(ctx, []string{id}, d.doc)
			var ve *validationError
			switch {
			case err == nil:
			case errors.As(err, &ve):
				if nFailed++; nFailed <= maxFailedDocs {
					failed = append(failed, fmt.Sprintf("%q: %v", d.key, ve))
				}
				all.add(d.key, ve)
			default:
				return err
			}
		}
		if nFailed > maxFailedDocs {
			failed = append(failed, fmt.Sprintf("and %d more documents do not match", nFailed-maxFailedDocs))
		}
		if len(failed) > 0 {
			msg := fmt.Sprintf("documents do not match schema %q: %s", id, strings.Join(failed, "; "))
			return &requestError{msg: msg, kind: errInvalid, cause: &all}
		}
	}
	return nil
}

// maxFailedDocs is the most documents a refused multi-key PUT's sentence
// names with their messages; the rest are counted. With the violations
// capped as well (validationError.add), the answer stays small whatever
// the number of documents.
const maxFailedDocs = 3

// add appends the violations of the document at key, their paths under
// "/" + key, up to maxValidationMessages in all; the rest are counted in
// Omitted.
func (e *validationError) add(key string, ve *validationError) {
	for _, is := range ve.Issues {
		if len(e.Issues) == maxValidationMessages {
			e.Omitted++
			continue
		}
		e.Issues = append(e.Issues, validationIssue{Path: "/" + pointerToken(key) + is.Path, Message: is.Message})
	}
	e.Omitted += ve.Omitted
}

// pointerToken escapes s as one token of a JSON Pointer (RFC 6901).
func pointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// schemaIssues returns the violations behind err, a document its schema
// refuses, for the "errors" of a 400 and the gRPC detail; nil for any
// other error. A failure hidden from a client that may not read the
// document (withoutDocument) has none.
func schemaIssues(err error) *validationError {
	var ve *validationError
	if errors.As(err, &ve) && len(ve.Issues) > 0 {
		return ve
	}
	return nil
}

// validateDoc checks one document, the result of a PATCH, against each
// schema of ids: a mismatch is the schema's messages (`schema "chat.v1":
// at /title: ...`), still the schema's *validationError, revealing the
// document: a client that may not read it is told `the patched document
// does not match schema "chat.v1"` (withoutDocument). An unknown schema is
// errInvalid naming it.
func (r *schemaRegistry) validateDoc(ctx context.Context, ids []string, doc []byte) error {
	for _, id := range ids {
		err := r.Validate(ctx, id, doc)
		if errors.Is(err, errNotFound) {
			return reqErrorf(errInvalid, "unknown schema %q", id)
		}
		var ve *validationError
		if errors.As(err, &ve) {
			return revealing(reqPrefixf(err, "schema %q", id),
				reqErrorf(errInvalid, "the patched document does not match schema %q", id))
		}
		if err != nil {
			return reqPrefixf(err, "schema %q", id)
		}
	}
	return nil
}
