package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// s3Store is the S3 backend (ARCHITECTURE.md "Storage layout"): every logical
// key is an object of one bucket, spoken to with path-style requests signed by
// sigv4.go over net/http. It works with AWS S3, MinIO, SeaweedFS and Ceph RGW.
//
// Failures are classified once, here: NoSuchKey becomes errNotFound,
// PreconditionFailed errPrecondition, rejected credentials errConfig, and 5xx,
// throttling, timeouts and connection errors are retried with bounded
// exponential backoff and jitter before becoming errUnavailable. Other 4xx
// are not retried.
//
// Lock does nothing: S3 has no cross-process lock. Cross-process safety on S3
// comes from routing every key to one owning worker (ARCHITECTURE.md
// "Processing workers and routing") and from conditional puts (PutIf); within
// a process, keyLocks (locks.go).
//
// An s3Store is safe for concurrent use. Create it with newS3Store.
type s3Store struct {
	scheme, host string // "http" or "https"; "host[:port]"
	bucket       string
	prefix       string // prepended to every logical key; "" for none
	region       string // signing region, never empty
	creds        credentials
	client       *http.Client
	ownClient    bool // client was made here; Close closes its idle connections
	now          func() time.Time
	timeout      time.Duration
	attempts     int
	retry        backoff
	pageSize     int
	// retries counts requests sent again after a transient failure.
	retries atomic.Uint64
}

var _ store = (*s3Store)(nil)

// s3Config configures newS3Store. Zero values of the optional fields pick
// the defaults named in their docs.
type s3Config struct {
	// Endpoint is "host[:port]". A "http://" or "https://" prefix is also
	// accepted and then decides the scheme; "http://" with UseSSL is
	// refused (errConfig) rather than sent in the clear.
	Endpoint string
	// AccessKey and SecretKey sign every request; SessionToken is optional.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Bucket holds every object; it is created at start if missing.
	Bucket string
	// Prefix is prepended to every logical key, so several stores can share
	// a bucket ("" for none; give it a trailing "/").
	Prefix string
	// Region is the signing region; "" signs as us-east-1.
	Region string
	// UseSSL selects https.
	UseSSL bool
	// Now is the signing clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient sends the requests; nil means a client of our own with
	// room for many idle connections to the one endpoint.
	HTTPClient *http.Client
	// Timeout bounds each attempt of each request; 0 means 30s.
	Timeout time.Duration
	// MaxAttempts bounds the tries of a retryable request; 0 means 4.
	MaxAttempts int
	// Backoff is the first retry delay, doubled per retry up to MaxBackoff
	// and jittered (a random half of it is dropped); 0 means 100ms.
	Backoff time.Duration
	// MaxBackoff caps the retry delay; 0 means 2s.
	MaxBackoff time.Duration
	// PageSize is ListObjectsV2's max-keys; 0 means 1000.
	PageSize int
	// Jitter returns a random int64 in [0, n); nil means math/rand/v2.Int64N.
	Jitter func(n int64) int64
}

// newS3Store checks cfg, verifies the credentials with a signed request,
// and creates the bucket if it is missing. Rejected credentials fail here
// with an error wrapping errConfig that names the flag to fix; an
// unreachable endpoint fails with errUnavailable.
func newS3Store(ctx context.Context, cfg s3Config) (*s3Store, error) {
	s, err := configureS3Store(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// configureS3Store builds an s3Store from cfg without any request.
func configureS3Store(cfg s3Config) (*s3Store, error) {
	for _, f := range []struct{ name, v string }{
		{"-s3-endpoint", cfg.Endpoint}, {"-s3-bucket", cfg.Bucket},
		{"-s3-access-key", cfg.AccessKey}, {"-s3-secret-key", cfg.SecretKey},
	} {
		if f.v == "" {
			return nil, fmt.Errorf("s3: %s is empty: %w", f.name, errConfig)
		}
	}
	if strings.Contains(cfg.Bucket, "/") {
		return nil, fmt.Errorf("s3: bucket %q contains '/': %w", cfg.Bucket, errConfig)
	}
	scheme, host, err := splitEndpoint(cfg.Endpoint, cfg.UseSSL)
	if err != nil {
		return nil, err
	}
	s := &s3Store{
		scheme: scheme, host: host, bucket: cfg.Bucket, prefix: cfg.Prefix,
		region: cmp.Or(cfg.Region, "us-east-1"),
		creds:  credentials{AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey, SessionToken: cfg.SessionToken},
		client: cfg.HTTPClient, now: cfg.Now,
		timeout: cmp.Or(cfg.Timeout, 30*time.Second), attempts: cmp.Or(cfg.MaxAttempts, 4),
		retry: backoff{base: cmp.Or(cfg.Backoff, 100*time.Millisecond), max: cmp.Or(cfg.MaxBackoff, 2*time.Second),
			jitter: cfg.Jitter},
		pageSize: cmp.Or(cfg.PageSize, 1000),
	}
	if s.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		s.client, s.ownClient = &http.Client{Transport: t}, true
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.retry.jitter == nil {
		s.retry.jitter = rand.Int64N
	}
	return s, nil
}

// splitEndpoint returns the scheme and host of an endpoint.
func splitEndpoint(endpoint string, useSSL bool) (scheme, host string, err error) {
	scheme = "http"
	if useSSL {
		scheme = "https"
	}
	if s, rest, ok := strings.Cut(endpoint, "://"); ok {
		if s != "http" && s != "https" {
			return "", "", fmt.Errorf("s3: endpoint %q: scheme must be http or https: %w", endpoint, errConfig)
		}
		if s == "http" && useSSL {
			return "", "", fmt.Errorf("s3: endpoint %q says http:// but -s3-use-ssl asks for https: drop one: %w", endpoint, errConfig)
		}
		scheme, endpoint = s, rest
	}
	host = strings.TrimSuffix(endpoint, "/")
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", "", fmt.Errorf("s3: endpoint %q is not host[:port]: %w", endpoint, errConfig)
	}
	return scheme, host, nil
}

// start verifies the credentials with a signed ListObjectsV2 and creates
// the bucket if that answers NoSuchBucket.
func (s *s3Store) start(ctx context.Context) error {
	_, err := s.listObjectsV2(ctx, "", "", "", "", 1)
	var se *s3Error
	if errors.As(err, &se) && se.Code == "NoSuchBucket" {
		err = s.createBucket(ctx)
	}
	if err != nil {
		return fmt.Errorf("open s3 bucket %q at %s: %w", s.bucket, s.host, err)
	}
	return nil
}

// Get returns the object's bytes, or an error wrapping errNotFound.
func (s *s3Store) Get(ctx context.Context, key string) ([]byte, error) {
	data, _, err := s.getObject(ctx, key)
	return data, err
}

// Put replaces the object; S3 acknowledges a PUT only once it is durable.
func (s *s3Store) Put(ctx context.Context, key string, data []byte) error {
	return s.putObject(ctx, key, data, nil)
}

// GetRev returns the object's bytes and its S3 ETag as the revision.
func (s *s3Store) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	data, etag, err := s.getObject(ctx, key)
	if err != nil {
		return nil, "", err
	}
	if etag == "" {
		return nil, "", fmt.Errorf("get object %q: answer without ETag: %w", key, errUnavailable)
	}
	return data, etag, nil
}

// PutIf writes the object with If-Match: rev, or If-None-Match: * when rev
// is "", so the server itself refuses a write that lost a race with
// another process. It returns the new ETag.
func (s *s3Store) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	etag, err := s.condPut(ctx, key, data, rev, rev == "")
	if err != nil {
		return "", err
	}
	if etag == "" {
		// Some servers leave the ETag out of a PUT answer; ask for it. A
		// write by another process in between makes the next PutIf fail,
		// which is safe.
		if etag, err = s.headObject(ctx, key); err != nil {
			return "", fmt.Errorf("put object %q: read new ETag: %w", key, err)
		}
	}
	return etag, nil
}

// condPut is a conditional PutObject: with ifMatch it writes only if the
// object's ETag is ifMatch (as returned by headObject or getObject, quotes
// included); with ifNoneMatch only if the object does not exist. A
// precondition that does not hold returns an error wrapping
// errPrecondition; so does If-Match on a missing object, for which S3
// answers 404 but HTTP semantics say 412. It returns the new object's ETag
// ("" if the server sent none).
func (s *s3Store) condPut(ctx context.Context, key string, data []byte, ifMatch string, ifNoneMatch bool) (string, error) {
	h := http.Header{}
	if ifMatch != "" {
		h.Set("If-Match", ifMatch)
	}
	if ifNoneMatch {
		h.Set("If-None-Match", "*")
	}
	resp, err := s.do(ctx, s3Request{method: http.MethodPut, key: key, header: h, body: data})
	if ifMatch != "" && errors.Is(err, errNotFound) {
		return "", fmt.Errorf("put object %q if-match %s: object missing: %w", key, ifMatch, errPrecondition)
	}
	if err != nil {
		return "", fmt.Errorf("put object %q: %w", key, err)
	}
	return resp.header.Get("ETag"), nil
}

// Delete removes the object, or returns an error wrapping errNotFound if it
// does not exist. S3 answers 204 for a missing key too, so it HEADs first;
// a concurrent delete between the two is reported as success.
func (s *s3Store) Delete(ctx context.Context, key string) error {
	if _, err := s.headObject(ctx, key); err != nil {
		return fmt.Errorf("delete object %q: %w", key, err)
	}
	return s.deleteObject(ctx, key)
}

// List returns up to limit keys (limit <= 0: all) starting with prefix and
// sorting after startAfter, paging through ListObjectsV2.
func (s *s3Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	var keys []string
	token := ""
	if startAfter != "" {
		startAfter = s.prefix + objectKey(startAfter)
	}
	for {
		n := s.pageSize
		if limit > 0 && limit-len(keys) < n {
			n = limit - len(keys)
		}
		page, err := s.listObjectsV2(ctx, s.prefix+objectKey(prefix), "", startAfter, token, n)
		if err != nil {
			return nil, err
		}
		for _, k := range page.keys {
			keys = append(keys, logicalKey(strings.TrimPrefix(k, s.prefix)))
		}
		if page.next == "" || (limit > 0 && len(keys) >= limit) {
			return keys, nil
		}
		token = page.next
	}
}

// ListDirs lists the common prefixes under prefix with delimiter "/", up
// to pageSize names per request, whatever the number of objects under
// them, and checks each with a one-key listing: one request per name.
func (s *s3Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("list dirs %s: prefix must be empty or end in \"/\": %w", prefix, errInvalid)
	}
	base := s.prefix + objectKey(prefix)
	var names []string
	token := ""
	for {
		page, err := s.listObjectsV2(ctx, base, "/", "", token, s.pageSize)
		if err != nil {
			return nil, err
		}
		for _, p := range page.prefixes {
			name, ok := strings.CutSuffix(strings.TrimPrefix(p, base), "/")
			// A segment of a long name ("aaaa+/") is not a directory.
			if !ok || name == "" || strings.HasSuffix(name, segmentMark) {
				continue
			}
			// Some servers (SeaweedFS) keep an emptied "directory" as a
			// common prefix; a name counts only while an object is under it.
			held, err := s.listObjectsV2(ctx, p, "", "", "", 1)
			if err != nil {
				return nil, err
			}
			if len(held.keys) > 0 {
				names = append(names, name)
			}
		}
		if page.next == "" {
			return names, nil
		}
		token = page.next
	}
}

// Lock is the cross-process part of a lock, which S3 does not have: it
// returns at once. Processes are kept apart by routing each key to one
// owner and by conditional puts.
func (s *s3Store) Lock(ctx context.Context, key string) (func(), error) {
	return func() {}, nil
}

// Close releases idle connections of the client newS3Store made.
func (s *s3Store) Close() error {
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// getObject is GetObject: the bytes and the ETag.
func (s *s3Store) getObject(ctx context.Context, key string) ([]byte, string, error) {
	resp, err := s.do(ctx, s3Request{method: http.MethodGet, key: key})
	if err != nil {
		return nil, "", fmt.Errorf("get object %q: %w", key, err)
	}
	return resp.body, resp.header.Get("ETag"), nil
}

// headObject is HeadObject: the object's ETag, quoted as S3 sends it.
func (s *s3Store) headObject(ctx context.Context, key string) (string, error) {
	resp, err := s.do(ctx, s3Request{method: http.MethodHead, key: key})
	if err != nil {
		return "", fmt.Errorf("head object %q: %w", key, err)
	}
	return resp.header.Get("ETag"), nil
}

// putObject is PutObject with optional extra headers (preconditions).
func (s *s3Store) putObject(ctx context.Context, key string, data []byte, h http.Header) error {
	if _, err := s.do(ctx, s3Request{method: http.MethodPut, key: key, header: h, body: data}); err != nil {
		return fmt.Errorf("put object %q: %w", key, err)
	}
	return nil
}

// deleteObject is DeleteObject (which succeeds for a missing key).
func (s *s3Store) deleteObject(ctx context.Context, key string) error {
	if _, err := s.do(ctx, s3Request{method: http.MethodDelete, key: key}); err != nil {
		return fmt.Errorf("delete object %q: %w", key, err)
	}
	return nil
}

// listBucketResult is the part of ListObjectsV2's answer we read.
type listBucketResult struct {
	Contents []struct {
		Key string
	}
	CommonPrefixes []struct {
		Prefix string
	}
	IsTruncated           bool
	NextContinuationToken string
}

// listPage is one page of ListObjectsV2: raw object keys and, with a
// delimiter, common prefixes (bucket prefix included), and the
// continuation token of the next page ("" if none).
type listPage struct {
	keys, prefixes []string
	next           string
}

// listObjectsV2 returns one page of the objects under prefix; with
// delimiter "/", keys with a further "/" after prefix are rolled up into
// common prefixes.
func (s *s3Store) listObjectsV2(ctx context.Context, prefix, delimiter, startAfter, token string, maxKeys int) (listPage, error) {
	q := []string{"list-type", "2", "max-keys", strconv.Itoa(maxKeys)}
	for _, p := range [][2]string{{"prefix", prefix}, {"delimiter", delimiter}, {"start-after", startAfter}, {"continuation-token", token}} {
		if p[1] != "" {
			q = append(q, p[0], p[1])
		}
	}
	resp, err := s.do(ctx, s3Request{method: http.MethodGet, query: q})
	if err != nil {
		return listPage{}, fmt.Errorf("list objects %q: %w", prefix, err)
	}
	var r listBucketResult
	if err := xml.Unmarshal(resp.body, &r); err != nil {
		return listPage{}, fmt.Errorf("list objects %q: decode answer: %v: %w", prefix, err, errUnavailable)
	}
	var page listPage
	for _, c := range r.Contents {
		page.keys = append(page.keys, c.Key)
	}
	for _, c := range r.CommonPrefixes {
		page.prefixes = append(page.prefixes, c.Prefix)
	}
	if !r.IsTruncated {
		return page, nil
	}
	if r.NextContinuationToken == "" {
		return listPage{}, fmt.Errorf("list objects %q: truncated page without continuation token: %w", prefix, errUnavailable)
	}
	page.next = r.NextContinuationToken
	return page, nil
}

// createBucket is CreateBucket; BucketAlreadyOwnedByYou counts as success.
func (s *s3Store) createBucket(ctx context.Context) error {
	var body []byte
	if s.region != "us-east-1" {
		body = []byte(`<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
			`<LocationConstraint>` + s.region + `</LocationConstraint></CreateBucketConfiguration>`)
	}
	_, err := s.do(ctx, s3Request{method: http.MethodPut, body: body})
	var se *s3Error
	if errors.As(err, &se) && se.Code == "BucketAlreadyOwnedByYou" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	return nil
}

// s3Request is one S3 operation; key "" addresses the bucket itself.
type s3Request struct {
	method string
	key    string // logical key; mapped by objectKey under the store prefix
	query  []string
	header http.Header
	body   []byte
}

// s3Response is a successful answer with its body read.
type s3Response struct {
	header http.Header
	body   []byte
}

// objectKey is the object key of a logical key: long components segmented
// (see segments), the form fsStore uses on disk.
func objectKey(logical string) string {
	if len(logical) <= segmentLen {
		return logical
	}
	parts := strings.Split(logical, "/")
	for i, p := range parts {
		parts[i] = strings.Join(segments(p), "/")
	}
	return strings.Join(parts, "/")
}

// logicalKey inverts objectKey.
func logicalKey(object string) string {
	return strings.ReplaceAll(object, segmentMark+"/", "")
}

// objectURL is the path-style URL of key in the bucket ("" for the bucket).
// RawPath is the canonical URI, so the path on the wire is the one signed.
func (s *s3Store) objectURL(key, rawQuery string) *url.URL {
	p := "/" + s.bucket
	if key != "" {
		p += "/" + key
	}
	return &url.URL{Scheme: s.scheme, Host: s.host, Path: p, RawPath: canonicalURI(p, false), RawQuery: rawQuery}
}

// encodeQuery encodes name, value pairs with the SigV4 URI encoding, so
// the query on the wire is exactly the one signed.
func encodeQuery(kv []string) string {
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, uriEncode(kv[i], true)+"="+uriEncode(kv[i+1], true))
	}
	return strings.Join(parts, "&")
}

// do sends r, retrying 5xx, throttling, timeouts and connection errors with
// backoff, and classifies the final failure into the sentinel errors.
func (s *s3Store) do(ctx context.Context, r s3Request) (*s3Response, error) {
	var last error
	for attempt := 1; ; attempt++ {
		resp, err := s.attempt(ctx, r)
		if err == nil || !retryable(err) {
			return resp, err
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("s3 %s: %w", r.method, ctx.Err())
		}
		if attempt >= s.attempts {
			break
		}
		if err := s.retry.sleep(ctx, attempt); err != nil {
			return nil, fmt.Errorf("s3 %s: %w", r.method, err)
		}
		s.retries.Add(1)
	}
	return nil, fmt.Errorf("s3 %s: gave up after %d attempts: %w", r.method, s.attempts, last)
}

// transientError is a failure worth retrying: no answer, or a 5xx or
// throttling answer. It always wraps errUnavailable.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// retryable reports whether err from attempt may succeed when retried.
func retryable(err error) bool {
	var te *transientError
	return errors.As(err, &te)
}

// attempt sends r once under its own timeout and reads the whole answer.
func (s *s3Store) attempt(ctx context.Context, r s3Request) (*s3Response, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := s.newRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, &transientError{fmt.Errorf("send request: %w: %w", err, errUnavailable)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &transientError{fmt.Errorf("read answer: %w: %w", err, errUnavailable)}
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
		return nil, s.classify(resp.StatusCode, body, r)
	}
	return &s3Response{header: resp.Header, body: body}, nil
}

// newRequest builds and signs the HTTP request for r.
func (s *s3Store) newRequest(ctx context.Context, r s3Request) (*http.Request, error) {
	key := ""
	if r.key != "" {
		key = s.prefix + objectKey(r.key)
	}
	u := s.objectURL(key, encodeQuery(r.query))
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %v: %w", err, errInvalid)
	}
	req.URL = u
	for name, vs := range r.header {
		req.Header[name] = vs
	}
	switch {
	case len(r.body) > 0:
		req.Body = io.NopCloser(bytes.NewReader(r.body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r.body)), nil }
		req.ContentLength = int64(len(r.body))
	case r.method == http.MethodPut:
		req.Body = http.NoBody // an empty object: Content-Length: 0, not chunked
	}
	sign(req, s.creds, s.region, "s3", s.now(), payloadSHA256(r.body))
	return req, nil
}

// s3Error is an S3 error answer. Unwrap gives the sentinel it maps to
// (nil for an unclassified 4xx), so callers use errors.Is.
type s3Error struct {
	Status    int
	Code      string // S3 error code, "" for a HEAD answer (no body)
	Message   string
	RequestID string
	hint      string // what the operator should check, for errConfig
	sentinel  error
}

func (e *s3Error) Error() string {
	msg := fmt.Sprintf("%d %s", e.Status, cmp.Or(e.Code, http.StatusText(e.Status)))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.hint != "" {
		msg = e.hint + " (" + msg + ")"
	}
	if e.sentinel != nil {
		msg += ": " + e.sentinel.Error()
	}
	return "s3: " + msg
}

func (e *s3Error) Unwrap() error { return e.sentinel }

// s3ErrorBody is S3's XML error document.
type s3ErrorBody struct {
	Code      string
	Message   string
	RequestID string `xml:"RequestId"`
}

// classify turns an error answer into an *s3Error carrying its sentinel,
// wrapped in transientError when it is worth retrying.
func (s *s3Store) classify(status int, body []byte, r s3Request) error {
	var b s3ErrorBody
	_ = xml.Unmarshal(body, &b) // HEAD and some proxies send no XML
	e := &s3Error{Status: status, Code: b.Code, Message: b.Message, RequestID: b.RequestID}
	switch {
	case status >= 500 || status == http.StatusTooManyRequests || e.Code == "SlowDown":
		e.sentinel = errUnavailable
		return &transientError{e}
	case e.Code == "NoSuchBucket":
		e.hint, e.sentinel = fmt.Sprintf("bucket %q does not exist", s.bucket), errConfig
	case e.Code == "NoSuchKey" || (status == http.StatusNotFound && r.key != ""):
		e.sentinel = errNotFound
	case e.Code == "PreconditionFailed" || status == http.StatusPreconditionFailed ||
		e.Code == "ConditionalRequestConflict":
		e.sentinel = errPrecondition
	case e.Code == "SignatureDoesNotMatch":
		e.hint, e.sentinel = "signature rejected: check -s3-secret-key", errConfig
	case e.Code == "InvalidAccessKeyId":
		e.hint, e.sentinel = "access key unknown: check -s3-access-key", errConfig
	case e.Code == "BucketAlreadyExists":
		e.hint, e.sentinel = fmt.Sprintf("bucket name %q is taken by another account: choose another -s3-bucket", s.bucket), errConfig
	case e.Code == "RequestTimeTooSkewed":
		e.hint, e.sentinel = "request time too skewed: check this machine's clock", errConfig
	case e.Code == "AccessDenied" || status == http.StatusForbidden:
		e.hint = fmt.Sprintf("access denied to bucket %q: check -s3-access-key, -s3-secret-key and the key's permissions", s.bucket)
		e.sentinel = errConfig
	}
	return e
}
