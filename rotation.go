package main

// Master-key rotation, online: the main worker starts with the
// new key (-master-key, -master-key-file) and the old one
// (-previous-master-key, -previous-master-key-file). Before it serves it
// records the rotation at _meta/rotation.json and moves the key check to
// the new key; then, while serving, it rewraps every database's data keys
// under the new key (one small object per database, whatever the number
// of entities) and upgrades format-1 entities, which are sealed under the
// old key itself. Meanwhile the keyrings hold both keys, so everything
// opens. At the end it removes the record, drops the old key and tells the
// workers to subscribe again, which hands them the new key alone.
//
// A crash anywhere resumes on the next start with both keys: the record
// says which keys the rotation moves between, and every step is
// idempotent (a data key already under the new key is left alone). While
// the record exists a start without the old key is refused; once it is
// gone the old key alone no longer matches the key check.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"
)

// rotationDoc is the JSON stored at rotationObject.
type rotationDoc struct {
	Format    int       `json:"format"`
	From      keyRef    `json:"from"`
	To        keyRef    `json:"to"`
	StartedAt time.Time `json:"started_at"`
}

// resumeRotation checks the keys of a start that finds rotation rec
// unfinished, and finishes moving the key check if a crash came first.
func resumeRotation(ctx context.Context, st store, rec *rotationDoc, kc *keyCheckDoc, master []byte, keyID string, prev []byte) (string, string, error) {
	switch {
	case prev == nil:
		return "", "", fmt.Errorf("a master-key rotation from key id %q to %q is unfinished: start with both keys, the old one in "+
			"-previous-master-key or -previous-master-key-file, to finish it", rec.From.KeyID, rec.To.KeyID)
	case !rec.To.matches(master, keyID):
		return "", "", fmt.Errorf("-master-key: an unfinished rotation moves to key id %q, and this is not that key (or -key-id %q is not its ID)",
			rec.To.KeyID, keyID)
	case !rec.From.matches(prev, rec.From.KeyID):
		return "", "", fmt.Errorf("-previous-master-key: an unfinished rotation moves from key id %q, and this is not that key", rec.From.KeyID)
	}
	if kc == nil || !kc.matches(master, keyID) {
		if err := writeKeyCheck(ctx, st, master, keyID); err != nil {
			return "", "", err
		}
	}
	return rec.From.KeyID, "resuming an unfinished master-key rotation", nil
}

// readRotation reads the rotation record; nil when there is none.
func readRotation(ctx context.Context, st store) (*rotationDoc, error) {
	var rec rotationDoc
	found, err := getJSON(ctx, st, rotationObject, "key rotation record", &rec)
	if err != nil || !found {
		return nil, err
	}
	if rec.Format != 1 {
		return nil, fmt.Errorf("read key rotation record %s: not a format-1 record: %w", rotationObject, errCorrupt)
	}
	return &rec, nil
}

// rotator rewraps every database's data keys under the keyring's current
// master key and upgrades format-1 entities, then removes the rotation
// record. The keyring holds the previous key meanwhile. It runs as a key
// job (jobs.go), whose record holds its progress.
type rotator struct {
	st   store
	ring *keyring
	log  *slog.Logger
	// done runs once the record is removed: it drops the previous key
	// everywhere.
	done func()
}

// run rotates the databases that sort after the database after ("" from
// the first), in order, objects spaced by pace, until done or ctx ends (a
// later start resumes). progress, unless nil, is told n of the total
// databases of this run done, db the last one ("" before the first).
func (r *rotator) run(ctx context.Context, pace *pacer, after string, progress func(db string, n, total int) error) error {
	if progress == nil {
		progress = func(string, int, int) error { return nil }
	}
	dbs, err := keyedDatabases(ctx, r.st)
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	dbs = dbs[sort.SearchStrings(dbs, after+"\x00"):]
	r.log.Info("master key rotation started", "databases", len(dbs))
	if err := progress("", 0, len(dbs)); err != nil {
		return err
	}
	every := max(1, len(dbs)/10)
	for i, db := range dbs {
		if err := pace.wait(ctx); err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		if err := r.rotateDatabase(ctx, db, pace); err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		if err := progress(db, i+1, len(dbs)); err != nil {
			return err
		}
		if (i+1)%every == 0 {
			r.log.Info("master key rotation progress", "done", i+1, "total", len(dbs))
		}
	}
	if err := r.st.Delete(ctx, rotationObject); err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("rotate master key: remove record: %w", err)
	}
	r.done()
	r.log.Info("master key rotation finished: the previous key is no longer needed", "databases", len(dbs))
	return nil
}

// rotateDatabase rewraps db's data keys under the current master key and
// upgrades its format-1 entities, if it may hold any.
func (r *rotator) rotateDatabase(ctx context.Context, db string, pace *pacer) error {
	cur, _ := r.ring.masters()
	doc, err := r.ring.updateDataKeys(ctx, db, func(doc *dataKeysDoc, exists bool) (bool, error) {
		changed := false
		for i, w := range doc.Keys {
			if _, err := cur.unwrap(db, w); err == nil {
				continue
			}
			dk, err := r.ring.unwrap(db, w)
			if err != nil {
				return false, err
			}
			doc.Keys[i], err = cur.wrap(db, w.ID, dk, r.ring.rand, r.ring.now())
			zero(dk)
			if err != nil {
				return false, err
			}
			changed = true
		}
		return changed, nil
	})
	if err != nil {
		return err
	}
	if len(doc.Keys) == 0 || doc.Legacy {
		// No data keys yet (only format-1 entities), or some entities may
		// still be format 1: they are sealed under the previous key.
		return r.ring.upgradeDatabase(ctx, db, pace)
	}
	return nil
}

// keyedDatabases returns every database holding entities or data keys,
// sorted.
func keyedDatabases(ctx context.Context, st store) ([]string, error) {
	dbs, err := newCatalog(st).listDatabases(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := st.List(ctx, dataKeysPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("list data keys: %w", err)
	}
	seen := map[string]bool{}
	for _, db := range dbs {
		seen[db] = true
	}
	for _, k := range keys {
		db, ok := jsonObjectName(dataKeysPrefix, k)
		if ok && validateDBName(db) == nil && !seen[db] {
			seen[db] = true
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return dbs, nil
}
