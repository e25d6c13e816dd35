package main

// The rekey job (POST /admin/databases/{db}/rekey), run by the main
// worker beside the traffic it routes, as a key job (jobs.go). The
// re-encryption of the entities is the keyring's (keyring.reencrypt).

import (
	"context"
	"fmt"
	"slices"
)

// A rekey moves one database's entities to a fresh data key, online:
//
//  1. switch: a new data key becomes the database's active one, beside
//     the old ones (writers that read the data keys from now on seal
//     under it; entities under the old keys keep opening);
//  2. announce: the data-key epoch is raised (keyring.applyEpoch) and the
//     job waits until every available worker has applied it;
//  3. re-encrypt every entity not yet under the new key, in key order,
//     recording progress and a cursor in the job record;
//  4. retire: a second pass reseals any straggler, then the old keys are
//     removed from the database's data keys.
//
// Why no worker seals under a retired key once the job says done: a
// worker seals only with the gate of its keyring held shared, from
// choosing the data key until the entity is stored (worker.store), and a
// keyring applying a new epoch takes the gate exclusively and forgets
// every cached active key: once a worker has applied the epoch of step 2,
// every write it has in progress has finished, and every later write
// reads the data keys again, written in step 1, before the epoch was
// announced. A worker reports the epoch applied in its next heartbeat;
// step 2 ends when every available worker has (a worker that subscribes
// later gets a fresh keyring, which caches nothing). The in-process
// worker of -role=all shares the main worker's keyring, which applies
// the epoch directly. So after step 2 no write seals under an old key,
// and the pass of step 3 lists the database after step 2: an entity it
// lists is resealed under the lock writers take, and one written later
// is written under the new key. The one case this does not cover is a
// worker that stops heartbeating (out of rotation) with a write still in
// progress that completes much later; the pass of step 4 catches such a
// straggler if it has landed by then. TestRekeyBarrier checks the order.
//
// A crash anywhere resumes at the next start from the job record: the
// switch is skipped if the active key is already new, the epoch is
// announced again, and re-encryption continues after the cursor.

// Phases of a running rekey, in order.
const (
	phaseSwitch    = "switch"
	phaseReencrypt = "reencrypt"
	phaseRetire    = "retire"
)

// startRekey starts a rekey of db, or returns the one already running
// (started false). A database without entities or data keys is
// errNotFound.
func (j *keyJobs) startRekey(ctx context.Context, db string) (view jobView, started bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if d := j.running[db]; d != nil {
		return d.view(), false, nil
	}
	dbs, err := keyedDatabases(ctx, j.st)
	if err != nil {
		return jobView{}, false, err
	}
	if !slices.Contains(dbs, db) {
		return jobView{}, false, reqErrorf(errNotFound, "database %q not found", db)
	}
	if err := j.ring.prepare(ctx, db); err != nil {
		return jobView{}, false, err
	}
	keys, _, err := readDataKeys(ctx, j.st, db)
	if err != nil {
		return jobView{}, false, err
	}
	d, err := j.newJob(kindRekey, db)
	if err != nil {
		return jobView{}, false, err
	}
	d.Phase = phaseSwitch
	for _, k := range keys.Keys {
		d.OldKeys = append(d.OldKeys, k.ID)
	}
	if err := j.start(ctx, d); err != nil {
		return jobView{}, false, err
	}
	return d.view(), true, nil
}

// rekey runs the steps of the rekey d from its phase.
func (j *keyJobs) rekey(ctx context.Context, d *jobDoc) error {
	db := d.Database
	keys, err := j.ring.updateDataKeys(ctx, db, func(k *dataKeysDoc, exists bool) (bool, error) {
		if !exists {
			return false, fmt.Errorf("rekey %s: data keys missing: %w", db, errCorrupt)
		}
		if !slices.Contains(d.OldKeys, k.Active) {
			return false, nil // switched before a crash
		}
		w, err := j.ring.newDataKey(db)
		if err != nil {
			return false, err
		}
		k.Keys, k.Active = append(k.Keys, w), w.ID
		return true, nil
	})
	if err != nil {
		return err
	}
	epoch := max(j.ring.keysEpoch()+1, uint64(j.now().UnixNano()))
	j.ring.applyEpoch(epoch)
	j.log.Info("rekey: new data key active; waiting for the workers to apply it", "job", d.ID, attrDB, db)
	if err := j.barrier(ctx, epoch); err != nil {
		return err
	}
	if d.Phase == phaseSwitch {
		total, err := j.keys.count(ctx, db)
		if err != nil {
			return err
		}
		if err := j.update(ctx, d, true, func(d *jobDoc) { d.NewKey, d.Phase, d.Total = keys.Active, phaseReencrypt, int64(total) }); err != nil {
			return err
		}
	}
	pace := newPacer(j.rate)
	if d.Phase == phaseReencrypt {
		if err := j.reencryptJob(ctx, d, pace); err != nil {
			return err
		}
	}
	// Step 4: stragglers, then retire the old keys.
	if err := j.ring.reencrypt(ctx, db, d.NewKey, "", pace, nil); err != nil {
		return err
	}
	_, err = j.ring.updateDataKeys(ctx, db, func(k *dataKeysDoc, _ bool) (bool, error) {
		if k.Active != d.NewKey {
			return false, fmt.Errorf("rekey %s: active data key changed under the job: %w", db, errCorrupt)
		}
		k.Keys = slices.DeleteFunc(k.Keys, func(w wrappedDataKey) bool { return slices.Contains(d.OldKeys, w.ID) })
		k.Legacy = false
		return true, nil
	})
	return err
}

// reencryptJob is step 3: it re-encrypts from the job's cursor, storing
// progress every saveEvery.
func (j *keyJobs) reencryptJob(ctx context.Context, d *jobDoc, pace *pacer) error {
	step := j.progress(ctx, d)
	err := j.ring.reencrypt(ctx, d.Database, d.NewKey, d.Cursor, pace, func(obj string) error {
		return step(false, func(d *jobDoc) { d.Done++; d.Cursor = obj })
	})
	if err != nil {
		return err
	}
	return j.update(ctx, d, true, func(d *jobDoc) { d.Phase = phaseRetire })
}
