package main

// The metrics as Prometheus itself reads them: promtool's linter on real
// scrapes, and a real Prometheus server scraping a main worker and a
// processing worker by their ops listeners. Both tools come from
// Debian's prometheus package (.ci/run installs it); without it these
// tests skip locally and fail in CI.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTool is needProgram for the programs of Debian's prometheus
// package.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return needProgram(t, name, "install Debian's prometheus package")
}

// opsCluster is a main worker and one processing worker, each with an
// ops listener, sharing a storage directory.
type opsCluster struct {
	*cluster
	mainOps, workerOps string
}

// startOpsCluster starts -role=main and worker w1, both with
// -ops-addr, and waits until w1 is Available.
func startOpsCluster(t *testing.T) *opsCluster {
	t.Helper()
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+c.dir, "-ops-addr=127.0.0.1:0")
	c.clusterAddr = c.main.logAddr("cluster listening")
	w := c.startWorker("w1", "-ops-addr=127.0.0.1:0")
	oc := &opsCluster{cluster: c, mainOps: c.main.logAddr("ops listening"), workerOps: w.logAddr("ops listening")}
	c.waitWorkers(20*time.Second, "w1")
	return oc
}

// traffic sends requests of every kind the metrics count: writes and
// reads (hits and misses), a validation failure, failed authentications,
// an unmatched route.
func (c *opsCluster) traffic() {
	t := c.t
	t.Helper()
	c.putAndGet(5)
	c.main.call("PUT", "/schema/s.v1", testAdminKey, `{"type":"object","required":["a"]}`)
	if code, out, _ := c.main.call("PUT", "/entity/chatdb?schema=s.v1", testAdminKey, `{"x":{"b":1}}`); code != 400 {
		t.Fatalf("PUT of a document failing its schema = %d %s, want 400", code, out)
	}
	c.main.call("GET", "/entity/chatdb?key=nope", testAdminKey, nil)
	c.main.call("GET", "/api/me", "not-a-key", nil)
	c.main.call("POST", "/no/such/route", "", nil)
}

// TestPromtoolCheckMetrics lints real scrapes after traffic with
// `promtool check metrics`: the main worker's and the processing
// worker's ops listeners, and the main worker's REST /metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := needTool(t, "promtool")
	c := startOpsCluster(t)
	c.traffic()
	scrapes := map[string]string{}
	for name, u := range map[string]string{"main ops": "http://" + c.mainOps + "/metrics",
		"worker ops": "http://" + c.workerOps + "/metrics", "main REST": c.main.base + "/metrics"} {
		code, body, hdr := httpCall(t, "GET", u, testAdminKey, nil)
		if code != 200 || hdr.Get("Content-Type") != metricsContentType {
			t.Fatalf("%s GET /metrics = %d %q", name, code, hdr.Get("Content-Type"))
		}
		scrapes[name] = string(body)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the %s scrape: %v\n%s", name, err, out)
		}
	}
	// The scrapes were of real traffic: each family the issue names has
	// samples where it lives.
	for _, want := range []string{
		`deltadb_http_requests_total{route="/entity/{db}",method="PUT",status="200"} 5`,
		`deltadb_http_requests_total{route="/entity/{db}",method="PUT",status="400"} 1`,
		`deltadb_http_requests_total{route="unmatched",method="POST",status="404"} 1`,
		`deltadb_http_request_duration_seconds_bucket{route="/entity/{db}",le="+Inf"} 12`,
		`deltadb_workers{status="Available"} 1`,
		`deltadb_auth_failures_total 1`,
		`deltadb_validation_failures_total 1`,
		`deltadb_grpc_calls_total{method="/deltadb.MainWorker/Subscribe",code="OK"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="put",result="ok"} `, // the key check, the schema
	} {
		if !strings.Contains(scrapes["main ops"], want) {
			t.Errorf("main ops scrape lacks %s", want)
		}
	}
	for _, want := range []string{
		`deltadb_grpc_calls_total{method="/deltadb.ProcessingWorker/Process",code="OK"} 10`,
		`deltadb_grpc_calls_total{method="/deltadb.ProcessingWorker/Process",code="NotFound"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="put",result="ok"} 5`,
		`deltadb_cache_entries 5`,
		`deltadb_cache_hits_total 5`,
	} {
		if !strings.Contains(scrapes["worker ops"], want) {
			t.Errorf("worker ops scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("main ops:\n%s\nworker ops:\n%s", scrapes["main ops"], scrapes["worker ops"])
	}
}

// freePort returns a loopback address whose port was free a moment ago,
// for a program that takes its listen address only as a flag.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// promServer is a Prometheus server run by a test.
type promServer struct {
	t    *testing.T
	base string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startPrometheus runs prometheus on 127.0.0.1 scraping each job's
// target every second, with its configuration and data in a temp dir,
// and waits until it is ready.
func startPrometheus(t *testing.T, targets map[string]string) *promServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
	for job, target := range targets {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", job, target)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	p := &promServer{t: t, base: "http://" + addr, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	p.waitFor("ready", func() bool {
		code, _, err := tryCall("GET", p.base+"/-/ready", "", nil)
		return err == nil && code == 200
	})
	return p
}

// waitFor polls ok until it holds, failing after 30 s (on an idle
// machine) or when Prometheus exits.
func (p *promServer) waitFor(what string, ok func() bool) {
	p.t.Helper()
	w := newWait(p.t, "prometheus: "+what, 30*time.Second)
	for !ok() {
		select {
		case <-p.done:
			p.t.Fatalf("prometheus exited waiting for %s:\n%s", what, p.log)
		case <-time.After(200 * time.Millisecond):
		}
		if w.over() {
			p.t.Fatalf("prometheus: no %v\n%s", w, p.log)
		}
	}
}

// query runs an instant PromQL query and returns each series' value by
// its job label.
func (p *promServer) query(q string) map[string]float64 {
	p.t.Helper()
	code, out, _ := httpCall(p.t, "GET", p.base+"/api/v1/query?query="+url.QueryEscape(q), "", nil)
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &resp); code != 200 || err != nil || resp.Status != "success" {
		p.t.Fatalf("query %s = %d %s (%v)", q, code, out, err)
	}
	vals := map[string]float64{}
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			p.t.Fatalf("query %s: value %v: %v", q, r.Value, err)
		}
		vals[r.Metric["job"]] = v
	}
	return vals
}

// TestPrometheusScrapes runs a real Prometheus server scraping a main
// worker and a processing worker by their ops listeners: its API reports
// up == 1 for both, and request counters that moved after traffic on
// each.
func TestPrometheusScrapes(t *testing.T) {
	needTool(t, "prometheus")
	c := startOpsCluster(t)
	p := startPrometheus(t, map[string]string{"deltadb-main": c.mainOps, "deltadb-worker": c.workerOps})
	p.waitFor("up == 1 for both targets", func() bool {
		up := p.query("up")
		return up["deltadb-main"] == 1 && up["deltadb-worker"] == 1
	})
	entityRequests := `sum by (job) (deltadb_http_requests_total{route="/entity/{db}"})`
	workerCalls := `sum by (job) (deltadb_grpc_calls_total{method="/deltadb.ProcessingWorker/Process"})`
	if before := p.query(entityRequests); before["deltadb-main"] != 0 {
		t.Fatalf("entity requests before any = %v, want none", before)
	}
	if before := p.query(workerCalls); before["deltadb-worker"] != 0 {
		t.Fatalf("worker Process calls before any = %v, want none", before)
	}
	c.putAndGet(5)
	p.waitFor("the counters of 10 entity requests", func() bool {
		return p.query(entityRequests)["deltadb-main"] == 10 && p.query(workerCalls)["deltadb-worker"] == 10
	})
	if up := p.query("up"); up["deltadb-main"] != 1 || up["deltadb-worker"] != 1 {
		t.Errorf("up after traffic = %v, want 1 for both", up)
	}
}
