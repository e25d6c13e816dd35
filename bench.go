package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// benchFlags configure -role=bench, the load tool: N concurrent keep-alive
// clients drive a running server over HTTP and it prints ops/s and p50/p99
// latency per operation. -ceiling measures this machine's raw limits with
// the same client loop: "http" a trivial net/http handler, "fsync" the
// durable-write sequence on 1 KiB files with no server at all.
type benchFlags struct {
	target      string
	token       string
	db          string
	ops         string
	ceiling     string
	ceilingAddr string
	dir         string
	concurrency int
	keys        int
	valueSize   int
	duration    time.Duration
	// idleStreams are change feed event streams held open while the
	// operations run (their cost: BENCHMARKS.md).
	idleStreams int
}

// benchRole reports whether args ask for -role=bench. The load tool has
// a flag set of its own (parseBenchFlags), so the server's -h does not list
// its flags.
func benchRole(args []string) bool {
	return roleArg(args) == "bench"
}

// parseBenchFlags parses the arguments of -role=bench. A bad value is an
// error naming the flag.
func parseBenchFlags(args []string, stderr io.Writer) (benchFlags, error) {
	var b benchFlags
	fs := flag.NewFlagSet("deltadatabase -role=bench", flag.ContinueOnError)
	fs.String("role", "bench", "bench: the load tool")
	b.register(fs)
	return b, parseArgs(fs, args, stderr)
}

// register adds the bench flags to fs.
func (b *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.target, "target", "http://127.0.0.1:8080", "bench: base URL of the server to drive")
	fs.StringVar(&b.token, "token", secretEnv("ADMIN_KEY"), "bench: bearer token (env ADMIN_KEY)")
	fs.StringVar(&b.db, "bench-db", "bench", "bench: database to write")
	fs.StringVar(&b.ops, "ops", "put,get", "bench: comma-separated operations: put, get, find (an indexed query of 20 documents, after loading -keys chat documents and building the index), scan (a query no index serves)")
	fs.StringVar(&b.ceiling, "ceiling", "", "bench: measure a raw ceiling instead: http or fsync")
	fs.StringVar(&b.ceilingAddr, "ceiling-addr", "", "bench: with -ceiling=http, serve the trivial handler on this address until stopped, for another load tool (wrk)")
	fs.StringVar(&b.dir, "ceiling-dir", "", "bench: directory for -ceiling=fsync (default a temp dir)")
	fs.IntVar(&b.concurrency, "concurrency", 32, "bench: concurrent clients")
	fs.IntVar(&b.keys, "keys", 1000, "bench: distinct entity keys")
	fs.IntVar(&b.valueSize, "value-size", 1024, "bench: approximate document size, bytes")
	fs.DurationVar(&b.duration, "duration", 5*time.Second, "bench: how long each operation runs")
	fs.IntVar(&b.idleStreams, "idle-streams", 0, "bench: change feed event streams of another database to hold open, idle, while the operations run")
}

// benchResult is the outcome of one timed phase.
type benchResult struct {
	name      string
	ops       int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
}

// String prints the result as one line: name, concurrency, ops/s, p50, p99.
func (r benchResult) String() string {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[int(float64(len(r.latencies)-1)*p)]
	}
	return fmt.Sprintf("%-14s ops=%-7d errors=%-4d ops/s=%-9.0f p50=%-10v p99=%v",
		r.name, r.ops, r.errors, float64(r.ops)/r.elapsed.Seconds(), pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond))
}

// runBench runs the load tool.
func runBench(ctx context.Context, b benchFlags, stdout io.Writer) error {
	if b.concurrency <= 0 || b.keys <= 0 || b.duration <= 0 {
		return fmt.Errorf("-concurrency, -keys and -duration must be positive")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.concurrency, MaxConnsPerHost: b.concurrency}}
	switch b.ceiling {
	case "http":
		return benchHTTPCeiling(ctx, b, client, stdout)
	case "fsync":
		return benchFsyncCeiling(ctx, b, stdout)
	case "":
	default:
		return fmt.Errorf("-ceiling: %q is not http or fsync", b.ceiling)
	}
	if b.idleStreams > 0 {
		closeStreams, err := benchIdleStreams(ctx, b)
		if err != nil {
			return err
		}
		defer closeStreams()
		fmt.Fprintf(stdout, "idle event streams open: %d\n", b.idleStreams)
	}
	value := benchDocument(b.valueSize)
	for _, op := range strings.Split(b.ops, ",") {
		var step func(c, i int) error
		switch op {
		case "put":
			step = func(c, i int) error { return benchPut(ctx, client, b, benchKey(c, i, b), value) }
		case "get":
			if err := benchPreload(ctx, client, b, value); err != nil {
				return err
			}
			step = func(c, i int) error { return benchGet(ctx, client, b, benchKey(c, i, b)) }
		case "find", "scan":
			if err := benchFind(ctx, client, b, op, stdout); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("-ops: %q is not put, get, find or scan", op)
		}
		res := benchLoop(ctx, op, b.concurrency, b.duration, step)
		fmt.Fprintf(stdout, "%s c=%d\n", res, b.concurrency)
	}
	return nil
}

// benchIdleStreams opens b.idleStreams event streams of the change feed
// of database b.db+"_idle" (which nothing writes), each on a connection
// of its own, and returns once every one answered; the returned function
// closes them.
func benchIdleStreams(ctx context.Context, b benchFlags) (func(), error) {
	transport := &http.Transport{MaxConnsPerHost: b.idleStreams + 1}
	client := &http.Client{Transport: transport}
	var bodies []io.Closer
	closeAll := func() {
		for _, c := range bodies {
			c.Close()
		}
		transport.CloseIdleConnections()
	}
	u := b.target + "/api/databases/" + url.PathEscape(b.db+"_idle") + "/changes?feed=sse&since=now"
	for range b.idleStreams {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			closeAll()
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := client.Do(req)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open event stream %d of %d: %w", len(bodies)+1, b.idleStreams, err)
		}
		bodies = append(bodies, resp.Body)
	}
	return closeAll, nil
}

// benchKey spreads client c's i-th request over the key space.
func benchKey(c, i int, b benchFlags) string {
	return fmt.Sprintf("k%06d", (c*7919+i*104729)%b.keys)
}

// benchDocument is a JSON document of about size bytes.
func benchDocument(size int) []byte {
	doc, _ := json.Marshal(map[string]string{"role": "user", "content": strings.Repeat("x", max(size-30, 1))})
	return doc
}

// benchLoop runs step from n clients for d and collects latencies.
func benchLoop(ctx context.Context, name string, n int, d time.Duration, step func(c, i int) error) benchResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	res := benchResult{name: name}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range n {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			for i := 0; ctx.Err() == nil; i++ {
				t := time.Now()
				if err := step(c, i); err != nil {
					if ctx.Err() != nil {
						break
					}
					errs++
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ops = len(res.latencies)
	return res
}

// benchPreload writes every key once so that GETs are warm.
func benchPreload(ctx context.Context, client *http.Client, b benchFlags, value []byte) error {
	for i := range b.keys {
		if err := benchPut(ctx, client, b, fmt.Sprintf("k%06d", i), value); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	return nil
}

// benchPut stores one document.
func benchPut(ctx context.Context, client *http.Client, b benchFlags, key string, value []byte) error {
	body := append(append([]byte(`{"`+key+`":`), value...), '}')
	return benchDo(ctx, client, b, http.MethodPut, b.target+"/entity/"+b.db, bytes.NewReader(body))
}

// benchGet reads one document.
func benchGet(ctx context.Context, client *http.Client, b benchFlags, key string) error {
	return benchDo(ctx, client, b, http.MethodGet, b.target+"/entity/"+b.db+"?key="+url.QueryEscape(key), nil)
}

// benchDo sends one request and drains the answer so the connection is
// reused.
func benchDo(ctx context.Context, client *http.Client, b benchFlags, method, u string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", method, u, resp.StatusCode)
	}
	return nil
}

// benchHTTPCeiling drives a trivial net/http handler with the GET loop:
// the handler answers every request with a document of -value-size bytes,
// as a warm GET answers one. With -ceiling-addr it only serves, on that
// address, until ctx ends (SIGTERM), for a load tool of one's own.
func benchHTTPCeiling(ctx context.Context, b benchFlags, client *http.Client, stdout io.Writer) error {
	addr := cmp.Or(b.ceilingAddr, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ceiling listen: %w", err)
	}
	doc := benchDocument(b.valueSize)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()
	if b.ceilingAddr != "" {
		fmt.Fprintf(stdout, "ceiling-http serving on %s\n", ln.Addr())
		<-ctx.Done()
		return nil
	}
	b.target = "http://" + ln.Addr().String()
	res := benchLoop(ctx, "ceiling-http", b.concurrency, b.duration, func(c, i int) error {
		return benchGet(ctx, client, b, benchKey(c, i, b))
	})
	fmt.Fprintf(stdout, "%s c=%d\n", res, b.concurrency)
	return nil
}

// benchFsyncCeiling runs the durable-write sequence of fsstore.go
// (writeDurable: temp file, write, fdatasync, close, rename, directory
// fsync) on 1 KiB files spread
// over 32 directories, with no server: the most durable PUTs/s the disk
// allows.
func benchFsyncCeiling(ctx context.Context, b benchFlags, stdout io.Writer) error {
	dir := b.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ddb-ceiling-")
		if err != nil {
			return fmt.Errorf("ceiling dir: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	for i := range 32 {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprint(i)), 0o700); err != nil {
			return fmt.Errorf("ceiling dir: %w", err)
		}
	}
	data := bytes.Repeat([]byte("x"), 1024)
	res := benchLoop(ctx, "ceiling-fsync", b.concurrency, b.duration, func(c, i int) error {
		d := filepath.Join(dir, fmt.Sprint(rand.IntN(32)))
		if step, err := writeDurable(filepath.Join(d, fmt.Sprintf("c%d-%d", c, i%64)), data); err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		return nil
	})
	fmt.Fprintf(stdout, "%s c=%d\n", res, b.concurrency)
	return nil
}
