package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

func TestToStatus(t *testing.T) {
	t.Parallel()

	refusal := grpcx.FailedPrecondition("INSUFFICIENT_POINTS", "not enough points")
	cases := []struct {
		name     string
		err      error
		code     codes.Code
		message  string // "" means: do not check
		internal bool
	}{
		{name: "NotFound", err: pgdb.ErrNotFound, code: codes.NotFound, message: "not found"},
		{name: "WrappedNotFound", err: fmt.Errorf("load ticket %s: %w", marker, pgdb.ErrNotFound),
			code: codes.NotFound, message: "not found"},
		{name: "ClassifiedNoRows", err: pgdb.Classify(pgx.ErrNoRows), code: codes.NotFound, message: "not found"},
		{name: "AlreadyExists", err: pgdb.ErrAlreadyExists, code: codes.AlreadyExists, message: "already exists"},
		{name: "Conflict", err: fmt.Errorf("redeem: %w", pgdb.ErrConflict), code: codes.Aborted},
		{name: "DeadlineExceeded", err: context.DeadlineExceeded, code: codes.DeadlineExceeded},
		{name: "WrappedDeadlineExceeded", err: fmt.Errorf("query: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded},
		{name: "Canceled", err: context.Canceled, code: codes.Canceled},
		{name: "StatusPassesThrough", err: status.Error(codes.PermissionDenied, "no"), code: codes.PermissionDenied, message: "no"},
		{name: "WrappedStatusPassesThroughWithoutTheWrapping", err: fmt.Errorf("redeem for %s: %w", marker, refusal),
			code: codes.FailedPrecondition, message: "not enough points"},
		{name: "UnknownIsInternal", err: errors.New(`relation "` + marker + `" does not exist`),
			code: codes.Internal, message: "internal error", internal: true},
		{name: "CheckViolationIsInternal", err: fmt.Errorf("%s: %w", marker, pgdb.ErrCheckViolation),
			code: codes.Internal, message: "internal error", internal: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, internal := grpcx.ToStatus(tc.err)
			require.Equal(t, tc.internal, internal)
			s, ok := status.FromError(st)
			require.True(t, ok, "ToStatus must return a status error")
			require.Equal(t, tc.code, s.Code())
			if tc.message != "" {
				require.Equal(t, tc.message, s.Message())
			}
			require.NotContains(t, s.Message(), marker)
		})
	}

	t.Run("NilIsNil", func(t *testing.T) {
		t.Parallel()
		st, internal := grpcx.ToStatus(nil)
		require.NoError(t, st)
		require.False(t, internal)
	})

	t.Run("WrappedStatusKeepsItsDetails", func(t *testing.T) {
		t.Parallel()
		st, _ := grpcx.ToStatus(fmt.Errorf("redeem: %w", refusal))
		require.Equal(t, "INSUFFICIENT_POINTS", errorInfo(t, st).GetReason())
	})
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()

	t.Run("InvalidArgumentNamesEachField", func(t *testing.T) {
		t.Parallel()
		err := grpcx.InvalidArgument(
			grpcx.FieldViolation{Field: "customer.email", Description: "must be an email address"},
			grpcx.FieldViolation{Field: "customer.phone", Description: "must be E.164"},
		)
		s := status.Convert(err)
		require.Equal(t, codes.InvalidArgument, s.Code())
		require.Equal(t, "invalid customer.email: must be an email address (and 1 more)", s.Message())
		br := badRequest(t, err)
		require.Equal(t, []string{"customer.email", "customer.phone"}, fields(br))
		require.Equal(t, "must be E.164", br.GetFieldViolations()[1].GetDescription())
		for _, d := range s.Details() {
			require.IsType(t, &errdetails.BadRequest{}, d, "no ErrorInfo without a reason")
		}
	})

	t.Run("InvalidArgumentReasonAddsErrorInfo", func(t *testing.T) {
		t.Parallel()
		err := grpcx.InvalidArgumentReason("IDEMPOTENCY_KEY_REUSED",
			grpcx.FieldViolation{Field: "request_id", Description: "already used"})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Equal(t, []string{"request_id"}, fields(badRequest(t, err)))
		ei := errorInfo(t, err)
		require.Equal(t, "IDEMPOTENCY_KEY_REUSED", ei.GetReason())
		require.Equal(t, grpcx.ErrorDomain, ei.GetDomain())
	})

	t.Run("FailedPreconditionCarriesTheReason", func(t *testing.T) {
		t.Parallel()
		err := grpcx.FailedPrecondition("COUPON_ALREADY_REDEEMED", "coupon already redeemed")
		s := status.Convert(err)
		require.Equal(t, codes.FailedPrecondition, s.Code())
		require.Equal(t, "coupon already redeemed", s.Message())
		ei := errorInfo(t, err)
		require.Equal(t, "COUPON_ALREADY_REDEEMED", ei.GetReason())
		require.Equal(t, grpcx.ErrorDomain, ei.GetDomain())
	})

	t.Run("NotFoundSaysWhat", func(t *testing.T) {
		t.Parallel()
		s := status.Convert(grpcx.NotFound("customer"))
		require.Equal(t, codes.NotFound, s.Code())
		require.Equal(t, "customer not found", s.Message())
	})

	t.Run("ValidationErrorPassesOtherErrorsThrough", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, grpcx.ValidationError(nil))
		other := errors.New("compile rules")
		require.Same(t, other, grpcx.ValidationError(other))
	})
}

func TestIsHealthMethod(t *testing.T) {
	t.Parallel()
	for method, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":                     true,
		"/grpc.health.v1.Health/Watch":                     true,
		"/grpc.health.v1.Health/":                          false,
		"/grpc.health.v1.HealthX/Check":                    false,
		"/rapport.customer.v1.CustomerService/GetCustomer": false,
	} {
		require.Equal(t, want, grpcx.IsHealthMethod(method), method)
	}
}
