package main

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// grpcServerOptions are the options of every gRPC server of ours: the
// -grpc-max-recv-msg-size limit, both ways, a call's metadata bounded as
// REST's headers are (gRPC's default is 16 MiB a call, decoded and held
// while it runs), and requestCodec with the interceptors that answer its
// undecodable requests.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		grpc.MaxHeaderListSize(maxHeaderBytes),
		grpc.ForceServerCodecV2(requestCodec{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := undecodable(req); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, decodedStream{ss})
		})}
}

// requestCodec is gRPC's protobuf codec, but for a message that does not
// decode: gRPC answers the codec's error with Internal, a failure of the
// server, whatever the bytes. requestCodec leaves the message empty but
// for undecodableMark among its unknown fields, and the interceptors of
// grpcServerOptions answer it InvalidArgument (undecodable).
type requestCodec struct{}

// undecodableMark marks a message requestCodec could not decode: a field
// of the largest number, which no message of ours has.
var undecodableMark = protowire.AppendString(protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.BytesType), "undecodable")

// Marshal implements encoding.CodecV2.
func (requestCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

// Unmarshal implements encoding.CodecV2.
func (requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := protoCodec.Unmarshal(data, v)
	if m, ok := v.(proto.Message); ok && err != nil {
		proto.Reset(m)
		m.ProtoReflect().SetUnknown(undecodableMark)
		return nil
	}
	return err
}

// Name implements encoding.CodecV2.
func (requestCodec) Name() string { return protoCodec.Name() }

// undecodable is the InvalidArgument answer of a request requestCodec
// marked, nil for any other.
func undecodable(req any) error {
	if m, ok := req.(proto.Message); ok && bytes.Equal(m.ProtoReflect().GetUnknown(), undecodableMark) {
		return status.Errorf(codes.InvalidArgument, "the request is not a valid %s message", m.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

// decodedStream is a server stream whose messages received are refused
// as undecodable says.
type decodedStream struct{ grpc.ServerStream }

// RecvMsg implements grpc.ServerStream.
func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return undecodable(m)
}

// Keepalive of our gRPC servers (grpcKeepalive).
const (
	// defaultGRPCMaxIdle is -grpc-max-connection-idle's default.
	defaultGRPCMaxIdle = 5 * time.Minute
	// grpcPingAfter is how long a connection may stay silent before the
	// server pings it; grpcPingTimeout how long it then waits for the
	// answer before closing it.
	grpcPingAfter   = time.Minute
	grpcPingTimeout = 20 * time.Second
	// grpcMinClientPing is the least interval between the pings a client
	// may send; more often is a flood the server answers by closing.
	grpcMinClientPing = 10 * time.Second
)

// grpcKeepalive are the keepalive options of every gRPC server of ours: a
// connection with no call in flight for idle is sent GOAWAY and closed
// (clients reconnect by themselves), one that stays silent is pinged and
// closed when the ping goes unanswered, and a client pinging more often
// than grpcMinClientPing is closed. Without them a peer that sent the
// HTTP/2 preface and nothing else held its connection forever.
func grpcKeepalive(idle time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idle, Time: grpcPingAfter, Timeout: grpcPingTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcMinClientPing, PermitWithoutStream: true}),
	}
}

// grpcDialOptions are the options of every gRPC client connection of ours:
// creds (TLS on every cluster link, see cluster.go) and the message limit.
func grpcDialOptions(maxMsg int, creds grpccreds.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))}
}

// stopGRPC stops a gRPC server gracefully, forcing it after 10 s.
func stopGRPC(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		gs.Stop()
	}
}
