package main

// The storage layout: every object key the product writes is formed here,
// named after what it holds, and nowhere else. Both backends hold the same
// logical keys (fsstore.go spreads entity objects over hash directories,
// s3store.go uses the keys as object names); every name in a key is
// validated before the key is formed (names.go). ARCHITECTURE.md's
// "Storage layout" shows the whole tree.
//
//	files/<db>/<hex of entity key>  an entity's envelope (crypto.go)
//	templates/<schema id>.json      a schema document, plaintext (schema.go)
//	_auth/keys.json                 the API keys, hashed (apikeys.go)
//	_auth/admin.json                the hash of a generated admin key
//	                                (masterkey.go)
//	_auth/revoked/<exp>-<id>        a logged-out session token (sessions.go)
//	_meta/keycheck.json             the key check and storage format
//	                                (keycheck.go)
//	_meta/rotation.json             an unfinished master-key rotation
//	                                (rotation.go)
//	_meta/datakeys/<db>.json        a database's data keys, wrapped by the
//	                                master key (keyring.go)
//	_meta/databases/<db>.json       a database's schema binding (catalog.go)
//	_meta/jobs/<job id>.json        a key job's record (jobs.go)
//	_meta/indexes/<db>.json         a database's index definitions: names
//	                                and field paths, never a value (index.go)
//	_meta/changes-seq.json          a number above every seq the change
//	                                feed gave (feed.go)
//	_versions/<db>/<sha256 of key>/<n>  version n of an entity, sealed
//	                                as entities are (versions.go)
//	_versions/<db>/<sha256 of key>/index.json  the metadata of an entity's
//	                                versions: numbers, ETags, times, names
//	_wal/<worker id>/<gen>-<seq>.wal a worker's write-ahead log, filesystem
//	                                backend only (wal.go, walwriter.go)
//	_changes/<first seq>.log        the change feed's log, filesystem
//	                                backend only (changelog.go)

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Logical object key prefixes, the same on every backend (ARCHITECTURE.md
// "Storage layout").
const (
	entitiesPrefix  = "files/"
	templatesPrefix = "templates/"
	metaPrefix      = "_meta/"
	authPrefix      = "_auth/"
)

// entityObjectKey is the logical object key of an entity. The entity key is
// hex-encoded: hex keeps byte order (so listings come back in key order on
// every backend), a prefix of a key encodes to a prefix of its encoding,
// and no byte of a user's key reaches a path unescaped.
func entityObjectKey(db, key string) string {
	return entitiesPrefix + db + "/" + hex.EncodeToString([]byte(key))
}

// entityKeyPrefix is the logical prefix of every entity of db whose key
// starts with keyPrefix.
func entityKeyPrefix(db, keyPrefix string) string {
	return entitiesPrefix + db + "/" + hex.EncodeToString([]byte(keyPrefix))
}

// entityObjectParts splits the object key of an entity into its database
// and the encoded name of its entity key (see decodeEntityObjectName).
func entityObjectParts(obj string) (db, name string) {
	db, name, _ = strings.Cut(strings.TrimPrefix(obj, entitiesPrefix), "/")
	return db, name
}

// entityKeyOf returns the entity key of an entity's object key.
func entityKeyOf(obj string) (string, error) {
	_, name := entityObjectParts(obj)
	return decodeEntityObjectName(name)
}

// decodeEntityObjectName turns the last component of an entity's object key
// back into the entity key.
func decodeEntityObjectName(name string) (string, error) {
	b, err := hex.DecodeString(name)
	if err != nil {
		return "", fmt.Errorf("decode entity name %q: %w", name, errCorrupt)
	}
	return string(b), nil
}

// schemaObjectKey is the logical object key of a schema template.
func schemaObjectKey(id string) string {
	return templatesPrefix + id + ".json"
}

// bindingsPrefix holds one schema binding per bound database.
const bindingsPrefix = metaPrefix + "databases/"

// bindingObjectKey is the logical key of db's schema binding.
func bindingObjectKey(db string) string {
	return bindingsPrefix + db + ".json"
}

// jsonObjectName returns the name in key, an object key prefix +
// name + ".json" (a schema, a binding, data keys, a job record); false
// when key is not of that form. The caller validates the name.
func jsonObjectName(prefix, key string) (string, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(name, ".json")
}

// authKeysObject is the logical object of the key store when -key-store is
// not given.
const authKeysObject = authPrefix + "keys.json"

// adminKeyObject holds the SHA-256 of a generated admin key, so that the
// key keeps working after a restart without being stored itself.
const adminKeyObject = authPrefix + "admin.json"

// revokedPrefix holds one object per logged-out session token that has
// not expired yet: revokedPrefix + "<expiry, unix ns, 20 digits>-<token
// ID in hex>". The expiry in the name lets a listing prune without
// reading any object.
const revokedPrefix = authPrefix + "revoked/"

// revocationObject is the object that records the logout of the session
// token id, which expires at expires.
func revocationObject(expires time.Time, id [16]byte) string {
	return fmt.Sprintf("%s%020d-%s", revokedPrefix, expires.UnixNano(), hex.EncodeToString(id[:]))
}

// parseRevocation parses the key of a revocation object; false when it is
// not one.
func parseRevocation(key string) (expires time.Time, id [16]byte, ok bool) {
	name, found := strings.CutPrefix(key, revokedPrefix)
	if !found {
		return time.Time{}, id, false
	}
	ns, idHex, found := strings.Cut(name, "-")
	n, err := strconv.ParseInt(ns, 10, 64)
	raw, herr := hex.DecodeString(idHex)
	if !found || err != nil || herr != nil || len(raw) != len(id) {
		return time.Time{}, id, false
	}
	copy(id[:], raw)
	return time.Unix(0, n), id, true
}

// keyCheckObject holds the key check value and storage format (keycheck.go).
const keyCheckObject = metaPrefix + "keycheck.json"

// rotationObject exists while a master-key rotation is unfinished.
const rotationObject = metaPrefix + "rotation.json"

// dataKeysPrefix holds one data-key object per database.
const dataKeysPrefix = metaPrefix + "datakeys/"

// dataKeysObjectKey is the logical key of db's data keys.
func dataKeysObjectKey(db string) string { return dataKeysPrefix + db + ".json" }

// jobsPrefix holds one record per key job.
const jobsPrefix = metaPrefix + "jobs/"

// jobObjectKey is the logical key of the record of key job id.
func jobObjectKey(id string) string { return jobsPrefix + id + ".json" }

// changesMarkObject holds the change feed's seq mark: a number above
// every seq its log gave (changelog.go).
const changesMarkObject = metaPrefix + "changes-seq.json"

// indexesObjectKey is the object holding db's index definitions.
func indexesObjectKey(db string) string { return metaPrefix + "indexes/" + db + ".json" }

// versionsPrefix holds the versions of every database.
const versionsPrefix = "_versions/"

// versionsDBPrefix holds the versions of db's entities.
func versionsDBPrefix(db string) string { return versionsPrefix + db + "/" }

// versionsDir holds the versions of entity key of db: named by the
// SHA-256 of the key, so that any key fits one path component on every
// backend (the index names the key itself).
func versionsDir(db, key string) string {
	sum := sha256.Sum256([]byte(key))
	return versionsDBPrefix(db) + hex.EncodeToString(sum[:]) + "/"
}

// versionsIndexName is the last component of an entity's version index.
const versionsIndexName = "index.json"

// versionsIndexKey is the object holding the metadata of entity key's
// versions.
func versionsIndexKey(db, key string) string { return versionsDir(db, key) + versionsIndexName }

// versionObjectKey is the object holding version n of entity key, its
// envelope. Ten digits keep the versions of one entity in number order.
func versionObjectKey(db, key string, n int64) string {
	return fmt.Sprintf("%s%010d", versionsDir(db, key), n)
}

// parseVersionObject splits a key under versionsPrefix into its database,
// directory and version number; ok false for an index or anything else.
func parseVersionObject(obj string) (db, dir string, n int64, ok bool) {
	rest, found := strings.CutPrefix(obj, versionsPrefix)
	parts := strings.Split(rest, "/")
	if !found || len(parts) != 3 || len(parts[2]) != 10 {
		return "", "", 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || n < 1 {
		return "", "", 0, false
	}
	return parts[0], versionsDBPrefix(parts[0]) + parts[1] + "/", n, true
}
