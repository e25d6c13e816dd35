package main

import (
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// grpcServerOptions are the options of every gRPC server of ours: the
// -grpc-max-recv-msg-size limit, both ways.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)}
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
