package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// defaultGRPCAddr is the main worker's client gRPC port, and so where a
// processing worker subscribes unless -main-addr says otherwise.
const defaultGRPCAddr = "127.0.0.1:50051"

// config is every flag of every role (ARCHITECTURE.md "Roles"). parseFlags
// fills it; check rejects values that parse but make no sense.
type config struct {
	// role is all, main or proc (-role; bench never reaches config).
	role string
	// grpcAddr is the gRPC listen address; "" is the role's default
	// (127.0.0.1:50051, a proc 127.0.0.1:0).
	grpcAddr string
	// restAddr is the REST + UI listen address (main, all).
	restAddr string
	// sharedFS is the filesystem storage root, unused with s3.endpoint.
	sharedFS string
	// masterKey is the hex master key from -master-key or MASTER_KEY; ""
	// when not given.
	masterKey string
	// masterKeyFile is a file holding the hex master key; "" for none.
	masterKeyFile string
	// keyID is the logical name of the master key.
	keyID string
	// previousMasterKey and previousMasterKeyFile give the master key a
	// rotation moves from (rotation.go); "" for none.
	previousMasterKey, previousMasterKeyFile string
	// keyJobRate is the most objects a second a key job (rotation,
	// rekey) rewrites; 0 is unlimited.
	keyJobRate int
	// adminKey is the admin bearer key from -admin-key or ADMIN_KEY; ""
	// uses -admin-key-file, else the stored generated one (masterkey.go).
	adminKey string
	// adminKeyFile is a file holding the admin key; "" for none.
	adminKeyFile string
	// allowWeakAdminKey lets an admin key under minAdminKeyLen serve
	// REST beyond loopback.
	allowWeakAdminKey bool
	// authFailLimit is the failed authentications per minute per client
	// before its failing attempts get 429; 0 turns the limit off.
	authFailLimit int
	// trustedProxies are the networks whose X-Forwarded-For is believed
	// (-trusted-proxies, comma-separated CIDRs or addresses).
	trustedProxies []netip.Prefix
	// keyStore is a local file for the API keys; "" keeps them in the
	// storage at _auth/keys.json.
	keyStore string
	// workerTTL is the lifetime of a worker token.
	workerTTL time.Duration
	// clientTTL is the lifetime of a session token from /api/login.
	clientTTL time.Duration
	// grpcMaxRecv is the largest gRPC message accepted, bytes.
	grpcMaxRecv int
	// grpcMaxIdle is how long a gRPC connection with no call in flight
	// stays open (grpcKeepalive).
	grpcMaxIdle time.Duration
	// restMaxBody is the largest REST request body, bytes; larger is 413.
	restMaxBody int64
	// maxDocument is the largest stored document, bytes; 0 is restMaxBody.
	maxDocument int64
	// maxPatchOps, maxBatchKeys, maxDepth and validationTimeout are the
	// other request budgets (budget.go).
	maxPatchOps, maxBatchKeys, maxDepth int
	validationTimeout                   time.Duration
	// findMaxScan and findTimeout bound one query (find.go).
	findMaxScan int64
	findTimeout time.Duration
	// maxImportBytes and maxImportLines bound one import (transfer.go).
	maxImportBytes int64
	maxImportLines int
	// maxVersions is the default version count of a database
	// (versions.go).
	maxVersions int
	// entityCacheSize is the cache of the in-process worker of -role=all
	// when cacheSize is not given.
	entityCacheSize int
	// cacheSize is the most entities a processing worker caches.
	cacheSize int
	// entityCacheBytes is the most bytes of documents a worker's cache
	// holds, in-process or -role=proc; 0 is defaultEntityCacheBytes.
	entityCacheBytes int64
	// gcHeapFloor is -gc-heap-floor (gcfloor.go); 0 for none.
	gcHeapFloor int64
	// maxResponse and maxInflightRead are the budgets of documents
	// answered: of one answer, of all reads not yet answered (budget.go).
	maxResponse, maxInflightRead int64
	// cacheSizeSet is true when -cache-size was given explicitly.
	cacheSizeSet bool
	// cacheTTL expires cache entries; 0 keeps them until evicted.
	cacheTTL time.Duration
	// mainAddr is the main worker's -grpc-addr (whose port hands a
	// worker's connection to the cluster server, clientport.go) or its
	// -cluster-addr, which a proc subscribes to.
	mainAddr string
	// workerID names a processing worker; "" is the hostname.
	workerID string
	// logLevel is debug, info, warn or error.
	logLevel string
	// logFormat is text or json (logging.go).
	logFormat string
	// s3 are the -s3-* flags.
	s3 s3Flags
	// joinToken is the cluster's join secret (-join-token,
	// -join-token-file or DELTADB_JOIN_TOKEN); "" for none, which only
	// -role=all allows (it then accepts no external workers).
	joinToken string
	// joinTokenFile is -join-token-file; "" for none.
	joinTokenFile string
	// clusterAddr is the main worker's TLS listener for workers
	// (Subscribe, Heartbeat); "" is 127.0.0.1:50052.
	clusterAddr string
	// advertiseAddr is the address a processing worker gives the main
	// worker to reach it; "" is its -grpc-addr listener's address.
	advertiseAddr string
	// clusterTLS are -cluster-tls-cert/-key/-ca; all "" generates a
	// certificate at start and pins it.
	clusterTLSCert, clusterTLSKey, clusterTLSCA string
	// shutdownDelay is how long, after SIGTERM, GET /readyz answers 503
	// while requests are still served, before the REST server drains.
	shutdownDelay time.Duration
	// tlsCert and tlsKey serve REST, the UI and client gRPC over TLS;
	// "" serves them plaintext.
	tlsCert, tlsKey string
	// opsAddr is the ops listener's address (ops.go); "" for none.
	opsAddr string
	// pprof serves the profiler on the ops listener.
	pprof bool
	// oidc are the -oidc-* flags; issuer "" accepts no OIDC tokens.
	oidc oidcFlags
	// wal are the -wal* flags.
	wal walFlags
	// audit are the -audit-* flags; path "" writes no audit log.
	audit auditFlags
	// changes are the change feed's -changes-* flags (feed.go).
	changes feedLimits
}

// auditFlags are the -audit-* flags (audit.go).
type auditFlags struct {
	// path is -audit-log: a file, "-" for stdout, "" for none.
	path                string
	hmacNames, required bool
	// maxBytes rotates the file at this size; 0 never.
	maxBytes int64
	// checkpointEvery is the lines between HMAC checkpoints.
	checkpointEvery int
	// flushInterval bounds how long a line waits without -audit-required.
	flushInterval time.Duration
}

// walFlags are the write-ahead log's flags (walwriter.go); the
// filesystem backend only.
type walFlags struct {
	// on acknowledges writes after the group-committed log (-wal); off,
	// after each entity file's own fdatasync.
	on bool
	// checkpointBytes and checkpointInterval are when a checkpoint cuts
	// the log: once it grew by that many bytes, and at least that often.
	checkpointBytes    int64
	checkpointInterval time.Duration
	// applyDelay is how long after a write its entity file is written
	// (-wal-apply-delay).
	applyDelay time.Duration
}

// oidcFlags are the -oidc-* flags (oidc.go).
type oidcFlags struct {
	issuer, audience, permsClaim, dbsClaim string
	// roleMap is the parsed -oidc-role-map; nil for none.
	roleMap map[string]perm
	// skew is -oidc-clock-skew.
	skew time.Duration
	// required stops the start when the issuer cannot be reached.
	required bool
	// allowHTTP accepts a plain-http issuer (and jwks_uri) beyond
	// loopback.
	allowHTTP bool
	// ui is the UI's sign-in with the provider (oidclogin.go); ui.clientID
	// "" offers none.
	ui oidcUIFlags
}

// oidcUIFlags are the -oidc-ui-* flags: the public client the web UI signs
// in as, with the authorization code flow and PKCE.
type oidcUIFlags struct {
	// clientID is the client's ID at the provider; name what the sign-in
	// button calls the provider ("" is the issuer's host); scope the
	// scope asked for.
	clientID, name, scope string
	// params are more parameters of the authorization request (such as
	// audience= or resource=), as a query string.
	params string
}

// s3Flags are the -s3-* flags; endpoint "" means filesystem storage.
type s3Flags struct {
	endpoint, accessKey, secretKey, bucket, region string
	useSSL                                         bool
}

// parseFlags parses args into a config. A bad value is an error naming the
// flag.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("deltadatabase", flag.ContinueOnError)
	fs.StringVar(&c.role, "role", "all", "what to run: all, main or proc (or bench, the load tool, backup, restore, verify, the storage tools, and audit-verify: -role=bench -h and -role=backup -h list their flags)")
	fs.StringVar(&c.grpcAddr, "grpc-addr", "", "gRPC listen address (default 127.0.0.1:50051; proc: 127.0.0.1:0)")
	fs.StringVar(&c.restAddr, "rest-addr", "127.0.0.1:8080", "REST + UI listen address")
	storageFlags(fs, &c)
	masterKeyFlags(fs, &c)
	fs.IntVar(&c.keyJobRate, "key-job-rate", 0, "most objects a second a key rotation or rekey rewrites (0 = unlimited)")
	fs.StringVar(&c.adminKey, "admin-key", secretEnv("ADMIN_KEY"), "admin bearer key (env ADMIN_KEY); generated and stored hashed if empty")
	fs.StringVar(&c.adminKeyFile, "admin-key-file", "", "file holding the admin key")
	fs.BoolVar(&c.allowWeakAdminKey, "allow-weak-admin-key", false, "serve REST beyond loopback with an admin key under 16 characters")
	fs.IntVar(&c.authFailLimit, "auth-fail-limit", 20, "failed authentications per minute per client before its failing attempts get 429; 0 = off")
	trusted := fs.String("trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed")
	fs.StringVar(&c.keyStore, "key-store", "", "RBAC API key store (default <shared-fs>/_auth/keys.json)")
	fs.DurationVar(&c.workerTTL, "worker-ttl", time.Hour, "worker token lifetime")
	fs.DurationVar(&c.clientTTL, "client-ttl", 24*time.Hour, "session token lifetime")
	fs.IntVar(&c.grpcMaxRecv, "grpc-max-recv-msg-size", 4194304, "largest gRPC message accepted, bytes")
	fs.DurationVar(&c.grpcMaxIdle, "grpc-max-connection-idle", defaultGRPCMaxIdle, "close a gRPC connection with no call in flight for this long (clients reconnect)")
	fs.Int64Var(&c.restMaxBody, "rest-max-body-size", 1048576, "largest REST request body, bytes")
	fs.Int64Var(&c.maxDocument, "max-document-size", 0, "largest stored document, bytes, also the result of a PATCH (0 = -rest-max-body-size)")
	fs.IntVar(&c.maxPatchOps, "max-patch-ops", defaultMaxPatchOps, "most operations of one JSON Patch")
	fs.IntVar(&c.maxBatchKeys, "max-batch-keys", defaultMaxBatchKeys, "most entities of one PUT /entity/{db}, keys of one POST /api/databases/{db}/get")
	fs.IntVar(&c.maxDepth, "max-json-depth", defaultMaxJSONDepth, "deepest nesting of arrays and objects in a body, document or schema")
	fs.DurationVar(&c.validationTimeout, "validation-timeout", defaultValidationTimeout, "longest validation of one document against one schema")
	fs.Int64Var(&c.findMaxScan, "find-max-scan", defaultFindMaxScan, "most entities (or index entries) one find examines; past it a page ends early with a bookmark")
	fs.DurationVar(&c.findTimeout, "find-timeout", defaultFindTimeout, "longest one find works before its page ends early with a bookmark")
	fs.Int64Var(&c.maxImportBytes, "max-import-bytes", defaultMaxImportBytes, "largest body of one POST /api/databases/{db}/import, bytes")
	fs.IntVar(&c.maxImportLines, "max-import-lines", defaultMaxImportLines, "most lines of one POST /api/databases/{db}/import")
	fs.IntVar(&c.maxVersions, "max-versions", 0, "versions of each entity a database keeps unless PUT /api/databases/{db} sets its own (0: off; at most 100)")
	fs.IntVar(&c.entityCacheSize, "entity-cache-size", 1024, "entities cached by the in-process worker of -role=all")
	fs.IntVar(&c.cacheSize, "cache-size", 256, "most entities held in a processing worker's LRU")
	fs.Int64Var(&c.gcHeapFloor, "gc-heap-floor", defaultGCHeapFloor, "the heap the garbage collector lets grow before it collects, bytes, at most 1/16 of memory (0: Go's default pacing); the GOGC environment variable, when set, turns it off")
	fs.Int64Var(&c.entityCacheBytes, "entity-cache-bytes", 0, "most bytes of documents a worker's cache holds, -role=all and -role=proc (0 = 1/64 of the memory, from 16 MiB to 128 MiB)")
	fs.Int64Var(&c.maxResponse, "max-response-bytes", defaultMaxResponse, "most bytes of documents in one answer of a listing with include_docs, a get of many keys or a find (at least -max-document-size); the answer ends early with what follows (at least one document)")
	fs.Int64Var(&c.maxInflightRead, "max-inflight-read-bytes", defaultMaxInflightRead, "most bytes of documents read for answers and not yet sent, over all requests; a read waits for room, 15 s at most (at least -max-document-size; with several workers the reads of one worker's entities hold half of it at most, and the reads waiting over 3 s for their workers half of it together)")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", 0, "0 = LRU only; positive also expires cache entries")
	fs.StringVar(&c.mainAddr, "main-addr", defaultGRPCAddr, "main worker's -grpc-addr, whose port hands a worker to the cluster server, or its -cluster-addr (proc)")
	fs.StringVar(&c.workerID, "worker-id", "", "unique worker ID (default hostname)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", logFormatText, "log lines as text (key=value) or json (one object per line)")
	fs.StringVar(&c.joinToken, "join-token", secretEnv(joinTokenEnv), "cluster join secret of 32 random bytes: 64 hex digits (openssl rand -hex 32) or at least 43 other characters (env "+joinTokenEnv+"; visible in ps, prefer -join-token-file)")
	fs.StringVar(&c.joinTokenFile, "join-token-file", "", "file holding the cluster join secret")
	fs.StringVar(&c.clusterAddr, "cluster-addr", "", "TLS listen address for workers (main, all; default 127.0.0.1:50052)")
	fs.StringVar(&c.advertiseAddr, "advertise-addr", "", "address the main worker dials to reach this worker (proc; default the -grpc-addr listener's, whose unspecified host (0.0.0.0, ::) the main worker replaces with the address the subscription came from)")
	fs.StringVar(&c.clusterTLSCert, "cluster-tls-cert", "", "PEM certificate for the cluster links (default: generated at start, pinned)")
	fs.StringVar(&c.clusterTLSKey, "cluster-tls-key", "", "PEM key of -cluster-tls-cert")
	fs.StringVar(&c.clusterTLSCA, "cluster-tls-ca", "", "PEM CA bundle every cluster peer's certificate must chain to")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "after SIGTERM, how long /readyz answers 503 while requests are still served, before in-flight requests drain and the server stops (main, all)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate: serve REST, UI and client gRPC over TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM key of -tls-cert")
	fs.StringVar(&c.opsAddr, "ops-addr", "", "ops listener address: /healthz, /readyz, /metrics without credentials (every role; default none)")
	fs.BoolVar(&c.pprof, "pprof", false, "serve the profiler at /debug/pprof/ on -ops-addr")
	fs.StringVar(&c.oidc.issuer, "oidc-issuer", "", "OpenID provider issuer URL: accept its access tokens as bearer credentials")
	fs.StringVar(&c.oidc.audience, "oidc-audience", "", "audience (aud) the OIDC access tokens must carry (required with -oidc-issuer)")
	fs.StringVar(&c.oidc.permsClaim, "oidc-permissions-claim", "deltadb.permissions", "dotted path of the claim listing permissions or roles (Keycloak: realm_access.roles)")
	fs.StringVar(&c.oidc.dbsClaim, "oidc-databases-claim", "", "dotted path of the claim listing the databases a token may use (default: all)")
	roleMap := fs.String("oidc-role-map", "", "claim values to permissions, e.g. ddb-reader=read,ddb-writer=read+write,ddb-admin=admin (default: read, write, admin as themselves)")
	fs.DurationVar(&c.oidc.skew, "oidc-clock-skew", 30*time.Second, "clock difference tolerated on the exp, nbf and iat of OIDC tokens")
	fs.BoolVar(&c.oidc.required, "oidc-required", false, "refuse to start when the OpenID provider cannot be reached")
	fs.StringVar(&c.oidc.ui.clientID, "oidc-ui-client-id", "", "client ID of the web UI at the OpenID provider: a public client (no secret) with the authorization_code grant, PKCE and the redirect URI <this server's URL>/; empty offers no sign-in with the provider")
	fs.StringVar(&c.oidc.ui.name, "oidc-ui-name", "", "what the UI's sign-in button calls the provider (default: the issuer's host)")
	fs.StringVar(&c.oidc.ui.scope, "oidc-ui-scope", "openid", "scope the UI asks the provider for (one that gets an access token for -oidc-audience)")
	fs.StringVar(&c.oidc.ui.params, "oidc-ui-auth-params", "", "more parameters of the UI's authorization request as a query string, e.g. audience=https://ddb.example (Auth0) or resource=https://ddb.example (RFC 8707)")
	fs.BoolVar(&c.oidc.allowHTTP, "oidc-allow-http", false, "accept a plain-http -oidc-issuer (and jwks_uri) beyond loopback: only on a network no one else can touch")
	fs.BoolVar(&c.wal.on, "wal", true, "filesystem storage: acknowledge a write once a group-committed write-ahead log holds it (false: once its entity file is synced on its own)")
	fs.Int64Var(&c.wal.checkpointBytes, "wal-checkpoint-bytes", 64<<20, "checkpoint the write-ahead log (entity files synced, log cut) once it grew by this many bytes")
	fs.DurationVar(&c.wal.checkpointInterval, "wal-checkpoint-interval", 30*time.Second, "checkpoint the write-ahead log at least this often while it is written")
	fs.DurationVar(&c.wal.applyDelay, "wal-apply-delay", time.Second, "write an entity's file from the write-ahead log this long after its write, so that the entity's writes meanwhile cost one file (0: at once)")
	auditFlagSet(fs, &c.audit)
	fs.StringVar(&c.changes.dir, "changes-dir", "", "directory of the change feed's log (default: _changes under -shared-fs; with S3 storage the feed needs it, on a disk that outlives the main worker)")
	fs.DurationVar(&c.changes.retention, "changes-retention", 7*24*time.Hour, "keep the change feed's records this long (older cursors answer 410)")
	fs.Int64Var(&c.changes.retentionBytes, "changes-retention-bytes", 1<<30, "keep at most about this many bytes of change feed records, dropping the oldest first")
	fs.IntVar(&c.changes.maxStreams, "changes-max-streams", 2000, "most change feed streams (Server-Sent Events, long-polls) open at once; more answer 429")
	fs.IntVar(&c.changes.maxStreamsPerPrincipal, "changes-max-streams-per-principal", 100, "most change feed streams one credential keeps open at once; more answer 429")
	if err := parseArgs(fs, args, stderr); err != nil {
		return c, err
	}
	fs.Visit(func(f *flag.Flag) { c.cacheSizeSet = c.cacheSizeSet || f.Name == "cache-size" })
	var err error
	if c.trustedProxies, err = parseTrustedProxies(*trusted); err != nil {
		return c, err
	}
	if c.oidc.roleMap, err = parseRoleMap(*roleMap); err != nil {
		return c, err
	}
	if err := c.check(); err != nil {
		return c, err
	}
	return c, c.loadJoinToken()
}

// parseArgs parses args with fs: the one way every flag set of ours
// parses. An error comes back as one line naming the flag (the flag
// package's own output is discarded); -h prints the flags to stderr and
// returns flag.ErrHelp; an argument that is not a flag is an error.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// storageFlags adds the storage flags (-shared-fs, -s3-*) to fs; the
// server and the storage tools (backup.go) share them.
func storageFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.sharedFS, "shared-fs", "./shared/db", "storage root (ignored with -s3-endpoint)")
	fs.StringVar(&c.s3.endpoint, "s3-endpoint", "", "host:port of an S3-compatible store; enables S3")
	fs.StringVar(&c.s3.accessKey, "s3-access-key", os.Getenv("S3_ACCESS_KEY"), "S3 access key (env S3_ACCESS_KEY)")
	fs.StringVar(&c.s3.secretKey, "s3-secret-key", secretEnv("S3_SECRET_KEY"), "S3 secret key (env S3_SECRET_KEY)")
	fs.StringVar(&c.s3.bucket, "s3-bucket", "deltadatabase", "S3 bucket (created if missing)")
	fs.BoolVar(&c.s3.useSSL, "s3-use-ssl", false, "HTTPS to the S3 endpoint")
	fs.StringVar(&c.s3.region, "s3-region", "", "S3 region (signs as us-east-1 when empty)")
}

// masterKeyFlags adds the master key flags to fs, the previous key of a
// rotation included; the server and -role=verify share them.
func masterKeyFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.masterKey, "master-key", secretEnv("MASTER_KEY"), "hex 32-byte AES master key (env MASTER_KEY)")
	fs.StringVar(&c.masterKeyFile, "master-key-file", "", "file holding the hex master key")
	fs.StringVar(&c.keyID, "key-id", "main-key-v1", "logical name of the master key")
	fs.StringVar(&c.previousMasterKey, "previous-master-key", secretEnv("PREVIOUS_MASTER_KEY"), "hex master key to rotate from (env PREVIOUS_MASTER_KEY): its data keys are rewrapped under -master-key while serving")
	fs.StringVar(&c.previousMasterKeyFile, "previous-master-key-file", "", "file holding the hex master key to rotate from")
}

// loadJoinToken takes the join token from -join-token-file, or from
// -join-token / DELTADB_JOIN_TOKEN (cleared once read, so that no child
// process inherits it), and checks its length.
func (c *config) loadJoinToken() error {
	tok, _, err := secretFlag{name: "join-token", env: joinTokenEnv, what: "the join token",
		value: c.joinToken, file: c.joinTokenFile}.read()
	if err != nil {
		return err
	}
	c.joinToken = strings.TrimSpace(tok)
	switch {
	case c.joinToken == "" && c.role != "all":
		return fmt.Errorf("-join-token: -role=%s needs the cluster's join token; %s", c.role, joinTokenHint)
	case c.joinToken == "":
		return nil
	}
	if err := checkJoinToken(c.joinToken); err != nil {
		return fmt.Errorf("-join-token: %w", err)
	}
	return nil
}

// secretEnv returns environment variable name and removes it from the
// process environment, so that the secret is not inherited by child
// processes nor seen by later reads of the environment. The kernel's copy
// of the start-up environment (/proc/<pid>/environ) cannot be changed from
// Go; the -*-file flags keep secrets out of it.
func secretEnv(name string) string {
	v := os.Getenv(name)
	os.Unsetenv(name)
	return v
}

// parseTrustedProxies parses -trusted-proxies: comma-separated CIDRs, or
// bare addresses for one host each.
func parseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			ip, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("-trusted-proxies: %q is not a CIDR or an IP address", f)
			}
			p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// check rejects flag values that parse but make no sense.
func (c *config) check() error {
	switch {
	case c.role != "all" && c.role != "main" && c.role != "proc":
		return fmt.Errorf("-role: unknown role %q (want all, main, proc, bench, backup, restore, verify or audit-verify)", c.role)
	case c.grpcMaxRecv <= 0:
		return fmt.Errorf("-grpc-max-recv-msg-size: must be positive, got %d", c.grpcMaxRecv)
	case c.grpcMaxIdle <= 0:
		return fmt.Errorf("-grpc-max-connection-idle: must be positive, got %v", c.grpcMaxIdle)
	case c.restMaxBody <= 0:
		return fmt.Errorf("-rest-max-body-size: must be positive, got %d", c.restMaxBody)
	case c.maxDocument < 0:
		return fmt.Errorf("-max-document-size: must not be negative, got %d", c.maxDocument)
	case c.maxPatchOps <= 0:
		return fmt.Errorf("-max-patch-ops: must be positive, got %d", c.maxPatchOps)
	case c.maxBatchKeys <= 0:
		return fmt.Errorf("-max-batch-keys: must be positive, got %d", c.maxBatchKeys)
	case c.maxDepth <= 0:
		return fmt.Errorf("-max-json-depth: must be positive, got %d", c.maxDepth)
	case c.validationTimeout <= 0:
		return fmt.Errorf("-validation-timeout: must be positive, got %v", c.validationTimeout)
	case c.maxVersions < 0 || c.maxVersions > maxVersionsLimit:
		return fmt.Errorf("-max-versions: must be 0 (off) to %d, got %d", maxVersionsLimit, c.maxVersions)
	case c.findMaxScan <= 0 || c.findTimeout <= 0:
		return fmt.Errorf("-find-max-scan and -find-timeout: must be positive, got %d and %v", c.findMaxScan, c.findTimeout)
	case c.maxImportBytes <= 0 || c.maxImportLines <= 0:
		return fmt.Errorf("-max-import-bytes and -max-import-lines: must be positive, got %d and %d", c.maxImportBytes, c.maxImportLines)
	case c.entityCacheSize <= 0:
		return fmt.Errorf("-entity-cache-size: must be positive, got %d", c.entityCacheSize)
	case c.cacheSize <= 0:
		return fmt.Errorf("-cache-size: must be positive, got %d", c.cacheSize)
	case c.entityCacheBytes < 0:
		return fmt.Errorf("-entity-cache-bytes: must not be negative, got %d (0 is 1/64 of the memory)", c.entityCacheBytes)
	case c.gcHeapFloor < 0:
		return fmt.Errorf("-gc-heap-floor: must not be negative, got %d (0 is Go's default pacing)", c.gcHeapFloor)
	case c.maxResponse <= 0:
		return fmt.Errorf("-max-response-bytes: must be positive, got %d", c.maxResponse)
	case c.maxInflightRead <= 0:
		return fmt.Errorf("-max-inflight-read-bytes: must be positive, got %d", c.maxInflightRead)
	case c.cacheTTL < 0:
		return fmt.Errorf("-cache-ttl: must not be negative, got %v", c.cacheTTL)
	case c.workerTTL <= 0:
		return fmt.Errorf("-worker-ttl: must be positive, got %v", c.workerTTL)
	case c.clientTTL <= 0:
		return fmt.Errorf("-client-ttl: must be positive, got %v", c.clientTTL)
	case c.shutdownDelay < 0:
		return fmt.Errorf("-shutdown-delay: must not be negative, got %v", c.shutdownDelay)
	case c.authFailLimit < 0:
		return fmt.Errorf("-auth-fail-limit: must not be negative, got %d (0 turns it off)", c.authFailLimit)
	case c.keyID == "":
		return errors.New("-key-id: must not be empty")
	case c.keyJobRate < 0:
		return fmt.Errorf("-key-job-rate: must not be negative, got %d (0 is unlimited)", c.keyJobRate)
	case c.sharedFS == "" && c.s3.endpoint == "":
		return errors.New("-shared-fs: must not be empty without -s3-endpoint")
	case (c.clusterTLSCert == "") != (c.clusterTLSKey == ""):
		return errors.New("-cluster-tls-cert: give both -cluster-tls-cert and -cluster-tls-key")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return errors.New("-tls-cert: give both -tls-cert and -tls-key")
	case c.pprof && c.opsAddr == "":
		return errors.New("-pprof: needs -ops-addr (the profiler is served only on the ops listener)")
	case c.wal.checkpointBytes <= 0:
		return fmt.Errorf("-wal-checkpoint-bytes: must be positive, got %d", c.wal.checkpointBytes)
	case c.wal.checkpointBytes > walMaxSegmentRead/2:
		return fmt.Errorf("-wal-checkpoint-bytes: at most %d (half the largest segment replay reads), got %d", walMaxSegmentRead/2, c.wal.checkpointBytes)
	case c.wal.checkpointInterval <= 0:
		return fmt.Errorf("-wal-checkpoint-interval: must be positive, got %v", c.wal.checkpointInterval)
	case c.wal.applyDelay < 0:
		// A checkpoint hurries the applier: a delay past
		// -wal-checkpoint-interval acts as that interval.
		return fmt.Errorf("-wal-apply-delay: must not be negative, got %v", c.wal.applyDelay)
	case c.changes.retention <= 0:
		return fmt.Errorf("-changes-retention: must be positive, got %v", c.changes.retention)
	case c.changes.retentionBytes < changeRetentionMin:
		return fmt.Errorf("-changes-retention-bytes: at least %d, got %d", changeRetentionMin, c.changes.retentionBytes)
	case c.changes.maxStreams <= 0 || c.changes.maxStreamsPerPrincipal <= 0:
		return fmt.Errorf("-changes-max-streams, -changes-max-streams-per-principal: must be positive, got %d and %d", c.changes.maxStreams, c.changes.maxStreamsPerPrincipal)
	}
	if c.workerID != "" {
		// It names the worker's log directory, made after the keys are
		// generated: refused first, it stops the start with one line.
		if err := validateWorkerID(c.workerID); err != nil {
			return fmt.Errorf("-worker-id: %w", err)
		}
	}
	if err := c.checkAddrs(); err != nil {
		return err
	}
	if _, err := slogLevel(c.logLevel); err != nil {
		return err
	}
	if err := c.audit.check(c.role); err != nil {
		return err
	}
	if c.logFormat != logFormatText && c.logFormat != logFormatJSON {
		return fmt.Errorf("-log-format: %q is not text or json", c.logFormat)
	}
	return c.oidc.check()
}

// checkAddrs rejects a listen or dial address that is not host:port, so
// that it stops the start with one line before anything runs (a listener
// refusing it comes after the start-up log; a dial would be retried
// forever). "" is a flag's default where it has one.
func (c *config) checkAddrs() error {
	for _, a := range []struct {
		flag, value string
		dial        bool
	}{
		{"rest-addr", c.restAddr, false}, {"grpc-addr", c.grpcAddr, false}, {"cluster-addr", c.clusterAddr, false},
		{"ops-addr", c.opsAddr, false}, {"main-addr", c.mainAddr, true}, {"advertise-addr", c.advertiseAddr, true},
	} {
		if a.value == "" {
			continue
		}
		if err := checkHostPort(a.value, a.dial); err != nil {
			return fmt.Errorf("-%s: %q is not host:port: %w", a.flag, a.value, err)
		}
	}
	return nil
}

// checkHostPort checks that addr is host:port with a numeric port, which
// may be 0 (any free port) only where it is listened on, not dialled.
func checkHostPort(addr string, dial bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	lowest := uint64(0)
	if dial {
		lowest = 1
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p < lowest {
		return fmt.Errorf("port %q is not a number from %d to 65535", port, lowest)
	}
	return nil
}

// auditFlagSet adds the -audit-* flags to fs.
func auditFlagSet(fs *flag.FlagSet, a *auditFlags) {
	fs.StringVar(&a.path, "audit-log", "", "audit log file, one JSON line per REST request, chained and signed (- for stdout; default none)")
	fs.BoolVar(&a.hmacNames, "audit-hmac-names", false, "write database names and entity keys in the audit log as HMACs (POST /admin/audit/hash finds them)")
	fs.BoolVar(&a.required, "audit-required", false, "answer a request only once its audit line is durable; refuse requests (503) when it cannot be written")
	fs.Int64Var(&a.maxBytes, "audit-max-bytes", 64<<20, "rotate the audit log file at this size, bytes; the chain goes on in the next file (0 = never)")
	fs.IntVar(&a.checkpointEvery, "audit-checkpoint-every", defaultAuditCheckpointEvery, "audit lines between HMAC checkpoints")
	fs.DurationVar(&a.flushInterval, "audit-flush-interval", defaultAuditFlushInterval, "without -audit-required, the longest an audit line waits before it is written and synced")
}

// check rejects -audit-* values that make no sense.
func (a *auditFlags) check(role string) error {
	switch {
	case a.path == "" && (a.hmacNames || a.required):
		return errors.New("-audit-required, -audit-hmac-names: need -audit-log")
	case a.path != "" && role == "proc":
		return errors.New("-audit-log: a processing worker serves no REST requests; give it to the main worker")
	case a.maxBytes < 0:
		return fmt.Errorf("-audit-max-bytes: must not be negative, got %d (0 never rotates)", a.maxBytes)
	case a.checkpointEvery <= 0:
		return fmt.Errorf("-audit-checkpoint-every: must be positive, got %d", a.checkpointEvery)
	case a.flushInterval <= 0:
		return fmt.Errorf("-audit-flush-interval: must be positive, got %v", a.flushInterval)
	}
	return nil
}

// check rejects -oidc-* values that make no sense together.
func (o *oidcFlags) check() error {
	switch {
	case o.issuer == "" && (o.audience != "" || o.required || o.allowHTTP || o.ui.clientID != ""):
		return errors.New("-oidc-issuer: -oidc-audience, -oidc-required, -oidc-allow-http and -oidc-ui-client-id need -oidc-issuer")
	case o.issuer == "":
		return nil
	case checkOIDCURL(o.issuer, o.allowHTTP) != nil:
		return fmt.Errorf("-oidc-issuer: %w", checkOIDCURL(o.issuer, o.allowHTTP))
	case o.audience == "":
		return errors.New("-oidc-audience: required with -oidc-issuer (the aud your provider puts in DeltaDatabase's tokens)")
	case o.permsClaim == "":
		return errors.New("-oidc-permissions-claim: must not be empty")
	case o.skew < 0:
		return fmt.Errorf("-oidc-clock-skew: must not be negative, got %v", o.skew)
	}
	return o.ui.check()
}

// check rejects -oidc-ui-* values that cannot make an authorization
// request.
func (u *oidcUIFlags) check() error {
	if _, err := url.ParseQuery(u.params); err != nil {
		return fmt.Errorf("-oidc-ui-auth-params: %q is not a query string: %w", u.params, err)
	}
	switch {
	case u.clientID == "":
		return nil
	case strings.TrimSpace(u.scope) == "":
		return errors.New("-oidc-ui-scope: must not be empty with -oidc-ui-client-id")
	case len(u.clientID) > 256 || len(u.name) > 64:
		return errors.New("-oidc-ui-client-id: at most 256 bytes, -oidc-ui-name at most 64")
	}
	return nil
}

// budgets are the request budgets of the flags.
func (c *config) budgets() budgets {
	return budgets{maxDocument: cmp.Or(c.maxDocument, c.restMaxBody), maxPatchOps: c.maxPatchOps,
		maxBatchKeys: c.maxBatchKeys, maxDepth: c.maxDepth, validationTimeout: c.validationTimeout,
		maxResponse: c.maxResponse, maxInflightRead: c.maxInflightRead,
		findMaxScan: c.findMaxScan, findTimeout: c.findTimeout,
		maxImportBytes: c.maxImportBytes, maxImportLines: c.maxImportLines, maxVersions: c.maxVersions}
}

// cacheBytes is -entity-cache-bytes, or its default for this machine.
func (c *config) cacheBytes() int64 {
	return cmp.Or(c.entityCacheBytes, defaultEntityCacheBytes(memoryLimit()))
}

// heapFloor is -gc-heap-floor, capped for this machine (gcHeapFloorFor).
func (c *config) heapFloor() int64 { return gcHeapFloorFor(c.gcHeapFloor, memoryLimit()) }

// Bounds of the default of -entity-cache-bytes.
const (
	minDefaultCacheBytes = 16 << 20
	maxDefaultCacheBytes = 128 << 20
)

// defaultEntityCacheBytes is the default cache of decrypted documents for
// a process that may use mem bytes (0: unknown): 1/64 of it, from 16 MiB
// to 128 MiB. A cache that holds b bytes live can take up to 2b of the
// heap before the collector reclaims what it evicted, so 1/64 keeps it to
// about 3% of memory, the rest left to requests and to the page cache that
// serves storage reads. The count bound (-entity-cache-size,
// -cache-size) holds for documents of a few KiB, such as chat sessions,
// long before 128 MiB does; the byte bound is what holds for large ones,
// and past it a larger cache mostly keeps more plaintext in memory.
func defaultEntityCacheBytes(mem int64) int64 {
	if mem <= 0 {
		return 4 * minDefaultCacheBytes
	}
	return min(max(mem/64, minDefaultCacheBytes), maxDefaultCacheBytes)
}

// memoryLimit is the memory this process may use: its cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes) when under the machine's RAM,
// else the machine's RAM; 0 when neither is known.
func memoryLimit() int64 {
	var ram int64
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		ram = int64(si.Totalram) * int64(si.Unit)
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "max" (no limit) does not parse.
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (ram == 0 || n < ram) {
			return n
		}
	}
	return ram
}

// slogLevel parses -log-level.
func slogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("-log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}
