package main

// The main worker (-role=main, and -role=all with its in-process
// processing worker): every part built from the flags, its listeners, its
// background work and its shutdown.

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"

	pb "deltadatabase/proto"
)

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
	var rot *rotator
	if keys.previous != nil {
		rot = &rotator{st: st, ring: ring, log: log, done: func() {
			ring.dropPrevious()
			svc.rotationDone()
			zero(keys.previous)
		}}
	}
	rest := newRESTServer(auth, data, rt.list, cfg.restMaxBody, log)
	rest.setMetrics(reg)
	rest.jobs = newKeyJobs(mctx, keyJobsConfig{st: st, ring: ring, log: log, rate: cfg.keyJobRate,
		barrier: svc.waitKeysEpoch, keys: cat.keys, rotation: rot})
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
	srv := newHTTPServer(rest, restWriteTimeout, log)
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
