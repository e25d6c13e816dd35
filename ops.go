package main

// The ops listener (-ops-addr), on every role: GET /healthz, GET /readyz
// and GET /metrics for orchestrators and Prometheus, and with -pprof the
// profiler under /debug/pprof/. It asks for no credential, so bind it
// where only they reach it. A main worker answers health and readiness
// as on its REST port; a processing worker, which has no other HTTP
// port, answers its own (workerHealth).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"
)

// newOpsMux is the ops listener's route table. health answers GET
// /healthz and GET /readyz; reg is served at GET /metrics. The profiler's
// handlers go on this mux (never http.DefaultServeMux) only with
// withPprof.
func newOpsMux(health http.Handler, reg *registry, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { serveMetrics(w, reg) })
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no route for %s %s on the ops listener", r.Method, r.URL.Path)})
	})
	return mux
}

// serveOps serves h on addr (-ops-addr) until the returned stop is
// called, which shuts the listener down gracefully and returns once the
// server has stopped. A failure of the server is logged: the ops listener
// serves no client data, and its failure does not stop the role.
func serveOps(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-ops-addr: listen %s: %w", addr, err)
	}
	// A CPU profile or trace runs for as long as it is asked to (30 s by
	// default); the profiler refuses one longer than the write timeout.
	srv := newHTTPServer(h, 5*time.Minute, log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve ops", attrErr, err)
		}
	}()
	log.Info("ops listening", attrAddr, ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// workerHealth answers GET /healthz and GET /readyz for a processing
// worker: ready when it holds a current subscription (the master key and
// a token the main worker accepts), its storage answers, and it is not
// shutting down.
type workerHealth struct {
	srv *workerServer
	st  store
	now func() time.Time
	log *slog.Logger
	// stopping is set when the process received SIGTERM.
	stopping atomic.Bool
}

// ServeHTTP answers /healthz (200 while the process serves HTTP) and
// /readyz (200 or 503 with every check named, as health.go's).
func (h *workerHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/readyz" {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	checks := map[string]readyCheck{"serving": {OK: true}, "subscribed": {OK: true}, "storage": {OK: true}}
	if h.stopping.Load() {
		checks["serving"] = readyCheck{Reason: "shutting down"}
	}
	if sub := h.srv.sub.Load(); sub == nil {
		checks["subscribed"] = readyCheck{Reason: "not subscribed to a main worker"}
	} else if h.now().After(sub.expires) {
		checks["subscribed"] = readyCheck{Reason: "worker token expired"}
	}
	if err := probeStore(r.Context(), h.st); err != nil {
		h.log.Warn("readiness: storage probe", attrWorker, h.srv.w.id, attrErr, err)
		checks["storage"] = readyCheck{Reason: "storage unreachable"}
	}
	failed := ""
	for _, name := range []string{"serving", "subscribed", "storage"} {
		if c := checks[name]; !c.OK {
			failed += fmt.Sprintf("; %s: %s", name, c.Reason)
		}
	}
	if failed == "" {
		writeJSON(w, http.StatusOK, readyBody{Status: "ready", Checks: checks})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, readyBody{Status: "not ready", Checks: checks, Error: "not ready" + failed})
}
