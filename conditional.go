package main

// Conditional requests on entities (API.md "Versions and ETags", RFC 9110
// section 13): the ETag of an entity is its version, quoted; If-Match and
// If-None-Match headers guard single-entity writes, and the query parameters
// if_match and if_none_match guard the keys of a multi-key PUT.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	pb "deltadatabase/proto"
)

// etagOf is the ETag header value of an entity version.
func etagOf(version string) string { return `"` + version + `"` }

// headerPreconditions reads If-Match and If-None-Match into req, in the
// form EntityOp carries them: unquoted tags, comma-joined, or "*".
func headerPreconditions(r *http.Request, req *pb.EntityOp) error {
	var err error
	if req.IfMatch, err = parseETags("If-Match", r.Header.Values("If-Match")); err != nil {
		return err
	}
	req.IfNoneMatch, err = parseETags("If-None-Match", r.Header.Values("If-None-Match"))
	return err
}

// parseETags parses the values of an If-Match or If-None-Match header:
// "*" or a comma-separated list of entity tags ("" if the header is
// absent). Weak tags keep their "W/" prefix, so they never equal a version:
// writes compare strongly. A tag holding a comma or a quote is refused, as
// no version ever contains one. The tag "*" alone (quoted) is refused
// too: passed on it would read as the unquoted wildcard, and a client
// sending it most likely meant that; in a list it is a tag that matches
// nothing. A header sent empty is refused: read as absent, an If-Match
// whose tag a client failed to fill in (If-Match: $etag) overwrote the
// entity unconditionally.
func parseETags(header string, values []string) (string, error) {
	v := strings.TrimSpace(strings.Join(values, ","))
	if len(values) == 0 || v == "*" {
		return v, nil
	}
	if v == "" {
		return "", reqErrorf(errInvalid, "%s is empty: send \"*\" or a list of quoted entity tags, or no %s header", header, header)
	}
	if v == `"*"` {
		return "", reqErrorf(errInvalid, `%s: "*" is the entity tag *, which no version has; send * without quotes for any version`, header)
	}
	var tags []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		weak := strings.HasPrefix(part, "W/")
		t := strings.TrimPrefix(part, "W/")
		if len(t) < 3 || t[0] != '"' || t[len(t)-1] != '"' || strings.Contains(t[1:len(t)-1], `"`) {
			return "", reqErrorf(errInvalid, "%s: %q is not \"*\" or a list of quoted, non-empty entity tags", header, v)
		}
		t = t[1 : len(t)-1]
		if weak {
			t = "W/" + t
		}
		tags = append(tags, t)
	}
	return strings.Join(tags, ","), nil
}

// matchesNoneOf reports whether a GET's If-None-Match value (as
// parseETags returns it) matches version, with the weak comparison
// RFC 9110 prescribes for If-None-Match.
func matchesNoneOf(ifNoneMatch, version string) bool {
	if ifNoneMatch == "*" {
		return true
	}
	for _, t := range strings.Split(ifNoneMatch, ",") {
		if strings.TrimPrefix(t, "W/") == version {
			return true
		}
	}
	return false
}

// batchPreconditions applies the per-key preconditions of a PUT to its
// requests (one per key, in body order). A single-key body may use the
// If-Match and If-None-Match headers; any body may use the query
// parameters
//
//	if_match=<key>:<etag>   the key's version must be <etag> (quotes
//	                        optional) or, for "*", the key must exist
//	if_none_match=<key>     the key must not exist
//
// repeated once per key. The key is everything before the last ':', so
// keys holding ':' work. A key not in the body, a key given twice (by one
// parameter or by both), or headers (even empty) on a multi-key body are
// errInvalid.
func batchPreconditions(r *http.Request, reqs []*pb.EntityOp) error {
	byKey := make(map[string]*pb.EntityOp, len(reqs))
	for _, req := range reqs {
		byKey[req.GetEntityKey()] = req
	}
	q := r.URL.Query()
	for _, v := range q["if_match"] {
		i := strings.LastIndexByte(v, ':')
		if i < 0 {
			return reqErrorf(errInvalid, "if_match=%q: want <key>:<etag>", v)
		}
		key, tag := v[:i], strings.Trim(v[i+1:], `"`)
		req, err := preconditionTarget(byKey, "if_match", key)
		if err != nil {
			return err
		}
		if tag == "" || req.IfMatch != "" || strings.ContainsAny(tag, `",`) {
			return reqErrorf(errInvalid, "if_match=%q: want one <key>:<etag> per key", v)
		}
		req.IfMatch = tag
	}
	for _, key := range q["if_none_match"] {
		req, err := preconditionTarget(byKey, "if_none_match", key)
		if err != nil {
			return err
		}
		if req.IfNoneMatch != "" {
			return reqErrorf(errInvalid, "if_none_match=%q given twice", key)
		}
		if req.IfMatch != "" {
			return reqErrorf(errInvalid, "if_none_match=%q: the key is named by if_match too; give one precondition per key", key)
		}
		req.IfNoneMatch = "*"
	}
	if len(r.Header.Values("If-Match")) == 0 && len(r.Header.Values("If-None-Match")) == 0 {
		return nil
	}
	if len(reqs) != 1 {
		return reqErrorf(errInvalid, "If-Match and If-None-Match headers apply to a single-key PUT; use if_match=<key>:<etag> or if_none_match=<key>")
	}
	if slices.ContainsFunc(reqs, hasPreconditions) {
		return reqErrorf(errInvalid, "give preconditions as headers or as query parameters, not both")
	}
	return headerPreconditions(r, reqs[0])
}

// preconditionTarget returns the request of key named by a precondition
// parameter, which must be a key of the body.
func preconditionTarget(byKey map[string]*pb.EntityOp, param, key string) (*pb.EntityOp, error) {
	if err := validateEntityKey(key); err != nil {
		return nil, reqPrefixf(err, "%s", param)
	}
	req, ok := byKey[key]
	if !ok {
		return nil, reqErrorf(errInvalid, "%s names key %q, which is not in the body", param, key)
	}
	return req, nil
}

// hasPreconditions reports whether op carries If-Match or If-None-Match.
func hasPreconditions(op *pb.EntityOp) bool {
	return op.GetIfMatch() != "" || op.GetIfNoneMatch() != ""
}

// checkPreconditions evaluates If-Match and If-None-Match (ETag values
// without quotes, comma-separated, or "*") against the entity's current
// state, as RFC 9110 section 13.1 does for a write: If-Match holds if the
// entity exists and ("*" or) its version is listed; If-None-Match holds if
// it does not exist or ("*" aside) its version is not listed.
func checkPreconditions(op *pb.EntityOp, cur current) error {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if m := op.GetIfMatch(); m != "" {
		if !cur.exists {
			return &preconditionError{msg: fmt.Sprintf("If-Match: entity %q does not exist in database %q", key, db)}
		}
		if m != "*" && !slices.Contains(strings.Split(m, ","), cur.version) {
			return &preconditionError{msg: fmt.Sprintf("If-Match: entity %q in database %q has version %q", key, db, cur.version), current: cur.version}
		}
	}
	if n := op.GetIfNoneMatch(); n != "" && cur.exists {
		if n == "*" || slices.Contains(strings.Split(n, ","), cur.version) {
			return &preconditionError{msg: fmt.Sprintf("If-None-Match: entity %q in database %q exists with version %q", key, db, cur.version), current: cur.version}
		}
	}
	return nil
}

// preconditionError is a failed If-Match or If-None-Match (412). Its
// message is a sentence for the client. It carries the entity's current
// version ("" if it does not exist) so that the answer can send it as
// ETag; across gRPC it travels in the versionHeader trailer.
type preconditionError struct {
	msg     string
	current string
}

func (e *preconditionError) Error() string { return e.msg }

// Unwrap makes the message the client's sentence, of kind errPrecondition.
func (e *preconditionError) Unwrap() error { return &requestError{msg: e.msg, kind: errPrecondition} }

// versionHeader carries a preconditionError's current version from a
// remote worker to the main worker.
const versionHeader = "x-deltadb-version"
