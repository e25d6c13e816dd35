package main

// The catalog: the main worker's account of what storage holds:
// databases' schema bindings (API.md "Schema-bound databases"), stored with
// the data so that every worker applies it, and the listings of databases
// and of a database's entity keys. The object keys it reads and writes are
// layout.go's.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// catalog is the main worker's account of what storage holds: the
// databases, their entity keys (an in-memory index, see keyIndex) and their
// schema bindings (cached, see bindings). It is safe for concurrent use.
type catalog struct {
	st       store
	keys     *keyIndex
	bindings *bindings
	// indexes are the query index definitions (index.go).
	indexes *indexDefs
	// flush, unless nil, makes storage hold every acknowledged write
	// before a scan: the workers' logs flushed (router.flushLogs).
	flush func(context.Context) error
}

// setFlush makes the catalog and its key index call flush before every
// scan of the entities in storage (walbarrier.go). Call it before use.
func (c *catalog) setFlush(flush func(context.Context) error) {
	c.flush, c.keys.flush = flush, flush
}

// newCatalog returns the catalog of st. Its key index must hear of every
// write: the router that routes them reports to wrote.
func newCatalog(st store) *catalog {
	return &catalog{st: st, keys: newKeyIndex(st), bindings: newBindings(st, time.Now), indexes: newIndexDefs(st, time.Now)}
}

// wrote records the outcome of a write (a PUT or PATCH, or a delete) of
// key in db that this process routed. It is called in the order of the
// writes of each entity. A write that failed with nothing written changes
// nothing; one whose outcome is unknown (a lost connection, a storage
// failure after the write began) drops db's index, to be scanned again.
func (c *catalog) wrote(db, key string, deleted bool, err error) {
	switch {
	case err == nil:
		c.keys.record(db, key, !deleted)
	case deleted && errors.Is(err, errNotFound):
		c.keys.record(db, key, false)
	case nothingWritten(err):
	default:
		c.keys.forget(db)
	}
}

// listDatabases returns the sorted names of databases holding at least one
// entity: one listing of the directories under "files/" (store.ListDirs),
// whatever the number of entities. Names that are not database names
// (say, a lost+found directory) are left out.
func (c *catalog) listDatabases(ctx context.Context) ([]string, error) {
	if err := flushBeforeScan(ctx, c.flush); err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	names, err := c.st.ListDirs(ctx, entitiesPrefix)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	dbs := make([]string, 0, len(names))
	for _, n := range names {
		if validateDBName(n) == nil {
			dbs = append(dbs, n)
		}
	}
	return dbs, nil
}

// Listing limits of GET /api/databases/{db}/keys.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// dbBinding is the stored form of a database's settings: its schema
// binding ("" unbound) and how many versions of each entity it keeps (nil:
// the -max-versions default). The object is removed when both are unset.
type dbBinding struct {
	Schema      string `json:"schema,omitempty"`
	MaxVersions *int   `json:"max_versions,omitempty"`
}

// empty reports whether b sets nothing.
func (b dbBinding) empty() bool { return b.Schema == "" && b.MaxVersions == nil }

// recheckEvery is how long the main worker trusts a cached binding or
// schema template before reading storage again: a change made outside this
// process (by hand, or by another process) applies within it, while a
// change made through this process applies at once.
const recheckEvery = time.Second

// bindings reads and sets schema bindings for the main worker, which
// resolves a write's schema IDs once per request and sends them to the
// worker in the op: workers never read bindings, so there is nothing to
// keep coherent between them. A binding is cached after its first read,
// replaced at once when set through this process, and read again after
// recheckEvery. It is safe for concurrent use; create it with newBindings.
type bindings struct {
	st  store
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedBinding // by database
	// reads counts binding reads from storage.
	reads atomic.Uint64
}

// cachedBinding is one database's settings and when they were read.
type cachedBinding struct {
	dbBinding
	at time.Time
}

// newBindings returns an empty binding cache over st.
func newBindings(st store, now func() time.Time) *bindings {
	return &bindings{st: st, now: now, m: map[string]cachedBinding{}}
}

// get returns the schema ID db is bound to, or "" if it is not bound.
func (b *bindings) get(ctx context.Context, db string) (string, error) {
	v, err := b.settings(ctx, db)
	return v.Schema, err
}

// settings returns db's settings, through the cache.
func (b *bindings) settings(ctx context.Context, db string) (dbBinding, error) {
	b.mu.Lock()
	c, ok := b.m[db]
	b.mu.Unlock()
	if ok && b.now().Sub(c.at) < recheckEvery {
		return c.dbBinding, nil
	}
	v, err := b.read(ctx, db)
	if err != nil {
		return dbBinding{}, err
	}
	b.remember(db, v)
	return v, nil
}

// read reads db's settings from storage.
func (b *bindings) read(ctx context.Context, db string) (dbBinding, error) {
	b.reads.Add(1)
	var v dbBinding
	found, err := getJSON(ctx, b.st, bindingObjectKey(db), "binding of "+db, &v)
	if err != nil || !found {
		return dbBinding{}, err
	}
	if (v.Schema != "" && validateSchemaID(v.Schema) != nil) || (v.MaxVersions != nil && checkMaxVersions(*v.MaxVersions) != nil) {
		return dbBinding{}, fmt.Errorf("read binding of %s: stored binding is not {\"schema\": ID, \"max_versions\": N}: %w", db, errCorrupt)
	}
	return v, nil
}

// remember caches v as db's settings, read now.
func (b *bindings) remember(db string, v dbBinding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[db] = cachedBinding{dbBinding: v, at: b.now()}
}

// set binds db to schema id (id "": unbinds it), keeping its other
// settings.
func (b *bindings) set(ctx context.Context, db, id string) error {
	return b.update(ctx, db, func(v *dbBinding) { v.Schema = id })
}

// update changes db's settings with change and stores them durably (or
// removes the object once nothing is set), replacing the cached ones.
// The caller serialises updates of one database (dataPlane.bindMu).
func (b *bindings) update(ctx context.Context, db string, change func(v *dbBinding)) error {
	b.mu.Lock()
	delete(b.m, db)
	b.mu.Unlock()
	v, err := b.read(ctx, db)
	if err != nil {
		return err
	}
	change(&v)
	if v.empty() {
		err := b.st.Delete(ctx, bindingObjectKey(db))
		if err != nil && !errors.Is(err, errNotFound) {
			return fmt.Errorf("unbind %s: %w", db, err)
		}
	} else if err := putJSON(ctx, b.st, bindingObjectKey(db), "binding of "+db, v); err != nil {
		return err
	}
	b.remember(db, v)
	return nil
}

// boundOutside returns a database bound to schema id that allows does not
// allow, "" when there is none: the check that a key limited to some databases
// does not change a schema another database relies on. It reads (through
// the cache) only the bindings of databases outside allows, so a key's own
// databases cost nothing.
func (b *bindings) boundOutside(ctx context.Context, id string, allows func(db string) bool) (string, error) {
	dbs, err := b.bound(ctx, id, func(db string) bool { return !allows(db) }, 1)
	if err != nil || len(dbs) == 0 {
		return "", err
	}
	return dbs[0], nil
}

// boundTo returns the databases bound to schema id, in byte order.
func (b *bindings) boundTo(ctx context.Context, id string) ([]string, error) {
	return b.bound(ctx, id, func(string) bool { return true }, 0)
}

// bound lists the binding objects once and returns, in byte order, up to
// limit (0: all) databases that consider accepts and that are bound to
// schema id. Only their bindings are read, through the cache.
func (b *bindings) bound(ctx context.Context, id string, consider func(db string) bool, limit int) ([]string, error) {
	keys, err := b.st.List(ctx, bindingsPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	var dbs []string
	for _, k := range keys {
		db, ok := jsonObjectName(bindingsPrefix, k)
		if !ok || validateDBName(db) != nil || !consider(db) {
			continue
		}
		bound, err := b.get(ctx, db)
		if err != nil {
			return nil, err
		}
		if bound == id {
			if dbs = append(dbs, db); len(dbs) == limit {
				break
			}
		}
	}
	return dbs, nil
}

// schemasFor returns the schema IDs a write to db is validated against:
// the bound schema, if any, and explicit (?schema=), if given and
// different. A document must match all of them. It reads the binding at
// most once.
func (b *bindings) schemasFor(ctx context.Context, db, explicit string) ([]string, error) {
	bound, err := b.get(ctx, db)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, id := range []string{bound, explicit} {
		if id != "" && (len(ids) == 0 || ids[0] != id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
