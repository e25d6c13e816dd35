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
//	main.go        this map; building every role
//	config.go      the flags of the server roles (config), their checks
//	bench.go       -role=bench, the load tool, with its own flag set
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
//	               expansion of schemas) and the UTF-8 check of bodies
//	requestid.go   the request ID in the context
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
//	reflection.go  gRPC server reflection on the client port (grpcurl):
//	               the client's view of deltadb.proto
//	routing.go     the router: rendezvous hashing, batches, epochs, and
//	               the main worker's stub for remote workers (call signing)
//	proc.go        the processing worker, its gRPC server, the subscriber
//	cluster.go     cluster security: the join token, its proofs bound to
//	               the TLS exporter, TLS identities and pinning, the
//	               replay window of main-to-worker calls
//	locks.go       the one per-key lock, honouring the request's context
//	backoff.go     bounded exponential backoff with jitter
//	conditional.go ETags and preconditions
//	patch.go       JSON Merge Patch and JSON Patch
//	schema.go      the JSON Schema registry and validation
//	catalog.go     the storage layout above the store: object keys, schema
//	               bindings (cached), database and key listings
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
	"os"
	"os/signal"
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
	data := newDataPlane(rt, cat, schemas, cfg.budgets())
	svc := &mainService{router: rt, auth: auth, data: data, master: keys.master, keyID: cfg.keyID, workerTTL: cfg.workerTTL,
		every: heartbeatEvery, maxMsg: cfg.grpcMaxRecv, rand: cryptoRand, now: time.Now, log: log,
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
	rest := newRESTServer(auth, data, rt.list, cfg.restMaxBody, log)
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
	if flag == "-grpc-addr" { // the client port: reflection for grpcurl and the like
		if err := registerReflection(gs); err != nil {
			ln.Close()
			return nil, err
		}
	}
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
