// DeltaDatabase stores JSON documents ("entities", addressed by database
// name and entity key), validates writes against JSON Schemas, encrypts
// every entity at rest with AES-256-GCM, caches hot entities in an LRU and
// serves them over REST with bearer-token auth and a web UI.
//
// One binary, several roles (-role):
//
//	all   (default) main worker plus an in-process processing worker
//	main  main worker only: REST, UI, auth, key distribution, routing
//	proc  processing worker only: subscribes to -main-addr
//	bench load tool: drives a running server over HTTP (see bench.go)
//	backup, restore, verify
//	      storage tools: copy every stored object to an archive and back
//	      into empty storage; decrypt every entity (backup.go, verify.go)
//
// Files, top-down (one flat package; each file owns one concern):
//
//	main.go        this map; flags (config) and building every role
//	bench.go       -role=bench, the load tool, with its own flag set
//	backup.go      -role=backup and -role=restore, the storage tools' flag
//	               set
//	archive.go     the backup archive: a tar of objects and a manifest
//	               of their SHA-256
//	verify.go      -role=verify: decrypt every stored entity, count by
//	               database, format and failure
//	progress.go    the storage tools' progress: a bar on a terminal,
//	               lines otherwise
//	errors.go      every sentinel error; requestError, the sentence a
//	               client may see, kept apart from the cause that is logged
//	budget.go      the request budgets (document size, patch operations,
//	               keys per PUT, JSON nesting, validation time, $ref
//	               expansion of schemas) and the UTF-8 check of bodies
//	requestid.go   the request ID in the context
//	rest.go        the REST server: route table, middleware (request ID,
//	               authentication, authorization), writeError/statusOf,
//	               the one JSON body decoder
//	handlers.go    the REST handlers; they return errors, rest.go writes them
//	observe.go     what each finished REST request leaves for the access
//	               log and the metrics (route, status, bytes, duration)
//	logging.go     -log-format, the request ID on every line logged for a
//	               request, the access line
//	health.go      GET /healthz and GET /readyz: liveness, the readiness
//	               checks, the not-ready state after SIGTERM
//	ops.go         the ops listener (-ops-addr, every role): health,
//	               readiness, metrics, the profiler with -pprof
//	metrics.go     the metrics of a process in the Prometheus text format
//	               (counters, gauges, histograms), GET /metrics
//	openapi.go     GET /openapi.json: the embedded openapi.json
//	ui.go, static/ the embedded web UI
//	auth.go        authenticator, principals and permissions, authorize
//	               (REST and gRPC), the failed-auth rate limit and the
//	               client address behind trusted proxies
//	oidc.go        OpenID Connect access tokens as credentials: discovery,
//	               the JWKS cache, JWT signatures (RS256, PS256, ES256)
//	               and claims, the principal a token's claims describe
//	sessions.go    session tokens: HMAC-signed, stateless; revocations
//	               (logout) kept in the store; the per-key session cap
//	apikeys.go     the API key model and its persistence in the store
//	mainworker.go  the main worker's gRPC service: worker subscription,
//	               heartbeats, Process for client applications
//	routing.go     the router: rendezvous hashing, batches, epochs, and
//	               the main worker's stub for remote workers (call signing)
//	proc.go        the processing worker, its gRPC server, the subscriber,
//	               the gRPC code table
//	cluster.go     cluster security: the join token, its proofs bound to
//	               the TLS exporter, TLS identities and pinning, the
//	               replay window of main-to-worker calls
//	locks.go       the one per-key lock, honouring the request's context
//	backoff.go     bounded exponential backoff with jitter
//	conditional.go ETags and preconditions
//	patch.go       JSON Merge Patch and JSON Patch
//	schema.go      the JSON Schema registry and validation
//	catalog.go     the storage layout above the store: object keys, schema
//	               bindings (cached), document validation, database and key
//	               listings
//	keyindex.go    the in-memory index of each database's entity keys that
//	               listings page through
//	names.go       validation of database names, schema IDs and entity keys
//	masterkey.go   master and admin keys, the key check
//	crypto.go      the entity envelope (AES-256-GCM) and key wrapping
//	rotation.go    online master-key rotation: the rotation record, the
//	               key checks of a start with -previous-master-key, the
//	               rewrapping of every database's data keys
//	rekey.go       re-encryption of a database's entities: the upgrade
//	               of format-1 entities, the rekey job and its records
//	               (POST /admin/databases/{db}/rekey, GET /admin/jobs)
//	keyring.go     envelope encryption: each database's data keys, wrapped
//	               by the master key under _meta/datakeys/; the keyring
//	               that seals and opens entities of both formats
//	lru.go         the LRU cache
//	store.go       the storage interface; segments of long names, shared
//	               by both backends
//	fsstore.go     the filesystem backend
//	s3store.go     the S3 backend
//	sigv4.go       AWS Signature V4 for the S3 backend
package main

import (
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"

	pb "deltadatabase/proto"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "deltadatabase:", err)
		os.Exit(1)
	}
}

// Log attribute keys, defined once.
const (
	attrDB     = "db"
	attrSchema = "schema"
	attrClient = "client"
	attrAddr   = "addr"
	attrWorker = "worker_id"
	attrErr    = "err"
	// attrRequestID, attrRoute and attrStatus describe a failed REST
	// request: its X-Request-ID, mux pattern and HTTP status.
	attrRequestID = "request_id"
	attrRoute     = "route"
	attrStatus    = "status"
	// attrMethod, attrBytes and attrDurationMS complete the access line
	// (logging.go): HTTP method, response body bytes, milliseconds taken.
	attrMethod     = "method"
	attrBytes      = "bytes"
	attrDurationMS = "duration_ms"
)

// config is every flag of every role (SPEC §2). parseFlags fills it;
// check rejects values that parse but make no sense.
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
	// restMaxBody is the largest REST request body, bytes; larger is 413.
	restMaxBody int64
	// maxDocument is the largest stored document, bytes; 0 is restMaxBody.
	maxDocument int64
	// maxPatchOps, maxBatchKeys, maxDepth and validationTimeout are the
	// other request budgets (budget.go).
	maxPatchOps, maxBatchKeys, maxDepth int
	validationTimeout                   time.Duration
	// entityCacheSize is the cache of the in-process worker of -role=all
	// when cacheSize is not given.
	entityCacheSize int
	// cacheSize is the most entities a processing worker caches.
	cacheSize int
	// cacheSizeSet is true when -cache-size was given explicitly.
	cacheSizeSet bool
	// cacheTTL expires cache entries; 0 keeps them until evicted.
	cacheTTL time.Duration
	// mainAddr is the main worker's -cluster-addr a proc subscribes to.
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
	// Errors come back as one line naming the flag; usage only for -h.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.role, "role", "all", "what to run: all, main or proc (or bench, the load tool, and backup, restore, verify, the storage tools: -role=bench -h and -role=backup -h list their flags)")
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
	fs.Int64Var(&c.restMaxBody, "rest-max-body-size", 1048576, "largest REST request body, bytes")
	fs.Int64Var(&c.maxDocument, "max-document-size", 0, "largest stored document, bytes, also the result of a PATCH (0 = -rest-max-body-size)")
	fs.IntVar(&c.maxPatchOps, "max-patch-ops", defaultMaxPatchOps, "most operations of one JSON Patch")
	fs.IntVar(&c.maxBatchKeys, "max-batch-keys", defaultMaxBatchKeys, "most entities of one PUT /entity/{db}, keys of one POST /api/databases/{db}/get")
	fs.IntVar(&c.maxDepth, "max-json-depth", defaultMaxJSONDepth, "deepest nesting of arrays and objects in a body, document or schema")
	fs.DurationVar(&c.validationTimeout, "validation-timeout", defaultValidationTimeout, "longest validation of one document against one schema")
	fs.IntVar(&c.entityCacheSize, "entity-cache-size", 1024, "entities cached by the in-process worker of -role=all")
	fs.IntVar(&c.cacheSize, "cache-size", 256, "most entities held in a processing worker's LRU")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", 0, "0 = LRU only; positive also expires cache entries")
	fs.StringVar(&c.mainAddr, "main-addr", "127.0.0.1:50052", "main worker's -cluster-addr (proc)")
	fs.StringVar(&c.workerID, "worker-id", "", "unique worker ID (default hostname)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", logFormatText, "log lines as text (key=value) or json (one object per line)")
	fs.StringVar(&c.joinToken, "join-token", "", "cluster join secret, >= 32 bytes (env "+joinTokenEnv+"; visible in ps, prefer -join-token-file)")
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.cacheSizeSet = c.cacheSizeSet || f.Name == "cache-size" })
	var err error
	if c.trustedProxies, err = parseTrustedProxies(*trusted); err != nil {
		os.Unsetenv(joinTokenEnv)
		return c, err
	}
	if c.oidc.roleMap, err = parseRoleMap(*roleMap); err != nil {
		os.Unsetenv(joinTokenEnv)
		return c, err
	}
	if err := c.check(); err != nil {
		os.Unsetenv(joinTokenEnv)
		return c, err
	}
	return c, c.loadJoinToken()
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

// loadJoinToken takes the join token from -join-token, -join-token-file
// or DELTADB_JOIN_TOKEN (cleared once read, so that no child process
// inherits it) and checks its length.
func (c *config) loadJoinToken() error {
	env := secretEnv(joinTokenEnv)
	if c.joinTokenFile != "" {
		if c.joinToken != "" {
			return errors.New("-join-token-file: give -join-token or -join-token-file, not both")
		}
		b, err := os.ReadFile(c.joinTokenFile)
		if err != nil {
			return fmt.Errorf("-join-token-file: %w", err)
		}
		c.joinToken = strings.TrimSpace(string(b))
	}
	c.joinToken = cmp.Or(c.joinToken, strings.TrimSpace(env))
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
		return fmt.Errorf("-role: unknown role %q (want all, main, proc, bench, backup, restore or verify)", c.role)
	case c.grpcMaxRecv <= 0:
		return fmt.Errorf("-grpc-max-recv-msg-size: must be positive, got %d", c.grpcMaxRecv)
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
	case c.entityCacheSize <= 0:
		return fmt.Errorf("-entity-cache-size: must be positive, got %d", c.entityCacheSize)
	case c.cacheSize <= 0:
		return fmt.Errorf("-cache-size: must be positive, got %d", c.cacheSize)
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
	}
	if _, err := slogLevel(c.logLevel); err != nil {
		return err
	}
	if c.logFormat != logFormatText && c.logFormat != logFormatJSON {
		return fmt.Errorf("-log-format: %q is not text or json", c.logFormat)
	}
	return c.oidc.check()
}

// check rejects -oidc-* values that make no sense together.
func (o *oidcFlags) check() error {
	switch {
	case o.issuer == "" && (o.audience != "" || o.required):
		return errors.New("-oidc-issuer: -oidc-audience and -oidc-required need -oidc-issuer")
	case o.issuer == "":
		return nil
	case !strings.HasPrefix(o.issuer, "https://") && !strings.HasPrefix(o.issuer, "http://"):
		return fmt.Errorf("-oidc-issuer: %q is not an http(s) URL", o.issuer)
	case o.audience == "":
		return errors.New("-oidc-audience: required with -oidc-issuer (the aud your provider puts in DeltaDatabase's tokens)")
	case o.permsClaim == "":
		return errors.New("-oidc-permissions-claim: must not be empty")
	case o.skew < 0:
		return fmt.Errorf("-oidc-clock-skew: must not be negative, got %v", o.skew)
	}
	return nil
}

// budgets are the request budgets of the flags.
func (c *config) budgets() budgets {
	return budgets{maxDocument: cmp.Or(c.maxDocument, c.restMaxBody), maxPatchOps: c.maxPatchOps,
		maxBatchKeys: c.maxBatchKeys, maxDepth: c.maxDepth, validationTimeout: c.validationTimeout}
}

// slogLevel parses -log-level.
func slogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("-log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// run is the whole program: main is a thin shell around it so that tests
// can run it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if toolRoles[roleArg(args)] {
		return runTool(ctx, args, stdout, stderr)
	}
	if benchRole(args) {
		b, err := parseBenchFlags(args, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		return runBench(ctx, b, stdout)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	level, _ := slogLevel(cfg.logLevel)
	log, err := newLogger(stderr, cfg.logFormat, level)
	if err != nil {
		return err
	}
	switch cfg.role {
	case "all":
		return runMain(ctx, cfg, stdout, log, true)
	case "main":
		return runMain(ctx, cfg, stdout, log, false)
	default:
		return runProc(ctx, cfg, log)
	}
}

// runMain runs the main worker: REST and UI, gRPC for workers and clients,
// routing. With local it also runs the in-process processing worker of
// -role=all, called without a network hop.
func runMain(ctx context.Context, cfg config, stdout io.Writer, log *slog.Logger, local bool) error {
	reg := newRegistry()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	st = meterStore(reg, st)
	keys, err := loadKeys(ctx, cfg, st, stdout)
	if err != nil {
		return err
	}
	defer zero(keys.master)
	defer zero(keys.previous)
	ring, err := newKeyring(st, keys.master, cfg.keyID)
	if err != nil {
		return err
	}
	defer ring.close()
	if keys.previous != nil {
		if err := ring.addPrevious(keys.previous, keys.previousID); err != nil {
			return err
		}
	}
	if keys.note != "" {
		log.Info(keys.note)
	}
	schemas := newSchemaRegistry(st)
	schemas.lim = cfg.budgets()
	registerSchemaMetrics(reg, schemas)
	cat := newCatalog(st)
	rt := newRouter(log, time.Now, saturatedInFlight)
	rt.written = cat.wrote
	defer rt.closeAll()
	if local {
		w, err := addLocalWorker(cfg, rt, st, schemas, ring, log)
		if err != nil {
			return err
		}
		registerCacheMetrics(reg, w.stats)
	}
	registerWorkerMetrics(reg, rt.list)
	if err := checkAdminKeyStrength(cfg, keys.admin, log); err != nil {
		return err
	}
	auth, err := newMainAuthenticator(ctx, cfg, keys, st, log)
	if err != nil {
		return err
	}
	registerAuthMetrics(reg, auth)
	gm := newGRPCMetrics(reg)
	svc := &mainService{router: rt, auth: auth, catalog: cat, schemas: schemas, master: keys.master, keyID: cfg.keyID, workerTTL: cfg.workerTTL,
		every: heartbeatEvery, maxMsg: cfg.grpcMaxRecv, lim: cfg.budgets(), rand: cryptoRand, now: time.Now, log: log,
		tokens: map[[32]byte]string{}, ring: ring, previous: keys.previous, previousID: keys.previousID}
	clientTLS, err := loadClientTLS(cfg)
	if err != nil {
		return err
	}
	var clientCreds grpccreds.TransportCredentials
	if clientTLS != nil {
		clientCreds = grpccreds.NewTLS(clientTLS)
	}
	gs, err := serveGRPC(cmp.Or(cfg.grpcAddr, "127.0.0.1:50051"), "-grpc-addr", "grpc listening", cfg.grpcMaxRecv, svc, clientCreds, log,
		gm.serverOptions()...)
	if err != nil {
		return err
	}
	defer stopGRPC(gs)
	if cfg.joinToken != "" {
		ident, err := newClusterIdentity(cfg.clusterTLSCert, cfg.clusterTLSKey, cfg.clusterTLSCA, cryptoRand, time.Now())
		if err != nil {
			return err
		}
		svc.join, svc.ident = []byte(cfg.joinToken), ident
		// Workers prove themselves with the join token; with a CA they
		// must also show a certificate it signed.
		cs, err := serveGRPC(cmp.Or(cfg.clusterAddr, "127.0.0.1:50052"), "-cluster-addr", "cluster listening", cfg.grpcMaxRecv, svc,
			grpccreds.NewTLS(ident.tlsConfig(anyPeer, ident.ca != nil)), log, gm.serverOptions()...)
		if err != nil {
			return err
		}
		defer stopGRPC(cs)
	} else {
		log.Info("no join token: this main worker accepts no external processing workers")
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go svc.monitor(mctx)
	go auth.sessions.watch(mctx, revocationReload, func(err error) { log.Warn("reload session revocations", attrErr, err) })
	if keys.previous != nil {
		rot := &rotator{st: st, ring: ring, log: log, pace: newPacer(cfg.keyJobRate), done: func() {
			ring.dropPrevious()
			svc.rotationDone()
			zero(keys.previous)
		}}
		go func() {
			if err := rot.run(mctx); err != nil && mctx.Err() == nil {
				log.Error("master key rotation stopped; restart with both keys to resume it", attrErr, err)
			}
		}()
	}
	rest := newRESTServer(auth, rt, cat, schemas, rt.list, cfg.restMaxBody, log)
	rest.lim = cfg.budgets()
	rest.setMetrics(reg)
	rest.jobs = newKeyJobs(mctx, st, ring, cfg.keyJobRate, svc.waitKeysEpoch, log)
	if err := rest.jobs.resume(); err != nil {
		return err
	}
	// loadKeys returned: the master key matched the stored key check.
	rest.ready.keyChecked.Store(true)
	if cfg.opsAddr != "" {
		// Health and readiness on the ops listener are the REST port's.
		stop, err := serveOps(cfg.opsAddr, newOpsMux(rest, reg, cfg.pprof), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	return serveHTTP(ctx, cfg.restAddr, rest, clientTLS, cfg.shutdownDelay, log)
}

// loadClientTLS is the TLS configuration of the client-facing listeners
// (REST, UI, client gRPC) from -tls-cert and -tls-key; nil without them.
func loadClientTLS(cfg config) (*tls.Config, error) {
	if cfg.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// revocationReload is how often a main worker reads the session
// revocations again, so a logout at another main worker takes effect.
const revocationReload = 10 * time.Second

// newMainAuthenticator builds the authenticator of runMain from the flags
// and the start keys.
func newMainAuthenticator(ctx context.Context, cfg config, keys startKeys, st store, log *slog.Logger) (*authenticator, error) {
	sessionKey, err := deriveSessionKey(keys.master)
	if err != nil {
		return nil, err
	}
	oidc, err := startOIDC(ctx, cfg.oidc, log)
	if err != nil {
		return nil, err
	}
	maxFailures := cfg.authFailLimit
	if maxFailures == 0 {
		maxFailures = -1 // off
	}
	return newAuthenticator(ctx, authConfig{adminHash: &keys.adminHash, st: st, keyFile: cfg.keyStore,
		sessionKey: sessionKey, clientTTL: cfg.clientTTL, now: time.Now, maxFailures: maxFailures,
		trustedProxies: cfg.trustedProxies, oidc: oidc})
}

// startOIDC builds the OIDC verifier of the -oidc-* flags (nil without
// -oidc-issuer) and fetches the provider's keys once. A provider that
// cannot be reached stops the start with -oidc-required; otherwise it is
// logged and tried again when tokens arrive.
func startOIDC(ctx context.Context, f oidcFlags, log *slog.Logger) (*oidcVerifier, error) {
	if f.issuer == "" {
		return nil, nil
	}
	v := newOIDCVerifier(oidcConfig{issuer: f.issuer, audience: f.audience, permsClaim: f.permsClaim,
		dbsClaim: f.dbsClaim, roleMap: f.roleMap, skew: f.skew})
	if err := v.start(ctx); err != nil {
		if f.required {
			return nil, fmt.Errorf("-oidc-issuer: %w", err)
		}
		log.Warn("oidc provider unreachable; its tokens are refused until its keys can be fetched", "issuer", f.issuer, attrErr, err)
		return v, nil
	}
	log.Info("oidc tokens accepted", "issuer", f.issuer, "audience", f.audience)
	return v, nil
}

// runProc runs a processing worker: it serves ProcessingWorker on
// -grpc-addr and keeps a subscription to the main worker at -main-addr,
// from which it receives the master key.
func runProc(ctx context.Context, cfg config, log *slog.Logger) error {
	reg := newRegistry()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	st = meterStore(reg, st)
	schemas := newSchemaRegistry(st)
	schemas.lim = cfg.budgets()
	registerSchemaMetrics(reg, schemas)
	w, err := buildWorker(cfg, st, schemas, log)
	if err != nil {
		return err
	}
	id := w.id
	registerCacheMetrics(reg, w.stats)
	ident, err := newClusterIdentity(cfg.clusterTLSCert, cfg.clusterTLSKey, cfg.clusterTLSCA, cryptoRand, time.Now())
	if err != nil {
		return err
	}
	srv := &workerServer{w: w, now: time.Now}
	addr := cmp.Or(cfg.grpcAddr, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-grpc-addr: listen %s: %w", addr, err)
	}
	// Mutual TLS: only the main worker that proved the join token in the
	// last Subscribe gets through the handshake.
	pin := &pinnedMain{}
	gs := grpc.NewServer(append(append(grpcServerOptions(cfg.grpcMaxRecv), newGRPCMetrics(reg).serverOptions()...),
		grpc.Creds(grpccreds.NewTLS(ident.tlsConfig(pin.check, true))))...)
	pb.RegisterProcessingWorkerServer(gs, srv)
	go gs.Serve(ln)
	defer stopGRPC(gs)
	log.Info("worker listening", attrWorker, id, attrAddr, ln.Addr().String())
	if cfg.opsAddr != "" {
		health := &workerHealth{srv: srv, st: st, now: time.Now, log: log}
		context.AfterFunc(ctx, func() { health.stopping.Store(true) })
		stop, err := serveOps(cfg.opsAddr, newOpsMux(health, reg, cfg.pprof), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The key pair lives only in memory; 2048-bit RSA-OAEP keeps start-up
	// fast and is enough to wrap a 256-bit key.
	priv, err := rsa.GenerateKey(cryptoRand, 2048)
	if err != nil {
		return fmt.Errorf("generate worker key pair: %w", err)
	}
	sub := &subscriber{id: id, mainAddr: cfg.mainAddr, advertise: cmp.Or(cfg.advertiseAddr, ln.Addr().String()), priv: priv, srv: srv,
		join: []byte(cfg.joinToken), ident: ident, pin: pin,
		log: log, maxMsg: cfg.grpcMaxRecv, now: time.Now, retry: subscribeBackoff}
	err = sub.run(ctx)
	// Forget the keys: the keyring is dropped and the call key zeroed.
	if k := w.keys.Swap(nil); k != nil {
		k.close()
	}
	if old := srv.sub.Swap(nil); old != nil {
		zero(old.callKey)
	}
	return err
}

// saturatedInFlight is the number of calls in flight at which an entity's
// owner is passed over for a less loaded worker (reads only).
const saturatedInFlight = 64

// addLocalWorker adds the in-process worker of -role=all to the router
// and returns it. It shares the main worker's keyring.
func addLocalWorker(cfg config, rt *router, st store, schemas *schemaRegistry, keys *keyring, log *slog.Logger) (*worker, error) {
	w, err := buildWorker(cfg, st, schemas, log)
	if err != nil {
		return nil, err
	}
	w.setKeys(keys)
	rt.add(&workerConn{id: w.id, keyID: cfg.keyID, proc: w, stats: w.stats,
		tags: map[string]string{"grpc_addr": "in-process"}})
	return w, nil
}

// buildWorker builds the processing worker of -role=proc, or the
// in-process one of -role=all, whose cache holds -cache-size entities when
// that flag is given, else -entity-cache-size (SPEC §9).
func buildWorker(cfg config, st store, schemas *schemaRegistry, log *slog.Logger) (*worker, error) {
	id := workerIDOrHost(cfg.workerID)
	if err := validateDBName(id); err != nil {
		return nil, fmt.Errorf("-worker-id: %w", err)
	}
	size := cfg.cacheSize
	if cfg.role != "proc" && !cfg.cacheSizeSet {
		size = cfg.entityCacheSize
	}
	w := newWorker(id, st, schemas, newLRU[string, cachedEntity](size, cfg.cacheTTL, time.Now), log)
	w.lim = cfg.budgets()
	return w, nil
}

// serveGRPC serves the MainWorker service on addr (given by flag), over
// creds unless nil, with extra options (the metrics' interceptors), and
// logs msg with the address.
func serveGRPC(addr, flag, msg string, maxMsg int, svc *mainService, creds grpccreds.TransportCredentials, log *slog.Logger,
	extra ...grpc.ServerOption) (*grpc.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", flag, addr, err)
	}
	opts := append(grpcServerOptions(maxMsg), extra...)
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	pb.RegisterMainWorkerServer(gs, svc)
	go gs.Serve(ln)
	log.Info(msg, attrAddr, ln.Addr().String(), "tls", creds != nil)
	return gs, nil
}

// workerIDOrHost is -worker-id, or the hostname when it is empty.
func workerIDOrHost(id string) string {
	if id != "" {
		return id
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "worker"
}

// openStore opens the configured storage backend.
func openStore(ctx context.Context, cfg config) (store, error) {
	if cfg.s3.endpoint != "" {
		st, err := newS3Store(ctx, s3Config{Endpoint: cfg.s3.endpoint, AccessKey: cfg.s3.accessKey,
			SecretKey: cfg.s3.secretKey, Bucket: cfg.s3.bucket, Region: cfg.s3.region, UseSSL: cfg.s3.useSSL,
			// Four attempts of 10 s with backoff stay inside the REST
			// server's 60 s write timeout, so a hung S3 server is a 503,
			// not a dropped connection.
			Timeout: 10 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("-s3-endpoint %s: %w", cfg.s3.endpoint, err)
		}
		return st, nil
	}
	return newFSStore(cfg.sharedFS)
}

// serveHTTP serves rest on addr, over TLS with tlsConf unless nil, until
// ctx ends. Then readiness turns false at once (GET /readyz 503), requests
// are still served for delay, so that load balancers see it and stop
// sending, and the server shuts down gracefully, letting in-flight
// requests finish.
func serveHTTP(ctx context.Context, addr string, rest *restServer, tlsConf *tls.Config, delay time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-rest-addr: listen %s: %w", addr, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	srv := &http.Server{
		Handler:           rest,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("rest listening", attrAddr, ln.Addr().String(), "tls", tlsConf != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("serve rest: %w", err)
	case <-ctx.Done():
	}
	rest.ready.stopping.Store(true)
	log.Info("shutting down: not ready", "drain_after", delay)
	select {
	case err := <-errc:
		return fmt.Errorf("serve rest: %w", err)
	case <-time.After(delay):
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown rest: %w", err)
	}
	return nil
}
