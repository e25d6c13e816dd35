package main

// The ops listener (-ops-addr), on every role: GET /healthz (and
// /health), GET /readyz and GET /metrics for orchestrators and
// Prometheus, and with -pprof the profiler under /debug/pprof/. It asks
// for no credential, so bind it where only they reach it. A main worker
// answers health and readiness as on its REST port; a processing
// worker, which has no other HTTP port, answers its own (workerHealth).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// newOpsMux is the ops listener's route table. health answers GET
// /health, /healthz and GET /readyz; reg is served at GET /metrics. The profiler's
// handlers go on this mux (never http.DefaultServeMux) only with -pprof
// (cfg.pprof); its command line hides cfg's secrets (redactArgs).
func newOpsMux(health http.Handler, reg *registry, cfg config) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /health", health) // the original's liveness path, as on the REST port
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { serveMetrics(w, reg) })
	if cfg.pprof {
		cmdline := strings.Join(redactArgs(os.Args, cfg.secrets()), "\x00")
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, cmdline)
		})
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A path served for other methods answers 405 with Allow, as on
		// the REST port; only a path with no route is a 404.
		if allow := opsAllowed(mux, r); allow != "" {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": sentencef("method %q is not allowed on %q; allowed: %s", r.Method, r.URL.Path, allow)})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": sentencef("no route for %q on the ops listener", r.Method+" "+r.URL.Path)})
	})
	return mux
}

// opsAllowed returns the methods (GET implying HEAD) the ops mux serves
// r's path with, "" when only its catch-all does.
func opsAllowed(mux *http.ServeMux, r *http.Request) string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != "/" && p != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return strings.Join(allow, ", ")
}

// redactedValue replaces a secret in the profiler's command line.
const redactedValue = "REDACTED"

// redactArgs is args as GET /debug/pprof/cmdline may show them to anyone
// reaching the ops listener: the value of every flag whose name speaks of
// a key, token, secret or password replaced, whether given as
// -admin-key=VALUE or as -admin-key VALUE (the argument after such a flag
// is replaced whole, even where the flag was a bool and it was another
// flag), and every occurrence of secrets (the values the flags parsed to)
// in any other value as well.
func redactArgs(args, secrets []string) []string {
	out := slices.Clone(args)
	afterSecretFlag := false
	for i, a := range out {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		isFlag := strings.HasPrefix(a, "-") && a != "-"
		switch {
		case afterSecretFlag:
			out[i] = redactedValue
		case isFlag && hasValue && secretFlagName(name):
			out[i] = a[:len(a)-len(value)] + redactedValue
		case isFlag && hasValue:
			out[i] = a[:len(a)-len(value)] + redactSecrets(value, secrets)
		case !isFlag:
			out[i] = redactSecrets(a, secrets)
		}
		afterSecretFlag = !afterSecretFlag && isFlag && !hasValue && secretFlagName(name)
	}
	return out
}

// redactSecrets replaces every occurrence of secrets in s.
func redactSecrets(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, redactedValue)
		}
	}
	return s
}

// secretFlagName reports whether a flag of this name may hold a secret.
func secretFlagName(name string) bool {
	for _, word := range []string{"key", "token", "secret", "password"} {
		if strings.Contains(name, word) {
			return true
		}
	}
	return false
}

// secrets are the secret values of c that a flag may have given.
func (c config) secrets() []string {
	return []string{c.adminKey, c.masterKey, c.previousMasterKey, c.joinToken, c.s3.secretKey, c.s3.accessKey}
}

// serveOps serves h on ln (-ops-addr's) until the returned stop is
// called, which shuts the listener down gracefully and returns once the
// server has stopped. A failure of the server is logged: the ops listener
// serves no client data, and its failure does not stop the role.
func serveOps(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	// A CPU profile or trace runs for as long as it is asked to (30 s by
	// default); the profiler moves its answer's write deadline on by that
	// when the server has a WriteTimeout, so this one has it too (its
	// timer per request does not matter on this listener).
	lim := restLimits
	lim.write = 5 * time.Minute
	srv := newHTTPServer(h, lim, log)
	srv.WriteTimeout = lim.write
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(deadlineListener(ln, lim.write)); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
	}
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
	if l := h.srv.w.wal; l != nil {
		logCheck(checks, l.health, h.log)
	}
	failed := ""
	for _, name := range []string{"serving", "subscribed", "storage", "write_ahead_log"} {
		if c, ok := checks[name]; ok && !c.OK {
			failed += fmt.Sprintf("; %s: %s", name, c.Reason)
		}
	}
	if failed == "" {
		writeJSON(w, http.StatusOK, readyBody{Status: "ready", Checks: checks})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, readyBody{Status: "not ready", Checks: checks, Error: "not ready" + failed})
}
