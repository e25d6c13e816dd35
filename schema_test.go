package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// memStore is an in-memory store for tests. Safe for concurrent use; the
// zero value is not usable, call newMemStore.
type memStore struct {
	mu    sync.Mutex
	objs  map[string][]byte
	locks map[string]chan struct{} // one-slot semaphore per locked key
}

var _ store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{objs: make(map[string][]byte), locks: make(map[string]chan struct{})}
}

func (m *memStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, errNotFound)
	}
	return slices.Clone(b), nil
}

func (m *memStore) Put(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = slices.Clone(data)
	return nil
}

// GetRev uses "rev:" and the bytes themselves as the revision.
func (m *memStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	b, err := m.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return b, "rev:" + string(b), nil
}

func (m *memStore) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.objs[key]
	if ok != (rev != "") || ok && "rev:"+string(cur) != rev {
		return "", fmt.Errorf("put %s if revision: %w", key, errPrecondition)
	}
	m.objs[key] = slices.Clone(data)
	return "rev:" + string(data), nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, errNotFound)
	}
	delete(m.objs, key)
	return nil
}

func (m *memStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) && k > startAfter {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// ListDirs derives the directories from the keys: a model of the
// backends' answer, not of their cost.
func (m *memStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	keys, err := m.List(ctx, prefix, "", 0)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, k := range keys {
		if name, _, ok := strings.Cut(strings.TrimPrefix(k, prefix), "/"); ok && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

func (m *memStore) Lock(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	sem, ok := m.locks[key]
	if !ok {
		sem = make(chan struct{}, 1)
		m.locks[key] = sem
	}
	m.mu.Unlock()
	select {
	case sem <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-sem }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *memStore) Close() error { return nil }

// chatSchema is the example template of the README: a chat session.
const chatSchema = `{
  "type": "object",
  "required": ["messages"],
  "properties": {
    "title": {"type": "string"},
    "messages": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["role", "content"],
        "additionalProperties": false,
        "properties": {
          "role": {"enum": ["system", "user", "assistant"]},
          "content": {"type": "string"}
        }
      }
    }
  }
}`

func TestSchemaPut(t *testing.T) {
	tests := []struct {
		name, id, raw string
		wantErr       string // substring; "" = success
	}{
		{"draft-07 default", "chat.v1", chatSchema, ""},
		{"draft-07 explicit", "d7", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"string"}`, ""},
		{"2019-09", "d2019", `{"$schema":"https://json-schema.org/draft/2019-09/schema","$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s"}`, ""},
		{"2020-12", "d2020", `{"$schema":"https://json-schema.org/draft/2020-12/schema","prefixItems":[{"type":"string"}]}`, ""},
		{"local ref", "local:ref", `{"definitions":{"s":{"type":"string"}},"properties":{"a":{"$ref":"#/definitions/s"}}}`, ""},
		{"boolean schema", "any", `true`, ""},
		{"invalid JSON", "bad", `{"type":`, "invalid JSON: "},
		{"trailing data", "bad", `{} {}`, "invalid JSON: "},
		{"empty", "bad", ``, "invalid JSON: empty document"},
		{"type is a number", "bad", `{"type": 5}`, "at /type: "},
		{"not an object", "bad", `5`, "does not match its metaschema"},
		{"bad regex", "bad", `{"pattern":"("}`, "at /pattern: "},
		{"2020-12 rejects tuple items", "bad", `{"$schema":"https://json-schema.org/draft/2020-12/schema","items":[{"type":"string"}]}`, "at /items: "},
		{"remote ref", "bad", `{"$ref":"https://example.com/s.json"}`, `"https://example.com/s.json" is outside the schema document`},
		{"relative ref", "bad", `{"$ref":"other.json"}`, `"other.json" is outside the schema document`},
		{"file ref", "bad", `{"$ref":"file:///etc/passwd"}`, `"file:///etc/passwd" is outside the schema document`},
		{"unknown metaschema", "bad", `{"$schema":"https://example.com/meta"}`, `"https://example.com/meta" is outside the schema document: a $ref may point only into it, and $schema may name draft-07`},
		{"bad id", "../x", `{}`, "schema id"},
		{"empty id", "", `{}`, "schema id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStore()
			r := newSchemaRegistry(st, budgets{})
			err := r.Put(context.Background(), tt.id, []byte(tt.raw))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Put(%q) = %v, want nil", tt.raw, err)
				}
				got, err := r.Get(context.Background(), tt.id)
				if err != nil || string(got) != tt.raw {
					t.Errorf("Get(%q) = %q, %v, want %q", tt.id, got, err, tt.raw)
				}
				return
			}
			if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Put(%q) = %v, want errInvalid containing %q", tt.raw, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Put(%q) error has several lines: %q", tt.raw, err)
			}
			if keys, _ := st.List(context.Background(), "", "", 0); len(keys) != 0 {
				t.Errorf("after failed Put(%q) store holds %q, want nothing", tt.raw, keys)
			}
		})
	}
}

func TestSchemaPutReplaceKeepsOldOnFailure(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	old := `{"type":"string"}`
	if err := r.Put(ctx, "s", []byte(old)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"type":5}`, `not json`} {
		if err := r.Put(ctx, "s", []byte(bad)); !errors.Is(err, errInvalid) {
			t.Errorf("Put(%q) = %v, want errInvalid", bad, err)
		}
		if got, err := r.Get(ctx, "s"); err != nil || string(got) != old {
			t.Errorf("Get after failed Put(%q) = %q, %v, want %q", bad, got, err, old)
		}
		if err := r.Validate(ctx, "s", []byte(`"x"`)); err != nil {
			t.Errorf("Validate after failed Put(%q) = %v, want nil", bad, err)
		}
	}
	// A successful replace takes effect at once.
	if err := r.Put(ctx, "s", []byte(`{"type":"number"}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(ctx, "s", []byte(`"x"`)); !errors.Is(err, errInvalid) {
		t.Errorf("Validate after replace = %v, want errInvalid", err)
	}
}

func TestSchemaValidate(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	schemas := map[string]string{
		"chat.v1": chatSchema,
		"tuple7":  `{"items":[{"type":"string"}]}`,
		"prefix7": `{"prefixItems":[{"type":"string"}]}`, // unknown keyword in draft-07
		"prefix20": `{"$schema":"https://json-schema.org/draft/2020-12/schema",
			"prefixItems":[{"type":"string"}]}`,
		"big": `{"type":"integer","maximum":9007199254740993}`,
	}
	for id, raw := range schemas {
		if err := r.Put(ctx, id, []byte(raw)); err != nil {
			t.Fatalf("Put(%q) = %v", id, err)
		}
	}
	tests := []struct {
		id, doc string
		want    []string // messages; nil = valid
	}{
		{"chat.v1", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`, nil},
		{"chat.v1", `{"messages":[]}`, nil},
		{"chat.v1", `{}`, []string{"at (root): missing property 'messages'"}},
		{"chat.v1", `[]`, []string{"at (root): got array, want object"}},
		{"chat.v1", `{"messages":[{"role":"bot","content":5,"x":1}]}`, []string{
			"at /messages/0/role: value must be one of 'system', 'user', 'assistant'",
			"at /messages/0/content: got number, want string",
			"at /messages/0: additional properties 'x' not allowed",
		}},
		{"chat.v1", `{"messages":[{"role":"user","content":"a"},{"content":"b"}]}`, []string{
			"at /messages/1: missing property 'role'",
		}},
		{"tuple7", `[1]`, []string{"at /0: got number, want string"}},
		{"prefix7", `[1]`, nil},
		{"prefix20", `[1]`, []string{"at /0: got number, want string"}},
		// Numbers keep their precision: 2^53+1 passes, 2^53+2 fails (below).
		{"big", `9007199254740993`, nil},
	}
	for _, tt := range tests {
		err := r.Validate(ctx, tt.id, []byte(tt.doc))
		if tt.want == nil {
			if err != nil {
				t.Errorf("Validate(%q, %q) = %v, want nil", tt.id, tt.doc, err)
			}
			continue
		}
		var verr *validationError
		if !errors.As(err, &verr) {
			t.Errorf("Validate(%q, %q) = %v, want *validationError", tt.id, tt.doc, err)
			continue
		}
		if !errors.Is(err, errInvalid) {
			t.Errorf("Validate(%q, %q) = %v, want errInvalid", tt.id, tt.doc, err)
		}
		got := slices.Clone(verr.Messages())
		want := slices.Clone(tt.want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Validate(%q, %q) messages = %q, want %q", tt.id, tt.doc, verr.Messages(), tt.want)
		}
		if verr.Error() != strings.Join(verr.Messages(), "; ") {
			t.Errorf("validationError.Error() = %q, want messages joined", verr.Error())
		}
	}
	// The library prints large numbers in scientific notation, so only the
	// start of this message is pinned.
	err := r.Validate(ctx, "big", []byte(`9007199254740994`))
	var verr *validationError
	if !errors.As(err, &verr) || len(verr.Messages()) != 1 || !strings.HasPrefix(verr.Messages()[0], "at (root): maximum: got ") {
		t.Errorf("Validate(%q, %q) = %v, want one maximum violation", "big", "9007199254740994", err)
	}
}

func TestSchemaValidateErrors(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	if err := r.Put(ctx, "chat.v1", []byte(chatSchema)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, doc string
		want    error
		substr  string
	}{
		{"nope", `{}`, errNotFound, `schema "nope"`},
		{"../etc", `{}`, errInvalid, "schema id"},
		{"chat.v1", `{"messages":`, errInvalid, "invalid JSON"},
		{"chat.v1", ``, errInvalid, "invalid JSON: empty document"},
		{"chat.v1", `{} []`, errInvalid, "invalid JSON"},
	}
	for _, tt := range tests {
		err := r.Validate(ctx, tt.id, []byte(tt.doc))
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("Validate(%q, %q) = %v, want %v containing %q", tt.id, tt.doc, err, tt.want, tt.substr)
		}
		var verr *validationError
		if errors.As(err, &verr) {
			t.Errorf("Validate(%q, %q) = *validationError, want a plain error", tt.id, tt.doc)
		}
	}
	if _, err := r.Get(ctx, "nope"); !errors.Is(err, errNotFound) {
		t.Errorf("Get(%q) = %v, want errNotFound", "nope", err)
	}
	if _, err := r.Get(ctx, "a/b"); !errors.Is(err, errInvalid) {
		t.Errorf("Get(%q) = %v, want errInvalid", "a/b", err)
	}
}

// TestSchemaRefViolationNamed: a violation found through a $ref says
// what it is, as one found without: the library's Basic output renders a
// $ref with one failing keyword as the $ref's "validation failed".
func TestSchemaRefViolationNamed(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	schema := `{"$defs":{"msg":{"type":"object","required":["role"],"properties":{"role":{"enum":["user","assistant"]},"content":{"type":"string","minLength":1}}}},
		"type":"object","properties":{"messages":{"type":"array","items":{"$ref":"#/$defs/msg"}}}}`
	if err := r.Put(ctx, "ref.v1", []byte(schema)); err != nil {
		t.Fatal(err)
	}
	err := r.Validate(ctx, "ref.v1", []byte(`{"messages":[{"role":"user","content":5},{"role":"bot","content":""},{}]}`))
	var verr *validationError
	if !errors.As(err, &verr) {
		t.Fatalf("Validate = %v, want a validationError", err)
	}
	want := []validationIssue{
		{"/messages/0/content", "got number, want string"},
		{"/messages/1/content", "minLength: got 0, want 1"},
		{"/messages/1/role", "value must be one of 'user', 'assistant'"},
		{"/messages/2", "missing property 'role'"},
	}
	if !slices.Equal(verr.Issues, want) {
		t.Errorf("issues = %q, want %q", verr.Issues, want)
	}
}

// TestSchemaRefCycleNamed: a document refused because the schema's $ref
// leads back to the same subschema on the same value (a loop the
// validator breaks) is told which keyword loops, not "validation failed".
func TestSchemaRefCycleNamed(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	for _, c := range []struct{ schema, doc, want string }{
		{`{"$ref":"#"}`, `{}`, "/$ref"},
		{`{"anyOf":[{"type":"string"},{"$ref":"#"}]}`, `5`, "/anyOf/1/$ref"},
	} {
		if err := r.Put(ctx, "loop.v1", []byte(c.schema)); err != nil {
			t.Fatal(err)
		}
		err := r.Validate(ctx, "loop.v1", []byte(c.doc))
		var verr *validationError
		if !errors.As(err, &verr) {
			t.Fatalf("Validate(%s, %s) = %v, want a validationError", c.schema, c.doc, err)
		}
		msg := verr.Error()
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, "loops back") || strings.Contains(msg, "validation failed") {
			t.Errorf("Validate(%s, %s) = %q, want the loop at %s named", c.schema, c.doc, msg, c.want)
		}
	}
	if err := r.Validate(ctx, "loop.v1", []byte(`"s"`)); err != nil {
		t.Errorf("a string against the looping anyOf = %v, want valid", err)
	}
}

func TestSchemaValidateCachesCompiled(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	if err := r.Put(ctx, "chat.v1", []byte(chatSchema)); err != nil {
		t.Fatal(err)
	}
	before := r.compiles.Load()
	for range 10 {
		if err := r.Validate(ctx, "chat.v1", []byte(`{"messages":[]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.compiles.Load() - before; got != 0 {
		t.Errorf("compiles during 10 Validate calls after Put = %d, want 0", got)
	}
	if got := r.reads.Load(); got != 0 {
		t.Errorf("template reads during 10 Validate calls right after Put = %d, want 0", got)
	}
	// A fresh registry (another worker) compiles once, then hits its cache.
	r2 := newSchemaRegistry(r.st, budgets{})
	for range 10 {
		if err := r2.Validate(ctx, "chat.v1", []byte(`{"messages":[]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r2.compiles.Load(); got != 1 {
		t.Errorf("compiles of a fresh registry over 10 Validate calls = %d, want 1", got)
	}
}

// The template is replaced underneath the registry, by hand or by another
// process: the first Validate after recheckEvery must use the new bytes.
func TestSchemaRecompileAfterStoredBytesChange(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := newSchemaRegistry(st, budgets{})
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	r.now = clock.now
	if err := r.Put(ctx, "s", []byte(`{"type":"string"}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(ctx, "s", []byte(`"x"`)); err != nil {
		t.Fatalf("Validate before edit = %v, want nil", err)
	}

	// Hand edit: now only numbers.
	if err := st.Put(ctx, schemaObjectKey("s"), []byte(`{"type":"number"}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(ctx, "s", []byte(`"x"`)); err != nil {
		t.Errorf("Validate within recheckEvery of the last check = %v, want nil (cached template)", err)
	}
	clock.advance(recheckEvery)
	if err := r.Validate(ctx, "s", []byte(`"x"`)); !errors.Is(err, errInvalid) {
		t.Errorf("Validate after hand edit = %v, want errInvalid", err)
	}
	if err := r.Validate(ctx, "s", []byte(`1`)); err != nil {
		t.Errorf("Validate(1) after hand edit = %v, want nil", err)
	}

	// Another registry over the same storage replaces it.
	other := newSchemaRegistry(st, budgets{})
	if err := other.Put(ctx, "s", []byte(`{"type":"boolean"}`)); err != nil {
		t.Fatal(err)
	}
	clock.advance(recheckEvery)
	if err := r.Validate(ctx, "s", []byte(`true`)); err != nil {
		t.Errorf("Validate(true) after other worker's Put = %v, want nil", err)
	}

	// Hand edit into something that no longer compiles: corrupt, not the
	// caller's fault, and still reported on every call.
	if err := st.Put(ctx, schemaObjectKey("s"), []byte(`{"type":5}`)); err != nil {
		t.Fatal(err)
	}
	clock.advance(recheckEvery)
	for range 2 {
		if err := r.Validate(ctx, "s", []byte(`true`)); !errors.Is(err, errCorrupt) {
			t.Errorf("Validate after broken hand edit = %v, want errCorrupt", err)
		}
	}

	// Deleted by hand: unknown schema.
	if err := st.Delete(ctx, schemaObjectKey("s")); err != nil {
		t.Fatal(err)
	}
	clock.advance(recheckEvery)
	if err := r.Validate(ctx, "s", []byte(`true`)); !errors.Is(err, errNotFound) {
		t.Errorf("Validate after delete = %v, want errNotFound", err)
	}
	if _, ok := r.cache["s"]; ok {
		t.Errorf("cache still holds %q after its template was deleted", "s")
	}
}

func TestSchemaList(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := newSchemaRegistry(st, budgets{})
	if got, err := r.List(ctx); err != nil || got == nil || len(got) != 0 {
		t.Errorf("List() on empty store = %#v, %v, want []string{}", got, err)
	}
	for _, id := range []string{"b", "a.json", "a", "a.b", "Z:1", "a-b"} {
		if err := r.Put(ctx, id, []byte(`{}`)); err != nil {
			t.Fatalf("Put(%q) = %v", id, err)
		}
	}
	for _, k := range []string{
		"templates/notes.txt",    // wrong suffix
		"templates/.json",        // empty id
		"templates/x/y.json",     // nested
		"templates/.hidden.json", // invalid first character
		"templates/a..b.json",    // ".."
		"files/db/00",            // other prefix
		"templates.json",         // not under templates/
	} {
		if err := st.Put(ctx, k, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Z:1", "a", "a-b", "a.b", "a.json", "b"}
	got, err := r.List(ctx)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List() = %q, %v, want %q", got, err, want)
	}
}

// Run with -race: Validate, Put, hand edits and Get interleave freely. Every
// version of the template accepts the document, so every Validate passes.
func TestSchemaConcurrent(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := newSchemaRegistry(st, budgets{})
	versions := []string{
		chatSchema,
		`{"type":"object","properties":{"messages":{"type":"array","maxItems":100}}}`,
		`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["messages"]}`,
	}
	if err := r.Put(ctx, "chat", []byte(versions[0])); err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"messages":[{"role":"user","content":"hi"}]}`)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if err := r.Validate(ctx, "chat", doc); err != nil {
					errs <- fmt.Errorf("Validate: %w", err)
					return
				}
				if w == 0 && i%10 == 0 {
					if err := r.Put(ctx, "chat", []byte(versions[i%3])); err != nil {
						errs <- fmt.Errorf("Put: %w", err)
						return
					}
				}
				if w == 1 && i%10 == 5 {
					if err := st.Put(ctx, schemaObjectKey("chat"), []byte(versions[(i+1)%3])); err != nil {
						errs <- fmt.Errorf("hand edit: %w", err)
						return
					}
				}
				if w == 2 && i%10 == 0 {
					if _, err := r.List(ctx); err != nil {
						errs <- fmt.Errorf("List: %w", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestValidationMessagesCapped(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	if err := r.Put(ctx, "s", []byte(`{"items":{"type":"string"}}`)); err != nil {
		t.Fatal(err)
	}
	doc := "[" + strings.Repeat("1,", 199) + "1]"
	var verr *validationError
	if err := r.Validate(ctx, "s", []byte(doc)); !errors.As(err, &verr) {
		t.Fatalf("Validate(200 numbers) = %v, want *validationError", err)
	}
	if got, want := len(verr.Messages()), maxValidationMessages+1; got != want {
		t.Errorf("len(Messages) = %d, want %d", got, want)
	}
	if got, want := verr.Messages()[len(verr.Messages())-1], "and 150 more"; got != want {
		t.Errorf("last message = %q, want %q", got, want)
	}
}

// TestValidationMessagesShort: a violation quotes at most maxQuoted bytes
// of a value, so that the answer does not grow with the document: a 900 KB
// string failing 60 patterns answered 90 MB (each sentence quoted it
// whole, in errors and again in error) and took the server from 31 to
// 503 MB of memory.
func TestValidationMessagesShort(t *testing.T) {
	ctx := context.Background()
	// The time budget is not what this test is about: under the race
	// detector 60 patterns over 140 KB take longer than the default.
	r := newSchemaRegistry(newMemStore(), budgets{validationTimeout: time.Minute})
	var pats []string
	for i := range 60 {
		pats = append(pats, fmt.Sprintf(`{"pattern":"^x%d"}`, i))
	}
	if err := r.Put(ctx, "amp", []byte(`{"allOf":[`+strings.Join(pats, ",")+`]}`)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat(`ab'c\\\\é`, 20000) // JSON text: a quote, two escaped backslashes, a letter of two bytes
	var verr *validationError
	if err := r.Validate(ctx, "amp", []byte(`"`+long+`"`)); !errors.As(err, &verr) {
		t.Fatalf("Validate = %v, want *validationError", err)
	}
	if n := len(verr.Error()); n > 20000 {
		t.Errorf("the sentence of %d violations is %d bytes, want it short", len(verr.Issues), n)
	}
	for _, is := range verr.Issues {
		if len(is.Message) > maxQuoted+100 || !strings.Contains(is.Message, "…' does not match pattern '^x") || !utf8.ValidString(is.Message) {
			t.Errorf("issue %q, want the value cut after %d bytes and the pattern named", is.Message, maxQuoted)
		}
	}
}

// TestValidateDocsBounded: a multi-key PUT refused by its schema lists at
// most maxValidationMessages violations over all its documents (the rest
// counted) and names at most maxFailedDocs documents with their messages
// in its sentence: 1000 keys of 11 KB, each failing 50 minimums, answered
// 4.7 MB (50,000 errors and a 2 MB sentence).
func TestValidateDocsBounded(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	var mins []string
	for i := range 60 {
		mins = append(mins, fmt.Sprintf(`{"minimum":%d}`, 1000+i))
	}
	if err := r.Put(ctx, "min", []byte(`{"allOf":[`+strings.Join(mins, ",")+`]}`)); err != nil {
		t.Fatal(err)
	}
	docs := make([]entityDoc, 1000)
	for i := range docs {
		docs[i] = entityDoc{key: fmt.Sprintf("k%d", i), doc: []byte("5")}
	}
	err := r.validateDocs(ctx, []string{"min"}, docs)
	msg, _ := clientMessage(err)
	ve := schemaIssues(err)
	if ve == nil || len(ve.Issues) != maxValidationMessages || ve.Omitted != 1000*(60+1)-maxValidationMessages {
		t.Fatalf("validateDocs(1000 failing) issues = %v, want %d and the rest omitted", ve, maxValidationMessages)
	}
	if len(msg) > 20000 || !strings.Contains(msg, `"k0": at (root)`) || !strings.HasSuffix(msg, "and 997 more documents do not match") {
		t.Errorf("sentence of %d bytes, ending %q; want it to name %d documents and count the rest", len(msg), msg[max(0, len(msg)-80):], maxFailedDocs)
	}
}

func FuzzSchemaPut(f *testing.F) {
	for _, s := range []string{chatSchema, `{"type":5}`, `true`, `{"$ref":"#/definitions/a","definitions":{"a":{"$ref":"#/definitions/a"}}}`,
		`{"$schema":"https://json-schema.org/draft/2020-12/schema","$dynamicRef":"#x"}`, `{"pattern":"(a+)+$"}`} {
		f.Add(s, `{"messages":[]}`)
	}
	f.Fuzz(func(t *testing.T, schema, doc string) {
		ctx := context.Background()
		r := newSchemaRegistry(newMemStore(), budgets{})
		err := r.Put(ctx, "f", []byte(schema))
		if err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("Put(%q) = %v, want nil or errInvalid", schema, err)
			}
			return
		}
		err = r.Validate(ctx, "f", []byte(doc))
		if err != nil && !errors.Is(err, errInvalid) {
			t.Fatalf("Validate(%q, %q) = %v, want nil or errInvalid", schema, doc, err)
		}
	})
}

// chatDocument returns a chat session of about n bytes.
func chatDocument(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"title":"benchmark","messages":[`)
	roles := []string{"system", "user", "assistant"}
	for i := 0; b.Len() < n-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":%q,"content":"message number %d, some words of text"}`, roles[i%3], i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkSchemaValidate(b *testing.B) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	if err := r.Put(ctx, "chat.v1", []byte(chatSchema)); err != nil {
		b.Fatal(err)
	}
	doc := chatDocument(1024)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(ctx, "chat.v1", doc); err != nil {
			b.Fatal(err)
		}
	}
}
