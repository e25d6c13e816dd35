package main

// gRPC server reflection on the client port (-grpc-addr), so that grpcurl
// and other generic tools call MainWorker.Process without the .proto file.
// It describes the client's view of proto/deltadb.proto: the MainWorker
// service and the messages of its methods. The ProcessingWorker service
// and the main-to-worker messages (WorkerRequest, EntityOp, ...) are not
// served on that port, so reflection does not describe them either.

import (
	"fmt"
	"slices"
	"strings"

	pb "deltadatabase/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	rpbv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// registerReflection serves the reflection service, v1 and v1alpha (older
// tools ask for the latter), on gs; call it before gs serves. It lists the
// services registered on gs and describes the client's view of
// deltadb.proto.
func registerReflection(gs *grpc.Server) error {
	view, err := clientProtoView()
	if err != nil {
		return fmt.Errorf("grpc reflection: %w", err)
	}
	opts := reflection.ServerOptions{Services: gs, DescriptorResolver: view, ExtensionResolver: protoregistry.GlobalTypes}
	rpbv1.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	rpbv1alpha.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
	return nil
}

// protoView resolves descriptors for reflection: names of the deltadb
// package and the path of deltadb.proto from the client's view of that
// file, everything else (the reflection service's own files) from the
// descriptors linked into the binary.
type protoView struct {
	file  protoreflect.FileDescriptor
	files *protoregistry.Files // holds file alone
}

// FindFileByPath implements protodesc.Resolver.
func (v protoView) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if path == v.file.Path() {
		return v.file, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (v protoView) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if strings.HasPrefix(string(name), string(v.file.Package())+".") {
		return v.files.FindDescriptorByName(name)
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

// clientProtoView builds the client's view of deltadb.proto: the file
// without the ProcessingWorker service and without the messages and enums
// that no MainWorker method uses.
func clientProtoView() (protoView, error) {
	orig := pb.File_deltadb_proto
	svc := orig.Services().ByName("MainWorker")
	if svc == nil {
		return protoView{}, fmt.Errorf("%s has no MainWorker service", orig.Path())
	}
	used := map[protoreflect.FullName]bool{}
	for i := 0; i < svc.Methods().Len(); i++ {
		m := svc.Methods().Get(i)
		markUsed(m.Input(), used)
		markUsed(m.Output(), used)
	}
	fdp := protodesc.ToFileDescriptorProto(orig)
	fdp.SourceCodeInfo = nil // its paths would point at removed declarations
	unused := func(name string) bool { return !used[orig.Package().Append(protoreflect.Name(name))] }
	fdp.Service = slices.DeleteFunc(fdp.Service, func(s *descriptorpb.ServiceDescriptorProto) bool { return s.GetName() != "MainWorker" })
	fdp.MessageType = slices.DeleteFunc(fdp.MessageType, func(m *descriptorpb.DescriptorProto) bool { return unused(m.GetName()) })
	fdp.EnumType = slices.DeleteFunc(fdp.EnumType, func(e *descriptorpb.EnumDescriptorProto) bool { return unused(e.GetName()) })
	file, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		return protoView{}, fmt.Errorf("client view of %s: %w", orig.Path(), err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(file); err != nil {
		return protoView{}, fmt.Errorf("client view of %s: %w", orig.Path(), err)
	}
	return protoView{file: file, files: files}, nil
}

// markUsed adds the top-level message or enum declaring md, and every
// message and enum its fields use, to used.
func markUsed(md protoreflect.MessageDescriptor, used map[protoreflect.FullName]bool) {
	top := protoreflect.Descriptor(md)
	for {
		parent, ok := top.Parent().(protoreflect.MessageDescriptor)
		if !ok {
			break
		}
		top = parent
	}
	if used[md.FullName()] && used[top.FullName()] {
		return
	}
	used[md.FullName()], used[top.FullName()] = true, true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() != nil {
			markUsed(f.Message(), used)
		}
		if e := f.Enum(); e != nil {
			used[e.FullName()] = true
			if parent, ok := e.Parent().(protoreflect.MessageDescriptor); ok {
				markUsed(parent, used)
			}
		}
	}
}
