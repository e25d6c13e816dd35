package main

// Documented behaviours checked from outside: the binary run as a user
// runs it (integration_test.go starts it), spoken to over HTTP and gRPC.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
