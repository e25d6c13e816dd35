package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerify: verify counts every entity by database and format (storage
// written by the format-1 code, then by today's) and exits 0; one changed
// byte in one stored entity makes it fail, naming the entity and its
// reason; a wrong or missing master key is refused before any entity is
// read.
func TestVerify(t *testing.T) {
	dir := copyFixture(t, "format1").root
	n := startNode(t, keyEnv, "-shared-fs="+dir)
	for db, count := range map[string]int{"chatdb": 5, "other": 3} {
		docs := map[string]json.RawMessage{}
		for i := range count {
			docs[fmt.Sprintf("k%d", i)] = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		}
		if code, out, _ := n.call("PUT", "/entity/"+db, testAdminKey, docs); code != 200 {
			t.Fatalf("PUT: %d %s", code, out)
		}
	}
	n.stop()
	verifyArgs := []string{"-role=verify", "-shared-fs=" + dir, "-master-key=" + testMasterKey, "-progress=off"}
	out, err := runToolArgs(t, verifyArgs...)
	if err != nil {
		t.Fatalf("verify of intact storage: %v\n%s", err, out)
	}
	for _, want := range []string{"verify: 12 entities, 0 failed", "chatdb    1       2         0", "chatdb    2       5         0",
		"notes.v1  1       2         0", "other     2       3         0"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify printed:\n%s\nwant a line containing %q", out, want)
		}
	}

	p, err := mustFSStore(t, dir).path(entityObjectKey("other", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	blob[len(blob)-20] ^= 0x01
	os.WriteFile(p, blob, 0o600)
	// chatdb's format-2 entities lose their data keys; its format-1 ones
	// need none.
	if err := mustFSStore(t, dir).Delete(t.Context(), dataKeysObjectKey("chatdb")); err != nil {
		t.Fatal(err)
	}
	out, err = runToolArgs(t, verifyArgs...)
	t.Logf("verify of storage with a changed entity and lost data keys:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "6 of 12 entities and versions failed") {
		t.Errorf("verify with a changed entity = %v, want a failure counting it", err)
	}
	for _, want := range []string{"chatdb    1       2         0", "chatdb    2       5         5", "other     2       3         1",
		"1  decrypt: message authentication failed", "5  data key \"…\" of chatdb: database has no data keys",
		`other "k1": open entity: decrypt`, `chatdb "k4": open entity: data key`} {
		if !strings.Contains(out, want) {
			t.Errorf("verify printed:\n%s\nwant a line containing %q", out, want)
		}
	}

	wrong := strings.Repeat("ab", 32)
	if _, err := runToolArgs(t, "-role=verify", "-shared-fs="+dir, "-master-key="+wrong, "-progress=off"); err == nil || !strings.Contains(err.Error(), "wrong master key") {
		t.Errorf("verify with a wrong master key = %v, want a refusal", err)
	}
	t.Setenv("MASTER_KEY", "")
	if _, err := runToolArgs(t, "-role=verify", "-shared-fs="+dir, "-progress=off"); err == nil || !strings.Contains(err.Error(), "-master-key") {
		t.Errorf("verify without a master key = %v, want a refusal naming -master-key", err)
	}
	if _, err := runToolArgs(t, "-role=verify", "-shared-fs="+filepath.Join(dir, "nope"), "-master-key="+testMasterKey); err == nil {
		t.Error("verify of a missing directory succeeded")
	}
}

// TestVerifyUnfinishedRotation: while a master-key rotation is unfinished
// (recorded, key check moved, no data key rewrapped yet), verify refuses
// the new key alone, naming -previous-master-key, and with both keys
// every entity decrypts.
func TestVerifyUnfinishedRotation(t *testing.T) {
	n, dir := startDefault(t)
	if code, out, _ := n.call("PUT", "/entity/chatdb", testAdminKey, map[string]string{"a": "1", "b": "2"}); code != 200 {
		t.Fatalf("PUT: %d %s", code, out)
	}
	n.stop()
	oldKey, _ := parseMasterKey(testMasterKey)
	newHex := strings.Repeat("cd", 32)
	newKey, _ := parseMasterKey(newHex)
	// The start of a rotation, as the main worker records it before it
	// rewraps anything.
	if _, _, err := checkKeys(t.Context(), mustFSStore(t, dir), newKey, "main-key-v2", oldKey); err != nil {
		t.Fatal(err)
	}
	args := []string{"-role=verify", "-shared-fs=" + dir, "-master-key=" + newHex, "-key-id=main-key-v2", "-progress=off"}
	if _, err := runToolArgs(t, args...); err == nil || !strings.Contains(err.Error(), "-previous-master-key") {
		t.Errorf("verify with the new key alone during a rotation = %v, want a refusal naming -previous-master-key", err)
	}
	out, err := runToolArgs(t, append(args, "-previous-master-key="+testMasterKey)...)
	if err != nil || !strings.Contains(out, "verify: 2 entities, 0 failed") {
		t.Errorf("verify with both keys during a rotation = %v\n%s", err, out)
	}
}
