package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guardStore is a store that records every use after its Close (and a
// Close while operations are in flight), and that can slow every
// operation down so that background work is in flight when its owner
// stops. It is safe for concurrent use.
type guardStore struct {
	store
	// delay is added to every operation.
	delay    atomic.Int64
	closed   atomic.Bool
	inFlight atomic.Int64

	mu sync.Mutex
	// late lists the uses after Close.
	late []string
	// seen counts the operations by name and key prefix, for the test
	// to know what runs.
	seen map[string]int
}

func newGuardStore(st store) *guardStore { return &guardStore{store: st, seen: map[string]int{}} }

// enter records one operation; the returned function ends it.
func (g *guardStore) enter(op, key string) func() {
	g.inFlight.Add(1)
	g.mu.Lock()
	if g.closed.Load() {
		g.late = append(g.late, op+" "+key)
	}
	g.seen[op+" "+key[:min(len(key), strings.LastIndexByte(key, '/')+1)]]++
	g.mu.Unlock()
	time.Sleep(time.Duration(g.delay.Load()))
	return func() { g.inFlight.Add(-1) }
}

// lateUses returns the uses recorded after Close.
func (g *guardStore) lateUses() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.late...)
}

// count returns how many operations op on keys under prefix were seen.
func (g *guardStore) count(op, prefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[op+" "+prefix]
}

func (g *guardStore) Get(ctx context.Context, key string) ([]byte, error) {
	defer g.enter("Get", key)()
	return g.store.Get(ctx, key)
}

func (g *guardStore) Put(ctx context.Context, key string, data []byte) error {
	defer g.enter("Put", key)()
	return g.store.Put(ctx, key, data)
}

func (g *guardStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	defer g.enter("GetRev", key)()
	return g.store.GetRev(ctx, key)
}

func (g *guardStore) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	defer g.enter("PutIf", key)()
	return g.store.PutIf(ctx, key, data, rev)
}

func (g *guardStore) Delete(ctx context.Context, key string) error {
	defer g.enter("Delete", key)()
	return g.store.Delete(ctx, key)
}

func (g *guardStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	defer g.enter("List", prefix)()
	return g.store.List(ctx, prefix, startAfter, limit)
}

func (g *guardStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	defer g.enter("ListDirs", prefix)()
	return g.store.ListDirs(ctx, prefix)
}

func (g *guardStore) Lock(ctx context.Context, key string) (func(), error) {
	defer g.enter("Lock", key)()
	unlock, err := g.store.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return func() {
		defer g.enter("Unlock", key)()
		unlock()
	}, nil
}

func (g *guardStore) Close() error {
	g.mu.Lock()
	if n := g.inFlight.Load(); n > 0 {
		g.late = append(g.late, fmt.Sprintf("Close with %d operations in flight", n))
	}
	g.closed.Store(true)
	g.mu.Unlock()
	return g.store.Close()
}

// startTestNode builds a main node of the flags args over st and runs it
// until the returned stop is called, which returns run's error.
func startTestNode(t *testing.T, st store, args []string, reload time.Duration) (*mainNode, func() error) {
	t.Helper()
	cfg, err := parseFlags(append([]string{"-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", "-admin-key=" + testAdminKey}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := newMainNode(t.Context(), cfg, mainNodeOptions{st: st, stdout: io.Discard,
		log: slog.New(slog.DiscardHandler), revocationReload: reload})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	return n, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			t.Fatal("the main node did not stop within a minute")
			return nil
		}
	}
}

// nodeDo sends one request with the admin key to n's REST listener.
func nodeDo(t *testing.T, n *mainNode, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.restAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMainNodeStopsEverythingBeforeClosing: a main node stopped (its
// context cancelled, as SIGTERM does) while a rekey, a master-key rotation
// and a sweep of the session revocations are running, on slow storage,
// returns only once all three have stopped: nothing uses the store or the
// keyring after they are closed, and the unfinished jobs stay recorded
// for the next start.
func TestMainNodeStopsEverythingBeforeClosing(t *testing.T) {
	dir := t.TempDir()
	const oldKey = "1111111111111111111111111111111111111111111111111111111111111111"
	const newKey = "2222222222222222222222222222222222222222222222222222222222222222"
	fs1, err := newFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, stop := startTestNode(t, fs1, []string{"-master-key=" + oldKey}, 0)
	for i := range 40 {
		if code, body := nodeDo(t, first, "PUT", fmt.Sprintf("/entity/db%02d", i), `{"k":{"n":1}}`); code != 200 {
			t.Fatalf("PUT db%02d = %d %s", i, code, body)
		}
	}
	docs := map[string]any{}
	for i := range 100 {
		docs[fmt.Sprintf("k%03d", i)] = map[string]int{"n": i}
	}
	raw, _ := json.Marshal(docs)
	if code, body := nodeDo(t, first, "PUT", "/entity/big", string(raw)); code != 200 {
		t.Fatalf("PUT big = %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("first node: %v", err)
	}

	fs2, err := newFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	guard := newGuardStore(fs2)
	// The new master key starts a rotation; 20 objects a second keeps it
	// (40 databases) and the rekey (100 entities) running for seconds.
	n, stop := startTestNode(t, guard, []string{"-master-key=" + newKey, "-key-id=main-key-v2",
		"-previous-master-key=" + oldKey, "-key-job-rate=20"}, 20*time.Millisecond)
	guard.delay.Store(int64(2 * time.Millisecond))
	if code, body := nodeDo(t, n, "POST", "/admin/databases/big/rekey", ""); code != 202 {
		t.Fatalf("POST rekey = %d %s", code, body)
	}
	// Expired revocations for the sweep to prune, behind the node's back.
	for i := range 300 {
		name := fmt.Sprintf("%s%020d-%032x", revokedPrefix, time.Now().Add(-time.Hour).UnixNano(), i)
		if err := fs2.Put(t.Context(), name, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for guard.count("Delete", revokedPrefix) < 5 || guard.count("PutIf", "_meta/datakeys/") < 2 ||
		guard.count("PutIf", "files/big/") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d revocations pruned, %d data-key objects and %d entities of big rewritten; want all three running",
				guard.count("Delete", revokedPrefix), guard.count("PutIf", "_meta/datakeys/"), guard.count("PutIf", "files/big/"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // anything still running shows now
	if late := guard.lateUses(); len(late) > 0 {
		t.Errorf("the store was used after Close %d times, first %q", len(late), late[0])
	}
	if got := n.ring.lateUses.Load(); got != 0 {
		t.Errorf("the keyring was used %d times after close", got)
	}
	// The three were cut short, not finished: the next start resumes. The
	// node closed fs2: read the storage as the next start does.
	fs3, err := newFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs3.Get(t.Context(), rotationObject); err != nil {
		t.Errorf("rotation record after the stop: %v; want it kept (the rotation was cut short)", err)
	}
	names, err := fs3.List(t.Context(), revokedPrefix, "", 0)
	if err != nil || len(names) == 0 {
		t.Errorf("revocations left after the stop: %d, %v; want the sweep cut short", len(names), err)
	}
	// The rekey and the rotation are both key jobs: each record says
	// running, for the next start to resume.
	running := map[string]int{}
	jobs, _ := fs3.List(t.Context(), jobsPrefix, "", 0)
	for _, j := range jobs {
		var d jobDoc
		if found, err := getJSON(t.Context(), fs3, j, "job", &d); err == nil && found && d.State == jobRunning {
			running[d.Kind]++
		}
	}
	if running[kindRekey] != 1 || running[kindRotate] != 1 || len(running) != 2 {
		t.Errorf("running key jobs recorded after the stop = %v, want one rekey and one rotation", running)
	}
}
