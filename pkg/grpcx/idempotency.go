package grpcx

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// IdempotencyKeyMetadata is the metadata key the gateway maps the HTTP
// Idempotency-Key header to; gRPC clients may send it too.
const IdempotencyKeyMetadata = "idempotency-key"

// idempotencyKeyUnary copies the idempotency key from metadata into the
// request's request_id field, so one mechanism (the field, claimed in the
// effect's transaction) serves both. A request carrying both with different
// values is refused, naming request_id. Requests without such a field (reads)
// ignore the header.
func idempotencyKeyUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return h(ctx, req)
	}
	vals := md.Get(IdempotencyKeyMetadata)
	if len(vals) == 0 {
		return h(ctx, req)
	}
	m, ok := req.(proto.Message)
	if !ok {
		return h(ctx, req)
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("request_id")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return h(ctx, req)
	}
	if len(vals) > 1 {
		return nil, InvalidArgument(FieldViolation{Field: "request_id", Description: "more than one Idempotency-Key"})
	}
	key := vals[0]
	if cur := r.Get(fd).String(); cur != "" && cur != key {
		return nil, InvalidArgument(FieldViolation{Field: "request_id",
			Description: "differs from the Idempotency-Key header; send one or make them equal"})
	}
	r.Set(fd, protoreflect.ValueOfString(key))
	return h(ctx, req)
}
