package main

import (
	"errors"
	"net/http/httptest"
	"testing"

	pb "deltadatabase/proto"
)

func TestParseETags(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"*"}, "*"},
		{[]string{` "ab12" `}, "ab12"},
		{[]string{`"a", "b"`}, "a,b"},
		{[]string{`"a"`, `W/"b"`}, "a,W/b"},
	} {
		got, err := parseETags("If-Match", tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseETags(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`abc`, `"a`, `"a"b"`, `"a",`, `W/abc`, `*, "a"`, `""`} {
		if got, err := parseETags("If-Match", []string{in}); !errors.Is(err, errInvalid) {
			t.Errorf("parseETags(%q) = %q, %v, want errInvalid", in, got, err)
		}
	}
}

func TestCheckPreconditions(t *testing.T) {
	exists := current{exists: true, version: "v1"}
	for _, tc := range []struct {
		ifMatch, ifNoneMatch string
		cur                  current
		ok                   bool
	}{
		{"", "", current{}, true},
		{"v1", "", exists, true},
		{"v0,v1", "", exists, true},
		{"*", "", exists, true},
		{"v0", "", exists, false},
		{"W/v1", "", exists, false},
		{"*", "", current{}, false},
		{"v1", "", current{}, false},
		{"", "*", current{}, true},
		{"", "*", exists, false},
		{"", "v0", exists, true},
		{"", "v1", exists, false},
	} {
		req := &pb.EntityOp{IfMatch: tc.ifMatch, IfNoneMatch: tc.ifNoneMatch}
		err := checkPreconditions(req, tc.cur)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errPrecondition) {
			t.Errorf("checkPreconditions(If-Match %q, If-None-Match %q, %+v) = %v, want ok=%v", tc.ifMatch, tc.ifNoneMatch, tc.cur, err, tc.ok)
		}
		var pe *preconditionError
		if err != nil && errors.As(err, &pe) && pe.current != tc.cur.version {
			t.Errorf("preconditionError.current = %q, want %q", pe.current, tc.cur.version)
		}
	}
}

func TestBatchPreconditions(t *testing.T) {
	newReqs := func() []*pb.EntityOp {
		return []*pb.EntityOp{{EntityKey: "a"}, {EntityKey: "b:c"}}
	}
	r := httptest.NewRequest("PUT", "/entity/db?if_match=b:c:%22v1%22&if_none_match=a", nil)
	reqs := newReqs()
	if err := batchPreconditions(r, reqs); err != nil || reqs[0].IfNoneMatch != "*" || reqs[1].IfMatch != "v1" || reqs[0].IfMatch != "" {
		t.Errorf("batchPreconditions = %v, requests %v", err, reqs)
	}
	for _, q := range []string{"if_match=zz:v1", "if_match=a", "if_match=a:", "if_match=a:v1&if_match=a:v2",
		"if_none_match=a&if_none_match=a", "if_none_match=x/y", "if_match=a:v,1"} {
		if err := batchPreconditions(httptest.NewRequest("PUT", "/entity/db?"+q, nil), newReqs()); !errors.Is(err, errInvalid) {
			t.Errorf("batchPreconditions(%s) = %v, want errInvalid", q, err)
		}
	}
	h := httptest.NewRequest("PUT", "/entity/db", nil)
	h.Header.Set("If-Match", `"v1"`)
	if err := batchPreconditions(h, newReqs()); !errors.Is(err, errInvalid) {
		t.Errorf("If-Match header on two keys = %v, want errInvalid", err)
	}
	one := []*pb.EntityOp{{EntityKey: "a"}}
	if err := batchPreconditions(h, one); err != nil || one[0].IfMatch != "v1" {
		t.Errorf("If-Match header on one key = %v, %v", err, one[0])
	}
}
