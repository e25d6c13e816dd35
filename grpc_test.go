package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	pb "deltadatabase/proto"
)

// rawBytesCodec sends a []byte as the message, whatever it holds.
type rawBytesCodec struct{}

func (rawBytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawBytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawBytesCodec) Name() string { return "proto" }

// TestGRPCUndecodableRequest: a request whose bytes are not a valid
// message of the method (bad wire format, a string field of invalid
// UTF-8) is InvalidArgument with one sentence naming the message, not
// gRPC's Internal ("grpc: failed to unmarshal the received message:
// proto: cannot parse invalid wire-format data"), which says the server
// failed. A valid message still reaches the service.
func TestGRPCUndecodableRequest(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	conn, err := grpc.NewClient(fe.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawBytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	valid := append(append(str(1, "db"), str(2, "k")...), str(4, "GET")...)
	for _, c := range []struct {
		name string
		msg  []byte
		want codes.Code
	}{
		{"valid, without credential", valid, codes.Unauthenticated},
		{"cut in a length", append(valid, 0x12, 0x50, 'a'), codes.InvalidArgument},
		{"cut in a varint", append(valid, 0x12, 0xff), codes.InvalidArgument},
		{"key of invalid UTF-8", append(valid, str(2, "\xff\xfe")...), codes.InvalidArgument},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}, codes.InvalidArgument},
	} {
		var out []byte
		err := conn.Invoke(t.Context(), "/deltadb.MainWorker/Process", c.msg, &out)
		s := status.Convert(err)
		if s.Code() != c.want {
			t.Errorf("%s: %v %q, want %v", c.name, s.Code(), s.Message(), c.want)
		}
		if c.want == codes.InvalidArgument && s.Message() != "the request is not a valid deltadb.ProcessRequest message" {
			t.Errorf("%s: %q, want one sentence naming the message", c.name, s.Message())
		}
	}
}

// TestGRPCMetadataBounded: a call's metadata is bounded as REST's headers
// are (64 KiB): gRPC's default let each call carry 16 MiB, decoded and
// held while it ran (32 calls at once with 15 MiB each took the main
// worker from 126 to 253 MB, and 27 s of CPU for 160 calls).
func TestGRPCMetadataBounded(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	for _, c := range []struct {
		size int
		ok   bool
	}{{32 << 10, true}, {100 << 10, false}, {15 << 20, false}} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+testAdminKey, "x-big", strings.Repeat("a", c.size))
		_, err := fe.client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: "GET"})
		if got := status.Code(err) != codes.NotFound; got == c.ok {
			t.Errorf("metadata of %d bytes: %v, want it refused %v", c.size, err, !c.ok)
		}
	}
}
