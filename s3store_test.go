package main

// The S3 integration tests need a real S3 server. They find it through
//
//	DELTADB_S3_ENDPOINT    "http://127.0.0.1:PORT" (or host:port, plain http)
//	DELTADB_S3_ACCESS_KEY  access key of an identity that may create buckets
//	DELTADB_S3_SECRET_KEY  its secret
//	DELTADB_S3_BUCKET      optional: the bucket the tests share (default "deltadb-test")
//
// which `.ci/seaweedfs.sh start` writes to its env file. Without them the
// tests skip, except with CI=true, where they fail. Each test works under a
// fresh key prefix (or a fresh bucket) and removes its objects afterwards.
// The retry and classification tests run against httptest servers and need
// no S3 server.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// s3TestConfig is the configuration of the S3 server under test, or skips
// (fails with CI=true) when there is none.
func s3TestConfig(t testing.TB) s3Config {
	t.Helper()
	cfg := s3Config{
		Endpoint:  os.Getenv("DELTADB_S3_ENDPOINT"),
		AccessKey: os.Getenv("DELTADB_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("DELTADB_S3_SECRET_KEY"),
		Bucket:    cmp.Or(os.Getenv("DELTADB_S3_BUCKET"), "deltadb-test"),
	}
	if cfg.Endpoint == "" || cfg.AccessKey == "" || cfg.SecretKey == "" {
		const msg = "no S3 server: set DELTADB_S3_ENDPOINT, DELTADB_S3_ACCESS_KEY and " +
			"DELTADB_S3_SECRET_KEY (.ci/seaweedfs.sh start writes them)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return cfg
}

var testPrefixSeq atomic.Int64

// uniqueName is a fresh lower-case name for t: letters, digits and '-'.
func uniqueName(t testing.TB) string {
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 30 {
		name = name[len(name)-30:]
	}
	return fmt.Sprintf("%s-%x-%d", strings.Trim(name, "-"), time.Now().UnixNano(), testPrefixSeq.Add(1))
}

// newTestS3Store opens the S3 server under test with a fresh key prefix,
// after edit changes the configuration; cleanup removes every object under
// the prefix and closes the store.
func newTestS3Store(t testing.TB, edit func(*s3Config)) *s3Store {
	t.Helper()
	cfg := s3TestConfig(t)
	cfg.Prefix = "t/" + uniqueName(t) + "/"
	if edit != nil {
		edit(&cfg)
	}
	s, err := newS3Store(t.Context(), cfg)
	if err != nil {
		t.Fatalf("newS3Store(%s, bucket %q) = %v", cfg.Endpoint, cfg.Bucket, err)
	}
	t.Cleanup(func() {
		removeAll(t, s)
		s.Close()
	})
	return s
}

// removeAll deletes every object of s (under its prefix).
func removeAll(t testing.TB, s *s3Store) {
	ctx := context.Background() // t.Context is already done in cleanup
	keys, err := s.List(ctx, "", "", 0)
	if err != nil {
		t.Errorf("cleanup: List = %v", err)
		return
	}
	parallel(len(keys), 8, func(i int) {
		if err := s.deleteObject(ctx, keys[i]); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// parallel runs f(0..n-1) on the given number of goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				f(i)
			}
		})
	}
	wg.Wait()
}

func TestS3StoreConformance(t *testing.T) {
	s3TestConfig(t)
	testStore(t, func(t *testing.T) store { return newTestS3Store(t, nil) })
}

// TestS3StoreObjects covers what the conformance test does not: keys that
// need URI encoding, HEAD, and the raw S3 error of a missing key.
func TestS3StoreObjects(t *testing.T) {
	s := newTestS3Store(t, nil)
	ctx := t.Context()
	keys := []string{"templates/a b+c$d=e&f.json", "_meta/ключ ✓", "files/db/~!*'();:@,[]%2F"}
	for _, k := range keys {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
		if got, err := s.Get(ctx, k); err != nil || string(got) != k {
			t.Errorf("Get(%q) = %q, %v, want %q", k, got, err, k)
		}
		if etag, err := s.headObject(ctx, k); err != nil || etag == "" {
			t.Errorf("headObject(%q) = %q, %v, want an ETag", k, etag, err)
		}
	}
	got, err := s.List(ctx, "", "", 0)
	if want := slices.Sorted(slices.Values(keys)); err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %q, %v, want %q", got, err, want)
	}
	_, err = s.Get(ctx, "missing")
	var se *s3Error
	if !errors.As(err, &se) || se.Code != "NoSuchKey" || !errors.Is(err, errNotFound) {
		t.Errorf("Get(missing) = %v, want an *s3Error NoSuchKey wrapping errNotFound", err)
	}
}

// TestS3StoreCreatesBucket opens a bucket that does not exist yet.
func TestS3StoreCreatesBucket(t *testing.T) {
	cfg := s3TestConfig(t)
	cfg.Bucket = "deltadb-" + uniqueName(t)[len("TestS3StoreCreatesBucket-"):]
	ctx := t.Context()
	s, err := newS3Store(ctx, cfg)
	if err != nil {
		t.Fatalf("newS3Store(new bucket %q) = %v", cfg.Bucket, err)
	}
	defer func() {
		removeAll(t, s)
		if _, err := s.do(context.Background(), s3Request{method: http.MethodDelete}); err != nil {
			t.Errorf("delete bucket %q: %v", cfg.Bucket, err)
		}
		s.Close()
	}()
	if err := s.createBucket(ctx); err != nil {
		t.Errorf("createBucket(existing %q) = %v, want nil (BucketAlreadyOwnedByYou)", cfg.Bucket, err)
	}
	if err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Errorf("Put in new bucket = %v", err)
	}
}

// TestS3StoreWrongCredentials: a wrong secret or access key is refused at
// start with errConfig and a message naming the flag to check.
func TestS3StoreWrongCredentials(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*s3Config)
		want string
	}{
		{"secret", func(c *s3Config) { c.SecretKey += "x" }, "signature rejected: check -s3-secret-key"},
		{"access key", func(c *s3Config) { c.AccessKey = "AKIDEXAMPLE" }, "check -s3-access-key"},
	} {
		cfg := s3TestConfig(t)
		tt.edit(&cfg)
		s, err := newS3Store(t.Context(), cfg)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newS3Store(wrong %s) = %v, want errConfig containing %q", tt.name, err, tt.want)
		}
	}
}

// countingTransport counts requests by method and query marker.
type countingTransport struct {
	lists atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Get("list-type") == "2" {
		c.lists.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestS3StoreList500 lists 500 objects back through continuation tokens,
// seven keys a page.
func TestS3StoreList500(t *testing.T) {
	ct := &countingTransport{}
	s := newTestS3Store(t, func(c *s3Config) {
		c.PageSize = 7
		c.HTTPClient = &http.Client{Transport: ct}
	})
	ctx := t.Context()
	var want []string
	for i := range 500 {
		want = append(want, entityObjectKey("db", fmt.Sprintf("user:%04d", i)))
	}
	parallel(len(want), 16, func(i int) {
		if err := s.Put(ctx, want[i], []byte{byte(i)}); err != nil {
			t.Errorf("Put(%q) = %v", want[i], err)
		}
	})
	before := ct.lists.Load()
	got, err := s.List(ctx, entityKeyPrefix("db", ""), "", 0)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %d keys, %v, want %d in order", len(got), err, len(want))
	}
	if pages := ct.lists.Load() - before; pages != 72 { // ceil(500/7)
		t.Errorf("List of 500 took %d ListObjectsV2 pages, want 72", pages)
	}
	for _, tt := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"files/", want[99], 50, want[100:150]},
		{entityKeyPrefix("db", "user:02"), "", 0, want[200:300]},
		{entityKeyPrefix("db", "user:04"), want[490], 0, want[491:500]},
		{"files/", want[499], 0, nil},
	} {
		got, err := s.List(ctx, tt.prefix, tt.after, tt.limit)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %q, %d) = %d keys, %v, want %d", tt.prefix, tt.after, tt.limit, len(got), err, len(tt.want))
		}
	}
}

// TestS3StoreConditionalPutRace: of 16 concurrent If-None-Match: * puts on
// one key exactly one wins; If-Match accepts only the current ETag.
func TestS3StoreConditionalPutRace(t *testing.T) {
	s := newTestS3Store(t, nil)
	ctx := t.Context()
	for round := range 3 { // SeaweedFS answers the losers ~1/s: ~7s a round
		key := fmt.Sprintf("files/db/race-%d", round)
		var wins, conflicts atomic.Int64
		var winner atomic.Value
		parallel(16, 16, func(i int) {
			data := fmt.Appendf(nil, "writer %d", i)
			switch _, err := s.condPut(ctx, key, data, "", true); {
			case err == nil:
				wins.Add(1)
				winner.Store(string(data))
			case errors.Is(err, errPrecondition):
				conflicts.Add(1)
			default:
				t.Errorf("condPut(%q, If-None-Match: *) = %v, want nil or errPrecondition", key, err)
			}
		})
		if wins.Load() != 1 || conflicts.Load() != 15 {
			t.Fatalf("round %d: %d winners, %d conflicts, want 1 and 15", round, wins.Load(), conflicts.Load())
		}
		if got, err := s.Get(ctx, key); err != nil || string(got) != winner.Load() {
			t.Errorf("Get(%q) = %q, %v, want the winner's %q", key, got, err, winner.Load())
		}
	}
	key := "files/db/race-0"
	etag, err := s.headObject(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.condPut(ctx, key, []byte("v2"), etag, false); err != nil {
		t.Errorf("condPut(If-Match current ETag) = %v", err)
	}
	if _, err := s.condPut(ctx, key, []byte("v3"), etag, false); !errors.Is(err, errPrecondition) {
		t.Errorf("condPut(If-Match stale ETag) = %v, want errPrecondition", err)
	}
	if _, err := s.condPut(ctx, "files/db/none", []byte("x"), etag, false); !errors.Is(err, errPrecondition) {
		t.Errorf("condPut(If-Match on missing key) = %v, want errPrecondition", err)
	}
}

func TestObjectKey(t *testing.T) {
	long := strings.Repeat("ab", 256) // a 256-byte entity key, hex-encoded
	for _, tt := range []struct{ logical, want string }{
		{"templates/chat.v1.json", "templates/chat.v1.json"},
		{"files/db/" + long[:200], "files/db/" + long[:200]},
		{"files/db/" + long[:201], "files/db/" + long[:200] + "+/" + long[200:201]},
		{"files/db/" + long, "files/db/" + long[:200] + "+/" + long[200:400] + "+/" + long[400:]},
	} {
		if got := objectKey(tt.logical); got != tt.want {
			t.Errorf("objectKey(%q) = %q, want %q", tt.logical, got, tt.want)
		}
		if got := logicalKey(tt.want); got != tt.logical {
			t.Errorf("logicalKey(%q) = %q, want %q", tt.want, got, tt.logical)
		}
	}
}

// FuzzObjectKeyOrder: for entity object keys, objectKey is reversible and
// keeps byte order and prefixes, which List relies on.
func FuzzObjectKeyOrder(f *testing.F) {
	f.Add("user:1", "user:1x", 100)
	f.Add(strings.Repeat("p", 120), strings.Repeat("p", 100)+"q", 101)
	f.Add(strings.Repeat("é", 128), strings.Repeat("é", 100), 250)
	f.Fuzz(func(t *testing.T, a, b string, cut int) {
		ka, kb := entityObjectKey("db", a), entityObjectKey("db", b)
		ma, mb := objectKey(ka), objectKey(kb)
		if logicalKey(ma) != ka {
			t.Fatalf("logicalKey(objectKey(%q)) = %q", ka, logicalKey(ma))
		}
		if got, want := strings.Compare(ma, mb), strings.Compare(ka, kb); got != want {
			t.Fatalf("Compare(objectKey(%q), objectKey(%q)) = %d, want %d", ka, kb, got, want)
		}
		if cut < 0 || cut > len(ka) {
			return
		}
		p := ka[:cut] // any prefix of a key
		if got, want := strings.HasPrefix(mb, objectKey(p)), strings.HasPrefix(kb, p); got != want {
			t.Fatalf("HasPrefix(objectKey(%q), objectKey(%q)) = %v, want %v", kb, p, got, want)
		}
		for _, c := range strings.Split(ma, "/") {
			if len(c) > 255 {
				t.Fatalf("objectKey(%q) has a %d-byte component", ka, len(c))
			}
		}
	})
}

// fakeS3 is an httptest S3 that answers PutObject with the scripted
// statuses in turn (then 200) and checks what it receives.
type fakeS3 struct {
	t      *testing.T
	mu     sync.Mutex
	script []int // status of each successive request
	// hang[n] makes request n get no answer until the client gives up.
	hang []bool
	// timeout is the client's per-attempt timeout; 0: 30 s, so that only
	// a hanging request ever times out, however loaded the machine is.
	timeout time.Duration
	calls   int // guarded by mu
	// list, if set, answers ListObjectsV2 requests with a
	// ListBucketResult body built from the query.
	list func(q url.Values) string
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	n := f.calls
	f.calls++
	f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if got, want := r.Header.Get("X-Amz-Content-Sha256"), payloadSHA256(body); got != want {
		f.t.Errorf("request %d: X-Amz-Content-Sha256 = %q, want %q", n, got, want)
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), sigV4Algorithm+" Credential=AK/") {
		f.t.Errorf("request %d: Authorization = %q", n, r.Header.Get("Authorization"))
	}
	if n < len(f.hang) && f.hang[n] {
		<-r.Context().Done()
		return
	}
	status := http.StatusOK
	if n < len(f.script) {
		status = f.script[n]
	}
	if status == http.StatusOK {
		if q := r.URL.Query(); f.list != nil && q.Get("list-type") == "2" {
			io.WriteString(w, f.list(q))
		}
		return
	}
	code := map[int]string{503: "SlowDown", 500: "InternalError", 400: "InvalidArgument"}[status]
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted</Message><RequestId>r%d</RequestId></Error>`, code, n)
}

func (f *fakeS3) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// newFakeS3Store is an s3Store talking to f with fast, deterministic retries.
func newFakeS3Store(t *testing.T, f *fakeS3) *s3Store {
	f.t = t
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	timeout := f.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	s, err := configureS3Store(s3Config{
		Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK", Bucket: "b",
		Backoff: time.Millisecond, Timeout: timeout,
		Jitter: func(int64) int64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestS3StoreListDirs: the databases come from ListObjectsV2 with
// delimiter "/" (common prefixes, never the objects), page by page, and
// each is checked by a one-key listing, because some servers keep an
// emptied prefix: "b.1" holds nothing and is not listed.
func TestS3StoreListDirs(t *testing.T) {
	pages := map[string]string{
		"":   `<ListBucketResult><CommonPrefixes><Prefix>files/a/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>files/b.1/</Prefix></CommonPrefixes><IsTruncated>true</IsTruncated><NextContinuationToken>t2</NextContinuationToken></ListBucketResult>`,
		"t2": `<ListBucketResult><CommonPrefixes><Prefix>files/c/</Prefix></CommonPrefixes><IsTruncated>false</IsTruncated></ListBucketResult>`,
	}
	held := map[string]string{
		"files/a/":   `<ListBucketResult><Contents><Key>files/a/00/61</Key></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>x</NextContinuationToken></ListBucketResult>`,
		"files/b.1/": `<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>`,
		"files/c/":   `<ListBucketResult><Contents><Key>files/c/00/63</Key></Contents><IsTruncated>false</IsTruncated></ListBucketResult>`,
	}
	f := &fakeS3{list: func(q url.Values) string {
		if q.Get("delimiter") == "" {
			if q.Get("max-keys") != "1" || held[q.Get("prefix")] == "" {
				t.Errorf("ListObjectsV2 probe %v, want max-keys 1 under a listed prefix", q)
			}
			return held[q.Get("prefix")]
		}
		if q.Get("prefix") != "files/" || q.Get("delimiter") != "/" {
			t.Errorf("ListObjectsV2 query %v, want prefix files/ and delimiter /", q)
		}
		return pages[q.Get("continuation-token")]
	}}
	s := newFakeS3Store(t, f)
	got, err := s.ListDirs(t.Context(), entitiesPrefix)
	if want := []string{"a", "c"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ListDirs(%q) = %q, %v, want %q", entitiesPrefix, got, err, want)
	}
	if n := f.callCount(); n != 5 {
		t.Errorf("ListDirs made %d requests, want 5 (two pages, one probe per name)", n)
	}
}

func TestS3StoreRetry(t *testing.T) {
	for _, tt := range []struct {
		name      string
		script    []int
		hang      []bool
		wantCalls int
		wantErr   error // nil: success
		wantText  string
	}{
		{"slowdown twice then ok", []int{503, 503}, nil, 3, nil, ""},
		{"500 then ok", []int{500}, nil, 2, nil, ""},
		{"timeout then ok", nil, []bool{true}, 2, nil, ""},
		{"always 503", []int{503, 503, 503, 503, 503}, nil, 4, errUnavailable, "gave up after 4 attempts"},
		{"400 not retried", []int{400}, nil, 1, nil, "400 InvalidArgument: scripted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeS3{script: tt.script, hang: tt.hang}
			if tt.hang != nil {
				f.timeout = time.Second
			}
			s := newFakeS3Store(t, f)
			err := s.Put(t.Context(), "k", []byte("data"))
			switch {
			case tt.wantText == "" && err != nil:
				t.Errorf("Put = %v, want success", err)
			case tt.wantText != "" && (err == nil || !strings.Contains(err.Error(), tt.wantText)):
				t.Errorf("Put = %v, want error containing %q", err, tt.wantText)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("Put = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && errors.Is(err, errUnavailable):
				t.Errorf("Put = %v, want no errUnavailable", err)
			}
			if calls := f.callCount(); calls != tt.wantCalls {
				t.Errorf("server saw %d requests, want %d", calls, tt.wantCalls)
			}
		})
	}
}

func TestS3StoreConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	s, err := configureS3Store(s3Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK", Bucket: "b", Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "k"); !errors.Is(err, errUnavailable) {
		t.Errorf("Get from a closed port = %v, want errUnavailable", err)
	}
	if _, err := newS3Store(t.Context(), s3Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK", Bucket: "b", Backoff: time.Millisecond}); !errors.Is(err, errUnavailable) {
		t.Errorf("newS3Store(closed port) = %v, want errUnavailable", err)
	}
}

func TestS3Classify(t *testing.T) {
	s := &s3Store{bucket: "b"}
	xmlErr := func(code string) []byte {
		return fmt.Appendf(nil, "<Error><Code>%s</Code><Message>m</Message></Error>", code)
	}
	for _, tt := range []struct {
		status int
		body   []byte
		key    string
		want   error
		text   string
	}{
		{404, xmlErr("NoSuchKey"), "k", errNotFound, "404 NoSuchKey: m"},
		{404, nil, "k", errNotFound, "404 Not Found"}, // HEAD: no body
		{404, xmlErr("NoSuchBucket"), "k", errConfig, `bucket "b" does not exist`},
		{412, xmlErr("PreconditionFailed"), "k", errPrecondition, "PreconditionFailed"},
		{412, nil, "k", errPrecondition, "412"},
		{409, xmlErr("ConditionalRequestConflict"), "k", errPrecondition, ""},
		{403, xmlErr("SignatureDoesNotMatch"), "k", errConfig, "s3: signature rejected: check -s3-secret-key"},
		{403, xmlErr("InvalidAccessKeyId"), "", errConfig, "check -s3-access-key"},
		{403, xmlErr("AccessDenied"), "k", errConfig, "access denied"},
		{403, nil, "k", errConfig, "access denied"},
		{403, xmlErr("RequestTimeTooSkewed"), "k", errConfig, "clock"},
		{503, xmlErr("SlowDown"), "k", errUnavailable, ""},
		{500, nil, "k", errUnavailable, ""},
		{429, nil, "k", errUnavailable, ""},
		{400, xmlErr("InvalidArgument"), "k", nil, "400 InvalidArgument"},
	} {
		err := s.classify(tt.status, tt.body, s3Request{key: tt.key})
		if (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("classify(%d, %q) = %v, want %v containing %q", tt.status, tt.body, err, tt.want, tt.text)
		}
		if got, want := retryable(err), tt.want == errUnavailable; got != want {
			t.Errorf("retryable(classify(%d, %q)) = %v, want %v", tt.status, tt.body, got, want)
		}
	}
}

func TestSplitEndpoint(t *testing.T) {
	for _, tt := range []struct {
		endpoint   string
		ssl        bool
		scheme     string
		host       string
		wantConfig bool
	}{
		{"127.0.0.1:8333", false, "http", "127.0.0.1:8333", false},
		{"s3.amazonaws.com", true, "https", "s3.amazonaws.com", false},
		{"http://127.0.0.1:8333/", false, "http", "127.0.0.1:8333", false},
		{"http://127.0.0.1:8333", true, "", "", true}, // never in the clear with -s3-use-ssl
		{"https://127.0.0.1:8333", true, "https", "127.0.0.1:8333", false},
		{"https://minio:9000", false, "https", "minio:9000", false},
		{"ftp://x", false, "", "", true},
		{"host/path", false, "", "", true},
	} {
		scheme, host, err := splitEndpoint(tt.endpoint, tt.ssl)
		if scheme != tt.scheme || host != tt.host || errors.Is(err, errConfig) != tt.wantConfig {
			t.Errorf("splitEndpoint(%q, %v) = %q, %q, %v, want %q, %q (error %v)",
				tt.endpoint, tt.ssl, scheme, host, err, tt.scheme, tt.host, tt.wantConfig)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: time.Second}
	for _, tt := range []struct {
		n        int
		jitter   int64 // fraction of the half, in percent
		min, max time.Duration
	}{
		{1, 0, 50 * time.Millisecond, 50 * time.Millisecond},
		{1, 100, 100 * time.Millisecond, 100 * time.Millisecond},
		{3, 0, 200 * time.Millisecond, 200 * time.Millisecond},
		{5, 100, time.Second, time.Second}, // capped
		{70, 0, 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		b.jitter = func(n int64) int64 { return (n - 1) * tt.jitter / 100 }
		if got := b.delay(tt.n); got < tt.min-time.Microsecond || got > tt.max {
			t.Errorf("delay(%d) with jitter %d%% = %v, want %v..%v", tt.n, tt.jitter, got, tt.min, tt.max)
		}
	}
}

// benchS3 measures op on 1 KiB objects and reports p50 and p99.
func benchS3(b *testing.B, op func(s *s3Store, key string, data []byte) error) {
	s := newTestS3Store(b, nil)
	data := bytes.Repeat([]byte("x"), 1024)
	for i := range 64 {
		if err := s.Put(b.Context(), fmt.Sprint("bench/", i), data); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := op(s, fmt.Sprint("bench/", i%64), data); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkS3Put1KiB(b *testing.B) {
	benchS3(b, func(s *s3Store, key string, data []byte) error { return s.Put(b.Context(), key, data) })
}

func BenchmarkS3Get1KiB(b *testing.B) {
	benchS3(b, func(s *s3Store, key string, data []byte) error {
		_, err := s.Get(b.Context(), key)
		return err
	})
}
