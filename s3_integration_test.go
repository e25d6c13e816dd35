package main

// Binary-level tests of the S3 backend: the real binary as child processes
// (integration_test.go) with its storage in a bucket of a real S3 server,
// found as s3store_test.go describes (DELTADB_S3_*; skip without, fail with
// CI=true). Each test works in a bucket of its own, which the binary
// creates and cleanup deletes. TestS3ServerStoppedMidRun starts a private
// SeaweedFS, so that stopping it disturbs no other test.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// s3NodeArgs are the -s3-* flags of a node storing in bucket of cfg's server.
func s3NodeArgs(cfg s3Config, bucket string) []string {
	return []string{"-s3-endpoint=" + cfg.Endpoint, "-s3-access-key=" + cfg.AccessKey,
		"-s3-secret-key=" + cfg.SecretKey, "-s3-bucket=" + bucket}
}

// testBucket names a bucket for t alone and returns a store on it that
// sends nothing until used: the binary under test creates the bucket.
// Cleanup, which runs after t's processes are killed, empties and deletes it.
func testBucket(t *testing.T, cfg s3Config) *s3Store {
	t.Helper()
	cfg.Bucket = "ddb-" + uniqueName(t)
	s, err := configureS3Store(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer s.Close()
		ctx := context.Background()
		keys, err := s.List(ctx, "", "", 0)
		if errors.Is(err, errConfig) { // NoSuchBucket: never created
			return
		}
		if err != nil {
			t.Errorf("cleanup: list bucket %q: %v", cfg.Bucket, err)
			return
		}
		parallel(len(keys), 8, func(i int) {
			if err := s.deleteObject(ctx, keys[i]); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		if _, err := s.do(ctx, s3Request{method: http.MethodDelete}); err != nil {
			t.Errorf("cleanup: delete bucket %q: %v", cfg.Bucket, err)
		}
	})
	return s
}

// unusedDir is a -shared-fs path for a node that must not write locally;
// assertUnused checks that nothing created it.
func unusedDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "db")
}

func assertUnused(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("-shared-fs=%s: Stat = %v, want not exist (an S3 node wrote locally)", d, err)
		}
	}
}

// bucketKeys lists every logical key of s, failing t on error.
func bucketKeys(t *testing.T, s *s3Store, prefix string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), prefix, "", 0)
	if err != nil {
		t.Fatalf("List(%q) = %v", prefix, err)
	}
	return keys
}

// TestS3WrongCredentialsAtStart: the binary refuses a wrong secret or access
// key at start with one line naming the flag to fix, and a non-zero status.
func TestS3WrongCredentialsAtStart(t *testing.T) {
	needBinary(t)
	for _, tt := range []struct {
		name string
		edit func(*s3Config)
		want string
	}{
		{"secret", func(c *s3Config) { c.SecretKey += "-wrong" }, "check -s3-secret-key"},
		{"access key", func(c *s3Config) { c.AccessKey = "AKIDEXAMPLE" }, "check -s3-access-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s3TestConfig(t)
			right := cfg.SecretKey
			tt.edit(&cfg)
			local := unusedDir(t)
			n := launch(t, keyEnv, append(s3NodeArgs(cfg, "ddb-"+uniqueName(t)), "-shared-fs="+local)...)
			msg := strings.TrimSpace(n.exitErr()) // fails the test on status 0
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr = %q, want one line containing %q", msg, tt.want)
			}
			if strings.Contains(msg, right) || strings.Contains(msg, cfg.SecretKey) {
				t.Errorf("stderr = %q contains the secret key", msg)
			}
			assertUnused(t, local)
		})
	}
}

// TestS3ReadmeQuickStart runs README's quick start against -role=all on a
// fresh bucket, compares the output with README's, and checks that the
// bucket holds everything and the local -shared-fs nothing.
func TestS3ReadmeQuickStart(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	// MASTER_KEY is generated on the empty bucket, as in README.
	env := append([]string{"MASTER_KEY="}, quickStartEnv(t)...)
	local := unusedDir(t)
	n := startNode(t, env, append(s3NodeArgs(cfg, bucket.bucket), "-role=all", "-shared-fs="+local)...)
	runQuickStart(t, n, env)

	// session_001 and session_003 remain; session_002 was deleted.
	entities := bucketKeys(t, bucket, entitiesPrefix)
	wantEntities := []string{entityObjectKey("chatdb", "session_001"), entityObjectKey("chatdb", "session_003")}
	if strings.Join(entities, " ") != strings.Join(wantEntities, " ") {
		t.Errorf("bucket entities = %q, want %q", entities, wantEntities)
	}
	for _, k := range entities {
		data, err := bucket.Get(t.Context(), k)
		if err != nil || strings.Contains(string(data), "Hello") || strings.Contains(string(data), "messages") {
			t.Errorf("object %s = %v, want ciphertext without the document's plaintext", k, err)
		}
	}
	if got := bucketKeys(t, bucket, templatesPrefix); len(got) != 1 || got[0] != schemaObjectKey("chat.v1") {
		t.Errorf("bucket templates = %q, want [%s]", got, schemaObjectKey("chat.v1"))
	}
	if got := bucketKeys(t, bucket, metaPrefix); !strings.Contains(strings.Join(got, " "), keyCheckObject) {
		t.Errorf("bucket %s = %q, want the key check %s", metaPrefix, got, keyCheckObject)
	}
	assertUnused(t, local)
}

// startS3Cluster starts -role=main and one -role=proc per ID, every process
// with its own unused -shared-fs and the same bucket, and waits until every
// worker is Available. It returns the cluster and the local directories.
func startS3Cluster(t *testing.T, s3args []string, ids ...string) (*cluster, []string) {
	t.Helper()
	c := &cluster{t: t, workers: map[string]*node{}}
	dirs := []string{unusedDir(t)}
	c.main = startNode(t, clusterEnv, append([]string{"-role=main", "-shared-fs=" + dirs[0]}, s3args...)...)
	c.clusterAddr = c.main.logAddr("cluster listening")
	for _, id := range ids {
		dirs = append(dirs, unusedDir(t))
		c.workers[id] = launch(t, workerEnv, append([]string{"-role=proc", "-worker-id=" + id,
			"-main-addr=" + c.clusterAddr, "-grpc-addr=127.0.0.1:0", "-shared-fs=" + dirs[len(dirs)-1]}, s3args...)...)
	}
	c.waitWorkers(20*time.Second, ids...)
	return c, dirs
}

// TestS3ScaleOutWorkers: main and two workers as processes with no shared
// directory, one bucket. Both serve traffic; SIGKILL of one under load
// loses no acknowledged write, the next requests succeed within seconds,
// and the survivor serves the entities the killed worker wrote, from the
// bucket.
func TestS3ScaleOutWorkers(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	c, dirs := startS3Cluster(t, s3NodeArgs(cfg, bucket.bucket), "w1", "w2")
	c.putAndGet(100)
	c.waitBusy(10)
	acked := c.killUnderLoad("w2", "w1")
	for i := range 100 { // half of them w2 wrote and w1 never cached
		if code, out, _ := c.main.call("GET", fmt.Sprintf("/entity/chatdb?key=k%d", i), testAdminKey, nil); code != 200 || string(out) != fmt.Sprint(i) {
			t.Errorf("after the kill GET k%d = %d %s, want 200 %d", i, code, out, i)
		}
	}
	if got, want := len(bucketKeys(t, bucket, entityKeyPrefix("chatdb", ""))), 100+len(acked); got < want {
		t.Errorf("bucket holds %d entities, want at least %d", got, want)
	}
	assertUnused(t, dirs...)
}

// weedServer is a private SeaweedFS (`weed mini`, as .ci/seaweedfs.sh runs
// it) on free ports with its own data directory and identity, for a test
// that stops and restarts its S3 server.
type weedServer struct {
	t     *testing.T
	bin   string
	dir   string
	ports []int // s3, master, volume, filer, admin; each also uses port+10000
	cfg   s3Config
	cmd   *exec.Cmd
	done  chan struct{}
}

// weedBinary is the SeaweedFS binary: DELTADB_WEED_BIN, else what
// `.ci/seaweedfs.sh build` prints (it builds only if the pinned version is
// missing). Without one the test skips, or fails with CI=true.
func weedBinary(t *testing.T) string {
	t.Helper()
	needBinary(t) // a server process of its own: not with -short
	bin := os.Getenv("DELTADB_WEED_BIN")
	var why error
	if bin == "" {
		out, err := exec.Command("bash", ".ci/seaweedfs.sh", "build").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		bin, why = lines[len(lines)-1], err
	}
	if why == nil {
		var info os.FileInfo
		if info, why = os.Stat(bin); why == nil && info.Mode()&0o111 == 0 {
			why = fmt.Errorf("%s is not executable", bin)
		}
	}
	if why != nil {
		msg := fmt.Sprintf("no SeaweedFS binary (DELTADB_WEED_BIN or .ci/seaweedfs.sh build): %v", why)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// startWeed starts a private SeaweedFS and waits until it serves S3.
func startWeed(t *testing.T) *weedServer {
	t.Helper()
	w := &weedServer{t: t, bin: weedBinary(t), dir: t.TempDir()}
	w.ports = freeWeedPorts(t, 5)
	secret := make([]byte, 16)
	rand.Read(secret)
	w.cfg = s3Config{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", w.ports[0]), AccessKey: "ak-private",
		SecretKey: hex.EncodeToString(secret), Bucket: "ddb-stopped-mid-run"}
	ident := fmt.Sprintf(`{"identities":[{"name":"t","credentials":[{"accessKey":%q,"secretKey":%q}],`+
		`"actions":["Admin","Read","List","Tagging","Write"]}]}`, w.cfg.AccessKey, w.cfg.SecretKey)
	if err := os.WriteFile(filepath.Join(w.dir, "s3.json"), []byte(ident), 0o600); err != nil {
		t.Fatal(err)
	}
	w.start()
	t.Cleanup(func() {
		if w.cmd.Process != nil {
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// freeWeedPorts returns n distinct free ports p below 55535 whose p+10000
// (weed's gRPC port) is free too.
func freeWeedPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port%35000 + 20000 // 20000..54999
		ln.Close()
		ok := true
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		for _, used := range ports {
			ok = ok && used != p && used+10000 != p && used != p+10000
		}
		if ok {
			ports = append(ports, p)
		}
	}
	return ports
}

// start (re)starts weed on w's ports and data directory and waits for a
// signed PUT+GET round trip (healthz answers before writes work).
func (w *weedServer) start() {
	w.t.Helper()
	p := w.ports
	w.cmd = exec.Command(w.bin, "mini", "-dir="+filepath.Join(w.dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		fmt.Sprint("-s3.port=", p[0]), fmt.Sprint("-master.port=", p[1]), fmt.Sprint("-volume.port=", p[2]),
		fmt.Sprint("-filer.port=", p[3]), fmt.Sprint("-admin.port=", p[4]), "-admin.port.legacy=0",
		"-s3.config="+filepath.Join(w.dir, "s3.json"), "-webdav=false", "-admin.ui=false",
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=64")
	os.MkdirAll(filepath.Join(w.dir, "data"), 0o700)
	log, err := os.OpenFile(filepath.Join(w.dir, "weed.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		w.t.Fatal(err)
	}
	defer log.Close()
	w.cmd.Stdout, w.cmd.Stderr = log, log
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(w.cmd, w.done)
	probe := w.cfg
	probe.Bucket, probe.Timeout, probe.MaxAttempts = "ddb-ready", 2*time.Second, 1
	s, err := configureS3Store(probe)
	if err != nil {
		w.t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	begin := time.Now()
	wait := newWait(w.t, "weed's signed PUT+GET round trip", 60*time.Second)
	for ; ; time.Sleep(250 * time.Millisecond) {
		select {
		case <-w.done:
			w.t.Fatalf("weed exited: %v; log %s:\n%s", w.cmd.ProcessState, filepath.Join(w.dir, "weed.log"), w.logTail())
		default:
		}
		body := []byte(time.Now().String())
		s.createBucket(ctx) // an existing bucket is fine; the PUT decides
		if s.Put(ctx, "probe", body) == nil {
			if got, err := s.Get(ctx, "probe"); err == nil && string(got) == string(body) {
				w.t.Logf("weed serves S3 on port %d after %v", w.ports[0], time.Since(begin).Round(time.Millisecond))
				return
			}
		}
		if wait.over() {
			w.t.Fatalf("weed: no %v; log:\n%s", wait, w.logTail())
		}
	}
}

// stop sends SIGTERM and waits until weed has exited.
func (w *weedServer) stop() {
	w.t.Helper()
	begin := time.Now()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(scaled(15 * time.Second)):
		w.cmd.Process.Kill()
		<-w.done
	}
	w.t.Logf("weed stopped %v after SIGTERM", time.Since(begin).Round(time.Millisecond))
}

// logTail is the end of weed's log, for failure messages.
func (w *weedServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "weed.log"))
	return string(b[max(0, len(b)-3000):])
}

// TestS3ServerStoppedMidRun: with the S3 server stopped, PUTs, cold GETs
// and listings answer 503 with a clear error within the retry budget;
// once the server is back (same port and data) requests succeed again,
// and every acknowledged write reads back, including those acknowledged
// while it was shutting down.
func TestS3ServerStoppedMidRun(t *testing.T) {
	needBinary(t)
	s3TestConfig(t) // skip (or fail on CI) like every S3 test
	w := startWeed(t)
	local := unusedDir(t)
	// A one-entry cache: GETs of all but the last written key go to S3.
	n := startNode(t, keyEnv, append(s3NodeArgs(w.cfg, w.cfg.Bucket), "-shared-fs="+local, "-entity-cache-size=1")...)
	var mu sync.Mutex
	acked := map[string]int{} // key -> highest value acknowledged
	put := func(key string, v int) (int, []byte) {
		code, out, err := tryCall("PUT", n.base+"/entity/stopdb", testAdminKey, map[string]int{key: v})
		if err != nil {
			return 0, []byte(err.Error())
		}
		if code == 200 {
			mu.Lock()
			acked[key] = max(acked[key], v)
			mu.Unlock()
		}
		return code, out
	}
	for i := range 20 {
		if code, out := put(fmt.Sprintf("before-%d", i), i); code != 200 {
			t.Fatalf("PUT before-%d = %d %s", i, code, out)
		}
	}

	// Four writers keep going while the server shuts down.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				put(fmt.Sprintf("during-%d-%d", c, i%10), i)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	w.stop()
	cancel()
	wg.Wait()

	const budget = 10 * time.Second // 4 attempts, backoff capped at 2s
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", "/entity/stopdb", `{"fresh-1":1}`},
		{"GET", "/entity/stopdb?key=before-0", ""},
		{"GET", "/entity/stopdb?key=before-7", ""},
		{"GET", "/api/databases", ""},
	} {
		start := time.Now()
		code, out, hdr := n.call(tt.method, tt.path, testAdminKey, tt.body)
		var e struct{ Error string }
		id := hdr.Get("X-Request-ID")
		if took := time.Since(start); code != 503 || json.Unmarshal(out, &e) != nil || id == "" ||
			!strings.Contains(e.Error, "unavailable") || !strings.Contains(e.Error, id) || took > budget {
			t.Errorf("S3 stopped: %s %s = %d %s after %v, want 503 {\"error\": \"...unavailable... (request ID)\"} within %v",
				tt.method, tt.path, code, out, took.Round(time.Millisecond), budget)
		}
	}

	w.start()
	back := newWait(t, "a PUT to succeed with S3 back", 30*time.Second)
	for {
		code, out := put("after-0", 0)
		if code == 200 {
			break
		}
		if back.over() {
			t.Fatalf("S3 back: PUT still %d %s: %v", code, out, back)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for key, v := range acked {
		code, out, _ := n.call("GET", "/entity/stopdb?key="+key, testAdminKey, nil)
		var got int
		if code != 200 || json.Unmarshal(out, &got) != nil || got < v {
			t.Errorf("acknowledged %s=%d: after the S3 restart GET = %d %s", key, v, code, out)
		}
	}
	t.Logf("%d acknowledged keys read back after the S3 restart", len(acked))
	assertUnused(t, local)
}

// TestS3UseSSL: with -s3-use-ssl the binary speaks TLS to its S3 endpoint
// (here a TLS-terminating proxy in front of the test's S3 server, whose
// certificate the process trusts through SSL_CERT_FILE): every request
// reaches the proxy over TLS and the data round-trips. Without the flag
// the same endpoint is spoken to in plain HTTP and the start fails; with
// it an endpoint saying http:// is refused, never spoken to in the clear.
func TestS3UseSSL(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	target, err := url.Parse(cfg.Endpoint)
	if err != nil || target.Host == "" {
		target = &url.URL{Scheme: "http", Host: cfg.Endpoint}
	}
	var plain, viaTLS atomic.Int64
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			plain.Add(1)
		} else {
			viaTLS.Add(1)
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain-HTTP start's handshake errors
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(slices.Clip(keyEnv), "SSL_CERT_FILE="+ca)
	bucket := testBucket(t, cfg)
	proxied := cfg
	proxied.Endpoint = strings.TrimPrefix(proxy.URL, "https://")
	args := append(s3NodeArgs(proxied, bucket.bucket), "-shared-fs="+unusedDir(t))

	if msg := launch(t, env, args...).exitErr(); !strings.Contains(msg, "-s3-endpoint") {
		t.Errorf("start without -s3-use-ssl against a TLS endpoint: %s, want a failure naming -s3-endpoint", msg)
	}
	n := startNode(t, env, append(args, "-s3-use-ssl")...)
	if code, body, _ := n.call("PUT", "/entity/tls", testAdminKey, map[string]string{"k": "over TLS"}); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	if code, body, _ := n.call("GET", "/entity/tls?key=k", testAdminKey, nil); code != 200 || string(body) != `"over TLS"` {
		t.Errorf("GET = %d %s", code, body)
	}
	if viaTLS.Load() == 0 || plain.Load() != 0 {
		t.Errorf("the proxy saw %d requests over TLS and %d in plain HTTP, want only TLS", viaTLS.Load(), plain.Load())
	}
	if keys := bucketKeys(t, bucket, entitiesPrefix); len(keys) != 1 {
		t.Errorf("bucket entities = %q, want the one written through the proxy", keys)
	}
	msg := launch(t, env, append(s3NodeArgs(cfg, bucket.bucket), "-s3-use-ssl", "-shared-fs="+unusedDir(t))...).exitErr()
	if lines := strings.Split(strings.TrimSpace(msg), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "-s3-use-ssl") {
		t.Errorf("-s3-use-ssl with an http:// endpoint: %q, want a one-line failure naming -s3-use-ssl", msg)
	}
}
