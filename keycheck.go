package main

// The key check: an HMAC of a fixed message under the master key, stored
// with its key ID and the storage format at keyCheckObject. A start
// compares its master key with it before serving, so a wrong key stops
// the process instead of failing every read; during a master-key rotation
// (rotation.go) it names the new key, and the rotation record both.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// storageFormat is the version of the storage layout and envelope.
const storageFormat = 1

// keyCheckDoc is the JSON stored at keyCheckObject. Check is an HMAC of a
// fixed message under the master key: it tells a wrong key from the right
// one and reveals nothing about either.
type keyCheckDoc struct {
	Format int    `json:"format"`
	KeyID  string `json:"key_id"`
	Check  string `json:"check"`
}

// checkMasterKey compares master with the stored key check value, writing
// one on first start.
func checkMasterKey(ctx context.Context, st store, master []byte, keyID string) error {
	doc, err := readKeyCheck(ctx, st)
	if err != nil {
		return err
	}
	if doc == nil {
		return writeKeyCheck(ctx, st, master, keyID)
	}
	if doc.KeyID != keyID {
		return fmt.Errorf("wrong master key: storage was created with key id %q, this start uses -key-id %q", doc.KeyID, keyID)
	}
	if !doc.matches(master, keyID) {
		return fmt.Errorf("wrong master key: it does not match the key check value in %s (key id %q); "+
			"start with the master key this storage was created with", keyCheckObject, keyID)
	}
	return nil
}

// keyRef names a master key without revealing it: its ID and key check
// value (keyCheckValue).
type keyRef struct {
	KeyID string `json:"key_id"`
	Check string `json:"check"`
}

// refOf returns the keyRef of master named keyID.
func refOf(master []byte, keyID string) keyRef {
	return keyRef{KeyID: keyID, Check: hex.EncodeToString(keyCheckValue(master, keyID))}
}

// matches reports whether master named keyID is the key r names.
func (r keyRef) matches(master []byte, keyID string) bool {
	want, err := hex.DecodeString(r.Check)
	return err == nil && r.KeyID == keyID && hmac.Equal(want, keyCheckValue(master, keyID))
}

// readKeyCheck reads the key check; nil when there is none yet.
func readKeyCheck(ctx context.Context, st store) (*keyCheckDoc, error) {
	var doc keyCheckDoc
	found, err := getJSON(ctx, st, keyCheckObject, "key check", &doc)
	if err != nil || !found {
		return nil, err
	}
	if doc.Format != storageFormat {
		return nil, fmt.Errorf("storage format %d is not supported by this build (want %d)", doc.Format, storageFormat)
	}
	if _, err := hex.DecodeString(doc.Check); err != nil {
		return nil, fmt.Errorf("read key check %s: %v: %w", keyCheckObject, err, errCorrupt)
	}
	return &doc, nil
}

// writeKeyCheck stores the key check value of master named keyID.
func writeKeyCheck(ctx context.Context, st store, master []byte, keyID string) error {
	ref := refOf(master, keyID)
	return putJSON(ctx, st, keyCheckObject, "key check", keyCheckDoc{Format: storageFormat, KeyID: ref.KeyID, Check: ref.Check})
}

// keyRef returns the key the key check names.
func (d *keyCheckDoc) keyRef() keyRef { return keyRef{KeyID: d.KeyID, Check: d.Check} }

// matches reports whether master named keyID is the key of the key check.
func (d *keyCheckDoc) matches(master []byte, keyID string) bool {
	return d.keyRef().matches(master, keyID)
}

// keyCheckContext starts the message of the key check value.
const keyCheckContext = "deltadatabase key check v1|"

// keyCheckValue returns HMAC-SHA256(masterKey, "deltadatabase key check
// v1|"+keyID). Stored in _meta/, it lets a worker detect a wrong master key
// at start without revealing anything about the key.
func keyCheckValue(masterKey []byte, keyID string) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte(keyCheckContext + keyID))
	return m.Sum(nil)
}

// checkKeys is the key check of a start that may rotate: master (named
// keyID) must match the stored key check, or prev (the
// -previous-master-key, nil if not given) must, which starts a rotation to
// master; an unfinished rotation needs both its keys. It returns the ID of
// the previous key when a rotation is to run (start or resume), "" when
// not; note is a line for the log ("" for none).
func checkKeys(ctx context.Context, st store, master []byte, keyID string, prev []byte) (prevID, note string, err error) {
	rec, err := readRotation(ctx, st)
	if err != nil {
		return "", "", err
	}
	kc, err := readKeyCheck(ctx, st)
	if err != nil {
		return "", "", err
	}
	switch {
	case rec != nil:
		return resumeRotation(ctx, st, rec, kc, master, keyID, prev)
	case prev == nil || kc == nil:
		if prev != nil {
			return "", "", errors.New("-previous-master-key: this storage holds no data yet, so there is nothing to rotate from")
		}
		return "", "", checkMasterKey(ctx, st, master, keyID)
	case kc.matches(master, keyID):
		return "", "storage is already under -master-key: -previous-master-key is not needed (a rotation finished before)", nil
	case !kc.matches(prev, kc.KeyID):
		return "", "", fmt.Errorf("-previous-master-key: neither it nor -master-key matches the key check value in %s (key id %q)",
			keyCheckObject, kc.KeyID)
	case hmac.Equal(prev, master):
		return "", "", errors.New("-previous-master-key: it is the same key as -master-key")
	}
	rec = &rotationDoc{Format: 1, From: kc.keyRef(), To: refOf(master, keyID), StartedAt: time.Now().UTC()}
	if err := putJSON(ctx, st, rotationObject, "key rotation record", rec); err != nil {
		return "", "", err
	}
	if err := writeKeyCheck(ctx, st, master, keyID); err != nil {
		return "", "", err
	}
	return rec.From.KeyID, "", nil
}
