package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// store is the storage backend: a flat namespace of objects addressed by
// slash-separated logical keys such as "files/chatdb/<encoded key>",
// "templates/chat.v1.json", "_auth/keys.json" or "_meta/keycheck".
// Logical keys are formed only from validated names (see names.go), in
// one place: layout.go.
//
// Implementations are safe for concurrent use.
type store interface {
	// Get returns the object's bytes, or an error wrapping errNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put replaces the object atomically; it returns only once the new
	// bytes are durable.
	Put(ctx context.Context, key string, data []byte) error
	// GetRev is Get that also returns the object's revision: an opaque,
	// non-empty string that changes whenever the object is replaced.
	GetRev(ctx context.Context, key string) (data []byte, rev string, err error)
	// PutIf is Put on condition that the object's revision is still rev
	// (rev "": that the object does not exist); otherwise it writes nothing
	// and returns an error wrapping errPrecondition. It returns the new
	// revision. Where Lock excludes other processes (fsStore) the check and
	// the write are atomic only while the caller holds Lock(key); s3Store
	// checks with a conditional PUT, atomic by itself.
	PutIf(ctx context.Context, key string, data []byte, rev string) (newRev string, err error)
	// Delete removes the object durably, or returns an error wrapping
	// errNotFound if it did not exist.
	Delete(ctx context.Context, key string) error
	// List returns up to limit keys (limit <= 0: all) that start with
	// prefix and sort strictly after startAfter (empty: from the first),
	// in byte order.
	List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error)
	// ListDirs returns, in byte order, each name n such that at least one
	// object's key starts with prefix+n+"/": the "directories" directly
	// under prefix, as S3's ListObjectsV2 with delimiter "/" answers them
	// (common prefixes). prefix is "" or ends in "/". Its cost grows with
	// the number of such names, not with the objects under them: this is
	// how the databases are listed.
	ListDirs(ctx context.Context, prefix string) ([]string, error)
	// Lock takes the cross-process part of key's lock for
	// read-modify-write: fsStore's flock excludes every other holder, in
	// this process or another; s3Store, which has no lock, returns at once.
	// Callers take key's in-process lock (keyLocks, locks.go) first, see
	// lockObject. The returned function releases it. A caller holds at
	// most one lock at a time: distinct keys may share a lock (fsStore), so
	// nesting can deadlock.
	Lock(ctx context.Context, key string) (unlock func(), err error)
	// Close releases the backend's resources.
	Close() error
}

// Long key components are stored in segments by both backends: a POSIX
// filesystem, and SeaweedFS like it, refuses a name component over 255
// bytes, and an entity key of 256 bytes is 512 hex characters. So a
// component longer than segmentLen is split into pieces of segmentLen,
// each but the last followed by segmentMark and '/' ("aaaa+/bbbb"). Names
// never contain '+', so the split is reversible; it keeps byte order and
// prefixes, so listings by prefix and start-after work unchanged.
const (
	segmentLen  = 200
	segmentMark = "+"
)

// segments splits the name component c into the path components that
// store it: pieces of segmentLen bytes, each but the last ending in
// segmentMark. A component of at most segmentLen bytes stays whole.
func segments(c string) []string {
	var segs []string
	for len(c) > segmentLen {
		segs, c = append(segs, c[:segmentLen]+segmentMark), c[segmentLen:]
	}
	return append(segs, c)
}

// getJSON reads the JSON object at key into v: the one way every record
// of ours is read. found is false, and v untouched, when there is no such
// object; bytes that do not decode into v are errCorrupt. what names the
// record in errors ("rotation record").
func getJSON(ctx context.Context, st store, key, what string, v any) (found bool, err error) {
	raw, err := st.Get(ctx, key)
	return decodeObject(raw, err, key, what, v)
}

// getJSONRev is getJSON that also returns the object's revision
// (store.GetRev), for a read-modify-write with PutIf.
func getJSONRev(ctx context.Context, st store, key, what string, v any) (rev string, found bool, err error) {
	raw, rev, err := st.GetRev(ctx, key)
	found, err = decodeObject(raw, err, key, what, v)
	return rev, found, err
}

// decodeObject is the end of getJSON: err is the store's error of reading
// raw from key.
func decodeObject(raw []byte, err error, key, what string, v any) (bool, error) {
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", what, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("read %s %s: %v: %w", what, key, err, errCorrupt)
	}
	return true, nil
}

// putJSON stores v as JSON, one line, at key.
func putJSON(ctx context.Context, st store, key, what string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	if err := st.Put(ctx, key, append(raw, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}
