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
//	audit-verify
//	      check an audit log's chain and checkpoints (auditverify.go)
//
// Files, top-down (one flat package; each file owns one concern):
//
//	main.go        this map; run, the roles' dispatch, opening the storage
//	mainnode.go    the main worker of -role=main and -role=all: its parts,
//	               listeners, background work and shutdown
//	procnode.go    the processing worker of -role=proc: its parts,
//	               listener, subscription and shutdown
//	config.go      the flags of the server roles (config), their checks;
//	               parseArgs, the one parse of every flag set
//	bench.go       -role=bench, the load tool, with its own flag set
//	benchfind.go   the load tool's queries: chat documents, an index,
//	               indexed and scanning finds
//	backup.go      -role=backup and -role=restore, the storage tools' flag
//	               set
//	archive.go     the backup archive: a tar of objects and a manifest
//	               of their SHA-256
//	verify.go      -role=verify: decrypt every stored entity, count by
//	               database, format and failure
//	progress.go    the storage tools' progress: a bar on a terminal,
//	               lines otherwise
//	errors.go      every sentinel error and errorTable, what each means
//	               (HTTP status, gRPC code, sentence, nothing written);
//	               requestError, the sentence a client may see, kept
//	               apart from the cause that is logged
//	budget.go      the request budgets (document size, patch operations,
//	               keys per PUT, JSON nesting, validation time, $ref
//	               expansion and compile cost of schemas) and the UTF-8
//	               check of bodies
//	requestid.go   the request ID in the context; random ID prefixes
//	rest.go        the REST server: route table, middleware (request ID,
//	               authentication, authorization), writeError,
//	               the one JSON body decoder
//	handlers.go    the REST handlers of health, sessions, API keys,
//	               schemas and admin routes; they return errors, rest.go
//	               writes them
//	entities.go    the REST handlers of entities (/entity/{db}, get many)
//	databases.go   the REST handlers of databases: bindings, deletion,
//	               key listings
//	dataplane.go   the data plane: every entity, database and schema
//	               operation of both front ends (REST, gRPC Process):
//	               names, budgets, schema resolution, one validation,
//	               preconditions, routing, what a principal may see
//	batch.go       the data plane's operations on several entities: the
//	               PUT of one or more documents, the read of many keys
//	jsonscan.go    a PUT's JSON in one pass: documents checked and
//	               compacted, bodies split into their members
//	observe.go     what each finished REST request leaves for the access
//	               log and the metrics (route, status, bytes, duration)
//	audit.go       the audit log (-audit-log): one chained JSON line per
//	               REST request, HMAC checkpoints, group-committed
//	               writes, rotation; POST /admin/audit/hash
//	auditverify.go -role=audit-verify: the first line changed, removed,
//	               reordered or cut
//	logging.go     -log-format, the request ID on every line logged for a
//	               request, the access line (written without slog)
//	httplimits.go  the HTTP listeners' time limits (slow headers,
//	               bodies and readers, idle connections); the write
//	               deadline each connection keeps, moved about once a
//	               second
//	logbuffer.go   the log's output: lines written in batches, flushed
//	               within 200 ms, after a warning and at exit
//	gcfloor.go     -gc-heap-floor: GOGC tuned after each collection so
//	               that a small live heap is not collected dozens of
//	               times a second
//	health.go      GET /healthz and GET /readyz: liveness, the readiness
//	               checks, the not-ready state after SIGTERM
//	ops.go         the ops listener (-ops-addr, every role): health,
//	               readiness, metrics, the profiler with -pprof
//	metrics.go     the metrics of a process in the Prometheus text format
//	               (counters, gauges, histograms), GET /metrics
//	stats.go       the dashboard's last hour, sampled from the metrics:
//	               GET /admin/stats
//	openapi.go     GET /openapi.json: the embedded openapi.json
//	ui.go, static/ the embedded web UI
//	auth.go        authenticator, principals and permissions, authorize
//	               (REST and gRPC), the failed-auth rate limit and the
//	               client address behind trusted proxies
//	oidc.go        OpenID Connect access tokens as credentials: discovery,
//	               the JWKS cache, JWT signatures (RS256, PS256, ES256)
//	               and claims, the principal a token's claims describe
//	oidclogin.go   the web UI's sign-in with the OpenID provider: the
//	               authorization code flow with PKCE, GET and POST
//	               /api/login/oidc
//	sessions.go    session tokens: HMAC-signed, stateless; revocations
//	               (logout) kept in the store; the per-key session cap
//	apikeys.go     the API key model and its persistence in the store;
//	               rotation with a grace period, editing
//	keyusage.go    the last use of each API key: noted in memory, written
//	               to the key store at most once a minute
//	keyroutes.go   the REST handlers of key rotation and editing
//	mainworker.go  the main worker's gRPC service: worker subscription,
//	               heartbeats, Process for client applications
//	reflection.go  gRPC server reflection on the client port (grpcurl):
//	               the client's view of deltadb.proto
//	routing.go     the router: rendezvous hashing, batches, epochs, and
//	               the main worker's stub for remote workers
//	proc.go        the processing worker: entity reads and writes, its
//	               cache, preconditions; clientStatus
//	versions.go    entity versions: kept, listed, read, soft-deleted,
//	               undeleted, destroyed and pruned by the owner under the
//	               entity's lock; their REST handlers
//	workerserver.go
//	               a remote processing worker's gRPC server: signed calls
//	               only, failures as the main worker reads them
//	callstream.go  the long-lived Calls stream of a worker link, both
//	               sides: many signed calls, answers by number, deadlines,
//	               cancellation, backpressure
//	framelink.go   the same messages as frames on a TLS link of their own,
//	               reached by ALPN on the worker's gRPC port, with its
//	               bounds and keepalive
//	subscriber.go  a remote worker's subscription to the main worker:
//	               subscribe, heartbeat, renew
//	grpc.go        options of every gRPC server and client connection,
//	               graceful stop
//	cluster.go     cluster security: the join token, its proofs bound to
//	               the TLS exporter, TLS identities and pinning, the
//	               signing of main-to-worker calls and their replay window
//	clientport.go  the client gRPC port's split: a worker's TLS (its
//	               ALPN) to the cluster server, the rest to the client one
//	locks.go       the one per-key lock, honouring the request's context
//	backoff.go     bounded exponential backoff with jitter
//	periodic.go    runEvery, the loop of the background tasks that repeat
//	conditional.go ETags and preconditions
//	patch.go       JSON Merge Patch and JSON Patch
//	schema.go      the JSON Schema registry and validation
//	catalog.go     the main worker's account of storage: schema bindings
//	               (cached), database and key listings
//	layout.go      the storage layout: every object key, named after what
//	               it holds
//	keyindex.go    the in-memory index of each database's entity keys that
//	               listings page through
//	find.go        POST /api/databases/{db}/find (CouchDB's _find): the
//	               request, the answer, bookmarks, the find budgets
//	findplan.go    a query's plan (an index range or a scan; streamed or
//	               sorted by the main worker) and POST .../explain
//	findexec.go    running a plan across the workers: fan-out to the
//	               owners, merge, pages that budgets end with a bookmark
//	findworker.go  a worker's side of a query: its entities read (cache
//	               first), matched, projected, within the call's budgets
//	selector.go    the selector language (CouchDB's Mango): parsing within
//	               budgets, normalization, matching
//	collate.go     JSON values read in place and ordered as CouchDB
//	               collates them: the keys of comparisons, indexes, sorts
//	index.go       query indexes: their definitions (main worker) and the
//	               in-memory entries each worker keeps for what it owns
//	queries.go     the REST handlers of find, explain and indexes
//	transfer.go    a database's export and import as NDJSON: the
//	               streamed export, the import's batches and report
//	names.go       validation of database names, schema IDs and entity keys
//	masterkey.go   master and admin keys as configured or generated;
//	               secretFlag, the one "flag or file or env" of secrets
//	keycheck.go    the key check: the value stored under _meta/ that
//	               tells the right master key from a wrong one, and the
//	               check of a start (with -previous-master-key, a rotation)
//	crypto.go      the entity envelope (AES-256-GCM) and key wrapping
//	rotation.go    online master-key rotation: the rotation record and
//	               the rewrapping of every database's data keys
//	jobs.go        key jobs: their records, resumption, listing
//	               (GET /admin/jobs) and pacing (-key-job-rate)
//	rekey.go       the rekey job (POST /admin/databases/{db}/rekey)
//	checks.go      checks of stored entities against a schema: the jobs
//	               and their routes (POST and GET /api/databases/{db}/check),
//	               the databases bound to a schema
//	keyring.go     envelope encryption: each database's data keys, wrapped
//	               by the master key under _meta/datakeys/; the keyring
//	               that seals and opens entities of both formats and
//	               re-encrypts a database's entities
//	lru.go         the LRU cache
//	store.go       the storage interface; segments of long names, shared
//	               by both backends
//	fsstore.go     the filesystem backend
//	beneath.go     opening paths under its root without following a
//	               symbolic link (openat2, or a component walk)
//	wal.go         the write-ahead log's format: records, frames,
//	               segment files, reading a log back (torn tail, damage)
//	walwriter.go   appending to the log: group commit, the fence,
//	               faults, checkpoints
//	walapply.go    the log's applier: the table of records not yet in
//	               their entity files (what the owner's reads see
//	               first), writing them in the background, its room,
//	               the flush before a scan
//	walreplay.go   taking a log over: claiming its directory, applying
//	               its records to the entity files, cutting it
//	changelog.go   the change feed's log: intents, completions, group
//	               commit, segments, retention
//	feed.go        the change feed: logging each routed write, settling
//	               writes a crash left open, stream budgets, metrics
//	changes.go     GET /api/databases/{db}/changes: pages, long-poll,
//	               Server-Sent Events
//	feedticket.go  stream tickets: the change feed for a browser's
//	               EventSource, which sends no Authorization header
//	handover.go    the main worker's handovers of the workers' logs when
//	               entities change owner: checkpoint or takeover first,
//	               writes of those entities wait
//	walbarrier.go  every reader of storage sees every acknowledged
//	               write: the main worker flushes the workers' logs
//	               before a scan; a storage tool reads the logs' records
//	               over the entity files
//	s3store.go     the S3 backend
//	sigv4.go       AWS Signature V4 for the S3 backend
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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

// run is the whole program: main is a thin shell around it so that tests
// can run it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if toolRoles[roleArg(args)] {
		return runTool(ctx, args, stdout, stderr)
	}
	if roleArg(args) == "audit-verify" {
		return runAuditVerify(args, stdout, stderr)
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
	// Lines are written in batches (logbuffer.go); the deferred Close
	// writes the last of them when the role returns, after SIGTERM too.
	out := newLogBuffer(stderr, logFlushEvery)
	defer out.Close()
	log, err := newLogger(out, cfg.logFormat, level)
	if err != nil {
		return err
	}
	warnOpenSecretFiles(log, cfg.secretFiles())
	defer startGCFloor(cfg.heapFloor()).stop()
	switch cfg.role {
	case "all", "main":
		return runMain(ctx, cfg, stdout, log)
	default:
		return runProc(ctx, cfg, log)
	}
}

// roleArg returns the value of the first -role flag in args, "" for none.
// It lets the roles with a flag set of their own be told apart before
// any flag set parses args.
func roleArg(args []string) string {
	for i, a := range args {
		if a == "--" {
			return ""
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "role" {
			continue
		}
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		return val
	}
	return ""
}

// buildWorker builds the processing worker of -role=proc, or the
// in-process one of -role=all, whose cache holds -cache-size entities when
// that flag is given, else -entity-cache-size (ARCHITECTURE.md "Roles"),
// and at most -entity-cache-bytes of them.
func buildWorker(ctx context.Context, cfg config, st store, schemas *schemaRegistry, log *slog.Logger) (*worker, error) {
	id := workerIDOrHost(cfg.workerID)
	if err := validateWorkerID(id); err != nil {
		return nil, fmt.Errorf("-worker-id: %w", err)
	}
	size := cfg.cacheSize
	if cfg.role != "proc" && !cfg.cacheSizeSet {
		size = cfg.entityCacheSize
	}
	// The log retries a failed entity-file write under the entity's lock,
	// which is the worker's: w is set before any write can fail.
	var w *worker
	wal, err := openWorkerLog(ctx, cfg, id, st, func(ctx context.Context, db, key string) (func(), error) {
		return w.lockEntity(ctx, db, key)
	}, log)
	if err != nil {
		return nil, err
	}
	w = newWorker(id, st, schemas, newSizedLRU(size, cfg.cacheBytes(), cachedSize, cfg.cacheTTL, time.Now), cfg.budgets(), log, wal)
	return w, nil
}

// openWorkerLog opens the write-ahead log of worker id when the storage
// is a directory and -wal is on; nil otherwise (S3 acknowledges each
// write durably by itself). The main worker's own worker (-role=all)
// applies what its log holds from an earlier run at once; a remote
// worker's is applied by the main worker before its entities move
// (handover.go).
func openWorkerLog(ctx context.Context, cfg config, id string, st store, lock func(context.Context, string, string) (func(), error),
	log *slog.Logger) (*walLog, error) {
	fsst, ok := fsBackend(st)
	if !cfg.wal.on || !ok {
		return nil, nil
	}
	return openWAL(ctx, fsst, id, cfg.role == "all", walOptions{checkpointBytes: cfg.wal.checkpointBytes,
		checkpointInterval: cfg.wal.checkpointInterval, maxUnapplied: cfg.wal.checkpointBytes, applyDelay: cfg.wal.applyDelay,
		lock: lock, now: time.Now, log: log})
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
	st, err := newFSStoreLimit(cfg.sharedFS, cfg.budgets().storedObject())
	if err != nil {
		return nil, fmt.Errorf("-shared-fs: %w", err)
	}
	return st, nil
}
