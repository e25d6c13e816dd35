package main

// The main worker (-role=main, and -role=all with its in-process
// processing worker): every part built from the flags, its listeners, its
// background work and its shutdown.

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"

	pb "deltadatabase/proto"
)

// mainNodeOptions are what a main node takes besides its flags.
type mainNodeOptions struct {
	// st is the opened storage; the node owns it and closes it last.
	st store
	// stdout is where keys generated at start are printed, once.
	stdout io.Writer
	log    *slog.Logger
	// revocationReload is how often the session revocations are read
	// again (and expired ones pruned); 0 is revocationReload.
	revocationReload time.Duration
	// bound are listeners bound before the storage was opened (bindMain);
	// the node takes them and binds the others itself.
	bound boundAddrs
	// oidc is the OpenID verifier started before the storage was opened
	// (runMain); nil: the node starts it, if -oidc-issuer is set.
	oidc *oidcVerifier
}

// mainNode is one main worker: REST and the UI, gRPC for workers and
// client applications, routing, and with -role=all the in-process
// processing worker, called without a network hop. newMainNode builds
// every part, its listeners bound; run serves and starts the background
// work (worker monitor, session revocations, master-key rotation, key
// jobs) under one context; Close stops them in the reverse order of
// building: stop accepting and drain, cancel the background work and wait
// for it, then close the keyring and the store. Nothing runs after Close
// returns.
type mainNode struct {
	cfg  config
	log  *slog.Logger
	reg  *registry
	st   store
	keys startKeys
	ring *keyring
	rt   *router
	// local is the in-process worker of -role=all; nil with -role=main.
	local *worker
	// ho hands entities over between the workers' write-ahead logs; nil
	// when workers keep none (S3, -wal=false).
	ho *handovers
	// feed is the change feed (feed.go); nil on S3.
	feed *changeFeed
	auth *authenticator
	svc  *mainService
	rest *restServer
	// jobs runs the key jobs: rekeys and, after a start with the
	// previous master key, the rotation.
	jobs *keyJobs
	// audit writes the audit log; nil without -audit-log.
	audit *auditLog
	// reload is the session revocations' reload interval.
	reload time.Duration

	// grpc serves client applications (and, without a join token,
	// nothing else); cluster serves workers, nil without a join token.
	grpc, cluster *grpcListener
	// split hands the client port's worker connections to cluster
	// (clientport.go); grpc serves its client share.
	split *portSplit
	// http serves rest on restLn.
	http   *http.Server
	restLn net.Listener
	// stopOps stops the ops listener; nil without -ops-addr.
	stopOps func()
	// bound are the listeners bound ahead not taken yet (closed by
	// Close).
	bound boundAddrs

	// ctx is the context of the background work; Close cancels it. wg
	// counts the node's goroutines (background work and servers).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// errc takes the first failure of a server, which ends run.
	errc      chan error
	closeOnce sync.Once
	closeErr  error
}

// grpcListener is a gRPC server and the listener it is to serve.
type grpcListener struct {
	srv *grpc.Server
	ln  net.Listener
	// what names it in errors and the log: "grpc", "cluster".
	what string
	// tls says whether it serves TLS.
	tls bool
}

// runMain runs a main worker until ctx ends or one of its servers fails.
// Its addresses are bound first: one already in use stops the start
// before the storage is touched and keys are generated and printed.
func runMain(ctx context.Context, cfg config, stdout io.Writer, log *slog.Logger) error {
	if err := preflightMain(cfg); err != nil {
		return err
	}
	// A provider that -oidc-required cannot reach stops the start before
	// keys are generated too.
	oidc, err := startOIDC(ctx, cfg.oidc, log)
	if err != nil {
		return err
	}
	bound, err := bindMain(cfg)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		bound.close()
		return err
	}
	n, err := newMainNode(ctx, cfg, mainNodeOptions{st: st, stdout: stdout, log: log, bound: bound, oidc: oidc})
	if err != nil {
		bound.close()
		return err
	}
	return n.run(ctx)
}

// preflightMain checks the flags naming files or directories that the
// main worker reads or writes only after its keys are loaded: one that cannot serve stops
// the start with one line naming it before the storage is opened and
// keys are generated, printed and stored (a later start on that storage
// without those keys would be refused).
func preflightMain(cfg config) error {
	if _, err := loadClientTLS(cfg); err != nil {
		return err
	}
	if cfg.joinToken != "" && (cfg.clusterTLSCert != "" || cfg.clusterTLSCA != "") {
		if _, err := newClusterIdentity(cfg.clusterTLSCert, cfg.clusterTLSKey, cfg.clusterTLSCA, cryptoRand, time.Now()); err != nil {
			return err
		}
	}
	if p := cfg.audit.path; p != "" && p != "-" {
		// A device or a pipe is a place for it (a collector reading a
		// FIFO), a directory is not.
		if err := fileCanBe(p, false); err != nil {
			return fmt.Errorf("-audit-log: %w", err)
		}
	}
	if d := cfg.changes.dir; d != "" {
		// Made here rather than as the feed opens, after the keys.
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("-changes-dir: %w", err)
		}
	}
	if cfg.keyStore != "" {
		// The key store's directory is made as the key store opens.
		if err := os.MkdirAll(filepath.Dir(cfg.keyStore), 0o700); err != nil {
			return fmt.Errorf("-key-store: %w", err)
		}
		if err := fileCanBe(cfg.keyStore, true); err != nil {
			return fmt.Errorf("-key-store: %w", err)
		}
	}
	return nil
}

// fileCanBe reports why path cannot be a file to write: it is a
// directory (or, when regular, anything but a regular file), or its
// directory is missing (where it is not made) or is not one.
func fileCanBe(path string, regular bool) error {
	if fi, err := os.Stat(path); err == nil && (fi.IsDir() || regular && !fi.Mode().IsRegular()) {
		return fmt.Errorf("%s is not a regular file", path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// defaultClusterAddr is -cluster-addr's default.
const defaultClusterAddr = "127.0.0.1:50052"

// boundAddrs are listeners bound ahead, by flag name. The zero value
// binds nothing ahead. Not safe for concurrent use.
type boundAddrs map[string]net.Listener

// bindMain binds the TCP addresses of cfg's main worker: client gRPC,
// the cluster port with a join token, REST and the ops listener.
func bindMain(cfg config) (boundAddrs, error) {
	b := boundAddrs{}
	addrs := [][2]string{{"-grpc-addr", cmp.Or(cfg.grpcAddr, defaultGRPCAddr)}, {"-rest-addr", cfg.restAddr}}
	if cfg.joinToken != "" {
		addrs = append(addrs, [2]string{"-cluster-addr", cmp.Or(cfg.clusterAddr, defaultClusterAddr)})
	}
	if cfg.opsAddr != "" {
		addrs = append(addrs, [2]string{"-ops-addr", cfg.opsAddr})
	}
	for _, a := range addrs {
		ln, err := boundAddrs(nil).take(a[0], a[1])
		if err != nil {
			b.close()
			return nil, err
		}
		b[a[0]] = ln
	}
	return b, nil
}

// take returns the listener bound ahead for flag, or binds addr now.
func (b boundAddrs) take(flag, addr string) (net.Listener, error) {
	if ln := b[flag]; ln != nil {
		delete(b, flag)
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", flag, addr, err)
	}
	return ln, nil
}

// close closes the listeners not taken.
func (b boundAddrs) close() {
	for flag, ln := range b {
		ln.Close()
		delete(b, flag)
	}
}

// newMainNode builds the main worker of cfg over o.st: its keys, keyring,
// router (and in-process worker with -role=all), authenticator, data
// plane, gRPC service, key jobs, REST server and listeners. On failure
// everything built is closed again, o.st included.
func newMainNode(ctx context.Context, cfg config, o mainNodeOptions) (_ *mainNode, err error) {
	n := &mainNode{cfg: cfg, log: o.log, bound: o.bound, reg: newRegistry(), reload: cmp.Or(o.revocationReload, revocationReload),
		errc: make(chan error, 4)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.st = meterStore(n.reg, o.st)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := n.buildKeys(ctx, o.stdout); err != nil {
		return nil, err
	}
	data, err := n.buildDataPath(ctx)
	if err != nil {
		return nil, err
	}
	if short, _ := weakAdminKey(cfg, n.keys.admin); short {
		n.log.Warn("admin key is short: use 16 or more random characters before serving beyond loopback", "length", utf8.RuneCountInString(n.keys.admin))
	}
	if n.auth, err = newMainAuthenticator(ctx, cfg, n.keys, n.st, o.oidc, n.log); err != nil {
		return nil, err
	}
	registerAuthMetrics(n.reg, n.auth)
	auditKeys, err := deriveAuditKeys(n.keys.master)
	if err != nil {
		return nil, err
	}
	if n.audit, err = openMainAudit(cfg.audit, auditKeys, o.stdout, n.log); err != nil {
		return nil, err
	}
	if err := n.buildService(data); err != nil {
		return nil, err
	}
	n.jobs = newKeyJobs(n.ctx, keyJobsConfig{st: n.st, ring: n.ring, log: n.log, rate: cfg.keyJobRate,
		barrier: n.keysBarrier, keys: data.catalog.keys, rotation: n.newRotator()})
	// loadKeys returned: the master key matched the stored key check.
	n.rest = newRESTServer(restOptions{auth: n.auth, data: data, workers: n.rt.list, maxBody: cfg.restMaxBody,
		jobs: n.jobs, reg: n.reg, keyChecked: true, logHealth: n.logHealth(), feedHealth: n.feedHealth(),
		oidcLogin: newOIDCLogin(cfg.oidc, n.auth.oidc), ctx: n.ctx,
		audit: n.audit, auditNamesKey: auditKeys.names, log: n.log})
	return n, n.listen()
}

// buildKeys loads the start keys (loadKeys) and builds the keyring.
func (n *mainNode) buildKeys(ctx context.Context, stdout io.Writer) error {
	keys, err := loadKeys(ctx, n.cfg, n.st, stdout)
	if err != nil {
		return err
	}
	n.keys = keys
	if n.ring, err = newKeyring(n.st, keys.master, n.cfg.keyID); err != nil {
		return err
	}
	if keys.previous != nil {
		if err := n.ring.addPrevious(keys.previous, keys.previousID); err != nil {
			return err
		}
	}
	if keys.note != "" {
		n.log.Info(keys.note)
	}
	return nil
}

// buildDataPath builds the schema registry, the catalog, the router with
// the in-process worker of -role=all, and the data plane over them.
func (n *mainNode) buildDataPath(ctx context.Context) (*dataPlane, error) {
	schemas := newSchemaRegistry(n.st, n.cfg.budgets())
	registerSchemaMetrics(n.reg, schemas)
	cat := newCatalog(n.st)
	if fsst, ok := walStore(n.cfg, n.st); ok {
		n.ho = newHandovers(fsst, n.log, time.Now)
	}
	n.rt = newRouter(n.log, time.Now, saturatedInFlight, cat.wrote, n.ho)
	n.rt.awaitWorkersUntil = time.Now().Add(workersAwaitAtStart)
	if n.ho != nil {
		cat.setFlush(n.rt.flushLogs)
	}
	if err := n.buildFeed(); err != nil {
		return nil, err
	}
	if n.cfg.role == "all" {
		w, err := addLocalWorker(ctx, n.cfg, n.rt, n.st, schemas, n.ring, n.log)
		if err != nil {
			return nil, err
		}
		n.local = w
		registerCacheMetrics(n.reg, w.stats)
		if w.wal != nil {
			registerWALMetrics(n.reg, w.wal)
		}
	}
	if n.ho != nil {
		local := ""
		if n.local != nil {
			local = n.local.id
		}
		if err := n.ho.scan(local, logAwait); err != nil {
			return nil, err
		}
		n.ho.takeOverDead(ctx, n.rt)
	}
	if n.feed != nil && n.local != nil {
		if held := n.ho.awaiting(); len(held) > 0 {
			// A worker that still runs holds its log, which may hold any
			// entity's last write: the writes a crash left open are
			// settled once it has subscribed again and checkpointed it
			// (or it is taken over), which needs this main worker to
			// serve. Until then, as with -role=main: before each key's
			// next write, and in the background.
			if open := n.feed.openWrites(); open > 0 {
				n.log.Info("change feed: writes a crash left open are settled once the logs of running workers are handed over",
					"open", open, "workers", held)
			}
		} else if left := n.feed.settleOpen(ctx); left > 0 {
			// The in-process worker answers now: settle the writes a
			// crash left open before serving.
			return nil, fmt.Errorf("change feed: %d writes left open by a crash cannot be settled", left)
		}
	}
	registerWorkerMetrics(n.reg, n.rt.list)
	d := newDataPlane(n.rt, cat, schemas, n.cfg.budgets())
	d.feed = n.feed
	return d, nil
}

// buildFeed opens the change feed in -changes-dir, else under the
// filesystem backend's root, and has the router log every write in it.
// S3 storage without -changes-dir keeps no feed.
func (n *mainNode) buildFeed() error {
	dir := n.cfg.changes.dir
	if dir == "" {
		fsst, ok := fsBackend(n.st)
		if !ok {
			n.log.Info("no change feed: S3 storage and no -changes-dir")
			return nil
		}
		dir = filepath.Join(fsst.root, changesDirName)
	}
	f, err := attachFeed(n.rt, dir, n.st, n.cfg.changes, n.log)
	if err != nil && n.cfg.changes.dir != "" {
		return fmt.Errorf("-changes-dir: %w", err) // name the flag to fix
	}
	if err != nil {
		return err
	}
	n.feed = f
	registerFeedMetrics(n.reg, f)
	return nil
}

// buildService builds the gRPC service, with the cluster identity when
// there is a join token.
func (n *mainNode) buildService(data *dataPlane) error {
	var ident *clusterIdentity
	var join []byte
	if n.cfg.joinToken != "" {
		var err error
		if ident, err = newClusterIdentity(n.cfg.clusterTLSCert, n.cfg.clusterTLSKey, n.cfg.clusterTLSCA, cryptoRand, time.Now()); err != nil {
			return err
		}
		join = []byte(n.cfg.joinToken)
	}
	n.svc = newMainService(mainServiceOptions{router: n.rt, auth: n.auth, data: data, ring: n.ring, master: n.keys.master,
		keyID: n.cfg.keyID, previous: n.keys.previous, previousID: n.keys.previousID, workerTTL: n.cfg.workerTTL,
		maxMsg: n.cfg.grpcMaxRecv, join: join, ident: ident, audit: n.audit, log: n.log})
	return nil
}

// keysBarrier returns once every available worker has applied data-key
// epoch e and the records their logs held then are in the entity files:
// sealed under a key a rekey is about to retire, they must be resealed
// by its pass, which reads the files.
func (n *mainNode) keysBarrier(ctx context.Context, e uint64) error {
	if err := n.svc.waitKeysEpoch(ctx, e); err != nil {
		return err
	}
	return flushBeforeScan(ctx, n.rt.flushLogs)
}

// logHealth is the health of the write-ahead logs for readiness: the
// in-process worker's, and the logs of other workers the main worker
// hands over (one damaged blocks its entities); nil without logs.
func (n *mainNode) logHealth() func() error {
	var own func() error
	if n.local != nil && n.local.wal != nil {
		own = n.local.wal.health
	}
	switch {
	case n.ho == nil:
		return own
	case own == nil:
		return n.ho.health
	}
	return func() error {
		if err := own(); err != nil {
			return err
		}
		return n.ho.health()
	}
}

// feedHealth is the health of the change feed's log for readiness; nil
// without a feed.
func (n *mainNode) feedHealth() func() error {
	if n.feed == nil {
		return nil
	}
	return n.feed.log.health
}

// newRotator is the rotator of a start with the previous master key; nil
// without one. Once done it drops the previous key everywhere.
func (n *mainNode) newRotator() *rotator {
	if n.keys.previous == nil {
		return nil
	}
	return &rotator{st: n.st, ring: n.ring, log: n.log, done: func() {
		n.ring.dropPrevious()
		n.svc.rotationDone()
		zero(n.keys.previous)
	}}
}

// listen binds the client gRPC, cluster and REST listeners.
func (n *mainNode) listen() error {
	clientTLS, err := loadClientTLS(n.cfg)
	if err != nil {
		return err
	}
	var clientCreds grpccreds.TransportCredentials
	if clientTLS != nil {
		clientCreds = grpccreds.NewTLS(clientTLS)
	}
	extra := append(newGRPCMetrics(n.reg).serverOptions(), grpcKeepalive(n.cfg.grpcMaxIdle)...)
	if n.grpc, err = listenGRPC(n.bound, "grpc", cmp.Or(n.cfg.grpcAddr, defaultGRPCAddr), "-grpc-addr", n.cfg.grpcMaxRecv, n.svc,
		clientCreds, extra...); err != nil {
		return err
	}
	n.split = splitPort(n.grpc.ln, n.log)
	n.grpc.ln = n.split.client
	if ident := n.svc.ident; ident != nil {
		// Workers prove themselves with the join token; with a CA they
		// must also show a certificate it signed.
		if n.cluster, err = listenGRPC(n.bound, "cluster", cmp.Or(n.cfg.clusterAddr, defaultClusterAddr), "-cluster-addr", n.cfg.grpcMaxRecv,
			n.svc, grpccreds.NewTLS(ident.tlsConfig(anyPeer, ident.ca != nil)), extra...); err != nil {
			return err
		}
	}
	if n.restLn, err = n.bound.take("-rest-addr", n.cfg.restAddr); err != nil {
		return err
	}
	n.restLn = deadlineListener(n.restLn, restLimits.write)
	if clientTLS != nil {
		n.restLn = tls.NewListener(n.restLn, clientTLS)
	}
	n.http = newHTTPServer(n.rest, restLimits, n.log)
	return nil
}

// restAddr is the address the REST listener is bound to.
func (n *mainNode) restAddr() string { return n.restLn.Addr().String() }

// run starts the node and serves until ctx ends or a server fails, then
// closes it. When ctx ends, readiness turns false at once (GET /readyz
// 503) and requests are still served for -shutdown-delay, so that load
// balancers see it and stop sending, before Close drains them.
func (n *mainNode) run(ctx context.Context) error {
	err := n.start()
	if err == nil {
		err = n.serveUntil(ctx)
	}
	return errors.Join(err, n.Close())
}

// start resumes the key jobs of an earlier run and starts the background
// work and the servers.
func (n *mainNode) start() error {
	if err := n.jobs.resume(); err != nil {
		return err
	}
	n.background(n.svc.monitor)
	if n.ho != nil {
		n.background(func(ctx context.Context) { n.ho.run(ctx, n.rt, n.svc.forget) })
	}
	n.background(n.rest.stats.run)
	if n.feed != nil {
		n.background(n.feed.run)
	}
	n.background(func(ctx context.Context) { n.auth.runUsageFlush(ctx, n.log) })
	if n.audit != nil {
		n.background(n.audit.run)
	}
	n.background(func(ctx context.Context) {
		n.auth.sessions.watch(ctx, n.reload, func(err error) { n.log.Warn("reload session revocations", attrErr, err) })
	})
	if n.cfg.opsAddr != "" {
		// Health and readiness on the ops listener are the REST port's.
		ln, err := n.bound.take("-ops-addr", n.cfg.opsAddr)
		if err != nil {
			return err
		}
		n.stopOps = serveOps(ln, newOpsMux(n.rest, n.reg, n.cfg), n.log)
	}
	for _, g := range []*grpcListener{n.grpc, n.cluster} {
		if g != nil {
			n.serve("serve "+g.what, func() error { return g.srv.Serve(g.ln) })
			n.log.Info(g.what+" listening", attrAddr, g.ln.Addr().String(), "tls", g.tls)
		}
	}
	if n.cluster != nil {
		// Workers that name the client port (-main-addr=<main>:50051).
		n.serve("serve cluster on the client port", func() error { return n.cluster.srv.Serve(n.split.cluster) })
	} else {
		n.split.cluster.Close()
		n.log.Info("no join token: this main worker accepts no external processing workers")
	}
	n.serve("serve rest", func() error { return n.http.Serve(n.restLn) })
	n.log.Info("rest listening", attrAddr, n.restAddr(), "tls", n.cfg.tlsCert != "")
	return nil
}

// background runs f in a goroutine of the node, with the context Close
// cancels.
func (n *mainNode) background(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// serve runs a server's serve in a goroutine of the node. Its failure
// (anything but the end Close asks for) goes to errc, prefixed with what.
func (n *mainNode) serve(what string, serve func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case n.errc <- fmt.Errorf("%s: %w", what, err):
			default:
			}
		}
	}()
}

// serveUntil waits for ctx to end, then turns not ready and keeps
// serving for -shutdown-delay; or for a server to fail.
func (n *mainNode) serveUntil(ctx context.Context) error {
	select {
	case err := <-n.errc:
		return err
	case <-ctx.Done():
	}
	n.rest.ready.stopping.Store(true)
	n.log.Info("shutting down: not ready", "drain_after", n.cfg.shutdownDelay)
	select {
	case err := <-n.errc:
		return err
	case <-time.After(n.cfg.shutdownDelay):
		return nil
	}
}

// Close stops the node: it stops accepting and lets the requests in
// flight finish (REST, client and cluster gRPC, ops), cancels the
// background work and waits for it and the key jobs, closes the workers'
// connections, then the keyring and the store. It may be called more than
// once, and on a node built in part.
func (n *mainNode) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

// close is Close, once.
func (n *mainNode) close() error {
	var errs []error
	if n.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := n.http.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown rest: %w", err))
			n.http.Close()
		}
		cancel()
	}
	if n.restLn != nil {
		n.restLn.Close() // unless served, Shutdown does not close it
	}
	for _, g := range []*grpcListener{n.cluster, n.grpc} {
		if g != nil {
			stopGRPC(g.srv)
			g.ln.Close()
		}
	}
	if n.split != nil {
		n.split.close()
	}
	if n.stopOps != nil {
		n.stopOps()
	}
	n.bound.close()
	n.cancel()
	if n.jobs != nil {
		n.jobs.wait()
	}
	if n.rest != nil && n.rest.checks != nil {
		n.rest.checks.stop()
	}
	n.wg.Wait()
	if n.feed != nil {
		if err := n.feed.close(); err != nil {
			errs = append(errs, fmt.Errorf("close change log: %w", err))
		}
	}
	if n.local != nil {
		if err := n.local.close(); err != nil {
			errs = append(errs, fmt.Errorf("close write-ahead log: %w", err))
		}
	}
	if n.audit != nil {
		// After the servers drained and run returned: the closing
		// checkpoint is the last line.
		if err := n.audit.close(); err != nil {
			errs = append(errs, fmt.Errorf("close audit log: %w", err))
		}
	}
	if n.rt != nil {
		n.rt.closeAll()
	}
	if n.ring != nil {
		n.ring.close()
	}
	zero(n.keys.master)
	zero(n.keys.previous)
	if err := n.st.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close storage: %w", err))
	}
	return errors.Join(errs...)
}

// openMainAudit opens the audit log of the -audit-* flags; nil without
// -audit-log.
func openMainAudit(f auditFlags, keys auditKeys, stdout io.Writer, log *slog.Logger) (*auditLog, error) {
	if f.path == "" {
		return nil, nil
	}
	l, err := openAuditLog(auditOptions{path: f.path, stdout: stdout, keys: keys, hmacNames: f.hmacNames, required: f.required,
		maxBytes: f.maxBytes, checkpointEvery: f.checkpointEvery, flushInterval: f.flushInterval, log: log})
	if err != nil {
		return nil, err
	}
	log.Info("audit log", "audit_log", f.path, "required", f.required, "hmac_names", f.hmacNames)
	return l, nil
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

// newMainAuthenticator builds the authenticator of a main node from the flags
// and the start keys, with oidc, the OpenID verifier runMain started (nil:
// started here).
func newMainAuthenticator(ctx context.Context, cfg config, keys startKeys, st store, oidc *oidcVerifier, log *slog.Logger) (*authenticator, error) {
	sessionKey, err := deriveSessionKey(keys.master)
	if err != nil {
		return nil, err
	}
	if oidc == nil {
		if oidc, err = startOIDC(ctx, cfg.oidc, log); err != nil {
			return nil, err
		}
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
		dbsClaim: f.dbsClaim, roleMap: f.roleMap, skew: f.skew, allowHTTP: f.allowHTTP})
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

// logAwait is how long a main worker at its start waits for a worker
// whose process holds its write-ahead log to subscribe before taking
// the log over: long enough for a worker to notice the main worker's
// restart (heartbeatMisses) and to subscribe again through its backoff.
const logAwait = 15 * time.Second

// walStore is the store of the workers' write-ahead logs: the
// filesystem backend with -wal on.
func walStore(cfg config, st store) (*fsStore, bool) {
	fsst, ok := fsBackend(st)
	if !ok || !cfg.wal.on {
		return nil, false
	}
	return fsst, true
}

// fsBackend is the filesystem backend under st, if it is one.
func fsBackend(st store) (*fsStore, bool) {
	if m, ok := st.(*meteredStore); ok {
		st = m.store
	}
	fsst, ok := st.(*fsStore)
	return fsst, ok
}

// saturatedInFlight is the number of calls in flight at which an entity's
// owner is passed over for a less loaded worker (reads only).
const saturatedInFlight = 64

// addLocalWorker adds the in-process worker of -role=all to the router
// and returns it. It shares the main worker's keyring.
func addLocalWorker(ctx context.Context, cfg config, rt *router, st store, schemas *schemaRegistry, keys *keyring, log *slog.Logger) (*worker, error) {
	w, err := buildWorker(ctx, cfg, st, schemas, log)
	if err != nil {
		return nil, err
	}
	w.setKeys(keys)
	rt.add(&workerConn{id: w.id, keyID: cfg.keyID, proc: w, stats: w.stats,
		tags: map[string]string{"grpc_addr": "in-process"}})
	return w, nil
}

// listenGRPC binds addr (given by flag; bound ahead in bound, if there)
// for a gRPC server of the MainWorker service, over creds unless nil,
// with extra options (the metrics' interceptors); what names it.
func listenGRPC(bound boundAddrs, what, addr, flag string, maxMsg int, svc *mainService, creds grpccreds.TransportCredentials,
	extra ...grpc.ServerOption) (*grpcListener, error) {
	ln, err := bound.take(flag, addr)
	if err != nil {
		return nil, err
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
	return &grpcListener{srv: gs, ln: ln, what: what, tls: creds != nil}, nil
}
