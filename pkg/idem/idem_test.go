package idem_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

const (
	createMethod = customerv1.CustomerService_CreateCustomer_FullMethodName
	updateMethod = customerv1.CustomerService_UpdateCustomer_FullMethodName
)

var spec = pgdbtest.Spec{
	Schema: "idemtest",
	Migrations: fstest.MapFS{
		"00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id uuid PRIMARY KEY, name text NOT NULL);
-- +goose Down
DROP TABLE widgets;
`)},
	},
}

type testBundle struct {
	pool   *pgxpool.Pool
	tenant string
	calls  atomic.Int32 // how often an effect ran
}

type setupOpts struct {
	maxConns int32
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	dbURL := pgdbtest.NewDatabase(t, spec)
	pool := pgdbtest.Open(t, pgdb.Config{URL: dbURL, Schema: spec.Schema, MaxConns: opts.maxConns})
	return &testBundle{pool: pool, tenant: uuid.NewString()}
}

func (b *testBundle) key(method, requestID string) idem.Key {
	return idem.Key{TenantID: b.tenant, Principal: "alice", Method: method, RequestID: requestID}
}

func request(name string) *customerv1.CreateCustomerRequest {
	return &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: name, Email: name + "@example.com"}}
}

// createWidget is the effect: it inserts a widget named after the request
// and answers with a response no retry could make up (a fresh id and time).
func (b *testBundle) createWidget(req *customerv1.CreateCustomerRequest) func(context.Context, pgx.Tx) (*customerv1.Customer, error) {
	return func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
		b.calls.Add(1)
		id := uuid.New()
		if _, err := tx.Exec(ctx, `INSERT INTO widgets (id, name) VALUES ($1, $2)`, id, req.GetCustomer().GetDisplayName()); err != nil {
			return nil, err
		}
		return &customerv1.Customer{Id: id.String(), DisplayName: req.GetCustomer().GetDisplayName(), CreateTime: timestamppb.Now()}, nil
	}
}

// failAfterWrite writes a widget, then fails with err: the write must not
// survive.
func (b *testBundle) failAfterWrite(err error) func(context.Context, pgx.Tx) (*customerv1.Customer, error) {
	return func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
		b.calls.Add(1)
		if _, werr := tx.Exec(ctx, `INSERT INTO widgets (id, name) VALUES ($1, 'doomed')`, uuid.New()); werr != nil {
			return nil, werr
		}
		return nil, err
	}
}

func (b *testBundle) do(t *testing.T, key idem.Key, req *customerv1.CreateCustomerRequest,
	fn func(context.Context, pgx.Tx) (*customerv1.Customer, error),
) (*customerv1.Customer, error) {
	t.Helper()
	return idem.Do(t.Context(), b.pool, key, req, fn)
}

func (b *testBundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

func requireKeyReused(t *testing.T, err error) {
	t.Helper()
	s := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, s.Code(), "%v", err)
	var br *errdetails.BadRequest
	var ei *errdetails.ErrorInfo
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			br = d
		case *errdetails.ErrorInfo:
			ei = d
		}
	}
	require.NotNil(t, br, "no BadRequest")
	require.Len(t, br.GetFieldViolations(), 1)
	require.Equal(t, "request_id", br.GetFieldViolations()[0].GetField())
	require.NotNil(t, ei, "no ErrorInfo")
	require.Equal(t, idem.ReasonKeyReused, ei.GetReason())
	require.Equal(t, grpcx.ErrorDomain, ei.GetDomain())
}

func TestDo(t *testing.T) {
	t.Parallel()

	t.Run("IDEM01ConcurrentDuplicatesRunTheEffectOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &setupOpts{maxConns: 16})
		const n = 50
		req := request("ada")
		key := b.key(createMethod, uuid.NewString())
		effect := b.createWidget(req)
		// The effect lingers inside its transaction, so duplicates arrive
		// while the key is claimed but not committed.
		slow := func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
			if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
				return nil, err
			}
			return effect(ctx, tx)
		}

		start := make(chan struct{})
		var wg sync.WaitGroup
		resps := make([]*customerv1.Customer, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				resps[i], errs[i] = idem.Do(t.Context(), b.pool, key, proto.Clone(req), slow)
			})
		}
		close(start)
		wg.Wait()

		for i := range n {
			require.NoError(t, errs[i], "call %d", i)
			require.True(t, proto.Equal(resps[0], resps[i]), "call %d got another response:\n%v\n%v", i, resps[0], resps[i])
		}
		require.Equal(t, int32(1), b.calls.Load(), "the effect must run once")
		require.Equal(t, 1, b.count(t, "widgets"))
		require.Equal(t, 1, b.count(t, "idempotency_keys"))
		t.Logf("chaos: test=IDEM-01/concurrent-duplicates seed=0 faults=0 attempted=%d acknowledged=%d rejected=0 indeterminate=0 resolved=0 lost=0 duplicated=%d invariant_violations=0",
			n, n, b.calls.Load()-1)
	})

	t.Run("IDEM03RetriesGetTheFirstResponse", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := request("ada")
		key := b.key(createMethod, uuid.NewString())
		first, err := b.do(t, key, req, b.createWidget(req))
		require.NoError(t, err)
		for range 3 {
			again, err := b.do(t, key, req, b.createWidget(req))
			require.NoError(t, err)
			require.True(t, proto.Equal(first, again), "a retry must get the first response:\n%v\n%v", first, again)
		}
		require.Equal(t, int32(1), b.calls.Load())
		require.Equal(t, 1, b.count(t, "widgets"))
	})

	t.Run("RequestIDFieldIsNotPartOfThePayload", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		rid := uuid.NewString()
		key := b.key(createMethod, rid)
		first, err := b.do(t, key, request("ada"), b.createWidget(request("ada")))
		require.NoError(t, err)
		withField := request("ada")
		withField.RequestId = rid
		again, err := b.do(t, key, withField, b.createWidget(withField))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Equal(t, int32(1), b.calls.Load())
	})

	t.Run("IDEM02OtherPayloadIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		key := b.key(createMethod, uuid.NewString())
		_, err := b.do(t, key, request("ada"), b.createWidget(request("ada")))
		require.NoError(t, err)

		_, err = b.do(t, key, request("grace"), b.createWidget(request("grace")))
		requireKeyReused(t, err)
		require.Equal(t, int32(1), b.calls.Load(), "a reused key must not run the effect")
		require.Equal(t, 1, b.count(t, "widgets"))
	})

	t.Run("IDEM02OtherMethodIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		rid := uuid.NewString()
		_, err := b.do(t, b.key(createMethod, rid), request("ada"), b.createWidget(request("ada")))
		require.NoError(t, err)

		_, err = b.do(t, b.key(updateMethod, rid), request("ada"), b.createWidget(request("ada")))
		requireKeyReused(t, err)
		require.Equal(t, int32(1), b.calls.Load())
		require.Equal(t, 1, b.count(t, "widgets"))
	})

	t.Run("KeysAreScopedToTenantAndPrincipal", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := request("ada")
		key := b.key(createMethod, uuid.NewString())
		first, err := b.do(t, key, req, b.createWidget(req))
		require.NoError(t, err)

		otherPrincipal := key
		otherPrincipal.Principal = "bob"
		second, err := b.do(t, otherPrincipal, req, b.createWidget(req))
		require.NoError(t, err)
		require.NotEqual(t, first.GetId(), second.GetId(), "another caller's key must never replay alice's response")

		otherTenant := key
		otherTenant.TenantID = uuid.NewString()
		third, err := b.do(t, otherTenant, req, b.createWidget(req))
		require.NoError(t, err)
		require.NotEqual(t, first.GetId(), third.GetId())
		require.Equal(t, int32(3), b.calls.Load())
		require.Equal(t, 3, b.count(t, "idempotency_keys"))
	})

	t.Run("IDEM04ValidationAndTransientFailuresAreNotStored", func(t *testing.T) {
		t.Parallel()
		failures := []struct {
			name string
			err  error
			code codes.Code
		}{
			{"InvalidArgument", grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer.email", Description: "taken"}), codes.InvalidArgument},
			{"Conflict", fmt.Errorf("insert widget: %w", pgdb.ErrConflict), codes.Aborted},
			{"ConnectionLost", errors.New("write tcp 127.0.0.1:5432: connection reset by peer"), codes.Internal},
			{"DeadlineExceeded", context.DeadlineExceeded, codes.DeadlineExceeded},
			{"Unavailable", status.Error(codes.Unavailable, "ledger unavailable"), codes.Unavailable},
		}
		for _, f := range failures {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, nil)
				req := request("ada")
				key := b.key(createMethod, uuid.NewString())

				_, err := b.do(t, key, req, b.failAfterWrite(f.err))
				require.ErrorIs(t, err, f.err, "the failure itself is returned")
				st, _ := grpcx.ToStatus(err)
				require.Equal(t, f.code, status.Code(st))
				require.Zero(t, b.count(t, "widgets"), "the failed attempt's write must roll back")
				require.Zero(t, b.count(t, "idempotency_keys"), "the key must stay free")

				resp, err := b.do(t, key, req, b.createWidget(req))
				require.NoError(t, err)
				require.Equal(t, int32(2), b.calls.Load(), "the retry must run the effect")
				require.Equal(t, 1, b.count(t, "widgets"))

				again, err := b.do(t, key, req, b.createWidget(req))
				require.NoError(t, err)
				require.True(t, proto.Equal(resp, again), "the successful retry is what is stored")
				require.Equal(t, int32(2), b.calls.Load())
			})
		}
	})

	t.Run("IDEM04BusinessRefusalsAreStoredAndReplayed", func(t *testing.T) {
		t.Parallel()
		refusals := []struct {
			name   string
			err    error
			code   codes.Code
			reason string
		}{
			{"FailedPrecondition", grpcx.FailedPrecondition("INSUFFICIENT_POINTS", "not enough points"), codes.FailedPrecondition, "INSUFFICIENT_POINTS"},
			{"NotFoundFromTheStore", fmt.Errorf("load account: %w", pgdb.ErrNotFound), codes.NotFound, ""},
			{"AlreadyExists", status.Error(codes.AlreadyExists, "coupon already issued"), codes.AlreadyExists, ""},
			{"OutOfRange", status.Error(codes.OutOfRange, "past the last page"), codes.OutOfRange, ""},
		}
		for _, r := range refusals {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, nil)
				req := request("ada")
				key := b.key(createMethod, uuid.NewString())

				_, err := b.do(t, key, req, b.failAfterWrite(r.err))
				first := status.Convert(err)
				require.Equal(t, r.code, first.Code(), "%v", err)
				if r.reason != "" {
					var reason string
					for _, d := range first.Details() {
						if ei, ok := d.(*errdetails.ErrorInfo); ok {
							reason = ei.GetReason()
						}
					}
					require.Equal(t, r.reason, reason)
				}
				require.Zero(t, b.count(t, "widgets"), "what the refused effect wrote must roll back")
				require.Equal(t, 1, b.count(t, "idempotency_keys"), "the refusal must be stored")

				_, err = b.do(t, key, req, b.createWidget(req))
				require.True(t, proto.Equal(first.Proto(), status.Convert(err).Proto()),
					"the retry must get the same refusal:\n%v\n%v", first.Proto(), status.Convert(err).Proto())
				require.Equal(t, int32(1), b.calls.Load(), "a stored refusal is replayed without running the effect")
				require.Zero(t, b.count(t, "widgets"))
			})
		}
	})

	t.Run("EmptyRequestIDRunsEveryTime", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := request("ada")
		key := b.key(createMethod, "")
		first, err := b.do(t, key, req, b.createWidget(req))
		require.NoError(t, err)
		second, err := b.do(t, key, req, b.createWidget(req))
		require.NoError(t, err)
		require.NotEqual(t, first.GetId(), second.GetId())

		_, err = b.do(t, key, req, b.failAfterWrite(grpcx.FailedPrecondition("INSUFFICIENT_POINTS", "no")))
		require.Equal(t, codes.FailedPrecondition, status.Code(err))

		require.Equal(t, int32(3), b.calls.Load())
		require.Equal(t, 2, b.count(t, "widgets"), "the effect still runs in a transaction")
		require.Zero(t, b.count(t, "idempotency_keys"))
	})

	t.Run("ConcurrentDuplicateTakesOverAfterARollback", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := request("ada")
		key := b.key(createMethod, uuid.NewString())

		// The first attempt claims the key, then holds its transaction
		// open until released, and fails transiently.
		claimed := make(chan struct{})
		release := make(chan struct{})
		firstErr := make(chan error, 1)
		go func() {
			_, err := idem.Do(t.Context(), b.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
				close(claimed)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return b.failAfterWrite(errors.New("connection reset by peer"))(ctx, tx)
			})
			firstErr <- err
		}()
		<-claimed

		type result struct {
			resp *customerv1.Customer
			err  error
		}
		second := make(chan result, 1)
		go func() {
			resp, err := idem.Do(t.Context(), b.pool, key, req, b.createWidget(req))
			second <- result{resp, err}
		}()
		// The duplicate blocks on the claimed key rather than failing fast.
		require.Eventually(t, func() bool {
			var waiting int
			err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
			return err == nil && waiting == 1
		}, 10*time.Second, 10*time.Millisecond, "the duplicate did not wait on the claim")

		close(release)
		require.Error(t, <-firstErr)
		r := <-second
		require.NoError(t, r.err, "the duplicate owns the key once the first attempt rolled back")
		require.Equal(t, "ada", r.resp.GetDisplayName())
		require.Equal(t, int32(2), b.calls.Load())
		require.Equal(t, 1, b.count(t, "widgets"))
		require.Equal(t, 1, b.count(t, "idempotency_keys"))
	})
}

func TestReap(t *testing.T) {
	t.Parallel()

	t.Run("RemovesOnlyKeysOlderThanTheCutoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx := t.Context()
		req := request("ada")
		old, fresh := b.key(createMethod, uuid.NewString()), b.key(createMethod, uuid.NewString())
		oldResp, err := b.do(t, old, req, b.createWidget(req))
		require.NoError(t, err)
		freshResp, err := b.do(t, fresh, req, b.createWidget(req))
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
			WHERE request_id = $1`, old.RequestID)
		require.NoError(t, err)

		n, err := idem.Reap(ctx, b.pool, time.Now().Add(-24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		require.Equal(t, 1, b.count(t, "idempotency_keys"))

		n, err = idem.Reap(ctx, b.pool, time.Now().Add(-24*time.Hour))
		require.NoError(t, err)
		require.Zero(t, n, "reaping again removes nothing")

		// The fresh key still replays; the reaped one is free again.
		again, err := b.do(t, fresh, req, b.createWidget(req))
		require.NoError(t, err)
		require.True(t, proto.Equal(freshResp, again))
		reran, err := b.do(t, old, req, b.createWidget(req))
		require.NoError(t, err)
		require.NotEqual(t, oldResp.GetId(), reran.GetId())
		require.Equal(t, int32(3), b.calls.Load())
	})
}
