package main

// The processing worker's role (-role=proc): its parts built from the
// flags, its listener, its subscription to the main worker and its
// shutdown.

import (
	"cmp"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	pb "deltadatabase/proto"
)

// procNode is one processing worker: it serves ProcessingWorker on
// -grpc-addr and keeps a subscription to the main worker at -main-addr,
// from which it receives the master key. newProcNode builds every part,
// its listener bound; run serves and subscribes until ctx ends or the
// server fails; Close stops accepting and drains, then forgets the keys
// and closes the store.
type procNode struct {
	cfg config
	log *slog.Logger
	reg *registry
	st  store
	w   *worker
	srv *workerServer
	gs  *grpc.Server
	ln  net.Listener
	sub *subscriber
	// health answers the ops listener's probes.
	health *workerHealth
	// stopOps stops the ops listener; nil without -ops-addr.
	stopOps func()
	// wg counts the node's goroutines; errc takes the server's failure.
	wg        sync.WaitGroup
	errc      chan error
	closeOnce sync.Once
	closeErr  error
}

// runProc runs a processing worker until ctx ends or its server fails.
func runProc(ctx context.Context, cfg config, log *slog.Logger) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	n, err := newProcNode(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	return n.run(ctx)
}

// newProcNode builds the processing worker of cfg over st (which it owns
// and closes): its worker, gRPC server and listener, key pair and
// subscriber. On failure everything built is closed again, st included.
func newProcNode(ctx context.Context, cfg config, st store, log *slog.Logger) (_ *procNode, err error) {
	n := &procNode{cfg: cfg, log: log, reg: newRegistry(), errc: make(chan error, 1)}
	n.st = meterStore(n.reg, st)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	schemas := newSchemaRegistry(n.st, cfg.budgets())
	registerSchemaMetrics(n.reg, schemas)
	if n.w, err = buildWorker(ctx, cfg, n.st, schemas, log); err != nil {
		return nil, err
	}
	registerCacheMetrics(n.reg, n.w.stats)
	if n.w.wal != nil {
		registerWALMetrics(n.reg, n.w.wal)
	}
	ident, err := newClusterIdentity(cfg.clusterTLSCert, cfg.clusterTLSKey, cfg.clusterTLSCA, cryptoRand, time.Now())
	if err != nil {
		return nil, err
	}
	gm := newGRPCMetrics(n.reg)
	n.srv = &workerServer{w: n.w, now: time.Now, metrics: gm, maxMsg: cfg.grpcMaxRecv}
	n.health = &workerHealth{srv: n.srv, st: n.st, now: time.Now, log: log}
	addr := cmp.Or(cfg.grpcAddr, "127.0.0.1:0")
	if n.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("-grpc-addr: listen %s: %w", addr, err)
	}
	// Mutual TLS: only the main worker that proved the join token in the
	// last Subscribe gets through the handshake.
	pin := &pinnedMain{}
	opts := append(append(grpcServerOptions(cfg.grpcMaxRecv), gm.serverOptions()...), grpcKeepalive(cfg.grpcMaxIdle)...)
	n.gs = grpc.NewServer(append(append(opts, callServerOptions()...), grpc.Creds(newFrameCreds(ident.tlsConfig(pin.check, true), n.srv.dispatchFrames)))...)
	pb.RegisterProcessingWorkerServer(n.gs, n.srv)
	// The key pair lives only in memory; 2048-bit RSA-OAEP keeps start-up
	// fast and is enough to wrap a 256-bit key.
	priv, err := rsa.GenerateKey(cryptoRand, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate worker key pair: %w", err)
	}
	n.sub = &subscriber{id: n.w.id, mainAddr: cfg.mainAddr, advertise: cmp.Or(cfg.advertiseAddr, n.ln.Addr().String()),
		priv: priv, srv: n.srv, join: []byte(cfg.joinToken), ident: ident, pin: pin,
		log: log, maxMsg: cfg.grpcMaxRecv, now: time.Now, retry: subscribeBackoff}
	return n, nil
}

// run serves, starts the ops listener and keeps the subscription until
// ctx ends or the server fails, then closes the node.
func (n *procNode) run(ctx context.Context) error {
	err := n.start()
	if err == nil {
		err = n.subscribeUntil(ctx)
	}
	return errors.Join(err, n.Close())
}

// start serves the worker's gRPC server and the ops listener.
func (n *procNode) start() error {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.gs.Serve(frameListener{n.ln}); err != nil {
			n.errc <- fmt.Errorf("serve grpc: %w", err)
		}
	}()
	n.log.Info("worker listening", attrWorker, n.w.id, attrAddr, n.ln.Addr().String())
	if n.cfg.opsAddr != "" {
		ln, err := boundAddrs(nil).take("-ops-addr", n.cfg.opsAddr)
		if err != nil {
			return err
		}
		n.stopOps = serveOps(ln, newOpsMux(n.health, n.reg, n.cfg), n.log)
	}
	return nil
}

// subscribeUntil keeps the subscription until ctx ends (readiness turns
// false at once) or the server fails.
func (n *procNode) subscribeUntil(ctx context.Context) error {
	notReady := context.AfterFunc(ctx, func() { n.health.stopping.Store(true) })
	defer notReady()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		done <- n.sub.run(sctx)
	}()
	select {
	case err := <-done:
		return err
	case err := <-n.errc:
		cancel()
		<-done
		return err
	}
}

// Close stops accepting and lets the calls in flight finish, stops the
// ops listener, forgets the keys (the keyring is dropped and the call key
// zeroed), then closes the store. It may be called more than once, and
// on a node built in part.
func (n *procNode) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

// close is Close, once.
func (n *procNode) close() error {
	if n.srv != nil {
		n.srv.stop()
	}
	if n.gs != nil {
		stopGRPC(n.gs)
	}
	if n.srv != nil {
		n.srv.wait()
	}
	if n.ln != nil {
		n.ln.Close() // unless served, stopping does not close it
	}
	if n.stopOps != nil {
		n.stopOps()
	}
	n.wg.Wait()
	var errs []error
	if n.w != nil {
		if err := n.w.close(); err != nil {
			errs = append(errs, fmt.Errorf("close write-ahead log: %w", err))
		}
		if k := n.w.keys.Swap(nil); k != nil {
			k.close()
		}
	}
	if n.srv != nil {
		if old := n.srv.sub.Swap(nil); old != nil {
			zero(old.callKey)
		}
	}
	if err := n.st.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close storage: %w", err))
	}
	return errors.Join(errs...)
}
