package main

// The processing worker's role (-role=proc): its parts built from the
// flags, its listener, its subscription to the main worker and its
// shutdown.

import (
	"cmp"
	"context"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"

	pb "deltadatabase/proto"
)

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
