package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	pb "deltadatabase/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestReflectionClientView asks a server with the client port's services
// what it serves, as grpcurl does: MainWorker and the reflection service
// are listed; deltadb.proto comes back without the ProcessingWorker service
// and the main-to-worker messages, which are not asked for by name either.
func TestReflectionClientView(t *testing.T) {
	gs := grpc.NewServer()
	pb.RegisterMainWorkerServer(gs, &mainService{})
	if err := registerReflection(gs); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { gs.Serve(ln); close(served) }()
	defer func() { gs.Stop(); <-served }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		return exchange(t, stream, req)
	}

	var services []string
	list := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	for _, s := range list.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	slices.Sort(services)
	if want := []string{"deltadb.MainWorker", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}; !slices.Equal(services, want) {
		t.Errorf("list services = %q, want %q", services, want)
	}

	resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "deltadb.MainWorker"}})
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) != 1 {
		t.Fatalf("file containing deltadb.MainWorker: %d files (%v), want deltadb.proto alone", len(files), resp.GetErrorResponse())
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(files[0], &fd); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range fd.GetService() {
		names = append(names, "service "+s.GetName())
	}
	for _, m := range fd.GetMessageType() {
		names = append(names, m.GetName())
	}
	for _, e := range fd.GetEnumType() {
		names = append(names, "enum "+e.GetName())
	}
	want := []string{"service MainWorker", "SubscribeRequest", "SubscribeResponse", "HeartbeatRequest", "HeartbeatResponse",
		"CacheStats", "ProcessRequest", "ProcessResponse", "ValidationIssue"}
	if !slices.Equal(names, want) {
		t.Errorf("%s as reflected declares %q, want %q", fd.GetName(), names, want)
	}

	for _, hidden := range []string{"deltadb.ProcessingWorker", "deltadb.WorkerRequest", "deltadb.EntityOp", "deltadb.Operation"} {
		resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: hidden}})
		if resp.GetErrorResponse() == nil {
			t.Errorf("reflection describes %s, which the client port does not serve", hidden)
		}
	}
}

// TestGrpcurl runs grpcurl, with no .proto file, against the binary's
// client port: list, describe, and MainWorker.Process calls with the
// credentials REST takes. A missing grpcurl skips it locally and fails it
// in CI (.ci/run installs it).
func TestGrpcurl(t *testing.T) {
	needBinary(t)
	needProgram(t, "grpcurl", "go install github.com/fullstorydev/grpcurl/cmd/grpcurl (see .ci/run)")
	n, _ := startDefault(t)
	addr := n.logAddr("grpc listening")
	// grpcurl runs grpcurl [-d data] addr what...; data "" sends none.
	grpcurl := func(data string, what ...string) (string, error) {
		args := []string{"-plaintext", "-max-time", "20"}
		if data != "" {
			args = append(args, "-d", data)
		}
		out, err := exec.Command("grpcurl", append(append(args, addr), what...)...).CombinedOutput()
		return string(out), err
	}

	out, err := grpcurl("", "list")
	if got := strings.Fields(out); err != nil || !slices.Equal(got, []string{"deltadb.MainWorker", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}) {
		t.Errorf("grpcurl list = %v %q, want MainWorker and the reflection service", err, out)
	}
	out, err = grpcurl("", "describe", "deltadb.ProcessRequest")
	for _, field := range []string{"string database_name = 1;", "string operation = 4;", "bytes payload = 5;", "string token = 6;", "string if_match = 8;"} {
		if err != nil || !strings.Contains(out, field) {
			t.Errorf("grpcurl describe deltadb.ProcessRequest = %v %q, want %q in it", err, out, field)
		}
	}
	if out, err := grpcurl("", "describe", "deltadb.ProcessingWorker"); err == nil {
		t.Errorf("grpcurl describe deltadb.ProcessingWorker = %q, want an error: the client port does not serve it", out)
	}

	doc := `{"messages":[{"role":"user","content":"over gRPC"}]}`
	put := `{"database_name":"grpcurl","entity_key":"s1","operation":"PUT","token":"` + testAdminKey + `","payload":"` + base64.StdEncoding.EncodeToString([]byte(doc)) + `"}`
	out, err = grpcurl(put, "deltadb.MainWorker/Process")
	var answer struct{ Status, Result, Version string }
	if err != nil || json.Unmarshal([]byte(out), &answer) != nil || answer.Status != "OK" || answer.Version == "" {
		t.Fatalf("grpcurl Process PUT = %v %q, want status OK with a version", err, out)
	}
	out, err = grpcurl(`{"database_name":"grpcurl","entity_key":"s1","operation":"GET","token":"`+testAdminKey+`"}`, "deltadb.MainWorker/Process")
	if err != nil || json.Unmarshal([]byte(out), &answer) != nil || answer.Result != base64.StdEncoding.EncodeToString([]byte(doc)) {
		t.Errorf("grpcurl Process GET = %v %q, want the document", err, out)
	}
	if code, body, _ := n.call("GET", "/entity/grpcurl?key=s1", testAdminKey, nil); code != 200 || !jsonEqual(body, []byte(doc)) {
		t.Errorf("REST GET after the gRPC PUT = %d %s, want %s", code, body, doc)
	}
	out, err = grpcurl(`{"database_name":"grpcurl","entity_key":"nope","operation":"GET","token":"`+testAdminKey+`"}`, "deltadb.MainWorker/Process")
	if err == nil || !strings.Contains(out, "Code: NotFound") || !strings.Contains(out, `entity \"nope\" not found`) {
		t.Errorf("grpcurl Process GET of a missing key = %v %q, want NotFound with the sentence", err, out)
	}
	out, err = grpcurl(`{"database_name":"grpcurl","entity_key":"s1","operation":"GET","token":"wrong"}`, "deltadb.MainWorker/Process")
	if err == nil || !strings.Contains(out, "Code: Unauthenticated") {
		t.Errorf("grpcurl Process with a wrong token = %v %q, want Unauthenticated", err, out)
	}
}
