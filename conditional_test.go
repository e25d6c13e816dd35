package main

import (
	"errors"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

func TestParseETags(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"*"}, "*"},
		{[]string{` "ab12" `}, "ab12"},
		{[]string{`"a", "b"`}, "a,b"},
		{[]string{`"a"`, `W/"b"`}, "a,W/b"},
		{[]string{`"a", "*"`}, "a,*"},
	} {
		got, err := parseETags("If-Match", tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseETags(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`abc`, `"a`, `"a"b"`, `"a",`, `W/abc`, `*, "a"`, `""`, `"*"`, ``, ` `, `,`} {
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
		{"v0,v2", "", exists, false},
		{"v0,W/v1,*", "", exists, false},
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
		"if_none_match=a&if_none_match=a", "if_none_match=x/y", "if_match=a:v,1", "if_match=a:v1&if_none_match=a", "if_none_match=a&if_match=a:*"} {
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

// TestEmptyPreconditionHeader plays a client whose If-Match lost its tag
// (If-Match: $etag, the variable empty): the PUT, PATCH or DELETE is 400
// and changes nothing; it was taken as no precondition and overwrote or
// deleted the entity. An empty If-None-Match is 400 as well, on a GET
// too, and a multi-key PUT naming one key in both if_match and
// if_none_match is 400 (a key named twice), not a 412.
func TestEmptyPreconditionHeader(t *testing.T) {
	ts := httptest.NewServer(newLocalREST(t))
	t.Cleanup(ts.Close)
	c := entityClient{t, ts.URL}
	cur := c.want(c.do("PUT", "/entity/db", `{"k":1}`), 200, "PUT k").etag()
	for _, h := range []string{"If-Match", "If-None-Match"} {
		for _, v := range []string{"", " "} {
			c.want(c.do("PUT", "/entity/db", `{"k":2}`, h, v), 400, "PUT "+h+": "+v)
			c.want(c.do("PUT", "/entity/db", `{"k":2,"j":2}`, h, v), 400, "PUT of two keys "+h+": "+v)
			c.want(c.do("PATCH", "/entity/db?key=k", `{"x":2}`, h, v, "Content-Type", mergePatchType), 400, "PATCH "+h+": "+v)
			c.want(c.do("DELETE", "/entity/db?key=k", nil, h, v), 400, "DELETE "+h+": "+v)
		}
	}
	c.want(c.do("GET", "/entity/db?key=k", nil, "If-None-Match", ""), 400, "GET If-None-Match: (empty)")
	c.want(c.do("PUT", "/entity/db?if_match=k:*&if_none_match=k", `{"k":2,"j":2}`), 400, "PUT if_match and if_none_match of one key")
	if got := c.do("GET", "/entity/db?key=k", nil); string(got.body) != "1" || got.etag() != cur {
		t.Fatalf("after the refused requests k = %s %s, want 1 %s", got.body, got.etag(), cur)
	}
	if got := c.do("GET", "/entity/db?key=j", nil); got.code != 404 {
		t.Fatalf("after the refused requests j: %d %s, want 404", got.code, got.body)
	}
}

// TestIfMatchOnlyStaleTags: an If-Match listing several tags none of which
// is the current version is 412 and changes nothing, on REST and on gRPC
// Process; so is one whose only match is weak (writes compare strongly) or
// that lists the tag "*" (quoted, or "*" inside a gRPC list: only "*" alone
// is the wildcard). A list holding the current version succeeds.
func TestIfMatchOnlyStaleTags(t *testing.T) {
	ts := httptest.NewServer(newLocalREST(t))
	t.Cleanup(ts.Close)
	c := entityClient{t, ts.URL}
	cur := c.want(c.do("PUT", "/entity/db", `{"k":1}`), 200, "PUT k").etag()
	stale := c.want(c.do("PUT", "/entity/db", `{"old":1}`), 200, "PUT old").etag() // a real version of another entity
	for _, ifMatch := range []string{
		`"aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb"`,
		stale + `, "bbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccc"`,
		"W/" + cur,
		"W/" + cur + ", " + stale,
		stale + `, "*"`,
		stale + ", W/" + cur + `, "*"`,
	} {
		for _, method := range []string{"PUT", "PATCH", "DELETE"} {
			var body any
			var headers = []string{"If-Match", ifMatch}
			switch method {
			case "PUT":
				body = `{"k":2}`
			case "PATCH":
				body, headers = `{"x":2}`, append(headers, "Content-Type", mergePatchType)
			}
			target := "/entity/db?key=k"
			if method == "PUT" {
				target = "/entity/db"
			}
			r := c.want(c.do(method, target, body, headers...), 412, method+" If-Match: "+ifMatch)
			if r.etag() != cur {
				t.Errorf("%s If-Match: %s: 412 with ETag %q, want the current %q", method, ifMatch, r.etag(), cur)
			}
		}
	}
	for _, ifMatch := range []string{stale + `, *`, `"*"`} {
		c.want(c.do("PUT", "/entity/db", `{"k":3}`, "If-Match", ifMatch), 400, "PUT If-Match: "+ifMatch)
	}
	if got := c.do("GET", "/entity/db?key=k", nil); string(got.body) != "1" || got.etag() != cur {
		t.Fatalf("after the refused writes k = %s %s, want 1 %s", got.body, got.etag(), cur)
	}
	c.want(c.do("PUT", "/entity/db", `{"k":4}`, "If-Match", stale+", "+cur), 200, "PUT If-Match listing the current version")

	m := startTestMain(t, 4<<20)
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	put := func(ifMatch string) (*pb.ProcessResponse, error) {
		return client.Process(t.Context(), &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "PUT",
			Payload: []byte(`2`), Token: testAdminKey, IfMatch: ifMatch})
	}
	first, err := put("")
	if err != nil {
		t.Fatal(err)
	}
	v := first.GetVersion()
	for _, ifMatch := range []string{"aaaa,bbbb", "aaaa,bbbb,cccc", "W/" + v, "W/" + v + ",aaaa", "aaaa,*", "*,aaaa"} {
		if _, err := put(ifMatch); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Process PUT if_match %q = %v, want FailedPrecondition", ifMatch, err)
		}
	}
	got, err := client.Process(t.Context(), &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "GET", Token: testAdminKey})
	if err != nil || got.GetVersion() != v {
		t.Fatalf("after the refused writes GET = %v, %v; want version %s", got, err, v)
	}
	if _, err := put("aaaa," + v); err != nil {
		t.Errorf("Process PUT if_match listing the current version = %v", err)
	}
}
