package main

// The backup archive that -role=backup writes and -role=restore reads: a
// tar file (readable by any tar tool) holding every storage object as
// stored, entities still encrypted. In order:
//
//	objects/<logical key>  one entry per object, its bytes as stored
//	manifest.json          archiveManifest: each object's key, size and SHA-256
//	manifest.sha256        the hex SHA-256 of manifest.json and a newline
//
// Each object's bytes are covered by its SHA-256 in the manifest, the
// manifest by manifest.sha256, and each tar header by tar's own header
// checksum, so a changed byte is either refused (naming the object when it
// lies in one) or changes nothing that restore writes (tar padding).

import (
	"archive/tar"
	"bytes"
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
	archiveManifestSum = "manifest.sha256"
	archiveFormat      = 1
)

// manifest lists what an archive holds. It is written after the objects,
// since their checksums are known only once they are read.
type manifest struct {
	// Format is archiveFormat.
	Format int `json:"format"`
	// CreatedAt is when the backup started.
	CreatedAt time.Time `json:"created_at"`
	// Source names the storage backed up (a directory or s3://host/bucket).
	Source string `json:"source"`
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
	man manifest
}

// newArchiveWriter starts an archive on w for a backup of source begun
// at created; created is also every entry's modification time.
func newArchiveWriter(w io.Writer, source string, created time.Time) *archiveWriter {
	return &archiveWriter{tw: tar.NewWriter(w),
		man: manifest{Format: archiveFormat, CreatedAt: created.UTC(), Source: source, Objects: []manifestObject{}}}
}

// add appends the object key with its stored bytes.
func (a *archiveWriter) add(key string, data []byte) error {
	if err := a.entry(archiveObjectsDir+key, data); err != nil {
		return fmt.Errorf("archive object %s: %w", key, err)
	}
	sum := sha256.Sum256(data)
	a.man.Objects = append(a.man.Objects, manifestObject{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}

// close writes the manifest and its checksum and ends the tar stream. It
// does not close the underlying writer.
func (a *archiveWriter) close() error {
	doc, err := json.MarshalIndent(a.man, "", " ")
	if err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	doc = append(doc, '\n')
	sum := sha256.Sum256(doc)
	if err := a.entry(archiveManifest, doc); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	if err := a.entry(archiveManifestSum, []byte(hex.EncodeToString(sum[:])+"\n")); err != nil {
		return fmt.Errorf("archive manifest checksum: %w", err)
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
// every object, the manifest and its checksum agree; any disagreement is
// an error wrapping errCorrupt that names the object concerned.
func readArchive(r io.Reader, want *manifest, object func(key string, data []byte) error) (manifest, error) {
	tr := tar.NewReader(r)
	var got []manifestObject
	var doc, docSum []byte
	last := "the start of the archive"
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return manifest{}, fmt.Errorf("archive damaged after %s: %v: %w", last, err, errCorrupt)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return manifest{}, fmt.Errorf("archive damaged in entry %q: %v: %w", hdr.Name, err, errCorrupt)
		}
		key, isObject := strings.CutPrefix(hdr.Name, archiveObjectsDir)
		switch {
		case hdr.Typeflag != tar.TypeReg:
			return manifest{}, fmt.Errorf("archive entry %q is not a regular file: %w", hdr.Name, errCorrupt)
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
		case hdr.Name == archiveManifestSum && doc != nil && docSum == nil:
			docSum, last = data, "the manifest checksum"
		default:
			return manifest{}, fmt.Errorf("archive entry %q is out of place after %s: %w", hdr.Name, last, errCorrupt)
		}
	}
	man, err := parseManifest(doc, docSum)
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

// parseManifest checks the manifest against its checksum and decodes it.
func parseManifest(doc, docSum []byte) (manifest, error) {
	if doc == nil || docSum == nil {
		return manifest{}, fmt.Errorf("archive has no %s and %s at its end (cut short?): %w", archiveManifest, archiveManifestSum, errCorrupt)
	}
	sum := sha256.Sum256(doc)
	if string(docSum) != hex.EncodeToString(sum[:])+"\n" {
		return manifest{}, fmt.Errorf("the manifest does not match its checksum: %w", errCorrupt)
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
