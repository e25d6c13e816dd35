package main

// Health: GET /healthz (the process is alive) and GET /readyz (this main
// worker can serve requests now), for load balancers and orchestrators.
// Both are unauthenticated and answer no data beyond their checks.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// readyStorageTimeout bounds the storage probe of one GET /readyz, so
// that a hung backend makes the main worker unready, not the probe hang.
const readyStorageTimeout = 2 * time.Second

// readiness is the state GET /readyz reports beyond what it probes.
type readiness struct {
	// keyChecked is set once the master key matched the stored key
	// check (runMain sets it after loadKeys).
	keyChecked atomic.Bool
	// stopping is set when the process received SIGTERM: from then on the
	// main worker is not ready, while in-flight requests drain.
	stopping atomic.Bool
	// logHealth is why the in-process worker's write-ahead log takes no
	// writes (walLog.health) or a handover is stuck on a damaged log
	// (handovers.health), nil while neither; nil without logs.
	logHealth func() error
	// feedHealth is why the change feed's log takes no records
	// (changeLog.health), nil while it does; nil without a feed.
	feedHealth func() error
}

// readyCheck is one check of GET /readyz: whether it passed, and why not.
type readyCheck struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// readyBody is the body of GET /readyz. Error is set when not ready, so
// that the answer is an error body like every other 503.
type readyBody struct {
	Status string                `json:"status"`
	Checks map[string]readyCheck `json:"checks"`
	Error  string                `json:"error,omitempty"`
}

// handleHealthz is GET /healthz: 200 while the process serves HTTP.
func (s *restServer) handleHealthz(w http.ResponseWriter, r *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleReadyz is GET /readyz: 200 when the storage answers, the master
// key passed the key check, at least one processing worker is Available
// and the process is not shutting down; 503 otherwise. The body names
// every check.
func (s *restServer) handleReadyz(w http.ResponseWriter, r *http.Request, _ principal) error {
	checks := map[string]readyCheck{
		"serving":   {OK: true},
		"storage":   {OK: true},
		"key_check": {OK: true},
		"workers":   {OK: true},
	}
	if s.ready.stopping.Load() {
		checks["serving"] = readyCheck{Reason: "shutting down"}
	}
	if err := s.probeStorage(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "readiness: storage probe", attrErr, err)
		checks["storage"] = readyCheck{Reason: "storage unreachable"}
	}
	if !s.ready.keyChecked.Load() {
		checks["key_check"] = readyCheck{Reason: "master key not checked against the storage"}
	}
	if !s.anyWorkerAvailable() {
		checks["workers"] = readyCheck{Reason: "no processing worker is Available"}
	}
	logCheck(checks, s.ready.logHealth, s.log)
	if s.ready.feedHealth != nil {
		checks["change_feed"] = readyCheck{OK: true}
		if err := s.ready.feedHealth(); err != nil {
			s.log.Warn("readiness: change feed", attrErr, err)
			checks["change_feed"] = readyCheck{Reason: "the change feed's log takes no records"}
		}
	}
	if s.audit != nil {
		checks["audit"] = readyCheck{OK: true}
		if s.audit.refusesAll() {
			checks["audit"] = readyCheck{Reason: "the audit log cannot be written (-audit-required)"}
		}
	}
	failed := ""
	for _, name := range []string{"serving", "storage", "key_check", "workers", "write_ahead_log", "change_feed", "audit"} {
		if c, ok := checks[name]; ok && !c.OK {
			failed += fmt.Sprintf("; %s: %s", name, c.Reason)
		}
	}
	if failed == "" {
		writeJSON(w, http.StatusOK, readyBody{Status: "ready", Checks: checks})
		return nil
	}
	writeJSON(w, http.StatusServiceUnavailable, readyBody{Status: "not ready", Checks: checks,
		Error: fmt.Sprintf("not ready%s (request ID %s)", failed, requestIDFrom(r.Context()))})
	return nil
}

// logCheck adds the check of the write-ahead logs to checks: not ready
// while the process's own takes no writes (a failed disk, the log taken
// over) or a log the main worker takes over is damaged.
func logCheck(checks map[string]readyCheck, health func() error, log *slog.Logger) {
	if health == nil {
		return
	}
	checks["write_ahead_log"] = readyCheck{OK: true}
	switch err := health(); {
	case errors.Is(err, errWALDamaged):
		log.Warn("readiness: write-ahead log", attrErr, err)
		checks["write_ahead_log"] = readyCheck{Reason: "a write-ahead log is damaged and cannot be applied"}
	case err != nil:
		log.Warn("readiness: write-ahead log", attrErr, err)
		checks["write_ahead_log"] = readyCheck{Reason: "the write-ahead log takes no writes"}
	}
}

// probeStorage reads the key check object: any answer but a failure to
// reach the backend (not found included) means the storage is reachable.
func (s *restServer) probeStorage(ctx context.Context) error {
	return probeStore(ctx, s.data.catalog.st)
}

// probeStore is probeStorage on st, for the processing worker's readiness
// too (ops.go).
func probeStore(ctx context.Context, st store) error {
	ctx, cancel := context.WithTimeout(ctx, readyStorageTimeout)
	defer cancel()
	if _, err := st.Get(ctx, keyCheckObject); err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("get %s: %w", keyCheckObject, err)
	}
	return nil
}

// anyWorkerAvailable reports whether a processing worker is in rotation.
func (s *restServer) anyWorkerAvailable() bool {
	for _, wi := range s.workers() {
		if wi.Status == statusAvailable {
			return true
		}
	}
	return false
}
