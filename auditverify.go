package main

// -role=audit-verify: walk an audit log's chain (audit.go) across its
// files and name the first line that was changed, removed, reordered or
// cut, or report the log intact.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// runAuditVerify runs -role=audit-verify with its own flag set: -in and
// the master key flags. It returns an error (non-zero exit) naming the
// first bad line.
func runAuditVerify(args []string, stdout, stderr io.Writer) error {
	var cfg config
	var in string
	fs := flag.NewFlagSet("deltadatabase -role=audit-verify", flag.ContinueOnError)
	fs.StringVar(&cfg.role, "role", "", "audit-verify")
	fs.StringVar(&in, "in", "", "the audit log: its live file (its rotated files PATH.NNNNNN are checked first), or files in order, comma-separated")
	masterKeyFlags(fs, &cfg)
	if err := parseArgs(fs, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if in == "" {
		return errors.New("-in: name the audit log to verify")
	}
	keys, err := auditVerifyKeys(cfg)
	if err != nil {
		return err
	}
	files, err := auditFiles(in)
	if err != nil {
		return err
	}
	v := &auditVerifier{keys: keys}
	if err := v.verify(files); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	v.report(stdout, files)
	return nil
}

// auditVerifyKeys are the checkpoint keys of the master keys given: the
// master key, and the previous one of a rotation if given.
func auditVerifyKeys(cfg config) ([][]byte, error) {
	master, err := configuredMasterKey(cfg)
	if err != nil {
		return nil, err
	}
	if master == nil {
		return nil, errors.New("-master-key-file: give the master key the audit log was written under (-master-key-file, MASTER_KEY or -master-key)")
	}
	previous, err := configuredPreviousMasterKey(cfg)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for _, m := range [][]byte{master, previous} {
		if m == nil {
			continue
		}
		k, err := deriveAuditKeys(m)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k.chain)
		zero(m)
	}
	return keys, nil
}

// auditFiles are the files -in names, in chain order: a comma-separated
// list as given, or one path with its rotated files before it.
func auditFiles(in string) ([]string, error) {
	if strings.Contains(in, ",") {
		return strings.Split(in, ","), nil
	}
	rotated, err := rotatedAuditFiles(in)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(in); err != nil && len(rotated) > 0 && errors.Is(err, os.ErrNotExist) {
		return rotated, nil // the live file is being reopened by a rotation
	}
	return append(rotated, in), nil
}

// auditVerifier walks one chain across files. Its zero value with keys
// set is ready; it is not safe for concurrent use.
type auditVerifier struct {
	// keys are the checkpoint keys to try.
	keys [][]byte
	// prevHash, prevSeq and prevAt describe the line before: its SHA-256,
	// its seq and where it is ("file line N").
	prevHash [32]byte
	prevSeq  uint64
	prevAt   string
	started  bool
	// firstSeq is the seq of the first line; lines, checkpoints count.
	firstSeq           uint64
	lines, checkpoints int
	// lastCheckpointAt is where the last checkpoint is; closed says it
	// closed the log.
	lastCheckpointAt string
	closed           bool
}

// auditLineRead is one line as read: raw without its newline, where it
// is, whether it ended with a newline, and its parsed head.
type auditLineRead struct {
	raw      []byte
	at       string
	complete bool
	head     auditLineHead
	parseErr error
}

// verify walks the files in order; the first bad line is an error.
func (v *auditVerifier) verify(files []string) error {
	for i, name := range files {
		if err := v.verifyFile(name, i == len(files)-1); err != nil {
			return err
		}
	}
	return nil
}

// verifyFile walks one file. A file before the last must end with the
// checkpoint of its rotation.
func (v *auditVerifier) verifyFile(name string, last bool) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	r := &auditLineReader{br: bufio.NewReaderSize(f, 64<<10), name: name}
	cur, err := r.next()
	if err != nil {
		return err
	}
	if cur == nil {
		return fmt.Errorf("%s holds no line: it was emptied", name)
	}
	var lastLine *auditLineRead
	for cur != nil {
		nxt, err := r.next()
		if err != nil {
			return err
		}
		if err := v.check(cur, nxt); err != nil {
			return err
		}
		lastLine, cur = cur, nxt
	}
	if !last && (lastLine.head.Type != "checkpoint" || lastLine.head.Reason != "rotate") {
		return fmt.Errorf("%s: the file ends without the checkpoint of its rotation: lines after it were removed (truncated)", lastLine.at)
	}
	return nil
}

// auditLineReader reads the lines of one file, numbered from 1.
type auditLineReader struct {
	br   *bufio.Reader
	name string
	n    int
}

// next is the next line, nil at the end of the file.
func (r *auditLineReader) next() (*auditLineRead, error) {
	var line []byte
	for {
		part, err := r.br.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxAuditLine {
			return nil, fmt.Errorf("%s line %d: longer than %d bytes: not an audit line", r.name, r.n+1, maxAuditLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read %s: %w", r.name, err)
		}
		break
	}
	if len(line) == 0 {
		return nil, nil
	}
	r.n++
	l := &auditLineRead{at: fmt.Sprintf("%s line %d", r.name, r.n), complete: line[len(line)-1] == '\n'}
	l.raw = bytes.TrimSuffix(line, []byte("\n"))
	l.parseErr = json.Unmarshal(l.raw, &l.head)
	if l.parseErr == nil && l.head.Seq == 0 {
		l.parseErr = errors.New("no seq")
	}
	return l, nil
}

// check checks line cur, given the line after it (nil at the end of the
// file), against the chain so far, and adds it.
func (v *auditVerifier) check(cur, nxt *auditLineRead) error {
	switch {
	case !cur.complete:
		return fmt.Errorf("%s: incomplete: the file was cut in the middle of this line (truncated)", cur.at)
	case cur.parseErr != nil:
		return fmt.Errorf("%s: not an audit line: it was changed", cur.at)
	case !v.started:
		if cur.head.Type != "checkpoint" {
			return fmt.Errorf("%s: the log does not start with a checkpoint: lines before it were removed, or it was changed", cur.at)
		}
		v.started, v.firstSeq = true, cur.head.Seq
	default:
		if err := v.checkLink(cur, nxt); err != nil {
			return err
		}
	}
	if cur.head.Type == "checkpoint" {
		if !v.checkpointValid(cur.raw) && nxt != nil && !v.linksTo(nxt, cur) {
			return fmt.Errorf("%s: changed (the checkpoint does not verify)", cur.at)
		}
		if !v.checkpointValid(cur.raw) {
			return fmt.Errorf("%s: the checkpoint does not verify: a line after %s was changed and the chain recomputed, or the master key is not the one the log was written under",
				cur.at, cmpOr(v.lastCheckpointAt, "the start"))
		}
		v.checkpoints++
		v.lastCheckpointAt, v.closed = cur.at, cur.head.Reason == "close"
	}
	v.prevHash, v.prevSeq, v.prevAt = sha256.Sum256(cur.raw), cur.head.Seq, cur.at
	v.lines++
	return nil
}

// checkLink checks that cur carries the chain value of the line before
// and follows it in sequence; when not, it tells what happened from the
// sequence numbers and the line after.
func (v *auditVerifier) checkLink(cur, nxt *auditLineRead) error {
	want := v.prevSeq + 1
	if cur.head.Prev == hex.EncodeToString(v.prevHash[:]) {
		if cur.head.Seq != want {
			return fmt.Errorf("%s: seq %d where %d follows: the chain was rewritten", cur.at, cur.head.Seq, want)
		}
		return nil
	}
	switch {
	case cur.head.Seq == want:
		if v.linksTo(nxt, cur) || nxt == nil && cur.head.Type == "checkpoint" && v.checkpointValid(cur.raw) {
			return fmt.Errorf("%s: changed (the chain value %s carries does not match it)", v.prevAt, cur.at)
		}
		if nxt == nil {
			return fmt.Errorf("%s: it or the line before it was changed", cur.at)
		}
		return fmt.Errorf("%s: changed", cur.at)
	case cur.head.Seq > want && nxt != nil && nxt.parseErr == nil && nxt.head.Seq == want:
		return fmt.Errorf("%s: out of order: seq %d comes before seq %d (lines swapped)", cur.at, cur.head.Seq, want)
	case cur.head.Seq == want+1:
		return fmt.Errorf("%s: a line removed before it (seq %d is missing)", cur.at, want)
	case cur.head.Seq > want:
		return fmt.Errorf("%s: lines removed before it (seq %d to %d are missing)", cur.at, want, cur.head.Seq-1)
	default:
		return fmt.Errorf("%s: out of order: seq %d after seq %d", cur.at, cur.head.Seq, v.prevSeq)
	}
}

// linksTo reports whether line nxt carries the chain value of line cur.
func (v *auditVerifier) linksTo(nxt, cur *auditLineRead) bool {
	if nxt == nil || nxt.parseErr != nil {
		return false
	}
	h := sha256.Sum256(cur.raw)
	return nxt.head.Prev == hex.EncodeToString(h[:])
}

// checkpointSuffixLen is the length of `,"hmac":"<64 hex>"}` that ends a
// checkpoint line.
const checkpointSuffixLen = len(`,"hmac":"`) + 64 + len(`"}`)

// checkpointValid reports whether checkpoint line raw carries the HMAC,
// under one of the keys, of everything before its hmac member.
func (v *auditVerifier) checkpointValid(raw []byte) bool {
	if len(raw) < checkpointSuffixLen || !bytes.HasPrefix(raw[len(raw)-checkpointSuffixLen:], []byte(`,"hmac":"`)) {
		return false
	}
	got, err := hex.DecodeString(string(raw[len(raw)-checkpointSuffixLen+9 : len(raw)-2]))
	if err != nil {
		return false
	}
	for _, k := range v.keys {
		m := hmac.New(sha256.New, k)
		m.Write(raw[:len(raw)-checkpointSuffixLen])
		if hmac.Equal(m.Sum(nil), got) {
			return true
		}
	}
	return false
}

// report prints what was verified, and whether the log's end is
// anchored.
func (v *auditVerifier) report(w io.Writer, files []string) {
	fmt.Fprintf(w, "audit log intact: %d lines (seq %d to %d, %d checkpoints) in %s\n",
		v.lines, v.firstSeq, v.prevSeq, v.checkpoints, plural(len(files), "file", "files"))
	if v.firstSeq != 1 {
		fmt.Fprintf(w, "note: the chain starts at seq %d: the files before it were not given\n", v.firstSeq)
	}
	if !v.closed {
		fmt.Fprintf(w, "note: the log was not closed: lines after %s are chained but not signed (a live log, a crash, or lines cut off at its end)\n",
			v.lastCheckpointAt)
	}
}
