package main

// The backup archive that -role=backup writes and -role=restore reads: a
// tar file (readable by any tar tool) holding every storage object as
// stored, entities still encrypted. In order:
//
//	objects/<logical key>  one entry per object, its bytes as stored
//	manifest.json          archiveManifest: each object's key, size and SHA-256
//	manifest.hmac          the hex HMAC-SHA256 of manifest.json under the
//	                       archive key, and a newline
//
// The archive key is derived from the master key (HKDF-SHA256, its own
// label), so only a holder of the master key writes a manifest restore
// accepts. Each object's bytes are covered by its SHA-256 in the manifest,
// the manifest by its HMAC, and each tar header by tar's own header
// checksum, so a changed byte is either refused (naming the object when it
// lies in one) or changes nothing that restore writes (tar padding).
// Reading refuses, before allocating anything for it, an entry that is not
// a regular file, a sparse one, one larger than its bound, and an object
// whose key is not a storage key or repeats one.

import (
	"archive/tar"
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Archive entry names and the manifest format.
const (
	archiveObjectsDir  = "objects/"
	archiveManifest    = "manifest.json"
	archiveManifestMAC = "manifest.hmac"
	// archiveFormat 2 authenticates the manifest; format 1 (manifest.sha256,
	// a plain hash anyone can recompute) is refused.
	archiveFormat = 2
)

// Bounds of what reading an archive allocates, checked against each tar
// header before its entry is read.
const (
	// maxArchiveObject is the largest object an archive holds: what the
	// storage tools read from a directory (defaultMaxObject).
	maxArchiveObject = defaultMaxObject
	// maxManifestPerObject bounds the manifest by the objects read before
	// it: a key of at most a few hundred bytes, a size and a SHA-256 each.
	maxManifestPerObject = 4096
	// maxManifestMAC is the most bytes of manifest.hmac.
	maxManifestMAC = 128
)

// archiveKeyInfo is the HKDF info of the archive key: a key of its own,
// derived from the master key, so that a manifest's HMAC says nothing about
// the keys that encrypt entities or sign sessions.
const archiveKeyInfo = "deltadatabase backup archive v1"

// deriveArchiveKey derives the HMAC-SHA256 key of archive manifests from
// the master key.
func deriveArchiveKey(master []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, nil, archiveKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive archive key: %w", err)
	}
	return k, nil
}

// manifestMAC is the hex HMAC-SHA256 of the manifest document under key.
func manifestMAC(key, doc []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(doc)
	return hex.EncodeToString(m.Sum(nil))
}

// manifest lists what an archive holds. It is written after the objects,
// since their checksums are known only once they are read.
type manifest struct {
	// Format is archiveFormat.
	Format int `json:"format"`
	// CreatedAt is when the backup started.
	CreatedAt time.Time `json:"created_at"`
	// Source names the storage backed up (a directory or s3://host/bucket).
	Source string `json:"source"`
	// KeyID is the -key-id of the master key the archive key was derived
	// from, to name it when the HMAC does not match.
	KeyID string `json:"key_id"`
	// Objects are in the order of the archive's entries.
	Objects []manifestObject `json:"objects"`
}

// manifestObject is one object of an archive.
type manifestObject struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// archiveWriter writes an archive to a stream: add each object, then
// close. It is not safe for concurrent use.
type archiveWriter struct {
	tw  *tar.Writer
	key []byte // the archive key (deriveArchiveKey)
	man manifest
}

// newArchiveWriter starts an archive on w for a backup of source begun
// at created, authenticated under the archive key of the master key named
// keyID; created is also every entry's modification time.
func newArchiveWriter(w io.Writer, source string, created time.Time, key []byte, keyID string) *archiveWriter {
	return &archiveWriter{tw: tar.NewWriter(w), key: key,
		man: manifest{Format: archiveFormat, CreatedAt: created.UTC(), Source: source, KeyID: keyID, Objects: []manifestObject{}}}
}

// add appends the object key with its stored bytes.
func (a *archiveWriter) add(key string, data []byte) error {
	if len(data) > maxArchiveObject {
		return fmt.Errorf("archive object %s: %d bytes exceed the archive's limit of %d", key, len(data), maxArchiveObject)
	}
	if err := a.entry(archiveObjectsDir+key, data); err != nil {
		return fmt.Errorf("archive object %s: %w", key, err)
	}
	sum := sha256.Sum256(data)
	a.man.Objects = append(a.man.Objects, manifestObject{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}

// close writes the manifest and its HMAC and ends the tar stream. It does
// not close the underlying writer.
func (a *archiveWriter) close() error {
	doc, err := json.MarshalIndent(a.man, "", " ")
	if err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	doc = append(doc, '\n')
	if err := a.entry(archiveManifest, doc); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	if err := a.entry(archiveManifestMAC, []byte(manifestMAC(a.key, doc)+"\n")); err != nil {
		return fmt.Errorf("archive manifest HMAC: %w", err)
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("archive end: %w", err)
	}
	return nil
}

// entry writes one regular file entry.
func (a *archiveWriter) entry(name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o600,
		ModTime: a.man.CreatedAt.Truncate(time.Second)}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

// readArchive reads the archive on r from start to end, calling object for
// each object with its bytes once they match the manifest's SHA-256 (the
// manifest comes last, so with want nil the bytes are not yet checked:
// readArchive checks them at the end). want, if not nil, is the manifest
// of an earlier pass over the same archive. It returns the manifest once
// every object, the manifest and its HMAC under key agree; any
// disagreement, and any entry over its bound (checkEntry), is an error
// wrapping errCorrupt that names the object concerned.
func readArchive(r io.Reader, key []byte, want *manifest, object func(key string, data []byte) error) (manifest, error) {
	tr := tar.NewReader(r)
	var got []manifestObject
	seen := map[string]bool{}
	var doc, mac []byte
	last := "the start of the archive"
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return manifest{}, fmt.Errorf("archive damaged after %s: %v: %w", last, err, errCorrupt)
		}
		if err := checkEntry(hdr, len(got)); err != nil {
			return manifest{}, err
		}
		key, isObject := strings.CutPrefix(hdr.Name, archiveObjectsDir)
		if isObject && doc == nil {
			if err := checkObjectKey(key, seen); err != nil {
				return manifest{}, err
			}
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return manifest{}, fmt.Errorf("archive damaged in entry %q: %v: %w", hdr.Name, err, errCorrupt)
		}
		switch {
		case isObject && doc == nil:
			last = "object " + key
			sum := sha256.Sum256(data)
			got = append(got, manifestObject{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
			if want != nil {
				if err := matchObject(want.Objects, len(got)-1, got[len(got)-1]); err != nil {
					return manifest{}, err
				}
			}
			if err := object(key, data); err != nil {
				return manifest{}, err
			}
		case hdr.Name == archiveManifest && doc == nil:
			doc, last = data, "the manifest"
		case hdr.Name == archiveManifestMAC && doc != nil && mac == nil:
			mac, last = data, "the manifest HMAC"
		default:
			return manifest{}, fmt.Errorf("archive entry %q is out of place after %s: %w", hdr.Name, last, errCorrupt)
		}
	}
	man, err := parseManifest(doc, mac, key)
	if err != nil {
		return manifest{}, err
	}
	if want != nil && !sameManifest(*want, man) {
		return manifest{}, fmt.Errorf("archive changed since it was checked: the manifest differs: %w", errCorrupt)
	}
	for i := range max(len(got), len(man.Objects)) {
		if i >= len(got) {
			return manifest{}, fmt.Errorf("object %s is in the manifest but not in the archive: %w", man.Objects[i].Key, errCorrupt)
		}
		if err := matchObject(man.Objects, i, got[i]); err != nil {
			return manifest{}, err
		}
	}
	return man, nil
}

// checkEntry refuses, from its header alone, an entry that is not a
// regular file (a link, a directory, a device), a sparse one (whose
// declared size a few bytes of sparse map can blow up), or one larger than
// its bound: maxArchiveObject for an object, maxManifestPerObject per
// object read before it for the manifest, maxManifestMAC for its HMAC.
func checkEntry(hdr *tar.Header, objects int) error {
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("archive entry %q is not a regular file: %w", hdr.Name, errCorrupt)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("archive entry %q is a sparse file, which no archive of ours holds: %w", hdr.Name, errCorrupt)
		}
	}
	limit := int64(maxArchiveObject)
	switch hdr.Name {
	case archiveManifest:
		limit = int64(maxManifestPerObject) * int64(objects+1)
	case archiveManifestMAC:
		limit = maxManifestMAC
	}
	if hdr.Size < 0 || hdr.Size > limit {
		return fmt.Errorf("archive entry %q declares %d bytes, over its limit of %d: %w", hdr.Name, hdr.Size, limit, errCorrupt)
	}
	return nil
}

// checkObjectKey refuses an object key that is not one a store could hold
// (physicalComponents: no empty, "." or ".." component, no reserved name)
// or that an earlier entry already had.
func checkObjectKey(key string, seen map[string]bool) error {
	if _, err := physicalComponents(key); err != nil {
		return fmt.Errorf("archive entry %q: not a storage key: %v: %w", archiveObjectsDir+key, err, errCorrupt)
	}
	if seen[key] {
		return fmt.Errorf("archive holds object %s twice: %w", key, errCorrupt)
	}
	seen[key] = true
	return nil
}

// matchObject compares the object read as the i-th entry with the i-th
// object of the manifest.
func matchObject(want []manifestObject, i int, got manifestObject) error {
	switch {
	case i >= len(want):
		return fmt.Errorf("object %s is in the archive but not in the manifest: %w", got.Key, errCorrupt)
	case want[i].Key != got.Key:
		return fmt.Errorf("object %s is in the archive where the manifest has object %s: %w", got.Key, want[i].Key, errCorrupt)
	case want[i].Size != got.Size:
		return fmt.Errorf("object %s is %d bytes, but the manifest says %d: %w", got.Key, got.Size, want[i].Size, errCorrupt)
	case want[i].SHA256 != got.SHA256:
		return fmt.Errorf("object %s does not match its checksum in the manifest: %w", got.Key, errCorrupt)
	}
	return nil
}

// parseManifest checks the manifest against its HMAC under key and
// decodes it.
func parseManifest(doc, mac, key []byte) (manifest, error) {
	if doc == nil || mac == nil {
		return manifest{}, fmt.Errorf("archive has no %s and %s at its end (cut short, or written before archives were authenticated): %w",
			archiveManifest, archiveManifestMAC, errCorrupt)
	}
	if !hmac.Equal(mac, []byte(manifestMAC(key, doc)+"\n")) {
		var named struct {
			KeyID string `json:"key_id"`
		}
		_ = json.Unmarshal(doc, &named)
		return manifest{}, fmt.Errorf("the manifest does not match its HMAC: the archive was changed since it was written, "+
			"or it was written under another master key (it names key id %q): %w", named.KeyID, errCorrupt)
	}
	var man manifest
	if err := json.Unmarshal(doc, &man); err != nil {
		return manifest{}, fmt.Errorf("decode manifest: %v: %w", err, errCorrupt)
	}
	if man.Format != archiveFormat {
		return manifest{}, fmt.Errorf("archive format %d is not supported by this build (want %d): %w", man.Format, archiveFormat, errCorrupt)
	}
	return man, nil
}

// sameManifest reports whether a and b describe the same archive.
func sameManifest(a, b manifest) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
