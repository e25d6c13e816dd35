package main

// Regression test of read amplification: a key that may only
// read took the server to 2-4 GB with answers of many large documents,
// and the entity cache, bounded by count, held 681 MB after 400 writes of
// 1 MB. It runs the finding's probes against the binary with its default
// flags, watched as the budget tests are (budget_test.go): RSS under
// 500 MB, /healthz within 1 s.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// ampDocs and ampDocSize are the finding's database: 400 documents of
// 1 MB (1,000,000 bytes of padding, under the 1 MiB body limit).
const (
	ampDocs    = 400
	ampDocSize = 1000000
)

// ampKey is the key of document i.
func ampKey(i int) string { return fmt.Sprintf("doc%03d", i) }

// ampPad is the padding of every document.
var ampPad = strings.Repeat("x", ampDocSize)

// ampDoc is document i as stored: its number and the padding.
func ampDoc(i int) string { return fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, ampPad) }

// checkAmpDoc checks that raw is document key's whole (byte for byte:
// decoding 2.8 GB of answers would slow the server under test, which
// shares the machine).
func checkAmpDoc(key string, raw []byte) error {
	var i int
	if _, err := fmt.Sscanf(key, "doc%03d", &i); err != nil || string(raw) != ampDoc(i) {
		return fmt.Errorf("document of %s: %d bytes, not the one stored (%.20s...)", key, len(raw), raw)
	}
	return nil
}

// TestReadAmplification runs the finding's probes in turn on one server
// (subtests named after them). Each follows the answers to the end (next,
// remaining) and checks that every document arrives once and whole.
func TestReadAmplification(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 400 MB; not with -short")
	}
	n, _ := startDefault(t)
	t.Run("CacheAfter400Writes", func(t *testing.T) {
		w := watchServers(t, n)
		for i := range ampDocs {
			body := fmt.Sprintf(`{%q:%s}`, ampKey(i), ampDoc(i))
			if code, out, _ := n.call("PUT", "/entity/big", testAdminKey, body); code != 200 {
				t.Fatalf("PUT big/%s = %d %s", ampKey(i), code, out)
			}
		}
		w.check(t)
		var workers []struct {
			Cache struct {
				Entries  int
				Bytes    int64
				MaxBytes int64 `json:"max_bytes"`
			}
		}
		if err := nodeGetJSON(n, "/admin/workers", &workers); err != nil || len(workers) != 1 {
			t.Fatalf("GET /admin/workers = %+v, %v", workers, err)
		}
		c := workers[0].Cache
		t.Logf("cache after the writes: %d entities, %d of %d MB", c.Entries, c.Bytes>>20, c.MaxBytes>>20)
		if c.MaxBytes <= 0 || c.MaxBytes > 128<<20 || c.Bytes > c.MaxBytes || c.Entries >= ampDocs {
			t.Errorf("cache after 400 writes of 1 MB holds %d entities, %d of %d bytes; want at most 128 MiB, within its bound", c.Entries, c.Bytes, c.MaxBytes)
		}
	})
	t.Run("IncludeDocsLimit400", func(t *testing.T) {
		w := watchServers(t, n)
		walkIncludeDocs(t, n)
		w.check(t)
	})
	t.Run("GetMany400Keys", func(t *testing.T) {
		w := watchServers(t, n)
		walkGetMany(t, n)
		w.check(t)
	})
	t.Run("ThreeAtOnce", func(t *testing.T) {
		w := watchServers(t, n)
		var wg sync.WaitGroup
		for _, walk := range []func(*testing.T, *node){walkIncludeDocs, walkGetMany, walkIncludeDocs} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				walk(t, n)
			}()
		}
		wg.Wait()
		w.check(t)
	})
}

// walkIncludeDocs reads big with GET keys?include_docs=true&limit=400,
// following next, and checks that it got every document once.
func walkIncludeDocs(t *testing.T, n *node) {
	seen := map[string]bool{}
	cursor, pages := "", 0
	for ; pages == 0 || cursor != ""; pages++ {
		q := url.Values{"include_docs": {"true"}, "limit": {"400"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items []struct {
				Key string
				Doc json.RawMessage
			}
			Next string
		}
		if err := nodeGetJSON(n, "/api/databases/big/keys?"+q.Encode(), &page); err != nil {
			t.Error(err)
			return
		}
		for _, it := range page.Items {
			if err := checkAmpDoc(it.Key, it.Doc); err != nil || seen[it.Key] {
				t.Errorf("listing: %v, or %s seen before", err, it.Key)
			}
			seen[it.Key] = true
		}
		cursor = page.Next
	}
	if len(seen) != ampDocs {
		t.Errorf("listing with include_docs gave %d documents in %d pages, want %d", len(seen), pages, ampDocs)
	}
	t.Logf("listing with include_docs: %d documents in %d pages", len(seen), pages)
}

// walkGetMany reads big with POST /api/databases/big/get of its 400 keys,
// asking again for the remaining keys until none remain, and checks that
// it got every document once.
func walkGetMany(t *testing.T, n *node) {
	pending := make([]string, ampDocs)
	for i := range pending {
		pending[i] = ampKey(i)
	}
	seen, asks := map[string]bool{}, 0
	for ; len(pending) > 0; asks++ {
		body, _ := json.Marshal(map[string][]string{"keys": pending})
		var ans struct {
			Documents map[string]json.RawMessage
			Missing   []string
			Remaining []string
		}
		if err := postJSON(n, "/api/databases/big/get", body, &ans); err != nil {
			t.Error(err)
			return
		}
		for k, d := range ans.Documents {
			if err := checkAmpDoc(k, d); err != nil || seen[k] {
				t.Errorf("get-many: %v, or %s seen before", err, k)
			}
			seen[k] = true
		}
		if len(ans.Missing) > 0 {
			t.Errorf("get-many: missing %q", ans.Missing)
		}
		pending = ans.Remaining
	}
	if len(seen) != ampDocs {
		t.Errorf("get-many gave %d documents in %d answers, want %d", len(seen), asks, ampDocs)
	}
	t.Logf("get-many: %d documents in %d answers", len(seen), asks)
}

// nodeGetJSON decodes the answer of GET path (admin key) into v.
func nodeGetJSON(n *node, path string, v any) error {
	req, err := http.NewRequest("GET", n.base+path, nil)
	if err != nil {
		return err
	}
	return doJSON(req, v)
}

// postJSON decodes the answer of POST path with body (admin key) into v.
func postJSON(n *node, path string, body []byte, v any) error {
	req, err := http.NewRequest("POST", n.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	return doJSON(req, v)
}

// doJSON sends req with the admin key and decodes a 200 answer into v.
func doJSON(req *http.Request, v any) error {
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s = %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: decode: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// TestProcEntityCacheBytes: -entity-cache-bytes bounds a remote worker's
// cache too (4 MiB: at most four documents of 1 MB of the ten written
// through it), and /admin/workers shows it from its heartbeats.
func TestProcEntityCacheBytes(t *testing.T) {
	c := startCluster(t)
	c.startWorker("w1", "-entity-cache-bytes=4194304")
	c.waitWorkers(20*time.Second, "w1")
	for i := range 10 {
		if code, out, _ := c.main.call("PUT", "/entity/big", testAdminKey, fmt.Sprintf(`{%q:%s}`, ampKey(i), ampDoc(i))); code != 200 {
			t.Fatalf("PUT big/%s = %d %s", ampKey(i), code, out)
		}
	}
	var st cacheStats
	for w := newWait(t, "w1's cache counters in a heartbeat", 20*time.Second); st.Entries == 0 && !w.over(); time.Sleep(100 * time.Millisecond) {
		for _, r := range c.workerRows() {
			st = r.Cache
		}
	}
	if st.MaxBytes != 4<<20 || st.Bytes > st.MaxBytes || st.Entries == 0 || st.Entries > 4 {
		t.Errorf("w1's cache after ten writes of 1 MB = %+v, want 1 to 4 entities within max_bytes 4194304", st)
	}
}
