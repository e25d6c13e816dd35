package main

import (
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// TestMergePatchRFC7386 runs the examples of RFC 7386 Appendix A.
func TestMergePatchRFC7386(t *testing.T) {
	for _, tc := range []struct{ doc, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// Not from the RFC: numbers keep their text, HTML is not escaped.
		{`{"n":1.50,"s":"<a>"}`, `{"m":12345678901234567890}`, `{"m":12345678901234567890,"n":1.50,"s":"<a>"}`},
	} {
		got, err := applyPatch(mergePatchType, []byte(tc.doc), []byte(tc.patch), budgets{})
		if err != nil || string(got) != tc.want {
			t.Errorf("merge %s into %s = %s, %v, want %s", tc.patch, tc.doc, got, err, tc.want)
		}
	}
}

// TestJSONPatchRFC6902 runs the examples of RFC 6902 Appendix A that
// succeed, plus appends to a chat session.
func TestJSONPatchRFC6902(t *testing.T) {
	for _, tc := range []struct{ name, doc, patch, want string }{
		{"A.1 add object member", `{"foo":"bar"}`,
			`[{"op":"add","path":"/baz","value":"qux"}]`, `{"baz":"qux","foo":"bar"}`},
		{"A.2 add array element", `{"foo":["bar","baz"]}`,
			`[{"op":"add","path":"/foo/1","value":"qux"}]`, `{"foo":["bar","qux","baz"]}`},
		{"A.3 remove object member", `{"baz":"qux","foo":"bar"}`,
			`[{"op":"remove","path":"/baz"}]`, `{"foo":"bar"}`},
		{"A.4 remove array element", `{"foo":["bar","qux","baz"]}`,
			`[{"op":"remove","path":"/foo/1"}]`, `{"foo":["bar","baz"]}`},
		{"A.5 replace value", `{"baz":"qux","foo":"bar"}`,
			`[{"op":"replace","path":"/baz","value":"boo"}]`, `{"baz":"boo","foo":"bar"}`},
		{"A.6 move value", `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`,
			`[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`,
			`{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`},
		{"A.7 move array element", `{"foo":["all","grass","cows","eat"]}`,
			`[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, `{"foo":["all","cows","eat","grass"]}`},
		{"A.8 test succeeds", `{"baz":"qux","foo":["a",2,"c"]}`,
			`[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`,
			`{"baz":"qux","foo":["a",2,"c"]}`},
		{"A.10 add nested member object", `{"foo":"bar"}`,
			`[{"op":"add","path":"/child","value":{"grandchild":{}}}]`, `{"child":{"grandchild":{}},"foo":"bar"}`},
		{"A.11 unknown members ignored", `{"foo":"bar"}`,
			`[{"op":"add","path":"/baz","value":"qux","xyz":123}]`, `{"baz":"qux","foo":"bar"}`},
		{"A.14 ~ escape ordering", `{"/":9,"~1":10}`,
			`[{"op":"test","path":"/~01","value":10}]`, `{"/":9,"~1":10}`},
		{"A.16 add array value", `{"foo":["bar"]}`,
			`[{"op":"add","path":"/foo/-","value":["abc","def"]}]`, `{"foo":["bar",["abc","def"]]}`},
		{"append messages", `{"messages":[{"role":"user","content":"hi"}]}`,
			`[{"op":"add","path":"/messages/-","value":{"role":"assistant","content":"hello"}},{"op":"add","path":"/messages/-","value":1}]`,
			`{"messages":[{"content":"hi","role":"user"},{"content":"hello","role":"assistant"},1]}`},
		{"copy does not alias", `{"a":{"x":1}}`,
			`[{"op":"copy","from":"/a","path":"/b"},{"op":"replace","path":"/b/x","value":2}]`, `{"a":{"x":1},"b":{"x":2}}`},
		{"replace whole document", `{"a":1}`, `[{"op":"replace","path":"","value":[true]}]`, `[true]`},
		{"test whole document", `{"a":[1]}`, `[{"op":"test","path":"","value":{"a":[1.0]}}]`, `{"a":[1]}`},
		{"~0 and ~1 in paths", `{"a/b":{"m~n":1}}`, `[{"op":"replace","path":"/a~1b/m~0n","value":2}]`, `{"a/b":{"m~n":2}}`},
		{"empty patch", `{"a":1}`, `[]`, `{"a":1}`},
		{"null value", `{"a":1}`, `[{"op":"add","path":"/b","value":null}]`, `{"a":1,"b":null}`},
		{"move to itself", `{"a":1}`, `[{"op":"move","from":"/a","path":"/a"}]`, `{"a":1}`},
		{"test numbers by value", `{"a":[100,-0,0.5,1e999999999,123456789012345678901234567890]}`,
			`[{"op":"test","path":"/a","value":[1e2,0,5e-1,10e999999998,1.2345678901234567890123456789e29]}]`,
			`{"a":[100,-0,0.5,1e999999999,123456789012345678901234567890]}`},
	} {
		got, err := applyPatch(jsonPatchType, []byte(tc.doc), []byte(tc.patch), budgets{})
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: apply %s to %s = %s, %v, want %s", tc.name, tc.patch, tc.doc, got, err, tc.want)
		}
	}
}

// TestJSONPatchErrors: the failing examples of RFC 6902 Appendix A and
// other malformed patches; a malformed patch is errInvalid (400), one that
// does not fit the document errPatchConflict (409).
func TestJSONPatchErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, patch string
		want             error
		msg              string
	}{
		{"A.9 test fails", `{"baz":"qux"}`, `[{"op":"test","path":"/baz","value":"bar"}]`, errPatchConflict, "test failed"},
		{"A.12 add to nonexistent target", `{"foo":"bar"}`, `[{"op":"add","path":"/baz/bat","value":"qux"}]`, errPatchConflict, `no member "baz"`},
		{"A.13 op given twice", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux","op":"remove"}]`, errInvalid, "given twice"},
		{"A.15 string is not number", `{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":"10"}]`, errPatchConflict, "test failed"},
		{"not an array", `{}`, `{"op":"add"}`, errInvalid, "array of operations"},
		{"not JSON", `{}`, `[{`, errInvalid, "array of operations"},
		// null decoded into a nil slice: no operations, a new version.
		{"null", `{}`, `null`, errInvalid, "array of operations"},
		{"op not an object", `{}`, `[1]`, errInvalid, "not a JSON object"},
		{"unknown op", `{}`, `[{"op":"frob","path":"/a"}]`, errInvalid, `unknown op "frob"`},
		{"missing path", `{}`, `[{"op":"add","value":1}]`, errInvalid, `missing "path"`},
		{"missing value", `{}`, `[{"op":"add","path":"/a"}]`, errInvalid, `needs "value"`},
		{"missing from", `{"a":1}`, `[{"op":"copy","path":"/b"}]`, errInvalid, `missing "from"`},
		{"pointer without slash", `{"a":1}`, `[{"op":"remove","path":"a"}]`, errInvalid, `does not start with "/"`},
		{"bad escape", `{"a":1}`, `[{"op":"remove","path":"/a~2"}]`, errInvalid, "must be followed by 0 or 1"},
		{"move into own child", `{"a":{}}`, `[{"op":"move","from":"/a","path":"/a/b"}]`, errInvalid, "own child"},
		{"remove root", `{"a":1}`, `[{"op":"remove","path":""}]`, errInvalid, "whole document"},
		{"remove missing member", `{"a":1}`, `[{"op":"remove","path":"/b"}]`, errPatchConflict, `no member "b"`},
		{"replace missing member", `{"a":1}`, `[{"op":"replace","path":"/b","value":1}]`, errPatchConflict, `no member "b"`},
		{"index past end", `{"a":[1]}`, `[{"op":"add","path":"/a/2","value":1}]`, errPatchConflict, "out of range"},
		{"leading zero index", `{"a":[1,2]}`, `[{"op":"remove","path":"/a/01"}]`, errPatchConflict, "not an array index"},
		{"dash outside add", `{"a":[1]}`, `[{"op":"remove","path":"/a/-"}]`, errPatchConflict, "not an array index"},
		{"into a scalar", `{"a":1}`, `[{"op":"add","path":"/a/b","value":1}]`, errPatchConflict, "neither object nor array"},
		// null decoded into a Go string is "", the whole document: a
		// null path replaced it, a null from copied it.
		{"null path", `{"a":1}`, `[{"op":"add","path":null,"value":"gone"}]`, errInvalid, `"path" is not a string`},
		{"null from", `{"a":1}`, `[{"op":"copy","from":null,"path":"/c"}]`, errInvalid, `"from" is not a string`},
		{"null op", `{"a":1}`, `[{"op":null,"path":"/a"}]`, errInvalid, `"op" is not a string`},
		// Numbers past big.Float's exponent range were both +Inf, and
		// equal; 1024 bits could not tell 400 digits apart.
		{"test huge exponents", `{"a":1e999999999}`, `[{"op":"test","path":"/a","value":1e999999998}]`, errPatchConflict, "test failed"},
		{"test huge negative exponents", `{"a":-1e-999999999}`, `[{"op":"test","path":"/a","value":-2e-999999999}]`, errPatchConflict, "test failed"},
		{"test last of 400 digits", `{"a":` + strings.Repeat("7", 400) + `}`, `[{"op":"test","path":"/a","value":` + strings.Repeat("7", 399) + `8}]`, errPatchConflict, "test failed"},
		{"later op fails, nothing applies", `{"a":1}`, `[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]`, errPatchConflict, "operation 1"},
	} {
		got, err := applyPatch(jsonPatchType, []byte(tc.doc), []byte(tc.patch), budgets{})
		if !errors.Is(err, tc.want) || err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: apply %s to %s = %s, %v, want %v containing %q", tc.name, tc.patch, tc.doc, got, err, tc.want, tc.msg)
		}
	}
	if _, err := applyPatch("application/json", []byte(`{}`), []byte(`{}`), budgets{}); !errors.Is(err, errInvalid) {
		t.Errorf("applyPatch(application/json) = %v, want errInvalid", err)
	}
	if _, err := applyPatch(mergePatchType, []byte(`{}`), []byte(`{"a":`), budgets{}); !errors.Is(err, errInvalid) {
		t.Errorf("merge patch of invalid JSON = %v, want errInvalid", err)
	}
}

// FuzzApplyPatch: any patch of either type gives a result or an error,
// never a panic, and a result is valid JSON.
func FuzzApplyPatch(f *testing.F) {
	f.Add(`{"messages":[1,2]}`, `[{"op":"move","from":"/messages/0","path":"/messages/-"}]`, true)
	f.Add(`{"a":{"b":[]}}`, `{"a":{"b":null,"c":[{"d":null}]}}`, false)
	f.Add(`[]`, `[{"op":"add","path":"/0","value":{}},{"op":"copy","from":"/0","path":"/0/x"}]`, true)
	f.Fuzz(func(t *testing.T, doc, patch string, jsonPatch bool) {
		if _, err := decodeValue([]byte(doc)); err != nil {
			return
		}
		ct := mergePatchType
		if jsonPatch {
			ct = jsonPatchType
		}
		out, err := applyPatch(ct, []byte(doc), []byte(patch), budgets{})
		if err == nil {
			if _, err := decodeValue(out); err != nil {
				t.Errorf("applyPatch(%q, %q) = %q: not JSON: %v", doc, patch, out, err)
			}
		}
	})
}

// TestPatchGrowthRefusedBeforeBuilt: a JSON Patch of copies that would
// double a 100-byte document 18 times (26 MB) against a 64 KiB document
// limit is refused (413) while it is applied, before the document is
// built: the whole call allocates a small multiple of the limit, not the
// 26 MB a refusal after building the document would cost.
func TestPatchGrowthRefusedBeforeBuilt(t *testing.T) {
	const limit = 64 << 10
	doc := []byte(`{"x":"` + strings.Repeat("a", 92) + `"}`)
	patch := copyPatch(18)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, err := applyPatch(jsonPatchType, doc, patch, budgets{maxDocument: limit})
	runtime.ReadMemStats(&after)
	if code := statusOf(err); code != http.StatusRequestEntityTooLarge || out != nil {
		t.Fatalf("applyPatch of 18 copies = %d bytes, %v (status %d); want 413 and no document", len(out), err, code)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB while refusing (document limit %d KiB)", alloc>>10, limit>>10)
	if alloc > 16*limit {
		t.Errorf("applyPatch allocated %d KiB before refusing, want at most %d KiB (16 times the document limit)", alloc>>10, 16*limit>>10)
	}
}
