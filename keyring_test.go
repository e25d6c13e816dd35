package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// The fixture testdata/format1 was written by the code before envelope
// encryption (commit 9cb640d, `go run .` with this master key and the
// default key ID), through REST:
//
//	PUT /entity/chatdb   {"session_001":{"user":"ada","messages":["hi","hello"]},"session_002":{"n":2}}
//	PUT /entity/notes.v1 {"ünïcode key":"a string value","list":[1,2,3]}
const format1MasterHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// format1Docs are the fixture's entities as they were written.
var format1Docs = []struct{ db, key, doc string }{
	{"chatdb", "session_001", `{"user":"ada","messages":["hi","hello"]}`},
	{"chatdb", "session_002", `{"n":2}`},
	{"notes.v1", "ünïcode key", `"a string value"`},
	{"notes.v1", "list", `[1,2,3]`},
}

// copyFixture copies testdata/<name> into a temp directory (tests write to
// it) and opens it.
func copyFixture(t *testing.T, name string) *fsStore {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := newFSStore(dst)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// storedFormat returns the envelope format of the stored entity.
func storedFormat(t *testing.T, st store, db, key string) (uint8, string) {
	t.Helper()
	b, err := st.Get(context.Background(), entityObjectKey(db, key))
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := parseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h.Format, h.KeyID
}

// TestFormat1EntitiesReadAfterUpgrade: storage written by the format-1
// code passes the key check, and every entity reads back as written,
// through a worker; a write turns that one entity into format 2 under its
// database's data key (created then, and marked legacy since the database
// already held entities); the others stay format 1 and keep reading.
func TestFormat1EntitiesReadAfterUpgrade(t *testing.T) {
	st := copyFixture(t, "format1")
	ctx := t.Context()
	master, _ := hex.DecodeString(format1MasterHex)
	if err := checkMasterKey(ctx, st, master, "main-key-v1"); err != nil {
		t.Fatalf("checkMasterKey on format-1 storage = %v", err)
	}
	ring, err := newKeyring(st, master, "main-key-v1")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker("w1", st, newSchemaRegistry(st, budgets{}), newLRU[string, cachedEntity](16, 0, time.Now), budgets{}, slog.New(slog.DiscardHandler), nil)
	w.setKeys(ring)
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: w.id, proc: w, stats: w.stats})
	get := func(db, key string) string {
		t.Helper()
		resp, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET})
		if err != nil {
			t.Fatalf("GET %s/%q = %v", db, key, err)
		}
		return string(resp.GetResult())
	}
	for _, e := range format1Docs {
		if f, _ := storedFormat(t, st, e.db, e.key); f != formatMaster {
			t.Fatalf("fixture %s/%q has format %d, want 1", e.db, e.key, f)
		}
		if got := get(e.db, e.key); got != e.doc {
			t.Errorf("GET %s/%q = %s, want %s", e.db, e.key, got, e.doc)
		}
	}
	if _, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "chatdb", EntityKey: "session_002", Operation: pb.Operation_PUT, Payload: []byte(`{"n":3}`)}); err != nil {
		t.Fatal(err)
	}
	doc, _, err := readDataKeys(ctx, st, "chatdb")
	if err != nil {
		t.Fatalf("data keys of chatdb after a write: %v", err)
	}
	if !doc.Legacy {
		t.Errorf("data keys of chatdb: Legacy = false, want true (it held format-1 entities)")
	}
	if f, id := storedFormat(t, st, "chatdb", "session_002"); f != formatDataKey || id != doc.Active {
		t.Errorf("rewritten entity: format %d key %q, want 2 and the active data key %q", f, id, doc.Active)
	}
	if f, _ := storedFormat(t, st, "chatdb", "session_001"); f != formatMaster {
		t.Errorf("untouched entity: format %d, want 1", f)
	}
	// A new keyring (another worker, a restart) reads both formats.
	fresh, err := newKeyring(st, master, "main-key-v1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"session_001": format1Docs[0].doc, "session_002": `{"n":3}`}
	for key, wantDoc := range want {
		b, _ := st.Get(ctx, entityObjectKey("chatdb", key))
		got, _, err := fresh.open(ctx, "chatdb", key, b)
		if err != nil || string(got) != wantDoc {
			t.Errorf("fresh keyring open(chatdb, %q) = %s, %v, want %s", key, got, err, wantDoc)
		}
	}
}

// TestKeyringDataKeys: a new database's first write creates one data key,
// wrapped (its bytes appear nowhere in the object), not legacy; entities
// are format 2 under it; another keyring with the same master key opens
// them, one with another master key (same ID) does not, and neither does
// a data-key object copied to another database.
func TestKeyringDataKeys(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	master := bytes.Repeat([]byte{7}, 32)
	k, err := newKeyring(st, master, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.prepare(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	release := k.hold()
	sealed, h, err := k.seal(ctx, "db", "e1", []byte(`{"a":1}`))
	release()
	if err != nil {
		t.Fatal(err)
	}
	doc, _, err := readDataKeys(ctx, st, "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 1 || doc.Legacy || doc.Active != doc.Keys[0].ID || doc.Keys[0].MasterKeyID != "k1" {
		t.Fatalf("data keys = %+v, want one active non-legacy key under k1", doc)
	}
	if h.Format != formatDataKey || h.KeyID != doc.Active {
		t.Errorf("sealed header = format %d key %q, want 2 and %q", h.Format, h.KeyID, doc.Active)
	}
	dk, err := k.master.unwrap("db", doc.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := st.Get(ctx, dataKeysObjectKey("db"))
	if bytes.Contains(raw, dk) || strings.Contains(string(raw), hex.EncodeToString(dk)) {
		t.Errorf("data-key object holds the data key in the clear")
	}
	if err := st.Put(ctx, entityObjectKey("db", "e1"), sealed); err != nil {
		t.Fatal(err)
	}
	other, _ := newKeyring(st, master, "k1")
	if got, _, err := other.open(ctx, "db", "e1", sealed); err != nil || string(got) != `{"a":1}` {
		t.Errorf("second keyring open = %s, %v, want {\"a\":1}", got, err)
	}
	wrongKey := bytes.Repeat([]byte{8}, 32)
	wrong, _ := newKeyring(st, wrongKey, "k1")
	if got, _, err := wrong.open(ctx, "db", "e1", sealed); !errors.Is(err, errCorrupt) || got != nil {
		t.Errorf("open under another master key = %s, %v, want errCorrupt and nothing", got, err)
	}
	// The same object under db2: the wrap binds the database.
	if err := st.Put(ctx, dataKeysObjectKey("db2"), raw); err != nil {
		t.Fatal(err)
	}
	if _, err := other.dataSealer(ctx, "db2", doc.Active); !errors.Is(err, errCorrupt) {
		t.Errorf("data key copied to db2: dataSealer = %v, want errCorrupt", err)
	}
}

// TestKeyringPreviousMasterKey: with the previous master key added, data
// keys wrapped and format-1 entities sealed under it open; once it is
// dropped they do not.
func TestKeyringPreviousMasterKey(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old, _ := newKeyring(st, oldKey, "v1")
	if err := old.prepare(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	release := old.hold()
	sealed2, _, err := old.seal(ctx, "db", "e", []byte(`2`))
	release()
	if err != nil {
		t.Fatal(err)
	}
	sealed1, err := old.master.legacy.seal("db", "e", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := newKeyring(st, newKey, "v2")
	if err := k.addPrevious(oldKey, "v1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sealed []byte
		want   string
	}{{sealed1, "1"}, {sealed2, "2"}} {
		if got, _, err := k.open(ctx, "db", "e", tc.sealed); err != nil || string(got) != tc.want {
			t.Errorf("open with previous key = %s, %v, want %s", got, err, tc.want)
		}
	}
	k.dropPrevious()
	k2, _ := newKeyring(st, newKey, "v2") // no cached data key
	for _, sealed := range [][]byte{sealed1, sealed2} {
		if _, _, err := k2.open(ctx, "db", "e", sealed); !errors.Is(err, errCorrupt) {
			t.Errorf("open without the previous key = %v, want errCorrupt", err)
		}
	}
	if _, _, err := k.open(ctx, "db", "e", sealed1); !errors.Is(err, errCorrupt) {
		t.Errorf("format-1 open after dropPrevious = %v, want errCorrupt", err)
	}
}

// TestApplyEpochSwitchesDataKey: a keyring keeps sealing with the data key
// it read until it applies a newer epoch; then it reads the data-key
// object again and seals with the key now active there. An older epoch
// changes nothing.
func TestApplyEpochSwitchesDataKey(t *testing.T) {
	st := newTestFSStore(t)
	ctx := t.Context()
	master := bytes.Repeat([]byte{3}, 32)
	k, _ := newKeyring(st, master, "k")
	if err := k.prepare(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	sealID := func() string {
		t.Helper()
		defer k.hold()()
		_, h, err := k.seal(ctx, "db", "e", []byte(`1`))
		if err != nil {
			t.Fatal(err)
		}
		return h.KeyID
	}
	first := sealID()
	next, err := k.newDataKey("db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.updateDataKeys(ctx, "db", func(d *dataKeysDoc, _ bool) (bool, error) {
		d.Keys, d.Active = append(d.Keys, next), next.ID
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := sealID(); got != first {
		t.Errorf("before applyEpoch: sealed under %q, want the cached %q", got, first)
	}
	k.applyEpoch(1)
	if got := sealID(); got != next.ID {
		t.Errorf("after applyEpoch(1): sealed under %q, want %q", got, next.ID)
	}
	if e := k.keysEpoch(); e != 1 {
		t.Errorf("keysEpoch = %d, want 1", e)
	}
}

// TestResealKeepsVersion: re-encrypting an entity under another key keeps
// its ETag and write time and opens under the new key only.
func TestResealKeepsVersion(t *testing.T) {
	a, b := randSealer(t, "a"), randSealer(t, "b")
	sealed, err := a.seal("db", "k", []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	doc, h, err := a.open("db", "k", sealed)
	if err != nil {
		t.Fatal(err)
	}
	again := b.reseal(h, "db", "k", doc)
	got, h2, err := b.open("db", "k", again)
	if err != nil || string(got) != `{"x":1}` {
		t.Fatalf("open resealed = %s, %v", got, err)
	}
	if h2.etag() != h.etag() || !h2.Written.Equal(h.Written) || h2.KeyID != "b" {
		t.Errorf("resealed header = %+v, want etag %s, written %v, key b", h2, h.etag(), h.Written)
	}
	if _, _, err := a.open("db", "k", again); err == nil {
		t.Errorf("resealed entity opens under the old key")
	}
}
