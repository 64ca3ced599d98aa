package pgdb

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Kinds of database failure that callers act on. Classify wraps the driver
// error, so errors.Is works and the original stays available to logs.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict is a serialization failure or deadlock: retrying the whole
	// transaction may succeed.
	ErrConflict = errors.New("transaction conflict")
	// ErrCheckViolation means a CHECK constraint refused the row: a rule the
	// database enforces as a backstop.
	ErrCheckViolation = errors.New("check constraint violated")
	ErrForeignKey     = errors.New("foreign key violated")
)

type classified struct {
	kind error
	err  error
}

func (c *classified) Error() string        { return c.kind.Error() + ": " + c.err.Error() }
func (c *classified) Unwrap() []error      { return []error{c.kind, c.err} }
func (c *classified) Is(target error) bool { return target == c.kind }

// Classify maps a driver error to one of the kinds above by SQLSTATE, never by
// message text. Errors of no known kind are returned unchanged.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &classified{kind: ErrNotFound, err: err}
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case pgerrcode.UniqueViolation:
		return &classified{kind: ErrAlreadyExists, err: err}
	case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
		return &classified{kind: ErrConflict, err: err}
	case pgerrcode.CheckViolation:
		return &classified{kind: ErrCheckViolation, err: err}
	case pgerrcode.ForeignKeyViolation:
		return &classified{kind: ErrForeignKey, err: err}
	}
	return err
}

// ConstraintName returns the violated constraint of a PgError, or "".
func ConstraintName(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}
