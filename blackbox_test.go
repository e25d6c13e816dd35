package main

// Documented behaviours checked from outside: the binary run as a user
// runs it (integration_test.go starts it), spoken to over HTTP and gRPC.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "deltadatabase/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestSecretFileOpenWarns: a secret file that other users may read is
// used, with a warning at start naming its flag and never the secret: a
// file any user may read, or one group-readable by a group other than the
// process's own. A file group-readable by the process's own group (as a
// Kubernetes secret volume with fsGroup) and a 0600 one start without.
func TestSecretFileOpenWarns(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	adminFile := filepath.Join(dir, "admin.key")
	for _, f := range []struct {
		path, data string
		mode       os.FileMode
	}{{keyFile, testMasterKey + "\n", 0o644}, {adminFile, testAdminKey, 0o640}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	env := []string{"MASTER_KEY=", "ADMIN_KEY="}
	db := filepath.Join(dir, "db")
	start := func(wantFlag string) {
		t.Helper()
		n := startNode(t, env, "-shared-fs="+db, "-master-key-file="+keyFile, "-admin-key-file="+adminFile)
		if code, body, _ := n.call("GET", "/api/me", testAdminKey, nil); code != 200 {
			t.Fatalf("GET /api/me with the admin key of the file = %d %s", code, body)
		}
		log := n.logOnceTrue(func(log string) bool { return wantFlag == "" || strings.Contains(log, "secret file") })
		var warned []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "secret file") {
				warned = append(warned, line)
			}
		}
		switch {
		case wantFlag == "" && len(warned) > 0:
			t.Errorf("warnings about secret files: %q, want none", warned)
		case wantFlag != "" && (len(warned) != 1 || !strings.Contains(warned[0], "flag="+wantFlag+" ")):
			t.Errorf("warnings about secret files: %q, want one naming %s", warned, wantFlag)
		}
		if strings.Contains(log, testMasterKey) || strings.Contains(log, testAdminKey) {
			t.Error("the log holds a secret")
		}
		n.stop()
	}
	start("-master-key-file")
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	start("")
	// Another group may read the admin key: only root can give a file
	// to a group it is not in.
	if os.Chown(adminFile, -1, os.Getegid()+1) == nil {
		start("-admin-key-file")
	}
}

// TestGRPCMessageLimitBinary: -grpc-max-recv-msg-size bounds a client's
// gRPC message both ways: a Process PUT over it is refused with
// ResourceExhausted and a message naming both sizes, storing nothing; one
// under it is stored; a document over it (written over REST) is not sent
// back over gRPC, with the same kind of error.
func TestGRPCMessageLimitBinary(t *testing.T) {
	const limit = 64 << 10
	n, _ := startDefault(t, fmt.Sprintf("-grpc-max-recv-msg-size=%d", limit))
	conn, err := grpc.NewClient(n.logAddr("grpc listening"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewMainWorkerClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), scaled(30*time.Second))
	defer cancel()
	put := func(key string, size int) error {
		_, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "grpcdb", EntityKey: key, Operation: "PUT",
			Token: testAdminKey, Payload: []byte(`"` + strings.Repeat("x", size) + `"`)})
		return err
	}
	if err := put("small", limit/2); err != nil {
		t.Fatalf("PUT of %d bytes under the limit of %d = %v", limit/2, limit, err)
	}
	err = put("big", limit+1024)
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), fmt.Sprint(limit)) {
		t.Errorf("PUT over the limit = %v, want ResourceExhausted naming the limit %d", err, limit)
	}
	if code, _, _ := n.call("GET", "/entity/grpcdb?key=big", testAdminKey, nil); code != 404 {
		t.Errorf("GET of the refused PUT's key = %d, want 404", code)
	}
	if code, body, _ := n.call("PUT", "/entity/grpcdb", testAdminKey, map[string]string{"rest": strings.Repeat("y", limit+1024)}); code != 200 {
		t.Fatalf("REST PUT of a document over the gRPC limit = %d %s", code, body)
	}
	for key, want := range map[string]codes.Code{"small": codes.OK, "rest": codes.ResourceExhausted} {
		_, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "grpcdb", EntityKey: key, Operation: "GET", Token: testAdminKey})
		if st, _ := status.FromError(err); st.Code() != want || (want != codes.OK && !strings.Contains(st.Message(), fmt.Sprint(limit))) {
			t.Errorf("GET %s = %v, want %v (naming the limit when refused)", key, err, want)
		}
	}
}

// TestStreamTicketCapBinary: the server keeps at most 10,000 unused
// stream tickets, which API keys each holding their own budget fill; the
// 10,001st request, of another key, answers 429 with a JSON sentence, and
// a ticket issued before it still opens its database's feed.
func TestStreamTicketCapBinary(t *testing.T) {
	n, _ := startDefault(t)
	if code, body, _ := n.call("PUT", "/entity/tk", testAdminKey, map[string]int{"k": 1}); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	keys := make([]string, streamTicketsMax/streamTicketsPerPrincipal+1)
	for i := range keys {
		keys[i] = createKeyHTTP(t, n, fmt.Sprintf(`{"name":"reader%d","permissions":["read"]}`, i)).Secret
	}
	u := n.base + "/api/databases/tk/changes/ticket"
	var first string
	var mu sync.Mutex
	answers := map[int]int{}
	parallel(streamTicketsMax, 8, func(i int) {
		code, out, err := tryCall("POST", u, keys[i/streamTicketsPerPrincipal], nil)
		mu.Lock()
		defer mu.Unlock()
		answers[code]++
		if err == nil && (code == 201 || code == 200) {
			var tk struct{ Ticket string }
			if json.Unmarshal(out, &tk) == nil && first == "" {
				first = tk.Ticket
			}
		}
	})
	if answers[200]+answers[201] != streamTicketsMax {
		t.Fatalf("%d ticket requests answered %v, want all issued", streamTicketsMax, answers)
	}
	code, body, hdr := n.call("POST", "/api/databases/tk/changes/ticket", keys[len(keys)-1], nil)
	var e struct{ Error string }
	if code != http.StatusTooManyRequests || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "the most this server keeps") {
		t.Errorf("ticket %d = %d %s (Retry-After %q), want 429 with a sentence about the tickets", streamTicketsMax+1, code, body, hdr.Get("Retry-After"))
	}
	if code, body, _ := n.call("GET", "/api/databases/tk/changes?ticket="+url.QueryEscape(first), "", nil); code != 200 {
		t.Errorf("page with a ticket issued before the cap = %d %s, want 200", code, body)
	}
}

// TestAuditRequiredDiskFills runs -audit-required with its audit log on a
// small filesystem (a tmpfs; root only) that fills while the server runs:
// every write answered 200 has its line in the file, the first write
// whose line cannot be written answers 503, and every request after it
// is refused before it runs (its entity is not written) and /readyz says
// so, also once space returns; a restart on the same file continues a
// chain that -role=audit-verify finds intact.
func TestAuditRequiredDiskFills(t *testing.T) {
	needBinary(t)
	mnt := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: root only")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() }) // after the node's cleanup ends it
	audit := filepath.Join(mnt, "audit.log")
	db := filepath.Join(t.TempDir(), "db")
	n := startNode(t, keyEnv, "-shared-fs="+db, "-audit-log="+audit, "-audit-required")
	put := func(key string) int {
		code, _, _ := n.call("PUT", "/entity/aud", testAdminKey, map[string]any{key: map[string]int{"a": 1}})
		return code
	}
	var acked []string
	for i := range 5 {
		if code := put(fmt.Sprint("before", i)); code != 200 {
			t.Fatalf("PUT before the disk filled = %d", code)
		}
		acked = append(acked, fmt.Sprint("before", i))
	}
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 4096); ; {
		if _, err := filler.Write(chunk); err != nil {
			break
		}
	}
	filler.Close()
	// The audit file's last page may still take a few lines.
	refused := ""
	for i := 0; i < 500 && refused == ""; i++ {
		key := fmt.Sprint("full", i)
		switch code := put(key); code {
		case 200:
			acked = append(acked, key)
		case http.StatusServiceUnavailable:
			refused = key
		default:
			t.Fatalf("PUT %s on a full disk = %d, want 200 or 503", key, code)
		}
	}
	if refused == "" {
		t.Fatal("500 PUTs on a full disk all answered 200")
	}
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	if code := put("after"); code != http.StatusServiceUnavailable {
		t.Errorf("PUT after the failure, space returned = %d, want 503 (failed until a restart)", code)
	}
	if code, body, _ := n.call("GET", "/readyz", "", nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "audit") {
		t.Errorf("GET /readyz = %d %s, want 503 naming the audit check", code, body)
	}
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range acked {
		if !strings.Contains(string(raw), `"key":"`+key+`"`) && !strings.Contains(string(raw), `"keys":["`+key+`"]`) {
			t.Errorf("PUT %s answered 200 has no line in the audit log", key)
		}
	}
	n.stop()

	n = startNode(t, keyEnv, "-shared-fs="+db, "-audit-log="+audit, "-audit-required")
	if code, _, _ := n.call("GET", "/entity/aud?key=after", testAdminKey, nil); code != 404 {
		t.Errorf("GET of the PUT refused before it ran = %d, want 404", code)
	}
	for _, key := range acked {
		if code, _, _ := n.call("GET", "/entity/aud?key="+key, testAdminKey, nil); code != 200 {
			t.Errorf("GET %s, acknowledged before the disk filled = %d, want 200", key, code)
		}
	}
	n.stop()
	if out, err := runBinary(t, "-role=audit-verify", "-in", audit, "-master-key="+testMasterKey); err != nil || !strings.Contains(string(out), "audit log intact") {
		t.Errorf("audit-verify after the failure and a restart: %v\n%s", err, out)
	}
}

// TestChangesKeepAliveBinary: an idle event stream of the binary gets the
// comment line ": keep-alive" after 15 s, and nothing else, so that
// proxies keep its connection open; the stream stays open past it.
func TestChangesKeepAliveBinary(t *testing.T) {
	n, _ := startDefault(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.base+"/api/databases/idle/changes?feed=sse&since=now", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	opened := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				t.Fatalf("the idle stream ended after %v", time.Since(opened))
			case line == ": keep-alive":
				if at := time.Since(opened); at < 14*time.Second || at > scaled(20*time.Second) {
					t.Errorf("keep-alive line after %v, want 15 s", at)
				}
				return
			case line != "" && !strings.HasPrefix(line, "retry: "):
				t.Errorf("idle stream sent %q", line)
			}
		case <-time.After(scaled(30 * time.Second)):
			t.Fatalf("no keep-alive line after %v", time.Since(opened))
		}
	}
}

// TestSaturatedOwnerFallbackBinary: with main + 2 workers, while the
// owner of an entity has 64 calls in flight (the main worker's link to it
// held by a pausable proxy, its heartbeats going on, so it stays
// Available), a read of the entity is answered by the other worker from
// storage with the last acknowledged value when the workers keep no
// write-ahead log (-wal=false; S3 storage keeps none either). With the
// log (filesystem storage by default) only the owner holds the writes its
// log has not applied yet, so the read waits for the owner. Once the link
// flows again every held read is answered. The read budget is raised
// past 128 documents: each read in flight holds room for the largest
// document (-max-document-size) in its owner's share, half of
// -max-inflight-read-bytes, so with the defaults 32 reads held at the
// owner would fill its share and the owner would never have 64 calls in
// flight (README "Several workers"; TestStoppedWorkerBinary).
func TestSaturatedOwnerFallbackBinary(t *testing.T) {
	for _, wal := range []bool{false, true} {
		t.Run(fmt.Sprint("wal=", wal), func(t *testing.T) { saturatedOwnerRead(t, wal) })
	}
}

// saturatedOwnerRead is TestSaturatedOwnerFallbackBinary with -wal=wal.
func saturatedOwnerRead(t *testing.T, wal bool) {
	needBinary(t)
	flag := fmt.Sprint("-wal=", wal)
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+c.dir, flag,
		fmt.Sprint("-max-inflight-read-bytes=", 4*saturatedInFlight<<20))
	c.clusterAddr = c.main.logAddr("cluster listening")
	link := startPausableProxy(t)
	n1 := c.startWorker("w1", "-advertise-addr="+link.addr(), flag)
	link.target.Store(n1.logAddr("worker listening"))
	c.startWorker("w2", flag)
	c.waitWorkers(20*time.Second, "w1", "w2")
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); rendezvousOrder("sat", k, []string{"w1", "w2"})[0] == 0 {
			key = k
		}
	}
	if code, body, _ := c.main.call("PUT", "/entity/sat", testAdminKey, map[string]string{key: "v1"}); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	link.paused.Store(true)
	get := func(held chan<- int) {
		code, body, err := tryCall("GET", c.main.base+"/entity/sat?key="+key, testAdminKey, nil)
		if err == nil && code == 200 && string(body) != `"v1"` {
			t.Errorf("GET = %s, want \"v1\"", body)
		}
		held <- code
	}
	held := make(chan int, saturatedInFlight+1)
	for range saturatedInFlight {
		go get(held)
	}
	w := newWait(t, fmt.Sprintf("%d calls in flight to w1", saturatedInFlight), 10*time.Second)
	for inFlight(c, "w1") < saturatedInFlight {
		if w.over() {
			t.Fatalf("w1 has %d calls in flight: %v", inFlight(c, "w1"), w)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fallback := make(chan int, 1)
	go get(fallback)
	waits := 0
	select {
	case code := <-fallback:
		if wal || code != 200 {
			t.Errorf("GET while the owner is saturated = %d, want it to wait for the owner with the log, 200 without", code)
		}
	case <-time.After(scaled(time.Second)):
		if !wal {
			t.Errorf("GET while the owner is saturated waits, want an answer from the other worker without a log")
		}
		waits = 1 // answered once the link flows
		go func() { held <- <-fallback }()
	}
	for _, row := range c.workerRows() {
		if row.WorkerID == "w1" && (row.Status != statusAvailable || row.InFlight < saturatedInFlight) {
			t.Errorf("w1 during the read: %s with %d calls in flight, want Available with %d (saturated, not gone)", row.Status, row.InFlight, saturatedInFlight)
		}
	}
	link.paused.Store(false)
	for range saturatedInFlight + waits {
		select {
		case code := <-held:
			if code != 200 {
				t.Errorf("a read held at the saturated owner answered %d, want 200", code)
			}
		case <-time.After(scaled(30 * time.Second)):
			t.Fatal("the reads held at the owner were not answered once its link flowed")
		}
	}
}

// TestStoppedWorkerBinary: with main + 2 workers and the default read
// budget, 100 reads of the entities of a worker that does not answer
// hold half the budget at most: reads of the other worker's entities, its
// cache's hits, go on answering at once. First w1's link holds its bytes
// while w1 heartbeats (a slow or saturated owner): once the link flows,
// every held read is answered. Then w1 is stopped (SIGSTOP): it misses
// its heartbeats and leaves the rotation, its calls under way end, and
// each read goes to w2 once w1's log is taken over; none is left
// hanging. After SIGCONT w1 subscribes again and every entity reads back.
func TestStoppedWorkerBinary(t *testing.T) {
	needBinary(t)
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.startMain()
	link := startPausableProxy(t)
	w1 := c.startWorker("w1", "-advertise-addr="+link.addr())
	link.target.Store(w1.logAddr("worker listening"))
	c.startWorker("w2")
	c.waitWorkers(20*time.Second, "w1", "w2")
	st := &stalledReads{c: c, docs: map[string]string{}}
	for i := 0; len(st.own) < 10 || st.other == ""; i++ {
		k := fmt.Sprint("k", i)
		if rendezvousOrder("stop", k, []string{"w1", "w2"})[0] == 0 {
			st.own = append(st.own, k)
		} else if st.other == "" {
			st.other = k // w2's: in its cache from the PUT
		}
		st.docs[k] = "v-" + k
	}
	if code, body, _ := c.main.call("PUT", "/entity/stop", testAdminKey, st.docs); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}

	link.paused.Store(true)
	answers := st.start()
	st.othersAnswered()
	link.paused.Store(false)
	st.collect(answers, scaled(10*time.Second), map[int]bool{200: true})

	if err := w1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			w1.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	answers = st.start()
	st.othersAnswered()
	// The bound: the heartbeat lease, then the takeover and the retry (the
	// keepalive, 13 s, and callWait, 15 s, come later).
	st.collect(answers, scaled(10*time.Second), map[int]bool{200: true, 503: true})
	w1.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	c.waitWorkers(30*time.Second, "w1", "w2")
	for k, v := range st.docs {
		if code, body, _ := c.main.call("GET", "/entity/stop?key="+k, testAdminKey, nil); code != 200 || string(body) != fmt.Sprintf("%q", v) {
			t.Errorf("GET %s after SIGCONT = %d %s, want %q", k, code, body, v)
		}
	}
}

// stalledReads are TestStoppedWorkerBinary's reads: own are the
// entities of w1, which stops answering, other one of w2's.
type stalledReads struct {
	c     *cluster
	own   []string
	other string
	docs  map[string]string
}

// stalledRead is the answer of one read: its status and how long it took.
type stalledRead struct {
	code int
	took time.Duration
	err  error
}

// stalledReadCount is how many reads of w1's entities start at once.
const stalledReadCount = 100

// start sends stalledReadCount reads of w1's entities and waits until
// 32 of them are under way at w1: half the default budget's room.
func (st *stalledReads) start() <-chan stalledRead {
	t := st.c.t
	t.Helper()
	answers := make(chan stalledRead, stalledReadCount)
	for i := range stalledReadCount {
		key := st.own[i%len(st.own)]
		go func() {
			start := time.Now()
			code, body, err := tryCall("GET", st.c.main.base+"/entity/stop?key="+key, testAdminKey, nil)
			if err == nil && code == 200 && string(body) != fmt.Sprintf("%q", st.docs[key]) {
				err = fmt.Errorf("GET %s = %s, want %q", key, body, st.docs[key])
			}
			answers <- stalledRead{code, time.Since(start), err}
		}()
	}
	w := newWait(t, "32 reads in flight to w1", 10*time.Second)
	for inFlight(st.c, "w1") < 32 {
		if w.over() {
			t.Fatalf("w1 has %d calls in flight: %v", inFlight(st.c, "w1"), w)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return answers
}

// othersAnswered reads w2's entity for a second: each read must be
// answered at once while w1's reads wait.
func (st *stalledReads) othersAnswered() {
	t := st.c.t
	t.Helper()
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		start := time.Now()
		ch := make(chan int, 1)
		go func() {
			code, _, _ := tryCall("GET", st.c.main.base+"/entity/stop?key="+st.other, testAdminKey, nil)
			ch <- code
		}()
		select {
		case code := <-ch:
			if code != 200 {
				t.Errorf("GET of w2's entity while w1 does not answer = %d, want 200", code)
			}
		case <-time.After(scaled(time.Second)):
			t.Fatalf("GET of w2's entity waits (over %v) while %d reads wait at w1", time.Since(start), stalledReadCount)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// collect takes the answers of start's reads: each with a status of
// want, within bound.
func (st *stalledReads) collect(answers <-chan stalledRead, bound time.Duration, want map[int]bool) {
	t := st.c.t
	t.Helper()
	codes := map[int]int{}
	var slowest time.Duration
	for range stalledReadCount {
		select {
		case a := <-answers:
			if a.err != nil || !want[a.code] {
				t.Errorf("a read of w1's entity = %d %v, want one of %v", a.code, a.err, want)
			}
			if a.took > bound {
				t.Errorf("a read of w1's entity answered after %v, want %v at most", a.took, bound)
			}
			codes[a.code]++
			slowest = max(slowest, a.took)
		case <-time.After(bound):
			t.Fatalf("reads of w1's entities still unanswered after %v (answered so far: %v)", bound, codes)
		}
	}
	t.Logf("reads of w1's entities: %v, the slowest after %v", codes, slowest.Round(time.Millisecond))
}

// inFlight is worker id's calls in flight, as /admin/workers shows them.
func inFlight(c *cluster, id string) int64 {
	for _, row := range c.workerRows() {
		if row.WorkerID == id {
			return row.InFlight
		}
	}
	return 0
}

// pausableProxy forwards TCP connections to target; while paused it
// holds the bytes it reads, so that calls over it wait without the
// connection breaking.
type pausableProxy struct {
	ln     net.Listener
	target atomic.Value // string: host:port
	paused atomic.Bool
}

// startPausableProxy listens on 127.0.0.1:0 until the test ends; set
// target before the first connection arrives (one waits until it is).
func startPausableProxy(t *testing.T) *pausableProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(in)
		}
	}()
	return p
}

func (p *pausableProxy) addr() string { return p.ln.Addr().String() }

// serve forwards one connection both ways.
func (p *pausableProxy) serve(in net.Conn) {
	defer in.Close()
	for p.target.Load() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := net.Dial("tcp", p.target.Load().(string))
	if err != nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { p.copy(out, in); done <- struct{}{} }()
	go func() { p.copy(in, out); done <- struct{}{} }()
	<-done
}

// copy copies src to dst, holding each chunk while paused.
func (p *pausableProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.paused.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestChangesQuietRetentionBinary: a quiet feed of the binary retires
// its changes once they are older than -changes-retention: a cursor
// from before them answers 410 naming the current end, which stays a
// cursor that reads the next change.
func TestChangesQuietRetentionBinary(t *testing.T) {
	n, _ := startDefault(t, "-changes-retention=1s")
	putNodeETag(t, n, "quiet", "a", 1)
	putNodeETag(t, n, "quiet", "b", 2)
	page := changesPage(t, n, testAdminKey, "quiet", "")
	if len(page.Changes) != 2 {
		t.Fatalf("page = %+v, want the two changes", page)
	}
	first := page.Changes[0].Seq
	seq, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(seq - 1)
	w := newWait(t, "the quiet feed's changes retired", 10*time.Second)
	for {
		code, body, _ := n.call("GET", "/api/databases/quiet/changes?since="+before, testAdminKey, nil)
		if code == http.StatusGone {
			if !strings.Contains(string(body), page.LastSeq) {
				t.Errorf("410 = %s, want it to name the current end %s", body, page.LastSeq)
			}
			break
		}
		if code != 200 || w.over() {
			t.Fatalf("cursor before the changes, past the retention = %d %s, want 410 (%v)", code, body, w)
		}
		time.Sleep(200 * time.Millisecond)
	}
	putNodeETag(t, n, "quiet", "c", 3)
	if got := changesPage(t, n, testAdminKey, "quiet", "since="+page.LastSeq).summary(); len(got) != 1 || !strings.HasPrefix(got[0], "c put") {
		t.Errorf("changes after the current end = %v, want c", got)
	}
}
