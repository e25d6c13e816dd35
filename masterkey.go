package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// cryptoRand is the randomness of production keys and nonces; tests pin
// their own readers instead.
var cryptoRand io.Reader = rand.Reader

// keyCheckObject holds the key check value and storage format (SPEC §7).
const keyCheckObject = metaPrefix + "keycheck.json"

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

// startKeys are the secrets the main worker runs with.
type startKeys struct {
	master []byte
	admin  string
}

// loadKeys returns the master and admin keys, checking the master key
// against the storage's key check value. A key is generated (and printed
// once to stdout, never to the log) only where none was given: the master
// key only on storage that holds no data yet.
func loadKeys(ctx context.Context, cfg config, st store, stdout io.Writer) (startKeys, error) {
	master, err := configuredMasterKey(cfg)
	if err != nil {
		return startKeys{}, err
	}
	generated := []string{}
	if master == nil {
		if err := requireEmptyStorage(ctx, st, cfg); err != nil {
			return startKeys{}, err
		}
		master = make([]byte, 32)
		if _, err := io.ReadFull(cryptoRand, master); err != nil {
			return startKeys{}, fmt.Errorf("generate master key: %w", err)
		}
		generated = append(generated, "MASTER_KEY="+hex.EncodeToString(master)+"  (needed to restart on this storage)")
	}
	if err := checkMasterKey(ctx, st, master, cfg.keyID); err != nil {
		zero(master)
		return startKeys{}, err
	}
	admin := cfg.adminKey
	if admin == "" {
		b := make([]byte, 32)
		if _, err := io.ReadFull(cryptoRand, b); err != nil {
			return startKeys{}, fmt.Errorf("generate admin key: %w", err)
		}
		admin = "dk_admin_" + hex.EncodeToString(b)
		generated = append(generated, "ADMIN_KEY="+admin)
	}
	if len(generated) > 0 {
		fmt.Fprintf(stdout, "DeltaDatabase generated these keys; they are shown only now:\n  %s\n", strings.Join(generated, "\n  "))
	}
	return startKeys{master: master, admin: admin}, nil
}

// configuredMasterKey reads the master key from -master-key-file, or from
// -master-key / MASTER_KEY; nil when none is given.
func configuredMasterKey(cfg config) ([]byte, error) {
	switch {
	case cfg.masterKeyFile != "" && cfg.masterKey != "":
		return nil, errors.New("-master-key-file: give the master key once, not also with -master-key or MASTER_KEY")
	case cfg.masterKeyFile != "":
		b, err := os.ReadFile(cfg.masterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-master-key-file: %w", err)
		}
		k, err := parseMasterKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("-master-key-file %s: %w", cfg.masterKeyFile, err)
		}
		return k, nil
	case cfg.masterKey != "":
		k, err := parseMasterKey(cfg.masterKey)
		if err != nil {
			return nil, fmt.Errorf("-master-key: %w", err)
		}
		return k, nil
	}
	return nil, nil
}

// requireEmptyStorage refuses to generate a master key for storage that
// already holds data: a new key would make all of it unreadable.
func requireEmptyStorage(ctx context.Context, st store, cfg config) error {
	for _, prefix := range []string{metaPrefix, entitiesPrefix} {
		keys, err := st.List(ctx, prefix, "", 1)
		if err != nil {
			return fmt.Errorf("inspect storage: %w", err)
		}
		if len(keys) > 0 {
			return fmt.Errorf("storage %s already holds data encrypted with a master key: "+
				"start with that key (-master-key-file, MASTER_KEY or -master-key) instead of generating a new one", storageName(cfg))
		}
	}
	return nil
}

// checkMasterKey compares master with the stored key check value, writing
// one on first start.
func checkMasterKey(ctx context.Context, st store, master []byte, keyID string) error {
	raw, err := st.Get(ctx, keyCheckObject)
	if errors.Is(err, errNotFound) {
		doc, _ := json.Marshal(keyCheckDoc{Format: storageFormat, KeyID: keyID, Check: hex.EncodeToString(keyCheckValue(master, keyID))})
		if err := st.Put(ctx, keyCheckObject, doc); err != nil {
			return fmt.Errorf("write key check: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read key check: %w", err)
	}
	var doc keyCheckDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("read key check %s: %v: %w", keyCheckObject, err, errCorrupt)
	}
	if doc.Format != storageFormat {
		return fmt.Errorf("storage format %d is not supported by this build (want %d)", doc.Format, storageFormat)
	}
	want, err := hex.DecodeString(doc.Check)
	if err != nil {
		return fmt.Errorf("read key check %s: %v: %w", keyCheckObject, err, errCorrupt)
	}
	if doc.KeyID != keyID {
		return fmt.Errorf("wrong master key: storage was created with key id %q, this start uses -key-id %q", doc.KeyID, keyID)
	}
	if !hmac.Equal(want, keyCheckValue(master, keyID)) {
		return fmt.Errorf("wrong master key: it does not match the key check value in %s (key id %q); "+
			"start with the master key this storage was created with", keyCheckObject, keyID)
	}
	return nil
}

// storageName describes the configured storage for messages.
func storageName(cfg config) string {
	if cfg.s3.endpoint != "" {
		return "s3://" + cfg.s3.endpoint + "/" + cfg.s3.bucket
	}
	return cfg.sharedFS
}
