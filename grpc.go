package main

import (
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
)

// grpcServerOptions are the options of every gRPC server of ours: the
// -grpc-max-recv-msg-size limit, both ways.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)}
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
