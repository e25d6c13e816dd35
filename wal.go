package main

// The write-ahead log's format: records, frames and segment files, and
// reading a log back (scan, torn tail, damage). See ARCHITECTURE.md,
// "The write-ahead log", for why the log exists and who writes and reads
// it; walwriter.go appends to it, walreplay.go applies it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// walType is the type of a log record.
type walType uint8

const (
	// walStart opens every segment: the log's identity.
	walStart walType = 1
	// walPut stores an entity's sealed envelope.
	walPut walType = 2
	// walDelete removes an entity (a tombstone).
	walDelete walType = 3
	// walVersions changes only an entity's versions (a destroy): its
	// Objects, no entity file.
	walVersions walType = 4
)

// walRecord is one acknowledged change: what a change feed and entity
// versions need (log identity and LSN, time, principal, database, key,
// ETag) and what replay needs (the sealed envelope). Documents appear
// only sealed, never in plaintext.
type walRecord struct {
	Type walType
	// LSN numbers the records of one log generation from 1, in the order
	// they were appended; (worker ID, generation, LSN) names a record.
	LSN uint64
	// Batch is the LSN of the first record of the group commit this
	// record was written with: replay tells a torn tail from damage by it.
	Batch uint64
	// Time is when the record was appended, Unix nanoseconds.
	Time int64
	DB   string
	Key  string
	// Principal is the name of the client that made the change.
	Principal string
	// ETag is the entity's version after a put, the deleted version's
	// (or "") for a delete.
	ETag string
	// Sealed is the entity's envelope; nil for a delete.
	Sealed []byte
	// Objects are what the change writes beside the entity's file, in
	// order: its versions and their index when the database keeps
	// versions (versions.go), so that a write with versions on is one
	// record and one group commit. Each lies under the entity's versions
	// directory (decodeWALRecord checks it).
	Objects []walObject
	// gen, not logged, is the generation of the log the write began
	// under (worker.check); append refuses the record in another. 0:
	// any.
	gen uint64
}

// walObject is one object a record writes beside its entity's file: a
// version (sealed), the versions' index (metadata, JSON), or the removal
// of a pruned or destroyed version (Data nil).
type walObject struct {
	Key  string
	Data []byte
}

// walStartRecord is the payload of a segment's first record.
type walStartRecord struct {
	WorkerID string
	Gen      uint64
	Seq      uint32
	// FirstLSN is the LSN of the segment's first put or delete.
	FirstLSN uint64
}

// Frame layout: every record is one frame, 8-byte aligned so that a
// scan for the next good frame after damage only looks at aligned
// offsets.
const (
	walFrameHeader = 8 // u32 payload length, u32 CRC32C of the payload
	walAlign       = 8
	walVersion     = 1
	// walVersionObjects is the payload version of a record that carries
	// Objects: one without any is written as version 1, as before
	// records carried objects, so a log of a database without versions
	// still reads under an older binary. A binary from before it stops on
	// a version 2 record followed by a later group, but drops the last
	// ones of a log as a torn tail (ARCHITECTURE.md "Upgrading a
	// cluster"): a downgrade checkpoints first (a clean stop does). This
	// one stops on any record of a later version (walNewer).
	walVersionObjects = 2
	// walMaxPayload bounds a frame: larger than the envelope of a
	// document of up to 64 MiB, small enough that
	// a damaged length field cannot make a reader allocate without limit.
	// A larger record is refused with 413 (walLog.append).
	walMaxPayload = 80 << 20
)

// walCRC is the CRC32C (Castagnoli) table, hardware-accelerated on
// amd64 and arm64.
var walCRC = crc32.MakeTable(crc32.Castagnoli)

// errWALDamaged marks a log record that fails its checksum or does not
// decode, where a torn write cannot explain it.
var errWALDamaged = fmt.Errorf("write-ahead log damaged: %w", errCorrupt)

// appendFrame appends rec framed (length, CRC32C, payload, padding) to b.
func appendFrame(b []byte, payload []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, walFrameHeader)...)
	return closeFrame(append(b, payload...), start)
}

// appendRecordFrame appends rec framed as appendFrame frames a payload,
// encoding the payload in place: a group's buffer is the one copy of its
// records' bytes, grown at most once per record.
func appendRecordFrame(b []byte, rec *walRecord) []byte {
	start := len(b)
	b = slices.Grow(b, int(framedSize(rec.payloadSize())))
	b = append(b, make([]byte, walFrameHeader)...)
	return closeFrame(rec.encode(b), start)
}

// closeFrame fills in the header of the frame that starts at b[start]
// (its payload runs to the end of b) and pads b to walAlign.
func closeFrame(b []byte, start int) []byte {
	payload := b[start+walFrameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, walCRC))
	for len(b)%walAlign != 0 {
		b = append(b, 0)
	}
	return b
}

// framedSize is the size of a frame of a payload of n bytes.
func framedSize(n int) int64 {
	return int64((walFrameHeader + n + walAlign - 1) / walAlign * walAlign)
}

// payloadSize is the length of rec's payload (encode).
func (rec *walRecord) payloadSize() int {
	n := 4 + 3*8 + 4*2 + len(rec.DB) + len(rec.Key) + len(rec.Principal) + len(rec.ETag) + 4 + len(rec.Sealed)
	if len(rec.Objects) > 0 {
		n += 2
		for _, o := range rec.Objects {
			n += 1 + 2 + len(o.Key) + 4 + len(o.Data)
		}
	}
	return n
}

// encode appends rec's payload to b.
func (rec *walRecord) encode(b []byte) []byte {
	v := byte(walVersion)
	if len(rec.Objects) > 0 {
		v = walVersionObjects
	}
	b = append(b, v, byte(rec.Type), 0, 0)
	b = binary.LittleEndian.AppendUint64(b, rec.LSN)
	b = binary.LittleEndian.AppendUint64(b, rec.Batch)
	b = binary.LittleEndian.AppendUint64(b, uint64(rec.Time))
	b = appendString16(b, rec.DB)
	b = appendString16(b, rec.Key)
	b = appendString16(b, rec.Principal)
	b = appendString16(b, rec.ETag)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rec.Sealed)))
	b = append(b, rec.Sealed...)
	if len(rec.Objects) == 0 {
		return b
	}
	// Objects: a count, then each a kind (1 written, 2 removed), its key
	// and its bytes.
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rec.Objects)))
	for _, o := range rec.Objects {
		kind := byte(1)
		if o.Data == nil {
			kind = 2
		}
		b = append(b, kind)
		b = appendString16(b, o.Key)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(o.Data)))
		b = append(b, o.Data...)
	}
	return b
}

// encode appends the start record's payload to b.
func (s *walStartRecord) encode(b []byte) []byte {
	b = append(b, walVersion, byte(walStart), 0, 0)
	b = appendString16(b, s.WorkerID)
	b = binary.LittleEndian.AppendUint64(b, s.Gen)
	b = binary.LittleEndian.AppendUint32(b, s.Seq)
	return binary.LittleEndian.AppendUint64(b, s.FirstLSN)
}

// appendString16 appends s with a 16-bit length.
func appendString16(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// walDecoder reads the fields of a payload; the first failure sticks.
type walDecoder struct {
	b   []byte
	bad bool
}

func (d *walDecoder) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *walDecoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *walDecoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *walDecoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *walDecoder) str16() string { return string(d.take(int(d.u16()))) }

// walPayloadType checks a payload's version and returns its type.
func walPayloadType(p []byte) (walType, bool) {
	if len(p) < 4 || (p[0] != walVersion && p[0] != walVersionObjects) {
		return 0, false
	}
	return walType(p[1]), true
}

// decodeWALRecord decodes a put, delete or versions payload.
func decodeWALRecord(p []byte) (walRecord, bool) {
	t, ok := walPayloadType(p)
	if !ok || (t != walPut && t != walDelete && t != walVersions) {
		return walRecord{}, false
	}
	d := &walDecoder{b: p[4:]}
	rec := walRecord{Type: t, LSN: d.u64(), Batch: d.u64(), Time: int64(d.u64())}
	rec.DB, rec.Key, rec.Principal, rec.ETag = d.str16(), d.str16(), d.str16(), d.str16()
	if sealed := d.take(int(d.u32())); len(sealed) > 0 {
		rec.Sealed = slices.Clone(sealed)
	}
	if p[0] == walVersionObjects && !d.objects(&rec) {
		return walRecord{}, false
	}
	ok = !d.bad && len(d.b) == 0 && rec.LSN > 0 && rec.Batch > 0 && rec.Batch <= rec.LSN &&
		(t == walPut) == (rec.Sealed != nil) && (t != walVersions || len(rec.Objects) > 0)
	return rec, ok
}

// objects decodes a record's objects into rec. Each must lie in the
// entity's versions directory: whatever a record holds, its replay
// writes nowhere else.
func (d *walDecoder) objects(rec *walRecord) bool {
	n := int(d.u16())
	if n == 0 {
		return false
	}
	dir := versionsDir(rec.DB, rec.Key)
	rec.Objects = make([]walObject, 0, n)
	for range n {
		kind, key := d.take(1), d.str16()
		data := d.take(int(d.u32()))
		if d.bad || (kind[0] != 1 && kind[0] != 2) || (kind[0] == 2) != (len(data) == 0) ||
			!strings.HasPrefix(key, dir) || strings.Contains(key[len(dir):], "/") || len(key) == len(dir) {
			return false
		}
		o := walObject{Key: key}
		if kind[0] == 1 {
			o.Data = slices.Clone(data)
		}
		rec.Objects = append(rec.Objects, o)
	}
	return true
}

// decodeWALStart decodes a segment's start payload.
func decodeWALStart(p []byte) (walStartRecord, bool) {
	if t, ok := walPayloadType(p); !ok || t != walStart || p[0] != walVersion {
		return walStartRecord{}, false
	}
	d := &walDecoder{b: p[4:]}
	s := walStartRecord{WorkerID: d.str16(), Gen: d.u64(), Seq: d.u32(), FirstLSN: d.u64()}
	return s, !d.bad && len(d.b) == 0 && s.FirstLSN > 0
}

// Segment files: _wal/<worker ID>/<generation>-<seq>.wal, the
// generation and sequence in fixed-width hex so that names sort in log
// order; walreplay.go says how a log directory is claimed.
const (
	walDirName   = "_wal"
	walSegSuffix = ".wal"
	// walOwnerLock is held (flock) by the process appending to the log
	// while its generation is live: a free lock means no live process
	// writes the log. It holds the generation's number.
	walOwnerLock = "owner.lock"
)

// walSegmentName is the file name of segment seq of generation gen.
func walSegmentName(gen uint64, seq uint32) string {
	return fmt.Sprintf("%016x-%08x%s", gen, seq, walSegSuffix)
}

// walSegmentFile is one segment file found in a log directory.
type walSegmentFile struct {
	name string
	gen  uint64
	seq  uint32
}

// parseSegmentName parses a segment file name.
func parseSegmentName(name string) (walSegmentFile, bool) {
	base, ok := strings.CutSuffix(name, walSegSuffix)
	g, s, found := strings.Cut(base, "-")
	if !ok || !found || len(g) != 16 || len(s) != 8 {
		return walSegmentFile{}, false
	}
	gen, err1 := strconv.ParseUint(g, 16, 64)
	seq, err2 := strconv.ParseUint(s, 16, 32)
	if err1 != nil || err2 != nil {
		return walSegmentFile{}, false
	}
	return walSegmentFile{name: name, gen: gen, seq: uint32(seq)}, true
}

// listSegments returns the segment files of a log directory in log
// order (generation, then sequence).
func listSegments(dir string) ([]walSegmentFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var segs []walSegmentFile
	for _, e := range entries {
		if s, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b walSegmentFile) int {
		if a.gen != b.gen {
			return cmpUint(a.gen, b.gen)
		}
		return cmpUint(uint64(a.seq), uint64(b.seq))
	})
	return segs, nil
}

// cmpUint compares two unsigned integers.
func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// walScan is one segment as read back.
type walScan struct {
	path  string
	start walStartRecord
	// records are the good records, in LSN order, with offsets[i] the
	// offset of records[i]'s frame.
	records []walRecord
	offsets []int64
	// end is the offset after the last good frame; torn says bytes after
	// it were dropped as a torn write, dropped how many (up to the last
	// non-zero byte).
	end     int64
	torn    bool
	dropped int64
}

// walTear is a torn tail a scan dropped, for the log of a replay.
type walTear struct {
	path    string
	off     int64
	dropped int64
}

// nonZeroAfter returns how many bytes of data from off on come before
// the zeros (or the end) that close it: what a torn tail dropped.
func nonZeroAfter(data []byte, off int64) int64 {
	end := int64(len(data))
	for end > off && data[end-1] == 0 {
		end--
	}
	return max(end-off, 0)
}

// scanSegment reads a segment file. last says whether it is the last
// segment of its generation, the only one whose tail a crash can have
// torn: a bad frame there is dropped with everything after it when no
// later group commit follows it, and is damage otherwise; a bad frame in
// any other segment is damage. Damage is an error wrapping
// errWALDamaged that names the file and the offset.
func scanSegment(path string, last bool) (*walScan, error) {
	// Read as every object under the storage root is: a link, a device or
	// a pipe put in place of a segment is refused, and so is a file too
	// large to be one, before anything is allocated.
	data, err := readBeneath(filepath.Dir(path), []string{filepath.Base(path)}, walMaxSegmentRead)
	if err != nil {
		return nil, fmt.Errorf("read log segment %s: %w", path, err)
	}
	return scanSegmentBytes(path, data, last)
}

// scanSegmentBytes is scanSegment of a segment's bytes.
func scanSegmentBytes(path string, data []byte, last bool) (*walScan, error) {
	sc := &walScan{path: path}
	payload, next, ok := frameAt(data, 0)
	if ok {
		if err := walNewer(path, 0, payload); err != nil {
			return nil, err
		}
		sc.start, ok = decodeWALStart(payload)
	}
	if !ok {
		// A segment's start record reaches the disk before any record is
		// written to it: without one, only a crash right after creating
		// the file explains a last segment that holds no good record.
		if tornTail(data, -walAlign, 0, last, walPos) {
			sc.torn, sc.dropped = true, nonZeroAfter(data, 0)
			return sc, nil
		}
		return nil, fmt.Errorf("log segment %s: offset 0: no valid start record: %w", path, errWALDamaged)
	}
	sc.end = next
	return sc, sc.scanRecords(data, last)
}

// scanRecords reads the records after the start record.
func (sc *walScan) scanRecords(data []byte, last bool) error {
	prevLSN, prevBatch := sc.start.FirstLSN-1, uint64(0)
	for off := sc.end; off < int64(len(data)); {
		payload, next, ok := frameAt(data, off)
		var rec walRecord
		if ok {
			if err := walNewer(sc.path, off, payload); err != nil {
				return err
			}
			rec, ok = decodeWALRecord(payload)
			ok = ok && rec.LSN == prevLSN+1 && (rec.Batch == prevBatch || rec.Batch == rec.LSN)
		}
		if !ok && allZero(data[off:]) {
			// The zeros a segment is written ahead with (walPrealloc): its
			// end. A group that had not reached the disk left them too.
			return nil
		}
		if !ok {
			return sc.badFrame(data, off, prevLSN, last)
		}
		sc.records, sc.offsets = append(sc.records, rec), append(sc.offsets, off)
		prevLSN, prevBatch, off, sc.end = rec.LSN, rec.Batch, next, next
	}
	return nil
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// walNewer is the error of a whole frame at off (its checksum matches)
// whose payload version is above those this binary reads: a newer binary
// wrote it, and it stops the scan wherever it lies. A torn write leaves
// no matching checksum, so such a frame is never a torn tail; taken for
// one, it would be dropped with the acknowledged writes in it (as a
// binary from before walVersionObjects drops version 2 records at the
// end of a log).
func walNewer(path string, off int64, payload []byte) error {
	if payload[0] <= walVersionObjects {
		return nil
	}
	return fmt.Errorf("log segment %s: offset %d: a record of payload version %d, written by a newer binary: "+
		"start that binary again and stop it with SIGTERM (it applies its log) before starting this one: %w",
		path, off, payload[0], errWALDamaged)
}

// badFrame decides what a bad frame at off is (tornTail).
func (sc *walScan) badFrame(data []byte, off int64, prevLSN uint64, last bool) error {
	if tornTail(data, off, prevLSN+1, last, walPos) {
		sc.torn, sc.dropped = true, nonZeroAfter(data, off)
		return nil
	}
	return fmt.Errorf("log segment %s: offset %d: record %d fails its checksum or does not decode: %w",
		sc.path, off, prevLSN+1, errWALDamaged)
}

// framePos reads from a frame's payload the number of its record and
// the number of the first record of its group commit (for the write-ahead
// log, LSN and Batch); false when the payload does not decode. Logs
// framed by appendFrame number their records so that a scan can tell a
// torn tail from damage (tornTail).
type framePos func(payload []byte) (n, batch uint64, ok bool)

// walPos is the framePos of the write-ahead log's records.
func walPos(payload []byte) (uint64, uint64, bool) {
	rec, ok := decodeWALRecord(payload)
	return rec.LSN, rec.Batch, ok
}

// tornTail decides what a bad frame at off is, whose record would be
// number n: a torn tail (true), dropped with everything after it, or
// damage (false). Group commits are written one at a time, each only
// after the one before reached the disk, so a crash can tear only the
// last group of a log: a bad frame outside the log's last file, or one
// followed by a good frame of a later group commit (which proves the bad
// one was complete once), is damage.
func tornTail(data []byte, off int64, n uint64, last bool, pos framePos) bool {
	return last && !laterBatchAfter(data, off, n, pos)
}

// laterBatchAfter reports whether a good frame of a group commit that
// started after record n lies after off. The record at off is number n:
// it either continues the group commit before it or starts one at n.
func laterBatchAfter(data []byte, off int64, n uint64, pos framePos) bool {
	for o := off + walAlign; o+walFrameHeader <= int64(len(data)); o += walAlign {
		payload, _, ok := frameAt(data, o)
		if !ok {
			continue
		}
		if rn, batch, ok := pos(payload); ok && rn > n && batch > n {
			return true
		}
	}
	return false
}

// frameAt returns the payload of the frame at off and the offset after
// it, or false if there is no whole frame with a matching CRC there.
func frameAt(data []byte, off int64) (payload []byte, next int64, ok bool) {
	if off+walFrameHeader > int64(len(data)) {
		return nil, 0, false
	}
	n := int64(binary.LittleEndian.Uint32(data[off:]))
	sum := binary.LittleEndian.Uint32(data[off+4:])
	if n == 0 || n > walMaxPayload || off+walFrameHeader+n > int64(len(data)) {
		return nil, 0, false
	}
	payload = data[off+walFrameHeader : off+walFrameHeader+n]
	if crc32.Checksum(payload, walCRC) != sum {
		return nil, 0, false
	}
	return payload, off + framedSize(int(n)), true
}

// walMaxSegmentRead bounds the size of a segment read back. Checkpoints
// cut the log at -wal-checkpoint-bytes (64 MiB by default); a segment
// passes that only by what is appended while a checkpoint runs.
const walMaxSegmentRead = 1 << 30

// walLogDir is the directory of worker id's log under the storage root.
func walLogDir(root, id string) string { return filepath.Join(root, walDirName, id) }

// readLog reads segments of one log directory, in log order, and returns
// their records with torn tails left out, and those tails. Damage stops
// it with an error naming the file and the offset.
func readLog(dir string, segs []walSegmentFile) ([]walRecord, []walTear, error) {
	var recs []walRecord
	var tears []walTear
	for i, s := range segs {
		last := i == len(segs)-1 || segs[i+1].gen != s.gen
		sc, err := scanSegment(filepath.Join(dir, s.name), last)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, sc.records...)
		if sc.torn {
			tears = append(tears, walTear{sc.path, sc.end, sc.dropped})
		}
	}
	return recs, tears, nil
}
