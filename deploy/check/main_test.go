package check

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// bin is the binary TestMain builds from the repository (DDB_SRC, default
// ../..).
var bin *binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ddb-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	src := os.Getenv("DDB_SRC")
	if src == "" {
		src = "../.."
	}
	bin, err = buildBinary(src, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	ops.dir = dir
	code := m.Run()
	ops.stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// opsServer is one -role=all process of the binary with an ops listener,
// started on first use, to ask which paths the ops port serves.
type opsServer struct {
	once sync.Once
	dir  string // holds the storage
	cmd  *exec.Cmd
	// exited is closed once the process has ended.
	exited chan struct{}
	base   string
	err    error
}

var ops opsServer

// status is the HTTP status the ops port answers for GET path.
func (o *opsServer) status(t *testing.T, path string) int {
	t.Helper()
	o.once.Do(o.start)
	if o.err != nil {
		t.Fatal(o.err)
	}
	resp, err := http.Get(o.base + path)
	if err != nil {
		t.Fatalf("GET %s on the ops port: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// start runs the binary with -ops-addr on a free loopback port and waits
// up to 30 s for its /healthz.
func (o *opsServer) start() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		o.err = err
		return
	}
	addr := ln.Addr().String()
	ln.Close()
	o.cmd = exec.Command(bin.path, "-role=all", "-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0",
		"-ops-addr="+addr, "-shared-fs="+filepath.Join(o.dir, "db"))
	o.cmd.Env = []string{"MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		"ADMIN_KEY=check-admin-key-0123456789"}
	var stderr bytes.Buffer
	o.cmd.Stderr = &stderr
	if o.err = o.cmd.Start(); o.err != nil {
		return
	}
	o.exited = make(chan struct{})
	go func() { o.cmd.Wait(); close(o.exited) }()
	o.base = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(o.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-o.exited:
			o.err = fmt.Errorf("the binary with -ops-addr exited: %s", stderr.Bytes())
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.err = fmt.Errorf("the binary's ops port %s did not answer /healthz within 30 s: %v", addr, err)
			return
		}
	}
}

// stop ends the process, if one was started.
func (o *opsServer) stop() {
	if o.exited != nil {
		o.cmd.Process.Kill()
		<-o.exited
	}
}
