package main

// The load tool's queries (-role=bench -ops=find,scan; BENCHMARKS.md,
// Finding documents): -keys chat documents of about -value-size bytes,
// each of one of keys/20 users, so that an equality query on the user
// returns 20 documents.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// benchFindPerUser is how many documents each user has.
const benchFindPerUser = 20

// benchFind runs one query phase: find (an equality on an indexed field,
// after loading the documents and timing the index's build) or scan (a
// selector no index serves and nothing matches: every entity is read).
func benchFind(ctx context.Context, client *http.Client, b benchFlags, op string, stdout io.Writer) error {
	if err := benchFindLoad(ctx, client, b, stdout); err != nil {
		return err
	}
	users := max(1, b.keys/benchFindPerUser)
	switch op {
	case "find":
		if err := benchFindIndex(ctx, client, b, stdout); err != nil {
			return err
		}
		res := benchLoop(ctx, "find-indexed", b.concurrency, b.duration, func(c, i int) error {
			return benchQuery(ctx, client, b, fmt.Sprintf(`{"selector":{"user":"user_%05d"},"limit":20}`, rand.IntN(users)), benchFindPerUser)
		})
		fmt.Fprintf(stdout, "%s c=%d\n", res, b.concurrency)
	case "scan":
		res := benchLoop(ctx, "find-scan", b.concurrency, b.duration, func(c, i int) error {
			return benchQuery(ctx, client, b, `{"selector":{"title":"no such title"},"limit":20}`, 0)
		})
		fmt.Fprintf(stdout, "%s c=%d entities/s=%.0f\n", res, b.concurrency, float64(b.keys*res.ops)/res.elapsed.Seconds())
	}
	return nil
}

// benchChatDoc is chat session i: its user, a title and messages up to
// about size bytes.
func benchChatDoc(i, users, size int) map[string]any {
	msgs := []map[string]string{}
	for n := 0; n*120 < size-120; n++ {
		msgs = append(msgs, map[string]string{"role": []string{"user", "assistant"}[n%2], "content": fmt.Sprintf("message %d of session %d, %080d", n, i, n)})
	}
	return map[string]any{"user": fmt.Sprintf("user_%05d", i%users), "title": fmt.Sprintf("session %d", i), "messages": msgs}
}

// benchFindLoad writes the documents unless the database holds them.
func benchFindLoad(ctx context.Context, client *http.Client, b benchFlags, stdout io.Writer) error {
	var info databaseInfo
	if benchJSON(ctx, client, b, http.MethodGet, "/api/databases/"+b.db, nil, &info) == nil && info.Entities == b.keys {
		return nil
	}
	start, users := time.Now(), max(1, b.keys/benchFindPerUser)
	const batch = 500
	errs := make(chan error, b.concurrency)
	next := make(chan int)
	var wg sync.WaitGroup
	for range b.concurrency {
		wg.Go(func() {
			for from := range next {
				docs := map[string]any{}
				for i := from; i < min(from+batch, b.keys); i++ {
					docs[fmt.Sprintf("session_%06d", i)] = benchChatDoc(i, users, b.valueSize)
				}
				if err := benchJSON(ctx, client, b, http.MethodPut, "/entity/"+b.db, docs, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for from := 0; from < b.keys; from += batch {
		next <- from
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("load: %w", err)
	default:
	}
	fmt.Fprintf(stdout, "find-load      docs=%d elapsed=%v\n", b.keys, time.Since(start).Round(time.Millisecond))
	return nil
}

// benchFindIndex deletes and creates the index on user, printing how long
// the creation (which builds it on every worker) took.
func benchFindIndex(ctx context.Context, client *http.Client, b benchFlags, stdout io.Writer) error {
	benchJSON(ctx, client, b, http.MethodDelete, "/api/databases/"+b.db+"/index/by-user", nil, nil)
	start := time.Now()
	body := map[string]any{"index": map[string]any{"fields": []string{"user"}}, "name": "by-user"}
	if err := benchJSON(ctx, client, b, http.MethodPost, "/api/databases/"+b.db+"/index", body, nil); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	took := time.Since(start)
	// The build must be done: an explain counts every entry.
	var plan explainAnswer
	if err := benchJSON(ctx, client, b, http.MethodPost, "/api/databases/"+b.db+"/explain", map[string]any{"selector": map[string]any{"user": map[string]any{"$gte": ""}}}, &plan); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	fmt.Fprintf(stdout, "find-index     entities=%d build=%v (explain after it %v)\n", plan.Entities, took.Round(time.Millisecond), (time.Since(start) - took).Round(time.Millisecond))
	return nil
}

// benchQuery runs one find and checks it found want documents and went
// through (more false unless the page is full).
func benchQuery(ctx context.Context, client *http.Client, b benchFlags, body string, want int) error {
	var ans findAnswer
	if err := benchJSON(ctx, client, b, http.MethodPost, "/api/databases/"+b.db+"/find", json.RawMessage(body), &ans); err != nil {
		return err
	}
	if len(ans.Docs) != want || ans.More && want == 0 {
		return fmt.Errorf("find %s: %d documents (more %v, %s), want %d", body, len(ans.Docs), ans.More, ans.Warning, want)
	}
	return nil
}

// benchJSON sends one JSON request and decodes the answer into out (nil:
// discard).
func benchJSON(ctx context.Context, client *http.Client, b benchFlags, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.target+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d %s", method, path, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}
