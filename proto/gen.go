// Package proto holds the gRPC contract of DeltaDatabase (deltadb.proto) and
// its generated Go code. Regenerate with `go generate ./proto` after
// installing protoc (Debian protobuf-compiler) and the two Go plugins:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative deltadb.proto
