// Package idem makes mutating RPCs safe to retry: a request id is claimed in
// the same transaction as the effect, and every retry gets the first response.
//
// How: the claim is an INSERT … ON CONFLICT DO NOTHING into idempotency_keys
// (a platform table in each service's schema). A concurrent duplicate blocks
// on the primary key until the first transaction ends; if that committed, the
// duplicate reads the stored response, and if it rolled back, the duplicate
// owns the key and runs. There is no "in progress" state and no 409.
//
// What is stored: successes and business refusals (FAILED_PRECONDITION,
// NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE), so a retry of a refused request is
// refused the same way. Validation failures and transient errors are not
// stored: the whole transaction rolls back and the key stays free.
package idem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

// ReasonKeyReused is the ErrorInfo reason of a request id reused with another
// payload or method.
const ReasonKeyReused = "IDEMPOTENCY_KEY_REUSED"

// requestIDField is the request field that carries the key; it is left out
// of the payload hash.
const requestIDField = "request_id"

// Key identifies one claimed request. Keys are scoped to the tenant and the
// principal, so one caller's key never replays another caller's response.
type Key struct {
	TenantID  string
	Principal string
	Method    string // full gRPC method name
	RequestID string // empty: no idempotency, fn just runs in a transaction
}

// Do runs fn in a transaction that also claims key, and returns its response.
// A retry with the same key returns the stored response without running fn.
// req is the request message; its request_id field is ignored in the hash.
func Do[R proto.Message](ctx context.Context, db pgdb.Beginner, key Key, req proto.Message,
	fn func(ctx context.Context, tx pgx.Tx) (R, error),
) (R, error) {
	var zero R
	if key.RequestID == "" {
		var out R
		err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			var err error
			out, err = fn(ctx, tx)
			return err
		})
		if err != nil {
			return zero, err
		}
		return out, nil
	}
	hash, err := requestHash(key.Method, req)
	if err != nil {
		return zero, err
	}

	var (
		out    R
		stored *spb.Status
	)
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys
			(tenant_id, principal, request_id, method, request_hash, response)
			VALUES ($1, $2, $3, $4, $5, '') ON CONFLICT DO NOTHING`,
			key.TenantID, key.Principal, key.RequestID, key.Method, hash)
		if err != nil {
			return fmt.Errorf("claim request id: %w", pgdb.Classify(err))
		}
		if tag.RowsAffected() == 0 {
			return replay(ctx, tx, key, hash, &stored)
		}

		// We own the key. The effect runs under a savepoint so a business
		// refusal can be stored while whatever fn wrote before refusing is
		// undone.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		resp, ferr := fn(ctx, sp)
		if ferr != nil {
			_ = sp.Rollback(ctx)
			st, _ := grpcx.ToStatus(ferr)
			s := status.Convert(st)
			if !storable(s.Code()) {
				return ferr
			}
			stored = s.Proto()
		} else {
			if err := sp.Commit(ctx); err != nil {
				return fmt.Errorf("release savepoint: %w", pgdb.Classify(err))
			}
			body, err := anypb.New(resp)
			if err != nil {
				return fmt.Errorf("encode response: %w", err)
			}
			stored = &spb.Status{Code: int32(codes.OK), Details: []*anypb.Any{body}}
		}
		enc, err := proto.Marshal(stored)
		if err != nil {
			return fmt.Errorf("encode stored response: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE idempotency_keys SET response = $4
			WHERE tenant_id = $1 AND principal = $2 AND request_id = $3`,
			key.TenantID, key.Principal, key.RequestID, enc); err != nil {
			return fmt.Errorf("store response: %w", pgdb.Classify(err))
		}
		return nil
	})
	if err != nil {
		return zero, err
	}
	if stored.GetCode() != int32(codes.OK) {
		return zero, status.ErrorProto(stored)
	}
	if len(stored.GetDetails()) != 1 {
		return zero, errors.New("stored response has no body")
	}
	out = zero.ProtoReflect().New().Interface().(R)
	if err := stored.GetDetails()[0].UnmarshalTo(out); err != nil {
		return zero, fmt.Errorf("decode stored response: %w", err)
	}
	return out, nil
}

func replay(ctx context.Context, tx pgx.Tx, key Key, hash []byte, stored **spb.Status) error {
	var (
		method   string
		gotHash  []byte
		response []byte
	)
	err := tx.QueryRow(ctx, `SELECT method, request_hash, response FROM idempotency_keys
		WHERE tenant_id = $1 AND principal = $2 AND request_id = $3`,
		key.TenantID, key.Principal, key.RequestID).Scan(&method, &gotHash, &response)
	if err != nil {
		return fmt.Errorf("read claimed request id: %w", pgdb.Classify(err))
	}
	if method != key.Method || !bytes.Equal(gotHash, hash) {
		return grpcx.InvalidArgumentReason(ReasonKeyReused, grpcx.FieldViolation{
			Field:       requestIDField,
			Description: "already used for a different request; use a new request id",
		})
	}
	st := &spb.Status{}
	if err := proto.Unmarshal(response, st); err != nil {
		return fmt.Errorf("decode stored response: %w", err)
	}
	*stored = st
	return nil
}

func storable(c codes.Code) bool {
	switch c {
	case codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists, codes.OutOfRange:
		return true
	}
	return false
}

// requestHash fingerprints the method and the request without its
// request_id, with deterministic marshalling so equal requests hash equal.
func requestHash(method string, req proto.Message) ([]byte, error) {
	m := proto.Clone(req)
	if fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(requestIDField)); fd != nil {
		m.ProtoReflect().Clear(fd)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}

// Reap deletes keys claimed before cutoff and returns how many. Keys must
// live at least 24 hours; business keys (order references, earn sources)
// guard effects forever, request ids only for retries.
func Reap(ctx context.Context, db *pgxpool.Pool, cutoff time.Time) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("reap idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
