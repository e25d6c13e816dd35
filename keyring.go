package main

// Envelope encryption: every database has its own data keys, stored
// wrapped by the master key at _meta/datakeys/<db>.json; entities are
// sealed (format 2, crypto.go) under their database's active data key.
// Changing the master key then rewraps one small object per database
// (rotation.go), and a database's entities can be re-encrypted under a
// fresh data key without touching any other (rekey.go).

import (
	"context"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// dataKeyContext starts the GCM additional data of a wrapped data key.
const dataKeyContext = "deltadatabase data key v1"

// dataKeysDoc is the JSON stored at dataKeysObjectKey(db): every data key
// an entity of db may be sealed under, each wrapped by the master key.
type dataKeysDoc struct {
	Format int `json:"format"`
	// Active is the ID of the key new writes are sealed under.
	Active string `json:"active"`
	// Legacy is true while db may still hold format-1 entities (sealed
	// under the master key itself): set when the object is created for a
	// database that already held entities, cleared once a rotation or a
	// rekey has rewritten them all.
	Legacy bool             `json:"legacy,omitempty"`
	Keys   []wrappedDataKey `json:"keys"`
}

// wrappedDataKey is one data key, AES-256-GCM-sealed by the master key
// named MasterKeyID with additional data dataKeyContext, MasterKeyID, the
// database and ID (dataKeyAD): a wrapped key copied to another database or
// relabelled does not unwrap.
type wrappedDataKey struct {
	ID          string `json:"id"`
	MasterKeyID string `json:"master_key_id"`
	// Wrapped is the GCM nonce followed by the sealed key and tag.
	Wrapped   []byte    `json:"wrapped"`
	CreatedAt time.Time `json:"created_at"`
}

// find returns the data key named id, or false.
func (d *dataKeysDoc) find(id string) (wrappedDataKey, bool) {
	for _, k := range d.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return wrappedDataKey{}, false
}

// masterKey is one master key, ready to use: it wraps data keys and opens
// format-1 entities.
type masterKey struct {
	id     string
	aead   cipher.AEAD
	legacy *sealer
}

// newMasterKey builds a masterKey from the 32-byte key named id; it keeps
// no reference to key.
func newMasterKey(key []byte, id string, rnd io.Reader, now func() time.Time) (*masterKey, error) {
	legacy, err := newSealer(key, id, rnd, now)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("new master key: %w", err)
	}
	return &masterKey{id: id, aead: aead, legacy: legacy}, nil
}

// dataKeyAD is the additional data of data key id of db wrapped by the
// master key named masterID. Names never contain 0x00.
func dataKeyAD(masterID, db, id string) []byte {
	return []byte(dataKeyContext + "\x00" + masterID + "\x00" + db + "\x00" + id)
}

// wrap seals the data key dk (id, of db) under m.
func (m *masterKey) wrap(db, id string, dk []byte, rnd io.Reader, now time.Time) (wrappedDataKey, error) {
	nonce := make([]byte, nonceSize, nonceSize+len(dk)+tagSize)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return wrappedDataKey{}, fmt.Errorf("wrap data key: read nonce: %w", err)
	}
	return wrappedDataKey{ID: id, MasterKeyID: m.id, CreatedAt: now.UTC(),
		Wrapped: m.aead.Seal(nonce, nonce, dk, dataKeyAD(m.id, db, id))}, nil
}

// unwrap opens a data key of db wrapped under m; errors wrap errCorrupt.
func (m *masterKey) unwrap(db string, w wrappedDataKey) ([]byte, error) {
	if len(w.Wrapped) < nonceSize+tagSize {
		return nil, fmt.Errorf("unwrap data key %q of %s: truncated: %w", w.ID, db, errCorrupt)
	}
	dk, err := m.aead.Open(nil, w.Wrapped[:nonceSize], w.Wrapped[nonceSize:], dataKeyAD(w.MasterKeyID, db, w.ID))
	if err != nil || len(dk) != masterKeySize {
		return nil, fmt.Errorf("unwrap data key %q of %s: not wrapped by master key %q: %w", w.ID, db, m.id, errCorrupt)
	}
	return dk, nil
}

// keyring holds the keys of one storage: the master key (and, while a
// rotation runs, the previous one) and the data keys of the databases,
// read from storage on first use and cached. A data key never changes once
// created (a rotation rewraps the same bytes), so cached data keys stay
// valid; which key a database's writes use may change (a rekey), and
// applyEpoch is how a keyring learns of that. It is safe for concurrent
// use; build it with newKeyring.
type keyring struct {
	st   store
	rand io.Reader // nonces and new data keys; crypto/rand in production
	now  func() time.Time

	// locks is the in-process part of the data-key objects' locks.
	locks keyLocks

	// gate orders writes against applyEpoch: a write holds it shared
	// (hold) from choosing its data key until its object is stored.
	gate sync.RWMutex

	mu       sync.Mutex
	master   *masterKey
	previous *masterKey // nil unless a rotation is under way
	// data are the unwrapped data keys by dataKeyRef.
	data map[string]*sealer
	// active is each database's write key ID, as read in this epoch.
	active map[string]string
	// epoch counts the changes of active data keys this keyring was told
	// of (applyEpoch); 0 at start.
	epoch uint64
	// closed is set by close: the key material is gone.
	closed bool

	// lateUses counts the operations refused because the keyring was
	// closed: a shutdown that closed it before its users had stopped.
	lateUses atomic.Int64
}

// newKeyring returns the keys of storage st: the master key (32 bytes,
// copied; the caller may zero its own) named keyID, and, read from st on
// demand and cached, each database's data keys.
func newKeyring(st store, master []byte, keyID string) (*keyring, error) {
	k := &keyring{st: st, rand: cryptoRand, now: time.Now, data: map[string]*sealer{}, active: map[string]string{}}
	m, err := newMasterKey(master, keyID, k.rand, k.now)
	if err != nil {
		return nil, err
	}
	k.master = m
	return k, nil
}

// addPrevious adds the master key a rotation moves away from: data keys
// and format-1 entities still under it keep opening.
func (k *keyring) addPrevious(master []byte, keyID string) error {
	m, err := newMasterKey(master, keyID, k.rand, k.now)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.previous = m
	return nil
}

// dropPrevious forgets the previous master key once a rotation is done.
func (k *keyring) dropPrevious() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.previous = nil
}

// masters returns the current master key and the previous one (nil
// outside a rotation); both nil once the keyring is closed.
func (k *keyring) masters() (cur, prev *masterKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closedLocked() != nil {
		return nil, nil
	}
	return k.master, k.previous
}

// close drops the key material; every later operation is refused.
func (k *keyring) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.master, k.previous, k.closed = nil, nil, true
	clear(k.data)
	clear(k.active)
}

// closedLocked is the error of an operation on a closed keyring, counted
// in lateUses; nil while it is open. The caller holds mu.
func (k *keyring) closedLocked() error {
	if !k.closed {
		return nil
	}
	k.lateUses.Add(1)
	return fmt.Errorf("keyring closed: %w", errUnavailable)
}

// hold takes the write gate shared; the returned function releases it.
// Every write holds it from seal until its object is durable.
func (k *keyring) hold() func() {
	k.gate.RLock()
	return k.gate.RUnlock
}

// keysEpoch returns the last epoch applied.
func (k *keyring) keysEpoch() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.epoch
}

// applyEpoch learns that some database's active data key may have changed
// (a rekey) as of epoch e. It waits for the writes in progress (holding
// the gate), then forgets which key each database writes with, so that
// every later seal reads the data-key object again. Once applyEpoch(e)
// has returned, no write of this keyring seals under a key that was
// retired before epoch e was announced. Older epochs are ignored.
func (k *keyring) applyEpoch(e uint64) {
	if k.keysEpoch() >= e {
		return
	}
	k.gate.Lock()
	defer k.gate.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if e > k.epoch {
		k.epoch = e
		clear(k.active)
	}
}

// dataKeyRef is the cache key of data key id of db.
func dataKeyRef(db, id string) string { return db + "\x00" + id }

// prepare makes sure db has data keys, creating its first one if needed,
// and caches the active one. Writers call it before taking an entity's
// lock: creating data keys takes their object's lock, and a caller holds
// one lock at a time (store.Lock).
func (k *keyring) prepare(ctx context.Context, db string) error {
	_, err := k.activeSealer(ctx, db, true)
	return err
}

// hasDataKeys reports whether db has data keys, without making any.
func (k *keyring) hasDataKeys(ctx context.Context, db string) (bool, error) {
	_, err := k.activeSealer(ctx, db, false)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

// seal encrypts doc as entity key of db under db's active data key. The
// caller has called prepare, and holds the gate (hold) until the result
// is stored.
func (k *keyring) seal(ctx context.Context, db, key string, doc []byte) ([]byte, envelopeHeader, error) {
	s, err := k.activeSealer(ctx, db, false)
	if err != nil {
		return nil, envelopeHeader{}, err
	}
	sealed, err := s.seal(db, key, doc)
	if err != nil {
		return nil, envelopeHeader{}, err
	}
	h, _, err := parseHeader(sealed)
	return sealed, h, err
}

// open authenticates and decrypts the stored entity blob of (db, key),
// in either format: formatMaster, sealed directly under the master key
// (the current or, during a rotation, the previous one), or formatDataKey,
// sealed under the data key of db that h.KeyID names. Failures wrap
// errCorrupt (tampered, wrong key) or the store's error.
func (k *keyring) open(ctx context.Context, db, key string, sealed []byte) ([]byte, envelopeHeader, error) {
	h, _, err := parseHeader(sealed)
	if err != nil {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: %w", err)
	}
	if h.Format == formatMaster {
		return k.openLegacy(db, key, sealed)
	}
	s, err := k.dataSealer(ctx, db, h.KeyID)
	if err != nil {
		return nil, envelopeHeader{}, fmt.Errorf("open entity: %w", err)
	}
	return s.open(db, key, sealed)
}

// openLegacy opens a format-1 entity with the master key it names.
func (k *keyring) openLegacy(db, key string, sealed []byte) ([]byte, envelopeHeader, error) {
	cur, prev := k.masters()
	if cur == nil {
		return nil, envelopeHeader{}, errors.New("open entity: keyring closed")
	}
	doc, h, err := cur.legacy.open(db, key, sealed)
	if err != nil && prev != nil {
		if d, ph, perr := prev.legacy.open(db, key, sealed); perr == nil {
			return d, ph, nil
		}
	}
	return doc, h, err
}

// activeSealer returns the sealer of db's active data key: cached in this
// epoch, else read from storage; if db has no data keys, they are created
// when create is set, else it is an error.
func (k *keyring) activeSealer(ctx context.Context, db string, create bool) (*sealer, error) {
	k.mu.Lock()
	if err := k.closedLocked(); err != nil {
		k.mu.Unlock()
		return nil, err
	}
	id, ok := k.active[db]
	s := k.data[dataKeyRef(db, id)]
	epoch := k.epoch
	k.mu.Unlock()
	if ok && s != nil {
		return s, nil
	}
	doc, _, err := readDataKeys(ctx, k.st, db)
	if errors.Is(err, errNotFound) && create {
		doc, err = k.createDataKeys(ctx, db)
	}
	if err != nil {
		return nil, err
	}
	w, ok := doc.find(doc.Active)
	if !ok {
		return nil, fmt.Errorf("data keys of %s: active key %q is not among them: %w", db, doc.Active, errCorrupt)
	}
	s, err = k.install(db, w)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// An epoch applied while storage was read may have retired this key.
	if k.epoch == epoch {
		k.active[db] = w.ID
	}
	return s, nil
}

// dataSealer returns the sealer of data key id of db, reading db's data
// keys from storage if it is not cached.
func (k *keyring) dataSealer(ctx context.Context, db, id string) (*sealer, error) {
	k.mu.Lock()
	if err := k.closedLocked(); err != nil {
		k.mu.Unlock()
		return nil, err
	}
	s := k.data[dataKeyRef(db, id)]
	k.mu.Unlock()
	if s != nil {
		return s, nil
	}
	doc, _, err := readDataKeys(ctx, k.st, db)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("data key %q of %s: database has no data keys: %w", id, db, errCorrupt)
	}
	if err != nil {
		return nil, err
	}
	w, ok := doc.find(id)
	if !ok {
		return nil, fmt.Errorf("data key %q of %s: not stored (retired?): %w", id, db, errCorrupt)
	}
	return k.install(db, w)
}

// install unwraps w, a data key of db, and caches its sealer.
func (k *keyring) install(db string, w wrappedDataKey) (*sealer, error) {
	dk, err := k.unwrap(db, w)
	if err != nil {
		return nil, err
	}
	defer zero(dk)
	s, err := newDataKeySealer(dk, w.ID, k.rand, k.now)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.data[dataKeyRef(db, w.ID)] = s
	return s, nil
}

// unwrap opens a data key of db with the master key that wrapped it: the
// current one, else the previous one.
func (k *keyring) unwrap(db string, w wrappedDataKey) ([]byte, error) {
	cur, prev := k.masters()
	if cur == nil {
		return nil, errors.New("unwrap data key: keyring closed")
	}
	dk, err := cur.unwrap(db, w)
	if err != nil && prev != nil {
		if pk, perr := prev.unwrap(db, w); perr == nil {
			return pk, nil
		}
	}
	return dk, err
}

// newDataKey generates a data key for db and wraps it under the current
// master key.
func (k *keyring) newDataKey(db string) (wrappedDataKey, error) {
	cur, _ := k.masters()
	if cur == nil {
		return wrappedDataKey{}, errors.New("new data key: keyring closed")
	}
	raw := make([]byte, masterKeySize+8)
	defer zero(raw)
	if _, err := io.ReadFull(k.rand, raw); err != nil {
		return wrappedDataKey{}, fmt.Errorf("new data key: %w", err)
	}
	id := "dk-" + hex.EncodeToString(raw[masterKeySize:])
	return cur.wrap(db, id, raw[:masterKeySize], k.rand, k.now())
}

// createDataKeys stores db's first data key, unless another writer got
// there first: then it returns theirs. A database that already holds
// entities (written in format 1) is marked Legacy.
func (k *keyring) createDataKeys(ctx context.Context, db string) (dataKeysDoc, error) {
	return k.updateDataKeys(ctx, db, func(doc *dataKeysDoc, exists bool) (bool, error) {
		if exists {
			return false, nil
		}
		w, err := k.newDataKey(db)
		if err != nil {
			return false, err
		}
		existing, err := k.st.List(ctx, entityKeyPrefix(db, ""), "", 1)
		if err != nil {
			return false, fmt.Errorf("create data keys of %s: %w", db, err)
		}
		*doc = dataKeysDoc{Format: 1, Active: w.ID, Legacy: len(existing) > 0, Keys: []wrappedDataKey{w}}
		return true, nil
	})
}

// updateDataKeys is the one read-modify-write of db's data keys: under
// the object's lock (which on the filesystem excludes other processes;
// on S3 the conditional write catches them, and it starts over), it reads
// them, lets change edit them (exists false: there are none yet) and, if
// change says so, stores the result. It returns the stored keys.
func (k *keyring) updateDataKeys(ctx context.Context, db string, change func(doc *dataKeysDoc, exists bool) (bool, error)) (dataKeysDoc, error) {
	for attempt := 1; ; attempt++ {
		doc, err := k.updateDataKeysOnce(ctx, db, change)
		if errors.Is(err, errPrecondition) && attempt < maxWriteAttempts {
			continue
		}
		return doc, err
	}
}

// updateDataKeysOnce is one attempt of updateDataKeys.
func (k *keyring) updateDataKeysOnce(ctx context.Context, db string, change func(doc *dataKeysDoc, exists bool) (bool, error)) (dataKeysDoc, error) {
	unlock, err := lockObject(ctx, &k.locks, k.st, dataKeysObjectKey(db))
	if err != nil {
		return dataKeysDoc{}, fmt.Errorf("lock data keys of %s: %w", db, err)
	}
	defer unlock()
	doc, rev, err := readDataKeys(ctx, k.st, db)
	exists := err == nil
	if err != nil && !errors.Is(err, errNotFound) {
		return dataKeysDoc{}, err
	}
	write, err := change(&doc, exists)
	if err != nil || !write {
		return doc, err
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return dataKeysDoc{}, fmt.Errorf("write data keys of %s: %w", db, err)
	}
	if _, err := k.st.PutIf(ctx, dataKeysObjectKey(db), append(raw, '\n'), rev); err != nil {
		return dataKeysDoc{}, fmt.Errorf("write data keys of %s: %w", db, err)
	}
	return doc, nil
}

// readDataKeys reads db's data keys and their storage revision; missing is
// errNotFound.
func readDataKeys(ctx context.Context, st store, db string) (dataKeysDoc, string, error) {
	var doc dataKeysDoc
	rev, found, err := getJSONRev(ctx, st, dataKeysObjectKey(db), "data keys of "+db, &doc)
	switch {
	case err != nil:
		return dataKeysDoc{}, "", err
	case !found:
		return dataKeysDoc{}, "", fmt.Errorf("read data keys of %s: %w", db, errNotFound)
	case doc.Format != 1 || len(doc.Keys) == 0:
		return dataKeysDoc{}, "", fmt.Errorf("read data keys of %s: not a format-1 data key object: %w", db, errCorrupt)
	}
	return doc, rev, nil
}

// Re-encryption of a database's entities, run by the main worker beside
// the traffic it routes: the upgrade of format-1 entities (during a
// master-key rotation) and a rekey (rekey.go). Each entity is resealed
// under its lock (the same lock a worker's write takes, which on the
// filesystem excludes other processes) with a conditional write on the
// revision read (which catches writers on S3), keeping its nonce and write
// time, so its ETag does not change.

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
// id, then every version (reencryptVersions). progress, unless nil, is
// told each entity's object key done.
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
			return k.reencryptVersions(ctx, db, s, pace)
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
	key, err := entityKeyOf(obj)
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
