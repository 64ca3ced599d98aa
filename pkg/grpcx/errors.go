package grpcx

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of Rapport's reasons.
const ErrorDomain = "rapport.dev"

// FieldViolation names one bad request field by its path as the client sent
// it, e.g. "customer.email", and says what is wrong without echoing the value.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgument returns an INVALID_ARGUMENT status carrying a
// google.rpc.BadRequest, so REST clients get HTTP 400 with the field named.
func InvalidArgument(violations ...FieldViolation) error {
	return invalidArgument("", violations...)
}

// InvalidArgumentReason is InvalidArgument with an ErrorInfo reason, for
// refusals clients branch on (IDEMPOTENCY_KEY_REUSED).
func InvalidArgumentReason(reason string, violations ...FieldViolation) error {
	return invalidArgument(reason, violations...)
}

func invalidArgument(reason string, violations ...FieldViolation) error {
	br := &errdetails.BadRequest{}
	msg := "invalid request"
	for i, v := range violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: v.Field, Description: v.Description,
		})
		if i == 0 {
			msg = fmt.Sprintf("invalid %s: %s", v.Field, v.Description)
		}
	}
	if len(violations) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(violations)-1)
	}
	st := status.New(codes.InvalidArgument, msg)
	details := []protoadapt.MessageV1{br}
	if reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
	}
	return withDetails(st, details...)
}

// FailedPrecondition is a business rule refusing the request; reason is the
// stable machine-readable cause (INSUFFICIENT_POINTS, COUPON_ALREADY_REDEEMED).
func FailedPrecondition(reason, message string) error {
	return withDetails(status.New(codes.FailedPrecondition, message),
		&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
}

// NotFound says a resource does not exist for the caller. Resources of other
// tenants are reported the same way, so their existence never leaks.
func NotFound(what string) error {
	return status.Error(codes.NotFound, what+" not found")
}

func withDetails(st *status.Status, details ...protoadapt.MessageV1) error {
	if s, err := st.WithDetails(details...); err == nil {
		st = s
	}
	return st.Err()
}

// ToStatus maps an error to the status a client sees, once, at the edge:
// statuses pass through; database kinds map to their codes; anything else
// becomes INTERNAL with a generic message (the cause goes to the log, never to
// the client). internal reports whether the error was unknown.
func ToStatus(err error) (st error, internal bool) {
	if err == nil {
		return nil, false
	}
	// A status wrapped with context ("redeem %s: %w") passes through as the
	// bare status: grpc-go would otherwise send the whole wrapped text as
	// the message, and that context can name ids or personal data.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if s := se.GRPCStatus(); s != nil && s.Code() != codes.OK {
			return s.Err(), false
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.Is(err, pgdb.ErrNotFound):
		return status.Error(codes.NotFound, "not found"), false
	case errors.Is(err, pgdb.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, "already exists"), false
	case errors.Is(err, pgdb.ErrConflict):
		return status.Error(codes.Aborted, "concurrent change; retry"), false
	}
	return status.Error(codes.Internal, "internal error"), true
}
