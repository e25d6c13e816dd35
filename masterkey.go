package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// cryptoRand is the randomness of production keys and nonces; tests pin
// their own readers instead.
var cryptoRand io.Reader = rand.Reader

// startKeys are the secrets the main worker runs with.
type startKeys struct {
	master []byte
	// previous is the master key a rotation moves from, named previousID,
	// while one is to run; nil otherwise.
	previous   []byte
	previousID string
	// note is a line for the log about the keys; "" for none.
	note string
	// adminHash is the SHA-256 of the admin key: of admin, or of the
	// generated key whose hash is stored at adminKeyObject.
	adminHash [32]byte
	// admin is the configured admin key; "" when the generated one is used.
	admin string
}

// adminKeyDoc is the JSON stored at adminKeyObject.
type adminKeyDoc struct {
	Format int `json:"format"`
	// SHA256 is the hex SHA-256 of the generated admin key.
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// minAdminKeyLen is the shortest admin key accepted on a REST address
// beyond loopback without -allow-weak-admin-key.
const minAdminKeyLen = 16

// loadKeys returns the master and admin keys, checking the master key
// against the storage's key check value. A key is generated (and printed
// once to stdout, never to the log) only where none was given: the master
// key only on storage that holds no data yet, the admin key only when the
// storage holds no generated one yet (it keeps the hash; a configured
// admin key wins over it). A configured admin key too weak to serve is
// refused first, before anything is generated or stored.
func loadKeys(ctx context.Context, cfg config, st store, stdout io.Writer) (startKeys, error) {
	admin, err := configuredAdminKey(cfg)
	if err != nil {
		return startKeys{}, err
	}
	if _, err := weakAdminKey(cfg, admin); err != nil {
		return startKeys{}, err
	}
	master, err := configuredMasterKey(cfg)
	if err != nil {
		return startKeys{}, err
	}
	previous, err := configuredPreviousMasterKey(cfg)
	if err != nil {
		zero(master)
		return startKeys{}, err
	}
	generated := []string{}
	if master == nil && previous != nil {
		zero(previous)
		return startKeys{}, errors.New("-previous-master-key: give the new master key too (-master-key-file, MASTER_KEY or -master-key)")
	}
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
	prevID, note, err := checkKeys(ctx, st, master, cfg.keyID, previous)
	if err != nil || prevID == "" {
		zero(previous)
		previous = nil
	}
	if err != nil {
		zero(master)
		return startKeys{}, err
	}
	keys := startKeys{master: master, previous: previous, previousID: prevID, note: note, admin: admin}
	keys.adminHash = sha256.Sum256([]byte(keys.admin))
	if keys.admin == "" {
		var admin string
		if keys.adminHash, admin, err = storedAdminKey(ctx, st); err != nil {
			zero(master)
			zero(previous)
			return startKeys{}, err
		}
		if admin != "" {
			generated = append(generated, "ADMIN_KEY="+admin+"  (stored hashed; it keeps working after a restart)")
		}
	}
	if len(generated) > 0 {
		fmt.Fprintf(stdout, "DeltaDatabase generated these keys; they are shown only now:\n  %s\n", strings.Join(generated, "\n  "))
	}
	return keys, nil
}

// configuredAdminKey reads the admin key from -admin-key-file, or from
// -admin-key / ADMIN_KEY; "" when none is given.
func configuredAdminKey(cfg config) (string, error) {
	k, _, err := secretFlag{name: "admin-key", env: "ADMIN_KEY", what: "the admin key", value: cfg.adminKey, file: cfg.adminKeyFile}.read()
	return k, err
}

// secretFlag is a secret that may be given one way of three: the flag
// -name, its environment variable env (the flag's default, see secretEnv)
// or the file -name-file. Given two ways it is refused rather than one
// silently winning.
type secretFlag struct {
	// name is the flag without its dash; env the environment variable;
	// what the secret in errors ("the master key").
	name, env, what string
	// value is -name's value (env's by default); file is -name-file's.
	value, file string
}

// read returns the secret, surrounding white space trimmed from a file,
// and where it came from, for errors ("-name (or ENV)", as either may
// have given the value, or "-name-file <path>"); "" when it is not given.
func (s secretFlag) read() (secret, from string, err error) {
	switch {
	case s.file != "" && s.value != "":
		return "", "", fmt.Errorf("-%s-file: give %s once, not also with -%s or %s", s.name, s.what, s.name, s.env)
	case s.file == "":
		return s.value, "-" + s.name + " (or " + s.env + ")", nil
	}
	b, err := os.ReadFile(s.file)
	if err != nil {
		return "", "", fmt.Errorf("-%s-file: %w", s.name, err)
	}
	from = "-" + s.name + "-file " + s.file
	if secret = strings.TrimSpace(string(b)); secret == "" {
		return "", "", fmt.Errorf("%s: the file is empty", from)
	}
	return secret, from, nil
}

// secretFiles are c's flags that name a file holding a secret (a key
// file of a TLS certificate too), with their values; "" for one not given.
func (c config) secretFiles() map[string]string {
	return map[string]string{"-master-key-file": c.masterKeyFile, "-previous-master-key-file": c.previousMasterKeyFile,
		"-admin-key-file": c.adminKeyFile, "-join-token-file": c.joinTokenFile, "-tls-key": c.tlsKey,
		"-cluster-tls-key": c.clusterTLSKey}
}

// warnOpenSecretFiles logs a warning, naming the flag and the mode (never
// the secret), for each file of files (flag: path) that other users may
// read or change: any user, or a group other than the process's own (a
// Kubernetes secret volume is group-readable by the pod's own fsGroup, as
// deploy/kubernetes mounts it). The file is still used: a secret volume
// is often mounted 0644, and refusing it would stop a deployment that
// works; the warning says what to tighten. A file that cannot be read is
// refused where it is read.
func warnOpenSecretFiles(log *slog.Logger, files map[string]string) {
	for _, flag := range slices.Sorted(maps.Keys(files)) {
		if files[flag] == "" {
			continue
		}
		st, err := os.Stat(files[flag])
		if err != nil || !openToOthers(st) {
			continue
		}
		log.Warn("secret file is open to other users; chmod 600 it", "flag", flag, "file", files[flag],
			"mode", st.Mode().Perm().String())
	}
}

// openToOthers reports whether users other than the file's owner and the
// process's own group may read or change it.
func openToOthers(st os.FileInfo) bool {
	perm := st.Mode().Perm()
	if perm&0o007 != 0 {
		return true
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return perm&0o070 != 0 && (!ok || int(sys.Gid) != os.Getegid())
}

// masterKeyFlag reads a master key given as s (hex); nil when it is not
// given.
func masterKeyFlag(s secretFlag) ([]byte, error) {
	v, from, err := s.read()
	if err != nil || v == "" {
		return nil, err
	}
	k, err := parseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return k, nil
}

// storedAdminKey returns the hash of the generated admin key stored at
// adminKeyObject. With none stored yet it generates a key, stores its hash
// durably and only then returns the key itself, to be shown once.
func storedAdminKey(ctx context.Context, st store) (hash [32]byte, generated string, err error) {
	unlock, err := st.Lock(ctx, adminKeyObject)
	if err != nil {
		return hash, "", fmt.Errorf("lock admin key: %w", err)
	}
	defer unlock()
	raw, err := st.Get(ctx, adminKeyObject)
	if err == nil {
		hash, err = parseAdminKeyDoc(raw)
		return hash, "", err
	}
	if !errors.Is(err, errNotFound) {
		return hash, "", fmt.Errorf("read admin key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(cryptoRand, b); err != nil {
		return hash, "", fmt.Errorf("generate admin key: %w", err)
	}
	generated = "dk_admin_" + hex.EncodeToString(b)
	hash = sha256.Sum256([]byte(generated))
	doc, _ := json.Marshal(adminKeyDoc{Format: 1, SHA256: hex.EncodeToString(hash[:]), CreatedAt: time.Now().UTC()})
	// A main worker starting at the same time on S3, where Lock does not
	// exclude other processes, may have stored its own first: use that.
	if _, err := st.PutIf(ctx, adminKeyObject, append(doc, '\n'), ""); errors.Is(err, errPrecondition) {
		if raw, err = st.Get(ctx, adminKeyObject); err != nil {
			return hash, "", fmt.Errorf("read admin key: %w", err)
		}
		hash, err = parseAdminKeyDoc(raw)
		return hash, "", err
	} else if err != nil {
		return hash, "", fmt.Errorf("store admin key hash: %w", err)
	}
	return hash, generated, nil
}

// parseAdminKeyDoc parses the document at adminKeyObject.
func parseAdminKeyDoc(raw []byte) (hash [32]byte, err error) {
	var doc adminKeyDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return hash, fmt.Errorf("read admin key %s: %v: %w", adminKeyObject, err, errCorrupt)
	}
	h, err := hex.DecodeString(doc.SHA256)
	if doc.Format != 1 || err != nil || len(h) != len(hash) {
		return hash, fmt.Errorf("read admin key %s: want format 1 and a hex SHA-256: %w", adminKeyObject, errCorrupt)
	}
	copy(hash[:], h)
	return hash, nil
}

// weakAdminKey refuses a configured admin key under minAdminKeyLen
// characters when REST listens beyond loopback, unless
// -allow-weak-admin-key; short reports a short key it lets through (on
// loopback, or with the flag), for the caller to warn about. A generated
// key is long. loadKeys checks it before generating or storing anything,
// so that a refused start leaves the storage as it found it.
func weakAdminKey(cfg config, admin string) (short bool, err error) {
	if admin == "" || utf8.RuneCountInString(admin) >= minAdminKeyLen {
		return false, nil
	}
	if isLoopback(cfg.restAddr) || cfg.allowWeakAdminKey {
		return true, nil
	}
	return true, fmt.Errorf("admin key: %d characters is too short for -rest-addr %s beyond loopback: "+
		"use %d or more random characters, or -allow-weak-admin-key", utf8.RuneCountInString(admin), cfg.restAddr, minAdminKeyLen)
}

// isLoopback reports whether the listen address addr accepts loopback
// connections only ("localhost" or a loopback IP; an empty host listens
// everywhere).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// configuredMasterKey reads the master key from -master-key-file, or from
// -master-key / MASTER_KEY; nil when none is given.
func configuredMasterKey(cfg config) ([]byte, error) {
	return masterKeyFlag(secretFlag{name: "master-key", env: "MASTER_KEY", what: "the master key",
		value: cfg.masterKey, file: cfg.masterKeyFile})
}

// configuredPreviousMasterKey reads the master key a rotation moves from
// (rotation.go) from -previous-master-key-file, or from
// -previous-master-key / PREVIOUS_MASTER_KEY; nil when none is given.
func configuredPreviousMasterKey(cfg config) ([]byte, error) {
	return masterKeyFlag(secretFlag{name: "previous-master-key", env: "PREVIOUS_MASTER_KEY", what: "the previous master key",
		value: cfg.previousMasterKey, file: cfg.previousMasterKeyFile})
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

// storageName describes the configured storage for messages.
func storageName(cfg config) string {
	if cfg.s3.endpoint != "" {
		return "s3://" + cfg.s3.endpoint + "/" + cfg.s3.bucket
	}
	return cfg.sharedFS
}
