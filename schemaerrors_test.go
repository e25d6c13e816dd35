package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// schemaErrorsChat is the schema the structured-error tests bind.
const schemaErrorsChat = `{"type":"object","required":["messages"],"properties":{"messages":{"type":"array",
	"items":{"type":"object","properties":{"role":{"enum":["user","assistant"]}}}}}}`

// errorAnswer is a REST error body with its violations.
type errorAnswer struct {
	Error   string            `json:"error"`
	Errors  []validationIssue `json:"errors"`
	Omitted int               `json:"omitted"`
}

// detailIssues returns the violations of a failed gRPC call's
// ProcessResponse detail.
func detailIssues(err error) []validationIssue {
	for _, d := range status.Convert(err).Details() {
		if pr, ok := d.(*pb.ProcessResponse); ok {
			var out []validationIssue
			for _, is := range pr.GetErrors() {
				out = append(out, validationIssue{Path: is.GetPath(), Message: is.GetMessage()})
			}
			return out
		}
	}
	return nil
}

// TestSchemaFailureErrors: a PUT or PATCH its schema refuses is still 400
// with the same sentence, and lists each violation as {path, message}:
// paths into the PUT body {key: document} (keys escaped as JSON Pointer
// tokens) or into the patched document, the same in the gRPC detail. A
// key without read gets the short sentence and no violations of the
// stored document.
func TestSchemaFailureErrors(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	ctx := t.Context()
	if err := fe.data.putSchema(ctx, principal{admin: true}, "chat.v1", []byte(schemaErrorsChat)); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.data.bind(ctx, "chat", "chat.v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.client.Process(ctx, clientProcess("PUT", "chat", "s1", testAdminKey, []byte(`{"messages":[]}`))); err != nil {
		t.Fatal(err)
	}
	writer := createTestKey(t, fe.auth, "writer", permWrite, nil)

	rest := func(t *testing.T, c restCall, cred string) errorAnswer {
		t.Helper()
		code, body := c.do(fe.rest, cred)
		var a errorAnswer
		if err := json.Unmarshal([]byte(body), &a); err != nil || code != http.StatusBadRequest {
			t.Fatalf("%s %s = %d %s, want 400 with an error body", c.method, c.target, code, body)
		}
		return a
	}

	t.Run("PUT", func(t *testing.T) {
		a := rest(t, restCall{method: "PUT", target: "/entity/chat",
			body: `{"ok":{"messages":[]},"a~b":{"messages":[{"role":"bot"}]},"c":{"x":1}}`}, testAdminKey)
		want := []validationIssue{
			{Path: "/a~0b/messages/0/role", Message: "value must be one of 'user', 'assistant'"},
			{Path: "/c", Message: "missing property 'messages'"},
		}
		slices.SortFunc(a.Errors, func(x, y validationIssue) int { return strings.Compare(x.Path, y.Path) })
		if !slices.Equal(a.Errors, want) || !strings.HasPrefix(a.Error, `documents do not match schema "chat.v1": `) {
			t.Errorf("PUT errors = %q %+v, want the sentence and %+v", a.Error, a.Errors, want)
		}
		_, err := fe.client.Process(ctx, clientProcess("PUT", "chat", "c", testAdminKey, []byte(`{"x":1}`)))
		if got := detailIssues(err); !slices.Equal(got, want[1:]) || errorMessage(err) != `documents do not match schema "chat.v1": "c": at (root): missing property 'messages'` {
			t.Errorf("gRPC PUT = %q with %+v, want the sentence and %+v", errorMessage(err), got, want[1:])
		}
		for _, key := range []string{"ok", "a~b", "c"} {
			if _, _, found, _ := fe.data.readEntity(ctx, "chat", key); found {
				t.Errorf("chat/%s stored by a refused PUT", key)
			}
		}
	})

	t.Run("PATCH", func(t *testing.T) {
		patch := `{"messages":[{"role":"bot"}]}`
		c := restCall{method: "PATCH", target: "/entity/chat?key=s1", body: patch, header: []string{"Content-Type: " + mergePatchType}}
		a := rest(t, c, testAdminKey)
		want := []validationIssue{{Path: "/messages/0/role", Message: "value must be one of 'user', 'assistant'"}}
		if !slices.Equal(a.Errors, want) {
			t.Errorf("PATCH errors = %q %+v, want %+v", a.Error, a.Errors, want)
		}
		_, err := fe.client.Process(ctx, clientProcess("PATCH", "chat", "s1", testAdminKey, []byte(patch)))
		if got := detailIssues(err); !slices.Equal(got, want) || errorMessage(err) != a.Error {
			t.Errorf("gRPC PATCH = %q with %+v, want %q with %+v", errorMessage(err), got, a.Error, want)
		}
		// The violations quote the stored document's members and values:
		// a key that may not read it learns none.
		hidden := rest(t, c, writer)
		if hidden.Errors != nil || hidden.Error != `the patched document does not match schema "chat.v1"` {
			t.Errorf("PATCH without read = %q %+v, want the short sentence and no errors", hidden.Error, hidden.Errors)
		}
		_, err = fe.client.Process(ctx, clientProcess("PATCH", "chat", "s1", writer, []byte(patch)))
		if got := detailIssues(err); got != nil {
			t.Errorf("gRPC PATCH without read lists %+v", got)
		}
	})

	t.Run("other failures list none", func(t *testing.T) {
		a := rest(t, restCall{method: "PUT", target: "/entity/chat?schema=nope.v1", body: `{"k":{"messages":[]}}`}, testAdminKey)
		if a.Errors != nil {
			t.Errorf("unknown schema lists %+v", a.Errors)
		}
	})
}

// TestSchemaFailureErrorsRemoteWorker: a PATCH is validated at the
// processing worker; its violations reach the REST client through the
// cluster link.
func TestSchemaFailureErrorsRemoteWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	c := startCluster(t, "w1")
	m := c.main
	if code, out, _ := m.call("PUT", "/schema/chat.v1", testAdminKey, schemaErrorsChat); code != 200 {
		t.Fatalf("PUT /schema = %d %s", code, out)
	}
	if code, out, _ := m.call("PUT", "/api/databases/chat", testAdminKey, `{"schema":"chat.v1"}`); code != 200 {
		t.Fatalf("bind = %d %s", code, out)
	}
	if code, out, _ := m.call("PUT", "/entity/chat", testAdminKey, `{"s1":{"messages":[]}}`); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	req, err := http.NewRequest("PATCH", m.base+"/entity/chat?key=s1", strings.NewReader(`[{"op":"add","path":"/messages/-","value":{"role":"bot"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("Content-Type", jsonPatchType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a errorAnswer
	json.NewDecoder(resp.Body).Decode(&a)
	want := []validationIssue{{Path: "/messages/0/role", Message: "value must be one of 'user', 'assistant'"}}
	if resp.StatusCode != http.StatusBadRequest || !slices.Equal(a.Errors, want) {
		t.Errorf("PATCH through worker w1 = %d %q %+v, want 400 with %+v", resp.StatusCode, a.Error, a.Errors, want)
	}
}

// TestSchemaViolationListsAreCut: a violation whose sentence lists the
// schema's values or names (an enum, required, additionalProperties)
// names a few and counts the rest. The library lists them all: an enum of
// 100,000 numbers made each violation 700 KB, and a PUT of 1,000 such
// documents spent 18 s of CPU on the sentences and never answered.
func TestSchemaViolationListsAreCut(t *testing.T) {
	r := newSchemaRegistry(newMemStore(), budgets{})
	ctx := t.Context()
	names := make([]string, 5000)
	nums := make([]int, 20000)
	for i := range names {
		names[i] = fmt.Sprintf("member_%04d", i)
	}
	for i := range nums {
		nums[i] = i
	}
	enum, _ := json.Marshal(nums)
	req, _ := json.Marshal(names)
	schema := fmt.Sprintf(`{"type":"object","properties":{"n":{"enum":%s},"o":{"required":%s},"x":{"additionalProperties":false}}}`, enum, req)
	if err := r.Put(ctx, "lists.v1", []byte(schema)); err != nil {
		t.Fatal(err)
	}
	extra := make(map[string]int, len(names))
	for _, n := range names {
		extra[n] = 1
	}
	doc, _ := json.Marshal(map[string]any{"n": -1, "o": map[string]any{}, "x": extra})
	err := r.Validate(ctx, "lists.v1", doc)
	var ve *validationError
	if !errors.As(err, &ve) || len(ve.Issues) != 3 {
		t.Fatalf("Validate = %v, want 3 violations", err)
	}
	for _, is := range ve.Issues {
		if len(is.Message) > 1024 || !strings.Contains(is.Message, "more") {
			t.Errorf("violation at %s: %d bytes (%.120s...), want at most 1 KiB counting what it leaves out", is.Path, len(is.Message), is.Message)
		}
	}
	if want := "value must be one of 0, 1, 2"; !strings.HasPrefix(ve.Issues[0].Message, want) {
		t.Errorf("enum violation %.80q, want it to begin %q", ve.Issues[0].Message, want)
	}
}
