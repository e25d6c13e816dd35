package main

// Waits for child processes (the binary, node's oidc-provider, Prometheus,
// SeaweedFS, chromium, podman) take as long as the machine needs: a
// budget that holds on an idle machine, stretched by how loaded the
// machine is while the test waits, with a line of progress every 10 s.
// A new CI machine starting cold next to other jobs is slower by a factor
// no fixed deadline guesses; the load average measures it.

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// slowdownEnv overrides the measured slowdown, for a machine whose load
// average does not tell (a container limited to fewer CPUs than it sees).
const slowdownEnv = "DELTADB_TEST_SLOWDOWN"

// slowdown is how many times slower than an idle machine this one runs
// now: the load average of the last minute per CPU (how many runnable
// processes share each core), at least 1.
func slowdown() float64 {
	if v, err := strconv.ParseFloat(os.Getenv(slowdownEnv), 64); err == nil && v >= 1 {
		return v
	}
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	load, err := strconv.ParseFloat(strings.Fields(string(raw) + " 0")[0], 64)
	if err != nil {
		return 1
	}
	return max(1, load/float64(runtime.NumCPU()))
}

// scaled is d stretched by the machine's slowdown now: the timeout of a
// single wait for a child process.
func scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * slowdown())
}

// goTestDefaultTimeout is the -timeout go test gives a test binary when
// it is given none; go test itself kills the binary a minute later, so a
// test binary cannot stretch it.
const goTestDefaultTimeout = 10 * time.Minute

// noteDefaultTimeout says, when the suite runs under go test's default
// timeout on a loaded machine, how to give it more time: the suite, child
// processes and all, that fits in 10 minutes on an idle machine did not at
// load 14 per CPU on two cores (-short runs fit). TestMain calls it after parsing the flags.
func noteDefaultTimeout() {
	f := flag.Lookup("test.timeout")
	if f == nil || testing.Short() || f.Value.String() != goTestDefaultTimeout.String() {
		return
	}
	if s := slowdown(); s >= 2 {
		d := scaled(goTestDefaultTimeout).Round(time.Minute)
		fmt.Fprintf(os.Stderr, "the machine is loaded (%.1f per CPU): go test stops this suite after %v; give it more with go test -timeout=%v ./...\n", s, goTestDefaultTimeout, d)
	}
}

// progressEvery is how often a long wait says what it waits for.
const progressEvery = 10 * time.Second

// wait is one wait for a child process: its budget on an idle machine,
// stretched by the highest slowdown seen while waiting (the load average
// lags, so a wait never shrinks its deadline). Create it with newWait;
// poll over. Not safe for concurrent use.
type wait struct {
	t      testing.TB
	what   string
	budget time.Duration
	start  time.Time
	factor float64
	said   time.Duration // progress logged up to this much waiting
}

// newWait starts a wait for what (a phrase: "the provider's issuer").
func newWait(t testing.TB, what string, budget time.Duration) *wait {
	return &wait{t: t, what: what, budget: budget, start: time.Now(), factor: slowdown()}
}

// over reports whether the wait has run past its stretched budget. Every
// progressEvery it logs how long it has waited and the deadline.
func (w *wait) over() bool {
	w.factor = max(w.factor, slowdown())
	waited, limit := time.Since(w.start), time.Duration(float64(w.budget)*w.factor)
	if waited >= w.said+progressEvery {
		w.said = waited.Truncate(progressEvery)
		w.t.Logf("still waiting for %s after %v (giving up after %v: %v budget x %.1f load per CPU)",
			w.what, w.said, limit.Round(time.Second), w.budget, w.factor)
	}
	return waited > limit
}

// String says how long the wait ran against its limit, for failures.
func (w *wait) String() string {
	return w.what + " after " + time.Since(w.start).Round(100*time.Millisecond).String() + " (budget " +
		w.budget.String() + " x " + strconv.FormatFloat(w.factor, 'f', 1, 64) + " load per CPU)"
}

func TestSlowdown(t *testing.T) {
	t.Setenv(slowdownEnv, "3")
	if got := scaled(10 * time.Second); got != 30*time.Second {
		t.Errorf("scaled(10s) with %s=3 = %v, want 30s", slowdownEnv, got)
	}
	t.Setenv(slowdownEnv, "")
	if s := slowdown(); s < 1 {
		t.Errorf("slowdown() = %v, want at least 1", s)
	}
	w := newWait(t, "nothing", time.Hour)
	if w.over() {
		t.Error("a fresh wait of an hour is over")
	}
	w = newWait(t, "nothing", 0)
	time.Sleep(time.Millisecond)
	if !w.over() {
		t.Error("a wait past its budget is not over")
	}
}
