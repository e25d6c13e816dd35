package main

// -role=verify: read and decrypt every stored entity with the configured
// master key, and report counts by database, format version and failure.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// verifyReport counts the entities verify read. It is safe for concurrent
// use.
type verifyReport struct {
	mu sync.Mutex
	// rows counts entities by database and format version (0: no readable
	// header).
	rows map[verifyRow]*verifyCount
	// reasons counts failures by reason.
	reasons map[string]int
	// failures are the entities that failed, with their errors.
	failures []verifyFailure
	// vanished counts entities deleted between the listing and their read.
	vanished int
	// versions and versionsFailed count the entity versions read
	// (versions.go) and those that did not open; their failures are in
	// failures too, the key followed by " (version N)".
	versions, versionsFailed int
}

// verifyRow is one line of the report.
type verifyRow struct {
	db     string
	format int
}

// verifyCount is the entities of one row and how many of them failed.
type verifyCount struct{ entities, failed int }

// verifyFailure is one entity that did not decrypt.
type verifyFailure struct {
	db, key string
	err     error
}

// verify decrypts every entity of st with the configured master key. It
// fails with a summary when any entity does not decrypt. Progress goes to
// stderr.
func verify(ctx context.Context, t toolFlags, st store, stdout, stderr io.Writer, log *slog.Logger) error {
	started := time.Now()
	keys, err := toolKeyring(ctx, t.cfg, st)
	if err != nil {
		return err
	}
	defer keys.close()
	objects, err := st.List(ctx, entitiesPrefix, "", 0)
	if err != nil {
		return fmt.Errorf("verify: list entities: %w", err)
	}
	log.Info("verify started", "entities", len(objects), "source", storageName(t.cfg))
	rep := &verifyReport{rows: map[verifyRow]*verifyCount{}, reasons: map[string]int{}}
	prog := startProgress(stderr, t.progress, t.progressEvery, "verify", "entities", int64(len(objects)))
	pool := newWorkPool(ctx, t.concurrency)
	for _, object := range objects {
		err := pool.run(func(ctx context.Context) error {
			defer prog.add(1)
			return rep.check(ctx, st, keys, object)
		})
		if err != nil {
			break
		}
	}
	err = pool.wait()
	prog.finish()
	if err == nil {
		err = rep.checkVersions(ctx, st, keys)
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rep.print(stdout, time.Since(started))
	if n := len(rep.failures); n > 0 {
		return fmt.Errorf("verify: %d of %d entities and versions failed", n, rep.total()+rep.versions)
	}
	return nil
}

// checkVersions opens every kept version of every database and counts
// it. A version whose index is missing or names another entity counts as
// failed, as does one that does not open.
func (r *verifyReport) checkVersions(ctx context.Context, st store, keys *keyring) error {
	dbs, err := st.ListDirs(ctx, versionsPrefix)
	if err != nil {
		return fmt.Errorf("list versions: %w", err)
	}
	for _, db := range dbs {
		err := versionsIn(ctx, st, db, func(x versionIndex, ns []int64) error {
			for _, n := range ns {
				if err := r.checkVersion(ctx, st, keys, db, x.Key, n); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, errCorrupt) {
			r.addVersion(db, "", 0, err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkVersion reads and opens version n of key in db and counts it.
func (r *verifyReport) checkVersion(ctx context.Context, st store, keys *keyring, db, key string, n int64) error {
	sealed, err := st.Get(ctx, versionObjectKey(db, key, n))
	if errors.Is(err, errNotFound) {
		return nil // pruned or destroyed meanwhile
	}
	if err != nil && !errors.Is(err, errCorrupt) {
		return fmt.Errorf("read version %d of %q of database %s: %w", n, key, db, err)
	}
	if err == nil {
		var plain []byte
		plain, _, err = keys.open(ctx, db, versionSealKey(key, n), sealed)
		zero(plain)
	}
	r.addVersion(db, key, n, err)
	return nil
}

// addVersion counts one version, failed when err is not nil.
func (r *verifyReport) addVersion(db, key string, n int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.versions++
	if err != nil {
		r.versionsFailed++
		r.reasons[failureReason(err)]++
		r.failures = append(r.failures, verifyFailure{db, fmt.Sprintf("%s (version %d)", key, n), err})
	}
}

// toolKeyring checks the configured master key against the stored key
// check, without writing one, and returns the keyring that opens the
// storage's entities in either format (keyring.go). It never creates a
// data key.
func toolKeyring(ctx context.Context, cfg config, st store) (*keyring, error) {
	master, err := toolMasterKey(ctx, cfg, st, "")
	if err != nil {
		return nil, err
	}
	defer zero(master)
	ring, err := newKeyring(st, master, cfg.keyID)
	if err != nil {
		return nil, err
	}
	if err := addRotationKey(ctx, cfg, st, ring); err != nil {
		ring.close()
		return nil, err
	}
	return ring, nil
}

// toolMasterKey returns the configured master key, which a storage tool
// needs (why says what for, "" for nothing more), once it matches the
// storage's key check; storage without one (empty) is not checked, and
// none is written. The caller zeroes it.
func toolMasterKey(ctx context.Context, cfg config, st store, why string) ([]byte, error) {
	master, err := configuredMasterKey(cfg)
	if err != nil {
		return nil, err
	}
	if master == nil {
		return nil, fmt.Errorf("-master-key: %s needs the storage's master key (-master-key-file, MASTER_KEY or -master-key)%s", cfg.role, why)
	}
	_, err = st.Get(ctx, keyCheckObject)
	switch {
	case err == nil:
		err = checkMasterKey(ctx, st, master, cfg.keyID)
	case errors.Is(err, errNotFound):
		err = nil
	default:
		err = fmt.Errorf("read key check: %w", err)
	}
	if err != nil {
		zero(master)
		return nil, err
	}
	return master, nil
}

// addRotationKey adds the previous master key to ring when a rotation is
// unfinished (rotation.go): data keys not yet rewrapped, and format-1
// entities not yet upgraded, are still under it.
func addRotationKey(ctx context.Context, cfg config, st store, ring *keyring) error {
	rec, err := readRotation(ctx, st)
	if err != nil || rec == nil {
		return err
	}
	prev, err := configuredPreviousMasterKey(cfg)
	if err != nil {
		return err
	}
	if prev == nil || !rec.From.matches(prev, rec.From.KeyID) {
		zero(prev)
		return fmt.Errorf("-previous-master-key: a master-key rotation from key id %q is unfinished (%s): "+
			"give that key too, or let the server finish the rotation first", rec.From.KeyID, rotationObject)
	}
	defer zero(prev)
	return ring.addPrevious(prev, rec.From.KeyID)
}

// check reads and decrypts the entity stored at object and counts it.
// Only a failure to read storage is an error; a failure to decrypt is
// counted.
func (r *verifyReport) check(ctx context.Context, st store, keys *keyring, object string) error {
	db, name := entityObjectParts(object)
	key, err := decodeEntityObjectName(name)
	if err != nil {
		r.add(db, name, 0, err)
		return nil
	}
	sealed, err := st.Get(ctx, object)
	if errors.Is(err, errNotFound) {
		r.mu.Lock()
		r.vanished++
		r.mu.Unlock()
		return nil
	}
	if errors.Is(err, errCorrupt) { // a link, a device, over the read limit
		r.add(db, key, 0, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read entity %q of database %s: %w", key, db, err)
	}
	plain, _, err := keys.open(ctx, db, key, sealed)
	zero(plain)
	r.add(db, key, blobFormat(sealed), err)
	return nil
}

// blobFormat is the format version byte of a stored entity blob, 0 when
// it does not start like an envelope.
func blobFormat(sealed []byte) int {
	if len(sealed) < len(envelopeMagic)+1 || string(sealed[:len(envelopeMagic)]) != envelopeMagic {
		return 0
	}
	return int(sealed[len(envelopeMagic)])
}

// add counts one entity of db, failed when err is not nil.
func (r *verifyReport) add(db, key string, format int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	row := verifyRow{db, format}
	c := r.rows[row]
	if c == nil {
		c = &verifyCount{}
		r.rows[row] = c
	}
	c.entities++
	if err != nil {
		c.failed++
		r.reasons[failureReason(err)]++
		r.failures = append(r.failures, verifyFailure{db, key, err})
	}
}

// total is the number of entities counted.
func (r *verifyReport) total() int {
	n := 0
	for _, c := range r.rows {
		n += c.entities
	}
	return n
}

// Failure reasons group errors that differ only in numbers or quoted
// names.
var (
	reasonNumbers = regexp.MustCompile(`[0-9]+`)
	reasonQuoted  = regexp.MustCompile(`"[^"]*"`)
)

// failureReason is err's message without its context prefix and sentinel
// suffix, numbers and quoted names replaced, so that like failures count
// together.
func failureReason(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+errCorrupt.Error())
	msg = strings.TrimPrefix(msg, "open entity: ")
	msg = reasonQuoted.ReplaceAllString(msg, `"…"`)
	return reasonNumbers.ReplaceAllString(msg, "N")
}

// maxListedFailures is how many failed entities the report names.
const maxListedFailures = 100

// print writes the report: a table by database and format, failures by
// reason, and the failed entities.
func (r *verifyReport) print(w io.Writer, took time.Duration) {
	failed := len(r.failures)
	fmt.Fprintf(w, "verify: %d entities, %d failed, in %v\n", r.total(), failed-r.versionsFailed, took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "database\tformat\tentities\tfailed")
	rows := slices.SortedFunc(maps.Keys(r.rows), func(a, b verifyRow) int {
		return cmp.Or(strings.Compare(a.db, b.db), a.format-b.format)
	})
	for _, row := range rows {
		format := fmt.Sprint(row.format)
		if row.format == 0 {
			format = "unreadable"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", row.db, format, r.rows[row].entities, r.rows[row].failed)
	}
	tw.Flush()
	if r.vanished > 0 {
		fmt.Fprintf(w, "%d entities were deleted while verify ran\n", r.vanished)
	}
	if r.versions > 0 {
		fmt.Fprintf(w, "versions: %d, %d failed\n", r.versions, r.versionsFailed)
	}
	if failed == 0 {
		return
	}
	fmt.Fprintln(w, "failures by reason:")
	for _, reason := range slices.Sorted(maps.Keys(r.reasons)) {
		fmt.Fprintf(w, "  %d  %s\n", r.reasons[reason], reason)
	}
	slices.SortFunc(r.failures, func(a, b verifyFailure) int {
		return cmp.Or(strings.Compare(a.db, b.db), strings.Compare(a.key, b.key))
	})
	fmt.Fprintln(w, "failed entities:")
	for _, f := range r.failures[:min(failed, maxListedFailures)] {
		fmt.Fprintf(w, "  %s %q: %v\n", f.db, f.key, f.err)
	}
	if failed > maxListedFailures {
		fmt.Fprintf(w, "  ... and %d more\n", failed-maxListedFailures)
	}
}
