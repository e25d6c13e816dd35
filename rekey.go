package main

// Re-encryption of a database's entities, run by the main worker beside
// the traffic it routes: the upgrade of format-1 entities (during a
// master-key rotation) and the rekey job (POST /admin/databases/{db}/rekey).
// Each entity is resealed under its lock (the same lock a worker's write
// takes, which on the filesystem excludes other processes) with a
// conditional write on the revision read (which catches writers on S3),
// keeping its nonce and write time, so its ETag does not change.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// reencryptBatch is how many entity keys one listing of a re-encryption
// reads.
const reencryptBatch = 256

// upgradeDatabase reseals db's format-1 entities under db's active data
// key (creating it if needed), then clears the Legacy mark.
func (k *keyring) upgradeDatabase(ctx context.Context, db string, pace *pacer) error {
	if err := k.prepare(ctx, db); err != nil {
		return err
	}
	doc, _, err := readDataKeys(ctx, k.st, db)
	if err != nil {
		return err
	}
	if err := k.reencrypt(ctx, db, doc.Active, "", pace, nil); err != nil {
		return err
	}
	_, err = k.updateDataKeys(ctx, db, func(doc *dataKeysDoc, exists bool) (bool, error) {
		changed := doc.Legacy
		doc.Legacy = false
		return exists && changed, nil
	})
	return err
}

// reencrypt reseals, in key order after the object key startAfter (""
// from the first), every entity of db that is not format 2 under data key
// id. progress, unless nil, is told each object key done.
func (k *keyring) reencrypt(ctx context.Context, db, id, startAfter string, pace *pacer, progress func(objKey string) error) error {
	s, err := k.dataSealer(ctx, db, id)
	if err != nil {
		return err
	}
	prefix := entityKeyPrefix(db, "")
	for {
		objs, err := k.st.List(ctx, prefix, startAfter, reencryptBatch)
		if err != nil {
			return fmt.Errorf("re-encrypt %s: %w", db, err)
		}
		if len(objs) == 0 {
			return nil
		}
		for _, obj := range objs {
			if err := pace.wait(ctx); err != nil {
				return fmt.Errorf("re-encrypt %s: %w", db, err)
			}
			if err := k.resealEntity(ctx, db, obj, s); err != nil {
				return err
			}
			if progress != nil {
				if err := progress(obj); err != nil {
					return err
				}
			}
			startAfter = obj
		}
	}
}

// resealEntity reseals the entity at object key obj of db under s unless
// it is sealed under s already or gone.
func (k *keyring) resealEntity(ctx context.Context, db, obj string, s *sealer) error {
	key, err := decodeEntityObjectName(strings.TrimPrefix(obj, entityKeyPrefix(db, "")))
	if err != nil {
		return fmt.Errorf("re-encrypt %s: %w", db, err)
	}
	for attempt := 1; ; attempt++ {
		err := k.resealOnce(ctx, db, key, obj, s)
		if errors.Is(err, errPrecondition) && attempt < maxWriteAttempts {
			continue // written meanwhile (S3): look again
		}
		if err != nil {
			return fmt.Errorf("re-encrypt %s/%q: %w", db, key, err)
		}
		return nil
	}
}

// resealOnce is one attempt of resealEntity.
func (k *keyring) resealOnce(ctx context.Context, db, key, obj string, s *sealer) error {
	unlock, err := lockObject(ctx, &k.locks, k.st, obj)
	if err != nil {
		return err
	}
	defer unlock()
	sealed, rev, err := k.st.GetRev(ctx, obj)
	if errors.Is(err, errNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if h, _, err := parseHeader(sealed); err == nil && h.Format == formatDataKey && h.KeyID == s.keyID {
		return nil
	}
	doc, h, err := k.open(ctx, db, key, sealed)
	if err != nil {
		return err
	}
	_, err = k.st.PutIf(ctx, obj, s.reseal(h, db, key, doc), rev)
	return err
}

// pacer spaces the objects a key job rewrites, to at most a rate per
// second (-key-job-rate); a nil pacer, or rate 0, does not wait.
type pacer struct {
	every time.Duration
	next  time.Time
}

// newPacer returns a pacer of perSecond objects a second (0: unlimited).
func newPacer(perSecond int) *pacer {
	if perSecond <= 0 {
		return nil
	}
	return &pacer{every: time.Second / time.Duration(perSecond)}
}

// wait returns when the next object may be rewritten, or ctx's error. It
// is not safe for concurrent use.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.every)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
