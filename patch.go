package main

// Patches of one entity (API.md "PATCH"), applied by the owning worker under
// the entity's lock: JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902),
// whose paths are JSON Pointers (RFC 6901).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Patch media types (the Content-Type of PATCH /entity/{db}).
const (
	mergePatchType = "application/merge-patch+json"
	jsonPatchType  = "application/json-patch+json"
)

// applyPatch applies a patch of media type contentType to the JSON text
// doc and returns the resulting JSON text. A malformed patch or an unknown
// media type wraps errInvalid; a patch that does not apply wraps
// errPatchConflict; a patch over a budget of lim (operations, size or
// nesting of the result) wraps errTooLarge, and a JSON Patch that would grow
// the document past its limit is stopped at that operation, before the
// value is copied. Objects of the result have their members sorted by
// name; numbers keep their exact text.
func applyPatch(contentType string, doc, patch []byte, lim budgets) ([]byte, error) {
	target, err := decodeValue(doc)
	if err != nil {
		return nil, fmt.Errorf("apply patch: stored document: %v: %w", err, errCorrupt)
	}
	var out any
	switch contentType {
	case mergePatchType:
		p, err := decodeValue(patch)
		if err != nil {
			return nil, reqErrorf(errInvalid, "merge patch is not valid JSON: %v", err)
		}
		out = mergePatch(target, p)
	case jsonPatchType:
		ops, err := parseJSONPatch(patch, lim.patchOps())
		if err != nil {
			return nil, err
		}
		if out, err = applyOps(target, ops, int64(len(doc)), lim.document()); err != nil {
			return nil, err
		}
	default:
		return nil, reqErrorf(errInvalid, "patch media type %q is not %s or %s", contentType, mergePatchType, jsonPatchType)
	}
	b, err := encodeValue(out)
	if err != nil {
		return nil, err
	}
	if err := lim.checkDocumentSize("the patched document", len(b)); err != nil {
		// The size of the result tells that of the stored document.
		return nil, revealing(err, reqErrorf(errTooLarge, "the patched document exceeds the document limit of %d bytes", lim.document()))
	}
	if err := checkJSONText("the patched document", b, lim.depth()); err != nil {
		return nil, err
	}
	return b, nil
}

// checkPatchText checks a patch's text against the UTF-8 and nesting
// budgets (checkJSONText) before it is decoded. A JSON Patch's values
// are counted without the array and the operation object around them, so
// that a value may nest as deep as a document (the patched document is
// checked against maxDepth itself); a merge patch is a document.
func checkPatchText(contentType string, b []byte, maxDepth int) error {
	if contentType != jsonPatchType {
		return checkJSONText("patch", b, maxDepth)
	}
	err := checkJSONText("patch", b, maxDepth+2)
	if errors.Is(err, errTooLarge) {
		return reqErrorf(errTooLarge, "a value of the JSON patch nests arrays and objects deeper than the limit of %d levels", maxDepth)
	}
	return err
}

// decodeValue parses exactly one JSON value, keeping numbers as
// json.Number so that they come back out with their exact text.
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// encodeValue is the compact JSON text of v, without HTML escaping.
func encodeValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode patched document: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// mergePatch is RFC 7386 section 2: an object patch sets or (with null)
// removes members, recursively; any other patch replaces the target.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for name, v := range p {
		if v == nil {
			delete(t, name)
		} else {
			t[name] = mergePatch(t[name], v)
		}
	}
	return t
}

// patchOp is one operation of a JSON Patch document.
type patchOp struct {
	op       string
	path     []string // parsed JSON Pointer
	from     []string // move, copy
	value    any      // add, replace, test
	rawPath  string
	rawFrom  string
	position int // index in the patch document, for messages
}

// parseJSONPatch checks a whole JSON Patch document before any operation
// runs: an array of objects, each with a known "op", the members that op
// needs and valid pointers. Members it does not know are ignored (RFC 6902
// section 4); a member given twice is an error. More than maxOps
// operations wrap errTooLarge.
func parseJSONPatch(b []byte, maxOps int) ([]patchOp, error) {
	var raws []json.RawMessage
	// null decodes into a nil slice without an error: no array at all.
	if err := json.Unmarshal(b, &raws); err != nil || raws == nil {
		return nil, reqErrorf(errInvalid, "JSON patch must be an array of operations")
	}
	if len(raws) > maxOps {
		return nil, reqErrorf(errTooLarge, "JSON patch of %d operations exceeds the limit of %d operations", len(raws), maxOps)
	}
	ops := make([]patchOp, 0, len(raws))
	for i, raw := range raws {
		op, err := parseOp(raw)
		if err != nil {
			return nil, reqErrorf(errInvalid, "JSON patch operation %d: %v", i, err)
		}
		op.position = i
		ops = append(ops, op)
	}
	return ops, nil
}

// parseOp parses one operation object.
func parseOp(raw json.RawMessage) (patchOp, error) {
	m, err := decodeMembers(raw)
	if err != nil {
		return patchOp{}, err
	}
	var op patchOp
	str := func(name string) (string, error) {
		r, ok := m[name]
		if !ok {
			return "", fmt.Errorf("missing %q", name)
		}
		// null decodes into a Go string as "" without an error, and ""
		// is the whole document: only a JSON string is taken.
		var s string
		if r = bytes.TrimSpace(r); len(r) == 0 || r[0] != '"' || json.Unmarshal(r, &s) != nil {
			return "", fmt.Errorf("%q is not a string", name)
		}
		return s, nil
	}
	if op.op, err = str("op"); err != nil {
		return patchOp{}, err
	}
	if op.rawPath, err = str("path"); err != nil {
		return patchOp{}, err
	}
	if op.path, err = parsePointer(op.rawPath); err != nil {
		return patchOp{}, err
	}
	switch op.op {
	case "add", "replace", "test":
		r, ok := m["value"]
		if !ok {
			return patchOp{}, fmt.Errorf("%s needs \"value\"", op.op)
		}
		if op.value, err = decodeValue(r); err != nil {
			return patchOp{}, fmt.Errorf("value: %v", err)
		}
	case "move", "copy":
		if op.rawFrom, err = str("from"); err != nil {
			return patchOp{}, err
		}
		if op.from, err = parsePointer(op.rawFrom); err != nil {
			return patchOp{}, err
		}
		if op.op == "move" && isProperPrefix(op.from, op.path) {
			return patchOp{}, fmt.Errorf("cannot move %q into its own child %q", op.rawFrom, op.rawPath)
		}
	case "remove":
		if len(op.path) == 0 {
			return patchOp{}, errors.New("cannot remove the whole document")
		}
	default:
		return patchOp{}, fmt.Errorf("unknown op %q", op.op)
	}
	return op, nil
}

// decodeMembers decodes a JSON object into its raw members, refusing a
// member name that appears twice.
func decodeMembers(raw json.RawMessage) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("member %q given twice", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[name] = v
	}
	return m, nil
}

// parsePointer splits a JSON Pointer (RFC 6901) into unescaped reference
// tokens: "" is the whole document, "/a~1b/~0" is ["a/b", "~"].
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q does not start with \"/\"", p)
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || t[j+1] != '0' && t[j+1] != '1') {
				return nil, fmt.Errorf("JSON pointer %q: \"~\" must be followed by 0 or 1", p)
			}
		}
		// ~1 first: "~01" is "~1", not "/".
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}

// isProperPrefix reports whether pointer a is a proper prefix of b.
func isProperPrefix(a, b []string) bool {
	if len(a) >= len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// applyOps runs the operations in order on doc, whose JSON text has size
// bytes; the first failure stops the patch and nothing of it is kept (the
// caller discards doc). Before each operation it reckons the size of the
// result (see growth) and stops the patch when that passes limit, so a
// chain of copies that doubles the document never gets materialised.
func applyOps(doc any, ops []patchOp, size, limit int64) (any, error) {
	for _, op := range ops {
		grow, err := growth(doc, op, limit)
		if err == nil && size+grow > limit {
			err = reqErrorf(errTooLarge, "the patched document would exceed the document limit of %d bytes", limit)
		}
		if err == nil {
			size += grow
			doc, err = applyOp(doc, op)
		}
		if err != nil {
			return nil, reqPrefixf(err, "JSON patch operation %d (%s %q)", op.position, op.op, op.rawPath)
		}
	}
	return doc, nil
}

// growth reckons by how many bytes op changes the JSON text of doc: the
// size of what it adds minus that of what it removes, leaving out member
// names and separators, which stay within the size of the patch itself.
// Sizes are counted only up to limit. A failing lookup is left for
// applyOp to report.
func growth(doc any, op patchOp, limit int64) (int64, error) {
	old := func(path []string) int64 {
		if v, err := valueAt(doc, path); err == nil {
			return jsonSize(v, limit)
		}
		return 0
	}
	switch op.op {
	case "add":
		if len(op.path) > 0 {
			if _, isArray := valueOrNil(doc, op.path[:len(op.path)-1]).([]any); isArray {
				return jsonSize(op.value, limit), nil
			}
		}
		return jsonSize(op.value, limit) - old(op.path), nil
	case "replace":
		return jsonSize(op.value, limit) - old(op.path), nil
	case "remove":
		return -old(op.path), nil
	case "copy":
		return old(op.from), nil
	}
	return 0, nil // move and test keep the size
}

// valueOrNil is the value at path, or nil when there is none.
func valueOrNil(doc any, path []string) any {
	v, _ := valueAt(doc, path)
	return v
}

// jsonSize is the length of the compact JSON text of v, counted only up
// to a little past limit.
func jsonSize(v any, limit int64) int64 {
	switch v := v.(type) {
	case nil:
		return 4
	case bool:
		if v {
			return 4
		}
		return 5
	case json.Number:
		return int64(len(v))
	case string:
		return quotedSize(v)
	case []any:
		n := int64(1 + max(len(v), 1)) // brackets and commas
		for _, x := range v {
			if n += jsonSize(x, limit); n > limit {
				return n
			}
		}
		return n
	case map[string]any:
		n := int64(1 + max(len(v), 1)) // brackets and commas
		for k, x := range v {
			if n += quotedSize(k) + 1 + jsonSize(x, limit); n > limit {
				return n
			}
		}
		return n
	}
	return 0
}

// quotedSize is the length of s as a JSON string: quotes, and escapes for
// quotes, backslashes and control characters.
func quotedSize(s string) int64 {
	n := int64(2 + len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}

// applyOp runs one operation (RFC 6902 section 4).
func applyOp(doc any, op patchOp) (any, error) {
	switch op.op {
	case "add":
		return addAt(doc, op.path, op.value)
	case "remove":
		doc, _, err := removeAt(doc, op.path)
		return doc, err
	case "replace":
		if _, err := valueAt(doc, op.path); err != nil {
			return nil, err
		}
		if len(op.path) == 0 {
			return op.value, nil
		}
		doc, _, err := removeAt(doc, op.path)
		if err != nil {
			return nil, err
		}
		return addAt(doc, op.path, op.value)
	case "move":
		doc, v, err := removeAt(doc, op.from)
		if err != nil {
			return nil, reqPrefixf(err, "from %q", op.rawFrom)
		}
		return addAt(doc, op.path, v)
	case "copy":
		v, err := valueAt(doc, op.from)
		if err != nil {
			return nil, reqPrefixf(err, "from %q", op.rawFrom)
		}
		return addAt(doc, op.path, deepCopy(v))
	case "test":
		v, err := valueAt(doc, op.path)
		if err != nil {
			return nil, err
		}
		if !sameJSON(v, op.value) {
			return nil, reqErrorf(errPatchConflict, "test failed: value differs")
		}
		return doc, nil
	}
	return nil, reqErrorf(errInvalid, "unknown op %q", op.op)
}

// valueAt returns the value path refers to.
func valueAt(doc any, path []string) (any, error) {
	for _, tok := range path {
		var err error
		if doc, err = child(doc, tok); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// child returns the member or element tok of container c.
func child(c any, tok string) (any, error) {
	switch c := c.(type) {
	case map[string]any:
		v, ok := c[tok]
		if !ok {
			return nil, reqErrorf(errPatchConflict, "no member %q", tok)
		}
		return v, nil
	case []any:
		i, err := arrayIndex(tok, len(c)-1)
		if err != nil {
			return nil, err
		}
		return c[i], nil
	default:
		return nil, reqErrorf(errPatchConflict, "%q: parent is neither object nor array", tok)
	}
}

// arrayIndex parses an array index token: decimal digits without leading
// zeros, at most max.
func arrayIndex(tok string, max int) (int, error) {
	if tok == "" || len(tok) > 1 && tok[0] == '0' || strings.TrimLeft(tok, "0123456789") != "" {
		return 0, reqErrorf(errPatchConflict, "%q is not an array index", tok)
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i > max {
		return 0, reqErrorf(errPatchConflict, "array index %q out of range", tok)
	}
	return i, nil
}

// update replaces the container holding the last token of path (path is
// not empty) by what fn makes of it, and returns the new document.
func update(doc any, path []string, fn func(parent any, last string) (any, error)) (any, error) {
	if len(path) == 1 {
		return fn(doc, path[0])
	}
	c, err := child(doc, path[0])
	if err != nil {
		return nil, err
	}
	nc, err := update(c, path[1:], fn)
	if err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case map[string]any:
		d[path[0]] = nc
	case []any:
		i, _ := arrayIndex(path[0], len(d)-1) // child checked it
		d[i] = nc
	}
	return doc, nil
}

// addAt is "add": set an object member, or insert into an array at an
// index or at the end ("-"); the empty path replaces the whole document.
func addAt(doc any, path []string, v any) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	return update(doc, path, func(parent any, last string) (any, error) {
		switch p := parent.(type) {
		case map[string]any:
			p[last] = v
			return p, nil
		case []any:
			if last == "-" {
				return append(p, v), nil
			}
			i, err := arrayIndex(last, len(p))
			if err != nil {
				return nil, err
			}
			out := make([]any, 0, len(p)+1)
			out = append(append(append(out, p[:i]...), v), p[i:]...)
			return out, nil
		default:
			return nil, reqErrorf(errPatchConflict, "%q: parent is neither object nor array", last)
		}
	})
}

// removeAt is "remove": it returns the document without the value at path
// (which must exist) and that value.
func removeAt(doc any, path []string) (any, any, error) {
	if len(path) == 0 {
		return nil, nil, reqErrorf(errInvalid, "cannot remove the whole document")
	}
	var removed any
	doc, err := update(doc, path, func(parent any, last string) (any, error) {
		v, err := child(parent, last)
		if err != nil {
			return nil, err
		}
		removed = v
		switch p := parent.(type) {
		case map[string]any:
			delete(p, last)
			return p, nil
		default: // child succeeded, so an array
			a := p.([]any)
			i, _ := arrayIndex(last, len(a)-1)
			return append(a[:i:i], a[i+1:]...), nil
		}
	})
	return doc, removed, err
}

// deepCopy copies a decoded JSON value, so that "copy" never aliases.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = deepCopy(x)
		}
		return a
	default:
		return v
	}
}

// sameJSON is the equality of "test" (RFC 6902 section 4.6): same type;
// numbers equal by value, strings by code points, arrays element by
// element, objects member by member regardless of order.
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		// Exactly, as a find compares them, in time linear in their
		// text: a big.Float of 1024 bits took 1e999999999, past its
		// exponent range, and 1e999999998 both for +Inf, so the test
		// held, and parsed a 900,000-digit number in 1.6 s.
		dx, errx := parseDecimal([]byte(x))
		dy, erry := parseDecimal([]byte(y))
		return errx == nil && erry == nil && dx == dy
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	}
	return false
}
