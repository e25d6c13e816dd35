package main

// AWS Signature Version 4, header form, as used by s3store.go. Each step is
// a small function named after the step of the AWS documentation ("Create a
// signed AWS API request"): canonicalURI, canonicalQuery, canonicalHeaders
// and signedHeaders make up canonicalRequest; stringToSign hashes it under
// the credential scope; signingKey derives the per-day key; signature signs.
// sign puts it all on an *http.Request. The clock is a parameter, so the
// tests compare exact bytes with the official test suite.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// sigV4Algorithm names the signing algorithm in the string to sign and
	// the Authorization header.
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	// amzDateFormat is the ISO 8601 basic format of X-Amz-Date.
	amzDateFormat = "20060102T150405Z"
	// scopeDateFormat is the date of the credential scope.
	scopeDateFormat = "20060102"
)

// credentials are an access key pair. SessionToken is empty for long-term
// keys; when set it is sent (and signed) as X-Amz-Security-Token.
type credentials struct {
	AccessKey    string
	SecretKey    string
	SessionToken string
}

// signOptions selects the variants of SigV4 that differ between services.
type signOptions struct {
	// Region and Service form the credential scope ("us-east-1", "s3").
	Region  string
	Service string
	// NormalizePath removes "." and ".." segments and empty segments from
	// the path before encoding it. Every service but S3 does this; S3 signs
	// the object key exactly as given.
	NormalizePath bool
	// ContentSHA256 sets and signs X-Amz-Content-Sha256 to the payload hash,
	// which S3 requires on every request.
	ContentSHA256 bool
}

// sign signs req in place with the Authorization header for the given
// region and service at time now. payloadHash is the lowercase hex SHA-256
// of the body (of zero bytes for none). It sets X-Amz-Date,
// X-Amz-Security-Token when creds carry one, and for service "s3"
// X-Amz-Content-Sha256 with path normalisation off, as S3 requires.
// Every header already on req (except Authorization and User-Agent) and the
// host are signed, so set all headers before signing.
func sign(req *http.Request, creds credentials, region, service string, now time.Time, payloadHash string) {
	signRequest(req, creds, signOptions{
		Region:        region,
		Service:       service,
		NormalizePath: service != "s3",
		ContentSHA256: service == "s3",
	}, now, payloadHash)
}

// sigV4Steps are the intermediate results of signing one request, returned
// so that tests can compare each with the official vectors.
type sigV4Steps struct {
	CanonicalRequest string
	StringToSign     string
	Signature        string
}

// signRequest is sign with every variant spelled out in opt; it returns the
// intermediate steps.
func signRequest(req *http.Request, creds credentials, opt signOptions, now time.Time, payloadHash string) sigV4Steps {
	now = now.UTC()
	amzDate := now.Format(amzDateFormat)
	req.Header.Del("Authorization")
	req.Header.Set("X-Amz-Date", amzDate)
	if creds.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	if opt.ContentSHA256 {
		req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	}
	host := requestHost(req)
	signed := signedHeaders(req.Header, host)
	creq := canonicalRequest(req.Method,
		canonicalURI(req.URL.Path, opt.NormalizePath),
		canonicalQuery(req.URL.RawQuery),
		canonicalHeaders(req.Header, host), signed, payloadHash)
	scope := credentialScope(now, opt.Region, opt.Service)
	toSign := stringToSign(amzDate, scope, creq)
	sig := signature(signingKey(creds.SecretKey, now, opt.Region, opt.Service), toSign)
	req.Header.Set("Authorization", authorization(creds.AccessKey, scope, signed, sig))
	return sigV4Steps{CanonicalRequest: creq, StringToSign: toSign, Signature: sig}
}

// requestHost is the Host header net/http will send for req.
func requestHost(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

// canonicalRequest joins the six parts of the canonical request.
// canonHeaders already ends in a newline, which yields the blank line.
func canonicalRequest(method, uri, query, canonHeaders, signed, payloadHash string) string {
	return strings.Join([]string{method, uri, query, canonHeaders, signed, payloadHash}, "\n")
}

// canonicalURI is the URI-encoded absolute path: every byte but the
// unreserved characters and '/' is percent-encoded (UTF-8, upper-case hex).
// With normalize, "." and ".." segments and empty segments are removed
// first. The encoding is applied once, which is what S3 expects and what
// the test suite's raw paths need (none of them contains '%').
func canonicalURI(path string, normalize bool) string {
	if path == "" {
		return "/"
	}
	if normalize {
		path = normalizePath(path)
	}
	return uriEncode(path, false)
}

// normalizePath removes dot segments (RFC 3986 §5.2.4) and empty segments
// from an absolute path, keeping a trailing slash.
func normalizePath(path string) string {
	var out []string
	segs := strings.Split(path, "/")
	for _, seg := range segs {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	p := "/" + strings.Join(out, "/")
	last := segs[len(segs)-1]
	if len(out) > 0 && (last == "" || last == "." || last == "..") {
		p += "/"
	}
	return p
}

// uriEncode percent-encodes every byte of s except A-Z a-z 0-9 - . _ ~,
// and except '/' when encodeSlash is false (paths).
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// canonicalQuery decodes the raw query, re-encodes every name and value
// with uriEncode, and sorts the pairs by name, then value. A name without
// '=' gets an empty value. '+' is a literal plus, not a space.
func canonicalQuery(rawQuery string) string {
	type pair struct{ k, v string }
	var pairs []pair
	for _, p := range strings.Split(rawQuery, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		pairs = append(pairs, pair{uriEncode(unescape(k), true), uriEncode(unescape(v), true)})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// unescape percent-decodes s, or returns it unchanged if it is not valid
// percent-encoding.
func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// unsignedHeaders are never signed: Authorization is the signature itself,
// and proxies may rewrite User-Agent.
var unsignedHeaders = map[string]bool{"authorization": true, "user-agent": true}

// headerValues returns the lower-case names to sign (host included) in
// sorted order, and each name's canonical value: the values of all lines
// of that name, trimmed, inner whitespace runs collapsed to one space, and
// joined with ',' in the order they were added.
func headerValues(h http.Header, host string) ([]string, map[string]string) {
	vals := map[string]string{"host": host}
	for name, vs := range h {
		lower := strings.ToLower(name)
		if unsignedHeaders[lower] || lower == "host" {
			continue
		}
		canon := make([]string, len(vs))
		for i, v := range vs {
			canon[i] = strings.Join(strings.Fields(v), " ")
		}
		if prev, ok := vals[lower]; ok { // same name in two spellings
			canon = append([]string{prev}, canon...)
		}
		vals[lower] = strings.Join(canon, ",")
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, vals
}

// canonicalHeaders is one "name:value\n" line per signed header, sorted by
// name.
func canonicalHeaders(h http.Header, host string) string {
	names, vals := headerValues(h, host)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + ":" + vals[n] + "\n")
	}
	return b.String()
}

// signedHeaders is the ';'-separated sorted list of signed header names.
func signedHeaders(h http.Header, host string) string {
	names, _ := headerValues(h, host)
	return strings.Join(names, ";")
}

// credentialScope is "<date>/<region>/<service>/aws4_request".
func credentialScope(t time.Time, region, service string) string {
	return t.UTC().Format(scopeDateFormat) + "/" + region + "/" + service + "/aws4_request"
}

// stringToSign is the algorithm, the request date, the credential scope and
// the hex SHA-256 of the canonical request, one per line.
func stringToSign(amzDate, scope, canonRequest string) string {
	sum := sha256.Sum256([]byte(canonRequest))
	return sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

// signingKey derives the key for one day, region and service:
// HMAC chain over "AWS4"+secret, date, region, service, "aws4_request".
func signingKey(secret string, t time.Time, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), t.UTC().Format(scopeDateFormat))
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// signature is the lowercase hex HMAC-SHA256 of the string to sign.
func signature(key []byte, toSign string) string {
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

// authorization is the Authorization header value.
func authorization(accessKey, scope, signed, sig string) string {
	return sigV4Algorithm + " Credential=" + accessKey + "/" + scope +
		", SignedHeaders=" + signed + ", Signature=" + sig
}

// hmacSHA256 is HMAC-SHA256(key, data).
func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// payloadSHA256 is the lowercase hex SHA-256 of body.
func payloadSHA256(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
