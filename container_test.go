package main

// The container image of deploy/Dockerfile, run under podman.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// imageEnv names the environment variable holding the image to test, as
// deploy/build-image.sh tags it (localhost/deltadatabase:dev).
const imageEnv = "DELTADB_IMAGE"

// TestContainerQuickStart checks the image's configuration (non-root user,
// /data volume, default command, no HEALTHCHECK), runs it as README's
// Deploy section does, with README's quick-start environment, and runs
// README's quick start against it. Without DELTADB_IMAGE it is skipped
// (a laptop need not have podman), except in CI (CI=true), which builds
// the image and must run this.
func TestContainerQuickStart(t *testing.T) {
	image := testImage(t)
	checkImageConfig(t, image)
	env := quickStartEnv(t)
	name := fmt.Sprintf("ddb-test-quickstart-%d", os.Getpid())
	podman(t, "rm", "-f", "--ignore", name)
	podman(t, "volume", "rm", "-f", name)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("podman", "logs", name).CombinedOutput()
			t.Logf("podman logs %s:\n%s", name, out)
		}
		podman(t, "rm", "-f", "--ignore", name)
		podman(t, "volume", "rm", "-f", name)
	})
	args := []string{"run", "-d", "--name", name, "-p", "127.0.0.1::8080", "-v", name + ":/data"}
	for _, kv := range env {
		args = append(args, "-e", kv)
	}
	podman(t, append(args, image)...)
	addr := strings.TrimSpace(podman(t, "port", name, "8080/tcp"))
	base := "http://" + addr
	waitReady(t, base)
	runQuickStart(t, &node{t: t, base: base}, env)
}

// testImage is the image named by DELTADB_IMAGE; it skips t without one,
// or fails it in CI.
func testImage(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a container; not with -short")
	}
	image := os.Getenv(imageEnv)
	switch {
	case image != "":
		return image
	case os.Getenv("CI") == "true":
		t.Fatalf("CI must test the container image: build it (deploy/build-image.sh) and set %s", imageEnv)
	default:
		t.Skipf("no container image: deploy/build-image.sh, then %s=localhost/deltadatabase:dev go test -run Container .", imageEnv)
	}
	return ""
}

// checkImageConfig checks what deploy/Dockerfile promises.
func checkImageConfig(t *testing.T, image string) {
	t.Helper()
	var got []struct {
		Config struct {
			User    string
			Cmd     []string
			Volumes map[string]struct{}
		}
		HealthCheck json.RawMessage
	}
	if err := json.Unmarshal([]byte(podman(t, "image", "inspect", image)), &got); err != nil || len(got) != 1 {
		t.Fatalf("podman image inspect %s: %v (%d images)", image, err, len(got))
	}
	c := got[0].Config
	if uid, _, _ := strings.Cut(c.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("image user = %q, want a non-root numeric user", c.User)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("image volumes = %v, want /data", c.Volumes)
	}
	if want := []string{"-role=all", "-rest-addr=0.0.0.0:8080", "-shared-fs=/data"}; !slices.Equal(c.Cmd, want) {
		t.Errorf("image command = %q, want %q", c.Cmd, want)
	}
	if len(got[0].HealthCheck) > 0 && string(got[0].HealthCheck) != "null" {
		t.Errorf("image has a HEALTHCHECK %s, want none (orchestrators probe /readyz)", got[0].HealthCheck)
	}
}

// podman runs podman with args and returns its stdout; a failure fails t.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("podman", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// waitReady polls base/readyz until it answers 200, for up to 30 s on an
// idle machine.
func waitReady(t *testing.T, base string) {
	t.Helper()
	w := newWait(t, base+"/readyz to answer 200", 30*time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if w.over() {
			t.Fatalf("%s/readyz: not 200: %v (last: %v)", base, w, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestContainerOriginalDockerRun runs the original system's one-command
// start, `docker run -d -p 8080:8080 -e ADMIN_KEY=... -v
// delta_data:/shared/db IMAGE` (with podman, a loopback port and our
// image), with a 16-character admin key. Documents written survive the
// container's removal: the same line on the same volume with the
// MASTER_KEY the first start printed serves them; without it the start
// is refused naming MASTER_KEY. The original's 8-character example key is
// refused with a sentence about its length.
func TestContainerOriginalDockerRun(t *testing.T) {
	image := testImage(t)
	name := fmt.Sprintf("ddb-test-original-%d", os.Getpid())
	volume := name + "-delta_data"
	// -v: the image's /data volume, anonymous here, goes with the container.
	clean := func() {
		podman(t, "rm", "-f", "-v", "--ignore", name)
		podman(t, "volume", "rm", "-f", volume)
	}
	clean()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("podman", "logs", name).CombinedOutput()
			t.Logf("podman logs %s:\n%s", name, out)
		}
		clean()
	})
	const adminKey = "0123456789abcdef"
	run := func(env ...string) {
		args := []string{"run", "-d", "--name", name, "-p", "127.0.0.1::8080", "-v", volume + ":/shared/db"}
		for _, kv := range env {
			args = append(args, "-e", kv)
		}
		podman(t, append(args, image)...)
	}
	// exited waits for the container to stop by itself and returns its log.
	exited := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), scaled(30*time.Second))
		defer cancel()
		code, err := exec.CommandContext(ctx, "podman", "wait", name).Output()
		out, _ := exec.Command("podman", "logs", name).CombinedOutput()
		podman(t, "rm", "-f", "-v", name)
		if err != nil || strings.TrimSpace(string(code)) == "0" {
			t.Fatalf("container: podman wait = %s, %v; want it refused and exited non-zero; log:\n%s", code, err, out)
		}
		return string(out)
	}
	run("ADMIN_KEY=changeme")
	if log := exited(); !strings.Contains(log, "16") {
		t.Errorf("the 8-character admin key: log %q, want a refusal naming the 16-character minimum", log)
	}
	run("ADMIN_KEY=" + adminKey)
	base := "http://" + strings.TrimSpace(podman(t, "port", name, "8080/tcp"))
	waitReady(t, base)
	master := ""
	for _, f := range strings.Fields(podman(t, "logs", name)) {
		if v, ok := strings.CutPrefix(f, "MASTER_KEY="); ok {
			master = v
		}
	}
	if len(master) != 64 {
		t.Fatalf("the first start printed no MASTER_KEY:\n%s", podman(t, "logs", name))
	}
	docs := map[string]string{"s1": `{"messages":[{"role":"user","content":"hi"}]}`, "s2": `[1,2,3]`}
	for k, v := range docs {
		if code, out, _ := httpCall(t, "PUT", base+"/entity/chatdb", adminKey, `{"`+k+`":`+v+`}`); code != 200 {
			t.Fatalf("PUT %s = %d %s", k, code, out)
		}
	}
	podman(t, "rm", "-f", "-v", name)
	run("ADMIN_KEY=" + adminKey)
	if log := exited(); !strings.Contains(log, "MASTER_KEY") {
		t.Errorf("a start on the volume without its master key: log %q, want a refusal naming MASTER_KEY", log)
	}
	run("ADMIN_KEY="+adminKey, "MASTER_KEY="+master)
	base = "http://" + strings.TrimSpace(podman(t, "port", name, "8080/tcp"))
	waitReady(t, base)
	for k, v := range docs {
		if code, out, _ := httpCall(t, "GET", base+"/entity/chatdb?key="+k, adminKey, nil); code != 200 || !jsonEqual(out, []byte(v)) {
			t.Errorf("GET %s after the container's removal = %d %s, want %s", k, code, out, v)
		}
	}
}
